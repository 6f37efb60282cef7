//! `mexa fetch` and download on use through the binary, against a local stand-in for the
//! Hugging Face Hub that serves the bundled all-MiniLM-L6-v2 folder as
//! `sentence-transformers/all-MiniLM-L6-v2`: fetched into a Hugging Face cache, found there
//! offline by a plan, downloaded by a plan when absent, and embedded by a run.
#[path = "../../mexa-store/tests/support/hub_server.rs"]
mod hub_server;

use hub_server::HubServer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
const COMMIT: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

fn assets() -> PathBuf {
    std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("MEXA_CACHE").map(|c| PathBuf::from(c).join("assets")))
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"))
}

fn mexa(dir: &Path, endpoint: &str, cache: &Path, offline: bool, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mexa"));
    c.args(args)
        .current_dir(dir)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", dir.join("hf-home"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("TRANSFORMERS_OFFLINE");
    if offline {
        c.env("HF_HUB_OFFLINE", "1");
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn fetch_then_plan_offline_and_download_on_use() {
    let minilm = assets().join("models/all-minilm-l6-v2");
    assert!(minilm.join("model.safetensors").is_file(), "run scripts/fetch-assets.py first");
    let d = tempfile::tempdir().unwrap();
    let hub = HubServer::start(&d.path().join("hub"));
    let (owner, name) = ID.split_once('/').unwrap();
    hub.link_repo(owner, name, COMMIT, &minilm);
    let cache = d.path().join("hf-cache");

    // `mexa fetch`: the loader's files, not special_tokens_map.json.
    let o = mexa(d.path(), &hub.url, &cache, false, &["fetch", ID, "--no-progress"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in ["downloaded model.safetensors (90.9 MB)", "downloaded config.json", COMMIT] {
        assert!(out.contains(want), "`{want}` missing from: {out}");
    }
    let snapshot = cache.join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots").join(COMMIT);
    assert!(!snapshot.join("special_tokens_map.json").exists());
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        std::fs::read(minilm.join("model.safetensors")).unwrap()
    );
    let o = mexa(d.path(), &hub.url, &cache, false, &["fetch", ID]);
    assert!(text(&o).contains("cached     model.safetensors"), "{}", text(&o));
    // Offline, fetch refuses plainly.
    let o = mexa(d.path(), &hub.url, &cache, true, &["fetch", ID]);
    assert!(!o.status.success() && text(&o).contains("HF_HUB_OFFLINE is set"), "{}", text(&o));

    // A pipeline naming the id plans offline from the cache and runs.
    for (f, t) in [("c/eng.txt", "one\ntwo\nthree\n"), ("c/fra.txt", "un\ndeux\ntrois\n")] {
        std::fs::create_dir_all(d.path().join("c")).unwrap();
        std::fs::write(d.path().join(f), t).unwrap();
    }
    let yaml = format!(
        "pipeline: p\nstages:\n  corpus:\n    kind: load_corpus\n    params: {{path: c, pivot: eng}}\n  embed:\n    kind: embed\n    inputs: {{corpus: corpus}}\n    params: {{model: {ID}}}\n"
    );
    std::fs::write(d.path().join("p.yaml"), yaml).unwrap();
    let requests = hub.requests().len();
    let o = mexa(d.path(), &hub.url, &cache, true, &["--store", "s", "plan", "--json", "p.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let embed = &plan["nodes"][1];
    assert_eq!(embed["params"]["model"], snapshot.to_string_lossy().as_ref());
    assert_eq!(embed["spec"]["params"]["model"]["hub"], ID);
    let o = mexa(d.path(), &hub.url, &cache, true, &["--store", "s", "run", "p.yaml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(hub.requests().len(), requests, "offline runs must not touch the network");

    // Not in a fresh cache and online: the plan downloads it, with the same key.
    let fresh = d.path().join("fresh-cache");
    let o = mexa(d.path(), &hub.url, &fresh, false, &["--store", "s", "plan", "--json", "p.yaml"]);
    assert_eq!(o.status.code(), Some(0), "cached already, nothing to run: {}", text(&o));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["nodes"][1]["key"], embed["key"]);
    assert!(fresh.join("models--sentence-transformers--all-MiniLM-L6-v2/refs/main").is_file());
}
