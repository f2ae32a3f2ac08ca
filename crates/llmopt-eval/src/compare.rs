//! Judging a candidate model against its base: accuracy budgets (`kld<=0.03,acc_drop<=1.0`) and
//! the paired test that says whether a task's accuracy change is more than chance. The runs
//! themselves are perplexity/KLD and task scoring; this module only decides.

mod budget;
mod paired;

pub use budget::{Budget, BudgetError, Check, Limit, Metric, Op, METRICS};
pub use paired::{mcnemar_exact, paired_accuracy, PairedAccuracy};
