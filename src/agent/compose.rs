//! Tool results → the reply, in the asker's language, short, with the tool's figures copied verbatim and
//! review ids where reviews back a claim. Replies are rendered by code from the typed output: the LLM
//! chooses tools and arguments, never figures or words that could carry them (so nothing it read — a
//! question, a review — can make a reply say something the tool did not return).

use serde_json::Value;

pub use crate::tools::render::{money, reply};
use crate::tools::render::{num, pct, period, s};

/// What dongcha answers, for questions outside its tools.
pub fn none_reply(zh: bool) -> String {
    if zh {
        "这个问题我回答不了。我可以回答：销售额与销量预测、客户分群、流失风险、客户价值、单个客户画像、评论情感与差评话题、按语义搜索评论、购买意向、产品报告、商品推荐和促销方案。".into()
    } else {
        "I can't answer that. I can answer about sales and forecasts, customer segments, churn risk, customer value, a customer's profile, review sentiment and complaint topics, searching reviews by meaning, purchase intent, product reports, recommendations and promotion plans.".into()
    }
}

/// The reply to a plan ([`super::plan::combine`]'s output): a comparison, or each part's reply in turn.
pub fn plan_reply(out: &Value, zh: bool) -> String {
    if out["plan"] != "parts" {
        return comparison(out, zh);
    }
    let mut blocks = Vec::new();
    for p in out["parts"].as_array().into_iter().flatten() {
        if p.get("output").is_some() {
            blocks.push(reply(&s(&p["tool"]), &p["output"], zh));
        }
    }
    for m in out["missing"].as_array().into_iter().flatten() {
        let label = crate::tools::label(&s(&m["label"]), zh);
        blocks.push(if zh {
            format!("没法回答{label}：{}", s(&m["reason"]))
        } else {
            format!("I can't answer {label}: {}", s(&m["reason"]))
        });
    }
    blocks.join("\n\n")
}

/// The reply to a comparison ([`super::plan::combine`]'s output): each part's figures, the headline
/// difference and ratio, and what could not be answered.
pub fn comparison(out: &Value, zh: bool) -> String {
    let t = |z: String, e: String| if zh { z } else { e };
    let value = |f: &str, v: &Value| match v.as_f64() {
        None => "—".to_string(),
        Some(x) if f.ends_with("_pct") => pct(x),
        Some(x) if matches!(f, "revenue" | "aov" | "total" | "previous_total") => money(x),
        Some(x) if x.fract() == 0.0 => format!("{}", x as i64),
        Some(_) => v.to_string(),
    };
    let mut lines = Vec::new();
    if out.get("period").is_some() {
        lines.push(t(
            format!("对比（{}）：", period(&out["period"])),
            format!("Compared ({}):", period(&out["period"])),
        ));
    } else {
        lines.push(t("对比：".into(), "Compared:".into()));
    }
    for row in out["compared"].as_array().into_iter().flatten() {
        let figs: Vec<String> = super::plan::figures(&s(&out["tool"]))
            .iter()
            .map(|f| format!("{} {}", figure_name(f, zh), value(f, &row[*f])))
            .collect();
        lines.push(t(
            format!("{}：{}", s(&row["label"]), figs.join("，")),
            format!("{}: {}", s(&row["label"]), figs.join(", ")),
        ));
        let topics: Vec<String> = row["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| format!("{} ({})", s(&x["topic"]), x["complaints"]))
            .collect();
        if !topics.is_empty() {
            lines.push(t(
                format!("  主要抱怨：{}", topics.join("、")),
                format!("  top complaints: {}", topics.join("; ")),
            ));
        }
    }
    let d = &out["difference"];
    if d.is_object() {
        let f = s(&d["figure"]);
        let diff = num(&d["difference"]);
        let (a, b) = (s(&d["of"][0]), s(&d["of"][1]));
        let name = figure_name(&f, zh);
        let by = value(&f, &json_abs(diff));
        let ratio = d["ratio"].as_f64().map(|r| format!("{r:.2}"));
        lines.push(match (zh, diff >= 0.0, ratio) {
            _ if diff == 0.0 => t(
                format!("{a} 与 {b} 的{name}相同。"),
                format!("{a} and {b} have the same {name}."),
            ),
            (true, up, Some(r)) => format!(
                "{a} 的{name}比 {b} {}{by}，是后者的 {r} 倍。",
                if up { "高 " } else { "低 " }
            ),
            (true, up, None) => format!(
                "{a} 的{name}比 {b} {}{by}。",
                if up { "高 " } else { "低 " }
            ),
            (false, up, Some(r)) => format!(
                "The {name} of {a} is {by} {} that of {b} ({r}×).",
                if up { "above" } else { "below" }
            ),
            (false, up, None) => format!(
                "The {name} of {a} is {by} {} that of {b}.",
                if up { "above" } else { "below" }
            ),
        });
    }
    for m in out["missing"].as_array().into_iter().flatten() {
        lines.push(t(
            format!("无法回答“{}”：{}。", s(&m["label"]), s(&m["reason"])),
            format!(
                "Not answered for \"{}\": {}.",
                s(&m["label"]),
                s(&m["reason"])
            ),
        ));
    }
    lines.join("\n")
}

/// A figure's name in running text (a table's column name without its unit).
fn figure_name(f: &str, zh: bool) -> String {
    crate::terms::column(f, zh)
        .trim_end_matches(" %")
        .to_string()
}

fn json_abs(x: f64) -> Value {
    serde_json::json!(x.abs())
}

/// The reply when the composed one fails the grounding check: the output's scalar fields as they are
/// (nested objects flattened to `a.b`; lists are the reply's table), so every figure is the output's.
pub fn plain_reply(out: &Value, zh: bool) -> String {
    fn walk(prefix: &str, v: &Value, lines: &mut Vec<String>) {
        match v {
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, x, lines)
            }),
            Value::Array(_) | Value::Null => {}
            Value::String(t) => lines.push(format!("{prefix}: {t}")),
            other => lines.push(format!("{prefix}: {other}")),
        }
    }
    let mut lines = vec![if zh {
        "结果如下（工具的原始输出）：".to_string()
    } else {
        "The result, as the tool gave it:".to_string()
    }];
    walk("", out, &mut lines);
    lines.join("\n")
}

/// Every number in `text` (digits with optional separators and decimals), as written.
pub fn numbers_in(text: &str) -> Vec<String> {
    static RE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\d[\d,]*(?:\.\d+)?").expect("regex"));
    RE.find_iter(text)
        .map(|m| m.as_str().trim_end_matches(',').to_string())
        .collect()
}

fn collect(v: &Value, nums: &mut Vec<f64>, texts: &mut Vec<String>) {
    match v {
        Value::Number(n) => nums.extend(n.as_f64()),
        Value::String(s) => texts.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect(x, nums, texts)),
        Value::Object(o) => o.values().for_each(|x| collect(x, nums, texts)),
        _ => {}
    }
}

/// The numbers in `reply` that do not come from `output`: a number counts when it equals a number of the
/// output at the reply's precision, or is written in one of the output's strings (dates, ids, quotes).
/// Empty means the reply is grounded.
pub fn ungrounded_numbers(reply: &str, output: &Value) -> Vec<String> {
    let mut nums = Vec::new();
    let mut texts = Vec::new();
    collect(output, &mut nums, &mut texts);
    let in_text: std::collections::HashSet<String> =
        texts.iter().flat_map(|t| numbers_in(t)).collect();
    numbers_in(reply)
        .into_iter()
        .filter(|n| {
            if in_text.contains(n) {
                return false;
            }
            let plain = n.replace(',', "");
            let Ok(x) = plain.parse::<f64>() else {
                return true;
            };
            let decimals = plain.split_once('.').map_or(0, |(_, d)| d.len());
            // The output's number written at the reply's precision, as the composer writes it
            // (`format!` rounds ties to even and works on the exact binary value, which `f64::round`
            // of a scaled value does not: 213.35 is written "213.3" yet scales to 2133.5).
            !nums.iter().any(|y| {
                let a = format!("{:.*}", decimals, y.abs());
                a == plain || a.parse::<f64>().is_ok_and(|a| a == x)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(1234567.8), "1,234,567.80");
        assert_eq!(money(0.5), "0.50");
        assert_eq!(money(-1000.0), "-1,000.00");
    }

    #[test]
    fn the_grounding_check_catches_an_invented_number() {
        let out = json!({"period": {"from": "2026-05-01", "to": "2026-05-31"}, "revenue": 1234567.8,
            "orders": 321, "aov": 3846.01, "customers": 300, "revenue_change_pct": 12.3456, "groups": []});
        let r = reply("sales_summary", &out, true);
        assert!(r.contains("1,234,567.80"), "{r}");
        assert!(r.contains("+12.3%"), "{r}");
        assert!(ungrounded_numbers(&r, &out).is_empty(), "{r}");
        let bad = format!("{r} 预计下月增长 15%");
        assert_eq!(ungrounded_numbers(&bad, &out), vec!["15".to_string()]);
    }

    /// A follow-up's complaint topic rose by 213.35 %, which the reply writes "+213.3%"; the check
    /// rounded the scaled value (2133.5 → 2134) and flagged the reply's own figure as invented.
    #[test]
    fn the_grounding_check_accepts_a_figure_rounded_as_the_reply_writes_it() {
        for (y, written) in [
            (213.35f64, "213.3"),
            (0.125, "0.12"),
            (2.5, "2"),
            (-7.25, "7.2"),
        ] {
            let out = json!({"change_pct": y});
            assert!(
                ungrounded_numbers(written, &out).is_empty(),
                "{y} written {written}"
            );
            assert_eq!(
                format!(
                    "{:.*}",
                    written.split_once('.').map_or(0, |(_, d)| d.len()),
                    y.abs()
                ),
                written
            );
        }
        let out = json!({"change_pct": 213.35});
        assert_eq!(ungrounded_numbers("213.4", &out), vec!["213.4".to_string()]);
    }

    #[test]
    fn the_plain_reply_is_grounded_by_construction() {
        let out = json!({"period": {"from": "2026-05-01", "to": "2026-05-31"}, "revenue": 1234567.8,
            "change_pct": 213.35, "groups": [{"x": 1}], "note": null});
        for zh in [true, false] {
            let r = plain_reply(&out, zh);
            assert!(r.contains("period.from: 2026-05-01"), "{r}");
            assert!(r.contains("revenue: 1234567.8"), "{r}");
            assert!(ungrounded_numbers(&r, &out).is_empty(), "{r}");
        }
    }
}
