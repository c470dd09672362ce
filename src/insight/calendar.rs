//! The promotion and holiday calendar of Chinese e-commerce, and event effects on daily sales.
//!
//! Built in: Spring Festival (on its lunar dates: the eve and the six days after New Year's Day, when
//! logistics stop), 618 (18 June), Double 11 (11 November) and Double 12 (12 December). A shop adds its own
//! promotions (config `[forecast] promotions`). An event's effect is learned from the series itself: the
//! ratio of sales on its days to a local baseline (the same weekday over the four weeks before). A forecast
//! then removes past event days from the history before fitting the seasonal model, and multiplies future
//! event days by their learned ratio. An event never seen in the history changes nothing (its effect is
//! unknown, and we do not guess).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::InsightError;
use super::ets;
use super::forecast::{Forecast, Method, Selection, auto_forecast_validated, forecast};

/// Lunar New Year's Day, 2000–2035.
const LUNAR_NEW_YEAR: [(i32, u32, u32); 36] = [
    (2000, 2, 5),
    (2001, 1, 24),
    (2002, 2, 12),
    (2003, 2, 1),
    (2004, 1, 22),
    (2005, 2, 9),
    (2006, 1, 29),
    (2007, 2, 18),
    (2008, 2, 7),
    (2009, 1, 26),
    (2010, 2, 14),
    (2011, 2, 3),
    (2012, 1, 23),
    (2013, 2, 10),
    (2014, 1, 31),
    (2015, 2, 19),
    (2016, 2, 8),
    (2017, 1, 28),
    (2018, 2, 16),
    (2019, 2, 5),
    (2020, 1, 25),
    (2021, 2, 12),
    (2022, 2, 1),
    (2023, 1, 22),
    (2024, 2, 10),
    (2025, 1, 29),
    (2026, 2, 17),
    (2027, 2, 6),
    (2028, 1, 26),
    (2029, 2, 13),
    (2030, 2, 3),
    (2031, 1, 23),
    (2032, 2, 11),
    (2033, 1, 31),
    (2034, 2, 19),
    (2035, 2, 8),
];

/// One occurrence of an event, first and last day inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub name: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

#[derive(Debug, Clone, Default)]
pub struct Calendar {
    events: Vec<Event>,
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid calendar date")
}

impl Calendar {
    /// The built-in events for the years the table covers.
    pub fn built_in() -> Self {
        let mut events = Vec::new();
        for (y, m, d) in LUNAR_NEW_YEAR {
            let day = ymd(y, m, d);
            events.push(Event {
                name: "spring festival".into(),
                start: day - Duration::days(1),
                end: day + Duration::days(5),
            });
            for (name, m, d) in [("618", 6, 18), ("double 11", 11, 11), ("double 12", 12, 12)] {
                events.push(Event {
                    name: name.into(),
                    start: ymd(y, m, d),
                    end: ymd(y, m, d),
                });
            }
        }
        Self { events }
    }

    pub fn with(mut self, promotions: &[Event]) -> Self {
        self.events.extend(promotions.iter().cloned());
        self
    }

    /// The event on `day`; a shop's own promotion wins over a built-in event on the same day.
    pub fn event_on(&self, day: NaiveDate) -> Option<&str> {
        self.events
            .iter()
            .rev()
            .find(|e| e.start <= day && day <= e.end)
            .map(|e| e.name.as_str())
    }

    /// Every event occurrence, built-in and the shop's.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Whether the built-in lunar dates cover `year` (2000–2035).
    pub fn covers(year: i32) -> bool {
        LUNAR_NEW_YEAR.iter().any(|(y, _, _)| *y == year)
    }
}

/// An event's learned effect.
#[derive(Debug, Clone, Serialize)]
pub struct EventEffect {
    pub name: String,
    /// The factor applied to the forecast on the event's periods: the learned ratio shrunk towards 1 by
    /// k/(k + 1) for k past occurrences — an effect seen once counts half, one seen nine times 90%.
    pub ratio: f64,
    /// Sales on the event's periods ÷ the local baseline, averaged over its past periods (not shrunk).
    pub learned_ratio: f64,
    /// Separate past occurrences (runs of consecutive event periods) the effect rests on.
    pub past_occurrences: usize,
    /// Past periods (days, or weeks for a weekly series) of the event.
    pub past_days: usize,
    /// Periods of the forecast it applies to.
    pub forecast_days: usize,
}

/// The shrunk factor of a learned `ratio` resting on `occurrences` past occurrences.
pub fn shrunk(ratio: f64, occurrences: usize) -> f64 {
    let k = occurrences as f64;
    1.0 + (ratio - 1.0) * k / (k + 1.0)
}

/// Same weekday over the four weeks before (ignoring other event days); `None` without enough history.
fn baseline(y: &[f64], dates: &[NaiveDate], i: usize, cal: &Calendar) -> Option<f64> {
    let vals: Vec<f64> = (1..=4)
        .filter_map(|w| i.checked_sub(7 * w))
        .filter(|j| cal.event_on(dates[*j]).is_none())
        .map(|j| y[j])
        .collect();
    (vals.len() >= 2).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

/// A daily forecast with event effects.
#[derive(Debug, Clone, Serialize)]
pub struct EventForecast {
    pub forecast: Forecast,
    /// How the model was chosen (on the history with event days taken out), when it was not given.
    pub selection: Option<Selection>,
    pub effects: Vec<EventEffect>,
}

/// Forecasts a daily series `y` (one value per day from `first`) `horizon` days ahead with weekly
/// seasonality, learning and applying the calendar's event effects. Without a `method`, the model is
/// chosen by rolling validation on windows of `validation` days.
pub fn forecast_daily_with_events(
    y: &[f64],
    first: NaiveDate,
    horizon: usize,
    method: Option<Method>,
    validation: usize,
    cal: &Calendar,
) -> Result<EventForecast, InsightError> {
    let dates: Vec<NaiveDate> = (0..y.len() + horizon)
        .map(|i| first + Duration::days(i as i64))
        .collect();
    forecast_with_events(
        y,
        7,
        horizon,
        method,
        validation,
        &|i| cal.event_on(dates[i]),
        &|i| baseline(y, &dates, i, cal),
    )
}

/// Forecasts `y` (season `period`) `horizon` periods ahead with 0/1 event flags (a promotion in a week):
/// each `flags` column covers the history and the horizon. An event's baseline in the history is the
/// mean of the nearest periods without any event, up to two before and two after.
pub fn forecast_with_flags(
    y: &[f64],
    period: usize,
    horizon: usize,
    method: Option<Method>,
    validation: usize,
    flags: &[(String, Vec<bool>)],
) -> Result<EventForecast, InsightError> {
    if flags.iter().any(|(_, f)| f.len() < y.len() + horizon) {
        return Err(InsightError::NoData(
            "an event flag does not cover the history and the horizon",
        ));
    }
    let event_at = |i: usize| -> Option<&str> {
        flags
            .iter()
            .find(|(_, f)| f[i])
            .map(|(name, _)| name.as_str())
    };
    let baseline = |i: usize| -> Option<f64> {
        let vals: Vec<f64> = (i.saturating_sub(2)..=(i + 2).min(y.len() - 1))
            .filter(|j| *j != i && event_at(*j).is_none())
            .map(|j| y[j])
            .collect();
        (vals.len() >= 2).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
    };
    forecast_with_events(y, period, horizon, method, validation, &event_at, &baseline)
}

/// The shared part: learn each event's ratio to its baseline, take event periods out of the history,
/// forecast the cleaned history, scale the future event periods by the shrunk ratio.
fn forecast_with_events<'a>(
    y: &[f64],
    period: usize,
    horizon: usize,
    method: Option<Method>,
    validation: usize,
    event_at: &dyn Fn(usize) -> Option<&'a str>,
    baseline: &dyn Fn(usize) -> Option<f64>,
) -> Result<EventForecast, InsightError> {
    // 1. Learn each event's ratio and take event periods out of the history.
    let mut ratios: BTreeMap<String, (Vec<f64>, usize)> = BTreeMap::new();
    let mut cleaned = y.to_vec();
    for i in 0..y.len() {
        let Some(name) = event_at(i) else {
            continue;
        };
        let new_occurrence = i == 0 || event_at(i - 1) != Some(name);
        let entry = ratios.entry(name.to_string()).or_default();
        if new_occurrence {
            entry.1 += 1;
        }
        if let Some(base) = baseline(i)
            && base > 0.0
        {
            entry.0.push(y[i] / base);
            cleaned[i] = base;
        }
    }
    // 2. The seasonal model on the cleaned history.
    let (selection, mut f) = match method {
        Some(m) => (None, forecast(&cleaned, period, horizon, m)?),
        None => {
            let (sel, f) = auto_forecast_validated(&cleaned, period, horizon, validation)?;
            (Some(sel), f)
        }
    };
    // 3. Future event periods scaled by their shrunk ratio.
    let mut effects: Vec<EventEffect> = ratios
        .into_iter()
        .filter(|(_, (r, _))| !r.is_empty())
        .map(|(name, (r, occurrences))| {
            let learned = r.iter().sum::<f64>() / r.len() as f64;
            EventEffect {
                ratio: shrunk(learned, occurrences),
                learned_ratio: learned,
                past_occurrences: occurrences,
                past_days: r.len(),
                forecast_days: 0,
                name,
            }
        })
        .collect();
    for h in 0..horizon {
        let Some(name) = event_at(y.len() + h) else {
            continue;
        };
        if let Some(e) = effects.iter_mut().find(|e| e.name == name) {
            e.forecast_days += 1;
            for v in f.series_mut() {
                v[h] *= e.ratio;
            }
        }
    }
    Ok(EventForecast {
        forecast: f,
        selection,
        effects,
    })
}

/// Event regressors against the same model without them: from each origin, the history before it is
/// forecast `horizon` periods ahead twice — with the flags' learned effects, and with the model the
/// first run chose fitted on the raw history and no effects — and both are scored on the held-out
/// periods that have an event and on all held-out periods.
#[derive(Debug, Clone, Serialize)]
pub struct PromotionEvaluation {
    pub origins: usize,
    pub event_points: usize,
    pub all_points: usize,
    /// MAPE on held-out event periods: with the effects, without.
    pub event_mape_with: f64,
    pub event_mape_without: f64,
    /// MAPE on all held-out periods: with, without.
    pub all_mape_with: f64,
    pub all_mape_without: f64,
    /// The effects learned at the last origin.
    pub effects: Vec<EventEffect>,
    /// The same comparison for ETS with the flags as regressors fitted jointly (ETSX, the form chosen by
    /// AICc with the flags) against the same form fitted without them: MAPE on event periods and on all.
    pub etsx_event_mape_with: f64,
    pub etsx_event_mape_without: f64,
    pub etsx_all_mape_with: f64,
    pub etsx_all_mape_without: f64,
    /// Origins where ETSX could be fitted, the form at the last one, and its factor per flag.
    pub etsx_origins: usize,
    pub etsx_form: Option<String>,
    pub etsx_factors: Vec<(String, f64)>,
}

pub fn evaluate_flags(
    y: &[f64],
    period: usize,
    horizon: usize,
    origins: &[usize],
    flags: &[(String, Vec<bool>)],
) -> Result<PromotionEvaluation, InsightError> {
    let (mut ev_with, mut ev_without, mut all_with, mut all_without) = (0.0, 0.0, 0.0, 0.0);
    let (mut ev_n, mut all_n) = (0, 0);
    let mut effects = Vec::new();
    let x: Vec<Vec<f64>> = flags
        .iter()
        .map(|(_, f)| f.iter().map(|b| if *b { 1.0 } else { 0.0 }).collect())
        .collect();
    let mut etsx = [0.0f64; 4]; // event with, event without, all with, all without
    let (mut etsx_ev_n, mut etsx_all_n, mut etsx_origins) = (0, 0, 0);
    let (mut etsx_form, mut etsx_factors) = (None, Vec::new());
    for &o in origins {
        if o + horizon > y.len() {
            return Err(InsightError::NoData(
                "an origin leaves less than the horizon",
            ));
        }
        let train = &y[..o];
        let with = forecast_with_flags(train, period, horizon, None, horizon, flags)?;
        let chosen = with
            .selection
            .as_ref()
            .map(|s| s.chosen)
            .unwrap_or(Method::SeasonalNaive);
        let without = if chosen == Method::Combined {
            auto_forecast_validated(train, period, horizon, horizon)?.1
        } else {
            forecast(train, period, horizon, chosen)?
        };
        for h in 0..horizon {
            let a = y[o + h];
            let e_with = ((a - with.forecast.point[h]) / a).abs();
            let e_without = ((a - without.point[h]) / a).abs();
            all_with += e_with;
            all_without += e_without;
            all_n += 1;
            if flags.iter().any(|(_, f)| f[o + h]) {
                ev_with += e_with;
                ev_without += e_without;
                ev_n += 1;
            }
        }
        effects = with.effects;
        // ETSX: the flags as regressors, against the same form without them.
        let x_train: Vec<Vec<f64>> = x.iter().map(|c| c[..o].to_vec()).collect();
        if let Ok(fx) = ets::auto_with(train, period, &x_train)
            && let Ok(f0) = ets::fit_with(train, period, fx.spec, ets::Criterion::Likelihood, &[])
        {
            let px = fx.forecast_with(o, horizon, &x).point;
            let p0 = f0.forecast(o, horizon).point;
            etsx_origins += 1;
            for h in 0..horizon {
                let a = y[o + h];
                let (ew, eo) = (((a - px[h]) / a).abs(), ((a - p0[h]) / a).abs());
                etsx[2] += ew;
                etsx[3] += eo;
                etsx_all_n += 1;
                if flags.iter().any(|(_, f)| f[o + h]) {
                    etsx[0] += ew;
                    etsx[1] += eo;
                    etsx_ev_n += 1;
                }
            }
            etsx_form = Some(fx.spec.name());
            etsx_factors = flags
                .iter()
                .zip(&fx.betas)
                .map(|((n, _), b)| (n.clone(), b.exp()))
                .collect();
        }
    }
    let pct = |s: f64, n: usize| 100.0 * s / n.max(1) as f64;
    Ok(PromotionEvaluation {
        origins: origins.len(),
        event_points: ev_n,
        all_points: all_n,
        event_mape_with: pct(ev_with, ev_n),
        event_mape_without: pct(ev_without, ev_n),
        all_mape_with: pct(all_with, all_n),
        all_mape_without: pct(all_without, all_n),
        effects,
        etsx_event_mape_with: pct(etsx[0], etsx_ev_n),
        etsx_event_mape_without: pct(etsx[1], etsx_ev_n),
        etsx_all_mape_with: pct(etsx[2], etsx_all_n),
        etsx_all_mape_without: pct(etsx[3], etsx_all_n),
        etsx_origins,
        etsx_form,
        etsx_factors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_effect_seen_once_counts_half_and_more_occurrences_count_more() {
        assert_eq!(shrunk(3.0, 1), 2.0);
        assert!((shrunk(3.0, 9) - 2.8).abs() < 1e-12);
        assert_eq!(shrunk(0.5, 1), 0.75);
        assert_eq!(shrunk(3.0, 0), 1.0);
    }

    /// Weekly sales with a yearly season; a promotion every 10th week sells 1.5× its baseline.
    #[test]
    fn a_weekly_promotion_flag_is_learned_from_its_occurrences_and_applied() {
        let n = 130;
        let h = 13;
        let promo: Vec<bool> = (0..n + h).map(|i| i % 10 == 5).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let base = 1000.0 + 200.0 * (i as f64 * std::f64::consts::TAU / 52.0).sin();
                if promo[i] { 1.5 * base } else { base }
            })
            .collect();
        let flags = vec![("promo".to_string(), promo.clone())];
        let with = forecast_with_flags(&y, 52, h, None, h, &flags).unwrap();
        let e = &with.effects[0];
        assert_eq!(e.past_occurrences, 13, "{e:?}");
        assert!((e.learned_ratio - 1.5).abs() < 0.05, "{e:?}");
        assert!((e.ratio - shrunk(e.learned_ratio, 13)).abs() < 1e-12);
        assert_eq!(e.forecast_days, (n..n + h).filter(|i| promo[*i]).count());
        let without = forecast_with_flags(&y, 52, h, None, h, &[]).unwrap();
        for i in 0..h {
            if promo[n + i] {
                // The promotion week is lifted against the forecast of the same history without flags
                // (that one also smooths the promotions into its level, so it sits a little higher).
                assert!(
                    with.forecast.point[i] > 1.3 * without.forecast.point[i] / 1.05,
                    "week {i}: {} vs {}",
                    with.forecast.point[i],
                    without.forecast.point[i]
                );
            }
        }
    }

    #[test]
    fn built_in_events_fall_on_their_days() {
        let cal = Calendar::built_in();
        assert_eq!(cal.event_on(ymd(2025, 11, 11)), Some("double 11"));
        assert_eq!(cal.event_on(ymd(2025, 6, 18)), Some("618"));
        assert_eq!(cal.event_on(ymd(2025, 12, 12)), Some("double 12"));
        // Lunar New Year 2026 is 17 February: the eve to the 5th day after.
        assert_eq!(cal.event_on(ymd(2026, 2, 16)), Some("spring festival"));
        assert_eq!(cal.event_on(ymd(2026, 2, 22)), Some("spring festival"));
        assert_eq!(cal.event_on(ymd(2026, 2, 23)), None);
        assert_eq!(cal.event_on(ymd(2025, 11, 12)), None);
        let promo = Event {
            name: "anniversary sale".into(),
            start: ymd(2025, 11, 10),
            end: ymd(2025, 11, 12),
        };
        assert_eq!(
            Calendar::built_in()
                .with(&[promo])
                .event_on(ymd(2025, 11, 11)),
            Some("anniversary sale")
        );
    }

    /// Two years of daily sales with a weekly pattern; Double 11 sells three times a normal day.
    fn shop(days: usize) -> (Vec<f64>, NaiveDate) {
        let first = ymd(2023, 1, 2);
        let cal = Calendar::built_in();
        let y = (0..days)
            .map(|i| {
                let d = first + Duration::days(i as i64);
                let normal =
                    1000.0 + 0.5 * i as f64 + [0.0, 50.0, 80.0, 60.0, 120.0, 300.0, 250.0][i % 7];
                if cal.event_on(d) == Some("double 11") {
                    3.0 * normal
                } else {
                    normal
                }
            })
            .collect();
        (y, first)
    }

    #[test]
    fn a_learned_event_effect_lifts_the_forecast_on_that_day() {
        let (y, first) = shop(665); // 2023-01-02 .. 2024-10-27
        let cal = Calendar::built_in();
        let horizon = 30; // to 2024-11-26: contains Double 11
        let with = forecast_daily_with_events(
            &y,
            first,
            horizon,
            Some(Method::HoltWintersAdditive),
            horizon,
            &cal,
        )
        .unwrap();
        let without = forecast_daily_with_events(
            &y,
            first,
            horizon,
            Some(Method::HoltWintersAdditive),
            horizon,
            &Calendar::default(),
        )
        .unwrap();
        let idx = (ymd(2024, 11, 11) - (first + Duration::days(665))).num_days() as usize;
        let effect = with.effects.iter().find(|e| e.name == "double 11").unwrap();
        assert_eq!(
            (
                effect.past_occurrences,
                effect.past_days,
                effect.forecast_days
            ),
            (1, 1, 1)
        );
        assert!((effect.learned_ratio - 3.0).abs() < 0.3, "{effect:?}");
        // Seen once: half its effect.
        assert!((effect.ratio - shrunk(effect.learned_ratio, 1)).abs() < 1e-12);
        assert!((effect.ratio - 2.0).abs() < 0.15, "{effect:?}");
        let lift = with.forecast.point[idx] / without.forecast.point[idx];
        assert!(lift > 1.8, "lift {lift}");
        // Ordinary days are left as they were (up to the cleaned history's small influence).
        let other = with.forecast.point[idx + 3] / without.forecast.point[idx + 3];
        assert!((other - 1.0).abs() < 0.05, "{other}");
    }
}
