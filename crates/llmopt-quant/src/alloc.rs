//! Formats under a byte budget: each tensor offers candidate formats with their size and predicted
//! error, and [`allocate`] picks one per tensor with the least summed error that fits the budget.

/// One tensor's choices: `bytes[i]` and `error[i]` of its candidate `i`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub bytes: Vec<u64>,
    pub error: Vec<f64>,
}

/// The candidate picked for each tensor, with the totals.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    pub picks: Vec<usize>,
    pub bytes: u64,
    pub error: f64,
}

/// Most size steps the table has: sizes are counted in quanta of `total / STEPS` bytes.
pub const STEPS: u64 = 1 << 16;

/// The quantum [`allocate`] counts sizes in for these options: a fixed fraction of the largest
/// total, so that it does not depend on the budget (which keeps the result monotone in it).
pub fn quantum(items: &[Options]) -> u64 {
    let max: u64 = items.iter().map(|o| o.bytes.iter().copied().max().unwrap_or(0)).sum();
    max.div_ceil(STEPS).max(1)
}

/// The least budget [`allocate`] accepts: every tensor's smallest candidate, rounded up to the
/// quantum as the table counts it.
pub fn smallest_total(items: &[Options]) -> u64 {
    let q = quantum(items);
    items.iter().map(|o| o.bytes.iter().map(|b| b.div_ceil(q)).min().unwrap_or(0)).sum::<u64>() * q
}

/// The least summed error with total bytes at most `budget`: an exact multiple-choice knapsack
/// by dynamic programming over sizes rounded up to [`quantum`] (so the true total never exceeds
/// the budget; the rounding costs at most one quantum per tensor). A larger budget never gives a
/// larger error. `None` when even the smallest candidates do not fit. Every tensor needs at least
/// one candidate.
pub fn allocate(items: &[Options], budget: u64) -> Option<Allocation> {
    let q = quantum(items);
    let steps = (budget / q) as usize;
    let units: Vec<Vec<usize>> =
        items.iter().map(|o| o.bytes.iter().map(|&b| b.div_ceil(q) as usize).collect()).collect();
    let min_units: usize = units.iter().map(|u| u.iter().copied().min().unwrap_or(0)).sum();
    if min_units > steps || items.iter().any(|o| o.bytes.is_empty()) {
        return None;
    }
    // best[b]: least error of the tensors so far within b quanta; choice[i][b]: tensor i's pick.
    let mut best = vec![0.0f64; steps + 1];
    let mut next = vec![f64::INFINITY; steps + 1];
    let mut choice = vec![vec![u8::MAX; steps + 1]; items.len()];
    for (i, (o, u)) in items.iter().zip(&units).enumerate() {
        next.fill(f64::INFINITY);
        for (c, (&uc, &e)) in u.iter().zip(&o.error).enumerate() {
            for b in uc..=steps {
                let v = best[b - uc] + e;
                if v < next[b] {
                    next[b] = v;
                    choice[i][b] = c as u8;
                }
            }
        }
        std::mem::swap(&mut best, &mut next);
    }
    let mut b = steps;
    let mut picks = vec![0; items.len()];
    for i in (0..items.len()).rev() {
        let c = choice[i][b] as usize;
        picks[i] = c;
        b -= units[i][c];
    }
    let bytes = items.iter().zip(&picks).map(|(o, &c)| o.bytes[c]).sum();
    let error = items.iter().zip(&picks).map(|(o, &c)| o.error[c]).sum();
    Some(Allocation { picks, bytes, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(u64, f64)]) -> Options {
        Options {
            bytes: pairs.iter().map(|p| p.0).collect(),
            error: pairs.iter().map(|p| p.1).collect(),
        }
    }

    /// Every combination, for small cases.
    fn brute(items: &[Options], budget: u64) -> Option<f64> {
        let mut best: Option<f64> = None;
        let n: usize = items.iter().map(|o| o.bytes.len()).product();
        for mut k in 0..n {
            let (mut bytes, mut err) = (0, 0.0);
            for o in items {
                let c = k % o.bytes.len();
                k /= o.bytes.len();
                bytes += o.bytes[c];
                err += o.error[c];
            }
            if bytes <= budget && best.is_none_or(|b| err < b) {
                best = Some(err);
            }
        }
        best
    }

    #[test]
    fn equals_brute_force_and_respects_the_budget() {
        // Sizes are multiples of the quantum here, so the table is exact.
        let mut seed = 12345u64;
        let mut rnd = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for _ in 0..40 {
            let items: Vec<Options> = (0..5)
                .map(|_| {
                    let n = 1 + rnd(4) as usize;
                    let mut pairs: Vec<(u64, f64)> =
                        (0..n).map(|_| (1 + rnd(20), rnd(1000) as f64 / 7.0)).collect();
                    pairs.sort_by_key(|p| p.0);
                    opts(&pairs)
                })
                .collect();
            assert_eq!(quantum(&items), 1);
            for budget in 0..110 {
                let got = allocate(&items, budget);
                assert_eq!(got.as_ref().map(|a| a.error), brute(&items, budget), "{budget}");
                if let Some(a) = got {
                    assert!(a.bytes <= budget);
                }
            }
        }
    }

    #[test]
    fn more_budget_never_gives_more_error() {
        let items: Vec<Options> = (0..50u64)
            .map(|i| {
                let n = 1000 + 37 * i;
                opts(&[(n * 45, 9.0 + i as f64), (n * 55, 3.0), (n * 85, 0.2 + i as f64 / 100.0)])
            })
            .collect();
        // The least budget the table takes: the smallest candidates, each rounded up to the quantum.
        let min = smallest_total(&items);
        let max: u64 = items.iter().map(|o| o.bytes[2]).sum();
        let mut last = f64::INFINITY;
        for k in 0..=100 {
            let budget = min + (max - min) * k / 100;
            let a = allocate(&items, budget).expect("the smallest candidates fit");
            assert!(a.bytes <= budget && a.error <= last, "{k}: {} > {last}", a.error);
            last = a.error;
        }
        let raw: u64 = items.iter().map(|o| o.bytes[0]).sum();
        assert!(min >= raw && allocate(&items, min - 1).is_none());
        let q = quantum(&items);
        assert_eq!(allocate(&items, max + 50 * q).unwrap().picks, vec![2; 50]);
    }
}
