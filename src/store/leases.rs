//! Leases: what only one `dongcha serve` process on a store may do at a time, and which processes are
//! alive (`instance:ID`). Time is the database's clock on PostgreSQL (processes on several machines
//! agree on it whatever their own clocks say); SQLite is one machine's file, so its clock is the one.

use std::time::Duration;

use sqlx::Row;

use super::{Db, Store, StoreError};

/// The lease name a process holds while it runs.
pub fn instance_lease(instance: &str) -> String {
    format!("instance:{instance}")
}

/// Milliseconds since the epoch, as SQL on PostgreSQL.
const PG_NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

fn local_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Takes the lease `name` for `holder` for `ttl`, or renews it when `holder` has it already. True
    /// when `holder` has it now; false when another holder's lease has not expired.
    pub async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let ttl = ttl.as_millis() as i64;
        let taken = match &self.db {
            Db::Sqlite(p) => {
                let now = local_now_ms();
                sqlx::query(
                    "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
                     WHERE leases.holder = excluded.holder OR leases.expires_ms < $4",
                )
                .bind(name)
                .bind(holder)
                .bind(now + ttl)
                .bind(now)
                .execute(p)
                .await?
                .rows_affected()
            }
            Db::Postgres(p) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, {PG_NOW_MS} + $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
                     WHERE leases.holder = excluded.holder OR leases.expires_ms < {PG_NOW_MS}"
                )))
                .bind(name)
                .bind(holder)
                .bind(ttl)
                .execute(p)
                .await?
                .rows_affected()
            }
        };
        Ok(taken == 1)
    }

    /// Gives up every lease `holder` has (a process stopping: the others take over at once).
    pub async fn release_leases(&self, holder: &str) -> Result<(), StoreError> {
        on_db!(self, p => {
            sqlx::query("DELETE FROM leases WHERE holder = $1")
                .bind(holder)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Gives up one lease, if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        on_db!(self, p => {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Who holds `name` now (None when nobody does, or the lease has expired).
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = match &self.db {
            Db::Sqlite(p) => {
                sqlx::query("SELECT holder FROM leases WHERE name = $1 AND expires_ms >= $2")
                    .bind(name)
                    .bind(local_now_ms())
                    .fetch_optional(p)
                    .await?
                    .map(|r| r.get::<String, _>(0))
            }
            Db::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT holder FROM leases WHERE name = $1 AND expires_ms >= {PG_NOW_MS}"
            )))
            .bind(name)
            .fetch_optional(p)
            .await?
            .map(|r| r.get::<String, _>(0)),
        };
        Ok(row)
    }

    /// Replies to `platform`'s updates stored but never sent by a process that is gone: stored by no
    /// instance (before leases), or by an instance other than `me` whose `instance:` lease has expired.
    /// (update id, chat, reply text), oldest first.
    pub async fn orphan_replies(
        &self,
        platform: &str,
        me: &str,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        const SELECT: &str = "SELECT update_id, chat_id, reply FROM platform_updates p \
             WHERE platform = $1 AND sent_at IS NULL AND reply <> '' \
             AND (instance IS NULL OR (instance <> $2 AND NOT EXISTS (SELECT 1 FROM leases l \
             WHERE l.name = 'instance:' || p.instance AND l.expires_ms >= ";
        let rows = match &self.db {
            Db::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "{SELECT}$3))) ORDER BY update_id"
            )))
            .bind(platform)
            .bind(me)
            .bind(local_now_ms())
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
            Db::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "{SELECT}{PG_NOW_MS}))) ORDER BY update_id"
            )))
            .bind(platform)
            .bind(me)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
        };
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{TurnRecord, test_stores};

    #[tokio::test]
    async fn a_lease_is_held_by_one_holder_until_it_expires_or_is_released() {
        for (_dir, s) in test_stores(4).await {
            let long = Duration::from_secs(60);
            assert!(s.lease("poll", "a", long).await.unwrap());
            assert!(
                !s.lease("poll", "b", long).await.unwrap(),
                "{:?}",
                s.backend()
            );
            // Renewing is taking it again.
            assert!(s.lease("poll", "a", long).await.unwrap());
            assert_eq!(s.lease_holder("poll").await.unwrap().as_deref(), Some("a"));
            // Another name is another lease.
            assert!(s.lease("digest", "b", long).await.unwrap());
            // Expired: the next one takes it, and the old holder cannot renew it.
            assert!(
                s.lease("short", "a", Duration::from_millis(1))
                    .await
                    .unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(s.lease_holder("short").await.unwrap(), None);
            assert!(s.lease("short", "b", long).await.unwrap());
            assert!(!s.lease("short", "a", long).await.unwrap());
            // Released: taken at once.
            s.release_leases("a").await.unwrap();
            assert!(s.lease("poll", "b", long).await.unwrap());
            s.release_lease("poll", "b").await.unwrap();
            assert_eq!(s.lease_holder("poll").await.unwrap(), None);
            assert_eq!(
                s.lease_holder("digest").await.unwrap().as_deref(),
                Some("b")
            );
        }
    }

    #[tokio::test]
    async fn concurrent_claims_of_a_free_lease_give_it_to_exactly_one() {
        for (_dir, s) in test_stores(8).await {
            for round in 0..5 {
                let name = format!("race{round}");
                let claims = (0..8).map(|i| {
                    let (s, name) = (s.clone(), name.clone());
                    tokio::spawn(async move {
                        s.lease(&name, &format!("p{i}"), Duration::from_secs(60))
                            .await
                            .unwrap()
                    })
                });
                let won = futures_util::future::join_all(claims)
                    .await
                    .into_iter()
                    .filter(|r| *r.as_ref().unwrap())
                    .count();
                assert_eq!(won, 1, "{:?} round {round}", s.backend());
            }
        }
    }

    #[tokio::test]
    async fn a_reply_left_unsent_is_an_orphan_only_once_its_process_is_gone() {
        for (_dir, s) in test_stores(4).await {
            let turn = |u: i64, instance: Option<&'static str>| TurnRecord {
                platform: "telegram",
                chat_id: "42",
                user_id: "42",
                role: "operator",
                question: "q",
                tool: "help",
                args: "{}",
                reply: "r",
                lang: "en",
                update_id: Some(u),
                instance,
                in_response: false,
            };
            let ttl = Duration::from_millis(300);
            assert!(s.lease(&instance_lease("a"), "a", ttl).await.unwrap());
            assert!(s.lease(&instance_lease("b"), "b", ttl).await.unwrap());
            assert!(s.record_turn(&turn(1, Some("a"))).await.unwrap());
            assert!(s.record_turn(&turn(2, Some("b"))).await.unwrap());
            assert!(s.record_turn(&turn(3, None)).await.unwrap());
            assert!(s.record_turn(&turn(4, Some("a"))).await.unwrap());
            s.mark_sent("telegram", 4).await.unwrap();
            let ids =
                |v: Vec<(i64, String, String)>| v.into_iter().map(|r| r.0).collect::<Vec<_>>();
            // Both alive: only the reply of no instance.
            assert_eq!(
                ids(s.orphan_replies("telegram", "b").await.unwrap()),
                vec![3]
            );
            // `a` stops renewing; `b` goes on: a's unsent reply is b's to send, never b's own.
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(s.lease(&instance_lease("b"), "b", ttl).await.unwrap());
            assert_eq!(s.orphan_replies("telegram", "b").await.unwrap().len(), 2);
            assert_eq!(
                ids(s.orphan_replies("telegram", "b").await.unwrap()),
                vec![1, 3]
            );
            // A new process `c` while b is gone too: everything unsent that is not its own.
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert_eq!(
                ids(s.orphan_replies("telegram", "c").await.unwrap()),
                vec![1, 2, 3]
            );
            assert!(s.orphan_replies("discord", "c").await.unwrap().is_empty());
        }
    }
}
