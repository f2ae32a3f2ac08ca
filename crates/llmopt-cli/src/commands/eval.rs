//! `llmopt eval ...`: accuracy measurements. Perplexity, and with `--kl-base-out`/`--kl-base` the
//! KL divergence of a candidate from a base model's saved distributions (llama.cpp's method).

use std::{
    fs::File,
    io::{BufReader, BufWriter, Seek},
};

use anyhow::{Context, Result};
use llmopt_eval::{
    compare_with_base, perplexity as ppl, save_base, BaseHeader, Estimate, KldReport,
    PerplexityConfig, PerplexityReport,
};

use llmopt_store::{Better, Metric};

use crate::{cli::PerplexityArgs, load::Loaded, progress, record::RunDraft};

const DEFAULT_CTX: usize = 512;

/// Progress over chunks; the message carries the running figure.
const CHUNKS: &str = "{bar:30} {pos}/{len} chunks, {msg} [{elapsed} < {eta}]";

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn perplexity(args: &PerplexityArgs) -> Result<()> {
    let draft = RunDraft::start("eval.perplexity", Some(&args.run.model));
    let mut text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    llmopt_eval::strip_final_newline(&mut text);
    // Open the base before the model: a bad base file fails fast.
    let base = match &args.kl_base {
        Some(path) => Some((path, open_base(path)?)),
        None => None,
    };
    let ctx = match (&base, args.ctx) {
        (_, Some(c)) => c,
        (Some((_, b)), None) => b.header.ctx,
        (None, None) => DEFAULT_CTX,
    };
    let m = Loaded::open(&args.run)?;
    // llama.cpp tokenizes the whole text with the model's special-token rule (BOS when it adds one).
    let tokens = m.tokenizer.encode(&text, true, false);
    let bos = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
    let cfg = PerplexityConfig { ctx, max_chunks: args.chunks, bos };
    // With --kl-base the base fixes the chunks; a mismatch must be the first line on stderr.
    if !args.json && args.kl_base.is_none() && tokens.len() >= ctx {
        eprintln!(
            "{} tokens in {}; {} chunks of {} available",
            tokens.len(),
            args.file.display(),
            tokens.len() / ctx.max(1),
            ctx
        );
    }
    if let Some((path, mut b)) = base {
        // `compare_with_base` reads the header again, with the rest of the file.
        b.reader.rewind().with_context(|| format!("cannot read {}", path.display()))?;
        let bar = progress::bar(0, CHUNKS);
        let report = compare_with_base(
            &m.model,
            &m.pool,
            &tokens,
            &cfg,
            &mut b.reader,
            b.len,
            &mut |d, t, k| {
                bar.set_length(t as u64);
                bar.set_position(d as u64);
                bar.set_message(format!("running mean KLD {k:.6}"));
            },
        )
        .with_context(|| format!("cannot compare with the base {}", path.display()))?;
        bar.finish_and_clear();
        let json = kld_json(&report);
        print_kld(&report, args.json.then_some(&json));
        let metrics = vec![
            Metric::new("kld", report.kld.value, "nats", Better::Lower)
                .with_stderr(report.kld.stderr),
            Metric::new("kld_p99", report.kld_percentiles.p99, "nats", Better::Lower),
            Metric::new("top1", 100.0 * report.same_top.value, "%", Better::Higher)
                .with_stderr(100.0 * report.same_top.stderr),
            Metric::new("ppl", report.ppl.value, "", Better::Lower).with_stderr(report.ppl.stderr),
            Metric::new("ppl_ratio", report.ppl_ratio.value, "x", Better::Lower)
                .with_stderr(report.ppl_ratio.stderr),
        ];
        draft.record(&args.store, metrics, &json);
        return Ok(());
    }
    let bar = progress::bar(0, CHUNKS);
    let mut on_chunk = |done: usize, total: usize, running: f64| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("running PPL {running:.4}"));
    };
    let report = match &args.kl_base_out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            save_base(&m.model, &m.pool, &tokens, &cfg, &mut out, &mut on_chunk)
                .with_context(|| format!("cannot save the base {}", path.display()))?
        }
        None => ppl(&m.model, &m.pool, &tokens, &cfg, &mut on_chunk)?,
    };
    bar.finish_and_clear();
    let json = ppl_json(&report, ctx, args);
    print_ppl(&report, ctx, args, &json);
    let ppl = Metric::new("ppl", report.perplexity, "", Better::Lower).with_stderr(report.stderr);
    draft.record(&args.store, vec![ppl], &json);
    Ok(())
}

/// A saved base, opened and its header checked against the file's length.
struct Base {
    reader: BufReader<File>,
    header: BaseHeader,
    len: Option<u64>,
}

fn open_base(path: &std::path::Path) -> Result<Base> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = file.metadata().ok().map(|m| m.len());
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let header = BaseHeader::read(&mut reader, len)
        .with_context(|| format!("cannot use {} as a KL-divergence base", path.display()))?;
    Ok(Base { reader, header, len })
}

fn ppl_json(report: &PerplexityReport, ctx: usize, args: &PerplexityArgs) -> serde_json::Value {
    let mut v = serde_json::json!({
        "perplexity": report.perplexity,
        "stderr": report.stderr,
        "tokens_scored": report.tokens_scored,
        "chunks": report.chunks,
        "ctx": ctx,
        "running": report.running,
    });
    if let Some(p) = &args.kl_base_out {
        v["kl_base_out"] = p.display().to_string().into();
    }
    v
}

#[allow(clippy::print_stdout)]
fn print_ppl(
    report: &PerplexityReport,
    ctx: usize,
    args: &PerplexityArgs,
    json: &serde_json::Value,
) {
    if args.json {
        println!("{json}");
    } else {
        let running: Vec<String> =
            report.running.iter().enumerate().map(|(i, p)| format!("[{}]{p:.4}", i + 1)).collect();
        println!("{}", running.join(","));
        println!(
            "Final estimate: PPL = {:.4} +/- {:.5} ({} tokens scored in {} chunks of {})",
            report.perplexity, report.stderr, report.tokens_scored, report.chunks, ctx
        );
        if let Some(p) = &args.kl_base_out {
            println!("Saved the scored tokens' distributions to {}", p.display());
        }
    }
}

fn est(e: Estimate) -> serde_json::Value {
    serde_json::json!({ "value": e.value, "stderr": e.stderr })
}

fn kld_json(r: &KldReport) -> serde_json::Value {
    let k = &r.kld_percentiles;
    serde_json::json!({
            "tokens_scored": r.tokens_scored,
            "chunks": r.chunks,
            "ctx": r.ctx,
            "ppl": est(r.ppl),
            "ppl_base": est(r.ppl_base),
            "cor_ln_ppl": r.cor_ln_ppl,
            "ln_ppl_ratio": est(r.ln_ppl_ratio),
            "ppl_ratio": est(r.ppl_ratio),
            "ppl_diff": est(r.ppl_diff),
            "kld": est(r.kld),
            "kld_percentiles": {
                "max": k.max, "p99_9": k.p99_9, "p99": k.p99, "p95": k.p95, "p90": k.p90,
                "median": k.median, "p10": k.p10, "p5": k.p5, "p1": k.p1, "p0_1": k.p0_1,
                "min": k.min,
            },
            "same_top": est(r.same_top),
            "p_diff": est(r.p_diff),
            "p_diff_rms": est(r.p_diff_rms),
            "running_kld": r.running_kld,
    })
}

#[allow(clippy::print_stdout)]
fn print_kld(r: &KldReport, json: Option<&serde_json::Value>) {
    if let Some(v) = json {
        println!("{v}");
        return;
    }
    let k = &r.kld_percentiles;
    let pm = |e: Estimate| format!("{:10.6} ± {:10.6}", e.value, e.stderr);
    println!("{} tokens scored in {} chunks of {}", r.tokens_scored, r.chunks, r.ctx);
    println!("====== Perplexity statistics ======");
    println!("Mean PPL(Q)                   : {}", pm(r.ppl));
    println!("Mean PPL(base)                : {}", pm(r.ppl_base));
    println!("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%", 100.0 * r.cor_ln_ppl);
    println!("Mean ln(PPL(Q)/PPL(base))     : {}", pm(r.ln_ppl_ratio));
    println!("Mean PPL(Q)/PPL(base)         : {}", pm(r.ppl_ratio));
    println!("Mean PPL(Q)-PPL(base)         : {}", pm(r.ppl_diff));
    println!();
    println!("====== KL divergence statistics ======");
    println!("Mean    KLD: {}", pm(r.kld));
    for (name, v) in [
        ("Maximum KLD", k.max),
        ("99.9%   KLD", k.p99_9),
        ("99.0%   KLD", k.p99),
        ("95.0%   KLD", k.p95),
        ("90.0%   KLD", k.p90),
        ("Median  KLD", k.median),
        ("10.0%   KLD", k.p10),
        (" 5.0%   KLD", k.p5),
        (" 1.0%   KLD", k.p1),
        (" 0.1%   KLD", k.p0_1),
        ("Minimum KLD", k.min),
    ] {
        println!("{name}: {v:10.6}");
    }
    println!();
    println!("====== Token probability statistics ======");
    let pct = |e: Estimate| format!("{:6.3} ± {:5.3} %", 100.0 * e.value, 100.0 * e.stderr);
    println!("Mean    Δp: {}", pct(r.p_diff));
    println!("RMS Δp    : {}", pct(r.p_diff_rms));
    println!("Same top p: {}", pct(r.same_top));
}
