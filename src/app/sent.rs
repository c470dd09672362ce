//! Marking replies sent, at once. A chat platform has no idempotency key: a reply that reached it but is
//! not yet marked sent when the process dies is sent again by whoever takes over (at-least-once, on
//! purpose: the alternative loses replies). That window is what this keeps short: marks go through a
//! connection of their own (never behind the questions being answered, which hold the main pool under
//! load), and every mark waiting when one is written goes with it, in one transaction (one commit for
//! a burst of replies instead of one each).

use tokio::sync::{mpsc, oneshot};

use crate::store::Store;

/// Most marks written in one transaction.
const BATCH: usize = 256;

type Mark = (&'static str, i64, oneshot::Sender<()>);

/// The writer of sent marks (a task of its own, ends with the app).
pub(super) struct SentMarks {
    tx: mpsc::UnboundedSender<Mark>,
}

impl SentMarks {
    /// Starts the writer on `store` (the app's own connections, apart from the main pool).
    pub(super) fn spawn(store: Store) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Mark>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let keys: Vec<(&str, i64)> = batch.iter().map(|(p, id, _)| (*p, *id)).collect();
                if let Err(e) = store.mark_sent_all(&keys).await {
                    // Still unsent in the store: sent again only if this process dies.
                    tracing::warn!(replies = keys.len(), "marking replies as sent: {e}");
                }
                for (_, _, done) in batch.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Self { tx }
    }

    /// Marks the reply to `platform`'s update `update_id` as sent; returns once it is written (or
    /// failed, which is logged).
    pub(super) async fn mark(&self, platform: &'static str, update_id: i64) {
        let (done, written) = oneshot::channel();
        if self.tx.send((platform, update_id, done)).is_ok() {
            let _ = written.await;
        }
    }
}
