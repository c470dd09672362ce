//! Question → tool call, stage one: a fast encoder-based router. The multilingual sentence encoder and a
//! character n-gram overlap score the question against example questions per tool (`prompts/examples.tsv`);
//! the best tools form the shortlist the LLM chooses from (stage two, in `agent::mod`). Arguments that
//! code can read reliably — dates against the data's clock, catalogue products and categories, customer
//! ids, segments, sentiment, goals, counts — are extracted here, never invented.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value, json};
use unicode_normalization::UnicodeNormalization;

use super::dates;
use crate::nlp::encoder::{Encoder, cosine};
use crate::nlp::ngram;
use crate::store::CatalogueEntry;

/// The example questions shipped in `prompts/examples.tsv` (`tool<TAB>question`).
pub const EXAMPLES_TSV: &str = include_str!("../../prompts/examples.tsv");

/// How the router weighs its evidence; tuned on the tuning part of the routing set (`dongcha eval routing
/// --tune`), never on the held-out part.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RouterSettings {
    /// Nearest examples averaged per tool.
    pub k: usize,
    /// Weight of the character n-gram overlap next to the encoder's cosine.
    pub lexical_weight: f32,
    /// A lead of the best tool over the second at least this large skips the LLM.
    pub confident_margin: f32,
    /// Tools in the LLM's shortlist.
    pub shortlist: usize,
    /// Weight of the tool head's ln p(tool) beside the nearest examples.
    pub head_weight: f32,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            k: 2,
            lexical_weight: 0.5,
            confident_margin: 0.04,
            shortlist: 3,
            head_weight: 0.03,
        }
    }
}

pub fn parse_examples(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (tool, q) = line
            .split_once('\t')
            .ok_or_else(|| format!("line {}: expected tool<TAB>question", i + 1))?;
        if !crate::tools::NAMES.contains(&tool.trim()) {
            return Err(format!("line {}: unknown tool {tool:?}", i + 1));
        }
        out.push((tool.trim().to_string(), q.trim().to_string()));
    }
    Ok(out)
}

#[derive(Clone)]
struct Example {
    tool: usize,
    vector: Vec<f32>,
    grams: Vec<u32>,
}

/// Lexical overlap of two n-gram sets (cosine of their indicator vectors).
pub(crate) fn overlap(a: &[u32], b: &[u32]) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut n) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n as f32 / ((a.len() * b.len()) as f32).sqrt()
}

/// Bigrams and trigrams only (single characters say little about intent).
pub(crate) fn grams(text: &str) -> Vec<u32> {
    let norm = normalise(text);
    let mut out = ngram::features(&norm);
    let singles: HashSet<u32> = norm
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(c.to_string().as_bytes(), 1);
            (h as usize & ((1 << ngram::BUCKETS_LOG2) - 1)) as u32
        })
        .collect();
    out.retain(|g| !singles.contains(g));
    out
}

pub fn normalise(text: &str) -> String {
    text.nfkc().flat_map(char::to_lowercase).collect()
}

/// The tools ranked for a question, best first.
#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    pub scores: Vec<(&'static str, f32)>,
}

impl Ranking {
    pub fn best(&self) -> (&'static str, f32) {
        self.scores[0]
    }
    pub fn margin(&self) -> f32 {
        self.scores[0].1 - self.scores.get(1).map_or(0.0, |s| s.1)
    }
}

#[derive(Clone)]
pub struct Router {
    encoder: std::sync::Arc<Encoder>,
    examples: Vec<Example>,
    head: ToolHead,
    pub settings: RouterSettings,
}

/// The tool head's training: weak L2 and 200 passes (it converges by 100); chosen by `eval routing --cv`
/// (l2 1e-4 / 1e-3 / 1e-2: 257 / 254 / 246 of 263 right at head weight 0.05).
pub const HEAD_L2: f32 = 1e-4;
pub const HEAD_EPOCHS: usize = 200;

impl Router {
    /// `vectors[i]` is the encoder's vector of `examples[i].1`.
    pub fn new(
        encoder: std::sync::Arc<Encoder>,
        examples: &[(String, String)],
        vectors: Vec<Vec<f32>>,
        settings: RouterSettings,
    ) -> Self {
        let examples: Vec<Example> = examples
            .iter()
            .zip(vectors)
            .filter_map(|((tool, q), vector)| {
                Some(Example {
                    tool: crate::tools::NAMES.iter().position(|n| n == tool)?,
                    vector,
                    grams: grams(q),
                })
            })
            .collect();
        let head = ToolHead::train(
            &examples
                .iter()
                .map(|e| e.vector.clone())
                .collect::<Vec<_>>(),
            &examples.iter().map(|e| e.tool).collect::<Vec<_>>(),
            crate::tools::NAMES.len(),
            HEAD_L2,
            HEAD_EPOCHS,
        );
        Self {
            encoder,
            examples,
            head,
            settings,
        }
    }

    pub fn encode(&self, question: &str) -> Result<Vec<f32>, crate::nlp::encoder::EncoderError> {
        Ok(self
            .encoder
            .encode(&[question], 1)?
            .pop()
            .unwrap_or_default())
    }

    /// The encoder's vectors of many texts.
    pub fn encode_all(
        &self,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, crate::nlp::encoder::EncoderError> {
        self.encoder.encode(texts, 32)
    }

    /// The same router over other examples.
    pub fn with_examples(&self, examples: &[(String, String)], vectors: Vec<Vec<f32>>) -> Self {
        Self::new(self.encoder.clone(), examples, vectors, self.settings)
    }

    /// Scores every tool for a question whose vector is `v`.
    pub fn rank_vector(&self, question: &str, v: &[f32]) -> Ranking {
        let g = grams(question);
        let mut per_tool: Vec<Vec<f32>> = vec![Vec::new(); crate::tools::NAMES.len()];
        for e in &self.examples {
            let s = cosine(v, &e.vector) + self.settings.lexical_weight * overlap(&g, &e.grams);
            per_tool[e.tool].push(s);
        }
        let lp = if self.settings.head_weight > 0.0 {
            self.head.log_probs(v)
        } else {
            vec![0.0; crate::tools::NAMES.len()]
        };
        let mut scores: Vec<(&'static str, f32)> = per_tool
            .into_iter()
            .enumerate()
            .map(|(t, mut s)| {
                s.sort_by(|a, b| b.total_cmp(a));
                s.truncate(self.settings.k.max(1));
                let mean = if s.is_empty() {
                    f32::MIN
                } else {
                    s.iter().sum::<f32>() / s.len() as f32
                };
                (
                    crate::tools::NAMES[t],
                    mean + self.settings.head_weight * lp[t],
                )
            })
            .collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ranking { scores }
    }
}

/// What the question's own arguments say about the tool: a customer id points to the per-customer tools,
/// a future horizon to the forecast, a past period away from it.
pub fn adjust_for_arguments(r: &mut Ranking, facts: &Facts) {
    let has_id = facts.has_id;
    let future = facts.horizon_days.is_some();
    let past = facts.period.is_some();
    for (tool, s) in r.scores.iter_mut() {
        match *tool {
            "customer_profile" | "recommend_products" if has_id => *s += 0.05,
            "customer_profile" if !has_id => *s -= 0.05,
            // A report is one product's: two or more named are a comparison of them.
            "product_report" if facts.products.len() >= 2 => *s -= 0.05,
            "sales_forecast" if future => *s += 0.03,
            "sales_forecast" if past => *s -= 0.05,
            // Sales so far cannot answer a period still to come.
            "sales_summary" if future && !past => *s -= 0.1,
            _ => {}
        }
    }
    r.scores.sort_by(|a, b| b.1.total_cmp(&a.1));
}

/// A question that names a category of the catalogue is about a tool that takes one (the sales tools),
/// not one over all customers ("Compare revenue of laptops and books" is not about segments).
pub fn adjust_for_categories(r: &mut Ranking, categories: &[String]) {
    if categories.is_empty() {
        return;
    }
    for (tool, s) in r.scores.iter_mut() {
        match *tool {
            "sales_summary" | "sales_forecast" => *s += 0.03,
            "customer_segments" | "churn_risk" | "customer_value" | "promotion_plan" => *s -= 0.03,
            _ => {}
        }
    }
    r.scores.sort_by(|a, b| b.1.total_cmp(&a.1));
}

/// Words for what no tool can answer, whatever tool the rest of the question's words ask for: another
/// shop ("竞争对手的店这个月卖了多少"), figures the shop's records do not hold (profit and costs, stock,
/// staff, advertising, parcels in transit, news), and things to do rather than to know (change a price,
/// send a message, write copy): tools only read the shop's sales, customers and reviews.
const OUTSIDE_WORDS: [&str; 57] = [
    // Another shop.
    "竞争对手",
    "竞品店",
    "同行",
    "别家",
    "别的店",
    "其他店",
    "其他商家",
    "对手的",
    "competitor",
    "rival",
    "other shop",
    "other store",
    "another shop",
    "another store",
    "other sellers",
    // Figures not in the records.
    "利润",
    "毛利",
    "成本",
    "profit",
    "margin",
    "库存",
    "inventory",
    "in stock",
    "stock level",
    "员工",
    "employee",
    "staff",
    "headcount",
    "广告",
    "ad spend",
    "advertising",
    "快递单号",
    "运单号",
    "物流单号",
    "tracking number",
    "where is my parcel",
    "新闻",
    "news",
    // Doing, not knowing.
    "改成",
    "改为",
    "改价",
    "删除",
    "删掉",
    "上架",
    "下架",
    "发一张",
    "发一条",
    "发短信",
    "群发",
    "send an email",
    "send a message",
    "文案",
    "写一段",
    "写一篇",
    "write a ",
    "write me",
    "draft a",
];

/// How much `none` gains when the question asks for what no tool holds ([`OUTSIDE_WORDS`]): past any
/// tool's lead from the words the question shares with that tool's examples.
pub const OUTSIDE_WEIGHT: f32 = 0.15;

/// A question about what no tool holds leans to `none`.
pub fn adjust_for_outside(r: &mut Ranking, facts: &Facts) {
    if !facts.outside {
        return;
    }
    for (t, s) in r.scores.iter_mut() {
        if *t == "none" {
            *s += OUTSIDE_WEIGHT;
        }
    }
    r.scores.sort_by(|a, b| b.1.total_cmp(&a.1));
}

/// The words that ask for a tool, tools in the order of precedence when one clause has words of several ("预测下个月的销量" asks for a
/// forecast, not last month's sales; "高价值客户的流失风险" for churn).
pub const TOOL_WORDS: [(&str, &[&str]); 12] = [
    // A product's report covers its sales, sentiment and complaints: asked for by name, it is one call.
    (
        "product_report",
        &[
            "rundown",
            "one-page",
            "product report",
            "产品报告",
            "单品报告",
            "综合表现",
            "整体表现",
            "体检",
            "across the board",
        ],
    ),
    (
        "promotion_plan",
        &[
            "retention plan",
            "promotion plan",
            "campaign",
            "win back",
            "win them back",
            "bring back",
            "bring them back",
            "win-back",
            "re-engage",
            "促销方案",
            "营销方案",
            "活动方案",
            "挽回",
            "召回",
            "留住",
            "挽留",
        ],
    ),
    (
        "sales_forecast",
        &["forecast", "predict", "projection", "预测", "预计", "预估"],
    ),
    (
        "recommend_products",
        &[
            "recommend",
            "cross-sell",
            "might like",
            "may like",
            "also like",
            "推荐",
            "交叉销售",
            "可能喜欢",
            "还喜欢",
            "推点",
            "推些",
            "推啥",
            "推什么",
            "go well with",
            "goes well with",
            "bought together",
            "搭配",
        ],
    ),
    (
        "churn_risk",
        &[
            "churn",
            "at risk",
            "stopped buying",
            "流失",
            "好久没",
            "很久没",
        ],
    ),
    (
        "customer_value",
        &[
            "lifetime value",
            "clv",
            "high-value",
            "high value",
            "most valuable",
            "高价值",
            "客户价值",
            "生命周期价值",
        ],
    ),
    (
        "top_complaints",
        &["complain", "complaint", "抱怨", "投诉", "吐槽", "差评"],
    ),
    (
        "purchase_intent",
        &[
            "purchase intent",
            "intent to buy",
            "buying intent",
            "购买意向",
            "购买意愿",
            // What shoppers say they will do ("say they will wait", "打算等降价"): an intent, not a
            // sentiment.
            "will wait",
            "they'll wait",
            "waiting to buy",
            "plan to buy",
            "planning to buy",
            "hesitat",
            "观望",
            "犹豫",
            "等降价",
            "打算买",
            "放弃购买",
        ],
    ),
    (
        "review_sentiment",
        &[
            "sentiment",
            "happier",
            "satisf",
            "口碑",
            "好评",
            "情绪",
            "满意",
        ],
    ),
    (
        "customer_segments",
        &["segment", "rfm", "分群", "客群", "客户群", "分层"],
    ),
    (
        "search_reviews",
        &[
            "find reviews",
            "search reviews",
            "搜索评论",
            "找评论",
            "mentioning",
            "提到",
        ],
    ),
    (
        "sales_summary",
        &[
            "sales",
            "revenue",
            "orders",
            "sold",
            "turnover",
            "gmv",
            "销售额",
            "销量",
            "营收",
            "营业额",
            "卖了",
            "卖得",
            "成交",
            "订单数",
            "订单量",
            "客单价",
            "流水",
            "topline",
        ],
    ),
];

/// Where a question is cut into clauses.
const CLAUSE_BREAKS: [&str; 17] = [
    "，",
    ",",
    "；",
    ";",
    "？",
    "?",
    "。",
    " and ",
    " plus ",
    " as well as ",
    "以及",
    "还有",
    "并且",
    "同时",
    "然后",
    "再",
    "和",
];

/// A clause that asks to be shown reviews saying something ("找一下抱怨电脑发热的评论", "find reviews
/// that complain about noise"): the reviews themselves, whatever words of other tools the rest has.
static RE_FIND_REVIEWS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:找|搜|查|翻).{1,20}的(?:评论|评价|差评|好评)|(?:\b(?:find|show|search|pull|list|get)(?: me)?(?: (?:some|the|all))?|\bany) (?:\w+ )?(?:reviews|comments) (?:that|which|where|about|mentioning|saying|complaining|praising|on|with)\b",
    )
    .expect("valid regex")
});

/// The tool a clause asks for by its words, if any.
pub fn clause_tool(clause: &str) -> Option<&'static str> {
    let c = clause.to_lowercase();
    if RE_FIND_REVIEWS.is_match(&c) {
        return Some("search_reviews");
    }
    let found = TOOL_WORDS
        .iter()
        .find(|(_, words)| words.iter().any(|w| c.contains(w)))
        .map(|(t, _)| *t)?;
    // "差评" with a share or a quantity ("好评和差评各占多少", "差评多不多") or beside "好评" is
    // sentiment, not complaint topics; its topics ("差评话题") are complaints.
    if found == "top_complaints"
        && !["complain", "抱怨", "投诉", "吐槽", "话题"]
            .iter()
            .any(|w| c.contains(w))
        && [
            "占",
            "比例",
            "率",
            "share",
            "多少条",
            "好评",
            "多不多",
            "多吗",
            "越来越多",
        ]
        .iter()
        .any(|w| c.contains(w))
    {
        return Some("review_sentiment");
    }
    Some(found)
}

/// The question's clauses.
pub fn clauses(question: &str) -> Vec<String> {
    let mut clauses = vec![question.to_string()];
    for b in CLAUSE_BREAKS {
        clauses = clauses
            .into_iter()
            .flat_map(|c| c.split(b).map(str::to_string).collect::<Vec<_>>())
            .collect();
    }
    clauses
}

/// What a product's report already shows: asked beside it, they are not parts of their own.
const REPORT_COVERS: [&str; 4] = [
    "sales_summary",
    "review_sentiment",
    "top_complaints",
    "search_reviews",
];

/// Who a promotion plan is for: asked beside it, they describe its target.
const PLAN_TARGETS: [&str; 3] = ["churn_risk", "customer_value", "customer_segments"];
/// Words that ask for a list of customers in a clause of its own.
const LIST_CUES: [&str; 10] = [
    "列出",
    "列一下",
    "名单",
    "哪些",
    "谁",
    "list",
    "which",
    "who",
    "show",
    "give me",
];

/// The tools the question asks for by their words, in the order asked, each with its first clause.
/// Sales so far and a forecast are both asked only when the question names a period gone by and one
/// to come ("上个月的销售额和下个月的预测"); "下个季度谁会卖得更多？预测一下" asks for one forecast.
pub fn asked_tools(question: &str, past: bool, future: bool) -> Vec<(&'static str, String)> {
    let mut asked: Vec<(&'static str, String)> = Vec::new();
    for c in clauses(question) {
        if let Some(t) = clause_tool(&c)
            && !asked.iter().any(|(x, _)| *x == t)
        {
            asked.push((t, c));
        }
    }
    let has = |asked: &[(&str, String)], t: &str| asked.iter().any(|(x, _)| *x == t);
    if has(&asked, "product_report") {
        asked.retain(|(x, _)| !REPORT_COVERS.contains(x));
    }
    // "那些快流失的VIP，我们该怎么留住他们": the customers a plan is for are its target, not a part,
    // unless their clause asks for them ("列出流失风险高的客户，再给一个挽回方案").
    if has(&asked, "promotion_plan") {
        asked.retain(|(x, clause)| {
            let c = clause.to_lowercase();
            !PLAN_TARGETS.contains(x) || LIST_CUES.iter().any(|w| c.contains(w))
        });
    }
    // Sales asked of a period still to come ("7月份销售额能到多少") are a forecast.
    if future && !past && !has(&asked, "sales_forecast") {
        for (x, _) in asked.iter_mut().filter(|(x, _)| *x == "sales_summary") {
            *x = "sales_forecast";
        }
    }
    if has(&asked, "sales_summary") && has(&asked, "sales_forecast") && !(past && future) {
        let drop = if past {
            "sales_forecast"
        } else {
            "sales_summary"
        };
        asked.retain(|(x, _)| *x != drop);
    }
    asked
}

/// How much a tool gains when the question's words ask for it and no other. Chosen at 0.06 before the
/// tool head; with the head (`eval routing --cv`, no LLM, tuning questions: 263 single calls / 75
/// comparisons), head 0.03: words 0.06 → 262 / 73, 0.1 → 262 / 74, 0.15 → 260 / 75; head 0.05: 0.06 →
/// 261 / 71, 0.1 → 262 / 73. The head leans to the words the examples share; a comparison's words
/// ("谁卖得好") need more weight beside it.
pub const WORDS_WEIGHT: f32 = 0.1;

/// A question whose words ask for exactly one tool ("谁卖得好": sales; "好评率": sentiment) leans to it.
pub fn adjust_for_words(r: &mut Ranking, facts: &Facts) {
    adjust_for_words_by(r, facts, WORDS_WEIGHT)
}

/// [`adjust_for_words`] with another weight (for tuning it).
pub fn adjust_for_words_by(r: &mut Ranking, facts: &Facts, weight: f32) {
    let [(tool, _)] = facts.asked.as_slice() else {
        return;
    };
    for (t, s) in r.scores.iter_mut() {
        if t == tool {
            *s += weight;
        }
    }
    r.scores.sort_by(|a, b| b.1.total_cmp(&a.1));
}

/// The shop's catalogue as the argument extractor matches it: aliases → product name, categories.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// (normalised alias, product name), longest first.
    aliases: Vec<(String, String)>,
    categories: Vec<String>,
}

/// Everyday words for categories, matched to the catalogue's own category names.
const CATEGORY_WORDS: [(&str, &str); 38] = [
    ("笔记本", "laptop"),
    ("电脑", "laptop"),
    ("laptop", "laptop"),
    ("notebook", "laptop"),
    ("图书", "book"),
    ("书籍", "book"),
    ("book", "book"),
    ("酒店", "hotel"),
    ("住宿", "hotel"),
    ("hotel", "hotel"),
    ("手机", "phone"),
    ("phone", "phone"),
    ("服装", "cloth"),
    ("衣服", "cloth"),
    ("clothing", "cloth"),
    ("clothes", "cloth"),
    ("家电", "appliance"),
    ("appliance", "appliance"),
    ("鞋", "shoe"),
    ("shoe", "shoe"),
    ("美妆", "beauty"),
    ("化妆品", "beauty"),
    ("cosmetic", "beauty"),
    ("beauty", "beauty"),
    ("食品", "food"),
    ("零食", "food"),
    ("groceries", "food"),
    ("玩具", "toy"),
    ("toy", "toy"),
    ("母婴", "baby"),
    ("baby", "baby"),
    ("家具", "furniture"),
    ("furniture", "furniture"),
    ("运动", "sport"),
    ("sportswear", "sport"),
    ("数码", "electronic"),
    ("electronics", "electronic"),
    ("珠宝", "jewel"),
];

/// Where `word` stands in `q` as a word, and where it ends (with its plural): Chinese anywhere, Latin on
/// word bounds with an optional "s"/"es" ("books" yes, "bookings" no).
fn word_span(q: &str, word: &str) -> Option<(usize, usize)> {
    if !word.is_ascii() {
        return q.find(word).map(|i| (i, i + word.len()));
    }
    let bound = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
    q.match_indices(word).find_map(|(i, _)| {
        let rest = &q[i + word.len()..];
        let plural = ["es", "s"]
            .iter()
            .find(|p| rest.starts_with(*p))
            .map_or(0, |p| p.len());
        let end = i + word.len() + plural;
        (bound(q[..i].chars().next_back()) && bound(q[end..].chars().next())).then_some((i, end))
    })
}

fn find_word(q: &str, word: &str) -> Option<usize> {
    word_span(q, word).map(|(i, _)| i)
}

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

impl Catalogue {
    pub fn new(entries: &[CatalogueEntry]) -> Self {
        let mut count: HashMap<String, HashSet<String>> = HashMap::new();
        let mut add = |alias: String, name: &str| {
            let alias = alias.trim().to_string();
            if alias.chars().count() >= 2 {
                count.entry(alias).or_default().insert(name.to_string());
            }
        };
        for e in entries {
            let name = normalise(&e.name);
            add(name.clone(), &e.name);
            // The name's Chinese run and its Latin run ("联想 ThinkPad T14" → "联想", "thinkpad t14").
            let cjk: String = name.chars().take_while(|c| is_cjk(*c)).collect();
            let latin = name[cjk.len()..].trim().to_string();
            if !latin.is_empty() {
                // Its model word alone ("t14" of "thinkpad t14"), when it has letters and digits.
                if let Some(last) = latin.split_whitespace().last()
                    && last != latin
                    && last.chars().count() >= 2
                    && last.chars().any(|c| c.is_ascii_digit())
                    && last.chars().any(|c| c.is_ascii_alphabetic())
                {
                    add(last.to_string(), &e.name);
                }
                add(latin, &e.name);
            }
            let cjk_chars: Vec<char> = cjk.chars().collect();
            for n in 2..=cjk_chars.len() {
                add(cjk_chars[..n].iter().collect(), &e.name);
            }
            for v in [&e.model, &e.brand].into_iter().flatten() {
                let v = normalise(v);
                if v.chars().count() >= 3 && v != "other" {
                    add(v, &e.name);
                }
            }
        }
        // An alias that names several products names none of them.
        let mut aliases: Vec<(String, String)> = count
            .into_iter()
            .filter(|(a, names)| names.len() == 1 && !["其他", "其他城"].contains(&a.as_str()))
            .map(|(a, names)| (a, names.into_iter().next().unwrap_or_default()))
            .collect();
        aliases.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let mut categories: Vec<String> =
            entries.iter().filter_map(|e| e.category.clone()).collect();
        categories.sort();
        categories.dedup();
        Self {
            aliases,
            categories,
        }
    }

    /// The catalogue product the question names, if any (longest alias; Latin aliases on word bounds).
    pub fn product(&self, question: &str) -> Option<String> {
        let q = normalise(question);
        for (alias, name) in &self.aliases {
            if let Some(i) = q.find(alias.as_str()) {
                let ascii = alias.is_ascii();
                let before = q[..i].chars().next_back();
                let after = q[i + alias.len()..].chars().next();
                let bounded = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
                if !ascii || (bounded(before) && bounded(after)) {
                    return Some(name.clone());
                }
            }
        }
        None
    }

    /// Every catalogue product the question names, in the order it names them (longest aliases first,
    /// no two on the same words): "iPhone 和 Mate 上个月谁卖得好" → both.
    pub fn products(&self, question: &str) -> Vec<String> {
        let q = normalise(question);
        let mut taken: Vec<(usize, usize)> = Vec::new();
        let mut found: Vec<(usize, String)> = Vec::new();
        for (alias, name) in &self.aliases {
            for (i, _) in q.match_indices(alias.as_str()) {
                let end = i + alias.len();
                let before = q[..i].chars().next_back();
                let after = q[end..].chars().next();
                let bounded = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
                if alias.is_ascii() && !(bounded(before) && bounded(after)) {
                    continue;
                }
                if taken.iter().any(|(a, b)| i < *b && *a < end) {
                    continue;
                }
                taken.push((i, end));
                if !found.iter().any(|(_, n)| n == name) {
                    found.push((i, name.clone()));
                }
            }
        }
        found.sort_by_key(|(i, _)| *i);
        found.into_iter().map(|(_, n)| n).collect()
    }

    /// Every category the question names, in the order it names them.
    pub fn categories(&self, question: &str) -> Vec<String> {
        let q = normalise(question);
        let mut found: Vec<(usize, String)> = Vec::new();
        let mut add = |i: usize, c: &String| {
            if !found.iter().any(|(_, x)| x == c) {
                found.push((i, c.clone()));
            }
        };
        for c in &self.categories {
            if let Some(i) = find_word(&q, &c.to_lowercase()) {
                add(i, c);
            }
        }
        for (word, stem) in CATEGORY_WORDS {
            if let Some(i) = find_word(&q, word)
                && let Some(c) = self
                    .categories
                    .iter()
                    .find(|c| c.to_lowercase().contains(stem))
            {
                add(i, c);
            }
        }
        found.sort_by_key(|(i, _)| *i);
        found.into_iter().map(|(_, c)| c).collect()
    }

    /// Category words the question uses that match no category of the catalogue, as written ("phones"
    /// in a shop without phones): a comparison names them as missing instead of dropping them.
    pub fn unknown_categories(&self, question: &str) -> Vec<String> {
        let q = normalise(question);
        let mut out: Vec<(usize, &str, String)> = Vec::new();
        for (word, stem) in CATEGORY_WORDS {
            if self
                .categories
                .iter()
                .any(|c| c.to_lowercase().contains(stem))
            {
                continue;
            }
            if let Some((i, end)) = word_span(&q, word)
                && !out.iter().any(|(_, s, _)| *s == stem)
            {
                out.push((i, stem, q[i..end].to_string()));
            }
        }
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, _, w)| w).collect()
    }

    pub fn category(&self, question: &str) -> Option<String> {
        let q = normalise(question);
        for c in &self.categories {
            if find_word(&q, &c.to_lowercase()).is_some() {
                return Some(c.clone());
            }
        }
        for (word, stem) in CATEGORY_WORDS {
            if find_word(&q, word).is_some()
                && let Some(c) = self
                    .categories
                    .iter()
                    .find(|c| c.to_lowercase().contains(stem))
            {
                return Some(c.clone());
            }
        }
        None
    }
}

/// Model names outside the catalogue ("iPhone 13"): built once, not per question.
static BUILTIN_GAZETTEER: LazyLock<crate::nlp::entities::Gazetteer> =
    LazyLock::new(crate::nlp::entities::Gazetteer::builtin);

static RE_CUSTOMER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:customer|client|user|buyer|member|客户|顾客|用户|会员|买家|id)\s*(?:id|号|编号)?\s*[#:：=]?\s*#?([a-z0-9_-]*\d[a-z0-9_-]*)")
        .expect("regex")
});
static RE_HASH_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#([A-Za-z0-9_-]*\d[A-Za-z0-9_-]*)").expect("regex"));
static RE_TOP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:top|前|最[高大多]的?)\s*(\d{1,3}|[一二两三四五六七八九十]{1,3})|(\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?:个|位|名|款|条|customers|clients|products|reviews)")
        .expect("regex")
});

/// Words that mark a segment, in order of precedence.
const SEGMENT_WORDS: [(&[&str], &str); 5] = [
    (
        &[
            "at-risk high-value",
            "高价值流失",
            "流失风险高的高价值",
            "高价值但",
        ],
        "at-risk high-value",
    ),
    (
        &[
            "high-value",
            "high value",
            "高价值",
            "vip",
            "大客户",
            "高净值",
            "top customers",
            "best customers",
            "重要客户",
        ],
        "high-value",
    ),
    (
        &["new customer", "新客", "新用户", "新顾客", "新客户"],
        "new customers",
    ),
    (&["lapsed", "dormant", "沉睡", "休眠", "不活跃"], "lapsed"),
    (&["loyal", "忠诚", "老客", "回头客"], "loyal"),
];

pub fn segment_words(q: &str) -> Option<&'static str> {
    SEGMENT_WORDS
        .iter()
        .find(|(words, _)| words.iter().any(|w| q.contains(w)))
        .map(|(_, s)| *s)
}

fn sentiment_words(q: &str) -> Option<&'static str> {
    let neg = [
        "差评",
        "负面",
        "投诉",
        "抱怨",
        "不满",
        "吐槽",
        "negative",
        "complain",
        "complaint",
        "bad review",
        "unhappy",
        "angry",
    ];
    let pos = [
        "好评",
        "正面",
        "表扬",
        "夸",
        "positive",
        "praise",
        "good review",
        "love",
    ];
    if neg.iter().any(|w| q.contains(w)) {
        Some("negative")
    } else if pos.iter().any(|w| q.contains(w)) {
        Some("positive")
    } else {
        None
    }
}

fn goal_words(q: &str) -> &'static str {
    if [
        "召回",
        "唤醒",
        "reactivat",
        "win back",
        "win-back",
        "lapsed",
        "沉睡",
        "回流",
        "come back",
    ]
    .iter()
    .any(|w| q.contains(w))
    {
        "reactivate"
    } else if [
        "upsell",
        "up-sell",
        "cross-sell",
        "追加",
        "加购",
        "客单价",
        "多买",
        "升级",
        "spend more",
    ]
    .iter()
    .any(|w| q.contains(w))
    {
        "upsell"
    } else {
        "retain"
    }
}

fn group_words(q: &str) -> Option<&'static str> {
    [
        (
            &["按天", "每天", "每日", "daily", "by day", "per day"][..],
            "day",
        ),
        (
            &["按周", "每周", "weekly", "by week", "per week"][..],
            "week",
        ),
        (
            &["按月", "每月", "monthly", "by month", "per month"][..],
            "month",
        ),
        (
            &[
                "按产品",
                "各产品",
                "每个产品",
                "哪个产品",
                "哪款",
                "by product",
                "per product",
                "each product",
                "which product",
            ][..],
            "product",
        ),
        (
            &[
                "按品类",
                "各品类",
                "按类目",
                "by category",
                "per category",
                "each category",
            ][..],
            "category",
        ),
    ]
    .iter()
    .find(|(ws, _)| ws.iter().any(|w| q.contains(w)))
    .map(|(_, g)| *g)
}

/// Phrases that only ask for a search, stripped to leave what the reviews should be about.
const SEARCH_FILLER: [&str; 16] = [
    "find reviews about",
    "find reviews mentioning",
    "search reviews for",
    "show me reviews about",
    "show me reviews mentioning",
    "reviews that mention",
    "reviews mentioning",
    "reviews about",
    "搜索",
    "搜一下",
    "找一下",
    "查找",
    "找出",
    "提到",
    "的评论",
    "的评价",
];

fn search_query(question: &str) -> String {
    let mut q = normalise(question);
    for f in SEARCH_FILLER {
        q = q.replace(f, " ");
    }
    let q = q
        .trim_matches(|c: char| c.is_whitespace() || "?？。.!！,，:：".contains(c))
        .to_string();
    if q.is_empty() {
        question.trim().to_string()
    } else {
        q
    }
}

/// Whether `tool` takes a period.
pub fn uses_period(tool: &str) -> bool {
    matches!(
        tool,
        "sales_summary"
            | "review_sentiment"
            | "top_complaints"
            | "purchase_intent"
            | "product_report"
            | "search_reviews"
    )
}

/// What a question states, read once by code against the data's clock: the ranking's adjustments, the
/// arguments of every tool and the plan stage all read it from here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The period it names (the first one).
    pub period: Option<dates::Period>,
    /// The periods it compares, in the order named ([`dates::periods`]).
    pub periods: Vec<dates::Period>,
    pub horizon_days: Option<u32>,
    /// The product it names (catalogue first, then a model the gazetteer knows), and every catalogue
    /// product it names.
    pub product: Option<String>,
    pub products: Vec<String>,
    /// The first catalogue category it names (catalogue order), every one in the order named, and the
    /// category words the catalogue lacks.
    pub category: Option<String>,
    pub categories: Vec<String>,
    pub unknown_categories: Vec<String>,
    /// A customer id written in it, and whether it has one at all.
    pub customer_id: Option<String>,
    pub has_id: bool,
    /// A count ("前10", "top 5").
    pub top: Option<u32>,
    /// The tools its words ask for ([`asked_tools`]).
    pub asked: Vec<(&'static str, String)>,
    /// It asks for what no tool holds: another shop's figures, data the shop's records lack, an action
    /// ([`OUTSIDE_WORDS`]).
    pub outside: bool,
}

impl Facts {
    pub fn read(question: &str, today: NaiveDate, cat: &Catalogue) -> Self {
        let q = normalise(question);
        let mut period = dates::resolve(question, today);
        let mut horizon_days = dates::horizon_days(question, today);
        // "7月份能到多少", "预估双十一的销量": a month or a day named without a year, asked of the
        // future, is its next one, not the last one gone by.
        if horizon_days.is_none()
            && let Some(p) = period.as_ref()
            && let Some(days) = dates::next_occurrence_days(question, p, today)
        {
            horizon_days = Some(days);
            period = None;
        }
        let product = cat.product(question).or_else(|| {
            BUILTIN_GAZETTEER
                .extract(question)
                .models
                .into_iter()
                .next()
        });
        // "一个" / "一位" is the indefinite article ("做一个方案"), not a count of one.
        let top = RE_TOP.captures(&q).and_then(|c| {
            c.get(1)
                .or(c.get(2).filter(|m| m.as_str() != "一"))
                .and_then(|m| dates::small_number(m.as_str()))
        });
        let customer_id = RE_CUSTOMER
            .captures(&q)
            .or_else(|| RE_HASH_ID.captures(&q))
            .map(|c| c[1].to_string())
            .filter(|id| id.chars().filter(|c| c.is_ascii_digit()).count() >= 2);
        Facts {
            asked: asked_tools(question, period.is_some(), horizon_days.is_some()),
            periods: dates::periods(question, today),
            period,
            horizon_days,
            product,
            products: cat.products(question),
            category: cat.category(question),
            categories: cat.categories(question),
            unknown_categories: cat.unknown_categories(question),
            has_id: RE_CUSTOMER.is_match(&q) || RE_HASH_ID.is_match(&q),
            customer_id,
            top,
            outside: OUTSIDE_WORDS.iter().any(|w| q.contains(w)),
        }
    }
}

/// Arguments for `tool` that the question states, read by code (the data's clock is `today`).
pub fn extract_args(
    tool: &str,
    question: &str,
    today: NaiveDate,
    cat: &Catalogue,
) -> Map<String, Value> {
    args_of(tool, question, &Facts::read(question, today, cat))
}

/// Arguments for `tool` from what the question states (`facts`, read from `question`).
pub fn args_of(tool: &str, question: &str, facts: &Facts) -> Map<String, Value> {
    let q = normalise(question);
    let mut a = Map::new();
    let period = facts.period;
    let product = facts.product.clone();
    let top = facts.top;
    let customer = facts.customer_id.clone();
    let put = |a: &mut Map<String, Value>, k: &str, v: Value| {
        a.insert(k.to_string(), v);
    };
    if uses_period(tool)
        && let Some(p) = &period
    {
        put(&mut a, "period", json!(p));
    }
    let uses_product = matches!(
        tool,
        "sales_summary"
            | "sales_forecast"
            | "review_sentiment"
            | "top_complaints"
            | "search_reviews"
            | "purchase_intent"
            | "product_report"
    );
    if uses_product && let Some(p) = &product {
        put(&mut a, "product", json!(p));
    }
    match tool {
        "sales_summary" | "sales_forecast" => {
            if product.is_none()
                && let Some(c) = &facts.category
            {
                put(&mut a, "category", json!(c));
            }
            if tool == "sales_summary" {
                if let Some(g) = group_words(&q) {
                    put(&mut a, "group_by", json!(g));
                }
            } else {
                if let Some(h) = facts.horizon_days {
                    put(&mut a, "horizon_days", json!(h));
                }
                let off = [
                    "不考虑促销",
                    "不含促销",
                    "不算促销",
                    "没有促销",
                    "不考虑节假日",
                    "without promotion",
                    "no promotion",
                    "without holiday",
                    "ignore holiday",
                    "ignoring promotion",
                    "no holidays",
                ];
                if off.iter().any(|w| q.contains(w)) {
                    put(&mut a, "events", json!(false));
                }
            }
        }
        "churn_risk" => {
            if let Some(s) = segment_words(&q) {
                put(&mut a, "segment", json!(s));
            }
            if let Some(n) = top {
                put(&mut a, "top_k", json!(n));
            }
        }
        "customer_value" | "promotion_plan" => {
            if let Some(n) = top {
                put(&mut a, "top_k", json!(n));
            }
            if tool == "promotion_plan" {
                put(&mut a, "goal", json!(goal_words(&q)));
            }
        }
        "customer_profile" => {
            if let Some(c) = &customer {
                put(&mut a, "customer_id", json!(c));
            }
        }
        "recommend_products" => {
            if let Some(c) = &customer {
                put(&mut a, "customer_id", json!(c));
            } else if let Some(s) = segment_words(&q) {
                put(&mut a, "segment", json!(s));
            }
            if let Some(n) = top {
                put(&mut a, "top_k", json!(n));
            }
        }
        "top_complaints" => {
            if let Some(n) = top {
                put(&mut a, "top_k", json!(n));
            }
        }
        "search_reviews" => {
            put(&mut a, "query", json!(search_query(question)));
            if let Some(s) = sentiment_words(&q) {
                put(&mut a, "sentiment", json!(s));
            }
        }
        _ => {}
    }
    a
}

/// What to ask or say instead of calling `tool`: a required argument the question did not give
/// ([`missing_required`]), or reviews asked of a time to come ([`reviews_of_a_time_to_come`]). Both
/// routing exits (encoder and LLM) ask through this one chain.
pub fn clarification(
    tool: &str,
    args: &Map<String, Value>,
    facts: &Facts,
    zh: bool,
) -> Option<String> {
    missing_required(tool, args, zh).or_else(|| reviews_of_a_time_to_come(tool, facts, zh))
}

/// A required argument the question did not give: the clarifying question to ask instead.
pub fn missing_required(tool: &str, args: &Map<String, Value>, zh: bool) -> Option<String> {
    let ask = |zh_text: &str, en_text: &str| Some(if zh { zh_text } else { en_text }.to_string());
    match tool {
        "customer_profile" if !args.contains_key("customer_id") => ask(
            "请问是哪位客户？请给出客户编号。",
            "Which customer? Please give the customer id.",
        ),
        "product_report" if !args.contains_key("product") => {
            ask("请问是哪个产品？", "Which product?")
        }
        "recommend_products"
            if !args.contains_key("customer_id") && !args.contains_key("segment") =>
        {
            ask(
                "给哪位客户或哪个客户群推荐？请给出客户编号或客户群名称。",
                "Recommend for whom? Give a customer id or a segment name.",
            )
        }
        _ => None,
    }
}

/// Reviews are of what has happened: a question about the reviews of a time to come ("下个月的评价怎么样？",
/// "那下个月呢？" after review sentiment) is answered by saying so, not with another month's reviews.
pub fn reviews_of_a_time_to_come(tool: &str, facts: &Facts, zh: bool) -> Option<String> {
    let about_reviews = matches!(tool, "review_sentiment" | "top_complaints");
    (about_reviews && facts.horizon_days.is_some() && facts.period.is_none()).then(|| {
        if zh {
            "评价只有已经发生的：所问的时间还没有到，还没有评论可看。可以问本月或上个月的评价，或者预测下个月的销售额。"
        } else {
            "Reviews are of what has happened: the time you ask about has not come yet, so there are no reviews of it. Ask about this month's or last month's reviews, or for a forecast of next month's sales."
        }
        .to_string()
    })
}

/// Follow-up questions ("那上个月呢？", "and for the at-risk segment?") lean on the previous call.
pub fn is_follow_up(question: &str) -> bool {
    let q = normalise(question);
    let q = q.trim();
    let short = q.chars().filter(|c| is_cjk(*c)).count() <= 12 && q.split_whitespace().count() <= 9;
    let zh = (q.starts_with('那') || q.starts_with("还有") || q.starts_with("换成"))
        || (q.ends_with("呢?") || q.ends_with("呢？") || q.ends_with('呢'));
    let en = [
        "and ",
        "what about",
        "how about",
        "same for",
        "same but",
        "and for",
        "now for",
        "also for",
    ]
    .iter()
    .any(|w| q.starts_with(w));
    short && (zh || en)
}

/// What a follow-up is about, carried over from the previous call when its tool takes it.
pub const SUBJECT_ARGS: [&str; 5] = ["product", "category", "period", "segment", "customer_id"];

/// The tool a follow-up asks for: the previous call's, unless the follow-up's own words ask for
/// another ("那上个月卖了多少？" after a forecast is sales, "那评价呢？" is sentiment), or it names a time
/// the previous tool cannot take (a month gone by after a forecast, one to come after sales). `None`
/// when its words ask for several tools: that is a new question, not a follow-up.
pub fn follow_up_tool(prev: &str, question: &str, facts: &Facts) -> Option<&'static str> {
    let own = |t: &str| crate::tools::NAMES.iter().copied().find(|n| *n == t);
    // "and for the high-value segment?" after recommendations names whom they are for: words of the
    // customer tools that name a segment the previous tool takes are its argument.
    let names_segment = || {
        crate::tools::takes(prev, "segment")
            && args_of(prev, question, facts).contains_key("segment")
    };
    // "那评价呢？", "and the reviews?": in a follow-up, the reviews alone are what they say of it.
    let reviews = ["评价", "评论", "review"];
    let about_reviews = matches!(
        prev,
        "review_sentiment"
            | "top_complaints"
            | "search_reviews"
            | "product_report"
            | "purchase_intent"
    );
    match facts.asked.as_slice() {
        [] if !about_reviews && reviews.iter().any(|w| question.to_lowercase().contains(w)) => {
            return Some("review_sentiment");
        }
        [] => {}
        [(t, _)] if PLAN_TARGETS.contains(t) && names_segment() => {}
        [(t, _)] => return own(t),
        more if more.iter().any(|(t, _)| *t == prev) => {}
        _ => return None,
    }
    let past = facts.period.is_some() && facts.horizon_days.is_none();
    let future = facts.horizon_days.is_some() && facts.period.is_none();
    match prev {
        "sales_forecast" if past => Some("sales_summary"),
        "sales_summary" if future => Some("sales_forecast"),
        _ => own(prev),
    }
}

/// Does the question read as Chinese?
pub fn is_chinese(text: &str) -> bool {
    let han = text.chars().filter(|c| is_cjk(*c)).count();
    let latin = text.chars().filter(|c| c.is_ascii_alphabetic()).count();
    han > 0 && han * 3 >= latin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalogue {
        let e = |name: &str, brand: &str, model: &str, category: &str| CatalogueEntry {
            id: 0,
            name: name.into(),
            brand: Some(brand.into()),
            model: Some(model.into()),
            category: Some(category.into()),
        };
        Catalogue::new(&[
            e("联想 ThinkPad T14", "Lenovo", "ThinkPad T14", "laptops"),
            e("戴尔 Inspiron 14", "Dell", "Inspiron 14", "laptops"),
            e(
                "北京酒店预订 Beijing Hotel Stay",
                "洞察旅行",
                "Beijing",
                "hotels",
            ),
            e(
                "上海酒店预订 Shanghai Hotel Stay",
                "洞察旅行",
                "Shanghai",
                "hotels",
            ),
            e("历史人文 History & Culture", "洞察书局", "History", "books"),
            e("神舟 战神 Z8", "Hasee", "战神 Z8", "laptops"),
        ])
    }

    /// Batch 3 missed "照现在的势头，7月份销售额能到多少" and "预估一下双十一期间笔记本的销量": a month or a
    /// holiday named without a year resolved to the last one gone by, so the question read as past
    /// sales. Asked of the future, it is the next one: a horizon, and the sales words ask for a forecast.
    #[test]
    fn a_month_asked_of_the_future_is_the_next_one_not_the_last() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let f = Facts::read("照现在的势头，7月份销售额能到多少", today, &cat());
        assert_eq!((f.period, f.horizon_days), (None, Some(31)));
        assert_eq!(
            f.asked.iter().map(|a| a.0).collect::<Vec<_>>(),
            ["sales_forecast"]
        );
        let f = Facts::read("预估一下双十一期间笔记本的销量", today, &cat());
        assert_eq!((f.period, f.horizon_days), (None, Some(134)));
        // Named in the past, or with its year, it stays the one gone by.
        for q in [
            "7月份卖了多少",
            "去年双十一卖了多少",
            "2025年7月的销售额能到多少",
        ] {
            let f = Facts::read(q, today, &cat());
            assert!(f.period.is_some() && f.horizon_days.is_none(), "{q}: {f:?}");
            assert_eq!(f.asked[0].0, "sales_summary", "{q}");
        }
    }

    /// Batch 3: "give me a full rundown of the ThinkPad T14: sales, reviews, complaints" became a plan of
    /// sales and complaints; a product's rundown is its report, which shows both.
    #[test]
    fn a_rundown_of_a_product_is_its_report_not_parts() {
        let asked = asked_tools(
            "give me a full rundown of the ThinkPad T14: sales, reviews, complaints",
            false,
            false,
        );
        assert_eq!(
            asked.iter().map(|a| a.0).collect::<Vec<_>>(),
            ["product_report"]
        );
    }

    /// The words of batches 3 and 4's misses and of the /segments bug ask for their tools.
    #[test]
    fn everyday_words_ask_for_their_tools() {
        for (q, tool) in [
            ("我们有哪些客户群？", "customer_segments"),
            (
                "how should we bring back customers who stopped buying",
                "promotion_plan",
            ),
            ("客户 00042 还可能喜欢什么", "recommend_products"),
            ("customer 00042 might like what else?", "recommend_products"),
            ("高价值但好久没下单的客户有哪些", "churn_risk"),
            ("which customers stopped buying", "churn_risk"),
        ] {
            let asked = asked_tools(q, false, false);
            assert_eq!(asked.first().map(|a| a.0), Some(tool), "{q}");
        }
        let both = asked_tools("last month's orders and next month's forecast", true, true);
        assert_eq!(
            both.iter().map(|a| a.0).collect::<Vec<_>>(),
            ["sales_summary", "sales_forecast"]
        );
    }

    /// The tool head weighs every example: a point between two tools' examples leans to the nearer
    /// direction, and its probabilities are a distribution.
    #[test]
    fn the_tool_head_learns_the_direction_of_each_tools_examples() {
        let x = vec![
            vec![1.0, 0.1, 0.0],
            vec![0.9, 0.0, 0.1],
            vec![0.0, 1.0, 0.1],
            vec![0.1, 0.9, 0.0],
        ];
        let head = ToolHead::train(&x, &[0, 0, 1, 1], 2, HEAD_L2, HEAD_EPOCHS);
        let lp = head.log_probs(&[0.7, 0.3, 0.0]);
        assert!(lp[0] > lp[1], "{lp:?}");
        let total: f32 = lp.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        let lp = head.log_probs(&[0.2, 0.8, 0.05]);
        assert!(lp[1] > lp[0], "{lp:?}");
    }

    /// Batches 5 and 6 sent "竞争对手的店这个月卖了多少" and "上个月利润率多少" to sales_summary: another
    /// shop's figures, profit, stock, staff, ads, parcels and actions are what no tool holds.
    #[test]
    fn what_no_tool_holds_leans_to_none() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        for q in [
            "竞争对手的店这个月卖了多少",
            "上个月利润率多少",
            "T14 还剩多少库存",
            "how many employees work in customer service",
            "快递单号 SF123456 到哪了",
            "帮我把 Aspire 5 的价格改成 3999",
            "写一段 ThinkPad T14 的商品详情页文案",
        ] {
            assert!(Facts::read(q, today, &cat()).outside, "{q}");
        }
        for q in [
            "上个月的销售额",
            "reviews about packaging",
            "哪些客户要流失",
        ] {
            assert!(!Facts::read(q, today, &cat()).outside, "{q}");
        }
        let f = Facts::read("竞争对手的店这个月卖了多少", today, &cat());
        let mut r = Ranking {
            scores: vec![("sales_summary", 1.0), ("none", 0.9)],
        };
        adjust_for_outside(&mut r, &f);
        assert_eq!(r.best().0, "none");
    }

    /// Batches 1 and 6: "找一下抱怨电脑发热的评论" and "any reviews complaining about the fan noise" went
    /// to complaint topics; reviews asked for by what they say are a search.
    #[test]
    fn reviews_asked_for_by_what_they_say_are_a_search() {
        for q in [
            "找一下抱怨电脑发热的评论",
            "any reviews complaining about the fan noise on the Z8",
            "find reviews that mention the keyboard",
            "帮我翻几条说屏幕有坏点的评论",
        ] {
            assert_eq!(clause_tool(q), Some("search_reviews"), "{q}");
        }
        for (q, tool) in [
            ("top complaints about the Z8", "top_complaints"),
            ("差评集中在哪些问题", "top_complaints"),
        ] {
            assert_eq!(clause_tool(q), Some(tool), "{q}");
        }
    }

    /// Batch 5: "图书的差评多不多" asks how many (sentiment); "差评话题" are the complaints' topics.
    #[test]
    fn how_many_bad_reviews_is_sentiment_and_their_topics_are_complaints() {
        assert_eq!(clause_tool("图书的差评多不多"), Some("review_sentiment"));
        assert_eq!(
            clause_tool("差评是不是越来越多了"),
            Some("review_sentiment")
        );
        assert_eq!(
            clause_tool("本月差评话题环比有什么变化"),
            Some("top_complaints")
        );
    }

    /// Batch 6: "那些快流失的VIP，我们该怎么留住他们" is one plan for the customers it names; a clause that
    /// asks for the list itself is a part of its own.
    #[test]
    fn the_customers_a_plan_is_for_are_its_target_not_a_part() {
        let tools = |q: &str| {
            asked_tools(q, false, false)
                .into_iter()
                .map(|a| a.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            tools("那些快流失的VIP，我们该怎么留住他们"),
            ["promotion_plan"]
        );
        assert_eq!(
            tools("列出流失风险高的客户，再给一个挽回方案"),
            ["churn_risk", "promotion_plan"]
        );
    }

    /// Plans batch: "Compare sales of the HP Pavilion 15 and the Acer Aspire 5" went to one product's
    /// report; two products named are a comparison.
    #[test]
    fn a_report_is_of_one_product() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let f = Facts::read(
            "ThinkPad T14 和戴尔 Inspiron 14 上个月谁卖得好",
            today,
            &cat(),
        );
        assert_eq!(f.products.len(), 2);
        let mut r = Ranking {
            scores: vec![("product_report", 1.0), ("sales_summary", 0.97)],
        };
        adjust_for_arguments(&mut r, &f);
        assert_eq!(r.best().0, "sales_summary");
    }

    /// "will hotel bookings pick up next month" compared hotels with books: "book" matched inside
    /// "bookings".
    #[test]
    fn hotel_bookings_are_not_books() {
        let c = cat();
        assert_eq!(
            c.categories("will hotel bookings pick up next month"),
            ["hotels"]
        );
        assert_eq!(c.category("bookings this week").as_deref(), None);
        assert_eq!(c.categories("books and hotels"), ["books", "hotels"]);
    }

    /// "which gets more complaints: the Z8 or the T14?" found one product: a two-character model word
    /// ("z8") was no alias.
    #[test]
    fn a_short_model_word_names_its_product() {
        assert_eq!(
            cat().products("which gets more complaints: the Z8 or the T14?"),
            ["神舟 战神 Z8", "联想 ThinkPad T14"]
        );
    }

    #[test]
    fn products_categories_and_ids_come_from_the_question() {
        let c = cat();
        assert_eq!(
            c.product("ThinkPad T14 的差评").as_deref(),
            Some("联想 ThinkPad T14")
        );
        assert_eq!(
            c.product("联想卖得怎么样").as_deref(),
            Some("联想 ThinkPad T14")
        );
        assert_eq!(
            c.product("how is the dell doing").as_deref(),
            Some("戴尔 Inspiron 14")
        );
        assert_eq!(
            c.product("北京酒店的评价").as_deref(),
            Some("北京酒店预订 Beijing Hotel Stay")
        );
        // The shared brand names no product; a plain question names none.
        assert_eq!(c.product("洞察旅行"), None);
        assert_eq!(c.product("上个月的销售额是多少？"), None);
        assert_eq!(c.category("笔记本电脑的销量").as_deref(), Some("laptops"));
        assert_eq!(
            c.categories("Compare revenue of laptops and books last quarter"),
            ["laptops", "books"]
        );
        assert_eq!(
            c.categories("图书和笔记本电脑哪个卖得好"),
            ["books", "laptops"]
        );
        assert_eq!(c.categories("laptop sales"), ["laptops"]);
        assert_eq!(
            c.unknown_categories("compare sales of laptops and phones last month"),
            ["phones"]
        );
        assert_eq!(c.unknown_categories("手机和图书的销售额"), ["手机"]);
        assert!(c.unknown_categories("iPhone 13 的差评").is_empty());
        assert!(c.unknown_categories("laptops and books").is_empty());
        assert_eq!(
            c.products("ThinkPad T14 和戴尔上个月谁卖得好"),
            ["联想 ThinkPad T14", "戴尔 Inspiron 14"]
        );
        assert_eq!(
            c.products("北京酒店和上海酒店的差评"),
            [
                "北京酒店预订 Beijing Hotel Stay",
                "上海酒店预订 Shanghai Hotel Stay"
            ]
        );
        assert_eq!(c.products("ThinkPad T14 的差评"), ["联想 ThinkPad T14"]);
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let a = extract_args("customer_profile", "客户 00042 的情况", today, &c);
        assert_eq!(a["customer_id"], "00042");
        let a = extract_args(
            "churn_risk",
            "Which high-value customers are at risk of churning? top 5",
            today,
            &c,
        );
        assert_eq!(a["segment"], "high-value");
        assert_eq!(a["top_k"], 5);
        let a = extract_args("sales_summary", "上个月的销售额是多少？", today, &c);
        assert_eq!(a["period"]["from"], "2026-05-01");
        let a = extract_args("search_reviews", "搜索物流太慢的差评", today, &c);
        assert_eq!(a["sentiment"], "negative");
        assert_eq!(a["query"], "物流太慢的差评");
        let a = extract_args(
            "top_complaints",
            "what do buyers complain about on the iPhone 13 this month?",
            today,
            &c,
        );
        assert_eq!(a["product"], "iPhone 13");
    }

    /// "给沉睡客户做一个召回方案" planned for one customer: "一个" read as a count.
    #[test]
    fn a_plan_asked_for_as_yi_ge_is_not_for_one_customer() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let a = extract_args("promotion_plan", "给沉睡客户做一个召回方案", today, &cat());
        assert!(a.get("top_k").is_none(), "{a:?}");
        let a = extract_args(
            "promotion_plan",
            "给前十个沉睡客户做召回方案",
            today,
            &cat(),
        );
        assert_eq!(a["top_k"], 10);
    }

    /// "那下个月呢？" after last month's review sentiment answered last month again; "下个月的评价怎么样？"
    /// answered this month's.
    #[test]
    fn reviews_of_a_time_to_come_are_not_another_months() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let facts = |q: &str| Facts::read(q, today, &cat());
        for (tool, q) in [
            ("review_sentiment", "那下个月呢？"),
            ("review_sentiment", "下个月的评价怎么样？"),
            (
                "top_complaints",
                "what will people complain about next week?",
            ),
        ] {
            assert!(
                reviews_of_a_time_to_come(tool, &facts(q), true).is_some(),
                "{tool}: {q}"
            );
        }
        for (tool, q) in [
            ("review_sentiment", "上个月的评价怎么样？"),
            ("review_sentiment", "那上个月呢？"),
            ("sales_forecast", "预测下个月的销售额"),
            ("purchase_intent", "多少人打算下个月买"),
        ] {
            assert!(
                reviews_of_a_time_to_come(tool, &facts(q), true).is_none(),
                "{tool}: {q}"
            );
        }
    }

    /// After a forecast, "那上个月卖了多少？" was answered with the forecast again (a follow-up always
    /// kept the previous tool). A follow-up whose words ask for one tool gets that tool; one that names
    /// a time the previous tool cannot take gets its counterpart; one that only changes an argument
    /// keeps the previous tool.
    #[test]
    fn a_follow_up_naming_its_own_tool_is_not_the_previous_one() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let tool = |prev: &str, q: &str| {
            assert!(is_follow_up(q), "{q}");
            follow_up_tool(prev, q, &Facts::read(q, today, &cat()))
        };
        assert_eq!(
            tool("sales_forecast", "那上个月卖了多少？"),
            Some("sales_summary")
        );
        assert_eq!(
            tool("sales_forecast", "and what about last month?"),
            Some("sales_summary")
        );
        assert_eq!(
            tool("sales_summary", "那下个月呢？"),
            Some("sales_forecast")
        );
        assert_eq!(
            tool("sales_summary", "那口碑呢？"),
            Some("review_sentiment")
        );
        assert_eq!(
            tool("sales_summary", "那评价呢？"),
            Some("review_sentiment")
        );
        assert_eq!(
            tool("sales_forecast", "and the reviews?"),
            Some("review_sentiment")
        );
        // Already about reviews: the reviews of another month are the same question.
        assert_eq!(
            tool("top_complaints", "那上个月的评价呢？"),
            Some("top_complaints")
        );
        assert_eq!(
            tool("review_sentiment", "what about the complaints?"),
            Some("top_complaints")
        );
        // Only an argument changes: the same tool.
        for (prev, q) in [
            ("sales_summary", "那上个月呢？"),
            ("sales_forecast", "那戴尔 Inspiron 14 呢？"),
            ("review_sentiment", "那上个月呢？"),
            ("top_complaints", "and for the Dell Inspiron 14?"),
            ("recommend_products", "and for the high-value segment?"),
            ("recommend_products", "那高价值客户呢？"),
        ] {
            assert_eq!(tool(prev, q), Some(prev), "{prev}: {q}");
        }
    }

    /// "how many shoppers say they will wait, by product ThinkPad T14?" was answered with sentiment: what
    /// shoppers say they will do is purchase intent.
    #[test]
    fn shoppers_saying_they_will_wait_ask_for_purchase_intent() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        for q in [
            "how many shoppers say they will wait, by product ThinkPad T14?",
            "are people hesitating on the Dell",
            "这个月有多少人在犹豫",
            "多少人打算等降价",
        ] {
            let f = Facts::read(q, today, &cat());
            let asked: Vec<&str> = f.asked.iter().map(|a| a.0).collect();
            assert_eq!(asked, ["purchase_intent"], "{q}");
        }
    }

    #[test]
    fn follow_ups_and_languages() {
        assert!(is_follow_up("那上个月呢？"));
        assert!(is_follow_up("and for the at-risk segment?"));
        assert!(!is_follow_up("上个月的销售额是多少？"));
        assert!(is_chinese("上个月的销售额"));
        assert!(!is_chinese("Which customers will churn?"));
    }

    #[test]
    fn the_shipped_examples_parse_and_cover_every_tool() {
        let ex = parse_examples(EXAMPLES_TSV).unwrap();
        for name in crate::tools::NAMES {
            let n = ex.iter().filter(|(t, _)| t == name).count();
            assert!(n >= 8, "{name}: {n} examples");
        }
    }
}

/// p(tool | question) from a softmax regression over sentence vectors, trained on the router's examples
/// at start (a few hundred vectors, well under a second). Where the nearest examples judge by one or two
/// look-alikes, the head weighs every example of every tool, so a phrasing no example shares still
/// leans to the tool whose examples point the same way.
#[derive(Clone)]
pub struct ToolHead {
    dim: usize,
    classes: usize,
    mean: Vec<f32>,
    scale: f32,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl ToolHead {
    /// Full-batch gradient descent (Adam) on cross-entropy with an L2 penalty; deterministic.
    pub fn train(x: &[Vec<f32>], y: &[usize], classes: usize, l2: f32, epochs: usize) -> Self {
        let dim = x.first().map_or(0, Vec::len);
        let n = x.len().max(1) as f32;
        let mut mean = vec![0f32; dim];
        for v in x {
            for (m, a) in mean.iter_mut().zip(v) {
                *m += a / n;
            }
        }
        let var: f32 = x
            .iter()
            .flat_map(|v| v.iter().zip(&mean).map(|(a, m)| (a - m) * (a - m)))
            .sum::<f32>()
            / n;
        // One scale for all features: the centred vectors get unit length on average.
        let scale = 1.0 / var.sqrt().max(1e-6);
        let xs: Vec<Vec<f32>> = x
            .iter()
            .map(|v| v.iter().zip(&mean).map(|(a, m)| (a - m) * scale).collect())
            .collect();
        let mut head = Self {
            dim,
            classes,
            mean,
            scale,
            w: vec![0.0; classes * dim],
            b: vec![0.0; classes],
        };
        let (lr, b1, b2, eps) = (0.05f32, 0.9f32, 0.999f32, 1e-8f32);
        let mut mw = vec![0f32; classes * dim];
        let mut vw = vec![0f32; classes * dim];
        let mut mb = vec![0f32; classes];
        let mut vb = vec![0f32; classes];
        for t in 1..=epochs {
            let mut gw: Vec<f32> = head.w.iter().map(|w| l2 * w).collect();
            let mut gb = vec![0f32; classes];
            for (v, &label) in xs.iter().zip(y) {
                let p = head.probs_centred(v);
                for c in 0..classes {
                    let g = (p[c] - (c == label) as u8 as f32) / n;
                    gb[c] += g;
                    let row = &mut gw[c * dim..(c + 1) * dim];
                    for (gr, a) in row.iter_mut().zip(v) {
                        *gr += g * a;
                    }
                }
            }
            let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
            for i in 0..head.w.len() {
                mw[i] = b1 * mw[i] + (1.0 - b1) * gw[i];
                vw[i] = b2 * vw[i] + (1.0 - b2) * gw[i] * gw[i];
                head.w[i] -= lr * (mw[i] / c1) / ((vw[i] / c2).sqrt() + eps);
            }
            for c in 0..classes {
                mb[c] = b1 * mb[c] + (1.0 - b1) * gb[c];
                vb[c] = b2 * vb[c] + (1.0 - b2) * gb[c] * gb[c];
                head.b[c] -= lr * (mb[c] / c1) / ((vb[c] / c2).sqrt() + eps);
            }
        }
        head
    }

    fn probs_centred(&self, v: &[f32]) -> Vec<f32> {
        let logits: Vec<f32> = (0..self.classes)
            .map(|c| {
                self.b[c]
                    + self.w[c * self.dim..(c + 1) * self.dim]
                        .iter()
                        .zip(v)
                        .map(|(w, a)| w * a)
                        .sum::<f32>()
            })
            .collect();
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let e: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let z: f32 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect()
    }

    /// ln p(tool) for every tool, in the order of the classes it was trained with.
    pub fn log_probs(&self, v: &[f32]) -> Vec<f32> {
        let c: Vec<f32> = v
            .iter()
            .zip(&self.mean)
            .map(|(a, m)| (a - m) * self.scale)
            .collect();
        self.probs_centred(&c)
            .into_iter()
            .map(|p| p.max(1e-12).ln())
            .collect()
    }
}
