//! llama.cpp's per-tensor choices (`src/llama-quant.cpp`, llama-cpp-python 0.3.36's vendored
//! tree): which tensors are quantized at all, the format each gets under a file type, and the
//! fallback when a row is not a whole number of the format's blocks. Dense models only: the
//! mixture-of-experts, Falcon-70B and IQ-format branches have no counterpart here.

use llmopt_formats::gguf::{Metadata, TensorInfo};
use llmopt_tensor::GgmlType;

use crate::{ftype::FileType, keep::KeepRule};

/// llama.cpp's broad tensor kinds (`tensor_category`), from the name alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    TokenEmbd,
    Output,
    /// `attn_v`, fused `attn_qkv` and `attn_kv_b`: the value projections, kept finer by the
    /// K-quant mixtures.
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

impl Category {
    /// The category of a tensor called `name` (`tensor_get_category`).
    pub fn of(name: &str) -> Self {
        if name == "output.weight" {
            return Self::Output;
        }
        if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            return Self::TokenEmbd;
        }
        const BY_PART: [(&str, Category); 9] = [
            ("attn_qkv.weight", Category::AttnV),
            ("attn_kv_b.weight", Category::AttnV),
            ("attn_v.weight", Category::AttnV),
            ("attn_k.weight", Category::AttnK),
            ("attn_q.weight", Category::AttnQ),
            ("attn_output.weight", Category::AttnOutput),
            ("ffn_up", Category::FfnUp),
            ("ffn_gate", Category::FfnGate),
            ("ffn_down", Category::FfnDown),
        ];
        BY_PART.iter().find(|(part, _)| name.contains(part)).map_or(Self::Other, |(_, c)| *c)
    }
}

/// Parts of names llama.cpp never quantizes (`tensor_allows_quantization`): norms, routers,
/// small or positional tables of other architectures.
const NEVER_QUANTIZED: [&str; 24] = [
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
];

/// Dimensions as ggml counts them: trailing sizes of 1 do not count (`ggml_n_dims`).
pub fn n_dims(shape: &[u64]) -> usize {
    shape.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1)
}

/// Whether llama-quantize would quantize this tensor: a matrix whose name ends in `weight` and is
/// not a norm or one of the kinds it leaves alone. This build quantizes 2-D matrices only (3-D
/// expert stacks stay as they are).
pub fn allows_quantization(t: &TensorInfo) -> bool {
    let name = t.name.as_str();
    n_dims(&t.shape) == 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !NEVER_QUANTIZED.iter().any(|p| name.contains(p))
        && !(name.contains("time_mix_") && is_rwkv_small(name))
}

/// RWKV's small 2-D weights (`time_mix_{v,a,g}{0,1,2}.weight`) that llama.cpp keeps.
fn is_rwkv_small(name: &str) -> bool {
    ["v0", "v1", "v2", "a0", "a1", "a2", "g1", "g2"]
        .iter()
        .any(|s| name.ends_with(&format!("time_mix_{s}.weight")))
}

/// The fallback llama.cpp takes when a row does not fit `ty`'s blocks (`tensor_type_fallback`);
/// `None` for the 32-element formats, which have no smaller block to go to. INT4_G128 (ours)
/// falls back to its 32-element form, Q4_1.
pub fn smaller_block_fallback(ty: GgmlType) -> Option<GgmlType> {
    use GgmlType::*;
    match ty {
        Q2_K | Q3_K => Some(Q4_0),
        Q4_K => Some(Q5_0),
        Q5_K => Some(Q5_1),
        Q6_K => Some(Q8_0),
        INT4_G128 => Some(Q4_1),
        _ => None,
    }
}

/// `ty`, or what llama.cpp uses instead when `ncols` is not a whole number of its blocks: its
/// [`smaller_block_fallback`], else F16.
pub fn fit_row(ty: GgmlType, ncols: u64) -> GgmlType {
    let fits = |t: GgmlType| ncols.is_multiple_of(t.spec().block_len as u64);
    if fits(ty) {
        return ty;
    }
    match smaller_block_fallback(ty) {
        Some(f) if fits(f) => f,
        _ => GgmlType::F16,
    }
}

/// How a tensor's format was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Not a quantizable weight: it keeps its source format.
    Unquantized,
    /// The file type's format.
    Format,
    /// One of llama.cpp's per-tensor rules for this file type changed it.
    Rule,
    /// The `--keep` rule with this index matched first.
    Keep(usize),
    /// `--plan auto` chose it under the budget.
    Auto,
}

/// llama.cpp's pick for one tensor: the format after its rules, override and row fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub ty: GgmlType,
    pub choice: Choice,
    /// The format before the row-length fallback, when that changed it.
    pub row_fallback_from: Option<GgmlType>,
}

/// The model facts the rules read.
#[derive(Clone, Debug)]
struct ModelFacts {
    arch: String,
    n_layer: usize,
    n_gqa: usize,
    tied: bool,
    /// Tensors of the value-projection category (`n_attention_wv`).
    n_attn_v: usize,
}

impl ModelFacts {
    fn of(tensors: &[TensorInfo], meta: &Metadata) -> Self {
        let arch = meta.get_str("general.architecture").unwrap_or_default().to_string();
        let key = |k: &str| meta.get_u64(&format!("{arch}.{k}"));
        let n_head = key("attention.head_count").unwrap_or(1).max(1);
        let n_kv = key("attention.head_count_kv").unwrap_or(n_head).max(1);
        Self {
            n_layer: key("block_count").unwrap_or(0) as usize,
            n_gqa: (n_head / n_kv) as usize,
            tied: !tensors.iter().any(|t| Category::of(&t.name) == Category::Output),
            n_attn_v: tensors.iter().filter(|t| Category::of(&t.name) == Category::AttnV).count(),
            arch,
        }
    }
}

/// The layer of `blk.N.…`, -1 for other tensors: llama.cpp visits tensors by (layer, name), and
/// its per-layer counters follow that order.
fn layer_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// llama.cpp's pick for every tensor (in `tensors`' order) under file type `ft`, with `keep`
/// overrides (first match wins, as `--tensor-type`) and whether an importance matrix is used.
/// llama.cpp applies overrides only to quantized file types; here they apply to all.
pub fn llama_cpp_picks(
    tensors: &[TensorInfo],
    meta: &Metadata,
    ft: &FileType,
    keep: &[KeepRule],
    imatrix: bool,
) -> Vec<Pick> {
    let facts = ModelFacts::of(tensors, meta);
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let (ta, tb) = (&tensors[a].name, &tensors[b].name);
        (layer_of(ta), ta).cmp(&(layer_of(tb), tb))
    });
    let mut counters = Counters::default();
    let mut picks =
        vec![
            Pick { ty: GgmlType::F32, choice: Choice::Unquantized, row_fallback_from: None };
            tensors.len()
        ];
    for i in order {
        let t = &tensors[i];
        if !allows_quantization(t) {
            picks[i] = Pick { ty: t.ty, choice: Choice::Unquantized, row_fallback_from: None };
            continue;
        }
        let (wanted, choice) = match keep.iter().position(|k| k.matches(&t.name)) {
            Some(k) => (keep[k].format, Choice::Keep(k)),
            None if ft.format.is_quantized() => {
                let ty = rule_type(&facts, ft, imatrix, t, &mut counters);
                (ty, if ty == ft.format { Choice::Format } else { Choice::Rule })
            }
            None => (ft.format, Choice::Format),
        };
        let ty = fit_row(wanted, t.shape[0]);
        picks[i] = Pick { ty, choice, row_fallback_from: (ty != wanted).then_some(wanted) };
    }
    picks
}

/// llama.cpp's running counts of the tensors its rules have seen.
#[derive(Default)]
struct Counters {
    attn_v: usize,
    ffn_down: usize,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third between.
fn use_more_bits(i_layer: usize, n_layer: usize) -> bool {
    let (i, n) = (i_layer as i64, n_layer as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8).rem_euclid(3) == 2
}

/// `llama_tensor_get_type_impl` for dense models and the file types of [`crate::FILE_TYPES`].
fn rule_type(
    m: &ModelFacts,
    ft: &FileType,
    imatrix: bool,
    t: &TensorInfo,
    n: &mut Counters,
) -> GgmlType {
    use GgmlType::*;
    let base = ft.format;
    let falcon = m.arch == "falcon";
    let cat = Category::of(&t.name);
    // File types by llama.cpp's number (`enum llama_ftype`).
    let (q2_k, q3_k_m, q3_k_l) = (ft.id == 10, ft.id == 12, ft.id == 13);
    let (q4_k_s, q4_k_m, q5_k_m) = (ft.id == 14, ft.id == 15, ft.id == 17);
    match cat {
        Category::Output | Category::TokenEmbd if cat == Category::Output || m.tied => {
            // The output projection (and a tied embedding, which is it) keeps more bits.
            let blocks_fit = t.shape[0].is_multiple_of(base.spec().block_len as u64);
            if falcon || !blocks_fit || base == W8A8 {
                // W8A8: the output's input (the final norm's) keeps its outlier channels, since
                // a tied embedding cannot take SmoothQuant's scales; per-token int8 activations
                // there cost SmolLM2 a KLD of 0.0214 against 0.0151 with Q8_0.
                Q8_0
            } else if base != Q8_0 && base != W8A16 {
                // W8A16 keeps its own: Q8_0's bytes, with 16-bit activations there too.
                Q6_K
            } else {
                base
            }
        }
        Category::AttnV => {
            let i = n.attn_v;
            n.attn_v += 1;
            if q2_k {
                if m.n_gqa >= 4 {
                    Q4_K
                } else {
                    Q3_K
                }
            } else if q3_k_m {
                if i < 2 {
                    Q5_K
                } else {
                    Q4_K
                }
            } else if q3_k_l {
                Q5_K
            } else if (q4_k_m || q5_k_m) && use_more_bits(i, m.n_attn_v) {
                Q6_K
            } else if q4_k_s && i < 4 {
                Q5_K
            } else {
                base
            }
        }
        Category::FfnDown => {
            let (i, n_layer) = (n.ffn_down, m.n_layer);
            n.ffn_down += 1;
            let early = i < n_layer / 8;
            if q2_k {
                Q3_K
            } else if q3_k_m {
                if i < n_layer / 16 {
                    Q5_K
                } else if !falcon || use_more_bits(i, n_layer) {
                    Q4_K
                } else {
                    Q3_K
                }
            } else if q3_k_l {
                if falcon {
                    Q4_K
                } else {
                    Q5_K
                }
            } else if q4_k_m {
                match (falcon, use_more_bits(i, n_layer)) {
                    (true, _) if i < n_layer / 16 => Q6_K,
                    (true, true) => Q5_K,
                    (false, true) => Q6_K,
                    _ => base,
                }
            } else if q5_k_m && use_more_bits(i, n_layer) {
                Q6_K
            } else if q4_k_s && !falcon && early {
                Q5_K
            } else if imatrix && early && (ft.id == 2 || ft.id == 8) {
                // Guards the first ffn_down layers of Q4_0/Q5_0 when an imatrix is given.
                if ft.id == 2 {
                    Q4_1
                } else {
                    Q5_1
                }
            } else {
                base
            }
        }
        Category::AttnOutput if falcon => {
            if q3_k_l {
                Q4_K
            } else {
                base
            }
        }
        Category::AttnOutput if q2_k => Q3_K,
        Category::AttnOutput if q3_k_m => Q4_K,
        Category::AttnOutput if q3_k_l => Q5_K,
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_formats::gguf::MetaValue;

    fn t(name: &str, shape: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            ty: GgmlType::Q4_1,
            offset: 0,
            n_bytes: 0,
            info_offset: 0,
        }
    }

    fn llama_meta(layers: u64, heads: u64, kv: u64) -> Metadata {
        let mut m = Metadata::default();
        m.insert("general.architecture", MetaValue::String("llama".into()));
        m.insert("llama.block_count", MetaValue::U32(layers as u32));
        m.insert("llama.attention.head_count", MetaValue::U32(heads as u32));
        m.insert("llama.attention.head_count_kv", MetaValue::U32(kv as u32));
        m
    }

    #[test]
    fn categories_and_quantizable_tensors_follow_llama_cpp() {
        assert_eq!(Category::of("blk.3.attn_v.weight"), Category::AttnV);
        assert_eq!(Category::of("blk.3.attn_qkv.weight"), Category::AttnV);
        assert_eq!(Category::of("blk.3.ffn_down.weight"), Category::FfnDown);
        assert_eq!(Category::of("token_embd.weight"), Category::TokenEmbd);
        assert!(allows_quantization(&t("blk.0.attn_q.weight", &[576, 576])));
        assert!(!allows_quantization(&t("blk.0.attn_norm.weight", &[576])));
        assert!(!allows_quantization(&t("blk.0.attn_q.bias", &[576, 1])));
        assert!(!allows_quantization(&t("blk.0.attn_q_norm.weight", &[64, 1])));
        assert!(!allows_quantization(&t("blk.0.ffn_gate_inp.weight", &[576, 8])));
        assert_eq!(n_dims(&[576, 1, 1]), 1);
        assert_eq!(n_dims(&[576, 49152]), 2);
    }

    #[test]
    fn rows_that_do_not_fit_fall_back_as_llama_cpp() {
        assert_eq!(fit_row(GgmlType::Q6_K, 576), GgmlType::Q8_0);
        assert_eq!(fit_row(GgmlType::Q4_K, 896), GgmlType::Q5_0);
        assert_eq!(fit_row(GgmlType::Q4_K, 1536), GgmlType::Q4_K);
        assert_eq!(fit_row(GgmlType::Q4_0, 100), GgmlType::F16);
        assert_eq!(fit_row(GgmlType::F32, 3), GgmlType::F32);
    }

    #[test]
    fn a_tied_embedding_gets_the_output_rule() {
        let ts = [t("token_embd.weight", &[1536, 1000]), t("blk.0.attn_q.weight", &[1536, 1536])];
        let q4_0 = FileType::of(GgmlType::Q4_0).unwrap();
        let p = llama_cpp_picks(&ts, &llama_meta(1, 8, 8), q4_0, &[], false);
        assert_eq!((p[0].ty, p[0].choice), (GgmlType::Q6_K, Choice::Rule));
        assert_eq!((p[1].ty, p[1].choice), (GgmlType::Q4_0, Choice::Format));
        // An untied model's embedding is a plain weight; its output.weight gets the rule.
        let ts = [ts[0].clone(), t("output.weight", &[576, 1000])];
        let p = llama_cpp_picks(&ts, &llama_meta(1, 8, 8), q4_0, &[], false);
        assert_eq!(p[0].ty, GgmlType::Q4_0);
        assert_eq!((p[1].ty, p[1].row_fallback_from), (GgmlType::Q8_0, Some(GgmlType::Q6_K)));
        // W8A8 takes Q8_0 there (its activations cannot be smoothed); llmopt's other formats
        // follow llama.cpp's rule (Q6_K, or Q8_0 where the rows do not fit it). Keeping their own
        // format was measured worse: SmolLM2 int8_pc 0.0055 -> 0.0064, mxfp8 0.026 -> 0.066.
        let ts1 = &ts[..1];
        for (ty, out) in [
            (GgmlType::INT8_PC, GgmlType::Q6_K),
            (GgmlType::MXFP8, GgmlType::Q6_K),
            (GgmlType::W8A8, GgmlType::Q8_0),
            (GgmlType::Q8_0, GgmlType::Q8_0),
            (GgmlType::W8A16, GgmlType::W8A16),
            (GgmlType::NF4, GgmlType::Q6_K),
            (GgmlType::MXFP4, GgmlType::Q6_K),
        ] {
            let p =
                llama_cpp_picks(ts1, &llama_meta(1, 8, 8), FileType::of(ty).unwrap(), &[], false);
            assert_eq!(p[0].ty, out, "{ty}");
        }
        // Float file types have no rules.
        let f16 = FileType::of(GgmlType::F16).unwrap();
        let p = llama_cpp_picks(&ts, &llama_meta(1, 8, 8), f16, &[], false);
        assert!(p.iter().all(|p| p.ty == GgmlType::F16 && p.choice == Choice::Format));
    }

    #[test]
    fn counters_follow_layer_order_not_file_order() {
        // 16 layers named in file order 0, 1, 10, 11, ...: llama.cpp sorts by layer number.
        let mut names: Vec<String> = (0..16).map(|i| format!("blk.{i}.ffn_down.weight")).collect();
        names.sort();
        let ts: Vec<_> = names.iter().map(|n| t(n, &[1536, 576])).collect();
        let q4_0 = FileType::of(GgmlType::Q4_0).unwrap();
        let p = llama_cpp_picks(&ts, &llama_meta(16, 8, 8), q4_0, &[], true);
        for (name, pick) in names.iter().zip(&p) {
            let early = name == "blk.0.ffn_down.weight" || name == "blk.1.ffn_down.weight";
            let want = if early { GgmlType::Q4_1 } else { GgmlType::Q4_0 };
            assert_eq!(pick.ty, want, "{name}");
        }
        // Without an importance matrix the guard is off.
        let p = llama_cpp_picks(&ts, &llama_meta(16, 8, 8), q4_0, &[], false);
        assert!(p.iter().all(|p| p.ty == GgmlType::Q4_0));
    }

    #[test]
    fn more_bits_for_the_first_and_last_eighth_and_every_third_between() {
        let more: Vec<usize> = (0..30).filter(|&i| use_more_bits(i, 30)).collect();
        assert_eq!(more, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]);
    }

    #[test]
    fn q2_k_and_q4_k_s_mixtures() {
        let ts: Vec<_> = (0..8)
            .flat_map(|i| {
                [
                    t(&format!("blk.{i}.attn_v.weight"), &[512, 512]),
                    t(&format!("blk.{i}.ffn_down.weight"), &[512, 512]),
                    t(&format!("blk.{i}.attn_output.weight"), &[512, 512]),
                ]
            })
            .collect();
        let q2 = FileType::of(GgmlType::Q2_K).unwrap();
        let p = llama_cpp_picks(&ts, &llama_meta(8, 8, 2), q2, &[], false);
        assert!(p.chunks(3).all(|c| c[0].ty == GgmlType::Q4_K
            && c[1].ty == GgmlType::Q3_K
            && c[2].ty == GgmlType::Q3_K));
        let q4s = FileType::of(GgmlType::Q4_K).unwrap();
        let p = llama_cpp_picks(&ts, &llama_meta(8, 8, 2), q4s, &[], false);
        for (i, c) in p.chunks(3).enumerate() {
            assert_eq!(c[0].ty, if i < 4 { GgmlType::Q5_K } else { GgmlType::Q4_K });
            assert_eq!(c[1].ty, if i < 1 { GgmlType::Q5_K } else { GgmlType::Q4_K });
            assert_eq!(c[2].ty, GgmlType::Q4_K);
        }
    }

    #[test]
    fn keep_rules_override_and_skip_the_rules() {
        let ts = [t("token_embd.weight", &[576, 1000]), t("blk.0.attn_v.weight", &[576, 192])];
        let keep = [
            KeepRule::new("embd", GgmlType::Q4_0).unwrap(),
            KeepRule::new("attn_v", GgmlType::Q5_K).unwrap(),
        ];
        let q8 = FileType::of(GgmlType::Q8_0).unwrap();
        let p = llama_cpp_picks(&ts, &llama_meta(1, 9, 3), q8, &keep, false);
        assert_eq!((p[0].ty, p[0].choice), (GgmlType::Q4_0, Choice::Keep(0)));
        // 576 columns do not fit Q5_K's 256-element blocks: Q5_1, as llama.cpp.
        assert_eq!(p[1].ty, GgmlType::Q5_1);
        assert_eq!(p[1].row_fallback_from, Some(GgmlType::Q5_K));
    }
}
