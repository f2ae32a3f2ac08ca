//! Text in and out of the model: chat messages rendered with the model's template and encoded,
//! raw prompts encoded, and each choice's tokens turned back into text (whole UTF-8 characters,
//! cut before the first stop string).

use llmopt_api::openai::{ApiError, Message, Prompt};
use llmopt_tokenizer::{ChatMessage, ChatTemplate, Tokenizer, Utf8Stream};

use crate::stop::StopMatcher;

/// What the server knows of the model's text: its tokenizer, chat template and end tokens.
#[derive(Debug)]
pub struct ModelText {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stop_tokens: Vec<u32>,
}

impl ModelText {
    /// The tokenizer and chat template of a model; generation ends at its end-of-generation
    /// tokens (EOS, end of turn).
    pub fn new(tokenizer: Tokenizer, template: ChatTemplate) -> Self {
        let stop_tokens = tokenizer.eog_ids().to_vec();
        Self { tokenizer, template, stop_tokens }
    }

    /// The tokens that end a choice.
    pub(crate) fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    /// A conversation as the model's prompt: the template with the assistant's turn opened,
    /// encoded with special-token text parsed (as llama.cpp does).
    pub(crate) fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, ApiError> {
        let messages: Vec<ChatMessage> =
            messages.iter().map(|m| ChatMessage::new(&m.role, &m.content)).collect();
        let text = self.template.render(&messages, true).map_err(|e| {
            ApiError::invalid(
                Some("messages"),
                format!("The chat template refused the messages: {e}"),
            )
        })?;
        Ok(self.tokenizer.encode(&text, true, true))
    }

    /// A text completion's prompt: text encoded as `llmopt generate` does, ids as they are.
    pub(crate) fn completion_prompt(&self, prompt: &Prompt) -> Vec<u32> {
        match prompt {
            Prompt::Text(t) => self.tokenizer.encode(t, true, true),
            Prompt::Tokens(ids) => ids.clone(),
        }
    }

    /// The bytes of a token.
    pub(crate) fn piece(&self, id: u32) -> Vec<u8> {
        self.tokenizer.token_to_piece(id)
    }
}

/// One choice's text as its tokens arrive.
#[derive(Debug, Default)]
pub(crate) struct ChoiceText {
    utf8: Utf8Stream,
    stop: StopMatcher,
    /// Bytes of every token so far (the next token's `text_offset`).
    bytes: usize,
}

impl ChoiceText {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self { utf8: Utf8Stream::default(), stop: StopMatcher::new(stops), bytes: 0 }
    }

    /// Byte offset of the next token's text in the choice's text.
    pub(crate) fn offset(&self) -> usize {
        self.bytes
    }

    /// Adds a token's bytes: the text now ready, and whether a stop string ended the choice.
    pub(crate) fn push(&mut self, piece: &[u8]) -> (String, bool) {
        self.bytes += piece.len();
        let text = self.utf8.push_str(piece);
        self.stop.push(&text)
    }

    /// The text held back, once the choice has ended by itself.
    pub(crate) fn finish(&mut self) -> String {
        let rest = self.utf8.finish_str();
        let (mut text, stopped) = self.stop.push(&rest);
        if !stopped {
            text.push_str(&self.stop.finish());
        }
        text
    }
}
