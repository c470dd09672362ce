//! `sales_forecast`: daily, weekly or monthly sales totals ahead, with 80%/95% intervals, optionally for
//! one product or category, with holidays and promotions (`[forecast]`) on or off. The same computation
//! as `dongcha insight forecast`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, Duration, Months, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Context, Said, ToolError, round2};
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
    /// The holiday or promotion whose learned effect this day's figures carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
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

/// Days of each validation window when a daily model is chosen, whatever the horizon asked: the choice,
/// and so every day's figure, does not depend on how far ahead the question looks.
pub const DAILY_VALIDATION_DAYS: usize = 30;

/// How far ahead the shared daily forecast of a scope reaches (the longest horizon a question may ask).
pub const SHARED_HORIZON_DAYS: usize = 366;

impl SalesForecast {
    /// The first `horizon` steps (a forecast made further ahead, cut: the figures are those of a
    /// forecast made for `horizon`, see [`DAILY_VALIDATION_DAYS`]).
    pub fn first(&self, horizon: usize) -> SalesForecast {
        let mut f = self.clone();
        f.forecast.truncate(horizon);
        for e in &mut f.event_effects {
            e.forecast_days = f
                .forecast
                .iter()
                .filter(|s| s.event.as_deref() == Some(e.name.as_str()))
                .count();
        }
        f
    }
}

/// Forecasts `purchases` totals per `freq` bucket, `horizon` buckets ahead (daily: the model chosen on
/// [`DAILY_VALIDATION_DAYS`]-day windows; weekly and monthly: on windows as long as the horizon).
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
        return Err(ToolError::no_purchases());
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
    let mut effects: Vec<EventEffect> = Vec::new();
    let cal = events.then(|| {
        if cfg.forecast.holidays {
            Calendar::built_in()
        } else {
            Calendar::default()
        }
        .with(&cfg.forecast.promotions)
    });
    let (selection, f) = if let Some(cal) = &cal {
        let ef = calendar::forecast_daily_with_events(
            &y,
            first,
            horizon,
            method,
            DAILY_VALIDATION_DAYS,
            cal,
        )?;
        effects = ef.effects;
        (ef.selection, ef.forecast)
    } else {
        match method {
            Some(m) => (None, forecast::forecast(&y, period, horizon, m)?),
            None => {
                let validation = if freq == Freq::Day {
                    DAILY_VALIDATION_DAYS
                } else {
                    horizon
                };
                let (sel, f) = forecast::auto_forecast_validated(&y, period, horizon, validation)?;
                (Some(sel), f)
            }
        }
    };
    let forecast = (0..horizon)
        .map(|i| next(last, i as u32 + 1))
        .enumerate()
        .map(|(i, period)| Step {
            event: cal
                .as_ref()
                .and_then(|c| c.event_on(period))
                .filter(|name| effects.iter().any(|e| e.name == *name))
                .map(str::to_string),
            period,
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
    /// The model's mean error (MAPE, or WAPE where a day had no sales) on the last
    /// `validation_windows` windows of `validation_days` days of the scope's own history, forecast
    /// from what came before each; absent when the model was given rather than chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_error_pct: Option<f64>,
    pub validation_windows: usize,
    pub validation_days: usize,
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

/// A scope's daily forecast, computed once per context (data version) at [`SHARED_HORIZON_DAYS`] and
/// cut to each question's horizon, with the scope's actual daily totals of the year before it.
pub struct Shared {
    pub forecast: SalesForecast,
    /// Actual sales per day over the [`SHARED_HORIZON_DAYS`] days ending on `forecast.last`.
    pub actual: Vec<f64>,
}

impl Shared {
    /// Actual sales of the last `days` days of the history.
    fn actual_total(&self, days: usize) -> f64 {
        self.actual.iter().rev().take(days).sum()
    }

    /// The last `days` days of the history as day totals.
    fn recent(&self, days: usize) -> Vec<DayTotal> {
        let n = self.actual.len();
        let first = self.forecast.last - Duration::days(n as i64 - 1);
        (n.saturating_sub(days)..n)
            .map(|i| DayTotal {
                day: first + Duration::days(i as i64),
                total: round2(self.actual[i]),
            })
            .collect()
    }
}

/// The shared daily forecast of the whole shop, a product (its catalogue name) or a category, with
/// holidays and promotions on or off: fitted on the first question that needs it, then reused.
pub async fn shared(
    ctx: &Context,
    product: Option<&str>,
    category: Option<&str>,
    events: bool,
) -> Result<Arc<Shared>, ToolError> {
    let key = format!("{product:?} {category:?} {events}");
    let cell = ctx
        .forecasts
        .lock()
        .expect("forecasts lock")
        .entry(key)
        .or_default()
        .clone();
    cell.get_or_try_init(|| async {
        let purchases = ctx.store.sales(product, category).await?;
        if purchases.is_empty() && category.is_some() {
            return Err(ToolError::NotFound(Said {
                en: "no sales in that category".into(),
                zh: "这个品类没有销售记录".into(),
            }));
        }
        let cfg = ctx.cfg.clone();
        let forecast = tokio::task::block_in_place(|| {
            compute(
                &cfg,
                &purchases,
                Freq::Day,
                SHARED_HORIZON_DAYS,
                None,
                events,
            )
        })?;
        let n = SHARED_HORIZON_DAYS;
        let first = forecast.last - Duration::days(n as i64 - 1);
        let mut actual = vec![0.0; n];
        for p in &purchases {
            if p.date >= first && p.date <= forecast.last {
                actual[(p.date - first).num_days() as usize] += p.amount;
            }
        }
        Ok(Arc::new(Shared { forecast, actual }))
    })
    .await
    .cloned()
}

pub async fn run(ctx: &Context, args: Args) -> Result<Output, ToolError> {
    let horizon = args
        .horizon_days
        .unwrap_or(30)
        .clamp(1, SHARED_HORIZON_DAYS as u32);
    let events = args.events.unwrap_or(true);
    let product = ctx
        .find_product_opt(args.product.as_deref())
        .await?
        .map(|p| p.1);
    let shared = shared(ctx, product.as_deref(), args.category.as_deref(), events).await?;
    let f = shared.forecast.first(horizon as usize);
    let total = round2(f.forecast.iter().map(|s| s.forecast).sum());
    let previous_total = round2(shared.actual_total(horizon as usize));
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
        validation_error_pct: f
            .selection
            .as_ref()
            .and_then(|s| s.chosen_error())
            .map(round2),
        validation_windows: f.selection.as_ref().map_or(0, |s| s.validation_windows),
        validation_days: DAILY_VALIDATION_DAYS,
        event_effects: f.event_effects,
        daily: f.forecast,
        recent: shared.recent(84),
    })
}

/// The reply for this tool's output, in the asker's language; every figure is the output's.
pub fn render(out: &serde_json::Value, zh: bool) -> String {
    use super::render::*;
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    let scope = out
        .get("product")
        .or(out.get("category"))
        .map(|p| format!(" ({})", s(p)))
        .unwrap_or_default();
    let change = out["change_pct"]
        .as_f64()
        .map(|c| {
            t(
                format!("，比之前同样天数 {}", signed_pct(c)),
                format!(", {} on the same number of days before", signed_pct(c)),
            )
        })
        .unwrap_or_default();
    let events = list(&out["event_effects"], |e| {
        let n = e["past_occurrences"].as_u64().unwrap_or(0);
        if zh {
            format!(
                "{} x{:.2}（依据过去 {n} 次）",
                tr(&e["name"], zh),
                num(&e["ratio"])
            )
        } else {
            format!(
                "{} x{:.2} (from {n} past occurrence{})",
                tr(&e["name"], zh),
                num(&e["ratio"]),
                if n == 1 { "" } else { "s" }
            )
        }
    });
    let ev = if events.is_empty() {
        String::new()
    } else {
        t(
            format!("\n计入的节日/促销效应：{}", events.join("，")),
            format!("\nHolidays/promotions modelled: {}", events.join(", ")),
        )
    };
    let checked = match out.get("validation_error_pct").and_then(|v| v.as_f64()) {
        Some(err) => t(
            format!(
                "，在本店最近 {} 段各 {} 天的历史上平均误差 {err:.1}%",
                out["validation_windows"], out["validation_days"]
            ),
            format!(
                ", off by {err:.1}% on average over the last {} windows of {} days of this history",
                out["validation_windows"], out["validation_days"]
            ),
        ),
        None => String::new(),
    };
    t(
        format!(
            "预测{scope} {} 至 {}（{} 天）销售额合计 {}{change}，模型 {}{checked}。{ev}",
            s(&out["from"]),
            s(&out["to"]),
            out["horizon_days"],
            money(num(&out["total"])),
            tr(&out["method"], true)
        ),
        format!(
            "Forecast{scope} for {} to {} ({} days): {} in total{change}; model {}{checked}.{ev}",
            s(&out["from"]),
            s(&out["to"]),
            out["horizon_days"],
            money(num(&out["total"])),
            tr(&out["method"], false)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daily series with a weekly pattern, a trend and Double 11 peaks, over two years.
    fn purchases() -> Vec<Purchase> {
        let first = NaiveDate::from_ymd_opt(2024, 7, 1).unwrap();
        (0..730)
            .map(|i| {
                let date = first + Duration::days(i);
                let weekly = [1.0, 0.9, 0.95, 1.0, 1.2, 1.5, 1.4]
                    [date.weekday().num_days_from_monday() as usize];
                let peak = if date.month() == 11 && date.day() == 11 {
                    3.0
                } else {
                    1.0
                };
                Purchase {
                    customer: (i % 50) as u32,
                    date,
                    amount: (1000.0 + i as f64) * weekly * peak + ((i * 37) % 11) as f64 * 20.0,
                }
            })
            .collect()
    }

    #[test]
    fn the_reply_says_how_well_the_chosen_model_did_on_the_history() {
        let cfg = Config::load(None).unwrap();
        let f = compute(&cfg, &purchases(), Freq::Day, 30, None, true).unwrap();
        let sel = f.selection.as_ref().expect("chosen, not given");
        // The reply shows the tool's figure (two decimals) to one decimal.
        let err = round2(sel.chosen_error().unwrap());
        assert_eq!(sel.validation_windows, 3);
        let mut out = serde_json::json!({
            "from": "2026-07-01", "to": "2026-07-30", "horizon_days": 30, "total": 1000.0,
            "previous_total": 0.0, "method": f.method.name(), "event_effects": [],
            "validation_error_pct": err, "validation_windows": 3, "validation_days": 30,
        });
        let en = render(&out, false);
        assert!(
            en.contains(&format!(
                "; model {}, off by {err:.1}% on average over the last 3 windows of 30 days",
                f.method.name()
            )),
            "{en}"
        );
        let zh = render(&out, true);
        assert!(
            zh.contains(&format!(
                "在本店最近 3 段各 30 天的历史上平均误差 {err:.1}%"
            )),
            "{zh}"
        );
        // A model given rather than chosen has no such figure, and the reply claims none.
        out.as_object_mut().unwrap().remove("validation_error_pct");
        assert!(!render(&out, false).contains("off by"));
    }

    #[test]
    fn a_short_daily_forecast_is_the_start_of_the_long_one() {
        let cfg = Config::load(None).unwrap();
        let p = purchases();
        let long = compute(&cfg, &p, Freq::Day, SHARED_HORIZON_DAYS, None, true).unwrap();
        for h in [7, 30, 200] {
            let short = compute(&cfg, &p, Freq::Day, h, None, true).unwrap();
            let cut = long.first(h);
            assert_eq!(
                serde_json::to_value(&short).unwrap(),
                serde_json::to_value(&cut).unwrap(),
                "horizon {h}"
            );
        }
        // Double 11 lies 133 days after the history: counted in the 200-day cut, not in the 30-day one.
        let d11 = |f: &SalesForecast| {
            f.event_effects
                .iter()
                .find(|e| e.name == "double 11")
                .map(|e| e.forecast_days)
        };
        assert_eq!(d11(&long.first(200)), Some(1));
        assert_eq!(d11(&long.first(30)), Some(0));
    }
}
