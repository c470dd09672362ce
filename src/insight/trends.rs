//! What customers talk about, and what changed: TF-IDF keywords per period, complaint topics among negative
//! reviews (each review assigned to the strongest complaint keyword it mentions, the topic labelled by that
//! keyword and its most frequent companions), and period-over-period changes with a significance rule, so a
//! digest says "complaints about delivery up 40% (n=53)" only when it matters.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

/// One review reduced to what trends need.
#[derive(Debug, Clone)]
pub struct ReviewTokens {
    /// The period it belongs to (e.g. "2026-W14" or "2026-04"); periods sort chronologically as strings.
    pub period: String,
    pub negative: bool,
    /// Shared, so the tokens of a review are computed once and reused for every period asked.
    pub tokens: std::sync::Arc<[String]>,
    /// The review as written: a label's phrase must occur in it.
    pub text: std::sync::Arc<str>,
}

/// Tokens worth counting: no single Latin letters or lone Han characters (mostly particles), no numbers.
fn meaningful(t: &str) -> bool {
    let chars = t.chars().count();
    chars >= 2 && !t.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The most frequent phrase of two adjacent content words containing `seed` in `reviews`, as the
/// reviews write it ("前台" + "服务" → "前台服务", "battery" + "life" → "battery life"), when at least a
/// quarter of them (and two) use it; of two as frequent, the one whose other word is rarer in all
/// complaints ("前台服务" before "酒店前台").
fn phrase_of(
    seed: &str,
    reviews: &[&ReviewTokens],
    background: &dyn Fn(&str) -> f64,
) -> Option<String> {
    let mut counts: HashMap<String, (usize, f64)> = HashMap::new();
    for r in reviews {
        let mut seen = HashSet::new();
        for w in r.tokens.windows(2) {
            let (a, b) = (w[0].as_str(), w[1].as_str());
            if (a != seed && b != seed) || a == b {
                continue;
            }
            let other = if a == seed { b } else { a };
            if !crate::nlp::text::is_content_word(other) {
                continue;
            }
            let han = |x: &str| x.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
            let phrase = if han(a) || han(b) {
                format!("{a}{b}")
            } else {
                format!("{a} {b}")
            };
            if crate::nlp::text::mentions(&r.text, &phrase) && seen.insert(phrase.clone()) {
                counts.entry(phrase).or_insert((0, background(other))).0 += 1;
            }
        }
    }
    let (phrase, (n, _)) = counts.into_iter().max_by(|a, b| {
        (a.1.0)
            .cmp(&b.1.0)
            .then_with(|| b.1.1.total_cmp(&a.1.1))
            .then_with(|| b.0.cmp(&a.0))
    })?;
    (n >= 2 && n * 4 >= reviews.len()).then_some(phrase)
}

/// A topic's label: its keyword (or the phrase it heads) and up to two companion content words that
/// mark the topic (in a fifth of its reviews, and three times as often as in all complaints of the period:
/// "酒店" in every hotel complaint says nothing), each part occurring as written in one of its reviews.
fn topic_label(
    seed: &str,
    companions: &[(&str, usize)],
    reviews: &[&ReviewTokens],
    background: &dyn Fn(&str) -> f64,
) -> String {
    let head = phrase_of(seed, reviews, background).unwrap_or_else(|| seed.to_string());
    let occurs = |part: &str| {
        reviews
            .iter()
            .any(|r| crate::nlp::text::mentions(&r.text, part))
    };
    let mut parts = vec![head];
    for (w, n) in companions {
        if parts.len() == 3 {
            break;
        }
        let share = *n as f64 / reviews.len().max(1) as f64;
        if *n * 5 < reviews.len()
            || share < 3.0 * background(w)
            || parts
                .iter()
                .any(|p| p.contains(w) || w.contains(p.as_str()))
            || !crate::nlp::text::is_content_word(w)
            || !occurs(w)
        {
            continue;
        }
        parts.push(w.to_string());
    }
    if !occurs(&parts[0]) {
        // Tokens are normalised (width, case): the seed may be written otherwise; say it as tokenised.
        parts[0] = seed.to_string();
    }
    parts.join(" / ")
}

/// TF-IDF keywords of each period against all periods: what is distinctive about a period.
pub fn keywords_by_period(
    reviews: &[ReviewTokens],
    top: usize,
) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut counts: BTreeMap<&str, HashMap<&str, f64>> = BTreeMap::new();
    let mut content: HashMap<&str, bool> = HashMap::new();
    for r in reviews {
        let c = counts.entry(r.period.as_str()).or_default();
        for t in r.tokens.iter().filter(|t| {
            *content
                .entry(t.as_str())
                .or_insert_with(|| crate::nlp::text::is_content_word(t))
        }) {
            *c.entry(t.as_str()).or_default() += 1.0;
        }
    }
    let periods = counts.len() as f64;
    let mut df: HashMap<&str, f64> = HashMap::new();
    for c in counts.values() {
        for t in c.keys() {
            *df.entry(t).or_default() += 1.0;
        }
    }
    counts
        .iter()
        .map(|(p, c)| {
            let total: f64 = c.values().sum();
            let mut scored: Vec<(String, f64)> = c
                .iter()
                .map(|(t, n)| {
                    (
                        t.to_string(),
                        n / total * ((1.0 + periods) / (1.0 + df[t])).ln().max(0.0)
                            + n / total * 1e-6,
                    )
                })
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            scored.truncate(top);
            (p.to_string(), scored)
        })
        .collect()
}

/// A complaint topic in the current period, compared with the previous one.
#[derive(Debug, Clone, Serialize)]
pub struct ComplaintTopic {
    /// The topic's keyword and its most frequent companions.
    pub label: String,
    pub keyword: String,
    pub count: usize,
    pub previous_count: usize,
    /// Share of all reviews of the period, now and before.
    pub share: f64,
    pub previous_share: f64,
    /// Relative change of the share, in percent (None when it was 0 before).
    pub change_pct: Option<f64>,
    /// Two-sided p-value of a two-proportion z-test on the shares.
    pub p_value: f64,
    /// p < 0.05 and at least 10 complaints now: worth saying.
    pub significant: bool,
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + statrs::function::erf::erf(z / std::f64::consts::SQRT_2))
}

/// Two-sided p-value for the difference of two proportions.
pub fn two_proportion_p(x1: usize, n1: usize, x2: usize, n2: usize) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let p = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    2.0 * (1.0 - normal_cdf(((p1 - p2) / se).abs()))
}

/// Complaint topics of `current` vs `previous` (periods of `reviews`): keywords that mark negative reviews
/// (most over-represented among them, across all periods), each negative review assigned to the strongest one
/// it contains.
pub fn complaint_topics(
    reviews: &[ReviewTokens],
    current: &str,
    previous: &str,
    topics: usize,
) -> Vec<ComplaintTopic> {
    // Keywords over-represented in negative reviews overall: smoothed log-odds of appearing in a negative
    // vs a positive review, weighted by how often.
    let mut neg_df: HashMap<&str, f64> = HashMap::new();
    let mut pos_df: HashMap<&str, f64> = HashMap::new();
    let (mut n_neg, mut n_pos) = (0.0, 0.0);
    for r in reviews {
        let set: HashSet<&str> = r
            .tokens
            .iter()
            .map(String::as_str)
            .filter(|t| meaningful(t))
            .collect();
        let (df, n) = if r.negative {
            (&mut neg_df, &mut n_neg)
        } else {
            (&mut pos_df, &mut n_pos)
        };
        *n += 1.0;
        for t in set {
            *df.entry(t).or_default() += 1.0;
        }
    }
    let mut weight: Vec<(&str, f64)> = neg_df
        .iter()
        .filter(|(t, c)| **c >= 5.0 && crate::nlp::text::is_content_word(t))
        .map(|(t, c)| {
            let p_neg = (c + 0.5) / (n_neg + 1.0);
            let p_pos = (pos_df.get(t).copied().unwrap_or(0.0) + 0.5) / (n_pos + 1.0);
            (*t, (p_neg / p_pos).ln() * c.sqrt())
        })
        .filter(|(_, w)| *w > 0.0)
        .collect();
    weight.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    weight.truncate(topics);
    let rank: HashMap<&str, usize> = weight
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (*t, i))
        .collect();

    // Assign each negative review of the two periods to its strongest keyword.
    let assign = |r: &ReviewTokens| -> Option<usize> {
        r.tokens
            .iter()
            .filter_map(|t| rank.get(t.as_str()).copied())
            .min()
    };
    let mut now = vec![0usize; weight.len()];
    let mut before = vec![0usize; weight.len()];
    let mut companions: Vec<HashMap<&str, usize>> = vec![HashMap::new(); weight.len()];
    let mut members: Vec<Vec<&ReviewTokens>> = vec![Vec::new(); weight.len()];
    // In how many of the period's complaints each word occurs (what a companion must beat).
    let mut neg_now: HashMap<&str, usize> = HashMap::new();
    let mut n_neg_now = 0usize;
    for r in reviews.iter().filter(|r| r.negative && r.period == current) {
        n_neg_now += 1;
        let set: HashSet<&str> = r.tokens.iter().map(String::as_str).collect();
        for t in set {
            *neg_now.entry(t).or_default() += 1;
        }
    }
    let background =
        |w: &str| neg_now.get(w).copied().unwrap_or(0) as f64 / n_neg_now.max(1) as f64;
    let (mut n_now, mut n_before) = (0usize, 0usize);
    for r in reviews {
        let is_now = r.period == current;
        let is_before = r.period == previous;
        if is_now {
            n_now += 1;
        } else if is_before {
            n_before += 1;
        }
        if !r.negative || !(is_now || is_before) {
            continue;
        }
        if let Some(k) = assign(r) {
            if is_now {
                now[k] += 1;
                members[k].push(r);
                let mut seen = HashSet::new();
                for t in r
                    .tokens
                    .iter()
                    .filter(|t| meaningful(t) && t.as_str() != weight[k].0)
                {
                    if seen.insert(t.as_str()) {
                        *companions[k].entry(t.as_str()).or_default() += 1;
                    }
                }
            } else {
                before[k] += 1;
            }
        }
    }
    let mut out: Vec<ComplaintTopic> = weight
        .iter()
        .enumerate()
        .filter(|(k, _)| now[*k] + before[*k] > 0)
        .map(|(k, (t, _))| {
            let mut comp: Vec<(&str, usize)> =
                companions[k].iter().map(|(w, c)| (*w, *c)).collect();
            comp.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            let label = topic_label(t, &comp, &members[k], &background);
            let share = now[k] as f64 / n_now.max(1) as f64;
            let previous_share = before[k] as f64 / n_before.max(1) as f64;
            let p_value = two_proportion_p(now[k], n_now, before[k], n_before);
            ComplaintTopic {
                label,
                keyword: t.to_string(),
                count: now[k],
                previous_count: before[k],
                share,
                previous_share,
                change_pct: (previous_share > 0.0)
                    .then(|| 100.0 * (share - previous_share) / previous_share),
                p_value,
                significant: p_value < 0.05 && now[k] >= 10,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.keyword.cmp(&b.keyword))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(period: &str, negative: bool, text: &str) -> ReviewTokens {
        ReviewTokens {
            period: period.into(),
            negative,
            tokens: text.split_whitespace().map(str::to_string).collect(),
            text: text.into(),
        }
    }

    #[test]
    fn the_p_value_rule() {
        assert!(two_proportion_p(60, 200, 20, 200) < 0.001);
        assert!(two_proportion_p(21, 200, 20, 200) > 0.5);
        assert_eq!(two_proportion_p(0, 0, 1, 10), 1.0);
    }

    #[test]
    fn a_growing_complaint_is_found_labelled_and_flagged() {
        let mut reviews = Vec::new();
        for i in 0..100 {
            reviews.push(r("2026-W01", false, "质量 很好 推荐"));
            reviews.push(r("2026-W02", false, "质量 很好 推荐"));
            if i < 8 {
                reviews.push(r("2026-W01", true, "物流 太慢 等了"));
            }
            if i < 40 {
                reviews.push(r("2026-W02", true, "物流 太慢 快递"));
            }
            if i < 6 {
                reviews.push(r("2026-W01", true, "屏幕 划痕"));
                reviews.push(r("2026-W02", true, "屏幕 划痕"));
            }
        }
        let topics = complaint_topics(&reviews, "2026-W02", "2026-W01", 5);
        let delivery = topics
            .iter()
            .find(|t| t.count == 40)
            .expect("the delivery topic");
        assert!(
            delivery.label.contains("物流") || delivery.label.contains("太慢"),
            "{delivery:?}"
        );
        assert_eq!(delivery.previous_count, 8);
        assert!(
            delivery.significant && delivery.change_pct.unwrap() > 100.0,
            "{delivery:?}"
        );
        let screen = topics
            .iter()
            .find(|t| t.keyword == "屏幕" || t.keyword == "划痕")
            .expect("screen topic");
        assert!(!screen.significant, "{screen:?}");

        let kw = keywords_by_period(&reviews, 3);
        assert!(kw["2026-W02"].iter().any(|(t, _)| t == "快递"), "{kw:?}");
        // Labels name things: "太慢" is how it was, not what.
        assert!(
            topics.iter().all(|t| !t.label.contains("太慢")),
            "{topics:?}"
        );
    }

    fn tokenised(period: &str, negative: bool, text: &str) -> ReviewTokens {
        ReviewTokens {
            period: period.into(),
            negative,
            tokens: crate::nlp::text::tokens(text).into(),
            text: text.into(),
        }
    }

    /// Labels were the topic's top TF-IDF words, often function or sentiment words: "根本 / 酒店 / 前台",
    /// "很差 / 没有 / 房间", "最差 / 酒店 / 可以".
    #[test]
    fn topic_labels_name_things_whole_and_never_feelings() {
        let mut reviews = Vec::new();
        for i in 0..120 {
            reviews.push(tokenised(
                "now",
                false,
                "酒店房间干净，位置很好，早餐可以，总体不错",
            ));
            if i < 40 {
                reviews.push(tokenised(
                    "now",
                    true,
                    "酒店前台服务很差，根本没有人理，最差的一次",
                ));
            }
            if i < 30 {
                reviews.push(tokenised(
                    "now",
                    true,
                    "隔音效果很差，晚上根本睡不着，太失望了",
                ));
            }
            if i < 20 {
                reviews.push(tokenised(
                    "now",
                    true,
                    "The battery life is terrible, really bad battery life",
                ));
            }
        }
        let topics = complaint_topics(&reviews, "now", "before", 5);
        let labels: Vec<&str> = topics.iter().map(|t| t.label.as_str()).collect();
        for bad in [
            "很差", "最差", "根本", "没有", "可以", "失望", "terrible", "bad", "really",
        ] {
            assert!(
                labels
                    .iter()
                    .all(|l| l.split(" / ").all(|p| !p.contains(bad))),
                "{bad} in {labels:?}"
            );
        }
        for want in ["前台服务", "隔音效果", "battery life"] {
            assert!(
                labels.iter().any(|l| l.starts_with(want)),
                "{want} not heading {labels:?}"
            );
        }
        for t in &topics {
            for part in t.label.split(" / ") {
                assert!(
                    reviews
                        .iter()
                        .any(|r| r.negative && crate::nlp::text::mentions(&r.text, part)),
                    "{part} of {} occurs in no review",
                    t.label
                );
            }
        }
    }
}
