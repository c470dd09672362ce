//! The line reader under every file format: numbered lines in chunks, over-long lines handed over
//! as they stream past, quoted CSV fields joined across lines. Every byte is accounted for.
#![no_main]
use dongcha::ingest::lines::LineReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&params, input)) = data.split_first() else {
        return;
    };
    let max = 1 + (params & 0x3f) as usize;
    let join_quoted = params & 0x40 != 0;
    let per_chunk = 1 + (params >> 7) as usize * 3;
    let mut reader = LineReader::new(input, max, join_quoted);
    let mut last_no = 0u64;
    let mut kept = 0usize;
    loop {
        let chunk = reader.read_chunk(per_chunk).expect("memory");
        for (no, range) in &chunk.lines {
            assert!(*no > last_no, "line numbers go forward: {no} after {last_no}");
            last_no = *no;
            assert!(range.len() <= max, "a kept line is within the limit");
            kept += range.len();
        }
        if let Some(no) = chunk.long_line {
            assert!(no > last_no, "the long line's number goes forward");
            last_no = no;
            let mut out = Vec::new();
            let n = reader.drain_long_line(&mut out).expect("memory");
            assert_eq!(n as usize, out.len());
            kept += out.len();
        } else if chunk.lines.is_empty() {
            break;
        }
        assert!(reader.consumed() as usize <= input.len());
    }
    assert_eq!(reader.consumed() as usize, input.len(), "the whole input is consumed");
    assert!(kept <= input.len());
});
