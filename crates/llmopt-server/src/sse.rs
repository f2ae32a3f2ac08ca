//! Streamed responses: a generation's updates as server-sent events in the endpoint's chunk
//! shape, then the usage chunk when asked for, then `data: [DONE]`. An engine error mid-stream
//! becomes an `{"error": ...}` event before `[DONE]`. A client that goes away drops the stream,
//! and with it the generation, which cancels the engine request.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use llmopt_api::openai::Usage;
use serde::Serialize;

use crate::generation::{Generation, Sampled, Update};

/// An endpoint's chunk shapes (JSON text of each event's `data`).
pub(crate) trait StreamShape: Send + 'static {
    /// Chunks before any token (chat: each choice's role).
    fn opening(&self, n: usize) -> Vec<String>;
    /// Whether chunks carry log-probabilities.
    fn logprobs(&self) -> bool;
    /// A choice's new text and tokens.
    fn delta(&self, choice: usize, text: String, tokens: &[Sampled]) -> String;
    /// A choice's end.
    fn finish(&self, choice: usize, reason: &'static str) -> String;
    /// The last chunk when the client asked for usage.
    fn usage(&self, usage: Usage) -> String;
}

/// JSON text of a response part (the shapes here always serialize).
pub(crate) fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        let error =
            serde_json::json!({"error": {"message": e.to_string(), "type": "server_error"}});
        error.to_string()
    })
}

struct StreamState<S> {
    generation: Option<Generation>,
    shape: S,
    queue: VecDeque<String>,
    include_usage: bool,
}

/// The SSE response of an admitted generation with `n` choices.
pub(crate) fn respond<S: StreamShape>(
    generation: Generation,
    shape: S,
    n: usize,
    include_usage: bool,
) -> Response {
    let queue = shape.opening(n).into();
    let state = StreamState { generation: Some(generation), shape, queue, include_usage };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(data) = st.queue.pop_front() {
                return Some((Ok::<_, Infallible>(Event::default().data(data)), st));
            }
            let g = st.generation.as_mut()?;
            match g.next().await {
                Some(Ok(Update::Delta { choice, text, tokens })) => {
                    // Text held back for a stop string sends nothing, unless logprobs are due.
                    if !text.is_empty() || (st.shape.logprobs() && !tokens.is_empty()) {
                        st.queue.push_back(st.shape.delta(choice, text, &tokens));
                    }
                }
                Some(Ok(Update::Finished { choice, reason })) => {
                    st.queue.push_back(st.shape.finish(choice, reason));
                }
                Some(Err(e)) => {
                    st.queue.push_back(json(&e.body));
                    st.queue.push_back("[DONE]".into());
                    st.generation = None;
                }
                None => {
                    if st.include_usage {
                        st.queue.push_back(st.shape.usage(g.usage()));
                    }
                    st.queue.push_back("[DONE]".into());
                    st.generation = None;
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
