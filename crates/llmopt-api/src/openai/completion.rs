//! `POST /v1/completions`: a raw prompt (text or token ids) plus the shared settings validated
//! into a [`CompletionRequest`], and the response and stream-chunk shapes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::params::{self, check_logit_bias, unsupported, Common, Settings};
use super::{ApiError, CompletionLogprobs, Usage};
use crate::MAX_TOP_LOGPROBS;

/// The prompt of a text completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// Tokenized by the server (special-token text is parsed, as llama.cpp does).
    Text(String),
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
}

/// A validated text completion request.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    pub settings: Settings,
}

/// OpenAI's four prompt forms; the lists must hold one prompt here.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptIn {
    Text(String),
    Tokens(Vec<i64>),
    Texts(Vec<String>),
    TokenLists(Vec<Vec<i64>>),
}

#[derive(Debug, Deserialize)]
struct CompletionFields {
    prompt: Option<PromptIn>,
    logprobs: Option<i64>,
    echo: Option<bool>,
    suffix: Option<String>,
    best_of: Option<i64>,
    logit_bias: Option<Value>,
}

/// OpenAI's default length of a text completion.
pub const DEFAULT_MAX_TOKENS: usize = 16;

impl CompletionRequest {
    /// Parses and validates a request body; `seed` gives a seed when the body has none.
    /// Without `max_tokens` a completion is [`DEFAULT_MAX_TOKENS`] long, as OpenAI's.
    pub fn from_json(body: &[u8], seed: impl FnOnce() -> u64) -> Result<Self, ApiError> {
        let v = params::object(body)?;
        let f: CompletionFields = params::fields(&v)?;
        let common: Common = params::fields(&v)?;
        if f.echo == Some(true) {
            return Err(unsupported("echo", "the prompt is not returned"));
        }
        if f.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(unsupported("suffix", "no insertion (fill-in-the-middle) mode"));
        }
        check_logit_bias(&f.logit_bias)?;
        let logprobs = match f.logprobs {
            None => None,
            Some(k) if (0..=MAX_TOP_LOGPROBS as i64).contains(&k) => Some(k as usize),
            Some(k) => {
                let msg =
                    format!("Invalid 'logprobs': {k}; it must be in [0, {MAX_TOP_LOGPROBS}].");
                return Err(ApiError::invalid(Some("logprobs"), msg).with_code("invalid_value"));
            }
        };
        let prompt = prompt(f.prompt)?;
        let mut settings = common.validate(None, logprobs, seed)?;
        if let Some(b) = f.best_of.filter(|&b| b as u64 != settings.n as u64) {
            let msg = format!("best_of {b} differs from n {}", settings.n);
            return Err(unsupported("best_of", &format!("{msg}: choices are not ranked")));
        }
        settings.max_tokens = Some(settings.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
        Ok(Self { prompt, settings })
    }
}

fn prompt(p: Option<PromptIn>) -> Result<Prompt, ApiError> {
    let one = |n: usize| {
        let msg = format!("'prompt' holds {n} prompts; this server takes one per request.");
        Err(ApiError::invalid(Some("prompt"), msg))
    };
    let tokens = |ids: Vec<i64>| -> Result<Prompt, ApiError> {
        ids.into_iter()
            .map(|t| {
                u32::try_from(t).map_err(|_| {
                    ApiError::invalid(Some("prompt"), format!("Invalid token id {t} in 'prompt'."))
                })
            })
            .collect::<Result<_, _>>()
            .map(Prompt::Tokens)
    };
    match p {
        None => Err(ApiError::invalid(Some("prompt"), "You must provide a prompt.")),
        Some(PromptIn::Text(t)) => Ok(Prompt::Text(t)),
        Some(PromptIn::Tokens(ids)) => tokens(ids),
        Some(PromptIn::Texts(mut v)) if v.len() == 1 => Ok(Prompt::Text(v.remove(0))),
        Some(PromptIn::Texts(v)) => one(v.len()),
        Some(PromptIn::TokenLists(mut v)) if v.len() == 1 => tokens(v.remove(0)),
        Some(PromptIn::TokenLists(v)) => one(v.len()),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    /// `None` in stream chunks until the choice ends.
    pub finish_reason: Option<&'static str>,
}

/// The response of a request without `stream`, and (with `usage` only on the last) each chunk
/// of a streamed one: text completions use one shape for both.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl Completion {
    pub const OBJECT: &'static str = "text_completion";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<CompletionRequest, ApiError> {
        CompletionRequest::from_json(body.as_bytes(), || 1)
    }

    #[test]
    fn prompts_in_every_single_form() {
        let r = parse(r#"{"model":"m","prompt":"Hi","logprobs":3}"#).unwrap();
        assert_eq!(r.prompt, Prompt::Text("Hi".into()));
        assert_eq!((r.settings.max_tokens, r.settings.logprobs), (Some(16), Some(3)));
        for (p, want) in [
            (r#"[1,2]"#, Prompt::Tokens(vec![1, 2])),
            (r#"["Hi"]"#, Prompt::Text("Hi".into())),
            (r#"[[3]]"#, Prompt::Tokens(vec![3])),
        ] {
            assert_eq!(parse(&format!(r#"{{"model":"m","prompt":{p}}}"#)).unwrap().prompt, want);
        }
    }

    #[test]
    fn bad_prompts_and_fields_are_named() {
        for (body, want) in [
            (r#"{"model":"m"}"#, "prompt"),
            (r#"{"model":"m","prompt":["a","b"]}"#, "prompt"),
            (r#"{"model":"m","prompt":[-1]}"#, "prompt"),
            (r#"{"model":"m","prompt":{"x":1}}"#, "prompt"),
            (r#"{"model":"m","prompt":"a","logprobs":21}"#, "logprobs"),
            (r#"{"model":"m","prompt":"a","logprobs":true}"#, "logprobs"),
            (r#"{"model":"m","prompt":"a","echo":true}"#, "echo"),
            (r#"{"model":"m","prompt":"a","best_of":3}"#, "best_of"),
            (r#"{"model":"m","prompt":"a","max_tokens":0}"#, "max_tokens"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(e.body.error.param.as_deref(), Some(want), "{body}: {e}");
        }
    }
}
