//! The adaptive batch policy: how many tokens the next step may take. With a step-latency target,
//! prefill chunks are sized so decode steps stay near it while sequences are decoding, and the
//! budget opens to the maximum when the queue is deeper than the running set (drain it first).

/// Sizes each step's token budget from the queue, the running set and the measured step cost.
#[derive(Clone, Debug)]
pub struct BudgetPolicy {
    max: usize,
    target: Option<f64>,
    /// Moving average of seconds per token over steps that carried prefill.
    per_token_s: Option<f64>,
}

/// Weight of a new observation in the moving average.
const ALPHA: f64 = 0.2;

impl BudgetPolicy {
    pub fn new(max: usize, target: Option<f64>) -> Self {
        Self { max: max.max(2), target, per_token_s: None }
    }

    /// The next step's budget, given requests waiting and sequences decoding.
    pub fn budget(&self, queued: usize, decoding: usize) -> usize {
        let (Some(target), Some(per)) = (self.target, self.per_token_s) else { return self.max };
        if decoding == 0 || queued > decoding {
            return self.max;
        }
        let room = (target / per).floor().max(0.0) as usize;
        // Every decoding sequence gets its token, and prefill keeps moving (16 more at least).
        room.clamp((decoding + 16).min(self.max), self.max)
    }

    /// Learns from a finished step: `tokens` in `seconds`, `decoding` of them decode tokens.
    /// Decode-only steps are left out: their cost is dominated by reading the weights once.
    pub fn observe(&mut self, tokens: usize, decoding: usize, seconds: f64) {
        if tokens <= decoding || !seconds.is_finite() {
            return;
        }
        let per = seconds / tokens as f64;
        self.per_token_s = Some(self.per_token_s.map_or(per, |p| (1.0 - ALPHA) * p + ALPHA * per));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_target_or_decoders_the_budget_is_the_maximum() {
        let p = BudgetPolicy::new(512, None);
        assert_eq!(p.budget(0, 10), 512);
        let mut p = BudgetPolicy::new(512, Some(0.05));
        assert_eq!(p.budget(0, 10), 512, "nothing observed yet");
        p.observe(100, 10, 0.1);
        assert_eq!(p.budget(3, 0), 512, "no decoders to protect");
        assert_eq!(p.budget(20, 10), 512, "a deep queue drains first");
    }

    #[test]
    fn a_latency_target_shrinks_prefill_to_fit() {
        let mut p = BudgetPolicy::new(512, Some(0.05));
        // 0.5 ms per token, learnt over mixed steps; decode-only steps teach nothing.
        for _ in 0..50 {
            p.observe(8, 8, 0.02);
            p.observe(200, 8, 200.0 * 0.0005);
        }
        assert_eq!(p.budget(2, 8), 100);
        // A tighter target gives less, never under the decoders plus 16.
        let mut tight = p.clone();
        tight.target = Some(0.001);
        assert_eq!(tight.budget(2, 8), 24);
    }
}
