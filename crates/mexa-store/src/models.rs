//! Model references: which files of a model count for its identity, and models named by a
//! Hugging Face id (`Qwen/Qwen2.5-1.5B`, optionally `@revision`) found in the local Hugging
//! Face cache, or downloaded into it first when online ([`crate::download`]).
//!
//! A model enters an artifact key through the files mexa's loader reads and nothing else
//! ([`loader_files`]): a Llama 3.1 folder's `original/*.pth`, README or optimizer state are
//! neither hashed nor read. Files of the Hugging Face cache are keyed by their content, as a
//! local folder's are: a blob's name is the hash of what was downloaded, and an edit through
//! the snapshot's link changes the content but not the name. Hashes are cached by each
//! file's stamp ([`FileHasher`]), so gigabytes are hashed once. A model or tokenizer given as
//! a file is keyed with the files its loader reads beside it ([`file_key`]).
//!
//! Cache layout (huggingface_hub's): `$HF_HUB_CACHE` (default `$HF_HOME/hub`, default
//! `~/.cache/huggingface/hub`) holds `models--{owner}--{name}/` with `refs/{branch or tag}`
//! (a file holding a commit hash), `snapshots/{commit}/` (the files, as symlinks into
//! `blobs/`) and `blobs/{content hash}`.
use crate::FileHasher;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A model resolved to files on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRef {
    /// What the loader opens: a model folder or a .gguf file.
    pub path: PathBuf,
    /// What enters the artifact key.
    pub key: Value,
}

/// Files of a Hugging Face folder that the loader reads: config.json, the tokenizer files,
/// the safetensors weights (one file, or the shards an index names) — or, in a folder without
/// config.json, its .gguf file and a tokenizer.json beside it. Relative names, sorted.
pub fn loader_files(dir: &Path) -> Result<Vec<String>> {
    let names: BTreeSet<String> = fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pick_loader_files(&names, || index_shards(&dir.join("model.safetensors.index.json")))
}

/// The files the loader reads among `names` (the top-level files of a folder or of a Hub
/// repository; see [`loader_files`]). `shards` reads `model.safetensors.index.json` when the
/// weights are sharded (a folder reads it from disk; a download fetches it first).
pub fn pick_loader_files(
    names: &BTreeSet<String>,
    shards: impl FnOnce() -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    let has = |n: &str| names.contains(n);
    let mut files: Vec<String> = Vec::new();
    if has("config.json") {
        for n in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"] {
            if has(n) {
                files.push(n.to_string());
            }
        }
        if !has("model.safetensors") && has("model.safetensors.index.json") {
            files.push("model.safetensors.index.json".to_string());
            files.extend(shards()?);
        }
    } else {
        files.extend(names.iter().filter(|n| n.ends_with(".gguf")).cloned());
        for n in ["tokenizer.json", "tokenizer_config.json"] {
            if has(n) {
                files.push(n.to_string());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// The shard files a `model.safetensors.index.json` names in its `weight_map`.
pub fn index_shards(index: &Path) -> Result<Vec<String>> {
    let v: Value = mexa_core::file::read_json(index, mexa_core::FileKind::Config)?;
    let map = v["weight_map"].as_object().ok_or_else(|| anyhow!("{}: no `weight_map` object", index.display()))?;
    let mut shards = Vec::new();
    for shard in map.values().filter_map(Value::as_str) {
        if shard.contains('/') || shard.contains("..") {
            bail!("{}: weight_map names `{shard}`, which is not a file of this folder", index.display());
        }
        shards.push(shard.to_string());
    }
    Ok(shards)
}

/// huggingface_hub's home: `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else
/// `~/.cache/huggingface` (its token file and, by default, the cache live there).
pub fn hf_home() -> PathBuf {
    let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("HF_HOME") {
        return p;
    }
    let home = || var("HOME").unwrap_or_default().join(".cache");
    var("XDG_CACHE_HOME").unwrap_or_else(home).join("huggingface")
}

/// Where the Hugging Face cache is: `$HF_HUB_CACHE` (or the older `$HUGGINGFACE_HUB_CACHE`),
/// else [`hf_home`]`/hub` — as huggingface_hub decides.
pub fn hub_cache() -> PathBuf {
    for v in ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"] {
        if let Some(p) = std::env::var_os(v).filter(|v| !v.is_empty()) {
            return PathBuf::from(p);
        }
    }
    hf_home().join("hub")
}

/// `owner/name` or `owner/name@revision`, as a Hugging Face id is written (and not a path).
pub fn parse_hub_id(s: &str) -> Option<(&str, &str, &str)> {
    let (id, rev) = s.split_once('@').unwrap_or((s, "main"));
    let (owner, name) = id.split_once('/')?;
    let ok = |p: &str| {
        !p.is_empty() && p != "." && p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let rev_ok =
        !rev.is_empty() && !rev.contains("..") && rev.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    (ok(owner) && ok(name) && rev_ok && !owner.starts_with('.')).then_some((owner, name, rev))
}

/// Resolves a model parameter: an existing path (relative to `base`), or a Hugging Face id
/// found in the local cache. Errors say what was looked up.
pub fn resolve(spec: &str, base: &Path, hasher: &FileHasher) -> Result<ModelRef> {
    let expanded = match spec.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest),
        None => PathBuf::from(spec),
    };
    let path = if expanded.is_absolute() { expanded } else { base.join(expanded) };
    if path.exists() {
        return local(&path, hasher);
    }
    match parse_hub_id(spec) {
        Some((owner, name, rev)) if !spec.starts_with('.') && !spec.starts_with('/') && !spec.starts_with('~') => {
            from_hub_or_download(owner, name, rev, &hub_cache(), hasher).with_context(|| {
                format!(
                    "model `{spec}` is not a path ({} does not exist), so it was looked up as a Hugging Face id",
                    path.display()
                )
            })
        }
        _ => bail!("{}: cannot read: no such file or directory", path.display()),
    }
}

/// A model from the Hugging Face cache; when it is not there (or incomplete) and
/// `HF_HUB_OFFLINE` is not set, the files the loader reads are downloaded first
/// ([`crate::download`]). Offline, the error names the cache path, as before.
fn from_hub_or_download(owner: &str, name: &str, rev: &str, cache: &Path, hasher: &FileHasher) -> Result<ModelRef> {
    let absent = match from_hub(owner, name, rev, cache, hasher) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    if crate::download::offline() {
        return Err(absent.context(format!(
            "HF_HUB_OFFLINE is set, so nothing was downloaded: fetch it where the Hub is reachable with `mexa fetch {owner}/{name}`"
        )));
    }
    let hub = crate::download::Hub::from_env();
    if let Err(e) = hub.fetch(owner, name, rev, cache, &[]) {
        return Err(e.context(format!("{absent:#}; downloading it failed (set HF_HUB_OFFLINE=1 to never try)")));
    }
    from_hub(owner, name, rev, cache, hasher)
}

/// The files beside `file` that mexa's loaders read with it: beside a `.gguf` a
/// tokenizer.json (which replaces the GGUF's own tokenizer) and the tokenizer_config.json read
/// with it; beside a `tokenizer.json` its tokenizer_config.json (BOS and pad tokens). Names,
/// sorted; only those that exist.
pub fn beside(file: &Path) -> Vec<&'static str> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let read_with: &[&'static str] = if name.ends_with(".gguf") {
        &["tokenizer.json", "tokenizer_config.json"]
    } else if name == "tokenizer.json" {
        &["tokenizer_config.json"]
    } else {
        &[]
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    read_with.iter().copied().filter(|n| dir.join(n).is_file()).collect()
}

/// The key of an external file given by path: `{"blake3": hash}`, with the hashes of the
/// files its loader reads beside it ([`beside`]) under `"beside"` when there are any (so a
/// key without them is what it always was). One mechanism for a model file and a `tokenizer:`.
pub fn file_key(file: &Path, hasher: &FileHasher) -> Result<Value> {
    let mut key = json!({ "blake3": hasher.hash_path(file)? });
    let sidecars = beside(file);
    if !sidecars.is_empty() {
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut keyed = BTreeMap::new();
        for n in sidecars {
            let p = dir.join(n);
            let h = hasher.hash_path(&p).with_context(|| format!("{}: read with {}", p.display(), file.display()))?;
            keyed.insert(n.to_string(), Value::String(h));
        }
        key["beside"] = json!(keyed);
    }
    Ok(key)
}

/// A local file or folder: a file is keyed by its hash and the files read beside it
/// ([`file_key`]), a folder by the hashes of the files the loader reads.
fn local(path: &Path, hasher: &FileHasher) -> Result<ModelRef> {
    if path.is_file() {
        return Ok(ModelRef { path: path.to_path_buf(), key: file_key(path, hasher)? });
    }
    let files = loader_files(path)?;
    if files.is_empty() {
        bail!("{}: neither a config.json (Hugging Face folder) nor a .gguf file", path.display());
    }
    let mut keyed = BTreeMap::new();
    for f in files {
        let p = path.join(&f);
        let h = hasher
            .hash_path(&p)
            .with_context(|| format!("{}: listed by the model folder but not readable", p.display()))?;
        keyed.insert(f, Value::String(h));
    }
    Ok(ModelRef { path: path.to_path_buf(), key: json!({ "model_files": keyed }) })
}

/// A model in the Hugging Face cache `cache`, at `rev` (a branch, a tag or a commit hash).
pub fn from_hub(owner: &str, name: &str, rev: &str, cache: &Path, hasher: &FileHasher) -> Result<ModelRef> {
    let repo = cache.join(format!("models--{owner}--{name}"));
    if !repo.is_dir() {
        bail!(
            "{} does not exist (Hugging Face cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub); fetch it with `mexa fetch {owner}/{name}` or `huggingface-cli download {owner}/{name}`",
            repo.display()
        );
    }
    let refs = repo.join("refs").join(rev);
    let commit = if refs.is_file() {
        mexa_core::file::read_text(&refs, mexa_core::FileKind::Config)?.trim().to_string()
    } else if rev.len() >= 7 && rev.chars().all(|c| c.is_ascii_hexdigit()) && repo.join("snapshots").join(rev).is_dir()
    {
        rev.to_string()
    } else {
        bail!("{}: no such ref, and `{rev}` is not a commit in {}", refs.display(), repo.join("snapshots").display());
    };
    let snapshot = repo.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        bail!("{}: snapshot of `{rev}` (commit {commit}) is missing", snapshot.display());
    }
    let files = loader_files(&snapshot)?;
    if files.is_empty() {
        bail!("{}: no config.json or .gguf file in this snapshot", snapshot.display());
    }
    let mut keyed = BTreeMap::new();
    for f in files {
        let p = snapshot.join(&f);
        // A snapshot file is a symlink to ../../blobs/<content hash>. The blob's name says
        // what it held when downloaded, not what it holds now (an edit through the link
        // changes the content, not the name), so the key takes the content's hash, as for a
        // local folder (hashed once, then cached by the file's stamp).
        if let Ok(target) = fs::read_link(&p) {
            let blob = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !repo.join("blobs").join(&blob).is_file() {
                bail!(
                    "{}: points to blob {blob}, which is missing from {} (incomplete download?)",
                    p.display(),
                    repo.join("blobs").display()
                );
            }
        }
        let h = hasher.hash_path(&p).with_context(|| format!("{}: cannot read", p.display()))?;
        keyed.insert(f, Value::String(h));
    }
    Ok(ModelRef { path: snapshot, key: json!({ "hub": format!("{owner}/{name}"), "model_files": keyed }) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A cache laid out as huggingface_hub writes it, with a Llama 3.1-like folder that also
    /// has `original/` weights the loader must not read.
    fn fake_cache(root: &Path) -> PathBuf {
        let repo = root.join("models--meta-llama--Llama-3.1-8B");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snap = repo.join("snapshots").join(commit);
        fs::create_dir_all(snap.join("original")).unwrap();
        fs::create_dir_all(repo.join("blobs")).unwrap();
        fs::create_dir_all(repo.join("refs")).unwrap();
        fs::write(repo.join("refs/main"), commit).unwrap();
        let files = [
            ("config.json", "aaa1"),
            ("tokenizer.json", "bbb2"),
            ("model.safetensors.index.json", "ccc3"),
            ("model-00001-of-00002.safetensors", "ddd4"),
            ("model-00002-of-00002.safetensors", "eee5"),
            ("README.md", "fff6"),
            ("original/consolidated.00.pth", "9999"),
        ];
        for (name, blob) in files {
            let content = if name.ends_with("index.json") {
                r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#
                    .to_string()
            } else {
                format!("content of {name}")
            };
            fs::write(repo.join("blobs").join(blob), content).unwrap();
            let depth = name.matches('/').count();
            let up = "../".repeat(depth + 2);
            symlink(format!("{up}blobs/{blob}"), snap.join(name)).unwrap();
        }
        repo
    }

    #[test]
    fn hub_ids_resolve_offline_by_content_and_only_loader_files() {
        let d = tempfile::tempdir().unwrap();
        let repo = fake_cache(d.path());
        let h = FileHasher::new(None);
        let m = from_hub("meta-llama", "Llama-3.1-8B", "main", d.path(), &h).unwrap();
        assert!(m.path.ends_with("snapshots/0123456789abcdef0123456789abcdef01234567"));
        let files = m.key["model_files"].as_object().unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json",
                "tokenizer.json"
            ]
        );
        let content = blake3::hash(b"content of model-00002-of-00002.safetensors").to_hex().to_string();
        assert_eq!(files["model-00002-of-00002.safetensors"], content.as_str());
        // A blob edited through its link (its name unchanged) changes the key.
        fs::write(repo.join("blobs/aaa1"), "edited config").unwrap();
        let edited = from_hub("meta-llama", "Llama-3.1-8B", "main", d.path(), &FileHasher::new(None)).unwrap();
        assert_ne!(edited.key, m.key);
        fs::write(repo.join("blobs/aaa1"), "content of config.json").unwrap();
        // By commit hash too, and the same key.
        let by_commit =
            from_hub("meta-llama", "Llama-3.1-8B", "0123456789abcdef0123456789abcdef01234567", d.path(), &h).unwrap();
        assert_eq!(by_commit, m);
        // A missing blob (interrupted download) is an error naming the file.
        fs::remove_file(repo.join("blobs/ddd4")).unwrap();
        let e = format!("{:#}", from_hub("meta-llama", "Llama-3.1-8B", "main", d.path(), &h).unwrap_err());
        assert!(e.contains("model-00001-of-00002.safetensors") && e.contains("ddd4"), "{e}");
    }

    #[test]
    fn absent_models_and_refs_name_what_was_looked_up() {
        let d = tempfile::tempdir().unwrap();
        fake_cache(d.path());
        let h = FileHasher::new(None);
        let e = format!("{:#}", from_hub("Qwen", "Qwen2.5-1.5B", "main", d.path(), &h).unwrap_err());
        assert!(
            e.contains("models--Qwen--Qwen2.5-1.5B") && e.contains("huggingface-cli download Qwen/Qwen2.5-1.5B"),
            "{e}"
        );
        let e = format!("{:#}", from_hub("meta-llama", "Llama-3.1-8B", "v2", d.path(), &h).unwrap_err());
        assert!(e.contains("refs/v2"), "{e}");
    }

    /// A GGUF file's key takes the tokenizer files its loader reads beside it, a tokenizer's
    /// its tokenizer_config.json; without them the key is the bare content hash.
    #[test]
    fn files_read_beside_a_model_or_tokenizer_enter_its_key() {
        let d = tempfile::tempdir().unwrap();
        let (gguf, tok) = (d.path().join("m.gguf"), d.path().join("tokenizer.json"));
        fs::write(&gguf, "gguf").unwrap();
        let h = FileHasher::new(None);
        let bare = file_key(&gguf, &h).unwrap();
        assert_eq!(bare, json!({ "blake3": blake3::hash(b"gguf").to_hex().to_string() }));
        fs::write(&tok, "{}").unwrap();
        let with_tok = file_key(&gguf, &h).unwrap();
        assert_eq!(with_tok["beside"].as_object().unwrap().len(), 1);
        assert_eq!(file_key(&tok, &h).unwrap().get("beside"), None);
        fs::write(d.path().join("tokenizer_config.json"), "{}").unwrap();
        assert_ne!(file_key(&gguf, &h).unwrap(), with_tok);
        assert!(file_key(&tok, &h).unwrap()["beside"]["tokenizer_config.json"].is_string());
    }

    #[test]
    fn ids_are_told_from_paths() {
        assert_eq!(parse_hub_id("Qwen/Qwen2.5-1.5B"), Some(("Qwen", "Qwen2.5-1.5B", "main")));
        assert_eq!(parse_hub_id("google/gemma-3-270m@v1.0"), Some(("google", "gemma-3-270m", "v1.0")));
        assert_eq!(parse_hub_id("models/x/y"), None);
        assert_eq!(parse_hub_id("../x"), None);
        assert_eq!(parse_hub_id("model.gguf"), None);
    }

    #[test]
    fn a_local_folder_is_keyed_by_the_loader_files_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("m");
        fs::create_dir_all(dir.join("original")).unwrap();
        fs::write(dir.join("config.json"), "{}").unwrap();
        fs::write(dir.join("model.safetensors"), "w").unwrap();
        fs::write(dir.join("original/big.pth"), "x").unwrap();
        let h = FileHasher::new(None);
        let a = resolve("m", d.path(), &h).unwrap();
        fs::write(dir.join("original/big.pth"), "changed").unwrap();
        fs::write(dir.join("README.md"), "new").unwrap();
        assert_eq!(
            resolve("m", d.path(), &h).unwrap().key,
            a.key,
            "files the loader does not read must not change the key"
        );
        fs::write(dir.join("model.safetensors"), "w2").unwrap();
        assert_ne!(resolve("m", d.path(), &h).unwrap().key, a.key);
    }
}
