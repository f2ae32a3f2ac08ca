//! `quantize --validate`: the output measured against its input by the code of `eval compare
//! --speed` (not a copy), its figures added to the quantize run's report and stored metrics.

use std::process::ExitCode;

use anyhow::Result;
use llmopt_store::Metric;
use serde_json::Value;

use crate::{
    cli::{CompareArgs, QuantizeArgs, StoreArgs, TaskSourceArgs, ValidateArgs},
    commands::compare::{self, Measured},
};

/// Tokens per chunk of the validation text.
const CTX: usize = 512;

/// A finished comparison of the output with its input.
pub struct Validation {
    args: CompareArgs,
    measured: Measured,
}

/// What can be wrong with `--validate`'s options, checked before any work.
pub fn check_args(v: &ValidateArgs) -> Result<()> {
    if !v.validate {
        return Ok(());
    }
    if v.validate_chunks == 0 {
        anyhow::bail!("invalid --validate-chunks 0: must be at least 1");
    }
    if let Some(l) = v.budget.iter().flat_map(|b| &b.limits).find(|l| l.metric.needs_tasks()) {
        anyhow::bail!("--budget limits {}, which --validate does not measure (no tasks)", l.metric);
    }
    if !v.validate_text.is_file() {
        anyhow::bail!("cannot read {} (--validate-text): no such file", v.validate_text.display());
    }
    Ok(())
}

impl Validation {
    /// Runs the input, then the output, on the validation text.
    pub fn run(q: &QuantizeArgs, threads: usize) -> Result<Self> {
        let v = &q.validate;
        let args = CompareArgs {
            base: q.model.clone(),
            candidate: q.out.clone(),
            text: v.validate_text.clone(),
            ctx: CTX,
            chunks: v.validate_chunks,
            tasks: Vec::new(),
            source: TaskSourceArgs {
                limit: None,
                shots: None,
                regime: None,
                data: Default::default(),
                mmlu: Default::default(),
                mmlu_dev: Default::default(),
            },
            budget: v.budget.clone(),
            threads: Some(threads),
            no_repack: false,
            kv: Default::default(),
            candidate_kv: None,
            speed: true,
            json: q.json,
            store: StoreArgs { store: None, no_store: true },
        };
        let measured = compare::measure(&args)?;
        Ok(Self { args, measured })
    }

    pub fn json(&self) -> Value {
        self.measured.report().json(&self.args)
    }

    /// The comparison's metrics, except those the quantize run already has (sizes).
    pub fn metrics(&self, have: &[Metric]) -> Vec<Metric> {
        let report = self.measured.report();
        report.metrics().into_iter().filter(|m| !have.iter().any(|h| h.name == m.name)).collect()
    }

    #[allow(clippy::print_stdout)]
    pub fn print(&self) {
        println!();
        println!(
            "validation: {} against {}",
            self.args.candidate.display(),
            self.args.base.display()
        );
        self.measured.report().print_table(&self.args);
    }

    /// 3 when the budget is broken, else 0.
    pub fn exit_code(&self) -> ExitCode {
        self.measured.report().exit_code()
    }
}
