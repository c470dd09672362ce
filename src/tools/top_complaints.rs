//! `top_complaints`: what buyers complain about in a period (default: the last 30 days of data),
//! optionally for one product: complaint topics among negative reviews (sentiment label from `dongcha
//! enrich`, else a rating of 2 or less), their counts against the period before, and example review ids.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::review_sentiment::{Quote, quote};
use super::{Context, Period, ToolError, round2};
use crate::insight::trends::{self, ReviewTokens};
use crate::store::LabelledText;

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Only reviews of this product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The days to look at (resolved from the question; default: the last 30 days of data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// How many topics (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Topic {
    pub topic: String,
    pub keyword: String,
    pub complaints: usize,
    pub previous_complaints: usize,
    pub change_pct: Option<f64>,
    pub significant: bool,
    pub examples: Vec<Quote>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub period: Period,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    pub reviews: usize,
    pub negative_reviews: usize,
    pub previous_period: Period,
    pub topics: Vec<Topic>,
}

fn negative(r: &LabelledText) -> bool {
    match r.sentiment.as_deref() {
        Some(s) => s == "negative",
        None => r.rating.is_some_and(|x| x <= 2.0),
    }
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let period = ctx.period_or_default(&args.period).await?;
    let product = ctx.find_product_opt(args.product.as_deref()).await?;
    let previous_period = period.previous();
    // Topics are learned from all of the product's reviews (what marks a complaint), counted per period.
    let all = ctx
        .store
        .labelled_reviews(
            chrono::NaiveDate::MIN,
            period.to,
            product.as_ref().map(|p| p.0),
        )
        .await?;
    let label = |d: chrono::NaiveDate| {
        if period.contains(d) {
            "now"
        } else if previous_period.contains(d) {
            "before"
        } else {
            "other"
        }
    };
    let tokens: Vec<ReviewTokens> = tokio::task::block_in_place(|| {
        all.iter()
            .filter_map(|r| {
                Some(ReviewTokens {
                    period: label(r.date?).to_string(),
                    negative: negative(r),
                    tokens: crate::nlp::text::tokens(&r.text_raw),
                })
            })
            .collect()
    });
    let top_k = args.top_k.unwrap_or(5).clamp(1, 20);
    let found = trends::complaint_topics(&tokens, "now", "before", top_k);
    let dated: Vec<(&LabelledText, &ReviewTokens)> = all
        .iter()
        .filter(|r| r.date.is_some())
        .zip(&tokens)
        .collect();
    let now: Vec<&(&LabelledText, &ReviewTokens)> =
        dated.iter().filter(|(_, t)| t.period == "now").collect();
    let topics = found
        .into_iter()
        .filter(|t| t.count > 0)
        .map(|t| Topic {
            examples: now
                .iter()
                .filter(|(r, tk)| tk.negative && tk.tokens.contains(&t.keyword) && negative(r))
                .take(2)
                .map(|(r, _)| quote(r))
                .collect(),
            topic: t.label,
            keyword: t.keyword,
            complaints: t.count,
            previous_complaints: t.previous_count,
            change_pct: t.change_pct.map(round2),
            significant: t.significant,
        })
        .collect();
    Ok(Output {
        period,
        product: product.map(|p| p.1),
        reviews: now.len(),
        negative_reviews: now.iter().filter(|(_, t)| t.negative).count(),
        previous_period,
        topics,
    })
}
