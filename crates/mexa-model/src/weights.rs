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
        Self { map: HashMap::new(), source, kind, device }
    }

    pub fn insert(&mut self, name: &str, t: Tensor) {
        let t = if t.is_floating_point() { t.to_kind(self.kind) } else { t };
        self.map.insert(strip_prefix(name).to_string(), t.to_device(self.device));
    }

    /// Loads `model.safetensors`, or every shard named in `model.safetensors.index.json`.
    pub fn from_safetensors_dir(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let mut w = Self::new(dir.display().to_string(), kind, device);
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<std::path::PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index)?)
                .with_context(|| format!("{}: invalid JSON", index.display()))?;
            let map = v["weight_map"].as_object().ok_or_else(|| anyhow!("{}: no weight_map", index.display()))?;
            let mut shards: Vec<String> = map.values().filter_map(|s| s.as_str().map(str::to_string)).collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            bail!("{}: no model.safetensors or model.safetensors.index.json", dir.display());
        };
        for f in files {
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
