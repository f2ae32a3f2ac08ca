//! Reading OLMES request files: JSON lines (gzip-compressed or not), one per choice, grouped into
//! questions by `doc_id`. Unconditional requests (`doc_id >= 1000000`, the continuation alone, for
//! OLMES's `acc_uncond`) are skipped. A label is a choice index (a number or a numeric string) or,
//! as LAMBADA's, a list of answer texts: the choice whose trimmed continuation is among them.

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

/// One question: its choices in `idx` order and the index of the right one. A question with one
/// choice is a continuation to score (LAMBADA's last word), not a choice among several.
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

/// A request's `label` as written.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Label {
    Index(usize),
    /// Answer texts (LAMBADA: `["signs"]` for the continuation `" signs"`).
    Answers(Vec<String>),
}

impl Label {
    fn parse(v: &serde_json::Value) -> Option<Label> {
        use serde_json::Value;
        match v {
            Value::Number(n) => n.as_u64().map(|n| Label::Index(n as usize)),
            Value::String(s) => s.parse().ok().map(Label::Index),
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Label::Answers),
            _ => None,
        }
    }

    /// The index of the right choice.
    fn resolve(&self, choices: &[Choice]) -> Option<usize> {
        match self {
            Label::Index(i) => (*i < choices.len()).then_some(*i),
            Label::Answers(texts) => {
                choices.iter().position(|c| texts.iter().any(|t| t == c.continuation.trim()))
            }
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Index(i) => write!(f, "{i}"),
            Label::Answers(texts) => write!(f, "{texts:?}"),
        }
    }
}

/// Reads the questions of a request file (gzip detected by its magic bytes), in the order of their
/// first request, at most `limit` of them.
pub fn read_questions(r: impl Read, limit: Option<usize>) -> Result<Vec<Question>, TaskError> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let gz = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let lines: Box<dyn BufRead> =
        if gz { Box::new(BufReader::new(flate2::read::GzDecoder::new(r))) } else { Box::new(r) };
    let mut questions: Vec<(u64, Label, Vec<Option<Choice>>)> = Vec::new();
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
        let label = Label::parse(&l.label).ok_or_else(|| {
            bad(format!("label {} is neither a choice index nor a list of answers", l.label))
        })?;
        let qi = match index.get(&l.doc_id) {
            Some(&qi) => qi,
            None => {
                if limit.is_some_and(|n| questions.len() >= n) {
                    continue;
                }
                index.insert(l.doc_id, questions.len());
                questions.push((l.doc_id, label.clone(), Vec::new()));
                questions.len() - 1
            }
        };
        let (_, first, slots) = &mut questions[qi];
        if *first != label {
            return Err(bad(format!("labels {first} and {label} disagree")));
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
        .map(|(doc_id, label, slots)| {
            let bad = |what: String| TaskError::BadQuestion { doc_id, what };
            let choices = slots
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("a choice index is missing".into()))?;
            let label = label.resolve(&choices).ok_or_else(|| {
                bad(format!("label {label} names none of its {} choices", choices.len()))
            })?;
            Ok(Question { doc_id, label, choices })
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
        let lambada = line(1, 0, r#"["dog"]"#, "The", " cat");
        assert!(matches!(
            read_questions(lambada.as_bytes(), None),
            Err(TaskError::BadQuestion { doc_id: 1, .. })
        ));
        for label in ["[]", "[3]", "null", "-1"] {
            let l = line(1, 0, label, "Q:", " a");
            assert!(
                matches!(read_questions(l.as_bytes(), None), Err(TaskError::BadQuestion { .. })),
                "{label}"
            );
        }
    }

    #[test]
    fn a_list_label_names_the_choice_by_its_answer_text() {
        // LAMBADA: one request per doc, the last word as continuation, the label its text.
        let text = [
            line(0, 0, r#"["signs"]"#, "I don't care about", " signs"),
            line(1, 0, r#"["Shane", "shane"]"#, "said", " Shane"),
        ]
        .join("\n");
        let qs = read_questions(text.as_bytes(), None).unwrap();
        assert_eq!(qs.len(), 2);
        assert!(qs.iter().all(|q| q.label == 0 && q.choices.len() == 1));
        assert_eq!(qs[1].choices[0].continuation, " Shane");
        // With several choices, the one whose text is listed.
        let two = [line(4, 0, r#"["b"]"#, "Q:", " a"), line(4, 1, r#"["b"]"#, "Q:", " b")];
        assert_eq!(read_questions(two.join("\n").as_bytes(), None).unwrap()[0].label, 1);
    }
}
