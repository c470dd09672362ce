//! Plans of more than one call. A question that names two or more products, or two or more categories,
//! for a tool that takes one ("Compare revenue of laptops and books last quarter", "ThinkPad T14 和戴尔上个月谁
//! 卖得好") runs that tool once per name with the same other arguments; code puts the outputs side by side
//! and computes the difference and the ratio of the headline figure, so every figure of the reply is in the
//! combined output. A part that cannot be answered (a name the shop does not have) is listed as missing,
//! never silently dropped.

use serde_json::{Map, Value, json};

use super::router::Catalogue;
use crate::tools::{Said, ToolError};

/// One call of a plan: what it is about and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub label: String,
    pub args: Map<String, Value>,
    /// Why this part cannot be answered (a category the shop does not have), known before any call.
    pub missing: Option<Said>,
}

/// The figures a comparison puts side by side, headline first; empty: the tool is not compared.
pub fn figures(tool: &str) -> &'static [&'static str] {
    match tool {
        "sales_summary" => &["revenue", "orders", "customers", "aov"],
        "sales_forecast" => &["total", "previous_total"],
        "review_sentiment" => &["negative_pct", "positive_pct", "reviews"],
        "top_complaints" => &["negative_reviews", "reviews"],
        "purchase_intent" => &["abandon_pct", "wait_pct", "buy_pct", "texts"],
        _ => &[],
    }
}

/// The parts of a comparison for `tool` called with `args`, when the question names two or more products
/// (tools that take a product) or, naming none, two or more categories (the sales tools); else empty.
pub fn parts(tool: &str, args: &Map<String, Value>, question: &str, cat: &Catalogue) -> Vec<Part> {
    if figures(tool).is_empty() {
        return Vec::new();
    }
    let with = |key: &str, value: &str| {
        let mut a = args.clone();
        a.remove("product");
        a.remove("category");
        a.insert(key.to_string(), json!(value));
        Part {
            label: value.to_string(),
            args: a,
            missing: None,
        }
    };
    let products = cat.products(question);
    if products.len() >= 2 {
        return products.iter().map(|p| with("product", p)).collect();
    }
    let categories = cat.categories(question);
    let unknown = cat.unknown_categories(question);
    if products.is_empty()
        && categories.len() + unknown.len() >= 2
        && !categories.is_empty()
        && matches!(tool, "sales_summary" | "sales_forecast")
    {
        let mut out: Vec<Part> = categories.iter().map(|c| with("category", c)).collect();
        out.extend(unknown.into_iter().map(|w| Part {
            missing: Some(Said {
                en: format!("the shop has no category {w:?}"),
                zh: format!("店里没有“{w}”这个品类"),
            }),
            label: w,
            args: Map::new(),
        }));
        return out;
    }
    Vec::new()
}

fn round(x: f64, digits: i32) -> f64 {
    let s = 10f64.powi(digits);
    (x * s).round() / s
}

/// The combined output of a plan's calls: `compared` (one row per answered part: its label and the
/// figures), `difference` (headline figure of the first two answered parts: a − b and a / b), `missing`
/// (the parts that could not be answered, with why, in the question's language), `parts` (each call's
/// arguments and full output).
pub fn combine(tool: &str, results: &[(Part, Result<Value, ToolError>)], zh: bool) -> Value {
    let figs = figures(tool);
    let mut compared = Vec::new();
    let mut missing = Vec::new();
    let mut parts = Vec::new();
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
    if let (Some(a), Some(b)) = (compared.first(), compared.get(1)) {
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
    if let Some(p) = results
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
        let p = parts(
            "sales_summary",
            &args,
            "Compare revenue of laptops and books last quarter",
            &cat(),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].args["category"], "laptops");
        assert_eq!(p[1].args["category"], "books");
        assert!(p.iter().all(|x| x.args["period"] == args["period"]));
        // One name, or a tool that is not compared: no plan.
        assert!(parts("sales_summary", &args, "books last quarter", &cat()).is_empty());
        assert!(parts("customer_segments", &args, "laptops and books", &cat()).is_empty());
        // A category the shop does not have is a part, named as missing, not dropped.
        let p = parts(
            "sales_summary",
            &args,
            "compare sales of laptops and phones",
            &cat(),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].missing.is_none() && p[1].missing.is_some(), "{p:?}");
        assert_eq!(p[1].label, "phones");
    }

    #[test]
    fn the_comparison_is_computed_and_a_missing_part_is_named() {
        let part = |l: &str| Part {
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
        let v = combine("sales_summary", &results, false);
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
}
