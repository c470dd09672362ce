//! The relative-date reader ("上个月", "last 2 weeks", "去年双十一", "June compare to May"): any
//! question, any day. Periods are ordered and end no later than today.
#![no_main]
use chrono::{Duration, NaiveDate};
use dongcha::agent::dates;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((day, text)) = data.split_at_checked(2) else {
        return;
    };
    let Ok(q) = std::str::from_utf8(text) else {
        return;
    };
    let base = NaiveDate::from_ymd_opt(2000, 1, 1).expect("date");
    let today = base + Duration::days(i64::from(u16::from_le_bytes([day[0], day[1]])) % 14_000);
    if let Some(p) = dates::resolve(q, today) {
        assert!(p.from <= p.to, "{q:?} on {today}: {p:?}");
        assert!(p.to <= today, "{q:?} on {today}: {p:?} ends after today");
        let _ = dates::next_occurrence_days(q, &p, today);
    }
    for p in dates::periods(q, today) {
        assert!(p.from <= p.to, "{q:?} on {today}: {p:?}");
    }
    let _ = dates::horizon_days(q, today);
});
