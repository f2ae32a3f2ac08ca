//! One `profile` cell: `batch` sequences of `ctx` random prompt tokens prefilled together, then
//! `gen` decode steps, timed per step kind and per layer through the forward's observer.

use std::time::Instant;

use llmopt_kernels::ThreadPool;
use llmopt_model::{
    KvCache, Logits, Model, Observer, SeqId, SeqInput, Step, Workspace, DEFAULT_BLOCK_SIZE,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{
    cost::price,
    energy::{cpu_seconds, EnergyMeter, EnergyModel},
    report::{Cell, LayerTime, Percentiles, Prices, TimeShare},
    ProfileError,
};

/// What one cell runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellSpec {
    /// Prompt tokens per sequence.
    pub ctx: usize,
    /// Sequences run together.
    pub batch: usize,
    /// Decode steps (one token per sequence each).
    pub gen: usize,
    /// Most tokens one prefill forward call takes (prompts are split and packed into calls).
    pub max_batch_tokens: usize,
}

/// What one cell measured (seconds and joules; the report derives rates from them).
#[derive(Clone, Debug)]
pub struct CellRun {
    pub spec: CellSpec,
    /// Wall time of the prefill forward calls (sampling excluded).
    pub prefill_s: f64,
    /// From the start of prefill until every sequence's first token was sampled.
    pub ttft_s: f64,
    /// Each decode step: one forward of `batch` tokens and `batch` samples.
    pub step_s: Vec<f64>,
    pub prefill_time: TimeShare,
    pub decode_time: TimeShare,
    pub layers: Vec<LayerTime>,
    /// Process CPU time (all threads) over the cell, when `/proc` tells it.
    pub cpu_s: Option<f64>,
    /// Joules the machine's counters saw (RAPL), when readable.
    pub measured_joules: Option<f64>,
    /// KV-cache bytes the batch held at its longest.
    pub kv_bytes: u64,
}

impl CellRun {
    /// Wall seconds of prefill, first sampling and every decode step.
    pub fn wall_s(&self) -> f64 {
        self.ttft_s + self.step_s.iter().sum::<f64>()
    }

    /// Prompt tokens per second of prefill.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        (self.spec.batch * self.spec.ctx) as f64 / self.prefill_s.max(1e-12)
    }

    /// Generated tokens per second of decode (after the first token).
    pub fn decode_tokens_per_s(&self) -> f64 {
        let s: f64 = self.step_s.iter().sum();
        (self.spec.batch * self.step_s.len()) as f64 / s.max(1e-12)
    }

    /// The report's cell: rates, percentiles, and energy and cost under `energy` and `prices`
    /// (a query is one sequence: `ctx` prompt and `gen` generated tokens).
    pub fn into_cell(self, energy: &EnergyModel, prices: &Prices) -> Cell {
        let CellSpec { ctx, batch, gen, .. } = self.spec;
        let joules = energy.joules(self.measured_joules, self.cpu_s).unwrap_or(0.0);
        let (energy, cost) = price(prices, self.wall_s(), joules, batch * (ctx + gen), batch);
        Cell {
            ctx,
            batch,
            gen,
            prefill_tokens_per_s: self.prefill_tokens_per_s(),
            decode_tokens_per_s: self.decode_tokens_per_s(),
            ttft_s: self.ttft_s,
            step_latency: percentiles(&self.step_s),
            step_latencies_s: self.step_s,
            prefill_time: self.prefill_time,
            decode_time: self.decode_time,
            layers: self.layers,
            kv_bytes: self.kv_bytes,
            energy,
            cost,
        }
    }
}

/// Nearest-rank p50/p90/p99 of `xs` (zeros when empty).
pub fn percentiles(xs: &[f64]) -> Percentiles {
    if xs.is_empty() {
        return Percentiles::default();
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Percentiles { p50: rank(0.50), p90: rank(0.90), p99: rank(0.99) }
}

/// Accumulates the forward's step laps into a [`TimeShare`] and per-layer times.
#[derive(Debug)]
struct StepTimes {
    share: TimeShare,
    layers: Vec<LayerTime>,
}

impl StepTimes {
    fn new(n_layer: usize) -> Self {
        let layers =
            (0..n_layer).map(|layer| LayerTime { layer, ..LayerTime::default() }).collect();
        Self { share: TimeShare::default(), layers }
    }
}

impl Observer for StepTimes {
    fn on_linear(&mut self, _: &str, _: usize, _: &[f32], _: &[f32]) {}

    fn wants_timing(&self) -> bool {
        true
    }

    fn on_step(&mut self, layer: Option<usize>, step: Step, seconds: f64) {
        let s = &mut self.share;
        match step {
            Step::Embedding | Step::Output => s.embedding_output_s += seconds,
            Step::Norms => s.norms_s += seconds,
            Step::AttentionProj => s.attention_proj_s += seconds,
            Step::AttentionCore => s.attention_core_s += seconds,
            Step::Mlp => s.mlp_s += seconds,
        }
        if let Some(l) = layer.and_then(|l| self.layers.get_mut(l)) {
            match step {
                Step::AttentionProj | Step::AttentionCore => l.attention_s += seconds,
                Step::Mlp => l.mlp_s += seconds,
                Step::Norms => l.norms_s += seconds,
                Step::Embedding | Step::Output => {}
            }
        }
    }
}

/// Runs one timed forward call, adding its untimed remainder to `other_s`; returns its wall
/// seconds and logits.
fn timed_forward<'w>(
    model: &Model,
    pool: &ThreadPool,
    batch: &[SeqInput<'_>],
    kv: &mut KvCache,
    ws: &'w mut Workspace,
    times: &mut StepTimes,
) -> Result<(f64, &'w [f32]), ProfileError> {
    let before = times.share.total_s();
    let t = Instant::now();
    let logits = model.forward(pool, batch, kv, ws, Some(times))?;
    let wall = t.elapsed().as_secs_f64();
    times.share.other_s += (wall - (times.share.total_s() - before)).max(0.0);
    Ok((wall, logits))
}

/// Checks a cell against the model before any work.
pub fn check_spec(model: &Model, spec: &CellSpec) -> Result<(), ProfileError> {
    let ctx_len = model.config.context_length;
    if spec.ctx == 0 || spec.batch == 0 || spec.max_batch_tokens == 0 {
        return Err(ProfileError::Invalid(
            "context length, batch size and batch tokens must be at least 1".into(),
        ));
    }
    if spec.ctx + spec.gen > ctx_len {
        return Err(ProfileError::Invalid(format!(
            "ctx {} + gen {} tokens exceeds the model's context ({ctx_len})",
            spec.ctx, spec.gen
        )));
    }
    Ok(())
}

/// Runs `spec` once. Prompts are random tokens (`first`, the model's BOS when it adds one, then
/// draws with `seed`); decode feeds back what `sample(logits, history)` picks. `on_progress(done,
/// total)` counts forward calls.
pub fn run_cell(
    model: &Model,
    pool: &ThreadPool,
    spec: CellSpec,
    first: Option<u32>,
    seed: u64,
    sample: &mut dyn FnMut(&[f32], &[u32]) -> u32,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<CellRun, ProfileError> {
    check_spec(model, &spec)?;
    let CellSpec { ctx, batch, gen, max_batch_tokens } = spec;
    let vocab = model.config.vocab_size;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            (0..ctx)
                .map(|i| match (i, first) {
                    (0, Some(t)) => t,
                    _ => rng.random_range(0..vocab as u32),
                })
                .collect()
        })
        .collect();
    let per_seq = (ctx + gen).div_ceil(DEFAULT_BLOCK_SIZE) * DEFAULT_BLOCK_SIZE;
    let mut kv = KvCache::new(&model.config, batch * per_seq, DEFAULT_BLOCK_SIZE);
    let kv_bytes = (kv.bytes_per_token() * batch * (ctx + gen)) as u64;
    let seqs: Vec<SeqId> = (0..batch).map(|_| kv.add_sequence()).collect();
    let mut ws = Workspace::new();
    let chunks = prefill_chunks(ctx, batch, max_batch_tokens);
    let total_calls = chunks.len() + gen.saturating_sub(1);
    let energy = EnergyMeter::start();
    let cpu_before = cpu_seconds();

    let mut prefill = StepTimes::new(model.config.n_layer);
    let started = Instant::now();
    let mut prefill_s = 0.0;
    let mut last_logits = vec![0f32; batch * vocab];
    for (call, pieces) in chunks.iter().enumerate() {
        let inputs: Vec<SeqInput<'_>> = pieces
            .iter()
            .map(|&(b, a, z)| SeqInput {
                seq: seqs[b],
                tokens: &history[b][a..z],
                logits: if z == ctx { Logits::Last } else { Logits::None },
            })
            .collect();
        let (s, logits) = timed_forward(model, pool, &inputs, &mut kv, &mut ws, &mut prefill)?;
        prefill_s += s;
        let wanting = pieces.iter().filter(|&&(_, _, z)| z == ctx).map(|&(b, _, _)| b);
        for (row, b) in wanting.enumerate() {
            last_logits[b * vocab..(b + 1) * vocab]
                .copy_from_slice(&logits[row * vocab..(row + 1) * vocab]);
        }
        on_progress(call + 1, total_calls);
    }
    let t = Instant::now();
    for (b, h) in history.iter_mut().enumerate() {
        let next = sample(&last_logits[b * vocab..(b + 1) * vocab], h);
        h.push(next);
    }
    prefill.share.sampling_s += t.elapsed().as_secs_f64();
    let ttft_s = started.elapsed().as_secs_f64();

    let mut decode = StepTimes::new(model.config.n_layer);
    let mut step_s = Vec::with_capacity(gen);
    // The first token came with prefill; each step feeds the newest token and samples the next.
    for step in 0..gen.saturating_sub(1) {
        let t = Instant::now();
        let inputs: Vec<SeqInput<'_>> = (0..batch)
            .map(|b| SeqInput {
                seq: seqs[b],
                tokens: &history[b][history[b].len() - 1..],
                logits: Logits::Last,
            })
            .collect();
        let (_, logits) = timed_forward(model, pool, &inputs, &mut kv, &mut ws, &mut decode)?;
        drop(inputs);
        let s = Instant::now();
        let picked: Vec<u32> =
            (0..batch).map(|b| sample(&logits[b * vocab..(b + 1) * vocab], &history[b])).collect();
        for (h, p) in history.iter_mut().zip(picked) {
            h.push(p);
        }
        decode.share.sampling_s += s.elapsed().as_secs_f64();
        step_s.push(t.elapsed().as_secs_f64());
        on_progress(chunks.len() + step + 1, total_calls);
    }
    on_progress(total_calls, total_calls);
    let cpu_s = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let measured_joules = energy.joules();

    let mut layers = prefill.layers;
    for (l, d) in layers.iter_mut().zip(&decode.layers) {
        l.attention_s += d.attention_s;
        l.mlp_s += d.mlp_s;
        l.norms_s += d.norms_s;
    }
    Ok(CellRun {
        spec,
        prefill_s,
        ttft_s,
        step_s,
        prefill_time: prefill.share,
        decode_time: decode.share,
        layers,
        cpu_s,
        measured_joules,
        kv_bytes,
    })
}

/// Packs `batch` prompts of `ctx` tokens into forward calls of at most `max_tokens` tokens, in
/// order: each call is a list of `(sequence, from, to)` pieces.
fn prefill_chunks(ctx: usize, batch: usize, max_tokens: usize) -> Vec<Vec<(usize, usize, usize)>> {
    let mut calls = Vec::new();
    let mut call = Vec::new();
    let mut room = max_tokens;
    for b in 0..batch {
        let mut a = 0;
        while a < ctx {
            let z = (a + room).min(ctx);
            call.push((b, a, z));
            room -= z - a;
            a = z;
            if room == 0 {
                calls.push(std::mem::take(&mut call));
                room = max_tokens;
            }
        }
    }
    if !call.is_empty() {
        calls.push(call);
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_prompt_token_once_within_the_budget() {
        for (ctx, batch, max) in [(128, 1, 512), (512, 4, 512), (2048, 3, 700), (5, 7, 3)] {
            let calls = prefill_chunks(ctx, batch, max);
            let mut seen = vec![vec![false; ctx]; batch];
            for call in &calls {
                let n: usize = call.iter().map(|&(_, a, z)| z - a).sum();
                assert!(n <= max && n > 0);
                for &(b, a, z) in call {
                    for t in &mut seen[b][a..z] {
                        assert!(!*t);
                        *t = true;
                    }
                }
            }
            assert!(seen.iter().flatten().all(|&t| t), "{ctx} {batch} {max}");
            // Full calls except the last.
            let full = calls[..calls.len() - 1]
                .iter()
                .all(|c| c.iter().map(|&(_, a, z)| z - a).sum::<usize>() == max);
            assert!(full);
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&xs);
        assert_eq!((p.p50, p.p90, p.p99), (50.0, 90.0, 99.0));
        let p = percentiles(&[3.0]);
        assert_eq!((p.p50, p.p90, p.p99), (3.0, 3.0, 3.0));
        assert_eq!(percentiles(&[]), Percentiles::default());
    }
}
