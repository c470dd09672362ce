//! An import's write transaction, on either backend. Parts of records get sequential ids, so every table
//! grows at its end (content-hash ids would scatter inserts over the whole B-tree and rewrite most of it
//! on each commit); only the content-key table takes random inserts. The rows themselves go in through
//! each backend's fast path: SQLite's C API (`sqlite.rs`), Postgres's `COPY` (`postgres.rs`).

use super::records::{KeyedRecord, RejectRow};
use super::{BatchId, Db, Store, StoreError};

/// The tables whose rows get sequential ids, in [`NextIds`]'s order.
const PART_TABLES: [&str; 5] = [
    "orders",
    "reviews",
    "social_posts",
    "search_events",
    "customers",
];

/// Customers already resolved in this import: skips a lookup per line. Bounded.
pub(super) const KNOWN_CUSTOMERS_CAP: usize = 1 << 20;

/// One import's write transaction on one backend and what it has learnt so far; each backend's file
/// implements the writing (`impl Import<Sqlite>`, `impl Import<Postgres>`).
pub struct Import<DB: sqlx::Database> {
    pub(super) tx: sqlx::Transaction<'static, DB>,
    pub(super) next: NextIds,
    /// External → internal customer ids seen in this import (bounded by [`KNOWN_CUSTOMERS_CAP`]).
    pub(super) known_customers: std::collections::HashMap<String, i64>,
    pub(super) known_products: std::collections::HashSet<i64>,
}

impl<DB: sqlx::Database> Import<DB> {
    pub(super) fn new(tx: sqlx::Transaction<'static, DB>, next: NextIds) -> Self {
        Self {
            tx,
            next,
            known_customers: Default::default(),
            known_products: Default::default(),
        }
    }
}

/// The next id of each part table, read once when the import's transaction (holding the write lock)
/// begins.
pub(super) struct NextIds {
    pub order: i64,
    pub review: i64,
    pub social: i64,
    pub search: i64,
    pub customer: i64,
}

/// Reads [`NextIds`] inside a transaction of either backend.
macro_rules! next_ids {
    ($tx:expr) => {{
        let mut next = [0i64; 5];
        for (slot, table) in next.iter_mut().zip(PART_TABLES) {
            let sql = format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table}");
            *slot = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut **$tx)
                .await?;
        }
        NextIds {
            order: next[0],
            review: next[1],
            social: next[2],
            search: next[3],
            customer: next[4],
        }
    }};
}

impl NextIds {
    pub(super) async fn read(
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    ) -> Result<Self, StoreError> {
        Ok(next_ids!(tx))
    }

    pub(super) async fn read_pg(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    ) -> Result<Self, StoreError> {
        Ok(next_ids!(tx))
    }
}

pub(super) fn take(counter: &mut i64) -> i64 {
    let id = *counter;
    *counter += 1;
    id
}

/// One import's write transaction. Dropping it without [`ImportTx::commit`] rolls back.
pub enum ImportTx {
    Sqlite(Import<sqlx::Sqlite>),
    Postgres(Import<sqlx::Postgres>),
}

impl ImportTx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            ImportTx::Sqlite(t) => t.commit().await,
            ImportTx::Postgres(t) => t.commit().await,
        }
    }

    pub async fn write_rejects(
        &mut self,
        batch: BatchId,
        rows: &[RejectRow],
    ) -> Result<(), StoreError> {
        match self {
            ImportTx::Sqlite(t) => t.write_rejects(batch, rows).await,
            ImportTx::Postgres(t) => t.write_rejects(batch, rows).await,
        }
    }

    /// Stores the records whose key is new; returns how many were new. A record whose key is already
    /// stored (or repeated within `records`) is a duplicate and changes nothing.
    pub async fn write_records(
        &mut self,
        batch: BatchId,
        records: &[KeyedRecord],
    ) -> Result<u64, StoreError> {
        match self {
            ImportTx::Sqlite(t) => t.write_records(batch, records).await,
            ImportTx::Postgres(t) => t.write_records(batch, records).await,
        }
    }
}

impl Store {
    /// Opens a write transaction for an import. It takes the database's write lock at once, so the ids
    /// it hands out cannot collide with another writer's.
    pub async fn begin_import(&self) -> Result<ImportTx, StoreError> {
        Ok(match &self.db {
            Db::Sqlite(p) => ImportTx::Sqlite(super::sqlite::begin_import(p).await?),
            Db::Postgres(p) => ImportTx::Postgres(super::postgres::begin_import(p).await?),
        })
    }

    /// Stores records in a transaction of their own (see [`ImportTx::write_records`]).
    pub async fn write_records(
        &self,
        batch: BatchId,
        records: &[KeyedRecord],
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_import().await?;
        let new = tx.write_records(batch, records).await?;
        tx.commit().await?;
        Ok(new)
    }
}
