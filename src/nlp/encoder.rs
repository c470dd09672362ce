//! Sentence encoders: BERT-family models through candle-transformers and tokenizers, loaded from a folder
//! the asset fetch filled (config.json, tokenizer.json, model.safetensors). Texts are sorted by length and
//! batched (so padding stays short), mean-pooled over real tokens and L2-normalised — what
//! sentence-transformers does for all-MiniLM-L6-v2. CPU by default; the `cuda` feature adds the GPU.
//!
//! Ways to run it ([`Precision`]): candle-transformers' BERT in f32 (the reference, and the GPU path),
//! or [`super::int8`]'s own forward pass for the CPU — tokens packed without padding, fused per block
//! of tokens — with 8-bit matrix products (several times faster on a CPU with AVX-512 VNNI, and with
//! 7-bit weights on one with AVX2 only; vectors within cosine ~0.99 of the float ones) or f32 ones (the
//! reference's vectors up to rounding). Measured in tests/encoder.rs.
//!
//! Two weight formats: `model.safetensors` (all-MiniLM-L6-v2) and the packed 4-bit container of
//! multilingual-e5-small (`e5-small-q4.bin`, see [`super::q4`]). e5 models expect every input to start
//! with "query: " (or "passage: "); the encoder adds the prefix itself.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::int8::QKernel;

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("encoder files in {dir}: {reason}")]
    Load { dir: String, reason: String },
    #[error("tokenizing: {0}")]
    Tokenize(String),
    #[error("running the encoder: {0}")]
    Model(#[from] candle_core::Error),
    #[error(transparent)]
    Q4(#[from] super::q4::Q4Error),
    #[error(transparent)]
    Int8(#[from] super::int8::Int8Error),
    #[error("{0} runs on dongcha's own engine: set [nlp] encoder_precision to auto, f32 or int8")]
    NeedsOwnEngine(&'static str),
}

/// How the encoder runs on the CPU (`[nlp] encoder_precision`).
///
/// `Auto` resolves per machine, so a head trained on one machine may meet vectors of the other engine
/// on another: they are within cosine ~0.999 for multilingual-e5-small, and the head's metadata says
/// which engine trained it (a mismatch is logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// int8 where the CPU has a fast int8 kernel (AVX-512 VNNI; AVX2 with 7-bit weights), else f32.
    #[default]
    Auto,
    /// dongcha's forward pass with f32 matrix products.
    F32,
    /// dongcha's forward pass with int8 matrix products and VNNI's integers everywhere (the AVX2 kernel
    /// without VNNI; portable code, slow, without AVX2).
    Int8,
    /// int8 products with 7-bit weights: the AVX2 kernel `auto` runs on a CPU without VNNI (portable
    /// code without AVX2).
    Int8w7,
    /// candle-transformers' BERT in f32: the reference (and what a GPU device runs).
    Candle,
}

/// The forward pass an encoder runs (only one is held in memory).
enum Engine {
    Candle(BertModel),
    Own(super::int8::Int8Bert),
}

/// File name of the packed 4-bit multilingual-e5-small weights inside its asset folder.
pub const E5_Q4_FILE: &str = "e5-small-q4.bin";

pub struct Encoder {
    engine: Engine,
    /// The model's float weights and shape, read again from here when a task fine-tunes layers.
    dir: std::path::PathBuf,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    prefix: &'static str,
}

/// A text's vector from the encoder and from the encoder topped by a branch.
pub type VectorPair = (Vec<f32>, Vec<f32>);

/// The device to run on: the first CUDA GPU when built with `cuda` and one is present, else the CPU.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    Device::Cpu
}

impl Precision {
    /// The tag of the vectors this precision gives on this machine's CPU ([`QKernel::tag`]: "-int8",
    /// "-int8w7" for 7-bit weights), or "" for f32 vectors.
    pub fn tag(self) -> &'static str {
        self.int8_kernel().map_or("", QKernel::tag)
    }

    /// The int8 kernel this precision runs on this machine's CPU, or `None` (f32 products): `int8`
    /// gives VNNI's integers everywhere (VNNI, AVX2, or portable code); `auto` the fastest kernel
    /// where one beats f32 (VNNI, or AVX2 with 7-bit weights).
    pub fn int8_kernel(self) -> Option<QKernel> {
        match self {
            Precision::F32 | Precision::Candle => None,
            Precision::Int8 => Some(QKernel::exact_here()),
            Precision::Int8w7 => Some(QKernel::Avx2W7),
            Precision::Auto => QKernel::fastest_here(),
        }
    }
}

impl Encoder {
    /// Loads a BERT-family sentence encoder from `dir` on candle's f32 path (the reference).
    pub fn load(dir: &Path, device: Device) -> Result<Self, EncoderError> {
        Self::load_with(dir, device, Precision::Candle)
    }

    /// Loads a BERT-family sentence encoder from `dir`. Inputs are truncated to the model's
    /// `max_seq_length` (sentence_bert_config.json; 256 when absent). The int8 path is only for the
    /// CPU device.
    pub fn load_with(
        dir: &Path,
        device: Device,
        precision: Precision,
    ) -> Result<Self, EncoderError> {
        let fail = |reason: String| EncoderError::Load {
            dir: dir.display().to_string(),
            reason,
        };
        let packed = dir.join(E5_Q4_FILE);
        // dongcha's own pass is for the CPU; a GPU device runs candle's.
        let own = device.is_cpu() && precision != Precision::Candle;
        let int8 = precision.int8_kernel();
        let (engine, config, max_tokens, prefix) = if packed.exists() {
            let q = super::q4::load(&packed, &device)?;
            let engine = if own {
                Engine::Own(super::int8::Int8Bert::from_tensors(
                    &q.tensors, &q.config, int8,
                )?)
            } else {
                let vb = VarBuilder::from_tensors(q.tensors, DType::F32, &device);
                Engine::Candle(
                    BertModel::load(vb, &q.config).map_err(|e| fail(format!("weights: {e}")))?,
                )
            };
            let max = q.config.max_position_embeddings;
            (engine, q.config, max, "query: ")
        } else {
            let max_tokens = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["max_seq_length"].as_u64())
                .unwrap_or(256) as usize;
            let config: Config = serde_json::from_str(
                &std::fs::read_to_string(dir.join("config.json"))
                    .map_err(|e| fail(format!("config.json: {e}")))?,
            )
            .map_err(|e| fail(format!("config.json: {e}")))?;
            let weights = dir.join("model.safetensors");
            let engine = if own {
                let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
                    .map_err(|e| fail(format!("model.safetensors: {e}")))?;
                Engine::Own(super::int8::Int8Bert::from_tensors(
                    &tensors, &config, int8,
                )?)
            } else {
                // SAFETY: the weights file is memory-mapped read-only; the asset cache never
                // rewrites a completed asset in place (a new version is unpacked beside it and
                // renamed).
                let vb =
                    unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &device) }
                        .map_err(|e| fail(format!("model.safetensors: {e}")))?;
                Engine::Candle(
                    BertModel::load(vb, &config).map_err(|e| fail(format!("weights: {e}")))?,
                )
            };
            (engine, config, max_tokens, "")
        };
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        let pad_id = config.pad_token_id as u32;
        let pad_token = tokenizer
            .id_to_token(pad_id)
            .unwrap_or_else(|| "[PAD]".into());
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| fail(format!("truncation: {e}")))?;
        Ok(Self {
            engine,
            dir: dir.to_path_buf(),
            tokenizer,
            device,
            dim: config.hidden_size,
            prefix,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Suffix that tells vectors of the int8 path from the f32 ones in cache names and head metadata:
    /// "-int8", "-int8w7" (the AVX2 kernel's 7-bit weights) or "".
    pub fn tag(&self) -> &'static str {
        match &self.engine {
            Engine::Own(m) => m.tag(),
            Engine::Candle(_) => "",
        }
    }

    /// Which forward pass runs: "int8 (AVX-512 VNNI)", "int8 (AVX2)", "int8 (AVX2, 7-bit weights)",
    /// "int8 (portable)", "f32" (dongcha's) or "f32 (candle)".
    pub fn engine(&self) -> &'static str {
        match &self.engine {
            Engine::Own(m) => m.engine(),
            Engine::Candle(_) => "f32 (candle)",
        }
    }

    /// The model's float weights (BERT's names) and shape, as loaded (4-bit weights dequantised).
    pub fn float_weights(
        &self,
    ) -> Result<(std::collections::HashMap<String, Tensor>, Config), EncoderError> {
        let fail = |reason: String| EncoderError::Load {
            dir: self.dir.display().to_string(),
            reason,
        };
        let packed = self.dir.join(E5_Q4_FILE);
        if packed.exists() {
            let q = super::q4::load(&packed, &Device::Cpu)?;
            return Ok((q.tensors, q.config));
        }
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(self.dir.join("config.json"))
                .map_err(|e| fail(format!("config.json: {e}")))?,
        )
        .map_err(|e| fail(format!("config.json: {e}")))?;
        let tensors =
            candle_core::safetensors::load(self.dir.join("model.safetensors"), &Device::Cpu)
                .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        Ok((tensors, config))
    }

    fn own(&self, what: &'static str) -> Result<&super::int8::Int8Bert, EncoderError> {
        match &self.engine {
            Engine::Own(m) => Ok(m),
            Engine::Candle(_) => Err(EncoderError::NeedsOwnEngine(what)),
        }
    }

    /// How many layers the encoder has (dongcha's own engine only).
    pub fn layer_count(&self) -> Result<usize, EncoderError> {
        Ok(self.own("a fine-tuned branch")?.layer_count())
    }

    /// Layers trained to replace the encoder's top `count` (tensors `{prefix}{i}.…`), run by the same
    /// engine as the rest.
    pub fn branch(
        &self,
        tensors: &std::collections::HashMap<String, Tensor>,
        prefix: &str,
        count: usize,
    ) -> Result<super::int8::Branch, EncoderError> {
        let m = self.own("a fine-tuned branch")?;
        let start = m.layer_count().saturating_sub(count);
        Ok(super::int8::Branch::from_tensors(
            tensors, prefix, start, count, m,
        )?)
    }

    /// The tokenizer's encodings of the texts (prefix added, truncated, padded to the longest).
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<tokenizers::Encoding>, EncoderError> {
        let inputs: Vec<String> = texts
            .iter()
            .map(|t| format!("{}{t}", self.prefix))
            .collect();
        self.tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| EncoderError::Tokenize(e.to_string()))
    }

    /// Token ids of each text as the model reads them.
    fn ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EncoderError> {
        Ok(self
            .tokenize(texts)?
            .iter()
            .map(|e| real_ids(e).to_vec())
            .collect())
    }

    /// Runs `f` over the texts `batch` at a time, shortest first; results in input order.
    fn batched<T: Default + Clone>(
        &self,
        texts: &[&str],
        batch: usize,
        mut f: impl FnMut(&[&[u32]]) -> Result<Vec<T>, EncoderError>,
    ) -> Result<Vec<T>, EncoderError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|i| texts[*i].len());
        let mut out = vec![T::default(); texts.len()];
        for chunk in order.chunks(batch.max(1)) {
            let batch_texts: Vec<&str> = chunk.iter().map(|i| texts[*i]).collect();
            let ids = self.ids(&batch_texts)?;
            let seqs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            for (i, v) in chunk.iter().zip(f(&seqs)?) {
                out[*i] = v;
            }
        }
        Ok(out)
    }

    /// Token states after the encoder's first `layers` layers, one `len × dim` block per text: the
    /// frozen part a fine-tuned branch reads.
    pub fn states(
        &self,
        texts: &[&str],
        layers: usize,
        batch: usize,
    ) -> Result<Vec<Vec<f32>>, EncoderError> {
        let m = self.own("fine-tuning")?;
        self.batched(texts, batch, |seqs| Ok(m.states(seqs, layers)))
    }

    /// Sentence vectors of token states run through `branch`. Production encodes from the text
    /// ([`Encoder::encode_branch`]); this is the probe of the test that pins the training pass to the
    /// engine on the very same states (`tests/encoder.rs`), apart from the bottom layers' rounding.
    pub fn branch_vectors_from_states(
        &self,
        states: &[&[f32]],
        branch: &super::int8::Branch,
    ) -> Result<Vec<Vec<f32>>, EncoderError> {
        Ok(self
            .own("a fine-tuned branch")?
            .embed_states(states, branch))
    }

    /// Sentence vectors of the encoder topped by `branch` (in place of its own top layers).
    pub fn encode_branch(
        &self,
        texts: &[&str],
        batch: usize,
        branch: &super::int8::Branch,
    ) -> Result<Vec<Vec<f32>>, EncoderError> {
        let m = self.own("a fine-tuned branch")?;
        self.batched(texts, batch, |seqs| Ok(m.embed_branch(seqs, branch)))
    }

    /// The encoder's sentence vectors and those of the encoder topped by `branch`, from one pass
    /// through the shared layers.
    pub fn encode_with_branch(
        &self,
        texts: &[&str],
        batch: usize,
        branch: &super::int8::Branch,
    ) -> Result<Vec<VectorPair>, EncoderError> {
        let m = self.own("a fine-tuned branch")?;
        self.batched(texts, batch, |seqs| {
            let (a, b) = m.embed_with_branch(seqs, branch);
            Ok(a.into_iter().zip(b).collect())
        })
    }

    /// One unit vector per text, in input order. Texts are encoded `batch` at a time, shortest first.
    pub fn encode(&self, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>, EncoderError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|i| texts[*i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch.max(1)) {
            let batch_texts: Vec<&str> = chunk.iter().map(|i| texts[*i]).collect();
            for (i, v) in chunk.iter().zip(self.encode_batch(&batch_texts)?) {
                out[*i] = v;
            }
        }
        Ok(out)
    }

    fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let enc = self.tokenize(texts)?;
        let model = match &self.engine {
            Engine::Candle(model) => model,
            Engine::Own(fast) => {
                let seqs: Vec<&[u32]> = enc.iter().map(real_ids).collect();
                return Ok(fast.embed(&seqs));
            }
        };
        let n = enc.len();
        let len = enc.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            enc.iter().flat_map(|e| f(e).to_vec()).collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (n, len), &self.device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (n, len), &self.device)?;
        let mask = Tensor::from_vec(flat(&|e| e.get_attention_mask()), (n, len), &self.device)?;
        let hidden = model.forward(&ids, &types, Some(&mask))?; // (n, len, dim)
        // Mean over real tokens, then unit length.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (n, dim)
        let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

/// The real tokens of an encoding: padding is right-hand, so the first `mask sum` ids.
fn real_ids(e: &tokenizers::Encoding) -> &[u32] {
    let real = e.get_attention_mask().iter().filter(|m| **m != 0).count();
    &e.get_ids()[..real]
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}
