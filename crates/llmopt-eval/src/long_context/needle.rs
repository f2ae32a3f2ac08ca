//! Running one needle trial: every depth of it in one sequence, sharing the prompt's prefix.

use super::{
    haystack::{answer_matches, Haystack, PromptParts, TrialPlan},
    session::Session,
    LongContextConfig, LongContextError, NeedleResult, TextCodec,
};

/// What every trial of a run shares.
pub(crate) struct Trials<'a> {
    pub hay: &'a Haystack,
    pub parts: &'a PromptParts,
    pub codec: &'a dyn TextCodec,
    pub cfg: &'a LongContextConfig,
}

/// Depth indices of `plan` in order of needle position (stable, so equal positions keep their order).
fn depth_order(plan: &TrialPlan) -> Vec<usize> {
    let mut order: Vec<usize> = (0..plan.positions.len()).collect();
    order.sort_by_key(|&k| plan.positions[k]);
    order
}

impl Trials<'_> {
    /// Tokens fed for each depth of `plan` (indexed as the depths), counting the answer at its
    /// longest: the extension of the shared prefix up to the needle, then needle, rest of the
    /// window, question and answer. The depth that runs first also counts the head.
    pub(crate) fn costs(&self, plan: &TrialPlan) -> Vec<usize> {
        let mut costs = vec![0; plan.positions.len()];
        let mut fed = 0;
        for (i, k) in depth_order(plan).into_iter().enumerate() {
            let p = plan.positions[k];
            let head = if i == 0 { self.parts.head.len() } else { 0 };
            let tail = plan.needle.len() + plan.window - p + self.parts.question.len();
            costs[k] = head + (p - fed) + tail + self.cfg.answer_tokens;
            fed = p;
        }
        costs
    }

    /// When an answer ends: at an end-of-generation token, or at a line break after some text.
    fn stop(&self) -> impl FnMut(u32) -> bool + '_ {
        let mut text = false;
        move |t| {
            if self.codec.is_eog(t) {
                return true;
            }
            let piece = self.codec.decode(&[t]);
            let ends = text && piece.contains('\n');
            text |= !piece.trim().is_empty();
            ends
        }
    }

    /// Runs every depth of `plan` and appends the results to `out` (in the order of the depths).
    /// `on_depth(depth, cost)` is called before each depth runs.
    pub(crate) fn run(
        &self,
        s: &mut Session<'_>,
        plan: &TrialPlan,
        out: &mut Vec<NeedleResult>,
        on_depth: &mut dyn FnMut(f64, usize),
    ) -> Result<(), LongContextError> {
        let seq = s.kv.add_sequence();
        let result = self.run_in(s, seq, plan, out, on_depth);
        s.kv.remove_sequence(seq);
        result
    }

    fn run_in(
        &self,
        s: &mut Session<'_>,
        seq: llmopt_model::SeqId,
        plan: &TrialPlan,
        out: &mut Vec<NeedleResult>,
        on_depth: &mut dyn FnMut(f64, usize),
    ) -> Result<(), LongContextError> {
        let window = &self.hay.tokens()[plan.offset..plan.offset + plan.window];
        let costs = self.costs(plan);
        let first = out.len();
        let mut results: Vec<Option<NeedleResult>> = vec![None; plan.positions.len()];
        let mut tail = Vec::with_capacity(plan.window + plan.needle.len() + 64);
        s.feed(seq, &self.parts.head, false)?;
        let mut fed = 0;
        for k in depth_order(plan) {
            let depth = self.cfg.depths[k];
            on_depth(depth, costs[k]);
            let p = plan.positions[k];
            s.feed(seq, &window[fed..p], false)?;
            fed = p;
            let keep = self.parts.head.len() + p;
            tail.clear();
            tail.extend_from_slice(&plan.needle);
            tail.extend_from_slice(&window[p..]);
            tail.extend_from_slice(&self.parts.question);
            let next = s.feed(seq, &tail, true)?.unwrap_or(0);
            let answer = s.greedy(seq, next, self.cfg.answer_tokens, &mut self.stop())?;
            s.kv.truncate(seq, keep)?;
            let answer = self.codec.decode(&answer);
            results[k] = Some(NeedleResult {
                length: plan.length,
                depth_index: k,
                depth,
                trial: plan.trial,
                value: plan.value,
                offset: plan.offset,
                needle_at: keep,
                actual_depth: p as f64 / plan.window as f64,
                prompt_tokens: plan.prompt_tokens(self.parts),
                correct: answer_matches(&answer, plan.value),
                answer,
            });
        }
        out.extend(results.into_iter().flatten());
        debug_assert_eq!(out.len() - first, plan.positions.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::long_context::haystack::{
        plan_trial,
        tests::{cfg, lines, Chars},
    };

    #[test]
    fn costs_add_up_to_prefix_once_plus_each_tail() {
        let hay = Haystack::new(&lines(500), &Chars);
        let parts = PromptParts::new(&Chars, Some(0));
        let cfg = cfg(&[1.0, 0.0, 0.5], 3, 10);
        let plan = plan_trial(&hay, &parts, &Chars, &cfg, 1000, 0).unwrap();
        let t = Trials { hay: &hay, parts: &parts, codec: &Chars, cfg: &cfg };
        let costs = t.costs(&plan);
        let tails: usize = plan
            .positions
            .iter()
            .map(|&p| plan.needle.len() + plan.window - p + parts.question.len() + 10)
            .sum();
        let max_p = plan.positions.iter().max().unwrap();
        assert_eq!(costs.iter().sum::<usize>(), parts.head.len() + max_p + tails);
        // Depth 0 runs first: it carries the head.
        assert_eq!(
            costs[1],
            parts.head.len() + plan.needle.len() + plan.window + parts.question.len() + 10
        );
        assert_eq!(depth_order(&plan), [1, 2, 0]);
    }
}
