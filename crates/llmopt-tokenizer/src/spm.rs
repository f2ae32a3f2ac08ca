//! SentencePiece-style tokenization (Gemma, Llama 2): greedy bigram merges by token score.
//!
//! As in llama.cpp's `llm_tokenizer_spm`: the (space-escaped) text starts as one symbol per UTF-8
//! character; every adjacent pair whose concatenation is a vocabulary entry is queued with that
//! entry's score; the highest score merges first (leftmost on ties), stale queue entries are
//! skipped, and the neighbours of each merge are re-queued. Symbols that end up outside the
//! vocabulary fall back to `<0xXX>` byte tokens. Symbols are byte spans of the text, so a pair's
//! text is a slice and lookups allocate nothing.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the smaller left index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

/// Byte-fallback ids for an SPM vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct Spm {
    /// Id of `<0xXX>` (or of the one-byte text when that is absent) for each byte.
    byte_tokens: [Option<u32>; 256],
}

impl Spm {
    pub(crate) fn new(vocab: &Vocab) -> Self {
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = vocab.id(&format!("<0x{b:02X}>")).or_else(|| {
                let s = [b as u8];
                std::str::from_utf8(&s).ok().and_then(|s| vocab.id(s))
            });
        }
        Self { byte_tokens }
    }

    /// Appends the ids of `text` (already space-escaped) to `out`.
    pub(crate) fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (i, (off, c)) in text.char_indices().enumerate() {
            let i = i as u32;
            let end = off + c.len_utf8();
            syms.push(Sym {
                start: off as u32,
                len: c.len_utf8() as u32,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if end == text.len() { NONE } else { i + 1 },
            });
        }
        let mut heap = BinaryHeap::with_capacity(syms.len());
        let try_add = |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, l: u32, r: u32| {
            if l == NONE || r == NONE {
                return;
            }
            let (ls, rs) = (syms[l as usize], syms[r as usize]);
            let size = ls.len + rs.len;
            let piece = &text[ls.start as usize..(ls.start + size) as usize];
            if let Some(id) = vocab.id(piece) {
                heap.push(Bigram { score: vocab.scores[id as usize], left: l, right: r, size });
            }
        };
        for i in 1..syms.len() as u32 {
            try_add(&syms, &mut heap, i - 1, i);
        }
        while let Some(bg) = heap.pop() {
            let (ls, rs) = (syms[bg.left as usize], syms[bg.right as usize]);
            if ls.len == 0 || rs.len == 0 || ls.len + rs.len != bg.size {
                continue;
            }
            syms[bg.left as usize].len += rs.len;
            syms[bg.left as usize].next = rs.next;
            syms[bg.right as usize].len = 0;
            if rs.next != NONE {
                syms[rs.next as usize].prev = bg.left;
            }
            try_add(&syms, &mut heap, ls.prev, bg.left);
            try_add(&syms, &mut heap, bg.left, rs.next);
        }
        let mut i = 0u32;
        while i != NONE {
            let s = syms[i as usize];
            let piece = &text[s.start as usize..(s.start + s.len) as usize];
            match vocab.id(piece) {
                Some(id) => out.push(id),
                None => out.extend(
                    piece.bytes().filter_map(|b| self.byte_tokens[b as usize].or(vocab.ids.unk)),
                ),
            }
            i = s.next;
        }
    }
}
