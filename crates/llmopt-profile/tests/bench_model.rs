//! The bench tests on a real model: every repetition is timed and counted, the cache is left
//! empty between runs, and impossible tests are refused with a message.

use std::sync::Arc;

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::Model;
use llmopt_profile::{run_test, BenchTest, ProfileError, TestKind};

fn smollm2() -> Model {
    let path = llmopt_testdata::model(llmopt_testdata::SMOLLM2);
    Model::from_gguf(Arc::new(GgufFile::open(&path).expect("open model"))).expect("load model")
}

#[test]
fn prefill_and_decode_time_every_repetition() {
    let model = smollm2();
    let pool = ThreadPool::new(2);
    for (kind, n) in [(TestKind::Prefill, 24), (TestKind::Decode, 5)] {
        let test = BenchTest { kind, n_tokens: n };
        let mut progress = Vec::new();
        let r = run_test(&model, &pool, test, 3, Some(1), 7, &mut |done, total| {
            progress.push((done, total))
        })
        .expect("bench runs");
        assert_eq!(r.seconds.len(), 3, "{}", test.name());
        assert!(r.seconds.iter().all(|s| *s > 0.0));
        assert!(r.tokens_per_s.mean > 0.0 && r.tokens_per_s.sd >= 0.0);
        // Mean of n / seconds: within the range of the single repetitions.
        let tps: Vec<f64> = r.seconds.iter().map(|s| n as f64 / s).collect();
        let (lo, hi) = tps.iter().fold((f64::MAX, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
        assert!(r.tokens_per_s.mean >= lo && r.tokens_per_s.mean <= hi);
        // Warm-up plus three timed repetitions.
        assert_eq!(progress, vec![(0, 3), (1, 3), (2, 3), (3, 3)]);
        if kind == TestKind::Decode {
            // Per layer QKV, attention, O, gate/up and down; then the logits (ARCHITECTURE.md).
            assert_eq!(r.regions_per_token, (5 * model.config.n_layer + 1) as f64);
        }
    }
    assert_eq!(BenchTest { kind: TestKind::Prefill, n_tokens: 512 }.name(), "pp512");
    assert_eq!(BenchTest { kind: TestKind::Decode, n_tokens: 128 }.name(), "tg128");
}

#[test]
fn refuses_tests_that_cannot_run() {
    let model = smollm2();
    let pool = ThreadPool::new(1);
    let too_long = model.config.context_length + 1;
    for (n, reps) in [(0, 1), (too_long, 1), (8, 0)] {
        let test = BenchTest { kind: TestKind::Prefill, n_tokens: n };
        let err = run_test(&model, &pool, test, reps, None, 0, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, ProfileError::Invalid(_)), "{err}");
    }
}
