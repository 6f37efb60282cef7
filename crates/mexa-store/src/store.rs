//! The on-disk store: objects, refs, locks, verification, merging.
use crate::filehash::hash_file;
use crate::key::{key_of, KeySpec};
use crate::table::{write_parquet, TableSummary};
use anyhow::{bail, Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Version of the on-disk layout and manifest format.
pub const FORMAT_VERSION: u32 = 1;

/// What produced an artifact. Stored as `manifest.json` beside `data.parquet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    /// The exact key components; `key_of(&spec) == key` is checked by `verify`.
    pub spec: KeySpec,
    /// Human label of the node that produced it, e.g. `demo/align[model=gemma3]`.
    pub label: String,
    /// Arrow schema, one `name: type` per line.
    pub schema: String,
    pub rows: u64,
    pub bytes: u64,
    /// blake3 hex of `data.parquet`.
    pub file_hash: String,
    pub wall_time_s: f64,
    /// CPU time (user + system) of the process while computing it, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time_s: Option<f64>,
    /// The process's peak resident memory while computing it, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    pub tool_version: String,
    pub host: String,
    /// Seconds since the epoch when written (informational; never part of the key).
    pub created_unix: u64,
    /// Free-form facts the stage wants kept (for example the model's layer count).
    #[serde(default)]
    pub meta: Value,
    /// blake3 of this manifest's canonical JSON without this field ([`Manifest::seal_of`]):
    /// an edited label, row count or meta field is caught like a flipped data byte. Empty in
    /// manifests written before seals existed (accepted, reported by `verify`).
    #[serde(default)]
    pub seal: String,
}

impl Manifest {
    /// The seal this manifest should carry.
    pub fn seal_of(&self) -> String {
        let mut v = serde_json::to_value(self).expect("a manifest serialises");
        if let Some(o) = v.as_object_mut() {
            o.remove("seal");
        }
        blake3::hash(crate::canonical_json(&v).as_bytes()).to_hex().to_string()
    }

    /// False when the manifest was edited after it was written. A manifest without a seal
    /// (written before seals existed) is accepted.
    pub fn seal_ok(&self) -> bool {
        self.seal.is_empty() || self.seal == self.seal_of()
    }

    /// True for one shard of a sharded node's output.
    pub fn is_shard(&self) -> bool {
        self.spec.stage.ends_with(SHARD_SUFFIX)
    }

    /// The stage kind that wrote this artifact (a shard's node's kind for a shard).
    pub fn stage_kind(&self) -> &str {
        self.spec.stage.trim_end_matches(SHARD_SUFFIX)
    }

    /// The node key a shard artifact belongs to (shards are keyed by node key and shard name).
    pub fn shard_parent(&self) -> Option<&str> {
        if !self.is_shard() {
            return None;
        }
        self.spec.inputs.get(SHARD_NODE_INPUT).and_then(|v| v.first()).map(String::as_str)
    }

    /// True for a sharded node's index (its table lists shard names and keys).
    pub fn is_sharded(&self) -> bool {
        self.meta.get(SHARDED).and_then(Value::as_bool) == Some(true)
    }

    /// Keys of the shards a sharded node's index lists (recorded in its meta).
    pub fn shard_keys(&self) -> Vec<&str> {
        self.meta
            .get(SHARD_KEYS)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

// How shards are recorded: defined here, written by mexa-pipeline, read by the store's
// completeness check, gc and the CLI.
/// A shard's key spec names its stage `<kind>#shard`.
const SHARD_SUFFIX: &str = "#shard";
/// A shard's key spec has one input, its node's key, under this name.
const SHARD_NODE_INPUT: &str = "node";
/// An index manifest's meta marks it sharded ...
const SHARDED: &str = "sharded";
/// ... and lists its shards' keys, so completeness is checked without reading the index.
const SHARD_KEYS: &str = "shard_keys";

/// The key spec of the shard `name` of node `node_key` of stage `kind`.
pub fn shard_spec(kind: &str, version: u32, node_key: &str, name: &str) -> KeySpec {
    KeySpec {
        stage: format!("{kind}{SHARD_SUFFIX}"),
        version,
        params: Value::from(name),
        inputs: std::collections::BTreeMap::from([(SHARD_NODE_INPUT.to_string(), vec![node_key.to_string()])]),
    }
}

/// Marks an index artifact's meta as sharded over these shard keys.
pub fn mark_sharded(meta: Value, shard_keys: Vec<String>) -> Value {
    let mut meta = if meta.is_object() { meta } else { Value::Object(Default::default()) };
    meta[SHARDED] = Value::Bool(true);
    meta[SHARD_KEYS] = Value::from(shard_keys);
    meta
}

/// What computing an artifact cost (recorded in its manifest; `mexa profile` shows it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub wall_s: f64,
    pub cpu_s: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

impl From<f64> for Cost {
    fn from(wall_s: f64) -> Self {
        Cost { wall_s, ..Default::default() }
    }
}

/// True for a well-formed artifact key: 64 lowercase hex digits.
pub fn is_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One row of `Store::list`.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: String,
    pub manifest: Manifest,
}

/// Result of [`Store::verify`].
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    /// (key, what was wrong, where it was moved)
    pub corrupt: Vec<(String, String, PathBuf)>,
    /// Entries under `objects/` that are not artifacts (stray files, odd names): left alone.
    pub strays: Vec<PathBuf>,
    /// Artifacts without a manifest seal (written by an older mexa).
    pub unsealed: usize,
    /// Sharded nodes with a missing shard: (node key, missing shard key). The node is
    /// recomputed by the next run (its missing shards only).
    pub incomplete: Vec<(String, String)>,
}

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

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in ["objects", "refs", "locks", "tmp", "cache"] {
            let p = root.join(d);
            fs::create_dir_all(&p).with_context(|| format!("cannot create store directory {}", p.display()))?;
            // Everything mexa writes stays inside the store: a store folder that is a link
            // elsewhere (planted in a shared store) is refused.
            if fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
                bail!(
                    "{}: a store folder is a symlink; refused (everything mexa writes must stay inside the store)",
                    p.display()
                );
            }
        }
        Ok(Self { root })
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

    pub fn object_dir(&self, key: &str) -> PathBuf {
        self.root.join("objects").join(&key[..2.min(key.len())]).join(key)
    }

    pub fn data_path(&self, key: &str) -> PathBuf {
        self.object_dir(key).join("data.parquet")
    }

    /// True when a complete artifact with this key is present.
    pub fn contains(&self, key: &str) -> bool {
        self.object_dir(key).join("manifest.json").is_file()
    }

    pub fn manifest(&self, key: &str) -> Result<Manifest> {
        let p = self.object_dir(key).join("manifest.json");
        let bytes =
            fs::read(&p).with_context(|| format!("artifact {key} is not in the store {}", self.root.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a valid manifest", p.display()))
    }

    /// Reads an artifact's table after checking its manifest seal and the data's blake3
    /// against the manifest, so a corrupt artifact is never served or read downstream.
    pub fn read(&self, key: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let m = self.manifest(key)?;
        if !m.seal_ok() {
            bail!("artifact {key} ({}) is corrupt: its manifest was changed after it was written; run `mexa verify` to quarantine it", m.label);
        }
        let path = self.data_path(key);
        let bytes = read_regular(&path)?;
        let h = blake3::hash(&bytes).to_hex().to_string();
        if h != m.file_hash {
            bail!("artifact {key} ({}) is corrupt: data.parquet hashes to {}…, its manifest says {}…; run `mexa verify` to quarantine it (the next run recomputes it)", m.label, &h[..12], &m.file_hash[..m.file_hash.len().min(12)]);
        }
        crate::table::read_parquet_bytes(bytes, &path)
    }

    /// True when the artifact is present and, for a sharded node, every shard its index
    /// lists is present too. Planning treats an incomplete node as not cached.
    pub fn complete(&self, key: &str) -> bool {
        match self.manifest(key) {
            Ok(m) => m.shard_keys().iter().all(|k| self.contains(k)),
            Err(_) => false,
        }
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
        self.write_as(spec, label, schema, batches, cost, meta, false)
    }

    /// [`Store::write`], or with `replace` (`run --force`) replacing an artifact already
    /// there: the old object is renamed aside and the new one renamed in, so readers see one
    /// or the other, never a mix. Call it under the key's lock when replacing.
    pub fn write_as(
        &self,
        spec: KeySpec,
        label: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
        cost: impl Into<Cost>,
        meta: Value,
        replace: bool,
    ) -> Result<Manifest> {
        let cost = cost.into();
        let key = key_of(&spec);
        let tmp = self.temp_dir(&key)?;
        let data = tmp.join("data.parquet");
        let rows = write_parquet(&data, schema.clone(), batches)?;
        let manifest = Manifest {
            format: FORMAT_VERSION,
            key: key.clone(),
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
            seal: String::new(),
        };
        let manifest = Manifest { seal: manifest.seal_of(), ..manifest };
        write_json(&tmp.join("manifest.json"), &manifest)?;
        File::open(&data)?.sync_all()?;
        if replace && self.contains(&key) {
            // rename(2) onto an empty directory replaces it: the old object moves aside in one
            // step, the new one moves in in the next.
            let retired = self.temp_dir(&format!("retired-{key}"))?;
            fs::rename(self.object_dir(&key), &retired).with_context(|| format!("retiring {}", &key[..12]))?;
            let published = self.publish(&tmp, &key);
            fs::remove_dir_all(&retired).ok();
            published?;
        } else {
            self.publish(&tmp, &key)?;
        }
        self.manifest(&key)
    }

    /// A fresh, exclusively created directory under `tmp/` (never an existing path, so a
    /// planted file or symlink of a guessed name cannot redirect the write).
    fn temp_dir(&self, key: &str) -> Result<PathBuf> {
        let parent = self.root.join("tmp");
        for _ in 0..16 {
            let tmp = parent.join(format!("{}.{}.{}", &key[..key.len().min(64)], std::process::id(), unique()));
            match fs::create_dir(&tmp) {
                Ok(()) => return Ok(tmp),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating {}", tmp.display())),
            }
        }
        bail!("could not create a fresh temporary directory under {}", parent.display())
    }

    /// Renames a complete temporary object directory into place (or drops it if the key exists).
    fn publish(&self, tmp: &Path, key: &str) -> Result<()> {
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
        if self.contains(key) {
            fs::remove_dir_all(tmp).ok();
            return Ok(());
        }
        if dest.exists() {
            // A directory without a manifest cannot come from `publish`; it is debris from a
            // manual copy. Move it aside rather than trusting it.
            self.quarantine(key, "incomplete object directory")?;
        }
        match fs::rename(tmp, &dest) {
            Ok(()) => {
                if let Ok(d) = File::open(dest.parent().unwrap()) {
                    d.sync_all().ok();
                }
                Ok(())
            }
            Err(_) if self.contains(key) => {
                fs::remove_dir_all(tmp).ok();
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("publishing {}", dest.display())),
        }
    }

    /// Takes the lock for `key`, waiting while another process (or thread) holds it.
    /// `on_wait` is called once if the lock is busy.
    pub fn lock(&self, key: &str, on_wait: impl FnOnce()) -> Result<KeyLock> {
        let p = self.root.join("locks").join(format!("{key}.lock"));
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            File::options().create(true).truncate(false).write(true).custom_flags(libc_flags::O_NOFOLLOW).open(&p)
        }
        .with_context(|| format!("cannot open lock {} (a symlink is refused)", p.display()))?;
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

    /// Every complete artifact, sorted by creation time then key.
    pub fn list(&self) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        for key in self.keys()? {
            match self.manifest(&key) {
                Ok(manifest) => out.push(ObjectInfo { key, manifest }),
                Err(e) => tracing::warn!("skipping {key}: {e:#}"),
            }
        }
        out.sort_by(|a, b| (a.manifest.created_unix, &a.key).cmp(&(b.manifest.created_unix, &b.key)));
        Ok(out)
    }

    /// Keys of all object directories that have a manifest.
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let objects = self.root.join("objects");
        for (key, dir) in self.object_dirs(&objects)?.0 {
            if dir.join("manifest.json").is_file() {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Object directories `objects/<2 hex>/<key>/` that are real directories with a key name,
    /// and every other entry (stray files, symlinks, odd names), which are skipped.
    fn object_dirs(&self, objects: &Path) -> Result<(Vec<(String, PathBuf)>, Vec<PathBuf>)> {
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
                let key = e.file_name().to_string_lossy().into_owned();
                let real_dir = fs::symlink_metadata(e.path()).map(|m| m.file_type().is_dir()).unwrap_or(false);
                if real_dir && is_key(&key) && key.starts_with(&name) {
                    dirs.push((key, e.path()));
                } else {
                    strays.push(e.path());
                }
            }
        }
        Ok((dirs, strays))
    }

    /// Finds the one key starting with `prefix` (at least 4 hex digits).
    pub fn resolve_prefix(&self, prefix: &str) -> Result<String> {
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{prefix:?} is not a key prefix (4 or more hex digits)");
        }
        let matches: Vec<String> = self.keys()?.into_iter().filter(|k| k.starts_with(prefix)).collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().unwrap()),
            0 => bail!("no artifact key starts with {prefix} in {}", self.root.display()),
            n => bail!("{n} artifact keys start with {prefix}; give more digits"),
        }
    }

    /// Checks one artifact: manifest readable and sealed, key matches its spec, data hash
    /// matches. Returns the manifest.
    pub fn check(&self, key: &str) -> std::result::Result<Manifest, String> {
        let m = self.manifest(key).map_err(|e| format!("{e:#}"))?;
        if m.key != key {
            return Err(format!("manifest names key {}", m.key));
        }
        if key_of(&m.spec) != key {
            return Err("manifest's key spec does not hash to its key".into());
        }
        if !m.seal_ok() {
            return Err("manifest was edited after it was written (its seal does not match)".into());
        }
        let data = self.data_path(key);
        match fs::symlink_metadata(&data) {
            Ok(md) if md.file_type().is_file() => {}
            Ok(_) => return Err("data.parquet is not a regular file".into()),
            Err(e) => return Err(format!("data.parquet: {e}")),
        }
        let h = hash_file(&data).map_err(|e| format!("{e:#}"))?;
        if h != m.file_hash {
            return Err(format!("data.parquet hashes to {h}, manifest says {}", m.file_hash));
        }
        Ok(m)
    }

    /// Rehashes every artifact; corrupt ones are moved to `quarantine/` so the next run
    /// recomputes them.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let (mut dirs, strays) = self.object_dirs(&self.root.join("objects"))?;
        report.strays = strays;
        dirs.sort();
        let mut sound = Vec::with_capacity(dirs.len());
        for (key, _) in dirs {
            report.checked += 1;
            match self.check(&key) {
                Ok(m) => sound.push((key, m)),
                Err(why) => {
                    let to = self.quarantine(&key, &why)?;
                    report.corrupt.push((key, why, to));
                }
            }
        }
        // After the quarantines, so a shard moved aside just now counts as missing.
        for (key, m) in &sound {
            if m.seal.is_empty() {
                report.unsealed += 1;
            }
            for s in m.shard_keys() {
                if !self.contains(s) {
                    report.incomplete.push((key.clone(), s.to_string()));
                }
            }
        }
        Ok(report)
    }

    fn quarantine(&self, key: &str, why: &str) -> Result<PathBuf> {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let q = self.root.join("quarantine");
        fs::create_dir_all(&q)?;
        let to = q.join(format!("{key}.{secs}.{}.{}", std::process::id(), unique()));
        fs::rename(self.object_dir(key), &to)?;
        // The note is created fresh: an existing QUARANTINED.txt (or a symlink planted under
        // that name) is removed first, never written through.
        let note = to.join("QUARANTINED.txt");
        let _ = fs::remove_file(&note);
        if let Ok(mut f) = File::options().write(true).create_new(true).open(&note) {
            use std::io::Write;
            let _ = writeln!(f, "{why}");
        }
        tracing::warn!("quarantined {key}: {why}");
        Ok(to)
    }

    /// Deletes an artifact (used by `gc`).
    pub fn remove(&self, key: &str) -> Result<()> {
        let d = self.object_dir(key);
        // Rename first so readers never see a half-deleted object.
        let tmp = self.temp_dir(key)?;
        fs::remove_dir(&tmp)?;
        fs::rename(&d, &tmp)?;
        fs::remove_dir_all(&tmp)?;
        Ok(())
    }

    /// Copies every artifact of `other` missing here, verifying each file's hash on the way
    /// in. Returns (copied, already present, rejected with reasons).
    pub fn import_from(&self, other: &Store) -> Result<(usize, usize, Vec<(String, String)>)> {
        let (mut copied, mut present, mut rejected) = (0, 0, Vec::new());
        for key in other.keys()? {
            if self.contains(&key) {
                let (a, b) = (self.manifest(&key)?, other.manifest(&key)?);
                if a.file_hash != b.file_hash {
                    tracing::warn!(
                        "{key}: both stores have it with different bytes (a non-deterministic stage?); keeping ours"
                    );
                }
                present += 1;
                continue;
            }
            if let Err(why) = other.check(&key) {
                rejected.push((key, why));
                continue;
            }
            let tmp = self.temp_dir(&key)?;
            let mut symlinked = None;
            for f in ["data.parquet", "manifest.json"] {
                let src = other.object_dir(&key).join(f);
                // A symlink in a shared store could point anywhere: never copy its target.
                match read_regular(&src) {
                    Ok(bytes) => write_new(&tmp.join(f), &bytes)?,
                    Err(e) => symlinked = Some(format!("{e:#}")),
                }
            }
            if let Some(why) = symlinked {
                fs::remove_dir_all(&tmp).ok();
                rejected.push((key, why));
                continue;
            }
            let m: Manifest = serde_json::from_slice(&fs::read(tmp.join("manifest.json"))?)?;
            if hash_file(&tmp.join("data.parquet"))? != m.file_hash {
                fs::remove_dir_all(&tmp).ok();
                rejected.push((key, "changed while being copied".into()));
                continue;
            }
            self.publish(&tmp, &key)?;
            copied += 1;
        }
        Ok((copied, present, rejected))
    }

    /// Remembers the last key a named pipeline node resolved to (for plan reasons).
    pub fn write_ref(&self, node_id: &str, value: &Value) -> Result<()> {
        let p = self.ref_path(node_id);
        let tmp = p.with_extension(format!("tmp.{}.{}", std::process::id(), unique()));
        write_new(&tmp, &serde_json::to_vec_pretty(value)?)?;
        fs::rename(&tmp, &p)?;
        Ok(())
    }

    pub fn read_ref(&self, node_id: &str) -> Option<Value> {
        fs::read(self.ref_path(node_id)).ok().and_then(|b| serde_json::from_slice(&b).ok())
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

/// A process-unique, hard-to-guess suffix for temporary names.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let h = blake3::hash(format!("{nanos}.{}.{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)).as_bytes())
        .to_hex();
    h[..16].to_string()
}

/// The bytes of a regular file; a symlink, FIFO or directory is an error naming the path
/// (opened with O_NOFOLLOW and O_NONBLOCK, so neither a link nor a FIFO is followed or waited on).
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = File::options()
        .read(true)
        .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("{}: cannot open (a symlink is refused)", path.display()))?;
    if !f.metadata()?.file_type().is_file() {
        bail!("{}: not a regular file", path.display());
    }
    let mut v = Vec::new();
    f.read_to_end(&mut v).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(v)
}

/// Writes a new file; fails if anything (a file or a symlink) already has that name.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The two open(2) flags used here (Linux values; std does not export them).
mod libc_flags {
    pub const O_NOFOLLOW: i32 = 0o400000;
    pub const O_NONBLOCK: i32 = 0o4000;
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    serde_json::to_writer_pretty(&f, v)?;
    f.sync_all()?;
    Ok(())
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn table(n: i64) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("text", DataType::Utf8, false),
        ]));
        let ids = Int64Array::from((0..n).collect::<Vec<_>>());
        let texts = StringArray::from((0..n).map(|i| format!("row {i}")).collect::<Vec<_>>());
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(texts)]).unwrap();
        (schema, vec![b])
    }

    fn spec(p: i64) -> KeySpec {
        KeySpec { stage: "t".into(), version: 1, params: serde_json::json!({"p": p}), inputs: BTreeMap::new() }
    }

    #[test]
    fn write_read_verify_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (schema, batches) = table(10);
        let m = s.write(spec(1), "t", schema, &batches, 0.0, Value::Null).unwrap();
        assert!(s.contains(&m.key));
        assert_eq!(m.rows, 10);
        let (_, back) = s.read(&m.key).unwrap();
        assert_eq!(back[0], batches[0]);
        assert_eq!(s.verify().unwrap().corrupt.len(), 0);
        assert_eq!(s.resolve_prefix(&m.key[..6]).unwrap(), m.key);
    }

    #[test]
    fn equal_tables_give_equal_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (Store::open(a.path()).unwrap(), Store::open(b.path()).unwrap());
        let (schema, batches) = table(100);
        let ma = sa.write(spec(1), "x", schema.clone(), &batches, 1.0, Value::Null).unwrap();
        let mb = sb.write(spec(1), "y", schema, &batches, 2.0, Value::Null).unwrap();
        assert_eq!(ma.key, mb.key);
        assert_eq!(fs::read(sa.data_path(&ma.key)).unwrap(), fs::read(sb.data_path(&mb.key)).unwrap());
    }

    #[test]
    fn verify_quarantines_a_flipped_byte_and_import_rejects_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (schema, batches) = table(50);
        let good = s.write(spec(1), "t", schema.clone(), &batches, 0.0, Value::Null).unwrap();
        let bad = s.write(spec(2), "t", schema, &batches, 0.0, Value::Null).unwrap();
        let p = s.data_path(&bad.key);
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&p, bytes).unwrap();

        let other_dir = tempfile::tempdir().unwrap();
        let other = Store::open(other_dir.path()).unwrap();
        let (copied, present, rejected) = other.import_from(&s).unwrap();
        assert_eq!((copied, present), (1, 0));
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, bad.key);
        assert!(other.contains(&good.key) && !other.contains(&bad.key));

        let r = s.verify().unwrap();
        assert_eq!(r.checked, 2);
        assert_eq!(r.corrupt.len(), 1);
        assert_eq!(r.corrupt[0].0, bad.key);
        assert!(!s.contains(&bad.key) && s.contains(&good.key));
        assert!(r.corrupt[0].2.join("QUARANTINED.txt").is_file());
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let l = s.lock("abcd", || panic!("free lock reported busy")).unwrap();
        let s2 = s.clone();
        let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w2 = waited.clone();
        let t = std::thread::spawn(move || {
            let _l = s2.lock("abcd", || w2.store(true, std::sync::atomic::Ordering::SeqCst)).unwrap();
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(l);
        t.join().unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
    }
}

#[cfg(test)]
mod hardening {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::unix::fs::symlink;
    use std::sync::Arc;

    fn write(s: &Store, p: i64, meta: Value) -> Manifest {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![p, p + 1]))]).unwrap();
        let spec =
            KeySpec { stage: "t".into(), version: 1, params: serde_json::json!({"p": p}), inputs: BTreeMap::new() };
        s.write(spec, "t", schema, &[b], 0.0, meta).unwrap()
    }

    #[test]
    fn a_flipped_data_byte_is_never_served() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = write(&s, 1, Value::Null);
        let p = s.data_path(&m.key);
        let mut bytes = fs::read(&p).unwrap();
        let k = bytes.len() / 2;
        bytes[k] ^= 1;
        fs::write(&p, bytes).unwrap();
        let e = format!("{:#}", s.read(&m.key).unwrap_err());
        assert!(e.contains(&m.key) && e.contains("corrupt") && e.contains("mexa verify"), "{e}");
    }

    #[test]
    fn an_edited_manifest_is_caught_by_read_and_verify() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = write(&s, 1, serde_json::json!({"pivot": "eng"}));
        let p = s.object_dir(&m.key).join("manifest.json");
        let text = fs::read_to_string(&p).unwrap().replace("\"eng\"", "\"fra\"");
        fs::write(&p, text).unwrap();
        assert!(format!("{:#}", s.read(&m.key).unwrap_err()).contains("manifest was changed"));
        let r = s.verify().unwrap();
        assert_eq!(r.corrupt.len(), 1, "{r:?}");
        assert!(r.corrupt[0].1.contains("seal"));
    }

    #[test]
    fn strays_under_objects_are_skipped_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = write(&s, 1, Value::Null);
        fs::write(d.path().join("objects/README"), "x").unwrap();
        fs::create_dir_all(d.path().join("objects/zz/not-a-key")).unwrap();
        fs::create_dir_all(d.path().join("objects/ab/ümlaut")).unwrap();
        assert_eq!(s.keys().unwrap(), vec![m.key.clone()]);
        let r = s.verify().unwrap();
        assert_eq!((r.checked, r.corrupt.len(), r.strays.len()), (1, 0, 3), "{r:?}");
    }

    #[test]
    fn quarantine_never_writes_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("victim.txt");
        fs::write(&target, "precious").unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = write(&s, 1, Value::Null);
        symlink(&target, s.object_dir(&m.key).join("QUARANTINED.txt")).unwrap();
        fs::write(s.data_path(&m.key), "garbage").unwrap();
        let r = s.verify().unwrap();
        assert_eq!(r.corrupt.len(), 1);
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(fs::symlink_metadata(r.corrupt[0].2.join("QUARANTINED.txt")).unwrap().file_type().is_file());
    }

    #[test]
    fn import_rejects_symlinked_files_of_a_shared_store() {
        let (a, b, outside) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (Store::open(a.path()).unwrap(), Store::open(b.path()).unwrap());
        let m = write(&sa, 1, Value::Null);
        // The data file replaced by a link to a file elsewhere with the same bytes.
        let secret = outside.path().join("data.parquet");
        fs::rename(sa.data_path(&m.key), &secret).unwrap();
        symlink(&secret, sa.data_path(&m.key)).unwrap();
        let (copied, _, rejected) = sb.import_from(&sa).unwrap();
        assert_eq!((copied, rejected.len()), (0, 1), "{rejected:?}");
        assert!(!sb.contains(&m.key));
    }

    #[test]
    fn gc_spares_what_a_live_run_wrote_and_locked_keys() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let old = write(&s, 1, Value::Null);
        // Backdate the old artifact's creation so it predates the run.
        let p = s.object_dir(&old.key).join("manifest.json");
        let mut m: Manifest = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        m.created_unix -= 100;
        m.seal = m.seal_of();
        fs::remove_file(&p).unwrap();
        write_json(&p, &m).unwrap();
        let run = s.register_run().unwrap();
        let fresh = write(&s, 2, Value::Null);
        let r = s.gc(&BTreeSet::new(), true).unwrap();
        assert_eq!(r.unreachable.iter().map(|i| i.key.clone()).collect::<Vec<_>>(), vec![old.key.clone()]);
        assert_eq!(r.in_use.len(), 1);
        assert!(s.contains(&fresh.key) && !s.contains(&old.key));
        drop(run);
        // A locked key is spared too.
        let _l = s.lock(&fresh.key, || {}).unwrap();
        let r = s.gc(&BTreeSet::new(), false).unwrap();
        assert_eq!((r.unreachable.len(), r.in_use.len()), (0, 1));
    }

    #[test]
    fn a_node_with_a_missing_shard_is_incomplete() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let shard = write(&s, 1, Value::Null);
        let node = write(&s, 2, mark_sharded(Value::Null, vec![shard.key.clone()]));
        assert!(s.complete(&node.key));
        s.remove(&shard.key).unwrap();
        assert!(s.contains(&node.key) && !s.complete(&node.key));
        let r = s.verify().unwrap();
        assert_eq!(r.incomplete, vec![(node.key.clone(), shard.key.clone())]);
    }
}

#[cfg(test)]
mod links {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinked_store_folders_are_refused() {
        let (d, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(d.path().join("s")).unwrap();
        symlink(outside.path(), d.path().join("s/locks")).unwrap();
        let e = format!("{:#}", Store::open(d.path().join("s")).unwrap_err());
        assert!(e.contains("symlink"), "{e}");
        // A symlinked objects/<prefix> folder: publishing there is refused.
        let s = Store::open(d.path().join("t")).unwrap();
        let spec = KeySpec { stage: "t".into(), version: 1, params: serde_json::json!({}), inputs: Default::default() };
        let key = key_of(&spec);
        symlink(outside.path(), s.root().join("objects").join(&key[..2])).unwrap();
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::empty());
        assert!(s.write(spec, "t", schema, &[], 0.0, Value::Null).is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside the store");
    }
}
