//! `load_corpus`: a line-parallel corpus (one file per language, line i parallel) into a
//! table of (language, iso639_3, sentence_id, text).
use crate::util::{col_i32, col_str, schema, utf8_col};
use anyhow::{bail, Context, Result};
use arrow::array::{Array, ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use mexa_analysis::{did_you_mean, Lang};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Stage, Table};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct LoadCorpus;

mexa_pipeline::stage_params! {
    /// `load_corpus`'s parameters.
    pub(crate) struct Params {
        /// corpus directory or TSV/Parquet file
        path: PathBuf,
        /// language codes or globs (`*_Latn`); empty: all
        languages: Vec<String> = vec![],
        /// the language every other is aligned to
        pivot: String = "eng_Latn",
        /// keep the first n sentences (0: all)
        limit: usize = 0,
        /// which part to read when the corpus has several: FLORES-200's dev/devtest folders,
        /// SIB-200's train/dev/test files
        split: String = "devtest",
    }
}

/// Extensions of per-language files; FLORES-200 uses `.dev` and `.devtest`.
const EXTS: &[&str] = &["txt", "dev", "devtest"];

/// One language's sentences and where they came from.
#[derive(Debug)]
pub struct LangText {
    pub code: String,
    pub file: PathBuf,
    pub lines: Vec<String>,
}

/// The longest line accepted as one sentence (FLORES and UDHR lines are under 2 KB): a file
/// that is not sentence-per-line must not be tokenized as one giant sentence.
pub const MAX_SENTENCE_BYTES: usize = 100_000;

/// Reads a UTF-8 file of one sentence per line; names file and line for every problem.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read (a dangling symlink?)", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    // Streamed with a bound per line: a huge file with no line breaks (a binary, a sparse
    // file) costs one line's bound of memory and fails at its first line.
    let mut lines = Vec::new();
    mexa_core::file::for_each_line(path, MAX_SENTENCE_BYTES, "corpus files hold one sentence per line", |n, raw| {
        let line = std::str::from_utf8(raw).map_err(|e| {
            std::io::Error::other(format!(
                "{}:{n}: invalid UTF-8 at byte {} of the line",
                path.display(),
                e.valid_up_to()
            ))
        })?;
        lines.push(line.to_string());
        Ok(())
    })?;
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            bail!("{}:{}: empty line (every line is a sentence, parallel across files)", path.display(), i + 1);
        }
    }
    Ok(lines)
}

/// A tab-separated file with a header line: the header's cells, and each further line's cells
/// with its line number. A line of another width is an error naming file and line.
pub fn read_tsv(path: &Path) -> Result<(Vec<String>, Vec<(usize, Vec<String>)>)> {
    let lines = read_lines(path)?;
    let at = |i: usize| format!("{}:{}", path.display(), i + 1);
    let header: Vec<String> = match lines.first() {
        Some(h) => tsv_fields(h).map_err(|e| anyhow::anyhow!("{}: {e}", at(0)))?,
        None => vec![],
    };
    let mut rows = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate().skip(1) {
        let cells = tsv_fields(l).map_err(|e| anyhow::anyhow!("{}: {e}", at(i)))?;
        if cells.len() != header.len() {
            bail!("{}:{}: {} fields, the header has {}", path.display(), i + 1, cells.len(), header.len());
        }
        rows.push((i + 1, cells));
    }
    Ok((header, rows))
}

/// One TSV line's fields, a field that starts with `"` read as quoted the way pandas'
/// `read_csv(sep="\t")` reads SIB-200's files (and Python's csv module writes them): the
/// quotes around it removed and `""` inside read as `"`. A quoted field must close before
/// the line ends.
pub fn tsv_fields(line: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        let Some(quoted) = rest.strip_prefix('"') else {
            let (field, tail) = rest.split_once('\t').map_or((rest, None), |(f, t)| (f, Some(t)));
            out.push(field.to_string());
            match tail {
                Some(t) => rest = t,
                None => return Ok(out),
            }
            continue;
        };
        let mut field = String::new();
        let mut chars = quoted.char_indices();
        let after = loop {
            match chars.next() {
                Some((i, '"')) if quoted[i + 1..].starts_with('"') => {
                    field.push('"');
                    chars.next();
                }
                Some((i, '"')) => break &quoted[i + 1..],
                Some((_, c)) => field.push(c),
                None => bail!("a quoted field does not close before the end of the line (field {})", out.len() + 1),
            }
        };
        out.push(field);
        match after.strip_prefix('\t') {
            Some(t) => rest = t,
            None if after.is_empty() => return Ok(out),
            None => bail!("text after a quoted field's closing quote (field {})", out.len()),
        }
    }
}

/// Matches a language code against a pattern with `*` and `?`.
pub fn glob_match(pat: &str, s: &str) -> bool {
    fn m(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('*'), _) => m(&p[1..], s) || (!s.is_empty() && m(p, &s[1..])),
            (Some('?'), Some(_)) => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(&pat.chars().collect::<Vec<_>>(), &s.chars().collect::<Vec<_>>())
}

/// The per-language files of a corpus directory: `<code>.<ext>`, or FLORES's `<split>/`.
fn language_files(dir: &Path, split: &str) -> Result<Vec<(String, PathBuf)>> {
    let dir = if dir.join(split).is_dir() { dir.join(split) } else { dir.to_path_buf() };
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let p = e?.path();
        let (Some(stem), Some(ext)) = (p.file_stem().and_then(|s| s.to_str()), p.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        // Hidden files are not read, as the corpus's content hash (its key) skips them.
        if EXTS.contains(&ext) && !stem.starts_with('.') {
            if !p.is_file() {
                bail!("{}: not a readable regular file (a dangling symlink, a folder or a FIFO?)", p.display());
            }
            out.push((stem.to_string(), p.clone()));
        }
    }
    out.sort();
    for w in out.windows(2) {
        if w[0].0 == w[1].0 {
            bail!(
                "{}: language `{}` has two files, {} and {}; keep one",
                dir.display(),
                w[0].0,
                w[0].1.display(),
                w[1].1.display()
            );
        }
    }
    if out.is_empty() {
        bail!("{}: no per-language files (*.txt, *.dev, *.devtest)", dir.display());
    }
    Ok(out)
}

/// Reads a table file (TSV with a header, or Parquet) with one column per language.
fn read_columns(path: &Path) -> Result<Vec<LangText>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "parquet" {
        let (_, batches) = mexa_store::read_parquet(path)?;
        let mut cols: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for b in &batches {
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                let a = c
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .with_context(|| format!("{}: column `{}` is not text", path.display(), f.name()))?;
                let v = cols.entry(f.name().clone()).or_default();
                for i in 0..a.len() {
                    if a.is_null(i) || a.value(i).trim().is_empty() {
                        bail!("{}: column `{}`, row {}: empty sentence", path.display(), f.name(), v.len() + 1);
                    }
                    v.push(a.value(i).to_string());
                }
            }
        }
        return Ok(cols.into_iter().map(|(code, lines)| LangText { code, file: path.to_path_buf(), lines }).collect());
    }
    let (header, rows) = read_tsv(path)?;
    let mut cols: Vec<Vec<String>> = vec![vec![]; header.len()];
    for (line, cells) in rows {
        for (c, v) in cells.into_iter().enumerate() {
            if v.trim().is_empty() {
                bail!("{}:{line}: empty sentence in column `{}`", path.display(), header[c]);
            }
            cols[c].push(v);
        }
    }
    Ok(header.into_iter().zip(cols).map(|(code, lines)| LangText { code, file: path.to_path_buf(), lines }).collect())
}

/// ISO 639-3 code of a corpus language label: FLORES `xxx_Scrp` → `xxx`; UDHR codes via the
/// corpus's languages.tsv when present; a plain three-letter code as is.
pub fn iso639_3(code: &str, table: &BTreeMap<String, String>) -> String {
    if let Some(v) = table.get(code) {
        return v.clone();
    }
    let head = code.split(['_', '-']).next().unwrap_or(code);
    if head.len() == 3 && head.chars().all(|c| c.is_ascii_lowercase()) {
        head.to_string()
    } else {
        String::new()
    }
}

/// The per-language files of an id-keyed corpus (SIB-200's layout: `<lang>/<split>.tsv` with an
/// id column and a text column), or `None` when the folder is not laid out that way.
fn id_keyed_files(dir: &Path, split: &str) -> Result<Option<Vec<(String, PathBuf)>>> {
    let mut langs = Vec::new();
    let mut splits = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        let p = e?.path();
        if !p.is_dir() {
            continue;
        }
        let Some(code) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        // Hidden entries are not read, as the corpus's content hash (its key) skips them.
        if code.starts_with('.') {
            continue;
        }
        let mut has_tsv = false;
        for f in std::fs::read_dir(&p).with_context(|| format!("{}: cannot list", p.display()))? {
            let f = f?.path();
            if f.extension().is_some_and(|x| x == "tsv") {
                has_tsv = true;
                if let Some(s) = f.file_stem().and_then(|s| s.to_str()) {
                    splits.insert(s.to_string());
                }
            }
        }
        if has_tsv {
            langs.push((code, p.join(format!("{split}.tsv"))));
        }
    }
    if langs.is_empty() {
        return Ok(None);
    }
    if !splits.contains(split) {
        bail!(
            "{}: an id-keyed corpus (<language>/<split>.tsv) without a `{split}` split; set `split` to one of: {}",
            dir.display(),
            splits.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    langs.sort();
    Ok(Some(langs))
}

/// One language's rows of an id-keyed TSV: (id, text, line number), with a located error for a
/// missing column, a row of the wrong width, an empty text or a repeated id.
fn read_id_rows(path: &Path) -> Result<Vec<(String, String, usize)>> {
    if !path.is_file() {
        bail!("{}: missing (every language folder needs the same split files)", path.display());
    }
    let (header, lines) = read_tsv(path)?;
    let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.trim()));
    let (Some(id_col), Some(text_col)) = (col(&["index_id", "id", "sentence_id"]), col(&["text", "sentence"])) else {
        bail!(
            "{}:1: expected an id column (index_id or id) and a text column, found: {}",
            path.display(),
            header.join(", ")
        );
    };
    let mut rows = Vec::with_capacity(lines.len());
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (line, mut cells) in lines {
        let text = std::mem::take(&mut cells[text_col]);
        let id = cells[id_col].trim().to_string();
        if text.trim().is_empty() {
            bail!("{}:{line}: empty text", path.display());
        }
        if let Some(first) = seen.insert(id.clone(), line) {
            bail!("{}:{line}: id `{id}` again (first on line {first})", path.display());
        }
        rows.push((id, text, line));
    }
    Ok(rows)
}

/// Joins id-keyed languages on the pivot's ids, in the pivot's order. An id missing from a
/// language, or one the pivot does not have, is an error naming both places.
fn join_by_id(files: &[(String, PathBuf)], pivot: &str) -> Result<Vec<LangText>> {
    let Some((_, pivot_file)) = files.iter().find(|(c, _)| c == pivot) else { return Ok(vec![]) };
    let pivot_rows = read_id_rows(pivot_file)?;
    let mut out = Vec::new();
    for (code, file) in files {
        if code == pivot {
            out.push(LangText {
                code: code.clone(),
                file: file.clone(),
                lines: pivot_rows.iter().map(|r| r.1.clone()).collect(),
            });
            continue;
        }
        let rows = read_id_rows(file)?;
        let by_id: std::collections::HashMap<&str, (&str, usize)> =
            rows.iter().map(|(id, t, l)| (id.as_str(), (t.as_str(), *l))).collect();
        let mut lines = Vec::with_capacity(pivot_rows.len());
        for (id, _, pl) in &pivot_rows {
            match by_id.get(id.as_str()) {
                Some((t, _)) => lines.push(t.to_string()),
                None => {
                    bail!("{}: no row with id `{id}` (the pivot has it: {}:{pl})", file.display(), pivot_file.display())
                }
            }
        }
        if rows.len() != pivot_rows.len() {
            let pivot_ids: std::collections::HashSet<&str> = pivot_rows.iter().map(|r| r.0.as_str()).collect();
            let (id, _, l) = rows.iter().find(|r| !pivot_ids.contains(r.0.as_str())).expect("an extra id");
            bail!("{}:{l}: id `{id}` is not in the pivot's {}", file.display(), pivot_file.display());
        }
        out.push(LangText { code: code.clone(), file: file.clone(), lines });
    }
    Ok(out)
}

/// How a corpus is laid out: where a language's sentences are, for errors that name the file
/// (or column) a missing language would need.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// One file per language, `<dir>/<code>.<ext>` (UDHR: `.txt`).
    Files { dir: PathBuf, ext: String },
    /// FLORES-200: `<dir>/<split>/<code>.<split>`.
    Flores { dir: PathBuf, split: String },
    /// SIB-200: `<dir>/<code>/<split>.tsv`, joined on an id column.
    IdKeyed { dir: PathBuf, split: String },
    /// One TSV or Parquet file with a column per language.
    Columns { file: PathBuf },
}

impl Layout {
    /// What a language `code` would need, in this layout's words.
    pub fn needs(&self, code: &str) -> String {
        match self {
            Layout::Files { dir, ext } => {
                format!("one file per language: no {}", dir.join(format!("{code}.{ext}")).display())
            }
            Layout::Flores { dir, split } => {
                format!(
                    "FLORES-200's <split>/<code>.<split>: no {}",
                    dir.join(split).join(format!("{code}.{split}")).display()
                )
            }
            Layout::IdKeyed { dir, split } => {
                format!("SIB-200's <code>/<split>.tsv: no {}", dir.join(code).join(format!("{split}.tsv")).display())
            }
            Layout::Columns { file } => format!("a column per language: no column `{code}` in {}", file.display()),
        }
    }
}

/// The first line of a text file (a table's header), read without reading the rest.
fn first_line(path: &Path) -> Result<String> {
    use std::io::{BufRead, Read};
    let f = mexa_core::file::open(path, mexa_core::FileKind::Data)?;
    let mut line = Vec::new();
    std::io::BufReader::new(f.take(MAX_SENTENCE_BYTES as u64))
        .read_until(b'\n', &mut line)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let line =
        String::from_utf8(line).map_err(|_| anyhow::anyhow!("{}:1: invalid UTF-8 in the header", path.display()))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// A corpus's layout and language codes, from folder and file names or a table's header (a
/// Parquet file's schema): what planning checks `languages` and `pivot` against, without
/// reading a sentence.
pub fn corpus_languages(path: &Path, split: &str) -> Result<(Layout, Vec<String>)> {
    if !path.is_dir() {
        let file = path.to_path_buf();
        let codes: Vec<String> = if path.extension().is_some_and(|e| e == "parquet") {
            let f = mexa_core::file::open(path, mexa_core::FileKind::Data)?;
            let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
            b.schema().fields().iter().map(|f| f.name().clone()).collect()
        } else {
            first_line(path)?.split('\t').map(str::to_string).collect()
        };
        return Ok((Layout::Columns { file }, codes));
    }
    if let Some(files) = id_keyed_files(path, split)? {
        let layout = Layout::IdKeyed { dir: path.to_path_buf(), split: split.to_string() };
        return Ok((layout, files.into_iter().map(|(c, _)| c).collect()));
    }
    let files = language_files(path, split)?;
    let layout = if path.join(split).is_dir() {
        Layout::Flores { dir: path.to_path_buf(), split: split.to_string() }
    } else {
        let ext = files[0].1.extension().and_then(|e| e.to_str()).unwrap_or("txt").to_string();
        Layout::Files { dir: path.to_path_buf(), ext }
    };
    Ok((layout, files.into_iter().map(|(c, _)| c).collect()))
}

/// Checks `languages` and `pivot` against the corpus's own codes: a code it does not have (or a
/// pattern that matches none) is an error naming the parameter, the file or column the
/// corpus's layout would need, and the codes meant (the same code in another case, the same
/// ISO 639-3 language in FLORES-200 / ISO / UDHR spelling, else the nearest spelling).
pub fn check_languages(path: &Path, split: &str, languages: &[String], pivot: &str) -> Result<()> {
    let (layout, codes) = corpus_languages(path, split)?;
    let table = if path.is_dir() { udhr_table(path) } else { BTreeMap::new() };
    let corpus: Vec<Lang> = codes
        .iter()
        .map(|c| Lang::parse(c, table.get(c).map(String::as_str).or(mexa_core::language::iso639_3(c))))
        .collect();
    let hint = |code: &str| {
        let near = did_you_mean(&Lang::parse(code, mexa_core::language::iso639_3(code)), &corpus);
        match near.len() {
            0 => mexa_pipeline::error::suggest(code, codes.iter().map(String::as_str)).unwrap_or_else(|| {
                let some: Vec<&str> = codes.iter().take(12).map(String::as_str).collect();
                let more =
                    if codes.len() > some.len() { format!(", … ({} in all)", codes.len()) } else { String::new() };
                format!("it has: {}{more}", some.join(", "))
            }),
            1 => format!("did you mean `{}`?", near[0]),
            _ => {
                format!("did you mean one of {}?", near.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))
            }
        }
    };
    let blame = |param: &str, message: String| {
        Err(anyhow::Error::new(mexa_pipeline::ParamError { param: param.to_string(), message }))
    };
    let not_in = |code: &str| format!("`{code}` is not in the corpus {} ({})", path.display(), layout.needs(code));
    // Every code asked for that the corpus lacks: the first in full, the others with their hints.
    let absent: Vec<&String> = languages.iter().filter(|p| !p.contains(['*', '?']) && !codes.contains(p)).collect();
    if let Some((first, rest)) = absent.split_first() {
        let mut message = format!("{}; {}", not_in(first), hint(first));
        if !rest.is_empty() {
            let others: Vec<String> = rest.iter().map(|c| format!("`{c}` ({})", hint(c))).collect();
            message.push_str(&format!(" Also not in it: {}", others.join(", ")));
        }
        return blame("languages", message);
    }
    if let Some(p) = languages.iter().find(|p| p.contains(['*', '?']) && !codes.iter().any(|c| glob_match(p, c))) {
        return blame(
            "languages",
            format!("`{p}` matches no language of the corpus {} ({} languages)", path.display(), codes.len()),
        );
    }
    if !codes.iter().any(|c| c == pivot) {
        return blame("pivot", format!("{}; {}", not_in(pivot), hint(pivot)));
    }
    Ok(())
}

/// Loads, selects and checks a corpus.
pub fn load(path: &Path, split: &str, languages: &[String], pivot: &str, limit: usize) -> Result<Vec<LangText>> {
    let wanted = |code: &str| code == pivot || languages.is_empty() || languages.iter().any(|p| glob_match(p, code));
    let id_keyed = if path.is_dir() { id_keyed_files(path, split)? } else { None };
    let mut langs: Vec<LangText> = if let Some(files) = id_keyed {
        let selected: Vec<(String, PathBuf)> = files.into_iter().filter(|(c, _)| wanted(c)).collect();
        join_by_id(&selected, pivot)?
    } else if path.is_dir() {
        let mut v = Vec::new();
        for (code, file) in language_files(path, split)? {
            if code == pivot || languages.is_empty() || languages.iter().any(|p| glob_match(p, &code)) {
                v.push(LangText { lines: read_lines(&file)?, code, file });
            }
        }
        v
    } else {
        read_columns(path)?
            .into_iter()
            .filter(|l| l.code == pivot || languages.is_empty() || languages.iter().any(|p| glob_match(p, &l.code)))
            .collect()
    };
    // Planning checked the codes (check_languages); this holds if the corpus changed since.
    let Some(pivot_lang) = langs.iter().position(|l| l.code == pivot) else {
        check_languages(path, split, languages, pivot)?;
        bail!("{}: the pivot language `{pivot}` is missing", path.display());
    };
    if languages.iter().any(|p| !p.contains(['*', '?']) && !langs.iter().any(|l| &l.code == p)) {
        check_languages(path, split, languages, pivot)?;
    }
    let n_pivot = langs[pivot_lang].lines.len();
    if n_pivot == 0 {
        bail!("{}: the pivot {} has no sentences", path.display(), langs[pivot_lang].file.display());
    }
    // A corpus of the pivot alone is an error unless asked for by name (a probe's training
    // corpus: `languages: [<pivot>]`).
    let only_pivot_asked = !languages.is_empty() && languages.iter().all(|l| l == pivot);
    if langs.len() < 2 && !only_pivot_asked {
        bail!("{}: only the pivot `{pivot}` was found; a corpus needs at least one other language (or ask for the pivot alone: `languages: [{pivot}]`)", path.display());
    }
    for l in &langs {
        if l.lines.len() != n_pivot {
            bail!(
                "{}: {} lines, but the pivot {} has {n_pivot}: files must be line-parallel (ragged corpus)",
                l.file.display(),
                l.lines.len(),
                langs[pivot_lang].file.display()
            );
        }
    }
    if limit > 0 {
        for l in langs.iter_mut() {
            l.lines.truncate(limit);
        }
    }
    // Pivot first, then the rest by code.
    langs.sort_by(|a, b| (a.code != pivot, &a.code).cmp(&(b.code != pivot, &b.code)));
    Ok(langs)
}

fn udhr_table(dir: &Path) -> BTreeMap<String, String> {
    let Ok(text) = mexa_core::file::read_text(&dir.join("languages.tsv"), mexa_core::FileKind::Data) else {
        return BTreeMap::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

impl Stage for LoadCorpus {
    fn kind(&self) -> &'static str {
        "load_corpus"
    }
    fn version(&self) -> u32 {
        // 2: TSV fields in quotes are unquoted as pandas reads them (SIB-200 has 6 quoted
        // English test sentences, 41 training ones; version 1 fed the quotes to the model).
        2
    }
    fn doc(&self) -> &'static str {
        "A parallel corpus: a directory with one file per language (<code>.txt, FLORES-200's dev/ or devtest/ with .dev/.devtest), SIB-200's <language>/<split>.tsv files joined on their id column, or one TSV/Parquet file with a column per language"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)?;
        let p = <Params as serde::Deserialize>::deserialize(params)?;
        check_languages(&p.path, &p.split, &p.languages, &p.pivot)
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let path = &p.path;
        let langs = load(path, &p.split, &p.languages, &p.pivot, p.limit)?;
        let table = if path.is_dir() { udhr_table(path) } else { BTreeMap::new() };
        let (mut lang, mut iso, mut id, mut text) = (vec![], vec![], vec![], vec![]);
        for l in &langs {
            let code = iso639_3(&l.code, &table);
            for (i, s) in l.lines.iter().enumerate() {
                lang.push(l.code.clone());
                iso.push(code.clone());
                id.push(i as i32);
                text.push(s.clone());
            }
        }
        let sch = schema(&[
            ("language", DataType::Utf8),
            ("iso639_3", DataType::Utf8),
            ("sentence_id", DataType::Int32),
            ("text", DataType::Utf8),
        ]);
        let cols: Vec<ArrayRef> = vec![utf8_col(lang), utf8_col(iso), Arc::new(Int32Array::from(id)), utf8_col(text)];
        let batch = RecordBatch::try_new(sch.clone(), cols)?;
        let meta = serde_json::json!({
            "pivot": p.pivot,
            "languages": langs.iter().map(|l| &l.code).collect::<Vec<_>>(),
            "sentences": langs.first().map(|l| l.lines.len()).unwrap_or(0),
        });
        Ok(Output { table: Table::new(sch, vec![batch]), meta })
    }
}

/// The corpus as (language → sentences in order), pivot first.
pub fn read_corpus(table: &Table) -> Result<(Vec<String>, BTreeMap<String, Vec<String>>)> {
    let mut order = Vec::new();
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in &table.batches {
        let (l, id, t) = (col_str(b, "language")?, col_i32(b, "sentence_id")?, col_str(b, "text")?);
        for i in 0..b.num_rows() {
            let v = map.entry(l.value(i).to_string()).or_insert_with(|| {
                order.push(l.value(i).to_string());
                vec![]
            });
            if id.value(i) as usize != v.len() {
                bail!("corpus table out of order at {} sentence {}", l.value(i), id.value(i));
            }
            v.push(t.value(i).to_string());
        }
    }
    Ok((order, map))
}

/// The pivot (first language) and each language's ISO 639-3 code from a corpus table.
pub fn read_corpus_iso(table: &Table) -> Result<(String, BTreeMap<String, String>)> {
    let mut pivot = None;
    let mut iso = BTreeMap::new();
    for b in &table.batches {
        let (l, c) = (col_str(b, "language")?, col_str(b, "iso639_3")?);
        for i in 0..b.num_rows() {
            pivot.get_or_insert_with(|| l.value(i).to_string());
            iso.entry(l.value(i).to_string()).or_insert_with(|| c.value(i).to_string());
        }
    }
    Ok((pivot.ok_or_else(|| anyhow::anyhow!("empty corpus"))?, iso))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SIB-200's quoted sentences read as pandas reads them; plain fields, empty fields and a
    /// trailing empty field as they are; an unclosed quote is an error, not a sentence.
    #[test]
    fn tsv_fields_unquote_like_pandas() {
        let f = |l: &str| tsv_fields(l).unwrap();
        assert_eq!(
            f("578\tscience/technology\t\"Cells are ... as \"\"the building blocks of life\"\".\""),
            ["578", "science/technology", "Cells are ... as \"the building blocks of life\"."]
        );
        assert_eq!(f("a\t\"x\ty\"\tb"), ["a", "x\ty", "b"], "a tab inside quotes");
        assert_eq!(f("a\t\tb\t"), ["a", "", "b", ""]);
        assert_eq!(f("say \"hi\"\tb"), ["say \"hi\"", "b"], "quotes inside an unquoted field stay");
        assert_eq!(f("\"\""), [""]);
        assert!(tsv_fields("a\t\"open").is_err());
        assert!(tsv_fields("\"x\"y\tz").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*_Latn", "fra_Latn"));
        assert!(!glob_match("*_Latn", "rus_Cyrl"));
        assert!(glob_match("c?n_*", "cmn_hans"));
        assert!(glob_match("*", "x"));
    }

    /// Planning's check of `languages` and `pivot` on each layout: what passes, and for what
    /// fails, the parameter blamed, the place the layout would need and the code meant.
    #[test]
    fn language_codes_are_checked_against_the_corpus_layout() {
        let d = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("sib/eng_Latn/dev.tsv", "index_id\ttext\n1\tone\n");
        write("sib/yor_Latn/dev.tsv", "index_id\ttext\n1\tookan\n");
        write("flores/devtest/eng_Latn.devtest", "one\n");
        write("flores/devtest/zho_Hant.devtest", "一\n");
        write("udhr/eng.txt", "one\n");
        write("udhr/mly_arab.txt", "satu\n");
        write("udhr/languages.tsv", "udhr\tiso639_3\tbcp47\neng\teng\ten\nmly_arab\tzlm\tzlm-Arab\n");
        write("t.tsv", "eng_Latn\tswh_Latn\none\tmoja\n");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let err = |dir: &str, split: &str, langs: &[&str], pivot: &str| {
            let e = check_languages(&d.path().join(dir), split, &s(langs), pivot).unwrap_err();
            let pe = e.downcast_ref::<mexa_pipeline::ParamError>().expect("blames a parameter");
            (pe.param.clone(), pe.message.replace(&d.path().display().to_string(), "D"))
        };
        check_languages(&d.path().join("sib"), "dev", &s(&["yor_Latn"]), "eng_Latn").unwrap();
        check_languages(&d.path().join("flores"), "devtest", &s(&["*_Hant"]), "eng_Latn").unwrap();
        check_languages(&d.path().join("udhr"), "devtest", &[], "eng").unwrap();
        check_languages(&d.path().join("t.tsv"), "devtest", &s(&["swh_Latn"]), "eng_Latn").unwrap();
        let (param, msg) = err("sib", "dev", &["yor"], "eng_Latn");
        assert_eq!(param, "languages");
        assert_eq!(msg, "`yor` is not in the corpus D/sib (SIB-200's <code>/<split>.tsv: no D/sib/yor/dev.tsv); did you mean `yor_Latn`?");
        let (param, msg) = err("flores", "devtest", &[], "eng");
        assert_eq!(param, "pivot");
        assert_eq!(msg, "`eng` is not in the corpus D/flores (FLORES-200's <split>/<code>.<split>: no D/flores/devtest/eng.devtest); did you mean `eng_Latn`?");
        assert!(err("flores", "devtest", &["cmn_Hant"], "eng_Latn").1.ends_with("did you mean `zho_Hant`?"));
        let (_, msg) = err("flores", "devtest", &["zho_Hant", "ENG_LATN", "cmn_hant", "zho"], "eng_Latn");
        assert!(msg.starts_with("`ENG_LATN` is not in the corpus"), "{msg}");
        assert!(
            msg.ends_with("did you mean `eng_Latn`? Also not in it: `cmn_hant` (did you mean `zho_Hant`?), `zho` (did you mean `zho_Hant`?)"),
            "{msg}"
        );
        assert!(err("flores", "devtest", &["*_Latm"], "eng_Latn").1.contains("`*_Latm` matches no language"));
        let (_, msg) = err("udhr", "devtest", &["zlm"], "eng");
        assert_eq!(
            msg,
            "`zlm` is not in the corpus D/udhr (one file per language: no D/udhr/zlm.txt); did you mean `mly_arab`?"
        );
        let (_, msg) = err("t.tsv", "devtest", &["sw"], "eng_Latn");
        assert_eq!(msg, "`sw` is not in the corpus D/t.tsv (a column per language: no column `sw` in D/t.tsv); did you mean `swh_Latn`?");
        assert!(err("t.tsv", "devtest", &["qqq"], "eng_Latn").1.ends_with("it has: eng_Latn, swh_Latn"));
    }

    #[test]
    fn iso_codes() {
        let t = BTreeMap::from([("cmn_hans".to_string(), "cmn".to_string())]);
        assert_eq!(iso639_3("fra_Latn", &t), "fra");
        assert_eq!(iso639_3("cmn_hans", &t), "cmn");
        assert_eq!(iso639_3("007", &t), "");
    }
}
