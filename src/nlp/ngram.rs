//! A character n-gram logistic regression: the classic strong baseline for short Chinese reviews, and a
//! complement to the sentence encoder (it sees exact words such as "退货" or "好评" that a 384-d sentence
//! vector blurs). Features are the hashed presence of character 1-, 2- and 3-grams (2^20 buckets),
//! scaled by 1/√count; trained with AdaGrad and L2 decay over a seeded order, so a rerun gives the same
//! weights.

use unicode_normalization::UnicodeNormalization;

pub const BUCKETS_LOG2: u32 = 20;
const BUCKETS: usize = 1 << BUCKETS_LOG2;

/// The distinct hashed n-gram buckets of a text.
pub fn features(text: &str) -> Vec<u32> {
    let chars: Vec<char> = text
        .nfkc()
        .flat_map(char::to_lowercase)
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut out = Vec::with_capacity(chars.len() * 3);
    let mut buf = String::new();
    for n in 1..=3usize {
        for w in chars.windows(n) {
            buf.clear();
            buf.extend(w);
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(buf.as_bytes(), n as u64);
            out.push((h as usize & (BUCKETS - 1)) as u32);
        }
    }
    // Latin-script words and word pairs ("not good", "waste of"): character grams without the spaces
    // see little of English.
    let lower: String = text.nfkc().flat_map(char::to_lowercase).collect();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .filter(|w| w.bytes().any(|b| b.is_ascii_alphabetic()))
        .collect();
    for n in 1..=2usize {
        for w in words.windows(n) {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(w.join(" ").as_bytes(), 10 + n as u64);
            out.push((h as usize & (BUCKETS - 1)) as u32);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[derive(Debug, Clone)]
pub struct NgramModel {
    pub weights: Vec<f32>,
    pub bias: f32,
}

#[derive(Debug, Clone)]
pub struct NgramOptions {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
}

impl Default for NgramOptions {
    fn default() -> Self {
        Self {
            epochs: 8,
            learning_rate: 0.2,
            l2: 1e-6,
            seed: 618,
        }
    }
}

impl NgramModel {
    /// The log-odds of the positive class.
    pub fn logit(&self, feats: &[u32]) -> f32 {
        if feats.is_empty() {
            return self.bias;
        }
        let scale = 1.0 / (feats.len() as f32).sqrt();
        self.bias + scale * feats.iter().map(|f| self.weights[*f as usize]).sum::<f32>()
    }

    /// Trains on (features, positive) pairs.
    pub fn train(data: &[(Vec<u32>, bool)], opts: &NgramOptions) -> Self {
        let mut m = Self {
            weights: vec![0.0; BUCKETS],
            bias: 0.0,
        };
        let mut g2 = vec![1e-8f32; BUCKETS];
        let mut g2_bias = 1e-8f32;
        let mut order: Vec<usize> = (0..data.len()).collect();
        for epoch in 0..opts.epochs {
            order.sort_by_key(|i| {
                xxhash_rust::xxh3::xxh3_64_with_seed(
                    &(*i as u64).to_le_bytes(),
                    opts.seed ^ epoch as u64,
                )
            });
            for &i in &order {
                let (feats, y) = &data[i];
                let p = 1.0 / (1.0 + (-m.logit(feats)).exp());
                let err = p - f32::from(u8::from(*y));
                let scale = 1.0 / (feats.len().max(1) as f32).sqrt();
                for f in feats {
                    let f = *f as usize;
                    let g = err * scale + opts.l2 * m.weights[f];
                    g2[f] += g * g;
                    m.weights[f] -= opts.learning_rate * g / g2[f].sqrt();
                }
                g2_bias += err * err;
                m.bias -= opts.learning_rate * err / g2_bias.sqrt();
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// English reviews were scored on character grams without the spaces ("notgood" and "not good"
    /// were the same text); words and word pairs are features of their own, Chinese text has none.
    #[test]
    fn english_words_and_pairs_are_features_beyond_characters() {
        let spaced = features("not good");
        let joined = features("notgood");
        // 3 words-or-pairs more: "not", "good", "not good" (joined: the one word "notgood").
        assert_eq!(spaced.len(), joined.len() + 2);
        assert_ne!(spaced, joined);
        assert_eq!(features("Not GOOD"), spaced, "case does not matter");
        assert_eq!(features("物流太慢").len(), 9, "no words in Chinese text");
    }

    #[test]
    fn features_are_hashed_character_ngrams() {
        let a = features("物流太慢");
        // 4 unigrams + 3 bigrams + 2 trigrams, all distinct buckets here.
        assert_eq!(a.len(), 9);
        assert_eq!(features("物流 太慢"), a, "spaces do not count");
        assert_eq!(features("ＡＢ"), features("ab"), "width and case folded");
    }

    #[test]
    fn learns_which_words_are_positive() {
        let pos = [
            "很好用",
            "质量很好",
            "非常满意",
            "好评",
            "很喜欢",
            "物超所值",
        ];
        let neg = [
            "太差了",
            "质量很差",
            "非常失望",
            "差评",
            "退货了",
            "不值这个价",
        ];
        let data: Vec<(Vec<u32>, bool)> = pos
            .iter()
            .map(|t| (features(t), true))
            .chain(neg.iter().map(|t| (features(t), false)))
            .collect();
        let m = NgramModel::train(
            &data,
            &NgramOptions {
                epochs: 30,
                ..Default::default()
            },
        );
        assert!(m.logit(&features("很好，很满意")) > 0.0);
        assert!(m.logit(&features("太差，很失望")) < 0.0);
    }
}
