//! Grid expansion and planning: a [`PipelineSpec`] becomes a DAG of concrete nodes, each with
//! its artifact key and, for nodes that must run, the reason.
use crate::error::{Pos, SpecError, SpecErrors};
use crate::spec::{refs_in, value_label, PipelineSpec};
use crate::stage::{ParamType, Registry};
use crate::yaml::{Node, NodeKind};
use mexa_store::{key_of, FileHasher, KeySpec, Store};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Why a node has to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum Reason {
    NeverRun,
    /// The artifact this node had is gone (deleted, collected, or quarantined by verify).
    ArtifactMissing,
    /// The node's index is cached but one of its shards is not.
    ShardMissing,
    StageVersionChanged {
        from: u32,
        to: u32,
    },
    NewParameters(Vec<String>),
    InputChanged(Vec<String>),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::NeverRun => write!(f, "never run"),
            Reason::ArtifactMissing => write!(f, "artifact missing (deleted or quarantined)"),
            Reason::ShardMissing => {
                write!(f, "a shard is missing (deleted or quarantined); only missing shards are recomputed")
            }
            Reason::StageVersionChanged { from, to } => write!(f, "stage version changed (v{from} → v{to})"),
            Reason::NewParameters(p) => write!(f, "new parameters: {}", p.join("; ")),
            Reason::InputChanged(s) => write!(f, "input changed: {}", s.join(", ")),
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
    pub key: String,
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
    let cells = cells(spec);
    let axis_index: HashMap<&str, usize> = spec.axes.iter().enumerate().map(|(i, a)| (a.name.as_str(), i)).collect();
    let base_dir = spec.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let assets = assets_dir();

    // Axes of each stage: direct references plus the axes of plain inputs.
    let mut stage_axes: HashMap<&str, Vec<usize>> = HashMap::new();
    for st in &spec.stages {
        let imp = registry.get(&st.kind).expect("validated");
        let gather: Vec<&str> = imp.inputs().iter().filter(|i| i.gather).map(|i| i.name).collect();
        let mut ax: Vec<usize> = st.direct_axes.iter().map(|a| axis_index[a.as_str()]).collect();
        for (slot, target, _) in &st.inputs {
            if !gather.contains(&slot.as_str()) {
                ax.extend(stage_axes[target.as_str()].iter().copied());
            }
        }
        ax.sort();
        ax.dedup();
        stage_axes.insert(&st.name, ax);
    }

    let mut nodes: Vec<PlanNode> = Vec::new();
    let mut errs = Vec::new();
    // Per stage: projection (value labels on its axes) → node index.
    let mut by_stage: HashMap<&str, (Vec<usize>, HashMap<Vec<String>, usize>)> = HashMap::new();
    let mut path_hashes: HashMap<PathBuf, String> = HashMap::new();
    let mut model_refs: HashMap<String, (Value, Value)> = HashMap::new();
    let labels: Vec<Vec<String>> = cells.iter().map(|c| c.iter().map(value_label).collect()).collect();

    for st in &spec.stages {
        let imp = registry.get(&st.kind).expect("validated");
        let pspecs = imp.params();
        let islots = imp.inputs();
        let ax = &stage_axes[st.name.as_str()];
        let mut index: HashMap<Vec<String>, usize> = HashMap::new();
        let mut order = Vec::new();
        for (ci, cell) in cells.iter().enumerate() {
            let proj: Vec<String> = ax.iter().map(|&a| labels[ci][a].clone()).collect();
            if index.contains_key(&proj) {
                continue;
            }
            // `when:` restricts the stage to some cells; a stage fed (plainly) by a restricted
            // one exists only where its inputs do.
            if !st.when.iter().all(|(a, vals)| vals.contains(&labels[ci][axis_index[a.as_str()]])) {
                continue;
            }
            let inputs_here = st.inputs.iter().all(|(slot, target, _)| {
                let gather = islots.iter().any(|s| s.name == slot && s.gather);
                let (tax, tindex) = &by_stage[target.as_str()];
                gather || tindex.contains_key(&tax.iter().map(|&a| labels[ci][a].clone()).collect::<Vec<_>>())
            });
            if !inputs_here {
                continue;
            }
            let assign: HashMap<&str, &Value> = ax.iter().map(|&a| (spec.axes[a].name.as_str(), &cell[a])).collect();
            // Parameters: substitute, fill defaults, check types, resolve paths.
            let mut run_params = serde_json::Map::new();
            let mut key_params = serde_json::Map::new();
            let mut ok = true;
            for ps in &pspecs {
                let given = st.params.iter().find(|(n, _)| n == ps.name);
                let (value, pos) = match given {
                    Some((_, node)) => match substitute(node, &assign, &assets) {
                        Ok(v) => (v, node.pos.clone()),
                        Err(e) => {
                            errs.push(e);
                            ok = false;
                            continue;
                        }
                    },
                    None => (ps.default_value().expect("required params validated"), st.pos.clone()),
                };
                let Some(value) = ps.ty.check(&value) else {
                    errs.push(
                        SpecError::new(
                            pos,
                            format!(
                                "stage `{}`: `{}` must be {}, found {}",
                                st.name,
                                ps.name,
                                ps.ty.describe(),
                                short(&value)
                            ),
                        )
                        .hint(format!(
                            "in grid cell {}",
                            cell_text(&spec.axes.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), &labels[ci], ax)
                        )),
                    );
                    ok = false;
                    continue;
                };
                let (run_v, key_v) = match (ps.ty, &value) {
                    (ParamType::Model, Value::String(s)) => match model_refs.get(s) {
                        Some(m) => m.clone(),
                        None => match mexa_store::models::resolve(s, &base_dir, hasher) {
                            Ok(m) => {
                                let v = (Value::String(m.path.to_string_lossy().into_owned()), m.key);
                                model_refs.insert(s.clone(), v.clone());
                                v
                            }
                            Err(e) => {
                                errs.push(SpecError::new(pos, format!("stage `{}`: `{}`: {e:#}", st.name, ps.name))
                                    .hint("a model is a folder (config.json + safetensors + tokenizer.json), a .gguf file, or a Hugging Face id already in the local cache; fetch the bundled ones with scripts/fetch-assets.py"));
                                ok = false;
                                continue;
                            }
                        },
                    },
                    (ParamType::Path | ParamType::OptPath, Value::String(s)) if !s.is_empty() => {
                        let p = resolve_path(s, &base_dir);
                        let h = match path_hashes.get(&p) {
                            Some(h) => h.clone(),
                            None => {
                                match hasher.hash_path(&p) {
                                    Ok(h) => {
                                        path_hashes.insert(p.clone(), h.clone());
                                        h
                                    }
                                    Err(e) => {
                                        errs.push(SpecError::new(pos, format!("stage `{}`: `{}`: {e:#}", st.name, ps.name))
                                        .hint("fetch the bundled assets with scripts/fetch-assets.py, or fix the path"));
                                        ok = false;
                                        continue;
                                    }
                                }
                            }
                        };
                        (Value::String(p.to_string_lossy().into_owned()), serde_json::json!({ "blake3": h }))
                    }
                    // A value that came from the environment may be a secret: it enters the key
                    // as a digest, so manifests and refs never hold it in clear.
                    _ if given.is_some_and(|(_, node)| uses_env(node, &assign)) => {
                        let digest = blake3::hash(mexa_store::canonical_json(&value).as_bytes()).to_hex().to_string();
                        (value.clone(), serde_json::json!({ "from_env_blake3": digest }))
                    }
                    _ => (value.clone(), value),
                };
                run_params.insert(ps.name.to_string(), run_v);
                // Execution settings change speed, not results: not part of the key.
                if !ps.execution {
                    key_params.insert(ps.name.to_string(), key_v);
                }
            }
            let params = Value::Object(run_params);
            if ok {
                if let Err(e) = imp.check_params(&params) {
                    errs.push(SpecError::new(st.pos.clone(), format!("stage `{}` ({}): {e}", st.name, st.kind)));
                    ok = false;
                }
            }
            // Inputs.
            let mut deps = BTreeMap::new();
            let mut input_keys = BTreeMap::new();
            for (slot, target, _) in &st.inputs {
                let (tax, tindex) = &by_stage[target.as_str()];
                let gather = islots.iter().any(|s| s.name == slot && s.gather);
                let mut found: Vec<usize> = if gather {
                    // Every node of the target that agrees on the axes both vary over.
                    let mut v: Vec<usize> = tindex
                        .iter()
                        .filter(|(tproj, _)| {
                            tax.iter().zip(tproj.iter()).all(|(a, l)| !ax.contains(a) || labels[ci][*a] == *l)
                        })
                        .map(|(_, &i)| i)
                        .collect();
                    v.sort_by(|a, b| nodes[*a].label.cmp(&nodes[*b].label));
                    v
                } else {
                    let tproj: Vec<String> = tax.iter().map(|&a| labels[ci][a].clone()).collect();
                    tindex.get(&tproj).copied().into_iter().collect()
                };
                found.dedup();
                input_keys.insert(slot.clone(), found.iter().map(|&i| nodes[i].key.clone()).collect::<Vec<_>>());
                deps.insert(slot.clone(), found);
            }
            if !ok {
                continue;
            }
            let kspec = KeySpec {
                stage: st.kind.clone(),
                version: imp.version(),
                params: Value::Object(key_params),
                inputs: input_keys,
            };
            let key = key_of(&kspec);
            let cell_pairs: Vec<(String, String)> =
                ax.iter().map(|&a| (spec.axes[a].name.clone(), labels[ci][a].clone())).collect();
            let label = if cell_pairs.is_empty() {
                st.name.clone()
            } else {
                format!(
                    "{}[{}]",
                    st.name,
                    cell_pairs.iter().map(|(a, v)| format!("{a}={v}")).collect::<Vec<_>>().join(",")
                )
            };
            index.insert(proj, nodes.len());
            order.push(nodes.len());
            nodes.push(PlanNode {
                stage: st.name.clone(),
                kind: st.kind.clone(),
                label,
                cell: cell_pairs,
                params,
                spec: kspec,
                key,
                deps,
                resources: st.resources.clone(),
                status: Status::Cached,
            });
        }
        by_stage.insert(&st.name, (ax.clone(), index));
        let _ = order;
    }
    if !errs.is_empty() {
        errs.dedup_by(|a, b| a.to_string() == b.to_string());
        return Err(SpecErrors(errs));
    }
    let _ = hasher.save();
    let mut plan = Plan { pipeline: spec.name.clone(), description: spec.description.clone(), nodes };
    let refs = store.refs();
    for i in 0..plan.nodes.len() {
        // A stat first: the manifest is read only for nodes that are there.
        if store.contains(&plan.nodes[i].key) {
            if !store.complete(&plan.nodes[i].key) {
                // A sharded node whose index is cached but a shard is gone (quarantined,
                // deleted): the run recomputes the missing shards only.
                plan.nodes[i].status = Status::Run(Reason::ShardMissing);
            }
            continue;
        }
        let prev = refs.get(&plan.node_id(i));
        plan.nodes[i].status = Status::Run(reason(&plan.nodes[i], prev.as_ref(), &plan));
    }
    Ok(plan)
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
        Value::Object(m) if m.contains_key("blake3") => format!(
            "content {}",
            &m["blake3"].as_str().unwrap_or_default()[..12.min(m["blake3"].as_str().unwrap_or_default().len())]
        ),
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

fn resolve_path(s: &str, base: &Path) -> PathBuf {
    let p = if let Some(rest) = s.strip_prefix("~/") { home().join(rest) } else { PathBuf::from(s) };
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

/// Substitutes `${...}` references in a parameter node for one grid cell.
fn substitute(node: &Node, assign: &HashMap<&str, &Value>, assets: &Path) -> Result<Value, SpecError> {
    match &node.kind {
        NodeKind::Scalar { text, .. } if text.contains("${") => {
            let refs = refs_in(text);
            if refs.len() == 1 && refs[0].0 == 0 && refs[0].1 == text.len() {
                return lookup(refs[0].2, assign, assets, &node.pos);
            }
            let mut out = String::new();
            let mut last = 0;
            for (s, e, inner) in refs {
                out.push_str(&text[last..s]);
                let v = lookup(inner, assign, assets, &node.pos)?;
                match &v {
                    Value::String(s) => out.push_str(s),
                    Value::Number(_) | Value::Bool(_) => out.push_str(&v.to_string()),
                    _ => {
                        return Err(SpecError::new(
                            node.pos.clone(),
                            format!("`${{{inner}}}` is {} and cannot be spliced into a string", short(&v)),
                        )
                        .hint("refer to a field, e.g. `${model.path}`"))
                    }
                }
                last = e;
            }
            out.push_str(&text[last..]);
            Ok(Value::String(out))
        }
        NodeKind::Scalar { .. } => Ok(node.to_json()),
        NodeKind::Seq(items) => {
            items.iter().map(|i| substitute(i, assign, assets)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }
        NodeKind::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                out.insert(k.as_str().unwrap_or_default().to_string(), substitute(v, assign, assets)?);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Whether a parameter's value takes anything from `${env:…}`, directly or through a grid
/// value that does.
fn uses_env(node: &Node, assign: &HashMap<&str, &Value>) -> bool {
    match &node.kind {
        NodeKind::Scalar { text, .. } => refs_in(text).iter().any(|(_, _, inner)| {
            inner.starts_with("env:")
                || assign
                    .get(inner.split('.').next().unwrap_or_default())
                    .is_some_and(|v| v.to_string().contains("${env:"))
        }),
        NodeKind::Seq(items) => items.iter().any(|i| uses_env(i, assign)),
        NodeKind::Map(m) => m.iter().any(|(_, v)| uses_env(v, assign)),
    }
}

fn lookup(inner: &str, assign: &HashMap<&str, &Value>, assets: &Path, pos: &Pos) -> Result<Value, SpecError> {
    if let Some(rest) = inner.strip_prefix("env:") {
        let (name, default) = match rest.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (rest, None),
        };
        return match (std::env::var(name), default) {
            (Ok(v), _) => Ok(Value::String(v)),
            (Err(_), Some(d)) => Ok(Value::String(d.to_string())),
            (Err(_), None) => Err(SpecError::new(pos.clone(), format!("environment variable `{name}` is not set"))
                .hint(format!("set it, or give a default: `${{env:{name}:-VALUE}}`"))),
        };
    }
    let mut parts = inner.split('.');
    let head = parts.next().unwrap_or_default();
    let mut v: Value = if head == "assets" {
        Value::String(assets.to_string_lossy().into_owned())
    } else {
        // Axis values may themselves use `${assets}` and `${env:...}` (not other axes).
        let raw =
            (*assign.get(head).ok_or_else(|| SpecError::new(pos.clone(), format!("`{head}` is not bound here")))?)
                .clone();
        expand_builtins(&raw, assets, pos)?
    };
    for field in parts {
        v = match v.get(field) {
            Some(x) => x.clone(),
            None => {
                return Err(SpecError::new(
                    pos.clone(),
                    format!("`${{{inner}}}`: the value `{}` of `{head}` has no field `{field}`", value_label(&v)),
                )
                .hint("give every value of the axis that field"))
            }
        };
    }
    Ok(v)
}

/// Expands `${assets}` and `${env:...}` inside every string of an axis value.
fn expand_builtins(v: &Value, assets: &Path, pos: &Pos) -> Result<Value, SpecError> {
    Ok(match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::new();
            let mut last = 0;
            for (a, b, inner) in refs_in(s) {
                out.push_str(&s[last..a]);
                if inner != "assets" && !inner.starts_with("env:") {
                    return Err(SpecError::new(pos.clone(), format!("grid value {s:?} refers to `${{{inner}}}`; grid values may use only `${{assets}}` and `${{env:NAME}}`")));
                }
                match lookup(inner, &HashMap::new(), assets, pos)? {
                    Value::String(x) => out.push_str(&x),
                    other => out.push_str(&other.to_string()),
                }
                last = b;
            }
            out.push_str(&s[last..]);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| expand_builtins(x, assets, pos)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), expand_builtins(x, assets, pos)?)))
                .collect::<Result<_, SpecError>>()?,
        ),
        other => other.clone(),
    })
}
