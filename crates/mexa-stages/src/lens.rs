//! `lens`: which language each layer "speaks" (the logit lens of nostalgebraist 2020, as
//! Wendler et al. 2024 use it to find a "latent English" in Llama 2). `embed` with `lens: N`
//! decodes every hidden state of the first N sentences of each language through the final
//! norm and the LM head at every position, in the same forward pass as the embeddings, and
//! stores each position's most likely next token. This stage classifies those tokens with a
//! token-language table built from the tokenizer and the corpus: a token belongs to a
//! language when it occurs in the model's tokenization of that language's corpus sentences.
//! Per input language and hidden state it reports the share of top-1 tokens that belong to
//! the pivot's vocabulary only, to the input language's only, to both, and to neither.
use crate::embed::{embeddings_meta, read_lens};
use crate::util::{f64_col, i32_col, schema, utf8_col};
use anyhow::{anyhow, bail, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::HashSet;

pub struct Lens;

mexa_pipeline::stage_params! {
    /// `lens`'s parameters (none: everything comes from the embed artifact).
    struct Params {}
}

/// Where one hidden state's top-1 tokens fall, as shares of the positions decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    pub positions: usize,
    /// In the pivot's vocabulary and not the input language's.
    pub pivot: f64,
    /// In the input language's vocabulary and not the pivot's.
    pub language: f64,
    /// In both.
    pub shared: f64,
    /// In neither.
    pub other: f64,
}

/// The shares of every hidden state: `top1[sentence][state][position]`.
pub fn lens_shares(pivot: &HashSet<i32>, language: &HashSet<i32>, top1: &[Vec<Vec<i32>>]) -> Vec<Shares> {
    let states = top1.iter().map(Vec::len).max().unwrap_or(0);
    (0..states)
        .map(|l| {
            let mut c = [0usize; 4];
            for t in top1.iter().filter_map(|s| s.get(l)).flatten() {
                let k = match (pivot.contains(t), language.contains(t)) {
                    (true, false) => 0,
                    (false, true) => 1,
                    (true, true) => 2,
                    (false, false) => 3,
                };
                c[k] += 1;
            }
            let n: usize = c.iter().sum();
            let share = |k: usize| if n == 0 { 0.0 } else { c[k] as f64 / n as f64 };
            Shares { positions: n, pivot: share(0), language: share(1), shared: share(2), other: share(3) }
        })
        .collect()
}

/// One row of a lens table.
#[derive(Debug, Clone)]
pub struct LensRow {
    pub language: String,
    pub layer: i32,
    pub sentences: i32,
    pub shares: Shares,
}

const SHARE_COLUMNS: [&str; 4] = ["pivot_share", "language_share", "shared_share", "other_share"];

fn lens_table(rows: &[LensRow]) -> Result<Table> {
    let mut fields = vec![
        ("language", DataType::Utf8),
        ("layer", DataType::Int32),
        ("sentences", DataType::Int32),
        ("positions", DataType::Int32),
    ];
    fields.extend(SHARE_COLUMNS.iter().map(|c| (*c, DataType::Float64)));
    let sch = schema(&fields);
    let share = |f: fn(&Shares) -> f64| f64_col(rows.iter().map(|r| f(&r.shares)).collect());
    let b = RecordBatch::try_new(
        sch.clone(),
        vec![
            utf8_col(rows.iter().map(|r| r.language.clone()).collect()),
            i32_col(rows.iter().map(|r| r.layer).collect()),
            i32_col(rows.iter().map(|r| r.sentences).collect()),
            i32_col(rows.iter().map(|r| r.shares.positions as i32).collect()),
            share(|s| s.pivot),
            share(|s| s.language),
            share(|s| s.shared),
            share(|s| s.other),
        ],
    )?;
    Ok(Table::new(sch, vec![b]))
}

/// Reads a lens table back (its writer is [`lens_table`]).
pub fn read_lens_table(t: &Table) -> Result<Vec<LensRow>> {
    use crate::util::{col_f64, col_i32, col_str};
    let mut out = Vec::new();
    for b in &t.batches {
        let (l, layer, sents, pos) =
            (col_str(b, "language")?, col_i32(b, "layer")?, col_i32(b, "sentences")?, col_i32(b, "positions")?);
        let s = SHARE_COLUMNS.iter().map(|c| col_f64(b, c)).collect::<Result<Vec<_>>>()?;
        for i in 0..b.num_rows() {
            out.push(LensRow {
                language: l.value(i).into(),
                layer: layer.value(i),
                sentences: sents.value(i),
                shares: Shares {
                    positions: pos.value(i) as usize,
                    pivot: s[0].value(i),
                    language: s[1].value(i),
                    shared: s[2].value(i),
                    other: s[3].value(i),
                },
            });
        }
    }
    Ok(out)
}

impl Stage for Lens {
    fn kind(&self) -> &'static str {
        "lens"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "The logit lens (Wendler et al. 2024): per language and hidden state, the share of top-1 next tokens in the pivot's vocabulary only, the input language's only, both, or neither (from an embed run with `lens: N`)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![InputSpec::one("embeddings", "an embed artifact computed with `lens` > 0")]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let input = ctx.input("embeddings")?;
        let (pivot, meta) = embeddings_meta(ctx, input)?;
        if meta.lens == 0 {
            bail!("{}: the embeddings were computed without the logit lens; give its embed stage `lens: N` (sentences per language to decode)", input.label);
        }
        let mut shards = Vec::new();
        for (lang, key) in ctx.shards_of(input)? {
            let l = read_lens(&ctx.read_key(&key)?)?
                .ok_or_else(|| anyhow!("{}: shard {lang} has no logit lens", input.label))?;
            shards.push((lang, l));
        }
        let vocab = |l: &crate::embed::ShardLens| -> HashSet<i32> { l.token_ids.iter().flatten().copied().collect() };
        let p = shards.iter().find(|(l, _)| *l == pivot).ok_or_else(|| anyhow!("no pivot shard"))?;
        let pivot_vocab = vocab(&p.1);
        let mut rows = Vec::new();
        for (lang, l) in shards.iter().filter(|(l, _)| *l != pivot) {
            for (layer, shares) in lens_shares(&pivot_vocab, &vocab(l), &l.top1).into_iter().enumerate() {
                rows.push(LensRow {
                    language: lang.clone(),
                    layer: layer as i32,
                    sentences: l.top1.len() as i32,
                    shares,
                });
            }
        }
        Ok(Output { table: lens_table(&rows)?, meta: serde_json::json!({"pivot": pivot}) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counted by hand: pivot vocabulary {1, 2, 3}, the language's {3, 4, 5}; two sentences,
    /// two hidden states. State 0's tokens: 1 4 | 4 9 → pivot 1, language 2, neither 1.
    /// State 1's: 1 2 | 3 1 → pivot 3, shared 1.
    #[test]
    fn shares_count_each_position_by_vocabulary() {
        let pivot: HashSet<i32> = [1, 2, 3].into();
        let lang: HashSet<i32> = [3, 4, 5].into();
        let top1 = vec![vec![vec![1, 4], vec![1, 2]], vec![vec![4, 9], vec![3, 1]]];
        let s = lens_shares(&pivot, &lang, &top1);
        assert_eq!(s[0], Shares { positions: 4, pivot: 0.25, language: 0.5, shared: 0.0, other: 0.25 });
        assert_eq!(s[1], Shares { positions: 4, pivot: 0.75, language: 0.0, shared: 0.25, other: 0.0 });
    }
}
