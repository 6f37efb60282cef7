//! The analysis layer, and the only crate that uses polars: reads downstream task results
//! (CSV/TSV/Parquet, wide or long, or lm-evaluation-harness JSON), matches their language
//! labels to the corpus's ([`languages`]), and joins them with alignment scores into the
//! points that correlations and plots are computed from ([`join`]).
pub mod join;
pub mod languages;
pub mod tasks;

pub use join::{join_points, Point, ScoreRow};
pub use languages::{did_you_mean, match_language, Lang, Match};
pub use polars::prelude::DataFrame;
pub use tasks::{read_task_scores, task_scores};
