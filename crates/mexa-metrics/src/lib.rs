//! MEXA's numbers: cross-lingual alignment scores between parallel sentence embeddings
//! ([`align`]), pooling of per-layer scores ([`aggregate`]) and the statistics used to relate
//! them to task accuracy ([`stats`]). Pure Rust, no I/O: everything here is a function of
//! in-memory arrays, tested against brute-force definitions and published values.

pub mod aggregate;
pub mod align;
pub mod chance;
pub mod cluster;
mod gram;
pub mod inference;
pub mod lexical;
pub mod predict;
pub mod probe;
pub mod selection;
pub mod stats;

pub use aggregate::{aggregate, Aggregate};
pub use align::{
    align, align_loop, align_naive, align_pairs, align_with_gram, pair_outcomes, Alignment, Matrix, PairOutcome,
};
pub use chance::{mexa_uncertainty, Uncertainty};
pub use stats::{bootstrap_ci, kendall, linear_fit, pearson, spearman, Correlation};
