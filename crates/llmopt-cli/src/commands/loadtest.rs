//! `llmopt loadtest`: concurrent streamed chat requests against an OpenAI-compatible server, one
//! level per concurrency; a table per level (or `--json`); Ctrl-C reports what finished.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::ProgressBar;
use llmopt_loadtest::{LevelReport, LoadConfig, LoadReport, RequestRecord, Stop};

use crate::{cli::LoadtestArgs, progress};

/// MT-Bench's questions as scripts/setup installs them, relative to the working directory.
const DEFAULT_PROMPTS: &str = "data/mt-bench/question.jsonl";

fn config(args: &LoadtestArgs) -> Result<LoadConfig> {
    let stop = match (args.requests, args.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(s)) if s.is_finite() && s > 0.0 => Stop::Duration(Duration::from_secs_f64(s)),
        (None, Some(s)) => anyhow::bail!("invalid --duration {s}: must be a number of seconds > 0"),
        (None, None) => Stop::PerClient(4),
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        anyhow::bail!("invalid --timeout {}: must be a number of seconds > 0", args.timeout);
    }
    let system = match &args.system {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the system prompt {}", p.display()))?,
        ),
        None => None,
    };
    let cfg = LoadConfig {
        url: args.url.clone(),
        model: args.model.clone(),
        concurrency: args.concurrency.clone(),
        stop,
        warmup: args.warmup,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        system,
        api_key: args.api_key.clone(),
        timeout: Duration::from_secs_f64(args.timeout),
    };
    cfg.validate()?;
    Ok(cfg)
}

fn prompts(args: &LoadtestArgs) -> Result<Vec<String>> {
    let path = args.prompts.clone().unwrap_or_else(|| DEFAULT_PROMPTS.into());
    llmopt_loadtest::read_prompts(&path).map_err(|e| {
        let hint = if args.prompts.is_none() {
            "\nhint: run scripts/setup (it installs MT-Bench's questions), or pass --prompts FILE"
        } else {
            ""
        };
        anyhow::anyhow!("{e}{hint}")
    })
}

/// A bar over all requests when their number is known, else a counter.
fn progress_bar(cfg: &LoadConfig) -> ProgressBar {
    let total: Option<usize> = match cfg.stop {
        Stop::Requests(n) => Some(n * cfg.concurrency.len()),
        Stop::PerClient(k) => Some(cfg.concurrency.iter().map(|c| c * k).sum()),
        Stop::Duration(_) => None,
    };
    match total {
        Some(n) => progress::bar(n as u64, "{bar:30} {pos}/{len} requests {msg} [{elapsed}]"),
        None => progress::bar(0, "{pos} requests {msg} [{elapsed}]"),
    }
}

/// Exit code when any request failed (the report is printed either way).
const REQUESTS_FAILED: u8 = 3;

/// Runs the test; the exit code is 3 when any request failed.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(args: &LoadtestArgs) -> Result<ExitCode> {
    let cfg = config(args)?;
    let prompts = prompts(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bar = progress_bar(&cfg);
    let report = runtime.block_on(async {
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: reporting what finished (Ctrl-C again quits at once)");
                let _ = cancel_tx.send(true);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let b = bar.clone();
        let levels = cfg.concurrency.clone();
        let on_done = Arc::new(move |level: usize, r: &RequestRecord| {
            b.set_message(format!("(concurrency {})", levels[level]));
            if r.error.is_some() {
                b.println(format!("error: {}", r.error.as_deref().unwrap_or("")));
            }
            b.inc(1);
        });
        llmopt_loadtest::run(&cfg, prompts, cancel_rx, on_done).await
    });
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string(&report).context("cannot write the JSON report")?);
    } else {
        print_tables(&report);
    }
    let errors: usize = report.levels.iter().map(|l| l.errors).sum();
    if errors > 0 {
        eprintln!(
            "error: {errors} request(s) failed (their messages are in the report; exit code 3)"
        );
        return Ok(ExitCode::from(REQUESTS_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(s: f64) -> String {
    format!("{:.0}", s * 1000.0)
}

fn level_row(l: &LevelReport) -> Vec<String> {
    vec![
        format!("{}{}", l.concurrency, if l.interrupted { " (cut)" } else { "" }),
        format!("{} / {}", l.ok, l.errors),
        format!("{:.1}", l.output_tokens_per_s),
        format!("{:.2}", l.requests_per_s),
        format!("{} / {} / {}", ms(l.ttft_s.p50), ms(l.ttft_s.p90), ms(l.ttft_s.p99)),
        format!("{} / {}", ms(l.itl_s.p50), ms(l.itl_s.p99)),
        format!("{:.1}", l.tpot_s.mean * 1000.0),
        format!("{:.2} / {:.2}", l.e2e_s.p50, l.e2e_s.p99),
    ]
}

#[allow(clippy::print_stdout)]
fn print_tables(r: &LoadReport) {
    println!(
        "{} model {} · max_tokens {} · {} prompts{}",
        r.url,
        r.model,
        r.max_tokens,
        r.prompts,
        if r.system_prompt { " · shared system prompt" } else { "" }
    );
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "concurrency",
        "ok / errors",
        "output t/s",
        "req/s",
        "TTFT p50/p90/p99 ms",
        "ITL p50/p99 ms",
        "TPOT ms",
        "E2E p50/p99 s",
    ]);
    for l in &r.levels {
        table.add_row(level_row(l));
    }
    println!("{table}");
    for l in &r.levels {
        for (msg, n) in &l.error_samples {
            println!("concurrency {}: {n} x {msg}", l.concurrency);
        }
    }
}
