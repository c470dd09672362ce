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

#[test]
fn air_passengers_and_wineind_chosen_model_is_no_worse_than_holt_winters() {
    for (name, len, sn_ref, hw_ref) in [
        ("airpassengers", 144, 9.99, 2.21),
        ("wineind", 176, 10.46, 9.67),
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
            e.chosen_mape <= hw + 1e-9,
            "{name}: chosen {:?} {} vs Holt-Winters {hw}",
            e.selection.chosen,
            e.chosen_mape
        );
    }
}
