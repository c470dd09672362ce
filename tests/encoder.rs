//! The candle encoder against sentence-transformers' own vectors for the same sentences
//! (tests/data/minilm_reference.json, written by scripts/reference_vectors.py).

mod common;

use dongcha::nlp::encoder::{Encoder, cosine};

#[test]
fn minilm_matches_sentence_transformers() {
    let model = common::asset_file("all-minilm-l6-v2", "model.safetensors");
    let encoder = Encoder::load(model.parent().unwrap(), candle_core::Device::Cpu).unwrap();
    assert_eq!(encoder.dim(), 384);
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("data/minilm_reference.json")).unwrap();
    let sentences: Vec<&str> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    // Batches of 3 over 8 sentences of different lengths: padding must not change any vector.
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
        assert!(c >= 0.999, "{:?}: cosine {c}", sentences[i]);
        worst = worst.min(c);
        let norm: f32 = ours[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    println!(
        "lowest cosine to sentence-transformers over {} sentences: {worst:.7}",
        sentences.len()
    );
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
