//! Token sampling in llama.cpp's order: penalties (repetition, frequency, presence), top-k, top-p,
//! min-p, temperature, draw.
//! Temperature 0 is greedy (argmax after the penalty). Buffers are kept, so sampling allocates nothing.

use rand::{rngs::StdRng, Rng, SeedableRng};

pub use llmopt_api::{PenaltyScope, SamplerConfig, SamplerError};

/// Draws tokens from logits.
#[derive(Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: StdRng,
    logits: Vec<f32>,
    cand: Vec<(f32, u32)>,
    /// Scratch for counting the penalised tokens.
    seen: Vec<u32>,
}

impl Sampler {
    /// A sampler with validated settings.
    pub fn new(cfg: SamplerConfig) -> Result<Self, SamplerError> {
        cfg.validate()?;
        let rng = StdRng::seed_from_u64(cfg.seed);
        Ok(Self { cfg, rng, logits: Vec::new(), cand: Vec::new(), seen: Vec::new() })
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token from `logits`, given the tokens so far (`history`, all of them counted
    /// as generated: see [`Sampler::sample_after_prompt`]).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.sample_after_prompt(logits, history, 0)
    }

    /// Picks the next token from `logits`, given the tokens so far: `history` is the prompt's
    /// first `prompt_len` tokens, then the generated ones. The repetition penalty looks at the last
    /// `repeat_last_n` of them; the frequency and presence penalties at those tokens or at the
    /// generated ones, as [`SamplerConfig::penalty_scope`] says.
    pub fn sample_after_prompt(
        &mut self,
        logits: &[f32],
        history: &[u32],
        prompt_len: usize,
    ) -> u32 {
        let c = &self.cfg;
        let counted = c.frequency_penalty != 0.0 || c.presence_penalty != 0.0;
        if c.temperature == 0.0 && c.repeat_penalty == 1.0 && !counted {
            return argmax(logits);
        }
        self.logits.clear();
        self.logits.extend_from_slice(logits);
        let recent = &history[history.len().saturating_sub(c.repeat_last_n)..];
        // Each distinct token is penalised once, with its count, as in llama.cpp: repetition first,
        // then frequency and presence.
        if c.repeat_penalty != 1.0 {
            let p = c.repeat_penalty;
            for_each_count(recent, &mut self.seen, |t, _| {
                if let Some(l) = self.logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / p } else { *l * p };
                }
            });
        }
        if counted {
            let tokens = match c.penalty_scope {
                PenaltyScope::Recent => recent,
                PenaltyScope::Generated => &history[prompt_len.min(history.len())..],
            };
            for_each_count(tokens, &mut self.seen, |t, n| {
                if let Some(l) = self.logits.get_mut(t as usize) {
                    *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
                }
            });
        }
        if c.temperature == 0.0 {
            return argmax(&self.logits);
        }
        self.cand.clear();
        self.cand.extend(self.logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let k =
            if self.cfg.top_k == 0 { self.cand.len() } else { self.cfg.top_k.min(self.cand.len()) };
        if k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, desc);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(desc);
        // Probabilities of the raw logits decide top-p and min-p (temperature comes last).
        let max = self.cand[0].0;
        let z: f32 = self.cand.iter().map(|c| (c.0 - max).exp()).sum();
        let mut keep = self.cand.len();
        let mut cum = 0.0;
        for (i, c) in self.cand.iter().enumerate() {
            cum += (c.0 - max).exp() / z;
            if cum >= self.cfg.top_p {
                keep = i + 1;
                break;
            }
        }
        if self.cfg.min_p > 0.0 {
            let floor = max + self.cfg.min_p.ln();
            keep = keep.min(self.cand.iter().take_while(|c| c.0 >= floor).count().max(1));
        }
        self.cand.truncate(keep);
        let t = self.cfg.temperature;
        let weights_sum: f32 = self.cand.iter().map(|c| ((c.0 - max) / t).exp()).sum();
        let mut r = self.rng.random::<f32>() * weights_sum;
        for c in &self.cand {
            r -= ((c.0 - max) / t).exp();
            if r <= 0.0 {
                return c.1;
            }
        }
        self.cand[self.cand.len() - 1].1
    }
}

/// Calls `f` once per distinct token of `tokens`, in token order, with how often it occurs (sorting
/// a copy in `scratch`: O(n log n), where a pairwise scan would be quadratic in a long answer).
fn for_each_count(tokens: &[u32], scratch: &mut Vec<u32>, mut f: impl FnMut(u32, usize)) {
    scratch.clear();
    scratch.extend_from_slice(tokens);
    scratch.sort_unstable();
    for run in scratch.chunk_by(|a, b| a == b) {
        f(run[0], run.len());
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_scope: PenaltyScope::Recent,
            seed: 7,
        }
    }

    #[test]
    fn greedy_takes_argmax_and_penalty_can_change_it() {
        let logits = [0.1, 2.0, 1.9, -3.0];
        let mut s = Sampler::new(cfg(0.0)).unwrap();
        assert_eq!(s.sample(&logits, &[]), 1);
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 1.2, ..cfg(0.0) }).unwrap();
        assert_eq!(s.sample(&logits, &[1, 1, 1]), 2);
        // Frequency: token 1 seen twice loses 2 × 0.1 = 0.2 and falls below token 2 (1.9).
        let mut s = Sampler::new(SamplerConfig { frequency_penalty: 0.1, ..cfg(0.0) }).unwrap();
        assert_eq!(s.sample(&logits, &[1]), 1, "2.0 - 0.1 still wins");
        assert_eq!(s.sample(&logits, &[1, 3, 1]), 2);
        // Presence: once, however often; a negative value rewards repeats.
        let mut s = Sampler::new(SamplerConfig { presence_penalty: 0.05, ..cfg(0.0) }).unwrap();
        assert_eq!(s.sample(&logits, &[1, 1, 1, 1]), 1, "2.0 - 0.05 still wins");
        let mut s = Sampler::new(SamplerConfig { presence_penalty: -2.0, ..cfg(0.0) }).unwrap();
        assert_eq!(s.sample(&logits, &[0]), 0, "0.1 + 2.0 wins");
    }

    #[test]
    fn openais_penalties_count_generated_tokens_only() {
        let logits = [0.1, 2.0, 1.9, -3.0];
        // The prompt (3 tokens) repeats token 1; nothing is generated yet.
        let history = [1, 1, 1];
        let openai =
            |c: SamplerConfig| SamplerConfig { penalty_scope: PenaltyScope::Generated, ..c };
        for c in [
            SamplerConfig { presence_penalty: 0.5, ..cfg(0.0) },
            SamplerConfig { frequency_penalty: 0.1, ..cfg(0.0) },
        ] {
            let mut llama = Sampler::new(c.clone()).unwrap();
            assert_eq!(
                llama.sample_after_prompt(&logits, &history, 3),
                2,
                "llama.cpp counts the prompt"
            );
            let mut s = Sampler::new(openai(c)).unwrap();
            assert_eq!(s.sample_after_prompt(&logits, &history, 3), 1, "the prompt is not counted");
            // Token 1 generated twice: 2.0 - 0.5 (presence) or - 2 × 0.1 (frequency) < 1.9.
            assert_eq!(s.sample_after_prompt(&logits, &[1, 1, 1, 1, 1], 3), 2);
        }
        // No window: a token generated 100 tokens ago still counts.
        let mut s =
            Sampler::new(openai(SamplerConfig { presence_penalty: 0.5, ..cfg(0.0) })).unwrap();
        let mut long = vec![1u32];
        long.extend(std::iter::repeat_n(0, 100));
        assert_eq!(s.sample_after_prompt(&logits, &long, 0), 2);
        // The repetition penalty keeps its window over prompt and answer alike.
        let mut s =
            Sampler::new(openai(SamplerConfig { repeat_penalty: 1.2, ..cfg(0.0) })).unwrap();
        assert_eq!(s.sample_after_prompt(&logits, &history, 3), 2);
    }

    #[test]
    fn counting_equals_a_pairwise_count() {
        let tokens: Vec<u32> = (0..300u32).map(|i| (i * 7919) % 23).collect();
        let mut got = Vec::new();
        for_each_count(&tokens, &mut Vec::new(), |t, n| got.push((t, n)));
        let mut want: Vec<(u32, usize)> = Vec::new();
        for &t in &tokens {
            if !want.iter().any(|w| w.0 == t) {
                want.push((t, tokens.iter().filter(|&&u| u == t).count()));
            }
        }
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproduces() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
        let mut s = Sampler::new(SamplerConfig { top_k: 1, ..cfg(1.0) }).unwrap();
        assert_eq!(s.sample(&logits, &[]), argmax(&logits));
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg(1.0) }).unwrap();
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = softmax([ln 1, ln 3]) = [0.25, 0.75]
        let logits = [0.0f32, 3f32.ln()];
        let mut s = Sampler::new(cfg(1.0)).unwrap();
        let ones = (0..4000).filter(|_| s.sample(&logits, &[]) == 1).count();
        assert!((2850..3150).contains(&ones), "{ones}");
        // min-p 0.5 drops the token at a third of the best's probability
        let mut s = Sampler::new(SamplerConfig { min_p: 0.5, ..cfg(1.0) }).unwrap();
        assert!((0..200).all(|_| s.sample(&logits, &[]) == 1));
        // top-p 0.7 keeps only the 0.75 token
        let mut s = Sampler::new(SamplerConfig { top_p: 0.7, ..cfg(1.0) }).unwrap();
        assert!((0..200).all(|_| s.sample(&logits, &[]) == 1));
    }
}
