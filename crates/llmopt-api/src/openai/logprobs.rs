//! Log-probabilities in OpenAI's two shapes: chat's list of `{token, logprob, bytes,
//! top_logprobs}` and text completion's parallel arrays. Both are built from the engine's
//! [`TokenLogprob`] and each token's bytes.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::TokenLogprob;

/// JSON has no infinity: OpenAI reports an impossible token as -9999.
fn finite(lp: f32) -> f32 {
    if lp.is_finite() {
        lp
    } else {
        -9999.0
    }
}

/// One token of a chat completion's `logprobs.content`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative of a chat token.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// A chat choice's `logprobs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

impl ChatTokenLogprob {
    /// The entry of `token` (whose bytes `piece` gives) with its alternatives.
    pub fn new(token: u32, lp: &TokenLogprob, piece: &impl Fn(u32) -> Vec<u8>) -> Self {
        let entry = |id: u32, logprob: f32| {
            let bytes = piece(id);
            (String::from_utf8_lossy(&bytes).into_owned(), finite(logprob), bytes)
        };
        let (token, logprob, bytes) = entry(token, lp.logprob);
        let top_logprobs = lp
            .top
            .iter()
            .map(|&(id, l)| {
                let (token, logprob, bytes) = entry(id, l);
                TopLogprob { token, logprob, bytes }
            })
            .collect();
        Self { token, logprob, bytes, top_logprobs }
    }
}

/// A text completion choice's `logprobs`: per token its text, log-probability, alternatives
/// (text to log-probability) and the offset of its text in the choice's text.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<Map<String, Value>>,
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Appends `token`, whose text starts at byte `offset` of the choice's text.
    pub fn push(
        &mut self,
        token: u32,
        lp: &TokenLogprob,
        offset: usize,
        piece: &impl Fn(u32) -> Vec<u8>,
    ) {
        let text = |id| String::from_utf8_lossy(&piece(id)).into_owned();
        self.tokens.push(text(token));
        self.token_logprobs.push(finite(lp.logprob));
        // Through the f32's shortest decimal form, so the map shows the same digits as
        // `token_logprobs` (a widened f32 would print as -0.2534521520137787).
        let number = |l: f32| Value::from(finite(l).to_string().parse::<f64>().unwrap_or(-9999.0));
        let top = lp.top.iter().map(|&(id, l)| (text(id), number(l))).collect();
        self.top_logprobs.push(top);
        self.text_offset.push(offset);
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_carry_the_alternatives() {
        let piece = |id: u32| if id == 1 { b"Hi".to_vec() } else { vec![b' ', 0xE2] };
        let lp = TokenLogprob { logprob: -0.5, top: vec![(1, -0.5), (2, f32::NEG_INFINITY)] };
        let c = ChatTokenLogprob::new(1, &lp, &piece);
        assert_eq!((c.token.as_str(), c.bytes.as_slice()), ("Hi", b"Hi".as_slice()));
        assert_eq!(c.top_logprobs[1].logprob, -9999.0);
        assert_eq!(c.top_logprobs[1].token, " \u{FFFD}");
        let mut t = CompletionLogprobs::default();
        t.push(1, &lp, 0, &piece);
        t.push(2, &lp, 2, &piece);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["text_offset"], serde_json::json!([0, 2]));
        assert_eq!(v["top_logprobs"][0]["Hi"], -0.5);
        let lp = TokenLogprob { logprob: -0.253_452_15, top: vec![(1, -0.253_452_15)] };
        t.push(1, &lp, 4, &piece);
        let v = serde_json::to_string(&t).unwrap();
        assert!(v.contains(r#"{"Hi":-0.25345215}"#), "{v}");
    }
}
