//! The store through its public API: runs in and out, filters, the hash cache, CSV export.

use std::{
    fs::File,
    path::Path,
    time::{Duration, SystemTime},
};

use llmopt_store::{
    write_csv, Better, Host, Metric, ModelFile, RunFilter, RunRecord, Status, Store, StoreError,
};
use llmopt_testdata::TempDir;

fn run(kind: &str, model: &str, tps: f64) -> RunRecord {
    RunRecord {
        kind: kind.into(),
        argv: vec!["llmopt".into(), kind.into(), "-m".into(), model.into()],
        model: Some(ModelFile { path: model.into(), sha256: "ab".repeat(32), size: 1234 }),
        host: Host {
            cpu: "Test CPU @ 3.00GHz".into(),
            logical_cores: 4,
            physical_cores: 2,
            memory_bytes: 8 << 30,
            os: "Debian GNU/Linux 12 (bookworm); Linux 6.1.0; x86_64".into(),
            cpu_features: vec!["avx2".into(), "fma".into()],
        },
        llmopt_version: "0.1.0".into(),
        llmopt_commit: "abc1234-dirty".into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        finished_at: "2025-01-01T00:00:05Z".into(),
        status: Status::Ok,
        metrics: vec![
            Metric::new("pp16", tps, "t/s", Better::Higher).with_stderr(1.5),
            Metric::new("peak_rss", 120.5, "MB", Better::Lower),
            Metric::new("nan", f64::NAN, "", Better::None),
        ],
        report: Some(format!("{{\"tokens_per_s\":{tps}}}")),
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir.join("runs.sqlite")).unwrap()
}

#[test]
fn runs_go_in_and_come_back() {
    let tmp = TempDir::new("store-roundtrip");
    let mut store = open(tmp.path());
    let rec = run("bench", "models/a.gguf", 100.0);
    let id = store.insert(&rec).unwrap();
    let got = store.get(id).unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.record.kind, rec.kind);
    assert_eq!(got.record.argv, rec.argv);
    assert_eq!(got.record.model, rec.model);
    assert_eq!(got.record.host, rec.host);
    assert_eq!(got.record.report, rec.report);
    assert_eq!(got.record.metrics[..2], rec.metrics[..2]);
    assert!(got.record.metrics[2].value.is_nan(), "NaN is kept as not-a-number");
    assert_eq!(got.record.metric("pp16").unwrap().stderr, Some(1.5));

    let err = store.get(id + 100).unwrap_err();
    assert!(matches!(err, StoreError::UnknownRun { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{}", id + 100)));

    // Metric names are unique within a run; a duplicate stores nothing of that run.
    let mut dup = run("bench", "models/a.gguf", 1.0);
    dup.metrics.push(Metric::new("pp16", 2.0, "t/s", Better::Higher));
    assert!(store.insert(&dup).is_err());
    assert_eq!(store.list(&RunFilter::default()).unwrap().len(), 1);
}

#[test]
fn list_filters_by_model_and_kind_newest_first() {
    let tmp = TempDir::new("store-list");
    let mut store = open(tmp.path());
    let ids: Vec<i64> = [
        ("bench", "models/SmolLM2-135M.Q4_1.gguf"),
        ("eval.perplexity", "models/SmolLM2-135M.Q4_1.gguf"),
        ("eval.tasks", "models/gemma-3-270m.gguf"),
        ("bench", "models/gemma-3-270m.gguf"),
        ("evaluation", "models/other.gguf"),
    ]
    .iter()
    .map(|(k, m)| store.insert(&run(k, m, 10.0)).unwrap())
    .collect();
    let list = |model: Option<&str>, kind: Option<&str>, limit: Option<usize>| -> Vec<i64> {
        let f = RunFilter { model: model.map(Into::into), kind: kind.map(Into::into), limit };
        store.list(&f).unwrap().iter().map(|r| r.id).collect()
    };
    assert_eq!(list(None, None, None), [ids[4], ids[3], ids[2], ids[1], ids[0]]);
    assert_eq!(list(None, None, Some(2)), [ids[4], ids[3]]);
    assert_eq!(list(Some("SmolLM2"), None, None), [ids[1], ids[0]]);
    assert_eq!(list(None, Some("bench"), None), [ids[3], ids[0]]);
    // A kind matches its sub-kinds, not other words that start the same.
    assert_eq!(list(None, Some("eval"), None), [ids[2], ids[1]]);
    assert_eq!(list(Some("gemma"), Some("eval.tasks"), None), [ids[2]]);
    assert_eq!(list(Some("nothing"), None, None), Vec::<i64>::new());
    let listed = store.list(&RunFilter::default()).unwrap();
    assert!(listed.iter().all(|r| r.record.report.is_none() && r.record.metrics.len() == 3));
}

#[test]
fn the_hash_cache_follows_size_and_mtime() {
    let tmp = TempDir::new("store-hash");
    let mut store = open(tmp.path());
    let file = tmp.path().join("model.gguf");
    std::fs::write(&file, b"abc").unwrap();
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    let first = store.file_sha256(&file).unwrap();
    assert_eq!((first.sha256.as_str(), first.size, first.cached), (abc, 3, false));
    assert!(store.file_sha256(&file).unwrap().cached);
    // The same file through another path shares the cache entry.
    let other = tmp.path().join(".").join("model.gguf");
    assert!(store.file_sha256(&other).unwrap().cached);

    // Same size, new content and mtime: hashed again.
    std::fs::write(&file, b"abd").unwrap();
    let t = SystemTime::now() + Duration::from_secs(10);
    File::options().write(true).open(&file).unwrap().set_modified(t).unwrap();
    let changed = store.file_sha256(&file).unwrap();
    assert!(!changed.cached);
    assert_ne!(changed.sha256, abc);
    assert!(store.file_sha256(&file).unwrap().cached);

    // New size with the mtime forced back: hashed again.
    std::fs::write(&file, b"abcd").unwrap();
    File::options().write(true).open(&file).unwrap().set_modified(t).unwrap();
    let grown = store.file_sha256(&file).unwrap();
    assert_eq!((grown.size, grown.cached), (4, false));

    // A stale cached hash is never returned after the file changes back.
    std::fs::write(&file, b"abc").unwrap();
    File::options().write(true).open(&file).unwrap().set_modified(t).unwrap();
    assert_eq!(store.file_sha256(&file).unwrap().sha256, abc);

    let model = store.model_file(&file).unwrap();
    assert_eq!((model.sha256.as_str(), model.size), (abc, 3));
    let err = store.file_sha256(&tmp.path().join("missing.gguf")).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }) && err.to_string().contains("missing.gguf"));
}

#[test]
fn csv_has_a_row_per_metric_and_escapes_fields() {
    let tmp = TempDir::new("store-csv");
    let mut store = open(tmp.path());
    let mut tricky = run("eval.tasks", "models/a,b \"quoted\".gguf", 50.0);
    tricky.host.cpu = "CPU, with comma".into();
    let id1 = store.insert(&tricky).unwrap();
    let mut empty = run("bench", "models/b.gguf", 1.0);
    empty.metrics.clear();
    let id2 = store.insert(&empty).unwrap();

    let mut runs = store.list(&RunFilter::default()).unwrap();
    runs.reverse();
    let mut out = Vec::new();
    write_csv(&runs, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1 + 3 + 1, "{text}");
    assert!(lines[0].starts_with("run_id,kind,status,started_at,"));
    assert!(lines[0].ends_with(",metric,value,stderr,unit,better"));
    assert!(lines[1].starts_with(&format!("{id1},eval.tasks,ok,")), "{}", lines[1]);
    assert!(lines[1].contains(",\"models/a,b \"\"quoted\"\".gguf\","), "{}", lines[1]);
    assert!(lines[1].contains(",\"CPU, with comma\","), "{}", lines[1]);
    // The command line is shell-quoted, then CSV-quoted.
    assert!(lines[1].contains("\"llmopt eval.tasks -m 'models/a,b \"\"quoted\"\".gguf'\""));
    assert!(lines[1].ends_with(",pp16,50,1.5,t/s,higher"), "{}", lines[1]);
    assert!(lines[2].ends_with(",peak_rss,120.5,,MB,lower"), "{}", lines[2]);
    assert!(lines[3].ends_with(",nan,,,,none"), "{}", lines[3]);
    assert!(lines[4].starts_with(&format!("{id2},bench,")) && lines[4].ends_with(",,,,,"));
    // Every row has as many fields as the header once quotes are honoured.
    for l in &lines {
        assert_eq!(count_fields(l), 20, "{l}");
    }
}

/// Fields of one CSV line, honouring quotes.
fn count_fields(line: &str) -> usize {
    let (mut n, mut quoted) = (1, false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => n += 1,
            _ => {}
        }
    }
    n
}
