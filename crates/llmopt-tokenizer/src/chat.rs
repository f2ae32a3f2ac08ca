//! Chat templates: the Jinja template a GGUF carries in `tokenizer.chat_template`, rendered with
//! minijinja the way Hugging Face's `apply_chat_template` renders it.
//!
//! The environment matches transformers': `trim_blocks` and `lstrip_blocks` on, Python string
//! methods (`.strip()`, `.startswith()`...) via minijinja-contrib's pycompat, `raise_exception`,
//! and the `bos_token` / `eos_token` / `add_generation_prompt` variables. Models without a
//! template (Gemma 3 270M base) can use [`ChatTemplate::builtin`].
//!
//! The rendered text is meant for `Tokenizer::encode(text, true, true)`; since that adds BOS
//! itself when the model asks for it, a BOS the template writes at the start is dropped then (as
//! llama.cpp does), so the prompt never starts with two.

use llmopt_formats::gguf::Metadata;
use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

use crate::error::TokenizerError;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// A parsed chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// Drop a leading `bos_token` from the output (the tokenizer adds BOS itself).
    strip_bos: bool,
}

/// ChatML, the fallback llama.cpp uses when a model has no template.
const CHATML: &str = "{%- for message in messages -%}\
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/// Gemma's turn format (as Gemma 3's instruction-tuned template): a system message is folded
/// into the first user turn, `assistant` is called `model`, contents are trimmed.
const GEMMA: &str = "{{- bos_token -}}\
{%- if messages and messages[0].role == 'system' -%}\
{%- set prefix = messages[0].content | trim + '\\n\\n' -%}{%- set rest = messages[1:] -%}\
{%- else -%}{%- set prefix = '' -%}{%- set rest = messages -%}{%- endif -%}\
{%- for message in rest -%}\
{%- if (message.role == 'user') != (loop.index0 % 2 == 0) -%}\
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}\
{%- endif -%}\
{{- '<start_of_turn>' + ('model' if message.role == 'assistant' else message.role) + '\\n' -}}\
{{- (prefix if loop.first else '') + message.content | trim + '<end_of_turn>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}";

fn raise_exception(msg: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

fn token_text(meta: &Metadata, key: &str) -> String {
    let id = meta.get_u64(key);
    let tokens = meta.get_array("tokenizer.ggml.tokens");
    match (id, tokens) {
        (Some(id), Some(t)) => {
            t.get(id as usize).and_then(|v| v.as_str()).unwrap_or("").to_string()
        }
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// The template in `tokenizer.chat_template`, or `None` when the model has none.
    pub fn from_gguf(meta: &Metadata) -> Result<Option<Self>, TokenizerError> {
        const KEY: &str = "tokenizer.chat_template";
        let Some(v) = meta.get(KEY) else { return Ok(None) };
        let source = v.as_str().ok_or_else(|| TokenizerError::InvalidKey {
            key: KEY,
            expected: "string",
            found: v.type_name().to_string(),
        })?;
        Self::with_tokens(source, meta).map(Some)
    }

    /// A built-in template for models whose file has none: Gemma's turn format for the
    /// `gemma*` architectures, ChatML (llama.cpp's default) otherwise.
    pub fn builtin(meta: &Metadata) -> Result<Self, TokenizerError> {
        let arch = meta.get_str("general.architecture").unwrap_or("");
        let source = if arch.starts_with("gemma") { GEMMA } else { CHATML };
        Self::with_tokens(source, meta)
    }

    /// The file's template, else [`ChatTemplate::builtin`].
    pub fn from_gguf_or_builtin(meta: &Metadata) -> Result<Self, TokenizerError> {
        match Self::from_gguf(meta)? {
            Some(t) => Ok(t),
            None => Self::builtin(meta),
        }
    }

    fn with_tokens(source: &str, meta: &Metadata) -> Result<Self, TokenizerError> {
        let add_bos = meta
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(meta.get_str("tokenizer.ggml.model") == Some("llama"));
        Self::new(
            source,
            token_text(meta, "tokenizer.ggml.bos_token_id"),
            token_text(meta, "tokenizer.ggml.eos_token_id"),
            add_bos,
        )
    }

    /// Parses `source` with the given BOS/EOS texts; `strip_bos` drops a leading BOS from the
    /// output.
    pub fn new(
        source: &str,
        bos_token: String,
        eos_token: String,
        strip_bos: bool,
    ) -> Result<Self, TokenizerError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| TokenizerError::Template(e.to_string()))?;
        Ok(Self { env, bos_token, eos_token, strip_bos })
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends with the header of an
    /// assistant turn, ready for generation.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let tmpl =
            self.env.get_template("chat").map_err(|e| TokenizerError::Template(e.to_string()))?;
        let out = tmpl
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| TokenizerError::Template(format!("{e:#}")))?;
        match out.strip_prefix(self.bos_token.as_str()) {
            Some(rest) if self.strip_bos && !self.bos_token.is_empty() => Ok(rest.to_string()),
            _ => Ok(out),
        }
    }
}
