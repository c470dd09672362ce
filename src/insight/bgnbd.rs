//! The BG/NBD model of repeat buying (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way"):
//! while alive, a customer buys as a Poisson process with rate λ ~ Gamma(r, α); after each purchase she
//! drops out with probability p ~ Beta(a, b). Fitted by maximum likelihood on (frequency, recency, T).

use serde::Serialize;
use statrs::function::gamma::ln_gamma;

use super::InsightError;
use super::optimize::{hyp2f1, ln_beta, maximize_positive, maximize_positive_with_gradient};
use super::rfm::CustomerSummary;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// A fitted model with its log-likelihood.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BgNbdFit {
    pub params: BgNbd,
    pub log_likelihood: f64,
    pub customers: usize,
    pub iterations: u64,
}

/// Customers with identical (x, t_x, T) share one likelihood term, weighted by their count.
pub(crate) fn grouped(rows: &[CustomerSummary]) -> Vec<(f64, f64, f64, f64)> {
    let mut keys: Vec<(f64, f64, f64)> =
        rows.iter().map(|c| (c.frequency, c.recency, c.t)).collect();
    keys.sort_by(|x, y| x.partial_cmp(y).expect("finite features"));
    let mut out: Vec<(f64, f64, f64, f64)> = Vec::new();
    for k in keys {
        match out.last_mut() {
            Some(last) if (last.0, last.1, last.2) == k => last.3 += 1.0,
            _ => out.push((k.0, k.1, k.2, 1.0)),
        }
    }
    out
}

/// The likelihood for whole-number frequencies (always the case for purchase counts), where every
/// Gamma-function ratio is a finite product: lnΓ(r+x) − lnΓ(r) = Σ_{k<x} ln(r+k). Each evaluation builds
/// those sums once per distinct x and then costs a few logarithms per group — no lnΓ calls.
struct FastLikelihood {
    groups: Vec<(usize, f64, f64, f64)>,
    max_x: usize,
}

impl FastLikelihood {
    fn new(groups: &[(f64, f64, f64, f64)]) -> Option<Self> {
        if groups
            .iter()
            .any(|g| g.0.fract() != 0.0 || g.0 < 0.0 || g.0 > 1e6)
        {
            return None;
        }
        let groups: Vec<(usize, f64, f64, f64)> = groups
            .iter()
            .map(|g| (g.0 as usize, g.1, g.2, g.3))
            .collect();
        let max_x = groups.iter().map(|g| g.0).max().unwrap_or(0);
        Some(Self { groups, max_x })
    }

    /// ln L and its gradient in (r, α, a, b).
    fn log_likelihood_and_gradient(&self, m: &BgNbd) -> (f64, [f64; 4]) {
        let BgNbd { r, alpha, a, b } = *m;
        // s[x] = Σ_{k<x} ln(base+k) and d[x] = Σ_{k<x} 1/(base+k), for base r, b and a+b.
        let sums = |base: f64| {
            let (mut s, mut d) = (
                Vec::with_capacity(self.max_x + 1),
                Vec::with_capacity(self.max_x + 1),
            );
            let (mut acc_s, mut acc_d) = (0.0, 0.0);
            s.push(0.0);
            d.push(0.0);
            for k in 0..self.max_x {
                let v = base + k as f64;
                acc_s += v.ln();
                acc_d += 1.0 / v;
                s.push(acc_s);
                d.push(acc_d);
            }
            (s, d)
        };
        let ((s_r, d_r), (s_b, d_b), (s_ab, d_ab)) = (sums(r), sums(b), sums(a + b));
        let (ln_alpha, ln_a) = (alpha.ln(), a.ln());
        let mut total = 0.0;
        let mut grad = [0.0; 4];
        for &(x, tx, t, n) in &self.groups {
            let xf = x as f64;
            let common = s_r[x] + r * ln_alpha;
            let ln_at = (alpha + t).ln();
            // A1 = ln[B(a, b+x)/B(a, b)] + ln[Γ(r+x)/Γ(r)] + r ln α − (r+x) ln(α+T)
            let a1 = s_b[x] - s_ab[x] + common - (r + xf) * ln_at;
            let g1 = [
                d_r[x] + ln_alpha - ln_at,
                r / alpha - (r + xf) / (alpha + t),
                -d_ab[x],
                d_b[x] - d_ab[x],
            ];
            if x > 0 {
                let ln_atx = (alpha + tx).ln();
                // A2 = ln[B(a+1, b+x−1)/B(a, b)] + ... − (r+x) ln(α+t_x)
                let a2 = ln_a + s_b[x - 1] - s_ab[x] + common - (r + xf) * ln_atx;
                let g2 = [
                    d_r[x] + ln_alpha - ln_atx,
                    r / alpha - (r + xf) / (alpha + tx),
                    1.0 / a - d_ab[x],
                    d_b[x - 1] - d_ab[x],
                ];
                let hi = a1.max(a2);
                let (e1, e2) = ((a1 - hi).exp(), (a2 - hi).exp());
                let sum = e1 + e2;
                total += n * (hi + sum.ln());
                let (w1, w2) = (e1 / sum, e2 / sum);
                for k in 0..4 {
                    grad[k] += n * (w1 * g1[k] + w2 * g2[k]);
                }
            } else {
                total += n * a1;
                for k in 0..4 {
                    grad[k] += n * g1[k];
                }
            }
        }
        (total, grad)
    }
}

impl BgNbd {
    /// ln L for one customer.
    pub fn log_likelihood_one(&self, x: f64, t_x: f64, t: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let common = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() - ln_beta(a, b);
        let a1 = ln_beta(a, b + x) + common - (r + x) * (alpha + t).ln();
        if x > 0.0 {
            let a2 = ln_beta(a + 1.0, b + x - 1.0) + common - (r + x) * (alpha + t_x).ln();
            let m = a1.max(a2);
            m + ((a1 - m).exp() + (a2 - m).exp()).ln()
        } else {
            a1
        }
    }

    /// Sum of ln L over customers.
    pub fn log_likelihood(&self, rows: &[CustomerSummary]) -> f64 {
        grouped(rows)
            .iter()
            .map(|(x, tx, t, n)| n * self.log_likelihood_one(*x, *tx, *t))
            .sum()
    }

    /// Maximum-likelihood fit.
    pub fn fit(rows: &[CustomerSummary]) -> Result<BgNbdFit, InsightError> {
        if rows.is_empty() {
            return Err(InsightError::NoData("BG/NBD needs at least one customer"));
        }
        let groups = grouped(rows);
        let to_model = |p: &[f64]| BgNbd {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
        };
        let fit = match FastLikelihood::new(&groups) {
            Some(fast) => {
                let f = |p: &[f64]| {
                    let (ll, g) = fast.log_likelihood_and_gradient(&to_model(p));
                    (ll, g.to_vec())
                };
                maximize_positive_with_gradient(
                    &f,
                    &[1.0, 1.0, 1.0, 1.0],
                    rows.len() as f64,
                    "BG/NBD",
                )?
            }
            None => {
                let ll = |p: &[f64]| {
                    let m = to_model(p);
                    groups
                        .iter()
                        .map(|(x, tx, t, n)| n * m.log_likelihood_one(*x, *tx, *t))
                        .sum::<f64>()
                };
                maximize_positive(&ll, &[1.0, 1.0, 1.0, 1.0], "BG/NBD")?
            }
        };
        let p = &fit.params;
        Ok(BgNbdFit {
            params: BgNbd {
                r: p[0],
                alpha: p[1],
                a: p[2],
                b: p[3],
            },
            log_likelihood: fit.log_likelihood,
            customers: rows.len(),
            iterations: fit.iterations,
        })
    }

    /// P(alive | x, t_x, T): the probability the customer has not dropped out.
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        if x == 0.0 {
            return 1.0;
        }
        let BgNbd { r, alpha, a, b } = *self;
        1.0 / (1.0 + (a / (b + x - 1.0)) * ((alpha + t) / (alpha + t_x)).powf(r + x))
    }

    /// E[number of purchases in the next `horizon` periods | x, t_x, T] (equation 10 of the paper).
    pub fn expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let z = horizon / (alpha + t + horizon);
        let f = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let num = (a + b + x - 1.0) / (a - 1.0)
            * (1.0 - ((alpha + t) / (alpha + t + horizon)).powf(r + x) * f);
        let den = if x > 0.0 {
            1.0 + (a / (b + x - 1.0)) * ((alpha + t) / (alpha + t_x)).powf(r + x)
        } else {
            1.0
        };
        num / den
    }

    /// E[purchases in (0, t]] of a customer picked at random when the cohort starts.
    pub fn expected_purchases_new(&self, t: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let f = hyp2f1(r, b, a + b - 1.0, t / (alpha + t));
        (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + t)).powf(r) * f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's estimates on CDNOW (Fader, Hardie & Lee 2005, section 5).
    const PAPER: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn the_papers_worked_example() {
        // "a customer who made two repeat purchases, the last at 30.43 weeks, observed for 38.86 weeks"
        let e = PAPER.expected_purchases(39.0, 2.0, 30.43, 38.86);
        assert!((e - 1.226).abs() < 0.001, "{e}");
    }

    #[test]
    fn the_fast_likelihood_equals_the_gamma_function_one() {
        let groups = vec![
            (0.0, 0.0, 38.86, 5.0),
            (2.0, 30.43, 38.86, 1.0),
            (7.0, 12.5, 30.0, 2.0),
        ];
        let fast = FastLikelihood::new(&groups).unwrap();
        let (ll, grad) = fast.log_likelihood_and_gradient(&PAPER);
        let slow = |m: &BgNbd| -> f64 {
            groups
                .iter()
                .map(|(x, tx, t, n)| n * m.log_likelihood_one(*x, *tx, *t))
                .sum()
        };
        assert!((ll - slow(&PAPER)).abs() < 1e-9, "{ll} vs {}", slow(&PAPER));
        // The analytic gradient against central differences of the lnΓ-based likelihood.
        let h = 1e-6;
        for k in 0..4 {
            let shift = |d: f64| {
                let mut p = [PAPER.r, PAPER.alpha, PAPER.a, PAPER.b];
                p[k] += d;
                slow(&BgNbd {
                    r: p[0],
                    alpha: p[1],
                    a: p[2],
                    b: p[3],
                })
            };
            let numeric = (shift(h) - shift(-h)) / (2.0 * h);
            assert!(
                (grad[k] - numeric).abs() < 1e-4 * numeric.abs().max(1.0),
                "∂{k}: {} vs {numeric}",
                grad[k]
            );
        }
    }

    #[test]
    fn p_alive_is_one_without_repeats_and_falls_with_silence() {
        assert_eq!(PAPER.p_alive(0.0, 0.0, 30.0), 1.0);
        let recent = PAPER.p_alive(3.0, 38.0, 38.86);
        let silent = PAPER.p_alive(3.0, 5.0, 38.86);
        assert!(recent > 0.8 && silent < 0.1, "{recent} {silent}");
    }
}
