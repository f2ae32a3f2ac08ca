//! HTML reports, each one self-contained page (inline CSS, SVG charts from plotters, no scripts):
//! a profile ([`render_profile`]) and a size / KLD / speed trade-off ([`render_pareto`]).

mod axis;
mod charts;
mod page;
mod pareto;
mod profile;

pub use charts::{Rgb, KIND_COLORS, PALETTE};
pub use pareto::{pareto_front, render_pareto, FRONT_COLOR, OFF_FRONT_COLOR};
pub use profile::{render_profile, KV_COLOR, RSS_COLOR, WEIGHTS_COLOR};

/// Errors from rendering a report.
#[derive(thiserror::Error, Debug)]
pub enum HtmlError {
    /// plotters failed to draw a chart (it writes into a string, so this is a bug, not bad input).
    #[error("cannot draw the chart '{chart}': {message}")]
    Draw { chart: String, message: String },
}

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Decimal bytes: `812 B`, `98.1 MB`, `1.12 GB`.
pub(crate) fn bytes(b: f64) -> String {
    match b {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} KB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

/// Three significant digits (at most six decimals), `-` for a value that is not finite.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

/// Seconds in the unit that reads best: `812 µs`, `12.3 ms`, `1.24 s`.
pub(crate) fn seconds(s: f64) -> String {
    match s {
        s if !s.is_finite() => "-".into(),
        s if s >= 1.0 => format!("{} s", num(s)),
        s if s >= 1e-3 => format!("{} ms", num(s * 1e3)),
        s => format!("{} µs", num(s * 1e6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("models/ü.gguf"), "models/ü.gguf");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(0.012345), "0.0123");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(bytes(98_100_000.0), "98.1 MB");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(seconds(0.0123), "12.3 ms");
        assert_eq!(seconds(0.000_812), "812 µs");
        assert_eq!(seconds(2.5), "2.50 s");
    }
}
