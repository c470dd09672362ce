//! Relative dates in questions ("上个月", "last week", "双十一期间", "最近7天", "in May") resolved in code
//! against the data's clock (the last day with sales), never by the LLM.

use chrono::{Datelike, Duration, Months, NaiveDate};
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// A closed range of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    pub fn new(from: NaiveDate, to: NaiveDate) -> Self {
        Self { from, to }
    }
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }
    /// The period of the same length just before this one (whole months stay whole months).
    pub fn previous(&self) -> Period {
        if let Some(months) = self.whole_months() {
            let from = self.from - Months::new(months);
            return Period::new(from, self.from - Duration::days(1));
        }
        let len = Duration::days(self.days());
        Period::new(self.from - len, self.to - len)
    }
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.from <= d && d <= self.to
    }
    fn whole_months(&self) -> Option<u32> {
        (self.from.day() == 1 && (self.to + Duration::days(1)).day() == 1).then(|| {
            ((self.to.year() * 12 + self.to.month() as i32)
                - (self.from.year() * 12 + self.from.month() as i32)
                + 1) as u32
        })
    }
    /// The period of the same length just after this one, ending no later than `today` ("比上个月": the
    /// month after last month, this month so far).
    pub fn next(&self, today: NaiveDate) -> Period {
        let p = match self.whole_months() {
            Some(m) => Period::new(
                self.to + Duration::days(1),
                self.to + Duration::days(1) + Months::new(m) - Duration::days(1),
            ),
            None => {
                let len = Duration::days(self.days());
                Period::new(self.from + len, self.to + len)
            }
        };
        Period::new(p.from, p.to.min(today))
    }
    /// The same days a year earlier ("同比", "year over year"); whole months stay whole months.
    pub fn year_before(&self) -> Period {
        let from = self.from - Months::new(12);
        let to = match self.whole_months() {
            Some(_) => self.to + Duration::days(1) - Months::new(12) - Duration::days(1),
            None => self.to - Months::new(12),
        };
        Period::new(from, to)
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{} – {}", self.from, self.to)
        }
    }
}

fn month_bounds(y: i32, m: u32) -> Option<Period> {
    let from = NaiveDate::from_ymd_opt(y, m, 1)?;
    let to = from.checked_add_months(Months::new(1))? - Duration::days(1);
    Some(Period::new(from, to))
}

fn quarter_bounds(y: i32, q: u32) -> Option<Period> {
    let from = NaiveDate::from_ymd_opt(y, 3 * (q - 1) + 1, 1)?;
    let to = from.checked_add_months(Months::new(3))? - Duration::days(1);
    Some(Period::new(from, to))
}

fn monday(d: NaiveDate) -> NaiveDate {
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

/// A number written with digits or Chinese numerals up to 99 ("7", "十五", "三十", "两").
pub fn small_number(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let digit = |c: char| {
        "零一二三四五六七八九"
            .chars()
            .position(|d| d == c)
            .map(|p| p as u32)
    };
    let chars: Vec<char> = s
        .chars()
        .map(|c| if c == '两' { '二' } else { c })
        .collect();
    match chars.as_slice() {
        [c] if *c == '十' => Some(10),
        [c] => digit(*c),
        ['十', u] => Some(10 + digit(*u)?),
        [t, '十'] => Some(10 * digit(*t)?),
        [t, '十', u] => Some(10 * digit(*t)? + digit(*u)?),
        _ => None,
    }
}

const EN_MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

static NUM: &str = r"(\d{1,3}|[零一二两三四五六七八九十]{1,3})";

static RE_ZH_LAST_N: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?:最近|近|过去|前)\s*{NUM}\s*(天|日|周|星期|个星期|个月|月|年)"
    ))
    .expect("regex")
});
static RE_EN_LAST_N: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:last|past|previous|recent)\s+(\d{1,3}|two|three|four|five|six|seven|ten|twelve)\s+(day|week|month|year)s?\b")
        .expect("regex")
});
static RE_ZH_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:(\d{4})\s*年\s*)?(\d{1,2}|[一二三四五六七八九十]{1,3})\s*月(?:份)?")
        .expect("regex")
});
static RE_ISO_MONTH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{4})[-/.](\d{1,2})\b").expect("regex"));
static RE_EN_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:in|during|for|of)\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?(?:\s+(\d{4}))?\b")
        .expect("regex")
});
/// A month's name anywhere ("June last year"); read only beside a year word.
static RE_EN_MONTH_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b")
        .expect("regex")
});
static RE_QUARTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:(\d{4})\s*(?:年)?\s*)?(?:\bq([1-4])\b|第([一二三四1-4])季度)")
        .expect("regex")
});

fn en_number(s: &str) -> Option<u32> {
    match s.to_ascii_lowercase().as_str() {
        "two" => Some(2),
        "three" => Some(3),
        "four" => Some(4),
        "five" => Some(5),
        "six" => Some(6),
        "seven" => Some(7),
        "ten" => Some(10),
        "twelve" => Some(12),
        d => d.parse().ok(),
    }
}

/// The latest occurrence of month/day range `(m1,d1)..(m2,d2)` that has started by `today`.
fn latest_event(today: NaiveDate, (m1, d1): (u32, u32), (m2, d2): (u32, u32)) -> Option<Period> {
    for y in [today.year(), today.year() - 1] {
        let from = NaiveDate::from_ymd_opt(y, m1, d1)?;
        if from <= today {
            return Some(Period::new(from, NaiveDate::from_ymd_opt(y, m2, d2)?));
        }
    }
    None
}

/// The period a question talks about, resolved against `today` (the data's clock), or None when it
/// names none. Periods end no later than `today`.
pub fn resolve(question: &str, today: NaiveDate) -> Option<Period> {
    // A period that starts after today ("Q4 3333", cut at today) is no period of the past.
    resolve_any(question, today).filter(|p| p.from <= p.to && p.to <= today)
}

fn resolve_any(question: &str, today: NaiveDate) -> Option<Period> {
    let q = question.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| q.contains(w));
    let clamp = |p: Period| Period::new(p.from, p.to.min(today));
    if has(&[
        "双十一",
        "双11",
        "singles' day",
        "singles day",
        "11.11",
        "double 11",
    ]) {
        return latest_event(today, (11, 1), (11, 11)).map(clamp);
    }
    if has(&["618", "六一八"]) && !has(&["6180"]) {
        return latest_event(today, (6, 1), (6, 18)).map(clamp);
    }
    if has(&["黑五", "black friday"]) {
        return latest_event(today, (11, 20), (11, 30)).map(clamp);
    }
    if has(&["双十二", "双12"]) {
        return latest_event(today, (12, 1), (12, 12)).map(clamp);
    }
    if has(&["今天", "今日", "today"]) {
        return Some(Period::new(today, today));
    }
    if has(&["昨天", "昨日", "yesterday"]) {
        let d = today - Duration::days(1);
        return Some(Period::new(d, d));
    }
    if let Some(c) = RE_ZH_LAST_N.captures(&q) {
        let n = small_number(&c[1])?.max(1);
        let days = match &c[2] {
            "天" | "日" => n as i64,
            "周" | "星期" | "个星期" => 7 * n as i64,
            "年" => {
                let from = today - Months::new(12 * n) + Duration::days(1);
                return Some(Period::new(from, today));
            }
            _ => {
                let from = today - Months::new(n) + Duration::days(1);
                return Some(Period::new(from, today));
            }
        };
        return Some(Period::new(today - Duration::days(days - 1), today));
    }
    if let Some(c) = RE_EN_LAST_N.captures(&q) {
        let n = en_number(&c[1])?.max(1);
        return Some(match &c[2] {
            "day" => Period::new(today - Duration::days(n as i64 - 1), today),
            "week" => Period::new(today - Duration::days(7 * n as i64 - 1), today),
            "year" => Period::new(today - Months::new(12 * n) + Duration::days(1), today),
            _ => Period::new(today - Months::new(n) + Duration::days(1), today),
        });
    }
    if has(&["最近一周", "近一周", "过去一周", "past week", "last 7 days"]) {
        return Some(Period::new(today - Duration::days(6), today));
    }
    if has(&[
        "最近一个月",
        "近一个月",
        "过去一个月",
        "past month",
        "recent month",
    ]) {
        return Some(Period::new(
            today - Months::new(1) + Duration::days(1),
            today,
        ));
    }
    if has(&["上上个月", "上上月", "two months ago"]) {
        let d = today - Months::new(2);
        return month_bounds(d.year(), d.month());
    }
    if has(&[
        "上个月",
        "上月",
        "last month",
        "previous month",
        "past calendar month",
    ]) {
        let d = today - Months::new(1);
        return month_bounds(d.year(), d.month());
    }
    if has(&[
        "本月",
        "这个月",
        "这月",
        "当月",
        "this month",
        "month to date",
        "so far this month",
    ]) {
        return month_bounds(today.year(), today.month()).map(clamp);
    }
    if has(&[
        "上周",
        "上个星期",
        "上星期",
        "上个礼拜",
        "上礼拜",
        "last week",
        "previous week",
    ]) {
        let m = monday(today) - Duration::days(7);
        return Some(Period::new(m, m + Duration::days(6)));
    }
    if has(&[
        "本周",
        "这周",
        "这个星期",
        "这星期",
        "这个礼拜",
        "this week",
    ]) {
        return Some(Period::new(monday(today), today));
    }
    if has(&["上季度", "上个季度", "last quarter", "previous quarter"]) {
        let q0 = (today.month() - 1) / 3;
        let (y, q) = if q0 == 0 {
            (today.year() - 1, 4)
        } else {
            (today.year(), q0)
        };
        return quarter_bounds(y, q);
    }
    if has(&["本季度", "这个季度", "这季度", "this quarter"]) {
        return quarter_bounds(today.year(), (today.month() - 1) / 3 + 1).map(clamp);
    }
    if has(&["去年", "last year", "previous year"]) {
        let y = today.year() - 1;
        // "去年6月", "June last year": that month of last year, not the whole year.
        let month = RE_ZH_MONTH
            .captures(&q)
            .and_then(|c| small_number(&c[2]))
            .or_else(|| {
                RE_EN_MONTH_WORD
                    .captures(&q)
                    .and_then(|c| EN_MONTHS.iter().position(|x| c[1].starts_with(x)))
                    .map(|i| i as u32 + 1)
            });
        if let Some(m) = month.filter(|m| (1..=12).contains(m)) {
            return month_bounds(y, m);
        }
        return Some(Period::new(
            NaiveDate::from_ymd_opt(y, 1, 1)?,
            NaiveDate::from_ymd_opt(y, 12, 31)?,
        ));
    }
    if has(&["今年", "this year", "year to date", "ytd"]) {
        return Some(Period::new(
            NaiveDate::from_ymd_opt(today.year(), 1, 1)?,
            today,
        ));
    }
    if let Some(c) = RE_QUARTER.captures(&q) {
        let qn = c
            .get(2)
            .or(c.get(3))
            .and_then(|m| small_number(m.as_str()))?;
        let y = c.get(1).and_then(|m| m.as_str().parse().ok());
        let y = y.unwrap_or(if quarter_bounds(today.year(), qn)?.from <= today {
            today.year()
        } else {
            today.year() - 1
        });
        return quarter_bounds(y, qn).map(clamp);
    }
    let month_in = |y: Option<i32>, m: u32| -> Option<Period> {
        if !(1..=12).contains(&m) {
            return None;
        }
        let y = y.unwrap_or(if m <= today.month() {
            today.year()
        } else {
            today.year() - 1
        });
        month_bounds(y, m).map(clamp)
    };
    if let Some(c) = RE_ISO_MONTH.captures(&q) {
        return month_in(c[1].parse().ok(), c[2].parse().ok()?);
    }
    if let Some(c) = RE_ZH_MONTH.captures(&q) {
        // "下个月" and "几个月" are not months of the year.
        let start = c.get(0).map(|m| m.start()).unwrap_or(0);
        let before = &q[..start];
        if !before.ends_with('个') && !before.ends_with('下') {
            return month_in(
                c.get(1).and_then(|m| m.as_str().parse().ok()),
                small_number(&c[2])?,
            );
        }
    }
    if let Some(c) = RE_EN_MONTH.captures(&q) {
        let m = EN_MONTHS.iter().position(|x| c[1].starts_with(x))? as u32 + 1;
        return month_in(c.get(2).and_then(|y| y.as_str().parse().ok()), m);
    }
    None
}

/// Words that put what follows against what precedes ("A 比 B", "A vs B", "compared with B").
const AGAINST: [&str; 17] = [
    " vs ",
    " vs. ",
    " versus ",
    " compared with ",
    " compared to ",
    " compare with ",
    " compare to ",
    " compares with ",
    " compares to ",
    " against ",
    " than ",
    "对比",
    "相比",
    "比较",
    "比起",
    "比",
    "对照",
];
/// Words that join two periods without putting one against the other.
const JOIN: [&str; 10] = [
    " and ", " with ", " or ", "和", "与", "跟", "、", ",", "，", "还是",
];
const YEAR_BEFORE: [&str; 8] = [
    "同比",
    "去年同期",
    "year over year",
    "year-over-year",
    "yoy",
    "same period last year",
    "same month last year",
    "a year earlier",
];
const PERIOD_BEFORE: [&str; 10] = [
    "环比",
    "month over month",
    "month-over-month",
    "week over week",
    "the month before",
    "the week before",
    "the quarter before",
    "the previous period",
    "前一个月",
    "上一期",
];

/// Words that, in a follow-up, name the period just before the one answered ("and the month before?",
/// "那再往前一个月呢？") rather than a period of their own.
const BEFORE_THAT: [&str; 16] = [
    "the month before",
    "the week before",
    "the quarter before",
    "the year before",
    "the day before",
    "the period before",
    "the previous period",
    "the one before",
    "before that",
    "前一个月",
    "前一周",
    "前一期",
    "上一期",
    "再往前",
    "再之前",
    "之前那个月",
];

/// Whether a follow-up asks for the period before the one just answered ([`BEFORE_THAT`]) and names
/// no period besides ("前一个月" alone would otherwise read as "the past month").
pub fn names_period_before(question: &str, today: NaiveDate) -> bool {
    let mut q = question.to_lowercase();
    let before = BEFORE_THAT.iter().any(|w| q.contains(w));
    for w in BEFORE_THAT {
        q = q.replace(w, " ");
    }
    before && resolve(&q, today).is_none()
}

const EN_MONTH_NAMES: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A month named at either edge of a compared part ("May vs April", "how did June compare to May"):
/// bare month names are read only here, where a comparison word stands next to them.
fn bare_month(part: &str, today: NaiveDate) -> Option<Period> {
    let mut words = part
        .trim()
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty());
    let first = words.next()?;
    let last = words.next_back().unwrap_or(first);
    let m = EN_MONTH_NAMES
        .iter()
        .position(|n| *n == first)
        .or_else(|| EN_MONTH_NAMES.iter().position(|n| *n == last))? as u32
        + 1;
    let y = if m <= today.month() {
        today.year()
    } else {
        today.year() - 1
    };
    month_bounds(y, m).map(|p| Period::new(p.from, p.to.min(today)))
}

/// The periods a question compares, in the order it names them (the first is the one compared), or
/// empty when it compares none: two named periods ("this month vs last month", "今年和去年"), one
/// period and a comparison word ("同比" → the same days a year earlier, "环比" / "the month before" →
/// the period before, "比上个月" → this month against last month).
pub fn periods(question: &str, today: NaiveDate) -> Vec<Period> {
    let mut q = question.to_lowercase();
    // Shares are not comparisons ("差评比例").
    for w in ["比例", "比率", "占比", "比重"] {
        q = q.replace(w, "份额");
    }
    let has = |words: &[&str]| words.iter().any(|w| q.contains(w));
    // The question cut at every comparison or joining word; each piece resolved on its own.
    let mut pieces: Vec<(String, bool)> = vec![(q.clone(), false)];
    for (words, against) in [(&AGAINST[..], true), (&JOIN[..], false)] {
        for w in words {
            pieces = pieces
                .into_iter()
                .flat_map(|(p, after)| {
                    let mut out = Vec::new();
                    for (i, x) in p.split(w).enumerate() {
                        out.push((x.to_string(), if i == 0 { after } else { against }));
                    }
                    out
                })
                .collect();
        }
    }
    let mut found: Vec<(Period, bool)> = Vec::new();
    let joined = pieces.len() > 1;
    for (piece, after_against) in &pieces {
        let p =
            resolve(piece, today).or_else(|| joined.then(|| bare_month(piece, today)).flatten());
        if let Some(p) = p
            && !found.iter().any(|(x, _)| *x == p)
        {
            // "比上个月": the period right after the comparison word, not "more than 100 orders last month".
            let head: String = piece.trim_start().chars().take(10).collect();
            let against_it = *after_against && resolve(&head, today).is_some();
            found.push((p, against_it));
        }
    }
    match found.as_slice() {
        [] if has(&PERIOD_BEFORE) => {
            let this = month_bounds(today.year(), today.month())
                .map(|p| Period::new(p.from, p.to.min(today)));
            this.map(|p| vec![p, p.previous()]).unwrap_or_default()
        }
        [(p, after)] => {
            if has(&YEAR_BEFORE) {
                vec![*p, p.year_before()]
            } else if has(&PERIOD_BEFORE) {
                vec![*p, p.previous()]
            } else if *after {
                // "比今天": nothing after today to compare with it.
                let next = p.next(today);
                if next.from > today {
                    Vec::new()
                } else {
                    vec![next, *p]
                }
            } else {
                Vec::new()
            }
        }
        [] => Vec::new(),
        more => more.iter().map(|(p, _)| *p).collect(),
    }
}

static RE_ZH_NEXT_N: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?:未来|接下来|之后|后)\s*{NUM}\s*(天|日|周|个星期|个月|月)"
    ))
    .expect("regex")
});
static RE_EN_NEXT_N: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:next|coming|following)\s+(\d{1,3}|two|three|four|five|six|seven|ten|twelve)\s+(day|week|month)s?\b")
        .expect("regex")
});

/// Words that ask about what is still to come without naming a horizon ("能到多少", "will we reach").
const FUTURE_CUES: [&str; 16] = [
    "能到多少",
    "能卖到",
    "能卖多少",
    "会卖多少",
    "能达到",
    "大概能",
    "预估",
    "预计",
    "预测",
    "will ",
    "going to",
    "expect",
    "outlook",
    "project ",
    "forecast",
    "predict",
];

/// "能 … 多少" ("八月份营收能有多少", "能做多少"): what can be reached, a question of the future.
static RE_CAN_REACH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"能[^，,。？?！!]{0,3}多少").expect("regex"));

/// A year written out ("2025", "2025年").
static RE_YEAR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:19|20)\d{2}").expect("regex"));

/// Words that place a period in the past whatever the rest says.
const PAST_WORDS: [&str; 14] = [
    "上个",
    "上月",
    "上周",
    "上季度",
    "去年",
    "前年",
    "昨",
    "以前",
    "last ",
    "ago",
    "previous",
    "past ",
    "so far",
    "已经",
];

/// When `question` asks about the future ([`FUTURE_CUES`]) of a period `p` that has gone by but was
/// named without a year or a past word (a bare "7月份", "双十一"), the days from `today` to the end of the
/// same period a year later, if that one is still to come.
pub fn next_occurrence_days(question: &str, p: &Period, today: NaiveDate) -> Option<u32> {
    let q = question.to_lowercase();
    if p.to >= today
        || !(FUTURE_CUES.iter().any(|w| q.contains(w)) || RE_CAN_REACH.is_match(&q))
        || PAST_WORDS.iter().any(|w| q.contains(w))
        || RE_YEAR.is_match(&q)
    {
        return None;
    }
    let next_to = p.to.checked_add_months(Months::new(12))?;
    let next_from = p.from.checked_add_months(Months::new(12))?;
    (next_from > today).then(|| (next_to - today).num_days() as u32)
}

/// How many days ahead a forecast question asks for ("下个月", "next 2 weeks", "未来七天"), from the day
/// after `today`; None when it does not say.
pub fn horizon_days(question: &str, today: NaiveDate) -> Option<u32> {
    let q = question.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| q.contains(w));
    if let Some(c) = RE_ZH_NEXT_N.captures(&q) {
        let n = small_number(&c[1])?.max(1);
        return Some(match &c[2] {
            "天" | "日" => n,
            "周" | "个星期" => 7 * n,
            _ => 30 * n,
        });
    }
    if let Some(c) = RE_EN_NEXT_N.captures(&q) {
        let n = en_number(&c[1])?.max(1);
        return Some(match &c[2] {
            "day" => n,
            "week" => 7 * n,
            _ => 30 * n,
        });
    }
    if has(&["下个月", "下月", "next month", "coming month"]) {
        let next = today.checked_add_months(Months::new(1))?;
        let p = month_bounds(next.year(), next.month())?;
        return Some((p.to - today).num_days() as u32);
    }
    if has(&["下周", "下个星期", "下星期", "next week", "coming week"]) {
        return Some(7);
    }
    if has(&[
        "下季度",
        "下个季度",
        "next quarter",
        "未来三个月",
        "next three months",
    ]) {
        return Some(91);
    }
    if has(&["明年", "next year"]) {
        return Some(365);
    }
    if has(&["明天", "tomorrow"]) {
        return Some(1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn p(a: &str, b: &str) -> Option<Period> {
        Some(Period::new(d(a), d(b)))
    }

    #[test]
    fn relative_periods_against_the_data_clock() {
        let today = d("2026-06-30");
        assert_eq!(
            resolve("上个月的销售额是多少？", today),
            p("2026-05-01", "2026-05-31")
        );
        assert_eq!(
            resolve("Sales last month?", today),
            p("2026-05-01", "2026-05-31")
        );
        assert_eq!(resolve("本月销量", today), p("2026-06-01", "2026-06-30"));
        // 2026-06-30 is a Tuesday: last week is Mon 06-22 .. Sun 06-28.
        assert_eq!(resolve("上周的差评", today), p("2026-06-22", "2026-06-28"));
        assert_eq!(resolve("this week", today), p("2026-06-29", "2026-06-30"));
        assert_eq!(resolve("最近7天", today), p("2026-06-24", "2026-06-30"));
        assert_eq!(
            resolve("近三个月的情况", today),
            p("2026-03-31", "2026-06-30")
        );
        assert_eq!(
            resolve("revenue in the past 2 weeks", today),
            p("2026-06-17", "2026-06-30")
        );
        // Singles' Day has not come yet this year: the last one.
        assert_eq!(
            resolve("双十一期间卖得怎么样", today),
            p("2025-11-01", "2025-11-11")
        );
        assert_eq!(
            resolve("618大促的销售额", today),
            p("2026-06-01", "2026-06-18")
        );
        assert_eq!(resolve("5月份", today), p("2026-05-01", "2026-05-31"));
        assert_eq!(
            resolve("十二月的评价", today),
            p("2025-12-01", "2025-12-31")
        );
        assert_eq!(
            resolve("sales in March 2025", today),
            p("2025-03-01", "2025-03-31")
        );
        assert_eq!(
            resolve("2026-02 revenue", today),
            p("2026-02-01", "2026-02-28")
        );
        assert_eq!(resolve("去年", today), p("2025-01-01", "2025-12-31"));
        // A month of last year is that month, not the year.
        assert_eq!(
            resolve("去年6月卖了多少", today),
            p("2025-06-01", "2025-06-30")
        );
        assert_eq!(
            resolve("sales in June last year", today),
            p("2025-06-01", "2025-06-30")
        );
        assert_eq!(resolve("Q1 sales", today), p("2026-01-01", "2026-03-31"));
        assert_eq!(resolve("上季度", today), p("2026-01-01", "2026-03-31"));
        assert_eq!(resolve("哪些客户要流失", today), None);
        assert_eq!(resolve("下个月的销量预测", today), None);
    }

    #[test]
    fn before_that_in_a_follow_up_names_no_period_of_its_own() {
        let today = d("2026-06-30");
        for q in [
            "and the month before?",
            "what about the week before?",
            "那前一个月呢？",
            "那再往前一个月呢？",
        ] {
            assert!(names_period_before(q, today), "{q}");
        }
        for q in [
            "and last month?",
            "那上个月呢？",
            "那前一个月和去年同期呢？",
            "前3个月的销售额",
        ] {
            assert!(!names_period_before(q, today), "{q}");
        }
    }

    #[test]
    fn previous_period_keeps_whole_months() {
        let m = Period::new(d("2026-05-01"), d("2026-05-31"));
        assert_eq!(m.previous(), Period::new(d("2026-04-01"), d("2026-04-30")));
        let w = Period::new(d("2026-06-24"), d("2026-06-30"));
        assert_eq!(w.previous(), Period::new(d("2026-06-17"), d("2026-06-23")));
    }

    #[test]
    fn compared_periods_in_the_order_asked() {
        let today = d("2026-06-30");
        let may = Period::new(d("2026-05-01"), d("2026-05-31"));
        let june = Period::new(d("2026-06-01"), d("2026-06-30"));
        let april = Period::new(d("2026-04-01"), d("2026-04-30"));
        assert_eq!(periods("本月和上个月的销售额", today), vec![june, may]);
        assert_eq!(periods("比上个月多卖了多少", today), vec![june, may]);
        assert_eq!(periods("本月环比", today), vec![june, may]);
        assert_eq!(
            periods("sales last month year over year", today),
            vec![may, Period::new(d("2025-05-01"), d("2025-05-31"))]
        );
        assert_eq!(periods("April vs March", today).len(), 2);
        // The month next to the comparison word, at the end of the part before it.
        assert_eq!(
            periods("how did June compare to May in orders", today),
            vec![june, may]
        );
        assert_eq!(
            periods("last month against the month before", today),
            vec![may, april]
        );
        // One period and no comparison: nothing compared.
        assert!(periods("上个月的订单数和客单价", today).is_empty());
        assert!(periods("sales last month", today).is_empty());
        assert!(periods("laptops and books last quarter", today).is_empty());
        assert!(periods("may I see the sales", today).is_empty());
        assert!(periods("差评比例上个月是多少", today).is_empty());
        assert!(periods("more than 100 orders last month?", today).is_empty());
        assert!(periods("上个月的销售额，同时看看差评", today).is_empty());
        let y = Period::new(d("2025-01-01"), d("2025-12-31"));
        assert_eq!(y.next(today), Period::new(d("2026-01-01"), d("2026-06-30")));
    }

    #[test]
    fn forecast_horizons() {
        let today = d("2026-06-30");
        assert_eq!(horizon_days("预测下个月的销量", today), Some(31));
        assert_eq!(horizon_days("forecast the next 2 weeks", today), Some(14));
        assert_eq!(horizon_days("未来七天", today), Some(7));
        assert_eq!(horizon_days("forecast sales", today), None);
        assert_eq!(small_number("三十"), Some(30));
        assert_eq!(small_number("十五"), Some(15));
        assert_eq!(small_number("两"), Some(2));
    }
}
