//! `ls`, `show`, `lineage`, `verify`, `store import|export`.
use anyhow::{bail, Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use clap::{Args, Subcommand, ValueEnum};
use mexa_store::{
    format_rows_fit, terminal_width, text_rows, to_csv, to_json_rows, write_parquet_to, Key, ObjectInfo, Store,
    TableSummary,
};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct LsArgs {
    /// Only artifacts of this stage kind.
    #[arg(long)]
    stage: Option<String>,
    /// Include shards of sharded stages.
    #[arg(long)]
    shards: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

#[derive(Args)]
pub struct ShowArgs {
    /// A key prefix (4+ hex digits), a node label (`align[model=gemma3]`) or a stage name.
    what: String,
    /// When the label names several artifacts (variants computed with other parameters),
    /// take the newest instead of listing them.
    #[arg(long)]
    latest: bool,
    #[command(flatten)]
    through: Through,
    /// Rows shown with the table format.
    #[arg(long, default_value_t = 10)]
    rows: usize,
    /// table: manifest, schema, first rows. csv/json/parquet: the whole table (a sharded
    /// artifact's shards joined) on stdout; parquet needs stdout redirected to a file.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    sentences: crate::cmd_sentences::SentenceArgs,
}

#[derive(Args)]
pub struct LineageArgs {
    /// A key prefix or a node label.
    what: String,
    /// When the label names several artifacts, take the newest instead of listing them.
    #[arg(long)]
    latest: bool,
    #[command(flatten)]
    through: Through,
}

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Copy every artifact of another store into this one, verifying each.
    Import { from: PathBuf },
    /// Copy every artifact of this store into another one, verifying each.
    Export { to: PathBuf },
}

/// Which store a command uses: `--store`/MEXA_STORE when given, else a pipeline's
/// `store:` (pipeline commands), else ./artifacts. Commands that only read never create one.
#[derive(Clone, Debug)]
pub struct StoreChoice(pub Option<PathBuf>);

impl StoreChoice {
    pub fn path(&self, pipeline: Option<&Path>) -> PathBuf {
        self.0.clone().or_else(|| pipeline.map(Path::to_path_buf)).unwrap_or_else(|| PathBuf::from("artifacts"))
    }
    /// For commands that write: the store, created if missing.
    pub fn create(&self, pipeline: Option<&Path>) -> Result<Store> {
        let path = self.path(pipeline);
        Store::open(&path).with_context(|| format!("opening the store at {}", path.display()))
    }
    /// For commands that only read: an error naming the folder when there is no store.
    pub fn existing(&self, pipeline: Option<&Path>) -> Result<Store> {
        let path = self.path(pipeline);
        Store::open_existing(&path).with_context(|| format!("opening the store at {}", path.display()))
    }
}

pub fn ls(store: &StoreChoice, a: LsArgs) -> Result<i32> {
    let store = store.existing(None)?;
    let mut rows = vec![vec![
        "key".to_string(),
        "stage".into(),
        "label".into(),
        "rows".into(),
        "size".into(),
        "wall".into(),
        "variant".into(),
    ]];
    let mut json = Vec::new();
    let list = store.list()?;
    // Artifacts that share a label are variants of one node: say what tells them apart.
    let mut by_label: std::collections::BTreeMap<&str, Vec<&ObjectInfo>> = Default::default();
    for info in list.iter().filter(|i| !i.manifest.is_shard()) {
        by_label.entry(&info.manifest.label).or_default().push(info);
    }
    for info in &list {
        let m = &info.manifest;
        if (!a.shards && m.is_shard()) || a.stage.as_deref().is_some_and(|s| s != m.stage_kind()) {
            continue;
        }
        if a.json {
            json.push(serde_json::json!({"key": info.key, "stage": m.spec.stage, "label": m.label, "rows": m.rows, "bytes": m.bytes, "wall_time_s": m.wall_time_s, "created_unix": m.created_unix}));
            continue;
        }
        rows.push(vec![
            info.key.short().to_string(),
            m.spec.stage.clone(),
            m.label.clone(),
            m.rows.to_string(),
            human_bytes(m.bytes),
            format!("{:.1}s", m.wall_time_s),
            by_label.get(m.label.as_str()).filter(|v| v.len() > 1).map(|v| variant_of(v, info)).unwrap_or_default(),
        ]);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if rows.len() == 1 {
        println!("the store {} is empty", store.root().display());
    } else {
        print!("{}", format_rows_fit(&rows, terminal_width()));
    }
    Ok(0)
}

fn human_bytes(b: u64) -> String {
    match b {
        0..1_000 => format!("{b} B"),
        1_000..1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        _ => format!("{:.2} GB", b as f64 / 1e9),
    }
}

/// A label resolved through a pipeline file: `--pipeline FILE` with the `-S`/`--where` the
/// results were computed with names exactly one node, whatever else the store holds.
#[derive(Args, Default, Clone)]
#[command(next_help_heading = "Resolving a label through a pipeline")]
pub struct Through {
    /// Resolve the label (a node label or a stage name) in this pipeline's plan: the node the
    /// file, with `-S` and `--where`, names — never another variant of the same label.
    #[arg(long, value_name = "FILE")]
    pipeline: Option<PathBuf>,
    #[command(flatten)]
    view: crate::cmd_pipeline::View,
}

impl Through {
    /// The key `what` names: through the pipeline when one is given, else in the store.
    pub fn resolve(&self, store: &Store, what: &str, latest: bool) -> Result<Key> {
        let Some(file) = &self.pipeline else { return resolve(store, what, latest) };
        let registry = mexa_stages::registry();
        let choice = StoreChoice(Some(store.root().to_path_buf()));
        let (plan, _) = crate::cmd_pipeline::load_view(file, &registry, &choice, &self.view)?;
        let exact: Vec<&mexa_pipeline::PlanNode> = plan.nodes.iter().filter(|n| n.label == what).collect();
        let found = if exact.is_empty() { plan.nodes.iter().filter(|n| n.stage == what).collect() } else { exact };
        match found.as_slice() {
            [] => {
                let labels: Vec<&str> = plan.nodes.iter().map(|n| n.label.as_str()).collect();
                let hint = mexa_pipeline::error::suggest(what, labels.iter().copied()).unwrap_or_default();
                bail!("no node or stage `{what}` in {} {hint}", plan.pipeline)
            }
            [n] if n.status == mexa_pipeline::Status::Cached => Ok(n.key.clone()),
            [n] => bail!(
                "{} is not computed (with these -S/--where): `mexa run {}` with the same -S/--where computes it",
                n.label,
                file.display()
            ),
            many => bail!(
                "`{what}` names {} nodes of {}; narrow it with --where (or give the full label):\n{}",
                many.len(),
                plan.pipeline,
                many.iter().map(|n| format!("  {}  {}", n.key.short(), n.label)).collect::<Vec<_>>().join("\n")
            ),
        }
    }
}

/// Finds the artifact a user means: a key prefix, an exact node label, or a stage name with a
/// single artifact. A label several artifacts carry (variants of one node: the same label
/// after `-S align.centering=true`, say) is never resolved silently: the candidates are listed
/// with the parameters that tell them apart, unless `latest` asks for the newest.
pub fn resolve(store: &Store, what: &str, latest: bool) -> Result<Key> {
    if what.len() >= 4 && what.chars().all(|c| c.is_ascii_hexdigit()) {
        return store.resolve_prefix(what);
    }
    let list = store.list()?;
    let exact: Vec<&ObjectInfo> =
        list.iter().filter(|i| i.manifest.label == what || i.manifest.label.ends_with(&format!("/{what}"))).collect();
    let by_stage: Vec<&ObjectInfo> =
        list.iter().filter(|i| !i.manifest.is_shard() && (i.manifest.label.split('[').next() == Some(what))).collect();
    let found = if exact.is_empty() { by_stage } else { exact };
    match found.len() {
        0 => bail!(
            "nothing in {} matches `{what}` (a key prefix, node label or stage name); `mexa ls` lists artifacts",
            store.root().display()
        ),
        1 => Ok(found[0].key.clone()),
        // --latest chooses between variants of one label, never between nodes (two models'
        // `correlation[model=…]` are not versions of each other).
        _ if found.iter().any(|i| i.manifest.label != found[0].manifest.label) => {
            let mut labels: Vec<&str> = found.iter().map(|i| i.manifest.label.as_str()).collect();
            labels.sort();
            labels.dedup();
            bail!(
                "`{what}` names {} different nodes; give the full label (or --pipeline FILE with --where):\n  {}",
                labels.len(),
                labels.join("\n  ")
            )
        }
        // `list` is sorted oldest first.
        _ if latest => Ok(found[found.len() - 1].key.clone()),
        n => bail!(
            "`{what}` matches {n} artifacts; name one by its key (or pass --latest for the newest):\n{}",
            describe_variants(&found)
        ),
    }
}

/// One line per artifact: short key, when, label and what differs from the others (the
/// parameters, else the inputs).
pub fn describe_variants(found: &[&ObjectInfo]) -> String {
    let lines: Vec<String> = found
        .iter()
        .map(|i| {
            format!(
                "  {}  {}  {}  {}",
                i.key.short(),
                age(i.manifest.created_unix),
                i.manifest.label,
                variant_of(found, i)
            )
        })
        .collect();
    lines.join("\n")
}

/// What tells `i` apart from the other artifacts of `found` (variants of one node): the
/// parameters whose values differ, else the inputs that differ, else the stage version.
fn variant_of(found: &[&ObjectInfo], i: &ObjectInfo) -> String {
    let specs: Vec<&mexa_store::KeySpec> = found.iter().map(|i| &i.manifest.spec).collect();
    {
        let m = &i.manifest;
        let mut diff = Vec::new();
        if let Some(p) = m.spec.params.as_object() {
            for (k, v) in p {
                if specs.iter().any(|s| s.params.get(k) != Some(v)) {
                    let mut t = v.to_string();
                    if t.chars().count() > 40 {
                        t = t.chars().take(39).collect::<String>() + "…";
                    }
                    diff.push(format!("{k}={t}"));
                }
            }
        }
        for k in specs.iter().flat_map(|s| s.params.as_object().into_iter().flatten().map(|(k, _)| k)) {
            if m.spec.params.get(k).is_none() && !diff.iter().any(|d| d.starts_with(&format!("{k}="))) {
                diff.push(format!("{k} unset"));
            }
        }
        if diff.is_empty() {
            for (slot, keys) in &m.spec.inputs {
                if specs.iter().any(|s| s.inputs.get(slot) != Some(keys)) {
                    diff.push(format!("input {slot}={}", keys.iter().map(|k| k.short()).collect::<Vec<_>>().join(",")));
                }
            }
        }
        if m.spec.version != specs[0].version || specs.iter().any(|s| s.version != m.spec.version) {
            diff.push(format!("v{}", m.spec.version));
        }
        diff.dedup();
        diff.join(" ")
    }
}

/// How long ago a unix time was, for listings.
fn age(t: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(t);
    match now.saturating_sub(t) {
        s @ 0..120 => format!("{s}s ago"),
        s @ 120..7200 => format!("{}m ago", s / 60),
        s @ 7200..172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// Prints a whole table in `format`: aligned text (floats to 4 decimals, as wide as the
/// terminal), RFC 4180 CSV, JSON rows, or Parquet bytes (refused on a terminal).
pub fn print_table(schema: &SchemaRef, batches: &[RecordBatch], format: Format) -> Result<()> {
    use std::io::{IsTerminal, Write};
    match format {
        Format::Table => {
            let mut rows = text_rows(schema, batches)?;
            for (j, f) in schema.fields().iter().enumerate() {
                if matches!(f.data_type(), DataType::Float64 | DataType::Float32) {
                    for r in rows.iter_mut().skip(1) {
                        if let Ok(v) = r[j].parse::<f64>() {
                            r[j] = format!("{v:.4}");
                        }
                    }
                }
            }
            print!("{}", format_rows_fit(&rows, terminal_width()));
        }
        Format::Csv => print!("{}", to_csv(schema, batches)?),
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json_rows(schema, batches)?)?),
        Format::Parquet => {
            let out = std::io::stdout();
            if out.is_terminal() {
                bail!("--format parquet writes binary Parquet to stdout: redirect it to a file (`> table.parquet`)");
            }
            let mut buf = Vec::new();
            write_parquet_to(&mut buf, schema.clone(), batches)?;
            out.lock().write_all(&buf)?;
        }
    }
    Ok(())
}

pub fn show(store: &StoreChoice, a: ShowArgs) -> Result<i32> {
    let store = store.existing(None)?;
    let key = a.through.resolve(&store, &a.what, a.latest)?;
    if let Some(language) = &a.sentences.sentences {
        crate::cmd_sentences::print(&store, &key, &a.sentences, language)?;
        return Ok(0);
    }
    let m = store.manifest(&key)?;
    if a.format != Format::Table {
        let (schema, batches) = mexa_pipeline::stage::read_stitched(&store, &key)?;
        print_table(&schema, &batches, a.format)?;
        return Ok(0);
    }
    println!("key      {}", m.key);
    println!("label    {}", m.label);
    println!("stage    {} v{}", m.spec.stage, m.spec.version);
    println!("params   {}", serde_json::to_string(&m.spec.params)?);
    for (slot, keys) in &m.spec.inputs {
        for k in keys {
            let l = store.manifest(k).map(|m| m.label).unwrap_or_else(|_| "(not in this store)".into());
            println!("input    {slot}: {}  {l}", k.short());
        }
    }
    println!(
        "rows     {}   size {}   computed in {:.2}s on {} by mexa {}",
        m.rows,
        human_bytes(m.bytes),
        m.wall_time_s,
        m.host,
        m.tool_version
    );
    if !m.meta.is_null() {
        println!("meta     {}", serde_json::to_string(&m.meta)?);
    }
    println!("file     {}", store.data_path(&key).display());
    let shards = mexa_pipeline::shards_of(&store, &key)?;
    if !shards.is_empty() {
        println!("shards   {}: {}", shards.len(), shards.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", "));
    }
    let (schema, batches) = mexa_pipeline::stage::read_stitched(&store, &key)?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!(
        "\nschema:\n  {}",
        schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>().join("\n  ")
    );
    println!("\nfirst {} of {} rows{}:", a.rows.min(rows), rows, if shards.is_empty() { "" } else { " (all shards)" });
    print!("{}", TableSummary::head(&schema, &batches, a.rows, 40)?);
    print_floors(&batches);
    Ok(0)
}

/// A correlation table's floor flags (`floor`, `floor_note`): every flagged row as a warning
/// under the table, so a correlation over near-chance points is never read as a finding.
fn print_floors(batches: &[RecordBatch]) {
    use arrow::array::{Array, BooleanArray, StringArray};
    let text = |b: &RecordBatch, c: &str, i: usize| {
        b.column_by_name(c)
            .and_then(|a| a.as_any().downcast_ref::<StringArray>().map(|s| s.value(i).to_string()))
            .unwrap_or_default()
    };
    let mut first = true;
    for b in batches {
        let Some(flags) = b.column_by_name("floor").and_then(|a| a.as_any().downcast_ref::<BooleanArray>().cloned())
        else {
            return;
        };
        for i in (0..b.num_rows()).filter(|&i| flags.is_valid(i) && flags.value(i)) {
            if first {
                println!("\n⚑ correlations at a floor (most points near chance or no better than the commonest answer on one axis; r says little about these):");
                first = false;
            }
            println!(
                "  {} ({} pooling, layers pooled by {}): {}",
                text(b, "task", i),
                text(b, "pooling", i),
                text(b, "layer_pool", i),
                text(b, "floor_note", i)
            );
        }
    }
}

pub fn lineage(store: &StoreChoice, a: LineageArgs) -> Result<i32> {
    let store = store.existing(None)?;
    let key = a.through.resolve(&store, &a.what, a.latest)?;
    fn walk(store: &Store, key: &Key, depth: usize, slot: &str) {
        let pad = "  ".repeat(depth);
        match store.manifest(key) {
            Ok(m) => {
                println!("{pad}{slot}{}  {} ({} v{})", key.short(), m.label, m.spec.stage, m.spec.version);
                let plain: Vec<String> = m
                    .spec
                    .params
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| !v.is_object())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if !plain.is_empty() {
                    println!("{pad}    params: {}", mexa_report::clip(&plain.join(" "), 300));
                }
                if let Some(p) = m.spec.params.as_object() {
                    for (name, v) in p {
                        // Hashes are shown by their first 16 characters; a stored string may
                        // be shorter (an old or foreign store): shown whole.
                        let short = |h: &str| h.chars().take(16).collect::<String>();
                        if let Some(h) = v.get("blake3").and_then(|h| h.as_str()) {
                            println!("{pad}    {name}: external content blake3 {}", short(h));
                        }
                        for (file, h) in v.get("beside").and_then(|b| b.as_object()).into_iter().flatten() {
                            println!("{pad}      read beside it: {file}: blake3 {}", short(h.as_str().unwrap_or("?")));
                        }
                        if let Some(files) = v.get("model_files").and_then(|f| f.as_object()) {
                            let hub = v
                                .get("hub")
                                .and_then(|h| h.as_str())
                                .map(|h| format!(" of Hugging Face {h}"))
                                .unwrap_or_default();
                            println!("{pad}    {name}: model files{hub} ({})", files.len());
                            for (file, id) in files {
                                let (how, h) = match (
                                    id.get("blob").and_then(|b| b.as_str()),
                                    id.as_str().or_else(|| id.get("blake3").and_then(|b| b.as_str())),
                                ) {
                                    (Some(b), _) => ("blob", b),
                                    (None, Some(h)) => ("blake3", h),
                                    _ => ("?", ""),
                                };
                                println!("{pad}      {file}: {how} {}", short(h));
                            }
                        }
                    }
                }
                for (s, keys) in &m.spec.inputs {
                    for k in keys {
                        walk(store, k, depth + 1, &format!("{s} ← "));
                    }
                }
            }
            Err(e) if e.is_missing() => println!("{pad}{slot}{}  (not in this store)", key.short()),
            Err(e) => println!("{pad}{slot}{}  CORRUPT: {e}", key.short()),
        }
    }
    walk(&store, &key, 0, "");
    Ok(0)
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Seal the manifests of a store written by a mexa from before manifest seals (their key,
    /// key spec and data hash are checked first). Without it, an unsealed manifest is corrupt
    /// like an edited one. Run it once, knowingly, on a store you trust.
    #[arg(long)]
    reseal: bool,
}

pub fn verify(store: &StoreChoice, a: VerifyArgs) -> Result<i32> {
    let store = store.existing(None)?;
    let r = store.verify_with(a.reseal)?;
    for (key, why, to) in &r.corrupt {
        println!("corrupt  {}  {why}\n         moved to {}", key.short(), to.display());
    }
    for (key, label, input, to) in &r.derived {
        println!(
            "derived  {}  {label}: computed from {}, which was corrupt\n         moved to {}",
            key.short(),
            input.short(),
            to.display()
        );
    }
    for s in &r.strays {
        println!("stray    {}  (not an artifact; left alone)", s.display());
    }
    for (node, shard) in &r.incomplete {
        println!("incomplete  {}  shard {} is missing; the next run recomputes it", node.short(), shard.short());
    }
    println!(
        "{} artifact(s) checked, {} corrupt, {} computed from a corrupt one{}{}{}{}",
        r.checked,
        r.corrupt.len(),
        r.derived.len(),
        if r.corrupt.is_empty() && r.derived.is_empty() { "" } else { " (quarantined; the next run recomputes them)" },
        if r.incomplete.is_empty() {
            String::new()
        } else {
            format!(", {} sharded node(s) incomplete", r.incomplete.len())
        },
        if r.strays.is_empty() {
            String::new()
        } else {
            format!(", {} stray entr{} skipped", r.strays.len(), if r.strays.len() == 1 { "y" } else { "ies" })
        },
        if r.resealed == 0 { String::new() } else { format!(", {} old manifest(s) sealed", r.resealed) }
    );
    // Exit 1 only for corruption; an incomplete node is a consistent state the next run fixes.
    Ok(if r.corrupt.is_empty() && r.derived.is_empty() { 0 } else { 1 })
}

pub fn store_cmd(store: &StoreChoice, c: StoreCmd) -> Result<i32> {
    let (dst, src) = match &c {
        StoreCmd::Import { from } => {
            if !Store::exists(from) {
                bail!("{} is not a mexa store (no objects/ directory)", from.display());
            }
            (store.create(None)?, StoreChoice(Some(from.clone())).existing(None)?)
        }
        StoreCmd::Export { to } => (StoreChoice(Some(to.clone())).create(None)?, store.existing(None)?),
    };
    let (copied, present, rejected) = dst.import_from(&src)?;
    for (k, why) in &rejected {
        println!("rejected {}  {why}", k.short());
    }
    println!(
        "{copied} copied, {present} already present, {} rejected ({} → {})",
        rejected.len(),
        src.root().display(),
        dst.root().display()
    );
    Ok(if rejected.is_empty() { 0 } else { 1 })
}
