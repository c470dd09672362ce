//! Charts as PNG (plotters on an RGB buffer, encoded with `png`): sales history with the forecast and its
//! 80%/95% bands, segment sizes. Labels are drawn with one font that covers Chinese (`[serve]
//! chart_font`), so 销售额 renders as text, not boxes. Charts draw only what the tool's output holds.

use std::path::Path;
use std::sync::Arc;

use plotters::prelude::*;
use plotters::style::FontStyle;
use serde_json::Value;

use super::Chart;

/// The family name the chart font is registered under.
const FAMILY: &str = "dongcha-chart";
const WIDTH: u32 = 960;
const HEIGHT: u32 = 540;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error(
        "chart font {path}: {reason} (install Debian's fonts-wqy-microhei or set [serve] chart_font)"
    )]
    Font { path: String, reason: String },
    #[error("drawing the chart: {0}")]
    Draw(String),
}

/// The chart font, registered once per process.
pub struct Font(());

impl Font {
    /// Loads and registers the TTF/OTF at `path`. The bytes live as long as the process (plotters keeps
    /// fonts in a global table).
    pub fn load(path: &Path) -> Result<Self, ChartError> {
        static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        let r = LOADED.get_or_init(|| {
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            covers_chinese(&bytes)?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| "not a font file plotters can read".to_string())
        });
        r.clone()
            .map(|_| Font(()))
            .map_err(|reason| ChartError::Font {
                path: path.display().to_string(),
                reason,
            })
    }
}

/// A font without Chinese or Latin glyphs would draw 销售额 or 2026 as boxes: refuse it.
fn covers_chinese(bytes: &[u8]) -> Result<(), String> {
    use ab_glyph::Font as _;
    let font = ab_glyph::FontRef::try_from_slice(bytes).map_err(|e| e.to_string())?;
    let missing: String = "销售额预测客群区间 Sales forecast 0123456789.-%"
        .chars()
        .filter(|c| font.glyph_id(*c).0 == 0)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("has no glyphs for {missing:?}"))
    }
}

/// The chart that goes with a tool's output, if any (failures are logged: a reply never fails for its
/// chart).
pub fn for_result(tool: &str, result: &Value, zh: bool, _font: &Font) -> Option<Chart> {
    let drawn = match tool {
        "sales_forecast" => forecast_chart(result, zh),
        "customer_segments" => segments_chart(result, zh),
        "review_sentiment" => sentiment_chart(result, zh),
        _ => return None,
    };
    match drawn {
        Ok(Some((title, png))) => {
            let id = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&png));
            Some(Chart {
                id,
                title,
                png: Arc::new(png),
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(tool, "no chart: {e}");
            None
        }
    }
}

/// A digest's chart: weekly revenue of the last weeks (`weeks`: week, total), then the weekly forecast
/// (`ahead`: period, forecast, lower80, upper80, lower95, upper95).
pub fn weekly_revenue(data: &Value, zh: bool, _font: &Font) -> Option<Chart> {
    let recent: Vec<(String, f64)> = data["weeks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| Some((d["week"].as_str()?.to_string(), f(d, "total")?)))
                .collect()
        })
        .unwrap_or_default();
    let steps = steps_of(&data["ahead"]);
    if recent.is_empty() {
        return None;
    }
    let title = if zh {
        format!(
            "每周销售额：近 {} 周与未来 {} 周预测（80%/95% 区间）",
            recent.len(),
            steps.len()
        )
    } else {
        format!(
            "Weekly revenue: the last {} weeks and the next {} forecast (80%/95% intervals)",
            recent.len(),
            steps.len()
        )
    };
    match draw_forecast(title, &recent, &steps, zh) {
        Ok(Some((title, png))) => Some(Chart {
            id: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&png)),
            title,
            png: Arc::new(png),
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("no digest chart: {e}");
            None
        }
    }
}

/// A digest's review chart: complaints per topic this period beside the previous one (`topics`:
/// topic, complaints, previous_complaints).
pub fn complaint_topics(data: &Value, zh: bool, _font: &Font) -> Option<Chart> {
    let topics: Vec<(String, f64, f64)> = data["topics"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t["topic"].as_str()?.to_string(),
                        f(t, "complaints")?,
                        f(t, "previous_complaints")?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if topics.is_empty() {
        return None;
    }
    let title = if zh {
        "投诉话题：本期与上期的差评数".to_string()
    } else {
        "Complaint topics: negative reviews this period and the previous one".to_string()
    };
    let drawn = (|| -> Result<Vec<u8>, ChartError> {
        let ymax = topics.iter().map(|t| t.1.max(t.2)).fold(1.0f64, f64::max) * 1.2;
        let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let mut c = ChartBuilder::on(&root)
                .caption(&title, (FAMILY, 22))
                .margin(16)
                .x_label_area_size(10)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..topics.len() as f64, 0f64..ymax)
                .map_err(draw_err)?;
            c.configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .y_label_formatter(&|y| format!("{y:.0}"))
                .label_style((FAMILY, 13))
                .draw()
                .map_err(draw_err)?;
            let grey = RGBColor(160, 160, 160);
            let red = RGBColor(214, 39, 40);
            c.draw_series(topics.iter().enumerate().map(|(i, t)| {
                Rectangle::new(
                    [(i as f64 + 0.1, 0.0), (i as f64 + 0.45, t.2)],
                    grey.filled(),
                )
            }))
            .map_err(draw_err)?
            .label(if zh { "上期" } else { "previous" })
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], grey.filled()));
            c.draw_series(topics.iter().enumerate().map(|(i, t)| {
                Rectangle::new(
                    [(i as f64 + 0.5, 0.0), (i as f64 + 0.85, t.1)],
                    red.filled(),
                )
            }))
            .map_err(draw_err)?
            .label(if zh { "本期" } else { "this period" })
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], red.filled()));
            c.draw_series(topics.iter().enumerate().map(|(i, t)| {
                Text::new(
                    format!("{} · {:.0} / {:.0}", t.0, t.2, t.1),
                    (i as f64 + 0.1, t.1.max(t.2) + ymax * 0.03),
                    (FAMILY, 14).into_font(),
                )
            }))
            .map_err(draw_err)?;
            c.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FAMILY, 13))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(draw_err)?;
            root.present().map_err(draw_err)?;
        }
        encode(&buf)
    })();
    match drawn {
        Ok(png) => Some(Chart {
            id: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&png)),
            title,
            png: Arc::new(png),
        }),
        Err(e) => {
            tracing::warn!("no complaint chart: {e}");
            None
        }
    }
}

fn steps_of(v: &Value) -> Vec<(String, [f64; 5])> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s["period"].as_str()?.to_string(),
                        [
                            f(s, "forecast")?,
                            f(s, "lower80")?,
                            f(s, "upper80")?,
                            f(s, "lower95")?,
                            f(s, "upper95")?,
                        ],
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn f(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn draw_err<E: std::fmt::Display>(e: E) -> ChartError {
    ChartError::Draw(e.to_string())
}

type Drawn = Result<Option<(String, Vec<u8>)>, ChartError>;

/// Daily sales of the recent weeks, then the forecast with its 80% and 95% bands.
fn forecast_chart(out: &Value, zh: bool) -> Drawn {
    let recent: Vec<(String, f64)> = out["recent"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| Some((d["day"].as_str()?.to_string(), f(d, "total")?)))
                .collect()
        })
        .unwrap_or_default();
    let steps = steps_of(&out["daily"]);
    if steps.is_empty() {
        return Ok(None);
    }
    let what = out["product"]
        .as_str()
        .or(out["category"].as_str())
        .map(|s| s.to_string());
    let title = match (zh, what) {
        (true, Some(w)) => format!("{w} 每日销售额与预测（80%/95% 区间）"),
        (true, None) => "每日销售额与预测（80%/95% 区间）".to_string(),
        (false, Some(w)) => format!("{w}: daily sales and forecast (80%/95% intervals)"),
        (false, None) => "Daily sales and forecast (80%/95% intervals)".to_string(),
    };
    draw_forecast(title, &recent, &steps, zh)
}

/// Actual totals, then forecast steps with their 80% and 95% bands, under `title`.
fn draw_forecast(
    title: String,
    recent: &[(String, f64)],
    steps: &[(String, [f64; 5])],
    zh: bool,
) -> Drawn {
    let labels: Vec<String> = recent
        .iter()
        .map(|r| r.0.clone())
        .chain(steps.iter().map(|s| s.0.clone()))
        .collect();
    let n = labels.len();
    let start = recent.len();
    let ymax = recent
        .iter()
        .map(|r| r.1)
        .chain(steps.iter().map(|s| s.1[4]))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.05;
    let ymin = steps.iter().map(|s| s.1[3]).fold(0.0f64, f64::min);
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut c = ChartBuilder::on(&root)
            .caption(&title, (FAMILY, 22))
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..(n.max(2) - 1) as f64, ymin..ymax)
            .map_err(draw_err)?;
        let lbl = labels.clone();
        c.configure_mesh()
            .x_labels(8)
            .x_label_formatter(&move |x| {
                lbl.get(x.round() as usize)
                    .map(|d| d.get(5..).unwrap_or(d).to_string())
                    .unwrap_or_default()
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FAMILY, 13))
            .draw()
            .map_err(draw_err)?;
        let x = |i: usize| (start + i) as f64;
        let band = |lo: usize, hi: usize| -> Vec<(f64, f64)> {
            let mut pts: Vec<(f64, f64)> = steps
                .iter()
                .enumerate()
                .map(|(i, s)| (x(i), s.1[hi]))
                .collect();
            pts.extend(steps.iter().enumerate().rev().map(|(i, s)| (x(i), s.1[lo])));
            pts
        };
        let blue = RGBColor(31, 119, 180);
        c.draw_series(std::iter::once(Polygon::new(band(3, 4), blue.mix(0.15))))
            .map_err(draw_err)?
            .label(if zh { "95% 区间" } else { "95% interval" })
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], blue.mix(0.15).filled())
            });
        c.draw_series(std::iter::once(Polygon::new(band(1, 2), blue.mix(0.3))))
            .map_err(draw_err)?
            .label(if zh { "80% 区间" } else { "80% interval" })
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], blue.mix(0.3).filled())
            });
        c.draw_series(LineSeries::new(
            steps.iter().enumerate().map(|(i, s)| (x(i), s.1[0])),
            blue.stroke_width(2),
        ))
        .map_err(draw_err)?
        .label(if zh { "预测" } else { "forecast" })
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], blue.stroke_width(2)));
        if !recent.is_empty() {
            c.draw_series(LineSeries::new(
                recent.iter().enumerate().map(|(i, r)| (i as f64, r.1)),
                BLACK.stroke_width(1),
            ))
            .map_err(draw_err)?
            .label(if zh {
                "实际销售额"
            } else {
                "actual sales"
            })
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FAMILY, 13))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(Some((title, encode(&buf)?)))
}

/// Customers per segment, each bar labelled with its name and size.
fn segments_chart(out: &Value, zh: bool) -> Drawn {
    let segs: Vec<(String, f64)> = out["segments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let name = crate::terms::term(s["name"].as_str()?, zh);
                    Some((name, f(s, "customers")?))
                })
                .collect()
        })
        .unwrap_or_default();
    if segs.is_empty() {
        return Ok(None);
    }
    let title = if zh {
        "各客群人数"
    } else {
        "Customers per segment"
    }
    .to_string();
    let ymax = segs.iter().map(|s| s.1).fold(1.0f64, f64::max) * 1.15;
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut c = ChartBuilder::on(&root)
            .caption(&title, (FAMILY, 22))
            .margin(16)
            .x_label_area_size(10)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..segs.len() as f64, 0f64..ymax)
            .map_err(draw_err)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FAMILY, 13))
            .draw()
            .map_err(draw_err)?;
        let blue = RGBColor(31, 119, 180);
        c.draw_series(segs.iter().enumerate().map(|(i, s)| {
            Rectangle::new(
                [(i as f64 + 0.1, 0.0), (i as f64 + 0.9, s.1)],
                blue.mix(0.8).filled(),
            )
        }))
        .map_err(draw_err)?;
        c.draw_series(segs.iter().enumerate().map(|(i, s)| {
            Text::new(
                format!("{} · {:.0}", s.0, s.1),
                (i as f64 + 0.12, s.1 + ymax * 0.02),
                (FAMILY, 14).into_font(),
            )
        }))
        .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(Some((title, encode(&buf)?)))
}

/// Positive and negative shares of the labelled reviews, week by week (weeks without reviews are gaps).
fn sentiment_chart(out: &Value, zh: bool) -> Drawn {
    let weeks: Vec<(String, usize, f64, f64)> = out["weekly"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| {
                    Some((
                        w["week"].as_str()?.to_string(),
                        w["reviews"].as_u64()? as usize,
                        f(w, "positive_pct")?,
                        f(w, "negative_pct")?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if weeks.iter().all(|w| w.1 == 0) {
        return Ok(None);
    }
    let what = out["product"].as_str().map(str::to_string);
    let title = match (zh, what) {
        (true, Some(w)) => format!("{w} 每周评价情感（好评/差评占比）"),
        (true, None) => "每周评价情感（好评/差评占比）".to_string(),
        (false, Some(w)) => format!("{w}: review sentiment per week (positive/negative share)"),
        (false, None) => "Review sentiment per week (positive/negative share)".to_string(),
    };
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut c = ChartBuilder::on(&root)
            .caption(&title, (FAMILY, 22))
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..(weeks.len().max(2) - 1) as f64, 0f64..100f64)
            .map_err(draw_err)?;
        let lbl: Vec<String> = weeks.iter().map(|w| w.0.clone()).collect();
        c.configure_mesh()
            .x_labels(weeks.len().min(12))
            .x_label_formatter(&move |x| {
                lbl.get(x.round() as usize)
                    .map(|d| d.get(5..).unwrap_or(d).to_string())
                    .unwrap_or_default()
            })
            .y_label_formatter(&|y| format!("{y:.0}%"))
            .label_style((FAMILY, 13))
            .draw()
            .map_err(draw_err)?;
        let green = RGBColor(44, 160, 44);
        let red = RGBColor(214, 39, 40);
        for (k, color, label) in [
            (2, green, if zh { "好评占比" } else { "positive" }),
            (3, red, if zh { "差评占比" } else { "negative" }),
        ] {
            let points: Vec<(f64, f64)> = weeks
                .iter()
                .enumerate()
                .filter(|(_, w)| w.1 > 0)
                .map(|(i, w)| (i as f64, if k == 2 { w.2 } else { w.3 }))
                .collect();
            c.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(draw_err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            c.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(draw_err)?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FAMILY, 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(Some((title, encode(&buf)?)))
}

fn encode(rgb: &[u8]) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(draw_err)?;
        w.write_image_data(rgb).map_err(draw_err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn font() -> Option<Font> {
        let p = crate::config::Config::from_toml_str("")
            .unwrap()
            .chart_font();
        p.is_file().then(|| Font::load(&p).unwrap())
    }

    #[test]
    fn a_forecast_chart_is_a_png_and_draws_chinese_glyphs() {
        let Some(font) = font() else {
            eprintln!("skipped: no chart font installed");
            return;
        };
        let out = json!({
            "recent": [{"day": "2026-06-29", "total": 100.0}, {"day": "2026-06-30", "total": 120.0}],
            "daily": [{"period": "2026-07-01", "forecast": 110.0, "lower80": 90.0, "upper80": 130.0,
                       "lower95": 80.0, "upper95": 140.0},
                      {"period": "2026-07-02", "forecast": 111.0, "lower80": 91.0, "upper80": 131.0,
                       "lower95": 81.0, "upper95": 141.0}]});
        let zh = for_result("sales_forecast", &out, true, &font).unwrap();
        assert_eq!(&zh.png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(zh.png.as_slice()));
        let info = decoder.read_info().unwrap();
        assert_eq!((info.info().width, info.info().height), (WIDTH, HEIGHT));
        // The same chart with English labels differs: the Chinese title was drawn as glyphs.
        let en = for_result("sales_forecast", &out, false, &font).unwrap();
        assert_ne!(zh.id, en.id);
        assert!(for_result("sales_summary", &out, true, &font).is_none());
    }

    #[test]
    fn a_sentiment_chart_draws_the_weeks_with_reviews_and_skips_an_empty_result() {
        let Some(font) = font() else {
            eprintln!("skipped: no chart font installed");
            return;
        };
        let week = |d: &str, n: u64, pos: f64, neg: f64| json!({"week": d, "reviews": n, "positive_pct": pos, "negative_pct": neg});
        let out = json!({"weekly": [week("2026-06-01", 40, 70.0, 20.0), week("2026-06-08", 0, 0.0, 0.0),
                                    week("2026-06-15", 35, 55.0, 35.0)]});
        let zh = for_result("review_sentiment", &out, true, &font).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(zh.png.as_slice()));
        let info = decoder.read_info().unwrap();
        assert_eq!((info.info().width, info.info().height), (WIDTH, HEIGHT));
        assert!(zh.title.contains("情感"));
        let en = for_result("review_sentiment", &out, false, &font).unwrap();
        assert_ne!(zh.id, en.id);
        // Different figures draw a different chart.
        let other = json!({"weekly": [week("2026-06-01", 40, 20.0, 70.0), week("2026-06-15", 35, 55.0, 35.0)]});
        assert_ne!(
            for_result("review_sentiment", &other, true, &font)
                .unwrap()
                .id,
            zh.id
        );
        let empty = json!({"weekly": [week("2026-06-01", 0, 0.0, 0.0)]});
        assert!(for_result("review_sentiment", &empty, true, &font).is_none());
    }
}
