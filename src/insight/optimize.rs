//! Maximum-likelihood fitting of positive parameters: Nelder–Mead (argmin) on their logarithms, so every
//! step stays in the valid region without constraints.

use std::cell::RefCell;

use argmin::core::{CostFunction, Error, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::neldermead::NelderMead;
use argmin::solver::quasinewton::LBFGS;

use super::InsightError;

struct NegLogLik<'a> {
    log_lik: &'a dyn Fn(&[f64]) -> f64,
}

impl CostFunction for NegLogLik<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, log_params: &Self::Param) -> Result<f64, Error> {
        let params: Vec<f64> = log_params.iter().map(|x| x.exp()).collect();
        let ll = (self.log_lik)(&params);
        // Outside the numerically valid region the likelihood is NaN: treat it as impossible.
        Ok(if ll.is_finite() { -ll } else { f64::INFINITY })
    }
}

/// The outcome of a fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub params: Vec<f64>,
    pub log_likelihood: f64,
    pub iterations: u64,
}

/// Maximises `log_lik` over positive parameters, starting from `start`.
pub fn maximize_positive(
    log_lik: &dyn Fn(&[f64]) -> f64,
    start: &[f64],
    model: &'static str,
) -> Result<Fitted, InsightError> {
    let fail = |e: Error| InsightError::Fit {
        model,
        reason: e.to_string(),
    };
    let x0: Vec<f64> = start.iter().map(|p| p.ln()).collect();
    // Two rounds: the second restarts from the first's optimum with a fresh simplex, which guards
    // against Nelder–Mead's occasional collapse before the true optimum.
    let mut best = x0;
    let mut iterations = 0;
    let mut value = f64::INFINITY;
    for scale in [0.5, 0.05] {
        let mut simplex = vec![best.clone()];
        for i in 0..best.len() {
            let mut v = best.clone();
            v[i] += scale;
            simplex.push(v);
        }
        let solver = NelderMead::new(simplex)
            .with_sd_tolerance(1e-10)
            .map_err(fail)?;
        let result = Executor::new(NegLogLik { log_lik }, solver)
            .configure(|s| s.max_iters(5_000))
            .run()
            .map_err(fail)?;
        let state = result.state();
        iterations += state.get_iter();
        best = state
            .get_best_param()
            .cloned()
            .ok_or_else(|| InsightError::Fit {
                model,
                reason: "no parameters found".into(),
            })?;
        value = state.get_best_cost();
    }
    if !value.is_finite() {
        return Err(InsightError::Fit {
            model,
            reason: "the likelihood is not finite anywhere the search went".into(),
        });
    }
    Ok(Fitted {
        params: best.iter().map(|x| x.exp()).collect(),
        log_likelihood: -value,
        iterations,
    })
}

/// A log-likelihood with its gradient in the parameters (not their logarithms).
pub type LogLikWithGradient<'a> = &'a dyn Fn(&[f64]) -> (f64, Vec<f64>);

/// −ln L and its gradient in log-parameters, computed together and cached (argmin asks for them
/// separately at the same point).
struct NegLogLikGrad<'a> {
    f: LogLikWithGradient<'a>,
    /// Divides ln L (a sum over thousands of customers) so that the first quasi-Newton step, taken along
    /// the raw gradient, stays in a sensible range.
    scale: f64,
    last: RefCell<Option<Evaluated>>,
}

/// A point with its cost and gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

impl NegLogLikGrad<'_> {
    fn eval(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        if let Some((t, v, g)) = &*self.last.borrow()
            && t.as_slice() == theta
        {
            return (*v, g.clone());
        }
        let params: Vec<f64> = theta.iter().map(|x| x.exp()).collect();
        let (ll, grad) = (self.f)(&params);
        let (v, g) = if ll.is_finite() && grad.iter().all(|g| g.is_finite()) {
            // d(−ln L)/dθ = −p · d ln L / dp for θ = ln p
            (
                -ll / self.scale,
                grad.iter()
                    .zip(&params)
                    .map(|(g, p)| -g * p / self.scale)
                    .collect(),
            )
        } else {
            (f64::INFINITY, vec![0.0; theta.len()])
        };
        *self.last.borrow_mut() = Some((theta.to_vec(), v, g.clone()));
        (v, g)
    }
}

impl CostFunction for NegLogLikGrad<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, theta: &Self::Param) -> Result<f64, Error> {
        Ok(self.eval(theta).0)
    }
}

impl Gradient for NegLogLikGrad<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, Error> {
        Ok(self.eval(theta).1)
    }
}

/// Maximises a log-likelihood over positive parameters with L-BFGS (More–Thuente line search) on their
/// logarithms, using the analytic gradient; falls back to Nelder–Mead if the quasi-Newton run fails.
pub fn maximize_positive_with_gradient(
    f: LogLikWithGradient<'_>,
    start: &[f64],
    observations: f64,
    model: &'static str,
) -> Result<Fitted, InsightError> {
    let scale = observations.max(1.0);
    let problem = NegLogLikGrad {
        f,
        scale,
        last: RefCell::new(None),
    };
    let x0: Vec<f64> = start.iter().map(|p| p.ln()).collect();
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7)
        .with_tolerance_grad(1e-9)
        .and_then(|s| s.with_tolerance_cost(1e-14));
    let run = solver.and_then(|solver| {
        Executor::new(problem, solver)
            .configure(|s| s.param(x0).max_iters(500))
            .run()
    });
    if let Ok(result) = run {
        let state = result.state();
        let converged = state
            .get_gradient()
            .is_some_and(|g| g.iter().map(|v| v * v).sum::<f64>().sqrt() < 1e-6);
        if let Some(best) = state.get_best_param()
            && state.get_best_cost().is_finite()
            && converged
        {
            return Ok(Fitted {
                params: best.iter().map(|x| x.exp()).collect(),
                log_likelihood: -state.get_best_cost() * scale,
                iterations: state.get_iter(),
            });
        }
        tracing::debug!(model, termination = ?state.get_termination_status(), "L-BFGS did not converge; Nelder-Mead");
    }
    let value_only = |p: &[f64]| f(p).0;
    maximize_positive(&value_only, start, model)
}

/// ln B(a, b).
pub fn ln_beta(a: f64, b: f64) -> f64 {
    use statrs::function::gamma::ln_gamma;
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The Gaussian hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, by its power series.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 0..10_000 {
        let n = n as f64;
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() < 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypergeometric_matches_closed_forms() {
        // 2F1(1, 1; 2; z) = -ln(1 - z) / z
        for z in [0.1, 0.5, 0.9] {
            let want = -(1.0f64 - z).ln() / z;
            assert!((hyp2f1(1.0, 1.0, 2.0, z) - want).abs() < 1e-10, "z = {z}");
        }
        // 2F1(a, b; b; z) = (1 - z)^(-a)
        assert!((hyp2f1(2.5, 3.0, 3.0, 0.3) - 0.7f64.powf(-2.5)).abs() < 1e-10);
    }

    #[test]
    fn fits_a_known_maximum() {
        // log-likelihood with its maximum at (2, 0.5)
        let f = |p: &[f64]| -((p[0] - 2.0).powi(2) + (p[1] - 0.5).powi(2));
        let fit = maximize_positive(&f, &[1.0, 1.0], "test").unwrap();
        assert!(
            (fit.params[0] - 2.0).abs() < 1e-4 && (fit.params[1] - 0.5).abs() < 1e-4,
            "{fit:?}"
        );
    }
}
