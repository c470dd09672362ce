//! CDNOW-style transaction logs: whitespace-separated `customer date(YYYYMMDD) quantity amount`, with an
//! optional header line (the master file) or an extra sample-index column after the customer (the
//! sample file: `customer index date quantity amount`).
//!
//! These logs have no order id, and the same customer can buy the same number of CDs for the same amount
//! twice on one day (215 lines of CDNOW_master repeat exactly). Repeats are therefore kept as separate
//! transactions: the n-th identical line within a customer's run of lines gets ordinal n in its key.

use std::collections::HashMap;

use super::fields::{DateRules, FieldError, parse_date, parse_money};
use crate::store::{Purchase, ShopRecord};

/// Column layout, fixed per file by its first data line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// customer date quantity amount
    Master,
    /// customer sample-index date quantity amount
    Sample,
}

impl Layout {
    pub fn columns(self) -> usize {
        match self {
            Layout::Master => 4,
            Layout::Sample => 5,
        }
    }

    /// The layout of a data line, or `None` when the line is a header (starts with a non-digit).
    pub fn detect(line: &str) -> Option<Layout> {
        let cols: Vec<&str> = line.split_ascii_whitespace().collect();
        if !cols.first()?.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match cols.len() {
            5 => Some(Layout::Sample),
            _ => Some(Layout::Master),
        }
    }
}

pub fn parse_line(line: &str, layout: Layout, rules: &DateRules) -> Result<ShopRecord, FieldError> {
    let cols: Vec<&str> = line.split_ascii_whitespace().collect();
    if cols.len() != layout.columns() {
        return Err(FieldError::new(
            "(line)",
            format!(
                "expected {} whitespace-separated columns, found {}",
                layout.columns(),
                cols.len()
            ),
        ));
    }
    let (customer, date, qty, amount) = match layout {
        Layout::Master => (cols[0], cols[1], cols[2], cols[3]),
        Layout::Sample => (cols[0], cols[2], cols[3], cols[4]),
    };
    if !customer.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FieldError::new(
            "customer_id",
            format!("not an id: {customer:?}"),
        ));
    }
    if date.len() != 8 {
        return Err(FieldError::new(
            "date",
            format!("expected YYYYMMDD, found {date:?}"),
        ));
    }
    let date = parse_date(date, rules).map_err(|e| FieldError::new("date", e))?;
    let quantity: u32 = match qty.parse() {
        Ok(0) | Err(_) => {
            return Err(FieldError::new(
                "number_of_cds",
                format!("expected a whole number ≥ 1, found {qty:?}"),
            ));
        }
        Ok(n) => n,
    };
    let cents = parse_money(amount).map_err(|e| FieldError::new("dollar_value", e))?;
    if cents < 0 {
        return Err(FieldError::new(
            "dollar_value",
            format!("negative amount {amount}"),
        ));
    }
    Ok(ShopRecord {
        customer_id: customer.to_string(),
        product: None,
        purchase: Some(Purchase {
            date,
            quantity,
            amount_cents: Some(cents),
        }),
        review: None,
        social: None,
        search: None,
    })
}

/// Numbers repeats of identical lines within one customer's run of lines. Memory is bounded by the
/// largest run, not the file.
#[derive(Debug, Default)]
pub struct Repeats {
    customer: String,
    counts: HashMap<i64, u64>,
}

impl Repeats {
    /// The ordinal of this record among identical ones seen so far for the same customer (0 for the first).
    pub fn ordinal(&mut self, record: &ShopRecord) -> u64 {
        if record.customer_id != self.customer {
            self.customer.clone_from(&record.customer_id);
            self.counts.clear();
        }
        let k = record.content_key("cdnow", 0);
        let n = self.counts.entry(k).or_insert(0);
        let ord = *n;
        *n += 1;
        ord
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::fields::test_rules as rules;

    #[test]
    fn both_layouts_parse() {
        assert_eq!(
            Layout::detect(" customer_id  date number_of_cds  dollar_value"),
            None
        );
        assert_eq!(
            Layout::detect(" 00001 19970101  1   11.77"),
            Some(Layout::Master)
        );
        assert_eq!(
            Layout::detect(" 00004 0001 19970101  2   29.33"),
            Some(Layout::Sample)
        );
        let r = parse_line(" 00004 0001 19970101  2   29.33", Layout::Sample, &rules()).unwrap();
        assert_eq!(r.customer_id, "00004");
        let p = r.purchase.unwrap();
        assert_eq!(
            (p.date.to_string(), p.quantity, p.amount_cents),
            ("1997-01-01".into(), 2, Some(2933))
        );
    }

    #[test]
    fn bad_lines_name_the_column() {
        let table = [
            ("00001 19970230 1 11.77", "date", "impossible date"),
            ("00001 1997011 1 11.77", "date", "YYYYMMDD"),
            ("00001 19970101 0 11.77", "number_of_cds", "≥ 1"),
            ("00001 19970101 1 -3.00", "dollar_value", "negative"),
            ("00001 19970101 1 abc", "dollar_value", "expected a number"),
            ("00001 19970101 1", "(line)", "expected 4"),
        ];
        for (line, field, want) in table {
            let e = parse_line(line, Layout::Master, &rules()).unwrap_err();
            assert_eq!(e.field, field, "{line}");
            assert!(e.reason.contains(want), "{line}: {}", e.reason);
        }
    }

    #[test]
    fn repeats_get_ordinals_per_customer_run() {
        let a = parse_line("1 19970101 1 11.77", Layout::Master, &rules()).unwrap();
        let b = parse_line("2 19970101 1 11.77", Layout::Master, &rules()).unwrap();
        let mut r = Repeats::default();
        assert_eq!(
            [r.ordinal(&a), r.ordinal(&a), r.ordinal(&b), r.ordinal(&b)],
            [0, 1, 0, 1]
        );
    }
}
