//! Server-sent events as an OpenAI-compatible server streams them: `data:` payloads cut from a
//! byte stream, and what each payload says (text, usage, an error, the `[DONE]` end).

use serde_json::Value;

/// Collects bytes and returns the `data:` payload of each complete event (events end with a blank
/// line, `\n\n` or `\r\n\r\n`; several `data:` lines of one event are joined with `\n`).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Adds `bytes` and returns the payloads of the events they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some((end, sep)) = find_event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end + sep).take(end).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                out.push(data.join("\n"));
            }
        }
        out
    }
}

/// The end of the first event in `buf` and the length of its blank-line separator.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if buf[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else {
            None
        }
    })
}

/// What one streamed payload carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Generated text (a chat `delta.content` or a completion's `text`), not empty.
    Text,
    /// The usage a server sends last (`stream_options.include_usage`), with any text it also holds.
    Usage {
        /// `usage.completion_tokens`.
        completion_tokens: usize,
        /// `usage.prompt_tokens`.
        prompt_tokens: Option<usize>,
        /// Whether this chunk also held text.
        text: bool,
    },
    /// `{"error": {...}}` in the stream.
    Error(String),
    /// `[DONE]`.
    Done,
    /// Anything else: the role-only first chunk, a finish reason, an empty delta.
    Other,
}

/// Classifies one payload; a payload that is not JSON is an error.
pub fn classify(payload: &str) -> Payload {
    if payload.trim() == "[DONE]" {
        return Payload::Done;
    }
    let v: Value = match serde_json::from_str(payload) {
        Ok(v) => v,
        Err(e) => return Payload::Error(format!("a streamed chunk is not JSON ({e})")),
    };
    if let Some(err) = v.get("error") {
        let msg = err.get("message").and_then(Value::as_str).unwrap_or("an error without message");
        return Payload::Error(msg.to_string());
    }
    let text = v.get("choices").and_then(Value::as_array).is_some_and(|choices| {
        choices.iter().any(|c| {
            let t = c.pointer("/delta/content").or_else(|| c.get("text"));
            t.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
        })
    });
    let usage = v.get("usage").filter(|u| !u.is_null());
    if let Some(n) = usage.and_then(|u| u.get("completion_tokens")).and_then(Value::as_u64) {
        let prompt_tokens =
            usage.and_then(|u| u.get("prompt_tokens")).and_then(Value::as_u64).map(|p| p as usize);
        return Payload::Usage { completion_tokens: n as usize, prompt_tokens, text };
    }
    if text {
        Payload::Text
    } else {
        Payload::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_are_joined() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").is_empty());
        assert_eq!(p.push(b":1}\n\ndata: [DONE]\n"), vec!["{\"a\":1}"]);
        assert_eq!(p.push(b"\n"), vec!["[DONE]"]);
    }

    #[test]
    fn crlf_comments_and_multiline_data() {
        let mut p = SseParser::default();
        let got = p.push(b": keep-alive\r\n\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\ndata:c\n\n");
        assert_eq!(got, vec!["a\nb", "c"]);
    }

    #[test]
    fn payloads_are_classified() {
        let chat = r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;
        assert_eq!(classify(chat), Payload::Text);
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(classify(role), Payload::Other);
        assert_eq!(classify(r#"{"choices":[{"text":" x","index":0}]}"#), Payload::Text);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
        let want = Payload::Usage { completion_tokens: 3, prompt_tokens: Some(7), text: false };
        assert_eq!(classify(usage), want);
        // llama-server may put the usage on the chunk with the finish reason.
        let both = r#"{"choices":[{"delta":{"content":"."}}],"usage":{"completion_tokens":9}}"#;
        let want = Payload::Usage { completion_tokens: 9, prompt_tokens: None, text: true };
        assert_eq!(classify(both), want);
        assert_eq!(classify(r#"{"choices":[],"usage":null}"#), Payload::Other);
        assert_eq!(classify(" [DONE]"), Payload::Done);
        let err = r#"{"error":{"message":"boom","type":"server_error"}}"#;
        assert_eq!(classify(err), Payload::Error("boom".into()));
        assert!(matches!(classify("nope"), Payload::Error(m) if m.contains("not JSON")));
    }
}
