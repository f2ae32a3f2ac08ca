//! `y = W x` for every Linear: quantize the activations once, then dot each weight row with each
//! token, parallel over row chunks (decode) or row chunks x token tiles (prefill), where a
//! [`TileKernel`] takes R rows x T tokens at once, or a [`PackedWeight`]'s kernels take 8
//! interleaved rows x 1-4 tokens (16 rows x 1-8 where a pair kernel runs); [`matmul_many`]
//! shares one input and one `pool.run` among several weights (Q/K/V, gate/up).

use llmopt_tensor::GgmlType;

use crate::dispatch::{PackedKernel, BLOCK_INFO};
use crate::{Isa, KernelError, Kernels, PackedWeight, ThreadPool, TileKernel, VecDotFn, PACK_ROWS};

/// A row-major weight matrix in a ggml format: `rows` rows of `cols` elements, each row
/// `ty.row_bytes(cols)` bytes.
#[derive(Clone, Copy, Debug)]
pub struct WeightView<'a> {
    /// Storage format.
    pub ty: GgmlType,
    /// Output features.
    pub rows: usize,
    /// Input features (elements per row).
    pub cols: usize,
    /// `rows * ty.row_bytes(cols)` bytes.
    pub data: &'a [u8],
    /// The same rows in the 8-row interleaved layout, where built: used instead of `data` when
    /// the instruction set has packed kernels for `ty` and [`PackedWeight::matches`] this view
    /// (else ignored).
    pub packed: Option<&'a PackedWeight>,
}

impl<'a> WeightView<'a> {
    /// A view of plain rows (no packed form).
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Self {
        Self { ty, rows, cols, data, packed: None }
    }

    /// The packed form and its kernels, where `k` runs it for this view.
    fn packed_with(&self, k: &Kernels) -> Option<(&'a PackedWeight, PackedKernel)> {
        let p = self.packed.filter(|p| p.matches(self))?;
        Some((p, k.packed(self.ty)?))
    }
}

/// Tokens per task in prefill: a task's activations stay in L1 while a chunk of weight rows
/// streams past them once.
const TOK_TILE: usize = 16;

/// Tokens per parallel run of the activation quantization: fewer (decode) stay on the caller.
const PAR_MIN_TOKENS: usize = 16;
/// Largest `rows * toks` of a [`TileKernel`] that the task loop takes (its stack buffer).
const MAX_TILE: usize = 16;
/// Weights per `pool.run` in [`matmul_many`]; more are run in several batches.
const MAX_JOBS: usize = 8;

/// `y[t * rows + r] = dot(w_row_r, x[t * cols..(t + 1) * cols])` for `t in 0..n_tok`, with the
/// best kernels for this CPU. `scratch` holds the quantized activations and only grows.
pub fn matmul(
    pool: &ThreadPool,
    w: &WeightView<'_>,
    x: &[f32],
    n_tok: usize,
    scratch: &mut Vec<u8>,
    y: &mut [f32],
) -> Result<(), KernelError> {
    matmul_with(Isa::best(), pool, w, x, n_tok, scratch, y)
}

/// [`matmul`] with an explicit instruction set (e.g. [`Isa::Scalar`] to force the reference).
pub fn matmul_with(
    isa: Isa,
    pool: &ThreadPool,
    w: &WeightView<'_>,
    x: &[f32],
    n_tok: usize,
    scratch: &mut Vec<u8>,
    y: &mut [f32],
) -> Result<(), KernelError> {
    matmul_many_with(isa, pool, std::slice::from_ref(w), x, n_tok, scratch, &mut [y])
}

/// `ys[k] = ws[k] x` for weights sharing one input (all `ws[k].cols` equal): the activations are
/// quantized once per distinct `vec_dot_type` and all the weights' tasks run in one
/// `pool.run`. Each `ys[k]` equals what [`matmul`] would write, bit for bit.
pub fn matmul_many(
    pool: &ThreadPool,
    ws: &[WeightView<'_>],
    x: &[f32],
    n_tok: usize,
    scratch: &mut Vec<u8>,
    ys: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    matmul_many_with(Isa::best(), pool, ws, x, n_tok, scratch, ys)
}

fn check(what: &'static str, expected: usize, found: usize) -> Result<(), KernelError> {
    if expected == found {
        Ok(())
    } else {
        Err(KernelError::Shape { what, expected, found })
    }
}

/// Raw output pointer shared by the tasks; each (row, token) element is written by one task.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements (see `Job::task`), and `run` returns only after all
// tasks finish, while the `&mut [f32]` it came from is still borrowed.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    /// Pointer to element `i` (a method, so closures capture the whole `Sync` wrapper).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// Byte offset in `scratch` of the activations for weight `k`'s `vec_dot_type`, and the total
/// bytes: one region per distinct type, in order of first appearance (no allocation).
fn act_offset(
    ws: &[WeightView<'_>],
    k: usize,
    n_tok: usize,
) -> Result<(usize, usize), KernelError> {
    let mut off = None;
    let mut total = 0;
    for (j, w) in ws.iter().enumerate() {
        let vdt = w.ty.spec().vec_dot_type;
        if ws[..j].iter().any(|p| p.ty.spec().vec_dot_type == vdt) {
            continue; // Not the first weight with this type: its region exists already.
        }
        if vdt == ws[k].ty.spec().vec_dot_type {
            off = Some(total);
        }
        if vdt != GgmlType::F32 {
            total += n_tok * vdt.row_bytes(w.cols)?;
        }
    }
    Ok((off.expect("weight k's own type is among ws"), total))
}

/// Byte offset of weight `idx`'s activation block records (see [`BLOCK_INFO`]) within the records
/// area, where its type's packed kernels read them, and the area's total bytes: one region per
/// distinct `vec_dot_type` that some weight's packed kernel reads records of, in order of first
/// appearance.
fn records_offset(
    k: &Kernels,
    ws: &[WeightView<'_>],
    idx: usize,
    n_tok: usize,
) -> (Option<usize>, usize) {
    let vdt_of = |w: &WeightView<'_>| w.ty.spec().vec_dot_type;
    let reads = |w: &WeightView<'_>| w.packed_with(k).is_some_and(|(_, pk)| pk.needs_sums);
    let (mut off, mut total) = (None, 0);
    for (j, w) in ws.iter().enumerate() {
        let vdt = vdt_of(w);
        if ws[..j].iter().any(|p| vdt_of(p) == vdt)
            || !ws.iter().any(|p| vdt_of(p) == vdt && reads(p))
        {
            continue;
        }
        if vdt == vdt_of(&ws[idx]) {
            off = Some(total);
        }
        total += n_tok * (w.cols / 32) * BLOCK_INFO;
    }
    (off, total)
}

/// The packed kernels' [`BLOCK_INFO`] record of each activation block in `acts`, in order: for
/// Q8_0 (34-byte blocks) minus the block's quant sum (i32), then its scale `d`; for Q8_1 (36
/// bytes) its `d` and its `s` (`d x` the quant sum); scales as f32.
pub(crate) fn block_records(vdt: GgmlType, acts: &[u8], recs: &mut [u8]) {
    let f16_at =
        |b: &[u8], i: usize| llmopt_tensor::f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]));
    match vdt {
        GgmlType::Q8_0 => {
            for (blk, rec) in acts.chunks_exact(34).zip(recs.chunks_exact_mut(BLOCK_INFO)) {
                let sum: i32 = blk[2..].iter().map(|&q| i32::from(q as i8)).sum();
                rec[..4].copy_from_slice(&(-sum).to_le_bytes());
                rec[4..].copy_from_slice(&f16_at(blk, 0).to_le_bytes());
            }
        }
        GgmlType::Q8_1 => {
            for (blk, rec) in acts.chunks_exact(36).zip(recs.chunks_exact_mut(BLOCK_INFO)) {
                rec[..4].copy_from_slice(&f16_at(blk, 0).to_le_bytes());
                rec[4..].copy_from_slice(&f16_at(blk, 2).to_le_bytes());
            }
        }
        _ => unreachable!("packed kernels read records of Q8_0 and Q8_1 activations only"),
    }
}

/// [`matmul_many`] with an explicit instruction set.
pub fn matmul_many_with(
    isa: Isa,
    pool: &ThreadPool,
    ws: &[WeightView<'_>],
    x: &[f32],
    n_tok: usize,
    scratch: &mut Vec<u8>,
    ys: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    check("ys (one output per weight)", ws.len(), ys.len())?;
    let k = Kernels::get(isa)?;
    for (w, y) in ws.iter().zip(ys.iter()) {
        let w_row = w.ty.row_bytes(w.cols)?;
        check("weight bytes (rows * row_bytes(cols))", w.rows * w_row, w.data.len())?;
        check("x (n_tok * cols)", n_tok * w.cols, x.len())?;
        check("y (n_tok * rows)", n_tok * w.rows, y.len())?;
        k.vec_dot(w.ty).ok_or(KernelError::Unsupported { ty: w.ty, isa })?;
        let vdt = w.ty.spec().vec_dot_type;
        if vdt != GgmlType::F32 {
            k.quantize(vdt).ok_or(KernelError::Unsupported { ty: vdt, isa })?;
        }
    }
    let Some(cols) = ws.first().map(|w| w.cols) else { return Ok(()) };
    let (_, total) = act_offset(ws, 0, n_tok)?;
    // Packed Q4_0, Q4_1 and Q5_0 (and Q8_0 on VNNI) read a record per token and activation
    // block (`BLOCK_INFO` bytes), in an area after the activation regions.
    let (_, sums_len) = records_offset(k, ws, 0, n_tok);
    let n_blocks = cols / 32;
    if scratch.len() < total + sums_len {
        scratch.resize(total + sums_len, 0);
    }
    for (i, w) in ws.iter().enumerate() {
        let vdt = w.ty.spec().vec_dot_type;
        if vdt == GgmlType::F32 || ws[..i].iter().any(|p| p.ty.spec().vec_dot_type == vdt) {
            continue;
        }
        let quant = k.quantize(vdt).ok_or(KernelError::Unsupported { ty: vdt, isa })?;
        let (off, _) = act_offset(ws, i, n_tok)?;
        let a_row = vdt.row_bytes(cols)?;
        let region = &mut scratch[off..off + n_tok * a_row];
        pool.for_rows_mut(region, a_row.max(1), PAR_MIN_TOKENS, &|t0, rows| {
            let xs = &x[t0 * cols..];
            for (xt, at) in xs.chunks_exact(cols.max(1)).zip(rows.chunks_exact_mut(a_row.max(1))) {
                quant(xt, at);
            }
        });
    }
    for (i, w) in ws.iter().enumerate() {
        let vdt = w.ty.spec().vec_dot_type;
        let (Some(r_off), _) = records_offset(k, ws, i, n_tok) else { continue };
        if ws[..i].iter().any(|p| p.ty.spec().vec_dot_type == vdt) {
            continue; // Not the first weight with this type: its records are written.
        }
        let (off, _) = act_offset(ws, i, n_tok)?;
        let a_row = vdt.row_bytes(cols)?;
        let (acts, sums) = scratch.split_at_mut(total);
        let acts = &acts[off..off + n_tok * a_row];
        let rec_row = n_blocks * BLOCK_INFO;
        pool.for_rows_mut(
            &mut sums[r_off..r_off + n_tok * rec_row],
            rec_row.max(1),
            PAR_MIN_TOKENS,
            &|t0, recs| {
                block_records(vdt, &acts[t0 * a_row..], recs);
            },
        );
    }
    let (scratch, sums) = scratch.split_at(total);
    let sums = &sums[..sums_len];
    for (bi, (wb, yb)) in ws.chunks(MAX_JOBS).zip(ys.chunks_mut(MAX_JOBS)).enumerate() {
        let mut jobs: [Option<Job<'_>>; MAX_JOBS] = [None; MAX_JOBS];
        let mut n_tasks = 0;
        for (i, (w, y)) in wb.iter().zip(yb.iter_mut()).enumerate() {
            let vdt = w.ty.spec().vec_dot_type;
            let a_row = vdt.row_bytes(cols)?;
            let acts: &[u8] = if vdt == GgmlType::F32 {
                bytemuck::cast_slice(x)
            } else {
                let (off, _) = act_offset(ws, bi * MAX_JOBS + i, n_tok)?;
                &scratch[off..off + n_tok * a_row]
            };
            let out = Out(y.as_mut_ptr());
            let mut job = Job::new(k, w, acts, a_row, n_tok, pool.n_threads(), out)?;
            if let (Some(r_off), _) = records_offset(k, ws, bi * MAX_JOBS + i, n_tok) {
                job.sums = &sums[r_off..r_off + n_tok * n_blocks * BLOCK_INFO];
            }
            n_tasks += job.n_tasks();
            jobs[i] = Some(job);
        }
        let task = |mut i: usize| {
            for job in jobs.iter().flatten() {
                if i < job.n_tasks() {
                    return job.task(i);
                }
                i -= job.n_tasks();
            }
        };
        pool.run(n_tasks, &task);
    }
    Ok(())
}

/// One weight's share of a `pool.run`: its kernels, activations, output and task grid (row
/// chunks x token tiles).
#[derive(Clone, Copy)]
struct Job<'a> {
    w: WeightView<'a>,
    w_row: usize,
    dot: VecDotFn,
    tile: Option<TileKernel>,
    acts: &'a [u8],
    a_row: usize,
    n_tok: usize,
    out: Out,
    row_chunk: usize,
    n_row_chunks: usize,
    tok_tile: usize,
    packed: Option<(&'a PackedWeight, PackedKernel)>,
    /// Activation block records (`cols / 32` per token, see [`BLOCK_INFO`]) for packed kernels
    /// that need them.
    sums: &'a [u8],
}

impl<'a> Job<'a> {
    fn new(
        k: &Kernels,
        w: &WeightView<'a>,
        acts: &'a [u8],
        a_row: usize,
        n_tok: usize,
        n_threads: usize,
        out: Out,
    ) -> Result<Job<'a>, KernelError> {
        let isa = k.isa();
        let dot = k.vec_dot(w.ty).ok_or(KernelError::Unsupported { ty: w.ty, isa })?;
        let tile = k.tile(w.ty).filter(|t| t.rows * t.toks <= MAX_TILE && n_tok >= t.toks);
        let packed = w.packed_with(k);
        // Row chunks, a whole number of tile rows (of 8-row groups when packed). Up to one token
        // tile (decode, small batches): one chunk per thread, so each thread streams one long run
        // of weights (memory-bound: short runs restart the hardware prefetcher, and decode was
        // 1.3x slower with 64-row chunks). Prefill: ~4 per thread for balance, 8 to 64 rows.
        let mut row_chunk = if n_tok <= TOK_TILE {
            w.rows.div_ceil(n_threads).max(8)
        } else {
            w.rows.div_ceil(4 * n_threads).clamp(8, 64)
        };
        if packed.is_some() {
            row_chunk = row_chunk.next_multiple_of(PACK_ROWS);
        } else if let Some(t) = tile {
            row_chunk = row_chunk.next_multiple_of(t.rows);
        }
        Ok(Job {
            w: *w,
            w_row: w.ty.row_bytes(w.cols)?,
            dot,
            tile,
            acts,
            a_row,
            n_tok,
            out,
            row_chunk,
            n_row_chunks: w.rows.div_ceil(row_chunk),
            tok_tile: n_tok.min(TOK_TILE),
            packed,
            sums: &[],
        })
    }

    fn n_tasks(&self) -> usize {
        if self.w.rows == 0 || self.n_tok == 0 {
            return 0;
        }
        self.n_row_chunks * self.n_tok.div_ceil(self.tok_tile)
    }

    /// Rows `rs` x tokens `ts` one pair at a time.
    fn pairs(&self, rs: std::ops::Range<usize>, ts: std::ops::Range<usize>) {
        let (data, acts, cols) = (self.w.data, self.acts, self.w.cols);
        let (w_row, a_row, rows) = (self.w_row, self.a_row, self.w.rows);
        for r in rs {
            let wr = &data[r * w_row..(r + 1) * w_row];
            for t in ts.clone() {
                let v = (self.dot)(cols, wr, &acts[t * a_row..(t + 1) * a_row]);
                // SAFETY: `t * rows + r < n_tok * rows == y.len()`, and each (r, t) pair
                // belongs to exactly one task (row chunk x token tile).
                unsafe { *self.out.at(t * rows + r) = v };
            }
        }
    }

    /// Rows `r0..r1` (`r0` a multiple of 8) x tokens `ts` through the packed kernels: per 8-row
    /// group (two at once where the type has a pair kernel and the chunk two groups), 4 tokens
    /// per call (8 for a pair), then the rest.
    fn packed_task(
        &self,
        (p, pk): (&PackedWeight, PackedKernel),
        r0: usize,
        r1: usize,
        t0: usize,
        t1: usize,
    ) {
        let (rows, a_row) = (self.w.rows, self.a_row);
        let nb = self.w.cols / self.w.ty.spec().block_len;
        let gb = p.group_bytes();
        let mut buf = [0.0f32; 8 * 2 * PACK_ROWS];
        let mut g0 = r0;
        while g0 < r1 {
            let pair = pk.f2.filter(|_| g0 + PACK_ROWS < r1);
            let width = if pair.is_some() { 2 * PACK_ROWS } else { PACK_ROWS };
            let w = &p.data()[g0 / PACK_ROWS * gb..][..width / PACK_ROWS * gb];
            let n_r = (r1 - g0).min(width);
            let mut t = t0;
            while t < t1 {
                // Pair kernels take up to 8 tokens (the 16 rows' weights unpacked once for more
                // tokens: 1.1x at 128 tokens), one-group kernels 4.
                let n_t = (t1 - t).min(if pair.is_some() { 8 } else { 4 });
                let a = &self.acts[t * a_row..(t + n_t) * a_row];
                let sums = if pk.needs_sums {
                    &self.sums[t * nb * BLOCK_INFO..(t + n_t) * nb * BLOCK_INFO]
                } else {
                    &[]
                };
                match pair {
                    Some(f2) => (f2[n_t - 1])(nb, (w, gb), a, a_row, sums, &mut buf),
                    None => (pk.f[n_t - 1])(nb, w, a, a_row, sums, &mut buf),
                }
                for dt in 0..n_t {
                    for dr in 0..n_r {
                        // SAFETY: as in `pairs`: (g0 + dr, t + dt) is in this task's rows x
                        // tokens, and `g0 + dr < r1 <= rows`.
                        unsafe { *self.out.at((t + dt) * rows + g0 + dr) = buf[dt * width + dr] };
                    }
                }
                t += n_t;
            }
            g0 += width;
        }
    }

    /// Task `i`: row chunk `i % n_row_chunks` x token tile `i / n_row_chunks`.
    fn task(&self, i: usize) {
        let (rows, row_chunk, tok_tile) = (self.w.rows, self.row_chunk, self.tok_tile);
        let (rc, tt) = (i % self.n_row_chunks, i / self.n_row_chunks);
        let (r0, r1) = (rc * row_chunk, ((rc + 1) * row_chunk).min(rows));
        let (t0, t1) = (tt * tok_tile, ((tt + 1) * tok_tile).min(self.n_tok));
        if let Some(p) = self.packed {
            return self.packed_task(p, r0, r1, t0, t1);
        }
        let Some(tk) = self.tile else { return self.pairs(r0..r1, t0..t1) };
        let (tr, tn) = (tk.rows, tk.toks);
        let r_full = r0 + (r1 - r0) / tr * tr;
        let t_full = t0 + (t1 - t0) / tn * tn;
        let (w_row, a_row) = (self.w_row, self.a_row);
        let mut buf = [0.0f32; MAX_TILE];
        for r in (r0..r_full).step_by(tr) {
            let w = &self.w.data[r * w_row..(r + tr) * w_row];
            for t in (t0..t_full).step_by(tn) {
                let a = &self.acts[t * a_row..(t + tn) * a_row];
                (tk.f)(self.w.cols, w, w_row, a, a_row, &mut buf);
                // Nested loops, not `j / tr` and `j % tr`: with the tile's shape known only at
                // run time, that was a division per result, 12% of a W8A8 prefill.
                for (dt, vs) in buf[..tr * tn].chunks_exact(tr).enumerate() {
                    let at = (t + dt) * rows + r;
                    for (dr, &v) in vs.iter().enumerate() {
                        // SAFETY: as in `pairs`: (r + dr, t + dt) is in this task's rows x
                        // tokens.
                        unsafe { *self.out.at(at + dr) = v };
                    }
                }
            }
            self.pairs(r..r + tr, t_full..t1);
        }
        self.pairs(r_full..r1, t0..t1);
    }
}
