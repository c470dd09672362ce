//! Text cleaning shared by ingestion and analysis: markup and URL removal, width/case normalisation,
//! product-model protection ("iPhone 13" stays one token, in its own case), Chinese segmentation with
//! jieba, punctuation/symbol/emoji removal and stop words. Pure: no IO.
//!
//! The cleaned form is the token list joined by single spaces. A product model is one token even though it
//! may contain a space ("Mate 60 Pro"); [`tokens`] returns the tokens themselves.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

static JIEBA: LazyLock<jieba_rs::Jieba> = LazyLock::new(jieba_rs::Jieba::new);

static STOP_WORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    [
        include_str!("stopwords_en.txt"),
        include_str!("stopwords_zh.txt"),
    ]
    .iter()
    .flat_map(|f| f.lines())
    .map(str::trim)
    .filter(|l| !l.is_empty() && !l.starts_with('#'))
    .collect()
});

/// Words that carry an opinion, a degree or nothing in particular (`opinion_words.txt`).
static OPINION_WORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("opinion_words.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// Whether a token (as [`tokens`] makes them) names a thing or an aspect — what a topic may be labelled
/// by: at least two characters, not a number, not a stop word, not an opinion, degree or vague word, and,
/// for Chinese, a common noun in jieba's dictionary or its part-of-speech model (n, nz, ng, vn, an, nw; not
/// people's, places' or organisations' names: "中国", "东路" name no aspect). English has no tagger here:
/// the word lists decide.
pub fn is_content_word(w: &str) -> bool {
    if w.chars().count() < 2
        || w.chars().all(|c| c.is_ascii_digit() || c == '.')
        || STOP_WORDS.contains(w)
        || OPINION_WORDS.contains(w)
    {
        return false;
    }
    if !w.chars().any(is_han) {
        return w.chars().any(char::is_alphabetic);
    }
    // What shops are judged on, which jieba's dictionary tags as verbs ("快递" v).
    const ASPECTS: [&str; 16] = [
        "快递", "包装", "发货", "送货", "配送", "售后", "客服", "退货", "退款", "安装", "做工",
        "续航", "充电", "散热", "印刷", "装修",
    ];
    if ASPECTS.contains(&w) {
        return true;
    }
    let tags = JIEBA.tag(w, true);
    tags.len() == 1 && matches!(tags[0].tag, "n" | "nz" | "ng" | "vn" | "an" | "nw")
}

/// Whether `text` (any case) contains the label part `phrase` as written: Latin words as whole words
/// (a phrase's words separated by anything), Chinese as a substring.
pub fn mentions(text: &str, phrase: &str) -> bool {
    let t = text.to_lowercase();
    if phrase.chars().any(is_han) {
        return t.contains(&phrase.to_lowercase());
    }
    let words: Vec<String> = phrase.split_whitespace().map(str::to_lowercase).collect();
    let toks: Vec<&str> = t
        .split(|c: char| !c.is_alphanumeric())
        .filter(|x| !x.is_empty())
        .collect();
    !words.is_empty()
        && toks
            .windows(words.len())
            .any(|win| win.iter().zip(&words).all(|(a, b)| a == b))
}

/// Markup, links and handles: removed before anything else.
static NOISE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)<[a-z/!][^<>]{0,200}>",                // HTML/XML tags
        r"|&(?:amp|lt|gt|quot|apos|nbsp|#\d{1,6});", // entities
        r"|(?:https?://|www\.)[^\s<>\u3000-\u303f\uff00-\uffef]+", // URLs (stop at CJK punctuation)
        r"|[\w.+-]+@[\w-]+\.[\w.-]+",                // e-mail addresses
        r"|@[\w\u4e00-\u9fff-]{1,30}",               // @mentions
    ))
    .expect("valid noise regex")
});

/// Product models: a known brand or line followed by a model number and optional suffixes, e.g.
/// "iPhone 13", "iPhone 13 Pro Max", "Mate 60 Pro", "小米14", "Galaxy S23 Ultra", "Redmi Note 12".
/// Matched after NFKC, so full-width "ｉＰｈｏｎｅ１３" is found too.
static MODEL: LazyLock<Regex> = LazyLock::new(|| {
    let lines = [
        "iPhone",
        "iPad",
        "iPad Pro",
        "iPad Air",
        "MacBook Pro",
        "MacBook Air",
        "MacBook",
        "Apple Watch",
        "AirPods",
        "AirPods Pro",
        "Galaxy",
        "Galaxy Note",
        "Galaxy Tab",
        "Pixel",
        "Mate",
        "Mate X",
        "Nova",
        "P",
        "Pura",
        "Redmi",
        "Redmi Note",
        "Redmi K",
        "Xiaomi",
        "Mi",
        "OnePlus",
        "Find X",
        "Reno",
        "iQOO",
        "ThinkPad X",
        "ThinkPad T",
        "ThinkPad",
        "Surface Pro",
        "Surface",
        "Kindle",
        "PS",
        "Xbox",
        "Switch",
        "Honor",
        "Magic",
        "Yoga",
        "Legion",
        "ROG",
        "Xperia",
        "Nokia",
        "Moto G",
        "Vivo X",
        "OPPO",
        "Oppo",
        "小米",
        "红米",
        "华为",
        "荣耀",
        "苹果",
        "三星",
        "魅族",
        "一加",
        "联想",
        "vivo",
        "OPPO",
    ];
    let mut alts: Vec<&str> = lines.to_vec();
    alts.sort_by_key(|s| std::cmp::Reverse(s.len()));
    alts.dedup();
    let alts: Vec<String> = alts
        .iter()
        .map(|a| regex::escape(a).replace(r"\ ", r"\s?"))
        .collect();
    let suffix =
        r"(?:\s?(?:Pro\+?|Max|Plus|Ultra|mini|Mini|Lite|SE|Air|FE|Fold\d?|Flip\d?|Turbo|\+))*";
    Regex::new(&format!(
        r"(?:^|[^A-Za-z0-9])((?:{})\s?[0-9]{{1,4}}[A-Za-z]{{0,2}}{suffix})(?:$|[^A-Za-z0-9])",
        alts.join("|")
    ))
    .expect("valid model regex")
});

/// The language a text is mostly written in, for picking models and reply language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }
}

/// Chinese when at least one in five letters is a Han character.
pub fn detect_lang(text: &str) -> Lang {
    let (mut han, mut letters) = (0usize, 0usize);
    for c in text.chars() {
        if is_han(c) {
            han += 1;
            letters += 1;
        } else if c.is_alphabetic() {
            letters += 1;
        }
    }
    if han > 0 && han * 5 >= letters {
        Lang::Zh
    } else {
        Lang::En
    }
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}' | '\u{f900}'..='\u{faff}' | '\u{20000}'..='\u{2a6df}')
}

/// Width and compatibility normalisation (full-width Latin and digits become ASCII), with markup, links and
/// handles removed and whitespace collapsed. Case is kept.
pub fn normalize(raw: &str) -> String {
    let stripped = NOISE.replace_all(raw, " ");
    let mut out = String::with_capacity(stripped.len());
    let mut space = true;
    for c in stripped.nfkc() {
        if c.is_whitespace() || c.is_control() {
            if !space {
                out.push(' ');
                space = true;
            }
        } else {
            out.push(c);
            space = false;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Tokens of a text after cleaning: lower-cased words and Chinese words, product models intact, no
/// punctuation, symbols, emoji or stop words.
pub fn tokens(raw: &str) -> Vec<String> {
    let text = normalize(raw);
    let mut out = Vec::new();
    let mut last = 0;
    for caps in MODEL.captures_iter(&text) {
        let m = caps.get(1).expect("group 1 always participates");
        push_plain_tokens(&text[last..m.start()], &mut out);
        out.push(collapse_spaces(m.as_str()));
        last = m.end();
    }
    push_plain_tokens(&text[last..], &mut out);
    out
}

/// The cleaned text stored next to the raw text: [`tokens`] joined by single spaces.
pub fn clean(raw: &str) -> String {
    tokens(raw).join(" ")
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn push_plain_tokens(segment: &str, out: &mut Vec<String>) {
    if segment.trim().is_empty() {
        return;
    }
    let lower = segment.to_lowercase();
    let mut run_start: Option<usize> = None;
    let flush_latin = |s: &str, out: &mut Vec<String>| {
        // Keep inner apostrophes, hyphens and decimal points ("don't", "wi-fi", "6.1").
        let w = s.trim_matches(|c: char| !c.is_alphanumeric());
        if !w.is_empty() && !STOP_WORDS.contains(w) {
            out.push(w.to_string());
        }
    };
    let mut chars = lower.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_han(c) {
            // A run of Han characters (with no Latin inside) goes to jieba as one block.
            if let Some(s) = run_start.take() {
                flush_latin(&lower[s..i], out);
            }
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !is_han(d) {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            for tok in JIEBA.cut(&lower[i..end], true) {
                let w = tok.word;
                if !STOP_WORDS.contains(w) {
                    out.push(w.to_string());
                }
            }
        } else if c.is_alphanumeric()
            || (run_start.is_some() && matches!(c, '\'' | '-' | '.' | '_'))
        {
            if run_start.is_none() {
                run_start = Some(i);
            }
        } else if let Some(s) = run_start.take() {
            // Punctuation, symbols, emoji and spaces end a word and are dropped.
            flush_latin(&lower[s..i], out);
        }
    }
    if let Some(s) = run_start {
        flush_latin(&lower[s..], out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_table() {
        let table: &[(&str, &str)] = &[
            ("The iPhone 13 is GREAT!!! 👍", "iPhone 13 great"),
            (
                "ｉＰｈｏｎｅ　１３　Ｐｒｏ 电池不错",
                "iPhone 13 Pro 电池 不错",
            ),
            (
                "<p>Battery life &amp; screen</p> see https://shop.example/x?id=1",
                "battery life screen see",
            ),
            ("物流太慢了，包装也破了。", "物流 太慢 包装 破"),
            ("买了小米14，很满意", "买 小米14 很 满意"),
            ("Mate 60 Pro信号好", "Mate 60 Pro 信号 好"),
            (
                "Galaxy S23 Ultra vs Redmi Note 12",
                "galaxy s23 ultra vs Redmi Note 12",
            ),
            ("@张三 这个不好用 #吐槽#", "不好 用 吐槽"),
            (
                "Don't buy: wi-fi drops at 6.1 inches.",
                "don't buy wi-fi drops 6.1 inches",
            ),
            ("", ""),
        ];
        for (raw, want) in table {
            assert_eq!(clean(raw), *want, "cleaning {raw:?}");
        }
    }

    #[test]
    fn models_stay_single_tokens() {
        assert_eq!(
            tokens("I love my iPhone 13 Pro Max."),
            vec!["love", "iPhone 13 Pro Max"]
        );
        assert_eq!(tokens("华为Mate60很好"), vec!["华为", "Mate60", "很", "好"]);
    }

    #[test]
    fn normalize_keeps_case_and_collapses_space() {
        assert_eq!(normalize("  ＡＢＣ\t\n１２３  "), "ABC 123");
    }

    #[test]
    fn language_detection() {
        assert_eq!(detect_lang("物流太慢"), Lang::Zh);
        assert_eq!(detect_lang("iPhone 13 电池很差"), Lang::Zh);
        assert_eq!(detect_lang("Battery is bad"), Lang::En);
        assert_eq!(detect_lang("12345"), Lang::En);
    }
}
