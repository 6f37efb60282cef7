//! The MEXA stages, registered for pipelines: load a parallel corpus, embed it with a model,
//! align every language to the pivot per layer, pool over layers, measure the model's own
//! accuracy per language with a probe or by answer log-likelihood, correlate with task scores.
//! Each stage is a thin adapter: tables in, a call into mexa-model / mexa-metrics /
//! mexa-analysis, a table out.
pub mod aggregate;
pub mod align;
pub mod choice;
pub mod corpus;
pub mod correlate;
pub mod embed;
pub mod probe;
pub mod report;
mod util;

use mexa_pipeline::Registry;

/// Every stage kind mexa ships.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.add(corpus::LoadCorpus)
        .add(embed::Embed)
        .add(align::Align)
        .add(aggregate::Aggregate)
        .add(correlate::JoinTasks)
        .add(correlate::Correlate)
        .add(probe::ProbeStage)
        .add(choice::Choice)
        .add(report::Report);
    r
}
