//! The Slurm executor: the head process keeps the DAG, submits ready nodes as job arrays
//! (one array per stage and resource set, in bounded chunks), and decides completion by the
//! artifact appearing in the store. Each array task runs `mexa exec-node SPEC` on a
//! serialised [`NodeSpec`], so workers never re-plan. The store must be on a filesystem the
//! head and every node share.
use crate::plan::{Plan, Status};
use crate::run::{NodeSpec, RunSummary};
use anyhow::{bail, Context, Result};
use mexa_store::Store;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The keys a stage's `resources: {slurm: {...}}` may set, and what each must be (checked
/// when the pipeline is read, `spec::check_resources`).
pub const RESOURCE_KEYS: &[(&str, &str)] = &[
    ("partition", "a string"),
    ("time", "a string"),
    ("cpus", "an integer"),
    ("mem", "a string"),
    ("gpus", "an integer"),
    ("extra", "a list of strings"),
];

/// Default sbatch resources and executor behaviour; a stage's `resources: {slurm: {...}}`
/// overrides them (keys: partition, time, cpus, mem, gpus, extra).
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The `mexa` binary the jobs run (on the shared filesystem).
    pub mexa: PathBuf,
    pub partition: Option<String>,
    pub time: Option<String>,
    pub cpus: Option<u32>,
    pub mem: Option<String>,
    pub gpus: Option<u32>,
    pub extra: Vec<String>,
    /// Most tasks per array job.
    pub max_array: usize,
    /// How often a failed node is resubmitted.
    pub retries: u32,
    pub keep_going: bool,
    pub poll_min: Duration,
    pub poll_max: Duration,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        Self {
            mexa: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("mexa")),
            partition: None,
            time: None,
            cpus: None,
            mem: None,
            gpus: None,
            extra: vec![],
            max_array: 100,
            retries: 1,
            keep_going: false,
            poll_min: Duration::from_millis(300),
            poll_max: Duration::from_secs(10),
        }
    }
}

/// sbatch arguments for one node's resources.
fn sbatch_args(o: &SlurmOptions, res: &Value) -> Vec<String> {
    let s = &res["slurm"];
    let mut a = Vec::new();
    let get =
        |k: &str| s.get(k).and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())));
    if let Some(p) = get("partition").or(o.partition.clone()) {
        a.push(format!("--partition={p}"));
    }
    if let Some(t) = get("time").or(o.time.clone()) {
        a.push(format!("--time={t}"));
    }
    if let Some(c) = get("cpus").or(o.cpus.map(|c| c.to_string())) {
        a.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = get("mem").or(o.mem.clone()) {
        a.push(format!("--mem={m}"));
    }
    if let Some(g) = get("gpus").or(o.gpus.map(|g| g.to_string())) {
        a.push(format!("--gres=gpu:{g}"));
    }
    a.extend(o.extra.iter().cloned());
    if let Some(x) = s.get("extra").and_then(|v| v.as_array()) {
        a.extend(x.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    a
}

fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?} (is Slurm installed?)"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Clone, Debug, PartialEq)]
enum St {
    Waiting,
    Ready { attempt: u32 },
    Submitted { task: String, log: PathBuf, attempt: u32, gone: u32 },
    Done,
    Failed,
    Skipped,
}

/// Why a finished job left no artifact: state, exit code (scontrol, else sacct), log tail.
fn failure_reason(task: &str, log: &Path) -> String {
    let mut parts = Vec::new();
    if let Ok(s) = run_cmd(Command::new("scontrol").args(["show", "job", task])) {
        for w in s.split_whitespace() {
            if w.starts_with("JobState=") || w.starts_with("ExitCode=") || w.starts_with("Reason=") {
                parts.push(w.to_string());
            }
        }
    } else if let Ok(s) = run_cmd(Command::new("sacct").args(["-n", "-P", "-j", task, "-o", "State,ExitCode"])) {
        if let Some(l) = s.lines().next() {
            parts.push(format!("sacct {l}"));
        }
    }
    let tail: Vec<String> = std::fs::read_to_string(log)
        .map(|t| {
            t.lines()
                .rev()
                .filter(|l| !l.trim().is_empty())
                .take(3)
                .map(str::to_string)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect()
        })
        .unwrap_or_default();
    format!(
        "job {task} ended without its artifact ({}); log {}{}",
        parts.join(" "),
        log.display(),
        if tail.is_empty() { String::new() } else { format!(":\n{}", tail.join("\n")) }
    )
}

/// Runs every node of `plan` that is not cached on Slurm.
pub fn run_slurm(plan: &Plan, store: &Store, opts: &SlurmOptions, cancel: &AtomicBool) -> Result<RunSummary> {
    let t0 = Instant::now();
    let _registered = store.register_run()?;
    let n = plan.nodes.len();
    let root = std::fs::canonicalize(store.root())?;
    let run_id = format!("{}-{}", chrono_like(), std::process::id());
    let work = root.join("slurm").join(&run_id);
    for d in ["specs", "logs", "lists"] {
        std::fs::create_dir_all(work.join(d))?;
    }
    let script = work.join("job.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\n# mexa array task: computes the node whose spec is line $SLURM_ARRAY_TASK_ID+1 of $1\nset -euo pipefail\nspec=$(sed -n \"$((SLURM_ARRAY_TASK_ID+1))p\" \"$1\")\nexec {} --store {} exec-node \"$spec\" ${{SLURM_CPUS_PER_TASK:+--threads $SLURM_CPUS_PER_TASK}}\n",
            shell_quote(&opts.mexa.to_string_lossy()),
            shell_quote(&root.to_string_lossy())
        ),
    )?;
    let mut summary = RunSummary { total: n, ..Default::default() };
    let mut st: Vec<St> =
        plan.nodes.iter().map(|nd| if nd.status == Status::Cached { St::Done } else { St::Waiting }).collect();
    summary.cached = st.iter().filter(|s| **s == St::Done).count();
    let deps: Vec<Vec<usize>> = plan.nodes.iter().map(|nd| nd.deps.values().flatten().copied().collect()).collect();
    let mut arrays: Vec<String> = Vec::new();
    let mut interval = opts.poll_min;
    let mut stop = false;
    let mut chunk_no = 0usize;
    loop {
        if cancel.load(Ordering::SeqCst) {
            // Cancel the arrays that still have our tasks in flight.
            let mut live: Vec<String> = st
                .iter()
                .filter_map(|s| {
                    if let St::Submitted { task, .. } = s {
                        task.split('_').next().map(str::to_string)
                    } else {
                        None
                    }
                })
                .collect();
            live.sort();
            live.dedup();
            if !live.is_empty() {
                let _ = run_cmd(Command::new("scancel").args(&live));
                eprintln!("cancelled {} Slurm job(s): {}", live.len(), live.join(", "));
            }
            summary.cancelled = true;
            break;
        }
        let mut changed = false;
        // Promote nodes whose inputs are done.
        for i in 0..n {
            if st[i] == St::Waiting && deps[i].iter().all(|&d| st[d] == St::Done) {
                st[i] = St::Ready { attempt: 0 };
            }
        }
        // Submit ready nodes, grouped by stage and resources.
        if !stop {
            let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
            for i in 0..n {
                if let St::Ready { .. } = st[i] {
                    let nd = &plan.nodes[i];
                    groups.entry((nd.stage.clone(), nd.resources.to_string())).or_default().push(i);
                }
            }
            for ((stage, _), idx) in groups {
                for chunk in idx.chunks(opts.max_array.max(1)) {
                    let mut lines = String::new();
                    for &i in chunk {
                        let spec = NodeSpec::from_plan(plan, i);
                        let p = work.join("specs").join(format!("{}.json", spec.key));
                        std::fs::write(&p, serde_json::to_vec_pretty(&spec)?)?;
                        lines.push_str(&p.to_string_lossy());
                        lines.push('\n');
                    }
                    chunk_no += 1;
                    let list = work.join("lists").join(format!("{chunk_no}-{stage}.txt"));
                    std::fs::write(&list, lines)?;
                    let log_pattern = work.join("logs").join(format!("{stage}-%A_%a.log"));
                    let mut cmd = Command::new("sbatch");
                    cmd.arg("--parsable")
                        .arg(format!("--array=0-{}", chunk.len() - 1))
                        .arg(format!("--job-name=mexa:{}:{stage}", plan.pipeline))
                        .arg(format!("--output={}", log_pattern.display()))
                        .args(sbatch_args(opts, &plan.nodes[chunk[0]].resources))
                        .arg(&script)
                        .arg(&list);
                    let out = run_cmd(&mut cmd)?;
                    let array = out.trim().split(';').next().unwrap_or("").to_string();
                    if array.is_empty() {
                        bail!("sbatch printed no job id");
                    }
                    tracing::info!("submitted {} node(s) of `{stage}` as job array {array}", chunk.len());
                    arrays.push(array.clone());
                    for (k, &i) in chunk.iter().enumerate() {
                        let attempt = if let St::Ready { attempt } = st[i] { attempt } else { 0 };
                        let log = work.join("logs").join(format!("{stage}-{array}_{k}.log"));
                        st[i] = St::Submitted { task: format!("{array}_{k}"), log, attempt, gone: 0 };
                    }
                    changed = true;
                }
            }
        }
        let active: Vec<usize> = (0..n).filter(|&i| matches!(st[i], St::Submitted { .. })).collect();
        let pending_work = (0..n).any(|i| matches!(st[i], St::Waiting | St::Ready { .. }));
        if active.is_empty() && (stop || !pending_work) {
            break;
        }
        if active.is_empty() && pending_work && !(0..n).any(|i| matches!(st[i], St::Ready { .. })) {
            // Nothing can become ready any more (inputs failed).
            break;
        }
        std::thread::sleep(interval);
        // One scheduler query per cycle for all our jobs.
        let queued: HashMap<String, String> = if arrays.is_empty() {
            HashMap::new()
        } else {
            run_cmd(Command::new("squeue").args(["-h", "-r", "-o", "%i %T", "-j", &arrays.join(",")]))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
                .collect()
        };
        for i in active {
            let St::Submitted { task, log, attempt, gone } = st[i].clone() else { continue };
            if store.complete(&plan.nodes[i].key) {
                st[i] = St::Done;
                summary.computed += 1;
                changed = true;
                continue;
            }
            if queued.contains_key(&task) {
                continue;
            }
            // Gone from the queue without an artifact: allow one cycle for the rename to be
            // visible on a shared filesystem, then count it as failed.
            if gone == 0 {
                st[i] = St::Submitted { task, log, attempt, gone: 1 };
                continue;
            }
            let why = failure_reason(&task, &log);
            changed = true;
            if attempt < opts.retries && !stop {
                tracing::warn!("{} failed, retrying ({}/{}): {why}", plan.nodes[i].label, attempt + 1, opts.retries);
                st[i] = St::Ready { attempt: attempt + 1 };
            } else {
                tracing::error!("{} failed: {why}", plan.nodes[i].label);
                summary.failed.push((plan.nodes[i].label.clone(), why));
                st[i] = St::Failed;
                let mut stack = vec![i];
                while let Some(f) = stack.pop() {
                    for j in 0..n {
                        if deps[j].contains(&f) && matches!(st[j], St::Waiting | St::Ready { .. }) {
                            st[j] = St::Skipped;
                            stack.push(j);
                        }
                    }
                }
                if !opts.keep_going {
                    stop = true;
                }
            }
        }
        interval = if changed { opts.poll_min } else { (interval.mul_f64(1.5)).min(opts.poll_max) };
    }
    summary.skipped =
        st.iter().filter(|s| matches!(s, St::Waiting | St::Ready { .. } | St::Skipped | St::Submitted { .. })).count();
    summary.seconds = t0.elapsed().as_secs_f64();
    tracing::info!("Slurm run {run_id}: specs, job lists and logs in {}", work.display());
    Ok(summary)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A sortable UTC timestamp for run folders (no date crate needed).
fn chrono_like() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}
