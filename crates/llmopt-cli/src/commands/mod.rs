//! One module per subcommand; `run` dispatches.

mod bench;
mod chat;
pub(crate) mod compare;
mod compare_speed;
mod eval;
mod generate;
pub(crate) mod inspect;
mod loadtest;
pub(crate) mod long_context;
mod profile;
mod quantize;
mod runs;
mod runs_report;
mod serve;
mod tasks;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, EvalCommand};

/// Runs the parsed command; the exit code is 0 unless a command reports a verdict (`eval compare`,
/// `quantize --validate`, `loadtest`).
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Eval(EvalCommand::Compare(a)) => return compare::run(&a),
        Command::Quantize(a) => return quantize::run(&a),
        Command::Loadtest(a) => return loadtest::run(&a),
        Command::Inspect(a) => inspect::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Profile(a) => profile::run(&a),
        Command::Generate(a) => generate::run(&a),
        Command::Chat(a) => chat::run(&a),
        Command::Eval(EvalCommand::Perplexity(a)) => eval::perplexity(&a),
        Command::Eval(EvalCommand::Tasks(a)) => tasks::run(&a),
        Command::Eval(EvalCommand::LongContext(a)) => long_context::run(&a),
        Command::Runs(a) => runs::run(&a),
        Command::Serve(a) => serve::run(&a),
    }?;
    Ok(ExitCode::SUCCESS)
}
