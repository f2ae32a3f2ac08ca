//! The saved-logits file of a KL-divergence baseline (`llmopt eval perplexity --kl-base-out`).
//!
//! Like llama.cpp's `--kl-divergence-base` file it keeps, for every scored token, the base model's
//! log-probabilities over the full vocabulary quantized to `u16` with a per-token scale and offset
//! (a quarter of the f32 logits' size), but its header says enough to refuse a mismatched run.
//! All integers and floats are little-endian:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic `LLMOPTKL` |
//! | 8 | u32 | format version (1) |
//! | 12 | u32 | vocabulary size `V` |
//! | 16 | u32 | tokens per chunk `ctx` |
//! | 20 | u32 | chunks `N` |
//! | 24 | u32 | BOS that replaced each chunk's first token (`0xFFFF_FFFF`: none) |
//! | 28 | `[u32; ctx·N]` | the text's token ids (before the BOS replacement) |
//! | … | records | `N·(ctx − 1 − ctx/2)` records, chunk by chunk, one per scored token |
//!
//! A record is `scale: f32`, `min_log_prob: f32`, `nll: f32`, `top: u32`, then `V` values
//! `q: u16`; the log-probability of token i is `scale·q_i + min_log_prob`. As in llama.cpp, logits
//! more than 16 below the maximum are clamped to that floor (`q = 0`), so
//! `scale = (max − floor)/65535 ≤ 16/65535` and every stored log-probability above the floor is
//! within `scale/2` (≤ 1.22e-4) of the exact one.
//!
//! Unlike llama.cpp's file, a record also keeps the exact negative log-likelihood of the scored
//! token (`nll`) and the base's most likely token (`top`, first index of the largest logit):
//! llama.cpp derives both from the uint16 values, so its PPL(base) is biased low when a target
//! lies under the floor, and near-ties in the base's top token (within half a step) can flip its
//! "same top p". With them, the base's PPL equals the base run's and a model compared with its own
//! base gives a PPL ratio of exactly 1 and 100% top-1 agreement.

use std::io::{Read, Write};

/// Magic bytes at the start of a saved-logits file.
pub const MAGIC: [u8; 8] = *b"LLMOPTKL";
/// Format version this code writes and reads.
pub const VERSION: u32 = 1;
const NO_BOS: u32 = u32::MAX;
const HEADER_BYTES: u64 = 28;
/// Bytes of a record before its `u16` values.
const RECORD_HEAD: usize = 16;
/// Log-probabilities lower than the maximum by more than this are clamped (llama.cpp's range).
pub const LOG_PROB_RANGE: f32 = 16.0;

/// Why a saved-logits file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaseFileError {
    #[error(
        "not a KL-divergence base file (no LLMOPTKL magic; llama.cpp's .kld files are not read)"
    )]
    NotABaseFile,
    #[error("base file format version {found}, this build reads version {VERSION}")]
    UnsupportedVersion { found: u32 },
    #[error("base file has {found} bytes, its header describes {expected}: truncated or damaged")]
    WrongLength { expected: u64, found: u64 },
    #[error("base file header is invalid: {0}")]
    BadHeader(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What a saved-logits file was made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseHeader {
    pub vocab: usize,
    pub ctx: usize,
    pub n_chunks: usize,
    pub bos: Option<u32>,
    /// `ctx · n_chunks` token ids of the text.
    pub tokens: Vec<u32>,
}

impl BaseHeader {
    /// Scored tokens per chunk (the second half of the chunk, minus the last position).
    pub fn scored_per_chunk(&self) -> usize {
        self.ctx - 1 - self.ctx / 2
    }

    /// Bytes of one record.
    pub fn record_bytes(&self) -> usize {
        RECORD_HEAD + 2 * self.vocab
    }

    /// Size of the whole file.
    pub fn file_bytes(&self) -> u64 {
        HEADER_BYTES
            + 4 * self.tokens.len() as u64
            + (self.n_chunks * self.scored_per_chunk()) as u64 * self.record_bytes() as u64
    }

    pub fn write(&self, w: &mut dyn Write) -> std::io::Result<()> {
        w.write_all(&MAGIC)?;
        for v in [VERSION, self.vocab as u32, self.ctx as u32, self.n_chunks as u32] {
            w.write_all(&v.to_le_bytes())?;
        }
        w.write_all(&self.bos.unwrap_or(NO_BOS).to_le_bytes())?;
        let mut buf = Vec::with_capacity(4 * self.tokens.len());
        for t in &self.tokens {
            buf.extend_from_slice(&t.to_le_bytes());
        }
        w.write_all(&buf)
    }

    /// Reads and checks a header; `file_len` (when known) must equal [`BaseHeader::file_bytes`].
    pub fn read(r: &mut dyn Read, file_len: Option<u64>) -> Result<Self, BaseFileError> {
        let mut head = [0u8; HEADER_BYTES as usize];
        if r.read_exact(&mut head).is_err() {
            return Err(BaseFileError::NotABaseFile);
        }
        if head[..8] != MAGIC {
            return Err(BaseFileError::NotABaseFile);
        }
        let word = |i: usize| u32::from_le_bytes(head[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        if word(0) != VERSION {
            return Err(BaseFileError::UnsupportedVersion { found: word(0) });
        }
        let (vocab, ctx, n_chunks, bos) =
            (word(1) as usize, word(2) as usize, word(3) as usize, word(4));
        if vocab == 0 || ctx < 4 || n_chunks == 0 {
            return Err(BaseFileError::BadHeader(format!(
                "vocab {vocab}, ctx {ctx}, chunks {n_chunks}"
            )));
        }
        let n_tokens = ctx.checked_mul(n_chunks).filter(|&n| n <= 1 << 28).ok_or_else(|| {
            BaseFileError::BadHeader(format!("{n_chunks} chunks of {ctx} tokens"))
        })?;
        let mut header =
            Self { vocab, ctx, n_chunks, bos: (bos != NO_BOS).then_some(bos), tokens: Vec::new() };
        if let Some(found) = file_len {
            let expected = HEADER_BYTES + 4 * n_tokens as u64;
            let expected = expected
                + (n_chunks * header.scored_per_chunk()) as u64 * header.record_bytes() as u64;
            if found != expected {
                return Err(BaseFileError::WrongLength { expected, found });
            }
        }
        let mut buf = vec![0u8; 4 * n_tokens];
        r.read_exact(&mut buf)?;
        header.tokens =
            buf.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
        Ok(header)
    }
}

/// One scored token's base log-probabilities, quantized.
#[derive(Clone, Debug, PartialEq)]
pub struct LogProbRecord {
    pub scale: f32,
    pub min_log_prob: f32,
    /// Exact negative log-likelihood of the scored token.
    pub nll: f32,
    /// The most likely token (first index of the largest logit).
    pub top: u32,
    pub q: Vec<u16>,
}

/// Rounds to the nearest integer, ties to even, as llama.cpp's `nearest_int`.
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

impl LogProbRecord {
    pub fn new(vocab: usize) -> Self {
        Self { scale: 0.0, min_log_prob: 0.0, nll: 0.0, top: 0, q: vec![0; vocab] }
    }

    /// Fills the record from a row of logits (llama.cpp's `log_softmax` with `log_prob` output)
    /// and returns the negative log-likelihood of `target`.
    pub fn quantize(&mut self, logits: &[f32], target: usize) -> f64 {
        let (mut max_logit, mut min_logit, mut top) = (logits[0], logits[0], 0);
        for (i, &l) in logits.iter().enumerate().skip(1) {
            if l > max_logit {
                (max_logit, top) = (l, i);
            }
            min_logit = min_logit.min(l);
        }
        self.top = top as u32;
        min_logit = min_logit.max(max_logit - LOG_PROB_RANGE);
        let sum_exp: f64 = logits.iter().map(|&l| f64::from((l - max_logit).exp())).sum();
        let log_sum_exp = sum_exp.ln() as f32;
        self.min_log_prob = min_logit - max_logit - log_sum_exp;
        self.scale = (max_logit - min_logit) / 65535.0;
        self.q.resize(logits.len(), 0);
        if self.scale != 0.0 {
            let inv_scale = 1.0 / self.scale;
            for (q, &l) in self.q.iter_mut().zip(logits) {
                *q =
                    if l > min_logit { nearest_int(inv_scale * (l - min_logit)) as u16 } else { 0 };
            }
        } else {
            self.q.fill(0);
        }
        self.nll = max_logit + log_sum_exp - logits[target];
        f64::from(self.nll)
    }

    /// Stored log-probability of token `i`.
    #[inline]
    pub fn log_prob(&self, i: usize) -> f32 {
        self.scale * f32::from(self.q[i]) + self.min_log_prob
    }

    pub fn write(&self, w: &mut dyn Write, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        buf.extend_from_slice(&self.scale.to_le_bytes());
        buf.extend_from_slice(&self.min_log_prob.to_le_bytes());
        buf.extend_from_slice(&self.nll.to_le_bytes());
        buf.extend_from_slice(&self.top.to_le_bytes());
        for q in &self.q {
            buf.extend_from_slice(&q.to_le_bytes());
        }
        w.write_all(buf)
    }

    /// Reads the next record (`self.q.len()` is the vocabulary size).
    pub fn read(&mut self, r: &mut dyn Read, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.resize(RECORD_HEAD + 2 * self.q.len(), 0);
        r.read_exact(buf)?;
        let word = |i: usize| buf[4 * i..4 * i + 4].try_into().unwrap();
        self.scale = f32::from_le_bytes(word(0));
        self.min_log_prob = f32::from_le_bytes(word(1));
        self.nll = f32::from_le_bytes(word(2));
        self.top = u32::from_le_bytes(word(3));
        for (q, b) in self.q.iter_mut().zip(buf[RECORD_HEAD..].chunks_exact(2)) {
            *q = u16::from_le_bytes([b[0], b[1]]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BaseHeader {
        BaseHeader { vocab: 5, ctx: 8, n_chunks: 2, bos: Some(1), tokens: (0..16).collect() }
    }

    #[test]
    fn header_round_trips_and_checks_length() {
        let h = header();
        let mut bytes = Vec::new();
        h.write(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, HEADER_BYTES + 64);
        let len = h.file_bytes();
        assert_eq!(BaseHeader::read(&mut &bytes[..], Some(len)).unwrap(), h);
        assert!(matches!(
            BaseHeader::read(&mut &bytes[..], Some(len - 1)),
            Err(BaseFileError::WrongLength { .. })
        ));
        let mut bad = bytes.clone();
        bad[0] = b'_';
        assert!(matches!(BaseHeader::read(&mut &bad[..], None), Err(BaseFileError::NotABaseFile)));
        let mut v2 = bytes;
        v2[8] = 2;
        assert!(matches!(
            BaseHeader::read(&mut &v2[..], None),
            Err(BaseFileError::UnsupportedVersion { found: 2 })
        ));
        assert!(matches!(
            BaseHeader::read(&mut &b"LLM"[..], None),
            Err(BaseFileError::NotABaseFile)
        ));
    }

    /// Every stored log-probability above the floor is within scale/2 of the exact one; the floor
    /// clamps the rest; the record survives a write and read unchanged.
    #[test]
    fn uint16_round_trip_error_is_within_half_a_step() {
        let logits: Vec<f32> =
            (0..1000).map(|i| ((i * 7919) % 1000) as f32 * 0.031 - 9.0).collect();
        let mut rec = LogProbRecord::new(logits.len());
        let nll = rec.quantize(&logits, 3);
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let lse = logits.iter().map(|&l| f64::from(l - max).exp()).sum::<f64>().ln();
        let exact = |i: usize| f64::from(logits[i] - max) - lse;
        assert!((nll + exact(3)).abs() < 1e-5);
        assert!(rec.scale <= LOG_PROB_RANGE / 65535.0);
        let bound = f64::from(rec.scale) / 2.0 + 1e-5;
        for (i, &l) in logits.iter().enumerate() {
            if l > max - LOG_PROB_RANGE {
                let err = (f64::from(rec.log_prob(i)) - exact(i)).abs();
                assert!(err <= bound, "token {i}: error {err} > {bound}");
            } else {
                assert_eq!(rec.q[i], 0);
            }
        }
        let mut bytes = Vec::new();
        rec.write(&mut bytes, &mut Vec::new()).unwrap();
        assert_eq!(bytes.len(), RECORD_HEAD + 2 * logits.len());
        assert_eq!(rec.top as usize, logits.iter().position(|&l| l == max).unwrap());
        let mut back = LogProbRecord::new(logits.len());
        back.read(&mut &bytes[..], &mut Vec::new()).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn flat_logits_quantize_to_uniform() {
        let mut rec = LogProbRecord::new(4);
        let nll = rec.quantize(&[2.0; 4], 0);
        assert_eq!(rec.scale, 0.0);
        assert!((nll - 4f64.ln()).abs() < 1e-6);
        assert!((f64::from(rec.log_prob(2)) + 4f64.ln()).abs() < 1e-6);
    }
}
