//! Content hashes of external input files and directories, cached by path, size, mtime,
//! ctime and inode so a no-op rerun does not rehash gigabytes.
//!
//! The ctime is what makes the stamp trustworthy: size, mtime and inode can all be restored
//! by an ordinary user (`tar -x` of an archive built with a fixed `--mtime`, once the old
//! file's inode is reused, or `touch -d`), but every write, truncate or `utimes` sets the
//! ctime to the current time, and nothing but the kernel can set it.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    /// Cache files written before the ctime was stamped have none: their entries never
    /// match, so each file is rehashed once.
    #[serde(default)]
    ctime_ns: i128,
    inode: u64,
    hash: String,
}

/// Hashes files with blake3, remembering results in a JSON file (the store's
/// `cache/file-hashes.json`). The cache is advisory: a lost or stale entry only costs a rehash.
pub struct FileHasher {
    cache_path: Option<PathBuf>,
    entries: Mutex<BTreeMap<String, Stamp>>,
    dirty: Mutex<bool>,
}

impl FileHasher {
    /// A hasher backed by the cache file at `cache_path` (created on [`FileHasher::save`]).
    pub fn new(cache_path: Option<PathBuf>) -> Self {
        let entries = cache_path
            .as_ref()
            .and_then(|p| mexa_core::file::read(p, mexa_core::FileKind::StoreMeta).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self { cache_path, entries: Mutex::new(entries), dirty: Mutex::new(false) }
    }

    /// blake3 hex of a file's bytes, or for a directory, of the sorted list of its files'
    /// relative paths and hashes (hidden files skipped). Symlinks are followed.
    pub fn hash_path(&self, path: &Path) -> Result<String> {
        let meta = fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_files(path, path, &mut files)?;
            files.sort();
            let mut h = blake3::Hasher::new();
            h.update(b"dir\0");
            for rel in files {
                let fh = self.hash_path(&path.join(&rel))?;
                h.update(rel.as_bytes());
                h.update(b"\0");
                h.update(fh.as_bytes());
                h.update(b"\n");
            }
            return Ok(h.finalize().to_hex().to_string());
        }
        let abs = fs::canonicalize(path)?.to_string_lossy().into_owned();
        let stamp = |hash: String| Stamp {
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            inode: meta.ino(),
            hash,
        };
        if let Some(s) = self.entries.lock().unwrap().get(&abs) {
            if *s == stamp(s.hash.clone()) {
                return Ok(s.hash.clone());
            }
        }
        let hash = hash_file(path)?;
        self.entries.lock().unwrap().insert(abs, stamp(hash.clone()));
        *self.dirty.lock().unwrap() = true;
        Ok(hash)
    }

    /// Writes the cache back if anything was added: atomically, through a new temporary file
    /// of an unguessable name (never through a planted link), which is removed if the write
    /// fails (a full disk).
    pub fn save(&self) -> Result<()> {
        let Some(p) = &self.cache_path else { return Ok(()) };
        if !*self.dirty.lock().unwrap() {
            return Ok(());
        }
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec(&*self.entries.lock().unwrap())?;
        mexa_core::write::replace(p, &bytes).context("saving the file-hash cache")?;
        Ok(())
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let e = e?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let p = e.path();
        let meta = fs::metadata(&p).with_context(|| format!("{}: cannot read (a dangling symlink?)", p.display()))?;
        if meta.is_dir() {
            collect_files(root, &p, out)?;
        } else if meta.is_file() {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        } else {
            bail!("{}: not a regular file (a FIFO, socket or device cannot be input)", p.display());
        }
    }
    Ok(())
}

/// blake3 hex of a file's bytes, streamed.
pub fn hash_file(path: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is then refused below.
    let mut f = fs::File::options()
        .read(true)
        .custom_flags(0o4000)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    if !f.metadata()?.is_file() {
        bail!("{}: not a regular file (a FIFO, socket or device cannot be input)", path.display());
    }
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_hashes_are_reused_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (file, cache) = (dir.path().join("model.bin"), dir.path().join("cache.json"));
        fs::write(&file, b"weights v1").unwrap();
        let h = FileHasher::new(Some(cache.clone()));
        let first = h.hash_path(&file).unwrap();
        assert_eq!(first, blake3::hash(b"weights v1").to_hex().to_string());
        h.save().unwrap();
        // Plant a different hash in the cache: a reader that trusts the cache returns it,
        // which shows the file was not read again.
        let text = fs::read_to_string(&cache).unwrap().replace(&first, "planted");
        fs::write(&cache, text).unwrap();
        assert_eq!(FileHasher::new(Some(cache.clone())).hash_path(&file).unwrap(), "planted");
        // Same size and the old mtime restored (what `tar -x` of a reproducible archive does):
        // the ctime still changed, so the file is read again.
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().write(true).truncate(true).open(&file).unwrap();
            f.write_all(b"weights v0").unwrap();
            f.set_times(fs::FileTimes::new().set_modified(mtime)).unwrap();
        }
        assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), mtime);
        assert_eq!(
            FileHasher::new(Some(cache.clone())).hash_path(&file).unwrap(),
            blake3::hash(b"weights v0").to_hex().to_string()
        );
        // A change of content (and so size and mtime) is noticed.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&file, b"weights v2!").unwrap();
        assert_eq!(
            FileHasher::new(Some(cache)).hash_path(&file).unwrap(),
            blake3::hash(b"weights v2!").to_hex().to_string()
        );
    }

    #[test]
    fn directory_hash_covers_names_and_contents() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("eng.txt"), "a\n").unwrap();
        fs::write(d.path().join("fra.txt"), "b\n").unwrap();
        let h = FileHasher::new(None);
        let a = h.hash_path(d.path()).unwrap();
        fs::rename(d.path().join("fra.txt"), d.path().join("deu.txt")).unwrap();
        assert_ne!(a, h.hash_path(d.path()).unwrap(), "a renamed file changes the hash");
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("eng.txt"), "a\n").unwrap();
        fs::write(other.path().join("deu.txt"), "b\n").unwrap();
        assert_eq!(
            h.hash_path(d.path()).unwrap(),
            h.hash_path(other.path()).unwrap(),
            "the hash does not depend on where the directory is"
        );
    }
}
