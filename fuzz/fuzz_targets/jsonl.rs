//! A JSON Lines file: every line is parsed and built into a record as `dongcha ingest` does.
#![no_main]
use dongcha::ingest::{fields, jsonl};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let rules = common::rules();
    for line in data.split(|b| *b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        if let Ok(raw) = jsonl::parse_line(text) {
            if let Ok(r) = fields::build_record(&raw, &rules) {
                common::check_record(&r, &rules);
            }
        }
    }
});
