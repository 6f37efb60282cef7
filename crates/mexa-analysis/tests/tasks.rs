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
    (0..df.height()).map(|i| (l.get(i).unwrap().to_string(), t.get(i).unwrap().to_string(), s.get(i).unwrap())).collect()
}

#[test]
fn wide_table_column_from_the_belebele_paper() {
    let df = read_task_scores(&published("belebele_table7_llms.tsv"), Some("llama2_70b_5shot"), Some("belebele")).unwrap();
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
    std::fs::write(&csv, "language,task,score\nfra_Latn,belebele,0.8\nzul_Latn,belebele,0.3\nfra_Latn,arc,0.6\n").unwrap();
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
    let df = read_task_scores(&published("belebele_table7_llms.tsv"), Some("llama2_70b_5shot"), Some("belebele")).unwrap();
    let s = |l: &str, iso: &str, m: f64| ScoreRow { language: l.into(), iso639_3: iso.into(), pooling: "weighted".into(), mean: m, max: m + 0.1 };
    let scores = vec![s("fra", "fra", 0.4), s("cmn_hans", "cmn", 0.3), s("hin", "hin", 0.1), s("007", "", 0.0)];
    let (points, unmatched) = join_points(&scores, &df).unwrap();
    assert_eq!(unmatched, vec!["007".to_string()]);
    assert_eq!(points.len(), 3 * 2, "3 languages × mean/max");
    let zh = points.iter().find(|p| p.language == "cmn_hans" && p.layer_pool == "max").unwrap();
    assert_eq!((zh.task_language.as_str(), zh.matched_by.as_str(), zh.alignment), ("zho_Hans", "iso639-3+script", 0.4));
    let hi = points.iter().find(|p| p.language == "hin").unwrap();
    assert_eq!(hi.task_language, "hin_Deva");
    // GPT-3.5 was not evaluated on Chinese ("NA" in the paper): no score, no match.
    let gpt = read_task_scores(&published("belebele_table7_llms.tsv"), Some("gpt35turbo_0shot"), Some("belebele")).unwrap();
    let (_, unmatched) = join_points(&scores, &gpt).unwrap();
    assert_eq!(unmatched, vec!["cmn_hans".to_string(), "007".to_string()]);
}
