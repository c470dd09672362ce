//! `churn_risk`: the customers most likely to stop buying in the next quarter, optionally within one
//! segment (e.g. the high-value ones), with each one's reasons and spend. Same model and figures as
//! `dongcha insight churn [--segment NAME]`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, ToolError, round2, round4};

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Only customers of this segment (e.g. "high-value loyal", "at-risk high-value").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// How many customers to list (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AtRisk {
    pub customer: String,
    /// Percent.
    pub churn_probability_pct: f64,
    pub total_spent: f64,
    pub reasons: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub as_of: chrono::NaiveDate,
    pub horizon_days: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Customers scored (in the segment when one is named).
    pub customers: usize,
    /// Of those, how many have a churn probability of at least `threshold_pct`, and what they spent.
    pub threshold_pct: f64,
    pub likely_to_churn: usize,
    pub likely_to_churn_spent: f64,
    pub top: Vec<AtRisk>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let shop = ctx.shop().await?;
    let scored = ctx.churn().await?;
    // Segments (k-means) are computed only when the question names one.
    let segment = match &args.segment {
        Some(name) => Some((ctx.find_segment(name).await?, ctx.segments().await?)),
        None => None,
    };
    let members: Vec<&(usize, crate::insight::churn::ChurnRisk)> = scored
        .iter()
        .filter(|(i, _)| {
            segment
                .as_ref()
                .is_none_or(|((k, _), seg)| seg.assignment[*i] == *k)
        })
        .collect();
    let likely: Vec<&&(usize, crate::insight::churn::ChurnRisk)> = members
        .iter()
        .filter(|(_, r)| r.probability >= 0.5)
        .collect();
    let top_k = args.top_k.unwrap_or(10).clamp(1, 100);
    Ok(Output {
        as_of: shop.as_of,
        horizon_days: crate::insight::churn::QUARTER_DAYS,
        segment: segment.map(|((_, name), _)| name),
        customers: members.len(),
        threshold_pct: 50.0,
        likely_to_churn: likely.len(),
        likely_to_churn_spent: round2(likely.iter().map(|(i, _)| shop.rows[*i].total_spent).sum()),
        top: members
            .iter()
            .take(top_k)
            .map(|(i, r)| AtRisk {
                customer: shop.ids[shop.rows[*i].customer as usize].clone(),
                churn_probability_pct: round4(r.probability * 100.0),
                total_spent: round2(shop.rows[*i].total_spent),
                reasons: r.reasons.clone(),
            })
            .collect(),
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let scope = out
        .get("segment")
        .map(|g| {
            t(
                format!("“{}”客户群中", tr(g, true)),
                format!(" in segment \"{}\"", tr(g, false)),
            )
        })
        .unwrap_or_default();
    let top = list(&out["top"], |c| {
        t(
            format!(
                "{}（流失概率 {}，累计消费 {}）",
                s(&c["customer"]),
                pct(num(&c["churn_probability_pct"])),
                money(num(&c["total_spent"]))
            ),
            format!(
                "{} ({} churn risk, spent {})",
                s(&c["customer"]),
                pct(num(&c["churn_probability_pct"])),
                money(num(&c["total_spent"]))
            ),
        )
    });
    t(
        format!(
            "{scope}{} 位客户里有 {} 位未来 {} 天流失概率 ≥ {}%，他们累计消费 {}。风险最高：{}。",
            out["customers"],
            out["likely_to_churn"],
            out["horizon_days"],
            out["threshold_pct"],
            money(num(&out["likely_to_churn_spent"])),
            top.join("；")
        ),
        format!(
            "Of {} customers{scope}, {} have a churn risk of {}% or more over the next {} days; they spent {} in total. Highest risk: {}.",
            out["customers"],
            out["likely_to_churn"],
            out["threshold_pct"],
            out["horizon_days"],
            money(num(&out["likely_to_churn_spent"])),
            top.join("; ")
        ),
    )
}
