//! Capturing GPTQ's Hessians: an [`Observer`] that adds `XᵀX` of each layer Linear's input over
//! the calibration tokens (f32 sums, upper triangle, rows split among threads), one per input.
//!
//! Linears that read the same input (Q, K and V; gate and up) share one Hessian, kept under the
//! first one's name ([`hessian_key`]). Peak memory is `4·n²` bytes per Hessian: for all layers
//! at once about 0.4 GB for SmolLM2-135M, 0.44 GB for Gemma 3 270M and 2.5 GB for Qwen2.5 0.5B,
//! so a caller may capture a range of layers per pass ([`Hessians::layers`]).

use std::{borrow::Cow, collections::BTreeMap, ops::Range};

use llmopt_kernels::ThreadPool;
use llmopt_model::{Model, Observer};

use crate::awq::layer_of;
use crate::{imatrix, CalibConfig, Imatrix, QuantError};

/// `Σ x xᵀ` over the input rows of one Linear (upper triangle, f32) and the token count.
#[derive(Clone, Debug, PartialEq)]
pub struct Hessian {
    n: usize,
    sums: Vec<f32>,
    tokens: u64,
}

impl Hessian {
    /// An empty Hessian of `n` columns.
    pub fn new(n: usize) -> Self {
        Self { n, sums: vec![0.0; n * n], tokens: 0 }
    }

    /// Columns of the input.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Tokens added.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Adds the `n_tok` rows of `input` (row-major, `n` columns), on up to `threads` threads.
    pub fn add(&mut self, n_tok: usize, input: &[f32], threads: usize) {
        let n = self.n;
        if n_tok == 0 || input.len() != n_tok * n {
            return;
        }
        // Rows [b[k], b[k+1]) go to thread k; row i holds n - i sums, so split the triangle evenly.
        let threads = threads.clamp(1, n.max(1));
        let total = n * (n + 1) / 2;
        let mut bounds = vec![0usize];
        let mut acc = 0;
        for i in 0..n {
            acc += n - i;
            if acc * threads >= total * bounds.len() && bounds.len() < threads {
                bounds.push(i + 1);
            }
        }
        bounds.push(n);
        bounds.dedup();
        std::thread::scope(|s| {
            let mut rest = self.sums.as_mut_slice();
            let mut start = 0;
            for w in bounds.windows(2) {
                let (part, tail) = rest.split_at_mut((w[1] - w[0]) * n);
                rest = tail;
                let first = start;
                start = w[1];
                s.spawn(move || add_rows(part, first, n, input));
            }
        });
        self.tokens += n_tok as u64;
    }

    /// The mean square of input column `j` over the tokens added (`Σ x_j² / tokens`).
    pub fn mean_square(&self, j: usize) -> f32 {
        (f64::from(self.sums[j * self.n + j]) / self.tokens.max(1) as f64) as f32
    }

    /// `dᵀ (XᵀX) d / tokens`: the mean squared output error over the calibration tokens of a row
    /// of weights off by `d` (`d.len() == n`), from the upper triangle.
    pub fn quad_form(&self, d: &[f32]) -> f64 {
        let n = self.n;
        assert_eq!(d.len(), n, "quad_form needs {n} values");
        let mut total = 0f64;
        for i in 0..n {
            if d[i] == 0.0 {
                continue;
            }
            let row = &self.sums[i * n..(i + 1) * n];
            let off: f32 = row[i + 1..].iter().zip(&d[i + 1..]).map(|(h, x)| h * x).sum();
            total += f64::from(d[i]) * (f64::from(row[i]) * f64::from(d[i]) + 2.0 * f64::from(off));
        }
        total / self.tokens.max(1) as f64
    }

    /// `2/n · XᵀX` as a full symmetric n x n f64 matrix (GPTQ's `H`).
    pub fn to_f64(&self) -> Vec<f64> {
        let n = self.n;
        let scale = 2.0 / self.tokens.max(1) as f64;
        let mut h = vec![0.0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let v = f64::from(self.sums[i * n + j]) * scale;
                h[i * n + j] = v;
                h[j * n + i] = v;
            }
        }
        h
    }
}

/// Adds `x xᵀ` of every token to rows `first..` of the upper triangle (`part` holds those rows),
/// four tokens at a time so each row of sums is loaded once per four tokens.
fn add_rows(part: &mut [f32], first: usize, n: usize, input: &[f32]) {
    for toks in input.chunks(4 * n) {
        for (r, row) in part.chunks_exact_mut(n).enumerate() {
            let i = first + r;
            for x in toks.chunks_exact(n) {
                let a = x[i];
                if a != 0.0 {
                    for (h, &xj) in row[i..].iter_mut().zip(&x[i..]) {
                        *h += a * xj;
                    }
                }
            }
        }
    }
}

/// The name whose Hessian `name` uses: K and V read Q's input, up reads gate's.
pub fn hessian_key(name: &str) -> Cow<'_, str> {
    for (from, to) in [("attn_k.", "attn_q."), ("attn_v.", "attn_q."), ("ffn_up.", "ffn_gate.")] {
        if let Some((head, tail)) = name.split_once(from) {
            return Cow::Owned(format!("{head}{to}{tail}"));
        }
    }
    Cow::Borrowed(name)
}

/// Whether GPTQ sees the weight `name`: the layers' (`blk.N.*`), whose inputs it captures.
pub fn sees(name: &str) -> bool {
    layer_of(name).is_some()
}

/// The Hessians of every layer Linear's input (or of a range of layers), by [`hessian_key`].
#[derive(Clone, Debug, Default)]
pub struct Hessians {
    map: BTreeMap<String, Hessian>,
    /// Only these layers are captured (`None`: all).
    pub layers: Option<Range<usize>>,
    /// Threads that add each input.
    pub threads: usize,
}

impl Hessians {
    /// The Hessian `name`'s input has, if captured.
    pub fn get(&self, name: &str) -> Option<&Hessian> {
        self.map.get(hessian_key(name).as_ref())
    }

    /// Number of Hessians.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when none was captured.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes the sums take.
    pub fn bytes(&self) -> usize {
        self.map.values().map(|h| h.sums.len() * 4).sum()
    }
}

impl Observer for Hessians {
    fn on_linear(&mut self, name: &str, n_tok: usize, input: &[f32], _output: &[f32]) {
        let Some(layer) = layer_of(name) else { return };
        if n_tok == 0 || hessian_key(name) != name {
            return;
        }
        if self.layers.as_ref().is_some_and(|r| !r.contains(&layer)) {
            return;
        }
        let n = input.len() / n_tok;
        let h = self.map.entry(name.to_string()).or_insert_with(|| Hessian::new(n));
        if h.n == n {
            h.add(n_tok, input, self.threads);
        }
    }
}

/// Runs `tokens` through `model` in chunks as [`crate::calibrate`] does and captures the
/// Hessians of `layers` (all when `None`), with the importance matrix of the same pass (it
/// records the calibration's chunks, and `--imatrix-out` can save it).
pub fn capture_hessians(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    cfg: &CalibConfig,
    layers: Option<Range<usize>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Imatrix, Hessians), QuantError> {
    let hessians = Hessians { layers, threads: pool.n_threads().max(1), ..Hessians::default() };
    imatrix::calibrate_with(model, pool, tokens, cfg, hessians, progress)
}
