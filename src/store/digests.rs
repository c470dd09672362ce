//! What scheduled digests keep: one row per digest and period (so a period is reported once), the last
//! scheduled run each digest handled, and the messages a digest queues for the chat front ends (in the
//! outbox, in the same transaction as its row).

use serde::Serialize;

use super::{Store, StoreError, WritePool};

/// A digest as recorded.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DigestRow {
    pub id: i64,
    pub name: String,
    pub period_from: String,
    pub period_to: String,
    pub slot: String,
    pub status: String,
    pub text: String,
    pub created_at: String,
}

/// A message a digest queues: for `platform` (a chat front end, or "webhook"), to `chat_id`, with an
/// optional picture (the text is then its caption).
#[derive(Debug, Clone)]
pub struct Queued {
    pub platform: String,
    pub chat_id: String,
    pub text: String,
    pub photo: Option<Vec<u8>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Whether this digest already reported this period.
    pub async fn digest_recorded(
        &self,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        on_db!(self, pool => {
            let r: Option<(i64,)> = sqlx::query_as(
                "SELECT id FROM digests WHERE name = $1 AND period_from = $2 AND period_to = $3",
            )
            .bind(name)
            .bind(from)
            .bind(to)
            .fetch_optional(pool)
            .await?;
            Ok(r.is_some())
        })
    }

    /// Records a digest of a period and queues its messages, in one transaction. `false` (and nothing
    /// queued) when the period was already reported: a digest is never sent twice.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_digest(
        &self,
        name: &str,
        from: &str,
        to: &str,
        slot: &str,
        status: &str,
        text: &str,
        output: &str,
        queue: &[Queued],
    ) -> Result<bool, StoreError> {
        on_db!(self, pool => {
            let mut tx = pool.write_tx().await?;
            let done = sqlx::query(
                "INSERT INTO digests (name, period_from, period_to, slot, status, text, output, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name, period_from, period_to) DO NOTHING",
            )
            .bind(name)
            .bind(from)
            .bind(to)
            .bind(slot)
            .bind(status)
            .bind(text)
            .bind(output)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            for q in queue {
                sqlx::query(
                    "INSERT INTO outbox (platform, chat_id, text, created_at, photo) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&q.platform)
                .bind(&q.chat_id)
                .bind(&q.text)
                .bind(now())
                .bind(q.photo.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The digests recorded under `name`, newest first.
    pub async fn digests(&self, name: &str) -> Result<Vec<DigestRow>, StoreError> {
        on_db!(self, pool => {
            Ok(sqlx::query_as::<_, DigestRow>(
                "SELECT id, name, period_from, period_to, slot, status, text, created_at FROM digests \
                 WHERE name = $1 ORDER BY id DESC",
            )
            .bind(name)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The last scheduled run `name` handled (UTC, RFC 3339), if any.
    pub async fn digest_mark(&self, name: &str) -> Result<Option<String>, StoreError> {
        on_db!(self, pool => {
            let r: Option<(String,)> =
                sqlx::query_as("SELECT last_slot FROM digest_marks WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await?;
            Ok(r.map(|(s,)| s))
        })
    }

    /// Remembers that `name` handled its run at `slot`.
    pub async fn set_digest_mark(&self, name: &str, slot: &str) -> Result<(), StoreError> {
        on_db!(self, pool => {
            sqlx::query(
                "INSERT INTO digest_marks (name, last_slot) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET last_slot = excluded.last_slot",
            )
            .bind(name)
            .bind(slot)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::support::NewHandoff;

    /// Regression: a customer's handoff failed with "database is locked" (HTTP 500) when the digest
    /// scheduler wrote its mark at the same moment: open_handoff reads, then writes, in a transaction
    /// whose snapshot the other writer had made stale.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handoff_opened_while_the_scheduler_writes_is_not_refused_as_locked() {
        for (_dir, store) in crate::store::test_stores(4).await {
            let marks = {
                let s = store.clone();
                tokio::spawn(async move {
                    for i in 0..300 {
                        s.set_digest_mark("weekly", &format!("2026-06-01T01:00:{:02}Z", i % 60))
                            .await?;
                    }
                    Ok::<_, StoreError>(())
                })
            };
            let handoffs = {
                let s = store.clone();
                tokio::spawn(async move {
                    for i in 0..300 {
                        s.open_handoff(&NewHandoff {
                            platform: "site",
                            chat_id: &format!("c{i}"),
                            user_id: "u",
                            lang: "zh",
                            reason: "asked_for_person",
                            question: "转人工",
                            last_messages: &[],
                        })
                        .await?;
                    }
                    Ok::<_, StoreError>(())
                })
            };
            marks.await.unwrap().unwrap();
            handoffs.await.unwrap().unwrap();
            assert_eq!(store.open_handoffs().await.unwrap().len(), 300);
            store.close().await;
        }
    }
}
