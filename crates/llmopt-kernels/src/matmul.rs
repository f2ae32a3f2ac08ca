//! `y = W x` for every Linear: quantize the activations once, then dot each weight row with each
//! token, parallel over row chunks (decode) or row chunks x token tiles (prefill).

use llmopt_tensor::GgmlType;

use crate::{Isa, KernelError, Kernels, ThreadPool};

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
}

/// Tokens per tile in prefill: a tile's activations stay in L1 while a chunk of weight rows
/// streams past them once.
const TOK_TILE: usize = 16;

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
// SAFETY: tasks write disjoint elements (see `matmul_with`), and `run` returns only after all
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
    let (rows, cols) = (w.rows, w.cols);
    let w_row = w.ty.row_bytes(cols)?;
    check("weight bytes (rows * row_bytes(cols))", rows * w_row, w.data.len())?;
    check("x (n_tok * cols)", n_tok * cols, x.len())?;
    check("y (n_tok * rows)", n_tok * rows, y.len())?;
    let k = Kernels::get(isa)?;
    let dot = k.vec_dot(w.ty).ok_or(KernelError::Unsupported { ty: w.ty, isa })?;
    let vdt = w.ty.spec().vec_dot_type;
    let a_row = vdt.row_bytes(cols)?;
    let acts: &[u8] = if vdt == GgmlType::F32 {
        bytemuck::cast_slice(x)
    } else {
        let quant = k.quantize(vdt).ok_or(KernelError::Unsupported { ty: vdt, isa })?;
        if scratch.len() < n_tok * a_row {
            scratch.resize(n_tok * a_row, 0);
        }
        for (xt, at) in x.chunks_exact(cols.max(1)).zip(scratch.chunks_exact_mut(a_row.max(1))) {
            quant(xt, at);
        }
        &scratch[..n_tok * a_row]
    };
    if rows == 0 || n_tok == 0 {
        return Ok(());
    }

    let n_threads = pool.n_threads();
    // Row chunks: ~4 per thread for balance, at least 8 rows and at most 64 per chunk.
    let row_chunk = rows.div_ceil(4 * n_threads).clamp(8, 64);
    let n_row_chunks = rows.div_ceil(row_chunk);
    let tok_tile = if n_tok <= TOK_TILE { n_tok } else { TOK_TILE };
    let n_tok_tiles = n_tok.div_ceil(tok_tile);
    let out = Out(y.as_mut_ptr());
    let data = w.data;

    let task = |i: usize| {
        let (rc, tt) = (i % n_row_chunks, i / n_row_chunks);
        let (r0, r1) = (rc * row_chunk, ((rc + 1) * row_chunk).min(rows));
        let (t0, t1) = (tt * tok_tile, ((tt + 1) * tok_tile).min(n_tok));
        for r in r0..r1 {
            let wr = &data[r * w_row..(r + 1) * w_row];
            for t in t0..t1 {
                let v = dot(cols, wr, &acts[t * a_row..(t + 1) * a_row]);
                // SAFETY: `t * rows + r < n_tok * rows == y.len()`, and each (r, t) pair
                // belongs to exactly one task (row chunk x token tile).
                unsafe { *out.at(t * rows + r) = v };
            }
        }
    };
    pool.run(n_row_chunks * n_tok_tiles, &task);
    Ok(())
}
