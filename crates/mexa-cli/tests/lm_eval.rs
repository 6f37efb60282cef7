//! lm-evaluation-harness as the source of task scores, end to end: a results folder that
//! lm-eval itself wrote (tests/fixtures/lm_eval/xcopa-gemma3-270m, by
//! tools/make_lm_eval_fixture.sh: Gemma 3 270M's bundled GGUF through transformers, the first 30
//! XCOPA test items of it/zh/sw/ht, offline on the local XCOPA copy) is fed to `join_tasks`, and
//! mexa's own `choice` stage scores the same items with the same model. The accuracies must be
//! equal, and so must the joined points and the correlation with alignment.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const LANGS: [(&str, &str); 4] = [("it", "ita_Latn"), ("zh", "zho_Hans"), ("sw", "swh_Latn"), ("ht", "hat_Latn")];

fn assets() -> PathBuf {
    std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("MEXA_CACHE").map(|c| PathBuf::from(c).join("assets")))
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"))
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/lm_eval/xcopa-gemma3-270m")
}

/// The binary under test, linked into the test's folder first: the run takes minutes, and a
/// build directory shared between clones may get another `mexa` meanwhile.
fn pinned(dir: &Path) -> PathBuf {
    let bin = dir.join("mexa");
    if !bin.exists() && std::fs::hard_link(env!("CARGO_BIN_EXE_mexa"), &bin).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_mexa"), &bin).unwrap();
    }
    bin
}

fn mexa(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(pinned(dir))
        .arg("--store")
        .arg(dir.join("store"))
        .args(args)
        .current_dir(dir)
        .env("MEXA_ASSETS", assets())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    // `plan` exits 1 when something is to run; every other command must succeed.
    let ok = o.status.success() || (args[0] == "plan" && o.status.code() == Some(1));
    assert!(ok, "mexa {args:?}: {}{text}", String::from_utf8_lossy(&o.stderr));
    text
}

fn rows(dir: &Path, key: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(&mexa(dir, &["show", key, "--format", "json"])).unwrap().as_array().unwrap().clone()
}

#[test]
fn lm_eval_results_give_the_accuracies_and_correlation_of_mexas_own_choice_stage() {
    let d = tempfile::tempdir().unwrap();
    let gemma = "${assets}/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf";
    let langs = LANGS.iter().map(|(_, l)| *l).collect::<Vec<_>>().join(", ");
    let yaml = format!(
        r#"pipeline: lm_eval
stages:
  corpus:
    kind: load_corpus
    params: {{path: "${{assets}}/corpora/sib200", split: test, pivot: eng_Latn, limit: 20, languages: [{langs}]}}
  embed:
    kind: embed
    inputs: {{corpus: corpus}}
    params: {{model: "{gemma}", poolings: [weighted]}}
  align:
    kind: align
    inputs: {{embeddings: embed}}
  summary:
    kind: aggregate
    inputs: {{alignment: align}}
  xcopa:
    kind: choice
    params: {{model: "{gemma}", data: "${{assets}}/tasks/xcopa", languages: [{langs}], limit: 30}}
  own:
    kind: join_tasks
    inputs: {{scores: summary, corpus: corpus, accuracy: xcopa}}
  harness:
    kind: join_tasks
    inputs: {{scores: summary, corpus: corpus}}
    params: {{tasks: "{}"}}
  own_correlation:
    kind: correlate
    inputs: {{points: own}}
  harness_correlation:
    kind: correlate
    inputs: {{points: harness}}
"#,
        fixture().display()
    );
    std::fs::write(d.path().join("p.yaml"), yaml).unwrap();
    mexa(d.path(), &["run", "p.yaml"]);
    let plan: Value = serde_json::from_str(&mexa(d.path(), &["plan", "--json", "p.yaml"])).unwrap();
    let key = |stage: &str| {
        plan["nodes"].as_array().unwrap().iter().find(|n| n["stage"] == stage).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // The harness's accuracies, as it wrote them.
    let model_dir = std::fs::read_dir(fixture()).unwrap().next().unwrap().unwrap().path();
    let file = std::fs::read_dir(model_dir).unwrap().next().unwrap().unwrap().path();
    let lm: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let mut equal = 0;
    let choice = rows(d.path(), &key("xcopa"));
    for (code, flores) in LANGS {
        let theirs = &lm["results"][format!("xcopa_{code}")];
        assert_eq!(theirs["sample_len"], 30, "the harness scored the first 30 items");
        let theirs = theirs["acc,none"].as_f64().unwrap();
        let ours = choice.iter().find(|r| r["language"] == flores).unwrap();
        assert_eq!(ours["n"], 30);
        assert_eq!(ours["accuracy"].as_f64().unwrap(), theirs, "{code}: mexa's choice against lm-eval's acc");
        equal += 1;
    }
    assert_eq!(equal, LANGS.len());

    // The joined points: the same languages, alignment and score either way.
    let strip = |rs: Vec<Value>| -> Vec<Vec<Value>> {
        let mut v: Vec<Vec<Value>> = rs
            .into_iter()
            .map(|r| {
                ["language", "pooling", "layer_pool", "alignment", "score", "adjusted"].map(|c| r[c].clone()).to_vec()
            })
            .collect();
        v.sort_by_key(|r| r.iter().take(3).map(|x| x.to_string()).collect::<Vec<_>>());
        v
    };
    let (own, harness) = (strip(rows(d.path(), &key("own"))), strip(rows(d.path(), &key("harness"))));
    assert_eq!(own.len(), 2 * LANGS.len(), "four languages × μ pooled by mean and by max");
    assert_eq!(own, harness);

    // And the correlation with alignment, every column.
    let own = rows(d.path(), &key("own_correlation"));
    let harness = rows(d.path(), &key("harness_correlation"));
    assert_eq!(own.len(), 2);
    for (a, b) in own.iter().zip(&harness) {
        for col in ["pooling", "layer_pool", "n", "pearson", "pearson_p", "spearman", "spearman_p", "kendall", "slope"]
        {
            assert_eq!(a[col], b[col], "{col}");
        }
        assert_eq!(a["n"], 4);
    }
}
