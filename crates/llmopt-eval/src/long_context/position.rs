//! Perplexity by position: chunks of the largest length scored token by token, the negative
//! log-likelihood summed per position, then reported in power-of-two buckets and per length.

use std::ops::Range;

use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, ModelError, SeqInput, Workspace, DEFAULT_BLOCK_SIZE};

use super::{
    haystack::{Haystack, Rng, STREAM_PERPLEXITY},
    session::Session,
    LongContextConfig, LongContextError,
};
use crate::perplexity::log_softmax_at;

/// Width of the first position bucket; each later bucket doubles.
pub const FIRST_BUCKET: usize = 128;

/// Logits (f32 values) one scoring forward call may return: 128 MiB.
const LOGITS_BUDGET: usize = 32 << 20;

/// Position buckets up to `len`: `[0, 128)`, `[128, 256)`, `[256, 512)`, ..., the last one ending
/// at `len` (so it may be narrower). Empty when `len` is 0.
pub fn bucket_edges(len: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = FIRST_BUCKET;
    while start < len {
        out.push(start..end.min(len));
        start = end;
        end *= 2;
    }
    out
}

/// Tokens per scoring forward call: as many rows of logits as [`LOGITS_BUDGET`] holds, kept within
/// 64..=512 (fewer rows make the forward inefficient; more gain nothing).
pub(crate) fn default_score_chunk(model: &Model) -> usize {
    (LOGITS_BUDGET / model.config.vocab_size.max(1)).clamp(64, 512)
}

/// Negative log-likelihood in one position bucket, summed over the chunks.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionBucket {
    /// Positions `start..end` (position `p` is predicted from the `p` tokens before it).
    pub start: usize,
    pub end: usize,
    /// Tokens scored (position 0 is never scored: nothing predicts it).
    pub tokens: usize,
    pub nll_sum: f64,
}

impl PositionBucket {
    pub fn ppl(&self) -> f64 {
        (self.nll_sum / self.tokens as f64).exp()
    }
}

/// Perplexity of a chunk of one length: its positions `1..length`, over the chunks.
#[derive(Clone, Debug, PartialEq)]
pub struct LengthPpl {
    pub length: usize,
    pub tokens: usize,
    pub ppl: f64,
}

/// Perplexity by position over `chunks` chunks of `chunk_length` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionReport {
    pub chunk_length: usize,
    /// Haystack position of each chunk's first text token.
    pub offsets: Vec<usize>,
    pub buckets: Vec<PositionBucket>,
    /// One per length asked for.
    pub lengths: Vec<LengthPpl>,
    pub seconds: f64,
}

impl PositionReport {
    /// The report of per-position sums `nll[p]` (index 0 unused) over `chunks` chunks.
    pub fn from_sums(nll: &[f64], chunks: usize, lengths: &[usize], offsets: Vec<usize>) -> Self {
        let len = nll.len();
        let scored = |r: Range<usize>| r.start.max(1)..r.end.min(len);
        let buckets = bucket_edges(len)
            .into_iter()
            .map(|r| {
                let s = scored(r.clone());
                PositionBucket {
                    start: r.start,
                    end: r.end,
                    tokens: s.len() * chunks,
                    nll_sum: nll[s].iter().sum(),
                }
            })
            .collect();
        let lengths = lengths
            .iter()
            .map(|&l| {
                let s = scored(0..l);
                let tokens = s.len() * chunks;
                LengthPpl {
                    length: l,
                    tokens,
                    ppl: (nll[s].iter().sum::<f64>() / tokens as f64).exp(),
                }
            })
            .collect();
        Self { chunk_length: len, offsets, buckets, lengths, seconds: 0.0 }
    }
}

/// Chunk offsets: line starts drawn from the perplexity stream, `len - 1` haystack tokens after
/// each (plus BOS) or `len` without BOS.
pub(crate) fn plan_chunks(
    hay: &Haystack,
    cfg: &LongContextConfig,
    len: usize,
) -> Result<Vec<usize>, LongContextError> {
    if cfg.ppl_chunks == 0 {
        return Ok(Vec::new());
    }
    let text = len - usize::from(cfg.bos.is_some());
    let n = hay.window_starts(text);
    if n == 0 {
        return Err(LongContextError::HaystackTooShort {
            tokens: hay.tokens().len(),
            needed: text,
        });
    }
    let mut rng = Rng::stream(cfg.seed, &[STREAM_PERPLEXITY, len as u64]);
    Ok((0..cfg.ppl_chunks).map(|_| hay.line_starts()[rng.below(n)]).collect())
}

/// Adds the negative log-likelihood of each token of `tokens` but the first to `nll[1..]` (nll[p]
/// for the token at position p), feeding `score_chunk` tokens per forward call into one sequence.
fn add_chunk_nll(
    s: &mut Session<'_>,
    tokens: &[u32],
    score_chunk: usize,
    nll: &mut [f64],
) -> Result<(), ModelError> {
    let vocab = s.model.config.vocab_size;
    let seq = s.kv.add_sequence();
    let mut result = Ok(());
    for (i, chunk) in tokens.chunks(score_chunk.max(1)).enumerate() {
        let start = i * score_chunk.max(1);
        let logits = s.model.forward(
            s.pool,
            &[SeqInput { seq, tokens: chunk, logits: Logits::All }],
            &mut s.kv,
            &mut s.ws,
            None,
        );
        let logits = match logits {
            Ok(l) => l,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        // Row r holds the logits after the token at start + r, predicting the one at start + r + 1.
        for (r, row) in logits.chunks_exact(vocab).enumerate() {
            let p = start + r + 1;
            if p < tokens.len() {
                nll[p] -= log_softmax_at(row, tokens[p] as usize);
            }
        }
    }
    s.kv.remove_sequence(seq);
    result
}

/// Negative log-likelihood of each token of `tokens` given those before it (index 0, which nothing
/// predicts, holds 0), scored `score_chunk` tokens per forward call.
pub fn score_positions(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    score_chunk: usize,
) -> Result<Vec<f64>, ModelError> {
    let kv = KvCache::new(&model.config, tokens.len(), DEFAULT_BLOCK_SIZE);
    let mut s = Session { model, pool, kv, ws: Workspace::new() };
    let mut nll = vec![0.0; tokens.len()];
    add_chunk_nll(&mut s, tokens, score_chunk, &mut nll)?;
    Ok(nll)
}

/// Scores the chunks at `offsets` (each `len` tokens, BOS first when `cfg.bos` is set) and
/// reports them. `on_chunk(i)` is called before chunk `i` runs.
pub(crate) fn run(
    s: &mut Session<'_>,
    hay: &Haystack,
    cfg: &LongContextConfig,
    offsets: &[usize],
    score_chunk: usize,
    on_chunk: &mut dyn FnMut(usize),
) -> Result<PositionReport, LongContextError> {
    let start = std::time::Instant::now();
    let len = *cfg.lengths.last().unwrap_or(&0);
    let mut nll = vec![0.0; len];
    let mut tokens = Vec::with_capacity(len);
    for (i, &off) in offsets.iter().enumerate() {
        on_chunk(i);
        tokens.clear();
        tokens.extend(cfg.bos);
        let text = len - tokens.len();
        tokens.extend_from_slice(&hay.tokens()[off..off + text]);
        add_chunk_nll(s, &tokens, score_chunk, &mut nll)?;
    }
    let mut report = PositionReport::from_sums(&nll, offsets.len(), &cfg.lengths, offsets.to_vec());
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_double_and_end_at_the_length() {
        let r = |len| bucket_edges(len).into_iter().map(|r| (r.start, r.end)).collect::<Vec<_>>();
        assert_eq!(r(0), []);
        assert_eq!(r(100), [(0, 100)]);
        assert_eq!(r(128), [(0, 128)]);
        assert_eq!(r(1024), [(0, 128), (128, 256), (256, 512), (512, 1024)]);
        assert_eq!(
            r(3000),
            [(0, 128), (128, 256), (256, 512), (512, 1024), (1024, 2048), (2048, 3000)]
        );
    }

    #[test]
    fn buckets_and_lengths_cover_every_scored_token_once() {
        // nll[p] = p / 1000 summed over 3 chunks.
        let len = 1500;
        let nll: Vec<f64> = (0..len).map(|p| 3.0 * p as f64 / 1000.0).collect();
        let r = PositionReport::from_sums(&nll, 3, &[256, 1000, 1500], vec![0, 1, 2]);
        assert_eq!(r.buckets.iter().map(|b| b.tokens).sum::<usize>(), 3 * (len - 1));
        assert_eq!(r.buckets[0].tokens, 3 * 127);
        for w in r.buckets.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        let total: f64 = r.buckets.iter().map(|b| b.nll_sum).sum();
        assert!((total - nll.iter().sum::<f64>()).abs() < 1e-9);
        // The whole chunk's perplexity is the token-weighted geometric mean of the buckets'.
        let mean = r.buckets.iter().map(|b| b.tokens as f64 * b.ppl().ln()).sum::<f64>()
            / (3 * (len - 1)) as f64;
        let whole = &r.lengths[2];
        assert_eq!((whole.length, whole.tokens), (1500, 3 * 1499));
        assert!((whole.ppl.ln() - mean).abs() < 1e-12);
        // A shorter length is its prefix of positions: mean of p/1000 over 1..256.
        let want = (1..256).map(|p| p as f64 / 1000.0).sum::<f64>() / 255.0;
        assert!((r.lengths[0].ppl.ln() - want).abs() < 1e-12);
    }
}
