//! The field parsers: dates in the forms shop exports use, and amounts of money. An amount that
//! parses reads back to itself when written out in cents.
#![no_main]
use dongcha::ingest::fields::{parse_date, parse_money};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let rules = common::rules();
    if let Ok(d) = parse_date(s, &rules) {
        assert!(rules.check(d).is_ok());
    }
    if let Ok(cents) = parse_money(s) {
        let sign = if cents < 0 { "-" } else { "" };
        let abs = cents.unsigned_abs();
        let written = format!("{sign}{}.{:02}", abs / 100, abs % 100);
        assert_eq!(parse_money(&written), Ok(cents), "{s:?} → {cents} → {written:?}");
    }
});
