//! f32 linear layers for the encoder's own forward pass ([`super::int8`] with f32 products — what runs
//! on a CPU without AVX-512 VNNI): the weights are packed once, at load, into panels as wide as the
//! CPU's register tile, and a register-tiled kernel (AVX-512: 6 rows × 64 columns; AVX2 + FMA: 6 × 16)
//! multiplies a block of tokens by them with the bias added as the tile is stored.
//!
//! A general matrix-multiply library packs the weight matrix again on every call; the encoder calls
//! with blocks of ~48 tokens against the same few matrices millions of times, so packing once is what
//! matters. Without AVX2 the `gemm` crate does the product (portable).

use super::cpu::Isa;

/// A linear layer `out = x · Wᵀ + bias` with f32 weights, packed for one instruction-set level.
pub(crate) struct PackedLinear {
    /// Output row width: the output features, padded to a whole panel (zero weights and bias).
    n: usize,
    k: usize,
    /// Columns per panel (64 with AVX-512, 16 with AVX2); 0: `w` is unpacked (n, k) row-major.
    nr: usize,
    isa: Isa,
    /// Panel after panel; within a panel, for every input, the panel's `nr` weights.
    w: Vec<f32>,
    bias: Vec<f32>,
}

/// Rows of one register tile.
const MR: usize = 6;

impl PackedLinear {
    /// `w`: (n, k) row-major, as PyTorch's `Linear.weight`; packed for `isa`'s kernel.
    pub(crate) fn new(w: &[f32], bias: &[f32], n_real: usize, k: usize, isa: Isa) -> Self {
        assert_eq!(w.len(), n_real * k, "weights of ({n_real}, {k})");
        let nr = match isa {
            Isa::Avx512 | Isa::Avx512Vnni => 64,
            Isa::Avx2 => 16,
            Isa::Portable => 0,
        };
        if nr == 0 {
            return Self {
                n: n_real,
                k,
                nr,
                isa,
                w: w.to_vec(),
                bias: bias.to_vec(),
            };
        }
        let n = n_real.div_ceil(nr) * nr;
        let mut packed = vec![0f32; n * k];
        for (p, panel) in packed.chunks_exact_mut(k * nr).enumerate() {
            for (kk, dst) in panel.chunks_exact_mut(nr).enumerate() {
                for (c, d) in dst.iter_mut().enumerate() {
                    let row = p * nr + c;
                    if row < n_real {
                        *d = w[row * k + kk];
                    }
                }
            }
        }
        let mut b = bias.to_vec();
        b.resize(n, 0.0);
        Self {
            n,
            k,
            nr,
            isa,
            w: packed,
            bias: b,
        }
    }

    /// Output row width (padded to a whole panel).
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// `out[r][0..n] = x[r][0..k] · Wᵀ + bias` for `rows` rows of `x` (row stride `ld`).
    pub(crate) fn forward(&self, x: &[f32], ld: usize, rows: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        if rows == 0 {
            return;
        }
        assert!(
            ld >= k && x.len() >= (rows - 1) * ld + k && out.len() >= rows * n,
            "f32 matmul: buffers shorter than {rows} rows"
        );
        #[cfg(target_arch = "x86_64")]
        match self.isa {
            // SAFETY (both): the level was detected on this CPU (`cpu::isa`) and the weights were
            // packed for it; the buffers hold `rows` rows (asserted above).
            Isa::Avx512 | Isa::Avx512Vnni => {
                unsafe { avx512::matmul(self, x, ld, rows, out) };
                return;
            }
            Isa::Avx2 => {
                unsafe { avx2::matmul(self, x, ld, rows, out) };
                return;
            }
            Isa::Portable => {}
        }
        self.portable(x, ld, rows, out);
    }

    /// The product by the `gemm` crate from the unpacked weights.
    fn portable(&self, x: &[f32], ld: usize, rows: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        assert_eq!(self.nr, 0, "portable product over packed weights");
        // SAFETY: dst is rows × n with row stride n, lhs rows × k with row stride ld, rhs k × n read
        // from the (n, k) weights (row stride 1, column stride k): all within the slices (checked by
        // `forward`).
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

/// Both kernels from one text: a register tile of `R` rows × one `NR`-column panel (`NR / LANES`
/// vectors per row) over the whole input width, and the driver that walks the panels (the panel stays
/// in cache) in tiles of `MR` rows, the last tile narrower. The rows are read where they are.
macro_rules! kernel {
    ($feature:literal, $nr:literal, $lanes:literal, $zero:ident, $load:ident, $splat:ident,
     $fma:ident, $add:ident, $store:ident) => {
        use std::arch::x86_64::*;

        use super::{MR, PackedLinear};

        const NR: usize = $nr;
        const V: usize = NR / $lanes;

        /// # Safety
        /// The CPU has the module's instructions; `a` points at `R` rows of `k` floats, stride `lda`;
        /// `b` at a packed panel of `k × NR` floats; `bias` at `NR` values; `out` at `R` rows of
        /// `NR` writable floats, stride `ldo`.
        #[target_feature(enable = $feature)]
        unsafe fn tile<const R: usize>(
            a: *const f32,
            lda: usize,
            k: usize,
            b: *const f32,
            bias: *const f32,
            out: *mut f32,
            ldo: usize,
        ) {
            unsafe {
                let mut acc = [[$zero(); V]; R];
                let mut bp = b;
                for kk in 0..k {
                    let mut bv = [$zero(); V];
                    for (c, v) in bv.iter_mut().enumerate() {
                        *v = $load(bp.add($lanes * c));
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let x = $splat(*a.add(r * lda + kk));
                        for (acc, bv) in acc.iter_mut().zip(&bv) {
                            *acc = $fma(x, *bv, *acc);
                        }
                    }
                    bp = bp.add(NR);
                }
                for c in 0..V {
                    let bi = $load(bias.add($lanes * c));
                    for (r, acc) in acc.iter().enumerate() {
                        $store(out.add(r * ldo + $lanes * c), $add(acc[c], bi));
                    }
                }
            }
        }

        /// # Safety
        /// The CPU has the module's instructions; `x` holds `rows` rows of stride `ld ≥ k`, `out`
        /// `rows × w.n` values; `w` was packed for this module's panel width.
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn matmul(
            w: &PackedLinear,
            x: &[f32],
            ld: usize,
            rows: usize,
            out: &mut [f32],
        ) {
            debug_assert_eq!(w.nr, NR);
            let (n, k) = (w.n, w.k);
            let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
            for p in 0..n / NR {
                let b = w.w.as_ptr().wrapping_add(p * NR * k);
                let bias = w.bias.as_ptr().wrapping_add(p * NR);
                let mut r = 0;
                // SAFETY (all calls): the caller's guarantees; r + R ≤ rows, p·NR + NR ≤ n.
                unsafe {
                    while r + MR <= rows {
                        tile::<MR>(xp.add(r * ld), ld, k, b, bias, op.add(r * n + p * NR), n);
                        r += MR;
                    }
                    let (a, o) = (xp.add(r * ld), op.add(r * n + p * NR));
                    match rows - r {
                        0 => {}
                        1 => tile::<1>(a, ld, k, b, bias, o, n),
                        2 => tile::<2>(a, ld, k, b, bias, o, n),
                        3 => tile::<3>(a, ld, k, b, bias, o, n),
                        4 => tile::<4>(a, ld, k, b, bias, o, n),
                        _ => tile::<5>(a, ld, k, b, bias, o, n),
                    }
                }
            }
        }
    };
}

/// AVX-512 F: 6 rows × 64 columns in 24 registers.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    kernel!(
        "avx512f",
        64,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps
    );
}

/// AVX2 + FMA: 6 rows × 16 columns in 12 registers.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    kernel!(
        "avx2,fma",
        16,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }

    #[test]
    fn every_kernel_gives_the_plain_product_for_every_tile_height() {
        let (n, k) = (80, 52);
        let mut s = 7;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let bias: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
        let ld = k + 3;
        for rows in [1, 5, 6, 7, 13, 48] {
            let x: Vec<f32> = (0..rows * ld).map(|_| lcg(&mut s)).collect();
            for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
                if isa > super::super::cpu::isa() {
                    continue;
                }
                let l = PackedLinear::new(&w, &bias, n, k, isa);
                let mut out = vec![f32::NAN; rows * l.n()];
                l.forward(&x, ld, rows, &mut out);
                for r in 0..rows {
                    for c in 0..l.n() {
                        let want = if c < n {
                            (0..k).map(|i| x[r * ld + i] * w[c * k + i]).sum::<f32>() + bias[c]
                        } else {
                            0.0
                        };
                        let got = out[r * l.n() + c];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{isa:?} rows {rows} ({r}, {c}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
