//! Sampling settings as a request carries them, with the ranges they must lie in. The sampler that
//! applies them is the engine's; the settings live here so clients validate them at the edge.

/// Sampling settings, validated by [`SamplerConfig::validate`].
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy; otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1 = all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0 = off).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this (1 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at (and, with
    /// [`PenaltyScope::Recent`], the frequency and presence penalties too).
    pub repeat_last_n: usize,
    /// Subtracted from a token's logit once per occurrence (OpenAI's; 0 = off).
    pub frequency_penalty: f32,
    /// Subtracted once from the logit of every token that occurred (OpenAI's; 0 = off).
    pub presence_penalty: f32,
    /// Which tokens the frequency and presence penalties count.
    pub penalty_scope: PenaltyScope,
    pub seed: u64,
}

/// Which tokens the frequency and presence penalties count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PenaltyScope {
    /// llama.cpp's: the last `repeat_last_n` tokens, the prompt's included.
    #[default]
    Recent,
    /// OpenAI's: every token generated so far, and none of the prompt's. Its API defines the
    /// count as how often a token "was sampled prior to the current position".
    Generated,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_scope: PenaltyScope::Recent,
            seed: 0,
        }
    }
}

/// An invalid sampling setting.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplerError {
    #[error("invalid {name} {value}: {expected}")]
    Invalid { name: &'static str, value: String, expected: &'static str },
}

impl SamplerConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let bad = |name, value: f32, expected| {
            Err(SamplerError::Invalid { name, value: value.to_string(), expected })
        };
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", self.temperature, "must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p", self.top_p, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p", self.min_p, "must be in [0, 1]");
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad("repeat-penalty", self.repeat_penalty, "must be a finite number > 0");
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return bad("frequency-penalty", self.frequency_penalty, "must be in [-2, 2]");
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return bad("presence-penalty", self.presence_penalty, "must be in [-2, 2]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_are_named() {
        let ok = SamplerConfig { temperature: 1.0, ..SamplerConfig::default() };
        assert_eq!(ok.validate(), Ok(()));
        for (c, name) in [
            (SamplerConfig { temperature: -1.0, ..ok.clone() }, "temperature"),
            (SamplerConfig { temperature: f32::NAN, ..ok.clone() }, "temperature"),
            (SamplerConfig { top_p: 0.0, ..ok.clone() }, "top-p"),
            (SamplerConfig { top_p: 1.5, ..ok.clone() }, "top-p"),
            (SamplerConfig { min_p: -0.1, ..ok.clone() }, "min-p"),
            (SamplerConfig { repeat_penalty: 0.0, ..ok.clone() }, "repeat-penalty"),
            (SamplerConfig { frequency_penalty: 2.5, ..ok.clone() }, "frequency-penalty"),
            (SamplerConfig { presence_penalty: -3.0, ..ok.clone() }, "presence-penalty"),
        ] {
            let err = c.validate().unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
