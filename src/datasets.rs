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
