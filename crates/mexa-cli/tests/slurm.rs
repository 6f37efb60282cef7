//! The Slurm executor against a real single-node Slurm (scripts/slurm-local.sh start; the
//! test script starts it): same bytes as the local executor, a killed job is retried, a
//! killed head resumes without resubmitting finished work, a failing stage is reported with
//! its log.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mexa(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mexa")).arg("--store").arg(store).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn require_slurm() {
    let ok = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    assert!(ok, "no Slurm answers `sinfo`: start the local one with scripts/slurm-local.sh start (scripts/test does)");
}

/// A pipeline named `name` (Slurm job names carry it, so parallel tests see only their jobs).
fn pipeline(dir: &Path, name: &str, languages: &str, limit: usize) -> PathBuf {
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "pipeline: {name}
grid:
  metric: [mexa, margin_acc]
stages:
  corpus:
    kind: load_corpus
    params: {{path: \"${{assets}}/corpora/udhr\", pivot: eng, languages: {languages}, limit: {limit}}}
  embed:
    kind: embed
    inputs: {{corpus: corpus}}
    params: {{model: \"${{assets}}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf\"}}
    resources: {{slurm: {{cpus: 2}}}}
  align:
    kind: align
    inputs: {{embeddings: embed}}
  summary:
    kind: aggregate
    inputs: {{alignment: align}}
    params: {{metric: \"${{metric}}\"}}
"
        ),
    )
    .unwrap();
    p
}

/// key → data.parquet bytes of every artifact.
fn contents(store: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for shard in std::fs::read_dir(store.join("objects")).unwrap() {
        for e in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let e = e.unwrap();
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path().join("data.parquet")).unwrap(),
            );
        }
    }
    out
}

#[test]
fn slurm_gives_the_same_bytes_as_local() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "slurm-bytes", "[fra, zul]", 8);
    let p = p.to_str().unwrap();
    let (local, cluster) = (dir.path().join("local"), dir.path().join("cluster"));
    let o = mexa(&local, &["run", p]);
    assert!(o.status.success(), "{}", text(&o));
    let o = mexa(&cluster, &["run", "--executor", "slurm", p]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("5 computed, 0 cached, 0 failed"), "{}", text(&o));
    assert_eq!(contents(&local), contents(&cluster));
    // Job logs are kept per task.
    let runs: Vec<_> = std::fs::read_dir(cluster.join("slurm")).unwrap().collect();
    assert_eq!(runs.len(), 1);
}

fn squeue_state(name_part: &str) -> Vec<(String, String)> {
    let o = Command::new("squeue").args(["-h", "-r", "-o", "%i %T %j"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(name_part))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_job_is_retried_and_a_killed_head_resumes() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "slurm-resume", "[fra, spa, rus, zul]", 24);
    let p = p.to_str().unwrap();
    let store = dir.path().join("cluster");
    // Head 1: kill its embed job while it runs; the head retries it and finishes.
    let head = Command::new(env!("CARGO_BIN_EXE_mexa"))
        .arg("--store")
        .arg(&store)
        .args(["run", "--executor", "slurm", "--retries", "1", p])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut job = String::new();
    wait_for("the embed job to run", Duration::from_secs(120), || {
        if let Some((id, _)) = squeue_state(":slurm-resume:embed").into_iter().find(|(_, s)| s == "RUNNING") {
            job = id;
            true
        } else {
            false
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("scancel").arg(&job).status().unwrap().success());
    let out = head.wait_with_output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("retrying (1/1)") && t.contains(&format!("job {job} ended without its artifact")), "{t}");

    // Head 2 on a fresh store: SIGKILL the head after the corpus is done, then rerun.
    let store2 = dir.path().join("cluster2");
    let mut head = Command::new(env!("CARGO_BIN_EXE_mexa"))
        .arg("--store")
        .arg(&store2)
        .args(["run", "--executor", "slurm", p])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the embed job to be submitted", Duration::from_secs(120), || {
        !squeue_state(":slurm-resume:embed").is_empty()
    });
    head.kill().unwrap();
    head.wait().unwrap();
    let o = mexa(&store2, &["run", "--executor", "slurm", "-v", p]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("1 cached") && !t.contains("of `corpus`"), "the rerun must not resubmit the corpus:\n{t}");
    assert_eq!(contents(&store), contents(&store2));
}

#[test]
fn a_failing_stage_is_reported_with_its_log() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    // A corpus that plans (its languages exist) and fails when read: an empty line in fra.txt.
    let c = dir.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("eng.txt"), "One.\nTwo.\n").unwrap();
    std::fs::write(c.join("fra.txt"), "Un.\n\nDeux.\n").unwrap();
    let p = pipeline(dir.path(), "slurm-fail", "[fra]", 4);
    let yaml =
        std::fs::read_to_string(&p).unwrap().replace("\"${assets}/corpora/udhr\"", &format!("\"{}\"", c.display()));
    std::fs::write(&p, yaml).unwrap();
    let o = mexa(&dir.path().join("s"), &["run", "--executor", "slurm", "--retries", "0", p.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("failed: corpus") && t.contains("ExitCode=1:0") && t.contains("log ") && t.contains("corpus-"),
        "{t}"
    );
    assert!(t.contains("fra.txt:2: empty line"), "the log's last lines are shown:\n{t}");
}

#[test]
fn ctrl_c_on_the_head_cancels_its_jobs() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "slurm-ctrlc", "[fra, spa, rus, zul, amh]", 40);
    let head = Command::new(env!("CARGO_BIN_EXE_mexa"))
        .arg("--store")
        .arg(dir.path().join("s"))
        .args(["run", "--executor", "slurm", p.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the embed job", Duration::from_secs(300), || {
        squeue_state(":slurm-ctrlc:embed").iter().any(|(_, s)| s == "RUNNING")
    });
    assert!(Command::new("kill").args(["-INT", &head.id().to_string()]).status().unwrap().success());
    let out = head.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("cancelled 1 Slurm job(s)"), "only the embed array was in flight: {}", text(&out));
    wait_for("the jobs to leave the queue", Duration::from_secs(30), || squeue_state(":slurm-ctrlc:").is_empty());
}
