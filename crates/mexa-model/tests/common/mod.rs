//! What the integration tests that read fetched assets share: where the assets are.
use std::path::PathBuf;

/// $MEXA_ASSETS, else $MEXA_CACHE/assets, else ~/.cache/mexa/assets (scripts/fetch-assets.py).
pub fn assets() -> PathBuf {
    std::env::var_os("MEXA_ASSETS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("MEXA_CACHE").map(|c| PathBuf::from(c).join("assets")))
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mexa/assets"))
}

/// An asset that must exist, with the command that fetches it in the failure message.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn asset(rel: &str) -> PathBuf {
    let p = assets().join(rel);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets.py (scripts/test does)", p.display());
    p
}
