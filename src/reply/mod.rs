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
        Some(v) => v.to_string(),
    }
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
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    let budget = TELEGRAM_LIMIT - 16;
    for line in text.split_inclusive('\n') {
        for c in line.chars() {
            let w = match c {
                '<' | '>' => 4,
                '&' => 5,
                _ => 1,
            };
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
    if !cur.trim().is_empty() || pieces.is_empty() {
        pieces.push(cur);
    }
    pieces
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| escape_html(p.trim_end()))
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
}
