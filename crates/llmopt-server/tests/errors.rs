//! Bad input and faults on a live server: malformed and mistyped bodies, unknown models, prompts
//! past the context, out-of-range settings and oversized bodies each get a 4xx with OpenAI's
//! error body naming the field; API keys; engine errors (a test double) give 500 and the server
//! goes on; a client that disconnects mid-stream frees its KV blocks; shutdown drains.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{chat, chunks, completion, metric, post, shared, TestServer, MODEL};
use llmopt_api::{
    EngineMetrics, Event, FinishReason, Generate, Limits, Request, RequestError, RequestId, Sink,
};
use llmopt_engine::EngineConfig;
use llmopt_server::ServerConfig;
use serde_json::{json, Value};

/// Checks an error response: status, OpenAI's four keys, the param and (if given) the code.
fn assert_error(status: u16, v: &Value, want: u16, param: Option<&str>, code: Option<&str>) {
    assert_eq!(status, want, "{v}");
    let e = &v["error"];
    let keys: Vec<&String> =
        e.as_object().unwrap_or_else(|| panic!("no error object: {v}")).keys().collect();
    assert_eq!(keys, ["code", "message", "param", "type"], "{v}");
    assert!(!e["message"].as_str().unwrap().is_empty());
    let kind = if want >= 500 { "server_error" } else { "invalid_request_error" };
    assert_eq!(e["type"], kind, "{v}");
    assert_eq!(e["param"].as_str(), param, "{v}");
    if code.is_some() {
        assert_eq!(e["code"].as_str(), code, "{v}");
    }
}

async fn post_raw(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = common::client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_name_the_field() {
    let s = shared();
    let chat_url = s.url("/v1/chat/completions");
    let cmpl_url = s.url("/v1/completions");
    let (st, v) = post_raw(&chat_url, "{\"model\": ").await;
    assert_error(st, &v, 400, None, Some("invalid_json"));
    let (st, v) = post_raw(&cmpl_url, "[1, 2]").await;
    assert_error(st, &v, 400, None, None);
    let user = json!([{"role": "user", "content": "hi"}]);
    for (url, body, param) in [
        (&chat_url, json!({"messages": user}), "model"),
        (&chat_url, json!({"model": MODEL}), "messages"),
        (&chat_url, json!({"model": MODEL, "messages": "hi"}), "messages"),
        (
            &chat_url,
            json!({"model": MODEL, "messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (
            &chat_url,
            json!({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (&chat_url, json!({"model": MODEL, "messages": user, "temperature": "hot"}), "temperature"),
        (&chat_url, json!({"model": MODEL, "messages": user, "max_tokens": "ten"}), "max_tokens"),
        (&chat_url, json!({"model": MODEL, "messages": user, "stream": 1}), "stream"),
        (&chat_url, json!({"model": MODEL, "messages": user, "stop": 7}), "stop"),
        (&cmpl_url, json!({"model": MODEL}), "prompt"),
        (&cmpl_url, json!({"model": MODEL, "prompt": {"text": "x"}}), "prompt"),
        (&cmpl_url, json!({"model": MODEL, "prompt": ["a", "b"]}), "prompt"),
        (&cmpl_url, json!({"model": MODEL, "prompt": [60000]}), "prompt"),
        (&cmpl_url, json!({"model": MODEL, "prompt": "x", "logprobs": true}), "logprobs"),
    ] {
        let (st, _, v) = post(url, &body).await;
        assert_error(st, &v, 400, Some(param), None);
    }
}

#[tokio::test]
async fn an_unknown_model_is_404() {
    let s = shared();
    let (st, _, v) = post(
        &s.url("/v1/chat/completions"),
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_error(st, &v, 404, Some("model"), Some("model_not_found"));
    assert!(v["error"]["message"].as_str().unwrap().contains("gpt-4o"));
}

#[tokio::test]
async fn out_of_range_settings_name_the_field() {
    let s = shared();
    for (extra, param) in [
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"max_tokens": -3}), "max_tokens"),
        (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"temperature": -0.1}), "temperature"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"top_k": -5}), "top_k"),
        (json!({"min_p": 1.5}), "min_p"),
        (json!({"presence_penalty": 2.5}), "presence_penalty"),
        (json!({"frequency_penalty": -2.5}), "frequency_penalty"),
        (json!({"n": 0}), "n"),
        (json!({"logprobs": true, "top_logprobs": 21}), "top_logprobs"),
        (json!({"stop": ["ok", ""]}), "stop"),
        (json!({"stream_options": {"include_usage": true}}), "stream_options"),
    ] {
        let (st, _, v) = post(&s.url("/v1/chat/completions"), &chat("hi", extra.clone())).await;
        assert_error(st, &v, 400, Some(param), None);
    }
    let (st, _, v) =
        post(&s.url("/v1/completions"), &completion("hi", json!({"logprobs": 30}))).await;
    assert_error(st, &v, 400, Some("logprobs"), None);
}

#[tokio::test]
async fn prompts_and_lengths_past_the_context_are_refused() {
    let s = shared();
    // SmolLM2's context is 8192 tokens.
    let long: Vec<u32> = (0..9000).map(|i| 100 + i % 1000).collect();
    let (st, _, v) =
        post(&s.url("/v1/completions"), &json!({"model": MODEL, "prompt": long, "max_tokens": 1}))
            .await;
    assert_error(st, &v, 400, Some("prompt"), Some("context_length_exceeded"));
    let words = "lorem ipsum dolor sit amet ".repeat(2000);
    let (st, _, v) =
        post(&s.url("/v1/chat/completions"), &chat(&words, json!({"max_tokens": 1}))).await;
    assert_error(st, &v, 400, Some("messages"), Some("context_length_exceeded"));
    let (st, _, v) =
        post(&s.url("/v1/chat/completions"), &chat("hi", json!({"max_tokens": 9000}))).await;
    assert_error(st, &v, 400, Some("max_tokens"), Some("context_length_exceeded"));
    let (st, _, v) =
        post(&s.url("/v1/completions"), &completion("hi", json!({"max_tokens": 8192}))).await;
    assert_error(st, &v, 400, Some("max_tokens"), Some("context_length_exceeded"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let s = shared();
    let body = json!({"model": MODEL, "prompt": "a".repeat(common::BODY_LIMIT + 1000)});
    let (st, _, v) = post(&s.url("/v1/completions"), &body).await;
    assert_error(st, &v, 413, None, Some("request_too_large"));
    // The server is fine afterwards.
    let (st, _, _) =
        post(&s.url("/v1/completions"), &completion("a", json!({"max_tokens": 1}))).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_error_bodies() {
    let s = shared();
    let r = common::client().get(s.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_error(404, &v, 404, None, None);
    let r = common::client().get(s.url("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_error(405, &r.json().await.unwrap(), 405, None, None);
}

/// A test double of the engine. `max_tokens` picks what it does:
/// 13: fails after admission with `Event::Error`; 14: sends two tokens, then fails;
/// 15: refuses as a stopped engine would; otherwise `max_tokens` tokens ("ok" repeated), then
/// finishes with `length`.
#[derive(Debug, Default)]
struct Faulty {
    next: AtomicU64,
}

impl Generate for Faulty {
    fn submit(&self, r: Request, sink: Sink) -> Result<RequestId, RequestError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = common::tokenizer().encode("ok", false, false)[0];
        let max = r.params.max_tokens;
        if max == 15 {
            return Err(RequestError::Stopped);
        }
        std::thread::spawn(move || {
            if max == 13 {
                sink.send(Event::Error { message: "injected fault".into() });
                return;
            }
            sink.send(Event::Started { prompt_tokens: r.prompt.len(), cached_tokens: 0 });
            for i in 0..max {
                if max == 14 && i == 2 {
                    sink.send(Event::Error { message: "injected fault mid-stream".into() });
                    return;
                }
                sink.send(Event::Token { choice: 0, token, logprob: None });
            }
            sink.send(Event::Finished {
                choice: 0,
                reason: FinishReason::Length,
                completion_tokens: max,
            });
        });
        Ok(id)
    }
    fn cancel(&self, _: RequestId) {}
    fn metrics(&self) -> EngineMetrics {
        EngineMetrics::default()
    }
    fn limits(&self) -> Limits {
        Limits { context: 8192, kv_capacity: 16384, vocab: 49152 }
    }
    fn drain(&self) {}
}

fn faulty_server(keys: &[&str]) -> TestServer {
    let cfg = ServerConfig {
        api_keys: keys.iter().map(|k| k.to_string()).collect(),
        ..ServerConfig::new(MODEL)
    };
    TestServer::start(Arc::new(Faulty::default()), cfg)
}

#[tokio::test]
async fn engine_errors_are_500_and_the_server_keeps_serving() {
    let s = faulty_server(&[]);
    let url = s.url("/v1/chat/completions");
    let (st, _, v) = post(&url, &chat("hi", json!({"max_tokens": 13}))).await;
    assert_error(st, &v, 500, None, None);
    assert!(v["error"]["message"].as_str().unwrap().contains("injected fault"));
    let (st, _, v) = post(&url, &chat("hi", json!({"max_tokens": 14}))).await;
    assert_error(st, &v, 500, None, None);
    // A stream that fails before admission is a plain 500 too.
    let (st, _, v) = post(&url, &chat("hi", json!({"max_tokens": 13, "stream": true}))).await;
    assert_error(st, &v, 500, None, None);
    // Mid-stream, the error is an event, then [DONE].
    let data = common::stream(&url, &chat("hi", json!({"max_tokens": 14, "stream": true}))).await;
    let c = chunks(&data);
    assert_eq!(c.last().unwrap()["error"]["type"], "server_error", "{data:?}");
    assert_eq!(common::streamed_text(&c[..c.len() - 1], "content").0[0], "okok");
    let (st, _, v) = post(&url, &chat("hi", json!({"max_tokens": 15}))).await;
    assert_error(st, &v, 503, None, None);
    let (st, _, v) = post(&url, &chat("hi", json!({"max_tokens": 3}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "okokok");
    let (_, metrics) = common::get_text(&s.url("/metrics")).await;
    assert!(
        metrics.contains(r#"llmopt_requests_total{endpoint="chat_completions",status="500"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn api_keys_guard_v1_only() {
    let s = faulty_server(&["key-one", "key-two"]);
    let body = completion("hi", json!({"max_tokens": 2}));
    for auth in [None, Some("Bearer nope"), Some("key-one"), Some("Basic key-one")] {
        let mut r = common::client().post(s.url("/v1/completions")).json(&body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let status = r.status().as_u16();
        assert_error(status, &r.json().await.unwrap(), 401, None, Some("invalid_api_key"));
    }
    for key in ["key-one", "key-two"] {
        let r = common::client().get(s.url("/v1/models")).bearer_auth(key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = common::client()
            .post(s.url("/v1/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for open in ["/health", "/metrics"] {
        assert_eq!(common::get_text(&s.url(open)).await.0, 200, "{open}");
    }
}

/// A server over its own SmolLM2 engine, so its metrics see only this test's requests.
fn own_server() -> TestServer {
    let engine = common::engine(EngineConfig { kv_cache_tokens: 8192, ..EngineConfig::default() });
    TestServer::start(Arc::new(engine), ServerConfig::new(MODEL))
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_frees_its_blocks() {
    let s = own_server();
    let body = completion(
        "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
        json!({"max_tokens": 4000, "temperature": 0, "stream": true}),
    );
    let mut r = common::client().post(s.url("/v1/completions")).json(&body).send().await.unwrap();
    let mut seen = String::new();
    while seen.matches("data: ").count() < 3 {
        let more = r.chunk().await.unwrap();
        seen.push_str(&String::from_utf8_lossy(
            more.as_deref().unwrap_or_else(|| panic!("ended early: {seen}")),
        ));
    }
    let (_, during) = common::get_text(&s.url("/metrics")).await;
    assert_eq!(metric(&during, "llmopt_running_sequences"), Some(1.0), "{during}");
    drop(r);
    // 4000 tokens would take minutes; the blocks must come back within seconds.
    let start = Instant::now();
    loop {
        let (_, m) = common::get_text(&s.url("/metrics")).await;
        let v = |name| metric(&m, name).unwrap_or(f64::NAN);
        let idle = v("llmopt_running_sequences") == 0.0 && v("llmopt_queue_length") == 0.0;
        if idle && v("llmopt_kv_blocks_used") == v("llmopt_prefix_cache_blocks") {
            assert!(v("llmopt_generated_tokens_total") < 1000.0, "{m}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "blocks not freed:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn shutdown_finishes_running_streams_then_stops() {
    let mut s = own_server();
    let body = completion(
        "The rain in Spain",
        json!({"max_tokens": 40, "temperature": 0, "stream": true}),
    );
    let mut r = common::client().post(s.url("/v1/completions")).json(&body).send().await.unwrap();
    let mut text = String::from_utf8_lossy(&r.chunk().await.unwrap().unwrap()).into_owned();
    let url = s.url("/health");
    let stopping = tokio::task::spawn_blocking(move || s.stop());
    while let Some(c) = r.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&c));
    }
    let c = chunks(&common::sse_data(&text));
    let (out, reasons) = common::streamed_text(&c, "text");
    assert_eq!(reasons[0].as_deref(), Some("length"), "{out:?}");
    stopping.await.unwrap().expect("the server stops cleanly");
    assert!(common::client().get(url).send().await.is_err(), "no longer listening");
}
