//! llama-bench's two tests on our engine: `pp N` prefills N tokens into an empty cache in one
//! batch; `tg N` decodes N tokens one at a time from an empty cache. Tokens are random, as there.

use std::time::Instant;

use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace, DEFAULT_BLOCK_SIZE};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{ProfileError, Summary};

/// Prefill or decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKind {
    /// One forward over N prompt tokens (llama-bench `pp`).
    Prefill,
    /// N forwards of one token each (llama-bench `tg`).
    Decode,
}

/// One test: a kind and a token count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchTest {
    pub kind: TestKind,
    pub n_tokens: usize,
}

impl BenchTest {
    /// llama-bench's name for it: `pp512`, `tg128`.
    pub fn name(&self) -> String {
        let prefix = match self.kind {
            TestKind::Prefill => "pp",
            TestKind::Decode => "tg",
        };
        format!("{prefix}{}", self.n_tokens)
    }
}

/// Timings of one test over its repetitions.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub test: BenchTest,
    /// Wall time of each timed repetition, in seconds.
    pub seconds: Vec<f64>,
    /// Tokens per second over the repetitions.
    pub tokens_per_s: Summary,
    /// The pool's parallel regions per token of the timed repetitions (per forward call for
    /// decode, where one token is one call).
    pub regions_per_token: f64,
}

/// Runs `test` once untimed (warm-up: page in the weights, grow the buffers), then `reps` timed
/// times, each into an empty KV cache. `first` is the token every run starts with (the model's
/// BOS when it adds one, as llama-bench does); the rest are drawn from the vocabulary with
/// `seed`. `on_rep(done, total)` reports progress.
pub fn run_test(
    model: &Model,
    pool: &ThreadPool,
    test: BenchTest,
    reps: usize,
    first: Option<u32>,
    seed: u64,
    on_rep: &mut dyn FnMut(usize, usize),
) -> Result<TestResult, ProfileError> {
    let n = test.n_tokens;
    let ctx = model.config.context_length;
    if n == 0 || n > ctx {
        return Err(ProfileError::Invalid(format!(
            "{}: the token count must be between 1 and the model's context ({ctx})",
            test.name()
        )));
    }
    if reps == 0 {
        return Err(ProfileError::Invalid("repetitions must be at least 1".into()));
    }
    let vocab = model.config.vocab_size as u32;
    let mut rng = StdRng::seed_from_u64(seed);
    let tokens: Vec<u32> = (0..n)
        .map(|i| match (i, first) {
            (0, Some(t)) => t,
            _ => rng.random_range(0..vocab),
        })
        .collect();
    let mut kv = KvCache::new(&model.config, n, DEFAULT_BLOCK_SIZE);
    let mut ws = Workspace::new();
    let mut seconds = Vec::with_capacity(reps);
    let mut regions = 0;
    for rep in 0..=reps {
        let seq = kv.add_sequence();
        let regions_before = pool.regions();
        let started = Instant::now();
        match test.kind {
            TestKind::Prefill => {
                let input = SeqInput { seq, tokens: &tokens, logits: Logits::Last };
                model.forward(pool, &[input], &mut kv, &mut ws, None)?;
            }
            TestKind::Decode => {
                // The warm-up decodes a few tokens only: enough to touch every weight.
                let steps = if rep == 0 { n.min(4) } else { n };
                for t in &tokens[..steps] {
                    let input =
                        SeqInput { seq, tokens: std::slice::from_ref(t), logits: Logits::Last };
                    model.forward(pool, &[input], &mut kv, &mut ws, None)?;
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        kv.remove_sequence(seq);
        if rep > 0 {
            seconds.push(elapsed);
            regions += pool.regions() - regions_before;
        }
        on_rep(rep, reps);
    }
    let tps: Vec<f64> = seconds.iter().map(|s| n as f64 / s.max(1e-12)).collect();
    let tokens_per_s = Summary::of(&tps).expect("reps >= 1");
    let regions_per_token = regions as f64 / (reps * n) as f64;
    Ok(TestResult { test, seconds, tokens_per_s, regions_per_token })
}
