//! What an artifact says about itself (`manifest.json`), its seal, the shard conventions every
//! crate shares, and the one check that a manifest is the artifact it is filed as.
use crate::key::{key_of, KeySpec};
use mexa_core::Key;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Version of the on-disk layout and manifest format.
pub const FORMAT_VERSION: u32 = 1;

/// What produced an artifact. Stored as `manifest.json` beside `data.parquet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: Key,
    /// The exact key components; `key_of(&spec) == key` is checked on every read.
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
    /// The artifacts this one was computed from, as read: key → blake3 of the data read
    /// (inputs and their shards). When `verify` finds an input corrupt, an artifact that read
    /// other bytes than the input's sealed hash is quarantined with it. Empty in manifests
    /// written before it existed (such artifacts follow a corrupt input into quarantine).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs_read: BTreeMap<Key, String>,
    /// blake3 of this manifest's canonical JSON without this field ([`Manifest::seal_of`]):
    /// an edited label, row count or meta field is caught like a flipped data byte. A
    /// manifest without a seal is corrupt (`mexa verify --reseal` seals an old store's).
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

    /// True when the manifest carries the seal of its content. An absent or empty seal is
    /// not ok: an edit that blanks the seal is caught like one that leaves it wrong.
    pub fn seal_ok(&self) -> bool {
        !self.seal.is_empty() && self.seal == self.seal_of()
    }

    /// Why this manifest is not the artifact filed under `key`, or `None` when it is: it
    /// names that key, its key spec hashes to it, its seal holds, and every key it lists is
    /// well formed. (A manifest copied into another key's folder, edited, or resealed with a
    /// blank seal fails here; the data file's hash is checked by the reader.)
    pub fn mismatch(&self, key: &Key) -> Option<String> {
        if &self.key != key {
            return Some(format!(
                "its manifest names another key ({}): an artifact copied into the wrong folder",
                self.key.short()
            ));
        }
        if key_of(&self.spec) != *key {
            return Some("its manifest's key spec does not hash to its key".into());
        }
        if self.seal.is_empty() {
            return Some("its manifest has no seal (a blanked seal is an edit; a manifest written before seals has no `seal` field, and `mexa verify --reseal` seals those knowingly)".into());
        }
        if self.seal != self.seal_of() {
            return Some("its manifest was changed after it was written (the seal does not match)".into());
        }
        if let Err(e) = self.shard_keys() {
            return Some(e);
        }
        None
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
    pub fn shard_parent(&self) -> Option<&Key> {
        if !self.is_shard() {
            return None;
        }
        self.spec.inputs.get(SHARD_NODE_INPUT).and_then(|v| v.first())
    }

    /// True for a sharded node's index (its table lists shard names and keys).
    pub fn is_sharded(&self) -> bool {
        self.meta.get(SHARDED).and_then(Value::as_bool) == Some(true)
    }

    /// Keys of the shards a sharded node's index lists (recorded in its meta), each parsed:
    /// a malformed one (say `../../x`) is an error, never a path looked up.
    pub fn shard_keys(&self) -> Result<Vec<Key>, String> {
        let Some(v) = self.meta.get(SHARD_KEYS) else { return Ok(Vec::new()) };
        let a = v.as_array().ok_or("its manifest's shard_keys is not a list")?;
        a.iter()
            .map(|s| {
                let s = s.as_str().ok_or("its manifest's shard_keys holds a non-string")?;
                Key::parse(s).map_err(|e| format!("its manifest lists a malformed shard key: {e}"))
            })
            .collect()
    }

    /// The keys this artifact was computed from: its inputs (not a shard's own node) and
    /// everything it recorded reading.
    pub fn depends_on(&self) -> impl Iterator<Item = &Key> {
        self.spec
            .inputs
            .iter()
            .filter(|(slot, _)| !(self.is_shard() && slot.as_str() == SHARD_NODE_INPUT))
            .flat_map(|(_, ks)| ks.iter())
            .chain(self.inputs_read.keys())
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
pub fn shard_spec(kind: &str, version: u32, node_key: &Key, name: &str) -> KeySpec {
    KeySpec {
        stage: format!("{kind}{SHARD_SUFFIX}"),
        version,
        params: Value::from(name),
        inputs: BTreeMap::from([(SHARD_NODE_INPUT.to_string(), vec![node_key.clone()])]),
    }
}

/// Marks an index artifact's meta as sharded over these shard keys.
pub fn mark_sharded(meta: Value, shard_keys: &[Key]) -> Value {
    let mut meta = if meta.is_object() { meta } else { Value::Object(Default::default()) };
    meta[SHARDED] = Value::Bool(true);
    meta[SHARD_KEYS] = Value::from(shard_keys.iter().map(|k| k.as_str()).collect::<Vec<_>>());
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

/// What a writer records beside the table: cost, meta, what it read, and whether it
/// replaces an artifact already there (`run --force`).
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub cost: Cost,
    pub meta: Value,
    pub inputs_read: BTreeMap<Key, String>,
    pub replace: bool,
}

impl Provenance {
    pub fn new(cost: impl Into<Cost>, meta: Value) -> Self {
        Provenance { cost: cost.into(), meta, ..Default::default() }
    }
}

/// One row of `Store::list`.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: Key,
    pub manifest: Manifest,
}
