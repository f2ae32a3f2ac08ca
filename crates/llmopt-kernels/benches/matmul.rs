//! matmul throughput for the formats our default models use, at SmolLM2-135M's FFN shape
//! (576 x 1536), decode (1 token) and prefill (64 tokens), 1 and 2 threads.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llmopt_kernels::{matmul, ThreadPool, WeightView};
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
    if let Some(enc) = ty.spec().from_f32 {
        let x: Vec<f32> = (0..rows * cols).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect();
        enc(&x, &mut out);
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
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K] {
        // Q4_K needs cols % 256 == 0: use the transposed FFN shape (1536 in, 576 out).
        let (rows, cols) = if ty == GgmlType::Q4_K { (cols, rows) } else { (rows, cols) };
        let data = weights(ty, rows, cols);
        let w = WeightView { ty, rows, cols, data: &data };
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

criterion_group!(benches, bench);
criterion_main!(benches);
