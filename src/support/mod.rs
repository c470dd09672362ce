//! Customer service: answers from the shop's knowledge base, and the handoff to a person when the bot
//! is not sure. The engine ([`Support`]) ranks the knowledge base's entries for a message — the review
//! encoder's similarity to each entry's phrasings (in any language: the encoder is multilingual) blended
//! with their lexical overlap, as the router ranks tools — and decides: the best entry's answer,
//! verbatim, with its id as the source, in the customer's language when the entry has one; or a
//! handoff with its reason. It never writes a policy of its own and never reads shop data: a
//! customer's message reaches nothing but the knowledge base.

pub mod kb;
pub mod mask;
pub mod public;

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
    /// The entry's tags ([`ORDER_TAG`]: the answer adds the linked customer's own orders).
    pub tags: Vec<String>,
}

/// The tag of entries about the customer's own orders ("where is my order?"): once a chat is linked to
/// a shop customer, their answer lists that customer's latest orders.
pub const ORDER_TAG: &str = "order";

/// A one-time link code: 8 characters from an alphabet without look-alikes (0/O, 1/I), ~40 bits.
pub fn link_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).expect("the OS random source");
    buf.iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
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
    /// How much being nearer to an out-of-scope message ([`outside_phrasings`]) than to an entry costs
    /// that entry's confidence: confidence = score − weight × max(0, outside − score).
    pub outside_weight: f32,
    /// How much the similarity of the question to an entry's answer counts next to its nearest phrasing:
    /// score = (1 − weight) × phrasing + weight × answer. A customer often names what the answer
    /// speaks of ("Visa" → "credit cards") rather than how the shop phrased the question.
    pub answer_weight: f32,
    /// How much the similarity to the centre of an entry's phrasings in one language counts next to
    /// its nearest phrasing: nearest = (1 − weight) × nearest + weight × centre, before the answer.
    pub centroid_weight: f32,
}

impl From<&crate::config::SupportConfig> for SupportSettings {
    fn from(c: &crate::config::SupportConfig) -> Self {
        Self {
            threshold: c.threshold,
            lexical_weight: c.lexical_weight,
            outside_weight: c.outside_weight,
            answer_weight: c.answer_weight,
            centroid_weight: c.centroid_weight,
        }
    }
}

/// Out-of-scope messages shipped with dongcha: `prompts/support_outside.tsv` and the operators'
/// example questions of the router (shop data a customer never gets).
pub const OUTSIDE_TSV: &str = include_str!("../../prompts/support_outside.tsv");

/// An out-of-scope phrasing closer than this to one of the shop's own phrasings is not used.
const OUTSIDE_NEAR_KB: f32 = 0.95;

/// The out-of-scope messages the engine compares with: [`OUTSIDE_TSV`] and the router's examples.
pub fn outside_phrasings() -> Vec<String> {
    let own = OUTSIDE_TSV
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string);
    let operators = crate::agent::router::EXAMPLES_TSV
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t').map(|(_, q)| q.trim().to_string()))
        .filter(|q| !q.is_empty());
    own.chain(operators).collect()
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
    /// Each answer's vector, by index into the distinct ids (one per language an entry has).
    answers: Vec<(usize, Vec<f32>)>,
    /// The normalised mean of an entry's phrasing vectors in each of its languages, by id index.
    centres: Vec<(usize, Vec<f32>)>,
    /// Vectors of out-of-scope messages (those not too close to the shop's own phrasings).
    outside: Vec<Vec<f32>>,
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
    /// Embeds every phrasing of `entries` and the `outside` messages (vectors cached by text under
    /// `cache`, so a restart does not encode them again).
    pub fn build(
        entries: Vec<Entry>,
        outside: &[String],
        encoder: Arc<Encoder>,
        cache: Option<&mut crate::heads::VectorCache>,
        settings: SupportSettings,
    ) -> Result<Self, SupportError> {
        let mut ids: Vec<String> = Vec::new();
        let mut texts: Vec<(usize, &str)> = Vec::new();
        // Which (id, language) group each phrasing belongs to.
        let mut groups: Vec<(usize, &str)> = Vec::new();
        let mut group_of: Vec<usize> = Vec::new();
        let mut answer_texts: Vec<(usize, &str)> = Vec::new();
        for e in &entries {
            let k = match ids.iter().position(|i| *i == e.id) {
                Some(k) => k,
                None => {
                    ids.push(e.id.clone());
                    ids.len() - 1
                }
            };
            let g = match groups.iter().position(|&(i, l)| i == k && l == e.lang) {
                Some(g) => g,
                None => {
                    groups.push((k, e.lang.as_str()));
                    groups.len() - 1
                }
            };
            for q in &e.questions {
                texts.push((k, q.as_str()));
                group_of.push(g);
            }
            answer_texts.push((k, e.answer.as_str()));
        }
        let mut plain: Vec<&str> = texts.iter().map(|(_, t)| *t).collect();
        plain.extend(answer_texts.iter().map(|(_, t)| *t));
        plain.extend(outside.iter().map(String::as_str));
        let mut vectors = match cache {
            Some(c) => c.vectors(&encoder, &plain, 32, &indicatif::ProgressBar::hidden())?,
            None => encoder.encode(&plain, 32)?,
        };
        let outside_vectors = vectors.split_off(texts.len() + answer_texts.len());
        let answers: Vec<(usize, Vec<f32>)> = answer_texts
            .iter()
            .map(|(k, _)| *k)
            .zip(vectors.split_off(texts.len()))
            .collect();
        let outside: Vec<Vec<f32>> = outside_vectors
            .into_iter()
            .filter(|o| vectors.iter().all(|v| cosine(o, v) < OUTSIDE_NEAR_KB))
            .collect();
        let mut centres: Vec<(usize, Vec<f32>)> = groups
            .iter()
            .map(|&(k, _)| (k, vec![0.0; vectors.first().map_or(0, Vec::len)]))
            .collect();
        for (g, v) in group_of.iter().zip(&vectors) {
            for (c, x) in centres[*g].1.iter_mut().zip(v) {
                *c += x;
            }
        }
        for (_, c) in &mut centres {
            let norm = c.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                c.iter_mut().for_each(|x| *x /= norm);
            }
        }
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
            answers,
            centres,
            outside,
            encoder,
            settings,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entry ids ranked for `text`, best first, with their confidences: the similarity to the entry's
    /// nearest phrasing blended with that to its answer, less the penalty for being nearer still to an
    /// out-of-scope message.
    pub fn rank(&self, text: &str) -> Result<Vec<(String, f32)>, SupportError> {
        let v = self.encode(text)?;
        Ok(self.rank_encoded(text, &v))
    }

    /// The encoder's vector of `text` (what [`Support::rank_encoded`] takes).
    pub fn encode(&self, text: &str) -> Result<Vec<f32>, SupportError> {
        Ok(self.encoder.encode(&[text], 1)?.pop().unwrap_or_default())
    }

    /// [`Support::rank`] of `text` whose vector `v` is already known (the evaluation encodes each
    /// question once for every setting it tries).
    pub fn rank_encoded(&self, text: &str, v: &[f32]) -> Vec<(String, f32)> {
        let g = grams(text);
        let w = self.settings.lexical_weight.clamp(0.0, 1.0);
        let mut best = vec![f32::MIN; self.ids.len()];
        for p in &self.phrasings {
            let s = (1.0 - w) * cosine(v, &p.vector) + w * overlap(&g, &p.grams);
            if s > best[p.id] {
                best[p.id] = s;
            }
        }
        // The nearest phrasing, then the centre of the phrasings, then the answer (in that order).
        blend(&mut best, v, &self.centres, self.settings.centroid_weight);
        blend(&mut best, v, &self.answers, self.settings.answer_weight);
        let outside = self
            .outside
            .iter()
            .map(|o| cosine(v, o))
            .fold(f32::MIN, f32::max);
        let k = self.settings.outside_weight.max(0.0);
        for b in &mut best {
            *b -= k * (outside - *b).max(0.0);
        }
        let mut ranked: Vec<(String, f32)> = self.ids.iter().cloned().zip(best).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked
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
        let v = self.encode(text)?;
        Ok(self.decide_encoded(text, &v, zh, last_answered, threshold))
    }

    /// [`Support::decide_at`] of `text` whose vector `v` is already known.
    pub fn decide_encoded(
        &self,
        text: &str,
        v: &[f32],
        zh: bool,
        last_answered: Option<&str>,
        threshold: f32,
    ) -> Decision {
        let lower = text.to_lowercase();
        let ranked = self.rank_encoded(text, v);
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
            return handoff(HandoffReason::AskedForPerson);
        }
        if ANGRY.iter().any(|w| lower.contains(w)) {
            return handoff(HandoffReason::Negative);
        }
        let Some(id) = best.as_deref().filter(|_| confidence >= threshold) else {
            return handoff(HandoffReason::LowConfidence);
        };
        if last_answered == Some(id) {
            return handoff(HandoffReason::FailedTwice);
        }
        let want = if zh { "zh" } else { "en" };
        let entry = self
            .entries
            .iter()
            .find(|e| e.id == id && e.lang == want)
            .or_else(|| self.entries.iter().find(|e| e.id == id))
            .expect("a ranked id has an entry");
        Decision::Answer(KbAnswer {
            id: entry.id.clone(),
            lang: entry.lang.clone(),
            text: entry.answer.clone(),
            confidence,
            other_language: entry.lang != want,
            tags: entry.tags.clone(),
        })
    }
}

/// `best[k] = (1 − weight) × best[k] + weight × (similarity of v to k's nearest vector in `others`)`
/// for every id k that has one there.
fn blend(best: &mut [f32], v: &[f32], others: &[(usize, Vec<f32>)], weight: f32) {
    let weight = weight.clamp(0.0, 1.0);
    if weight == 0.0 {
        return;
    }
    let mut near = vec![f32::MIN; best.len()];
    for (k, vector) in others {
        near[*k] = near[*k].max(cosine(v, vector));
    }
    for (b, s) in best.iter_mut().zip(near) {
        if s > f32::MIN {
            *b = (1.0 - weight) * *b + weight * s;
        }
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

    /// Told to a chat not linked to a shop customer that asks about its orders.
    pub fn how_to_link(zh: bool) -> &'static str {
        if zh {
            "要让我查您自己的订单，请先绑定账号：向店铺客服索取绑定码，然后发送“/link 绑定码”。"
        } else {
            "To let me look up your own orders, link your account first: ask the shop for a link code, then send \"/link CODE\"."
        }
    }

    /// The linked customer's latest `n` orders (baskets), newest first.
    pub fn own_orders(zh: bool, lines: &[crate::store::SaleLine], n: usize) -> String {
        let mut orders: Vec<(&str, chrono::NaiveDate, Vec<&crate::store::SaleLine>)> = Vec::new();
        for l in lines {
            match orders.iter_mut().find(|(k, _, _)| *k == l.order_key) {
                Some((_, date, ls)) => {
                    *date = (*date).max(l.date);
                    ls.push(l);
                }
                None => orders.push((l.order_key.as_str(), l.date, vec![l])),
            }
        }
        if orders.is_empty() {
            return (if zh {
                "您的账号下还没有订单记录。"
            } else {
                "There are no orders on your account yet."
            })
            .to_string();
        }
        orders.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0)));
        let mut out = if zh {
            format!("您最近的 {} 个订单：", n.min(orders.len()))
        } else {
            format!("Your latest {} order(s):", n.min(orders.len()))
        };
        for (key, date, ls) in orders.iter().take(n.max(1)) {
            let total: i64 = ls.iter().map(|l| l.amount_cents).sum();
            let items: Vec<String> = ls
                .iter()
                .map(|l| {
                    let name = l
                        .product
                        .as_deref()
                        .unwrap_or(if zh { "商品" } else { "item" });
                    format!("{name} ×{}", l.quantity)
                })
                .collect();
            let money = crate::agent::compose::money(total as f64 / 100.0);
            if zh {
                out.push_str(&format!(
                    "\n· {date} 下单 · 订单 {key} · {} · 实付 {money}",
                    items.join("、")
                ));
            } else {
                out.push_str(&format!(
                    "\n· ordered {date} · order {key} · {} · paid {money}",
                    items.join(", ")
                ));
            }
        }
        out
    }

    pub fn released(zh: bool) -> &'static str {
        if zh {
            "客服同事已结束这次对话，接下来由我（自动助手）继续为您解答。"
        } else {
            "Our colleague has finished; I (the shop's assistant) will answer from here on."
        }
    }
}
