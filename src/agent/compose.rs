//! Tool results → the reply, in the asker's language, short, with the tool's figures copied verbatim and
//! review ids where reviews back a claim. Replies are rendered by code from the typed output: the LLM
//! chooses tools and arguments, never figures or words that could carry them (so nothing it read — a
//! question, a review — can make a reply say something the tool did not return).

use serde_json::Value;

fn num(v: &Value) -> f64 {
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

fn pct(x: f64) -> String {
    format!("{x:.1}%")
}

fn signed_pct(x: f64) -> String {
    format!("{x:+.1}%")
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One of dongcha's own words (a segment, a model, an event, an incentive) in the reply's language.
fn tr(v: &Value, zh: bool) -> String {
    crate::terms::term(&s(v), zh)
}

fn period(v: &Value) -> String {
    let (a, b) = (s(&v["from"]), s(&v["to"]));
    if a == b { a } else { format!("{a} – {b}") }
}

fn ids(quotes: &Value) -> Vec<String> {
    quotes
        .as_array()
        .map(|a| a.iter().map(|q| format!("#{}", s(&q["id"]))).collect())
        .unwrap_or_default()
}

fn list<T>(v: &Value, f: impl Fn(&Value) -> T) -> Vec<T> {
    v.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

/// The reply for a tool's output.
pub fn reply(tool: &str, out: &Value, zh: bool) -> String {
    let t = |zh_text: String, en_text: String| if zh { zh_text } else { en_text };
    match tool {
        "sales_summary" => {
            let scope = match (out.get("product"), out.get("category")) {
                (Some(p), _) => t(format!("（{}）", s(p)), format!(" ({})", s(p))),
                (_, Some(c)) => t(format!("（{}）", s(c)), format!(" ({})", s(c))),
                _ => String::new(),
            };
            let change = out["revenue_change_pct"]
                .as_f64()
                .map(|c| {
                    t(
                        format!("，环比 {}", signed_pct(c)),
                        format!(", {} vs the period before", signed_pct(c)),
                    )
                })
                .unwrap_or_default();
            let mut r = t(
                format!(
                    "{}{scope}，销售额 {}，订单 {} 笔，客单价 {}，购买客户 {} 位{change}。",
                    period(&out["period"]),
                    money(num(&out["revenue"])),
                    out["orders"],
                    money(num(&out["aov"])),
                    out["customers"]
                ),
                format!(
                    "{}{scope}: revenue {}, {} orders, average order {}, {} customers{change}.",
                    period(&out["period"]),
                    money(num(&out["revenue"])),
                    out["orders"],
                    money(num(&out["aov"])),
                    out["customers"]
                ),
            );
            let groups = list(&out["groups"], |g| {
                format!("{} {}", s(&g["key"]), money(num(&g["revenue"])))
            });
            if !groups.is_empty() {
                let shown: Vec<String> = groups.into_iter().take(8).collect();
                r.push_str(&t(
                    format!("\n分组：{}", shown.join("；")),
                    format!("\nBy group: {}", shown.join("; ")),
                ));
            }
            r
        }
        "sales_forecast" => {
            let scope = out
                .get("product")
                .or(out.get("category"))
                .map(|p| format!(" ({})", s(p)))
                .unwrap_or_default();
            let change = out["change_pct"]
                .as_f64()
                .map(|c| {
                    t(
                        format!("，比之前同样天数 {}", signed_pct(c)),
                        format!(", {} on the same number of days before", signed_pct(c)),
                    )
                })
                .unwrap_or_default();
            let events = list(&out["event_effects"], |e| {
                format!("{} x{:.2}", tr(&e["name"], zh), num(&e["ratio"]))
            });
            let ev = if events.is_empty() {
                String::new()
            } else {
                t(
                    format!("\n计入的节日/促销效应：{}", events.join("，")),
                    format!("\nHolidays/promotions modelled: {}", events.join(", ")),
                )
            };
            t(
                format!(
                    "预测{scope} {} 至 {}（{} 天）销售额合计 {}{change}，模型 {}。{ev}",
                    s(&out["from"]),
                    s(&out["to"]),
                    out["horizon_days"],
                    money(num(&out["total"])),
                    tr(&out["method"], true)
                ),
                format!(
                    "Forecast{scope} for {} to {} ({} days): {} in total{change}; model {}.{ev}",
                    s(&out["from"]),
                    s(&out["to"]),
                    out["horizon_days"],
                    money(num(&out["total"])),
                    tr(&out["method"], false)
                ),
            )
        }
        "customer_segments" => {
            let rows = list(&out["segments"], |g| {
                t(
                    format!(
                        "{}：{} 位，贡献 {} 收入，人均消费 {}",
                        tr(&g["name"], true),
                        g["customers"],
                        pct(num(&g["revenue_share_pct"])),
                        money(num(&g["mean_spent"]))
                    ),
                    format!(
                        "{}: {} customers, {} of revenue, {} spent on average",
                        tr(&g["name"], false),
                        g["customers"],
                        pct(num(&g["revenue_share_pct"])),
                        money(num(&g["mean_spent"]))
                    ),
                )
            });
            t(
                format!(
                    "截至 {}，{} 位客户分为 {} 个客户群：\n{}",
                    s(&out["as_of"]),
                    out["customers"],
                    out["k"],
                    rows.join("\n")
                ),
                format!(
                    "As of {}, {} customers fall into {} segments:\n{}",
                    s(&out["as_of"]),
                    out["customers"],
                    out["k"],
                    rows.join("\n")
                ),
            )
        }
        "churn_risk" => {
            let scope = out
                .get("segment")
                .map(|g| {
                    t(
                        format!("“{}”客户群中", tr(g, true)),
                        format!(" in segment \"{}\"", tr(g, false)),
                    )
                })
                .unwrap_or_default();
            let top = list(&out["top"], |c| {
                t(
                    format!(
                        "{}（流失概率 {}，累计消费 {}）",
                        s(&c["customer"]),
                        pct(num(&c["churn_probability_pct"])),
                        money(num(&c["total_spent"]))
                    ),
                    format!(
                        "{} ({} churn risk, spent {})",
                        s(&c["customer"]),
                        pct(num(&c["churn_probability_pct"])),
                        money(num(&c["total_spent"]))
                    ),
                )
            });
            t(
                format!(
                    "{scope}{} 位客户里有 {} 位未来 {} 天流失概率 ≥ {}%，他们累计消费 {}。风险最高：{}。",
                    out["customers"],
                    out["likely_to_churn"],
                    out["horizon_days"],
                    out["threshold_pct"],
                    money(num(&out["likely_to_churn_spent"])),
                    top.join("；")
                ),
                format!(
                    "Of {} customers{scope}, {} have a churn risk of {}% or more over the next {} days; they spent {} in total. Highest risk: {}.",
                    out["customers"],
                    out["likely_to_churn"],
                    out["threshold_pct"],
                    out["horizon_days"],
                    money(num(&out["likely_to_churn_spent"])),
                    top.join("; ")
                ),
            )
        }
        "customer_profile" => {
            let products = list(&out["products"], |p| s(&p["product"]));
            let shown: Vec<String> = products.into_iter().take(3).collect();
            let churn = out["churn_probability_pct"]
                .as_f64()
                .map(pct)
                .unwrap_or_else(|| "-".into());
            let reviews = ids(&Value::Array(list(
                &out["recent_review_ids"],
                |i| serde_json::json!({"id": i}),
            )));
            t(
                format!(
                    "客户 {}：{} 笔订单，累计消费 {}，首购 {}，最近一次 {}（{} 天前），客户群“{}”，流失概率 {}，未来 {} 个月预期价值 {}。常买：{}。评论 {} 条（差评 {} 条）{}。",
                    s(&out["customer"]),
                    out["orders"],
                    money(num(&out["total_spent"])),
                    s(&out["first_purchase"]),
                    s(&out["last_purchase"]),
                    out["days_since_last"],
                    tr(&out["segment"], true),
                    churn,
                    out["clv_months"],
                    money(num(&out["clv"])),
                    shown.join("、"),
                    out["reviews"],
                    out["negative_reviews"],
                    if reviews.is_empty() {
                        String::new()
                    } else {
                        format!("，最近：{}", reviews.join(" "))
                    }
                ),
                format!(
                    "Customer {}: {} orders, {} spent, first bought {}, last {} ({} days ago), segment \"{}\", churn risk {}, expected value over {} months {}. Buys most: {}. {} reviews ({} negative){}.",
                    s(&out["customer"]),
                    out["orders"],
                    money(num(&out["total_spent"])),
                    s(&out["first_purchase"]),
                    s(&out["last_purchase"]),
                    out["days_since_last"],
                    tr(&out["segment"], false),
                    churn,
                    out["clv_months"],
                    money(num(&out["clv"])),
                    shown.join(", "),
                    out["reviews"],
                    out["negative_reviews"],
                    if reviews.is_empty() {
                        String::new()
                    } else {
                        format!(", latest {}", reviews.join(" "))
                    }
                ),
            )
        }
        "customer_value" => {
            let top = list(&out["top"], |c| {
                format!("{} {}", s(&c["customer"]), money(num(&c["clv"])))
            });
            t(
                format!(
                    "未来 {} 个月全部 {} 位客户预期价值合计 {}；前 {} 位占 {}：{}。",
                    out["months"],
                    out["customers"],
                    money(num(&out["total_clv"])),
                    out["listed"],
                    pct(num(&out["top_share_pct"])),
                    top.join("，")
                ),
                format!(
                    "Expected value of all {} customers over {} months: {}; the top {} hold {}: {}.",
                    out["customers"],
                    out["months"],
                    money(num(&out["total_clv"])),
                    out["listed"],
                    pct(num(&out["top_share_pct"])),
                    top.join(", ")
                ),
            )
        }
        "review_sentiment" => {
            let scope = out
                .get("product")
                .map(|p| format!(" ({})", s(p)))
                .unwrap_or_default();
            let worst = ids(&out["most_negative"]);
            let rating = out["mean_rating"]
                .as_f64()
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into());
            let unl = out["unlabelled"].as_u64().unwrap_or(0);
            let note = if unl > 0 {
                t(
                    format!("（{unl} 条尚未标注，请运行 `dongcha enrich`）"),
                    format!(" ({unl} not labelled yet: run `dongcha enrich`)"),
                )
            } else {
                String::new()
            };
            t(
                format!(
                    "{}{scope}，共 {} 条评论{note}：差评 {} 条（{}），中评 {} 条，好评 {} 条（{}），平均评分 {}；差评占比较上期变化 {:+.1} 个百分点。{}",
                    period(&out["period"]),
                    out["reviews"],
                    out["negative"],
                    pct(num(&out["negative_pct"])),
                    out["neutral"],
                    out["positive"],
                    pct(num(&out["positive_pct"])),
                    rating,
                    num(&out["negative_change_pts"]),
                    if worst.is_empty() {
                        String::new()
                    } else {
                        format!("最负面的评论：{}。", worst.join(" "))
                    }
                ),
                format!(
                    "{}{scope}: {} reviews{note}: {} negative ({}), {} neutral, {} positive ({}), mean rating {}; the negative share moved {:+.1} points against the period before.{}",
                    period(&out["period"]),
                    out["reviews"],
                    out["negative"],
                    pct(num(&out["negative_pct"])),
                    out["neutral"],
                    out["positive"],
                    pct(num(&out["positive_pct"])),
                    rating,
                    num(&out["negative_change_pts"]),
                    if worst.is_empty() {
                        String::new()
                    } else {
                        format!(" Most negative: {}.", worst.join(" "))
                    }
                ),
            )
        }
        "top_complaints" => {
            let scope = out
                .get("product")
                .map(|p| format!(" ({})", s(p)))
                .unwrap_or_default();
            let topics = list(&out["topics"], |x| {
                let change = x["change_pct"]
                    .as_f64()
                    .map(|c| format!(", {}", signed_pct(c)))
                    .unwrap_or_default();
                let ex = ids(&x["examples"]);
                format!(
                    "{} — {}{change}{}",
                    s(&x["topic"]),
                    x["complaints"],
                    if ex.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", ex.join(" "))
                    }
                )
            });
            if topics.is_empty() {
                return t(
                    format!(
                        "{}{scope}，没有找到差评话题（{} 条评论中差评 {} 条）。",
                        period(&out["period"]),
                        out["reviews"],
                        out["negative_reviews"]
                    ),
                    format!(
                        "{}{scope}: no complaint topics found ({} reviews, {} negative).",
                        period(&out["period"]),
                        out["reviews"],
                        out["negative_reviews"]
                    ),
                );
            }
            t(
                format!(
                    "{}{scope}，{} 条评论中差评 {} 条，主要抱怨：\n{}",
                    period(&out["period"]),
                    out["reviews"],
                    out["negative_reviews"],
                    topics.join("\n")
                ),
                format!(
                    "{}{scope}: {} reviews, {} negative. Main complaints:\n{}",
                    period(&out["period"]),
                    out["reviews"],
                    out["negative_reviews"],
                    topics.join("\n")
                ),
            )
        }
        "search_reviews" => {
            let rows = list(&out["reviews"], |r| {
                format!(
                    "#{} [{}] {} — {}",
                    s(&r["id"]),
                    tr(&r["sentiment"], zh),
                    s(&r["product"]),
                    s(&r["text"])
                )
            });
            if rows.is_empty() {
                return t(
                    format!("没有找到与“{}”相关的评论。", s(&out["query"])),
                    format!("No reviews found for \"{}\".", s(&out["query"])),
                );
            }
            t(
                format!(
                    "与“{}”最相关的 {} 条评论：\n{}",
                    s(&out["query"]),
                    out["found"],
                    rows.join("\n")
                ),
                format!(
                    "The {} reviews closest to \"{}\":\n{}",
                    out["found"],
                    s(&out["query"]),
                    rows.join("\n")
                ),
            )
        }
        "purchase_intent" => {
            let scope = out
                .get("product")
                .map(|p| format!(" ({})", s(p)))
                .unwrap_or_default();
            let ex = ids(&out["abandon_examples"]);
            t(
                format!(
                    "{}{scope}，{} 条评论和帖子：想买 {} 条（{}），放弃 {} 条（{}），观望 {} 条（{}）。{}",
                    period(&out["period"]),
                    out["texts"],
                    out["buy"],
                    pct(num(&out["buy_pct"])),
                    out["abandon"],
                    pct(num(&out["abandon_pct"])),
                    out["wait"],
                    pct(num(&out["wait_pct"])),
                    if ex.is_empty() {
                        String::new()
                    } else {
                        format!("放弃的例子：{}。", ex.join(" "))
                    }
                ),
                format!(
                    "{}{scope}: {} reviews and posts — buy {} ({}), abandon {} ({}), wait {} ({}).{}",
                    period(&out["period"]),
                    out["texts"],
                    out["buy"],
                    pct(num(&out["buy_pct"])),
                    out["abandon"],
                    pct(num(&out["abandon_pct"])),
                    out["wait"],
                    pct(num(&out["wait_pct"])),
                    if ex.is_empty() {
                        String::new()
                    } else {
                        format!(" Abandoning, e.g. {}.", ex.join(" "))
                    }
                ),
            )
        }
        "product_report" => [
            reply("sales_summary", &out["sales"], zh),
            reply("review_sentiment", &out["sentiment"], zh),
            reply("top_complaints", &out["complaints"], zh),
            reply("purchase_intent", &out["intent"], zh),
        ]
        .join("\n"),
        "recommend_products" => {
            let who = match (out.get("customer"), out.get("segment")) {
                (Some(c), _) => t(format!("客户 {}", s(c)), format!("customer {}", s(c))),
                (_, Some(g)) => t(
                    format!("“{}”客户群（{} 位）", tr(g, true), out["customers"]),
                    format!(
                        "segment \"{}\" ({} customers)",
                        tr(g, false),
                        out["customers"]
                    ),
                ),
                _ => String::new(),
            };
            let recs = list(&out["recommendations"], |r| {
                format!("{} ({:.2})", s(&r["product"]), num(&r["combined"]))
            });
            if recs.is_empty() {
                return t(
                    format!("{who}暂时没有可推荐的产品。"),
                    format!("Nothing to recommend to {who} yet."),
                );
            }
            t(
                format!("推荐给{who}：{}。", recs.join("，")),
                format!("For {who}: {}.", recs.join(", ")),
            )
        }
        "promotion_plan" => {
            let top = list(&out["top"], |c| {
                format!("{} {}", s(&c["customer"]), money(num(&c["value_at_stake"])))
            });
            let goal = s(&out["goal"]);
            let goal_zh = match goal.as_str() {
                "retain" => "挽留",
                "reactivate" => "召回",
                _ => "提升客单",
            };
            t(
                format!(
                    "{goal_zh}方案：针对 {} 位客户，激励“{}”，涉及价值合计 {}。名单：{}。",
                    out["targets"],
                    tr(&out["incentive"], true),
                    money(num(&out["total_value_at_stake"])),
                    top.join("，")
                ),
                format!(
                    "Plan to {goal}: {} customers, incentive \"{}\", {} of value at stake. Targets: {}.",
                    out["targets"],
                    tr(&out["incentive"], false),
                    money(num(&out["total_value_at_stake"])),
                    top.join(", ")
                ),
            )
        }
        _ => none_reply(zh),
    }
}

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
    // A compared period is written as the other replies write periods.
    let label = |v: &Value| {
        let l = s(v);
        match l.split_once("..") {
            Some((a, b)) if a.len() == 10 && b.len() == 10 => format!("{a} – {b}"),
            _ => l,
        }
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
            format!("{}：{}", label(&row["label"]), figs.join("，")),
            format!("{}: {}", label(&row["label"]), figs.join(", ")),
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
        let (a, b) = (label(&d["of"][0]), label(&d["of"][1]));
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
