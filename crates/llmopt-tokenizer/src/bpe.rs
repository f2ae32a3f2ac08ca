//! Byte-level BPE (GPT-2 style) over pre-tokenized words, merging exactly as llama.cpp does.
//!
//! Each word's bytes start as single symbols (GPT-2's byte -> printable-char map makes every byte
//! a vocabulary string); the adjacent pair with the lowest merge rank is merged first, leftmost on
//! ties, via a priority queue with lazy deletion (O(n log n) per word, no quadratic rescans).
//! Symbols are interned strings: every token text and every string a merge rule mentions gets an
//! id (token ids first, so a symbol id below the vocabulary size *is* a token id), and the merge
//! table is keyed by id pairs. Words repeat a lot in real text, so one `encode` call caches the
//! ids of each distinct word it has already merged.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::pretok::PreTokenizer;
use crate::unicode::byte_to_char_table;
use crate::vocab::Vocab;

const NONE: u32 = u32::MAX;

/// A queued merge: (rank, left index, right index, left symbol, right symbol), smallest first.
type Queue = BinaryHeap<Reverse<(u32, u32, u32, u32, u32)>>;

/// Merge tables for a byte-level BPE vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct Bpe {
    pre: PreTokenizer,
    ignore_merges: bool,
    /// `(left symbol, right symbol)` -> `(rank, merged symbol)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The symbol of each raw byte's printable char (`NONE` if the vocabulary lacks it).
    byte_sym: [u32; 256],
    byte_char: [char; 256],
    n_tokens: u32,
}

#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    /// Byte span in the word.
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

impl Bpe {
    pub(crate) fn new(vocab: &Vocab, pre: PreTokenizer, ignore_merges: bool) -> Self {
        let n_tokens = vocab.tokens.len() as u32;
        let mut extra: HashMap<String, u32> = HashMap::new();
        let mut intern = |s: &str| -> u32 {
            if let Some(id) = vocab.id(s) {
                return id;
            }
            let next = n_tokens + extra.len() as u32;
            *extra.entry(s.to_string()).or_insert(next)
        };
        let mut merges = HashMap::with_capacity(vocab.merges.len());
        for (rank, rule) in vocab.merges.iter().enumerate() {
            // Split at the first space after the first byte (llama.cpp's `find(' ', 1)`).
            let Some(sp) = rule.as_bytes().iter().skip(1).position(|&b| b == b' ') else {
                continue;
            };
            let (left, right) = (&rule[..sp + 1], &rule[sp + 2..]);
            if left.is_empty() || right.is_empty() {
                continue;
            }
            let key = (intern(left), intern(right));
            let merged = intern(&format!("{left}{right}"));
            merges.entry(key).or_insert((rank as u32, merged));
        }
        let byte_char = byte_to_char_table();
        let mut byte_sym = [NONE; 256];
        for (b, c) in byte_char.iter().enumerate() {
            byte_sym[b] = vocab.id(c.encode_utf8(&mut [0; 4])).unwrap_or(NONE);
        }
        Self { pre, ignore_merges, merges, byte_sym, byte_char, n_tokens }
    }

    /// Appends the ids of `text` (one fragment without special tokens) to `out`.
    pub(crate) fn encode<'t>(
        &self,
        vocab: &Vocab,
        text: &'t str,
        cache: &mut HashMap<&'t str, Vec<u32>>,
        out: &mut Vec<u32>,
    ) {
        let mut syms = Vec::new();
        let mut heap = BinaryHeap::new();
        for r in self.pre.split(text) {
            let word = &text[r];
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                continue;
            }
            let start = out.len();
            self.encode_word(vocab, word.as_bytes(), &mut syms, &mut heap, out);
            cache.insert(word, out[start..].to_vec());
        }
    }

    fn encode_word(
        &self,
        vocab: &Vocab,
        word: &[u8],
        syms: &mut Vec<Sym>,
        heap: &mut Queue,
        out: &mut Vec<u32>,
    ) {
        if self.ignore_merges {
            let encoded: String = word.iter().map(|&b| self.byte_char[b as usize]).collect();
            if let Some(id) = vocab.id(&encoded) {
                out.push(id);
                return;
            }
        }
        syms.clear();
        heap.clear();
        let n = word.len() as u32;
        syms.extend(word.iter().enumerate().map(|(i, &b)| {
            let i = i as u32;
            Sym {
                id: self.byte_sym[b as usize],
                start: i,
                len: 1,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
            }
        }));
        // An entry is stale once either side has changed.
        let push = |syms: &[Sym], heap: &mut Queue, l: u32, r: u32| {
            if l == NONE || r == NONE {
                return;
            }
            let (a, b) = (syms[l as usize].id, syms[r as usize].id);
            if let Some(&(rank, _)) = self.merges.get(&(a, b)) {
                heap.push(Reverse((rank, l, r, a, b)));
            }
        };
        for i in 1..n {
            push(syms, heap, i - 1, i);
        }
        while let Some(Reverse((_, l, r, a, b))) = heap.pop() {
            let (ls, rs) = (syms[l as usize], syms[r as usize]);
            if ls.len == 0 || rs.len == 0 || ls.id != a || rs.id != b {
                continue;
            }
            let merged = self.merges[&(a, b)].1;
            let left = &mut syms[l as usize];
            left.id = merged;
            left.len += rs.len;
            left.next = rs.next;
            syms[r as usize].len = 0;
            if rs.next != NONE {
                syms[rs.next as usize].prev = l;
            }
            push(syms, heap, ls.prev, l);
            push(syms, heap, l, rs.next);
        }
        let mut i = 0;
        while i != NONE && (i as usize) < syms.len() {
            let s = syms[i as usize];
            if s.id < self.n_tokens {
                out.push(s.id);
            } else {
                // Not a token: llama.cpp looks each byte of the symbol's text up on its own,
                // which can only succeed for printable ASCII.
                for &b in &word[s.start as usize..(s.start + s.len) as usize] {
                    if (0x21..0x7F).contains(&b) {
                        if let Some(id) =
                            vocab.id(self.byte_char[b as usize].encode_utf8(&mut [0; 4]))
                        {
                            out.push(id);
                        }
                    }
                }
            }
            i = s.next;
        }
    }
}
