//! Distributed tracing: a send made with a W3C `traceparent` yields spans of that trace from
//! the API call through the append and dispatch to the supplier call, each the child of the
//! one before (checked with OpenTelemetry's in-memory exporter); and a real `herald serve`
//! with `log.otlp_endpoint` exports those spans over OTLP/HTTP to a collector.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use prost::Message as _;
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt as _;

use crate::app::{Client, TestApp, serve_fake, spawn, webhook_account};
use crate::deployment::Deployment;
use crate::dispatch::wait_for;
use crate::support::serve;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

async fn hook() -> String {
    let app = axum::Router::new().route("/hook", post(|| async { "{}" }));
    format!("{}/hook", serve_fake(app).await)
}

/// A send with the caller's `traceparent`; the message's id.
async fn traced_send(address: std::net::SocketAddr, key: &str, template: &str, to: &str) -> String {
    let response = dispatch::http::client(Duration::from_secs(30))
        .unwrap()
        .post(format!("http://{address}/graphql"))
        .header("Authorization", format!("Bearer {key}"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&json!({
            "query": "mutation($input: SendInput!) { send(input: $input) { messages { id } } }",
            "variables": { "input": { "templateId": template, "receivers": [to], "variables": { "n": "1" } } }
        }))
        .send()
        .await
        .unwrap();
    let echoed = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(echoed.starts_with(&format!("00-{TRACE}-")), "{echoed}");
    assert!(
        !echoed.contains(PARENT),
        "the answer names Herald's span: {echoed}"
    );
    let sent: Value = response.json().await.unwrap();
    sent["data"]["send"]["messages"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{sent}"))
        .to_owned()
}

async fn template(api: &Client, author: &str, reviewer: &str) -> String {
    let input = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE",
        "content": { "kind": "TEXT", "body": "Build ${n}" }, "account": "hooks", "ownerTeam": "ci" });
    api.approved_template(author, reviewer, input).await
}

fn find<'a>(spans: &'a [SpanData], name: &str, parent: Option<&str>) -> &'a SpanData {
    spans
        .iter()
        .find(|s| {
            s.name == name
                && s.span_context.trace_id().to_string() == TRACE
                && parent.is_none_or(|p| s.parent_span_id.to_string() == p)
        })
        .unwrap_or_else(|| {
            let seen: Vec<String> = spans
                .iter()
                .map(|s| {
                    format!(
                        "{} {} {}<-{}",
                        s.name,
                        s.span_context.trace_id(),
                        s.span_context.span_id(),
                        s.parent_span_id
                    )
                })
                .collect();
            panic!("no {name} span of the trace under {parent:?}: {seen:#?}")
        })
}

// One thread, so the subscriber set for this test sees every task of the app it starts.
#[tokio::test(flavor = "current_thread")]
async fn a_traceparent_is_one_trace_from_the_api_through_dispatch_to_the_supplier() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);

    let app: TestApp = spawn("postgres", |c| {
        c.accounts = vec![webhook_account("s3cret", "")];
        c.dispatch.dedup_window_secs = 0;
    })
    .await;
    let hook = hook().await;
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send,read").await;
    let template = template(&app.client(), &author, &reviewer).await;
    // `tracing` caches per call site whether any subscriber wants it, for the whole process. A
    // call site first reached by another test's thread while this test's subscriber was being
    // set may keep a stale "no one" until the cache is next rebuilt, and then this thread's
    // spans from it are lost. Rebuild it now that the subscriber is in place.
    tracing::callsite::rebuild_interest_cache();
    let id = traced_send(app.address, &sender, &template, &hook).await;
    wait_for(&app, &format!("message-{id}"), "MessageDispatched").await;
    // The dispatch span ends just after its last append.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exporter
        .get_finished_spans()
        .unwrap()
        .iter()
        .any(|s| s.name == "dispatch")
    {
        assert!(Instant::now() < deadline, "dispatch never ended its span");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let spans = exporter.get_finished_spans().unwrap();
    // The API call, under the caller's span; the send's append under it.
    let request = find(&spans, "request", Some(PARENT));
    let request_id = request.span_context.span_id().to_string();
    find(&spans, "append", Some(&request_id));
    // Dispatch continues the trace under the request (it read it from the message's
    // metadata), and the supplier call and the outcome's append are its children.
    let dispatch = find(&spans, "dispatch", Some(&request_id));
    let dispatch_id = dispatch.span_context.span_id().to_string();
    let supplier = find(&spans, "supplier", Some(&dispatch_id));
    assert!(
        supplier
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "account" && kv.value.as_str() == "hooks"),
        "{:?}",
        supplier.attributes
    );
    find(&spans, "append", Some(&dispatch_id));
    app.finish().await;
}

/// A collector: the spans of each OTLP/HTTP protobuf export, as (name, trace id, service).
type Exported = Arc<Mutex<Vec<(String, String, String)>>>;

async fn collector() -> (String, Exported) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let exported: Exported = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(|State(seen): State<Exported>, body: Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            let trace: String =
                                span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                            seen.lock()
                                .unwrap()
                                .push((span.name, trace, service.clone()));
                        }
                    }
                }
                ""
            }),
        )
        .with_state(Arc::clone(&exported));
    (serve_fake(app).await, exported)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_collector_receives_the_trace_over_otlp() {
    let (collector, exported) = collector().await;
    let hook = hook().await;
    let deployment = Deployment::new(&format!(
        "[log]\notlp_endpoint = \"{collector}\"\nservice_name = \"herald-it\"\n\n[dispatch]\ndedup_window_secs = 0\n\n\
         [[accounts]]\nid = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = {{ secret = \"s3cret\" }}\n"
    ))
    .await;
    let sender = deployment.key("send,read").await;
    let mut command = deployment.command();
    // Export each batch at once rather than every 5 s.
    command.env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let server = serve(command).await;
    let api = Client {
        address: server.address,
    };
    let template = template(&api, &deployment.author, &deployment.reviewer).await;
    traced_send(server.address, &sender, &template, &hook).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = exported.lock().unwrap().clone();
        let names: Vec<&str> = seen
            .iter()
            .filter(|(_, trace, _)| trace == TRACE)
            .map(|(name, _, _)| name.as_str())
            .collect();
        if ["request", "append", "dispatch", "supplier"]
            .iter()
            .all(|n| names.contains(n))
        {
            assert!(
                seen.iter()
                    .all(|(_, _, service)| service.contains("herald-it")),
                "{seen:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector never got the whole trace: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
