//! The forward's step timing on a real model: an observer that asks for timing sees every step of
//! every layer once per call, the laps add up to no more than the call's wall time, and timing
//! changes no result (logits equal bit for bit with and without the observer).

use std::{collections::HashMap, sync::Arc, time::Instant};

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, Observer, SeqInput, Step, Workspace};

#[derive(Default)]
struct Timing {
    laps: HashMap<(Option<usize>, Step), (usize, f64)>,
    linears: usize,
}

impl Observer for Timing {
    fn on_linear(&mut self, _: &str, _: usize, _: &[f32], _: &[f32]) {
        self.linears += 1;
    }
    fn wants_timing(&self) -> bool {
        true
    }
    fn on_step(&mut self, layer: Option<usize>, step: Step, seconds: f64) {
        let e = self.laps.entry((layer, step)).or_default();
        e.0 += 1;
        e.1 += seconds;
    }
}

/// Counts Linears only: timing stays off.
#[derive(Default)]
struct Untimed(usize);

impl Observer for Untimed {
    fn on_linear(&mut self, _: &str, _: usize, _: &[f32], _: &[f32]) {
        self.0 += 1;
    }
    fn on_step(&mut self, _: Option<usize>, _: Step, _: f64) {
        panic!("on_step called without wants_timing");
    }
}

#[test]
fn every_step_of_every_layer_is_timed_and_results_do_not_change() {
    let f = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    let m = Model::from_gguf(f).unwrap();
    let pool = ThreadPool::new(2);
    let tokens: Vec<u32> = (0..37).map(|i| (i * 7919 + 13) % m.config.vocab_size as u32).collect();
    let run = |obs: Option<&mut dyn Observer>| {
        let mut kv = KvCache::new(&m.config, 64, 16);
        let mut ws = Workspace::new();
        let s = kv.add_sequence();
        let input = SeqInput { seq: s, tokens: &tokens, logits: Logits::All };
        let t = Instant::now();
        let logits = m.forward(&pool, &[input], &mut kv, &mut ws, obs).unwrap().to_vec();
        (logits, t.elapsed().as_secs_f64())
    };
    let (plain, _) = run(None);
    let mut timing = Timing::default();
    let (timed, wall) = run(Some(&mut timing));
    assert_eq!(plain, timed, "timing must not change the logits");
    let mut untimed = Untimed::default();
    let (counted, _) = run(Some(&mut untimed));
    assert_eq!(plain, counted);
    assert_eq!(untimed.0, timing.linears);

    let n_layer = m.config.n_layer;
    for il in 0..n_layer {
        for step in [Step::AttentionProj, Step::AttentionCore, Step::Mlp] {
            let (n, s) = timing.laps[&(Some(il), step)];
            // Two projection laps (QKV, O) per layer; one of each other kind.
            let want = if step == Step::AttentionProj { 2 } else { 1 };
            assert_eq!(n, want, "layer {il} {step:?}");
            assert!(s > 0.0, "layer {il} {step:?} took no time");
        }
        // Pre-attention, post-attention + pre-MLP, and post-MLP residual.
        assert_eq!(timing.laps[&(Some(il), Step::Norms)].0, 3, "layer {il}");
    }
    assert_eq!(timing.laps[&(None, Step::Embedding)].0, 1);
    assert_eq!(timing.laps[&(None, Step::Output)].0, 1);
    assert!(!timing.laps.keys().any(|(l, _)| l.is_some_and(|l| l >= n_layer)));
    let total: f64 = timing.laps.values().map(|v| v.1).sum();
    assert!(total <= wall, "laps {total} s exceed the call's {wall} s");
    assert!(total > 0.5 * wall, "laps {total} s cover too little of {wall} s");
}
