//! One request after validation: submitted to the engine with a channel as its sink, then the
//! engine's events turned into text updates per choice (stop strings applied, timings recorded).
//! Dropping a [`Generation`] early (the client went away) cancels the engine request.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use llmopt_api::openai::{ApiError, Settings, Usage};
use llmopt_api::{Event, EventSink, FinishReason, Request, RequestId, RequestParams, TokenLogprob};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::app::AppState;
use crate::text::ChoiceText;

/// The engine's sink: a channel to the request's task. Once the task is gone (a client that
/// disconnected), `send` fails and the engine cancels the request and frees its blocks.
struct ChannelSink(UnboundedSender<Event>);

impl EventSink for ChannelSink {
    fn send(&self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }
}

/// A generated token, with its log-probabilities when asked for and where its text starts.
#[derive(Clone, Debug)]
pub(crate) struct Sampled {
    pub token: u32,
    pub logprob: Option<TokenLogprob>,
    /// Byte offset of the token's text in its choice's text.
    pub offset: usize,
}

/// What a choice gained.
#[derive(Debug)]
pub(crate) enum Update {
    /// Text ready to show (possibly empty: held back for a stop string) and the token it came with.
    Delta { choice: usize, text: String, tokens: Vec<Sampled> },
    /// The choice ended (`stop`, `length`, ...).
    Finished { choice: usize, reason: &'static str },
}

#[derive(Debug)]
struct Choice {
    text: ChoiceText,
    tokens: usize,
    done: Option<&'static str>,
    last_token: Option<Instant>,
}

/// A request in the engine, read as updates.
pub(crate) struct Generation {
    app: Arc<AppState>,
    id: RequestId,
    rx: UnboundedReceiver<Event>,
    choices: Vec<Choice>,
    /// Choices not finished for the client.
    open: usize,
    /// Choices the engine has not finished (it may go on after a stop string).
    engine_open: usize,
    prompt_tokens: usize,
    cached_tokens: usize,
    started: Instant,
    first_token: bool,
    pending: VecDeque<Update>,
    span: tracing::Span,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation").field("id", &self.id).field("open", &self.open).finish()
    }
}

/// A request's result, for a response that is not streamed.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub choices: Vec<CollectedChoice>,
    pub usage: Usage,
}

#[derive(Debug, Default)]
pub(crate) struct CollectedChoice {
    pub text: String,
    pub tokens: Vec<Sampled>,
    pub finish_reason: &'static str,
}

impl Generation {
    /// Submits `prompt` with `settings` and waits until the engine admits it. Without
    /// `max_tokens`, a choice may fill the context (and its share of the KV cache).
    /// `prompt_param` names the request field the prompt came from, for errors.
    pub(crate) async fn start(
        app: Arc<AppState>,
        prompt: Vec<u32>,
        settings: &Settings,
        prompt_param: &'static str,
        started: Instant,
    ) -> Result<Self, ApiError> {
        let limits = app.engine.limits();
        let p = prompt.len();
        let n = settings.n;
        let max_tokens = settings.max_tokens.unwrap_or_else(|| {
            let room = limits.context.saturating_sub(p);
            room.min(limits.kv_capacity.saturating_sub(p) / n).max(1)
        });
        let request = Request {
            prompt,
            params: RequestParams {
                max_tokens,
                sampling: settings.sampling.clone(),
                n,
                stop_tokens: app.text.stop_tokens().to_vec(),
                logprobs: settings.logprobs,
            },
        };
        let (tx, rx) = unbounded_channel();
        let id = app
            .engine
            .submit(request, Arc::new(ChannelSink(tx)))
            .map_err(|e| ApiError::from_request(&e, prompt_param, settings.max_tokens_param))?;
        let choices = (0..n)
            .map(|_| Choice {
                text: ChoiceText::new(settings.stop.clone()),
                tokens: 0,
                done: None,
                last_token: None,
            })
            .collect();
        let mut g = Self {
            app,
            id,
            rx,
            choices,
            open: n,
            engine_open: n,
            prompt_tokens: p,
            cached_tokens: 0,
            started,
            first_token: false,
            pending: VecDeque::new(),
            span: tracing::Span::current(),
        };
        match g.rx.recv().await {
            Some(Event::Started { prompt_tokens, cached_tokens }) => {
                g.prompt_tokens = prompt_tokens;
                g.cached_tokens = cached_tokens;
                Ok(g)
            }
            Some(Event::Error { message }) => Err(g.failed(message)),
            other => Err(g.failed(format!("the engine answered {other:?} before admitting"))),
        }
    }

    /// The next update; `None` once every choice has finished.
    pub(crate) async fn next(&mut self) -> Option<Result<Update, ApiError>> {
        loop {
            if let Some(u) = self.pending.pop_front() {
                return Some(Ok(u));
            }
            if self.open == 0 {
                return None;
            }
            match self.rx.recv().await {
                Some(Event::Token { choice, token, logprob }) => self.token(choice, token, logprob),
                Some(Event::Finished { choice, reason, .. }) => {
                    self.engine_open = self.engine_open.saturating_sub(1);
                    self.end_of(choice, reason);
                }
                Some(Event::Started { .. }) => {}
                Some(Event::Error { message }) => return Some(Err(self.failed(message))),
                None => {
                    let msg = "the engine stopped before the request finished";
                    return Some(Err(self.failed(msg.into())));
                }
            }
        }
    }

    /// Token counts so far.
    pub(crate) fn usage(&self) -> Usage {
        let completion = self.choices.iter().map(|c| c.tokens).sum();
        Usage::new(self.prompt_tokens, completion, self.cached_tokens)
    }

    /// Every update until the end, gathered per choice.
    pub(crate) async fn collect(mut self) -> Result<Collected, ApiError> {
        let mut out: Vec<CollectedChoice> =
            (0..self.choices.len()).map(|_| CollectedChoice::default()).collect();
        while let Some(u) = self.next().await {
            match u? {
                Update::Delta { choice, text, tokens } => {
                    out[choice].text.push_str(&text);
                    out[choice].tokens.extend(tokens);
                }
                Update::Finished { choice, reason } => out[choice].finish_reason = reason,
            }
        }
        Ok(Collected { choices: out, usage: self.usage() })
    }

    fn token(&mut self, i: usize, token: u32, logprob: Option<TokenLogprob>) {
        let now = Instant::now();
        let Some(c) = self.choices.get_mut(i).filter(|c| c.done.is_none()) else { return };
        let m = &self.app.metrics;
        if !self.first_token {
            self.first_token = true;
            m.time_to_first_token(now.duration_since(self.started).as_secs_f64());
        }
        if let Some(last) = c.last_token.replace(now) {
            m.inter_token(now.duration_since(last).as_secs_f64());
        }
        c.tokens += 1;
        let offset = c.text.offset();
        let (text, stopped) = c.text.push(&self.app.text.piece(token));
        let tokens = vec![Sampled { token, logprob, offset }];
        self.pending.push_back(Update::Delta { choice: i, text, tokens });
        if stopped {
            self.finish(i, "stop");
        }
    }

    /// The engine ended choice `i`: release its held-back text, unless a stop string ended it.
    fn end_of(&mut self, i: usize, reason: FinishReason) {
        let Some(c) = self.choices.get_mut(i).filter(|c| c.done.is_none()) else { return };
        let text = c.text.finish();
        if !text.is_empty() {
            self.pending.push_back(Update::Delta { choice: i, text, tokens: Vec::new() });
        }
        self.finish(i, reason.as_str());
    }

    fn finish(&mut self, i: usize, reason: &'static str) {
        self.choices[i].done = Some(reason);
        self.open -= 1;
        self.pending.push_back(Update::Finished { choice: i, reason });
        if self.open == 0 {
            // Stop strings ended every choice: the engine need not go on.
            self.cancel();
            self.app.metrics.request_duration(self.started.elapsed().as_secs_f64());
            let reasons: Vec<&str> = self.choices.iter().filter_map(|c| c.done).collect();
            let reasons = reasons.join(",");
            let u = self.usage();
            self.span.in_scope(|| {
                tracing::info!(
                    engine_id = self.id,
                    prompt_tokens = u.prompt_tokens,
                    cached_tokens = u.prompt_tokens_details.cached_tokens,
                    completion_tokens = u.completion_tokens,
                    seconds = self.started.elapsed().as_secs_f64(),
                    finish_reasons = %reasons,
                    "generation finished"
                );
            });
        }
    }

    /// The engine failed this request: it holds nothing more of it.
    fn failed(&mut self, message: String) -> ApiError {
        self.open = 0;
        self.engine_open = 0;
        self.span.in_scope(|| tracing::error!(engine_id = self.id, %message, "engine error"));
        ApiError::server(message)
    }

    fn cancel(&mut self) {
        if self.engine_open > 0 {
            self.engine_open = 0;
            self.app.engine.cancel(self.id);
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if self.open > 0 {
            self.span.in_scope(|| {
                tracing::info!(engine_id = self.id, "client went away: request cancelled")
            });
        }
        self.cancel();
    }
}
