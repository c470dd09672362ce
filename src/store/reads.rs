//! The store's queries that both backends run as written (portable SQL; see [`on_db!`]): batches,
//! stats, the reads the tools and models make, and the labels enrichment writes.

use std::collections::HashMap;
use std::path::Path;

use sqlx::Row;

use super::{BatchCounts, BatchId, BatchSummary, Stats, Store, StoreError, TableStats, WritePool};

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

/// The rest of an NLP label upsert after `INSERT INTO table (key, `: one row replaced whole.
macro_rules! nlp_upsert {
    ($key:literal) => {
        concat!(
            "text_hash, model_version, sentiment, p_positive, intent, intent_margin, brands, models, \
             prices, labelled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (",
            $key,
            ") DO UPDATE SET text_hash = excluded.text_hash, model_version = excluded.model_version, \
             sentiment = excluded.sentiment, p_positive = excluded.p_positive, intent = excluded.intent, \
             intent_margin = excluded.intent_margin, brands = excluded.brands, models = excluded.models, \
             prices = excluded.prices, labelled_at = excluded.labelled_at"
        )
    };
}

/// Products by name as SQLite's BINARY collation orders text (bytes), then id, whatever the Postgres
/// database's collation: indexes built over sorted names are the same on both backends.
fn sort_products(rows: &mut [(i64, String)]) {
    rows.sort_by(|a, b| (a.1.as_bytes(), a.0).cmp(&(b.1.as_bytes(), b.0)));
}

impl Store {
    pub async fn begin_batch(&self, source: &str, format: &str) -> Result<BatchId, StoreError> {
        on_db!(self, pool => {
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
                .fetch_one(pool)
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
        })
    }

    pub async fn finish_batch(
        &self,
        batch: BatchId,
        counts: BatchCounts,
        rejects_path: Option<&Path>,
    ) -> Result<(), StoreError> {
        on_db!(self, pool => {
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
            .execute(pool)
            .await?;
            Ok(())
        })
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
        on_db!(self, pool => {
            sqlx::query("UPDATE products SET brand = $1, model = $2, category = $3, list_price_cents = $4 WHERE id = $5")
                .bind(brand)
                .bind(model)
                .bind(category)
                .bind(list_price_cents)
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    pub async fn stats(&self) -> Result<Stats, StoreError> {
        on_db!(self, pool => {
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
                    // Dates as text on both backends (Postgres keeps them as DATE).
                    Some(c) => format!(
                        "SELECT COUNT(*), CAST(MIN({c}) AS TEXT), CAST(MAX({c}) AS TEXT) FROM {table}"
                    ),
                    None => format!(
                        "SELECT COUNT(*), CAST(NULL AS TEXT), CAST(NULL AS TEXT) FROM {table}"
                    ),
                };
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?;
                tables.push(TableStats {
                    table,
                    rows: row.get(0),
                    first: row.get(1),
                    last: row.get(2),
                });
            }
            let revenue_cents: i64 =
                sqlx::query_scalar("SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM orders")
                    .fetch_one(pool)
                    .await?;
            let rejects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rejects")
                .fetch_one(pool)
                .await?;
            let batches = sqlx::query(
                "SELECT id, source, format, started_at, records_read, accepted, duplicates, rejected, rejects_path \
                 FROM import_batches ORDER BY id DESC LIMIT 10",
            )
            .fetch_all(pool)
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
        })
    }

    /// Every purchase as (customer index, day, amount), with the customers' external ids by index.
    pub async fn purchases(
        &self,
    ) -> Result<(Vec<String>, Vec<crate::insight::rfm::Purchase>), StoreError> {
        on_db!(self, pool => {
            let customers: Vec<(i64, String)> =
                sqlx::query_as("SELECT id, external_id FROM customers ORDER BY id")
                    .fetch_all(pool)
                    .await?;
            let index: HashMap<i64, u32> = customers
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (*id, i as u32))
                .collect();
            let rows: Vec<(i64, chrono::NaiveDate, Option<i64>)> =
                sqlx::query_as("SELECT customer_id, order_date, amount_cents FROM orders")
                    .fetch_all(pool)
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
        })
    }

    /// Per customer (indexed as in [`Store::purchases`]), what their labelled reviews and posts say;
    /// `None` for customers without any. Empty when `dongcha enrich` has not run.
    pub async fn customer_text_features(
        &self,
    ) -> Result<Vec<Option<crate::insight::rfm::TextFeatures>>, StoreError> {
        on_db!(self, pool => {
            let customers: Vec<(i64,)> = sqlx::query_as("SELECT id FROM customers ORDER BY id")
                .fetch_all(pool)
                .await?;
            let rows: Vec<(i64, i64, f64, f64, f64, f64, f64)> = sqlx::query_as(
                "SELECT customer_id, COUNT(*), CAST(AVG(p_positive) AS DOUBLE PRECISION), \
                 CAST(AVG(CASE WHEN sentiment = 'negative' THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION), \
                 CAST(AVG(CASE WHEN intent = 'buy' THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION), \
                 CAST(AVG(CASE WHEN intent = 'abandon' THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION), \
                 CAST(AVG(CASE WHEN intent = 'wait' THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION) FROM ( \
                   SELECT r.customer_id, n.p_positive, n.sentiment, n.intent FROM review_nlp n \
                     JOIN reviews r ON r.id = n.review_id \
                   UNION ALL \
                   SELECT s.customer_id, n.p_positive, n.sentiment, n.intent FROM post_nlp n \
                     JOIN social_posts s ON s.id = n.post_id \
                 ) AS t GROUP BY customer_id",
            )
            .fetch_all(pool)
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
        })
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
             WHERE c.external_id IN ({{in}}) ORDER BY r.review_date DESC NULLS LAST, r.id DESC LIMIT {}",
            limit.min(i64::MAX as usize)
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
        on_db!(self, pool => {
            let mut out = Vec::new();
            for chunk in values.chunks(500) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let sql = sql.replace("{in}", &marks.join(","));
                let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                for v in chunk {
                    q = q.bind(v);
                }
                out.extend(q.fetch_all(pool).await?);
                if out.len() >= limit {
                    out.truncate(limit);
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Products as (id, name) in the order [`Store::customer_products`] indexes them.
    pub async fn products_by_name(&self) -> Result<Vec<(i64, String)>, StoreError> {
        on_db!(self, pool => {
            let mut rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM products")
                .fetch_all(pool)
                .await?;
            sort_products(&mut rows);
            Ok(rows)
        })
    }

    /// Sales as (day, amount), all of them or one product's (by cleaned name) or one category's.
    pub async fn sales(
        &self,
        product: Option<&str>,
        category: Option<&str>,
    ) -> Result<Vec<crate::insight::rfm::Purchase>, StoreError> {
        on_db!(self, pool => {
            let product_clean = product.map(|p| super::records::ProductRef::from_name(p).name_clean);
            let rows: Vec<(chrono::NaiveDate, Option<i64>)> = sqlx::query_as(
                "SELECT o.order_date, o.amount_cents FROM orders o LEFT JOIN products p ON p.id = o.product_id \
                 WHERE ($1 IS NULL OR p.name_clean = $1) AND ($2 IS NULL OR p.category = $2)",
            )
            .bind(product_clean)
            .bind(category)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(date, cents)| crate::insight::rfm::Purchase {
                    customer: 0,
                    date,
                    amount: cents.unwrap_or(0) as f64 / 100.0,
                })
                .collect())
        })
    }

    /// Order lines between two days (inclusive), optionally of one product (store id) or category.
    pub async fn sale_lines(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        product_id: Option<i64>,
        category: Option<&str>,
    ) -> Result<Vec<super::SaleLine>, StoreError> {
        on_db!(self, pool => {
            Ok(sqlx::query_as(concat!(
                sale_lines_from!(),
                "WHERE o.order_date BETWEEN $1 AND $2 AND ($3 IS NULL OR o.product_id = $3) \
                     AND ($4 IS NULL OR p.category = $4)"
            ))
            .bind(from)
            .bind(to)
            .bind(product_id)
            .bind(category)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Labelled reviews between two days (review date, else its purchase's), optionally of one product.
    pub async fn labelled_reviews(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        product_id: Option<i64>,
    ) -> Result<Vec<super::LabelledText>, StoreError> {
        on_db!(self, pool => {
            Ok(sqlx::query_as(concat!(
                labelled_reviews_from!(),
                "WHERE COALESCE(r.review_date, o.order_date) BETWEEN $1 AND $2 \
                     AND ($3 IS NULL OR r.product_id = $3) ORDER BY r.id"
            ))
            .bind(in_sql_range(from))
            .bind(in_sql_range(to))
            .bind(product_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Labelled social posts between two days, optionally about one product.
    pub async fn labelled_posts(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        product_id: Option<i64>,
    ) -> Result<Vec<super::LabelledText>, StoreError> {
        on_db!(self, pool => {
            Ok(sqlx::query_as(
                "SELECT s.id, s.posted_on AS date, CAST(NULL AS DOUBLE PRECISION) AS rating, s.text_raw, p.name AS product, \
                 n.sentiment, n.p_positive, n.intent FROM social_posts s \
                 LEFT JOIN products p ON p.id = s.product_id LEFT JOIN post_nlp n ON n.post_id = s.id \
                 WHERE s.posted_on BETWEEN $1 AND $2 AND ($3 IS NULL OR s.product_id = $3) ORDER BY s.id",
            )
            .bind(in_sql_range(from))
            .bind(in_sql_range(to))
            .bind(product_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// One customer's order lines, by the shop's customer id (None when unknown).
    pub async fn customer_lines(
        &self,
        external_id: &str,
    ) -> Result<Option<Vec<super::SaleLine>>, StoreError> {
        on_db!(self, pool => {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM customers WHERE external_id = $1")
                .bind(external_id)
                .fetch_optional(pool)
                .await?;
            let Some(id) = id else { return Ok(None) };
            Ok(Some(
                sqlx::query_as(concat!(
                    sale_lines_from!(),
                    "WHERE o.customer_id = $1 ORDER BY o.order_date, o.id"
                ))
                .bind(id)
                .fetch_all(pool)
                .await?,
            ))
        })
    }

    /// One customer's labelled reviews (newest first).
    pub async fn customer_reviews(
        &self,
        external_id: &str,
    ) -> Result<Vec<super::LabelledText>, StoreError> {
        on_db!(self, pool => {
            Ok(sqlx::query_as(concat!(
                labelled_reviews_from!(),
                "WHERE r.customer_id = (SELECT id FROM customers WHERE external_id = $1) \
                     ORDER BY date DESC NULLS LAST, r.id DESC"
            ))
            .bind(external_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The catalogue: (id, name, brand, model, category).
    pub async fn catalogue(&self) -> Result<Vec<super::CatalogueEntry>, StoreError> {
        on_db!(self, pool => {
            let mut rows: Vec<super::CatalogueEntry> =
                sqlx::query_as("SELECT id, name, brand, model, category FROM products")
                    .fetch_all(pool)
                    .await?;
            rows.sort_by(|a, b| (a.name.as_bytes(), a.id).cmp(&(b.name.as_bytes(), b.id)));
            Ok(rows)
        })
    }

    /// Each customer's purchased products, customers indexed as in [`Store::purchases`], and the product
    /// names by index.
    pub async fn customer_products(&self) -> Result<(Vec<Vec<u32>>, Vec<String>), StoreError> {
        on_db!(self, pool => {
            let customers: Vec<i64> = sqlx::query_scalar("SELECT id FROM customers ORDER BY id")
                .fetch_all(pool)
                .await?;
            let index: HashMap<i64, usize> = customers
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, i))
                .collect();
            let mut products: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM products")
                .fetch_all(pool)
                .await?;
            sort_products(&mut products);
            let pindex: HashMap<i64, u32> = products
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (*id, i as u32))
                .collect();
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT DISTINCT customer_id, product_id FROM orders WHERE product_id IS NOT NULL",
            )
            .fetch_all(pool)
            .await?;
            let mut baskets = vec![Vec::new(); customers.len()];
            for (c, p) in rows {
                if let (Some(ci), Some(pi)) = (index.get(&c), pindex.get(&p)) {
                    baskets[*ci].push(*pi);
                }
            }
            Ok((baskets, products.into_iter().map(|(_, n)| n).collect()))
        })
    }

    /// The last day a review is dated (its own date, else its purchase's), as the review tools date them.
    pub async fn last_review_day(&self) -> Result<Option<chrono::NaiveDate>, StoreError> {
        on_db!(self, pool => {
            let (day,): (Option<chrono::NaiveDate>,) = sqlx::query_as(
                "SELECT MAX(COALESCE(r.review_date, o.order_date)) FROM reviews r \
                 LEFT JOIN orders o ON o.id = r.order_id",
            )
            .fetch_one(pool)
            .await?;
            Ok(day)
        })
    }

    /// Reviews (or social posts) whose NLP labels are missing, were made from another text, or by
    /// another model version.
    pub async fn texts_to_enrich(
        &self,
        kind: super::TextKind,
        model_version: &str,
    ) -> Result<Vec<super::TextForNlp>, StoreError> {
        on_db!(self, pool => {
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
                    "SELECT id, customer_id, product_id, posted_on, CAST(NULL AS DOUBLE PRECISION), text_raw FROM social_posts \
                     ORDER BY id",
                ),
            };
            let done: Vec<(i64, i64, String)> = sqlx::query_as(done_sql).fetch_all(pool).await?;
            let done: std::collections::HashMap<i64, (i64, String)> =
                done.into_iter().map(|(id, h, v)| (id, (h, v))).collect();
            let rows: Vec<TextRow> = sqlx::query_as(rows_sql).fetch_all(pool).await?;
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
        })
    }

    /// Writes (or replaces) NLP labels.
    pub async fn save_text_nlp(
        &self,
        kind: super::TextKind,
        rows: &[super::TextNlp],
    ) -> Result<(), StoreError> {
        on_db!(self, pool => {
            let sql = match kind {
                super::TextKind::Review => {
                    concat!(
                        "INSERT INTO review_nlp (review_id, ",
                        nlp_upsert!("review_id")
                    )
                }
                super::TextKind::Post => {
                    concat!("INSERT INTO post_nlp (post_id, ", nlp_upsert!("post_id"))
                }
            };
            let now = chrono::Utc::now().to_rfc3339();
            let mut tx = pool.write_tx().await?;
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
        })
    }

    /// Reviews by id with their product's name and their labels, in the order asked.
    pub async fn reviews_by_id(&self, ids: &[i64]) -> Result<Vec<super::ReviewView>, StoreError> {
        on_db!(self, pool => {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let row: Option<super::ReviewView> = sqlx::query_as(
                    "SELECT r.id, COALESCE(r.review_date, o.order_date) AS date, r.rating, r.text_raw, \
                     p.name AS product, n.sentiment, c.external_id AS customer FROM reviews r \
                     LEFT JOIN orders o ON o.id = r.order_id LEFT JOIN products p ON p.id = r.product_id \
                     LEFT JOIN review_nlp n ON n.review_id = r.id \
                     LEFT JOIN customers c ON c.id = r.customer_id WHERE r.id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await?;
                out.extend(row);
            }
            Ok(out)
        })
    }

    /// Ids of products whose name, model or brand contains `query` (case-insensitive), or whose id it is.
    pub async fn find_products(&self, query: &str) -> Result<Vec<(i64, String)>, StoreError> {
        on_db!(self, pool => {
            let like = format!("%{}%", query.to_lowercase());
            let mut rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, name FROM products WHERE lower(name) LIKE $1 OR lower(name_clean) LIKE $1 \
                 OR lower(COALESCE(model, '')) LIKE $1 OR lower(COALESCE(brand, '')) LIKE $1 \
                 OR CAST(id AS TEXT) = $2",
            )
            .bind(like)
            .bind(query)
            .fetch_all(pool)
            .await?;
            sort_products(&mut rows);
            Ok(rows)
        })
    }

    /// The catalogue's brands and models (for the entity gazetteer).
    pub async fn brands_and_models(
        &self,
    ) -> Result<Vec<(Option<String>, Option<String>)>, StoreError> {
        on_db!(self, pool => {
            Ok(
                sqlx::query_as("SELECT DISTINCT brand, model FROM products WHERE brand IS NOT NULL OR model IS NOT NULL")
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    pub async fn count(&self, table: &str) -> Result<i64, StoreError> {
        on_db!(self, pool => {
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
                    .fetch_one(pool)
                    .await?,
            )
        })
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

/// `d` moved into the dates both databases hold (Postgres's start at 4713 BC and end in the year
/// 5,874,897; chrono's reach further): the two reads that take open-ended periods (`labelled_reviews`,
/// `labelled_posts`) are passed chrono's extremes for "since the start".
fn in_sql_range(d: chrono::NaiveDate) -> chrono::NaiveDate {
    let first = chrono::NaiveDate::from_ymd_opt(-4712, 1, 1).expect("valid date");
    let last = chrono::NaiveDate::from_ymd_opt(200_000, 12, 31).expect("valid date");
    d.clamp(first, last)
}
