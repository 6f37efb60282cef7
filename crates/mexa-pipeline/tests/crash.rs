//! Crash safety and concurrency, with real processes: a runner killed with SIGKILL at random
//! moments and rerun ends with byte-identical artifacts and nothing corrupt; two runners on
//! one store never compute the same key twice.
//!
//! The child processes are this test binary re-executed into `child_entry`, which runs the
//! pipeline in `MEXA_CHILD_PIPELINE` against `MEXA_CHILD_STORE`.
mod common;
use mexa_pipeline::{parse, plan, run, Plan, RunOptions};
use mexa_store::{FileHasher, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const PIPE: &str = "
pipeline: crash
grid:
  word: [alpha, beta, gamma, delta]
stages:
  src:
    kind: source
    params: {text: \"${word} sentence\", copies: 50}
  loud:
    kind: shout
    inputs: {src: src}
    params: {shards: 8, rows: 200, sleep_ms: 25}
  louder:
    kind: shout
    inputs: {src: loud}
    params: {shards: 2, suffix: \"!\"}
  all:
    kind: collect
    inputs: {parts: louder}
";

fn planned(store: &Store) -> Plan {
    let reg = common::registry();
    let spec = parse("crash.yaml", PIPE, Path::new("crash.yaml"), &reg).unwrap();
    plan(&spec, &reg, store, &FileHasher::new(None)).unwrap()
}

#[test]
#[ignore = "entry point of the child processes of the other tests"]
fn child_entry() {
    let Ok(store) = std::env::var("MEXA_CHILD_STORE") else { return };
    let store = Store::open(store).unwrap();
    let p = planned(&store);
    let opts = RunOptions {
        jobs: 2,
        threads: 1,
        keep_going: false,
        progress: mexa_pipeline::run::ProgressMode::None,
        budget: Default::default(),
        weights: vec![],
    };
    let s = run(&p, &common::registry(), &store, &opts, &AtomicBool::new(false));
    std::process::exit(if s.ok() { 0 } else { 3 });
}

fn child(store: &Path, log: Option<&Path>) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["child_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("MEXA_CHILD_STORE", store)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(l) = log {
        c.env("MEXA_TEST_LOG", l);
    }
    c.spawn().unwrap()
}

/// key → bytes of data.parquet, for every artifact.
fn contents(store: &Store) -> BTreeMap<mexa_store::Key, Vec<u8>> {
    store
        .keys()
        .unwrap()
        .into_iter()
        .map(|k| {
            let b = std::fs::read(store.data_path(&k)).unwrap();
            (k, b)
        })
        .collect()
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_identical_bytes() {
    // Reference: one uninterrupted run.
    let ref_dir = tempfile::tempdir().unwrap();
    let reference = Store::open(ref_dir.path()).unwrap();
    let t0 = Instant::now();
    let status = child(ref_dir.path(), None).wait().unwrap();
    assert!(status.success());
    let full = t0.elapsed();
    let want = contents(&reference);
    assert_eq!(want.len(), planned(&reference).nodes.len() + 4 * 8 + 4 * 2, "nodes plus shards");

    // Interrupted: kill at random moments until a run finishes by itself.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let (mut kills, mut progress_seen) = (0, Vec::new());
    let total = want.len();
    for attempt in 0..40u64 {
        let mut c = child(dir.path(), None);
        // Short delays first, growing, so that many kills land at different stages.
        let span = full.as_millis() as u64 / 10 * (1 + attempt / 4) + 10;
        std::thread::sleep(Duration::from_millis(5 + rng.below(span)));
        if let Some(st) = c.try_wait().unwrap() {
            assert!(st.success(), "a resumed run failed: {st:?}");
            break;
        }
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        kills += 1;
        progress_seen.push(store.keys().unwrap().len());
        // Every kill leaves a store that verifies clean (partial writes stay in tmp/).
        assert!(store.verify().unwrap().corrupt.is_empty(), "corrupt artifacts after kill {kills}");
    }
    // The last rerun resumes and finishes.
    assert!(child(dir.path(), None).wait().unwrap().success());
    assert!(kills >= 8, "only {kills} kills landed; the test did not exercise resuming");
    assert!(progress_seen.iter().any(|&n| n > 0 && n < total), "no kill landed mid-run: {progress_seen:?}");
    let got = contents(&store);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "same artifacts");
    for (k, bytes) in &want {
        assert!(got[k] == *bytes, "artifact {k} differs from the uninterrupted run");
    }
    let report = store.verify().unwrap();
    assert_eq!((report.checked, report.corrupt.len()), (want.len(), 0));
    eprintln!("uninterrupted run {full:?}; {kills} kills; artifacts present after each: {progress_seen:?}");
}

#[test]
fn two_concurrent_runners_compute_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("computed.log");
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let mut a = child(&store_dir, Some(&log));
    let mut b = child(&store_dir, Some(&log));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let (pid, what) = line.split_once(' ').unwrap();
        seen.entry(what.to_string()).or_default().push(pid.to_string());
    }
    let twice: Vec<_> = seen.iter().filter(|(_, pids)| pids.len() > 1).collect();
    assert!(twice.is_empty(), "computed more than once: {twice:?}");
    let pids: std::collections::BTreeSet<&String> = seen.values().flatten().collect();
    assert_eq!(pids.len(), 2, "both runners did part of the work");
    // Same results as a single runner.
    let ref_dir = tempfile::tempdir().unwrap();
    assert!(child(ref_dir.path(), None).wait().unwrap().success());
    assert_eq!(contents(&store), contents(&Store::open(ref_dir.path()).unwrap()));
}
