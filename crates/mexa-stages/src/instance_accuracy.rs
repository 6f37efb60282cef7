//! `instance_accuracy`: does the alignment of a sentence predict the model's success on it?
//! (DALI's question.) Per language, pooling and hidden state, the test sentences are split by
//! whether they retrieve their translation (`align_instances`) and the model's own task
//! predictions for them (`probe_instances`, the probe at the same hidden state) are scored in
//! each group: accuracy of aligned and of unaligned sentences and their difference with
//! Newcombe's 95% interval (`mexa_metrics::probe::newcombe_difference`). Rows with layer −1
//! pool the hidden states sentence by sentence: aligned = a hit at more than half of them,
//! right = the probe right at more than half of them.
use crate::instances::{outcome_grids, read_instances, Retrieval};
use crate::probe::read_predictions;
use crate::util::{col_f64, col_i32, col_str, f64_col_undefined, i32_col, schema_with_nulls, utf8_col};
use anyhow::{bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::probe::newcombe_difference;
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::BTreeMap;

pub struct InstanceAccuracy;

mexa_pipeline::stage_params! {
    /// `instance_accuracy`'s parameters.
    struct Params {
        /// which retrieval makes a sentence aligned: μ's (row and column) or one P@1 direction
        retrieval: Retrieval = Retrieval::Mexa,
    }
}

/// One language's aligned and unaligned sentences at one hidden state.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceAccRow {
    pub language: String,
    pub pooling: String,
    pub layer: i32,
    pub n: i32,
    pub aligned: i32,
    pub aligned_correct: i32,
    pub unaligned: i32,
    pub unaligned_correct: i32,
}

impl InstanceAccRow {
    fn share(k: i32, n: i32) -> f64 {
        if n > 0 {
            k as f64 / n as f64
        } else {
            f64::NAN
        }
    }
    pub fn aligned_accuracy(&self) -> f64 {
        Self::share(self.aligned_correct, self.aligned)
    }
    pub fn unaligned_accuracy(&self) -> f64 {
        Self::share(self.unaligned_correct, self.unaligned)
    }
    /// Aligned minus unaligned accuracy, with Newcombe's 95% interval (NaN when a group is empty).
    pub fn difference(&self) -> (f64, f64, f64) {
        let u = |v: i32| v.max(0) as usize;
        newcombe_difference(
            u(self.aligned_correct),
            u(self.aligned),
            u(self.unaligned_correct),
            u(self.unaligned),
            1.96,
        )
    }
}

/// The rows: alignment hits and probe outcomes joined on (language, layer, sentence).
pub fn instance_accuracy(
    hits: &BTreeMap<(String, String), Vec<Vec<bool>>>,
    correct: &BTreeMap<(String, String), Vec<Vec<bool>>>,
) -> Result<Vec<InstanceAccRow>> {
    let by_lang: BTreeMap<&str, &Vec<Vec<bool>>> = correct.iter().map(|(k, v)| (k.0.as_str(), v)).collect();
    if by_lang.len() != correct.len() {
        bail!("the probe predictions have more than one pooling per language");
    }
    let mut out = Vec::new();
    for ((lang, pool), grid) in hits {
        let Some(right) = by_lang.get(lang.as_str()) else {
            bail!("{lang} has alignment outcomes but no probe predictions: both must come from the same test sentences")
        };
        if right.len() != grid.len() || right.first().map(Vec::len) != grid.first().map(Vec::len) {
            bail!(
                "{lang}: {} layers × {} sentences of alignment against {} × {} of probe predictions: both must come from the same embeddings",
                grid.len(),
                grid.first().map_or(0, Vec::len),
                right.len(),
                right.first().map_or(0, Vec::len)
            );
        }
        let row = |layer: i32, h: &[bool], c: &[bool]| {
            let count = |aligned: bool| {
                let members: Vec<bool> =
                    h.iter().zip(c).filter(|(hit, _)| **hit == aligned).map(|(_, ok)| *ok).collect();
                (members.len() as i32, members.iter().filter(|&&ok| ok).count() as i32)
            };
            let ((a, ac), (u, uc)) = (count(true), count(false));
            InstanceAccRow {
                language: lang.clone(),
                pooling: pool.clone(),
                layer,
                n: h.len() as i32,
                aligned: a,
                aligned_correct: ac,
                unaligned: u,
                unaligned_correct: uc,
            }
        };
        for (layer, (h, c)) in grid.iter().zip(right.iter()).enumerate() {
            out.push(row(layer as i32, h, c));
        }
        // Across layers: a sentence is aligned when it is a hit at more than half of the hidden
        // states, and right when the probe is right at more than half of them.
        let majority = |g: &Vec<Vec<bool>>| -> Vec<bool> {
            (0..g[0].len()).map(|i| 2 * g.iter().filter(|l| l[i]).count() > g.len()).collect()
        };
        if !grid.is_empty() {
            out.push(row(MAJORITY, &majority(grid), &majority(right)));
        }
    }
    Ok(out)
}

/// The `layer` of the rows that pool the hidden states by majority.
pub const MAJORITY: i32 = -1;

const INTS: [&str; 6] = ["layer", "n", "aligned", "aligned_correct", "unaligned", "unaligned_correct"];

fn table(rows: &[InstanceAccRow]) -> Result<Table> {
    let mut fields = vec![("language", DataType::Utf8), ("pooling", DataType::Utf8)];
    fields.extend(INTS.iter().map(|n| (*n, DataType::Int32)));
    // Undefined when a group is empty.
    let floats = ["aligned_accuracy", "unaligned_accuracy", "difference", "difference_lo", "difference_hi"];
    fields.extend(floats.iter().map(|n| (*n, DataType::Float64)));
    let sch = schema_with_nulls(&fields, &floats);
    let i = |f: fn(&InstanceAccRow) -> i32| i32_col(rows.iter().map(f).collect());
    let d: Vec<(f64, f64, f64)> = rows.iter().map(InstanceAccRow::difference).collect();
    let cols = vec![
        utf8_col(rows.iter().map(|r| r.language.clone()).collect()),
        utf8_col(rows.iter().map(|r| r.pooling.clone()).collect()),
        i(|r| r.layer),
        i(|r| r.n),
        i(|r| r.aligned),
        i(|r| r.aligned_correct),
        i(|r| r.unaligned),
        i(|r| r.unaligned_correct),
        f64_col_undefined(rows.iter().map(InstanceAccRow::aligned_accuracy).collect()),
        f64_col_undefined(rows.iter().map(InstanceAccRow::unaligned_accuracy).collect()),
        f64_col_undefined(d.iter().map(|x| x.0).collect()),
        f64_col_undefined(d.iter().map(|x| x.1).collect()),
        f64_col_undefined(d.iter().map(|x| x.2).collect()),
    ];
    Ok(Table::new(sch.clone(), vec![RecordBatch::try_new(sch, cols)?]))
}

/// Reads an `instance_accuracy` table back (its writer is [`table`]; the accuracies and the
/// interval follow from the counts).
pub fn read_instance_accuracy(t: &Table) -> Result<Vec<InstanceAccRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let (l, p) = (col_str(b, "language")?, col_str(b, "pooling")?);
        let ints = INTS.iter().map(|n| col_i32(b, n)).collect::<Result<Vec<_>>>()?;
        col_f64(b, "difference")?;
        for r in 0..b.num_rows() {
            let v = |k: usize| ints[k].value(r);
            out.push(InstanceAccRow {
                language: l.value(r).into(),
                pooling: p.value(r).into(),
                layer: v(0),
                n: v(1),
                aligned: v(2),
                aligned_correct: v(3),
                unaligned: v(4),
                unaligned_correct: v(5),
            });
        }
    }
    Ok(out)
}

impl Stage for InstanceAccuracy {
    fn kind(&self) -> &'static str {
        "instance_accuracy"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Does a sentence's alignment predict the model's success on it? Per language, pooling and layer: the accuracy of the model's own task predictions (probe_instances) on the sentences that retrieve their translation (align_instances) and on those that do not, and the difference with Newcombe's 95% interval"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::one("alignment", "an align_instances table (retrieval hits per sentence)"),
            InputSpec::one("probe", "a probe_instances table on the same test embeddings"),
        ]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let (ai, pi) = (ctx.input("alignment")?, ctx.input("probe")?);
        let inst = read_instances(&ctx.read(ai)?)?;
        let hits = outcome_grids(
            inst.iter()
                .map(|r| (r.language.as_str(), r.pooling.name(), r.layer, r.sentence_id, p.retrieval.hit(&r.outcome))),
            &ai.label,
        )?;
        let pred = read_predictions(&ctx.read(pi)?)?;
        let correct = outcome_grids(
            pred.iter().map(|r| (r.language.as_str(), r.pooling.as_str(), r.layer, r.sentence_id, r.correct)),
            &pi.label,
        )?;
        let rows = instance_accuracy(&hits, &correct)?;
        Ok(table(&rows)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_counted_in_their_group() {
        // One language, two layers, five sentences.
        let hits = BTreeMap::from([(
            ("fra".to_string(), "weighted".to_string()),
            vec![vec![true, true, false, false, false], vec![false; 5]],
        )]);
        let correct = BTreeMap::from([(
            ("fra".to_string(), "weighted".to_string()),
            vec![vec![true, false, true, false, false], vec![true, true, false, false, false]],
        )]);
        let rows = instance_accuracy(&hits, &correct).unwrap();
        assert_eq!(
            (rows[0].aligned, rows[0].aligned_correct, rows[0].unaligned, rows[0].unaligned_correct),
            (2, 1, 3, 1)
        );
        assert_eq!(rows[0].aligned_accuracy(), 0.5);
        assert!((rows[0].difference().0 - (0.5 - 1.0 / 3.0)).abs() < 1e-15);
        // Nothing aligned at layer 1: no difference to report.
        assert_eq!((rows[1].aligned, rows[1].unaligned_correct), (0, 2));
        assert!(rows[1].difference().0.is_nan() && rows[1].aligned_accuracy().is_nan());
        // By majority over the two layers, a hit must hold at both: none is aligned; sentence 0
        // is right at both, sentence 1 at one only.
        assert_eq!(rows[2].layer, MAJORITY);
        assert_eq!((rows[2].aligned, rows[2].unaligned, rows[2].unaligned_correct), (0, 5, 1));
        let other = BTreeMap::from([(("deu".to_string(), "weighted".to_string()), vec![vec![true; 5]; 2])]);
        assert!(instance_accuracy(&hits, &other).unwrap_err().to_string().contains("no probe predictions"));
    }
}
