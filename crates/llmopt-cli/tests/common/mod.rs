//! Running the built binary from the CLI's integration tests, and checking how it fails.

#![allow(dead_code)]

use std::{
    path::Path,
    process::{Command, Output},
};

/// Runs `llmopt` with `args` and waits for it.
pub fn llmopt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llmopt")).args(args).output().expect("run llmopt")
}

/// The default test model's path.
pub fn smollm2() -> String {
    llmopt_testdata::model(llmopt_testdata::SMOLLM2).display().to_string()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A failed run: non-zero exit, `error:` first, no panic, and the expected words.
pub fn assert_fails(out: &Output, words: &[&str]) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    assert!(err.lines().count() <= 2, "one error line plus an optional hint: {err}");
    for w in words {
        assert!(err.contains(w), "stderr lacks {w:?}: {err}");
    }
}

/// Writes `bytes` to `dir/name` and returns the path as a string argument.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}
