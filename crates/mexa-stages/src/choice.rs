//! `choice`: a model's own accuracy per language on a multiple-choice task, by the
//! log-likelihood of each answer as lm-evaluation-harness computes it ([`mexa_model::score`]).
//! One task today, XCOPA, with lm-eval's `xcopa` prompts exactly: the premise without its
//! final character, a space and the language's connector ("because"/"therefore"), each
//! choice after a space with its first letter lower-cased; `acc` is the argmax of the summed
//! log-probabilities, `acc_norm` of the sums divided by the choices' lengths in characters.
//! Languages are reported with FLORES-200 codes, so they join the corpus's languages exactly.
use crate::embed::{load_model, run_plan};
use crate::util::{f64_col, i32_col, schema, utf8_col};
use anyhow::{anyhow, bail, Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use mexa_metrics::probe::wilson;
use mexa_model::score::{encode_request, score, IdRequest, ScoreOptions, Scored};
use mexa_model::Model;
use mexa_model::{BosPolicy, DType};
use mexa_pipeline::{Ctx, InputSpec, Output, ParamSpec, Resources, Stage, Table};
use std::path::{Path, PathBuf};

pub struct Choice;

mexa_pipeline::stage_params! {
    /// `choice`'s parameters.
    struct Params {
        /// the decoder to score with (Llama family or Gemma)
        model: String as Model,
        /// the task's folder (XCOPA: <language>/test.<language>.jsonl and val.<language>.jsonl)
        data: PathBuf,
        /// the task's prompt format
        task: Task = Task::Xcopa,
        /// which items to score
        split: Split = Split::Test,
        /// task languages, as task codes (it) or FLORES-200 codes (ita_Latn); empty: all
        languages: Vec<String> = vec![],
        /// score the first n items per language (0: all)
        limit: usize = 0,
        /// solved examples before each item: the first k of the validation split (never the item
        /// itself); lm-eval's xcopa default is 0
        num_fewshot: usize = 0,
        /// a tokenizer.json to use instead of the model's
        tokenizer: Option<PathBuf> = None,
        /// weights and activations (f32 on CPU)
        dtype: DType as Enum(DType::NAMES) = DType::F32,
        /// BOS token: as the tokenizer says (lm-eval's choice for the models mexa loads), or forced
        bos: BosPolicy as Enum(BosPolicy::NAMES) = BosPolicy::Auto,
        /// auto (the CPU, or as few GPUs as hold the model), cpu, cuda:N, or a list over which
        /// the layers are split (cuda:0,cuda:1; cuda:* = every GPU)
        device: String = "auto"; execution,
        /// most padded tokens per forward
        batch_tokens: usize = 4096; execution,
        /// weights kept in their file's form (stored) or converted at load (dense); auto:
        /// stored for a GGUF or when dense weights exceed `memory`
        weights: crate::embed::WeightsMode = crate::embed::WeightsMode::Auto; execution,
        /// the memory the model may hold: auto (what the devices have free) or a size
        memory: String = "auto"; execution,
    }
    check(p) {
        crate::embed::check_model_settings(&p.device, &p.memory, p.batch_tokens)
    }
}

crate::embed::impl_model_params!(Params);

mexa_pipeline::param_enum! {
    /// A multiple-choice task's prompt format.
    pub enum Task { Xcopa = "xcopa" }
}

mexa_pipeline::param_enum! {
    /// Which items of a task to score.
    pub enum Split { Test = "test", Validation = "validation" }
}

/// XCOPA's languages: its code, the FLORES-200 code, and lm-eval's connectors (cause, effect).
pub const XCOPA: &[(&str, &str, &str, &str)] = &[
    ("et", "est_Latn", "sest", "seetõttu"),
    ("ht", "hat_Latn", "poukisa", "donk sa"),
    ("id", "ind_Latn", "karena", "maka"),
    ("it", "ita_Latn", "perché", "quindi"),
    ("qu", "quy_Latn", "imataq", "chaymi"),
    ("sw", "swh_Latn", "kwa sababu", "kwa hiyo"),
    ("ta", "tam_Taml", "காரணமாக", "எனவே"),
    ("th", "tha_Thai", "เพราะ", "ดังนั้น"),
    ("tr", "tur_Latn", "çünkü", "bu yüzden"),
    ("vi", "vie_Latn", "bởi vì", "vì vậy"),
    ("zh", "zho_Hans", "因为", "所以"),
];

/// One XCOPA item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub premise: String,
    pub choices: Vec<String>,
    /// `cause` or `effect`.
    pub question: String,
    pub label: usize,
}

/// Reads `<dir>/<code>/<split>.<code>.jsonl` (XCOPA's layout; `validation` is stored as `val`).
pub fn read_xcopa(dir: &Path, code: &str, split: Split) -> Result<Vec<Item>> {
    let file = match split {
        Split::Test => "test",
        Split::Validation => "val",
    };
    let path = dir.join(code).join(format!("{file}.{code}.jsonl"));
    let text = mexa_core::file::read_text(&path, mexa_core::FileKind::Data).with_context(|| {
        format!("{}: cannot read the XCOPA file (expected <data>/<language>/{file}.<language>.jsonl)", path.display())
    })?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let field = |k: &str| -> Result<String> {
            match v.get(k).and_then(|x| x.as_str()) {
                Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
                _ => bail!("{}: `{k}` is missing or empty (expected premise, choice1, choice2, question, label)", at()),
            }
        };
        let question = field("question")?;
        if question != "cause" && question != "effect" {
            bail!("{}: `question` is `{question}`; expected cause or effect", at());
        }
        let label = match v.get("label").and_then(|x| x.as_u64()) {
            Some(l @ (0 | 1)) => l as usize,
            _ => bail!("{}: `label` must be 0 or 1", at()),
        };
        items.push(Item {
            premise: field("premise")?,
            choices: vec![field("choice1")?, field("choice2")?],
            question,
            label,
        });
    }
    if items.is_empty() {
        bail!("{}: no items", path.display());
    }
    Ok(items)
}

/// lm-eval's `doc_to_text`: the premise without its last character (the full stop) and the
/// connector for the question.
pub fn xcopa_context(item: &Item, cause: &str, effect: &str) -> String {
    let p = item.premise.trim();
    let mut chars = p.chars();
    chars.next_back();
    format!("{} {}", chars.as_str(), if item.question == "cause" { cause } else { effect })
}

/// lm-eval's `convert_choice`: the first letter lower-cased.
pub fn xcopa_choice(choice: &str) -> String {
    let mut c = choice.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The context with `shots` solved examples before it (lm-eval's few-shot format: each
/// example's text, a space and its answer, separated by blank lines).
pub fn with_shots(context: String, shots: &[(String, String)]) -> String {
    let mut s = String::new();
    for (text, answer) in shots {
        s.push_str(&format!("{text} {answer}\n\n"));
    }
    s + &context
}

/// Which of several scores wins (the first of equal maxima, as numpy's argmax).
fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

impl Stage for Choice {
    fn kind(&self) -> &'static str {
        "choice"
    }
    fn version(&self) -> u32 {
        // 2: tokenizers exact at the edges (issue 24; see embed's version 4).
        2
    }
    fn doc(&self) -> &'static str {
        "A model's own accuracy per language on a multiple-choice task (XCOPA), by answer log-likelihood as lm-evaluation-harness computes it (its prompts; acc and acc_norm; the shared prompt run once for all choices); n and a 95% Wilson interval; FLORES-200 language codes; one shard per language"
    }
    fn params(&self) -> Vec<ParamSpec> {
        Params::specs()
    }
    fn inputs(&self) -> Vec<InputSpec> {
        vec![]
    }
    fn check_params(&self, params: &serde_json::Value) -> Result<()> {
        mexa_pipeline::check::<Params>(params)
    }
    fn resources(&self, params: &serde_json::Value) -> Result<Resources> {
        let p = <Params as serde::Deserialize>::deserialize(params)?;
        crate::embed::model_resources(&p.model_params(), 0)
    }
    fn release(&self, keep: &std::collections::BTreeSet<String>) {
        crate::embed::release_models(keep);
    }
    fn run(&self, ctx: &Ctx) -> Result<Output> {
        let p: Params = ctx.typed()?;
        let data = &p.data;
        let split = p.split;
        let (limit, shots) = (p.limit, p.num_fewshot);
        let wanted = &p.languages;
        let langs: Vec<_> = if wanted.is_empty() {
            XCOPA.to_vec()
        } else {
            wanted
                .iter()
                .map(|w| {
                    XCOPA.iter().find(|l| l.0 == w || l.1 == w).copied().ok_or_else(|| {
                        anyhow!(
                            "`languages`: `{w}` is not an XCOPA language (XCOPA has {})",
                            XCOPA.iter().map(|l| format!("{} ({})", l.0, l.1)).collect::<Vec<_>>().join(", ")
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        let opts = run_plan(&p.model_params(), true)?.load;
        let model_path = p.model.as_str();
        let score_opts = ScoreOptions { max_tokens: p.batch_tokens, packed: true };
        let mut shards = Vec::new();
        for &(code, flores, cause, effect) in &langs {
            let mut items = read_xcopa(data, code, split)?;
            if limit > 0 {
                items.truncate(limit);
            }
            let key = ctx.shard(flores, || {
                let examples = if shots > 0 { read_xcopa(data, code, Split::Validation)? } else { vec![] };
                let model = load_model(model_path, &opts)?;
                let m = model.lock().unwrap();
                ctx.progress.message(&format!("{flores} ({code}): {} items ({})", items.len(), m.architecture));
                let t = std::time::Instant::now();
                let prompts = Prompts { examples: &examples, split, shots, cause, effect };
                let (requests, lens) = prompts.requests(&m, &items, code)?;
                ctx.progress.set_length(requests.iter().map(|r| r.continuations.len()).sum::<usize>() as u64);
                let scored = score(&m, &requests, score_opts, |k| ctx.progress.inc(k as u64))?;
                let (right, right_norm, mut tokens) = tally(&items, &scored, &lens);
                tokens += requests.iter().map(|r| r.context.len()).sum::<usize>();
                let n = items.len();
                let secs = t.elapsed().as_secs_f64();
                ctx.progress.message(&format!("{flores}: {n} items, acc {:.3}, {tokens} tokens in {secs:.1}s ({:.0} tokens/s)", right as f64 / n as f64, tokens as f64 / secs.max(1e-9)));
                let (lo, hi) = wilson(right, n, 1.96);
                let sch = choice_schema();
                let b = RecordBatch::try_new(
                    sch.clone(),
                    vec![
                        utf8_col(vec![flores.to_string()]),
                        utf8_col(vec![code.to_string()]),
                        utf8_col(vec![p.task.name().to_string()]),
                        i32_col(vec![n as i32]),
                        f64_col(vec![right as f64 / n as f64]),
                        f64_col(vec![right_norm as f64 / n as f64]),
                        f64_col(vec![lo]),
                        f64_col(vec![hi]),
                    ],
                )?;
                Ok(Output { table: Table::new(sch, vec![b]), meta: serde_json::json!({"language": flores, "items": n, (mexa_pipeline::profile::META_TOKENS): tokens, "architecture": m.architecture}) })
            })?;
            shards.push((flores.to_string(), key));
            if ctx.cancelled() {
                bail!("cancelled");
            }
        }
        Ctx::shard_index(
            &shards,
            serde_json::json!({"task": p.task, "split": split, "num_fewshot": shots, "chance": 0.5}),
        )
    }
}

/// How one language's items become prompts: XCOPA's connectors and the few-shot examples.
struct Prompts<'a> {
    examples: &'a [Item],
    split: Split,
    shots: usize,
    cause: &'a str,
    effect: &'a str,
}

impl Prompts<'_> {
    /// Each item's encoded request (context, and each choice as a continuation) and its
    /// choices' lengths in characters (for acc_norm).
    fn requests(&self, m: &Model, items: &[Item], code: &str) -> Result<(Vec<IdRequest>, Vec<Vec<f64>>)> {
        let (mut requests, mut lens) = (Vec::with_capacity(items.len()), Vec::with_capacity(items.len()));
        for (i, item) in items.iter().enumerate() {
            // Few-shot examples: the first k validation items, skipping this item when the
            // split scored is the validation split itself.
            let demos: Vec<(String, String)> = self
                .examples
                .iter()
                .enumerate()
                .filter(|(j, _)| !(self.split == Split::Validation && *j == i))
                .take(self.shots)
                .map(|(_, e)| (xcopa_context(e, self.cause, self.effect), xcopa_choice(&e.choices[e.label])))
                .collect();
            let context = with_shots(xcopa_context(item, self.cause, self.effect), &demos);
            let choices: Vec<String> = item.choices.iter().map(|c| xcopa_choice(c)).collect();
            lens.push(choices.iter().map(|c| c.chars().count() as f64).collect::<Vec<_>>());
            let conts: Vec<String> = choices.iter().map(|c| format!(" {c}")).collect();
            requests.push(encode_request(m, &context, &conts).with_context(|| format!("{code} item {}", i + 1))?);
        }
        Ok((requests, lens))
    }
}

/// (right by acc, right by acc_norm, answer tokens scored); ties go to the first choice.
fn tally(items: &[Item], scored: &[Vec<Scored>], lens: &[Vec<f64>]) -> (usize, usize, usize) {
    let (mut right, mut right_norm, mut tokens) = (0usize, 0usize, 0usize);
    for ((item, s), len) in items.iter().zip(scored).zip(lens) {
        let lp: Vec<f64> = s.iter().map(|x| x.logprob).collect();
        let norm: Vec<f64> = lp.iter().zip(len).map(|(l, n)| l / n).collect();
        right += (argmax(&lp) == item.label) as usize;
        right_norm += (argmax(&norm) == item.label) as usize;
        tokens += s.iter().map(|x| x.tokens).sum::<usize>();
    }
    (right, right_norm, tokens)
}

/// The table of a `choice` node (one row per language, one shard each).
pub fn choice_schema() -> arrow::datatypes::SchemaRef {
    schema(&[
        ("language", DataType::Utf8),
        ("task_language", DataType::Utf8),
        ("task", DataType::Utf8),
        ("n", DataType::Int32),
        ("accuracy", DataType::Float64),
        ("accuracy_norm", DataType::Float64),
        ("ci_low", DataType::Float64),
        ("ci_high", DataType::Float64),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(premise: &str, q: &str) -> Item {
        Item {
            premise: premise.into(),
            choices: vec!["Era delicato.".into(), "Era piccolo.".into()],
            question: q.into(),
            label: 0,
        }
    }

    #[test]
    fn prompts_follow_lm_eval_xcopa() {
        // lm-eval: premise.strip()[:-1] + " " + connector; choices " " + first letter lowered.
        assert_eq!(
            xcopa_context(&item("L'oggetto era incartato nella plastica bollata. ", "cause"), "perché", "quindi"),
            "L'oggetto era incartato nella plastica bollata perché"
        );
        assert_eq!(
            xcopa_context(&item("Avevo svuotato le mie tasche.", "effect"), "perché", "quindi"),
            "Avevo svuotato le mie tasche quindi"
        );
        // A multi-byte final character is dropped whole.
        assert_eq!(xcopa_context(&item("我的身体投下了阴影。", "cause"), "因为", "所以"), "我的身体投下了阴影 因为");
        assert_eq!(xcopa_choice("Era delicato."), "era delicato.");
        assert_eq!(xcopa_choice("İyi."), "i̇yi.");
        assert_eq!(with_shots("Q because".into(), &[("A because".into(), "x.".into())]), "A because x.\n\nQ because");
    }

    #[test]
    fn ties_go_to_the_first_choice() {
        assert_eq!(argmax(&[-1.0, -1.0]), 0);
        assert_eq!(argmax(&[-2.0, -1.0]), 1);
    }

    #[test]
    fn bad_items_are_located() {
        let dir = std::env::temp_dir().join(format!("mexa-xcopa-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("it")).unwrap();
        std::fs::write(dir.join("it/test.it.jsonl"), "{\"premise\": \"A.\", \"choice1\": \"b.\", \"choice2\": \"c.\", \"question\": \"cause\", \"label\": 0}\n{\"premise\": \"A.\", \"choice1\": \"b.\", \"question\": \"cause\", \"label\": 1}\n").unwrap();
        let err = read_xcopa(&dir, "it", Split::Test).unwrap_err().to_string();
        assert!(err.contains("test.it.jsonl:2") && err.contains("choice2"), "{err}");
        std::fs::write(
            dir.join("it/test.it.jsonl"),
            "{\"premise\": \"A.\", \"choice1\": \"b.\", \"choice2\": \"c.\", \"question\": \"why\", \"label\": 0}\n",
        )
        .unwrap();
        assert!(read_xcopa(&dir, "it", Split::Test).unwrap_err().to_string().contains("cause or effect"));
        std::fs::write(
            dir.join("it/test.it.jsonl"),
            "{\"premise\": \"A.\", \"choice1\": \"b.\", \"choice2\": \"c.\", \"question\": \"cause\", \"label\": 2}\n",
        )
        .unwrap();
        assert!(read_xcopa(&dir, "it", Split::Test).unwrap_err().to_string().contains("0 or 1"));
        assert!(read_xcopa(&dir, "et", Split::Test).unwrap_err().to_string().contains("et/test.et.jsonl"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
