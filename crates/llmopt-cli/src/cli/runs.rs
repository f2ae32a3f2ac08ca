//! `llmopt runs` arguments: list, show, compare, report and export of the run store.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The run store to read [default: $XDG_DATA_HOME/llmopt/runs.sqlite, else
    /// ~/.local/share/llmopt/runs.sqlite].
    #[arg(long, value_name = "PATH", global = true)]
    pub store: Option<PathBuf>,
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Stored runs, newest first: id, start time, kind, model and the first metrics.
    List(RunsListArgs),
    /// One run in full: command line, model hash, host, build, metrics (and its report with --json).
    Show(RunsShowArgs),
    /// Two runs' metrics side by side: delta, ratio and a verdict per metric (better, worse, or
    /// within noise: |delta| <= 2 sqrt(se_a^2 + se_b^2)); without spreads, the delta alone.
    Compare(RunsCompareArgs),
    /// Several runs as one HTML page: a Pareto chart of model file size against KL divergence,
    /// marker area by speed, and a table of the model files.
    #[command(
        after_help = "Example:\n  llmopt eval compare f16.gguf q4_1.gguf        # run 7: kld of q4_1 against f16\n  llmopt bench -m f16.gguf; llmopt bench -m q4_1.gguf   # runs 8 and 9: tg128\n  llmopt runs report 7 8 9 --html tradeoff.html\n\nOne point per model file: runs are grouped by the file's SHA-256, and each metric comes from\nthe newest run that has it: size from the store's record of the file, KLD from the `kld`\nmetric (eval compare, eval perplexity --kl-base), speed from the --speed metric (bench).\nAn eval compare run also places its base model (matched by file size, else added) as the\nbaseline. A file without a `kld` metric is drawn as a baseline (KLD 0); a warning says so\nwhen there are several. The page is self-contained (inline SVG, no scripts); it is written\nto a temporary file first and renamed, so FILE is never half written."
    )]
    Report(RunsReportArgs),
    /// Every stored run as CSV, one row per run and metric, oldest first.
    Export(RunsExportArgs),
}

#[derive(Debug, Args)]
pub struct RunsListArgs {
    /// Only runs whose model path contains this text.
    #[arg(long, value_name = "SUBSTR")]
    pub model: Option<String>,
    /// Only runs of this kind (bench, eval.perplexity, ...); `eval` also matches `eval.tasks`.
    #[arg(long)]
    pub kind: Option<String>,
    /// Show at most N runs (0 for all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print one JSON object instead of a table (schema in docs/json-schema.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsShowArgs {
    /// The run's id (see `llmopt runs list`).
    pub id: i64,
    /// Print one JSON object, the run's report included.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsCompareArgs {
    /// The reference run's id (A).
    pub a: i64,
    /// The run judged against it (B): deltas are B - A.
    pub b: i64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the two runs' model files as an HTML page of size, KLD and speed (as `runs
    /// report` does).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// The metric that gives the speed on the --html page.
    #[arg(long, value_name = "METRIC", default_value = "tg128")]
    pub speed: String,
}

#[derive(Debug, Args)]
pub struct RunsReportArgs {
    /// The runs' ids (see `llmopt runs list`).
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<i64>,
    /// Write the report to FILE (HTML).
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
    /// The metric that gives each model file's speed (marker area): tg128, pp512, ...
    #[arg(long, value_name = "METRIC", default_value = "tg128")]
    pub speed: String,
    /// The page's title [default: "Size, KLD and speed of runs ..."].
    #[arg(long)]
    pub title: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunsExportArgs {
    /// Write CSV (the one export format today).
    #[arg(long, required = true)]
    pub csv: bool,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}
