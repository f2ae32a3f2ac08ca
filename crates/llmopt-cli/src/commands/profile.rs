//! `llmopt profile`: the baseline before optimizing: speed by context and batch, TTFT, step latency
//! percentiles, time by step kind and layer, memory, energy, cost and CO2, as tables or JSON.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_engine::{Sampler, SamplerConfig};
use llmopt_kernels::Isa;
use llmopt_model::KvCache;
use llmopt_profile::html::render_profile;
use llmopt_profile::{
    check_price, check_spec, peak_rss_bytes, report::FormatBytes, report::Memory,
    report::ModelInfo, run_cell, Cell, CellSpec, EnergyModel, PriceFile, Prices, ProfileReport,
    DEFAULT_PRICES, PROFILE_SCHEMA,
};
use llmopt_store::{Better, Metric};

use crate::{
    atomic_file::write_atomic, cli::ProfileArgs, load::Loaded, progress, record::RunDraft,
    units::human_bytes,
};

/// Watts per busy core when neither the price file nor the flag says.
const DEFAULT_WATTS_PER_CORE: f64 = 8.0;

/// Prices and the energy model from the file, then the flags, then the defaults; all validated.
fn prices(args: &ProfileArgs) -> Result<(Prices, f64)> {
    let file = match &args.price {
        Some(p) => PriceFile::read(p)?,
        None => PriceFile::default(),
    };
    let pick = |name: &str, flag: Option<f64>, file: Option<f64>, default: f64| -> Result<f64> {
        let v = flag.or(file).unwrap_or(default);
        check_price(name, v)?;
        Ok(v)
    };
    let p = Prices {
        usd_per_hour: pick(
            "--usd-per-hour",
            args.usd_per_hour,
            file.usd_per_hour,
            DEFAULT_PRICES.usd_per_hour,
        )?,
        usd_per_kwh: pick(
            "--usd-per-kwh",
            args.usd_per_kwh,
            file.usd_per_kwh,
            DEFAULT_PRICES.usd_per_kwh,
        )?,
        grid_gco2_per_kwh: pick(
            "--grid-gco2-per-kwh",
            args.grid_gco2_per_kwh,
            file.grid_gco2_per_kwh,
            DEFAULT_PRICES.grid_gco2_per_kwh,
        )?,
    };
    let w =
        pick("--watts-per-core", args.watts_per_core, file.watts_per_core, DEFAULT_WATTS_PER_CORE)?;
    Ok((p, w))
}

/// The cells the flags ask for, context-major; checked against the model before any work.
fn cells(args: &ProfileArgs, model: &llmopt_model::Model) -> Result<Vec<CellSpec>> {
    if args.ctx.is_empty() || args.batch.is_empty() {
        anyhow::bail!("nothing to measure: give at least one --ctx and one --batch");
    }
    if args.gen < 2 {
        anyhow::bail!(
            "invalid --gen {}: must be at least 2 (one token from prefill, one decoded)",
            args.gen
        );
    }
    let mut out = Vec::new();
    for &ctx in &args.ctx {
        for &batch in &args.batch {
            let spec =
                CellSpec { ctx, batch, gen: args.gen, max_batch_tokens: args.max_batch_tokens };
            check_spec(model, &spec)
                .with_context(|| format!("invalid cell --ctx {ctx} --batch {batch}"))?;
            out.push(spec);
        }
    }
    Ok(out)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(args: &ProfileArgs) -> Result<()> {
    let (prices, watts_per_core) = prices(args)?;
    let draft = RunDraft::start("profile", Some(&args.run.model));
    let m = Loaded::open(&args.run)?;
    let specs = cells(args, &m.model)?;
    let energy = EnergyModel::detect(watts_per_core);
    let first = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
    // The engine's default sampling settings, seeded.
    let mut sampler = Sampler::new(SamplerConfig { seed: args.seed, ..SamplerConfig::default() })?;
    let mut sample = |l: &[f32], h: &[u32]| sampler.sample(l, h);

    // Warm-up: page in every weight and grow the buffers, untimed.
    let warm = CellSpec {
        ctx: 64.min(m.model.config.context_length - 4),
        batch: 1,
        gen: 4,
        max_batch_tokens: 64,
    };
    run_cell(&m.model, &m.pool, warm, first, args.seed, &mut sample, &mut |_, _| {})
        .context("warm-up failed")?;

    let mut cells: Vec<Cell> = Vec::with_capacity(specs.len());
    for spec in specs {
        let bar = progress::bar(1, "{msg:>16} {bar:30} {pos}/{len} calls [{elapsed}]");
        bar.set_message(format!("ctx {} × {}", spec.ctx, spec.batch));
        let run = run_cell(&m.model, &m.pool, spec, first, args.seed, &mut sample, &mut |d, t| {
            bar.set_length(t as u64);
            bar.set_position(d as u64);
        })
        .with_context(|| format!("cell ctx {} batch {} failed", spec.ctx, spec.batch))?;
        bar.finish_and_clear();
        cells.push(run.into_cell(&energy, &prices));
    }

    let report = ProfileReport {
        schema: PROFILE_SCHEMA.into(),
        model: ModelInfo {
            path: args.run.model.display().to_string(),
            architecture: m.file.architecture().unwrap_or("?").to_string(),
            parameters: m.file.tensors().iter().map(|t| t.n_elements()).sum(),
            weight_bytes: m.file.tensors().iter().map(|t| t.n_bytes).sum(),
            n_layer: m.model.config.n_layer,
            context_length: m.model.config.context_length,
        },
        threads: m.pool.n_threads(),
        isa: format!("{:?}", Isa::best()).to_lowercase(),
        cells,
        memory: Memory {
            peak_rss_bytes: peak_rss_bytes(),
            weights_by_format: weights_by_format(&m),
            kv_bytes_per_token: KvCache::token_bytes(&m.model.config) as u64,
        },
        energy_source: energy.source(),
        prices,
    };
    let json = serde_json::to_value(&report).context("cannot serialize the profile")?;
    if args.json {
        println!("{json}");
    } else {
        print_tables(&report);
    }
    if let Some(path) = &args.html {
        let page = render_profile(&report).context("cannot render the HTML report")?;
        write_atomic(path, page.as_bytes())?;
        eprintln!("report: {}", path.display());
    }
    draft.record(&args.store, metrics(&report), &json);
    Ok(())
}

/// Tensor bytes by storage format, largest first.
fn weights_by_format(m: &Loaded) -> Vec<FormatBytes> {
    let mut by: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in m.file.tensors() {
        let e = by.entry(t.ty.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    let mut v: Vec<FormatBytes> = by
        .into_iter()
        .map(|(format, (tensors, bytes))| FormatBytes { format, tensors, bytes })
        .collect();
    v.sort_by_key(|f| std::cmp::Reverse(f.bytes));
    v
}

fn pct(part: f64, total: f64) -> String {
    if total > 0.0 {
        format!("{:.1}%", 100.0 * part / total)
    } else {
        "-".into()
    }
}

fn ms(s: f64) -> String {
    format!("{:.1}", s * 1e3)
}

#[allow(clippy::print_stdout)]
fn print_tables(r: &ProfileReport) {
    let model_name = std::path::Path::new(&r.model.path)
        .file_name()
        .map_or_else(|| r.model.path.clone(), |n| n.to_string_lossy().into_owned());
    println!(
        "{model_name} ({}, {:.1} M params, {}), {} threads, cpu {}",
        r.model.architecture,
        r.model.parameters as f64 / 1e6,
        human_bytes(r.model.weight_bytes),
        r.threads,
        r.isa
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "ctx",
        "batch",
        "prefill t/s",
        "decode t/s",
        "TTFT ms",
        "step p50/p90/p99 ms",
        "attention % pp/tg",
        "KV",
        "Wh/1k tok",
        "$/1M tok",
        "$/query",
        "gCO2/1k tok",
    ]);
    for c in &r.cells {
        t.add_row(vec![
            c.ctx.to_string(),
            c.batch.to_string(),
            format!("{:.1}", c.prefill_tokens_per_s),
            format!("{:.1}", c.decode_tokens_per_s),
            ms(c.ttft_s),
            format!(
                "{} / {} / {}",
                ms(c.step_latency.p50),
                ms(c.step_latency.p90),
                ms(c.step_latency.p99)
            ),
            format!(
                "{:.0} / {:.0}",
                100.0 * c.prefill_time.attention_share(),
                100.0 * c.decode_time.attention_share()
            ),
            human_bytes(c.kv_bytes),
            format!("{:.3}", c.energy.wh_per_1k_tokens),
            format!("{:.3}", c.cost.usd_per_1m_tokens),
            format!("{:.2e}", c.cost.usd_per_query),
            format!("{:.3}", c.cost.gco2_per_1k_tokens),
        ]);
    }
    println!("{t}");

    println!("where time goes (share of each phase's wall time):");
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["ctx".to_string(), "batch".into(), "phase".into()];
    header.extend(r.cells.first().map_or_else(Vec::new, |c| {
        c.prefill_time.parts().iter().map(|(n, _)| n.to_string()).collect()
    }));
    t.set_header(header);
    for c in &r.cells {
        for (phase, share) in [("prefill", &c.prefill_time), ("decode", &c.decode_time)] {
            let total = share.total_s();
            let mut row = vec![c.ctx.to_string(), c.batch.to_string(), phase.to_string()];
            row.extend(share.parts().iter().map(|(_, s)| pct(*s, total)));
            t.add_row(row);
        }
    }
    println!("{t}");

    if let Some(c) = r.cells.iter().max_by_key(|c| (c.ctx, c.batch)) {
        let total: f64 = c.layers.iter().map(|l| l.attention_s + l.mlp_s + l.norms_s).sum();
        let per_layer: Vec<String> =
            c.layers.iter().map(|l| pct(l.attention_s + l.mlp_s + l.norms_s, total)).collect();
        println!(
            "time by layer at ctx {} × {} (layers 0..{}): {}",
            c.ctx,
            c.batch,
            c.layers.len(),
            per_layer.join(" ")
        );
    }
    let weights: Vec<String> = r
        .memory
        .weights_by_format
        .iter()
        .map(|f| format!("{} {} ({} tensors)", f.format, human_bytes(f.bytes), f.tensors))
        .collect();
    println!("weights: {}", weights.join(", "));
    println!(
        "KV cache: {} per token (f16, all layers); {} at ctx {} + gen for one sequence",
        human_bytes(r.memory.kv_bytes_per_token),
        human_bytes(
            r.memory.kv_bytes_per_token
                * r.cells.iter().map(|c| (c.ctx + c.gen) as u64).max().unwrap_or(0)
        ),
        r.cells.iter().map(|c| c.ctx).max().unwrap_or(0)
    );
    if let Some(rss) = r.memory.peak_rss_bytes {
        println!("peak resident memory: {}", human_bytes(rss));
    }
    println!("energy: {}", r.energy_source.detail);
    println!(
        "prices: {} $/h machine, {} $/kWh, {} gCO2/kWh",
        r.prices.usd_per_hour, r.prices.usd_per_kwh, r.prices.grid_gco2_per_kwh
    );
}

/// What the store keeps: per cell (`@CTXxBATCH`), prefill and decode t/s (decode with the standard
/// error of its steps), TTFT, step p99, the attention shares, energy and cost; and the peak RSS.
fn metrics(r: &ProfileReport) -> Vec<Metric> {
    let mut out = Vec::new();
    for c in &r.cells {
        let at = format!("@{}x{}", c.ctx, c.batch);
        let rates: Vec<f64> =
            c.step_latencies_s.iter().map(|s| c.batch as f64 / s.max(1e-12)).collect();
        let decode_se = llmopt_profile::Summary::of(&rates)
            .filter(|_| rates.len() >= 2)
            .map(|s| s.sd / (rates.len() as f64).sqrt());
        out.push(Metric::new(
            format!("prefill{at}"),
            c.prefill_tokens_per_s,
            "t/s",
            Better::Higher,
        ));
        out.push(Metric {
            stderr: decode_se,
            ..Metric::new(format!("decode{at}"), c.decode_tokens_per_s, "t/s", Better::Higher)
        });
        out.push(Metric::new(format!("ttft{at}"), c.ttft_s * 1e3, "ms", Better::Lower));
        out.push(Metric::new(
            format!("step_p99{at}"),
            c.step_latency.p99 * 1e3,
            "ms",
            Better::Lower,
        ));
        out.push(Metric::new(
            format!("attention_share_prefill{at}"),
            100.0 * c.prefill_time.attention_share(),
            "%",
            Better::None,
        ));
        out.push(Metric::new(
            format!("attention_share_decode{at}"),
            100.0 * c.decode_time.attention_share(),
            "%",
            Better::None,
        ));
        out.push(Metric::new(
            format!("wh_per_1k{at}"),
            c.energy.wh_per_1k_tokens,
            "Wh",
            Better::Lower,
        ));
        out.push(Metric::new(
            format!("usd_per_1m{at}"),
            c.cost.usd_per_1m_tokens,
            "$",
            Better::Lower,
        ));
    }
    if let Some(rss) = r.memory.peak_rss_bytes {
        out.push(Metric::new("peak_rss", rss as f64 / 1e6, "MB", Better::Lower));
    }
    out
}
