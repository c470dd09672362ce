//! GBNF grammars generated from the tools' JSON schemas: the LLM decodes a tool call under one, so every
//! call parses, names a tool it was allowed to choose, and every enum and argument type is valid.
//!
//! A call is compact JSON, `{"tool":"NAME","args":{...}}`: required fields first, then any subset of the
//! optional ones in schema order. Arguments that code resolves ([`super::CODE_ARGS`]: dates, horizons)
//! are not in the grammar — the LLM never writes a date.

use serde_json::Value;

use super::{CODE_ARGS, ToolSpec};

/// Longest string argument the LLM may write, in characters.
const MAX_STRING: usize = 48;

pub fn gbnf_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The JSON text of a string value, as a GBNF literal: `"day"` → `"\"day\""`.
fn json_string_literal(s: &str) -> String {
    gbnf_literal(&serde_json::to_string(s).unwrap_or_default())
}

fn resolve<'a>(root: &'a Value, v: &'a Value) -> &'a Value {
    if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
        let name = r.rsplit('/').next().unwrap_or_default();
        if let Some(d) = root.get("$defs").and_then(|d| d.get(name)) {
            return d;
        }
    }
    v
}

/// The GBNF expression for one property's value (nulls dropped: an absent optional field says it).
fn value_rule(root: &Value, v: &Value) -> Option<String> {
    let v = resolve(root, v);
    if let Some(any) = v.get("anyOf").or(v.get("oneOf")).and_then(|a| a.as_array()) {
        let alts: Vec<String> = any
            .iter()
            .filter(|x| x.get("type").and_then(|t| t.as_str()) != Some("null"))
            .filter_map(|x| value_rule(root, x))
            .collect();
        return (!alts.is_empty()).then(|| format!("( {} )", alts.join(" | ")));
    }
    if let Some(e) = v.get("enum").and_then(|e| e.as_array()) {
        let alts: Vec<String> = e
            .iter()
            .filter_map(|x| x.as_str())
            .map(json_string_literal)
            .collect();
        return Some(format!("( {} )", alts.join(" | ")));
    }
    if let Some(c) = v.get("const").and_then(|c| c.as_str()) {
        return Some(json_string_literal(c));
    }
    let types: Vec<&str> = match v.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => vec![],
    };
    let t = types.into_iter().find(|t| *t != "null")?;
    Some(match t {
        "string" => "str".into(),
        "integer" => "int".into(),
        "number" => "num".into(),
        "boolean" => "bool".into(),
        _ => return None,
    })
}

/// The rule body for a tool's arguments object.
fn args_rule(schema: &Value, rule_prefix: &str, extra: &mut Vec<String>) -> String {
    let props = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let mut req = Vec::new();
    let mut opt = Vec::new();
    // schemars keeps declaration order only with preserve_order; sort for a stable grammar.
    let mut names: Vec<&String> = props.keys().collect();
    names.sort();
    for name in names {
        if CODE_ARGS.contains(&name.as_str()) {
            continue;
        }
        let Some(value) = value_rule(schema, &props[name]) else {
            continue;
        };
        let kv = format!("{} \":\" {value}", json_string_literal(name));
        if required.contains(&name.as_str()) {
            req.push(kv);
        } else {
            opt.push(kv);
        }
    }
    // after-i: any subset of the optional fields after i, each with a leading comma.
    for i in (0..=opt.len()).rev() {
        let alts: Vec<String> = (i..opt.len())
            .map(|j| format!("\",\" {} {rule_prefix}-after-{}", opt[j], j + 1))
            .collect();
        let body = if alts.is_empty() {
            "\"\"".to_string()
        } else {
            format!("( {} )?", alts.join(" | "))
        };
        extra.push(format!("{rule_prefix}-after-{i} ::= {body}"));
    }
    if req.is_empty() {
        let firsts: Vec<String> = (0..opt.len())
            .map(|j| format!("{} {rule_prefix}-after-{}", opt[j], j + 1))
            .collect();
        if firsts.is_empty() {
            "\"{}\"".to_string()
        } else {
            format!("\"{{\" ( {} )? \"}}\"", firsts.join(" | "))
        }
    } else {
        format!(
            "\"{{\" {} {rule_prefix}-after-0 \"}}\"",
            req.join(" \",\" ")
        )
    }
}

/// A grammar for a call to one of `allowed` (names from the catalogue; others are ignored). It produces
/// what follows [`CALL_PREFIX`], which the prompt already ends with.
pub fn for_calls(tools: &[ToolSpec], allowed: &[&str]) -> String {
    let mut rules = Vec::new();
    let mut extra = Vec::new();
    let mut calls = Vec::new();
    for t in tools.iter().filter(|t| allowed.contains(&t.name)) {
        let rule = t.name.replace('_', "-");
        let args = args_rule(&t.schema, &rule, &mut extra);
        rules.push(format!(
            "call-{rule} ::= {} \",\\\"args\\\":\" {args} \"}}\"",
            gbnf_literal(&format!("{}\"", t.name))
        ));
        calls.push(format!("call-{rule}"));
    }
    let mut g = format!("root ::= {}\n", calls.join(" | "));
    for r in rules.iter().chain(&extra) {
        g.push_str(r);
        g.push('\n');
    }
    g.push_str(&format!(
        "str ::= \"\\\"\" char{{1,{MAX_STRING}}} \"\\\"\"\n\
         char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" [\"\\\\/nt]\n\
         int ::= [0-9]{{1,3}}\n\
         num ::= [0-9]{{1,6}} (\".\" [0-9]{{1,2}})?\n\
         bool ::= \"true\" | \"false\"\n"
    ));
    g
}

/// The text the model's reply starts with (written into the prompt, so it costs no decoding steps).
pub const CALL_PREFIX: &str = "{\"tool\":\"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_names_only_the_allowed_tools_and_leaves_dates_to_code() {
        let cat = super::super::catalogue();
        let g = for_calls(&cat, &["churn_risk", "sales_summary", "none"]);
        assert!(
            g.starts_with("root ::= call-sales-summary | call-churn-risk | call-none\n"),
            "{g}"
        );
        assert!(!g.contains("customer_profile"));
        // Enums become alternatives of their JSON strings; dates are not the model's to write.
        assert!(g.contains("\"\\\"week\\\"\""), "{g}");
        assert!(!g.contains("period"), "{g}");
        assert!(g.contains("\"\\\"top_k\\\"\" \":\" int"), "{g}");
        // Required arguments come first and are not optional.
        let g = for_calls(&cat, &["customer_profile"]);
        assert!(
            g.contains("\"{\" \"\\\"customer_id\\\"\" \":\" str customer-profile-after-0 \"}\""),
            "{g}"
        );
    }
}
