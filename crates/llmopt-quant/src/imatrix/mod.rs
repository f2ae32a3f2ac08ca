//! Importance matrices as llama.cpp's `llama-imatrix` makes them: calibration text runs through
//! the model in chunks, and each layer's Linear (`blk.*`) adds, per input column, the sum of x²
//! over its tokens; a column's importance is that sum over the token count (the mean of x²).
//! Sums are kept in f64 (llama.cpp: f32), and the file is llama.cpp's GGUF imatrix ([`file`]).

pub mod file;

use std::collections::BTreeMap;

use llmopt_formats::gguf::TensorInfo;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, Observer, SeqInput, Workspace, DEFAULT_BLOCK_SIZE};

use crate::{rules, QuantError};

/// Sums of x² per input column of one weight, and how many tokens they cover.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub sums: Vec<f64>,
    pub count: u64,
}

/// Where the calibration text came from, kept in the file for provenance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalibInfo {
    /// The text file's name (as given).
    pub file: String,
    /// Its SHA-256 (lowercase hex), when known.
    pub sha256: Option<String>,
    /// Tokens run through the model.
    pub tokens: u64,
}

/// An importance matrix: one [`Entry`] per weight name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    entries: BTreeMap<String, Entry>,
    /// Chunks the text was run in, and their length in tokens.
    pub chunks: u32,
    pub chunk_size: u32,
    /// The calibration text.
    pub calib: Option<CalibInfo>,
}

/// llama-imatrix ignores matrix products over fewer tokens (its graph's small batches).
const MIN_TOKENS: usize = 16;

impl Imatrix {
    /// Adds `n_tok` input rows of the weight `name` (row-major, `input.len() / n_tok` columns).
    pub fn add(&mut self, name: &str, n_tok: usize, input: &[f32]) {
        if n_tok == 0 {
            return;
        }
        let cols = input.len() / n_tok;
        let e = self
            .entries
            .entry(name.to_string())
            .or_insert_with(|| Entry { sums: vec![0.0; cols], count: 0 });
        debug_assert_eq!(e.sums.len(), cols, "{name}: column count changed");
        for row in input.chunks_exact(cols) {
            for (s, &x) in e.sums.iter_mut().zip(row) {
                *s += f64::from(x) * f64::from(x);
            }
        }
        e.count += n_tok as u64;
    }

    /// The entry of weight `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Every entry, by name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of weights with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The importance of each input column of `name`: the mean of x² over the tokens seen.
    pub fn importance(&self, name: &str) -> Option<Vec<f32>> {
        let e = self.entries.get(name)?;
        let n = e.count.max(1) as f64;
        Some(e.sums.iter().map(|&s| (s / n) as f32).collect())
    }

    /// Inserts an entry (a file being read).
    pub(crate) fn insert(&mut self, name: String, entry: Entry) {
        self.entries.insert(name, entry);
    }

    /// Checks that every entry belongs to `tensors`: a quantizable matrix of that name whose rows
    /// have as many columns as the entry has values.
    pub fn check(&self, tensors: &[TensorInfo]) -> Result<(), QuantError> {
        if self.entries.is_empty() {
            return Err(QuantError::ImatrixMismatch {
                name: "-".into(),
                reason: "it holds no entries".into(),
            });
        }
        for (name, e) in &self.entries {
            let bad = |reason: String| QuantError::ImatrixMismatch { name: name.clone(), reason };
            let t = tensors
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| bad("the model has no tensor of that name".into()))?;
            if !rules::allows_quantization(t) {
                return Err(bad("that tensor is not a quantizable matrix".into()));
            }
            if e.sums.len() as u64 != t.shape[0] {
                return Err(bad(format!(
                    "{} values, the model's tensor has {} columns",
                    e.sums.len(),
                    t.shape[0]
                )));
            }
        }
        Ok(())
    }
}

impl Observer for Imatrix {
    fn on_linear(&mut self, name: &str, n_tok: usize, input: &[f32], _output: &[f32]) {
        // llama-imatrix collects the layers' weights only (output.weight with --process-output).
        if n_tok >= MIN_TOKENS && name.starts_with("blk.") {
            self.add(name, n_tok, input);
        }
    }
}

/// How calibration cuts the text.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibConfig {
    /// Tokens per chunk (each from an empty cache), 512 as llama-imatrix.
    pub ctx: usize,
    /// At most this many tokens (whole chunks).
    pub max_tokens: usize,
    /// Token that replaces each chunk's first token (the model's BOS when it adds one).
    pub bos: Option<u32>,
}

/// Runs `tokens` through `model` in chunks as llama-imatrix does and collects the importance of
/// every layer weight's input columns. `progress(done, total)` is called after each chunk.
pub fn calibrate(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &CalibConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Imatrix, QuantError> {
    let mut imatrix = Imatrix { chunk_size: cfg.ctx as u32, ..Imatrix::default() };
    imatrix.chunks = run_chunks(model, pool, tokens, cfg, &mut imatrix, progress)? as u32;
    Ok(imatrix)
}

/// [`calibrate`] with `other` watching the same pass: the importance matrix, and `other` with what
/// it gathered.
pub(crate) fn calibrate_with<O: Observer>(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &CalibConfig,
    other: O,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Imatrix, O), QuantError> {
    let imatrix = Imatrix { chunk_size: cfg.ctx as u32, ..Imatrix::default() };
    let mut both = (imatrix, other);
    both.0.chunks = run_chunks(model, pool, tokens, cfg, &mut both, progress)? as u32;
    Ok(both)
}

/// Runs whole chunks of `cfg.ctx` tokens (at most `cfg.max_tokens`) through `model`, each from an
/// empty cache, with `observer` watching; returns the number of chunks.
pub(crate) fn run_chunks(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &CalibConfig,
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<usize, QuantError> {
    let ctx = cfg.ctx;
    if ctx < MIN_TOKENS || ctx > model.config.context_length {
        return Err(QuantError::BadCalibration {
            reason: format!(
                "chunks of {ctx} tokens: must be at least {MIN_TOKENS} and at most the model's \
                 context {}",
                model.config.context_length
            ),
        });
    }
    let n_chunks = (tokens.len() / ctx).min(cfg.max_tokens / ctx);
    if n_chunks == 0 {
        return Err(QuantError::BadCalibration {
            reason: format!(
                "{} tokens of text and a budget of {} tokens: calibration needs at least one \
                 chunk of {ctx}",
                tokens.len(),
                cfg.max_tokens
            ),
        });
    }
    let mut kv = KvCache::new(&model.config, ctx, DEFAULT_BLOCK_SIZE);
    let mut ws = Workspace::new();
    let mut chunk = vec![0u32; ctx];
    for i in 0..n_chunks {
        chunk.copy_from_slice(&tokens[i * ctx..(i + 1) * ctx]);
        if let Some(bos) = cfg.bos {
            chunk[0] = bos;
        }
        let seq = kv.add_sequence();
        let input = [SeqInput { seq, tokens: &chunk, logits: Logits::None }];
        let result = model.forward(pool, &input, &mut kv, &mut ws, Some(&mut *observer));
        kv.remove_sequence(seq);
        result?;
        progress(i + 1, n_chunks);
    }
    Ok(n_chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_is_the_mean_square_per_column() {
        let mut m = Imatrix::default();
        let rows: Vec<f32> = (0..32).flat_map(|t| [t as f32, 1.0, -2.0]).collect();
        m.on_linear("blk.0.attn_q.weight", 16, &rows[..48], &[]);
        m.on_linear("blk.0.attn_q.weight", 16, &rows[48..], &[]);
        // Ignored: not a layer weight, or too few tokens (as llama-imatrix).
        m.on_linear("output.weight", 32, &rows, &[]);
        m.on_linear("blk.0.attn_k.weight", 2, &rows[..6], &[]);
        assert_eq!(m.len(), 1);
        let imp = m.importance("blk.0.attn_q.weight").unwrap();
        let mean_t2 = (0..32).map(|t| (t * t) as f64).sum::<f64>() / 32.0;
        assert_eq!(imp, [mean_t2 as f32, 1.0, 4.0]);
        assert_eq!(m.entry("blk.0.attn_q.weight").unwrap().count, 32);
    }

    #[test]
    fn check_wants_names_and_lengths_of_the_model() {
        let t = |name: &str, shape: &[u64]| TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            ty: llmopt_tensor::GgmlType::Q4_0,
            offset: 0,
            n_bytes: 0,
            info_offset: 0,
        };
        let model = [t("blk.0.attn_q.weight", &[3, 8]), t("blk.0.attn_norm.weight", &[3])];
        let mut m = Imatrix::default();
        assert!(m.check(&model).is_err(), "empty");
        m.add("blk.0.attn_q.weight", 1, &[1.0, 2.0, 3.0]);
        m.check(&model).unwrap();
        m.add("blk.0.attn_norm.weight", 1, &[1.0, 2.0, 3.0]);
        assert!(matches!(m.check(&model), Err(QuantError::ImatrixMismatch { .. })));
        let mut m = Imatrix::default();
        m.add("blk.0.attn_q.weight", 1, &[1.0, 2.0]);
        let e = m.check(&model).unwrap_err().to_string();
        assert!(e.contains("2 values") && e.contains("3 columns"), "{e}");
        let mut m = Imatrix::default();
        m.add("blk.9.attn_q.weight", 1, &[1.0, 2.0, 3.0]);
        assert!(m.check(&model).unwrap_err().to_string().contains("no tensor"));
    }
}
