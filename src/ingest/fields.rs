//! The record shape of the product brief, field by field, and the validation that turns loosely typed
//! values (JSON values, CSV cells) into a [`ShopRecord`] or one clear error naming the field.
//!
//! Brief fields: userId, purchaseDate, productName, price, reviewText, reviewRating, socialMediaId,
//! socialMediaType, socialMediaText. Extensions (all optional): quantity, reviewDate, socialMediaDate,
//! searchQuery, searchDate. Any field but userId may be missing; an empty string counts as missing.

use std::borrow::Cow;

use chrono::{Datelike, NaiveDate};

use crate::nlp::text;
use crate::store::{ProductRef, Purchase, ReviewPart, SearchPart, ShopRecord, SocialPart};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    UserId,
    PurchaseDate,
    ProductName,
    Price,
    Quantity,
    ReviewText,
    ReviewRating,
    ReviewDate,
    SocialMediaId,
    SocialMediaType,
    SocialMediaText,
    SocialMediaDate,
    SearchQuery,
    SearchDate,
}

pub const FIELD_COUNT: usize = 14;

impl Field {
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::UserId,
        Field::PurchaseDate,
        Field::ProductName,
        Field::Price,
        Field::Quantity,
        Field::ReviewText,
        Field::ReviewRating,
        Field::ReviewDate,
        Field::SocialMediaId,
        Field::SocialMediaType,
        Field::SocialMediaText,
        Field::SocialMediaDate,
        Field::SearchQuery,
        Field::SearchDate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::UserId => "userId",
            Field::PurchaseDate => "purchaseDate",
            Field::ProductName => "productName",
            Field::Price => "price",
            Field::Quantity => "quantity",
            Field::ReviewText => "reviewText",
            Field::ReviewRating => "reviewRating",
            Field::ReviewDate => "reviewDate",
            Field::SocialMediaId => "socialMediaId",
            Field::SocialMediaType => "socialMediaType",
            Field::SocialMediaText => "socialMediaText",
            Field::SocialMediaDate => "socialMediaDate",
            Field::SearchQuery => "searchQuery",
            Field::SearchDate => "searchDate",
        }
    }

    /// Exact names first; CSV headers may also differ in case or use snake_case (`user_id`).
    pub fn from_name(name: &str) -> Option<Field> {
        if let Some(f) = Field::ALL.iter().find(|f| f.name() == name) {
            return Some(*f);
        }
        let squash = |s: &str| {
            s.chars()
                .filter(|c| *c != '_' && *c != '-')
                .collect::<String>()
                .to_lowercase()
        };
        let n = squash(name.trim());
        Field::ALL.iter().find(|f| squash(f.name()) == n).copied()
    }
}

/// A value as the source gave it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    /// A JSON number, as written.
    Num(&'a str),
    Bool(bool),
    Array,
    Object,
}

impl Value<'_> {
    fn kind(&self) -> String {
        match self {
            Value::Str(s) => format!("a string {:?}", ellipsize(s, 40)),
            Value::Num(n) => format!("a number {n}"),
            Value::Bool(b) => format!("a boolean {b}"),
            Value::Array => "an array".into(),
            Value::Object => "an object".into(),
        }
    }
}

fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// One field's values for one record, indexed by [`Field`].
pub type RawFields<'a> = [Option<Value<'a>>; FIELD_COUNT];

/// Why a line was not stored: the field at fault (or `(line)`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
    fn at(field: Field, reason: impl Into<String>) -> Self {
        Self::new(field.name(), reason)
    }
}

/// Plausibility limits for dates.
#[derive(Debug, Clone, Copy)]
pub struct DateRules {
    pub min_year: i32,
    pub latest: NaiveDate,
}

impl DateRules {
    pub fn from_config(cfg: &crate::config::IngestConfig) -> Self {
        let today = chrono::Local::now().date_naive();
        Self {
            min_year: cfg.min_year,
            latest: today + chrono::Duration::days(cfg.max_future_days),
        }
    }

    pub fn check(&self, d: NaiveDate) -> Result<NaiveDate, String> {
        if d.year() < self.min_year {
            Err(format!("impossible date {d}: before {}", self.min_year))
        } else if d > self.latest {
            Err(format!("impossible date {d}: in the future"))
        } else {
            Ok(d)
        }
    }
}

/// Parses the date forms seen in shop exports: `2023-05-01`, `2023/5/1`, `2023.05.01`, `20230501`, and
/// date-times (`2023-05-01T10:00:00Z`, `2023-05-01 10:00`), whose date part is taken as written.
pub fn parse_date(s: &str, rules: &DateRules) -> Result<NaiveDate, String> {
    let s = s.trim();
    let date_part = s.split(['T', ' ']).next().unwrap_or(s);
    let nums: Vec<&str> = if date_part.len() == 8 && date_part.bytes().all(|b| b.is_ascii_digit()) {
        vec![&date_part[..4], &date_part[4..6], &date_part[6..]]
    } else {
        date_part.split(['-', '/', '.']).collect()
    };
    let parsed: Option<(i32, u32, u32)> = match nums.as_slice() {
        [y, m, d]
            if y.len() == 4
                && (1..=2).contains(&m.len())
                && (1..=2).contains(&d.len())
                && [y, m, d]
                    .iter()
                    .all(|p| p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            match (y.parse(), m.parse(), d.parse()) {
                (Ok(y), Ok(m), Ok(d)) => Some((y, m, d)),
                _ => None,
            }
        }
        _ => None,
    };
    let Some((y, m, d)) = parsed else {
        return Err(format!(
            "unrecognised date {:?} (expected YYYY-MM-DD)",
            ellipsize(s, 40)
        ));
    };
    let date = NaiveDate::from_ymd_opt(y, m, d)
        .ok_or_else(|| format!("impossible date {:?}", ellipsize(s, 40)))?;
    rules.check(date)
}

/// Parses an amount of money into cents: `699`, `699.5`, `"1,299.00"`, `"¥699"`, `"$1,299"`, `"699元"`.
/// Rounds half away from zero past two decimals.
pub fn parse_money(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let t = t
        .trim_start_matches(['¥', '￥', '$', '€', '£'])
        .trim_start_matches("RMB")
        .trim_start_matches("CNY")
        .trim_start_matches("USD")
        .trim_end_matches(['元', '块'])
        .trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let cleaned: String = t.chars().filter(|c| *c != ',').collect();
    let bad = || format!("expected a number, found {:?}", ellipsize(s, 40));
    // Thousands separators must group by three.
    if t.contains(',') {
        let int_part = t.split('.').next().unwrap_or("");
        let groups: Vec<&str> = int_part.split(',').collect();
        if groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3) {
            return Err(bad());
        }
    }
    let cents = if cleaned.contains(['e', 'E']) {
        let f: f64 = cleaned.parse().map_err(|_| bad())?;
        // The same bound as written out: under 10^12 (twelve integer digits).
        if !f.is_finite() || f.abs() >= 1e12 {
            return Err(bad());
        }
        (f * 100.0).round() as i64
    } else {
        let (int, frac) = match cleaned.split_once('.') {
            Some((i, f)) => (i, f),
            None => (cleaned.as_str(), ""),
        };
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || int.len() > 12
        {
            return Err(bad());
        }
        let whole: i64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut frac_digits = frac.bytes().map(|b| i64::from(b - b'0'));
        let tenths = frac_digits.next().unwrap_or(0);
        let hundredths = frac_digits.next().unwrap_or(0);
        let round_up = frac_digits.next().is_some_and(|d| d >= 5);
        whole * 100 + tenths * 10 + hundredths + i64::from(round_up)
    };
    Ok(if neg { -cents } else { cents })
}

fn text<'a>(
    fields: &'a RawFields<'_>,
    f: Field,
    allow_integer: bool,
) -> Result<Option<&'a str>, FieldError> {
    match &fields[f as usize] {
        None => Ok(None),
        Some(Value::Str(s)) => {
            let t = s.trim();
            Ok((!t.is_empty()).then_some(t))
        }
        Some(Value::Num(n))
            if allow_integer && n.bytes().all(|b| b.is_ascii_digit() || b == b'-') =>
        {
            Ok(Some(n))
        }
        Some(other) => Err(FieldError::at(
            f,
            format!("expected a string, found {}", other.kind()),
        )),
    }
}

fn number_text<'a>(fields: &'a RawFields<'_>, f: Field) -> Result<Option<&'a str>, FieldError> {
    match &fields[f as usize] {
        None => Ok(None),
        Some(Value::Num(n)) => Ok(Some(n)),
        Some(Value::Str(s)) => {
            let t = s.trim();
            Ok((!t.is_empty()).then_some(t))
        }
        Some(other) => Err(FieldError::at(
            f,
            format!("expected a number, found {}", other.kind()),
        )),
    }
}

fn date(
    fields: &RawFields<'_>,
    f: Field,
    rules: &DateRules,
) -> Result<Option<NaiveDate>, FieldError> {
    let raw = match &fields[f as usize] {
        None => return Ok(None),
        Some(Value::Str(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::Str(s)) => s.as_ref(),
        Some(Value::Num(n)) => n,
        Some(other) => {
            return Err(FieldError::at(
                f,
                format!("expected a date, found {}", other.kind()),
            ));
        }
    };
    parse_date(raw, rules)
        .map(Some)
        .map_err(|e| FieldError::at(f, e))
}

fn cleaned(raw: &str) -> (String, &'static str) {
    (text::clean(raw), text::detect_lang(raw).as_str())
}

/// Validates one record's fields and builds the record.
pub fn build_record(fields: &RawFields<'_>, rules: &DateRules) -> Result<ShopRecord, FieldError> {
    let customer_id = text(fields, Field::UserId, true)?
        .ok_or_else(|| FieldError::at(Field::UserId, "missing"))?;
    if customer_id.chars().count() > 256 {
        return Err(FieldError::at(Field::UserId, "longer than 256 characters"));
    }

    let product = text(fields, Field::ProductName, true)?.map(ProductRef::from_name);

    let price = match number_text(fields, Field::Price)? {
        None => None,
        Some(p) => {
            let cents = parse_money(p).map_err(|e| FieldError::at(Field::Price, e))?;
            if cents < 0 {
                return Err(FieldError::at(Field::Price, format!("negative price {p}")));
            }
            if cents > 100_000_000_000 {
                return Err(FieldError::at(
                    Field::Price,
                    format!("implausibly large price {p}"),
                ));
            }
            Some(cents)
        }
    };
    let quantity = match number_text(fields, Field::Quantity)? {
        None => None,
        Some(q) => match q.parse::<u32>() {
            Ok(0) => return Err(FieldError::at(Field::Quantity, "must be at least 1")),
            Ok(n) if n <= 1_000_000 => Some(n),
            _ => {
                return Err(FieldError::at(
                    Field::Quantity,
                    format!("expected a whole number 1..1000000, found {q:?}"),
                ));
            }
        },
    };
    let purchase = match date(fields, Field::PurchaseDate, rules)? {
        Some(d) => Some(Purchase {
            date: d,
            quantity: quantity.unwrap_or(1),
            amount_cents: price,
        }),
        None if price.is_some() || quantity.is_some() => {
            return Err(FieldError::at(
                Field::PurchaseDate,
                "missing: a price or quantity needs a purchase date",
            ));
        }
        None => None,
    };

    let rating = match number_text(fields, Field::ReviewRating)? {
        None => None,
        Some(r) => {
            let v: f64 = r.parse().map_err(|_| {
                FieldError::at(
                    Field::ReviewRating,
                    format!("expected a number, found {r:?}"),
                )
            })?;
            if !(0.0..=5.0).contains(&v) {
                return Err(FieldError::at(
                    Field::ReviewRating,
                    format!("rating {r} is outside 0–5"),
                ));
            }
            Some(v)
        }
    };
    let review_text = text(fields, Field::ReviewText, false)?;
    let review_date = date(fields, Field::ReviewDate, rules)?;
    let review = (review_text.is_some() || rating.is_some()).then(|| {
        let raw = review_text.unwrap_or_default();
        let (text_clean, lang) = cleaned(raw);
        ReviewPart {
            date: review_date,
            rating,
            text_raw: raw.to_string(),
            text_clean,
            lang,
        }
    });

    let post_id = text(fields, Field::SocialMediaId, true)?;
    let platform = text(fields, Field::SocialMediaType, false)?;
    let post_text = text(fields, Field::SocialMediaText, false)?;
    let post_date = date(fields, Field::SocialMediaDate, rules)?;
    let social = (post_id.is_some() || post_text.is_some()).then(|| {
        let raw = post_text.unwrap_or_default();
        let (text_clean, lang) = cleaned(raw);
        SocialPart {
            platform: platform
                .map(|p| p.to_lowercase())
                .unwrap_or_else(|| "unknown".into()),
            post_id: post_id.map(str::to_string),
            date: post_date,
            text_raw: raw.to_string(),
            text_clean,
            lang,
        }
    });

    let query = text(fields, Field::SearchQuery, true)?;
    let search_date = date(fields, Field::SearchDate, rules)?;
    let search = query.map(|q| SearchPart {
        date: search_date,
        query_raw: q.to_string(),
        query_clean: text::clean(q),
    });

    Ok(ShopRecord {
        customer_id: customer_id.to_string(),
        product,
        purchase,
        review,
        social,
        search,
    })
}

/// Fixed rules for tests: 1990 to 2026-11-30.
#[cfg(test)]
pub(crate) fn test_rules() -> DateRules {
    DateRules {
        min_year: 1990,
        latest: NaiveDate::from_ymd_opt(2026, 11, 30).expect("valid date"),
    }
}

#[cfg(test)]
mod tests {
    use super::test_rules as rules;
    use super::*;

    #[test]
    fn dates() {
        let ok = [
            ("2023-05-01", "2023-05-01"),
            ("2023/5/1", "2023-05-01"),
            ("2023.05.01", "2023-05-01"),
            ("20230501", "2023-05-01"),
            ("2023-05-01T23:10:00+08:00", "2023-05-01"),
            ("2023-05-01 08:00", "2023-05-01"),
        ];
        for (s, want) in ok {
            assert_eq!(parse_date(s, &rules()).unwrap().to_string(), want, "{s}");
        }
        let bad = [
            ("2023-02-30", "impossible date"),
            ("2023-13-01", "impossible date"),
            ("1899-01-01", "before 1990"),
            ("2031-01-01", "in the future"),
            ("yesterday", "unrecognised date"),
            ("01/05/2023", "unrecognised date"),
        ];
        for (s, want) in bad {
            let e = parse_date(s, &rules()).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn money() {
        let ok = [
            ("699", 69_900),
            ("699.5", 69_950),
            ("1,299.00", 129_900),
            ("¥699", 69_900),
            ("$1,299", 129_900),
            ("699元", 69_900),
            ("0.125", 13),
            ("6.99e2", 69_900),
            ("-5", -500),
            (".5", 50),
        ];
        for (s, want) in ok {
            assert_eq!(parse_money(s), Ok(want), "{s}");
        }
        for s in ["abc", "12,34", "1.2.3", "", "NaN", "1e400"] {
            assert!(parse_money(s).is_err(), "{s} should fail");
        }
    }

    #[test]
    fn field_names_accept_case_and_snake_variants() {
        assert_eq!(Field::from_name("userId"), Some(Field::UserId));
        assert_eq!(Field::from_name("user_id"), Some(Field::UserId));
        assert_eq!(Field::from_name("REVIEWRATING"), Some(Field::ReviewRating));
        assert_eq!(Field::from_name("colour"), None);
    }
}
