//! The SQLite backend (embedded default): opening the file (WAL journal, foreign keys on, a large page
//! cache), its write lock, and the import's hot path through SQLite's C API on sqlx's lent handle
//! (`sqlite_bulk.rs`).

use std::str::FromStr;
use std::time::Duration;

use chrono::Datelike;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::import::{Import, KNOWN_CUSTOMERS_CAP, NextIds, take};
use super::records::{KeyedRecord, RejectRow};
use super::sqlite_bulk::Stmt;
use super::{BatchId, StoreError, WritePool};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens (creating if needed) the database file at `url` and brings its schema up to date.
pub(super) async fn open(url: &str, max_connections: u32) -> Result<SqlitePool, StoreError> {
    let open_err = |source| StoreError::Open {
        url: url.to_string(),
        source,
    };
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(open_err)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30))
        // Content keys land all over their B-tree: a large page cache (bounded, 128 MiB) keeps those
        // inserts from turning into random disk reads as the database grows.
        .pragma("cache_size", "-131072")
        .pragma("temp_store", "memory");
    if let Some(parent) = opts.get_filename().parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(opts)
        .await
        .map_err(open_err)?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

impl WritePool for SqlitePool {
    type Db = Sqlite;

    /// It takes SQLite's write lock at its start (`BEGIN IMMEDIATE`), so a concurrent writer makes it
    /// wait (the busy timeout) rather than fail. A deferred transaction that reads first and writes later
    /// fails at once with "database is locked" when another connection wrote in between (its snapshot is
    /// stale), whatever the busy timeout.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn conversation_tx(
        &self,
        _platform: &str,
        _chat_id: &str,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.write_tx().await
    }

    async fn relaxed_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.write_tx().await
    }
}

/// Opens an import's transaction: it takes the write lock at once, so the ids it hands out cannot
/// collide with another writer's.
pub(super) async fn begin_import(pool: &SqlitePool) -> Result<Import<Sqlite>, StoreError> {
    let mut tx = pool.write_tx().await?;
    let next = NextIds::read(&mut tx).await?;
    Ok(Import::new(tx, next))
}

impl Import<Sqlite> {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn write_rejects(
        &mut self,
        batch: BatchId,
        rows: &[RejectRow],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut handle = self.tx.lock_handle().await?;
        let db = handle.as_raw_handle();
        // SAFETY: the handle is locked out of sqlx's worker for this whole block.
        let mut insert = unsafe {
            Stmt::prepare(
                db,
                "INSERT INTO rejects (batch_id, line_no, field, reason, raw) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (batch_id, line_no) DO NOTHING",
            )?
        };
        for r in rows {
            insert.run(&[
                batch.0.into(),
                (r.line_no as i64).into(),
                r.field.as_str().into(),
                r.reason.as_str().into(),
                r.raw.as_str().into(),
            ])?;
        }
        Ok(())
    }

    /// Stores the records whose key is new; returns how many were new. A record whose key is already
    /// stored (or repeated within `records`) is a duplicate and changes nothing.
    pub async fn write_records(
        &mut self,
        batch: BatchId,
        records: &[KeyedRecord],
    ) -> Result<u64, StoreError> {
        let mut handle = self.tx.lock_handle().await?;
        let db = handle.as_raw_handle();
        // SAFETY: the handle is locked out of sqlx's worker until `handle` drops at the end of this
        // function, and every statement below is dropped (finalized) before it.
        let mut s = unsafe { RecordStatements::prepare(db)? };
        let mut new = 0u64;
        let mut dates = DateText::default();
        for r in records {
            // The content key decides: a key already stored (or seen earlier in this import) is a duplicate.
            if s.key
                .run(&[r.key.into(), batch.0.into(), (r.line_no as i64).into()])?
                == 0
            {
                continue;
            }
            new += 1;
            let rec = &r.record;
            let line_no = r.line_no as i64;
            let customer = match self.known_customers.get(rec.customer_id.as_str()) {
                Some(id) => *id,
                None => {
                    let external = rec.customer_id.as_str();
                    let id = match s.customer_id.query_i64(&[external.into()])? {
                        Some(id) => id,
                        None => {
                            let id = take(&mut self.next.customer);
                            s.customer
                                .run(&[id.into(), external.into(), batch.0.into()])?;
                            id
                        }
                    };
                    if self.known_customers.len() >= KNOWN_CUSTOMERS_CAP {
                        self.known_customers.clear();
                    }
                    self.known_customers.insert(external.to_string(), id);
                    id
                }
            };
            if let Some(p) = &rec.product
                && self.known_products.insert(p.id)
            {
                s.product.run(&[
                    p.id.into(),
                    p.name.as_str().into(),
                    p.name_clean.as_str().into(),
                ])?;
            }
            let product_id = rec.product.as_ref().map(|p| p.id);
            let mut order_id = None;
            if let Some(p) = &rec.purchase {
                let id = take(&mut self.next.order);
                order_id = Some(id);
                s.order.run(&[
                    id.into(),
                    customer.into(),
                    dates.format(0, p.date).into(),
                    product_id.into(),
                    i64::from(p.quantity).into(),
                    p.amount_cents.into(),
                    batch.0.into(),
                    line_no.into(),
                ])?;
            }
            if let Some(v) = &rec.review {
                let date = v.date.or(rec.purchase.as_ref().map(|p| p.date));
                s.review.run(&[
                    take(&mut self.next.review).into(),
                    customer.into(),
                    product_id.into(),
                    order_id.into(),
                    date.map(|d| dates.format(1, d)).into(),
                    v.rating.into(),
                    v.text_raw.as_str().into(),
                    v.text_clean.as_str().into(),
                    v.lang.into(),
                    batch.0.into(),
                    line_no.into(),
                ])?;
            }
            if let Some(p) = &rec.social {
                // A post with an id is the same post wherever it turns up: the unique index skips repeats.
                s.social.run(&[
                    take(&mut self.next.social).into(),
                    p.platform.as_str().into(),
                    p.post_id.as_deref().into(),
                    customer.into(),
                    product_id.into(),
                    p.date.map(|d| dates.format(2, d)).into(),
                    p.text_raw.as_str().into(),
                    p.text_clean.as_str().into(),
                    p.lang.into(),
                    batch.0.into(),
                    line_no.into(),
                ])?;
            }
            if let Some(q) = &rec.search {
                s.search.run(&[
                    take(&mut self.next.search).into(),
                    customer.into(),
                    q.date.map(|d| dates.format(3, d)).into(),
                    q.query_raw.as_str().into(),
                    q.query_clean.as_str().into(),
                    batch.0.into(),
                    line_no.into(),
                ])?;
            }
        }
        drop(s);
        drop(handle);
        Ok(new)
    }
}

/// Dates as SQLite stores them through sqlx (`YYYY-MM-DD` text), formatted into reusable buffers.
#[derive(Default)]
struct DateText([String; 4]);

impl DateText {
    fn format(&mut self, slot: usize, d: chrono::NaiveDate) -> &str {
        use std::fmt::Write;
        let buf = &mut self.0[slot];
        buf.clear();
        let _ = write!(buf, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
        buf.as_str()
    }
}

/// The statements of one `write_records` call.
struct RecordStatements {
    key: Stmt,
    customer_id: Stmt,
    customer: Stmt,
    product: Stmt,
    order: Stmt,
    review: Stmt,
    social: Stmt,
    search: Stmt,
}

impl RecordStatements {
    /// # Safety
    /// As [`Stmt::prepare`].
    unsafe fn prepare(db: std::ptr::NonNull<libsqlite3_sys::sqlite3>) -> Result<Self, StoreError> {
        // SAFETY: forwarded to the caller.
        unsafe {
            Ok(Self {
                key: Stmt::prepare(
                    db,
                    "INSERT INTO ingested_records (key, batch_id, line_no) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO NOTHING",
                )?,
                customer_id: Stmt::prepare(db, "SELECT id FROM customers WHERE external_id = ?1")?,
                customer: Stmt::prepare(
                    db,
                    "INSERT INTO customers (id, external_id, first_batch_id) VALUES (?1, ?2, ?3)",
                )?,
                product: Stmt::prepare(
                    db,
                    "INSERT INTO products (id, name, name_clean) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
                )?,
                order: Stmt::prepare(
                    db,
                    "INSERT INTO orders (id, customer_id, order_date, product_id, quantity, amount_cents, batch_id, \
                     line_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?,
                review: Stmt::prepare(
                    db,
                    "INSERT INTO reviews (id, customer_id, product_id, order_id, review_date, rating, text_raw, \
                     text_clean, lang, batch_id, line_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?,
                social: Stmt::prepare(
                    db,
                    "INSERT INTO social_posts (id, platform, post_id, customer_id, product_id, posted_on, text_raw, \
                     text_clean, lang, batch_id, line_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT DO NOTHING",
                )?,
                search: Stmt::prepare(
                    db,
                    "INSERT INTO search_events (id, customer_id, searched_on, query_raw, query_clean, batch_id, \
                     line_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?,
            })
        }
    }
}
