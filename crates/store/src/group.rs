//! Consumer groups: several processes share a subscription by owning its virtual partitions
//! through leases. Each member takes a fair share, renews it by heartbeat, and gives partitions
//! back when others join; a dead member's leases expire and move to the living.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::event_store::EventStore;
use crate::subscription::{self, Handler, SubscriptionOptions};
use crate::types::{CheckpointKey, PartitionFilter};

#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// Virtual partitions of the group; each is read by one member at a time, in order.
    pub partitions: u32,
    /// A lease not renewed for this long may be taken by another member.
    pub lease_ttl: Duration,
    /// How often a member renews its leases and rebalances; well under `lease_ttl`.
    pub heartbeat_interval: Duration,
    pub subscription: SubscriptionOptions,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            partitions: 16,
            lease_ttl: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(2),
            subscription: SubscriptionOptions::default(),
        }
    }
}

/// One member of a consumer group.
pub struct ConsumerGroup<S, H> {
    store: S,
    name: String,
    member: String,
    options: GroupOptions,
    handler: Arc<H>,
}

/// A partition reader owned by the group; dropping it aborts the task, so a group dropped
/// without a clean stop (a crash, in tests) leaves nothing running.
struct Reader {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: EventStore, H: Handler> ConsumerGroup<S, H> {
    pub fn new(store: S, name: impl Into<String>, handler: H, options: GroupOptions) -> Self {
        ConsumerGroup {
            store,
            name: name.into(),
            member: uuid::Uuid::now_v7().to_string(),
            options,
            handler: Arc::new(handler),
        }
    }

    /// This member's id, unique per process start.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Runs until `shutdown`; then stops the readers and gives the leases back at once.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let mut readers: HashMap<u32, Reader> = HashMap::new();
        let mut tick = tokio::time::interval(self.options.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.rebalance(&mut readers, &shutdown).await {
                tracing::warn!(%error, group = %self.name, "consumer group heartbeat failed");
            }
        }
        for (_, reader) in readers.drain() {
            stop(reader).await;
        }
        self.store.leave_group(&self.name, &self.member).await
    }

    async fn rebalance(
        &self,
        readers: &mut HashMap<u32, Reader>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let o = &self.options;
        // A reader that returned (its checkpoint was taken over) is restarted below if we
        // still hold its partition.
        readers.retain(|_, r| !r.task.is_finished());
        let beat = self
            .store
            .heartbeat(&self.name, &self.member, o.partitions, o.lease_ttl)
            .await?;
        let mut held = beat.held;
        for partition in readers
            .keys()
            .copied()
            .filter(|p| !held.contains(p))
            .collect::<Vec<_>>()
        {
            if let Some(reader) = readers.remove(&partition) {
                stop(reader).await;
            }
        }
        let fair = o.partitions.div_ceil(beat.members) as usize;
        if held.len() > fair {
            let extra = held.split_off(fair);
            for partition in &extra {
                if let Some(reader) = readers.remove(partition) {
                    stop(reader).await;
                }
            }
            self.store
                .release_leases(&self.name, &self.member, &extra)
                .await?;
        } else if held.len() < fair {
            let want = (fair - held.len()) as u32;
            held.extend(
                self.store
                    .acquire_leases(&self.name, &self.member, want, o.lease_ttl)
                    .await?,
            );
        }
        for partition in held {
            readers
                .entry(partition)
                .or_insert_with(|| self.spawn_reader(partition, shutdown));
        }
        Ok(())
    }

    fn spawn_reader(&self, partition: u32, shutdown: &CancellationToken) -> Reader {
        let stop = shutdown.child_token();
        let store = self.store.clone();
        let handler = Arc::clone(&self.handler);
        let key = CheckpointKey::new(self.name.clone(), partition);
        let owner = self.member.clone();
        let mut options = self.options.subscription.clone();
        options.filter.partition = Some(PartitionFilter {
            count: self.options.partitions,
            index: partition,
        });
        let token = stop.clone();
        let task = tokio::spawn(async move {
            if let Err(error) =
                subscription::run(&store, &key, Some(&owner), &options, &handler, &token).await
            {
                tracing::warn!(%error, group = %key.subscription, partition, "partition reader stopped");
            }
        });
        Reader { stop, task }
    }
}

async fn stop(mut reader: Reader) {
    reader.stop.cancel();
    // A reader in the middle of a batch finishes it (or rolls it back); give it a moment.
    if tokio::time::timeout(Duration::from_secs(10), &mut reader.task)
        .await
        .is_err()
    {
        reader.task.abort();
    }
}
