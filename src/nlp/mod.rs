//! Natural-language processing over review and social text. Pure: no IO, no chat or store types.

pub mod cpu;
pub mod encoder;
pub mod entities;
mod f32mm;
pub mod finetune;
pub mod int8;
pub mod intent;
pub mod ngram;
pub mod q4;
pub mod report;
pub mod sentiment;
pub mod text;
