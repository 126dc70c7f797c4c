//! Span export over OTLP/HTTP (protobuf) when `log.otlp_endpoint` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) names a collector: a `tracing-opentelemetry` layer beside the
//! log output, a batch span processor on its own thread, and the exporter posting through
//! Herald's own HTTP client (reqwest on rustls, so no second HTTP stack is built in).
//!
//! The spans that make one message's trace: `request` (the API call, a child of the caller's
//! `traceparent`), `append` (each append to the store), `dispatch` (one message taken through
//! dispatch, on whichever process, continuing the trace from the message's metadata) and
//! `supplier` (the supplier call).

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::registry::LookupSpan;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter's HTTP client: reqwest, driven on Herald's runtime (the batch processor runs
/// on a thread of its own, outside it).
struct ReqwestClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for ReqwestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestClient").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpClient for ReqwestClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let call = async move {
            let (parts, body) = request.into_parts();
            let mut builder = client.request(parts.method, parts.uri.to_string());
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            let response = builder.body(body).send().await?;
            let mut out = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(out.body(body)?)
        };
        self.runtime.spawn(call).await?
    }
}

/// The collector's traces URL for an endpoint given as a base (`http://collector:4318`) or
/// as the full URL.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// The endpoint spans go to, if any: the configuration's, else the standard variable.
pub fn endpoint(config: &crate::config::LogConfig) -> Option<String> {
    let configured = config.otlp_endpoint.trim();
    if !configured.is_empty() {
        return Some(configured.to_owned());
    }
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The tracer provider exporting to `endpoint`; must be called on the runtime. Shut it down
/// on exit so the last spans go out.
pub fn provider(endpoint: &str, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let client = ReqwestClient {
        client: dispatch::http::client(EXPORT_TIMEOUT).context("building the OTLP client")?,
        runtime: tokio::runtime::Handle::current(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("building the OTLP span exporter")?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// The layer that turns `tracing` spans into OpenTelemetry spans of `provider`.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("herald"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_become_traces_urls() {
        assert_eq!(
            super::traces_url("http://c:4318/"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
