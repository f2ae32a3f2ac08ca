//! Splitting text on special-token texts before the merge algorithm sees it.
//!
//! As llama.cpp's `tokenizer_st_partition`: special tokens are tried longest text first; each one
//! splits every remaining text fragment at all its non-overlapping occurrences, left to right.
//! Control and unknown tokens take part only with `parse_special`; user-defined tokens (Gemma's
//! runs of spaces and newlines, Qwen's `<tool_call>`) always do. Gemma has ~6400 special tokens,
//! so an Aho-Corasick pass first finds the few whose text occurs at all, and only those scan.

use std::ops::Range;

use aho_corasick::AhoCorasick;

use crate::vocab::{attr, Vocab};

/// A piece of the input: raw text (a byte range) or an already-known token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frag {
    Text(Range<usize>),
    Token(u32),
}

/// Finds special tokens in text.
#[derive(Clone, Debug)]
pub(crate) struct SpecialSplitter {
    /// Patterns are `vocab.special_cache` in order (pattern index = position there).
    ac: Option<AhoCorasick>,
}

/// C's `isspace` on a byte.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl SpecialSplitter {
    pub(crate) fn new(vocab: &Vocab) -> Self {
        let texts = vocab.special_cache.iter().map(|&id| vocab.tokens[id as usize].as_str());
        // Building fails only on pathological pattern sets; then every token is scanned for.
        Self { ac: AhoCorasick::new(texts).ok() }
    }

    /// Splits `text` into fragments.
    pub(crate) fn split(&self, vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Frag> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut present = vec![self.ac.is_none(); vocab.special_cache.len()];
        if let Some(ac) = &self.ac {
            for m in ac.find_overlapping_iter(text) {
                present[m.pattern().as_usize()] = true;
            }
        }
        let mut frags = vec![Frag::Text(0..text.len())];
        for (k, &id) in vocab.special_cache.iter().enumerate() {
            let a = vocab.attrs[id as usize];
            if !present[k] || (!parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0) {
                continue;
            }
            let tok = vocab.tokens[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Frag::Text(r) => split_one(text, r, tok, id, a, &mut next),
                    t @ Frag::Token(_) => next.push(t),
                }
            }
            frags = next;
        }
        frags
    }
}

/// Splits the fragment `r` of `text` at every occurrence of `tok`.
fn split_one(text: &str, r: Range<usize>, tok: &str, id: u32, a: u16, out: &mut Vec<Frag>) {
    let (mut base, end) = (r.start, r.end);
    let bytes = text.as_bytes();
    while let Some(m) = text[base..end].find(tok).map(|p| base + p) {
        let mut left_end = m;
        if a & attr::LSTRIP != 0 {
            while left_end > base && is_c_space(bytes[left_end - 1]) {
                left_end -= 1;
            }
        }
        if left_end > base {
            out.push(Frag::Text(base..left_end));
        }
        out.push(Frag::Token(id));
        base = m + tok.len();
        if a & attr::RSTRIP != 0 {
            while base < end && is_c_space(bytes[base]) {
                base += 1;
            }
        }
    }
    if base < end {
        out.push(Frag::Text(base..end));
    }
}
