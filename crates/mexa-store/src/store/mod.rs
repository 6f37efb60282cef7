//! The on-disk store: objects, their checked reads and atomic writes, refs, locks. Verifying
//! and quarantine are in `verify.rs`, merging stores in `import.rs`, gc in `../gc.rs`.
use crate::filehash::hash_file;
use crate::key::{key_of, KeySpec};
use crate::table::{write_parquet, TableSummary};
use anyhow::{bail, Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use mexa_core::file::{self, FileKind};
use mexa_core::write;
use mexa_core::Key;
use serde::Serialize;
use serde_json::Value;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod error;
mod import;
mod manifest;
mod verify;

pub use error::StoreError;
pub use manifest::{mark_sharded, shard_spec, Cost, Manifest, ObjectInfo, Provenance, FORMAT_VERSION};
pub use verify::VerifyReport;

/// A snapshot of which refs exist (see [`Store::refs`]).
pub struct Refs<'a> {
    store: &'a Store,
    names: std::collections::HashSet<String>,
}

impl Refs<'_> {
    pub fn get(&self, node_id: &str) -> Option<Value> {
        let path = self.store.ref_path(node_id);
        let name = path.file_name()?.to_string_lossy();
        if self.names.contains(name.as_ref()) {
            self.store.read_ref(node_id)
        } else {
            None
        }
    }
}

/// The top-level folders of a store (see the crate doc for what each holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    Objects,
    Refs,
    Locks,
    Tmp,
    Cache,
    Runs,
    Quarantine,
    Slurm,
}

impl Folder {
    pub const ALL: [Folder; 8] = [
        Folder::Objects,
        Folder::Refs,
        Folder::Locks,
        Folder::Tmp,
        Folder::Cache,
        Folder::Runs,
        Folder::Quarantine,
        Folder::Slurm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Folder::Objects => "objects",
            Folder::Refs => "refs",
            Folder::Locks => "locks",
            Folder::Tmp => "tmp",
            Folder::Cache => "cache",
            Folder::Runs => "runs",
            Folder::Quarantine => "quarantine",
            Folder::Slurm => "slurm",
        }
    }

    /// Created by [`Store::open`]; the others when first used.
    fn always(self) -> bool {
        !matches!(self, Folder::Runs | Folder::Quarantine | Folder::Slurm)
    }
}

/// A store rooted at a directory. Cheap to clone; all state is on disk.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive lock on one key, released on drop or when the holding process dies
/// (flock(2) locks belong to the open file description, which the kernel closes on exit).
pub struct KeyLock {
    _file: File,
}

/// What planning sees of a key ([`Store::state`]).
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Missing,
    Corrupt(String),
    /// A sharded node with a shard missing or corrupt.
    Incomplete,
    Complete,
}

/// A table as read from the store, with the manifest it was checked against.
pub struct Read {
    pub manifest: Manifest,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`. Every store folder that exists is
    /// checked to be a real folder ([`Store::folder`]), those always needed are created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).with_context(|| format!("cannot create the store {}", root.display()))?;
        let store = Self { root };
        for f in Folder::ALL {
            if f.always() || fs::symlink_metadata(store.root.join(f.name())).is_ok() {
                store.folder(f)?;
            }
        }
        Ok(store)
    }

    /// The store folder `f`, created if missing: the one place a top-level folder of the store
    /// is made or checked. A folder that is a link elsewhere (planted in a shared store, to
    /// make gc delete, verify move or a run write outside it) is refused, so everything mexa
    /// writes, moves or deletes stays inside the store.
    pub fn folder(&self, f: Folder) -> Result<PathBuf> {
        let p = self.root.join(f.name());
        write::ensure_dir(&p)
            .map_err(|e| anyhow::anyhow!("{e} (a store folder; everything mexa writes must stay inside the store)"))
            .with_context(|| format!("store {}", self.root.display()))?;
        Ok(p)
    }

    /// Opens a store that must already exist (commands that only read never create one).
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !Self::exists(&root) {
            bail!(
                "no store at {}: a store is created by `mexa run`; pick another with --store or MEXA_STORE (a pipeline's `store:` names its own)",
                root.display()
            );
        }
        Self::open(root)
    }

    /// True when `root` holds a store (its `objects` folder).
    pub fn exists(root: &Path) -> bool {
        root.join("objects").is_dir()
    }

    /// A store that does not exist (yet), for planning against: every artifact reads as
    /// missing and nothing is created.
    pub fn absent(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `objects/<2 digits>/<key>`: a [`Key`] can name nothing else.
    pub fn object_dir(&self, key: &Key) -> PathBuf {
        self.root.join("objects").join(key.fanout()).join(key.as_str())
    }

    pub fn data_path(&self, key: &Key) -> PathBuf {
        self.object_dir(key).join("data.parquet")
    }

    fn manifest_path(&self, key: &Key) -> PathBuf {
        self.object_dir(key).join("manifest.json")
    }

    /// True when an object folder with a manifest file is filed under this key (whether it
    /// is sound is [`Store::manifest`]'s question).
    pub fn contains(&self, key: &Key) -> bool {
        fs::symlink_metadata(self.manifest_path(key)).map(|m| m.file_type().is_file()).unwrap_or(false)
    }

    /// The manifest filed under `key`, parsed but not checked (for reporting what a corrupt
    /// artifact claims to be).
    pub fn manifest_unchecked(&self, key: &Key) -> Result<Manifest, StoreError> {
        let p = self.manifest_path(key);
        if !self.contains(key) {
            return Err(StoreError::Missing { key: key.clone(), store: self.root.clone() });
        }
        let bytes = file::read(&p, FileKind::StoreMeta).map_err(|e| StoreError::Io {
            key: key.clone(),
            path: p.clone(),
            error: e,
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::corrupt(key, None, format!("its manifest is not valid ({e})")))
    }

    /// The manifest of the artifact `key`, checked to be that artifact's: it names the key,
    /// its key spec hashes to it, its seal holds and the keys it lists are well formed
    /// ([`Manifest::mismatch`]). Every read of the store goes through here, so an artifact
    /// copied into another key's folder or an edited manifest is never served.
    pub fn manifest(&self, key: &Key) -> Result<Manifest, StoreError> {
        let m = self.manifest_unchecked(key)?;
        match m.mismatch(key) {
            None => Ok(m),
            Some(why) => Err(StoreError::corrupt(key, Some(&m.label), why)),
        }
    }

    /// Reads an artifact's table after checking its manifest ([`Store::manifest`]) and the
    /// data's blake3 against it, so a corrupt artifact is never served or read downstream.
    pub fn read(&self, key: &Key) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let r = self.read_checked(key)?;
        Ok((r.schema, r.batches))
    }

    /// [`Store::read`] with the manifest it was checked against (its `file_hash` is the hash
    /// of the bytes decoded).
    pub fn read_checked(&self, key: &Key) -> Result<Read> {
        let m = self.manifest(key)?;
        let path = self.data_path(key);
        let bytes = file::read(&path, FileKind::StoreData)
            .map_err(|e| StoreError::corrupt(key, Some(&m.label), format!("data.parquet: {e}")))?;
        let h = blake3::hash(&bytes).to_hex().to_string();
        if h != m.file_hash {
            let why = format!(
                "data.parquet hashes to {}…, its manifest says {}…",
                &h[..12],
                m.file_hash.get(..12).unwrap_or(&m.file_hash)
            );
            return Err(StoreError::corrupt(key, Some(&m.label), why).into());
        }
        let (schema, batches) = crate::table::read_parquet_bytes(bytes, &path)?;
        Ok(Read { manifest: m, schema, batches })
    }

    /// The shards of a sharded node's index artifact, (name, key) in index order, each checked
    /// to be the node's own: its key is the one its name, the node's key, kind and version
    /// give (`shard_spec`), and the index lists exactly the keys its manifest does. An index
    /// whose rows name other shards (swapped names, another node's shards) is corrupt. Empty
    /// for an artifact that is not sharded.
    pub fn shard_index(&self, key: &Key) -> Result<Vec<(String, Key)>> {
        let r = self.read_checked(key)?;
        self.index_rows(key, &r)
    }

    /// [`Store::shard_index`] of an index already read.
    pub fn index_rows(&self, key: &Key, r: &Read) -> Result<Vec<(String, Key)>> {
        if !r.manifest.is_sharded() {
            return Ok(vec![]);
        }
        let corrupt = |why: String| StoreError::corrupt(key, Some(&r.manifest.label), why);
        let col = |b: &RecordBatch, name: &str| -> Result<arrow::array::StringArray, StoreError> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>().cloned())
                .ok_or_else(|| corrupt(format!("its shard index has no text column `{name}`")))
        };
        let mut out = Vec::new();
        for b in &r.batches {
            let (names, keys) = (col(b, "shard")?, col(b, "shard_key")?);
            for i in 0..b.num_rows() {
                let k = Key::parse(keys.value(i)).map_err(|e| corrupt(format!("shard index row {i}: {e}")))?;
                let name = names.value(i);
                let own = key_of(&shard_spec(r.manifest.stage_kind(), r.manifest.spec.version, key, name));
                if k != own {
                    return Err(corrupt(format!(
                        "shard index row {i} names shard `{name}` with the key {}, which is not that shard's ({})",
                        k.short(),
                        own.short()
                    ))
                    .into());
                }
                out.push((name.to_string(), k));
            }
        }
        let listed: Vec<Key> = out.iter().map(|p| p.1.clone()).collect();
        if listed != r.manifest.shard_keys().unwrap_or_default() {
            return Err(corrupt("its shard index and its manifest list different shards".into()).into());
        }
        Ok(out)
    }

    /// True when the artifact is present and sound on a cheap look and, for a sharded node,
    /// so is every shard its index lists ([`Store::state`]). Planning treats anything else as
    /// not cached.
    pub fn complete(&self, key: &Key) -> bool {
        matches!(self.state(key), State::Complete)
    }

    /// What planning sees of a key, without reading data: missing; corrupt (the manifest is
    /// not the artifact's, or the data file is not a regular file of the size the manifest
    /// records — a truncated or replaced file; a same-size flip is caught when read or by
    /// `verify`); incomplete (a shard gone or corrupt); or complete.
    pub fn state(&self, key: &Key) -> State {
        let one = |k: &Key| -> Result<Manifest, StoreError> {
            let m = self.manifest(k)?;
            let size =
                fs::symlink_metadata(self.data_path(k)).ok().filter(|md| md.file_type().is_file()).map(|md| md.len());
            if size != Some(m.bytes) {
                let why = match size {
                    None => "its data.parquet is missing or not a regular file".to_string(),
                    Some(n) => format!("its data.parquet has {n} bytes, its manifest says {}", m.bytes),
                };
                return Err(StoreError::corrupt(k, Some(&m.label), why));
            }
            Ok(m)
        };
        match one(key) {
            Err(e) if e.is_missing() => State::Missing,
            Err(StoreError::Corrupt { why, .. }) => State::Corrupt(why),
            Err(e) => State::Corrupt(e.to_string()),
            Ok(m) => {
                if m.shard_keys().unwrap_or_default().iter().all(|s| one(s).is_ok()) {
                    State::Complete
                } else {
                    State::Incomplete
                }
            }
        }
    }

    /// Moves an artifact that fails [`Store::check`] to quarantine (a run that found it
    /// corrupt while reading it: the next run recomputes it). A sound artifact is left alone.
    pub fn quarantine_if_corrupt(&self, key: &Key) -> Option<PathBuf> {
        if !self.contains(key) {
            return None;
        }
        let why = self.check(key).err()?;
        self.quarantine(key, &why).ok()
    }

    /// Writes an artifact atomically: everything goes to `tmp/`, then one rename publishes it.
    /// If another writer published the same key first, that artifact is kept and returned.
    pub fn write(
        &self,
        spec: KeySpec,
        label: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
        cost: impl Into<Cost>,
        meta: Value,
    ) -> Result<Manifest> {
        self.write_as(spec, label, schema, batches, Provenance::new(cost, meta))
    }

    /// [`Store::write`] with what the writer read, or with `replace` (`run --force`)
    /// replacing an artifact already there: the old object is renamed aside and the new one
    /// renamed in, so readers see one or the other, never a mix. Call it under the key's lock
    /// when replacing. A table holding NaN or an infinity is refused with the cell named.
    /// On failure (a full disk, say) the temporary folder is removed and the error names the
    /// artifact and the store.
    pub fn write_as(
        &self,
        spec: KeySpec,
        label: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
        p: Provenance,
    ) -> Result<Manifest> {
        if let Err(cell) = crate::table::check_finite(&schema, batches) {
            bail!("{label}: refusing to store a table with {cell}; nothing was written (a non-finite number is a failed computation, not a result)");
        }
        let key = key_of(&spec);
        let tmp = self.temp_dir(key.as_str())?;
        let written = self.write_tmp(&tmp, spec, label, schema, batches, p.cost, p.meta, p.inputs_read);
        let manifest = match written {
            Ok(m) => m,
            Err(e) => {
                fs::remove_dir_all(&tmp).ok();
                return Err(e.context(format!(
                    "writing artifact {} ({label}) into the store {}; its temporary folder was removed",
                    key.short(),
                    self.root.display()
                )));
            }
        };
        if p.replace && self.contains(&key) {
            // rename(2) onto an empty directory replaces it: the old object moves aside in one
            // step, the new one moves in in the next.
            let retired = self.temp_dir(&format!("retired-{key}"))?;
            fs::rename(self.object_dir(&key), &retired).with_context(|| format!("retiring {}", key.short()))?;
            let published = self.publish(&tmp, &key);
            fs::remove_dir_all(&retired).ok();
            published?;
        } else {
            self.publish(&tmp, &key)?;
        }
        debug_assert_eq!(manifest.key, key);
        self.manifest(&key).map_err(Into::into)
    }

    /// Writes the data file and the sealed manifest into a temporary object folder.
    fn write_tmp(
        &self,
        tmp: &Path,
        spec: KeySpec,
        label: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
        cost: Cost,
        meta: Value,
        inputs_read: std::collections::BTreeMap<Key, String>,
    ) -> Result<Manifest> {
        let data = tmp.join("data.parquet");
        let rows = write_parquet(&data, schema.clone(), batches)?;
        let manifest = Manifest {
            format: FORMAT_VERSION,
            key: key_of(&spec),
            spec,
            label: label.to_string(),
            schema: TableSummary::schema(&schema),
            rows,
            bytes: fs::metadata(&data)?.len(),
            file_hash: hash_file(&data)?,
            wall_time_s: cost.wall_s,
            cpu_time_s: cost.cpu_s,
            peak_rss_bytes: cost.peak_rss_bytes,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            host: hostname(),
            created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            meta,
            inputs_read,
            seal: String::new(),
        };
        let manifest = Manifest { seal: manifest.seal_of(), ..manifest };
        write_json(&tmp.join("manifest.json"), &manifest)?;
        File::open(&data)?.sync_all()?;
        Ok(manifest)
    }

    /// A fresh, exclusively created directory under `tmp/` (never an existing path, so a
    /// planted file or symlink of a guessed name cannot redirect the write).
    fn temp_dir(&self, name: &str) -> Result<PathBuf> {
        let parent = self.folder(Folder::Tmp)?;
        write::fresh_dir(&parent, &format!("{name}.{}", std::process::id()))
            .with_context(|| format!("in the store {}", self.root.display()))
    }

    /// Renames a complete temporary object directory into place. If a sound artifact of the
    /// key is there already (another writer won), ours is dropped; an unsound one (corrupt,
    /// or debris of a manual copy) is moved to quarantine first.
    fn publish(&self, tmp: &Path, key: &Key) -> Result<()> {
        let dest = self.object_dir(key);
        let prefix = dest.parent().unwrap();
        match fs::symlink_metadata(prefix) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                bail!("{}: not a folder (a symlink?); refused, nothing is written outside the store", prefix.display())
            }
            Err(_) => fs::create_dir(prefix)
                .or_else(|e| if prefix.is_dir() { Ok(()) } else { Err(e) })
                .with_context(|| format!("creating {}", prefix.display()))?,
        }
        // Only a run that found the key not complete publishes, so the full check here costs
        // nothing in the common case and keeps a corrupt object from winning over ours.
        if fs::symlink_metadata(&dest).is_ok() {
            match self.check(key) {
                Ok(_) => {
                    fs::remove_dir_all(tmp).ok();
                    return Ok(());
                }
                Err(why) => {
                    let why = if self.contains(key) { why } else { "incomplete object directory (no manifest)".into() };
                    self.quarantine(key, &why)?;
                }
            }
        }
        match fs::rename(tmp, &dest) {
            Ok(()) => {
                if let Ok(d) = File::open(dest.parent().unwrap()) {
                    d.sync_all().ok();
                }
                Ok(())
            }
            Err(_) if self.manifest(key).is_ok() => {
                fs::remove_dir_all(tmp).ok();
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("publishing {}", dest.display())),
        }
    }

    /// Takes the lock for `key`, waiting while another process (or thread) holds it.
    /// `on_wait` is called once if the lock is busy.
    pub fn lock(&self, key: &Key, on_wait: impl FnOnce()) -> Result<KeyLock> {
        let p = self.lock_path(key);
        let file = open_lock(&p)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock().with_context(|| format!("waiting for lock {}", p.display()))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", p.display())),
        }
        Ok(KeyLock { _file: file })
    }

    pub(crate) fn lock_path(&self, key: &Key) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }

    /// Every sound artifact, sorted by creation time then key; corrupt ones are skipped with a
    /// warning (`mexa verify` reports and quarantines them).
    pub fn list(&self) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for key in self.keys()? {
            match self.manifest(&key) {
                Ok(manifest) => out.push(ObjectInfo { key, manifest }),
                Err(e) => tracing::warn!("skipping {}: {e}", key.short()),
            }
        }
        out.sort_by(|a, b| (a.manifest.created_unix, &a.key).cmp(&(b.manifest.created_unix, &b.key)));
        Ok(out)
    }

    /// Keys of all object directories that have a manifest.
    pub fn keys(&self) -> Result<Vec<Key>> {
        let objects = self.root.join("objects");
        let mut keys: Vec<Key> = self.object_dirs(&objects)?.0.into_iter().filter(|k| self.contains(k)).collect();
        keys.sort();
        Ok(keys)
    }

    /// Object directories `objects/<2 hex>/<key>/` that are real directories with a key name,
    /// and every other entry (stray files, symlinks, odd names), which are skipped.
    fn object_dirs(&self, objects: &Path) -> Result<(Vec<Key>, Vec<PathBuf>)> {
        let (mut dirs, mut strays) = (Vec::new(), Vec::new());
        for prefix in fs::read_dir(objects).with_context(|| format!("listing {}", objects.display()))? {
            let prefix = prefix?;
            let p = prefix.path();
            let name = prefix.file_name().to_string_lossy().into_owned();
            let is_dir = fs::symlink_metadata(&p).map(|m| m.file_type().is_dir()).unwrap_or(false);
            if !is_dir || name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                strays.push(p);
                continue;
            }
            for e in fs::read_dir(&p)? {
                let e = e?;
                let real_dir = fs::symlink_metadata(e.path()).map(|m| m.file_type().is_dir()).unwrap_or(false);
                match Key::parse(&e.file_name().to_string_lossy()) {
                    Ok(key) if real_dir && key.fanout() == name => dirs.push(key),
                    _ => strays.push(e.path()),
                }
            }
        }
        Ok((dirs, strays))
    }

    /// Finds the one key starting with `prefix` (at least 4 hex digits).
    pub fn resolve_prefix(&self, prefix: &str) -> Result<Key> {
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{prefix:?} is not a key prefix (4 or more hex digits)");
        }
        let prefix = prefix.to_ascii_lowercase();
        let matches: Vec<Key> = self.keys()?.into_iter().filter(|k| k.starts_with(&prefix)).collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().unwrap()),
            0 => bail!("no artifact key starts with {prefix} in {}", self.root.display()),
            n => bail!("{n} artifact keys start with {prefix}; give more digits"),
        }
    }

    /// Deletes an artifact (used by `gc`).
    pub fn remove(&self, key: &Key) -> Result<()> {
        let d = self.object_dir(key);
        // Rename first so readers never see a half-deleted object.
        let tmp = self.temp_dir(key.as_str())?;
        fs::remove_dir(&tmp)?;
        fs::rename(&d, &tmp)?;
        fs::remove_dir_all(&tmp)?;
        Ok(())
    }

    /// Remembers the last key a named pipeline node resolved to (for plan reasons).
    pub fn write_ref(&self, node_id: &str, value: &Value) -> Result<()> {
        let p = self.ref_path(node_id);
        write::replace(&p, &serde_json::to_vec_pretty(value)?)
            .with_context(|| format!("writing a ref in the store {}", self.root.display()))
    }

    pub fn read_ref(&self, node_id: &str) -> Option<Value> {
        file::read(&self.ref_path(node_id), FileKind::StoreMeta).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// All refs, for looking many up: one directory listing instead of one open per node.
    pub fn refs(&self) -> Refs<'_> {
        let names = fs::read_dir(self.root.join("refs"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect())
            .unwrap_or_default();
        Refs { store: self, names }
    }

    fn ref_path(&self, node_id: &str) -> PathBuf {
        let h = blake3::hash(node_id.as_bytes()).to_hex();
        self.root.join("refs").join(format!("{}.json", &h[..32]))
    }

    /// Removes temporary directories older than `age` (debris of killed writers).
    pub fn clean_tmp(&self, age: Duration) -> Result<usize> {
        let mut n = 0;
        for e in fs::read_dir(self.root.join("tmp"))? {
            let e = e?;
            let old = e.metadata()?.modified()?.elapsed().map(|d| d > age).unwrap_or(false);
            if old {
                fs::remove_dir_all(e.path()).ok();
                n += 1;
            }
        }
        Ok(n)
    }

    /// Path of the file-hash cache.
    pub fn file_hash_cache(&self) -> PathBuf {
        self.root.join("cache").join("file-hashes.json")
    }
}

/// A suffix for temporary names nobody can predict ([`write::unguessable`]).
pub(crate) fn unique() -> String {
    write::unguessable()
}

/// Writes a new file; fails if anything (a file or a symlink) already has that name, and
/// removes a partial file (a full disk).
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(write::write_new(path, bytes)?)
}

/// Opens (creating it if needed) a lock file inside the store, never through a link; the
/// error says whether a link was refused or what else failed (a read-only store, a full disk).
pub(crate) fn open_lock(p: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // open(2)'s O_NOFOLLOW (Linux value; std does not export it).
    const O_NOFOLLOW: i32 = 0o400000;
    File::options().create(true).truncate(false).write(true).custom_flags(O_NOFOLLOW).open(p).map_err(|e| {
        // ELOOP: the name is a symbolic link.
        if e.raw_os_error() == Some(40) {
            anyhow::anyhow!("cannot open lock {}: it is a symbolic link; refused", p.display())
        } else {
            anyhow::anyhow!("cannot open lock {}: {e}", p.display())
        }
    })
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    write_new(path, &serde_json::to_vec_pretty(v)?)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
