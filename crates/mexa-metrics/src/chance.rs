//! How far a MEXA score is from chance, and how sure it is.
//!
//! μ is the share of the n parallel pairs whose cosine beats every other entry of its row and
//! column of the n × n cosine matrix: 2n − 2 competitors. With no alignment at all (every
//! entry exchangeable), the diagonal entry is the largest of its 2n − 1 entries with
//! probability p₀ = 1/(2n − 1), the chance level of Kargaran et al. (2024). Treating the n
//! pairs as independent trials, the number of hits under chance is Binomial(n, p₀), and the
//! probability of seeing at least the observed hits is that distribution's upper tail.
//!
//! The confidence interval is a bootstrap over sentences: each sentence contributes its hit
//! (0 or 1) and the resampled μ is the share of hits in n sentences drawn with replacement.
//! That resampled count is exactly Binomial(n, μ), so the percentile interval is computed
//! from its quantiles instead of from random resamples (the limit of infinitely many; no
//! seed, identical on every machine). The competitors of each pair stay the full sample's.
use statrs::distribution::{Binomial, DiscreteCDF};

/// Scores whose chance tail probability is at least this are "near chance": not
/// distinguishable from chance at the 5% level.
pub const CHANCE_ALPHA: f64 = 0.05;

/// The chance level of one pair among `n`: 1/(2n − 1).
pub fn chance_level(n: usize) -> f64 {
    1.0 / (2 * n.max(1) - 1) as f64
}

/// P(X ≥ `hits`) for X ~ Binomial(`n`, `p`).
pub fn upper_tail(n: usize, hits: usize, p: f64) -> f64 {
    if hits == 0 {
        return 1.0;
    }
    if hits > n {
        return 0.0;
    }
    let b = Binomial::new(p.clamp(0.0, 1.0), n as u64).expect("p in [0, 1]");
    b.sf(hits as u64 - 1).clamp(0.0, 1.0)
}

/// The `level` (e.g. 0.95) percentile bootstrap interval of the share `hits / n` over
/// sentences, from the exact bootstrap distribution Binomial(n, hits/n).
pub fn bootstrap_share_ci(n: usize, hits: usize, level: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let share = hits as f64 / n as f64;
    if hits == 0 || hits == n {
        return (share, share);
    }
    let b = Binomial::new(share, n as u64).expect("share in [0, 1]");
    let alpha = (1.0 - level) / 2.0;
    // The smallest count whose cumulative probability reaches q.
    let quantile = |q: f64| (0..=n as u64).find(|&x| b.cdf(x) >= q - 1e-12).unwrap_or(n as u64);
    (quantile(alpha) as f64 / n as f64, quantile(1.0 - alpha) as f64 / n as f64)
}

/// A MEXA score's uncertainty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uncertainty {
    /// The chance level 1/(2n − 1).
    pub chance: f64,
    /// P(hits ≥ observed) under chance.
    pub chance_p: f64,
    /// 95% bootstrap interval over sentences.
    pub lo: f64,
    pub hi: f64,
    /// `chance_p ≥ CHANCE_ALPHA`: not distinguishable from chance.
    pub near_chance: bool,
}

/// The uncertainty of μ = `mexa` over `n` pairs.
pub fn mexa_uncertainty(n: usize, mexa: f64) -> Uncertainty {
    let hits = (mexa * n as f64).round() as usize;
    let chance = chance_level(n);
    let chance_p = if n == 0 { 1.0 } else { upper_tail(n, hits, chance) };
    let (lo, hi) = bootstrap_share_ci(n, hits, 0.95);
    Uncertainty { chance, chance_p, lo, hi, near_chance: chance_p >= CHANCE_ALPHA }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binomial pmf by the product formula, in f64 (exact enough for n ≤ 200).
    fn pmf(n: usize, k: usize, p: f64) -> f64 {
        let mut c = 1.0;
        for i in 0..k {
            c *= (n - i) as f64 / (i + 1) as f64;
        }
        c * p.powi(k as i32) * (1.0 - p).powi((n - k) as i32)
    }

    #[test]
    fn the_chance_tail_is_the_binomial_sum() {
        for (n, hits) in [(100, 0), (100, 1), (100, 3), (100, 10), (7, 7), (205, 2)] {
            let p = chance_level(n);
            let brute: f64 = (hits..=n).map(|k| pmf(n, k, p)).sum();
            let got = upper_tail(n, hits, p);
            assert!((got - brute).abs() < 1e-12 * brute.max(1e-300) + 1e-15, "n {n} hits {hits}: {got} vs {brute}");
        }
        // P(X ≥ 3), X ~ Binomial(100, 1/199), in exact rational arithmetic (Python's
        // fractions): 0.014291010529616661.
        let t = upper_tail(100, 3, 1.0 / 199.0);
        assert!((t - 0.014_291_010_529_616_661).abs() < 1e-14, "{t}");
        assert_eq!(chance_level(100), 1.0 / 199.0);
    }

    #[test]
    fn the_exact_bootstrap_matches_resampling_sentences() {
        // A brute-force bootstrap: resample the per-sentence hits with replacement.
        let (n, hits) = (60, 21);
        let outcomes: Vec<u32> = (0..n).map(|i| (i < hits) as u32).collect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut shares: Vec<f64> = (0..40_000)
            .map(|_| (0..n).map(|_| outcomes[(next() % n as u64) as usize]).sum::<u32>() as f64 / n as f64)
            .collect();
        shares.sort_by(f64::total_cmp);
        let q = |f: f64| shares[((shares.len() as f64 * f) as usize).min(shares.len() - 1)];
        let (lo, hi) = bootstrap_share_ci(n, hits, 0.95);
        assert!((lo - q(0.025)).abs() <= 1.0 / n as f64 + 1e-9, "lo {lo} vs resampled {}", q(0.025));
        assert!((hi - q(0.975)).abs() <= 1.0 / n as f64 + 1e-9, "hi {hi} vs resampled {}", q(0.975));
        assert!(lo < 0.35 && 0.35 < hi);
        assert_eq!(bootstrap_share_ci(10, 0, 0.95), (0.0, 0.0));
        assert_eq!(bootstrap_share_ci(10, 10, 0.95), (1.0, 1.0));
    }

    #[test]
    fn near_chance_means_the_tail_is_not_small() {
        // n = 100, chance 0.5%: one hit is chance, ten are not.
        assert!(mexa_uncertainty(100, 0.01).near_chance);
        assert!(!mexa_uncertainty(100, 0.10).near_chance);
        assert!(mexa_uncertainty(0, 0.0).near_chance);
    }
}
