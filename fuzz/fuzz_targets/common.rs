//! What the reader targets share: fixed date rules and the checks every accepted record must pass.
use chrono::NaiveDate;
use dongcha::ingest::fields::DateRules;
use dongcha::store::records::ShopRecord;

pub fn rules() -> DateRules {
    DateRules {
        min_year: 1990,
        latest: NaiveDate::from_ymd_opt(2026, 11, 30).expect("date"),
    }
}

/// An accepted record has a customer, a plausible date, and a content key that does not depend on
/// anything but its content.
#[allow(dead_code)] // date_money reads no records
pub fn check_record(r: &ShopRecord, rules: &DateRules) {
    assert!(!r.customer_id.trim().is_empty(), "accepted without a customer: {r:?}");
    let dates = [
        r.purchase.as_ref().map(|p| p.date),
        r.review.as_ref().and_then(|p| p.date),
        r.social.as_ref().and_then(|p| p.date),
        r.search.as_ref().and_then(|p| p.date),
    ];
    for d in dates.into_iter().flatten() {
        assert!(rules.check(d).is_ok(), "accepted an implausible date {d}: {r:?}");
    }
    if let Some(rating) = r.review.as_ref().and_then(|v| v.rating) {
        assert!(rating.is_finite(), "accepted a rating that is not a number: {r:?}");
    }
    assert_eq!(r.content_key("shop", 0), r.content_key("shop", 0));
}
