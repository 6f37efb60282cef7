//! The MEXA stages, registered for pipelines: load a parallel corpus, embed it with a model,
//! align every language to the pivot per layer, pool over layers, measure the model's own
//! accuracy per language with a probe or by answer log-likelihood, correlate with task scores;
//! and what keeps a correlation honest: a lexical floor, sentence-level outcomes, held-out
//! layer choice, prediction error and instance-level accuracy.
//! Each stage is a thin adapter: tables in, a call into mexa-model / mexa-metrics /
//! mexa-analysis, a table out.
pub mod aggregate;
pub mod align;
pub mod choice;
pub mod corpus;
pub mod correlate;
pub mod cost;
pub mod embed;
pub mod instance_accuracy;
pub mod instances;
pub mod layer_choice;
pub mod lens;
pub mod lexical;
pub mod pairs;
pub mod predict;
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
        .add(pairs::AlignPairs)
        .add(lens::Lens)
        .add(aggregate::Aggregate)
        .add(correlate::JoinTasks)
        .add(correlate::Correlate)
        .add(probe::ProbeStage)
        .add(choice::Choice)
        .add(lexical::Lexical)
        .add(instances::AlignInstances)
        .add(probe::ProbeInstances)
        .add(layer_choice::LayerChoice)
        .add(instance_accuracy::InstanceAccuracy)
        .add(predict::Predict)
        .add(report::Report);
    r
}

#[cfg(test)]
mod tests {
    use mexa_pipeline::ParamType;
    use serde_json::{json, Value};

    /// Every stage's declared parameters (names, defaults) are exactly the fields of its typed
    /// struct: the defaults deserialize, a required parameter left out fails, an undeclared
    /// one is refused.
    #[test]
    fn declared_parameters_match_each_stage_s_typed_struct() {
        // A path parameter gets a real one-language corpus: load_corpus checks its languages.
        let corpus = tempfile::tempdir().unwrap();
        std::fs::write(corpus.path().join("eng_Latn.txt"), "One.\n").unwrap();
        for stage in super::registry().iter() {
            let mut params = serde_json::Map::new();
            for p in stage.params() {
                let v = p.default.clone().unwrap_or_else(|| match p.ty {
                    ParamType::Int => json!(1),
                    ParamType::Float => json!(1.0),
                    ParamType::Bool => json!(true),
                    ParamType::StrList | ParamType::EnumList(_) => json!([]),
                    ParamType::IntList => json!([]),
                    ParamType::Path => json!(corpus.path()),
                    _ => json!("x"),
                });
                params.insert(p.name.to_string(), v);
            }
            let kind = stage.kind();
            stage.check_params(&Value::Object(params.clone())).unwrap_or_else(|e| panic!("{kind}: {e}"));
            let mut extra = params.clone();
            extra.insert("not_declared".into(), json!(1));
            assert!(stage.check_params(&Value::Object(extra)).is_err(), "{kind}: an undeclared parameter passed");
            if let Some(first) = params.keys().next().cloned() {
                let mut less = params.clone();
                less.remove(&first);
                let opt = stage.params().iter().any(|p| p.name == first && matches!(p.ty, ParamType::OptPath));
                assert!(opt || stage.check_params(&Value::Object(less)).is_err(), "{kind}: `{first}` missing passed");
            }
        }
    }
}
