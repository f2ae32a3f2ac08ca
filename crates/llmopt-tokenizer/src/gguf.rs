//! Reading the `tokenizer.*` keys of GGUF metadata into plain data ([`VocabData`]).
//!
//! This is the only file that knows metadata key names and value types; everything after it
//! works on `VocabData`, so the tokenizer core can be tested (and fed from other sources) without
//! a GGUF file.

use llmopt_formats::gguf::{MetaValue, Metadata};

use crate::error::TokenizerError;

/// The tokenizer-relevant contents of a model file, unvalidated beyond types and lengths.
#[derive(Clone, Debug, Default)]
pub(crate) struct VocabData {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece-style).
    pub model: String,
    /// `tokenizer.ggml.pre`; `None` when absent.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// Per-token scores (SPM merge priority); empty when absent.
    pub scores: Vec<f32>,
    /// Per-token GGUF token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte); empty when absent.
    pub token_types: Vec<i64>,
    /// `tokenizer.ggml.merges`, "left right" strings in rank order.
    pub merges: Vec<String>,
    /// `(key suffix, id)` of the `tokenizer.ggml.<name>_token_id` keys present.
    pub special_ids: Vec<(&'static str, u64)>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `general.name` (llama.cpp sets token attributes for a few model names).
    pub model_name: String,
}

/// Names of the `tokenizer.ggml.<name>_token_id` keys llama.cpp reads (with its spelling).
pub(crate) const SPECIAL_KEYS: [&str; 17] = [
    "bos",
    "eos",
    "eot",
    "eom",
    "unknown",
    "seperator",
    "padding",
    "mask",
    "fim_pre",
    "fim_suf",
    "fim_mid",
    "fim_pad",
    "fim_rep",
    "fim_sep",
    "prefix",
    "suffix",
    "middle",
];

fn special_key(name: &str) -> &'static str {
    // Static names keep error messages free of allocation and lifetimes.
    match name {
        "bos" => "tokenizer.ggml.bos_token_id",
        "eos" => "tokenizer.ggml.eos_token_id",
        "eot" => "tokenizer.ggml.eot_token_id",
        "eom" => "tokenizer.ggml.eom_token_id",
        "unknown" => "tokenizer.ggml.unknown_token_id",
        "seperator" => "tokenizer.ggml.seperator_token_id",
        "padding" => "tokenizer.ggml.padding_token_id",
        "mask" => "tokenizer.ggml.mask_token_id",
        "fim_pre" => "tokenizer.ggml.fim_pre_token_id",
        "fim_suf" => "tokenizer.ggml.fim_suf_token_id",
        "fim_mid" => "tokenizer.ggml.fim_mid_token_id",
        "fim_pad" => "tokenizer.ggml.fim_pad_token_id",
        "fim_rep" => "tokenizer.ggml.fim_rep_token_id",
        "fim_sep" => "tokenizer.ggml.fim_sep_token_id",
        "prefix" => "tokenizer.ggml.prefix_token_id",
        "suffix" => "tokenizer.ggml.suffix_token_id",
        _ => "tokenizer.ggml.middle_token_id",
    }
}

fn invalid(key: &'static str, expected: &'static str, v: &MetaValue) -> TokenizerError {
    TokenizerError::InvalidKey { key, expected, found: v.type_name().to_string() }
}

fn opt_bool(meta: &Metadata, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| invalid(key, "bool", v)),
    }
}

/// An array key whose elements are each converted by `conv`; `None` when absent.
fn opt_array<T>(
    meta: &Metadata,
    key: &'static str,
    expected: &'static str,
    conv: impl Fn(&MetaValue) -> Option<T>,
) -> Result<Option<Vec<T>>, TokenizerError> {
    let Some(v) = meta.get(key) else { return Ok(None) };
    let arr = v.as_array().ok_or_else(|| invalid(key, expected, v))?;
    arr.iter()
        .map(|e| conv(e).ok_or_else(|| invalid(key, expected, e)))
        .collect::<Result<_, _>>()
        .map(Some)
}

impl VocabData {
    /// Reads the tokenizer keys from GGUF metadata.
    pub(crate) fn from_gguf(meta: &Metadata) -> Result<Self, TokenizerError> {
        const MODEL: &str = "tokenizer.ggml.model";
        const TOKENS: &str = "tokenizer.ggml.tokens";
        const SCORES: &str = "tokenizer.ggml.scores";
        const TYPES: &str = "tokenizer.ggml.token_type";
        const MERGES: &str = "tokenizer.ggml.merges";
        const PRE: &str = "tokenizer.ggml.pre";

        let model = match meta.get(MODEL) {
            None => return Err(TokenizerError::MissingKey { key: MODEL }),
            Some(v) => v.as_str().ok_or_else(|| invalid(MODEL, "string", v))?.to_string(),
        };
        let pre = match meta.get(PRE) {
            None => None,
            Some(v) => Some(v.as_str().ok_or_else(|| invalid(PRE, "string", v))?.to_string()),
        };
        let as_string = |e: &MetaValue| e.as_str().map(str::to_string);
        let tokens = opt_array(meta, TOKENS, "array of strings", as_string)?
            .ok_or(TokenizerError::MissingKey { key: TOKENS })?;
        let n = tokens.len();
        let scores = opt_array(meta, SCORES, "array of numbers", MetaValue::as_f32)?;
        let token_types = opt_array(meta, TYPES, "array of integers", MetaValue::as_i64)?;
        for (key, len) in
            [(SCORES, scores.as_ref().map(Vec::len)), (TYPES, token_types.as_ref().map(Vec::len))]
        {
            if let Some(len) = len.filter(|&len| len < n) {
                return Err(TokenizerError::InvalidKey {
                    key,
                    expected: "one entry per token",
                    found: format!("{len} entries for {n} tokens"),
                });
            }
        }
        let merges = opt_array(meta, MERGES, "array of strings", as_string)?;
        if model == "gpt2" && merges.is_none() {
            return Err(TokenizerError::MissingKey { key: MERGES });
        }
        let mut special_ids = Vec::new();
        for name in SPECIAL_KEYS {
            let key = special_key(name);
            if let Some(v) = meta.get(key) {
                special_ids.push((name, v.as_u64().ok_or_else(|| invalid(key, "integer", v))?));
            }
        }
        Ok(Self {
            model,
            pre,
            tokens,
            scores: scores.unwrap_or_default(),
            token_types: token_types.unwrap_or_default(),
            merges: merges.unwrap_or_default(),
            special_ids,
            add_bos: opt_bool(meta, "tokenizer.ggml.add_bos_token")?,
            add_eos: opt_bool(meta, "tokenizer.ggml.add_eos_token")?,
            add_space_prefix: opt_bool(meta, "tokenizer.ggml.add_space_prefix")?,
            model_name: meta.get_str("general.name").unwrap_or_default().to_string(),
        })
    }
}
