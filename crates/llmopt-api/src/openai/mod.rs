//! OpenAI's HTTP API as data: request bodies parsed and validated at the edge (every error names
//! its field as `param`), and the response, stream-chunk, model-list and error shapes.

mod chat;
mod completion;
mod error;
mod logprobs;
mod params;

use serde::Serialize;

pub use chat::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk,
    ChatRequest, Delta, Message,
};
pub use completion::{Completion, CompletionChoice, CompletionRequest, Prompt, DEFAULT_MAX_TOKENS};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use logprobs::{ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, TopLogprob};
pub use params::{Settings, MAX_N, MAX_STOP};

/// Token counts of a request.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Generated tokens over all choices.
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

/// Of the prompt: how many tokens came from the prefix cache.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// `GET /v1/models`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

/// One served model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// The context length in tokens (prompt plus completion).
    pub max_model_len: usize,
}

impl ModelList {
    /// The list of one model.
    pub fn one(id: &str, created: u64, context: usize) -> Self {
        let card = ModelCard {
            id: id.into(),
            object: "model",
            created,
            owned_by: "llmopt",
            max_model_len: context,
        };
        Self { object: "list", data: vec![card] }
    }
}
