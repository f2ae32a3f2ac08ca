//! The calibration data of `--method imatrix`, `gptq`, `awq` and `smoothquant`: collected from `--calib` through the
//! model (importance saved with `--imatrix-out`; GPTQ's Hessians in the same pass), or read from
//! `--imatrix` and checked against the model.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use llmopt_formats::gguf::GgufFile;
use llmopt_quant::{
    calibrate, gptq::capture_hessians, smooth, smooth::ActStats, CalibConfig, CalibInfo, Hessians,
    Imatrix,
};

use super::file_name;
use crate::{
    atomic_file::AtomicFile,
    cli::{Method, QuantizeArgs, RunArgs},
    load::Loaded,
    progress,
};

/// Tokens per calibration chunk, as llama-imatrix.
pub const CHUNK: usize = 512;

/// Rows of each layer input SmoothQuant's search keeps (spread over the calibration tokens).
const SAMPLED_ROWS: usize = 256;

/// Importance data and where they came from.
pub struct Importance {
    pub imatrix: Imatrix,
    /// A reused file's name and SHA-256 (`--imatrix`).
    pub file: Option<(String, String)>,
    /// The inputs' Hessians (`--method gptq` and `awq`).
    pub hessians: Option<Hessians>,
    /// The inputs' channel maxima and sampled rows (`--method smoothquant`).
    pub acts: Option<ActStats>,
    /// Time spent calibrating (or reading the file).
    pub elapsed: Duration,
}

impl Importance {
    /// Reads `--imatrix`, or calibrates on `--calib` (saving to `--imatrix-out`).
    #[allow(clippy::print_stderr)]
    pub fn get(args: &QuantizeArgs, src: &GgufFile, threads: usize) -> Result<Self> {
        let started = Instant::now();
        let model = args.model.display();
        if let Some(path) = &args.imatrix {
            let imatrix = Imatrix::read(path)?;
            imatrix
                .check(src.tensors())
                .with_context(|| format!("cannot use {} for {model}", path.display()))?;
            let sha = llmopt_store::sha256_file(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let file = Some((file_name(path), sha));
            let elapsed = started.elapsed();
            return Ok(Self { imatrix, file, hessians: None, acts: None, elapsed });
        }
        let Some(calib) = &args.calib else {
            anyhow::bail!("--method {} needs --calib", args.method.name());
        };
        // Created first, so an unwritable --imatrix-out fails before calibration.
        let save = args.imatrix_out.as_deref().map(AtomicFile::create).transpose()?;
        let mut text = std::fs::read_to_string(calib)
            .with_context(|| format!("cannot read {}", calib.display()))?;
        llmopt_eval::strip_final_newline(&mut text);
        let sha256 = llmopt_store::sha256_file(calib)
            .with_context(|| format!("cannot read {}", calib.display()))?;
        let run = RunArgs {
            model: args.model.clone(),
            threads: Some(threads),
            no_repack: false,
            kv: Default::default(),
        };
        let m = Loaded::open(&run)?;
        let tokens = m.tokenizer.encode(&text, true, false);
        let bos = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
        let chunks = (tokens.len() / CHUNK).min(args.calib_tokens / CHUNK);
        eprintln!(
            "calibrating on {} tokens of {} ({} chunks of {CHUNK}; the text has {})",
            chunks * CHUNK,
            calib.display(),
            chunks,
            tokens.len()
        );
        let cfg = CalibConfig { ctx: CHUNK, max_tokens: args.calib_tokens, bos };
        let bar = progress::bar(0, "{bar:30} {pos}/{len} chunks, calibrating [{elapsed} < {eta}]");
        let mut progress = |d: usize, t: usize| {
            bar.set_length(t as u64);
            bar.set_position(d as u64);
        };
        let failed = || format!("cannot calibrate {model} on {}", calib.display());
        let (mut imatrix, hessians, acts) = match args.method {
            Method::Gptq | Method::Awq => {
                let (i, h) =
                    capture_hessians(&m.model, &m.pool, &tokens, &cfg, None, &mut progress)
                        .with_context(failed)?;
                (i, Some(h), None)
            }
            Method::SmoothQuant => {
                let (i, a) =
                    smooth::capture(&m.model, &m.pool, &tokens, &cfg, SAMPLED_ROWS, &mut progress)
                        .with_context(failed)?;
                (i, None, Some(a))
            }
            _ => (
                calibrate(&m.model, &m.pool, &tokens, &cfg, &mut progress).with_context(failed)?,
                None,
                None,
            ),
        };
        bar.finish_and_clear();
        imatrix.calib = Some(CalibInfo {
            file: file_name(calib),
            sha256: Some(sha256),
            tokens: u64::from(imatrix.chunks) * CHUNK as u64,
        });
        imatrix.check(src.tensors())?;
        if let (Some(mut f), Some(path)) = (save, &args.imatrix_out) {
            imatrix
                .write(f.writer())
                .with_context(|| format!("cannot write {}", f.temp_path().display()))?;
            f.commit()?;
            eprintln!("saved the importance data to {}", path.display());
        }
        Ok(Self { imatrix, file: None, hessians, acts, elapsed: started.elapsed() })
    }
}
