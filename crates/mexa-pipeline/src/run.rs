//! The local executor: a pool of worker threads that computes the nodes the walker
//! ([`crate::walk`]) hands it, in parallel where the DAG allows, with per-key locks so several
//! runners can share one store.
use crate::node::{execute_node, NodeSpec};
use crate::plan::{Plan, Status};
use crate::stage::{Progress, Registry, Resources};
use crate::walk::{clock, walk, Executor, Finished, Observer, RunSummary, WalkOptions};
use anyhow::{anyhow, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mexa_store::Store;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

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
    /// Start nodes only while the memory they declare ([`crate::Stage::resources`]) fits:
    /// host RAM and each GPU's.
    pub budget: crate::walk::Budget,
    /// Each node's estimated seconds (by plan index), for an ETA weighted by work.
    pub weights: Vec<f64>,
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

/// Runs every node of `plan` that is not cached, `opts.jobs` at a time in this process.
pub fn run(plan: &Plan, registry: &Registry, store: &Store, opts: &RunOptions, cancel: &AtomicBool) -> RunSummary {
    let t0 = Instant::now();
    // While this lives, `gc` spares everything written from now on (see mexa_store::gc).
    let _registered = store.register_run().map_err(|e| tracing::warn!("cannot register the run for gc: {e:#}")).ok();
    let to_run = plan.nodes.iter().filter(|n| n.status != Status::Cached).count();
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
    let jobs = opts.jobs.max(1).min(to_run.max(1));
    let (job_tx, job_rx) = mpsc::channel::<usize>();
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<Finished>();
    let walk_opts = WalkOptions {
        keep_going: opts.keep_going,
        retries: 0,
        lines,
        budget: opts.budget.clone(),
        weights: opts.weights.clone(),
    };
    let resources = node_resources(plan, registry);
    let observer = MainBar(&main, &mp);
    let summary = std::thread::scope(|scope| {
        for _ in 0..jobs {
            let (done_tx, job_rx, mp, main) = (done_tx.clone(), &job_rx, mp.clone(), &main);
            scope.spawn(move || loop {
                let Ok(i) = job_rx.lock().unwrap().recv() else { return };
                let node = &plan.nodes[i];
                let bar = mp.insert_before(main, ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg} ({elapsed})").unwrap());
                bar.set_prefix(node.label.clone());
                bar.enable_steady_tick(Duration::from_millis(200));
                let (bars, logged) = (BarProgress(bar.clone()), LineProgress { label: &node.label, t0 });
                let prog: &dyn Progress = if lines { &logged } else { &bars };
                let spec = NodeSpec::from_plan(plan, i);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    execute_node(&spec, registry, store, cancel, prog, opts.threads)
                }))
                .unwrap_or_else(|p| Err(anyhow!("the stage panicked: {}", panic_text(&p))));
                bar.finish_and_clear();
                mp.remove(&bar);
                let _ = done_tx.send((i, result.map_err(|e| format!("{e:#}"))));
            });
        }
        let mut exec = Local { jobs, running: 0, jobs_tx: job_tx, done_rx, resources, registry };
        walk(plan, &mut exec, walk_opts, cancel, &observer)
        // `exec` (and with it the job queue) is dropped here, so the workers return.
    });
    main.finish_and_clear();
    summary.unwrap_or_else(|e| RunSummary {
        total: plan.nodes.len(),
        failed: vec![("(runner)".into(), format!("{e:#}"))],
        seconds: t0.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// What each node to run declares it will hold (nothing for cached nodes).
fn node_resources(plan: &Plan, registry: &Registry) -> Vec<Resources> {
    plan.nodes
        .iter()
        .map(|n| {
            if n.status == Status::Cached {
                return Resources::default();
            }
            let Some(stage) = registry.get(&n.kind) else { return Resources::default() };
            stage.resources(&n.params).unwrap_or_else(|e| {
                tracing::warn!("{}: cannot estimate its memory ({e:#}); counted as none", n.label);
                Resources::default()
            })
        })
        .collect()
}

/// The local executor: a pool of worker threads fed through a queue.
struct Local<'a> {
    jobs: usize,
    running: usize,
    jobs_tx: mpsc::Sender<usize>,
    done_rx: mpsc::Receiver<Finished>,
    resources: Vec<Resources>,
    registry: &'a Registry,
}

impl Executor for Local<'_> {
    fn need(&self, i: usize) -> crate::walk::Held {
        crate::walk::Held { ram: self.resources[i].memory, gpu: self.resources[i].gpu_memory.clone() }
    }
    fn release(&mut self, _plan: &Plan, needed: &[usize]) {
        let keep: std::collections::BTreeSet<String> =
            needed.iter().flat_map(|&i| self.resources[i].holds.iter().cloned()).collect();
        self.registry.release(&keep);
    }
    fn free(&self) -> usize {
        self.jobs - self.running
    }
    fn start(&mut self, _plan: &Plan, nodes: &[usize]) -> Result<()> {
        for &i in nodes {
            self.jobs_tx.send(i).map_err(|_| anyhow!("the local workers are gone"))?;
        }
        self.running += nodes.len();
        Ok(())
    }
    fn poll(&mut self, _plan: &Plan) -> Result<Vec<Finished>> {
        let mut out: Vec<Finished> = self.done_rx.recv_timeout(Duration::from_millis(200)).into_iter().collect();
        out.extend(self.done_rx.try_iter());
        self.running -= out.len();
        Ok(out)
    }
    fn cancel(&mut self) -> Vec<usize> {
        // Running nodes see the flag through their context and end soon; they are reported.
        vec![]
    }
}

/// The overall bar of a local run.
struct MainBar<'a>(&'a ProgressBar, &'a MultiProgress);

impl Observer for MainBar<'_> {
    fn suspend(&self, f: &mut dyn FnMut()) {
        self.1.suspend(f);
    }
    fn finished(&self, s: &RunSummary, _to_run: usize, eta: Option<Duration>) {
        self.0.set_position((s.computed + s.found_done + s.failed.len()) as u64);
        self.0.set_message(format!(
            "computed {}, by another runner {}, cached {}, failed {}{}",
            s.computed,
            s.found_done,
            s.cached,
            s.failed.len(),
            eta.map(|d| format!("; about {} left", crate::walk::clock(d))).unwrap_or_default()
        ));
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
