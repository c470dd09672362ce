//! What the store accepts from ingestion: one validated shop record per source line, already cleaned and
//! keyed. The key is a content hash, so the same record arriving twice (a re-import, an overlapping export)
//! is recognised and stored once.

use chrono::NaiveDate;
use xxhash_rust::xxh3::Xxh3;

/// A record in the product brief's shape: a customer plus, optionally, a purchase, a review, a social
/// post and a search, all from one source line.
#[derive(Debug, Clone, PartialEq)]
pub struct ShopRecord {
    pub customer_id: String,
    pub product: Option<ProductRef>,
    pub purchase: Option<Purchase>,
    pub review: Option<ReviewPart>,
    pub social: Option<SocialPart>,
    pub search: Option<SearchPart>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductRef {
    pub id: i64,
    pub name: String,
    pub name_clean: String,
}

impl ProductRef {
    /// Products are identified by their cleaned name, so "iPhone 13" and "ｉＰｈｏｎｅ １３" are one.
    pub fn from_name(name: &str) -> Self {
        let name = name.trim().to_string();
        let name_clean = crate::nlp::text::normalize(&name).to_lowercase();
        let id = hash_parts(&[b"product", name_clean.as_bytes()]);
        Self {
            id,
            name,
            name_clean,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Purchase {
    pub date: NaiveDate,
    pub quantity: u32,
    /// What the customer paid for the line, in cents; `None` when the source gave no price.
    pub amount_cents: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReviewPart {
    pub date: Option<NaiveDate>,
    pub rating: Option<f64>,
    pub text_raw: String,
    pub text_clean: String,
    pub lang: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SocialPart {
    pub platform: String,
    pub post_id: Option<String>,
    pub date: Option<NaiveDate>,
    pub text_raw: String,
    pub text_clean: String,
    pub lang: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchPart {
    pub date: Option<NaiveDate>,
    pub query_raw: String,
    pub query_clean: String,
}

/// A record ready to store: its content key and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedRecord {
    pub key: i64,
    pub line_no: u64,
    pub record: ShopRecord,
}

impl ShopRecord {
    /// The content key: a hash over every source field (not the derived cleaned text), tagged by field so
    /// that moving a value between fields changes the key. `extra` distinguishes records whose fields are
    /// equal but which are known to be distinct (the n-th identical line of a transaction log).
    pub fn content_key(&self, source_kind: &str, extra: u64) -> i64 {
        let mut h = Xxh3::new();
        let mut put = |tag: u8, bytes: &[u8]| {
            h.update(&[tag]);
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        put(0, source_kind.as_bytes());
        put(1, self.customer_id.as_bytes());
        if let Some(p) = &self.product {
            put(2, p.name.as_bytes());
        }
        if let Some(p) = &self.purchase {
            put(3, p.date.to_string().as_bytes());
            put(4, &p.quantity.to_le_bytes());
            if let Some(a) = p.amount_cents {
                put(5, &a.to_le_bytes());
            }
        }
        if let Some(r) = &self.review {
            if let Some(d) = r.date {
                put(6, d.to_string().as_bytes());
            }
            if let Some(x) = r.rating {
                put(7, &x.to_bits().to_le_bytes());
            }
            put(8, r.text_raw.as_bytes());
        }
        if let Some(s) = &self.social {
            put(9, s.platform.as_bytes());
            if let Some(id) = &s.post_id {
                put(10, id.as_bytes());
            }
            if let Some(d) = s.date {
                put(11, d.to_string().as_bytes());
            }
            put(12, s.text_raw.as_bytes());
        }
        if let Some(q) = &self.search {
            if let Some(d) = q.date {
                put(13, d.to_string().as_bytes());
            }
            put(14, q.query_raw.as_bytes());
        }
        put(15, &extra.to_le_bytes());
        h.digest() as i64
    }
}

/// A 64-bit id from byte strings (length-prefixed, so ("ab","c") and ("a","bc") differ).
pub fn hash_parts(parts: &[&[u8]]) -> i64 {
    let mut h = Xxh3::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.digest() as i64
}

/// A line that could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRow {
    pub line_no: u64,
    pub field: String,
    pub reason: String,
    pub raw: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> ShopRecord {
        ShopRecord {
            customer_id: "u1".into(),
            product: Some(ProductRef::from_name("iPhone 13")),
            purchase: Some(Purchase {
                date: NaiveDate::from_ymd_opt(2023, 5, 1).unwrap(),
                quantity: 1,
                amount_cents: Some(69_900),
            }),
            review: None,
            social: None,
            search: None,
        }
    }

    #[test]
    fn keys_are_stable_and_sensitive_to_content() {
        let a = rec();
        assert_eq!(a.content_key("jsonl", 0), rec().content_key("jsonl", 0));
        let mut b = rec();
        b.purchase.as_mut().unwrap().amount_cents = Some(69_901);
        assert_ne!(a.content_key("jsonl", 0), b.content_key("jsonl", 0));
        assert_ne!(a.content_key("jsonl", 0), a.content_key("jsonl", 1));
        assert_ne!(a.content_key("jsonl", 0), a.content_key("cdnow", 0));
    }

    #[test]
    fn product_identity_ignores_width_and_case() {
        assert_eq!(
            ProductRef::from_name("iPhone 13").id,
            ProductRef::from_name(" ｉＰｈｏｎｅ　１３ ").id
        );
        assert_eq!(
            ProductRef::from_name("IPHONE 13").id,
            ProductRef::from_name("iphone 13").id
        );
        assert_ne!(
            ProductRef::from_name("iPhone 13").id,
            ProductRef::from_name("iPhone 14").id
        );
    }
}
