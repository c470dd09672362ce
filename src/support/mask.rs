//! Personal data masked in everything customer service sends to operator channels, webhooks and logs
//! (the raw text stays in the store): e-mail addresses, phone numbers, Chinese resident ID numbers, card
//! numbers and street addresses, in Chinese and English formats.

use std::sync::LazyLock;

use regex::Regex;

struct Rule {
    re: Regex,
    with: &'static str,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |re: &str, with| Rule {
        re: Regex::new(re).expect("valid mask pattern"),
        with,
    };
    vec![
        rule(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[email]"),
        // Resident ID: 17 digits and a digit or X (before phone and card rules, which would take part).
        rule(
            r"(?-u:\b)[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?-u:\b)",
            "[id]",
        ),
        // Card numbers: 13–19 digits, optionally grouped by spaces or dashes.
        rule(
            r"(?-u:\b)\d{4}(?:[ -]?\d{4}){2,3}(?:[ -]?\d{1,3})?(?-u:\b)",
            "[card]",
        ),
        // Phones: mainland mobiles (+86 optional), landlines with an area code, international numbers.
        rule(
            r"(?:\+?86[ -]?)?(?-u:\b)1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?-u:\b)",
            "[phone]",
        ),
        rule(r"(?-u:\b)0\d{2,3}[ -]?\d{7,8}(?-u:\b)", "[phone]"),
        rule(
            r"\+\d{1,3}[ (.-]*\d{1,4}[ ).-]*\d{3,4}[ .-]?\d{3,4}(?-u:\b)",
            "[phone]",
        ),
        rule(
            r"\(?(?-u:\b)\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?-u:\b)",
            "[phone]",
        ),
        // Chinese street addresses: … 路/街/道/巷/大道 + a number 号 (with what follows: building, room).
        rule(
            r"[\p{Han}\d]{0,12}(?:省|市|区|县|镇)?[\p{Han}\d]{1,12}(?:路|街|道|巷|大道|胡同)\s*\d+\s*号(?:[\p{Han}\d\-]*(?:栋|幢|楼|单元|室|座))*",
            "[address]",
        ),
        // English street addresses: a number, one to four words, a street type.
        rule(
            r"(?i)(?-u:\b)\d{1,5}[A-Za-z]?\s+(?:[A-Za-z0-9.'-]+\s+){1,4}(?:street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|dr|way|court|ct|place|pl)(?-u:\b)\.?",
            "[address]",
        ),
    ]
});

/// `text` with personal data replaced by `[email]`, `[phone]`, `[id]`, `[card]`, `[address]`.
pub fn mask(text: &str) -> String {
    let mut out = text.to_string();
    for r in RULES.iter() {
        out = r.re.replace_all(&out, r.with).into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_masked_in_chinese_and_english_formats() {
        let cases = [
            (
                "我的手机 13812345678，快点发货",
                "我的手机 [phone]，快点发货",
            ),
            ("call +86 138 1234 5678 please", "call [phone] please"),
            ("座机 021-62345678", "座机 [phone]"),
            ("my number is (415) 555-2671", "my number is [phone]"),
            ("UK +44 20 7946 0958", "UK [phone]"),
            ("邮箱 zhang.san@example.com", "邮箱 [email]"),
            ("身份证 11010519491231002X 能开票吗", "身份证 [id] 能开票吗"),
            (
                "card 4111 1111 1111 1111 was charged",
                "card [card] was charged",
            ),
            ("卡号6222020200112233445", "卡号[card]"),
            ("寄到上海市浦东新区世纪大道100号3号楼502室", "[address]"),
            (
                "send it to 221B Baker Street, London",
                "send it to [address], London",
            ),
            (
                "send it to 1600 Amphitheatre Parkway or 742 Evergreen Terrace Rd",
                "send it to 1600 Amphitheatre Parkway or [address]",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(mask(raw), want, "{raw}");
        }
    }

    #[test]
    fn order_numbers_prices_and_dates_are_left_alone() {
        for keep in [
            "订单 00042 什么时候发货",
            "it cost 2999 yuan on 2026-06-18",
            "iPhone 13 Pro 256GB",
            "退款 1–3 个工作日",
        ] {
            assert_eq!(mask(keep), keep);
        }
    }
}
