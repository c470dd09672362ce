//! The review index: one vector per review (the review encoder's unit vector) with a payload for filters
//! (product, date, rating, sentiment, customer). [`VectorIndex`] is what the rest of dongcha sees; the
//! embedded default is [`edge::EdgeIndex`] (qdrant-edge in process, persisted under the data dir); a
//! Qdrant server or cluster is [`remote::RemoteIndex`].

pub mod edge;
pub mod remote;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("vector index at {path}: {reason}")]
    Engine { path: String, reason: String },
    #[error("vector index: a vector has {got} dimensions, the index holds {want}")]
    Dimension { got: usize, want: usize },
}

/// What is stored beside a review's vector, and what searches filter on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewPayload {
    pub customer_id: i64,
    pub product_id: Option<i64>,
    /// Days since 1970-01-01 (a range filter needs a number).
    pub day: Option<i64>,
    pub rating: Option<f64>,
    /// negative | neutral | positive
    pub sentiment: Option<String>,
}

const EPOCH_CE_DAYS: i32 = 719_163;

/// Days since 1970-01-01 of a date.
pub fn day_number(d: NaiveDate) -> i64 {
    i64::from(chrono::Datelike::num_days_from_ce(&d) - EPOCH_CE_DAYS)
}

#[derive(Debug, Clone)]
pub struct ReviewPoint {
    /// The review's id in the store.
    pub id: u64,
    pub vector: Vec<f32>,
    pub payload: ReviewPayload,
}

/// Payload filters; every one set must hold.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub product_ids: Option<Vec<i64>>,
    pub sentiment: Option<String>,
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
    pub min_rating: Option<f64>,
    pub max_rating: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: u64,
    pub score: f32,
    pub payload: ReviewPayload,
}

/// The error for a vector of the wrong length.
pub(crate) fn check_dim(got: usize, want: usize) -> Result<(), IndexError> {
    if got == want {
        Ok(())
    } else {
        Err(IndexError::Dimension { got, want })
    }
}

impl Hit {
    /// A hit from a backend's point id, score and payload (as JSON).
    pub fn from_json(
        id: u64,
        score: f32,
        payload: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id,
            score,
            payload: serde_json::from_value(payload)?,
        })
    }
}

/// A store of review vectors searchable by meaning with payload filters.
pub trait VectorIndex: Send + Sync {
    /// Inserts or replaces points (by id).
    fn upsert(&self, points: &[ReviewPoint]) -> Result<(), IndexError>;
    /// Removes points by id (absent ids are ignored).
    fn delete(&self, ids: &[u64]) -> Result<(), IndexError>;
    /// The `limit` nearest points to `vector` that pass `filter`, best first. `exact` scans every
    /// point instead of walking the graph (the reference for recall).
    fn search(
        &self,
        vector: &[f32],
        filter: &SearchFilter,
        limit: usize,
        exact: bool,
    ) -> Result<Vec<Hit>, IndexError>;
    /// The stored vectors of these points (absent ids are skipped).
    fn vectors(&self, ids: &[u64]) -> Result<Vec<(u64, Vec<f32>)>, IndexError>;
    fn count(&self) -> Result<usize, IndexError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> Result<(), IndexError>;
    /// Builds the search graph over what is stored (after a bulk load).
    fn optimize(&self) -> Result<(), IndexError>;
}
