//! The store: a sqlx pool over SQLite (the embedded default, WAL mode), the schema in `migrations/`, and
//! every query the rest of dongcha runs. A shell: the only module that talks SQL.
//!
//! Writes happen only through ingestion ([`Store::begin_import`]) and admin commands; everything else
//! reads.

pub mod conversations;
pub mod digests;
pub mod records;
mod sqlite;
mod sqlite_bulk;
pub mod support;

use std::path::PathBuf;

use serde::Serialize;

pub use conversations::{AuditEntry, DataVersion, StoredTurn, TurnRecord};
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
