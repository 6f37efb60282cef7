//! `mexa show <align_instances node> --sentences LANGUAGE`: one language's parallel sentences
//! at one hidden state and pooling, with whether each retrieves its translation and, where it
//! does not, the text it retrieves instead (read from the corpus the embeddings came from).
use anyhow::{anyhow, bail, Result};
use clap::Args;
use mexa_pipeline::Table;
use mexa_stages::instances::{read_instances, InstanceRow};
use mexa_store::{Key, Store};
use std::collections::BTreeMap;

/// `show`'s per-sentence view.
#[derive(Args, Default)]
#[command(next_help_heading = "Sentence by sentence (an align_instances node)")]
pub struct SentenceArgs {
    /// One language of an align_instances node, sentence by sentence: which parallel pairs
    /// retrieve each other and, for those that do not, the sentence each side retrieves
    /// instead, with its text.
    #[arg(long, value_name = "LANGUAGE", conflicts_with_all = ["format", "rows"])]
    pub sentences: Option<String>,
    /// The hidden state to show (0 = the embedding output); default: the one where most
    /// sentences retrieve their translation.
    #[arg(long, requires = "sentences")]
    pub layer: Option<i32>,
    /// The pooling to show (`weighted`, `last`, …); needed when the node has several.
    #[arg(long, requires = "sentences")]
    pub pooling: Option<String>,
    /// List the sentences that retrieve their translation too (default: the misses only).
    #[arg(long, requires = "sentences")]
    pub all: bool,
}

/// Prints the view for `language` of the align_instances artifact `key`.
pub fn print(store: &Store, key: &Key, a: &SentenceArgs, language: &str) -> Result<()> {
    let m = store.manifest(key)?;
    if m.spec.stage != "align_instances" {
        bail!(
            "--sentences reads an align_instances node (per-sentence retrieval), and {} is a {} node; add one beside it, e.g.\n  hits:\n    kind: align_instances\n    inputs: {{embeddings: <your embed node>}}\nthen `mexa run` and `mexa show hits --sentences {language}`",
            m.label,
            m.spec.stage
        );
    }
    let (schema, batches) = mexa_pipeline::stage::read_stitched(store, key)?;
    let rows = read_instances(&Table::new(schema, batches))?;
    let languages: Vec<&str> = {
        let mut v: Vec<&str> = rows.iter().map(|r| r.language.as_str()).collect();
        v.dedup();
        v.sort();
        v.dedup();
        v
    };
    let pivot_of = m.meta.get("pivot").and_then(|p| p.as_str()).unwrap_or_default();
    if language == pivot_of {
        bail!(
            "{language} is the pivot of {}: each of the other languages ({}) is scored against it",
            m.label,
            languages.join(", ")
        );
    }
    if !languages.contains(&language) {
        // The same language in its corpus label (`swh` → `swh_Latn`), else the nearest spelling.
        let same: Vec<&str> = languages.iter().copied().filter(|l| l.split('_').next() == Some(language)).collect();
        let hint = match same.as_slice() {
            [one] => format!("did you mean `{one}`?"),
            _ => mexa_pipeline::error::suggest(language, languages.iter().copied()).unwrap_or_default(),
        };
        bail!("{} has no language `{language}` {hint}\n  it has: {}", m.label, languages.join(", "));
    }
    let mine: Vec<&InstanceRow> = rows.iter().filter(|r| r.language == language).collect();
    let poolings: Vec<&str> = {
        let mut v: Vec<&str> = mine.iter().map(|r| r.pooling.name()).collect();
        v.sort();
        v.dedup();
        v
    };
    let pooling = match (&a.pooling, poolings.as_slice()) {
        (Some(p), _) if poolings.contains(&p.as_str()) => p.clone(),
        (Some(p), _) => bail!("{} has no pooling `{p}` for {language}; it has: {}", m.label, poolings.join(", ")),
        (None, [one]) => one.to_string(),
        (None, _) => bail!("{} has several poolings ({}): choose one with --pooling", m.label, poolings.join(", ")),
    };
    // [layer] → sentences in id order.
    let mut by_layer: BTreeMap<i32, Vec<&InstanceRow>> = BTreeMap::new();
    for r in mine.iter().filter(|r| r.pooling.name() == pooling) {
        by_layer.entry(r.layer).or_default().push(r);
    }
    for v in by_layer.values_mut() {
        v.sort_by_key(|r| r.sentence_id);
    }
    let hits = |v: &[&InstanceRow]| v.iter().filter(|r| r.outcome.mexa()).count();
    let last = *by_layer.keys().last().ok_or_else(|| anyhow!("{} has no rows for {language}", m.label))?;
    let layer = match a.layer {
        Some(l) if by_layer.contains_key(&l) => l,
        Some(l) => bail!("{} has hidden states 0..={last}; --layer {l} is not one of them", m.label),
        // The most hits; the earliest such layer on a tie.
        None => *by_layer.iter().max_by(|x, y| hits(x.1).cmp(&hits(y.1)).then(y.0.cmp(x.0))).map(|(l, _)| l).unwrap(),
    };
    let pairs = &by_layer[&layer];
    let pivot = m.meta.get("pivot").and_then(|p| p.as_str()).unwrap_or("pivot").to_string();
    let texts = corpus_texts(store, &m.spec.inputs);
    let text = |lang: &str, id: u32| -> String {
        match texts.as_ref().ok().and_then(|t| t.get(lang)).and_then(|v| v.get(id as usize)) {
            Some(s) => format!("\"{}\"", mexa_report::clip(s, 160)),
            None => "(text not in this store)".into(),
        }
    };
    let n = pairs.len();
    let count = |f: &dyn Fn(&InstanceRow) -> bool| pairs.iter().filter(|r| f(r)).count();
    println!("{} — {language} against {pivot}, {pooling} pooling, hidden state {layer} of 0..={last}", m.label);
    println!(
        "{} of {n} sentences retrieve their translation both ways (μ = {:.3}); {} pivot → {language}, {} {language} → pivot",
        hits(pairs),
        hits(pairs) as f64 / n.max(1) as f64,
        count(&|r| r.outcome.row),
        count(&|r| r.outcome.col),
    );
    if a.layer.is_none() {
        println!("(the hidden state where most sentences retrieve their translation; --layer N shows another)");
    }
    if let Err(e) = &texts {
        println!("(no texts: {e:#})");
    }
    for r in pairs.iter().filter(|r| a.all || !r.outcome.mexa()) {
        let o = &r.outcome;
        let id = r.sentence_id as u32;
        println!(
            "\n#{id} {}  cosine {:.3} (mean with the other sentences {:.3})",
            if o.mexa() { "✓" } else { "✗" },
            o.cosine,
            o.other_cosine
        );
        println!("  {language}: {}", text(language, id));
        println!("  {pivot}: {}", text(&pivot, id));
        if !o.col {
            println!(
                "  {language} → {pivot} retrieves #{} instead: {}",
                o.language_retrieves,
                text(&pivot, o.language_retrieves)
            );
        }
        if !o.row {
            println!(
                "  {pivot} → {language} retrieves #{} instead: {}",
                o.pivot_retrieves,
                text(language, o.pivot_retrieves)
            );
        }
    }
    // A hub: one pivot sentence that many misses retrieve (typical of anisotropic embeddings).
    let mut retrieved: BTreeMap<u32, usize> = BTreeMap::new();
    for r in pairs.iter().filter(|r| !r.outcome.col) {
        *retrieved.entry(r.outcome.language_retrieves).or_default() += 1;
    }
    if let Some((&id, &k)) = retrieved.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0))).filter(|(_, &k)| k >= 3) {
        // Centring helps when sentences are alike to begin with: the rule `correlate`'s floor
        // diagnosis uses (mean cosine of non-parallel pairs ≥ 0.5).
        let others = pairs.iter().map(|r| r.outcome.other_cosine).sum::<f64>() / n.max(1) as f64;
        let why = if others >= mexa_stages::correlate::ANISOTROPY_HIGH {
            format!("; the mean cosine of non-parallel pairs is {others:.2} (anisotropy): `centering: true` on align/align_instances removes each language's mean")
        } else {
            String::new()
        };
        println!("\nhub: {pivot} #{id} is what {k} {language} sentences retrieve instead of their translation{why}");
    }
    if !a.all && hits(pairs) == n {
        println!("\nevery sentence retrieves its translation (--all lists them)");
    }
    Ok(())
}

/// The corpus behind an align_instances node (its embeddings' `corpus` input), by language.
fn corpus_texts(store: &Store, inputs: &BTreeMap<String, Vec<Key>>) -> Result<BTreeMap<String, Vec<String>>> {
    let first = |inputs: &BTreeMap<String, Vec<Key>>, slot: &str| -> Result<Key> {
        inputs.get(slot).and_then(|k| k.first()).cloned().ok_or_else(|| anyhow!("no `{slot}` input"))
    };
    let embed = store.manifest(&first(inputs, "embeddings")?)?;
    let corpus = first(&embed.spec.inputs, "corpus")?;
    let (schema, batches) = mexa_pipeline::stage::read_stitched(store, &corpus)?;
    Ok(mexa_stages::corpus::read_corpus(&Table::new(schema, batches))?.1)
}
