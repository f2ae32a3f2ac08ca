//! `eval compare --speed` (and `quantize --validate`): both models' prefill and decode speed, timed
//! as `llmopt bench` times them (pp512 and tg128 after a warm-up, each into an empty cache), and
//! the candidate's speed as a ratio of the base's: the cost side of an optimization beside its loss.

use anyhow::{Context, Result};
use comfy_table::Table;
use llmopt_profile::{run_test, BenchTest, TestKind, TestResult};
use llmopt_store::Metric as StoreMetric;

use crate::{load::Loaded, progress};

/// The two tests, as llama-bench's defaults.
const TESTS: [BenchTest; 2] = [
    BenchTest { kind: TestKind::Prefill, n_tokens: 512 },
    BenchTest { kind: TestKind::Decode, n_tokens: 128 },
];

/// Timed repetitions of each test.
const REPS: usize = 3;

/// One model's results of [`TESTS`], in order.
pub(crate) struct Speed(Vec<TestResult>);

/// Times `m` on [`TESTS`] with a progress bar; `who` names it ("base", "candidate").
pub(crate) fn measure(m: &Loaded, who: &str) -> Result<Speed> {
    let first = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
    let mut results = Vec::with_capacity(TESTS.len());
    for test in TESTS {
        let bar = progress::bar(REPS as u64, "{msg:>20} {bar:30} {pos}/{len} [{elapsed}]");
        bar.set_message(format!("{who}: {}", test.name()));
        let r = run_test(&m.model, &m.pool, test, REPS, first, 0, &mut |done, _| {
            bar.set_position(done as u64)
        })
        .with_context(|| format!("cannot time the {who} on {}", test.name()))?;
        bar.finish_and_clear();
        results.push(r);
    }
    Ok(Speed(results))
}

/// Candidate over base tokens/s of each test, with the test's name.
fn ratios(s: &[Speed; 2]) -> impl Iterator<Item = (String, f64, &TestResult, &TestResult)> {
    s[0].0.iter().zip(&s[1].0).map(|(b, c)| {
        let ratio = c.tokens_per_s.mean / b.tokens_per_s.mean.max(f64::MIN_POSITIVE);
        (b.test.name(), ratio, b, c)
    })
}

/// `{"pp512": {"base": t/s, "base_sd", "candidate", "candidate_sd", "ratio"}, "tg128": ...,
/// "reps"}`.
pub(crate) fn json(s: &[Speed; 2]) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    for (name, ratio, b, c) in ratios(s) {
        v.insert(
            name,
            serde_json::json!({
                "base": b.tokens_per_s.mean,
                "base_sd": b.tokens_per_s.sd,
                "candidate": c.tokens_per_s.mean,
                "candidate_sd": c.tokens_per_s.sd,
                "ratio": ratio,
            }),
        );
    }
    v.insert("reps".into(), REPS.into());
    v.into()
}

/// The candidate's tokens/s and its ratio to the base's, per test.
pub(crate) fn metrics(s: &[Speed; 2]) -> Vec<StoreMetric> {
    use llmopt_store::Better::Higher;
    ratios(s)
        .flat_map(|(name, ratio, _, c)| {
            let se = c.tokens_per_s.sd / (c.seconds.len().max(1) as f64).sqrt();
            [
                StoreMetric::new(
                    format!("{name}_tokens_per_s"),
                    c.tokens_per_s.mean,
                    "t/s",
                    Higher,
                )
                .with_stderr(se),
                StoreMetric::new(format!("{name}_speed_ratio"), ratio, "x", Higher),
            ]
        })
        .collect()
}

/// Rows of `eval compare`'s table: test, base t/s, candidate t/s, ratio.
pub(crate) fn add_rows(t: &mut Table, s: &[Speed; 2]) {
    for (name, ratio, b, c) in ratios(s) {
        let ts = |r: &TestResult| format!("{:.1} ± {:.1}", r.tokens_per_s.mean, r.tokens_per_s.sd);
        t.add_row(vec![format!("{name} tokens/s"), ts(b), ts(c), format!("{ratio:.3}x")]);
    }
}
