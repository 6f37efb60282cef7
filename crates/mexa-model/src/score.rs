//! Log-likelihoods of continuations given a context, as lm-evaluation-harness computes them
//! for multiple-choice tasks (`output_type: multiple_choice`, its `loglikelihood` requests).
//!
//! Tokenization follows lm-eval's `_encode_pair`: trailing whitespace of the context moves to
//! the front of the continuation; the context is encoded alone and the continuation is the
//! tail of the encoding of context + continuation past the context's length. Special tokens
//! are the tokenizer's own (BOS where the model's tokenizer adds one, as lm-eval does for
//! Gemma; never an EOS). The score of a continuation is the sum of its tokens' log-probabilities.
//!
//! A shared context is run once for all its continuations: the context and every
//! continuation are packed into one row, each continuation placed at the positions it would
//! have right after the context and attending to the context and itself only (a prompt tree).
//! Causal attention makes this exactly the computation of separate rows; families without a
//! packed forward get separate rows ([`ScoreOptions::packed`]).
use crate::embed::{batch_end, check_vocab, guarded, BatchOptions};
use crate::model::{HiddenStates, Model};
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// One question: a context and the continuations to score after it, as token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct IdRequest {
    pub context: Vec<i64>,
    pub continuations: Vec<Vec<i64>>,
}

/// The score of one continuation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Sum of the continuation tokens' log-probabilities (natural log).
    pub logprob: f64,
    /// Tokens in the continuation.
    pub tokens: usize,
    /// Every continuation token was the model's top-1 prediction (lm-eval's `is_greedy`).
    pub greedy: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ScoreOptions {
    /// Most padded tokens (rows × longest) in one forward.
    pub max_tokens: usize,
    /// Pack each context with all its continuations into one row (the context runs once).
    pub packed: bool,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self { max_tokens: 4096, packed: true }
    }
}

/// Trailing whitespace of the context becomes leading whitespace of the continuation.
pub fn move_trailing_space(context: &str, continuation: &str) -> (String, String) {
    let kept = context.trim_end();
    let moved = &context[kept.len()..];
    (kept.to_string(), format!("{moved}{continuation}"))
}

/// Encodes one question as lm-eval's `_encode_pair` does each (context, continuation) pair:
/// trailing whitespace of the context moves to the continuation; the context is encoded
/// alone (once: it is the same for every continuation) and each continuation is the tail of
/// the encoding of context + continuation past the context's length.
pub fn encode_request(model: &Model, context: &str, continuations: &[String]) -> Result<IdRequest> {
    let (kept, moved) = move_trailing_space(context, "");
    let ctx = model.tokenizer.encode_without_eos(&kept)?;
    if ctx.is_empty() {
        bail!("the context {context:?} tokenizes to nothing (and the tokenizer adds no BOS to condition on)");
    }
    let mut req = IdRequest { context: ctx, continuations: Vec::with_capacity(continuations.len()) };
    for c in continuations {
        let whole = model.tokenizer.encode_without_eos(&format!("{kept}{moved}{c}"))?;
        let cont = whole.get(req.context.len()..).unwrap_or_default().to_vec();
        if cont.is_empty() {
            bail!("the continuation {c:?} after {context:?} tokenizes to nothing");
        }
        req.continuations.push(cont);
    }
    Ok(req)
}

/// One row of a batch: token ids, each token's position, which earlier tokens of the row
/// each token may attend to (`branch[i]`: the index of the token before it on its branch,
/// `None` for the first), and what to read off.
struct Row {
    ids: Vec<i64>,
    positions: Vec<i64>,
    branch: Vec<Option<usize>>,
    reads: Vec<Read>,
}

/// One answer token to score: request `q`, its continuation `k`, the index in the row whose
/// output predicts it, and the token.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Read {
    q: usize,
    k: usize,
    at: usize,
    token: i64,
}

fn rows(requests: &[IdRequest], packed: bool) -> Vec<Row> {
    let mut out = Vec::new();
    for (q, r) in requests.iter().enumerate() {
        let c = r.context.len();
        let context_row = || Row {
            ids: r.context.clone(),
            positions: (0..c as i64).collect(),
            branch: (0..c).map(|i| i.checked_sub(1)).collect(),
            reads: Vec::new(),
        };
        let mut row = context_row();
        for (k, cont) in r.continuations.iter().enumerate() {
            if !packed && k > 0 {
                out.push(std::mem::replace(&mut row, context_row()));
            }
            let start = row.ids.len();
            for (j, &tok) in cont.iter().enumerate() {
                let prev = if j == 0 { c - 1 } else { start + j - 1 };
                row.reads.push(Read { q, k, at: prev, token: tok });
                row.ids.push(tok);
                row.positions.push((c + j) as i64);
                row.branch.push(Some(prev));
            }
        }
        out.push(row);
    }
    out
}

/// Scores every continuation of every request. Returns, per request, one [`Scored`] per
/// continuation; `progress` is called with the number of continuations finished.
// Long: one pass over packed rows whose index bookkeeping (row, answer, position) must stay side by side to be checked; tests/loglik.rs checks it against transformers.
pub fn score_ids(
    net: &dyn HiddenStates,
    device: Device,
    pad: i64,
    requests: &[IdRequest],
    opts: ScoreOptions,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<Scored>>> {
    let _guard = tch::no_grad_guard();
    let mut out: Vec<Vec<Scored>> = requests
        .iter()
        .map(|r| vec![Scored { logprob: 0.0, tokens: 0, greedy: true }; r.continuations.len()])
        .collect();
    let packed = opts.packed && net.packs();
    let mut all = rows(requests, packed);
    all.sort_by_key(|r| std::cmp::Reverse(r.ids.len()));
    let mut start = 0;
    while start < all.len() {
        let longest = all[start].ids.len();
        let batch_opts = BatchOptions { max_tokens: opts.max_tokens, max_sentences: usize::MAX, chunk_tokens: 0 };
        let end = batch_end(start, all.len(), longest, batch_opts);
        let batch = &all[start..end];
        let (b, t) = (batch.len(), longest);
        let mut ids = vec![pad; b * t];
        for (r, row) in batch.iter().enumerate() {
            ids[r * t..r * t + row.ids.len()].copy_from_slice(&row.ids);
        }
        check_vocab(net, &ids)?;
        let shape = [b as i64, t as i64];
        let ids_t = Tensor::from_slice(&ids).view(shape).to_device(device);
        let states = if packed {
            // Each token's position, and allowed[b][i][j]: query i sees key j (its branch back
            // to the context's start); padding queries see themselves only.
            let mut positions = vec![0i64; b * t];
            let mut allowed = vec![false; b * t * t];
            for (r, row) in batch.iter().enumerate() {
                let n = row.ids.len();
                positions[r * t..r * t + n].copy_from_slice(&row.positions);
                for i in 0..t {
                    let base = (r * t + i) * t;
                    if i >= n {
                        allowed[base + i] = true;
                        continue;
                    }
                    let mut at = Some(i);
                    while let Some(j) = at {
                        allowed[base + j] = true;
                        at = row.branch[j];
                    }
                }
            }
            let pos_t = Tensor::from_slice(&positions).view(shape).to_device(device);
            let allowed_t = Tensor::from_slice(&allowed).view([b as i64, t as i64, t as i64]).to_device(device);
            net.forward_packed(&ids_t, &pos_t, &allowed_t)?
        } else {
            let mut mask = vec![0i64; b * t];
            for (r, row) in batch.iter().enumerate() {
                mask[r * t..r * t + row.ids.len()].iter_mut().for_each(|m| *m = 1);
            }
            net.forward(&ids_t, &Tensor::from_slice(&mask).view(shape).to_device(device))?
        };
        let last = states.last().ok_or_else(|| anyhow::anyhow!("the model returned no hidden states"))?;
        let d = last.size()[2];
        // Only the rows that predict a continuation token go through the LM head.
        let reads: Vec<(usize, Read)> =
            batch.iter().enumerate().flat_map(|(r, row)| row.reads.iter().map(move |x| (r, *x))).collect();
        let index: Vec<i64> = reads.iter().map(|(r, x)| (r * t + x.at) as i64).collect();
        let targets: Vec<i64> = reads.iter().map(|(_, x)| x.token).collect();
        let h = last.view([-1, d]).index_select(0, &Tensor::from_slice(&index).to_device(device));
        let tgt = Tensor::from_slice(&targets).to_device(device).unsqueeze(1);
        let (mut lp, mut top) = (Vec::with_capacity(index.len()), Vec::with_capacity(index.len()));
        // Rows of logits in chunks: a vocabulary of 262k makes [rows, V] large, and
        // log p(target) = logit(target) − logsumexp(logits) needs no log-softmax copy of it.
        const CHUNK: i64 = 128;
        let rows = index.len() as i64;
        for at in (0..rows).step_by(CHUNK as usize) {
            let n = CHUNK.min(rows - at);
            let logits = net.logits(&h.narrow(0, at, n))?.to_kind(Kind::Float);
            let picked = logits.gather(1, &tgt.narrow(0, at, n), false).squeeze_dim(1)
                - logits.logsumexp([-1i64].as_slice(), false);
            lp.extend(Vec::<f32>::try_from(picked.to_device(Device::Cpu))?);
            top.extend(Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))?);
        }
        for (i, &(_, Read { q, k, token: tok, .. })) in reads.iter().enumerate() {
            let s = &mut out[q][k];
            s.logprob += lp[i] as f64;
            s.tokens += 1;
            s.greedy &= top[i] == tok;
        }
        progress(
            batch
                .iter()
                .map(|row| row.reads.iter().map(|x| (x.q, x.k)).collect::<std::collections::BTreeSet<_>>().len())
                .sum(),
        );
        start = end;
    }
    Ok(out)
}

/// [`score_ids`] with the model's own device and padding token; a libtorch failure becomes an
/// error naming the model.
pub fn score(
    model: &Model,
    requests: &[IdRequest],
    opts: ScoreOptions,
    progress: impl FnMut(usize),
) -> Result<Vec<Vec<Scored>>> {
    guarded(&model.architecture, || {
        score_ids(model.net.as_ref(), model.device, model.tokenizer.pad_id as i64, requests, opts, progress)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_space_moves_to_the_continuation() {
        assert_eq!(move_trailing_space("Premise because ", "x"), ("Premise because".into(), " x".into()));
        assert_eq!(move_trailing_space("Premise\n\n", " y"), ("Premise".into(), "\n\n y".into()));
        assert_eq!(move_trailing_space("Premise", " y"), ("Premise".into(), " y".into()));
    }

    #[test]
    fn packed_rows_give_each_continuation_the_positions_after_the_context() {
        let r = IdRequest { context: vec![5, 6, 7], continuations: vec![vec![8, 9], vec![10]] };
        let packed = rows(std::slice::from_ref(&r), true);
        assert_eq!(packed.len(), 1);
        let row = &packed[0];
        assert_eq!(row.ids, vec![5, 6, 7, 8, 9, 10]);
        assert_eq!(row.positions, vec![0, 1, 2, 3, 4, 3]);
        // The second continuation hangs off the context's last token, not the first branch.
        assert_eq!(row.branch, vec![None, Some(0), Some(1), Some(2), Some(3), Some(2)]);
        let read = |q, k, at, token| Read { q, k, at, token };
        assert_eq!(row.reads, vec![read(0, 0, 2, 8), read(0, 0, 3, 9), read(0, 1, 2, 10)]);
        let separate = rows(std::slice::from_ref(&r), false);
        assert_eq!(separate.len(), 2);
        assert_eq!(separate[1].ids, vec![5, 6, 7, 10]);
        assert_eq!(separate[1].reads, vec![read(0, 1, 2, 10)]);
    }
}
