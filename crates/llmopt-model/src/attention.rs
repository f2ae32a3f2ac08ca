//! Causal attention over the paged KV cache for a ragged batch: one task per (token, head), each
//! streaming its sequence's cached keys and values with an online softmax (no score buffer), as
//! llama.cpp's CPU flash attention does. Queries are rounded to f16 like the f16 cache they meet.

use half::{f16, slice::HalfFloatSliceExt};
use llmopt_kernels::ThreadPool;

/// Largest head size the stack buffers hold.
pub const MAX_HEAD_DIM: usize = 512;

/// What one attention call needs to know about the batch.
#[derive(Debug)]
pub struct AttentionBatch<'a> {
    /// Position of each token.
    pub positions: &'a [usize],
    /// For each token, the range of `offsets` that holds its sequence's slot offsets (position 0 on).
    pub seq_offsets: &'a [(usize, usize)],
    /// Slot offsets (into a layer's K/V storage) of every position of every sequence in the batch.
    pub offsets: &'a [usize],
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Attend only to the last `window` positions (inclusive of the token's own).
    pub window: Option<usize>,
}

struct OutPtr(*mut f32);

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the raw field).
    fn get(&self) -> *mut f32 {
        self.0
    }
}
// SAFETY: each task writes a disjoint `head_dim` slice of the output (see `attend`).
unsafe impl Sync for OutPtr {}
// SAFETY: as above; the pointer is only dereferenced inside `pool.run`, which joins before returning.
unsafe impl Send for OutPtr {}

/// Computes `out[t, h] = softmax(q[t, h] · K^T * scale) V` for every token `t` and head `h`.
pub fn attend(pool: &ThreadPool, b: &AttentionBatch<'_>, q: &[f32], k_cache: &[f16], v_cache: &[f16], out: &mut [f32]) {
    let (hd, nh) = (b.head_dim, b.n_head);
    let n_tok = b.positions.len();
    assert!(hd <= MAX_HEAD_DIM, "head size {hd} exceeds {MAX_HEAD_DIM}");
    assert!(q.len() >= n_tok * nh * hd && out.len() >= n_tok * nh * hd);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let group = nh / b.n_kv_head;
    let kv_dim = b.n_kv_head * hd;
    let task = |i: usize| {
        let (t, h) = (i / nh, i % nh);
        let q_row = &q[(t * nh + h) * hd..][..hd];
        // SAFETY: task i owns out[(t*nh + h)*hd .. +hd]; tasks are distinct and in bounds (asserted above).
        let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add((t * nh + h) * hd), hd) };
        let (start, len) = b.seq_offsets[t];
        let offsets = &b.offsets[start..start + len];
        let pos = b.positions[t];
        let lo = b.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let kv_off = (h / group) * hd;
        attend_one(q_row, &offsets[lo..=pos], kv_off, kv_dim, k_cache, v_cache, b.scale, o);
    };
    pool.run(n_tok * nh, &task);
}

/// One query head against the cached rows at `offsets` (+ `kv_off` for its KV head).
#[allow(clippy::too_many_arguments)]
fn attend_one(q: &[f32], offsets: &[usize], kv_off: usize, kv_dim: usize, k: &[f16], v: &[f16], scale: f32, out: &mut [f32]) {
    let hd = q.len();
    debug_assert!(kv_off + hd <= kv_dim);
    let mut qh = [0f32; MAX_HEAD_DIM];
    for (d, &s) in qh.iter_mut().zip(q) {
        *d = f16::from_f32(s).to_f32();
    }
    let qh = &qh[..hd];
    let mut kbuf = [0f32; MAX_HEAD_DIM];
    let mut vbuf = [0f32; MAX_HEAD_DIM];
    let mut acc = [0f32; MAX_HEAD_DIM];
    let acc = &mut acc[..hd];
    let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
    for &off in offsets {
        let base = off + kv_off;
        k[base..base + hd].convert_to_f32_slice(&mut kbuf[..hd]);
        let s = dot(qh, &kbuf[..hd]) * scale;
        let mut w = 1.0;
        if s > m {
            let corr = (m - s).exp();
            m = s;
            l *= corr;
            for a in acc.iter_mut() {
                *a *= corr;
            }
        } else {
            w = (s - m).exp();
        }
        l += w;
        v[base..base + hd].convert_to_f32_slice(&mut vbuf[..hd]);
        for (a, &x) in acc.iter_mut().zip(&vbuf[..hd]) {
            *a += w * x;
        }
    }
    let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = a * inv;
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so the compiler vectorises the loop.
    let mut s = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            s[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    s.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two-pass softmax attention in f64 over f16-rounded inputs: the reference.
    fn naive(q: &[f32], keys: &[Vec<f32>], vals: &[Vec<f32>], scale: f32) -> Vec<f32> {
        let r = |x: f32| f64::from(f16::from_f32(x).to_f32());
        let s: Vec<f64> = keys.iter().map(|k| q.iter().zip(k).map(|(&a, &b)| r(a) * r(b)).sum::<f64>() * f64::from(scale)).collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        (0..q.len()).map(|d| (e.iter().zip(vals).map(|(w, v)| w * r(v[d])).sum::<f64>() / z) as f32).collect()
    }

    #[test]
    fn matches_naive_softmax_attention_with_gqa_and_window() {
        let (hd, nh, nkv, n_pos) = (40usize, 4usize, 2usize, 23usize);
        let kv_dim = nkv * hd;
        let val = |i: usize| ((i as f32) * 0.618).sin() * 2.0;
        // Scatter positions over slots in reverse order to exercise the offsets.
        let offsets: Vec<usize> = (0..n_pos).map(|p| (n_pos - 1 - p) * kv_dim).collect();
        let kc: Vec<f16> = (0..n_pos * kv_dim).map(|i| f16::from_f32(val(i))).collect();
        let vc: Vec<f16> = (0..n_pos * kv_dim).map(|i| f16::from_f32(val(i + 7777))).collect();
        let positions = [0usize, 5, 22];
        let q: Vec<f32> = (0..positions.len() * nh * hd).map(|i| val(i + 99)).collect();
        let seq_offsets = vec![(0usize, n_pos); positions.len()];
        for window in [None, Some(4)] {
            let b = AttentionBatch {
                positions: &positions,
                seq_offsets: &seq_offsets,
                offsets: &offsets,
                n_head: nh,
                n_kv_head: nkv,
                head_dim: hd,
                scale: 0.3,
                window,
            };
            let mut out = vec![0f32; q.len()];
            for threads in [1, 2] {
                attend(&ThreadPool::new(threads), &b, &q, &kc, &vc, &mut out);
                for (t, &pos) in positions.iter().enumerate() {
                    for h in 0..nh {
                        let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                        let kvh = h / (nh / nkv);
                        let rows = |c: &[f16]| -> Vec<Vec<f32>> {
                            (lo..=pos).map(|p| c[offsets[p] + kvh * hd..][..hd].iter().map(|x| x.to_f32()).collect()).collect()
                        };
                        let want = naive(&q[(t * nh + h) * hd..][..hd], &rows(&kc), &rows(&vc), 0.3);
                        let got = &out[(t * nh + h) * hd..][..hd];
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g - w).abs() < 1e-4, "t{t} h{h} {g} vs {w}");
                        }
                    }
                }
            }
        }
    }
}
