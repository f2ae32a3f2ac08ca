//! Tokenizers and chat templates built from GGUF metadata, producing the same ids as llama.cpp.
//!
//! llama.cpp is the reference: a model's quality figures (perplexity, task accuracy) are only
//! comparable with it if both see the same token ids. So instead of wrapping a general tokenizer
//! library, this crate re-implements llama.cpp's two tokenizer families from the `tokenizer.*`
//! metadata, including its pre-tokenizer rules and special-token handling:
//!
//! - byte-level BPE (`tokenizer.ggml.model = gpt2`: SmolLM2, Qwen2.5, Llama 3, GPT-2), see
//!   modules `bpe` and `pretok`;
//! - SentencePiece-style merges by score with byte fallback (`llama`: Gemma 3, Llama 2), see
//!   module `spm`.
//!
//! Text is first split on special-token texts (module `special`); the pieces between
//! them go through the model's merge algorithm. [`ChatTemplate`] renders the Jinja template a GGUF
//! carries (`tokenizer.chat_template`) with minijinja.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use llmopt_formats::gguf::GgufFile;
//! use llmopt_tokenizer::Tokenizer;
//! let file = GgufFile::open("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tok = Tokenizer::from_gguf(file.metadata())?;
//! let ids = tok.encode("Hello world", true, false);
//! assert_eq!(tok.decode(&ids), "Hello world");
//! # Ok(()) }
//! ```

mod bpe;
mod chat;
mod error;
mod gguf;
mod pretok;
mod special;
mod spm;
mod stream;
mod unicode;
mod vocab;

use std::collections::HashMap;

use llmopt_formats::gguf::Metadata;

pub use chat::{ChatMessage, ChatTemplate};
pub use error::TokenizerError;
pub use stream::Utf8Stream;

use bpe::Bpe;
use gguf::VocabData;
use special::{Frag, SpecialSplitter};
use spm::Spm;
use vocab::{attr, Family, Vocab};

/// The merge algorithm in use.
#[derive(Clone, Debug)]
enum Engine {
    Bpe(Bpe),
    Spm(Spm),
}

/// A model's tokenizer: text <-> token ids. Immutable and `Sync`; share it freely.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    engine: Engine,
    specials: SpecialSplitter,
    /// The bytes each token stands for, precomputed.
    pieces: Vec<Vec<u8>>,
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf(meta: &Metadata) -> Result<Self, TokenizerError> {
        Self::from_data(VocabData::from_gguf(meta)?)
    }

    fn from_data(data: VocabData) -> Result<Self, TokenizerError> {
        let vocab = Vocab::new(data)?;
        let engine = match &vocab.family {
            Family::Bpe { pre, ignore_merges } => {
                Engine::Bpe(Bpe::new(&vocab, pre.clone(), *ignore_merges))
            }
            Family::Spm => Engine::Spm(Spm::new(&vocab)),
        };
        let specials = SpecialSplitter::new(&vocab);
        let mut char_to_byte = [None; 0x200];
        for (b, c) in unicode::byte_to_char_table().iter().enumerate() {
            char_to_byte[*c as usize] = Some(b as u8);
        }
        let pieces =
            (0..vocab.tokens.len()).map(|id| piece_of(&vocab, &char_to_byte, id)).collect();
        Ok(Self { vocab, engine, specials, pieces })
    }

    /// Encodes `text`. With `add_special`, BOS/EOS are added when the model asks for them
    /// ([`Tokenizer::add_bos`], `tokenizer.ggml.add_eos_token`). With `parse_special`, control
    /// tokens written in the text (`<|im_start|>`, `<start_of_turn>`) become their ids; without
    /// it they are tokenized as plain text. User-defined tokens are always recognised, as in
    /// llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.vocab.add_bos {
            out.extend(self.vocab.ids.bos);
        }
        let frags = self.specials.split(&self.vocab, text, parse_special);
        match &self.engine {
            Engine::Bpe(bpe) => {
                let mut cache = HashMap::new();
                for f in frags {
                    match f {
                        Frag::Text(r) => bpe.encode(&self.vocab, &text[r], &mut cache, &mut out),
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
            Engine::Spm(spm) => {
                // A space is prefixed to the first fragment and to each one after a special token.
                let mut prev_special = true;
                let mut buf = String::new();
                for f in frags {
                    match f {
                        Frag::Text(r) => {
                            buf.clear();
                            if self.vocab.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[r].chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm.encode(&self.vocab, &buf, &mut out);
                            prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
        }
        if add_special && self.vocab.add_eos {
            out.extend(self.vocab.ids.eos);
        }
        out
    }

    /// Decodes ids to text, undoing [`Tokenizer::encode`]: a leading BOS and trailing EOS of the
    /// kind `add_special` adds are dropped, other special tokens are rendered as their text, and
    /// for SentencePiece models that prefix a space the first text token's leading space is
    /// removed. So `decode(&encode(s, add_special, parse_special)) == s` (exceptions: a literal
    /// U+2581 in SentencePiece input comes back as a space). Incomplete UTF-8 becomes U+FFFD.
    /// This is llama.cpp's detokenize with `remove_special` and `unparse_special` set.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut ids = ids;
        let mut strip_space = self.vocab.add_space_prefix;
        if self.vocab.add_bos && ids.first().is_some_and(|&id| Some(id) == self.vocab.ids.bos) {
            ids = &ids[1..];
        }
        if self.vocab.add_eos && ids.last().is_some_and(|&id| Some(id) == self.vocab.ids.eos) {
            ids = &ids[..ids.len() - 1];
        }
        let mut bytes = Vec::new();
        for &id in ids {
            let piece = self.pieces.get(id as usize).map(Vec::as_slice).unwrap_or_default();
            let skip = usize::from(strip_space && piece.first() == Some(&b' '));
            bytes.extend_from_slice(&piece[skip..]);
            strip_space = false;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The bytes one token stands for (special tokens: their text; unknown ids: nothing). A
    /// UTF-8 character may span several tokens, so stream bytes, not strings.
    pub fn token_to_piece(&self, id: u32) -> Vec<u8> {
        self.pieces.get(id as usize).cloned().unwrap_or_default()
    }

    /// The beginning-of-sequence id.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.ids.bos
    }

    /// The end-of-sequence id.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.ids.eos
    }

    /// The end-of-turn id (`<|im_end|>`, `<end_of_turn>`...), from metadata or found by text.
    pub fn eot(&self) -> Option<u32> {
        self.vocab.ids.eot
    }

    /// All ids that end generation (EOS, EOT, and the tokens llama.cpp treats so), sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos && self.vocab.ids.bos.is_some()
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// Whether `id` is a control, user-defined or unknown token (not ordinary text).
    pub fn is_special(&self, id: u32) -> bool {
        self.vocab
            .attrs
            .get(id as usize)
            .is_some_and(|a| a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
    }

    /// The vocabulary text of a token (as stored in the model: `Ġ` for a space in byte-level
    /// BPE, `▁` in SentencePiece vocabularies).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of an exact vocabulary text, e.g. `"<|im_end|>"`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }
}

/// The bytes a token stands for, as llama.cpp's `token_to_piece` with `special = true`.
fn piece_of(vocab: &Vocab, char_to_byte: &[Option<u8>; 0x200], id: usize) -> Vec<u8> {
    let a = vocab.attrs[id];
    let text = &vocab.tokens[id];
    if a & (attr::CONTROL | attr::UNKNOWN | attr::USER_DEFINED) != 0 {
        return text.as_bytes().to_vec();
    }
    if a & attr::NORMAL != 0 {
        return match vocab.family {
            Family::Spm => text.replace('\u{2581}', " ").into_bytes(),
            Family::Bpe { .. } => {
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    match char_to_byte.get(c as usize).copied().flatten() {
                        Some(b) => out.push(b),
                        // Not a byte-level char: keep it as UTF-8 (llama.cpp prints a marker).
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                out
            }
        };
    }
    if a & attr::BYTE != 0 {
        if let Some(b) = text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok()) {
            return vec![b];
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokenizer_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Tokenizer>();
        assert_send_sync::<super::ChatTemplate>();
    }
}
