//! Live servers for the HTTP tests: the real engine over SmolLM2 (or a test double) behind the
//! server, on a free loopback port, in a thread with its own runtime; helpers to call it with
//! reqwest and to read server-sent events.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use llmopt_api::Generate;
use llmopt_engine::{EngineConfig, EngineHandle};
use llmopt_formats::gguf::GgufFile;
use llmopt_model::Model;
use llmopt_server::{ModelText, Server, ServerConfig};
use llmopt_tokenizer::{ChatTemplate, Tokenizer};
use serde_json::Value;

/// The served name of the test model.
pub const MODEL: &str = "smollm2";

struct Loaded {
    file: Arc<GgufFile>,
    model: Arc<Model>,
}

fn loaded() -> &'static Loaded {
    static L: OnceLock<Loaded> = OnceLock::new();
    L.get_or_init(|| {
        let path = llmopt_testdata::model(llmopt_testdata::SMOLLM2);
        let file = Arc::new(GgufFile::open(&path).expect("open SmolLM2 (run scripts/setup)"));
        let mut model = Model::from_gguf(file.clone()).expect("load SmolLM2");
        model.pack_weights();
        Loaded { file, model: Arc::new(model) }
    })
}

/// The test model's tokenizer.
pub fn tokenizer() -> Tokenizer {
    Tokenizer::from_gguf(loaded().file.metadata()).expect("tokenizer")
}

/// The test model's text side (tokenizer, chat template).
pub fn model_text() -> ModelText {
    let template = ChatTemplate::from_gguf_or_builtin(loaded().file.metadata()).expect("template");
    ModelText::new(tokenizer(), template)
}

/// A new engine thread over SmolLM2.
pub fn engine(cfg: EngineConfig) -> EngineHandle {
    EngineHandle::spawn(loaded().model.clone(), 2, cfg).unwrap()
}

/// A server running on its own thread until dropped (then it drains and stops).
pub struct TestServer {
    pub base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Serves `engine` with `cfg` on 127.0.0.1 and a free port.
    pub fn start(engine: Arc<dyn Generate>, cfg: ServerConfig) -> Self {
        let server = Server::new(engine, model_text(), cfg);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?).expect("the test waits for the address");
                server
                    .serve(listener, async move {
                        let _ = stop_rx.await;
                    })
                    .await
            })
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("the server starts");
        Self { base: format!("http://{addr}"), shutdown: Some(stop_tx), thread: Some(thread) }
    }

    /// Asks the server to drain and stop; returns once it has.
    pub fn stop(&mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.thread.take().map_or(Ok(()), |t| t.join().expect("the server thread"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// One server over one SmolLM2 engine for all tests of a test binary.
pub fn shared() -> &'static TestServer {
    static S: OnceLock<TestServer> = OnceLock::new();
    S.get_or_init(|| {
        let engine = engine(EngineConfig { kv_cache_tokens: 16384, ..EngineConfig::default() });
        let cfg = ServerConfig { max_body_bytes: BODY_LIMIT, ..ServerConfig::new(MODEL) };
        TestServer::start(Arc::new(engine), cfg)
    })
}

/// The shared server's body limit.
pub const BODY_LIMIT: usize = 64 << 10;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(300)).build().expect("client")
}

/// POSTs `body` as JSON; returns the status, the response's headers and its body as JSON.
pub async fn post(url: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client().post(url).json(body).send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, headers, json)
}

/// POSTs a streaming request; returns each event's `data` (the last is `[DONE]`).
pub async fn stream(url: &str, body: &Value) -> Vec<String> {
    let r = client().post(url).json(body).send().await.expect("request");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    sse_data(&r.text().await.expect("body"))
}

/// The `data` fields of a server-sent event stream.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .flat_map(|event| event.lines())
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(str::to_string)
        .collect()
}

/// The chunks of a stream as JSON, checking it ends with exactly one `[DONE]`.
pub fn chunks(data: &[String]) -> Vec<Value> {
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk not JSON ({e}): {d}")))
        .collect()
}

/// A chat request body.
pub fn chat(content: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
    });
    merge(&mut body, extra);
    body
}

/// A text completion request body.
pub fn completion(prompt: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({"model": MODEL, "prompt": prompt});
    merge(&mut body, extra);
    body
}

fn merge(body: &mut Value, extra: Value) {
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
}

/// The text a stream gave each choice, and each choice's finish reason.
pub fn streamed_text(chunks: &[Value], field: &str) -> (Vec<String>, Vec<Option<String>>) {
    let mut text: Vec<String> = Vec::new();
    let mut finish: Vec<Option<String>> = Vec::new();
    for c in chunks {
        for ch in c["choices"].as_array().unwrap() {
            let i = ch["index"].as_u64().unwrap() as usize;
            if text.len() <= i {
                text.resize(i + 1, String::new());
                finish.resize(i + 1, None);
            }
            let piece = if field == "content" { &ch["delta"]["content"] } else { &ch["text"] };
            if let Some(t) = piece.as_str() {
                text[i].push_str(t);
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                assert!(finish[i].is_none(), "choice {i} finished twice");
                finish[i] = Some(f.to_string());
            }
        }
    }
    (text, finish)
}

/// The value of an unlabelled series (or the first sample of a name) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub async fn get_text(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}
