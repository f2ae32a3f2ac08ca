//! `POST /v1/chat/completions`: messages through the model's chat template, then one response or
//! a stream of `chat.completion.chunk` events.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmopt_api::openai::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk,
    ChatLogprobs, ChatRequest, ChatTokenLogprob, Delta, Usage,
};
use tower_http::request_id::RequestId;

use crate::app::{unix_now, AppState, Call, HttpError};
use crate::generation::{Generation, Sampled};
use crate::sse::{self, json, StreamShape};

pub(crate) async fn handler(
    State(app): State<Arc<AppState>>,
    rid: Option<Extension<RequestId>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let (call, body) = Call::body(&app, rid, body)?;
    let req = ChatRequest::from_json(&body, AppState::fresh_seed)?;
    app.check_model(&req.settings.model)?;
    let prompt = app.text.chat_prompt(&req.messages)?;
    let s = &req.settings;
    let g = Generation::start(app.clone(), prompt, s, "messages", call.started).await?;
    let shape = ChatShape {
        id: format!("chatcmpl-{}", call.request_id),
        created: unix_now(),
        model: s.model.clone(),
        logprobs: s.logprobs.is_some(),
        app,
    };
    if s.stream {
        return Ok(sse::respond(g, shape, s.n, s.include_usage));
    }
    let done = g.collect().await?;
    let choices = done
        .choices
        .into_iter()
        .enumerate()
        .map(|(index, c)| ChatChoice {
            index,
            message: AssistantMessage { role: "assistant", content: c.text },
            logprobs: shape.logprobs(&c.tokens),
            finish_reason: c.finish_reason,
        })
        .collect();
    let response = ChatCompletion {
        id: shape.id,
        object: ChatCompletion::OBJECT,
        created: shape.created,
        model: shape.model,
        choices,
        usage: done.usage,
    };
    Ok(Json(response).into_response())
}

struct ChatShape {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    app: Arc<AppState>,
}

impl ChatShape {
    fn logprobs(&self, tokens: &[Sampled]) -> Option<ChatLogprobs> {
        let piece = |id| self.app.text.piece(id);
        self.logprobs.then(|| ChatLogprobs {
            content: tokens
                .iter()
                .filter_map(|t| Some(ChatTokenLogprob::new(t.token, t.logprob.as_ref()?, &piece)))
                .collect(),
        })
    }

    fn chunk(&self, choices: Vec<ChatChunkChoice>, usage: Option<Usage>) -> String {
        json(&ChatCompletionChunk {
            id: self.id.clone(),
            object: ChatCompletionChunk::OBJECT,
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }

    fn one(
        &self,
        index: usize,
        delta: Delta,
        tokens: &[Sampled],
        finish: Option<&'static str>,
    ) -> String {
        // Chunks without tokens (role, finish) carry no logprobs.
        let logprobs = if tokens.is_empty() { None } else { self.logprobs(tokens) };
        let choice = ChatChunkChoice { index, delta, logprobs, finish_reason: finish };
        self.chunk(vec![choice], None)
    }
}

impl StreamShape for ChatShape {
    fn opening(&self, n: usize) -> Vec<String> {
        let role = || Delta { role: Some("assistant"), content: Some(String::new()) };
        (0..n).map(|i| self.one(i, role(), &[], None)).collect()
    }

    fn logprobs(&self) -> bool {
        self.logprobs
    }

    fn delta(&self, choice: usize, text: String, tokens: &[Sampled]) -> String {
        self.one(choice, Delta { role: None, content: Some(text) }, tokens, None)
    }

    fn finish(&self, choice: usize, reason: &'static str) -> String {
        self.one(choice, Delta::default(), &[], Some(reason))
    }

    fn usage(&self, usage: Usage) -> String {
        self.chunk(Vec::new(), Some(usage))
    }
}
