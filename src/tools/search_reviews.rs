//! `search_reviews`: reviews by meaning (the review index), optionally of one product, one sentiment and
//! a period; ids, scores and texts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, Period, ToolError, round4};
use crate::enrich::SearchQuery;
use crate::nlp::sentiment::Sentiment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SentimentFilter {
    Negative,
    Neutral,
    Positive,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// What the reviews should be about, in the asker's words.
    pub query: String,
    /// Only reviews of this product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Only reviews with this sentiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<SentimentFilter>,
    /// Only reviews of these days (resolved from the question).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// How many reviews (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub id: i64,
    pub score: f64,
    pub date: Option<chrono::NaiveDate>,
    pub rating: Option<f64>,
    pub product: Option<String>,
    pub sentiment: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<SentimentFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    pub found: usize,
    pub reviews: Vec<Found>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    if args.query.trim().is_empty() {
        return Err(ToolError::BadArgs {
            tool: "search_reviews",
            reason: "an empty query".into(),
        });
    }
    let searcher = ctx.searcher().await?;
    let product = ctx
        .find_product_opt(args.product.as_deref())
        .await?
        .map(|p| p.1);
    let q = SearchQuery {
        text: args.query.clone(),
        product: product.clone(),
        sentiment: args.sentiment.map(|s| match s {
            SentimentFilter::Negative => Sentiment::Negative,
            SentimentFilter::Neutral => Sentiment::Neutral,
            SentimentFilter::Positive => Sentiment::Positive,
        }),
        since: args.period.as_ref().map(|p| p.from),
        until: args.period.as_ref().map(|p| p.to),
        limit: args.limit.unwrap_or(5).clamp(1, 50),
    };
    let hits = searcher.search(&ctx.store, &q).await?;
    let found = hits.len();
    Ok(Output {
        query: args.query,
        product,
        sentiment: args.sentiment,
        period: args.period,
        found,
        reviews: hits
            .into_iter()
            .map(|h| Found {
                id: h.review.id,
                score: round4(h.score as f64),
                date: h.review.date,
                rating: h.review.rating,
                product: h.review.product,
                sentiment: h.review.sentiment,
                text: h.review.text_raw.chars().take(120).collect(),
            })
            .collect(),
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let rows = list(&out["reviews"], |r| {
        format!(
            "#{} [{}] {} — {}",
            s(&r["id"]),
            tr(&r["sentiment"], zh),
            s(&r["product"]),
            s(&r["text"])
        )
    });
    if rows.is_empty() {
        return t(
            format!("没有找到与“{}”相关的评论。", s(&out["query"])),
            format!("No reviews found for \"{}\".", s(&out["query"])),
        );
    }
    t(
        format!(
            "与“{}”最相关的 {} 条评论：\n{}",
            s(&out["query"]),
            out["found"],
            rows.join("\n")
        ),
        format!(
            "The {} reviews closest to \"{}\":\n{}",
            out["found"],
            s(&out["query"]),
            rows.join("\n")
        ),
    )
}
