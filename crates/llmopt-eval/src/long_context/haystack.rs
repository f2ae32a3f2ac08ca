//! The haystack as tokens with its line starts, the needle prompt's fixed texts, and the plan of
//! one needle trial: which window of the haystack, which value, and where the needle goes for each
//! depth. Prompts are spliced at the token level, so a prompt's length is exact.

use super::{LongContextConfig, LongContextError, TextCodec};

/// Opens every needle prompt (after BOS): tells the model what to look for.
pub const PREAMBLE: &str =
    "A secret passphrase is hidden in the text below. Find it and remember it.\n\n";

/// Ends every needle prompt; the model's greedy continuation is the answer.
pub const QUESTION: &str = "\n\nWhat is the secret passphrase? The secret passphrase is";

/// Fewest haystack tokens a needle prompt may hold.
pub const MIN_WINDOW: usize = 64;

/// The needle sentence for `value`; it ends its line, as the haystack line it is put before starts one.
pub fn needle_text(value: u32) -> String {
    format!("The secret passphrase is {value}.\n")
}

/// Whether `answer` holds `value` as a whole number (not inside a longer run of digits).
pub fn answer_matches(answer: &str, value: u32) -> bool {
    let want = value.to_string();
    answer.split(|c: char| !c.is_ascii_digit()).any(|run| run == want)
}

/// Tokens of the haystack text and the positions where its lines start.
#[derive(Clone, Debug)]
pub struct Haystack {
    tokens: Vec<u32>,
    /// Sorted: 0 and every position right after a token whose text ends with a newline.
    line_starts: Vec<usize>,
}

impl Haystack {
    /// Tokenizes `text` (no special tokens) and finds its line starts.
    pub fn new(text: &str, codec: &dyn TextCodec) -> Self {
        let tokens = codec.encode(text);
        let mut ends_line = std::collections::HashMap::new();
        let mut line_starts = vec![0];
        for (i, &t) in tokens.iter().enumerate() {
            if *ends_line.entry(t).or_insert_with(|| codec.decode(&[t]).ends_with('\n')) {
                line_starts.push(i + 1);
            }
        }
        Self { tokens, line_starts }
    }

    /// The haystack's tokens.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Sorted positions where a line starts (0 included).
    pub fn line_starts(&self) -> &[usize] {
        &self.line_starts
    }

    /// Number of line starts `s` with `s + span <= len`: the windows of `span` tokens that start a
    /// line are the first this many of [`Haystack::line_starts`].
    pub(crate) fn window_starts(&self, span: usize) -> usize {
        self.line_starts.partition_point(|&s| s + span <= self.tokens.len())
    }

    /// The line start nearest to `pos` within `lo..=hi` (the earlier one on a tie), or `pos` when no
    /// line starts there.
    pub(crate) fn nearest_line_start(&self, pos: usize, lo: usize, hi: usize) -> usize {
        let a = self.line_starts.partition_point(|&s| s < lo);
        let b = self.line_starts.partition_point(|&s| s <= hi);
        let starts = &self.line_starts[a..b];
        let i = starts.partition_point(|&s| s < pos);
        let before = i.checked_sub(1).map(|j| starts[j]);
        let after = starts.get(i).copied();
        match (before, after) {
            (Some(x), Some(y)) => {
                if pos - x <= y - pos {
                    x
                } else {
                    y
                }
            }
            (Some(x), None) => x,
            (None, Some(y)) => y,
            (None, None) => pos,
        }
    }
}

/// SplitMix64: a small, fixed generator, so a seed means the same trials in every version.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for one stream of draws (e.g. `[kind, length, trial]`) under `seed`.
    pub(crate) fn stream(seed: u64, parts: &[u64]) -> Self {
        let mut r = Self(seed);
        for &p in parts {
            r.0 ^= p;
            r.0 = r.next_u64();
        }
        r
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in `0..n` (`n > 0`; the modulo bias is below 2^-40 for the sizes used here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Stream tags of [`Rng::stream`].
pub(crate) const STREAM_NEEDLE: u64 = 1;
pub(crate) const STREAM_PERPLEXITY: u64 = 2;

/// The parts every needle prompt shares: BOS and the preamble before the haystack, the question
/// after it.
#[derive(Clone, Debug)]
pub(crate) struct PromptParts {
    pub head: Vec<u32>,
    pub question: Vec<u32>,
}

impl PromptParts {
    pub(crate) fn new(codec: &dyn TextCodec, bos: Option<u32>) -> Self {
        let mut head: Vec<u32> = bos.into_iter().collect();
        head.extend(codec.encode(PREAMBLE));
        Self { head, question: codec.encode(QUESTION) }
    }
}

/// One needle trial at one length: the prompt is `head + window[..p] + needle + window[p..] +
/// question`, with `p = positions[k]` for depth `k`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TrialPlan {
    pub length: usize,
    pub trial: usize,
    pub value: u32,
    /// Haystack position of the window's first token (a line start).
    pub offset: usize,
    /// Haystack tokens in the prompt.
    pub window: usize,
    pub needle: Vec<u32>,
    /// Per depth (in the order asked): window tokens before the needle (a line start).
    pub positions: Vec<usize>,
}

impl TrialPlan {
    /// Tokens of each of the trial's prompts.
    pub(crate) fn prompt_tokens(&self, parts: &PromptParts) -> usize {
        parts.head.len() + self.window + self.needle.len() + parts.question.len()
    }
}

/// Plans trial `trial` at `length`: a value and a window from the trial's random stream, then the
/// needle position nearest each depth. The prompt leaves `cfg.answer_tokens` of `length` for the
/// answer.
pub(crate) fn plan_trial(
    hay: &Haystack,
    parts: &PromptParts,
    codec: &dyn TextCodec,
    cfg: &LongContextConfig,
    length: usize,
    trial: usize,
) -> Result<TrialPlan, LongContextError> {
    let mut rng = Rng::stream(cfg.seed, &[STREAM_NEEDLE, length as u64, trial as u64]);
    let value = 1_000_000 + rng.below(9_000_000) as u32;
    let needle = codec.encode(&needle_text(value));
    let fixed = parts.head.len() + parts.question.len() + needle.len() + cfg.answer_tokens;
    let window = length
        .checked_sub(fixed)
        .filter(|&w| w >= MIN_WINDOW)
        .ok_or(LongContextError::LengthTooShort { length, min: fixed + MIN_WINDOW })?;
    let n_starts = hay.window_starts(window);
    if n_starts == 0 {
        return Err(LongContextError::HaystackTooShort {
            tokens: hay.tokens.len(),
            needed: window,
        });
    }
    let offset = hay.line_starts[rng.below(n_starts)];
    let positions = cfg
        .depths
        .iter()
        .map(|&d| {
            let target = offset + (d * window as f64).round() as usize;
            hay.nearest_line_start(target, offset, offset + window) - offset
        })
        .collect();
    Ok(TrialPlan { length, trial, value, offset, window, needle, positions })
}

/// The full prompt of `plan` at depth index `k` (the runner feeds the same tokens in pieces).
#[cfg(test)]
pub(crate) fn prompt(hay: &Haystack, parts: &PromptParts, plan: &TrialPlan, k: usize) -> Vec<u32> {
    let w = &hay.tokens[plan.offset..plan.offset + plan.window];
    let p = plan.positions[k];
    [&parts.head[..], &w[..p], &plan.needle, &w[p..], &parts.question].concat()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One token per character (its code point); `\u{1}` ends generation.
    pub(crate) struct Chars;

    impl TextCodec for Chars {
        fn encode(&self, text: &str) -> Vec<u32> {
            text.chars().map(u32::from).collect()
        }
        fn decode(&self, tokens: &[u32]) -> String {
            tokens.iter().filter_map(|&t| char::from_u32(t)).collect()
        }
        fn is_eog(&self, token: u32) -> bool {
            token == 1
        }
    }

    pub(crate) fn cfg(depths: &[f64], seed: u64, answer_tokens: usize) -> LongContextConfig {
        LongContextConfig {
            depths: depths.to_vec(),
            seed,
            answer_tokens,
            ..LongContextConfig::default()
        }
    }

    /// Lines of 10 characters (9 letters and a newline).
    pub(crate) fn lines(n: usize) -> String {
        (0..n)
            .map(|i| format!("{}\n", char::from(b'a' + (i % 26) as u8).to_string().repeat(9)))
            .collect()
    }

    #[test]
    fn line_starts_follow_newlines() {
        let h = Haystack::new("ab\ncd\n\nef", &Chars);
        assert_eq!(h.line_starts(), [0, 3, 6, 7]);
        assert_eq!(h.window_starts(2), 4);
        assert_eq!(h.window_starts(4), 2);
        assert_eq!(h.nearest_line_start(5, 0, 9), 6);
        assert_eq!(h.nearest_line_start(1, 0, 9), 0);
        // A tie goes to the earlier start; bounds are respected.
        assert_eq!(h.nearest_line_start(4, 0, 9), 3);
        assert_eq!(h.nearest_line_start(1, 2, 9), 3);
        assert_eq!(h.nearest_line_start(8, 8, 9), 8);
    }

    #[test]
    fn answers_match_whole_numbers_only() {
        assert!(answer_matches(" 4829163.", 4829163));
        assert!(answer_matches("4829163", 4829163));
        assert!(answer_matches(" is 12, no: 4829163!", 4829163));
        assert!(!answer_matches(" 48291630", 4829163));
        assert!(!answer_matches(" 482916", 4829163));
        assert!(!answer_matches(" 4 829 163", 4829163));
        assert!(!answer_matches("", 4829163));
    }

    #[test]
    fn needle_goes_at_the_line_start_nearest_each_depth() {
        let hay = Haystack::new(&lines(200), &Chars);
        let parts = PromptParts::new(&Chars, Some(0));
        let depths = [0.0, 0.25, 0.5, 0.75, 1.0];
        let cfg = cfg(&depths, 7, 10);
        for trial in 0..5 {
            let plan = plan_trial(&hay, &parts, &Chars, &cfg, 400, trial).unwrap();
            assert_eq!(plan.offset % 10, 0, "windows start a line");
            assert_eq!(plan.needle, Chars.encode(&needle_text(plan.value)));
            assert!((1_000_000..10_000_000).contains(&plan.value));
            for (&d, &p) in depths.iter().zip(&plan.positions) {
                // Every line start is 10 tokens apart: the nearest is within 5 of the depth.
                assert_eq!(p % 10, 0, "at a line start");
                let target = d * plan.window as f64;
                assert!((p as f64 - target).abs() <= 5.0 + 1e-9, "depth {d}: {p} vs {target}");
                assert!(p <= plan.window);
                let prompt = prompt(&hay, &parts, &plan, 0);
                let text = Chars.decode(&prompt);
                assert!(text.starts_with(&format!("\0{PREAMBLE}")), "{text}");
                assert!(text.ends_with(QUESTION));
            }
            let text = Chars.decode(&prompt(&hay, &parts, &plan, 2));
            let at = text.find("The secret").unwrap();
            assert!(text[..at].ends_with('\n'), "the needle starts a line");
            assert!(text[at..].contains(&format!("{}.\n", plan.value)));
        }
    }

    #[test]
    fn prompt_fills_the_length_less_the_answer() {
        let hay = Haystack::new(&lines(3000), &Chars);
        let parts = PromptParts::new(&Chars, None);
        for length in [300, 1000, 4096] {
            let plan = plan_trial(&hay, &parts, &Chars, &cfg(&[0.5], 1, 12), length, 0).unwrap();
            let n = prompt(&hay, &parts, &plan, 0).len();
            assert_eq!(n, length - 12);
            assert_eq!(plan.prompt_tokens(&parts), n);
        }
    }

    #[test]
    fn trials_differ_and_repeat_under_a_seed() {
        let hay = Haystack::new(&lines(3000), &Chars);
        let parts = PromptParts::new(&Chars, None);
        let plan = |trial, seed| {
            plan_trial(&hay, &parts, &Chars, &cfg(&[0.5], seed, 8), 500, trial).unwrap()
        };
        assert_eq!(plan(0, 3), plan(0, 3));
        assert_ne!(plan(0, 3).value, plan(1, 3).value);
        assert_ne!(plan(0, 3).value, plan(0, 4).value);
    }

    #[test]
    fn short_lengths_and_haystacks_are_errors() {
        let parts = PromptParts::new(&Chars, None);
        let hay = Haystack::new(&lines(20), &Chars);
        let cfg = cfg(&[0.5], 0, 8);
        let e = plan_trial(&hay, &parts, &Chars, &cfg, 100, 0).unwrap_err();
        assert!(matches!(e, LongContextError::LengthTooShort { length: 100, .. }), "{e}");
        let e = plan_trial(&hay, &parts, &Chars, &cfg, 1000, 0).unwrap_err();
        assert!(matches!(e, LongContextError::HaystackTooShort { tokens: 200, .. }), "{e}");
    }
}
