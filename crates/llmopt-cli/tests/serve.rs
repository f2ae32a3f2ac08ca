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
                if let Some(rest) = line.split_once("listening on http://").map(|(_, r)| r) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                log.lock().unwrap().push_str(&format!("{line}\n"));
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
