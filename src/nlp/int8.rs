//! dongcha's own BERT encoder forward pass for the CPU, with 8-bit or f32 matrix products — what
//! [`super::encoder::Encoder`] runs unless `[nlp] encoder_precision = "candle"`.
//!
//! What it does differently from candle-transformers' BERT (which stays the reference path):
//! - **int8 linear layers** (or f32 ones through the `gemm` crate). Weights are quantised once, per
//!   output channel (symmetric, ±127); each token's activations are quantised on the fly, per token. The
//!   products run on AVX-512 VNNI (`vpdpbusd`: 64 multiply-adds per instruction, four times an f32 FMA)
//!   in a 6 × 64 register tile, with the scales, bias and the unsigned-offset correction applied as the
//!   tile is stored.
//! - **no padding.** The tokens of a batch are packed end to end; linear layers see only real tokens
//!   and attention runs per sequence over its own length.
//! - **row-local fusion.** Everything but attention is per token, so one thread takes a block of tokens
//!   through output projection, residual, layer norm, feed-forward, the second residual and layer norm,
//!   and on into the next layer's Q/K/V projection, while the block is still in cache. Two parallel
//!   phases per layer: rows, then sequences.
//!
//! On a CPU without VNNI the int8 arithmetic runs in portable code (the same integers, so the same
//! vectors up to float rounding, only much slower); [`Int8Bert::fast`] says which one runs, and the
//! encoder's `auto` picks int8 only where it is fast (f32 products elsewhere).
//!
//! Accuracy is measured, not assumed: `tests/encoder.rs` pins cosine against candle's f32 path.

use std::collections::HashMap;

use candle_core::Tensor;
use rayon::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error("weights: tensor {0} missing")]
    Missing(String),
    #[error("weights: tensor {name} has {got} values, expected {want}")]
    Shape {
        name: String,
        got: usize,
        want: usize,
    },
    #[error("weights: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("unsupported model: {0}")]
    Unsupported(String),
}

/// Whether this CPU runs the int8 kernels natively (AVX-512 F/BW + VNNI, with AVX2 and FMA).
pub fn fast_on_this_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    return vnni::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Panel width of the packed weights (four AVX-512 registers of 16 int32 lanes).
const PANEL: usize = 64;
/// Rows of one register tile.
const MR: usize = 6;
/// Tokens one thread carries through the row-local part of a layer at a time.
const ROW_BLOCK: usize = 48;

/// A linear layer with int8 weights, packed for the kernel.
struct QLinear {
    /// Output features (a multiple of [`PANEL`]; the padding columns have zero weights).
    n: usize,
    /// Input features (a multiple of 4).
    k: usize,
    /// Panels of 64 columns; within a panel, for every 4 inputs, 4 × 16 columns × 4 bytes.
    packed: Vec<i8>,
    /// Per output column: weight scale.
    scale: Vec<f32>,
    /// Per output column: 128 × the column's weight sum (activations are stored as u8 = q + 128).
    offset: Vec<i32>,
    bias: Vec<f32>,
}

impl QLinear {
    /// `w`: (n, k) row-major, as PyTorch's `Linear.weight`.
    fn new(w: &[f32], bias: &[f32], n_real: usize, k: usize) -> Result<Self, Int8Error> {
        if !k.is_multiple_of(4) {
            return Err(Int8Error::Unsupported(format!(
                "input width {k} is not a multiple of 4"
            )));
        }
        let n = n_real.div_ceil(PANEL) * PANEL;
        let mut q = vec![0i8; n * k];
        let mut scale = vec![0f32; n];
        let mut offset = vec![0i32; n];
        for row in 0..n_real {
            let src = &w[row * k..(row + 1) * k];
            let max = max_abs(src);
            let s = if max > 0.0 { max / 127.0 } else { 1.0 };
            scale[row] = s;
            let mut sum = 0i32;
            for (d, v) in q[row * k..(row + 1) * k].iter_mut().zip(src) {
                let x = (v / s).round().clamp(-127.0, 127.0) as i8;
                *d = x;
                sum += x as i32;
            }
            offset[row] = 128 * sum;
        }
        let mut packed = vec![0i8; n * k];
        let mut at = 0;
        for p in 0..n / PANEL {
            for k4 in 0..k / 4 {
                for c in 0..PANEL {
                    let row = p * PANEL + c;
                    packed[at..at + 4].copy_from_slice(&q[row * k + 4 * k4..row * k + 4 * k4 + 4]);
                    at += 4;
                }
            }
        }
        let mut b = bias.to_vec();
        b.resize(n, 0.0);
        Ok(Self {
            n,
            k,
            packed,
            scale,
            offset,
            bias: b,
        })
    }

    /// `out[r][0..n] = dequant(a[r] · W^T) + bias` for `rows` rows of `a` (u8, row length k).
    fn forward(&self, a: &[u8], row_scale: &[f32], rows: usize, out: &mut [f32], fast: bool) {
        assert!(
            a.len() >= rows * self.k && out.len() >= rows * self.n && row_scale.len() >= rows,
            "int8 matmul: buffers shorter than {rows} rows"
        );
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: `fast` is only true when the CPU reports AVX-512 F/BW and VNNI
            // (`vnni::available`); the slices are long enough for `rows` rows (asserted above).
            unsafe { vnni::matmul(self, a, row_scale, rows, out) };
            return;
        }
        let _ = fast;
        portable_matmul(self, a, row_scale, rows, out);
    }
}

/// The same integer arithmetic as the VNNI kernel, in plain Rust.
fn portable_matmul(w: &QLinear, a: &[u8], row_scale: &[f32], rows: usize, out: &mut [f32]) {
    let k = w.k;
    let mut col = vec![0i8; k];
    for n in 0..w.n {
        let (p, c) = (n / PANEL, n % PANEL);
        for k4 in 0..k / 4 {
            let at = p * PANEL * k + k4 * PANEL * 4 + c * 4;
            col[4 * k4..4 * k4 + 4].copy_from_slice(&w.packed[at..at + 4]);
        }
        for r in 0..rows {
            let acc: i32 = a[r * k..(r + 1) * k]
                .iter()
                .zip(&col)
                .map(|(x, y)| *x as i32 * *y as i32)
                .sum();
            out[r * w.n + n] = (acc - w.offset[n]) as f32 * (w.scale[n] * row_scale[r]) + w.bias[n];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{MR, PANEL, QLinear};

    pub fn available() -> bool {
        // AVX2 and FMA come with every AVX-512 CPU, but a virtual machine may mask features one by
        // one: the fast paths also compile code for those two, so check them too.
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    }

    /// One tile: `R` rows × one 64-column panel, over the whole input width.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI present; `a` points at `R` rows of `4 * k4` bytes with stride `lda`; `b` at a
    /// packed panel of `k4 * 256` bytes; `scale`/`offset`/`bias` at 64 values; `rs` at `R` values;
    /// `out` at `R` rows of 64 writable floats with stride `ldo`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize>(
        a: *const u8,
        lda: usize,
        k4: usize,
        b: *const i8,
        rs: *const f32,
        scale: *const f32,
        offset: *const i32,
        bias: *const f32,
        out: *mut f32,
        ldo: usize,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_si512(); 4]; R];
            let mut ap = a;
            let mut bp = b;
            for _ in 0..k4 {
                let b0 = _mm512_loadu_si512(bp as *const _);
                let b1 = _mm512_loadu_si512(bp.add(64) as *const _);
                let b2 = _mm512_loadu_si512(bp.add(128) as *const _);
                let b3 = _mm512_loadu_si512(bp.add(192) as *const _);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = _mm512_set1_epi32((ap.add(r * lda) as *const i32).read_unaligned());
                    acc[0] = _mm512_dpbusd_epi32(acc[0], v, b0);
                    acc[1] = _mm512_dpbusd_epi32(acc[1], v, b1);
                    acc[2] = _mm512_dpbusd_epi32(acc[2], v, b2);
                    acc[3] = _mm512_dpbusd_epi32(acc[3], v, b3);
                }
                ap = ap.add(4);
                bp = bp.add(4 * PANEL);
            }
            for c in 0..4 {
                let sc = _mm512_loadu_ps(scale.add(16 * c));
                let off = _mm512_loadu_si512(offset.add(16 * c) as *const _);
                let bi = _mm512_loadu_ps(bias.add(16 * c));
                for (r, acc) in acc.iter().enumerate() {
                    let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[c], off));
                    let s = _mm512_mul_ps(sc, _mm512_set1_ps(*rs.add(r)));
                    _mm512_storeu_ps(out.add(r * ldo + 16 * c), _mm512_fmadd_ps(v, s, bi));
                }
            }
        }
    }

    /// # Safety
    /// AVX-512 F/BW/VNNI present; `a` holds `rows × w.k` bytes, `rs` `rows` scales, `out` `rows × w.n`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn matmul(w: &QLinear, a: &[u8], rs: &[f32], rows: usize, out: &mut [f32]) {
        let (k, n) = (w.k, w.n);
        let k4 = k / 4;
        let ap = a.as_ptr();
        let op = out.as_mut_ptr();
        for p in 0..n / PANEL {
            let b = w.packed.as_ptr().wrapping_add(p * PANEL * k);
            let c0 = p * PANEL;
            let (sc, off, bi) = (
                w.scale.as_ptr().wrapping_add(c0),
                w.offset.as_ptr().wrapping_add(c0),
                w.bias.as_ptr().wrapping_add(c0),
            );
            let mut r = 0;
            // SAFETY (all calls): the caller's guarantees; r + R ≤ rows, c0 + 64 ≤ n.
            unsafe {
                while r + MR <= rows {
                    tile::<MR>(
                        ap.add(r * k),
                        k,
                        k4,
                        b,
                        rs.as_ptr().add(r),
                        sc,
                        off,
                        bi,
                        op.add(r * n + c0),
                        n,
                    );
                    r += MR;
                }
                let (a_, rs_, o_) = (ap.add(r * k), rs.as_ptr().add(r), op.add(r * n + c0));
                match rows - r {
                    0 => {}
                    1 => tile::<1>(a_, k, k4, b, rs_, sc, off, bi, o_, n),
                    2 => tile::<2>(a_, k, k4, b, rs_, sc, off, bi, o_, n),
                    3 => tile::<3>(a_, k, k4, b, rs_, sc, off, bi, o_, n),
                    4 => tile::<4>(a_, k, k4, b, rs_, sc, off, bi, o_, n),
                    _ => tile::<5>(a_, k, k4, b, rs_, sc, off, bi, o_, n),
                }
            }
        }
    }
}

/// Compiles `$body` three times — for AVX-512 (so the compiler vectorises 16 wide), for AVX2 + FMA
/// (8 wide) and portable — and picks at run time: AVX-512 when `$fast`, else AVX2 + FMA when the CPU has
/// them. The body sees a `const FMA: bool`, true where fused multiply-add is an instruction (in the
/// portable build `f32::mul_add` would be a library call per element).
macro_rules! multiversion {
    ($fast:expr, $name:ident($($arg:ident : $ty:ty),*) $body:block) => {{
        #[inline(always)]
        fn $name<const FMA: bool>($($arg: $ty),*) $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
        unsafe fn wide($($arg: $ty),*) { $name::<true>($($arg),*) }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($arg: $ty),*) { $name::<true>($($arg),*) }
        #[cfg(target_arch = "x86_64")]
        {
            if $fast {
                // SAFETY: `$fast` is only true when the CPU has AVX-512 F/BW, AVX2 and FMA (checked
                // at load).
                unsafe { wide($($arg),*) }
            } else if avx2_fma() {
                // SAFETY: the CPU reports AVX2 and FMA.
                unsafe { avx2($($arg),*) }
            } else {
                $name::<false>($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = $fast;
            $name::<false>($($arg),*)
        }
    }};
}

/// Whether the CPU has AVX2 and FMA (the result is cached by the standard library).
#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `a · b + c`, fused where FMA is an instruction.
#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// e^x as 2^n · e^r (Cody–Waite reduction, |r| ≤ ln2/2) with a degree-6 polynomial for e^r,
/// branch-free so it vectorises; relative error ≈ 2e-7.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // max/min (not clamp) so that NaN becomes -87 and the conversion below stays in range.
    #[allow(
        clippy::manual_clamp,
        reason = "clamp keeps NaN; max/min map it into range"
    )]
    let x = x.max(-87.0).min(88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // SAFETY: n is an integer in [-126, 127] (x is finite and clamped above).
    let n = unsafe { n.to_int_unchecked::<i32>() };
    p * f32::from_bits(((n + 127) as u32) << 23)
}

/// GELU with the exact erf form BERT uses; erf by Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7).
#[inline(always)]
fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf_abs = 1.0 - poly * exp(-a * a);
    let erf = erf_abs.copysign(z);
    0.5 * x * (1.0 + erf)
}

/// Folds a slice with `op` in 16 independent lanes (so it vectorises), then folds the lanes.
#[inline(always)]
fn reduce16(x: &[f32], init: f32, op: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
    let mut lanes = [init; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l = op(*l, *v);
        }
    }
    tail.iter().chain(lanes.iter()).fold(init, |m, v| op(m, *v))
}

#[inline(always)]
fn max_abs(x: &[f32]) -> f32 {
    reduce16(x, 0.0, |m, v| m.max(v.abs()))
}

#[inline(always)]
fn max_lanes(x: &[f32]) -> f32 {
    reduce16(x, f32::NEG_INFINITY, f32::max)
}

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    reduce16(x, 0.0, |a, b| a + b)
}

/// u8 = round(x / s) + 128 for one row, with s = max|x| / 127; returns s.
#[inline(always)]
fn quantize_row(row: &[f32], q: &mut [u8]) -> f32 {
    let max = max_abs(row);
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    for (d, v) in q.iter_mut().zip(row) {
        // In [1, 255] by construction; max/min also map NaN into range, so the unchecked
        // conversion (which, unlike `as`, vectorises) is sound.
        #[allow(
            clippy::manual_clamp,
            reason = "clamp keeps NaN; max/min map it into range"
        )]
        let r = ((v * inv).round_ties_even() + 128.0).max(0.0).min(255.0);
        // SAFETY: r is finite and within i32 (see above).
        *d = unsafe { r.to_int_unchecked::<i32>() } as u8;
    }
    scale
}

/// Quantises the first `k` values of each row of `x` (row stride `ld`) to u8 = round(x / s) + 128 with
/// s = max|x| / 127, into rows of width `k`.
fn quantize_rows(x: &[f32], ld: usize, k: usize, q: &mut [u8], scales: &mut [f32], fast: bool) {
    multiversion!(fast, quantize(x: &[f32], ld: usize, k: usize, q: &mut [u8], scales: &mut [f32]) {
        for ((row, qrow), s) in x.chunks(ld).zip(q.chunks_exact_mut(k)).zip(scales.iter_mut()) {
            *s = quantize_row(&row[..k], qrow);
        }
    })
}

/// GELU over the first `k` values of each row of `x` (row stride `ld`), in place.
fn gelu_rows(x: &mut [f32], ld: usize, k: usize, fast: bool) {
    multiversion!(fast, gr(x: &mut [f32], ld: usize, k: usize) {
        for row in x.chunks_exact_mut(ld) {
            for v in row[..k].iter_mut() {
                *v = gelu(*v);
            }
        }
    })
}

/// A linear layer with f32 weights: the product by the `gemm` crate (the kernels candle uses), one
/// thread per call — the callers already run one block of tokens per thread.
struct FLinear {
    n: usize,
    k: usize,
    /// (n, k) row-major, as PyTorch's `Linear.weight`.
    w: Vec<f32>,
    bias: Vec<f32>,
}

impl FLinear {
    /// `out[r][0..n] = x[r][0..k] · Wᵀ + bias` for `rows` rows of `x` (row stride `ld`).
    fn forward(&self, x: &[f32], ld: usize, rows: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        if rows == 0 {
            return;
        }
        assert!(
            ld >= k && x.len() >= (rows - 1) * ld + k && out.len() >= rows * n,
            "f32 matmul: buffers shorter than {rows} rows"
        );
        // SAFETY: dst is rows × n with row stride n, lhs rows × k with row stride ld, rhs k × n read
        // from the (n, k) weights (row stride 1, column stride k): all within the slices (asserted).
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                ld as isize,
                self.w.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for row in out.chunks_exact_mut(n).take(rows) {
            for (v, b) in row.iter_mut().zip(&self.bias) {
                *v += b;
            }
        }
    }
}

/// A linear layer in int8 or f32.
enum Linear {
    Int8(QLinear),
    F32(FLinear),
}

/// Per-thread buffers for quantised activations.
#[derive(Default)]
struct Quant {
    q: Vec<u8>,
    scales: Vec<f32>,
}

impl Linear {
    fn new(w: &[f32], bias: &[f32], n: usize, k: usize, int8: bool) -> Result<Self, Int8Error> {
        Ok(if int8 {
            Linear::Int8(QLinear::new(w, bias, n, k)?)
        } else {
            Linear::F32(FLinear {
                n,
                k,
                w: w.to_vec(),
                bias: bias.to_vec(),
            })
        })
    }

    /// Output row width (int8: padded to a multiple of 64 with zero columns).
    fn n(&self) -> usize {
        match self {
            Linear::Int8(l) => l.n,
            Linear::F32(l) => l.n,
        }
    }

    /// `out[r] = x[r][0..k] · Wᵀ + bias` for `rows` rows of `x` (row stride `ld`).
    fn forward(
        &self,
        x: &[f32],
        ld: usize,
        rows: usize,
        out: &mut [f32],
        qb: &mut Quant,
        fast: bool,
    ) {
        match self {
            Linear::Int8(l) => {
                qb.q.resize(rows * l.k, 0);
                qb.scales.resize(rows, 0.0);
                quantize_rows(x, ld, l.k, &mut qb.q, &mut qb.scales, fast);
                l.forward(&qb.q, &qb.scales, rows, out, fast);
            }
            Linear::F32(l) => l.forward(x, ld, rows, out),
        }
    }
}

/// `x[r] = LayerNorm(x[r] + y[r][..h])` for each row (`y` rows have width `ny`).
fn add_layer_norm(
    x: &mut [f32],
    y: &[f32],
    h: usize,
    ny: usize,
    ln: &(Vec<f32>, Vec<f32>),
    eps: f32,
    fast: bool,
) {
    let (g, b) = (&ln.0[..], &ln.1[..]);
    multiversion!(fast, aln(x: &mut [f32], y: &[f32], h: usize, ny: usize, g: &[f32], b: &[f32], eps: f32) {
        for (row, yr) in x.chunks_exact_mut(h).zip(y.chunks_exact(ny)) {
            for (v, w) in row.iter_mut().zip(&yr[..h]) {
                *v += w;
            }
            let mean = sum(row) / h as f32;
            let mut var = [0f32; 16];
            for c in row.chunks_exact(16) {
                for (l, v) in var.iter_mut().zip(c) {
                    *l += (v - mean) * (v - mean);
                }
            }
            let var = var.iter().sum::<f32>()
                + row.chunks_exact(16).remainder().iter().map(|v| (v - mean) * (v - mean)).sum::<f32>();
            let inv = 1.0 / (var / h as f32 + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(g).zip(b) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    })
}

struct Layer {
    qkv: Linear,
    out: Linear,
    ln1: (Vec<f32>, Vec<f32>),
    up: Linear,
    down: Linear,
    ln2: (Vec<f32>, Vec<f32>),
    /// The feed-forward width.
    ffn: usize,
}

/// Reads a named tensor's values, checked for their count.
type Values<'a> = dyn Fn(&str, usize) -> Result<Vec<f32>, Int8Error> + 'a;

impl Layer {
    /// The layer whose tensors are named `{p}.attention.self.query.weight` … `{p}.output.LayerNorm.bias`
    /// (BERT's names), read through `get(name, element count)`.
    fn from_named(
        get: &Values,
        p: &str,
        h: usize,
        ffn: usize,
        int8: bool,
    ) -> Result<Self, Int8Error> {
        let ln = |q: &str| -> Result<(Vec<f32>, Vec<f32>), Int8Error> {
            Ok((
                get(&format!("{q}.weight"), h)?,
                get(&format!("{q}.bias"), h)?,
            ))
        };
        let linear = |q: &str, n: usize, k: usize| -> Result<Linear, Int8Error> {
            Linear::new(
                &get(&format!("{q}.weight"), n * k)?,
                &get(&format!("{q}.bias"), n)?,
                n,
                k,
                int8,
            )
        };
        let mut w = Vec::with_capacity(3 * h * h);
        let mut b = Vec::with_capacity(3 * h);
        for part in ["query", "key", "value"] {
            w.extend(get(&format!("{p}.attention.self.{part}.weight"), h * h)?);
            b.extend(get(&format!("{p}.attention.self.{part}.bias"), h)?);
        }
        Ok(Layer {
            qkv: Linear::new(&w, &b, 3 * h, h, int8)?,
            out: linear(&format!("{p}.attention.output.dense"), h, h)?,
            ln1: ln(&format!("{p}.attention.output.LayerNorm"))?,
            up: linear(&format!("{p}.intermediate.dense"), ffn, h)?,
            down: linear(&format!("{p}.output.dense"), h, ffn)?,
            ln2: ln(&format!("{p}.output.LayerNorm"))?,
            ffn,
        })
    }
}

/// Layers that replace the encoder's top ones for one task (fine-tuned sentiment layers): the texts run
/// through the shared bottom once, then through both tops ([`Int8Bert::embed_with_branch`]).
pub struct Branch {
    /// Index of the encoder layer the branch's first layer replaces.
    start: usize,
    layers: Vec<Layer>,
}

impl Branch {
    /// The branch from tensors named `{prefix}{i}.attention.self.query.weight` … (BERT's layer names
    /// under `prefix` + the branch-local layer index), `count` layers replacing layers `start..` of
    /// `model`.
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        start: usize,
        count: usize,
        model: &Int8Bert,
    ) -> Result<Self, Int8Error> {
        if count == 0 || start + count != model.layers.len() {
            return Err(Int8Error::Unsupported(format!(
                "a branch of {count} layers from layer {start} (the encoder has {})",
                model.layers.len()
            )));
        }
        let get = |name: &str, want: usize| tensor_values(tensors, name, want);
        let h = model.hidden;
        let ffn = model.layers[start].ffn;
        let layers = (0..count)
            .map(|i| Layer::from_named(&get, &format!("{prefix}{i}"), h, ffn, model.int8))
            .collect::<Result<_, _>>()?;
        Ok(Self { start, layers })
    }

    pub fn start(&self) -> usize {
        self.start
    }
}

/// A tensor's values as f32, checked for its element count.
fn tensor_values(
    tensors: &HashMap<String, Tensor>,
    name: &str,
    want: usize,
) -> Result<Vec<f32>, Int8Error> {
    let t = tensors
        .get(name)
        .or_else(|| tensors.get(&format!("bert.{name}")))
        .ok_or_else(|| Int8Error::Missing(name.to_string()))?;
    let v = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if v.len() != want {
        return Err(Int8Error::Shape {
            name: name.to_string(),
            got: v.len(),
            want,
        });
    }
    Ok(v)
}

/// A BERT encoder (embeddings + layers; no pooler) with int8 linear layers.
pub struct Int8Bert {
    hidden: usize,
    heads: usize,
    eps: f32,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_ln: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    fast: bool,
    int8: bool,
}

/// Per-thread scratch for the row-local part of a layer.
#[derive(Default)]
struct Scratch {
    quant: Quant,
    tmp: Vec<f32>,
    ffn: Vec<f32>,
}

impl Int8Bert {
    /// Builds the model from BERT-named float tensors (what candle's `BertModel` loads), with int8 or
    /// f32 linear layers.
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        config: &candle_transformers::models::bert::Config,
        int8: bool,
    ) -> Result<Self, Int8Error> {
        let (h, ffn) = (config.hidden_size, config.intermediate_size);
        let heads = config.num_attention_heads;
        if heads == 0 || h % heads != 0 || !matches!(h / heads, 32 | 64) {
            return Err(Int8Error::Unsupported(format!(
                "hidden size {h} over {heads} heads (head widths 32 and 64 only)"
            )));
        }
        if !matches!(
            config.hidden_act,
            candle_transformers::models::bert::HiddenAct::Gelu
        ) {
            return Err(Int8Error::Unsupported(format!(
                "activation {:?} (only erf GELU)",
                config.hidden_act
            )));
        }
        let get = |name: &str, want: usize| tensor_values(tensors, name, want);
        let ln = |p: &str| -> Result<(Vec<f32>, Vec<f32>), Int8Error> {
            Ok((
                get(&format!("{p}.weight"), h)?,
                get(&format!("{p}.bias"), h)?,
            ))
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            layers.push(Layer::from_named(
                &get,
                &format!("encoder.layer.{l}"),
                h,
                ffn,
                int8,
            )?);
        }
        let fast = fast_on_this_cpu();
        Ok(Self {
            hidden: h,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            word: get("embeddings.word_embeddings.weight", config.vocab_size * h)?,
            position: get(
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings * h,
            )?,
            token_type: get(
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size * h,
            )?,
            emb_ln: ln("embeddings.LayerNorm")?,
            layers,
            fast,
            int8,
        })
    }

    /// Whether the AVX-512 kernels run (VNNI for int8; the elementwise code either way), else the AVX2 +
    /// FMA or portable builds (same integers, f32 within rounding; much slower for int8).
    pub fn fast(&self) -> bool {
        self.fast
    }

    /// Whether the linear layers run in int8 (else f32).
    pub fn int8(&self) -> bool {
        self.int8
    }

    /// Width of the token states.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// How many layers the encoder has.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Mean-pooled, L2-normalised sentence vectors for token sequences (token type 0).
    pub fn embed(&self, seqs: &[&[u32]]) -> Vec<Vec<f32>> {
        let mut p = self.embeddings(seqs);
        self.run_layers(&self.layers, &mut p);
        p.pooled(self.hidden)
    }

    /// Sentence vectors of the whole encoder and of the encoder whose top layers are `branch`'s, from
    /// one pass through the shared bottom layers.
    pub fn embed_with_branch(
        &self,
        seqs: &[&[u32]],
        branch: &Branch,
    ) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut p = self.embeddings(seqs);
        self.run_layers(&self.layers[..branch.start], &mut p);
        let mut b = p.clone();
        self.run_layers(&self.layers[branch.start..], &mut p);
        self.run_layers(&branch.layers, &mut b);
        (p.pooled(self.hidden), b.pooled(self.hidden))
    }

    /// Sentence vectors of the encoder whose top layers are `branch`'s.
    pub fn embed_branch(&self, seqs: &[&[u32]], branch: &Branch) -> Vec<Vec<f32>> {
        let mut p = self.embeddings(seqs);
        self.run_layers(&self.layers[..branch.start], &mut p);
        self.run_layers(&branch.layers, &mut p);
        p.pooled(self.hidden)
    }

    /// Token states after the first `layers` layers, one `len × hidden` block per sequence: what a
    /// branch's training reads (the bottom runs once, its states are kept).
    pub fn states(&self, seqs: &[&[u32]], layers: usize) -> Vec<Vec<f32>> {
        let mut p = self.embeddings(seqs);
        self.run_layers(&self.layers[..layers.min(self.layers.len())], &mut p);
        let h = self.hidden;
        p.starts
            .iter()
            .zip(&p.lens)
            .map(|(s, l)| p.x[s * h..(s + l) * h].to_vec())
            .collect()
    }

    /// Sentence vectors from token states (as [`Int8Bert::states`] gives) run through `branch`.
    pub fn embed_states(&self, states: &[&[f32]], branch: &Branch) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let lens: Vec<usize> = states.iter().map(|s| s.len() / h).collect();
        let mut p = Packed::new(lens);
        p.x = states.iter().flat_map(|s| s.iter().copied()).collect();
        self.run_layers(&branch.layers, &mut p);
        p.pooled(h)
    }

    /// Embeddings + layer norm of the tokens, packed without padding.
    fn embeddings(&self, seqs: &[&[u32]]) -> Packed {
        let h = self.hidden;
        let max_pos = self.position.len() / h;
        let vocab = self.word.len() / h;
        let mut p = Packed::new(seqs.iter().map(|s| s.len().min(max_pos)).collect());
        p.x = vec![0f32; p.lens.iter().sum::<usize>() * h];
        let fast = self.fast;
        let tokens: Vec<(usize, usize)> = seqs
            .iter()
            .zip(&p.lens)
            .flat_map(|(s, l)| s[..*l].iter().enumerate().map(|(i, id)| (*id as usize, i)))
            .collect();
        p.x.par_chunks_mut(h)
            .zip(tokens.par_iter())
            .for_each(|(row, (id, pos))| {
                let id = (*id).min(vocab - 1);
                for (j, v) in row.iter_mut().enumerate() {
                    *v = self.word[id * h + j] + self.position[pos * h + j] + self.token_type[j];
                }
            });
        let zeros = vec![0f32; h];
        p.x.par_chunks_mut(ROW_BLOCK * h).for_each(|rows| {
            for row in rows.chunks_exact_mut(h) {
                add_layer_norm(row, &zeros, h, h, &self.emb_ln, self.eps, fast);
            }
        });
        p
    }

    /// Runs `layers` over the packed token states in place.
    fn run_layers(&self, layers: &[Layer], p: &mut Packed) {
        let h = self.hidden;
        let fast = self.fast;
        let m: usize = p.lens.iter().sum();
        let (lens, starts, x) = (&p.lens, &p.starts, &mut p.x);
        let qkv_n = layers.first().map_or(3 * h, |l| l.qkv.n());
        let mut qkv = vec![0f32; m * qkv_n];
        let mut ctx = vec![0f32; m * h];
        // Q/K/V of the first layer.
        if let Some(first) = layers.first() {
            x.par_chunks(ROW_BLOCK * h)
                .zip(qkv.par_chunks_mut(ROW_BLOCK * qkv_n))
                .for_each_init(Quant::default, |qb, (xr, out)| {
                    first.qkv.forward(xr, h, xr.len() / h, out, qb, fast);
                });
        }
        for (li, layer) in layers.iter().enumerate() {
            // Attention, per sequence.
            let heads = self.heads;
            let mut ctx_parts: Vec<&mut [f32]> = Vec::with_capacity(lens.len());
            let mut rest = &mut ctx[..];
            for l in lens {
                let (a, b) = std::mem::take(&mut rest).split_at_mut(l * h);
                ctx_parts.push(a);
                rest = b;
            }
            ctx_parts
                .into_par_iter()
                .enumerate()
                .for_each_init(Vec::new, |buf, (s, out)| {
                    let rows = &qkv[starts[s] * qkv_n..(starts[s] + lens[s]) * qkv_n];
                    attend(rows, qkv_n, lens[s], h, heads, out, buf, fast);
                });
            // Row-local rest of the layer, and the next layer's Q/K/V.
            let next = layers.get(li + 1);
            x.par_chunks_mut(ROW_BLOCK * h)
                .zip(ctx.par_chunks(ROW_BLOCK * h))
                .zip(qkv.par_chunks_mut(ROW_BLOCK * qkv_n))
                .for_each_init(Scratch::default, |s, ((xr, cr), qkv_out)| {
                    let rows = xr.len() / h;
                    let (out_n, up_n, down_n) = (layer.out.n(), layer.up.n(), layer.down.n());
                    s.tmp.resize(rows * out_n.max(down_n), 0.0);
                    s.ffn.resize(rows * up_n, 0.0);
                    let q = &mut s.quant;
                    layer.out.forward(cr, h, rows, &mut s.tmp, q, fast);
                    add_layer_norm(xr, &s.tmp, h, out_n, &layer.ln1, self.eps, fast);
                    layer.up.forward(xr, h, rows, &mut s.ffn, q, fast);
                    gelu_rows(&mut s.ffn, up_n, layer.ffn, fast);
                    layer.down.forward(&s.ffn, up_n, rows, &mut s.tmp, q, fast);
                    add_layer_norm(xr, &s.tmp, h, down_n, &layer.ln2, self.eps, fast);
                    if let Some(next) = next {
                        next.qkv.forward(xr, h, rows, qkv_out, q, fast);
                    }
                });
        }
    }
}

/// Token states of several sequences packed without padding: sequence `s` is rows
/// `starts[s]..starts[s] + lens[s]` of `x` (width hidden).
#[derive(Clone)]
struct Packed {
    lens: Vec<usize>,
    starts: Vec<usize>,
    x: Vec<f32>,
}

impl Packed {
    fn new(lens: Vec<usize>) -> Self {
        let starts: Vec<usize> = lens
            .iter()
            .scan(0, |acc, l| {
                let s = *acc;
                *acc += l;
                Some(s)
            })
            .collect();
        Self {
            x: Vec::new(),
            lens,
            starts,
        }
    }

    /// Mean over each sequence's rows, unit length.
    fn pooled(&self, h: usize) -> Vec<Vec<f32>> {
        self.starts
            .iter()
            .zip(&self.lens)
            .map(|(s, l)| {
                let mut v = vec![0f32; h];
                for row in self.x[s * h..(s + l) * h].chunks_exact(h) {
                    for (a, b) in v.iter_mut().zip(row) {
                        *a += b;
                    }
                }
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
                v
            })
            .collect()
    }
}

/// Multi-head self-attention of one sequence: `rows` holds its `len` rows of [Q | K | V | padding]
/// (width `ld`); writes the context (len × h) to `out`. Head widths 32 and 64 (checked at load).
#[allow(clippy::too_many_arguments)]
fn attend(
    rows: &[f32],
    ld: usize,
    len: usize,
    h: usize,
    heads: usize,
    out: &mut [f32],
    buf: &mut Vec<f32>,
    fast: bool,
) {
    if h / heads == 64 {
        multiversion!(fast, att64(rows: &[f32], ld: usize, len: usize, h: usize, out: &mut [f32], buf: &mut Vec<f32>) {
            attend_heads::<64, FMA>(rows, ld, len, h, out, buf)
        })
    } else {
        multiversion!(fast, att32(rows: &[f32], ld: usize, len: usize, h: usize, out: &mut [f32], buf: &mut Vec<f32>) {
            attend_heads::<32, FMA>(rows, ld, len, h, out, buf)
        })
    }
}

/// One head at a time: K transposed (and padded to a multiple of 16 keys) so that scores are computed
/// 16 keys × up to 4 queries at a time with all the sums in registers; the context likewise for up to 4
/// queries, so that every loop has independent chains of fused multiply-adds.
#[inline(always)]
fn attend_heads<const DH: usize, const FMA: bool>(
    rows: &[f32],
    ld: usize,
    len: usize,
    h: usize,
    out: &mut [f32],
    buf: &mut Vec<f32>,
) {
    let heads = h / DH;
    let lp = len.div_ceil(16) * 16;
    buf.resize(DH * lp + 4 * lp, 0.0);
    let (kt, p) = buf.split_at_mut(DH * lp);
    for hd in 0..heads {
        let ko = h + hd * DH;
        for j in 0..len {
            let r = &rows[j * ld + ko..j * ld + ko + DH];
            for (d, v) in r.iter().enumerate() {
                kt[d * lp + j] = *v;
            }
        }
        let at = Head {
            rows,
            ld,
            len,
            lp,
            h,
            qo: hd * DH,
            vo: 2 * h + hd * DH,
        };
        let mut i = 0;
        while i < len {
            let r = (len - i).min(4);
            match r {
                4 => at.queries::<DH, 4, FMA>(i, kt, p, out),
                3 => at.queries::<DH, 3, FMA>(i, kt, p, out),
                2 => at.queries::<DH, 2, FMA>(i, kt, p, out),
                _ => at.queries::<DH, 1, FMA>(i, kt, p, out),
            }
            i += r;
        }
    }
}

/// Where one head's Q and V columns lie in a sequence's rows.
struct Head<'a> {
    rows: &'a [f32],
    ld: usize,
    len: usize,
    /// `len` rounded up to a multiple of 16.
    lp: usize,
    h: usize,
    qo: usize,
    vo: usize,
}

impl Head<'_> {
    /// Attention output of queries `i0 .. i0 + R`.
    #[inline(always)]
    fn queries<const DH: usize, const R: usize, const FMA: bool>(
        &self,
        i0: usize,
        kt: &[f32],
        p: &mut [f32],
        out: &mut [f32],
    ) {
        let (rows, ld, len, lp) = (self.rows, self.ld, self.len, self.lp);
        let scale = 1.0 / (DH as f32).sqrt();
        let q: [&[f32; DH]; R] = std::array::from_fn(|r| {
            let at = (i0 + r) * ld + self.qo;
            rows[at..at + DH].try_into().expect("DH wide")
        });
        for jb in (0..lp).step_by(16) {
            let mut acc = [[0f32; 16]; R];
            for d in 0..DH {
                let k: &[f32; 16] = kt[d * lp + jb..d * lp + jb + 16].try_into().expect("16");
                for (a, q) in acc.iter_mut().zip(&q) {
                    let qd = q[d];
                    for (a, k) in a.iter_mut().zip(k) {
                        *a = fmadd::<FMA>(qd, *k, *a);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                for (pj, a) in p[r * lp + jb..r * lp + jb + 16].iter_mut().zip(a) {
                    *pj = a * scale;
                }
            }
        }
        let mut inv = [0f32; R];
        for (r, inv) in inv.iter_mut().enumerate() {
            let pr = &mut p[r * lp..r * lp + len];
            let max = max_lanes(pr);
            for pj in pr.iter_mut() {
                *pj = exp(*pj - max);
            }
            *inv = 1.0 / sum(pr);
        }
        let mut acc = [[0f32; DH]; R];
        for j in 0..len {
            let v: &[f32; DH] = rows[j * ld + self.vo..j * ld + self.vo + DH]
                .try_into()
                .expect("DH wide");
            for (r, a) in acc.iter_mut().enumerate() {
                let w = p[r * lp + j];
                for (a, v) in a.iter_mut().zip(v) {
                    *a = fmadd::<FMA>(w, *v, *a);
                }
            }
        }
        for (r, (a, inv)) in acc.iter().zip(inv).enumerate() {
            let at = (i0 + r) * self.h + self.qo;
            for (o, a) in out[at..at + DH].iter_mut().zip(a) {
                *o = a * inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_gelu_match_the_library_functions() {
        for i in -400..=100 {
            let x = i as f32 * 0.2;
            let (a, b) = (exp(x), x.exp());
            assert!((a - b).abs() <= 1e-6 * b, "exp({x}) {a} vs {b}");
        }
        assert!(gelu(-10.0).abs() < 1e-6 && (gelu(10.0) - 10.0).abs() < 1e-5);
        // NaN stays inside the ranges the unchecked conversions rely on.
        assert!(exp(f32::NAN).is_finite());
        let mut q = [0u8; 3];
        quantize_row(&[f32::NAN, 1.0, -1.0], &mut q);
        assert_eq!(q[1..], [255, 1]);
        for i in -40..=40 {
            let x = i as f32 * 0.1;
            let exact = 0.5 * x as f64 * (1.0 + libm_erf(x as f64 / std::f64::consts::SQRT_2));
            assert!((gelu(x) as f64 - exact).abs() < 2e-6, "gelu({x})");
        }
    }

    /// erf by its Taylor series (|x| < 3 here, where it converges in f64), as an independent reference.
    fn libm_erf(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Plain softmax attention, head by head, in f64.
    fn naive_attention(rows: &[f32], ld: usize, len: usize, h: usize, heads: usize) -> Vec<f32> {
        let dh = h / heads;
        let mut out = vec![0f32; len * h];
        for hd in 0..heads {
            for i in 0..len {
                let q = |d: usize| rows[i * ld + hd * dh + d] as f64;
                let scores: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..dh)
                            .map(|d| q(d) * rows[j * ld + h + hd * dh + d] as f64)
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = w.iter().sum();
                for d in 0..dh {
                    let v: f64 = (0..len)
                        .map(|j| w[j] * rows[j * ld + 2 * h + hd * dh + d] as f64)
                        .sum();
                    out[i * h + hd * dh + d] = (v / total) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn attention_matches_plain_softmax_attention_for_both_head_widths() {
        let mut seed = 11;
        // Lengths around the 16-key and 4-query blocks; head widths 32 (MiniLM, e5) and 64 (BERT-base).
        for (h, heads) in [(64, 2), (128, 2)] {
            for len in [1, 3, 16, 17, 37] {
                let ld = 3 * h + 64;
                let rows: Vec<f32> = (0..len * ld).map(|_| lcg(&mut seed) * 2.0).collect();
                let want = naive_attention(&rows, ld, len, h, heads);
                let mut paths = vec![false];
                if fast_on_this_cpu() {
                    paths.push(true);
                }
                for fast in paths {
                    let mut out = vec![f32::NAN; len * h];
                    let mut buf = Vec::new();
                    attend(&rows, ld, len, h, heads, &mut out, &mut buf, fast);
                    for (k, (a, b)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "h {h} heads {heads} len {len} fast {fast} at {k}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn int8_product_is_close_to_the_float_product_and_both_kernels_agree() {
        let (n, k, rows) = (100, 96, 13);
        let mut seed = 7;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let bias: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed) * 3.0).collect();
        let lin = QLinear::new(&w, &bias, n, k).unwrap();
        assert_eq!(lin.n, 128);
        let mut q = vec![0u8; rows * k];
        let mut qs = vec![0f32; rows];
        quantize_rows(&x, k, k, &mut q, &mut qs, false);
        let mut portable = vec![0f32; rows * lin.n];
        lin.forward(&q, &qs, rows, &mut portable, false);
        for r in 0..rows {
            for c in 0..n {
                let exact: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum::<f32>() + bias[c];
                let got = portable[r * lin.n + c];
                // Rounding both operands to 8 bits: about ±0.1 here (96 terms); 0.4 is four deviations.
                assert!((got - exact).abs() < 0.4, "({r},{c}) {got} vs {exact}");
            }
            // Padding columns stay zero.
            assert!(
                portable[r * lin.n + n..(r + 1) * lin.n]
                    .iter()
                    .all(|v| *v == 0.0)
            );
        }
        #[cfg(target_arch = "x86_64")]
        if vnni::available() {
            let mut fast = vec![0f32; rows * lin.n];
            lin.forward(&q, &qs, rows, &mut fast, true);
            for (a, b) in fast.iter().zip(&portable) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }
}
