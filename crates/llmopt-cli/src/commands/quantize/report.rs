//! What `llmopt quantize` tells: the JSON summary (docs/json-schema.md), the tables, and the
//! metrics the run store keeps.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_formats::gguf::GgufFile;
use llmopt_quant::{FallbackReason, Plan, Written};
use llmopt_store::{Better, Metric};
use serde_json::{json, Value};

use super::{auto::AutoPlan, importance::Importance, Seconds};
use crate::{
    cli::{Method, QuantizeArgs},
    commands::inspect::{type_rows, types_table},
    units::human_bytes,
};

/// Everything a finished run reports.
pub struct Report<'a> {
    pub args: &'a QuantizeArgs,
    pub source: &'a GgufFile,
    pub source_sha256: String,
    pub output: &'a GgufFile,
    pub plan: &'a Plan,
    pub written: &'a Written,
    pub importance: Option<&'a Importance>,
    pub awq: Option<&'a llmopt_quant::awq::AwqScales>,
    pub auto: Option<&'a AutoPlan>,
    pub seconds: Seconds,
}

impl Report<'_> {
    fn size_ratio(&self) -> f64 {
        self.output.file_len() as f64 / self.source.file_len().max(1) as f64
    }

    pub fn json(&self) -> Value {
        let (src, out, plan, w) = (self.source, self.output, self.plan, self.written);
        let fallbacks: Vec<Value> = plan
            .tensors
            .iter()
            .flat_map(|t| t.fallbacks.iter().map(move |f| (t, f)))
            .map(|(t, f)| {
                let reason = match f.reason {
                    FallbackReason::RowLength { .. } => "row_length",
                    FallbackReason::NoEncoder => "no_encoder",
                };
                json!({ "tensor": t.name, "wanted": f.wanted.name(), "used": f.used.name(), "reason": reason })
            })
            .collect();
        let calibration = self.importance.map(|i| {
            let m = &i.imatrix;
            let calib = m.calib.as_ref();
            json!({
                "file": calib.map(|c| c.file.clone()),
                "sha256": calib.and_then(|c| c.sha256.clone()),
                "tokens": calib.map(|c| c.tokens),
                "chunks": m.chunks,
                "chunk_size": m.chunk_size,
                "weights": m.len(),
                "imatrix": i.file.as_ref().map(|(name, sha)| json!({ "file": name, "sha256": sha })),
                "imatrix_out": self.args.imatrix_out.as_ref().map(|p| p.display().to_string()),
            })
        });
        let s = &self.seconds;
        json!({
            "input": {
                "path": src.path().display().to_string(),
                "sha256": self.source_sha256,
                "file_bytes": src.file_len(),
                "bits_per_weight": src.bits_per_weight(),
            },
            "output": {
                "path": out.path().display().to_string(),
                "file_bytes": out.file_len(),
                "bits_per_weight": out.bits_per_weight(),
            },
            "size_ratio": self.size_ratio(),
            "format": plan.file_type.format.name(),
            "file_type": { "id": plan.file_type.id, "name": plan.file_type.name },
            "method": self.args.method.name(),
            "keep": plan.keep.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "plan": if plan.auto.is_some() { "auto" } else { "llama.cpp" },
            "tensors": {
                "total": plan.tensors.len(),
                "converted": w.converted,
                "copied": w.copied,
                "weighted": w.weighted,
            },
            "tensor_types": type_rows(out),
            "fallbacks": fallbacks,
            "calibration": calibration,
            "auto_seconds": self.auto.map(|a| a.seconds),
            "gptq": (self.args.method == Method::Gptq).then(|| json!({
                "damp": self.args.gptq_damp,
                "act_order": self.args.act_order,
                "weighted": !self.args.gptq_plain,
                "tensors": w.gptq,
                "without_hessian": w.gptq_without_hessian,
            })),
            "awq": self.awq.filter(|_| self.args.method == Method::Awq).map(scales_json),
            "smoothquant": self.awq.filter(|_| self.args.method == Method::SmoothQuant).map(|a| {
                let mut v = scales_json(a);
                let sites = llmopt_model::RotationSite::ALL.iter().filter_map(|&s| {
                    let r = a.rotations.get(s)?;
                    Some((s.key().rsplit('.').next().unwrap_or("").to_string(), json!(r)))
                });
                let rotation: serde_json::Map<String, Value> = sites.collect();
                v["rotation"] = json!(rotation);
                v
            }),
            "seconds": {
                "calibration": s.calibration.as_secs_f64(),
                "quantization": s.quantization.as_secs_f64(),
                "total": s.total.as_secs_f64(),
            },
        })
    }

    /// Output size, bits per weight and time, for `llmopt runs`.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut m = vec![
            Metric::new("output_mb", self.output.file_len() as f64 / 1e6, "MB", Better::Lower),
            Metric::new("bits_per_weight", self.output.bits_per_weight(), "bits", Better::Lower),
            Metric::new("size_ratio", self.size_ratio(), "x", Better::Lower),
            Metric::new("seconds", self.seconds.total.as_secs_f64(), "s", Better::Lower),
        ];
        if self.importance.is_some() {
            let calib = self.seconds.calibration.as_secs_f64();
            m.push(Metric::new("calibration_seconds", calib, "s", Better::Lower));
        }
        m
    }

    #[allow(clippy::print_stdout)]
    pub fn print(&self) {
        let (src, out, w) = (self.source, self.output, self.written);
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec!["", "input", "output"]);
        t.add_row(vec![
            "file".to_string(),
            src.path().display().to_string(),
            out.path().display().to_string(),
        ]);
        t.add_row(vec![
            "size".to_string(),
            human_bytes(src.file_len()),
            format!("{} ({:.3}x)", human_bytes(out.file_len()), self.size_ratio()),
        ]);
        t.add_row(vec![
            "bits per weight".to_string(),
            format!("{:.2}", src.bits_per_weight()),
            format!("{:.2}", out.bits_per_weight()),
        ]);
        println!("{t}");
        println!("{}", types_table(&type_rows(out)));
        let ft = &self.plan.file_type;
        println!(
            "{} ({}), method {}: {} tensors re-encoded, {} copied{}, in {:.1} s",
            ft.format.name(),
            ft.name,
            self.args.method.name(),
            w.converted,
            w.copied,
            if self.args.method == Method::Gptq {
                format!(", {} by GPTQ", w.gptq)
            } else if self.importance.is_some() {
                format!(", {} with importance weights", w.weighted)
            } else {
                String::new()
            },
            self.seconds.total.as_secs_f64()
        );
    }
}

/// AWQ's or SmoothQuant's choices: groups, how many were scaled, their mean alpha, the sampled
/// error before and after, and each group's alpha.
fn scales_json(a: &llmopt_quant::awq::AwqScales) -> Value {
    let scaled: Vec<_> = a.groups.iter().filter(|g| g.alpha > 0.0).collect();
    let mean = scaled.iter().map(|g| f64::from(g.alpha)).sum::<f64>() / scaled.len().max(1) as f64;
    json!({
        "groups": a.groups.len(),
        "scaled": scaled.len(),
        "mean_alpha": mean,
        "error_before": a.groups.iter().map(|g| g.error_before).sum::<f64>(),
        "error_after": a.groups.iter().map(|g| g.error_after).sum::<f64>(),
        "alphas": a.groups.iter().map(|g| json!([g.first, g.alpha])).collect::<Vec<_>>(),
    })
}
