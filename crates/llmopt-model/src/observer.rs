//! Hooks that see the input and output of every Linear during a forward pass (calibration
//! statistics, activation ranges) and, when asked, the time of each step (profiling).

use std::time::Instant;

/// The kinds of work a forward pass does, as a profile groups them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Token embedding lookup (and Gemma's scale).
    Embedding,
    /// RMSNorms (pre, post, q/k) and residual adds.
    Norms,
    /// The Q, K, V and output projections.
    AttentionProj,
    /// Rope, the KV-cache write, scores, softmax and value sums.
    AttentionCore,
    /// Gate/up, the gated activation and down.
    Mlp,
    /// The final norm and the vocabulary projection.
    Output,
}

/// Receives each Linear's input and output rows (`n_tok` rows, row-major), and step timings.
pub trait Observer {
    /// Called after `name` (a GGUF weight name) ran on `n_tok` rows.
    fn on_linear(&mut self, name: &str, n_tok: usize, input: &[f32], output: &[f32]);

    /// Whether the forward should time its steps and call [`Observer::on_step`]. Off by default,
    /// so calibration observers pay nothing for it.
    fn wants_timing(&self) -> bool {
        false
    }

    /// `seconds` of wall time spent in `step` of `layer` (`None`: outside the layers).
    fn on_step(&mut self, _layer: Option<usize>, _step: Step, _seconds: f64) {}
}

/// Times consecutive steps of a forward call: each [`Clock::lap`] reports the time since the
/// previous lap to the observer. Inert (no clock reads) when the observer does not want timing.
pub(crate) struct Clock(Option<Instant>);

impl Clock {
    pub(crate) fn start(obs: &Option<&mut dyn Observer>) -> Self {
        Self(obs.as_ref().filter(|o| o.wants_timing()).map(|_| Instant::now()))
    }

    /// Reports the time since the last lap as `step` of `layer`.
    pub(crate) fn lap(
        &mut self,
        obs: &mut Option<&mut dyn Observer>,
        layer: Option<usize>,
        step: Step,
    ) {
        if let (Some(last), Some(o)) = (self.0.as_mut(), obs.as_deref_mut()) {
            let now = Instant::now();
            o.on_step(layer, step, now.duration_since(*last).as_secs_f64());
            *last = now;
        }
    }
}
