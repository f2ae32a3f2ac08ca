//! `llmopt eval tasks`: task accuracy by log-likelihood. Every task's questions are planned and
//! read (and checked) before the model loads (`tasks/source.rs`); each task is then scored in
//! shared-context batches (`llmopt_eval::tasks`), with a progress bar, and reported as a table or
//! one JSON object. Which figures a task has comes from its report (its kind's metrics), so the
//! table's columns are the metrics the tasks of this run report, in order of first appearance.

pub(super) mod source;

use std::time::Instant;

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_eval::{
    tasks::{
        score_questions, summarize, tokenize_question, Metric, Question, QuestionScores, TaskKind,
    },
    Estimate, ScoreConfig, TaskReport,
};
use llmopt_store::{Better, Metric as StoreMetric};
use serde_json::{json, Map, Value};

use crate::{cli::TasksArgs, load::Loaded, progress, record::RunDraft};

struct TaskResult {
    name: String,
    regime: String,
    report: TaskReport,
    /// MMLU: the figures per subject, in order of first appearance.
    subjects: Vec<(String, TaskReport)>,
    seconds: f64,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(args: &TasksArgs) -> Result<()> {
    let draft = RunDraft::start("eval.tasks", Some(&args.run.model));
    if args.source.limit == Some(0) {
        anyhow::bail!("invalid --limit 0: must be at least 1");
    }
    let plans = source::plan(&args.tasks, &args.source)?;
    let tasks = plans
        .iter()
        .map(|p| Ok((p, source::read(&args.source, p)?)))
        .collect::<Result<Vec<_>>>()?;
    let m = Loaded::open(&args.run)?;
    let cfg = ScoreConfig { batch_tokens: args.batch_tokens.max(1) };
    let mut results = Vec::new();
    for (plan, task) in &tasks {
        let name = &plan.name;
        let start = Instant::now();
        let scores = score_task(&m, name, &task.questions, &cfg, name)?;
        let seconds = start.elapsed().as_secs_f64();
        let subjects = match &task.subjects {
            Some(s) => by_group(task.kind, &scores, s),
            None => Vec::new(),
        };
        results.push(TaskResult {
            name: name.clone(),
            regime: plan.regime(),
            report: summarize(task.kind, &scores),
            subjects,
            seconds,
        });
    }
    let json = results_json(&results, args);
    print(&results, args, &json);
    draft.record(&args.store, store_metrics(&results), &json);
    Ok(())
}

/// Tokenizes a task's questions for `m` and scores them, with a progress bar labelled `label`.
pub(super) fn score_task(
    m: &Loaded,
    name: &str,
    questions: &[Question],
    cfg: &ScoreConfig,
    label: &str,
) -> Result<Vec<QuestionScores>> {
    let tok = &m.tokenizer;
    let prefix = tok.bos().or(tok.eos());
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
    bar.set_message(label.to_string());
    let scores =
        score_questions(&m.model, &m.pool, &tokenized, cfg, &mut |d, _| bar.set_position(d as u64))
            .with_context(|| format!("cannot score task {name}"))?;
    bar.finish_and_clear();
    Ok(scores)
}

/// The report of each group's questions (`groups[i]` is question i's), groups in order of first
/// appearance.
fn by_group(
    kind: TaskKind,
    scores: &[QuestionScores],
    groups: &[String],
) -> Vec<(String, TaskReport)> {
    let mut names: Vec<&String> = Vec::new();
    for g in groups {
        if !names.contains(&g) {
            names.push(g);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let mine: Vec<QuestionScores> = scores
                .iter()
                .zip(groups)
                .filter(|(_, g)| *g == name)
                .map(|(s, _)| s.clone())
                .collect();
            (name.clone(), summarize(kind, &mine))
        })
        .collect()
}

fn estimate_json(e: Estimate) -> Value {
    json!({ "value": e.value, "stderr": e.stderr })
}

/// A report's figures as JSON fields: `questions`, then each metric by name.
fn report_json(r: &TaskReport) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("questions".into(), r.questions.into());
    for &(m, e) in &r.metrics {
        o.insert(m.name().into(), estimate_json(e));
    }
    o
}

fn tokens_per_s(r: &TaskResult) -> f64 {
    r.report.tokens as f64 / r.seconds.max(1e-9)
}

/// The whole run as one JSON object (printed with `--json`, and kept by the run store).
fn results_json(results: &[TaskResult], args: &TasksArgs) -> Value {
    let tps = tokens_per_s;
    let tasks: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut o = Map::new();
            o.insert("task".into(), r.name.clone().into());
            o.insert("regime".into(), r.regime.clone().into());
            o.insert("kind".into(), r.report.kind.name().into());
            o.extend(report_json(&r.report));
            o.insert("tokens".into(), r.report.tokens.into());
            o.insert("seconds".into(), r.seconds.into());
            o.insert("tokens_per_s".into(), tps(r).into());
            if !r.subjects.is_empty() {
                let subjects: Map<String, Value> = r
                    .subjects
                    .iter()
                    .map(|(s, rep)| (s.clone(), report_json(rep).into()))
                    .collect();
                o.insert("subjects".into(), subjects.into());
            }
            Value::Object(o)
        })
        .collect();
    json!({ "model": args.run.model.display().to_string(), "tasks": tasks })
}

/// What the run store keeps: every task's figures (`<task>.<metric>`, shares in %) and speed.
fn store_metrics(results: &[TaskResult]) -> Vec<StoreMetric> {
    let mut out = Vec::new();
    for r in results {
        for &(m, e) in &r.report.metrics {
            let (scale, unit, better) =
                if m.is_share() { (100.0, "%", Better::Higher) } else { (1.0, "", Better::Lower) };
            out.push(
                StoreMetric::new(format!("{}.{}", r.name, m.name()), scale * e.value, unit, better)
                    .with_stderr(scale * e.stderr),
            );
        }
        out.push(StoreMetric::new(
            format!("{}.tokens_per_s", r.name),
            tokens_per_s(r),
            "t/s",
            Better::Higher,
        ));
    }
    out
}

#[allow(clippy::print_stdout)]
fn print(results: &[TaskResult], args: &TasksArgs, json: &Value) {
    let tps = tokens_per_s;
    if args.json {
        println!("{json}");
        return;
    }
    let mut metrics: Vec<Metric> = Vec::new();
    for &(m, _) in results.iter().flat_map(|r| &r.report.metrics) {
        if !metrics.contains(&m) {
            metrics.push(m);
        }
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["task".to_owned(), "regime".into(), "questions".into()];
    header.extend(metrics.iter().map(|m| {
        if m.is_share() {
            format!("{} %", m.name())
        } else {
            m.name().into()
        }
    }));
    header.extend(["tokens".into(), "t/s".into()]);
    table.set_header(header);
    for r in results {
        let mut row = vec![r.name.clone(), r.regime.clone(), r.report.questions.to_string()];
        row.extend(metrics.iter().map(|&m| match r.report.get(m) {
            Some(e) if m.is_share() => format!("{:.2} ± {:.2}", 100.0 * e.value, 100.0 * e.stderr),
            Some(e) => format!("{:.3} ± {:.3}", e.value, e.stderr),
            None => String::new(),
        }));
        row.extend([r.report.tokens.to_string(), format!("{:.1}", tps(r))]);
        table.add_row(row);
    }
    println!("{table}");
    println!(
        "± is the standard error: sqrt(p(1-p)/n) for shares; for perplexity, that of the mean \
         log-likelihood times the perplexity"
    );
}
