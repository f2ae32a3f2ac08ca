//! The HTML reports rendered in headless Chromium: the screenshot is not blank and every chart's
//! series colors are on it, and each chart's SVG holds data marks. The report is built here with
//! plausible numbers: this tests the rendering, not a measurement. Screenshots stay in
//! `target/tmp/html-report/` to look at.

use std::path::PathBuf;

use llmopt_profile::{
    html::{
        render_pareto, render_profile, Rgb, FRONT_COLOR, KIND_COLORS, KV_COLOR, OFF_FRONT_COLOR,
        PALETTE, RSS_COLOR, WEIGHTS_COLOR,
    },
    report::{
        Cell, Cost, Energy, EnergySource, FormatBytes, LayerTime, Memory, ModelInfo, ParetoPoint,
        Percentiles, Prices, TimeShare,
    },
    ProfileReport, PROFILE_SCHEMA,
};
use llmopt_testdata::browser::{screenshot, Screenshot};

const CTXS: [usize; 3] = [128, 512, 2048];
const BATCHES: [usize; 2] = [1, 4];
const LAYERS: usize = 30;
/// 30 layers x (K + V) x 3 KV heads x 64 dimensions x 2 bytes (f16).
const KV_PER_TOKEN: u64 = 23_040;
/// Pixels a color must cover beyond its legend swatches (12 x 12 each) to count as drawn data.
const MIN_DATA_PIXELS: usize = 40;

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic jitter in [0, 1).
fn jitter(i: usize) -> f64 {
    ((i as f64 * 12.9898).sin() * 43_758.545).fract().abs()
}

fn cell(ctx: usize, batch: usize) -> Cell {
    let gen = 64;
    let step = 0.018 * (1.0 + 0.35 * (batch as f64 - 1.0)) * (1.0 + ctx as f64 / 8192.0);
    let steps: Vec<f64> = (0..gen)
        .map(|i| {
            step * (1.0 + 0.12 * jitter(i + ctx + batch)) + if i % 23 == 7 { step } else { 0.0 }
        })
        .collect();
    let mut sorted = steps.clone();
    sorted.sort_by(f64::total_cmp);
    let rank = |q: f64| sorted[((q * gen as f64).ceil() as usize).clamp(1, gen) - 1];
    // Batches amortize the weights: 4 sequences prefill 1.3x faster per token than one.
    let per_token = 0.0004 * (1.0 + ctx as f64 / 4096.0) / (1.0 + 0.1 * (batch as f64 - 1.0));
    let prefill_s = per_token * (ctx * batch) as f64;
    let attn_core = 0.03 + 0.25 * ctx as f64 / 2048.0;
    let share = |total: f64, sampling: f64| TimeShare {
        attention_proj_s: 0.18 * total,
        attention_core_s: attn_core * total,
        mlp_s: (0.55 - attn_core) * total,
        norms_s: 0.04 * total,
        embedding_output_s: 0.15 * total,
        sampling_s: sampling * total,
        other_s: (0.08 - sampling) * total,
    };
    let decode_s: f64 = steps.iter().sum();
    let tokens = (ctx + gen) * batch;
    Cell {
        ctx,
        batch,
        gen,
        prefill_tokens_per_s: (ctx * batch) as f64 / prefill_s,
        decode_tokens_per_s: (gen * batch) as f64 / decode_s,
        ttft_s: prefill_s + steps[0],
        step_latency: Percentiles { p50: rank(0.5), p90: rank(0.9), p99: rank(0.99) },
        step_latencies_s: steps,
        prefill_time: share(prefill_s, 0.0),
        decode_time: share(decode_s, 0.03),
        layers: (0..LAYERS)
            .map(|layer| {
                let t = (prefill_s + decode_s) / LAYERS as f64;
                LayerTime {
                    layer,
                    attention_s: 0.4 * t,
                    mlp_s: (0.5 + 0.05 * jitter(layer)) * t,
                    norms_s: 0.05 * t,
                }
            })
            .collect(),
        kv_bytes: (batch * (ctx + gen)) as u64 * KV_PER_TOKEN,
        energy: Energy {
            joules: 30.0 * (prefill_s + decode_s),
            wh_per_1k_tokens: 30.0 * (prefill_s + decode_s) / 3.6 / tokens as f64,
        },
        cost: Cost {
            usd_per_1m_tokens: 0.42 * batch as f64,
            usd_per_query: 0.000_031,
            gco2_per_1k_tokens: 0.8,
        },
    }
}

/// A SmolLM2-like profile over 3 contexts x 2 batch sizes.
fn sample_report() -> ProfileReport {
    ProfileReport {
        schema: PROFILE_SCHEMA.into(),
        model: ModelInfo {
            path: "models/<SmolLM2>-135M-Instruct.Q4_1.gguf".into(),
            architecture: "llama".into(),
            parameters: 134_515_008,
            weight_bytes: 98_990_000,
            n_layer: LAYERS,
            context_length: 8192,
        },
        threads: 2,
        isa: "avx512vnni".into(),
        cells: CTXS.iter().flat_map(|&c| BATCHES.iter().map(move |&b| cell(c, b))).collect(),
        memory: Memory {
            peak_rss_bytes: Some(342_000_000),
            weights_by_format: vec![
                FormatBytes { format: "q4_1".into(), tensors: 210, bytes: 71_000_000 },
                FormatBytes { format: "q6_K".into(), tensors: 1, bytes: 24_000_000 },
                FormatBytes { format: "f32".into(), tensors: 61, bytes: 3_990_000 },
            ],
            kv_bytes_per_token: KV_PER_TOKEN,
        },
        energy_source: EnergySource {
            kind: "estimate".into(),
            detail: "no RAPL counters readable: 30 W package power assumed while busy".into(),
        },
        prices: Prices { usd_per_hour: 0.10, usd_per_kwh: 0.15, grid_gco2_per_kwh: 400.0 },
    }
}

/// The `<svg>...</svg>` elements of a page, in order.
fn svgs(html: &str) -> Vec<&str> {
    html.split("<svg").skip(1).map(|s| &s[..s.find("</svg>").expect("a closed svg")]).collect()
}

/// Elements of an SVG drawn in `color` (fill or stroke): the data marks of that series.
fn marks_in(svg: &str, color: Rgb) -> usize {
    let hex = format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2);
    svg.lines()
        .filter(|l| {
            l.starts_with("<rect")
                || l.starts_with("<polyline")
                || l.starts_with("<circle")
                || l.starts_with("<polygon")
        })
        .filter(|l| l.to_ascii_uppercase().contains(&hex))
        .count()
}

/// Each color covers more pixels than its legend swatches could (so some are chart data).
fn assert_drawn(shot: &Screenshot, html: &str, colors: &[(&str, Rgb)]) {
    for &(name, c) in colors {
        let swatches =
            html.matches(&format!("background:#{:02x}{:02x}{:02x}", c.0, c.1, c.2)).count();
        let pixels = shot.count(c);
        assert!(
            pixels >= swatches * 144 + MIN_DATA_PIXELS,
            "{name} ({c:?}): {pixels} pixels on the screenshot, {swatches} legend swatches: the chart has no data"
        );
    }
}

fn assert_not_blank(shot: &Screenshot) {
    let total = (shot.width * shot.height) as usize;
    let ink = shot.non_white();
    assert!(ink * 50 > total, "nearly blank: {ink} of {total} pixels are not white");
    assert!(shot.distinct_colors() > 200, "only {} colors", shot.distinct_colors());
}

fn render_and_shoot(name: &str, html: &str, window: (u32, u32)) -> Screenshot {
    let dir = out_dir();
    let page = dir.join(format!("{name}.html"));
    std::fs::write(&page, html).unwrap();
    screenshot(&page, window, &dir.join(format!("{name}.png")))
}

#[test]
fn profile_report_renders_every_chart_with_data() {
    let report = sample_report();
    let html = render_profile(&report).unwrap();
    assert!(
        html.contains("&lt;SmolLM2&gt;") && !html.contains("<SmolLM2>"),
        "the model path is escaped"
    );
    for external in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!html.contains(external), "self-contained: no {external}");
    }
    let charts = svgs(&html);
    // speed x2, latency per batch x2, time share x2, per layer, memory
    assert_eq!(charts.len(), 8, "one svg per chart");
    let batch = |i: usize| PALETTE[i];
    for (i, c) in charts[..2].iter().enumerate() {
        for b in 0..BATCHES.len() {
            assert!(
                marks_in(c, batch(b)) >= CTXS.len(),
                "speed chart {i}: batch {b}'s line and dots"
            );
        }
    }
    for (b, c) in charts[2..4].iter().enumerate() {
        assert!(marks_in(c, batch(b)) >= 8, "latency histogram {b}: bins");
    }
    for (i, c) in charts[4..6].iter().enumerate() {
        for (k, &color) in KIND_COLORS.iter().enumerate() {
            // Prefill samples nothing in this report.
            let expected = if i == 0 && k == 5 { 0 } else { report.cells.len() };
            assert_eq!(marks_in(c, color), expected, "time share {i}: part {k} in every cell");
        }
    }
    assert_eq!(marks_in(charts[6], KIND_COLORS[2]), LAYERS, "per layer: one mlp bar per layer");
    assert_eq!(marks_in(charts[7], WEIGHTS_COLOR), 3);
    assert_eq!(marks_in(charts[7], KV_COLOR), report.cells.len());
    assert_eq!(marks_in(charts[7], RSS_COLOR), 1);

    let shot = render_and_shoot("profile", &html, (1200, 3000));
    assert_not_blank(&shot);
    let mut colors = vec![
        ("batch 1", batch(0)),
        ("batch 4", batch(1)),
        ("KV", KV_COLOR),
        ("peak RSS", RSS_COLOR),
    ];
    colors.extend(KIND_COLORS.iter().map(|&c| ("step kind", c)));
    assert_drawn(&shot, &html, &colors);
}

#[test]
fn pareto_page_renders_points_and_front() {
    let point = |label: &str, mb: f64, kld: Option<f64>, tps: Option<f64>| ParetoPoint {
        label: label.into(),
        size_bytes: (mb * 1e6) as u64,
        kld,
        tokens_per_s: tps,
    };
    let points = [
        point("SmolLM2-135M-Instruct.f16.gguf (runs 1, 4)", 270.9, None, Some(61.0)),
        point("SmolLM2-135M-Instruct.Q8_0.gguf (run 2)", 144.8, Some(0.0009), Some(88.0)),
        point("SmolLM2-135M-Instruct.Q4_1.gguf (runs 3, 8)", 98.9, Some(0.031), Some(121.0)),
        point("SmolLM2-135M-Instruct.Q4_0.gguf (run 5)", 91.7, Some(0.048), Some(126.0)),
        point("SmolLM2-135M-Instruct.Q4_K_M.gguf (run 6)", 105.5, Some(0.052), None),
        point("SmolLM2-135M-Instruct.Q3_K_S.gguf (run 7)", 88.0, Some(0.19), Some(110.0)),
    ];
    let html = render_pareto(&points, "decode t/s (tg128)", "SmolLM2-135M variants").unwrap();
    let charts = svgs(&html);
    assert_eq!(charts.len(), 1);
    assert!(marks_in(charts[0], FRONT_COLOR) >= 5, "front dots and the step line");
    assert_eq!(marks_in(charts[0], OFF_FRONT_COLOR), 1, "Q4_K_M is beaten by Q4_1");
    assert_eq!(html.matches("<td>yes</td>").count(), 5);

    let shot = render_and_shoot("pareto", &html, (1200, 1100));
    assert_not_blank(&shot);
    assert_drawn(&shot, &html, &[("front", FRONT_COLOR), ("dominated", OFF_FRONT_COLOR)]);
}
