//! The store: a sqlx pool over SQLite (the embedded default, WAL mode) or PostgreSQL (`[store] url =
//! "postgres://…"`, or `DONGCHA__STORE__URL`), the schema in `migrations/` (SQLite) and
//! `migrations/postgres/`, and every query the rest of dongcha runs. A shell: the only module that talks
//! SQL.
//!
//! Queries are written once, in SQL both databases accept, and compiled for both pools by [`on_db!`];
//! what differs lives in one file per backend: opening and tuning the connection, the write lock, the
//! bulk import (SQLite's C API on sqlx's lent handle, Postgres's `COPY`). Writes happen only through
//! ingestion ([`Store::begin_import`]) and admin commands; everything else reads.

/// Runs one body on whichever pool the store has: `$p` is a `&SqlitePool` in one arm and a `&PgPool`
/// in the other, so the body — portable SQL through sqlx's generic API — is compiled for both.
macro_rules! on_db {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite($p) => $body,
            $crate::store::Db::Postgres($p) => $body,
        }
    };
}

pub mod conversations;
mod copy;
pub mod digests;
mod import;
pub mod leases;
mod postgres;
mod reads;
pub mod records;
mod sqlite;
mod sqlite_bulk;
pub mod support;

use std::path::PathBuf;

use serde::Serialize;

pub use conversations::{AuditEntry, DataVersion, StoredTurn, TurnRecord};
pub use copy::{CopyReport, TableDigest};
pub use import::ImportTx;
pub use records::{
    KeyedRecord, ProductRef, Purchase, RejectRow, ReviewPart, SearchPart, ShopRecord, SocialPart,
};

/// The pool of either backend.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The shop's database: SQLite or PostgreSQL, chosen by the URL's scheme.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: Db,
}

/// Which database a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A transaction that writes, on either backend: writers take one lock at their start (SQLite's write
/// lock by `BEGIN IMMEDIATE`, a Postgres transaction-level advisory lock), so a transaction that reads
/// and then writes never acts on what another writer changed in between, and ids taken as `MAX(id) + 1`
/// cannot collide.
pub(crate) trait WritePool {
    type Db: sqlx::Database;
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Self::Db>, StoreError>;
    /// A transaction that writes one conversation's rows (its next turn): on Postgres it locks only that
    /// conversation, so the turns of other conversations are stored meanwhile and no pool connection
    /// waits behind every writer; on SQLite it is [`WritePool::write_tx`] (one writer at a time anyway).
    async fn conversation_tx(
        &self,
        platform: &str,
        chat_id: &str,
    ) -> Result<sqlx::Transaction<'static, Self::Db>, StoreError>;
    /// A transaction for writes that may be lost with the server without harm (a redone effect at
    /// worst): on Postgres its commit does not wait for the disk and it takes no writer-wide lock; on
    /// SQLite it is [`WritePool::write_tx`].
    async fn relaxed_tx(&self) -> Result<sqlx::Transaction<'static, Self::Db>, StoreError>;
}

impl Store {
    /// Opens (creating if needed) the database at `url` — `sqlite://PATH` or `postgres://…` — and brings
    /// its schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let db = if url.starts_with("sqlite:") {
            Db::Sqlite(sqlite::open(url, max_connections).await?)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Db::Postgres(postgres::open(url, max_connections).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(redacted(url)));
        };
        Ok(Self { db })
    }

    pub async fn open_config(cfg: &crate::config::Config) -> Result<Self, StoreError> {
        Self::open(&cfg.database_url(), cfg.store.max_connections).await
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn close(&self) {
        on_db!(self, p => p.close().await)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
    )]
    UnsupportedUrl(String),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("migrating the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Query(#[from] sqlx::Error),
    #[error(
        "the target database is not empty ({table} has {rows} rows): copy into a new, empty database"
    )]
    NotEmpty { table: String, rows: u64 },
    #[error("the two databases' schemas differ: {0}")]
    Schema(String),
    #[error("database (SQLite error {code}): {message}")]
    Sqlite { code: i32, message: String },
}

/// A database URL fit to show: its password (if any) replaced by `***`.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The identifier of one import (one file, or one demo build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchId(pub i64);

/// Counts an import ends with: `accepted + duplicates + rejected == records_read`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchCounts {
    pub records_read: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// What `dongcha stats` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub tables: Vec<TableStats>,
    pub revenue_cents: i64,
    pub batches: Vec<BatchSummary>,
    pub rejects: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableStats {
    pub table: &'static str,
    pub rows: i64,
    /// Earliest and latest date, for tables that have one.
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    pub id: i64,
    pub source: String,
    pub format: String,
    pub started_at: String,
    pub records_read: i64,
    pub accepted: i64,
    pub duplicates: i64,
    pub rejected: i64,
    pub rejects_path: Option<String>,
}

/// Which stored texts: reviews or social posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Review,
    Post,
}

/// A review or post to label: its text and what the index stores beside a review's vector.
#[derive(Debug, Clone)]
pub struct TextForNlp {
    pub id: i64,
    pub customer_id: i64,
    pub product_id: Option<i64>,
    pub date: Option<chrono::NaiveDate>,
    pub rating: Option<f64>,
    pub text: String,
    pub text_hash: i64,
}

/// What enrichment derived from one text.
#[derive(Debug, Clone)]
pub struct TextNlp {
    pub id: i64,
    pub text_hash: i64,
    pub model_version: String,
    pub sentiment: String,
    pub p_positive: f64,
    pub intent: String,
    pub intent_margin: f64,
    pub brands: Vec<String>,
    pub models: Vec<String>,
    pub prices: Vec<f64>,
}

/// A review as search results show it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ReviewView {
    pub id: i64,
    pub date: Option<chrono::NaiveDate>,
    pub rating: Option<f64>,
    pub text_raw: String,
    pub product: Option<String>,
    pub sentiment: Option<String>,
    pub customer: Option<String>,
}

/// The hash that tells whether a text changed since it was labelled (xxh3, as a signed 64-bit integer).
pub fn text_hash(text: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as i64
}

/// One order line as the sales tools read it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct SaleLine {
    pub date: chrono::NaiveDate,
    pub customer_id: i64,
    pub product: Option<String>,
    pub category: Option<String>,
    pub quantity: i64,
    pub amount_cents: i64,
    /// The basket: the source's order id, else the line itself.
    pub order_key: String,
}

/// A review or post with its labels (None before `dongcha enrich`).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct LabelledText {
    pub id: i64,
    pub date: Option<chrono::NaiveDate>,
    pub rating: Option<f64>,
    pub text_raw: String,
    pub product: Option<String>,
    pub sentiment: Option<String>,
    pub p_positive: Option<f64>,
    pub intent: Option<String>,
}

/// A catalogue product.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CatalogueEntry {
    pub id: i64,
    pub name: String,
    pub brand: Option<String>,
    pub model: Option<String>,
    pub category: Option<String>,
}

/// The stores the store's own tests run on: a new SQLite file, and a new database on the test
/// PostgreSQL server when `DONGCHA_TEST_POSTGRES` names one (scripts/test.sh starts it and sets
/// `DONGCHA_TEST_POSTGRES_REQUIRED`, so there it is never left out).
#[cfg(test)]
pub(crate) async fn test_stores(max_connections: u32) -> Vec<(tempfile::TempDir, Store)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut out = vec![(dir, Store::open(&url, max_connections).await.unwrap())];
    match std::env::var("DONGCHA_TEST_POSTGRES") {
        Ok(server) if !server.trim().is_empty() => {
            let name = format!(
                "unit{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let admin = sqlx::PgPool::connect(&server).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let base = server.rsplit_once('/').unwrap().0;
            let store = Store::open(&format!("{base}/{name}"), max_connections)
                .await
                .unwrap();
            out.push((tempfile::tempdir().unwrap(), store));
        }
        _ => assert!(
            std::env::var_os("DONGCHA_TEST_POSTGRES_REQUIRED").is_none(),
            "DONGCHA_TEST_POSTGRES_REQUIRED is set but DONGCHA_TEST_POSTGRES is not"
        ),
    }
    out
}
