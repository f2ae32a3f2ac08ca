//! `runs report` and `runs compare --html`: stored runs as Pareto points, one per model file (runs
//! grouped by SHA-256, newest metric wins; an `eval compare` run places its base as the baseline).

use std::path::Path;

use anyhow::{Context, Result};
use llmopt_profile::{html::render_pareto, report::ParetoPoint};
use llmopt_store::{Run, Status};

use crate::atomic_file::write_atomic;

/// The metric that places a point on the KLD axis (`eval compare`, `eval perplexity --kl-base`).
const KLD: &str = "kld";

/// One model file's figures, gathered from its runs.
#[derive(Debug)]
struct Variant {
    name: String,
    sha256: Option<String>,
    size: u64,
    runs: Vec<i64>,
    /// The `eval compare` runs this file is the base of.
    base_of: Vec<i64>,
    kld: Option<f64>,
    speed: Option<f64>,
}

impl Variant {
    fn label(&self) -> String {
        let ids = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        let mut from = Vec::new();
        match self.runs.len() {
            0 => {}
            1 => from.push(format!("run {}", self.runs[0])),
            _ => from.push(format!("runs {}", ids(&self.runs))),
        }
        if !self.base_of.is_empty() {
            from.push(format!("base of {}", ids(&self.base_of)));
        }
        format!("{} ({})", self.name, from.join("; "))
    }
}

/// The points of `runs` (any order), the label of the speed metric (`tg128 (t/s)`), and warnings
/// about runs left out or points that stand in for a baseline. Runs of one model file (its bench
/// run, its `eval compare` run) make one point, each metric from the newest run that has it; an
/// `eval compare` run's base (from its report: path, file size) is matched by size to a file
/// without a KLD, else added; a file without a KLD is a baseline.
pub fn points(runs: &[Run], speed: &str) -> (Vec<ParetoPoint>, String, Vec<String>) {
    let mut runs: Vec<&Run> = runs.iter().collect();
    runs.sort_by_key(|r| r.id);
    runs.dedup_by_key(|r| r.id);
    let mut warnings = Vec::new();
    let mut unit = None;
    let mut variants: Vec<Variant> = Vec::new();
    for r in &runs {
        let Some(m) = r.record.model.as_ref().filter(|_| r.record.status == Status::Ok) else {
            warnings.push(format!(
                "run {} ({}) has no model file or did not finish: left out",
                r.id, r.record.kind
            ));
            continue;
        };
        let i = match variants.iter().position(|v| v.sha256.as_deref() == Some(m.sha256.as_str())) {
            Some(i) => i,
            None => {
                variants.push(Variant {
                    name: file_name(&m.path),
                    sha256: Some(m.sha256.clone()),
                    size: m.size,
                    runs: Vec::new(),
                    base_of: Vec::new(),
                    kld: None,
                    speed: None,
                });
                variants.len() - 1
            }
        };
        let v = &mut variants[i];
        v.runs.push(r.id);
        let value = |name: &str| r.record.metric(name).filter(|m| m.value.is_finite());
        if let Some(k) = value(KLD) {
            v.kld = Some(k.value);
        }
        if let Some(s) = value(speed) {
            v.speed = Some(s.value);
            unit = Some(s.unit.clone());
        }
    }
    for r in runs.iter().filter(|r| r.record.kind == "eval.compare") {
        let Some((path, size)) = compare_base(r) else { continue };
        match variants.iter_mut().find(|v| v.size == size && v.kld.is_none()) {
            Some(v) => v.base_of.push(r.id),
            None => variants.push(Variant {
                name: file_name(&path),
                sha256: None,
                size,
                runs: Vec::new(),
                base_of: vec![r.id],
                kld: None,
                speed: None,
            }),
        }
    }
    let baselines: Vec<String> =
        variants.iter().filter(|v| v.kld.is_none()).map(Variant::label).collect();
    if baselines.len() > 1 {
        warnings.push(format!(
            "{} model files have no {KLD} metric, each is drawn as a baseline (KLD 0): {}",
            baselines.len(),
            baselines.join(", ")
        ));
    }
    variants.sort_by_key(|v| std::cmp::Reverse(v.size));
    let points = variants
        .iter()
        .map(|v| ParetoPoint {
            label: v.label(),
            size_bytes: v.size,
            kld: v.kld,
            tokens_per_s: v.speed,
        })
        .collect();
    let speed_label = match unit.filter(|u| !u.is_empty()) {
        Some(u) => format!("{speed} ({u})"),
        None => speed.to_string(),
    };
    (points, speed_label, warnings)
}

/// The base model of an `eval compare` run, from its stored report: path and file size.
fn compare_base(r: &Run) -> Option<(String, u64)> {
    let report: serde_json::Value = serde_json::from_str(r.record.report.as_deref()?).ok()?;
    let base = &report["base"];
    Some((base["path"].as_str()?.to_string(), base["file_bytes"].as_u64()?))
}

/// Renders the Pareto page of `runs` into `path` (atomically) and returns the warnings to print
/// and a line that names the file.
pub fn write(runs: &[Run], speed: &str, title: &str, path: &Path) -> Result<(Vec<String>, String)> {
    let (points, speed_label, warnings) = points(runs, speed);
    if points.is_empty() {
        anyhow::bail!("none of the runs has a model file to place on the chart");
    }
    let html = render_pareto(&points, &speed_label, title).context("cannot render the report")?;
    write_atomic(path, html.as_bytes())?;
    Ok((warnings, format!("wrote {} ({} model files)", path.display(), points.len())))
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}
