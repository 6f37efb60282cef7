//! Verifying a store: rehash every artifact, quarantine the corrupt ones and everything that
//! was computed from them, report incomplete sharded nodes; sealing an old store's manifests.
use super::{unique, write_new, Manifest, Store};
use crate::filehash::hash_file;
use anyhow::Result;
use mexa_core::Key;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Result of [`Store::verify`].
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub checked: usize,
    /// (key, what was wrong, where it was moved)
    pub corrupt: Vec<(Key, String, PathBuf)>,
    /// Sound artifacts computed from a corrupt one (or one of its shards), moved to quarantine
    /// with it so that no number derived from bad data stays cached: (key, label, the bad
    /// input, where it was moved).
    pub derived: Vec<(Key, String, Key, PathBuf)>,
    /// Entries under `objects/` that are not artifacts (stray files, odd names): left alone.
    pub strays: Vec<PathBuf>,
    /// Manifests sealed by `--reseal` (artifacts of a mexa from before seals, whose key and
    /// data hash were checked first).
    pub resealed: usize,
    /// Sharded nodes with a missing shard: (node key, missing shard key). The node is
    /// recomputed by the next run (its missing shards only).
    pub incomplete: Vec<(Key, Key)>,
}

/// What is known of an artifact found corrupt: the hash its data should have had when its
/// manifest could still be trusted (only its data was bad), and its node when it is a shard.
struct Bad {
    sealed_hash: Option<String>,
    shard_of: Option<Key>,
}

impl Store {
    /// Checks one artifact as a reader would, and more: its manifest is the artifact's
    /// ([`Manifest::mismatch`]), the data hashes as it says, the table decodes, and a sharded
    /// node's index names exactly its own shards ([`Store::index_rows`]). Returns the manifest.
    pub fn check(&self, key: &Key) -> std::result::Result<Manifest, String> {
        let why = |e: anyhow::Error| match e.downcast::<super::StoreError>() {
            Ok(super::StoreError::Corrupt { why, .. }) => why,
            Ok(e) => e.to_string(),
            Err(e) => format!("data.parquet does not decode ({e:#})"),
        };
        let r = self.read_checked(key).map_err(why)?;
        self.index_rows(key, &r).map_err(why)?;
        Ok(r.manifest)
    }

    /// Rehashes every artifact; corrupt ones are moved to `quarantine/` so the next run
    /// recomputes them, and so is every artifact computed from one of them unless it
    /// recorded reading exactly the bytes the corrupt one's sealed manifest promises (data
    /// that rotted after it was read). With `reseal`, a manifest without a seal whose key,
    /// spec and data check out is sealed instead of quarantined (a one-time step for a store
    /// written by a mexa from before seals).
    pub fn verify_with(&self, reseal: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let (mut keys, strays) = self.object_dirs(&self.root.join("objects"))?;
        report.strays = strays;
        keys.sort();
        let mut sound: BTreeMap<Key, Manifest> = BTreeMap::new();
        let mut bad: BTreeMap<Key, Bad> = BTreeMap::new();
        for key in keys {
            report.checked += 1;
            if reseal && self.reseal(&key)? {
                report.resealed += 1;
            }
            match self.check(&key) {
                Ok(m) => {
                    sound.insert(key, m);
                }
                Err(why) => {
                    // The manifest's promises are trusted only when the manifest itself is sound.
                    let trusted = self.manifest(&key).ok();
                    let claimed = self.manifest_unchecked(&key).ok();
                    bad.insert(
                        key.clone(),
                        Bad {
                            sealed_hash: trusted.as_ref().map(|m| m.file_hash.clone()),
                            shard_of: trusted.as_ref().and_then(|m| m.shard_parent().cloned()),
                        },
                    );
                    let to = self.quarantine(&key, &why)?;
                    let label = claimed.map(|m| m.label).unwrap_or_default();
                    tracing::warn!("corrupt: {} {label}: {why}", key.short());
                    report.corrupt.push((key, why, to));
                }
            }
        }
        // A shard whose own manifest cannot be trusted is known as a shard by the sound index
        // that lists it.
        for (node, m) in &sound {
            for s in m.shard_keys().unwrap_or_default() {
                if let Some(b) = bad.get_mut(&s) {
                    b.shard_of.get_or_insert_with(|| node.clone());
                }
            }
        }
        // Everything computed from a bad artifact goes too, to a fixed point (a derived
        // artifact's own dependents are derived from bad data as well).
        loop {
            let tainted: Vec<(Key, Key)> =
                sound.iter().filter_map(|(k, m)| tainted_by(m, &bad).map(|b| (k.clone(), b))).collect();
            if tainted.is_empty() {
                break;
            }
            for (key, input) in tainted {
                let m = sound.remove(&key).expect("listed above");
                let why = format!("computed from {}, which was corrupt", input.short());
                let to = self.quarantine(&key, &why)?;
                bad.insert(key.clone(), Bad { sealed_hash: None, shard_of: m.shard_parent().cloned() });
                report.derived.push((key, m.label, input, to));
            }
        }
        // After the quarantines, so a shard moved aside just now counts as missing.
        for (key, m) in &sound {
            for s in m.shard_keys().unwrap_or_default() {
                if !self.contains(&s) {
                    report.incomplete.push((key.clone(), s));
                }
            }
        }
        Ok(report)
    }

    /// [`Store::verify_with`] without resealing.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_with(false)
    }

    /// Seals the manifest of `key` when it has no seal and everything else about it checks
    /// out (names its key, its spec hashes to it, its data hashes to its `file_hash`).
    /// Returns whether it was sealed.
    fn reseal(&self, key: &Key) -> Result<bool> {
        // Only a manifest written before seals existed has no `seal` field at all; one whose
        // seal is present but blank was edited, and sealing it would bless the edit.
        let raw = mexa_core::file::read(&self.object_dir(key).join("manifest.json"), mexa_core::FileKind::StoreMeta)?;
        let fielded =
            serde_json::from_slice::<serde_json::Value>(&raw).map(|v| v.get("seal").is_some()).unwrap_or(true);
        let Ok(mut m) = self.manifest_unchecked(key) else { return Ok(false) };
        if fielded || &m.key != key || crate::key_of(&m.spec) != *key || m.shard_keys().is_err() {
            return Ok(false);
        }
        let data = self.data_path(key);
        let regular = fs::symlink_metadata(&data).map(|md| md.file_type().is_file()).unwrap_or(false);
        if !regular || hash_file(&data)? != m.file_hash {
            return Ok(false);
        }
        m.seal = m.seal_of();
        let dir = self.object_dir(key);
        let tmp = dir.join(format!(".manifest.{}.{}", std::process::id(), unique()));
        write_new(&tmp, &serde_json::to_vec_pretty(&m)?)?;
        fs::rename(&tmp, dir.join("manifest.json"))?;
        Ok(true)
    }

    pub(super) fn quarantine(&self, key: &Key, why: &str) -> Result<PathBuf> {
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
}

/// The bad artifact `m` was computed from, if any: a corrupt input (or a corrupt shard of
/// an input) whose bytes `m` did not record reading as the sealed ones.
fn tainted_by(m: &Manifest, bad: &BTreeMap<Key, Bad>) -> Option<Key> {
    let read_sound = |k: &Key, b: &Bad| b.sealed_hash.is_some() && m.inputs_read.get(k) == b.sealed_hash.as_ref();
    let deps: Vec<&Key> = m.depends_on().collect();
    for k in &deps {
        if let Some(b) = bad.get(*k) {
            if !read_sound(k, b) {
                return Some((*k).clone());
            }
        }
    }
    // A bad shard of an input node: tainting unless its sound bytes were recorded as read.
    bad.iter()
        .find(|(k, b)| b.shard_of.as_ref().is_some_and(|p| deps.contains(&p)) && !read_sound(k, b))
        .map(|(k, _)| k.clone())
}
