//! Exponential smoothing in state-space form (ETS; Hyndman, Koehler, Ord & Snyder, *Forecasting with
//! Exponential Smoothing*, 2008): additive or multiplicative errors; no, additive or damped trend; no,
//! additive or multiplicative season. Each form is fitted by maximum likelihood (or by least squares, as
//! classical Holt-Winters is) with its starting states estimated along with the smoothing weights (the
//! seasonal ones up to a season of 24), inside the usual parameter region (0 < α < 1, 0 < β < α,
//! 0 < γ < 1 − α, 0.8 ≤ φ ≤ 0.98) and checked for forecastability (the discount matrix's eigenvalues
//! inside the unit circle), so a fit cannot run away the way an unconstrained Holt-Winters can.
//! [`auto`] chooses the form by AICc among those that fit, as `forecast::ets` and statsforecast's AutoETS
//! do. Intervals come from simulated sample paths (seeded: the same series gives the same bands).
//!
//! The augurs crate was evaluated first: its ETS (0.10) has no seasonal forms (their starting states are
//! not implemented there) and no intervals for several seasonal classes.

use nalgebra::DMatrix;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use super::InsightError;
use super::forecast::minimize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    None,
    Additive,
    /// Damped additive (trend only).
    Damped,
    Multiplicative,
}

/// One ETS form: (error, trend, season).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spec {
    pub error: Kind,
    pub trend: Kind,
    pub season: Kind,
}

impl Spec {
    pub const fn new(error: Kind, trend: Kind, season: Kind) -> Self {
        Self {
            error,
            trend,
            season,
        }
    }

    /// The conventional name, e.g. "ETS(M,Ad,M)".
    pub fn name(&self) -> String {
        let c = |k: Kind| match k {
            Kind::None => "N",
            Kind::Additive => "A",
            Kind::Damped => "Ad",
            Kind::Multiplicative => "M",
        };
        format!(
            "ETS({},{},{})",
            c(self.error),
            c(self.trend),
            c(self.season)
        )
    }

    /// The forms [`auto`] considers: additive errors only with additive components (the restricted set of
    /// `forecast::ets`; additive errors with a multiplicative season are numerically unstable), no
    /// multiplicative trends, multiplicative forms only for positive data, seasonal forms only with a
    /// season.
    pub fn candidates(positive: bool, seasonal: bool) -> Vec<Spec> {
        let mut out = Vec::new();
        let errors: &[Kind] = if positive {
            &[Kind::Additive, Kind::Multiplicative]
        } else {
            &[Kind::Additive]
        };
        for &error in errors {
            for trend in [Kind::None, Kind::Additive, Kind::Damped] {
                let mut seasons = vec![Kind::None];
                if seasonal {
                    seasons.push(Kind::Additive);
                    if error == Kind::Multiplicative {
                        seasons.push(Kind::Multiplicative);
                    }
                }
                for season in seasons {
                    out.push(Spec::new(error, trend, season));
                }
            }
        }
        out
    }
}

/// The longest season whose starting states are fitted.
const MAX_FITTED_SEASON: usize = 24;

/// A fitted form: its weights, its states after the data, and how well it fits.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub spec: Spec,
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
    /// Level and trend after the last observation.
    pub level: f64,
    pub trend: f64,
    /// The latest seasonal state of each position in the season: index `j` is the state used at every
    /// step `t` (counted from 0 at the first observation) with `t % m == j`.
    #[serde(skip)]
    pub season: Vec<f64>,
    /// Variance of the one-step errors (absolute for additive errors, relative for multiplicative).
    pub sigma2: f64,
    /// −2 log-likelihood up to a constant shared by all forms on the same data.
    pub neg2loglik: f64,
    pub aicc: f64,
    pub params: usize,
    /// Regressor coefficients (ETSX): the mean is multiplied by exp(Σ βₖ xₖ).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub betas: Vec<f64>,
    #[serde(skip)]
    m: usize,
}

/// The starting states of a run.
struct Start {
    level: f64,
    trend: f64,
    /// m seasonal states; `season[j]` is the state used at time t with t % m == j (t from 0).
    season: Vec<f64>,
}

struct Weights {
    alpha: f64,
    beta: f64,
    gamma: f64,
    phi: f64,
    /// Regressor coefficients: the mean is multiplied by exp(Σ βₖ xₖ).
    betas: Vec<f64>,
}

/// exp(Σ βₖ xₖ[t]): the regressors' factor at step `t` (1 without regressors).
fn x_factor(betas: &[f64], x: &[Vec<f64>], t: usize) -> f64 {
    betas
        .iter()
        .zip(x)
        .map(|(b, col)| b * col.get(t).copied().unwrap_or(0.0))
        .sum::<f64>()
        .exp()
}

/// Result of running the recursions over the data.
struct Run {
    level: f64,
    trend: f64,
    season: Vec<f64>,
    sse: f64,
    /// Sum of the squared absolute one-step errors (what least squares minimises).
    sse_abs: f64,
    log_abs_f: f64,
    finite: bool,
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn run(y: &[f64], m: usize, spec: Spec, w: &Weights, s0: &Start, x: &[Vec<f64>]) -> Run {
    let mut level = s0.level;
    let mut trend = s0.trend;
    let mut season = s0.season.clone();
    let (mut sse, mut sse_abs, mut log_abs_f) = (0.0, 0.0, 0.0);
    let phi = if spec.trend == Kind::Damped {
        w.phi
    } else {
        1.0
    };
    let has_trend = spec.trend != Kind::None;
    for (t, &v) in y.iter().enumerate() {
        let j = t % m.max(1);
        let q = if has_trend {
            level + phi * trend
        } else {
            level
        };
        let s = if spec.season == Kind::None {
            0.0
        } else {
            season[j]
        };
        let factor = x_factor(&w.betas, x, t);
        let f = factor
            * match spec.season {
                Kind::Additive => q + s,
                Kind::Multiplicative => q * s,
                _ => q,
            };
        if !f.is_finite() || (spec.error == Kind::Multiplicative && f <= 0.0) {
            return Run {
                level,
                trend,
                season,
                sse: f64::INFINITY,
                sse_abs: f64::INFINITY,
                log_abs_f: 0.0,
                finite: false,
            };
        }
        let e = match spec.error {
            Kind::Multiplicative => (v - f) / f,
            _ => v - f,
        };
        sse += e * e;
        sse_abs += (v - f) * (v - f);
        if spec.error == Kind::Multiplicative {
            log_abs_f += f.abs().ln();
        }
        // The error-correction updates written in the observations (the same for both error types), on
        // the observation with the regressors' factor taken out.
        let v = v / factor;
        let deseason = match spec.season {
            Kind::Additive => v - s,
            Kind::Multiplicative => v / s,
            _ => v,
        };
        let prev = level;
        level = q + w.alpha * (deseason - q);
        if has_trend {
            // β* = β/α of the textbook's trend update b = φb + β*(l − l₋₁ − φb).
            trend = phi * trend + (w.beta / w.alpha) * (level - prev - phi * trend);
        }
        match spec.season {
            Kind::Additive => season[j] = s + w.gamma * (v - q - s),
            Kind::Multiplicative => season[j] = s + w.gamma * (v / q - s),
            _ => {}
        }
    }
    Run {
        level,
        trend,
        season,
        sse,
        sse_abs,
        log_abs_f,
        finite: true,
    }
}

/// Heuristic starting states (as `forecast::ets`' initial state): a classical decomposition of the first
/// seasons for the seasonal states, a line through the first deseasonalised values for level and trend.
fn initial(y: &[f64], m: usize, spec: Spec) -> Start {
    let mut season = vec![
        if spec.season == Kind::Multiplicative {
            1.0
        } else {
            0.0
        };
        m.max(1)
    ];
    let mut deseason: Vec<f64> = y.to_vec();
    if spec.season != Kind::None && m > 1 && y.len() >= 2 * m {
        let seasons = (y.len() / m).min(3);
        let mut sums = vec![0.0; m];
        for k in 0..seasons {
            let block = &y[k * m..(k + 1) * m];
            let mean = block.iter().sum::<f64>() / m as f64;
            for (j, v) in block.iter().enumerate() {
                sums[j] += if spec.season == Kind::Multiplicative {
                    v / mean
                } else {
                    v - mean
                };
            }
        }
        for j in 0..m {
            season[j] = sums[j] / seasons as f64;
        }
        normalise(&mut season, spec.season);
        for (t, v) in deseason.iter_mut().enumerate() {
            *v = if spec.season == Kind::Multiplicative {
                *v / season[t % m]
            } else {
                *v - season[t % m]
            };
        }
    }
    let k = deseason.len().min(10.max(m));
    let xs: Vec<f64> = (0..k).map(|i| i as f64).collect();
    let xm = xs.iter().sum::<f64>() / k as f64;
    let ym = deseason[..k].iter().sum::<f64>() / k as f64;
    let sxy: f64 = (0..k).map(|i| (xs[i] - xm) * (deseason[i] - ym)).sum();
    let sxx: f64 = (0..k).map(|i| (xs[i] - xm).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let intercept = ym - slope * xm;
    // States "before" the first observation: the level one step before it.
    let trend = if spec.trend == Kind::None { 0.0 } else { slope };
    Start {
        level: intercept - trend,
        trend,
        season,
    }
}

fn normalise(season: &mut [f64], kind: Kind) {
    let m = season.len() as f64;
    match kind {
        Kind::Additive => {
            let mean = season.iter().sum::<f64>() / m;
            season.iter_mut().for_each(|s| *s -= mean);
        }
        Kind::Multiplicative => {
            let mean = season.iter().sum::<f64>() / m;
            if mean > 0.0 {
                season.iter_mut().for_each(|s| *s /= mean);
            }
        }
        _ => {}
    }
}

/// Maps unconstrained optimiser coordinates to weights inside the usual region and starting states.
struct Layout {
    spec: Spec,
    m: usize,
    start: Start,
    scale: f64,
    /// Number of regressors.
    nx: usize,
}

impl Layout {
    fn has_trend(&self) -> bool {
        self.spec.trend != Kind::None
    }
    fn has_season(&self) -> bool {
        self.spec.season != Kind::None
    }
    /// Whether the seasonal starting states are optimised: up to 24 seasons (as `forecast::ets`); a
    /// weekly season of 52 keeps the decomposition's states (51 more coordinates would leave Nelder–Mead
    /// far from any optimum).
    fn fit_season_states(&self) -> bool {
        self.has_season() && self.m <= MAX_FITTED_SEASON
    }
    /// Number of optimised coordinates: α, [β], [γ], [φ], l₀, [b₀], [m − 1 seasonal states].
    fn len(&self) -> usize {
        1 + usize::from(self.has_trend())
            + usize::from(self.has_season())
            + usize::from(self.spec.trend == Kind::Damped)
            + 1
            + usize::from(self.has_trend())
            + if self.fit_season_states() {
                self.m - 1
            } else {
                0
            }
            + self.nx
    }
    fn x0(&self) -> Vec<f64> {
        let mut x = vec![logit(0.3)];
        if self.has_trend() {
            x.push(logit(0.1));
        }
        if self.has_season() {
            x.push(logit(0.1));
        }
        if self.spec.trend == Kind::Damped {
            x.push(logit(0.9));
        }
        x.resize(self.len(), 0.0);
        x
    }
    fn decode(&self, x: &[f64]) -> (Weights, Start) {
        let mut i = 0;
        let mut next = || {
            i += 1;
            x[i - 1]
        };
        let alpha = 1e-4 + (1.0 - 2e-4) * logistic(next());
        let beta = if self.has_trend() {
            alpha * (1e-4 + (1.0 - 2e-4) * logistic(next()))
        } else {
            0.0
        };
        let gamma = if self.has_season() {
            (1.0 - alpha) * (1e-4 + (1.0 - 2e-4) * logistic(next()))
        } else {
            0.0
        };
        let phi = if self.spec.trend == Kind::Damped {
            0.8 + 0.18 * logistic(next())
        } else {
            1.0
        };
        let level = self.start.level + next() * self.scale * 0.1;
        let trend = if self.has_trend() {
            self.start.trend + next() * self.scale * 0.01
        } else {
            0.0
        };
        let mut season = self.start.season.clone();
        if self.fit_season_states() {
            for s in season.iter_mut().take(self.m - 1) {
                let d = next();
                *s = if self.spec.season == Kind::Multiplicative {
                    *s * (0.1 * d).exp()
                } else {
                    *s + d * self.scale * 0.05
                };
            }
            // The last state keeps the season normalised (sum 0, or mean 1).
            let rest: f64 = season[..self.m - 1].iter().sum();
            season[self.m - 1] = if self.spec.season == Kind::Multiplicative {
                self.m as f64 - rest
            } else {
                -rest
            };
        }
        let betas: Vec<f64> = (0..self.nx).map(|_| next()).collect();
        (
            Weights {
                alpha,
                beta,
                gamma,
                phi,
                betas,
            },
            Start {
                level,
                trend,
                season,
            },
        )
    }
}

fn neg2loglik(n: usize, r: &Run) -> f64 {
    n as f64 * (r.sse / n as f64).ln() + 2.0 * r.log_abs_f
}

/// Whether the fitted weights give a forecastable model: the discount matrix D = F − g w′ of the
/// linear (additive) form has every eigenvalue inside the unit circle.
fn forecastable(spec: Spec, m: usize, w: &Weights) -> bool {
    let has_trend = spec.trend != Kind::None;
    let ms = if spec.season == Kind::None { 0 } else { m };
    let k = 1 + usize::from(has_trend) + ms;
    let phi = w.phi;
    let mut f = DMatrix::<f64>::zeros(k, k);
    let mut wv = vec![0.0; k];
    let mut g = vec![0.0; k];
    f[(0, 0)] = 1.0;
    wv[0] = 1.0;
    g[0] = w.alpha;
    let mut i = 1;
    if has_trend {
        f[(0, 1)] = phi;
        f[(1, 1)] = phi;
        wv[1] = phi;
        g[1] = w.beta;
        i = 2;
    }
    if ms > 0 {
        // States s_t, s_{t-1}, …, s_{t-m+1}; the observation uses the oldest.
        f[(i, i + ms - 1)] = 1.0;
        for r in 1..ms {
            f[(i + r, i + r - 1)] = 1.0;
        }
        wv[i + ms - 1] = 1.0;
        g[i] = w.gamma;
    }
    let d = DMatrix::from_fn(k, k, |r, c| f[(r, c)] - g[r] * wv[c]);
    d.complex_eigenvalues()
        .iter()
        .all(|z| z.norm() < 1.0 + 1e-8)
}

/// What a fit minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// −2 log-likelihood of the state-space model (ETS).
    Likelihood,
    /// The sum of squared one-step errors in the data's units: classical Holt-Winters (R's `HoltWinters`,
    /// statsmodels' `ExponentialSmoothing`). It weighs the large values of a growing series most.
    LeastSquares,
}

/// Fits one form to `y` (season length `m`) by maximum likelihood.
pub fn fit(y: &[f64], m: usize, spec: Spec) -> Result<Fit, InsightError> {
    fit_by(y, m, spec, Criterion::Likelihood)
}

/// Fits one form to `y` (season length `m`) by `criterion`.
pub fn fit_by(y: &[f64], m: usize, spec: Spec, criterion: Criterion) -> Result<Fit, InsightError> {
    fit_with(y, m, spec, criterion, &[])
}

/// Fits one form with regressors (ETSX): columns of `x` cover at least `y`; the mean is multiplied by
/// exp(Σ βₖ xₖ), the coefficients fitted with the rest, and the states follow the series with the
/// regressors' factor taken out. Only for positive series.
pub fn fit_with(
    y: &[f64],
    m: usize,
    spec: Spec,
    criterion: Criterion,
    x: &[Vec<f64>],
) -> Result<Fit, InsightError> {
    let n = y.len();
    if !x.is_empty() && (y.iter().any(|v| *v <= 0.0) || x.iter().any(|c| c.len() < n)) {
        return Err(InsightError::NoData(
            "regressors need a positive series and a value for every period",
        ));
    }
    let seasonal = spec.season != Kind::None;
    if seasonal && (m < 2 || n < 2 * m) {
        return Err(InsightError::NoData(
            "a seasonal model needs at least two full seasons of history",
        ));
    }
    if n < 4 {
        return Err(InsightError::NoData("too little history for a forecast"));
    }
    if (spec.error == Kind::Multiplicative || spec.season == Kind::Multiplicative)
        && y.iter().any(|v| *v <= 0.0)
    {
        return Err(InsightError::NoData(
            "multiplicative models need positive values",
        ));
    }
    let scale = {
        let k = n.min(2 * m.max(6));
        (y[..k].iter().map(|v| v.abs()).sum::<f64>() / k as f64).max(1e-9)
    };
    let layout = Layout {
        spec,
        m: m.max(1),
        start: initial(y, m.max(1), spec),
        scale,
        nx: x.len(),
    };
    // + σ, and seasonal starting states taken from the decomposition (estimated from the data too).
    let k = layout.len()
        + 1
        + if layout.has_season() && !layout.fit_season_states() {
            layout.m - 1
        } else {
            0
        };
    if n <= k + 1 {
        return Err(InsightError::NoData(
            "too little history for the model's parameters",
        ));
    }
    let cost = |p: &[f64]| {
        let (w, s) = layout.decode(p);
        let r = run(y, layout.m, spec, &w, &s, x);
        if r.finite && r.sse > 0.0 {
            match criterion {
                Criterion::Likelihood => neg2loglik(n, &r),
                Criterion::LeastSquares => r.sse_abs,
            }
        } else if r.finite {
            -1e12
        } else {
            f64::INFINITY
        }
    };
    // Two rounds of Nelder–Mead (a restart from the first optimum, as optim users commonly do).
    let first = minimize(cost, &layout.x0(), "ETS")?;
    let best = minimize(cost, &first, "ETS")?;
    let (w, s) = layout.decode(&best);
    let r = run(y, layout.m, spec, &w, &s, x);
    if !r.finite || !forecastable(spec, layout.m, &w) {
        return Err(InsightError::Fit {
            model: "ETS",
            reason: format!("{} has no stable fit on this series", spec.name()),
        });
    }
    let l = neg2loglik(n, &r);
    let kf = k as f64;
    let aicc = l + 2.0 * kf + 2.0 * kf * (kf + 1.0) / (n as f64 - kf - 1.0);
    Ok(Fit {
        spec,
        alpha: w.alpha,
        beta: w.beta,
        gamma: w.gamma,
        phi: w.phi,
        level: r.level,
        trend: r.trend,
        season: r.season,
        sigma2: r.sse / (n as f64 - kf + 1.0).max(1.0),
        neg2loglik: l,
        aicc,
        params: k,
        betas: w.betas,
        m: layout.m,
    })
}

/// The form with the lowest AICc among [`Spec::candidates`] that fit.
pub fn auto(y: &[f64], m: usize) -> Result<Fit, InsightError> {
    auto_with(y, m, &[])
}

/// [`auto`] with regressors (see [`fit_with`]).
pub fn auto_with(y: &[f64], m: usize, x: &[Vec<f64>]) -> Result<Fit, InsightError> {
    let positive = y.iter().all(|v| *v > 0.0);
    let seasonal = m > 1 && y.len() >= 2 * m + 2;
    let mut best: Option<Fit> = None;
    let mut first_error = None;
    for spec in Spec::candidates(positive, seasonal) {
        match fit_with(y, m, spec, Criterion::Likelihood, x) {
            Ok(f) if f.aicc.is_finite() => {
                if best.as_ref().is_none_or(|b| f.aicc < b.aicc) {
                    best = Some(f);
                }
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| first_error.unwrap_or(InsightError::NoData("no ETS form could be fitted")))
}

/// Point forecasts and the four bounds (80% and 95%) of a fitted form, `h` steps after the `n` values it
/// was fitted on.
pub struct Paths {
    pub point: Vec<f64>,
    pub lower80: Vec<f64>,
    pub upper80: Vec<f64>,
    pub lower95: Vec<f64>,
    pub upper95: Vec<f64>,
}

impl Fit {
    fn step(
        &self,
        level: &mut f64,
        trend: &mut f64,
        season: &mut [f64],
        j: usize,
        e: f64,
        factor: f64,
    ) -> f64 {
        let phi = if self.spec.trend == Kind::Damped {
            self.phi
        } else {
            1.0
        };
        let has_trend = self.spec.trend != Kind::None;
        let q = if has_trend {
            *level + phi * *trend
        } else {
            *level
        };
        let s = season.get(j).copied().unwrap_or(0.0);
        let f = factor
            * match self.spec.season {
                Kind::Additive => q + s,
                Kind::Multiplicative => q * s,
                _ => q,
            };
        let observed = match self.spec.error {
            Kind::Multiplicative => f * (1.0 + e),
            _ => f + e,
        };
        let v = observed / factor;
        let deseason = match self.spec.season {
            Kind::Additive => v - s,
            Kind::Multiplicative => v / s,
            _ => v,
        };
        let prev = *level;
        *level = q + self.alpha * (deseason - q);
        if has_trend {
            *trend = phi * *trend + (self.beta / self.alpha) * (*level - prev - phi * *trend);
        }
        match self.spec.season {
            Kind::Additive => season[j] = s + self.gamma * (v - q - s),
            Kind::Multiplicative => season[j] = s + self.gamma * (v / q - s),
            _ => {}
        }
        observed
    }

    /// Forecasts `h` steps after the `n` fitted values: the point is the model's mean path (errors at
    /// zero); the bounds are quantiles of 2,000 simulated paths.
    pub fn forecast(&self, n: usize, h: usize) -> Paths {
        self.forecast_with(n, h, &[])
    }

    /// [`Fit::forecast`] with the regressors' values: columns of `x` cover the `n` fitted steps and the
    /// `h` ahead.
    pub fn forecast_with(&self, n: usize, h: usize, x: &[Vec<f64>]) -> Paths {
        const PATHS: usize = 2_000;
        let factor = |i: usize| x_factor(&self.betas, x, n + i);
        let m = self.m.max(1);
        let mut point = Vec::with_capacity(h);
        {
            let (mut l, mut b, mut s) = (self.level, self.trend, self.season.clone());
            for i in 0..h {
                point.push(self.step(&mut l, &mut b, &mut s, (n + i) % m, 0.0, factor(i)));
            }
        }
        let sigma = self.sigma2.sqrt();
        let mut sims = vec![Vec::with_capacity(PATHS); h];
        for path in 0..PATHS {
            // One generator per path, seeded by the path's number and the history's length: step i of a
            // path is the same whatever the horizon, so a short forecast's bands are the long one's start.
            let mut rng = StdRng::seed_from_u64(((n as u64) << 32) ^ path as u64);
            let (mut l, mut b, mut s) = (self.level, self.trend, self.season.clone());
            for (i, out) in sims.iter_mut().enumerate() {
                let z: f64 = StandardNormal.sample(&mut rng);
                let e = if self.spec.error == Kind::Multiplicative {
                    // A relative error below −100% would be a negative sale.
                    (sigma * z).max(-0.99)
                } else {
                    sigma * z
                };
                out.push(self.step(&mut l, &mut b, &mut s, (n + i) % m, e, factor(i)));
            }
        }
        let quantile = |v: &mut Vec<f64>, p: f64| -> f64 {
            let idx = ((v.len() - 1) as f64 * p).round() as usize;
            *v.select_nth_unstable_by(idx, |a, b| a.total_cmp(b)).1
        };
        let mut out = Paths {
            point,
            lower80: Vec::with_capacity(h),
            upper80: Vec::with_capacity(h),
            lower95: Vec::with_capacity(h),
            upper95: Vec::with_capacity(h),
        };
        for (i, v) in sims.iter_mut().enumerate() {
            let p = out.point[i];
            // A band always contains its point (a skewed simulated band could, in rare cases, miss it).
            out.lower95.push(quantile(v, 0.025).min(p));
            out.lower80.push(quantile(v, 0.10).min(p));
            out.upper80.push(quantile(v, 0.90).max(p));
            out.upper95.push(quantile(v, 0.975).max(p));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seasonal(n: usize) -> Vec<f64> {
        (0..n)
            .map(|t| {
                (100.0 + 3.0 * t as f64)
                    * [0.8, 1.0, 1.3, 0.9][t % 4]
                    * (1.0 + 0.02 * ((t * 7 % 5) as f64 - 2.0))
            })
            .collect()
    }

    #[test]
    fn a_growing_multiplicative_season_is_found_and_forecast_closely() {
        let y = seasonal(60);
        let truth: Vec<f64> = (60..68)
            .map(|t| (100.0 + 3.0 * t as f64) * [0.8, 1.0, 1.3, 0.9][t % 4])
            .collect();
        let f = auto(&y, 4).unwrap();
        assert_eq!(f.spec.season, Kind::Multiplicative, "{}", f.spec.name());
        let p = f.forecast(60, 8);
        let mape = super::super::forecast::mape(&truth, &p.point);
        assert!(mape < 4.0, "{} {mape} {:?}", f.spec.name(), p.point);
        for i in 0..8 {
            assert!(p.lower95[i] <= p.lower80[i] && p.lower80[i] <= p.point[i]);
            assert!(p.point[i] <= p.upper80[i] && p.upper80[i] <= p.upper95[i]);
        }
    }

    #[test]
    fn fitted_weights_stay_in_the_usual_region() {
        let y = seasonal(48);
        for spec in Spec::candidates(true, true) {
            let f = fit(&y, 4, spec).unwrap();
            assert!(f.alpha > 0.0 && f.alpha < 1.0, "{f:?}");
            assert!(f.beta >= 0.0 && f.beta <= f.alpha, "{f:?}");
            assert!(f.gamma >= 0.0 && f.gamma <= 1.0 - f.alpha, "{f:?}");
            assert!((0.8..=1.0).contains(&f.phi), "{f:?}");
        }
    }

    /// A promotion every 7th step lifts sales by 40%: ETSX recovers the factor and forecasts the
    /// promotion steps lifted; the regressor-free fit of the same form cannot tell them apart.
    #[test]
    fn a_regressor_is_fitted_jointly_and_applied_ahead() {
        let promo: Vec<f64> = (0..70)
            .map(|t| if t % 7 == 3 { 1.0 } else { 0.0 })
            .collect();
        let y: Vec<f64> = (0..60)
            .map(|t| {
                let base = 500.0 + 2.0 * t as f64 + 10.0 * ((t * 5 % 3) as f64 - 1.0);
                base * if promo[t] > 0.5 { 1.4 } else { 1.0 }
            })
            .collect();
        let x = vec![promo.clone()];
        let fx = auto_with(&y, 1, &[promo[..60].to_vec()]).unwrap();
        assert!((fx.betas[0].exp() - 1.4).abs() < 0.05, "{fx:?}");
        let p = fx.forecast_with(60, 10, &x).point;
        for i in 0..10 {
            let expected =
                (500.0 + 2.0 * (60 + i) as f64) * if promo[60 + i] > 0.5 { 1.4 } else { 1.0 };
            assert!(
                (p[i] - expected).abs() / expected < 0.05,
                "step {i}: {} vs {expected}",
                p[i]
            );
        }
    }

    #[test]
    fn the_same_series_gets_the_same_bands() {
        let y = seasonal(48);
        let f = auto(&y, 4).unwrap();
        assert_eq!(f.forecast(48, 6).upper95, f.forecast(48, 6).upper95);
    }
}
