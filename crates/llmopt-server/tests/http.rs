//! The OpenAI endpoints on a live server over SmolLM2: response and stream shapes of chat and
//! text completions, request ids, 16 concurrent greedy streams equal to one-at-a-time answers,
//! `n`, seeds, logprobs in both shapes, stop strings, the model list and the metrics text.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{chat, chunks, completion, metric, post, shared, stream, streamed_text, MODEL};
use serde_json::{json, Value};

fn greedy(max_tokens: u64) -> Value {
    json!({"max_tokens": max_tokens, "temperature": 0})
}

#[tokio::test]
async fn chat_completion_has_openais_shape() {
    let s = shared();
    let (status, headers, v) =
        post(&s.url("/v1/chat/completions"), &chat("What is 2+2?", greedy(12))).await;
    assert_eq!(status, 200, "{v}");
    let rid = headers["x-request-id"].to_str().unwrap();
    assert!(rid.len() == 32 && rid.chars().all(|c| c.is_ascii_hexdigit()), "{rid}");
    assert_eq!(v["id"], format!("chatcmpl-{rid}"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
    let c = &v["choices"][0];
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
    assert_eq!((c["index"].as_u64(), c["message"]["role"].as_str()), (Some(0), Some("assistant")));
    assert!(!c["message"]["content"].as_str().unwrap().is_empty());
    assert!(c["logprobs"].is_null());
    assert!(["length", "stop"].contains(&c["finish_reason"].as_str().unwrap()));
    let u = &v["usage"];
    let (p, n) = (u["prompt_tokens"].as_u64().unwrap(), u["completion_tokens"].as_u64().unwrap());
    assert!(p > 5 && (1..=12).contains(&n), "{u}");
    assert_eq!(u["total_tokens"].as_u64(), Some(p + n));
    assert!(u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap() <= p);
}

#[tokio::test]
async fn a_clients_request_id_is_echoed() {
    let s = shared();
    let r = common::client()
        .post(s.url("/v1/completions"))
        .header("x-request-id", "client-id-42")
        .json(&completion("Hello", greedy(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id-42");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "cmpl-client-id-42");
    let (_, headers, _) = post(&s.url("/v1/chat/completions"), &json!({})).await;
    assert!(headers.contains_key("x-request-id"), "errors carry an id too");
}

#[tokio::test]
async fn text_completion_has_openais_shape_and_the_prefix_cache_shows_in_usage() {
    let s = shared();
    // Long enough for whole cached blocks (16 tokens each) on the second call.
    let prompt = "The history of the printing press begins in the fifteenth century, when \
                  Johannes Gutenberg of Mainz combined movable metal type, oil-based ink and a \
                  screw press into a system that could";
    let body = completion(prompt, greedy(10));
    let (status, _, v) = post(&s.url("/v1/completions"), &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert!(c["text"].is_string() && c["logprobs"].is_null());
    assert_eq!(c["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 10);
    let (_, _, again) = post(&s.url("/v1/completions"), &body).await;
    assert_eq!(again["choices"][0]["text"], c["text"], "greedy answers repeat");
    let cached = again["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached >= 16, "the second call reuses the prompt's blocks: {}", again["usage"]);
}

#[tokio::test]
async fn chat_streams_are_chunks_then_usage_then_done() {
    let s = shared();
    let body = chat("Name three colors.", greedy(10));
    let (_, _, whole) = post(&s.url("/v1/chat/completions"), &body).await;
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let data = stream(&s.url("/v1/chat/completions"), &streamed).await;
    let c = chunks(&data);
    let id = c[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for ch in &c {
        assert_eq!(
            (ch["id"].as_str(), ch["object"].as_str()),
            (Some(id), Some("chat.completion.chunk"))
        );
        assert_eq!(ch["model"], MODEL);
    }
    assert_eq!(c[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let last = c.last().unwrap();
    assert_eq!(last["choices"], json!([]), "the usage chunk has no choices");
    for k in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(last["usage"][k], whole["usage"][k], "{k}");
    }
    // The second call found the first one's prompt blocks.
    assert!(last["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64() >= Some(16));
    assert!(c[..c.len() - 1].iter().all(|ch| ch.get("usage").is_none()));
    let finish = &c[c.len() - 2]["choices"][0];
    assert_eq!(
        (&finish["delta"], &finish["finish_reason"]),
        (&json!({}), &whole["choices"][0]["finish_reason"])
    );
    let (text, reasons) = streamed_text(&c, "content");
    assert_eq!(text[0], whole["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(reasons[0].as_deref(), whole["choices"][0]["finish_reason"].as_str());
    // Without include_usage, no usage anywhere.
    streamed.as_object_mut().unwrap().remove("stream_options");
    let c = chunks(&stream(&s.url("/v1/chat/completions"), &streamed).await);
    assert!(c.iter().all(|ch| ch.get("usage").is_none()));
}

#[tokio::test]
async fn completion_streams_equal_the_whole_response() {
    let s = shared();
    let body = completion("Once upon a time", greedy(12));
    let (_, _, whole) = post(&s.url("/v1/completions"), &body).await;
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let c = chunks(&stream(&s.url("/v1/completions"), &streamed).await);
    assert!(c.iter().all(|ch| ch["object"] == "text_completion" && ch.get("usage").is_none()));
    let (text, reasons) = streamed_text(&c, "text");
    assert_eq!(text[0], whole["choices"][0]["text"].as_str().unwrap());
    assert_eq!(reasons[0].as_deref(), Some("length"));
}

#[tokio::test]
async fn sixteen_concurrent_greedy_streams_equal_their_one_at_a_time_answers() {
    let s = shared();
    // Half chat, half text completions, of different lengths.
    let request = |i: usize| -> (String, Value, &'static str) {
        let max = 8 + (i % 5) as u64;
        let mut body = if i.is_multiple_of(2) {
            chat(&format!("Tell me fact number {i} about the sea."), greedy(max))
        } else {
            completion(&format!("{i}. A list of things found in a kitchen:"), greedy(max))
        };
        body["stream"] = json!(true);
        if i.is_multiple_of(2) {
            (s.url("/v1/chat/completions"), body, "content")
        } else {
            (s.url("/v1/completions"), body, "text")
        }
    };
    let mut alone = Vec::new();
    for i in 0..16 {
        let (url, body, field) = request(i);
        alone.push(streamed_text(&chunks(&stream(&url, &body).await), field));
    }
    let together = futures_util::future::join_all((0..16).map(|i| async move {
        let (url, body, field) = request(i);
        streamed_text(&chunks(&stream(&url, &body).await), field)
    }))
    .await;
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "request {i} changed when run with 15 others");
        assert!(!a.0[0].is_empty() || a.1[0].as_deref() == Some("stop"));
    }
}

#[tokio::test]
async fn n_choices_and_seeds() {
    let s = shared();
    let sampled = json!({"max_tokens": 8, "temperature": 1.0, "seed": 11, "n": 2});
    let (status, _, v) =
        post(&s.url("/v1/completions"), &completion("My favourite food is", sampled.clone())).await;
    assert_eq!(status, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!((choices[0]["index"].as_u64(), choices[1]["index"].as_u64()), (Some(0), Some(1)));
    assert_ne!(choices[0]["text"], choices[1]["text"], "each choice draws with its own seed");
    let tokens: u64 = 16;
    assert_eq!(v["usage"]["completion_tokens"].as_u64(), Some(tokens));
    let (_, _, again) =
        post(&s.url("/v1/completions"), &completion("My favourite food is", sampled)).await;
    assert_eq!(again["choices"], v["choices"], "a seed reproduces the answers");
    // Greedy choices are all the single answer; streamed, each choice has its own chunks.
    let mut body =
        chat("Say hi.", json!({"max_tokens": 6, "temperature": 0, "n": 2, "stream": true}));
    let c = chunks(&stream(&s.url("/v1/chat/completions"), &body).await);
    let (text, reasons) = streamed_text(&c, "content");
    assert_eq!(text.len(), 2);
    assert_eq!(text[0], text[1]);
    assert!(reasons.iter().all(Option::is_some));
    let roles = c.iter().filter(|ch| ch["choices"][0]["delta"]["role"] == "assistant").count();
    assert_eq!(roles, 2, "one opening chunk per choice");
    body["stream"] = json!(false);
    let (_, _, whole) = post(&s.url("/v1/chat/completions"), &body).await;
    assert_eq!(whole["choices"][1]["message"]["content"].as_str(), Some(text[1].as_str()));
}

#[tokio::test]
async fn chat_logprobs_list_each_token_with_its_alternatives() {
    let s = shared();
    let body = chat(
        "Write a word.",
        json!({"max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 3}),
    );
    let (status, _, v) = post(&s.url("/v1/chat/completions"), &body).await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len() as u64, v["usage"]["completion_tokens"].as_u64().unwrap());
    let mut text = String::new();
    for t in content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let lp = t["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0);
        // Greedy: the chosen token is the most likely one.
        assert_eq!((&top[0]["token"], top[0]["logprob"].as_f64().unwrap()), (&t["token"], lp));
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
        let bytes: Vec<u8> =
            t["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    let reply = v["choices"][0]["message"]["content"].as_str().unwrap();
    if v["choices"][0]["finish_reason"] == "length" {
        assert_eq!(text, reply);
    }
    // Streamed: each token chunk carries its entry.
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let c = chunks(&stream(&s.url("/v1/chat/completions"), &streamed).await);
    let entries: Vec<&Value> = c
        .iter()
        .filter_map(|ch| ch["choices"][0]["logprobs"]["content"].as_array())
        .flatten()
        .collect();
    assert_eq!(entries.len(), content.len());
    assert_eq!(entries[0]["token"], content[0]["token"]);
}

#[tokio::test]
async fn completion_logprobs_are_parallel_arrays() {
    let s = shared();
    let body = completion("The sky is", json!({"max_tokens": 5, "temperature": 0, "logprobs": 2}));
    let (_, _, v) = post(&s.url("/v1/completions"), &body).await;
    let lp = &v["choices"][0]["logprobs"];
    let tokens: Vec<&str> =
        lp["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.len(), 5);
    assert_eq!(tokens.concat(), v["choices"][0]["text"].as_str().unwrap());
    let offsets: Vec<u64> =
        lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
    let mut at = 0;
    for (t, o) in tokens.iter().zip(&offsets) {
        assert_eq!(*o, at);
        at += t.len() as u64;
    }
    for (i, top) in lp["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert_eq!(top.len(), 2);
        let best = top.values().map(|x| x.as_f64().unwrap()).fold(f64::MIN, f64::max);
        assert_eq!(best, lp["token_logprobs"][i].as_f64().unwrap(), "greedy takes the best");
    }
}

#[tokio::test]
async fn stop_strings_cut_the_text_before_them() {
    let s = shared();
    let prompt = "Here is a list of fruits: apple, banana,";
    let (_, _, v) = post(
        &s.url("/v1/completions"),
        &completion(prompt, json!({"max_tokens": 24, "temperature": 0, "logprobs": 0})),
    )
    .await;
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    let lp = &v["choices"][0]["logprobs"];
    // A stop string across a token boundary: the end of token 3 and the start of token 4.
    let at = lp["text_offset"][4].as_u64().unwrap() as usize;
    let (a, b) = (text[..at].chars().last().unwrap(), text[at..].chars().next().unwrap());
    let across = format!("{a}{b}");
    let cut = text.find(&across).unwrap();
    let want = &text[..cut];
    for stop in [json!(across), json!(["NEVER-SEEN", across])] {
        let extra = json!({"max_tokens": 24, "temperature": 0, "stop": stop});
        let (_, _, v) = post(&s.url("/v1/completions"), &completion(prompt, extra.clone())).await;
        assert_eq!(v["choices"][0]["text"].as_str(), Some(want), "stop {stop}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() < 24);
        let mut streamed = completion(prompt, extra);
        streamed["stream"] = json!(true);
        let c = chunks(&stream(&s.url("/v1/completions"), &streamed).await);
        let (text, reasons) = streamed_text(&c, "text");
        assert_eq!((text[0].as_str(), reasons[0].as_deref()), (want, Some("stop")));
    }
    // Chat too, with a stop string that never comes: the whole text, finish length.
    let body = chat(
        "Count from one to ten.",
        json!({"max_tokens": 8, "temperature": 0, "stop": "\u{1F600}"}),
    );
    let (_, _, v) = post(&s.url("/v1/chat/completions"), &body).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn models_lists_the_served_model() {
    let s = shared();
    let (status, body) = common::get_text(&s.url("/v1/models")).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["max_model_len"], 8192);
    assert_eq!(common::get_text(&s.url("/health")).await, (200, r#"{"status":"ok"}"#.to_string()));
}

/// Prometheus text: `# HELP`/`# TYPE` lines, then `name{labels} value` samples.
fn parse_prometheus(text: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut series: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    let mut typed = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (head, value) = line.rsplit_once(' ').expect("sample: name value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match head.split_once('{') {
            Some((n, l)) => {
                assert!(l.ends_with('}'), "{line}");
                (n, l.trim_end_matches('}').to_string())
            }
            None => (head, String::new()),
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
        let base =
            ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(typed.contains(name) || typed.contains(base), "no TYPE before {line}");
        series.entry(name.to_string()).or_default().push((labels, value));
    }
    series
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_with_the_named_series() {
    let s = shared();
    let (status, _, _) = post(&s.url("/v1/chat/completions"), &chat("Hi", greedy(4))).await;
    assert_eq!(status, 200);
    let r = common::client().get(s.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let series = parse_prometheus(&text);
    for name in [
        "llmopt_requests_total",
        "llmopt_time_to_first_token_seconds_bucket",
        "llmopt_inter_token_latency_seconds_bucket",
        "llmopt_request_duration_seconds_bucket",
        "llmopt_request_duration_seconds_sum",
        "llmopt_request_duration_seconds_count",
        "llmopt_queue_length",
        "llmopt_running_sequences",
        "llmopt_kv_blocks_used",
        "llmopt_kv_blocks_free",
        "llmopt_prefix_cache_blocks",
        "llmopt_prefix_cache_hit_rate",
        "llmopt_generation_tokens_per_second",
        "llmopt_generated_tokens_total",
        "llmopt_batch_tokens",
        "llmopt_batch_sequences",
        "llmopt_token_budget",
    ] {
        assert!(series.contains_key(name), "{name} missing from:\n{text}");
    }
    let ok = &series["llmopt_requests_total"];
    assert!(
        ok.iter().any(|(l, v)| l.contains(r#"endpoint="chat_completions""#)
            && l.contains(r#"status="200""#)
            && *v >= 1.0),
        "{ok:?}"
    );
    assert!(series["llmopt_time_to_first_token_seconds_bucket"]
        .iter()
        .any(|(l, _)| l.contains(r#"le="+Inf""#)));
    assert!(metric(&text, "llmopt_request_duration_seconds_count").unwrap() >= 1.0);
    assert!(metric(&text, "llmopt_token_budget").unwrap() >= 2.0);
    let used = metric(&text, "llmopt_kv_blocks_used").unwrap();
    let free = metric(&text, "llmopt_kv_blocks_free").unwrap();
    assert_eq!(used + free, 1024.0, "16384 tokens in blocks of 16");
}
