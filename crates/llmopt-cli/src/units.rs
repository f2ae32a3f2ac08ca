//! Human-readable sizes and rates for the commands' tables (decimal units, as llama.cpp prints).

/// `98.1 MB`, `1.12 GB`, `812.0 KB`.
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} KB", b / 1e3)
    }
}

/// Bytes per second as `12.3 GB/s`.
pub fn gb_per_s(bytes_per_s: f64) -> String {
    format!("{:.1} GB/s", bytes_per_s / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_unit() {
        assert_eq!(human_bytes(98_100_000), "98.1 MB");
        assert_eq!(human_bytes(1_120_000_000), "1.12 GB");
        assert_eq!(human_bytes(812_000), "812.0 KB");
        assert_eq!(gb_per_s(12.34e9), "12.3 GB/s");
    }
}
