//! Sales forecasts for a regular series (daily, weekly or monthly totals): a seasonal-naive baseline,
//! Holt-Winters exponential smoothing (additive and multiplicative seasonality), and the airline model — a
//! seasonal ARIMA(0,1,1)(0,1,1) on the logarithms, fitted by conditional least squares. The model is chosen
//! per series by its error on the last part of the history, then refitted on all of it. Point forecasts come
//! with 80% and 95% intervals.
//!
//! Parameters are fitted with argmin's Nelder–Mead on transformed (unconstrained) parameters.

use argmin::core::{CostFunction, Error, Executor, State};
use argmin::solver::neldermead::NelderMead;
use serde::Serialize;

use super::InsightError;
use super::ets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The value one season earlier.
    SeasonalNaive,
    /// Holt-Winters with additive seasonality.
    HoltWintersAdditive,
    /// Holt-Winters with multiplicative seasonality.
    HoltWintersMultiplicative,
    /// Seasonal ARIMA(0,1,1)(0,1,1) on log values (Box & Jenkins' airline model).
    Airline,
    /// Exponential smoothing whose form (error, trend, season) is chosen by AICc.
    AutoEts,
    /// Daily series: MSTL takes the weekly season out (and the yearly one, with two years of history);
    /// the rest is forecast by non-seasonal AutoETS, each season by repeating its last cycle.
    Mstl,
    /// The Theta method (Assimakopoulos & Nikolopoulos; R's `thetaf`): simple exponential smoothing with
    /// drift (half the linear trend's slope) on the seasonally adjusted series, the season put back.
    Theta,
    /// The mean of the forecasts of seasonal naive, AutoETS, MSTL (daily series), the airline model,
    /// Theta and multiplicative Holt-Winters, with equal weights; in automatic choice only of those that
    /// passed the sanity check on the validation windows.
    Combined,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::SeasonalNaive,
        Method::HoltWintersAdditive,
        Method::HoltWintersMultiplicative,
        Method::Airline,
        Method::AutoEts,
        Method::Mstl,
        Method::Theta,
        Method::Combined,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::SeasonalNaive => "seasonal naive",
            Method::HoltWintersAdditive => "Holt-Winters (additive)",
            Method::HoltWintersMultiplicative => "Holt-Winters (multiplicative)",
            Method::Airline => "seasonal ARIMA (airline, log)",
            Method::AutoEts => "AutoETS (form chosen by AICc)",
            Method::Mstl => "MSTL (weekly and yearly seasons) + ETS",
            Method::Theta => "Theta (exponential smoothing with drift)",
            Method::Combined => "combined (mean of the models that passed)",
        }
    }

    /// A name for tables.
    pub fn short_name(self) -> &'static str {
        match self {
            Method::SeasonalNaive => "seasonal naive",
            Method::HoltWintersAdditive => "Holt-Winters add.",
            Method::HoltWintersMultiplicative => "Holt-Winters mult.",
            Method::Airline => "ARIMA airline",
            Method::AutoEts => "AutoETS",
            Method::Mstl => "MSTL + ETS",
            Method::Theta => "Theta",
            Method::Combined => "combined",
        }
    }
}

/// Point forecasts with 80% and 95% prediction intervals.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    pub method: Method,
    pub point: Vec<f64>,
    pub lower80: Vec<f64>,
    pub upper80: Vec<f64>,
    pub lower95: Vec<f64>,
    pub upper95: Vec<f64>,
}

const Z80: f64 = 1.281_551_565_5;
const Z95: f64 = 1.959_963_985;

impl Forecast {
    /// The point forecast and the four bounds, for changes that apply to all of them.
    pub fn series_mut(&mut self) -> [&mut Vec<f64>; 5] {
        [
            &mut self.point,
            &mut self.lower80,
            &mut self.upper80,
            &mut self.lower95,
            &mut self.upper95,
        ]
    }

    /// Symmetric intervals from the standard deviation of each step's error.
    fn from_sd(method: Method, point: Vec<f64>, sd: &[f64]) -> Self {
        let band = |z: f64, sign: f64| {
            point
                .iter()
                .zip(sd)
                .map(|(p, s)| p + sign * z * s)
                .collect()
        };
        Self {
            method,
            lower80: band(Z80, -1.0),
            upper80: band(Z80, 1.0),
            lower95: band(Z95, -1.0),
            upper95: band(Z95, 1.0),
            point,
        }
    }
}

/// Weighted absolute percentage error, in percent: Σ|actual − predicted| / Σ|actual|. Defined when some
/// actual values are zero (a day without sales), where MAPE is not.
pub fn wape(actual: &[f64], predicted: &[f64]) -> f64 {
    let n = actual.len().min(predicted.len());
    let den: f64 = actual[..n].iter().map(|a| a.abs()).sum();
    100.0
        * actual
            .iter()
            .zip(predicted)
            .map(|(a, p)| (a - p).abs())
            .sum::<f64>()
        / den
}

/// The validation error: MAPE where every actual value is positive, else WAPE.
fn validation_error(actual: &[f64], predicted: &[f64]) -> f64 {
    if actual.iter().all(|a| *a > 0.0) {
        mape(actual, predicted)
    } else {
        wape(actual, predicted)
    }
}

/// Mean absolute percentage error, in percent.
pub fn mape(actual: &[f64], predicted: &[f64]) -> f64 {
    let n = actual.len().min(predicted.len());
    100.0
        * actual
            .iter()
            .zip(predicted)
            .map(|(a, p)| ((a - p) / a).abs())
            .sum::<f64>()
        / n as f64
}

fn check(y: &[f64], period: usize, method: Method) -> Result<(), InsightError> {
    if period < 2 || y.len() < 2 * period + 2 {
        return Err(InsightError::NoData(
            "a seasonal forecast needs at least two full seasons of history",
        ));
    }
    if matches!(method, Method::HoltWintersMultiplicative | Method::Airline)
        && y.iter().any(|v| *v <= 0.0)
    {
        return Err(InsightError::NoData(
            "multiplicative and log models need positive values",
        ));
    }
    Ok(())
}

/// Forecasts `horizon` steps after `y` with `method`; `period` is the season length (12 for months).
pub fn forecast(
    y: &[f64],
    period: usize,
    horizon: usize,
    method: Method,
) -> Result<Forecast, InsightError> {
    check(y, period, method)?;
    let f = forecast_unclamped(y, period, horizon, method)?;
    Ok(clamped(y, f))
}

/// A series that never went below zero (sales) gets no negative forecasts or bounds.
fn clamped(y: &[f64], mut f: Forecast) -> Forecast {
    if y.iter().all(|v| *v >= 0.0) {
        for v in f.series_mut() {
            v.iter_mut().for_each(|x| *x = x.max(0.0));
        }
    }
    f
}

fn forecast_unclamped(
    y: &[f64],
    period: usize,
    horizon: usize,
    method: Method,
) -> Result<Forecast, InsightError> {
    match method {
        Method::SeasonalNaive => Ok(seasonal_naive(y, period, horizon)),
        Method::HoltWintersAdditive => holt_winters(y, period, horizon, false),
        Method::HoltWintersMultiplicative => holt_winters(y, period, horizon, true),
        Method::Airline => airline(y, period, horizon),
        Method::AutoEts => auto_ets(y, period, horizon),
        Method::Mstl => mstl(y, period, horizon),
        Method::Theta => theta(y, period, horizon),
        Method::Combined => combined(y, period, horizon, &COMBINED_MEMBERS),
    }
}

/// The sanity check a member of the automatic combination passes on the validation windows, besides a
/// plausible forecast at every origin: a mean error no worse than this factor of seasonal naive's. Only
/// a model that failed outright is left out; how close the members validated to one another is not used
/// — on three windows that is mostly noise (measured at stop 37: trimming the members to those within
/// 1.3× of the best, letting seasonal naive join only near the best fitted model, and taking a single
/// model that validated far better than the combination were all worse on series not tuned on).
const MEMBER_SANITY: f64 = 1.5;

/// The models a combination may average: one of each family — exponential smoothing (AutoETS), ARIMA
/// (the airline model), Theta, MSTL for daily series — with multiplicative Holt-Winters (least squares
/// follows a growing series' recent, large values, where likelihood does not), and seasonal naive:
/// averaged in, it pulls the fitted models' forecast towards the last season's pattern (on the series
/// measured it kept the combination from straying far from seasonal naive). Additive Holt-Winters only
/// where the multiplicative one cannot be fitted.
pub const COMBINED_MEMBERS: [Method; 7] = [
    Method::SeasonalNaive,
    Method::AutoEts,
    Method::Mstl,
    Method::Airline,
    Method::Theta,
    Method::HoltWintersMultiplicative,
    Method::HoltWintersAdditive,
];

/// Forecast combination: averaging models with different error patterns is a robust improvement
/// (the M-competitions' lesson). Members are those of `members` that fit `y` and whose forecast is
/// plausible; additive Holt-Winters only where the multiplicative one cannot be fitted (series with zero
/// values). Intervals average the members' bounds.
fn combined(y: &[f64], m: usize, h: usize, members: &[Method]) -> Result<Forecast, InsightError> {
    combined_parts(y, m, h, members).0
}

/// [`combined`], and the members that were fitted but left out because their forecast was implausible.
fn combined_parts(
    y: &[f64],
    m: usize,
    h: usize,
    members: &[Method],
) -> (Result<Forecast, InsightError>, Vec<Method>) {
    let positive = y.iter().all(|v| *v > 0.0);
    let mut fits = Vec::new();
    let mut implausible = Vec::new();
    for &member in members {
        if member == Method::Combined
            || (member == Method::HoltWintersAdditive
                && positive
                && members.contains(&Method::HoltWintersMultiplicative))
        {
            continue;
        }
        if check(y, m, member).is_err() {
            continue;
        }
        if let Ok(f) = forecast_unclamped(y, m, h, member) {
            if plausible(y, m, &f.point) {
                fits.push(f);
            } else {
                implausible.push(member);
            }
        }
    }
    // Seasonal naive alone is no combination.
    if fits.iter().all(|f| f.method == Method::SeasonalNaive) {
        return (
            Err(InsightError::NoData(
                "no model of the combination could be fitted",
            )),
            implausible,
        );
    }
    (
        Ok(mean_forecast(&fits.iter().collect::<Vec<_>>())),
        implausible,
    )
}

/// The combination of `fits` (the same length each): the mean of their points and of each bound.
fn mean_forecast(fits: &[&Forecast]) -> Forecast {
    let h = fits.first().map_or(0, |f| f.point.len());
    let mean = |f: fn(&Forecast) -> &Vec<f64>| -> Vec<f64> {
        (0..h)
            .map(|i| fits.iter().map(|m| f(m)[i]).sum::<f64>() / fits.len() as f64)
            .collect()
    };
    Forecast {
        method: Method::Combined,
        point: mean(|f| &f.point),
        lower80: mean(|f| &f.lower80),
        upper80: mean(|f| &f.upper80),
        lower95: mean(|f| &f.lower95),
        upper95: mean(|f| &f.upper95),
    }
}

/// How far [`interval_scales`] may narrow and widen a band: three windows say little about the tails,
/// so narrowing is limited more than widening.
const INTERVAL_SCALE_LIMITS: (f64, f64) = (0.67, 2.0);

/// Interval calibration on the validation windows (rolling-origin, as split conformal prediction): each
/// held-out value's distance from the point forecast as a share of the band's half on its side; the
/// 80% (95%) band is then scaled by the 80th (95th) percentile of those shares, within
/// [`INTERVAL_SCALE_LIMITS`]. A model's own bands assume its form is right; the windows say how wide
/// they had to be (on the tuning sets the averaged bands covered 87–94% of held-out values at 80%).
fn interval_scales(y: &[f64], origins: &[usize], fits: &[Forecast]) -> [f64; 2] {
    let mut shares = [Vec::new(), Vec::new()];
    for (f, &origin) in fits.iter().zip(origins) {
        for (i, p) in f.point.iter().enumerate() {
            let Some(a) = y.get(origin + i) else { break };
            for (k, (lo, hi)) in [(&f.lower80, &f.upper80), (&f.lower95, &f.upper95)]
                .into_iter()
                .enumerate()
            {
                let half = if a >= p { hi[i] - p } else { p - lo[i] };
                shares[k].push((a - p).abs() / half.max(1e-12));
            }
        }
    }
    let quantile = |v: &mut Vec<f64>, q: f64| -> f64 {
        if v.is_empty() {
            return 1.0;
        }
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i].clamp(INTERVAL_SCALE_LIMITS.0, INTERVAL_SCALE_LIMITS.1)
    };
    [
        quantile(&mut shares[0], 0.8),
        quantile(&mut shares[1], 0.95),
    ]
}

impl Forecast {
    /// Moves the 80% and 95% bounds away from (or towards) the point by the two factors.
    fn scale_intervals(&mut self, [s80, s95]: [f64; 2]) {
        for i in 0..self.point.len() {
            let p = self.point[i];
            self.lower80[i] = p - s80 * (p - self.lower80[i]);
            self.upper80[i] = p + s80 * (self.upper80[i] - p);
            self.lower95[i] = p - s95 * (p - self.lower95[i]);
            self.upper95[i] = p + s95 * (self.upper95[i] - p);
        }
    }
}

fn seasonal_naive(y: &[f64], m: usize, h: usize) -> Forecast {
    let n = y.len();
    let point: Vec<f64> = (0..h).map(|i| y[n - m + (i % m)]).collect();
    let diffs: Vec<f64> = (m..n).map(|t| y[t] - y[t - m]).collect();
    let sigma = (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt();
    let sd: Vec<f64> = (0..h)
        .map(|i| sigma * ((i / m + 1) as f64).sqrt())
        .collect();
    Forecast::from_sd(Method::SeasonalNaive, point, &sd)
}

/// Minimises `cost` over unconstrained parameters with Nelder–Mead.
pub(super) fn minimize(
    cost: impl Fn(&[f64]) -> f64,
    start: &[f64],
    what: &'static str,
) -> Result<Vec<f64>, InsightError> {
    struct Problem<F>(F);
    impl<F: Fn(&[f64]) -> f64> CostFunction for Problem<F> {
        type Param = Vec<f64>;
        type Output = f64;
        fn cost(&self, p: &Vec<f64>) -> Result<f64, Error> {
            let v = (self.0)(p);
            Ok(if v.is_finite() { v } else { f64::INFINITY })
        }
    }
    let mut simplex = vec![start.to_vec()];
    for i in 0..start.len() {
        let mut v = start.to_vec();
        v[i] += 0.5;
        simplex.push(v);
    }
    let fail = |e: Error| InsightError::Fit {
        model: what,
        reason: e.to_string(),
    };
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-10)
        .map_err(fail)?;
    let res = Executor::new(Problem(cost), solver)
        .configure(|s| s.max_iters(3_000))
        .run()
        .map_err(fail)?;
    res.state()
        .get_best_param()
        .cloned()
        .ok_or_else(|| InsightError::Fit {
            model: what,
            reason: "no parameters".into(),
        })
}

fn from_ets(method: Method, f: &ets::Fit, n: usize, h: usize) -> Forecast {
    let p = f.forecast(n, h);
    Forecast {
        method,
        point: p.point,
        lower80: p.lower80,
        upper80: p.upper80,
        lower95: p.lower95,
        upper95: p.upper95,
    }
}

/// Holt-Winters: the recursions of ETS(A,A,A) (additive) and ETS(M,A,M) (multiplicative), fitted as
/// classical Holt-Winters is — least squares on the one-step errors (R's `HoltWinters`, statsmodels'
/// `ExponentialSmoothing`) — with the starting states estimated and the weights inside the usual region.
/// AutoETS fits the same forms by likelihood; the two differ most on a growing series, where least
/// squares follows the recent, large values.
fn holt_winters(y: &[f64], m: usize, h: usize, mult: bool) -> Result<Forecast, InsightError> {
    use ets::Kind::{Additive, Multiplicative};
    let (spec, method) = if mult {
        (
            ets::Spec::new(Multiplicative, Additive, Multiplicative),
            Method::HoltWintersMultiplicative,
        )
    } else {
        (
            ets::Spec::new(Additive, Additive, Additive),
            Method::HoltWintersAdditive,
        )
    };
    let f = ets::fit_by(y, m, spec, ets::Criterion::LeastSquares)?;
    Ok(from_ets(method, &f, y.len(), h))
}

fn auto_ets(y: &[f64], m: usize, h: usize) -> Result<Forecast, InsightError> {
    let f = ets::auto(y, m)?;
    Ok(from_ets(Method::AutoEts, &f, y.len(), h))
}

/// Days in the yearly season MSTL takes out of a daily series with at least two years of history.
const DAYS_IN_YEAR: usize = 365;

/// MSTL + ETS for a daily series (`m` = 7), as statsforecast's MSTL model and R's `stlf`: the series is
/// decomposed into trend, weekly season, yearly season (with two full years) and remainder (stlrs' MSTL,
/// R's default smoothing windows); the seasonally adjusted series (trend + remainder) is forecast by
/// non-seasonal AutoETS, with its intervals, and each season by repeating its last cycle.
fn mstl(y: &[f64], m: usize, h: usize) -> Result<Forecast, InsightError> {
    if m != 7 {
        return Err(InsightError::NoData("MSTL is used for daily series"));
    }
    let mut periods = vec![7];
    if y.len() >= 2 * DAYS_IN_YEAR + 2 * 7 {
        periods.push(DAYS_IN_YEAR);
    }
    let fit = stlrs::Mstl::fit(y, &periods)
        .map_err(|_| InsightError::NoData("the series could not be decomposed (MSTL)"))?;
    let n = y.len();
    let seasons = fit.seasonal();
    let adjusted: Vec<f64> = (0..n)
        .map(|t| y[t] - seasons.iter().map(|s| s[t]).sum::<f64>())
        .collect();
    let ets = ets::auto(&adjusted, 1)?;
    let p = ets.forecast(n, h);
    let ahead: Vec<f64> = (0..h)
        .map(|i| {
            periods
                .iter()
                .zip(seasons)
                .map(|(&period, s)| s[n - period + (i % period)])
                .sum()
        })
        .collect();
    let add = |v: Vec<f64>| -> Vec<f64> { v.iter().zip(&ahead).map(|(a, b)| a + b).collect() };
    Ok(Forecast {
        method: Method::Mstl,
        point: add(p.point),
        lower80: add(p.lower80),
        upper80: add(p.upper80),
        lower95: add(p.lower95),
        upper95: add(p.upper95),
    })
}

/// Whether `y` has a season of length `m`, by the test R's `thetaf` uses: the autocorrelation at lag `m`
/// beyond 1.645 standard errors (Bartlett's, from the lags below it), i.e. significant at 90%.
fn has_season(y: &[f64], m: usize) -> bool {
    let n = y.len();
    if m < 2 || n <= 2 * m {
        return false;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let denom: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    if denom <= 0.0 {
        return false;
    }
    let r = |k: usize| {
        (0..n - k)
            .map(|t| (y[t] - mean) * (y[t + k] - mean))
            .sum::<f64>()
            / denom
    };
    let below: f64 = (1..m).map(|k| r(k).powi(2)).sum();
    let se = ((1.0 + 2.0 * below) / n as f64).sqrt();
    r(m).abs() / se > 1.645
}

/// Classical decomposition's seasonal figure (R's `decompose`): the series over (or minus) its centred
/// moving average of one season, averaged per position `t % m` and normalised to a mean of 1 (0).
fn seasonal_figure(y: &[f64], m: usize, mult: bool) -> Vec<f64> {
    let n = y.len();
    let half = m / 2;
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    for t in half..n.saturating_sub(half) {
        // A centred moving average of order m (2×m when m is even: the end points weigh half).
        let trend = if m.is_multiple_of(2) {
            (0.5 * y[t - half] + y[t - half + 1..t + half].iter().sum::<f64>() + 0.5 * y[t + half])
                / m as f64
        } else {
            y[t - half..=t + half].iter().sum::<f64>() / m as f64
        };
        sums[t % m] += if mult { y[t] / trend } else { y[t] - trend };
        counts[t % m] += 1;
    }
    let mut figure: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| s / (*c).max(1) as f64)
        .collect();
    let mean = figure.iter().sum::<f64>() / m as f64;
    for f in &mut figure {
        if mult {
            *f /= mean;
        } else {
            *f -= mean;
        }
    }
    figure
}

/// The Theta method as R's `thetaf` (Hyndman & Billah 2003: simple exponential smoothing with drift):
/// where the series has a season ([`has_season`]), it is adjusted by the classical decomposition
/// (multiplicative for positive series, additive otherwise); simple exponential smoothing (ETS(A,N,N) by
/// likelihood) forecasts the adjusted series, plus half the slope of its least-squares line as drift; the
/// season is put back. The h-step standard error is SES's, σ√(1 + (h−1)α²), seasonalised with the point.
fn theta(y: &[f64], m: usize, h: usize) -> Result<Forecast, InsightError> {
    use ets::Kind::{Additive, None as No};
    let n = y.len();
    if n < 4 {
        return Err(InsightError::NoData("Theta needs at least four values"));
    }
    let mult = y.iter().all(|v| *v > 0.0);
    let figure = if has_season(y, m) {
        seasonal_figure(y, m, mult)
    } else {
        vec![if mult { 1.0 } else { 0.0 }; m.max(1)]
    };
    let m = figure.len();
    if mult && figure.iter().any(|f| *f < 1e-4) {
        return Err(InsightError::NoData(
            "a seasonal index of the series is zero",
        ));
    }
    let adjust = |v: f64, t: usize| {
        if mult {
            v / figure[t % m]
        } else {
            v - figure[t % m]
        }
    };
    let reseason = |v: f64, t: usize| {
        if mult {
            v * figure[t % m]
        } else {
            v + figure[t % m]
        }
    };
    let x: Vec<f64> = y.iter().enumerate().map(|(t, v)| adjust(*v, t)).collect();
    let ses = ets::fit(&x, 1, ets::Spec::new(Additive, No, No))?;
    // The least-squares slope of x on 0..n.
    let t_mean = (n - 1) as f64 / 2.0;
    let x_mean = x.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in x.iter().enumerate() {
        sxy += (t as f64 - t_mean) * (v - x_mean);
        sxx += (t as f64 - t_mean).powi(2);
    }
    let drift = 0.5 * sxy / sxx;
    let alpha = ses.alpha.max(1e-10);
    let start = (1.0 - (1.0 - alpha).powi(n as i32)) / alpha;
    let sigma = ses.sigma2.sqrt();
    let mut point = Vec::with_capacity(h);
    let mut sd = Vec::with_capacity(h);
    for i in 0..h {
        let t = n + i;
        let p = ses.level + drift * (i as f64 + start);
        let s = sigma * (1.0 + i as f64 * alpha * alpha).sqrt();
        point.push(reseason(p, t));
        sd.push(if mult { s * figure[t % m] } else { s });
    }
    Ok(Forecast::from_sd(Method::Theta, point, &sd))
}

/// The ETS form AutoETS chooses on `y`, e.g. "ETS(M,Ad,M)".
pub fn auto_ets_form(y: &[f64], m: usize) -> Option<String> {
    ets::auto(y, m).ok().map(|f| f.spec.name())
}

/// Residuals of the airline model on the seasonally and regularly differenced log series.
fn airline_residuals(w: &[f64], m: usize, theta: f64, big_theta: f64) -> Vec<f64> {
    let mut a = vec![0.0; w.len()];
    for t in 0..w.len() {
        let lag = |k: usize| if t >= k { a[t - k] } else { 0.0 };
        a[t] = w[t] + theta * lag(1) + big_theta * lag(m) - theta * big_theta * lag(m + 1);
    }
    a
}

fn airline(y: &[f64], m: usize, h: usize) -> Result<Forecast, InsightError> {
    let z: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let n = z.len();
    // w_t = (1 − B)(1 − B^m) z_t
    let w: Vec<f64> = (m + 1..n)
        .map(|t| z[t] - z[t - 1] - z[t - m] + z[t - m - 1])
        .collect();
    let best = minimize(
        |p| {
            airline_residuals(&w, m, p[0].tanh(), p[1].tanh())
                .iter()
                .map(|a| a * a)
                .sum()
        },
        &[0.3, 0.3],
        "airline ARIMA",
    )?;
    let (theta, big_theta) = (best[0].tanh(), best[1].tanh());
    let mut a = airline_residuals(&w, m, theta, big_theta);
    let sigma2 = a.iter().skip(m + 1).map(|v| v * v).sum::<f64>() / (a.len() - m - 1) as f64;
    // Forecast w with future shocks at zero, then undo the differencing on z.
    let mut zf = z.clone();
    for _ in 0..h {
        let t = a.len();
        let lag = |k: usize| if t >= k { a[t - k] } else { 0.0 };
        let w_next = -theta * lag(1) - big_theta * lag(m) + theta * big_theta * lag(m + 1);
        a.push(0.0);
        let k = zf.len();
        zf.push(w_next + zf[k - 1] + zf[k - m] - zf[k - m - 1]);
    }
    // ψ-weights of (1 − B)(1 − B^m) ψ(B) = (1 − θB)(1 − ΘB^m) for the h-step error variance.
    let mut psi = vec![0.0; h];
    for j in 0..h {
        let ma = match j {
            0 => 1.0,
            1 => -theta,
            _ if j == m => -big_theta,
            _ if j == m + 1 => theta * big_theta,
            _ => 0.0,
        };
        let get = |k: usize| if j >= k { psi[j - k] } else { 0.0 };
        psi[j] = ma + get(1) + get(m) - get(m + 1);
    }
    let mut point = Vec::with_capacity(h);
    let mut sd_log = Vec::with_capacity(h);
    let mut acc = 0.0;
    for i in 0..h {
        acc += psi[i] * psi[i];
        point.push(zf[n + i]);
        sd_log.push((sigma2 * acc).sqrt());
    }
    // Intervals are symmetric on the log scale, then exponentiated.
    let band = |z: f64, sign: f64| {
        point
            .iter()
            .zip(&sd_log)
            .map(|(p, s)| (p + sign * z * s).exp())
            .collect()
    };
    Ok(Forecast {
        method: Method::Airline,
        lower80: band(Z80, -1.0),
        upper80: band(Z80, 1.0),
        lower95: band(Z95, -1.0),
        upper95: band(Z95, 1.0),
        point: point.iter().map(|p| p.exp()).collect(),
    })
}

/// Which model a series gets: rolling-origin validation — each candidate forecasts `horizon` points from
/// each of the last few origins of the history (only what came before each origin is used), scored by its
/// mean error (MAPE, or WAPE when the series has zero values). The combination — the equal-weight mean of
/// the members that passed the sanity
/// check on those windows (plausible forecasts at every origin and an error no worse than
/// [`MEMBER_SANITY`]× seasonal naive's) — is chosen wherever it has two members; the best-validated single
/// model only where it has not. The windows' errors are reported (how well the model did on the history)
/// and calibrate the intervals.
#[derive(Debug, Clone, Serialize)]
pub struct Selection {
    pub chosen: Method,
    pub validation_mape: Vec<(Method, f64)>,
    /// Models whose forecast over the horizon left the plausible range (see [`plausible`]), so they were
    /// not used: tried before the chosen one, or members left out of the combination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implausible: Vec<Method>,
    /// The members the combination averages (those that passed the sanity check).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub combined_members: Vec<Method>,
    /// How many validation windows (each as long as the validation horizon) the errors are means over.
    pub validation_windows: usize,
    /// Each model's interval scales (80%, 95%) from the validation windows (see [`interval_scales`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interval_scales: Vec<(Method, [f64; 2])>,
}

impl Selection {
    /// The chosen model's mean validation error (MAPE or WAPE, percent).
    pub fn chosen_error(&self) -> Option<f64> {
        self.validation_mape
            .iter()
            .find(|(m, _)| *m == self.chosen)
            .map(|(_, e)| *e)
    }
}

pub fn select(y: &[f64], period: usize, horizon: usize) -> Result<Selection, InsightError> {
    const ORIGINS: usize = 3;
    if y.len() < 2 * period + 2 + horizon {
        return Err(InsightError::NoData(
            "a seasonal forecast needs at least two full seasons of history, plus the horizon to choose a model",
        ));
    }
    let origins: Vec<usize> = (1..=ORIGINS)
        .filter_map(|k| y.len().checked_sub(k * horizon))
        .filter(|o| *o >= 2 * period + 2)
        .collect();
    let mut scores = Vec::new();
    let mut passed: Vec<(Method, Vec<Forecast>)> = Vec::new();
    let mut interval_scales_of = Vec::new();
    let mut first_error = None;
    let mut naive_error = f64::INFINITY;
    for m in Method::ALL {
        if m == Method::Combined {
            continue;
        }
        let mut errors = Vec::new();
        let mut fits = Vec::new();
        let mut sane = true;
        for &origin in &origins {
            let (fit, rest) = y.split_at(origin);
            match forecast_unclamped(fit, period, horizon, m).and_then(|f| {
                check(fit, period, m)?;
                Ok(f)
            }) {
                Ok(f) => {
                    sane &= plausible(fit, period, &f.point);
                    let f = clamped(fit, f);
                    errors.push(validation_error(&rest[..horizon], &f.point));
                    fits.push(f);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if errors.len() != origins.len() || errors.is_empty() {
            continue;
        }
        let e = errors.iter().sum::<f64>() / errors.len() as f64;
        if !e.is_finite() {
            continue;
        }
        if m == Method::SeasonalNaive {
            naive_error = e;
        }
        scores.push((m, e));
        interval_scales_of.push((m, interval_scales(y, &origins, &fits)));
        if sane && COMBINED_MEMBERS.contains(&m) {
            passed.push((m, fits));
        }
    }
    // The sanity check, and additive Holt-Winters only where the multiplicative one is missing.
    let error_of = |m: Method| scores.iter().find(|(s, _)| *s == m).map(|(_, e)| *e);
    let has_mult = passed
        .iter()
        .any(|(m, _)| *m == Method::HoltWintersMultiplicative);
    passed.retain(|(m, _)| {
        error_of(*m).is_some_and(|e| e <= MEMBER_SANITY * naive_error)
            && !(*m == Method::HoltWintersAdditive && has_mult)
    });
    // Seasonal naive alone is no combination.
    if passed.iter().all(|(m, _)| *m == Method::SeasonalNaive) {
        passed.clear();
    }
    let combined_members: Vec<Method> = passed.iter().map(|(m, _)| *m).collect();
    if passed.len() >= 2 {
        let means: Vec<Forecast> = (0..origins.len())
            .map(|k| mean_forecast(&passed.iter().map(|(_, f)| &f[k]).collect::<Vec<_>>()))
            .collect();
        let errors: Vec<f64> = means
            .iter()
            .zip(&origins)
            .map(|(f, &origin)| validation_error(&y[origin..origin + horizon], &f.point))
            .collect();
        scores.push((
            Method::Combined,
            errors.iter().sum::<f64>() / errors.len() as f64,
        ));
        interval_scales_of.push((Method::Combined, interval_scales(y, &origins, &means)));
    }
    // The combination wherever it could be formed (over a few windows, "best" is partly luck, and equal
    // averages fail less badly out of sample: the M3/M4 lesson); otherwise the best-validated model.
    let chosen = if scores.iter().any(|(m, _)| *m == Method::Combined) {
        Method::Combined
    } else {
        match scores.iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
            Some((m, _)) => *m,
            None => {
                return Err(first_error.unwrap_or(InsightError::NoData("no model could be fitted")));
            }
        }
    };
    Ok(Selection {
        chosen,
        validation_mape: scores,
        implausible: Vec::new(),
        combined_members,
        validation_windows: origins.len(),
        interval_scales: interval_scales_of,
    })
}

/// Forecasts with the model [`select`] picks on windows as long as the horizon.
pub fn auto_forecast(
    y: &[f64],
    period: usize,
    horizon: usize,
) -> Result<(Selection, Forecast), InsightError> {
    auto_forecast_validated(y, period, horizon, horizon)
}

/// Forecasts `horizon` steps with the model [`select`] picks on validation windows of `validation`
/// steps: with a fixed window the choice, and so every step's figure, is the same whatever the horizon
/// (a 7-day forecast is the first week of the 30-day one).
pub fn auto_forecast_validated(
    y: &[f64],
    period: usize,
    horizon: usize,
    validation: usize,
) -> Result<(Selection, Forecast), InsightError> {
    let mut selection = select(y, period, validation)?;
    // The best-validated model whose forecast over the whole horizon is plausible; seasonal naive (a
    // repeat of the last season) always is.
    let mut ranked = selection.validation_mape.clone();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    // The chosen one first (the combination may be chosen without validating best).
    if let Some(i) = ranked.iter().position(|(m, _)| *m == selection.chosen) {
        let c = ranked.remove(i);
        ranked.insert(0, c);
    }
    for (m, _) in ranked {
        let raw = if m == Method::Combined {
            // Members whose forecast over the whole horizon is implausible are left out (and said so).
            let (raw, left_out) = combined_parts(y, period, horizon, &selection.combined_members);
            if raw.is_ok() {
                selection.combined_members.retain(|m| !left_out.contains(m));
                selection.implausible.extend(left_out);
            }
            raw
        } else {
            forecast_unclamped(y, period, horizon, m)
        };
        let Ok(raw) = raw else {
            selection.implausible.push(m);
            continue;
        };
        if plausible(y, period, &raw.point) {
            selection.chosen = m;
            let mut f = raw;
            if let Some((_, scales)) = selection.interval_scales.iter().find(|(s, _)| *s == m) {
                f.scale_intervals(*scales);
            }
            return Ok((selection, clamped(y, f)));
        }
        selection.implausible.push(m);
    }
    selection.chosen = Method::SeasonalNaive;
    Ok((
        selection,
        forecast(y, period, horizon, Method::SeasonalNaive)?,
    ))
}

/// Whether a forecast of `y` stays in a plausible range: finite, at most 10× the history's peak, and
/// — for a series positive throughout its last two seasons (a shop that sells every day) — above zero.
/// A trend extrapolated into negative sales or an explosion fails; an ordinary forecast passes.
pub fn plausible(y: &[f64], period: usize, point: &[f64]) -> bool {
    let peak = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let always_positive = y.iter().rev().take(2 * period).all(|v| *v > 0.0);
    point.iter().all(|p| {
        p.is_finite() && p.abs() <= 10.0 * peak.max(1e-9) && (!always_positive || *p > 0.0)
    })
}

/// Test-set MAPE of every method and of the automatically chosen one, with the last `holdout` points held
/// out (the choice itself sees only the training part).
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub holdout: usize,
    pub test_mape: Vec<(Method, f64)>,
    pub selection: Selection,
    pub chosen_mape: f64,
}

pub fn evaluate(y: &[f64], period: usize, holdout: usize) -> Result<Evaluation, InsightError> {
    let (train, test) = y.split_at(y.len() - holdout);
    let mut test_mape = Vec::new();
    // Models that cannot be fitted on the series (no stable fit, values not positive) are left out.
    for m in Method::ALL {
        if let Ok(f) = forecast(train, period, holdout, m) {
            test_mape.push((m, mape(test, &f.point)));
        }
    }
    let (selection, f) = auto_forecast(train, period, holdout)?;
    Ok(Evaluation {
        holdout,
        test_mape,
        chosen_mape: mape(test, &f.point),
        selection,
    })
}

/// Symmetric MAPE in percent: mean of 200·|a − p| / (|a| + |p|) (0 where both are 0).
pub fn smape(actual: &[f64], predicted: &[f64]) -> f64 {
    let n = actual.len().min(predicted.len());
    100.0
        * actual
            .iter()
            .zip(predicted)
            .map(|(a, p)| {
                let d = a.abs() + p.abs();
                if d == 0.0 {
                    0.0
                } else {
                    2.0 * (a - p).abs() / d
                }
            })
            .sum::<f64>()
        / n as f64
}

/// Mean absolute scaled error: the forecast's mean absolute error over the in-sample mean absolute error
/// of the seasonal-naive forecast on `train` (Hyndman & Koehler, 2006).
pub fn mase(train: &[f64], period: usize, actual: &[f64], predicted: &[f64]) -> f64 {
    let scale = (period..train.len())
        .map(|t| (train[t] - train[t - period]).abs())
        .sum::<f64>()
        / (train.len() - period) as f64;
    let mae = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).abs())
        .sum::<f64>()
        / actual.len() as f64;
    mae / scale
}

/// One model's errors on a held-out part.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub method: Method,
    pub mape: f64,
    pub smape: f64,
    pub mase: f64,
    /// Held-out points inside the 80% and the 95% interval.
    pub inside80: usize,
    pub inside95: usize,
    /// The forecast scored (point and bounds over the held-out part).
    pub forecast: Forecast,
}

impl Score {
    fn of(method: Method, train: &[f64], period: usize, test: &[f64], f: &Forecast) -> Self {
        let inside = |lo: &[f64], hi: &[f64]| {
            test.iter()
                .enumerate()
                .filter(|(i, a)| lo[*i] <= **a && **a <= hi[*i])
                .count()
        };
        Self {
            method,
            mape: mape(test, &f.point),
            smape: smape(test, &f.point),
            mase: mase(train, period, test, &f.point),
            inside80: inside(&f.lower80, &f.upper80),
            inside95: inside(&f.lower95, &f.upper95),
            forecast: f.clone(),
        }
    }
}

/// A series' held-out scores: the automatically chosen model (chosen on the training part only), seasonal
/// naive and AutoETS.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesScore {
    pub length: usize,
    pub holdout: usize,
    pub selection: Selection,
    pub chosen: Score,
    pub seasonal_naive: Score,
    pub auto_ets: Option<Score>,
    /// The form AutoETS chose on the training part.
    pub auto_ets_form: Option<String>,
    /// Every model's scores, forced (those that could be fitted).
    pub methods: Vec<Score>,
}

pub fn score_series(y: &[f64], period: usize, holdout: usize) -> Result<SeriesScore, InsightError> {
    if holdout == 0 || y.len() <= holdout {
        return Err(InsightError::NoData(
            "the series is shorter than the held-out part",
        ));
    }
    let (train, test) = y.split_at(y.len() - holdout);
    let (selection, f) = auto_forecast(train, period, holdout)?;
    let chosen = Score::of(selection.chosen, train, period, test, &f);
    let sn = forecast(train, period, holdout, Method::SeasonalNaive)?;
    let seasonal_naive = Score::of(Method::SeasonalNaive, train, period, test, &sn);
    let ets_fit = ets::auto(train, period).ok();
    let auto_ets = ets_fit.as_ref().map(|fit| {
        let f = clamped(train, from_ets(Method::AutoEts, fit, train.len(), holdout));
        Score::of(Method::AutoEts, train, period, test, &f)
    });
    let methods = Method::ALL
        .iter()
        .filter_map(|&m| {
            let f = forecast(train, period, holdout, m).ok()?;
            Some(Score::of(m, train, period, test, &f))
        })
        .collect();
    Ok(SeriesScore {
        methods,
        length: y.len(),
        holdout,
        selection,
        chosen,
        seasonal_naive,
        auto_ets,
        auto_ets_form: ets_fit.map(|f| f.spec.name()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three years of a daily shop: weekly pattern, slow growth, and a two-week peak before each year's
    /// end that a weekly model cannot know of; a little deterministic noise.
    fn shop_with_a_yearly_peak(days: usize) -> Vec<f64> {
        (0..days)
            .map(|t| {
                let week = [1.0, 0.9, 0.95, 1.0, 1.1, 1.4, 1.3][t % 7];
                let peak = if (350..364).contains(&(t % 365)) {
                    400.0
                } else {
                    0.0
                };
                let noise = ((t * 7919) % 101) as f64 - 50.0;
                (1000.0 + 0.2 * t as f64) * week + peak + noise
            })
            .collect()
    }

    #[test]
    fn mstl_forecasts_a_yearly_peak_that_weekly_models_miss() {
        // The history ends on day 340 of its third year; the next 28 days hold that year's peak.
        let y = shop_with_a_yearly_peak(2 * 365 + 340 + 28);
        let (train, test) = y.split_at(y.len() - 28);
        let m = forecast(train, 7, 28, Method::Mstl).unwrap();
        let e = forecast(train, 7, 28, Method::AutoEts).unwrap();
        let (em, ee) = (mape(test, &m.point), mape(test, &e.point));
        assert!(em < 5.0 && em < ee / 2.0, "MSTL {em:.2}%, AutoETS {ee:.2}%");
        // The peak days are forecast above the days before them.
        let before: f64 = m.point[..7].iter().sum();
        let during: f64 = m.point[14..21].iter().sum();
        assert!(during > before * 1.2, "{:?}", m.point);
        for i in 0..28 {
            assert!(m.lower95[i] < m.lower80[i] && m.lower80[i] < m.point[i]);
            assert!(m.point[i] < m.upper80[i] && m.upper80[i] < m.upper95[i]);
        }
    }

    #[test]
    fn mstl_is_for_daily_series_only() {
        let y = seasonal_series(60, true);
        assert!(forecast(&y, 4, 8, Method::Mstl).is_err());
        assert!(forecast(&y, 12, 8, Method::Mstl).is_err());
    }

    #[test]
    fn interval_scales_follow_the_validation_windows_within_limits() {
        let band = |half: f64| Forecast {
            method: Method::SeasonalNaive,
            point: vec![10.0; 10],
            lower80: vec![10.0 - half; 10],
            upper80: vec![10.0 + half; 10],
            lower95: vec![10.0 - 2.0 * half; 10],
            upper95: vec![10.0 + 2.0 * half; 10],
        };
        // Held-out values 10 ± 0.5: the ±1 band was twice as wide as needed at every quantile; it is
        // narrowed, but not below the limit.
        let y: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 10.5 } else { 9.5 })
            .collect();
        let s = interval_scales(&y, &[0, 10, 20], &[band(1.0), band(1.0), band(1.0)]);
        assert_eq!(s, [INTERVAL_SCALE_LIMITS.0; 2]);
        // Values ±3 away from a ±1 band: widened, but no more than twice.
        let y: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 13.0 } else { 7.0 })
            .collect();
        assert_eq!(
            interval_scales(&y, &[0, 10, 20], &[band(1.0), band(1.0), band(1.0)]),
            [2.0, 1.5]
        );
        let mut f = band(1.0);
        f.scale_intervals([2.0, 1.5]);
        assert_eq!((f.lower80[0], f.upper80[0]), (8.0, 12.0));
        assert_eq!((f.lower95[0], f.upper95[0]), (7.0, 13.0));
    }

    /// A shop whose daily sales fell steadily: a trend extrapolated 200 days ahead goes below zero.
    #[test]
    fn a_forecast_that_would_go_negative_is_not_chosen() {
        let y: Vec<f64> = (0..120)
            .map(|i| (1200.0 - 9.0 * i as f64) * [1.0, 0.9, 1.1, 1.0, 1.2, 1.4, 0.8][i % 7])
            .collect();
        let (sel, f) = auto_forecast_validated(&y, 7, 200, 14).unwrap();
        // The trend models validated best; over 200 days they would sell below zero, so they are left
        // out of the combination, and the selection says so.
        assert!(
            sel.implausible.contains(&Method::AutoEts),
            "a trend model was set aside: {sel:?}"
        );
        assert!(
            sel.implausible
                .iter()
                .all(|m| !sel.combined_members.contains(m)),
            "{sel:?}"
        );
        let raw = forecast_unclamped(&y, 7, 200, sel.chosen).unwrap();
        assert!(plausible(&y, 7, &raw.point), "{sel:?}");
        assert!(f.point.iter().all(|p| *p > 0.0));
        for i in 0..200 {
            assert!(
                f.lower95[i] <= f.point[i] && f.point[i] <= f.upper95[i],
                "step {i}"
            );
        }
    }

    fn seasonal_series(n: usize, mult: bool) -> Vec<f64> {
        (0..n)
            .map(|t| {
                let s = [1.0, 1.2, 0.9, 1.1][t % 4];
                let level = 100.0 + 2.0 * t as f64;
                if mult {
                    level * s
                } else {
                    level + 20.0 * (s - 1.0) * 5.0
                }
            })
            .collect()
    }

    #[test]
    fn exact_seasonal_patterns_are_forecast_closely() {
        for (mult, method) in [
            (false, Method::HoltWintersAdditive),
            (true, Method::HoltWintersMultiplicative),
        ] {
            let y = seasonal_series(48, mult);
            let truth = seasonal_series(56, mult)[48..].to_vec();
            let f = forecast(&y, 4, 8, method).unwrap();
            assert!(
                mape(&truth, &f.point) < 1.0,
                "{method:?}: {:?} vs {truth:?}",
                f.point
            );
            for i in 0..8 {
                assert!(
                    f.lower95[i] <= f.lower80[i]
                        && f.lower80[i] <= f.point[i]
                        && f.point[i] <= f.upper80[i]
                );
            }
        }
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        let y: Vec<f64> = (0..12).map(|t| (t % 4) as f64 + 1.0).collect();
        assert_eq!(
            forecast(&y, 4, 6, Method::SeasonalNaive).unwrap().point,
            vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0]
        );
    }

    /// A monthly pattern times a level, with seeded noise.
    fn noisy_months(n: usize, slope: f64, seed: u64) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let pattern = [0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.2, 1.0, 0.9, 0.8, 0.9, 0.9];
        (0..n)
            .map(|t| (200.0 + slope * t as f64) * pattern[t % 12] * rng.random_range(0.97..1.03))
            .collect()
    }

    #[test]
    fn the_season_test_finds_a_season_and_not_noise() {
        assert!(has_season(&noisy_months(72, 0.0, 1), 12));
        let noise: Vec<f64> = noisy_months(72, 0.0, 2)
            .iter()
            .enumerate()
            .map(|(t, v)| v / [0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.2, 1.0, 0.9, 0.8, 0.9, 0.9][t % 12])
            .collect();
        assert!(!has_season(&noise, 12));
    }

    #[test]
    fn the_seasonal_figure_of_an_exact_pattern_is_the_pattern() {
        let pattern = [0.5, 1.5, 1.0, 1.0];
        let y: Vec<f64> = (0..40).map(|t| 80.0 * pattern[t % 4]).collect();
        for (f, p) in seasonal_figure(&y, 4, true).iter().zip(pattern) {
            assert!((f - p).abs() < 1e-12, "{f} vs {p}");
        }
        let y: Vec<f64> = (0..40).map(|t| 80.0 + 10.0 * pattern[t % 4]).collect();
        for (f, p) in seasonal_figure(&y, 4, false).iter().zip(pattern) {
            assert!((f - 10.0 * (p - 1.0)).abs() < 1e-9, "{f} vs {p}");
        }
    }

    /// Theta is simple exponential smoothing plus half the least-squares slope per step (Hyndman &
    /// Billah): on a trending series without a season its forecast rises by exactly that much a step.
    #[test]
    fn theta_drifts_by_half_the_trend_and_keeps_the_season() {
        let y: Vec<f64> = (0..60)
            .map(|t| 100.0 + 3.0 * t as f64 + [2.0, -1.0, 0.5, -1.5][t % 4])
            .collect();
        assert!(!has_season(&y, 12));
        let f = theta(&y, 12, 6).unwrap();
        for w in f.point.windows(2) {
            assert!((w[1] - w[0] - 1.5).abs() < 0.01, "{:?}", f.point);
        }
        // A flat seasonal series: the season comes back on the level.
        let y = noisy_months(96, 0.0, 3);
        let f = theta(&y, 12, 12).unwrap();
        let truth: Vec<f64> = noisy_months(108, 0.0, 3)[96..].to_vec();
        assert!(mape(&truth, &f.point) < 4.0, "{:?} vs {truth:?}", f.point);
        for i in 0..12 {
            assert!(f.lower95[i] < f.lower80[i] && f.lower80[i] < f.point[i]);
            assert!(f.point[i] < f.upper80[i] && f.upper80[i] < f.upper95[i]);
        }
    }

    #[test]
    fn too_little_history_is_an_error() {
        assert!(forecast(&[1.0, 2.0, 3.0], 12, 3, Method::Airline).is_err());
    }
}
