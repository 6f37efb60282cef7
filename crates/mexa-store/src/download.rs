//! Models by Hugging Face id, downloaded into the Hugging Face cache as huggingface_hub does
//! it, so either tool finds what the other fetched.
//!
//! Protocol: the revision is resolved to a commit (`GET {endpoint}/api/models/{id}/revision/{rev}`,
//! which also lists the repository's files); only the files mexa's loader reads are fetched
//! ([`crate::models::pick_loader_files`]). For each: `HEAD {endpoint}/{id}/resolve/{commit}/{file}`
//! (relative redirects followed, absolute ones — the CDN — not) gives `X-Repo-Commit`, the
//! ETag (`X-Linked-Etag` for LFS files, else `ETag`) and the size (`X-Linked-Size`, else
//! `Content-Length`); the body is streamed from the final location into
//! `blobs/{etag}.incomplete` and, after a cut connection, resumed from its length with
//! `Range: bytes=N-` (up to [`ATTEMPTS`] tries per call; a later call resumes too). A finished
//! file is checked against its ETag — the sha256 of an LFS file, git's blob sha1 of a small
//! one — before it becomes `blobs/{etag}`; `snapshots/{commit}/{file}` links to it and
//! `refs/{rev}` records the commit. One download per blob at a time (`.locks/`, flock).
//!
//! Settings come from the environment as huggingface_hub reads them: `HF_ENDPOINT`,
//! `HF_TOKEN` (else the token file `huggingface-cli login` writes), `HF_HUB_OFFLINE`, and the
//! cache location ([`crate::models::hub_cache`]).
use crate::models::{hf_home, index_shards, pick_loader_files};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Tries per file and call: a cut connection resumes from what arrived.
pub const ATTEMPTS: u32 = 5;

/// The Hub's default endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Whether `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set to a true value (1, ON, YES,
/// TRUE, as huggingface_hub reads them): then nothing is downloaded.
pub fn offline() -> bool {
    ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|x| ["1", "ON", "YES", "TRUE"].contains(&x.trim().to_uppercase().as_str())))
}

/// `$HF_ENDPOINT` without a trailing `/`, else <https://huggingface.co>.
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// `$HF_TOKEN` (or the older `$HUGGING_FACE_HUB_TOKEN`), else the token file
/// (`$HF_TOKEN_PATH`, default `$HF_HOME/token`, which `huggingface-cli login` writes).
pub fn token() -> Option<String> {
    let clean = |s: String| Some(s.trim().to_string()).filter(|t| !t.is_empty());
    for v in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
        if let Some(t) = std::env::var(v).ok().and_then(clean) {
            return Some(t);
        }
    }
    let path = std::env::var_os("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| hf_home().join("token"));
    fs::read_to_string(path).ok().and_then(clean)
}

/// What a fetch left in the cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// `owner/name`.
    pub repo: String,
    /// The commit the revision resolved to.
    pub commit: String,
    /// `…/models--owner--name/snapshots/{commit}`: what the loader opens.
    pub snapshot: PathBuf,
    pub files: Vec<FetchedFile>,
}

/// One file of a fetch.
#[derive(Debug, Clone)]
pub struct FetchedFile {
    pub name: String,
    pub bytes: u64,
    /// False when the cache had it already.
    pub downloaded: bool,
    /// Bytes a partial download had left (0: started from scratch).
    pub resumed_from: u64,
}

/// A client of the Hub's file endpoints.
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// Draw a progress bar per file on stderr (only where stderr is a terminal).
    pub progress: bool,
}

/// File metadata from a `HEAD` on `resolve/`.
struct Meta {
    etag: String,
    size: Option<u64>,
    /// Where the bytes are (the CDN for LFS files).
    location: String,
}

impl Hub {
    /// Endpoint and token from the environment ([`endpoint`], [`token`]).
    pub fn from_env() -> Hub {
        Hub::new(&endpoint(), token())
    }

    pub fn new(endpoint: &str, token: Option<String>) -> Hub {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("mexa/{}", env!("CARGO_PKG_VERSION")))
            // Sizes and ranges are of the stored bytes: no compression.
            .accept_encoding("identity")
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        Hub { endpoint: endpoint.trim_end_matches('/').to_string(), token, agent, progress: true }
    }

    /// Fetches `owner/name` at `rev` into the cache `cache`: the files `only` names, or
    /// (empty) the files the loader reads. Files already in the cache are not fetched again.
    pub fn fetch(&self, owner: &str, name: &str, rev: &str, cache: &Path, only: &[String]) -> Result<Fetched> {
        let repo_id = format!("{owner}/{name}");
        let (commit, listed) = self.revision(&repo_id, rev)?;
        let repo = cache.join(format!("models--{owner}--{name}"));
        let snapshot = repo.join("snapshots").join(&commit);
        let mut fetched: Vec<FetchedFile> = Vec::new();
        let files: Vec<String> = if only.is_empty() {
            let top: BTreeSet<String> = listed.iter().filter(|f| !f.contains('/')).cloned().collect();
            let files = pick_loader_files(&top, || {
                fetched.push(self.file(&repo_id, &repo, &commit, "model.safetensors.index.json")?);
                index_shards(&snapshot.join("model.safetensors.index.json"))
            })?;
            check_choice(&repo_id, &top, &files)?;
            files
        } else {
            for f in only {
                if !listed.contains(f) {
                    bail!(
                        "{repo_id}@{rev} has no file `{f}` (it has: {})",
                        listed.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            only.to_vec()
        };
        for f in &files {
            if !fetched.iter().any(|x| &x.name == f) {
                fetched.push(self.file(&repo_id, &repo, &commit, f)?);
            }
        }
        if rev != commit {
            write_ref(&repo, rev, &commit)?;
        }
        Ok(Fetched { repo: repo_id, commit, snapshot, files: fetched })
    }

    /// The commit `rev` names and the repository's files there.
    fn revision(&self, repo_id: &str, rev: &str) -> Result<(String, BTreeSet<String>)> {
        let url = format!("{}/api/models/{repo_id}/revision/{}", self.endpoint, quote(rev, false));
        let resp = self.call(self.agent.get(&url), &url, true)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.refusal(status, resp.headers(), &url, repo_id, rev));
        }
        let body = resp.into_body().read_to_string().with_context(|| format!("reading {url}"))?;
        let v: Value =
            serde_json::from_str(&body).with_context(|| format!("{url}: not JSON (is HF_ENDPOINT a Hub?)"))?;
        let commit = v["sha"]
            .as_str()
            .filter(|s| is_commit(s))
            .ok_or_else(|| anyhow!("{url}: no commit hash (`sha`) in the answer (is HF_ENDPOINT a Hub?)"))?
            .to_string();
        let files = v["siblings"]
            .as_array()
            .ok_or_else(|| anyhow!("{url}: no file list (`siblings`) in the answer"))?
            .iter()
            .filter_map(|s| s["rfilename"].as_str().map(str::to_string))
            .collect();
        Ok((commit, files))
    }

    /// One file at `commit`: linked from the snapshot, downloaded unless its blob is there.
    fn file(&self, repo_id: &str, repo: &Path, commit: &str, file: &str) -> Result<FetchedFile> {
        if file.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            bail!("{repo_id}: refusing the file name `{file}`");
        }
        let link = repo.join("snapshots").join(commit).join(file);
        if let Ok(m) = fs::metadata(&link) {
            // Cached (the link resolves to a blob).
            return Ok(FetchedFile { name: file.to_string(), bytes: m.len(), downloaded: false, resumed_from: 0 });
        }
        let url = format!("{}/{repo_id}/resolve/{commit}/{}", self.endpoint, quote(file, true));
        let meta = self.head(&url, repo_id, commit, file)?;
        let blobs = repo.join("blobs");
        let blob = blobs.join(&meta.etag);
        let locks = repo.parent().unwrap_or(repo).join(".locks").join(repo.file_name().unwrap_or_default());
        for d in [&blobs, &locks] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let lock_path = locks.join(format!("{}.lock", meta.etag));
        let lock = fs::File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
        let (mut downloaded, mut resumed_from) = (false, 0);
        if !blob.is_file() {
            let part = blobs.join(format!("{}.incomplete", meta.etag));
            resumed_from = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            self.download(&meta, &part, file).with_context(|| format!("downloading {file} of {repo_id} from {url}"))?;
            if let Err(e) = verify(&part, &meta.etag) {
                let _ = fs::remove_file(&part);
                return Err(e.context(format!(
                    "{file} of {repo_id} from {url}: refused (the partial file was removed; fetching again starts over)"
                )));
            }
            fs::rename(&part, &blob).with_context(|| format!("renaming {} to {}", part.display(), blob.display()))?;
            downloaded = true;
        }
        link_blob(&link, &meta.etag, file)?;
        let bytes = fs::metadata(&blob).with_context(|| format!("{}: cannot read", blob.display()))?.len();
        Ok(FetchedFile { name: file.to_string(), bytes, downloaded, resumed_from })
    }

    /// huggingface_hub's `get_hf_file_metadata`: a HEAD that follows relative redirects only.
    fn head(&self, url: &str, repo_id: &str, commit: &str, file: &str) -> Result<Meta> {
        let mut url = url.to_string();
        for _ in 0..10 {
            let resp = self.call(self.agent.head(&url), &url, true)?;
            let status = resp.status().as_u16();
            let h = resp.headers();
            let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
            let location = header("location");
            if (300..400).contains(&status) {
                if let Some(rel) = location.as_deref().filter(|l| l.starts_with('/')) {
                    url = format!("{}{rel}", origin(&url));
                    continue;
                }
            } else if status != 200 {
                return Err(self.refusal(status, h, &url, repo_id, commit).context(format!("fetching {file}")));
            }
            if header("x-repo-commit").is_none() {
                bail!("{url}: no X-Repo-Commit header, so this is not a Hugging Face Hub (check HF_ENDPOINT, proxies)");
            }
            let etag = header("x-linked-etag")
                .or_else(|| header("etag"))
                .map(|e| normalize_etag(&e))
                .filter(|e| !e.is_empty() && !e.contains('/') && !e.starts_with('.'))
                .ok_or_else(|| anyhow!("{url}: no usable ETag header, so the file cannot be checked"))?;
            let size = header("x-linked-size")
                .or_else(|| if status == 200 { header("content-length") } else { None })
                .and_then(|s| s.trim().parse().ok());
            return Ok(Meta { etag, size, location: location.unwrap_or(url) });
        }
        bail!("{url}: too many redirects")
    }

    /// Streams `meta.location` into `part`, resuming from its length, retrying cut transfers.
    fn download(&self, meta: &Meta, part: &Path, label: &str) -> Result<()> {
        let bar = self.bar(meta.size, label);
        let mut last_err = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
            }
            let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
            if meta.size == Some(have) && have > 0 {
                bar.finish_and_clear();
                return Ok(());
            }
            bar.set_position(have);
            match self.transfer(meta, part, have, &bar) {
                Ok(Transfer::Done) => {
                    bar.finish_and_clear();
                    return Ok(());
                }
                Ok(Transfer::Retry(e)) => last_err = Some(e),
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            }
        }
        bar.abandon();
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        Err(last_err.unwrap_or_else(|| anyhow!("no answer")).context(format!(
            "gave up after {ATTEMPTS} tries; {have} bytes are kept in {} and the next fetch resumes from there",
            part.display()
        )))
    }

    /// One GET: `Done`, `Retry` (a cut or a server error; what arrived is kept), or an error
    /// no retry mends.
    fn transfer(&self, meta: &Meta, part: &Path, have: u64, bar: &ProgressBar) -> Result<Transfer> {
        let url = &meta.location;
        let mut req = self.agent.get(url).config().max_redirects(10).build();
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        // The token goes to the Hub's own origin only, never to the CDN a file redirects to.
        let resp = match self.call(req, url, origin(url) == origin(&self.endpoint)) {
            Ok(r) => r,
            Err(e) => return Ok(Transfer::Retry(e)),
        };
        let status = resp.status().as_u16();
        let append = match status {
            206 => {
                let range = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !range.starts_with(&format!("bytes {have}-")) {
                    bail!("{url}: asked for bytes from {have}, the server sent `Content-Range: {range}`");
                }
                true
            }
            200 => false,
            416 if have > 0 => {
                // What is kept does not fit this file any more: start over.
                fs::remove_file(part).with_context(|| format!("removing {}", part.display()))?;
                return Ok(Transfer::Retry(anyhow!("{url}: 416 Range Not Satisfiable for bytes={have}-")));
            }
            500..=599 | 429 => return Ok(Transfer::Retry(anyhow!("{url}: HTTP {status}"))),
            _ => bail!("{url}: HTTP {status}"),
        };
        let mut out = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .with_context(|| format!("writing {}", part.display()))?;
        if !append {
            bar.set_position(0);
        }
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    out.flush().ok();
                    return Ok(Transfer::Retry(anyhow!(e).context("the connection broke off")));
                }
            };
            out.write_all(&buf[..n]).with_context(|| format!("writing {}", part.display()))?;
            bar.inc(n as u64);
        }
        out.flush().with_context(|| format!("writing {}", part.display()))?;
        let got = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        match meta.size {
            Some(size) if got < size => {
                Ok(Transfer::Retry(anyhow!("the connection ended after {got} of {size} bytes")))
            }
            Some(size) if got > size => {
                fs::remove_file(part).ok();
                bail!("{url}: received {got} bytes, the Hub announced {size}")
            }
            _ => Ok(Transfer::Done),
        }
    }

    /// Sends `req` with the token when `auth`; a transport error names the URL.
    fn call(&self, req: Request, url: &str, auth: bool) -> Result<ureq::http::Response<ureq::Body>> {
        let req = match (&self.token, auth) {
            (Some(t), true) => req.header("Authorization", format!("Bearer {t}")),
            _ => req,
        };
        req.call().map_err(|e| {
            anyhow!(e).context(format!(
                "cannot reach {url} (no network? set HF_ENDPOINT for a mirror, or HF_HUB_OFFLINE=1 to use the cache only)"
            ))
        })
    }

    /// An error for a refused request, explaining gated and private repositories as the Hub
    /// reports them (`X-Error-Code`, `X-Error-Message`).
    fn refusal(&self, status: u16, h: &ureq::http::HeaderMap, url: &str, repo_id: &str, rev: &str) -> anyhow::Error {
        let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (code, message) = (header("x-error-code"), header("x-error-message"));
        let said = if message.is_empty() { String::new() } else { format!(" (the Hub says: {message})") };
        let page = format!("{}/{repo_id}", self.endpoint);
        let token_hint = if self.token.is_some() {
            "the token mexa sent (HF_TOKEN, else the token file) has no access to it".to_string()
        } else {
            "no token was sent: set HF_TOKEN=hf_… (a read token from your Hugging Face settings) or run `huggingface-cli login`".to_string()
        };
        match (status, code.as_str()) {
            (401 | 403, "GatedRepo") => anyhow!(
                "{repo_id} is a gated model: HTTP {status} from {url}{said}. Accept its conditions on {page} with your account, then give mexa a token: {token_hint}"
            ),
            (401, _) => anyhow!(
                "{repo_id}: HTTP 401 Unauthorized from {url}{said}: the repository is gated, private or does not exist; {token_hint}"
            ),
            (403, _) => anyhow!(
                "{repo_id}: HTTP 403 Forbidden from {url}{said}: {token_hint} (for a gated model, request access on {page})"
            ),
            (404, "RevisionNotFound") => anyhow!("{repo_id} has no revision `{rev}`: HTTP 404 from {url}{said}"),
            (404, "EntryNotFound") => anyhow!("{repo_id}@{rev}: no such file: HTTP 404 from {url}{said}"),
            (404, _) => anyhow!("{repo_id}: not found on {}: HTTP 404 from {url}{said}", self.endpoint),
            (429, _) => anyhow!("{url}: HTTP 429 Too Many Requests{said}; wait and fetch again"),
            _ => anyhow!("{url}: HTTP {status}{said}"),
        }
    }

    fn bar(&self, size: Option<u64>, label: &str) -> ProgressBar {
        let target = if self.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(size, target);
        let style = ProgressStyle::with_template(
            "{msg:30!} {bar:30} {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}",
        )
        .expect("a valid template");
        bar.set_style(style);
        bar.set_message(label.to_string());
        bar
    }
}

/// What one GET achieved.
enum Transfer {
    Done,
    Retry(anyhow::Error),
}

/// A HEAD or GET request (no body).
type Request = ureq::RequestBuilder<ureq::typestate::WithoutBody>;

/// A loader-file choice a download can act on: something to load, and one GGUF at most.
fn check_choice(repo_id: &str, top: &BTreeSet<String>, files: &[String]) -> Result<()> {
    let ggufs: Vec<&String> = files.iter().filter(|f| f.ends_with(".gguf")).collect();
    if files.is_empty() || (!top.contains("config.json") && ggufs.is_empty()) {
        let list: Vec<&str> = top.iter().map(String::as_str).collect();
        bail!(
            "{repo_id} has neither a config.json (Hugging Face model folder) nor a .gguf file at its top level (files: {})",
            list.join(", ")
        );
    }
    if top.contains("config.json") && !files.iter().any(|f| f.ends_with(".safetensors")) {
        bail!(
            "{repo_id} has a config.json but no safetensors weights (model.safetensors or an index); mexa reads safetensors only"
        );
    }
    if ggufs.len() > 1 {
        let names: Vec<&str> = ggufs.iter().map(|s| s.as_str()).collect();
        bail!(
            "{repo_id} holds {} GGUF files ({}): name the one to use, e.g. `mexa fetch {repo_id} --file {}`; `model: {repo_id}` then finds it in the cache",
            names.len(),
            names.join(", "),
            names[0]
        );
    }
    Ok(())
}

/// Whether `s` is a full commit hash (40 hex digits).
fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `"abc"` or `W/"abc"` → `abc`, as huggingface_hub normalises ETags.
fn normalize_etag(e: &str) -> String {
    e.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// Percent-encodes `s` for a URL path (RFC 3986 unreserved characters stay; `/` too when
/// `keep_slash`), as huggingface_hub's `quote` does.
fn quote(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[start..].find('/') {
        Some(i) => &url[..start + i],
        None => url,
    }
}

/// The two digests the Hub's ETags are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Digest {
    /// sha256 of the bytes: an LFS file's ETag (`X-Linked-Etag`).
    Sha256,
    /// git's blob sha1 (`"blob {len}\0"` + bytes): a small file's ETag.
    GitSha1,
}

/// The hex digest of a file.
pub fn digest(path: &Path, kind: Digest) -> Result<String> {
    let bytes = match kind {
        Digest::Sha256 => hash_file::<sha2::Sha256>(path, None)?,
        Digest::GitSha1 => {
            let len = fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?.len();
            hash_file::<sha1::Sha1>(path, Some(format!("blob {len}\0").as_bytes()))?
        }
    };
    Ok(bytes.iter().map(|x| format!("{x:02x}")).collect())
}

/// Checks a downloaded file against its ETag: 64 hex digits are the sha256 of an LFS file,
/// 40 are git's blob sha1 of a small one. Other ETags cannot be checked and are accepted (a
/// Hub does not send them).
pub fn verify(path: &Path, etag: &str) -> Result<()> {
    let all_hex = etag.bytes().all(|b| b.is_ascii_hexdigit());
    let kind = match etag.len() {
        64 if all_hex => Digest::Sha256,
        40 if all_hex => Digest::GitSha1,
        _ => return Ok(()),
    };
    let got = digest(path, kind)?;
    if got != etag.to_ascii_lowercase() {
        let name = if kind == Digest::Sha256 { "sha256" } else { "git blob sha1" };
        bail!("checksum mismatch: the Hub's ETag says {name} {etag}, the bytes received hash to {got}");
    }
    Ok(())
}

fn hash_file<D: sha1::Digest>(path: &Path, prefix: Option<&[u8]>) -> Result<Vec<u8>> {
    let mut f = fs::File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut d = D::new();
    if let Some(p) = prefix {
        d.update(p);
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("{}: cannot read", path.display()))?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    Ok(d.finalize().to_vec())
}

/// `snapshots/{commit}/{file}` → `../../blobs/{etag}` (relative, one `../` more per folder
/// in `file`), replacing what was there.
fn link_blob(link: &Path, etag: &str, file: &str) -> Result<()> {
    let dir = link.parent().expect("a snapshot file has a folder");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = format!("{}blobs/{etag}", "../".repeat(file.matches('/').count() + 2));
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).with_context(|| format!("replacing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(&target, link).with_context(|| format!("linking {} to {target}", link.display()))
}

/// `refs/{rev}` ← `commit`, written atomically.
fn write_ref(repo: &Path, rev: &str, commit: &str) -> Result<()> {
    let path = repo.join("refs").join(rev);
    if fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
        return Ok(());
    }
    let dir = path.parent().expect("refs/ is a folder");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp =
        dir.join(format!(".{}.{}.tmp", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    fs::write(&tmp, commit).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_urls_and_origins_as_huggingface_hub_writes_them() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(quote("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(quote("sub dir/a+b.json", true), "sub%20dir/a%2Bb.json");
        assert_eq!(origin("http://127.0.0.1:8080/o/n/resolve/x"), "http://127.0.0.1:8080");
    }

    #[test]
    fn checksums_are_the_hubs_etags() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, "hello\n").unwrap();
        // `git hash-object` of "hello\n", and sha256sum of it.
        verify(&p, "ce013625030ba8dba906f756967f9e9ca394464a").unwrap();
        verify(&p, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03").unwrap();
        let e = verify(&p, "0000000000000000000000000000000000000000").unwrap_err().to_string();
        assert!(e.contains("checksum mismatch") && e.contains("ce013625"), "{e}");
    }
}
