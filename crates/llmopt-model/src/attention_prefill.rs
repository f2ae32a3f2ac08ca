//! Tiled causal attention for prefill: a task takes a run of consecutive tokens of one sequence and
//! one KV head (all the query heads that share it), and streams that head's keys and values in
//! blocks through an online softmax, so each cached row is converted once per tile, not per query.

use std::cell::RefCell;

use half::{f16, slice::HalfFloatSliceExt};
use llmopt_kernels::{attn_tile, Isa, ThreadPool};

use crate::attention::{AttentionBatch, OutPtr};

/// Keys per block: the block's f32 keys and values stay in L1/L2 while the tile's rows use them.
const KEY_BLOCK: usize = 64;
/// Most f32 values of a tile's query rows (tokens x heads per KV head x head size).
const TILE_FLOATS: usize = 8192;

thread_local! {
    /// Per-thread scratch for one task; grows to the largest tile seen, then is reused.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Tokens per tile for this shape: as many as keep the tile's rows within [`TILE_FLOATS`].
fn tile_tokens(group: usize, head_dim: usize) -> usize {
    (TILE_FLOATS / (group * head_dim).max(1)).clamp(1, 32)
}

/// `out[t, h] = softmax(q[t, h] · K^T * scale) V` over the causal (and windowed) range of each
/// token, in f32, for the tokens `mine` selects (the others' rows are left alone). Tokens of one
/// sequence must be consecutive in the batch with consecutive positions, as `Model::forward` lays
/// them out.
pub(crate) fn attend_prefill(
    pool: &ThreadPool,
    b: &AttentionBatch<'_>,
    q: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    out: &mut [f32],
    mine: &(dyn Fn(usize) -> bool + Sync),
) {
    let n_tok = b.positions.len();
    let (nh, nkv) = (b.n_head, b.n_kv_head);
    let group = nh / nkv;
    let qt = tile_tokens(group, b.head_dim);
    // Runs of at most `qt` consecutive selected tokens of one sequence.
    let mut tiles = Vec::with_capacity(n_tok.div_ceil(qt) + 4);
    let mut t0 = 0;
    for t in 1..=n_tok {
        if t == n_tok
            || t - t0 == qt
            || b.seq_offsets[t] != b.seq_offsets[t0]
            || mine(t) != mine(t0)
        {
            if mine(t0) {
                tiles.push((t0, t));
            }
            t0 = t;
        }
    }
    let out_ptr = OutPtr(out.as_mut_ptr());
    let task = |i: usize| {
        let ((t0, t1), kvh) = (tiles[i / nkv], i % nkv);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            tile(b, q, k_cache, v_cache, t0, t1, kvh, &mut s, &out_ptr);
        });
    };
    pool.run(tiles.len() * nkv, &task);
}

/// One tile: tokens `t0..t1` (one sequence), the query heads of KV head `kvh`.
#[allow(clippy::too_many_arguments)]
fn tile(
    b: &AttentionBatch<'_>,
    q: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    t0: usize,
    t1: usize,
    kvh: usize,
    scratch: &mut Vec<f32>,
    out: &OutPtr,
) {
    let (hd, nh) = (b.head_dim, b.n_head);
    let group = nh / b.n_kv_head;
    let rows = (t1 - t0) * group;
    let need = 2 * rows * hd + 2 * KEY_BLOCK * hd + rows * KEY_BLOCK + 3 * rows;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (qb, rest) = scratch.split_at_mut(rows * hd);
    let (acc, rest) = rest.split_at_mut(rows * hd);
    let (kb, rest) = rest.split_at_mut(KEY_BLOCK * hd);
    let (vb, rest) = rest.split_at_mut(KEY_BLOCK * hd);
    let (sb, rest) = rest.split_at_mut(rows * KEY_BLOCK);
    let (m, rest) = rest.split_at_mut(rows);
    let (l, rest) = rest.split_at_mut(rows);
    let corr = &mut rest[..rows];

    // Row r = (token t0 + r / group, head kvh * group + r % group), pre-scaled.
    for (r, qr) in qb.chunks_exact_mut(hd).enumerate() {
        let (t, h) = (t0 + r / group, kvh * group + r % group);
        for (d, s) in qr.iter_mut().zip(&q[(t * nh + h) * hd..][..hd]) {
            *d = s * b.scale;
        }
    }
    acc.fill(0.0);
    m.fill(f32::NEG_INFINITY);
    l.fill(0.0);

    let lo_of = |t: usize| b.window.map_or(0, |w| (b.positions[t] + 1).saturating_sub(w));
    let (start, len) = b.seq_offsets[t0];
    let offsets = &b.offsets[start..start + len];
    let (first, last) = (lo_of(t0), b.positions[t1 - 1]);
    let kv_off = kvh * hd;
    let isa = Isa::best();
    let mut p0 = first;
    while p0 <= last {
        let n_k = KEY_BLOCK.min(last + 1 - p0);
        for (j, &off) in offsets[p0..p0 + n_k].iter().enumerate() {
            let base = off + kv_off;
            k_cache[base..base + hd].convert_to_f32_slice(&mut kb[j * hd..(j + 1) * hd]);
            v_cache[base..base + hd].convert_to_f32_slice(&mut vb[j * hd..(j + 1) * hd]);
        }
        let s = &mut sb[..rows * n_k];
        attn_tile::scores(isa, qb, &kb[..n_k * hd], hd, s);
        for (r, sr) in s.chunks_exact_mut(n_k).enumerate() {
            let t = t0 + r / group;
            let (lo, pos) = (lo_of(t), b.positions[t]);
            let mut mb = f32::NEG_INFINITY;
            for (j, v) in sr.iter_mut().enumerate() {
                let p = p0 + j;
                if p < lo || p > pos {
                    *v = f32::NEG_INFINITY;
                } else {
                    mb = mb.max(*v);
                }
            }
            let m_new = m[r].max(mb);
            if m_new == f32::NEG_INFINITY {
                // Nothing visible yet in this row: keep it empty.
                corr[r] = 1.0;
                sr.fill(0.0);
                continue;
            }
            corr[r] = (m[r] - m_new).exp();
            let mut sum = 0.0;
            for v in sr.iter_mut() {
                *v = (*v - m_new).exp();
                sum += *v;
            }
            l[r] = l[r] * corr[r] + sum;
            m[r] = m_new;
        }
        attn_tile::accumulate(isa, acc, corr, s, &vb[..n_k * hd], hd);
        p0 += n_k;
    }
    for (r, ar) in acc.chunks_exact(hd).enumerate() {
        let (t, h) = (t0 + r / group, kvh * group + r % group);
        let inv = if l[r] > 0.0 { 1.0 / l[r] } else { 0.0 };
        // SAFETY: row (t, h) belongs to this task alone (one task per tile and KV head, and `h`
        // ranges over that KV head's query heads); `attend` checked `out` holds every row.
        let o = unsafe { std::slice::from_raw_parts_mut(out.get().add((t * nh + h) * hd), hd) };
        for (o, a) in o.iter_mut().zip(ar) {
            *o = a * inv;
        }
    }
}
