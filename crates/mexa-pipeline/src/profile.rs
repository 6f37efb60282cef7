//! What a run cost: a [`Meter`] around each node's computation (wall time, the process's CPU
//! time and peak resident memory, written into the manifest), and [`profile`], which reads
//! them back per node for `mexa profile` and the run's timeline.
//!
//! CPU time and memory are the process's: exact for one node at a time (`run -j 1`, and every
//! Slurm task, which is its own process), shared between nodes that run side by side in one
//! process (the profile says so).
use crate::plan::Plan;
use mexa_store::{Cost, Store};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Measures one computation from `start` to `finish`.
pub struct Meter {
    t0: Instant,
    cpu0: Option<f64>,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl Meter {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes().unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        // Resident memory sampled every 50 ms: the high-water mark of the process's RSS
        // while this computation runs (getrusage's maxrss never comes down, so it cannot
        // tell one node's peak from an earlier one's).
        let sampler = std::thread::Builder::new()
            .name("mexa-meter".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(r) = rss_bytes() {
                        p.fetch_max(r, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .ok();
        Meter { t0: Instant::now(), cpu0: cpu_seconds(), stop, peak, sampler }
    }

    pub fn finish(mut self) -> Cost {
        let wall_s = self.t0.elapsed().as_secs_f64();
        let cpu_s = cpu_seconds().zip(self.cpu0).map(|(b, a)| (b - a).max(0.0));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let _ = h.join();
        }
        if let Some(r) = rss_bytes() {
            self.peak.fetch_max(r, Ordering::Relaxed);
        }
        let peak = self.peak.load(Ordering::Relaxed);
        Cost { wall_s, cpu_s, peak_rss_bytes: (peak > 0).then_some(peak) }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage writes into the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return None;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    Some(t(u.ru_utime) + t(u.ru_stime))
}

/// This process's resident memory now (Linux: /proc/self/statm).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as u64)
}

/// The field of a shard's manifest meta in which a stage that runs a model reports the tokens
/// it processed (embed, choice); the profile turns it into tokens/s.
pub const META_TOKENS: &str = "tokens";

/// One node's recorded cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeProfile {
    pub stage: String,
    pub label: String,
    /// Whether the store has the node's artifact.
    pub computed: bool,
    pub wall_s: Option<f64>,
    pub cpu_s: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// Tokens the node's shards report (embed, choice) and their summed wall time.
    pub tokens: Option<u64>,
    pub shard_wall_s: Option<f64>,
    /// When it finished (seconds since the epoch).
    pub finished_unix: Option<u64>,
}

impl NodeProfile {
    pub fn tokens_per_s(&self) -> Option<f64> {
        Some(self.tokens? as f64 / self.shard_wall_s.filter(|&w| w > 0.0)?)
    }
}

/// Every node's recorded cost, in plan order.
pub fn profile(plan: &Plan, store: &Store) -> Vec<NodeProfile> {
    plan.nodes
        .iter()
        .map(|n| {
            let m = store.contains(&n.key).then(|| store.manifest(&n.key).ok()).flatten();
            let (mut tokens, mut shard_wall) = (None, None);
            for k in m.as_ref().and_then(|m| m.shard_keys().ok()).unwrap_or_default() {
                if let Ok(s) = store.manifest(&k) {
                    if let Some(t) = s.meta.get(META_TOKENS).and_then(serde_json::Value::as_u64) {
                        *tokens.get_or_insert(0) += t;
                        *shard_wall.get_or_insert(0.0) += s.wall_time_s;
                    }
                }
            }
            NodeProfile {
                stage: n.stage.clone(),
                label: n.label.clone(),
                computed: m.is_some(),
                wall_s: m.as_ref().map(|m| m.wall_time_s),
                cpu_s: m.as_ref().and_then(|m| m.cpu_time_s),
                peak_rss_bytes: m.as_ref().and_then(|m| m.peak_rss_bytes),
                tokens,
                shard_wall_s: shard_wall,
                finished_unix: m.as_ref().map(|m| m.created_unix),
            }
        })
        .collect()
}

/// The last run's nodes as (label, stage, start, end) in seconds since it began: computed
/// nodes whose intervals chain back from the latest finish (gaps under a minute), in start
/// order. A node's start is its finish minus its wall time.
pub fn last_run(nodes: &[NodeProfile]) -> Vec<(String, String, f64, f64)> {
    let mut spans: Vec<(f64, f64, &NodeProfile)> = nodes
        .iter()
        .filter_map(|n| {
            let end = n.finished_unix? as f64;
            Some((end - n.wall_s?, end, n))
        })
        .collect();
    spans.sort_by(|a, b| b.1.total_cmp(&a.1));
    let Some(&(mut earliest, _, _)) = spans.first() else { return vec![] };
    let mut run = Vec::new();
    for (start, end, n) in spans {
        if end < earliest - 60.0 {
            break;
        }
        earliest = earliest.min(start);
        run.push((start, end, n));
    }
    run.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t0 = run.first().map(|r| r.0).unwrap_or(0.0);
    run.into_iter().map(|(s, e, n)| (n.label.clone(), n.stage.clone(), s - t0, e - t0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(label: &str, finished: u64, wall: f64) -> NodeProfile {
        NodeProfile {
            stage: "s".into(),
            label: label.into(),
            computed: true,
            wall_s: Some(wall),
            cpu_s: None,
            peak_rss_bytes: None,
            tokens: None,
            shard_wall_s: None,
            finished_unix: Some(finished),
        }
    }

    #[test]
    fn the_last_run_is_the_chain_of_nodes_ending_last() {
        // An old node from yesterday, then a run of three (one waiting on another).
        let nodes =
            [node("old", 1_000, 5.0), node("a", 100_010, 10.0), node("b", 100_030, 20.0), node("c", 100_012, 4.0)];
        let run = last_run(&nodes);
        let labels: Vec<&str> = run.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(labels, ["a", "c", "b"], "in start order");
        assert_eq!((run[0].2, run[0].3), (0.0, 10.0));
        assert_eq!((run[1].2, run[1].3), (8.0, 12.0));
        assert_eq!((run[2].2, run[2].3), (10.0, 30.0));
        assert!(last_run(&[]).is_empty());
    }

    #[test]
    fn a_meter_sees_cpu_work_and_memory_growth() {
        let m = Meter::start();
        // Spin until this thread has had 300 ms of CPU by its own clock (a wall-clock spin gets
        // less CPU on a loaded machine: CI runs tests in parallel on two cores).
        let thread_cpu = || {
            let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
            // SAFETY: clock_gettime writes into the struct we own.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let t = thread_cpu();
        let mut x = 0u64;
        while thread_cpu() - t < Duration::from_millis(300) {
            for _ in 0..1000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        let block = vec![1u8; 64 << 20];
        std::thread::sleep(Duration::from_millis(120));
        let before = rss_bytes().unwrap();
        let c = m.finish();
        assert!(std::hint::black_box(x) != 7 && block.iter().map(|&b| b as usize).sum::<usize>() == 64 << 20);
        assert!(c.wall_s >= 0.4, "{c:?}");
        assert!(c.cpu_s.unwrap() >= 0.2, "{c:?}");
        assert!(c.peak_rss_bytes.unwrap() >= before && before > 64 << 20, "{c:?}");
    }
}
