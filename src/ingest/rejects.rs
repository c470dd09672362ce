//! Where bad lines go: a rejects file holding the lines byte for byte (a CSV one starts with the header, so
//! it can be fixed and re-imported), beside a summary with one line per reject and the totals. Both are
//! created on the first reject only.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::store::{BatchCounts, BatchId};

pub struct RejectSink {
    dir: PathBuf,
    stem: String,
    ext: String,
    source: String,
    /// Written first into a new rejects file (the CSV header).
    preamble: Option<Vec<u8>>,
    files: Option<(BufWriter<fs::File>, BufWriter<fs::File>)>,
    pub rejects_path: Option<PathBuf>,
    pub summary_path: Option<PathBuf>,
}

impl RejectSink {
    pub fn new(dir: &Path, source: &Path, batch: BatchId) -> Self {
        let name = source.file_name().unwrap_or_default().to_string_lossy();
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
            _ => (name.to_string(), String::new()),
        };
        Self {
            dir: dir.to_path_buf(),
            stem: format!("{stem}.batch-{}", batch.0),
            ext,
            source: source.display().to_string(),
            preamble: None,
            files: None,
            rejects_path: None,
            summary_path: None,
        }
    }

    pub fn set_preamble(&mut self, line: &[u8]) {
        self.preamble = Some(line.to_vec());
    }

    fn files(&mut self) -> io::Result<&mut (BufWriter<fs::File>, BufWriter<fs::File>)> {
        if self.files.is_none() {
            fs::create_dir_all(&self.dir)?;
            let rejects_path = self.dir.join(format!("{}.rejects{}", self.stem, self.ext));
            let summary_path = self.dir.join(format!("{}.summary.txt", self.stem));
            let mut rejects = BufWriter::new(fs::File::create(&rejects_path)?);
            let mut summary = BufWriter::new(fs::File::create(&summary_path)?);
            if let Some(p) = &self.preamble {
                rejects.write_all(p)?;
                rejects.write_all(b"\n")?;
            }
            writeln!(
                summary,
                "# rejected lines of {} (line\tfield\treason)",
                self.source
            )?;
            self.rejects_path = Some(rejects_path);
            self.summary_path = Some(summary_path);
            self.files = Some((rejects, summary));
        }
        Ok(self.files.as_mut().expect("just created"))
    }

    /// Records one rejected line whose bytes are at hand.
    pub fn reject(
        &mut self,
        line_no: u64,
        field: &str,
        reason: &str,
        raw: &[u8],
    ) -> io::Result<()> {
        let (rejects, summary) = self.files()?;
        rejects.write_all(raw)?;
        rejects.write_all(b"\n")?;
        writeln!(summary, "{line_no}\t{field}\t{reason}")?;
        Ok(())
    }

    /// Records an over-long line: `copy` streams its bytes into the rejects file and returns its length.
    pub fn reject_streamed(
        &mut self,
        line_no: u64,
        copy: impl FnOnce(&mut dyn Write) -> io::Result<u64>,
        max: usize,
    ) -> io::Result<u64> {
        let (rejects, summary) = self.files()?;
        let len = copy(rejects)?;
        rejects.write_all(b"\n")?;
        writeln!(
            summary,
            "{line_no}\t(line)\tline is {len} bytes, over the {max}-byte limit"
        )?;
        Ok(len)
    }

    /// Appends the totals to the summary and flushes both files.
    pub fn finish(
        &mut self,
        counts: &BatchCounts,
        header_lines: u64,
        blank_lines: u64,
    ) -> io::Result<()> {
        if let Some((rejects, summary)) = self.files.as_mut() {
            writeln!(
                summary,
                "# records read {}: accepted {}, duplicates {}, rejected {} (header lines {header_lines}, blank lines {blank_lines})",
                counts.records_read, counts.accepted, counts.duplicates, counts.rejected
            )?;
            rejects.flush()?;
            summary.flush()?;
        }
        Ok(())
    }
}
