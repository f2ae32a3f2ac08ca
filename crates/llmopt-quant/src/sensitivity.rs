//! How much each tensor's quantization costs, for `--plan auto`: the proxy (importance-weighted
//! squared error a format leaves in a tensor's rows) and the measure (the KL divergence the
//! model's next-token distribution gains when that tensor alone is quantized, by the forward).

use std::sync::atomic::{AtomicUsize, Ordering};

use llmopt_formats::gguf::{GgufFile, TensorInfo};
use llmopt_kernels::ThreadPool;
use llmopt_model::DEFAULT_BLOCK_SIZE;
use llmopt_model::{Bytes, KvCache, Logits, Model, SeqInput, Weight, Workspace};
use llmopt_tensor::GgmlType;

use crate::{
    ftype::{encodable_formats, FileType},
    imatrix::Imatrix,
    QuantError,
};

/// The block-quantized formats of llama.cpp's file types (ids below 200) this build writes whose
/// blocks fit rows of `ncols`, fewest bits per weight first (the K-quants only where `ncols` is a
/// multiple of 256).
pub fn candidates(ncols: u64) -> Vec<GgmlType> {
    candidates_among(ncols, &[])
}

/// [`candidates`], or, when `among` is not empty, those of `among` (llmopt's own formats too).
pub fn candidates_among(ncols: u64, among: &[GgmlType]) -> Vec<GgmlType> {
    let llama_cpps = |t: &GgmlType| FileType::of(*t).is_some_and(|f| f.id < 200);
    let mut c: Vec<GgmlType> = encodable_formats()
        .into_iter()
        .filter(|t| if among.is_empty() { llama_cpps(t) } else { among.contains(t) })
        .filter(|t| t.is_quantized() && ncols.is_multiple_of(t.spec().block_len as u64))
        .collect();
    c.sort_by(|a, b| bits(*a).total_cmp(&bits(*b)).then(a.name().cmp(b.name())));
    c
}

/// Bits per weight of a format.
pub fn bits(t: GgmlType) -> f64 {
    let s = t.spec();
    (s.block_bytes * 8) as f64 / s.block_len as f64
}

/// Encodes one row as the writer does without GPTQ: with the importance when given (the
/// format's weighted encoder, or its reference one when it has none), else round to nearest.
fn encode_row(
    ty: GgmlType,
    x: &[f32],
    imp: Option<&[f32]>,
    q: &mut [u8],
) -> Result<(), QuantError> {
    match imp {
        Some(w) => ty.quantize_row_weighted(x, w, q)?,
        None => ty.from_f32(x, q)?,
    }
    Ok(())
}

/// The proxy error of each format of `formats` for tensor `info` of `src`: Σ over rows and
/// columns of importance × (w − q(w))², the expected squared error the format adds to the
/// tensor's output per token (importance 1 where there is none). At most `max_rows` rows, evenly
/// spaced, are encoded and the sum scaled to all rows.
pub fn proxy_errors(
    src: &GgufFile,
    info: &TensorInfo,
    formats: &[GgmlType],
    importance: Option<&[f32]>,
    max_rows: usize,
) -> Result<Vec<f64>, QuantError> {
    let ncols = info.shape[0] as usize;
    let rows = (info.n_elements() / ncols as u64) as usize;
    let src_row = info.ty.row_bytes(ncols)?;
    let data = src.tensor_data(info);
    let stride = rows.div_ceil(max_rows.max(1)).max(1);
    let (mut x, mut y) = (vec![0f32; ncols], vec![0f32; ncols]);
    let mut q = Vec::new();
    let mut sums = vec![0f64; formats.len()];
    let mut sampled = 0usize;
    for r in (0..rows).step_by(stride) {
        info.ty.to_f32(&data[r * src_row..(r + 1) * src_row], &mut x)?;
        for (s, &ty) in sums.iter_mut().zip(formats) {
            q.resize(ty.row_bytes(ncols)?, 0);
            encode_row(ty, &x, importance, &mut q)?;
            ty.to_f32(&q, &mut y)?;
            *s += x
                .iter()
                .zip(&y)
                .enumerate()
                .map(|(j, (a, b))| {
                    let d = f64::from(a - b);
                    importance.map_or(1.0, |w| f64::from(w[j])) * d * d
                })
                .sum::<f64>();
        }
        sampled += 1;
    }
    let scale = rows as f64 / sampled.max(1) as f64;
    Ok(sums.into_iter().map(|s| s * scale).collect())
}

/// [`proxy_errors`] of many tensors (`jobs`: a tensor of `src` and its formats) on `threads`
/// threads, with each tensor's importance from `imatrix`. `progress(done, total)` after each.
pub fn proxy_all(
    src: &GgufFile,
    jobs: &[(&TensorInfo, Vec<GgmlType>)],
    imatrix: Option<&Imatrix>,
    max_rows: usize,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Vec<f64>>, QuantError> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    type Errors = Result<Vec<f64>, QuantError>;
    let mut out: Vec<Option<Errors>> = (0..jobs.len()).map(|_| None).collect();
    let results: Vec<Vec<(usize, Errors)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((info, formats)) = jobs.get(i) else { break };
                        let imp = imatrix.and_then(|m| m.importance(&info.name));
                        mine.push((i, proxy_errors(src, info, formats, imp.as_deref(), max_rows)));
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    for (i, r) in results.into_iter().flatten() {
        out[i] = Some(r);
    }
    out.into_iter().map(|r| r.unwrap_or_else(|| Ok(Vec::new()))).collect()
}

/// The base model's next-token log-probabilities on a few chunks of text, to measure how far a
/// changed model moves from them.
#[derive(Debug)]
pub struct KldProbe {
    ctx: usize,
    chunks: Vec<Vec<u32>>,
    /// Per chunk, per scored token (the second half, as the perplexity method): `vocab` values.
    base: Vec<Vec<f32>>,
}

impl KldProbe {
    /// Runs `model` on `n_chunks` chunks of `ctx` tokens of `tokens` (each starting with `bos`
    /// when given) and keeps the log-probabilities of the second half of each.
    pub fn new(
        model: &Model,
        pool: &ThreadPool,
        tokens: &[u32],
        ctx: usize,
        n_chunks: usize,
        bos: Option<u32>,
    ) -> Result<Self, QuantError> {
        let n = (tokens.len() / ctx.max(1)).min(n_chunks);
        if n == 0 || ctx < 2 || ctx > model.config.context_length {
            return Err(QuantError::BadCalibration {
                reason: format!(
                    "measuring sensitivity needs one chunk of {ctx} tokens (the text has {}, the \
                     model's context is {})",
                    tokens.len(),
                    model.config.context_length
                ),
            });
        }
        let chunks: Vec<Vec<u32>> = tokens
            .chunks_exact(ctx)
            .take(n)
            .map(|c| {
                let mut c = c.to_vec();
                if let Some(b) = bos {
                    c[0] = b;
                }
                c
            })
            .collect();
        let mut probe = Self { ctx, chunks, base: Vec::new() };
        probe.base = (0..n).map(|i| probe.log_probs(model, pool, i)).collect::<Result<_, _>>()?;
        Ok(probe)
    }

    /// Log-softmax of the scored rows of chunk `i` under `model`.
    fn log_probs(
        &self,
        model: &Model,
        pool: &ThreadPool,
        i: usize,
    ) -> Result<Vec<f32>, QuantError> {
        let mut kv = KvCache::new(&model.config, self.ctx, DEFAULT_BLOCK_SIZE);
        let mut ws = Workspace::new();
        let seq = kv.add_sequence();
        let input = [SeqInput { seq, tokens: &self.chunks[i], logits: Logits::From(self.ctx / 2) }];
        let logits = model.forward(pool, &input, &mut kv, &mut ws, None)?;
        let vocab = model.config.vocab_size;
        let mut out = logits.to_vec();
        for row in out.chunks_exact_mut(vocab) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
            let lse = f64::from(max) + sum.ln();
            row.iter_mut().for_each(|v| *v = (f64::from(*v) - lse) as f32);
        }
        Ok(out)
    }

    /// Mean KL(base ‖ model) over the scored tokens, in f64 from f32 log-probabilities (no
    /// uint16 rounding as in a saved base file, whose floor is larger than one tensor's effect).
    pub fn kld(&self, model: &Model, pool: &ThreadPool) -> Result<f64, QuantError> {
        let vocab = model.config.vocab_size;
        let (mut sum, mut n) = (0f64, 0usize);
        for (i, base) in self.base.iter().enumerate() {
            let lp = self.log_probs(model, pool, i)?;
            for (p, q) in base.chunks_exact(vocab).zip(lp.chunks_exact(vocab)) {
                sum += p
                    .iter()
                    .zip(q)
                    .map(|(&a, &b)| f64::from(a).exp() * (f64::from(a) - f64::from(b)))
                    .sum::<f64>();
                n += 1;
            }
        }
        Ok(sum / n.max(1) as f64)
    }
}

/// Runs `f` on `model` with the weight called `name` (a Linear's, or the token embedding, and
/// the output tied to it) replaced by `ty`-encoded `bytes`, then puts the original back.
pub fn with_weight<R>(
    model: &mut Model,
    name: &str,
    ty: GgmlType,
    bytes: Vec<u8>,
    f: impl FnOnce(&Model) -> R,
) -> Result<R, QuantError> {
    let data = Bytes::from_vec(bytes);
    let embd = model.config.arch.names.token_embd.gguf_name(None, "weight");
    let mut saved: Vec<Weight> = Vec::new();
    let mut replaced = false;
    for l in model.linears_mut().filter(|l| l.name == name) {
        let w = Weight::new(name, ty, l.weight.rows, l.weight.cols, data.clone())?;
        saved.push(std::mem::replace(&mut l.weight, w));
        replaced = true;
    }
    let old_embd = (name == embd).then(|| {
        let e = &model.token_embd;
        Weight::new(name, ty, e.rows, e.cols, data.clone())
    });
    let old_embd = match old_embd.transpose()? {
        Some(w) => {
            replaced = true;
            Some(std::mem::replace(&mut model.token_embd, w))
        }
        None => None,
    };
    if !replaced {
        return Err(QuantError::BadCalibration {
            reason: format!("the model has no weight {name}"),
        });
    }
    let r = f(model);
    let mut saved = saved.into_iter();
    for l in model.linears_mut().filter(|l| l.name == name) {
        if let Some(w) = saved.next() {
            l.weight = w;
        }
    }
    if let Some(w) = old_embd {
        model.token_embd = w;
    }
    Ok(r)
}

/// The whole tensor `info` of `src` encoded as `ty` (with its importance when given).
pub fn encode_tensor(
    src: &GgufFile,
    info: &TensorInfo,
    ty: GgmlType,
    importance: Option<&[f32]>,
) -> Result<Vec<u8>, QuantError> {
    let ncols = info.shape[0] as usize;
    let rows = (info.n_elements() / ncols as u64) as usize;
    let (src_row, dst_row) = (info.ty.row_bytes(ncols)?, ty.row_bytes(ncols)?);
    let data = src.tensor_data(info);
    let mut out = vec![0u8; rows * dst_row];
    let mut x = vec![0f32; ncols];
    for (r, q) in out.chunks_exact_mut(dst_row).enumerate() {
        info.ty.to_f32(&data[r * src_row..(r + 1) * src_row], &mut x)?;
        encode_row(ty, &x, importance, q)?;
    }
    Ok(out)
}

/// The KL divergence `probe` measures with each tensor of `jobs` (a tensor of `src` and a format)
/// alone quantized in `model` (loaded from `src`). `progress(done, total)` after each.
pub fn measure_all(
    model: &mut Model,
    pool: &ThreadPool,
    probe: &KldProbe,
    src: &GgufFile,
    jobs: &[(&TensorInfo, GgmlType)],
    imatrix: Option<&Imatrix>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>, QuantError> {
    let mut out = Vec::with_capacity(jobs.len());
    for (i, (info, ty)) in jobs.iter().enumerate() {
        let imp = imatrix.and_then(|m| m.importance(&info.name));
        let bytes = encode_tensor(src, info, *ty, imp.as_deref())?;
        out.push(with_weight(model, &info.name, *ty, bytes, |m| probe.kld(m, pool))??);
        progress(i + 1, jobs.len());
    }
    Ok(out)
}

/// Spearman's rank correlation of two equally long series (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut k = 0;
        while k < idx.len() {
            let mut e = k;
            while e + 1 < idx.len() && v[idx[e + 1]] == v[idx[k]] {
                e += 1;
            }
            for &i in &idx[k..=e] {
                r[i] = (k + e) as f64 / 2.0;
            }
            k = e + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - mean) * (y - mean)).sum();
    let var = |r: &[f64]| r.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    cov / (var(&ra) * var(&rb)).sqrt().max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_fit_the_row_and_go_up_in_bits() {
        let c576 = candidates(576);
        assert!(c576.iter().all(|t| t.spec().block_len == 32), "{c576:?}");
        assert!(c576.contains(&GgmlType::Q4_0) && c576.contains(&GgmlType::Q8_0));
        let c1536 = candidates(1536);
        assert!(c1536.len() >= c576.len());
        assert!(c1536.windows(2).all(|w| bits(w[0]) <= bits(w[1])));
        assert!(candidates(100).is_empty());
    }

    #[test]
    fn spearman_of_orders() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((spearman(&a, &[10.0, 20.0, 30.0, 40.0, 50.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // 1 - 6·Σd²/(n(n²-1)) with one swap of neighbours: 1 - 6·2/120 = 0.9.
        assert!((spearman(&a, &[2.0, 1.0, 3.0, 4.0, 5.0]) - 0.9).abs() < 1e-12);
        // Ties take their average rank.
        assert!((spearman(&[1.0, 1.0, 2.0], &[1.0, 1.0, 2.0]) - 1.0).abs() < 1e-12);
    }
}
