//! Whole-store operations that work column by column on either backend, from the schema the database
//! reports (so a new migration needs nothing here): the content digest of every table — what the crash
//! tests compare and what `dongcha migrate` checks its copy with — and copying a shop from one store
//! into another, empty one (`dongcha migrate`).

use std::fmt::Write as _;

use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::postgres::{CopyRows, copy_in};
use super::{Backend, Db, Store, StoreError, WritePool};

/// Rows sent to the target per `COPY` (or per batch of inserts on SQLite).
const COPY_BATCH: usize = 10_000;

/// Columns that say where a row came from (which import, when), not what it holds: a digest "of the
/// content" leaves them out, so an import killed half-way and run again equals a clean one.
const PROVENANCE: &[&str] = &["batch_id", "first_batch_id"];
/// Tables that are all provenance: the log of imports, and each import's rejected lines (an import run
/// again records its rejects again, under its own batch).
const PROVENANCE_TABLES: &[&str] = &["import_batches", "rejects"];

/// The fact tables' references: (table, column, the table whose `id` it names). Foreign keys on SQLite;
/// on PostgreSQL kept by the writers alone (see migrations/postgres/20261206000002_fact_references.sql),
/// so [`Store::dangling_references`] is how the tests prove them.
const REFERENCES: [(&str, &str, &str); 8] = [
    ("orders", "customer_id", "customers"),
    ("orders", "product_id", "products"),
    ("reviews", "customer_id", "customers"),
    ("reviews", "product_id", "products"),
    ("reviews", "order_id", "orders"),
    ("social_posts", "customer_id", "customers"),
    ("social_posts", "product_id", "products"),
    ("search_events", "customer_id", "customers"),
];

/// Decodes cell `$i` of `$row` as `$kind` (a macro so it compiles for either backend's row type).
macro_rules! decode {
    ($row:expr, $i:expr, $kind:expr) => {{
        let row = &$row;
        match $kind {
            Kind::Int => row
                .try_get::<Option<i64>, _>($i)?
                .map_or(Cell::Null, Cell::Int),
            Kind::Real => row
                .try_get::<Option<f64>, _>($i)?
                .map_or(Cell::Null, Cell::Real),
            Kind::Text => row
                .try_get::<Option<String>, _>($i)?
                .map_or(Cell::Null, Cell::Text),
            Kind::Bytes => row
                .try_get::<Option<Vec<u8>>, _>($i)?
                .map_or(Cell::Null, Cell::Bytes),
        }
    }};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Text,
    Bytes,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    /// Stored as a date on Postgres (read as its ISO text, which is how SQLite stores it).
    date: bool,
    /// Numbered by the database (Postgres IDENTITY): its sequence is moved past what was copied.
    identity: bool,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// One table's row count and the SHA-256 of its rows (each row's cells in column order, rows sorted, so
/// neither the physical order nor the backend matters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDigest {
    pub table: String,
    pub rows: u64,
    pub sha256: String,
}

/// What `copy_into` did: rows per table, and whether the target's digest equals the source's.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub tables: Vec<TableDigest>,
    pub verified: bool,
}

fn kind_of(declared: &str) -> Kind {
    let d = declared.to_ascii_uppercase();
    if d.contains("INT") {
        Kind::Int
    } else if d.contains("REAL") || d.contains("DOUB") || d.contains("FLOA") {
        Kind::Real
    } else if d.contains("BLOB") || d.contains("BYTEA") {
        Kind::Bytes
    } else {
        Kind::Text
    }
}

impl Store {
    /// The application's tables in the order they were created (so a table comes after those it
    /// refers to), with their columns as the database declares them.
    async fn tables(&self) -> Result<Vec<Table>, StoreError> {
        let mut tables = Vec::new();
        match &self.db {
            Db::Sqlite(p) => {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid",
                )
                .fetch_all(p)
                .await?;
                for name in names {
                    if name.starts_with('_') || name.starts_with("sqlite_") {
                        continue;
                    }
                    let cols: Vec<(String, String)> =
                        sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                            .bind(&name)
                            .fetch_all(p)
                            .await?;
                    let columns = cols
                        .into_iter()
                        .map(|(name, ty)| Column {
                            kind: kind_of(&ty),
                            date: false,
                            identity: false,
                            name,
                        })
                        .collect();
                    tables.push(Table { name, columns });
                }
            }
            Db::Postgres(p) => {
                // Creation order: the order of the tables' catalogue rows.
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT c.relname::text FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind = 'r' AND n.nspname = current_schema() ORDER BY c.oid",
                )
                .fetch_all(p)
                .await?;
                for name in names {
                    if name.starts_with('_') {
                        continue;
                    }
                    let cols: Vec<(String, String, String)> = sqlx::query_as(
                        "SELECT column_name::text, data_type::text, is_identity::text \
                         FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = $1 \
                         ORDER BY ordinal_position",
                    )
                    .bind(&name)
                    .fetch_all(p)
                    .await?;
                    let columns = cols
                        .into_iter()
                        .map(|(name, ty, identity)| Column {
                            kind: kind_of(&ty),
                            date: ty.eq_ignore_ascii_case("date"),
                            identity: identity == "YES",
                            name,
                        })
                        .collect();
                    tables.push(Table { name, columns });
                }
            }
        }
        Ok(tables)
    }

    async fn rows(&self, table: &str) -> Result<u64, StoreError> {
        let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}");
        let n: i64 =
            on_db!(self, p => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(p).await?);
        Ok(n as u64)
    }

    /// `SELECT` of `columns` of `table` on this backend, each cast to the type it is decoded as.
    fn select_sql(&self, table: &str, columns: &[&Column]) -> String {
        let exprs: Vec<String> = columns
            .iter()
            .map(|c| match (self.backend(), c.kind) {
                (Backend::Postgres, Kind::Int) => format!("CAST({} AS BIGINT)", c.name),
                (Backend::Postgres, Kind::Real) => format!("CAST({} AS DOUBLE PRECISION)", c.name),
                (Backend::Postgres, Kind::Text) if c.date => format!("CAST({} AS TEXT)", c.name),
                _ => c.name.clone(),
            })
            .collect();
        format!("SELECT {} FROM {table}", exprs.join(", "))
    }

    /// References of the fact tables that point at no row ("orders.customer_id → customers", and how
    /// many); empty when every one holds.
    pub async fn dangling_references(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for (table, column, target) in REFERENCES {
            let sql = format!(
                "SELECT COUNT(*) FROM {table} x WHERE x.{column} IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM {target} y WHERE y.id = x.{column})"
            );
            let n: i64 = on_db!(self, pool => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await?
            });
            if n > 0 {
                out.push((format!("{table}.{column} → {target}"), n));
            }
        }
        Ok(out)
    }

    /// Every table's row count and content digest, by table name. With `provenance` false, the
    /// columns and tables that only say which import a row came from are left out.
    pub async fn digest(&self, provenance: bool) -> Result<Vec<TableDigest>, StoreError> {
        let mut out = Vec::new();
        for table in self.tables().await? {
            if !provenance && PROVENANCE_TABLES.contains(&table.name.as_str()) {
                continue;
            }
            // `rowid` is Postgres's name for SQLite's implicit row key: not a column on both sides.
            let columns: Vec<&Column> = table
                .columns
                .iter()
                .filter(|c| c.name != "rowid")
                .filter(|c| provenance || !PROVENANCE.contains(&c.name.as_str()))
                .collect();
            let sql = self.select_sql(&table.name, &columns);
            let kinds: Vec<Kind> = columns.iter().map(|c| c.kind).collect();
            let lines: Vec<String> = on_db!(self, p => {
                let mut lines = Vec::new();
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(p);
                while let Some(row) = rows.try_next().await? {
                    let mut line = String::new();
                    for (i, k) in kinds.iter().enumerate() {
                        line.push('\u{1f}');
                        write_cell(&mut line, &decode!(row, i, *k));
                    }
                    lines.push(line);
                }
                lines
            });
            out.push(table_digest(&table.name, lines));
        }
        out.sort_by(|a, b| a.table.cmp(&b.table));
        Ok(out)
    }

    /// A consistent copy of this store (either backend), taken while it may be in use, written to a new
    /// SQLite file at `path` (which must not exist; removed again if the copy fails). `dongcha restore`
    /// copies it back into an empty store with [`Store::copy_into`].
    pub async fn backup_to(
        &self,
        path: &std::path::Path,
        progress: impl FnMut(&str, u64),
    ) -> Result<CopyReport, StoreError> {
        if path.exists() {
            return Err(StoreError::Schema(format!(
                "{} exists already: a backup is written to a new file",
                path.display()
            )));
        }
        let target = Store::open(&format!("sqlite://{}", path.display()), 1).await?;
        let report = self.copy_into(&target, progress).await;
        target.close().await;
        if report.is_err() {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        report
    }

    /// Copies every table of this store into `target`, which must have the schema (it is migrated when
    /// opened) and no rows: one transaction on the target, so a copy that fails leaves it empty. The
    /// source is read inside one transaction, so the copy is of one moment even while a service writes
    /// (which makes it a backup, see [`Store::backup_to`]). Afterwards the target's digest is compared
    /// with the digest of the rows copied.
    pub async fn copy_into(
        &self,
        target: &Store,
        mut progress: impl FnMut(&str, u64),
    ) -> Result<CopyReport, StoreError> {
        let source_tables = self.tables().await?;
        let target_tables = target.tables().await?;
        for t in &target_tables {
            let rows = target.rows(&t.name).await?;
            if rows > 0 {
                return Err(StoreError::NotEmpty {
                    table: t.name.clone(),
                    rows,
                });
            }
        }
        let mut tx = match &target.db {
            Db::Sqlite(p) => TargetTx::Sqlite(p.write_tx().await?),
            Db::Postgres(p) => TargetTx::Postgres(p.write_tx().await?),
        };
        // What to read from each table: the target's columns, by name (SQLite answers to `rowid` too).
        let mut plans = Vec::new();
        for st in &source_tables {
            let Some(tt) = target_tables.iter().find(|t| t.name == st.name) else {
                return Err(StoreError::Schema(format!(
                    "table {} is not in the target's schema (are both at the same version?)",
                    st.name
                )));
            };
            let mut source_cols = Vec::new();
            for c in &tt.columns {
                match st.columns.iter().find(|s| s.name == c.name) {
                    Some(s) => source_cols.push(s),
                    None if c.name == "rowid" => source_cols.push(c),
                    None => {
                        return Err(StoreError::Schema(format!(
                            "column {}.{} is not in the source's schema",
                            st.name, c.name
                        )));
                    }
                }
            }
            let sql = self.select_sql(&st.name, &source_cols);
            let kinds: Vec<Kind> = tt.columns.iter().map(|c| c.kind).collect();
            // The digest's columns: all but `rowid` (see `digest`).
            let digested: Vec<bool> = tt.columns.iter().map(|c| c.name != "rowid").collect();
            plans.push((tt, sql, kinds, digested));
        }
        // One read transaction for every table: one moment of the source, even while it is written. Its
        // digest is taken from the very rows copied.
        let mut tables = Vec::new();
        on_db!(self, p => {
            let mut read = p.begin().await?;
            if self.backend() == Backend::Postgres {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *read)
                    .await?;
            }
            for (tt, sql, kinds, digested) in plans {
                let mut copied = 0u64;
                let mut lines = Vec::new();
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *read);
                let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(COPY_BATCH);
                while let Some(row) = rows.try_next().await? {
                    let mut cells = Vec::with_capacity(kinds.len());
                    let mut line = String::new();
                    for (i, k) in kinds.iter().enumerate() {
                        let cell = decode!(row, i, *k);
                        if digested[i] {
                            line.push('\u{1f}');
                            write_cell(&mut line, &cell);
                        }
                        cells.push(cell);
                    }
                    lines.push(line);
                    batch.push(cells);
                    if batch.len() == COPY_BATCH {
                        tx.write(tt, &batch).await?;
                        copied += batch.len() as u64;
                        progress(&tt.name, copied);
                        batch.clear();
                    }
                }
                drop(rows);
                tx.write(tt, &batch).await?;
                copied += batch.len() as u64;
                progress(&tt.name, copied);
                tables.push(table_digest(&tt.name, lines));
            }
            read.rollback().await?;
        });
        tables.sort_by(|a, b| a.table.cmp(&b.table));
        if let TargetTx::Postgres(tx) = &mut tx {
            for t in &target_tables {
                for c in t.columns.iter().filter(|c| c.identity) {
                    let sql = format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', '{c}'), \
                         COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false)",
                        t = t.name,
                        c = c.name
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        match tx {
            TargetTx::Sqlite(tx) => tx.commit().await?,
            TargetTx::Postgres(tx) => tx.commit().await?,
        }
        let verified = tables == target.digest(true).await?;
        Ok(CopyReport { tables, verified })
    }
}

/// A table's digest from its rows' lines (in any order).
fn table_digest(table: &str, mut lines: Vec<String>) -> TableDigest {
    lines.sort_unstable();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    TableDigest {
        table: table.to_string(),
        rows: lines.len() as u64,
        sha256: hex::encode(h.finalize()),
    }
}

fn write_cell(out: &mut String, cell: &Cell) {
    match cell {
        Cell::Null => out.push_str("\u{0}N"),
        Cell::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Cell::Real(v) => {
            let _ = write!(out, "{v:?}");
        }
        Cell::Text(s) => out.push_str(s),
        Cell::Bytes(b) => out.push_str(&hex::encode(b)),
    }
}

/// The target's one transaction.
enum TargetTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl TargetTx {
    async fn write(&mut self, table: &Table, rows: &[Vec<Cell>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        match self {
            TargetTx::Postgres(tx) => {
                let mut copy = CopyRows::default();
                for r in rows {
                    copy.row();
                    for cell in r {
                        match cell {
                            Cell::Null => copy.null(),
                            Cell::Int(v) => copy.int(*v),
                            Cell::Real(v) => copy.opt_real(Some(*v)),
                            Cell::Text(s) => copy.text(s),
                            Cell::Bytes(b) => copy.text(&format!("\\x{}", hex::encode(b))),
                        };
                    }
                }
                copy_in(tx, &format!("{} ({})", table.name, names.join(", ")), copy).await
            }
            TargetTx::Sqlite(tx) => {
                let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    table.name,
                    names.join(", "),
                    marks.join(", ")
                );
                for r in rows {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                    for cell in r {
                        q = match cell {
                            Cell::Null => q.bind(None::<i64>),
                            Cell::Int(v) => q.bind(*v),
                            Cell::Real(v) => q.bind(*v),
                            Cell::Text(s) => q.bind(s.clone()),
                            Cell::Bytes(b) => q.bind(b.clone()),
                        };
                    }
                    q.execute(&mut **tx).await?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_order_of_no_customer_is_refused_by_sqlite_and_found_on_postgres() {
        const ORDER: &str = "INSERT INTO orders (id, customer_id, order_date, quantity, batch_id, line_no) \
                             VALUES ($1, $2, '2026-01-02', 1, 1, 1)";
        for (_d, s) in crate::store::test_stores(2).await {
            on_db!(s, pool => {
                sqlx::query("INSERT INTO customers (id, external_id, first_batch_id) VALUES (1, 'c1', 1)")
                    .execute(pool)
                    .await
                    .unwrap();
                sqlx::query(ORDER).bind(1i64).bind(1i64).execute(pool).await.unwrap();
            });
            assert!(s.dangling_references().await.unwrap().is_empty());
            let refused = on_db!(s, pool => {
                sqlx::query(ORDER).bind(2i64).bind(999i64).execute(pool).await.is_err()
            });
            match s.backend() {
                Backend::Sqlite => {
                    assert!(refused, "SQLite's foreign key refuses it");
                    assert!(s.dangling_references().await.unwrap().is_empty());
                }
                Backend::Postgres => {
                    assert!(!refused);
                    assert_eq!(
                        s.dangling_references().await.unwrap(),
                        [("orders.customer_id → customers".to_string(), 1)]
                    );
                }
            }
        }
    }

    #[test]
    fn declared_types_of_both_backends_map_to_the_kinds_read() {
        for (ty, k) in [
            ("INTEGER", Kind::Int),
            ("bigint", Kind::Int),
            ("BIGINT", Kind::Int),
            ("double precision", Kind::Real),
            ("REAL", Kind::Real),
            ("TEXT", Kind::Text),
            ("DATE", Kind::Text),
            ("bytea", Kind::Bytes),
            ("BLOB", Kind::Bytes),
        ] {
            assert_eq!(kind_of(ty), k, "{ty}");
        }
    }
}
