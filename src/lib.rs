//! dongcha (洞察): customer insight for e-commerce teams, on demand in chat.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the code map.

pub mod agent;
pub mod app;
pub mod assets;
pub mod chat;
pub mod config;
pub mod datasets;
pub mod demo;
pub mod digest;
pub mod enrich;
pub mod heads;
pub mod index;
pub mod ingest;
pub mod insight;
pub mod nlp;
pub mod progress;
pub mod reply;
pub mod store;
pub mod support;
pub mod terms;
pub mod tools;
