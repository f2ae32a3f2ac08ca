//! Our tokenizers against llama.cpp's `llama-tokenize` on ~300 strings per model.
//!
//! Fixtures: `tests/fixtures/llamacpp-tokenize-<model>.json`, produced by running llama.cpp's
//! `llama-tokenize` (built from the llama-cpp-python 0.3.36 sdist, see MODELS.md) on each of our
//! three models; each file has a `provenance` block naming the tool, version and flags. The flags
//! decide how we encode: `--no-bos` means `add_special = false`, `--no-parse-special` means
//! `parse_special = false`. A case may override them with its own `add_special` /
//! `parse_special` fields.
//!
//! Each model's test fails (it does not skip) while its fixture is missing.

#![allow(clippy::print_stderr)] // the match counts and timings are the report

mod common;

use std::path::PathBuf;

use serde_json::Value;

fn fixtures() -> Vec<PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("llamacpp-tokenize-") && n.ends_with(".json")
        })
        .collect();
    v.sort();
    v
}

fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(*n))
}

/// The flags text of the provenance block (all its strings, joined).
fn flags_text(prov: &Value) -> String {
    match prov {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(flags_text).collect::<Vec<_>>().join(" "),
        Value::Object(o) => o.values().map(flags_text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn check(key: &str, model: &str) {
    let files = fixtures();
    let path = files
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().to_lowercase().contains(key))
        .unwrap_or_else(|| {
            panic!(
                "fixture tests/fixtures/llamacpp-tokenize-{key}*.json is missing: it is made with \
                 llama.cpp's llama-tokenize by a separate step (see this file's header)"
            )
        });
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let prov =
        field(&fx, &["provenance"]).unwrap_or_else(|| panic!("{}: no provenance", path.display()));
    // Case groups: the top-level `cases` (flags from `flags` + `provenance`) and any
    // top-level object with its own `cases` (e.g. `default_bos`, with its own flags).
    let top_flags =
        format!("{} {}", flags_text(prov), fx.get("flags").map(flags_text).unwrap_or_default());
    let mut groups: Vec<(String, String, &Vec<Value>)> = Vec::new();
    if let Some(cases) =
        field(&fx, &["cases", "tests", "items", "strings"]).and_then(Value::as_array)
    {
        groups.push(("main".to_string(), top_flags.clone(), cases));
    }
    for (name, v) in fx.as_object().unwrap() {
        if let Some(cases) = v.get("cases").and_then(Value::as_array) {
            let flags = match field(v, &["flags", "command"]) {
                Some(f) => flags_text(f),
                None => top_flags.clone(),
            };
            groups.push((name.clone(), flags, cases));
        }
    }
    assert!(!groups.is_empty(), "{}: no cases", path.display());
    let tok = common::tokenizer(model);
    let (mut ok, mut total, mut bad) = (0, 0, Vec::new());
    for (group, flags, cases) in &groups {
        let add_special = !flags.contains("--no-bos");
        let parse_special = !flags.contains("--no-parse-special");
        for c in *cases {
            let text =
                field(c, &["text", "input", "prompt"]).and_then(Value::as_str).expect("case text");
            let want: Vec<u32> = field(c, &["ids", "tokens", "token_ids"])
                .and_then(Value::as_array)
                .expect("case ids")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32)
                .collect();
            let add = field(c, &["add_special"]).and_then(Value::as_bool).unwrap_or(add_special);
            let parse =
                field(c, &["parse_special"]).and_then(Value::as_bool).unwrap_or(parse_special);
            let got = tok.encode(text, add, parse);
            total += 1;
            if got == want {
                ok += 1;
            } else {
                bad.push(format!(
                    "[{group}] {text:?}\n   llama.cpp {want:?}\n   ours      {got:?}"
                ));
            }
        }
    }
    eprintln!("{key}: {ok}/{total} match llama.cpp ({})", path.display());
    assert!(bad.is_empty(), "{key}: {}/{total} differ:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn llamacpp_smollm2() {
    check("smollm", common::SMOLLM);
}

#[test]
fn llamacpp_gemma3() {
    check("gemma", common::GEMMA);
}

#[test]
fn llamacpp_qwen25() {
    check("qwen", common::QWEN);
}
