//! matmul throughput for the formats our default models use, at SmolLM2-135M's FFN shape
//! (576 x 1536), decode (1 token) and prefill (64 tokens), 1 and 2 threads (W8A16 beside Q8_0);
//! and prefill of 128 tokens through the tile kernels (`matmul`) against one `vec_dot` per pair
//! (`pairs`, the path before tiles), both ways round (576 -> 1536 and 1536 -> 576); one 64-row x
//! 16-token task (`task64x16`, W8A8, W8A16 and llmopt's own formats against Q8_0); decode streaming
//! weights from memory, packed and plain.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llmopt_kernels::huge::HugeBytes;
use llmopt_kernels::{matmul, Isa, Kernels, PackedWeight, ThreadPool, WeightView};
use llmopt_tensor::{f32_to_f16, GgmlType};

/// Deterministic pseudo-random weights: encoded gaussians-ish, or bytes with sane K-quant scales.
fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = vec![0u8; ty.row_bytes(cols).unwrap() * rows];
    if ty.spec().from_f32.is_some() {
        let x: Vec<f32> = (0..rows * cols).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect();
        ty.rows_from_f32(&x, &mut out, cols).unwrap();
    } else {
        out.iter_mut().for_each(|b| *b = next() as u8);
        for b in out.chunks_exact_mut(ty.spec().block_bytes) {
            b[..2].copy_from_slice(&f32_to_f16(1e-3).to_le_bytes());
            b[2..4].copy_from_slice(&f32_to_f16(1e-3).to_le_bytes());
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let (rows, cols) = (1536usize, 576usize);
    let mut g = c.benchmark_group("matmul_576x1536");
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::W8A16, GgmlType::Q4_K] {
        // Q4_K needs cols % 256 == 0: use the transposed FFN shape (1536 in, 576 out).
        let (rows, cols) = if ty == GgmlType::Q4_K { (cols, rows) } else { (rows, cols) };
        let data = weights(ty, rows, cols);
        let w = WeightView { ty, rows, cols, data: &data, packed: None };
        for threads in [1usize, 2] {
            let pool = ThreadPool::new(threads);
            for n_tok in [1usize, 64] {
                let x: Vec<f32> =
                    (0..n_tok * cols).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
                let mut y = vec![0.0f32; n_tok * rows];
                let mut scratch = Vec::new();
                g.throughput(Throughput::Elements((rows * cols * n_tok) as u64));
                let id = BenchmarkId::new(format!("{ty}/t{threads}"), n_tok);
                g.bench_function(id, |b| {
                    b.iter(|| matmul(&pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap())
                });
            }
        }
    }
    g.finish();
}

/// The pre-tile prefill path: quantize, then one `vec_dot` per (row, token) in tasks of 64 rows
/// x 16 tokens.
fn pairs(
    pool: &ThreadPool,
    w: &WeightView<'_>,
    x: &[f32],
    n_tok: usize,
    a: &mut [u8],
    y: &mut [f32],
) {
    let k = Kernels::get(Isa::best()).unwrap();
    let (dot, vdt) = (k.vec_dot(w.ty).unwrap(), w.ty.spec().vec_dot_type);
    let (w_row, a_row) = (w.ty.row_bytes(w.cols).unwrap(), vdt.row_bytes(w.cols).unwrap());
    let quant = k.quantize(vdt).unwrap();
    for (xt, at) in x.chunks_exact(w.cols).zip(a.chunks_exact_mut(a_row)) {
        quant(xt, at);
    }
    let a: &[u8] = a;
    let n_rc = w.rows.div_ceil(64);
    let out = Out(y.as_mut_ptr());
    pool.run(n_rc * n_tok.div_ceil(16), &|i| {
        let (r0, t0) = ((i % n_rc) * 64, (i / n_rc) * 16);
        for r in r0..(r0 + 64).min(w.rows) {
            let wr = &w.data[r * w_row..(r + 1) * w_row];
            for t in t0..(t0 + 16).min(n_tok) {
                let v = dot(w.cols, wr, &a[t * a_row..(t + 1) * a_row]);
                // SAFETY: each (r, t) belongs to one task, inside `y` (n_tok * rows).
                unsafe { *out.at(t * w.rows + r) = v };
            }
        }
    });
}

/// `y`'s pointer, shared by tasks writing disjoint elements.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements and `run` returns after all of them.
unsafe impl Sync for Out {}
impl Out {
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

fn bench_prefill(c: &mut Criterion) {
    let n_tok = 128;
    let mut g = c.benchmark_group("prefill128");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(2));
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, Q5_0, Q8_0, W8A16, Q4_K, Q6_K] {
        for (rows, cols) in [(1536usize, 576usize), (576, 1536)] {
            if !cols.is_multiple_of(ty.spec().block_len) {
                continue;
            }
            let data = weights(ty, rows, cols);
            let w = WeightView { ty, rows, cols, data: &data, packed: None };
            let x: Vec<f32> = (0..n_tok * cols).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
            let mut y = vec![0.0f32; n_tok * rows];
            let mut scratch = Vec::new();
            let mut a = vec![0u8; n_tok * ty.spec().vec_dot_type.row_bytes(cols).unwrap()];
            g.throughput(Throughput::Elements((rows * cols * n_tok) as u64));
            for threads in [1usize, 2] {
                let pool = ThreadPool::new(threads);
                let shape = format!("{ty}/{cols}to{rows}/t{threads}");
                g.bench_function(BenchmarkId::new(&shape, "tiles"), |b| {
                    b.iter(|| matmul(&pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap())
                });
                g.bench_function(BenchmarkId::new(&shape, "pairs"), |b| {
                    b.iter(|| pairs(&pool, &w, &x, n_tok, &mut a, &mut y))
                });
            }
        }
    }
    g.finish();
}

/// The 8-row interleaved weights (`packed`) against the plain layout (`plain`: tiles for prefill,
/// one `vec_dot` per row for decode), both ways round, 1 and 128 tokens, 1 and 2 threads; W8A16
/// beside Q8_0 (the same weight bytes, 16-bit activations).
fn bench_packed(c: &mut Criterion) {
    let mut g = c.benchmark_group("packed");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(2));
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, Q8_0, Q5_0, W8A16] {
        for (rows, cols) in [(1536usize, 576usize), (576, 1536)] {
            let data = weights(ty, rows, cols);
            let plain = WeightView { ty, rows, cols, data: &data, packed: None };
            let Some(p) = PackedWeight::new(Isa::best(), &plain) else { continue };
            let packed = WeightView { packed: Some(&p), ..plain };
            for n_tok in [1usize, 128] {
                let x: Vec<f32> =
                    (0..n_tok * cols).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
                let mut y = vec![0.0f32; n_tok * rows];
                let mut scratch = Vec::new();
                g.throughput(Throughput::Elements((rows * cols * n_tok) as u64));
                for threads in [1usize, 2] {
                    let pool = ThreadPool::new(threads);
                    let shape = format!("{ty}/{cols}to{rows}/n{n_tok}/t{threads}");
                    for (name, w) in [("plain", &plain), ("packed", &packed)] {
                        g.bench_function(BenchmarkId::new(&shape, name), |b| {
                            b.iter(|| matmul(&pool, w, &x, n_tok, &mut scratch, &mut y).unwrap())
                        });
                    }
                }
            }
        }
    }
    g.finish();
}

/// Decode as the model runs it: one token through a stack of distinct packed 1536 x 576 matrices
/// holding 96 MB (three times the last-level cache), so every weight byte comes from memory.
/// Throughput is weight bytes per second, to set beside `llmopt bench`'s copy and read bandwidth.
fn bench_stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(3));
    let (rows, cols) = (1536usize, 576usize);
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, Q5_0, Q8_0, W8A8, W8A16] {
        let data = weights(ty, rows, cols);
        let plain = WeightView { ty, rows, cols, data: &data, packed: None };
        let n = (96usize << 20).div_ceil(data.len());
        // One mapping on huge pages, the matrices one after another, as a model's.
        let Some(stack) = PackedWeight::new_many(Isa::best(), &vec![plain; n])
            .into_iter()
            .collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let x: Vec<f32> = (0..cols).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
        let mut y = vec![0.0f32; rows];
        let mut scratch = Vec::new();
        g.throughput(Throughput::Bytes((n * data.len()) as u64));
        for threads in [1usize, 2] {
            let pool = ThreadPool::new(threads);
            g.bench_function(BenchmarkId::new(format!("{ty}"), format!("t{threads}")), |b| {
                b.iter(|| {
                    for q in &stack {
                        let w = WeightView { packed: Some(q), ..plain };
                        matmul(&pool, &w, &x, 1, &mut scratch, &mut y).unwrap();
                    }
                })
            });
        }
    }
    g.finish();
}

/// One prefill task as the matmul runs it (64 rows x 16 tokens, one thread: quantization, then the
/// tiles) against one `vec_dot` per pair and, where the format packs (Q8_0, W8A16; W8A8 on VNNI), the
/// packed kernels; W8A8 and W8A16 beside Q8_0 (their tile shapes were chosen on this task), inputs
/// of 576 and 1536, and llmopt's own formats at 640 and 2048.
fn bench_task64x16(c: &mut Criterion) {
    let mut g = c.benchmark_group("task64x16");
    g.sample_size(20);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(2));
    let (rows, n_tok) = (64usize, 16usize);
    let pool = ThreadPool::new(1);
    use GgmlType::*;
    // llmopt's own formats at the widths their tile shapes were chosen on; Q8_0 at both pairs.
    let cases: [(GgmlType, &[usize]); 9] = [
        (Q8_0, &[576, 1536, 640, 2048]),
        (W8A8, &[576, 1536]),
        (W8A16, &[576, 1536]),
        (INT8_PC, &[640, 2048]),
        (MXFP4, &[640, 2048]),
        (MXFP8, &[640, 2048]),
        (FP8_PC, &[640, 2048]),
        (NF4, &[640, 2048]),
        (INT4_G128, &[640, 2048]),
    ];
    for (ty, widths) in cases {
        for &cols in widths {
            let data = weights(ty, rows, cols);
            let w = WeightView::new(ty, rows, cols, &data);
            let x: Vec<f32> = (0..n_tok * cols).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
            let mut y = vec![0.0f32; n_tok * rows];
            let mut scratch = Vec::new();
            let mut a = vec![0u8; n_tok * ty.spec().vec_dot_type.row_bytes(cols).unwrap()];
            g.throughput(Throughput::Elements((rows * cols * n_tok) as u64));
            let shape = format!("{ty}/{cols}");
            g.bench_function(BenchmarkId::new(&shape, "tiles"), |b| {
                b.iter(|| matmul(&pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap())
            });
            g.bench_function(BenchmarkId::new(&shape, "pairs"), |b| {
                b.iter(|| pairs(&pool, &w, &x, n_tok, &mut a, &mut y))
            });
            if let Some(p) = PackedWeight::new(Isa::best(), &w) {
                let w = WeightView { packed: Some(&p), ..w };
                g.bench_function(BenchmarkId::new(&shape, "packed"), |b| {
                    b.iter(|| matmul(&pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap())
                });
            }
        }
    }
    g.finish();
}

/// Decode of plain (not packed) rows, as [`bench_stream`]: one token through distinct 1536 x 576
/// matrices holding 96 MB on huge pages, one `vec_dot` per row; W8A8 and W8A16 beside Q8_0.
/// Throughput is weight bytes per second.
fn bench_stream_plain(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_plain");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(3));
    let (rows, cols) = (1536usize, 576usize);
    for ty in [GgmlType::Q8_0, GgmlType::W8A8, GgmlType::W8A16] {
        let data = weights(ty, rows, cols);
        let n = (96usize << 20).div_ceil(data.len());
        let mut stack = HugeBytes::cut(&vec![data.len(); n]);
        stack.iter_mut().for_each(|m| m.as_mut_slice().copy_from_slice(&data));
        let x: Vec<f32> = (0..cols).map(|i| ((i % 17) as f32 - 8.0) * 0.1).collect();
        let mut y = vec![0.0f32; rows];
        let mut scratch = Vec::new();
        g.throughput(Throughput::Bytes((n * data.len()) as u64));
        for threads in [1usize, 2] {
            let pool = ThreadPool::new(threads);
            g.bench_function(BenchmarkId::new(format!("{ty}"), format!("t{threads}")), |b| {
                b.iter(|| {
                    for m in &stack {
                        let w = WeightView::new(ty, rows, cols, m.as_slice());
                        matmul(&pool, &w, &x, 1, &mut scratch, &mut y).unwrap();
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    bench,
    bench_prefill,
    bench_packed,
    bench_stream,
    bench_task64x16,
    bench_stream_plain
);
criterion_main!(benches);
