//! Customer service: answers from the shop's knowledge base, and the handoff to a person when the bot
//! is not sure. The engine ([`Support`]) ranks the knowledge base's entries for a message — the review
//! encoder's similarity to each entry's phrasings (in any language: the encoder is multilingual) blended
//! with their lexical overlap, as the router ranks tools — and decides: the best entry's answer,
//! verbatim, with its id as the source, in the customer's language when the entry has one; or a
//! handoff with its reason. It never writes a policy of its own and never reads shop data: a
//! customer's message reaches nothing but the knowledge base.

pub mod kb;
pub mod mask;

use std::sync::Arc;

use serde::Serialize;

use crate::agent::router::{grams, overlap};
use crate::nlp::encoder::{Encoder, cosine};
pub use kb::{Entry, KbError};

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    #[error(transparent)]
    Kb(#[from] KbError),
    #[error(transparent)]
    Encoder(#[from] crate::nlp::encoder::EncoderError),
    #[error(transparent)]
    Heads(#[from] crate::heads::HeadsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Why a conversation goes to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    /// No entry matched well enough.
    LowConfidence,
    /// The customer asked for a person.
    AskedForPerson,
    /// The customer is angry or upset.
    Negative,
    /// The customer asked the same thing again right after its answer: the answer did not help.
    FailedTwice,
}

impl HandoffReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffReason::LowConfidence => "low_confidence",
            HandoffReason::AskedForPerson => "asked_for_person",
            HandoffReason::Negative => "negative",
            HandoffReason::FailedTwice => "failed_twice",
        }
    }
}

/// An answer from the knowledge base.
#[derive(Debug, Clone, Serialize)]
pub struct KbAnswer {
    /// The entry's id: the reply's source.
    pub id: String,
    pub lang: String,
    /// The entry's answer, verbatim.
    pub text: String,
    pub confidence: f32,
    /// The entry exists only in the other language (the reply says so).
    pub other_language: bool,
}

/// What the bot does with a customer's message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    Answer(KbAnswer),
    Handoff {
        reason: HandoffReason,
        confidence: f32,
        /// The best entry, though not good enough.
        best: Option<String>,
    },
}

/// How the engine weighs its evidence (`[support]`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SupportSettings {
    pub threshold: f32,
    pub lexical_weight: f32,
}

struct Phrasing {
    /// Index into the distinct ids.
    id: usize,
    vector: Vec<f32>,
    grams: Vec<u32>,
}

/// The knowledge base, embedded once, ready to answer.
pub struct Support {
    entries: Vec<Entry>,
    ids: Vec<String>,
    phrasings: Vec<Phrasing>,
    encoder: Arc<Encoder>,
    pub settings: SupportSettings,
}

/// Words that ask for a person, in Chinese and English.
const ASK_FOR_PERSON: [&str; 14] = [
    "人工",
    "真人",
    "转人工",
    "客服人员",
    "找客服",
    "人类",
    "活人",
    "human",
    "real person",
    "an agent",
    "a person",
    "representative",
    "talk to someone",
    "speak to someone",
];

/// Words of anger; the conversation goes to a person rather than on with a bot.
const ANGRY: [&str; 18] = [
    "投诉",
    "垃圾",
    "骗子",
    "气死",
    "愤怒",
    "差劲",
    "举报",
    "太过分",
    "坑人",
    "滚",
    "scam",
    "fraud",
    "angry",
    "furious",
    "ridiculous",
    "unacceptable",
    "worst",
    "disgusting",
];

impl Support {
    /// Embeds every phrasing of `entries` (vectors cached by text under `cache`, so a restart does not
    /// encode them again).
    pub fn build(
        entries: Vec<Entry>,
        encoder: Arc<Encoder>,
        cache: Option<&mut crate::heads::VectorCache>,
        settings: SupportSettings,
    ) -> Result<Self, SupportError> {
        let mut ids: Vec<String> = Vec::new();
        let mut texts: Vec<(usize, &str)> = Vec::new();
        for e in &entries {
            let k = match ids.iter().position(|i| *i == e.id) {
                Some(k) => k,
                None => {
                    ids.push(e.id.clone());
                    ids.len() - 1
                }
            };
            for q in &e.questions {
                texts.push((k, q.as_str()));
            }
        }
        let plain: Vec<&str> = texts.iter().map(|(_, t)| *t).collect();
        let vectors = match cache {
            Some(c) => c.vectors(&encoder, &plain, 32, &indicatif::ProgressBar::hidden())?,
            None => encoder.encode(&plain, 32)?,
        };
        let phrasings = texts
            .iter()
            .zip(vectors)
            .map(|((k, t), vector)| Phrasing {
                id: *k,
                vector,
                grams: grams(t),
            })
            .collect();
        Ok(Self {
            entries,
            ids,
            phrasings,
            encoder,
            settings,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entry ids ranked for `text`, best first, with their scores (0..1).
    pub fn rank(&self, text: &str) -> Result<Vec<(String, f32)>, SupportError> {
        let v = self.encoder.encode(&[text], 1)?.pop().unwrap_or_default();
        let g = grams(text);
        let w = self.settings.lexical_weight.clamp(0.0, 1.0);
        let mut best = vec![f32::MIN; self.ids.len()];
        for p in &self.phrasings {
            let s = (1.0 - w) * cosine(&v, &p.vector) + w * overlap(&g, &p.grams);
            if s > best[p.id] {
                best[p.id] = s;
            }
        }
        let mut ranked: Vec<(String, f32)> = self.ids.iter().cloned().zip(best).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(ranked)
    }

    /// What to do with a customer's message. `repeated`: the conversation's last answer was the entry
    /// this message matches best (the customer asks the same again).
    pub fn decide(
        &self,
        text: &str,
        zh: bool,
        last_answered: Option<&str>,
    ) -> Result<Decision, SupportError> {
        self.decide_at(text, zh, last_answered, self.settings.threshold)
    }

    /// [`Support::decide`] at another threshold (the evaluation sweeps it).
    pub fn decide_at(
        &self,
        text: &str,
        zh: bool,
        last_answered: Option<&str>,
        threshold: f32,
    ) -> Result<Decision, SupportError> {
        let lower = text.to_lowercase();
        let ranked = self.rank(text)?;
        let (best, confidence) = ranked
            .first()
            .map(|(id, s)| (Some(id.clone()), *s))
            .unwrap_or((None, 0.0));
        let handoff = |reason| Decision::Handoff {
            reason,
            confidence,
            best: best.clone(),
        };
        if ASK_FOR_PERSON.iter().any(|w| lower.contains(w)) {
            return Ok(handoff(HandoffReason::AskedForPerson));
        }
        if ANGRY.iter().any(|w| lower.contains(w)) {
            return Ok(handoff(HandoffReason::Negative));
        }
        let Some(id) = best.as_deref().filter(|_| confidence >= threshold) else {
            return Ok(handoff(HandoffReason::LowConfidence));
        };
        if last_answered == Some(id) {
            return Ok(handoff(HandoffReason::FailedTwice));
        }
        let want = if zh { "zh" } else { "en" };
        let entry = self
            .entries
            .iter()
            .find(|e| e.id == id && e.lang == want)
            .or_else(|| self.entries.iter().find(|e| e.id == id))
            .expect("a ranked id has an entry");
        Ok(Decision::Answer(KbAnswer {
            id: entry.id.clone(),
            lang: entry.lang.clone(),
            text: entry.answer.clone(),
            confidence,
            other_language: entry.lang != want,
        }))
    }
}

/// The cache of the knowledge base's phrasing vectors (by text, per encoder) under data_dir/cache.
pub fn vector_cache(
    cfg: &crate::config::Config,
    encoder: &Encoder,
) -> Result<crate::heads::VectorCache, SupportError> {
    let path = cfg
        .data_dir()
        .join("cache")
        .join(format!("kb-{}.vectors", crate::heads::encoder_id(cfg)));
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    Ok(crate::heads::VectorCache::open(path, encoder.dim())?)
}

/// Replies of the customer-service desk that are not the knowledge base's.
pub mod replies {
    pub fn handoff(zh: bool) -> &'static str {
        if zh {
            "这个问题我转给了客服同事，他们会在这里尽快回复您。"
        } else {
            "I've passed this to a colleague, who will reply here as soon as possible."
        }
    }

    /// Appended to an answer that exists only in the other language.
    pub fn other_language(zh: bool) -> &'static str {
        if zh {
            "（这条答复目前只有英文版本。）"
        } else {
            "(This answer is only available in Chinese for now.)"
        }
    }

    pub fn source(zh: bool, id: &str) -> String {
        if zh {
            format!("来源：{id}")
        } else {
            format!("Source: {id}")
        }
    }

    pub fn released(zh: bool) -> &'static str {
        if zh {
            "客服同事已结束这次对话，接下来由我（自动助手）继续为您解答。"
        } else {
            "Our colleague has finished; I (the shop's assistant) will answer from here on."
        }
    }
}
