//! Loading a model from a path (Hugging Face folder or GGUF file) into a network plus its
//! tokenizer, and the interface every architecture implements.
use crate::bert::{self, Bert};
use crate::bloom::{self, Bloom};
use crate::cohere::{self, Cohere};
use crate::device::Placement;
use crate::gemma::{self, Gemma};
use crate::gguf::Gguf;
use crate::llama::{self, Llama};
use crate::olmo::{self, Olmo};
use crate::tokenizer::{BosPolicy, TextTokenizer};
use crate::weights::Weights;
use crate::xglm::{self, Xglm};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The dimension methods of [`HiddenStates`] that every family answers the same way: hidden
/// states = layers + 1 (the embedding output), the width, and the embedding table's rows.
macro_rules! hidden_dims {
    ($layers:ident, $hidden:ident, $table:ident) => {
        fn num_hidden_states(&self) -> usize {
            self.cfg.$layers as usize + 1
        }
        fn hidden_size(&self) -> usize {
            self.cfg.$hidden as usize
        }
        fn vocab_rows(&self) -> Option<i64> {
            Some(self.$table.size()[0])
        }
    };
}
pub(crate) use hidden_dims;

/// The [`HiddenStates`] methods of a family that implements [`crate::layers::Decoder`]:
/// forward, streamed and layer-major runs, all through the one driver in layers.rs.
macro_rules! decoder_runs {
    () => {
        fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
            Ok(crate::layers::states(self, ids, &crate::layers::Layout::Padded(mask)))
        }
        fn forward_each(&self, ids: &Tensor, mask: &Tensor, sink: &mut dyn FnMut(usize, Tensor)) -> Result<()> {
            crate::layers::run_each(self, ids, &crate::layers::Layout::Padded(mask), sink);
            Ok(())
        }
        fn forward_chunk(
            &self,
            batches: &[(Tensor, Tensor)],
            sink: &mut dyn FnMut(usize, usize, Tensor),
        ) -> Result<()> {
            crate::layers::run_chunk(self, batches, sink);
            Ok(())
        }
    };
}
pub(crate) use decoder_runs;

/// What every architecture provides: all hidden states for a padded batch.
pub trait HiddenStates: Send {
    /// Embedding output plus one per layer.
    fn num_hidden_states(&self) -> usize;
    fn hidden_size(&self) -> usize;
    /// Rows of the token-embedding table: every token id must be below it.
    fn vocab_rows(&self) -> Option<i64> {
        None
    }
    /// Decoder (causal) or encoder.
    fn causal(&self) -> bool {
        true
    }
    /// `ids` and `mask` are [B, T] (int64; mask 1 for tokens, 0 for padding on the right).
    /// Returns `num_hidden_states()` tensors of [B, T, D], as Hugging Face's
    /// `output_hidden_states=True` (the last one after the final norm, for decoders).
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>>;
    /// [`HiddenStates::forward`], handing each hidden state to `sink` (in order) as soon as it
    /// exists, so a caller that pools can let it go instead of holding every layer's states of
    /// the batch at once. The default runs `forward`; the Llama family streams.
    fn forward_each(&self, ids: &Tensor, mask: &Tensor, sink: &mut dyn FnMut(usize, Tensor)) -> Result<()> {
        for (i, h) in self.forward(ids, mask)?.into_iter().enumerate() {
            sink(i, h);
        }
        Ok(())
    }
    /// [`HiddenStates::forward_each`] over several batches (`(ids, mask)` pairs): `sink(batch,
    /// state, tensor)`. The default runs them one after another; decoders run them
    /// layer-major (each layer's weights made dense once for all the batches), with the
    /// same results.
    fn forward_chunk(&self, batches: &[(Tensor, Tensor)], sink: &mut dyn FnMut(usize, usize, Tensor)) -> Result<()> {
        for (b, (ids, mask)) in batches.iter().enumerate() {
            self.forward_each(ids, mask, &mut |i, h| sink(b, i, h))?;
        }
        Ok(())
    }
    /// The hidden states of a packed prompt tree: explicit `positions` [B, T] (int64) and the
    /// keys each query may see, `allowed` [B, T, T] (bool). A shared prompt is run once for
    /// all its continuations this way ([`crate::score`]).
    /// Whether [`HiddenStates::forward_packed`] is implemented.
    fn packs(&self) -> bool {
        false
    }
    fn forward_packed(&self, _ids: &Tensor, _positions: &Tensor, _allowed: &Tensor) -> Result<Vec<Tensor>> {
        bail!("this architecture does not run packed prompts")
    }
    /// Next-token logits [.., V] from final hidden states [.., D] (the last of `forward`'s
    /// states, after the final norm). Needs the model loaded with `LoadOptions::lm_head`
    /// when its head is not tied to the embeddings.
    fn logits(&self, _hidden: &Tensor) -> Result<Tensor> {
        bail!("mexa has no LM head for this architecture (log-likelihoods need a Llama-family or Gemma decoder)")
    }
    /// The logit lens, first half: rows of hidden state `state` (an index into
    /// [`HiddenStates::forward`]'s list) [P, D] read as if they were the last layer's: through
    /// the final norm (the last state already has it), on the LM head's device.
    fn lens_norm(&self, _state: usize, _hidden: &Tensor) -> Result<Tensor> {
        bail!("mexa has no logit lens for this architecture (it needs a Llama-family or Gemma decoder)")
    }
    /// The logit lens, second half: for each row of [`HiddenStates::lens_norm`]'s output
    /// (rows of any states together), the id of the most likely next token under the LM
    /// head. Returns [P] int64.
    fn lens_top1(&self, _normed: &Tensor) -> Result<Tensor> {
        bail!("mexa has no logit lens for this architecture (it needs a Llama-family or Gemma decoder)")
    }
}

/// A required integer of a Hugging Face config.json.
/// A required dimension of a Hugging Face config.json: a positive integer (a zero head count
/// would otherwise divide by zero further on).
pub(crate) fn req(v: &serde_json::Value, k: &str) -> Result<i64> {
    match v.get(k).and_then(serde_json::Value::as_i64) {
        Some(n) if n > 0 => Ok(n),
        Some(n) => bail!("config.json: `{k}` is {n}; it must be a positive integer"),
        None => bail!("config.json: missing integer `{k}`"),
    }
}

/// Head counts that divide: `heads` a multiple of `kv_heads`, both positive.
pub(crate) fn check_heads(source: &str, heads: i64, kv_heads: i64, head_dim: i64) -> Result<()> {
    if heads <= 0 || kv_heads <= 0 || head_dim <= 0 || heads % kv_heads != 0 {
        bail!("{source}: {heads} attention heads, {kv_heads} key/value heads, head size {head_dim}: heads must be positive and a multiple of the key/value heads");
    }
    Ok(())
}

/// Where and how to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub kind: Kind,
    pub device: Device,
    /// A tokenizer.json to use instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    pub bos: BosPolicy,
    /// Keep an untied LM head (`lm_head.weight`, GGUF `output.weight`) for
    /// [`HiddenStates::logits`]; embeddings do not need it, and it can be a large matrix.
    pub lm_head: bool,
    /// Keep weights in their file's form (GGUF blocks, safetensors values; memory-mapped)
    /// and make each dense only while it is used: identical results, a fraction of the
    /// memory (every family; the Llama and Gemma families also run layer-major).
    pub stored_weights: bool,
    /// With `stored_weights`: drop each weight's file pages after use, so the process holds
    /// about one layer of the file at a time (for memory budgets below the file's size;
    /// each use reads the pages again from the page cache or disk).
    pub release_pages: bool,
    /// Split a decoder's layers over these devices in order (Llama and Gemma families):
    /// embeddings on the first, final norm and head on the last. Empty: all on `device`.
    pub devices: Vec<Device>,
}

impl LoadOptions {
    /// Where the weights of a model with `layers` layers go.
    pub fn placement(&self, layers: i64) -> Placement {
        Placement::split(&self.devices, self.device, layers.max(1) as usize)
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            kind: Kind::Float,
            device: Device::Cpu,
            tokenizer: None,
            bos: BosPolicy::Auto,
            lm_head: false,
            stored_weights: false,
            release_pages: false,
            devices: Vec::new(),
        }
    }
}

/// The dtype of weights and activations, as pipelines name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    Bf16,
}

impl DType {
    pub const NAMES: &'static [&'static str] = &["f32", "f16", "bf16"];
    pub fn kind(self) -> Kind {
        match self {
            DType::F32 => Kind::Float,
            DType::F16 => Kind::Half,
            DType::Bf16 => Kind::BFloat16,
        }
    }
}

/// Parses `f32`, `f16`, `bf16` (and their long names).
pub fn parse_dtype(s: &str) -> Result<Kind> {
    Ok(match s {
        "f32" | "float32" => Kind::Float,
        "f16" | "float16" => Kind::Half,
        "bf16" | "bfloat16" => Kind::BFloat16,
        other => bail!("unknown dtype `{other}`: expected f32, f16 or bf16"),
    })
}

/// A loaded model: network, tokenizer, and a description.
pub struct Model {
    pub net: Box<dyn HiddenStates>,
    pub tokenizer: TextTokenizer,
    /// `llama (GGUF)`, `gemma3_text (safetensors)`, ...
    pub architecture: String,
    pub device: Device,
}

/// Architectures by Hugging Face `model_type`.
pub const HF_TYPES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "phi3",
    "olmo",
    "olmo2",
    "bloom",
    "xglm",
    "cohere",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "bert",
    "roberta",
    "xlm-roberta",
];
/// Architectures by GGUF `general.architecture`.
pub const GGUF_ARCHS: &[&str] =
    &["llama", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3", "gemma-embedding", "bloom", "command-r"];

/// Where a model's files are.
enum Source {
    Hf(PathBuf),
    Gguf(PathBuf),
}

fn locate(path: &Path) -> Result<Source> {
    if !path.exists() {
        bail!("model path {} does not exist", path.display());
    }
    if path.is_file() {
        return Ok(Source::Gguf(path.to_path_buf()));
    }
    if path.join("config.json").is_file() {
        return Ok(Source::Hf(path.to_path_buf()));
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match ggufs.len() {
        1 => Ok(Source::Gguf(ggufs[0].clone())),
        0 => bail!("{}: neither a config.json (Hugging Face folder) nor a .gguf file", path.display()),
        n => bail!("{}: {n} .gguf files; name one", path.display()),
    }
}

/// The memory a model's weights take once loaded densely in `kind`, from the files' headers
/// alone (no weights read): what a scheduler reserves for a node that loads it. GGUF tensors
/// count at their dequantised size, as the dense loader holds them.
pub fn weight_bytes(path: &Path, kind: Kind) -> Result<u64> {
    let numel: u64 = match locate(path)? {
        Source::Gguf(file) => Gguf::open(&file)?.tensors.iter().map(|t| t.numel() as u64).sum(),
        Source::Hf(dir) => {
            let mut n = 0;
            for f in crate::weights::safetensors_files(&dir)? {
                n += crate::weights::safetensors_numel(&f)?;
            }
            n
        }
    };
    Ok(numel * kind.elt_size_in_bytes() as u64)
}

/// The weights a forward pass multiplies each token by: every tensor's elements except the
/// token embedding table (a lookup, not a product) and the LM head (embedding never uses it),
/// from the files' headers. Two FLOPs per such weight per token is a forward pass's cost.
pub fn per_token_weights(path: &Path) -> Result<u64> {
    let lookup = |name: &str| {
        ["token_embd", "embed_tokens", "word_embeddings", "wte.", "output.weight", "lm_head"]
            .iter()
            .any(|p| name.contains(p))
            && !name.contains("layers.")
            && !name.contains("blk.")
    };
    Ok(match locate(path)? {
        Source::Gguf(file) => {
            Gguf::open(&file)?.tensors.iter().filter(|t| !lookup(&t.name)).map(|t| t.numel() as u64).sum()
        }
        Source::Hf(dir) => {
            let mut n = 0;
            for f in crate::weights::safetensors_files(&dir)? {
                n += crate::weights::safetensors_header(&f)?
                    .1
                    .iter()
                    .filter(|e| !lookup(&e.name))
                    .map(|e| e.shape.iter().product::<i64>() as u64)
                    .sum::<u64>();
            }
            n
        }
    })
}

/// [`weight_bytes`] for a load with `stored_weights`: a model then holds its 2-D weights in their file's form (counted at their size in the file, which the
/// memory map brings in) plus, while a matrix is in use, that matrix dense; everything else
/// as [`weight_bytes`].
pub fn resident_bytes(path: &Path, kind: Kind, stored_weights: bool) -> Result<u64> {
    if !stored_weights {
        return weight_bytes(path, kind);
    }
    // (shape, bytes in the file) of every tensor.
    let tensors: Vec<(Vec<i64>, u64)> = match locate(path)? {
        Source::Gguf(file) => Gguf::open(&file)?
            .tensors
            .iter()
            .map(|t| (t.shape.iter().map(|&d| d as i64).collect(), t.byte_len() as u64))
            .collect(),
        Source::Hf(dir) => {
            let mut v = Vec::new();
            for f in crate::weights::safetensors_files(&dir)? {
                v.extend(
                    crate::weights::safetensors_header(&f)?.1.into_iter().map(|e| (e.shape, (e.end - e.start) as u64)),
                );
            }
            v
        }
    };
    let el = kind.elt_size_in_bytes() as u64;
    let (mut held, mut largest) = (0u64, 0u64);
    for (shape, bytes) in &tensors {
        let numel = shape.iter().product::<i64>() as u64;
        if shape.len() == 2 {
            held += bytes;
            largest = largest.max(numel * el);
        } else {
            held += numel * el;
        }
    }
    Ok(held + largest)
}

/// Whether the model at `path` is of a family whose layers can be split over devices and
/// run layer-major (Llama, Gemma), from its config or GGUF header alone.
pub fn splits(path: &Path) -> Result<bool> {
    Ok(match locate(path)? {
        Source::Gguf(file) => Family::of_gguf(Gguf::open(&file)?.architecture()?).splits(),
        Source::Hf(dir) => {
            let cfg: serde_json::Value =
                mexa_core::file::read_json(&dir.join("config.json"), mexa_core::FileKind::Config)?;
            Family::of_hf(cfg["model_type"].as_str().unwrap_or("")).splits()
        }
    })
}

/// Loads only the network (no tokenizer): a Hugging Face folder or a GGUF file. Returns it
/// with a description such as `llama (GGUF)`.
pub fn load_network(path: &Path, opts: &LoadOptions) -> Result<(Box<dyn HiddenStates>, String)> {
    let _guard = tch::no_grad_guard();
    match locate(path)? {
        Source::Hf(dir) => {
            let cfg_path = dir.join("config.json");
            let cfg: serde_json::Value = mexa_core::file::read_json(&cfg_path, mexa_core::FileKind::Config)?;
            crate::config_check::check_hf(&cfg, &cfg_path)?;
            let mt = cfg["model_type"].as_str().unwrap_or("").to_string();
            let family = Family::of_hf(&mt);
            family.check_split(opts, &cfg_path)?;
            let layers = cfg["num_hidden_layers"].as_i64().or_else(|| cfg["n_layer"].as_i64()).unwrap_or(1);
            let weights = || -> Result<Weights> {
                let placement = opts.placement(layers);
                let mut w = if opts.stored_weights {
                    // Phi-3's fused projections are split at load, so they load dense.
                    let stored = |n: &str| !n.ends_with("qkv_proj.weight") && !n.ends_with("gate_up_proj.weight");
                    Weights::from_safetensors_stored(&dir, opts.kind, placement, stored)?
                } else {
                    Weights::from_safetensors_dir(&dir, opts.kind, placement)?
                };
                if !opts.lm_head {
                    w.remove("lm_head.weight");
                }
                if opts.release_pages {
                    w.release_pages();
                }
                Ok(w)
            };
            let net: Box<dyn HiddenStates> = match mt.as_str() {
                "llama" | "mistral" | "qwen2" | "qwen3" | "phi3" => {
                    Box::new(Llama::load(llama::Config::from_hf(&cfg)?, &weights()?)?)
                }
                "gemma" | "gemma2" | "gemma3" | "gemma3_text" => {
                    Box::new(Gemma::load(gemma::Config::from_hf(&cfg)?, &weights()?)?)
                }
                "olmo" | "olmo2" => Box::new(Olmo::load(olmo::Config::from_hf(&cfg)?, &weights()?)?),
                "bloom" => Box::new(Bloom::load(bloom::Config::from_hf(&cfg)?, &weights()?)?),
                "xglm" => Box::new(Xglm::load(xglm::Config::from_hf(&cfg)?, &weights()?)?),
                "cohere" => Box::new(Cohere::load(cohere::Config::from_hf(&cfg)?, &weights()?)?),
                "bert" | "roberta" | "xlm-roberta" => Box::new(Bert::load(bert::Config::from_hf(&cfg)?, &weights()?)?),
                other => bail!(
                    "{}: model_type `{other}` is not supported (supported: {})",
                    cfg_path.display(),
                    HF_TYPES.join(", ")
                ),
            };
            Ok((net, format!("{mt} (safetensors)")))
        }
        Source::Gguf(file) => {
            let g = Gguf::open(&file)?;
            Ok((gguf_network(&g, opts)?, format!("{} (GGUF)", g.architecture()?)))
        }
    }
}

/// What the loaders can do with a family beyond stored weights (which all of them take):
/// run layer-major and split layers over devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama,
    Gemma,
    Other,
}

impl Family {
    fn of_hf(model_type: &str) -> Self {
        match model_type {
            "llama" | "mistral" | "qwen2" | "qwen3" | "phi3" => Family::Llama,
            "gemma" | "gemma2" | "gemma3" | "gemma3_text" => Family::Gemma,
            _ => Family::Other,
        }
    }
    fn of_gguf(arch: &str) -> Self {
        match arch {
            "llama" | "qwen2" | "qwen3" | "phi3" => Family::Llama,
            "gemma" | "gemma2" | "gemma3" | "gemma-embedding" => Family::Gemma,
            _ => Family::Other,
        }
    }
    /// Runs layer-major and split over devices (implements `layers::Decoder`).
    fn splits(self) -> bool {
        self != Family::Other
    }
    fn check_split(self, opts: &LoadOptions, source: &Path) -> Result<()> {
        if opts.devices.len() > 1 && !self.splits() {
            bail!("{}: splitting a model over several devices is implemented for the Llama and Gemma families only; name one device", source.display());
        }
        Ok(())
    }
}

fn gguf_network(g: &Gguf, opts: &LoadOptions) -> Result<Box<dyn HiddenStates>> {
    crate::config_check::check_gguf(g)?;
    Family::of_gguf(g.architecture()?).check_split(opts, &g.path)?;
    Ok(match g.architecture()? {
        "llama" | "qwen2" | "qwen3" | "phi3" => Box::new(Llama::from_gguf(g, opts)?),
        "gemma" | "gemma2" | "gemma3" | "gemma-embedding" => Box::new(Gemma::from_gguf(g, opts)?),
        "bloom" => Box::new(Bloom::from_gguf(g, opts)?),
        "command-r" => Box::new(Cohere::from_gguf(g, opts)?),
        other => bail!(
            "{}: GGUF architecture `{other}` is not supported (supported: {})",
            g.path.display(),
            GGUF_ARCHS.join(", ")
        ),
    })
}

/// The tokenizer a model runs with, and where it comes from (for people): the folder's
/// tokenizer.json; for a GGUF, a tokenizer.json given or beside it, else the GGUF's own
/// tokenizer rebuilt from its metadata.
fn model_tokenizer(source: &Source, gguf: Option<&Gguf>, opts: &LoadOptions) -> Result<(TextTokenizer, String)> {
    match source {
        Source::Hf(dir) => {
            let tok_path = opts.tokenizer.clone().unwrap_or_else(|| dir.join("tokenizer.json"));
            if !tok_path.is_file() {
                bail!("{}: no tokenizer.json (give one with the `tokenizer` parameter)", dir.display());
            }
            Ok((TextTokenizer::from_file(&tok_path, None, opts.bos)?, tok_path.display().to_string()))
        }
        Source::Gguf(file) => {
            let opened;
            let g = match gguf {
                Some(g) => g,
                None => {
                    opened = Gguf::open(file)?;
                    &opened
                }
            };
            let beside = file.parent().map(|d| d.join("tokenizer.json")).filter(|p| p.is_file());
            Ok(match opts.tokenizer.clone().or(beside) {
                Some(t) => (TextTokenizer::from_file(&t, Some(g), opts.bos)?, t.display().to_string()),
                None => (
                    TextTokenizer::from_gguf(g, opts.bos)?,
                    format!("{} (rebuilt from the GGUF's metadata)", file.display()),
                ),
            })
        }
    }
}

/// The tokenizer [`Model::load`] would use for this model path and options, without reading
/// any weights, and a description of where it comes from.
pub fn load_tokenizer(path: &Path, opts: &LoadOptions) -> Result<(TextTokenizer, String)> {
    model_tokenizer(&locate(path)?, None, opts)
}

impl Model {
    /// Loads a model folder (config.json + safetensors + tokenizer.json) or a GGUF file (or a
    /// folder holding one .gguf and optionally its tokenizer.json).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        match locate(path)? {
            Source::Hf(dir) => {
                let (tokenizer, _) = model_tokenizer(&Source::Hf(dir.clone()), None, opts)?;
                let (net, architecture) = load_network(&dir, opts)?;
                Ok(Self { net, tokenizer, architecture, device: opts.device })
            }
            Source::Gguf(file) => {
                let g = Gguf::open(&file)?;
                let (tokenizer, _) = model_tokenizer(&Source::Gguf(file.clone()), Some(&g), opts)?;
                let net = gguf_network(&g, opts)?;
                Ok(Self { net, tokenizer, architecture: format!("{} (GGUF)", g.architecture()?), device: opts.device })
            }
        }
    }
}
