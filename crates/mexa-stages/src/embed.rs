//! `embed`: runs a model over the corpus, one shard per language, storing every layer's
//! pooled sentence embeddings (all requested poolings from one forward pass).
use crate::corpus::read_corpus;
use crate::util::{col_i32, col_str};
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, ListArray, RecordBatch, StringArray,
};
use arrow::datatypes::Int32Type;
use arrow::datatypes::{DataType, Field};
use mexa_model::{embed_ids, encode_all, BatchOptions, BosPolicy, DType, LoadOptions, Model, Pooled, Pooling};
use mexa_pipeline::{Ctx, InputRef, InputSpec, Output, ParamSpec, Resources, Stage, Table};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

pub struct Embed;

mexa_pipeline::param_enum! {
    /// How a model's weights are held: `stored` keeps them in their file's form (GGUF blocks,
    /// safetensors values; memory-mapped) and converts each matrix while it is used, running
    /// the model layer-major (Llama and Gemma families; bit-identical results, a fraction of
    /// the memory); `dense` converts everything at load; `auto` is `stored` for a GGUF and
    /// for any model whose dense weights exceed the memory budget, else `dense`.
    pub enum WeightsMode { Auto = "auto", Dense = "dense", Stored = "stored" }
}

/// The parameters every model-running stage has (embed, choice).
pub(crate) struct ModelParams<'a> {
    pub model: &'a str,
    pub tokenizer: Option<&'a PathBuf>,
    pub dtype: DType,
    pub device: &'a str,
    pub bos: BosPolicy,
    pub weights: WeightsMode,
    pub memory: &'a str,
}

/// How a model-running node loads and runs its model, decided from its parameters and the
/// model's file headers before anything is loaded.
#[derive(Debug, Clone)]
pub(crate) struct RunPlan {
    pub load: LoadOptions,
    /// Bytes a layer-major chunk's kept activations may take (None: batch by batch).
    pub chunk_bytes: Option<u64>,
    /// The memory budget the node runs under (None: no limit).
    pub budget: Option<u64>,
    /// The model's weights dense in the compute dtype, and as the load holds them on the host.
    pub dense: u64,
    pub resident: u64,
}

/// Chunk memory when the budget leaves less than this (or there is no budget): enough for
/// tens of thousands of tokens at a 4096 width.
const MIN_CHUNK_BYTES: u64 = 256 << 20;

/// Load options and execution order from a model-running stage's parameters: the devices,
/// the memory budget (`memory`: a size, or `auto` = what the devices have free: available
/// RAM on a CPU, nvidia-smi's free memory on GPUs), stored or dense weights, and, for stored weights, layer-major chunks
/// sized to what the budget leaves (pages handed back after each use when even the stored
/// weights exceed it).
pub(crate) fn run_plan(p: &ModelParams, lm_head: bool) -> Result<RunPlan> {
    let kind = p.dtype.kind();
    let path = std::path::Path::new(p.model);
    let dense = mexa_model::weight_bytes(path, kind)?;
    let devices = match p.device {
        "auto" => mexa_model::device::auto_devices(dense, mexa_model::model::splits(path)?),
        d => mexa_model::device::parse_devices(d)?,
    };
    let budget = match p.memory {
        "auto" => mexa_model::device::free_memory_on(&devices),
        s => mexa_model::device::parse_bytes(s).map_err(|e| anyhow!("`memory`: {e}"))?,
    };
    let over = budget.is_some_and(|b| dense > b);
    let gguf = path.is_file() || path.extension().is_some_and(|e| e == "gguf");
    let stored = match p.weights {
        WeightsMode::Dense => false,
        WeightsMode::Stored => true,
        WeightsMode::Auto => over || gguf,
    };
    let resident = mexa_model::resident_bytes(path, kind, stored)?;
    let chunk_bytes = stored.then(|| match budget {
        Some(b) => b.saturating_sub(resident).max(MIN_CHUNK_BYTES),
        None => MIN_CHUNK_BYTES * 4,
    });
    let load = LoadOptions {
        kind,
        device: devices[0],
        tokenizer: p.tokenizer.filter(|t| !t.as_os_str().is_empty()).cloned(),
        bos: p.bos,
        lm_head,
        stored_weights: stored,
        release_pages: stored && budget.is_some_and(|b| resident > b),
        devices: if devices.len() > 1 { devices } else { Vec::new() },
    };
    Ok(RunPlan { load, chunk_bytes, budget, dense, resident })
}

mexa_pipeline::stage_params! {
    /// `embed`'s parameters.
    pub(crate) struct Params {
        /// the model to run (a Hugging Face id is looked up in the local cache, never downloaded)
        model: String as Model,
        /// a tokenizer.json to use instead of the model's
        tokenizer: Option<PathBuf> = None,
        /// poolings computed in the same pass
        poolings: Vec<Pooling> as EnumList(Pooling::NAMES) = vec![Pooling::Weighted, Pooling::Last],
        /// weights and activations (f32 on CPU)
        dtype: DType as Enum(DType::NAMES) = DType::F32,
        /// auto (the CPU, or as few GPUs as hold the model), cpu, cuda:N, or a list over which
        /// the layers are split (cuda:0,cuda:1; cuda:* = every GPU)
        device: String = "auto"; execution,
        /// BOS token: as the tokenizer says, or forced
        bos: BosPolicy as Enum(BosPolicy::NAMES) = BosPolicy::Auto,
        /// most padded tokens per batch (on a GPU, 16384 was fastest on an H200)
        batch_tokens: usize = 4096; execution,
        /// most sentences per batch (raise with batch_tokens on a GPU)
        batch_sentences: usize = 64; execution,
        /// weights kept in their file's form and run layer-major (stored) or converted at load
        /// (dense); auto: stored for a GGUF or when dense weights exceed `memory`
        weights: WeightsMode = WeightsMode::Auto; execution,
        /// the memory the model may hold: auto (what the devices have free) or a size such as
        /// 800MB; a model over it runs stored and layer-major
        memory: String = "auto"; execution,
        /// logit lens over the first N sentences of each language (0: off): every hidden state
        /// decoded through the final norm and LM head at every position, in the same forward
        /// pass (decoders; read by the `lens` stage)
        lens: usize = 0; keyed_if_set,
    }
    check(p) {
        check_model_settings(&p.device, &p.memory, p.batch_tokens)?;
        if p.batch_sentences == 0 {
            return Err("`batch_sentences` must be at least 1".into());
        }
        Ok(())
    }
}

/// The execution settings every model-running stage shares, checked at plan time (cached
/// nodes too, so a typo is found before a rerun needs the setting): a device list, a memory
/// size, a positive batch size.
pub(crate) fn check_model_settings(device: &str, memory: &str, batch_tokens: usize) -> Result<(), String> {
    if device != "auto" {
        mexa_model::device::parse_devices(device).map_err(|e| format!("`device`: {e:#}"))?;
    }
    if memory != "auto" {
        mexa_model::device::parse_bytes(memory).map_err(|e| format!("`memory`: {e}"))?;
    }
    if batch_tokens == 0 {
        return Err("`batch_tokens` must be at least 1".into());
    }
    Ok(())
}

/// `fn model_params(&self) -> ModelParams` for a model-running stage's `Params` (their model
/// fields carry the same names).
macro_rules! impl_model_params {
    ($params:ty) => {
        impl $params {
            fn model_params(&self) -> $crate::embed::ModelParams<'_> {
                $crate::embed::ModelParams {
                    model: &self.model,
                    tokenizer: self.tokenizer.as_ref(),
                    dtype: self.dtype,
                    device: &self.device,
                    bos: self.bos,
                    weights: self.weights,
                    memory: &self.memory,
                }
            }
        }
    };
}
pub(crate) use impl_model_params;

impl_model_params!(Params);

/// A cached model and whether it was loaded with its LM head.
type Cached = (bool, Arc<Mutex<Model>>);

/// Loaded models, shared by every node that names them until the runner releases them
/// ([`release_models`]: no running or ready node needs them).
fn model_cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// What a node that loads this model holds, as its run plan loads it: on a CPU, the weights'
/// resident size (stored weights at their file size plus one matrix dense; with pages handed
/// back, the budget); on GPUs, the dense weights (or, stored and layer-major, the budget)
/// shared equally by the GPUs of the split, and the stored files' pages in host RAM; plus
/// `first_gpu` bytes on the first GPU (embed's buffer of pooled vectors).
pub(crate) fn model_resources(p: &ModelParams, first_gpu: u64) -> Result<Resources> {
    let plan = run_plan(p, false)?;
    let devices = if plan.load.devices.is_empty() { vec![plan.load.device] } else { plan.load.devices.clone() };
    let gpus: Vec<usize> = devices.iter().filter_map(|&d| mexa_model::device::cuda_index(d)).collect();
    Ok(plan_resources(&plan, &gpus, p.model, first_gpu))
}

/// [`model_resources`] of a run plan whose devices are the GPUs with these indices, in
/// placement order (none: the CPU).
fn plan_resources(plan: &RunPlan, gpus: &[usize], model: &str, first_gpu: u64) -> Resources {
    let stored = plan.load.stored_weights;
    let capped = |bytes: u64| if plan.load.release_pages { plan.budget.map_or(bytes, |b| bytes.min(b)) } else { bytes };
    let holds = vec![model.into()];
    let Some(&first) = gpus.first() else {
        return Resources { memory: capped(plan.resident), gpu_memory: vec![], holds };
    };
    let on_gpus = if stored { plan.budget.map_or(plan.dense, |b| b.min(plan.dense)) } else { plan.dense };
    let mut gpu_memory = vec![0u64; gpus.iter().max().map_or(0, |m| m + 1)];
    for &g in gpus {
        gpu_memory[g] += on_gpus / gpus.len() as u64;
    }
    gpu_memory[first] += first_gpu;
    let memory = if stored { capped(plan.resident) } else { 0 };
    Resources { memory, gpu_memory, holds }
}

/// Drops the cached models not in `keep` (by path); a node still using one keeps it alive
/// through its `Arc` until it finishes.
pub(crate) fn release_models(keep: &std::collections::BTreeSet<String>) {
    let mut cache = model_cache().lock().unwrap();
    let before = cache.len();
    cache.retain(|id, _| keep.contains(id.split('|').next().unwrap_or_default()));
    if cache.len() < before {
        drop(cache);
        mexa_model::return_free_memory();
    }
}

/// The model at `path` with these options, loaded once per process. A model loaded with its
/// LM head (`choice`) also serves requests without it (`embed`); one loaded without it is
/// replaced when a head is asked for (an untied head is not in it).
pub(crate) fn load_model(path: &str, opts: &LoadOptions) -> Result<Arc<Mutex<Model>>> {
    let id = format!(
        "{path}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}",
        opts.kind, opts.device, opts.tokenizer, opts.bos, opts.stored_weights, opts.release_pages, opts.devices
    );
    let mut cache = model_cache().lock().unwrap();
    if let Some((head, m)) = cache.get(&id) {
        if *head || !opts.lm_head {
            return Ok(m.clone());
        }
    }
    let t = std::time::Instant::now();
    let m = Model::load(&PathBuf::from(path), opts)?;
    tracing::info!("loaded {path} ({}) in {:.1}s", m.architecture, t.elapsed().as_secs_f64());
    let m = Arc::new(Mutex::new(m));
    cache.insert(id, (opts.lm_head, m.clone()));
    Ok(m)
}

/// What one embedding shard's manifest records (`tokens` is the field the run profile reads,
/// `mexa_pipeline::profile::META_TOKENS`; a test holds the two together).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShardMeta {
    pub language: String,
    pub tokens: usize,
    pub layers: usize,
    pub dim: usize,
    pub architecture: String,
}

/// What an embed node's index manifest records: written by `embed`, read by `align` and
/// `probe` (through [`embeddings_meta`]). Fields are optional so older manifests still read.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EmbeddingsMeta {
    /// The corpus's pivot language (its first).
    pub pivot: Option<String>,
    pub layers: Option<usize>,
    pub dim: Option<usize>,
    pub architecture: Option<String>,
    #[serde(default)]
    pub poolings: Vec<String>,
    /// Sentences per language the logit lens decoded (0: none).
    #[serde(default)]
    pub lens: usize,
}

/// An embed input's recorded facts and its pivot language.
pub fn embeddings_meta(ctx: &Ctx, input: &InputRef) -> Result<(String, EmbeddingsMeta)> {
    let meta: EmbeddingsMeta = serde_json::from_value(ctx.manifest(&input.key)?.meta)
        .map_err(|e| anyhow!("{}: not an embed artifact ({e})", input.label))?;
    let pivot = meta.pivot.clone().ok_or_else(|| anyhow!("{}: no pivot recorded", input.label))?;
    Ok((pivot, meta))
}

/// An embedding shard: one row per (pooling, layer, sentence) with its vector. With the
/// logit lens (`lens` = every sentence's input token ids and the lens's top-1 ids), two more
/// list columns on the first pooling's rows: `token_ids` (layer 0, every sentence) and
/// `lens_top1` (every layer, the sentences the lens decoded); null elsewhere.
pub fn embedding_batch(
    p: &[Pooled],
    lens: Option<(&[Vec<i64>], &[Vec<Vec<i32>>])>,
) -> Result<(arrow::datatypes::SchemaRef, RecordBatch)> {
    let dim = p.first().map(|x| x.dim).unwrap_or(0);
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let mut fields = vec![
        Field::new("pooling", DataType::Utf8, false),
        Field::new("layer", DataType::Int32, false),
        Field::new("sentence_id", DataType::Int32, false),
        Field::new("vector", DataType::FixedSizeList(item.clone(), dim as i32), false),
    ];
    let (mut pool, mut layer, mut sid, mut vals) = (vec![], vec![], vec![], vec![]);
    let (mut token_ids, mut lens_top1): (Vec<Option<Vec<Option<i32>>>>, Vec<Option<Vec<Option<i32>>>>) =
        (vec![], vec![]);
    for (k, x) in p.iter().enumerate() {
        for l in 0..x.layers {
            for s in 0..x.n {
                pool.push(x.pooling.name().to_string());
                layer.push(l as i32);
                sid.push(s as i32);
                vals.extend_from_slice(x.vector(l, s));
                if let Some((ids, top1)) = lens {
                    let first = k == 0;
                    token_ids.push((first && l == 0).then(|| ids[s].iter().map(|&t| Some(t as i32)).collect()));
                    lens_top1.push(top1.get(s).filter(|_| first).map(|t| t[l].iter().map(|&v| Some(v)).collect()));
                }
            }
        }
    }
    let vectors = FixedSizeListArray::try_new(item, dim as i32, Arc::new(Float32Array::from(vals)), None)?;
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(pool)),
        Arc::new(Int32Array::from(layer)),
        Arc::new(Int32Array::from(sid)),
        Arc::new(vectors),
    ];
    if lens.is_some() {
        for (name, v) in [("token_ids", token_ids), ("lens_top1", lens_top1)] {
            let list = ListArray::from_iter_primitive::<Int32Type, _, _>(v);
            fields.push(Field::new(name, list.data_type().clone(), true));
            cols.push(Arc::new(list));
        }
    }
    let sch = Arc::new(arrow::datatypes::Schema::new(fields));
    Ok((sch.clone(), RecordBatch::try_new(sch, cols)?))
}

/// One shard's logit lens: every sentence's input token ids, and for the sentences the lens
/// decoded, the top-1 ids at every position of every hidden state (`top1[sentence][layer]`).
#[derive(Debug, Clone, Default)]
pub struct ShardLens {
    pub token_ids: Vec<Vec<i32>>,
    pub top1: Vec<Vec<Vec<i32>>>,
}

/// Reads the logit-lens columns of an embedding shard ([`embedding_batch`]); None when the
/// shard has none.
pub fn read_lens(t: &Table) -> Result<Option<ShardLens>> {
    let mut out = ShardLens::default();
    let mut any = false;
    for b in &t.batches {
        let (Some(ti), Some(tt)) = (b.column_by_name("token_ids"), b.column_by_name("lens_top1")) else {
            return Ok(None);
        };
        any = true;
        let as_list = |c: &ArrayRef| -> Result<ListArray> {
            c.as_any().downcast_ref::<ListArray>().cloned().ok_or_else(|| anyhow!("lens columns are not lists"))
        };
        let (ti, tt) = (as_list(ti)?, as_list(tt)?);
        let (l, sid) = (col_i32(b, "layer")?, col_i32(b, "sentence_id")?);
        let ints = |a: ArrayRef| -> Result<Vec<i32>> {
            Ok(a.as_any()
                .downcast_ref::<Int32Array>()
                .ok_or_else(|| anyhow!("lens lists are not int32"))?
                .values()
                .to_vec())
        };
        for i in 0..b.num_rows() {
            let (s, layer) = (sid.value(i) as usize, l.value(i) as usize);
            if !ti.is_null(i) {
                if out.token_ids.len() <= s {
                    out.token_ids.resize(s + 1, vec![]);
                }
                out.token_ids[s] = ints(ti.value(i))?;
            }
            if !tt.is_null(i) {
                if out.top1.len() <= s {
                    out.top1.resize(s + 1, vec![]);
                }
                if out.top1[s].len() != layer {
                    bail!("logit-lens rows out of order");
                }
                out.top1[s].push(ints(tt.value(i))?);
            }
        }
    }
    Ok(any.then_some(out))
}

/// Reads an embedding shard back: pooling → layer → matrix (sentences × dim).
/// Checks that two shards' embeddings can be compared: for every pooling both have, the
/// same number of hidden states and the same vector width. A located error names both shards
/// and what differs (a shard of another model planted in an artifact, say), where the
/// scores would otherwise fail on an assertion.
pub fn check_comparable(
    label: &str,
    (a_name, a): (&str, &HashMap<Pooling, Vec<mexa_metrics::Matrix>>),
    (b_name, b): (&str, &HashMap<Pooling, Vec<mexa_metrics::Matrix>>),
) -> Result<()> {
    for (pooling, la) in a {
        let Some(lb) = b.get(pooling) else {
            bail!("{label}: shard `{a_name}` has {pooling} embeddings and shard `{b_name}` none: they were not computed alike")
        };
        if la.len() != lb.len() {
            bail!(
                "{label}: shard `{a_name}` has {} hidden states ({pooling}), shard `{b_name}` {}: they come from different models",
                la.len(),
                lb.len()
            );
        }
        if let Some((l, (x, y))) = la.iter().zip(lb).enumerate().find(|(_, (x, y))| x.cols != y.cols) {
            bail!(
                "{label}: shard `{a_name}` has vectors of width {} and shard `{b_name}` of width {} ({pooling}, layer {l}): they come from different models",
                x.cols,
                y.cols
            );
        }
    }
    Ok(())
}

/// The most hidden states a shard may have: far above any model's layer count, low enough that
/// a forged `layer` value cannot make a reader allocate without bound.
const MAX_LAYERS: usize = 4096;

/// Shard `name` (key `key`) of the embed artifact `label`, read and checked
/// ([`read_embeddings`]); an error names the artifact, the shard and its key.
pub fn read_shard(
    ctx: &mexa_pipeline::Ctx,
    label: &str,
    name: &str,
    key: &mexa_store::Key,
) -> Result<HashMap<Pooling, Vec<mexa_metrics::Matrix>>> {
    ctx.read_key(key)
        .and_then(|t| read_embeddings(&t))
        .with_context(|| format!("{label}: shard `{name}` ({})", key.short()))
}

/// An embed shard's table as one matrix per (pooling, hidden state). Checked as it is read:
/// layers are 0..n with no gap, every (pooling, layer) has the same sentences in order, all
/// vectors have one width, and there is at least one row — a shard that is not (forged,
/// or written by another program) is an error saying what is wrong, never a panic or an
/// unbounded allocation.
pub fn read_embeddings(t: &Table) -> Result<HashMap<Pooling, Vec<mexa_metrics::Matrix>>> {
    let mut out: HashMap<Pooling, Vec<(usize, Vec<f32>)>> = HashMap::new();
    let mut dim = None;
    let mut rows: HashMap<(Pooling, usize), usize> = HashMap::new();
    for b in &t.batches {
        let (p, l, v) = (
            col_str(b, "pooling")?,
            col_i32(b, "layer")?,
            b.column_by_name("vector").ok_or_else(|| anyhow!("no vector column"))?,
        );
        let v = v
            .as_any()
            .downcast_ref::<FixedSizeListArray>()
            .ok_or_else(|| anyhow!("vector column is not a fixed-size list"))?;
        let width = v.value_length() as usize;
        if *dim.get_or_insert(width) != width {
            bail!("vectors of width {} and {width} in one shard", dim.unwrap_or_default());
        }
        let dim = width;
        let flat = v.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| anyhow!("vectors are not f32"))?;
        let sid = col_i32(b, "sentence_id")?;
        for i in 0..b.num_rows() {
            let pooling = Pooling::parse(p.value(i))?;
            let layers = out.entry(pooling).or_default();
            let li = usize::try_from(l.value(i)).ok().filter(|&li| li < MAX_LAYERS).ok_or_else(|| {
                anyhow!("row {i}: layer {} (a hidden state is numbered 0 to {})", l.value(i), MAX_LAYERS - 1)
            })?;
            while layers.len() <= li {
                layers.push((0, vec![]));
            }
            let r = rows.entry((pooling, li)).or_insert(0);
            if sid.value(i) as usize != *r {
                bail!("embedding rows out of order");
            }
            *r += 1;
            let off = (v.offset() + i) * dim;
            layers[li].1.extend_from_slice(&flat.values()[off..off + dim]);
            layers[li].0 += 1;
        }
    }
    let Some(dim) = dim.filter(|_| !out.is_empty()) else { bail!("no embedding rows") };
    for (pooling, ls) in &out {
        let n = ls[0].0;
        if let Some((l, (m, _))) = ls.iter().enumerate().find(|(_, (m, _))| *m != n || *m == 0) {
            bail!(
                "{pooling} layer {l} has {m} sentences, layer 0 has {n}: every hidden state must have every sentence"
            );
        }
    }
    Ok(out
        .into_iter()
        .map(|(k, ls)| (k, ls.into_iter().map(|(n, d)| mexa_metrics::Matrix::new(n, dim, d)).collect()))
        .collect())
}

impl Stage for Embed {
    fn kind(&self) -> &'static str {
        "embed"
    }
    fn version(&self) -> u32 {
        // 2: attention through libtorch's fused kernel (last bits of the states differ from 1).
        // 3: GGUF tokenizers rebuilt exactly (Qwen2 and others were split as GPT-2 before).
        // 4: tokenizers exact at the edges (issue 24): NFC for Qwen2/Command-R/MPT GGUFs, the
        // leading ▁ of SentencePiece GGUFs, GPT-NeoX space runs, Gemma whitespace runs, BOS
        // text at the start: token ids, and so states, changed for those inputs.
        4
    }
    fn doc(&self) -> &'static str {
        "Runs a model (Hugging Face folder or GGUF) over every language of the corpus; stores each layer's pooled sentence embeddings, one shard per language"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::one("corpus", "a load_corpus table")]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn resources(&self, params: &serde_json::Value) -> Result<Resources> {
        let p = Params::deserialize(params)?;
        model_resources(&p.model_params(), mexa_model::embed::GATHER_BYTES as u64)
    }
    fn release(&self, keep: &std::collections::BTreeSet<String>) {
        release_models(keep);
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let corpus = ctx.read(ctx.input("corpus")?)?;
        let (order, texts) = read_corpus(&corpus)?;
        let poolings = p.poolings.clone();
        if poolings.is_empty() {
            bail!("`poolings` is empty");
        }
        let plan = run_plan(&p.model_params(), p.lens > 0)?;
        let opts = plan.load.clone();
        let model_path = p.model.as_str();
        let total: usize = texts.values().map(Vec::len).sum();
        ctx.progress.set_length(total as u64);
        let mut shards = Vec::new();
        let mut info: Option<ShardMeta> = None;
        for lang in &order {
            let sents = &texts[lang];
            let key = ctx.shard(lang, || {
                let model = load_model(model_path, &opts)?;
                let m = model.lock().unwrap();
                ctx.progress.message(&format!("{lang} ({})", m.architecture));
                let t = std::time::Instant::now();
                let batch = BatchOptions {
                    max_tokens: p.batch_tokens.max(1),
                    max_sentences: p.batch_sentences.max(1),
                    chunk_tokens: plan
                        .chunk_bytes
                        .map_or(0, |b| mexa_model::embed::chunk_tokens(b, m.net.hidden_size(), opts.kind)),
                };
                let ids = encode_all(&m, sents)?;
                let (pooled, top1) =
                    embed_ids(&m.runner(), &ids, &poolings, batch, p.lens, |k| ctx.progress.inc(k as u64))?;
                let tokens: usize = pooled[0].tokens.iter().sum();
                let secs = t.elapsed().as_secs_f64();
                ctx.progress.message(&format!(
                    "{lang}: {} sentences, {tokens} tokens in {secs:.1}s ({:.0} tokens/s)",
                    sents.len(),
                    tokens as f64 / secs.max(1e-9)
                ));
                let lens = (p.lens > 0).then_some((ids.as_slice(), top1.as_slice()));
                let (sch, b) = embedding_batch(&pooled, lens)?;
                let meta = ShardMeta {
                    language: lang.clone(),
                    tokens,
                    layers: pooled[0].layers,
                    dim: pooled[0].dim,
                    architecture: m.architecture.clone(),
                };
                Ok(Output { table: Table::new(sch, vec![b]), meta: serde_json::to_value(meta)? })
            })?;
            if info.is_none() {
                info = Some(serde_json::from_value(ctx.manifest(&key)?.meta)?);
            }
            shards.push((lang.clone(), key));
            if ctx.cancelled() {
                bail!("cancelled");
            }
        }
        let meta = EmbeddingsMeta {
            pivot: order.first().cloned(),
            layers: info.as_ref().map(|i| i.layers),
            dim: info.as_ref().map(|i| i.dim),
            architecture: info.map(|i| i.architecture),
            poolings: poolings.iter().map(|p| p.name().to_string()).collect(),
            lens: p.lens,
        };
        Ctx::shard_index(&shards, serde_json::to_value(meta)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mexa_model::{score, IdRequest, ScoreOptions};

    #[test]
    fn shards_of_different_widths_or_depths_are_a_located_error() {
        use mexa_metrics::Matrix;
        let emb = |layers: usize, width: usize| {
            HashMap::from([(
                Pooling::Weighted,
                (0..layers).map(|_| Matrix::new(2, width, vec![0.5; 2 * width])).collect(),
            )])
        };
        let (a, b, c) = (emb(3, 384), emb(3, 576), emb(4, 384));
        check_comparable("e[model=m]", ("eng", &a), ("fra", &emb(3, 384))).unwrap();
        let e = check_comparable("e[model=m]", ("eng", &a), ("fra", &b)).unwrap_err().to_string();
        assert!(
            e.contains("e[model=m]")
                && e.contains("`eng` has vectors of width 384")
                && e.contains("`fra` of width 576"),
            "{e}"
        );
        let e = check_comparable("e[model=m]", ("eng", &a), ("deu", &c)).unwrap_err().to_string();
        assert!(e.contains("`eng` has 3 hidden states") && e.contains("`deu` 4"), "{e}");
    }

    #[test]
    fn shard_meta_reports_tokens_where_the_profile_reads_them() {
        let m = ShardMeta { language: "eng".into(), tokens: 7, layers: 1, dim: 2, architecture: "x".into() };
        assert_eq!(serde_json::to_value(m).unwrap()[mexa_pipeline::profile::META_TOKENS], 7);
    }

    /// On GPUs a node declares its share of the weights on each GPU of the split (dense, or
    /// stored layer-major: the budget) and embed's buffer of pooled vectors on the first
    /// one, host RAM only for stored weights' pages; on the CPU, the resident weights.
    #[test]
    fn a_split_model_declares_its_share_on_each_gpu_and_the_buffer_on_the_first() {
        let plan = |stored_weights, budget| RunPlan {
            load: LoadOptions { stored_weights, ..Default::default() },
            chunk_bytes: None,
            budget,
            dense: 1000,
            resident: 400,
        };
        let r = plan_resources(&plan(false, None), &[1, 0], "m", 7);
        assert_eq!((r.gpu_memory, r.memory), (vec![500, 507], 0));
        let r = plan_resources(&plan(true, Some(600)), &[1, 0], "m", 7);
        assert_eq!((r.gpu_memory, r.memory), (vec![300, 307], 400));
        let r = plan_resources(&plan(false, None), &[], "m", 7);
        assert_eq!((r.gpu_memory, r.memory, r.holds), (vec![], 400, vec!["m".to_string()]));
    }

    /// An untied model first loaded for embedding (no LM head) is loaded again when a stage
    /// needs its head, and the model with the head then serves both.
    #[test]
    fn a_model_without_its_head_is_not_served_to_a_stage_that_needs_it() {
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let llama = root.join("tests/fixtures/loglik/llama");
        // The fixture has no tokenizer of its own; any tokenizer.json lets it load.
        let assets = std::env::var_os("MEXA_ASSETS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"));
        let tok = assets.join("models/all-minilm-l6-v2/tokenizer.json");
        assert!(tok.is_file(), "{} missing: run scripts/fetch-assets.py", tok.display());
        let path = llama.to_str().unwrap();
        let opts = |lm_head| LoadOptions { tokenizer: Some(tok.clone()), lm_head, ..Default::default() };
        let one = [IdRequest { context: vec![1, 2], continuations: vec![vec![3]] }];
        let scores = |m: &Arc<Mutex<Model>>| score(&m.lock().unwrap(), &one, ScoreOptions::default(), |_| {});
        let plain = load_model(path, &opts(false)).unwrap();
        assert!(scores(&plain).is_err(), "the embedding load has no head");
        let headed = load_model(path, &opts(true)).unwrap();
        assert!(!Arc::ptr_eq(&plain, &headed));
        scores(&headed).unwrap();
        assert!(
            Arc::ptr_eq(&load_model(path, &opts(false)).unwrap(), &headed),
            "the headed model serves embedding too"
        );
    }
}
