//! One engine step's two halves: planning (decode tokens first, preempting the newest sequence
//! when blocks run out, then prefill chunks in the budget left) and what follows the forward call
//! (sampling, events, forks for `n > 1`, prefix-cache registration, finished sequences).

use crate::{
    engine::{Engine, Phase, Planned, Seq},
    request::{logprobs, Event, FinishReason, RequestId},
    Sampler, SamplerConfig,
};

impl Engine {
    /// Plans a step of at most `budget` tokens whose KV blocks are free (evicting idle prefix-cache
    /// blocks, and preempting the newest sequences for decode tokens, as needed).
    pub(crate) fn plan(&mut self, budget: usize) -> Vec<Planned> {
        // Decode tokens need blocks first: preempt the newest sequences until they all fit.
        loop {
            let need: usize = self
                .running
                .iter()
                .filter(|s| s.phase == Phase::Decode)
                .map(|s| self.blocks_for(s, s.computed + 1))
                .sum();
            if self.make_room(need) || !self.preempt_newest() {
                break;
            }
        }
        let mut order: Vec<usize> = (0..self.running.len()).collect();
        order.sort_by_key(|&i| self.running[i].arrival);
        let mut plan = Vec::new();
        let mut left = budget;
        // Blocks the planned inputs will take from the free list (the forward reserves them).
        let mut taken = 0;
        for &i in &order {
            let s = &self.running[i];
            if s.phase != Phase::Decode || left == 0 {
                continue;
            }
            let need = self.blocks_for(s, s.computed + 1);
            if self.make_room(taken + need) {
                taken += need;
                plan.push(Planned { seq: i, len: 1, wants_logits: true });
                left -= 1;
            }
        }
        for &i in &order {
            let s = &self.running[i];
            if s.phase != Phase::Prefill || left == 0 {
                continue;
            }
            let rest = s.tokens.len() - s.computed;
            let mut len = rest.min(left);
            // Never leave one token for later: it would run alone, in the other precision.
            if len < rest && rest - len == 1 {
                len -= 1;
            }
            if len == 0 {
                continue;
            }
            let need = self.blocks_for(s, s.computed + len);
            if !self.make_room(taken + need) {
                break;
            }
            taken += need;
            let s = &self.running[i];
            plan.push(Planned { seq: i, len, wants_logits: s.computed + len == s.tokens.len() });
            left -= len;
        }
        plan
    }

    fn blocks_for(&self, s: &Seq, len: usize) -> usize {
        s.kv.and_then(|kv| self.kv.blocks_needed(kv, len).ok()).unwrap_or(0)
    }

    /// Moves the most recently admitted running sequence back to the queue, dropping its KV (it
    /// resumes by recomputing its tokens). False when nothing can be preempted.
    fn preempt_newest(&mut self) -> bool {
        if self.running.len() <= 1 {
            return false;
        }
        let Some(i) = (0..self.running.len()).max_by_key(|&i| self.running[i].arrival) else {
            return false;
        };
        let mut s = self.running.swap_remove(i);
        if let Some(kv) = s.kv.take() {
            self.kv.remove_sequence(kv);
        }
        s.computed = 0;
        self.metrics.preemptions += 1;
        // Oldest first among the preempted.
        let at =
            self.swapped.iter().position(|o| o.arrival > s.arrival).unwrap_or(self.swapped.len());
        self.swapped.insert(at, s);
        true
    }

    /// Applies a forward call's results: advance, sample, emit, fork, finish.
    pub(crate) fn after_forward(&mut self, plan: &[Planned], logits: &[f32]) {
        let vocab = self.model.config.vocab_size;
        let context = self.model.config.context_length;
        let mut row = 0;
        let mut gone: Vec<RequestId> = Vec::new();
        let mut forks: Vec<Seq> = Vec::new();
        for p in plan {
            let s = &mut self.running[p.seq];
            s.computed += p.len;
            if p.len > 1 {
                self.metrics.prompt_tokens_computed += p.len as u64;
            }
            if !p.wants_logits {
                continue;
            }
            let l = &logits[row * vocab..(row + 1) * vocab];
            row += 1;
            let first = s.phase == Phase::Prefill && s.generated() == 0 && s.choice == 0;
            let fork_start = forks.len();
            s.phase = Phase::Decode;
            let Some(req) = self.requests.get(&s.req) else { continue };
            let r = req.request.clone();
            if first && r.params.n > 1 {
                // The other choices fork the prompt's blocks (copy-on-write on the shared last one).
                let parent = s.kv.expect("a decoding sequence holds a cache sequence");
                for choice in 1..r.params.n {
                    let Ok(kv) = self.kv.fork_sequence(parent, s.computed) else { break };
                    let cfg = SamplerConfig {
                        seed: r.params.sampling.seed.wrapping_add(choice as u64),
                        ..r.params.sampling.clone()
                    };
                    let Ok(sampler) = Sampler::new(cfg) else { break };
                    forks.push(Seq {
                        req: s.req,
                        choice,
                        kv: Some(kv),
                        tokens: s.tokens.clone(),
                        prompt_len: s.prompt_len,
                        computed: s.computed,
                        phase: Phase::Decode,
                        sampler,
                        arrival: s.arrival,
                        finished: false,
                    });
                }
            }
            let sink = req.sink.clone();
            for seq in std::iter::once(&mut *s).chain(forks[fork_start..].iter_mut()) {
                let token = seq.sampler.sample_after_prompt(l, &seq.tokens, seq.prompt_len);
                let lp = r.params.logprobs.map(|k| logprobs(l, token, k));
                let stop = r.params.stop_tokens.contains(&token);
                if !stop {
                    seq.tokens.push(token);
                    self.metrics.generated_tokens += 1;
                    if !sink.send(Event::Token { choice: seq.choice, token, logprob: lp }) {
                        gone.push(seq.req);
                        continue;
                    }
                }
                let reason = if stop {
                    Some(FinishReason::Stop)
                } else if seq.generated() >= r.params.max_tokens || seq.tokens.len() >= context {
                    Some(FinishReason::Length)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let done = Event::Finished {
                        choice: seq.choice,
                        reason,
                        completion_tokens: seq.generated(),
                    };
                    if !sink.send(done) {
                        gone.push(seq.req);
                    }
                    seq.finished = true;
                }
            }
        }
        self.running.extend(forks);
        self.register_prefixes(plan);
        self.retire(gone);
    }

    /// Remembers the full blocks the step completed in the prefix cache.
    fn register_prefixes(&mut self, plan: &[Planned]) {
        if !self.cfg.prefix_caching {
            return;
        }
        let bs = self.cfg.block_size;
        for p in plan {
            let Some(s) = self.running.get(p.seq) else { continue };
            let Some(kv) = s.kv else { continue };
            // Only when the step filled a block.
            if s.computed / bs == (s.computed - p.len) / bs {
                continue;
            }
            let full = s.computed / bs * bs;
            let tokens = s.tokens[..full].to_vec();
            if let Ok(table) = self.kv.block_table(kv).map(<[u32]>::to_vec) {
                self.prefix.insert(&mut self.kv, &tokens, &table);
            }
        }
    }

    /// Removes finished sequences and requests whose receiver went away.
    fn retire(&mut self, gone: Vec<RequestId>) {
        for id in gone {
            self.drop_request(id);
        }
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].finished {
                let s = self.running.swap_remove(i);
                if let Some(kv) = s.kv {
                    self.kv.remove_sequence(kv);
                }
                if let Some(r) = self.requests.get_mut(&s.req) {
                    if let Some(f) = r.finished.get_mut(s.choice) {
                        *f = true;
                    }
                    r.open -= 1;
                    if r.open == 0 {
                        self.requests.remove(&s.req);
                    }
                }
            } else {
                i += 1;
            }
        }
    }
}
