//! Scheduled digests: the period's numbers, review shifts, churn alerts and coming events, pushed to the
//! operators' channels — only when something in them crossed its threshold.
//!
//! `build` reads the tools (sales summary and forecast, review sentiment, complaint topics, churn
//! scores, the calendar) for the digest's period and keeps what it quotes in one [`Output`]; the text is
//! written from that output alone and checked like a reply (`agent::compose::ungrounded_numbers`).
//! `schedule` says when a digest runs; `run` decides, records and delivers (one row per period in the
//! store, so a period is never reported twice).

pub mod run;
pub mod schedule;

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, DigestConfig, DigestPeriod};
use crate::insight::calendar::Calendar;
use crate::reply::Chart;
use crate::reply::chart::Font;
use crate::tools::render::{money, pct, signed_pct};
use crate::tools::sales_forecast::{self, Freq};
use crate::tools::{self, Context, Period, ToolError, round2};

/// The blocks a digest may have, in the order config lists them.
pub const BLOCKS: [&str; 4] = ["kpis", "reviews", "churn", "events"];

/// Weeks of history and of forecast on the KPI chart.
pub const CHART_WEEKS: usize = 12;
pub const CHART_AHEAD: usize = 4;

/// Churn alerts listed by name (the count covers them all).
const ALERTS_LISTED: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("no digest named {0:?} in config (see `dongcha digest --list`)")]
    Unknown(String),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
    #[error("digest {name}: the text quotes figures its output lacks: {numbers:?}")]
    Ungrounded { name: String, numbers: Vec<String> },
    #[error("writing {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The period a digest covers: the last complete day, week (Monday to Sunday) or month that ends on or
/// before `as_of`.
pub fn period_ending(kind: DigestPeriod, as_of: NaiveDate) -> Period {
    match kind {
        DigestPeriod::Day => Period::new(as_of, as_of),
        DigestPeriod::Week => {
            // Sunday on or before as_of.
            let to =
                as_of - Duration::days((as_of.weekday().num_days_from_monday() as i64 + 1) % 7);
            Period::new(to - Duration::days(6), to)
        }
        DigestPeriod::Month => {
            let next = as_of + Duration::days(1);
            let to = if next.day() == 1 {
                as_of
            } else {
                as_of.with_day(1).expect("first") - Duration::days(1)
            };
            Period::new(to.with_day(1).expect("first"), to)
        }
    }
}

/// One figure against the previous period.
#[derive(Debug, Clone, Serialize)]
pub struct Kpi {
    pub value: f64,
    pub previous: f64,
    pub change_pct: Option<f64>,
}

impl Kpi {
    fn new(value: f64, previous: f64) -> Self {
        Self {
            value: round2(value),
            previous: round2(previous),
            change_pct: (previous.abs() > 1e-9)
                .then(|| round2((value - previous) / previous * 100.0)),
        }
    }
    fn moved(&self, pct: f64) -> bool {
        self.change_pct.is_some_and(|c| c.abs() >= pct)
    }
}

/// The revenue forecast made for the period (fitted on the data up to the previous period's end).
#[derive(Debug, Clone, Serialize)]
pub struct ForecastFor {
    /// The interval's coverage, percent.
    pub interval_pct: f64,
    pub forecast: f64,
    pub lower80: f64,
    pub upper80: f64,
    /// Actual revenue against the forecast, percent.
    pub actual_vs_forecast_pct: Option<f64>,
    /// "above", "below" or "inside" the 80% interval.
    pub position: &'static str,
    pub method: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kpis {
    pub revenue: Kpi,
    pub orders: Kpi,
    pub aov: Kpi,
    pub buyers: Kpi,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastFor>,
    /// Weekly revenue of the last weeks, then the weekly forecast (what the chart draws).
    pub weeks: Vec<WeekTotal>,
    pub weeks_ahead: Vec<sales_forecast::Step>,
    pub shown: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WeekTotal {
    pub week: NaiveDate,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicShift {
    pub topic: String,
    pub complaints: usize,
    pub previous_complaints: usize,
    pub change_pct: Option<f64>,
    pub p_value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reviews {
    /// Reviews of the period with a sentiment label, and the negative share of them.
    pub labelled: usize,
    pub negative_pct: f64,
    pub previous_labelled: usize,
    pub previous_negative_pct: f64,
    pub negative_change_pts: f64,
    pub p_value: f64,
    pub sentiment_shift: bool,
    /// Complaint topics whose change is significant (`insight::trends`' rule).
    pub topics: Vec<TopicShift>,
    pub negative_reviews: usize,
    pub shown: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub customer: String,
    pub churn_probability_pct: f64,
    pub previous_probability_pct: Option<f64>,
    pub total_spent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Churn {
    pub threshold_pct: f64,
    pub high_value_pct: f64,
    /// The spend from which a customer counts as high-value.
    pub high_value_from: f64,
    pub high_value_customers: usize,
    /// High-value customers whose churn probability reached the threshold since the previous period.
    pub crossed: usize,
    pub alerts: Vec<Alert>,
    /// Shares at or above the threshold now: of high-value customers, of all customers.
    pub high_value_above_pct: f64,
    pub base_rate_pct: f64,
    pub customers: usize,
    pub shown: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Coming {
    pub name: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub days_ahead: i64,
    /// Sales on the event's past days ÷ the usual level, when the shop's history has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub past_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Events {
    pub days: i64,
    pub events: Vec<Coming>,
    pub shown: bool,
}

/// Everything a digest quotes.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub name: String,
    pub period: Period,
    pub previous_period: Period,
    /// The data's clock when it was built.
    pub data_until: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kpis: Option<Kpis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviews: Option<Reviews>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Events>,
}

impl Output {
    /// Whether any block crossed its threshold.
    pub fn has_news(&self) -> bool {
        self.kpis.as_ref().is_some_and(|b| b.shown)
            || self.reviews.as_ref().is_some_and(|b| b.shown)
            || self.churn.as_ref().is_some_and(|b| b.shown)
            || self.events.as_ref().is_some_and(|b| b.shown)
    }
}

/// A built digest: its figures, its text (from the figures alone), its charts.
#[derive(Debug, Clone)]
pub struct Digest {
    pub output: Output,
    pub zh: bool,
    pub text: String,
    pub charts: Vec<Chart>,
}

impl Digest {
    pub fn quiet(&self) -> bool {
        !self.output.has_news()
    }
}

/// The digest named `name` in config.
pub fn spec<'a>(cfg: &'a Config, name: &str) -> Result<&'a DigestConfig, DigestError> {
    cfg.digest
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| DigestError::Unknown(name.to_string()))
}

/// The period a digest run at local day `run_day` covers: the last complete period before that day
/// that the shop's data reaches.
pub async fn period_for(
    cfg: &Config,
    spec: &DigestConfig,
    run_day: NaiveDate,
) -> Result<(Period, NaiveDate), DigestError> {
    let clock = Context::open(cfg).await?.today().await?;
    let as_of = clock.min(run_day - Duration::days(1));
    Ok((period_ending(spec.period, as_of), clock))
}

/// Builds the digest of `period` (see [`period_for`]); `font` draws its charts.
pub async fn build(
    cfg: &Config,
    spec: &DigestConfig,
    period: Period,
    data_until: NaiveDate,
    font: Option<&Font>,
) -> Result<Digest, DigestError> {
    let zh = spec.lang == "zh";
    let previous_period = period.previous();
    // The customer models see the shop as it was at the period's end.
    let ctx = Context::open_as_of(cfg, Some(period.to)).await?;
    let wants = |b: &str| spec.blocks.iter().any(|x| x == b);
    let mut output = Output {
        name: spec.name.clone(),
        period,
        previous_period,
        data_until,
        kpis: None,
        reviews: None,
        churn: None,
        events: None,
    };
    if wants("kpis") {
        output.kpis = block(
            spec,
            "kpis",
            kpis(&ctx, spec, period, previous_period).await,
        )?;
    }
    if wants("reviews") {
        output.reviews = block(spec, "reviews", reviews(&ctx, spec, period).await)?;
    }
    if wants("churn") {
        output.churn = block(spec, "churn", churn(cfg, &ctx, spec, previous_period).await)?;
    }
    if wants("events") {
        output.events = Some(events(cfg, &ctx, spec, period).await);
    }
    let value = serde_json::to_value(&output).unwrap_or(Value::Null);
    let text = render(&output, spec, zh);
    let ungrounded = crate::agent::compose::ungrounded_numbers(&text, &value);
    if !ungrounded.is_empty() {
        return Err(DigestError::Ungrounded {
            name: spec.name.clone(),
            numbers: ungrounded,
        });
    }
    let charts = match font {
        Some(f) if output.has_news() => charts(&output, zh, f),
        _ => Vec::new(),
    };
    Ok(Digest {
        output,
        zh,
        text,
        charts,
    })
}

/// A block the shop's data cannot fill (no purchases in scope, too few customers for a model) is left
/// out and logged; a failing store fails the digest.
fn block<T>(
    spec: &DigestConfig,
    name: &str,
    r: Result<T, DigestError>,
) -> Result<Option<T>, DigestError> {
    match r {
        Ok(b) => Ok(Some(b)),
        Err(DigestError::Tool(
            e @ (ToolError::NoData(_)
            | ToolError::NotFound(_)
            | ToolError::Insight(_)
            | ToolError::BadArgs { .. }),
        )) => {
            tracing::info!(digest = %spec.name, block = name, "block left out: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn kpis(
    ctx: &Context,
    spec: &DigestConfig,
    period: Period,
    previous: Period,
) -> Result<Kpis, DigestError> {
    let sales = tools::run(ctx, "sales_summary", json!({ "period": period })).await?;
    // The period's totals are the output's top-level fields, the previous period's under "previous".
    let kpi = |k: &str| {
        Kpi::new(
            sales[k].as_f64().unwrap_or(0.0),
            sales["previous"][k].as_f64().unwrap_or(0.0),
        )
    };
    let (revenue, orders, aov, buyers) =
        (kpi("revenue"), kpi("orders"), kpi("aov"), kpi("customers"));
    let purchases = ctx.store.sales(None, None).await?;
    // The forecast made for this period: the shop's daily model (holidays and promotions included),
    // fitted on what was known at the previous period's end, summed over the period's days.
    let forecast = match summed_forecast(ctx, &purchases, previous.to, &[period]) {
        Ok((method, sums)) => sums.first().map(|s| {
            let actual = revenue.value;
            ForecastFor {
                interval_pct: 80.0,
                forecast: s.forecast,
                lower80: s.lower80,
                upper80: s.upper80,
                actual_vs_forecast_pct: (s.forecast.abs() > 1e-9)
                    .then(|| round2((actual - s.forecast) / s.forecast * 100.0)),
                position: if actual > s.upper80 {
                    "above"
                } else if actual < s.lower80 {
                    "below"
                } else {
                    "inside"
                },
                method,
            }
        }),
        Err(e) => {
            tracing::info!(digest = %spec.name, "no forecast for the period: {e}");
            None
        }
    };
    // The chart: the complete weeks up to the period's end, then the next weeks' forecast.
    let chart_end =
        period.to - Duration::days((period.to.weekday().num_days_from_monday() as i64 + 1) % 7);
    let first_week = chart_end - Duration::days(7 * CHART_WEEKS as i64 - 1);
    let mut weekly: std::collections::BTreeMap<NaiveDate, f64> = (0..CHART_WEEKS)
        .map(|w| (first_week + Duration::days(7 * w as i64), 0.0))
        .collect();
    for p in purchases
        .iter()
        .filter(|p| p.date >= first_week && p.date <= chart_end)
    {
        let monday = p.date - Duration::days(p.date.weekday().num_days_from_monday() as i64);
        *weekly.entry(monday).or_insert(0.0) += p.amount;
    }
    let weeks = weekly
        .into_iter()
        .map(|(week, total)| WeekTotal {
            week,
            total: round2(total),
        })
        .collect();
    let ahead: Vec<Period> = (0..CHART_AHEAD as i64)
        .map(|w| {
            let from = chart_end + Duration::days(1 + 7 * w);
            Period::new(from, from + Duration::days(6))
        })
        .collect();
    let weeks_ahead = summed_forecast(ctx, &purchases, chart_end, &ahead)
        .map(|(_, s)| s)
        .unwrap_or_default();
    let shown = [&revenue, &orders, &aov, &buyers]
        .iter()
        .any(|k| k.moved(spec.kpi_change_pct))
        || forecast.as_ref().is_some_and(|f| f.position != "inside");
    Ok(Kpis {
        revenue,
        orders,
        aov,
        buyers,
        forecast,
        weeks,
        weeks_ahead,
        shown,
    })
}

/// The shop's daily forecast fitted on the purchases up to `known` (the model and calendar the
/// `sales_forecast` tool uses), summed over each of `parts` (which follow `known`). A sum's band is the
/// sum of the daily bands: the days' errors taken as fully correlated, so the band is wider than the
/// sum's true interval and a figure outside it is a strong signal.
fn summed_forecast(
    ctx: &Context,
    purchases: &[crate::insight::rfm::Purchase],
    known: NaiveDate,
    parts: &[Period],
) -> Result<(String, Vec<sales_forecast::Step>), ToolError> {
    let until: Vec<_> = purchases
        .iter()
        .filter(|p| p.date <= known)
        .cloned()
        .collect();
    let horizon = parts
        .iter()
        .map(|p| (p.to - known).num_days())
        .max()
        .unwrap_or(0)
        .max(1) as usize;
    let f = tokio::task::block_in_place(|| {
        sales_forecast::compute(&ctx.cfg, &until, Freq::Day, horizon, None, true)
    })?;
    let sums = parts
        .iter()
        .map(|p| {
            let days: Vec<&sales_forecast::Step> =
                f.forecast.iter().filter(|s| p.contains(s.period)).collect();
            let sum = |k: fn(&sales_forecast::Step) -> f64| round2(days.iter().map(|s| k(s)).sum());
            sales_forecast::Step {
                period: p.from,
                forecast: sum(|s| s.forecast),
                lower80: sum(|s| s.lower80),
                upper80: sum(|s| s.upper80),
                lower95: sum(|s| s.lower95),
                upper95: sum(|s| s.upper95),
                event: None,
            }
        })
        .collect();
    Ok((f.method.name().to_string(), sums))
}

async fn reviews(
    ctx: &Context,
    spec: &DigestConfig,
    period: Period,
) -> Result<Reviews, DigestError> {
    let s = tools::run(ctx, "review_sentiment", json!({ "period": period })).await?;
    let labelled = |m: &Value| {
        m["reviews"].as_u64().unwrap_or(0) as usize - m["unlabelled"].as_u64().unwrap_or(0) as usize
    };
    let (n_now, n_before) = (labelled(&s["now"]), labelled(&s["previous"]));
    let neg = |m: &Value| m["negative"].as_u64().unwrap_or(0) as usize;
    let share = |m: &Value, n: usize| {
        if n == 0 {
            0.0
        } else {
            round2(neg(m) as f64 / n as f64 * 100.0)
        }
    };
    let (now_pct, before_pct) = (share(&s["now"], n_now), share(&s["previous"], n_before));
    let p_value = crate::insight::trends::two_proportion_p(
        neg(&s["now"]),
        n_now,
        neg(&s["previous"]),
        n_before,
    );
    let change = round2(now_pct - before_pct);
    let sentiment_shift =
        n_now > 0 && n_before > 0 && change.abs() >= spec.sentiment_shift_pts && p_value < 0.05;
    let c = tools::run(
        ctx,
        "top_complaints",
        json!({ "period": period, "top_k": 10 }),
    )
    .await?;
    let mut topics: Vec<TopicShift> = c["topics"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["significant"].as_bool() == Some(true))
                .map(|t| TopicShift {
                    topic: t["topic"].as_str().unwrap_or_default().to_string(),
                    complaints: t["complaints"].as_u64().unwrap_or(0) as usize,
                    previous_complaints: t["previous_complaints"].as_u64().unwrap_or(0) as usize,
                    change_pct: t["change_pct"].as_f64(),
                    p_value: t["p_value"].as_f64().unwrap_or(1.0),
                })
                .collect()
        })
        .unwrap_or_default();
    // Rises first, the largest first.
    topics.sort_by(|a, b| {
        b.change_pct
            .unwrap_or(f64::INFINITY)
            .total_cmp(&a.change_pct.unwrap_or(f64::INFINITY))
    });
    let shown = sentiment_shift || !topics.is_empty();
    Ok(Reviews {
        labelled: n_now,
        negative_pct: now_pct,
        previous_labelled: n_before,
        previous_negative_pct: before_pct,
        negative_change_pts: change,
        p_value: tools::round4(p_value),
        sentiment_shift,
        topics,
        negative_reviews: c["negative_reviews"].as_u64().unwrap_or(0) as usize,
        shown,
    })
}

async fn churn(
    cfg: &Config,
    ctx: &Context,
    spec: &DigestConfig,
    previous: Period,
) -> Result<Churn, DigestError> {
    let shop = ctx.shop().await?;
    let scored = ctx.churn().await?;
    let before_ctx = Context::open_as_of(cfg, Some(previous.to)).await?;
    // Scores at the previous period's end, by customer (a shop with no purchases then has none).
    let before: HashMap<String, f64> = match (before_ctx.shop().await, before_ctx.churn().await) {
        (Ok(bs), Ok(bc)) => bc
            .iter()
            .map(|(i, r)| (bs.ids[bs.rows[*i].customer as usize].clone(), r.probability))
            .collect(),
        _ => HashMap::new(),
    };
    let mut spend: Vec<f64> = shop.rows.iter().map(|r| r.total_spent).collect();
    spend.sort_by(|a, b| b.total_cmp(a));
    let n_high = ((spend.len() as f64 * spec.high_value_pct / 100.0).ceil() as usize)
        .clamp(1, spend.len().max(1));
    let from = spend.get(n_high - 1).copied().unwrap_or(0.0);
    let threshold = spec.churn_alert;
    let mut alerts = Vec::new();
    let (mut high, mut high_above, mut above) = (0usize, 0usize, 0usize);
    for (i, r) in scored.iter() {
        let row = &shop.rows[*i];
        let is_high = row.total_spent >= from;
        let is_above = r.probability >= threshold;
        above += is_above as usize;
        if !is_high {
            continue;
        }
        high += 1;
        high_above += is_above as usize;
        let id = &shop.ids[row.customer as usize];
        let was = before.get(id).copied();
        if is_above && was.is_none_or(|p| p < threshold) {
            alerts.push(Alert {
                customer: id.clone(),
                churn_probability_pct: round2(r.probability * 100.0),
                previous_probability_pct: was.map(|p| round2(p * 100.0)),
                total_spent: round2(row.total_spent),
            });
        }
    }
    alerts.sort_by(|a, b| b.total_spent.total_cmp(&a.total_spent));
    let crossed = alerts.len();
    alerts.truncate(ALERTS_LISTED);
    let share = |k: usize, n: usize| {
        if n == 0 {
            0.0
        } else {
            round2(k as f64 / n as f64 * 100.0)
        }
    };
    Ok(Churn {
        threshold_pct: round2(threshold * 100.0),
        high_value_pct: spec.high_value_pct,
        high_value_from: round2(from),
        high_value_customers: high,
        crossed,
        alerts,
        high_value_above_pct: share(high_above, high),
        base_rate_pct: share(above, scored.len()),
        customers: scored.len(),
        shown: crossed > 0,
    })
}

async fn events(cfg: &Config, ctx: &Context, spec: &DigestConfig, period: Period) -> Events {
    let cal = if cfg.forecast.holidays {
        Calendar::built_in()
    } else {
        Calendar::default()
    }
    .with(&cfg.forecast.promotions);
    let (from, to) = (
        period.to + Duration::days(1),
        period.to + Duration::days(spec.event_days),
    );
    // What each event did to the shop's sales before (learned by the daily forecast).
    let effects: HashMap<String, f64> = match sales_forecast::shared(ctx, None, None, true).await {
        Ok(s) => s
            .forecast
            .event_effects
            .iter()
            .map(|e| (e.name.clone(), e.ratio))
            .collect(),
        Err(_) => HashMap::new(),
    };
    let events: Vec<Coming> = cal
        .events()
        .iter()
        .filter(|e| e.start >= from && e.start <= to)
        .map(|e| Coming {
            name: e.name.clone(),
            start: e.start,
            end: e.end,
            days_ahead: (e.start - period.to).num_days(),
            past_ratio: effects.get(&e.name).map(|r| tools::round4(*r)),
        })
        .collect();
    Events {
        days: spec.event_days,
        shown: !events.is_empty(),
        events,
    }
}

fn signed(x: Option<f64>) -> String {
    x.map(signed_pct).unwrap_or_else(|| "–".into())
}

/// The digest's text, from its output alone, in its language.
pub fn render(o: &Output, spec: &DigestConfig, zh: bool) -> String {
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let name = match (zh, spec.period) {
        (true, DigestPeriod::Day) => "日报",
        (true, DigestPeriod::Week) => "周报",
        (true, DigestPeriod::Month) => "月报",
        (false, DigestPeriod::Day) => "Daily digest",
        (false, DigestPeriod::Week) => "Weekly digest",
        (false, DigestPeriod::Month) => "Monthly digest",
    };
    let mut lines = vec![format!("{name} · {} · {}", spec.name, o.period)];
    if !o.has_news() {
        lines.push(t(
            "一切平稳：本期没有指标越过提醒阈值。".into(),
            "All quiet: nothing crossed a threshold this period.".into(),
        ));
        return lines.join("\n");
    }
    if let Some(k) = o.kpis.as_ref().filter(|k| k.shown) {
        let fig = |label_zh: &str, label_en: &str, x: &Kpi, m: bool| {
            let v = |y: f64| {
                if m {
                    money(y)
                } else {
                    format!("{y:.2}").trim_end_matches(".00").to_string()
                }
            };
            t(
                format!(
                    "{label_zh} {}（上期 {}，{}）",
                    v(x.value),
                    v(x.previous),
                    signed(x.change_pct)
                ),
                format!(
                    "{label_en} {} (previous {}, {})",
                    v(x.value),
                    v(x.previous),
                    signed(x.change_pct)
                ),
            )
        };
        lines.push(t("【经营指标】".into(), "KPIs".into()));
        lines.push(fig("销售额", "Revenue", &k.revenue, true));
        if let Some(f) = &k.forecast {
            let c = f.interval_pct;
            let pos = match (zh, f.position) {
                (true, "above") => format!("高于 {c}% 区间"),
                (true, "below") => format!("低于 {c}% 区间"),
                (true, _) => format!("在 {c}% 区间内"),
                (false, "above") => format!("above the {c}% interval"),
                (false, "below") => format!("below the {c}% interval"),
                (false, _) => format!("inside the {c}% interval"),
            };
            lines.push(t(
                format!(
                    "  预测 {}（{c}% 区间 {} – {}），实际比预测 {}，{pos}",
                    money(f.forecast),
                    money(f.lower80),
                    money(f.upper80),
                    signed(f.actual_vs_forecast_pct)
                ),
                format!(
                    "  forecast {} ({c}% interval {} – {}), actual {} against it, {pos}",
                    money(f.forecast),
                    money(f.lower80),
                    money(f.upper80),
                    signed(f.actual_vs_forecast_pct)
                ),
            ));
        }
        lines.push(fig("订单", "Orders", &k.orders, false));
        lines.push(fig("客单价", "AOV", &k.aov, true));
        lines.push(fig("买家", "Buyers", &k.buyers, false));
    }
    if let Some(r) = o.reviews.as_ref().filter(|r| r.shown) {
        lines.push(t("【评价】".into(), "Reviews".into()));
        if r.sentiment_shift {
            lines.push(t(
                format!(
                    "差评占比 {}（上期 {}，{:+.2} 个百分点，n={}）",
                    pct(r.negative_pct),
                    pct(r.previous_negative_pct),
                    r.negative_change_pts,
                    r.labelled
                ),
                format!(
                    "Negative share {} (previous {}, {:+.2} points, n={})",
                    pct(r.negative_pct),
                    pct(r.previous_negative_pct),
                    r.negative_change_pts,
                    r.labelled
                ),
            ));
        }
        for tp in &r.topics {
            let change = tp
                .change_pct
                .map(signed_pct)
                .unwrap_or_else(|| t("新出现".into(), "new".into()));
            lines.push(t(
                format!(
                    "{}投诉环比 {change}（n={}，上期 {}）",
                    tp.topic, tp.complaints, tp.previous_complaints
                ),
                format!(
                    "Complaints about {}: {change} on the previous period (n={}, previous {})",
                    tp.topic, tp.complaints, tp.previous_complaints
                ),
            ));
        }
    }
    if let Some(c) = o.churn.as_ref().filter(|c| c.shown) {
        lines.push(t("【流失预警】".into(), "Churn alerts".into()));
        lines.push(t(
            format!(
                "{} 位高价值客户（消费前 {}%，累计 ≥ {}）的流失概率本期升到 {}% 以上；高价值客户中 {} 在此线以上，全部 {} 位客户的基准为 {}。",
                c.crossed,
                c.high_value_pct,
                money(c.high_value_from),
                c.threshold_pct,
                pct(c.high_value_above_pct),
                c.customers,
                pct(c.base_rate_pct)
            ),
            format!(
                "{} high-value customers (top {}% by spend, ≥ {}) rose to a churn risk of {}% or more this period; {} of high-value customers are above that line, against a base rate of {} of all {} customers.",
                c.crossed,
                c.high_value_pct,
                money(c.high_value_from),
                c.threshold_pct,
                pct(c.high_value_above_pct),
                pct(c.base_rate_pct),
                c.customers
            ),
        ));
        for a in &c.alerts {
            let was = a
                .previous_probability_pct
                .map(pct)
                .unwrap_or_else(|| t("新客户".into(), "new".into()));
            lines.push(t(
                format!(
                    "  {}：{}（上期 {}），累计消费 {}",
                    a.customer,
                    pct(a.churn_probability_pct),
                    was,
                    money(a.total_spent)
                ),
                format!(
                    "  {}: {} (previous {}), spent {}",
                    a.customer,
                    pct(a.churn_probability_pct),
                    was,
                    money(a.total_spent)
                ),
            ));
        }
    }
    if let Some(e) = o.events.as_ref().filter(|e| e.shown) {
        lines.push(t(
            format!("【未来 {} 天的活动】", e.days),
            format!("Coming in the next {} days", e.days),
        ));
        for ev in &e.events {
            let name = crate::terms::term(&ev.name, zh);
            let effect = ev
                .past_ratio
                .map(|r| {
                    t(
                        format!("，往年销售额为平时的 {r:.2} 倍"),
                        format!(", past sales {r:.2}× the usual"),
                    )
                })
                .unwrap_or_default();
            let dates = if ev.start == ev.end {
                ev.start.to_string()
            } else {
                format!("{} – {}", ev.start, ev.end)
            };
            lines.push(t(
                format!("  {name}：{dates}（{} 天后{effect}）", ev.days_ahead),
                format!("  {name}: {dates} (in {} days{effect})", ev.days_ahead),
            ));
        }
    }
    lines.join("\n")
}

/// The charts of a digest with news: weekly revenue with the forecast ahead (the standing picture of
/// every digest sent, whichever block had the news), then the complaint topics when the review block
/// shows some.
fn charts(o: &Output, zh: bool, font: &Font) -> Vec<Chart> {
    let mut out = Vec::new();
    if let Some(k) = &o.kpis {
        let data = json!({ "weeks": k.weeks, "ahead": k.weeks_ahead });
        if let Some(c) = crate::reply::chart::weekly_revenue(&data, zh, font) {
            out.push(c);
        }
    }
    if let Some(r) = o
        .reviews
        .as_ref()
        .filter(|r| r.shown && !r.topics.is_empty())
    {
        let data = json!({ "topics": r.topics });
        if let Some(c) = crate::reply::chart::complaint_topics(&data, zh, font) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_period_is_the_last_complete_one_on_or_before_the_day() {
        // 2026-06-30 is a Tuesday: the last complete week is Monday 22 to Sunday 28 June.
        let w = period_ending(DigestPeriod::Week, d("2026-06-30"));
        assert_eq!((w.from, w.to), (d("2026-06-22"), d("2026-06-28")));
        // On a Sunday, that week is complete.
        let w = period_ending(DigestPeriod::Week, d("2026-06-28"));
        assert_eq!((w.from, w.to), (d("2026-06-22"), d("2026-06-28")));
        let m = period_ending(DigestPeriod::Month, d("2026-06-30"));
        assert_eq!((m.from, m.to), (d("2026-06-01"), d("2026-06-30")));
        let m = period_ending(DigestPeriod::Month, d("2026-03-15"));
        assert_eq!((m.from, m.to), (d("2026-02-01"), d("2026-02-28")));
        let day = period_ending(DigestPeriod::Day, d("2026-03-15"));
        assert_eq!((day.from, day.to), (d("2026-03-15"), d("2026-03-15")));
    }

    fn output() -> Output {
        let p = Period::new(d("2026-06-22"), d("2026-06-28"));
        Output {
            name: "weekly".into(),
            period: p,
            previous_period: p.previous(),
            data_until: d("2026-06-30"),
            kpis: Some(Kpis {
                revenue: Kpi::new(134372.21, 195573.21),
                orders: Kpi::new(381.0, 444.0),
                aov: Kpi::new(352.68, 440.48),
                buyers: Kpi::new(338.0, 387.0),
                forecast: Some(ForecastFor {
                    interval_pct: 80.0,
                    forecast: 139858.04,
                    lower80: 36927.82,
                    upper80: 254407.77,
                    actual_vs_forecast_pct: Some(-3.92),
                    position: "inside",
                    method: "holt-winters".into(),
                }),
                weeks: Vec::new(),
                weeks_ahead: Vec::new(),
                shown: true,
            }),
            reviews: Some(Reviews {
                labelled: 120,
                negative_pct: 30.0,
                previous_labelled: 110,
                previous_negative_pct: 18.18,
                negative_change_pts: 11.82,
                p_value: 0.03,
                sentiment_shift: true,
                topics: vec![TopicShift {
                    topic: "物流".into(),
                    complaints: 53,
                    previous_complaints: 30,
                    change_pct: Some(40.0),
                    p_value: 0.01,
                }],
                negative_reviews: 36,
                shown: true,
            }),
            churn: Some(Churn {
                threshold_pct: 70.0,
                high_value_pct: 20.0,
                high_value_from: 1406.8,
                high_value_customers: 4714,
                crossed: 2,
                alerts: vec![Alert {
                    customer: "00411".into(),
                    churn_probability_pct: 72.3,
                    previous_probability_pct: Some(69.8),
                    total_spent: 64951.2,
                }],
                high_value_above_pct: 57.3,
                base_rate_pct: 84.4,
                customers: 23570,
                shown: true,
            }),
            events: Some(Events {
                days: 28,
                events: vec![Coming {
                    name: "double 11".into(),
                    start: d("2026-11-11"),
                    end: d("2026-11-11"),
                    days_ahead: 136,
                    past_ratio: Some(2.4),
                }],
                shown: true,
            }),
        }
    }

    #[test]
    fn every_figure_of_the_text_is_in_the_output_in_both_languages() {
        let cfg = Config::from_toml_str("").unwrap();
        let o = output();
        let v = serde_json::to_value(&o).unwrap();
        for zh in [true, false] {
            let text = render(&o, &cfg.digest[0], zh);
            let bad = crate::agent::compose::ungrounded_numbers(&text, &v);
            assert!(bad.is_empty(), "{bad:?} in\n{text}");
        }
        let zh = render(&o, &cfg.digest[0], true);
        assert!(zh.contains("物流投诉环比 +40.0%（n=53，上期 30）"), "{zh}");
        assert!(zh.contains("双十一"), "{zh}");
        let en = render(&o, &cfg.digest[0], false);
        assert!(
            en.contains("base rate of 84.4% of all 23570 customers"),
            "{en}"
        );
    }

    #[test]
    fn a_block_below_its_threshold_is_not_written_and_nothing_to_say_is_one_line() {
        let cfg = Config::from_toml_str("").unwrap();
        let mut o = output();
        o.reviews.as_mut().unwrap().shown = false;
        let text = render(&o, &cfg.digest[0], true);
        assert!(!text.contains("【评价】"), "{text}");
        for b in [
            &mut o.kpis.as_mut().unwrap().shown,
            &mut o.churn.as_mut().unwrap().shown,
            &mut o.events.as_mut().unwrap().shown,
        ] {
            *b = false;
        }
        assert!(!o.has_news());
        let text = render(&o, &cfg.digest[0], true);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("一切平稳"), "{text}");
    }
}
