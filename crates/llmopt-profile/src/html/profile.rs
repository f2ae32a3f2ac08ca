//! The profile page: facts about the model and machine, a summary table per cell, and charts of
//! speed against context, decode step latency, time share, time per layer and memory.

use super::{
    axis::Axis,
    bytes,
    charts::{histogram, max_finite, series_color, stacked_bars, Figure, Mark, Rgb, KIND_COLORS},
    num,
    page::{Page, Table},
    seconds, HtmlError,
};
use crate::report::{Cell, ProfileReport, TimeShare};

/// Bars of the weights (by format) in the memory chart.
pub const WEIGHTS_COLOR: Rgb = (0x4e, 0x79, 0xa7);
/// Bars of the KV cache (per context and batch) in the memory chart.
pub const KV_COLOR: Rgb = (0xf2, 0x8e, 0x2b);
/// The peak-RSS bar of the memory chart.
pub const RSS_COLOR: Rgb = (0x6f, 0x76, 0x80);

/// Step-latency histograms drawn at most (one per batch size at the largest context).
const MAX_HISTOGRAMS: usize = 4;

/// The report as one self-contained HTML page.
pub fn render_profile(report: &ProfileReport) -> Result<String, HtmlError> {
    let m = &report.model;
    let mut page = Page::new(&format!("Profile of {}", file_name(&m.path)), &m.path);
    page.facts(&facts(report));
    page.note(&format!("Energy ({}): {}", report.energy_source.kind, report.energy_source.detail));
    if report.cells.is_empty() {
        page.note("No cells were measured, so there is nothing to chart.");
    } else {
        page.heading("Summary");
        page.table(&summary(report));
        page.heading("Speed");
        page.figures(&speed(report))?;
        page.heading("Decode step latency");
        page.figures(&latency(report))?;
        page.heading("Where the time goes");
        page.figures(&time_share(report))?;
        if let Some(f) = per_layer(report) {
            page.figures(&[f])?;
        }
    }
    page.heading("Memory");
    page.figures(&[memory(report)])?;
    Ok(page.finish(&format!("llmopt {} · {}", env!("CARGO_PKG_VERSION"), report.schema)))
}

fn facts(r: &ProfileReport) -> Vec<(&'static str, String)> {
    let (m, p) = (&r.model, &r.prices);
    vec![
        ("architecture", m.architecture.clone()),
        ("parameters", count(m.parameters as f64)),
        ("weights", bytes(m.weight_bytes as f64)),
        ("layers", m.n_layer.to_string()),
        ("context length", m.context_length.to_string()),
        ("threads", r.threads.to_string()),
        ("kernels", r.isa.clone()),
        ("energy source", r.energy_source.kind.clone()),
        (
            "prices",
            format!(
                "${}/h · ${}/kWh · {} gCO2/kWh",
                num(p.usd_per_hour),
                num(p.usd_per_kwh),
                num(p.grid_gco2_per_kwh)
            ),
        ),
    ]
}

fn summary(r: &ProfileReport) -> Table {
    let header = [
        "ctx",
        "batch",
        "prefill t/s",
        "decode t/s",
        "TTFT",
        "step p50",
        "step p90",
        "step p99",
        "attn % prefill",
        "attn % decode",
        "KV",
        "Wh/1k tok",
        "$/1M tok",
        "$/query",
        "gCO2/1k",
    ];
    let pct = |t: &TimeShare| format!("{:.0}%", 100.0 * t.attention_share());
    let rows = r
        .cells
        .iter()
        .map(|c| {
            vec![
                c.ctx.to_string(),
                c.batch.to_string(),
                num(c.prefill_tokens_per_s),
                num(c.decode_tokens_per_s),
                seconds(c.ttft_s),
                seconds(c.step_latency.p50),
                seconds(c.step_latency.p90),
                seconds(c.step_latency.p99),
                pct(&c.prefill_time),
                pct(&c.decode_time),
                bytes(c.kv_bytes as f64),
                num(c.energy.wh_per_1k_tokens),
                num(c.cost.usd_per_1m_tokens),
                num(c.cost.usd_per_query),
                num(c.cost.gco2_per_1k_tokens),
            ]
        })
        .collect();
    Table { header: header.iter().map(|h| h.to_string()).collect(), rows, left: 0 }
}

/// Tokens/s against context length, one line per batch size: prefill, then decode.
fn speed(r: &ProfileReport) -> Vec<Figure> {
    let batches = distinct(r.cells.iter().map(|c| c.batch));
    let ctxs: Vec<f64> =
        distinct(r.cells.iter().map(|c| c.ctx)).into_iter().map(|c| c as f64).collect();
    let panel = |title: &str, tps: fn(&Cell) -> f64| {
        let y = Axis::from_zero("tokens/s", r.cells.iter().map(tps));
        let mut f = Figure::new(title, Axis::at_values("context length (tokens)", &ctxs), y);
        for (i, &b) in batches.iter().enumerate() {
            let mut points: Vec<(f64, f64)> =
                r.cells.iter().filter(|c| c.batch == b).map(|c| (c.ctx as f64, tps(c))).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            f.marks.push(Mark::Line { points, color: series_color(i), dots: true });
            f.legend.push((format!("batch {b}"), series_color(i)));
        }
        f
    };
    vec![
        panel("Prefill tokens/s (all sequences)", |c| c.prefill_tokens_per_s),
        panel("Decode tokens/s (all sequences)", |c| c.decode_tokens_per_s),
    ]
}

/// Histograms of decode step times at the largest context, one per batch size, with p50/p90/p99.
fn latency(r: &ProfileReport) -> Vec<Figure> {
    let batches = distinct(r.cells.iter().map(|c| c.batch));
    let Some(ctx) = r.cells.iter().map(|c| c.ctx).max() else { return Vec::new() };
    let mut cells: Vec<&Cell> = r.cells.iter().filter(|c| c.ctx == ctx).collect();
    cells.sort_by_key(|c| c.batch);
    let left_out = cells.len().saturating_sub(MAX_HISTOGRAMS);
    cells
        .iter()
        .take(MAX_HISTOGRAMS)
        .map(|c| {
            let ms: Vec<f64> = c.step_latencies_s.iter().map(|s| s * 1e3).collect();
            let bins =
                histogram(&ms, ((2.0 * (ms.len() as f64).sqrt()).round() as usize).clamp(10, 40));
            let (lo, hi) = (bins.first().map_or(0.0, |b| b.0), bins.last().map_or(1.0, |b| b.1));
            let x = Axis::linear("step time (ms)", lo, hi);
            let top = max_finite(bins.iter().map(|b| b.2 as f64)).unwrap_or(1.0);
            let y = Axis::linear("steps", 0.0, top * 1.3);
            let title = format!("ctx {ctx} · batch {}: {} decode steps", c.batch, ms.len());
            let mut f = Figure::new(title, x, y);
            let color = series_color(batches.iter().position(|&b| b == c.batch).unwrap_or(0));
            f.marks = bins
                .iter()
                .map(|&(a, b, n)| Mark::Bar { x: (a, b), y: (0.0, n as f64), color })
                .collect();
            let p = c.step_latency;
            for (row, (name, v)) in
                [("p50", p.p50), ("p90", p.p90), ("p99", p.p99)].into_iter().enumerate()
            {
                f.marks.push(Mark::Rule { x: v * 1e3, label: name.into(), row });
            }
            f.legend.push((format!("batch {}", c.batch), color));
            f.note = Some(format!(
                "p50 {} · p90 {} · p99 {} (dashed lines){}",
                seconds(p.p50),
                seconds(p.p90),
                seconds(p.p99),
                if left_out > 0 {
                    format!("; {left_out} larger batches are in the table only")
                } else {
                    String::new()
                }
            ));
            f
        })
        .collect()
}

/// Each cell's prefill and decode time by step kind, as shares of its total.
fn time_share(r: &ProfileReport) -> Vec<Figure> {
    let names: Vec<String> = r.cells.iter().map(cell_name).collect();
    let panel = |title: &str, share: fn(&Cell) -> &TimeShare| {
        let x = Axis::linear("share of the time (%)", 0.0, 100.0);
        let mut f = Figure::new(title, x, Axis::categories("", &names));
        f.size.1 = (90 + 30 * names.len() as u32).max(220);
        let parts: Vec<(Rgb, Vec<f64>)> = (0..7)
            .map(|k| {
                let pct = |c: &Cell| {
                    let t = share(c);
                    100.0 * t.parts()[k].1 / t.total_s()
                };
                (KIND_COLORS[k], r.cells.iter().map(pct).collect())
            })
            .collect();
        f.marks = stacked_bars(names.len(), &parts, true);
        for (k, (name, _)) in TimeShare::default().parts().iter().enumerate() {
            if r.cells.iter().any(|c| share(c).parts()[k].1 > 0.0) {
                f.legend.push((name.to_string(), KIND_COLORS[k]));
            }
        }
        f
    };
    vec![
        panel("Prefill time by step kind", |c| &c.prefill_time),
        panel("Decode time by step kind", |c| &c.decode_time),
    ]
}

/// Attention, MLP and norms per layer for the cell with the largest context (then batch).
fn per_layer(r: &ProfileReport) -> Option<Figure> {
    let c = r.cells.iter().max_by_key(|c| (c.ctx, c.batch)).filter(|c| !c.layers.is_empty())?;
    let names: Vec<String> = c.layers.iter().map(|l| l.layer.to_string()).collect();
    let ms = |f: fn(&crate::report::LayerTime) -> f64| {
        c.layers.iter().map(|l| 1e3 * f(l)).collect::<Vec<_>>()
    };
    let parts = [
        (KIND_COLORS[0], ms(|l| l.attention_s)),
        (KIND_COLORS[2], ms(|l| l.mlp_s)),
        (KIND_COLORS[3], ms(|l| l.norms_s)),
    ];
    let totals = c.layers.iter().map(|l| 1e3 * (l.attention_s + l.mlp_s + l.norms_s));
    let title = format!("Time per layer at ctx {} · batch {} (prefill and decode)", c.ctx, c.batch);
    let mut f =
        Figure::new(title, Axis::categories("layer", &names), Axis::from_zero("time (ms)", totals));
    f.size = (1100, 300);
    f.marks = stacked_bars(names.len(), &parts, false);
    f.legend = vec![
        ("attention".into(), KIND_COLORS[0]),
        ("mlp".into(), KIND_COLORS[2]),
        ("norms".into(), KIND_COLORS[3]),
    ];
    Some(f)
}

/// Weights by format, the KV cache of every cell and the process's peak resident memory, in MB.
fn memory(r: &ProfileReport) -> Figure {
    let mem = &r.memory;
    let mut rows: Vec<(String, f64, Rgb)> = mem
        .weights_by_format
        .iter()
        .map(|w| {
            (format!("weights {} ({} tensors)", w.format, w.tensors), w.bytes as f64, WEIGHTS_COLOR)
        })
        .collect();
    rows.extend(
        r.cells.iter().map(|c| (format!("KV {}", cell_name(c)), c.kv_bytes as f64, KV_COLOR)),
    );
    if let Some(rss) = mem.peak_rss_bytes {
        rows.push(("peak RSS".into(), rss as f64, RSS_COLOR));
    }
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let top = max_finite(rows.iter().map(|r| r.1 / 1e6)).unwrap_or(1.0);
    let x = Axis::linear("MB", 0.0, top * 1.15);
    let mut f =
        Figure::new("Weights, KV cache and peak resident memory", x, Axis::categories("", &names));
    f.size = (1100, (80 + 26 * rows.len() as u32).max(200));
    for (i, (_, b, color)) in rows.iter().enumerate() {
        let slot = i as f64;
        f.marks.push(Mark::Bar { x: (0.0, b / 1e6), y: (slot - 0.36, slot + 0.36), color: *color });
        f.marks.push(Mark::Label { at: (b / 1e6, slot), text: bytes(*b), dx: 6 });
    }
    f.legend = vec![("weights".into(), WEIGHTS_COLOR), ("KV cache".into(), KV_COLOR)];
    if mem.peak_rss_bytes.is_some() {
        f.legend.push(("peak RSS".into(), RSS_COLOR));
    }
    let weights: u64 = mem.weights_by_format.iter().map(|w| w.bytes).sum();
    f.note = Some(format!(
        "Weights {} in all; the KV cache takes {} per token position (all layers, K and V).",
        bytes(weights as f64),
        bytes(mem.kv_bytes_per_token as f64)
    ));
    f
}

fn cell_name(c: &Cell) -> String {
    format!("ctx {} · b{}", c.ctx, c.batch)
}

/// The distinct values, ascending.
fn distinct(v: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut v: Vec<usize> = v.collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().filter(|n| !n.is_empty()).unwrap_or(path)
}

/// `134.5 M`, `1.54 B` parameters.
fn count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2} B", n / 1e9),
        n if n >= 1e6 => format!("{:.1} M", n / 1e6),
        n => format!("{n:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{EnergySource, Memory, ModelInfo, Percentiles, Prices};

    fn report(cells: Vec<Cell>) -> ProfileReport {
        ProfileReport {
            schema: crate::PROFILE_SCHEMA.into(),
            model: ModelInfo {
                path: "m.gguf".into(),
                architecture: "llama".into(),
                parameters: 0,
                weight_bytes: 0,
                n_layer: 0,
                context_length: 0,
            },
            threads: 1,
            isa: "scalar".into(),
            cells,
            memory: Memory {
                peak_rss_bytes: None,
                weights_by_format: Vec::new(),
                kv_bytes_per_token: 0,
            },
            energy_source: EnergySource { kind: "estimate".into(), detail: String::new() },
            prices: Prices { usd_per_hour: 0.0, usd_per_kwh: 0.0, grid_gco2_per_kwh: 0.0 },
        }
    }

    #[test]
    fn empty_and_degenerate_reports_render() {
        let html = render_profile(&report(Vec::new())).unwrap();
        assert!(html.contains("No cells were measured") && html.matches("<svg").count() == 1);
        // One cell, no steps, no time, a NaN speed: every chart still draws, nothing panics.
        let cell = Cell {
            ctx: 16,
            batch: 1,
            gen: 0,
            prefill_tokens_per_s: f64::NAN,
            decode_tokens_per_s: 0.0,
            ttft_s: 0.0,
            step_latencies_s: Vec::new(),
            step_latency: Percentiles { p50: f64::NAN, p90: 0.0, p99: 0.0 },
            prefill_time: TimeShare::default(),
            decode_time: TimeShare::default(),
            layers: Vec::new(),
            kv_bytes: 0,
            energy: Default::default(),
            cost: Default::default(),
        };
        let html = render_profile(&report(vec![cell])).unwrap();
        assert_eq!(html.matches("<svg").count(), 6, "speed x2, latency, time share x2, memory");
    }
}
