//! Log-likelihoods of continuations against transformers: tiny random causal LMs with their
//! LM heads (tools/make_loglik_fixtures.py; an untied Llama head, a tied Qwen2 head, Gemma 2's
//! soft-capped logits, Gemma 3's sliding window shorter than the prompts). Each continuation's
//! summed log-probability must match transformers' (run on context + continuation alone)
//! within 1e-4 relative, packed (the context once for all its continuations) and unpacked.
use mexa_model::score::{score_ids, IdRequest, ScoreOptions};
use mexa_model::{load_network, LoadOptions};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/loglik")).join(name)
}

fn check(name: &str) {
    let dir = fixture(name);
    let opts = LoadOptions { lm_head: true, ..Default::default() };
    let (net, _) = load_network(&dir, &opts).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let ids =
        |v: &serde_json::Value| -> Vec<i64> { v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect() };
    let reqs = expected["requests"].as_array().unwrap();
    let requests: Vec<IdRequest> = reqs
        .iter()
        .map(|r| IdRequest {
            context: ids(&r["context"]),
            continuations: r["continuations"].as_array().unwrap().iter().map(ids).collect(),
        })
        .collect();
    for packed in [true, false] {
        // A small token budget also puts requests in separate batches with padding.
        for max_tokens in [4096, 12] {
            let mut seen = 0;
            let got =
                score_ids(net.as_ref(), tch::Device::Cpu, 0, &requests, ScoreOptions { max_tokens, packed }, |k| {
                    seen += k
                })
                .unwrap();
            assert_eq!(seen, requests.iter().map(|r| r.continuations.len()).sum::<usize>(), "{name}: progress");
            for (q, r) in reqs.iter().enumerate() {
                for (k, want) in r["logprob"].as_array().unwrap().iter().enumerate() {
                    let (want, s) = (want.as_f64().unwrap(), got[q][k]);
                    assert!((s.logprob - want).abs() < 1e-4 * want.abs().max(1.0), "{name} (packed {packed}, budget {max_tokens}): request {q} continuation {k}: {} vs transformers {want}", s.logprob);
                    assert_eq!(s.tokens, requests[q].continuations[k].len());
                    assert_eq!(
                        s.greedy,
                        r["greedy"][k].as_bool().unwrap(),
                        "{name}: request {q} continuation {k}: greedy"
                    );
                }
            }
        }
    }
}

#[test]
fn llama_untied_head() {
    check("llama");
}

#[test]
fn qwen2_tied_head() {
    check("qwen2");
}

#[test]
fn gemma2_softcapped_logits() {
    check("gemma2");
}

#[test]
fn gemma3_sliding_window() {
    check("gemma3");
}

/// Scoring one question with `dir`'s network loaded with `opts` fails, saying `expected`.
fn refused(dir: &std::path::Path, opts: &LoadOptions, expected: &str) {
    let (net, _) = load_network(dir, opts).unwrap();
    let one = [IdRequest { context: vec![1, 2], continuations: vec![vec![3]] }];
    let err = score_ids(net.as_ref(), tch::Device::Cpu, 0, &one, ScoreOptions::default(), |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains(expected), "{err:#}");
}

#[test]
fn an_untied_model_loaded_without_its_head_says_so() {
    refused(&fixture("llama"), &LoadOptions::default(), "lm_head.weight");
}

#[test]
fn an_encoder_has_no_lm_head() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/parity/bert"));
    refused(&dir, &LoadOptions { lm_head: true, ..Default::default() }, "no LM head");
}
