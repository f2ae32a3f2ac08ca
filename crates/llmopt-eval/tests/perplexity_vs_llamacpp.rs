//! Perplexity on the Britannica text (`--ctx 512 --chunks 8`) within 0.5% of llama.cpp's own figure for
//! each of the three default models. The figures are in `fixtures/llamacpp-perplexity.json`, made by
//! `scripts/gen-llamacpp-fixtures.py` with the oracle build (`scripts/build-llamacpp`); their provenance
//! (version, command, machine) is inside the file.

use std::sync::Arc;

use llmopt_eval::{perplexity, PerplexityConfig};
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::Model;
use llmopt_tokenizer::Tokenizer;

fn fixture(name: &str) -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llamacpp-perplexity.json");
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all["models"].as_array().unwrap().iter().find(|m| m["model"] == name).unwrap().clone()
}

fn check(name: &str) {
    let reference = fixture(name);
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(name)).unwrap());
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let model = Model::from_gguf(file).unwrap();
    let mut text = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    llmopt_eval::strip_final_newline(&mut text);
    let tokens = tok.encode(&text, true, false);
    assert_eq!(
        tokens.len() as u64,
        reference["n_tokens_text"].as_u64().unwrap(),
        "{name}: token count"
    );
    let first: Vec<u32> = serde_json::from_value(reference["first_token_ids"].clone()).unwrap();
    assert_eq!(&tokens[..first.len()], &first[..], "{name}: first tokens");
    let cfg = PerplexityConfig {
        ctx: 512,
        max_chunks: Some(8),
        bos: if tok.add_bos() { tok.bos() } else { None },
    };
    let r = perplexity(&model, &ThreadPool::new(2), &tokens, &cfg, &mut |_, _, _| {}).unwrap();
    let want = reference["chunks_8"]["ppl"].as_f64().unwrap();
    let want_se = reference["chunks_8"]["ppl_plus_minus"].as_f64().unwrap();
    let rel = (r.perplexity - want).abs() / want;
    assert_eq!(r.chunks, 8);
    assert_eq!(r.tokens_scored, 8 * 255);
    assert!(
        rel < 0.005,
        "{name}: PPL {:.4} +/- {:.5}, llama.cpp {want:.4} +/- {want_se:.5} (off by {:.3}%)",
        r.perplexity,
        r.stderr,
        rel * 100.0
    );
    assert!(
        (r.stderr - want_se).abs() / want_se < 0.02,
        "{name}: stderr {:.5} vs {want_se:.5}",
        r.stderr
    );
}

#[test]
fn smollm2_perplexity_matches_llamacpp() {
    check(llmopt_testdata::SMOLLM2);
}

#[test]
fn gemma3_perplexity_matches_llamacpp() {
    check(llmopt_testdata::GEMMA3);
}

#[test]
fn qwen2_perplexity_matches_llamacpp() {
    check(llmopt_testdata::QWEN05);
}
