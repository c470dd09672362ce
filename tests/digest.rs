//! Scheduled digests end to end on a constructed shop (ingested through `dongcha ingest`): the scheduler
//! driven by a moved clock (09:00 Asia/Shanghai on Mondays and not otherwise; missed runs after downtime
//! send one digest), a quiet week sends nothing, a week with a complaint spike sends the complaint block
//! with the figures of the `top_complaints` tool, and a digest reaches the loopback Telegram server as
//! text plus a photo through `dongcha serve`.

#[path = "common/botapi.rs"]
mod botapi;
mod common;
#[path = "common/discordapi.rs"]
mod discordapi;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use dongcha::config::{Config, DigestConfig};
use dongcha::digest::run::{Outcome, Scheduler};
use dongcha::store::Store;
use serde_json::{Value, json};

use botapi::BotApi;
use discordapi::DiscordApi;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dongcha")
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The week of the complaint spike (Monday to Sunday).
const SPIKE: (&str, &str) = ("2026-06-22", "2026-06-28");
/// Extra complaints about delivery in the spike week.
const SPIKE_COMPLAINTS: usize = 30;

/// 80 customers who each buy once a week, on their own weekday, the same thing at the same price, from
/// October 2025 to the end of June 2026 (so every week's sales are the same); every week 10 good
/// reviews and 4 about poor quality; in the spike week 30 more reviews that complain about delivery.
fn records() -> String {
    let mut lines = Vec::new();
    let (first, last) = (day("2025-10-06"), day("2026-06-30"));
    for c in 0..80 {
        let mut d = first + Days::days(c % 7);
        while d <= last {
            lines.push(
                json!({"userId": format!("C{c:03}"), "purchaseDate": d.to_string(),
                              "productName": format!("保温杯 {}", c % 4), "price": 100 + c}),
            );
            d += Days::days(7);
        }
    }
    let mut monday = first;
    let mut n = 0;
    while monday <= last {
        for i in 0..14i64 {
            let (text, rating) = if i < 4 {
                ("质量一般，做工粗糙，用了两天盖子就坏了", 1)
            } else {
                ("很好用，保温效果不错，颜色也好看", 5)
            };
            n += 1;
            lines.push(
                json!({"userId": format!("C{:03}", n % 80), "productName": "保温杯 1",
                              "reviewText": format!("{text}（{n}）"), "reviewRating": rating,
                              "reviewDate": (monday + Days::days(i % 7)).to_string()}),
            );
        }
        monday += Days::days(7);
    }
    for i in 0..SPIKE_COMPLAINTS {
        lines.push(
            json!({"userId": format!("C{:03}", i), "productName": "保温杯 2",
                          "reviewText": format!("物流太慢了，快递一周才送到（{i}）"),
                          "reviewRating": 1,
                          "reviewDate": (day(SPIKE.0) + Days::days(i as i64 % 7)).to_string()}),
        );
    }
    lines
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The constructed shop, ingested once per test binary.
fn shop() -> &'static Path {
    static SHOP: OnceLock<PathBuf> = OnceLock::new();
    SHOP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let file = dir.join("shop.jsonl");
        std::fs::write(&file, records()).unwrap();
        let o = Command::new(bin())
            .arg("--data-dir")
            .arg(&dir)
            .arg("ingest")
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dir
    })
}

/// A copy of the shop's state folder, so each test keeps its own digest records.
fn shop_copy() -> tempfile::TempDir {
    common::copy_of(shop())
}

/// The weekly digest (Mondays 09:00 Asia/Shanghai), written to the folder `out` in data_dir unless
/// `extra` (more TOML keys) names another.
fn config(dir: &Path, extra: &str) -> Config {
    let folder = if extra.contains("folder") {
        ""
    } else {
        "folder = \"out\"\n"
    };
    let toml = format!(
        "[[digest]]\nname = \"weekly\"\nschedule = \"0 9 * * Mon\"\ntimezone = \"Asia/Shanghai\"\n{folder}{extra}\n"
    );
    let mut cfg = common::config_in(dir);
    cfg.digest = Config::from_toml_str(&toml).unwrap().digest;
    cfg
}

fn spec(cfg: &Config) -> &DigestConfig {
    &cfg.digest[0]
}

async fn scheduler(cfg: &Config) -> (Store, Scheduler) {
    let store = Store::open_config(cfg).await.unwrap();
    let s = Scheduler::new(cfg, store.clone(), Arc::new(|| {}));
    (store, s)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn outcome(r: &[(String, Result<Outcome, dongcha::digest::DigestError>)]) -> Outcome {
    assert_eq!(r.len(), 1);
    match &r[0].1 {
        Ok(o) => o.clone(),
        Err(e) => panic!("digest failed: {e}"),
    }
}

fn is_run(o: &Outcome) -> bool {
    matches!(o, Outcome::Sent { .. } | Outcome::Quiet { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_fires_at_nine_in_shanghai_on_mondays_only_and_missed_runs_send_one() {
    let dir = shop_copy();
    let cfg = config(dir.path(), "quiet = \"line\"");
    let (store, s) = scheduler(&cfg).await;
    // First start: a Sunday. Runs before it are not made up for.
    assert_eq!(
        outcome(&s.tick(utc("2026-05-31T12:00:00Z")).await),
        Outcome::Started
    );
    // Monday 1 June, 08:59:59 in Shanghai: not yet.
    assert_eq!(
        outcome(&s.tick(utc("2026-06-01T00:59:59Z")).await),
        Outcome::NotDue
    );
    // 09:00:05 in Shanghai (01:00:05 UTC): the run of that Monday, for the week before it.
    let o = outcome(&s.tick(utc("2026-06-01T01:00:05Z")).await);
    assert!(is_run(&o), "{o:?}");
    let rows = store.digests("weekly").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].period_from.as_str(), rows[0].period_to.as_str()),
        ("2026-05-25", "2026-05-31")
    );
    assert_eq!(rows[0].slot, "2026-06-01T01:00:00Z");
    // The rest of that week, hour by hour at nine and on either side of it: nothing.
    let mut t = utc("2026-06-01T02:00:00Z");
    while t < utc("2026-06-08T00:59:00Z") {
        assert_eq!(outcome(&s.tick(t).await), Outcome::NotDue, "at {t}");
        t += Days::hours(7);
    }
    // 09:00 UTC on Monday 8 June is 17:00 in Shanghai: the 01:00 UTC run is what counts.
    assert_eq!(store.digests("weekly").await.unwrap().len(), 1);
    // Down from then until Tuesday 23 June: the runs of 8, 15 and 22 June were missed; one digest,
    // for the week before the latest of them, is sent.
    let o = outcome(&s.tick(utc("2026-06-23T03:00:00Z")).await);
    assert!(is_run(&o), "{o:?}");
    let rows = store.digests("weekly").await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].period_from.as_str(), rows[0].period_to.as_str()),
        ("2026-06-15", "2026-06-21")
    );
    assert_eq!(rows[0].slot, "2026-06-22T01:00:00Z");
    assert_eq!(
        outcome(&s.tick(utc("2026-06-23T03:00:01Z")).await),
        Outcome::NotDue
    );
    // A restart (a new scheduler on the same store) repeats nothing.
    let (_, again) = scheduler(&cfg).await;
    assert_eq!(
        outcome(&again.tick(utc("2026-06-23T04:00:00Z")).await),
        Outcome::NotDue
    );
    // Two runs whose period is the same (the data stops on 30 June): the second reports nothing.
    let o = s
        .run(spec(&cfg), utc("2026-07-06T01:00:00Z"))
        .await
        .unwrap();
    assert!(is_run(&o), "{o:?}");
    let o = s
        .run(spec(&cfg), utc("2026-07-13T01:00:00Z"))
        .await
        .unwrap();
    assert!(matches!(o, Outcome::AlreadyReported { .. }), "{o:?}");
    assert_eq!(store.digests("weekly").await.unwrap().len(), 3);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_week_sends_nothing_or_one_line_as_configured() {
    let dir = shop_copy();
    // Monday 23 March: the week of 16–22 March sold what every week sells, its reviews are every
    // week's, and no holiday falls in the next 28 days.
    let slot = utc("2026-03-23T01:00:00Z");
    let cfg = config(dir.path(), "");
    let (store, s) = scheduler(&cfg).await;
    let o = s.run(spec(&cfg), slot).await.unwrap();
    let period = match &o {
        Outcome::Quiet { period, sent } => {
            assert!(!sent);
            *period
        }
        other => panic!(
            "a quiet week was not quiet: {other:?}: {}",
            store.digests("weekly").await.unwrap()[0].text
        ),
    };
    assert_eq!(
        (period.from, period.to),
        (day("2026-03-16"), day("2026-03-22"))
    );
    assert!(
        files_in(&dir.path().join("out")).is_empty(),
        "a quiet digest wrote files"
    );
    let rows = store.digests("weekly").await.unwrap();
    assert_eq!(rows[0].status, "quiet");
    store.close().await;

    let dir = shop_copy();
    let cfg = config(dir.path(), "quiet = \"line\"");
    let (store, s) = scheduler(&cfg).await;
    let o = s.run(spec(&cfg), slot).await.unwrap();
    assert!(matches!(o, Outcome::Quiet { sent: true, .. }), "{o:?}");
    let text = std::fs::read_to_string(dir.path().join("out/weekly-2026-03-22.txt")).unwrap();
    assert!(text.contains("一切平稳"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_spike_sends_the_complaint_block_with_the_tools_figures() {
    let dir = shop_copy();
    let cfg = config(dir.path(), "");
    let (store, s) = scheduler(&cfg).await;
    let o = s
        .run(spec(&cfg), utc("2026-06-29T01:00:00Z"))
        .await
        .unwrap();
    assert!(
        matches!(
            o,
            Outcome::Sent {
                destinations: 1,
                ..
            }
        ),
        "{o:?}"
    );
    let text = std::fs::read_to_string(dir.path().join("out/weekly-2026-06-28.txt")).unwrap();
    let figures: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/weekly-2026-06-28.json")).unwrap(),
    )
    .unwrap();
    // The figures of the tool for the same week.
    let ctx = dongcha::tools::Context::open_as_of(&cfg, Some(day(SPIKE.1)))
        .await
        .unwrap();
    let tool = dongcha::tools::run(
        &ctx,
        "top_complaints",
        json!({"period": {"from": SPIKE.0, "to": SPIKE.1}, "top_k": 10}),
    )
    .await
    .unwrap();
    let significant: Vec<&Value> = tool["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["significant"] == true)
        .collect();
    assert!(
        !significant.is_empty(),
        "the tool found no significant topic: {tool}"
    );
    let delivery = significant
        .iter()
        .find(|t| {
            let k = t["keyword"].as_str().unwrap_or("");
            ["物流", "快递", "送到", "太慢"]
                .iter()
                .any(|w| k.contains(w))
        })
        .unwrap_or_else(|| panic!("no delivery topic: {tool}"));
    let n = delivery["complaints"].as_u64().unwrap();
    assert!(n >= 10 && n <= SPIKE_COMPLAINTS as u64, "{delivery}");
    let change = delivery["change_pct"].as_f64();
    let line = text
        .lines()
        .find(|l| l.contains(delivery["topic"].as_str().unwrap()) && l.contains("投诉环比"))
        .unwrap_or_else(|| panic!("no complaint line for {delivery} in:\n{text}"));
    assert!(line.contains(&format!("n={n}")), "{line}");
    assert!(
        line.contains(&format!("上期 {}", delivery["previous_complaints"])),
        "{line}"
    );
    match change {
        Some(c) => assert!(line.contains(&format!("{c:+.1}%")), "{line} vs {c}"),
        None => assert!(line.contains("新出现"), "{line}"),
    }
    let block = &figures["reviews"];
    assert_eq!(block["shown"], true, "{figures}");
    assert_eq!(
        block["topics"].as_array().unwrap().len(),
        significant.len(),
        "{block}"
    );
    // Sales were as steady as every week: no KPI block; nothing else crossed a threshold either.
    assert_eq!(figures["kpis"]["shown"], false, "{text}");
    assert!(!text.contains("【经营指标】"), "{text}");
    assert!(text.contains("【评价】"), "{text}");
    store.close().await;
}

/// `dongcha serve` with a digest for the operators' Telegram chat and a Discord channel; `dongcha digest
/// weekly --send` (another process) records it and queues it; the server's Telegram front end sends the
/// text and the charts as photos, its Discord front end the text and the charts as attachments.
#[test]
fn a_digest_reaches_the_loopback_telegram_and_discord_servers_as_text_and_charts() {
    const CHANNEL: u64 = 600_000_000_000_000_099;
    const DESK: i64 = -100_555;
    const OPERATOR: i64 = 7001;
    let dir = shop_copy();
    let api = BotApi::start();
    let discord = DiscordApi::start();
    let file = dir.path().join("digest.toml");
    std::fs::write(
        &file,
        format!(
            "[[digest]]\nname = \"weekly\"\nschedule = \"0 9 * * Mon\"\ntimezone = \"Asia/Shanghai\"\ntelegram_chat = {DESK}\ndiscord_channel = {CHANNEL}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--no-llm"])
        .env("DONGCHA__SERVE__LISTEN", "127.0.0.1:0")
        .env("DONGCHA_TELEGRAM_TOKEN", "123456:TEST-token")
        .env("DONGCHA__TELEGRAM__API_URL", api.url())
        .env("DONGCHA__TELEGRAM__POLL_TIMEOUT_SECS", "1")
        .env(
            "DONGCHA__ROLES__TELEGRAM_OPERATORS",
            format!("[{OPERATOR}]"),
        )
        .env("DONGCHA_DISCORD_TOKEN", "discord-test-token")
        .env("DONGCHA__DISCORD__API_ADDR", discord.rest_addr())
        .env("DONGCHA__DISCORD__CA_FILE", discord.ca_file())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("dongcha serve:"), "{line}");
    let o = Command::new(bin())
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["digest", "weekly", "--send", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["outcome"], "sent", "{out}");
    assert_eq!(out["period"]["to"], SPIKE.1, "{out}");
    let t = Instant::now();
    while api.sent_to(DESK).len() < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{:?}",
            api.sent_to(DESK)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = api.sent_to(DESK);
    // An operator's /digest gets the same digest, chart and text, in their chat.
    api.message(OPERATOR, "/digest");
    let t = Instant::now();
    while api.sent_to(OPERATOR).len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{:?}",
            api.sent_to(OPERATOR)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mine = api.sent_to(OPERATOR);
    // The Discord channel: the text, then the two charts as PNG attachments.
    let posts = discord.wait_for(Duration::from_secs(60), "the digest in Discord", |c| {
        c.iter()
            .filter(|c| c.path == format!("/channels/{CHANNEL}/messages") && !c.files.is_empty())
            .count()
            >= 2
    });
    let posts: Vec<_> = posts
        .iter()
        .filter(|c| c.path == format!("/channels/{CHANNEL}/messages"))
        .collect();
    let words: String = posts.iter().map(|c| c.text()).collect();
    assert!(
        words.contains("周报 · weekly · 2026-06-22 – 2026-06-28") && words.contains("每周销售额"),
        "{words}"
    );
    for c in posts.iter().filter(|c| !c.files.is_empty()) {
        png::Decoder::new(std::io::Cursor::new(c.files[0].1.as_slice()))
            .read_info()
            .expect("the attachment decodes as PNG");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        mine.iter()
            .any(|m| m.method.eq_ignore_ascii_case("sendphoto")),
        "{mine:?}"
    );
    let text = mine
        .iter()
        .find(|m| m.method.eq_ignore_ascii_case("sendmessage"))
        .map(|m| m.text.clone())
        .unwrap();
    assert_eq!(
        text, sent[0].text,
        "/digest and the scheduled digest differ"
    );
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(
        sent[0].method.eq_ignore_ascii_case("sendmessage"),
        "{sent:?}"
    );
    assert!(
        sent[0]
            .text
            .contains("周报 · weekly · 2026-06-22 – 2026-06-28"),
        "{}",
        sent[0].text
    );
    assert!(sent[0].text.contains("投诉环比"), "{}", sent[0].text);
    assert!(sent[1].method.eq_ignore_ascii_case("sendphoto"), "{sent:?}");
    let png = sent[1].photo.as_ref().expect("a photo");
    let info = png::Decoder::new(std::io::Cursor::new(png.as_slice()))
        .read_info()
        .expect("the photo decodes as PNG");
    assert!(info.info().width > 0);
    assert!(sent[1].text.contains("每周销售额"), "{}", sent[1].text);
    // The review block had the news: its complaint chart follows.
    assert!(sent[2].method.eq_ignore_ascii_case("sendphoto"), "{sent:?}");
    assert!(sent[2].text.contains("投诉话题"), "{}", sent[2].text);
    let png = sent[2].photo.as_ref().expect("a photo");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Sending it again reports nothing: the period is recorded.
    let o = Command::new(bin())
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["digest", "weekly", "--send", "--json"])
        .output()
        .unwrap();
    let again: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["outcome"], "already_reported", "{again}");
}

/// A digest webhook: the JSON arrives once, after the receiver refused the first try, with the text,
/// the figures and the chart as base64 PNG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_webhook_is_retried_until_taken_and_delivered_once() {
    use axum::routing::post;
    use base64::Engine;
    let got: Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let tries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (g, n) = (got.clone(), tries.clone());
    let app = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let (g, n) = (g.clone(), n.clone());
            async move {
                if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                g.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    let dir = shop_copy();
    let cfg = config(dir.path(), &format!("webhook = \"{url}\"\nfolder = \"\""));
    let (store, s) = scheduler(&cfg).await;
    let o = s
        .run(spec(&cfg), utc("2026-06-29T01:00:00Z"))
        .await
        .unwrap();
    assert!(
        matches!(
            o,
            Outcome::Sent {
                destinations: 1,
                charts: 2,
                ..
            }
        ),
        "{o:?}"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sender = tokio::spawn(dongcha::digest::run::send_webhooks(store.clone(), stop_rx));
    let t = Instant::now();
    while got.lock().unwrap().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(30), "no webhook delivery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another round of the sender finds nothing left to send.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    let _ = sender.await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 2);
    let body = &got[0];
    assert_eq!(body["digest"], "weekly");
    assert_eq!(body["period"]["to"], SPIKE.1);
    assert!(
        body["text"].as_str().unwrap().contains("投诉环比"),
        "{body}"
    );
    assert_eq!(body["output"]["reviews"]["shown"], true);
    let png = base64::engine::general_purpose::STANDARD
        .decode(body["charts"][0]["png_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    store.close().await;
}
