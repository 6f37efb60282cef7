//! Linear probes: multinomial logistic regression trained on one language's sentence
//! embeddings and tested on every other's (cross-lingual transfer, the SIB-200 paper's
//! protocol), and the Wilson interval of an accuracy.
//!
//! Deterministic by construction: features are centred on the training mean and scaled by one
//! global standard deviation (so every language is mapped the same way), weights start at
//! zero, and full-batch Adam runs a fixed number of steps in a fixed order. No randomness.
use crate::align::Matrix;

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeOptions {
    /// Full-batch optimisation steps.
    pub steps: usize,
    /// Adam's step size.
    pub learning_rate: f64,
    /// L2 penalty on the weights (not the biases), per training example.
    pub l2: f64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self { steps: 300, learning_rate: 0.05, l2: 1e-3 }
    }
}

/// A trained probe.
#[derive(Debug, Clone)]
pub struct Probe {
    classes: usize,
    dim: usize,
    mean: Vec<f64>,
    scale: f64,
    /// classes × dim, row-major.
    w: Vec<f64>,
    b: Vec<f64>,
}

fn softmax_in_place(z: &mut [f64]) {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    for v in z.iter_mut() {
        *v /= s;
    }
}

impl Probe {
    /// Trains on `x` (one row per example) with labels `y` in `0..classes`.
    pub fn fit(x: &Matrix, y: &[usize], classes: usize, opts: ProbeOptions) -> Probe {
        assert_eq!(x.rows, y.len(), "probe: one label per row");
        assert!(classes >= 2 && y.iter().all(|&c| c < classes), "probe: labels in 0..classes");
        let (n, d) = (x.rows, x.cols);
        let mut mean = vec![0f64; d];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(x.row(i)) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = 0f64;
        for i in 0..n {
            for (m, &v) in mean.iter().zip(x.row(i)) {
                var += (v as f64 - m).powi(2);
            }
        }
        let scale = (var / (n * d) as f64).sqrt().max(1e-12);
        let feats: Vec<f64> = (0..n)
            .flat_map(|i| x.row(i).iter().zip(&mean).map(|(&v, m)| (v as f64 - m) / scale).collect::<Vec<_>>())
            .collect();
        let mut p = Probe { classes, dim: d, mean, scale, w: vec![0.0; classes * d], b: vec![0.0; classes] };
        let (mut mw, mut vw) = (vec![0f64; classes * d], vec![0f64; classes * d]);
        let (mut mb, mut vb) = (vec![0f64; classes], vec![0f64; classes]);
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let mut gw = vec![0f64; classes * d];
        let mut gb = vec![0f64; classes];
        let mut z = vec![0f64; classes];
        for step in 1..=opts.steps {
            gw.iter_mut().for_each(|g| *g = 0.0);
            gb.iter_mut().for_each(|g| *g = 0.0);
            for i in 0..n {
                let f = &feats[i * d..(i + 1) * d];
                for c in 0..classes {
                    z[c] = p.b[c] + p.w[c * d..(c + 1) * d].iter().zip(f).map(|(a, b)| a * b).sum::<f64>();
                }
                softmax_in_place(&mut z);
                z[y[i]] -= 1.0;
                for c in 0..classes {
                    let e = z[c] / n as f64;
                    gb[c] += e;
                    for (g, &fv) in gw[c * d..(c + 1) * d].iter_mut().zip(f) {
                        *g += e * fv;
                    }
                }
            }
            for (g, w) in gw.iter_mut().zip(&p.w) {
                *g += opts.l2 * w;
            }
            let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
            for k in 0..p.w.len() {
                mw[k] = b1 * mw[k] + (1.0 - b1) * gw[k];
                vw[k] = b2 * vw[k] + (1.0 - b2) * gw[k] * gw[k];
                p.w[k] -= opts.learning_rate * (mw[k] / c1) / ((vw[k] / c2).sqrt() + eps);
            }
            for k in 0..classes {
                mb[k] = b1 * mb[k] + (1.0 - b1) * gb[k];
                vb[k] = b2 * vb[k] + (1.0 - b2) * gb[k] * gb[k];
                p.b[k] -= opts.learning_rate * (mb[k] / c1) / ((vb[k] / c2).sqrt() + eps);
            }
        }
        p
    }

    /// Class scores (logits) of one example.
    fn logits(&self, row: &[f32]) -> Vec<f64> {
        assert_eq!(row.len(), self.dim, "probe: feature width");
        (0..self.classes)
            .map(|c| {
                self.b[c]
                    + self.w[c * self.dim..(c + 1) * self.dim]
                        .iter()
                        .zip(row.iter().zip(&self.mean))
                        .map(|(w, (&v, m))| w * (v as f64 - m) / self.scale)
                        .sum::<f64>()
            })
            .collect()
    }

    /// The predicted class of every row (the first of equal scores).
    /// The vector width the probe was trained on.
    pub fn width(&self) -> usize {
        self.dim
    }

    pub fn predict(&self, x: &Matrix) -> Vec<usize> {
        (0..x.rows)
            .map(|i| {
                let z = self.logits(x.row(i));
                let mut best = 0;
                for c in 1..z.len() {
                    if z[c] > z[best] {
                        best = c;
                    }
                }
                best
            })
            .collect()
    }

    /// Mean cross-entropy plus the L2 term, as training minimises it (for tests).
    pub fn loss(&self, x: &Matrix, y: &[usize], l2: f64) -> f64 {
        let mut total = 0.0;
        for (i, &label) in y.iter().enumerate() {
            let mut z = self.logits(x.row(i));
            softmax_in_place(&mut z);
            total -= z[label].max(1e-300).ln();
        }
        total / y.len() as f64 + 0.5 * l2 * self.w.iter().map(|w| w * w).sum::<f64>()
    }
}

/// The Wilson score interval of `k` successes in `n` trials at normal quantile `z` (1.96 for
/// 95%): better behaved than the normal interval near 0 and 1 and for small n.
pub fn wilson(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (nf, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The difference of two proportions `k1/n1 − k2/n2` with Newcombe's hybrid score interval
/// (Newcombe 1998, method 10, no continuity correction), built from the two Wilson intervals:
/// `[d − √((p₁ − l₁)² + (u₂ − p₂)²), d + √((u₁ − p₁)² + (p₂ − l₂)²)]`. NaN when either group
/// is empty.
pub fn newcombe_difference(k1: usize, n1: usize, k2: usize, n2: usize, z: f64) -> (f64, f64, f64) {
    if n1 == 0 || n2 == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let ((l1, u1), (l2, u2)) = (wilson(k1, n1, z), wilson(k2, n2, z));
    let d = p1 - p2;
    (d, d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(), d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters in 4 dimensions, shifted and scaled for the test set.
    fn clusters(n_per: usize, shift: f32) -> (Matrix, Vec<usize>) {
        let centres = [[3.0, 0.0, 0.0, 1.0], [0.0, 3.0, 0.0, 1.0], [0.0, 0.0, 3.0, 1.0]];
        let (mut data, mut y) = (Vec::new(), Vec::new());
        for (c, centre) in centres.iter().enumerate() {
            for i in 0..n_per {
                // A deterministic spread around the centre.
                let jitter = ((i * 7 + c * 3) % 11) as f32 / 11.0 - 0.5;
                data.extend(
                    centre.iter().enumerate().map(|(k, v)| v + shift + jitter * if k % 2 == 0 { 0.8 } else { -0.6 }),
                );
                y.push(c);
            }
        }
        (Matrix::new(y.len(), 4, data), y)
    }

    #[test]
    fn separable_data_is_learnt_perfectly_and_deterministically() {
        let (x, y) = clusters(20, 0.0);
        let p = Probe::fit(&x, &y, 3, ProbeOptions::default());
        assert_eq!(p.predict(&x), y);
        let (t, ty) = clusters(15, 0.1);
        assert_eq!(p.predict(&t), ty, "nearby test points are classified by their cluster");
        let again = Probe::fit(&x, &y, 3, ProbeOptions::default());
        assert_eq!(p.w, again.w, "bit-identical on a rerun");
    }

    #[test]
    fn training_lowers_the_loss_and_ends_near_a_minimum() {
        let (x, y) = clusters(10, 0.0);
        let opts = ProbeOptions { steps: 400, learning_rate: 0.05, l2: 0.1 };
        let untrained = Probe::fit(&x, &y, 3, ProbeOptions { steps: 0, ..opts });
        assert!((untrained.loss(&x, &y, 0.1) - 3f64.ln()).abs() < 1e-12, "zero weights: uniform, loss ln 3");
        let p = Probe::fit(&x, &y, 3, opts);
        let l = p.loss(&x, &y, 0.1);
        assert!(l < 0.5, "{l}");
        // Near a minimum of the (strictly convex) objective: small moves of any weight do not
        // lower it.
        for k in [0, 5, 11] {
            for delta in [1e-3, -1e-3] {
                let mut q = p.clone();
                q.w[k] += delta;
                assert!(q.loss(&x, &y, 0.1) > l - 1e-6, "weight {k} {delta}");
            }
        }
    }

    #[test]
    fn wilson_interval() {
        let (lo, hi) = wilson(50, 100, 1.96);
        assert!((lo - 0.4038).abs() < 1e-4 && (hi - 0.5962).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson(0, 10, 1.96);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 1e-4, "{hi}");
    }
}
