//! Which vector instructions the encoder's kernels may use on this CPU, decided once per process.
//!
//! `DONGCHA_MAX_ISA` (`avx512`, `avx2` or `portable`) caps the choice below what the CPU has — how a
//! machine with AVX-512 VNNI measures the kernels a CPU without it runs (the AVX2 build: what an AMD
//! EPYC before Zen 4 gets), the way oneDNN's `ONEDNN_MAX_CPU_ISA` and MKL's `MKL_ENABLE_INSTRUCTIONS`
//! cap PyTorch. It can only lower the level, never claim instructions the CPU lacks.

use std::sync::OnceLock;

/// Instruction-set levels the kernels are built for, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust (any CPU).
    Portable,
    /// AVX2 with FMA: 8-wide f32 products.
    Avx2,
    /// AVX-512 F/BW (with AVX2 and FMA): 16-wide f32 products.
    Avx512,
    /// AVX-512 with VNNI: also the 8-bit products (`vpdpbusd`).
    Avx512Vnni,
}

impl Isa {
    /// The level's name as `DONGCHA_MAX_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "none" => Isa::Portable,
            "avx2" => Isa::Avx2,
            "avx512" => Isa::Avx512,
            "avx512-vnni" | "avx512vnni" | "native" | "" => Isa::Avx512Vnni,
            _ => return None,
        })
    }
}

/// What this CPU has, capped by `DONGCHA_MAX_ISA` when it is set.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = match std::env::var("DONGCHA_MAX_ISA") {
            Ok(v) => Isa::parse(&v).unwrap_or_else(|| {
                tracing::warn!(
                    value = %v,
                    "DONGCHA_MAX_ISA is not one of avx512, avx2, portable: ignored"
                );
                Isa::Avx512Vnni
            }),
            Err(_) => Isa::Avx512Vnni,
        };
        detected().min(cap)
    })
}

/// The highest level the CPU reports. A virtual machine may mask features one by one, so each level
/// checks everything its kernels are compiled with.
fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 =
            avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
        if avx512 && is_x86_feature_detected!("avx512vnni") {
            Isa::Avx512Vnni
        } else if avx512 {
            Isa::Avx512
        } else if avx2 {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Isa::Portable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_read_by_name_and_unknown_names_are_refused() {
        assert_eq!(Isa::parse("AVX2"), Some(Isa::Avx2));
        assert_eq!(Isa::parse(" avx512 "), Some(Isa::Avx512));
        assert_eq!(Isa::parse("portable"), Some(Isa::Portable));
        assert_eq!(Isa::parse("sse9"), None);
        assert!(Isa::Avx2 < Isa::Avx512 && Isa::Avx512 < Isa::Avx512Vnni);
        assert!(isa() <= detected());
    }
}
