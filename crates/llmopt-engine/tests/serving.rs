//! The serving engine on the real SmolLM2: batching changes no result (16 greedy requests together
//! equal each alone), prefix caching reuses blocks without changing results, `n > 1` forks the
//! prompt, preemption under a small cache still completes everything, cancellation and a dropped
//! receiver free the blocks, and bad requests are refused before admission. Batching, prefix reuse
//! and forks are checked for every KV cache type.

use std::sync::{mpsc, Arc};

use llmopt_engine::{
    Engine, EngineConfig, EngineHandle, Event, FinishReason, PenaltyScope, Request, RequestError,
    RequestParams, SamplerConfig, Sink,
};
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvType, Model, KV_TYPES};

fn model() -> Arc<Model> {
    model_kv(KvType::F16)
}

fn model_kv(kv: KvType) -> Arc<Model> {
    let f = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    let mut m = Model::from_gguf(f).unwrap();
    m.pack_weights();
    m.config = m.config.clone().with_kv_type(kv).unwrap();
    Arc::new(m)
}

/// SmolLM2 with each KV cache type.
fn models() -> impl Iterator<Item = Arc<Model>> {
    KV_TYPES.into_iter().map(|t| model_kv(KvType::new(t).unwrap()))
}

fn greedy() -> SamplerConfig {
    SamplerConfig { temperature: 0.0, ..SamplerConfig::default() }
}

fn request(prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        prompt,
        params: RequestParams {
            max_tokens,
            sampling: greedy(),
            n: 1,
            stop_tokens: vec![],
            logprobs: None,
        },
    }
}

/// Distinct prompts of different lengths (token ids spread over the vocabulary).
fn prompt(i: usize, len: usize) -> Vec<u32> {
    (0..len).map(|j| ((j * 7919 + i * 104_729 + 13) % 49_000) as u32 + 10).collect()
}

/// The tokens of each choice, and each choice's finish reason, from a request's events.
fn outcome(events: &[Event], n: usize) -> (Vec<Vec<u32>>, Vec<Option<FinishReason>>) {
    let mut toks = vec![Vec::new(); n];
    let mut done = vec![None; n];
    for e in events {
        match e {
            Event::Token { choice, token, .. } => toks[*choice].push(*token),
            Event::Finished { choice, reason, completion_tokens } => {
                assert_eq!(*completion_tokens, toks[*choice].len());
                done[*choice] = Some(*reason);
            }
            Event::Error { message } => panic!("engine error: {message}"),
            Event::Started { .. } => {}
        }
    }
    (toks, done)
}

fn run_all(engine: &mut Engine) {
    let mut guard = 0;
    while engine.has_work() {
        engine.step();
        guard += 1;
        assert!(guard < 100_000, "the engine does not finish");
    }
}

fn sink() -> (Sink, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    (Arc::new(tx), rx)
}

fn alone(m: &Arc<Model>, r: &Request) -> Vec<u32> {
    let mut e = Engine::new(
        m.clone(),
        ThreadPool::new(2),
        EngineConfig { prefix_caching: false, ..EngineConfig::default() },
    );
    let (s, rx) = sink();
    e.submit(1, r.clone(), s).unwrap();
    run_all(&mut e);
    let events: Vec<Event> = rx.try_iter().collect();
    outcome(&events, 1).0.remove(0)
}

#[test]
fn sixteen_greedy_requests_together_equal_each_alone() {
    models().for_each(sixteen_together);
}

fn sixteen_together(m: Arc<Model>) {
    let reqs: Vec<Request> = (0..16).map(|i| request(prompt(i, 5 + 23 * i), 12 + i % 5)).collect();
    let want: Vec<Vec<u32>> = reqs.iter().map(|r| alone(&m, r)).collect();
    // A budget that splits the long prompts into chunks and mixes them with decodes.
    let cfg = EngineConfig { max_batch_tokens: 100, ..EngineConfig::default() };
    let mut e = Engine::new(m.clone(), ThreadPool::new(2), cfg);
    let mut rxs = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let (s, rx) = sink();
        e.submit(i as u64, r.clone(), s).unwrap();
        rxs.push(rx);
        // Stagger arrivals: a few steps between submissions.
        for _ in 0..(i % 3) {
            e.step();
        }
    }
    run_all(&mut e);
    for (i, rx) in rxs.iter().enumerate() {
        let events: Vec<Event> = rx.try_iter().collect();
        let (toks, done) = outcome(&events, 1);
        assert_eq!(toks[0], want[i], "request {i} changed in a batch ({} KV)", m.config.kv_type);
        assert_eq!(done[0], Some(FinishReason::Length));
    }
    let mx = e.metrics();
    assert!(
        mx.steps > 0 && mx.generated_tokens as usize == want.iter().map(Vec::len).sum::<usize>()
    );
    assert_eq!(mx.running, 0);
    e.clear_prefix_cache();
    assert_eq!(e.metrics().kv_blocks_used, 0, "every block returned");
}

#[test]
fn openai_penalties_count_the_answer_not_the_prompt() {
    let m = model();
    // A sequence, again, then its start: the model copies it on, so its first greedy token is one
    // the prompt holds.
    let s = prompt(3, 20);
    let p: Vec<u32> = s.iter().chain(&s).chain(&s[..5]).copied().collect();
    let with = |presence_penalty, penalty_scope| Request {
        params: RequestParams {
            sampling: SamplerConfig { presence_penalty, penalty_scope, ..greedy() },
            ..request(p.clone(), 8).params
        },
        ..request(p.clone(), 8)
    };
    let plain = alone(&m, &request(p.clone(), 8));
    assert_eq!(plain[0], s[5], "the model copies the sequence: {plain:?}");
    let openai = alone(&m, &with(2.0, PenaltyScope::Generated));
    let llama = alone(&m, &with(2.0, PenaltyScope::Recent));
    assert_ne!(llama[0], plain[0], "llama.cpp's scope counts the prompt");
    // The copy repeats none of its own tokens, so OpenAI's penalty (on generated tokens) changes
    // nothing, though every one of them is in the prompt.
    let distinct: std::collections::BTreeSet<u32> = plain.iter().copied().collect();
    assert_eq!(distinct.len(), plain.len(), "{plain:?}");
    assert_eq!(openai, plain);
}

#[test]
fn a_shared_prefix_is_computed_once_and_changes_nothing() {
    models().for_each(shared_prefix);
}

fn shared_prefix(m: Arc<Model>) {
    let system = prompt(99, 300);
    let with = |tail: usize| -> Request {
        let mut p = system.clone();
        p.extend(prompt(tail, 7));
        request(p, 8)
    };
    let want = alone(&m, &with(2));
    let mut e = Engine::new(m.clone(), ThreadPool::new(2), EngineConfig::default());
    let (s, rx1) = sink();
    e.submit(1, with(1), s).unwrap();
    run_all(&mut e);
    let (s, rx2) = sink();
    e.submit(2, with(2), s).unwrap();
    run_all(&mut e);
    let first: Vec<Event> = rx1.try_iter().collect();
    let second: Vec<Event> = rx2.try_iter().collect();
    assert_eq!(first[0], Event::Started { prompt_tokens: 307, cached_tokens: 0 });
    // 300 shared tokens: 18 full blocks of 16.
    assert_eq!(second[0], Event::Started { prompt_tokens: 307, cached_tokens: 288 });
    assert_eq!(outcome(&second, 1).0[0], want, "a cache hit changed the output");
    let mx = e.metrics();
    assert_eq!(mx.prefix_hit_tokens, 288);
    assert!(mx.prefix_cache_blocks >= 18);
}

#[test]
fn n_choices_fork_the_prompt() {
    models().for_each(n_choices);
}

fn n_choices(m: Arc<Model>) {
    let mut r = request(prompt(5, 40), 10);
    let want = alone(&m, &r);
    r.params.n = 3;
    let mut e = Engine::new(m.clone(), ThreadPool::new(2), EngineConfig::default());
    let (s, rx) = sink();
    e.submit(1, r.clone(), s).unwrap();
    run_all(&mut e);
    let events: Vec<Event> = rx.try_iter().collect();
    let (toks, done) = outcome(&events, 3);
    assert!(toks.iter().all(|t| *t == want), "greedy choices equal the single answer");
    assert!(done.iter().all(|d| *d == Some(FinishReason::Length)));
    // Sampled choices differ (each its own seed), and logprobs come with each token.
    r.params.sampling = SamplerConfig {
        temperature: 1.5,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: 4,
        ..SamplerConfig::default()
    };
    r.params.logprobs = Some(3);
    let (s, rx) = sink();
    e.submit(2, r, s).unwrap();
    run_all(&mut e);
    let events: Vec<Event> = rx.try_iter().collect();
    let (toks, _) = outcome(&events, 3);
    assert!(toks[0] != toks[1] || toks[1] != toks[2], "{toks:?}");
    for ev in &events {
        if let Event::Token { logprob: Some(lp), .. } = ev {
            assert_eq!(lp.top.len(), 3);
            assert!(lp.logprob <= 0.0 && lp.top[0].1 >= lp.top[2].1);
        }
    }
    e.clear_prefix_cache();
    assert_eq!(e.metrics().kv_blocks_used, 0);
}

#[test]
fn a_small_cache_preempts_and_still_completes_everything() {
    let m = model();
    // 8 requests of 40 + 40 tokens in a cache of 320 tokens (20 blocks): they cannot all run.
    let reqs: Vec<Request> = (0..8).map(|i| request(prompt(i + 20, 40), 40)).collect();
    let cfg =
        EngineConfig { kv_cache_tokens: 320, prefix_caching: false, ..EngineConfig::default() };
    let mut e = Engine::new(m.clone(), ThreadPool::new(2), cfg);
    let mut rxs = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let (s, rx) = sink();
        e.submit(i as u64, r.clone(), s).unwrap();
        rxs.push(rx);
    }
    run_all(&mut e);
    for rx in &rxs {
        let events: Vec<Event> = rx.try_iter().collect();
        let (toks, done) = outcome(&events, 1);
        assert_eq!(toks[0].len(), 40);
        assert_eq!(done[0], Some(FinishReason::Length));
    }
    let mx = e.metrics();
    assert!(mx.preemptions > 0, "the cache was big enough: the test shows nothing");
    assert_eq!(mx.kv_blocks_used, 0);
}

#[test]
fn stop_tokens_cancel_and_dropped_receivers_end_requests() {
    let m = model();
    let r = request(prompt(7, 30), 20);
    let want = alone(&m, &r);
    let mut e = Engine::new(
        m.clone(),
        ThreadPool::new(2),
        EngineConfig { prefix_caching: false, ..EngineConfig::default() },
    );
    // Stop on the answer's fourth token: three tokens come out, finish reason stop.
    let mut stop = r.clone();
    stop.params.stop_tokens = vec![want[3]];
    let (s, rx) = sink();
    e.submit(1, stop, s).unwrap();
    // Cancelled after two steps.
    let (s, rx2) = sink();
    e.submit(2, request(prompt(8, 30), 50), s).unwrap();
    // Its receiver dropped at once.
    let (s, rx3) = sink();
    e.submit(3, request(prompt(9, 30), 50), s).unwrap();
    drop(rx3);
    e.step();
    e.step();
    e.cancel(2);
    run_all(&mut e);
    let (toks, done) = outcome(&rx.try_iter().collect::<Vec<_>>(), 1);
    let first = want.iter().position(|&t| t == want[3]).unwrap();
    assert_eq!(toks[0], want[..first]);
    assert_eq!(done[0], Some(FinishReason::Stop));
    let cancelled: Vec<Event> = rx2.try_iter().collect();
    assert!(matches!(
        cancelled.last(),
        Some(Event::Finished { reason: FinishReason::Cancelled, .. })
    ));
    // One finish, counting the tokens it had produced.
    let (toks, done) = outcome(&cancelled, 1);
    assert_eq!(done[0], Some(FinishReason::Cancelled));
    assert!(!toks[0].is_empty(), "two steps produced tokens before the cancel");
    assert_eq!(cancelled.iter().filter(|e| matches!(e, Event::Finished { .. })).count(), 1);
    // Cancelling a request whose choice already finished sends nothing more.
    let (s, rx4) = sink();
    e.submit(4, request(prompt(10, 20), 2), s).unwrap();
    run_all(&mut e);
    e.cancel(4);
    let events: Vec<Event> = rx4.try_iter().collect();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Finished { .. })).count(), 1);
    assert_eq!(e.metrics().kv_blocks_used, 0);
}

#[test]
fn bad_requests_are_refused_before_admission() {
    let m = model();
    let mut e = Engine::new(
        m.clone(),
        ThreadPool::new(1),
        EngineConfig { kv_cache_tokens: 1024, ..EngineConfig::default() },
    );
    let cases: Vec<(Request, RequestError)> = vec![
        (request(vec![], 5), RequestError::EmptyPrompt),
        (request(prompt(1, 5), 0), RequestError::NoTokens),
        (
            request(prompt(1, 8000), 500),
            RequestError::TooLong { prompt: 8000, max_tokens: 500, context: 8192 },
        ),
        (request(vec![60_000], 5), RequestError::BadToken { token: 60_000, vocab: 49_152 }),
        (
            request(prompt(1, 900), 200),
            RequestError::TooBigForCache { needed: 1100, n: 1, capacity: 1024 },
        ),
    ];
    for (r, want) in cases {
        let (s, _rx) = sink();
        assert_eq!(e.submit(1, r, s).unwrap_err(), want);
    }
    let mut r = request(prompt(1, 5), 5);
    r.params.logprobs = Some(21);
    let (s, _rx) = sink();
    assert_eq!(e.submit(1, r, s).unwrap_err(), RequestError::TooManyLogprobs(21));
    assert!(!e.has_work());
}

#[test]
fn the_engine_thread_serves_concurrent_clients_and_drains() {
    let m = model();
    let reqs: Vec<Request> = (0..6).map(|i| request(prompt(i + 40, 10 + 9 * i), 10)).collect();
    let want: Vec<Vec<u32>> = reqs.iter().map(|r| alone(&m, r)).collect();
    let h = EngineHandle::spawn(m, 2, EngineConfig::default()).unwrap();
    let clients: Vec<_> = reqs
        .into_iter()
        .map(|r| {
            let h = h.clone();
            std::thread::spawn(move || {
                let (s, rx) = sink();
                h.submit(r, s).unwrap();
                let mut events = Vec::new();
                while let Ok(e) = rx.recv() {
                    let end = matches!(e, Event::Finished { .. } | Event::Error { .. });
                    events.push(e);
                    if end {
                        break;
                    }
                }
                outcome(&events, 1).0.remove(0)
            })
        })
        .collect();
    for (c, w) in clients.into_iter().zip(&want) {
        assert_eq!(&c.join().unwrap(), w);
    }
    h.drain();
    let (s, _rx) = sink();
    assert_eq!(h.submit(request(prompt(1, 4), 2), s).unwrap_err(), RequestError::Stopped);
    assert_eq!(h.metrics().running, 0);
}
