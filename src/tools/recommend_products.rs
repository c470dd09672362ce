//! `recommend_products`: what to offer a customer or a segment's members next — co-purchase lift plus
//! review interest, as `dongcha insight recommend` ranks it.

use std::collections::{HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, ToolError, round4};
use crate::insight::recommend::CoPurchase;

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// A customer's id as the shop knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Or a segment name (e.g. "high-value loyal").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// How many products (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pick {
    pub product: String,
    /// Co-purchase score scaled to the best (0..1) plus review interest.
    pub combined: f64,
    pub co_purchase: f64,
    pub review_interest: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    pub customers: usize,
    pub owned_products: usize,
    /// What the customer bought (for one customer; a segment's would be too long to list).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owned: Vec<String>,
    pub recommendations: Vec<Pick>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let shop = ctx.shop().await?;
    let (baskets, names) = ctx.store.customer_products().await?;
    let (members, segment): (Vec<usize>, Option<String>) = match (&args.customer_id, &args.segment)
    {
        (Some(c), _) => {
            let c = c.trim().trim_start_matches('#');
            let i = shop
                .ids
                .iter()
                .position(|x| x == c)
                .ok_or_else(|| ToolError::no_customer(c))?;
            (vec![i], None)
        }
        (None, Some(s)) => {
            let (k, name) = ctx.find_segment(s).await?;
            let seg = ctx.segments().await?;
            (
                shop.rows
                    .iter()
                    .zip(&seg.assignment)
                    .filter(|(_, a)| **a == k)
                    .map(|(c, _)| c.customer as usize)
                    .collect(),
                Some(name),
            )
        }
        (None, None) => {
            return Err(ToolError::BadArgs {
                tool: "recommend_products",
                reason: "name a customer_id or a segment".into(),
            });
        }
    };
    let owned: HashSet<u32> = members
        .iter()
        .flat_map(|m| baskets[*m].iter().copied())
        .collect();
    let cp = CoPurchase::new(&baskets, names.len());
    let member_ids: Vec<String> = members.iter().map(|m| shop.ids[*m].clone()).collect();
    let interest = crate::enrich::review_interest(&ctx.cfg, &ctx.store, &member_ids, 200).await?;
    let products = ctx.store.products_by_name().await?;
    let by_index: HashMap<u32, f64> = interest
        .as_ref()
        .map(|i| {
            products
                .iter()
                .enumerate()
                .filter_map(|(k, (id, _))| i.share.get(id).map(|s| (k as u32, *s)))
                .collect()
        })
        .unwrap_or_default();
    let recs = cp.recommend_with_interest(&owned, &by_index, args.top_k.unwrap_or(5).clamp(1, 20));
    Ok(Output {
        customer: args
            .customer_id
            .as_ref()
            .map(|c| c.trim().trim_start_matches('#').to_string()),
        segment,
        customers: members.len(),
        owned_products: owned.len(),
        owned: if args.customer_id.is_some() {
            let mut names: Vec<String> = owned.iter().map(|p| names[*p as usize].clone()).collect();
            names.sort();
            names
        } else {
            Vec::new()
        },
        recommendations: recs
            .iter()
            .map(|r| Pick {
                product: names[r.product as usize].clone(),
                combined: round4(r.combined),
                co_purchase: round4(r.combined - r.interest),
                review_interest: round4(r.interest),
            })
            .collect(),
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let who = match (out.get("customer"), out.get("segment")) {
        (Some(c), _) => t(format!("客户 {}", s(c)), format!("customer {}", s(c))),
        (_, Some(g)) => t(
            format!("“{}”客户群（{} 位）", tr(g, true), out["customers"]),
            format!(
                "segment \"{}\" ({} customers)",
                tr(g, false),
                out["customers"]
            ),
        ),
        _ => String::new(),
    };
    let recs = list(&out["recommendations"], |r| {
        format!("{} ({:.2})", s(&r["product"]), num(&r["combined"]))
    });
    if recs.is_empty() {
        return t(
            format!("{who}暂时没有可推荐的产品。"),
            format!("Nothing to recommend to {who} yet."),
        );
    }
    t(
        format!("推荐给{who}：{}。", recs.join("，")),
        format!("For {who}: {}.", recs.join(", ")),
    )
}
