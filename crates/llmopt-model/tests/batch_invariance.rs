//! Batching must not change results (what continuous batching relies on): a sequence's logits are
//! the same bit for bit whether it runs alone or in a ragged batch with other sequences, long
//! prefills among them, on all three real models, with weights repacked as the engine runs them,
//! for every KV cache type (f16, Q8_0, Q4_0).

use std::sync::Arc;

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, KvType, Logits, Model, SeqInput, Workspace, KV_TYPES};

fn tokens(n: usize, vocab: usize, salt: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + salt * 104_729 + 13) % vocab) as u32).collect()
}

/// Logits of `prompt` prefilled in `chunk`-token calls, then `next` decoded one at a time: every
/// row of the prompt's last chunk, then one row per decoded token.
fn alone(m: &Model, pool: &ThreadPool, prompt: &[u32], chunk: usize, next: &[u32]) -> Vec<f32> {
    let mut kv = KvCache::new(&m.config, 512, 16);
    let mut ws = Workspace::new();
    let s = kv.add_sequence();
    let mut out = Vec::new();
    for (i, c) in prompt.chunks(chunk).enumerate() {
        let last = (i + 1) * chunk >= prompt.len();
        let logits = if last { Logits::All } else { Logits::None };
        let l = m.forward(pool, &[SeqInput { seq: s, tokens: c, logits }], &mut kv, &mut ws, None);
        out.extend_from_slice(l.unwrap());
    }
    for t in next {
        let input = SeqInput { seq: s, tokens: std::slice::from_ref(t), logits: Logits::Last };
        out.extend_from_slice(m.forward(pool, &[input], &mut kv, &mut ws, None).unwrap());
    }
    out
}

fn check(name: &str) {
    let f = Arc::new(GgufFile::open(llmopt_testdata::model(name)).unwrap());
    let mut m = Model::from_gguf(f).unwrap();
    m.pack_weights();
    for ty in KV_TYPES {
        m.config = m.config.clone().with_kv_type(KvType::new(ty).unwrap()).unwrap();
        check_with(&format!("{name} ({ty} KV)"), &m);
    }
}

fn check_with(name: &str, m: &Model) {
    let pool = ThreadPool::new(2);
    let vocab = m.config.vocab_size;
    // A: a 20-token prompt, then 3 decoded tokens. B: a 100-token prompt in one call (f32
    // attention). C: a 70-token prompt in chunks of 35 (f16 attention).
    let (pa, na) = (tokens(20, vocab, 1), tokens(3, vocab, 2));
    let pb = tokens(100, vocab, 3);
    let pc = tokens(70, vocab, 4);
    let want_a = alone(m, &pool, &pa, 20, &na);
    let want_b = alone(m, &pool, &pb, 100, &[]);
    let want_c = alone(m, &pool, &pc, 35, &[]);

    // Together: A's prompt with C's first chunk; then A's decodes beside B's prefill and C's
    // second chunk, then alone again.
    let mut kv = KvCache::new(&m.config, 512, 16);
    let mut ws = Workspace::new();
    let (a, b, c) = (kv.add_sequence(), kv.add_sequence(), kv.add_sequence());
    let mut got_a = Vec::new();
    let step1 = [
        SeqInput { seq: c, tokens: &pc[..35], logits: Logits::None },
        SeqInput { seq: a, tokens: &pa, logits: Logits::All },
    ];
    got_a.extend_from_slice(m.forward(&pool, &step1, &mut kv, &mut ws, None).unwrap());
    let step2 = [
        SeqInput { seq: a, tokens: &na[..1], logits: Logits::Last },
        SeqInput { seq: b, tokens: &pb, logits: Logits::All },
        SeqInput { seq: c, tokens: &pc[35..], logits: Logits::All },
    ];
    let l = m.forward(&pool, &step2, &mut kv, &mut ws, None).unwrap();
    got_a.extend_from_slice(&l[..vocab]);
    let got_b = l[vocab..101 * vocab].to_vec();
    let got_c = l[101 * vocab..].to_vec();
    for t in &na[1..] {
        let input = SeqInput { seq: a, tokens: std::slice::from_ref(t), logits: Logits::Last };
        got_a.extend_from_slice(m.forward(&pool, &[input], &mut kv, &mut ws, None).unwrap());
    }
    assert!(got_a == want_a, "{name}: sequence A changed in a batch");
    assert!(got_b == want_b, "{name}: sequence B changed in a batch");
    assert!(got_c == want_c, "{name}: sequence C changed in a batch");
}

#[test]
fn smollm2_sequences_are_batch_invariant() {
    check(llmopt_testdata::SMOLLM2);
}

#[test]
fn gemma3_sequences_are_batch_invariant() {
    check(llmopt_testdata::GEMMA3);
}

#[test]
fn qwen2_sequences_are_batch_invariant() {
    check(llmopt_testdata::QWEN05);
}
