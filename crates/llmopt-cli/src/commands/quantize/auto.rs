//! `quantize --plan auto`: the budget checked before any work; then each tensor's predicted error
//! per candidate format (the importance-weighted proxy, scaled by the measured KL divergence of
//! that tensor alone quantized), the allocation under the budget, and its table and JSON.

use std::{collections::HashMap, io::Write, path::Path, time::Instant};

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_formats::gguf::{GgufFile, TensorInfo};
use llmopt_quant::{
    rules::Choice,
    sensitivity::{measure_all, proxy_all, spearman, KldProbe},
    AutoSpace, Budget, Plan,
};
use llmopt_tensor::GgmlType;
use serde_json::{json, Value};

use super::{file_name, importance::Importance};
use crate::{
    atomic_file::AtomicFile,
    cli::{QuantizeArgs, RunArgs},
    load::Loaded,
    progress,
    units::human_bytes,
};

/// Rows per tensor the proxy encodes (evenly spaced; the sum is scaled to all rows).
const PROXY_ROWS: usize = 512;

/// A `--plan auto` plan and how it was made.
pub struct AutoPlan {
    pub plan: Plan,
    /// Rank correlation of the unscaled proxy with the measured KL divergence, over the tensors.
    pub spearman: Option<f64>,
    /// The format each tensor was measured in, with the measured KL divergence.
    pub measured: Vec<(String, GgmlType, f64)>,
    pub seconds: f64,
}

/// The budget of `--plan auto` (`None` without it); the flags must fit it.
pub fn budget(args: &QuantizeArgs) -> Result<Option<Budget>> {
    let a = &args.auto;
    if a.plan.is_none() {
        return Ok(None);
    }
    if args.method == crate::cli::Method::Rtn {
        anyhow::bail!(
            "--plan auto needs importance data: --method imatrix, gptq or awq (with --calib)"
        );
    }
    if a.sensitivity == "measured" && a.sensitivity_text.is_none() && args.calib.is_none() {
        anyhow::bail!(
            "--sensitivity measured runs the model on text: give --calib FILE or \
             --sensitivity-text FILE, or use --sensitivity proxy"
        );
    }
    if let Some(f) = a.plan_formats.iter().find(|f| !f.is_quantized()) {
        anyhow::bail!("--plan-formats: {} is not a block format", f.name());
    }
    if a.sensitivity_chunks == 0 {
        anyhow::bail!("invalid --sensitivity-chunks 0: must be at least 1");
    }
    match (a.target_size, a.bpw) {
        (Some(mb), None) if mb.is_finite() && mb > 0.0 => {
            Ok(Some(Budget::FileBytes((mb * 1e6) as u64)))
        }
        (None, Some(b)) if b.is_finite() && b > 0.0 => Ok(Some(Budget::Bpw(b))),
        (None, None) => anyhow::bail!("--plan auto needs a budget: --target-size MB or --bpw B"),
        _ => anyhow::bail!("invalid budget: --target-size and --bpw must be positive numbers"),
    }
}

/// The tensors `--plan auto` chooses for, with the budget checked (before any work).
pub fn space(src: &GgufFile, args: &QuantizeArgs, budget: Budget) -> Result<AutoSpace> {
    let space = AutoSpace::new(src, args.keep.clone(), &args.auto.plan_formats)
        .with_context(|| format!("cannot quantize {}", args.model.display()))?;
    space
        .budget_bytes(budget)
        .with_context(|| format!("cannot quantize {}", args.model.display()))?;
    Ok(space)
}

/// Predicts each candidate's error and allocates under the budget.
#[allow(clippy::print_stderr)]
pub fn make_plan(
    args: &QuantizeArgs,
    src: &GgufFile,
    space: &AutoSpace,
    budget: Budget,
    importance: &Importance,
    threads: usize,
) -> Result<AutoPlan> {
    let started = Instant::now();
    let jobs: Vec<(&TensorInfo, Vec<GgmlType>)> =
        space.slots.iter().enumerate().map(|(s, (_, f))| (space.tensor(s), f.clone())).collect();
    let bar = progress::bar(jobs.len() as u64, "{bar:30} {pos}/{len} tensors, proxy errors");
    let proxy = proxy_all(src, &jobs, Some(&importance.imatrix), PROXY_ROWS, threads, &|d, _| {
        bar.set_position(d as u64)
    })?;
    bar.finish_and_clear();
    let mut errors = proxy.clone();
    let (mut rho, mut measured) = (None, Vec::new());
    if args.auto.sensitivity == "measured" {
        let probe_of = |f: &[GgmlType]| {
            let k = f.iter().position(|&t| t == GgmlType::Q4_0).unwrap_or(0);
            (k, f[k])
        };
        let kld = measure(args, &jobs, importance, threads, &probe_of)?;
        let mut at_probe = Vec::with_capacity(jobs.len());
        for (s, ((info, formats), &k)) in jobs.iter().zip(&kld).enumerate() {
            let (c, ty) = probe_of(formats);
            let base = proxy[s][c];
            let scale = if base > 0.0 { k.max(0.0) / base } else { 0.0 };
            errors[s] = proxy[s].iter().map(|e| e * scale).collect();
            at_probe.push(base);
            measured.push((info.name.clone(), ty, k));
        }
        let r = spearman(&at_probe, &kld);
        eprintln!(
            "sensitivity: Spearman rank correlation of the proxy with the measured KL divergence \
             over {} tensors: {r:.3}",
            kld.len()
        );
        rho = Some(r);
    }
    let plan = space.plan(&errors, budget, &args.auto.sensitivity, true)?;
    Ok(AutoPlan { plan, spearman: rho, measured, seconds: started.elapsed().as_secs_f64() })
}

/// The KL divergence on the first `--sensitivity-chunks` chunks of `--calib` with each tensor
/// alone in its probe format.
#[allow(clippy::print_stderr)]
fn measure(
    args: &QuantizeArgs,
    jobs: &[(&TensorInfo, Vec<GgmlType>)],
    importance: &Importance,
    threads: usize,
    probe_of: &dyn Fn(&[GgmlType]) -> (usize, GgmlType),
) -> Result<Vec<f64>> {
    let calib = args.auto.sensitivity_text.as_ref().or(args.calib.as_ref());
    let calib = calib.context("--sensitivity measured needs --calib or --sensitivity-text")?;
    let mut text = std::fs::read_to_string(calib)
        .with_context(|| format!("cannot read {}", calib.display()))?;
    llmopt_eval::strip_final_newline(&mut text);
    let run = RunArgs {
        model: args.model.clone(),
        threads: Some(threads),
        no_repack: true,
        kv: Default::default(),
    };
    let mut m = Loaded::open(&run)?;
    let tokens = m.tokenizer.encode(&text, true, false);
    let bos = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
    let (chunks, ctx) = (args.auto.sensitivity_chunks, args.auto.sensitivity_ctx);
    let probe = KldProbe::new(&m.model, &m.pool, &tokens, ctx, chunks, bos)?;
    eprintln!(
        "sensitivity: KL divergence with each of {} tensors alone quantized, on {} tokens of {}",
        jobs.len(),
        chunks.min(tokens.len() / ctx.max(1)) * ctx,
        calib.display()
    );
    let probes: Vec<(&TensorInfo, GgmlType)> =
        jobs.iter().map(|(t, f)| (*t, probe_of(f).1)).collect();
    let header = format!(
        "# llmopt quantize --plan auto sensitivity: source {} {} bytes, calib {} {} bytes, {} \
         chunks of {ctx}",
        file_name(&args.model),
        m.file.file_len(),
        file_name(calib),
        text.len(),
        chunks
    );
    let cache = args.auto.sensitivity_cache.as_deref();
    if let Some(kld) = cache.and_then(|p| read_cache(p, &header, &probes)) {
        eprintln!(
            "sensitivity: reusing {}",
            cache.map_or(String::new(), |p| p.display().to_string())
        );
        return Ok(kld);
    }
    let bar = progress::bar(probes.len() as u64, "{bar:30} {pos}/{len} tensors, measuring");
    let file = m.file.clone();
    let kld = measure_all(
        &mut m.model,
        &m.pool,
        &probe,
        &file,
        &probes,
        Some(&importance.imatrix),
        &mut |d, _| bar.set_position(d as u64),
    )?;
    bar.finish_and_clear();
    if let Some(path) = cache {
        let mut f = AtomicFile::create(path)?;
        let mut out = format!("{header}\n");
        for ((t, ty), k) in probes.iter().zip(&kld) {
            out.push_str(&format!("{} {} {k:e}\n", t.name, ty.name()));
        }
        f.writer()
            .write_all(out.as_bytes())
            .with_context(|| format!("cannot write {}", f.temp_path().display()))?;
        f.commit()?;
        eprintln!("sensitivity: saved to {}", path.display());
    }
    Ok(kld)
}

/// The measured sensitivities a cache file holds for `probes`, when it was made for the same
/// model, text and chunks (`header`) and holds every one of them.
fn read_cache(path: &Path, header: &str, probes: &[(&TensorInfo, GgmlType)]) -> Option<Vec<f64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != header {
        return None;
    }
    let rows: HashMap<(&str, &str), f64> = lines
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(((w.next()?, w.next()?), w.next()?.parse().ok()?))
        })
        .collect();
    probes.iter().map(|(t, ty)| rows.get(&(t.name.as_str(), ty.name())).copied()).collect()
}

/// The plan's tensors that `--plan auto` chose, with their rows for the table and JSON.
fn chosen(plan: &Plan) -> impl Iterator<Item = &llmopt_quant::TensorPlan> {
    plan.tensors.iter().filter(|t| t.choice == Choice::Auto || matches!(t.choice, Choice::Keep(_)))
}

/// The plan as a table: one row per chosen or kept tensor, then the totals.
#[allow(clippy::print_stdout)]
pub fn print(a: &AutoPlan) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["tensor", "shape", "format", "predicted", "bytes"]);
    for p in chosen(&a.plan) {
        let shape = p.shape.iter().map(u64::to_string).collect::<Vec<_>>().join("x");
        let how = if p.choice == Choice::Auto { "" } else { " (--keep)" };
        t.add_row(vec![
            p.name.clone(),
            shape,
            format!("{}{how}", p.target.name()),
            p.predicted.map_or("-".into(), |e| format!("{e:.3e}")),
            human_bytes(p.target_bytes().unwrap_or(0)),
        ]);
    }
    println!("{t}");
    if let Some(s) = &a.plan.auto {
        println!(
            "plan auto for {}: tensor data {} of {} allowed, predicted {} {:.4}{}",
            s.budget,
            human_bytes(s.bytes),
            human_bytes(s.budget_bytes),
            if s.sensitivity == "measured" { "KLD" } else { "proxy error" },
            s.predicted,
            a.spearman.map_or(String::new(), |r| format!(" (proxy vs measured Spearman {r:.3})"))
        );
    }
}

/// The plan for `--json`.
pub fn json(a: &AutoPlan) -> Value {
    let s = a.plan.auto.as_ref();
    let tensors: Vec<Value> = chosen(&a.plan)
        .map(|p| {
            json!({
                "name": p.name,
                "shape": p.shape,
                "format": p.target.name(),
                "kept": matches!(p.choice, Choice::Keep(_)),
                "predicted": p.predicted,
                "bytes": p.target_bytes().ok(),
            })
        })
        .collect();
    json!({
        "budget": s.map(|s| match s.budget {
            Budget::FileBytes(b) => json!({ "file_bytes": b }),
            Budget::Bpw(b) => json!({ "bits_per_weight": b }),
        }),
        "budget_tensor_bytes": s.map(|s| s.budget_bytes),
        "tensor_bytes": s.map(|s| s.bytes),
        "predicted": s.map(|s| s.predicted),
        "sensitivity": s.map(|s| s.sensitivity.clone()),
        "spearman": a.spearman,
        "measured": a.measured.iter().map(|(n, t, k)| json!({ "tensor": n, "format": t.name(), "kld": k })).collect::<Vec<_>>(),
        "seconds": a.seconds,
        "tensors": tensors,
    })
}
