//! Our GGUF tokenizers against Hugging Face `tokenizers` on ~300 varied strings.
//!
//! Fixtures: `tests/fixtures/hf-<name>.json`, made by `scripts/gen-hf-tokenizer-fixtures.py`
//! (provenance inside). Qwen3's tokenizer.json has the same BPE as Qwen2.5's GGUF; Gemma 3's
//! tokenizer.json is the same vocabulary as the Gemma 3 270M GGUF. HF always recognises added
//! tokens, so we encode with `parse_special = true`, and Qwen's NFC normalization is applied on
//! the fixture side (`text_nfc`).

#![allow(clippy::print_stderr)] // the match counts and timings are the report

mod common;

use llmopt_tokenizer::Tokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    text_nfc: Option<String>,
}

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn load(name: &str) -> Fixture {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/hf-{name}.json"));
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap()
}

/// Strings where llama.cpp (our reference) and HF disagree by design, with the reason.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[(
    "qwen3",
    "<s> </s>",
    "llama.cpp marks any token whose text is `</s>` as an end-of-generation control token, so \
     with parse_special it is matched whole; HF treats `</s>` as ordinary text in Qwen",
)];

/// Compares every case; returns the texts that differ.
fn compare(name: &str, tok: &Tokenizer, fx: &Fixture) -> Vec<String> {
    let mut bad = Vec::new();
    let mut matched = 0;
    for c in &fx.cases {
        if KNOWN_DIFFERENCES.iter().any(|&(n, t, _)| n == name && t == c.text) {
            continue;
        }
        let text = c.text_nfc.as_deref().unwrap_or(&c.text);
        let got = tok.encode(text, false, true);
        if got != c.ids {
            bad.push(format!("{:?}\n   hf  {:?}\n   ours {:?}", c.text, c.ids, got));
        } else {
            matched += 1;
        }
    }
    eprintln!("{name}: {matched}/{} strings match HF", fx.cases.len());
    bad
}

#[test]
fn qwen25_matches_hf_qwen3() {
    let tok = common::tokenizer(common::QWEN);
    let fx = load("qwen3");
    let bad = compare("qwen3", &tok, &fx);
    assert!(bad.is_empty(), "{}/{} differ:\n{}", bad.len(), fx.cases.len(), bad.join("\n"));
}

#[test]
fn gemma3_matches_hf_gemma3() {
    let tok = common::tokenizer(common::GEMMA);
    let fx = load("gemma3");
    let bad = compare("gemma3", &tok, &fx);
    assert!(bad.is_empty(), "{}/{} differ:\n{}", bad.len(), fx.cases.len(), bad.join("\n"));
}
