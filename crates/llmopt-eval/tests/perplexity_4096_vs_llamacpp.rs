//! Perplexity of Gemma 3 at 4096-token chunks within 0.5% of llama.cpp's figure: the long-range part
//! of attention (global layers' RoPE over thousands of positions, the local layers' sliding window
//! past its first 512 tokens) that the 512-token fixtures never reach. The figure and its command are
//! in `fixtures/llamacpp-perplexity-4096.json`.

use std::sync::Arc;

use llmopt_eval::{perplexity, PerplexityConfig};
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::Model;
use llmopt_tokenizer::Tokenizer;

#[test]
fn gemma3_perplexity_at_4096_matches_llamacpp() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llamacpp-perplexity-4096.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let name = reference["model"].as_str().unwrap();
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(name)).unwrap());
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let model = Model::from_gguf(file).unwrap();
    let mut text = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    llmopt_eval::strip_final_newline(&mut text);
    let tokens = tok.encode(&text, true, false);
    let ctx = reference["ctx"].as_u64().unwrap() as usize;
    let chunks = reference["chunks"].as_u64().unwrap() as usize;
    let cfg = PerplexityConfig {
        ctx,
        max_chunks: Some(chunks),
        bos: if tok.add_bos() { tok.bos() } else { None },
    };
    let r = perplexity(&model, &ThreadPool::new(2), &tokens, &cfg, &mut |_, _, _| {}).unwrap();
    assert_eq!((r.chunks, r.tokens_scored), (chunks, chunks * (ctx / 2 - 1)));
    let want = reference["ppl"].as_f64().unwrap();
    let rel = (r.perplexity - want).abs() / want;
    assert!(
        rel < 0.005,
        "PPL {:.4}, llama.cpp {want:.4} (off by {:.3}%)",
        r.perplexity,
        100.0 * rel
    );
    let want_se = reference["ppl_plus_minus"].as_f64().unwrap();
    assert!((r.stderr - want_se).abs() / want_se < 0.02, "stderr {:.5} vs {want_se:.5}", r.stderr);
}
