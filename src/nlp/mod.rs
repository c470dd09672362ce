//! Natural-language processing over review and social text. Pure: no IO, no chat or store types.

pub mod encoder;
pub mod text;
