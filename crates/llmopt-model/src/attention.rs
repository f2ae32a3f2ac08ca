//! Causal attention over the paged KV cache for a ragged batch with an online softmax (no score
//! matrix), as llama.cpp's CPU flash attention does, in its two precisions: for small batches
//! (decode) one task per (token, head), query rounded to f16 and an f16 value accumulator
//! ([`AttnPrecision::F16`]); for large batches (prefill) everything f32, in tiles of tokens x the
//! heads of one KV head (`attention_prefill`, [`AttnPrecision::F32`]). The forward picks per
//! sequence ([`AttentionBatch::f32_tokens`]), so a sequence's results never depend on its batch.
//!
//! A quantized cache (Q8_0, Q4_0) is read as llama.cpp reads it: the query quantized to the key
//! format's `vec_dot_type` and dotted with the format's integer kernel, each value row decoded to
//! f32 into an f32 accumulator (the decode path is then ggml's `one_chunk` for a non-f16 V).

use half::{f16, slice::HalfFloatSliceExt};
use llmopt_kernels::{f16ops, kv, Isa, Kernels, ThreadPool};
use llmopt_tensor::GgmlType;

use crate::KvType;

/// Arithmetic of the attention kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPrecision {
    /// f16 query, f16 dot, f16 value accumulator (llama.cpp's vector path).
    F16,
    /// f32 query and accumulator (llama.cpp's tiled path).
    F32,
}

/// Batches of at least this many tokens use [`AttnPrecision::F32`] (llama.cpp's `GGML_FA_TILE_Q`).
pub const F32_MIN_TOKENS: usize = 64;

/// Largest head size the stack buffers hold.
pub const MAX_HEAD_DIM: usize = 512;

/// What one attention call needs to know about the batch.
#[derive(Debug)]
pub struct AttentionBatch<'a> {
    /// Position of each token.
    pub positions: &'a [usize],
    /// For each token, the range of `offsets` that holds its sequence's slot offsets (position 0 on).
    pub seq_offsets: &'a [(usize, usize)],
    /// Byte offsets of the rows (into a layer's K/V storage) of every position of every sequence
    /// in the batch.
    pub offsets: &'a [usize],
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Attend only to the last `window` positions (inclusive of the token's own).
    pub window: Option<usize>,
    pub precision: AttnPrecision,
    /// When given, overrides `precision` per token: `true` for [`AttnPrecision::F32`]. The forward
    /// marks the tokens of sequences with at least [`F32_MIN_TOKENS`] tokens in the call.
    pub f32_tokens: Option<&'a [bool]>,
}

/// One layer of the KV cache as attention reads it: key and value rows of type `ty`, each token's
/// row at the byte offsets of [`AttentionBatch::offsets`], a head's part `ty.row_bytes(head_dim)`
/// bytes at `ty.row_bytes(kv_head * head_dim)`.
#[derive(Clone, Copy, Debug)]
pub struct KvLayer<'a> {
    pub ty: KvType,
    pub k: &'a [u8],
    pub v: &'a [u8],
}

impl<'a> KvLayer<'a> {
    /// A layer of f16 rows (offsets count bytes: two per value).
    pub fn f16(k: &'a [f16], v: &'a [f16]) -> Self {
        Self { ty: KvType::F16, k: bytemuck::cast_slice(k), v: bytemuck::cast_slice(v) }
    }

    /// Whether values are f16 (ggml's f16-accumulator path) rather than decoded to f32.
    pub(crate) fn is_f16(&self) -> bool {
        self.ty.ggml() == GgmlType::F16
    }
}

/// The output buffer as the attention tasks share it: each writes its own rows.
pub(crate) struct OutPtr(pub(crate) *mut f32);

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the raw field).
    pub(crate) fn get(&self) -> *mut f32 {
        self.0
    }
}
// SAFETY: each task writes disjoint `head_dim` rows of the output (one task per token and head in
// `attend`, per tile and KV head in `attention_prefill`).
unsafe impl Sync for OutPtr {}
// SAFETY: as above; the pointer is only dereferenced inside `pool.run`, which joins before returning.
unsafe impl Send for OutPtr {}

/// Computes `out[t, h] = softmax(q[t, h] · K^T * scale) V` for every token `t` and head `h`.
pub fn attend(
    pool: &ThreadPool,
    b: &AttentionBatch<'_>,
    q: &[f32],
    kv: KvLayer<'_>,
    out: &mut [f32],
) {
    let (hd, nh) = (b.head_dim, b.n_head);
    let n_tok = b.positions.len();
    assert!(hd <= MAX_HEAD_DIM, "head size {hd} exceeds {MAX_HEAD_DIM}");
    assert!(q.len() >= n_tok * nh * hd && out.len() >= n_tok * nh * hd);
    let is_f32 = |t: usize| b.f32_tokens.map_or(b.precision == AttnPrecision::F32, |m| m[t]);
    let (any_f32, all_f32) = match b.f32_tokens {
        Some(m) => (m.iter().any(|&x| x), m.iter().all(|&x| x)),
        None => (b.precision == AttnPrecision::F32, b.precision == AttnPrecision::F32),
    };
    if any_f32 {
        crate::attention_prefill::attend_prefill(pool, b, q, kv, out, &is_f32);
    }
    if all_f32 {
        return;
    }
    let out_ptr = OutPtr(out.as_mut_ptr());
    let group = nh / b.n_kv_head;
    let task = |i: usize| {
        let (t, h) = (i / nh, i % nh);
        if is_f32(t) {
            return;
        }
        let q_row = &q[(t * nh + h) * hd..][..hd];
        // SAFETY: task i owns out[(t*nh + h)*hd .. +hd]; tasks are distinct and in bounds (asserted above).
        let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add((t * nh + h) * hd), hd) };
        let (start, len) = b.seq_offsets[t];
        let offsets = &b.offsets[start..start + len];
        let pos = b.positions[t];
        let lo = b.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let rows = &offsets[lo..=pos];
        if kv.is_f16() {
            let (k, v) = (bytemuck::cast_slice(kv.k), bytemuck::cast_slice(kv.v));
            attend_one_f16(q_row, rows, (h / group) * hd, k, v, b.scale, o);
        } else {
            attend_one_quantized(q_row, rows, kv.ty.row_bytes((h / group) * hd), kv, b.scale, o);
        }
    };
    pool.run(n_tok * nh, &task);
}

/// One query head against the cached rows at `offsets`, all in f16 as ggml's
/// `flash_attn_ext_f16_one_chunk`: f16 query, f16 dot, f16 accumulator rescaled on a new maximum.
fn attend_one_f16(
    q: &[f32],
    offsets: &[usize],
    kv_off: usize,
    k: &[f16],
    v: &[f16],
    scale: f32,
    out: &mut [f32],
) {
    let hd = q.len();
    let isa = Isa::best();
    let mut qh = [f16::ZERO; MAX_HEAD_DIM];
    qh[..hd].convert_from_f32_slice(q);
    let qh = &qh[..hd];
    let mut acc = [f16::ZERO; MAX_HEAD_DIM];
    let acc = &mut acc[..hd];
    let l = f16ops::attend_head_f16(isa, qh, k, v, offsets, kv_off, scale, acc);
    let inv = if l == 0.0 { 0.0 } else { 1.0 / l };
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = a.to_f32() * inv;
    }
}

/// One query head against quantized cached rows, as ggml's `flash_attn_ext_f16_one_chunk` does for
/// a quantized K and V: the query in K's `vec_dot_type`, the format's dot, scores scaled after the
/// dot, an f32 accumulator rescaled on a new maximum, each value row decoded and added by FMA.
fn attend_one_quantized(
    q: &[f32],
    offsets: &[usize],
    head_off: usize,
    kv: KvLayer<'_>,
    scale: f32,
    out: &mut [f32],
) {
    let hd = q.len();
    let isa = Isa::best();
    let kernels = Kernels::get(isa).expect("the best ISA is available");
    let ty = kv.ty.ggml();
    let q_ty = ty.spec().vec_dot_type;
    let (dot, quantize) = match (kernels.vec_dot(ty), kernels.quantize(q_ty)) {
        (Some(d), Some(q)) => (d, q),
        _ => unreachable!("every KV type has a dot and its query format a quantizer"),
    };
    let mut qq = [0u8; Q_BYTES];
    let q_bytes = q_ty.row_bytes(hd).expect("heads are whole blocks (checked by the config)");
    let qq = &mut qq[..q_bytes];
    quantize(q, qq);
    let row = kv.ty.row_bytes(hd);
    let mut acc = [0f32; MAX_HEAD_DIM];
    let acc = &mut acc[..hd];
    let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
    for &off in offsets {
        let base = off + head_off;
        let s = dot(hd, &kv.k[base..base + row], qq) * scale;
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > m {
            ms = (m - s).exp();
            m = s;
            acc.iter_mut().for_each(|a| *a *= ms);
        } else {
            vs = (s - m).exp();
        }
        kv::mad_dequant(isa, ty, acc, &kv.v[base..base + row], vs);
        l = l * ms + vs;
    }
    let inv = if l == 0.0 { 0.0 } else { 1.0 / l };
    for (o, a) in out.iter_mut().zip(acc.iter()) {
        *o = a * inv;
    }
}

/// Room for a query head of [`MAX_HEAD_DIM`] in any block format (Q8_0: 34 bytes per 32 values).
pub(crate) const Q_BYTES: usize = MAX_HEAD_DIM / 32 * 36;

#[cfg(test)]
mod tests {
    use super::*;

    /// Two-pass softmax attention in f64 (query rounded to f16 when `round_q`): the reference.
    fn naive(
        q: &[f32],
        keys: &[Vec<f32>],
        vals: &[Vec<f32>],
        scale: f32,
        round_q: bool,
    ) -> Vec<f32> {
        let r = |x: f32| f64::from(f16::from_f32(x).to_f32());
        let rq = |x: f32| if round_q { r(x) } else { f64::from(x) };
        let s: Vec<f64> = keys
            .iter()
            .map(|k| q.iter().zip(k).map(|(&a, &b)| rq(a) * r(b)).sum::<f64>() * f64::from(scale))
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        (0..q.len())
            .map(|d| (e.iter().zip(vals).map(|(w, v)| w * r(v[d])).sum::<f64>() / z) as f32)
            .collect()
    }

    #[test]
    fn matches_naive_softmax_attention_with_gqa_and_window() {
        let (hd, nh, nkv, n_pos) = (40usize, 4usize, 2usize, 23usize);
        let kv_dim = nkv * hd;
        let val = |i: usize| ((i as f32) * 0.618).sin() * 2.0;
        // Scatter positions over slots in reverse order to exercise the offsets.
        let offsets: Vec<usize> = (0..n_pos).map(|p| (n_pos - 1 - p) * kv_dim).collect();
        let byte_offsets: Vec<usize> = offsets.iter().map(|o| 2 * o).collect();
        let kc: Vec<f16> = (0..n_pos * kv_dim).map(|i| f16::from_f32(val(i))).collect();
        let vc: Vec<f16> = (0..n_pos * kv_dim).map(|i| f16::from_f32(val(i + 7777))).collect();
        let positions = [0usize, 5, 22];
        let q: Vec<f32> = (0..positions.len() * nh * hd).map(|i| val(i + 99)).collect();
        let seq_offsets = vec![(0usize, n_pos); positions.len()];
        for (window, precision) in [
            (None, AttnPrecision::F32),
            (Some(4), AttnPrecision::F32),
            (None, AttnPrecision::F16),
            (Some(5), AttnPrecision::F16),
        ] {
            let b = AttentionBatch {
                positions: &positions,
                seq_offsets: &seq_offsets,
                offsets: &byte_offsets,
                n_head: nh,
                n_kv_head: nkv,
                head_dim: hd,
                scale: 0.3,
                window,
                precision,
                f32_tokens: None,
            };
            let mut out = vec![0f32; q.len()];
            for threads in [1, 2] {
                attend(&ThreadPool::new(threads), &b, &q, KvLayer::f16(&kc, &vc), &mut out);
                for (t, &pos) in positions.iter().enumerate() {
                    for h in 0..nh {
                        let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                        let kvh = h / (nh / nkv);
                        let rows = |c: &[f16]| -> Vec<Vec<f32>> {
                            (lo..=pos)
                                .map(|p| {
                                    c[offsets[p] + kvh * hd..][..hd]
                                        .iter()
                                        .map(|x| x.to_f32())
                                        .collect()
                                })
                                .collect()
                        };
                        let f16 = precision == AttnPrecision::F16;
                        let want =
                            naive(&q[(t * nh + h) * hd..][..hd], &rows(&kc), &rows(&vc), 0.3, f16);
                        let got = &out[(t * nh + h) * hd..][..hd];
                        // The f16 accumulator rounds at every step (relative 2^-11 each).
                        let tol = if f16 { 1e-2 } else { 1e-4 };
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g - w).abs() < tol, "{precision:?} t{t} h{h} {g} vs {w}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn prefill_tiles_match_naive_over_key_blocks_and_two_sequences() {
        // Two sequences of a ragged batch: 150 new tokens after 20 cached for one (several key
        // blocks and tiles), 70 from empty for the other; GQA 6 heads over 2, window on and off.
        let (hd, nh, nkv) = (64usize, 6usize, 2usize);
        let kv_dim = nkv * hd;
        let val = |i: usize| ((i as f32) * 0.377).sin() * 1.5;
        let lens = [170usize, 70];
        let new = [150usize, 70];
        let mut offsets = Vec::new();
        let mut seq_offsets = Vec::new();
        let mut positions = Vec::new();
        let mut slot = 0;
        for (s, &len) in lens.iter().enumerate() {
            let base = offsets.len();
            for _ in 0..len {
                offsets.push(slot * kv_dim);
                slot += 1;
            }
            for p in len - new[s]..len {
                positions.push(p);
                seq_offsets.push((base, len));
            }
        }
        let kc: Vec<f16> = (0..slot * kv_dim).map(|i| f16::from_f32(val(i))).collect();
        let vc: Vec<f16> = (0..slot * kv_dim).map(|i| f16::from_f32(val(i + 31337))).collect();
        let n_tok = positions.len();
        let q: Vec<f32> = (0..n_tok * nh * hd).map(|i| val(i + 4242)).collect();
        for window in [None, Some(37)] {
            let byte_offsets: Vec<usize> = offsets.iter().map(|o| 2 * o).collect();
            let b = AttentionBatch {
                positions: &positions,
                seq_offsets: &seq_offsets,
                offsets: &byte_offsets,
                n_head: nh,
                n_kv_head: nkv,
                head_dim: hd,
                scale: 0.125,
                window,
                precision: AttnPrecision::F32,
                f32_tokens: None,
            };
            let mut out = vec![0f32; q.len()];
            attend(&ThreadPool::new(2), &b, &q, KvLayer::f16(&kc, &vc), &mut out);
            for t in (0..n_tok).step_by(7).chain([n_tok - 1]) {
                let ((base, _), pos) = (seq_offsets[t], positions[t]);
                let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                for h in 0..nh {
                    let kvh = h / (nh / nkv);
                    let rows = |c: &[f16]| -> Vec<Vec<f32>> {
                        (lo..=pos)
                            .map(|p| {
                                let o = offsets[base + p] + kvh * hd;
                                c[o..o + hd].iter().map(|x| x.to_f32()).collect()
                            })
                            .collect()
                    };
                    let want =
                        naive(&q[(t * nh + h) * hd..][..hd], &rows(&kc), &rows(&vc), 0.125, false);
                    let got = &out[(t * nh + h) * hd..][..hd];
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-4, "{window:?} t{t} h{h}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn quantized_cache_matches_naive_over_decoded_rows_in_both_paths() {
        // Q8_0 and Q4_0 rows (head size 64, two blocks), GQA 4 heads over 2, 90 positions: decode
        // tokens (per-pair path) and a 70-token run (tiles over two key blocks), window on and off.
        let (hd, nh, nkv, n_pos) = (64usize, 4usize, 2usize, 90usize);
        let kv_dim = nkv * hd;
        let val = |i: usize| ((i as f32) * 0.433).sin() * 2.5;
        let positions: Vec<usize> = (20..90).collect();
        let q: Vec<f32> = (0..positions.len() * nh * hd).map(|i| val(i + 555)).collect();
        let seq_offsets = vec![(0usize, n_pos); positions.len()];
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let kt = KvType::new(ty).unwrap();
            let row = kt.row_bytes(kv_dim);
            let encode = |salt: usize| -> Vec<u8> {
                let x: Vec<f32> = (0..n_pos * kv_dim).map(|i| val(i + salt)).collect();
                let mut b = vec![0u8; n_pos * row];
                ty.from_f32(&x, &mut b).unwrap();
                b
            };
            let (kc, vc) = (encode(1), encode(4321));
            let decode = |c: &[u8], p: usize, kvh: usize| -> Vec<f32> {
                let mut out = vec![0f32; kv_dim];
                ty.to_f32(&c[p * row..(p + 1) * row], &mut out).unwrap();
                out[kvh * hd..(kvh + 1) * hd].to_vec()
            };
            // The query as the dot sees it: quantized to Q8_0 and back.
            let q8 = |x: &[f32]| -> Vec<f32> {
                let mut b = vec![0u8; GgmlType::Q8_0.row_bytes(hd).unwrap()];
                GgmlType::Q8_0.from_f32(x, &mut b).unwrap();
                let mut out = vec![0f32; hd];
                GgmlType::Q8_0.to_f32(&b, &mut out).unwrap();
                out
            };
            let offsets: Vec<usize> = (0..n_pos).map(|p| p * row).collect();
            let layer = KvLayer { ty: kt, k: &kc, v: &vc };
            for (window, f32_tokens) in
                [(None, false), (Some(33), false), (None, true), (Some(9), true)]
            {
                let marks = vec![f32_tokens; positions.len()];
                let b = AttentionBatch {
                    positions: &positions,
                    seq_offsets: &seq_offsets,
                    offsets: &offsets,
                    n_head: nh,
                    n_kv_head: nkv,
                    head_dim: hd,
                    scale: 0.125,
                    window,
                    precision: AttnPrecision::F16,
                    f32_tokens: Some(&marks),
                };
                let mut out = vec![0f32; q.len()];
                attend(&ThreadPool::new(2), &b, &q, layer, &mut out);
                for (t, &pos) in positions.iter().enumerate().step_by(3) {
                    let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    for h in 0..nh {
                        let kvh = h / (nh / nkv);
                        let keys: Vec<Vec<f32>> = (lo..=pos).map(|p| decode(&kc, p, kvh)).collect();
                        let vals: Vec<Vec<f32>> = (lo..=pos).map(|p| decode(&vc, p, kvh)).collect();
                        let qr = q8(&q[(t * nh + h) * hd..][..hd]);
                        let want = naive(&qr, &keys, &vals, 0.125, false);
                        let got = &out[(t * nh + h) * hd..][..hd];
                        for (g, w) in got.iter().zip(&want) {
                            // f16 rounding of the decoded rows inside `naive` is the slack.
                            assert!(
                                (g - w).abs() < 5e-3,
                                "{ty} {window:?} {f32_tokens} t{t} h{h}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}
