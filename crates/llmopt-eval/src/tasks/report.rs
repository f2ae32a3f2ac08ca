//! What a task reports. A task's kind names its metrics ([`TaskKind::metrics`]), and each metric
//! knows its name and how to compute itself from the scored questions, so the CLI prints any mix
//! of tasks from the report alone.

use super::QuestionScores;
use crate::{perplexity::NllSums, Estimate};

/// How a task is scored, and so which metrics it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// Answer texts ranked by log-likelihood (OLMES `rc` requests): `acc`, `acc_per_char`.
    Ranked,
    /// One answer letter per choice after the lettered choices (MMLU): `acc`. The letters are all
    /// one character long, so ranking per character would repeat it.
    Letters,
    /// One continuation per document (LAMBADA's last word): `greedy_acc`, `perplexity`.
    LastWord,
}

/// One figure of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Share of questions whose highest-log-likelihood choice is the label.
    Acc,
    /// The same with log-likelihood per continuation character.
    AccPerChar,
    /// Share of documents whose continuation greedy decoding produces token for token
    /// (lm-eval's LAMBADA `acc`).
    GreedyAcc,
    /// exp(−mean over documents of the continuation's log-likelihood) (lm-eval's LAMBADA
    /// `perplexity`).
    Perplexity,
}

impl TaskKind {
    /// The metrics a task of this kind reports, in display order.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            TaskKind::Ranked => &[Metric::Acc, Metric::AccPerChar],
            TaskKind::Letters => &[Metric::Acc],
            TaskKind::LastWord => &[Metric::GreedyAcc, Metric::Perplexity],
        }
    }

    /// The metric a task of this kind is judged by when two models are compared question by
    /// question: the first share it reports (`acc`, or LAMBADA's `greedy_acc`).
    pub fn primary(self) -> Metric {
        self.metrics()[0]
    }

    /// The name used in reports (`ranked`, `letters`, `last_word`).
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Ranked => "ranked",
            TaskKind::Letters => "letters",
            TaskKind::LastWord => "last_word",
        }
    }
}

impl Metric {
    /// The metric's name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::AccPerChar => "acc_per_char",
            Metric::GreedyAcc => "greedy_acc",
            Metric::Perplexity => "perplexity",
        }
    }

    /// Whether the value is a share of questions (printed as a percentage).
    pub fn is_share(self) -> bool {
        !matches!(self, Metric::Perplexity)
    }

    /// Whether a scored question counts as right by this metric (`None` for perplexity, which is
    /// not a share of questions).
    pub fn hit(self, s: &QuestionScores) -> Option<bool> {
        match self {
            Metric::Acc => Some(s.pred() == s.label),
            Metric::AccPerChar => Some(s.pred_per_char() == s.label),
            Metric::GreedyAcc => Some(s.greedy[s.label]),
            Metric::Perplexity => None,
        }
    }

    /// The metric over scored questions. Shares have the binomial standard error sqrt(p(1-p)/n);
    /// perplexity has the standard error of the mean log-likelihood times the perplexity (as
    /// llama.cpp's perplexity).
    pub fn compute(self, scores: &[QuestionScores]) -> Estimate {
        if self == Metric::Perplexity {
            let mut nll = NllSums::default();
            scores.iter().for_each(|s| nll.add(-s.logprobs[s.label]));
            return nll.estimate();
        }
        let n = scores.len().max(1) as f64;
        let p = scores.iter().filter(|s| self.hit(s) == Some(true)).count() as f64 / n;
        Estimate { value: p, stderr: (p * (1.0 - p) / n).sqrt() }
    }
}

/// A task's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskReport {
    pub kind: TaskKind,
    pub questions: usize,
    /// The kind's metrics, in its order.
    pub metrics: Vec<(Metric, Estimate)>,
    /// Tokens fed through the model.
    pub tokens: usize,
}

impl TaskReport {
    /// The value of `metric`, if this kind of task reports it.
    pub fn get(&self, metric: Metric) -> Option<Estimate> {
        self.metrics.iter().find(|(m, _)| *m == metric).map(|&(_, e)| e)
    }
}

/// The figures of scored questions.
pub fn summarize(kind: TaskKind, scores: &[QuestionScores]) -> TaskReport {
    TaskReport {
        kind,
        questions: scores.len(),
        metrics: kind.metrics().iter().map(|&m| (m, m.compute(scores))).collect(),
        tokens: scores.iter().map(|s| s.tokens).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(label: usize, logprobs: Vec<f64>, chars: Vec<usize>, greedy: Vec<bool>) -> QuestionScores {
        QuestionScores { doc_id: 0, label, logprobs, greedy, chars, tokens: 3 }
    }

    #[test]
    fn accuracy_and_stderr() {
        let g = vec![false, false];
        let r = summarize(
            TaskKind::Ranked,
            &[
                s(0, vec![-1.0, -2.0], vec![1, 1], g.clone()),
                s(1, vec![-1.0, -1.5], vec![1, 3], g.clone()),
                s(1, vec![-1.0, -1.0], vec![2, 2], g.clone()),
                s(0, vec![-3.0, -1.0], vec![1, 1], g),
            ],
        );
        assert_eq!(r.questions, 4);
        let acc = r.get(Metric::Acc).unwrap();
        assert_eq!(acc.value, 0.25);
        assert_eq!(r.get(Metric::AccPerChar).unwrap().value, 0.5);
        assert!((acc.stderr - (0.25f64 * 0.75 / 4.0).sqrt()).abs() < 1e-12);
        assert_eq!(r.get(Metric::Perplexity), None);
        assert_eq!(r.tokens, 12);
    }

    #[test]
    fn last_word_reports_greedy_accuracy_and_perplexity() {
        let lp = [-0.5, -2.0, -1.0];
        let scores: Vec<_> = lp
            .iter()
            .zip([true, false, true])
            .map(|(&l, g)| s(0, vec![l], vec![4], vec![g]))
            .collect();
        let r = summarize(TaskKind::LastWord, &scores);
        let names: Vec<&str> = r.metrics.iter().map(|(m, _)| m.name()).collect();
        assert_eq!(names, ["greedy_acc", "perplexity"]);
        let acc = r.get(Metric::GreedyAcc).unwrap();
        assert!((acc.value - 2.0 / 3.0).abs() < 1e-12);
        let ppl = r.get(Metric::Perplexity).unwrap();
        let mean: f64 = lp.iter().sum::<f64>() / 3.0;
        assert!((ppl.value - (-mean).exp()).abs() < 1e-12);
        // Sample standard deviation of the NLLs over sqrt(n), times the perplexity.
        let var = lp.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / 3.0;
        assert!((ppl.stderr - (var / 2.0).sqrt() * ppl.value).abs() < 1e-9, "{ppl:?}");
        assert!(!Metric::Perplexity.is_share() && Metric::GreedyAcc.is_share());
    }

    #[test]
    fn greedy_accuracy_reads_the_labelled_choice() {
        let r =
            summarize(TaskKind::LastWord, &[s(1, vec![-9.0, -1.0], vec![1, 1], vec![true, false])]);
        assert_eq!(r.get(Metric::GreedyAcc).unwrap().value, 0.0);
        assert_eq!(summarize(TaskKind::Letters, &[]).metrics.len(), 1);
    }
}
