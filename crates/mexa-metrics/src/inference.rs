//! Inference for many correlations at once: Pearson's r with a permutation p-value, and the
//! adjustments of a family of p-values for multiple comparisons.
//!
//! - **Permutation p-value** (SciPy's `pearsonr(x, y, method=PermutationMethod(...))`, i.e.
//!   `permutation_test((y,), …, permutation_type='pairings')`): r is recomputed with y's
//!   values re-paired with x. For n ≤ [`EXACT_MAX_N`] every one of the n! pairings is counted
//!   (exact); beyond, `resamples` random pairings from a fixed seed, with SciPy's +1 on both
//!   sides of the fraction (a resampled p is never 0). Two-sided as SciPy computes it: twice
//!   the smaller tail, each tail counting values within 100 ε·|r| of r as equal.
//! - **Holm** (step-down, family-wise error) and **Benjamini–Hochberg** (step-up, false
//!   discovery rate) adjusted p-values, as statsmodels' `multipletests(method='holm' |
//!   'fdr_bh')` returns them. Missing (NaN) p-values stay NaN and are not counted in the family.
use crate::stats::SplitMix64;

/// Up to this n, permutation p-values enumerate all n! pairings (3,628,800 at n = 10).
pub const EXACT_MAX_N: usize = 10;

/// A permutation p-value and how it was obtained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PermutationP {
    pub p: f64,
    /// Pairings evaluated: n! when exact, else the resamples.
    pub permutations: u64,
    pub exact: bool,
}

/// The two-sided permutation p-value of Pearson's r between `x` and `y` (NaN when r is
/// undefined: fewer than 3 pairs or a constant sample).
pub fn pearson_permutation(x: &[f64], y: &[f64], resamples: usize, seed: u64) -> PermutationP {
    permutation_p(x, y, x.len() <= EXACT_MAX_N, resamples, seed)
}

/// [`pearson_permutation`] with the choice between all pairings and resamples made by the caller.
fn permutation_p(x: &[f64], y: &[f64], exact: bool, resamples: usize, seed: u64) -> PermutationP {
    assert_eq!(x.len(), y.len(), "pearson_permutation: lengths differ");
    let n = x.len();
    let centre = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / n.max(1) as f64;
        let c: Vec<f64> = v.iter().map(|a| a - m).collect();
        let norm = c.iter().map(|a| a * a).sum::<f64>().sqrt();
        (c, norm)
    };
    let ((xc, nx), (yc, ny)) = (centre(x), centre(y));
    let nan = PermutationP { p: f64::NAN, permutations: 0, exact: false };
    if n < 3 || nx == 0.0 || ny == 0.0 {
        return nan;
    }
    // r of a pairing: only the cross product changes; the norms do not.
    let r_of = |yp: &[f64]| xc.iter().zip(yp).map(|(a, b)| a * b).sum::<f64>() / (nx * ny);
    let observed = r_of(&yc);
    let gamma = (100.0 * f64::EPSILON * observed).abs();
    let (mut less, mut greater, mut count) = (0u64, 0u64, 0u64);
    let mut tally = |r: f64| {
        less += (r <= observed + gamma) as u64;
        greater += (r >= observed - gamma) as u64;
        count += 1;
    };
    let mut yp = yc.clone();
    if exact {
        // Heap's algorithm: every permutation of yp exactly once, the identity first.
        tally(r_of(&yp));
        let mut c = vec![0usize; n];
        let mut i = 0;
        while i < n {
            if c[i] < i {
                if i % 2 == 0 {
                    yp.swap(0, i);
                } else {
                    yp.swap(c[i], i);
                }
                tally(r_of(&yp));
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
    } else {
        let mut rng = SplitMix64(seed);
        for _ in 0..resamples {
            // Fisher–Yates from the observed order each time.
            yp.copy_from_slice(&yc);
            for k in (1..n).rev() {
                let j = (rng.next() % (k as u64 + 1)) as usize;
                yp.swap(k, j);
            }
            tally(r_of(&yp));
        }
    }
    let adjust = if exact { 0.0 } else { 1.0 };
    let tail = |k: u64| (k as f64 + adjust) / (count as f64 + adjust);
    PermutationP { p: (2.0 * tail(less).min(tail(greater))).min(1.0), permutations: count, exact }
}

/// Indices of the finite p-values, in ascending order of p (ties in index order).
fn sorted_finite(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    idx
}

/// Holm's step-down adjusted p-values: the k-th smallest of m becomes
/// `max_{j ≤ k} min(1, (m − j + 1) p_(j))`.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let idx = sorted_finite(p);
    let m = idx.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0f64;
    for (k, &i) in idx.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Benjamini–Hochberg step-up adjusted p-values: the k-th smallest of m becomes
/// `min_{j ≥ k} min(1, m p_(j) / j)`.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let idx = sorted_finite(p);
    let m = idx.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 1f64;
    for (k, &i) in idx.iter().enumerate().rev() {
        running = running.min(m as f64 * p[i] / (k + 1) as f64);
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All n! pairings by recursion (another enumeration than Heap's), with SciPy's two-sided
    /// rule written out.
    #[test]
    fn exact_counts_every_pairing_once() {
        let x = [0.3, 1.2, -0.7, 2.2, 0.1, 0.9];
        let y = [1.0, 2.5, 0.2, 2.0, -0.4, 1.1];
        let got = pearson_permutation(&x, &y, 0, 0);
        assert!(got.exact && got.permutations == 720);
        let r = crate::pearson(&x, &y).r;
        fn rec(y: &[f64], used: &mut Vec<bool>, cur: &mut Vec<f64>, x: &[f64], r: f64, tails: &mut (u32, u32)) {
            if cur.len() == y.len() {
                let s = crate::pearson(x, cur).r;
                tails.0 += (s <= r + 1e-12) as u32;
                tails.1 += (s >= r - 1e-12) as u32;
                return;
            }
            for i in 0..y.len() {
                if !used[i] {
                    used[i] = true;
                    cur.push(y[i]);
                    rec(y, used, cur, x, r, tails);
                    cur.pop();
                    used[i] = false;
                }
            }
        }
        let mut tails = (0, 0);
        rec(&y, &mut vec![false; 6], &mut vec![], &x, r, &mut tails);
        let want = (2.0 * tails.0.min(tails.1) as f64 / 720.0).min(1.0);
        assert_eq!(got.p, want);
    }

    #[test]
    fn resampled_p_values_approach_the_exact_one() {
        let x: Vec<f64> = (0..10).map(|i| ((i * 37) % 11) as f64).collect();
        let y: Vec<f64> = (0..10).map(|i| ((i * 53) % 13) as f64 + 0.3 * i as f64).collect();
        let exact = pearson_permutation(&x, &y, 0, 0);
        assert!(exact.exact && exact.permutations == 3_628_800);
        let a = permutation_p(&x, &y, false, 20_000, 7);
        assert_eq!(a, permutation_p(&x, &y, false, 20_000, 7), "deterministic for a seed");
        assert!(!a.exact && a.permutations == 20_000 && a.p > 0.0);
        // Within four standard errors of the exact value (a two-sided p is twice a share).
        let se = 2.0 * (exact.p / 2.0 * (1.0 - exact.p / 2.0) / 20_000.0).sqrt();
        assert!((a.p - exact.p).abs() < 4.0 * se + 1e-4, "resampled {} exact {}", a.p, exact.p);
        // Beyond n = 10 the public function resamples.
        let (x11, y11) = ([x.clone(), vec![5.0]].concat(), [y.clone(), vec![5.0]].concat());
        let r = pearson_permutation(&x11, &y11, 500, 1);
        assert!(!r.exact && r.permutations == 500);
    }

    #[test]
    fn undefined_correlations_have_no_p_value() {
        assert!(pearson_permutation(&[1.0, 2.0], &[1.0, 2.0], 10, 0).p.is_nan());
        assert!(pearson_permutation(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], 10, 0).p.is_nan());
    }

    #[test]
    fn adjustments_by_their_definitions() {
        let p = [0.01, 0.04, 0.03, f64::NAN, 0.2];
        // m = 4 finite. Holm: sorted 0.01, 0.03, 0.04, 0.2 → 0.04, 0.09, max(0.09, 0.08),
        // max(0.09, 0.2).
        let h = holm(&p);
        let want = [0.04, 0.09, 0.09, f64::NAN, 0.2];
        for (a, b) in h.iter().zip(want) {
            assert!((a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-15, "{h:?}");
        }
        // BH: 0.01·4/1, 0.03·4/2, 0.04·4/3, 0.2·4/4, then the running minimum from the top.
        let b = benjamini_hochberg(&p);
        let want = [0.04, 0.053_333_333_333_333_33, 0.053_333_333_333_333_33, f64::NAN, 0.2];
        for (a, w) in b.iter().zip(want) {
            assert!((a.is_nan() && w.is_nan()) || (a - w).abs() < 1e-15, "{b:?}");
        }
    }
}
