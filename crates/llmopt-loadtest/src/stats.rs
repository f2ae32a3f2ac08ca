//! Latency summaries of a load level: count, mean and the percentiles a serving report needs.

use serde::Serialize;

/// Count, mean, p50/p90/p99 and max of a set of durations in seconds (linear interpolation between
/// the two nearest ranks, as numpy's default percentile).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Summary {
    /// How many values.
    pub count: usize,
    /// Their mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarizes `xs` (non-finite values are dropped); all zeros when none remain.
    pub fn of(xs: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = xs.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        Self {
            count: v.len(),
            mean,
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        }
    }
}

/// The `q`-th percentile of sorted, non-empty `v`.
fn percentile(v: &[f64], q: f64) -> f64 {
    let rank = q / 100.0 * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile(range(1, 11), [50, 90, 99]) = 5.5, 9.1, 9.91
        let s = Summary::of((1..=10).rev().map(f64::from));
        assert_eq!(s.count, 10);
        assert!((s.mean - 5.5).abs() < 1e-12);
        assert!((s.p50 - 5.5).abs() < 1e-12);
        assert!((s.p90 - 9.1).abs() < 1e-12);
        assert!((s.p99 - 9.91).abs() < 1e-12);
        assert_eq!(s.max, 10.0);
    }

    #[test]
    fn one_value_and_none() {
        let s = Summary::of([0.25]);
        assert_eq!((s.p50, s.p99, s.max), (0.25, 0.25, 0.25));
        assert_eq!(Summary::of([f64::NAN]), Summary::default());
    }
}
