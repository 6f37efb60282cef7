//! Pipeline files: parsing and validation into a [`PipelineSpec`].
//!
//! ```yaml
//! pipeline: demo                 # optional; defaults to the file's stem
//! grid:                          # axes, expanded as a full product
//!   model: [{name: gemma3, path: ...}, {name: smollm2, path: ...}]
//!   pooling: [weighted, last]
//!   exclude: [{model: smollm2, pooling: last}]      # drop matching cells
//!   include: [{model: ..., pooling: mean}]          # add cells
//! stages:
//!   corpus: {kind: load_corpus, params: {path: "${assets}/corpora/udhr"}}
//!   embed:  {kind: embed, inputs: {corpus: corpus}, params: {model: "${model.path}"}}
//! ```
//!
//! `${axis}` (or `${axis.field}`) in a parameter makes the stage vary over that axis; a stage
//! also varies over every axis of the stages it takes plain inputs from. `${env:NAME}`,
//! `${env:NAME:-default}` and `${assets}` (the asset cache) are expanded too.
use crate::error::{suggest, Pos, SpecError, SpecErrors};
use crate::stage::Registry;
use crate::yaml::{self, Node, NodeKind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

mod imports;
mod overrides;
use imports::with_imports;
pub use overrides::Override;

/// One axis of the experiment grid.
#[derive(Debug, Clone)]
pub struct Axis {
    pub name: String,
    pub pos: Pos,
    pub values: Vec<Value>,
}

/// A partial assignment used by `include`/`exclude`.
pub type Rule = (Pos, BTreeMap<String, Value>);

/// A declared stage.
#[derive(Debug, Clone)]
pub struct StageDecl {
    pub name: String,
    pub pos: Pos,
    pub kind: String,
    /// Parameter name → its YAML node (substituted per grid cell at plan time).
    pub params: Vec<(String, Node)>,
    /// (slot, stage name, position of the stage name); see `input_slot_pos` for the slot's.
    pub inputs: Vec<(String, String, Pos)>,
    /// Position of each input's slot name, parallel to `inputs`.
    pub input_slot_pos: Vec<Pos>,
    /// Axes this stage refers to directly.
    pub direct_axes: BTreeSet<String>,
    /// Executor options (for example `slurm:`), kept as JSON.
    pub resources: Value,
    /// The `resources:` node when it refers to grid values (`gpus: ${model.gpus}`):
    /// substituted per grid cell at plan time, and its types checked then.
    pub resources_node: Option<Node>,
    /// `when:`: the stage runs only in grid cells whose axis takes one of these values
    /// (value labels); stages fed by it exist only in those cells too.
    pub when: Vec<(String, Vec<String>)>,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub name: String,
    /// The file's `description:` (shown on reports).
    pub description: String,
    pub file: PathBuf,
    /// The file's `store:`, resolved against the file's folder: where its artifacts live
    /// unless `--store`/MEXA_STORE says otherwise.
    pub store: Option<PathBuf>,
    pub axes: Vec<Axis>,
    pub include: Vec<Rule>,
    pub exclude: Vec<Rule>,
    /// Stages in a topological order (inputs first).
    pub stages: Vec<StageDecl>,
}

impl PipelineSpec {
    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Reads, parses and validates a pipeline file against the registry.
pub fn load(path: &Path, registry: &Registry) -> Result<PipelineSpec, SpecErrors> {
    load_with(path, registry, &[])
}

/// [`load`] with command-line overrides applied to the file (after its imports), so they
/// change keys exactly as the same edit of the file would.
pub fn load_with(path: &Path, registry: &Registry, overrides: &[Override]) -> Result<PipelineSpec, SpecErrors> {
    let display = path.display().to_string();
    let text = mexa_core::file::read_text(path, mexa_core::FileKind::Pipeline).map_err(|e| {
        SpecErrors(vec![SpecError::new(
            Pos { file: display.as_str().into(), line: 0, col: 0 },
            format!("cannot read the pipeline file: {e}"),
        )])
    })?;
    parse_with(&display, &text, path, registry, overrides)
}

/// Parses and validates pipeline text. `path` names the file (for relative paths and the
/// default pipeline name).
pub fn parse(display: &str, text: &str, path: &Path, registry: &Registry) -> Result<PipelineSpec, SpecErrors> {
    parse_with(display, text, path, registry, &[])
}

fn parse_with(
    display: &str,
    text: &str,
    path: &Path,
    registry: &Registry,
    overrides: &[Override],
) -> Result<PipelineSpec, SpecErrors> {
    let root = yaml::parse(display, text).map_err(|e| SpecErrors(vec![e]))?;
    let mut root = with_imports(root, path, &mut vec![path.to_path_buf()])?;
    for o in overrides {
        o.apply(&mut root).map_err(|e| SpecErrors(vec![e]))?;
    }
    let mut errs = Vec::new();
    let spec = build(&root, path, registry, &mut errs);
    if errs.is_empty() {
        Ok(spec.expect("no errors means a spec"))
    } else {
        errs.sort_by_key(|e| (e.pos.line, e.pos.col));
        Err(SpecErrors(errs))
    }
}

const TOP_KEYS: &[&str] = &["pipeline", "description", "store", "imports", "grid", "stages"];

const STAGE_KEYS: &[&str] = &["kind", "params", "inputs", "resources", "doc", "when"];
const RESERVED_VARS: &[&str] = &["assets", "env"];

/// A pipeline name: it becomes a folder name (report/<name>), so no separators or dot-names.
pub fn is_pipeline_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with('.')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Keys of `grid:` that are rules, not axes.
const RULE_KEYS: &[&str] = &["include", "exclude"];

/// The most cells a grid may expand to.
pub const MAX_GRID_CELLS: usize = 100_000;

fn build(root: &Node, path: &Path, registry: &Registry, errs: &mut Vec<SpecError>) -> Option<PipelineSpec> {
    let Some(top) = root.as_map() else {
        errs.push(
            SpecError::new(root.pos.clone(), format!("a pipeline file is a mapping, found {}", root.describe()))
                .hint("start with `stages:`"),
        );
        return None;
    };
    check_top_keys(top, errs);
    let name = pipeline_name(root, path, errs);
    let (axes, include, exclude) = parse_grid(root, errs);
    let stages = parse_stages(root, registry, &axes, errs);
    check_inputs(&stages, registry, errs);
    if !errs.is_empty() {
        return None;
    }

    // Topological order; report a cycle with its members.
    let stages = match topo_sort(stages) {
        Ok(s) => s,
        Err((cycle, pos)) => {
            errs.push(
                SpecError::new(pos, format!("the stages form a cycle: {}", cycle.join(" → ")))
                    .hint("a stage cannot depend, directly or not, on itself"),
            );
            return None;
        }
    };

    // Unused axes.
    let used: BTreeSet<&str> = stages.iter().flat_map(|s| s.direct_axes.iter().map(String::as_str)).collect();
    for a in &axes {
        if !used.contains(a.name.as_str()) {
            errs.push(
                SpecError::new(a.pos.clone(), format!("grid axis `{}` is not used by any stage", a.name))
                    .hint(format!("refer to it as `${{{}}}` in a stage's params, or remove it", a.name)),
            );
        }
    }
    if !errs.is_empty() {
        return None;
    }
    let description = root.get("description").and_then(Node::as_str).unwrap_or_default().to_string();
    let store = match root.get("store") {
        None => None,
        Some(n) => match n.as_str().filter(|s| !s.is_empty()) {
            Some(s) => Some(path.parent().unwrap_or(Path::new("")).join(s)),
            None => {
                errs.push(SpecError::new(n.pos.clone(), format!("`store` is a folder path, found {}", n.describe())));
                return None;
            }
        },
    };
    Some(PipelineSpec { name, description, file: path.to_path_buf(), store, axes, include, exclude, stages })
}

fn check_top_keys(top: &[(Node, Node)], errs: &mut Vec<SpecError>) {
    for (k, _) in top {
        let key = k.as_str().unwrap_or_default();
        if !TOP_KEYS.contains(&key) {
            let mut e = SpecError::new(k.pos.clone(), format!("unknown top-level key `{key}`"));
            e = e.hint(
                suggest(key, TOP_KEYS.iter().copied())
                    .unwrap_or_else(|| format!("expected one of: {}", TOP_KEYS.join(", "))),
            );
            errs.push(e);
        }
    }
}

/// `pipeline:`, else the file's stem.
fn pipeline_name(root: &Node, path: &Path, errs: &mut Vec<SpecError>) -> String {
    match root.get("pipeline") {
        Some(n) => match n.as_str() {
            Some(s) if is_pipeline_name(s) => s.to_string(),
            Some(s) if !s.is_empty() => {
                errs.push(SpecError::new(n.pos.clone(), format!("`pipeline: {s}` is not a plain name"))
                    .hint("a pipeline name is letters, digits, `-`, `_` and `.` (not first): it names folders such as report/<name>"));
                String::new()
            }
            _ => {
                errs.push(SpecError::new(n.pos.clone(), "`pipeline` must be a non-empty name"));
                String::new()
            }
        },
        None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into()),
    }
}

/// `grid:` → (axes, include rules, exclude rules), capped at [`MAX_GRID_CELLS`] cells.
fn parse_grid(root: &Node, errs: &mut Vec<SpecError>) -> (Vec<Axis>, Vec<Rule>, Vec<Rule>) {
    let (mut axes, mut include, mut exclude) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(g) = root.get("grid") {
        match g.as_map() {
            None => errs.push(SpecError::new(
                g.pos.clone(),
                format!("`grid` must map axis names to lists of values, found {}", g.describe()),
            )),
            Some(entries) => {
                for (k, v) in entries {
                    let axis = k.as_str().unwrap_or_default();
                    if axis == "include" || axis == "exclude" {
                        let rules = parse_rules(v, errs);
                        if axis == "include" {
                            include = rules
                        } else {
                            exclude = rules
                        }
                        continue;
                    }
                    if RESERVED_VARS.contains(&axis) || !is_ident(axis) {
                        errs.push(
                            SpecError::new(k.pos.clone(), format!("`{axis}` cannot be an axis name")).hint(
                                "axis names are identifiers (letters, digits, _), and `assets`, `env` are reserved",
                            ),
                        );
                        continue;
                    }
                    match v.as_seq() {
                        Some(items) if !items.is_empty() => {
                            let values: Vec<Value> = items.iter().map(Node::to_json).collect();
                            let mut seen = HashMap::new();
                            for (item, val) in items.iter().zip(&values) {
                                let label = value_label(val);
                                if let Some(prev) = seen.insert(label.clone(), item.pos.line) {
                                    errs.push(
                                        SpecError::new(
                                            item.pos.clone(),
                                            format!("axis `{axis}` has the value `{label}` twice"),
                                        )
                                        .hint(format!("first at line {prev}; give mapping values distinct `name`s")),
                                    );
                                }
                            }
                            axes.push(Axis { name: axis.to_string(), pos: k.pos.clone(), values });
                        }
                        _ => errs.push(SpecError::new(
                            v.pos.clone(),
                            format!("axis `{axis}` needs a non-empty list of values, found {}", v.describe()),
                        )),
                    }
                }
            }
        }
    }
    // A grid is expanded in memory: refuse absurd products before anything is built.
    if let Some(g) = root.get("grid") {
        let cells = axes.iter().try_fold(1usize, |acc, a| acc.checked_mul(a.values.len()));
        if cells.is_none_or(|c| c > MAX_GRID_CELLS) {
            let sizes: Vec<String> = axes.iter().map(|a| format!("{} ({})", a.name, a.values.len())).collect();
            let n = cells.map(|c| c.to_string()).unwrap_or_else(|| "more than 2^64".into());
            errs.push(
                SpecError::new(
                    g.pos.clone(),
                    format!("the grid has {n} cells: {}; at most {MAX_GRID_CELLS} are allowed", sizes.join(" × ")),
                )
                .hint("split the sweep into several pipelines, or narrow it with `exclude`"),
            );
            axes.clear();
        }
    }
    let axis_names: Vec<&str> = axes.iter().map(|a| a.name.as_str()).collect();
    for (pos, rule) in include.iter().chain(&exclude) {
        for k in rule.keys() {
            if !axis_names.contains(&k.as_str()) {
                let h = suggest(k, axis_names.iter().copied())
                    .unwrap_or_else(|| format!("axes: {}", axis_names.join(", ")));
                errs.push(SpecError::new(pos.clone(), format!("rule names `{k}`, which is not a grid axis")).hint(h));
            }
        }
    }
    (axes, include, exclude)
}

fn parse_stages(root: &Node, registry: &Registry, axes: &[Axis], errs: &mut Vec<SpecError>) -> Vec<StageDecl> {
    let mut stages = Vec::new();
    match root.get("stages") {
        None => errs.push(SpecError::new(root.pos.clone(), "the pipeline has no `stages:`")),
        Some(s) => match s.as_map() {
            None => errs.push(SpecError::new(
                s.pos.clone(),
                format!("`stages` must map stage names to stage definitions, found {}", s.describe()),
            )),
            Some(entries) => {
                for (k, v) in entries {
                    if let Some(st) = parse_stage(k, v, registry, axes, errs) {
                        stages.push(st);
                    }
                }
            }
        },
    }
    stages
}

/// Inputs: targets exist, slots known, required slots connected.
fn check_inputs(stages: &[StageDecl], registry: &Registry, errs: &mut Vec<SpecError>) {
    let names: Vec<String> = stages.iter().map(|s: &StageDecl| s.name.clone()).collect();
    for st in stages {
        let Some(imp) = registry.get(&st.kind) else { continue };
        let slots = imp.inputs();
        for ((slot, target, pos), slot_pos) in st.inputs.iter().zip(&st.input_slot_pos) {
            if !slots.iter().any(|s| s.name == slot) {
                let h = suggest(slot, slots.iter().map(|s| s.name)).unwrap_or_else(|| {
                    if slots.is_empty() {
                        format!("`{}` takes no inputs", st.kind)
                    } else {
                        format!("`{}` takes: {}", st.kind, slots.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))
                    }
                });
                errs.push(
                    SpecError::new(
                        slot_pos.clone(),
                        format!("stage `{}` ({}) has no input slot `{slot}`", st.name, st.kind),
                    )
                    .hint(h),
                );
            }
            if !names.contains(target) {
                let h = suggest(target, names.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("stages: {}", names.join(", ")));
                errs.push(
                    SpecError::new(
                        pos.clone(),
                        format!("input `{slot}` of `{}` names stage `{target}`, which does not exist", st.name),
                    )
                    .hint(h),
                );
            }
        }
        for s in &slots {
            if !s.optional && !st.inputs.iter().any(|(slot, _, _)| slot == s.name) {
                errs.push(
                    SpecError::new(
                        st.pos.clone(),
                        format!("stage `{}` ({}) needs input `{}` ({})", st.name, st.kind, s.name, s.doc),
                    )
                    .hint(format!("add `inputs: {{{}: <stage>}}`", s.name)),
                );
            }
        }
    }
}

fn parse_rules(v: &Node, errs: &mut Vec<SpecError>) -> Vec<Rule> {
    let Some(items) = v.as_seq() else {
        errs.push(SpecError::new(
            v.pos.clone(),
            format!("expected a list of {{axis: value}} mappings, found {}", v.describe()),
        ));
        return vec![];
    };
    let mut out = Vec::new();
    for it in items {
        match it.as_map() {
            Some(m) if !m.is_empty() => out.push((
                it.pos.clone(),
                m.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json())).collect(),
            )),
            _ => errs.push(SpecError::new(
                it.pos.clone(),
                format!("a rule is a mapping of axis to value, found {}", it.describe()),
            )),
        }
    }
    out
}

/// A stage's `resources: {slurm: {partition: .., ...}}`: known executors, known keys, the
/// right types, each a located error with "did you mean" (a misspelt option would otherwise
/// be ignored and the job submitted without it).
fn check_resources(stage: &str, v: &Node, errs: &mut Vec<SpecError>) -> Value {
    let Some(entries) = v.as_map() else {
        errs.push(
            SpecError::new(
                v.pos.clone(),
                format!("stage `{stage}`: `resources` maps executors to their options, found {}", v.describe()),
            )
            .hint("for example `resources: {slurm: {gpus: 1, mem: 64G}}`"),
        );
        return Value::Null;
    };
    for (ek, ev) in entries {
        let exec = ek.as_str().unwrap_or_default();
        let Some(executor) = crate::executor_options::executor(exec) else {
            let names = crate::executor_options::EXECUTORS.iter().map(|e| e.name);
            let h = suggest(exec, names.clone())
                .unwrap_or_else(|| format!("executors with options: {}", names.collect::<Vec<_>>().join(", ")));
            errs.push(
                SpecError::new(
                    ek.pos.clone(),
                    format!("stage `{stage}`: `resources` names `{exec}`, which is not an executor with options"),
                )
                .hint(h),
            );
            continue;
        };
        let Some(opts) = ev.as_map() else {
            errs.push(SpecError::new(
                ev.pos.clone(),
                format!("stage `{stage}`: `resources.{exec}` must be a mapping of options, found {}", ev.describe()),
            ));
            continue;
        };
        for (ok, ov) in opts {
            let key = ok.as_str().unwrap_or_default();
            let Some(want) = executor.option(key) else {
                let h = suggest(key, executor.names())
                    .unwrap_or_else(|| format!("`{exec}` takes: {}", executor.names().collect::<Vec<_>>().join(", ")));
                errs.push(
                    SpecError::new(ok.pos.clone(), format!("stage `{stage}`: unknown `{exec}` option `{key}`")).hint(h),
                );
                continue;
            };
            let j = ov.to_json();
            // A grid reference is checked once substituted, per grid cell.
            let later = j.as_str().is_some_and(|s| s.contains("${"));
            if !later && !want.fits(&j) {
                errs.push(SpecError::new(
                    ov.pos.clone(),
                    format!(
                        "stage `{stage}`: `{exec}` option `{key}` must be {}, found {}",
                        want.describe(),
                        ov.describe()
                    ),
                ));
            }
        }
    }
    v.to_json()
}

/// A stage's `when: {axis: value | [values]}`: the axes must exist and the values be theirs.
fn parse_when(stage: &str, v: &Node, grid: &[Axis], errs: &mut Vec<SpecError>) -> Vec<(String, Vec<String>)> {
    let Some(entries) = v.as_map() else {
        errs.push(
            SpecError::new(
                v.pos.clone(),
                format!(
                    "stage `{stage}`: `when` maps grid axes to the values the stage runs for, found {}",
                    v.describe()
                ),
            )
            .hint("for example `when: {model: [gemma3-270m]}`"),
        );
        return vec![];
    };
    let mut out = Vec::new();
    for (k, val) in entries {
        let name = k.as_str().unwrap_or_default();
        let Some(axis) = grid.iter().find(|a| a.name == name) else {
            let h = suggest(name, grid.iter().map(|a| a.name.as_str())).unwrap_or_else(|| {
                format!("grid axes: {}", grid.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "))
            });
            errs.push(
                SpecError::new(
                    k.pos.clone(),
                    format!("stage `{stage}`: `when` names `{name}`, which is not a grid axis"),
                )
                .hint(h),
            );
            continue;
        };
        let items: Vec<&Node> = match val.as_seq() {
            Some(items) => items.iter().collect(),
            None => vec![val],
        };
        let known: Vec<String> = axis.values.iter().map(value_label).collect();
        let mut labels = Vec::new();
        for it in items {
            let l = value_label(&it.to_json());
            if !known.contains(&l) {
                let h = suggest(&l, known.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("`{name}` takes: {}", known.join(", ")));
                errs.push(
                    SpecError::new(
                        it.pos.clone(),
                        format!("stage `{stage}`: `when`: `{l}` is not a value of axis `{name}`"),
                    )
                    .hint(h),
                );
            }
            labels.push(l);
        }
        out.push((name.to_string(), labels));
    }
    out
}

// Long: one check per key of a stage mapping (kind, params, inputs, when, resources), in the order a reader meets them, each with its own located error.
fn parse_stage(k: &Node, v: &Node, registry: &Registry, grid: &[Axis], errs: &mut Vec<SpecError>) -> Option<StageDecl> {
    let axis_names: Vec<&str> = grid.iter().map(|a| a.name.as_str()).collect();
    let axes = axis_names.as_slice();
    let name = k.as_str().unwrap_or_default().to_string();
    if !is_ident(&name) {
        errs.push(
            SpecError::new(k.pos.clone(), format!("`{name}` is not a valid stage name"))
                .hint("use letters, digits, `_` and `-`"),
        );
    }
    let Some(entries) = v.as_map() else {
        errs.push(SpecError::new(
            v.pos.clone(),
            format!("stage `{name}` must be a mapping with `kind:`, found {}", v.describe()),
        ));
        return None;
    };
    for (ek, _) in entries {
        let key = ek.as_str().unwrap_or_default();
        if !STAGE_KEYS.contains(&key) {
            let h = suggest(key, STAGE_KEYS.iter().copied())
                .unwrap_or_else(|| format!("expected one of: {}", STAGE_KEYS.join(", ")));
            errs.push(SpecError::new(ek.pos.clone(), format!("unknown key `{key}` in stage `{name}`")).hint(h));
        }
    }
    let Some(kind_node) = v.get("kind") else {
        errs.push(
            SpecError::new(k.pos.clone(), format!("stage `{name}` has no `kind:`"))
                .hint(format!("known kinds: {}", registry.kinds().collect::<Vec<_>>().join(", "))),
        );
        return None;
    };
    let kind = kind_node.as_str().unwrap_or_default().to_string();
    let Some(imp) = registry.get(&kind) else {
        let h = suggest(&kind, registry.kinds())
            .unwrap_or_else(|| format!("known kinds: {}", registry.kinds().collect::<Vec<_>>().join(", ")));
        errs.push(SpecError::new(kind_node.pos.clone(), format!("unknown stage kind `{kind}`")).hint(h));
        return None;
    };
    let specs = imp.params();
    let mut params = Vec::new();
    let mut direct_axes = BTreeSet::new();
    if let Some(p) = v.get("params") {
        match p.as_map() {
            None => {
                errs.push(SpecError::new(p.pos.clone(), format!("`params` must be a mapping, found {}", p.describe())))
            }
            Some(entries) => {
                for (pk, pv) in entries {
                    let pname = pk.as_str().unwrap_or_default();
                    let Some(ps) = specs.iter().find(|s| s.name == pname) else {
                        let h = suggest(pname, specs.iter().map(|s| s.name)).unwrap_or_else(|| {
                            format!("`{kind}` takes: {}", specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))
                        });
                        errs.push(
                            SpecError::new(
                                pk.pos.clone(),
                                format!("stage `{name}`: `{kind}` has no parameter `{pname}`"),
                            )
                            .hint(h),
                        );
                        continue;
                    };
                    let before = errs.len();
                    collect_refs(pv, axes, &mut direct_axes, errs);
                    // Values without references can be type-checked now.
                    if errs.len() == before && !has_refs(pv) && ps.ty.check(&pv.to_json()).is_none() {
                        errs.push(SpecError::new(
                            pv.pos.clone(),
                            format!("stage `{name}`: `{pname}` must be {}, found {}", ps.ty.describe(), pv.describe()),
                        ));
                    }
                    params.push((pname.to_string(), pv.clone()));
                }
            }
        }
    }
    for ps in &specs {
        if ps.default.is_none() && !params.iter().any(|(n, _)| n == ps.name) {
            errs.push(
                SpecError::new(
                    k.pos.clone(),
                    format!("stage `{name}` ({kind}) needs parameter `{}`: {}", ps.name, ps.doc),
                )
                .hint(format!("add `params: {{{}: ...}}` ({})", ps.name, ps.ty.describe())),
            );
        }
    }
    let mut inputs = Vec::new();
    let mut input_slot_pos = Vec::new();
    if let Some(i) = v.get("inputs") {
        match i.as_map() {
            None => errs.push(SpecError::new(
                i.pos.clone(),
                format!("`inputs` must map slots to stage names, found {}", i.describe()),
            )),
            Some(entries) => {
                for (ik, iv) in entries {
                    match iv.as_str() {
                        Some(t) => {
                            inputs.push((ik.as_str().unwrap_or_default().to_string(), t.to_string(), iv.pos.clone()));
                            input_slot_pos.push(ik.pos.clone());
                        }
                        None => errs.push(SpecError::new(iv.pos.clone(), "an input names one stage")),
                    }
                }
            }
        }
    }
    let resources = v.get("resources").map(|r| check_resources(&name, r, errs)).unwrap_or(Value::Null);
    let resources_node = v.get("resources").filter(|r| has_refs(r)).cloned();
    if let Some(r) = &resources_node {
        collect_refs(r, axes, &mut direct_axes, errs);
    }
    let when = v.get("when").map(|w| parse_when(&name, w, grid, errs)).unwrap_or_default();
    // A stage restricted to some values of an axis varies over that axis.
    direct_axes.extend(when.iter().map(|(a, _)| a.clone()));
    Some(StageDecl {
        name,
        pos: k.pos.clone(),
        kind,
        params,
        inputs,
        input_slot_pos,
        direct_axes,
        resources,
        resources_node,
        when,
    })
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// A display label for an axis value: a mapping's `name`, else the scalar, else compact JSON.
pub fn value_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("name") {
            Some(Value::String(s)) => s.clone(),
            _ => v.to_string(),
        },
        other => other.to_string(),
    }
}

/// `${...}` references inside a string: (start, end, inner text).
pub(crate) fn refs_in(s: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(start) = s[i..].find("${").map(|p| p + i) {
        match s[start..].find('}') {
            Some(len) => {
                out.push((start, start + len + 1, &s[start + 2..start + len]));
                i = start + len + 1;
            }
            None => break,
        }
    }
    out
}

fn has_refs(n: &Node) -> bool {
    match &n.kind {
        NodeKind::Scalar { text, .. } => text.contains("${"),
        NodeKind::Seq(items) => items.iter().any(has_refs),
        NodeKind::Map(m) => m.iter().any(|(_, v)| has_refs(v)),
    }
}

fn collect_refs(n: &Node, axes: &[&str], out: &mut BTreeSet<String>, errs: &mut Vec<SpecError>) {
    match &n.kind {
        NodeKind::Scalar { text, .. } => {
            for (_, _, inner) in refs_in(text) {
                let head = inner.split(['.', ':']).next().unwrap_or_default();
                if inner.starts_with("env:") || head == "assets" {
                    continue;
                }
                if axes.contains(&head) {
                    out.insert(head.to_string());
                } else {
                    let h = suggest(head, axes.iter().copied().chain(["assets"])).unwrap_or_else(|| {
                        format!(
                            "grid axes: {}; also `${{assets}}`, `${{env:NAME}}`",
                            if axes.is_empty() { "(none)".into() } else { axes.join(", ") }
                        )
                    });
                    errs.push(
                        SpecError::new(
                            n.pos.clone(),
                            format!("`${{{inner}}}` refers to `{head}`, which is not a grid axis"),
                        )
                        .hint(h),
                    );
                }
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|i| collect_refs(i, axes, out, errs)),
        NodeKind::Map(m) => m.iter().for_each(|(_, v)| collect_refs(v, axes, out, errs)),
    }
}

fn topo_sort(stages: Vec<StageDecl>) -> Result<Vec<StageDecl>, (Vec<String>, Pos)> {
    let idx: HashMap<String, usize> = stages.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
    let mut state = vec![0u8; stages.len()]; // 0 new, 1 on stack, 2 done
    let mut order = Vec::new();
    fn visit(
        i: usize,
        stages: &[StageDecl],
        idx: &HashMap<String, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> Result<(), (Vec<String>, Pos)> {
        if state[i] == 2 {
            return Ok(());
        }
        if state[i] == 1 {
            let from = path.iter().position(|&p| p == i).unwrap();
            let mut cycle: Vec<String> = path[from..].iter().map(|&p| stages[p].name.clone()).collect();
            cycle.push(stages[i].name.clone());
            return Err((cycle, stages[i].pos.clone()));
        }
        state[i] = 1;
        path.push(i);
        for (_, t, _) in &stages[i].inputs {
            visit(idx[t], stages, idx, state, order, path)?;
        }
        path.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..stages.len() {
        visit(i, &stages, &idx, &mut state, &mut order, &mut vec![])?;
    }
    let mut slots: Vec<Option<StageDecl>> = stages.into_iter().map(Some).collect();
    Ok(order.into_iter().map(|i| slots[i].take().unwrap()).collect())
}
