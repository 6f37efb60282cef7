//! Named weight tensors from safetensors (one file or sharded with an index) or GGUF, under
//! Hugging Face's parameter names with the base-model prefix stripped (`layers.0.mlp.up_proj.weight`).
use crate::device::Placement;
use crate::gguf::Gguf;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Prefixes that wrap a base model's parameters in task or multimodal checkpoints.
const PREFIXES: &[&str] =
    &["language_model.model.", "model.language_model.", "model.", "bert.", "roberta.", "transformer."];

pub struct Weights {
    map: HashMap<String, Tensor>,
    /// Weights kept in their file's form ([`Weights::from_gguf`], [`Weights::from_safetensors_stored`]).
    pub(crate) stored: HashMap<String, std::sync::Arc<Stored>>,
    pub(crate) source: String,
    pub kind: Kind,
    /// Where each weight goes (one device, or a decoder's layers split over several).
    pub placement: Placement,
}

fn strip_prefix(name: &str) -> &str {
    for p in PREFIXES {
        if let Some(rest) = name.strip_prefix(p) {
            return rest;
        }
    }
    name
}

impl Weights {
    pub fn new(source: String, kind: Kind, placement: impl Into<Placement>) -> Self {
        Self { map: HashMap::new(), stored: HashMap::new(), source, kind, placement: placement.into() }
    }

    /// The device of the token embeddings (the first of a split).
    pub fn device(&self) -> Device {
        self.placement.first()
    }

    pub fn insert(&mut self, name: &str, t: Tensor) {
        let t = if t.is_floating_point() { t.to_kind(self.kind) } else { t };
        let name = strip_prefix(name);
        self.map.insert(name.to_string(), t.to_device(self.placement.of_weight(name)));
    }

    /// Loads `model.safetensors`, or every shard named in `model.safetensors.index.json`.
    pub fn from_safetensors_dir(dir: &Path, kind: Kind, placement: impl Into<Placement>) -> Result<Self> {
        let mut w = Self::new(dir.display().to_string(), kind, placement);
        for f in safetensors_files(dir)? {
            let tensors =
                Tensor::read_safetensors(&f).with_context(|| format!("{}: cannot read safetensors", f.display()))?;
            for (name, t) in tensors {
                w.insert(&name, t);
            }
        }
        Ok(w)
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map.get(name).ok_or_else(|| anyhow!("{}: missing weight `{name}`", self.source))
    }

    /// A weight that may be absent, dense (see [`Weights::dense`]): loaded dense or stored.
    pub fn opt(&self, name: &str) -> Option<Tensor> {
        self.dense(name).ok()
    }

    /// A weight that must have exactly `shape`.
    pub fn shaped(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let t = self.dense(name)?;
        if t.size() != shape {
            bail!("{}: weight `{name}` has shape {:?}, expected {:?}", self.source, t.size(), shape);
        }
        Ok(t)
    }

    /// A weight as a dense tensor, whether it loaded dense or was kept stored (then converted
    /// now, for a caller that holds it whole: a norm, a bias, a position table).
    pub fn dense(&self, name: &str) -> Result<Tensor> {
        match self.stored.get(name) {
            Some(s) => Ok(s.dense()),
            None => Ok(self.get(name)?.shallow_clone()),
        }
    }

    pub fn opt_shaped(&self, name: &str, shape: &[i64]) -> Result<Option<Tensor>> {
        match self.map.contains_key(name) || self.stored.contains_key(name) {
            true => self.shaped(name, shape).map(Some),
            false => Ok(None),
        }
    }

    /// Drops a tensor, dense or stored (a part the caller will not use).
    pub fn remove(&mut self, name: &str) {
        self.map.remove(name);
        self.stored.remove(name);
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }
}

/// A model folder's safetensors files: `model.safetensors`, or every shard that
/// `model.safetensors.index.json` names.
pub fn safetensors_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.is_file() {
        return Ok(vec![single]);
    }
    if !index.is_file() {
        bail!("{}: no model.safetensors or model.safetensors.index.json", dir.display());
    }
    let v: serde_json::Value = mexa_core::file::read_json(&index, mexa_core::FileKind::Config)?;
    let map = v["weight_map"].as_object().ok_or_else(|| anyhow!("{}: no weight_map", index.display()))?;
    let mut shards: Vec<String> = map.values().filter_map(|s| s.as_str().map(str::to_string)).collect();
    shards.sort();
    shards.dedup();
    Ok(shards.into_iter().map(|s| dir.join(s)).collect())
}

/// A model file, memory-mapped read-only.
fn map_file(path: &Path) -> Result<std::sync::Arc<memmap2::Mmap>> {
    let file = mexa_core::file::open(path, mexa_core::FileKind::Model)?;
    // SAFETY: the file is opened read-only and mexa never writes model files; a model
    // changed underneath a running process is outside what any loader can defend.
    let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("memory-mapping {}", path.display()))?;
    Ok(std::sync::Arc::new(map))
}

/// One tensor in a safetensors file's header: its dtype name (`F32`, `BF16`, …), shape,
/// and byte range counted from the end of the header.
#[derive(Debug, Clone)]
pub struct SafetensorsEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    pub start: usize,
    pub end: usize,
}

/// A safetensors file's header, read alone (8-byte length, then JSON): where the data
/// begins, and every tensor in it.
pub fn safetensors_header(file: &Path) -> Result<(usize, Vec<SafetensorsEntry>)> {
    use std::io::Read;
    let mut f = mexa_core::file::open(file, mexa_core::FileKind::Model)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).with_context(|| format!("{}: not a safetensors file", file.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!("{}: a safetensors header of {len} bytes; refused", file.display());
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).with_context(|| format!("{}: truncated header", file.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).with_context(|| format!("{}: invalid header", file.display()))?;
    let obj = v.as_object().ok_or_else(|| anyhow!("{}: the header is not an object", file.display()))?;
    let mut out = Vec::new();
    for (name, t) in obj.iter().filter(|(k, _)| *k != "__metadata__") {
        let bad = || anyhow!("{}: tensor `{name}` has no valid dtype, shape and data_offsets", file.display());
        let shape = t["shape"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|d| d.as_i64().ok_or_else(bad))
            .collect::<Result<Vec<_>>>()?;
        let offs = t["data_offsets"].as_array().ok_or_else(bad)?;
        let (start, end) = match offs.as_slice() {
            [a, b] => (a.as_u64().ok_or_else(bad)? as usize, b.as_u64().ok_or_else(bad)? as usize),
            _ => return Err(bad()),
        };
        let dtype = t["dtype"].as_str().ok_or_else(bad)?.to_string();
        out.push(SafetensorsEntry { name: name.clone(), dtype, shape, start, end });
    }
    Ok((8 + len as usize, out))
}

/// The number of values in a safetensors file, from its header alone.
pub fn safetensors_numel(file: &Path) -> Result<u64> {
    Ok(safetensors_header(file)?.1.iter().map(|e| e.shape.iter().product::<i64>() as u64).sum())
}

/// The libtorch dtype of a safetensors dtype name.
fn safetensors_kind(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F64" => Kind::Double,
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "I64" => Kind::Int64,
        "I32" => Kind::Int,
        "I16" => Kind::Int16,
        "I8" => Kind::Int8,
        "U8" => Kind::Uint8,
        "BOOL" => Kind::Bool,
        _ => return None,
    })
}

/// How a stored weight's bytes encode its values.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// GGUF blocks (quantised or not).
    Ggml(crate::gguf::GgmlType),
    /// Plain little-endian values of a libtorch dtype (safetensors).
    Plain(Kind),
}

/// A weight kept as the file stores it (GGUF blocks or safetensors values, in a memory map)
/// and made dense only for the moment it is used: [`Stored::dense`] converts it exactly as
/// the dense loader does (same values, same `fix`, same dtype conversion), so results are
/// bit-identical while only the file's pages are held (and the kernel may drop them).
pub struct Stored {
    map: std::sync::Arc<memmap2::Mmap>,
    offset: usize,
    enc: Encoding,
    shape: Vec<i64>,
    name: String,
    kind: Kind,
    device: Device,
    fix: std::sync::Arc<dyn Fn(&str, Tensor) -> Tensor + Send + Sync>,
    /// Hand the file's pages back after each use ([`Weights::release_pages`]).
    release: bool,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stored({} {:?} {:?})", self.name, self.enc, self.shape)
    }
}

impl Stored {
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    fn numel(&self) -> usize {
        self.shape.iter().product::<i64>() as usize
    }

    /// The bytes of one row (the last dimension).
    fn row_bytes(&self) -> usize {
        let width = *self.shape.last().unwrap_or(&1) as usize;
        match self.enc {
            Encoding::Ggml(ty) => {
                let (bv, bb) = ty.block();
                width / bv * bb
            }
            Encoding::Plain(k) => width * k.elt_size_in_bytes(),
        }
    }

    fn bytes(&self) -> &[u8] {
        let rows = self.numel() / (*self.shape.last().unwrap_or(&1) as usize).max(1);
        &self.map[self.offset..self.offset + rows * self.row_bytes()]
    }

    /// Values in the file's encoding → a CPU tensor of `shape` as the dense loader first
    /// holds it: GGUF blocks dequantised to f32, safetensors values in their own dtype.
    fn raw(&self, bytes: &[u8], shape: &[i64]) -> Tensor {
        match self.enc {
            Encoding::Ggml(ty) => {
                let n = shape.iter().product::<i64>() as usize;
                let t = Tensor::empty(shape, (Kind::Float, Device::Cpu));
                // SAFETY: a fresh contiguous f32 CPU tensor of exactly n elements, not aliased.
                let out = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) };
                crate::gguf::dequantize_into(ty, bytes, out).expect("sizes were checked when the model loaded");
                t
            }
            Encoding::Plain(k) => Tensor::from_data_size(bytes, shape, k),
        }
    }

    /// The whole weight, dense, in the model's dtype and on its device (`fix` applied to the
    /// loaded values before the dtype conversion, as the dense loader does).
    pub fn dense(&self) -> Tensor {
        let t = (self.fix)(&self.name, self.raw(self.bytes(), &self.shape)).to_kind(self.kind).to_device(self.device);
        self.let_go();
        t
    }

    /// With `release`, drops this weight's pages from the process (MADV_DONTNEED on a
    /// read-only file mapping: the next read faults them in again from the page cache or
    /// the file), so resident memory holds about one layer's file bytes at a time.
    fn let_go(&self) {
        self.let_go_range(0, self.bytes().len());
    }

    /// [`Stored::let_go`] for `len` bytes of this weight from byte `start`.
    fn let_go_range(&self, start: usize, len: usize) {
        if self.release {
            // SAFETY: the mapping is read-only and backed by the file, so dropping its pages
            // changes no value any reader sees; no slice of it outlives `raw`.
            let _ = unsafe {
                self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, self.offset + start, len)
            };
        }
    }

    /// Whether this weight's pages are handed back after each use.
    pub fn releases(&self) -> bool {
        self.release
    }

    /// Rows `start..start + len` of a 2-D weight, dense: only those rows are read (and,
    /// with `release`, handed back). Equal to `dense().narrow(0, start, len)` for a weight
    /// whose `fix` does not reorder rows (an embedding table or LM head).
    pub fn row_range(&self, start: i64, len: i64) -> Tensor {
        let rb = self.row_bytes();
        let (a, b) = (start as usize * rb, (start + len) as usize * rb);
        let t = self.raw(&self.bytes()[a..b], &[len, self.shape[1]]).to_kind(self.kind).to_device(self.device);
        self.let_go_range(a, b - a);
        t
    }

    /// The dtype and device [`Stored::dense`] and [`Stored::row_range`] give.
    pub fn kind_device(&self) -> (Kind, Device) {
        (self.kind, self.device)
    }

    /// Rows `ids` of a 2-D weight (an embedding table), dense: only those rows are read.
    /// Equal to `dense().index_select(0, ids)`.
    pub fn rows(&self, ids: &[i64]) -> Tensor {
        let rows = self.shape[0];
        let rb = self.row_bytes();
        let bytes = self.bytes();
        let mut picked = Vec::with_capacity(ids.len() * rb);
        for &r in ids {
            assert!((0..rows).contains(&r), "token id {r} outside the {rows}-row table");
            picked.extend_from_slice(&bytes[r as usize * rb..(r as usize + 1) * rb]);
        }
        self.let_go();
        self.raw(&picked, &[ids.len() as i64, self.shape[1]]).to_kind(self.kind).to_device(self.device)
    }
}

impl Weights {
    /// Loads every GGUF tensor that `rename` maps to a parameter name, placed for a model of
    /// `layers` layers, as `opts` asks. `fix` may transform a tensor given its new name (for
    /// example undo llama.cpp's Q/K permutation), before the conversion to `opts.kind`. With
    /// `opts.stored_weights`, the tensors `stored` picks stay in the file's blocks
    /// (memory-mapped) and become dense only while used ([`Weights::weight`] returns them as
    /// [`crate::layers::Weight::Stored`]; their rows must split into whole blocks, checked
    /// here), handing their pages back after each use with `opts.release_pages`; every other
    /// tensor is dequantised to f32 now.
    pub fn from_gguf(
        g: &Gguf,
        opts: &crate::LoadOptions,
        layers: i64,
        rename: impl Fn(&str) -> Option<String>,
        fix: impl Fn(&str, Tensor) -> Tensor + Send + Sync + 'static,
        stored: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let map = map_file(&g.path)?;
        let fix: std::sync::Arc<dyn Fn(&str, Tensor) -> Tensor + Send + Sync> = std::sync::Arc::new(fix);
        let mut w = Self::new(g.path.display().to_string(), opts.kind, opts.placement(layers));
        for t in &g.tensors {
            let Some(name) = rename(&t.name) else { continue };
            let (bv, _) = t.ty.block();
            let splits = t.shape.len() == 2 && t.shape[1] % bv == 0;
            if opts.stored_weights && stored(&name) && splits && (t.offset as usize + t.byte_len()) <= map.len() {
                let shape = t.shape.iter().map(|&d| d as i64).collect();
                w.keep_stored(&map, t.offset as usize, Encoding::Ggml(t.ty), shape, &name, fix.clone());
                continue;
            }
            let raw = g.read_raw(t)?;
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            // Dequantise straight into the tensor's memory: no second f32 copy of each tensor.
            let tensor = Tensor::empty(&shape, (Kind::Float, Device::Cpu));
            // SAFETY: `tensor` is a fresh, contiguous f32 CPU tensor of exactly numel elements,
            // owned here and not aliased while the slice lives.
            let out = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut f32, t.numel()) };
            crate::gguf::dequantize_into(t.ty, &raw, out)?;
            drop(raw);
            w.insert(&name, fix(&name, tensor));
        }
        if opts.release_pages {
            w.release_pages();
        }
        Ok(w)
    }

    /// Like [`Weights::from_safetensors_dir`], but the 2-D floating-point tensors `stored`
    /// picks stay in the memory-mapped files and are converted to the compute dtype only
    /// while used; the others load dense.
    pub fn from_safetensors_stored(
        dir: &Path,
        kind: Kind,
        placement: impl Into<Placement>,
        stored: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let mut w = Self::new(dir.display().to_string(), kind, placement);
        let same: std::sync::Arc<dyn Fn(&str, Tensor) -> Tensor + Send + Sync> = std::sync::Arc::new(|_, t| t);
        for f in safetensors_files(dir)? {
            let map = map_file(&f)?;
            let (data, entries) = safetensors_header(&f)?;
            for e in entries {
                let k = safetensors_kind(&e.dtype).ok_or_else(|| {
                    anyhow!("{}: tensor `{}` has dtype {}, which mexa does not read", f.display(), e.name, e.dtype)
                })?;
                let numel = e.shape.iter().product::<i64>() as usize;
                let (start, end) = (data + e.start, data + e.end);
                if end > map.len() || end - start != numel * k.elt_size_in_bytes() {
                    bail!("{}: tensor `{}`'s data_offsets do not fit its shape and the file", f.display(), e.name);
                }
                let name = strip_prefix(&e.name).to_string();
                if stored(&name)
                    && e.shape.len() == 2
                    && matches!(k, Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double)
                {
                    w.keep_stored(&map, start, Encoding::Plain(k), e.shape, &name, same.clone());
                } else {
                    w.insert(&name, Tensor::from_data_size(&map[start..end], &e.shape, k));
                }
            }
        }
        Ok(w)
    }

    fn keep_stored(
        &mut self,
        map: &std::sync::Arc<memmap2::Mmap>,
        offset: usize,
        enc: Encoding,
        shape: Vec<i64>,
        name: &str,
        fix: std::sync::Arc<dyn Fn(&str, Tensor) -> Tensor + Send + Sync>,
    ) {
        let name = strip_prefix(name).to_string();
        let s = Stored {
            map: map.clone(),
            offset,
            enc,
            shape,
            kind: self.kind,
            device: self.placement.of_weight(&name),
            name: name.clone(),
            fix,
            release: false,
        };
        self.stored.insert(name, std::sync::Arc::new(s));
    }

    /// Makes every stored weight hand its file pages back after each use (for a run under a
    /// memory budget smaller than the file). Call before a model takes the weights.
    pub fn release_pages(&mut self) {
        for s in self.stored.values_mut() {
            if let Some(s) = std::sync::Arc::get_mut(s) {
                s.release = true;
            }
        }
    }

    /// A 2-D weight of any shape (an embedding table): stored or dense.
    pub fn matrix(&self, name: &str) -> Result<crate::layers::Weight> {
        match self.stored.get(name) {
            Some(s) => Ok(crate::layers::Weight::Stored(s.clone())),
            None => Ok(crate::layers::Weight::Dense(self.get(name)?.shallow_clone())),
        }
    }

    /// [`Weights::matrix`] for a weight that may be absent.
    pub fn opt_matrix(&self, name: &str) -> Option<crate::layers::Weight> {
        self.matrix(name).ok()
    }

    /// A weight of exactly `shape`: stored if it was kept in its file's form, else dense.
    pub fn weight(&self, name: &str, shape: &[i64]) -> Result<crate::layers::Weight> {
        if let Some(s) = self.stored.get(name) {
            if s.shape() != shape {
                bail!("{}: weight `{name}` has shape {:?}, expected {:?}", self.source, s.shape(), shape);
            }
            return Ok(crate::layers::Weight::Stored(s.clone()));
        }
        Ok(crate::layers::Weight::Dense(self.shaped(name, shape)?))
    }
}
