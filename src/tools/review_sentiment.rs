//! `review_sentiment`: how reviews feel in a period (default: the last 30 days of data), optionally for
//! one product: counts and shares of negative / neutral / positive (labels from `dongcha enrich`), mean
//! rating, and the change against the period before.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, Period, ToolError, round2};
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
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Mood {
    pub reviews: usize,
    /// Reviews not labelled yet (run `dongcha enrich`).
    pub unlabelled: usize,
    pub negative: usize,
    pub neutral: usize,
    pub positive: usize,
    /// Percent of the labelled reviews.
    pub negative_pct: f64,
    pub positive_pct: f64,
    pub mean_rating: Option<f64>,
}

pub fn mood(rows: &[&LabelledText]) -> Mood {
    let count = |s: &str| {
        rows.iter()
            .filter(|r| r.sentiment.as_deref() == Some(s))
            .count()
    };
    let (neg, neu, pos) = (count("negative"), count("neutral"), count("positive"));
    let labelled = neg + neu + pos;
    let pct = |n: usize| {
        if labelled > 0 {
            round2(n as f64 / labelled as f64 * 100.0)
        } else {
            0.0
        }
    };
    let ratings: Vec<f64> = rows.iter().filter_map(|r| r.rating).collect();
    Mood {
        reviews: rows.len(),
        unlabelled: rows.len() - labelled,
        negative: neg,
        neutral: neu,
        positive: pos,
        negative_pct: pct(neg),
        positive_pct: pct(pos),
        mean_rating: (!ratings.is_empty())
            .then(|| round2(ratings.iter().sum::<f64>() / ratings.len() as f64)),
    }
}

/// One week's labelled reviews (Monday to Sunday).
#[derive(Debug, Clone, Serialize)]
pub struct WeekMood {
    /// The week's Monday.
    pub week: chrono::NaiveDate,
    pub reviews: usize,
    pub negative_pct: f64,
    pub positive_pct: f64,
}

/// Weeks of sentiment over time, the last one containing the period's end.
pub const TREND_WEEKS: i64 = 12;

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub period: Period,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(flatten)]
    pub now: Mood,
    pub previous_period: Period,
    pub previous: Mood,
    /// Change of the negative share, in percentage points.
    pub negative_change_pts: f64,
    /// The most negative reviews of the period (ids and texts, lowest P(positive) first).
    pub most_negative: Vec<Quote>,
    /// Sentiment over the [`TREND_WEEKS`] weeks up to the period's end (what the chart draws).
    pub weekly: Vec<WeekMood>,
}

/// A review quoted as evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Quote {
    pub id: i64,
    pub text: String,
}

pub fn quote(r: &LabelledText) -> Quote {
    let text: String = r.text_raw.chars().take(80).collect();
    Quote { id: r.id, text }
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let period = ctx.period_or_default(&args.period).await?;
    let product = ctx.find_product_opt(args.product.as_deref()).await?;
    let previous_period = period.previous();
    let last_monday = period.to
        - chrono::Duration::days(
            chrono::Datelike::weekday(&period.to).num_days_from_monday() as i64
        );
    let first_monday = last_monday - chrono::Duration::weeks(TREND_WEEKS - 1);
    let rows = ctx
        .store
        .labelled_reviews(
            previous_period.from.min(first_monday),
            period.to,
            product.as_ref().map(|p| p.0),
        )
        .await?;
    let weekly = (0..TREND_WEEKS)
        .map(|w| {
            let week = first_monday + chrono::Duration::weeks(w);
            let end = (week + chrono::Duration::days(6)).min(period.to);
            let in_week: Vec<&LabelledText> = rows
                .iter()
                .filter(|r| r.date.is_some_and(|d| d >= week && d <= end))
                .collect();
            let m = mood(&in_week);
            WeekMood {
                week,
                reviews: m.reviews,
                negative_pct: m.negative_pct,
                positive_pct: m.positive_pct,
            }
        })
        .collect();
    let now: Vec<&LabelledText> = rows
        .iter()
        .filter(|r| r.date.is_some_and(|d| period.contains(d)))
        .collect();
    let before: Vec<&LabelledText> = rows
        .iter()
        .filter(|r| r.date.is_some_and(|d| previous_period.contains(d)))
        .collect();
    let (m, p) = (mood(&now), mood(&before));
    let mut negative: Vec<&&LabelledText> = now
        .iter()
        .filter(|r| r.sentiment.as_deref() == Some("negative"))
        .collect();
    negative.sort_by(|a, b| {
        a.p_positive
            .unwrap_or(0.5)
            .total_cmp(&b.p_positive.unwrap_or(0.5))
            .then(a.id.cmp(&b.id))
    });
    Ok(Output {
        period,
        product: product.map(|p| p.1),
        negative_change_pts: round2(m.negative_pct - p.negative_pct),
        now: m,
        previous_period,
        previous: p,
        most_negative: negative.iter().take(3).map(|r| quote(r)).collect(),
        weekly,
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
    let worst = ids(&out["most_negative"]);
    let rating = out["mean_rating"]
        .as_f64()
        .map(|r| format!("{r:.2}"))
        .unwrap_or_else(|| "-".into());
    let unl = out["unlabelled"].as_u64().unwrap_or(0);
    let note = if unl > 0 {
        t(
            format!("（{unl} 条尚未标注，请运行 `dongcha enrich`）"),
            format!(" ({unl} not labelled yet: run `dongcha enrich`)"),
        )
    } else {
        String::new()
    };
    t(
        format!(
            "{}{scope}，共 {} 条评论{note}：差评 {} 条（{}），中评 {} 条，好评 {} 条（{}），平均评分 {}；差评占比较上期变化 {:+.1} 个百分点。{}",
            period(&out["period"]),
            out["reviews"],
            out["negative"],
            pct(num(&out["negative_pct"])),
            out["neutral"],
            out["positive"],
            pct(num(&out["positive_pct"])),
            rating,
            num(&out["negative_change_pts"]),
            if worst.is_empty() {
                String::new()
            } else {
                format!("最负面的评论：{}。", worst.join(" "))
            }
        ),
        format!(
            "{}{scope}: {} reviews{note}: {} negative ({}), {} neutral, {} positive ({}), mean rating {}; the negative share moved {:+.1} points against the period before.{}",
            period(&out["period"]),
            out["reviews"],
            out["negative"],
            pct(num(&out["negative_pct"])),
            out["neutral"],
            out["positive"],
            pct(num(&out["positive_pct"])),
            rating,
            num(&out["negative_change_pts"]),
            if worst.is_empty() {
                String::new()
            } else {
                format!(" Most negative: {}.", worst.join(" "))
            }
        ),
    )
}
