//! Regression tests: each pins a bug that was found, named for what broke.

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dongcha")
}

/// `dongcha chat` exited with "stream did not contain valid UTF-8" on one bad line of input and dropped
/// the lines after it. Now the bad line gets a reply naming it, and the next line is still answered.
#[test]
fn chat_answers_the_lines_after_one_that_is_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.jsonl");
    std::fs::write(
        &file,
        "{\"userId\":\"u1\",\"purchaseDate\":\"2026-05-03\",\"productName\":\"iPhone 13\",\"price\":5199}\n",
    )
    .unwrap();
    let o = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path())
        .arg("ingest")
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["chat", "--no-llm"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"/help\n").unwrap();
    input.write_all(b"sales \xff\xfe last month\n").unwrap();
    input.write_all(b"/help\n").unwrap();
    drop(input);
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let replies: Vec<&str> = out.split("\n\n").filter(|r| !r.trim().is_empty()).collect();
    assert_eq!(replies.len(), 3, "{out}");
    assert!(
        replies[1].contains("line 2 is not UTF-8") && replies[1].contains("byte at 7"),
        "{out}"
    );
    assert_eq!(
        replies[0], replies[2],
        "the line after the bad one is answered"
    );
}

/// `dongcha enrich` failed with "Shape mismatch, got buffer of size 191616 … [512, 384]" on a chunk
/// holding the same new review text twice ("很好" twice is common): the vector cache gave the second
/// occurrence an empty vector. Found by the enrich kill test. Every occurrence gets the vector now.
#[test]
fn a_new_text_that_occurs_twice_gets_its_vector_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dongcha::config::Config::load(None)
        .unwrap()
        .with_data_dir(dir.path());
    let encoder = dongcha::heads::review_encoder(&cfg).unwrap();
    let mut cache = dongcha::heads::vector_cache(&cfg, &encoder).unwrap();
    let texts = ["质量很好，物流也快", "太差了", "质量很好，物流也快"];
    let v = cache
        .vectors_with(
            &encoder,
            &texts,
            8,
            &indicatif::ProgressBar::hidden(),
            false,
        )
        .unwrap();
    assert_eq!(v.len(), 3);
    assert!(
        v.iter().all(|x| x.len() == encoder.dim()),
        "an empty vector"
    );
    assert_eq!(v[0], v[2]);
    assert_ne!(v[0], v[1]);
}

/// Found by fuzzing (`fuzz/` target `date_money`): "1e12" was taken as 1,000,000,000,000.00 while the
/// same amount written out ("1000000000000.00") was refused: the two forms had different bounds.
#[test]
fn an_amount_in_exponent_form_has_the_bound_of_the_amount_written_out() {
    use dongcha::ingest::fields::parse_money;
    assert!(parse_money("1000000000000.00").is_err());
    assert!(parse_money("1e12").is_err());
    assert_eq!(parse_money("999999999999.99"), Ok(99_999_999_999_999));
    assert_eq!(parse_money("9.99e11"), Ok(99_900_000_000_000));
}

/// Found by fuzzing (`fuzz/` target `lines`): a line of exactly one byte over `max_line_bytes` ending in
/// LF was kept (the limit allowed two bytes for a CRLF ending it did not have); a quoted CSV field could
/// take a record over the limit the same way.
#[test]
fn a_line_one_byte_over_the_limit_is_handed_over_not_kept() {
    use dongcha::ingest::lines::LineReader;
    for (input, max, csv, kept, long) in [
        (
            &b"abc\nabcd\nab\r\nabcd\r\n"[..],
            3,
            false,
            vec!["abc", "ab"],
            2,
        ),
        (&b"\"a\nb\"\n\"ab\nc\"\n"[..], 5, true, vec!["\"a\nb\""], 1),
    ] {
        let mut r = LineReader::new(input, max, csv);
        let (mut got, mut longs) = (Vec::new(), 0);
        loop {
            let c = r.read_chunk(10).unwrap();
            for i in 0..c.lines.len() {
                got.push(String::from_utf8(c.line(i).to_vec()).unwrap());
            }
            if c.long_line.is_some() {
                longs += 1;
                r.drain_long_line(&mut std::io::sink()).unwrap();
            } else if c.lines.is_empty() {
                break;
            }
        }
        assert_eq!(
            (got, longs),
            (kept.iter().map(|s| s.to_string()).collect(), long)
        );
    }
}

/// Found by fuzzing (`fuzz/` target `relative_dates`): "双12" asked on 2036-12-10 resolved to
/// 12-01 … 12-12, past today, while "618" during its run was cut at today (the reader's promise: periods
/// end no later than today). Every shopping festival in progress is cut at today now.
#[test]
fn a_festival_in_progress_ends_today_not_in_the_future() {
    use chrono::NaiveDate;
    use dongcha::agent::dates::resolve;
    let day = |m, d| NaiveDate::from_ymd_opt(2036, m, d).unwrap();
    for (q, today, from) in [
        ("双12卖了多少", day(12, 10), day(12, 1)),
        ("双十一的销售额", day(11, 5), day(11, 1)),
        ("black friday sales", day(11, 25), day(11, 20)),
        ("618 sales", day(6, 10), day(6, 1)),
    ] {
        let p = resolve(q, today).unwrap();
        assert_eq!((p.from, p.to), (from, today), "{q}");
    }
}

/// Found by fuzzing (relative_dates): a question compared "against today" ("比today", "比今天") took as the
/// other period the one after today, cut at today: from tomorrow to today, a period ending before it
/// starts. With nothing after today to compare with, there is no comparison.
#[test]
fn a_comparison_against_today_has_no_period_that_starts_tomorrow() {
    use chrono::NaiveDate;
    use dongcha::agent::dates::periods;
    let today = NaiveDate::from_ymd_opt(2032, 7, 3).unwrap();
    for q in [
        "eOO#OO比OOOtodayOOOO#%\0\0\0\0\0\0\0OO#OOOO'",
        "销售额比今天",
        "orders 比 today",
    ] {
        for p in periods(q, today) {
            assert!(p.from <= p.to && p.to <= today, "{q:?}: {p:?}");
        }
    }
    // Against yesterday there is a day after it: today.
    let ps = periods("今天的销售额比昨天", today);
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert!(ps.iter().all(|p| p.from <= p.to && p.to <= today), "{ps:?}");
}

/// Found by fuzzing (relative_dates): a quarter of a year far ahead ("q4" of 3333…) was cut at today into
/// a period from 3333-10-01 to today. A period that starts after today is no period of the past: none.
#[test]
fn a_period_that_starts_after_today_is_not_read_as_one() {
    use chrono::NaiveDate;
    use dongcha::agent::dates::resolve;
    let today = NaiveDate::from_ymd_opt(2026, 11, 9).unwrap();
    for q in ["\r33333333333333333333333\u{c} q4'c", "3333 q4 sales"] {
        if let Some(p) = resolve(q, today) {
            assert!(p.from <= p.to && p.to <= today, "{q:?}: {p:?}");
        }
    }
    let p = resolve("2026 q3 sales", today).unwrap();
    assert_eq!(p.from, NaiveDate::from_ymd_opt(2026, 7, 1).unwrap());
}
