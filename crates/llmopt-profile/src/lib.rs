//! Measuring a model before and after optimizing it: prefill and decode speed (llama-bench's `pp`
//! and `tg` tests), the weight bandwidth decode achieves, the machine's copy bandwidth, peak memory,
//! and `profile`'s report: where time and memory go, energy, cost and CO2 ([`report`]).

mod bench;
mod cost;
mod energy;
pub mod html;
mod memory;
mod profile;
pub mod report;
mod stats;

pub use bench::{run_test, BenchTest, TestKind, TestResult};
pub use cost::{check_price, price, PriceFile, DEFAULT_PRICES};
pub use energy::{cpu_seconds, EnergyMeter, EnergyModel};
pub use memory::{copy_bandwidth, huge_page_bytes, peak_rss_bytes, read_bandwidth, sync_cost};
pub use profile::{check_spec, percentiles, run_cell, CellRun, CellSpec};
pub use report::{Cell, Prices, ProfileReport, PROFILE_SCHEMA};
pub use stats::Summary;

/// Errors from a measurement.
#[derive(thiserror::Error, Debug)]
pub enum ProfileError {
    /// The model failed while running the test.
    #[error(transparent)]
    Model(#[from] llmopt_model::ModelError),
    /// A test that cannot run as asked (e.g. more tokens than the model's context).
    #[error("{0}")]
    Invalid(String),
}
