//! GGUF files as llama.cpp writes them (version 2 and 3): metadata, tensor directory, and
//! dequantisation of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K tensors
//! to f32. Block layouts follow ggml-quants.c; tests compare against gguf-py's NumPy code.
use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(v) => Some(*v),
            Value::I64(v) if *v >= 0 => Some(*v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F64(v) => Some(*v),
            Value::U64(v) => Some(*v as f64),
            Value::I64(v) => Some(*v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// ggml tensor types mexa can dequantise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    pub fn from_id(id: u32) -> Result<Self> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::F16,
            30 => Self::BF16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            other => bail!("ggml tensor type {other} is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)"),
        })
    }
    /// (values per block, bytes per block)
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
        }
    }
}

/// One tensor's directory entry.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Shape in PyTorch order (slowest dimension first): GGUF's `ne` reversed.
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    /// Absolute byte offset in the file.
    pub offset: u64,
    type_id: u32,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn byte_len(&self) -> usize {
        let (bv, bb) = self.ty.block();
        self.numel() / bv * bb
    }
}

/// A parsed GGUF file (metadata and directory; tensor data is read on demand).
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
}

struct Rd<R: Read> {
    r: R,
    /// The file's size: no string or array can be longer (a corrupt length must not allocate).
    limit: u64,
}

impl<R: Read> Rd<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        if n > self.limit {
            bail!("a string of {n} bytes in a {}-byte file: corrupt file", self.limit);
        }
        let n = n as usize;
        let mut b = vec![0u8; n];
        self.r.read_exact(&mut b)?;
        String::from_utf8(b).map_err(|e| anyhow!("invalid UTF-8 in a string: {e}"))
    }
    fn value(&mut self, ty: u32) -> Result<Value> {
        self.value_at(ty, 0)
    }
    fn value_at(&mut self, ty: u32, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U64(self.bytes::<1>()?[0] as u64),
            1 => Value::I64(self.bytes::<1>()?[0] as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.bytes()?) as u64),
            3 => Value::I64(i16::from_le_bytes(self.bytes()?) as i64),
            4 => Value::U64(self.u32()? as u64),
            5 => Value::I64(i32::from_le_bytes(self.bytes()?) as i64),
            6 => Value::F64(f32::from_le_bytes(self.bytes()?) as f64),
            7 => Value::Bool(self.bytes::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let ity = self.u32()?;
                let n = self.u64()?;
                if n > self.limit {
                    bail!("an array of {n} items in a {}-byte file: corrupt file", self.limit);
                }
                if depth >= 4 {
                    bail!("arrays nested more than 4 deep: corrupt file");
                }
                let mut v = Vec::with_capacity((n as usize).min(1 << 16));
                for _ in 0..n {
                    v.push(self.value_at(ity, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            other => bail!("unknown metadata value type {other}"),
        })
    }
}

impl Gguf {
    /// Reads the header, metadata and tensor directory.
    pub fn open(path: &Path) -> Result<Self> {
        Self::read_header(path).map_err(|e| {
            let shown = path.display().to_string();
            if format!("{e:#}").contains(&shown) {
                e
            } else {
                e.context(format!("{shown}: not a complete GGUF file"))
            }
        })
    }

    // Long: the GGUF header's fields in file order, each with its bound check; reads as the format's spec.
    fn read_header(path: &Path) -> Result<Self> {
        let f = mexa_core::file::open(path, mexa_core::FileKind::Model)?;
        let file_len = f.metadata()?.len();
        let mut counted = CountingReader { r: BufReader::new(f), n: 0 };
        let (version, metadata, mut tensors) = {
            let mut rd = Rd { r: &mut counted, limit: file_len };
            let magic = rd.bytes::<4>()?;
            if &magic != b"GGUF" {
                bail!("{}: not a GGUF file (magic {:?})", path.display(), String::from_utf8_lossy(&magic));
            }
            let version = rd.u32()?;
            if !(2..=3).contains(&version) {
                bail!("{}: GGUF version {version} is not supported (2 or 3)", path.display());
            }
            let n_tensors = rd.u64()?;
            let n_kv = rd.u64()?;
            let mut metadata = BTreeMap::new();
            for _ in 0..n_kv {
                let k = rd.string()?;
                let ty = rd.u32()?;
                let v = rd.value(ty).with_context(|| format!("{}: metadata `{k}`", path.display()))?;
                metadata.insert(k, v);
            }
            let mut tensors = Vec::new();
            for _ in 0..n_tensors {
                let name = rd.string()?;
                let nd = rd.u32()? as usize;
                if nd > 8 {
                    bail!("{}: tensor {name} has {nd} dimensions: corrupt file", path.display());
                }
                let mut ne = Vec::with_capacity(nd);
                for _ in 0..nd {
                    ne.push(rd.u64()? as usize);
                }
                let type_id = rd.u32()?;
                let offset = rd.u64()?;
                ne.reverse();
                tensors.push((name, ne, type_id, offset));
            }
            (version, metadata, tensors)
        };
        let align = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32);
        if align == 0 || !align.is_power_of_two() {
            bail!("{}: general.alignment is {align}, not a power of two: corrupt file", path.display());
        }
        let data_start = counted.n.div_ceil(align) * align;
        let tensors = tensors
            .drain(..)
            .map(|(name, shape, type_id, off)| {
                let ty = GgmlType::from_id(type_id).unwrap_or(GgmlType::F32);
                let offset = data_start.checked_add(off).filter(|&o| o <= file_len).ok_or_else(|| {
                    anyhow!("{}: tensor {name} starts past the end of the file: corrupt file", path.display())
                })?;
                Ok(TensorInfo { name, shape, ty, offset, type_id })
            })
            .collect::<Result<Vec<_>>>()?;
        for t in &tensors {
            // A corrupt directory can give dimensions whose product overflows: check it before
            // anything multiplies them (numel, byte_len).
            let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let Some(numel) = numel.filter(|&n| n as u64 <= file_len.saturating_mul(8)) else {
                bail!(
                    "{}: tensor {} has shape {:?}, larger than the file could hold: corrupt file",
                    path.display(),
                    t.name,
                    t.shape
                );
            };
            let (bv, bb) = t.ty.block();
            if GgmlType::from_id(t.type_id).is_ok() && numel % bv != 0 {
                bail!(
                    "{}: tensor {} has {numel} values, not a multiple of its {}-value blocks: corrupt file",
                    path.display(),
                    t.name,
                    bv
                );
            }
            if GgmlType::from_id(t.type_id).is_ok()
                && t.offset.checked_add((numel / bv * bb) as u64).is_none_or(|end| end > file_len)
            {
                bail!("{}: tensor {} extends past the end of the file (truncated download?)", path.display(), t.name);
            }
        }
        Ok(Self { path: path.to_path_buf(), version, metadata, tensors })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A positive integer `<architecture>.<key>` (a dimension or count); missing or zero is
    /// an error naming the file and key.
    pub fn arch_u(&self, key: &str) -> Result<i64> {
        let arch = self.architecture()?;
        self.get(&format!("{arch}.{key}"))
            .and_then(Value::as_u64)
            .map(|v| v as i64)
            .filter(|&v| v > 0)
            .with_context(|| format!("{}: missing or zero `{arch}.{key}`", self.path.display()))
    }

    /// A number `<architecture>.<key>`, if present.
    pub fn arch_f(&self, key: &str) -> Option<f64> {
        let arch = self.architecture().ok()?;
        self.get(&format!("{arch}.{key}")).and_then(Value::as_f64)
    }

    /// The attention shape every architecture states: (hidden size, heads, key/value heads,
    /// head size), the last two defaulting as llama.cpp does.
    pub fn attention_dims(&self) -> Result<(i64, i64, i64, i64)> {
        let (hidden, heads) = (self.arch_u("embedding_length")?, self.arch_u("attention.head_count")?);
        Ok((
            hidden,
            heads,
            self.arch_u("attention.head_count_kv").unwrap_or(heads),
            self.arch_u("attention.key_length").unwrap_or(hidden / heads),
        ))
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get("general.architecture")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: no general.architecture", self.path.display()))
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Reads one tensor's raw (quantised) bytes.
    pub fn read_raw(&self, t: &TensorInfo) -> Result<Vec<u8>> {
        GgmlType::from_id(t.type_id).with_context(|| format!("tensor {}", t.name))?;
        let mut f = mexa_core::file::open(&self.path, mexa_core::FileKind::Model)?;
        f.seek(SeekFrom::Start(t.offset))?;
        let mut raw = vec![0u8; t.byte_len()];
        f.read_exact(&mut raw).with_context(|| format!("reading tensor {}", t.name))?;
        Ok(raw)
    }

    /// Reads and dequantises one tensor to f32 values (row-major, PyTorch shape order).
    pub fn read_f32(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        dequantize(t.ty, &self.read_raw(t)?, t.numel())
    }
}

struct CountingReader<R> {
    r: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.r.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

#[inline]
fn f16(b: &[u8]) -> f32 {
    half_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

/// IEEE 754 binary16 → f32, exact for every value (subnormals, inf, NaN included).
pub fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m · 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        (((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4)) as f32, ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32)
    }
}

// Long: one arm per GGUF block type, each transcribing ggml's reference dequantisation; a table, not a procedure.
fn dequant_block(ty: GgmlType, b: &[u8], y: &mut [f32]) {
    match ty {
        GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => y[0] = f16(b),
        GgmlType::BF16 => y[0] = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
        GgmlType::Q4_0 => {
            let d = f16(b);
            for j in 0..16 {
                y[j] = ((b[2 + j] & 0xf) as i32 - 8) as f32 * d;
                y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
            }
        }
        GgmlType::Q4_1 => {
            let (d, m) = (f16(b), f16(&b[2..]));
            for j in 0..16 {
                y[j] = (b[4 + j] & 0xf) as f32 * d + m;
                y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let (d, m, hoff) = if ty == GgmlType::Q5_0 { (f16(b), 0.0, 2) } else { (f16(b), f16(&b[2..]), 4) };
            let qh = u32::from_le_bytes([b[hoff], b[hoff + 1], b[hoff + 2], b[hoff + 3]]);
            let qs = &b[hoff + 4..];
            let offset = if ty == GgmlType::Q5_0 { 16 } else { 0 };
            for j in 0..16 {
                let xh0 = ((qh >> j) << 4) & 0x10;
                let xh1 = (qh >> (j + 12)) & 0x10;
                let x0 = ((qs[j] as u32 & 0xf) | xh0) as i32 - offset;
                let x1 = ((qs[j] as u32 >> 4) | xh1) as i32 - offset;
                y[j] = x0 as f32 * d + m;
                y[j + 16] = x1 as f32 * d + m;
            }
        }
        GgmlType::Q8_0 => {
            let d = f16(b);
            for j in 0..32 {
                y[j] = (b[2 + j] as i8) as f32 * d;
            }
        }
        GgmlType::Q4K => {
            let (d, dmin) = (f16(b), f16(&b[2..]));
            let scales = &b[4..16];
            let qs = &b[16..144];
            for (n, j) in (0..256).step_by(64).enumerate() {
                let (sc1, m1) = scale_min_k4(2 * n, scales);
                let (sc2, m2) = scale_min_k4(2 * n + 1, scales);
                let q = &qs[32 * n..32 * n + 32];
                for l in 0..32 {
                    y[j + l] = d * sc1 * (q[l] & 0xf) as f32 - dmin * m1;
                    y[j + 32 + l] = d * sc2 * (q[l] >> 4) as f32 - dmin * m2;
                }
            }
        }
        GgmlType::Q5K => {
            let (d, dmin) = (f16(b), f16(&b[2..]));
            let scales = &b[4..16];
            let qh = &b[16..48];
            let qs = &b[48..176];
            for (n, j) in (0..256).step_by(64).enumerate() {
                let (sc1, m1) = scale_min_k4(2 * n, scales);
                let (sc2, m2) = scale_min_k4(2 * n + 1, scales);
                let (u1, u2) = (1u8 << (2 * n), 2u8 << (2 * n));
                let ql = &qs[32 * n..32 * n + 32];
                for l in 0..32 {
                    let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                    let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                    y[j + l] = d * sc1 * ((ql[l] & 0xf) + h1) as f32 - dmin * m1;
                    y[j + 32 + l] = d * sc2 * ((ql[l] >> 4) + h2) as f32 - dmin * m2;
                }
            }
        }
        GgmlType::Q6K => {
            let d = f16(&b[208..]);
            for half in 0..2 {
                let ql = &b[64 * half..64 * half + 64];
                let qh = &b[128 + 32 * half..128 + 32 * half + 32];
                let sc = &b[192 + 8 * half..192 + 8 * half + 8];
                let y = &mut y[128 * half..128 * half + 128];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                    y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                    y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                    y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                }
            }
        }
    }
}

/// Dequantises `numel` values of type `ty` from `raw`.
pub fn dequantize(ty: GgmlType, raw: &[u8], numel: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; numel];
    dequantize_into(ty, raw, &mut out)?;
    Ok(out)
}

/// Dequantises into `out` (whose length is the number of values).
pub fn dequantize_into(ty: GgmlType, raw: &[u8], out: &mut [f32]) -> Result<()> {
    let numel = out.len();
    let (bv, bb) = ty.block();
    if !numel.is_multiple_of(bv) || raw.len() != numel / bv * bb {
        bail!("{ty:?}: {} bytes do not hold {numel} values", raw.len());
    }
    // Parallel over chunks of blocks.
    let per = 4096usize.div_ceil(bv).max(1);
    out.par_chunks_mut(per * bv).zip(raw.par_chunks(per * bb)).for_each(|(y, b)| {
        for (yb, bb_) in y.chunks_mut(bv).zip(b.chunks(bb)) {
            dequant_block(ty, bb_, yb);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_edge_cases() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(half_to_f32(0x7bff), 65504.0);
        assert!(half_to_f32(0x7c00).is_infinite());
        assert!(half_to_f32(0x7e00).is_nan());
        assert_eq!(half_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }
}
