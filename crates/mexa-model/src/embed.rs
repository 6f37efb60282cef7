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
/// ([`crate::HiddenStates::lens_norm`] and [`crate::HiddenStates::lens_top1`]: the final
/// norm and the LM head).
pub type LensTop1 = Vec<Vec<Vec<i32>>>;

/// Pooled vectors on their way into [`Pooled::data`]. On a CPU each batch's vectors are
/// written straight into the output at their sentences' rows. On a GPU they are written into
/// a buffer on the model's device, batch after batch (batches come in length order), and a
/// full buffer goes to the host in one copy per pooling, its rows put in sentence order
/// there: the host never waits on the GPU per batch, and each vector is copied on the host
/// once.
///
/// Invariant: `dst`'s tensors alias the `Pooled::data` of the slice `Gather::new` borrowed;
/// the lifetime keeps that slice mutably borrowed (unread, unmoved) for as long as they exist.
struct Gather<'a> {
    /// Per pooling, the output as a [states, n, D] tensor over its `Pooled::data`.
    dst: Vec<Tensor>,
    /// Per pooling, the device buffer [states, rows, D]; empty on a CPU.
    buf: Vec<Tensor>,
    /// Sentence index of each buffered row.
    rows: Vec<i64>,
    out: std::marker::PhantomData<&'a mut [Pooled]>,
}

/// Where one batch's vectors go: its first row in the device buffer, and its sentences.
struct Slot {
    offset: i64,
    sentences: Tensor,
}

/// Most bytes of pooled vectors a GPU buffers before a copy to the host (declared by the
/// `embed` stage as GPU memory it holds).
pub const GATHER_BYTES: usize = 1 << 30;

impl<'a> Gather<'a> {
    /// Writes into `out`, which stays borrowed until the `Gather` is dropped (flush it first).
    /// `buffer`: the device buffer's rows (None: write straight into the output, on a CPU).
    fn new(out: &'a mut [Pooled], dev: tch::Device, buffer: Option<usize>) -> Self {
        let dst = out
            .iter_mut()
            .map(|o| {
                let shape = [o.layers as i64, o.n as i64, o.dim as i64];
                assert_eq!(o.data.len(), o.layers * o.n * o.dim, "pooled output of the wrong size");
                // SAFETY: the tensor covers exactly `o.data` (asserted), which `out`'s borrow
                // (held by `Gather<'a>`) keeps alive, unmoved and otherwise untouched while the
                // tensor exists; tensors are dropped with the `Gather`.
                unsafe {
                    Tensor::from_blob(o.data.as_mut_ptr() as *const u8, &shape, &[], Kind::Float, tch::Device::Cpu)
                }
            })
            .collect();
        let mut g = Gather { dst, buf: Vec::new(), rows: Vec::new(), out: std::marker::PhantomData };
        if let Some(rows) = buffer {
            g.grow(rows.max(1), dev);
        }
        g
    }

    fn grow(&mut self, rows: usize, dev: tch::Device) {
        self.buf = self
            .dst
            .iter()
            .map(|d| {
                let s = d.size();
                Tensor::empty([s[0], rows as i64, s[2]], (Kind::Float, dev))
            })
            .collect();
    }

    /// Rows for the batch of these sentences (a full buffer is copied out first).
    fn reserve(&mut self, sentences: &[usize]) -> Slot {
        let ids: Vec<i64> = sentences.iter().map(|&i| i as i64).collect();
        let slot = |offset: usize| Slot { offset: offset as i64, sentences: Tensor::from_slice(&ids) };
        let Some(b) = self.buf.first() else { return slot(0) };
        let (cap, dev) = (b.size()[1] as usize, b.device());
        if self.rows.len() + ids.len() > cap {
            self.flush();
            if ids.len() > cap {
                self.grow(ids.len(), dev);
            }
        }
        let offset = self.rows.len();
        self.rows.extend_from_slice(&ids);
        slot(offset)
    }

    /// Pooling `k`'s vectors [B, D] of one state of the batch in `slot`.
    fn put(&mut self, k: usize, state: usize, slot: &Slot, v: &Tensor) {
        let state = state as i64;
        match self.buf.get(k) {
            Some(b) => {
                let mut rows = b.get(state).narrow(0, slot.offset, v.size()[0]);
                rows.copy_(v)
            }
            None => {
                let _ = self.dst[k].get(state).index_copy_(0, &slot.sentences, &v.to_device(tch::Device::Cpu));
            }
        }
    }

    /// The buffered rows to the host, in sentence order.
    fn flush(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let (used, idx) = (self.rows.len() as i64, Tensor::from_slice(&self.rows));
        for (d, b) in self.dst.iter_mut().zip(&self.buf) {
            let _ = d.index_copy_(1, &idx, &b.narrow(1, 0, used).to_device(tch::Device::Cpu));
        }
        self.rows.clear();
    }
}

/// Most bytes of normed lens rows kept before they are decoded.
const LENS_KEEP_BYTES: usize = 256 << 20;

/// Decodes the pending lens rows — each entry one state's rows of some sentences, in order,
/// through the final norm — in one pass over the LM head (a streamed head is made dense once
/// for all of them), appending each sentence's row of tokens for that state to `top1`.
/// Entries of one sentence come in state order, so its rows go in state order.
fn decode_lens(
    net: &dyn crate::HiddenStates,
    pending: &mut Vec<(Vec<usize>, Tensor)>,
    ids: &[Vec<i64>],
    top1: &mut LensTop1,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let rows = Tensor::cat(&pending.iter().map(|p| p.1.shallow_clone()).collect::<Vec<_>>(), 0);
    let flat = Vec::<i64>::try_from(net.lens_top1(&rows)?.to_device(tch::Device::Cpu))?;
    let mut at = 0;
    for (sentences, _) in pending.drain(..) {
        for i in sentences {
            let len = ids[i].len();
            top1[i].push(flat[at..at + len].iter().map(|&x| x as i32).collect());
            at += len;
        }
    }
    Ok(())
}

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
    if n == 0 || out.is_empty() {
        return Ok((out, top1));
    }
    let pad = model.pad;
    let dev = model.device;
    let buffer = (dev != tch::Device::Cpu).then(|| n.min(GATHER_BYTES / (layers * dim * 4 * out.len()).max(1)));
    let mut gather = Gather::new(&mut out, dev, buffer);
    // Batches as ranges of `order`; then chunks of consecutive batches.
    let mut batches = Vec::new();
    let mut start = 0;
    while start < n {
        let end = batch_end(start, n, ids[order[start]].len(), opts);
        batches.push(start..end);
        start = end;
    }
    // Every batch's ids and masks, right-padded, on the device before the first forward
    // pass: a copy to a GPU waits for the work queued before it, so copying each batch's
    // inputs just before its pass would leave the GPU idle between batches.
    let mut inputs = Vec::with_capacity(batches.len());
    let mut masks = Vec::with_capacity(batches.len());
    for r in &batches {
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
        let (inputs, masks) = (&inputs[first..last], &masks[first..last]);
        let slots: Vec<Slot> = chunk.iter().map(|r| gather.reserve(&order[r.clone()])).collect();
        // Each layer is pooled as soon as the network makes it and then let go, so a batch
        // never holds every layer's token states at once (families that stream them).
        let mut made = vec![0usize; chunk.len()];
        let mut lens_err = None;
        let mut pending = Vec::new();
        guarded(model.architecture, || {
            model.net.forward_chunk(inputs, &mut |bi, state, h| {
                // A model split over devices makes later states elsewhere: pool there.
                let (mask_f, lengths) = &masks[bi];
                let (mask_f, lengths) = (mask_f.to_device(h.device()), lengths.to_device(h.device()));
                let hf = h.to_kind(Kind::Float);
                for (k, &p) in poolings.iter().enumerate() {
                    gather.put(k, state, &slots[bi], &pool(&hf, &mask_f, &lengths, p));
                }
                made[bi] += 1;
                // The lens: every position of this batch's lens sentences, through the final
                // norm now and decoded with the rest of the chunk's (one pass over the head).
                let rows: Vec<(usize, usize)> = order[chunk[bi].clone()]
                    .iter()
                    .enumerate()
                    .filter(|(_, &i)| i < lens)
                    .map(|(r, &i)| (r, i))
                    .collect();
                if !rows.is_empty() && lens_err.is_none() {
                    let parts: Vec<Tensor> =
                        rows.iter().map(|&(r, i)| h.get(r as i64).narrow(0, 0, ids[i].len() as i64)).collect();
                    let step = model.net.lens_norm(state, &Tensor::cat(&parts, 0)).and_then(|t| {
                        pending.push((rows.iter().map(|&(_, i)| i).collect(), t));
                        match pending.iter().map(|p| p.1.numel() * 4).sum::<usize>() > LENS_KEEP_BYTES {
                            true => decode_lens(model.net, &mut pending, ids, &mut top1),
                            false => Ok(()),
                        }
                    });
                    if let Err(e) = step {
                        lens_err = Some(e);
                    }
                }
            })
        })?;
        if lens_err.is_none() {
            lens_err = decode_lens(model.net, &mut pending, ids, &mut top1).err();
        }
        if let Some(e) = lens_err {
            return Err(e.context("logit lens"));
        }
        if let Some(&m) = made.iter().find(|&&m| m != layers) {
            bail!("internal error: {m} hidden states, expected {layers}");
        }
        chunk.iter().for_each(|r| progress(r.len()));
        first = last;
    }
    gather.flush();
    drop(gather);
    Ok((out, top1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device buffer's bookkeeping (rows reserved batch by batch, flushed when full,
    /// grown for a batch larger than it) puts every vector where writing it straight into the
    /// output does: run on the CPU through both paths.
    #[test]
    fn buffered_gather_matches_direct_writes() {
        let (layers, n, dim) = (3usize, 11usize, 5usize);
        let batches: [&[usize]; 5] = [&[4, 9, 0], &[2, 7], &[10, 1, 3, 5, 6, 8], &[], &[]];
        let value = |k: usize, l: usize, i: usize, j: usize| (k * 1000 + l * 100 + i * 10 + j) as f32;
        let run = |buffer: Option<usize>| {
            let mut out: Vec<Pooled> = (0..2)
                .map(|_| Pooled {
                    pooling: Pooling::Last,
                    layers,
                    n,
                    dim,
                    data: vec![-1.0; layers * n * dim],
                    tokens: vec![1; n],
                })
                .collect();
            {
                let mut g = Gather::new(&mut out, tch::Device::Cpu, buffer);
                for batch in batches.iter().filter(|b| !b.is_empty()) {
                    let slot = g.reserve(batch);
                    for l in 0..layers {
                        for k in 0..2 {
                            let v: Vec<f32> =
                                batch.iter().flat_map(|&i| (0..dim).map(move |j| value(k, l, i, j))).collect();
                            g.put(k, l, &slot, &Tensor::from_slice(&v).view([batch.len() as i64, dim as i64]));
                        }
                    }
                }
                g.flush();
            }
            out
        };
        for buffer in [None, Some(2), Some(4), Some(n)] {
            let out = run(buffer);
            for (k, o) in out.iter().enumerate() {
                for l in 0..layers {
                    for i in 0..n {
                        let want: Vec<f32> = (0..dim).map(|j| value(k, l, i, j)).collect();
                        assert_eq!(
                            o.vector(l, i),
                            want.as_slice(),
                            "buffer {buffer:?}, pooling {k}, layer {l}, sentence {i}"
                        );
                    }
                }
            }
        }
    }
}
