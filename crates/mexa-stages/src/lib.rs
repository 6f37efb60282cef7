//! The MEXA stages, registered for pipelines: load a parallel corpus, embed it with a model,
//! align every language to the pivot per layer, pool over layers, correlate with task scores.
use mexa_pipeline::Registry;

/// Every stage kind mexa ships.
pub fn registry() -> Registry {
    Registry::new()
}
