//! A local stand-in for the Hugging Face Hub, for download tests without internet: an
//! HTTP/1.1 server on 127.0.0.1 that serves a folder in the Hub's URL layout,
//! `ROOT/{owner}/{name}/resolve/{revision}/{file}` (a branch is a symlink to its commit's
//! folder; a commit's folder may link to a model folder elsewhere), with the headers huggingface_hub's client reads:
//!
//! - `GET /api/models/{owner}/{name}/revision/{rev}`: `{"sha": commit, "siblings": [{"rfilename"}]}`
//! - `HEAD|GET /{owner}/{name}/resolve/{rev}/{file}`: `X-Repo-Commit`; a small file answers
//!   200 with `ETag` = git's blob sha1 and `Content-Length`; an LFS file (.safetensors, .gguf,
//!   .bin) answers 302 to `/cdn/…` (an absolute URL, as the Hub's CDN redirect) with
//!   `X-Linked-Etag` = sha256 and `X-Linked-Size`
//! - `GET /cdn/{owner}/{name}/{commit}/{file}` (on 127.0.0.2): the bytes, `Range: bytes=N-`
//!   answered 206
//!
//! Faults a test switches on: cut the next bodies after a number of bytes (headers announce
//! the full length, then the connection closes), announce a wrong ETag for a file, require a
//! token (a gated repository: 401 with `X-Error-Code: GatedRepo`, as the Hub answers).
//! Every request is logged (method, path, Range, Authorization).
#![allow(dead_code)]
use mexa_store::download::{digest, Digest};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Cut this many upcoming file bodies after `cut_after` bytes.
    pub cuts: usize,
    pub cut_after: u64,
    /// Files (repo-relative names) whose announced ETag is wrong.
    pub wrong_etag: BTreeSet<String>,
    /// A gated repository: requests must carry `Authorization: Bearer {token}`.
    pub token: Option<String>,
}

pub struct HubServer {
    pub url: String,
    pub root: PathBuf,
    pub log: Arc<Mutex<Vec<Req>>>,
    pub faults: Arc<Mutex<Faults>>,
}

impl HubServer {
    /// Serves `root` on a free port of 127.0.0.1 until the process ends; the "CDN" that LFS
    /// files redirect to listens on 127.0.0.2 (another origin, as the Hub's CDN is).
    pub fn start(root: &Path) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.2:0").unwrap_or_else(|_| TcpListener::bind("127.0.0.1:0").unwrap());
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cdn_url = format!("http://{}", cdn.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let ctx = Arc::new(Ctx { cdn_url, root: root.to_path_buf(), log: log.clone(), faults: faults.clone() });
        for l in [listener, cdn] {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                for stream in l.incoming().flatten() {
                    let ctx = ctx.clone();
                    std::thread::spawn(move || {
                        let _ = serve(&ctx, stream);
                    });
                }
            });
        }
        HubServer { url, root: root.to_path_buf(), log, faults }
    }

    /// Serves the model folder `dir` as `owner/name` at `commit`, `main` pointing at it.
    pub fn link_repo(&self, owner: &str, name: &str, commit: &str, dir: &Path) {
        let base = self.root.join(owner).join(name).join("resolve");
        std::fs::create_dir_all(&base).unwrap();
        std::os::unix::fs::symlink(dir, base.join(commit)).unwrap();
        std::os::unix::fs::symlink(commit, base.join("main")).unwrap();
    }

    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    pub fn set(&self, f: Faults) {
        *self.faults.lock().unwrap() = f;
    }

    /// Writes `owner/name` at `commit` with `files` (name → bytes) and points `main` at it.
    pub fn add_repo(&self, owner: &str, name: &str, commit: &str, files: &[(&str, Vec<u8>)]) {
        let base = self.root.join(owner).join(name).join("resolve");
        let dir = base.join(commit);
        for (f, bytes) in files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let main = base.join("main");
        let _ = std::fs::remove_file(&main);
        std::os::unix::fs::symlink(commit, main).unwrap();
    }
}

struct Ctx {
    cdn_url: String,
    root: PathBuf,
    log: Arc<Mutex<Vec<Req>>>,
    faults: Arc<Mutex<Faults>>,
}

fn is_lfs(file: &str) -> bool {
    [".safetensors", ".gguf", ".bin"].iter().any(|e| file.ends_with(e))
}

fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8], head_only: bool) {
    let mut h = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    let has_len = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        h.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    h.push_str("\r\n");
    let _ = s.write_all(h.as_bytes());
    if !head_only {
        let _ = s.write_all(body);
    }
}

fn serve(ctx: &Ctx, mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let (mut range, mut auth) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => auth = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    ctx.log.lock().unwrap().push(Req {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
        auth: auth.clone(),
    });
    let head = method == "HEAD";
    let faults = ctx.faults.lock().unwrap().clone();
    let segs: Vec<String> = path.trim_start_matches('/').split('/').map(unquote).collect();
    let is_cdn = segs.first().map(String::as_str) == Some("cdn");
    if let Some(t) = &faults.token {
        if !is_cdn && auth.as_deref() != Some(&format!("Bearer {t}")) {
            let repo = if segs.first().map(String::as_str) == Some("api") {
                segs[2..4].join("/")
            } else {
                segs[..2].join("/")
            };
            let msg = format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in.");
            respond(
                &mut stream,
                "401 Unauthorized",
                &[("X-Error-Code".into(), "GatedRepo".into()), ("X-Error-Message".into(), msg)],
                b"",
                head,
            );
            return Ok(());
        }
    }
    // /api/models/{o}/{n}/revision/{rev}
    if segs.len() == 6 && segs[0] == "api" && segs[1] == "models" && segs[4] == "revision" {
        let base = ctx.root.join(&segs[2]).join(&segs[3]).join("resolve");
        let Some(commit) = commit_of(&base, &segs[5]) else {
            respond(&mut stream, "404 Not Found", &[("X-Error-Code".into(), "RevisionNotFound".into())], b"", head);
            return Ok(());
        };
        let real = base.join(&commit);
        let mut files = Vec::new();
        list(&real, &real, &mut files);
        files.sort();
        let siblings: Vec<String> = files.iter().map(|f| format!("{{\"rfilename\": \"{f}\"}}")).collect();
        let body = format!(
            "{{\"id\": \"{}/{}\", \"sha\": \"{commit}\", \"siblings\": [{}]}}",
            segs[2],
            segs[3],
            siblings.join(", ")
        );
        respond(&mut stream, "200 OK", &[("Content-Type".into(), "application/json".into())], body.as_bytes(), head);
        return Ok(());
    }
    // /{o}/{n}/resolve/{rev}/{file...} and /cdn/{o}/{n}/{commit}/{file...}
    let (o, n, rev, file) = if is_cdn && segs.len() >= 5 {
        (&segs[1], &segs[2], &segs[3], segs[4..].join("/"))
    } else if segs.len() >= 5 && segs[2] == "resolve" {
        (&segs[0], &segs[1], &segs[3], segs[4..].join("/"))
    } else {
        respond(&mut stream, "404 Not Found", &[("X-Error-Code".into(), "RepoNotFound".into())], b"", head);
        return Ok(());
    };
    let dir = ctx.root.join(o).join(n).join("resolve").join(rev);
    let commit = commit_of(&ctx.root.join(o).join(n).join("resolve"), rev);
    let p = dir.join(&file);
    let Some(commit) = commit.filter(|_| p.is_file()) else {
        respond(&mut stream, "404 Not Found", &[("X-Error-Code".into(), "EntryNotFound".into())], b"", head);
        return Ok(());
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&p)?.read_to_end(&mut bytes)?;
    let lfs = is_lfs(&file);
    let mut etag = digest(&p, if lfs { Digest::Sha256 } else { Digest::GitSha1 }).unwrap();
    if faults.wrong_etag.contains(&file) {
        etag = etag.chars().rev().collect();
    }
    let mut headers = vec![("X-Repo-Commit".to_string(), commit.clone())];
    if lfs && !is_cdn {
        headers.push(("X-Linked-Etag".into(), format!("\"{etag}\"")));
        headers.push(("X-Linked-Size".into(), bytes.len().to_string()));
        headers.push(("ETag".into(), "\"pointer-file-etag\"".into()));
        headers.push(("Location".into(), format!("{}/cdn/{o}/{n}/{commit}/{file}?sig=x", ctx.cdn_url)));
        respond(&mut stream, "302 Found", &headers, b"", head);
        return Ok(());
    }
    headers.push(("ETag".into(), format!("\"{etag}\"")));
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    if start > bytes.len() {
        respond(&mut stream, "416 Range Not Satisfiable", &headers, b"", head);
        return Ok(());
    }
    let status = if range.is_some() {
        headers
            .push(("Content-Range".into(), format!("bytes {start}-{}/{}", bytes.len().saturating_sub(1), bytes.len())));
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let body = &bytes[start..];
    if !head && faults.cuts > 0 {
        ctx.faults.lock().unwrap().cuts -= 1;
        headers.push(("Content-Length".into(), body.len().to_string()));
        let cut = (faults.cut_after as usize).min(body.len());
        respond(&mut stream, status, &headers, &body[..cut], false);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return Ok(());
    }
    respond(&mut stream, status, &headers, body, head);
    Ok(())
}

/// The commit a revision names: a branch is a symlink to its commit's folder (which may
/// itself link to a model folder elsewhere); a commit is a folder or such a link.
fn commit_of(base: &Path, rev: &str) -> Option<String> {
    let p = base.join(rev);
    let meta = std::fs::symlink_metadata(&p).ok()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&p).ok()?;
        if target.components().count() == 1 {
            return Some(target.to_string_lossy().into_owned());
        }
    }
    p.is_dir().then(|| rev.to_string())
}

fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            list(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}
