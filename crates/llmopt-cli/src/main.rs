//! `llmopt`: measure, optimize, validate and serve language models. This file parses the command
//! line and reports errors as one line plus a hint; each subcommand lives in `commands/`.

mod atomic_file;
mod cli;
mod commands;
mod errors;
mod load;
mod progress;
mod record;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            errors::report(&err);
            ExitCode::FAILURE
        }
    }
}
