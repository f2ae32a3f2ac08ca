//! SmoothQuant (Xiao et al. 2023) for W8A8: per input channel of a layer group, `s_j =
//! max|X_j|^α / max|W_j|^(1-α)` moves activation outliers into the weights, where the per-token
//! int8 activations of W8A8 lose them least. The scales fold into the group's producers as
//! AWQ's do ([`Transform`]: the float model is unchanged), and α is chosen per group on sampled
//! calibration rows by the squared error of the quantized product, no scaling included.

use std::collections::BTreeMap;

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{rotation_chunk, Model, Observer, RotationSite};
use llmopt_tensor::GgmlType;

// AWQ's groups and producers: the same inputs, scaled the same way. (The attention output, with
// its scales folded into V's rows per KV-head position, was tried: SmolLM2's KLD 0.00528 against
// 0.00521 without.)
use crate::awq::{layer_of, plan_has, sampled_rows, AwqScales, GroupChoice, Producer, GROUPS};
use crate::gptq::hessian_key;
use crate::{imatrix, CalibConfig, Imatrix, Plan, QuantError};

/// One group input's statistics: the largest |x| per column, and some of its rows.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelStats {
    n: usize,
    amax: Vec<f32>,
    rows: Vec<f32>,
    seen: u64,
}

impl ChannelStats {
    /// Columns of the input.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The largest |x| of each column over every calibration token.
    pub fn amax(&self) -> &[f32] {
        &self.amax
    }

    /// The sampled rows (`n` values each), evenly spread over the calibration tokens.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }
}

/// An [`Observer`] of the inputs SmoothQuant scales (those of Q/K/V, gate/up and down, kept
/// under the first name of each group, as GPTQ's Hessians): per-column |x| maxima, and one row
/// in `stride` of the calibration tokens, at most `max_rows`.
#[derive(Clone, Debug, Default)]
pub struct ActStats {
    map: BTreeMap<String, ChannelStats>,
    stride: u64,
    max_rows: usize,
}

impl ActStats {
    /// Statistics over `total_tokens` calibration tokens, keeping about `max_rows` rows of each.
    pub fn new(total_tokens: usize, max_rows: usize) -> Self {
        let stride = (total_tokens / max_rows.max(1)).max(1) as u64;
        Self { map: BTreeMap::new(), stride, max_rows }
    }

    /// The statistics of `name`'s input, if captured.
    pub fn get(&self, name: &str) -> Option<&ChannelStats> {
        self.map.get(hessian_key(name).as_ref())
    }

    /// Inputs captured.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Whether `name` is the first weight of one of SmoothQuant's groups.
fn is_group_input(name: &str) -> bool {
    GROUPS.iter().any(|(names, _)| name.ends_with(&format!(".{}.weight", names[0])))
}

impl Observer for ActStats {
    fn on_linear(&mut self, name: &str, n_tok: usize, input: &[f32], _output: &[f32]) {
        if n_tok == 0 || layer_of(name).is_none() || !is_group_input(name) {
            return;
        }
        let n = input.len() / n_tok;
        let (stride, max_rows) = (self.stride, self.max_rows);
        let s = self.map.entry(name.to_string()).or_insert_with(|| ChannelStats {
            n,
            amax: vec![0.0; n],
            rows: Vec::new(),
            seen: 0,
        });
        if s.n != n {
            return;
        }
        for x in input.chunks_exact(n) {
            s.amax.iter_mut().zip(x).for_each(|(m, v)| *m = m.max(v.abs()));
            if s.seen.is_multiple_of(stride) && s.rows.len() < max_rows * n {
                s.rows.extend_from_slice(x);
            }
            s.seen += 1;
        }
    }
}

/// Runs `tokens` through `model` in chunks as [`crate::calibrate`] does and captures the
/// activation statistics with the importance matrix of the same pass.
pub fn capture(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &CalibConfig,
    max_rows: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Imatrix, ActStats), QuantError> {
    let total = (tokens.len() / cfg.ctx.max(1)).min(cfg.max_tokens / cfg.ctx.max(1)) * cfg.ctx;
    imatrix::calibrate_with(model, pool, tokens, cfg, ActStats::new(total, max_rows), progress)
}

/// How α is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothConfig {
    /// One α for every group instead of the search.
    pub alpha: Option<f32>,
    /// The search tries no scaling and α = `1/grid, 2/grid, ..., 1`.
    pub grid: usize,
    /// Rows of each weight (evenly spaced) whose output error is measured.
    pub sample_rows: usize,
    /// Rotate the inputs and rows of Q/K/V, gate/up and down by the Walsh-Hadamard matrix after
    /// the scales, in chunks of [`rotation_chunk`] of the input's width (the model rotates those
    /// inputs too: `ModelConfig::rotations`, from the keys the output must record).
    pub rotate: bool,
}

impl Default for SmoothConfig {
    fn default() -> Self {
        Self { alpha: None, grid: 20, sample_rows: 64, rotate: false }
    }
}

/// `s_j = amax_x^α / amax_w^(1-α)`, clamped to `[1e-4, 1e4]`; a channel that never fired, or
/// whose weights are all zero, keeps 1.
pub fn smooth_scales(amax_x: &[f32], amax_w: &[f32], alpha: f32) -> Vec<f32> {
    amax_x
        .iter()
        .zip(amax_w)
        .map(|(&x, &w)| {
            if x > 0.0 && w > 0.0 {
                (x.powf(alpha) / w.powf(1.0 - alpha)).clamp(1e-4, 1e4)
            } else {
                1.0
            }
        })
        .collect()
}

/// One group member: all its rows (for the column maxima), its sampled rows and its format.
struct Member {
    rows: Vec<f32>,
    sampled: Vec<f32>,
    target: GgmlType,
}

/// Chooses α for every group of every layer (or takes `cfg.alpha`); groups whose producer or
/// statistics are absent are left alone. `progress(done, total)` after each layer.
pub fn search(
    src: &GgufFile,
    plan: &Plan,
    stats: &ActStats,
    cfg: SmoothConfig,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AwqScales, QuantError> {
    let n_layers = plan.tensors.iter().filter_map(|t| layer_of(&t.name)).max().map_or(0, |l| l + 1);
    let mut out = AwqScales::default();
    for layer in 0..n_layers {
        for (names, producer) in GROUPS {
            let full = |n: &str| format!("blk.{layer}.{n}.weight");
            let producer_name = match producer {
                Producer::Norm(n) | Producer::Rows(n) => full(n),
            };
            let first = full(names[0]);
            let Some(st) = stats.get(&first) else { continue };
            if !plan_has(plan, &producer_name) || st.rows.is_empty() {
                continue;
            }
            let n = st.n;
            let mut members = Vec::new();
            for name in names.iter().map(|n| full(n)) {
                let Some(t) = plan.tensors.iter().find(|t| t.name == name) else { continue };
                if t.ncols() as usize != n {
                    continue;
                }
                let rows = sampled_rows(src, &name, usize::MAX, out.transforms.get(&name))?;
                let n_rows = rows.len() / n;
                let step = n_rows.div_ceil(cfg.sample_rows.clamp(1, n_rows.max(1))).max(1);
                let sampled: Vec<f32> =
                    rows.chunks_exact(n).step_by(step).flatten().copied().collect();
                members.push(Member { rows, sampled, target: t.target });
            }
            if members.is_empty() {
                continue;
            }
            let mut amax_w = vec![0f32; n];
            for m in &members {
                for row in m.rows.chunks_exact(n) {
                    amax_w.iter_mut().zip(row).for_each(|(a, v)| *a = a.max(v.abs()));
                }
            }
            let candidates: Vec<f32> = match cfg.alpha {
                Some(a) => vec![a],
                None => {
                    let g = cfg.grid.max(1);
                    std::iter::once(0.0).chain((1..=g).map(|i| i as f32 / g as f32)).collect()
                }
            };
            let site = RotationSite::of_weight(names[0]).filter(|_| cfg.rotate);
            let rot = site.and_then(|_| rotation_chunk(n));
            let errors = candidate_errors(&members, st, &amax_w, &candidates, rot, threads);
            // The first least error: no scaling wins ties.
            let (mut best, mut best_err) = (0, errors[0]);
            for (i, &e) in errors.iter().enumerate() {
                if e < best_err {
                    (best, best_err) = (i, e);
                }
            }
            let alpha = candidates[best];
            let before = if cfg.alpha.is_some() {
                candidate_errors(&members, st, &amax_w, &[0.0], rot, threads)[0]
            } else {
                errors[0]
            };
            out.groups.push(GroupChoice {
                layer,
                first: first.clone(),
                alpha,
                error_before: before,
                error_after: best_err,
            });
            if let (Some(site), Some(r)) = (site, rot) {
                for name in names.iter().map(|n| full(n)) {
                    out.transforms.entry(name).or_default().rotate = Some(r);
                }
                out.rotations.set(site, Some(r));
            }
            if alpha == 0.0 {
                continue;
            }
            let s = smooth_scales(&st.amax, &amax_w, alpha);
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

/// The summed squared output error of the members' sampled rows over the sampled tokens for
/// each candidate α (0: no scaling), with both sides rotated in chunks of `rot` after the scales,
/// candidates spread over `threads`.
fn candidate_errors(
    members: &[Member],
    st: &ChannelStats,
    amax_w: &[f32],
    candidates: &[f32],
    rot: Option<usize>,
    threads: usize,
) -> Vec<f64> {
    let threads = threads.clamp(1, candidates.len().max(1));
    let mut errors = vec![0f64; candidates.len()];
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                sc.spawn(move || {
                    (k..candidates.len())
                        .step_by(threads)
                        .map(|i| {
                            let s = if candidates[i] == 0.0 {
                                vec![1.0; st.n]
                            } else {
                                smooth_scales(&st.amax, amax_w, candidates[i])
                            };
                            (i, relative_error(members, st, &s, rot))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, e) in h.join().unwrap_or_default() {
                errors[i] = e;
            }
        }
    });
    errors
}

/// `Σ_tokens Σ_rows (w·x - Q(w∘s)·Q(x/s))² / Σ_rows (w·x)²` over the members' sampled rows:
/// weights through their format's codec, activations through its `vec_dot_type`'s (none for
/// f32). Each token's error is relative to its output's size, so the few tokens with massive
/// activations (a chunk's first) do not outweigh all the others.
fn relative_error(members: &[Member], st: &ChannelStats, s: &[f32], rot: Option<usize>) -> f64 {
    let n = st.n;
    let n_tok = st.rows.len() / n.max(1);
    let (mut err, mut energy) = (vec![0f64; n_tok], vec![0f64; n_tok]);
    for m in members {
        let acts = round_trip_rows(m.target.spec().vec_dot_type, &st.rows, n, rot, |x, i| x / s[i]);
        let weights = round_trip_rows(m.target, &m.sampled, n, rot, |w, i| w * s[i]);
        let (Some(acts), Some(weights)) = (acts, weights) else { return f64::INFINITY };
        for (w, wq) in m.sampled.chunks_exact(n).zip(weights.chunks_exact(n)) {
            let rows = st.rows.chunks_exact(n).zip(acts.chunks_exact(n));
            for (t, (x, xq)) in rows.enumerate() {
                let y = f64::from(dot(w, x));
                let d = y - f64::from(dot(wq, xq));
                err[t] += d * d;
                energy[t] += y * y;
            }
        }
    }
    err.iter().zip(&energy).filter(|(_, &e)| e > 0.0).map(|(d, e)| d / e).sum()
}

/// Each row mapped by `f(value, column)` and rotated in chunks of `rot`, then encoded in `ty`
/// and decoded (floats: as is); `None` where `ty` cannot encode it.
fn round_trip_rows(
    ty: GgmlType,
    rows: &[f32],
    n: usize,
    rot: Option<usize>,
    f: impl Fn(f32, usize) -> f32,
) -> Option<Vec<f32>> {
    let mut out: Vec<f32> =
        rows.chunks_exact(n).flat_map(|r| r.iter().enumerate().map(|(i, &v)| f(v, i))).collect();
    if let Some(r) = rot {
        llmopt_kernels::kv::fwht(llmopt_kernels::Isa::best(), &mut out, r);
    }
    if ty.spec().block_len == 1 || ty == GgmlType::F32 {
        return Some(out);
    }
    let mut enc = vec![0u8; ty.row_bytes(n).ok()?];
    for row in out.chunks_exact_mut(n) {
        ty.from_f32(row, &mut enc).ok()?;
        ty.to_f32(&enc, row).ok()?;
    }
    Some(out)
}

/// An f32 dot in 8 lanes (vectorizes without `unsafe`).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_balance_activation_and_weight_maxima() {
        let s = smooth_scales(&[16.0, 1.0, 0.0, 4.0], &[1.0, 4.0, 2.0, 0.0], 0.5);
        assert_eq!(s, [4.0, 0.5, 1.0, 1.0]);
        // After scaling, column maxima of X/s and W*s are equal: sqrt(amax_x * amax_w).
        assert_eq!([16.0 / s[0], 1.0 / s[1]], [1.0 * s[0], 4.0 * s[1]]);
    }

    #[test]
    fn stats_keep_column_maxima_and_every_stride_th_row() {
        let mut st = ActStats::new(8, 4); // stride 2
        let rows: Vec<f32> = (0..8).flat_map(|t| [t as f32, -(t as f32) * 2.0]).collect();
        st.on_linear("blk.0.attn_q.weight", 8, &rows, &[]);
        // Not a group's first input, or not a layer weight: ignored.
        st.on_linear("blk.0.attn_k.weight", 8, &rows, &[]);
        st.on_linear("blk.0.attn_output.weight", 8, &rows, &[]);
        st.on_linear("output.weight", 8, &rows, &[]);
        assert_eq!(st.len(), 1);
        let s = st.get("blk.0.attn_v.weight").unwrap();
        assert_eq!(s.amax(), [7.0, 14.0]);
        assert_eq!(s.rows(), [0.0, -0.0, 2.0, -4.0, 4.0, -8.0, 6.0, -12.0]);
    }

    #[test]
    fn an_outlier_channel_is_smoothed_and_the_error_drops() {
        // Activations with one channel 50x the others; weights of similar size everywhere.
        let n = 64;
        let rows: Vec<f32> = (0..32)
            .flat_map(|t| {
                (0..n).map(move |j| {
                    let v = ((t * 7 + j * 13) % 17) as f32 / 8.0 - 1.0;
                    if j == 5 {
                        v * 50.0 + 40.0
                    } else {
                        v
                    }
                })
            })
            .collect();
        let mut st = ActStats::new(32, 32);
        st.on_linear("blk.0.ffn_down.weight", 32, &rows, &[]);
        let st = st.get("blk.0.ffn_down.weight").unwrap();
        let w: Vec<f32> = (0..16 * n).map(|i| ((i * 31) % 23) as f32 / 11.0 - 1.0).collect();
        let m = Member { rows: w.clone(), sampled: w, target: GgmlType::W8A8 };
        let amax_w = {
            let mut a = vec![0f32; n];
            m.rows.chunks_exact(n).for_each(|r| {
                a.iter_mut().zip(r).for_each(|(a, v)| *a = a.max(v.abs()));
            });
            a
        };
        let e = candidate_errors(std::slice::from_ref(&m), st, &amax_w, &[0.0, 0.5], None, 2);
        assert!(e[1] < 0.5 * e[0], "smoothing did not help: {e:?}");
        // A rotation spreads the outlier over the chunk: here it alone beats the scales alone.
        let r = candidate_errors(std::slice::from_ref(&m), st, &amax_w, &[0.0], Some(64), 2);
        assert!(r[0] < 0.5 * e[0] && r[0] < e[1], "rotation did not help: {r:?} vs {e:?}");
    }
}
