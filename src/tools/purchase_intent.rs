//! `purchase_intent`: what reviews and social posts say buyers mean to do — buy, abandon or wait (观望) —
//! in a period (default: the last 30 days of data), optionally for one product, with example ids of
//! would-be abandoners. Most reviews state no intent (they rate the product): the shares are of the texts
//! that state one.

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
    /// Texts not labelled yet (`dongcha enrich` has not run on them).
    pub unlabelled: usize,
    /// Texts that state no decision about buying (most reviews: they rate the product).
    pub no_intent: usize,
    /// Texts that state buy, abandon or wait: what the shares are of.
    pub stating_intent: usize,
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
    let t = Tally::of(all.iter().map(|r| r.intent.as_deref()));
    let stating = t.buy + t.abandon + t.wait;
    let pct = |n: usize| {
        if stating > 0 {
            round2(n as f64 / stating as f64 * 100.0)
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
        unlabelled: t.unlabelled,
        no_intent: t.none,
        stating_intent: stating,
        buy: t.buy,
        abandon: t.abandon,
        wait: t.wait,
        buy_pct: pct(t.buy),
        abandon_pct: pct(t.abandon),
        wait_pct: pct(t.wait),
        abandon_examples: reviews
            .iter()
            .filter(|r| r.intent.as_deref() == Some("abandon"))
            .take(2)
            .map(quote)
            .collect(),
    })
}

/// How many texts carry each label; `unlabelled`: no label yet (not enriched).
#[derive(Debug, Default, PartialEq)]
struct Tally {
    buy: usize,
    abandon: usize,
    wait: usize,
    none: usize,
    unlabelled: usize,
}

impl Tally {
    fn of<'a>(labels: impl Iterator<Item = Option<&'a str>>) -> Self {
        let mut t = Tally::default();
        for l in labels {
            match l {
                Some("buy") => t.buy += 1,
                Some("abandon") => t.abandon += 1,
                Some("wait") => t.wait += 1,
                Some("none") => t.none += 1,
                _ => t.unlabelled += 1,
            }
        }
        t
    }
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
            "{}{scope}，{} 条评论和帖子，其中 {} 条表达了购买意向：想买 {} 条（{}），放弃 {} 条（{}），观望 {} 条（{}）。{}",
            period(&out["period"]),
            out["texts"],
            out["stating_intent"],
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
            "{}{scope}: {} reviews and posts, {} of them state an intent — buy {} ({}), abandon {} ({}), wait {} ({}).{}",
            period(&out["period"]),
            out["texts"],
            out["stating_intent"],
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Most reviews state no intent: they are counted apart, and the shares are of the texts that
    /// state one (a review that only rates the product once counted as buy, abandon or wait).
    #[test]
    fn texts_stating_no_intent_are_not_in_the_shares() {
        let labels = [
            Some("buy"),
            Some("none"),
            Some("none"),
            None,
            Some("abandon"),
            Some("wait"),
            Some("none"),
        ];
        let t = Tally::of(labels.into_iter());
        assert_eq!(
            t,
            Tally {
                buy: 1,
                abandon: 1,
                wait: 1,
                none: 3,
                unlabelled: 1
            }
        );
        let out = serde_json::json!({
            "period": {"from": "2026-06-01", "to": "2026-06-30"}, "texts": 7, "stating_intent": 3,
            "buy": 1, "buy_pct": 33.33, "abandon": 1, "abandon_pct": 33.33, "wait": 1, "wait_pct": 33.33,
            "abandon_examples": [],
        });
        let en = render(&out, false);
        assert!(
            en.contains("7 reviews and posts, 3 of them state an intent — buy 1 (33.3%)"),
            "{en}"
        );
        let zh = render(&out, true);
        assert!(
            zh.contains("7 条评论和帖子，其中 3 条表达了购买意向：想买 1 条"),
            "{zh}"
        );
    }
}
