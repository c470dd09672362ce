//! End-to-end ingestion: files on disk → `ingest_file` → the store, read back with SQL; every test runs
//! on SQLite and on PostgreSQL.

mod common;

use std::io::Write;
use std::path::Path;

use chrono::NaiveDate;
use dongcha::ingest::{Format, ImportReport, IngestOptions, ingest_file};
use dongcha::store::Store;

fn options(dir: &Path, max_line_bytes: usize) -> IngestOptions {
    let mut o = IngestOptions::from_config(&common::config_in(dir));
    o.max_line_bytes = max_line_bytes;
    o.chunk_lines = 4; // several chunks even for small files
    o.commit_records = 6; // and several transactions
    o.show_progress = false;
    o
}

async fn ingest(store: &Store, file: &Path, opts: &IngestOptions) -> ImportReport {
    ingest_file(store, file, opts).await.expect("import runs")
}

/// The record from the product brief: an iPhone 13 purchase with its review and a Weibo post.
const BRIEF_RECORD: &str = r#"{"userId": "U1001", "purchaseDate": "2023-09-28", "productName": "iPhone 13", "price": 5199.00, "reviewText": "iPhone 13 的拍照效果很好，电池续航也不错，就是物流有点慢。", "reviewRating": 4.5, "socialMediaId": "wb_4951", "socialMediaType": "Weibo", "socialMediaText": "刚入手 iPhone 13，拍照太惊艳了！#数码# https://weibo.example/p/4951"}"#;

async fn the_brief_example_record_reads_back_field_by_field(db: common::Db) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brief.jsonl");
    std::fs::write(&file, format!("{BRIEF_RECORD}\n")).unwrap();
    let (store, url) = common::store_on(dir.path(), db).await.expect("database");
    let report = ingest(&store, &file, &options(dir.path(), 1 << 20)).await;
    assert_eq!(report.format, Format::Jsonl);
    assert_eq!(
        (
            report.counts.records_read,
            report.counts.accepted,
            report.counts.rejected
        ),
        (1, 1, 0)
    );

    let rows: Vec<(String, NaiveDate, String, i64, i64)> = common::query_rows(
        &url,
        "SELECT c.external_id, o.order_date, p.name, o.amount_cents, o.quantity \
         FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id",
    )
    .await;
    assert_eq!(
        rows,
        [(
            "U1001".to_string(),
            NaiveDate::from_ymd_opt(2023, 9, 28).unwrap(),
            "iPhone 13".to_string(),
            519_900,
            1
        )]
    );

    type ReviewRow = (f64, String, String, String, NaiveDate, i64, String);
    let rows: Vec<ReviewRow> = common::query_rows(
        &url,
        "SELECT r.rating, r.text_raw, r.text_clean, r.lang, r.review_date, \
         CAST(CASE WHEN r.order_id = o.id THEN 1 ELSE 0 END AS BIGINT), p.name \
         FROM reviews r JOIN orders o ON o.customer_id = r.customer_id JOIN products p ON p.id = r.product_id",
    )
    .await;
    let (rating, raw, clean, lang, date, points_at_order, product) = rows[0].clone();
    assert_eq!(rating, 4.5);
    assert_eq!(
        raw,
        "iPhone 13 的拍照效果很好，电池续航也不错，就是物流有点慢。"
    );
    assert!(
        clean.starts_with("iPhone 13 "),
        "model kept intact: {clean}"
    );
    assert!(
        clean.contains("拍照") && clean.contains("物流") && !clean.contains('，'),
        "{clean}"
    );
    assert_eq!(lang, "zh");
    assert_eq!(date, NaiveDate::from_ymd_opt(2023, 9, 28).unwrap());
    assert_eq!(points_at_order, 1, "the review points at its purchase");
    assert_eq!(product, "iPhone 13");

    let rows: Vec<(String, String, String, String, String)> = common::query_rows(
        &url,
        "SELECT platform, post_id, text_raw, text_clean, lang FROM social_posts",
    )
    .await;
    let (platform, post_id, raw, clean, lang) = rows[0].clone();
    assert_eq!(platform, "weibo");
    assert_eq!(post_id, "wb_4951");
    assert_eq!(
        raw, "刚入手 iPhone 13，拍照太惊艳了！#数码# https://weibo.example/p/4951",
        "raw text is kept as given"
    );
    assert!(
        clean.contains("iPhone 13") && clean.contains("数码") && !clean.contains("https"),
        "{clean}"
    );
    assert_eq!(lang, "zh");
}

/// Every failure kind the importer knows, mixed with good lines.
fn bad_input_file(
    dir: &Path,
) -> (
    std::path::PathBuf,
    Vec<(u64, &'static str, &'static str)>,
    usize,
) {
    let long = format!(r#"{{"userId":"u9","reviewText":"{}"}}"#, "很".repeat(3000));
    let lines: Vec<Vec<u8>> = vec![
        /* 1 */ br#"{"userId":"u1","purchaseDate":"2024-03-01","productName":"Mate 60 Pro","price":6999}"#.to_vec(),
        /* 2 */ br#"{"userId":"u2","purchaseDate":"2024-03-01","price": }"#.to_vec(),
        /* 3 */ br#"{"userId":"u3","purchaseDate":"2024-03-01","price":"abc"}"#.to_vec(),
        /* 4 */ br#"{"userId":{"id":4},"reviewText":"ok"}"#.to_vec(),
        /* 5 */ b"{\"userId\":\"u5\",\"reviewText\":\"\xff\xfe bad bytes\"}".to_vec(),
        /* 6 */ long.into_bytes(),
        /* 7 */ br#"{"userId":"u7","purchaseDate":"2024-03-01","price":-5}"#.to_vec(),
        /* 8 */ br#"{"userId":"u8","reviewText":"great","reviewRating":7.5}"#.to_vec(),
        /* 9 */ br#"{"userId":"u9","purchaseDate":"2023-02-30","price":10}"#.to_vec(),
        /* 10 */ br#"{"purchaseDate":"2024-03-01","price":10}"#.to_vec(),
        /* 11 */ b"".to_vec(),
        /* 12 */ br#"{"userId":"u12","productName":"iPhone 13","reviewText":"Battery drains fast","reviewRating":2}"#.to_vec(),
        /* 13 */ r#"{"userId":"u13","socialMediaId":"wb1","socialMediaType":"Weibo","socialMediaText":"求推荐手机"}"#.as_bytes().to_vec(),
        /* 14 */ br#"{"userId":"u1","purchaseDate":"2024-03-01","productName":"Mate 60 Pro","price":6999}"#.to_vec(),
        /* 15 */ br#"{"userId":"u15","reviewText":"meh","reviewRating":-1}"#.to_vec(),
        /* 16 */ br#"{"userId":"u16","purchaseDate":"2999-01-01","price":10}"#.to_vec(),
        /* 17 */ br#"{"userId":"u17","price":10} trailing"#.to_vec(),
        /* 18 */ br#"["u18", "not an object"]"#.to_vec(),
        /* 19 */ r#"{"userId":"u19","purchaseDate":"2024-03-02","productName":"小米14","price":"3,999.00","quantity":2}"#.as_bytes().to_vec(),
        /* 20 */ br#"{"userId":"u20","reviewRating":true}"#.to_vec(),
    ];
    let expected = vec![
        (2, "(line)", "malformed JSON"),
        (3, "price", "expected a number"),
        (4, "userId", "expected a string"),
        (5, "(line)", "invalid UTF-8"),
        (6, "(line)", "over the 4096-byte limit"),
        (7, "price", "negative price"),
        (8, "reviewRating", "outside 0–5"),
        (9, "purchaseDate", "impossible date"),
        (10, "userId", "missing"),
        (15, "reviewRating", "outside 0–5"),
        (16, "purchaseDate", "in the future"),
        (17, "(line)", "trailing characters"),
        (18, "(line)", "a JSON object"),
        (20, "reviewRating", "expected a number"),
    ];
    let path = dir.join("mixed.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in &lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
    (path, expected, lines.len())
}

async fn bad_lines_are_reported_and_set_aside_and_good_lines_are_all_kept(db: common::Db) {
    let dir = tempfile::tempdir().unwrap();
    let (file, expected, total_lines) = bad_input_file(dir.path());
    let (store, url) = common::store_on(dir.path(), db).await.expect("database");
    let opts = options(dir.path(), 4096);
    let report = ingest(&store, &file, &opts).await;

    let got: Vec<(u64, String, String)> = report
        .errors
        .iter()
        .map(|e| (e.line, e.field.clone(), e.reason.clone()))
        .collect();
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((line, field, reason), (want_line, want_field, want_reason)) in got.iter().zip(&expected) {
        assert_eq!(line, want_line, "{got:#?}");
        assert_eq!(field, want_field, "line {line}: {reason}");
        assert!(
            reason.contains(want_reason),
            "line {line}: {reason:?} should say {want_reason:?}"
        );
    }
    // 20 lines: 1 blank; 14 rejected; good lines 1, 12, 13, 19; line 14 repeats line 1.
    let c = report.counts;
    assert_eq!(report.blank_lines, 1);
    assert_eq!((c.accepted, c.duplicates, c.rejected), (4, 1, 14));
    assert_eq!(c.records_read, (total_lines - 1) as u64);
    assert_eq!(c.accepted + c.duplicates + c.rejected, c.records_read);

    // Every good line is stored.
    assert_eq!(store.count("orders").await.unwrap(), 2);
    assert_eq!(store.count("reviews").await.unwrap(), 1);
    assert_eq!(store.count("social_posts").await.unwrap(), 1);
    assert_eq!(store.count("customers").await.unwrap(), 4);
    assert_eq!(store.count("rejects").await.unwrap(), 14);
    let amount: i64 =
        common::query_one(&url, "SELECT amount_cents FROM orders WHERE quantity = 2").await;
    assert_eq!(amount, 399_900);

    // The rejects file holds exactly the bad lines, byte for byte, in order.
    let rejects = std::fs::read(report.rejects_file.as_ref().expect("rejects file")).unwrap();
    let original = std::fs::read(&file).unwrap();
    let original_lines: Vec<&[u8]> = original.split(|b| *b == b'\n').collect();
    let want: Vec<u8> = expected
        .iter()
        .flat_map(|(n, _, _)| {
            original_lines[*n as usize - 1]
                .iter()
                .copied()
                .chain([b'\n'])
        })
        .collect();
    assert_eq!(rejects, want);
    let summary = std::fs::read_to_string(report.summary_file.as_ref().unwrap()).unwrap();
    assert!(
        summary.contains("9\tpurchaseDate\timpossible date"),
        "{summary}"
    );
    assert!(
        summary.contains("accepted 4, duplicates 1, rejected 14"),
        "{summary}"
    );

    // Importing again adds nothing and reports the same rejects.
    let again = ingest(&store, &file, &opts).await;
    assert_eq!(
        (
            again.counts.accepted,
            again.counts.duplicates,
            again.counts.rejected
        ),
        (0, 5, 14)
    );
    assert_eq!(store.count("orders").await.unwrap(), 2);
}

async fn csv_in_the_brief_shape_with_quoted_newlines(db: common::Db) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.csv");
    std::fs::write(
        &file,
        "userId,purchaseDate,productName,price,reviewText,reviewRating,colour\n\
         u1,2024-01-05,iPhone 13,699,\"Great phone, \"\"really\"\"\nsecond line\",5,red\n\
         u2,2024-01-06,小米14,¥3999,,,blue\n\
         u3,2024-01-07,小米14,-1,,,blue\n\
         u4,2024-01-08\n",
    )
    .unwrap();
    let (store, url) = common::store_on(dir.path(), db).await.expect("database");
    let report = ingest(&store, &file, &options(dir.path(), 1 << 20)).await;
    assert_eq!(report.format, Format::Csv);
    assert_eq!(report.header_lines, 1);
    assert_eq!((report.counts.accepted, report.counts.rejected), (2, 2));
    assert_eq!(
        report.errors[0].line, 5,
        "line numbers count physical lines"
    );
    assert_eq!(report.errors[0].field, "price");
    assert!(report.errors[1].reason.contains("expected 7 columns"));
    let text: String = common::query_one(&url, "SELECT text_raw FROM reviews").await;
    assert_eq!(text, "Great phone, \"really\"\nsecond line");
    // A CSV rejects file starts with the header, so it can be fixed and imported again.
    let rejects = std::fs::read_to_string(report.rejects_file.unwrap()).unwrap();
    assert!(
        rejects.starts_with(
            "userId,purchaseDate,productName,price,reviewText,reviewRating,colour\nu3,"
        )
    );
}

async fn a_csv_without_user_id_is_refused_as_a_whole(db: common::Db) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.csv");
    std::fs::write(&file, "customer,price\nu1,3\n").unwrap();
    let (store, _url) = common::store_on(dir.path(), db).await.expect("database");
    let err = ingest_file(&store, &file, &options(dir.path(), 1 << 20))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no userId column"), "{err}");
}

async fn the_real_cdnow_log_imports_every_transaction_once(db: common::Db) {
    let master = common::asset_file("cdnow", "CDNOW_master.txt");
    let sample = common::asset_file("cdnow", "CDNOW_sample.txt");
    let dir = tempfile::tempdir().unwrap();
    let (store, url) = common::store_on(dir.path(), db).await.expect("database");
    let opts = {
        let mut o = options(dir.path(), 1 << 20);
        o.chunk_lines = 8192;
        o.commit_records = 65536;
        o
    };
    let first = ingest(&store, &master, &opts).await;
    assert_eq!(first.format, Format::Cdnow);
    assert_eq!(first.header_lines, 1);
    assert_eq!(
        (
            first.counts.records_read,
            first.counts.accepted,
            first.counts.rejected
        ),
        (69_659, 69_659, 0)
    );
    assert_eq!(store.count("orders").await.unwrap(), 69_659);
    assert_eq!(store.count("customers").await.unwrap(), 23_570);
    assert_eq!(store.dangling_references().await.unwrap(), []);
    let total: i64 =
        common::query_one(&url, "SELECT CAST(SUM(amount_cents) AS BIGINT) FROM orders").await;
    assert_eq!(total, 250_031_563);

    let again = ingest(&store, &master, &opts).await;
    assert_eq!(
        (again.counts.accepted, again.counts.duplicates),
        (0, 69_659)
    );
    // The sample file (other layout) is a subset of the master: every line is already stored.
    let sub = ingest(&store, &sample, &opts).await;
    assert_eq!((sub.counts.records_read, sub.counts.accepted), (6_919, 0));
    assert_eq!(store.count("orders").await.unwrap(), 69_659);
}

async fn an_over_long_line_of_many_megabytes_is_streamed_to_the_rejects_file(db: common::Db) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl");
    let huge = format!(
        r#"{{"userId":"u1","reviewText":"{}"}}"#,
        "x".repeat(8 << 20)
    );
    std::fs::write(
        &file,
        format!("{huge}\n{{\"userId\":\"u2\",\"reviewText\":\"fine\"}}\n"),
    )
    .unwrap();
    let (store, url) = common::store_on(dir.path(), db).await.expect("database");
    let report = ingest(&store, &file, &options(dir.path(), 64 * 1024)).await;
    assert_eq!((report.counts.accepted, report.counts.rejected), (1, 1));
    assert!(
        report.errors[0]
            .reason
            .contains(&format!("{} bytes", huge.len())),
        "{:?}",
        report.errors[0]
    );
    let rejects = std::fs::read(report.rejects_file.unwrap()).unwrap();
    assert_eq!(rejects.len(), huge.len() + 1);
    let raw: String = common::query_one(&url, "SELECT raw FROM rejects").await;
    assert_eq!(
        raw.len(),
        4096,
        "the database keeps a prefix; the rejects file keeps the line"
    );
}

/// A JSON Lines file of `n` good records touching every part table (customers, products, orders,
/// reviews, social posts).
fn many_records(path: &Path, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let products = ["iPhone 13", "小米14", "Mate 60 Pro", "ThinkPad T14"];
    for i in 0..n {
        let day =
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Duration::days((i % 365) as i64);
        write!(
            f,
            r#"{{"userId":"u{}","purchaseDate":"{day}","productName":"{}","price":{}.{:02}"#,
            (i * 7919) % 6000,
            products[i % 4],
            100 + i % 900,
            i % 100
        )
        .unwrap();
        if i % 4 == 0 {
            write!(
                f,
                r#","reviewText":"物流太慢了 {i}","reviewRating":{}"#,
                1 + i % 5
            )
            .unwrap();
        }
        if i % 10 == 0 {
            write!(
                f,
                r#","socialMediaId":"wb{i}","socialMediaType":"Weibo","socialMediaText":"刚入手 {i}""#
            )
            .unwrap();
        }
        f.write_all(b"}\n").unwrap();
    }
    f.flush().unwrap();
}

/// `dongcha ingest FILE` on the database of `url` (state in `dir`), small commits; the child process.
fn ingest_process(dir: &Path, url: &str, file: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_dongcha"))
        .arg("--data-dir")
        .arg(dir)
        .arg("ingest")
        .arg(file)
        .env("DONGCHA__STORE__URL", url)
        .env("DONGCHA__INGEST__COMMIT_RECORDS", "2000")
        .env("DONGCHA__INGEST__CHUNK_LINES", "1000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILL at 20 points of a large import, each followed by running it again (killed at the next
/// point); then once to the end.
/// The database must equal a clean import's: the same rows in every table (ids included), by content
/// digest, leaving out only which import run stored a row.
async fn an_import_killed_at_twenty_points_and_run_again_equals_a_clean_one(db: common::Db) {
    use std::os::unix::process::ExitStatusExt;
    const LINES: usize = 60_000;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("many.jsonl");
    many_records(&file, LINES);

    let clean_dir = tempfile::tempdir().unwrap();
    let (clean, clean_url) = common::store_on(clean_dir.path(), db)
        .await
        .expect("database");
    let started = std::time::Instant::now();
    let st = ingest_process(clean_dir.path(), &clean_url, &file)
        .wait()
        .unwrap();
    let whole = started.elapsed();
    assert!(st.success());
    assert_eq!(clean.count("orders").await.unwrap(), LINES as i64);
    let want = clean.digest(false).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (store, url) = common::store_on(dir.path(), db).await.expect("database");
    // 20 seeded points, as numbers of orders stored, in order: each run is killed as soon as the
    // database holds more than its point, so every kill lands inside an import (between or during
    // commits of 2,000), and each run again gets further than the last. The points stay in the first
    // three quarters of the file: drawn up to 4,000 lines before its end, a fast import once stored the
    // rest between two polls and finished before the kill arrived (60,000 orders after the last kill).
    let mut seed = 20_261_205u64;
    let mut points: Vec<i64> = (0..20)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) % (LINES as u64 * 3 / 4)) as i64
        })
        .collect();
    points.sort_unstable();
    let mut counts = Vec::new();
    for point in points {
        let mut child = ingest_process(dir.path(), &url, &file);
        let finished = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if store.count("orders").await.unwrap() > point {
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        assert!(finished.is_none(), "the import ended before {point} orders");
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        counts.push(store.count("orders").await.unwrap());
    }
    let st = ingest_process(dir.path(), &url, &file).wait().unwrap();
    assert!(st.success());
    println!("{db:?}: clean import {whole:?}; orders stored after each kill: {counts:?}");
    assert!(
        counts.iter().all(|&c| c > 0 && c < LINES as i64),
        "{counts:?}"
    );
    let got = store.digest(false).await.unwrap();
    assert_eq!(got, want);
    assert_eq!(store.dangling_references().await.unwrap(), []);
    assert!(
        got.iter()
            .any(|t| t.table == "reviews" && t.rows == (LINES / 4) as u64)
    );
}

/// `dongcha backup` while another process imports: the backup is of one moment (every stored record's
/// key and order are both in it or both not: a copy torn between tables would differ), checked by its
/// digest; `dongcha restore` puts it into a new database, equal row for row.
async fn a_backup_taken_during_an_import_is_consistent_and_restores(db: common::Db) {
    const LINES: usize = 30_000;
    let work = tempfile::tempdir().unwrap();
    let (first, second) = (work.path().join("a.jsonl"), work.path().join("b.jsonl"));
    many_records(&first, LINES);
    // The second file: three times as many records, of other customers (the same generator, shifted),
    // so the import is still running when the backup takes its moment.
    let text = std::fs::read_to_string(&first).unwrap();
    let more: String = ["v", "w", "x"]
        .iter()
        .map(|p| text.replace("\"userId\":\"u", &format!("\"userId\":\"{p}")))
        .collect();
    std::fs::write(&second, more).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (store, url) = common::store_on(dir.path(), db).await.expect("database");
    assert!(
        ingest_process(dir.path(), &url, &first)
            .wait()
            .unwrap()
            .success()
    );
    let mut writer = ingest_process(dir.path(), &url, &second);
    // Start the backup once the second import has committed something, while it goes on.
    while store.count("orders").await.unwrap() <= LINES as i64 {
        assert!(
            writer.try_wait().unwrap().is_none(),
            "the import ended first"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let backup = work.path().join("backup.db");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dongcha"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["backup", "--json"])
        .arg(&backup)
        .env("DONGCHA__STORE__URL", &url)
        .output()
        .unwrap();
    let during = writer.try_wait().unwrap().is_none();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(writer.wait().unwrap().success());
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["verified"], true);
    let rows = |t: &str| {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["table"] == t)
            .unwrap()["rows"]
            .as_i64()
            .unwrap()
    };
    let orders = rows("orders");
    println!(
        "{db:?}: import still running when the backup ended: {during}; orders in it: {orders}"
    );
    assert!(
        orders > LINES as i64 && orders < 4 * LINES as i64,
        "the backup's moment is inside the second import: {orders}"
    );
    assert_eq!(
        rows("ingested_records"),
        orders,
        "one moment of every table"
    );
    assert_eq!(orders % 2_000, 0, "whole commits only");

    // A backup is never written over.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_dongcha"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("backup")
        .arg(&backup)
        .env("DONGCHA__STORE__URL", &url)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // Restored into a new database of the same backend: the backup's rows, table by table.
    let restored_dir = tempfile::tempdir().unwrap();
    let restored_cfg = common::config_on(restored_dir.path(), db).await.unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dongcha"))
        .arg("--data-dir")
        .arg(restored_dir.path())
        .args(["restore", "--json"])
        .arg(&backup)
        .env("DONGCHA__STORE__URL", restored_cfg.database_url())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let restored = dongcha::store::Store::open_config(&restored_cfg)
        .await
        .unwrap();
    let backup_store = dongcha::store::Store::open(&format!("sqlite://{}", backup.display()), 1)
        .await
        .unwrap();
    assert_eq!(
        restored.digest(true).await.unwrap(),
        backup_store.digest(true).await.unwrap()
    );
    assert_eq!(restored.count("orders").await.unwrap(), orders);
}

on_both_databases!(
    the_brief_example_record_reads_back_field_by_field,
    bad_lines_are_reported_and_set_aside_and_good_lines_are_all_kept,
    csv_in_the_brief_shape_with_quoted_newlines,
    a_csv_without_user_id_is_refused_as_a_whole,
    the_real_cdnow_log_imports_every_transaction_once,
    an_over_long_line_of_many_megabytes_is_streamed_to_the_rejects_file,
    an_import_killed_at_twenty_points_and_run_again_equals_a_clean_one,
    a_backup_taken_during_an_import_is_consistent_and_restores,
);
