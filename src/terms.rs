//! The words of dongcha's own making that reach a reply — segment names, incentives, forecasting
//! models, built-in events, table columns — in the question's language. Tools keep one stable English
//! name in their JSON (scripts read it); a reply in Chinese says it in Chinese. Data (product names,
//! review text, a shop's own promotion names) is never translated.

/// `term` in Chinese when `zh`, else as it is. Unknown words are returned unchanged (a shop's own names).
pub fn term(term: &str, zh: bool) -> String {
    if !zh {
        return term.to_string();
    }
    zh_term(term).unwrap_or_else(|| term.to_string())
}

/// The Chinese for one of dongcha's words, if it is one. Segments that share a name are numbered
/// ("low-value lapsed (2)"): the number stays.
pub fn zh_term(term: &str) -> Option<String> {
    if let Some((name, n)) = term.strip_suffix(')').and_then(|t| t.rsplit_once(" ("))
        && !n.is_empty()
        && n.chars().all(|c| c.is_ascii_digit())
    {
        return zh_term(name).map(|z| format!("{z}（{n}）"));
    }
    let fixed = match term {
        // Segments (insight::segment names them).
        "new customers" => Some("新客户"),
        "high-value loyal" => Some("高价值忠诚客户"),
        "at-risk high-value" => Some("高价值流失风险客户"),
        // Incentives (insight::recommend).
        "loyalty coupon on the next order" => Some("下次下单可用的会员优惠券"),
        "win-back discount with free delivery" => Some("回归折扣加免运费"),
        "bundle offer / next-tier product" => Some("组合优惠或升级款产品"),
        // Forecasting models (insight::forecast).
        "seasonal naive" => Some("季节朴素法"),
        "Holt-Winters (additive)" => Some("霍尔特-温特斯（加法）"),
        "Holt-Winters (multiplicative)" => Some("霍尔特-温特斯（乘法）"),
        "seasonal ARIMA (airline, log)" => Some("季节性自回归积分滑动平均（航空模型，对数）"),
        "AutoETS (form chosen by AICc)" => Some("自动指数平滑（按AICc选形式）"),
        "MSTL (weekly and yearly seasons) + ETS" => Some("多季节分解（周、年）+ 指数平滑"),
        "Theta (exponential smoothing with drift)" => Some("Theta法（带漂移的指数平滑）"),
        "combined (mean of the models that passed)" => Some("组合模型（通过检验的模型的均值）"),
        // Built-in events (insight::calendar).
        "spring festival" => Some("春节"),
        "double 11" => Some("双十一"),
        "double 12" => Some("双十二"),
        // Review labels (sentiment, purchase intent).
        "negative" => Some("差评"),
        "positive" => Some("好评"),
        "neutral" => Some("中性"),
        "buy" => Some("购买"),
        "abandon" => Some("放弃"),
        "wait" => Some("观望"),
        "none" => Some("无购买意向"),
        // Flags in tables.
        "true" => Some("是"),
        "false" => Some("否"),
        // Goals (promotion_plan).
        "retain" => Some("挽留"),
        "reactivate" => Some("召回"),
        "upsell" => Some("提升客单"),
        _ => None,
    };
    if let Some(t) = fixed {
        return Some(t.to_string());
    }
    // Segments named "<value> lapsed" / "<value> active".
    let (value, state) = term.rsplit_once(' ')?;
    let value = match value {
        "high-value" => "高价值",
        "mid-value" => "中等价值",
        "low-value" => "低价值",
        _ => return None,
    };
    let state = match state {
        "lapsed" => "沉睡客户",
        "active" => "活跃客户",
        _ => return None,
    };
    Some(format!("{value}{state}"))
}

/// A table column (a field of a tool's output) as a reader calls it.
pub fn column(field: &str, zh: bool) -> String {
    let (z, e) = match field {
        "customer" => ("客户", "customer"),
        "customers" => ("客户数", "customers"),
        "product" => ("产品", "product"),
        "category" => ("品类", "category"),
        "name" => ("名称", "name"),
        "segment" => ("客户群", "segment"),
        "revenue" => ("销售额", "revenue"),
        "revenue_share_pct" => ("收入占比 %", "revenue share %"),
        "orders" => ("订单数", "orders"),
        "units" => ("件数", "units"),
        "quantity" => ("数量", "quantity"),
        "aov" => ("客单价", "average order"),
        "mean_spent" => ("人均消费", "mean spent"),
        "total_spent" => ("累计消费", "total spent"),
        "mean_orders" => ("人均订单", "mean orders"),
        "mean_days_since_last" => ("平均距上次购买天数", "mean days since last"),
        "days_since_last" => ("距上次购买天数", "days since last"),
        "last_purchase" => ("最近一次购买", "last purchase"),
        "first_purchase" => ("首次购买", "first purchase"),
        "churn_probability_pct" => ("流失概率 %", "churn probability %"),
        "p_alive" => ("仍活跃概率", "p(alive)"),
        "clv" => ("预期价值", "expected value"),
        "expected_purchases" => ("预期购买次数", "expected purchases"),
        "expected_order_value" => ("预期客单价", "expected order value"),
        "value_at_stake" => ("涉及价值", "value at stake"),
        "incentive" => ("激励", "incentive"),
        "goal" => ("目标", "goal"),
        "topic" => ("话题", "topic"),
        "keyword" | "keywords" => ("关键词", "keywords"),
        "key" => ("分组", "group"),
        "complaints" => ("差评数", "complaints"),
        "share_pct" => ("占比 %", "share %"),
        "change_pct" => ("变化 %", "change %"),
        "significant" => ("显著", "significant"),
        "id" => ("编号", "id"),
        "review_id" => ("评论编号", "review"),
        "text" => ("内容", "text"),
        "rating" => ("评分", "rating"),
        "date" => ("日期", "date"),
        "score" => ("得分", "score"),
        "similarity" => ("相似度", "similarity"),
        "sentiment" => ("情感", "sentiment"),
        "combined" => ("综合得分", "score"),
        "co_purchase" => ("共同购买得分", "co-purchase"),
        "similar" => ("相似得分", "similarity"),
        "ratio" => ("倍数", "ratio"),
        "label" => ("对比项", "compared"),
        "total" => ("预测合计", "forecast total"),
        "previous_total" => ("此前同样天数", "same days before"),
        "reviews" => ("评论数", "reviews"),
        "negative_reviews" => ("差评数", "negative reviews"),
        "negative_pct" => ("差评占比 %", "negative %"),
        "positive_pct" => ("好评占比 %", "positive %"),
        "abandon_pct" => ("放弃占比 %", "abandon %"),
        "wait_pct" => ("观望占比 %", "wait %"),
        "buy_pct" => ("购买占比 %", "buy %"),
        "texts" => ("文本数", "texts"),
        "stating_intent" => ("表达意向的文本", "stating an intent"),
        "unlabelled" => ("未标注", "unlabelled"),
        "past_days" => ("历史天数", "past days"),
        "past_occurrences" => ("历史次数", "past occurrences"),
        "learned_ratio" => ("学到的倍数（未收缩）", "learned ratio (unshrunk)"),
        "forecast_days" => ("预测期天数", "forecast days"),
        "weeks_since_last" => ("距上次购买周数", "weeks since last"),
        "reviewers" => ("写评论的客户", "reviewers"),
        "mean_sentiment" => ("平均情感", "mean sentiment"),
        "week" => ("周", "week"),
        "previous_complaints" => ("上期差评数", "complaints before"),
        "p_value" => ("p 值", "p-value"),
        "spent" => ("消费", "spent"),
        "review_interest" => ("评论兴趣得分", "review interest"),
        "days" => ("天数", "days"),
        "period" => ("时段", "period"),
        "from" => ("起", "from"),
        "to" => ("止", "to"),
        other => return other.replace('_', " "),
    };
    if zh { z } else { e }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_segment_name_has_chinese() {
        for v in ["high-value", "mid-value", "low-value"] {
            for s in ["lapsed", "active"] {
                let t = zh_term(&format!("{v} {s}")).expect("named");
                assert!(!t.chars().any(|c| c.is_ascii_alphabetic()), "{t}");
            }
        }
        for s in ["new customers", "high-value loyal", "at-risk high-value"] {
            assert!(zh_term(s).is_some(), "{s}");
        }
    }

    #[test]
    fn unknown_columns_are_said_without_underscores() {
        assert_eq!(column("some_new_field", false), "some new field");
        assert_eq!(column("churn_probability_pct", true), "流失概率 %");
    }

    #[test]
    fn a_shops_own_names_stay_as_they_are() {
        assert_eq!(term("anniversary sale", true), "anniversary sale");
        assert_eq!(term("spring festival", false), "spring festival");
        assert_eq!(term("spring festival", true), "春节");
        assert_eq!(term("low-value lapsed (2)", true), "低价值沉睡客户（2）");
    }
}
