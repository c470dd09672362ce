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
