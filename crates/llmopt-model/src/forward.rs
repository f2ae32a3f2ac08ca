//! The forward pass over a ragged batch: several sequences, each a run of new tokens appended at the
//! positions that follow what the paged KV cache holds for it. Buffers live in a [`Workspace`] that
//! grows to the largest batch seen and is then reused, so the decode loop allocates nothing.

use llmopt_kernels::{huge::HugeBytes, kv as kv_kernels, Isa, ThreadPool};

use crate::{
    attention::{attend, AttentionBatch, AttnPrecision, F32_MIN_TOKENS},
    config::ModelConfig,
    kv_cache::{KvCache, SeqId},
    linear::Linear,
    model::Model,
    observer::{Clock, Observer, Step},
    ops, ModelError, RotationSite,
};

/// Which logits a sequence of the batch wants back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None (prefill of a prompt whose next token is not needed yet).
    None,
    /// The last token's logits.
    Last,
    /// Every token's logits (scoring).
    All,
    /// Logits of the tokens at index `i..` of this input (perplexity scores the second half).
    From(usize),
}

/// New tokens for one sequence: appended at positions `seq_len(seq)..`.
#[derive(Clone, Copy, Debug)]
pub struct SeqInput<'a> {
    pub seq: SeqId,
    pub tokens: &'a [u32],
    pub logits: Logits,
}

/// Reusable buffers of the forward pass.
#[derive(Debug, Default)]
pub struct Workspace {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scratch: Vec<u8>,
    logits_in: Vec<f32>,
    logits: HugeF32,
    positions: Vec<usize>,
    tok_seq: Vec<(usize, usize)>,
    /// Per token: attention in f32 (its sequence has at least `f32_min_tokens` in the call).
    f32_tokens: Vec<bool>,
    /// Set by [`Workspace::set_f32_min_tokens`]; `None` means [`F32_MIN_TOKENS`].
    f32_min_tokens: Option<usize>,
    offsets: Vec<usize>,
    seq_offs: Vec<usize>,
    write_slots: Vec<usize>,
    logit_rows: Vec<usize>,
    /// Per token, the rotary angles of its position: `rope_dim / 2` cosines, then as many sines.
    angles: Vec<f32>,
    starts: Vec<usize>,
}

/// An f32 buffer on 2 MiB pages, for the logits: a batch's rows are `vocab` floats apart (196 KB
/// for a 49k vocabulary), and the matmul writes each row group of every token, so on 4 KiB
/// pages nearly every write of the vocabulary projection is a TLB miss.
#[derive(Debug, Default)]
struct HugeF32(Option<HugeBytes>);

impl HugeF32 {
    /// At least `n` floats; growing drops the old contents (the forward overwrites them).
    fn grow(&mut self, n: usize) {
        if self.len() < n {
            self.0 = HugeBytes::cut(&[n * 4]).pop();
        }
    }
}

impl std::ops::Deref for HugeF32 {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.0.as_ref().map_or(&[], |b| bytemuck::cast_slice(b.as_slice()))
    }
}

impl std::ops::DerefMut for HugeF32 {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.0.as_mut().map_or(&mut [], |b| bytemuck::cast_slice_mut(b.as_mut_slice()))
    }
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

impl Workspace {
    /// An empty workspace; buffers grow on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sequence with at least `n` tokens in a forward call gets f32 attention, fewer get f16
    /// (default [`F32_MIN_TOKENS`], llama.cpp's switch). The serving engine sets 1: every token in
    /// f32 (through the prefill tiles, where a decode step's query heads share each converted row).
    pub fn set_f32_min_tokens(&mut self, n: usize) {
        self.f32_min_tokens = Some(n.max(1));
    }

    /// The logits row of the last token that asked for logits in the latest forward call.
    pub fn last_logits(&self, vocab: usize) -> &[f32] {
        let n = self.logit_rows.len();
        if n == 0 {
            return &[];
        }
        &self.logits[(n - 1) * vocab..n * vocab]
    }

    fn reserve(&mut self, m: &Model, n_tok: usize, n_logits: usize) {
        let c = &m.config;
        grow(&mut self.x, n_tok * c.d_model);
        grow(&mut self.h, n_tok * c.d_model);
        grow(&mut self.proj, n_tok * c.d_model);
        grow(&mut self.q, n_tok * c.q_dim());
        grow(&mut self.att, n_tok * c.q_dim());
        grow(&mut self.k, n_tok * c.kv_dim());
        grow(&mut self.v, n_tok * c.kv_dim());
        grow(&mut self.gate, n_tok * c.ffn_dim);
        grow(&mut self.up, n_tok * c.ffn_dim);
        grow(&mut self.logits_in, n_logits * c.d_model);
        self.logits.grow(n_logits * c.vocab_size);
        grow(&mut self.angles, n_tok * c.rope_dim);
    }
}

/// Linears sharing the input `x` (one, or Q/K/V, or gate/up) in one parallel region, then each
/// reported to the observer.
fn run_linears<const N: usize>(
    pool: &ThreadPool,
    lins: [&Linear; N],
    x: &[f32],
    n: usize,
    scratch: &mut Vec<u8>,
    mut ys: [&mut [f32]; N],
    obs: &mut Option<&mut dyn Observer>,
) -> Result<(), ModelError> {
    Linear::forward_many(pool, lins, x, n, scratch, &mut ys)?;
    if let Some(o) = obs.as_deref_mut() {
        for (l, y) in lins.iter().zip(&ys) {
            o.on_linear(&l.name, n, &x[..n * l.in_features()], &y[..n * l.out_features()]);
        }
    }
    Ok(())
}

/// Rows per parallel run of the row-wise steps (norms, rope, activation, residual): a decode
/// step's few rows stay on the calling thread.
const PAR_MIN_ROWS: usize = 16;

/// `dst` = RMSNorm of each `width`-wide row of `src`, times `w`, rows in parallel for a prefill.
/// RMSNorm of each row of `src` into `dst`, then the Walsh-Hadamard rotation in chunks of `rot`
/// where the file's weights expect it (`ModelConfig::rotations`).
fn norm_rows(
    pool: &ThreadPool,
    src: &[f32],
    dst: &mut [f32],
    width: usize,
    (w, rot): (&[f32], Option<usize>),
    eps: f32,
) {
    pool.for_rows_mut(dst, width, PAR_MIN_ROWS, &|r0, rows| {
        for (s, d) in src[r0 * width..].chunks_exact(width).zip(rows.chunks_exact_mut(width)) {
            ops::rms_norm_into(s, d, w, eps);
        }
        if let Some(r) = rot {
            kv_kernels::fwht(Isa::best(), rows, r);
        }
    });
}

/// `x += proj`, the block's output first RMSNorm-ed by `post_norm` where the architecture has one
/// (Gemma 3), rows in parallel for a prefill.
fn residual(
    pool: &ThreadPool,
    x: &mut [f32],
    proj: &mut [f32],
    width: usize,
    post_norm: Option<&[f32]>,
    eps: f32,
) {
    if let Some(w) = post_norm {
        pool.for_rows_mut(proj, width, PAR_MIN_ROWS, &|_, rows| {
            ops::rms_norm_rows(rows, width, w, eps)
        });
    }
    let proj: &[f32] = proj;
    pool.for_rows_mut(x, width, PAR_MIN_ROWS, &|r0, rows| {
        ops::add_assign(rows, &proj[r0 * width..r0 * width + rows.len()])
    });
}

/// Each token's rotary angles at layer `il` (`positions[i]` into row `i` of `angles`, `rope_dim`
/// wide: the cosines, then the sines), computed once for its query and key rows.
fn rope_table(
    pool: &ThreadPool,
    c: &ModelConfig,
    il: usize,
    positions: &[usize],
    angles: &mut [f32],
) {
    let (rd, half, base) = (c.rope_dim, c.rope_dim / 2, c.layer_rope_base(il));
    pool.for_rows_mut(angles, rd.max(1), PAR_MIN_ROWS, &|t0, rows| {
        for (i, &pos) in positions[t0..].iter().enumerate().take(rows.len() / rd.max(1)) {
            let (cos, sin) = rows[i * rd..(i + 1) * rd].split_at_mut(half);
            ops::rope_angles(pos, base, c.rope_freq_scale, rd, cos, sin);
        }
    });
}

/// Rotary embedding of consecutive tokens' `width`-wide rows of heads (row `i` of `rows` with
/// row `i` of `angles`, see [`rope_table`]), then the Walsh-Hadamard rotation of size `fwht` where
/// a quantized cache asks for it.
fn rope_rows(c: &ModelConfig, angles: &[f32], rows: &mut [f32], width: usize, fwht: Option<usize>) {
    let (rd, half, isa) = (c.rope_dim, c.rope_dim / 2, Isa::best());
    for (i, row) in rows.chunks_exact_mut(width).enumerate() {
        let (cos, sin) = angles[i * rd..(i + 1) * rd].split_at(half);
        ops::rope_apply(row, c.head_dim, c.arch.rope, cos, sin);
        if let Some(n) = fwht {
            kv_kernels::fwht(isa, row, n);
        }
    }
}

impl Model {
    /// Runs the batch, appending its tokens to the KV cache, and returns the requested logits as
    /// rows of `vocab_size`, in batch order (per sequence: all its tokens, its last, or none).
    pub fn forward<'w>(
        &self,
        pool: &ThreadPool,
        batch: &[SeqInput<'_>],
        kv: &mut KvCache,
        ws: &'w mut Workspace,
        mut obs: Option<&mut dyn Observer>,
    ) -> Result<&'w [f32], ModelError> {
        let c = &self.config;
        // Validate everything before touching the cache.
        let starts = &mut ws.starts;
        starts.clear();
        for s in batch {
            let start = kv.seq_len(s.seq)?;
            if start + s.tokens.len() > c.context_length {
                return Err(ModelError::ContextExceeded {
                    needed: start + s.tokens.len(),
                    context: c.context_length,
                });
            }
            if let Some(&t) = s.tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
                return Err(ModelError::TokenOutOfRange { token: t.into(), vocab: c.vocab_size });
            }
            starts.push(start);
        }
        for (i, s) in batch.iter().enumerate() {
            if let Err(e) = kv.reserve(s.seq, starts[i] + s.tokens.len()) {
                for (j, s) in batch.iter().enumerate().take(i) {
                    kv.truncate(s.seq, starts[j])?;
                }
                return Err(e);
            }
        }
        let starts = std::mem::take(&mut ws.starts);
        let n_tok: usize = batch.iter().map(|s| s.tokens.len()).sum();
        ws.positions.clear();
        ws.tok_seq.clear();
        ws.f32_tokens.clear();
        ws.offsets.clear();
        ws.write_slots.clear();
        ws.logit_rows.clear();
        // Every slot offset of the batch fits in the cache's capacity: reserve that once, so the
        // decode loop's growing sequences never reallocate these.
        for v in [&mut ws.offsets, &mut ws.seq_offs] {
            v.reserve(kv.capacity().saturating_sub(v.len()));
        }
        let mut row = 0;
        for (i, s) in batch.iter().enumerate() {
            let len = starts[i] + s.tokens.len();
            let base = ws.offsets.len();
            kv.slot_offsets(s.seq, len, &mut ws.seq_offs);
            ws.offsets.extend_from_slice(&ws.seq_offs);
            for (j, _) in s.tokens.iter().enumerate() {
                let pos = starts[i] + j;
                ws.positions.push(pos);
                ws.tok_seq.push((base, len));
                ws.f32_tokens.push(s.tokens.len() >= ws.f32_min_tokens.unwrap_or(F32_MIN_TOKENS));
                ws.write_slots.push(ws.seq_offs[pos]);
                let want = match s.logits {
                    Logits::None => false,
                    Logits::Last => j + 1 == s.tokens.len(),
                    Logits::All => true,
                    Logits::From(i) => j >= i,
                };
                if want {
                    ws.logit_rows.push(row);
                }
                row += 1;
            }
        }
        ws.starts = starts;
        let n_logits = ws.logit_rows.len();
        ws.reserve(self, n_tok, n_logits);
        if n_tok == 0 {
            return Ok(&ws.logits[..0]);
        }

        // Embeddings.
        let mut clock = Clock::start(&obs);
        let d = c.d_model;
        let embd_scale = if c.arch.embed_scale_sqrt_dim { (d as f32).sqrt() } else { 1.0 };
        for (t, tok) in batch.iter().flat_map(|s| s.tokens.iter()).enumerate() {
            let row = &mut ws.x[t * d..(t + 1) * d];
            self.token_embd.dequantize_row(*tok as usize, row)?;
            if embd_scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= embd_scale);
            }
        }

        clock.lap(&mut obs, None, Step::Embedding);
        for (il, layer) in self.layers.iter().enumerate() {
            self.layer_forward(pool, il, layer, n_tok, kv, ws, &mut obs, &mut clock)?;
        }

        // Final norm and vocabulary projection of the rows that want logits.
        for (i, &r) in ws.logit_rows.iter().enumerate() {
            ops::rms_norm_into(
                &ws.x[r * d..(r + 1) * d],
                &mut ws.logits_in[i * d..(i + 1) * d],
                &self.output_norm,
                c.rms_eps,
            );
        }
        if n_logits > 0 {
            run_linears(
                pool,
                [&self.output],
                &ws.logits_in,
                n_logits,
                &mut ws.scratch,
                [&mut ws.logits],
                &mut obs,
            )?;
        }
        clock.lap(&mut obs, None, Step::Output);
        Ok(&ws.logits[..n_logits * c.vocab_size])
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        pool: &ThreadPool,
        il: usize,
        l: &crate::model::Layer,
        n: usize,
        kv: &mut KvCache,
        ws: &mut Workspace,
        obs: &mut Option<&mut dyn Observer>,
        clock: &mut Clock,
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let (d, hd, qd, kvd) = (c.d_model, c.head_dim, c.q_dim(), c.kv_dim());
        let eps = c.rms_eps;

        // Attention block.
        let rot = c.rotations.get(RotationSite::AttnIn);
        norm_rows(pool, &ws.x[..n * d], &mut ws.h[..n * d], d, (&l.attn_norm, rot), eps);
        let at = Some(il);
        clock.lap(obs, at, Step::Norms);
        run_linears(
            pool,
            [&l.attn_q, &l.attn_k, &l.attn_v],
            &ws.h,
            n,
            &mut ws.scratch,
            [&mut ws.q, &mut ws.k, &mut ws.v],
            obs,
        )?;
        clock.lap(obs, at, Step::AttentionProj);
        if let (Some(qn), Some(kn)) = (&l.attn_q_norm, &l.attn_k_norm) {
            pool.for_rows_mut(&mut ws.q[..n * qd], qd, PAR_MIN_ROWS, &|_, q| {
                ops::rms_norm_rows(q, hd, qn, eps)
            });
            pool.for_rows_mut(&mut ws.k[..n * kvd], kvd, PAR_MIN_ROWS, &|_, k| {
                ops::rms_norm_rows(k, hd, kn, eps)
            });
            clock.lap(obs, at, Step::Norms);
        }
        let rot = kv.kv_type().rotation(hd);
        // Rotary embedding (and llama.cpp's rotation around a quantized cache,
        // `KvType::rotation`) of each token's query and key rows.
        let rd = c.rope_dim;
        rope_table(pool, c, il, &ws.positions[..n], &mut ws.angles[..n * rd]);
        let angles = &ws.angles[..n * rd];
        pool.for_rows_mut(&mut ws.q[..n * qd], qd, PAR_MIN_ROWS, &|t0, q| {
            rope_rows(c, &angles[t0 * rd..], q, qd, rot.map(|r| r.0))
        });
        pool.for_rows_mut(&mut ws.k[..n * kvd], kvd, PAR_MIN_ROWS, &|t0, k| {
            rope_rows(c, &angles[t0 * rd..], k, kvd, rot.map(|r| r.0))
        });
        if let Some((_, rv)) = rot {
            let isa = Isa::best();
            pool.for_rows_mut(&mut ws.v[..n * kvd], kvd, PAR_MIN_ROWS, &|_, v| {
                v.chunks_exact_mut(kvd).for_each(|row| kv_kernels::fwht(isa, row, rv))
            });
        }
        for t in 0..n {
            kv.write(
                il,
                ws.write_slots[t],
                &ws.k[t * kvd..(t + 1) * kvd],
                &ws.v[t * kvd..(t + 1) * kvd],
            );
        }
        let ab = AttentionBatch {
            positions: &ws.positions,
            seq_offsets: &ws.tok_seq,
            offsets: &ws.offsets,
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim: hd,
            scale: c.attn_scale,
            window: c.layer_window(il),
            precision: AttnPrecision::F16,
            f32_tokens: Some(&ws.f32_tokens),
        };
        attend(pool, &ab, &ws.q, kv.layer(il), &mut ws.att);
        if let Some((_, rv)) = rot {
            // Values were rotated before the cache: rotate their weighted sums back.
            kv_kernels::fwht(Isa::best(), &mut ws.att[..n * qd], rv);
        }
        clock.lap(obs, at, Step::AttentionCore);
        run_linears(pool, [&l.attn_output], &ws.att, n, &mut ws.scratch, [&mut ws.proj], obs)?;
        clock.lap(obs, at, Step::AttentionProj);
        residual(
            pool,
            &mut ws.x[..n * d],
            &mut ws.proj[..n * d],
            d,
            l.post_attention_norm.as_deref(),
            eps,
        );

        // Feed-forward block.
        let rot = c.rotations.get(RotationSite::FfnIn);
        norm_rows(pool, &ws.x[..n * d], &mut ws.h[..n * d], d, (&l.ffn_norm, rot), eps);
        clock.lap(obs, at, Step::Norms);
        let f = c.ffn_dim;
        run_linears(
            pool,
            [&l.ffn_gate, &l.ffn_up],
            &ws.h,
            n,
            &mut ws.scratch,
            [&mut ws.gate, &mut ws.up],
            obs,
        )?;
        let (up, act) = (&ws.up[..n * f], c.arch.activation);
        let rot = c.rotations.get(RotationSite::FfnDown);
        pool.for_rows_mut(&mut ws.gate[..n * f], f, PAR_MIN_ROWS, &|t0, g| {
            ops::gated_activation(g, &up[t0 * f..], act);
            if let Some(r) = rot {
                kv_kernels::fwht(Isa::best(), g, r);
            }
        });
        run_linears(pool, [&l.ffn_down], &ws.gate, n, &mut ws.scratch, [&mut ws.proj], obs)?;
        clock.lap(obs, at, Step::Mlp);
        residual(
            pool,
            &mut ws.x[..n * d],
            &mut ws.proj[..n * d],
            d,
            l.post_ffw_norm.as_deref(),
            eps,
        );
        clock.lap(obs, at, Step::Norms);
        Ok(())
    }
}
