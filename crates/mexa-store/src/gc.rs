//! Garbage collection that is safe while pipelines run: which artifacts a set of root keys
//! (the nodes of the pipelines to keep) no longer reaches, minus anything a running process
//! may still need.
//!
//! Invariants that make `gc --apply` and `run` safe to overlap:
//! - a runner registers itself for its whole life (`runs/<id>.lock`, flock held, the start
//!   time inside); gc never deletes an artifact written at or after the start of a live run,
//!   so a run's fresh shards and nodes survive even when gc was given other pipelines;
//! - planning and pinning are one step against gc: a runner plans while holding `gc.lock`
//!   shared and, before letting go of it, appends every key of its plan (cached inputs
//!   included) to its registration ([`RunGuard::plan_pinned`]); gc holds `gc.lock` exclusively
//!   from reading the registrations to its last deletion. So a run either plans after a gc
//!   has finished (and sees what it deleted: those nodes are planned to run) or has pinned
//!   its whole closure before gc looks; there is no moment between "this input is cached"
//!   and "this input is pinned" that gc can fall into;
//! - pins last as long as the registration's flock, i.e. the run's process: a run killed
//!   with -9 leaves a file nobody locks, which the next gc removes with its pins;
//! - gc skips every key whose lock is held (a node or shard being computed);
//! - a shard is reachable when the node it belongs to is (its key spec names the node), so a
//!   node whose index is not written yet keeps its finished shards.
use crate::store::{open_lock, Folder, ObjectInfo, Store};
use anyhow::{Context, Result};
use mexa_core::file::{self, FileKind};
use mexa_core::Key;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// A registered run; dropping it (or the process dying) ends the registration and its pins.
pub struct RunGuard {
    file: File,
    path: PathBuf,
    gc_lock: PathBuf,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl RunGuard {
    /// Plans while gc is held off, then pins what the plan names before gc may look again:
    /// `plan` returns its result and the keys it relies on (every node of the plan, cached
    /// ones included). Waits while a gc is deleting.
    pub fn plan_pinned<T>(&mut self, plan: impl FnOnce() -> Result<(T, Vec<Key>)>) -> Result<T> {
        let lock = open_lock(&self.gc_lock)?;
        if lock.try_lock_shared().is_err() {
            tracing::info!("waiting for a `mexa gc` of this store to finish before planning");
            lock.lock_shared().with_context(|| format!("locking {}", self.gc_lock.display()))?;
        }
        let (out, keys) = plan()?;
        let mut text = String::with_capacity(keys.len() * 65);
        for k in keys {
            text.push_str(k.as_str());
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("pinning the run's inputs in {}", self.path.display()))?;
        drop(lock);
        Ok(out)
    }
}

/// What [`Store::gc`] found (and, with `apply`, deleted).
#[derive(Debug, Default)]
pub struct GcReport {
    pub unreachable: Vec<ObjectInfo>,
    /// Unreachable, but pinned by a live run, locked or written since a live run started:
    /// kept this time.
    pub in_use: Vec<ObjectInfo>,
    pub bytes: u64,
    pub kept: usize,
    pub tmp_removed: usize,
}

/// What the live runs of a store hold: the start of the oldest and every key pinned.
#[derive(Debug, Default)]
pub struct LiveRuns {
    pub oldest_start: Option<u64>,
    pub pinned: BTreeSet<Key>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Store {
    /// `runs/gc.lock`, its folder checked ([`Store::folder`]).
    fn gc_lock_path(&self) -> Result<PathBuf> {
        Ok(self.folder(Folder::Runs)?.join("gc.lock"))
    }

    /// Registers a running pipeline for gc's sake (see the module doc). Errors (a full disk,
    /// a read-only store) name the file and the store.
    pub fn register_run(&self) -> Result<RunGuard> {
        let dir = self.folder(Folder::Runs)?;
        let path = dir.join(format!("{}.{}.{}.run", std::process::id(), now(), mexa_core::write::unguessable()));
        let registered = (|| -> Result<File> {
            let mut f = mexa_core::write::create_new(&path)?;
            f.lock().with_context(|| format!("locking {}", path.display()))?;
            writeln!(f, "{}", now())
                .and_then(|_| f.sync_data())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(f)
        })();
        match registered {
            Ok(file) => Ok(RunGuard { file, path, gc_lock: self.gc_lock_path()? }),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e.context(format!("registering this run in the store {}", self.root().display())))
            }
        }
    }

    /// The live runs' start times and pins; registrations of dead processes are removed.
    pub fn live_runs(&self) -> LiveRuns {
        let mut live = LiveRuns::default();
        // A `runs/` that is a link is never listed (its unlocked files would be deleted below).
        let Ok(runs) = self.folder(Folder::Runs) else { return live };
        let Ok(dir) = fs::read_dir(runs) else { return live };
        for e in dir.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let regular = e.file_type().is_ok_and(|t| t.is_file());
            if !regular || !(name.ends_with(".run") || name.ends_with(".lock")) || name == "gc.lock" {
                continue;
            }
            let Ok(f) = File::options().read(true).write(true).open(&p) else { continue };
            match f.try_lock() {
                Ok(()) => {
                    // Nobody holds it: a run that died without cleaning up.
                    let _ = fs::remove_file(&p);
                }
                Err(_) => {
                    let text = file::read_text(&p, FileKind::StoreMeta).unwrap_or_default();
                    let mut lines = text.lines();
                    let started = lines.next().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
                    live.oldest_start = Some(live.oldest_start.map_or(started, |o| o.min(started)));
                    live.pinned.extend(lines.filter_map(|l| Key::parse(l.trim()).ok()));
                }
            }
        }
        live
    }

    /// Start time of the oldest live run (see [`Store::live_runs`]).
    pub fn oldest_live_run(&self) -> Option<u64> {
        self.live_runs().oldest_start
    }

    fn lock_held(&self, key: &Key) -> bool {
        match File::options().read(true).write(true).open(self.lock_path(key)) {
            Ok(f) => f.try_lock().is_err(),
            Err(_) => false,
        }
    }

    /// Finds (and with `apply` deletes) the artifacts not reached from `roots`, sparing what
    /// live runs pinned, locked keys and what was written since the oldest live run began.
    /// Holds the store's gc lock throughout, so no run plans meanwhile.
    pub fn gc(&self, roots: &BTreeSet<Key>, apply: bool) -> Result<GcReport> {
        let gc_lock = self.gc_lock_path()?;
        let lock = open_lock(&gc_lock)?;
        if lock.try_lock().is_err() {
            eprintln!("waiting for a run of this store to finish planning ...");
            lock.lock().with_context(|| format!("locking {}", gc_lock.display()))?;
        }
        let mut report = GcReport::default();
        let live = self.live_runs();
        let rooted = |k: &Key| roots.contains(k);
        let pinned = |k: &Key| live.pinned.contains(k);
        for info in self.list()? {
            if rooted(&info.key) || info.manifest.shard_parent().is_some_and(rooted) {
                report.kept += 1;
                continue;
            }
            let fresh = live.oldest_start.is_some_and(|t| info.manifest.created_unix + 1 >= t);
            let pin = pinned(&info.key) || info.manifest.shard_parent().is_some_and(pinned);
            if pin || fresh || self.lock_held(&info.key) {
                report.in_use.push(info);
                continue;
            }
            report.bytes += info.manifest.bytes;
            if apply {
                self.remove(&info.key)?;
            }
            report.unreachable.push(info);
        }
        if apply {
            report.tmp_removed = self.clean_tmp(std::time::Duration::from_secs(3600))?;
        }
        drop(lock);
        Ok(report)
    }
}
