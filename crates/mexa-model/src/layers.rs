//! Building blocks shared by the architecture files: norms, rotary embeddings, attention.
use crate::device::Placement;
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// A linear layer `y = x Wᵀ + b`.
/// A weight matrix: resident and dense, or kept in its file's form and made dense only while
/// it is used ([`crate::weights::Stored`]), with identical results.
#[derive(Debug)]
pub enum Weight {
    Dense(Tensor),
    Stored(std::sync::Arc<crate::weights::Stored>),
}

impl Weight {
    /// The dense matrix: the resident tensor, or a fresh one dropped after use.
    pub fn tensor(&self) -> Tensor {
        match self {
            Weight::Dense(t) => t.shallow_clone(),
            Weight::Stored(s) => s.dense(),
        }
    }
    pub fn size(&self) -> Vec<i64> {
        match self {
            Weight::Dense(t) => t.size(),
            Weight::Stored(s) => s.shape().to_vec(),
        }
    }
    /// Token-embedding lookup: `ids` → their rows (a stored table dequantises those rows only).
    pub fn embedding(&self, ids: &Tensor) -> Tensor {
        match self {
            Weight::Dense(t) => Tensor::embedding(t, ids, -1, false, false),
            Weight::Stored(s) => {
                let flat: Vec<i64> =
                    Vec::<i64>::try_from(ids.flatten(0, -1).to_device(tch::Device::Cpu)).expect("token ids are int64");
                let mut uniq = flat.clone();
                uniq.sort_unstable();
                uniq.dedup();
                let table = s.rows(&uniq);
                let local: Vec<i64> = flat.iter().map(|id| uniq.binary_search(id).expect("present") as i64).collect();
                let local = Tensor::from_slice(&local).reshape(ids.size()).to_device(ids.device());
                Tensor::embedding(&table, &local, -1, false, false)
            }
        }
    }
}

impl From<Tensor> for Weight {
    fn from(t: Tensor) -> Self {
        Weight::Dense(t)
    }
}

pub struct Linear {
    pub w: Weight,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w.tensor(), self.b.as_ref())
    }
    /// The same layer with its weight dense for as long as the copy lives (a stored weight
    /// is converted once here instead of at every `forward`).
    pub fn resident(&self) -> Self {
        Self { w: Weight::Dense(self.w.tensor()), b: self.b.as_ref().map(Tensor::shallow_clone) }
    }
}

/// RMSNorm as Llama computes it (in f32, then scaled): `x / rms(x) · w`, or with `offset`
/// (Gemma) `x / rms(x) · (1 + w)`.
pub struct RmsNorm {
    pub w: Tensor,
    pub eps: f64,
    pub offset: bool,
}

impl Clone for RmsNorm {
    fn clone(&self) -> Self {
        Self { w: self.w.shallow_clone(), eps: self.eps, offset: self.offset }
    }
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = &xf * (var + self.eps).rsqrt();
        if self.offset {
            // Gemma multiplies in f32 before casting back.
            (normed * (self.w.to_kind(Kind::Float) + 1.0)).to_kind(kind)
        } else {
            // Llama casts back before multiplying by the weight.
            &self.w * normed.to_kind(kind)
        }
    }
}

/// LayerNorm with weight and bias (BERT).
pub struct LayerNorm {
    pub w: Tensor,
    pub b: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = *x.size().last().unwrap();
        x.layer_norm([d], Some(&self.w), Some(&self.b), self.eps, false)
    }
}

/// How rotary frequencies are scaled (Hugging Face's `rope_scaling`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Llama 3.1's piecewise frequency scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position: f64,
    },
    /// One divisor per frequency, as llama.cpp stores Llama 3.1 scaling in GGUF files
    /// (the `rope_freqs.weight` tensor).
    Factors(Vec<f64>),
}

impl RopeScaling {
    /// Reads `rope_scaling` from a Hugging Face config.
    pub fn from_hf(v: &serde_json::Value) -> Result<Self> {
        if v.is_null() {
            return Ok(Self::None);
        }
        let ty = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
        let f = |k: &str, d: f64| v.get(k).and_then(|x| x.as_f64()).unwrap_or(d);
        Ok(match ty {
            "default" => Self::None,
            "linear" => Self::Linear { factor: f("factor", 1.0) },
            "llama3" => Self::Llama3 {
                factor: f("factor", 8.0),
                low_freq_factor: f("low_freq_factor", 1.0),
                high_freq_factor: f("high_freq_factor", 4.0),
                original_max_position: f("original_max_position_embeddings", 8192.0),
            },
            other => bail!("rope_scaling type `{other}` is not supported (supported: default, linear, llama3)"),
        })
    }
}

/// Rotary position embedding tables, half-split ("NEOX") layout as in Hugging Face.
pub struct Rope {
    inv_freq: Vec<f64>,
}

impl Rope {
    pub fn new(head_dim: usize, base: f64, scaling: &RopeScaling) -> Self {
        let mut inv_freq: Vec<f64> =
            (0..head_dim / 2).map(|i| 1.0 / base.powf((2 * i) as f64 / head_dim as f64)).collect();
        // Hugging Face computes inv_freq in f32: match it.
        for f in inv_freq.iter_mut() {
            *f = *f as f32 as f64;
        }
        match *scaling {
            RopeScaling::Factors(ref fs) => inv_freq.iter_mut().zip(fs).for_each(|(f, d)| *f /= d),
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => inv_freq.iter_mut().for_each(|f| *f /= factor),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => {
                let low_wavelen = original_max_position / low_freq_factor;
                let high_wavelen = original_max_position / high_freq_factor;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    *f = if wavelen < high_wavelen {
                        *f
                    } else if wavelen > low_wavelen {
                        *f / factor
                    } else {
                        let smooth =
                            (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * *f / factor + smooth * *f
                    };
                }
            }
        }
        Self { inv_freq }
    }

    /// (cos, sin) of shape [T, head_dim] for positions 0..t, in `kind`.
    pub fn tables(&self, t: i64, kind: Kind, device: tch::Device) -> (Tensor, Tensor) {
        self.tables_for(&Tensor::arange(t, (Kind::Float, device)), kind)
    }

    /// (cos, sin) for explicit positions: [T] gives [T, head_dim]; [B, T] gives
    /// [B, 1, T, head_dim], which broadcasts over the heads of [B, H, T, head_dim].
    pub fn tables_for(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let inv = Tensor::from_slice(&self.inv_freq.iter().map(|&f| f as f32).collect::<Vec<_>>())
            .to_device(positions.device());
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv;
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let emb = if positions.dim() == 2 { emb.unsqueeze(1) } else { emb };
        (emb.cos().to_kind(kind), emb.sin().to_kind(kind))
    }
}

/// Where each token of a batch sits and which tokens it may attend to.
pub enum Layout<'a> {
    /// A right-padded batch: positions 0..T; `mask` [B, T] is 1 for tokens, 0 for padding.
    Padded(&'a Tensor),
    /// A packed prompt tree (a shared prompt followed by several continuations, each seeing
    /// the prompt and itself only): each token's position [B, T] (int64) and the keys each
    /// query may see, `allowed` [B, T, T] (bool, query × key). Causality is in `allowed`.
    Packed { positions: &'a Tensor, allowed: &'a Tensor },
}

impl Layout<'_> {
    /// The additive attention bias [B, 1, T, T] (see [`attention_bias`]); `window` limits a
    /// causal query to keys less than `window` positions back.
    pub fn bias(&self, causal: bool, window: Option<i64>, kind: Kind) -> Tensor {
        match self {
            Layout::Padded(mask) => attention_bias(mask, causal, window, kind),
            Layout::Packed { positions, allowed } => {
                let mut ok = allowed.to_kind(Kind::Bool);
                if let Some(w) = window {
                    let dist = positions.unsqueeze(2) - positions.unsqueeze(1); // [B, Tq, Tk]
                    ok = ok.logical_and(&dist.lt(w));
                }
                bias_from_allowed(&ok.unsqueeze(1), kind)
            }
        }
    }

    /// Rotary (cos, sin) tables for this layout's positions.
    pub fn rope(&self, rope: &Rope, t: i64, kind: Kind, device: tch::Device) -> (Tensor, Tensor) {
        match self {
            Layout::Padded(_) => rope.tables(t, kind, device),
            Layout::Packed { positions, .. } => rope.tables_for(positions, kind),
        }
    }
}

fn rotate_half(x: &Tensor) -> Tensor {
    let d = *x.size().last().unwrap();
    let x1 = x.narrow(-1, 0, d / 2);
    let x2 = x.narrow(-1, d / 2, d / 2);
    Tensor::cat(&[&(-x2), &x1], -1)
}

/// Applies rotary embeddings to x of shape [B, H, T, D] with tables [T, D].
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    x * cos + rotate_half(x) * sin
}

/// Additive attention mask [B, 1, T, T]: 0 where query i may see key j, a large negative
/// number elsewhere. Causal models see keys j ≤ i (and i − j < window); every model sees
/// only non-padding keys.
pub fn attention_bias(pad_mask: &Tensor, causal: bool, window: Option<i64>, kind: Kind) -> Tensor {
    let t = pad_mask.size()[1];
    let device = pad_mask.device();
    let keys_ok = pad_mask.to_kind(Kind::Bool).unsqueeze(1).unsqueeze(1); // [B,1,1,T]
    let mut allowed = keys_ok.expand([-1, 1, t, t], false);
    let i = Tensor::arange(t, (Kind::Int64, device)).unsqueeze(1);
    let j = Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0);
    let ok = match (causal, window) {
        (true, None) => Some(j.le_tensor(&i)),
        (true, Some(w)) => Some(j.le_tensor(&i).logical_and(&(&i - &j).lt(w))),
        // A bidirectional window (EmbeddingGemma): |i - j| < w.
        (false, Some(w)) => Some((&i - &j).abs().lt(w)),
        (false, None) => None,
    };
    if let Some(ok) = ok {
        allowed = allowed.logical_and(&ok.unsqueeze(0).unsqueeze(0));
    }
    bias_from_allowed(&allowed, kind)
}

/// 0 where `allowed` (bool) is true, the dtype's lowest value elsewhere.
fn bias_from_allowed(allowed: &Tensor, kind: Kind) -> Tensor {
    // The dtype's own lowest value, as transformers uses torch.finfo(dtype).min.
    let min = match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.389_531_389_251_535_5e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    };
    Tensor::zeros(allowed.size(), (kind, allowed.device())).masked_fill(&allowed.logical_not(), min)
}

/// Scaled dot-product attention with an additive bias; optional tanh soft-capping of the
/// logits (Gemma 2). q: [B,H,T,D], k/v: [B,KV,T,D] with H a multiple of KV.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f64, softcap: Option<f64>) -> Tensor {
    if softcap.is_none() {
        let (h, kv) = (q.size()[1], k.size()[1]);
        if q.device().is_cuda() && h != kv {
            // On CUDA, grouped-query heads read in place together with a mask leave only the
            // math kernel (a [B,H,T,T] score tensor); with the key/value heads repeated the
            // memory-efficient kernel takes the mask, as transformers does it.
            let rep = h / kv;
            return Tensor::scaled_dot_product_attention(
                q,
                &repeat_kv(k, rep),
                &repeat_kv(v, rep),
                Some(bias),
                0.0,
                false,
                scale,
                false,
            );
        }
        // libtorch's fused kernel (flash attention on CPU): no [B,H,T,T] score tensor is
        // written out, and grouped-query heads are read in place.
        return Tensor::scaled_dot_product_attention(q, k, v, Some(bias), 0.0, false, scale, true);
    }
    let (h, kv) = (q.size()[1], k.size()[1]);
    let (k, v) = if h != kv {
        let rep = h / kv;
        (repeat_kv(k, rep), repeat_kv(v, rep))
    } else {
        (k.shallow_clone(), v.shallow_clone())
    };
    let mut scores = q.matmul(&k.transpose(-2, -1)) * scale;
    if let Some(c) = softcap {
        scores = (scores / c).tanh() * c;
    }
    let probs = (scores + bias).softmax(-1, Kind::Float).to_kind(q.kind());
    probs.matmul(&v)
}

/// Repeats each key/value head `n` times (grouped-query attention), as HF's `repeat_kv`.
fn repeat_kv(x: &Tensor, n: i64) -> Tensor {
    let s = x.size();
    x.unsqueeze(2).expand([s[0], s[1], n, s[2], s[3]], false).reshape([s[0], s[1] * n, s[2], s[3]])
}

/// [B,T,H*D] → [B,H,T,D]
pub fn split_heads(x: &Tensor, heads: i64, dim: i64) -> Tensor {
    let s = x.size();
    x.view([s[0], s[1], heads, dim]).transpose(1, 2)
}

/// [B,H,T,D] → [B,T,H*D]
pub fn merge_heads(x: &Tensor) -> Tensor {
    let s = x.size();
    x.transpose(1, 2).contiguous().view([s[0], s[2], s[1] * s[3]])
}

/// Rotary base and scaling from a Hugging Face config, in either format: transformers 4's
/// top-level `rope_theta` + `rope_scaling`, or transformers 5's `rope_parameters` (possibly
/// one entry per layer type, e.g. `sliding_attention` / `full_attention`).
pub fn rope_from_hf(v: &serde_json::Value, layer_type: Option<&str>, default_theta: f64) -> Result<(f64, RopeScaling)> {
    if let Some(p) = v.get("rope_parameters").filter(|p| p.is_object()) {
        let p = match layer_type.and_then(|t| p.get(t)) {
            Some(sub) => sub,
            None => p,
        };
        let theta = p["rope_theta"].as_f64().unwrap_or(default_theta);
        return Ok((theta, RopeScaling::from_hf(p)?));
    }
    Ok((v["rope_theta"].as_f64().unwrap_or(default_theta), RopeScaling::from_hf(&v["rope_scaling"])?))
}

/// Runs a decoder's blocks and returns its hidden states as Hugging Face's
/// `output_hidden_states=True` does: the embedding output, the output of every block but the
/// last, and the final norm applied to the last block's output.
pub fn decoder_hidden_states<B>(
    x: Tensor,
    blocks: &[B],
    block: impl FnMut(usize, &B, Tensor) -> Tensor,
    final_norm: impl Fn(&Tensor) -> Tensor,
) -> Vec<Tensor> {
    let mut states = Vec::with_capacity(blocks.len() + 1);
    decoder_hidden_states_each(x, blocks, block, final_norm, &mut |_, h| states.push(h));
    states
}

/// [`decoder_hidden_states`], handing each state to `sink` as it is made.
pub fn decoder_hidden_states_each<B>(
    x: Tensor,
    blocks: &[B],
    mut block: impl FnMut(usize, &B, Tensor) -> Tensor,
    final_norm: impl Fn(&Tensor) -> Tensor,
    sink: &mut dyn FnMut(usize, Tensor),
) {
    sink(0, x.shallow_clone());
    let mut x = x;
    for (i, b) in blocks.iter().enumerate() {
        x = block(i, b, x);
        if i + 1 < blocks.len() {
            sink(i + 1, x.shallow_clone());
        }
    }
    sink(blocks.len(), final_norm(&x));
}

/// A pre-norm decoder seen as its parts, so that one driver runs every family the same
/// ways: batch by batch streaming its states ([`run_each`]), layer by layer over a chunk of
/// batches ([`run_chunk`]), and with its layers split over devices ([`Placement`]).
pub trait Decoder {
    type Block;
    /// What a batch's blocks share: attention biases, rotary tables (on one device).
    type Context;
    fn blocks(&self) -> &[Self::Block];
    fn placement(&self) -> &Placement;
    /// The embedding output of `ids` (on the first device).
    fn embed(&self, ids: &Tensor) -> Tensor;
    /// The batch's shared tensors for `t` positions in `kind`, on `device`.
    fn context(&self, layout: &Layout, t: i64, kind: Kind, device: Device) -> Self::Context;
    /// Block `i` applied to `x`.
    fn block(&self, i: usize, b: &Self::Block, cx: &Self::Context, x: Tensor) -> Tensor;
    fn final_norm(&self, x: &Tensor) -> Tensor;
    /// The block with every stored weight made dense (see [`Linear::resident`]).
    fn resident(b: &Self::Block) -> Self::Block;
}

/// A batch's contexts, one per device it passes through.
struct Contexts<C>(Vec<(Device, C)>);

impl<C> Contexts<C> {
    fn on(&mut self, device: Device, make: impl FnOnce() -> C) -> &C {
        let i = match self.0.iter().position(|(d, _)| *d == device) {
            Some(i) => i,
            None => {
                self.0.push((device, make()));
                self.0.len() - 1
            }
        };
        &self.0[i].1
    }
}

/// Moves `x` to the device of layer `i` (nothing when it is there).
fn to_layer(p: &Placement, i: usize, x: Tensor) -> Tensor {
    let d = p.layer(i);
    if x.device() == d {
        x
    } else {
        x.to_device(d)
    }
}

/// Runs a decoder over one batch, handing each hidden state to `sink` as it is made (as
/// Hugging Face's `output_hidden_states=True`: the embedding output, every block's output
/// but the last, the final norm of the last). A split model's states are on the device of
/// the layer that made them.
pub fn run_each<D: Decoder>(d: &D, ids: &Tensor, layout: &Layout, sink: &mut dyn FnMut(usize, Tensor)) {
    let x = d.embed(ids);
    let (t, kind) = (ids.size()[1], x.kind());
    let mut cxs = Contexts(Vec::new());
    let blocks = d.blocks();
    sink(0, x.shallow_clone());
    let mut x = x;
    for (i, b) in blocks.iter().enumerate() {
        x = to_layer(d.placement(), i, x);
        let dev = x.device();
        let cx = cxs.on(dev, || d.context(layout, t, kind, dev));
        x = d.block(i, b, cx, x);
        if i + 1 < blocks.len() {
            sink(i + 1, x.shallow_clone());
        }
    }
    sink(blocks.len(), d.final_norm(&x));
}

/// Every hidden state of one batch, collected ([`run_each`]).
pub fn states<D: Decoder>(d: &D, ids: &Tensor, layout: &Layout) -> Vec<Tensor> {
    let mut v = Vec::with_capacity(d.blocks().len() + 1);
    run_each(d, ids, layout, &mut |_, h| v.push(h));
    v
}

/// Runs a decoder layer-major over several padded batches (`(ids, mask)` pairs): each
/// block's weights are made dense once ([`Decoder::resident`]) and applied to every batch
/// before the next block, the batches' activations kept between blocks. `sink(batch, state,
/// tensor)` gets every state of every batch, layer by layer. Each batch's states are the
/// ones [`run_each`] makes, bit for bit: the same operations on the same tensors, in
/// another order.
pub fn run_chunk<D: Decoder>(d: &D, batches: &[(Tensor, Tensor)], sink: &mut dyn FnMut(usize, usize, Tensor)) {
    let blocks = d.blocks();
    let mut xs: Vec<Tensor> = batches.iter().map(|(ids, _)| d.embed(ids)).collect();
    let mut cxs: Vec<Contexts<D::Context>> = batches.iter().map(|_| Contexts(Vec::new())).collect();
    for (bi, x) in xs.iter().enumerate() {
        sink(bi, 0, x.shallow_clone());
    }
    for (i, b) in blocks.iter().enumerate() {
        let dense = D::resident(b);
        for (bi, (ids, mask)) in batches.iter().enumerate() {
            let x = to_layer(d.placement(), i, xs[bi].shallow_clone());
            let dev = x.device();
            let (t, kind) = (ids.size()[1], x.kind());
            let cx = cxs[bi].on(dev, || d.context(&Layout::Padded(mask), t, kind, dev));
            xs[bi] = d.block(i, &dense, cx, x);
            if i + 1 < blocks.len() {
                sink(bi, i + 1, xs[bi].shallow_clone());
            } else {
                sink(bi, i + 1, d.final_norm(&xs[bi]));
            }
        }
    }
}

/// `f` over `h`'s rows a few hundred at a time (the logits of a whole batch against a 256k
/// vocabulary would be gigabytes).
fn by_rows<T>(h: &Tensor, f: impl Fn(&Tensor) -> T) -> Vec<T> {
    const ROWS: i64 = 256;
    let p = h.size()[0];
    (0..p).step_by(ROWS as usize).map(|s| f(&h.narrow(0, s, ROWS.min(p - s)))).collect()
}

/// The top-1 column of `h · headᵀ` for every row of `h` [P, D] ([`by_rows`]). Returns [P].
pub fn top1_rows(h: &Tensor, head: &Tensor) -> Tensor {
    let h = h.to_device(head.device()).to_kind(head.kind());
    let parts = by_rows(&h, |rows| rows.matmul(&head.tr()).argmax(-1, false));
    if parts.is_empty() {
        Tensor::zeros([0], (Kind::Int64, head.device()))
    } else {
        Tensor::cat(&parts, 0)
    }
}

/// The logit lens's first half for a decoder: the rows of hidden state `state` through the
/// final norm (the last state already has it), on the head's device.
pub fn lens_norm<D: Decoder>(d: &D, state: usize, hidden: &Tensor) -> Tensor {
    let h = hidden.to_device(d.placement().last());
    if state < d.blocks().len() {
        d.final_norm(&h)
    } else {
        h
    }
}

/// The LM head as the logit lens uses it. Made dense on first use and kept (a stored head
/// would otherwise be converted for every batch and hidden state), unless the load hands
/// weights' pages back (a memory budget below even the stored weights): then each use makes
/// it dense a block of vocabulary rows at a time and never holds more than one block.
#[derive(Default)]
pub struct LensHead(std::sync::Mutex<Option<Tensor>>);

/// Most bytes of the LM head a streamed lens makes dense at once.
const LENS_BLOCK_BYTES: usize = 32 << 20;

impl LensHead {
    /// [`top1_rows`] of `h` [P, D] against `head`.
    pub fn top1(&self, head: &Weight, h: &Tensor) -> Tensor {
        if let Weight::Stored(s) = head {
            if s.releases() {
                return top1_streamed(s, h);
            }
        }
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        top1_rows(h, &g.get_or_insert_with(|| head.tensor()).shallow_clone())
    }
}

/// [`top1_rows`] against a stored head made dense a block of rows at a time: each block's
/// best column per row, the first block keeping a tie (as `argmax` keeps the first column).
fn top1_streamed(head: &crate::weights::Stored, h: &Tensor) -> Tensor {
    let (vocab, width) = (head.shape()[0], head.shape()[1]);
    let (kind, device) = head.kind_device();
    let h = h.to_device(device).to_kind(kind);
    if h.size()[0] == 0 {
        return Tensor::zeros([0], (Kind::Int64, device));
    }
    let block = (LENS_BLOCK_BYTES as i64 / (width * 4).max(1)).max(1);
    let mut best: Option<(Tensor, Tensor)> = None;
    for v0 in (0..vocab).step_by(block as usize) {
        let w = head.row_range(v0, block.min(vocab - v0));
        let (values, indices): (Vec<Tensor>, Vec<Tensor>) =
            by_rows(&h, |rows| rows.matmul(&w.tr()).max_dim(-1, false)).into_iter().unzip();
        let (value, index) = (Tensor::cat(&values, 0), Tensor::cat(&indices, 0) + v0);
        best = Some(match best {
            None => (value, index),
            Some((bv, bi)) => {
                let better = value.gt_tensor(&bv);
                (value.where_self(&better, &bv), index.where_self(&better, &bi))
            }
        });
    }
    best.map_or_else(|| Tensor::zeros([0], (Kind::Int64, device)), |(_, i)| i)
}
