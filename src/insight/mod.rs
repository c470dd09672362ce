//! The insight engine: customer features, repeat-buying and spend models, churn risk. Pure functions over
//! in-memory data: no IO, no chat types, no store. Callers load purchases from the store (or a file) and
//! pass them in.
//!
//! Every model is checked against a published reference on real data (CDNOW) in its tests.

pub mod bgnbd;
pub mod calendar;
pub mod churn;
pub mod clv;
pub mod ets;
pub mod forecast;
pub mod optimize;
pub mod recommend;
pub mod rfm;
pub mod segment;
pub mod trends;

#[derive(Debug, thiserror::Error)]
pub enum InsightError {
    #[error("{0}")]
    NoData(&'static str),
    #[error("fitting the {model} model failed: {reason}")]
    Fit { model: &'static str, reason: String },
}
