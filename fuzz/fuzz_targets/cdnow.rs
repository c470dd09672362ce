//! A CDNOW-style purchase file (whitespace-separated, 4 or 5 columns): the layout read off the first
//! data line, every line parsed, identical lines numbered per customer.
#![no_main]
use dongcha::ingest::cdnow::{self, Layout, Repeats};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let rules = common::rules();
    let mut layout: Option<Layout> = None;
    let mut repeats = Repeats::default();
    for line in data.split(|b| *b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let l = match layout {
            Some(l) => l,
            None => match Layout::detect(text) {
                Some(l) => {
                    layout = Some(l);
                    l
                }
                None => continue,
            },
        };
        assert!(l.columns() >= 4);
        if let Ok(r) = cdnow::parse_line(text, l, &rules) {
            common::check_record(&r, &rules);
            let _ = repeats.ordinal(&r);
        }
    }
});
