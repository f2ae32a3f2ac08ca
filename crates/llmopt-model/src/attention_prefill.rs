//! Tiled causal attention for prefill: a task takes a run of consecutive tokens of one sequence and
//! one KV head (all the query heads that share it), and streams that head's keys and values in
//! blocks through an online softmax, so each cached row is converted once per tile, not per query.
//! A quantized cache's scores are the format's integer dots with the query rows quantized once per
//! tile (as llama.cpp computes them); its values are decoded to f32 once per block.

use std::cell::RefCell;

use llmopt_kernels::{attn_tile, Isa, Kernels, ThreadPool, VecDotFn};

use crate::attention::{AttentionBatch, KvLayer, OutPtr};

/// Keys per block: the block's f32 keys and values stay in L1/L2 while the tile's rows use them.
const KEY_BLOCK: usize = 64;
/// Most f32 values of a tile's query rows (tokens x heads per KV head x head size).
const TILE_FLOATS: usize = 8192;

thread_local! {
    /// Per-thread scratch for one task; grows to the largest tile seen, then is reused.
    static SCRATCH: RefCell<(Vec<f32>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
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
    kv: KvLayer<'_>,
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
            let (f, u) = &mut *s.borrow_mut();
            tile(b, q, kv, t0, t1, kvh, f, u, &out_ptr);
        });
    };
    pool.run(tiles.len() * nkv, &task);
}

/// One tile: tokens `t0..t1` (one sequence), the query heads of KV head `kvh`.
#[allow(clippy::too_many_arguments)]
fn tile(
    b: &AttentionBatch<'_>,
    q: &[f32],
    kv: KvLayer<'_>,
    t0: usize,
    t1: usize,
    kvh: usize,
    scratch: &mut Vec<f32>,
    qq: &mut Vec<u8>,
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
    // The block's keys transposed (element d of key j at d * KEY_BLOCK + j), for the f16 cache.
    let (kt, rest) = rest.split_at_mut(KEY_BLOCK * hd);
    let (vb, rest) = rest.split_at_mut(KEY_BLOCK * hd);
    let (sb, rest) = rest.split_at_mut(rows * KEY_BLOCK);
    let (m, rest) = rest.split_at_mut(rows);
    let (l, rest) = rest.split_at_mut(rows);
    let corr = &mut rest[..rows];

    let isa = Isa::best();
    // A quantized cache: the query rows in K's `vec_dot_type` (unscaled: the score is scaled
    // after the dot), and that dot.
    let quant = (!kv.is_f16()).then(|| {
        let kernels = Kernels::get(isa).expect("the best ISA is available");
        let (ty, q_ty) = (kv.ty.ggml(), kv.ty.ggml().spec().vec_dot_type);
        let q_row = q_ty.row_bytes(hd).expect("heads are whole blocks (checked by the config)");
        let quantize = kernels.quantize(q_ty).expect("the query format has a quantizer");
        qq.resize(rows * q_row, 0);
        for (r, qr) in qq.chunks_exact_mut(q_row).enumerate() {
            let (t, h) = (t0 + r / group, kvh * group + r % group);
            quantize(&q[(t * nh + h) * hd..][..hd], qr);
        }
        (kernels.vec_dot(ty).expect("every KV type has a dot"), q_row)
    });
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
    let (head, row) = (kv.ty.row_bytes(kvh * hd), kv.ty.row_bytes(hd));
    let decode = kv.ty.ggml().spec().to_f32;
    let mut p0 = first;
    while p0 <= last {
        let n_k = KEY_BLOCK.min(last + 1 - p0);
        let block = &offsets[p0..p0 + n_k];
        if quant.is_none() {
            // Keys into the columns of the transposed block, values into its rows.
            attn_tile::load_f16_block(isa, (kv.k, kv.v), block, head, hd, kt, KEY_BLOCK, vb);
        } else {
            for (j, &off) in block.iter().enumerate() {
                decode(&kv.v[off + head..off + head + row], &mut vb[j * hd..(j + 1) * hd]);
            }
        }
        let s = &mut sb[..rows * KEY_BLOCK];
        match quant {
            None => attn_tile::scores(isa, qb, kt, hd, n_k, KEY_BLOCK, s),
            Some((dot, q_row)) => quantized_scores(
                dot,
                hd,
                &qq[..rows * q_row],
                q_row,
                kv.k,
                block,
                head..head + row,
                s,
                b.scale,
            ),
        }
        for (r, sr) in s.chunks_exact_mut(KEY_BLOCK).enumerate() {
            let t = t0 + r / group;
            let (lo, pos) = (lo_of(t), b.positions[t]);
            // Keys p0 + j visible to token t: lo <= p0 + j <= pos.
            let visible = lo.saturating_sub(p0)..(pos + 1).saturating_sub(p0).min(n_k);
            corr[r] = attn_tile::softmax_row(isa, &mut sr[..n_k], visible, &mut m[r], &mut l[r]);
        }
        attn_tile::accumulate(isa, acc, corr, s, KEY_BLOCK, &vb[..n_k * hd], hd);
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

/// `s[r * KEY_BLOCK + j] = dot(key j, query row r) * scale` for the quantized keys at `block` (byte
/// offsets, plus the head's byte range `head`) and the quantized query rows `qq` (`q_row` bytes each).
#[allow(clippy::too_many_arguments)]
fn quantized_scores(
    dot: VecDotFn,
    hd: usize,
    qq: &[u8],
    q_row: usize,
    k: &[u8],
    block: &[usize],
    head: std::ops::Range<usize>,
    s: &mut [f32],
    scale: f32,
) {
    for (qr, sr) in qq.chunks_exact(q_row).zip(s.chunks_exact_mut(KEY_BLOCK)) {
        for (&off, sv) in block.iter().zip(sr.iter_mut()) {
            *sv = dot(hd, &k[off + head.start..off + head.end], qr) * scale;
        }
    }
}
