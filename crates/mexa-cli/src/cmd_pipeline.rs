//! `plan`, `run`, `gc`, `stages`, `exec-node`.
use crate::cmd_store::StoreChoice;
use anyhow::{bail, Context, Result};
use clap::Args;
use mexa_pipeline::stage::NoProgress;
use mexa_pipeline::{Plan, PlanNode, Registry, RunOptions, Status};
use mexa_store::{FileHasher, Store};
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What part of a pipeline, changed how: shared by `plan` and `run`.
#[derive(Args, Default, Clone)]
#[command(next_help_heading = "Choosing what runs")]
pub struct Selection {
    /// Only these stages (comma-separated), and what they need.
    #[arg(long, value_delimiter = ',', value_name = "STAGE")]
    only: Vec<String>,
    /// Only grid cells with this axis value (repeatable): nodes that, with all their inputs,
    /// agree with it, and what they need. E.g. `--where model=gemma3-270m`.
    #[arg(long = "where", value_name = "AXIS=VALUE", value_parser = parse_where)]
    wheres: Vec<(String, String)>,
    /// Override the file (repeatable): `-S stage.param=value` sets a parameter, `-S
    /// axis=v1,v2` replaces a grid axis's values. Values are YAML. Keys change exactly as
    /// the same edit of the file would change them.
    #[arg(short = 'S', long = "set", value_name = "TARGET=VALUE")]
    set: Vec<mexa_pipeline::Override>,
    /// Recompute these nodes (a label, or a stage for all its nodes; comma-separated) even if
    /// cached, replacing their artifacts and shards safely; keys, and so everything
    /// downstream, stay as they are.
    #[arg(long, value_delimiter = ',', value_name = "NODE|STAGE")]
    force: Vec<String>,
}

/// Which results a reading command (`table`, `export`, `report`, `profile`, and `show`,
/// `compare`, `lineage` with `--pipeline`) means: the same `-S` and `--where` as `run`, so the
/// variant computed with those overrides is the one read, never another of the same label.
#[derive(Args, Default, Clone)]
#[command(next_help_heading = "Choosing results")]
pub struct View {
    /// Only grid cells with this axis value (repeatable), as `run --where`.
    #[arg(long = "where", value_name = "AXIS=VALUE", value_parser = parse_where)]
    wheres: Vec<(String, String)>,
    /// The overrides the results were computed with (repeatable), as `run -S`: keys change
    /// exactly as in `run`, so the variant computed with them is read.
    #[arg(short = 'S', long = "set", value_name = "TARGET=VALUE")]
    set: Vec<mexa_pipeline::Override>,
}

impl View {
    fn selection(&self) -> Selection {
        Selection { wheres: self.wheres.clone(), set: self.set.clone(), ..Default::default() }
    }
}

/// Plans a pipeline for reading its results: `-S` and `--where` applied; a missing store is
/// planned against as empty and not created.
pub fn load_view(file: &Path, registry: &Registry, choice: &StoreChoice, view: &View) -> Result<(Plan, Store)> {
    load_selected(file, registry, choice, &view.selection(), false)
}

/// A `--memory` value: bytes, or no limit.
#[derive(Clone, Copy, Debug)]
pub struct Budget(Option<u64>);

fn parse_size(s: &str) -> Result<Budget, String> {
    mexa_model::device::parse_bytes(s).map(Budget)
}

/// Each GPU's budget: the flag's size for every GPU libtorch sees, or each one's free memory.
fn gpu_budgets(flag: Option<Budget>) -> Vec<Option<u64>> {
    let n = tch::Cuda::device_count().max(0) as usize;
    (0..n)
        .map(|i| match flag {
            Some(b) => b.0,
            None => mexa_model::device::free_memory(tch::Device::Cuda(i)),
        })
        .collect()
}

/// A count that must be at least 1 (`--threads 0` would leave nothing to compute with).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

fn parse_where(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(a, _)| !a.is_empty())
        .map(|(a, v)| (a.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}`: expected AXIS=VALUE"))
}

#[derive(Args)]
pub struct PlanArgs {
    /// Pipeline files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    selection: Selection,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// List cached nodes too (by default only a count is shown).
    #[arg(long)]
    all: bool,
    /// Print the DAG in Graphviz's dot language (cached green, to run orange):
    /// `mexa plan --dot FILE | dot -Tsvg > dag.svg`.
    #[arg(long, conflicts_with_all = ["json", "mermaid"])]
    dot: bool,
    /// Print the DAG as a Mermaid flowchart (GitHub renders it in Markdown).
    #[arg(long, conflicts_with = "json")]
    mermaid: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Pipeline files, run one after another.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    selection: Selection,
    /// Nodes computed at once (default: 1 per 2 cores, at least 1).
    #[arg(short, long, value_parser = at_least_one)]
    jobs: Option<usize>,
    /// Threads each node may use (libtorch and rayon; default: all cores).
    #[arg(long, value_parser = at_least_one)]
    threads: Option<usize>,
    /// Keep running independent nodes after a failure.
    #[arg(short = 'k', long)]
    keep_going: bool,
    /// Memory the running nodes may hold together, e.g. 24G or 600M: a node that loads a
    /// model declares its weights' size and waits until it fits (one that alone exceeds it
    /// runs by itself), and a model is dropped once no running or ready node needs it.
    /// Default: the memory available when the run starts; `none` for no limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<Budget>,
    /// Memory each GPU may hold for the running nodes together, e.g. 70G: a node on GPUs
    /// declares its share of the model on each and waits until it fits. Default: each GPU's
    /// free memory when the run starts (nvidia-smi); `none` for no limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    gpu_memory: Option<Budget>,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Where nodes run: here, or as Slurm jobs (the store must be on a shared filesystem).
    #[arg(long, value_enum, env = "MEXA_EXECUTOR", default_value_t = Executor::Local)]
    executor: Executor,
    #[command(flatten)]
    slurm: SlurmArgs,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq)]
pub enum Executor {
    Local,
    Slurm,
}

/// Defaults for Slurm jobs; a stage's `resources: {slurm: {partition, time, cpus, mem, gpus,
/// extra}}` overrides them.
#[derive(Args)]
#[command(next_help_heading = "Slurm executor")]
pub struct SlurmArgs {
    #[arg(long)]
    slurm_partition: Option<String>,
    /// Time limit per job, e.g. 02:00:00.
    #[arg(long)]
    slurm_time: Option<String>,
    #[arg(long)]
    slurm_cpus: Option<u32>,
    /// Memory per job, e.g. 16G.
    #[arg(long)]
    slurm_mem: Option<String>,
    /// GPUs per job (as --gres=gpu:N).
    #[arg(long)]
    slurm_gpus: Option<u32>,
    /// Extra sbatch arguments (repeatable), e.g. --slurm-extra=--account=abc.
    #[arg(long, allow_hyphen_values = true)]
    slurm_extra: Vec<String>,
    /// Most tasks per job array.
    #[arg(long, default_value_t = 100)]
    slurm_array_max: usize,
    /// Resubmissions of a failed node.
    #[arg(long, default_value_t = 1)]
    retries: u32,
    /// The mexa binary jobs run (default: this one; it must be on the shared filesystem).
    #[arg(long)]
    slurm_mexa: Option<PathBuf>,
}

#[derive(Args)]
pub struct GcArgs {
    /// Pipelines whose artifacts to keep.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Delete (default: only list what would be deleted).
    #[arg(long)]
    apply: bool,
}

#[derive(Args)]
pub struct StagesArgs {
    /// Show one kind in full.
    kind: Option<String>,
}

#[derive(Args)]
pub struct ExecNodeArgs {
    /// A node spec (JSON) as written by the head process.
    spec: PathBuf,
    #[arg(long, value_parser = at_least_one)]
    threads: Option<usize>,
}

/// Loads, validates and plans a pipeline with `-S` overrides applied and `--only`/`--where` chosen. Without
/// `create`, a missing store is planned against as empty and not created.
fn load_selected(
    file: &Path,
    registry: &Registry,
    choice: &StoreChoice,
    sel: &Selection,
    create: bool,
) -> Result<(Plan, Store)> {
    let spec = mexa_pipeline::load_with(file, registry, &sel.set)?;
    let path = choice.path(spec.store.as_deref());
    let exists = create || Store::exists(&path);
    let store = if exists {
        choice.create(spec.store.as_deref())?
    } else {
        eprintln!("(no store at {} yet: everything is to run; `mexa run` creates it)", path.display());
        Store::absent(path)
    };
    let plan = plan_selected(&spec, registry, &store, exists, sel)?;
    Ok((plan, store))
}

/// Plans `spec` in `store` with `--force`, `--only` and `--where` applied.
fn plan_selected(
    spec: &mexa_pipeline::PipelineSpec,
    registry: &Registry,
    store: &Store,
    exists: bool,
    sel: &Selection,
) -> Result<Plan> {
    // A store that does not exist gets no file-hash cache either: nothing is created.
    let hasher = FileHasher::new(exists.then(|| store.file_hash_cache()));
    let mut plan = mexa_pipeline::plan(spec, registry, store, &hasher)?;
    plan.force(&sel.force)?;
    if sel.only.is_empty() && sel.wheres.is_empty() {
        return Ok(plan);
    }
    plan.select(&sel.only, &sel.wheres)
}

/// For `run`: the store (created if missing), registered as running, and the plan, made
/// while `gc` is held off and pinned (every node's key, cached inputs included) before gc
/// may look again, so no gc can delete an input between "cached" and "pinned".
fn plan_for_run(
    file: &Path,
    registry: &Registry,
    choice: &StoreChoice,
    sel: &Selection,
) -> Result<(Plan, Store, mexa_store::RunGuard)> {
    let spec = mexa_pipeline::load_with(file, registry, &sel.set)?;
    let store = choice.create(spec.store.as_deref())?;
    let mut guard = store.register_run()?;
    let plan = guard.plan_pinned(|| {
        let plan = plan_selected(&spec, registry, &store, true, sel)?;
        let keys = plan.nodes.iter().map(|n| n.key.clone()).collect();
        Ok((plan, keys))
    })?;
    Ok((plan, store, guard))
}

/// Exit status: 0 when nothing is to run, 1 when something is (errors exit 2; see main).
pub fn plan(choice: &StoreChoice, a: PlanArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    let mut to_run = 0;
    for f in &a.files {
        let (plan, store) = load_selected(f, &registry, choice, &a.selection, false)?;
        to_run += plan.to_run();
        if a.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else if a.dot {
            print!("{}", plan.to_dot());
        } else if a.mermaid {
            print!("{}", plan.to_mermaid());
        } else {
            let cost = (plan.to_run() > 0).then(|| mexa_stages::cost::estimate(&plan, &store));
            print_plan(&plan, a.all, cost.as_ref());
        }
    }
    Ok(i32::from(to_run > 0))
}

fn print_plan(plan: &Plan, all: bool, cost: Option<&mexa_stages::cost::PlanCost>) {
    let to_run = plan.to_run();
    println!(
        "pipeline {}: {} nodes, {} cached, {} to run",
        plan.pipeline,
        plan.nodes.len(),
        plan.nodes.len() - to_run,
        to_run
    );
    let width = plan.nodes.iter().map(|n| n.label.chars().count()).max().unwrap_or(0).min(60);
    for (i, n) in plan.nodes.iter().enumerate() {
        match &n.status {
            Status::Cached if all => println!("  cached  {:<width$}  {}", n.label, n.key.short()),
            Status::Cached => {}
            Status::Run(r) => {
                let resumed = match cost.and_then(|c| c.shards.get(i).copied().flatten()) {
                    Some((have, Some(total))) => format!("; {have} of {total} shards cached (it resumes)"),
                    Some((have, None)) => format!("; {have} shards cached (it resumes)"),
                    None => String::new(),
                };
                let why = if resumed.is_empty() || *r != mexa_pipeline::Reason::NeverRun {
                    r.to_string()
                } else {
                    "interrupted".to_string()
                };
                println!("  run     {:<width$}  {}  {why}{resumed}", n.label, n.key.short());
                if let Some(c) = cost.and_then(|c| c.nodes[i].as_ref()) {
                    println!(
                        "          {:<width$}  {} sentences, {}{} tokens, about {} at {:.0} tokens/s ({})",
                        "",
                        c.sentences,
                        if c.tokens_exact { "" } else { "~" },
                        c.tokens,
                        mexa_pipeline::walk::clock(std::time::Duration::from_secs_f64(c.seconds)),
                        c.tokens_per_s,
                        if c.measured { "measured in this store" } else { "rough" }
                    );
                }
            }
        }
    }
    let Some(cost) = cost else { return };
    let estimated: Vec<&mexa_stages::cost::NodeCost> = cost.nodes.iter().flatten().collect();
    if !estimated.is_empty() {
        println!(
            "work to run: {} tokens through models{}, about {} (other stages take seconds)",
            cost.total_tokens(),
            if estimated.iter().all(|c| c.tokens_exact) { "" } else { " (~: from a sample of each language)" },
            mexa_pipeline::walk::clock(std::time::Duration::from_secs_f64(cost.total_seconds())),
        );
        if let Some(f) = cost.machine_flops {
            println!(
                "  rough: 2 FLOPs per weight per token at half of this machine's f32 product speed, {:.0} GFLOP/s measured just now (busy machines measure less); a run of the model in this store makes the estimate measured",
                f / 1e9
            );
        }
    }
    for w in &cost.warnings {
        println!("warning: {w}");
    }
}

static CANCEL: AtomicBool = AtomicBool::new(false);
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            CANCEL.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted: finishing the shards in flight, then stopping (Ctrl-C again to quit now; rerun resumes)");
        } else {
            eprintln!("\nquitting now; finished artifacts are kept, rerun resumes");
            // _exit, not exit: running atexit handlers and static destructors while libtorch's
            // worker threads still compute crashed the process. Nothing needs flushing: every
            // artifact is published by rename or not at all.
            // SAFETY: _exit only ends the process.
            unsafe { libc::_exit(130) }
        }
    });
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

// Long: flag handling for `mexa run` (executor choice, progress mode, summary and exit code) as one readable sequence.
pub fn run(choice: &StoreChoice, a: RunArgs, quiet: bool) -> Result<i32> {
    let registry = mexa_stages::registry();
    install_ctrlc();
    let opts = RunOptions {
        jobs: a.jobs.unwrap_or((cpus() / 2).max(1)),
        threads: a.threads.unwrap_or(cpus()),
        keep_going: a.keep_going,
        progress: match (a.no_progress || quiet, std::io::stderr().is_terminal()) {
            (true, _) => mexa_pipeline::run::ProgressMode::None,
            (false, true) => mexa_pipeline::run::ProgressMode::Bars,
            (false, false) => mexa_pipeline::run::ProgressMode::Lines,
        },
        budget: mexa_pipeline::Budget {
            ram: a.memory.map(|b| b.0).unwrap_or_else(mexa_model::device::available_memory),
            gpu: gpu_budgets(a.gpu_memory),
        },
        weights: vec![],
    };
    tch::set_num_threads(opts.threads as i32);
    let mut code = 0;
    for f in &a.files {
        let (plan, store, _registered) = plan_for_run(f, &registry, choice, &a.selection)?;
        let to_run = plan.to_run();
        let cost = mexa_stages::cost::estimate(&plan, &store);
        let mut opts = opts.clone();
        opts.weights = cost.nodes.iter().map(|c| c.as_ref().map_or(0.0, |c| c.seconds)).collect();
        for w in &cost.warnings {
            eprintln!("warning: {w}");
        }
        if !quiet {
            eprintln!(
                "{}: {} nodes, {} cached, {} to run (store {}){}",
                plan.pipeline,
                plan.nodes.len(),
                plan.nodes.len() - to_run,
                to_run,
                store.root().display(),
                if cost.total_tokens() > 0 {
                    format!(
                        "; {} tokens through models, about {}",
                        cost.total_tokens(),
                        mexa_pipeline::walk::clock(std::time::Duration::from_secs_f64(cost.total_seconds()))
                    )
                } else {
                    String::new()
                }
            );
        }
        let s = match a.executor {
            Executor::Local => mexa_pipeline::run(&plan, &registry, &store, &opts, &CANCEL),
            Executor::Slurm => {
                let sa = &a.slurm;
                let so = mexa_pipeline::SlurmOptions {
                    mexa: sa
                        .slurm_mexa
                        .clone()
                        .unwrap_or_else(|| std::env::current_exe().unwrap_or_else(|_| "mexa".into())),
                    partition: sa.slurm_partition.clone(),
                    time: sa.slurm_time.clone(),
                    cpus: sa.slurm_cpus,
                    mem: sa.slurm_mem.clone(),
                    gpus: sa.slurm_gpus,
                    extra: sa.slurm_extra.clone(),
                    max_array: sa.slurm_array_max,
                    retries: sa.retries,
                    keep_going: a.keep_going,
                    // No live bars for a head process: one line per node instead.
                    lines: opts.progress != mexa_pipeline::run::ProgressMode::None,
                    weights: opts.weights.clone(),
                    ..Default::default()
                };
                mexa_pipeline::run_slurm(&plan, &store, &so, &CANCEL)?
            }
        };
        let line = format!(
            "{}: {} computed, {}{} cached, {} failed, {} not run, in {:.1}s",
            plan.pipeline,
            s.computed,
            if s.found_done > 0 {
                format!("{} computed by another runner meanwhile, ", s.found_done)
            } else {
                String::new()
            },
            s.cached,
            s.failed.len(),
            s.skipped,
            s.seconds
        );
        if !quiet || !s.ok() {
            eprintln!("{line}");
        }
        for (label, err) in &s.failed {
            eprintln!("  failed: {label}\n    {}", err.replace('\n', "\n    "));
        }
        if s.cancelled {
            eprintln!("stopped by Ctrl-C; `mexa run {}` resumes", f.display());
            return Ok(130);
        }
        if !s.ok() {
            code = 1;
            if !a.keep_going {
                break;
            }
        } else if !quiet {
            print_outputs(&plan);
        }
    }
    Ok(code)
}

/// After a successful run: where the final results are.
fn print_outputs(plan: &Plan) {
    let consumed: BTreeSet<usize> = plan.nodes.iter().flat_map(|n| n.deps.values().flatten().copied()).collect();
    let finals: Vec<&PlanNode> =
        plan.nodes.iter().enumerate().filter(|(i, _)| !consumed.contains(i)).map(|(_, n)| n).collect();
    if finals.is_empty() {
        return;
    }
    eprintln!("results (`mexa show KEY` to look):");
    for n in finals {
        eprintln!("  {}  {}", n.key.short(), n.label);
    }
}

pub fn gc(choice: &StoreChoice, a: GcArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    // The store of the first pipeline (or --store); every pipeline is planned against it.
    let first = mexa_pipeline::load(&a.files[0], &registry)?;
    let store = choice.existing(first.store.as_deref())?;
    let mut keep: BTreeSet<mexa_store::Key> = BTreeSet::new();
    for f in &a.files {
        let spec = mexa_pipeline::load(f, &registry)?;
        let plan = mexa_pipeline::plan(&spec, &registry, &store, &FileHasher::new(Some(store.file_hash_cache())))?;
        for n in &plan.nodes {
            keep.insert(n.key.clone());
        }
    }
    let r = store.gc(&keep, a.apply)?;
    for d in &r.unreachable {
        println!("{} {}  {}", if a.apply { "deleting" } else { "would delete" }, d.key.short(), d.manifest.label);
    }
    for d in &r.in_use {
        println!("in use, kept {}  {}", d.key.short(), d.manifest.label);
    }
    println!(
        "{} artifact(s), {:.1} MB {}; {} kept{}{}",
        r.unreachable.len(),
        r.bytes as f64 / 1e6,
        if a.apply { "deleted" } else { "unreachable (run with --apply to delete)" },
        r.kept,
        if r.in_use.is_empty() {
            String::new()
        } else {
            format!("; {} in use by a running pipeline, kept", r.in_use.len())
        },
        if r.tmp_removed > 0 { format!("; {} stale temporary dir(s) removed", r.tmp_removed) } else { String::new() }
    );
    Ok(0)
}

pub fn stages(a: StagesArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    for s in registry.iter() {
        if a.kind.as_deref().is_some_and(|k| k != s.kind()) {
            continue;
        }
        println!("{} (v{}): {}", s.kind(), s.version(), s.doc());
        let (inputs, params) = (s.inputs(), s.params());
        let w = inputs.iter().map(|i| i.name.len()).chain(params.iter().map(|p| p.name.len())).max().unwrap_or(0);
        for i in inputs {
            println!(
                "  input  {:<w$} {}{}",
                i.name,
                i.doc,
                if i.gather { " (gathers all matching nodes)" } else { "" }
            );
        }
        for p in params {
            let mut d = p.default.as_ref().map(|d| format!(" [default {d}]")).unwrap_or_else(|| " [required]".into());
            if p.execution {
                d.push_str(" [execution setting: not in the key]");
            }
            println!("  param  {:<w$} {}: {}{d}", p.name, p.ty.describe(), p.doc);
        }
        println!();
    }
    if let Some(k) = a.kind {
        if registry.get(&k).is_none() {
            bail!("no stage kind `{k}`; `mexa stages` lists them");
        }
    }
    Ok(0)
}

pub fn exec_node(choice: &StoreChoice, a: ExecNodeArgs) -> Result<i32> {
    let registry = mexa_stages::registry();
    let store = choice.create(None)?;
    let text = mexa_core::file::read(&a.spec, mexa_core::FileKind::Config)?;
    let spec: mexa_pipeline::NodeSpec =
        serde_json::from_slice(&text).with_context(|| format!("{}: not a node spec", a.spec.display()))?;
    let threads = a.threads.unwrap_or(cpus());
    tch::set_num_threads(threads as i32);
    install_ctrlc();
    let out = mexa_pipeline::execute_node(&spec, &registry, &store, &CANCEL, &NoProgress, threads)?;
    eprintln!("{}: {:?}", spec.label, out);
    Ok(0)
}
