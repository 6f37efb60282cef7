//! What running a plan will cost, before it runs: for each `embed` node to run, its sentences
//! and tokens (the model's own tokenizer over the corpus, or over a sample of each language,
//! marked as an estimate) and its time — from what this store measured for the same model
//! and dtype (the tokens and seconds every embedding shard records), else a stated rough
//! estimate from the model's size and this machine's measured matrix-product speed. Also the
//! warnings a plan deserves before hours go into it (a training corpus embedded in every
//! language for a probe that trains on the pivot only).
use crate::embed::Params as EmbedParams;
use anyhow::{anyhow, Result};
use mexa_pipeline::{Plan, Status};
use mexa_store::Store;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Sentences tokenized per language to estimate a corpus's tokens (all of them when fewer).
const SAMPLE: usize = 64;

/// The estimated cost of one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeCost {
    pub sentences: u64,
    pub tokens: u64,
    /// True when every sentence was tokenized (else a per-language sample was, and scaled).
    pub tokens_exact: bool,
    /// Estimated seconds.
    pub seconds: f64,
    /// The tokens/s the estimate assumes, and whether this store measured it (for the same
    /// model and dtype) or it is rough (from the model's size and this machine's speed).
    pub tokens_per_s: f64,
    pub measured: bool,
}

/// What [`estimate`] found: per plan node (None for nodes it does not estimate), the total of
/// what will run, and warnings.
#[derive(Debug, Default, serde::Serialize)]
pub struct PlanCost {
    pub nodes: Vec<Option<NodeCost>>,
    pub warnings: Vec<String>,
    /// This machine's f32 matrix-product speed (FLOP/s) when a rough estimate needed it.
    pub machine_flops: Option<f64>,
    /// Per plan node to run: (shards already in the store, shards it will have when known) —
    /// an interrupted sharded node resumes, it does not start over.
    pub shards: Vec<Option<(usize, Option<usize>)>>,
}

impl PlanCost {
    /// Estimated seconds of everything to run (nodes without an estimate count as nothing).
    pub fn total_seconds(&self) -> f64 {
        self.nodes.iter().flatten().map(|c| c.seconds).sum()
    }
    pub fn total_tokens(&self) -> u64 {
        self.nodes.iter().flatten().map(|c| c.tokens).sum()
    }
}

/// Estimates every `embed` node of `plan` that is to run (see the module doc).
pub fn estimate(plan: &Plan, store: &Store) -> PlanCost {
    let mut out = PlanCost { nodes: vec![None; plan.nodes.len()], ..Default::default() };
    let rates = measured_rates(store);
    let mut machine: Option<f64> = None;
    let mut corpora: HashMap<usize, Option<BTreeMap<String, Vec<String>>>> = HashMap::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        if n.kind == "probe" {
            if let Some(w) = train_warning(plan, i, &mut corpora, store) {
                out.warnings.push(w);
            }
        }
        if n.kind != "embed" || n.status == Status::Cached {
            continue;
        }
        match embed_cost(plan, store, i, &rates, &mut machine, &mut corpora) {
            Ok(c) => out.nodes[i] = Some(c),
            Err(e) => tracing::debug!("{}: no cost estimate ({e:#})", n.label),
        }
    }
    out.machine_flops = machine;
    // One pass over the store's manifests: the shards each node to run already has.
    let to_run: std::collections::HashSet<&mexa_store::Key> =
        plan.nodes.iter().filter(|n| n.status != Status::Cached).map(|n| &n.key).collect();
    let mut found: HashMap<mexa_store::Key, usize> = HashMap::new();
    if !to_run.is_empty() {
        for info in store.list().unwrap_or_default() {
            if let Some(p) = info.manifest.shard_parent().filter(|p| to_run.contains(p)) {
                *found.entry(p.clone()).or_default() += 1;
            }
        }
    }
    out.shards = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let have = *found.get(&n.key)?;
            let total = (n.kind == "embed").then(|| corpus_of(plan, i, "corpus", &mut corpora, store)).flatten();
            Some((have, total.map(|c| c.len())))
        })
        .collect();
    out
}

/// The sentences of the corpus feeding node `i`'s `corpus` slot, per language: read from the
/// store when computed, else loaded from the files its `load_corpus` parameters name.
fn corpus_of(
    plan: &Plan,
    i: usize,
    slot: &str,
    corpora: &mut HashMap<usize, Option<BTreeMap<String, Vec<String>>>>,
    store: &Store,
) -> Option<BTreeMap<String, Vec<String>>> {
    let c = *plan.nodes[i].deps.get(slot)?.first()?;
    corpora
        .entry(c)
        .or_insert_with(|| {
            let n = &plan.nodes[c];
            if n.kind != "load_corpus" {
                return None;
            }
            if n.status == Status::Cached {
                let t = mexa_pipeline::stage::read_stitched(store, &n.key).ok()?;
                let table = mexa_pipeline::Table::new(t.0, t.1);
                return crate::corpus::read_corpus(&table).ok().map(|(_, m)| m);
            }
            let p: crate::corpus::Params = serde_json::from_value(n.params.clone()).ok()?;
            let langs = crate::corpus::load(&p.path, &p.split, &p.languages, &p.pivot, p.limit).ok()?;
            Some(langs.into_iter().map(|l| (l.code, l.lines)).collect())
        })
        .clone()
}

fn embed_cost(
    plan: &Plan,
    store: &Store,
    i: usize,
    rates: &HashMap<String, (u64, f64)>,
    machine: &mut Option<f64>,
    corpora: &mut HashMap<usize, Option<BTreeMap<String, Vec<String>>>>,
) -> Result<NodeCost> {
    let n = &plan.nodes[i];
    let p = EmbedParams::deserialize(&n.params)?;
    let corpus = corpus_of(plan, i, "corpus", corpora, store).ok_or_else(|| anyhow!("corpus not readable"))?;
    let opts = mexa_model::LoadOptions { tokenizer: p.tokenizer.clone(), bos: p.bos, ..Default::default() };
    let (tok, _) = mexa_model::model::load_tokenizer(Path::new(&p.model), &opts)?;
    let (mut sentences, mut tokens, mut exact) = (0u64, 0f64, true);
    for lines in corpus.values() {
        let step = (lines.len() / SAMPLE).max(1);
        let sample: Vec<&String> = lines.iter().step_by(step).take(SAMPLE).collect();
        exact &= sample.len() == lines.len();
        let counted: usize = sample.iter().map(|s| tok.encode(s).map(|v| v.len()).unwrap_or(0)).sum();
        tokens += counted as f64 * lines.len() as f64 / sample.len().max(1) as f64;
        sentences += lines.len() as u64;
    }
    let tokens = tokens.round() as u64;
    let identity = model_identity(&n.spec.params);
    let (tokens_per_s, measured) = match rates.get(&identity) {
        Some(&(t, s)) if t > 0 && s > 0.0 => (t as f64 / s, true),
        _ => {
            // 2 FLOPs per weight per token, at half of this machine's measured f32 product speed
            // (mexa embeds at roughly that share of the peak on CPUs).
            let params = mexa_model::model::per_token_weights(Path::new(&p.model))? as f64;
            let flops = *machine.get_or_insert_with(mexa_model::device::f32_matmul_flops);
            (0.5 * flops / (2.0 * params.max(1.0)), false)
        }
    };
    Ok(NodeCost {
        sentences,
        tokens,
        tokens_exact: exact,
        seconds: tokens as f64 / tokens_per_s,
        tokens_per_s,
        measured,
    })
}

/// What identifies a model run for speed: the model's content identity and the dtype.
fn model_identity(params: &serde_json::Value) -> String {
    format!("{}|{}", mexa_store::canonical_json(&params["model"]), params["dtype"])
}

/// Tokens and seconds every computed `embed` node of the store recorded, by model identity.
fn measured_rates(store: &Store) -> HashMap<String, (u64, f64)> {
    let mut out: HashMap<String, (u64, f64)> = HashMap::new();
    let Ok(list) = store.list() else { return out };
    for info in list.iter().filter(|i| i.manifest.spec.stage == "embed") {
        let id = model_identity(&info.manifest.spec.params);
        for k in info.manifest.shard_keys().unwrap_or_default() {
            if let Ok(m) = store.manifest(&k) {
                if let Some(t) = m.meta.get(mexa_pipeline::profile::META_TOKENS).and_then(|v| v.as_u64()) {
                    let e = out.entry(id.clone()).or_default();
                    e.0 += t;
                    e.1 += m.wall_time_s;
                }
            }
        }
    }
    out
}

/// A probe trains on its corpus's pivot only: a training corpus embedded in more languages
/// than that costs embedding time for nothing (the case hit: SIB-200's train split without
/// `languages:`, 205 languages where one was used).
fn train_warning(
    plan: &Plan,
    probe: usize,
    corpora: &mut HashMap<usize, Option<BTreeMap<String, Vec<String>>>>,
    store: &Store,
) -> Option<String> {
    let e = *plan.nodes[probe].deps.get("train")?.first()?;
    if plan.nodes[e].status == Status::Cached {
        return None;
    }
    let c = *plan.nodes[e].deps.get("corpus")?.first()?;
    let p: crate::corpus::Params = serde_json::from_value(plan.nodes[c].params.clone()).ok()?;
    let corpus = corpus_of(plan, e, "corpus", corpora, store)?;
    let (langs, sentences): (usize, usize) = (corpus.len(), corpus.values().map(Vec::len).sum());
    (langs > 1).then(|| {
        format!(
            "{} trains on {} only, but its `train` embeddings ({}) cover {langs} languages ({sentences} sentences): give `{}` `languages: [{}]` to embed the pivot alone",
            plan.nodes[probe].label, p.pivot, plan.nodes[e].label, plan.nodes[c].stage, p.pivot
        )
    })
}
