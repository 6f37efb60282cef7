//! `layer_choice`: how optimistic the best layer is. Per language, the in-sample maximum over
//! hidden states (μMax, or a probe's `max`) against the same choice made without the scored
//! sentences (split-half, cross-fitted) and without the scored language (leave-one-language-out):
//! `mexa_metrics::selection`. Reads sentence-level outcomes: `align_instances` (retrieval hits)
//! and/or `probe_instances` (right or wrong).
use crate::instances::{outcome_grids, read_instances, Retrieval};
use crate::probe::read_predictions;
use crate::util::{col_f64, col_i32, col_str, f64_col_undefined, f64_or_nan, i32_col, schema_with_nulls, utf8_col};
use anyhow::{bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::selection::{leave_one_language_out, split_half};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::BTreeMap;

pub struct LayerChoice;

mexa_pipeline::stage_params! {
    /// `layer_choice`'s parameters.
    struct Params {
        /// which retrieval counts as a hit on the `alignment` input: μ's (row and column) or one
        /// P@1 direction
        retrieval: Retrieval = Retrieval::Mexa,
    }
}

/// One language's in-sample and held-out layer choice for one score.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceRow {
    /// `mexa` (or the P@1 chosen) for alignment, `probe` for a probe's accuracy.
    pub score: String,
    pub language: String,
    pub pooling: String,
    pub n: i32,
    pub layers: i32,
    pub in_sample: f64,
    pub in_sample_layer: i32,
    pub split_half: f64,
    pub even_layer: i32,
    pub odd_layer: i32,
    pub lolo: f64,
    pub lolo_layer: i32,
}

/// The rows of one score: every (language, pooling) grid of outcomes.
fn choices(score: &str, grids: &BTreeMap<(String, String), Vec<Vec<bool>>>) -> Result<Vec<ChoiceRow>> {
    let mut out = Vec::new();
    let poolings: std::collections::BTreeSet<&String> = grids.keys().map(|k| &k.1).collect();
    for pool in poolings {
        let group: Vec<(&String, &Vec<Vec<bool>>)> =
            grids.iter().filter(|(k, _)| &k.1 == pool).map(|(k, g)| (&k.0, g)).collect();
        let shares: Vec<Vec<f64>> = group
            .iter()
            .map(|(_, g)| g.iter().map(|l| l.iter().filter(|&&h| h).count() as f64 / l.len().max(1) as f64).collect())
            .collect();
        let lolo = leave_one_language_out(&shares);
        for (i, (lang, g)) in group.iter().enumerate() {
            let Some(s) = split_half(g) else { bail!("{score}: {lang} ({pool}) has fewer than two sentences") };
            let (lolo_layer, lolo_value) = lolo.as_ref().map_or((-1, f64::NAN), |v| (v[i].0 as i32, v[i].1));
            out.push(ChoiceRow {
                score: score.to_string(),
                language: lang.to_string(),
                pooling: pool.clone(),
                n: s.n as i32,
                layers: g.len() as i32,
                in_sample: s.in_sample,
                in_sample_layer: s.in_sample_layer as i32,
                split_half: s.held_out,
                even_layer: s.even_layer as i32,
                odd_layer: s.odd_layer as i32,
                lolo: lolo_value,
                lolo_layer,
            });
        }
    }
    Ok(out)
}

const FLOATS: [&str; 5] = ["in_sample", "split_half", "split_half_optimism", "lolo", "lolo_optimism"];
const INTS: [&str; 6] = ["n", "layers", "in_sample_layer", "even_layer", "odd_layer", "lolo_layer"];

fn choice_table(rows: &[ChoiceRow]) -> Result<Table> {
    let mut fields = vec![("score", DataType::Utf8), ("language", DataType::Utf8), ("pooling", DataType::Utf8)];
    fields.extend(INTS.iter().map(|n| (*n, DataType::Int32)));
    fields.extend(FLOATS.iter().map(|n| (*n, DataType::Float64)));
    // Leave-one-language-out needs two languages.
    let sch = schema_with_nulls(&fields, &["lolo", "lolo_optimism"]);
    let i = |f: fn(&ChoiceRow) -> i32| i32_col(rows.iter().map(f).collect());
    let f = |f: fn(&ChoiceRow) -> f64| f64_col_undefined(rows.iter().map(f).collect());
    let cols = vec![
        utf8_col(rows.iter().map(|r| r.score.clone()).collect()),
        utf8_col(rows.iter().map(|r| r.language.clone()).collect()),
        utf8_col(rows.iter().map(|r| r.pooling.clone()).collect()),
        i(|r| r.n),
        i(|r| r.layers),
        i(|r| r.in_sample_layer),
        i(|r| r.even_layer),
        i(|r| r.odd_layer),
        i(|r| r.lolo_layer),
        f(|r| r.in_sample),
        f(|r| r.split_half),
        f(|r| r.in_sample - r.split_half),
        f(|r| r.lolo),
        f(|r| r.in_sample - r.lolo),
    ];
    Ok(Table::new(sch.clone(), vec![RecordBatch::try_new(sch, cols)?]))
}

/// Reads a `layer_choice` table back (its writer is [`choice_table`]).
pub fn read_choices(t: &Table) -> Result<Vec<ChoiceRow>> {
    let mut out = Vec::new();
    for b in &t.batches {
        let (s, l, p) = (col_str(b, "score")?, col_str(b, "language")?, col_str(b, "pooling")?);
        let ints = INTS.iter().map(|n| col_i32(b, n)).collect::<Result<Vec<_>>>()?;
        let (ins, half, lolo) = (col_f64(b, "in_sample")?, col_f64(b, "split_half")?, col_f64(b, "lolo")?);
        for r in 0..b.num_rows() {
            let v = |k: usize| ints[k].value(r);
            out.push(ChoiceRow {
                score: s.value(r).into(),
                language: l.value(r).into(),
                pooling: p.value(r).into(),
                n: v(0),
                layers: v(1),
                in_sample_layer: v(2),
                even_layer: v(3),
                odd_layer: v(4),
                lolo_layer: v(5),
                in_sample: ins.value(r),
                split_half: half.value(r),
                lolo: f64_or_nan(lolo, r),
            });
        }
    }
    Ok(out)
}

impl Stage for LayerChoice {
    fn kind(&self) -> &'static str {
        "layer_choice"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "How optimistic the best layer is: per language, the in-sample maximum over hidden states (μMax, a probe's max) against the layer chosen on the other half of the sentences (split-half, cross-fitted) and on the other languages (leave-one-language-out), and their optimism"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![
            InputSpec::one("alignment", "an align_instances table (retrieval hits per sentence)").optional(),
            InputSpec::one("probe", "a probe_instances table (right or wrong per sentence)").optional(),
        ]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let mut rows = Vec::new();
        if let Some(input) = ctx.gathered("alignment").first() {
            let inst = read_instances(&ctx.read(input)?)?;
            let grids = outcome_grids(
                inst.iter().map(|r| {
                    (r.language.as_str(), r.pooling.name(), r.layer, r.sentence_id, p.retrieval.hit(&r.outcome))
                }),
                &input.label,
            )?;
            rows.extend(choices(p.retrieval.name(), &grids)?);
        }
        if let Some(input) = ctx.gathered("probe").first() {
            let pred = read_predictions(&ctx.read(input)?)?;
            let grids = outcome_grids(
                pred.iter().map(|r| (r.language.as_str(), r.pooling.as_str(), r.layer, r.sentence_id, r.correct)),
                &input.label,
            )?;
            rows.extend(choices("probe", &grids)?);
        }
        if rows.is_empty() {
            bail!("nothing to choose layers for: connect an align_instances node to `alignment` or a probe_instances node to `probe`");
        }
        Ok(choice_table(&rows)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_sample_is_the_best_layers_share_and_lolo_uses_the_other_languages() {
        // Two languages × three layers × four sentences.
        let g = |rows: [[bool; 4]; 3]| rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>();
        let grids = BTreeMap::from([
            (
                ("fra".to_string(), "weighted".to_string()),
                g([[true, false, false, false], [true, true, true, false], [true, true, false, false]]),
            ),
            (
                ("deu".to_string(), "weighted".to_string()),
                g([[true, true, true, true], [false, false, false, false], [true, false, false, false]]),
            ),
        ]);
        let rows = choices("mexa", &grids).unwrap();
        let fra = rows.iter().find(|r| r.language == "fra").unwrap();
        assert_eq!((fra.in_sample, fra.in_sample_layer), (0.75, 1));
        // deu's best layer is 0: fra scored there (0.25).
        assert_eq!((fra.lolo_layer, fra.lolo), (0, 0.25));
        let deu = rows.iter().find(|r| r.language == "deu").unwrap();
        assert_eq!((deu.lolo_layer, deu.lolo), (1, 0.0));
        // Split-half for fra: even half {0, 2} best at layer 1 (2 hits), odd {1, 3} at layer 1 (1 hit):
        // odd scored at 1 → 1, even scored at 1 → 2: 3 / 4.
        assert_eq!((fra.even_layer, fra.odd_layer, fra.split_half), (1, 1, 0.75));
    }

    #[test]
    fn outcomes_with_gaps_are_refused() {
        let rows = [("fra", "weighted", 0, 0, true), ("fra", "weighted", 0, 2, true)];
        let err = outcome_grids(rows.into_iter(), "x").unwrap_err().to_string();
        assert!(err.contains("fra") && err.contains("same sentences"), "{err}");
    }
}
