//! Tokenizing the choices as lm-eval-harness and OLMES do, and scoring them in batches that share
//! each context: per choice the summed log-probability of its continuation and whether every
//! continuation token was the model's top choice (lm-eval's `is_greedy`).

use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqId, SeqInput, Workspace, DEFAULT_BLOCK_SIZE};

use super::{Question, TaskError};

/// A choice as token ids: the context it is scored after and the continuation tokens scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedChoice {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
    /// Characters of the continuation text (the divisor of `acc_per_char`).
    pub chars: usize,
}

/// A question with tokenized choices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedQuestion {
    pub doc_id: u64,
    pub label: usize,
    pub choices: Vec<TokenizedChoice>,
}

/// Tokenizes as lm-eval-harness's `_encode_pair`: whitespace that ends the context moves to the
/// continuation, `whole = encode(context + continuation)`, and the continuation is what follows the
/// first `encode(context).len()` tokens of `whole` (so a merge across the boundary counts as
/// continuation). `encode` adds the model's special tokens (BOS) as llama.cpp does; when a context
/// encodes to nothing, `prefix` (BOS or EOS) stands in for it, as lm-eval's prefix token.
pub fn tokenize_question(
    q: &Question,
    encode: &mut dyn FnMut(&str) -> Vec<u32>,
    prefix: Option<u32>,
) -> Result<TokenizedQuestion, TaskError> {
    let bad = |what: &str| TaskError::BadQuestion { doc_id: q.doc_id, what: what.into() };
    let mut choices = Vec::with_capacity(q.choices.len());
    for c in &q.choices {
        let context = c.context.trim_end();
        let whole = encode(&format!("{context}{}{}", &c.context[context.len()..], c.continuation));
        let n_ctx = encode(context).len().min(whole.len());
        let (mut ctx, cont) = (whole[..n_ctx].to_vec(), whole[n_ctx..].to_vec());
        if ctx.is_empty() {
            ctx.extend(prefix);
        }
        if ctx.is_empty() {
            return Err(bad("empty context and no BOS/EOS token to stand in for it"));
        }
        if cont.is_empty() {
            return Err(bad("a continuation encodes to no tokens"));
        }
        choices.push(TokenizedChoice {
            context: ctx,
            continuation: cont,
            chars: c.continuation.chars().count(),
        });
    }
    Ok(TokenizedQuestion { doc_id: q.doc_id, label: q.label, choices })
}

/// How questions are batched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreConfig {
    /// Context tokens prefilled per forward call (a question's context is never split; one longer
    /// than this runs alone).
    pub batch_tokens: usize,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self { batch_tokens: 512 }
    }
}

/// Log-likelihoods of one question's choices.
#[derive(Clone, Debug, PartialEq)]
pub struct QuestionScores {
    pub doc_id: u64,
    pub label: usize,
    /// Sum of the continuation tokens' log-probabilities (nats), per choice.
    pub logprobs: Vec<f64>,
    /// Whether each continuation token was the argmax of its row (the first index on ties, as
    /// torch's argmax), per choice: the continuation is what greedy decoding would produce.
    pub greedy: Vec<bool>,
    /// Continuation characters, per choice.
    pub chars: Vec<usize>,
    /// Tokens this question fed through the model.
    pub tokens: usize,
}

fn argmax(xs: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in xs.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

impl QuestionScores {
    /// The choice with the largest log-likelihood (the first on ties, as numpy's argmax).
    pub fn pred(&self) -> usize {
        argmax(self.logprobs.iter().copied())
    }

    /// The choice with the largest log-likelihood per character.
    pub fn pred_per_char(&self) -> usize {
        argmax(self.logprobs.iter().zip(&self.chars).map(|(l, &c)| l / c.max(1) as f64))
    }
}

/// Choices of one question that share a context token for token: one sequence in the cache.
struct Unit<'a> {
    question: usize,
    context: &'a [u32],
    choices: Vec<usize>,
}

fn units(questions: &[TokenizedQuestion]) -> Vec<Unit<'_>> {
    let mut out: Vec<Unit<'_>> = Vec::new();
    for (qi, q) in questions.iter().enumerate() {
        let first = out.len();
        for (ci, c) in q.choices.iter().enumerate() {
            match out[first..].iter_mut().find(|u| u.context == c.context.as_slice()) {
                Some(u) => u.choices.push(ci),
                None => out.push(Unit { question: qi, context: &c.context, choices: vec![ci] }),
            }
        }
    }
    out
}

/// Logits one continuation forward may hold at most (rows x vocabulary x 4 bytes).
const LOGITS_BYTES: usize = 256 << 20;

/// Log-probability of `target` in a row of logits, with the row's normalizer computed once
/// (max-shifted, exponentials summed in f64, as [`crate::perplexity::log_softmax_at`]), and the
/// row's argmax found in the same pass as its max.
struct LogSoftmax<'a> {
    row: &'a [f32],
    max: f32,
    argmax: usize,
    log_sum: f64,
}

impl<'a> LogSoftmax<'a> {
    fn new(row: &'a [f32]) -> Self {
        let (mut argmax, mut max) = (0, f32::NEG_INFINITY);
        for (i, &l) in row.iter().enumerate() {
            if l > max {
                (argmax, max) = (i, l);
            }
        }
        let sum: f64 = row.iter().map(|&l| f64::from((l - max).exp())).sum();
        Self { row, max, argmax, log_sum: sum.ln() }
    }

    fn at(&self, target: u32) -> f64 {
        f64::from(self.row[target as usize] - self.max) - self.log_sum
    }

    fn is_argmax(&self, target: u32) -> bool {
        self.argmax == target as usize
    }
}

/// Scores every choice of every question. Questions go in batches of about `cfg.batch_tokens`
/// context tokens: one forward prefills the batch's contexts (one sequence each, the last token's
/// logits scoring every choice's first token); then every choice becomes a fork of its context's
/// sequence (the context's cache blocks shared, not recomputed) and the continuations (but their
/// last tokens) of all the batch's choices run as one ragged batch, split only to keep the logits
/// under [`LOGITS_BYTES`] and `cfg.batch_tokens` rows. `progress(done, total)` counts questions.
pub fn score_questions(
    model: &Model,
    pool: &ThreadPool,
    questions: &[TokenizedQuestion],
    cfg: &ScoreConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<QuestionScores>, TaskError> {
    let vocab = model.config.vocab_size;
    let units = units(questions);
    let bs = DEFAULT_BLOCK_SIZE;
    let cont = |u: &Unit<'_>, ci: usize| questions[u.question].choices[ci].continuation.as_slice();
    // Batches of whole units, by context tokens.
    let mut batches: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut ctx_tokens = 0;
    for (i, u) in units.iter().enumerate() {
        if i > start && ctx_tokens + u.context.len() > cfg.batch_tokens {
            batches.push(start..i);
            (start, ctx_tokens) = (i, 0);
        }
        ctx_tokens += u.context.len();
    }
    batches.push(start..units.len());
    // A fork holds the blocks from the one its first token lands in (copied if shared) on.
    let fork_blocks =
        |u: &Unit<'_>, n: usize| (u.context.len() + n).div_ceil(bs) - u.context.len() / bs;
    let capacity = batches
        .iter()
        .map(|b| {
            units[b.clone()]
                .iter()
                .map(|u| {
                    let forks: usize =
                        u.choices.iter().map(|&ci| fork_blocks(u, cont(u, ci).len() - 1)).sum();
                    u.context.len().div_ceil(bs) + forks
                })
                .sum::<usize>()
                * bs
        })
        .max()
        .unwrap_or(bs);
    let max_rows = (LOGITS_BYTES / (vocab * 4)).clamp(1, cfg.batch_tokens.max(1));
    let mut kv = KvCache::new(&model.config, capacity, bs);
    let mut ws = Workspace::new();
    let mut scores: Vec<QuestionScores> = questions
        .iter()
        .map(|q| QuestionScores {
            doc_id: q.doc_id,
            label: q.label,
            logprobs: vec![0.0; q.choices.len()],
            greedy: vec![true; q.choices.len()],
            chars: q.choices.iter().map(|c| c.chars).collect(),
            tokens: 0,
        })
        .collect();
    let mut seqs: Vec<SeqId> = Vec::new();
    let mut forks: Vec<SeqId> = Vec::new();
    let mut inputs: Vec<SeqInput<'_>> = Vec::new();
    let mut pending: Vec<(usize, usize)> = Vec::new();
    for batch in batches {
        let units = &units[batch];
        seqs.clear();
        seqs.extend(units.iter().map(|_| kv.add_sequence()));
        inputs.clear();
        inputs.extend(units.iter().zip(&seqs).map(|(u, &seq)| SeqInput {
            seq,
            tokens: u.context,
            logits: Logits::Last,
        }));
        let logits = model.forward(pool, &inputs, &mut kv, &mut ws, None)?;
        for (k, u) in units.iter().enumerate() {
            let ls = LogSoftmax::new(&logits[k * vocab..(k + 1) * vocab]);
            let s = &mut scores[u.question];
            s.tokens += u.context.len();
            for &ci in &u.choices {
                let first = cont(u, ci)[0];
                s.logprobs[ci] = ls.at(first);
                s.greedy[ci] = ls.is_argmax(first);
            }
        }
        // Every choice with more than one token, as a fork of its context.
        pending.clear();
        for (k, u) in units.iter().enumerate() {
            pending
                .extend(u.choices.iter().filter(|&&ci| cont(u, ci).len() > 1).map(|&ci| (k, ci)));
        }
        let mut at = 0;
        while at < pending.len() {
            let (first, mut rows) = (at, 0);
            while at < pending.len() {
                let (k, ci) = pending[at];
                let n = cont(&units[k], ci).len() - 1;
                if at > first && rows + n > max_rows {
                    break;
                }
                rows += n;
                at += 1;
            }
            forks.clear();
            inputs.clear();
            for &(k, ci) in &pending[first..at] {
                let u = &units[k];
                let fork = kv.fork_sequence(seqs[k], u.context.len())?;
                forks.push(fork);
                let c = cont(u, ci);
                inputs.push(SeqInput { seq: fork, tokens: &c[..c.len() - 1], logits: Logits::All });
            }
            let logits = model.forward(pool, &inputs, &mut kv, &mut ws, None)?;
            let mut row = 0;
            for &(k, ci) in &pending[first..at] {
                let u = &units[k];
                let c = cont(u, ci);
                let s = &mut scores[u.question];
                for &t in &c[1..] {
                    let ls = LogSoftmax::new(&logits[row * vocab..(row + 1) * vocab]);
                    s.logprobs[ci] += ls.at(t);
                    s.greedy[ci] &= ls.is_argmax(t);
                    row += 1;
                }
                s.tokens += c.len() - 1;
            }
            for &f in &forks {
                kv.remove_sequence(f);
            }
        }
        for &seq in &seqs {
            kv.remove_sequence(seq);
        }
        let last = units.last().map_or(0, |u| u.question);
        progress(last + 1, questions.len());
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::Choice;

    #[test]
    fn tokenizes_as_lm_eval_and_moves_trailing_space() {
        let q = Question {
            doc_id: 1,
            label: 0,
            choices: vec![
                Choice { context: "ab ".into(), continuation: "c".into() },
                Choice { context: "".into(), continuation: " d".into() },
            ],
        };
        // One token per character.
        let mut enc = |s: &str| s.chars().map(|c| c as u32).collect::<Vec<u32>>();
        let t = tokenize_question(&q, &mut enc, Some(0)).unwrap();
        assert_eq!(t.choices[0].context, vec![97, 98]);
        assert_eq!(t.choices[0].continuation, vec![32, 99]);
        assert_eq!(t.choices[0].chars, 1);
        assert_eq!((t.choices[1].context.clone(), t.choices[1].continuation.len()), (vec![0], 2));
        assert!(tokenize_question(&q, &mut enc, None).is_err());
    }

    #[test]
    fn log_softmax_argmax_is_the_first_maximum() {
        let row = [0.5f32, 2.0, -1.0, 2.0];
        let ls = LogSoftmax::new(&row);
        assert!(ls.is_argmax(1) && !ls.is_argmax(3) && !ls.is_argmax(0));
        let total: f64 = (0..4).map(|t| ls.at(t).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(ls.at(1) > ls.at(0) && ls.at(1) == ls.at(3));
    }

    #[test]
    fn choices_group_by_identical_context_only() {
        // WinoGrande: the options sit in the context, the continuation is shared: one sequence
        // per choice. ARC-style: one context, several continuations: one sequence.
        let tc = |context: Vec<u32>, continuation: Vec<u32>| TokenizedChoice {
            context,
            continuation,
            chars: 1,
        };
        let q = |choices| TokenizedQuestion { doc_id: 0, label: 0, choices };
        let qs = [
            q(vec![tc(vec![1, 2, 3], vec![9, 9]), tc(vec![1, 2, 4], vec![9, 9])]),
            q(vec![tc(vec![5, 6], vec![7]), tc(vec![5, 6], vec![8, 8, 8]), tc(vec![5], vec![6])]),
        ];
        let u = units(&qs);
        let got: Vec<(usize, &[u32], Vec<usize>)> =
            u.iter().map(|u| (u.question, u.context, u.choices.clone())).collect();
        let want: Vec<(usize, &[u32], Vec<usize>)> = vec![
            (0, &[1, 2, 3], vec![0]),
            (0, &[1, 2, 4], vec![1]),
            (1, &[5, 6], vec![0, 1]),
            (1, &[5], vec![2]),
        ];
        assert_eq!(got, want);
    }
}
