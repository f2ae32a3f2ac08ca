//! `POST /v1/completions`: a raw prompt continued, as one response or a stream of
//! `text_completion` chunks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use llmopt_api::openai::{
    Completion, CompletionChoice, CompletionLogprobs, CompletionRequest, Usage,
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
    let req = CompletionRequest::from_json(&body, AppState::fresh_seed)?;
    app.check_model(&req.settings.model)?;
    let prompt = app.text.completion_prompt(&req.prompt);
    let s = &req.settings;
    let g = Generation::start(app.clone(), prompt, s, "prompt", call.started).await?;
    let shape = CompletionShape {
        id: format!("cmpl-{}", call.request_id),
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
        .map(|(index, c)| CompletionChoice {
            index,
            text: c.text,
            logprobs: shape.logprobs(&c.tokens),
            finish_reason: Some(c.finish_reason),
        })
        .collect();
    Ok(Json(shape.completion(choices, Some(done.usage))).into_response())
}

struct CompletionShape {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    app: Arc<AppState>,
}

impl CompletionShape {
    fn logprobs(&self, tokens: &[Sampled]) -> Option<CompletionLogprobs> {
        let piece = |id| self.app.text.piece(id);
        self.logprobs.then(|| {
            let mut lp = CompletionLogprobs::default();
            for t in tokens {
                if let Some(l) = &t.logprob {
                    lp.push(t.token, l, t.offset, &piece);
                }
            }
            lp
        })
    }

    fn completion(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Completion {
        Completion {
            id: self.id.clone(),
            object: Completion::OBJECT,
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }

    fn one(
        &self,
        index: usize,
        text: String,
        tokens: &[Sampled],
        finish: Option<&'static str>,
    ) -> String {
        // Chunks without tokens (role, finish) carry no logprobs.
        let logprobs = if tokens.is_empty() { None } else { self.logprobs(tokens) };
        let choice = CompletionChoice { index, text, logprobs, finish_reason: finish };
        json(&self.completion(vec![choice], None))
    }
}

impl StreamShape for CompletionShape {
    fn opening(&self, _n: usize) -> Vec<String> {
        Vec::new()
    }

    fn logprobs(&self) -> bool {
        self.logprobs
    }

    fn delta(&self, choice: usize, text: String, tokens: &[Sampled]) -> String {
        self.one(choice, text, tokens, None)
    }

    fn finish(&self, choice: usize, reason: &'static str) -> String {
        self.one(choice, String::new(), &[], Some(reason))
    }

    fn usage(&self, usage: Usage) -> String {
        json(&self.completion(Vec::new(), Some(usage)))
    }
}
