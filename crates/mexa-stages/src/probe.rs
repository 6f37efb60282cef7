//! `probe`: a model's own accuracy per language and layer on a labelled task, measured from
//! the same `embed` artifacts alignment uses. A multinomial logistic regression is trained per
//! layer on the training language's embeddings (the pivot of the `train` embeddings) and
//! tested on every language of the `test` embeddings: cross-lingual transfer, the SIB-200
//! paper's protocol. Labels come from the id-keyed corpus files (`<language>/<split>.tsv`,
//! a label column), in the order load_corpus reads them (the pivot's id order).
use crate::embed::{embeddings_meta, read_shard};
use crate::util::{bool_col, col_bool, col_i32, col_str, f64_col, i32_col, schema, utf8_col};
use anyhow::{anyhow, bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::probe::{wilson, Probe, ProbeOptions};
use mexa_metrics::Matrix;
use mexa_model::Pooling;
use mexa_pipeline::{Ctx, InputRef, InputSpec, Output, ParamSpec, Stage, Table};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct ProbeStage;

mexa_pipeline::stage_params! {
    /// `probe`'s parameters.
    struct Params {
        /// the id-keyed corpus folder the embeddings were read from (<language>/<split>.tsv
        /// with a label column)
        labels: PathBuf,
        /// split of the training embeddings
        train_split: String = "train",
        /// split of the test embeddings
        test_split: String = "test",
        /// the label column
        label_column: String = "category",
        /// which sentence embedding to probe
        pooling: Pooling as Enum(Pooling::NAMES) = Pooling::Weighted,
        /// full-batch training steps per layer
        steps: usize = 300,
        /// Adam step size
        learning_rate: f64 = 0.05,
        /// L2 penalty on the weights
        l2: f64 = 0.001,
    }
}

/// The label column of `<dir>/<language>/<split>.tsv`, in file order.
pub fn read_labels(dir: &Path, language: &str, split: &str, column: &str) -> Result<Vec<String>> {
    let path = dir.join(language).join(format!("{split}.tsv"));
    let (header, rows) = crate::corpus::read_tsv(&path)?;
    let col = header
        .iter()
        .position(|h| h.trim() == column)
        .ok_or_else(|| anyhow!("{}:1: no `{column}` column (columns: {})", path.display(), header.join(", ")))?;
    rows.into_iter()
        .map(|(line, cells)| {
            let v = cells[col].trim();
            if v.is_empty() {
                bail!("{}:{line}: no label in column `{column}`", path.display());
            }
            Ok(v.to_string())
        })
        .collect()
}

/// The pivot's embeddings of one pooling, per layer, and the pivot's code.
fn pivot_layers(ctx: &Ctx, input: &InputRef, pooling: Pooling) -> Result<(String, Vec<Matrix>)> {
    let (pivot, _) = embeddings_meta(ctx, input)?;
    let shards = ctx.shards_of(input)?;
    let key = &shards
        .iter()
        .find(|(l, _)| *l == pivot)
        .ok_or_else(|| anyhow!("{}: no shard for its pivot {pivot}", input.label))?
        .1;
    let mut emb = read_shard(ctx, &input.label, &pivot, key)?;
    let layers =
        emb.remove(&pooling).ok_or_else(|| anyhow!("{}: pooling `{pooling}` was not computed", input.label))?;
    Ok((pivot, layers))
}

/// Probes trained per layer on the training embeddings' pivot, and their predictions for every
/// language of the test embeddings: what `probe` counts and `probe_instances` lists.
struct Probed {
    pub train_lang: String,
    pub n_train: usize,
    /// The training labels' classes, sorted; predictions index them.
    pub classes: Vec<String>,
    /// The test split's labels in corpus order (cut to the sentences embedded per language).
    pub test_labels: Vec<String>,
    /// Per test language: per hidden state, the predicted class of each sentence.
    pub predictions: Vec<(String, Vec<Vec<usize>>)>,
}

impl Probed {
    /// The manifest facts of `probe` and `probe_instances`: the training language and size, the
    /// classes, chance (1/classes), and the commonest label of the scored test sentences with
    /// its share (what always answering it would score).
    fn meta(&self, pooling: Pooling) -> serde_json::Value {
        let n = self.predictions.first().and_then(|(_, l)| l.first()).map_or(0, Vec::len);
        let mut counts: Vec<(usize, &String)> =
            self.classes.iter().map(|c| (self.test_labels[..n].iter().filter(|l| *l == c).count(), c)).collect();
        counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let (top, label) = counts.first().map_or((0, None), |c| (c.0, Some(c.1)));
        serde_json::json!({
            "train_language": self.train_lang,
            "train_sentences": self.n_train,
            "classes": self.classes,
            "pooling": pooling,
            "chance": 1.0 / self.classes.len() as f64,
            "majority": if n > 0 { top as f64 / n as f64 } else { f64::NAN },
            "majority_label": label,
        })
    }

    /// Whether sentence `i`'s prediction is its label (a test label unseen in training can never
    /// be predicted: a miss).
    pub fn correct(&self, predicted: usize, i: usize) -> bool {
        self.classes[predicted] == self.test_labels[i]
    }
}

// Long: train one probe per layer on the pivot, then score every language's shard with them;
// both halves share the probes, classes and labels.
fn probe_all(ctx: &Ctx, p: &Params) -> Result<Probed> {
    let dir = Path::new(&p.labels);
    let (column, pooling) = (p.label_column.as_str(), p.pooling);
    let (train_in, test_in) = (ctx.input("train")?, ctx.input("test")?);
    let (train_lang, train_layers) = pivot_layers(ctx, train_in, pooling)?;
    let (test_pivot, _) = pivot_layers(ctx, test_in, pooling)?;
    // Labels in corpus order, cut to the sentences embedded (load_corpus's `limit`).
    let mut train_labels = read_labels(dir, &train_lang, &p.train_split, column)?;
    let n_train = train_layers.first().map(|m| m.rows).unwrap_or(0);
    if train_labels.len() < n_train {
        bail!("{}: {} labels for {n_train} training sentences", dir.join(&train_lang).display(), train_labels.len());
    }
    train_labels.truncate(n_train);
    let mut classes: Vec<String> = train_labels.clone();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        bail!("the training labels have {} class(es); a probe needs at least two", classes.len());
    }
    let index: HashMap<&str, usize> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let y: Vec<usize> = train_labels.iter().map(|l| index[l.as_str()]).collect();
    let opts = ProbeOptions { steps: p.steps, learning_rate: p.learning_rate, l2: p.l2 };
    ctx.progress.message(&format!(
        "training {} probes on {train_lang} ({n_train} sentences, {} classes)",
        train_layers.len(),
        classes.len()
    ));
    let probes: Vec<Probe> = train_layers.par_iter().map(|x| Probe::fit(x, &y, classes.len(), opts)).collect();

    let test_labels = read_labels(dir, &test_pivot, &p.test_split, column)?;
    let shards = ctx.shards_of(test_in)?;
    ctx.progress.set_length(shards.len() as u64);
    let mut predictions = Vec::new();
    for (code, key) in &shards {
        let emb = read_shard(ctx, &test_in.label, code, key)?;
        let layers =
            emb.get(&pooling).ok_or_else(|| anyhow!("{}: pooling `{pooling}` was not computed", test_in.label))?;
        if layers.len() != probes.len() {
            bail!(
                "{} has {} hidden states, {} has {}: train and test embeddings must come from the same model",
                train_in.label,
                probes.len(),
                test_in.label,
                layers.len()
            );
        }
        let mut per_layer = Vec::with_capacity(layers.len());
        for (l, (x, probe)) in layers.iter().zip(&probes).enumerate() {
            if x.cols != probe.width() {
                bail!(
                    "{}: shard `{code}` has vectors of width {} at layer {l}, the probe trained on {} (`{train_lang}`) {}: they come from different models",
                    test_in.label,
                    x.cols,
                    train_in.label,
                    probe.width()
                );
            }
            if test_labels.len() < x.rows {
                bail!(
                    "{}: {} labels for {} test sentences",
                    dir.join(&test_pivot).display(),
                    test_labels.len(),
                    x.rows
                );
            }
            per_layer.push(probe.predict(x));
        }
        predictions.push((code.clone(), per_layer));
        ctx.progress.inc(1);
    }
    Ok(Probed { train_lang, n_train, classes, test_labels, predictions })
}

impl Stage for ProbeStage {
    fn kind(&self) -> &'static str {
        "probe"
    }
    fn version(&self) -> u32 {
        // 2: the manifest states the commonest test label and its share (`majority`), the
        // accuracy of always answering it: a task floor `join_tasks` and `correlate` check.
        // The table is unchanged.
        2
    }
    fn doc(&self) -> &'static str {
        "A model's own accuracy per language and layer on a labelled task (SIB-200 topics): a logistic-regression probe per layer, trained on the train embeddings' pivot, tested on every language of the test embeddings; accuracy, n and a 95% Wilson interval"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::one("train", "embeddings of the training split (its pivot is the training language)"),
            InputSpec::one("test", "embeddings of the test split, every language"),
        ]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let pooling = p.pooling;
        let probed = probe_all(ctx, &p)?;
        let (mut lang, mut layer, mut n, mut acc, mut lo, mut hi) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (code, per_layer) in &probed.predictions {
            for (l, predicted) in per_layer.iter().enumerate() {
                let right = predicted.iter().enumerate().filter(|&(i, &c)| probed.correct(c, i)).count();
                let (a, b) = wilson(right, predicted.len(), 1.96);
                lang.push(code.clone());
                layer.push(l as i32);
                n.push(predicted.len() as i32);
                acc.push(right as f64 / predicted.len() as f64);
                lo.push(a);
                hi.push(b);
            }
        }
        let sch = schema(&[
            ("language", DataType::Utf8),
            ("pooling", DataType::Utf8),
            ("layer", DataType::Int32),
            ("n", DataType::Int32),
            ("accuracy", DataType::Float64),
            ("ci_low", DataType::Float64),
            ("ci_high", DataType::Float64),
        ]);
        let rows = lang.len();
        let b = RecordBatch::try_new(
            sch.clone(),
            vec![
                utf8_col(lang),
                utf8_col(vec![pooling.to_string(); rows]),
                i32_col(layer),
                i32_col(n),
                f64_col(acc),
                f64_col(lo),
                f64_col(hi),
            ],
        )?;
        let meta = probed.meta(pooling);
        Ok(Output { table: Table::new(sch, vec![b]), meta })
    }
}

/// `probe_instances`: the same probes as `probe` (same parameters, same training), listed
/// sentence by sentence: each test sentence's label, predicted class and whether it is right,
/// per language and hidden state. What instance-level alignment and held-out layer choice read.
pub struct ProbeInstances;

/// One test sentence's prediction at one hidden state.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    pub language: String,
    pub pooling: String,
    pub layer: i32,
    pub sentence_id: i32,
    pub correct: bool,
}

/// Reads a `probe_instances` table back (its writer is `ProbeInstances::run`).
pub fn read_predictions(t: &Table) -> Result<Vec<PredictionRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let (l, pool, layer, sid, ok) = (
            col_str(b, "language")?,
            col_str(b, "pooling")?,
            col_i32(b, "layer")?,
            col_i32(b, "sentence_id")?,
            col_bool(b, "correct")?,
        );
        for i in 0..b.num_rows() {
            out.push(PredictionRow {
                language: l.value(i).into(),
                pooling: pool.value(i).into(),
                layer: layer.value(i),
                sentence_id: sid.value(i),
                correct: ok.value(i),
            });
        }
    }
    Ok(out)
}

impl Stage for ProbeInstances {
    fn kind(&self) -> &'static str {
        "probe_instances"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "The probes of `probe` (same parameters and training) sentence by sentence: each test sentence's label, predicted class and whether it is right, per language and layer"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        ProbeStage.inputs()
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let probed = probe_all(ctx, &p)?;
        let (mut lang, mut layer, mut sid, mut label, mut pred, mut ok) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (code, per_layer) in &probed.predictions {
            for (l, predicted) in per_layer.iter().enumerate() {
                for (i, &c) in predicted.iter().enumerate() {
                    lang.push(code.clone());
                    layer.push(l as i32);
                    sid.push(i as i32);
                    label.push(probed.test_labels[i].clone());
                    pred.push(probed.classes[c].clone());
                    ok.push(probed.correct(c, i));
                }
            }
        }
        let sch = schema(&[
            ("language", DataType::Utf8),
            ("pooling", DataType::Utf8),
            ("layer", DataType::Int32),
            ("sentence_id", DataType::Int32),
            ("label", DataType::Utf8),
            ("predicted", DataType::Utf8),
            ("correct", DataType::Boolean),
        ]);
        let rows = lang.len();
        let b = RecordBatch::try_new(
            sch.clone(),
            vec![
                utf8_col(lang),
                utf8_col(vec![p.pooling.to_string(); rows]),
                i32_col(layer),
                i32_col(sid),
                utf8_col(label),
                utf8_col(pred),
                bool_col(ok),
            ],
        )?;
        let meta = probed.meta(p.pooling);
        Ok(Output { table: Table::new(sch, vec![b]), meta })
    }
}
