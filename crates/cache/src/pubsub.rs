//! Publish and subscribe: small notifications between the processes of a deployment, such as
//! "a message reached this inbox". Redis carries them between processes (PUBLISH, and one
//! PSUBSCRIBE connection per process); the in-process cache hands them over in memory.
//!
//! Either way, a process keeps one local hub: a `tokio::sync::broadcast` channel per channel
//! name that has subscribers here, so a thousand streams of one receiver cost one entry, and a
//! Redis connection is shared by every subscriber of the process.
//!
//! Delivery is at most once. A notification published while a subscriber is not listening (the
//! Redis connection was down, or the subscriber fell behind) is lost, and the subscriber hears
//! [`Notice::Missed`] instead, so it can look at the source of truth again. Notifications are
//! doorbells, never the data itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

/// What a subscriber hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A notification published on the channel.
    Message(String),
    /// Notifications may have been lost (a reconnection, or this subscriber fell behind).
    Missed,
}

/// Notifications a slow subscriber may fall behind by before it hears [`Notice::Missed`].
const BACKLOG: usize = 256;

#[derive(Debug, Default)]
struct HubState {
    channels: HashMap<String, broadcast::Sender<Notice>>,
}

/// The local fan-out: one broadcast channel per channel name with subscribers in this process.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hub {
    state: Arc<Mutex<HubState>>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `payload` to this process's subscribers of `channel`.
    pub(crate) fn deliver(&self, channel: &str, payload: &str) {
        if let Some(sender) = self.lock().channels.get(channel) {
            // No receiver left: the last one is dropping right now.
            let _ = sender.send(Notice::Message(payload.to_owned()));
        }
    }

    /// Tells every subscriber that notifications may have been lost.
    pub(crate) fn missed_all(&self) {
        for sender in self.lock().channels.values() {
            let _ = sender.send(Notice::Missed);
        }
    }

    pub(crate) fn subscribe(&self, channel: &str) -> Subscription {
        let receiver = self
            .lock()
            .channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe();
        Subscription {
            channel: channel.to_owned(),
            receiver,
            hub: Arc::downgrade(&self.state),
        }
    }

    pub(crate) fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.state))
    }

    /// How many channel names have subscribers here.
    #[cfg(test)]
    pub(crate) fn channels(&self) -> usize {
        self.lock().channels.len()
    }
}

/// A hub that does not keep it alive: the Redis listener holds this, so it stops once every
/// cache handle is gone.
#[derive(Debug, Clone)]
pub(crate) struct WeakHub(Weak<Mutex<HubState>>);

impl WeakHub {
    pub(crate) fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|state| Hub { state })
    }
}

/// A subscription to one channel; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    receiver: broadcast::Receiver<Notice>,
    hub: Weak<Mutex<HubState>>,
}

impl Subscription {
    /// The channel subscribed to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next notice. Cancel-safe: it can be raced against a timer in `select!`.
    pub async fn recv(&mut self) -> Notice {
        match self.receiver.recv().await {
            Ok(notice) => notice,
            Err(broadcast::error::RecvError::Lagged(_)) => Notice::Missed,
            // The sender lives as long as a receiver does (see `Drop`), so this does not
            // happen; if it did, nothing more would arrive.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    /// A notice already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Notice> {
        match self.receiver.try_recv() {
            Ok(notice) => Some(notice),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Notice::Missed),
            Err(_) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(state) = self.hub.upgrade() else {
            return;
        };
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        // This receiver is still counted: it is the last one when the count is 1.
        if state
            .channels
            .get(&self.channel)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            state.channels.remove(&self.channel);
        }
    }
}

/// How long a subscriber waits for the Redis listener to be subscribed before giving up.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between two attempts to (re)connect the Redis listener.
pub(crate) const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// `prefix` as a literal in a Redis glob pattern.
pub(crate) fn glob_escape(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_hear_their_channel_only_and_leave_when_dropped() {
        let hub = Hub::default();
        let mut a1 = hub.subscribe("inbox:t:a");
        let mut a2 = hub.subscribe("inbox:t:a");
        let mut b = hub.subscribe("inbox:t:b");
        assert_eq!(hub.channels(), 2);
        hub.deliver("inbox:t:a", "one");
        hub.deliver("inbox:t:c", "nobody");
        assert_eq!(a1.recv().await, Notice::Message("one".to_owned()));
        assert_eq!(a2.recv().await, Notice::Message("one".to_owned()));
        assert_eq!(b.try_recv(), None);
        hub.missed_all();
        assert_eq!(b.recv().await, Notice::Missed);
        drop(a1);
        assert_eq!(hub.channels(), 2);
        drop(a2);
        drop(b);
        assert_eq!(hub.channels(), 0);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_hears_missed() {
        let hub = Hub::default();
        let mut slow = hub.subscribe("c");
        for i in 0..BACKLOG + 10 {
            hub.deliver("c", &i.to_string());
        }
        assert_eq!(slow.recv().await, Notice::Missed);
    }

    #[test]
    fn glob_characters_of_a_prefix_are_escaped() {
        assert_eq!(glob_escape("herald"), "herald");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
