//! The insight models against published results on the real CDNOW data (shipped in lifetimes 0.11.3).

mod common;

use std::collections::HashMap;

use chrono::NaiveDate;
use dongcha::assets::Assets;
use dongcha::config::Config;
use dongcha::datasets::cdnow_purchases;
use dongcha::insight::bgnbd::BgNbd;
use dongcha::insight::churn::evaluate_holdout;
use dongcha::insight::clv::{GammaGamma, lifetime_value};
use dongcha::insight::rfm::{CustomerSummary, Purchase, summarize};

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y%m%d").unwrap()
}

fn assets() -> Assets {
    common::asset_file("cdnow", "CDNOW_master.txt");
    Assets::from_config(&Config::load(None).unwrap()).unwrap()
}

/// CDNOW_sample.txt, customers by their sample index (the published summary's ID).
fn cdnow_sample() -> Vec<Purchase> {
    cdnow_purchases(&assets(), "CDNOW_sample.txt", 1).unwrap()
}

fn cdnow_master() -> Vec<Purchase> {
    cdnow_purchases(&assets(), "CDNOW_master.txt", 0).unwrap()
}

/// cdnow_customers_summary.csv: the published (x, t_x, T) per customer, in weeks.
fn published_summary() -> Vec<(u32, f64, f64, f64)> {
    let text = std::fs::read_to_string(common::asset_file("cdnow", "cdnow_customers_summary.csv"))
        .unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (
                c[0].parse().unwrap(),
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            )
        })
        .collect()
}

fn as_summaries(rows: &[(u32, f64, f64, f64)]) -> Vec<CustomerSummary> {
    rows.iter()
        .map(|(id, x, tx, t)| CustomerSummary {
            customer: *id,
            frequency: *x,
            recency: *tx,
            t: *t,
            monetary_value: 0.0,
            first_purchase: date("19970101"),
            last_purchase: date("19970101"),
            total_spent: 0.0,
        })
        .collect()
}

const CUTOFF: &str = "19970930";

#[test]
fn rfm_reproduces_the_published_cdnow_summary_exactly() {
    let ours = summarize(&cdnow_sample(), date(CUTOFF), 7.0);
    let published = published_summary();
    assert_eq!(ours.len(), 2_357);
    assert_eq!(published.len(), 2_357);
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    for (o, (id, x, tx, t)) in ours.iter().zip(&published) {
        assert_eq!(o.customer, *id);
        assert_eq!(
            (o.frequency, round2(o.recency), round2(o.t)),
            (*x, *tx, *t),
            "customer {id}"
        );
    }
}

#[test]
fn bgnbd_fit_matches_the_paper_to_three_decimals() {
    let rows = as_summaries(&published_summary());
    let fit = BgNbd::fit(&rows).unwrap();
    let p = fit.params;
    let round3 = |v: f64| (v * 1000.0).round() / 1000.0;
    assert_eq!(
        (round3(p.r), round3(p.alpha), round3(p.a), round3(p.b)),
        (0.243, 4.414, 0.793, 2.426),
        "{fit:?}"
    );
    assert!(
        (fit.log_likelihood - (-9582.4)).abs() < 0.05,
        "{}",
        fit.log_likelihood
    );

    // The same fit from our own summary of the raw transactions.
    let ours = BgNbd::fit(&summarize(&cdnow_sample(), date(CUTOFF), 7.0)).unwrap();
    assert!(
        (ours.params.r - p.r).abs() < 2e-3 && (ours.params.b - p.b).abs() < 2e-2,
        "{ours:?}"
    );
}

#[test]
fn gamma_gamma_matches_lifetimes_on_the_repeat_buyers() {
    let text = std::fs::read_to_string(common::asset_file(
        "cdnow",
        "cdnow_customers_summary_with_transactions.csv",
    ))
    .unwrap();
    let rows: Vec<CustomerSummary> = text
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
            let mut s = as_summaries(&[(c[0] as u32, c[1], c[2], c[3])])[0];
            s.monetary_value = c[4];
            s
        })
        .collect();
    let fit = GammaGamma::fit(&rows).unwrap();
    assert_eq!(fit.customers, 946);
    let g = fit.params;
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    // lifetimes 0.11.3's GammaGammaFitter on the same file: p 6.248802, q 3.744588, v 15.447748 (it prints
    // "p: 6.25, q: 3.74, v: 15.45"; the 15.44 truncates the same value).
    assert_eq!((round2(g.p), round2(g.q)), (6.25, 3.74), "{fit:?}");
    for (ours, lifetimes) in [(g.p, 6.248_802), (g.q, 3.744_588), (g.gamma, 15.447_748)] {
        assert!((ours - lifetimes).abs() < 1e-3, "{fit:?}");
    }

    // Lifetime value of the paper's example customer over a year, 1% a month: positive, and larger for
    // a customer who buys more and more recently.
    let bg = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    let mut c = rows[0];
    let base = lifetime_value(&bg, &g, &c, 12, 0.01, 7.0);
    assert!(base > 0.0);
    c.frequency += 3.0;
    c.recency = c.t;
    assert!(lifetime_value(&bg, &g, &c, 12, 0.01, 7.0) > base);
}

#[test]
fn churn_classifier_is_evaluated_on_a_true_holdout() {
    let purchases = cdnow_master();
    // 30% of customers, chosen by a fixed hash of their id, are held out.
    let in_test = |c: u32| (c.wrapping_mul(2_654_435_761) >> 16) % 10 < 3;
    let eval = evaluate_holdout(&purchases, date(CUTOFF), date("19980630"), 7.0, in_test).unwrap();
    let customers: HashMap<u32, ()> = purchases.iter().map(|p| (p.customer, ())).collect();
    assert_eq!(eval.customers_train + eval.customers_test, customers.len());
    assert!(eval.customers_test > 6_000);
    println!("{eval:#?}");
    assert!(eval.auc_classifier > 0.75, "{eval:?}");
    assert!(eval.auc_classifier > eval.auc_p_alive, "{eval:?}");
    assert!(
        eval.auc_classifier >= eval.auc_expected_purchases - 0.01,
        "{eval:?}"
    );
}
