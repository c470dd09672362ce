//! Spend per purchase and customer lifetime value: the Gamma-Gamma model (Fader, Hardie & Lee 2005, "RFM
//! and CLV: Using Iso-Value Curves for Customer Base Analysis") on repeat buyers, combined with BG/NBD's
//! expected purchases, discounted per month.

use serde::Serialize;
use statrs::function::gamma::ln_gamma;

use super::InsightError;
use super::bgnbd::BgNbd;
use super::optimize::maximize_positive;
use super::rfm::CustomerSummary;

/// A customer's purchases have mean value ~ Gamma(p, ν) with ν ~ Gamma(q, γ).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GammaGammaFit {
    pub params: GammaGamma,
    pub log_likelihood: f64,
    /// Repeat buyers the model was fitted on.
    pub customers: usize,
}

impl GammaGamma {
    /// ln L of one repeat buyer with `x` repeat purchases of mean value `m`.
    pub fn log_likelihood_one(&self, x: f64, m: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
            + q * gamma.ln()
            + (p * x - 1.0) * m.ln()
            + (p * x) * x.ln()
            - (p * x + q) * (gamma + x * m).ln()
    }

    /// Fits on the customers with at least one repeat purchase and a positive mean value.
    pub fn fit(rows: &[CustomerSummary]) -> Result<GammaGammaFit, InsightError> {
        let repeat: Vec<(f64, f64)> = rows
            .iter()
            .filter(|c| c.frequency > 0.0 && c.monetary_value > 0.0)
            .map(|c| (c.frequency, c.monetary_value))
            .collect();
        if repeat.is_empty() {
            return Err(InsightError::NoData(
                "Gamma-Gamma needs customers with repeat purchases",
            ));
        }
        let ll = |p: &[f64]| {
            let m = GammaGamma {
                p: p[0],
                q: p[1],
                gamma: p[2],
            };
            repeat
                .iter()
                .map(|(x, v)| m.log_likelihood_one(*x, *v))
                .sum::<f64>()
        };
        let fit = maximize_positive(&ll, &[1.0, 1.0, 1.0], "Gamma-Gamma")?;
        Ok(GammaGammaFit {
            params: GammaGamma {
                p: fit.params[0],
                q: fit.params[1],
                gamma: fit.params[2],
            },
            log_likelihood: fit.log_likelihood,
            customers: repeat.len(),
        })
    }

    /// E[mean purchase value | x repeat purchases of mean m]; the population mean for x = 0. NaN where the
    /// model has no finite mean (q ≤ 1 and too few purchases), never a made-up number.
    pub fn expected_average_value(&self, x: f64, m: f64) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        let den = p * x + q - 1.0;
        if den <= 0.0 {
            return f64::NAN;
        }
        if x > 0.0 {
            (p * (gamma + x * m)) / den
        } else {
            p * gamma / den
        }
    }
}

/// Customer lifetime value over `months`, discounted at `monthly_discount` per month: the sum over months of
/// expected purchases in the month times the expected value per purchase, as lifetimes computes it.
/// `period_days` is the length of the models' time unit (7 for weeks). NaN when the spend model has no
/// finite mean for this customer.
pub fn lifetime_value(
    bgnbd: &BgNbd,
    spend: &GammaGamma,
    c: &CustomerSummary,
    months: u32,
    monthly_discount: f64,
    period_days: f64,
) -> f64 {
    let value = spend.expected_average_value(c.frequency, c.monetary_value);
    let month = 30.0 / period_days;
    let mut clv = 0.0;
    let mut before = 0.0;
    for i in 1..=months {
        let cumulative =
            bgnbd.expected_purchases(month * f64::from(i), c.frequency, c.recency, c.t);
        clv += value * (cumulative - before) / (1.0 + monthly_discount).powi(i as i32);
        before = cumulative;
    }
    clv
}
