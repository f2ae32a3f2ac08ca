//! Reading OLMES request files: JSON lines (gzip-compressed or not), one per choice, grouped into
//! questions by `doc_id`. Unconditional requests (`doc_id >= 1000000`, the continuation alone, for
//! OLMES's `acc_uncond`) are skipped.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read},
};

use serde::Deserialize;

use super::TaskError;

/// `doc_id`s from here on are OLMES's unconditional requests (`uncond_docid_offset`).
const UNCOND_DOC_ID: u64 = 1_000_000;

/// One choice: the text it is scored after, and the text scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub context: String,
    pub continuation: String,
}

/// One question: its choices in `idx` order and the index of the right one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub doc_id: u64,
    pub label: usize,
    pub choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Line {
    doc_id: u64,
    idx: usize,
    label: serde_json::Value,
    request: Request,
}

#[derive(Deserialize)]
struct Request {
    context: String,
    continuation: String,
}

/// Reads the questions of a request file (gzip detected by its magic bytes), in the order of their
/// first request, at most `limit` of them.
pub fn read_questions(r: impl Read, limit: Option<usize>) -> Result<Vec<Question>, TaskError> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let gz = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let lines: Box<dyn BufRead> =
        if gz { Box::new(BufReader::new(flate2::read::GzDecoder::new(r))) } else { Box::new(r) };
    let mut questions: Vec<(Question, Vec<Option<Choice>>)> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for (i, line) in lines.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line)
            .map_err(|source| TaskError::Json { line: i + 1, source })?;
        if l.doc_id >= UNCOND_DOC_ID {
            continue;
        }
        let bad = |what: String| TaskError::BadQuestion { doc_id: l.doc_id, what };
        let label = match &l.label {
            serde_json::Value::Number(n) => n.as_u64().map(|n| n as usize),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| bad(format!("label {} is not a choice index", l.label)))?;
        let qi = match index.get(&l.doc_id) {
            Some(&qi) => qi,
            None => {
                if limit.is_some_and(|n| questions.len() >= n) {
                    continue;
                }
                index.insert(l.doc_id, questions.len());
                let q = Question { doc_id: l.doc_id, label, choices: Vec::new() };
                questions.push((q, Vec::new()));
                questions.len() - 1
            }
        };
        let (q, slots) = &mut questions[qi];
        if q.label != label {
            return Err(bad(format!("labels {} and {label} disagree", q.label)));
        }
        if slots.len() <= l.idx {
            slots.resize(l.idx + 1, None);
        }
        let choice = Choice { context: l.request.context, continuation: l.request.continuation };
        if slots[l.idx].replace(choice).is_some() {
            return Err(bad(format!("choice {} appears twice", l.idx)));
        }
    }
    if questions.is_empty() {
        return Err(TaskError::Empty);
    }
    questions
        .into_iter()
        .map(|(mut q, slots)| {
            let n = slots.len();
            q.choices = slots.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
                TaskError::BadQuestion {
                    doc_id: q.doc_id,
                    what: "a choice index is missing".into(),
                }
            })?;
            if n < 2 || q.label >= n {
                let what = format!("{n} choices with label {}", q.label);
                return Err(TaskError::BadQuestion { doc_id: q.doc_id, what });
            }
            Ok(q)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(doc: u64, idx: usize, label: &str, ctx: &str, cont: &str) -> String {
        format!(
            r#"{{"doc_id": {doc}, "idx": {idx}, "label": {label}, "request": {{"context": "{ctx}", "continuation": "{cont}"}}}}"#
        )
    }

    #[test]
    fn groups_by_doc_in_idx_order_and_skips_unconditional() {
        let text = [
            line(7, 1, "0", "Q:", " b"),
            line(7, 0, "0", "Q:", " a"),
            line(1_000_007, 0, "0", "Answer:", " a"),
            line(3, 0, "\"1\"", "R:", " c"),
            line(3, 1, "\"1\"", "R:", " d"),
        ]
        .join("\n");
        let qs = read_questions(text.as_bytes(), None).unwrap();
        assert_eq!(qs.len(), 2);
        assert_eq!(
            (qs[0].doc_id, qs[0].label, qs[0].choices[0].continuation.as_str()),
            (7, 0, " a")
        );
        assert_eq!((qs[1].doc_id, qs[1].label), (3, 1));
        assert_eq!(read_questions(text.as_bytes(), Some(1)).unwrap().len(), 1);
    }

    #[test]
    fn rejects_broken_questions() {
        let gap = [line(1, 0, "0", "Q:", " a"), line(1, 2, "0", "Q:", " c")].join("\n");
        assert!(matches!(read_questions(gap.as_bytes(), None), Err(TaskError::BadQuestion { .. })));
        let label = [line(1, 0, "5", "Q:", " a"), line(1, 1, "5", "Q:", " b")].join("\n");
        assert!(matches!(
            read_questions(label.as_bytes(), None),
            Err(TaskError::BadQuestion { .. })
        ));
        assert!(matches!(
            read_questions("{}".as_bytes(), None),
            Err(TaskError::Json { line: 1, .. })
        ));
        assert!(matches!(read_questions("".as_bytes(), None), Err(TaskError::Empty)));
    }
}
