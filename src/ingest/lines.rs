//! Reading a file as numbered lines in chunks, with bounded memory: a line longer than the limit is never
//! held whole; it is handed over to be copied (to the rejects file) as it streams past.
//!
//! In CSV mode a quoted field may span physical lines; such lines are joined into one record that keeps the
//! number of its first line.

use std::io::{self, BufRead, Write};
use std::ops::Range;

/// A run of complete lines. When `long_line` is set, the line after the last one is over the limit and
/// [`LineReader::drain_long_line`] must be called before the next chunk is read.
#[derive(Debug, Default)]
pub struct Chunk {
    pub buf: Vec<u8>,
    pub lines: Vec<(u64, Range<usize>)>,
    pub long_line: Option<u64>,
}

impl Chunk {
    pub fn line(&self, i: usize) -> &[u8] {
        &self.buf[self.lines[i].1.clone()]
    }
}

pub struct LineReader<R> {
    inner: R,
    max: usize,
    next_no: u64,
    consumed: u64,
    join_quoted: bool,
    at_start: bool,
    /// The over-long line being handed over: its first bytes, read before we knew it was too long, and
    /// whether its end was already among them.
    long: Option<(Vec<u8>, bool)>,
    eof: bool,
}

enum Step {
    /// A whole line is in the chunk buffer at this range.
    Line(Range<usize>),
    /// The current line went over the limit.
    TooLong,
    Eof,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max_line_bytes: usize, join_quoted: bool) -> Self {
        Self {
            inner,
            max: max_line_bytes,
            next_no: 1,
            consumed: 0,
            join_quoted,
            at_start: true,
            long: None,
            eof: false,
        }
    }

    /// Bytes of the file consumed so far (for progress).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Reads up to `max_lines` lines; an empty chunk without `long_line` means end of file.
    pub fn read_chunk(&mut self, max_lines: usize) -> io::Result<Chunk> {
        assert!(
            self.long.is_none(),
            "drain_long_line must be called after a long line"
        );
        let mut chunk = Chunk::default();
        while chunk.lines.len() < max_lines && !self.eof {
            let no = self.next_no;
            match self.read_line(&mut chunk.buf)? {
                Step::Line(r) => chunk.lines.push((no, r)),
                Step::TooLong => {
                    chunk.long_line = Some(no);
                    break;
                }
                Step::Eof => break,
            }
        }
        Ok(chunk)
    }

    /// Copies the over-long line announced by the last chunk to `out` (without its line ending) and
    /// returns its length in bytes.
    pub fn drain_long_line(&mut self, out: &mut dyn Write) -> io::Result<u64> {
        let (head, complete) = self.long.take().unwrap_or_default();
        out.write_all(&head)?;
        let mut len = head.len() as u64;
        if complete {
            return Ok(len);
        }
        loop {
            let avail = self.inner.fill_buf()?;
            if avail.is_empty() {
                self.eof = true;
                break;
            }
            match memchr::memchr(b'\n', avail) {
                Some(i) => {
                    out.write_all(&avail[..i])?;
                    len += i as u64;
                    self.inner.consume(i + 1);
                    self.consumed += i as u64 + 1;
                    break;
                }
                None => {
                    let n = avail.len();
                    out.write_all(avail)?;
                    len += n as u64;
                    self.inner.consume(n);
                    self.consumed += n as u64;
                }
            }
        }
        // A CR before the newline stays in the copied bytes: the rejects file keeps the line as it was.
        Ok(len)
    }

    fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Step> {
        let start = buf.len();
        let mut quotes_open = false;
        let mut physical_lines = 0u64;
        loop {
            let avail = self.inner.fill_buf()?;
            if avail.is_empty() {
                self.eof = true;
                if buf.len() == start && physical_lines == 0 {
                    return Ok(Step::Eof);
                }
                self.next_no += 1;
                return Ok(Step::Line(self.finish(buf, start)));
            }
            let (take, newline) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let piece = &avail[..take];
            if self.join_quoted {
                let n = memchr::memchr_iter(b'"', piece).count();
                if n % 2 == 1 {
                    quotes_open = !quotes_open;
                }
            }
            // The line's ending (LF or CRLF) does not count towards the limit, unless a quoted field
            // goes on past it (then it is part of the record).
            let ends = newline && !(self.join_quoted && quotes_open);
            let ending = if !ends {
                0
            } else if piece.ends_with(b"\r\n") {
                2
            } else {
                1
            };
            if buf.len() - start + take - ending > self.max {
                // Over the limit: keep what we have as the head of the long line and stop.
                let mut head = buf.split_off(start);
                head.extend_from_slice(piece);
                if newline {
                    head.pop();
                }
                self.inner.consume(take);
                self.consumed += take as u64;
                self.long = Some((head, newline));
                self.next_no += 1 + physical_lines;
                return Ok(Step::TooLong);
            }
            buf.extend_from_slice(piece);
            self.inner.consume(take);
            self.consumed += take as u64;
            if newline {
                if self.join_quoted && quotes_open {
                    physical_lines += 1;
                    continue;
                }
                self.next_no += 1 + physical_lines;
                return Ok(Step::Line(self.finish(buf, start)));
            }
        }
    }

    fn finish(&mut self, buf: &mut Vec<u8>, start: usize) -> Range<usize> {
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') && buf.len() > start {
            buf.pop();
        }
        let mut s = start;
        if self.at_start {
            self.at_start = false;
            if buf[start..].starts_with(&[0xEF, 0xBB, 0xBF]) {
                s += 3;
            }
        }
        s..buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize, csv: bool) -> Vec<Result<(u64, String), (u64, String)>> {
        let mut r = LineReader::new(input, max, csv);
        let mut out = Vec::new();
        loop {
            let c = r.read_chunk(2).unwrap();
            for i in 0..c.lines.len() {
                out.push(Ok((
                    c.lines[i].0,
                    String::from_utf8_lossy(c.line(i)).into_owned(),
                )));
            }
            if let Some(no) = c.long_line {
                let mut copy = Vec::new();
                let len = r.drain_long_line(&mut copy).unwrap();
                assert_eq!(len as usize, copy.len());
                out.push(Err((no, String::from_utf8_lossy(&copy).into_owned())));
            } else if c.lines.is_empty() {
                return out;
            }
        }
    }

    #[test]
    fn numbers_lines_and_strips_endings_and_bom() {
        let got = read_all(b"\xEF\xBB\xBFa\r\nb\n\nc", 100, false);
        assert_eq!(
            got,
            vec![
                Ok((1, "a".into())),
                Ok((2, "b".into())),
                Ok((3, "".into())),
                Ok((4, "c".into()))
            ]
        );
    }

    #[test]
    fn long_lines_are_streamed_out_whole_and_numbering_continues() {
        let long = "x".repeat(50);
        let input = format!("short\n{long}\nnext\n{long}");
        let got = read_all(input.as_bytes(), 10, false);
        assert_eq!(
            got,
            vec![
                Ok((1, "short".into())),
                Err((2, long.clone())),
                Ok((3, "next".into())),
                Err((4, long.clone())),
            ]
        );
        // A long line read in pieces smaller than the limit.
        let input = format!("{long}\nok\n");
        let reader = io::BufReader::with_capacity(4, input.as_bytes());
        let mut r = LineReader::new(reader, 10, false);
        let c = r.read_chunk(10).unwrap();
        assert_eq!(c.long_line, Some(1));
        let mut copy = Vec::new();
        r.drain_long_line(&mut copy).unwrap();
        assert_eq!(copy, long.as_bytes());
        let c = r.read_chunk(10).unwrap();
        assert_eq!(c.lines[0].0, 2);
        assert_eq!(c.line(0), b"ok");
    }

    #[test]
    fn csv_quoted_newlines_join_into_one_record() {
        let got = read_all(b"h1,h2\n1,\"multi\nline\"\n2,x\n", 100, true);
        assert_eq!(
            got,
            vec![
                Ok((1, "h1,h2".into())),
                Ok((2, "1,\"multi\nline\"".into())),
                Ok((4, "2,x".into()))
            ]
        );
    }
}
