//! Perplexity by llama.cpp's method: the text's tokens are cut into consecutive chunks of `ctx`
//! tokens, each run from an empty cache (its first token replaced by BOS when the model adds one),
//! and only the second half of each chunk is scored, so every scored token sees at least ctx/2 of
//! context. The estimate's standard error follows llama.cpp's formula.

use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, ModelError, SeqInput, Workspace, DEFAULT_BLOCK_SIZE};

use crate::Estimate;

/// Settings of a perplexity run.
#[derive(Clone, Debug, PartialEq)]
pub struct PerplexityConfig {
    /// Tokens per chunk.
    pub ctx: usize,
    /// Score at most this many chunks (`None`: all whole chunks of the text).
    pub max_chunks: Option<usize>,
    /// Token that replaces each chunk's first token (the model's BOS when it adds one).
    pub bos: Option<u32>,
}

/// The result, with the per-chunk running estimates that llama.cpp prints.
#[derive(Clone, Debug, PartialEq)]
pub struct PerplexityReport {
    pub perplexity: f64,
    /// Standard error of the perplexity estimate.
    pub stderr: f64,
    /// Mean negative log-likelihood per scored token (nats).
    pub nll: f64,
    pub tokens_scored: usize,
    pub chunks: usize,
    /// Perplexity after each chunk.
    pub running: Vec<f64>,
}

/// Why perplexity could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    #[error("the text has {tokens} tokens, fewer than one chunk of {ctx}")]
    TextTooShort { tokens: usize, ctx: usize },
    #[error("--ctx {ctx} is invalid: it must be at least 4 and at most the model's context {max}")]
    BadContext { ctx: usize, max: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Makes `text` what llama.cpp's `-f` reads: one trailing newline is not part of the text.
pub fn strip_final_newline(text: &mut String) {
    if text.ends_with('\n') {
        text.pop();
    }
}

/// Log-probability of `target` under `logits` (max-shifted, sum of exponentials in f64, as llama.cpp).
pub fn log_softmax_at(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(logits[target] - max) - sum.ln()
}

/// Running sums of the negative log-likelihood, and llama.cpp's perplexity estimate from them.
#[derive(Clone, Debug, Default)]
pub(crate) struct NllSums {
    sum: f64,
    sum2: f64,
    count: usize,
}

impl NllSums {
    pub(crate) fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum2 += nll * nll;
        self.count += 1;
    }

    pub(crate) fn ppl(&self) -> f64 {
        (self.sum / self.count as f64).exp()
    }

    /// The perplexity and its standard error (that of the mean NLL, times the perplexity).
    pub(crate) fn estimate(&self) -> Estimate {
        let count = self.count;
        let mean = self.sum / count as f64;
        let ppl = mean.exp();
        let var = self.sum2 / count as f64 - mean * mean;
        let stderr =
            if var > 0.0 && count > 1 { (var / (count - 1) as f64).sqrt() * ppl } else { 0.0 };
        Estimate { value: ppl, stderr }
    }

    pub(crate) fn report(&self, chunks: usize, running: Vec<f64>) -> PerplexityReport {
        let Estimate { value: perplexity, stderr } = self.estimate();
        PerplexityReport {
            perplexity,
            stderr,
            nll: self.sum / self.count as f64,
            tokens_scored: self.count,
            chunks,
            running,
        }
    }
}

/// Checks `cfg` against the model and the text; returns how many chunks will be scored.
pub(crate) fn plan_chunks(
    model: &Model,
    tokens: &[u32],
    cfg: &PerplexityConfig,
) -> Result<usize, PerplexityError> {
    let ctx = cfg.ctx;
    let max_ctx = model.config.context_length;
    if ctx < 4 || ctx > max_ctx {
        return Err(PerplexityError::BadContext { ctx, max: max_ctx });
    }
    let available = tokens.len() / ctx;
    if available == 0 {
        return Err(PerplexityError::TextTooShort { tokens: tokens.len(), ctx });
    }
    Ok(cfg.max_chunks.map_or(available, |m| m.min(available)))
}

/// What [`for_each_chunk`] calls per chunk: `(chunk, logits, targets)`.
pub(crate) type ChunkVisitor<'a, E> = dyn FnMut(usize, &[f32], &[u32]) -> Result<(), E> + 'a;

/// Runs chunks `0..n_chunks` of `tokens` (each from an empty cache, its first token replaced by
/// `cfg.bos`) and hands each chunk's scored rows to `visit(chunk, logits, targets)`: `logits` holds
/// `ctx - 1 - ctx/2` rows of `vocab` values, row r predicting `targets[r]`.
pub(crate) fn for_each_chunk<E: From<PerplexityError>>(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &PerplexityConfig,
    n_chunks: usize,
    visit: &mut ChunkVisitor<'_, E>,
) -> Result<(), E> {
    let ctx = cfg.ctx;
    let first = ctx / 2;
    let vocab = model.config.vocab_size;
    let mut kv = KvCache::new(&model.config, ctx, DEFAULT_BLOCK_SIZE);
    let mut ws = Workspace::new();
    let mut chunk = vec![0u32; ctx];
    for i in 0..n_chunks {
        chunk.copy_from_slice(&tokens[i * ctx..(i + 1) * ctx]);
        if let Some(bos) = cfg.bos {
            chunk[0] = bos;
        }
        let seq = kv.add_sequence();
        let logits = model.forward(
            pool,
            &[SeqInput { seq, tokens: &chunk, logits: Logits::From(first) }],
            &mut kv,
            &mut ws,
            None,
        );
        let logits = match logits {
            Ok(l) => l,
            Err(e) => {
                kv.remove_sequence(seq);
                return Err(PerplexityError::from(e).into());
            }
        };
        // Row r holds the logits after token first + r, which predict token first + r + 1.
        let n_scored = ctx - 1 - first;
        let targets = &tokens[i * ctx + first + 1..(i + 1) * ctx];
        let result = visit(i, &logits[..n_scored * vocab], targets);
        kv.remove_sequence(seq);
        result?;
    }
    Ok(())
}

/// Computes the perplexity of `tokens` (the whole text, tokenized as the model's tokenizer does with
/// its special-token rule). `progress(done, total, running_ppl)` is called after each chunk.
pub fn perplexity(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &PerplexityConfig,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<PerplexityReport, PerplexityError> {
    let n_chunks = plan_chunks(model, tokens, cfg)?;
    let vocab = model.config.vocab_size;
    let mut sums = NllSums::default();
    let mut running = Vec::with_capacity(n_chunks);
    for_each_chunk::<PerplexityError>(
        model,
        pool,
        tokens,
        cfg,
        n_chunks,
        &mut |i, logits, targets| {
            for (row, &t) in logits.chunks_exact(vocab).zip(targets) {
                sums.add(-log_softmax_at(row, t as usize));
            }
            running.push(sums.ppl());
            progress(i + 1, n_chunks, sums.ppl());
            Ok(())
        },
    )?;
    Ok(sums.report(n_chunks, running))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_definition() {
        let logits = [1.0f32, 2.0, 3.0, -1.0];
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for t in 0..4 {
            let want = f64::from(logits[t]) - z.ln();
            assert!((log_softmax_at(&logits, t) - want).abs() < 1e-6);
        }
    }
}
