//! `llmopt runs`: the stored history of runs — list, show one, compare two, report several as an
//! HTML page, export as CSV. JSON output carries `"schema": 1` and is documented in docs/json-schema.md.

use std::io::Write;

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_store::{write_csv, Comparison, Metric, Run, RunFilter, Store, Verdict};
use serde_json::json;

use super::runs_report;
use crate::{
    cli::{
        RunsArgs, RunsCommand, RunsCompareArgs, RunsExportArgs, RunsListArgs, RunsReportArgs,
        RunsShowArgs,
    },
    record::store_path,
    units::human_bytes,
};

/// Version of the JSON this module prints; bump it when a field changes meaning or goes away.
const JSON_SCHEMA: u32 = 1;

/// Metrics shown per run in `runs list`.
const LIST_METRICS: usize = 3;

pub fn run(args: &RunsArgs) -> Result<()> {
    let path = store_path(args.store.as_deref())?;
    let store = Store::open_existing(&path)?;
    match &args.command {
        RunsCommand::List(a) => list(&store, a),
        RunsCommand::Show(a) => show(&store, a),
        RunsCommand::Compare(a) => compare(&store, a),
        RunsCommand::Report(a) => report(&store, a),
        RunsCommand::Export(a) => export(&store, a),
    }
}

#[allow(clippy::print_stdout)]
fn list(store: &Store, args: &RunsListArgs) -> Result<()> {
    let filter = RunFilter {
        model: args.model.clone(),
        kind: args.kind.clone(),
        limit: (args.limit > 0).then_some(args.limit),
    };
    let runs = store.list(&filter)?;
    if args.json {
        let v = json!({
            "schema": JSON_SCHEMA,
            "store": store.path().display().to_string(),
            "store_schema_version": store.schema_version()?,
            "runs": runs,
        });
        println!("{v}");
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs match in {}", store.path().display());
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["id", "started (UTC)", "kind", "model", "metrics"]);
    for r in &runs {
        let key: Vec<String> =
            r.record.metrics.iter().take(LIST_METRICS).map(metric_text).collect();
        table.add_row(vec![
            r.id.to_string(),
            when(&r.record.started_at),
            r.record.kind.clone(),
            model_name(r),
            key.join(", "),
        ]);
    }
    println!("{table}");
    Ok(())
}

#[allow(clippy::print_stdout)]
fn show(store: &Store, args: &RunsShowArgs) -> Result<()> {
    let run = store.get(args.id)?;
    let r = &run.record;
    if args.json {
        let mut v = serde_json::to_value(&run)?;
        // The report as JSON, not as a string of JSON (a report that does not parse stays text).
        let report = r
            .report
            .as_deref()
            .map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap_or_else(|_| t.into()));
        v["report"] = report.unwrap_or(serde_json::Value::Null);
        println!("{}", json!({ "schema": JSON_SCHEMA, "run": v }));
        return Ok(());
    }
    println!("run {}: {} ({})", run.id, r.kind, r.status.as_str());
    println!("started   {}   finished {}", r.started_at, r.finished_at);
    println!("command   {}", r.command_line());
    if let Some(m) = &r.model {
        println!("model     {} ({}, sha256 {})", m.path, human_bytes(m.size), m.sha256);
    }
    let h = &r.host;
    println!(
        "host      {}, {} cores / {} threads, {} memory",
        h.cpu,
        h.physical_cores,
        h.logical_cores,
        human_bytes(h.memory_bytes)
    );
    println!("          {}; {}", h.os, h.cpu_features.join(" "));
    println!("llmopt    {} ({})", r.llmopt_version, r.llmopt_commit);
    if r.metrics.is_empty() {
        println!("no metrics");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["metric", "value", "± stderr", "unit", "better"]);
    for m in &r.metrics {
        table.add_row(vec![
            m.name.clone(),
            num(m.value),
            m.stderr.map_or_else(|| "-".into(), num),
            m.unit.clone(),
            m.better.as_str().to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}

#[allow(clippy::print_stdout)]
fn compare(store: &Store, args: &RunsCompareArgs) -> Result<()> {
    let (a, b) = (store.get(args.a)?, store.get(args.b)?);
    let c = Comparison::of(&a.record.metrics, &b.record.metrics);
    let differences = differences(&a, &b);
    let summary = format!("run {} against run {}: {}", b.id, a.id, c.summary());
    let title = format!("Run {} against run {}: size, KLD and speed", b.id, a.id);
    if args.json {
        let strip = |r: &Run| {
            let mut r = r.clone();
            r.record.report = None;
            r
        };
        let count = |v| c.count(v);
        let v = json!({
            "schema": JSON_SCHEMA,
            "a": strip(&a),
            "b": strip(&b),
            "differences": differences,
            "metrics": c.metrics,
            "summary": {
                "better": count(Verdict::Better),
                "worse": count(Verdict::Worse),
                "within_noise": count(Verdict::WithinNoise),
                "no_spread": count(Verdict::NoSpread),
                "unranked": count(Verdict::Unranked),
                "missing": count(Verdict::Missing),
                "text": summary,
            },
        });
        println!("{v}");
        return html_page(&[a, b], args, &title, true);
    }
    for (label, r) in [("A", &a), ("B", &b)] {
        println!(
            "{label}: run {} {} {} at {} (llmopt {})",
            r.id,
            r.record.kind,
            model_name(r),
            r.record.started_at,
            r.record.llmopt_commit
        );
    }
    if !differences.is_empty() {
        println!("note: the runs differ in {}", differences.join(", "));
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["metric", "A", "B", "B - A", "B / A", "verdict"]);
    for m in &c.metrics {
        let side = |v: Option<f64>, se: Option<f64>| match (v, se) {
            (None, _) => "-".to_string(),
            (Some(v), None) => format!("{} {}", num(v), m.unit),
            (Some(v), Some(se)) => format!("{} ± {} {}", num(v), num(se), m.unit),
        };
        let verdict = match m.noise {
            Some(n) => format!("{} (noise {})", m.verdict.as_str(), num(n)),
            None => m.verdict.as_str().to_string(),
        };
        table.add_row(vec![
            m.name.clone(),
            side(m.a, m.a_stderr),
            side(m.b, m.b_stderr),
            m.delta.map_or_else(
                || "-".into(),
                |d| format!("{}{}", if d >= 0.0 { "+" } else { "" }, num(d)),
            ),
            m.ratio.map_or_else(|| "-".into(), |r| format!("{r:.3}x")),
            verdict,
        ]);
    }
    println!("{table}");
    println!("{summary}");
    html_page(&[a, b], args, &title, false)
}

/// `compare --html`: the page of the two runs; its line goes to stderr when stdout is JSON.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn html_page(runs: &[Run], args: &RunsCompareArgs, title: &str, json: bool) -> Result<()> {
    let Some(path) = &args.html else { return Ok(()) };
    let (warnings, done) = runs_report::write(runs, &args.speed, title, path)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if json {
        eprintln!("{done}");
    } else {
        println!("{done}");
    }
    Ok(())
}

/// `runs report`: several runs as one HTML page (see `runs_report`).
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn report(store: &Store, args: &RunsReportArgs) -> Result<()> {
    let runs = args.ids.iter().map(|&id| store.get(id)).collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<String> = args.ids.iter().map(i64::to_string).collect();
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| format!("Size, KLD and speed of runs {}", ids.join(", ")));
    let (warnings, done) = runs_report::write(&runs, &args.speed, &title, &args.html)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    println!("{done}");
    Ok(())
}

/// What besides the code under test differs between two runs: the things that move figures.
fn differences(a: &Run, b: &Run) -> Vec<&'static str> {
    let (a, b) = (&a.record, &b.record);
    let mut out = Vec::new();
    if a.kind != b.kind {
        out.push("kind");
    }
    if a.model.as_ref().map(|m| &m.sha256) != b.model.as_ref().map(|m| &m.sha256) {
        out.push("model file");
    }
    if a.host != b.host {
        out.push("host");
    }
    if (&a.llmopt_version, &a.llmopt_commit) != (&b.llmopt_version, &b.llmopt_commit) {
        out.push("llmopt build");
    }
    out
}

fn export(store: &Store, args: &RunsExportArgs) -> Result<()> {
    let mut runs = store.list(&RunFilter::default())?;
    runs.reverse();
    match &args.out {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            );
            write_csv(&runs, &mut file)
                .and_then(|()| file.flush())
                .with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            write_csv(&runs, &mut out).and_then(|()| out.flush()).context("cannot write the CSV")
        }
    }
}

/// The model's file name (not its folder), `-` for runs without a model.
fn model_name(r: &Run) -> String {
    r.record.model.as_ref().map_or_else(
        || "-".into(),
        |m| {
            std::path::Path::new(&m.path)
                .file_name()
                .map_or_else(|| m.path.clone(), |n| n.to_string_lossy().into_owned())
        },
    )
}

/// `2025-01-01T12:34:56Z` as `2025-01-01 12:34:56`.
fn when(rfc3339: &str) -> String {
    rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
}

/// `pp512 123.5 t/s`.
fn metric_text(m: &Metric) -> String {
    format!("{} {} {}", m.name, num(m.value), m.unit).trim_end().to_string()
}

/// Four significant digits, at least one decimal: `1234.5`, `123.5`, `0.01235`; `-` for NaN.
fn num(v: f64) -> String {
    if v.is_nan() {
        return "-".into();
    }
    if v == 0.0 || v.is_infinite() {
        return format!("{v:.1}");
    }
    let decimals = (3 - v.abs().log10().floor() as i32).clamp(1, 8) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(num(1234.5), "1234.5");
        assert_eq!(num(123.46), "123.5");
        assert_eq!(num(12.346), "12.35");
        assert_eq!(num(0.012346), "0.01235");
        assert_eq!(num(-2.5), "-2.500");
        assert_eq!(num(0.0), "0.0");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(when("2025-01-01T12:34:56Z"), "2025-01-01 12:34:56");
    }
}
