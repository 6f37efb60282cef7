//! Named weight tensors from safetensors (one file or sharded with an index) or GGUF, under
//! Hugging Face's parameter names with the base-model prefix stripped (`layers.0.mlp.up_proj.weight`).
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
    /// Weights kept in their file's form ([`Weights::from_gguf_stored`]).
    pub(crate) stored: HashMap<String, std::sync::Arc<Stored>>,
    pub(crate) source: String,
    pub kind: Kind,
    pub device: Device,
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
    pub fn new(source: String, kind: Kind, device: Device) -> Self {
        Self { map: HashMap::new(), stored: HashMap::new(), source, kind, device }
    }

    pub fn insert(&mut self, name: &str, t: Tensor) {
        let t = if t.is_floating_point() { t.to_kind(self.kind) } else { t };
        self.map.insert(strip_prefix(name).to_string(), t.to_device(self.device));
    }

    /// Loads `model.safetensors`, or every shard named in `model.safetensors.index.json`.
    pub fn from_safetensors_dir(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let mut w = Self::new(dir.display().to_string(), kind, device);
        for f in safetensors_files(dir)? {
            let tensors =
                Tensor::read_safetensors(&f).with_context(|| format!("{}: cannot read safetensors", f.display()))?;
            for (name, t) in tensors {
                w.insert(&name, t);
            }
        }
        Ok(w)
    }

    /// Loads every GGUF tensor that `rename` maps to a parameter name, dequantised to f32
    /// and then converted to `kind`. `fix` may transform a tensor (for example undo
    /// llama.cpp's Q/K permutation) given its new name.
    pub fn from_gguf(
        g: &Gguf,
        kind: Kind,
        device: Device,
        rename: impl Fn(&str) -> Option<String>,
        fix: impl Fn(&str, Tensor) -> Tensor,
    ) -> Result<Self> {
        let mut w = Self::new(g.path.display().to_string(), kind, device);
        for t in &g.tensors {
            let Some(name) = rename(&t.name) else { continue };
            let raw = g.read_raw(t)?;
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            // Dequantise straight into the tensor's memory: no second f32 copy of each tensor.
            let tensor = Tensor::empty(&shape, (Kind::Float, Device::Cpu));
            // SAFETY: `tensor` is a fresh, contiguous f32 CPU tensor of exactly numel elements,
            // owned here and not aliased while the slice lives.
            let out = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut f32, t.numel()) };
            crate::gguf::dequantize_into(t.ty, &raw, out)?;
            drop(raw);
            let tensor = fix(&name, tensor);
            w.insert(&name, tensor);
        }
        Ok(w)
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map.get(name).ok_or_else(|| anyhow!("{}: missing weight `{name}`", self.source))
    }

    pub fn opt(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }

    /// A weight that must have exactly `shape`.
    pub fn shaped(&self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.size() != shape {
            bail!("{}: weight `{name}` has shape {:?}, expected {:?}", self.source, t.size(), shape);
        }
        Ok(t.shallow_clone())
    }

    pub fn opt_shaped(&self, name: &str, shape: &[i64]) -> Result<Option<Tensor>> {
        match self.map.contains_key(name) {
            true => self.shaped(name, shape).map(Some),
            false => Ok(None),
        }
    }

    /// Drops a tensor (a part the caller will not use).
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.map.remove(name)
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
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index)?)
        .with_context(|| format!("{}: invalid JSON", index.display()))?;
    let map = v["weight_map"].as_object().ok_or_else(|| anyhow!("{}: no weight_map", index.display()))?;
    let mut shards: Vec<String> = map.values().filter_map(|s| s.as_str().map(str::to_string)).collect();
    shards.sort();
    shards.dedup();
    Ok(shards.into_iter().map(|s| dir.join(s)).collect())
}

/// The number of values in a safetensors file, from its header alone (8-byte length, then
/// JSON with each tensor's shape).
pub fn safetensors_numel(file: &Path) -> Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
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
    Ok(obj
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| t["shape"].as_array().map(|s| s.iter().filter_map(|d| d.as_u64()).product::<u64>()).unwrap_or(0))
        .sum())
}

/// A weight kept as the file stores it (GGUF blocks in a memory map) and made dense only for
/// the moment it is used: [`Stored::dense`] dequantises it exactly as the dense loader does
/// (same values, same `fix`, same dtype conversion), so results are bit-identical while only
/// the quantised bytes stay resident.
pub struct Stored {
    map: std::sync::Arc<memmap2::Mmap>,
    offset: usize,
    ty: crate::gguf::GgmlType,
    shape: Vec<i64>,
    name: String,
    kind: Kind,
    device: Device,
    fix: std::sync::Arc<dyn Fn(&str, Tensor) -> Tensor + Send + Sync>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stored({} {:?} {:?})", self.name, self.ty, self.shape)
    }
}

impl Stored {
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    fn numel(&self) -> usize {
        self.shape.iter().product::<i64>() as usize
    }

    fn bytes(&self) -> &[u8] {
        let (bv, bb) = self.ty.block();
        &self.map[self.offset..self.offset + self.numel() / bv * bb]
    }

    /// The whole weight, dense, in the model's dtype and device.
    pub fn dense(&self) -> Tensor {
        let t = Tensor::empty(self.shape.as_slice(), (Kind::Float, Device::Cpu));
        // SAFETY: a fresh contiguous f32 CPU tensor of exactly numel elements, not aliased.
        let out = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, self.numel()) };
        crate::gguf::dequantize_into(self.ty, self.bytes(), out).expect("sizes were checked when the model loaded");
        (self.fix)(&self.name, t).to_kind(self.kind).to_device(self.device)
    }

    /// Rows `ids` of a 2-D weight (an embedding table), dense: only the blocks of those rows
    /// are dequantised. Equal to `dense().index_select(0, ids)`.
    pub fn rows(&self, ids: &[i64]) -> Tensor {
        let (rows, width) = (self.shape[0], self.shape[1] as usize);
        let (bv, bb) = self.ty.block();
        let row_bytes = width / bv * bb;
        let t = Tensor::empty([ids.len() as i64, width as i64], (Kind::Float, Device::Cpu));
        // SAFETY: as in `dense`, a fresh contiguous f32 tensor of ids.len() × width values.
        let out = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, ids.len() * width) };
        let bytes = self.bytes();
        for (k, &r) in ids.iter().enumerate() {
            assert!((0..rows).contains(&r), "token id {r} outside the {rows}-row table");
            let src = &bytes[r as usize * row_bytes..(r as usize + 1) * row_bytes];
            crate::gguf::dequantize_into(self.ty, src, &mut out[k * width..(k + 1) * width])
                .expect("sizes were checked when the model loaded");
        }
        t.to_kind(self.kind).to_device(self.device)
    }
}

impl Weights {
    /// Like [`Weights::from_gguf`], but the tensors `stored` picks stay in the file's blocks
    /// (memory-mapped) and become dense only while used ([`Weights::weight`] returns them as
    /// [`crate::layers::Weight::Stored`]); the others load dense. A stored tensor's rows
    /// must split into whole blocks (checked here).
    pub fn from_gguf_stored(
        g: &Gguf,
        kind: Kind,
        device: Device,
        rename: impl Fn(&str) -> Option<String>,
        fix: impl Fn(&str, Tensor) -> Tensor + Send + Sync + 'static,
        stored: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let file = std::fs::File::open(&g.path).with_context(|| format!("opening {}", g.path.display()))?;
        // SAFETY: the file is opened read-only and mexa never writes model files; a model
        // changed underneath a running process is outside what any loader can defend.
        let map = std::sync::Arc::new(unsafe { memmap2::Mmap::map(&file) }.context("memory-mapping the GGUF")?);
        let fix: std::sync::Arc<dyn Fn(&str, Tensor) -> Tensor + Send + Sync> = std::sync::Arc::new(fix);
        let mut w = Self::new(g.path.display().to_string(), kind, device);
        for t in &g.tensors {
            let Some(name) = rename(&t.name) else { continue };
            let (bv, _) = t.ty.block();
            let splits = t.shape.len() == 2 && t.shape[1] % bv == 0;
            if stored(&name) && splits && (t.offset as usize + t.byte_len()) <= map.len() {
                let s = Stored {
                    map: map.clone(),
                    offset: t.offset as usize,
                    ty: t.ty,
                    shape: t.shape.iter().map(|&d| d as i64).collect(),
                    name: name.clone(),
                    kind,
                    device,
                    fix: fix.clone(),
                };
                w.stored.insert(strip_prefix(&name).to_string(), std::sync::Arc::new(s));
                continue;
            }
            let raw = g.read_raw(t)?;
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            let tensor = Tensor::empty(&shape, (Kind::Float, Device::Cpu));
            // SAFETY: as in `from_gguf`.
            let out = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut f32, t.numel()) };
            crate::gguf::dequantize_into(t.ty, &raw, out)?;
            w.insert(&name, fix(&name, tensor));
        }
        Ok(w)
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
