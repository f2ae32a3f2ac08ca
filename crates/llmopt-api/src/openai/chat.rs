//! `POST /v1/chat/completions`: the request (messages plus the shared settings) validated into a
//! [`ChatRequest`], and the response and stream-chunk shapes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::params::{self, check_logit_bias, unsupported, Common, Settings};
use super::{ApiError, ChatLogprobs, Usage};
use crate::MAX_TOP_LOGPROBS;

/// One message of the conversation, with its content as plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant` (`developer` is read as `system`).
    pub role: String,
    pub content: String,
}

/// A validated chat completion request.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub settings: Settings,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageIn {
    role: Option<String>,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct ChatFields {
    messages: Option<Vec<MessageIn>>,
    max_completion_tokens: Option<i64>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    tools: Option<Vec<Value>>,
    response_format: Option<Value>,
    logit_bias: Option<Value>,
}

impl ChatRequest {
    /// Parses and validates a request body; `seed` gives a seed when the body has none.
    pub fn from_json(body: &[u8], seed: impl FnOnce() -> u64) -> Result<Self, ApiError> {
        let v = params::object(body)?;
        let chat: ChatFields = params::fields(&v)?;
        let common: Common = params::fields(&v)?;
        if chat.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("tools", "this server does not call tools"));
        }
        if let Some(f) = &chat.response_format {
            if f.get("type").and_then(Value::as_str) != Some("text") {
                return Err(unsupported("response_format", "only {\"type\": \"text\"}"));
            }
        }
        check_logit_bias(&chat.logit_bias)?;
        let logprobs = match (chat.logprobs.unwrap_or(false), chat.top_logprobs) {
            (false, Some(_)) => {
                let msg = "'top_logprobs' needs 'logprobs' set to true.";
                return Err(ApiError::invalid(Some("top_logprobs"), msg));
            }
            (false, None) => None,
            (true, k) => Some(top_logprobs(k.unwrap_or(0))?),
        };
        let messages = messages(chat.messages)?;
        let settings = common.validate(chat.max_completion_tokens, logprobs, seed)?;
        Ok(Self { messages, settings })
    }
}

fn top_logprobs(k: i64) -> Result<usize, ApiError> {
    if !(0..=MAX_TOP_LOGPROBS as i64).contains(&k) {
        let msg = format!("Invalid 'top_logprobs': {k}; it must be in [0, {MAX_TOP_LOGPROBS}].");
        return Err(ApiError::invalid(Some("top_logprobs"), msg).with_code("invalid_value"));
    }
    Ok(k as usize)
}

fn messages(raw: Option<Vec<MessageIn>>) -> Result<Vec<Message>, ApiError> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::invalid(Some("messages"), "'messages' must be a non-empty array."));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_deref() {
                Some("developer") => "system",
                Some(r @ ("system" | "user" | "assistant")) => r,
                other => {
                    let param = format!("messages[{i}].role");
                    let msg = format!(
                        "Invalid '{param}': {other:?}; supported roles are system, developer, \
                         user and assistant."
                    );
                    return Err(ApiError::invalid(Some(&param), msg));
                }
            };
            let content = match m.content {
                None if role == "assistant" => String::new(),
                None => {
                    let param = format!("messages[{i}].content");
                    return Err(ApiError::invalid(Some(&param), format!("'{param}' is missing.")));
                }
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => text_parts(i, parts)?,
            };
            Ok(Message { role: role.into(), content })
        })
        .collect()
}

/// Text content parts joined by newlines; any other part kind is refused.
fn text_parts(i: usize, parts: Vec<Part>) -> Result<String, ApiError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        match (p.kind.as_str(), p.text) {
            ("text", Some(t)) => texts.push(t),
            (kind, _) => {
                let param = format!("messages[{i}].content[{j}]");
                let what = format!("content parts of type {kind:?} (only text parts are read)");
                return Err(unsupported(&param, &what));
            }
        }
    }
    Ok(texts.join("\n"))
}

/// The assistant's reply in a response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

/// The response of a request without `stream`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

/// What a chunk adds to a choice's message.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// One server-sent event of a streamed response. The last one carries `usage` (and no
/// choices) when the client asked for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl ChatCompletionChunk {
    pub const OBJECT: &'static str = "chat.completion.chunk";
}

impl ChatCompletion {
    pub const OBJECT: &'static str = "chat.completion";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ChatRequest, ApiError> {
        ChatRequest::from_json(body.as_bytes(), || 1)
    }

    fn param(body: &str) -> Option<String> {
        parse(body).unwrap_err().body.error.param
    }

    #[test]
    fn messages_become_text() {
        let r = parse(
            r#"{"model":"m","messages":[{"role":"developer","content":"Be brief."},
               {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
               {"role":"assistant","content":null}],"max_completion_tokens":5,
               "logprobs":true,"top_logprobs":2}"#,
        )
        .unwrap();
        let roles: Vec<&str> = r.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
        assert_eq!(r.messages[1].content, "a\nb");
        assert_eq!(r.settings.max_tokens, Some(5));
        assert_eq!(r.settings.max_tokens_param, "max_completion_tokens");
        assert_eq!(r.settings.logprobs, Some(2));
        let r =
            parse(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}"#);
        assert_eq!(r.unwrap().settings.logprobs, Some(0));
    }

    #[test]
    fn bad_messages_and_fields_are_named() {
        assert_eq!(param(r#"{"model":"m"}"#).as_deref(), Some("messages"));
        assert_eq!(param(r#"{"model":"m","messages":[]}"#).as_deref(), Some("messages"));
        assert_eq!(param(r#"{"model":"m","messages":"hi"}"#).as_deref(), Some("messages"));
        let m = r#""messages":[{"role":"user","content":"x"},{"role":"tool","content":"y"}]"#;
        assert_eq!(param(&format!(r#"{{"model":"m",{m}}}"#)).as_deref(), Some("messages[1].role"));
        let m = r#""messages":[{"role":"user","content":5}]"#;
        let p = param(&format!(r#"{{"model":"m",{m}}}"#));
        assert_eq!(p.as_deref(), Some("messages[0].content"));
        let m = r#""messages":[{"role":"user","content":[{"type":"image_url"}]}]"#;
        let p = param(&format!(r#"{{"model":"m",{m}}}"#));
        assert_eq!(p.as_deref(), Some("messages[0].content[0]"));
        let ok = r#""model":"m","messages":[{"role":"user","content":"x"}]"#;
        for (extra, want) in [
            (r#""top_logprobs":2"#, "top_logprobs"),
            (r#""logprobs":true,"top_logprobs":21"#, "top_logprobs"),
            (r#""logprobs":"yes""#, "logprobs"),
            (r#""max_completion_tokens":0"#, "max_completion_tokens"),
            (r#""tools":[{"type":"function"}]"#, "tools"),
            (r#""response_format":{"type":"json_object"}"#, "response_format"),
            (r#""logit_bias":{"50256":-100}"#, "logit_bias"),
        ] {
            assert_eq!(param(&format!("{{{ok},{extra}}}")).as_deref(), Some(want), "{extra}");
        }
        assert!(parse(&format!(r#"{{{ok},"tools":[],"logit_bias":{{}},"user":"u"}}"#)).is_ok());
    }
}
