//! The Slurm executor: the head process keeps the DAG, submits ready nodes as job arrays
//! (one array per stage and resource set, in bounded chunks), and decides completion by the
//! artifact appearing in the store. Each array task runs `mexa exec-node SPEC` on a
//! serialised [`NodeSpec`], so workers never re-plan. The store must be on a filesystem the
//! head and every node share.
use crate::executor_options::{ExecutorOptions, OptionType};
use crate::node::{NodeOutcome, NodeSpec};
use crate::plan::Plan;
use crate::walk::{walk, Executor, Finished, RunSummary, WalkOptions};
use anyhow::{bail, Context, Result};
use mexa_store::Store;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// What a stage's `resources: {slurm: {...}}` may set, and each option's type (checked when
/// the pipeline is read and per grid cell when planned: `executor_options`).
pub const OPTIONS: ExecutorOptions = ExecutorOptions {
    name: "slurm",
    options: &[
        ("partition", OptionType::Text),
        ("time", OptionType::Text),
        ("cpus", OptionType::Integer),
        ("mem", OptionType::Text),
        ("gpus", OptionType::Integer),
        ("extra", OptionType::TextList),
    ],
};

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
    /// One line per node started and finished on stderr (for the head job's log).
    /// Each node's estimated seconds (by plan index), for an ETA weighted by work.
    pub weights: Vec<f64>,
    pub lines: bool,
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
            lines: false,
            weights: vec![],
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

/// Creates this run's folder `slurm/<time>-<pid>.<unguessable>/` (exclusively, under the
/// checked `slurm/` folder) with its `specs/`, `logs/`, `lists/` and the array script
/// `job.sh`. On a store others can write to, nothing here can be planted in advance or
/// swapped for a link: the folder's name cannot be guessed, and every file in it is created
/// new ([`write_new`]), never written through an existing name.
fn run_folder(store: &Store, root: &Path, mexa: &Path) -> Result<(PathBuf, PathBuf)> {
    let parent = store.folder(mexa_store::Folder::Slurm)?;
    let work = mexa_core::write::fresh_dir(&parent, &format!("{}-{}", chrono_like(), std::process::id()))?;
    for d in ["specs", "logs", "lists"] {
        mexa_core::write::ensure_dir(&work.join(d))?;
    }
    let script = work.join("job.sh");
    write_new(
        &script,
        format!(
            "#!/bin/bash\n# mexa array task: computes the node whose spec is line $SLURM_ARRAY_TASK_ID+1 of $1\nset -euo pipefail\nspec=$(sed -n \"$((SLURM_ARRAY_TASK_ID+1))p\" \"$1\")\nexec {} --store {} exec-node \"$spec\" ${{SLURM_CPUS_PER_TASK:+--threads $SLURM_CPUS_PER_TASK}}\n",
            shell_quote(&mexa.to_string_lossy()),
            shell_quote(&root.to_string_lossy())
        )
        .as_bytes(),
    )?;
    Ok((work, script))
}

/// A new file of this run's folder: created exclusively, never through an existing name.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(mexa_core::write::write_new(path, bytes)?)
}

/// Runs every node of `plan` that is not cached on Slurm.
pub fn run_slurm(plan: &Plan, store: &Store, opts: &SlurmOptions, cancel: &AtomicBool) -> Result<RunSummary> {
    let _registered = store.register_run()?;
    let root = std::fs::canonicalize(store.root())?;
    let (work, script) = run_folder(store, &root, &opts.mexa)?;
    let run_id = work.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut exec = Slurm {
        opts,
        store,
        work: work.clone(),
        script,
        arrays: vec![],
        chunk_no: 0,
        interval: opts.poll_min,
        changed: false,
        in_flight: BTreeMap::new(),
    };
    // Slurm places jobs by their `resources:`; no memory budget on the head.
    let walk_opts = WalkOptions {
        keep_going: opts.keep_going,
        retries: opts.retries,
        lines: opts.lines,
        budget: Default::default(),
        weights: opts.weights.clone(),
    };
    let summary = walk(plan, &mut exec, walk_opts, cancel, &())?;
    tracing::info!("Slurm run {run_id}: specs, job lists and logs in {}", work.display());
    Ok(summary)
}

/// A submitted node: its array task, log file, when it was submitted, and whether it was
/// already seen gone from the queue without its artifact.
struct Task {
    task: String,
    log: PathBuf,
    since: Instant,
    gone: bool,
}

/// The Slurm executor: ready nodes become job arrays (one per stage and resource set, in
/// chunks of `max_array`); a node is done when its artifact is complete in the store.
struct Slurm<'a> {
    opts: &'a SlurmOptions,
    store: &'a Store,
    work: PathBuf,
    script: PathBuf,
    /// Every array submitted, for the queue query.
    arrays: Vec<String>,
    chunk_no: usize,
    /// The poll interval: back to the minimum after a change, else growing to the maximum.
    interval: Duration,
    changed: bool,
    in_flight: BTreeMap<usize, Task>,
}

impl Executor for Slurm<'_> {
    fn free(&self) -> usize {
        usize::MAX
    }

    fn start(&mut self, plan: &Plan, nodes: &[usize]) -> Result<()> {
        let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for &i in nodes {
            let nd = &plan.nodes[i];
            groups.entry((nd.stage.clone(), nd.resources.to_string())).or_default().push(i);
        }
        for ((stage, _), idx) in groups {
            for chunk in idx.chunks(self.opts.max_array.max(1)) {
                self.submit(plan, &stage, chunk)?;
            }
        }
        self.changed = true;
        Ok(())
    }

    fn poll(&mut self, plan: &Plan) -> Result<Vec<Finished>> {
        self.interval = if std::mem::take(&mut self.changed) {
            self.opts.poll_min
        } else {
            self.interval.mul_f64(1.5).min(self.opts.poll_max)
        };
        std::thread::sleep(self.interval);
        // One scheduler query per cycle for all our jobs.
        let queued: HashMap<String, String> = if self.arrays.is_empty() {
            HashMap::new()
        } else {
            run_cmd(Command::new("squeue").args(["-h", "-r", "-o", "%i %T", "-j", &self.arrays.join(",")]))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
                .collect()
        };
        let mut out = Vec::new();
        for (&i, t) in self.in_flight.iter_mut() {
            if self.store.complete(&plan.nodes[i].key) {
                out.push((i, Ok(NodeOutcome::Computed { seconds: t.since.elapsed().as_secs_f64() })));
            } else if queued.contains_key(&t.task) {
                continue;
            } else if !t.gone {
                // Gone from the queue without an artifact: allow one cycle for the rename to
                // be visible on a shared filesystem, then count it as failed.
                t.gone = true;
            } else {
                out.push((i, Err(failure_reason(&t.task, &t.log))));
            }
        }
        for (i, _) in &out {
            self.in_flight.remove(i);
        }
        self.changed |= !out.is_empty();
        Ok(out)
    }

    fn cancel(&mut self) -> Vec<usize> {
        // Cancel the arrays that still have our tasks in flight.
        let mut live: Vec<String> =
            self.in_flight.values().filter_map(|t| t.task.split('_').next().map(str::to_string)).collect();
        live.sort();
        live.dedup();
        if !live.is_empty() {
            let _ = run_cmd(Command::new("scancel").args(&live));
            eprintln!("cancelled {} Slurm job(s): {}", live.len(), live.join(", "));
        }
        std::mem::take(&mut self.in_flight).into_keys().collect()
    }
}

impl Slurm<'_> {
    /// Submits one chunk of a stage's ready nodes as a job array.
    fn submit(&mut self, plan: &Plan, stage: &str, chunk: &[usize]) -> Result<()> {
        let mut lines = String::new();
        for &i in chunk {
            let spec = NodeSpec::from_plan(plan, i);
            let p = self.work.join("specs").join(format!("{}.json", spec.key));
            // A node resubmitted after a failure gets a new spec file: specs are never rewritten.
            let p = if std::fs::symlink_metadata(&p).is_ok() {
                p.with_extension(format!("{}.json", mexa_core::write::unguessable()))
            } else {
                p
            };
            write_new(&p, &serde_json::to_vec_pretty(&spec)?)?;
            lines.push_str(&p.to_string_lossy());
            lines.push('\n');
        }
        self.chunk_no += 1;
        let list = self.work.join("lists").join(format!("{}-{stage}.txt", self.chunk_no));
        write_new(&list, lines.as_bytes())?;
        let log_pattern = self.work.join("logs").join(format!("{stage}-%A_%a.log"));
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--array=0-{}", chunk.len() - 1))
            .arg(format!("--job-name=mexa:{}:{stage}", plan.pipeline))
            .arg(format!("--output={}", log_pattern.display()))
            .args(sbatch_args(self.opts, &plan.nodes[chunk[0]].resources))
            .arg(&self.script)
            .arg(&list);
        let out = run_cmd(&mut cmd)?;
        let array = out.trim().split(';').next().unwrap_or("").to_string();
        if array.is_empty() {
            bail!("sbatch printed no job id");
        }
        tracing::info!("submitted {} node(s) of `{stage}` as job array {array}", chunk.len());
        self.arrays.push(array.clone());
        for (k, &i) in chunk.iter().enumerate() {
            let log = self.work.join("logs").join(format!("{stage}-{array}_{k}.log"));
            self.in_flight.insert(i, Task { task: format!("{array}_{k}"), log, since: Instant::now(), gone: false });
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Another user of a shared store cannot prepare a run's job script: the run folder's
    /// name is not predictable, a `slurm/` that is a link is refused, and each run gets its own.
    #[test]
    fn a_run_folder_cannot_be_planted_or_redirected() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("store")).unwrap();
        let mexa = Path::new("/usr/bin/mexa");
        let (a, script) = run_folder(&store, store.root(), mexa).unwrap();
        let (b, _) = run_folder(&store, store.root(), mexa).unwrap();
        assert_ne!(a, b, "two runs in the same second share no folder");
        assert!(a.starts_with(store.root().join("slurm")) && a.join("specs").is_dir());
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        let guessable = format!("{}-{}", chrono_like(), std::process::id());
        assert!(name.starts_with(&guessable[..8]) && name.len() >= guessable.len() + 17, "{name}");
        assert!(std::fs::read_to_string(&script).unwrap().contains("exec-node"));
        // The spec and list files are created new: an existing name is never written through.
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, a.join("lists/1-embed.txt")).unwrap();
        assert!(write_new(&a.join("lists/1-embed.txt"), b"x").is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // A `slurm/` that points elsewhere is refused, when the store is opened and when used.
        std::fs::remove_dir_all(store.root().join("slurm")).unwrap();
        std::os::unix::fs::symlink(d.path(), store.root().join("slurm")).unwrap();
        let e = format!("{:#}", run_folder(&store, store.root(), mexa).unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
        assert!(Store::open(store.root()).is_err());
    }
}
