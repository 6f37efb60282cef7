//! Planning and running with placeholder stages: grids, caching, reasons, gather, failures.
mod common;
use common::{lines_of, registry, registry_with_shout_version};
use mexa_pipeline::stage::NoProgress;
use mexa_pipeline::{parse, plan, run, Ctx, InputRef, Plan, Reason, Registry, RunOptions, Status};
use mexa_store::{FileHasher, Store};
use std::path::Path;
use std::sync::atomic::AtomicBool;

const PIPE: &str = "
pipeline: t
grid:
  word: [alpha, beta, gamma]
  rows: [1, 2]
  exclude: [{word: gamma, rows: 2}]
stages:
  src:
    kind: source
    params: {text: \"${word}\", copies: 3}
  loud:
    kind: shout
    inputs: {src: src}
    params: {shards: 3, rows: \"${rows}\"}
  all:
    kind: collect
    inputs: {parts: loud}
";

fn planned(text: &str, reg: &Registry, store: &Store) -> Plan {
    let spec = parse("t.yaml", text, Path::new("t.yaml"), reg).unwrap_or_else(|e| panic!("{e}"));
    plan(&spec, reg, store, &FileHasher::new(None)).unwrap_or_else(|e| panic!("{e}"))
}

fn opts() -> RunOptions {
    RunOptions {
        jobs: 2,
        threads: 1,
        keep_going: false,
        progress: mexa_pipeline::run::ProgressMode::None,
        budget: Default::default(),
        weights: vec![],
    }
}

fn reasons(p: &Plan) -> Vec<(String, Status)> {
    p.nodes.iter().map(|n| (n.label.clone(), n.status.clone())).collect()
}

#[test]
fn grid_expands_per_stage_axes_and_gathers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let p = planned(PIPE, &registry(), &store);
    let labels: Vec<&str> = p.nodes.iter().map(|n| n.label.as_str()).collect();
    // src varies over word only; loud over word and rows (less the excluded cell); all over nothing.
    assert_eq!(labels.iter().filter(|l| l.starts_with("src[")).count(), 3);
    assert_eq!(labels.iter().filter(|l| l.starts_with("loud[")).count(), 5);
    assert!(labels.contains(&"loud[word=beta,rows=2]") && !labels.contains(&"loud[word=gamma,rows=2]"));
    assert_eq!(p.nodes.last().unwrap().label, "all");
    assert_eq!(p.nodes.last().unwrap().deps["parts"].len(), 5);
    assert_eq!(p.to_run(), 9);
}

#[test]
fn run_then_everything_is_cached_and_results_are_right() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let reg = registry();
    let p = planned(PIPE, &reg, &store);
    let s = run(&p, &reg, &store, &opts(), &AtomicBool::new(false));
    assert!(s.ok(), "{s:?}");
    assert_eq!((s.computed, s.cached), (9, 0));
    let again = planned(PIPE, &reg, &store);
    assert_eq!(again.to_run(), 0);
    let s = run(&again, &reg, &store, &opts(), &AtomicBool::new(false));
    assert_eq!((s.computed, s.cached), (0, 9));
    // The gathered output: 5 loud nodes × 3 shards × 3 lines × rows.
    let last = again.nodes.last().unwrap();
    let ctx_in = InputRef { key: last.key.clone(), label: last.label.clone() };
    let cancel = AtomicBool::new(false);
    let params = serde_json::Value::Null;
    let ctx = Ctx {
        store: &store,
        key: &last.key,
        label: "",
        kind: "",
        version: 0,
        params: &params,
        inputs: Default::default(),
        cancel: &cancel,
        progress: &NoProgress,
        threads: 1,
        force: false,
        reads: Default::default(),
    };
    let lines = lines_of(&ctx.read(&ctx_in).unwrap());
    assert_eq!(lines.len(), 3 * 3 * (1 + 2 + 1 + 2 + 1));
    assert!(lines.iter().any(|l| l.starts_with("loud[word=beta,rows=2]: BETA ")));
}

#[test]
fn plan_gives_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let reg = registry();
    let p = planned(PIPE, &reg, &store);
    assert!(reasons(&p).iter().all(|(_, s)| *s == Status::Run(Reason::NeverRun)));
    assert!(run(&p, &reg, &store, &opts(), &AtomicBool::new(false)).ok());

    // A parameter change: the changed node says which, its dependents say their input changed.
    let changed = PIPE.replace("copies: 3", "copies: 4");
    let p = planned(&changed, &reg, &store);
    let r = reasons(&p);
    let src = r.iter().find(|(l, _)| l == "src[word=alpha]").unwrap();
    assert_eq!(src.1, Status::Run(Reason::NewParameters(vec!["copies: 3 → 4".into()])));
    let loud = r.iter().find(|(l, _)| l == "loud[word=alpha,rows=1]").unwrap();
    assert_eq!(loud.1, Status::Run(Reason::InputChanged(vec!["src (from src[word=alpha])".into()])));

    // An execution setting (how long each shard sleeps) changes no key: everything cached.
    let slower = PIPE.replace("params: {shards: 3,", "params: {sleep_ms: 5, shards: 3,");
    assert_ne!(slower, PIPE, "the test pipeline has a shout stage");
    let p = planned(&slower, &reg, &store);
    assert!(p.nodes.iter().all(|n| n.status == Status::Cached), "{:?}", reasons(&p));

    // An option added later (`keyed_if_set`): at its default, written out or not, it leaves
    // the keys as they were before it existed; any other value changes them.
    let p = planned(&PIPE.replace("params: {shards: 3,", "params: {tag: \"\", shards: 3,"), &reg, &store);
    assert!(p.nodes.iter().all(|n| n.status == Status::Cached), "{:?}", reasons(&p));
    let p = planned(&PIPE.replace("params: {shards: 3,", "params: {tag: x, shards: 3,"), &reg, &store);
    let loud = reasons(&p).into_iter().find(|(l, _)| l == "loud[word=alpha,rows=1]").unwrap();
    assert!(matches!(loud.1, Status::Run(Reason::NewParameters(_))), "{:?}", loud.1);

    // A new stage version.
    let reg2 = registry_with_shout_version(2);
    let p = planned(PIPE, &reg2, &store);
    let loud = reasons(&p).into_iter().find(|(l, _)| l == "loud[word=alpha,rows=1]").unwrap();
    assert_eq!(loud.1, Status::Run(Reason::StageVersionChanged { from: 1, to: 2 }));
    assert!(p.nodes.iter().filter(|n| n.stage == "src").all(|n| n.status == Status::Cached));

    // A deleted artifact.
    let p = planned(PIPE, &reg, &store);
    let key = p.nodes.iter().find(|n| n.label == "all").unwrap().key.clone();
    store.remove(&key).unwrap();
    let p = planned(PIPE, &reg, &store);
    let all = reasons(&p).into_iter().find(|(l, _)| l == "all").unwrap();
    assert_eq!(all.1, Status::Run(Reason::ArtifactMissing));
}

#[test]
fn keys_do_not_depend_on_where_the_store_or_pipeline_lives() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let reg = registry();
    let pa = planned(PIPE, &reg, &Store::open(a.path()).unwrap());
    let spec = parse("elsewhere/other.yaml", PIPE, Path::new("/somewhere/else/other.yaml"), &reg).unwrap();
    let pb = plan(&spec, &reg, &Store::open(b.path()).unwrap(), &FileHasher::new(None)).unwrap();
    let ka: Vec<&str> = pa.nodes.iter().map(|n| n.key.as_str()).collect();
    let kb: Vec<&str> = pb.nodes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(ka, kb);
}

#[test]
fn a_failure_stops_dependents_and_keep_going_runs_the_rest() {
    let failing = "
pipeline: f
stages:
  a: {kind: source, params: {text: a}}
  bad: {kind: shout, inputs: {src: a}, params: {fail: true}}
  after: {kind: shout, inputs: {src: bad}}
  good: {kind: shout, inputs: {src: a}, params: {sleep_ms: 50}}
";
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let reg = registry();
    let p = planned(failing, &reg, &store);
    let mut o = opts();
    o.jobs = 1;
    o.keep_going = true;
    let s = run(&p, &reg, &store, &o, &AtomicBool::new(false));
    assert_eq!(s.failed.len(), 1);
    assert_eq!(s.failed[0].0, "bad");
    assert!(s.failed[0].1.contains("asked to fail"), "{}", s.failed[0].1);
    assert_eq!(s.skipped, 1, "`after` is skipped");
    assert_eq!(s.computed, 2, "`a` and `good` still run");
    assert!(!s.ok());
}

#[test]
fn pipelines_share_stages_through_imports() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("common.yaml"),
        "grid:\n  word: [alpha, beta]\nstages:\n  src:\n    kind: source\n    params: {text: \"${word}\"}\n",
    )
    .unwrap();
    let a = "pipeline: a\nimports: [common.yaml]\nstages:\n  loud:\n    kind: shout\n    inputs: {src: src}\n";
    let b = "pipeline: b\nimports: [common.yaml]\nstages:\n  all:\n    kind: collect\n    inputs: {parts: src}\n";
    let reg = registry();
    let store = Store::open(dir.path().join("store")).unwrap();
    let plan_of = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let spec = mexa_pipeline::load(&path, &reg).unwrap_or_else(|e| panic!("{e}"));
        plan(&spec, &reg, &store, &FileHasher::new(None)).unwrap()
    };
    let pa = plan_of("a.yaml", a);
    assert!(run(&pa, &reg, &store, &opts(), &AtomicBool::new(false)).ok());
    // b reuses a's `src` artifacts: same stage, same key.
    let pb = plan_of("b.yaml", b);
    let src: Vec<&Status> = pb.nodes.iter().filter(|n| n.stage == "src").map(|n| &n.status).collect();
    assert_eq!(src, vec![&Status::Cached, &Status::Cached]);
    // A stage defined in both files is an error that names both places.
    let dup = dir.path().join("dup.yaml");
    std::fs::write(&dup, "imports: [common.yaml]\nstages:\n  src: {kind: source, params: {text: x}}\n").unwrap();
    let e = mexa_pipeline::load(&dup, &reg).unwrap_err().to_string();
    assert!(
        e.contains("dup.yaml:3:3: error: `src` is defined twice in `stages`") && e.contains("common.yaml:4:3"),
        "{e}"
    );
}

#[test]
fn when_restricts_a_stage_and_what_it_feeds_to_some_cells() {
    let text = "
pipeline: t
grid:
  word: [alpha, beta, gamma]
stages:
  src:
    kind: source
    params: {text: \"${word}\"}
  only:
    kind: shout
    when: {word: [alpha, gamma]}
    inputs: {src: src}
  after:
    kind: shout
    inputs: {src: only}
  all:
    kind: collect
    inputs: {parts: after}
";
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let p = planned(text, &registry(), &store);
    let labels: Vec<&str> = p.nodes.iter().map(|n| n.label.as_str()).collect();
    assert_eq!(labels.iter().filter(|l| l.starts_with("src[")).count(), 3);
    let only: Vec<&&str> = labels.iter().filter(|l| l.starts_with("only[")).collect();
    assert_eq!(only, [&"only[word=alpha]", &"only[word=gamma]"]);
    assert_eq!(labels.iter().filter(|l| l.starts_with("after[")).count(), 2, "{labels:?}");
    assert_eq!(p.nodes.last().unwrap().deps["parts"].len(), 2);
    // The restricted nodes have the keys they would have without `when`.
    let plain = planned(&text.replace("    when: {word: [alpha, gamma]}\n", ""), &registry(), &store);
    for n in &p.nodes {
        assert!(n.label == "all" || plain.nodes.iter().any(|m| m.label == n.label && m.key == n.key), "{}", n.label);
    }
}
