//! The one checked way mexa creates what it writes: a file or folder is created exclusively
//! (O_EXCL, which never follows a link) under a name nobody can predict, or, inside an output
//! folder, replaced instead of written through; a folder on the way that is a link is refused.
//! So a link or file planted under a guessable name (in a shared store, an output folder)
//! cannot redirect a write. Errors name the path.
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

fn err(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {what}", path.display()))
}

/// 16 hex digits no other process can predict: SipHash keyed by std's per-process random keys
/// (seeded from the operating system) over a counter, the time and the process id.
pub fn unguessable() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let h = std::collections::hash_map::RandomState::new().hash_one((
        N.fetch_add(1, Ordering::Relaxed),
        nanos,
        std::process::id(),
    ));
    format!("{h:016x}")
}

/// Creates `path` as a new file for writing; fails if anything (a file, a link) has that name.
pub fn create_new(path: &Path) -> io::Result<File> {
    File::options().write(true).create_new(true).open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            err(path, "already exists (a planted file or link?); refused, nothing was written")
        } else {
            err(path, format!("cannot create ({e})"))
        }
    })
}

/// Writes `bytes` to a new file `path` ([`create_new`]) and syncs it; on failure (a full
/// disk) the partial file is removed.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = create_new(path)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| {
        let _ = fs::remove_file(path);
        err(path, format!("cannot write ({e}); the partial file was removed"))
    })
}

/// Replaces `dest` atomically with `bytes`: a new file `<dest>.tmp.<unguessable>` beside it,
/// renamed onto `dest` (rename replaces a link, never writes through it). The temporary file
/// is removed when anything fails.
pub fn replace(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", unguessable()));
    let tmp = dest.with_file_name(name);
    write_new(&tmp, bytes)?;
    fs::rename(&tmp, dest).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(dest, format!("cannot replace ({e})"))
    })
}

/// Makes sure `dir` is a real folder: creates it when absent (its parent must exist),
/// refuses it when it is a link or not a folder.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => {
            Err(err(dir, "is a symbolic link; refused (nothing is written through a link)"))
        }
        Ok(_) => Err(err(dir, "exists and is not a folder")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(dir) {
            Ok(()) => Ok(()),
            // Another process made it meanwhile: check what it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => ensure_dir(dir),
            Err(e) => Err(err(dir, format!("cannot create ({e})"))),
        },
        Err(e) => Err(err(dir, format!("cannot read ({e})"))),
    }
}

/// A new folder `parent/<prefix>.<unguessable>`, created exclusively (never an existing
/// path, so nothing planted can stand in for it).
pub fn fresh_dir(parent: &Path, prefix: &str) -> io::Result<PathBuf> {
    let prefix: String = prefix.chars().take(80).collect();
    for _ in 0..16 {
        let dir = parent.join(format!("{prefix}.{}", unguessable()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err(&dir, format!("cannot create ({e})"))),
        }
    }
    Err(err(parent, "could not create a fresh folder in it"))
}

/// Creates `out/rel` for writing (`rel`: `/`-separated plain names, no `..`) without
/// following a link anywhere below `out`: missing folders are created, a folder on the way
/// that is a link is refused, and an existing file (or link) of that name is replaced, never
/// written through. `out` itself is created if missing.
pub fn create_inside(out: &Path, rel: &str) -> io::Result<File> {
    fs::create_dir_all(out).map_err(|e| err(out, format!("cannot create ({e})")))?;
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(err(&out.join(rel), "not a plain relative path; refused"));
    }
    let mut dir = out.to_path_buf();
    for part in &parts[..parts.len() - 1] {
        dir.push(part);
        ensure_dir(&dir)?;
    }
    let p = dir.join(parts[parts.len() - 1]);
    if let Ok(m) = fs::symlink_metadata(&p) {
        if m.file_type().is_dir() {
            return Err(err(&p, "is a folder"));
        }
        fs::remove_file(&p).map_err(|e| err(&p, format!("cannot replace ({e})")))?;
    }
    create_new(&p)
}

/// [`create_inside`], then writes `bytes`.
pub fn write_inside(out: &Path, rel: &str, bytes: &[u8]) -> io::Result<()> {
    let p = out.join(rel);
    create_inside(out, rel)?.write_all(bytes).map_err(|e| err(&p, format!("cannot write ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mexa-core-write-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn nothing_is_written_through_a_planted_link() {
        let d = tmp("links");
        let victim = d.join("victim");
        fs::write(&victim, "precious").unwrap();
        // A link at the exact name: create_new refuses, replace and write_inside replace it.
        let planted = d.join("planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let e = write_new(&planted, b"x").unwrap_err().to_string();
        assert!(e.contains("already exists") && e.contains("planted"), "{e}");
        replace(&planted, b"new").unwrap();
        assert_eq!(fs::read(&planted).unwrap(), b"new");
        assert!(!fs::symlink_metadata(&planted).unwrap().file_type().is_symlink());
        let out = d.join("out");
        fs::create_dir_all(out.join("a")).unwrap();
        std::os::unix::fs::symlink(&victim, out.join("a/f")).unwrap();
        write_inside(&out, "a/f", b"report").unwrap();
        assert_eq!(fs::read(out.join("a/f")).unwrap(), b"report");
        // A folder on the way that is a link is refused.
        std::os::unix::fs::symlink(&d, out.join("b")).unwrap();
        let e = write_inside(&out, "b/victim", b"x").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(write_inside(&out, "../victim", b"x").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        // Fresh folders and names never repeat.
        let (a, b) = (fresh_dir(&d, "run").unwrap(), fresh_dir(&d, "run").unwrap());
        assert_ne!(a, b);
        assert_ne!(unguessable(), unguessable());
        let e = ensure_dir(&out.join("b")).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }
}
