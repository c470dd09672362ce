//! `dongcha enrich` and `dongcha search`: label every stored review (sentiment, brands, models, prices)
//! and put its vector in the review index; then search reviews by meaning with payload filters.
//!
//! Incremental: only reviews without labels, with a changed text, or labelled by another model version
//! are processed; the index is updated in place (a review's point id is its id in the store).

use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;

use crate::config::{Config, IndexBackend};
use crate::heads::{self, HeadsError};
use crate::index::edge::EdgeIndex;
use crate::index::{self, IndexError, ReviewPayload, ReviewPoint, SearchFilter, VectorIndex};
use crate::nlp::encoder::Encoder;
use crate::nlp::entities::Gazetteer;
use crate::nlp::intent::IntentModel;
use crate::nlp::sentiment::{Sentiment, SentimentHead};
use crate::store::{ReviewView, Store, StoreError, TextForNlp, TextKind, TextNlp};

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error(transparent)]
    Heads(#[from] HeadsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("encoding: {0}")]
    Encode(#[from] crate::nlp::encoder::EncoderError),
    #[error(transparent)]
    Sentiment(#[from] crate::nlp::sentiment::SentimentError),
    #[error("{0}")]
    Input(String),
}

/// The review index's folder: one per encoder, so switching encoders never mixes vector spaces.
pub fn index_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir()
        .join("index")
        .join(format!("reviews-{}", cfg.models.review_encoder))
}

/// The configured review index: qdrant-edge under the data dir, or a Qdrant server.
pub fn open_index(cfg: &Config, dim: usize) -> Result<Box<dyn VectorIndex>, IndexError> {
    Ok(match cfg.index.backend {
        IndexBackend::Edge => {
            let mut index = EdgeIndex::open(&index_dir(cfg), dim)?;
            index.hnsw_ef = cfg.index.hnsw_ef;
            Box::new(index)
        }
        IndexBackend::Qdrant => {
            if cfg.index.url.is_empty() {
                return Err(IndexError::Engine {
                    path: "[index] url".into(),
                    reason: "backend = \"qdrant\" needs the server's url".into(),
                });
            }
            let collection = format!("{}_{}", cfg.index.collection, cfg.models.review_encoder)
                .replace(['-', '.'], "_");
            let mut index =
                crate::index::remote::RemoteIndex::open(&cfg.index.url, &collection, dim)?;
            index.hnsw_ef = cfg.index.hnsw_ef as u64;
            Box::new(index)
        }
    })
}

/// The review index for reading (search, count, vectors by id) without loading the encoder: the embedded
/// index knows its own dimension; `None` when nothing was indexed yet. A Qdrant server collection is
/// opened with the encoder's dimension (needed if it has to be created).
pub fn open_index_for_reading(cfg: &Config) -> Result<Option<Box<dyn VectorIndex>>, EnrichError> {
    match cfg.index.backend {
        IndexBackend::Edge => Ok(EdgeIndex::open_existing(&index_dir(cfg))?.map(|mut i| {
            i.hnsw_ef = cfg.index.hnsw_ef;
            Box::new(i) as Box<dyn VectorIndex>
        })),
        IndexBackend::Qdrant => {
            let dim = heads::review_encoder(cfg)?.dim();
            Ok(Some(open_index(cfg, dim)?))
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrichSummary {
    pub reviews_pending: usize,
    pub posts_pending: usize,
    /// Reviews and posts labelled by this run.
    pub labelled: usize,
    /// negative, neutral, positive
    pub by_sentiment: [usize; 3],
    /// buy, abandon, wait, none (no intent stated)
    pub by_intent: [usize; 4],
    pub with_brand: usize,
    pub with_price: usize,
    pub index_points: usize,
    pub model_version: String,
    pub seconds: f64,
}

/// Review texts per encoder call (each call sorts its texts by length).
const CHUNK: usize = 512;

/// The models enrichment runs, loaded once.
struct Models {
    encoder: Encoder,
    cache: std::sync::Mutex<heads::VectorCache>,
    head: SentimentHead,
    /// The fine-tuned top layers the sentiment head reads, when it has some.
    branch: Option<crate::nlp::int8::Branch>,
    intent: IntentModel,
    gazetteer: Gazetteer,
    batch: usize,
    version: String,
}

/// The version enrichment labels with: the sentiment head's, and what decides intent (the exemplars
/// and the margin an intent needs over none).
fn label_version(head: &SentimentHead) -> String {
    let intent_version = format!(
        "intent-{:08x}-m{}",
        xxhash_rust::xxh3::xxh3_64(crate::nlp::intent::EXEMPLARS_TSV.as_bytes()) as u32,
        crate::nlp::intent::NONE_MARGIN
    );
    format!("{}+{intent_version}", head.meta.version)
}

/// How many reviews and posts `enrich` would label now (new, changed, or labelled by another head).
pub async fn pending(cfg: &Config, store: &Store) -> Result<usize, EnrichError> {
    let version = label_version(&heads::sentiment_head(cfg)?);
    let mut n = 0;
    for kind in [TextKind::Review, TextKind::Post] {
        n += store.texts_to_enrich(kind, &version).await?.len();
    }
    Ok(n)
}

/// Labels every review and post that needs it, and indexes the reviews.
pub async fn enrich(
    cfg: &Config,
    store: &Store,
    progress: &indicatif::ProgressBar,
) -> Result<EnrichSummary, EnrichError> {
    let started = Instant::now();
    let head = heads::sentiment_head(cfg)?;
    let version = label_version(&head);
    let reviews = store.texts_to_enrich(TextKind::Review, &version).await?;
    let posts = store.texts_to_enrich(TextKind::Post, &version).await?;
    let mut summary = EnrichSummary {
        reviews_pending: reviews.len(),
        posts_pending: posts.len(),
        labelled: 0,
        by_sentiment: [0; 3],
        by_intent: [0; 4],
        with_brand: 0,
        with_price: 0,
        index_points: 0,
        model_version: version.clone(),
        seconds: 0.0,
    };
    if reviews.is_empty() && posts.is_empty() {
        // Nothing to label: report the index without loading the encoder.
        let index = tokio::task::block_in_place(|| open_index_for_reading(cfg))?;
        summary.index_points = index.map_or(Ok(0), |i| i.count())?;
        return Ok(summary);
    }
    let encoder = tokio::task::block_in_place(|| heads::review_encoder(cfg))?;
    let index = open_index(cfg, encoder.dim())?;
    let mut cache = heads::vector_cache(cfg, &encoder)?;
    let intent = tokio::task::block_in_place(|| {
        heads::intent_model(
            &mut cache,
            &encoder,
            cfg.nlp.batch,
            &indicatif::ProgressBar::hidden(),
        )
    })?;
    let mut gazetteer = Gazetteer::builtin();
    for (brand, model) in store.brands_and_models().await? {
        gazetteer.add(brand.as_deref(), model.as_deref());
    }
    let cache = std::sync::Mutex::new(cache);
    let branch = heads::sentiment_branch(&head, &encoder)?;
    let models = Models {
        encoder,
        cache,
        head,
        branch,
        intent,
        gazetteer,
        batch: cfg.nlp.batch,
        version,
    };
    progress.set_length((reviews.len() + posts.len()) as u64);
    for (kind, pending) in [(TextKind::Review, &reviews), (TextKind::Post, &posts)] {
        for chunk in pending.chunks(CHUNK) {
            let (rows, points) = tokio::task::block_in_place(|| label_chunk(chunk, &models))?;
            if kind == TextKind::Review {
                // The points are on disk before their labels are saved: a review with labels is never
                // skipped by the next run while its vector died with this one (killed, power lost).
                index.upsert(&points)?;
                tokio::task::block_in_place(|| index.flush())?;
            }
            store.save_text_nlp(kind, &rows).await?;
            for r in &rows {
                let s = Sentiment::ALL
                    .iter()
                    .position(|s| s.as_str() == r.sentiment)
                    .unwrap_or(1);
                summary.by_sentiment[s] += 1;
                let i = crate::nlp::intent::Intent::ALL
                    .iter()
                    .position(|i| i.as_str() == r.intent)
                    .unwrap_or(0);
                summary.by_intent[i] += 1;
                summary.with_brand += usize::from(!r.brands.is_empty());
                summary.with_price += usize::from(!r.prices.is_empty());
            }
            summary.labelled += rows.len();
            progress.inc(rows.len() as u64);
        }
    }
    index.flush()?;
    if !reviews.is_empty() {
        tokio::task::block_in_place(|| index.optimize())?;
    }
    summary.index_points = index.count()?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn label_chunk(
    chunk: &[TextForNlp],
    m: &Models,
) -> Result<(Vec<TextNlp>, Vec<ReviewPoint>), EnrichError> {
    let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
    // Texts encoded before (the training corpus, e.g. the demo shop's reviews) come from the cache.
    let (vectors, p) = match &m.branch {
        // A fine-tuned head reads the tuned top's vectors: both from one pass through the shared layers.
        Some(branch) => {
            let (vectors, tuned): (Vec<Vec<f32>>, Vec<Vec<f32>>) = m
                .encoder
                .encode_with_branch(&texts, m.batch, branch)?
                .into_iter()
                .unzip();
            let p = m.head.prob_positive(&tuned, &texts)?;
            (vectors, p)
        }
        None => {
            let vectors = m
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .vectors_with(
                    &m.encoder,
                    &texts,
                    m.batch,
                    &indicatif::ProgressBar::hidden(),
                    false,
                )?;
            let p = m.head.prob_positive(&vectors, &texts)?;
            (vectors, p)
        }
    };
    let mut rows = Vec::with_capacity(chunk.len());
    let mut points = Vec::with_capacity(chunk.len());
    for ((r, v), p) in chunk.iter().zip(vectors).zip(p) {
        // A middle star rating states neutral whatever the words lean to; otherwise the text decides.
        let sentiment = match r.rating.and_then(Sentiment::from_rating) {
            Some(Sentiment::Neutral) => Sentiment::Neutral,
            _ => m.head.label(p),
        };
        let intent = m.intent.classify(&v);
        let e = m.gazetteer.extract(&r.text);
        rows.push(TextNlp {
            id: r.id,
            text_hash: r.text_hash,
            model_version: m.version.clone(),
            sentiment: sentiment.as_str().to_string(),
            p_positive: f64::from(p),
            intent: intent.intent.as_str().to_string(),
            intent_margin: f64::from(intent.margin),
            brands: e.brands,
            models: e.models,
            prices: e.prices.iter().map(|p| p.amount).collect(),
        });
        points.push(ReviewPoint {
            id: r.id as u64,
            vector: v,
            payload: ReviewPayload {
                customer_id: r.customer_id,
                product_id: r.product_id,
                day: r.date.map(index::day_number),
                rating: r.rating,
                sentiment: Some(sentiment.as_str().to_string()),
            },
        });
    }
    Ok((rows, points))
}

/// What a search asks for, as the CLI (and later the tools) state it.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    /// A product name, model, brand or id; every matching product counts.
    pub product: Option<String>,
    pub sentiment: Option<Sentiment>,
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
    pub limit: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub score: f32,
    #[serde(flatten)]
    pub review: ReviewView,
}

/// An open searcher: the encoder and the index, loaded once for many queries.
pub struct Searcher {
    encoder: std::sync::Arc<Encoder>,
    index: Box<dyn VectorIndex>,
}

impl Searcher {
    pub fn open(cfg: &Config) -> Result<Self, EnrichError> {
        Self::with_encoder(cfg, std::sync::Arc::new(heads::review_encoder(cfg)?))
    }

    /// A searcher over the configured index with an encoder already loaded (the router's).
    pub fn with_encoder(
        cfg: &Config,
        encoder: std::sync::Arc<Encoder>,
    ) -> Result<Self, EnrichError> {
        let index = open_index(cfg, encoder.dim())?;
        Ok(Self { encoder, index })
    }

    /// Review ids and scores for a query, best first.
    fn search_ids(
        &self,
        text: &str,
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<index::Hit>, EnrichError> {
        let v = self.encoder.encode(&[text], 1)?;
        Ok(self.index.search(&v[0], filter, limit, false)?)
    }

    pub async fn search(
        &self,
        store: &Store,
        q: &SearchQuery,
    ) -> Result<Vec<SearchHit>, EnrichError> {
        let mut filter = SearchFilter {
            sentiment: q.sentiment.map(|s| s.as_str().to_string()),
            since: q.since,
            until: q.until,
            ..Default::default()
        };
        if let Some(p) = &q.product {
            let found = store.find_products(p).await?;
            if found.is_empty() {
                return Err(EnrichError::Input(format!("no product matches {p:?}")));
            }
            filter.product_ids = Some(found.iter().map(|(id, _)| *id).collect());
        }
        if self.index.count()? == 0 {
            return Err(EnrichError::Input(
                "the review index is empty: run `dongcha enrich` first".into(),
            ));
        }
        let hits = tokio::task::block_in_place(|| self.search_ids(&q.text, &filter, q.limit))?;
        let ids: Vec<i64> = hits.iter().map(|h| h.id as i64).collect();
        let mut views: std::collections::HashMap<i64, ReviewView> = store
            .reviews_by_id(&ids)
            .await?
            .into_iter()
            .map(|v| (v.id, v))
            .collect();
        // A review deleted from the store since it was indexed is skipped.
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                views.remove(&(h.id as i64)).map(|review| SearchHit {
                    score: h.score,
                    review,
                })
            })
            .collect())
    }
}

/// What a group of customers' own reviews say they care about, as products: the mean vector of (up to
/// 500 of) their reviews is searched against everyone else's positive reviews, and each product gets the
/// share of the top `hits` similar reviews that are about it.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewInterest {
    /// Reviews of these customers that went into the profile.
    pub own_reviews: usize,
    /// product id → share of the similar positive reviews (sums to at most 1).
    pub share: std::collections::HashMap<i64, f64>,
}

/// `None` when the customers wrote no indexed review (or nothing was enriched yet).
pub async fn review_interest(
    cfg: &Config,
    store: &Store,
    external_ids: &[String],
    hits: usize,
) -> Result<Option<ReviewInterest>, EnrichError> {
    let own = store.review_ids_of(external_ids, 500).await?;
    if own.is_empty() {
        return Ok(None);
    }
    let Some(index) = tokio::task::block_in_place(|| open_index_for_reading(cfg))? else {
        return Ok(None);
    };
    let members: std::collections::HashSet<i64> = store
        .customer_ids_of(external_ids)
        .await?
        .into_iter()
        .collect();
    let ids: Vec<u64> = own.iter().map(|i| *i as u64).collect();
    let vectors = index.vectors(&ids)?;
    if vectors.is_empty() {
        return Ok(None);
    }
    let mut mean = vec![0f32; vectors[0].1.len()];
    for (_, v) in &vectors {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x;
        }
    }
    let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    mean.iter_mut().for_each(|x| *x /= norm);
    let filter = SearchFilter {
        sentiment: Some(Sentiment::Positive.as_str().into()),
        ..Default::default()
    };
    // Ask for more than needed: the customers' own reviews are dropped from the hits.
    let found = index.search(&mean, &filter, hits + vectors.len().min(hits), false)?;
    let others: Vec<&index::Hit> = found
        .iter()
        .filter(|h| !members.contains(&h.payload.customer_id))
        .take(hits)
        .collect();
    let mut share = std::collections::HashMap::new();
    for h in &others {
        if let Some(p) = h.payload.product_id {
            *share.entry(p).or_insert(0.0) += 1.0 / others.len() as f64;
        }
    }
    Ok(Some(ReviewInterest {
        own_reviews: vectors.len(),
        share,
    }))
}
