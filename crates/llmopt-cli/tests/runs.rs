//! The run store end to end: `bench` records runs into a store given by `--store`, and `runs list`,
//! `show`, `compare` and `export` read them back; a store that cannot be written never fails a run.

mod common;

use common::{assert_fails, llmopt, smollm2, text};
use llmopt_testdata::TempDir;
use serde_json::Value;

/// Runs `llmopt bench` on SmolLM2 with `extra` flags and returns its stderr.
fn bench(reps: &str, extra: &[&str]) -> String {
    let m = smollm2();
    let mut args = vec!["bench", "-m", &m, "-p", "16", "-n", "4", "-r", reps, "--no-bandwidth"];
    args.extend_from_slice(extra);
    let out = llmopt(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stderr)
}

fn json(args: &[&str]) -> Value {
    let out = llmopt(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1, "{v}");
    v
}

fn close(x: f64, y: f64) -> bool {
    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
}

#[test]
fn bench_runs_are_stored_listed_shown_compared_and_exported() {
    let tmp = TempDir::new("cli-runs");
    // A store in a folder that does not exist yet.
    let store = tmp.path().join("history/runs.sqlite").display().to_string();
    for id in 1..=2 {
        let err = bench("3", &["--store", &store]);
        assert!(err.contains(&format!("stored as run {id} in {store}")), "{err}");
    }
    bench("1", &["--store", &store, "--json"]);

    // list
    let v = json(&["runs", "list", "--store", &store, "--json"]);
    assert_eq!(v["store_schema_version"], 1);
    let runs = v["runs"].as_array().unwrap();
    let ids: Vec<i64> = runs.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [3, 2, 1], "newest first");
    let model_size = std::fs::metadata(smollm2()).unwrap().len();
    for r in runs {
        assert_eq!(r["kind"], "bench");
        assert_eq!(r["status"], "ok");
        assert_eq!(r["model"]["path"], smollm2().as_str());
        assert_eq!(r["model"]["size"], model_size);
        assert_eq!(r["model"]["sha256"], runs[0]["model"]["sha256"]);
        assert_eq!(r["model"]["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(r["llmopt_version"], env!("CARGO_PKG_VERSION"));
        assert!(!r["llmopt_commit"].as_str().unwrap().is_empty());
        assert!(r["host"]["logical_cores"].as_u64().unwrap() >= 1);
        assert!(r["started_at"].as_str().unwrap().ends_with('Z'));
        assert!(r["argv"].as_array().unwrap().iter().any(|a| a == "--store"));
        let names: Vec<&str> =
            r["metrics"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["pp16", "tg4", "decode_bandwidth", "peak_rss"]);
    }
    let filtered = json(&[
        "runs", "list", "--store", &store, "--model", "SmolLM2", "--kind", "bench", "--limit", "2",
        "--json",
    ]);
    assert_eq!(filtered["runs"].as_array().unwrap().len(), 2);
    let none = json(&["runs", "list", "--store", &store, "--kind", "eval", "--json"]);
    assert_eq!(none["runs"].as_array().unwrap().len(), 0);
    let table = llmopt(&["runs", "list", "--store", &store]);
    assert!(text(&table.stdout).contains("SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(text(&table.stdout).contains("pp16"));

    // show: the metrics are the report's figures, the standard error sd/sqrt(reps).
    let shown = json(&["runs", "show", "1", "--store", &store, "--json"]);
    let (run, report) = (&shown["run"], &shown["run"]["report"]);
    assert_eq!(run["id"], 1);
    assert_eq!(report["tests"][0]["test"], "pp16");
    let pp = &run["metrics"][0];
    assert!(close(
        pp["value"].as_f64().unwrap(),
        report["tests"][0]["tokens_per_s"].as_f64().unwrap()
    ));
    let sd = report["tests"][0]["tokens_per_s_sd"].as_f64().unwrap();
    assert!(close(pp["stderr"].as_f64().unwrap(), sd / 3f64.sqrt()));
    assert_eq!(pp["unit"], "t/s");
    assert_eq!(pp["better"], "higher");
    assert_eq!(run["metrics"][3]["better"], "lower");
    let single = json(&["runs", "show", "3", "--store", &store, "--json"]);
    assert_eq!(single["run"]["metrics"][0]["stderr"], Value::Null, "one rep has no spread");
    let human = text(&llmopt(&["runs", "show", "2", "--store", &store]).stdout);
    assert!(human.contains("run 2: bench (ok)") && human.contains("sha256"), "{human}");

    // compare: every verdict follows from the numbers it prints.
    let c = json(&["runs", "compare", "1", "2", "--store", &store, "--json"]);
    assert_eq!((c["a"]["id"].as_i64(), c["b"]["id"].as_i64()), (Some(1), Some(2)));
    let metrics = c["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 4);
    for m in metrics {
        let (a, b) = (m["a"].as_f64().unwrap(), m["b"].as_f64().unwrap());
        assert!(close(m["delta"].as_f64().unwrap(), b - a), "{m}");
        assert!(close(m["ratio"].as_f64().unwrap(), b / a), "{m}");
        let verdict = m["verdict"].as_str().unwrap();
        match (m["a_stderr"].as_f64(), m["b_stderr"].as_f64()) {
            (Some(sa), Some(sb)) => {
                let noise = 2.0 * (sa * sa + sb * sb).sqrt();
                assert!(close(m["noise"].as_f64().unwrap(), noise), "{m}");
                let up = if m["better"] == "higher" { b > a } else { b < a };
                let expected = if (b - a).abs() <= noise {
                    "within_noise"
                } else if up {
                    "better"
                } else {
                    "worse"
                };
                assert_eq!(verdict, expected, "{m}");
            }
            _ => assert_eq!(verdict, "no_spread", "{m}"),
        }
    }
    assert_eq!(metrics[3]["name"], "peak_rss");
    assert_eq!(metrics[3]["verdict"], "no_spread");
    let s = &c["summary"];
    let counted: u64 = ["better", "worse", "within_noise", "no_spread", "unranked", "missing"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 4);
    assert!(s["text"].as_str().unwrap().starts_with("run 2 against run 1: "));
    let with_single = json(&["runs", "compare", "1", "3", "--store", &store, "--json"]);
    assert_eq!(with_single["metrics"][0]["verdict"], "no_spread");
    let human = text(&llmopt(&["runs", "compare", "1", "2", "--store", &store]).stdout);
    assert!(human.contains("B - A") && human.contains("run 2 against run 1: "), "{human}");

    // export: one row per run and metric, oldest first, to a file or to stdout.
    let csv_path = tmp.path().join("runs.csv");
    let out = llmopt(&[
        "runs",
        "export",
        "--csv",
        "--out",
        &csv_path.display().to_string(),
        "--store",
        &store,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 3 * 4, "{csv}");
    assert!(lines[0].starts_with("run_id,kind,"), "{}", lines[0]);
    assert!(lines[1].starts_with("1,bench,ok,") && lines[12].starts_with("3,bench,ok,"));
    assert!(lines[1].contains(",pp16,"), "{}", lines[1]);
    let stdout = llmopt(&["runs", "export", "--csv", "--store", &store]);
    assert_eq!(text(&stdout.stdout), csv);

    // Unknown ids and missing stores: one error line, a hint, exit code 1.
    let unknown = llmopt(&["runs", "show", "99", "--store", &store]);
    assert_fails(&unknown, &["no run with id 99", "hint:", "runs list"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_fails(&llmopt(&["runs", "compare", "1", "42", "--store", &store]), &["id 42"]);
    let missing = tmp.path().join("none.sqlite").display().to_string();
    assert_fails(&llmopt(&["runs", "list", "--store", &missing]), &["no run store", "hint:"]);
    assert!(!std::path::Path::new(&missing).exists(), "reading creates no store");
}

#[test]
fn a_store_that_cannot_be_written_never_fails_the_run() {
    let tmp = TempDir::new("cli-runs-broken");
    let file = common::write_file(tmp.path(), "not-a-folder", b"x");
    let store = format!("{file}/runs.sqlite");
    let err = bench("1", &["--store", &store]);
    assert!(err.contains("warning: the run was not stored"), "{err}");
    let off = bench("1", &["--no-store"]);
    assert!(!off.contains("stored"), "{off}");
    // A file that is not a store is named, not overwritten.
    let garbage = common::write_file(tmp.path(), "garbage.sqlite", &[b'x'; 4096]);
    let err = bench("1", &["--store", &garbage]);
    assert!(err.contains("not a run store"), "{err}");
    assert_eq!(std::fs::read(&garbage).unwrap(), vec![b'x'; 4096]);
}

/// A stored run of `kind` on `file` (name, SHA-256 tag, MB) with `metrics` (name, value, unit).
fn record(
    kind: &str,
    file: Option<(&str, &str, f64)>,
    metrics: &[(&str, f64, &str)],
    report: Option<String>,
) -> llmopt_store::RunRecord {
    use llmopt_store::{Better, Host, Metric, ModelFile, RunRecord, Status};
    RunRecord {
        kind: kind.into(),
        argv: vec!["llmopt".into(), kind.into()],
        model: file.map(|(name, tag, mb)| ModelFile {
            path: format!("models/{name}"),
            sha256: tag.repeat(64 / tag.len()),
            size: (mb * 1e6) as u64,
        }),
        host: Host::detect(),
        llmopt_version: "0.1.0".into(),
        llmopt_commit: "test".into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        finished_at: "2025-01-01T00:00:01Z".into(),
        status: if metrics.is_empty() { Status::Failed } else { Status::Ok },
        metrics: metrics.iter().map(|&(n, v, u)| Metric::new(n, v, u, Better::None)).collect(),
        report,
    }
}

#[test]
fn runs_report_draws_one_point_per_model_file() {
    let tmp = TempDir::new("cli-runs-report");
    let store = tmp.path().join("runs.sqlite");
    let base = |mb: f64| {
        Some(format!(
            r#"{{"base": {{"path": "models/f16.gguf", "file_bytes": {}}}}}"#,
            (mb * 1e6) as u64
        ))
    };
    let (f16, q8, q4, q4km) = (
        ("f16.gguf", "a", 270.9),
        ("q8_0.gguf", "b", 144.8),
        ("q4_1.gguf", "c", 98.9),
        ("q4_k_m.gguf", "d", 105.5),
    );
    let compare =
        |file, kld| record("eval.compare", Some(file), &[("kld", kld, "nats")], base(270.9));
    let bench = |file, tg| {
        record("bench", Some(file), &[("pp512", 10.0 * tg, "t/s"), ("tg128", tg, "t/s")], None)
    };
    let mut s = llmopt_store::Store::open(&store).unwrap();
    for r in [
        bench(f16, 61.0),                     // 1
        compare(q8, 0.0009),                  // 2
        bench(q8, 88.0),                      // 3
        compare(q4, 0.031),                   // 4
        bench(q4, 121.0),                     // 5
        bench(q4, 125.0),                     // 6: the newest tg128 of q4_1 wins
        compare(q4km, 0.052),                 // 7: no bench run, beaten by q4_1
        record("bench", Some(q4), &[], None), // 8: failed
    ] {
        s.insert(&r).unwrap();
    }
    drop(s);
    let store = store.display().to_string();
    let page = tmp.path().join("tradeoff.html");
    let out = llmopt(&[
        "runs",
        "report",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "--html",
        &page.display().to_string(),
        "--store",
        &store,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("wrote {} (4 model files)\n", page.display()));
    assert!(
        text(&out.stderr).contains("warning: run 8 (bench) has no model file or did not finish")
    );
    let html = std::fs::read_to_string(&page).unwrap();
    let rows: Vec<&str> = html.split("<tr>").skip(2).collect();
    let expected = [
        ("f16.gguf (run 1; base of 2, 4, 7)", "0 (baseline)", "61.0", "yes"),
        ("q8_0.gguf (runs 2, 3)", "0.000900", "88.0", "yes"),
        ("q4_k_m.gguf (run 7)", "0.0520", "-", "no"),
        ("q4_1.gguf (runs 4, 5, 6)", "0.0310", "125", "yes"),
    ];
    assert_eq!(rows.len(), expected.len(), "{html}");
    for (row, (label, kld, speed, front)) in rows.iter().zip(expected) {
        for cell in [label, kld, speed, front] {
            assert!(row.contains(&format!(">{cell}</td>")), "{cell} in {row}");
        }
    }
    assert!(html.contains("<th>tg128 (t/s)</th>") && html.matches("<svg").count() == 1);
    let shot =
        llmopt_testdata::browser::screenshot(&page, (1200, 1000), &tmp.path().join("tradeoff.png"));
    let front = llmopt_profile::html::FRONT_COLOR;
    assert!(shot.count(front) > 1000, "the front's markers and step line are drawn");

    // compare --html: the two candidates and their base (known from the compare runs' reports).
    let page2 = tmp.path().join("compare.html").display().to_string();
    let out = llmopt(&[
        "runs", "compare", "2", "4", "--html", &page2, "--speed", "pp512", "--store", &store,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(&format!("wrote {page2} (3 model files)\n")));
    let html = std::fs::read_to_string(&page2).unwrap();
    assert!(html.contains(">f16.gguf (base of 2, 4)</td>") && html.contains("<th>pp512</th>"));
    let json =
        llmopt(&["runs", "compare", "2", "4", "--json", "--html", &page2, "--store", &store]);
    assert!(serde_json::from_slice::<Value>(&json.stdout).is_ok(), "stdout stays JSON");
    assert!(text(&json.stderr).contains("wrote "));

    assert_fails(
        &llmopt(&["runs", "report", "1", "99", "--html", &page2, "--store", &store]),
        &["no run with id 99", "hint:"],
    );
    let nowhere = tmp.path().join("missing/r.html").display().to_string();
    assert_fails(
        &llmopt(&["runs", "report", "1", "--html", &nowhere, "--store", &store]),
        &["cannot create"],
    );
}
