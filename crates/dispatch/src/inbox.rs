//! The INBOX channel: the message is stored for its receiver in Herald itself, so handing it
//! over is delivering it. The in-app inbox view and its live stream read it from the log.

use domain::Channel;

use crate::supplier::{Outbound, SendFuture, Sent, Supplier};

pub struct InboxSupplier;

impl Supplier for InboxSupplier {
    fn name(&self) -> &'static str {
        "inbox"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Inbox
    }

    fn send<'a>(&'a self, _message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(async {
            Ok(Sent {
                supplier_message_id: None,
            })
        })
    }

    fn delivers_on_send(&self) -> bool {
        true
    }

    /// The inbox is Herald's own: recalling is recording it, and the inbox view drops the message.
    fn recall<'a>(
        &'a self,
        _message: &'a Outbound<'a>,
        _supplier_message_id: Option<&'a str>,
    ) -> Option<SendFuture<'a>> {
        Some(Box::pin(async {
            Ok(Sent {
                supplier_message_id: None,
            })
        }))
    }
}
