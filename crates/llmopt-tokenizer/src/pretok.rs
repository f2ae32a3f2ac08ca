//! Pre-tokenizers: split a text fragment into words before byte-level BPE merges them.
//!
//! llama.cpp selects a list of regexes by `tokenizer.ggml.pre` and applies them in order, each one
//! refining the pieces the previous one produced (a regex's matches and the gaps between them both
//! become pieces). For the common regexes it runs hand-written matchers instead of a regex engine;
//! we do the same, so our pieces equal llama.cpp's, including its choices on edge cases
//! (`\s+(?!\S)` at a piece boundary, case-insensitive contractions, digit grouping).
//!
//! Supported: `gpt-2` family, `llama-bpe` (Llama 3), `qwen2`, `qwen35`, `smollm` / `starcoder`
//! family (single digits, then GPT-2), `falcon` and `default`.

use std::ops::Range;

use crate::unicode::{flags, LETTER, MARK, NUMBER, PUNCT, WHITESPACE};

/// One splitting rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (GPT-2).
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// (Llama 3 with `digits` = 3, Qwen2 with 1); with `marks`, `\p{M}` counts as a letter (Qwen3.5).
    Modern { digits: usize, marks: bool },
    /// `\p{N}`: every number code point becomes its own piece.
    EachNumber,
    /// `[\p{P}$+<=>^~|]+` (with backtick too when `backtick`): runs of punctuation.
    PunctRuns { backtick: bool },
    /// `\p{N}+`: runs of numbers.
    NumberRuns,
    /// `[0-9][0-9][0-9]`: groups of three ASCII digits, left to right.
    AsciiDigits3,
}

/// The pre-tokenizer named by `tokenizer.ggml.pre`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreTokenizer {
    steps: Vec<Step>,
}

impl PreTokenizer {
    /// The pre-tokenizer for a `tokenizer.ggml.pre` value, as llama.cpp maps it; `None` when we do
    /// not implement it. A missing key means `default`.
    pub fn for_name(pre: &str) -> Option<Self> {
        use Step::*;
        let steps = match pre {
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais"
            | "trillion" | "granite-docling" | "exaone4" => vec![Gpt2],
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => {
                vec![Modern { digits: 3, marks: false }]
            }
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2"
            | "hunyuan" | "solar-open" => vec![Modern { digits: 1, marks: false }],
            "qwen35" => vec![Modern { digits: 1, marks: true }],
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => vec![EachNumber, Gpt2],
            "falcon" => vec![PunctRuns { backtick: true }, Gpt2, AsciiDigits3],
            "default" | "" => vec![PunctRuns { backtick: false }, Gpt2, NumberRuns, AsciiDigits3],
            _ => return None,
        };
        Some(Self { steps })
    }

    /// Splits `text` into word byte ranges (in order, covering all of `text`).
    pub fn split(&self, text: &str) -> Vec<Range<usize>> {
        let cps: Vec<char> = text.chars().collect();
        let fl: Vec<u8> = cps.iter().map(|&c| flags(c)).collect();
        let mut pieces: Vec<Range<usize>> = Vec::new();
        if !cps.is_empty() {
            pieces.push(0..cps.len());
        }
        for &step in &self.steps {
            let mut out = Vec::with_capacity(pieces.len() * 2);
            for r in &pieces {
                let s = Splitter { cps: &cps, fl: &fl, lo: r.start, hi: r.end, out: &mut out };
                s.run(step);
            }
            pieces = out;
        }
        // Code-point ranges to byte ranges.
        let mut byte_at = Vec::with_capacity(cps.len() + 1);
        let mut b = 0;
        for c in &cps {
            byte_at.push(b);
            b += c.len_utf8();
        }
        byte_at.push(b);
        pieces.into_iter().map(|r| byte_at[r.start]..byte_at[r.end]).collect()
    }
}

/// Splits one piece `lo..hi` of the code points; positions outside it read as "no flags".
struct Splitter<'a> {
    cps: &'a [char],
    fl: &'a [u8],
    lo: usize,
    hi: usize,
    out: &'a mut Vec<Range<usize>>,
}

impl Splitter<'_> {
    fn f(&self, p: usize) -> u8 {
        if p >= self.lo && p < self.hi {
            self.fl[p]
        } else {
            0
        }
    }

    fn c(&self, p: usize) -> Option<char> {
        (p >= self.lo && p < self.hi).then(|| self.cps[p])
    }

    fn push(&mut self, r: Range<usize>) {
        if !r.is_empty() {
            self.out.push(r);
        }
    }

    fn run(self, step: Step) {
        match step {
            Step::Gpt2 => self.gpt2(),
            Step::Modern { digits, marks } => self.modern(digits, marks),
            Step::EachNumber => self.isolate(|s, p| (s.f(p) & NUMBER != 0).then_some(p + 1)),
            Step::NumberRuns => self.isolate(|s, p| s.run_of(p, |f, _| f & NUMBER != 0)),
            Step::PunctRuns { backtick } => self.isolate(|s, p| {
                s.run_of(p, |f, c| {
                    f & PUNCT != 0 || "$+<=>^~|".contains(c) || (backtick && c == '`')
                })
            }),
            Step::AsciiDigits3 => self.isolate(|s, p| {
                (0..3).all(|k| s.c(p + k).is_some_and(|c| c.is_ascii_digit())).then_some(p + 3)
            }),
        }
    }

    /// End of the maximal run starting at `p` whose code points satisfy `pred`, if non-empty.
    fn run_of(&self, p: usize, pred: impl Fn(u8, char) -> bool) -> Option<usize> {
        let mut e = p;
        while let Some(c) = self.c(e) {
            if !pred(self.fl[e], c) {
                break;
            }
            e += 1;
        }
        (e > p).then_some(e)
    }

    /// Regex-style split: `matcher(p)` gives the end of a match starting at `p`; matches and the
    /// gaps between them become pieces.
    fn isolate(mut self, matcher: impl Fn(&Self, usize) -> Option<usize>) {
        let (mut gap, mut p) = (self.lo, self.lo);
        while p < self.hi {
            match matcher(&self, p) {
                Some(e) => {
                    self.push(gap..p);
                    self.push(p..e);
                    gap = e;
                    p = e;
                }
                None => p += 1,
            }
        }
        self.push(gap..self.hi);
    }

    /// The GPT-2 pattern, matched by hand as llama.cpp does.
    fn gpt2(mut self) {
        const NOT_OTHER: u8 = WHITESPACE | LETTER | NUMBER;
        let mut pos = self.lo;
        while pos < self.hi {
            let start = pos;
            let c = self.cps[pos];
            if c == '\'' && pos + 1 < self.hi {
                let n = self.cps[pos + 1];
                if matches!(n, 's' | 't' | 'm' | 'd') {
                    pos += 2;
                    self.push(start..pos);
                    continue;
                }
                if pos + 2 < self.hi {
                    let nn = self.cps[pos + 2];
                    if matches!((n, nn), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                        pos += 3;
                        self.push(start..pos);
                        continue;
                    }
                }
            }
            let space = usize::from(c == ' ');
            let f2 = if c == ' ' { self.f(pos + 1) } else { self.f(pos) };
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            let class: Option<fn(u8) -> bool> = if f2 & LETTER != 0 {
                Some(|f| f & LETTER != 0)
            } else if f2 & NUMBER != 0 {
                Some(|f| f & NUMBER != 0)
            } else if f2 & NOT_OTHER == 0 && f2 != 0 {
                Some(|f| f & NOT_OTHER == 0 && f != 0)
            } else {
                None
            };
            if let Some(in_class) = class {
                pos += space;
                while in_class(self.f(pos)) {
                    pos += 1;
                }
                self.push(start..pos);
                continue;
            }
            let mut n_ws = 0;
            while self.f(pos + n_ws) & WHITESPACE != 0 {
                n_ws += 1;
            }
            pos += if n_ws > 1 && pos + n_ws < self.hi {
                n_ws - 1 // `\s+(?!\S)`
            } else if n_ws > 0 {
                n_ws // `\s+`
            } else {
                1 // no match: one code point on its own
            };
            self.push(start..pos);
        }
    }

    /// The Llama 3 / Qwen2 / Qwen3.5 pattern, matched by hand as llama.cpp does.
    fn modern(mut self, digits: usize, marks: bool) {
        let letter_mask = if marks { LETTER | MARK } else { LETTER };
        let not_other = WHITESPACE | NUMBER | letter_mask;
        let is_nl = |c: Option<char>| matches!(c, Some('\r' | '\n'));
        let mut pos = self.lo;
        while pos < self.hi {
            let start = pos;
            let c = self.cps[pos];
            let f = self.f(pos);
            // `(?i:'s|'t|'re|'ve|'m|'ll|'d)`
            if c == '\'' && pos + 1 < self.hi {
                let n = self.cps[pos + 1].to_ascii_lowercase();
                if matches!(n, 's' | 't' | 'm' | 'd') {
                    pos += 2;
                    self.push(start..pos);
                    continue;
                }
                if pos + 2 < self.hi {
                    let nn = self.cps[pos + 2].to_ascii_lowercase();
                    if matches!((n, nn), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                        pos += 3;
                        self.push(start..pos);
                        continue;
                    }
                }
            }
            // `[^\r\n\p{L}\p{N}]?\p{L}+`
            if !(c == '\r' || c == '\n' || f & NUMBER != 0)
                && (f & letter_mask != 0 || self.f(pos + 1) & letter_mask != 0)
            {
                pos += 1;
                while self.f(pos) & letter_mask != 0 {
                    pos += 1;
                }
                self.push(start..pos);
                continue;
            }
            // `\p{N}{1,digits}`
            if f & NUMBER != 0 {
                let mut ini = pos;
                while self.f(pos) & NUMBER != 0 {
                    pos += 1;
                    if pos - ini >= digits {
                        self.push(ini..pos);
                        ini = pos;
                    }
                }
                self.push(ini..pos);
                continue;
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let mut f2 = if c == ' ' { self.f(pos + 1) } else { f };
            if f2 & not_other == 0 && f != 0 {
                pos += usize::from(c == ' ');
                while f2 & not_other == 0 && f2 != 0 {
                    pos += 1;
                    f2 = self.f(pos);
                }
                while is_nl(self.c(pos)) {
                    pos += 1;
                }
                self.push(start..pos);
                continue;
            }
            let mut n_ws = 0;
            let mut last_nl_end = 0;
            while self.f(pos + n_ws) & WHITESPACE != 0 {
                if is_nl(self.c(pos + n_ws)) {
                    last_nl_end = pos + n_ws + 1;
                }
                n_ws += 1;
            }
            pos = if last_nl_end > 0 {
                last_nl_end // `\s*[\r\n]+`
            } else if n_ws > 1 && pos + n_ws < self.hi {
                pos + n_ws - 1 // `\s+(?!\S)`
            } else if n_ws > 0 {
                pos + n_ws // `\s+`
            } else {
                pos + 1
            };
            self.push(start..pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: &str, text: &str) -> Vec<String> {
        let p = PreTokenizer::for_name(pre).unwrap();
        p.split(text).into_iter().map(|r| text[r].to_string()).collect()
    }

    #[test]
    fn gpt2_basics() {
        assert_eq!(words("gpt-2", "Hello world"), ["Hello", " world"]);
        assert_eq!(words("gpt-2", "I'm   here!!\n"), ["I", "'m", "  ", " here", "!!", "\n"]);
        assert_eq!(words("gpt-2", "a  "), ["a", "  "]);
        assert_eq!(words("gpt-2", "x123 45"), ["x", "123", " 45"]);
    }

    #[test]
    fn smollm_splits_digits() {
        assert_eq!(words("smollm", "ab 123"), ["ab", " ", "1", "2", "3"]);
    }

    #[test]
    fn qwen2_and_llama3() {
        assert_eq!(words("qwen2", "Don'T 1234"), ["Don", "'T", " ", "1", "2", "3", "4"]);
        assert_eq!(words("llama-bpe", "1234567"), ["123", "456", "7"]);
        assert_eq!(words("qwen2", "a \n\n b"), ["a", " \n\n", " b"]);
        assert_eq!(words("qwen2", "x;\n\ny"), ["x", ";\n\n", "y"]);
        assert_eq!(words("qwen2", "   x"), ["  ", " x"]);
        assert_eq!(words("qwen2", ""), Vec::<String>::new());
    }

    #[test]
    fn default_and_falcon() {
        assert_eq!(words("default", "a, b 12345"), ["a", ",", " b", " ", "123", "45"]);
        assert_eq!(words("falcon", "x`y"), ["x", "`", "y"]);
    }
}
