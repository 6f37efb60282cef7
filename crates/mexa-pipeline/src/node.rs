//! The unit of work every executor runs: a [`NodeSpec`] (everything needed to compute one
//! node, with no pipeline file; what the Slurm head serialises for its workers) and
//! [`execute_node`], which computes it and publishes its artifact under the key's lock.
use crate::plan::{Plan, Reason, Status};
use crate::stage::{Ctx, InputRef, Progress, Registry};
use anyhow::{anyhow, Context, Result};
use mexa_store::{Key, KeySpec, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

/// Everything a worker needs to compute one node, with no pipeline file: what the head
/// process serialises for a remote executor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    pub key: Key,
    pub label: String,
    /// Id under which the store remembers this node's last key.
    pub node_id: String,
    pub spec: KeySpec,
    pub params: Value,
    /// Slot → (key, label) of each input artifact.
    pub inputs: BTreeMap<String, Vec<(Key, String)>>,
    /// Recompute even if cached, replacing the artifact and its shards (`run --force`).
    #[serde(default)]
    pub force: bool,
}

impl NodeSpec {
    /// A node outside any plan (the report `mexa report` builds): keyed like a planned one,
    /// by the stage's kind and version, these parameters and the inputs' keys.
    pub fn new(
        stage: &dyn crate::Stage,
        label: String,
        node_id: String,
        params: Value,
        inputs: BTreeMap<String, Vec<(Key, String)>>,
    ) -> Self {
        let spec = KeySpec {
            stage: stage.kind().into(),
            version: stage.version(),
            params: params.clone(),
            inputs: inputs.iter().map(|(s, v)| (s.clone(), v.iter().map(|x| x.0.clone()).collect())).collect(),
        };
        NodeSpec { key: mexa_store::key_of(&spec), label, node_id, spec, params, inputs, force: false }
    }

    pub fn from_plan(plan: &Plan, i: usize) -> Self {
        let n = &plan.nodes[i];
        NodeSpec {
            force: n.status == Status::Run(Reason::Forced),
            key: n.key.clone(),
            label: n.label.clone(),
            node_id: plan.node_id(i),
            spec: n.spec.clone(),
            params: n.params.clone(),
            inputs: n
                .deps
                .iter()
                .map(|(slot, ds)| {
                    (
                        slot.clone(),
                        ds.iter().map(|&d| (plan.nodes[d].key.clone(), plan.nodes[d].label.clone())).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// How one node ended.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOutcome {
    Computed {
        seconds: f64,
    },
    /// Another runner produced it while we waited for its lock.
    FoundDone,
}

/// Computes one node and publishes its artifact (the unit of work of every executor).
pub fn execute_node(
    node: &NodeSpec,
    registry: &Registry,
    store: &Store,
    cancel: &AtomicBool,
    progress: &dyn Progress,
    threads: usize,
) -> Result<NodeOutcome> {
    let stage = registry.get(&node.spec.stage).ok_or_else(|| anyhow!("unknown stage kind `{}`", node.spec.stage))?;
    if !node.force && store.complete(&node.key) {
        return Ok(NodeOutcome::FoundDone);
    }
    let _lock = store.lock(&node.key, || {
        progress.message("waiting: another runner is computing this");
        tracing::info!("{}: another runner holds its lock; waiting", node.label);
    })?;
    if !node.force && store.complete(&node.key) {
        return Ok(NodeOutcome::FoundDone);
    }
    for (slot, keys) in &node.inputs {
        for (k, l) in keys {
            if !store.complete(k) {
                let why = match store.manifest(k) {
                    Err(e) if e.is_corrupt() => format!("{e}"),
                    _ => "is missing from the store (or one of its shards is)".to_string(),
                };
                return Err(anyhow!("input `{slot}` ({l}, {}) {why}", k.short()));
            }
        }
    }
    let inputs = node
        .inputs
        .iter()
        .map(|(s, ks)| (s.clone(), ks.iter().map(|(k, l)| InputRef { key: k.clone(), label: l.clone() }).collect()))
        .collect();
    let ctx = Ctx {
        store,
        key: &node.key,
        label: &node.label,
        kind: &node.spec.stage,
        version: node.spec.version,
        params: &node.params,
        inputs,
        cancel,
        progress,
        threads,
        force: node.force,
        reads: Default::default(),
    };
    let meter = crate::profile::Meter::start();
    let out = stage.run(&ctx).map_err(|e| {
        // An input found corrupt while reading it (a same-size flip the plan could not see):
        // move it aside now, so the next run recomputes it instead of failing here again.
        let bad = e.chain().find_map(|c| c.downcast_ref::<mexa_store::StoreError>()).filter(|s| s.is_corrupt());
        match bad.and_then(|s| store.quarantine_if_corrupt(s.key()).map(|to| (s.key().clone(), to))) {
            Some((k, to)) => {
                e.context(format!("{} was corrupt and is now in {}; rerun to recompute it", k.short(), to.display()))
            }
            None => e,
        }
    })?;
    let cost = meter.finish();
    let seconds = cost.wall_s;
    let provenance =
        mexa_store::Provenance { cost, meta: out.meta, inputs_read: ctx.reads.snapshot(), replace: node.force };
    let m = store
        .write_as(node.spec.clone(), &node.label, out.table.schema, &out.table.batches, provenance)
        .with_context(|| format!("writing the artifact of {}", node.label))?;
    if m.key != node.key {
        return Err(anyhow!("internal error: artifact key {} differs from planned key {}", m.key, node.key));
    }
    store.write_ref(&node.node_id, &serde_json::json!({"key": node.key, "label": node.label, "spec": node.spec}))?;
    Ok(NodeOutcome::Computed { seconds })
}
