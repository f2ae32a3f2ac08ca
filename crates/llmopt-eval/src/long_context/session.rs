//! The model with one KV cache and workspace, sized once for the largest length and reused by every
//! trial and chunk: feeding long inputs in chunks, and greedy continuation.

use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, ModelError, SeqId, SeqInput, Workspace};

/// Prompt tokens per forward call when no logits (or only the last) are needed, as the engine's
/// prefill.
pub(crate) const PREFILL_CHUNK: usize = 512;

pub(crate) struct Session<'a> {
    pub model: &'a Model,
    pub pool: &'a ThreadPool,
    pub kv: KvCache,
    pub ws: Workspace,
}

/// Index of the largest value (the first on ties).
pub(crate) fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

impl Session<'_> {
    /// Appends `tokens` to `seq` in calls of at most [`PREFILL_CHUNK`] tokens; with `last`, returns
    /// the greedy next token after them.
    pub(crate) fn feed(
        &mut self,
        seq: SeqId,
        tokens: &[u32],
        last: bool,
    ) -> Result<Option<u32>, ModelError> {
        let n = tokens.len().div_ceil(PREFILL_CHUNK);
        let mut next = None;
        for (i, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let want = last && i + 1 == n;
            let logits = if want { Logits::Last } else { Logits::None };
            let out = self.model.forward(
                self.pool,
                &[SeqInput { seq, tokens: chunk, logits }],
                &mut self.kv,
                &mut self.ws,
                None,
            )?;
            if want {
                next = Some(argmax(out));
            }
        }
        Ok(next)
    }

    /// Greedy continuation of `seq` from `first` (the token its last logits chose): at most `max`
    /// tokens, ending before a token for which `stop` is true.
    pub(crate) fn greedy(
        &mut self,
        seq: SeqId,
        first: u32,
        max: usize,
        stop: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Vec<u32>, ModelError> {
        let mut out = Vec::with_capacity(max);
        let mut tok = first;
        while out.len() < max && !stop(tok) {
            out.push(tok);
            if out.len() == max {
                break;
            }
            let logits = self.model.forward(
                self.pool,
                &[SeqInput { seq, tokens: &[tok], logits: Logits::Last }],
                &mut self.kv,
                &mut self.ws,
                None,
            )?;
            tok = argmax(logits);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_takes_the_first_largest() {
        assert_eq!(super::argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(super::argmax(&[0.5]), 0);
    }
}
