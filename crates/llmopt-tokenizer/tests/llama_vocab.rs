//! llama.cpp's own tokenizer test vectors (`models/ggml-vocab-*.gguf` + `.inp`/`.out` from the
//! llama.cpp source tree, installed under `data/llama-vocab/`), read the way llama.cpp's
//! `tests/test-tokenizer-0.cpp` reads them: inputs separated by `\n__ggml_vocab_test__\n`, one
//! line of space-separated ids per input, tokenized with `add_special = false`,
//! `parse_special = false`.

mod common;

use llmopt_tokenizer::Tokenizer;

fn check(name: &str) {
    let base = format!("data/llama-vocab/ggml-vocab-{name}.gguf");
    let tok: Tokenizer = common::tokenizer(&base);
    let inp = std::fs::read_to_string(common::require(&format!("{base}.inp"))).unwrap();
    let out = std::fs::read_to_string(common::require(&format!("{base}.out"))).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs: Vec<&str> = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(i) => {
                inputs.push(&inp[pos..pos + i]);
                pos += i + sep.len();
            }
            None => {
                inputs.push(&inp[pos..]);
                break;
            }
        }
    }
    let expected: Vec<Vec<u32>> =
        out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(inputs.len(), expected.len(), "{name}: .inp and .out disagree on the count");
    let mut bad = Vec::new();
    for (s, want) in inputs.iter().zip(&expected) {
        let got = tok.encode(s, false, false);
        if &got != want {
            bad.push(format!("{s:?}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(bad.is_empty(), "{name}: {}/{} differ:\n{}", bad.len(), inputs.len(), bad.join("\n"));
}

#[test]
fn qwen2() {
    check("qwen2");
}

#[test]
fn qwen35() {
    check("qwen35");
}

#[test]
fn gpt2() {
    check("gpt-2");
}

#[test]
fn llama_bpe() {
    check("llama-bpe");
}

#[test]
fn llama_spm() {
    check("llama-spm");
}

#[test]
fn phi3() {
    check("phi-3");
}

#[test]
fn starcoder() {
    check("starcoder");
}

#[test]
fn refact() {
    check("refact");
}

#[test]
fn command_r() {
    check("command-r");
}

#[test]
fn mpt() {
    check("mpt");
}

#[test]
fn falcon() {
    check("falcon");
}
