//! `purchase_intent`: what reviews and social posts say buyers mean to do — buy, abandon or wait (观望) —
//! in a period (default: the last 30 days of data), optionally for one product, with example ids of
//! would-be abandoners.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::review_sentiment::{Quote, quote};
use super::{Context, Period, ToolError, round2};
use crate::store::LabelledText;

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Only texts about this product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The days to look at (resolved from the question; default: the last 30 days of data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub period: Period,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    pub texts: usize,
    pub reviews: usize,
    pub posts: usize,
    pub unlabelled: usize,
    pub buy: usize,
    pub abandon: usize,
    pub wait: usize,
    pub buy_pct: f64,
    pub abandon_pct: f64,
    pub wait_pct: f64,
    /// Review texts that read as abandoning (ids are review ids).
    pub abandon_examples: Vec<Quote>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let period = ctx.period_or_default(&args.period).await?;
    let product = ctx.find_product_opt(args.product.as_deref()).await?;
    let pid = product.as_ref().map(|p| p.0);
    let reviews = ctx
        .store
        .labelled_reviews(period.from, period.to, pid)
        .await?;
    let posts = ctx
        .store
        .labelled_posts(period.from, period.to, pid)
        .await?;
    let all: Vec<&LabelledText> = reviews.iter().chain(&posts).collect();
    let count = |s: &str| {
        all.iter()
            .filter(|r| r.intent.as_deref() == Some(s))
            .count()
    };
    let (buy, abandon, wait) = (count("buy"), count("abandon"), count("wait"));
    let labelled = buy + abandon + wait;
    let pct = |n: usize| {
        if labelled > 0 {
            round2(n as f64 / labelled as f64 * 100.0)
        } else {
            0.0
        }
    };
    Ok(Output {
        period,
        product: product.map(|p| p.1),
        texts: all.len(),
        reviews: reviews.len(),
        posts: posts.len(),
        unlabelled: all.len() - labelled,
        buy,
        abandon,
        wait,
        buy_pct: pct(buy),
        abandon_pct: pct(abandon),
        wait_pct: pct(wait),
        abandon_examples: reviews
            .iter()
            .filter(|r| r.intent.as_deref() == Some("abandon"))
            .take(2)
            .map(quote)
            .collect(),
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
    let ex = ids(&out["abandon_examples"]);
    t(
        format!(
            "{}{scope}，{} 条评论和帖子：想买 {} 条（{}），放弃 {} 条（{}），观望 {} 条（{}）。{}",
            period(&out["period"]),
            out["texts"],
            out["buy"],
            pct(num(&out["buy_pct"])),
            out["abandon"],
            pct(num(&out["abandon_pct"])),
            out["wait"],
            pct(num(&out["wait_pct"])),
            if ex.is_empty() {
                String::new()
            } else {
                format!("放弃的例子：{}。", ex.join(" "))
            }
        ),
        format!(
            "{}{scope}: {} reviews and posts — buy {} ({}), abandon {} ({}), wait {} ({}).{}",
            period(&out["period"]),
            out["texts"],
            out["buy"],
            pct(num(&out["buy_pct"])),
            out["abandon"],
            pct(num(&out["abandon_pct"])),
            out["wait"],
            pct(num(&out["wait_pct"])),
            if ex.is_empty() {
                String::new()
            } else {
                format!(" Abandoning, e.g. {}.", ex.join(" "))
            }
        ),
    )
}
