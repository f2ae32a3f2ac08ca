//! The load generator against a stub OpenAI server whose timing and failures are known: token and
//! error counts, time to first token, the closed loop under a duration, Ctrl-C, a server that is
//! not there. (Against the real `llmopt serve`: the CLI's tests.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use llmopt_loadtest::{run, LoadConfig, LoadError, OnDone, Stop};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Text chunks per answer and the pause before each.
const CHUNKS: usize = 5;
const PAUSE: Duration = Duration::from_millis(20);

async fn chat(Json(body): Json<Value>) -> Response {
    if body["model"] != "m" {
        let err = json!({"error": {"message": "no such model", "type": "invalid_request_error",
                                   "param": "model", "code": "model_not_found"}});
        return (StatusCode::NOT_FOUND, Json(err)).into_response();
    }
    let prompt = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
    let broken = prompt["content"] == "break";
    let slow = prompt["content"] == "slow";
    let mut events = vec![json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]})];
    events.extend(
        (0..CHUNKS).map(|i| json!({"choices": [{"delta": {"content": format!("t{i} ")}}]})),
    );
    events.push(json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": CHUNKS}}));
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let events = events.clone();
        async move {
            let pause = if slow { Duration::from_secs(30) } else { PAUSE };
            if i > 0 && i <= CHUNKS {
                tokio::time::sleep(pause).await;
            }
            let frame = match i {
                i if i < events.len() => format!("data: {}\n\n", events[i]),
                i if i == events.len() && !broken => "data: [DONE]\n\n".to_string(),
                _ => return None,
            };
            Some((Ok::<_, std::io::Error>(frame), i + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "m", "object": "model"}]}))
}

/// Serves the stub on a free port for the rest of the test; returns its base URL.
async fn stub() -> String {
    let app =
        Router::new().route("/v1/chat/completions", post(chat)).route("/v1/models", get(models));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As any streaming server must (else Nagle holds each small chunk for the delayed ACK).
    let listener = listener.tap_io(|tcp| tcp.set_nodelay(true).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn config(url: String, concurrency: Vec<usize>, stop: Stop) -> LoadConfig {
    LoadConfig {
        url,
        model: None,
        concurrency,
        stop,
        warmup: 0,
        max_tokens: 8,
        temperature: 0.0,
        system: None,
        api_key: None,
        timeout: Duration::from_secs(20),
    }
}

fn quiet() -> OnDone {
    Arc::new(|_, _| {})
}

fn prompts(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_count_tokens_and_time_the_first_one() {
    let url = stub().await;
    let (_tx, rx) = watch::channel(false);
    let cfg = config(format!("{url}/v1/"), vec![1, 3], Stop::Requests(6));
    let r = run(&cfg, prompts(&["a", "b"]), rx, quiet()).await.unwrap();
    assert_eq!(r.model, "m", "discovered through /v1/models");
    assert_eq!(r.url, url, "a trailing /v1/ is accepted");
    assert_eq!(r.levels.len(), 2);
    for level in &r.levels {
        assert_eq!((level.ok, level.errors), (6, 0), "{:?}", level.error_samples);
        assert_eq!(level.output_tokens, 6 * CHUNKS);
        assert!(level.requests.iter().all(|q| q.tokens_from_usage && q.prompt_tokens == Some(3)));
        // The first text comes after one pause, the rest one pause apart.
        assert!(level.ttft_s.p50 >= PAUSE.as_secs_f64(), "{:?}", level.ttft_s);
        assert!(level.tpot_s.p50 >= PAUSE.as_secs_f64(), "{:?}", level.tpot_s);
        assert_eq!(level.itl_s.count, 6 * (CHUNKS - 1));
        assert!(level.ttft_s.max <= level.e2e_s.max);
        let expected = level.output_tokens as f64 / level.wall_s;
        assert!((level.output_tokens_per_s - expected).abs() < 1e-9);
    }
    // Three clients overlap: their level takes less wall time than six requests in a row.
    let serial: f64 = r.levels[1].requests.iter().map(|q| q.e2e_s).sum();
    assert!(r.levels[1].wall_s < 0.8 * serial, "{} vs {serial}", r.levels[1].wall_s);
    // Prompts rotate, and the second level starts where the first ended.
    let used: Vec<usize> = r.levels[0].requests.iter().map(|q| q.prompt).collect();
    assert_eq!(used, vec![0, 1, 0, 1, 0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_with_their_messages() {
    let url = stub().await;
    let (_tx, rx) = watch::channel(false);
    let mut cfg = config(url.clone(), vec![2], Stop::Requests(4));
    cfg.model = Some("other".into());
    let r = run(&cfg, prompts(&["a"]), rx.clone(), quiet()).await.unwrap();
    let level = &r.levels[0];
    assert_eq!((level.ok, level.errors, level.output_tokens), (0, 4, 0));
    assert_eq!(level.error_samples, vec![("HTTP 404: no such model".to_string(), 4)]);

    let cfg = config(url, vec![1], Stop::Requests(2));
    let r = run(&cfg, prompts(&["break", "a"]), rx, quiet()).await.unwrap();
    let level = &r.levels[0];
    assert_eq!((level.ok, level.errors), (1, 1));
    assert!(level.error_samples[0].0.contains("without [DONE]"), "{:?}", level.error_samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duration_level_stops_sending_and_lets_requests_finish() {
    let url = stub().await;
    let (_tx, rx) = watch::channel(false);
    let cfg = config(url, vec![2], Stop::Duration(Duration::from_millis(300)));
    let r = run(&cfg, prompts(&["a"]), rx, quiet()).await.unwrap();
    let level = &r.levels[0];
    assert!(level.ok >= 2 && level.errors == 0, "{} ok, {} errors", level.ok, level.errors);
    assert!(level.requests.iter().all(|q| q.start_s < 0.3));
    assert!(!level.interrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_test_at_once_and_keeps_what_finished() {
    let url = stub().await;
    let (tx, rx) = watch::channel(false);
    let cfg = config(url, vec![2, 4], Stop::Requests(100));
    let started = Instant::now();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(true).unwrap();
    });
    let r = run(&cfg, prompts(&["a", "slow"]), rx, quiet()).await.unwrap();
    cancel.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "the slow stream was not dropped");
    assert_eq!(r.levels.len(), 1, "no level starts after a cancel");
    assert!(r.levels[0].interrupted);
    assert!(r.levels[0].ok >= 1, "the finished fast request is kept");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_tx, rx) = watch::channel(false);
    let cfg = config(format!("http://127.0.0.1:{port}"), vec![1], Stop::Requests(1));
    let err = run(&cfg, prompts(&["a"]), rx.clone(), quiet()).await.unwrap_err();
    assert!(matches!(&err, LoadError::Unreachable { url, .. } if url.ends_with("/v1/models")));

    let bad = |mut c: LoadConfig| {
        c.url = "127.0.0.1:1".into();
        c
    };
    let err = run(&bad(cfg.clone()), prompts(&["a"]), rx.clone(), quiet()).await.unwrap_err();
    assert!(err.to_string().contains("http://HOST:PORT"), "{err}");
    let mut zero = cfg.clone();
    zero.concurrency = vec![1, 0];
    assert!(run(&zero, prompts(&["a"]), rx, quiet()).await.is_err());
}
