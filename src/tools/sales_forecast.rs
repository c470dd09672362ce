//! `sales_forecast`: daily, weekly or monthly sales totals ahead, with 80%/95% intervals, optionally for
//! one product or category, with holidays and promotions (`[forecast]`) on or off. The same computation
//! as `dongcha insight forecast`.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, Months, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, ToolError, round2};
use crate::config::Config;
use crate::insight::calendar::{self, Calendar, EventEffect};
use crate::insight::forecast::{self, Method, Selection};
use crate::insight::rfm::Purchase;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Freq {
    #[default]
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Days ahead (resolved from the question, e.g. "next month"; default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_days: Option<u32>,
    /// Only this product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Only this category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Model holidays and promotions (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub period: NaiveDate,
    pub forecast: f64,
    pub lower80: f64,
    pub upper80: f64,
    pub lower95: f64,
    pub upper95: f64,
}

/// A sales forecast as `dongcha insight forecast` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct SalesForecast {
    pub freq: Freq,
    pub method: Method,
    pub selection: Option<Selection>,
    pub history: usize,
    pub last: NaiveDate,
    pub event_effects: Vec<EventEffect>,
    pub forecast: Vec<Step>,
}

/// Forecasts `purchases` totals per `freq` bucket, `horizon` buckets ahead.
pub fn compute(
    cfg: &Config,
    purchases: &[Purchase],
    freq: Freq,
    horizon: usize,
    method: Option<Method>,
    events: bool,
) -> Result<SalesForecast, ToolError> {
    let (period, bucket): (usize, fn(NaiveDate) -> NaiveDate) = match freq {
        Freq::Day => (7, |d| d),
        Freq::Week => (52, |d| {
            d - Duration::days(d.weekday().num_days_from_monday() as i64)
        }),
        Freq::Month => (12, |d| d.with_day(1).expect("first of month")),
    };
    let mut totals = BTreeMap::new();
    for p in purchases {
        *totals.entry(bucket(p.date)).or_insert(0.0) += p.amount;
    }
    let (Some(first), Some(last)) = (totals.keys().next().copied(), totals.keys().last().copied())
    else {
        return Err(ToolError::NoData(
            "the store has no purchases: run `dongcha setup --demo` or `dongcha ingest` first"
                .into(),
        ));
    };
    let next = |d: NaiveDate, i: u32| -> NaiveDate {
        match freq {
            Freq::Day => d + Duration::days(i as i64),
            Freq::Week => d + Duration::days(7 * i as i64),
            Freq::Month => d.checked_add_months(Months::new(i)).expect("date"),
        }
    };
    // Every bucket from the first to the last, empty ones as 0.
    let mut dates = Vec::new();
    let mut d = first;
    while d <= last {
        dates.push(d);
        d = next(d, 1);
    }
    let y: Vec<f64> = dates
        .iter()
        .map(|d| totals.get(d).copied().unwrap_or(0.0))
        .collect();
    let events = freq == Freq::Day
        && events
        && (cfg.forecast.holidays || !cfg.forecast.promotions.is_empty());
    let mut effects = Vec::new();
    let (selection, f) = if events {
        let cal = if cfg.forecast.holidays {
            Calendar::built_in()
        } else {
            Calendar::default()
        }
        .with(&cfg.forecast.promotions);
        let ef = calendar::forecast_daily_with_events(&y, first, horizon, method, &cal)?;
        effects = ef.effects;
        (ef.selection, ef.forecast)
    } else {
        match method {
            Some(m) => (None, forecast::forecast(&y, period, horizon, m)?),
            None => {
                let (sel, f) = forecast::auto_forecast(&y, period, horizon)?;
                (Some(sel), f)
            }
        }
    };
    let forecast = (0..horizon)
        .map(|i| Step {
            period: next(last, i as u32 + 1),
            forecast: round2(f.point[i]),
            lower80: round2(f.lower80[i]),
            upper80: round2(f.upper80[i]),
            lower95: round2(f.lower95[i]),
            upper95: round2(f.upper95[i]),
        })
        .collect();
    Ok(SalesForecast {
        freq,
        method: f.method,
        selection,
        history: y.len(),
        last,
        event_effects: effects,
        forecast,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub horizon_days: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub events: bool,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Sum of the daily point forecasts.
    pub total: f64,
    /// Actual sales of the same number of days just before the forecast.
    pub previous_total: f64,
    pub change_pct: Option<f64>,
    pub method: String,
    pub event_effects: Vec<EventEffect>,
    pub daily: Vec<Step>,
    /// Daily totals of the last 12 weeks before the forecast (what a chart draws before the forecast).
    pub recent: Vec<DayTotal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayTotal {
    pub day: NaiveDate,
    pub total: f64,
}

/// Daily totals of `purchases` over the `days` days ending on `last` (days without sales are 0).
fn recent_totals(purchases: &[Purchase], last: NaiveDate, days: i64) -> Vec<DayTotal> {
    let first = last - Duration::days(days - 1);
    let mut totals = vec![0.0; days as usize];
    for p in purchases {
        if p.date >= first && p.date <= last {
            totals[(p.date - first).num_days() as usize] += p.amount;
        }
    }
    totals
        .into_iter()
        .enumerate()
        .map(|(i, t)| DayTotal {
            day: first + Duration::days(i as i64),
            total: round2(t),
        })
        .collect()
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let horizon = args.horizon_days.unwrap_or(30).clamp(1, 366);
    let events = args.events.unwrap_or(true);
    let product = ctx
        .find_product_opt(args.product.as_deref())
        .await?
        .map(|p| p.1);
    let purchases = ctx
        .store
        .sales(product.as_deref(), args.category.as_deref())
        .await?;
    if purchases.is_empty() && args.category.is_some() {
        return Err(ToolError::NotFound("no sales in that category".into()));
    }
    let cfg = ctx.cfg.clone();
    let f = tokio::task::block_in_place(|| {
        compute(&cfg, &purchases, Freq::Day, horizon as usize, None, events)
    })?;
    let total = round2(f.forecast.iter().map(|s| s.forecast).sum());
    let since = f.last - Duration::days(horizon as i64 - 1);
    let previous_total = round2(
        purchases
            .iter()
            .filter(|p| p.date >= since && p.date <= f.last)
            .map(|p| p.amount)
            .sum(),
    );
    Ok(Output {
        horizon_days: horizon,
        product,
        category: args.category,
        events,
        from: f.forecast.first().map(|s| s.period).unwrap_or(f.last),
        to: f.forecast.last().map(|s| s.period).unwrap_or(f.last),
        total,
        previous_total,
        change_pct: (previous_total > 0.0)
            .then(|| super::round4((total - previous_total) / previous_total * 100.0)),
        method: f.method.name().to_string(),
        event_effects: f.event_effects,
        daily: f.forecast,
        recent: recent_totals(&purchases, f.last, 84),
    })
}
