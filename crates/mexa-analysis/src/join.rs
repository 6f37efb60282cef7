//! Alignment scores joined with task scores, one point per (language, task, pooling, layer
//! pooling), with the language mapping kept visible.
use crate::languages::{match_language, Lang};
use anyhow::Result;
use polars::prelude::*;

/// An aggregated alignment score of one corpus language.
#[derive(Debug, Clone)]
pub struct ScoreRow {
    pub language: String,
    pub iso639_3: String,
    pub pooling: String,
    pub mean: f64,
    pub max: f64,
}

/// One joined point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub language: String,
    pub task_language: String,
    pub matched_by: String,
    pub task: String,
    pub pooling: String,
    /// `mean` or `max` over layers.
    pub layer_pool: String,
    pub alignment: f64,
    pub score: f64,
}

/// Joins (through polars) scores with task results; returns the points and the corpus
/// languages that found no task result.
// Long: the language-matching cascade (exact, FLORES label, ISO 639-3, macro-language) reads best as one sequence with its reporting.
pub fn join_points(scores: &[ScoreRow], tasks: &DataFrame) -> Result<(Vec<Point>, Vec<String>)> {
    let task_langs: Vec<String> =
        tasks.column("language")?.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect();
    let mut uniq = task_langs.clone();
    uniq.sort();
    uniq.dedup();
    let candidates: Vec<Lang> = uniq.iter().map(|l| Lang::parse(l, None)).collect();
    let (mut corpus, mut mapped, mut how, mut unmatched) = (vec![], vec![], vec![], vec![]);
    let mut seen = std::collections::BTreeSet::new();
    for s in scores {
        if !seen.insert(s.language.clone()) {
            continue;
        }
        match match_language(&Lang::parse(&s.language, Some(&s.iso639_3)), &candidates) {
            Some(m) => {
                corpus.push(s.language.clone());
                mapped.push(m.task_label);
                how.push(m.how.to_string());
            }
            None => unmatched.push(s.language.clone()),
        }
    }
    let n = corpus.len();
    let mapping = DataFrame::new(
        n,
        vec![
            Column::new("language".into(), corpus),
            Column::new("task_language".into(), mapped),
            Column::new("matched_by".into(), how),
        ],
    )?;
    let long: Vec<(String, String, String, f64)> = scores
        .iter()
        .flat_map(|s| {
            [
                (s.language.clone(), s.pooling.clone(), "mean".to_string(), s.mean),
                (s.language.clone(), s.pooling.clone(), "max".to_string(), s.max),
            ]
        })
        .collect();
    let n = long.len();
    let align = DataFrame::new(
        n,
        vec![
            Column::new("language".into(), long.iter().map(|x| x.0.clone()).collect::<Vec<_>>()),
            Column::new("pooling".into(), long.iter().map(|x| x.1.clone()).collect::<Vec<_>>()),
            Column::new("layer_pool".into(), long.iter().map(|x| x.2.clone()).collect::<Vec<_>>()),
            Column::new("alignment".into(), long.iter().map(|x| x.3).collect::<Vec<_>>()),
        ],
    )?;
    let joined = align.join(&mapping, ["language"], ["language"], JoinArgs::new(JoinType::Inner), None)?.join(
        tasks,
        ["task_language"],
        ["language"],
        JoinArgs::new(JoinType::Inner),
        None,
    )?;
    let get_s = |c: &str| -> Result<Vec<String>> {
        Ok(joined.column(c)?.str()?.iter().map(|v| v.unwrap_or("").to_string()).collect())
    };
    let get_f =
        |c: &str| -> Result<Vec<f64>> { Ok(joined.column(c)?.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect()) };
    let (l, tl, mb, tk, p, lp) = (
        get_s("language")?,
        get_s("task_language")?,
        get_s("matched_by")?,
        get_s("task")?,
        get_s("pooling")?,
        get_s("layer_pool")?,
    );
    let (a, sc) = (get_f("alignment")?, get_f("score")?);
    let mut points: Vec<Point> = (0..joined.height())
        .map(|i| Point {
            language: l[i].clone(),
            task_language: tl[i].clone(),
            matched_by: mb[i].clone(),
            task: tk[i].clone(),
            pooling: p[i].clone(),
            layer_pool: lp[i].clone(),
            alignment: a[i],
            score: sc[i],
        })
        .collect();
    points.sort_by(|x, y| {
        (&x.task, &x.pooling, &x.layer_pool, &x.language).cmp(&(&y.task, &y.pooling, &y.layer_pool, &y.language))
    });
    Ok((points, unmatched))
}
