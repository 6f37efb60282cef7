//! Average-linkage (UPGMA) hierarchical clustering, for ordering a language × language
//! matrix so that languages that align with each other sit together.
//!
//! Input: a symmetric distance matrix. Repeatedly merge the two clusters with the smallest
//! average pairwise distance between their members; the merge's height is that distance.
//! Merges are numbered as SciPy's `linkage` numbers them: leaves `0..n`, the `k`-th merge
//! makes cluster `n + k`. Ties go to the pair with the smallest ids, so the result is
//! deterministic. O(n³) with n ≤ a few hundred languages: milliseconds.

/// One merge: clusters `a` and `b` (a < b) joined at `height`, making a cluster of `size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    pub a: usize,
    pub b: usize,
    pub height: f64,
    pub size: usize,
}

/// The average-linkage merges of `n` items with distances `d[i * n + j]` (symmetric).
pub fn average_linkage(d: &[f64], n: usize) -> Vec<Merge> {
    assert_eq!(d.len(), n * n, "distance matrix size");
    // Live clusters: id, size, and the current distance to every other live cluster.
    let mut ids: Vec<usize> = (0..n).collect();
    let mut sizes: Vec<usize> = vec![1; n];
    let mut dist: Vec<Vec<f64>> = (0..n).map(|i| d[i * n..(i + 1) * n].to_vec()).collect();
    let mut merges = Vec::with_capacity(n.saturating_sub(1));
    while ids.len() > 1 {
        let m = ids.len();
        let (mut bi, mut bj, mut best) = (0, 1, f64::INFINITY);
        for i in 0..m {
            for j in i + 1..m {
                let v = dist[i][j];
                let key = (ids[i].min(ids[j]), ids[i].max(ids[j]));
                let best_key = (ids[bi].min(ids[bj]), ids[bi].max(ids[bj]));
                if v < best || (v == best && key < best_key) {
                    (bi, bj, best) = (i, j, v);
                }
            }
        }
        let (si, sj) = (sizes[bi], sizes[bj]);
        let (a, b) = (ids[bi].min(ids[bj]), ids[bi].max(ids[bj]));
        merges.push(Merge { a, b, height: best, size: si + sj });
        // The merged cluster's distance to each other cluster: the size-weighted mean.
        let merged: Vec<f64> =
            (0..m).map(|k| (si as f64 * dist[bi][k] + sj as f64 * dist[bj][k]) / (si + sj) as f64).collect();
        for k in 0..m {
            dist[bi][k] = merged[k];
            dist[k][bi] = merged[k];
        }
        dist[bi][bi] = 0.0;
        ids[bi] = n + merges.len() - 1;
        sizes[bi] = si + sj;
        ids.remove(bj);
        sizes.remove(bj);
        dist.remove(bj);
        for row in dist.iter_mut() {
            row.remove(bj);
        }
    }
    merges
}

/// The leaves in dendrogram order: each merge lists its first cluster's leaves, then its
/// second's.
pub fn leaf_order(merges: &[Merge], n: usize) -> Vec<usize> {
    if n == 0 {
        return vec![];
    }
    let Some(last) = merges.len().checked_sub(1) else { return (0..n).collect() };
    let mut out = Vec::with_capacity(n);
    let mut stack = vec![n + last];
    while let Some(c) = stack.pop() {
        if c < n {
            out.push(c);
        } else {
            let m = merges[c - n];
            stack.push(m.b);
            stack.push(m.a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UPGMA example of Wikipedia's article (5S rRNA of five bacteria): merges (a, b) at
    /// 17, then e joins at 22, (c, d) at 28, and the two groups at 33.
    #[test]
    fn the_textbook_upgma_example() {
        let names = ["a", "b", "c", "d", "e"];
        let m = [
            [0., 17., 21., 31., 23.],
            [17., 0., 30., 34., 21.],
            [21., 30., 0., 28., 39.],
            [31., 34., 28., 0., 43.],
            [23., 21., 39., 43., 0.],
        ];
        let d: Vec<f64> = m.iter().flatten().copied().collect();
        let merges = average_linkage(&d, 5);
        let heights: Vec<f64> = merges.iter().map(|m| m.height).collect();
        assert_eq!(heights, [17.0, 22.0, 28.0, 33.0]);
        assert_eq!((merges[0].a, merges[0].b), (0, 1));
        assert_eq!((merges[1].a, merges[1].b), (4, 5));
        assert_eq!((merges[2].a, merges[2].b), (2, 3));
        let order: Vec<&str> = leaf_order(&merges, 5).iter().map(|&i| names[i]).collect();
        assert_eq!(order, ["e", "a", "b", "c", "d"]);
    }

    /// Every merge's height is the mean distance between the members of its two clusters
    /// (the definition), and no other pair of clusters live at that step was closer.
    #[test]
    fn every_merge_is_the_closest_pair_by_mean_member_distance() {
        let n = 9;
        let mut s = 12345u64;
        let pts: Vec<(f64, f64)> = (0..n)
            .map(|_| {
                let mut r = || {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % 1000) as f64 / 100.0
                };
                (r(), r())
            })
            .collect();
        let d: Vec<f64> = (0..n * n)
            .map(|x| ((pts[x / n].0 - pts[x % n].0).powi(2) + (pts[x / n].1 - pts[x % n].1).powi(2)).sqrt())
            .collect();
        let merges = average_linkage(&d, n);
        let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        let mut live: Vec<usize> = (0..n).collect();
        let dd = &d;
        let mean = |a: &[usize], b: &[usize]| {
            a.iter().flat_map(|&i| b.iter().map(move |&j| dd[i * n + j])).sum::<f64>() / (a.len() * b.len()) as f64
        };
        for m in &merges {
            let h = mean(&members[m.a], &members[m.b]);
            assert!((h - m.height).abs() < 1e-9, "height {} vs brute {h}", m.height);
            for (x, &p) in live.iter().enumerate() {
                for &q in &live[x + 1..] {
                    assert!(mean(&members[p], &members[q]) >= m.height - 1e-9, "a closer pair was skipped");
                }
            }
            let joined = [members[m.a].clone(), members[m.b].clone()].concat();
            assert_eq!(joined.len(), m.size);
            members.push(joined);
            live.retain(|&c| c != m.a && c != m.b);
            live.push(members.len() - 1);
        }
        let mut order = leaf_order(&merges, n);
        order.sort_unstable();
        assert_eq!(order, (0..n).collect::<Vec<_>>());
    }
}
