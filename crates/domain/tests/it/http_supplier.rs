//! Declarative HTTP suppliers: a definition is checked field by field, decided into one event
//! naming what changed, and folded back.

use chrono::DateTime;
use domain::http_supplier::{
    self, BodyFormat, HmacAlgorithm, HttpBody, HttpHeader, HttpMethod, HttpResponseRule,
    HttpSupplierEvent, HttpSupplierSpec, SignEncoding, Signing,
};
use domain::http_supplier_check::{check, check_name, needs};
use domain::{Channel, TenantId};
use serde_json::json;

fn spec() -> HttpSupplierSpec {
    HttpSupplierSpec {
        channels: vec![Channel::Sms],
        method: HttpMethod::Post,
        url: "https://sms.example.com/v1/send?app={{settings.app_id}}".to_owned(),
        headers: vec![HttpHeader {
            name: "X-Sign".to_owned(),
            value: "{{sign}}".to_owned(),
        }],
        body: Some(HttpBody {
            format: BodyFormat::Json,
            template: json!({"to": "{{receiver}}", "code": "{{template_code}}", "params": "{{params}}"}),
        }),
        signing: Signing::Hmac {
            algorithm: HmacAlgorithm::Sha256,
            key: "{{credentials.secret}}".to_owned(),
            parts: vec![
                "{{settings.app_id}}".to_owned(),
                "{{timestamp}}".to_owned(),
                "{{body}}".to_owned(),
            ],
            separator: "\n".to_owned(),
            encoding: SignEncoding::Hex,
        },
        response: HttpResponseRule {
            success_pointer: Some("/code".to_owned()),
            success_values: vec!["0".to_owned()],
            message_id_pointer: Some("/data/id".to_owned()),
            error_code_pointer: None,
            error_message_pointer: Some("/msg".to_owned()),
        },
        retry_codes: vec!["BUSY".to_owned()],
    }
}

fn field(spec: &HttpSupplierSpec) -> String {
    check(spec).unwrap_err().field
}

#[test]
fn a_good_definition_passes_and_names_what_an_account_needs() {
    check(&spec()).unwrap();
    let (credentials, settings) = needs(&spec());
    assert_eq!(credentials.into_iter().collect::<Vec<_>>(), ["secret"]);
    assert_eq!(settings.into_iter().collect::<Vec<_>>(), ["app_id"]);
}

#[test]
fn each_bad_part_is_named() {
    let mut s = spec();
    s.url = "ftp://x".to_owned();
    assert_eq!(field(&s), "url");

    let mut s = spec();
    s.body = Some(HttpBody {
        format: BodyFormat::Json,
        template: json!({"to": "{{recever}}"}),
    });
    let error = check(&s).unwrap_err();
    assert_eq!(error.field, "body.template.to");
    assert!(error.message.contains("recever"), "{error}");
    assert_eq!(error.code(), "INVALID_HTTP_SUPPLIER");

    // A signature cannot cover a body that carries it.
    let mut s = spec();
    s.body = Some(HttpBody {
        format: BodyFormat::Json,
        template: json!({"sign": "{{sign}}"}),
    });
    assert_eq!(field(&s), "body.template.sign");

    // {{sign}} needs a recipe that computes one.
    let mut s = spec();
    s.signing = Signing::Bearer {
        token: "{{credentials.token}}".to_owned(),
    };
    assert_eq!(field(&s), "headers[0].value");

    let mut s = spec();
    s.headers[0].name = "Content-Length".to_owned();
    assert_eq!(field(&s), "headers[0].name");

    let mut s = spec();
    s.response.success_pointer = Some("code".to_owned());
    assert_eq!(field(&s), "response.success_pointer");

    let mut s = spec();
    s.response.success_values.clear();
    assert_eq!(field(&s), "response.success_values");

    let mut s = spec();
    s.body = Some(HttpBody {
        format: BodyFormat::Form,
        template: json!({"n": 1}),
    });
    assert_eq!(field(&s), "body.template.n");

    let mut s = spec();
    s.method = HttpMethod::Get;
    assert_eq!(field(&s), "body");

    let mut s = spec();
    s.channels.clear();
    assert_eq!(field(&s), "channels");

    let mut s = spec();
    s.url = "https://x/{{body}}".to_owned();
    assert_eq!(field(&s), "url");

    assert!(check_name("aggregator-1").is_ok());
    assert_eq!(check_name("Bad Name").unwrap_err().field, "name");
}

#[test]
fn decide_records_what_changed_and_nothing_when_nothing_did() {
    let tenant = TenantId::parse("acme").unwrap();
    let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let first = http_supplier::decide(None, &tenant, "agg", spec(), "key:k", at).unwrap();
    let defined = http_supplier::fold(&first).unwrap();
    assert_eq!(defined.changed.len(), 8);
    assert!(
        http_supplier::decide(Some(&defined), &tenant, "agg", spec(), "key:k", at)
            .unwrap()
            .is_empty()
    );
    let mut changed = spec();
    changed.retry_codes.push("LIMIT".to_owned());
    let second =
        http_supplier::decide(Some(&defined), &tenant, "agg", changed, "key:k", at).unwrap();
    let HttpSupplierEvent::HttpSupplierDefined(event) = &second[0];
    assert_eq!(event.changed, ["retry_codes"]);
    assert_eq!(
        http_supplier::stream_name(&tenant, "agg"),
        "http_supplier-acme.agg"
    );
    let decoded = HttpSupplierEvent::decode("HttpSupplierDefined", 1, &second[0].encode()).unwrap();
    assert_eq!(decoded, second[0]);
    assert!(
        http_supplier::decide(
            None,
            &tenant,
            "agg",
            HttpSupplierSpec {
                channels: vec![],
                ..spec()
            },
            "key:k",
            at
        )
        .is_err()
    );
}
