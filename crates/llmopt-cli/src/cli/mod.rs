//! Command-line arguments (clap derive), kept apart from what the commands do: the top-level
//! commands and the options they share here, `eval`, `runs`, `quantize` and `loadtest` in their own
//! files.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use llmopt_model::KvType;

mod eval;
mod loadtest;
mod quantize;
mod runs;

pub use eval::*;
pub use loadtest::*;
pub use quantize::*;
pub use runs::*;

/// Make language models cheaper and faster to run, with proof.
#[derive(Debug, Parser)]
#[command(name = "llmopt", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a model's architecture, parameters, tensor types and bits per weight.
    #[command(
        after_help = "Example:\n  llmopt inspect models/SmolLM2-135M-Instruct.Q4_1.gguf\n  llmopt inspect models/gemma-3-270m-q4_k_m.gguf --json"
    )]
    Inspect(InspectArgs),
    /// Continue a prompt, streaming the text as it is produced.
    #[command(
        after_help = "Examples:\n  llmopt generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompt \"The capital of France is\"\n  llmopt generate --model models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --chat \\\n      --prompt \"Write a Python function that reverses a string\" --temperature 0.7 --seed 1"
    )]
    Generate(GenerateArgs),
    /// Talk with a model through its chat template; the history is kept across turns.
    #[command(
        after_help = "Example:\n  llmopt chat --model models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf\n\nType a message and press Enter; /reset clears the history, /exit (or Ctrl-D) quits."
    )]
    Chat(ChatArgs),
    /// Measure prefill and decode speed like llama-bench, with bandwidth and peak memory.
    #[command(
        after_help = "Examples:\n  llmopt bench --model models/SmolLM2-135M-Instruct.Q4_1.gguf\n  llmopt bench -m models/gemma-3-270m-q4_k_m.gguf -p 128,512 -n 128 -t 2 -r 5 --json\n\npp N prefills N tokens into an empty cache in one batch; tg N decodes N tokens one at a\ntime. Each test runs once to warm up, then --reps times; t/s is the mean +/- the standard\ndeviation. Decode's weight bandwidth (weight bytes read per token x tokens/s) is set against\nthe machine's copy bandwidth, measured with the same threads. scripts/bench-vs-llamacpp runs\nthis and llama-bench side by side."
    )]
    Bench(BenchArgs),
    /// Profile a model before optimizing it: speed by context and batch, time to first token,
    /// step latency percentiles, where time goes (by step kind and layer), memory, energy, cost, CO2.
    #[command(
        after_help = "Examples:\n  llmopt profile --model models/SmolLM2-135M-Instruct.Q4_1.gguf\n  llmopt profile -m models/gemma-3-270m-q4_k_m.gguf --ctx 128,512,2048 --batch 1,4,16 --json\n  llmopt profile -m models/SmolLM2-135M-Instruct.Q4_1.gguf --html profile.html\n  llmopt profile -m models/SmolLM2-135M-Instruct.Q4_1.gguf --price prices.json --grid-gco2-per-kwh 250\n\nEach cell (one --ctx by one --batch) prefills BATCH random prompts of CTX tokens together\n(packed into forward calls of at most --max-batch-tokens), samples each sequence's first\ntoken, then decodes --gen - 1 more steps of one token per sequence. TTFT runs from the start\nof prefill to the last first token; step latency is one decode step for the whole batch.\n\nWhere time goes comes from timers around each step of the forward pass: attention\nprojections (Q, K, V, O), attention core (rope, KV write, scores, softmax, values), MLP,\nnorms and residual adds, embedding and output projection, sampling; \"other\" is what falls\nbetween them.\n\nEnergy: RAPL package counters (/sys/class/powercap) when readable; otherwise an estimate,\nCPU seconds x --watts-per-core, labelled as such. Cost per 1M tokens and per query (one\nsequence of the cell) = wall time x $/hour + energy x $/kWh; CO2 = energy x grid intensity.\nA --price FILE is JSON with any of usd_per_hour, usd_per_kwh, grid_gco2_per_kwh,\nwatts_per_core; flags override it; the defaults are 0.10 $/h, 0.15 $/kWh, 400 gCO2/kWh and\n8 W per busy core."
    )]
    Profile(ProfileArgs),
    /// Measure accuracy: perplexity, and KL divergence against a saved baseline.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// The stored history of runs: list, show, compare two, export as CSV.
    #[command(
        after_help = "Examples:\n  llmopt runs list --model SmolLM2 --kind bench\n  llmopt runs show 12 --json\n  llmopt runs compare 12 15\n  llmopt runs report 12 15 18 --html tradeoff.html\n  llmopt runs export --csv --out runs.csv\n\nbench records every successful run (unless --no-store) with its command line, the model\nfile's SHA-256, the host, the llmopt version and commit, its metrics and its JSON report."
    )]
    Runs(RunsArgs),
    /// Write a quantized copy of a model: weights re-encoded to --format by llama.cpp's rules, with
    /// --keep overrides, optionally weighted by importance from calibration text.
    #[command(after_help = quantize::QUANTIZE_HELP)]
    Quantize(QuantizeArgs),
    /// Serve a model over HTTP with OpenAI's API (chat and text completions, streaming),
    /// many clients at once through continuous batching and a shared prefix cache.
    #[command(
        after_help = "Examples:\n  llmopt serve --model models/SmolLM2-135M-Instruct.Q4_1.gguf\n  llmopt serve -m models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --port 9000 --kv-cache-mb 1024 \\\n      --api-key sk-local-1 --served-model-name qwen-coder\n\n  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n      -d '{\"model\": \"SmolLM2-135M-Instruct.Q4_1\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'\n\nEndpoints: POST /v1/chat/completions and /v1/completions (OpenAI's request and response\nshapes; \"stream\": true sends server-sent events ending with data: [DONE]), GET /v1/models,\nGET /health, and GET /metrics (Prometheus: requests by status, time to first token,\ninter-token and end-to-end latency, queue, running sequences, KV blocks, prefix-cache hit\nrate, tokens/s, batch size, token budget). Any OpenAI client works: set its base URL to\nhttp://HOST:PORT/v1 and the model to the served name.\n\nSampling takes OpenAI's fields, plus top_k, min_p and repetition_penalty (vLLM's names).\nFrequency and presence penalties count the tokens generated so far, as OpenAI defines them;\nthe repetition penalty looks at the last 64 tokens, the prompt's included, as llama.cpp's does.\n\nRequests run together: each engine step decodes one token for every running sequence and\nfills the rest of --max-batch-tokens with prompt chunks. The KV cache (--kv-cache-mb,\nconverted to tokens with the model's KV bytes per token) holds every running sequence;\nprompt blocks are kept after a request ends and reused by later prompts that start the same\nway (usage.prompt_tokens_details.cached_tokens). When it runs out, the newest sequence\nwaits and is recomputed later.\n\nLogs are JSON lines on stderr, each with the request's id (the x-request-id header, the\nclient's if it sent one). SIGTERM or Ctrl-C stops taking requests, finishes the running\nones, then exits."
    )]
    Serve(ServeArgs),
    /// Load-test an OpenAI-compatible server: concurrent streamed chat requests, output tokens/s,
    /// time to first token, inter-token and end-to-end latency percentiles, errors.
    #[command(after_help = loadtest::LOADTEST_HELP)]
    Loadtest(LoadtestArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Model file (GGUF).
    pub model: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Options shared by commands that run a model.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model file (GGUF).
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Worker threads (default: the number of physical cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Keep Q4_0, Q4_1, Q5_0 and Q8_0 weights in their file layout. By default they are repacked at
    /// load into 8-row interleaved blocks for faster kernels; this flag gives llama.cpp's exact
    /// x86 arithmetic instead (the two differ by rounding: compare with `eval perplexity --kl-base`).
    #[arg(long)]
    pub no_repack: bool,
    /// KV cache element type: f16, q8_0 or q4_0 (llama.cpp's -ctk/-ctv). Quantized rows take
    /// 53% (q8_0) or 28% (q4_0) of f16's bytes, so a cache of the same size holds more tokens.
    #[arg(long, default_value = "f16", value_name = "TYPE")]
    pub kv: KvType,
}

/// Where a run is recorded (see `llmopt runs`). A run never fails because of its store: when the
/// store cannot be written the command warns and goes on.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArgs {
    /// Record the run in the run store at PATH [default: $XDG_DATA_HOME/llmopt/runs.sqlite, else
    /// ~/.local/share/llmopt/runs.sqlite].
    #[arg(long, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Do not record the run.
    #[arg(long, conflicts_with = "store")]
    pub no_store: bool,
}

/// Sampling options (llama.cpp's names and defaults).
#[derive(Debug, Args, Clone)]
#[command(allow_negative_numbers = true)]
pub struct SamplingArgs {
    /// Temperature; 0 picks the most likely token every time (greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample among the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Sample among the most likely tokens whose probabilities add up to P (1 = all).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise tokens seen in the last 64 (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed, for reproducible sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The prompt text.
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// Most tokens to generate.
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_tokens: usize,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    pub chat: bool,
    /// Print the prompt's tokens (id and text) to stderr before generating.
    #[arg(long)]
    pub verbose_prompt: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Address to listen on (0.0.0.0 listens on every interface: set --api-key then).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Most tokens in one engine step, decode and prefill together: larger admits long prompts
    /// faster, smaller keeps each step (and so each streamed token) quicker.
    #[arg(long, default_value_t = 512)]
    pub max_batch_tokens: usize,
    /// Memory for the KV cache in MiB, shared by all running requests. It bounds how many tokens
    /// (prompts plus completions) can be in flight at once.
    #[arg(long, default_value_t = 512)]
    pub kv_cache_mb: usize,
    /// Keep decode steps near MS milliseconds while prompts wait, by shrinking their prefill
    /// chunks (the adaptive token budget); without it every step may fill --max-batch-tokens.
    #[arg(long, value_name = "MS")]
    pub step_latency_ms: Option<f64>,
    /// Require `Authorization: Bearer KEY` on /v1 requests; repeat for several keys. /health and
    /// /metrics stay open.
    #[arg(long = "api-key", value_name = "KEY")]
    pub api_keys: Vec<String>,
    /// The model's name in requests and in /v1/models [default: the file name without .gguf].
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(long, short = 'n', default_value_t = 512)]
    pub max_tokens: usize,
    /// Tokens of conversation the session can hold (default: min(model context, 4096)).
    #[arg(long)]
    pub ctx: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Prompt lengths to prefill (pp tests), comma-separated; 0 for none.
    #[arg(long = "n-prompt", short = 'p', value_delimiter = ',', default_value = "512")]
    pub n_prompt: Vec<usize>,
    /// Tokens to decode (tg tests), comma-separated; 0 for none.
    #[arg(long = "n-gen", short = 'n', value_delimiter = ',', default_value = "128")]
    pub n_gen: Vec<usize>,
    /// Timed repetitions of each test, after one warm-up run.
    #[arg(long, short = 'r', default_value_t = 5)]
    pub reps: usize,
    /// Seed of the random prompt tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip measuring the machine's memory bandwidth (about a second).
    #[arg(long)]
    pub no_bandwidth: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Prompt lengths (tokens per sequence), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,512,2048")]
    pub ctx: Vec<usize>,
    /// Batch sizes (sequences run together), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub batch: Vec<usize>,
    /// Tokens generated per sequence (the first comes with prefill; at least 2).
    #[arg(long, default_value_t = 32)]
    pub gen: usize,
    /// Most prompt tokens per prefill forward call.
    #[arg(long, default_value_t = 2048)]
    pub max_batch_tokens: usize,
    /// Seed of the random prompts and of sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Price profile: JSON with any of usd_per_hour, usd_per_kwh, grid_gco2_per_kwh, watts_per_core.
    #[arg(long, value_name = "FILE")]
    pub price: Option<PathBuf>,
    /// Machine rental in dollars per hour [default: 0.10, or the price file's].
    #[arg(long)]
    pub usd_per_hour: Option<f64>,
    /// Electricity in dollars per kWh [default: 0.15, or the price file's].
    #[arg(long)]
    pub usd_per_kwh: Option<f64>,
    /// Grid carbon intensity in grams of CO2 per kWh [default: 400, or the price file's].
    #[arg(long)]
    pub grid_gco2_per_kwh: Option<f64>,
    /// Watts one busy core draws, for the energy estimate when no counter is readable
    /// [default: 8, or the price file's].
    #[arg(long)]
    pub watts_per_core: Option<f64>,
    /// Print one JSON object (schema llmopt.profile/1, docs/json-schema.md) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report with charts (tokens/s by context and batch, step
    /// latency, where time goes, time per layer, memory) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}
