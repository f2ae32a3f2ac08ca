//! Money and CO2 from measured time and energy: a price profile (machine $/hour, electricity
//! $/kWh, grid gCO2/kWh) read from a JSON file or given as numbers, and the arithmetic.

use std::path::Path;

use serde::Deserialize;

use crate::{
    report::{Cost, Energy, Prices},
    ProfileError,
};

/// The defaults when neither a file nor flags give a price. They are labelled as assumptions in
/// every report: a small cloud instance (2 vCPUs), a typical retail electricity price, and a
/// grid near the world average.
pub const DEFAULT_PRICES: Prices =
    Prices { usd_per_hour: 0.10, usd_per_kwh: 0.15, grid_gco2_per_kwh: 400.0 };

/// A price file: any subset of the fields, the rest from the defaults (or the flags).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceFile {
    pub usd_per_hour: Option<f64>,
    pub usd_per_kwh: Option<f64>,
    pub grid_gco2_per_kwh: Option<f64>,
    pub watts_per_core: Option<f64>,
}

impl PriceFile {
    /// Reads and validates a JSON price file.
    pub fn read(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ProfileError::Invalid(format!("cannot read price file {}: {e}", path.display()))
        })?;
        let file: Self = serde_json::from_str(&text).map_err(|e| {
            ProfileError::Invalid(format!(
                "price file {}: {e} (expected JSON like {{\"usd_per_hour\": 0.1, \"usd_per_kwh\": \
                 0.15, \"grid_gco2_per_kwh\": 400, \"watts_per_core\": 8}})",
                path.display()
            ))
        })?;
        for (name, v) in [
            ("usd_per_hour", file.usd_per_hour),
            ("usd_per_kwh", file.usd_per_kwh),
            ("grid_gco2_per_kwh", file.grid_gco2_per_kwh),
            ("watts_per_core", file.watts_per_core),
        ] {
            if let Some(v) = v {
                check_price(name, v)?;
            }
        }
        Ok(file)
    }
}

/// A price or intensity must be a finite number >= 0.
pub fn check_price(name: &str, v: f64) -> Result<(), ProfileError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ProfileError::Invalid(format!("invalid {name} {v}: must be a finite number >= 0")))
    }
}

/// Energy and cost of `tokens` tokens (prompt and generated) that took `wall_s` seconds and
/// `joules`, for `queries` queries.
pub fn price(
    prices: &Prices,
    wall_s: f64,
    joules: f64,
    tokens: usize,
    queries: usize,
) -> (Energy, Cost) {
    let kwh = joules / 3.6e6;
    let usd = wall_s / 3600.0 * prices.usd_per_hour + kwh * prices.usd_per_kwh;
    let per_token = |x: f64| if tokens > 0 { x / tokens as f64 } else { 0.0 };
    let energy = Energy { joules, wh_per_1k_tokens: per_token(kwh * 1000.0) * 1000.0 };
    let cost = Cost {
        usd_per_1m_tokens: per_token(usd) * 1e6,
        usd_per_query: if queries > 0 { usd / queries as f64 } else { 0.0 },
        gco2_per_1k_tokens: per_token(kwh * prices.grid_gco2_per_kwh) * 1000.0,
    };
    (energy, cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_arithmetic() {
        let p = Prices { usd_per_hour: 3.6, usd_per_kwh: 0.5, grid_gco2_per_kwh: 400.0 };
        // 10 s and 36 kJ (0.01 kWh) for 2000 tokens of 4 queries.
        let (e, c) = price(&p, 10.0, 36_000.0, 2000, 4);
        assert!((e.wh_per_1k_tokens - 5.0).abs() < 1e-9);
        // Machine: 0.01 $; electricity: 0.005 $.
        assert!((c.usd_per_1m_tokens - 0.015 / 2000.0 * 1e6).abs() < 1e-9);
        assert!((c.usd_per_query - 0.015 / 4.0).abs() < 1e-12);
        // 0.01 kWh × 400 g over 2 k tokens.
        assert!((c.gco2_per_1k_tokens - 2.0).abs() < 1e-9);
        let (e, c) = price(&p, 0.0, 0.0, 0, 0);
        assert_eq!((e.wh_per_1k_tokens, c.usd_per_1m_tokens, c.usd_per_query), (0.0, 0.0, 0.0));
    }

    #[test]
    fn price_files_are_validated() {
        let dir = std::env::temp_dir().join(format!("llmopt-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ok = PriceFile::read(&write("ok.json", r#"{"usd_per_kwh": 0.3}"#)).unwrap();
        assert_eq!(ok.usd_per_kwh, Some(0.3));
        assert_eq!(ok.usd_per_hour, None);
        for (name, text, want) in [
            ("neg.json", r#"{"usd_per_hour": -1}"#, "must be a finite number >= 0"),
            ("typo.json", r#"{"usd_per_hr": 1}"#, "unknown field"),
            ("bad.json", "not json", "expected JSON like"),
        ] {
            let e = PriceFile::read(&write(name, text)).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
        let e = PriceFile::read(&dir.join("missing.json")).unwrap_err().to_string();
        assert!(e.contains("cannot read price file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
