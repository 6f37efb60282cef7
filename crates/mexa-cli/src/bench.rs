//! `mexa bench`: speed measured against a baseline in the same run, printed as ratios.
use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Which benchmarks (default: all).
    which: Vec<String>,
}

pub fn bench(_a: BenchArgs) -> Result<i32> {
    Ok(0)
}
