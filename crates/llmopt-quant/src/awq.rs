//! AWQ, activation-aware weight quantization: each input channel of a layer's weights is scaled by
//! `s_j = a_j^α` (a_j: the channel's RMS over the calibration tokens) before encoding, and the
//! producer of that input is divided by `s` (the RMSNorm weight before Q/K/V and before gate/up,
//! the rows of up before down), so the float model is unchanged while salient channels get finer
//! steps. α is searched per layer group on a grid, minimizing the group's output error
//! `Σ_rows δᵀ (XᵀX) δ` against the captured Hessian (`δ`: a row's error after the round trip).

use std::collections::BTreeMap;

use llmopt_formats::gguf::GgufFile;
use llmopt_tensor::GgmlType;

use crate::{encode::weighted_encoder, gptq::Hessians, imatrix::Imatrix, plan::Plan, QuantError};

/// How far the search goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AwqConfig {
    /// α takes the values `0, 1/grid, ..., 1`.
    pub grid: usize,
    /// Rows of each weight (evenly spaced) whose error is measured per α.
    pub sample_rows: usize,
}

impl Default for AwqConfig {
    fn default() -> Self {
        Self { grid: 20, sample_rows: 64 }
    }
}

/// Factors applied to a tensor's decoded values before encoding, then a rotation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transform {
    /// Column `j` multiplied by `cols[j]` (a 1-D tensor is one row).
    pub cols: Option<Vec<f32>>,
    /// Row `i` multiplied by `rows[i]`.
    pub rows: Option<Vec<f32>>,
    /// Each row, after the factors, rotated by the orthonormal Walsh-Hadamard matrix in chunks of
    /// this many values (the model rotates the input the same way: see
    /// `ModelConfig::rotations`).
    pub rotate: Option<usize>,
}

impl Transform {
    /// Applies the factors to `rows` consecutive rows of `ncols`, the first being row `first`.
    pub fn apply(&self, values: &mut [f32], ncols: usize, first: usize) {
        for (i, row) in values.chunks_exact_mut(ncols).enumerate() {
            if let Some(c) = &self.cols {
                row.iter_mut().zip(c).for_each(|(v, s)| *v *= s);
            }
            if let Some(r) = &self.rows {
                let f = r[first + i];
                row.iter_mut().for_each(|v| *v *= f);
            }
            if let Some(n) = self.rotate {
                llmopt_kernels::kv::fwht(llmopt_kernels::Isa::best(), row, n);
            }
        }
    }

    /// The importance of the transformed tensor's columns: an input divided by `s` has its mean
    /// square divided by `s²`; a rotated input has, in each column, the mean of its chunk's (the
    /// diagonal of `H diag(imp) H` for a Walsh-Hadamard `H`).
    pub fn importance(&self, imp: &[f32]) -> Vec<f32> {
        let mut out = match &self.cols {
            Some(c) => imp.iter().zip(c).map(|(w, s)| w / (s * s)).collect(),
            None => imp.to_vec(),
        };
        if let Some(n) = self.rotate.filter(|&n| n > 0) {
            for chunk in out.chunks_mut(n) {
                let mean = chunk.iter().sum::<f32>() / chunk.len() as f32;
                chunk.fill(mean);
            }
        }
        out
    }
}

/// What the search chose for one group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupChoice {
    /// The layer.
    pub layer: usize,
    /// The group's first weight (`blk.N.attn_q.weight`, ...).
    pub first: String,
    /// The chosen exponent (0: no scaling).
    pub alpha: f32,
    /// The sampled rows' output error without scaling and with the chosen α.
    pub error_before: f64,
    pub error_after: f64,
}

/// The scales of a whole model: a transform per affected tensor, and the choice per group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AwqScales {
    pub transforms: BTreeMap<String, Transform>,
    pub groups: Vec<GroupChoice>,
    /// The inputs whose weights the transforms rotate: the output file must record them (their
    /// `RotationSite::key`s), so the model rotates those inputs too.
    pub rotations: llmopt_model::Rotations,
}

/// Who produces a group's input, and so takes `1/s`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Producer {
    /// The RMSNorm weight (a 1-D tensor) applied just before the group.
    Norm(&'static str),
    /// The rows of a weight whose output (through an elementwise product) is the input.
    Rows(&'static str),
}

/// Weights that share one input, and its producer: down first, so that up's rows are already
/// divided when gate and up are searched.
pub(crate) const GROUPS: [(&[&str], Producer); 3] = [
    (&["ffn_down"], Producer::Rows("ffn_up")),
    (&["attn_q", "attn_k", "attn_v"], Producer::Norm("attn_norm")),
    (&["ffn_gate", "ffn_up"], Producer::Norm("ffn_norm")),
];

/// One group member's sampled rows and how its rows will be encoded.
struct Member {
    rows: Vec<f32>,
    target: GgmlType,
    importance: Option<Vec<f32>>,
}

/// Searches α for every group of every layer; groups without a Hessian or whose producer is
/// absent are left alone. `progress(done, total)` after each layer.
pub fn search(
    src: &GgufFile,
    plan: &Plan,
    hessians: &Hessians,
    importance: Option<&Imatrix>,
    cfg: AwqConfig,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AwqScales, QuantError> {
    scales(src, plan, hessians, importance, cfg.sample_rows, progress, &mut |ms, rms, h| {
        best_alpha(ms, rms, h, cfg, threads)
    })
}

/// The scales for a fixed α in every group (tests: any α must leave the float model unchanged).
pub fn fixed(
    src: &GgufFile,
    plan: &Plan,
    hessians: &Hessians,
    alpha: f32,
) -> Result<AwqScales, QuantError> {
    let mut choose = |_: &[Member], _: &[f32], _: &crate::gptq::Hessian| (alpha, 0.0, 0.0);
    scales(src, plan, hessians, None, 1, &mut |_, _| {}, &mut choose)
}

type Chooser<'c> = dyn FnMut(&[Member], &[f32], &crate::gptq::Hessian) -> (f32, f64, f64) + 'c;

fn scales(
    src: &GgufFile,
    plan: &Plan,
    hessians: &Hessians,
    importance: Option<&Imatrix>,
    sample_rows: usize,
    progress: &mut dyn FnMut(usize, usize),
    choose: &mut Chooser<'_>,
) -> Result<AwqScales, QuantError> {
    let n_layers = plan.tensors.iter().filter_map(|t| layer_of(&t.name)).max().map_or(0, |l| l + 1);
    let mut out = AwqScales::default();
    let sample = sample_rows.max(1);
    for layer in 0..n_layers {
        for (names, producer) in GROUPS {
            let full = |n: &str| format!("blk.{layer}.{n}.weight");
            let producer_name = match producer {
                Producer::Norm(n) | Producer::Rows(n) => full(n),
            };
            let first = full(names[0]);
            let (Some(h), true) = (hessians.get(&first), plan_has(plan, &producer_name)) else {
                continue;
            };
            let mut members = Vec::new();
            for name in names.iter().map(|n| full(n)) {
                let Some(t) = plan.tensors.iter().find(|t| t.name == name) else { continue };
                if t.ncols() as usize != h.n() {
                    continue;
                }
                let rows = sampled_rows(src, &name, sample, out.transforms.get(&name))?;
                let imp = importance.and_then(|m| m.importance(&name));
                members.push(Member { rows, target: t.target, importance: imp });
            }
            if members.is_empty() {
                continue;
            }
            let rms: Vec<f32> = (0..h.n()).map(|j| h.mean_square(j).sqrt()).collect();
            let (alpha, before, after) = choose(&members, &rms, h);
            out.groups.push(GroupChoice {
                layer,
                first: first.clone(),
                alpha,
                error_before: before,
                error_after: after,
            });
            if alpha == 0.0 {
                continue;
            }
            let s = channel_scales(&rms, alpha);
            let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
            for name in names.iter().map(|n| full(n)) {
                out.transforms.entry(name).or_default().cols = Some(s.clone());
            }
            let p = out.transforms.entry(producer_name).or_default();
            match producer {
                Producer::Norm(_) => p.cols = Some(inv),
                Producer::Rows(_) => p.rows = Some(inv),
            }
        }
        progress(layer + 1, n_layers);
    }
    Ok(out)
}

pub(crate) fn plan_has(plan: &Plan, name: &str) -> bool {
    plan.tensors.iter().any(|t| t.name == name)
}

pub(crate) fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// `s_j = rms_j^α`, normalized by `sqrt(max · min)` so the scales straddle 1 (as AWQ does);
/// channels that never fired keep 1.
pub fn channel_scales(rms: &[f32], alpha: f32) -> Vec<f32> {
    let raw: Vec<f32> =
        rms.iter().map(|&a| if a > 0.0 { a.max(1e-4).powf(alpha) } else { 1.0 }).collect();
    let (lo, hi) = raw.iter().fold((f32::MAX, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let norm = (lo * hi).sqrt();
    raw.iter().map(|v| (v / norm).clamp(1e-4, 1e4)).collect()
}

/// Up to `n` evenly spaced rows of tensor `name`, decoded (and transformed, if it already has
/// factors from an earlier group).
pub(crate) fn sampled_rows(
    src: &GgufFile,
    name: &str,
    n: usize,
    transform: Option<&Transform>,
) -> Result<Vec<f32>, QuantError> {
    // A plan made for another file names tensors this one lacks.
    let info = src.tensors().iter().find(|t| t.name == name).ok_or(QuantError::PlanMismatch)?;
    let ncols = info.shape[0] as usize;
    let nrows = (info.n_elements() as usize) / ncols.max(1);
    let row_bytes = info.ty.row_bytes(ncols)?;
    let data = src.tensor_data(info);
    let step = nrows.div_ceil(n.min(nrows).max(1));
    let mut out = Vec::new();
    let mut row = vec![0f32; ncols];
    for r in (0..nrows).step_by(step.max(1)) {
        info.ty.to_f32(&data[r * row_bytes..(r + 1) * row_bytes], &mut row)?;
        if let Some(t) = transform {
            t.apply(&mut row, ncols, r);
        }
        out.extend_from_slice(&row);
    }
    Ok(out)
}

/// The output error of the members' rows after scaling by `s`, encoding, decoding, unscaling.
fn group_error(members: &[Member], s: &[f32], h: &crate::gptq::Hessian, threads: usize) -> f64 {
    let n = s.len();
    let mut total = 0f64;
    for m in members {
        if m.target.spec().block_len == 1 {
            continue;
        }
        let imp: Option<Vec<f32>> =
            m.importance.as_ref().map(|i| i.iter().zip(s).map(|(w, v)| w / (v * v)).collect());
        let rows: Vec<&[f32]> = m.rows.chunks_exact(n).collect();
        let per = rows.len().div_ceil(threads.max(1)).max(1);
        let parts: Vec<f64> = std::thread::scope(|sc| {
            let hs: Vec<_> = rows
                .chunks(per)
                .map(|chunk| {
                    let imp = imp.as_deref();
                    sc.spawn(move || {
                        let mut scaled = vec![0f32; n];
                        let mut back = vec![0f32; n];
                        let mut enc = vec![0u8; m.target.row_bytes(n).unwrap_or(0)];
                        let mut err = 0f64;
                        for w in chunk {
                            scaled
                                .iter_mut()
                                .zip(w.iter().zip(s))
                                .for_each(|(o, (x, v))| *o = x * v);
                            match (imp, weighted_encoder(m.target)) {
                                (Some(i), Some(f)) => f(&scaled, i, &mut enc),
                                _ => {
                                    if m.target.from_f32(&scaled, &mut enc).is_err() {
                                        return f64::INFINITY;
                                    }
                                }
                            }
                            if m.target.to_f32(&enc, &mut back).is_err() {
                                return f64::INFINITY;
                            }
                            for ((d, x), v) in back.iter_mut().zip(w.iter()).zip(s) {
                                *d = x - *d / v;
                            }
                            err += h.quad_form(&back);
                        }
                        err
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(f64::INFINITY)).collect()
        });
        total += parts.iter().sum::<f64>();
    }
    total
}

/// The α of the grid with the least output error; ties keep the smaller α, so no scaling
/// unless it helps. Returns (α, error at α = 0, error at α).
fn best_alpha(
    members: &[Member],
    rms: &[f32],
    h: &crate::gptq::Hessian,
    cfg: AwqConfig,
    threads: usize,
) -> (f32, f64, f64) {
    let ones = vec![1f32; rms.len()];
    let base = group_error(members, &ones, h, threads);
    let mut best = (0f32, base);
    for i in 1..=cfg.grid.max(1) {
        let alpha = i as f32 / cfg.grid.max(1) as f32;
        let e = group_error(members, &channel_scales(rms, alpha), h, threads);
        if e < best.1 {
            best = (alpha, e);
        }
    }
    (best.0, base, best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_straddle_one_and_alpha_zero_is_identity() {
        let rms = [0.5f32, 2.0, 8.0, 0.0];
        assert!(channel_scales(&rms, 0.0).iter().all(|&s| s == 1.0));
        let s = channel_scales(&rms, 0.5);
        // sqrt(rms) = .707, 1.414, 2.828 (and 1 for the silent channel), over sqrt(.707 * 2.828).
        assert!((s[0] * s[2] - 1.0).abs() < 1e-5, "{s:?}");
        assert!(s[0] < s[1] && s[1] < s[2]);
    }

    #[test]
    fn transforms_scale_columns_then_rows_and_adjust_importance() {
        let t = Transform {
            cols: Some(vec![2.0, 0.5]),
            rows: Some(vec![1.0, 10.0, 3.0]),
            rotate: None,
        };
        let mut v = vec![1.0, 1.0, 1.0, 1.0];
        t.apply(&mut v, 2, 1);
        assert_eq!(v, [20.0, 5.0, 6.0, 1.5]);
        assert_eq!(t.importance(&[4.0, 4.0]), [1.0, 16.0]);
        // A rotation by H = [[1, 1], [1, -1]] / sqrt(2) after the factors; its importance is
        // the chunk's mean.
        let t = Transform { rotate: Some(2), ..t };
        let mut v = vec![1.0, 1.0, 1.0, 1.0];
        t.apply(&mut v, 2, 1);
        let r = std::f32::consts::FRAC_1_SQRT_2;
        let want = [25.0 * r, 15.0 * r, 7.5 * r, 4.5 * r];
        assert!(v.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{v:?}");
        assert_eq!(t.importance(&[4.0, 4.0]), [8.5, 8.5]);
    }
}
