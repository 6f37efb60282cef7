//! `embed`: runs a model over the corpus, one shard per language, storing every layer's
//! pooled sentence embeddings (all requested poolings from one forward pass).
use crate::corpus::read_corpus;
use crate::util::{col_i32, col_str, schema};
use anyhow::{anyhow, bail, Result};
use arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use mexa_model::{embed, parse_device, parse_dtype, BatchOptions, BosPolicy, LoadOptions, Model, Pooled, Pooling};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, ParamType, Stage, Table};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

pub struct Embed;

/// The parameters every model-running stage has (embed, choice).
pub(crate) struct ModelParams<'a> {
    pub tokenizer: Option<&'a str>,
    pub dtype: &'a str,
    pub device: &'a str,
    pub bos: &'a str,
}

/// Load options from a model-running stage's parameters, parsed once.
pub(crate) fn load_options(p: &ModelParams, lm_head: bool) -> Result<LoadOptions> {
    Ok(LoadOptions {
        kind: parse_dtype(p.dtype)?,
        device: parse_device(p.device)?,
        tokenizer: p.tokenizer.filter(|t| !t.is_empty()).map(PathBuf::from),
        bos: p.bos.parse::<BosPolicy>()?,
        lm_head,
    })
}

/// `embed`'s parameters (declared for pipelines in `params()`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    model: String,
    tokenizer: Option<String>,
    dtype: String,
    device: String,
    bos: String,
    batch_tokens: usize,
    batch_sentences: usize,
    poolings: Vec<String>,
}

impl Params {
    fn model_params(&self) -> ModelParams<'_> {
        ModelParams { tokenizer: self.tokenizer.as_deref(), dtype: &self.dtype, device: &self.device, bos: &self.bos }
    }
}

/// A cached model and whether it was loaded with its LM head.
type Cached = (bool, Arc<Mutex<Model>>);

/// Models stay loaded for the life of the process, shared by every node that names them.
fn model_cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The model at `path` with these options, loaded once per process. A model loaded with its
/// LM head (`choice`) also serves requests without it (`embed`); one loaded without it is
/// replaced when a head is asked for (an untied head is not in it).
pub(crate) fn load_model(path: &str, opts: &LoadOptions) -> Result<Arc<Mutex<Model>>> {
    let id = format!("{path}|{:?}|{:?}|{:?}|{:?}", opts.kind, opts.device, opts.tokenizer, opts.bos);
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

pub const POOLINGS: &[&str] = &["weighted", "last", "mean"];

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
pub fn read_embeddings(t: &Table) -> Result<HashMap<String, Vec<mexa_metrics::Matrix>>> {
    let mut out: HashMap<String, Vec<(usize, Vec<f32>)>> = HashMap::new();
    let mut dim = 0;
    let mut rows: HashMap<(String, usize), usize> = HashMap::new();
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
            let layers = out.entry(p.value(i).to_string()).or_default();
            let li = l.value(i) as usize;
            while layers.len() <= li {
                layers.push((0, vec![]));
            }
            let r = rows.entry((p.value(i).to_string(), li)).or_insert(0);
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
        vec![
            ParamSpec::required(
                "model",
                ParamType::Model,
                "the model to run (a Hugging Face id is looked up in the local cache, never downloaded)",
            ),
            ParamSpec::optional(
                "tokenizer",
                ParamType::OptPath,
                "null",
                "a tokenizer.json to use instead of the model's",
            ),
            ParamSpec::optional(
                "poolings",
                ParamType::EnumList(POOLINGS),
                "[\"weighted\", \"last\"]",
                "poolings computed in the same pass",
            ),
            ParamSpec::optional(
                "dtype",
                ParamType::Enum(&["f32", "f16", "bf16"]),
                "\"f32\"",
                "weights and activations (f32 on CPU)",
            ),
            ParamSpec::optional("device", ParamType::Str, "\"auto\"", "auto, cpu, cuda or cuda:N").execution(),
            ParamSpec::optional(
                "bos",
                ParamType::Enum(&["auto", "always", "never"]),
                "\"auto\"",
                "BOS token: as the tokenizer says, or forced",
            ),
            ParamSpec::optional(
                "batch_tokens",
                ParamType::Int,
                "4096",
                "most padded tokens per batch (on a GPU, 16384 was fastest on an H200)",
            )
            .execution(),
            ParamSpec::optional(
                "batch_sentences",
                ParamType::Int,
                "64",
                "most sentences per batch (raise with batch_tokens on a GPU)",
            )
            .execution(),
        ]
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::one("corpus", "a load_corpus table")]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let corpus = ctx.read(ctx.input("corpus")?)?;
        let (order, texts) = read_corpus(&corpus)?;
        let poolings: Vec<Pooling> = p.poolings.iter().map(|s| Pooling::parse(s)).collect::<Result<_>>()?;
        if poolings.is_empty() {
            bail!("`poolings` is empty");
        }
        let opts = load_options(&p.model_params(), false)?;
        let model_path = p.model.as_str();
        let batch = BatchOptions { max_tokens: p.batch_tokens.max(1), max_sentences: p.batch_sentences.max(1) };
        let total: usize = texts.values().map(Vec::len).sum();
        ctx.progress.set_length(total as u64);
        let mut shards = Vec::new();
        let mut info = serde_json::Value::Null;
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
                ctx.progress.message(&format!("{lang}: {} sentences, {tokens} tokens in {secs:.1}s ({:.0} tokens/s)", sents.len(), tokens as f64 / secs.max(1e-9)));
                let (sch, b) = embedding_batch(&pooled)?;
                Ok(Output {
                    table: Table::new(sch, vec![b]),
                    meta: serde_json::json!({"language": lang, "tokens": tokens, "layers": pooled[0].layers, "dim": pooled[0].dim, "architecture": m.architecture}),
                })
            })?;
            if info.is_null() {
                info = ctx.store.manifest(&key)?.meta;
            }
            shards.push((lang.clone(), key));
            if ctx.cancelled() {
                bail!("cancelled");
            }
        }
        let meta = serde_json::json!({
            "pivot": order.first(),
            "layers": info["layers"],
            "dim": info["dim"],
            "architecture": info["architecture"],
            "poolings": poolings.iter().map(|p| p.name()).collect::<Vec<_>>(),
        });
        Ctx::shard_index(&shards, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mexa_model::{score, IdRequest, ScoreOptions};

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
