//! The PostgreSQL backend (`[store] url = "postgres://…"`): the pool and schema (`migrations/postgres/`),
//! its write lock (a transaction-level advisory lock), and the import's fast path: content keys claimed
//! with one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO NOTHING RETURNING`, the rows streamed in with
//! `COPY … FROM STDIN`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::import::{Import, KNOWN_CUSTOMERS_CAP, NextIds, take};
use super::records::{KeyedRecord, RejectRow};
use super::{BatchId, StoreError, WritePool};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock every writing transaction takes (an arbitrary constant: "dongcha" in ASCII).
const WRITE_LOCK: i64 = 0x0064_6f6e_6763_6861;
/// The first key of conversations' two-key advisory locks ("dcha").
const CONVERSATION_LOCKS: i32 = 0x6463_6861;

/// Connects to the database at `url` (which must exist) and brings its schema up to date. The
/// migrations run under a session advisory lock (sqlx's), so two processes starting at once do not race.
pub(super) async fn open(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    let open_err = |source| StoreError::Open {
        url: super::redacted(url),
        source,
    };
    let opts = PgConnectOptions::from_str(url).map_err(open_err)?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .map_err(open_err)?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

impl WritePool for PgPool {
    type Db = Postgres;

    /// A transaction holding the write lock until it ends: writers run one at a time, as on SQLite.
    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The two-key advisory lock (a key space apart from the one-key [`WRITE_LOCK`]): this module's
    /// namespace and a hash of the conversation. Two conversations with one hash only wait for each other.
    async fn conversation_tx(
        &self,
        platform: &str,
        chat_id: &str,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.begin().await?;
        let key =
            xxhash_rust::xxh3::xxh3_64(format!("{platform}\u{1f}{chat_id}").as_bytes()) as i32;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(CONVERSATION_LOCKS)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn relaxed_tx(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

pub(super) async fn begin_import(pool: &PgPool) -> Result<Import<Postgres>, StoreError> {
    let mut tx = pool.write_tx().await?;
    let next = NextIds::read_pg(&mut tx).await?;
    Ok(Import::new(tx, next))
}

/// Rows in `COPY`'s text format: tab-separated, `\N` for NULL, backslash escapes.
#[derive(Default)]
pub(super) struct CopyRows {
    buf: String,
    first: bool,
}

impl CopyRows {
    pub(super) fn row(&mut self) -> &mut Self {
        if !self.buf.is_empty() {
            self.buf.push('\n');
        }
        self.first = true;
        self
    }
    fn sep(&mut self) {
        if !self.first {
            self.buf.push('\t');
        }
        self.first = false;
    }
    pub(super) fn int(&mut self, v: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{v}");
        self
    }
    pub(super) fn opt_int(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }
    pub(super) fn opt_real(&mut self, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) if v.is_finite() => {
                self.sep();
                let _ = write!(self.buf, "{v}");
                self
            }
            _ => self.null(),
        }
    }
    fn opt_date(&mut self, v: Option<chrono::NaiveDate>) -> &mut Self {
        match v {
            Some(d) => {
                self.sep();
                let _ = write!(self.buf, "{}", d.format("%Y-%m-%d"));
                self
            }
            None => self.null(),
        }
    }
    pub(super) fn null(&mut self) -> &mut Self {
        self.sep();
        self.buf.push_str("\\N");
        self
    }
    pub(super) fn text(&mut self, v: &str) -> &mut Self {
        self.sep();
        for c in v.chars() {
            match c {
                '\\' => self.buf.push_str("\\\\"),
                '\t' => self.buf.push_str("\\t"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                // NUL cannot be stored in Postgres text.
                '\0' => {}
                c => self.buf.push(c),
            }
        }
        self
    }
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Streams `rows` into `table (columns)` with `COPY … FROM STDIN`.
pub(super) async fn copy_in(
    tx: &mut Transaction<'static, Postgres>,
    table_columns: &str,
    mut rows: CopyRows,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    rows.buf.push('\n');
    let mut copy = tx
        .copy_in_raw(&format!("COPY {table_columns} FROM STDIN"))
        .await?;
    let sent = copy.send(rows.buf.into_bytes()).await;
    match sent {
        Ok(_) => {
            copy.finish().await?;
            Ok(())
        }
        Err(e) => {
            copy.abort("dongcha: import failed").await.ok();
            Err(e.into())
        }
    }
}

impl Import<Postgres> {
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
        let line: Vec<i64> = rows.iter().map(|r| r.line_no as i64).collect();
        let field: Vec<&str> = rows.iter().map(|r| r.field.as_str()).collect();
        let reason: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
        let raw: Vec<String> = rows.iter().map(|r| r.raw.replace('\0', "")).collect();
        sqlx::query(
            "INSERT INTO rejects (batch_id, line_no, field, reason, raw) \
             SELECT $1, l, f, r, w FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[]) \
             AS t(l, f, r, w) ON CONFLICT (batch_id, line_no) DO NOTHING",
        )
        .bind(batch.0)
        .bind(&line)
        .bind(&field)
        .bind(&reason)
        .bind(&raw)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// See [`super::ImportTx::write_records`]: the same rows, ids and duplicates as on SQLite.
    pub async fn write_records(
        &mut self,
        batch: BatchId,
        records: &[KeyedRecord],
    ) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        // The content keys decide: the first line of a key not stored yet is new (in line order).
        let keys: Vec<i64> = records.iter().map(|r| r.key).collect();
        let lines: Vec<i64> = records.iter().map(|r| r.line_no as i64).collect();
        let claimed: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO ingested_records (key, batch_id, line_no) \
             SELECT k, $1, l FROM UNNEST($2::bigint[], $3::bigint[]) WITH ORDINALITY AS t(k, l, n) \
             ORDER BY n ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .bind(batch.0)
        .bind(&keys)
        .bind(&lines)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut unclaimed: HashSet<i64> = claimed.into_iter().collect();
        let new: Vec<&KeyedRecord> = records
            .iter()
            .filter(|r| unclaimed.remove(&r.key))
            .collect();
        if new.is_empty() {
            return Ok(0);
        }

        // Customers: the known ones looked up at once, the rest numbered in order of appearance.
        let mut wanted: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        for r in &new {
            let c = r.record.customer_id.as_str();
            if !self.known_customers.contains_key(c) && seen.insert(c) {
                wanted.push(c);
            }
        }
        if self.known_customers.len() + wanted.len() > KNOWN_CUSTOMERS_CAP {
            self.known_customers.clear();
        }
        if !wanted.is_empty() {
            let found: Vec<(String, i64)> = sqlx::query_as(
                "SELECT external_id, id FROM customers WHERE external_id = ANY($1::text[])",
            )
            .bind(&wanted)
            .fetch_all(&mut *self.tx)
            .await?;
            self.known_customers.extend(found);
            let mut rows = CopyRows::default();
            for c in wanted {
                if !self.known_customers.contains_key(c) {
                    let id = take(&mut self.next.customer);
                    rows.row().int(id).text(c).int(batch.0);
                    self.known_customers.insert(c.to_string(), id);
                }
            }
            copy_in(
                &mut self.tx,
                "customers (id, external_id, first_batch_id)",
                rows,
            )
            .await?;
        }

        // Products: by their name's hash, each once.
        let (mut pid, mut pname, mut pclean) = (Vec::new(), Vec::new(), Vec::new());
        for r in &new {
            if let Some(p) = &r.record.product
                && self.known_products.insert(p.id)
            {
                pid.push(p.id);
                pname.push(p.name.as_str());
                pclean.push(p.name_clean.as_str());
            }
        }
        if !pid.is_empty() {
            sqlx::query(
                "INSERT INTO products (id, name, name_clean) \
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[]) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&pid)
            .bind(&pname)
            .bind(&pclean)
            .execute(&mut *self.tx)
            .await?;
        }

        let mut orders = CopyRows::default();
        let mut reviews = CopyRows::default();
        let mut searches = CopyRows::default();
        let mut social = SocialRows::default();
        for r in &new {
            let rec = &r.record;
            let line_no = r.line_no as i64;
            let customer = self.known_customers[rec.customer_id.as_str()];
            let product_id = rec.product.as_ref().map(|p| p.id);
            let mut order_id = None;
            if let Some(p) = &rec.purchase {
                let id = take(&mut self.next.order);
                order_id = Some(id);
                orders
                    .row()
                    .int(id)
                    .int(customer)
                    .opt_date(Some(p.date))
                    .opt_int(product_id)
                    .int(i64::from(p.quantity))
                    .opt_int(p.amount_cents)
                    .int(batch.0)
                    .int(line_no);
            }
            if let Some(v) = &rec.review {
                let date = v.date.or(rec.purchase.as_ref().map(|p| p.date));
                reviews
                    .row()
                    .int(take(&mut self.next.review))
                    .int(customer)
                    .opt_int(product_id)
                    .opt_int(order_id)
                    .opt_date(date)
                    .opt_real(v.rating)
                    .text(&v.text_raw)
                    .text(&v.text_clean)
                    .text(v.lang)
                    .int(batch.0)
                    .int(line_no);
            }
            if let Some(p) = &rec.social {
                social.id.push(take(&mut self.next.social));
                social.platform.push(p.platform.replace('\0', ""));
                social
                    .post_id
                    .push(p.post_id.as_ref().map(|s| s.replace('\0', "")));
                social.customer.push(customer);
                social.product.push(product_id);
                social.date.push(p.date);
                social.raw.push(p.text_raw.replace('\0', ""));
                social.clean.push(p.text_clean.replace('\0', ""));
                social.lang.push(p.lang.to_string());
                social.line.push(line_no);
            }
            if let Some(q) = &rec.search {
                searches
                    .row()
                    .int(take(&mut self.next.search))
                    .int(customer)
                    .opt_date(q.date)
                    .text(&q.query_raw)
                    .text(&q.query_clean)
                    .int(batch.0)
                    .int(line_no);
            }
        }
        copy_in(
            &mut self.tx,
            "orders (id, customer_id, order_date, product_id, quantity, amount_cents, batch_id, line_no)",
            orders,
        )
        .await?;
        copy_in(
            &mut self.tx,
            "reviews (id, customer_id, product_id, order_id, review_date, rating, text_raw, text_clean, \
             lang, batch_id, line_no)",
            reviews,
        )
        .await?;
        if !social.id.is_empty() {
            // A post with an id is the same post wherever it turns up: the unique index skips repeats
            // (the first one, in line order, stays).
            sqlx::query(
                "INSERT INTO social_posts (id, platform, post_id, customer_id, product_id, posted_on, \
                 text_raw, text_clean, lang, batch_id, line_no) \
                 SELECT i, pl, pi, c, pr, d, r, cl, la, $1, l FROM UNNEST($2::bigint[], $3::text[], \
                 $4::text[], $5::bigint[], $6::bigint[], $7::date[], $8::text[], $9::text[], $10::text[], \
                 $11::bigint[]) AS t(i, pl, pi, c, pr, d, r, cl, la, l) ORDER BY i ON CONFLICT DO NOTHING",
            )
            .bind(batch.0)
            .bind(&social.id)
            .bind(&social.platform)
            .bind(&social.post_id)
            .bind(&social.customer)
            .bind(&social.product)
            .bind(&social.date)
            .bind(&social.raw)
            .bind(&social.clean)
            .bind(&social.lang)
            .bind(&social.line)
            .execute(&mut *self.tx)
            .await?;
        }
        copy_in(
            &mut self.tx,
            "search_events (id, customer_id, searched_on, query_raw, query_clean, batch_id, line_no)",
            searches,
        )
        .await?;
        Ok(new.len() as u64)
    }
}

/// Social posts of one chunk, column by column (they go in with `ON CONFLICT`, which `COPY` lacks).
#[derive(Default)]
struct SocialRows {
    id: Vec<i64>,
    platform: Vec<String>,
    post_id: Vec<Option<String>>,
    customer: Vec<i64>,
    product: Vec<Option<i64>>,
    date: Vec<Option<chrono::NaiveDate>>,
    raw: Vec<String>,
    clean: Vec<String>,
    lang: Vec<String>,
    line: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_would_end_a_field_or_a_row() {
        let mut rows = CopyRows::default();
        rows.row()
            .int(1)
            .text("a\tb\nc\\d\re\0f")
            .null()
            .opt_real(Some(4.5))
            .opt_real(Some(f64::NAN));
        rows.row().int(2).null().opt_date(None);
        assert_eq!(
            rows.buf,
            "1\ta\\tb\\nc\\\\d\\ref\t\\N\t4.5\t\\N\n2\t\\N\t\\N"
        );
    }
}
