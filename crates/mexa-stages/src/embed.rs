//! `embed`: runs a model over the corpus, one shard per language, storing every layer's
//! pooled sentence embeddings (all requested poolings from one forward pass).
use crate::corpus::read_corpus;
use crate::util::{col_i32, col_str, schema};
use anyhow::{anyhow, bail, Result};
use arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use mexa_model::{embed, parse_device, BatchOptions, BosPolicy, DType, LoadOptions, Model, Pooled, Pooling};
use mexa_pipeline::{Ctx, InputRef, InputSpec, Output, ParamSpec, Resources, Stage, Table};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

pub struct Embed;

mexa_pipeline::param_enum! {
    /// How a GGUF's weights are held: `stored` keeps the quantised blocks (memory-mapped) and
    /// dequantises each matrix while it is used (Llama family; bit-identical results, a
    /// fraction of the memory); `dense` dequantises everything at load; `auto` is `stored`.
    pub enum WeightsMode { Auto = "auto", Dense = "dense", Stored = "stored" }
}

/// The parameters every model-running stage has (embed, choice).
pub(crate) struct ModelParams<'a> {
    pub tokenizer: Option<&'a PathBuf>,
    pub dtype: DType,
    pub device: &'a str,
    pub bos: BosPolicy,
    pub weights: WeightsMode,
}

/// Load options from a model-running stage's parameters.
pub(crate) fn load_options(p: &ModelParams, lm_head: bool) -> Result<LoadOptions> {
    Ok(LoadOptions {
        kind: p.dtype.kind(),
        device: parse_device(p.device)?,
        tokenizer: p.tokenizer.filter(|t| !t.as_os_str().is_empty()).cloned(),
        bos: p.bos,
        lm_head,
        stored_weights: p.weights != WeightsMode::Dense,
    })
}

mexa_pipeline::stage_params! {
    /// `embed`'s parameters.
    struct Params {
        /// the model to run (a Hugging Face id is looked up in the local cache, never downloaded)
        model: String as Model,
        /// a tokenizer.json to use instead of the model's
        tokenizer: Option<PathBuf> = None,
        /// poolings computed in the same pass
        poolings: Vec<Pooling> as EnumList(Pooling::NAMES) = vec![Pooling::Weighted, Pooling::Last],
        /// weights and activations (f32 on CPU)
        dtype: DType as Enum(DType::NAMES) = DType::F32,
        /// auto, cpu, cuda or cuda:N
        device: String = "auto"; execution,
        /// BOS token: as the tokenizer says, or forced
        bos: BosPolicy as Enum(BosPolicy::NAMES) = BosPolicy::Auto,
        /// most padded tokens per batch (on a GPU, 16384 was fastest on an H200)
        batch_tokens: usize = 4096; execution,
        /// most sentences per batch (raise with batch_tokens on a GPU)
        batch_sentences: usize = 64; execution,
        /// GGUF weights kept in their quantised blocks (stored, the default) or dequantised at
        /// load (dense): the same results, stored needs a fraction of the memory
        weights: WeightsMode = WeightsMode::Auto; execution,
    }
}

impl Params {
    fn model_params(&self) -> ModelParams<'_> {
        ModelParams {
            tokenizer: self.tokenizer.as_ref(),
            dtype: self.dtype,
            device: &self.device,
            bos: self.bos,
            weights: self.weights,
        }
    }
}

/// A cached model and whether it was loaded with its LM head.
type Cached = (bool, Arc<Mutex<Model>>);

/// Loaded models, shared by every node that names them until the runner releases them
/// ([`release_models`]: no running or ready node needs them).
fn model_cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// What a node that loads this model holds: its weights' resident size, and the model.
pub(crate) fn model_resources(model: &str, dtype: DType, weights: WeightsMode) -> Result<Resources> {
    let stored = weights != WeightsMode::Dense;
    let memory = mexa_model::resident_bytes(std::path::Path::new(model), dtype.kind(), stored)?;
    Ok(Resources { memory, holds: vec![model.into()] })
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
    let id =
        format!("{path}|{:?}|{:?}|{:?}|{:?}|{}", opts.kind, opts.device, opts.tokenizer, opts.bos, opts.stored_weights);
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
}

/// An embed input's recorded facts and its pivot language.
pub fn embeddings_meta(ctx: &Ctx, input: &InputRef) -> Result<(String, EmbeddingsMeta)> {
    let meta: EmbeddingsMeta = serde_json::from_value(ctx.store.manifest(&input.key)?.meta)
        .map_err(|e| anyhow!("{}: not an embed artifact ({e})", input.label))?;
    let pivot = meta.pivot.clone().ok_or_else(|| anyhow!("{}: no pivot recorded", input.label))?;
    Ok((pivot, meta))
}

/// Schema of an embedding shard.
pub fn embedding_batch(p: &[Pooled]) -> Result<(arrow::datatypes::SchemaRef, RecordBatch)> {
    let dim = p.first().map(|x| x.dim).unwrap_or(0);
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let sch = schema(&[
        ("pooling", DataType::Utf8),
        ("layer", DataType::Int32),
        ("sentence_id", DataType::Int32),
        ("vector", DataType::FixedSizeList(item.clone(), dim as i32)),
    ]);
    let (mut pool, mut layer, mut sid, mut vals) = (vec![], vec![], vec![], vec![]);
    for x in p {
        for l in 0..x.layers {
            for s in 0..x.n {
                pool.push(x.pooling.name().to_string());
                layer.push(l as i32);
                sid.push(s as i32);
                vals.extend_from_slice(x.vector(l, s));
            }
        }
    }
    let vectors = FixedSizeListArray::try_new(item, dim as i32, Arc::new(Float32Array::from(vals)), None)?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(pool)),
        Arc::new(Int32Array::from(layer)),
        Arc::new(Int32Array::from(sid)),
        Arc::new(vectors),
    ];
    Ok((sch.clone(), RecordBatch::try_new(sch, cols)?))
}

/// Reads an embedding shard back: pooling → layer → matrix (sentences × dim).
pub fn read_embeddings(t: &Table) -> Result<HashMap<Pooling, Vec<mexa_metrics::Matrix>>> {
    let mut out: HashMap<Pooling, Vec<(usize, Vec<f32>)>> = HashMap::new();
    let mut dim = 0;
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
        dim = v.value_length() as usize;
        let flat = v.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| anyhow!("vectors are not f32"))?;
        let sid = col_i32(b, "sentence_id")?;
        for i in 0..b.num_rows() {
            let pooling = Pooling::parse(p.value(i))?;
            let layers = out.entry(pooling).or_default();
            let li = l.value(i) as usize;
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
        3
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
        model_resources(&p.model, p.dtype, p.weights)
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
        let opts = load_options(&p.model_params(), false)?;
        let model_path = p.model.as_str();
        let batch = BatchOptions { max_tokens: p.batch_tokens.max(1), max_sentences: p.batch_sentences.max(1) };
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
                let pooled = embed(&m, sents, &poolings, batch, |k| ctx.progress.inc(k as u64))?;
                let tokens: usize = pooled[0].tokens.iter().sum();
                let secs = t.elapsed().as_secs_f64();
                ctx.progress.message(&format!(
                    "{lang}: {} sentences, {tokens} tokens in {secs:.1}s ({:.0} tokens/s)",
                    sents.len(),
                    tokens as f64 / secs.max(1e-9)
                ));
                let (sch, b) = embedding_batch(&pooled)?;
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
                info = Some(serde_json::from_value(ctx.store.manifest(&key)?.meta)?);
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
        };
        Ctx::shard_index(&shards, serde_json::to_value(meta)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mexa_model::{score, IdRequest, ScoreOptions};

    #[test]
    fn shard_meta_reports_tokens_where_the_profile_reads_them() {
        let m = ShardMeta { language: "eng".into(), tokens: 7, layers: 1, dim: 2, architecture: "x".into() };
        assert_eq!(serde_json::to_value(m).unwrap()[mexa_pipeline::profile::META_TOKENS], 7);
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
