//! The output's metadata: the source's keys (tokenizer, architecture, ...) with llama.cpp's file
//! type and quantization version set, and `llmopt.*` keys that say how the file was made. Stale
//! `llmopt.*` keys of a source we wrote ourselves, and split-file keys, are dropped first.

use llmopt_formats::gguf::{MetaValue, Metadata};

use crate::{gptq::GptqConfig, imatrix::CalibInfo, plan::Plan};

/// ggml's `GGML_QNT_VERSION`, which llama-quantize stores in `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// How an output was made, beyond its plan.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// llmopt's version (and commit, when known), e.g. `0.1.0 (1b42db9)`.
    pub llmopt_version: String,
    /// The source file's name (no directories) and SHA-256.
    pub source_file: String,
    pub source_sha256: String,
    /// `rtn`, `imatrix` or `gptq`.
    pub method: String,
    /// GPTQ's settings, with `--method gptq`.
    pub gptq: Option<GptqConfig>,
    /// The calibration text, when an importance matrix was used.
    pub calib: Option<CalibInfo>,
    /// A reused importance file's name and SHA-256 (`--imatrix`).
    pub imatrix_file: Option<(String, String)>,
    /// Tensors encoded with their importance (0 when no format had a weighted encoder).
    pub weighted_tensors: Option<usize>,
}

/// The keys this module writes, for readers (`llmopt inspect` shows every `llmopt.*` key).
pub const PREFIX: &str = "llmopt.";
/// Keys under [`PREFIX`] that describe the model rather than its history (kept from the source).
pub const MODEL_PREFIX: &str = "llmopt.model.";

/// The output file's metadata for `plan`, from the source's.
pub fn output_metadata(source: &Metadata, plan: &Plan, p: &Provenance) -> Metadata {
    let mut m = source.clone();
    // Provenance is the source's own business, but `llmopt.model.*` keys describe how its
    // weights are laid out (a rotated down projection), which the output's weights inherit.
    m.retain(|k, _| {
        (!k.starts_with(PREFIX) || k.starts_with(MODEL_PREFIX)) && !k.starts_with("split.")
    });
    let str = |s: &str| MetaValue::String(s.to_string());
    m.insert("general.file_type", MetaValue::U32(plan.file_type.id));
    m.insert("general.quantization_version", MetaValue::U32(QUANTIZATION_VERSION));
    m.insert("llmopt.version", str(&p.llmopt_version));
    m.insert("llmopt.source.file", str(&p.source_file));
    m.insert("llmopt.source.sha256", str(&p.source_sha256));
    m.insert("llmopt.quantize.format", str(plan.file_type.format.name()));
    m.insert("llmopt.quantize.file_type", str(plan.file_type.name));
    m.insert("llmopt.quantize.method", str(&p.method));
    if !plan.keep.is_empty() {
        let rules = plan.keep.iter().map(|k| str(&k.to_string())).collect();
        m.insert("llmopt.quantize.keep", MetaValue::Array(rules));
    }
    if let Some(a) = &plan.auto {
        m.insert("llmopt.quantize.plan", str("auto"));
        m.insert("llmopt.quantize.plan.budget", str(&a.budget.to_string()));
        m.insert("llmopt.quantize.plan.sensitivity", str(&a.sensitivity));
        m.insert("llmopt.quantize.plan.predicted", MetaValue::F64(a.predicted));
        let chosen = plan
            .tensors
            .iter()
            .filter(|t| t.choice == crate::Choice::Auto)
            .map(|t| str(&format!("{}={}", t.name, t.target.name())))
            .collect();
        m.insert("llmopt.quantize.plan.tensors", MetaValue::Array(chosen));
    }
    if let Some(g) = &p.gptq {
        m.insert("llmopt.quantize.gptq.damp", MetaValue::F32(g.damp as f32));
        m.insert("llmopt.quantize.gptq.act_order", MetaValue::Bool(g.act_order));
        m.insert("llmopt.quantize.gptq.weighted", MetaValue::Bool(g.weighted));
    }
    if let Some(c) = &p.calib {
        m.insert("llmopt.calib.file", str(&c.file));
        if let Some(h) = &c.sha256 {
            m.insert("llmopt.calib.sha256", str(h));
        }
        m.insert("llmopt.calib.tokens", MetaValue::U64(c.tokens));
    }
    if let Some((file, sha)) = &p.imatrix_file {
        m.insert("llmopt.imatrix.file", str(file));
        m.insert("llmopt.imatrix.sha256", str(sha));
    }
    if let Some(n) = p.weighted_tensors {
        m.insert("llmopt.quantize.weighted_tensors", MetaValue::U64(n as u64));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeepRule, PlanConfig};
    use llmopt_formats::gguf::TensorInfo;
    use llmopt_tensor::GgmlType;

    #[test]
    fn keeps_the_source_keys_and_replaces_stale_provenance() {
        let mut src = Metadata::default();
        src.insert("general.architecture", MetaValue::String("llama".into()));
        src.insert("general.file_type", MetaValue::U32(3));
        src.insert("llmopt.quantize.method", MetaValue::String("old".into()));
        src.insert("llmopt.calib.file", MetaValue::String("old.txt".into()));
        src.insert("split.count", MetaValue::U16(2));
        let t = TensorInfo {
            name: "blk.0.attn_q.weight".into(),
            shape: vec![64, 64],
            ty: GgmlType::Q4_1,
            offset: 0,
            n_bytes: 0,
            info_offset: 0,
        };
        let keep = vec![KeepRule::parse("attn_q=q8_0").unwrap()];
        let file_type = *crate::FileType::of(GgmlType::Q4_0).unwrap();
        let cfg = PlanConfig { file_type, keep, imatrix: false };
        let plan = Plan::new(&[t], &src, cfg).unwrap();
        let p =
            Provenance { method: "rtn".into(), source_file: "m.gguf".into(), ..Default::default() };
        let m = output_metadata(&src, &plan, &p);
        assert_eq!(m.get_str("general.architecture"), Some("llama"));
        assert_eq!(m.get_u64("general.file_type"), Some(2));
        assert_eq!(m.get_u64("general.quantization_version"), Some(2));
        assert_eq!(m.get_str("llmopt.quantize.method"), Some("rtn"));
        assert_eq!(m.get_str("llmopt.quantize.format"), Some("q4_0"));
        assert_eq!(m.get_array("llmopt.quantize.keep").unwrap()[0].as_str(), Some("attn_q=q8_0"));
        assert!(m.get("llmopt.calib.file").is_none() && m.get("split.count").is_none());
    }
}
