//! One streamed chat completion, timed: when it was sent, when its first text arrived, the gaps
//! between later text chunks, when it ended, how many tokens it produced, or why it failed.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::sse::{classify, Payload, SseParser};

/// What every request of a test shares.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// `BASE/v1/chat/completions`.
    pub endpoint: String,
    /// The `model` field.
    pub model: String,
    /// `max_tokens`.
    pub max_tokens: usize,
    /// `temperature`.
    pub temperature: f64,
    /// A system message put before every prompt.
    pub system: Option<String>,
    /// Sent as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// The whole request's limit.
    pub timeout: Duration,
}

impl RequestTemplate {
    /// The JSON body for `prompt`.
    pub fn body(&self, prompt: &str) -> Value {
        let mut messages = Vec::new();
        if let Some(s) = &self.system {
            messages.push(json!({"role": "system", "content": s}));
        }
        messages.push(json!({"role": "user", "content": prompt}));
        json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": true,
            "stream_options": {"include_usage": true},
        })
    }
}

/// The timing of one request; times are seconds from the start of its level.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Which prompt it sent (index into the prompt list).
    pub prompt: usize,
    /// When it was sent.
    pub start_s: f64,
    /// From sending to the first chunk with text; `None` when no text came.
    pub ttft_s: Option<f64>,
    /// From sending to the end of the stream (or to the failure).
    pub e2e_s: f64,
    /// Generated tokens: the server's `usage.completion_tokens`, else the number of text chunks.
    pub output_tokens: usize,
    /// `usage.prompt_tokens` when the server sent it.
    pub prompt_tokens: Option<usize>,
    /// Whether `output_tokens` came from the server's usage.
    pub tokens_from_usage: bool,
    /// Why it failed; a failed request counts no tokens.
    pub error: Option<String>,
    /// Gaps between consecutive text chunks (inter-token latency when a chunk is one token).
    #[serde(skip)]
    pub gaps_s: Vec<f64>,
}

/// Sends `prompt` and reads the stream to its end; never fails: errors are recorded.
pub async fn send(
    client: &reqwest::Client,
    tpl: &RequestTemplate,
    prompt_index: usize,
    prompt: &str,
    level_start: Instant,
) -> RequestRecord {
    let start = Instant::now();
    let mut rec = RequestRecord {
        prompt: prompt_index,
        start_s: start.duration_since(level_start).as_secs_f64(),
        ttft_s: None,
        e2e_s: 0.0,
        output_tokens: 0,
        prompt_tokens: None,
        tokens_from_usage: false,
        error: None,
        gaps_s: Vec::new(),
    };
    let result = tokio::time::timeout(tpl.timeout, stream(client, tpl, prompt, start, &mut rec));
    let outcome = match result.await {
        Ok(r) => r,
        Err(_) => Err(format!("no complete answer within {:.0} s", tpl.timeout.as_secs_f64())),
    };
    rec.e2e_s = start.elapsed().as_secs_f64();
    if let Err(e) = outcome {
        rec.error = Some(e);
        rec.output_tokens = 0;
    }
    rec
}

async fn stream(
    client: &reqwest::Client,
    tpl: &RequestTemplate,
    prompt: &str,
    start: Instant,
    rec: &mut RequestRecord,
) -> Result<(), String> {
    let mut req = client.post(&tpl.endpoint).json(&tpl.body(prompt));
    if let Some(key) = &tpl.api_key {
        req = req.bearer_auth(key);
    }
    let mut resp = req.send().await.map_err(|e| format!("request failed: {}", chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(http_error(status.as_u16(), &body));
    }
    let mut parser = SseParser::default();
    let mut chunks = 0usize;
    let mut last_text: Option<Instant> = None;
    let mut done = false;
    while let Some(bytes) =
        resp.chunk().await.map_err(|e| format!("stream broke: {}", chain(&e)))?
    {
        let now = Instant::now();
        for payload in parser.push(&bytes) {
            let text = match classify(&payload) {
                Payload::Text => true,
                Payload::Usage { completion_tokens, prompt_tokens, text } => {
                    rec.output_tokens = completion_tokens;
                    rec.prompt_tokens = prompt_tokens;
                    rec.tokens_from_usage = true;
                    text
                }
                Payload::Error(msg) => return Err(format!("error in the stream: {msg}")),
                Payload::Done => {
                    done = true;
                    false
                }
                Payload::Other => false,
            };
            if text {
                chunks += 1;
                match last_text {
                    None => rec.ttft_s = Some(now.duration_since(start).as_secs_f64()),
                    Some(prev) => rec.gaps_s.push(now.duration_since(prev).as_secs_f64()),
                }
                last_text = Some(now);
            }
        }
    }
    if !done {
        return Err("the stream ended without [DONE]".into());
    }
    if !rec.tokens_from_usage {
        rec.output_tokens = chunks;
    }
    Ok(())
}

/// `HTTP 400: message` from an OpenAI error body, else the start of the body.
fn http_error(status: u16, body: &str) -> String {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    format!("HTTP {status}: {msg}")
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_system_message_first_and_asks_for_usage() {
        let tpl = RequestTemplate {
            endpoint: "http://x/v1/chat/completions".into(),
            model: "m".into(),
            max_tokens: 16,
            temperature: 0.0,
            system: Some("be brief".into()),
            api_key: None,
            timeout: Duration::from_secs(1),
        };
        let b = tpl.body("hi");
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["messages"][1]["content"], "hi");
        assert_eq!(b["max_tokens"], 16);
        assert_eq!(b["stream_options"]["include_usage"], true);
    }

    #[test]
    fn http_errors_show_the_openai_message() {
        let body = r#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#;
        assert_eq!(http_error(404, body), "HTTP 404: bad model");
        assert_eq!(http_error(502, "upstream down"), "HTTP 502: upstream down");
    }
}
