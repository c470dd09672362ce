//! Insight model fitting speed: BG/NBD by maximum likelihood on the published CDNOW summary (2,357
//! customers; the paper's data). `scripts/bench-insight.sh` runs this next to lifetimes' BetaGeoFitter
//! on the same file and prints the ratio.
//!
//!     cargo bench --bench insight

use criterion::{Criterion, criterion_group, criterion_main};
use dongcha::assets::Assets;
use dongcha::config::Config;
use dongcha::insight::bgnbd::BgNbd;
use dongcha::insight::rfm::CustomerSummary;

fn published_summary() -> Vec<CustomerSummary> {
    let cfg = Config::load(None).expect("config");
    let assets = Assets::from_config(&cfg).expect("manifest");
    assets
        .ensure(&["cdnow"], &indicatif::ProgressBar::hidden())
        .expect("cdnow asset");
    let path = assets
        .path("cdnow", "cdnow_customers_summary.csv")
        .expect("cached");
    let day = chrono::NaiveDate::from_ymd_opt(1997, 1, 1).expect("date");
    std::fs::read_to_string(path)
        .expect("summary")
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<f64> = l.split(',').map(|v| v.parse().expect("number")).collect();
            CustomerSummary {
                customer: c[0] as u32,
                frequency: c[1],
                recency: c[2],
                t: c[3],
                monetary_value: 0.0,
                first_purchase: day,
                last_purchase: day,
                total_spent: 0.0,
            }
        })
        .collect()
}

fn bench_bgnbd(c: &mut Criterion) {
    let rows = published_summary();
    let fit = BgNbd::fit(&rows).expect("fit");
    eprintln!(
        "dongcha BG/NBD on CDNOW: r={:.4} alpha={:.4} a={:.4} b={:.4} LL={:.2} ({} iterations)",
        fit.params.r,
        fit.params.alpha,
        fit.params.a,
        fit.params.b,
        fit.log_likelihood,
        fit.iterations
    );
    c.bench_function("bgnbd_fit_cdnow_2357", |b| {
        b.iter(|| BgNbd::fit(std::hint::black_box(&rows)).expect("fit"))
    });
}

criterion_group!(benches, bench_bgnbd);
criterion_main!(benches);
