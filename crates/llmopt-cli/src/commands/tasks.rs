//! `llmopt eval tasks`: multiple-choice accuracy on OLMES request files. The files are read (and
//! checked) before the model loads; each task's questions are scored in shared-context batches
//! (`llmopt_eval::tasks`), with a progress bar, and reported as a table or one JSON object.

use std::{fs::File, path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_eval::{
    tasks::{read_questions, score_questions, summarize, tokenize_question, Question},
    ScoreConfig, TaskReport,
};

use crate::{cli::TasksArgs, load::Loaded, progress};

struct TaskResult {
    name: String,
    report: TaskReport,
    seconds: f64,
}

fn requests_path(args: &TasksArgs, task: &str) -> PathBuf {
    args.data.join(task).join(&args.regime).join("requests.jsonl.gz")
}

fn read_task(args: &TasksArgs, task: &str) -> Result<Vec<Question>> {
    let path = requests_path(args, task);
    if !path.exists() {
        let known = std::fs::read_dir(args.data.join(task)).is_ok();
        anyhow::bail!(
            "no requests for task {task:?} in regime {:?}: {} does not exist\nhint: {}",
            args.regime,
            path.display(),
            if known {
                format!("list {} for the regimes it has", args.data.join(task).display())
            } else {
                format!(
                    "task names are folders of {} (run `scripts/setup` if it is empty or missing)",
                    args.data.display()
                )
            }
        );
    }
    let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    read_questions(file, args.limit).with_context(|| format!("cannot read {}", path.display()))
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(args: &TasksArgs) -> Result<()> {
    if args.limit == Some(0) {
        anyhow::bail!("invalid --limit 0: must be at least 1");
    }
    let tasks: Vec<(String, Vec<Question>)> =
        args.tasks.iter().map(|t| Ok((t.clone(), read_task(args, t)?))).collect::<Result<_>>()?;
    let m = Loaded::open(&args.run)?;
    let tok = &m.tokenizer;
    let prefix = tok.bos().or(tok.eos());
    let cfg = ScoreConfig { batch_tokens: args.batch_tokens.max(1) };
    let mut results = Vec::new();
    for (name, questions) in &tasks {
        let mut encode = |s: &str| tok.encode(s, true, false);
        let tokenized = questions
            .iter()
            .map(|q| tokenize_question(q, &mut encode, prefix))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot tokenize task {name}"))?;
        let bar = progress::bar(
            tokenized.len() as u64,
            "{msg} {bar:30} {pos}/{len} questions [{elapsed} < {eta}]",
        );
        bar.set_message(name.clone());
        let start = Instant::now();
        let scores = score_questions(&m.model, &m.pool, &tokenized, &cfg, &mut |d, _| {
            bar.set_position(d as u64)
        })
        .with_context(|| format!("cannot score task {name}"))?;
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        results.push(TaskResult { name: name.clone(), report: summarize(&scores), seconds });
    }
    print(&results, args);
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print(results: &[TaskResult], args: &TasksArgs) {
    let tps = |r: &TaskResult| r.report.tokens as f64 / r.seconds.max(1e-9);
    if args.json {
        let tasks: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "task": r.name,
                    "regime": args.regime,
                    "questions": r.report.questions,
                    "acc": { "value": r.report.acc.value, "stderr": r.report.acc.stderr },
                    "acc_per_char": {
                        "value": r.report.acc_per_char.value,
                        "stderr": r.report.acc_per_char.stderr,
                    },
                    "tokens": r.report.tokens,
                    "seconds": r.seconds,
                    "tokens_per_s": tps(r),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "model": args.run.model.display().to_string(), "tasks": tasks })
        );
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["task", "questions", "acc %", "acc_per_char %", "tokens", "t/s"]);
    let pct =
        |e: llmopt_eval::Estimate| format!("{:.2} ± {:.2}", 100.0 * e.value, 100.0 * e.stderr);
    for r in results {
        table.add_row(vec![
            r.name.clone(),
            r.report.questions.to_string(),
            pct(r.report.acc),
            pct(r.report.acc_per_char),
            r.report.tokens.to_string(),
            format!("{:.1}", tps(r)),
        ]);
    }
    println!("{table}");
    println!("regime {} (OLMES requests); ± is the standard error sqrt(p(1-p)/n)", args.regime);
}
