//! Greedy continuations (32 tokens) of three fixed prompts equal to llama.cpp's, for each of the three
//! default models. Fixture: `fixtures/llamacpp-greedy.json` (llama-server /completion with temperature 0,
//! made by `scripts/gen-llamacpp-fixtures.py`; provenance inside). The prompt ids come from the fixture,
//! so this tests the model alone; the tokenizer has its own golden tests.

use std::sync::Arc;

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace};

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy continuation of `prompt`, `n` tokens, plus the log-probability margin between the chosen
/// token and the runner-up at each step.
fn greedy(m: &Model, pool: &ThreadPool, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut kv = KvCache::new(&m.config, prompt.len() + n, 16);
    let mut ws = Workspace::new();
    let s = kv.add_sequence();
    let mut logits = m.forward(pool, &[SeqInput { seq: s, tokens: prompt, logits: Logits::Last }], &mut kv, &mut ws, None).unwrap().to_vec();
    let (mut out, mut margins) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = argmax(&logits);
        let second = logits.iter().enumerate().filter(|(i, _)| *i as u32 != t).map(|(_, &v)| v).fold(f32::NEG_INFINITY, f32::max);
        margins.push(logits[t as usize] - second);
        out.push(t);
        logits = m.forward(pool, &[SeqInput { seq: s, tokens: &[t], logits: Logits::Last }], &mut kv, &mut ws, None).unwrap().to_vec();
    }
    (out, margins)
}

fn check(model_file: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llamacpp-greedy.json");
    let all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let fixture = all["models"].as_array().unwrap().iter().find(|m| m["model"] == model_file).unwrap();
    let m = Model::from_gguf(Arc::new(GgufFile::open(llmopt_testdata::model(model_file)).unwrap())).unwrap();
    let pool = ThreadPool::new(2);
    let mut report = Vec::new();
    for case in fixture["cases"].as_array().unwrap() {
        let prompt: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
        let want: Vec<u32> = serde_json::from_value(case["generated_ids"].clone()).unwrap();
        let (got, margins) = greedy(&m, &pool, &prompt, want.len());
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(want.len());
            report.push(format!(
                "{:?}: first difference at token {at} (ours {} vs llama.cpp {}, our logit margin there {:.4}); ours {:?}",
                case["prompt"], got[at], want[at], margins[at], &got[..]
            ));
        }
    }
    assert!(report.is_empty(), "{model_file}:\n{}", report.join("\n"));
}

#[test]
fn smollm2_greedy_matches_llamacpp() {
    check(llmopt_testdata::SMOLLM2);
}

#[test]
fn gemma3_greedy_matches_llamacpp() {
    check(llmopt_testdata::GEMMA3);
}

#[test]
fn qwen2_greedy_matches_llamacpp() {
    check(llmopt_testdata::QWEN05);
}
