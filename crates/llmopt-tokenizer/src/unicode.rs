//! Code-point classes for the pre-tokenizers, and GPT-2's byte <-> printable-char map.
//!
//! The pre-tokenizer rules only ask four questions of a code point: letter (`\p{L}`), number
//! (`\p{N}`), combining mark (`\p{M}`), punctuation (`\p{P}`) and white space (`\s`, the Unicode
//! `White_Space` property). The answers come from `regex-syntax`'s Unicode tables (so we carry no
//! generated table of our own), flattened once per process into a 64 Ki byte table for the Basic
//! Multilingual Plane and a sorted range list above it.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// `\p{L}`.
pub const LETTER: u8 = 1;
/// `\p{N}`.
pub const NUMBER: u8 = 2;
/// `\s` (Unicode White_Space).
pub const WHITESPACE: u8 = 4;
/// `\p{M}`.
pub const MARK: u8 = 8;
/// `\p{P}`.
pub const PUNCT: u8 = 16;
/// Set for every code point, so "no flags at all" means "outside the text" (llama.cpp's
/// out-of-range sentinel).
pub const PRESENT: u8 = 128;

struct Tables {
    bmp: Vec<u8>,
    /// `(start, end_inclusive, flags)` for code points above U+FFFF, sorted, non-overlapping.
    astral: Vec<(u32, u32, u8)>,
}

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::parse(pattern).expect("built-in Unicode class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(cls)) => {
            cls.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
        }
        other => panic!("pattern {pattern} is not a Unicode class: {other:?}"),
    }
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut all = vec![PRESENT; 0x11_0000];
        for (pattern, flag) in [
            (r"\p{L}", LETTER),
            (r"\p{N}", NUMBER),
            (r"\s", WHITESPACE),
            (r"\p{M}", MARK),
            (r"\p{P}", PUNCT),
        ] {
            for (lo, hi) in class_ranges(pattern) {
                for f in &mut all[lo as usize..=hi as usize] {
                    *f |= flag;
                }
            }
        }
        let mut astral: Vec<(u32, u32, u8)> = Vec::new();
        for (cp, &f) in all.iter().enumerate().skip(0x1_0000) {
            let cp = cp as u32;
            match astral.last_mut() {
                Some(last) if last.2 == f && last.1 + 1 == cp => last.1 = cp,
                _ => astral.push((cp, cp, f)),
            }
        }
        all.truncate(0x1_0000);
        Tables { bmp: all, astral }
    })
}

/// The class flags of `c` (always includes [`PRESENT`]).
#[inline]
pub fn flags(c: char) -> u8 {
    let cp = c as u32;
    let t = tables();
    if cp < 0x1_0000 {
        return t.bmp[cp as usize];
    }
    match t.astral.binary_search_by(|&(lo, hi, _)| {
        if hi < cp {
            std::cmp::Ordering::Less
        } else if lo > cp {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => t.astral[i].2,
        Err(_) => PRESENT,
    }
}

/// GPT-2's reversible map from each byte to a printable code point: printable Latin-1 bytes map
/// to themselves, the other 68 to U+0100.. in byte order.
pub fn byte_to_char_table() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let b = b as u32;
        let cp = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).expect("GPT-2 byte map stays below U+0200");
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(flags('a') & LETTER, LETTER);
        assert_eq!(flags('é') & LETTER, LETTER);
        assert_eq!(flags('中') & LETTER, LETTER);
        assert_eq!(flags('7') & NUMBER, NUMBER);
        assert_eq!(flags('²') & NUMBER, NUMBER);
        assert_eq!(flags('\u{0301}') & MARK, MARK);
        assert_eq!(flags('\u{3000}') & WHITESPACE, WHITESPACE);
        assert_eq!(flags('\u{85}') & WHITESPACE, WHITESPACE);
        assert_eq!(flags('!') & PUNCT, PUNCT);
        assert_eq!(flags('$') & (PUNCT | LETTER | NUMBER | WHITESPACE), 0);
        assert_eq!(flags('😀'), PRESENT);
        assert_eq!(flags('𝐀') & LETTER, LETTER);
        assert_eq!(flags('\u{10FFFF}'), PRESENT);
    }

    #[test]
    fn gpt2_byte_map() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0xAD], 'Ń');
        let mut seen: Vec<char> = t.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }
}
