//! Honest layer choice. μMax (and a probe's `max` over layers) picks, per language, the best
//! hidden state on the very sentences it then reports: the maximum of many noisy shares is
//! biased upwards. Two held-out versions:
//!
//! - **Split-half (cross-fitted)**: the sentences are split by position into even and odd
//!   halves; the layer is chosen on one half (the highest share of hits, the first layer on
//!   ties) and each sentence of the other half is scored at that layer, both ways, so every
//!   sentence is scored exactly once by a layer chosen without it. The held-out share is
//!   `(hits of the odd half at the even half's layer + hits of the even half at the odd half's
//!   layer) / n`. The competitors of each pair stay those of the full sample (the per-sentence
//!   outcomes come from the full cosine matrix), as in μ's bootstrap.
//! - **Leave-one-language-out**: the layer is the one with the highest score averaged over
//!   the *other* languages, and this language is scored there.
//!
//! The optimism of the in-sample maximum is in-sample minus held-out.

/// Index of the largest value (the first of equal ones); `None` when empty.
fn argmax(v: impl Iterator<Item = f64>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, x) in v.enumerate() {
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|b| b.0)
}

/// In-sample and split-half held-out choice of a layer for one language.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitHalf {
    /// Sentences.
    pub n: usize,
    /// The best layer's share over all sentences, and that layer.
    pub in_sample: f64,
    pub in_sample_layer: usize,
    /// Each half scored at the layer chosen on the other half.
    pub held_out: f64,
    /// The layers chosen on the even and on the odd half.
    pub even_layer: usize,
    pub odd_layer: usize,
}

impl SplitHalf {
    /// In-sample minus held-out.
    pub fn optimism(&self) -> f64 {
        self.in_sample - self.held_out
    }
}

/// `outcomes[layer][sentence]`: whether the sentence is a hit (retrieves its translation, or
/// is classified right) at that layer. Every layer must have the same sentences; `None` when
/// there are no layers or fewer than two sentences.
pub fn split_half(outcomes: &[Vec<bool>]) -> Option<SplitHalf> {
    let n = outcomes.first()?.len();
    assert!(outcomes.iter().all(|o| o.len() == n), "split_half: every layer needs the same sentences");
    if n < 2 {
        return None;
    }
    let hits = |l: usize, parity: Option<usize>| -> usize {
        outcomes[l].iter().enumerate().filter(|(i, &h)| h && parity.is_none_or(|p| i % 2 == p)).count()
    };
    let layers = outcomes.len();
    let in_sample_layer = argmax((0..layers).map(|l| hits(l, None) as f64))?;
    let even_layer = argmax((0..layers).map(|l| hits(l, Some(0)) as f64))?;
    let odd_layer = argmax((0..layers).map(|l| hits(l, Some(1)) as f64))?;
    Some(SplitHalf {
        n,
        in_sample: hits(in_sample_layer, None) as f64 / n as f64,
        in_sample_layer,
        held_out: (hits(even_layer, Some(1)) + hits(odd_layer, Some(0))) as f64 / n as f64,
        even_layer,
        odd_layer,
    })
}

/// `scores[language][layer]`: for each language, the layer with the highest mean score over
/// the other languages (the first on ties) and this language's score at it. Needs at least two
/// languages with the same number of layers; `None` otherwise.
pub fn leave_one_language_out(scores: &[Vec<f64>]) -> Option<Vec<(usize, f64)>> {
    let layers = scores.first()?.len();
    if scores.len() < 2 || layers == 0 || scores.iter().any(|s| s.len() != layers) {
        return None;
    }
    (0..scores.len())
        .map(|i| {
            // Summed over the others directly (not the total minus this one: no rounding
            // difference can break a tie differently from the definition).
            let others = |l: usize| scores.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s[l]).sum::<f64>();
            let l = argmax((0..layers).map(others))?;
            Some((l, scores[i][l]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// The definition written out with explicit index lists.
    fn split_half_naive(o: &[Vec<bool>]) -> (f64, f64) {
        let n = o[0].len();
        let share = |l: usize, idx: &[usize]| idx.iter().filter(|&&i| o[l][i]).count();
        let all: Vec<usize> = (0..n).collect();
        let even: Vec<usize> = (0..n).step_by(2).collect();
        let odd: Vec<usize> = (1..n).step_by(2).collect();
        let best = |idx: &[usize]| {
            let mut b = 0;
            for l in 1..o.len() {
                if share(l, idx) > share(b, idx) {
                    b = l;
                }
            }
            b
        };
        let in_sample = share(best(&all), &all) as f64 / n as f64;
        (in_sample, (share(best(&even), &odd) + share(best(&odd), &even)) as f64 / n as f64)
    }

    #[test]
    fn split_half_matches_the_definition() {
        let mut s = 0x1234_5678u64;
        for trial in 0..200 {
            let layers = 1 + trial % 7;
            let n = 2 + trial % 13;
            let o: Vec<Vec<bool>> =
                (0..layers).map(|_| (0..n).map(|_| xorshift(&mut s).is_multiple_of(3)).collect()).collect();
            let got = split_half(&o).unwrap();
            let (a, b) = split_half_naive(&o);
            assert_eq!((got.in_sample, got.held_out), (a, b), "trial {trial}");
            assert!(got.held_out <= got.in_sample, "no held-out score beats the in-sample maximum");
        }
        assert!(split_half(&[vec![true]]).is_none());
        assert!(split_half(&[]).is_none());
    }

    #[test]
    fn pure_noise_shows_the_optimism_of_the_maximum() {
        // Twenty layers of coin flips with p = 0.3 and no layer better than another: the
        // in-sample maximum is biased upwards, the held-out score is not.
        let (layers, n, trials, p) = (20, 40, 400, 0.3);
        let mut s = 99u64;
        let (mut ins, mut out) = (0.0, 0.0);
        for _ in 0..trials {
            let o: Vec<Vec<bool>> =
                (0..layers).map(|_| (0..n).map(|_| (xorshift(&mut s) % 1000) < 300).collect()).collect();
            let r = split_half(&o).unwrap();
            ins += r.in_sample;
            out += r.held_out;
        }
        let (ins, out) = (ins / trials as f64, out / trials as f64);
        // The held-out mean is within 4 standard errors of p (sd of one share ≈ 0.072).
        assert!((out - p).abs() < 4.0 * 0.0725 / (trials as f64).sqrt(), "held-out {out}");
        assert!(ins > p + 0.08, "in-sample max {ins} should be well above {p}");
    }

    #[test]
    fn leave_one_language_out_uses_the_other_languages_only() {
        // Language 0 peaks at layer 2, the others at layer 1.
        let scores = vec![vec![0.1, 0.2, 0.9], vec![0.2, 0.6, 0.1], vec![0.3, 0.5, 0.2]];
        let r = leave_one_language_out(&scores).unwrap();
        assert_eq!(r[0], (1, 0.2), "language 0 is scored at the others' best layer");
        // Without language 1: layer 2 sums 1.1 against layer 1's 0.7.
        assert_eq!(r[1], (2, 0.1));
        assert_eq!(r[2], (2, 0.2));
        // Brute force: the mean over the others, explicitly.
        for (i, &(l, v)) in r.iter().enumerate() {
            let others = |k: usize| scores.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s[k]).sum::<f64>();
            assert!((0..3).all(|k| others(k) <= others(l)));
            assert_eq!(v, scores[i][l]);
        }
        assert!(leave_one_language_out(&scores[..1]).is_none());
    }
}
