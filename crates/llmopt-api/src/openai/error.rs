//! Every way a request fails, as an HTTP status and OpenAI's error body
//! `{"error": {"message", "type", "param", "code"}}`: one mapping, used by every endpoint.

use serde::{Deserialize, Serialize};

use crate::{RequestError, SamplerError};

/// OpenAI's error body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, and which request field (`param`) caused it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    /// `invalid_request_error` for the client's mistakes, `server_error` for ours.
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// A failed request: its HTTP status and body.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status}: {}", body.error.message)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

const INVALID: &str = "invalid_request_error";
const SERVER: &str = "server_error";

impl ApiError {
    fn new(status: u16, kind: &str, message: String, param: Option<&str>) -> Self {
        let detail = ErrorDetail {
            message,
            kind: kind.into(),
            param: param.map(str::to_string),
            code: None,
        };
        Self { status, body: ErrorBody { error: detail } }
    }

    /// 400: `param` (a field name, or a path such as `messages[0].content`) is wrong.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(400, INVALID, message.into(), param)
    }

    /// The same error with OpenAI's machine-readable `code`.
    pub fn with_code(mut self, code: &str) -> Self {
        self.body.error.code = Some(code.into());
        self
    }

    /// 404: the request names a model this server does not serve.
    pub fn model_not_found(model: &str, served: &str) -> Self {
        let msg = format!("The model `{model}` does not exist; this server serves `{served}`.");
        Self::new(404, INVALID, msg, Some("model")).with_code("model_not_found")
    }

    /// 401: no API key, or not one of the server's.
    pub fn unauthorized(given: bool) -> Self {
        let msg = if given {
            "Incorrect API key provided. Pass one of the server's --api-key values as \
             `Authorization: Bearer KEY`."
        } else {
            "You didn't provide an API key. Pass it as `Authorization: Bearer KEY`."
        };
        Self::new(401, INVALID, msg.into(), None).with_code("invalid_api_key")
    }

    /// 413: the body is larger than the server accepts.
    pub fn too_large(limit: usize) -> Self {
        let msg = format!("The request body is larger than the server's limit of {limit} bytes.");
        Self::new(413, INVALID, msg, None).with_code("request_too_large")
    }

    /// 404 for a path the server does not have.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(404, INVALID, format!("Unknown request URL: {method} {path}."), None)
    }

    /// 405 for a known path with the wrong method.
    pub fn wrong_method(method: &str, path: &str) -> Self {
        Self::new(405, INVALID, format!("{method} is not allowed on {path}."), None)
    }

    /// 500: the engine failed on this request (the server goes on serving).
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(500, SERVER, message.into(), None)
    }

    /// 503: the server is shutting down and takes no new requests.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, SERVER, message.into(), None)
    }

    /// An engine's refusal, with the offending field named. `prompt_param` is the field the
    /// prompt came from (`messages` or `prompt`), `max_tokens_param` the one that set the length.
    pub fn from_request(e: &RequestError, prompt_param: &str, max_tokens_param: &str) -> Self {
        let msg = e.to_string();
        match e {
            RequestError::EmptyPrompt | RequestError::BadToken { .. } => {
                Self::invalid(Some(prompt_param), msg)
            }
            RequestError::NoTokens => Self::invalid(Some(max_tokens_param), msg),
            RequestError::NoChoices => Self::invalid(Some("n"), msg),
            RequestError::TooLong { prompt, context, .. } => {
                let param = if prompt >= context { prompt_param } else { max_tokens_param };
                Self::invalid(Some(param), msg).with_code("context_length_exceeded")
            }
            RequestError::TooBigForCache { n, .. } => {
                Self::invalid(Some(if *n > 1 { "n" } else { max_tokens_param }), msg)
            }
            RequestError::TooManyLogprobs(_) => Self::invalid(Some("logprobs"), msg),
            RequestError::Sampling(SamplerError::Invalid { name, .. }) => {
                let param = match *name {
                    "repeat-penalty" => "repetition_penalty".to_string(),
                    n => n.replace('-', "_"),
                };
                Self::invalid(Some(&param), msg)
            }
            RequestError::Stopped => Self::unavailable("The server is shutting down."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_refusals_name_the_field() {
        let too_long = RequestError::TooLong { prompt: 9000, max_tokens: 5, context: 8192 };
        let e = ApiError::from_request(&too_long, "messages", "max_tokens");
        assert_eq!((e.status, e.body.error.param.as_deref()), (400, Some("messages")));
        assert_eq!(e.body.error.code.as_deref(), Some("context_length_exceeded"));
        let over = RequestError::TooLong { prompt: 10, max_tokens: 9000, context: 8192 };
        let e = ApiError::from_request(&over, "prompt", "max_completion_tokens");
        assert_eq!(e.body.error.param.as_deref(), Some("max_completion_tokens"));
        let bad = SamplerError::Invalid { name: "top-p", value: "2".into(), expected: "" };
        let e = ApiError::from_request(&RequestError::Sampling(bad), "prompt", "max_tokens");
        assert_eq!(e.body.error.param.as_deref(), Some("top_p"));
        let e = ApiError::from_request(&RequestError::Stopped, "prompt", "max_tokens");
        assert_eq!((e.status, e.body.error.kind.as_str()), (503, "server_error"));
    }

    #[test]
    fn the_body_has_openai_keys() {
        let v = serde_json::to_value(ApiError::model_not_found("gpt-4", "smol").body).unwrap();
        let e = &v["error"];
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["param"], "model");
        assert_eq!(e["code"], "model_not_found");
        assert!(e["message"].as_str().unwrap().contains("gpt-4"));
        let v = serde_json::to_value(ApiError::server("boom").body).unwrap();
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
    }
}
