//! `llmopt eval compare BASE CANDIDATE`: one table of what an optimization cost (size, perplexity,
//! KL divergence, top-1 agreement, task accuracy with a paired test) and a verdict against a
//! budget, as the exit code (0 holds, 3 broken) so it can gate a deployment. The base runs first and
//! is dropped before the candidate loads: only one model is in memory at a time.

use std::{
    fs::File,
    io::{BufReader, BufWriter},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_eval::{
    compare::{paired_accuracy, Check, Metric, PairedAccuracy},
    compare_with_base, save_base,
    tasks::{Question, TaskKind},
    Estimate, KldReport, PerplexityConfig, PerplexityReport, ScoreConfig,
};
use llmopt_formats::gguf::GgufFile;
use llmopt_model::KvType;
use llmopt_store::Metric as StoreMetric;

use super::{
    compare_speed::{self, Speed},
    tasks::source,
};
use crate::{
    cli::{CompareArgs, RunArgs},
    load::Loaded,
    progress,
    record::RunDraft,
    units::human_bytes,
};

/// Exit code when the candidate breaks the budget.
const BUDGET_BROKEN: u8 = 3;

/// One model file's size figures.
struct FileFacts {
    path: PathBuf,
    bytes: u64,
    bits_per_weight: f64,
}

fn open_file(path: &Path) -> Result<GgufFile> {
    GgufFile::open(path).with_context(|| format!("cannot load model {}", path.display()))
}

fn file_facts(f: &GgufFile) -> FileFacts {
    FileFacts {
        path: f.path().to_path_buf(),
        bytes: f.file_len(),
        bits_per_weight: f.bits_per_weight(),
    }
}

/// KL divergence and paired answers need one tokenizer: checked from the files' vocabularies
/// before any model runs (the runs check the tokens themselves again).
fn check_same_vocabulary(base: &GgufFile, cand: &GgufFile) -> Result<()> {
    const KEY: &str = "tokenizer.ggml.tokens";
    let (b, c) = (base.metadata().get_array(KEY), cand.metadata().get_array(KEY));
    if b != c {
        let n = |v: Option<&[_]>| v.map_or("no".to_string(), |v| v.len().to_string());
        anyhow::bail!(
            "{} and {} have different vocabularies ({} and {} tokens): compare needs two versions of \
             one model (e.g. a quantization of its base)",
            base.path().display(),
            cand.path().display(),
            n(b),
            n(c)
        );
    }
    Ok(())
}

/// One task's questions and both models' per-question results.
struct TaskPair {
    name: String,
    regime: String,
    kind: TaskKind,
    questions: Vec<Question>,
    base: Vec<bool>,
    candidate: Vec<bool>,
}

/// A task's paired result by its primary metric.
struct PairedTask {
    name: String,
    regime: String,
    metric: &'static str,
    acc: PairedAccuracy,
}

/// Deletes the temporary base file however the command ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[allow(clippy::print_stdout)]
pub fn run(args: &CompareArgs) -> Result<ExitCode> {
    let draft = RunDraft::start("eval.compare", Some(&args.candidate));
    let measured = measure(args)?;
    let report = measured.report();
    let json = report.json(args);
    if args.json {
        println!("{json}");
    } else {
        report.print_table(args);
    }
    draft.record(&args.store, report.metrics(), &json);
    Ok(report.exit_code())
}

/// Everything `eval compare` measured (what `quantize --validate` reports too).
pub(crate) struct Measured {
    facts: [FileFacts; 2],
    base_ppl: PerplexityReport,
    kld: KldReport,
    paired: Vec<PairedTask>,
    checks: Option<Vec<Check>>,
    /// Base and candidate speed, with `--speed`.
    speed: Option<[Speed; 2]>,
}

impl Measured {
    pub(crate) fn report(&self) -> Report<'_> {
        let (facts, base_ppl, kld, paired) = (&self.facts, &self.base_ppl, &self.kld, &self.paired);
        let speed = self.speed.as_ref();
        Report { facts, base_ppl, kld, paired, checks: self.checks.clone(), speed }
    }
}

/// Runs the base, then the candidate, and checks the budget.
pub(crate) fn measure(args: &CompareArgs) -> Result<Measured> {
    // Everything that can be wrong with the input fails here, before a model runs.
    if let Some(b) = &args.budget {
        if args.tasks.is_empty() {
            if let Some(l) = b.limits.iter().find(|l| l.metric.needs_tasks()) {
                anyhow::bail!(
                    "the budget limits {} but no --tasks are given to measure it",
                    l.metric
                );
            }
        }
    }
    if args.ctx < 2 {
        anyhow::bail!("invalid --ctx {}: must be at least 2", args.ctx);
    }
    if args.chunks == 0 || args.source.limit == Some(0) {
        anyhow::bail!("invalid --chunks/--limit 0: must be at least 1");
    }
    let facts = {
        let (b, c) = (open_file(&args.base)?, open_file(&args.candidate)?);
        check_same_vocabulary(&b, &c)?;
        [file_facts(&b), file_facts(&c)]
    };
    let mut text = std::fs::read_to_string(&args.text)
        .with_context(|| format!("cannot read {}", args.text.display()))?;
    llmopt_eval::strip_final_newline(&mut text);
    let mut tasks: Vec<TaskPair> = source::plan(&args.tasks, &args.source)?
        .iter()
        .map(|plan| {
            let q = source::read(&args.source, plan)?;
            Ok(TaskPair {
                name: plan.name.clone(),
                regime: plan.regime(),
                kind: q.kind,
                questions: q.questions,
                base: Vec::new(),
                candidate: Vec::new(),
            })
        })
        .collect::<Result<_>>()?;

    let tmp =
        TempFile(std::env::temp_dir().join(format!("llmopt-compare-{}.kld", std::process::id())));
    let run = |model: &Path, kv: KvType| RunArgs {
        model: model.to_path_buf(),
        threads: args.threads,
        no_repack: args.no_repack,
        kv,
    };

    // The base: its distributions to the temporary file, then its answers (and speed).
    let (base_ppl, base_speed) = {
        let m = Loaded::open(&run(&args.base, args.kv))?;
        let (tokens, cfg) = tokenize_text(&m, &text, args);
        let file = File::create(&tmp.0)
            .with_context(|| format!("cannot create the temporary file {}", tmp.0.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let bar = chunk_bar("base");
        let report = save_base(&m.model, &m.pool, &tokens, &cfg, &mut out, &mut |d, t, p| {
            bar.set_length(t as u64);
            bar.set_position(d as u64);
            bar.set_message(format!("base: running PPL {p:.4}"));
        })
        .with_context(|| format!("cannot run the base {}", args.base.display()))?;
        bar.finish_and_clear();
        for t in &mut tasks {
            t.base = answers(&m, t, "base")?;
        }
        (report, args.speed.then(|| compare_speed::measure(&m, "base")).transpose()?)
    };

    // The candidate, on the same chunks and questions.
    let (kld, cand_speed) = {
        let m = Loaded::open(&run(&args.candidate, args.candidate_kv.unwrap_or(args.kv)))?;
        let (tokens, cfg) = tokenize_text(&m, &text, args);
        let file = File::open(&tmp.0)
            .with_context(|| format!("cannot read the temporary file {}", tmp.0.display()))?;
        let len = file.metadata().ok().map(|m| m.len());
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let bar = chunk_bar("candidate");
        let report = compare_with_base(
            &m.model,
            &m.pool,
            &tokens,
            &cfg,
            &mut reader,
            len,
            &mut |d, t, k| {
                bar.set_length(t as u64);
                bar.set_position(d as u64);
                bar.set_message(format!("candidate: running mean KLD {k:.6}"));
            },
        )
        .with_context(|| {
            format!("cannot compare {} with {}", args.candidate.display(), args.base.display())
        })?;
        bar.finish_and_clear();
        for t in &mut tasks {
            t.candidate = answers(&m, t, "candidate")?;
        }
        (report, args.speed.then(|| compare_speed::measure(&m, "candidate")).transpose()?)
    };
    drop(tmp);

    let paired: Vec<PairedTask> = tasks
        .iter()
        .map(|t| PairedTask {
            name: t.name.clone(),
            regime: t.regime.clone(),
            metric: t.kind.primary().name(),
            acc: paired_accuracy(&t.base, &t.candidate),
        })
        .collect();
    let measured = |metric: Metric| -> Option<f64> {
        match metric {
            Metric::Kld => Some(kld.kld.value),
            Metric::KldP99 => Some(kld.kld_percentiles.p99),
            Metric::Top1 => Some(100.0 * kld.same_top.value),
            Metric::PplRatio => Some(kld.ppl_ratio.value),
            Metric::PplDiff => Some(kld.ppl_diff.value),
            Metric::AccDrop => {
                paired.iter().map(|p| -100.0 * p.acc.delta.value).max_by(f64::total_cmp)
            }
            Metric::SizeRatio => Some(facts[1].bytes as f64 / facts[0].bytes.max(1) as f64),
        }
    };
    let checks = args.budget.as_ref().map(|b| b.check(measured));
    let speed = base_speed.zip(cand_speed).map(|(b, c)| [b, c]);
    Ok(Measured { facts, base_ppl, kld, paired, checks, speed })
}

fn tokenize_text(m: &Loaded, text: &str, args: &CompareArgs) -> (Vec<u32>, PerplexityConfig) {
    let tokens = m.tokenizer.encode(text, true, false);
    let bos = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
    (tokens, PerplexityConfig { ctx: args.ctx, max_chunks: Some(args.chunks), bos })
}

fn chunk_bar(who: &str) -> indicatif::ProgressBar {
    let bar = progress::bar(0, "{bar:30} {pos}/{len} chunks, {msg} [{elapsed} < {eta}]");
    bar.set_message(who.to_string());
    bar
}

/// Per question, whether the model gets it right by the task's primary metric (`acc`; LAMBADA's
/// `greedy_acc`).
fn answers(m: &Loaded, task: &TaskPair, who: &str) -> Result<Vec<bool>> {
    let label = format!("{who}: {}", task.name);
    let scores =
        super::tasks::score_task(m, &task.name, &task.questions, &ScoreConfig::default(), &label)?;
    let metric = task.kind.primary();
    Ok(scores.iter().map(|s| metric.hit(s) == Some(true)).collect())
}

/// Everything measured, for printing.
pub(crate) struct Report<'a> {
    facts: &'a [FileFacts; 2],
    base_ppl: &'a PerplexityReport,
    kld: &'a KldReport,
    paired: &'a [PairedTask],
    checks: Option<Vec<Check>>,
    speed: Option<&'a [Speed; 2]>,
}

fn est(e: Estimate) -> serde_json::Value {
    serde_json::json!({ "value": e.value, "stderr": e.stderr })
}

impl Report<'_> {
    fn holds(&self) -> Option<bool> {
        self.checks.as_ref().map(|c| c.iter().all(|c| c.holds))
    }

    /// 0 when the budget holds or none was given, 3 when it is broken.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self.holds() {
            Some(false) => ExitCode::from(BUDGET_BROKEN),
            _ => ExitCode::SUCCESS,
        }
    }

    pub(crate) fn json(&self, args: &CompareArgs) -> serde_json::Value {
        let file = |f: &FileFacts| {
            serde_json::json!({
                "path": f.path.display().to_string(),
                "file_bytes": f.bytes,
                "bits_per_weight": f.bits_per_weight,
            })
        };
        let k = self.kld;
        let tasks: Vec<_> = self
            .paired
            .iter()
            .map(|t| {
                let p = &t.acc;
                serde_json::json!({
                    "task": t.name,
                    "regime": t.regime,
                    "questions": p.questions,
                    "metric": t.metric,
                    "base": p.base,
                    "candidate": p.candidate,
                    "delta": est(p.delta),
                    "lost": p.lost,
                    "gained": p.gained,
                    "p_value": p.p_value,
                })
            })
            .collect();
        let budget = self.checks.as_ref().map(|checks| {
            checks
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "limit": c.limit.to_string(),
                        "metric": c.limit.metric.name(),
                        "measured": c.measured,
                        "holds": c.holds,
                    })
                })
                .collect::<Vec<_>>()
        });
        let v = serde_json::json!({
            "base": file(&self.facts[0]),
            "candidate": file(&self.facts[1]),
            "size_ratio": self.facts[1].bytes as f64 / self.facts[0].bytes.max(1) as f64,
            "text": {
                "path": args.text.display().to_string(),
                "ctx": k.ctx,
                "chunks": k.chunks,
                "tokens_scored": k.tokens_scored,
            },
            "ppl_base": { "value": self.base_ppl.perplexity, "stderr": self.base_ppl.stderr },
            "ppl": est(k.ppl),
            "ppl_ratio": est(k.ppl_ratio),
            "ppl_diff": est(k.ppl_diff),
            "kld": est(k.kld),
            "kld_p99": k.kld_percentiles.p99,
            "kld_max": k.kld_percentiles.max,
            "top1": est(k.same_top),
            "tasks": tasks,
            "speed": self.speed.map(compare_speed::json),
            "budget": budget,
            "verdict": self.holds().map(|h| if h { "holds" } else { "broken" }),
        });
        v
    }

    /// What the run store keeps: the candidate's figures against the base, with their spreads.
    pub(crate) fn metrics(&self) -> Vec<StoreMetric> {
        use llmopt_store::Better::{Higher, Lower, None as Unranked};
        let k = self.kld;
        let mut m = vec![
            StoreMetric::new("kld", k.kld.value, "nats", Lower).with_stderr(k.kld.stderr),
            StoreMetric::new("kld_p99", k.kld_percentiles.p99, "nats", Lower),
            StoreMetric::new("top1", 100.0 * k.same_top.value, "%", Higher)
                .with_stderr(100.0 * k.same_top.stderr),
            StoreMetric::new("ppl", k.ppl.value, "", Lower).with_stderr(k.ppl.stderr),
            StoreMetric::new("ppl_base", self.base_ppl.perplexity, "", Unranked)
                .with_stderr(self.base_ppl.stderr),
            StoreMetric::new("ppl_ratio", k.ppl_ratio.value, "x", Lower)
                .with_stderr(k.ppl_ratio.stderr),
            StoreMetric::new(
                "size_ratio",
                self.facts[1].bytes as f64 / self.facts[0].bytes.max(1) as f64,
                "x",
                Lower,
            ),
            StoreMetric::new("bits_per_weight", self.facts[1].bits_per_weight, "bits", Lower),
        ];
        for t in self.paired {
            let (name, metric, p) = (&t.name, t.metric, &t.acc);
            let se = |x: f64| 100.0 * (x * (1.0 - x) / p.questions.max(1) as f64).sqrt();
            m.push(
                StoreMetric::new(format!("{name}.{metric}"), 100.0 * p.candidate, "%", Higher)
                    .with_stderr(se(p.candidate)),
            );
            m.push(
                StoreMetric::new(format!("{name}.{metric}_base"), 100.0 * p.base, "%", Unranked)
                    .with_stderr(se(p.base)),
            );
            m.push(
                StoreMetric::new(
                    format!("{name}.{metric}_change"),
                    100.0 * p.delta.value,
                    "pp",
                    Higher,
                )
                .with_stderr(100.0 * p.delta.stderr),
            );
        }
        m.extend(self.speed.map(compare_speed::metrics).unwrap_or_default());
        if let Some(h) = self.holds() {
            m.push(StoreMetric::new("budget_holds", f64::from(u8::from(h)), "", Higher));
        }
        m
    }

    #[allow(clippy::print_stdout)]
    pub(crate) fn print_table(&self, args: &CompareArgs) {
        let [b, c] = self.facts;
        let k = self.kld;
        let pm = |e: Estimate, digits: usize| {
            format!("{:.*} ± {:.*}", digits, e.value, digits, e.stderr)
        };
        let pct = |x: f64| format!("{:.2}", 100.0 * x);
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec!["", "base", "candidate", "change"]);
        t.add_row(vec![
            "file size".into(),
            human_bytes(b.bytes),
            human_bytes(c.bytes),
            format!("{:.3}x", c.bytes as f64 / b.bytes.max(1) as f64),
        ]);
        t.add_row(vec![
            "bits per weight".into(),
            format!("{:.2}", b.bits_per_weight),
            format!("{:.2}", c.bits_per_weight),
            format!("{:+.2}", c.bits_per_weight - b.bits_per_weight),
        ]);
        t.add_row(vec![
            "perplexity".into(),
            pm(Estimate { value: self.base_ppl.perplexity, stderr: self.base_ppl.stderr }, 4),
            pm(k.ppl, 4),
            format!("ratio {}", pm(k.ppl_ratio, 4)),
        ]);
        t.add_row(vec!["KLD mean".into(), String::new(), pm(k.kld, 6), String::new()]);
        t.add_row(vec![
            "KLD p99 / max".into(),
            String::new(),
            format!("{:.6} / {:.6}", k.kld_percentiles.p99, k.kld_percentiles.max),
            String::new(),
        ]);
        t.add_row(vec![
            "top-1 agreement %".into(),
            String::new(),
            format!("{} ± {}", pct(k.same_top.value), pct(k.same_top.stderr)),
            String::new(),
        ]);
        for task in self.paired {
            let p = &task.acc;
            let se = |x: f64| (x * (1.0 - x) / p.questions.max(1) as f64).sqrt();
            t.add_row(vec![
                format!("{} {} % ({} q)", task.name, task.metric, p.questions),
                format!("{} ± {}", pct(p.base), pct(se(p.base))),
                format!("{} ± {}", pct(p.candidate), pct(se(p.candidate))),
                format!(
                    "{:+.2} ± {:.2} pp (-{} +{}, p = {:.3})",
                    100.0 * p.delta.value,
                    100.0 * p.delta.stderr,
                    p.lost,
                    p.gained,
                    p.p_value
                ),
            ]);
        }
        if let Some(s) = self.speed {
            compare_speed::add_rows(&mut t, s);
        }
        println!("{t}");
        println!(
            "{} tokens of {} scored in {} chunks of {}; change in accuracy: paired standard error, \
             questions lost/gained, McNemar's exact p",
            k.tokens_scored,
            args.text.display(),
            k.chunks,
            k.ctx
        );
        if let Some(checks) = &self.checks {
            println!();
            for c in checks {
                let m = c.measured.map_or("not measured".to_string(), |m| format!("{m:.6}"));
                let mark = if c.holds { "ok  " } else { "FAIL" };
                println!("{mark} {} (measured {m})", c.limit);
            }
            let verdict = if self.holds() == Some(true) {
                "verdict: within budget"
            } else {
                "verdict: OUT OF BUDGET (exit code 3)"
            };
            println!("{verdict}");
        }
    }
}
