//! `product_report`: one product at a glance over the last 30 days of data (or a named period): sales
//! against the period before, review sentiment, top complaint topics and purchase intent.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, Period, ToolError};

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The product (name, model or brand as in the catalogue).
    pub product: String,
    /// The days to look at (resolved from the question; default: the last 30 days of data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub product: String,
    pub sales: super::sales_summary::Output,
    pub sentiment: super::review_sentiment::Output,
    pub complaints: super::top_complaints::Output,
    pub intent: super::purchase_intent::Output,
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let (_, name) = ctx.find_product(&args.product).await?;
    let product = Some(name.clone());
    let period = args.period;
    Ok(Output {
        sales: super::sales_summary::run(
            ctx,
            super::sales_summary::Args {
                period,
                product: product.clone(),
                ..Default::default()
            },
        )
        .await?,
        sentiment: super::review_sentiment::run(
            ctx,
            super::review_sentiment::Args {
                product: product.clone(),
                period,
            },
        )
        .await?,
        complaints: super::top_complaints::run(
            ctx,
            super::top_complaints::Args {
                product: product.clone(),
                period,
                top_k: Some(3),
            },
        )
        .await?,
        intent: super::purchase_intent::run(ctx, super::purchase_intent::Args { product, period })
            .await?,
        product: name,
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    [
        super::sales_summary::render(&out["sales"], zh),
        super::review_sentiment::render(&out["sentiment"], zh),
        super::top_complaints::render(&out["complaints"], zh),
        super::purchase_intent::render(&out["intent"], zh),
    ]
    .join("\n")
}
