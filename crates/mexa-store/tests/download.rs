//! Models by Hugging Face id, downloaded from a local stand-in for the Hub
//! (support/hub_server.rs) into a Hugging Face cache laid out as huggingface_hub writes it:
//! download, resume after a cut connection, a wrong checksum refused, a gated repository's 401
//! explained, download on use through `models::resolve`, and the offline error unchanged.
#[path = "support/hub_server.rs"]
mod hub_server;

use hub_server::{Faults, HubServer};
use mexa_store::download::{digest, Digest, Hub};
use mexa_store::models::{from_hub, resolve};
use mexa_store::FileHasher;
use std::fs;
use std::path::Path;

const COMMIT: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A sharded safetensors repository with files the loader must not fetch.
fn safetensors_repo(hub: &HubServer) {
    let index = br#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
    hub.add_repo(
        "org",
        "tiny",
        COMMIT,
        &[
            ("config.json", br#"{"model_type": "llama"}"#.to_vec()),
            ("tokenizer.json", b"{}".to_vec()),
            ("model.safetensors.index.json", index.to_vec()),
            ("model-00001-of-00002.safetensors", bytes(3000, 1)),
            ("model-00002-of-00002.safetensors", bytes(2000, 2)),
            ("README.md", b"# tiny".to_vec()),
            ("original/consolidated.00.pth", bytes(100, 3)),
        ],
    );
}

fn quiet(hub: &HubServer, token: Option<&str>) -> Hub {
    let mut h = Hub::new(&hub.url, token.map(str::to_string));
    h.progress = false;
    h
}

#[test]
fn downloads_the_loader_files_into_the_hugging_face_cache_layout() {
    let d = tempfile::tempdir().unwrap();
    let hub = HubServer::start(&d.path().join("hub"));
    safetensors_repo(&hub);
    let cache = d.path().join("cache");
    let got = quiet(&hub, None).fetch("org", "tiny", "main", &cache, &[]).unwrap();
    assert_eq!(got.commit, COMMIT);
    let names: Vec<&str> = got.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "model.safetensors.index.json",
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "tokenizer.json"
        ]
    );
    assert!(got.files.iter().all(|f| f.downloaded));
    // huggingface_hub's layout: refs/main holds the commit, snapshot files link into blobs/
    // named by their ETag (sha256 for LFS files, git's blob sha1 for small ones).
    let repo = cache.join("models--org--tiny");
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    let served = hub.root.join("org/tiny/resolve").join(COMMIT);
    for (f, kind) in [("config.json", Digest::GitSha1), ("model-00002-of-00002.safetensors", Digest::Sha256)] {
        let link = repo.join("snapshots").join(COMMIT).join(f);
        let etag = digest(&served.join(f), kind).unwrap();
        assert_eq!(fs::read_link(&link).unwrap().to_string_lossy(), format!("../../blobs/{etag}"));
        assert_eq!(fs::read(&link).unwrap(), fs::read(served.join(f)).unwrap());
    }
    // Only loader files were asked for; the token-less client sent no Authorization.
    let reqs = hub.requests();
    assert!(!reqs.iter().any(|r| r.path.contains("README") || r.path.contains("original")), "{reqs:?}");
    assert!(reqs.iter().all(|r| r.auth.is_none()));
    // The offline resolver now finds it, keyed by content.
    let m = from_hub("org", "tiny", "main", &cache, &FileHasher::new(None)).unwrap();
    let content = FileHasher::new(None).hash_path(&served.join("model-00001-of-00002.safetensors")).unwrap();
    assert_eq!(m.key["model_files"]["model-00001-of-00002.safetensors"], content.as_str());
    // A second fetch downloads nothing: one API call to resolve `main`, no file requests.
    let n = hub.requests().len();
    let again = quiet(&hub, None).fetch("org", "tiny", "main", &cache, &[]).unwrap();
    assert!(again.files.iter().all(|f| !f.downloaded));
    let later: Vec<_> = hub.requests()[n..].to_vec();
    assert_eq!(later.len(), 1, "{later:?}");
    assert!(later[0].path.starts_with("/api/models/org/tiny/revision/main"));
}

#[test]
fn a_cut_connection_resumes_from_what_arrived() {
    let d = tempfile::tempdir().unwrap();
    let hub = HubServer::start(&d.path().join("hub"));
    let gguf = bytes(8000, 7);
    hub.add_repo("org", "q", COMMIT, &[("model-q4.gguf", gguf.clone()), ("tokenizer.json", b"{}".to_vec())]);
    let cache = d.path().join("cache");
    // Every body is cut after 1000 bytes: five tries in one call get 5000 bytes, kept.
    hub.set(Faults { cuts: 100, cut_after: 1000, ..Default::default() });
    let e = format!("{:#}", quiet(&hub, None).fetch("org", "q", "main", &cache, &[]).unwrap_err());
    assert!(e.contains("5000 bytes are kept") && e.contains("resumes"), "{e}");
    let ranges: Vec<String> = hub.requests().iter().filter_map(|r| r.range.clone()).collect();
    assert_eq!(ranges, ["bytes=1000-", "bytes=2000-", "bytes=3000-", "bytes=4000-"]);
    // The next call resumes at 5000 and finishes; the file is the served one.
    hub.set(Faults { cuts: 1, cut_after: 1000, ..Default::default() });
    let got = quiet(&hub, None).fetch("org", "q", "main", &cache, &[]).unwrap();
    let f = got.files.iter().find(|f| f.name == "model-q4.gguf").unwrap();
    assert_eq!((f.resumed_from, f.bytes, f.downloaded), (5000, 8000, true));
    let last: Vec<String> = hub.requests().iter().filter_map(|r| r.range.clone()).skip(4).collect();
    assert_eq!(last, ["bytes=5000-", "bytes=6000-"]);
    assert_eq!(fs::read(got.snapshot.join("model-q4.gguf")).unwrap(), gguf);
    let blobs: Vec<String> = fs::read_dir(cache.join("models--org--q/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!blobs.iter().any(|b| b.ends_with(".incomplete")), "{blobs:?}");
}

#[test]
fn a_wrong_checksum_is_refused_and_nothing_is_linked() {
    let d = tempfile::tempdir().unwrap();
    let hub = HubServer::start(&d.path().join("hub"));
    safetensors_repo(&hub);
    hub.set(Faults { wrong_etag: ["model-00002-of-00002.safetensors".to_string()].into(), ..Default::default() });
    let cache = d.path().join("cache");
    let e = format!("{:#}", quiet(&hub, None).fetch("org", "tiny", "main", &cache, &[]).unwrap_err());
    assert!(e.contains("checksum mismatch") && e.contains("model-00002-of-00002.safetensors"), "{e}");
    let repo = cache.join("models--org--tiny");
    assert!(!repo.join("snapshots").join(COMMIT).join("model-00002-of-00002.safetensors").exists());
    let left: Vec<String> = fs::read_dir(repo.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".incomplete"))
        .collect();
    assert!(left.is_empty(), "a refused download must not be resumed later: {left:?}");
    // The model is not usable from the cache.
    assert!(from_hub("org", "tiny", "main", &cache, &FileHasher::new(None)).is_err());
}

#[test]
fn a_gated_repository_is_explained_and_opens_with_a_token() {
    let d = tempfile::tempdir().unwrap();
    let hub = HubServer::start(&d.path().join("hub"));
    safetensors_repo(&hub);
    hub.set(Faults { token: Some("hf_good".into()), ..Default::default() });
    let cache = d.path().join("cache");
    let e = format!("{:#}", quiet(&hub, None).fetch("org", "tiny", "main", &cache, &[]).unwrap_err());
    for want in ["org/tiny is a gated model", "401", "Accept its conditions", "HF_TOKEN", "restricted"] {
        assert!(e.contains(want), "`{want}` missing from: {e}");
    }
    let e = format!("{:#}", quiet(&hub, Some("hf_bad")).fetch("org", "tiny", "main", &cache, &[]).unwrap_err());
    assert!(e.contains("gated") && e.contains("the token mexa sent"), "{e}");
    let n = hub.requests().len();
    quiet(&hub, Some("hf_good")).fetch("org", "tiny", "main", &cache, &[]).unwrap();
    // The token goes to the Hub, never to the CDN that LFS files redirect to.
    for r in &hub.requests()[n..] {
        let to_cdn = r.path.starts_with("/cdn/");
        assert_eq!(r.auth.is_some(), !to_cdn, "{r:?}");
    }
}

#[test]
fn several_ggufs_need_a_choice() {
    let d = tempfile::tempdir().unwrap();
    let hub = HubServer::start(&d.path().join("hub"));
    hub.add_repo("org", "g", COMMIT, &[("m-q4.gguf", bytes(10, 1)), ("m-q8.gguf", bytes(20, 2))]);
    let cache = d.path().join("cache");
    let e = format!("{:#}", quiet(&hub, None).fetch("org", "g", "main", &cache, &[]).unwrap_err());
    assert!(e.contains("m-q4.gguf, m-q8.gguf") && e.contains("mexa fetch org/g --file m-q4.gguf"), "{e}");
    let got = quiet(&hub, None).fetch("org", "g", "main", &cache, &["m-q8.gguf".to_string()]).unwrap();
    assert_eq!(got.files.len(), 1);
    // The snapshot now holds that one GGUF, which the offline resolver picks.
    let m = from_hub("org", "g", "main", &cache, &FileHasher::new(None)).unwrap();
    let keys: Vec<&String> = m.key["model_files"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["m-q8.gguf"]);
}

/// Download on use and the offline error, through the environment (one test: environment
/// variables are per process).
#[test]
fn resolve_downloads_when_online_and_names_the_cache_when_offline() {
    let d = tempfile::tempdir().unwrap();
    let hub = HubServer::start(&d.path().join("hub"));
    safetensors_repo(&hub);
    let cache = d.path().join("cache");
    std::env::set_var("HF_ENDPOINT", &hub.url);
    std::env::set_var("HF_HUB_CACHE", &cache);
    std::env::remove_var("HF_TOKEN");
    std::env::set_var("HF_HOME", d.path().join("home"));
    let h = FileHasher::new(None);
    // Offline: the error names the cache path and says why nothing was fetched.
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let e = format!("{:#}", resolve("org/tiny", Path::new("/nonexistent"), &h).unwrap_err());
    assert!(e.contains(&cache.join("models--org--tiny").display().to_string()), "{e}");
    assert!(e.contains("HF_HUB_OFFLINE is set") && e.contains("mexa fetch org/tiny"), "{e}");
    assert!(hub.requests().is_empty(), "offline must not touch the network");
    // Online: fetched on use, then resolved from the cache.
    std::env::remove_var("HF_HUB_OFFLINE");
    let m = resolve("org/tiny", Path::new("/nonexistent"), &h).unwrap();
    assert!(m.path.ends_with(Path::new("snapshots").join(COMMIT)));
    assert_eq!(m.key["hub"], "org/tiny");
    // A token from HF_HOME's token file (what `huggingface-cli login` writes) is sent.
    fs::create_dir_all(d.path().join("home")).unwrap();
    fs::write(d.path().join("home/token"), "hf_fromfile\n").unwrap();
    assert_eq!(mexa_store::download::token().as_deref(), Some("hf_fromfile"));
    // An unreachable endpoint says so, with the cache path and how to stay offline.
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    let e = format!("{:#}", resolve("org/other", Path::new("/nonexistent"), &h).unwrap_err());
    assert!(e.contains("models--org--other") && e.contains("cannot reach") && e.contains("HF_HUB_OFFLINE=1"), "{e}");
    for v in ["HF_ENDPOINT", "HF_HUB_CACHE", "HF_HOME"] {
        std::env::remove_var(v);
    }
}
