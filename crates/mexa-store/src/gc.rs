//! Garbage collection that is safe while pipelines run: which artifacts a set of root keys
//! (the nodes of the pipelines to keep) no longer reaches, minus anything a running process
//! may still need.
//!
//! Invariants that make `gc --apply` and `run` safe to overlap:
//! - a runner registers itself for its whole life (`runs/<id>.lock`, flock held, the start
//!   time inside); gc never deletes an artifact written at or after the start of a live run,
//!   so a run's fresh shards and nodes survive even when gc was given other pipelines;
//! - gc skips every key whose lock is held (a node or shard being computed);
//! - a shard is reachable when the node it belongs to is (its key spec names the node), so a
//!   node whose index is not written yet keeps its finished shards.
use crate::store::{ObjectInfo, Store};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// A registered run; dropping it (or the process dying) ends the registration.
pub struct RunGuard {
    _file: File,
    path: std::path::PathBuf,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What [`Store::gc`] found (and, with `apply`, deleted).
#[derive(Debug, Default)]
pub struct GcReport {
    pub unreachable: Vec<ObjectInfo>,
    /// Unreachable, but locked or written since a live run started: kept this time.
    pub in_use: Vec<ObjectInfo>,
    pub bytes: u64,
    pub kept: usize,
    pub tmp_removed: usize,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Store {
    /// Registers a running pipeline for gc's sake (see the module doc).
    pub fn register_run(&self) -> Result<RunGuard> {
        let dir = self.root().join("runs");
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.{}.lock", std::process::id(), now()));
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        f.lock().with_context(|| format!("locking {}", path.display()))?;
        writeln!(f, "{}", now())?;
        Ok(RunGuard { _file: f, path })
    }

    /// Start time of the oldest live run; registrations of dead processes are removed.
    pub fn oldest_live_run(&self) -> Option<u64> {
        let mut oldest: Option<u64> = None;
        for e in fs::read_dir(self.root().join("runs")).ok()?.flatten() {
            let p = e.path();
            let Ok(f) = File::options().read(true).write(true).open(&p) else { continue };
            match f.try_lock() {
                Ok(()) => {
                    // Nobody holds it: a run that died without cleaning up.
                    let _ = fs::remove_file(&p);
                }
                Err(_) => {
                    let started = fs::read_to_string(&p).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
                    oldest = Some(oldest.map_or(started, |o| o.min(started)));
                }
            }
        }
        oldest
    }

    fn lock_held(&self, key: &str) -> bool {
        let p = self.root().join("locks").join(format!("{key}.lock"));
        match File::options().read(true).write(true).open(&p) {
            Ok(f) => f.try_lock().is_err(),
            Err(_) => false,
        }
    }

    /// Finds (and with `apply` deletes) the artifacts not reached from `roots`.
    pub fn gc(&self, roots: &BTreeSet<String>, apply: bool) -> Result<GcReport> {
        let mut report = GcReport::default();
        let live_since = self.oldest_live_run();
        for info in self.list()? {
            let reached = roots.contains(&info.key) || info.manifest.shard_parent().is_some_and(|p| roots.contains(p));
            if reached {
                report.kept += 1;
                continue;
            }
            let fresh = live_since.is_some_and(|t| info.manifest.created_unix + 1 >= t);
            if fresh || self.lock_held(&info.key) {
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
        Ok(report)
    }
}
