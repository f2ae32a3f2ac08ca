//! `llmopt profile` on the real SmolLM2: the JSON report's shape and consistency (one cell per
//! context × batch, shares that add up, energy labelled with its source, cost from the given
//! prices), the run store, and clear errors before any work.

mod common;

use common::{assert_fails, llmopt, smollm2, text, write_file};
use llmopt_profile::{ProfileReport, PROFILE_SCHEMA};

#[test]
fn json_report_has_a_consistent_cell_per_context_and_batch() {
    let dir = llmopt_testdata::TempDir::new("profile-json");
    let store = dir.path().join("runs.sqlite").display().to_string();
    let prices =
        write_file(dir.path(), "prices.json", br#"{"usd_per_hour": 2.0, "watts_per_core": 5}"#);
    let model = smollm2();
    let out = llmopt(&[
        "profile",
        "-m",
        &model,
        "--ctx",
        "16,48",
        "--batch",
        "1,3",
        "--gen",
        "5",
        "--max-batch-tokens",
        "64",
        "--price",
        &prices,
        "--usd-per-kwh",
        "0.3",
        "--json",
        "--store",
        &store,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: ProfileReport = serde_json::from_slice(&out.stdout).expect("stdout is the report");
    assert_eq!(r.schema, PROFILE_SCHEMA);
    assert_eq!(r.model.architecture, "llama");
    assert_eq!(r.model.n_layer, 30);
    // The file's values, the flag over the file, the default where neither says.
    assert_eq!(
        (r.prices.usd_per_hour, r.prices.usd_per_kwh, r.prices.grid_gco2_per_kwh),
        (2.0, 0.3, 400.0)
    );
    let cells: Vec<(usize, usize)> = r.cells.iter().map(|c| (c.ctx, c.batch)).collect();
    assert_eq!(cells, [(16, 1), (16, 3), (48, 1), (48, 3)]);
    for c in &r.cells {
        assert_eq!(c.gen, 5);
        assert_eq!(c.step_latencies_s.len(), 4, "gen - 1 decode steps");
        assert!(c.prefill_tokens_per_s > 0.0 && c.decode_tokens_per_s > 0.0 && c.ttft_s > 0.0);
        let p = c.step_latency;
        assert!(p.p50 > 0.0 && p.p50 <= p.p90 && p.p90 <= p.p99);
        assert_eq!(c.layers.len(), 30);
        for t in [&c.prefill_time, &c.decode_time] {
            let s = t.attention_share();
            assert!(s > 0.0 && s < 0.95, "attention share {s}");
        }
        assert_eq!(c.kv_bytes, r.memory.kv_bytes_per_token * (c.batch * (c.ctx + c.gen)) as u64);
        assert!(
            c.energy.joules > 0.0 && c.cost.usd_per_query > 0.0 && c.cost.gco2_per_1k_tokens > 0.0
        );
        // Machine time alone: 2 $/h for the cell's wall time, shared by its queries.
        let steps: f64 = c.step_latencies_s.iter().sum();
        assert!(c.cost.usd_per_query >= 2.0 * (c.ttft_s + steps) / 3600.0 / c.batch as f64);
    }
    // SmolLM2's KV: 30 layers × 3 KV heads × 64 × K and V × f16.
    assert_eq!(r.memory.kv_bytes_per_token, 30 * 192 * 2 * 2);
    let formats: Vec<&str> = r.memory.weights_by_format.iter().map(|f| f.format.as_str()).collect();
    assert_eq!(formats, ["q4_1", "q8_0", "f32"]);
    assert_eq!(
        r.memory.weights_by_format.iter().map(|f| f.bytes).sum::<u64>(),
        r.model.weight_bytes
    );
    assert!(r.memory.peak_rss_bytes.unwrap() > r.model.weight_bytes / 2);
    match r.energy_source.kind.as_str() {
        "rapl" => {}
        "estimate" => assert!(r.energy_source.detail.contains("5 W per busy core")),
        k => panic!("energy source {k}"),
    }

    // The run is stored with per-cell metrics.
    let out = llmopt(&["runs", "show", "1", "--store", &store, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &run["run"];
    assert_eq!(run["kind"], "profile");
    assert_eq!(run["report"]["schema"], PROFILE_SCHEMA);
    let names: Vec<&str> =
        run["metrics"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    for want in
        ["prefill@16x1", "decode@48x3", "ttft@16x3", "attention_share_decode@48x1", "peak_rss"]
    {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
}

#[test]
fn the_table_names_where_time_goes() {
    let model = smollm2();
    let out = llmopt(&[
        "profile",
        "-m",
        &model,
        "--ctx",
        "24",
        "--batch",
        "2",
        "--gen",
        "3",
        "--no-store",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for w in [
        "prefill t/s",
        "TTFT ms",
        "attention (core)",
        "mlp",
        "sampling",
        "time by layer",
        "KV cache",
        "energy:",
    ] {
        assert!(s.contains(w), "{w} missing:\n{s}");
    }
}

#[test]
fn bad_requests_fail_before_any_work() {
    let dir = llmopt_testdata::TempDir::new("profile-errors");
    let model = smollm2();
    let bad_price = write_file(dir.path(), "p.json", br#"{"usd_per_hr": 1}"#);
    let missing = dir.path().join("missing.gguf").display().to_string();
    for (args, words) in [
        (vec!["--ctx", "8192"], vec!["--ctx 8192", "exceeds the model's context (8192)"]),
        (vec!["--gen", "1"], vec!["--gen 1", "at least 2"]),
        (vec!["--batch", "0"], vec!["at least 1"]),
        (vec!["--usd-per-kwh", "-1"], vec!["--usd-per-kwh", ">= 0"]),
        (vec!["--price", &bad_price], vec!["unknown field"]),
    ] {
        let mut a = vec!["profile", "-m", &model, "--no-store"];
        a.extend(args);
        assert_fails(&llmopt(&a), &words);
    }
    assert_fails(&llmopt(&["profile", "-m", &missing, "--no-store"]), &["missing.gguf"]);
}

#[test]
fn html_report_of_a_real_profile_renders_in_chromium() {
    let dir = llmopt_testdata::TempDir::new("profile-html");
    let html = dir.path().join("profile.html");
    let model = smollm2();
    let out = llmopt(&[
        "profile",
        "-m",
        &model,
        "--ctx",
        "16,64",
        "--batch",
        "1,2",
        "--gen",
        "6",
        "--no-store",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("report: "));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("SmolLM2-135M-Instruct.Q4_1.gguf"));
    // Every chart is an SVG with data marks in it.
    let svgs: Vec<&str> = page.split("<svg").skip(1).collect();
    assert_eq!(svgs.len(), 8, "one SVG per chart");
    for (i, svg) in svgs.iter().enumerate() {
        let marks = svg.matches("<rect").count() + svg.matches("<polyline").count();
        assert!(marks > 3, "chart {i} has no data marks");
    }
    let shot = llmopt_testdata::browser::screenshot(&html, (1200, 3000), &dir.path().join("p.png"));
    let total = (shot.width * shot.height) as usize;
    assert!(shot.non_white() * 50 > total, "the report is nearly blank");
    assert!(shot.distinct_colors() > 200, "only {} colors", shot.distinct_colors());
    // The series colors of the charts cover real area (more than legend swatches could).
    for c in llmopt_profile::html::KIND_COLORS.iter().take(3) {
        assert!(shot.count(*c) > 2000, "color {c:?} covers {} pixels", shot.count(*c));
    }
}
