//! Chart axes: linear, logarithmic or categorical, each with its own labelled ticks (round numbers,
//! the measured values, or names), mapped onto one plotters coordinate type.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

use super::charts::max_finite;

/// Pixels per character of the 13 px tick labels, for sizing the label area.
pub(super) const CHAR_PX: f64 = 7.5;

/// How data values map to positions along an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scale {
    Linear,
    Log,
    /// Slots 0, 1, ... (bars, one per name): no grid lines along this axis.
    Categories,
}

/// One axis: its title, scale, drawn range (data units) and labelled ticks.
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub(super) title: String,
    pub(super) scale: Scale,
    /// The drawn range, in data units.
    pub(super) range: (f64, f64),
    ticks: Vec<(f64, String)>,
}

impl Axis {
    /// A linear axis over `lo..hi`, widened to round ticks (about five of them).
    pub fn linear(title: &str, lo: f64, hi: f64) -> Self {
        let (lo, hi) = nonempty(lo, hi);
        let step = nice_step((hi - lo) / 5.0);
        let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let n = ((hi - lo) / step).round() as usize;
        let decimals = decimals_of(step);
        let ticks =
            (0..=n).map(|i| lo + i as f64 * step).map(|v| (v, tick_text(v, decimals))).collect();
        Self { title: title.into(), scale: Scale::Linear, range: (lo, hi), ticks }
    }

    /// A linear axis from 0 to the largest finite value (quantities: tokens/s, bytes, seconds).
    pub fn from_zero(title: &str, values: impl IntoIterator<Item = f64>) -> Self {
        Self::linear(title, 0.0, max_finite(values).unwrap_or(1.0))
    }

    /// A log axis over the positive `lo..hi`, ticks at 1, 2 and 5 times powers of ten (only the
    /// powers past three decades).
    pub fn log(title: &str, lo: f64, hi: f64) -> Self {
        let lo = if lo > 0.0 && lo.is_finite() { lo } else { 1e-6 };
        let hi = if hi > lo && hi.is_finite() { hi } else { lo * 10.0 };
        let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let steps: &[f64] = if d1 - d0 > 3 { &[1.0] } else { &[1.0, 2.0, 5.0] };
        let (lo, hi) = (lo / 1.25, hi * 1.25);
        let ticks = (d0..=d1)
            .flat_map(|d| steps.iter().map(move |m| m * 10f64.powi(d)))
            .filter(|&v| v >= lo && v <= hi)
            .map(|v| (v, tick_text(v, decimals_of(v))))
            .collect();
        Self { title: title.into(), scale: Scale::Log, range: (lo, hi), ticks }
    }

    /// A log axis with a tick at each of the (integer) `values`, e.g. the context lengths measured,
    /// or a linear one when they span less than a factor of 4.
    pub fn at_values(title: &str, values: &[f64]) -> Self {
        let lo = values.iter().copied().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        let Some(hi) = max_finite(values.iter().copied()) else {
            return Self::linear(title, 0.0, 1.0);
        };
        if !(lo.is_finite() && hi >= 4.0 * lo) {
            return Self::linear(title, 0.0, hi);
        }
        let ticks = values.iter().map(|&v| (v, format!("{v:.0}"))).collect();
        Self { title: title.into(), scale: Scale::Log, range: (lo / 1.3, hi * 1.3), ticks }
    }

    /// One slot per name at positions 0, 1, ...; on a vertical axis the first name is at the top.
    /// With many names only every k-th is labelled.
    pub fn categories(title: &str, names: &[String]) -> Self {
        let every = names.len().div_ceil(16).max(1);
        let ticks = names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as f64, if i % every == 0 { n.clone() } else { String::new() }))
            .collect();
        let n = names.len().max(1) as f64;
        Self { title: title.into(), scale: Scale::Categories, range: (-0.5, n - 0.5), ticks }
    }

    /// A log axis extended down to show 0 as a tick of its own below the data (see [`Axis::zero`]).
    pub fn with_zero(mut self) -> Self {
        if self.scale == Scale::Log {
            let zero = self.range.0 / 3.0;
            self.range.0 /= 8.0;
            self.ticks.insert(0, (zero, "0".into()));
        }
        self
    }

    /// Where 0 is drawn: 0, or the "0" tick of a log axis [`Axis::with_zero`] (else its bottom).
    pub fn zero(&self) -> f64 {
        match self.ticks.first() {
            _ if self.scale != Scale::Log => 0.0,
            Some((v, label)) if label == "0" => *v,
            _ => self.range.0,
        }
    }

    pub fn is_log(&self) -> bool {
        self.scale == Scale::Log
    }

    /// The position of data value `v` in plot units (log10 on a log axis).
    pub(super) fn pos(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Log => v.max(f64::MIN_POSITIVE).log10(),
            Scale::Linear | Scale::Categories => v,
        }
    }

    pub(super) fn coord(&self, vertical: bool) -> Ticked {
        let (lo, hi) = (self.pos(self.range.0), self.pos(self.range.1));
        let ticks = self.ticks.iter().map(|t| self.flip(self.pos(t.0), vertical)).collect();
        Ticked { lo, hi, ticks }
    }

    /// Categories on a vertical axis run top-down: slot i is drawn at n-1-i.
    pub(super) fn flip(&self, p: f64, vertical: bool) -> f64 {
        if vertical && self.scale == Scale::Categories {
            self.range.1 + self.range.0 - p
        } else {
            p
        }
    }

    pub(super) fn label_at(&self, pos: f64, vertical: bool) -> String {
        let tol = 1e-9 * (self.pos(self.range.1) - self.pos(self.range.0)).abs().max(1e-300);
        self.ticks
            .iter()
            .find(|t| (self.flip(self.pos(t.0), vertical) - pos).abs() <= tol.max(1e-9))
            .map_or_else(String::new, |t| t.1.clone())
    }

    /// Pixels the tick labels of a vertical axis need, with the rotated title.
    pub(super) fn label_width(&self) -> u32 {
        let chars = self.ticks.iter().map(|t| t.1.chars().count()).max().unwrap_or(1);
        (chars as f64 * CHAR_PX) as u32 + 34
    }
}

/// A linear plotters coordinate over plot units (log10 of the data on a log axis) whose tick marks
/// are exactly the axis's ticks, no light grid lines.
pub(super) struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// A finite range that is not empty.
fn nonempty(lo: f64, hi: f64) -> (f64, f64) {
    let lo = if lo.is_finite() { lo } else { 0.0 };
    let hi = if hi.is_finite() { hi } else { lo + 1.0 };
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + lo.abs().max(1.0))
    }
}

/// `v` with `decimals` decimals, but 0 as `0`.
fn tick_text(v: f64, decimals: usize) -> String {
    if v.abs() < 1e-12 {
        "0".into()
    } else {
        format!("{v:.decimals$}")
    }
}

/// Decimals that show `step` (and multiples of it) exactly: 0 for 20, 1 for 2.5, 3 for 0.005.
fn decimals_of(step: f64) -> usize {
    let mut d = 0;
    while d < 12
        && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-6
    {
        d += 1;
    }
    d
}

/// 1, 2, 2.5 or 5 times a power of ten, the smallest at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_cover_the_data() {
        let a = Axis::from_zero("t/s", [0.0, 87.0, 413.0]);
        let t: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(t, ["0", "100", "200", "300", "400", "500"]);
        let kld = Axis::linear("kld", 0.0, 0.011);
        let t: Vec<&str> = kld.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(t, ["0", "0.0025", "0.0050", "0.0075", "0.0100", "0.0125"]);
        let small = Axis::linear("ms", 20.0, 31.0);
        let t: Vec<&str> = small.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(t, ["20.0", "22.5", "25.0", "27.5", "30.0", "32.5"]);
        let empty = Axis::from_zero("x", [f64::NAN]);
        assert_eq!(empty.range, (0.0, 1.0));
    }

    #[test]
    fn log_ticks_and_value_ticks() {
        let a = Axis::log("kld", 0.002, 0.09);
        let t: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(t, ["0.002", "0.005", "0.01", "0.02", "0.05", "0.1"]);
        let ctx = Axis::at_values("ctx", &[128.0, 512.0, 2048.0]);
        assert!(ctx.is_log());
        let near = Axis::at_values("ctx", &[512.0, 1024.0]);
        assert!(!near.is_log());
    }
}
