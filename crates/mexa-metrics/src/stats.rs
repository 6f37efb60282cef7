//! Correlation statistics with p-values, bootstrap confidence intervals and a least-squares
//! line. Conventions follow SciPy: Pearson and Spearman p-values from Student's t with n−2
//! degrees of freedom; Kendall's τ-b with SciPy's `method='auto'` p-value: exact (Mahonian
//! numbers) without ties for n ≤ 33, the tie-corrected normal approximation otherwise. The
//! special functions are libraries': the regularised incomplete beta from statrs, erfc from
//! libm (statrs' erfc strays from SciPy's by 7e-12 at x = 1; musl's is within an ulp).

pub use libm::erfc;
pub use statrs::function::beta::beta_reg;

/// A correlation coefficient with its two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correlation {
    pub r: f64,
    pub p: f64,
    pub n: usize,
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn pearson_r(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

fn t_test_p(r: f64, n: usize) -> f64 {
    if n < 3 || r.is_nan() {
        return f64::NAN;
    }
    if r.abs() >= 1.0 {
        return 0.0;
    }
    let df = (n - 2) as f64;
    let t2 = r * r * df / (1.0 - r * r);
    beta_reg(df / 2.0, 0.5, df / (df + t2))
}

/// Pearson's r. Needs x and y of equal length ≥ 2; NaN when either is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Correlation {
    assert_eq!(x.len(), y.len(), "pearson: lengths differ");
    let r = pearson_r(x, y);
    Correlation { r, p: t_test_p(r, x.len()), n: x.len() }
}

/// Ranks 1..n, ties given their average rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            out[idx[k]] = avg;
        }
        i = j + 1;
    }
    out
}

/// Spearman's ρ: Pearson's r of the ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Correlation {
    assert_eq!(x.len(), y.len(), "spearman: lengths differ");
    let r = pearson_r(&ranks(x), &ranks(y));
    Correlation { r, p: t_test_p(r, x.len()), n: x.len() }
}

/// Kendall's τ-b.
pub fn kendall(x: &[f64], y: &[f64]) -> Correlation {
    assert_eq!(x.len(), y.len(), "kendall: lengths differ");
    let n = x.len();
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            let a = (x[i] - x[j]).partial_cmp(&0.0).map(|o| o as i64).unwrap_or(0);
            let b = (y[i] - y[j]).partial_cmp(&0.0).map(|o| o as i64).unwrap_or(0);
            s += a * b;
        }
    }
    let ties = |v: &[f64]| -> Vec<f64> {
        let mut sorted = v.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut groups = Vec::new();
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i;
            while j + 1 < sorted.len() && sorted[j + 1] == sorted[i] {
                j += 1;
            }
            if j > i {
                groups.push((j - i + 1) as f64);
            }
            i = j + 1;
        }
        groups
    };
    let (tx, ty) = (ties(x), ties(y));
    let nf = n as f64;
    let n0 = nf * (nf - 1.0) / 2.0;
    let n1: f64 = tx.iter().map(|t| t * (t - 1.0) / 2.0).sum();
    let n2: f64 = ty.iter().map(|t| t * (t - 1.0) / 2.0).sum();
    let denom = ((n0 - n1) * (n0 - n2)).sqrt();
    let tau = if denom == 0.0 { f64::NAN } else { s as f64 / denom };
    let tot = n * n.saturating_sub(1) / 2;
    // SciPy's `method='auto'`: exact without ties when n ≤ 33 or nearly every pair agrees (or
    // disagrees); the tie-corrected normal approximation otherwise.
    let discordant = ((tot as i64 - s) / 2) as usize;
    let exact = tx.is_empty() && ty.is_empty() && n >= 1 && (n <= 33 || discordant.min(tot - discordant) <= 1);
    let p = if n < 2 || tau.is_nan() {
        f64::NAN
    } else if exact {
        kendall_p_exact(n, tot - discordant)
    } else {
        let sum = |g: &[f64], f: &dyn Fn(f64) -> f64| g.iter().map(|&t| f(t)).sum::<f64>();
        let v0 = nf * (nf - 1.0) * (2.0 * nf + 5.0);
        let vt = sum(&tx, &|t| t * (t - 1.0) * (2.0 * t + 5.0));
        let vu = sum(&ty, &|t| t * (t - 1.0) * (2.0 * t + 5.0));
        let v1 = sum(&tx, &|t| t * (t - 1.0)) * sum(&ty, &|t| t * (t - 1.0)) / (2.0 * nf * (nf - 1.0));
        let v2 = if n > 2 {
            sum(&tx, &|t| t * (t - 1.0) * (t - 2.0)) * sum(&ty, &|t| t * (t - 1.0) * (t - 2.0))
                / (9.0 * nf * (nf - 1.0) * (nf - 2.0))
        } else {
            0.0
        };
        let var = (v0 - vt - vu) / 18.0 + v1 + v2;
        erfc((s as f64).abs() / var.sqrt() / std::f64::consts::SQRT_2)
    };
    Correlation { r: tau, p, n }
}

/// The exact two-sided p-value of Kendall's τ for `n` untied pairs with `concordant`
/// concordant pairs, as SciPy's `_kendall_p_exact` computes it: twice the share of the n!
/// permutations with at most min(c, total − c) inversions (Mahonian numbers, counted exactly
/// in u128 up to n = 33; closed forms for c ≤ 1 beyond).
pub fn kendall_p_exact(n: usize, concordant: usize) -> f64 {
    let tot = n * n.saturating_sub(1) / 2;
    let c = concordant.min(tot - concordant.min(tot));
    let factorial = |m: usize| (1..=m).fold(1f64, |a, k| a * k as f64);
    let p = if n <= 2 {
        1.0
    } else if c == 0 {
        if n < 171 {
            2.0 / factorial(n)
        } else {
            0.0
        }
    } else if c == 1 {
        if n < 172 {
            2.0 / factorial(n - 1)
        } else {
            0.0
        }
    } else if 4 * c == n * (n - 1) {
        1.0
    } else if n <= 33 {
        // counts[k]: permutations of j elements with exactly k inversions, k ≤ c.
        let mut counts = vec![0u128; c + 1];
        counts[0] = 1;
        counts[1] = 1;
        for j in 3..=n {
            let mut acc = 0u128;
            let prefix: Vec<u128> = counts
                .iter()
                .map(|&v| {
                    acc += v;
                    acc
                })
                .collect();
            counts = prefix.clone();
            if j <= c {
                for k in j..=c {
                    counts[k] -= prefix[k - j];
                }
            }
        }
        let below: u128 = counts.iter().sum();
        let n_fact: u128 = (1..=n as u128).product();
        2.0 * (below as f64) / (n_fact as f64)
    } else {
        // SciPy uses the normal approximation here (method='auto' never asks for it).
        return f64::NAN;
    };
    p.clamp(0.0, 1.0)
}

/// Least-squares line `y = slope·x + intercept`.
pub fn linear_fit(x: &[f64], y: &[f64]) -> (f64, f64) {
    let (mx, my) = (mean(x), mean(y));
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

/// Percentile bootstrap interval of `stat(x, y)` over `resamples` resamples of the pairs,
/// at confidence `level` (e.g. 0.95). Deterministic for a given `seed`. Resamples on which
/// the statistic is undefined (NaN) are dropped.
pub fn bootstrap_ci(
    x: &[f64],
    y: &[f64],
    stat: impl Fn(&[f64], &[f64]) -> f64,
    resamples: usize,
    level: f64,
    seed: u64,
) -> (f64, f64) {
    let n = x.len();
    let mut rng = SplitMix64(seed);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    let mut vals = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for k in 0..n {
            let i = (rng.next() % n as u64) as usize;
            bx[k] = x[i];
            by[k] = y[i];
        }
        let v = stat(&bx, &by);
        if v.is_finite() {
            vals.push(v);
        }
    }
    if vals.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    vals.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (vals.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        vals[lo] + (vals[hi] - vals[lo]) * (pos - lo as f64)
    };
    let a = (1.0 - level) / 2.0;
    (q(a), q(1.0 - a))
}

/// SplitMix64 (Steele et al. 2014): the seeded generator of every resampling here.
pub(crate) struct SplitMix64(pub(crate) u64);
impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
}
