//! Sentence embeddings from every layer: batches sorted by length, right padding with an
//! attention mask, one forward pass per batch, every requested pooling computed from that
//! pass, and only pooled vectors kept (never all token states).
use crate::model::Model;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// How a layer's token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Position-weighted mean over the sentence's tokens, weights 1..T (SGPT; MEXA's default).
    Weighted,
    /// The last token's state.
    Last,
    /// Plain mean over the sentence's tokens.
    Mean,
}

impl Pooling {
    pub const ALL: [Pooling; 3] = [Pooling::Weighted, Pooling::Last, Pooling::Mean];
    /// The names pipelines and tables use, in [`Pooling::ALL`]'s order.
    pub const NAMES: &'static [&'static str] = &["weighted", "last", "mean"];
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Weighted => "weighted",
            Pooling::Last => "last",
            Pooling::Mean => "mean",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "weighted" => Pooling::Weighted,
            "last" => Pooling::Last,
            "mean" => Pooling::Mean,
            other => bail!("unknown pooling `{other}`: expected weighted, last or mean"),
        })
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Pooled embeddings of `n` sentences at `layers` hidden states, width `dim`:
/// `data[(layer * n + sentence) * dim ..]`.
#[derive(Debug, Clone)]
pub struct Pooled {
    pub pooling: Pooling,
    pub layers: usize,
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
    /// Token count of each sentence (special tokens included).
    pub tokens: Vec<usize>,
}

impl Pooled {
    pub fn vector(&self, layer: usize, sentence: usize) -> &[f32] {
        let o = (layer * self.n + sentence) * self.dim;
        &self.data[o..o + self.dim]
    }
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Most padded tokens (sentences × longest) in one batch.
    pub max_tokens: usize,
    pub max_sentences: usize,
    /// Layer-major execution: batches are grouped into chunks of up to this many padded
    /// tokens, and the model runs each layer over a whole chunk before the next
    /// ([`crate::HiddenStates::forward_chunk`]), so a stored weight is made dense once per
    /// chunk instead of once per batch. 0: batch by batch. The results are the same.
    pub chunk_tokens: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self { max_tokens: 4096, max_sentences: 64, chunk_tokens: 0 }
    }
}

/// Padded tokens per layer-major chunk that keep its activations within `bytes`: each
/// batch's hidden state (width `hidden` in `kind`) is held between layers, and the layer's
/// working copies beside it; counted three times.
pub fn chunk_tokens(bytes: u64, hidden: usize, kind: Kind) -> usize {
    (bytes / (3 * hidden.max(1) as u64 * kind.elt_size_in_bytes() as u64)).max(1) as usize
}

/// The end of the batch that starts at `start` of `n` length-sorted (longest first) rows:
/// as many rows as fit `max_tokens` padded tokens and `max_sentences` (at least one row).
pub(crate) fn batch_end(start: usize, n: usize, longest: usize, opts: BatchOptions) -> usize {
    let mut end = start + 1;
    while end < n && end - start < opts.max_sentences && (end - start + 1) * longest <= opts.max_tokens.max(longest) {
        end += 1;
    }
    end
}

/// Every token id must be a row of the model's embedding table.
pub(crate) fn check_vocab(net: &dyn crate::HiddenStates, ids: &[i64]) -> Result<()> {
    if let (Some(rows), Some(&max)) = (net.vocab_rows(), ids.iter().max()) {
        if max >= rows {
            bail!("token id {max} is past the model's {rows}-row embedding table: the tokenizer does not belong to these weights");
        }
    }
    Ok(())
}

/// Runs `f`, turning a panic into an error that names the model: tch turns libtorch
/// exceptions (a token id past the embedding table, a shape the weights do not fit) into
/// panics.
pub(crate) fn guarded<T>(architecture: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let first = msg.lines().next().unwrap_or("").to_string();
        anyhow::anyhow!(
            "the {architecture} model failed on a batch (do the tokenizer and the weights belong together?): {first}"
        )
    })?
}

/// Pools one layer's states [B, T, D] (mask [B, T] float, lens [B]) into [B, D].
pub fn pool(h: &Tensor, mask: &Tensor, lens: &Tensor, p: Pooling) -> Tensor {
    let h = h.to_kind(Kind::Float);
    match p {
        Pooling::Weighted => {
            let t = h.size()[1];
            let w = Tensor::arange_start(1, t + 1, (Kind::Float, h.device())).unsqueeze(0) * mask;
            (&h * w.unsqueeze(-1)).sum_dim_intlist(1, false, Kind::Float) / w.sum_dim_intlist(1, true, Kind::Float)
        }
        Pooling::Mean => {
            (&h * mask.unsqueeze(-1)).sum_dim_intlist(1, false, Kind::Float)
                / mask.sum_dim_intlist(1, true, Kind::Float)
        }
        Pooling::Last => {
            let idx = (lens - 1).view([-1, 1, 1]).expand([-1, 1, h.size()[2]], false);
            h.gather(1, &idx, false).squeeze_dim(1)
        }
    }
}

/// Embeds `sentences` with every pooling in `poolings`, reporting progress (sentences done).
pub fn embed(
    model: &Model,
    sentences: &[String],
    poolings: &[Pooling],
    opts: BatchOptions,
    progress: impl FnMut(usize),
) -> Result<Vec<Pooled>> {
    let ids = encode_all(model, sentences)?;
    Ok(embed_ids(&model.runner(), &ids, poolings, opts, 0, progress)?.0)
}

/// What running a network over token ids needs: the network, its name for errors, the
/// device its inputs go to, and the padding id.
pub struct Runner<'a> {
    pub net: &'a dyn crate::HiddenStates,
    pub architecture: &'a str,
    pub device: tch::Device,
    pub pad: i64,
}

impl Model {
    /// This model as a [`Runner`].
    pub fn runner(&self) -> Runner<'_> {
        Runner {
            net: self.net.as_ref(),
            architecture: &self.architecture,
            device: self.device,
            pad: self.tokenizer.pad_id as i64,
        }
    }
}

/// Every sentence's token ids; a sentence that tokenizes to nothing is an error.
pub fn encode_all(model: &Model, sentences: &[String]) -> Result<Vec<Vec<i64>>> {
    let ids: Vec<Vec<i64>> = sentences.iter().map(|s| model.tokenizer.encode(s)).collect::<Result<_>>()?;
    if let Some(i) = ids.iter().position(|t| t.is_empty()) {
        bail!("sentence {} tokenizes to nothing", i + 1);
    }
    Ok(ids)
}

/// The logit lens of the first `lens` sentences: `top1[sentence][state]` holds, for every
/// token position, the id of the most likely next token read off that hidden state
/// ([`crate::HiddenStates::lens_logits`]: the final norm and the LM head).
pub type LensTop1 = Vec<Vec<Vec<i32>>>;

/// [`embed`] on token ids, and with `lens > 0` the logit lens of the first `lens` sentences
/// from the same forward passes (the model needs its LM head).
pub fn embed_ids(
    model: &Runner,
    ids: &[Vec<i64>],
    poolings: &[Pooling],
    opts: BatchOptions,
    lens: usize,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<Pooled>, LensTop1)> {
    let _guard = tch::no_grad_guard();
    let n = ids.len();
    let layers = model.net.num_hidden_states();
    let dim = model.net.hidden_size();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let mut out: Vec<Pooled> = poolings
        .iter()
        .map(|&p| Pooled {
            pooling: p,
            layers,
            n,
            dim,
            data: vec![0f32; layers * n * dim],
            tokens: ids.iter().map(Vec::len).collect(),
        })
        .collect();
    let lens = lens.min(n);
    let mut top1: LensTop1 = vec![Vec::with_capacity(layers); lens];
    let pad = model.pad;
    // Batches as ranges of `order`; then chunks of consecutive batches.
    let mut batches = Vec::new();
    let mut start = 0;
    while start < n {
        let end = batch_end(start, n, ids[order[start]].len(), opts);
        batches.push(start..end);
        start = end;
    }
    let padded = |r: &std::ops::Range<usize>| r.len() * ids[order[r.start]].len();
    let mut first = 0;
    while first < batches.len() {
        let mut last = first + 1;
        let mut tokens = padded(&batches[first]);
        while last < batches.len() && tokens + padded(&batches[last]) <= opts.chunk_tokens {
            tokens += padded(&batches[last]);
            last += 1;
        }
        let chunk = &batches[first..last];
        let dev = model.device;
        // Each batch's ids and masks, right-padded.
        let mut inputs = Vec::with_capacity(chunk.len());
        let mut masks = Vec::with_capacity(chunk.len());
        for r in chunk {
            let batch = &order[r.clone()];
            let (b, longest) = (batch.len(), ids[batch[0]].len());
            let mut flat = vec![pad; b * longest];
            let mut m = vec![0f32; b * longest];
            let mut lens = vec![0i64; b];
            for (row, &i) in batch.iter().enumerate() {
                flat[row * longest..row * longest + ids[i].len()].copy_from_slice(&ids[i]);
                m[row * longest..row * longest + ids[i].len()].iter_mut().for_each(|v| *v = 1.0);
                lens[row] = ids[i].len() as i64;
            }
            check_vocab(model.net, &flat)?;
            let ids_t = Tensor::from_slice(&flat).view([b as i64, longest as i64]).to_device(dev);
            let mask_f = Tensor::from_slice(&m).view([b as i64, longest as i64]).to_device(dev);
            inputs.push((ids_t, mask_f.to_kind(Kind::Int64)));
            masks.push((mask_f, Tensor::from_slice(&lens).to_device(dev)));
        }
        // Each layer is pooled as soon as the network makes it and then let go, so a batch
        // never holds every layer's token states at once (families that stream them).
        // pooled[batch][pooling][state], each [B, D] on the first device.
        let mut pooled: Vec<Vec<Vec<Tensor>>> =
            chunk.iter().map(|_| out.iter().map(|_| Vec::with_capacity(layers)).collect()).collect();
        let mut lens_err = None;
        guarded(model.architecture, || {
            model.net.forward_chunk(&inputs, &mut |bi, state, h| {
                // A model split over devices makes later states elsewhere: pool there.
                let (mask_f, lengths) = &masks[bi];
                let (mask_f, lengths) = (mask_f.to_device(h.device()), lengths.to_device(h.device()));
                for (k, o) in out.iter().enumerate() {
                    pooled[bi][k].push(pool(&h, &mask_f, &lengths, o.pooling).to_device(dev));
                }
                // The lens: every position of this batch's lens sentences at once.
                let rows: Vec<(usize, usize)> = order[chunk[bi].clone()]
                    .iter()
                    .enumerate()
                    .filter(|(_, &i)| i < lens)
                    .map(|(r, &i)| (r, i))
                    .collect();
                if !rows.is_empty() && lens_err.is_none() {
                    let parts: Vec<Tensor> =
                        rows.iter().map(|&(r, i)| h.get(r as i64).narrow(0, 0, ids[i].len() as i64)).collect();
                    match model.net.lens_top1(state, &Tensor::cat(&parts, 0)) {
                        Ok(t) => {
                            let flat = Vec::<i64>::try_from(t.to_device(tch::Device::Cpu)).unwrap_or_default();
                            let mut at = 0;
                            for &(_, i) in &rows {
                                let len = ids[i].len();
                                top1[i].push(flat[at..at + len].iter().map(|&x| x as i32).collect());
                                at += len;
                            }
                        }
                        Err(e) => lens_err = Some(e),
                    }
                }
            })
        })?;
        if let Some(e) = lens_err {
            return Err(e.context("logit lens"));
        }
        for (r, pooled) in chunk.iter().zip(&pooled) {
            let batch = &order[r.clone()];
            let b = batch.len();
            for (o, pooled) in out.iter_mut().zip(pooled) {
                if pooled.len() != layers {
                    bail!("internal error: {} hidden states, expected {layers}", pooled.len());
                }
                // Every layer pooled on the model's device, then one copy to the host per
                // pooling and batch (on a GPU, each copy is a synchronisation).
                let v = Tensor::stack(pooled, 0).to_device(tch::Device::Cpu).contiguous(); // [L, B, D]
                let v: Vec<f32> = Vec::<f32>::try_from(v.view([-1]))?;
                for li in 0..layers {
                    for (row, &i) in batch.iter().enumerate() {
                        let (src, dst) = ((li * b + row) * dim, (li * n + i) * dim);
                        o.data[dst..dst + dim].copy_from_slice(&v[src..src + dim]);
                    }
                }
            }
            progress(b);
        }
        first = last;
    }
    Ok((out, top1))
}
