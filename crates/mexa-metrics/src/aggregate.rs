//! Pooling per-layer scores into one number per language.

/// Layer pooling of a score curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    pub mean: f64,
    pub max: f64,
    /// Index (into the given layers) of the best layer; the first one on ties.
    pub best_layer: usize,
    pub layers: usize,
}

/// Mean, max and argmax of `scores[range]` (all layers when `range` is `None`).
/// `range` is inclusive and clamped to the available layers.
pub fn aggregate(scores: &[f64], range: Option<(usize, usize)>) -> Option<Aggregate> {
    let (lo, hi) = match range {
        Some((a, b)) => (a, b.min(scores.len().checked_sub(1)?)),
        None => (0, scores.len().checked_sub(1)?),
    };
    if lo > hi {
        return None;
    }
    let s = &scores[lo..=hi];
    let mut best = 0;
    for (i, v) in s.iter().enumerate() {
        if *v > s[best] {
            best = i;
        }
    }
    Some(Aggregate {
        mean: s.iter().sum::<f64>() / s.len() as f64,
        max: s[best],
        best_layer: lo + best,
        layers: s.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_max_best_and_range() {
        let s = [0.1, 0.5, 0.3, 0.5];
        let a = aggregate(&s, None).unwrap();
        assert!((a.mean - 0.35).abs() < 1e-12);
        assert_eq!((a.max, a.best_layer, a.layers), (0.5, 1, 4));
        let r = aggregate(&s, Some((2, 10))).unwrap();
        assert_eq!((r.max, r.best_layer, r.layers), (0.5, 3, 2));
        assert!(aggregate(&s, Some((5, 6))).is_none());
        assert!(aggregate(&[], None).is_none());
    }
}
