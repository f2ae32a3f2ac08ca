//! KL divergence of a candidate model from a baseline, by llama.cpp's `--kl-divergence` method, so
//! the figures compare with llama.cpp's: the base run saves, for every token the perplexity method
//! scores, its log-probabilities ([`crate::base_logits`]); the candidate runs the same chunks and,
//! per scored token, computes `KL(base ‖ cand) = Σ_i p_i (ln p_i − ln q_i)` over the tokens whose
//! stored base log-probability is above −16, whether both models rank the same token first, and
//! both negative log-likelihoods. The summary (means with standard errors, KLD percentiles,
//! PPL ratio with its covariance-aware uncertainty) repeats llama.cpp's formulas. The base's NLL
//! and top token are the exact ones the file stores, not llama.cpp's uint16 reconstructions (see
//! [`crate::base_logits`]); the KLD itself uses the uint16 values, as llama.cpp.

use std::io::{Read, Write};

use llmopt_kernels::ThreadPool;
use llmopt_model::Model;

use crate::base_logits::{BaseFileError, BaseHeader, LogProbRecord};
use crate::perplexity::{for_each_chunk, plan_chunks, NllSums};
use crate::{PerplexityConfig, PerplexityError, PerplexityReport};

/// Why a KL-divergence run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum KldError {
    #[error(transparent)]
    BaseFile(#[from] BaseFileError),
    #[error("vocabulary mismatch: the base has {base} tokens, this model {model}")]
    VocabMismatch { base: usize, model: usize },
    #[error(
        "context mismatch: the base was saved with --ctx {base}, this run asks for {requested}"
    )]
    CtxMismatch { base: usize, requested: usize },
    #[error("chunk count mismatch: the base holds {base} chunks, this run asks for {requested}")]
    ChunksMismatch { base: usize, requested: usize },
    #[error("BOS mismatch: the base replaced each chunk's first token by {base:?}, this model by {model:?}")]
    BosMismatch { base: Option<u32>, model: Option<u32> },
    #[error("text mismatch: token {position} is {ours} here but {base} in the base (another text or tokenizer)")]
    TextMismatch { position: usize, base: u32, ours: u32 },
    #[error("text mismatch: the base covers {base} tokens, this text has only {ours}")]
    TextTooShort { base: usize, ours: usize },
    #[error(transparent)]
    Perplexity(#[from] PerplexityError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A mean and its standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub stderr: f64,
}

/// Distribution of the per-token KL divergences (llama.cpp's percentiles).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KldPercentiles {
    pub max: f64,
    pub p99_9: f64,
    pub p99: f64,
    pub p95: f64,
    pub p90: f64,
    pub median: f64,
    pub p10: f64,
    pub p5: f64,
    pub p1: f64,
    pub p0_1: f64,
    pub min: f64,
}

/// The summary llama.cpp prints after `--kl-divergence`, with the same definitions.
#[derive(Clone, Debug, PartialEq)]
pub struct KldReport {
    pub tokens_scored: usize,
    pub chunks: usize,
    pub ctx: usize,
    /// Candidate's perplexity.
    pub ppl: Estimate,
    /// Base's perplexity from its stored (quantized) log-probabilities.
    pub ppl_base: Estimate,
    /// Correlation of the two per-token NLLs.
    pub cor_ln_ppl: f64,
    pub ln_ppl_ratio: Estimate,
    pub ppl_ratio: Estimate,
    pub ppl_diff: Estimate,
    pub kld: Estimate,
    pub kld_percentiles: KldPercentiles,
    /// Fraction of scored tokens where both models rank the same token first ("same top p").
    pub same_top: Estimate,
    /// Mean of p_cand(target) − p_base(target).
    pub p_diff: Estimate,
    /// Root mean square of that difference.
    pub p_diff_rms: Estimate,
    /// Mean KLD after each chunk.
    pub running_kld: Vec<f64>,
}

/// One scored token compared with the base.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenKld {
    pub kld: f64,
    pub nll: f64,
    pub nll_base: f64,
    pub same_top: bool,
    pub p_diff: f32,
}

/// Compares a candidate's `logits` with the base's `rec` at a token whose next token is `target`
/// (llama.cpp's `log_softmax` with `kl_divergence_result`, in the same precisions).
pub fn token_kld(logits: &[f32], rec: &LogProbRecord, target: usize) -> TokenKld {
    let (mut max_logit, mut imax) = (logits[0], 0);
    for (i, &l) in logits.iter().enumerate().skip(1) {
        if l > max_logit {
            (max_logit, imax) = (l, i);
        }
    }
    let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max_logit).exp())).sum();
    let log_sum_exp = sum_exp.ln() as f32;
    let nll = max_logit + log_sum_exp - logits[target];
    let nll_base = rec.nll;
    let log_z = max_logit + log_sum_exp;
    let mut sum = 0f64;
    for (i, &l) in logits.iter().enumerate() {
        let lp_base = rec.log_prob(i);
        if lp_base > -16.0 {
            let p_base = lp_base.exp();
            sum += f64::from(p_base * (lp_base - l + log_z));
        }
    }
    let p_diff = (-nll).exp() - (-nll_base).exp();
    TokenKld {
        kld: sum,
        nll: f64::from(nll),
        nll_base: f64::from(nll_base),
        same_top: imax == rec.top as usize,
        p_diff,
    }
}

/// Running sums of [`TokenKld`]s and every token's KLD (for the percentiles).
#[derive(Clone, Debug, Default)]
pub struct KldSums {
    nll: f64,
    nll2: f64,
    nll_base: f64,
    nll_base2: f64,
    nll_nll_base: f64,
    kld: f64,
    kld2: f64,
    p_diff: f64,
    p_diff2: f64,
    p_diff4: f64,
    same_top: usize,
    values: Vec<f32>,
}

/// llama.cpp's `mean_and_uncertainty`.
fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> Estimate {
    if count < 1 {
        return Estimate::default();
    }
    let f = sum / count as f64;
    let df = sum2 / count as f64 - f * f;
    let stderr = if df > 0.0 && count > 10 { (df / (count - 1) as f64).sqrt() } else { 0.0 };
    Estimate { value: f, stderr }
}

/// llama.cpp's `covariance`.
fn covariance(suma: f64, sumb: f64, sumab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sumab / n - (suma / n) * (sumb / n)) / (n - 1.0)
}

/// llama.cpp's percentile of sorted values (linear interpolation, fraction in f32).
fn percentile(sorted: &[f32], fraction: f32) -> f64 {
    if fraction <= 0.0 {
        return f64::from(sorted[0]);
    }
    if fraction >= 1.0 {
        return f64::from(sorted[sorted.len() - 1]);
    }
    let p = fraction * (sorted.len() - 1) as f32;
    let ip = p as usize;
    let p = p - ip as f32;
    f64::from((1.0 - p) * sorted[ip] + p * sorted[(ip + 1).min(sorted.len() - 1)])
}

impl KldSums {
    pub fn add(&mut self, t: &TokenKld) {
        self.nll += t.nll;
        self.nll2 += t.nll * t.nll;
        self.nll_base += t.nll_base;
        self.nll_base2 += t.nll_base * t.nll_base;
        self.nll_nll_base += t.nll * t.nll_base;
        self.kld += t.kld;
        self.kld2 += t.kld * t.kld;
        let d = f64::from(t.p_diff);
        self.p_diff += d;
        self.p_diff2 += d * d;
        self.p_diff4 += d * d * d * d;
        self.same_top += usize::from(t.same_top);
        self.values.push(t.kld as f32);
    }

    pub fn count(&self) -> usize {
        self.values.len()
    }

    /// Mean KLD so far.
    pub fn mean_kld(&self) -> f64 {
        self.kld / self.count().max(1) as f64
    }

    /// The summary (llama.cpp's formulas). Needs at least one token.
    pub fn report(&self, chunks: usize, ctx: usize, running_kld: Vec<f64>) -> KldReport {
        let n = self.count();
        let log_ppl = mean_and_uncertainty(self.nll, self.nll2, n);
        let ppl = log_ppl.value.exp();
        let ppl_unc = ppl * log_ppl.stderr;
        let log_base = mean_and_uncertainty(self.nll_base, self.nll_base2, n);
        let ppl_base = log_base.value.exp();
        let ppl_base_unc = ppl_base * log_base.stderr;
        let cov = covariance(self.nll, self.nll_base, self.nll_nll_base, n);
        let cor = cov / (log_ppl.stderr * log_base.stderr);
        let ln_ratio = log_ppl.value - log_base.value;
        let ln_ratio_unc =
            (log_ppl.stderr.powi(2) + log_base.stderr.powi(2) - 2.0 * cov).max(0.0).sqrt();
        let ratio = ln_ratio.exp();
        let ppl_cov = ppl * ppl_base * cov;
        let diff_unc = (ppl_unc.powi(2) + ppl_base_unc.powi(2) - 2.0 * ppl_cov).max(0.0).sqrt();
        let mut v = self.values.clone();
        v.sort_by(f32::total_cmp);
        let median = if v.len().is_multiple_of(2) {
            f64::from(0.5 * (v[v.len() / 2] + v[v.len() / 2 - 1]))
        } else {
            f64::from(v[v.len() / 2])
        };
        let pct = |f: f32| percentile(&v, f);
        let mse = mean_and_uncertainty(self.p_diff2, self.p_diff4, n);
        let rms = mse.value.sqrt();
        let same = self.same_top as f64 / n as f64;
        let same_unc = if n > 1 { (same * (1.0 - same) / (n - 1) as f64).sqrt() } else { 0.0 };
        KldReport {
            tokens_scored: n,
            chunks,
            ctx,
            ppl: Estimate { value: ppl, stderr: ppl_unc },
            ppl_base: Estimate { value: ppl_base, stderr: ppl_base_unc },
            cor_ln_ppl: cor,
            ln_ppl_ratio: Estimate { value: ln_ratio, stderr: ln_ratio_unc },
            ppl_ratio: Estimate { value: ratio, stderr: ratio * ln_ratio_unc },
            ppl_diff: Estimate { value: ppl - ppl_base, stderr: diff_unc },
            kld: mean_and_uncertainty(self.kld, self.kld2, n),
            kld_percentiles: KldPercentiles {
                max: f64::from(v[v.len() - 1]),
                p99_9: pct(0.999),
                p99: pct(0.990),
                p95: pct(0.950),
                p90: pct(0.900),
                median,
                p10: pct(0.100),
                p5: pct(0.050),
                p1: pct(0.010),
                p0_1: pct(0.001),
                min: f64::from(v[0]),
            },
            same_top: Estimate { value: same, stderr: same_unc },
            p_diff: mean_and_uncertainty(self.p_diff, self.p_diff2, n),
            p_diff_rms: Estimate {
                value: rms,
                stderr: if rms > 0.0 { 0.5 / rms * mse.stderr } else { 0.0 },
            },
            running_kld,
        }
    }
}

/// Runs the base model by the perplexity method and writes its scored-token log-probabilities to
/// `out` ([`crate::base_logits`] format). Returns its perplexity (from the exact logits, as
/// llama.cpp's base run prints). `progress(done, total, running_ppl)` after each chunk.
pub fn save_base(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &PerplexityConfig,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<PerplexityReport, KldError> {
    let n_chunks = plan_chunks(model, tokens, cfg)?;
    let vocab = model.config.vocab_size;
    let header = BaseHeader {
        vocab,
        ctx: cfg.ctx,
        n_chunks,
        bos: cfg.bos,
        tokens: tokens[..n_chunks * cfg.ctx].to_vec(),
    };
    header.write(out)?;
    let mut rec = LogProbRecord::new(vocab);
    let mut buf = Vec::with_capacity(header.record_bytes());
    let mut sums = NllSums::default();
    let mut running = Vec::with_capacity(n_chunks);
    for_each_chunk::<KldError>(model, pool, tokens, cfg, n_chunks, &mut |i, logits, targets| {
        for (row, &t) in logits.chunks_exact(vocab).zip(targets) {
            sums.add(rec.quantize(row, t as usize));
            rec.write(out, &mut buf)?;
        }
        running.push(sums.ppl());
        progress(i + 1, n_chunks, sums.ppl());
        Ok(())
    })?;
    out.flush()?;
    Ok(sums.report(n_chunks, running))
}

/// Checks that this model and text can be compared with the base described by `header`.
fn check_compatible(
    model: &Model,
    tokens: &[u32],
    cfg: &PerplexityConfig,
    header: &BaseHeader,
) -> Result<(), KldError> {
    let vocab = model.config.vocab_size;
    if header.vocab != vocab {
        return Err(KldError::VocabMismatch { base: header.vocab, model: vocab });
    }
    if cfg.ctx != header.ctx {
        return Err(KldError::CtxMismatch { base: header.ctx, requested: cfg.ctx });
    }
    if let Some(n) = cfg.max_chunks.filter(|&n| n != header.n_chunks) {
        return Err(KldError::ChunksMismatch { base: header.n_chunks, requested: n });
    }
    if cfg.bos != header.bos {
        return Err(KldError::BosMismatch { base: header.bos, model: cfg.bos });
    }
    if tokens.len() < header.tokens.len() {
        return Err(KldError::TextTooShort { base: header.tokens.len(), ours: tokens.len() });
    }
    if let Some(p) = header.tokens.iter().zip(tokens).position(|(a, b)| a != b) {
        return Err(KldError::TextMismatch {
            position: p,
            base: header.tokens[p],
            ours: tokens[p],
        });
    }
    Ok(())
}

/// Runs the candidate `model` on the chunks a base file holds and compares each scored token with
/// the base. `base` is positioned at the start of the file; `base_len` is its size in bytes when
/// known (checked against the header). `cfg.max_chunks` `None` takes the base's chunk count; any
/// difference in vocabulary, ctx, chunk count, BOS or tokens is an error before any work.
/// `progress(done, total, running_mean_kld)` after each chunk.
pub fn compare_with_base(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &PerplexityConfig,
    base: &mut dyn Read,
    base_len: Option<u64>,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<KldReport, KldError> {
    let header = BaseHeader::read(base, base_len)?;
    check_compatible(model, tokens, cfg, &header)?;
    let cfg = PerplexityConfig { max_chunks: Some(header.n_chunks), ..cfg.clone() };
    let n_chunks = plan_chunks(model, tokens, &cfg)?;
    let vocab = header.vocab;
    let mut rec = LogProbRecord::new(vocab);
    let mut buf = Vec::with_capacity(header.record_bytes());
    let mut sums = KldSums::default();
    let mut running = Vec::with_capacity(n_chunks);
    for_each_chunk::<KldError>(model, pool, tokens, &cfg, n_chunks, &mut |i, logits, targets| {
        for (row, &t) in logits.chunks_exact(vocab).zip(targets) {
            rec.read(base, &mut buf)?;
            sums.add(&token_kld(row, &rec, t as usize));
        }
        running.push(sums.mean_kld());
        progress(i + 1, n_chunks, sums.mean_kld());
        Ok(())
    })?;
    Ok(sums.report(n_chunks, cfg.ctx, running))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(logits: &[f32], target: usize) -> LogProbRecord {
        let mut r = LogProbRecord::new(logits.len());
        r.quantize(logits, target);
        r
    }

    #[test]
    fn identical_distributions_have_zero_kld_and_agree() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 37) % 101) as f32 * 0.13 - 4.0).collect();
        let rec = record(&logits, 7);
        let t = token_kld(&logits, &rec, 7);
        // Only the uint16 rounding remains: at most half a step (16/65535/2) per token.
        assert!(t.kld.abs() <= f64::from(rec.scale) / 2.0 + 1e-6, "kld {}", t.kld);
        assert!(t.same_top);
        assert_eq!(t.nll, t.nll_base);
        assert_eq!(t.p_diff, 0.0);
    }

    /// p = (1/2, 1/4, 1/4), q = (1/4, 1/2, 1/4): KL(p‖q) = ½ln2 − ¼ln2 = ¼ln2.
    #[test]
    fn hand_computed_case() {
        let ln = |x: f32| x.ln();
        let base = [ln(0.5), ln(0.25), ln(0.25)];
        let cand = [ln(0.25) + 3.0, ln(0.5) + 3.0, ln(0.25) + 3.0]; // shifted logits, same q
        let t = token_kld(&cand, &record(&base, 1), 1);
        assert!((t.kld - 0.25 * 2f64.ln()).abs() < 1e-4, "kld {}", t.kld);
        assert!(!t.same_top);
        assert!((t.nll - 2f64.ln()).abs() < 1e-6);
        assert!((t.nll_base - 4f64.ln()).abs() < 1e-4);
        assert!((f64::from(t.p_diff) - 0.25).abs() < 1e-4);
    }

    #[test]
    fn summary_follows_llamacpp_formulas() {
        let mut s = KldSums::default();
        for i in 0..100 {
            let k = f64::from(i) / 100.0;
            s.add(&TokenKld {
                kld: k,
                nll: 2.0 + k,
                nll_base: 2.0,
                same_top: i % 4 != 0,
                p_diff: 0.0,
            });
        }
        let r = s.report(1, 8, vec![]);
        assert_eq!(r.tokens_scored, 100);
        assert!((r.kld.value - 0.495).abs() < 1e-12);
        assert!((r.same_top.value - 0.75).abs() < 1e-12);
        assert!((r.same_top.stderr - (0.75f64 * 0.25 / 99.0).sqrt()).abs() < 1e-12);
        assert!((r.kld_percentiles.median - 0.495).abs() < 1e-6);
        assert!((r.kld_percentiles.p99 - 0.9801).abs() < 1e-5);
        assert!((r.kld_percentiles.max - 0.99).abs() < 1e-6);
        assert!((r.ppl_base.value - 2f64.exp()).abs() < 1e-9);
        assert!((r.ln_ppl_ratio.value - 0.495).abs() < 1e-9);
        assert!((r.ppl_ratio.value - 0.495f64.exp()).abs() < 1e-9);
    }
}
