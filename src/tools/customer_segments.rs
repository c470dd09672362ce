//! `customer_segments`: the k-means segments of `dongcha insight segments` (log-RFM plus review sentiment
//! and abandon intent when enriched), each with size, revenue share and what its members are like.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, ToolError, round2, round4};

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentRow {
    pub name: String,
    pub customers: usize,
    /// Percent of all revenue.
    pub revenue_share_pct: f64,
    pub mean_orders: f64,
    pub mean_spent: f64,
    pub weeks_since_last: f64,
    pub reviewers: usize,
    pub mean_sentiment: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub as_of: chrono::NaiveDate,
    pub customers: usize,
    pub k: usize,
    pub silhouette: f64,
    pub segments: Vec<SegmentRow>,
}

pub async fn run(ctx: &Context, _args: Args) -> Result<Output, ToolError> {
    compute(ctx, None).await
}

/// [`run`], or with `k` segments instead of the number the silhouette picks (`dongcha insight segments
/// --k`).
pub async fn compute(ctx: &Context, k: Option<usize>) -> Result<Output, ToolError> {
    let shop = ctx.shop().await?;
    let seg = match k {
        None => ctx.segments().await?,
        Some(k) => std::sync::Arc::new(ctx.segment_into(Some(k)).await?),
    };
    Ok(Output {
        as_of: shop.as_of,
        customers: shop.rows.len(),
        k: seg.k,
        silhouette: round4(
            seg.silhouette
                .iter()
                .find(|(k, _)| *k == seg.k)
                .map(|(_, s)| *s)
                .unwrap_or(0.0),
        ),
        segments: seg
            .segments
            .iter()
            .map(|s| SegmentRow {
                name: s.name.clone(),
                customers: s.size,
                revenue_share_pct: round2(s.revenue_share * 100.0),
                // frequency counts repeat purchase days; orders = repeats + the first.
                mean_orders: round2(s.mean_frequency + 1.0),
                mean_spent: round2(s.mean_total_spent),
                weeks_since_last: round2(s.mean_periods_since_last),
                reviewers: s.with_texts,
                mean_sentiment: s.mean_sentiment.map(round2),
            })
            .collect(),
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let rows = list(&out["segments"], |g| {
        t(
            format!(
                "{}：{} 位，贡献 {} 收入，人均消费 {}",
                tr(&g["name"], true),
                g["customers"],
                pct(num(&g["revenue_share_pct"])),
                money(num(&g["mean_spent"]))
            ),
            format!(
                "{}: {} customers, {} of revenue, {} spent on average",
                tr(&g["name"], false),
                g["customers"],
                pct(num(&g["revenue_share_pct"])),
                money(num(&g["mean_spent"]))
            ),
        )
    });
    t(
        format!(
            "截至 {}，{} 位客户分为 {} 个客户群：\n{}",
            s(&out["as_of"]),
            out["customers"],
            out["k"],
            rows.join("\n")
        ),
        format!(
            "As of {}, {} customers fall into {} segments:\n{}",
            s(&out["as_of"]),
            out["customers"],
            out["k"],
            rows.join("\n")
        ),
    )
}
