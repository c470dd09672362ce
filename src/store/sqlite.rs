//! The SQLite backend (embedded default): WAL journal, foreign keys on, multi-row inserts in one
//! transaction per chunk.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::Datelike;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::sqlite_bulk::Stmt;

use super::records::{KeyedRecord, RejectRow};
use super::{BatchCounts, BatchId, BatchSummary, Stats, StoreError, TableStats};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The columns and joins of [`super::SaleLine`] rows; callers append the WHERE clause.
macro_rules! sale_lines_from {
    () => {
        "SELECT o.order_date AS date, o.customer_id, p.name AS product, p.category, o.quantity, \
         COALESCE(o.amount_cents, 0) AS amount_cents, \
         COALESCE(o.order_ref, CAST(o.id AS TEXT)) AS order_key \
         FROM orders o LEFT JOIN products p ON p.id = o.product_id "
    };
}

/// The columns and joins of a review as [`super::LabelledText`]; callers append the WHERE clause.
macro_rules! labelled_reviews_from {
    () => {
        "SELECT r.id, COALESCE(r.review_date, o.order_date) AS date, r.rating, r.text_raw, \
         p.name AS product, n.sentiment, n.p_positive, n.intent FROM reviews r \
         LEFT JOIN orders o ON o.id = r.order_id LEFT JOIN products p ON p.id = r.product_id \
         LEFT JOIN review_nlp n ON n.review_id = r.id "
    };
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        }
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
        Ok(Self { pool })
    }

    pub async fn open_config(cfg: &crate::config::Config) -> Result<Self, StoreError> {
        Self::open(&cfg.database_url(), cfg.store.max_connections).await
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that writes: it takes SQLite's write lock at its start (`BEGIN IMMEDIATE`), so a
    /// concurrent writer makes it wait (the busy timeout) rather than fail. A deferred transaction that
    /// reads first and writes later fails at once with "database is locked" when another connection
    /// wrote in between (its snapshot is stale), whatever the busy timeout.
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn begin_batch(&self, source: &str, format: &str) -> Result<BatchId, StoreError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // Several processes may import at once: retry when another took the same id.
        for _ in 0..10 {
            let res = sqlx::query(
                "INSERT INTO import_batches (id, source, format, started_at) \
                 SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3 FROM import_batches RETURNING id",
            )
            .bind(source)
            .bind(format)
            .bind(&now)
            .fetch_one(&self.pool)
            .await;
            match res {
                Ok(row) => return Ok(BatchId(row.get(0))),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Query(sqlx::Error::Protocol(
            "could not allocate an import batch id".into(),
        )))
    }

    pub async fn finish_batch(
        &self,
        batch: BatchId,
        counts: BatchCounts,
        rejects_path: Option<&Path>,
    ) -> Result<(), StoreError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        sqlx::query(
            "UPDATE import_batches SET finished_at = $1, records_read = $2, accepted = $3, duplicates = $4, \
             rejected = $5, rejects_path = $6 WHERE id = $7",
        )
        .bind(now)
        .bind(counts.records_read as i64)
        .bind(counts.accepted as i64)
        .bind(counts.duplicates as i64)
        .bind(counts.rejected as i64)
        .bind(rejects_path.map(|p| p.display().to_string()))
        .bind(batch.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Opens a write transaction for an import. It takes the database's write lock at once (`BEGIN
    /// IMMEDIATE`), so the ids it hands out cannot collide with another writer's.
    pub async fn begin_import(&self) -> Result<ImportTx, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut next = [0i64; 5];
        for (slot, table) in next.iter_mut().zip(PART_TABLES) {
            let sql = format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table}");
            *slot = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut *tx)
                .await?;
        }
        Ok(ImportTx {
            tx,
            next_order: next[0],
            next_review: next[1],
            next_social: next[2],
            next_search: next[3],
            next_customer: next[4],
            known_customers: HashMap::new(),
            known_products: HashSet::new(),
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

    /// Fills in catalogue attributes of a product (the demo shop's catalogue; later, a catalogue import).
    pub async fn set_product_details(
        &self,
        id: i64,
        brand: &str,
        model: &str,
        category: &str,
        list_price_cents: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE products SET brand = $1, model = $2, category = $3, list_price_cents = $4 WHERE id = $5")
            .bind(brand)
            .bind(model)
            .bind(category)
            .bind(list_price_cents)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let specs: [(&'static str, Option<&str>); 8] = [
            ("customers", None),
            ("products", None),
            ("orders", Some("order_date")),
            ("reviews", Some("review_date")),
            ("social_posts", Some("posted_on")),
            ("search_events", Some("searched_on")),
            ("import_batches", None),
            ("rejects", None),
        ];
        let mut tables = Vec::new();
        for (table, date_col) in specs {
            let sql = match date_col {
                Some(c) => format!("SELECT COUNT(*), MIN({c}), MAX({c}) FROM {table}"),
                None => format!("SELECT COUNT(*), NULL, NULL FROM {table}"),
            };
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_one(&self.pool)
                .await?;
            tables.push(TableStats {
                table,
                rows: row.get(0),
                first: row.get(1),
                last: row.get(2),
            });
        }
        let revenue_cents: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(amount_cents), 0) FROM orders")
                .fetch_one(&self.pool)
                .await?;
        let rejects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rejects")
            .fetch_one(&self.pool)
            .await?;
        let batches = sqlx::query(
            "SELECT id, source, format, started_at, records_read, accepted, duplicates, rejected, rejects_path \
             FROM import_batches ORDER BY id DESC LIMIT 10",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| BatchSummary {
            id: r.get(0),
            source: r.get(1),
            format: r.get(2),
            started_at: r.get(3),
            records_read: r.get(4),
            accepted: r.get(5),
            duplicates: r.get(6),
            rejected: r.get(7),
            rejects_path: r.get(8),
        })
        .collect();
        Ok(Stats {
            tables,
            revenue_cents,
            batches,
            rejects,
        })
    }

    /// Every purchase as (customer index, day, amount), with the customers' external ids by index.
    pub async fn purchases(
        &self,
    ) -> Result<(Vec<String>, Vec<crate::insight::rfm::Purchase>), StoreError> {
        let customers: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, external_id FROM customers ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        let index: HashMap<i64, u32> = customers
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i as u32))
            .collect();
        let rows: Vec<(i64, chrono::NaiveDate, Option<i64>)> =
            sqlx::query_as("SELECT customer_id, order_date, amount_cents FROM orders")
                .fetch_all(&self.pool)
                .await?;
        let purchases = rows
            .into_iter()
            .filter_map(|(c, date, cents)| {
                Some(crate::insight::rfm::Purchase {
                    customer: *index.get(&c)?,
                    date,
                    amount: cents.unwrap_or(0) as f64 / 100.0,
                })
            })
            .collect();
        Ok((customers.into_iter().map(|(_, e)| e).collect(), purchases))
    }

    /// Per customer (indexed as in [`Store::purchases`]), what their labelled reviews and posts say;
    /// `None` for customers without any. Empty when `dongcha enrich` has not run.
    pub async fn customer_text_features(
        &self,
    ) -> Result<Vec<Option<crate::insight::rfm::TextFeatures>>, StoreError> {
        let customers: Vec<(i64,)> = sqlx::query_as("SELECT id FROM customers ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let rows: Vec<(i64, i64, f64, f64, f64, f64, f64)> = sqlx::query_as(
            "SELECT customer_id, COUNT(*), AVG(p_positive), AVG(sentiment = 'negative'), \
             AVG(intent = 'buy'), AVG(intent = 'abandon'), AVG(intent = 'wait') FROM ( \
               SELECT r.customer_id, n.p_positive, n.sentiment, n.intent FROM review_nlp n \
                 JOIN reviews r ON r.id = n.review_id \
               UNION ALL \
               SELECT s.customer_id, n.p_positive, n.sentiment, n.intent FROM post_nlp n \
                 JOIN social_posts s ON s.id = n.post_id \
             ) GROUP BY customer_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let by_id: HashMap<i64, crate::insight::rfm::TextFeatures> = rows
            .into_iter()
            .map(|(c, n, s, neg, buy, abandon, wait)| {
                (
                    c,
                    crate::insight::rfm::TextFeatures {
                        texts: n as u32,
                        mean_sentiment: s,
                        negative_share: neg,
                        buy_share: buy,
                        abandon_share: abandon,
                        wait_share: wait,
                    },
                )
            })
            .collect();
        Ok(customers
            .into_iter()
            .map(|(id,)| by_id.get(&id).copied())
            .collect())
    }

    /// Ids of reviews written by these customers (by the shop's ids), at most `limit`, newest first
    /// within each 500 customers.
    pub async fn review_ids_of(
        &self,
        external_ids: &[String],
        limit: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let sql = format!(
            "SELECT r.id FROM reviews r JOIN customers c ON c.id = r.customer_id \
             WHERE c.external_id IN ({{in}}) ORDER BY r.review_date DESC LIMIT {limit}"
        );
        self.ids_in(&sql, external_ids, limit).await
    }

    /// Store ids of these customers (by the shop's ids).
    pub async fn customer_ids_of(&self, external_ids: &[String]) -> Result<Vec<i64>, StoreError> {
        self.ids_in(
            "SELECT id FROM customers WHERE external_id IN ({in})",
            external_ids,
            usize::MAX,
        )
        .await
    }

    /// Runs `sql` (its `{in}` replaced by placeholders) once per 500 `values`, collecting the id column,
    /// until `limit` ids.
    async fn ids_in(
        &self,
        sql: &str,
        values: &[String],
        limit: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let mut out = Vec::new();
        for chunk in values.chunks(500) {
            let sql = sql.replace("{in}", &vec!["?"; chunk.len()].join(","));
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            for v in chunk {
                q = q.bind(v);
            }
            out.extend(q.fetch_all(&self.pool).await?);
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    /// Products as (id, name) in the order [`Store::customer_products`] indexes them.
    pub async fn products_by_name(&self) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, name FROM products ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Sales as (day, amount), all of them or one product's (by cleaned name) or one category's.
    pub async fn sales(
        &self,
        product: Option<&str>,
        category: Option<&str>,
    ) -> Result<Vec<crate::insight::rfm::Purchase>, StoreError> {
        let product_clean = product.map(|p| super::records::ProductRef::from_name(p).name_clean);
        let rows: Vec<(chrono::NaiveDate, Option<i64>)> = sqlx::query_as(
            "SELECT o.order_date, o.amount_cents FROM orders o LEFT JOIN products p ON p.id = o.product_id \
             WHERE ($1 IS NULL OR p.name_clean = $1) AND ($2 IS NULL OR p.category = $2)",
        )
        .bind(product_clean)
        .bind(category)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(date, cents)| crate::insight::rfm::Purchase {
                customer: 0,
                date,
                amount: cents.unwrap_or(0) as f64 / 100.0,
            })
            .collect())
    }

    /// Order lines between two days (inclusive), optionally of one product (store id) or category.
    pub async fn sale_lines(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        product_id: Option<i64>,
        category: Option<&str>,
    ) -> Result<Vec<super::SaleLine>, StoreError> {
        Ok(sqlx::query_as(concat!(
            sale_lines_from!(),
            "WHERE o.order_date BETWEEN $1 AND $2 AND ($3 IS NULL OR o.product_id = $3) \
                 AND ($4 IS NULL OR p.category = $4)"
        ))
        .bind(from)
        .bind(to)
        .bind(product_id)
        .bind(category)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Labelled reviews between two days (review date, else its purchase's), optionally of one product.
    pub async fn labelled_reviews(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        product_id: Option<i64>,
    ) -> Result<Vec<super::LabelledText>, StoreError> {
        Ok(sqlx::query_as(concat!(
            labelled_reviews_from!(),
            "WHERE COALESCE(r.review_date, o.order_date) BETWEEN $1 AND $2 \
                 AND ($3 IS NULL OR r.product_id = $3) ORDER BY r.id"
        ))
        .bind(from)
        .bind(to)
        .bind(product_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Labelled social posts between two days, optionally about one product.
    pub async fn labelled_posts(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        product_id: Option<i64>,
    ) -> Result<Vec<super::LabelledText>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.id, s.posted_on AS date, NULL AS rating, s.text_raw, p.name AS product, \
             n.sentiment, n.p_positive, n.intent FROM social_posts s \
             LEFT JOIN products p ON p.id = s.product_id LEFT JOIN post_nlp n ON n.post_id = s.id \
             WHERE s.posted_on BETWEEN $1 AND $2 AND ($3 IS NULL OR s.product_id = $3) ORDER BY s.id",
        )
        .bind(from)
        .bind(to)
        .bind(product_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One customer's order lines, by the shop's customer id (None when unknown).
    pub async fn customer_lines(
        &self,
        external_id: &str,
    ) -> Result<Option<Vec<super::SaleLine>>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM customers WHERE external_id = ?")
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(id) = id else { return Ok(None) };
        Ok(Some(
            sqlx::query_as(concat!(
                sale_lines_from!(),
                "WHERE o.customer_id = ? ORDER BY o.order_date"
            ))
            .bind(id)
            .fetch_all(&self.pool)
            .await?,
        ))
    }

    /// One customer's labelled reviews (newest first).
    pub async fn customer_reviews(
        &self,
        external_id: &str,
    ) -> Result<Vec<super::LabelledText>, StoreError> {
        Ok(sqlx::query_as(concat!(
            labelled_reviews_from!(),
            "WHERE r.customer_id = (SELECT id FROM customers WHERE external_id = ?) \
                 ORDER BY date DESC, r.id DESC"
        ))
        .bind(external_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The catalogue: (id, name, brand, model, category).
    pub async fn catalogue(&self) -> Result<Vec<super::CatalogueEntry>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, name, brand, model, category FROM products ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Each customer's purchased products, customers indexed as in [`Store::purchases`], and the product
    /// names by index.
    pub async fn customer_products(&self) -> Result<(Vec<Vec<u32>>, Vec<String>), StoreError> {
        let customers: Vec<i64> = sqlx::query_scalar("SELECT id FROM customers ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let index: HashMap<i64, usize> = customers
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        let products: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM products ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        let pindex: HashMap<i64, u32> = products
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i as u32))
            .collect();
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT customer_id, product_id FROM orders WHERE product_id IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut baskets = vec![Vec::new(); customers.len()];
        for (c, p) in rows {
            if let (Some(ci), Some(pi)) = (index.get(&c), pindex.get(&p)) {
                baskets[*ci].push(*pi);
            }
        }
        Ok((baskets, products.into_iter().map(|(_, n)| n).collect()))
    }

    /// The last day a review is dated (its own date, else its purchase's), as the review tools date them.
    pub async fn last_review_day(&self) -> Result<Option<chrono::NaiveDate>, StoreError> {
        let (day,): (Option<chrono::NaiveDate>,) = sqlx::query_as(
            "SELECT MAX(COALESCE(r.review_date, o.order_date)) FROM reviews r \
             LEFT JOIN orders o ON o.id = r.order_id",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(day)
    }

    /// Reviews (or social posts) whose NLP labels are missing, were made from another text, or by
    /// another model version.
    pub async fn texts_to_enrich(
        &self,
        kind: super::TextKind,
        model_version: &str,
    ) -> Result<Vec<super::TextForNlp>, StoreError> {
        use super::TextKind;
        let (done_sql, rows_sql) = match kind {
            TextKind::Review => (
                "SELECT review_id, text_hash, model_version FROM review_nlp",
                "SELECT r.id, r.customer_id, r.product_id, COALESCE(r.review_date, o.order_date), \
                 r.rating, r.text_raw FROM reviews r LEFT JOIN orders o ON o.id = r.order_id \
                 ORDER BY r.id",
            ),
            TextKind::Post => (
                "SELECT post_id, text_hash, model_version FROM post_nlp",
                "SELECT id, customer_id, product_id, posted_on, NULL, text_raw FROM social_posts \
                 ORDER BY id",
            ),
        };
        let done: Vec<(i64, i64, String)> = sqlx::query_as(done_sql).fetch_all(&self.pool).await?;
        let done: std::collections::HashMap<i64, (i64, String)> =
            done.into_iter().map(|(id, h, v)| (id, (h, v))).collect();
        let rows: Vec<TextRow> = sqlx::query_as(rows_sql).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, customer_id, product_id, date, rating, text)| {
                let text_hash = super::text_hash(&text);
                match done.get(&id) {
                    Some((h, v)) if *h == text_hash && v == model_version => None,
                    _ => Some(super::TextForNlp {
                        id,
                        customer_id,
                        product_id,
                        date,
                        rating,
                        text,
                        text_hash,
                    }),
                }
            })
            .collect())
    }

    /// Writes (or replaces) NLP labels.
    pub async fn save_text_nlp(
        &self,
        kind: super::TextKind,
        rows: &[super::TextNlp],
    ) -> Result<(), StoreError> {
        let sql = match kind {
            super::TextKind::Review => {
                "INSERT OR REPLACE INTO review_nlp (review_id, text_hash, model_version, sentiment, \
                 p_positive, intent, intent_margin, brands, models, prices, labelled_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            }
            super::TextKind::Post => {
                "INSERT OR REPLACE INTO post_nlp (post_id, text_hash, model_version, sentiment, \
                 p_positive, intent, intent_margin, brands, models, prices, labelled_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            }
        };
        let now = chrono::Utc::now().to_rfc3339();
        let mut tx = self.write_tx().await?;
        for r in rows {
            sqlx::query(sql)
                .bind(r.id)
                .bind(r.text_hash)
                .bind(&r.model_version)
                .bind(&r.sentiment)
                .bind(r.p_positive)
                .bind(&r.intent)
                .bind(r.intent_margin)
                .bind(serde_json::to_string(&r.brands).unwrap_or_default())
                .bind(serde_json::to_string(&r.models).unwrap_or_default())
                .bind(serde_json::to_string(&r.prices).unwrap_or_default())
                .bind(&now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reviews by id with their product's name and their labels, in the order asked.
    pub async fn reviews_by_id(&self, ids: &[i64]) -> Result<Vec<super::ReviewView>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<super::ReviewView> = sqlx::query_as(
                "SELECT r.id, COALESCE(r.review_date, o.order_date) AS date, r.rating, r.text_raw, \
                 p.name AS product, n.sentiment, c.external_id AS customer FROM reviews r \
                 LEFT JOIN orders o ON o.id = r.order_id LEFT JOIN products p ON p.id = r.product_id \
                 LEFT JOIN review_nlp n ON n.review_id = r.id \
                 LEFT JOIN customers c ON c.id = r.customer_id WHERE r.id = ?",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            out.extend(row);
        }
        Ok(out)
    }

    /// Ids of products whose name, model or brand contains `query` (case-insensitive), or whose id it is.
    pub async fn find_products(&self, query: &str) -> Result<Vec<(i64, String)>, StoreError> {
        let like = format!("%{}%", query.to_lowercase());
        Ok(sqlx::query_as(
            "SELECT id, name FROM products WHERE lower(name) LIKE ?1 OR lower(name_clean) LIKE ?1 \
             OR lower(COALESCE(model, '')) LIKE ?1 OR lower(COALESCE(brand, '')) LIKE ?1 \
             OR CAST(id AS TEXT) = ?2 ORDER BY name",
        )
        .bind(like)
        .bind(query)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The catalogue's brands and models (for the entity gazetteer).
    pub async fn brands_and_models(
        &self,
    ) -> Result<Vec<(Option<String>, Option<String>)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT DISTINCT brand, model FROM products WHERE brand IS NOT NULL OR model IS NOT NULL")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn count(&self, table: &str) -> Result<i64, StoreError> {
        const TABLES: [&str; 9] = [
            "customers",
            "products",
            "orders",
            "reviews",
            "social_posts",
            "search_events",
            "import_batches",
            "rejects",
            "ingested_records",
        ];
        let table = TABLES
            .iter()
            .find(|t| **t == table)
            .ok_or_else(|| StoreError::Query(sqlx::Error::Protocol(format!("no table {table}"))))?;
        Ok(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// id, customer, product, date, rating, text
type TextRow = (
    i64,
    i64,
    Option<i64>,
    Option<chrono::NaiveDate>,
    Option<f64>,
    String,
);

/// The tables whose rows get sequential ids, in [`ImportTx`]'s order.
const PART_TABLES: [&str; 5] = [
    "orders",
    "reviews",
    "social_posts",
    "search_events",
    "customers",
];

/// One import's write transaction. Parts of records get sequential ids, so every table grows at its end
/// (content-hash ids would scatter inserts over the whole B-tree and rewrite most of it on each commit);
/// only the content-key table takes random inserts. Dropping it without [`ImportTx::commit`] rolls back.
pub struct ImportTx {
    tx: Transaction<'static, Sqlite>,
    next_order: i64,
    next_review: i64,
    next_social: i64,
    next_search: i64,
    next_customer: i64,
    /// External → internal customer ids seen in this import (bounded).
    known_customers: HashMap<String, i64>,
    known_products: HashSet<i64>,
}

impl ImportTx {
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
                            let id = take(&mut self.next_customer);
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
                let id = take(&mut self.next_order);
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
                    take(&mut self.next_review).into(),
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
                    take(&mut self.next_social).into(),
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
                    take(&mut self.next_search).into(),
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

/// Customers already resolved in this import: skips a lookup per line. Bounded.
const KNOWN_CUSTOMERS_CAP: usize = 1 << 20;

fn take(counter: &mut i64) -> i64 {
    let id = *counter;
    *counter += 1;
    id
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
