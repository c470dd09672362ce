//! What `dongcha serve` keeps between restarts: conversation turns per (platform, chat), the updates a
//! platform delivered and dongcha answered, the offset confirmed to the platform, the operators' audit
//! trail, and the data version that tells a running service the shop's data changed.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, WritePool};

/// One question and what answered it, as [`Store::record_turn`] keeps it.
#[derive(Debug, Clone)]
pub struct TurnRecord<'a> {
    pub platform: &'a str,
    pub chat_id: &'a str,
    pub user_id: &'a str,
    /// "operator" or "customer".
    pub role: &'a str,
    pub question: &'a str,
    pub tool: &'a str,
    /// JSON object of the call's arguments.
    pub args: &'a str,
    pub reply: &'a str,
    pub lang: &'a str,
    /// The platform's update this turn answers; stored in the same transaction, so it is answered once.
    pub update_id: Option<i64>,
    /// The serve process that sends the reply (its `instance:` lease): when it is gone with the reply
    /// unsent, another process sends it.
    pub instance: Option<&'a str>,
    /// The reply goes back in the response to the platform's delivery (Telegram's webhook): stored as
    /// sent, so no outbox ever sends it; a redelivery gets it again from [`Store::reply_sent_in_response`].
    pub in_response: bool,
}

/// A stored turn, for follow-ups.
#[derive(Debug, Clone, Serialize)]
pub struct StoredTurn {
    pub seq: i64,
    pub question: String,
    pub tool: String,
    pub args: String,
    pub reply: String,
}

/// One line of the operators' audit trail.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub platform: &'a str,
    pub user_id: &'a str,
    pub chat_id: &'a str,
    pub question: &'a str,
    pub tool: &'a str,
    pub args: &'a str,
    pub latency_ms: f64,
    pub outcome: &'a str,
}

/// What the shop's data is at: the last import batch and the last enrichment. Shared results computed
/// from an older version are stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataVersion(pub String);

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// The data version: last finished import (id, time), review/post labels (count, last time).
    pub async fn data_version(&self) -> Result<DataVersion, StoreError> {
        on_db!(self, pool => {
            let row = sqlx::query(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM import_batches), \
                        (SELECT COALESCE(MAX(finished_at), '') FROM import_batches), \
                        (SELECT COUNT(*) FROM review_nlp), \
                        (SELECT COALESCE(MAX(labelled_at), '') FROM review_nlp), \
                        (SELECT COALESCE(MAX(labelled_at), '') FROM post_nlp)",
            )
            .fetch_one(pool)
            .await?;
            Ok(DataVersion(format!(
                "{}@{}/{}@{}/{}",
                row.get::<i64, _>(0),
                row.get::<String, _>(1),
                row.get::<i64, _>(2),
                row.get::<String, _>(3),
                row.get::<String, _>(4)
            )))
        })
    }

    /// The last `limit` turns of a conversation since its last reset, oldest first.
    pub async fn recent_turns(
        &self,
        platform: &str,
        chat_id: &str,
        limit: i64,
    ) -> Result<Vec<StoredTurn>, StoreError> {
        on_db!(self, pool => {
            let rows = sqlx::query(
                "SELECT t.seq, t.question, t.tool, t.args, t.reply FROM conversation_turns t \
                 LEFT JOIN conversations c ON c.platform = t.platform AND c.chat_id = t.chat_id \
                 WHERE t.platform = $1 AND t.chat_id = $2 AND t.seq > COALESCE(c.reset_at, 0) \
                 ORDER BY t.seq DESC LIMIT $3",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out: Vec<StoredTurn> = rows
                .iter()
                .map(|r| StoredTurn {
                    seq: r.get(0),
                    question: r.get(1),
                    tool: r.get(2),
                    args: r.get(3),
                    reply: r.get(4),
                })
                .collect();
            out.reverse();
            Ok(out)
        })
    }

    /// Whether this platform update was already answered.
    pub async fn update_answered(
        &self,
        platform: &str,
        update_id: i64,
    ) -> Result<bool, StoreError> {
        on_db!(self, pool => {
            Ok(sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM platform_updates WHERE platform = $1 AND update_id = $2",
            )
            .bind(platform)
            .bind(update_id)
            .fetch_one(pool)
            .await?
                > 0)
        })
    }

    /// The reply stored for an update, with its chat: what a client that asks again with the same
    /// update (an HTTP retry with the same idempotency key) is given instead of a second answer.
    pub async fn stored_reply(
        &self,
        platform: &str,
        update_id: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.reply_where(platform, update_id, "").await
    }

    /// The reply stored for an update that was answered in the response to its delivery (chat, reply):
    /// what a redelivery of that update (the response never reached the platform) is answered with.
    /// None for an update not answered, or answered through the platform's API.
    pub async fn reply_sent_in_response(
        &self,
        platform: &str,
        update_id: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.reply_where(platform, update_id, " AND sent_in = 'response'")
            .await
    }

    async fn reply_where(
        &self,
        platform: &str,
        update_id: i64,
        and: &'static str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let sql = format!(
            "SELECT chat_id, reply FROM platform_updates WHERE platform = $1 AND update_id = $2{and}"
        );
        on_db!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(platform)
                .bind(update_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    /// Stores a turn, and the update it answers, in one transaction. Returns false (and stores nothing)
    /// when that update was already answered.
    pub async fn record_turn(&self, t: &TurnRecord<'_>) -> Result<bool, StoreError> {
        on_db!(self, pool => {
            let mut tx = pool.conversation_tx(t.platform, t.chat_id).await?;
            let at = now();
            if let Some(u) = t.update_id {
                let done = sqlx::query(
                    "INSERT INTO platform_updates \
                     (platform, update_id, chat_id, answered_at, reply, instance, sent_at, sent_in) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .bind(t.platform)
                .bind(u)
                .bind(t.chat_id)
                .bind(&at)
                .bind(t.reply)
                .bind(t.instance)
                .bind(t.in_response.then_some(at.as_str()))
                .bind(t.in_response.then_some("response"))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
            }
            sqlx::query(
                "INSERT INTO conversations (platform, chat_id, lang) VALUES ($1, $2, $3) \
                 ON CONFLICT (platform, chat_id) DO UPDATE SET lang = excluded.lang",
            )
            .bind(t.platform)
            .bind(t.chat_id)
            .bind(t.lang)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO conversation_turns \
                 (platform, chat_id, seq, user_id, role, question, tool, args, reply, created_at) \
                 SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5, $6, $7, $8, $9 FROM conversation_turns \
                 WHERE platform = $10 AND chat_id = $11",
            )
            .bind(t.platform)
            .bind(t.chat_id)
            .bind(t.user_id)
            .bind(t.role)
            .bind(t.question)
            .bind(t.tool)
            .bind(t.args)
            .bind(t.reply)
            .bind(&at)
            .bind(t.platform)
            .bind(t.chat_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The reply to an update reached the platform.
    pub async fn mark_sent(&self, platform: &str, update_id: i64) -> Result<(), StoreError> {
        self.mark_sent_all(&[(platform, update_id)]).await
    }

    /// The replies to these (platform, update id)s reached their platforms: one transaction, one commit.
    pub async fn mark_sent_all(&self, sent: &[(&str, i64)]) -> Result<(), StoreError> {
        const MARK: &str =
            "UPDATE platform_updates SET sent_at = $1 WHERE platform = $2 AND update_id = $3";
        let at = now();
        // A mark lost with the server only sends a reply again, which a mark not yet written does too.
        on_db!(self, pool => {
            let mut tx = pool.relaxed_tx().await?;
            for (platform, id) in sent {
                sqlx::query(MARK).bind(&at).bind(platform).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Forgets a conversation's turns for follow-ups (`/reset`); they stay in the store.
    pub async fn reset_conversation(
        &self,
        platform: &str,
        chat_id: &str,
    ) -> Result<(), StoreError> {
        on_db!(self, pool => {
            sqlx::query(
                "INSERT INTO conversations (platform, chat_id, reset_at) VALUES ($1, $2, \
                 (SELECT COALESCE(MAX(seq), 0) FROM conversation_turns WHERE platform = $3 AND chat_id = $4)) \
                 ON CONFLICT (platform, chat_id) DO UPDATE SET reset_at = excluded.reset_at",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(platform)
            .bind(chat_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The offset last confirmed to a platform (0 when none).
    pub async fn platform_offset(&self, platform: &str) -> Result<i64, StoreError> {
        on_db!(self, pool => {
            Ok(sqlx::query_scalar::<_, i64>(
                "SELECT COALESCE(MAX(next_offset), 0) FROM platform_offsets WHERE platform = $1",
            )
            .bind(platform)
            .fetch_one(pool)
            .await?)
        })
    }

    pub async fn set_platform_offset(&self, platform: &str, next: i64) -> Result<(), StoreError> {
        on_db!(self, pool => {
            sqlx::query(
                "INSERT INTO platform_offsets (platform, next_offset) VALUES ($1, $2) \
                 ON CONFLICT (platform) DO UPDATE SET next_offset = CASE \
                 WHEN excluded.next_offset > platform_offsets.next_offset THEN excluded.next_offset \
                 ELSE platform_offsets.next_offset END",
            )
            .bind(platform)
            .bind(next)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Drops everything kept for a platform (benches start afresh).
    pub async fn forget_platform(&self, platform: &str) -> Result<(), StoreError> {
        on_db!(self, pool => {
            for table in [
                "conversation_turns",
                "conversations",
                "platform_updates",
                "platform_offsets",
                "audit_log",
                "handoffs",
                "outbox",
            ] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE platform = $1"
                )))
                .bind(platform)
                .execute(pool)
                .await?;
            }
            Ok(())
        })
    }

    pub async fn audit(&self, e: &AuditEntry<'_>) -> Result<(), StoreError> {
        on_db!(self, pool => {
            sqlx::query(
                "INSERT INTO audit_log (at, platform, user_id, chat_id, question, tool, args, latency_ms, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(now())
            .bind(e.platform)
            .bind(e.user_id)
            .bind(e.chat_id)
            .bind(e.question)
            .bind(e.tool)
            .bind(e.args)
            .bind(e.latency_ms)
            .bind(e.outcome)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Audit lines, newest first (for tests and admins).
    pub async fn audit_lines(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        on_db!(self, pool => {
            let rows = sqlx::query(
                // `rowid`: SQLite's own row key, a column of that name in the Postgres schema.
                "SELECT platform, user_id, tool, outcome FROM audit_log ORDER BY rowid DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn<'a>(q: &'a str, update: Option<i64>) -> TurnRecord<'a> {
        TurnRecord {
            platform: "telegram",
            chat_id: "42",
            user_id: "7",
            role: "operator",
            question: q,
            tool: "sales_summary",
            args: "{}",
            reply: "r",
            lang: "zh",
            update_id: update,
            instance: None,
            in_response: false,
        }
    }

    #[tokio::test]
    async fn an_update_is_recorded_once_and_reset_hides_earlier_turns() {
        for (_d, s) in crate::store::test_stores(2).await {
            assert!(s.record_turn(&turn("a", Some(10))).await.unwrap());
            assert!(!s.record_turn(&turn("a again", Some(10))).await.unwrap());
            assert!(s.update_answered("telegram", 10).await.unwrap());
            assert_eq!(s.orphan_replies("telegram", "me").await.unwrap().len(), 1);
            s.mark_sent("telegram", 10).await.unwrap();
            assert!(s.orphan_replies("telegram", "me").await.unwrap().is_empty());
            assert!(s.record_turn(&turn("b", Some(11))).await.unwrap());
            let t = s.recent_turns("telegram", "42", 10).await.unwrap();
            assert_eq!(
                t.iter().map(|t| t.question.as_str()).collect::<Vec<_>>(),
                ["a", "b"]
            );
            assert_eq!(t[1].seq, 2);
            s.reset_conversation("telegram", "42").await.unwrap();
            assert!(
                s.recent_turns("telegram", "42", 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(s.record_turn(&turn("c", None)).await.unwrap());
            let t = s.recent_turns("telegram", "42", 10).await.unwrap();
            assert_eq!(t.len(), 1);
            assert_eq!(t[0].seq, 3);
        }
    }

    #[tokio::test]
    async fn a_reply_sent_in_the_response_is_never_an_orphan_and_is_found_for_a_redelivery() {
        for (_d, s) in crate::store::test_stores(2).await {
            let mut t = turn("a", Some(20));
            t.in_response = true;
            assert!(s.record_turn(&t).await.unwrap());
            // No process sends it again, whatever happens to the one that stored it.
            assert!(s.orphan_replies("telegram", "me").await.unwrap().is_empty());
            assert_eq!(
                s.reply_sent_in_response("telegram", 20).await.unwrap(),
                Some(("42".to_string(), "r".to_string()))
            );
            // A reply sent through the API is not one a redelivery is answered with.
            assert!(s.record_turn(&turn("b", Some(21))).await.unwrap());
            s.mark_sent("telegram", 21).await.unwrap();
            assert_eq!(
                s.reply_sent_in_response("telegram", 21).await.unwrap(),
                None
            );
            assert_eq!(
                s.reply_sent_in_response("telegram", 22).await.unwrap(),
                None
            );
        }
    }

    #[tokio::test]
    async fn replies_marked_sent_together_are_all_marked_and_no_other() {
        for (_d, s) in crate::store::test_stores(2).await {
            for u in 20..25 {
                assert!(s.record_turn(&turn("q", Some(u))).await.unwrap());
            }
            s.mark_sent_all(&[("telegram", 21), ("telegram", 23), ("discord", 24)])
                .await
                .unwrap();
            let left: Vec<i64> = s
                .orphan_replies("telegram", "me")
                .await
                .unwrap()
                .iter()
                .map(|o| o.0)
                .collect();
            assert_eq!(left, [20, 22, 24]);
        }
    }

    #[tokio::test]
    async fn the_offset_only_moves_forward() {
        for (_d, s) in crate::store::test_stores(2).await {
            assert_eq!(s.platform_offset("telegram").await.unwrap(), 0);
            s.set_platform_offset("telegram", 12).await.unwrap();
            s.set_platform_offset("telegram", 5).await.unwrap();
            assert_eq!(s.platform_offset("telegram").await.unwrap(), 12);
        }
    }
}
