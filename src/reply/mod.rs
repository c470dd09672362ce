//! A reply is data: text, an optional table, an optional chart, the review ids it cites, a clarifying
//! question. Built once from the agent's answer (every figure comes from the tool's output) and rendered
//! per front end: the terminal prints `text`, Telegram gets escaped HTML in pieces under its limit
//! ([`telegram_html`]), the web page and the HTTP API get JSON ([`Reply`] serialises).

pub mod chart;

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::agent::Answer;

/// Rows of a table kept in a reply (the full result is in the JSON).
pub const MAX_TABLE_ROWS: usize = 20;

/// Telegram's limit on one message, in characters.
pub const TELEGRAM_LIMIT: usize = 4096;

/// Telegram's limit on a photo's caption, in characters.
pub const CAPTION_LIMIT: usize = 1024;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A rendered chart: PNG bytes, served by id.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub id: String,
    pub title: String,
    #[serde(skip)]
    pub png: Arc<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub text: String,
    pub zh: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<Table>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<Chart>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cited_reviews: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clarify: Option<String>,
}

impl Reply {
    /// A reply that is only words (refusals, help, errors).
    pub fn text(text: impl Into<String>, zh: bool) -> Self {
        Self {
            text: text.into(),
            zh,
            table: None,
            chart: None,
            cited_reviews: Vec::new(),
            clarify: None,
        }
    }

    /// The structured reply of an answer: its text, a table of the result's first list of records, the
    /// review ids the result cites, and a chart where the tool has one (`font`: see [`chart::Font`]).
    pub fn from_answer(a: &Answer, font: Option<&chart::Font>) -> Self {
        let chart = font.and_then(|f| chart::for_result(&a.tool, &a.result, a.route.zh, f));
        Self {
            text: a.reply.clone(),
            zh: a.route.zh,
            table: table_of(&a.result, a.route.zh),
            chart,
            cited_reviews: cited_reviews(&a.result),
            clarify: a.route.clarify.clone(),
        }
    }
}

/// The first array of objects in a tool's output, as a table of its scalar fields, headed and with
/// dongcha's own words (segment names, incentives) in the reply's language ([`crate::terms`]).
pub fn table_of(result: &Value, zh: bool) -> Option<Table> {
    let obj = result.as_object()?;
    // A question in parts: each part's reply carries its own lists; no one table stands for them.
    if obj.get("plan").is_some_and(|p| p == "parts") {
        return None;
    }
    let rows = obj.iter().find_map(|(k, v)| {
        let a = v.as_array()?;
        // Per-day forecast steps and chart series are long: the chart shows them, not a table.
        (k != "daily" && k != "recent" && !a.is_empty() && a.iter().all(Value::is_object))
            .then_some(a)
    })?;
    let first = rows[0].as_object()?;
    let mut fields: Vec<&String> = first
        .iter()
        .filter(|(_, v)| is_scalar(v))
        .map(|(k, _)| k)
        .collect();
    // A comparison's rows say first what each is about.
    fields.sort_by_key(|f| f.as_str() != "label");
    if fields.is_empty() {
        return None;
    }
    let rows = rows
        .iter()
        .take(MAX_TABLE_ROWS)
        .filter_map(Value::as_object)
        .map(|r| {
            fields
                .iter()
                .map(|c| crate::terms::term(&cell(r.get(*c)), zh))
                .collect()
        })
        .collect();
    let columns = fields.iter().map(|f| crate::terms::column(f, zh)).collect();
    Some(Table { columns, rows })
}

fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null
    )
}

fn cell(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(Value::Number(n)) => number(n),
        Some(v) => v.to_string(),
    }
}

/// A table's number as a person reads it: whole numbers as they are, others to two decimals with
/// thousands separated as the reply's text writes money (sales, ratios above one: `render::money`) or,
/// below one, to three significant digits (shares, small effects) — never the float's seventeen digits.
fn number(n: &serde_json::Number) -> String {
    let Some(x) = n.as_f64().filter(|_| n.is_f64()) else {
        return n.to_string();
    };
    if !x.is_finite() || x.fract() == 0.0 {
        return format!("{x:.0}");
    }
    if x.abs() >= 1.0 {
        return crate::tools::render::money(x);
    }
    let decimals = (2 - x.abs().log10().floor() as i32).clamp(2, 12) as usize;
    format!("{x:.decimals$}")
}

/// Review ids anywhere in the output (fields named `review_id`, or `id` inside a `reviews` list).
pub fn cited_reviews(result: &Value) -> Vec<i64> {
    fn walk(v: &Value, in_reviews: bool, out: &mut Vec<i64>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if (k == "review_id" || (in_reviews && k == "id"))
                        && let Some(id) = x.as_i64()
                    {
                        out.push(id);
                    } else {
                        walk(x, k == "reviews" || k == "examples", out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, in_reviews, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(result, false, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

/// `<`, `>` and `&` escaped for Telegram's HTML parse mode.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// The reply as Telegram HTML messages, each under [`TELEGRAM_LIMIT`] characters (split at line ends
/// where possible, never inside an entity or a tag), with cited review ids at the end.
pub fn telegram_html(r: &Reply) -> Vec<String> {
    let mut text = r.text.clone();
    if !r.cited_reviews.is_empty() {
        let ids: Vec<String> = r.cited_reviews.iter().map(|i| format!("#{i}")).collect();
        text.push_str(if r.zh {
            "\n\n引用评论："
        } else {
            "\n\nReviews cited: "
        });
        text.push_str(&ids.join(" "));
    }
    // Split the plain text first (by characters, counting what escaping adds), then escape each piece.
    let width = |c| match c {
        '<' | '>' => 4,
        '&' => 5,
        _ => 1,
    };
    split_text(&text, TELEGRAM_LIMIT - 16, width)
        .into_iter()
        .map(|p| escape_html(&p))
        .collect()
}

/// `text` in pieces of at most `budget` (counting each character as `width` says), broken at line ends
/// where the next line would not fit whole; pieces are trimmed at the end and never blank.
fn split_text(text: &str, budget: usize, width: impl Fn(char) -> usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    for line in text.split_inclusive('\n') {
        for c in line.chars() {
            let w = width(c);
            if cur_len + w > budget {
                pieces.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            cur.push(c);
            cur_len += w;
        }
        // Prefer to break at a line end when the next line would not fit whole.
        if cur_len > budget * 3 / 4 {
            pieces.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
    }
    pieces.push(cur);
    pieces
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim_end().to_string())
        .collect()
}

/// Discord's limits, in characters: a message's content, an embed's description, title, footer, field
/// name and value, fields per embed, all of one embed's text together.
pub const DISCORD_CONTENT_LIMIT: usize = 2000;
pub const DISCORD_DESCRIPTION_LIMIT: usize = 4096;
pub const DISCORD_TITLE_LIMIT: usize = 256;
pub const DISCORD_FOOTER_LIMIT: usize = 2048;
pub const DISCORD_FIELD_NAME_LIMIT: usize = 256;
pub const DISCORD_FIELD_VALUE_LIMIT: usize = 1024;
pub const DISCORD_FIELDS_LIMIT: usize = 25;
pub const DISCORD_EMBED_LIMIT: usize = 6000;

/// One Discord embed of a reply, as data (the adapter turns it into serenity's builder). Text is
/// escaped for Discord's Markdown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embed {
    pub title: Option<String>,
    pub description: String,
    /// (name, value), shown inline.
    pub fields: Vec<(String, String)>,
    pub footer: Option<String>,
    /// Whether the reply's chart (attached to the same message) is shown in this embed.
    pub chart: bool,
}

impl Embed {
    /// The characters Discord counts against [`DISCORD_EMBED_LIMIT`].
    pub fn chars(&self) -> usize {
        self.title.as_deref().map_or(0, |t| t.chars().count())
            + self.description.chars().count()
            + self.footer.as_deref().map_or(0, |t| t.chars().count())
            + self
                .fields
                .iter()
                .map(|(n, v)| n.chars().count() + v.chars().count())
                .sum::<usize>()
    }
}

/// Discord's Markdown characters escaped, so figures, names and customers' words show as they are
/// (`*`, `_`, `~`, `` ` ``, `|`, `\\`; `#`, `>` and `-` at a line's start).
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut line_start = true;
    for c in s.chars() {
        if matches!(c, '*' | '_' | '~' | '`' | '|' | '\\')
            || (line_start && matches!(c, '#' | '>' | '-'))
        {
            out.push('\\');
        }
        out.push(c);
        line_start = c == '\n';
    }
    out
}

/// `s` cut to `limit` characters, the last one an ellipsis when cut.
pub fn clip(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_string();
    }
    let mut t: String = s.chars().take(limit - 1).collect();
    t.push('…');
    t
}

/// The reply as Discord embeds, one per message, each within Discord's limits: the text in
/// descriptions (split at line ends), the table as fields (a row per field, named by its first
/// column), the cited review ids in the last embed's footer, the chart shown in the first.
pub fn discord_embeds(r: &Reply) -> Vec<Embed> {
    let width = |c| {
        if matches!(c, '*' | '_' | '~' | '`' | '|' | '\\' | '#' | '>' | '-') {
            2
        } else {
            1
        }
    };
    let mut embeds: Vec<Embed> = split_text(&r.text, DISCORD_DESCRIPTION_LIMIT, width)
        .into_iter()
        .map(|p| Embed {
            description: clip(&escape_markdown(&p), DISCORD_DESCRIPTION_LIMIT),
            ..Embed::default()
        })
        .collect();
    if let Some(t) = &r.table {
        let fields: Vec<(String, String)> = t
            .rows
            .iter()
            .take(DISCORD_FIELDS_LIMIT)
            .map(|row| {
                let (name, rest) = if row.len() > 1 {
                    (row[0].clone(), 1)
                } else {
                    (t.columns.first().cloned().unwrap_or_default(), 0)
                };
                let value: Vec<String> = t
                    .columns
                    .iter()
                    .zip(row)
                    .skip(rest)
                    .map(|(c, v)| {
                        if rest == 0 {
                            v.clone()
                        } else {
                            format!("{c}: {v}")
                        }
                    })
                    .collect();
                let blank = |s: String| if s.trim().is_empty() { "—".into() } else { s };
                (
                    clip(&escape_markdown(&blank(name)), DISCORD_FIELD_NAME_LIMIT),
                    clip(
                        &escape_markdown(&blank(value.join("\n"))),
                        DISCORD_FIELD_VALUE_LIMIT,
                    ),
                )
            })
            .collect();
        // Into the last text embed while there is room, then into embeds of their own; room is kept
        // for a chart's title and the footer.
        const ROOM: usize = DISCORD_EMBED_LIMIT - DISCORD_TITLE_LIMIT - 512;
        let mut cur = embeds.pop().unwrap_or_default();
        for (n, v) in fields {
            let size = n.chars().count() + v.chars().count();
            if cur.fields.len() == DISCORD_FIELDS_LIMIT || cur.chars() + size > ROOM {
                embeds.push(std::mem::take(&mut cur));
            }
            cur.fields.push((n, v));
        }
        embeds.push(cur);
    }
    if let Some(c) = &r.chart {
        if embeds.is_empty() {
            embeds.push(Embed::default());
        }
        embeds[0].chart = true;
        embeds[0].title = Some(clip(&c.title, DISCORD_TITLE_LIMIT));
    }
    if !r.cited_reviews.is_empty() {
        let ids: Vec<String> = r.cited_reviews.iter().map(|i| format!("#{i}")).collect();
        let head = if r.zh {
            "引用评论："
        } else {
            "Reviews cited: "
        };
        let footer = format!("{head}{}", ids.join(" "));
        // In the last embed if it has room, else in one of its own.
        let room = embeds
            .last()
            .map_or(0, |e| DISCORD_EMBED_LIMIT.saturating_sub(e.chars()));
        if room < 64 {
            embeds.push(Embed::default());
        }
        if let Some(last) = embeds.last_mut() {
            let room = DISCORD_EMBED_LIMIT.saturating_sub(last.chars());
            last.footer = Some(clip(&footer, room.min(DISCORD_FOOTER_LIMIT)));
        }
    }
    embeds
}

/// Plain words (a person's reply relayed, a notice, a digest) as Discord message contents under its
/// limit, escaped.
pub fn discord_content(text: &str) -> Vec<String> {
    split_text(text, DISCORD_CONTENT_LIMIT - 8, |c| {
        if matches!(c, '*' | '_' | '~' | '`' | '|' | '\\' | '#' | '>' | '-') {
            2
        } else {
            1
        }
    })
    .into_iter()
    .map(|p| escape_markdown(&p))
    .collect()
}

/// A JSON object's arguments as text, for the store and the audit.
pub fn args_json(args: &Map<String, Value>) -> String {
    serde_json::to_string(args).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_is_escaped_and_split_under_telegrams_limit() {
        let long = "A<b>&c\n".repeat(2000);
        let r = Reply::text(long.clone(), false);
        let parts = telegram_html(&r);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(p.chars().count() <= TELEGRAM_LIMIT, "{}", p.chars().count());
            assert!(!p.contains("<b>"));
        }
        let joined: String = parts.join("\n");
        let unescaped = joined
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        assert_eq!(
            unescaped.matches("A<b>&c").count(),
            2000,
            "nothing lost in the split"
        );
    }

    #[test]
    fn tables_take_the_first_list_of_records_and_reviews_are_cited() {
        let out = json!({"as_of": "2026-06-30", "segments": [
            {"name": "loyal", "customers": 10, "share": 0.5, "nested": {"x": 1}},
            {"name": "new", "customers": 3, "share": null}
        ], "reviews": [{"id": 7, "text": "t"}, {"id": 3}]});
        let t = table_of(&out, false).unwrap();
        assert_eq!(t.columns, ["name", "customers", "share"]);
        assert_eq!(t.rows[1], ["new", "3", ""]);
        assert_eq!(cited_reviews(&out), [3, 7]);
        assert!(table_of(&json!({"daily": [{"a": 1}]}), false).is_none());
    }

    #[test]
    fn a_tables_fractional_numbers_are_rounded_not_raw() {
        let out = json!({"event_effects": [
            {"name": "618", "ratio": 0.4833869651433159, "learned_ratio": 1.3566666666666667,
             "past_days": 6, "share": 0.012345, "sales": 637767.7234, "whole": 2.0}
        ]});
        let t = table_of(&out, false).unwrap();
        let row: std::collections::HashMap<_, _> = t.columns.iter().zip(&t.rows[0]).collect();
        let get = |c: &str| row[&crate::terms::column(c, false)].as_str();
        assert_eq!(get("ratio"), "0.483");
        assert_eq!(get("learned_ratio"), "1.36");
        assert_eq!(get("past_days"), "6");
        assert_eq!(get("share"), "0.0123");
        // As the reply's text writes it (`render::money`), so the two read the same.
        assert_eq!(get("sales"), "637,767.72");
        assert_eq!(get("whole"), "2");
    }

    fn unescape_markdown(s: &str) -> String {
        let mut out = String::new();
        let mut esc = false;
        for c in s.chars() {
            if c == '\\' && !esc {
                esc = true;
                continue;
            }
            esc = false;
            out.push(c);
        }
        out
    }

    #[test]
    fn discord_embeds_stay_under_every_limit_and_lose_nothing() {
        let long = "销售额 *1,234.50* _up_ 12%\n".repeat(600);
        let mut r = Reply::text(long.clone(), true);
        r.table = Some(Table {
            columns: vec!["name".into(), "customers".into(), "note".into()],
            rows: (0..30)
                .map(|i| vec![format!("seg{i}"), i.to_string(), "x".repeat(2000)])
                .collect(),
        });
        r.cited_reviews = (1..=900).collect();
        let embeds = discord_embeds(&r);
        assert!(embeds.len() > 2, "{}", embeds.len());
        for e in &embeds {
            assert!(e.description.chars().count() <= DISCORD_DESCRIPTION_LIMIT);
            assert!(e.fields.len() <= DISCORD_FIELDS_LIMIT);
            assert!(e.chars() <= DISCORD_EMBED_LIMIT, "{}", e.chars());
            for (n, v) in &e.fields {
                assert!(n.chars().count() <= DISCORD_FIELD_NAME_LIMIT);
                assert!(v.chars().count() <= DISCORD_FIELD_VALUE_LIMIT);
                assert!(!n.is_empty() && !v.is_empty());
            }
            assert!(
                e.footer
                    .as_ref()
                    .is_none_or(|f| f.chars().count() <= DISCORD_FOOTER_LIMIT)
            );
        }
        let text: Vec<String> = embeds
            .iter()
            .filter(|e| !e.description.is_empty())
            .map(|e| unescape_markdown(&e.description))
            .collect();
        assert_eq!(
            text.join("\n")
                .matches("销售额 *1,234.50* _up_ 12%")
                .count(),
            600
        );
        let fields: Vec<&(String, String)> = embeds.iter().flat_map(|e| &e.fields).collect();
        assert_eq!(fields[3].0, "seg3");
        assert!(fields[3].1.starts_with("customers: 3\nnote: xxx"));
        assert!(
            embeds
                .last()
                .unwrap()
                .footer
                .as_ref()
                .unwrap()
                .starts_with("引用评论：#1 #2")
        );
        assert_eq!(escape_markdown("# a*b\n> q"), "\\# a\\*b\n\\> q");
    }

    #[test]
    fn discord_content_is_split_under_the_message_limit() {
        let parts = discord_content(&"a_b\n".repeat(1500));
        assert!(parts.len() > 1);
        assert!(
            parts
                .iter()
                .all(|p| p.chars().count() <= DISCORD_CONTENT_LIMIT)
        );
        assert_eq!(parts.concat().matches("a\\_b").count(), 1500);
    }
}
