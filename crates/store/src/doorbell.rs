//! An in-process doorbell, rung after every commit so local readers wake at once instead of
//! waiting for their next poll. It is only a hint; polling stays the ground truth.

use std::sync::Arc;

use tokio::sync::watch;

/// The ringing side, owned by a store. The value counts local commits and remote rings apart,
/// so the Postgres notifier forwards only local commits to other processes and two
/// processes never echo each other's doorbells forever.
#[derive(Debug, Clone)]
pub struct Doorbell {
    // A watch channel, unlike `Notify`, cannot lose a ring that comes between a reader's
    // read and its wait: the reader compares versions, not wake-ups.
    tx: Arc<watch::Sender<Rings>>,
}

/// How often the bell was rung, by this process's commits and by other processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rings {
    pub local: u64,
    pub remote: u64,
}

impl Default for Doorbell {
    fn default() -> Self {
        Doorbell {
            tx: Arc::new(watch::channel(Rings::default()).0),
        }
    }
}

impl Doorbell {
    /// Rung after a commit in this process.
    pub fn ring(&self) {
        self.tx.send_modify(|r| r.local = r.local.wrapping_add(1));
    }

    /// Rung when another process says it committed.
    pub fn ring_remote(&self) {
        self.tx.send_modify(|r| r.remote = r.remote.wrapping_add(1));
    }

    pub fn listen(&self) -> Listener {
        Listener {
            rx: self.tx.subscribe(),
        }
    }
}

/// The listening side, one per reader.
#[derive(Debug, Clone)]
pub struct Listener {
    rx: watch::Receiver<Rings>,
}

impl Listener {
    /// Marks every ring so far as seen and returns the counts; call before reading.
    pub fn mark_seen(&mut self) -> Rings {
        *self.rx.borrow_and_update()
    }

    /// Waits for a ring newer than the last `mark_seen`.
    pub async fn rung(&mut self) {
        // The sender lives as long as the store; if it is gone, wait forever and let polling work.
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
