//! Invariants of the batched forward pass on the real models: prefill in one call equals token-by-token
//! decoding, a ragged batch of several sequences equals running each alone, and forked sequences
//! (shared blocks, copy-on-write) equal sequences computed from scratch.

use std::sync::Arc;

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace};

fn load(name: &str) -> Model {
    let f = Arc::new(GgufFile::open(llmopt_testdata::model(name)).unwrap());
    Model::from_gguf(f).unwrap()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Arbitrary but valid token ids, spread over the vocabulary.
fn tokens(n: usize, vocab: usize, salt: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + salt * 104_729 + 13) % vocab) as u32).collect()
}

fn check_model(name: &str) {
    let m = load(name);
    let pool = ThreadPool::new(2);
    let vocab = m.config.vocab_size;
    let a = tokens(11, vocab, 1);
    let b = tokens(6, vocab, 2);

    // Prefill all of `a` at once.
    let mut kv = KvCache::new(&m.config, 64, 4);
    let mut ws = Workspace::new();
    let s = kv.add_sequence();
    let all = m
        .forward(
            &pool,
            &[SeqInput { seq: s, tokens: &a, logits: Logits::All }],
            &mut kv,
            &mut ws,
            None,
        )
        .unwrap()
        .to_vec();
    assert_eq!(all.len(), a.len() * vocab);
    assert!(all.iter().all(|v| v.is_finite()));

    // Token by token.
    let mut kv2 = KvCache::new(&m.config, 64, 4);
    let s2 = kv2.add_sequence();
    for (i, t) in a.iter().enumerate() {
        let l = m
            .forward(
                &pool,
                &[SeqInput { seq: s2, tokens: std::slice::from_ref(t), logits: Logits::Last }],
                &mut kv2,
                &mut ws,
                None,
            )
            .unwrap();
        let d = max_rel_diff(l, &all[i * vocab..(i + 1) * vocab]);
        assert!(d < 2e-3, "{name}: token {i}: prefill vs decode differ by {d}");
    }

    // A ragged batch: `b` fresh, and one more token of `a` appended to its cached sequence.
    let sb = kv.add_sequence();
    let next = [a[3]];
    let batch = [
        SeqInput { seq: sb, tokens: &b, logits: Logits::All },
        SeqInput { seq: s, tokens: &next, logits: Logits::Last },
    ];
    let ragged = m.forward(&pool, &batch, &mut kv, &mut ws, None).unwrap().to_vec();
    assert_eq!(ragged.len(), (b.len() + 1) * vocab);
    let mut kv3 = KvCache::new(&m.config, 64, 4);
    let s3 = kv3.add_sequence();
    let alone = m
        .forward(
            &pool,
            &[SeqInput { seq: s3, tokens: &b, logits: Logits::All }],
            &mut kv3,
            &mut ws,
            None,
        )
        .unwrap()
        .to_vec();
    let d = max_rel_diff(&ragged[..b.len() * vocab], &alone);
    assert!(d < 2e-3, "{name}: ragged vs alone differ by {d}");
    let l = m
        .forward(
            &pool,
            &[SeqInput { seq: s2, tokens: &next, logits: Logits::Last }],
            &mut kv2,
            &mut ws,
            None,
        )
        .unwrap();
    let d = max_rel_diff(&ragged[b.len() * vocab..], l);
    assert!(d < 2e-3, "{name}: appended token differs by {d}");

    // Two forks of `a`'s first 6 tokens (mid-block: copy-on-write) continued in one batch equal
    // each continuation run from scratch, and the parent's cache is untouched by them.
    let (c1, c2) = (kv.fork_sequence(s, 6).unwrap(), kv.fork_sequence(s, 6).unwrap());
    let batch = [
        SeqInput { seq: c1, tokens: &b[..3], logits: Logits::All },
        SeqInput { seq: c2, tokens: &b[3..], logits: Logits::All },
    ];
    let forked = m.forward(&pool, &batch, &mut kv, &mut ws, None).unwrap().to_vec();
    for (k, cont) in [&b[..3], &b[3..]].into_iter().enumerate() {
        let mut kv4 = KvCache::new(&m.config, 64, 4);
        let s4 = kv4.add_sequence();
        let whole: Vec<u32> = a[..6].iter().chain(cont).copied().collect();
        let alone = m
            .forward(
                &pool,
                &[SeqInput { seq: s4, tokens: &whole, logits: Logits::All }],
                &mut kv4,
                &mut ws,
                None,
            )
            .unwrap();
        let rows = &forked[3 * k * vocab..3 * (k + 1) * vocab];
        let d = max_rel_diff(rows, &alone[6 * vocab..]);
        assert!(d < 2e-3, "{name}: fork {k} vs a fresh sequence differ by {d}");
    }
    kv.remove_sequence(c1);
    kv.remove_sequence(c2);
    let again = m
        .forward(
            &pool,
            &[SeqInput { seq: s, tokens: &next, logits: Logits::Last }],
            &mut kv,
            &mut ws,
            None,
        )
        .unwrap()
        .to_vec();
    let mut kv5 = KvCache::new(&m.config, 64, 4);
    let s5 = kv5.add_sequence();
    let whole: Vec<u32> = a.iter().chain(&next).chain(&next).copied().collect();
    let alone = m
        .forward(
            &pool,
            &[SeqInput { seq: s5, tokens: &whole, logits: Logits::Last }],
            &mut kv5,
            &mut ws,
            None,
        )
        .unwrap();
    let d = max_rel_diff(&again, alone);
    assert!(d < 2e-3, "{name}: the parent changed under its forks: {d}");
}

#[test]
fn smollm2_prefill_decode_and_ragged_batches_agree() {
    check_model(llmopt_testdata::SMOLLM2);
}

#[test]
fn gemma3_prefill_decode_and_ragged_batches_agree() {
    check_model(llmopt_testdata::GEMMA3);
}

#[test]
fn qwen2_prefill_decode_and_ragged_batches_agree() {
    check_model(llmopt_testdata::QWEN05);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let m = load(llmopt_testdata::SMOLLM2);
    let pool = ThreadPool::new(1);
    let mut kv = KvCache::new(&m.config, 8, 4);
    let mut ws = Workspace::new();
    let s = kv.add_sequence();
    let bad = [m.config.vocab_size as u32];
    let err = m
        .forward(
            &pool,
            &[SeqInput { seq: s, tokens: &bad, logits: Logits::Last }],
            &mut kv,
            &mut ws,
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    let long = [1u32; 9];
    let err = m
        .forward(
            &pool,
            &[SeqInput { seq: s, tokens: &long, logits: Logits::Last }],
            &mut kv,
            &mut ws,
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("KV cache full"), "{err}");
    assert_eq!(kv.seq_len(s).unwrap(), 0, "a failed call leaves the cache as it was");
}
