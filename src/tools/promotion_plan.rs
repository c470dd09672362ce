//! `promotion_plan`: whom to target for a goal — retain (likely to leave, worth keeping), reactivate
//! (lapsed) or upsell (active, room to spend more) — with the incentive and the value at stake, as
//! `dongcha insight promote` ranks them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, ToolError, WEEK, round2, round4};
use crate::insight::recommend::{ClvTerms, Goal, promotion_targets};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum PlanGoal {
    #[default]
    Retain,
    Reactivate,
    Upsell,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// What the promotion is for.
    pub goal: PlanGoal,
    /// How many customers to target (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Targeted {
    pub customer: String,
    pub p_alive: f64,
    pub clv: f64,
    pub value_at_stake: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub goal: PlanGoal,
    pub as_of: chrono::NaiveDate,
    pub incentive: Option<String>,
    pub targets: usize,
    pub total_value_at_stake: f64,
    pub top: Vec<Targeted>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    compute(ctx, args, 12).await
}

/// [`run`] with `months` of lifetime value at stake (`dongcha insight promote --months`).
pub async fn compute(ctx: &Context, args: Args, months: u32) -> Result<Output, ToolError> {
    let shop = ctx.shop().await?;
    let goal = match args.goal {
        PlanGoal::Retain => Goal::Retain,
        PlanGoal::Reactivate => Goal::Reactivate,
        PlanGoal::Upsell => Goal::Upsell,
    };
    let rows = &shop.rows;
    let models = ctx.value_models().await?;
    let targets = tokio::task::block_in_place(|| {
        let (bg, gg) = (&models.bgnbd, &models.gamma_gamma.params);
        let terms = ClvTerms {
            months,
            monthly_discount: super::customer_value::MONTHLY_DISCOUNT,
            period_days: WEEK,
        };
        Ok::<_, crate::insight::InsightError>(promotion_targets(
            rows,
            bg,
            gg,
            goal,
            terms,
            args.top_k.unwrap_or(10).clamp(1, 100),
        ))
    })?;
    Ok(Output {
        goal: args.goal,
        as_of: shop.as_of,
        incentive: targets.first().map(|t| t.incentive.to_string()),
        targets: targets.len(),
        total_value_at_stake: round2(targets.iter().map(|t| t.value_at_stake).sum()),
        top: targets
            .iter()
            .map(|t| Targeted {
                customer: shop.ids[t.customer as usize].clone(),
                p_alive: round4(t.p_alive),
                clv: round2(t.clv),
                value_at_stake: round2(t.value_at_stake),
            })
            .collect(),
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let top = list(&out["top"], |c| {
        format!("{} {}", s(&c["customer"]), money(num(&c["value_at_stake"])))
    });
    let goal = s(&out["goal"]);
    let goal_zh = match goal.as_str() {
        "retain" => "挽留",
        "reactivate" => "召回",
        _ => "提升客单",
    };
    t(
        format!(
            "{goal_zh}方案：针对 {} 位客户，激励“{}”，涉及价值合计 {}。名单：{}。",
            out["targets"],
            tr(&out["incentive"], true),
            money(num(&out["total_value_at_stake"])),
            top.join("，")
        ),
        format!(
            "Plan to {goal}: {} customers, incentive \"{}\", {} of value at stake. Targets: {}.",
            out["targets"],
            tr(&out["incentive"], false),
            money(num(&out["total_value_at_stake"])),
            top.join(", ")
        ),
    )
}
