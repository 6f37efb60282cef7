//! Typed stages: what a stage declares (parameters, inputs, version) and what it gets to run.
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use mexa_store::{KeySpec, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A parameter's type, checked before anything runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamType {
    Str,
    Int,
    Float,
    Bool,
    /// A file or directory outside the store. It enters the artifact key by content hash,
    /// never by path, so moving the data or the store does not invalidate anything.
    Path,
    /// A path that may also be empty or null (optional external input).
    OptPath,
    /// A model: a folder or .gguf file, or a Hugging Face id (`owner/name[@revision]`) found
    /// in the local Hugging Face cache. Keyed by the files the loader reads
    /// (`mexa_store::models`).
    Model,
    StrList,
    IntList,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// A list whose items are each one of the listed strings.
    EnumList(&'static [&'static str]),
    /// Any JSON value.
    Any,
}

impl ParamType {
    pub fn describe(&self) -> String {
        match self {
            ParamType::Str => "a string".into(),
            ParamType::Int => "an integer".into(),
            ParamType::Float => "a number".into(),
            ParamType::Bool => "true or false".into(),
            ParamType::Path | ParamType::OptPath => "a path".into(),
            ParamType::Model => "a model folder, a .gguf file or a Hugging Face id (owner/name[@revision])".into(),
            ParamType::StrList => "a list of strings".into(),
            ParamType::IntList => "a list of integers".into(),
            ParamType::Enum(v) => format!("one of {}", v.join(", ")),
            ParamType::EnumList(v) => format!("a list of: {}", v.join(", ")),
            ParamType::Any => "any value".into(),
        }
    }

    /// Checks (and lightly coerces: an integer where a number is wanted) a value.
    pub fn check(&self, v: &Value) -> Option<Value> {
        let ok = match (self, v) {
            (ParamType::Str | ParamType::Path | ParamType::Model, Value::String(_)) => true,
            (ParamType::OptPath, Value::String(_) | Value::Null) => true,
            (ParamType::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (ParamType::Float, Value::Number(_)) => return Some(Value::from(v.as_f64()?)),
            (ParamType::Bool, Value::Bool(_)) => true,
            (ParamType::StrList, Value::Array(a)) => a.iter().all(Value::is_string),
            (ParamType::IntList, Value::Array(a)) => a.iter().all(|x| x.is_i64()),
            (ParamType::Enum(opts), Value::String(s)) => opts.contains(&s.as_str()),
            (ParamType::EnumList(opts), Value::Array(a)) => {
                a.iter().all(|x| x.as_str().is_some_and(|s| opts.contains(&s)))
            }
            (ParamType::Any, _) => true,
            _ => false,
        };
        ok.then(|| v.clone())
    }
}

/// One declared parameter.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    /// Default as JSON text; `None` means required.
    pub default: Option<&'static str>,
    pub doc: &'static str,
    /// An execution setting (device, batch sizes): it changes speed, never results, so it
    /// is left out of the artifact key; changing it leaves nodes cached.
    pub execution: bool,
}

impl ParamSpec {
    pub const fn required(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        Self { name, ty, default: None, doc, execution: false }
    }
    pub const fn optional(name: &'static str, ty: ParamType, default: &'static str, doc: &'static str) -> Self {
        Self { name, ty, default: Some(default), doc, execution: false }
    }
    /// Marks the parameter as an execution setting (see [`ParamSpec::execution`]).
    pub const fn execution(mut self) -> Self {
        self.execution = true;
        self
    }
    pub fn default_value(&self) -> Option<Value> {
        self.default.map(|d| serde_json::from_str(d).expect("param defaults are valid JSON"))
    }
}

/// One declared input slot.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name: &'static str,
    pub doc: &'static str,
    /// A gather slot receives every node of the named stage that agrees with this node's grid
    /// cell (for example a report over all models); a plain slot receives exactly one.
    pub gather: bool,
    /// May be left unconnected.
    pub optional: bool,
}

impl InputSpec {
    /// A required slot fed by exactly one node.
    pub const fn one(name: &'static str, doc: &'static str) -> Self {
        Self { name, doc, gather: false, optional: false }
    }
    /// A required slot fed by every matching node of a stage.
    pub const fn gather(name: &'static str, doc: &'static str) -> Self {
        Self { name, doc, gather: true, optional: false }
    }
    pub const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// A table: schema plus batches.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self { schema, batches }
    }
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
    /// One batch holding all rows.
    pub fn concat(&self) -> Result<RecordBatch> {
        Ok(arrow::compute::concat_batches(&self.schema, &self.batches)?)
    }
}

/// What a stage returns: its table and free-form facts for the manifest.
pub struct Output {
    pub table: Table,
    pub meta: Value,
}

impl From<Table> for Output {
    fn from(table: Table) -> Self {
        Output { table, meta: Value::Null }
    }
}

/// A stage implementation. Implementations are stateless; everything comes through [`Ctx`].
pub trait Stage: Send + Sync {
    /// The `kind:` name used in pipeline files.
    fn kind(&self) -> &'static str;
    /// Bump when the output for the same parameters and inputs changes.
    fn version(&self) -> u32;
    fn doc(&self) -> &'static str;
    fn params(&self) -> Vec<ParamSpec>;
    fn inputs(&self) -> Vec<InputSpec>;
    /// Checks a node's parameters (defaults filled in) against the stage's typed parameter
    /// struct; planning reports a failure at the stage, before anything runs. Stages with a
    /// typed struct implement it as `check::<TheirParams>(params)`.
    fn check_params(&self, _params: &Value) -> Result<()> {
        Ok(())
    }
    fn run(&self, ctx: &Ctx) -> Result<Output>;
}

/// Deserializes parameters into a stage's typed struct (for [`Stage::check_params`]).
pub fn check<P: serde::de::DeserializeOwned>(params: &Value) -> Result<()> {
    P::deserialize(params).map(|_| ()).map_err(|e| anyhow!("{e}"))
}

/// The stages a runner knows, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    stages: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, s: impl Stage + 'static) -> &mut Self {
        self.stages.insert(s.kind(), Arc::new(s));
        self
    }
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Stage>> {
        self.stages.get(kind)
    }
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.stages.keys().copied()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Stage>> {
        self.stages.values()
    }
}

/// Receives progress from inside a stage (the runner draws it as a bar).
pub trait Progress: Send + Sync {
    fn set_length(&self, _n: u64) {}
    fn inc(&self, _n: u64) {}
    fn message(&self, _msg: &str) {}
}

/// A progress sink that drops everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// An input artifact as a stage sees it.
#[derive(Debug, Clone)]
pub struct InputRef {
    pub key: String,
    pub label: String,
}

/// Everything a running stage may use.
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub key: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    pub version: u32,
    /// Parameters with defaults filled in; paths as given (absolute).
    pub params: &'a Value,
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    pub cancel: &'a AtomicBool,
    pub progress: &'a dyn Progress,
    /// Threads the stage may use (libtorch, rayon).
    pub threads: usize,
}

impl Ctx<'_> {
    /// The node's parameters as the stage's typed struct (defaults filled in at plan time,
    /// where [`Stage::check_params`] already checked them).
    pub fn typed<P: serde::de::DeserializeOwned>(&self) -> Result<P> {
        P::deserialize(self.params).map_err(|e| anyhow!("{}: parameters: {e}", self.label))
    }
    /// The single artifact feeding slot `name`.
    pub fn input(&self, name: &str) -> Result<&InputRef> {
        match self.inputs.get(name).map(Vec::as_slice) {
            Some([one]) => Ok(one),
            Some(many) => bail!("{}: input `{name}` has {} artifacts, expected one", self.label, many.len()),
            None => bail!("{}: input `{name}` is not connected", self.label),
        }
    }

    /// All artifacts feeding a gather slot.
    pub fn gathered(&self, name: &str) -> &[InputRef] {
        self.inputs.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Reads an input artifact; a sharded artifact is read shard by shard and concatenated.
    pub fn read(&self, input: &InputRef) -> Result<Table> {
        let (schema, batches) = read_stitched(self.store, &input.key).with_context(|| input.label.clone())?;
        Ok(Table::new(schema, batches))
    }

    /// (shard name, shard key) of a sharded artifact; empty for a plain one.
    pub fn shards_of(&self, input: &InputRef) -> Result<Vec<(String, String)>> {
        shards_of(self.store, &input.key)
    }

    /// Reads one shard table by key.
    pub fn read_key(&self, key: &str) -> Result<Table> {
        let (schema, batches) = self.store.read(key)?;
        Ok(Table::new(schema, batches))
    }

    /// Computes (or finds cached) one shard of this node's output. Each shard is its own
    /// artifact, so an interrupted node loses at most the shards in flight. Returns its key.
    pub fn shard(&self, name: &str, compute: impl FnOnce() -> Result<Output>) -> Result<String> {
        let spec = KeySpec {
            stage: format!("{}#shard", self.kind),
            version: self.version,
            params: Value::from(name),
            inputs: BTreeMap::from([("node".to_string(), vec![self.key.to_string()])]),
        };
        let key = mexa_store::key_of(&spec);
        if self.store.contains(&key) {
            return Ok(key);
        }
        let _lock = self
            .store
            .lock(&key, || tracing::info!("{}: shard {name} is being computed elsewhere; waiting", self.label))?;
        if self.store.contains(&key) {
            return Ok(key);
        }
        if self.cancel.load(Ordering::SeqCst) {
            bail!("cancelled");
        }
        let t = Instant::now();
        let out = compute().with_context(|| format!("shard {name}"))?;
        let label = format!("{} shard {name}", self.label);
        self.store.write(spec, &label, out.table.schema, &out.table.batches, t.elapsed().as_secs_f64(), out.meta)?;
        Ok(key)
    }

    /// Builds the index table of a sharded output from (shard, key) pairs.
    pub fn shard_index(pairs: &[(String, String)], meta: Value) -> Result<Output> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("shard", DataType::Utf8, false),
            Field::new("shard_key", DataType::Utf8, false),
        ]));
        let names = StringArray::from(pairs.iter().map(|p| p.0.as_str()).collect::<Vec<_>>());
        let keys = StringArray::from(pairs.iter().map(|p| p.1.as_str()).collect::<Vec<_>>());
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(names), Arc::new(keys)])?;
        let mut meta = if meta.is_object() { meta } else { Value::Object(Default::default()) };
        meta["sharded"] = Value::Bool(true);
        // The shard keys, also in the manifest, so completeness is checked without reading
        // the index (Store::complete).
        meta["shard_keys"] = Value::from(pairs.iter().map(|p| p.1.clone()).collect::<Vec<_>>());
        Ok(Output { table: Table::new(schema, vec![b]), meta })
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// An artifact's data: its table, or for a sharded artifact its shards' tables in order.
pub fn read_stitched(store: &Store, key: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let shards = shards_of(store, key)?;
    if shards.is_empty() {
        return store.read(key);
    }
    let (mut schema, mut batches) = (None, Vec::new());
    for (_, k) in shards {
        let (s, b) = store.read(&k)?;
        schema.get_or_insert(s);
        batches.extend(b);
    }
    Ok((schema.ok_or_else(|| anyhow!("a sharded artifact with no shards"))?, batches))
}

/// (shard name, shard key) of a sharded artifact (`meta.sharded`); empty for a plain one.
pub fn shards_of(store: &Store, key: &str) -> Result<Vec<(String, String)>> {
    let m = store.manifest(key)?;
    if m.meta.get("sharded").and_then(Value::as_bool) != Some(true) {
        return Ok(vec![]);
    }
    let (_, batches) = store.read(key)?;
    let mut out = Vec::new();
    for b in batches {
        let names = string_col(&b, "shard")?;
        let keys = string_col(&b, "shard_key")?;
        for i in 0..b.num_rows() {
            out.push((names.value(i).to_string(), keys.value(i).to_string()));
        }
    }
    Ok(out)
}

/// A named Utf8 column of a batch.
pub fn string_col<'b>(b: &'b RecordBatch, name: &str) -> Result<&'b StringArray> {
    b.column_by_name(name)
        .ok_or_else(|| anyhow!("column `{name}` missing"))?
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| anyhow!("column `{name}` is not a string column"))
}
