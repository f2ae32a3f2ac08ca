//! Paired comparison of two models' per-question results on the same questions: the accuracy
//! change with its paired standard error, and McNemar's exact test on the discordant questions.

use crate::Estimate;

/// Two models' accuracies on the same questions and whether they differ beyond chance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedAccuracy {
    pub questions: usize,
    pub base: f64,
    pub candidate: f64,
    /// candidate − base, with the standard error of the mean of the per-question differences.
    pub delta: Estimate,
    /// Questions the base gets right and the candidate wrong.
    pub lost: usize,
    /// Questions the candidate gets right and the base wrong.
    pub gained: usize,
    /// Two-sided exact McNemar p-value: the chance of a split of the discordant questions at
    /// least this uneven if neither model were better (1 when none are discordant).
    pub p_value: f64,
}

/// Compares per-question correctness; `base[i]` and `candidate[i]` are the same question.
///
/// # Panics
/// If the two slices differ in length (a caller's bug: they come from the same question list).
pub fn paired_accuracy(base: &[bool], candidate: &[bool]) -> PairedAccuracy {
    assert_eq!(base.len(), candidate.len(), "paired results need the same questions");
    let n = base.len();
    let (mut lost, mut gained, mut right_b, mut right_c) = (0, 0, 0, 0);
    for (&b, &c) in base.iter().zip(candidate) {
        right_b += usize::from(b);
        right_c += usize::from(c);
        lost += usize::from(b && !c);
        gained += usize::from(c && !b);
    }
    let nf = n.max(1) as f64;
    let mean = (gained as f64 - lost as f64) / nf;
    // Per-question differences are -1, 0 or 1: their sample variance from the counts.
    let stderr = if n > 1 {
        let ss = (lost + gained) as f64 - nf * mean * mean;
        (ss.max(0.0) / (nf - 1.0) / nf).sqrt()
    } else {
        0.0
    };
    PairedAccuracy {
        questions: n,
        base: right_b as f64 / nf,
        candidate: right_c as f64 / nf,
        delta: Estimate { value: mean, stderr },
        lost,
        gained,
        p_value: mcnemar_exact(lost, gained),
    }
}

/// Two-sided exact McNemar p-value: 2·P(X ≤ min(b, c)) for X ~ Binomial(b + c, ½), capped at 1.
/// Summed in log space so thousands of discordant pairs do not underflow.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // ln P(X = 0) = n ln ½; ln P(X = i+1) = ln P(X = i) + ln((n − i) / (i + 1)).
    let mut term = n as f64 * 0.5f64.ln();
    let mut terms = Vec::with_capacity(k + 1);
    terms.push(term);
    for i in 0..k {
        term += ((n - i) as f64 / (i + 1) as f64).ln();
        terms.push(term);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ln_tail = max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
    (2.0 * ln_tail.exp()).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_hand_computed_binomial_tails() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // n = 10, k = 1: 2 (1 + 10) / 1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert!((mcnemar_exact(9, 1) - 22.0 / 1024.0).abs() < 1e-12);
        // n = 6, k = 3: the split is even, the tail is past one half: capped.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        // n = 5, k = 0: 2 / 32.
        assert!((mcnemar_exact(0, 5) - 2.0 / 32.0).abs() < 1e-12);
        // Large n stays finite and tiny for a lopsided split, near 1 for an even one.
        let p = mcnemar_exact(1000, 1400);
        assert!(p > 0.0 && p < 1e-8, "{p}");
        assert!(mcnemar_exact(2000, 2010) > 0.8);
    }

    #[test]
    fn paired_delta_and_stderr_from_counts() {
        // 10 questions: 2 lost, 1 gained, 7 the same.
        let base = [true, true, false, true, true, false, true, true, false, true];
        let cand = [false, false, true, true, true, false, true, true, false, true];
        let p = paired_accuracy(&base, &cand);
        assert_eq!((p.lost, p.gained, p.questions), (2, 1, 10));
        assert!((p.base - 0.7).abs() < 1e-12 && (p.candidate - 0.6).abs() < 1e-12);
        assert!((p.delta.value + 0.1).abs() < 1e-12);
        // Differences: two -1, one +1, seven 0: mean -0.1, sample variance (3 - 0.1) / 9.
        let d = [-1.0f64, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let var = d.iter().map(|x| (x + 0.1) * (x + 0.1)).sum::<f64>() / 9.0;
        assert!((p.delta.stderr - (var / 10.0).sqrt()).abs() < 1e-12);
        assert!((p.p_value - mcnemar_exact(2, 1)).abs() < 1e-15);
    }

    #[test]
    fn identical_results_do_not_differ() {
        let r = [true, false, true];
        let p = paired_accuracy(&r, &r);
        assert_eq!((p.delta.value, p.delta.stderr, p.p_value), (0.0, 0.0, 1.0));
    }
}
