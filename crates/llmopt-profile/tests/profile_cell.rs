//! `run_cell` on the real SmolLM2: the cell's parts are consistent (every decode step timed, the
//! time share adds up to the measured wall time, every layer has time), and bad cells are refused.

use std::sync::Arc;

use llmopt_engine::{Sampler, SamplerConfig};
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::Model;
use llmopt_profile::{run_cell, CellSpec, EnergyModel, Prices};

fn smollm2() -> Model {
    let f = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    Model::from_gguf(f).unwrap()
}

#[test]
fn a_cell_adds_up() {
    let m = smollm2();
    let pool = ThreadPool::new(2);
    let mut sampler = Sampler::new(SamplerConfig { seed: 7, ..SamplerConfig::default() }).unwrap();
    let mut sample = |l: &[f32], h: &[u32]| sampler.sample(l, h);
    // 3 prompts of 40 tokens in calls of at most 50: 3 prefill calls, then 5 decode steps.
    let spec = CellSpec { ctx: 40, batch: 3, gen: 6, max_batch_tokens: 50 };
    let mut calls = Vec::new();
    let run =
        run_cell(&m, &pool, spec, Some(1), 3, &mut sample, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(run.step_s.len(), 5);
    assert_eq!(calls.last(), Some(&(8, 8)));
    assert!(run.step_s.iter().all(|&s| s > 0.0));
    assert!(run.ttft_s >= run.prefill_s && run.prefill_s > 0.0);
    // Forward calls plus sampling are the wall time, up to the loops' own overhead.
    let prefill_parts = run.prefill_time.total_s();
    assert!(prefill_parts <= run.ttft_s * 1.0001 && prefill_parts >= 0.9 * run.ttft_s);
    let steps: f64 = run.step_s.iter().sum();
    let decode_parts = run.decode_time.total_s();
    assert!(
        decode_parts <= steps * 1.0001 && decode_parts >= 0.9 * steps,
        "{decode_parts} {steps}"
    );
    for t in [&run.prefill_time, &run.decode_time] {
        assert!(t.attention_proj_s > 0.0 && t.attention_core_s > 0.0 && t.mlp_s > 0.0);
        assert!(t.norms_s > 0.0 && t.embedding_output_s > 0.0 && t.sampling_s > 0.0);
        let share = t.attention_share();
        assert!(share > 0.0 && share < 1.0);
    }
    assert_eq!(run.layers.len(), m.config.n_layer);
    assert!(run.layers.iter().enumerate().all(|(i, l)| l.layer == i && l.attention_s > 0.0));
    assert_eq!(run.kv_bytes, (3 * 46 * m.config.n_layer * m.config.kv_dim() * 2 * 2) as u64);
    assert!(run.cpu_s.is_some());

    let prices = Prices { usd_per_hour: 1.0, usd_per_kwh: 0.2, grid_gco2_per_kwh: 300.0 };
    let wall = run.wall_s();
    let cell = run.into_cell(&EnergyModel::Estimate { watts_per_core: 10.0 }, &prices);
    assert_eq!((cell.ctx, cell.batch, cell.gen), (40, 3, 6));
    assert!(cell.prefill_tokens_per_s > 0.0 && cell.decode_tokens_per_s > 0.0);
    let p = cell.step_latency;
    assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 > 0.0);
    // At least the machine's time is paid for: 1 $/h over the wall time, per query.
    assert!(cell.cost.usd_per_query >= wall / 3600.0 / 3.0);
}

#[test]
fn bad_cells_are_refused_before_work() {
    let m = smollm2();
    let pool = ThreadPool::new(1);
    let mut sample = |_: &[f32], _: &[u32]| 0u32;
    let ctx = m.config.context_length;
    for (spec, want) in [
        (CellSpec { ctx, batch: 1, gen: 1, max_batch_tokens: 512 }, "exceeds the model's context"),
        (CellSpec { ctx: 0, batch: 1, gen: 1, max_batch_tokens: 512 }, "at least 1"),
        (CellSpec { ctx: 8, batch: 0, gen: 1, max_batch_tokens: 512 }, "at least 1"),
    ] {
        let e = run_cell(&m, &pool, spec, None, 0, &mut sample, &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
}
