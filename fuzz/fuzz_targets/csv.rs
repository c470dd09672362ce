//! A CSV file: the header row, then rows (quoted fields may span lines), read and built into records
//! as `dongcha ingest` does.
#![no_main]
use dongcha::ingest::{csv, fields, lines::LineReader};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let rules = common::rules();
    let mut reader = LineReader::new(data, 4096, true);
    let mut header: Option<csv::Header> = None;
    loop {
        let chunk = reader.read_chunk(64).expect("reading from memory");
        for i in 0..chunk.lines.len() {
            let Ok(text) = std::str::from_utf8(chunk.line(i)) else {
                continue;
            };
            match &header {
                None => match csv::Header::parse(text) {
                    Ok(h) => header = Some(h),
                    Err(_) => return,
                },
                Some(h) => {
                    if let Ok(raw) = h.parse_row(text) {
                        if let Ok(r) = fields::build_record(&raw, &rules) {
                            common::check_record(&r, &rules);
                        }
                    }
                }
            }
        }
        if chunk.long_line.is_some() {
            reader.drain_long_line(&mut std::io::sink()).expect("memory");
        } else if chunk.lines.is_empty() {
            break;
        }
    }
});
