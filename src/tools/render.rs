//! Tool outputs → reply text, in the asker's language, short, with the tool's figures copied verbatim and
//! review ids where reviews back a claim. Each tool renders its own output (`render` beside the tool);
//! these are the helpers they share and the dispatch by tool name.

use serde_json::Value;

pub fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// 1234567.8 → "1,234,567.80".
pub fn money(x: f64) -> String {
    let s = format!("{:.2}", x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}{out}.{frac}", if x < 0.0 { "-" } else { "" })
}

pub fn pct(x: f64) -> String {
    format!("{x:.1}%")
}

pub fn signed_pct(x: f64) -> String {
    format!("{x:+.1}%")
}

pub fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One of dongcha's own words (a segment, a model, an event, an incentive) in the reply's language.
pub fn tr(v: &Value, zh: bool) -> String {
    crate::terms::term(&s(v), zh)
}

pub fn period(v: &Value) -> String {
    let (a, b) = (s(&v["from"]), s(&v["to"]));
    if a == b { a } else { format!("{a} – {b}") }
}

pub fn ids(quotes: &Value) -> Vec<String> {
    quotes
        .as_array()
        .map(|a| a.iter().map(|q| format!("#{}", s(&q["id"]))).collect())
        .unwrap_or_default()
}

pub fn list<T>(v: &Value, f: impl Fn(&Value) -> T) -> Vec<T> {
    v.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

/// The reply for a tool's output ([`crate::agent::compose::none_reply`] for `none` or an unknown name).
pub fn reply(tool: &str, out: &Value, zh: bool) -> String {
    match tool {
        "sales_summary" => super::sales_summary::render(out, zh),
        "sales_forecast" => super::sales_forecast::render(out, zh),
        "customer_segments" => super::customer_segments::render(out, zh),
        "churn_risk" => super::churn_risk::render(out, zh),
        "customer_profile" => super::customer_profile::render(out, zh),
        "customer_value" => super::customer_value::render(out, zh),
        "review_sentiment" => super::review_sentiment::render(out, zh),
        "top_complaints" => super::top_complaints::render(out, zh),
        "search_reviews" => super::search_reviews::render(out, zh),
        "purchase_intent" => super::purchase_intent::render(out, zh),
        "product_report" => super::product_report::render(out, zh),
        "recommend_products" => super::recommend_products::render(out, zh),
        "promotion_plan" => super::promotion_plan::render(out, zh),
        _ => crate::agent::compose::none_reply(zh),
    }
}
