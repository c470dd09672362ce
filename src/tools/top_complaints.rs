//! `top_complaints`: what buyers complain about in a period (default: the last 30 days of data),
//! optionally for one product: complaint topics among negative reviews (sentiment label from `dongcha
//! enrich`, else a rating of 2 or less), their counts against the period before, and example review ids.

use std::sync::Arc;

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
    /// Two-proportion test of the topic's share of reviews, this period against the one before.
    pub p_value: f64,
    /// p < 0.05 on at least 10 complaints: what a reply or a digest may call a change.
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
    /// What the period's reviews talk about more than other periods' (TF-IDF, top 10).
    pub keywords: Vec<String>,
    pub topics: Vec<Topic>,
}

fn negative(r: &LabelledText) -> bool {
    match r.sentiment.as_deref() {
        Some(s) => s == "negative",
        None => r.rating.is_some_and(|x| x <= 2.0),
    }
}

/// The dated reviews of a scope (the shop or one product), each with its tokens: tokenised once per
/// context (data version), whatever period a question asks about.
pub struct Texts {
    reviews: Vec<(LabelledText, Arc<[String]>, Arc<str>)>,
}

/// [`Texts`] of the whole shop or of one product (by id), shared by every call.
pub async fn texts(ctx: &Context, product: Option<i64>) -> Result<Arc<Texts>, ToolError> {
    let cell = ctx
        .complaint_texts
        .lock()
        .expect("complaint texts lock")
        .entry(product)
        .or_default()
        .clone();
    cell.get_or_try_init(|| async {
        // Dates are compared as ISO text in the store: the last day must format as 4 digits.
        let last = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).expect("date");
        let all = ctx
            .store
            .labelled_reviews(chrono::NaiveDate::MIN, last, product)
            .await?;
        let reviews = tokio::task::block_in_place(|| {
            all.into_iter()
                .filter(|r| r.date.is_some())
                .map(|r| {
                    let tokens: Arc<[String]> = crate::nlp::text::tokens(&r.text_raw).into();
                    let text: Arc<str> = r.text_raw.as_str().into();
                    (r, tokens, text)
                })
                .collect()
        });
        Ok(Arc::new(Texts { reviews }))
    })
    .await
    .cloned()
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let period = ctx.period_or_default(&args.period).await?;
    let product = ctx.find_product_opt(args.product.as_deref()).await?;
    let previous_period = period.previous();
    // Topics are learned from all of the scope's reviews up to the period's end (what marks a
    // complaint), counted per period.
    let texts = texts(ctx, product.as_ref().map(|p| p.0)).await?;
    let dated: Vec<(&LabelledText, ReviewTokens)> = texts
        .reviews
        .iter()
        .filter(|(r, _, _)| r.date.is_some_and(|d| d <= period.to))
        .map(|(r, tokens, text)| {
            let d = r.date.expect("dated");
            let label = if period.contains(d) {
                "now"
            } else if previous_period.contains(d) {
                "before"
            } else {
                "other"
            };
            (
                r,
                ReviewTokens {
                    period: label.to_string(),
                    negative: negative(r),
                    tokens: tokens.clone(),
                    text: text.clone(),
                },
            )
        })
        .collect();
    let tokens: Vec<ReviewTokens> = dated.iter().map(|(_, t)| t.clone()).collect();
    let top_k = args.top_k.unwrap_or(5).clamp(1, 20);
    let found = trends::complaint_topics(&tokens, "now", "before", top_k);
    let keywords = trends::keywords_by_period(&tokens, 10)
        .remove("now")
        .unwrap_or_default()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let now: Vec<&(&LabelledText, ReviewTokens)> =
        dated.iter().filter(|(_, t)| t.period == "now").collect();
    let topics = found
        .into_iter()
        .filter(|t| t.count > 0)
        .map(|t| Topic {
            examples: now
                .iter()
                .filter(|(_, tk)| tk.negative && tk.tokens.contains(&t.keyword))
                .take(2)
                .map(|(r, _)| quote(r))
                .collect(),
            topic: t.label,
            keyword: t.keyword,
            complaints: t.count,
            previous_complaints: t.previous_count,
            change_pct: t.change_pct.map(round2),
            p_value: super::round4(t.p_value),
            significant: t.significant,
        })
        .collect();
    Ok(Output {
        period,
        product: product.map(|p| p.1),
        reviews: now.len(),
        negative_reviews: now.iter().filter(|(_, t)| t.negative).count(),
        previous_period,
        keywords,
        topics,
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let scope = out
        .get("product")
        .map(|p| format!(" ({})", s(p)))
        .unwrap_or_default();
    let topics = list(&out["topics"], |x| {
        let change = x["change_pct"]
            .as_f64()
            .map(|c| format!(", {}", signed_pct(c)))
            .unwrap_or_default();
        let ex = ids(&x["examples"]);
        format!(
            "{} — {}{change}{}",
            s(&x["topic"]),
            x["complaints"],
            if ex.is_empty() {
                String::new()
            } else {
                format!(" [{}]", ex.join(" "))
            }
        )
    });
    if topics.is_empty() {
        return t(
            format!(
                "{}{scope}，没有找到差评话题（{} 条评论中差评 {} 条）。",
                period(&out["period"]),
                out["reviews"],
                out["negative_reviews"]
            ),
            format!(
                "{}{scope}: no complaint topics found ({} reviews, {} negative).",
                period(&out["period"]),
                out["reviews"],
                out["negative_reviews"]
            ),
        );
    }
    t(
        format!(
            "{}{scope}，{} 条评论中差评 {} 条，主要抱怨：\n{}",
            period(&out["period"]),
            out["reviews"],
            out["negative_reviews"],
            topics.join("\n")
        ),
        format!(
            "{}{scope}: {} reviews, {} negative. Main complaints:\n{}",
            period(&out["period"]),
            out["reviews"],
            out["negative_reviews"],
            topics.join("\n")
        ),
    )
}
