//! `llmopt serve` as its users meet it: started on a free port, the official `openai` Python
//! client against it (from a venv that scripts/openai-venv makes under target/), SIGTERM while a
//! stream runs (it finishes, then the process exits 0), and bad flags.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{assert_fails, llmopt, smollm2, text};

/// A running `llmopt serve`; killed when dropped, unless it has exited.
struct Served {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    fn start(extra: &[&str]) -> Self {
        let model = smollm2();
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmopt"))
            .args(["serve", "-m", &model, "--port", "0", "--kv-cache-mb", "128", "-t", "2"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start llmopt serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let (pipe, log) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                // The line goes into the log before the address is sent, so a test that reads the
                // log as soon as `start` returns sees the line that announced the address.
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(rest) = line.split_once("listening on http://").map(|(_, r)| r) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("llmopt serve did not start: {}", stderr.lock().unwrap()));
        Self { child, addr, stderr }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv's python with the pinned `openai` package, installed on first use.
fn openai_python() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai-venv");
    let out = Command::new("bash").arg(&script).output().unwrap_or_else(|e| {
        panic!("cannot run {}: {e}\nhint: the server tests need bash and python3", script.display())
    });
    assert!(
        out.status.success(),
        "scripts/openai-venv failed:\n{}\nhint: install python3 with venv and pip (Debian: \
         apt-get install python3 python3-venv), then run scripts/setup",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

#[test]
fn the_official_openai_python_client_works_against_serve() {
    let python = openai_python();
    let s = Served::start(&["--api-key", "sk-test", "--served-model-name", "smollm2"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("LLMOPT_BASE_URL", format!("http://{}/v1", s.addr))
        .env("LLMOPT_API_KEY", "sk-test")
        .env("LLMOPT_MODEL", "smollm2")
        .output()
        .expect("run the openai client script");
    assert!(
        out.status.success(),
        "openai client failed:\n{}\n{}\nserver log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        s.stderr.lock().unwrap()
    );
    assert!(text(&out.stdout).starts_with("ok: "), "{}", text(&out.stdout));
}

#[test]
fn sigterm_lets_a_running_stream_finish_then_exits_cleanly() {
    let mut s = Served::start(&[]);
    let body = r#"{"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "The rain in Spain",
                   "max_tokens": 40, "temperature": 0, "stream": true}"#;
    let mut conn = TcpStream::connect(&s.addr).unwrap();
    write!(
        conn,
        "POST /v1/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.addr,
        body.len()
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !text(&got).contains("data: ") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {}", text(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let kill = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    conn.read_to_end(&mut got).unwrap();
    let got = text(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains(r#""finish_reason":"length""#), "the stream was cut: {got}");
    assert!(got.trim_end().trim_end_matches(['0', '\r', '\n']).ends_with("data: [DONE]"), "{got}");
    let status = s.child.wait().unwrap();
    let log = s.stderr.lock().unwrap().clone();
    assert!(status.success(), "exit {status}: {log}");
    for line in ["\"listening\"", "shutting down", "\"completion_tokens\":40", "server stopped"] {
        assert!(log.contains(line), "{line} not logged:\n{log}");
    }
    for json_line in log.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(json_line).expect("logs are JSON lines");
    }
    assert!(log.contains("\"request_id\""), "{log}");
}

#[test]
fn bad_serve_flags_fail_with_a_hint() {
    let m = smollm2();
    let out = llmopt(&["serve", "-m", &m, "--kv-cache-mb", "0"]);
    assert_fails(&out, &["--kv-cache-mb 0"]);
    let out = llmopt(&["serve", "-m", &m, "--max-batch-tokens", "1"]);
    assert_fails(&out, &["--max-batch-tokens 1"]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = llmopt(&["serve", "-m", &m, "--port", &port, "--kv-cache-mb", "64"]);
    assert_fails(&out, &["cannot listen on 127.0.0.1:", "hint: another program listens there"]);
}

/// One Prometheus sample of a live server.
fn metric(addr: &str, name: &str) -> f64 {
    let mut conn = TcpStream::connect(addr).unwrap();
    write!(conn, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    got.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{got}"))
}

#[test]
fn loadtest_measures_a_live_serve() {
    let s = Served::start(&[]);
    let url = format!("http://{}", s.addr);
    let prompts = llmopt_testdata::mt_bench().display().to_string();
    let args = ["loadtest", "--url", &url, "--prompts", &prompts, "--max-tokens", "6"];
    let out = llmopt(&[&args[..], &["-c", "1,3", "-r", "3", "--json"]].concat());
    assert!(out.status.success(), "{}\nserver:\n{}", text(&out.stderr), s.stderr.lock().unwrap());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(r["schema"], "llmopt.loadtest/1");
    assert_eq!(r["model"], "SmolLM2-135M-Instruct.Q4_1", "discovered from /v1/models");
    assert_eq!(r["prompts"], 80);
    let levels = r["levels"].as_array().unwrap();
    assert_eq!(
        levels.iter().map(|l| l["concurrency"].as_u64()).collect::<Vec<_>>(),
        [Some(1), Some(3)]
    );
    for l in levels {
        assert_eq!((l["ok"].as_u64(), l["errors"].as_u64()), (Some(3), Some(0)), "{l}");
        let mut tokens = 0;
        for q in l["requests"].as_array().unwrap() {
            let n = q["output_tokens"].as_u64().unwrap();
            assert!((1..=6).contains(&n) && q["tokens_from_usage"] == true, "{q}");
            assert!(q["ttft_s"].as_f64().unwrap() <= q["e2e_s"].as_f64().unwrap(), "{q}");
            assert!(q["prompt_tokens"].as_u64().unwrap() > 10, "{q}");
            tokens += n;
        }
        assert_eq!(l["output_tokens"].as_u64(), Some(tokens));
        assert!(l["output_tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(l["ttft_s"]["p99"].as_f64().unwrap() >= l["ttft_s"]["p50"].as_f64().unwrap());
    }

    // A shared system prompt: the second request reuses the first one's blocks.
    let dir = llmopt_testdata::TempDir::new("loadtest-system");
    let system = common::write_file(
        dir.path(),
        "system.txt",
        &std::fs::read(llmopt_testdata::britannica()).unwrap()[..2000],
    );
    let computed_before = metric(&s.addr, "llmopt_prompt_tokens_computed_total");
    let out = llmopt(
        &[&args[..], &["-c", "1", "-r", "2", "--warmup", "0", "--system", &system, "--json"]]
            .concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["system_prompt"], true);
    let reqs = r["levels"][0]["requests"].as_array().unwrap();
    let sent: f64 = reqs.iter().map(|q| q["prompt_tokens"].as_f64().unwrap()).sum();
    let computed = metric(&s.addr, "llmopt_prompt_tokens_computed_total") - computed_before;
    assert!(reqs[0]["prompt_tokens"].as_f64().unwrap() > 400.0, "{}", reqs[0]);
    assert!(computed < 0.7 * sent, "{computed} of {sent} prompt tokens computed: no prefix reuse");

    // The table form.
    let out = llmopt(&[&args[..], &["-c", "2", "-r", "2"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for word in ["concurrency", "output t/s", "TTFT p50/p90/p99 ms", "SmolLM2-135M-Instruct.Q4_1"] {
        assert!(table.contains(word), "{word} missing:\n{table}");
    }

    // Failed requests: reported, and exit code 3.
    let out =
        llmopt(&[&args[..], &["-c", "1", "-r", "2", "--warmup", "0", "--model", "nope"]].concat());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 x HTTP 404"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("2 request(s) failed"), "{}", text(&out.stderr));
}

#[test]
fn serve_sizes_a_quantized_kv_cache_by_its_bytes_and_answers() {
    // Q4_0 rows of SmolLM2: 2 x 30 layers x 108 bytes; 128 MiB hold 20,712 tokens (f16: 5,825).
    let s = Served::start(&["--kv", "q4_0"]);
    let log = s.stderr.lock().unwrap().clone();
    assert!(log.contains("KV cache 20712 tokens of 6480 bytes, q4_0"), "{log}");
    let url = format!("http://{}", s.addr);
    let prompts = llmopt_testdata::mt_bench().display().to_string();
    let args = ["loadtest", "--url", &url, "--prompts", &prompts, "--max-tokens", "4"];
    let out = llmopt(&[&args[..], &["-c", "1", "-r", "2", "--json"]].concat());
    assert!(out.status.success(), "{}\nserver:\n{}", text(&out.stderr), s.stderr.lock().unwrap());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(r["levels"][0]["errors"].as_u64(), Some(0), "{r}");
}

#[test]
fn loadtest_fails_early_with_a_hint() {
    let prompts = llmopt_testdata::mt_bench().display().to_string();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed}");
    let out = llmopt(&["loadtest", "--url", &url, "--prompts", &prompts, "-c", "1", "-r", "1"]);
    assert_fails(&out, &["cannot reach", "/v1/models"]);
    let out = llmopt(&["loadtest", "--url", &url, "--prompts", &prompts, "-c", "1,0"]);
    assert_fails(&out, &["at least 1"]);
    let out = llmopt(&["loadtest", "--url", "localhost:8080", "--prompts", &prompts]);
    assert_fails(&out, &["http://HOST:PORT"]);
    let out = llmopt(&["loadtest", "--url", &url, "--prompts", "/nonexistent/p.jsonl"]);
    assert_fails(&out, &["cannot use prompts from /nonexistent/p.jsonl"]);
    let out = llmopt(&["loadtest", "--url", &url, "--prompts", &prompts, "--duration=0"]);
    assert_fails(&out, &["--duration"]);
}
