//! `llmopt bench`: llama-bench's pp/tg tests on our engine, with the weight bandwidth decode
//! achieves set against the machine's copy bandwidth, and the peak resident memory.

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_kernels::Isa;
use llmopt_model::KvCache;
use llmopt_profile::{
    copy_bandwidth, huge_page_bytes, peak_rss_bytes, read_bandwidth, run_test, sync_cost,
    BenchTest, TestKind, TestResult,
};

use llmopt_store::{Better, Metric};

use crate::{
    cli::BenchArgs,
    load::Loaded,
    progress,
    record::RunDraft,
    units::{gb_per_s, human_bytes},
};

/// Buffer size for the bandwidth probes: far above any last-level cache.
const BANDWIDTH_BYTES: usize = 256 << 20;

/// The tests the flags ask for, prefill first, in the order given; zeros dropped.
fn tests(args: &BenchArgs) -> Vec<BenchTest> {
    let pp = args.n_prompt.iter().map(|&n| BenchTest { kind: TestKind::Prefill, n_tokens: n });
    let tg = args.n_gen.iter().map(|&n| BenchTest { kind: TestKind::Decode, n_tokens: n });
    pp.chain(tg).filter(|t| t.n_tokens > 0).collect()
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(args: &BenchArgs) -> Result<()> {
    let tests = tests(args);
    if tests.is_empty() {
        anyhow::bail!("nothing to measure: every -p and -n value is 0");
    }
    if args.reps == 0 {
        anyhow::bail!("invalid --reps 0: must be at least 1");
    }
    let draft = RunDraft::start("bench", Some(&args.run.model));
    let m = Loaded::open(&args.run)?;
    let threads = m.pool.n_threads();
    let params: u64 = m.file.tensors().iter().map(|t| t.n_elements()).sum();
    let weight_bytes: u64 = m.file.tensors().iter().map(|t| t.n_bytes).sum();
    let bytes_per_token = m.model.decode_bytes_per_token() as f64;
    let first = if m.tokenizer.add_bos() { m.tokenizer.bos() } else { None };
    let model_name = args
        .run
        .model
        .file_name()
        .map_or_else(|| args.run.model.display().to_string(), |n| n.to_string_lossy().into_owned());
    let arch = m.file.architecture().unwrap_or("?").to_string();
    let repacked = m.model.linears().filter(|l| l.weight.is_packed()).count();

    let mut results: Vec<TestResult> = Vec::with_capacity(tests.len());
    for test in &tests {
        let bar = progress::bar(args.reps as u64, "{msg:>8} {bar:30} {pos}/{len} [{elapsed}]");
        bar.set_message(test.name());
        let r = run_test(&m.model, &m.pool, *test, args.reps, first, args.seed, &mut |done, _| {
            bar.set_position(done as u64)
        })
        .with_context(|| format!("{} failed on {}", test.name(), args.run.model.display()))?;
        bar.finish_and_clear();
        results.push(r);
    }
    let peak_rss = peak_rss_bytes();
    // Before the bandwidth probes, which map huge pages of their own.
    let huge = huge_page_bytes();
    let (copy_bw, read_bw) = if args.no_bandwidth {
        (None, None)
    } else {
        (
            Some(copy_bandwidth(&m.pool, BANDWIDTH_BYTES, 5)),
            Some(read_bandwidth(&m.pool, BANDWIDTH_BYTES, 5)),
        )
    };
    let sync = sync_cost(&m.pool, 2000);
    // Decode's weight bandwidth and synchronization share, from the longest tg test.
    let longest_tg =
        results.iter().filter(|r| r.test.kind == TestKind::Decode).max_by_key(|r| r.test.n_tokens);
    let decode = longest_tg.map(|r| (r.test.name(), r.tokens_per_s.mean * bytes_per_token));
    let isa = format!("{:?}", Isa::best()).to_lowercase();

    let metrics = metrics(&results, bytes_per_token, copy_bw, read_bw, peak_rss);
    let report = {
        let tests_json: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "test": r.test.name(),
                    "kind": match r.test.kind { TestKind::Prefill => "prefill", TestKind::Decode => "decode" },
                    "n_tokens": r.test.n_tokens,
                    "reps": r.seconds.len(),
                    "tokens_per_s": r.tokens_per_s.mean,
                    "tokens_per_s_sd": r.tokens_per_s.sd,
                    "seconds": r.seconds,
                    "regions_per_token": r.regions_per_token,
                })
            })
            .collect();
        serde_json::json!({
            "model": args.run.model.display().to_string(),
            "architecture": arch,
            "parameters": params,
            "weight_bytes": weight_bytes,
            "threads": threads,
            "isa": isa,
            "kv_type": args.run.kv.to_string(),
            "kv_bytes_per_token": KvCache::token_bytes(&m.model.config),
            "repacked_linears": repacked,
            "tests": tests_json,
            "decode_weight_bytes_per_token": bytes_per_token,
            "decode_weight_bandwidth_bytes_per_s": decode.as_ref().map(|d| d.1),
            "copy_bandwidth_bytes_per_s": copy_bw,
            "read_bandwidth_bytes_per_s": read_bw,
            "peak_rss_bytes": peak_rss,
            "huge_page_bytes": huge,
            "sync_seconds_per_region": sync,
        })
    };
    if args.json {
        println!("{report}");
    } else {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec!["model", "size", "params", "backend", "threads", "test", "t/s"]);
        for r in &results {
            table.add_row(vec![
                format!("{model_name} ({arch})"),
                human_bytes(weight_bytes),
                format!("{:.1} M", params as f64 / 1e6),
                if repacked > 0 { format!("cpu {isa} repacked") } else { format!("cpu {isa}") },
                threads.to_string(),
                r.test.name(),
                format!("{:.2} ± {:.2}", r.tokens_per_s.mean, r.tokens_per_s.sd),
            ]);
        }
        println!("{table}");
        println!("decode reads {} of weights per token", human_bytes(bytes_per_token as u64));
        println!(
            "KV cache {}: {} per token",
            args.run.kv,
            human_bytes(KvCache::token_bytes(&m.model.config) as u64)
        );
        if let Some((name, bw)) = &decode {
            let share =
                copy_bw.map_or(String::new(), |c| format!(" ({:.0}% of copy)", 100.0 * bw / c));
            println!("decode weight bandwidth at {name}: {}{share}", gb_per_s(*bw));
        }
        if let (Some(c), Some(r)) = (copy_bw, read_bw) {
            println!(
                "memory bandwidth with {threads} threads: copy {} (read + write), read {}",
                gb_per_s(c),
                gb_per_s(r)
            );
        }
        if let (Some(r), Some(s)) = (longest_tg, sync) {
            let per_token = r.regions_per_token * s;
            println!(
                "thread pool: {:.0} parallel regions per decoded token, {:.2} µs each with all threads \
                 joining: {:.0} µs per token ({:.1}% of {})",
                r.regions_per_token,
                s * 1e6,
                per_token * 1e6,
                100.0 * per_token * r.tokens_per_s.mean,
                r.test.name()
            );
        }
        if let Some(rss) = peak_rss {
            println!("peak resident memory: {}", human_bytes(rss));
        }
        if let Some(h) = huge.filter(|_| repacked > 0) {
            println!(
                "memory on huge pages: {} (repacked weights ask for them; Linux gives them when \
                 /sys/kernel/mm/transparent_hugepage/enabled is `always` or `madvise`)",
                human_bytes(h)
            );
        }
    }
    draft.record(&args.store, metrics, &report);
    Ok(())
}

/// What the store keeps of a bench run: each test's mean t/s with its standard error (sd/sqrt(reps),
/// none from a single repetition), decode's weight bandwidth, the machine's copy and read bandwidth
/// (unranked: facts of the host) and the peak resident memory.
fn metrics(
    results: &[TestResult],
    bytes_per_token: f64,
    copy_bw: Option<f64>,
    read_bw: Option<f64>,
    peak_rss: Option<u64>,
) -> Vec<Metric> {
    let stderr = |r: &TestResult| {
        let n = r.seconds.len();
        (n >= 2).then(|| r.tokens_per_s.sd / (n as f64).sqrt())
    };
    let mut out: Vec<Metric> = results
        .iter()
        .map(|r| Metric {
            stderr: stderr(r),
            ..Metric::new(r.test.name(), r.tokens_per_s.mean, "t/s", Better::Higher)
        })
        .collect();
    let longest_tg =
        results.iter().filter(|r| r.test.kind == TestKind::Decode).max_by_key(|r| r.test.n_tokens);
    if let Some(r) = longest_tg {
        let gb = bytes_per_token / 1e9;
        out.push(Metric {
            stderr: stderr(r).map(|se| se * gb),
            ..Metric::new("decode_bandwidth", r.tokens_per_s.mean * gb, "GB/s", Better::Higher)
        });
    }
    for (name, bw) in [("copy_bandwidth", copy_bw), ("read_bandwidth", read_bw)] {
        if let Some(bw) = bw {
            out.push(Metric::new(name, bw / 1e9, "GB/s", Better::None));
        }
    }
    if let Some(rss) = peak_rss {
        out.push(Metric::new("peak_rss", rss as f64 / 1e6, "MB", Better::Lower));
    }
    out
}
