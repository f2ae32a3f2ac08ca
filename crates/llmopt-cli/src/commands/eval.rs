//! `llmopt eval ...`: accuracy measurements. Today: perplexity.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use llmopt_eval::{perplexity as ppl, PerplexityConfig};

use crate::{cli::PerplexityArgs, load::Loaded};

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn perplexity(args: &PerplexityArgs) -> Result<()> {
    let mut text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    llmopt_eval::strip_final_newline(&mut text);
    let m = Loaded::open(&args.run.model, args.run.threads)?;
    // llama.cpp tokenizes the whole text with the model's special-token rule (BOS when it adds one).
    let tokens = m.tokenizer.encode(&text, true, false);
    let bos = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
    let cfg = PerplexityConfig { ctx: args.ctx, max_chunks: args.chunks, bos };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} chunks, {msg} [{elapsed} < {eta}]")
            .expect("valid template"),
    );
    if !args.json && tokens.len() >= args.ctx {
        eprintln!(
            "{} tokens in {}; {} chunks of {} available",
            tokens.len(),
            args.file.display(),
            tokens.len() / args.ctx.max(1),
            args.ctx
        );
    }
    let report = ppl(&m.model, &m.pool, &tokens, &cfg, &mut |done, total, running| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("running PPL {running:.4}"));
    })?;
    bar.finish_and_clear();
    if args.json {
        let v = serde_json::json!({
            "perplexity": report.perplexity,
            "stderr": report.stderr,
            "tokens_scored": report.tokens_scored,
            "chunks": report.chunks,
            "ctx": args.ctx,
            "running": report.running,
        });
        println!("{v}");
    } else {
        let running: Vec<String> =
            report.running.iter().enumerate().map(|(i, p)| format!("[{}]{p:.4}", i + 1)).collect();
        println!("{}", running.join(","));
        println!(
            "Final estimate: PPL = {:.4} +/- {:.5} ({} tokens scored in {} chunks of {})",
            report.perplexity, report.stderr, report.tokens_scored, report.chunks, args.ctx
        );
    }
    Ok(())
}
