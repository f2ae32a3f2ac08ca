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

/// SmolLM2 dequantized to F32 (`quantize -f f32`): the float baseline, written once under Cargo's
/// test scratch folder and shared by the tests that start from it, one 540 MB file rather than one
/// per test (CI's disk is small). A lock serializes the first writers; a binary newer than the file
/// writes it again. `quantize` renames a finished file into place, so a crash leaves none.
pub fn smollm2_f32() -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("smollm2-f32.gguf");
    let lock = std::fs::File::create(dir.join("smollm2-f32.lock")).expect("create the lock file");
    lock.lock().expect("lock the shared f32 baseline");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&path) < modified(Path::new(env!("CARGO_BIN_EXE_llmopt"))) {
        let out = path.display().to_string();
        let o = llmopt(&["quantize", "-m", &smollm2(), "-o", &out, "-f", "f32", "--no-store"]);
        assert!(o.status.success(), "the f32 baseline: {}", text(&o.stderr));
    }
    path.display().to_string()
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
