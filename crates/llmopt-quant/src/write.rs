//! Writing the quantized file: the header first (every tensor's size is known from the plan), then
//! each tensor streamed in slabs of rows, copied or decoded and encoded again on several threads,
//! so memory stays at one slab whatever the model's size.

use std::io::Write;

use llmopt_formats::gguf::{
    alignment, write_header, write_padding, GgufFile, Metadata, TensorEntry,
};

use crate::{
    awq::AwqScales,
    encode::{weighted_encoder, Encoding, RowCodec},
    gptq::{hessian_key, GptqConfig, Hessians, Prepared},
    imatrix::Imatrix,
    plan::{Plan, TensorPlan},
    QuantError,
};

/// Elements decoded at a time (16 MB of f32), split among the threads.
const SLAB_ELEMENTS: usize = 1 << 22;

/// Everything one output file is made from.
#[derive(Debug)]
pub struct Job<'a> {
    /// The file the plan was made for.
    pub source: &'a GgufFile,
    pub plan: &'a Plan,
    /// The output's metadata (see [`crate::provenance`]).
    pub metadata: &'a Metadata,
    /// Per-column importance, for the formats with a weighted encoder.
    pub importance: Option<&'a Imatrix>,
    /// GPTQ's Hessians and settings (`--method gptq`); tensors without a Hessian round to nearest.
    pub gptq: Option<(&'a Hessians, GptqConfig)>,
    /// AWQ's channel scales: tensors with a transform are scaled before encoding (even those the
    /// plan copies, such as the norms that take `1/s`), their importance adjusted to match.
    pub awq: Option<&'a AwqScales>,
    /// Threads that encode (at least 1).
    pub threads: usize,
}

/// Factors kept for the next tensors: Q, K and V (gate and up) share theirs.
const GPTQ_CACHE: usize = 4;

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Bytes of tensor data (without padding).
    pub tensor_bytes: u64,
    /// Tensors decoded and encoded again.
    pub converted: usize,
    /// Tensors whose bytes were copied.
    pub copied: usize,
    /// Converted tensors encoded with their importance.
    pub weighted: usize,
    /// Converted tensors that had importance but whose format has no weighted encoder (rounded
    /// to nearest instead).
    pub importance_unused: usize,
    /// Converted tensors encoded by GPTQ.
    pub gptq: usize,
    /// Converted tensors GPTQ could not see (no Hessian: the token embedding, a tied output),
    /// rounded to nearest instead.
    pub gptq_without_hessian: usize,
}

/// Writes the output file for `job` to `w`. `progress(i, tensor)` is called before each tensor.
pub fn write_quantized(
    job: &Job<'_>,
    w: &mut impl Write,
    progress: &mut dyn FnMut(usize, &TensorPlan),
) -> Result<Written, QuantError> {
    let (src, plan) = (job.source, job.plan);
    let same = src.tensors().len() == plan.tensors.len()
        && src
            .tensors()
            .iter()
            .zip(&plan.tensors)
            .all(|(s, p)| s.name == p.name && s.ty == p.source);
    if !same {
        return Err(QuantError::PlanMismatch);
    }
    let sizes = plan.tensors.iter().map(TensorPlan::target_bytes).collect::<Result<Vec<_>, _>>()?;
    let entries: Vec<TensorEntry<'_>> = plan
        .tensors
        .iter()
        .zip(&sizes)
        .map(|(t, &n_bytes)| TensorEntry { name: &t.name, ty: t.target, shape: &t.shape, n_bytes })
        .collect();
    write_header(w, job.metadata, &entries).map_err(QuantError::Write)?;
    let align = alignment(job.metadata);
    let mut written = Written::default();
    let mut scratch: Vec<Vec<f32>> = vec![Vec::new(); job.threads.max(1)];
    let mut cache: Vec<(String, llmopt_tensor::GgmlType, Prepared)> = Vec::new();
    for (i, (info, t)) in src.tensors().iter().zip(&plan.tensors).enumerate() {
        progress(i, t);
        let data = src.tensor_data(info);
        let transform = job.awq.and_then(|a| a.transforms.get(&t.name));
        if t.is_copy() && transform.is_none() {
            w.write_all(data).map_err(QuantError::Write)?;
            written.copied += 1;
        } else {
            let importance = job.importance.and_then(|m| m.importance(&t.name));
            let importance = match (importance, transform) {
                (Some(imp), Some(tr)) => Some(tr.importance(&imp)),
                (imp, _) => imp,
            };
            let prepared = match job.gptq {
                Some(g) => gptq_factor(&mut cache, g, t, job.threads, &mut written)?,
                None => None,
            };
            let mode = match (prepared, &importance, weighted_encoder(t.target)) {
                (Some(p), _, _) => Encoding::Gptq(p),
                (None, Some(imp), Some(enc)) => Encoding::Weighted(imp.as_slice(), enc),
                (None, Some(_), None) => {
                    written.importance_unused += 1;
                    Encoding::Nearest
                }
                (None, None, _) => Encoding::Nearest,
            };
            written.weighted += usize::from(matches!(mode, Encoding::Weighted(..)));
            let codec = RowCodec {
                name: &t.name,
                source: t.source,
                target: t.target,
                ncols: t.ncols() as usize,
                mode,
                transform,
            };
            convert_tensor(&codec, data, &mut scratch, w)?;
            written.converted += 1;
        }
        write_padding(w, sizes[i], align).map_err(QuantError::Write)?;
        written.tensor_bytes += sizes[i];
    }
    w.flush().map_err(QuantError::Write)?;
    Ok(written)
}

/// GPTQ's factor for tensor `t`, kept at the end of `cache` (computed once per shared input and
/// format); `None` for a float target or a tensor without a Hessian (counted in `written`).
fn gptq_factor<'c>(
    cache: &'c mut Vec<(String, llmopt_tensor::GgmlType, Prepared)>,
    (hessians, cfg): (&Hessians, GptqConfig),
    t: &TensorPlan,
    threads: usize,
    written: &mut Written,
) -> Result<Option<&'c Prepared>, QuantError> {
    if t.target.spec().block_len == 1 {
        return Ok(None);
    }
    let Some(h) = hessians.get(&t.name) else {
        written.gptq_without_hessian += 1;
        return Ok(None);
    };
    let key = hessian_key(&t.name).into_owned();
    let hit = cache.iter().position(|(k, ty, _)| *k == key && *ty == t.target);
    let entry = match hit {
        Some(i) => cache.remove(i),
        None => (key, t.target, Prepared::new(&t.name, h, t.target, &cfg, threads)?),
    };
    cache.push(entry);
    if cache.len() > GPTQ_CACHE {
        cache.remove(0);
    }
    written.gptq += 1;
    Ok(cache.last().map(|c| &c.2))
}

/// Re-encodes one tensor slab by slab, each slab's rows split among the threads.
fn convert_tensor(
    codec: &RowCodec<'_>,
    data: &[u8],
    scratch: &mut [Vec<f32>],
    w: &mut impl Write,
) -> Result<(), QuantError> {
    let src_row = codec.source.row_bytes(codec.ncols)?;
    let dst_row = codec.target.row_bytes(codec.ncols)?;
    let rows = data.len() / src_row;
    let slab_rows = (SLAB_ELEMENTS / codec.ncols.max(1)).max(1);
    let mut out = Vec::new();
    for first in (0..rows).step_by(slab_rows) {
        let n = slab_rows.min(rows - first);
        out.resize(n * dst_row, 0);
        let src = &data[first * src_row..(first + n) * src_row];
        let per_thread = n.div_ceil(scratch.len());
        let results: Vec<Result<(), QuantError>> = std::thread::scope(|s| {
            let parts = src
                .chunks(per_thread * src_row)
                .zip(out.chunks_mut(per_thread * dst_row))
                .zip(scratch.iter_mut())
                .enumerate();
            let handles: Vec<_> = parts
                .map(|(k, ((src, dst), buf))| {
                    s.spawn(move || codec.convert(src, dst, buf, first + k * per_thread))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.into_iter().collect::<Result<(), _>>()?;
        w.write_all(&out).map_err(QuantError::Write)?;
    }
    Ok(())
}
