//! Plans of more than one call. The plan stage reads a routed question once more for what one call
//! cannot answer:
//! - a **comparison**: two or more products, or categories, or periods ("Compare revenue of laptops and
//!   books last quarter", "ThinkPad T14 和戴尔上个月谁卖得好", "本月和上个月", "同比") for a tool that
//!   takes one: that tool once per part with the same other arguments; code puts the outputs side by
//!   side and computes the difference and the ratio of the headline figure, so every figure of the reply
//!   is in the combined output;
//! - a question in **two parts** ("sales and top complaints for the T14 this month", "客户分群情况以及流失
//!   风险高的客户"): each clause names what it asks for in words of one tool; the tools run one after the
//!   other on the question's shared arguments, and the reply is each tool's reply in turn.
//!
//! A part that cannot be answered (a category the shop does not have) is listed as missing, never
//! silently dropped.

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::dates;
use super::router::{self, Facts};
use crate::tools::{Said, ToolError};

/// One call of a plan: its tool, what it is about and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Part {
    pub tool: String,
    pub label: String,
    pub args: Map<String, Value>,
    /// Why this part cannot be answered (a category the shop does not have), known before any call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Said>,
}

/// A routed question's calls when there is more than one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The argument the parts differ in ("product", "category", "period") for a comparison; None for a
    /// question in parts (one call per tool).
    pub by: Option<&'static str>,
    pub parts: Vec<Part>,
}

impl Plan {
    /// The plan in one line, as `tests/data/plans.tsv` writes it: `tool(key=value | missing=name)` for a
    /// comparison (answered parts in the order asked, then the missing ones), `a + b` for parts.
    pub fn signature(&self) -> String {
        match self.by {
            None => self
                .parts
                .iter()
                .map(|p| p.tool.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
            Some(by) => {
                let tool = self.parts.first().map(|p| p.tool.as_str()).unwrap_or("");
                let mut items: Vec<String> = self
                    .parts
                    .iter()
                    .filter(|p| p.missing.is_none())
                    .map(|p| match p.args.get("period") {
                        Some(x) if by == "period" => format!(
                            "period={}..{}",
                            x["from"].as_str().unwrap_or(""),
                            x["to"].as_str().unwrap_or("")
                        ),
                        _ => format!("{by}={}", p.label),
                    })
                    .collect();
                items.extend(
                    self.parts
                        .iter()
                        .filter(|p| p.missing.is_some())
                        .map(|p| format!("missing={}", p.label)),
                );
                format!("{tool}({})", items.join(" | "))
            }
        }
    }
}

/// The figures a comparison puts side by side, headline first; empty: the tool is not compared.
pub fn figures(tool: &str) -> &'static [&'static str] {
    match tool {
        "sales_summary" => &["revenue", "orders", "customers", "aov"],
        "sales_forecast" => &["total", "previous_total"],
        "review_sentiment" => &["negative_pct", "positive_pct", "reviews", "unlabelled"],
        "top_complaints" => &["negative_reviews", "reviews"],
        "purchase_intent" => &[
            "abandon_pct",
            "wait_pct",
            "buy_pct",
            "stating_intent",
            "texts",
            "unlabelled",
        ],
        _ => &[],
    }
}

/// The plan for `tool` called with `args` on `question` (what it states read into `facts`), when one call
/// cannot answer it; see the module's documentation. Two parts first, then products, categories, periods.
pub fn make(
    tool: &str,
    args: &Map<String, Value>,
    question: &str,
    facts: &Facts,
    today: NaiveDate,
) -> Option<Plan> {
    if let Some(p) = two_tools(question, facts, today) {
        return Some(p);
    }
    let (by, p) = parts(tool, args, facts);
    (p.len() >= 2).then_some(Plan { by, parts: p })
}

/// The parts of a comparison for `tool` called with `args`, when the question names two or more products
/// (tools that take a product) or, naming none, two or more categories (the sales tools), or two periods
/// (tools that take a period), with the argument they differ in; else empty.
pub fn parts(
    tool: &str,
    args: &Map<String, Value>,
    facts: &Facts,
) -> (Option<&'static str>, Vec<Part>) {
    if figures(tool).is_empty() {
        return (None, Vec::new());
    }
    let with = |key: &str, value: &str| {
        let mut a = args.clone();
        a.remove("product");
        a.remove("category");
        a.insert(key.to_string(), json!(value));
        Part {
            tool: tool.to_string(),
            label: value.to_string(),
            args: a,
            missing: None,
        }
    };
    let products = &facts.products;
    if products.len() >= 2 {
        return (
            Some("product"),
            products.iter().map(|p| with("product", p)).collect(),
        );
    }
    let (categories, unknown) = (&facts.categories, &facts.unknown_categories);
    if products.is_empty()
        && categories.len() + unknown.len() >= 2
        && !categories.is_empty()
        && matches!(tool, "sales_summary" | "sales_forecast")
    {
        let mut out: Vec<Part> = categories.iter().map(|c| with("category", c)).collect();
        out.extend(unknown.iter().map(|w| Part {
            tool: tool.to_string(),
            missing: Some(Said {
                en: format!("the shop has no category {w:?}"),
                zh: format!("店里没有“{w}”这个品类"),
            }),
            label: w.clone(),
            args: Map::new(),
        }));
        return (Some("category"), out);
    }
    if tool != "sales_forecast" {
        let periods = &facts.periods;
        if periods.len() >= 2 {
            let p = periods
                .iter()
                .map(|p| {
                    let mut a = args.clone();
                    a.insert("period".into(), json!(p));
                    Part {
                        tool: tool.to_string(),
                        label: p.to_string(),
                        args: a,
                        missing: None,
                    }
                })
                .collect();
            return (Some("period"), p);
        }
    }
    (None, Vec::new())
}

/// A question in two parts: its clauses ask for two different tools by their words. Each tool gets the
/// question's arguments (its clause's own period, where it names one).
fn two_tools(question: &str, facts: &Facts, today: NaiveDate) -> Option<Plan> {
    if facts.asked.len() != 2 {
        return None;
    }
    let parts = facts
        .asked
        .iter()
        .map(|(tool, clause)| {
            let mut args = router::args_of(tool, question, facts);
            if router::uses_period(tool)
                && let Some(p) = dates::resolve(clause, today)
            {
                args.insert("period".into(), json!(p));
            }
            Part {
                tool: tool.to_string(),
                label: tool.to_string(),
                args,
                missing: None,
            }
        })
        .collect();
    Some(Plan { by: None, parts })
}

fn round(x: f64, digits: i32) -> f64 {
    let s = 10f64.powi(digits);
    (x * s).round() / s
}

/// The combined output of a plan's calls.
///
/// A comparison: `by`, `compared` (one row per answered part: its label and the figures; for complaints
/// also the top topics), `difference` (headline figure of the first two answered parts: a − b and a / b),
/// `missing` (the parts that could not be answered, with why, in the question's language), `parts` (each
/// call's arguments and full output). A question in parts: `parts` (each tool, its arguments, its output
/// or error) and `missing`.
pub fn combine(plan: &Plan, results: &[(Part, Result<Value, ToolError>)], zh: bool) -> Value {
    let mut missing = Vec::new();
    let mut parts = Vec::new();
    let Some(by) = plan.by else {
        for (part, r) in results {
            match r {
                Ok(out) => parts.push(json!({"tool": part.tool, "args": part.args, "output": out})),
                Err(e) => {
                    missing.push(json!({"label": part.tool, "reason": e.say(zh)}));
                    parts.push(
                        json!({"tool": part.tool, "args": part.args, "error": e.to_string()}),
                    );
                }
            }
        }
        return json!({"plan": "parts", "parts": parts, "missing": missing});
    };
    let tool = plan.parts.first().map(|p| p.tool.as_str()).unwrap_or("");
    let figs = figures(tool);
    let mut compared = Vec::new();
    for (part, r) in results {
        match r {
            Ok(out) => {
                let mut row = Map::new();
                row.insert("label".into(), json!(part.label));
                for f in figs {
                    row.insert(
                        (*f).to_string(),
                        out.get(*f).cloned().unwrap_or(Value::Null),
                    );
                }
                if tool == "top_complaints" {
                    let topics: Vec<Value> = out["topics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .take(3)
                        .map(|t| json!({"topic": t["topic"], "complaints": t["complaints"]}))
                        .collect();
                    row.insert("topics".into(), Value::Array(topics));
                }
                compared.push(Value::Object(row));
                parts.push(json!({"args": part.args, "output": out}));
            }
            Err(e) => {
                missing.push(json!({"label": part.label, "reason": e.say(zh)}));
                parts.push(json!({"args": part.args, "error": e.to_string()}));
            }
        }
    }
    let mut out = Map::new();
    out.insert("tool".into(), json!(tool));
    out.insert("by".into(), json!(by));
    // A share computed from no labelled text is no figure to compare ("run dongcha enrich").
    let unlabelled = |r: &Value| {
        let n = r.get("reviews").or(r.get("texts")).and_then(Value::as_u64);
        r.get("unlabelled")
            .and_then(Value::as_u64)
            .is_some_and(|u| Some(u) == n && u > 0)
    };
    if let (Some(a), Some(b)) = (compared.first(), compared.get(1))
        && !unlabelled(a)
        && !unlabelled(b)
    {
        let f = figs[0];
        if let (Some(x), Some(y)) = (a[f].as_f64(), b[f].as_f64()) {
            out.insert(
                "difference".into(),
                json!({
                    "figure": f,
                    "of": [a["label"], b["label"]],
                    "difference": round(x - y, 2),
                    "ratio": (y != 0.0).then(|| round(x / y, 4)),
                }),
            );
        }
    }
    if by != "period"
        && let Some(p) = results
            .iter()
            .find_map(|(_, r)| r.as_ref().ok().and_then(|o| o.get("period").cloned()))
    {
        out.insert("period".into(), p);
    }
    out.insert("compared".into(), Value::Array(compared));
    out.insert("missing".into(), Value::Array(missing));
    out.insert("parts".into(), Value::Array(parts));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::router::Catalogue;
    use crate::store::CatalogueEntry;

    fn cat() -> Catalogue {
        let e = |name: &str, category: &str| CatalogueEntry {
            id: 0,
            name: name.into(),
            brand: None,
            model: None,
            category: Some(category.into()),
        };
        Catalogue::new(&[
            e("联想 ThinkPad T14", "laptops"),
            e("戴尔 Inspiron 14", "laptops"),
            e("历史人文 History & Culture", "books"),
        ])
    }

    #[test]
    fn two_categories_make_two_calls_with_the_same_period() {
        let mut args = Map::new();
        args.insert(
            "period".into(),
            json!({"from": "2026-04-01", "to": "2026-06-30"}),
        );
        args.insert("category".into(), json!("books"));
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let facts = |q: &str| Facts::read(q, today, &cat());
        let (_, p) = parts(
            "sales_summary",
            &args,
            &facts("Compare revenue of laptops and books last quarter"),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].args["category"], "laptops");
        assert_eq!(p[1].args["category"], "books");
        assert!(p.iter().all(|x| x.args["period"] == args["period"]));
        // One name, or a tool that is not compared: no plan.
        assert!(
            parts("sales_summary", &args, &facts("books last quarter"))
                .1
                .is_empty()
        );
        assert!(
            parts("customer_segments", &args, &facts("laptops and books"))
                .1
                .is_empty()
        );
        // A category the shop does not have is a part, named as missing, not dropped.
        let (_, p) = parts(
            "sales_summary",
            &args,
            &facts("compare sales of laptops and phones"),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].missing.is_none() && p[1].missing.is_some(), "{p:?}");
        assert_eq!(p[1].label, "phones");
    }

    #[test]
    fn the_comparison_is_computed_and_a_missing_part_is_named() {
        let part = |l: &str| Part {
            tool: "sales_summary".into(),
            label: l.into(),
            args: Map::new(),
            missing: None,
        };
        let results = vec![
            (part("laptops"), Ok(json!({"revenue": 300.0, "orders": 3}))),
            (part("books"), Ok(json!({"revenue": 120.0, "orders": 4}))),
            (
                part("phones"),
                Err(ToolError::NotFound(crate::tools::Said {
                    en: "no sales in category \"phones\"".into(),
                    zh: "品类“phones”没有销售记录".into(),
                })),
            ),
        ];
        let plan = Plan {
            by: Some("category"),
            parts: results.iter().map(|(p, _)| p.clone()).collect(),
        };
        let v = combine(&plan, &results, false);
        assert_eq!(v["compared"].as_array().unwrap().len(), 2);
        assert_eq!(v["difference"]["difference"], 180.0);
        assert_eq!(v["difference"]["ratio"], 2.5);
        assert_eq!(v["missing"][0]["label"], "phones");
        assert!(
            v["missing"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("no sales")
        );
    }

    #[test]
    fn a_question_in_two_parts_runs_two_tools_on_its_shared_arguments() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        let plan = |q: &str| {
            let facts = Facts::read(q, today, &cat());
            make("sales_summary", &Map::new(), q, &facts, today)
        };
        let p = plan("sales and top complaints for the ThinkPad T14 last month").expect("a plan");
        assert_eq!(p.signature(), "sales_summary + top_complaints");
        for part in &p.parts {
            assert_eq!(part.args["product"], "联想 ThinkPad T14", "{part:?}");
            assert_eq!(part.args["period"]["from"], "2026-05-01", "{part:?}");
        }
        // Each clause keeps its own period.
        let p = plan("上个月的销售额，再预测一下下个月").expect("a plan");
        assert_eq!(p.signature(), "sales_summary + sales_forecast");
        assert_eq!(p.parts[1].args["horizon_days"], 31);
        // One tool asked twice, or one forecast: one call.
        for q in [
            "上个月的订单数和客单价",
            "好评和差评各占多少",
            "下个季度 T14 谁会卖得更多？预测一下",
            "find reviews mentioning battery and screen",
        ] {
            assert_eq!(plan(q), None, "{q}");
        }
        // Periods compared, by code: this month against last month.
        let p = plan("这个月比上个月卖得好吗").expect("a plan");
        assert_eq!(
            p.signature(),
            "sales_summary(period=2026-06-01..2026-06-30 | period=2026-05-01..2026-05-31)"
        );
    }

    /// "Pavilion 15 vs VivoBook 15: which do reviewers like more?" on reviews not yet labelled said the
    /// two "have the same negative" share (0.0 % each, from no labelled review).
    #[test]
    fn a_comparison_of_unlabelled_shares_computes_no_difference() {
        let part = |l: &str| Part {
            tool: "review_sentiment".into(),
            label: l.into(),
            args: Map::new(),
            missing: None,
        };
        let out = |unlabelled: u64| json!({"negative_pct": 0.0, "positive_pct": 0.0, "reviews": 18, "unlabelled": unlabelled});
        let plan = |results: &[(Part, Result<Value, ToolError>)]| Plan {
            by: Some("product"),
            parts: results.iter().map(|(p, _)| p.clone()).collect(),
        };
        let results = vec![(part("a"), Ok(out(18))), (part("b"), Ok(out(18)))];
        let v = combine(&plan(&results), &results, false);
        assert!(v.get("difference").is_none(), "{v}");
        assert_eq!(v["compared"][0]["unlabelled"], 18);
        let results = vec![(part("a"), Ok(out(0))), (part("b"), Ok(out(0)))];
        let v = combine(&plan(&results), &results, false);
        assert!(v["difference"].is_object(), "{v}");
    }
}
