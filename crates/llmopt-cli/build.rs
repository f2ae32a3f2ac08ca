//! Records the git commit the binary is built from as `LLMOPT_GIT_COMMIT` (`abc1234`, with
//! `-dirty` when tracked files differ from it), or `unknown` outside a git checkout or without git,
//! so every stored run names the code that produced it.

use std::{path::Path, process::Command};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"]).filter(|c| !c.is_empty());
    let version = match &commit {
        Some(c) => {
            // Tracked files that differ from HEAD, compared by content; the index is not written
            // (that would trigger this script again).
            let changes =
                git(&["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]);
            if changes.is_some_and(|c| c.is_empty()) {
                c.clone()
            } else {
                format!("{c}-dirty")
            }
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=LLMOPT_GIT_COMMIT={version}");
    if commit.is_some() {
        // Run again when HEAD moves (checkout, commit), the index changes (staging) or a source
        // file changes (the dirty flag); git names its files, which live elsewhere in worktrees.
        println!("cargo:rerun-if-changed=../../crates");
        let mut watch = vec!["HEAD".to_string(), "index".to_string(), "packed-refs".to_string()];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(branch);
        }
        for name in watch {
            if let Some(p) = git(&["rev-parse", "--git-path", &name]) {
                if Path::new(&p).exists() {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
        }
    }
}
