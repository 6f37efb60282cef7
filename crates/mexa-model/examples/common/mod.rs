//! What the GPU checks share.
use anyhow::{Context, Result};
use mexa_model::Pooled;
use std::path::Path;

/// The non-blank lines of a text file: the sentences to embed.
pub fn sentences(path: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| path.display().to_string())?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// Largest ‖a − b‖ / ‖b‖ over the vectors both embeddings have (every layer and pooling; `a`
/// may cover fewer sentences than `b`).
pub fn max_rel_diff(a: &[Pooled], b: &[Pooled]) -> f64 {
    rel_diff_by_state(a, b).into_iter().fold(0.0, f64::max)
}

/// [`max_rel_diff`] per hidden state.
pub fn rel_diff_by_state(a: &[Pooled], b: &[Pooled]) -> Vec<f64> {
    let layers = a.first().map_or(0, |x| x.layers);
    (0..layers)
        .map(|l| {
            let mut worst = 0f64;
            for (x, y) in a.iter().zip(b) {
                for s in 0..x.n.min(y.n) {
                    let (u, v) = (x.vector(l, s), y.vector(l, s));
                    let d: f64 = u.iter().zip(v).map(|(p, q)| ((p - q) as f64).powi(2)).sum::<f64>().sqrt();
                    let n: f64 = v.iter().map(|q| (*q as f64).powi(2)).sum::<f64>().sqrt();
                    worst = worst.max(d / n.max(1e-30));
                }
            }
            worst
        })
        .collect()
}
