//! Long-context evaluation: needle retrieval by depth and length, and perplexity by position.
//!
//! **Needle in a haystack.** The haystack is a long text (the CLI uses Shakespeare's plays),
//! tokenized once. A needle prompt is `BOS + PREAMBLE + window[..p] + needle + window[p..] +
//! QUESTION`: a window of the haystack that starts a line, the sentence "The secret passphrase is
//! NNNNNNN." put at the line start nearest depth `d` of the window (`p ≈ d × window`), and the
//! question "What is the secret passphrase? The secret passphrase is". The model continues greedily
//! for up to `answer_tokens` tokens, ending early at an end-of-generation token or at the first
//! line break after some text; the trial is correct when the answer holds the 7-digit value as a
//! whole number. Prompts are spliced from token runs, so a
//! prompt of length `L` has exactly `L - answer_tokens` tokens and the answer still fits in `L`.
//!
//! A trial draws its value and window from its own random stream (SplitMix64 over the seed, the
//! length and the trial index), so a cell's result does not depend on which other lengths were
//! asked for. All depths of a trial use the same window and value, which makes depths a paired
//! comparison and lets them share work: depths run in order of position, and the cache keeps the
//! prompt's common prefix (head and window up to the needle), truncated back to it after each answer.
//!
//! **Perplexity by position.** Chunks of the largest length `L` (BOS first, as llama.cpp, when the
//! model adds one) at random line starts are scored token by token, `score_chunk` tokens per
//! forward call, so at most `score_chunk × vocab` logits exist at once. The negative log-likelihood
//! of the token at position `p` (predicted from the `p` tokens before it) is summed over chunks and
//! reported in power-of-two position buckets `[0, 128)`, `[128, 256)`, ..., `[2^k, L)`. Attention
//! is causal, so the first `l` tokens of a chunk are a chunk of length `l`: the perplexity of each
//! shorter length comes from the same run, as the token-weighted geometric mean of its positions.

mod haystack;
mod needle;
mod position;
mod session;

pub use haystack::{answer_matches, needle_text, Haystack, MIN_WINDOW, PREAMBLE, QUESTION};
pub use position::{
    bucket_edges, score_positions, LengthPpl, PositionBucket, PositionReport, FIRST_BUCKET,
};

use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Model, ModelError, Workspace, DEFAULT_BLOCK_SIZE};

use haystack::{plan_trial, PromptParts, TrialPlan};
use needle::Trials;
use session::Session;

/// The tokenizer as this module needs it.
pub trait TextCodec {
    /// Tokens of `text`, without BOS/EOS, control-token text read as plain text.
    fn encode(&self, text: &str) -> Vec<u32>;
    /// Text of `tokens`.
    fn decode(&self, tokens: &[u32]) -> String;
    /// Whether `token` ends a generation.
    fn is_eog(&self, token: u32) -> bool;
}

/// Settings of a long-context run.
#[derive(Clone, Debug, PartialEq)]
pub struct LongContextConfig {
    /// Context lengths in tokens (sorted and deduplicated by [`run`]).
    pub lengths: Vec<usize>,
    /// Needle depths: 0 is the start of the haystack window, 1 its end.
    pub depths: Vec<f64>,
    /// Needle trials per (length, depth) cell; 0 skips the needle test.
    pub trials: usize,
    pub seed: u64,
    /// Tokens the greedy answer may take (the prompt leaves room for them).
    pub answer_tokens: usize,
    /// Chunks of the largest length scored for perplexity by position; 0 skips it.
    pub ppl_chunks: usize,
    /// BOS token that starts every prompt and chunk (the model's, when it adds one).
    pub bos: Option<u32>,
    /// Tokens per forward call when scoring positions (`None`: [`position::default_score_chunk`]).
    pub score_chunk: Option<usize>,
}

impl Default for LongContextConfig {
    fn default() -> Self {
        Self {
            lengths: vec![1024, 2048, 4096],
            depths: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            trials: 3,
            seed: 0,
            answer_tokens: 12,
            ppl_chunks: 2,
            bos: None,
            score_chunk: None,
        }
    }
}

/// Why a long-context run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum LongContextError {
    #[error("no lengths to test")]
    NoLengths,
    #[error("nothing to do: no needle trials and no perplexity chunks")]
    NothingToDo,
    #[error("length {length} is beyond the model's context of {context} tokens")]
    BeyondContext { length: usize, context: usize },
    #[error("length {length} is too short: the test needs at least {min} tokens")]
    LengthTooShort { length: usize, min: usize },
    #[error("depth {depth} is outside 0..=1")]
    BadDepth { depth: f64 },
    #[error("no depths to test")]
    NoDepths,
    #[error("the answer needs at least 1 token")]
    NoAnswerTokens,
    #[error("the haystack has {tokens} tokens, fewer than the {needed} one prompt needs")]
    HaystackTooShort { tokens: usize, needed: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What the run is doing, for progress reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Needle { length: usize, depth: f64, trial: usize, trials: usize },
    Perplexity { length: usize, chunk: usize, chunks: usize },
    Done,
}

/// Progress: `done` of `total` tokens to feed through the model, and the stage starting now.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub stage: Stage,
}

/// One needle trial at one depth.
#[derive(Clone, Debug, PartialEq)]
pub struct NeedleResult {
    pub length: usize,
    /// Index into the report's depths.
    pub depth_index: usize,
    pub depth: f64,
    pub trial: usize,
    pub value: u32,
    /// Haystack position of the window's first token.
    pub offset: usize,
    /// Prompt tokens before the needle.
    pub needle_at: usize,
    /// Where the needle landed: window tokens before it over window tokens.
    pub actual_depth: f64,
    pub prompt_tokens: usize,
    /// The greedy continuation's text.
    pub answer: String,
    pub correct: bool,
}

/// Everything a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LongContextReport {
    /// Sorted, without duplicates.
    pub lengths: Vec<usize>,
    pub depths: Vec<f64>,
    pub trials: usize,
    /// In order of length, trial, depth.
    pub needles: Vec<NeedleResult>,
    /// Seconds spent on the needle trials of each length.
    pub needle_seconds: Vec<f64>,
    pub positions: Option<PositionReport>,
}

impl LongContextReport {
    fn share(results: impl Iterator<Item = bool>) -> Option<f64> {
        let (mut hits, mut n) = (0usize, 0usize);
        for c in results {
            hits += usize::from(c);
            n += 1;
        }
        (n > 0).then(|| hits as f64 / n as f64)
    }

    /// Share of correct trials in a (length, depth) cell (`None` without trials).
    pub fn accuracy(&self, length: usize, depth_index: usize) -> Option<f64> {
        Self::share(
            self.needles
                .iter()
                .filter(|r| r.length == length && r.depth_index == depth_index)
                .map(|r| r.correct),
        )
    }

    /// Share of correct trials at `length`, over all depths.
    pub fn length_accuracy(&self, length: usize) -> Option<f64> {
        Self::share(self.needles.iter().filter(|r| r.length == length).map(|r| r.correct))
    }
}

impl LongContextConfig {
    /// The largest length (0 when there is none).
    fn max_length(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// Checks the settings against a model of `context` tokens; returns them with the lengths
    /// sorted and deduplicated. [`run`] calls it first; a caller may call it before loading data.
    pub fn validate(&self, context: usize) -> Result<Self, LongContextError> {
        let mut cfg = self.clone();
        cfg.lengths.sort_unstable();
        cfg.lengths.dedup();
        let (&min, &max) =
            cfg.lengths.first().zip(cfg.lengths.last()).ok_or(LongContextError::NoLengths)?;
        if min < 2 {
            return Err(LongContextError::LengthTooShort { length: min, min: 2 });
        }
        if max > context {
            return Err(LongContextError::BeyondContext { length: max, context });
        }
        if cfg.trials == 0 && cfg.ppl_chunks == 0 {
            return Err(LongContextError::NothingToDo);
        }
        if cfg.trials > 0 {
            if cfg.depths.is_empty() {
                return Err(LongContextError::NoDepths);
            }
            if let Some(&depth) = cfg.depths.iter().find(|d| !(0.0..=1.0).contains(*d)) {
                return Err(LongContextError::BadDepth { depth });
            }
            if cfg.answer_tokens == 0 {
                return Err(LongContextError::NoAnswerTokens);
            }
        }
        Ok(cfg)
    }
}

/// A checked run: every trial's prompt and every perplexity chunk chosen, nothing run yet.
pub struct Plan<'a> {
    cfg: LongContextConfig,
    hay: &'a Haystack,
    codec: &'a dyn TextCodec,
    parts: PromptParts,
    trials: Vec<TrialPlan>,
    chunks: Vec<usize>,
}

impl std::fmt::Debug for Plan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("cfg", &self.cfg)
            .field("trials", &self.trials)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl<'a> Plan<'a> {
    /// Validates `cfg` against `context` (the model's context length), then plans every needle
    /// trial (lengths ascending) and perplexity chunk: a length too short for the needle prompt, or
    /// a haystack too short for a length, fails here.
    pub fn new(
        context: usize,
        hay: &'a Haystack,
        codec: &'a dyn TextCodec,
        cfg: &LongContextConfig,
    ) -> Result<Self, LongContextError> {
        let cfg = cfg.validate(context)?;
        let parts = PromptParts::new(codec, cfg.bos);
        let mut trials = Vec::new();
        if cfg.trials > 0 {
            for &length in &cfg.lengths {
                for trial in 0..cfg.trials {
                    trials.push(plan_trial(hay, &parts, codec, &cfg, length, trial)?);
                }
            }
        }
        let chunks = position::plan_chunks(hay, &cfg, cfg.max_length())?;
        Ok(Self { cfg, hay, codec, parts, trials, chunks })
    }

    fn needle_trials(&self) -> Trials<'_> {
        Trials { hay: self.hay, parts: &self.parts, codec: self.codec, cfg: &self.cfg }
    }

    /// Tokens the run will feed through the model (answers counted at their longest).
    pub fn tokens(&self) -> usize {
        let t = self.needle_trials();
        let needles: usize = self.trials.iter().map(|p| t.costs(p).iter().sum::<usize>()).sum();
        needles + self.chunks.len() * self.cfg.max_length()
    }

    /// Runs the needle trials, then perplexity by position, in one KV cache sized for the largest
    /// length. `progress` is called as each unit of work starts (a depth of a trial, a perplexity
    /// chunk), and once at the end with [`Stage::Done`].
    pub fn run(
        &self,
        model: &Model,
        pool: &ThreadPool,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<LongContextReport, LongContextError> {
        let cfg = &self.cfg;
        let max_len = cfg.max_length();
        let total = self.tokens();
        let mut done = 0;
        let kv = KvCache::new(&model.config, max_len, DEFAULT_BLOCK_SIZE);
        let mut session = Session { model, pool, kv, ws: Workspace::new() };
        let trials = self.needle_trials();
        let mut needles = Vec::with_capacity(self.trials.len() * cfg.depths.len());
        let mut needle_seconds = vec![0.0; cfg.lengths.len()];
        for plan in &self.trials {
            let start = std::time::Instant::now();
            trials.run(&mut session, plan, &mut needles, &mut |depth, cost| {
                let (length, trial, trials) = (plan.length, plan.trial, cfg.trials);
                let stage = Stage::Needle { length, depth, trial, trials };
                progress(&Progress { done, total, stage });
                done += cost;
            })?;
            let li = cfg.lengths.partition_point(|&l| l < plan.length);
            needle_seconds[li] += start.elapsed().as_secs_f64();
        }
        let positions = if self.chunks.is_empty() {
            None
        } else {
            let score_chunk =
                cfg.score_chunk.unwrap_or_else(|| position::default_score_chunk(model));
            let chunks = self.chunks.len();
            let mut on_chunk = |chunk| {
                let stage = Stage::Perplexity { length: max_len, chunk, chunks };
                progress(&Progress { done, total, stage });
                done += max_len;
            };
            let hay = self.hay;
            Some(position::run(&mut session, hay, cfg, &self.chunks, score_chunk, &mut on_chunk)?)
        };
        progress(&Progress { done: total, total, stage: Stage::Done });
        Ok(LongContextReport {
            lengths: cfg.lengths.clone(),
            depths: cfg.depths.clone(),
            trials: cfg.trials,
            needles,
            needle_seconds,
            positions,
        })
    }
}

/// Plans and runs in one step: [`Plan::new`] with the model's context, then [`Plan::run`].
pub fn run(
    model: &Model,
    pool: &ThreadPool,
    hay: &Haystack,
    codec: &dyn TextCodec,
    cfg: &LongContextConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<LongContextReport, LongContextError> {
    Plan::new(model.config.context_length, hay, codec, cfg)?.run(model, pool, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_before_any_work() {
        let ok = LongContextConfig { lengths: vec![2048, 1024, 2048], ..Default::default() };
        assert_eq!(ok.validate(2048).unwrap().lengths, [1024, 2048]);
        let e = ok.validate(1500).unwrap_err();
        assert!(matches!(e, LongContextError::BeyondContext { length: 2048, context: 1500 }));
        assert!(e.to_string().contains("context of 1500"), "{e}");
        let bad = |f: &dyn Fn(&mut LongContextConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate(4096).unwrap_err()
        };
        assert!(matches!(bad(&|c| c.lengths.clear()), LongContextError::NoLengths));
        assert!(matches!(
            bad(&|c| c.depths = vec![0.5, 1.5]),
            LongContextError::BadDepth { depth } if depth == 1.5
        ));
        assert!(matches!(bad(&|c| c.depths = vec![f64::NAN]), LongContextError::BadDepth { .. }));
        assert!(matches!(bad(&|c| c.depths.clear()), LongContextError::NoDepths));
        assert!(matches!(bad(&|c| c.answer_tokens = 0), LongContextError::NoAnswerTokens));
        assert!(matches!(
            bad(&|c| (c.trials, c.ppl_chunks) = (0, 0)),
            LongContextError::NothingToDo
        ));
        assert!(matches!(
            bad(&|c| c.lengths = vec![1, 1024]),
            LongContextError::LengthTooShort { length: 1, min: 2 }
        ));
        // Without needle trials, depths are not looked at.
        let ppl_only = LongContextConfig { trials: 0, depths: vec![], ..ok.clone() };
        assert!(ppl_only.validate(4096).is_ok());
    }

    fn result(length: usize, depth_index: usize, correct: bool) -> NeedleResult {
        NeedleResult {
            length,
            depth_index,
            depth: depth_index as f64,
            trial: 0,
            value: 1_000_000,
            offset: 0,
            needle_at: 0,
            actual_depth: 0.0,
            prompt_tokens: length,
            answer: String::new(),
            correct,
        }
    }

    #[test]
    fn accuracy_per_cell_and_length() {
        let r = LongContextReport {
            lengths: vec![256, 512],
            depths: vec![0.0, 1.0],
            trials: 2,
            needles: vec![
                result(256, 0, true),
                result(256, 1, false),
                result(256, 0, true),
                result(256, 1, true),
                result(512, 0, false),
                result(512, 1, false),
            ],
            needle_seconds: vec![1.0, 2.0],
            positions: None,
        };
        assert_eq!(r.accuracy(256, 0), Some(1.0));
        assert_eq!(r.accuracy(256, 1), Some(0.5));
        assert_eq!(r.length_accuracy(256), Some(0.75));
        assert_eq!(r.length_accuracy(512), Some(0.0));
        assert_eq!(r.accuracy(1024, 0), None);
    }
}
