//! The DAG walker every executor shares: it owns node states, readiness, retries, failure
//! propagation (`keep_going`), cancellation, progress lines and the run summary; an
//! [`Executor`] only starts ready nodes and reports finished ones. The local runner
//! (`run.rs`) and the Slurm executor (`slurm.rs`) are the two executors; a third is one file
//! implementing the trait.
//!
//! Invariants: a node starts only when every input is done; a node that fails (after its
//! retries) skips everything downstream of it; nothing new starts once the run stops (a
//! failure without `keep_going`, or cancellation); every node ends the run counted exactly
//! once in the summary (cached, computed, found done, failed or skipped).
use crate::node::NodeOutcome;
use crate::plan::{Plan, Status};
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub total: usize,
    pub cached: usize,
    pub computed: usize,
    pub found_done: usize,
    pub failed: Vec<(String, String)>,
    /// Nodes not run because an input failed, or because the run stopped.
    pub skipped: usize,
    pub cancelled: bool,
    pub seconds: f64,
}

impl RunSummary {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && !self.cancelled && self.skipped == 0
    }
}

/// A finished node as an executor reports it: its outcome, or why it failed.
pub type Finished = (usize, Result<NodeOutcome, String>);

/// Runs nodes somewhere. The walker calls `start` with nodes whose inputs are all done (at
/// most `free()` of them), and `poll` until every started node is reported.
pub trait Executor {
    /// How many more nodes it takes now (`usize::MAX`: no limit).
    fn free(&self) -> usize;
    /// Starts these nodes (plan indices).
    fn start(&mut self, plan: &Plan, nodes: &[usize]) -> Result<()>;
    /// Waits a little (at most about a poll interval) and returns the nodes that finished.
    fn poll(&mut self, plan: &Plan) -> Result<Vec<Finished>>;
    /// The run is cancelled: stop work in flight. Returns the started nodes abandoned (never
    /// to be reported); the others are still reported by `poll`.
    fn cancel(&mut self) -> Vec<usize>;
    /// The memory node `i` will hold while it runs (counted against the walker's budget).
    fn need(&self, _i: usize) -> Held {
        Held::default()
    }
    /// Only the nodes `needed` (running or ready) still need what was loaded for earlier
    /// ones: the rest may be dropped.
    fn release(&mut self, _plan: &Plan, _needed: &[usize]) {}
}

/// Memory a node holds while it runs: host RAM, and on each GPU (index = CUDA device number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub ram: u64,
    pub gpu: Vec<u64>,
}

impl Held {
    pub fn ram(bytes: u64) -> Self {
        Held { ram: bytes, gpu: Vec::new() }
    }
    fn add(&mut self, o: &Held) {
        self.ram += o.ram;
        if self.gpu.len() < o.gpu.len() {
            self.gpu.resize(o.gpu.len(), 0);
        }
        self.gpu.iter_mut().zip(&o.gpu).for_each(|(a, b)| *a += b);
    }
    fn sub(&mut self, o: &Held) {
        self.ram -= o.ram;
        self.gpu.iter_mut().zip(&o.gpu).for_each(|(a, b)| *a -= b);
    }
    /// Whether this much fits every budget that is set.
    fn fits(&self, b: &Budget) -> bool {
        b.ram.is_none_or(|r| self.ram <= r)
            && self.gpu.iter().enumerate().all(|(d, &g)| b.gpu.get(d).copied().flatten().is_none_or(|cap| g <= cap))
    }
}

/// What the walker may start at once: host RAM, and each GPU's memory (`None`, or a GPU
/// not listed: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budget {
    pub ram: Option<u64>,
    pub gpu: Vec<Option<u64>>,
}

impl Budget {
    /// A limit on host RAM only.
    pub fn ram(bytes: Option<u64>) -> Self {
        Budget { ram: bytes, gpu: Vec::new() }
    }
}

/// Walker settings.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Keep starting independent nodes after a failure.
    pub keep_going: bool,
    /// How often a failed node is started again before it counts as failed.
    pub retries: u32,
    /// One line per node started and finished on stderr, with elapsed time and an ETA.
    pub lines: bool,
    /// Start a node only while the memory of the running ones ([`Executor::need`]) plus its
    /// own fits, in RAM and on every GPU; a node that alone exceeds it runs by itself.
    pub budget: Budget,
    /// Each node's estimated work in seconds (by plan index; `mexa_stages::cost`), so the
    /// ETA is weighted by work, not by node count. Missing entries count as [`SMALL_NODE_S`].
    pub weights: Vec<f64>,
}

/// The weight of a node with no estimate (aggregations, tables: seconds at most).
pub const SMALL_NODE_S: f64 = 1.0;

/// The time left: the estimated work left, scaled by how fast the work done went once a tenth
/// of it is done (before that, a node's speed says little: the estimate stands). None before
/// any work is done or after all is.
pub fn eta(elapsed: Duration, done_work: f64, total_work: f64) -> Option<Duration> {
    if done_work <= 0.0 || done_work >= total_work {
        return None;
    }
    let pace = if done_work >= 0.1 * total_work { elapsed.as_secs_f64() / done_work } else { 1.0 };
    Some(Duration::from_secs_f64((total_work - done_work) * pace))
}

/// Told about each node the walker finishes (progress bars).
pub trait Observer {
    fn finished(&self, _summary: &RunSummary, _to_run: usize, _eta: Option<Duration>) {}
    /// Runs `f` (which logs) without live progress bars drawing over it.
    fn suspend(&self, f: &mut dyn FnMut()) {
        f()
    }
}

impl Observer for () {}

#[derive(Clone, Copy, PartialEq, Debug)]
enum St {
    Waiting,
    Ready,
    Running,
    Done,
    Failed,
    Skipped,
}

/// Walks `plan`, computing every node that is not cached through `exec`.
pub fn walk(
    plan: &Plan,
    exec: &mut dyn Executor,
    opts: WalkOptions,
    cancel: &AtomicBool,
    observer: &dyn Observer,
) -> Result<RunSummary> {
    let t0 = Instant::now();
    let n = plan.nodes.len();
    let mut summary = RunSummary { total: n, ..Default::default() };
    let mut st: Vec<St> =
        plan.nodes.iter().map(|nd| if nd.status == Status::Cached { St::Done } else { St::Waiting }).collect();
    summary.cached = st.iter().filter(|s| **s == St::Done).count();
    let to_run = n - summary.cached;
    let weight = |i: usize| opts.weights.get(i).copied().filter(|w| w.is_finite() && *w > 0.0).unwrap_or(SMALL_NODE_S);
    let total_work: f64 = (0..n).filter(|&i| plan.nodes[i].status != Status::Cached).map(weight).sum();
    let mut done_work = 0.0;
    let mut dependents: Vec<Vec<usize>> = vec![vec![]; n];
    let mut missing = vec![0usize; n];
    for (i, node) in plan.nodes.iter().enumerate() {
        let mut deps: Vec<usize> = node.deps.values().flatten().copied().collect();
        deps.sort();
        deps.dedup();
        for d in deps {
            dependents[d].push(i);
            if st[d] != St::Done {
                missing[i] += 1;
            }
        }
    }
    let mut ready: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| st[i] == St::Waiting && missing[i] == 0).collect();
    for &i in &ready {
        st[i] = St::Ready;
    }
    let mut attempts = vec![0u32; n];
    let mut started_at = vec![t0; n];
    let (mut running, mut stop, mut used) = (0usize, false, Held::default());
    loop {
        if cancel.load(Ordering::SeqCst) && !summary.cancelled {
            summary.cancelled = true;
            stop = true;
            for i in exec.cancel() {
                st[i] = St::Skipped;
                running -= 1;
                used.sub(&exec.need(i));
            }
        }
        if !stop {
            let batch = pick(&mut ready, exec.free(), running, &mut used, &opts.budget, |i| exec.need(i));
            if !batch.is_empty() {
                for &i in &batch {
                    st[i] = St::Running;
                    started_at[i] = Instant::now();
                    if opts.lines {
                        eprintln!("[{}] start {}", clock(t0.elapsed()), plan.nodes[i].label);
                    }
                }
                running += batch.len();
                exec.start(plan, &batch)?;
            }
        }
        if running == 0 && (stop || ready.is_empty()) {
            break;
        }
        let finished = exec.poll(plan)?;
        let any_finished = !finished.is_empty();
        for (i, result) in finished {
            running -= 1;
            used.sub(&exec.need(i));
            let label = &plan.nodes[i].label;
            match result {
                Ok(outcome) => {
                    st[i] = St::Done;
                    match outcome {
                        NodeOutcome::Computed { seconds } => {
                            summary.computed += 1;
                            tracing::info!("computed {label} in {seconds:.2}s → {}", plan.nodes[i].key.short());
                        }
                        NodeOutcome::FoundDone => {
                            summary.found_done += 1;
                            tracing::info!("{label} was computed by another runner");
                        }
                    }
                    for &d in &dependents[i] {
                        missing[d] -= 1;
                        if missing[d] == 0 && st[d] == St::Waiting {
                            st[d] = St::Ready;
                            ready.push_back(d);
                        }
                    }
                }
                Err(_) if summary.cancelled => {
                    st[i] = St::Skipped;
                    skip_downstream(i, &dependents, &mut st, &mut ready);
                }
                Err(why) if attempts[i] < opts.retries && !stop => {
                    attempts[i] += 1;
                    observer.suspend(&mut || {
                        tracing::warn!("{label} failed, retrying ({}/{}): {why}", attempts[i], opts.retries)
                    });
                    st[i] = St::Ready;
                    ready.push_back(i);
                    continue;
                }
                Err(why) => {
                    observer.suspend(&mut || tracing::error!("{label} failed: {why}"));
                    summary.failed.push((label.clone(), why));
                    st[i] = St::Failed;
                    skip_downstream(i, &dependents, &mut st, &mut ready);
                    if !opts.keep_going {
                        stop = true;
                    }
                }
            }
            done_work += weight(i);
            let left = eta(t0.elapsed(), done_work, total_work);
            if opts.lines {
                let done = summary.computed + summary.found_done + summary.failed.len();
                let elapsed = t0.elapsed();
                let eta = left.map(|d| format!("; about {} left", clock(d))).unwrap_or_default();
                let what = if st[i] == St::Done { "done" } else { "failed" };
                let secs = started_at[i].elapsed().as_secs_f64();
                eprintln!("[{}] {what} {label} in {secs:.1}s ({done}/{to_run} nodes{eta})", clock(elapsed));
            }
            observer.finished(&summary, to_run, left);
        }
        if any_finished {
            let needed: Vec<usize> = (0..n).filter(|&i| matches!(st[i], St::Running | St::Ready)).collect();
            exec.release(plan, &needed);
        }
    }
    summary.skipped = st.iter().filter(|s| matches!(s, St::Waiting | St::Ready | St::Running | St::Skipped)).count();
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// Takes from the front of `ready` the nodes to start now: at most `free`, and only those
/// whose memory fits beside what runs in RAM and on every GPU (a node that fits nowhere
/// starts alone); the others keep their place.
fn pick(
    ready: &mut std::collections::VecDeque<usize>,
    mut free: usize,
    running: usize,
    used: &mut Held,
    budget: &Budget,
    need: impl Fn(usize) -> Held,
) -> Vec<usize> {
    if free == 0 || ready.is_empty() {
        return Vec::new();
    }
    let mut batch = Vec::new();
    let mut rest = std::collections::VecDeque::new();
    while let Some(i) = ready.pop_front() {
        let n = need(i);
        let alone = running + batch.len() == 0;
        let mut with = used.clone();
        with.add(&n);
        if free > 0 && (alone || with.fits(budget)) {
            batch.push(i);
            *used = with;
            free -= 1;
        } else {
            rest.push_back(i);
        }
    }
    *ready = rest;
    batch
}

/// Marks everything downstream of failed node `i` skipped and drops it from the ready queue.
fn skip_downstream(i: usize, dependents: &[Vec<usize>], st: &mut [St], ready: &mut std::collections::VecDeque<usize>) {
    let mut stack = dependents[i].clone();
    while let Some(d) = stack.pop() {
        if matches!(st[d], St::Waiting | St::Ready) {
            st[d] = St::Skipped;
            stack.extend(dependents[d].iter().copied());
        }
    }
    ready.retain(|&r| st[r] == St::Ready);
}

/// `h:mm:ss` of a duration.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod eta_tests {
    use super::*;

    #[test]
    fn the_eta_is_weighted_by_work_done_not_nodes() {
        // 2 of 3 nodes done in 10 s but they were 10% of the work: 90 s left, not 5 s.
        let d = eta(Duration::from_secs(10), 10.0, 100.0).unwrap();
        assert_eq!(d.as_secs(), 90);
        // Running twice as slow as estimated: twice the estimate left.
        assert_eq!(eta(Duration::from_secs(100), 50.0, 100.0).unwrap().as_secs(), 100);
        // Too little done to judge the pace (a 0.1 s node of 1 s estimated): the estimate stands.
        assert_eq!(eta(Duration::from_millis(100), 1.0, 500.0).unwrap().as_secs(), 499);
        assert!(eta(Duration::from_secs(10), 0.0, 100.0).is_none());
        assert!(eta(Duration::from_secs(10), 100.0, 100.0).is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanNode, Reason};
    use std::collections::{BTreeMap, HashMap};

    /// A plan of `deps.len()` nodes; node i is fed by the nodes `deps[i]`; none cached.
    fn plan(deps: &[&[usize]]) -> Plan {
        let nodes = deps
            .iter()
            .enumerate()
            .map(|(i, d)| PlanNode {
                stage: format!("s{i}"),
                kind: "k".into(),
                label: format!("n{i}"),
                cell: vec![],
                params: serde_json::Value::Null,
                spec: mexa_store::KeySpec {
                    stage: "k".into(),
                    version: 1,
                    params: serde_json::Value::Null,
                    inputs: BTreeMap::new(),
                },
                key: mexa_store::Key::parse(&format!("{i:064x}")).unwrap(),
                deps: BTreeMap::from([("in".to_string(), d.to_vec())]),
                resources: serde_json::Value::Null,
                status: Status::Run(Reason::NeverRun),
            })
            .collect();
        Plan { pipeline: "p".into(), description: String::new(), nodes }
    }

    /// An executor that finishes each started node on the next poll, failing the nodes in
    /// `fail` (each as many times as given), and records what it saw.
    #[derive(Default)]
    struct Fake {
        slots: usize,
        fail: HashMap<usize, u32>,
        running: Vec<usize>,
        started: Vec<usize>,
        abandon: bool,
        cancel_after: Option<(usize, &'static AtomicBool)>,
        needs: Vec<u64>,
        /// Per node: memory on each GPU.
        gpu_needs: Vec<Vec<u64>>,
        /// The most memory held by nodes running at once (RAM), and per GPU.
        peak: u64,
        gpu_peak: Vec<u64>,
        released: Vec<Vec<usize>>,
    }

    impl Executor for Fake {
        fn free(&self) -> usize {
            self.slots - self.running.len()
        }
        fn start(&mut self, plan: &Plan, nodes: &[usize]) -> Result<()> {
            for &i in nodes {
                // Every input is done when a node starts: each was started and finished before.
                for &d in plan.nodes[i].deps.values().flatten() {
                    assert!(self.started.contains(&d) && !self.running.contains(&d), "n{i} started before n{d}");
                }
                self.running.push(i);
                self.started.push(i);
            }
            let mut held = Held::default();
            for &i in &self.running {
                held.add(&self.need(i));
            }
            self.peak = self.peak.max(held.ram);
            self.gpu_peak.resize(held.gpu.len().max(self.gpu_peak.len()), 0);
            self.gpu_peak.iter_mut().zip(&held.gpu).for_each(|(p, g)| *p = (*p).max(*g));
            Ok(())
        }
        fn poll(&mut self, _plan: &Plan) -> Result<Vec<Finished>> {
            if let Some((k, flag)) = self.cancel_after {
                if self.started.len() >= k {
                    flag.store(true, Ordering::SeqCst);
                    return Ok(vec![]);
                }
            }
            Ok(std::mem::take(&mut self.running)
                .into_iter()
                .map(|i| match self.fail.get_mut(&i) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        (i, Err("boom".to_string()))
                    }
                    _ => (i, Ok(NodeOutcome::Computed { seconds: 0.0 })),
                })
                .collect())
        }
        fn need(&self, i: usize) -> Held {
            Held {
                ram: self.needs.get(i).copied().unwrap_or(0),
                gpu: self.gpu_needs.get(i).cloned().unwrap_or_default(),
            }
        }
        fn release(&mut self, _plan: &Plan, needed: &[usize]) {
            self.released.push(needed.to_vec());
        }
        fn cancel(&mut self) -> Vec<usize> {
            if self.abandon {
                std::mem::take(&mut self.running)
            } else {
                vec![]
            }
        }
    }

    fn counted(s: &RunSummary) -> usize {
        s.cached + s.computed + s.found_done + s.failed.len() + s.skipped
    }

    // 0 → 1 → 3, 0 → 2 → 3, 4 alone.
    const DIAMOND: &[&[usize]] = &[&[], &[0], &[0], &[1, 2], &[]];

    #[test]
    fn nodes_start_after_their_inputs_and_every_node_is_counted_once() {
        let p = plan(DIAMOND);
        let mut ex = Fake { slots: 2, ..Default::default() };
        let s = walk(&p, &mut ex, WalkOptions::default(), &AtomicBool::new(false), &()).unwrap();
        assert_eq!((s.computed, s.skipped, s.failed.len()), (5, 0, 0));
        assert_eq!(counted(&s), 5);
        assert!(s.ok());
    }

    #[test]
    fn a_failure_skips_what_depends_on_it_and_stops_the_run_unless_keep_going() {
        let p = plan(DIAMOND);
        let mut ex = Fake { slots: 1, fail: HashMap::from([(1, 1)]), ..Default::default() };
        let s = walk(&p, &mut ex, WalkOptions::default(), &AtomicBool::new(false), &()).unwrap();
        assert_eq!(s.failed, vec![("n1".to_string(), "boom".to_string())]);
        assert!(!ex.started.contains(&3), "3 depends on the failed node");
        assert_eq!(counted(&s), 5);
        assert!(s.computed < 4, "the run stopped after the failure");

        let mut ex = Fake { slots: 1, fail: HashMap::from([(1, 1)]), ..Default::default() };
        let opts = WalkOptions { keep_going: true, ..Default::default() };
        let s = walk(&p, &mut ex, opts, &AtomicBool::new(false), &()).unwrap();
        assert_eq!((s.computed, s.failed.len(), s.skipped), (3, 1, 1), "0, 2 and 4 ran; 3 was skipped");
    }

    #[test]
    fn retries_start_a_failed_node_again() {
        let p = plan(DIAMOND);
        let mut ex = Fake { slots: 2, fail: HashMap::from([(2, 2)]), ..Default::default() };
        let opts = WalkOptions { retries: 2, ..Default::default() };
        let s = walk(&p, &mut ex, opts.clone(), &AtomicBool::new(false), &()).unwrap();
        assert_eq!((s.computed, s.failed.len()), (5, 0));
        assert_eq!(ex.started.iter().filter(|&&i| i == 2).count(), 3);
        let mut ex = Fake { slots: 2, fail: HashMap::from([(2, 3)]), ..Default::default() };
        let s = walk(&p, &mut ex, opts, &AtomicBool::new(false), &()).unwrap();
        assert_eq!(s.failed.len(), 1, "three failures exceed two retries");
    }

    #[test]
    fn cancelling_starts_nothing_new_and_counts_abandoned_nodes_as_skipped() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        let p = plan(DIAMOND);
        let mut ex = Fake { slots: 2, abandon: true, cancel_after: Some((2, &FLAG)), ..Default::default() };
        let s = walk(&p, &mut ex, WalkOptions::default(), &FLAG, &()).unwrap();
        assert!(s.cancelled && !s.ok());
        assert_eq!(ex.started.len(), 2, "nothing started after the cancel");
        assert_eq!((s.computed, s.skipped), (0, 5));
    }

    #[test]
    fn a_memory_budget_starts_only_what_fits_and_lets_a_big_node_run_alone() {
        // Five independent nodes: 5, 5, 3, 12 (more than the budget) and 1 units.
        let p = plan(&[&[], &[], &[], &[], &[]]);
        let mut ex = Fake { slots: 5, needs: vec![5, 5, 3, 12, 1], ..Default::default() };
        let opts = WalkOptions { budget: Budget::ram(Some(9)), ..Default::default() };
        let s = walk(&p, &mut ex, opts, &AtomicBool::new(false), &()).unwrap();
        assert_eq!((s.computed, s.skipped), (5, 0));
        assert_eq!(ex.peak, 12, "the 12-unit node ran, alone");
        // First round: 5 + 3 + 1 fit in 9; the second 5 waits, then the 12 alone.
        assert_eq!(ex.started, [0, 2, 4, 1, 3]);
        let mut ex = Fake { slots: 5, needs: vec![5, 5, 3, 12, 1], ..Default::default() };
        walk(&p, &mut ex, WalkOptions::default(), &AtomicBool::new(false), &()).unwrap();
        assert_eq!(ex.peak, 26, "without a budget everything starts at once");
    }

    #[test]
    fn each_gpu_has_its_own_budget() {
        // Four independent nodes on two GPUs (bytes on cuda:0, cuda:1): a model split over
        // both, two on cuda:0 only, one on cuda:1 only. Each GPU holds 10.
        let p = plan(&[&[], &[], &[], &[]]);
        let gpu_needs = vec![vec![6, 6], vec![6, 0], vec![5, 0], vec![0, 3]];
        let mut ex = Fake { slots: 4, gpu_needs: gpu_needs.clone(), ..Default::default() };
        let opts = WalkOptions { budget: Budget { ram: None, gpu: vec![Some(10), Some(10)] }, ..Default::default() };
        let s = walk(&p, &mut ex, opts, &AtomicBool::new(false), &()).unwrap();
        assert_eq!(s.computed, 4);
        // Round 1: the split node, then node 1 would put 12 on cuda:0 and node 2 11: they
        // wait; node 3 fits on cuda:1. Round 2: node 1; node 2 beside it would be 11. Then 2.
        assert_eq!(ex.started, [0, 3, 1, 2]);
        assert_eq!(ex.gpu_peak, [6, 9]);
        // Without GPU budgets, all four at once: 17 on cuda:0.
        let mut ex = Fake { slots: 4, gpu_needs, ..Default::default() };
        walk(&p, &mut ex, WalkOptions::default(), &AtomicBool::new(false), &()).unwrap();
        assert_eq!(ex.gpu_peak, [17, 9]);
    }

    #[test]
    fn after_each_round_the_executor_learns_what_is_still_needed() {
        let p = plan(DIAMOND);
        let mut ex = Fake { slots: 1, ..Default::default() };
        walk(&p, &mut ex, WalkOptions::default(), &AtomicBool::new(false), &()).unwrap();
        // After node 0 (the first to finish), 4, 1 and 2 are ready; at the end nothing is.
        assert_eq!(ex.released.first().unwrap(), &vec![1, 2, 4]);
        assert!(ex.released.last().unwrap().is_empty());
    }
}
