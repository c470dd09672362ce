//! Ingestion throughput: a generated 1,000,000-line JSON Lines file in the brief's record shape, imported
//! into a fresh store (validation, text cleaning with jieba, content keys, rejects; no NLP enrichment):
//! SQLite (`jsonl_1m_lines`), and PostgreSQL (`jsonl_1m_lines_postgres`, a new database per run) when
//! DONGCHA_BENCH_POSTGRES names a server (postgres://USER@127.0.0.1:PORT/postgres; scripts/bench-ingest.sh
//! starts a throwaway one). Reports records per second.
//!
//! The file is generated once per run, deterministically: 200,000 customers, purchases in date order (as
//! shop exports are), a quarter of them with a review (Chinese or English), one in ten with a Weibo post.
//!
//!     cargo bench --bench ingest

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dongcha::config::Config;
use dongcha::ingest::{IngestOptions, ingest_file};
use dongcha::store::Store;

const LINES: u64 = 1_000_000;

const REVIEWS: [&str; 10] = [
    "物流太慢了，等了一个星期才到",
    "手机很好用，电池续航不错",
    "屏幕有划痕，客服态度也很差",
    "性价比高，推荐购买",
    "包装破损，差评",
    "iPhone 13 拍照效果很好，就是有点贵",
    "Great phone, battery lasts all day",
    "Delivery was slow and the box was damaged",
    "Not worth the price",
    "Love the camera on my iPhone 13",
];
const PRODUCTS: [(&str, u64); 6] = [
    ("iPhone 13", 519_900),
    ("小米14", 399_900),
    ("Mate 60 Pro", 699_900),
    ("Galaxy S23", 459_900),
    ("ThinkPad T14", 659_900),
    ("AirPods Pro", 149_900),
];

/// A small deterministic generator (SplitMix64), so the file is the same on every machine.
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn generate(path: &Path) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create bench file"));
    let mut rng = Mix(618);
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
    for i in 0..LINES {
        let day = start + chrono::Duration::days((i * 365 / LINES) as i64);
        let (product, list) = PRODUCTS[rng.below(6) as usize];
        let cents = list - rng.below(list / 10);
        let user = rng.below(200_000);
        write!(
            out,
            r#"{{"userId":"u{user}","purchaseDate":"{day}","productName":"{product}","price":{}.{:02}"#,
            cents / 100,
            cents % 100
        )
        .expect("write");
        let kind = rng.below(100);
        if kind < 25 {
            let text = REVIEWS[rng.below(10) as usize];
            write!(
                out,
                r#","reviewText":"{text} #{}","reviewRating":{}"#,
                i % 97,
                1 + rng.below(5)
            )
            .expect("write");
        } else if kind < 35 {
            let text = REVIEWS[rng.below(6) as usize];
            write!(
                out,
                r#","socialMediaId":"wb{i}","socialMediaType":"Weibo","socialMediaText":"{text}""#
            )
            .expect("write");
        }
        out.write_all(b"}\n").expect("write");
    }
    out.flush().expect("flush");
}

fn bench_ingest(c: &mut Criterion) {
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("records.jsonl");
    generate(&file);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cfg = Config::from_toml_str("").expect("config");

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(LINES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(120));
    group.warm_up_time(Duration::from_secs(1));
    let server = std::env::var("DONGCHA_BENCH_POSTGRES").ok();
    let mut backends = vec![("jsonl_1m_lines", None)];
    match &server {
        Some(url) => backends.push(("jsonl_1m_lines_postgres", Some(url.clone()))),
        None => eprintln!(
            "ingest/jsonl_1m_lines_postgres not run: DONGCHA_BENCH_POSTGRES is not set (scripts/bench-ingest.sh starts a server)"
        ),
    }
    for (name, server) in backends {
        let mut run = 0u32;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let state = tempfile::tempdir().expect("tempdir");
                    let mut cfg = cfg.clone().with_data_dir(state.path());
                    if let Some(server) = &server {
                        run += 1;
                        cfg.store.url = rt.block_on(fresh_database(server, run));
                    }
                    let mut opts = IngestOptions::from_config(&cfg);
                    opts.show_progress = false;
                    total += rt.block_on(async {
                        let store = Store::open_config(&cfg).await.expect("store");
                        let t = Instant::now();
                        let report = ingest_file(&store, &file, &opts).await.expect("ingest");
                        let elapsed = t.elapsed();
                        assert_eq!(report.counts.accepted, LINES);
                        store.close().await;
                        elapsed
                    });
                }
                total
            });
        });
    }
    group.finish();
}

/// A new database on the Postgres server at `server` (its URL ends in /postgres), and its URL.
async fn fresh_database(server: &str, run: u32) -> String {
    let name = format!("bench_ingest_{}_{run}", std::process::id());
    let admin = sqlx::PgPool::connect(server).await.expect("bench Postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await
    .expect("drop database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    format!(
        "{}/{name}",
        server.rsplit_once('/').expect("URL with a database").0
    )
}

criterion_group!(benches, bench_ingest);
criterion_main!(benches);
