//! Task-result readers and the join with alignment scores, on the bundled Belebele table and
//! on small files in each accepted format.
use mexa_analysis::{join_points, read_task_scores, ScoreRow};
use polars::prelude::*;
use std::path::PathBuf;

fn published(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/published")).join(name)
}

fn rows(df: &DataFrame) -> Vec<(String, String, f64)> {
    let l = df.column("language").unwrap().str().unwrap().clone();
    let t = df.column("task").unwrap().str().unwrap().clone();
    let s = df.column("score").unwrap().f64().unwrap().clone();
    (0..df.height())
        .map(|i| (l.get(i).unwrap().to_string(), t.get(i).unwrap().to_string(), s.get(i).unwrap()))
        .collect()
}

#[test]
fn wide_table_column_from_the_belebele_paper() {
    let df =
        read_task_scores(&published("belebele_table7_llms.tsv"), Some("llama2_70b_5shot"), Some("belebele")).unwrap();
    let r = rows(&df);
    assert_eq!(r.len(), 122, "122 languages in the Belebele table");
    assert!(r.contains(&("eng_Latn".into(), "belebele".into(), 90.9)));
    assert!(r.contains(&("zho_Hans".into(), "belebele".into(), 83.7)), "{:?}", &r[..3]);
    let e = read_task_scores(&published("belebele_table7_llms.tsv"), Some("nope"), None).unwrap_err().to_string();
    assert!(e.contains("no column `nope`") && e.contains("llama2_70b_5shot"), "{e}");
}

#[test]
fn long_csv_and_lm_eval_json() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("scores.csv");
    std::fs::write(&csv, "language,task,score\nfra_Latn,belebele,0.8\nzul_Latn,belebele,0.3\nfra_Latn,arc,0.6\n")
        .unwrap();
    assert_eq!(rows(&read_task_scores(&csv, None, None).unwrap()).len(), 3);
    assert_eq!(rows(&read_task_scores(&csv, None, Some("arc")).unwrap()), vec![("fra_Latn".into(), "arc".into(), 0.6)]);
    let json = d.path().join("results.json");
    std::fs::write(&json, r#"{"results": {"belebele_fra_Latn": {"acc,none": 0.81, "acc_stderr,none": 0.01}, "belebele_zul_Latn": {"acc,none": 0.35}, "arc_fr": {"acc": 0.5}}}"#).unwrap();
    let r = rows(&read_task_scores(&json, None, Some("belebele")).unwrap());
    assert_eq!(r.len(), 2);
    assert!(r.contains(&("zul_Latn".into(), "belebele".into(), 0.35)));
    let bad = d.path().join("x.csv");
    std::fs::write(&bad, "lang,acc\nfra,1\n").unwrap();
    let e = read_task_scores(&bad, None, None).unwrap_err().to_string();
    assert!(e.contains("expected columns `language`, `task`, `score`") && e.contains("lang, acc"), "{e}");
}

#[test]
fn join_maps_udhr_codes_to_flores_labels_and_reports_the_rest() {
    let df =
        read_task_scores(&published("belebele_table7_llms.tsv"), Some("llama2_70b_5shot"), Some("belebele")).unwrap();
    let s = |l: &str, iso: &str, m: f64| ScoreRow {
        language: l.into(),
        iso639_3: iso.into(),
        pooling: "weighted".into(),
        mean: m,
        max: m + 0.1,
    };
    let scores = vec![s("fra", "fra", 0.4), s("cmn_hans", "cmn", 0.3), s("hin", "hin", 0.1), s("007", "", 0.0)];
    let (points, unmatched) = join_points(&scores, &df).unwrap();
    assert_eq!(unmatched, vec!["007".to_string()]);
    assert_eq!(points.len(), 3 * 2, "3 languages × mean/max");
    let zh = points.iter().find(|p| p.language == "cmn_hans" && p.layer_pool == "max").unwrap();
    assert_eq!((zh.task_language.as_str(), zh.matched_by.as_str(), zh.alignment), ("zho_Hans", "iso639-3+script", 0.4));
    let hi = points.iter().find(|p| p.language == "hin").unwrap();
    assert_eq!(hi.task_language, "hin_Deva");
    // GPT-3.5 was not evaluated on Chinese ("NA" in the paper): no score, no match.
    let gpt =
        read_task_scores(&published("belebele_table7_llms.tsv"), Some("gpt35turbo_0shot"), Some("belebele")).unwrap();
    let (_, unmatched) = join_points(&scores, &gpt).unwrap();
    assert_eq!(unmatched, vec!["cmn_hans".to_string(), "007".to_string()]);
}

/// A results file as lm-evaluation-harness 0.4 writes it: `--output_path out` gives
/// `out/<model name with / as __>/results_<timestamp>.json`, with a group entry, per-language
/// subtasks (`xcopa_it`, `belebele_fra_Latn`, `m_mmlu_fr`), `acc` and `acc_norm` with their
/// stderr under the `none` filter, and each subtask's config naming its dataset.
fn lm_eval_output(root: &std::path::Path) -> std::path::PathBuf {
    let model = root.join("Qwen__Qwen2.5-1.5B");
    std::fs::create_dir_all(&model).unwrap();
    let old = r#"{"results": {"xcopa_it": {"alias": " - xcopa_it", "acc,none": 0.1, "acc_stderr,none": 0.02}}}"#;
    std::fs::write(model.join("results_2024-05-01T09-00-00.000001.json"), old).unwrap();
    let new = r#"{
  "results": {
    "xcopa": {"acc,none": 0.61, "acc_stderr,none": 0.01, "alias": "xcopa"},
    "xcopa_it": {"alias": " - xcopa_it", "acc,none": 0.652, "acc_stderr,none": 0.0213},
    "xcopa_sw": {"alias": " - xcopa_sw", "acc,none": 0.534, "acc_stderr,none": 0.0223},
    "belebele_fra_Latn": {"alias": "belebele_fra_Latn", "acc,none": 0.71, "acc_stderr,none": 0.015, "acc_norm,none": 0.71, "acc_norm_stderr,none": 0.015},
    "m_mmlu_fr": {"alias": "m_mmlu_fr", "acc,none": 0.44, "acc_stderr,none": 0.004, "acc_norm,none": 0.47, "acc_norm_stderr,none": 0.004}
  },
  "groups": {"xcopa": {"acc,none": 0.61, "acc_stderr,none": 0.01, "alias": "xcopa"}},
  "group_subtasks": {"xcopa": ["xcopa_it", "xcopa_sw"]},
  "configs": {
    "xcopa_it": {"task": "xcopa_it", "tag": ["xcopa"], "dataset_path": "xcopa", "dataset_name": "it"},
    "xcopa_sw": {"task": "xcopa_sw", "tag": ["xcopa"], "dataset_path": "xcopa", "dataset_name": "sw"},
    "belebele_fra_Latn": {"task": "belebele_fra_Latn", "dataset_path": "facebook/belebele", "dataset_name": "fra_Latn"},
    "m_mmlu_fr": {"task": "m_mmlu_fr", "dataset_path": "alexandrainst/m_mmlu", "dataset_name": "fr"}
  },
  "versions": {"xcopa_it": 1.0, "xcopa_sw": 1.0, "belebele_fra_Latn": 0.0, "m_mmlu_fr": 0.0},
  "n-shot": {"xcopa_it": 0, "xcopa_sw": 0, "belebele_fra_Latn": 0, "m_mmlu_fr": 25},
  "n-samples": {"xcopa_it": {"original": 500, "effective": 500}},
  "config": {"model": "hf", "model_args": "pretrained=Qwen/Qwen2.5-1.5B", "batch_size": "auto"},
  "git_hash": "4f8e479",
  "date": 1714567890.0
}"#;
    std::fs::write(model.join("results_2024-05-02T10-11-12.345678.json"), new).unwrap();
    root.to_path_buf()
}

#[test]
fn lm_eval_output_folder_newest_results_and_underscored_task_names() {
    let d = tempfile::tempdir().unwrap();
    let out = lm_eval_output(d.path());
    // The output folder: the newest results file of its one model, the group entry skipped.
    let mut r = rows(&read_task_scores(&out, None, None).unwrap());
    r.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        r,
        vec![
            ("fr".into(), "m_mmlu".into(), 0.44),
            ("fra_Latn".into(), "belebele".into(), 0.71),
            ("it".into(), "xcopa".into(), 0.652),
            ("sw".into(), "xcopa".into(), 0.534),
        ]
    );
    // A task with an underscore, named; and acc_norm chosen with `column`.
    let f = read_task_scores(&out, Some("acc_norm"), Some("m_mmlu")).unwrap();
    assert_eq!(rows(&f), vec![("fr".into(), "m_mmlu".into(), 0.47)]);
    // A chosen metric a selected task lacks is an error naming the task and what it has.
    let e = read_task_scores(&out, Some("acc_norm"), Some("xcopa")).unwrap_err().to_string();
    assert!(e.contains("results.xcopa_it has no `acc_norm`") && e.contains("it has: acc"), "{e}");
    // Two models' results in one folder: name one.
    std::fs::create_dir_all(d.path().join("google__gemma-3-270m")).unwrap();
    std::fs::copy(
        d.path().join("Qwen__Qwen2.5-1.5B/results_2024-05-01T09-00-00.000001.json"),
        d.path().join("google__gemma-3-270m/results_x.json"),
    )
    .unwrap();
    let e = read_task_scores(&out, None, None).unwrap_err().to_string();
    assert!(e.contains("results of 2 models") && e.contains("google__gemma-3-270m"), "{e}");
}

#[test]
fn lm_eval_names_split_by_dataset_name_task_or_script() {
    use mexa_analysis::tasks::split_lm_eval_name as split;
    assert_eq!(split("m_mmlu_fr", Some("m_mmlu"), None), Some(("m_mmlu", "fr")));
    assert_eq!(split("m_mmlu_fr", None, Some("fr")), Some(("m_mmlu", "fr")));
    assert_eq!(split("belebele_fra_Latn", None, None), Some(("belebele", "fra_Latn")));
    assert_eq!(split("xcopa_it", None, None), Some(("xcopa", "it")));
    assert_eq!(split("arc_challenge_fr", Some("xcopa"), None), None);
    assert_eq!(split("xcopa", None, None), None);
}
