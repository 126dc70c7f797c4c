//! Tests of template content: which channel takes which model, placeholders, rendering, links and limits.

use std::collections::{BTreeMap, BTreeSet};

use domain::*;
use proptest::prelude::*;

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn text(body: &str) -> TemplateContent {
    TemplateContent::Text {
        body: body.to_owned(),
    }
}

#[track_caller]
fn check_placeholders(body: &str, expected: &[&str]) {
    assert_eq!(text(body).placeholders(), names(expected), "{body:?}");
}

#[test]
fn placeholders_are_dollar_brace_names() {
    check_placeholders("Hi ${name}, code ${code_1}.", &["name", "code_1"]);
    check_placeholders("${_x}${Y}", &["_x", "Y"]);
    check_placeholders("$${a}", &["a"]);
    check_placeholders("${${a}}", &["a"]);
    check_placeholders(&format!("${{{}}}", "a".repeat(64)), &[&"a".repeat(64)]);
}

#[test]
fn malformed_placeholders_are_literal_text() {
    for body in [
        "${}", "${1a}", "${a b}", "${a", "$a", "${a-b}", "{a}", "$ {a}", "${é}", "${",
    ] {
        check_placeholders(body, &[]);
    }
    check_placeholders(&format!("${{{}}}", "a".repeat(65)), &[]);
    assert_eq!(
        text("cost: ${1} or ${}").render(&BTreeMap::new()),
        Ok(text("cost: ${1} or ${}"))
    );
}

#[test]
fn render_substitutes_every_text_field() {
    let content = TemplateContent::Email {
        subject: "Hello ${name}".to_owned(),
        html: Some("<p>${name}: ${link}</p>".to_owned()),
        text: None,
        attachments: vec![],
    };
    let rendered = content.render(&vars(&[("name", "Ann"), ("link", "https://x.io")]));
    let expected = TemplateContent::Email {
        subject: "Hello Ann".to_owned(),
        html: Some("<p>Ann: https://x.io</p>".to_owned()),
        text: None,
        attachments: vec![],
    };
    assert_eq!(rendered, Ok(expected));
}

#[test]
fn render_fills_supplier_params_but_not_codes() {
    let content = TemplateContent::SupplierTemplate {
        template_code: "SMS_${x}".to_owned(),
        sign_name: Some("${x}".to_owned()),
        params: vec![TemplateParam {
            name: "code".to_owned(),
            value: "${code}".to_owned(),
        }],
    };
    assert_eq!(content.placeholders(), names(&["code"]));
    let rendered = content.render(&vars(&[("code", "123456")])).unwrap();
    let TemplateContent::SupplierTemplate {
        template_code,
        sign_name,
        params,
    } = rendered
    else {
        panic!("the model does not change")
    };
    assert_eq!(
        (template_code.as_str(), sign_name.as_deref()),
        ("SMS_${x}", Some("${x}"))
    );
    assert_eq!(params[0].value, "123456");
}

#[test]
fn render_is_a_single_pass() {
    let rendered = text("${a} ${b}").render(&vars(&[("a", "${b}"), ("b", "B")]));
    assert_eq!(rendered, Ok(text("${b} B")));
}

#[test]
fn render_names_missing_and_unknown_variables_sorted() {
    let content = text("${b} ${a} ${c}");
    let missing = content.render(&vars(&[("b", "1")])).unwrap_err();
    assert_eq!(
        missing,
        RenderError::MissingVariables(vec!["a".to_owned(), "c".to_owned()])
    );
    assert_eq!(missing.code(), "MISSING_VARIABLES");
    let unknown = text("${a}")
        .render(&vars(&[("a", "1"), ("z", "2"), ("y", "3")]))
        .unwrap_err();
    assert_eq!(
        unknown,
        RenderError::UnknownVariables(vec!["y".to_owned(), "z".to_owned()])
    );
    assert_eq!(unknown.code(), "UNKNOWN_VARIABLES");
}

#[test]
fn content_models_fit_their_channels() {
    let supplier = TemplateContent::SupplierTemplate {
        template_code: "T1".to_owned(),
        sign_name: None,
        params: vec![],
    };
    let email = TemplateContent::Email {
        subject: "s".to_owned(),
        html: None,
        text: Some("t".to_owned()),
        attachments: vec![],
    };
    let markdown = TemplateContent::Markdown {
        title: "t".to_owned(),
        body: "b".to_owned(),
    };
    let card = TemplateContent::Card {
        title: "t".to_owned(),
        body: "b".to_owned(),
        url: None,
    };
    let models = [text("x"), email, markdown, supplier, card];
    // Columns: TEXT, EMAIL, MARKDOWN, SUPPLIER_TEMPLATE, CARD.
    let table: [(Channel, [bool; 5]); 12] = [
        (Channel::Sms, [true, false, false, true, false]),
        (Channel::Email, [false, true, false, false, false]),
        (Channel::WechatOfficial, [false, false, false, true, false]),
        (Channel::MiniProgram, [false, false, false, true, false]),
        (Channel::Push, [true, false, false, false, true]),
        (Channel::WecomApp, [true, false, true, false, true]),
        (Channel::WecomRobot, [true, false, true, false, true]),
        (Channel::DingtalkRobot, [true, false, true, false, true]),
        (Channel::DingtalkWork, [true, false, true, false, true]),
        (Channel::FeishuRobot, [true, false, true, false, true]),
        (Channel::Webhook, [true, true, true, false, true]),
        (Channel::Inbox, [true, true, true, false, true]),
    ];
    for (channel, expected) in table {
        let actual: Vec<bool> = models.iter().map(|m| m.fits(channel)).collect();
        assert_eq!(actual, expected, "{channel}");
    }
}

#[test]
fn links_are_found_in_text_fields() {
    let content = TemplateContent::Card {
        title: "See http://a.com/x.".to_owned(),
        body: "(https://b.com/y?q=1), \"https://c.com/z\" <https://d.com>! https://a.com/x http:// nothing".to_owned(),
        url: Some("https://e.com/${id}".to_owned()),
    };
    assert_eq!(
        content.links(),
        [
            "http://a.com/x",
            "https://b.com/y?q=1",
            "https://c.com/z",
            "https://d.com",
            "https://a.com/x",
            "https://e.com/${id}"
        ]
    );
    assert!(
        text("no links, only httpx://a and http:/b")
            .links()
            .is_empty()
    );
}

#[test]
fn links_can_be_rewritten_for_tracking() {
    let content = text("Go to https://a.com/x, or https://b.com. Again: https://a.com/x");
    let rewritten = content
        .rewrite_links(|url| (url == "https://a.com/x").then(|| "https://t.io/c/1".to_owned()));
    assert_eq!(
        rewritten,
        text("Go to https://t.io/c/1, or https://b.com. Again: https://t.io/c/1")
    );
}

#[test]
fn validation_checks_required_fields_and_sizes() {
    let email = |subject: &str, html: Option<&str>, text: Option<&str>| TemplateContent::Email {
        subject: subject.to_owned(),
        html: html.map(str::to_owned),
        text: text.map(str::to_owned),
        attachments: vec![],
    };
    assert_eq!(email("s", None, Some("t")).validate(), Ok(()));
    assert_eq!(
        email("s", Some(" "), None).validate(),
        Err(TemplateError::EmailWithoutBody)
    );
    assert_eq!(
        email("", Some("h"), None).validate(),
        Err(TemplateError::EmptyField { field: "subject" })
    );
    assert_eq!(
        email(&"s".repeat(999), Some("h"), None).validate(),
        Err(TemplateError::FieldTooLong {
            field: "subject",
            len: 999,
            max: 998
        })
    );
    assert_eq!(
        text(&"x".repeat(64 * 1024 + 1)).validate(),
        Err(TemplateError::FieldTooLong {
            field: "body",
            len: 65537,
            max: 65536
        })
    );
    assert_eq!(text(&"x".repeat(64 * 1024)).validate(), Ok(()));
    let params = |names: &[&str]| TemplateContent::SupplierTemplate {
        template_code: "T".to_owned(),
        sign_name: None,
        params: names
            .iter()
            .map(|n| TemplateParam {
                name: (*n).to_owned(),
                value: String::new(),
            })
            .collect(),
    };
    assert_eq!(params(&["a", "b"]).validate(), Ok(()));
    assert_eq!(
        params(&["a", "a"]).validate(),
        Err(TemplateError::DuplicateParam {
            name: "a".to_owned()
        })
    );
    let card = TemplateContent::Card {
        title: "t".to_owned(),
        body: "b".to_owned(),
        url: Some(String::new()),
    };
    assert_eq!(
        card.validate(),
        Err(TemplateError::EmptyField { field: "url" })
    );
}

#[test]
fn content_is_tagged_by_kind_on_the_wire() {
    let card = TemplateContent::Card {
        title: "t".to_owned(),
        body: "b".to_owned(),
        url: None,
    };
    assert_eq!(
        serde_json::to_value(&card).unwrap(),
        serde_json::json!({"kind": "CARD", "title": "t", "body": "b"})
    );
    let supplier: TemplateContent = serde_json::from_value(
        serde_json::json!({"kind": "SUPPLIER_TEMPLATE", "template_code": "T"}),
    )
    .unwrap();
    assert_eq!(supplier.kind(), "SUPPLIER_TEMPLATE");
}

fn email_with(attachments: Vec<Attachment>) -> TemplateContent {
    TemplateContent::Email {
        subject: "Invoice ${n}".to_owned(),
        html: None,
        text: Some("See https://shop.io/i/${n}".to_owned()),
        attachments,
    }
}

fn attachment(url: &str, filename: Option<&str>) -> Attachment {
    Attachment {
        url: url.to_owned(),
        filename: filename.map(str::to_owned),
    }
}

#[test]
fn attachments_travel_with_an_email_and_are_left_out_when_there_are_none() {
    let with = email_with(vec![attachment("https://shop.io/a.pdf", Some("a.pdf"))]);
    let json = serde_json::to_value(&with).unwrap();
    assert_eq!(
        json["attachments"],
        serde_json::json!([{"url": "https://shop.io/a.pdf", "filename": "a.pdf"}])
    );
    assert_eq!(
        serde_json::from_value::<TemplateContent>(json).unwrap(),
        with
    );
    let without = serde_json::to_value(email_with(vec![])).unwrap();
    assert!(without.get("attachments").is_none(), "{without}");
}

#[test]
fn attachment_urls_must_be_http_or_https() {
    for url in [
        "https://shop.io/a.pdf",
        "http://127.0.0.1:8080/x?y=1",
        "HTTPS://shop.io",
    ] {
        let content = email_with(vec![attachment(url, None)]);
        assert_eq!(content.validate(), Ok(()), "{url}");
    }
    for url in [
        "file:///etc/passwd",
        "ftp://shop.io/a.pdf",
        "data:text/plain;base64,aGk=",
        "https:///etc/passwd",
        "//shop.io/a.pdf",
        "https://shop.io/a b.pdf",
        "gopher://shop.io",
    ] {
        let content = email_with(vec![attachment(url, None)]);
        assert_eq!(
            content.validate(),
            Err(TemplateError::AttachmentUrlNotHttp {
                url: url.to_owned()
            }),
            "{url}"
        );
    }
    assert_eq!(
        TemplateError::AttachmentUrlNotHttp { url: String::new() }.code(),
        "ATTACHMENT_URL_NOT_HTTP"
    );
    assert_eq!(
        email_with(vec![attachment("https://shop.io/a", Some(" "))]).validate(),
        Err(TemplateError::EmptyField {
            field: "attachments.filename"
        })
    );
    let many = email_with(vec![attachment("https://shop.io/a", None); 11]);
    assert_eq!(
        many.validate(),
        Err(TemplateError::TooManyAttachments { count: 11, max: 10 })
    );
    assert_eq!(
        TemplateError::TooManyAttachments { count: 11, max: 10 }.code(),
        "TOO_MANY_ATTACHMENTS"
    );
}

#[test]
fn attachments_are_configuration_not_rendered_or_tracked() {
    let content = email_with(vec![attachment("https://shop.io/${n}.pdf", Some("${n}"))]);
    assert_eq!(content.placeholders(), names(&["n"]));
    assert_eq!(content.links(), ["https://shop.io/i/${n}"]);
    let rendered = content.render(&vars(&[("n", "7")])).unwrap();
    let tracked = rendered.rewrite_links(|_| Some("https://t.io/c/1".to_owned()));
    let TemplateContent::Email {
        subject,
        text,
        attachments,
        ..
    } = tracked
    else {
        panic!("the model does not change")
    };
    assert_eq!(
        (subject.as_str(), text.as_deref()),
        ("Invoice 7", Some("See https://t.io/c/1"))
    );
    assert_eq!(
        attachments,
        [attachment("https://shop.io/${n}.pdf", Some("${n}"))]
    );
}

/// Template text built from pieces that include stray `$`, `{` and `}` around real placeholders.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z ${}_0-9]{0,6}",
        "[a-z_][a-z0-9_]{0,4}".prop_map(|name| format!("${{{name}}}")),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn tricky_content() -> impl Strategy<Value = TemplateContent> {
    prop_oneof![
        tricky_text().prop_map(|body| TemplateContent::Text { body }),
        (
            tricky_text(),
            proptest::option::of(tricky_text()),
            proptest::option::of(tricky_text())
        )
            .prop_map(|(subject, html, text)| TemplateContent::Email {
                subject,
                html,
                text,
                attachments: vec![],
            }),
        (
            tricky_text(),
            tricky_text(),
            proptest::option::of(tricky_text())
        )
            .prop_map(|(title, body, url)| TemplateContent::Card { title, body, url }),
    ]
}

proptest! {
    #[test]
    fn render_never_panics(content in tricky_content(), names in proptest::collection::btree_map("[a-z_]{1,3}", ".{0,6}", 0..4)) {
        let _ = content.render(&names);
        let _ = content.links();
        let _ = content.validate();
    }

    #[test]
    fn rendering_with_exactly_the_placeholders_leaves_none(
        content in tricky_content(),
        values in proptest::collection::vec("[ .,!-]{1,4}", 8),
    ) {
        // Values without `$`, braces or name characters cannot form a new placeholder with the text around them.
        let vars: BTreeMap<String, String> = content
            .placeholders()
            .into_iter()
            .zip(values.into_iter().cycle())
            .collect();
        let rendered = content.render(&vars).unwrap();
        prop_assert_eq!(rendered.placeholders(), BTreeSet::new());
    }

    #[test]
    fn rendering_with_any_values_succeeds(content in tricky_content(), value in ".{0,8}") {
        let vars: BTreeMap<String, String> =
            content.placeholders().into_iter().map(|name| (name, value.clone())).collect();
        prop_assert!(content.render(&vars).is_ok());
    }
}
