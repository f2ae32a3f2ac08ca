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

/// Two observers of one pass (an importance matrix and a method's own statistics, say), each
/// called in turn with the same rows.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_linear(&mut self, name: &str, n_tok: usize, input: &[f32], output: &[f32]) {
        self.0.on_linear(name, n_tok, input, output);
        self.1.on_linear(name, n_tok, input, output);
    }

    fn wants_timing(&self) -> bool {
        self.0.wants_timing() || self.1.wants_timing()
    }

    fn on_step(&mut self, layer: Option<usize>, step: Step, seconds: f64) {
        for o in [&mut self.0 as &mut dyn Observer, &mut self.1] {
            if o.wants_timing() {
                o.on_step(layer, step, seconds);
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what it sees; wants timing when told to.
    #[derive(Default)]
    struct Count {
        timed: bool,
        rows: usize,
        names: Vec<String>,
        steps: usize,
    }

    impl Observer for Count {
        fn on_linear(&mut self, name: &str, n_tok: usize, input: &[f32], output: &[f32]) {
            assert_eq!((input.len() % n_tok, output.len() % n_tok), (0, 0));
            self.rows += n_tok;
            self.names.push(name.to_string());
        }
        fn wants_timing(&self) -> bool {
            self.timed
        }
        fn on_step(&mut self, _: Option<usize>, _: Step, _: f64) {
            self.steps += 1;
        }
    }

    #[test]
    fn a_pair_sees_every_call_and_times_only_for_the_one_that_asks() {
        let mut pair = (Count::default(), Count { timed: true, ..Count::default() });
        assert!(pair.wants_timing());
        pair.on_linear("blk.0.attn_q.weight", 2, &[1.0; 6], &[0.5; 4]);
        pair.on_linear("output.weight", 3, &[1.0; 9], &[0.5; 3]);
        pair.on_step(Some(0), Step::Mlp, 0.25);
        for c in [&pair.0, &pair.1] {
            assert_eq!(c.rows, 5);
            assert_eq!(c.names, ["blk.0.attn_q.weight", "output.weight"]);
        }
        assert_eq!((pair.0.steps, pair.1.steps), (0, 1));
        assert!(!(Count::default(), Count::default()).wants_timing());
    }
}
