//! `mexa tokenize`: the ids and pieces a model's tokenizer gives a text, a file or a corpus
//! language, exactly as `embed` would feed them to the model; with `--compare`, the first
//! difference from another tokenizer.json per sentence.
use anyhow::{bail, Result};
use clap::Args;
use mexa_model::{BosPolicy, LoadOptions, TextTokenizer};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
What it shows is what `embed` feeds the model: the same tokenizer (the model folder's
tokenizer.json; for a GGUF, a tokenizer.json given with --tokenizer or lying beside it, else
the GGUF's own tokenizer rebuilt from its metadata) and the same BOS/EOS convention.

Reach for it when a language scores oddly: a language split into many more tokens than
English, byte pieces (<0xE1>, Ã) where words should be, or [UNK] everywhere, means the model
barely knows its script.

Examples:
  mexa tokenize model.gguf 'Hello world'
  mexa tokenize models/gemma3-270m --file sentences.txt --limit 5
  mexa tokenize model.gguf --corpus data/sib200 --language amh_Ethi --split dev --limit 3
  mexa tokenize model.gguf 'Cửa Việt' --compare original/tokenizer.json

Output: per sentence its number, token count and text, then its ids and pieces (`▁` and `Ġ`
mark a space, `##` a word's continuation, <0x..> a raw byte); a total at the end. With
--compare, each sentence also says `same` or where the two tokenizers first differ, and the
exit status is 1 when any sentence differs (0 when none does), as `diff` does.";

#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub struct TokenizeArgs {
    /// The model: a GGUF file, a folder with config.json and tokenizer.json, or a folder
    /// holding one .gguf (and optionally its tokenizer.json).
    model: PathBuf,
    /// A text to tokenize (one sentence; quote it).
    #[arg(conflicts_with_all = ["file", "corpus"])]
    text: Option<String>,
    /// A UTF-8 file of one sentence per line (as corpus files are read: invalid UTF-8 or an
    /// empty line is an error naming the line).
    #[arg(long, conflicts_with = "corpus")]
    file: Option<PathBuf>,
    /// A corpus (a folder of <language>.txt files, FLORES-style or id-keyed TSV folders like
    /// SIB-200), as load_corpus reads it; needs --language.
    #[arg(long, requires = "language")]
    corpus: Option<PathBuf>,
    /// The corpus language to tokenize (its code in the corpus, e.g. fra_Latn).
    #[arg(long, requires = "corpus")]
    language: Option<String>,
    /// The corpus split (FLORES `dev`/`devtest`, SIB-200 `train`/`dev`/`test`).
    #[arg(long, default_value = "devtest")]
    split: String,
    /// At most this many sentences (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Use this tokenizer.json instead of the model's own (as embed's `tokenizer` parameter).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// BOS: as the tokenizer says (auto), always or never (as embed's `bos` parameter).
    #[arg(long, default_value = "auto")]
    bos: BosPolicy,
    /// Also tokenize with this tokenizer.json and show, per sentence, the first token where
    /// the two differ.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Only the counts: one line per sentence (number, tokens, text) and the total.
    #[arg(long)]
    counts: bool,
}

/// The sentences the arguments name.
fn sentences(a: &TokenizeArgs) -> Result<Vec<String>> {
    let mut lines = if let Some(t) = &a.text {
        vec![t.clone()]
    } else if let Some(f) = &a.file {
        mexa_stages::corpus::read_lines(f)?
    } else if let (Some(c), Some(l)) = (&a.corpus, &a.language) {
        let langs = mexa_stages::corpus::load(c, &a.split, std::slice::from_ref(l), l, 0)?;
        match langs.into_iter().find(|t| &t.code == l) {
            Some(t) => t.lines,
            None => bail!("{}: no language `{l}` in this corpus", c.display()),
        }
    } else {
        bail!("give a TEXT, --file FILE, or --corpus PATH --language CODE (see mexa tokenize --help)");
    };
    if a.limit > 0 {
        lines.truncate(a.limit);
    }
    Ok(lines)
}

/// Ids and pieces of one sentence.
fn tokens(tok: &TextTokenizer, s: &str) -> Result<(Vec<i64>, Vec<String>)> {
    let ids = tok.encode(s)?;
    let pieces = ids.iter().map(|&i| tok.piece(i as u32).unwrap_or_else(|| format!("<id {i}?>"))).collect();
    Ok((ids, pieces))
}

/// "same", or where `a` and `b` first differ, with a few tokens of each from there.
fn first_difference(a: &[i64], pa: &[String], b: &[i64], pb: &[String]) -> Option<String> {
    if a == b {
        return None;
    }
    let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let show = |ids: &[i64], ps: &[String]| {
        let end = ids.len().min(at + 4);
        let items: Vec<String> = (at..end).map(|k| format!("{} {}", ids[k], ps[k])).collect();
        if items.is_empty() {
            "(ends)".to_string()
        } else {
            items.join(", ")
        }
    };
    Some(format!("first difference at token {}: model [{}] vs compared [{}]", at + 1, show(a, pa), show(b, pb)))
}

pub fn tokenize(a: TokenizeArgs) -> Result<i32> {
    let opts = LoadOptions { tokenizer: a.tokenizer.clone(), bos: a.bos, ..LoadOptions::default() };
    let (tok, from) = mexa_model::load_tokenizer(&a.model, &opts)?;
    let other = match &a.compare {
        Some(p) => Some(TextTokenizer::from_file(p, None, a.bos)?),
        None => None,
    };
    let lines = sentences(&a)?;
    println!("tokenizer: {from}");
    if let Some(p) = &a.compare {
        println!("compared with: {}", p.display());
    }
    let (mut total, mut differ) = (0usize, 0usize);
    for (n, s) in lines.iter().enumerate() {
        let (ids, pieces) = tokens(&tok, s)?;
        total += ids.len();
        println!("{}\t{} tokens\t{s}", n + 1, ids.len());
        if !a.counts {
            println!("  ids     {}", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" "));
            println!("  pieces  {}", pieces.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(" "));
        }
        if let Some(o) = &other {
            let (oi, op) = tokens(o, s)?;
            match first_difference(&ids, &pieces, &oi, &op) {
                None => println!("  compare same"),
                Some(d) => {
                    differ += 1;
                    println!("  compare {d}");
                }
            }
        }
    }
    let n = lines.len();
    println!("{n} sentences, {total} tokens ({:.1} per sentence)", total as f64 / n.max(1) as f64);
    if other.is_some() {
        println!("{differ} of {n} sentences differ from {}", a.compare.as_ref().expect("compare").display());
        return Ok(i32::from(differ > 0));
    }
    Ok(0)
}
