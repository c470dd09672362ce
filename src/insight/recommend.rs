//! Decisions as data: which products to recommend to a customer or a segment (co-purchase lift), and whom
//! to target for a promotion goal with which incentive — every figure taken from the models (BG/NBD,
//! Gamma-Gamma CLV), nothing assumed.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::bgnbd::BgNbd;
use super::clv::{GammaGamma, lifetime_value};
use super::rfm::CustomerSummary;

/// Item-to-item co-purchase statistics over customers' product sets.
pub struct CoPurchase {
    /// Customers who bought each product.
    buyers: Vec<usize>,
    /// Customers who bought both, by (a, b) with a < b.
    both: HashMap<(u32, u32), usize>,
    customers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub product: u32,
    /// Σ over the products the customers already bought of lift(bought, this) = P(both) / (P(a)·P(b)).
    pub score: f64,
    /// How many of those customers' products point to it.
    pub because_of: usize,
    /// Share of the reviews most like these customers' own reviews that praise this product (0 when
    /// review interest was not used).
    pub interest: f64,
    /// What the list is ranked by: `score` scaled to the best co-purchase score (0..1) plus `interest`.
    pub combined: f64,
}

impl CoPurchase {
    /// `baskets[c]` = the products customer `c` bought (product indices below `products`).
    pub fn new(baskets: &[Vec<u32>], products: usize) -> Self {
        let mut buyers = vec![0usize; products];
        let mut both = HashMap::new();
        for b in baskets {
            let set: Vec<u32> = {
                let mut s: Vec<u32> = b
                    .iter()
                    .copied()
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                s.sort_unstable();
                s
            };
            for (i, p) in set.iter().enumerate() {
                buyers[*p as usize] += 1;
                for q in &set[i + 1..] {
                    *both.entry((*p, *q)).or_insert(0) += 1;
                }
            }
        }
        Self {
            buyers,
            both,
            customers: baskets.len(),
        }
    }

    fn lift(&self, a: u32, b: u32) -> f64 {
        let key = if a < b { (a, b) } else { (b, a) };
        let n = self.customers as f64;
        let both = *self.both.get(&key).unwrap_or(&0) as f64;
        let (pa, pb) = (
            self.buyers[a as usize] as f64 / n,
            self.buyers[b as usize] as f64 / n,
        );
        if both == 0.0 || pa == 0.0 || pb == 0.0 {
            0.0
        } else {
            (both / n) / (pa * pb)
        }
    }

    /// Products to recommend to someone who bought `owned` (not already owned), best first. Only products
    /// bought together more often than chance (lift > 1) count.
    pub fn recommend(&self, owned: &HashSet<u32>, top: usize) -> Vec<Recommendation> {
        let mut out: Vec<Recommendation> = (0..self.buyers.len() as u32)
            .filter(|p| !owned.contains(p) && self.buyers[*p as usize] > 0)
            .filter_map(|p| {
                let lifts: Vec<f64> = owned
                    .iter()
                    .map(|o| self.lift(*o, p))
                    .filter(|l| *l > 1.0)
                    .collect();
                (!lifts.is_empty()).then(|| Recommendation {
                    product: p,
                    score: lifts.iter().map(|l| l - 1.0).sum(),
                    because_of: lifts.len(),
                    interest: 0.0,
                    combined: 0.0,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.product.cmp(&b.product))
        });
        let best = out.first().map_or(1.0, |r| r.score.max(1e-12));
        for r in &mut out {
            r.combined = r.score / best;
        }
        out.truncate(top);
        out
    }

    /// Co-purchase recommendations blended with review interest (`interest[p]` = share of the reviews most
    /// like the customers' own that praise product `p`): a product qualifies by either signal; ranked by
    /// co-purchase score scaled to the best (0..1) plus the interest share.
    pub fn recommend_with_interest(
        &self,
        owned: &HashSet<u32>,
        interest: &HashMap<u32, f64>,
        top: usize,
    ) -> Vec<Recommendation> {
        let mut out = self.recommend(owned, usize::MAX);
        for r in &mut out {
            r.interest = interest.get(&r.product).copied().unwrap_or(0.0);
            r.combined += r.interest;
        }
        for (p, share) in interest {
            if !owned.contains(p) && *share > 0.0 && !out.iter().any(|r| r.product == *p) {
                out.push(Recommendation {
                    product: *p,
                    score: 0.0,
                    because_of: 0,
                    interest: *share,
                    combined: *share,
                });
            }
        }
        out.sort_by(|a, b| {
            b.combined
                .total_cmp(&a.combined)
                .then_with(|| a.product.cmp(&b.product))
        });
        out.truncate(top);
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    /// Valuable customers whose chance of still being active is slipping.
    Retain,
    /// Customers who have gone quiet but whom the model still thinks may be alive.
    Reactivate,
    /// Active, frequent customers with room to spend more per order.
    Upsell,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub customer: u32,
    pub goal: Goal,
    pub incentive: &'static str,
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub expected_order_value: f64,
    pub clv: f64,
    /// What the goal is about, in money: retain — CLV × (1 − P(alive)), the value the model expects to lose;
    /// reactivate — past spend per purchase day × P(alive), the value of one return; upsell — CLV.
    pub value_at_stake: f64,
}

/// The terms of a lifetime-value figure.
#[derive(Debug, Clone, Copy)]
pub struct ClvTerms {
    pub months: u32,
    pub monthly_discount: f64,
    /// Length of the models' time unit in days (7 for weeks).
    pub period_days: f64,
}

/// Ranks customers for `goal` by value at stake.
pub fn promotion_targets(
    rows: &[CustomerSummary],
    bgnbd: &BgNbd,
    spend: &GammaGamma,
    goal: Goal,
    terms: ClvTerms,
    top: usize,
) -> Vec<Target> {
    let ClvTerms {
        months: horizon_months,
        monthly_discount,
        period_days,
    } = terms;
    let horizon = f64::from(horizon_months) * 30.0 / period_days;
    let mut out: Vec<Target> = rows
        .iter()
        .filter_map(|c| {
            let p_alive = bgnbd.p_alive(c.frequency, c.recency, c.t);
            let expected_purchases = bgnbd.expected_purchases(horizon, c.frequency, c.recency, c.t);
            let expected_order_value = spend.expected_average_value(c.frequency, c.monetary_value);
            let clv = lifetime_value(
                bgnbd,
                spend,
                c,
                horizon_months,
                monthly_discount,
                period_days,
            );
            if !clv.is_finite() || !expected_order_value.is_finite() {
                return None;
            }
            let silence = c.periods_since_last();
            let (eligible, incentive, value_at_stake) = match goal {
                Goal::Retain => (
                    c.frequency >= 2.0 && (0.3..0.8).contains(&p_alive),
                    "loyalty coupon on the next order",
                    clv * (1.0 - p_alive),
                ),
                Goal::Reactivate => (
                    c.frequency >= 1.0 && p_alive >= 0.2 && silence >= 0.5 * c.t,
                    "win-back discount with free delivery",
                    c.total_spent / (c.frequency + 1.0) * p_alive,
                ),
                Goal::Upsell => (
                    p_alive >= 0.8 && c.frequency >= 3.0,
                    "bundle offer / next-tier product",
                    clv,
                ),
            };
            eligible.then_some(Target {
                customer: c.customer,
                goal,
                incentive,
                p_alive,
                expected_purchases,
                expected_order_value,
                clv,
                value_at_stake,
            })
        })
        .collect();
    out.sort_by(|a, b| b.value_at_stake.total_cmp(&a.value_at_stake));
    out.truncate(top);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn co_purchase_recommends_what_similar_customers_bought() {
        // 0 = phone, 1 = case, 2 = charger, 3 = book. Phone buyers buy cases; book buyers are a crowd apart.
        let mut baskets = Vec::new();
        for _ in 0..30 {
            baskets.push(vec![0, 1]);
        }
        for _ in 0..10 {
            baskets.push(vec![0, 2]);
        }
        for _ in 0..40 {
            baskets.push(vec![3]);
        }
        let cp = CoPurchase::new(&baskets, 4);
        let recs = cp.recommend(&HashSet::from([0]), 3);
        let products: Vec<u32> = recs.iter().map(|r| r.product).collect();
        assert_eq!(products, vec![1, 2], "{recs:?}");
        assert!(
            cp.recommend(&HashSet::from([3]), 3).is_empty(),
            "books are bought alone"
        );
        // Review interest adds what co-purchase cannot see and can reorder the list.
        let interest = HashMap::from([(2u32, 0.6), (3u32, 0.3)]);
        let blended = cp.recommend_with_interest(&HashSet::from([0]), &interest, 5);
        let order: Vec<(u32, f64)> = blended
            .iter()
            .map(|r| (r.product, (r.combined * 100.0).round() / 100.0))
            .collect();
        // case: co-purchase best (1.0); charger: co-purchase 0.x + 0.6; book: interest only 0.3.
        assert_eq!(order[0].0, 2, "{blended:?}");
        assert_eq!(order[1], (1, 1.0));
        assert_eq!(order[2], (3, 0.3));
        assert_eq!(blended[2].because_of, 0);
    }

    #[test]
    fn targets_follow_their_goal() {
        let bg = BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        };
        let gg = GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let d = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let c = |id, frequency: f64, recency: f64, t: f64| CustomerSummary {
            customer: id,
            frequency,
            recency,
            t,
            monetary_value: 30.0,
            first_purchase: d,
            last_purchase: d,
            total_spent: 30.0 * (frequency + 1.0),
        };
        let rows = vec![
            c(1, 8.0, 38.0, 39.0),
            c(2, 2.0, 10.0, 39.0),
            c(3, 4.0, 25.0, 39.0),
        ];
        let terms = ClvTerms {
            months: 12,
            monthly_discount: 0.01,
            period_days: 7.0,
        };
        let up = promotion_targets(&rows, &bg, &gg, Goal::Upsell, terms, 10);
        assert_eq!(up.iter().map(|t| t.customer).collect::<Vec<_>>(), vec![1]);
        let back = promotion_targets(&rows, &bg, &gg, Goal::Reactivate, terms, 10);
        assert!(
            back.iter().all(|t| t.customer != 1),
            "an active buyer needs no win-back: {back:?}"
        );
        for t in up.iter().chain(&back) {
            assert!(t.value_at_stake.is_finite() && t.value_at_stake > 0.0);
        }
    }
}
