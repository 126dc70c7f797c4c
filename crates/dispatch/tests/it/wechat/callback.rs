//! The template delivery event and the callback signature, read as WeChat writes them.

use chrono::DateTime;
use dispatch::SupplierReceipt;
use dispatch::wechat::official::{callback_signature, template_send_finished, verify_callback};
use domain::ReceiptOutcome;

use super::fake::OPENID;

/// The example of WeChat's "模板消息发送完成事件推送" documentation.
const FINISHED: &str = "<xml>
<ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
<FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>
<CreateTime>1395658920</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>
<MsgID>200163836</MsgID>
<Status><![CDATA[success]]></Status>
</xml>";

#[test]
fn a_template_delivery_event_is_a_receipt() {
    assert_eq!(
        template_send_finished(FINISHED),
        Some(SupplierReceipt {
            message_id: None,
            supplier_message_id: Some("200163836".to_owned()),
            receiver: Some(OPENID.to_owned()),
            outcome: ReceiptOutcome::Delivered,
            supplier_status: "success".to_owned(),
            reported_at: DateTime::from_timestamp(1_395_658_920, 0).unwrap(),
        })
    );
    for status in ["failed:user block", "failed: system failed"] {
        let xml = FINISHED.replace("success", status);
        let receipt = template_send_finished(&xml).unwrap();
        assert_eq!(receipt.outcome, ReceiptOutcome::Undelivered);
        assert_eq!(receipt.supplier_status, status);
        assert_eq!(receipt.supplier_message_id.as_deref(), Some("200163836"));
    }
    // A user's text message to the account is not a receipt.
    let text = "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\
        <FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>\
        <CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType>\
        <Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId></xml>";
    assert_eq!(template_send_finished(text), None);
    assert_eq!(template_send_finished("not xml at all"), None);
}

#[test]
fn a_callback_signature_is_the_sha1_of_the_sorted_parts() {
    // python3: hashlib.sha1("".join(sorted(["herald-token", "1700000000", "nonce-42"])).encode()).hexdigest()
    let expected = "2ecc525afeb17d2c8f658bd056ab8cf3a190b56f";
    assert_eq!(
        callback_signature("herald-token", "1700000000", "nonce-42"),
        expected
    );
    assert!(verify_callback(
        "herald-token",
        "1700000000",
        "nonce-42",
        expected
    ));
    assert!(verify_callback(
        "herald-token",
        "1700000000",
        "nonce-42",
        &expected.to_uppercase()
    ));
    assert!(!verify_callback(
        "other-token",
        "1700000000",
        "nonce-42",
        expected
    ));
    assert!(!verify_callback(
        "herald-token",
        "1700000001",
        "nonce-42",
        expected
    ));
    assert!(!verify_callback(
        "herald-token",
        "1700000000",
        "nonce-42",
        ""
    ));
    // The second vector: sha1("1409304348AAAAAxxxxxx").
    assert!(verify_callback(
        "AAAAA",
        "1409304348",
        "xxxxxx",
        "87e50d28dcac81e5f82950c4c6f701200ac60e2c"
    ));
}
