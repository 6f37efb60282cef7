//! The `mexa` binary end to end on real data: a small UDHR pipeline with the bundled
//! Gemma 3 270M, then caching, show, lineage, verify, corruption and recovery, export.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mexa(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mexa")).arg("--store").arg(store).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn assets() -> PathBuf {
    std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"))
}

const PIPE: &str = "
pipeline: e2e
description: An end-to-end test & <check> of escaping.
stages:
  corpus:
    kind: load_corpus
    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [fra, spa, zul, amh], limit: 12}
  embed:
    kind: embed
    inputs: {corpus: corpus}
    params: {model: \"${assets}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf\", poolings: [weighted, last, mean]}
  align:
    kind: align
    inputs: {embeddings: embed}
  summary:
    kind: aggregate
    inputs: {alignment: align}
  tasks:
    kind: join_tasks
    inputs: {scores: summary, corpus: corpus}
    params: {tasks: \"@BELEBELE@\", column: llama2_70b_5shot, task: belebele}
  correlation:
    kind: correlate
    inputs: {points: tasks}
";

fn pipeline_text() -> String {
    let belebele = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/published/belebele_table7_llms.tsv");
    PIPE.replace("@BELEBELE@", belebele)
}

/// (width, height) from a PNG's IHDR.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()))
}

#[test]
fn demo_like_pipeline_end_to_end() {
    assert!(assets().join("models/gemma3-270m").is_dir(), "run scripts/fetch-assets.py");
    let dir = tempfile::tempdir().unwrap();
    let (store, pipe) = (dir.path().join("store"), dir.path().join("e2e.yaml"));
    std::fs::write(&pipe, pipeline_text()).unwrap();
    let p = pipe.to_str().unwrap();

    // `plan` exits 1 while something is to run, 0 once nothing is (for scripts).
    let o = mexa(&store, &["plan", p]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("6 nodes, 0 cached, 6 to run") && text(&o).contains("never run"), "{}", text(&o));

    let o = mexa(&store, &["run", p]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("6 computed, 0 cached, 0 failed"), "{}", text(&o));

    // Rerun: nothing to do.
    let o = mexa(&store, &["run", p]);
    assert!(text(&o).contains("0 computed, 6 cached"), "{}", text(&o));
    assert_eq!(mexa(&store, &["plan", p]).status.code(), Some(0));

    // The DAG for Graphviz and Mermaid: every node, every edge, coloured as cached.
    let dot = String::from_utf8(mexa(&store, &["plan", "--dot", p]).stdout).unwrap();
    assert!(dot.starts_with("digraph \"e2e\" {") && dot.trim_end().ends_with('}'), "{dot}");
    assert_eq!(dot.matches("fillcolor=\"#c7e9c0\"").count(), 6, "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 6, "{dot}");
    assert!(dot.contains("[label=\"corpus\"]"), "edges name their input slot: {dot}");
    let mermaid = String::from_utf8(mexa(&store, &["plan", "--mermaid", p]).stdout).unwrap();
    assert!(mermaid.starts_with("flowchart LR") && mermaid.matches(":::cached").count() == 6, "{mermaid}");

    // Execution settings (batching, device) are not part of keys: still all cached.
    let tuned = dir.path().join("tuned.yaml");
    std::fs::write(
        &tuned,
        pipeline_text().replace(
            "poolings: [weighted, last, mean]}",
            "poolings: [weighted, last, mean], batch_tokens: 512, batch_sentences: 3, device: cpu}",
        ),
    )
    .unwrap();
    let o = mexa(&store, &["plan", tuned.to_str().unwrap()]);
    assert!(text(&o).contains("6 nodes, 6 cached, 0 to run"), "{}", text(&o));

    // The scores: μ in [0, 1]; French and Spanish align far better than Zulu and Amharic.
    let o = mexa(&store, &["show", "summary", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.len(), 4 * 3, "4 languages × 3 poolings");
    let mean = |lang: &str| {
        rows.iter().find(|r| r["language"] == lang && r["pooling"] == "weighted").unwrap()["mean"].as_f64().unwrap()
    };
    for r in &rows {
        let (m, x) = (r["mean"].as_f64().unwrap(), r["max"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&m) && m <= x && x <= 1.0, "{r}");
        assert_eq!(r["layers"], 19);
    }
    assert!(
        mean("fra") > mean("zul") + 0.1 && mean("spa") > mean("amh") + 0.1,
        "fra {} spa {} zul {} amh {}",
        mean("fra"),
        mean("spa"),
        mean("zul"),
        mean("amh")
    );

    // Lineage reaches the model and corpus files by content hash.
    let o = mexa(&store, &["lineage", "summary"]);
    let l = text(&o);
    assert!(
        l.contains("embeddings ← ")
            && l.contains("model: external content blake3")
            && l.contains("path: external content blake3"),
        "{l}"
    );

    // Corrupt one shard: verify finds and quarantines it; its node is then incomplete, and a
    // rerun recomputes that one shard.
    let o = mexa(&store, &["ls", "--shards", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let shard = all.iter().find(|a| a["label"].as_str().unwrap().ends_with("shard zul")).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let data = store.join("objects").join(&shard[..2]).join(&shard).join("data.parquet");
    let mut bytes = std::fs::read(&data).unwrap();
    let k = bytes.len() / 3;
    bytes[k] ^= 0x55;
    std::fs::write(&data, bytes).unwrap();
    let o = mexa(&store, &["verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("1 corrupt"), "{}", text(&o));
    let o = mexa(&store, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("1 sharded node(s) incomplete"), "{}", text(&o));
    assert!(!data.exists());

    // Export to another store; the copy reruns fully cached.
    let other = dir.path().join("copy");
    let o = mexa(&store, &["store", "export", other.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = mexa(&other, &["run", p]);
    assert!(text(&o).contains("1 computed, 5 cached"), "the embed node recomputes its missing shard: {}", text(&o));
    assert!(data.exists() || other.join("objects").join(&shard[..2]).join(&shard).join("data.parquet").exists());
    let o = mexa(&other, &["run", p]);
    assert!(text(&o).contains("0 computed, 6 cached"), "{}", text(&o));

    // The original store recomputes its quarantined shard too.
    let o = mexa(&store, &["run", p]);
    assert!(text(&o).contains("1 computed, 5 cached"), "{}", text(&o));

    // The report: files, figure sizes, numbers equal to the artifacts', and a browser opens it.
    let out = dir.path().join("report");
    let o = mexa(&store, &["report", p, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("| pooling |"));
    assert!(
        html.contains("<p class=\"description\">An end-to-end test &amp; &lt;check&gt; of escaping.</p>"),
        "the description, escaped"
    );
    for pooling in ["weighted", "last", "mean"] {
        let heat = std::fs::read(out.join(format!("figures/heatmap-align-{pooling}.png"))).unwrap();
        assert_eq!(png_size(&heat), (900, 260), "heatmap of 4 languages, at least 260 px high");
        assert_eq!(
            png_size(&std::fs::read(out.join(format!("figures/layers-align-{pooling}.png"))).unwrap()),
            (900, 420)
        );
        assert!(std::fs::metadata(out.join(format!("figures/heatmap-align-{pooling}.svg"))).unwrap().len() > 1000);
        let sc = std::fs::read(out.join(format!("figures/scatter-tasks-belebele-{pooling}-mean.png"))).unwrap();
        assert_eq!(png_size(&sc), (720, 520));
        assert!(sc.len() > 5000, "a scatter with content");
    }
    // Every number of the per-language table equals the aggregate artifact's.
    let table = &html[html.find("class=\"languages\"").unwrap()..];
    let values: Vec<f64> =
        table.split("data-value=\"").skip(1).map(|s| s[..s.find('"').unwrap()].parse().unwrap()).collect();
    // The pivot's row first (μ = 1 per pooling, its own Belebele score as join_tasks recorded
    // it), then per language μMean and μMax per pooling and its Belebele score.
    let points: Vec<serde_json::Value> =
        serde_json::from_slice(&mexa(&store, &["show", "tasks", "--format", "json"]).stdout).unwrap();
    let score = |lang: &str| points.iter().find(|r| r["language"] == lang).unwrap()["score"].as_f64().unwrap();
    let shown = text(&mexa(&store, &["show", "tasks"]));
    let meta: serde_json::Value =
        serde_json::from_str(shown.lines().find_map(|l| l.strip_prefix("meta     ")).unwrap()).unwrap();
    let mut want: Vec<f64> = vec![1.0; 6];
    want.push(meta["pivot_score"]["belebele"].as_f64().unwrap());
    for lang in ["amh", "fra", "spa", "zul"] {
        for pooling in ["last", "mean", "weighted"] {
            let r = rows.iter().find(|r| r["language"] == lang && r["pooling"] == pooling).unwrap();
            want.push(r["mean"].as_f64().unwrap());
            want.push(r["max"].as_f64().unwrap());
        }
        want.push(score(lang));
    }
    assert_eq!(values, want);
    assert!(table.contains("<td>eng (pivot)</td>"), "the pivot's row");
    // The report is an artifact: a second call reuses it.
    let o = mexa(&store, &["report", p, "--out", out.to_str().unwrap()]);
    assert!(o.status.success());
    // Chosen languages for the curves: a different report artifact, only those lines.
    let chosen = dir.path().join("chosen");
    let o = mexa(&store, &["report", p, "--out", chosen.to_str().unwrap(), "--languages", "fra,zul"]);
    assert!(o.status.success(), "{}", text(&o));
    let svg = std::fs::read_to_string(chosen.join("figures/layers-align-weighted.svg")).unwrap();
    let labelled = |l: &str| svg.lines().any(|x| x.trim() == l);
    assert!(labelled("fra") && labelled("zul") && !labelled("spa") && !labelled("amh"), "curves for fra and zul only");
    // Headless Chromium renders the page with its inline figures and no console errors.
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()));
    let chromium = chromium.expect("Chromium is needed for this test: scripts/setup-system.sh installs it");
    let shot = dir.path().join("shot.png");
    let o = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1600",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", out.join("report.html").display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(!log.contains(":CONSOLE(") && !log.contains("Failed to load"), "browser reported problems:\n{log}");
    assert_eq!(png_size(&std::fs::read(&shot).unwrap()), (1200, 1600));
    let dom = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", out.join("report.html").display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(
        dom.matches("<figure").count(),
        3 * 2 + 3 * 2 + 3 * 2,
        "heatmap and curves per pooling; 2 scatters and 2 calibration plots (μMean, μMax) per pooling"
    );
    assert!(dom.matches("<svg").count() >= 18 && dom.contains("<table id=\"grid\">"));
    // Belebele scores are percentages: no fractional logit, the other predictions stand.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Prediction: leave-one-language-out error") && md.contains("| MAE logistic |"));
}

#[test]
fn version_and_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mexa")).arg("--version").output().unwrap();
    let v = text(&o);
    assert!(v.contains(env!("CARGO_PKG_VERSION")) && v.contains("libtorch 2.13.0"), "{v}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "stages:\n  a:\n    kind: load_corpus\n    params: {pth: x}\n").unwrap();
    let o = mexa(&dir.path().join("s"), &["plan", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "plan's errors exit 2 (1 means something to run)");
    let t = text(&o);
    assert!(
        t.contains("bad.yaml:4:14: error: stage `a`: `load_corpus` has no parameter `pth`")
            && t.contains("did you mean `path`"),
        "{t}"
    );
    assert!(t.lines().all(|l| !l.starts_with("error:")), "errors said once, compiler style: {t}");
    let missing = dir.path().join("missing.yaml");
    let t = text(&mexa(&dir.path().join("s"), &["run", missing.to_str().unwrap()]));
    assert!(t.starts_with(&format!("{}: error: cannot read the pipeline file", missing.display())), "{t}");
}

#[test]
fn gc_keeps_what_pipelines_reach() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let corpus = dir.path().join("c");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::write(corpus.join("eng.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(corpus.join("fra.txt"), "un\ndeux\ntrois\n").unwrap();
    let write = |name: &str, limit: u32| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!("stages:\n  corpus:\n    kind: load_corpus\n    params: {{path: c, pivot: eng, limit: {limit}}}\n"),
        )
        .unwrap();
        p
    };
    let (a, b) = (write("a.yaml", 2), write("b.yaml", 3));
    for p in [&a, &b] {
        assert!(mexa(&store, &["run", p.to_str().unwrap()]).status.success());
    }
    // Dry run: lists b's artifact, deletes nothing.
    let o = mexa(&store, &["gc", a.to_str().unwrap()]);
    assert!(text(&o).contains("1 artifact(s)") && text(&o).contains("would delete"), "{}", text(&o));
    assert!(text(&mexa(&store, &["run", b.to_str().unwrap()])).contains("0 computed, 1 cached"));
    // Apply: b's artifact goes, a's stays.
    let o = mexa(&store, &["gc", a.to_str().unwrap(), "--apply"]);
    assert!(text(&o).contains("deleting"), "{}", text(&o));
    assert!(text(&mexa(&store, &["run", a.to_str().unwrap()])).contains("0 computed, 1 cached"));
    assert!(text(&mexa(&store, &["plan", b.to_str().unwrap()])).contains("artifact missing"));
}

#[test]
fn ctrl_c_stops_cleanly_and_the_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pipe) = (dir.path().join("store"), dir.path().join("c.yaml"));
    std::fs::write(
        &pipe,
        "stages:\n  corpus:\n    kind: load_corpus\n    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [fra, spa, rus, zul, amh, hin], limit: 30}\n  embed:\n    kind: embed\n    inputs: {corpus: corpus}\n    params: {model: \"${assets}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf\"}\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mexa"))
        .arg("--store")
        .arg(&store)
        .args(["run", pipe.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some language shards exist, then press Ctrl-C.
    let t = std::time::Instant::now();
    let shards = || {
        std::fs::read_dir(store.join("objects"))
            .map(|d| d.flat_map(|s| std::fs::read_dir(s.unwrap().path()).unwrap()).count())
            .unwrap_or(0)
    };
    while shards() < 3 {
        assert!(t.elapsed().as_secs() < 120, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let t1 = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t1}");
    assert!(t1.contains("interrupted") && t1.contains("resumes"), "{t1}");
    // Nothing half-written is readable, and the rerun reuses the finished shards.
    assert_eq!(mexa(&store, &["verify"]).status.code(), Some(0));
    let before = shards();
    // plan says the node resumes with the shards it has (corpus and shards are objects).
    let p = text(&mexa(&store, &["plan", pipe.to_str().unwrap()]));
    assert!(p.contains(&format!("interrupted; {} of 7 shards cached (it resumes)", before - 1)), "{p}");
    let o = mexa(&store, &["run", pipe.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("1 computed, 1 cached"), "{}", text(&o));
    assert_eq!(shards(), 1 + 1 + 7, "corpus, the embed index and 7 language shards");
    assert!(before >= 3);
}

/// Starts `mexa run` on a Gemma 3 embed over seven UDHR languages and waits until at least
/// `n` artifacts exist (corpus, then language shards).
fn start_embed_run(store: &Path, pipe: &Path, n: usize) -> std::process::Child {
    std::fs::write(
        pipe,
        "stages:\n  corpus:\n    kind: load_corpus\n    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [fra, spa, rus, zul, amh, hin], limit: 30}\n  embed:\n    kind: embed\n    inputs: {corpus: corpus}\n    params: {model: \"${assets}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf\"}\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mexa"))
        .arg("--store")
        .arg(store)
        .args(["run", pipe.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    let count = || {
        std::fs::read_dir(store.join("objects"))
            .map(|d| d.flat_map(|s| std::fs::read_dir(s.unwrap().path()).unwrap()).count())
            .unwrap_or(0)
    };
    while count() < n {
        assert!(t.elapsed().as_secs() < 120, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

#[test]
fn gc_during_a_run_spares_its_work() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pipe) = (dir.path().join("store"), dir.path().join("c.yaml"));
    let child = start_embed_run(&store, &pipe, 3);
    // gc told about an unrelated pipeline only: everything of the running one is unreachable,
    // but it was written by a live run (or is locked), so nothing may be deleted.
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, "pipeline: other\nstages: {}\n").unwrap();
    let g = mexa(&store, &["gc", other.to_str().unwrap(), "--apply"]);
    assert!(g.status.success(), "{}", text(&g));
    assert!(text(&g).contains("0 artifact(s)") && text(&g).contains("in use by a running pipeline"), "{}", text(&g));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mexa(&store, &["verify"]).status.code(), Some(0));
    let o = mexa(&store, &["run", pipe.to_str().unwrap()]);
    assert!(text(&o).contains("0 computed, 2 cached"), "{}", text(&o));
    // Once no run is live, the same gc deletes them.
    let g = mexa(&store, &["gc", other.to_str().unwrap(), "--apply"]);
    assert!(text(&g).contains("9 artifact(s)") && text(&g).contains("deleted"), "{}", text(&g));
}

/// gc of another pipeline in a tight loop while runs plan and run on cached inputs: a run
/// must never lose an input it planned as cached (planning and pinning are one step against
/// gc), and the store stays sound. Before each run gc is paused while the inputs are cached
/// again, so every run starts with cached inputs that gc is about to delete.
#[test]
fn gc_in_a_loop_never_fails_a_run() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let pipe = dir.path().join("p.yaml");
    std::fs::write(
        &pipe,
        "stages:\n  corpus:\n    kind: load_corpus\n    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [fra, spa], limit: 6}\n  embed:\n    kind: embed\n    inputs: {corpus: corpus}\n    params: {model: \"${assets}/models/all-minilm-l6-v2\"}\n  align:\n    kind: align\n    inputs: {embeddings: embed}\n  summary:\n    kind: aggregate\n    inputs: {alignment: align}\n",
    )
    .unwrap();
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, "pipeline: other\nstages: {}\n").unwrap();
    let (stop, paused, busy) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)), Arc::new(Mutex::new(0)));
    let looping = {
        let (store, other, stop, paused, busy) =
            (store.clone(), other.clone(), stop.clone(), paused.clone(), busy.clone());
        std::thread::spawn(move || {
            while !stop.load(SeqCst) {
                let mut n = busy.lock().unwrap();
                if paused.load(SeqCst) {
                    drop(n);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                let g = mexa(&store, &["gc", other.to_str().unwrap(), "--apply"]);
                assert!(g.status.success(), "{}", text(&g));
                *n += 1;
            }
        })
    };
    for k in 1..=6 {
        // gc paused (and no gc in flight): cache the corpus and embeddings again.
        paused.store(true, SeqCst);
        drop(busy.lock().unwrap());
        let o = mexa(&store, &["run", pipe.to_str().unwrap(), "--only", "embed"]);
        assert!(o.status.success(), "{}", text(&o));
        // Now a run that plans them as cached, against a gc that wants them gone.
        paused.store(false, SeqCst);
        let o = mexa(&store, &["run", pipe.to_str().unwrap(), "-S", &format!("align.margin_k={k}")]);
        assert!(o.status.success(), "run {k} failed while gc looped:\n{}", text(&o));
    }
    stop.store(true, SeqCst);
    looping.join().unwrap();
    assert!(*busy.lock().unwrap() >= 3, "gc ran only {} times", busy.lock().unwrap());
    let v = mexa(&store, &["verify"]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

#[test]
fn a_second_ctrl_c_quits_at_once_and_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pipe) = (dir.path().join("store"), dir.path().join("c.yaml"));
    let child = start_embed_run(&store, &pipe, 2);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let t = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed().as_secs() < 10, "took {:?} to quit", t.elapsed());
    // 130, not a signal (a segfault or abort has no exit code).
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("quitting now"), "{}", text(&out));
    assert_eq!(mexa(&store, &["verify"]).status.code(), Some(0));
    let o = mexa(&store, &["run", pipe.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn progress_lines_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("eng.txt"), "one\ntwo\nthree\n").unwrap();
    std::fs::write(c.join("fra.txt"), "un\ndeux\ntrois\n").unwrap();
    let pipe = dir.path().join("p.yaml");
    let minilm = assets().join("models/all-minilm-l6-v2");
    std::fs::write(&pipe, format!("pipeline: lines\nstages:\n  corpus:\n    kind: load_corpus\n    params: {{path: c, pivot: eng}}\n  embed:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: {}}}\n", minilm.display())).unwrap();
    // Output captured through pipes: stderr is not a terminal, as under Slurm or nohup.
    let o = mexa(&dir.path().join("store"), &["run", pipe.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("] start corpus") && err.contains("] done corpus in "), "{err}");
    assert!(err.contains("(1/2 nodes; about ") && err.contains("(2/2 nodes)"), "an ETA after the first node: {err}");
    assert!(err.contains("embed: fra: 3 sentences, ") && err.contains(" tokens/s)"), "{err}");
    // --no-progress silences them.
    let o = mexa(&dir.path().join("store2"), &["run", "--no-progress", pipe.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("] start"));
}

/// SIB-200 end to end with a model's own accuracy: a probe trained on English topic labels
/// and tested in every language, joined with the same model's alignment and correlated.
const PROBE_PIPE: &str = "
pipeline: own-accuracy
stages:
  train_corpus:
    kind: load_corpus
    params: {path: \"${assets}/corpora/sib200\", split: train, pivot: eng_Latn, languages: [fra_Latn], limit: 210}
  test_corpus:
    kind: load_corpus
    params: {path: \"${assets}/corpora/sib200\", split: test, pivot: eng_Latn, languages: [fra_Latn, deu_Latn, zho_Hans], limit: 80}
  train:
    kind: embed
    inputs: {corpus: train_corpus}
    params: {model: \"${assets}/models/all-minilm-l6-v2\", poolings: [mean]}
  test:
    kind: embed
    inputs: {corpus: test_corpus}
    params: {model: \"${assets}/models/all-minilm-l6-v2\", poolings: [mean]}
  topics:
    kind: probe
    inputs: {train: train, test: test}
    params: {labels: \"${assets}/corpora/sib200\", pooling: mean}
  align:
    kind: align
    inputs: {embeddings: test}
  summary:
    kind: aggregate
    inputs: {alignment: align}
  points:
    kind: join_tasks
    inputs: {scores: summary, corpus: test_corpus, accuracy: topics}
  correlation:
    kind: correlate
    inputs: {points: points}
";

#[test]
fn a_models_own_probe_accuracy_is_correlated_with_its_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("p.yaml");
    std::fs::write(&pipe, PROBE_PIPE).unwrap();
    let (s1, s2) = (dir.path().join("s1"), dir.path().join("s2"));
    let o = mexa(&s1, &["run", pipe.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = mexa(&s1, &["show", "topics", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let acc = |lang: &str, layer: i64| {
        rows.iter().find(|r| r["language"] == lang && r["layer"] == layer).unwrap()["accuracy"].as_f64().unwrap()
    };
    let last = rows.iter().map(|r| r["layer"].as_i64().unwrap()).max().unwrap();
    assert_eq!(rows.len() as i64, 4 * (last + 1), "4 test languages × every hidden state");
    // MiniLM is an English model: its English topic accuracy is far above chance (1/7), and
    // transfer to Chinese is worse than to English.
    assert!(acc("eng_Latn", last) > 0.6, "{}", acc("eng_Latn", last));
    assert!(acc("zho_Hans", last) < acc("eng_Latn", last));
    for r in &rows {
        let (a, lo, hi) =
            (r["accuracy"].as_f64().unwrap(), r["ci_low"].as_f64().unwrap(), r["ci_high"].as_f64().unwrap());
        assert!(lo <= a && a <= hi && r["n"] == 80, "{r}");
    }
    let o = mexa(&s1, &["show", "correlation", "--format", "json"]);
    let corr: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(corr.iter().all(|c| c["task"] == "topics@mean" && c["n"] == 3), "{corr:?}");
    // Deterministic: another store computes the same bytes.
    let o = mexa(&s2, &["run", pipe.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let hash = |s: &Path| -> String {
        let o = mexa(s, &["show", "topics", "--format", "json"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(hash(&s1), hash(&s2));
}

/// What keeps a correlation honest, on top of PROBE_PIPE: the lexical floor, sentence-level
/// outcomes, held-out layer choice, instance-level accuracy, prediction error, the floor
/// diagnosis.
const HONEST_STAGES: &str = "
  lexical:
    kind: lexical
    inputs: {corpus: test_corpus, scores: summary}
  instances:
    kind: align_instances
    inputs: {embeddings: test}
  topic_instances:
    kind: probe_instances
    inputs: {train: train, test: test}
    params: {labels: \"${assets}/corpora/sib200\", pooling: mean}
  layer_choice:
    kind: layer_choice
    inputs: {alignment: instances, probe: topic_instances}
  instance_accuracy:
    kind: instance_accuracy
    inputs: {alignment: instances, probe: topic_instances}
  diagnosed:
    kind: correlate
    inputs: {points: points, instances: instances}
  prediction:
    kind: predict
    inputs: {points: points}
";

/// Every new table agrees with the tables it is computed beside: sentence-level hits average to
/// `align`'s μ and `probe`'s accuracy, the in-sample layer choice is `aggregate`'s μMax, the
/// lexical rows carry the summary, instance counts add up; the report shows the sections.
#[test]
fn the_honest_numbers_agree_with_the_tables_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("p.yaml");
    std::fs::write(&pipe, format!("{PROBE_PIPE}{HONEST_STAGES}")).unwrap();
    let store = dir.path().join("s");
    let o = mexa(&store, &["run", pipe.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = |node: &str| -> Vec<serde_json::Value> {
        let o = mexa(&store, &["show", node, "--format", "json"]);
        assert!(o.status.success(), "{node}: {}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
    let (align, topics, summary) = (rows("align"), rows("topics"), rows("summary"));
    let (inst, preds) = (rows("instances"), rows("topic_instances"));
    let layers = align.iter().map(|r| r["layer"].as_i64().unwrap()).max().unwrap() + 1;
    for lang in ["fra_Latn", "deu_Latn", "zho_Hans"] {
        for layer in 0..layers {
            let at = |v: &[serde_json::Value], k: &str| {
                let hits: Vec<bool> = v
                    .iter()
                    .filter(|r| r["language"] == lang && r["layer"] == layer)
                    .map(|r| r[k].as_bool().unwrap())
                    .collect();
                assert_eq!(hits.len(), 80, "{lang} layer {layer}: one row per sentence");
                hits.iter().filter(|&&h| h).count()
            };
            let a = align.iter().find(|r| r["language"] == lang && r["layer"] == layer).unwrap();
            assert_eq!(at(&inst, "mexa") as f64 / 80.0, f(a, "mexa"), "{lang} layer {layer}");
            assert_eq!(at(&inst, "p1_lang_to_pivot") as f64 / 80.0, f(a, "p1_lang_to_pivot"));
            let t = topics.iter().find(|r| r["language"] == lang && r["layer"] == layer).unwrap();
            assert_eq!(at(&preds, "correct") as f64 / 80.0, f(t, "accuracy"), "{lang} layer {layer}");
        }
    }
    // Layer choice: in-sample is μMax; held-out never beats it.
    for r in rows("layer_choice").iter().filter(|r| r["score"] == "mexa") {
        let s = summary.iter().find(|s| s["language"] == r["language"]).unwrap();
        assert_eq!(f(r, "in_sample"), f(s, "max"), "{r}");
        assert!(f(r, "split_half") <= f(r, "in_sample") && f(r, "lolo") <= f(r, "in_sample"));
        assert_eq!(r["in_sample_layer"], s["best_layer"]);
    }
    // The lexical floor beside the summary it was given.
    let lex = rows("lexical");
    assert_eq!(lex.len(), 3);
    for r in &lex {
        let s = summary.iter().find(|s| s["language"] == r["language"]).unwrap();
        assert_eq!((f(r, "model_mean"), f(r, "model_max"), r["n"].as_i64()), (f(s, "mean"), f(s, "max"), Some(80)));
        assert_eq!(f(r, "mean_minus_lexical"), f(r, "model_mean") - f(r, "lexical_mexa"));
    }
    let fra = lex.iter().find(|r| r["language"] == "fra_Latn").unwrap();
    let zho = lex.iter().find(|r| r["language"] == "zho_Hans").unwrap();
    assert!(f(fra, "lexical_mexa") > f(zho, "lexical_mexa"), "French shares more spelling with English than Chinese");
    // Instance counts add up to the per-layer shares.
    for r in rows("instance_accuracy").iter().filter(|r| r["layer"].as_i64().unwrap() >= 0) {
        let (aligned, unaligned) = (r["aligned"].as_i64().unwrap(), r["unaligned"].as_i64().unwrap());
        assert_eq!(aligned + unaligned, 80);
        let a = align.iter().find(|a| a["language"] == r["language"] && a["layer"] == r["layer"]).unwrap();
        assert_eq!(aligned as f64 / 80.0, f(a, "mexa"));
        let t = topics.iter().find(|t| t["language"] == r["language"] && t["layer"] == r["layer"]).unwrap();
        let right = r["aligned_correct"].as_i64().unwrap() + r["unaligned_correct"].as_i64().unwrap();
        assert_eq!(right as f64 / 80.0, f(t, "accuracy"));
    }
    // The diagnosis: 3 languages, so the permutation p-value counts all 3! pairings.
    for r in rows("diagnosed") {
        assert_eq!((r["permutations"].as_i64(), r["n"].as_i64()), (Some(6), Some(3)), "{r}");
        assert!(f(&r, "anisotropy").is_finite() && f(&r, "pearson_perm_p") > 0.0);
        assert_eq!(r["floor"].as_bool().unwrap(), !r["floor_note"].as_str().unwrap().is_empty());
    }
    let pred = rows("prediction");
    assert_eq!(pred.len(), 2 * 4, "mean and max pooling × four methods");
    assert!(pred.iter().all(|r| r["points"] == 3 && r["scope"] == "points"));
    let out = dir.path().join("report");
    let o = mexa(&store, &["report", pipe.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in ["Correlations: multiple comparisons", "Layer choice", "Prediction", "Instance-level alignment"] {
        assert!(md.contains(section), "{section} missing from the report");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("lexical μ") && html.contains("mean − lexical"));
}

/// XCOPA by answer log-likelihood (the `choice` stage) with a real decoder, joined with the
/// same model's alignment on FLORES sentences in the same languages and correlated.
#[test]
fn a_models_own_xcopa_accuracy_joins_its_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("p.yaml");
    std::fs::write(
        &pipe,
        "
pipeline: xcopa
stages:
  corpus:
    kind: load_corpus
    params: {path: \"${assets}/corpora/sib200\", split: test, pivot: eng_Latn, languages: [ita_Latn, zho_Hans, swh_Latn], limit: 8}
  embed:
    kind: embed
    inputs: {corpus: corpus}
    params: {model: \"${assets}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf\", poolings: [weighted]}
  xcopa:
    kind: choice
    params: {model: \"${assets}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf\", data: \"${assets}/tasks/xcopa\", languages: [it, zho_Hans, sw], limit: 4}
  align:
    kind: align
    inputs: {embeddings: embed}
  summary:
    kind: aggregate
    inputs: {alignment: align}
  points:
    kind: join_tasks
    inputs: {scores: summary, corpus: corpus, accuracy: xcopa}
  correlation:
    kind: correlate
    inputs: {points: points}
",
    )
    .unwrap();
    let store = dir.path().join("s");
    let o = mexa(&store, &["run", pipe.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = mexa(&store, &["show", "xcopa", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let langs: Vec<&str> = rows.iter().map(|r| r["language"].as_str().unwrap()).collect();
    assert_eq!(langs, ["ita_Latn", "zho_Hans", "swh_Latn"], "FLORES codes, in the order asked");
    for r in &rows {
        let (a, lo, hi) =
            (r["accuracy"].as_f64().unwrap(), r["ci_low"].as_f64().unwrap(), r["ci_high"].as_f64().unwrap());
        assert!(r["n"] == 4 && (a * 4.0).fract() == 0.0 && lo <= a && a <= hi, "{r}");
    }
    let o = mexa(&store, &["show", "points", "--format", "json"]);
    let points: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        !points.is_empty() && points.iter().all(|p| p["task"] == "xcopa" && p["matched_by"] == "label"),
        "{points:?}"
    );
    let o = mexa(&store, &["show", "correlation", "--format", "json"]);
    let corr: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(corr.iter().all(|c| c["n"] == 3), "{corr:?}");
}

#[test]
fn the_bundled_pipelines_plan_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for p in ["demo.yaml", "udhr.yaml", "sib200.yaml", "sib200-cpu.yaml"] {
        let file = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines")).join(p);
        let o = mexa(&dir.path().join("store"), &["plan", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{p}: everything is to run in an empty store: {}", text(&o));
    }
}

/// A small MiniLM sweep over the corpus size, for the sweep commands.
fn sweep_pipeline(dir: &Path, store: Option<&str>) -> PathBuf {
    let p = dir.join("sweep.yaml");
    let store = store.map(|s| format!("store: {s}\n")).unwrap_or_default();
    std::fs::write(
        &p,
        format!(
            "pipeline: sweep
{store}grid:
  limit: [6, 8]
stages:
  corpus:
    kind: load_corpus
    params: {{path: \"${{assets}}/corpora/udhr\", pivot: eng, languages: [fra, spa], limit: \"${{limit}}\"}}
  embed:
    kind: embed
    inputs: {{corpus: corpus}}
    params: {{model: \"${{assets}}/models/all-minilm-l6-v2\", poolings: [weighted, last]}}
  align:
    kind: align
    inputs: {{embeddings: embed}}
  summary:
    kind: aggregate
    inputs: {{alignment: align}}
"
        ),
    )
    .unwrap();
    p
}

#[test]
fn only_where_and_overrides_choose_and_change_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = sweep_pipeline(dir.path(), None);
    let p = p.to_str().unwrap();
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", p];
        args.extend_from_slice(extra);
        text(&mexa(&store, &args))
    };
    assert!(plan(&[]).contains("8 nodes, 0 cached, 8 to run"), "{}", plan(&[]));
    // --where keeps one grid cell; --only a stage and what it needs.
    let t = plan(&["--where", "limit=6"]);
    assert!(t.contains("4 nodes") && t.contains("summary[limit=6]") && !t.contains("limit=8"), "{t}");
    let t = plan(&["--only", "embed"]);
    assert!(t.contains("4 nodes") && t.contains("embed[limit=8]") && !t.contains("align"), "{t}");
    let o = mexa(&store, &["run", p, "--only", "align", "--where", "limit=6"]);
    assert!(o.status.success() && text(&o).contains("3 computed"), "{}", text(&o));
    let t = plan(&[]);
    assert!(t.contains("8 nodes, 3 cached, 5 to run") && t.contains("summary[limit=6]"), "{t}");
    // Mistakes name what exists.
    assert!(plan(&["--where", "limt=6"]).contains("did you mean `limit`"));
    assert!(plan(&["--where", "limit=7"]).contains("it has: 6, 8"));
    assert!(plan(&["--only", "sumary"]).contains("did you mean `summary`"));

    // -S edits the file as a user would: a parameter (the key changes, with the reason),
    // or an axis's values (the grid shrinks); cached work stays cached.
    let t = plan(&["-S", "embed.poolings=[last]", "--where", "limit=6"]);
    assert!(t.contains("embed[limit=6]") && t.contains("new parameters: poolings"), "{t}");
    assert!(t.contains("1 cached"), "the corpus is unchanged: {t}");
    let t = plan(&["-S", "limit=6"]);
    assert!(t.contains("4 nodes, 3 cached, 1 to run"), "{t}");
    let o = mexa(&store, &["plan", p, "-S", "embed.dtype=f64"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("-S embed.dtype:1:1: error: stage `embed`: `dtype` must be one of f32, f16, bf16"),
        "{}",
        text(&o)
    );
    assert!(plan(&["-S", "embd.dtype=f16"]).contains("did you mean `embed`"));
}

#[test]
fn a_pipeline_names_its_store_and_reading_never_creates_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = sweep_pipeline(dir.path(), Some("results/store"));
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let bare = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mexa"))
            .args(args)
            .current_dir(&elsewhere)
            .env_remove("MEXA_STORE")
            .output()
            .unwrap()
    };
    // Reading commands say there is no store and create none.
    let o = bare(&["ls"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no store at artifacts"), "{}", text(&o));
    let o = bare(&["plan", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "everything to run: {}", text(&o));
    assert!(text(&o).contains("no store at") && text(&o).contains("yet"), "{}", text(&o));
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none(), "nothing created where it ran");
    assert!(!dir.path().join("results").exists(), "plan created the pipeline's store");
    // `run` from another folder uses the store the pipeline names, beside the file.
    let o = bare(&["run", p.to_str().unwrap(), "--where", "limit=6", "--only", "corpus"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.path().join("results/store/objects").is_dir());
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
    let o = bare(&["plan", p.to_str().unwrap()]);
    assert!(text(&o).contains("8 nodes, 1 cached"), "{}", text(&o));
    // --store still wins.
    let o = mexa(&dir.path().join("other"), &["plan", p.to_str().unwrap()]);
    assert!(text(&o).contains("8 nodes, 0 cached"), "{}", text(&o));
}

#[test]
fn export_writes_hive_parquet_and_table_puts_the_grid_in_columns() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = sweep_pipeline(dir.path(), None);
    let p = p.to_str().unwrap();
    let out = dir.path().join("export");
    // Nothing computed yet: export says so.
    let o = mexa(&store, &["export", out.to_str().unwrap(), p]);
    assert!(!o.status.success() && text(&o).contains("not computed yet"), "{}", text(&o));
    assert!(mexa(&store, &["run", p]).status.success());
    let o = mexa(&store, &["export", out.to_str().unwrap(), p]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("hive_partitioning=True"), "the one line to load it: {}", text(&o));
    // The layout: stage=<stage>/<axis>=<value>/part-0.parquet; embeddings left out by default.
    let mut files: Vec<String> = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e);
            } else {
                files.push(e.strip_prefix(&out).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    assert_eq!(
        files,
        [
            "stage=align/limit=6/part-0.parquet",
            "stage=align/limit=8/part-0.parquet",
            "stage=corpus/limit=6/part-0.parquet",
            "stage=corpus/limit=8/part-0.parquet",
            "stage=summary/limit=6/part-0.parquet",
            "stage=summary/limit=8/part-0.parquet",
        ]
    );
    // Each file holds exactly the node's table (as `show` prints it).
    let (schema, batches) = mexa_store::read_parquet(&out.join("stage=summary/limit=8/part-0.parquet")).unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let shown: Vec<serde_json::Value> =
        serde_json::from_slice(&mexa(&store, &["show", "summary[limit=8]", "--format", "json"]).stdout).unwrap();
    assert_eq!(rows, shown.len());
    assert_eq!(rows, 2 * 2, "2 languages × 2 poolings");
    assert!(
        schema.field_with_name("mean").is_ok() && schema.field_with_name("limit").is_err(),
        "grid values live in the path"
    );
    // `--format parquet` writes the same table to stdout.
    let o = mexa(&store, &["show", "summary[limit=8]", "--format", "parquet"]);
    let back = mexa_store::read_parquet_bytes(o.stdout, Path::new("stdout")).unwrap();
    assert_eq!(back.1.iter().map(|b| b.num_rows()).sum::<usize>(), rows);

    // table: one row per node row, the grid's axes first.
    let o = mexa(&store, &["table", p, "summary", "--columns", "language,pooling,mean", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let t: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(t.len(), 8);
    assert_eq!(t[0].as_object().unwrap().keys().collect::<Vec<_>>(), ["limit", "language", "pooling", "mean"]);
    assert_eq!(t.iter().filter(|r| r["limit"] == "6").count(), 4);
    assert!(text(&mexa(&store, &["table", p, "summary", "--columns", "maen"])).contains("did you mean `mean`"));
}

#[test]
fn completions_and_the_pipeline_schema_come_from_the_cli_and_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s");
    let o = mexa(&s, &["completions", "bash"]);
    assert!(o.status.success() && text(&o).contains("_mexa()") && text(&o).contains("--where"), "{}", text(&o));
    let o = mexa(&s, &["schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds = schema["properties"]["stages"]["additionalProperties"]["allOf"].as_array().unwrap();
    // Every stage kind and every parameter `mexa stages` lists is in the schema, with its doc.
    let stages = text(&mexa(&s, &["stages"]));
    let mut listed = 0;
    for line in stages.lines() {
        let Some(rest) = line.strip_prefix("  param  ") else { continue };
        let name = rest.split_whitespace().next().unwrap();
        listed += 1;
        assert!(
            kinds.iter().any(|k| k["then"]["properties"]["params"]["properties"][name]["description"].is_string()),
            "{name} missing from the schema"
        );
    }
    let listed_kinds = stages.lines().filter(|l| !l.starts_with(' ') && l.contains(" (v")).count();
    assert!(
        listed > 40 && kinds.len() == listed_kinds,
        "{listed} params; {} kinds, {listed_kinds} listed",
        kinds.len()
    );
    let embed = kinds.iter().find(|k| k["if"]["properties"]["kind"]["const"] == "embed").unwrap();
    assert_eq!(
        embed["then"]["properties"]["params"]["properties"]["dtype"]["anyOf"][0]["enum"],
        serde_json::json!(["f32", "f16", "bf16"])
    );
    assert_eq!(embed["then"]["properties"]["params"]["required"], serde_json::json!(["model"]));
}

#[test]
fn profile_reports_what_each_node_cost_and_draws_the_last_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = sweep_pipeline(dir.path(), None);
    let p = p.to_str().unwrap();
    assert!(mexa(&store, &["run", p, "-j", "1", "--where", "limit=6"]).status.success());
    let o = mexa(&store, &["profile", p, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let nodes: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(nodes.len(), 8);
    for n in &nodes {
        let computed = n["label"].as_str().unwrap().contains("limit=6");
        assert_eq!(n["computed"], computed, "{n}");
        if computed {
            assert!(n["wall_s"].as_f64().unwrap() >= 0.0 && n["cpu_s"].as_f64().unwrap() >= 0.0, "{n}");
            assert!(n["peak_rss_bytes"].as_u64().unwrap() > 10 << 20, "{n}");
        }
    }
    let embed = nodes.iter().find(|n| n["label"] == "embed[limit=6]").unwrap();
    assert!(embed["tokens"].as_u64().unwrap() > 3 * 6, "3 languages × 6 sentences: {embed}");
    // MiniLM's weights are resident while it embeds.
    assert!(embed["peak_rss_bytes"].as_u64().unwrap() > 80 << 20, "{embed}");
    let o = mexa(&store, &["profile", p, "--timeline", dir.path().join("t").to_str().unwrap()]);
    let t = text(&o);
    assert!(t.contains("embed") && t.contains("tokens/s") && t.contains("not computed"), "{t}");
    let png = std::fs::read(dir.path().join("t/timeline.png")).unwrap();
    assert_eq!(png_size(&png).0, 1000);
    let svg = std::fs::read_to_string(dir.path().join("t/timeline.svg")).unwrap();
    assert!(svg.contains("embed[limit=6]") && svg.contains("seconds since the run began"), "the bars are labelled");
}

#[test]
fn force_recomputes_a_cached_node_and_replaces_it_safely() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = sweep_pipeline(dir.path(), None);
    let p = p.to_str().unwrap();
    assert!(mexa(&store, &["run", p, "--where", "limit=6"]).status.success());
    let artifacts = || -> Vec<serde_json::Value> {
        serde_json::from_slice(&mexa(&store, &["ls", "--shards", "--json"]).stdout).unwrap()
    };
    let before = artifacts();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t = text(&mexa(&store, &["plan", p, "--where", "limit=6", "--force", "embed"]));
    assert!(t.contains("1 to run") && t.contains("forced (--force)"), "{t}");
    let o = mexa(&store, &["run", p, "--where", "limit=6", "--force", "embed"]);
    assert!(o.status.success() && text(&o).contains("1 computed, 3 cached"), "{}", text(&o));
    let after = artifacts();
    // Same keys (nothing downstream reruns), the embed node and each of its shards rewritten
    // (newer), everything else untouched; the store verifies.
    assert_eq!(before.len(), after.len());
    for a in &after {
        let b = before.iter().find(|b| b["key"] == a["key"]).expect("same keys");
        let rewritten = a["label"].as_str().unwrap().starts_with("embed[limit=6]");
        assert_eq!(a["created_unix"] != b["created_unix"], rewritten, "{a} vs {b}");
    }
    assert_eq!(after.iter().filter(|a| a["label"].as_str().unwrap().starts_with("embed[limit=6]")).count(), 4);
    let o = mexa(&store, &["verify"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&mexa(&store, &["run", p, "--force", "embd"])).contains("did you mean `embed`"));
}

#[test]
fn a_memory_budget_runs_models_one_at_a_time_and_gives_the_same_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("models.yaml");
    std::fs::write(
        &p,
        "pipeline: models
grid:
  model:
    - {name: minilm, path: \"${assets}/models/all-minilm-l6-v2\"}
    - {name: smollm2, path: \"${assets}/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf\"}
    - {name: gemma, path: \"${assets}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf\"}
stages:
  corpus:
    kind: load_corpus
    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [fra], limit: 4}
  embed:
    kind: embed
    inputs: {corpus: corpus}
    params: {model: \"${model.path}\", poolings: [last], weights: dense}
",
    )
    .unwrap();
    let p = p.to_str().unwrap();
    let (free, tight) = (dir.path().join("free"), dir.path().join("tight"));
    let o = mexa(&free, &["run", p, "-j", "3", "--memory", "none"]);
    assert!(o.status.success(), "{}", text(&o));
    // 600 MB: SmolLM2 (540 MB dense in f32) and MiniLM (90 MB) do not fit together; Gemma
    // (1.07 GB) fits alone only.
    let o = mexa(&tight, &["run", p, "-j", "3", "--memory", "600M"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut running = 0;
    for l in String::from_utf8_lossy(&o.stderr).lines() {
        if l.contains("] start embed[") {
            running += 1;
            assert_eq!(running, 1, "two models at once under the budget:\n{}", text(&o));
        } else if l.contains("] done embed[") {
            running -= 1;
        }
    }
    assert!(text(&o).contains("4 computed"), "{}", text(&o));
    // Same artifacts, byte for byte.
    let objects = |store: &Path| -> std::collections::BTreeMap<String, Vec<u8>> {
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&mexa(store, &["ls", "--shards", "--json"]).stdout).unwrap();
        list.iter()
            .map(|a| {
                let k = a["key"].as_str().unwrap().to_string();
                let data = std::fs::read(store.join("objects").join(&k[..2]).join(&k).join("data.parquet")).unwrap();
                (k, data)
            })
            .collect()
    };
    assert_eq!(objects(&free), objects(&tight));
    // Released between nodes, the models never sat in memory together.
    let peak = |store: &Path| -> u64 {
        let nodes: Vec<serde_json::Value> =
            serde_json::from_slice(&mexa(store, &["profile", p, "--json"]).stdout).unwrap();
        nodes.iter().filter_map(|n| n["peak_rss_bytes"].as_u64()).max().unwrap()
    };
    let (pf, pt) = (peak(&free), peak(&tight));
    assert!(pt + (300 << 20) < pf, "peak {:.2} GB with the budget, {:.2} GB without", pt as f64 / 1e9, pf as f64 / 1e9);
}

/// A model whose weights exceed the node's memory budget runs from its stored weights,
/// layer-major over chunks of sentences, its file pages handed back after each layer: the
/// same embeddings, byte for byte, as the resident dense run, at a fraction of its memory.
#[test]
fn a_model_over_its_memory_budget_runs_layer_major_with_the_same_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("budget.yaml");
    std::fs::write(
        &p,
        "pipeline: budget
stages:
  corpus:
    kind: load_corpus
    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [fra, spa], limit: 8}
  embed:
    kind: embed
    inputs: {corpus: corpus}
    params:
      model: \"${assets}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf\"
      batch_tokens: 256
      weights: dense
      memory: none
",
    )
    .unwrap();
    let p = p.to_str().unwrap();
    let (free, tight) = (dir.path().join("free"), dir.path().join("tight"));
    let o = mexa(&free, &["run", p]);
    assert!(o.status.success(), "{}", text(&o));
    // 150 MB: below the model in f32 (1.07 GB) and even below its Q4_K_M file (253 MB).
    let o = mexa(&tight, &["run", p, "-S", "embed.weights=auto", "-S", "embed.memory=150M"]);
    assert!(o.status.success(), "{}", text(&o));
    let shards = |store: &Path| -> std::collections::BTreeMap<String, Vec<u8>> {
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&mexa(store, &["ls", "--shards", "--json"]).stdout).unwrap();
        list.iter()
            .map(|a| {
                let k = a["key"].as_str().unwrap().to_string();
                (k.clone(), std::fs::read(store.join("objects").join(&k[..2]).join(&k).join("data.parquet")).unwrap())
            })
            .collect()
    };
    let (a, b) = (shards(&free), shards(&tight));
    assert_eq!(a.len(), 5, "corpus, embed index, three language shards: {:?}", a.keys());
    assert_eq!(a, b, "execution settings changed a key or a byte");
    let peak = |store: &Path| -> u64 {
        let nodes: Vec<serde_json::Value> =
            serde_json::from_slice(&mexa(store, &["profile", p, "--json"]).stdout).unwrap();
        nodes.iter().filter_map(|n| n["peak_rss_bytes"].as_u64()).max().unwrap()
    };
    let (pf, pt) = (peak(&free), peak(&tight));
    assert!(
        pt + (400 << 20) < pf,
        "peak {:.2} GB under the budget, {:.2} GB resident",
        pt as f64 / 1e9,
        pf as f64 / 1e9
    );
}

#[test]
fn all_pairs_rows_for_the_corpus_pivot_equal_align() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let p = dir.path().join("pairs.yaml");
    std::fs::write(
        &p,
        "pipeline: pairs
stages:
  corpus:
    kind: load_corpus
    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [fra, spa, zul], limit: 8}
  embed:
    kind: embed
    inputs: {corpus: corpus}
    params: {model: \"${assets}/models/all-minilm-l6-v2\", poolings: [weighted, last]}
  align:
    kind: align
    inputs: {embeddings: embed}
  pairs:
    kind: align_pairs
    inputs: {embeddings: embed}
",
    )
    .unwrap();
    let o = mexa(&store, &["run", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let rows = |what: &str| -> Vec<serde_json::Value> {
        serde_json::from_slice(&mexa(&store, &["show", what, "--format", "json"]).stdout).unwrap()
    };
    let (align, pairs) = (rows("align"), rows("pairs"));
    // 4 languages: 12 ordered pairs × 2 poolings × 7 hidden states.
    assert_eq!(pairs.len(), 12 * 2 * 7);
    let from_eng: Vec<&serde_json::Value> = pairs.iter().filter(|r| r["pivot"] == "eng").collect();
    assert_eq!(from_eng.len(), align.len());
    for a in &align {
        let p = from_eng
            .iter()
            .find(|r| r["language"] == a["language"] && r["pooling"] == a["pooling"] && r["layer"] == a["layer"])
            .unwrap();
        for m in ["mexa", "p1_pivot_to_lang", "p1_lang_to_pivot", "mean_cosine", "margin_acc", "n"] {
            assert_eq!(p[m], a[m], "{m} of {a}");
        }
    }
    // Swapping pivot and language swaps the two P@1 directions.
    let find = |pv: &str, l: &str| {
        pairs
            .iter()
            .find(|r| r["pivot"] == pv && r["language"] == l && r["layer"] == 3 && r["pooling"] == "last")
            .unwrap()
    };
    assert_eq!(find("fra", "zul")["p1_pivot_to_lang"], find("zul", "fra")["p1_lang_to_pivot"]);
    assert_eq!(find("fra", "zul")["mexa"], find("zul", "fra")["mexa"]);
}

/// One name per variant: after `-S align.centering=true` the label `align` names two
/// artifacts; `show` lists them with what differs instead of picking the newest, `--pipeline`
/// with the same `-S` resolves exactly one, `table`/`export` read the variant their `-S` names,
/// an axis named like a result column (`metric`) is namespaced, embeddings carry their
/// language, and an export of what is partly computed says what it left out.
#[test]
fn variants_are_named_not_guessed_and_exports_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let pipe = dir.path().join("v.yaml");
    std::fs::write(
        &pipe,
        "pipeline: v\ngrid:\n  metric: [mexa]\nstages:\n  corpus:\n    kind: load_corpus\n    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [fra, spa], limit: 6}\n  embed:\n    kind: embed\n    inputs: {corpus: corpus}\n    params: {model: \"${assets}/models/all-minilm-l6-v2\"}\n  align:\n    kind: align\n    inputs: {embeddings: embed}\n  summary:\n    kind: aggregate\n    inputs: {alignment: align}\n    params: {metric: \"${metric}\"}\n",
    )
    .unwrap();
    let p = pipe.to_str().unwrap();
    for extra in [&[][..], &["-S", "align.centering=true"][..]] {
        let o = mexa(&store, &[&["run", p][..], extra].concat());
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = mexa(&store, &["show", "align"]);
    assert!(!o.status.success() && text(&o).contains("matches 2 artifacts"), "{}", text(&o));
    assert!(text(&o).contains("centering=false") && text(&o).contains("centering=true"), "{}", text(&o));
    let o = mexa(&store, &["show", "align", "--pipeline", p, "-S", "align.centering=true"]);
    assert!(o.status.success() && text(&o).contains("\"centering\":true"), "{}", text(&o));
    let o = mexa(&store, &["show", "align", "--pipeline", p, "-S", "align.margin_k=2"]);
    assert!(!o.status.success() && text(&o).contains("is not computed"), "{}", text(&o));
    // table and export read the variant their -S names.
    let csv = |extra: &[&str]| {
        let o = mexa(&store, &[&["table", p, "summary", "--format", "csv"][..], extra].concat());
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (plain, centred) = (csv(&[]), csv(&["-S", "align.centering=true"]));
    assert!(plain.starts_with("grid_metric,language,") && plain != centred, "{plain}\n{centred}");
    // An axis named among --columns is the leading column it always is, not an error.
    let picked = csv(&["--columns", "grid_metric,language,mean"]);
    assert!(picked.starts_with("grid_metric,language,mean\n"), "{picked}");
    let out = dir.path().join("ex");
    let o = mexa(&store, &["export", out.to_str().unwrap(), p, "--stages", "embed,summary"]);
    assert!(o.status.success() && text(&o).contains("exported as `grid_metric`"), "{}", text(&o));
    assert!(text(&o).contains("stage=summary/**/*.parquet"), "{}", text(&o));
    assert!(out.join("stage=summary/grid_metric=mexa/part-0.parquet").is_file());
    let (schema, _) = mexa_store::read_parquet(&out.join("stage=embed/part-0.parquet")).unwrap();
    assert_eq!(schema.field(0).name(), "language");
    // Partly computed: the export says what it left out.
    let o = mexa(&store, &["export", dir.path().join("ex2").to_str().unwrap(), p, "-S", "align.margin_k=2"]);
    assert!(o.status.success() && text(&o).contains("not computed yet and were left out: align"), "{}", text(&o));
}

/// Cost before running: `plan` counts each embed node's sentences and tokens with the model's
/// own tokenizer (exactly, for corpora this small), estimates its time roughly before the
/// model has run in this store and from the store's own measurement after, and warns when a
/// probe's training corpus is embedded in languages the probe never uses.
#[test]
fn plan_shows_tokens_time_and_wasted_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let pipe = dir.path().join("c.yaml");
    let yaml = |limit: u32| {
        format!("pipeline: c\nstages:\n  corpus:\n    kind: load_corpus\n    params: {{path: \"${{assets}}/corpora/sib200\", split: test, pivot: eng_Latn, languages: [fra_Latn, hin_Deva], limit: {limit}}}\n  train_corpus:\n    kind: load_corpus\n    params: {{path: \"${{assets}}/corpora/sib200\", split: train, pivot: eng_Latn, languages: [fra_Latn], limit: 20}}\n  embed:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: \"${{assets}}/models/all-minilm-l6-v2\", poolings: [weighted]}}\n  train_embed:\n    kind: embed\n    inputs: {{corpus: train_corpus}}\n    params: {{model: \"${{assets}}/models/all-minilm-l6-v2\", poolings: [weighted]}}\n  topics:\n    kind: probe\n    inputs: {{train: train_embed, test: embed}}\n    params: {{labels: \"${{assets}}/corpora/sib200\", pooling: weighted}}\n")
    };
    std::fs::write(&pipe, yaml(5)).unwrap();
    let p = pipe.to_str().unwrap();
    // Before anything ran: counted from the corpus files with MiniLM's own tokenizer.
    let o = mexa(&store, &["plan", p]);
    let planned = text(&o);
    assert!(planned.contains("(rough)"), "{planned}");
    assert!(
        planned.contains("warning: topics trains on eng_Latn only") && planned.contains("cover 2 languages"),
        "{planned}"
    );
    // The same count from the stored corpus, tokenized here: counted, not guessed.
    assert!(mexa(&store, &["run", p, "--only", "corpus"]).status.success());
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&mexa(&store, &["show", "corpus", "--format", "json"]).stdout).unwrap();
    let tok = mexa_model::model::load_tokenizer(
        &assets().join("models/all-minilm-l6-v2"),
        &mexa_model::LoadOptions::default(),
    )
    .unwrap()
    .0;
    let tokens: usize = rows.iter().map(|r| tok.encode(r["text"].as_str().unwrap()).unwrap().len()).sum();
    assert_eq!(rows.len(), 15);
    assert!(planned.contains(&format!("15 sentences, {tokens} tokens")), "{tokens}: {planned}");
    let o = mexa(&store, &["run", p]);
    assert!(o.status.success(), "{}", text(&o));
    // More sentences: the estimate now uses what this store measured for MiniLM.
    std::fs::write(&pipe, yaml(8)).unwrap();
    let t = text(&mexa(&store, &["plan", p]));
    assert!(t.contains("24 sentences") && t.contains("(measured in this store)"), "{t}");
}

/// Per-sentence results: `show NODE --sentences LANG` prints, at the hidden state where most
/// pairs retrieve each other, every pair's outcome and, for a miss, the text each side retrieves
/// instead — the ids and hits the align_instances table holds, the texts the corpus holds.
#[test]
fn sentences_show_what_each_miss_retrieves_instead() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let pipe = dir.path().join("h.yaml");
    std::fs::write(
        &pipe,
        "pipeline: h\nstages:\n  corpus:\n    kind: load_corpus\n    params: {path: \"${assets}/corpora/udhr\", pivot: eng, languages: [zul], limit: 10}\n  embed:\n    kind: embed\n    inputs: {corpus: corpus}\n    params: {model: \"${assets}/models/all-minilm-l6-v2\", poolings: [weighted, last]}\n  instances:\n    kind: align_instances\n    inputs: {embeddings: embed}\n  align:\n    kind: align\n    inputs: {embeddings: embed}\n",
    )
    .unwrap();
    let p = pipe.to_str().unwrap();
    assert!(mexa(&store, &["run", p]).status.success());
    let json = |what: &str| -> Vec<serde_json::Value> {
        serde_json::from_slice(&mexa(&store, &["show", what, "--format", "json"]).stdout).unwrap()
    };
    let (rows, corpus) = (json("instances"), json("corpus"));
    // The text as shown: long paragraphs cut at 160 characters, saying how much was cut.
    let text_of = |lang: &str, id: i64| {
        let t =
            corpus.iter().find(|r| r["language"] == lang && r["sentence_id"] == id).unwrap()["text"].as_str().unwrap();
        let n = t.chars().count();
        if n > 160 {
            format!("{}…[{} more characters]", t.chars().take(160).collect::<String>(), n - 160)
        } else {
            t.to_string()
        }
    };
    // Several poolings: one must be chosen.
    let o = mexa(&store, &["show", "instances", "--sentences", "zul"]);
    assert!(!o.status.success() && text(&o).contains("choose one with --pooling"), "{}", text(&o));
    let o = mexa(&store, &["show", "align", "--sentences", "zul"]);
    assert!(!o.status.success() && text(&o).contains("align_instances"), "{}", text(&o));
    let o = mexa(&store, &["show", "instances", "--sentences", "zlu", "--pooling", "weighted"]);
    assert!(!o.status.success() && text(&o).contains("did you mean `zul`"), "{}", text(&o));
    let o = mexa(&store, &["show", "instances", "--sentences", "eng", "--pooling", "weighted"]);
    assert!(!o.status.success() && text(&o).contains("eng is the pivot"), "{}", text(&o));
    let o = mexa(&store, &["show", "instances", "--sentences", "zul", "--pooling", "weighted", "--all"]);
    let shown = text(&o);
    assert!(o.status.success(), "{shown}");
    // The hidden state with the most hits (the earliest on a tie) is the one shown.
    let mine: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["language"] == "zul" && r["pooling"] == "weighted").collect();
    let layers = mine.iter().map(|r| r["layer"].as_i64().unwrap()).max().unwrap() + 1;
    let hits = |l: i64| mine.iter().filter(|r| r["layer"] == l && r["mexa"] == true).count();
    let best = (0..layers).max_by(|&a, &b| hits(a).cmp(&hits(b)).then(b.cmp(&a))).unwrap();
    assert!(shown.contains(&format!("hidden state {best} of 0..={}", layers - 1)), "{shown}");
    assert!(shown.contains(&format!("{} of 10 sentences retrieve their translation", hits(best))), "{shown}");
    let at: Vec<&&serde_json::Value> = mine.iter().filter(|r| r["layer"] == best).collect();
    assert_eq!(at.len(), 10);
    for r in &at {
        let id = r["sentence_id"].as_i64().unwrap();
        assert!(shown.contains(&format!("  zul: \"{}\"", text_of("zul", id))), "sentence {id}: {shown}");
        let (lang_picks, pivot_picks) =
            (r["language_retrieves"].as_i64().unwrap(), r["pivot_retrieves"].as_i64().unwrap());
        // A side that wins its row (column) retrieves its own translation; else another sentence.
        assert_eq!(r["p1_lang_to_pivot"] == true, lang_picks == id, "{r}");
        assert_eq!(r["p1_pivot_to_lang"] == true, pivot_picks == id, "{r}");
        if lang_picks != id {
            let line = format!("zul → eng retrieves #{lang_picks} instead: \"{}\"", text_of("eng", lang_picks));
            assert!(shown.contains(&line), "{line}\n{shown}");
        }
        if pivot_picks != id {
            let line = format!("eng → zul retrieves #{pivot_picks} instead: \"{}\"", text_of("zul", pivot_picks));
            assert!(shown.contains(&line), "{line}\n{shown}");
        }
    }
    assert!(at.iter().any(|r| r["mexa"] == false), "MiniLM misses some Zulu pairs: the test sees a miss");
}
