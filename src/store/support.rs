//! What customer service keeps: the knowledge base's entries (imported from the shop's files) and the
//! handoffs of conversations to a person.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, WritePool};

/// A knowledge-base entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KbRow {
    pub id: String,
    pub lang: String,
    pub questions: Vec<String>,
    pub answer: String,
    pub tags: Vec<String>,
    pub source: String,
    pub digest: String,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KbImport {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// An open or closed handoff.
#[derive(Debug, Clone, Serialize)]
pub struct HandoffRow {
    pub id: i64,
    pub platform: String,
    pub chat_id: String,
    pub user_id: String,
    pub lang: String,
    pub reason: String,
    pub question: String,
    pub last_messages: Vec<String>,
    pub opened_at: String,
    pub released_at: Option<String>,
    pub released_by: Option<String>,
}

/// A new handoff, as [`Store::open_handoff`] stores it.
#[derive(Debug, Clone)]
pub struct NewHandoff<'a> {
    pub platform: &'a str,
    pub chat_id: &'a str,
    pub user_id: &'a str,
    pub lang: &'a str,
    pub reason: &'a str,
    pub question: &'a str,
    pub last_messages: &'a [String],
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Links a chat to a customer inside a write transaction (of either backend).
macro_rules! link_in {
    ($tx:expr, $platform:expr, $chat_id:expr, $customer:expr, $by:expr, $stamp:expr) => {
        sqlx::query(
            "INSERT INTO support_links (platform, chat_id, customer, linked_by, linked_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (platform, chat_id) DO UPDATE SET \
             customer = excluded.customer, linked_by = excluded.linked_by, linked_at = excluded.linked_at",
        )
        .bind($platform)
        .bind($chat_id)
        .bind($customer)
        .bind($by)
        .bind($stamp)
        .execute(&mut *$tx)
        .await
    };
}

/// A [`HandoffRow`] from a row of [`handoff_columns!`] (of either backend's row type).
macro_rules! handoff {
    () => {
        |r| HandoffRow {
            id: r.get(0),
            platform: r.get(1),
            chat_id: r.get(2),
            user_id: r.get(3),
            lang: r.get(4),
            reason: r.get(5),
            question: r.get(6),
            last_messages: json_list(&r.get::<String, _>(7)),
            opened_at: r.get(8),
            released_at: r.get(9),
            released_by: r.get(10),
        }
    };
}

macro_rules! handoff_columns {
    () => {
        "id, platform, chat_id, user_id, lang, reason, question, last_messages, opened_at, released_at, \
         released_by"
    };
}

impl Store {
    /// Makes the knowledge base exactly `entries` (by id and language), in one transaction: new entries
    /// are added, entries whose content changed are replaced, entries no longer present are removed.
    pub async fn kb_replace(&self, entries: &[KbRow]) -> Result<KbImport, StoreError> {
        on_db!(self, pool => {
            let mut tx = pool.write_tx().await?;
            let old: Vec<(String, String, String)> =
                sqlx::query_as("SELECT id, lang, digest FROM kb_entries")
                    .fetch_all(&mut *tx)
                    .await?;
            let old: std::collections::HashMap<(String, String), String> = old
                .into_iter()
                .map(|(id, lang, d)| ((id, lang), d))
                .collect();
            let mut out = KbImport::default();
            let stamp = now();
            for e in entries {
                match old.get(&(e.id.clone(), e.lang.clone())) {
                    Some(d) if *d == e.digest => {
                        out.unchanged += 1;
                        continue;
                    }
                    Some(_) => out.changed += 1,
                    None => out.added += 1,
                }
                sqlx::query(
                    "INSERT INTO kb_entries (id, lang, questions, answer, tags, source, digest, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id, lang) DO UPDATE SET \
                     questions = excluded.questions, answer = excluded.answer, tags = excluded.tags, \
                     source = excluded.source, digest = excluded.digest, updated_at = excluded.updated_at",
                )
                .bind(&e.id)
                .bind(&e.lang)
                .bind(serde_json::to_string(&e.questions).unwrap_or_default())
                .bind(&e.answer)
                .bind(serde_json::to_string(&e.tags).unwrap_or_default())
                .bind(&e.source)
                .bind(&e.digest)
                .bind(&stamp)
                .execute(&mut *tx)
                .await?;
            }
            let keep: std::collections::HashSet<(&str, &str)> = entries
                .iter()
                .map(|e| (e.id.as_str(), e.lang.as_str()))
                .collect();
            for (id, lang) in old.keys() {
                if !keep.contains(&(id.as_str(), lang.as_str())) {
                    sqlx::query("DELETE FROM kb_entries WHERE id = $1 AND lang = $2")
                        .bind(id)
                        .bind(lang)
                        .execute(&mut *tx)
                        .await?;
                    out.removed += 1;
                }
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Every knowledge-base entry, by id then language.
    pub async fn kb_entries(&self) -> Result<Vec<KbRow>, StoreError> {
        on_db!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, lang, questions, answer, tags, source, digest FROM kb_entries",
            )
            .fetch_all(pool)
            .await?;
            // By id then language, as bytes (the same on both backends, whatever their collation).
            let mut out: Vec<KbRow> = rows
                .iter()
                .map(|r| KbRow {
                    id: r.get(0),
                    lang: r.get(1),
                    questions: json_list(&r.get::<String, _>(2)),
                    answer: r.get(3),
                    tags: json_list(&r.get::<String, _>(4)),
                    source: r.get(5),
                    digest: r.get(6),
                })
                .collect();
            out.sort_by(|a, b| {
                (a.id.as_bytes(), a.lang.as_bytes()).cmp(&(b.id.as_bytes(), b.lang.as_bytes()))
            });
            Ok(out)
        })
    }

    /// What the knowledge base is at (its entries' digests), for a running service to notice an import.
    pub async fn kb_version(&self) -> Result<String, StoreError> {
        on_db!(self, pool => {
            let (n, last): (i64, String) =
                sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(updated_at), '') FROM kb_entries")
                    .fetch_one(pool)
                    .await?;
            Ok(format!("{n}@{last}"))
        })
    }

    /// Opens a handoff of a conversation to a person; returns its id. A conversation has at most one
    /// open handoff: if one is open already, that one's id is returned.
    pub async fn open_handoff(&self, h: &NewHandoff<'_>) -> Result<i64, StoreError> {
        on_db!(self, pool => {
            let mut tx = pool.write_tx().await?;
            let open: Option<(i64,)> = sqlx::query_as(
                "SELECT id FROM handoffs WHERE platform = $1 AND chat_id = $2 AND released_at IS NULL",
            )
            .bind(h.platform)
            .bind(h.chat_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id,)) = open {
                return Ok(id);
            }
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO handoffs (platform, chat_id, user_id, lang, reason, question, last_messages, \
                 opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(h.platform)
            .bind(h.chat_id)
            .bind(h.user_id)
            .bind(h.lang)
            .bind(h.reason)
            .bind(h.question)
            .bind(serde_json::to_string(h.last_messages).unwrap_or_default())
            .bind(now())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    /// The conversation's open handoff, if a person owns it.
    pub async fn open_handoff_of(
        &self,
        platform: &str,
        chat_id: &str,
    ) -> Result<Option<HandoffRow>, StoreError> {
        on_db!(self, pool => {
            let r = sqlx::query(concat!(
                "SELECT ",
                handoff_columns!(),
                " FROM handoffs WHERE platform = $1 AND chat_id = $2 AND released_at IS NULL"
            ))
            .bind(platform)
            .bind(chat_id)
            .fetch_optional(pool)
            .await?;
            Ok(r.as_ref().map(handoff!()))
        })
    }

    pub async fn handoff(&self, id: i64) -> Result<Option<HandoffRow>, StoreError> {
        on_db!(self, pool => {
            let r = sqlx::query(concat!(
                "SELECT ",
                handoff_columns!(),
                " FROM handoffs WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(r.as_ref().map(handoff!()))
        })
    }

    /// The handoffs open now, oldest first.
    pub async fn open_handoffs(&self) -> Result<Vec<HandoffRow>, StoreError> {
        on_db!(self, pool => {
            let rows = sqlx::query(concat!(
                "SELECT ",
                handoff_columns!(),
                " FROM handoffs WHERE released_at IS NULL ORDER BY id"
            ))
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(handoff!()).collect())
        })
    }

    /// Releases an open handoff and queues `notice` (in the handoff's language) to its customer, in one
    /// transaction: the customer who finds the bot answering again has the note already, and a crash
    /// cannot release without telling. False when it was not open.
    pub async fn release_handoff(
        &self,
        id: i64,
        by: &str,
        notice: ReleaseNotice<'_>,
    ) -> Result<bool, StoreError> {
        Ok(!self
            .release_where(Released::Id(id), by, notice)
            .await?
            .is_empty())
    }

    /// Releases the handoffs opened before `before` (RFC 3339) that are still open, each with its
    /// `notice` queued in the same transaction; returns them.
    pub async fn expire_handoffs(
        &self,
        before: &str,
        notice: ReleaseNotice<'_>,
    ) -> Result<Vec<HandoffRow>, StoreError> {
        self.release_where(Released::OpenedBefore(before), "timeout", notice)
            .await
    }

    async fn release_where(
        &self,
        which: Released<'_>,
        by: &str,
        notice: ReleaseNotice<'_>,
    ) -> Result<Vec<HandoffRow>, StoreError> {
        const SET: &str =
            "UPDATE handoffs SET released_at = $1, released_by = $2 WHERE released_at IS NULL AND ";
        on_db!(self, pool => {
            let mut tx = pool.write_tx().await?;
            let at = now();
            let rows = match which {
                Released::Id(id) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{SET}id = $3 RETURNING {}",
                        handoff_columns!()
                    )))
                    .bind(&at)
                    .bind(by)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?
                }
                Released::OpenedBefore(before) => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "{SET}opened_at < $3 RETURNING {}",
                        handoff_columns!()
                    )))
                    .bind(&at)
                    .bind(by)
                    .bind(before)
                    .fetch_all(&mut *tx)
                    .await?
                }
            };
            let rows: Vec<HandoffRow> = rows.iter().map(handoff!()).collect();
            for h in &rows {
                sqlx::query(
                    "INSERT INTO outbox (platform, chat_id, text, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&h.platform)
                .bind(&h.chat_id)
                .bind(if h.lang == "zh" { notice.zh } else { notice.en })
                .bind(&at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(rows)
        })
    }
}

/// Which open handoffs a release is of.
enum Released<'a> {
    Id(i64),
    OpenedBefore(&'a str),
}

/// What a customer is told when a person hands the conversation back, in each language.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseNotice<'a> {
    pub zh: &'a str,
    pub en: &'a str,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Outgoing {
    pub id: i64,
    pub chat_id: String,
    pub text: String,
    /// The handoff it belongs to (a notice or a relayed message), if any.
    pub handoff_id: Option<i64>,
    /// A picture to send, `text` being its caption (a digest's chart).
    #[serde(skip)]
    pub photo: Option<Vec<u8>>,
}

/// Why a link code was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkRefused {
    /// No such code (or a typo).
    Unknown,
    /// The code was used already.
    Used,
    Expired,
}

/// A chat linked to a shop customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub customer: String,
    /// "shop" (the shop's system said so) or "code" (a one-time code an operator issued).
    pub linked_by: String,
}

impl Store {
    /// Queues a message for `platform`'s front end to send to `chat_id`.
    pub async fn enqueue(
        &self,
        platform: &str,
        chat_id: &str,
        text: &str,
    ) -> Result<i64, StoreError> {
        self.enqueue_for(platform, chat_id, text, None).await
    }

    /// [`Store::enqueue`] of a message that belongs to a handoff (a reply to it is for that handoff).
    pub async fn enqueue_for(
        &self,
        platform: &str,
        chat_id: &str,
        text: &str,
        handoff: Option<i64>,
    ) -> Result<i64, StoreError> {
        on_db!(self, pool => {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO outbox (platform, chat_id, text, created_at, handoff_id) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(text)
            .bind(now())
            .bind(handoff)
            .fetch_one(pool)
            .await?;
            Ok(id)
        })
    }

    /// The platform's unsent messages (of one chat, when given), oldest first.
    pub async fn outgoing(
        &self,
        platform: &str,
        chat_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Outgoing>, StoreError> {
        on_db!(self, pool => {
            Ok(sqlx::query_as::<_, Outgoing>(
                "SELECT id, chat_id, text, handoff_id, photo FROM outbox WHERE platform = $1 AND sent_at IS NULL \
                 AND ($2 IS NULL OR chat_id = $2) ORDER BY id LIMIT $3",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Marks an outbox message sent, with the platform's id of the sent message when it has one.
    pub async fn mark_outgoing_sent(
        &self,
        id: i64,
        message_id: Option<&str>,
    ) -> Result<(), StoreError> {
        on_db!(self, pool => {
            sqlx::query("UPDATE outbox SET sent_at = $1, message_id = $2 WHERE id = $3")
                .bind(now())
                .bind(message_id)
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The handoff whose notice or relayed message is `message_id` in that chat (an operator replying
    /// to it answers that handoff's customer).
    pub async fn handoff_of_message(
        &self,
        platform: &str,
        chat_id: &str,
        message_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        on_db!(self, pool => {
            let r: Option<(Option<i64>,)> = sqlx::query_as(
                "SELECT handoff_id FROM outbox WHERE platform = $1 AND chat_id = $2 AND message_id = $3",
            )
            .bind(platform)
            .bind(chat_id)
            .bind(message_id)
            .fetch_optional(pool)
            .await?;
            Ok(r.and_then(|(h,)| h))
        })
    }

    /// Stores a one-time link code for `customer`, valid for `ttl`.
    pub async fn issue_link_code(
        &self,
        code: &str,
        customer: &str,
        issued_by: &str,
        ttl: chrono::Duration,
    ) -> Result<String, StoreError> {
        on_db!(self, pool => {
            let created = chrono::Utc::now();
            let expires = (created + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            sqlx::query(
                "INSERT INTO support_link_codes (code, customer, issued_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(code)
            .bind(customer)
            .bind(issued_by)
            .bind(created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .bind(&expires)
            .execute(pool)
            .await?;
            Ok(expires)
        })
    }

    /// Takes a link code for a chat, once: the chat is then linked to the code's customer.
    pub async fn redeem_link_code(
        &self,
        code: &str,
        platform: &str,
        chat_id: &str,
    ) -> Result<Result<String, LinkRefused>, StoreError> {
        on_db!(self, pool => {
            let mut tx = pool.write_tx().await?;
            let row: Option<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT customer, expires_at, used_at FROM support_link_codes WHERE code = $1",
            )
            .bind(code)
            .fetch_optional(&mut *tx)
            .await?;
            let stamp = now();
            let customer = match row {
                None => return Ok(Err(LinkRefused::Unknown)),
                Some((_, _, Some(_))) => return Ok(Err(LinkRefused::Used)),
                Some((_, expires, None)) if expires <= stamp => return Ok(Err(LinkRefused::Expired)),
                Some((customer, _, None)) => customer,
            };
            let taken = sqlx::query(
                "UPDATE support_link_codes SET used_at = $1, used_by = $2 WHERE code = $3 AND used_at IS NULL",
            )
            .bind(&stamp)
            .bind(format!("{platform}:{chat_id}"))
            .bind(code)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken == 0 {
                return Ok(Err(LinkRefused::Used));
            }
            link_in!(tx, platform, chat_id, &customer, "code", &stamp)?;
            tx.commit().await?;
            Ok(Ok(customer))
        })
    }

    /// Links a chat to a customer on the shop system's word (replacing any earlier link).
    pub async fn link_chat(
        &self,
        platform: &str,
        chat_id: &str,
        customer: &str,
    ) -> Result<(), StoreError> {
        on_db!(self, pool => {
            let mut tx = pool.write_tx().await?;
            link_in!(tx, platform, chat_id, customer, "shop", now())?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The customer a chat is linked to, if any.
    pub async fn link_of(&self, platform: &str, chat_id: &str) -> Result<Option<Link>, StoreError> {
        on_db!(self, pool => {
            let r: Option<(String, String)> = sqlx::query_as(
                "SELECT customer, linked_by FROM support_links WHERE platform = $1 AND chat_id = $2",
            )
            .bind(platform)
            .bind(chat_id)
            .fetch_optional(pool)
            .await?;
            Ok(r.map(|(customer, linked_by)| Link {
                customer,
                linked_by,
            }))
        })
    }

    /// Whether the shop has a customer with this id.
    pub async fn customer_exists(&self, external_id: &str) -> Result<bool, StoreError> {
        on_db!(self, pool => {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers WHERE external_id = $1")
                .bind(external_id)
                .fetch_one(pool)
                .await?;
            Ok(n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTICE: ReleaseNotice<'static> = ReleaseNotice {
        zh: "机器人继续",
        en: "the bot again",
    };

    fn new<'a>(chat: &'a str, lang: &'a str) -> NewHandoff<'a> {
        NewHandoff {
            platform: "web",
            chat_id: chat,
            user_id: chat,
            lang,
            reason: "asked_for_person",
            question: "q",
            last_messages: &[],
        }
    }

    /// CI found the customer answered by the bot again (the handoff released) while the note saying
    /// so was not queued yet: release and note were two writes.
    #[tokio::test]
    async fn the_bot_answering_again_finds_the_release_notice_already_queued() {
        for (_dir, s) in crate::store::test_stores(2).await {
            let a = s.open_handoff(&new("a", "zh")).await.unwrap();
            let b = s.open_handoff(&new("b", "en")).await.unwrap();
            assert!(s.release_handoff(a, "op", NOTICE).await.unwrap());
            let queued = s.outgoing("web", Some("a"), 10).await.unwrap();
            assert_eq!(queued.len(), 1);
            assert_eq!(queued[0].text, "机器人继续");
            // Released already: no second release, no second note.
            assert!(!s.release_handoff(a, "op", NOTICE).await.unwrap());
            assert_eq!(s.outgoing("web", Some("a"), 10).await.unwrap().len(), 1);
            // Expired: the same, in the customer's language, and only the open ones.
            let far = "9999-01-01T00:00:00.000Z";
            let expired = s.expire_handoffs(far, NOTICE).await.unwrap();
            assert_eq!(expired.iter().map(|h| h.id).collect::<Vec<_>>(), vec![b]);
            let queued = s.outgoing("web", Some("b"), 10).await.unwrap();
            assert_eq!(queued.len(), 1);
            assert_eq!(queued[0].text, "the bot again");
            assert!(s.open_handoff_of("web", "b").await.unwrap().is_none());
        }
    }
}
