//! Arguments of `llmopt loadtest`: the server, the levels of concurrency, how long each runs, what
//! every request asks for.

use std::path::PathBuf;

use clap::Args;

pub const LOADTEST_HELP: &str = "Examples:\n  llmopt loadtest --url http://127.0.0.1:8080 --concurrency 1,8,32\n  llmopt loadtest --url http://127.0.0.1:8080 --concurrency 32 --duration 600 --json > soak.json\n  llmopt loadtest --url http://127.0.0.1:8080 --concurrency 1 --requests 4 \\\n      --system system-prompt.txt --max-tokens 16\n\nEach level runs CONCURRENCY clients at once; each sends a streamed chat completion\n(temperature 0 unless --temperature) and its next one as soon as the last has ended, taking\nthe prompts in turn. Prompts default to MT-Bench's 80 questions (the first turn; installed\nby scripts/setup); --prompts takes a .jsonl file with \"turns\" or \"prompt\" fields, or a text\nfile with one prompt per line. --system puts the same system message before every prompt,\nto test prefix caching.\n\nPer level: output tokens/s (all clients together, usage.completion_tokens over the level's\nwall time), requests/s, time to first token, inter-token latency (gaps between streamed\nchunks), time per output token, end-to-end latency, and errors with their messages. Works\nagainst any OpenAI-compatible server (llmopt serve, llama-server, vLLM);\nscripts/serve-vs-llamacpp runs it against llmopt serve and llama-server side by side.\nCtrl-C stops the test and reports what finished. The exit code is 3 when any request\nfailed (the report is printed either way), 1 when the test could not start.";

#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// The server's base URL (with or without /v1).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Concurrency levels, run one after another (comma-separated).
    #[arg(long, short = 'c', value_delimiter = ',', default_value = "1,8,32")]
    pub concurrency: Vec<usize>,
    /// Requests per level [default: 4 per client].
    #[arg(long, short = 'r', conflicts_with = "duration")]
    pub requests: Option<usize>,
    /// Run each level for SECS seconds instead of a number of requests (requests in flight at
    /// the end finish and count).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Prompts: .jsonl (MT-Bench's question.jsonl, or objects with "prompt") or text, one per line
    /// [default: data/mt-bench/question.jsonl].
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// A text file sent as the system message of every request (a shared prefix).
    #[arg(long, value_name = "FILE")]
    pub system: Option<PathBuf>,
    /// max_tokens of every request.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// temperature of every request (0 is greedy: the same prompt gives the same answer).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// The model field [default: the first model of GET /v1/models].
    #[arg(long)]
    pub model: Option<String>,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Requests sent one at a time before the first level, not counted.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Limit of one request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub timeout: f64,
    /// Print one JSON object (schema llmopt.loadtest/1, every request included) instead of tables.
    #[arg(long)]
    pub json: bool,
}
