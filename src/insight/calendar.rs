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
    /// Sales on the event's days ÷ the local baseline, averaged over its past days.
    pub ratio: f64,
    pub past_days: usize,
    /// Days of the forecast it applies to.
    pub forecast_days: usize,
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
    // 1. Learn each event's ratio and take event days out of the history.
    let mut ratios: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut cleaned = y.to_vec();
    for i in 0..y.len() {
        if let Some(name) = cal.event_on(dates[i])
            && let Some(base) = baseline(y, &dates, i, cal)
            && base > 0.0
        {
            ratios
                .entry(name.to_string())
                .or_default()
                .push(y[i] / base);
            cleaned[i] = base;
        }
    }
    // 2. The seasonal model on the cleaned history.
    let (selection, mut f) = match method {
        Some(m) => (None, forecast(&cleaned, 7, horizon, m)?),
        None => {
            let (sel, f) = auto_forecast_validated(&cleaned, 7, horizon, validation)?;
            (Some(sel), f)
        }
    };
    // 3. Future event days scaled by their learned ratio.
    let mut effects: Vec<EventEffect> = ratios
        .into_iter()
        .map(|(name, r)| EventEffect {
            ratio: r.iter().sum::<f64>() / r.len() as f64,
            past_days: r.len(),
            forecast_days: 0,
            name,
        })
        .collect();
    for h in 0..horizon {
        let day = dates[y.len() + h];
        let Some(name) = cal.event_on(day) else {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!((effect.past_days, effect.forecast_days), (1, 1));
        assert!((effect.ratio - 3.0).abs() < 0.3, "{effect:?}");
        let lift = with.forecast.point[idx] / without.forecast.point[idx];
        assert!(lift > 2.5, "lift {lift}");
        // Ordinary days are left as they were (up to the cleaned history's small influence).
        let other = with.forecast.point[idx + 3] / without.forecast.point[idx + 3];
        assert!((other - 1.0).abs() < 0.05, "{other}");
    }
}
