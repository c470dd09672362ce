//! Ingestion: files → validated, cleaned, keyed records → the store. JSON Lines and CSV in the brief's
//! record shape, and CDNOW-style transaction logs.
//!
//! A reader thread reads the file in chunks with bounded memory, parses and cleans each chunk on all cores,
//! writes bad lines to the rejects file, and hands the chunk to the writer (this task), which stores it in
//! one transaction while the next chunk is parsed. Every line ends up counted exactly once:
//! `accepted + duplicates + rejected == records read` (header and blank lines are counted apart).
//! Re-importing a file stores nothing new: records are keyed by content.

pub mod cdnow;
pub mod csv;
pub mod fields;
pub mod jsonl;
pub mod lines;
mod rejects;

use std::fs;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::config::IngestConfig;
use crate::store::{
    BatchCounts, BatchId, ImportTx, KeyedRecord, RejectRow, ShopRecord, Store, StoreError,
};
use fields::{DateRules, FieldError};
use lines::LineReader;
use rejects::RejectSink;

/// Errors kept in memory for the report; all of them go to the summary file and the database.
const REPORTED_ERRORS: usize = 1000;
/// Bytes of a rejected line kept in the database (the rejects file keeps all of it).
const REJECT_RAW_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines in the brief's record shape.
    Jsonl,
    /// CSV with a header row of the brief's field names.
    Csv,
    /// CDNOW-style whitespace-separated transaction log.
    Cdnow,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Cdnow => "cdnow",
        }
    }

    /// By extension, else by the first non-blank line.
    pub fn detect(path: &Path) -> Result<Format, IngestError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => return Ok(Format::Jsonl),
            "csv" => return Ok(Format::Csv),
            _ => {}
        }
        let file = fs::File::open(path).map_err(|source| IngestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = LineReader::new(BufReader::new(file), 1 << 16, false);
        loop {
            let chunk = reader.read_chunk(64).map_err(|source| IngestError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            if chunk.lines.is_empty() && chunk.long_line.is_none() {
                break;
            }
            for i in 0..chunk.lines.len() {
                let line = String::from_utf8_lossy(chunk.line(i));
                let t = line.trim();
                if t.is_empty() {
                    continue;
                }
                if t.starts_with('{') {
                    return Ok(Format::Jsonl);
                }
                if t.contains(',')
                    && fields::Field::from_name(t.split(',').next().unwrap_or("")).is_some()
                    || t.to_lowercase().contains("userid")
                {
                    return Ok(Format::Csv);
                }
                if t.starts_with(|c: char| c.is_ascii_digit()) || t.starts_with("customer") {
                    return Ok(Format::Cdnow);
                }
                break;
            }
            if chunk.long_line.is_some() {
                break;
            }
        }
        Err(IngestError::Unreadable {
            path: path.to_path_buf(),
            reason: "cannot tell the format; name it with --format jsonl|csv|cdnow".into(),
        })
    }
}

/// One bad line, as reported to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub batch: BatchId,
    pub source: String,
    pub format: Format,
    #[serde(flatten)]
    pub counts: BatchCounts,
    pub header_lines: u64,
    pub blank_lines: u64,
    /// The first bad lines (all of them are in the summary file).
    pub errors: Vec<LineError>,
    pub rejects_file: Option<PathBuf>,
    pub summary_file: Option<PathBuf>,
    pub bytes: u64,
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl ImportReport {
    pub fn records_per_second(&self) -> f64 {
        self.counts.records_read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub format: Option<Format>,
    pub max_line_bytes: usize,
    pub chunk_lines: usize,
    pub commit_records: usize,
    pub rejects_dir: PathBuf,
    pub dates: DateRules,
    pub show_progress: bool,
}

impl IngestOptions {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let ingest: &IngestConfig = &cfg.ingest;
        Self {
            format: None,
            max_line_bytes: ingest.max_line_bytes,
            chunk_lines: ingest.chunk_lines,
            commit_records: ingest.commit_records,
            rejects_dir: cfg.rejects_dir(),
            dates: DateRules::from_config(ingest),
            show_progress: true,
        }
    }
}

/// How one line turned out after parsing.
enum Parsed {
    Record(Box<ShopRecord>),
    Reject(FieldError),
    Blank,
}

/// Format-specific parsing state, fixed once the header (if any) has been read.
#[derive(Clone)]
enum LineParser {
    Jsonl,
    Csv(Option<csv::Header>),
    Cdnow(Option<cdnow::Layout>),
}

impl LineParser {
    fn parse(&self, bytes: &[u8], dates: &DateRules) -> Parsed {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return Parsed::Reject(FieldError::new(
                    "(line)",
                    format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1),
                ));
            }
        };
        if text.trim().is_empty() {
            return Parsed::Blank;
        }
        let result = match self {
            LineParser::Jsonl => {
                jsonl::parse_line(text).and_then(|f| fields::build_record(&f, dates))
            }
            LineParser::Csv(Some(h)) => h
                .parse_row(text)
                .and_then(|f| fields::build_record(&f, dates)),
            LineParser::Cdnow(Some(layout)) => cdnow::parse_line(text, *layout, dates),
            LineParser::Csv(None) | LineParser::Cdnow(None) => {
                unreachable!("header is read before data")
            }
        };
        match result {
            Ok(r) => Parsed::Record(Box::new(r)),
            Err(e) => Parsed::Reject(e),
        }
    }

    fn needs_header(&self) -> bool {
        matches!(self, LineParser::Csv(None) | LineParser::Cdnow(None))
    }

    /// Looks at the first non-blank line: returns true when it was a header (not data).
    fn take_header(&mut self, line: &[u8], sink: &mut RejectSink) -> Result<bool, String> {
        let text =
            std::str::from_utf8(line).map_err(|e| format!("first line is not UTF-8 ({e})"))?;
        match self {
            LineParser::Csv(h) => {
                let header = csv::Header::parse(text)?;
                if !header.unknown.is_empty() {
                    tracing::warn!(columns = ?header.unknown, "ignoring CSV columns that are not record fields");
                }
                *h = Some(header);
                sink.set_preamble(line);
                Ok(true)
            }
            LineParser::Cdnow(layout) => match cdnow::Layout::detect(text) {
                None => {
                    sink.set_preamble(line);
                    // The data lines that follow decide the layout.
                    Ok(true)
                }
                Some(l) => {
                    *layout = Some(l);
                    Ok(false)
                }
            },
            LineParser::Jsonl => Ok(false),
        }
    }
}

/// What the reader thread hands to the writer.
struct ParsedChunk {
    records: Vec<KeyedRecord>,
    rejects: Vec<RejectRow>,
    blank: u64,
    header: u64,
    consumed: u64,
}

/// Imports one file into the store.
pub async fn ingest_file(
    store: &Store,
    path: &Path,
    opts: &IngestOptions,
) -> Result<ImportReport, IngestError> {
    let started = Instant::now();
    let io_err = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let format = match opts.format {
        Some(f) => f,
        None => Format::detect(path)?,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let batch = store
        .begin_batch(&path.display().to_string(), format.name())
        .await?;
    let progress = crate::progress::bytes_bar(
        size,
        opts.show_progress,
        &format!("ingest {}", path.display()),
    );

    let (tx, mut rx) = tokio::sync::mpsc::channel::<ParsedChunk>(2);
    let reader_opts = opts.clone();
    let reader_path = path.to_path_buf();
    let reader = std::thread::Builder::new()
        .name("ingest-reader".into())
        .spawn(move || read_and_parse(file, &reader_path, format, batch, &reader_opts, tx))
        .map_err(io_err)?;

    let mut counts = BatchCounts::default();
    let (mut header_lines, mut blank_lines) = (0u64, 0u64);
    let mut errors = Vec::new();
    let mut store_result: Result<(), StoreError> = Ok(());
    // Several chunks share one transaction: fewer, larger commits write each touched page once.
    let mut tx: Option<ImportTx> = None;
    let mut uncommitted = 0usize;
    while let Some(chunk) = rx.recv().await {
        let step = async {
            let t = match tx.as_mut() {
                Some(t) => t,
                None => tx.insert(store.begin_import().await?),
            };
            let new = t.write_records(batch, &chunk.records).await?;
            t.write_rejects(batch, &chunk.rejects).await?;
            uncommitted += chunk.records.len() + chunk.rejects.len();
            if uncommitted >= opts.commit_records {
                tx.take().expect("open").commit().await?;
                uncommitted = 0;
            }
            Ok::<u64, StoreError>(new)
        };
        let new = match step.await {
            Ok(n) => n,
            Err(e) => {
                store_result = Err(e);
                break;
            }
        };
        counts.accepted += new;
        counts.duplicates += chunk.records.len() as u64 - new;
        counts.rejected += chunk.rejects.len() as u64;
        header_lines += chunk.header;
        blank_lines += chunk.blank;
        for r in chunk.rejects {
            if errors.len() < REPORTED_ERRORS {
                errors.push(LineError {
                    line: r.line_no,
                    field: r.field,
                    reason: r.reason,
                });
            }
        }
        progress.set_position(chunk.consumed);
    }
    if store_result.is_ok()
        && let Some(t) = tx.take()
    {
        store_result = t.commit().await;
    }
    drop(rx); // stops the reader if we left early
    let reader_result = tokio::task::spawn_blocking(move || reader.join())
        .await
        .expect("joining the reader thread")
        .map_err(|_| IngestError::Unreadable {
            path: path.to_path_buf(),
            reason: "the reader thread panicked".into(),
        })?;
    store_result?;
    let mut sink = reader_result?;
    counts.records_read = counts.accepted + counts.duplicates + counts.rejected;
    sink.finish(&counts, header_lines, blank_lines)
        .map_err(io_err)?;
    store
        .finish_batch(batch, counts, sink.rejects_path.as_deref())
        .await?;
    progress.finish_and_clear();
    Ok(ImportReport {
        batch,
        source: path.display().to_string(),
        format,
        counts,
        header_lines,
        blank_lines,
        errors,
        rejects_file: sink.rejects_path.clone(),
        summary_file: sink.summary_path.clone(),
        bytes: size,
        elapsed: started.elapsed(),
    })
}

/// The reader thread: chunks → parsed, keyed records and rejects. Returns the reject sink so the writer
/// can append the totals.
fn read_and_parse(
    file: fs::File,
    path: &Path,
    format: Format,
    batch: BatchId,
    opts: &IngestOptions,
    tx: tokio::sync::mpsc::Sender<ParsedChunk>,
) -> Result<RejectSink, IngestError> {
    let io_err = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = LineReader::new(
        BufReader::with_capacity(1 << 20, file),
        opts.max_line_bytes,
        format == Format::Csv,
    );
    let mut parser = match format {
        Format::Jsonl => LineParser::Jsonl,
        Format::Csv => LineParser::Csv(None),
        Format::Cdnow => LineParser::Cdnow(None),
    };
    let mut sink = RejectSink::new(&opts.rejects_dir, path, batch);
    let mut repeats = cdnow::Repeats::default();
    let key_kind = if format == Format::Cdnow {
        "cdnow"
    } else {
        "shop"
    };
    loop {
        let chunk = reader.read_chunk(opts.chunk_lines).map_err(io_err)?;
        let mut out = ParsedChunk {
            records: Vec::with_capacity(chunk.lines.len()),
            rejects: Vec::new(),
            blank: 0,
            header: 0,
            consumed: 0,
        };
        // Header (CSV, CDNOW master): the first non-blank line, read in order before the parallel parse.
        let mut first_data = 0;
        while parser.needs_header() && first_data < chunk.lines.len() {
            let line = chunk.line(first_data);
            first_data += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                out.blank += 1;
                continue;
            }
            match parser.take_header(line, &mut sink) {
                Ok(true) => out.header += 1,
                Ok(false) => first_data -= 1, // a data line: parse it below
                Err(reason) => {
                    return Err(IngestError::Unreadable {
                        path: path.to_path_buf(),
                        reason,
                    });
                }
            }
        }
        let parsed: Vec<Parsed> = if parser.needs_header() {
            Vec::new()
        } else {
            (first_data..chunk.lines.len())
                .into_par_iter()
                .with_min_len(64)
                .map(|i| parser.parse(chunk.line(i), &opts.dates))
                .collect()
        };
        for (i, p) in (first_data..).zip(parsed) {
            let line_no = chunk.lines[i].0;
            match p {
                Parsed::Blank => out.blank += 1,
                Parsed::Record(record) => {
                    let extra = if format == Format::Cdnow {
                        repeats.ordinal(&record)
                    } else {
                        0
                    };
                    out.records.push(KeyedRecord {
                        key: record.content_key(key_kind, extra),
                        line_no,
                        record: *record,
                    });
                }
                Parsed::Reject(e) => {
                    let raw = chunk.line(i);
                    sink.reject(line_no, &e.field, &e.reason, raw)
                        .map_err(io_err)?;
                    out.rejects.push(RejectRow {
                        line_no,
                        field: e.field,
                        reason: e.reason,
                        raw: lossy_prefix(raw),
                    });
                }
            }
        }
        let long = chunk.long_line;
        let at_end = chunk.lines.is_empty() && long.is_none();
        if let Some(line_no) = long {
            let mut head = Vec::new();
            let len = sink
                .reject_streamed(
                    line_no,
                    |w| {
                        let mut tee = HeadTee {
                            inner: w,
                            head: &mut head,
                        };
                        reader.drain_long_line(&mut tee)
                    },
                    opts.max_line_bytes,
                )
                .map_err(io_err)?;
            out.rejects.push(RejectRow {
                line_no,
                field: "(line)".into(),
                reason: format!(
                    "line is {len} bytes, over the {}-byte limit",
                    opts.max_line_bytes
                ),
                raw: lossy_prefix(&head),
            });
        }
        out.consumed = reader.consumed();
        if at_end {
            if out.blank + out.header > 0 {
                let _ = tx.blocking_send(out);
            }
            break;
        }
        if tx.blocking_send(out).is_err() {
            break; // the writer stopped (a store error): it reports why
        }
    }
    Ok(sink)
}

/// Passes bytes through while keeping the first few for the database's copy of the line.
struct HeadTee<'a> {
    inner: &'a mut dyn io::Write,
    head: &'a mut Vec<u8>,
}

impl io::Write for HeadTee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let room = REJECT_RAW_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn lossy_prefix(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(REJECT_RAW_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}

/// Stores records made in code (the demo shop) through the same path as files, as one batch.
pub async fn import_records(
    store: &Store,
    source: &str,
    records: Vec<ShopRecord>,
    key_kind: &str,
    chunk: usize,
) -> Result<(BatchId, BatchCounts), StoreError> {
    let batch = store.begin_batch(source, "demo").await?;
    let mut counts = BatchCounts::default();
    let keyed: Vec<KeyedRecord> = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| KeyedRecord {
            key: record.content_key(key_kind, i as u64),
            line_no: i as u64 + 1,
            record,
        })
        .collect();
    let mut tx = store.begin_import().await?;
    for part in keyed.chunks(chunk.max(1)) {
        let new = tx.write_records(batch, part).await?;
        counts.accepted += new;
        counts.duplicates += part.len() as u64 - new;
    }
    tx.commit().await?;
    counts.records_read = keyed.len() as u64;
    store.finish_batch(batch, counts, None).await?;
    Ok((batch, counts))
}
