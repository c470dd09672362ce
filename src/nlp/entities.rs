//! Entities in review and social text: brands, product models and prices.
//!
//! - Brands come from a gazetteer: built-in aliases for common consumer brands (苹果 / Apple / iPhone →
//!   Apple) plus the shop's own catalogue (`products.brand`, `products.model`), added with
//!   [`Gazetteer::add`].
//! - Models come from patterns: a series word (iPhone, Mate, 小米, Redmi, Galaxy S, ThinkPad X, …) with a
//!   number and optional suffixes ("iPhone 13 Pro Max", "Mate 60 Pro", "小米14", "Galaxy S24 Ultra"), and
//!   from the catalogue's model names.
//! - Prices: [`parse_price`] reads one amount from a price string in any common format ("¥699", "699元",
//!   "$1,299.00", "1 030 р.", "5,90 €", "六百九十九元", "1.2万"); [`find_prices`] finds the price mentions in
//!   running text (a number counts only next to a currency word or sign there, so "买了3个" is not a price).

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

/// An amount with the currency it was written with, as found in text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    pub amount: f64,
    /// The currency as written ("¥", "元", "$", "EUR"), if any.
    pub currency: Option<String>,
    /// The matched text.
    pub text: String,
}

/// Currency signs and words, longest first so "US$" wins over "$".
const CURRENCIES: &[&str] = &[
    "人民币",
    "块钱",
    "美元",
    "欧元",
    "英镑",
    "日元",
    "港币",
    "US$",
    "USD",
    "CNY",
    "RMB",
    "EUR",
    "GBP",
    "JPY",
    "HKD",
    "AUD",
    "CAD",
    "CHF",
    "INR",
    "RUB",
    "PLN",
    "CZK",
    "SEK",
    "NOK",
    "DKK",
    "HUF",
    "BRL",
    "MXN",
    "KRW",
    "Kč",
    "zł",
    "руб",
    "р.",
    "грн",
    "лв",
    "kr",
    "R$",
    "元",
    "块",
    "¥",
    "￥",
    "$",
    "€",
    "£",
    "₹",
    "₽",
    "₩",
    "₺",
    "₴",
    "฿",
    "₫",
    "₪",
    "Fr",
];

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    // A number with thousands groups (space, thin space, apostrophe, comma or dot) and a decimal part.
    Regex::new(r"[.,]?\d(?:[\d.,'’ \u{2009}\u{202f}]*\d)?").expect("number pattern")
});

static CHINESE_AMOUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[零〇一二两三四五六七八九十百千万亿]+(?:[元块](?:钱)?[零〇一二两三四五六七八九]?[角毛]?)|[零〇一二两三四五六七八九十百千万亿]{2,}")
        .expect("chinese amount pattern")
});

/// Normalises width and spaces: full-width digits and signs become ASCII, no-break spaces plain spaces.
fn normalise(text: &str) -> String {
    text.nfkc()
        .map(|c| match c {
            '\u{a0}' | '\u{2007}' => ' ',
            c => c,
        })
        .collect::<String>()
        .replace('￥', "¥")
}

/// Reads the amount of a price string: the first number in it, with the decimal separator decided the
/// way people write prices (a separator followed by exactly three digits groups thousands; the last
/// separator followed by one, two or four or more digits is the decimal point), "万"/"千"/"k" multipliers,
/// and Chinese numerals. `None` when there is no number (or the number is a percentage).
pub fn parse_price(text: &str) -> Option<Price> {
    let norm = normalise(text);
    if let Some(p) = chinese_price(&norm) {
        return Some(p);
    }
    for m in NUMBER.find_iter(&norm) {
        let raw = m
            .as_str()
            .trim_end_matches([' ', '\u{2009}', '\u{202f}', '\'', '’']);
        let rest = &norm[m.start() + raw.len()..];
        if rest.trim_start().starts_with('%') {
            continue;
        }
        let Some(mut amount) = parse_number(raw) else {
            continue;
        };
        let after = rest.trim_start();
        if let Some(mult) = multiplier(after) {
            amount *= mult;
        }
        let currency = currency_near(&norm[..m.start()], rest);
        return Some(Price {
            amount,
            currency,
            text: raw.to_string(),
        });
    }
    if norm.to_lowercase().contains("free") || norm.contains("免费") {
        return Some(Price {
            amount: 0.0,
            currency: None,
            text: "free".into(),
        });
    }
    None
}

fn multiplier(after: &str) -> Option<f64> {
    let c = after.chars().next()?;
    match c {
        '万' => Some(1e4),
        '千' => Some(1e3),
        '亿' => Some(1e8),
        'k' | 'K' if !after[1..].starts_with(|c: char| c.is_alphabetic()) => Some(1e3),
        _ => None,
    }
}

/// The currency written right before or right after a number, if any.
fn currency_near(before: &str, after: &str) -> Option<String> {
    let before = before.trim_end();
    let after = after.trim_start();
    let after = after.trim_start_matches(['万', '千', '亿']);
    CURRENCIES
        .iter()
        .find(|c| after.starts_with(**c) || before.ends_with(**c))
        .map(|c| c.to_string())
}

/// Parses "1,299.00", "1.299,00", "1 030", "12,5", "129.900", ".75" into a number.
fn parse_number(raw: &str) -> Option<f64> {
    let s: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{2009}' | '\u{202f}' | '\'' | '’'))
        .collect();
    let s = s.trim_end_matches(['.', ',']).trim_start_matches(',');
    let seps: Vec<(usize, char)> = s
        .char_indices()
        .filter(|(_, c)| *c == '.' || *c == ',')
        .collect();
    let digits_after = |i: usize| s[i + 1..].chars().take_while(char::is_ascii_digit).count();
    let decimal = match seps.last() {
        None => None,
        Some(&(i, c)) => {
            let tail = digits_after(i);
            let same_kind = seps.iter().filter(|(_, d)| *d == c).count();
            let mixed = seps.iter().any(|(_, d)| *d != c);
            if mixed {
                // "1,299.00" / "1.299,00": the last kind is the decimal point.
                Some(i)
            } else if same_kind > 1 {
                // "1,234,567" / "1.234.567": grouping only.
                None
            } else if i == 0 || tail != 3 {
                Some(i)
            } else {
                // One separator followed by exactly three digits: thousands ("129.900", "1,235"),
                // unless the whole part is 0 ("0.990").
                (s[..i].trim_start_matches('0').is_empty()).then_some(i)
            }
        }
    };
    let mut clean = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if c.is_ascii_digit() {
            clean.push(c);
        } else if Some(i) == decimal {
            clean.push('.');
        }
    }
    clean.parse::<f64>().ok()
}

fn chinese_digit(c: char) -> Option<u64> {
    Some(match c {
        '零' | '〇' => 0,
        '一' => 1,
        '二' | '两' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

/// Chinese numerals: "六百九十九" = 699, "一千二" = 1200 (a trailing digit is one unit below the last
/// unit said), "两万" = 20000, "十五" = 15.
pub fn chinese_number(s: &str) -> Option<f64> {
    let mut total: u64 = 0; // finished 万/亿 sections
    let mut section: u64 = 0; // below 万
    let mut digit: Option<u64> = None;
    let mut last_unit: u64 = 0;
    let mut any = false;
    for c in s.chars() {
        if let Some(d) = chinese_digit(c) {
            digit = Some(d);
            any = true;
            continue;
        }
        let unit = match c {
            '十' => 10,
            '百' => 100,
            '千' => 1000,
            '万' => 10_000,
            '亿' => 100_000_000,
            _ => return None,
        };
        any = true;
        if unit >= 10_000 {
            section += digit.take().unwrap_or(0);
            total = (total + section.max(1)) * unit;
            section = 0;
        } else {
            section += digit.take().unwrap_or(1) * unit;
        }
        last_unit = unit;
    }
    if let Some(d) = digit {
        // "一千二" → 1200; "三万五" → 35000; plain digits after nothing → the digit.
        let scale = match last_unit {
            0 => 1,
            u if u >= 10_000 => u / 10,
            u => (u / 10).max(1),
        };
        section += d * scale;
    }
    any.then_some((total + section) as f64)
}

fn chinese_price(norm: &str) -> Option<Price> {
    let m = CHINESE_AMOUNT.find(norm)?;
    let s = m.as_str();
    let (whole, fraction) = match s.find(['元', '块']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mut amount = chinese_number(whole)?;
    // "三块五" = 3.5; "三元五角" = 3.5
    if let Some(d) = fraction.chars().find_map(chinese_digit) {
        amount += d as f64 / 10.0;
    }
    let currency = if fraction.is_empty() {
        currency_near(&norm[..m.start()], &norm[m.end()..])
    } else {
        Some(
            if fraction.starts_with('块') {
                "块"
            } else {
                "元"
            }
            .to_string(),
        )
    };
    // Bare numerals without a currency are not a price ("三个").
    currency.as_ref()?;
    Some(Price {
        amount,
        currency,
        text: s.to_string(),
    })
}

/// Price mentions in running text: numbers written with a currency sign or word next to them, and
/// Chinese numerals followed by 元/块.
pub fn find_prices(text: &str) -> Vec<Price> {
    let norm = normalise(text);
    let mut out = Vec::new();
    for m in CHINESE_AMOUNT.find_iter(&norm) {
        if let Some(p) = chinese_price(m.as_str()).or_else(|| {
            let c = currency_near(&norm[..m.start()], &norm[m.end()..])?;
            Some(Price {
                amount: chinese_number(m.as_str())?,
                currency: Some(c),
                text: m.as_str().to_string(),
            })
        }) {
            out.push(p);
        }
    }
    for m in NUMBER.find_iter(&norm) {
        let raw = m.as_str().trim_end();
        let rest = &norm[m.start() + raw.len()..];
        let Some(mut amount) = parse_number(raw) else {
            continue;
        };
        let after = rest.trim_start();
        let mult = multiplier(after);
        let Some(currency) = currency_near(&norm[..m.start()], rest) else {
            continue;
        };
        if let Some(x) = mult {
            amount *= x;
        }
        out.push(Price {
            amount,
            currency: Some(currency),
            text: raw.to_string(),
        });
    }
    out
}

/// Built-in brand aliases (alias, canonical name). The catalogue adds the shop's own.
const BRANDS: &[(&str, &str)] = &[
    ("苹果", "Apple"),
    ("apple", "Apple"),
    ("iphone", "Apple"),
    ("ipad", "Apple"),
    ("macbook", "Apple"),
    ("华为", "Huawei"),
    ("huawei", "Huawei"),
    ("荣耀", "Honor"),
    ("honor", "Honor"),
    ("小米", "Xiaomi"),
    ("xiaomi", "Xiaomi"),
    ("红米", "Xiaomi"),
    ("redmi", "Xiaomi"),
    ("三星", "Samsung"),
    ("samsung", "Samsung"),
    ("galaxy", "Samsung"),
    ("oppo", "OPPO"),
    ("vivo", "vivo"),
    ("一加", "OnePlus"),
    ("oneplus", "OnePlus"),
    ("联想", "Lenovo"),
    ("lenovo", "Lenovo"),
    ("thinkpad", "Lenovo"),
    ("戴尔", "Dell"),
    ("dell", "Dell"),
    ("惠普", "HP"),
    ("华硕", "ASUS"),
    ("asus", "ASUS"),
    ("宏碁", "Acer"),
    ("acer", "Acer"),
    ("索尼", "Sony"),
    ("sony", "Sony"),
    ("佳能", "Canon"),
    ("canon", "Canon"),
    ("尼康", "Nikon"),
    ("nikon", "Nikon"),
    ("耐克", "Nike"),
    ("nike", "Nike"),
    ("阿迪达斯", "Adidas"),
    ("adidas", "Adidas"),
    ("李宁", "Li-Ning"),
    ("安踏", "Anta"),
    ("海尔", "Haier"),
    ("美的", "Midea"),
    ("格力", "Gree"),
    ("戴森", "Dyson"),
    ("dyson", "Dyson"),
    ("飞利浦", "Philips"),
    ("philips", "Philips"),
    ("兰蔻", "Lancôme"),
    ("雅诗兰黛", "Estée Lauder"),
    ("欧莱雅", "L'Oréal"),
    ("优衣库", "Uniqlo"),
    ("uniqlo", "Uniqlo"),
];

/// Series words that start a model name, with their brand.
static MODEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?P<series>
            iphone|ipad(?:\s?(?:pro|air|mini))?|macbook(?:\s?(?:pro|air))?|apple\s?watch(?:\s?(?:series|ultra|se))?|
            airpods(?:\s?pro)?|
            mate|nova|pura|matebook(?:\s?[xde])?|p|
            小米|红米|redmi(?:\s?(?:note|k))?|xiaomi|mi|
            galaxy\s?(?:s|note|z\s?(?:fold|flip)|a)|
            thinkpad\s?[xtep]|小新|拯救者|yoga|
            find\s?x|reno|
            荣耀|honor|magic|
            一加|oneplus|
            pixel|surface\s?(?:pro|laptop)?|xps|
            playstation|ps|switch
        )
        \s?
        (?P<num>\d{1,4}[a-z]?)
        (?P<suffix>(?:\s?(?:pro\+?|max|plus|ultra|mini|se|lite|fold|flip|e|s|c|rs|\+))*)
        ",
    )
    .expect("model pattern")
});

/// Brands and model names in text, from built-in aliases and the shop's catalogue.
#[derive(Debug, Clone, Default)]
pub struct Gazetteer {
    /// (lower-cased alias, canonical brand)
    brands: Vec<(String, String)>,
    /// (lower-cased model name, canonical model, brand)
    models: Vec<(String, String, Option<String>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Entities {
    pub brands: Vec<String>,
    pub models: Vec<String>,
    pub prices: Vec<Price>,
}

impl Gazetteer {
    /// The built-in brand aliases.
    pub fn builtin() -> Self {
        let mut g = Self::default();
        for (alias, brand) in BRANDS {
            g.brands.push((alias.to_lowercase(), brand.to_string()));
        }
        g
    }

    /// Adds a catalogue entry: a brand (with itself as alias) and/or a model name.
    pub fn add(&mut self, brand: Option<&str>, model: Option<&str>) {
        if let Some(b) = brand.map(str::trim).filter(|b| !b.is_empty()) {
            let lower = b.to_lowercase();
            if !self.brands.iter().any(|(a, _)| *a == lower) {
                self.brands.push((lower, b.to_string()));
            }
        }
        if let Some(m) = model.map(str::trim).filter(|m| m.chars().count() >= 2) {
            let lower = m.to_lowercase();
            if !self.models.iter().any(|(a, _, _)| *a == lower) {
                self.models
                    .push((lower, m.to_string(), brand.map(str::to_string)));
            }
        }
    }

    /// Brands, models and prices mentioned in `text`, each once, in order of first mention.
    pub fn extract(&self, text: &str) -> Entities {
        let norm = normalise(text);
        let lower = norm.to_lowercase();
        let mut found: Vec<(usize, String)> = Vec::new();
        let mut models: Vec<(usize, String)> = Vec::new();
        for (alias, brand) in &self.brands {
            if let Some(i) = find_word(&lower, alias) {
                found.push((i, brand.clone()));
            }
        }
        for (name, canonical, brand) in &self.models {
            if let Some(i) = find_word(&lower, name) {
                models.push((i, canonical.clone()));
                if let Some(b) = brand {
                    found.push((i, b.clone()));
                }
            }
        }
        for c in MODEL.captures_iter(&norm) {
            let whole = c.get(0).map_or(0, |m| m.start());
            let series = c.name("series").map_or("", |m| m.as_str());
            // An ASCII series starts a word ("ps5", not "ups5"); the one- and two-letter ones ("P40",
            // "Mi 11") must touch their number or be followed by a space and a number only.
            let prev = norm[..whole].chars().next_back();
            if series.is_ascii() && prev.is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            let short = matches!(series.to_lowercase().as_str(), "p" | "ps");
            if short
                && c.get(0)
                    .is_some_and(|m| m.as_str()[series.len()..].starts_with(' '))
            {
                continue;
            }
            let num = c.name("num").map_or("", |m| m.as_str());
            let suffix = c.name("suffix").map_or("", |m| m.as_str().trim());
            let model = canonical_model(series, num, suffix);
            if !models.iter().any(|(_, m)| m.eq_ignore_ascii_case(&model)) {
                models.push((whole, model));
            }
        }
        found.sort();
        models.sort();
        let mut brands: Vec<String> = Vec::new();
        for (_, b) in found {
            if !brands.contains(&b) {
                brands.push(b);
            }
        }
        let mut model_names: Vec<String> = Vec::new();
        for (_, m) in models {
            if !model_names.contains(&m) {
                model_names.push(m);
            }
        }
        Entities {
            brands,
            models: model_names,
            prices: find_prices(&norm),
        }
    }
}

/// "iphone" "13" "pro max" → "iPhone 13 Pro Max"; "小米" "14" → "小米14".
fn canonical_model(series: &str, num: &str, suffix: &str) -> String {
    let series_lower = series.to_lowercase();
    let known = [
        "iPhone",
        "iPad",
        "MacBook",
        "Mate",
        "Nova",
        "Pura",
        "MateBook",
        "Redmi",
        "Galaxy",
        "ThinkPad",
        "Yoga",
        "Find",
        "Reno",
        "Magic",
        "OnePlus",
        "Pixel",
        "Surface",
        "XPS",
        "PlayStation",
        "Switch",
        "AirPods",
        "Apple",
    ];
    let mut words: Vec<String> = series
        .split_whitespace()
        .map(|w| {
            known
                .iter()
                .find(|k| k.eq_ignore_ascii_case(w))
                .map(|k| k.to_string())
                .unwrap_or_else(|| titlecase(w))
        })
        .collect();
    let cjk = series.chars().any(|c| c > '\u{2e80}');
    let num = num.to_uppercase();
    let last_letter = series_lower
        .split_whitespace()
        .next_back()
        .is_some_and(|w| w.chars().count() == 1);
    let glued = cjk || last_letter || series_lower == "ps";
    let mut s = if glued {
        format!("{}{num}", words.join(" "))
    } else {
        words.push(num);
        words.join(" ")
    };
    for w in suffix.split_whitespace() {
        s.push(' ');
        s.push_str(&titlecase(w));
    }
    s
}

fn titlecase(w: &str) -> String {
    match w.to_lowercase().as_str() {
        "se" => "SE".into(),
        "xps" => "XPS".into(),
        lower => {
            let mut c = lower.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        }
    }
}

/// Position of `needle` in `hay` where, for ASCII words, it is not inside a longer word.
fn find_word(hay: &str, needle: &str) -> Option<usize> {
    let ascii = needle.is_ascii();
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle).map(|i| i + from) {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphabetic()));
        if !ascii || (boundary(before) && boundary(after)) {
            return Some(i);
        }
        from = i + needle.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(s: &str) -> Option<f64> {
        parse_price(s).map(|p| p.amount)
    }

    #[test]
    fn prices_in_the_forms_shops_write_them() {
        assert_eq!(amount("¥699"), Some(699.0));
        assert_eq!(amount("699元"), Some(699.0));
        assert_eq!(amount("$1,299.00"), Some(1299.0));
        assert_eq!(amount("六百九十九元"), Some(699.0));
        assert_eq!(amount("1 030 р."), Some(1030.0));
        assert_eq!(amount("5,90 €"), Some(5.9));
        assert_eq!(amount("1.299,00 €"), Some(1299.0));
        assert_eq!(amount("129.900"), Some(129_900.0));
        assert_eq!(amount("0.990"), Some(0.99));
        assert_eq!(amount("$.75"), Some(0.75));
        assert_eq!(amount("1.2万"), Some(12_000.0));
        assert_eq!(amount("三块五"), Some(3.5));
        assert_eq!(amount("一千二百元"), Some(1200.0));
        assert_eq!(amount("两万元"), Some(20_000.0));
        assert_eq!(amount("50% OFF"), None);
        assert_eq!(amount("Free"), Some(0.0));
        assert_eq!(amount("no price here"), None);
        assert_eq!(
            parse_price("￥６９９").unwrap().currency.as_deref(),
            Some("¥")
        );
    }

    #[test]
    fn chinese_numerals() {
        assert_eq!(chinese_number("六百九十九"), Some(699.0));
        assert_eq!(chinese_number("十五"), Some(15.0));
        assert_eq!(chinese_number("一千二"), Some(1200.0));
        assert_eq!(chinese_number("三万五"), Some(35_000.0));
        assert_eq!(chinese_number("一万零五百"), Some(10_500.0));
        assert_eq!(chinese_number("两百"), Some(200.0));
    }

    #[test]
    fn running_text_prices_need_a_currency() {
        let p = find_prices("买了3个，每个¥99，比上次贵了二十元");
        let amounts: Vec<f64> = p.iter().map(|p| p.amount).collect();
        assert!(amounts.contains(&99.0) && amounts.contains(&20.0), "{p:?}");
        assert!(!amounts.contains(&3.0), "{p:?}");
    }

    #[test]
    fn brands_and_models_from_aliases_patterns_and_the_catalogue() {
        let mut g = Gazetteer::builtin();
        g.add(Some("洞察家居"), Some("云感床垫 S1"));
        let e = g.extract("苹果的iphone13 pro max比华为Mate 60 Pro贵，小米14也不错，买了洞察家居云感床垫 s1 花了￥2,999");
        assert_eq!(e.brands, ["Apple", "Huawei", "Xiaomi", "洞察家居"]);
        assert!(
            e.models.contains(&"iPhone 13 Pro Max".to_string()),
            "{:?}",
            e.models
        );
        assert!(
            e.models.contains(&"Mate 60 Pro".to_string()),
            "{:?}",
            e.models
        );
        assert!(e.models.contains(&"小米14".to_string()), "{:?}", e.models);
        assert!(
            e.models.contains(&"云感床垫 S1".to_string()),
            "{:?}",
            e.models
        );
        assert_eq!(e.prices.len(), 1);
        assert_eq!(e.prices[0].amount, 2999.0);
        let en = g.extract("Returned my Galaxy S24 Ultra, the iPhone 15 was $799");
        assert_eq!(en.brands, ["Samsung", "Apple"]);
        assert_eq!(en.models, ["Galaxy S24 Ultra", "iPhone 15"]);
        assert_eq!(en.prices[0].amount, 799.0);
        // "apple" inside "pineapple" is not a brand.
        assert!(g.extract("pineapple juice").brands.is_empty());
    }
}
