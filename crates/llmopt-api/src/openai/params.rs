//! The fields chat and text completions share (model, length, sampling, `n`, `stop`, streaming),
//! read from the body with the offending field named on any error, and checked against OpenAI's
//! ranges once, here, into [`Settings`] that the server trusts.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use crate::{PenaltyScope, SamplerConfig};

/// Most `stop` strings a request may give.
pub const MAX_STOP: usize = 16;
/// Most choices (`n`) per request, as OpenAI allows.
pub const MAX_N: usize = 128;

/// A request's generation settings, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The model the client asked for (the server checks it is the one it serves).
    pub model: String,
    /// Most tokens per choice; `None`: as many as the context and the cache allow.
    pub max_tokens: Option<usize>,
    /// The field that gave `max_tokens` (`max_tokens` or `max_completion_tokens`), for errors.
    pub max_tokens_param: &'static str,
    /// Sampling (OpenAI's defaults: temperature 1, no top-k/top-p/min-p filtering).
    pub sampling: SamplerConfig,
    /// Choices per request.
    pub n: usize,
    /// Texts that end a choice; the text returned stops before them.
    pub stop: Vec<String>,
    /// Per token: its log-probability and this many alternatives (`None`: none).
    pub logprobs: Option<usize>,
    pub stream: bool,
    /// A last streamed chunk with the usage (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// The shared fields as the body has them (absent and `null` are the same).
#[derive(Debug, Deserialize)]
pub(crate) struct Common {
    model: Option<String>,
    max_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    seed: Option<i64>,
    stop: Option<Stop>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    repetition_penalty: Option<f64>,
    n: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

/// Parses a request body into a JSON object, or says why it is not one.
pub(crate) fn object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(None, format!("The request body is not valid JSON: {e}."))
            .with_code("invalid_json")
    })?;
    if !v.is_object() {
        return Err(ApiError::invalid(None, "The request body must be a JSON object."));
    }
    Ok(v)
}

/// Reads typed fields out of `body`; a type error names the field's path as `param`.
pub(crate) fn fields<T: DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::invalid(None, format!("Invalid request: {inner}."))
        } else {
            ApiError::invalid(Some(&path), format!("Invalid type for '{path}': {inner}."))
        }
    })
}

/// A number's allowed interval: `[lo, hi]`, or `(lo, hi]` when `open_low`.
#[derive(Clone, Copy)]
struct Bounds {
    lo: f64,
    hi: f64,
    open_low: bool,
}

const fn closed(lo: f64, hi: f64) -> Bounds {
    Bounds { lo, hi, open_low: false }
}

const fn open_low(lo: f64, hi: f64) -> Bounds {
    Bounds { lo, hi, open_low: true }
}

/// `value` (or `default`) within `b`, or an error naming `param` and the interval.
fn ranged(param: &str, value: Option<f64>, default: f64, b: Bounds) -> Result<f32, ApiError> {
    let v = value.unwrap_or(default);
    let above_lo = if b.open_low { v > b.lo } else { v >= b.lo };
    if !(above_lo && v <= b.hi) {
        let open = if b.open_low { '(' } else { '[' };
        let msg = format!(
            "Invalid '{param}': {v} is out of range; it must be in {open}{}, {}].",
            b.lo, b.hi
        );
        return Err(ApiError::invalid(Some(param), msg).with_code("invalid_value"));
    }
    Ok(v as f32)
}

/// A count of at least `min` and at most `max`.
fn count(param: &str, value: i64, min: i64, max: usize) -> Result<usize, ApiError> {
    if value < min || value as u64 > max as u64 {
        let msg = format!("Invalid '{param}': {value}; it must be in [{min}, {max}].");
        return Err(ApiError::invalid(Some(param), msg).with_code("invalid_value"));
    }
    Ok(value as usize)
}

impl Common {
    /// Checks every range. `max_tokens` may come from another field (chat's
    /// `max_completion_tokens`), `logprobs` is the endpoint's own reading of its fields, and
    /// `seed` gives a seed when the body has none.
    pub(crate) fn validate(
        self,
        max_completion_tokens: Option<i64>,
        logprobs: Option<usize>,
        seed: impl FnOnce() -> u64,
    ) -> Result<Settings, ApiError> {
        let model = match self.model {
            Some(m) if !m.is_empty() => m,
            _ => {
                return Err(ApiError::invalid(Some("model"), "You must provide a model parameter."))
            }
        };
        let (max_tokens, max_tokens_param) = match (max_completion_tokens, self.max_tokens) {
            (Some(m), _) => (Some(m), "max_completion_tokens"),
            (None, m) => (m, "max_tokens"),
        };
        let max_tokens = match max_tokens {
            Some(m) if m < 1 => {
                let msg = format!("Invalid '{max_tokens_param}': {m}; it must be at least 1.");
                return Err(
                    ApiError::invalid(Some(max_tokens_param), msg).with_code("invalid_value")
                );
            }
            m => m.map(|m| m as usize),
        };
        let top_k = match self.top_k.unwrap_or(0) {
            -1 => 0,
            k => count("top_k", k, 0, usize::MAX)?,
        };
        let penalty = closed(-2.0, 2.0);
        let sampling = SamplerConfig {
            temperature: ranged("temperature", self.temperature, 1.0, closed(0.0, 2.0))?,
            top_k,
            top_p: ranged("top_p", self.top_p, 1.0, open_low(0.0, 1.0))?,
            min_p: ranged("min_p", self.min_p, 0.0, closed(0.0, 1.0))?,
            repeat_penalty: ranged(
                "repetition_penalty",
                self.repetition_penalty,
                1.0,
                open_low(0.0, 10.0),
            )?,
            repeat_last_n: 64,
            frequency_penalty: ranged("frequency_penalty", self.frequency_penalty, 0.0, penalty)?,
            presence_penalty: ranged("presence_penalty", self.presence_penalty, 0.0, penalty)?,
            penalty_scope: PenaltyScope::Generated,
            seed: self.seed.map_or_else(seed, |s| s as u64),
        };
        let n = count("n", self.n.unwrap_or(1), 1, MAX_N)?;
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        if stop.len() > MAX_STOP {
            let msg = format!("Invalid 'stop': {} strings; at most {MAX_STOP}.", stop.len());
            return Err(ApiError::invalid(Some("stop"), msg));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid(Some("stop"), "Invalid 'stop': a stop string is empty."));
        }
        let stream = self.stream.unwrap_or(false);
        if self.stream_options.is_some() && !stream {
            let msg = "The 'stream_options' parameter is only allowed when 'stream' is enabled.";
            return Err(ApiError::invalid(Some("stream_options"), msg));
        }
        let include_usage = self.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
        Ok(Settings {
            model,
            max_tokens,
            max_tokens_param,
            sampling,
            n,
            stop,
            logprobs,
            stream,
            include_usage,
        })
    }
}

/// A request field this server cannot honour, refused rather than ignored.
pub(crate) fn unsupported(param: &str, what: &str) -> ApiError {
    ApiError::invalid(Some(param), format!("'{param}' is not supported: {what}."))
        .with_code("unsupported_parameter")
}

/// `logit_bias` is accepted only empty.
pub(crate) fn check_logit_bias(v: &Option<Value>) -> Result<(), ApiError> {
    match v {
        Some(Value::Object(m)) if !m.is_empty() => {
            Err(unsupported("logit_bias", "this server does not bias logits"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(body: &str) -> Result<Settings, ApiError> {
        let v = object(body.as_bytes())?;
        fields::<Common>(&v)?.validate(None, None, || 42)
    }

    fn param(r: Result<Settings, ApiError>) -> (u16, Option<String>) {
        let e = r.unwrap_err();
        (e.status, e.body.error.param)
    }

    #[test]
    fn defaults_are_openais() {
        let s = settings(r#"{"model":"m"}"#).unwrap();
        assert_eq!(s.sampling.temperature, 1.0);
        assert_eq!((s.sampling.top_k, s.sampling.top_p, s.sampling.min_p), (0, 1.0, 0.0));
        assert_eq!((s.n, s.max_tokens, s.stream, s.sampling.seed), (1, None, false, 42));
        assert_eq!(s.sampling.penalty_scope, PenaltyScope::Generated, "OpenAI's penalties");
        let s = settings(r#"{"model":"m","stop":"\n","seed":7,"top_k":-1,"max_tokens":null}"#);
        let s = s.unwrap();
        assert_eq!((s.stop, s.sampling.seed, s.sampling.top_k), (vec!["\n".to_string()], 7, 0));
        let s = settings(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#);
        assert!(s.unwrap().include_usage);
    }

    #[test]
    fn every_error_names_its_field() {
        let some = |p: &str| (400, Some(p.to_string()));
        assert_eq!(param(settings("{")), (400, None));
        assert_eq!(param(settings("[1]")), (400, None));
        assert_eq!(param(settings("{}")), some("model"));
        assert_eq!(param(settings(r#"{"model":3}"#)), some("model"));
        assert_eq!(param(settings(r#"{"model":"m","temperature":"hot"}"#)), some("temperature"));
        assert_eq!(param(settings(r#"{"model":"m","temperature":2.5}"#)), some("temperature"));
        assert_eq!(param(settings(r#"{"model":"m","top_p":0}"#)), some("top_p"));
        assert_eq!(param(settings(r#"{"model":"m","top_k":-2}"#)), some("top_k"));
        assert_eq!(param(settings(r#"{"model":"m","min_p":1.5}"#)), some("min_p"));
        assert_eq!(
            param(settings(r#"{"model":"m","presence_penalty":3}"#)),
            some("presence_penalty")
        );
        assert_eq!(
            param(settings(r#"{"model":"m","frequency_penalty":-3}"#)),
            some("frequency_penalty")
        );
        assert_eq!(param(settings(r#"{"model":"m","max_tokens":0}"#)), some("max_tokens"));
        assert_eq!(param(settings(r#"{"model":"m","max_tokens":-5}"#)), some("max_tokens"));
        assert_eq!(param(settings(r#"{"model":"m","max_tokens":1.5}"#)), some("max_tokens"));
        assert_eq!(param(settings(r#"{"model":"m","n":0}"#)), some("n"));
        assert_eq!(param(settings(r#"{"model":"m","n":1000}"#)), some("n"));
        assert_eq!(param(settings(r#"{"model":"m","stop":[""]}"#)), some("stop"));
        assert_eq!(param(settings(r#"{"model":"m","stop":5}"#)), some("stop"));
        assert_eq!(param(settings(r#"{"model":"m","stream_options":{}}"#)), some("stream_options"));
        assert_eq!(param(settings(r#"{"model":"m","stream":"yes"}"#)), some("stream"));
    }
}
