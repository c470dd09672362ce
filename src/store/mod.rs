//! The store: a sqlx pool over SQLite (the embedded default, WAL mode), the schema in `migrations/`, and
//! every query the rest of dongcha runs. A shell: the only module that talks SQL.
//!
//! Writes happen only through ingestion ([`Store::begin_import`]) and admin commands; everything else
//! reads.

pub mod records;
mod sqlite;
mod sqlite_bulk;

use std::path::PathBuf;

use serde::Serialize;

pub use records::{
    KeyedRecord, ProductRef, Purchase, RejectRow, ReviewPart, SearchPart, ShopRecord, SocialPart,
};
pub use sqlite::{ImportTx, Store};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "unsupported database URL `{0}`: this build supports sqlite:// (build with the `postgres` feature for postgres://)"
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
    #[error("database (SQLite error {code}): {message}")]
    Sqlite { code: i32, message: String },
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
