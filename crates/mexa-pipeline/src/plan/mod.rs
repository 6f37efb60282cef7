//! Grid expansion and planning: a [`PipelineSpec`] becomes a DAG of concrete nodes, each with
//! its artifact key and, for nodes that must run, the reason.
use crate::error::{Pos, SpecError, SpecErrors};
use crate::spec::{value_label, PipelineSpec, StageDecl};
use crate::stage::{InputSpec, ParamSpec, ParamType, Registry};
use mexa_store::{key_of, FileHasher, Key, KeySpec, Store};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

mod render;
mod substitute;
use substitute::{resolve_path, substitute, uses_env};

/// Why a node has to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Reason {
    NeverRun,
    /// The artifact this node had is gone (deleted, collected, or quarantined by verify).
    ArtifactMissing,
    /// The node's index is cached but one of its shards is not.
    ShardMissing,
    /// The artifact filed under the key is not sound (its manifest is another artifact's,
    /// edited, or unsealed): it is replaced by the run.
    Corrupt(String),
    StageVersionChanged {
        from: u32,
        to: u32,
    },
    NewParameters(Vec<String>),
    InputChanged(Vec<String>),
    /// Asked for with `run --force`.
    Forced,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::NeverRun => write!(f, "never run"),
            Reason::ArtifactMissing => write!(f, "artifact missing (deleted or quarantined)"),
            Reason::ShardMissing => {
                write!(f, "a shard is missing (deleted or quarantined); only missing shards are recomputed")
            }
            Reason::Corrupt(why) => write!(f, "the stored artifact is corrupt ({why}); recomputed and replaced"),
            Reason::StageVersionChanged { from, to } => write!(f, "stage version changed (v{from} → v{to})"),
            Reason::NewParameters(p) => write!(f, "new parameters: {}", p.join("; ")),
            Reason::InputChanged(s) => write!(f, "input changed: {}", s.join(", ")),
            Reason::Forced => write!(f, "forced (--force): recomputed and replaced"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Cached,
    Run(Reason),
}

/// One concrete node of the expanded DAG.
#[derive(Debug, Clone, Serialize)]
pub struct PlanNode {
    pub stage: String,
    pub kind: String,
    /// `stage[axis=value,...]`
    pub label: String,
    /// (axis, value label) for the axes this node varies over.
    pub cell: Vec<(String, String)>,
    /// Parameters the stage runs with (defaults filled, paths absolute).
    pub params: Value,
    /// What the key is computed from (paths replaced by content hashes).
    pub spec: KeySpec,
    pub key: Key,
    /// Slot → indices of the nodes feeding it.
    pub deps: BTreeMap<String, Vec<usize>>,
    pub resources: Value,
    pub status: Status,
}

/// The expanded pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub pipeline: String,
    /// The pipeline's `description:`.
    pub description: String,
    /// Nodes in topological order.
    pub nodes: Vec<PlanNode>,
}

impl Plan {
    pub fn to_run(&self) -> usize {
        self.nodes.iter().filter(|n| n.status != Status::Cached).count()
    }
    /// The id under which a node's last key is remembered in the store's refs.
    pub fn node_id(&self, i: usize) -> String {
        format!("{}/{}", self.pipeline, self.nodes[i].label)
    }

    /// The part of the plan `--only` and `--where` choose: the nodes of the `only` stages (all
    /// stages when empty) that agree with every `axis=value` in `wheres` — they and all their
    /// inputs, so a node gathering over other values (a report across models) is left out —
    /// and every node they need. Unknown stages, axes and values are errors.
    pub fn select(&self, only: &[String], wheres: &[(String, String)]) -> anyhow::Result<Plan> {
        let stages: Vec<&str> = self.nodes.iter().map(|n| n.stage.as_str()).collect();
        for o in only {
            if !stages.contains(&o.as_str()) {
                let hint = crate::error::suggest(o, stages.iter().copied()).unwrap_or_default();
                anyhow::bail!("--only: no stage `{o}` in {} {hint}", self.pipeline);
            }
        }
        for (axis, value) in wheres {
            let values: BTreeSet<&str> = self
                .nodes
                .iter()
                .flat_map(|n| n.cell.iter().filter(|(a, _)| a == axis).map(|(_, v)| v.as_str()))
                .collect();
            if values.is_empty() {
                let axes: BTreeSet<&str> =
                    self.nodes.iter().flat_map(|n| n.cell.iter().map(|(a, _)| a.as_str())).collect();
                let hint = crate::error::suggest(axis, axes.iter().copied())
                    .unwrap_or_else(|| format!("axes: {}", axes.into_iter().collect::<Vec<_>>().join(", ")));
                anyhow::bail!("--where: `{axis}` is not a grid axis of {} ({hint})", self.pipeline);
            }
            if !values.contains(value.as_str()) {
                let list = values.into_iter().collect::<Vec<_>>().join(", ");
                anyhow::bail!("--where: axis `{axis}` has no value `{value}` (it has: {list})");
            }
        }
        // agrees[i]: node i and all its inputs agree with every `where`.
        let mut agrees = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            let own = wheres.iter().all(|(a, v)| n.cell.iter().all(|(ca, cv)| ca != a || cv == v));
            agrees[i] = own && n.deps.values().flatten().all(|&d| agrees[d]);
        }
        let mut keep: Vec<bool> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| agrees[i] && (only.is_empty() || only.contains(&n.stage)))
            .collect();
        // And what they need (nodes are in topological order: inputs come first).
        for i in (0..self.nodes.len()).rev() {
            if keep[i] {
                for &d in self.nodes[i].deps.values().flatten() {
                    keep[d] = true;
                }
            }
        }
        let mut index = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if keep[i] {
                index[i] = nodes.len();
                let mut n = n.clone();
                for ds in n.deps.values_mut() {
                    ds.iter_mut().for_each(|d| *d = index[*d]);
                }
                nodes.push(n);
            }
        }
        Ok(Plan { pipeline: self.pipeline.clone(), description: self.description.clone(), nodes })
    }

    /// Marks the nodes `targets` name (a node label, or a stage name for all its nodes) to be
    /// recomputed even if cached. Their keys do not change, so nothing downstream reruns.
    pub fn force(&mut self, targets: &[String]) -> anyhow::Result<()> {
        for t in targets {
            let hit: Vec<usize> =
                (0..self.nodes.len()).filter(|&i| self.nodes[i].label == *t || self.nodes[i].stage == *t).collect();
            if hit.is_empty() {
                let names: BTreeSet<&str> =
                    self.nodes.iter().flat_map(|n| [n.stage.as_str(), n.label.as_str()]).collect();
                let hint = crate::error::suggest(t, names.iter().copied()).unwrap_or_default();
                anyhow::bail!("--force: no node or stage `{t}` in {} {hint}", self.pipeline);
            }
            for i in hit {
                self.nodes[i].status = Status::Run(Reason::Forced);
            }
        }
        Ok(())
    }
}

/// Where `${assets}` points: $MEXA_ASSETS, else $MEXA_CACHE/assets, else ~/.cache/mexa/assets.
pub fn assets_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MEXA_ASSETS") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("MEXA_CACHE") {
        return PathBuf::from(p).join("assets");
    }
    home().join(".cache/mexa/assets")
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

/// The grid's cells: the product of the axes, less `exclude` matches, plus `include`s
/// (an include that leaves an axis out is taken for every value of it).
pub fn cells(spec: &PipelineSpec) -> Vec<Vec<Value>> {
    let mut out = product(spec.axes.iter().map(|a| a.values.clone()));
    let matches = |cell: &[Value], rule: &BTreeMap<String, Value>| {
        spec.axes
            .iter()
            .zip(cell)
            .all(|(a, v)| rule.get(&a.name).is_none_or(|r| r == v || value_label(r) == value_label(v)))
    };
    out.retain(|c| !spec.exclude.iter().any(|(_, r)| matches(c, r)));
    let mut seen: std::collections::HashSet<Vec<String>> =
        out.iter().map(|c| c.iter().map(value_label).collect()).collect();
    for (_, rule) in &spec.include {
        let partial = product(spec.axes.iter().map(|a| match rule.get(&a.name) {
            Some(v) => vec![v.clone()],
            None => a.values.clone(),
        }));
        for c in partial {
            if seen.insert(c.iter().map(value_label).collect()) {
                out.push(c);
            }
        }
    }
    out
}

/// The cartesian product of value lists, first list varying slowest.
fn product(lists: impl Iterator<Item = Vec<Value>>) -> Vec<Vec<Value>> {
    let mut out: Vec<Vec<Value>> = vec![vec![]];
    for vals in lists {
        out = out
            .into_iter()
            .flat_map(|c| {
                vals.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(v.clone());
                    c
                })
            })
            .collect();
    }
    out
}

/// Expands and keys a pipeline. Reads the store to mark cached nodes and give reasons.
pub fn plan(spec: &PipelineSpec, registry: &Registry, store: &Store, hasher: &FileHasher) -> Result<Plan, SpecErrors> {
    let mut p = Planner::new(spec, hasher);
    let stage_axes = p.stage_axes(registry);
    let mut nodes: Vec<PlanNode> = Vec::new();
    // Per stage: its axes, and projection (value labels on those axes) → node index.
    let mut by_stage: HashMap<&str, (Vec<usize>, HashMap<Vec<String>, usize>)> = HashMap::new();
    for st in &spec.stages {
        let imp = registry.get(&st.kind).expect("validated");
        let (pspecs, islots) = (imp.params(), imp.inputs());
        let ax = &stage_axes[st.name.as_str()];
        let mut index: HashMap<Vec<String>, usize> = HashMap::new();
        for ci in 0..p.cells.len() {
            let proj: Vec<String> = ax.iter().map(|&a| p.labels[ci][a].clone()).collect();
            if index.contains_key(&proj) || !p.stage_in_cell(st, &islots, &by_stage, ci) {
                continue;
            }
            let params = p.params(st, &pspecs, ci, ax);
            let params = params.filter(|(run, _)| match imp.check_params(run) {
                Ok(()) => true,
                Err(e) => {
                    // A check that names its parameter (a ParamError) points at that parameter's
                    // value; one whose message names a parameter set by `-S` at that override;
                    // the rest at the stage's line.
                    let msg = e.to_string();
                    let pos = e
                        .downcast_ref::<crate::error::ParamError>()
                        .and_then(|pe| st.params.iter().find(|(n, _)| *n == pe.param))
                        .or_else(|| {
                            st.params.iter().find(|(name, node)| {
                                node.pos.file.starts_with("-S ") && msg.contains(&format!("`{name}`"))
                            })
                        })
                        .map_or_else(|| st.pos.clone(), |(_, node)| node.pos.clone());
                    p.errs.push(SpecError::new(pos, format!("stage `{}` ({}): {e}", st.name, st.kind)));
                    false
                }
            });
            let Some((params, key_params)) = params else { continue };
            let deps = p.inputs(st, &islots, &by_stage, &nodes, ci, ax);
            let input_keys = deps
                .iter()
                .map(|(slot, found)| (slot.clone(), found.iter().map(|&i| nodes[i].key.clone()).collect()))
                .collect();
            let kspec =
                KeySpec { stage: st.kind.clone(), version: imp.version(), params: key_params, inputs: input_keys };
            let cell: Vec<(String, String)> =
                ax.iter().map(|&a| (spec.axes[a].name.clone(), p.labels[ci][a].clone())).collect();
            index.insert(proj, nodes.len());
            nodes.push(PlanNode {
                stage: st.name.clone(),
                kind: st.kind.clone(),
                label: node_label(&st.name, &cell),
                cell,
                params,
                key: key_of(&kspec),
                spec: kspec,
                deps,
                resources: p.resources(st, ci, ax),
                status: Status::Cached,
            });
        }
        by_stage.insert(&st.name, (ax.clone(), index));
    }
    if !p.errs.is_empty() {
        let mut errs = p.errs;
        errs.dedup_by(|a, b| a.to_string() == b.to_string());
        return Err(SpecErrors(errs));
    }
    let _ = hasher.save();
    let mut plan = Plan { pipeline: spec.name.clone(), description: spec.description.clone(), nodes };
    mark_status(&mut plan, store);
    Ok(plan)
}

/// `stage[axis=value,..]`, or the stage's name when it varies over no axis.
fn node_label(stage: &str, cell: &[(String, String)]) -> String {
    if cell.is_empty() {
        return stage.to_string();
    }
    format!("{stage}[{}]", cell.iter().map(|(a, v)| format!("{a}={v}")).collect::<Vec<_>>().join(","))
}

/// Marks each node cached, or to run with the reason.
fn mark_status(plan: &mut Plan, store: &Store) {
    let refs = store.refs();
    for i in 0..plan.nodes.len() {
        // A stat first: the manifest is read only for nodes that are there.
        let key = &plan.nodes[i].key;
        if store.contains(key) {
            match store.state(key) {
                mexa_store::State::Corrupt(why) => plan.nodes[i].status = Status::Run(Reason::Corrupt(why)),
                // A sharded node whose index is cached but a shard is gone (quarantined,
                // deleted) or corrupt: the run recomputes those shards only.
                mexa_store::State::Incomplete => plan.nodes[i].status = Status::Run(Reason::ShardMissing),
                mexa_store::State::Complete | mexa_store::State::Missing => {}
            }
            continue;
        }
        let prev = refs.get(&plan.node_id(i));
        plan.nodes[i].status = Status::Run(reason(&plan.nodes[i], prev.as_ref(), plan));
    }
}

/// One planning pass: the grid's cells, what has been resolved so far (external files'
/// hashes, models' keys) and the errors found, all reported together at the end.
struct Planner<'a> {
    spec: &'a PipelineSpec,
    hasher: &'a FileHasher,
    cells: Vec<Vec<Value>>,
    /// Each cell's value labels, per axis.
    labels: Vec<Vec<String>>,
    axis_index: HashMap<&'a str, usize>,
    base_dir: PathBuf,
    assets: PathBuf,
    path_hashes: HashMap<PathBuf, Value>,
    /// A model reference → (the path the stage gets, what enters the key).
    model_refs: HashMap<String, (Value, Value)>,
    errs: Vec<SpecError>,
}

impl<'a> Planner<'a> {
    fn new(spec: &'a PipelineSpec, hasher: &'a FileHasher) -> Self {
        let cells = cells(spec);
        let labels = cells.iter().map(|c| c.iter().map(value_label).collect()).collect();
        Planner {
            spec,
            hasher,
            cells,
            labels,
            axis_index: spec.axes.iter().enumerate().map(|(i, a)| (a.name.as_str(), i)).collect(),
            base_dir: spec.file.parent().map(Path::to_path_buf).unwrap_or_default(),
            assets: assets_dir(),
            path_hashes: HashMap::new(),
            model_refs: HashMap::new(),
            errs: Vec::new(),
        }
    }

    /// Axes of each stage: direct references plus the axes of plain (not gathered) inputs.
    fn stage_axes(&self, registry: &Registry) -> HashMap<&'a str, Vec<usize>> {
        let mut stage_axes: HashMap<&str, Vec<usize>> = HashMap::new();
        for st in &self.spec.stages {
            let imp = registry.get(&st.kind).expect("validated");
            let gather: Vec<&str> = imp.inputs().iter().filter(|i| i.gather).map(|i| i.name).collect();
            let mut ax: Vec<usize> = st.direct_axes.iter().map(|a| self.axis_index[a.as_str()]).collect();
            for (slot, target, _) in &st.inputs {
                if !gather.contains(&slot.as_str()) {
                    ax.extend(stage_axes[target.as_str()].iter().copied());
                }
            }
            ax.sort();
            ax.dedup();
            stage_axes.insert(&st.name, ax);
        }
        stage_axes
    }

    /// Whether the stage has a node in cell `ci`: `when:` restricts a stage to some cells, and
    /// a stage fed (plainly) by a restricted one exists only where its inputs do.
    fn stage_in_cell(
        &self,
        st: &StageDecl,
        islots: &[InputSpec],
        by_stage: &HashMap<&str, (Vec<usize>, HashMap<Vec<String>, usize>)>,
        ci: usize,
    ) -> bool {
        st.when.iter().all(|(a, vals)| vals.contains(&self.labels[ci][self.axis_index[a.as_str()]]))
            && st.inputs.iter().all(|(slot, target, _)| {
                let gather = islots.iter().any(|s| s.name == slot && s.gather);
                let (tax, tindex) = &by_stage[target.as_str()];
                gather || tindex.contains_key(&tax.iter().map(|&a| self.labels[ci][a].clone()).collect::<Vec<_>>())
            })
    }

    /// The node's parameters in cell `ci`: substituted, defaults filled, types checked, paths
    /// and models resolved. Returns (what the stage gets, what enters the key), or `None`
    /// after recording the errors.
    /// A stage's executor options in one grid cell: `${…}` references substituted and the
    /// substituted values' types checked (located errors, as for parameters).
    fn resources(&mut self, st: &StageDecl, ci: usize, ax: &[usize]) -> Value {
        let Some(node) = &st.resources_node else { return st.resources.clone() };
        let spec = self.spec;
        let cell = self.cells[ci].clone();
        let assign: HashMap<&str, &Value> = ax.iter().map(|&a| (spec.axes[a].name.as_str(), &cell[a])).collect();
        let v = match substitute(node, &assign, &self.assets) {
            Ok(v) => v,
            Err(e) => {
                self.errs.push(e);
                return Value::Null;
            }
        };
        for (exec, opts) in v.as_object().into_iter().flatten() {
            for (key, val) in opts.as_object().into_iter().flatten() {
                let want = crate::executor_options::executor(exec).and_then(|e| e.option(key));
                if let Some(want) = want.filter(|w| !w.fits(val)) {
                    let axes: Vec<&str> = spec.axes.iter().map(|a| a.name.as_str()).collect();
                    let pos = node.get(exec).and_then(|e| e.get(key)).map_or(node.pos.clone(), |n| n.pos.clone());
                    self.errs.push(
                        SpecError::new(
                            pos,
                            format!(
                                "stage `{}`: `{exec}` option `{key}` must be {}, found {}",
                                st.name,
                                want.describe(),
                                short(val)
                            ),
                        )
                        .hint(format!("in grid cell {}", cell_text(&axes, &self.labels[ci], ax))),
                    );
                }
            }
        }
        v
    }

    fn params(&mut self, st: &StageDecl, pspecs: &[ParamSpec], ci: usize, ax: &[usize]) -> Option<(Value, Value)> {
        let spec = self.spec;
        let cell = self.cells[ci].clone();
        let assign: HashMap<&str, &Value> = ax.iter().map(|&a| (spec.axes[a].name.as_str(), &cell[a])).collect();
        let mut run_params = serde_json::Map::new();
        let mut key_params = serde_json::Map::new();
        let mut ok = true;
        for ps in pspecs {
            let given = st.params.iter().find(|(n, _)| n == ps.name);
            let (value, pos) = match given {
                Some((_, node)) => match substitute(node, &assign, &self.assets) {
                    Ok(v) => (v, node.pos.clone()),
                    Err(e) => {
                        self.errs.push(e);
                        ok = false;
                        continue;
                    }
                },
                None => (ps.default.clone().expect("required params validated"), st.pos.clone()),
            };
            let Some(value) = ps.ty.check(&value) else {
                let axes: Vec<&str> = spec.axes.iter().map(|a| a.name.as_str()).collect();
                let msg =
                    format!("stage `{}`: `{}` must be {}, found {}", st.name, ps.name, ps.ty.describe(), short(&value));
                let hint = format!("in grid cell {}", cell_text(&axes, &self.labels[ci], ax));
                self.errs.push(SpecError::new(pos, msg).hint(hint));
                ok = false;
                continue;
            };
            let from_env = given.is_some_and(|(_, node)| uses_env(node, &assign));
            let Some((run_v, key_v)) = self.resolve(st, ps, value, from_env, pos) else {
                ok = false;
                continue;
            };
            run_params.insert(ps.name.to_string(), run_v);
            // Execution settings change speed, not results: not part of the key. An option
            // added later is keyed only when set away from its default.
            let default_kept = ps.keyed_if_set && ps.default.as_ref() == Some(&key_v);
            if !ps.execution && !default_kept {
                key_params.insert(ps.name.to_string(), key_v);
            }
        }
        ok.then(|| (Value::Object(run_params), Value::Object(key_params)))
    }

    /// A checked value → (what the stage gets, what enters the key): models and external
    /// files by content, values from the environment by digest, the rest as they are.
    fn resolve(
        &mut self,
        st: &StageDecl,
        ps: &ParamSpec,
        value: Value,
        from_env: bool,
        pos: Pos,
    ) -> Option<(Value, Value)> {
        let fail = |errs: &mut Vec<SpecError>, e: anyhow::Error, hint: &str| {
            errs.push(SpecError::new(pos.clone(), format!("stage `{}`: `{}`: {e:#}", st.name, ps.name)).hint(hint));
            None
        };
        match (ps.ty, &value) {
            (ParamType::Model, Value::String(s)) => {
                if let Some(m) = self.model_refs.get(s) {
                    return Some(m.clone());
                }
                match mexa_store::models::resolve(s, &self.base_dir, self.hasher) {
                    Ok(m) => {
                        let v = (Value::String(m.path.to_string_lossy().into_owned()), m.key);
                        self.model_refs.insert(s.clone(), v.clone());
                        Some(v)
                    }
                    Err(e) => fail(&mut self.errs, e, "a model is a folder (config.json + safetensors + tokenizer.json), a .gguf file, or a Hugging Face id already in the local cache; fetch the bundled ones with scripts/fetch-assets.py"),
                }
            }
            (ParamType::Path | ParamType::OptPath, Value::String(s)) if !s.is_empty() => {
                let p = resolve_path(s, &self.base_dir);
                let h = match self.path_hashes.get(&p) {
                    Some(h) => h.clone(),
                    None => match mexa_store::models::file_key(&p, self.hasher) {
                        Ok(h) => {
                            self.path_hashes.insert(p.clone(), h.clone());
                            h
                        }
                        Err(e) => {
                            return fail(
                                &mut self.errs,
                                e,
                                "fetch the bundled assets with scripts/fetch-assets.py, or fix the path",
                            )
                        }
                    },
                };
                Some((Value::String(p.to_string_lossy().into_owned()), h))
            }
            // A value that came from the environment may be a secret: it enters the key as a
            // digest, so manifests and refs never hold it in clear.
            _ if from_env => {
                let digest = blake3::hash(mexa_store::canonical_json(&value).as_bytes()).to_hex().to_string();
                Some((value, serde_json::json!({ "from_env_blake3": digest })))
            }
            _ => Some((value.clone(), value)),
        }
    }

    /// The nodes feeding each input slot in cell `ci`: a plain slot the target's node of the
    /// same projection, a gather slot every target node that agrees on the axes both vary
    /// over (ordered by label).
    fn inputs(
        &self,
        st: &StageDecl,
        islots: &[InputSpec],
        by_stage: &HashMap<&str, (Vec<usize>, HashMap<Vec<String>, usize>)>,
        nodes: &[PlanNode],
        ci: usize,
        ax: &[usize],
    ) -> BTreeMap<String, Vec<usize>> {
        let labels = &self.labels[ci];
        let mut deps = BTreeMap::new();
        for (slot, target, _) in &st.inputs {
            let (tax, tindex) = &by_stage[target.as_str()];
            let gather = islots.iter().any(|s| s.name == slot && s.gather);
            let mut found: Vec<usize> = if gather {
                let mut v: Vec<usize> = tindex
                    .iter()
                    .filter(|(tproj, _)| tax.iter().zip(tproj.iter()).all(|(a, l)| !ax.contains(a) || labels[*a] == *l))
                    .map(|(_, &i)| i)
                    .collect();
                v.sort_by(|a, b| nodes[*a].label.cmp(&nodes[*b].label));
                v
            } else {
                let tproj: Vec<String> = tax.iter().map(|&a| labels[a].clone()).collect();
                tindex.get(&tproj).copied().into_iter().collect()
            };
            found.dedup();
            deps.insert(slot.clone(), found);
        }
        deps
    }
}

fn reason(node: &PlanNode, prev: Option<&Value>, plan: &Plan) -> Reason {
    let Some(prev) = prev else { return Reason::NeverRun };
    let Ok(old) = serde_json::from_value::<KeySpec>(prev["spec"].clone()) else { return Reason::NeverRun };
    if prev["key"].as_str() == Some(node.key.as_str()) {
        return Reason::ArtifactMissing;
    }
    if old.version != node.spec.version {
        return Reason::StageVersionChanged { from: old.version, to: node.spec.version };
    }
    if old.params != node.spec.params {
        let (a, b) = (
            old.params.as_object().cloned().unwrap_or_default(),
            node.spec.params.as_object().cloned().unwrap_or_default(),
        );
        let mut changes = Vec::new();
        for (k, v) in &b {
            match a.get(k) {
                Some(o) if o == v => {}
                Some(o) => changes.push(format!("{k}: {} → {}", short(o), short(v))),
                None => changes.push(format!("{k}: (new) {}", short(v))),
            }
        }
        for k in a.keys().filter(|k| !b.contains_key(*k)) {
            changes.push(format!("{k}: removed"));
        }
        return Reason::NewParameters(changes);
    }
    let changed: Vec<String> = node
        .spec
        .inputs
        .iter()
        .filter(|(slot, keys)| old.inputs.get(*slot) != Some(keys))
        .map(|(slot, _)| {
            let from: Vec<&str> = node.deps[slot].iter().map(|&i| plan.nodes[i].label.as_str()).collect();
            format!("{slot} (from {})", from.join(", "))
        })
        .collect();
    Reason::InputChanged(changed)
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::Object(m) if m.contains_key("blake3") => {
            format!("content {}", m["blake3"].as_str().unwrap_or_default().chars().take(Key::SHORT).collect::<String>())
        }
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(59).collect::<String>())
    } else {
        s
    }
}

fn cell_text(axes: &[&str], labels: &[String], ax: &[usize]) -> String {
    ax.iter().map(|&a| format!("{}={}", axes[a], labels[a])).collect::<Vec<_>>().join(", ")
}
