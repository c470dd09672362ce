//! dongcha's own BERT encoder forward pass for the CPU, with 8-bit or f32 matrix products — what
//! [`super::encoder::Encoder`] runs unless `[nlp] encoder_precision = "candle"`.
//!
//! What it does differently from candle-transformers' BERT (which stays the reference path):
//! - **int8 linear layers** (or f32 ones, [`super::f32mm`]: weights packed once for a register-tiled
//!   AVX-512 or AVX2 kernel). Weights are quantised once, per output channel (symmetric, ±127); each
//!   token's activations are quantised on the fly, per token. The products run on AVX-512 VNNI
//!   (`vpdpbusd`: 64 multiply-adds per instruction, four times an f32 FMA) in a 6 × 64 register tile,
//!   with the scales, bias and the unsigned-offset correction applied as the tile is stored.
//! - **without VNNI, AVX2** (`vpmaddubsw` + `vpmaddwd`, a 4 × 16 tile): `vpmaddubsw` sums two u8 × i8
//!   products into an i16 with saturation. `auto` quantises the weights to ±63 (7 bits), which cannot
//!   overflow it — what PyTorch's FBGEMM does with its activations (`reduce_range`) for the same reason;
//!   other integers than VNNI's, so other vectors (tag `-int8w7`: caches and heads are kept apart).
//!   `int8` keeps VNNI's integers (|q| × the weights with q's sign), one instruction more per product.
//! - **no padding.** The tokens of a batch are packed end to end; linear layers see only real tokens
//!   and attention runs per sequence over its own length.
//! - **row-local fusion.** Everything but attention is per token, so one thread takes a block of tokens
//!   through output projection, residual, layer norm, feed-forward, the second residual and layer norm,
//!   and on into the next layer's Q/K/V projection, while the block is still in cache. Two parallel
//!   phases per layer: rows, then sequences.
//!
//! On a CPU with neither, the int8 arithmetic runs in portable code (VNNI's integers, so the same
//! vectors up to float rounding, only much slower); [`Int8Bert::engine`] says which one runs, and the
//! encoder's `auto` picks int8 only where it is fast (f32 products elsewhere). `DONGCHA_MAX_ISA`
//! ([`super::cpu`]) forces a lower level, to measure on one machine what another runs.
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
/// (`DONGCHA_MAX_ISA` can rule them out: [`super::cpu`].)
pub fn fast_on_this_cpu() -> bool {
    super::cpu::isa() == super::cpu::Isa::Avx512Vnni
}

/// Panel width of the packed weights (four AVX-512 registers of 16 int32 lanes).
const PANEL: usize = 64;
/// Rows of one register tile.
const MR: usize = 6;
/// Tokens one thread carries through the row-local part of a layer at a time.
const ROW_BLOCK: usize = 48;

/// Which kernel a layer's int8 weights are packed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QKernel {
    /// AVX-512 VNNI (`vpdpbusd`), 8-bit weights, 64-column panels.
    Vnni,
    /// AVX2, VNNI's integers: |a| × (b with a's sign) through `vpmaddubsw` + `vpmaddwd`, 8-bit
    /// weights, 16-column panels. The same vectors as VNNI's, one instruction more per product than
    /// [`QKernel::Avx2W7`].
    Avx2,
    /// AVX2 on the stored u8 activations directly, with 7-bit weights (see [`QKernel::max_weight`]):
    /// three instructions per product where [`QKernel::Avx2`] needs four; other vectors.
    Avx2W7,
    /// Plain Rust, the VNNI kernel's integers (8-bit weights, 64-column panels).
    Portable,
}

impl QKernel {
    /// The kernel that gives VNNI's integers fastest on this CPU (within `DONGCHA_MAX_ISA`).
    pub fn exact_here() -> Self {
        match super::cpu::isa() {
            super::cpu::Isa::Avx512Vnni => QKernel::Vnni,
            super::cpu::Isa::Avx512 | super::cpu::Isa::Avx2 => QKernel::Avx2,
            super::cpu::Isa::Portable => QKernel::Portable,
        }
    }

    /// The fastest int8 kernel on this CPU, if one is faster than f32 products: VNNI, else AVX2 with
    /// 7-bit weights.
    pub fn fastest_here() -> Option<Self> {
        match super::cpu::isa() {
            super::cpu::Isa::Avx512Vnni => Some(QKernel::Vnni),
            super::cpu::Isa::Avx512 | super::cpu::Isa::Avx2 => Some(QKernel::Avx2W7),
            super::cpu::Isa::Portable => None,
        }
    }

    fn panel(self) -> usize {
        match self {
            QKernel::Vnni | QKernel::Portable => PANEL,
            QKernel::Avx2 | QKernel::Avx2W7 => 16,
        }
    }

    /// Largest weight magnitude. `vpmaddubsw` adds two u8 × i8 products into an i16 with saturation:
    /// on the stored activations (u8 = q + 128) 8-bit weights could overflow it (2 · 255 · 127 >
    /// 32767), 7-bit ones cannot (2 · 255 · 63 = 32130).
    fn max_weight(self) -> f32 {
        match self {
            QKernel::Avx2W7 => 63.0,
            QKernel::Vnni | QKernel::Avx2 | QKernel::Portable => 127.0,
        }
    }

    /// Suffix of the vectors this kernel gives, in cache names and head metadata: "-int8" for VNNI's
    /// integers, "-int8w7" for 7-bit weights (other vectors, so other caches and heads).
    pub fn tag(self) -> &'static str {
        match self {
            QKernel::Avx2W7 => "-int8w7",
            QKernel::Vnni | QKernel::Avx2 | QKernel::Portable => "-int8",
        }
    }

    /// How the engine names it: "int8 (AVX-512 VNNI)", "int8 (AVX2)", "int8 (AVX2, 7-bit weights)",
    /// "int8 (portable)".
    pub fn name(self) -> &'static str {
        match self {
            QKernel::Vnni => "int8 (AVX-512 VNNI)",
            QKernel::Avx2 => "int8 (AVX2)",
            QKernel::Avx2W7 => "int8 (AVX2, 7-bit weights)",
            QKernel::Portable => "int8 (portable)",
        }
    }
}

/// A linear layer with int8 weights, packed for the kernel.
struct QLinear {
    /// Output features (a multiple of the kernel's panel width; the padding columns have zero weights).
    n: usize,
    /// Input features (a multiple of 4).
    k: usize,
    kernel: QKernel,
    /// Panels of `kernel.panel()` columns; within a panel, for every 4 inputs, 4 bytes per column.
    packed: Vec<i8>,
    /// Per output column: weight scale.
    scale: Vec<f32>,
    /// Per output column: 128 × the column's weight sum (activations are stored as u8 = q + 128).
    offset: Vec<i32>,
    bias: Vec<f32>,
}

impl QLinear {
    /// `w`: (n, k) row-major, as PyTorch's `Linear.weight`.
    fn new(
        w: &[f32],
        bias: &[f32],
        n_real: usize,
        k: usize,
        kernel: QKernel,
    ) -> Result<Self, Int8Error> {
        if !k.is_multiple_of(4) {
            return Err(Int8Error::Unsupported(format!(
                "input width {k} is not a multiple of 4"
            )));
        }
        let nr = kernel.panel();
        let top = kernel.max_weight();
        let n = n_real.div_ceil(nr) * nr;
        let mut q = vec![0i8; n * k];
        let mut scale = vec![0f32; n];
        let mut offset = vec![0i32; n];
        for row in 0..n_real {
            let src = &w[row * k..(row + 1) * k];
            let max = max_abs(src);
            let s = if max > 0.0 { max / top } else { 1.0 };
            scale[row] = s;
            let mut sum = 0i32;
            for (d, v) in q[row * k..(row + 1) * k].iter_mut().zip(src) {
                let x = (v / s).round().clamp(-top, top) as i8;
                *d = x;
                sum += x as i32;
            }
            offset[row] = 128 * sum;
        }
        let mut packed = vec![0i8; n * k];
        let mut at = 0;
        for p in 0..n / nr {
            for k4 in 0..k / 4 {
                for c in 0..nr {
                    let row = p * nr + c;
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
            kernel,
            packed,
            scale,
            offset,
            bias: b,
        })
    }

    /// `out[r][0..n] = dequant(a[r] · W^T) + bias` for `rows` rows of `a` (u8, row length k).
    fn forward(&self, a: &[u8], row_scale: &[f32], rows: usize, out: &mut [f32]) {
        assert!(
            a.len() >= rows * self.k && out.len() >= rows * self.n && row_scale.len() >= rows,
            "int8 matmul: buffers shorter than {rows} rows"
        );
        #[cfg(target_arch = "x86_64")]
        match self.kernel {
            // SAFETY (all): each kernel runs only where the CPU has its instructions (checked here;
            // the portable code does any packing otherwise); the slices are long enough for `rows`
            // rows (asserted above).
            QKernel::Vnni if fast_on_this_cpu() => {
                unsafe { vnni::matmul(self, a, row_scale, rows, out) };
                return;
            }
            QKernel::Avx2 if avx2_fma() => {
                unsafe { avx2::matmul::<true>(self, a, row_scale, rows, out) };
                return;
            }
            QKernel::Avx2W7 if avx2_fma() => {
                unsafe { avx2::matmul::<false>(self, a, row_scale, rows, out) };
                return;
            }
            _ => {}
        }
        portable_matmul(self, a, row_scale, rows, out);
    }
}

/// The same integer arithmetic as the kernels, in plain Rust (any panel width).
fn portable_matmul(w: &QLinear, a: &[u8], row_scale: &[f32], rows: usize, out: &mut [f32]) {
    let k = w.k;
    let nr = w.kernel.panel();
    let mut col = vec![0i8; k];
    for n in 0..w.n {
        let (p, c) = (n / nr, n % nr);
        for k4 in 0..k / 4 {
            let at = p * nr * k + k4 * nr * 4 + c * 4;
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

/// A register tile of an int8 kernel: (a, lda, k4, b, row scales, scale, offset, bias, out, ldo), as
/// `vnni::tile` documents.
#[cfg(target_arch = "x86_64")]
type QTile = unsafe fn(
    *const u8,
    usize,
    usize,
    *const i8,
    *const f32,
    *const f32,
    *const i32,
    *const f32,
    *mut f32,
    usize,
);

/// Runs an int8 kernel's tiles over the product: panel by panel of `nr` columns, `tiles.len()` rows at a
/// time (`tiles[i]` takes i + 1 rows, for the last, shorter tile).
///
/// # Safety
/// The CPU has the tiles' instructions; `w` is packed in panels of `nr` columns for them; `a` holds
/// `rows × w.k` bytes, `rs` `rows` scales, `out` `rows × w.n` values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn drive(
    w: &QLinear,
    a: &[u8],
    rs: &[f32],
    rows: usize,
    out: &mut [f32],
    nr: usize,
    tiles: &[QTile],
) {
    let (k, n) = (w.k, w.n);
    let (ap, op) = (a.as_ptr(), out.as_mut_ptr());
    for p in 0..n / nr {
        let c0 = p * nr;
        let b = w.packed.as_ptr().wrapping_add(c0 * k);
        let (sc, off, bi) = (
            w.scale.as_ptr().wrapping_add(c0),
            w.offset.as_ptr().wrapping_add(c0),
            w.bias.as_ptr().wrapping_add(c0),
        );
        let mut r = 0;
        while r < rows {
            let h = (rows - r).min(tiles.len());
            // SAFETY: the caller's guarantees; r + h ≤ rows, c0 + nr ≤ n.
            unsafe {
                tiles[h - 1](
                    ap.add(r * k),
                    k,
                    k / 4,
                    b,
                    rs.as_ptr().add(r),
                    sc,
                    off,
                    bi,
                    op.add(r * n + c0),
                    n,
                )
            };
            r += h;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{MR, PANEL, QLinear};

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
        const TILES: [super::QTile; MR] = [
            tile::<1>, tile::<2>, tile::<3>, tile::<4>, tile::<5>, tile::<6>,
        ];
        // SAFETY: the caller's guarantees; TILES[i] takes i + 1 rows of a 64-column panel.
        unsafe { super::drive(w, a, rs, rows, out, PANEL, &TILES) }
    }
}

/// The int8 product without VNNI: `vpmaddubsw` (u8 × i8, adjacent pairs summed into i16 with
/// saturation) then `vpmaddwd` by ones (pairs of those into i32), in a 4 × 16 register tile. Two ways
/// to stay exact: `SIGNED` (VNNI's integers: |q| × (w with q's sign), each pair ≤ 2 · 127 · 127) or
/// the stored u8 activations against 7-bit weights ([`QKernel::max_weight`]), three instructions per
/// product instead of four. Otherwise as the VNNI kernel.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::QLinear;

    const NR: usize = 16;
    const MR: usize = 4;

    /// One tile: `R` rows × one 16-column panel, over the whole input width.
    ///
    /// # Safety
    /// AVX2 present; `a` points at `R` rows of `4 * k4` bytes with stride `lda`; `b` at a packed panel
    /// of `k4 * 64` bytes (7-bit weights unless `SIGNED`); `scale`/`offset`/`bias` at 16 values; `rs`
    /// at `R` values; `out` at `R` rows of 16 writable floats with stride `ldo`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const SIGNED: bool>(
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
            let ones = _mm256_set1_epi16(1);
            let mut acc = [[_mm256_setzero_si256(); 2]; R];
            let mut ap = a;
            let mut bp = b;
            for _ in 0..k4 {
                let b0 = _mm256_loadu_si256(bp as *const __m256i);
                let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a4 = (ap.add(r * lda) as *const i32).read_unaligned();
                    let (p0, p1) = if SIGNED {
                        // The activations as signed bytes (u8 = q + 128 → q), then |q| × (b with
                        // q's sign): each pair at most 2 · 127 · 127, exact.
                        let v = _mm256_set1_epi32(a4 ^ (0x8080_8080u32 as i32));
                        let m = _mm256_abs_epi8(v);
                        (
                            _mm256_maddubs_epi16(m, _mm256_sign_epi8(b0, v)),
                            _mm256_maddubs_epi16(m, _mm256_sign_epi8(b1, v)),
                        )
                    } else {
                        let v = _mm256_set1_epi32(a4);
                        (_mm256_maddubs_epi16(v, b0), _mm256_maddubs_epi16(v, b1))
                    };
                    let p0 = _mm256_madd_epi16(p0, ones);
                    let p1 = _mm256_madd_epi16(p1, ones);
                    acc[0] = _mm256_add_epi32(acc[0], p0);
                    acc[1] = _mm256_add_epi32(acc[1], p1);
                }
                ap = ap.add(4);
                bp = bp.add(4 * NR);
            }
            for c in 0..2 {
                let sc = _mm256_loadu_ps(scale.add(8 * c));
                let off = _mm256_loadu_si256(offset.add(8 * c) as *const __m256i);
                let bi = _mm256_loadu_ps(bias.add(8 * c));
                for (r, acc) in acc.iter().enumerate() {
                    // Signed products need no correction; u8 ones lose 128 × the weights' sum.
                    let v = if SIGNED {
                        acc[c]
                    } else {
                        _mm256_sub_epi32(acc[c], off)
                    };
                    let v = _mm256_cvtepi32_ps(v);
                    let s = _mm256_mul_ps(sc, _mm256_set1_ps(*rs.add(r)));
                    _mm256_storeu_ps(out.add(r * ldo + 8 * c), _mm256_fmadd_ps(v, s, bi));
                }
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA present; `w` packed for this kernel; `a` holds `rows × w.k` bytes, `rs` `rows`
    /// scales, `out` `rows × w.n`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn matmul<const SIGNED: bool>(
        w: &QLinear,
        a: &[u8],
        rs: &[f32],
        rows: usize,
        out: &mut [f32],
    ) {
        let tiles: [super::QTile; MR] = [
            tile::<1, SIGNED>,
            tile::<2, SIGNED>,
            tile::<3, SIGNED>,
            tile::<4, SIGNED>,
        ];
        // SAFETY: the caller's guarantees; tiles[i] takes i + 1 rows of a 16-column panel.
        unsafe { super::drive(w, a, rs, rows, out, NR, &tiles) }
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
                // at load: `cpu::isa() >= Isa::Avx512`).
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

/// Whether the CPU has AVX2 and FMA (and `DONGCHA_MAX_ISA` allows them).
#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    super::cpu::isa() >= super::cpu::Isa::Avx2
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

/// A linear layer in int8 or f32.
enum Linear {
    Int8(QLinear),
    F32(super::f32mm::PackedLinear),
}

/// Per-thread buffers for quantised activations.
#[derive(Default)]
struct Quant {
    q: Vec<u8>,
    scales: Vec<f32>,
}

impl Linear {
    fn new(
        w: &[f32],
        bias: &[f32],
        n: usize,
        k: usize,
        kernel: Option<QKernel>,
    ) -> Result<Self, Int8Error> {
        Ok(if let Some(kernel) = kernel {
            Linear::Int8(QLinear::new(w, bias, n, k, kernel)?)
        } else {
            Linear::F32(super::f32mm::PackedLinear::new(
                w,
                bias,
                n,
                k,
                super::cpu::isa(),
            ))
        })
    }

    /// Output row width (int8: padded to a multiple of 64 with zero columns).
    fn n(&self) -> usize {
        match self {
            Linear::Int8(l) => l.n,
            Linear::F32(l) => l.n(),
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
                l.forward(&qb.q, &qb.scales, rows, out);
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
        kernel: Option<QKernel>,
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
                kernel,
            )
        };
        let mut w = Vec::with_capacity(3 * h * h);
        let mut b = Vec::with_capacity(3 * h);
        for part in ["query", "key", "value"] {
            w.extend(get(&format!("{p}.attention.self.{part}.weight"), h * h)?);
            b.extend(get(&format!("{p}.attention.self.{part}.bias"), h)?);
        }
        Ok(Layer {
            qkv: Linear::new(&w, &b, 3 * h, h, kernel)?,
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
            .map(|i| Layer::from_named(&get, &format!("{prefix}{i}"), h, ffn, model.kernel))
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
    /// The int8 kernel of the linear layers; `None`: f32 products.
    kernel: Option<QKernel>,
}

/// Per-thread scratch for the row-local part of a layer.
#[derive(Default)]
struct Scratch {
    quant: Quant,
    tmp: Vec<f32>,
    ffn: Vec<f32>,
}

impl Int8Bert {
    /// Builds the model from BERT-named float tensors (what candle's `BertModel` loads), with int8
    /// linear layers for `kernel`, or f32 ones (`None`).
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        config: &candle_transformers::models::bert::Config,
        kernel: Option<QKernel>,
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
                kernel,
            )?);
        }
        // The elementwise code's AVX-512 build needs F/BW (with AVX2 and FMA), not VNNI.
        let fast = super::cpu::isa() >= super::cpu::Isa::Avx512;
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
            kernel,
        })
    }

    /// Whether the AVX-512 builds of the elementwise code run (AVX-512 F/BW, VNNI or not), else the
    /// AVX2 + FMA or portable builds.
    pub fn fast(&self) -> bool {
        self.fast
    }

    /// Whether the linear layers run in int8 (else f32).
    pub fn int8(&self) -> bool {
        self.kernel.is_some()
    }

    /// Which forward pass runs: [`QKernel::name`], or "f32".
    pub fn engine(&self) -> &'static str {
        self.kernel.map_or("f32", QKernel::name)
    }

    /// Suffix of this engine's vectors in cache names and head metadata: [`QKernel::tag`], or "" for
    /// f32 products.
    pub fn tag(&self) -> &'static str {
        self.kernel.map_or("", QKernel::tag)
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
                if crate::nlp::cpu::isa() >= crate::nlp::cpu::Isa::Avx512 {
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
    fn int8_product_is_close_to_the_float_product_and_every_kernel_agrees_with_plain_code() {
        let (n, k, rows) = (100, 96, 13);
        let mut seed = 7;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let bias: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut seed) * 3.0).collect();
        let mut q = vec![0u8; rows * k];
        let mut qs = vec![0f32; rows];
        quantize_rows(&x, k, k, &mut q, &mut qs, false);
        let isa = crate::nlp::cpu::isa();
        // Rounding both operands to 8 bits: about ±0.1 here (96 terms); 0.4 is four deviations. With
        // 7-bit weights the weights' share of the error doubles.
        for (kernel, padded, tolerance) in [
            (QKernel::Portable, 128, 0.4),
            (QKernel::Vnni, 128, 0.4),
            (QKernel::Avx2, 112, 0.4),
            (QKernel::Avx2W7, 112, 0.6),
        ] {
            let lin = QLinear::new(&w, &bias, n, k, kernel).unwrap();
            assert_eq!(lin.n, padded);
            let mut plain = vec![0f32; rows * lin.n];
            portable_matmul(&lin, &q, &qs, rows, &mut plain);
            for r in 0..rows {
                for c in 0..n {
                    let exact: f32 =
                        (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum::<f32>() + bias[c];
                    let got = plain[r * lin.n + c];
                    assert!(
                        (got - exact).abs() < tolerance,
                        "{kernel:?} ({r},{c}) {got} vs {exact}"
                    );
                }
                // Padding columns stay zero.
                assert!(
                    plain[r * lin.n + n..(r + 1) * lin.n]
                        .iter()
                        .all(|v| *v == 0.0)
                );
            }
            let runs = match kernel {
                QKernel::Portable => false,
                QKernel::Vnni => isa == crate::nlp::cpu::Isa::Avx512Vnni,
                QKernel::Avx2 | QKernel::Avx2W7 => isa >= crate::nlp::cpu::Isa::Avx2,
            };
            if !runs {
                continue;
            }
            let mut fast = vec![0f32; rows * lin.n];
            lin.forward(&q, &qs, rows, &mut fast);
            for (a, b) in fast.iter().zip(&plain) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{kernel:?} {a} vs {b}"
                );
            }
        }
    }

    /// `vpmaddubsw` saturates a pair's sum at ±32767: on the stored activations (u8 = q + 128) with
    /// 8-bit weights, large same-signed products would be cut there. Both AVX2 kernels avoid it (signed
    /// activations with 8-bit weights; u8 ones with 7-bit weights), so even the extremes give plain
    /// arithmetic's result.
    #[test]
    fn the_avx2_kernels_do_not_saturate_at_extreme_values() {
        if crate::nlp::cpu::isa() < crate::nlp::cpu::Isa::Avx2 {
            return;
        }
        let (n, k, rows) = (16, 64, 4);
        // Weights of alternating sign at full scale; activations at the extremes of both signs.
        let w: Vec<f32> = (0..n * k)
            .map(|i| if (i / 2) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let x: Vec<f32> = (0..rows * k)
            .map(|i| match (i / k, (i / 2) % 2) {
                (0, _) => 1.0,
                (1, _) => -1.0,
                (_, 0) => 1.0,
                _ => -1.0,
            })
            .collect();
        let mut q = vec![0u8; rows * k];
        let mut qs = vec![0f32; rows];
        quantize_rows(&x, k, k, &mut q, &mut qs, false);
        for kernel in [QKernel::Avx2, QKernel::Avx2W7] {
            let lin = QLinear::new(&w, &vec![0.0; n], n, k, kernel).unwrap();
            let mut plain = vec![0f32; rows * n];
            portable_matmul(&lin, &q, &qs, rows, &mut plain);
            let mut fast = vec![0f32; rows * n];
            lin.forward(&q, &qs, rows, &mut fast);
            for r in 0..rows {
                for c in 0..n {
                    let exact: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                    let (p, f) = (plain[r * n + c], fast[r * n + c]);
                    let near = |a: f32, b: f32| (a - b).abs() < 1e-3 * b.abs().max(1.0);
                    assert!(near(p, exact), "{kernel:?} ({r},{c}) {p} vs {exact}");
                    assert!(near(f, p), "{kernel:?} ({r},{c}) kernel {f} vs {p}");
                }
            }
        }
    }
}
