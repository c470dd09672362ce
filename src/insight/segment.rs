//! Customer segments: k-means (linfa-clustering, fixed seed) on standardised log-RFM features, k given or
//! chosen by silhouette, each segment named by where its centroid lies (value, recency, frequency, age).

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use serde::Serialize;

use super::InsightError;
use super::rfm::{CustomerSummary, TextFeatures};

pub const FEATURES: [&str; 4] = [
    "log_frequency",
    "log_total_spent",
    "periods_since_last",
    "age",
];

fn raw_features(c: &CustomerSummary) -> [f64; 4] {
    [
        c.frequency.ln_1p(),
        c.total_spent.max(0.0).ln_1p(),
        c.periods_since_last(),
        c.t,
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub name: String,
    pub size: usize,
    pub revenue_share: f64,
    pub mean_frequency: f64,
    pub mean_total_spent: f64,
    pub mean_periods_since_last: f64,
    pub mean_age: f64,
    /// Members who wrote labelled reviews or posts, and what those say (when the text features were used).
    pub with_texts: usize,
    pub mean_sentiment: Option<f64>,
    pub abandon_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Segmentation {
    pub k: usize,
    /// Whether review/post sentiment and intent were clustering features.
    pub text_features: bool,
    /// Mean silhouette of the chosen k (on a sample), and of each k tried when k was chosen.
    pub silhouette: Vec<(usize, f64)>,
    pub segments: Vec<Segment>,
    /// Segment index of each input customer, in input order.
    #[serde(skip)]
    pub assignment: Vec<usize>,
}

fn standardize(rows: &[[f64; 4]]) -> Array2<f64> {
    let n = rows.len() as f64;
    let mut out = Array2::zeros((rows.len(), 4));
    for j in 0..4 {
        let mean = rows.iter().map(|r| r[j]).sum::<f64>() / n;
        let sd = (rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-12);
        for (i, r) in rows.iter().enumerate() {
            out[[i, j]] = (r[j] - mean) / sd;
        }
    }
    out
}

fn kmeans(x: &Array2<f64>, k: usize) -> Result<Vec<usize>, InsightError> {
    let data = DatasetBase::from(x.clone());
    let model = KMeans::params(k)
        .max_n_iterations(300)
        .tolerance(1e-6)
        .n_runs(4)
        .fit(&data)
        .map_err(|e| InsightError::Fit {
            model: "k-means",
            reason: e.to_string(),
        })?;
    Ok(model.predict(x).to_vec())
}

/// Mean silhouette on at most `sample` points (evenly spaced), Euclidean distance.
fn silhouette(x: &Array2<f64>, labels: &[usize], k: usize, sample: usize) -> f64 {
    let n = x.nrows();
    let step = (n / sample.max(1)).max(1);
    let idx: Vec<usize> = (0..n).step_by(step).collect();
    let dist = |a: usize, b: usize| -> f64 {
        x.row(a)
            .iter()
            .zip(x.row(b).iter())
            .map(|(p, q)| (p - q).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut total = 0.0;
    for &i in &idx {
        let mut sum = vec![0.0; k];
        let mut count = vec![0usize; k];
        for &j in &idx {
            if i != j {
                sum[labels[j]] += dist(i, j);
                count[labels[j]] += 1;
            }
        }
        let own = labels[i];
        let a = if count[own] > 0 {
            sum[own] / count[own] as f64
        } else {
            0.0
        };
        let b = (0..k)
            .filter(|c| *c != own && count[*c] > 0)
            .map(|c| sum[c] / count[c] as f64)
            .fold(f64::INFINITY, f64::min);
        total += if b.is_finite() && a.max(b) > 0.0 {
            (b - a) / a.max(b)
        } else {
            0.0
        };
    }
    total / idx.len() as f64
}

/// Names a segment from its means relative to the whole base (`base` = means over all customers).
fn name(mean: &[f64; 4], base: &[f64; 4], base_sd: &[f64; 4]) -> String {
    let z = |j: usize| (mean[j] - base[j]) / base_sd[j].max(1e-12);
    let (freq, value, silence, age) = (z(0), z(1), z(2), z(3));
    let value_word = if value > 0.5 {
        "high-value"
    } else if value > -0.25 {
        "mid-value"
    } else {
        "low-value"
    };
    // New: clearly younger than the base, and young in absolute terms (a base that all joined at once has
    // no new customers, only slightly younger ones).
    if age < -0.75 && freq < 0.25 && mean[3] < 0.5 * base[3] {
        return "new customers".into();
    }
    match (value_word, silence > 0.0) {
        ("high-value", false) if freq > 0.5 => "high-value loyal".into(),
        ("high-value", true) => "at-risk high-value".into(),
        (v, true) => format!("{v} lapsed"),
        (v, false) => format!("{v} active"),
    }
}

/// Segments `rows`; `k = None` tries 3..=6 and keeps the best silhouette.
pub fn segment(rows: &[CustomerSummary], k: Option<usize>) -> Result<Segmentation, InsightError> {
    segment_with_text(rows, &[], k)
}

/// Customers with texts below which the text features are left out of the clustering (too few to move a
/// centroid; their segment figures are still reported).
pub const MIN_TEXT_SHARE: f64 = 0.05;

/// Segments on log-RFM plus, when enough customers wrote labelled reviews or posts, their mean sentiment
/// and abandon-intent share (`text[i]` belongs to `rows[i]`'s customer; standardised over the writers,
/// customers without texts sit at the writers' mean, i.e. 0, so silence does not pull them anywhere).
pub fn segment_with_text(
    rows: &[CustomerSummary],
    text: &[Option<TextFeatures>],
    k: Option<usize>,
) -> Result<Segmentation, InsightError> {
    if rows.len() < 20 {
        return Err(InsightError::NoData("segments need at least 20 customers"));
    }
    let raw: Vec<[f64; 4]> = rows.iter().map(raw_features).collect();
    let mut x = standardize(&raw);
    let writers: Vec<usize> = (0..text.len().min(rows.len()))
        .filter(|i| text[*i].is_some())
        .collect();
    let use_text = writers.len() as f64 >= MIN_TEXT_SHARE * rows.len() as f64;
    if use_text {
        let cols: [fn(&TextFeatures) -> f64; 2] = [|t| t.mean_sentiment, |t| t.abandon_share];
        let mut extra = Array2::zeros((rows.len(), cols.len()));
        for (j, f) in cols.iter().enumerate() {
            let vals: Vec<f64> = writers
                .iter()
                .filter_map(|i| text[*i].map(|t| f(&t)))
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64)
                .sqrt()
                .max(1e-12);
            for &i in &writers {
                if let Some(t) = text[i] {
                    extra[[i, j]] = (f(&t) - mean) / sd;
                }
            }
        }
        x = ndarray::concatenate(ndarray::Axis(1), &[x.view(), extra.view()]).map_err(|e| {
            InsightError::Fit {
                model: "k-means",
                reason: e.to_string(),
            }
        })?;
    }
    let candidates: Vec<usize> = match k {
        Some(k) => vec![k.clamp(2, rows.len() / 2)],
        None => (3..=6).collect(),
    };
    let mut tried = Vec::new();
    let mut best: Option<(usize, f64, Vec<usize>)> = None;
    for k in candidates {
        let labels = kmeans(&x, k)?;
        let s = silhouette(&x, &labels, k, 2_000);
        tried.push((k, s));
        if best.as_ref().is_none_or(|b| s > b.1) {
            best = Some((k, s, labels));
        }
    }
    let (k, _, labels) = best.expect("at least one k");
    let n = rows.len() as f64;
    let mut base = [0.0; 4];
    let mut base_sd = [0.0; 4];
    for j in 0..4 {
        base[j] = raw.iter().map(|r| r[j]).sum::<f64>() / n;
        base_sd[j] = (raw.iter().map(|r| (r[j] - base[j]).powi(2)).sum::<f64>() / n).sqrt();
    }
    let revenue: f64 = rows.iter().map(|c| c.total_spent).sum();
    let mut segments: Vec<Segment> = (0..k)
        .filter_map(|s| {
            let members: Vec<usize> = (0..rows.len()).filter(|i| labels[*i] == s).collect();
            if members.is_empty() {
                return None;
            }
            let m = members.len() as f64;
            let mean_raw: [f64; 4] =
                std::array::from_fn(|j| members.iter().map(|i| raw[*i][j]).sum::<f64>() / m);
            let avg = |f: fn(&CustomerSummary) -> f64| {
                members.iter().map(|i| f(&rows[*i])).sum::<f64>() / m
            };
            let texts: Vec<TextFeatures> = members
                .iter()
                .filter_map(|i| text.get(*i).copied().flatten())
                .collect();
            let text_avg = |f: fn(&TextFeatures) -> f64| {
                (!texts.is_empty()).then(|| texts.iter().map(f).sum::<f64>() / texts.len() as f64)
            };
            Some(Segment {
                name: name(&mean_raw, &base, &base_sd),
                size: members.len(),
                revenue_share: members.iter().map(|i| rows[*i].total_spent).sum::<f64>()
                    / revenue.max(1e-12),
                mean_frequency: avg(|c| c.frequency),
                mean_total_spent: avg(|c| c.total_spent),
                mean_periods_since_last: avg(|c| c.periods_since_last()),
                mean_age: avg(|c| c.t),
                with_texts: texts.len(),
                mean_sentiment: text_avg(|t| t.mean_sentiment),
                abandon_share: text_avg(|t| t.abandon_share),
            })
        })
        .collect();
    // Two centroids can earn the same name: number them so every segment is distinct.
    let names: Vec<String> = segments.iter().map(|s| s.name.clone()).collect();
    for (i, s) in segments.iter_mut().enumerate() {
        if names.iter().filter(|n| **n == names[i]).count() > 1 {
            let nth = names[..=i].iter().filter(|n| **n == names[i]).count();
            s.name = format!("{} ({nth})", s.name);
        }
    }
    Ok(Segmentation {
        k,
        text_features: use_text,
        silhouette: tried,
        segments,
        assignment: labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn customer(i: u32, frequency: f64, spent: f64, since_last: f64, age: f64) -> CustomerSummary {
        let d = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        CustomerSummary {
            customer: i,
            frequency,
            recency: age - since_last,
            t: age,
            monetary_value: spent / (frequency + 1.0),
            first_purchase: d,
            last_purchase: d,
            total_spent: spent,
        }
    }

    #[test]
    fn well_separated_groups_are_found_and_named_by_their_centroids() {
        let mut rows = Vec::new();
        for i in 0..60 {
            let j = (i % 5) as f64;
            rows.push(customer(
                i,
                20.0 + j,
                5_000.0 + 100.0 * j,
                1.0 + 0.1 * j,
                70.0,
            )); // loyal big spenders
            rows.push(customer(
                100 + i,
                10.0 + j,
                3_000.0 + 50.0 * j,
                50.0 + j,
                75.0,
            )); // big spenders gone quiet
            rows.push(customer(
                200 + i,
                0.0,
                20.0 + j,
                2.0 + 0.1 * j,
                3.0 + 0.1 * j,
            )); // first-time buyers
        }
        let s = segment(&rows, Some(3)).unwrap();
        let mut names: Vec<&str> = s.segments.iter().map(|x| x.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            vec!["at-risk high-value", "high-value loyal", "new customers"],
            "{s:#?}"
        );
        assert!(s.segments.iter().all(|x| x.size == 60));
        let share: f64 = s.segments.iter().map(|x| x.revenue_share).sum();
        assert!((share - 1.0).abs() < 1e-9);
        // Deterministic: the same input gives the same segments.
        let again = segment(&rows, Some(3)).unwrap();
        assert_eq!(s.assignment, again.assignment);
    }

    #[test]
    fn review_sentiment_separates_customers_who_buy_alike() {
        let mut rows = Vec::new();
        let mut text = Vec::new();
        for i in 0..60 {
            let j = (i % 5) as f64;
            // Same purchase behaviour; half write happy reviews, half unhappy ones.
            rows.push(customer(i, 10.0 + j, 2_000.0 + 10.0 * j, 2.0, 60.0));
            text.push(Some(TextFeatures {
                texts: 3,
                mean_sentiment: 0.9 - 0.01 * j,
                abandon_share: 0.05,
                ..Default::default()
            }));
            rows.push(customer(100 + i, 10.0 + j, 2_000.0 + 10.0 * j, 2.0, 60.0));
            text.push(Some(TextFeatures {
                texts: 3,
                mean_sentiment: 0.15 + 0.01 * j,
                abandon_share: 0.7,
                ..Default::default()
            }));
            rows.push(customer(200 + i, 0.0, 20.0 + j, 1.0, 2.0 + 0.1 * j));
            text.push(None);
        }
        let s = segment_with_text(&rows, &text, Some(3)).unwrap();
        assert!(s.text_features);
        let happy = s.assignment[0];
        let unhappy = s.assignment[1];
        assert_ne!(happy, unhappy);
        for i in 0..60 {
            assert_eq!(s.assignment[3 * i], happy);
            assert_eq!(s.assignment[3 * i + 1], unhappy);
        }
        let sentiments: Vec<Option<f64>> = s.segments.iter().map(|g| g.mean_sentiment).collect();
        assert!(sentiments.iter().flatten().any(|m| *m > 0.8));
        assert!(sentiments.iter().flatten().any(|m| *m < 0.25));
        // Without text features the two groups cannot be told apart.
        let plain = segment(&rows, Some(3)).unwrap();
        assert!(!plain.text_features);
        assert_eq!(plain.assignment[0], plain.assignment[1]);
    }
}
