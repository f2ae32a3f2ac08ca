//! Our SmolLM2 logits against an independent engine: candle-transformers' `quantized_llama` (candle
//! 0.11, a dev-dependency only, DESIGN.md) on the same GGUF file and a fixed prompt.
//!
//! Both engines use the same Q4_1 weights and quantize every matmul's activations to Q8_1 blocks,
//! but they round in different places (ours also keeps K/V and the attention in f16, as llama.cpp
//! does; candle keeps them in f32), and over 30 layers a few flipped 8-bit roundings grow into
//! logit differences of a few percent. That is the noise floor, not a bug. Measured on this prompt:
//!
//! | all 13 positions                        | worst cosine | worst max-diff/max | mean KL |
//! |-----------------------------------------|--------------|--------------------|---------|
//! | ours vs candle                          | 0.9950       | 5.7e-2             | 3.5e-3  |
//! | candle Q8 vs candle f32 activations (1) | 0.9934       | 6.0e-2             | 3.7e-3  |
//! | ours vs candle f32 activations (1)      | 0.9964       | 4.8e-2             | 3.1e-3  |
//!
//! (1) `CANDLE_DEQUANTIZE_ALL=1`: candle dequantizes the weights and multiplies in f32. Ours is as
//! close to that reference as candle's own quantized path is. The last position (a confident
//! prediction) agrees better: cosine 0.99989, max|diff|/max|logit| 2.6e-2 (0.77 of a 29.5 logit),
//! top-10 10/10.
//!
//! The bounds leave about 2x headroom over those figures (1 - cosine, max diff, KL). Planted bugs
//! in our model, same prompt, for scale (worst position): rope pairing as NEOX: cosine -0.01, KL
//! 0.79; one layer dropped: cosine 0.27, KL 0.37; rope base x0.1: cosine 0.970, max diff 0.16, KL
//! 0.042; RMSNorm eps x100: max diff 0.14, KL 0.018; attention scale x1.1: max diff 0.12, KL 0.017.
//! All of these fail below. Rope base x0.5 (cosine 0.9905, max diff 6.9e-2, mean KL 8e-3) sits
//! inside the noise and is caught only by the last position's max diff (5.8e-2), barely: errors
//! that small need the perplexity and greedy-continuation tests against llama.cpp. Cosine of raw
//! logits alone is weak (a shared offset dominates it); the max-diff and KL bounds do most of the
//! work for subtle errors. Other prompts have a noisier floor (a repeated sentence reached cosine
//! 0.955 at one position), so these bounds belong to this prompt.
//!
//! candle's `ModelWeights::forward` returns the last position's logits only. For the last token we
//! compare one prefill against one prefill; for every position, our prefill (`Logits::All`) against
//! candle fed one token at a time through its KV cache (`index_pos = i`); candle's decode
//! reproduces its prefill's last logits bit for bit, so this adds no error of its own.

use std::sync::Arc;

use candle_core::{quantized::gguf_file, Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace};

const PROMPT: &str = "The capital of France is Paris, and the capital of Germany is";
/// `llama-tokenize -m SmolLM2-135M-Instruct.Q4_1.gguf -p PROMPT --ids` (llama.cpp 0.3.36); SmolLM2
/// adds no BOS. Pinned so that the prompt this test runs, and so its measured figures, cannot
/// drift.
const PROMPT_IDS: [u32; 13] = [504, 3575, 282, 4649, 314, 7042, 28, 284, 260, 3575, 282, 4521, 314];

const TOP_K: usize = 10;
const MIN_TOP_K_OVERLAP: usize = 8;
/// Last position, prefill against prefill (measured 0.99989 and 2.6e-2).
const LAST_MIN_COSINE: f64 = 0.999;
const LAST_MAX_REL_DIFF: f32 = 5e-2;
/// Every position (measured worst 0.9950, 5.7e-2, mean KL 3.5e-3).
const ALL_MIN_COSINE: f64 = 0.99;
const ALL_MAX_REL_DIFF: f32 = 0.1;
const ALL_MAX_MEAN_KL: f64 = 1e-2;
/// Below this gap between candle's first and second logits, the argmax is a near-tie that 8-bit
/// noise may decide either way; there ours must only be among candle's top 3. (Smallest gap on this
/// prompt: 0.12 at position 7, where both engines still agree.)
const NEAR_TIE: f32 = 0.5;

#[derive(Debug)]
struct Agreement {
    cosine: f64,
    /// max |ours - candle| / max |candle|.
    rel_diff: f32,
    max_abs_diff: f32,
    /// KL(candle || ours) of the softmax distributions, in nats.
    kl: f64,
    /// Our top tokens, best first, and candle's.
    top: (Vec<usize>, Vec<usize>),
    /// candle's top-1 minus top-2 logit.
    margin: f32,
    top_k_overlap: usize,
}

impl Agreement {
    fn argmax(&self) -> (usize, usize) {
        (self.top.0[0], self.top.1[0])
    }

    fn summary(&self) -> String {
        format!(
            "cosine {:.6}, max|diff| {:.3} ({:.2e} of max|logit|), KL {:.2e}, \
             argmax {} vs {} (candle's margin {:.2}), top-{TOP_K} overlap {}",
            self.cosine,
            self.max_abs_diff,
            self.rel_diff,
            self.kl,
            self.top.0[0],
            self.top.1[0],
            self.margin,
            self.top_k_overlap
        )
    }
}

fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx
}

fn log_sum_exp(v: &[f32]) -> f64 {
    let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    f64::from(m) + v.iter().map(|&x| f64::from(x - m).exp()).sum::<f64>().ln()
}

fn agreement(ours: &[f32], theirs: &[f32]) -> Agreement {
    assert_eq!(ours.len(), theirs.len());
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&a, &b) in ours.iter().zip(theirs) {
        dot += f64::from(a) * f64::from(b);
        na += f64::from(a) * f64::from(a);
        nb += f64::from(b) * f64::from(b);
    }
    let (lo, lt) = (log_sum_exp(ours), log_sum_exp(theirs));
    let kl = ours
        .iter()
        .zip(theirs)
        .map(|(&a, &b)| {
            let (pa, pb) = (f64::from(a) - lo, f64::from(b) - lt);
            pb.exp() * (pb - pa)
        })
        .sum();
    let max_abs_diff = ours.iter().zip(theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (ta, tb) = (top_k(ours, TOP_K), top_k(theirs, TOP_K));
    Agreement {
        cosine: dot / (na.sqrt() * nb.sqrt()),
        rel_diff: max_abs_diff / scale,
        max_abs_diff,
        kl,
        margin: theirs[tb[0]] - theirs[tb[1]],
        top_k_overlap: ta.iter().filter(|i| tb.contains(i)).count(),
        top: (ta, tb),
    }
}

/// candle's quantized llama on CPU.
struct Candle {
    model: ModelWeights,
}

impl Candle {
    fn load(path: &std::path::Path) -> Self {
        let mut f = std::fs::File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut f).unwrap();
        // SmolLM2 ties its output to the embeddings: there is no `output.weight`, and
        // quantized_llama (0.11) then uses `token_embd.weight` for the vocabulary projection, as we
        // do. (It would fail to load, or give unrelated logits, otherwise.)
        assert!(!content.tensor_infos.contains_key("output.weight"));
        assert!(content.tensor_infos.contains_key("token_embd.weight"));
        let model = ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap();
        Self { model }
    }

    /// Logits of the last of `ids`, fed at positions `index_pos..` after what the KV cache holds.
    fn forward(&mut self, ids: &[u32], index_pos: usize) -> Vec<f32> {
        let x = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        self.model.forward(&x, index_pos).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap()
    }
}

// The measured figures are what the issue asks for, and assertion messages show only on failure:
// print them to stderr (`cargo test -- --nocapture` shows them).
#[allow(clippy::print_stderr)]
#[test]
fn smollm2_logits_match_candle_quantized_llama() {
    let path = llmopt_testdata::model(llmopt_testdata::SMOLLM2);
    let file = Arc::new(GgufFile::open(&path).unwrap());
    assert!(
        file.tensor("output.weight").is_none(),
        "SmolLM2 is expected to tie its output to token_embd"
    );
    let tok = llmopt_tokenizer::Tokenizer::from_gguf(file.metadata()).unwrap();
    let ids = tok.encode(PROMPT, true, false);
    assert_eq!(ids, PROMPT_IDS, "our tokenizer disagrees with llama.cpp on the fixed prompt");
    let n = ids.len();

    // Ours: one prefill, logits at every position.
    let model = Model::from_gguf(file).unwrap();
    let vocab = model.config.vocab_size;
    let pool = ThreadPool::new(2);
    let mut kv = KvCache::new(&model.config, 64, 16);
    let mut ws = Workspace::new();
    let s = kv.add_sequence();
    let ours = model
        .forward(
            &pool,
            &[SeqInput { seq: s, tokens: &ids, logits: Logits::All }],
            &mut kv,
            &mut ws,
            None,
        )
        .unwrap()
        .to_vec();
    assert_eq!(ours.len(), n * vocab);
    let row = |i: usize| &ours[i * vocab..(i + 1) * vocab];

    // candle: one prefill (last position only).
    let mut candle = Candle::load(&path);
    let last = candle.forward(&ids, 0);
    assert_eq!(last.len(), vocab, "candle's vocabulary differs from ours");
    let a = agreement(row(n - 1), &last);
    eprintln!("last position, prefill vs prefill: {}", a.summary());
    assert_eq!(a.argmax().0, a.argmax().1, "last position: argmax differs: {}", a.summary());
    assert!(
        a.top_k_overlap >= MIN_TOP_K_OVERLAP,
        "last position: top-{TOP_K} overlap too small: {}",
        a.summary()
    );
    assert!(
        a.cosine > LAST_MIN_COSINE,
        "last position: cosine below {LAST_MIN_COSINE}: {}",
        a.summary()
    );
    assert!(
        a.rel_diff < LAST_MAX_REL_DIFF,
        "last position: max|diff|/max|logit| above {LAST_MAX_REL_DIFF}: {}",
        a.summary()
    );

    // candle token by token: logits at every position.
    candle.model.clear_kv_cache();
    let (mut worst_cos, mut worst_rel, mut worst_overlap, mut sum_kl) = (1f64, 0f32, TOP_K, 0f64);
    for (i, t) in ids.iter().enumerate() {
        let theirs = candle.forward(std::slice::from_ref(t), i);
        if i + 1 == n {
            // Bit-identical here; a tolerance in case another CPU takes another candle kernel.
            let d = agreement(&theirs, &last);
            assert!(d.rel_diff < 1e-3, "candle's decode differs from its prefill: {}", d.summary());
        }
        let a = agreement(row(i), &theirs);
        eprintln!("position {i:2}, our prefill vs candle's decode: {}", a.summary());
        let (ours_top, theirs_top) = a.argmax();
        if a.margin >= NEAR_TIE {
            assert_eq!(ours_top, theirs_top, "position {i}: argmax differs: {}", a.summary());
        } else {
            assert!(
                a.top.1[..3].contains(&ours_top),
                "position {i}: our argmax is not in candle's top 3 (near-tie): {}",
                a.summary()
            );
        }
        assert!(
            a.top_k_overlap >= MIN_TOP_K_OVERLAP,
            "position {i}: top-{TOP_K} overlap too small: {}",
            a.summary()
        );
        assert!(
            a.cosine > ALL_MIN_COSINE,
            "position {i}: cosine below {ALL_MIN_COSINE}: {}",
            a.summary()
        );
        assert!(
            a.rel_diff < ALL_MAX_REL_DIFF,
            "position {i}: max|diff|/max|logit| above {ALL_MAX_REL_DIFF}: {}",
            a.summary()
        );
        worst_cos = worst_cos.min(a.cosine);
        worst_rel = worst_rel.max(a.rel_diff);
        worst_overlap = worst_overlap.min(a.top_k_overlap);
        sum_kl += a.kl;
    }
    let mean_kl = sum_kl / n as f64;
    let all = format!(
        "all {n} positions: worst cosine {worst_cos:.6}, worst max|diff|/max|logit| \
         {worst_rel:.2e}, worst top-{TOP_K} overlap {worst_overlap}, \
         mean KL(candle || ours) {mean_kl:.2e}"
    );
    eprintln!("{all}");
    assert!(mean_kl < ALL_MAX_MEAN_KL, "mean KL above {ALL_MAX_MEAN_KL}: {all}");
}
