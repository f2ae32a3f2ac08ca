//! The plan of a quantization: every tensor of the source with the format it will be written in
//! and why, made and checked before any work (formats this build can encode, `--keep` rules that
//! match something). Formats come from llama.cpp's rules ([`crate::rules`]); where one of them has
//! no encoder in this build yet, its llama.cpp fallback is used instead and the plan says so.

use llmopt_formats::gguf::{Metadata, TensorInfo};
use llmopt_tensor::GgmlType;

use crate::{
    auto::AutoSummary,
    ftype::{can_encode, encodable_names, FileType},
    keep::KeepRule,
    rules::{self, Choice},
    QuantError,
};

/// What to quantize to.
#[derive(Clone, Debug)]
pub struct PlanConfig {
    /// The file type (`--format`: a format, or one of llama.cpp's mixtures such as `q4_K_M`).
    pub file_type: FileType,
    /// `--keep` overrides, first match wins.
    pub keep: Vec<KeepRule>,
    /// Whether an importance matrix will be used (one of llama.cpp's rules depends on it).
    pub imatrix: bool,
}

/// Why a tensor does not get the format its rule asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackReason {
    /// Its rows (`ncols` elements) are not whole blocks of the wanted format.
    RowLength { ncols: u64, block_len: usize },
    /// This build has no encoder for the wanted format yet.
    NoEncoder,
}

/// One format change away from what a rule asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub wanted: GgmlType,
    pub used: GgmlType,
    pub reason: FallbackReason,
}

/// One tensor of the plan.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    pub name: String,
    /// `shape[0]` is the row length.
    pub shape: Vec<u64>,
    /// Its format in the source file.
    pub source: GgmlType,
    /// The format it is written in.
    pub target: GgmlType,
    /// How the format was chosen.
    pub choice: Choice,
    /// What llama-quantize picks for it (differs from `target` only where this build lacks the
    /// encoder).
    pub llama_cpp: GgmlType,
    /// The changes from the format first asked for, in order.
    pub fallbacks: Vec<Fallback>,
    /// `--plan auto`: the predicted error of the chosen format.
    pub predicted: Option<f64>,
}

impl TensorPlan {
    /// Whether the source bytes are written as they are (same format, or never quantized).
    pub fn is_copy(&self) -> bool {
        self.source == self.target
    }

    /// Elements per row.
    pub fn ncols(&self) -> u64 {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Bytes of the tensor in its target format.
    pub fn target_bytes(&self) -> Result<u64, QuantError> {
        let rows = self.n_elements() / self.ncols().max(1);
        Ok(rows * self.target.row_bytes(self.ncols() as usize)? as u64)
    }
}

/// Every tensor of a source file, in file order, with its target format.
#[derive(Clone, Debug)]
pub struct Plan {
    pub file_type: FileType,
    pub tensors: Vec<TensorPlan>,
    pub keep: Vec<KeepRule>,
    pub imatrix: bool,
    /// What `--plan auto` decided, when it made the plan.
    pub auto: Option<AutoSummary>,
}

impl Plan {
    /// Plans the quantization of `tensors` (a file's, with its metadata `meta`). Fails before any
    /// work on a format this build cannot write or a `--keep` rule that matches no quantizable
    /// tensor.
    pub fn new(
        tensors: &[TensorInfo],
        meta: &Metadata,
        cfg: PlanConfig,
    ) -> Result<Self, QuantError> {
        let file_type = cfg.file_type;
        for ty in std::iter::once(file_type.format).chain(cfg.keep.iter().map(|k| k.format)) {
            if !can_encode(ty) {
                return Err(QuantError::NoEncoder { ty, available: encodable_names() });
            }
        }
        for k in &cfg.keep {
            check_matches(k, tensors)?;
        }
        let picks = rules::llama_cpp_picks(tensors, meta, &file_type, &cfg.keep, cfg.imatrix);
        let tensors = tensors
            .iter()
            .zip(picks)
            .map(|(t, pick)| {
                let ncols = t.shape.first().copied().unwrap_or(1);
                let mut fallbacks = Vec::new();
                if let Some(wanted) = pick.row_fallback_from {
                    let block_len = wanted.spec().block_len;
                    let reason = FallbackReason::RowLength { ncols, block_len };
                    fallbacks.push(Fallback { wanted, used: pick.ty, reason });
                }
                let mut target = pick.ty;
                if target != t.ty && !can_encode(target) {
                    // Only a rule's pick can lack an encoder (--format and --keep were checked):
                    // llama.cpp's fallback for that format has one.
                    let used = rules::smaller_block_fallback(target)
                        .map(|f| rules::fit_row(f, ncols))
                        .filter(|&f| can_encode(f))
                        .ok_or(QuantError::NoEncoder {
                            ty: target,
                            available: encodable_names(),
                        })?;
                    let reason = FallbackReason::NoEncoder;
                    fallbacks.push(Fallback { wanted: target, used, reason });
                    target = used;
                }
                Ok(TensorPlan {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    source: t.ty,
                    target,
                    choice: pick.choice,
                    llama_cpp: pick.ty,
                    fallbacks,
                    predicted: None,
                })
            })
            .collect::<Result<_, QuantError>>()?;
        Ok(Self { file_type, tensors, keep: cfg.keep, imatrix: cfg.imatrix, auto: None })
    }

    /// The tensors whose format changes (decoded and encoded again).
    pub fn converted(&self) -> impl Iterator<Item = &TensorPlan> {
        self.tensors.iter().filter(|t| !t.is_copy())
    }

    /// Bytes of tensor data the output will hold (before alignment padding).
    pub fn target_bytes(&self) -> Result<u64, QuantError> {
        self.tensors.iter().map(TensorPlan::target_bytes).sum()
    }
}

/// A `--keep` rule must match at least one quantizable tensor.
pub(crate) fn check_matches(k: &KeepRule, tensors: &[TensorInfo]) -> Result<(), QuantError> {
    if tensors.iter().any(|t| rules::allows_quantization(t) && k.matches(&t.name)) {
        return Ok(());
    }
    let unquantized = tensors.iter().find(|t| k.matches(&t.name)).map(|t| t.name.clone());
    Err(QuantError::KeepMatchesNothing { rule: k.to_string(), unquantized })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[u64], ty: GgmlType) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            ty,
            offset: 0,
            n_bytes: 0,
            info_offset: 0,
        }
    }

    fn smollm_like() -> Vec<TensorInfo> {
        vec![
            t("token_embd.weight", &[576, 49152], GgmlType::Q8_0),
            t("blk.0.attn_norm.weight", &[576], GgmlType::F32),
            t("blk.0.attn_v.weight", &[576, 192], GgmlType::Q4_1),
            t("blk.0.ffn_down.weight", &[1536, 576], GgmlType::Q4_1),
        ]
    }

    fn cfg(format: GgmlType, keep: &[&str]) -> PlanConfig {
        let keep = keep.iter().map(|k| KeepRule::parse(k).unwrap()).collect();
        PlanConfig { file_type: *FileType::of(format).unwrap(), keep, imatrix: false }
    }

    #[test]
    fn q4_0_of_a_tied_576_wide_model() {
        let p = Plan::new(&smollm_like(), &Metadata::default(), cfg(GgmlType::Q4_0, &[])).unwrap();
        let ty: Vec<_> = p.tensors.iter().map(|t| t.target).collect();
        use GgmlType::*;
        assert_eq!(ty, [Q8_0, F32, Q4_0, Q4_0]);
        // The embedding asked for Q6_K (output rule), whose 256-blocks do not fit 576 columns.
        let e = &p.tensors[0];
        assert!(e.is_copy() && e.choice == Choice::Rule && e.llama_cpp == Q8_0);
        let reason = FallbackReason::RowLength { ncols: 576, block_len: 256 };
        assert_eq!(e.fallbacks, [Fallback { wanted: Q6_K, used: Q8_0, reason }]);
        assert_eq!(p.converted().count(), 2);
        assert_eq!(p.file_type.id, 2);
        assert_eq!(p.tensors[2].target_bytes().unwrap(), 192 * 18 * 18);
    }

    #[test]
    fn a_rule_pick_without_an_encoder_takes_llama_cpps_fallback() {
        // 1536 columns fit Q6_K: the output rule's pick. Until Q6_K has an encoder, Q8_0.
        let ts = [t("token_embd.weight", &[1536, 100], GgmlType::Q8_0)];
        let p = Plan::new(&ts, &Metadata::default(), cfg(GgmlType::Q4_0, &[])).unwrap();
        let e = &p.tensors[0];
        assert_eq!(e.llama_cpp, GgmlType::Q6_K);
        if GgmlType::Q6_K.spec().from_f32.is_none() {
            assert_eq!(e.target, GgmlType::Q8_0);
            assert_eq!(e.fallbacks[0].reason, FallbackReason::NoEncoder);
        } else {
            assert_eq!(e.target, GgmlType::Q6_K);
        }
    }

    #[test]
    fn keep_rules_must_match_a_quantizable_tensor() {
        let ts = smollm_like();
        let p = Plan::new(&ts, &Metadata::default(), cfg(GgmlType::Q4_0, &["attn_v=f16"])).unwrap();
        assert_eq!(p.tensors[2].target, GgmlType::F16);
        assert_eq!(p.tensors[2].choice, Choice::Keep(0));
        match Plan::new(&ts, &Metadata::default(), cfg(GgmlType::Q4_0, &["nothing=q8_0"])) {
            Err(QuantError::KeepMatchesNothing { unquantized: None, .. }) => {}
            other => panic!("{other:?}"),
        }
        match Plan::new(&ts, &Metadata::default(), cfg(GgmlType::Q4_0, &["attn_norm=f16"])) {
            Err(QuantError::KeepMatchesNothing { unquantized: Some(n), .. }) => {
                assert_eq!(n, "blk.0.attn_norm.weight")
            }
            other => panic!("{other:?}"),
        }
    }
}
