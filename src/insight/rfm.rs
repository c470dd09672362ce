//! Customer features as of a date: frequency, recency, age and monetary value, exactly as lifetimes'
//! `summary_data_from_transaction_data` computes them, so the probability models below see the same
//! numbers as the published references.
//!
//! Definitions (one "period" is `period_days` days, e.g. 7 for weeks):
//! - purchases after the cut-off are ignored; purchases on one day count as one purchase occasion (their
//!   amounts are summed);
//! - frequency = purchase days − 1 (repeat purchases);
//! - recency = (last purchase day − first purchase day) / period;
//! - T (age) = (cut-off − first purchase day) / period;
//! - monetary value = mean amount of the repeat purchase days (0 without repeats).

use chrono::NaiveDate;

/// One purchase: a customer (an index into the caller's list of ids), a day and the amount paid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Purchase {
    pub customer: u32,
    pub date: NaiveDate,
    pub amount: f64,
}

/// A customer's features as of the cut-off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerSummary {
    pub customer: u32,
    /// Repeat purchase days.
    pub frequency: f64,
    /// Periods between the first and the last purchase day.
    pub recency: f64,
    /// Periods between the first purchase day and the cut-off.
    pub t: f64,
    /// Mean amount of the repeat purchase days.
    pub monetary_value: f64,
    pub first_purchase: NaiveDate,
    pub last_purchase: NaiveDate,
    /// Everything the customer spent up to the cut-off.
    pub total_spent: f64,
}

impl CustomerSummary {
    /// Repeat purchases per period of the customer's age (0 for a customer first seen on the cut-off day).
    pub fn repeat_rate(&self) -> f64 {
        if self.t > 0.0 {
            self.frequency / self.t
        } else {
            0.0
        }
    }

    /// Periods since the last purchase.
    pub fn periods_since_last(&self) -> f64 {
        self.t - self.recency
    }
}

/// What a customer's reviews and posts say, from `dongcha enrich` (absent for customers who wrote none).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct TextFeatures {
    /// Reviews and posts labelled.
    pub texts: u32,
    /// Mean P(positive) of the sentiment head.
    pub mean_sentiment: f64,
    pub negative_share: f64,
    pub buy_share: f64,
    pub abandon_share: f64,
    pub wait_share: f64,
}

/// Summarises `purchases` as of `cutoff` (inclusive). The result is sorted by customer; customers with
/// no purchase on or before the cut-off are left out.
pub fn summarize(
    purchases: &[Purchase],
    cutoff: NaiveDate,
    period_days: f64,
) -> Vec<CustomerSummary> {
    let mut rows: Vec<&Purchase> = purchases.iter().filter(|p| p.date <= cutoff).collect();
    rows.sort_by_key(|p| (p.customer, p.date));
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let customer = rows[i].customer;
        // Day totals of this customer, in date order.
        let mut days: Vec<(NaiveDate, f64)> = Vec::new();
        while i < rows.len() && rows[i].customer == customer {
            let p = rows[i];
            match days.last_mut() {
                Some((d, total)) if *d == p.date => *total += p.amount,
                _ => days.push((p.date, p.amount)),
            }
            i += 1;
        }
        let first = days[0].0;
        let last = days[days.len() - 1].0;
        let frequency = (days.len() - 1) as f64;
        let repeat_total: f64 = days[1..].iter().map(|(_, a)| a).sum();
        out.push(CustomerSummary {
            customer,
            frequency,
            recency: (last - first).num_days() as f64 / period_days,
            t: (cutoff - first).num_days() as f64 / period_days,
            monetary_value: if frequency > 0.0 {
                repeat_total / frequency
            } else {
                0.0
            },
            first_purchase: first,
            last_purchase: last,
            total_spent: days.iter().map(|(_, a)| a).sum(),
        });
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
    fn same_day_purchases_are_one_occasion_and_later_ones_are_ignored() {
        let p = |c, s: &str, a| Purchase {
            customer: c,
            date: d(s),
            amount: a,
        };
        let rows = summarize(
            &[
                p(1, "1997-01-01", 10.0),
                p(1, "1997-01-18", 5.0),
                p(1, "1997-01-18", 7.0),
                p(1, "1997-08-02", 30.0),
                p(1, "1997-12-01", 99.0),
                p(2, "1997-09-30", 4.0),
                p(3, "1997-10-01", 4.0),
            ],
            d("1997-09-30"),
            7.0,
        );
        assert_eq!(rows.len(), 2);
        let a = rows[0];
        assert_eq!(a.frequency, 2.0);
        assert!((a.recency - 213.0 / 7.0).abs() < 1e-12);
        assert!((a.t - 272.0 / 7.0).abs() < 1e-12);
        assert_eq!(a.monetary_value, 21.0);
        assert_eq!(a.total_spent, 52.0);
        let b = rows[1];
        assert_eq!(
            (b.frequency, b.recency, b.t, b.monetary_value),
            (0.0, 0.0, 0.0, 0.0)
        );
        assert_eq!(b.repeat_rate(), 0.0);
    }
}
