//! When a digest runs: a cron expression (the `cron` crate; no hand-written parser) read in an IANA time
//! zone (`chrono-tz`). Pure: every question takes the clock as an argument, so tests move time.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("not a cron expression ({0}); e.g. \"0 9 * * Mon\" for Mondays at 09:00")]
    Cron(String),
    #[error(
        "write days of the week by name (Mon, Tue, … Sun): cron dialects disagree on what the numbers mean"
    )]
    NumericWeekday,
    #[error("unknown time zone {0:?} (an IANA name, e.g. \"Asia/Shanghai\")")]
    Zone(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: cron::Schedule,
    pub zone: Tz,
}

impl Schedule {
    /// Five fields (minute hour day-of-month month day-of-week, as crontab) or six/seven (with seconds
    /// first, and a year last).
    pub fn parse(expr: &str, zone: &str) -> Result<Self, ScheduleError> {
        let zone = Tz::from_str(zone.trim()).map_err(|_| ScheduleError::Zone(zone.to_string()))?;
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let weekday = match fields.len() {
            5 => fields[4],
            6 | 7 => fields[5],
            _ => {
                return Err(ScheduleError::Cron(format!(
                    "{} fields; it takes 5 (minute hour day month weekday) or 6–7 with seconds first",
                    fields.len()
                )));
            }
        };
        if weekday.chars().any(|c| c.is_ascii_digit()) {
            return Err(ScheduleError::NumericWeekday);
        }
        let full = if fields.len() == 5 {
            format!("0 {}", fields.join(" "))
        } else {
            fields.join(" ")
        };
        let cron =
            cron::Schedule::from_str(&full).map_err(|e| ScheduleError::Cron(e.to_string()))?;
        Ok(Self { cron, zone })
    }

    /// The first run strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&t.with_timezone(&self.zone))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest run in (`after`, `now`], if the schedule had one: after downtime this is the one run
    /// to make up for, however many were missed.
    pub fn latest_due(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&after.with_timezone(&self.zone))
            .map(|d| d.with_timezone(&Utc))
            .take_while(|d| *d <= now)
            .last()
    }

    /// The local calendar day of a run.
    pub fn local_day(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.zone).date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn mondays_at_nine_in_shanghai_fire_at_one_utc_on_mondays_only() {
        let s = Schedule::parse("0 9 * * Mon", "Asia/Shanghai").unwrap();
        // 2026-11-30 is a Monday; 09:00 in Shanghai (UTC+8) is 01:00 UTC.
        let from = utc("2026-11-26T00:00:00Z");
        assert_eq!(s.next_after(from), Some(utc("2026-11-30T01:00:00Z")));
        assert_eq!(
            s.next_after(utc("2026-11-30T01:00:00Z")),
            Some(utc("2026-12-07T01:00:00Z"))
        );
        // Nothing due on the days between, nor at 09:00 UTC on the Monday.
        assert_eq!(
            s.latest_due(utc("2026-11-30T01:00:00Z"), utc("2026-12-06T23:59:59Z")),
            None
        );
        assert_eq!(
            s.latest_due(utc("2026-11-29T00:00:00Z"), utc("2026-11-30T00:59:59Z")),
            None
        );
        assert_eq!(
            s.latest_due(utc("2026-11-29T00:00:00Z"), utc("2026-11-30T01:00:00Z")),
            Some(utc("2026-11-30T01:00:00Z"))
        );
        assert_eq!(
            s.local_day(utc("2026-11-30T01:00:00Z")),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
        );
    }

    #[test]
    fn missed_runs_after_downtime_are_one_run_the_latest() {
        let s = Schedule::parse("0 9 * * Mon,Thu", "Asia/Shanghai").unwrap();
        // Down from Sunday to the next Friday: Monday's and Thursday's runs were missed.
        let due = s.latest_due(utc("2026-11-29T00:00:00Z"), utc("2026-12-04T12:00:00Z"));
        assert_eq!(due, Some(utc("2026-12-03T01:00:00Z")));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert!(matches!(
            Schedule::parse("0 9 * * 1", "Asia/Shanghai"),
            Err(ScheduleError::NumericWeekday)
        ));
        assert!(matches!(
            Schedule::parse("0 9 * * Mon", "Mars/Olympus"),
            Err(ScheduleError::Zone(_))
        ));
        assert!(matches!(
            Schedule::parse("every monday", "UTC"),
            Err(ScheduleError::Cron(_))
        ));
        assert!(matches!(
            Schedule::parse("0 61 * * Mon", "UTC"),
            Err(ScheduleError::Cron(_))
        ));
        // Seconds first works too.
        assert!(Schedule::parse("30 0 9 * * Mon-Fri", "Europe/Berlin").is_ok());
    }
}
