//! The logit lens against a toy model whose every number can be worked out by hand.
use anyhow::Result;
use mexa_model::embed::Runner;
use mexa_model::{embed_ids, BatchOptions, HiddenStates, Pooling};
use tch::{Device, Kind, Tensor};

/// Three tokens with embeddings e0 = (2, 0), e1 = (0, 1), e2 = (1, 3). Hidden state 0 is the
/// embedding, state 1 the embedding with its two features swapped. The "LM head" has rows
/// (1, 0), (0, 1), (−1, −1), so the lens logits of h are (h₀, h₁, −h₀ − h₁).
struct Toy;

fn table() -> Tensor {
    Tensor::from_slice(&[2f32, 0., 0., 1., 1., 3.]).view([3, 2])
}

impl HiddenStates for Toy {
    fn num_hidden_states(&self) -> usize {
        2
    }
    fn hidden_size(&self) -> usize {
        2
    }
    fn forward(&self, ids: &Tensor, _mask: &Tensor) -> Result<Vec<Tensor>> {
        let h0 = Tensor::embedding(&table(), ids, -1, false, false);
        let h1 = h0.flip([-1]);
        Ok(vec![h0, h1])
    }
    fn lens_norm(&self, _state: usize, hidden: &Tensor) -> Result<Tensor> {
        Ok(hidden.to_kind(Kind::Float))
    }
    fn lens_top1(&self, normed: &Tensor) -> Result<Tensor> {
        let head = Tensor::from_slice(&[1f32, 0., 0., 1., -1., -1.]).view([3, 2]);
        Ok(mexa_model::layers::top1_rows(normed, &head))
    }
}

/// By hand: state 0 takes each token's own embedding: token 0 → logits (2, 0, −2) → 0;
/// token 1 → (0, 1, −1) → 1; token 2 → (1, 3, −4) → 1. State 1 swaps the features: token 0
/// → (0, 2, −2) → 1; token 1 → (1, 0, −1) → 0; token 2 → (3, 1, −4) → 0.
#[test]
fn the_lens_reads_the_top_token_of_every_position_of_every_state() {
    let ids = vec![vec![1i64, 2, 0], vec![2], vec![0, 1], vec![2, 2, 2, 1]];
    let want = vec![
        vec![vec![1, 1, 0], vec![0, 0, 1]], // sentence 0: tokens 1 2 0
        vec![vec![1], vec![0]],             // sentence 1: token 2
        vec![vec![0, 1], vec![1, 0]],       // sentence 2: tokens 0 1
    ];
    let toy = Toy;
    let runner = Runner { net: &toy, architecture: "toy", device: Device::Cpu, pad: 0 };
    // Small batches (padding inside them), batch by batch and layer-major in chunks.
    for chunk_tokens in [0, 6] {
        let opts = BatchOptions { max_tokens: 8, max_sentences: 2, chunk_tokens };
        let (pooled, top1) = embed_ids(&runner, &ids, &[Pooling::Last], opts, 3, |_| {}).unwrap();
        assert_eq!(top1, want, "chunk_tokens {chunk_tokens}");
        // The embeddings come out as without the lens: the last token's state 0 of sentence 3.
        assert_eq!(pooled[0].vector(0, 3), &[0., 1.]);
    }
    // Without the lens, nothing is decoded.
    let (_, none) = embed_ids(&runner, &ids, &[Pooling::Last], BatchOptions::default(), 0, |_| {}).unwrap();
    assert!(none.is_empty());
}
