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
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self { max_tokens: 4096, max_sentences: 64 }
    }
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
    mut progress: impl FnMut(usize),
) -> Result<Vec<Pooled>> {
    let _guard = tch::no_grad_guard();
    let n = sentences.len();
    let layers = model.net.num_hidden_states();
    let dim = model.net.hidden_size();
    let ids: Vec<Vec<i64>> = sentences.iter().map(|s| model.tokenizer.encode(s)).collect::<Result<_>>()?;
    if let Some(i) = ids.iter().position(|t| t.is_empty()) {
        bail!("sentence {} tokenizes to nothing", i + 1);
    }
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
    let pad = model.tokenizer.pad_id as i64;
    let mut start = 0;
    while start < n {
        let longest = ids[order[start]].len();
        let end = batch_end(start, n, longest, opts);
        let batch = &order[start..end];
        let b = batch.len();
        let mut flat = vec![pad; b * longest];
        let mut m = vec![0f32; b * longest];
        let mut lens = vec![0i64; b];
        for (r, &i) in batch.iter().enumerate() {
            flat[r * longest..r * longest + ids[i].len()].copy_from_slice(&ids[i]);
            m[r * longest..r * longest + ids[i].len()].iter_mut().for_each(|v| *v = 1.0);
            lens[r] = ids[i].len() as i64;
        }
        check_vocab(model.net.as_ref(), &flat)?;
        let dev = model.device;
        let ids_t = Tensor::from_slice(&flat).view([b as i64, longest as i64]).to_device(dev);
        let mask_f = Tensor::from_slice(&m).view([b as i64, longest as i64]).to_device(dev);
        let lens_t = Tensor::from_slice(&lens).to_device(dev);
        // Each layer is pooled as soon as the network makes it and then let go, so a batch
        // never holds every layer's token states at once (families that stream them).
        let mut pooled: Vec<Vec<Tensor>> = out.iter().map(|_| Vec::with_capacity(layers)).collect();
        let mask_i = mask_f.to_kind(Kind::Int64);
        guarded(&model.architecture, || {
            model.net.forward_each(&ids_t, &mask_i, &mut |_, h| {
                for (k, o) in out.iter().enumerate() {
                    pooled[k].push(pool(&h, &mask_f, &lens_t, o.pooling));
                }
            })
        })?;
        if pooled.first().is_some_and(|p| p.len() != layers) {
            bail!("internal error: {} hidden states, expected {layers}", pooled[0].len());
        }
        for (o, pooled) in out.iter_mut().zip(&pooled) {
            // Every layer pooled on the model's device, then one copy to the host per pooling
            // and batch (on a GPU, each copy is a synchronisation).
            let v = Tensor::stack(pooled, 0).to_device(tch::Device::Cpu).contiguous(); // [L, B, D]
            let v: Vec<f32> = Vec::<f32>::try_from(v.view([-1]))?;
            for li in 0..layers {
                for (r, &i) in batch.iter().enumerate() {
                    let (src, dst) = ((li * b + r) * dim, (li * n + i) * dim);
                    o.data[dst..dst + dim].copy_from_slice(&v[src..src + dim]);
                }
            }
        }
        progress(end - start);
        start = end;
    }
    Ok(out)
}
