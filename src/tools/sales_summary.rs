//! `sales_summary`: revenue, orders, units, customers and average order value for a period (default: the
//! last 30 days of data), optionally for one product or category, grouped by day/week/month/product/
//! category, compared with the period before.

use std::collections::{BTreeMap, HashSet};

use chrono::{Datelike, Duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, Period, Said, ToolError, round2, round4};
use crate::store::SaleLine;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    Day,
    Week,
    Month,
    Product,
    Category,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The days to total (resolved from the question; default: the last 30 days of data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// Only this product (name, model or brand as in the catalogue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Only this category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Break the totals down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Grouping>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub revenue: f64,
    pub orders: usize,
    pub units: i64,
    pub customers: usize,
    /// Revenue per order.
    pub aov: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub key: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub period: Period,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
    pub previous_period: Period,
    pub previous: Totals,
    /// Revenue change against the previous period, in percent (None when it had none).
    pub revenue_change_pct: Option<f64>,
    pub groups: Vec<Group>,
}

pub fn totals(lines: &[&SaleLine]) -> Totals {
    let revenue = lines.iter().map(|l| l.amount_cents).sum::<i64>() as f64 / 100.0;
    let orders = lines
        .iter()
        .map(|l| (l.customer_id, l.date, l.order_key.as_str()))
        .collect::<HashSet<_>>()
        .len();
    Totals {
        revenue: round2(revenue),
        orders,
        units: lines.iter().map(|l| l.quantity).sum(),
        customers: lines
            .iter()
            .map(|l| l.customer_id)
            .collect::<HashSet<_>>()
            .len(),
        aov: if orders > 0 {
            round2(revenue / orders as f64)
        } else {
            0.0
        },
    }
}

/// The default period: the last 30 days of data.
pub fn default_period(today: chrono::NaiveDate) -> Period {
    Period::new(today - Duration::days(29), today)
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let today = ctx.today().await?;
    let period = args.period.unwrap_or_else(|| default_period(today));
    if period.from > period.to {
        return Err(ToolError::BadArgs {
            tool: "sales_summary",
            reason: format!("period starts after it ends ({period})"),
        });
    }
    let product = ctx.find_product_opt(args.product.as_deref()).await?;
    let pid = product.as_ref().map(|p| p.0);
    let previous_period = period.previous();
    let lines = ctx
        .store
        .sale_lines(
            previous_period.from,
            period.to,
            pid,
            args.category.as_deref(),
        )
        .await?;
    if lines.is_empty() && args.category.is_some() {
        let c = args.category.as_deref().unwrap_or("");
        return Err(ToolError::NotFound(Said {
            en: format!("no sales in category {c:?}"),
            zh: format!("品类“{c}”没有销售记录"),
        }));
    }
    let now: Vec<&SaleLine> = lines.iter().filter(|l| period.contains(l.date)).collect();
    let before: Vec<&SaleLine> = lines
        .iter()
        .filter(|l| previous_period.contains(l.date))
        .collect();
    let t = totals(&now);
    let p = totals(&before);
    let mut groups = Vec::new();
    if let Some(g) = args.group_by {
        let mut by: BTreeMap<String, Vec<&SaleLine>> = BTreeMap::new();
        for l in &now {
            let key = match g {
                Grouping::Day => l.date.to_string(),
                Grouping::Week => {
                    let w = l.date.iso_week();
                    format!("{}-W{:02}", w.year(), w.week())
                }
                Grouping::Month => l.date.format("%Y-%m").to_string(),
                Grouping::Product => l.product.clone().unwrap_or_else(|| "(none)".into()),
                Grouping::Category => l.category.clone().unwrap_or_else(|| "(none)".into()),
            };
            by.entry(key).or_default().push(l);
        }
        groups = by
            .into_iter()
            .map(|(key, ls)| Group {
                key,
                totals: totals(&ls),
            })
            .collect();
        if matches!(g, Grouping::Product | Grouping::Category) {
            groups.sort_by(|a, b| b.totals.revenue.total_cmp(&a.totals.revenue));
        }
    }
    Ok(Output {
        period,
        product: product.map(|p| p.1),
        category: args.category,
        revenue_change_pct: (p.revenue > 0.0)
            .then(|| round4((t.revenue - p.revenue) / p.revenue * 100.0)),
        totals: t,
        previous_period,
        previous: p,
        groups,
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let scope = match (out.get("product"), out.get("category")) {
        (Some(p), _) => t(format!("（{}）", s(p)), format!(" ({})", s(p))),
        (_, Some(c)) => t(format!("（{}）", s(c)), format!(" ({})", s(c))),
        _ => String::new(),
    };
    let change = out["revenue_change_pct"]
        .as_f64()
        .map(|c| {
            t(
                format!("，环比 {}", signed_pct(c)),
                format!(", {} vs the period before", signed_pct(c)),
            )
        })
        .unwrap_or_default();
    let mut r = t(
        format!(
            "{}{scope}，销售额 {}，订单 {} 笔，客单价 {}，购买客户 {} 位{change}。",
            period(&out["period"]),
            money(num(&out["revenue"])),
            out["orders"],
            money(num(&out["aov"])),
            out["customers"]
        ),
        format!(
            "{}{scope}: revenue {}, {} orders, average order {}, {} customers{change}.",
            period(&out["period"]),
            money(num(&out["revenue"])),
            out["orders"],
            money(num(&out["aov"])),
            out["customers"]
        ),
    );
    let groups = list(&out["groups"], |g| {
        format!("{} {}", s(&g["key"]), money(num(&g["revenue"])))
    });
    if !groups.is_empty() {
        let shown: Vec<String> = groups.into_iter().take(8).collect();
        r.push_str(&t(
            format!("\n分组：{}", shown.join("；")),
            format!("\nBy group: {}", shown.join("; ")),
        ));
    }
    r
}
