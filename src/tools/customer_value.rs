//! `customer_value`: the customers with the highest expected lifetime value (BG/NBD × Gamma-Gamma,
//! discounted 1% a month) over a horizon, as `dongcha insight clv` computes it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, ToolError, WEEK, round2, round4};
use crate::insight::clv::lifetime_value;

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// How many customers to list (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Months of future value (default 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Valued {
    pub customer: String,
    pub clv: f64,
    pub p_alive: f64,
    pub expected_purchases: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub as_of: chrono::NaiveDate,
    pub months: u32,
    pub customers: usize,
    /// Expected value of all customers over the horizon.
    pub total_clv: f64,
    /// Customers listed in `top`.
    pub listed: usize,
    /// Share of that total held by the listed customers, percent.
    pub top_share_pct: f64,
    pub top: Vec<Valued>,
}

/// The monthly discount rate of lifetime values.
pub const MONTHLY_DISCOUNT: f64 = 0.01;

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    compute(ctx, args, MONTHLY_DISCOUNT).await
}

/// [`run`] at another monthly discount rate (`dongcha insight clv --discount`).
pub async fn compute(ctx: &Context, args: Args, discount: f64) -> Result<Output, ToolError> {
    let shop = ctx.shop().await?;
    let months = args.months.unwrap_or(12).clamp(1, 60);
    let top_k = args.top_k.unwrap_or(10).clamp(1, 100);
    let rows = &shop.rows;
    let models = ctx.value_models().await?;
    let (bg, gg) = (&models.bgnbd, &models.gamma_gamma);
    let mut values: Vec<(usize, f64)> = rows
        .iter()
        .enumerate()
        .map(|(i, c)| (i, lifetime_value(bg, &gg.params, c, months, discount, WEEK)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    values.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = values.iter().map(|(_, v)| v).sum();
    let top: Vec<Valued> = values
        .iter()
        .take(top_k)
        .map(|(i, v)| {
            let c = &rows[*i];
            Valued {
                customer: shop.ids[c.customer as usize].clone(),
                clv: round2(*v),
                p_alive: round4(bg.p_alive(c.frequency, c.recency, c.t)),
                expected_purchases: round2(bg.expected_purchases(
                    months as f64 * 30.0 / WEEK,
                    c.frequency,
                    c.recency,
                    c.t,
                )),
            }
        })
        .collect();
    let top_sum: f64 = values.iter().take(top_k).map(|(_, v)| v).sum();
    Ok(Output {
        as_of: shop.as_of,
        months,
        customers: rows.len(),
        total_clv: round2(total),
        listed: top.len(),
        top_share_pct: if total > 0.0 {
            round2(top_sum / total * 100.0)
        } else {
            0.0
        },
        top,
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let top = list(&out["top"], |c| {
        format!("{} {}", s(&c["customer"]), money(num(&c["clv"])))
    });
    t(
        format!(
            "未来 {} 个月全部 {} 位客户预期价值合计 {}；前 {} 位占 {}：{}。",
            out["months"],
            out["customers"],
            money(num(&out["total_clv"])),
            out["listed"],
            pct(num(&out["top_share_pct"])),
            top.join("，")
        ),
        format!(
            "Expected value of all {} customers over {} months: {}; the top {} hold {}: {}.",
            out["customers"],
            out["months"],
            money(num(&out["total_clv"])),
            out["listed"],
            pct(num(&out["top_share_pct"])),
            top.join(", ")
        ),
    )
}
