//! Alignment as a predictor of accuracy, judged by the error of its predictions for languages
//! it has not seen. Three predictors of a language's task accuracy from its alignment μ:
//!
//! - **paper**: MEXA's estimated performance, μ × the model's pivot-language accuracy (Kargaran
//!   et al. 2024); nothing is fitted.
//! - **linear**: the least-squares line `a + b μ`.
//! - **logistic**: `σ(a + b μ)` fitted by maximum Bernoulli likelihood on the accuracies as
//!   fractions (Papke & Wooldridge 1996's fractional logit), by iteratively reweighted least
//!   squares (Newton's method); the prediction stays in (0, 1).
//! - **constant**: the other languages' mean accuracy, μ ignored: the error a predictor must
//!   beat for alignment to have told anything.
//!
//! The fitted ones are evaluated leave-one-language-out: every language's prediction comes
//! from a fit on the other languages' points (all of a language's points leave together, so
//! with several models pooled no model's point of that language helps predict it). MAE and
//! RMSE are over all points.

/// A predictor of accuracy from alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Paper,
    Linear,
    Logistic,
    Constant,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Paper, Method::Linear, Method::Logistic, Method::Constant];
    pub fn name(self) -> &'static str {
        match self {
            Method::Paper => "paper",
            Method::Linear => "linear",
            Method::Logistic => "logistic",
            Method::Constant => "constant",
        }
    }
}

/// Least-squares line `(intercept, slope)`; `None` when x has no spread.
pub fn linear(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    if x.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    Some((my - slope * mx, slope))
}

fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// Fractional logit `(intercept, slope)`: maximises Σ y log p + (1 − y) log(1 − p) with
/// p = σ(a + b x), for y in [0, 1]. Newton steps from (logit ȳ, 0) until the step is below
/// 1e-12 (at most 100); `None` when y is not a share in [0, 1] (scores in percent from a
/// results file), x has no spread, or the fit does not converge (a perfect separation drives
/// the slope to infinity).
pub fn logistic(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    assert_eq!(x.len(), y.len(), "logistic: lengths differ");
    if !y.iter().all(|v| (0.0..=1.0).contains(v)) {
        return None;
    }
    linear(x, y)?;
    let ybar = (y.iter().sum::<f64>() / y.len() as f64).clamp(1e-6, 1.0 - 1e-6);
    let (mut a, mut b) = ((ybar / (1.0 - ybar)).ln(), 0.0);
    for _ in 0..100 {
        // Gradient g and the Fisher information H (the Hessian's negative) of the likelihood.
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&xi, &yi) in x.iter().zip(y) {
            let p = sigmoid(a + b * xi);
            let w = p * (1.0 - p);
            g0 += yi - p;
            g1 += (yi - p) * xi;
            h00 += w;
            h01 += w * xi;
            h11 += w * xi * xi;
        }
        let det = h00 * h11 - h01 * h01;
        if det.is_nan() || det <= 0.0 {
            return None;
        }
        let (da, db) = ((h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det);
        a += da;
        b += db;
        if !(a.is_finite() && b.is_finite()) {
            return None;
        }
        if da.abs().max(db.abs()) < 1e-12 * (1.0 + a.abs().max(b.abs())) {
            return Some((a, b));
        }
    }
    None
}

/// One point to predict: its group (language), alignment, measured accuracy and the paper's
/// estimate (NaN when the pivot's accuracy is unknown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub group: usize,
    pub alignment: f64,
    pub accuracy: f64,
    pub paper: f64,
}

/// Each point's prediction by `method`, fitted (for the fitted methods) on the points of every
/// other group; NaN where a fit is impossible (fewer than two other points, no spread).
pub fn leave_one_group_out(points: &[Point], method: Method) -> Vec<f64> {
    points
        .iter()
        .map(|p| {
            if method == Method::Paper {
                return p.paper;
            }
            let (x, y): (Vec<f64>, Vec<f64>) =
                points.iter().filter(|q| q.group != p.group).map(|q| (q.alignment, q.accuracy)).unzip();
            let fit = match method {
                Method::Linear => linear(&x, &y).map(|(a, b)| a + b * p.alignment),
                Method::Logistic => logistic(&x, &y).map(|(a, b)| sigmoid(a + b * p.alignment)),
                _ => (!y.is_empty()).then(|| y.iter().sum::<f64>() / y.len() as f64),
            };
            fit.unwrap_or(f64::NAN)
        })
        .collect()
}

/// Mean absolute error and root mean squared error of `predicted` against `actual` (NaN when
/// any prediction is missing: an error over part of the points would not be comparable).
pub fn errors(predicted: &[f64], actual: &[f64]) -> (f64, f64) {
    let n = predicted.len() as f64;
    if predicted.is_empty() || predicted.iter().any(|p| !p.is_finite()) {
        return (f64::NAN, f64::NAN);
    }
    let mae = predicted.iter().zip(actual).map(|(p, a)| (p - a).abs()).sum::<f64>() / n;
    let mse = predicted.iter().zip(actual).map(|(p, a)| (p - a) * (p - a)).sum::<f64>() / n;
    (mae, mse.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_at_a_stationary_point_of_the_likelihood() {
        let x = [0.0, 0.1, 0.2, 0.35, 0.5, 0.6];
        let y = [0.1, 0.15, 0.3, 0.35, 0.6, 0.55];
        let (a, b) = logistic(&x, &y).unwrap();
        let ll = |a: f64, b: f64| -> f64 {
            x.iter()
                .zip(&y)
                .map(|(&xi, &yi)| {
                    let p = sigmoid(a + b * xi);
                    yi * p.ln() + (1.0 - yi) * (1.0 - p).ln()
                })
                .sum()
        };
        for (da, db) in [(1e-4, 0.0), (-1e-4, 0.0), (0.0, 1e-4), (0.0, -1e-4)] {
            assert!(ll(a + da, b + db) < ll(a, b), "moving ({da}, {db}) raised the likelihood");
        }
        // Data on an exact logistic curve are recovered.
        let yy: Vec<f64> = x.iter().map(|&v| sigmoid(-2.0 + 5.0 * v)).collect();
        let (a, b) = logistic(&x, &yy).unwrap();
        assert!((a + 2.0).abs() < 1e-9 && (b - 5.0).abs() < 1e-9, "{a} {b}");
        assert!(logistic(&[1.0, 1.0], &[0.2, 0.4]).is_none());
        assert!(logistic(&[0.1, 0.5], &[40.0, 80.0]).is_none(), "percentages are not shares");
    }

    #[test]
    fn leaving_a_language_out_removes_all_its_points() {
        // Group 0's two points would pull the line; predicting group 0 must not see them.
        let pts = [
            Point { group: 0, alignment: 0.9, accuracy: 0.0, paper: 0.5 },
            Point { group: 0, alignment: 0.8, accuracy: 0.0, paper: 0.4 },
            Point { group: 1, alignment: 0.1, accuracy: 0.1, paper: 0.05 },
            Point { group: 2, alignment: 0.2, accuracy: 0.2, paper: 0.1 },
            Point { group: 3, alignment: 0.3, accuracy: 0.3, paper: 0.15 },
        ];
        let lin = leave_one_group_out(&pts, Method::Linear);
        // Fitted on groups 1–3 only: y = x exactly.
        assert!((lin[0] - 0.9).abs() < 1e-12 && (lin[1] - 0.8).abs() < 1e-12, "{lin:?}");
        assert_eq!(leave_one_group_out(&pts, Method::Paper), vec![0.5, 0.4, 0.05, 0.1, 0.15]);
        // The constant predictor: the mean of the other groups' accuracies (0.1, 0.2, 0.3).
        let c = leave_one_group_out(&pts, Method::Constant);
        assert!((c[0] - 0.2).abs() < 1e-15 && (c[2] - 0.125).abs() < 1e-15, "{c:?}");
        let (mae, rmse) = errors(&[0.5, 0.4], &[0.0, 0.0]);
        assert!((mae - 0.45).abs() < 1e-15 && (rmse - (0.205f64).sqrt()).abs() < 1e-15);
        assert!(errors(&[f64::NAN, 0.1], &[0.0, 0.0]).0.is_nan());
    }
}
