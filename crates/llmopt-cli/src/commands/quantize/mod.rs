//! `llmopt quantize`: a quantized copy of a model, planned and checked before any work (formats,
//! `--keep` rules, input vs output, importance data), written to a temporary file and renamed,
//! with its provenance in the file and the run in the store.

mod auto;
mod importance;
mod report;
mod validate;

use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use llmopt_formats::gguf::{GgufFile, MetaValue};
use llmopt_model::{RotationSite, Rotations};
use llmopt_quant::{
    awq::{self, AwqConfig, AwqScales},
    encode::weighted_encoder,
    gptq, output_metadata,
    smooth::{self, SmoothConfig},
    write_quantized, FallbackReason, GptqConfig, Job, Plan, PlanConfig, Provenance, QuantError,
    Written,
};

use crate::{
    atomic_file::AtomicFile,
    cli::{Method, QuantizeArgs},
    load::physical_cores,
    progress,
    record::{self, RunDraft},
};
use importance::Importance;
use report::Report;
use validate::Validation;

/// Progress over tensors; the message names the tensor and its formats.
const TENSORS: &str = "{bar:30} {pos}/{len} tensors, {msg} [{elapsed} < {eta}]";
const AWQ_BAR: &str = "{bar:30} {pos}/{len} layers, AWQ scale search [{elapsed} < {eta}]";
const SMOOTH_BAR: &str = "{bar:30} {pos}/{len} layers, SmoothQuant scales [{elapsed} < {eta}]";

/// Quantizes; the exit code is 3 when `--validate` finds `--budget` broken.
#[allow(clippy::print_stdout)]
pub fn run(args: &QuantizeArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let draft = RunDraft::start("quantize", Some(&args.model));
    check_args(args)?;
    let src = GgufFile::open(&args.model)
        .with_context(|| format!("cannot load model {}", args.model.display()))?;
    refuse_same_file((&args.model, "the input model"), (&args.out, "the output"))?;
    if let Some(p) = &args.imatrix_out {
        refuse_same_file((&args.model, "the input model"), (p, "--imatrix-out"))?;
        refuse_same_file((&args.out, "the output"), (p, "--imatrix-out"))?;
    }
    // Either llama.cpp's plan for --format, or --plan auto's space with its budget checked.
    let fixed_plan = match args.format {
        Some(file_type) => {
            let imatrix = matches!(args.method, Method::Imatrix | Method::Awq);
            let cfg = PlanConfig { file_type, keep: args.keep.clone(), imatrix };
            Some(
                Plan::new(src.tensors(), src.metadata(), cfg)
                    .with_context(|| format!("cannot quantize {}", args.model.display()))?,
            )
        }
        None => None,
    };
    let auto_budget = auto::budget(args)?;
    let space = auto_budget.map(|b| auto::space(&src, args, b)).transpose()?;
    refuse_gptq_per_row(args, fixed_plan.as_ref())?;
    let threads = match args.threads {
        Some(0) => anyhow::bail!("invalid --threads 0: must be at least 1"),
        Some(n) => n,
        None => physical_cores(),
    };
    // Created before any long work, so an unwritable output fails first.
    let mut out = AtomicFile::create(&args.out)?;
    let importance = match args.method {
        Method::Imatrix | Method::Gptq | Method::Awq | Method::SmoothQuant => {
            Some(Importance::get(args, &src, threads)?)
        }
        Method::Rtn => None,
    };
    let auto = match (&space, auto_budget, &importance) {
        (Some(space), Some(b), Some(imp)) => {
            Some(auto::make_plan(args, &src, space, b, imp, threads)?)
        }
        _ => None,
    };
    let plan = match (fixed_plan, &auto) {
        (Some(p), _) => p,
        (None, Some(a)) => a.plan.clone(),
        (None, None) => anyhow::bail!("give --format, or --plan auto with a budget"),
    };
    let gptq = (args.method == Method::Gptq).then_some(GptqConfig {
        damp: args.gptq_damp,
        act_order: args.act_order,
        weighted: !args.gptq_plain,
    });
    let awq = match (args.method, importance.as_ref()) {
        (Method::Awq, Some(imp)) => imp
            .hessians
            .as_ref()
            .map(|h| {
                let cfg = AwqConfig { grid: args.awq_grid, ..AwqConfig::default() };
                scale_search("AWQ", AWQ_BAR, |p| {
                    awq::search(&src, &plan, h, Some(&imp.imatrix), cfg, threads, p)
                })
            })
            .transpose()?,
        (Method::SmoothQuant, Some(imp)) => imp
            .acts
            .as_ref()
            .map(|a| {
                let cfg = SmoothConfig {
                    alpha: args.smooth_alpha,
                    rotate: may_rotate(args, &src, &plan),
                    ..SmoothConfig::default()
                };
                scale_search("SmoothQuant", SMOOTH_BAR, |p| {
                    smooth::search(&src, &plan, a, cfg, threads, p)
                })
            })
            .transpose()?,
        _ => None,
    };
    print_notes(&plan, matches!(args.method, Method::Imatrix | Method::Awq));

    let source_sha256 = record::file_sha256(&args.model, &args.store)?;
    let prov = Provenance {
        llmopt_version: format!("{} ({})", env!("CARGO_PKG_VERSION"), record::GIT_COMMIT),
        source_file: file_name(&args.model),
        source_sha256: source_sha256.clone(),
        method: args.method.name().to_string(),
        gptq,
        calib: importance.as_ref().and_then(|i| i.imatrix.calib.clone()),
        imatrix_file: importance.as_ref().and_then(|i| i.file.clone()),
        weighted_tensors: matches!(args.method, Method::Imatrix | Method::Awq)
            .then(|| plan.converted().filter(|t| weighted_encoder(t.target).is_some()).count()),
    };
    let mut metadata = output_metadata(src.metadata(), &plan, &prov);
    for site in RotationSite::ALL {
        if let Some(r) = awq.as_ref().and_then(|a| a.rotations.get(site)) {
            metadata.insert(site.key(), MetaValue::U32(r as u32));
        }
    }
    refuse_rotated_ggml(&src, &plan)?;
    let job = Job {
        source: &src,
        plan: &plan,
        metadata: &metadata,
        // SmoothQuant rounds to nearest after its scales (its point is W8A8, which has no
        // importance-weighted encoder).
        importance: importance
            .as_ref()
            .filter(|_| gptq.is_none() && args.method != Method::SmoothQuant)
            .map(|i| &i.imatrix),
        gptq: importance.as_ref().and_then(|i| i.hessians.as_ref()).zip(gptq),
        awq: awq.as_ref(),
        threads,
    };
    let write_started = Instant::now();
    let bar = progress::bar(plan.tensors.len() as u64, TENSORS);
    let written = write_quantized(&job, out.writer(), &mut |i, t| {
        bar.set_position(i as u64);
        bar.set_message(format!("{} {} -> {}", t.name, t.source.name(), t.target.name()));
    })
    .with_context(|| format!("cannot write {}", out.temp_path().display()))?;
    bar.finish_and_clear();
    gptq_note(&written);
    out.commit()?;
    let quantize_time = write_started.elapsed();

    let output = GgufFile::open(&args.out)
        .with_context(|| format!("cannot read back {}", args.out.display()))?;
    let report = Report {
        args,
        source: &src,
        source_sha256,
        output: &output,
        plan: &plan,
        written: &written,
        importance: importance.as_ref(),
        awq: awq.as_ref(),
        auto: auto.as_ref(),
        seconds: Seconds {
            calibration: importance.as_ref().map_or(Duration::ZERO, |i| i.elapsed),
            quantization: quantize_time,
            total: started.elapsed(),
        },
    };
    let mut json = report.json();
    if let Some(a) = &auto {
        json["plan"] = auto::json(a);
        if !args.json {
            auto::print(a);
        }
    }
    let mut metrics = report.metrics();
    if !args.json {
        report.print();
    }
    let validation = args.validate.validate.then(|| Validation::run(args, threads)).transpose()?;
    json["validation"] = validation.as_ref().map_or(serde_json::Value::Null, Validation::json);
    if let Some(v) = &validation {
        metrics.extend(v.metrics(&metrics));
        if !args.json {
            v.print();
        }
    }
    if args.json {
        println!("{json}");
    }
    draft.record(&args.store, metrics, &json);
    Ok(validation.map_or(ExitCode::SUCCESS, |v| v.exit_code()))
}

/// Formats GPTQ cannot write ([`gptq::refusal`]) are refused here, before calibration (minutes),
/// not when the first layer is written: a fixed plan's for the weights GPTQ sees, `--plan auto`'s
/// candidates.
fn refuse_gptq_per_row(args: &QuantizeArgs, plan: Option<&Plan>) -> Result<()> {
    if args.method != Method::Gptq {
        return Ok(());
    }
    let seen = plan.into_iter().flat_map(|p| &p.tensors).filter(|t| gptq::sees(&t.name));
    let mut formats = seen.map(|t| t.target).chain(args.auto.plan_formats.iter().copied());
    if let Some((ty, why)) = formats.find_map(|ty| Some((ty, gptq::refusal(ty)?))) {
        let hint = if args.auto.plan_formats.contains(&ty) {
            "; or leave it out of --plan-formats"
        } else {
            ""
        };
        anyhow::bail!("--method gptq cannot write {ty}: {why}{hint}");
    }
    Ok(())
}

/// Whether SmoothQuant may rotate inputs: not with `--no-rotate`, not where the source is
/// rotated already (its model rotates those inputs; the new weights stay in the same basis), and
/// not where the output has no llmopt format (llama.cpp would run the file without rotating).
fn may_rotate(args: &QuantizeArgs, src: &GgufFile, plan: &Plan) -> bool {
    let rotated = Rotations::from_metadata(src.metadata()).any();
    !args.no_rotate && !rotated && plan.tensors.iter().any(|t| t.target.is_llmopt_only())
}

/// A source with rotated inputs needs a runtime that rotates them: refused when every output
/// tensor is in a ggml format, which llama.cpp would open and run wrongly.
fn refuse_rotated_ggml(src: &GgufFile, plan: &Plan) -> Result<()> {
    let rotated = Rotations::from_metadata(src.metadata()).any();
    if rotated && !plan.tensors.iter().any(|t| t.target.is_llmopt_only()) {
        anyhow::bail!(
            "the source's weights are rotated for rotated inputs (llmopt.model.rotation.*), which \
             only llmopt runs; an output in ggml formats alone would open in llama.cpp and \
             compute the wrong thing: choose an llmopt format (e.g. -f w8a8), or quantize the \
             original"
        );
    }
    Ok(())
}

/// Runs a per-layer scale search (AWQ's or SmoothQuant's) under a progress bar drawn with
/// `template`, then prints how many groups `method` scaled and the sampled output error.
#[allow(clippy::print_stderr)]
fn scale_search(
    method: &str,
    template: &'static str,
    search: impl FnOnce(&mut dyn FnMut(usize, usize)) -> Result<AwqScales, QuantError>,
) -> Result<AwqScales> {
    let bar = progress::bar(0, template);
    let scales = search(&mut |d, t| {
        bar.set_length(t as u64);
        bar.set_position(d as u64);
    })
    .with_context(|| format!("the {method} search failed"))?;
    bar.finish_and_clear();
    let scaled: Vec<f32> = scales.groups.iter().map(|g| g.alpha).filter(|&a| a > 0.0).collect();
    let (before, after) =
        scales.groups.iter().fold((0.0, 0.0), |(b, a), g| (b + g.error_before, a + g.error_after));
    eprintln!(
        "{method}: {} of {} groups scaled (mean alpha {:.2}); sampled output error {:.4e} -> \
         {:.4e} ({:+.1}%)",
        scaled.len(),
        scales.groups.len(),
        scaled.iter().sum::<f32>() / scaled.len().max(1) as f32,
        before,
        after,
        100.0 * (after / before.max(f64::MIN_POSITIVE) - 1.0)
    );
    Ok(scales)
}

/// How long the steps took.
pub struct Seconds {
    pub calibration: Duration,
    pub quantization: Duration,
    pub total: Duration,
}

/// Says which tensors GPTQ could not see.
#[allow(clippy::print_stderr)]
fn gptq_note(w: &Written) {
    if w.gptq_without_hessian > 0 {
        eprintln!(
            "note: --method gptq: {} tensor(s) without a Hessian (the token embedding or a tied \
             output, which no layer input reaches) were rounded to nearest",
            w.gptq_without_hessian
        );
    }
}

/// The method's inputs must fit it; checked before anything is read.
fn check_args(args: &QuantizeArgs) -> Result<()> {
    if args.method != Method::Gptq && (args.act_order || args.gptq_plain) {
        anyhow::bail!("--act-order and --gptq-plain are for --method gptq");
    }
    if args.method != Method::Awq && args.awq_grid != 20 {
        anyhow::bail!("--awq-grid is for --method awq");
    }
    if args.method != Method::SmoothQuant && (args.smooth_alpha.is_some() || args.no_rotate) {
        anyhow::bail!("--smooth-alpha and --no-rotate are for --method smoothquant");
    }
    if let Some(a) = args.smooth_alpha {
        if !(a > 0.0 && a <= 1.0) {
            anyhow::bail!("invalid --smooth-alpha {a}: must be in (0, 1]");
        }
    }
    if args.awq_grid == 0 {
        anyhow::bail!("invalid --awq-grid 0: must be at least 1");
    }
    if !(args.gptq_damp.is_finite() && args.gptq_damp >= 0.0) {
        anyhow::bail!("invalid --gptq-damp {}: must be a fraction >= 0", args.gptq_damp);
    }
    match args.method {
        Method::Rtn if args.calib.is_some() || args.imatrix.is_some() => anyhow::bail!(
            "--calib and --imatrix are for --method imatrix or gptq (this run rounds to nearest)"
        ),
        Method::Gptq | Method::Awq if args.imatrix.is_some() || args.calib.is_none() => {
            anyhow::bail!(
                "--method {} needs calibration text (--calib FILE): it captures each input's \
                 Hessian, which saved importance data (--imatrix) do not hold",
                args.method.name()
            )
        }
        Method::SmoothQuant if args.imatrix.is_some() || args.calib.is_none() => anyhow::bail!(
            "--method smoothquant needs calibration text (--calib FILE): it records each \
             input's largest values per channel, which saved importance data (--imatrix) do not \
             hold"
        ),
        Method::Imatrix if args.calib.is_none() && args.imatrix.is_none() => anyhow::bail!(
            "--method imatrix needs calibration text (--calib FILE) or saved importance data \
             (--imatrix FILE)"
        ),
        _ => {}
    }
    validate::check_args(&args.validate)?;
    if args.calib_tokens < importance::CHUNK {
        anyhow::bail!(
            "invalid --calib-tokens {}: calibration runs whole chunks of {} tokens",
            args.calib_tokens,
            importance::CHUNK
        );
    }
    Ok(())
}

/// A file to write must not be another file of the run under any name (links, `..`, a hard
/// link); each comes with what it is, for the message.
fn refuse_same_file((existing, is): (&Path, &str), (written, what): (&Path, &str)) -> Result<()> {
    let same = match (std::fs::metadata(existing), std::fs::metadata(written)) {
        (Ok(a), Ok(b)) => same_inode(&a, &b),
        _ => false,
    } || canonical_new(existing) == canonical_new(written);
    if same {
        anyhow::bail!(
            "{what} {} is {is} {}: write it to another file",
            written.display(),
            existing.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_inode(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

/// The canonical path a file that may not exist yet would have.
fn canonical_new(p: &Path) -> Option<std::path::PathBuf> {
    std::fs::canonicalize(p).ok().or_else(|| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some(std::fs::canonicalize(dir).ok()?.join(p.file_name()?))
    })
}

/// The file name of `p`, for provenance (directories are the writer's machine's business).
pub fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Says on stderr where the plan leaves the format asked for, and when importance data cannot
/// be used by the encoders.
#[allow(clippy::print_stderr)]
fn print_notes(plan: &Plan, importance: bool) {
    for t in &plan.tensors {
        for f in &t.fallbacks {
            let (wanted, used) = (f.wanted.name(), f.used.name());
            match f.reason {
                FallbackReason::RowLength { ncols, block_len } => eprintln!(
                    "note: {}: {wanted} -> {used}: its {ncols}-element rows are not whole \
                     {block_len}-element blocks (llama.cpp's fallback)",
                    t.name
                ),
                FallbackReason::NoEncoder => eprintln!(
                    "warning: {}: llama.cpp writes {wanted} here, which has no encoder in this \
                     build yet; writing {used} (its fallback) instead",
                    t.name
                ),
            }
        }
    }
    if importance {
        let mut unweighted: Vec<&str> = plan
            .converted()
            .filter(|t| weighted_encoder(t.target).is_none())
            .map(|t| t.target.name())
            .collect();
        unweighted.sort_unstable();
        unweighted.dedup();
        if !unweighted.is_empty() {
            eprintln!(
                "note: importance-weighted encoding: {} {} no importance-weighted encoder (as in llama.cpp); \
                 those tensors are rounded to nearest (the importance data still choose formats, \
                 and --imatrix-out saves them)",
                unweighted.join(", "),
                if unweighted.len() == 1 { "has" } else { "have" }
            );
        }
    }
}
