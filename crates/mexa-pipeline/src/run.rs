//! The local runner: executes the nodes of a [`Plan`] that are not cached, in parallel where
//! the DAG allows, with per-key locks so several runners can share one store.
use crate::plan::{Plan, Status};
use crate::stage::{Ctx, InputRef, Progress, Registry};
use anyhow::{anyhow, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mexa_store::{KeySpec, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Everything a worker needs to compute one node, with no pipeline file: what the head
/// process serialises for a remote executor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    pub key: String,
    pub label: String,
    /// Id under which the store remembers this node's last key.
    pub node_id: String,
    pub spec: KeySpec,
    pub params: Value,
    /// Slot → (key, label) of each input artifact.
    pub inputs: BTreeMap<String, Vec<(String, String)>>,
}

impl NodeSpec {
    pub fn from_plan(plan: &Plan, i: usize) -> Self {
        let n = &plan.nodes[i];
        NodeSpec {
            key: n.key.clone(),
            label: n.label.clone(),
            node_id: plan.node_id(i),
            spec: n.spec.clone(),
            params: n.params.clone(),
            inputs: n
                .deps
                .iter()
                .map(|(slot, ds)| {
                    (
                        slot.clone(),
                        ds.iter().map(|&d| (plan.nodes[d].key.clone(), plan.nodes[d].label.clone())).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// How one node ended.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOutcome {
    Computed {
        seconds: f64,
    },
    /// Another runner produced it while we waited for its lock.
    FoundDone,
}

/// Computes one node and publishes its artifact (the unit of work of every executor).
pub fn execute_node(
    node: &NodeSpec,
    registry: &Registry,
    store: &Store,
    cancel: &AtomicBool,
    progress: &dyn Progress,
    threads: usize,
) -> Result<NodeOutcome> {
    let stage = registry.get(&node.spec.stage).ok_or_else(|| anyhow!("unknown stage kind `{}`", node.spec.stage))?;
    if store.complete(&node.key) {
        return Ok(NodeOutcome::FoundDone);
    }
    let _lock = store.lock(&node.key, || {
        progress.message("waiting: another runner is computing this");
        tracing::info!("{}: another runner holds its lock; waiting", node.label);
    })?;
    if store.complete(&node.key) {
        return Ok(NodeOutcome::FoundDone);
    }
    for (slot, keys) in &node.inputs {
        for (k, l) in keys {
            if !store.complete(k) {
                return Err(anyhow!(
                    "input `{slot}` ({l}, {}) is missing from the store (or one of its shards is)",
                    &k[..12]
                ));
            }
        }
    }
    let inputs = node
        .inputs
        .iter()
        .map(|(s, ks)| (s.clone(), ks.iter().map(|(k, l)| InputRef { key: k.clone(), label: l.clone() }).collect()))
        .collect();
    let ctx = Ctx {
        store,
        key: &node.key,
        label: &node.label,
        kind: &node.spec.stage,
        version: node.spec.version,
        params: &node.params,
        inputs,
        cancel,
        progress,
        threads,
    };
    let t = Instant::now();
    let out = stage.run(&ctx)?;
    let seconds = t.elapsed().as_secs_f64();
    let m = store
        .write(node.spec.clone(), &node.label, out.table.schema, &out.table.batches, seconds, out.meta)
        .with_context(|| format!("writing the artifact of {}", node.label))?;
    if m.key != node.key {
        return Err(anyhow!("internal error: artifact key {} differs from planned key {}", m.key, node.key));
    }
    store.write_ref(&node.node_id, &serde_json::json!({"key": node.key, "label": node.label, "spec": node.spec}))?;
    Ok(NodeOutcome::Computed { seconds })
}

/// Options of a local run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Nodes computed at once.
    pub jobs: usize,
    /// Threads each node may use.
    pub threads: usize,
    /// Keep running independent nodes after a failure.
    pub keep_going: bool,
    /// How progress is shown.
    pub progress: ProgressMode,
}

/// How a run shows progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Nothing until the summary.
    None,
    /// Live bars (an interactive terminal).
    Bars,
    /// One line per node and shard started or finished, with elapsed time and an ETA: for
    /// logs nobody watches live (Slurm, nohup, CI).
    Lines,
}

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

#[derive(Clone, Copy, PartialEq, Debug)]
enum St {
    Waiting,
    Ready,
    Running,
    Done,
    Failed,
    Skipped,
}

struct Shared {
    state: Vec<St>,
    missing: Vec<usize>,
    ready: VecDeque<usize>,
    running: usize,
    stop: bool,
    summary: RunSummary,
}

/// Progress as log lines: each message of a running node becomes one line.
struct LineProgress<'a> {
    label: &'a str,
    t0: Instant,
}

impl Progress for LineProgress<'_> {
    fn message(&self, msg: &str) {
        eprintln!("[{}] {}: {msg}", clock(self.t0.elapsed()), self.label);
    }
}

/// `h:mm:ss` of a duration.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn set_length(&self, n: u64) {
        self.0.set_length(n);
        self.0.set_style(
            ProgressStyle::with_template("  {spinner} {prefix:.bold} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .unwrap()
                .progress_chars("=> "),
        );
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
    fn message(&self, msg: &str) {
        self.0.set_message(msg.to_string());
    }
}

/// Runs every node of `plan` that is not cached.
pub fn run(plan: &Plan, registry: &Registry, store: &Store, opts: &RunOptions, cancel: &AtomicBool) -> RunSummary {
    let t0 = Instant::now();
    // While this lives, `gc` spares everything written from now on (see mexa_store::gc).
    let _registered = store.register_run().map_err(|e| tracing::warn!("cannot register the run for gc: {e:#}")).ok();
    let n = plan.nodes.len();
    let mut dependents: Vec<Vec<usize>> = vec![vec![]; n];
    let mut sh = Shared {
        state: vec![St::Waiting; n],
        missing: vec![0; n],
        ready: VecDeque::new(),
        running: 0,
        stop: false,
        summary: RunSummary { total: n, ..Default::default() },
    };
    for (i, node) in plan.nodes.iter().enumerate() {
        if node.status == Status::Cached {
            sh.state[i] = St::Done;
            sh.summary.cached += 1;
        }
    }
    for (i, node) in plan.nodes.iter().enumerate() {
        if sh.state[i] == St::Done {
            continue;
        }
        let mut deps: Vec<usize> = node.deps.values().flatten().copied().collect();
        deps.sort();
        deps.dedup();
        for d in deps {
            dependents[d].push(i);
            if sh.state[d] != St::Done {
                sh.missing[i] += 1;
            }
        }
        if sh.missing[i] == 0 {
            sh.state[i] = St::Ready;
            sh.ready.push_back(i);
        }
    }
    let to_run = n - sh.summary.cached;

    let lines = opts.progress == ProgressMode::Lines;
    let mp = MultiProgress::with_draw_target(if opts.progress == ProgressMode::Bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let main = mp.add(ProgressBar::new(to_run as u64));
    main.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan}] {pos}/{len} nodes {msg} ({elapsed})")
            .unwrap()
            .progress_chars("=> "),
    );
    main.set_prefix(plan.pipeline.clone());
    main.enable_steady_tick(Duration::from_millis(200));

    let shared = Mutex::new(sh);
    let cv = Condvar::new();
    let jobs = opts.jobs.max(1).min(to_run.max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = {
                    let mut g = shared.lock().unwrap();
                    loop {
                        if cancel.load(Ordering::SeqCst) {
                            g.stop = true;
                            g.summary.cancelled = true;
                        }
                        if !g.stop {
                            if let Some(i) = g.ready.pop_front() {
                                g.state[i] = St::Running;
                                g.running += 1;
                                break Some(i);
                            }
                        }
                        if g.running == 0 && (g.ready.is_empty() || g.stop) {
                            break None;
                        }
                        g = cv.wait_timeout(g, Duration::from_millis(200)).unwrap().0;
                    }
                };
                let Some(i) = i else {
                    cv.notify_all();
                    return;
                };
                let node = &plan.nodes[i];
                let bar = mp.insert_before(&main, ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg} ({elapsed})").unwrap());
                bar.set_prefix(node.label.clone());
                bar.enable_steady_tick(Duration::from_millis(200));
                let spec = NodeSpec::from_plan(plan, i);
                let bars = BarProgress(bar.clone());
                let logged = LineProgress { label: &node.label, t0 };
                let prog: &dyn Progress = if lines { &logged } else { &bars };
                let node_t0 = Instant::now();
                if lines {
                    eprintln!("[{}] start {}", clock(t0.elapsed()), node.label);
                }
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    execute_node(&spec, registry, store, cancel, prog, opts.threads)
                }))
                .unwrap_or_else(|p| Err(anyhow!("the stage panicked: {}", panic_text(&p))));
                bar.finish_and_clear();
                mp.remove(&bar);
                let mut g = shared.lock().unwrap();
                g.running -= 1;
                match result {
                    Ok(outcome) => {
                        g.state[i] = St::Done;
                        match outcome {
                            NodeOutcome::Computed { seconds } => {
                                g.summary.computed += 1;
                                tracing::info!("computed {} in {seconds:.2}s → {}", node.label, &node.key[..12]);
                            }
                            NodeOutcome::FoundDone => {
                                g.summary.found_done += 1;
                                tracing::info!("{} was computed by another runner", node.label);
                            }
                        }
                        for &d in &dependents[i] {
                            g.missing[d] -= 1;
                            if g.missing[d] == 0 && g.state[d] == St::Waiting {
                                g.state[d] = St::Ready;
                                g.ready.push_back(d);
                            }
                        }
                    }
                    Err(e) => {
                        let cancelled = cancel.load(Ordering::SeqCst);
                        g.state[i] = St::Failed;
                        if cancelled {
                            g.summary.skipped += 1;
                        } else {
                            let msg = format!("{e:#}");
                            mp.suspend(|| tracing::error!("{} failed: {msg}", node.label));
                            g.summary.failed.push((node.label.clone(), msg));
                            if !opts.keep_going {
                                g.stop = true;
                            }
                        }
                        // Everything downstream is skipped.
                        let mut stack = dependents[i].clone();
                        while let Some(d) = stack.pop() {
                            if matches!(g.state[d], St::Waiting | St::Ready) {
                                g.state[d] = St::Skipped;
                                stack.extend(dependents[d].iter().copied());
                            }
                        }
                        let g = &mut *g;
                        let state = &g.state;
                        g.ready.retain(|&r| state[r] == St::Ready);
                    }
                }
                let s = &g.summary;
                if lines {
                    let done = s.computed + s.found_done + s.failed.len();
                    let elapsed = t0.elapsed();
                    let eta = if done > 0 && done < to_run {
                        format!("; about {} left", clock(elapsed.mul_f64((to_run - done) as f64 / done as f64)))
                    } else {
                        String::new()
                    };
                    let what = if matches!(g.state[i], St::Failed) { "failed" } else { "done" };
                    eprintln!(
                        "[{}] {what} {} in {:.1}s ({done}/{to_run} nodes{eta})",
                        clock(elapsed),
                        node.label,
                        node_t0.elapsed().as_secs_f64()
                    );
                }
                main.set_position((s.computed + s.found_done + s.failed.len()) as u64);
                main.set_message(format!(
                    "computed {}, cached {}, failed {}",
                    s.computed + s.found_done,
                    s.cached,
                    s.failed.len()
                ));
                drop(g);
                cv.notify_all();
            });
        }
    });
    main.finish_and_clear();
    let mut g = shared.into_inner().unwrap();
    g.summary.skipped += g.state.iter().filter(|s| matches!(s, St::Waiting | St::Ready | St::Skipped)).count();
    g.summary.seconds = t0.elapsed().as_secs_f64();
    g.summary
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
