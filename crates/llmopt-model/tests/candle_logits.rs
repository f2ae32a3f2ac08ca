//! Our SmolLM2 logits against an independent engine: candle-transformers' `quantized_llama` on the same
//! GGUF file (candle is a dev-dependency only, a test oracle; see DESIGN.md).
//!
//! Both engines use the same Q4_1 weights and both quantize the activations of every matmul to 8 bits
//! (Q8_1 blocks) before the integer dot products, but with their own rounding, accumulation order and
//! attention/softmax arithmetic, so the logits agree closely but not bit for bit. The bounds below were
//! measured on this file (figures in the messages) and leave roughly 2-3x headroom; a real bug (wrong
//! RoPE pairing, a missing norm, a swapped head, an off-by-one position) moves the cosine far below them.
//!
//! candle's `ModelWeights::forward` returns only the last position's logits. For the last token we
//! compare one prefill against one prefill; for every position we compare our prefill (`Logits::All`)
//! against candle fed one token at a time through its KV cache (`index_pos = i`), which yields the
//! logits at each position.

use std::sync::Arc;

use candle_core::{quantized::gguf_file, Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace};

const PROMPT: &str = "The capital of France is Paris, and the capital of Germany is";
/// `llama-tokenize -m SmolLM2-135M-Instruct.Q4_1.gguf -p PROMPT --ids` (llama.cpp 0.3.36); SmolLM2 adds
/// no BOS. Pinned so the prompt this test runs cannot drift with the tokenizer.
const PROMPT_IDS: [u32; 13] = [504, 3575, 282, 4649, 314, 7042, 28, 284, 260, 3575, 282, 4521, 314];

/// Last-position bounds (prefill vs prefill).
const MIN_COSINE: f64 = 0.999;
const MAX_REL_DIFF: f32 = 2e-2;
/// Every-position bounds (our prefill vs candle's token-by-token decode).
const MIN_COSINE_ALL: f64 = 0.999;
const MAX_REL_DIFF_ALL: f32 = 3e-2;
const TOP_K: usize = 10;
const MIN_TOP_K_OVERLAP: usize = 8;

#[derive(Debug)]
struct Agreement {
    cosine: f64,
    /// max |ours - candle| / max |candle|.
    rel_diff: f32,
    max_abs_diff: f32,
    argmax: (usize, usize),
    top_k_overlap: usize,
}

fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx
}

fn agreement(ours: &[f32], theirs: &[f32]) -> Agreement {
    assert_eq!(ours.len(), theirs.len());
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&a, &b) in ours.iter().zip(theirs) {
        dot += f64::from(a) * f64::from(b);
        na += f64::from(a) * f64::from(a);
        nb += f64::from(b) * f64::from(b);
    }
    let max_abs_diff = ours.iter().zip(theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (ta, tb) = (top_k(ours, TOP_K), top_k(theirs, TOP_K));
    Agreement {
        cosine: dot / (na.sqrt() * nb.sqrt()),
        rel_diff: max_abs_diff / scale,
        max_abs_diff,
        argmax: (ta[0], tb[0]),
        top_k_overlap: ta.iter().filter(|i| tb.contains(i)).count(),
    }
}

fn kl(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let lse = |v: &[f32]| { let m = v.iter().fold(f32::MIN, |a, &b| a.max(b)); f64::from(m) + v.iter().map(|&x| (f64::from(x - m)).exp()).sum::<f64>().ln() };
    let (lp, lq) = (lse(p_logits), lse(q_logits));
    p_logits.iter().zip(q_logits).map(|(&a, &b)| { let la = f64::from(a) - lp; let lb = f64::from(b) - lq; la.exp() * (la - lb) }).sum()
}

struct Candle {
    model: ModelWeights,
}

impl Candle {
    fn load(path: &std::path::Path) -> Self {
        let mut f = std::fs::File::open(path).unwrap();
        let content = gguf_file::Content::read(&mut f).unwrap();
        // SmolLM2 ties its output to the embeddings: the file has no `output.weight`, and
        // quantized_llama then uses `token_embd.weight` (checked in the test below).
        assert!(content.tensor_infos.contains_key("token_embd.weight"));
        let model = ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap();
        Self { model }
    }

    /// Logits of the last token of `ids`, fed at positions `index_pos..`.
    fn forward(&mut self, ids: &[u32], index_pos: usize) -> Vec<f32> {
        let x = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        self.model.forward(&x, index_pos).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap()
    }
}

fn check(what: &str, a: &Agreement, min_cos: f64, max_rel: f32) {
    assert_eq!(a.argmax.0, a.argmax.1, "{what}: argmax differs: {a:?}");
    assert!(a.top_k_overlap >= MIN_TOP_K_OVERLAP, "{what}: top-{TOP_K} overlap too small: {a:?}");
    assert!(a.cosine > min_cos, "{what}: cosine {} <= {min_cos}: {a:?}", a.cosine);
    assert!(
        a.rel_diff < max_rel,
        "{what}: max|diff|/max|logit| {} >= {max_rel}: {a:?}",
        a.rel_diff
    );
}

// The measured figures are the point of this test (the issue asks for them), and assertion messages only
// show on failure; print them to stderr, which `cargo test` shows with `--nocapture`.
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

    // candle: one prefill (last position only), then token by token for every position.
    let mut candle = Candle::load(&path);
    let last = candle.forward(&ids, 0);
    assert_eq!(last.len(), vocab, "candle's vocabulary differs from ours");

    let a = agreement(&ours[(n - 1) * vocab..], &last);
    eprintln!(
        "last position (prefill vs prefill): cosine {:.6}, max|diff| {:.4} ({:.2e} of max|logit|), argmax {} vs {}, top-{TOP_K} overlap {}",
        a.cosine, a.max_abs_diff, a.rel_diff, a.argmax.0, a.argmax.1, a.top_k_overlap
    );
    check("last position", &a, MIN_COSINE, MAX_REL_DIFF);

    candle.model.clear_kv_cache();
    let (mut worst_cos, mut worst_rel, mut worst_overlap) = (1f64, 0f32, TOP_K);
    for (i, t) in ids.iter().enumerate() {
        let theirs = candle.forward(std::slice::from_ref(t), i);
        let a = agreement(&ours[i * vocab..(i + 1) * vocab], &theirs);
        eprintln!(
            "position {i:2} (our prefill vs candle decode): cosine {:.6}, max|diff| {:.4} ({:.2e}), argmax {} vs {}, top-{TOP_K} overlap {}",
            a.cosine, a.max_abs_diff, a.rel_diff, a.argmax.0, a.argmax.1, a.top_k_overlap
        );
        check(&format!("position {i}"), &a, MIN_COSINE_ALL, MAX_REL_DIFF_ALL);
        worst_cos = worst_cos.min(a.cosine);
        worst_rel = worst_rel.max(a.rel_diff);
        worst_overlap = worst_overlap.min(a.top_k_overlap);
    }
    eprintln!("all {n} positions: worst cosine {worst_cos:.6}, worst max|diff|/max|logit| {worst_rel:.2e}, worst top-{TOP_K} overlap {worst_overlap}");
}

// TEMP experiment: noise floor of 8-bit activations.
#[allow(clippy::print_stderr)]
#[test]
#[ignore]
fn zz_noise_floor() {
    let path = llmopt_testdata::model(llmopt_testdata::SMOLLM2);
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let ids = PROMPT_IDS.to_vec();
    let n = ids.len();
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
    let mut cq = Candle::load(&path);
    let mut q_all = vec![];
    for (i, t) in ids.iter().enumerate() {
        q_all.push(cq.forward(std::slice::from_ref(t), i));
    }
    cq.model.clear_kv_cache();
    let q_last = cq.forward(&ids, 0);
    std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
    let (f_last, f_all) = {
        let path = path.clone();
        let ids = ids.clone();
        std::thread::spawn(move || {
            let mut cf = Candle::load(&path);
            let f_last = cf.forward(&ids, 0);
            cf.model.clear_kv_cache();
            let mut f_all = vec![];
            for (i, t) in ids.iter().enumerate() {
                f_all.push(cf.forward(std::slice::from_ref(t), i));
            }
            (f_last, f_all)
        })
        .join()
        .unwrap()
    };
    // determinism
    let mut kv2 = KvCache::new(&model.config, 64, 16);
    let s2 = kv2.add_sequence();
    let ours2 = model
        .forward(
            &pool,
            &[SeqInput { seq: s2, tokens: &ids, logits: Logits::All }],
            &mut kv2,
            &mut ws,
            None,
        )
        .unwrap()
        .to_vec();
    eprintln!(
        "ours run-to-run max diff {}",
        ours.iter().zip(&ours2).fold(0f32, |m, (a, b)| m.max((a - b).abs()))
    );
    cq.model.clear_kv_cache();
    let q_last2 = cq.forward(&ids, 0);
    eprintln!(
        "candle run-to-run max diff {}",
        q_last.iter().zip(&q_last2).fold(0f32, |m, (a, b)| m.max((a - b).abs()))
    );
    // off-by-one position sensitivity
    cq.model.clear_kv_cache();
    let mut shifted = vec![];
    for (i, t) in ids.iter().enumerate() {
        shifted.push(cq.forward(std::slice::from_ref(t), i + 1));
    }
    for i in 0..n {
        let a = agreement(&shifted[i], &q_all[i]);
        let o = &ours[i * vocab..(i + 1) * vocab];
        let t = top_k(o, 2);
        let tq = top_k(&q_all[i], 2);
        let tf = top_k(&f_all[i], 2);
        eprintln!("pos {i:2}: shifted-by-1~cq cos {:.6} rel {:.2e} ov {} am {:?} | argmax ours {} ({:.3}) cq {} ({:.3}) cf {} ({:.3})", a.cosine, a.rel_diff, a.top_k_overlap, a.argmax, t[0], o[t[0]]-o[t[1]], tq[0], q_all[i][tq[0]]-q_all[i][tq[1]], tf[0], f_all[i][tf[0]]-f_all[i][tf[1]]);
    }
    let o_last = &ours[(n - 1) * vocab..];
    eprintln!("LAST ours~cq {:?}", agreement(o_last, &q_last));
    eprintln!("LAST ours~cf {:?}", agreement(o_last, &f_last));
    eprintln!("LAST cq~cf   {:?}", agreement(&q_last, &f_last));
    eprintln!("LAST cqdec~cq {:?}", agreement(&q_all[n - 1], &q_last));
    eprintln!("LAST cfdec~cf {:?}", agreement(&f_all[n - 1], &f_last));
    for i in 0..n {
        let o = &ours[i * vocab..(i + 1) * vocab];
        let a = agreement(o, &q_all[i]);
        let b = agreement(o, &f_all[i]);
        let c = agreement(&q_all[i], &f_all[i]);
        eprintln!("pos {i:2}: ours~cq cos {:.6} rel {:.2e} | ours~cf cos {:.6} rel {:.2e} | cq~cf cos {:.6} rel {:.2e} ov {} {} {}", a.cosine, a.rel_diff, b.cosine, b.rel_diff, c.cosine, c.rel_diff, a.top_k_overlap, b.top_k_overlap, c.top_k_overlap);
    }
}

#[allow(clippy::print_stderr)]
#[test]
#[ignore]
fn zz_sensitivity() {
    let path = llmopt_testdata::model(llmopt_testdata::SMOLLM2);
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let ids = PROMPT_IDS.to_vec();
    let n = ids.len();
    let base = Model::from_gguf(file).unwrap();
    let vocab = base.config.vocab_size;
    let pool = ThreadPool::new(2);
    let mut cq = Candle::load(&path);
    let mut q_all = vec![];
    for (i, t) in ids.iter().enumerate() {
        q_all.push(cq.forward(std::slice::from_ref(t), i));
    }
    eprintln!(
        "rope_base {} rms_eps {} attn_scale {}",
        base.config.rope_base, base.config.rms_eps, base.config.attn_scale
    );
    let mut variants: Vec<(&str, Model)> = vec![("baseline", base.clone())];
    let mut m = base.clone();
    m.config.arch = Box::leak(Box::new(llmopt_model::ArchSpec {
        rope: llmopt_model::arch::RopeStyle::Halves,
        ..*m.config.arch
    }));
    variants.push(("rope halves", m));
    let mut m = base.clone();
    m.config.rope_base *= 0.1;
    variants.push(("rope base x0.1", m));
    let mut m = base.clone();
    m.config.rope_base *= 0.5;
    variants.push(("rope base x0.5", m));
    let mut m = base.clone();
    m.config.rms_eps *= 100.0;
    variants.push(("rms eps x100", m));
    let mut m = base.clone();
    m.config.attn_scale *= 1.1;
    variants.push(("attn scale x1.1", m));
    let mut m = base.clone();
    m.layers.remove(29);
    m.config.n_layer -= 1;
    variants.push(("drop last layer", m));
    let mut m = base.clone();
    m.layers.remove(15);
    m.config.n_layer -= 1;
    variants.push(("drop layer 15", m));
    let mut m = base.clone();
    m.config.sliding_window = Some(4);
    variants.push(("window 4", m));
    for (name, m) in &variants {
        let mut kv = KvCache::new(&m.config, 64, 16);
        let mut ws = Workspace::new();
        let s = kv.add_sequence();
        let ours = m
            .forward(
                &pool,
                &[SeqInput { seq: s, tokens: &ids, logits: Logits::All }],
                &mut kv,
                &mut ws,
                None,
            )
            .unwrap()
            .to_vec();
        let (mut wc, mut wr, mut wo, mut am) = (1f64, 0f32, 10, 0);
        for i in 0..n {
            let a = agreement(&ours[i * vocab..(i + 1) * vocab], &q_all[i]);
            wc = wc.min(a.cosine);
            wr = wr.max(a.rel_diff);
            wo = wo.min(a.top_k_overlap);
            am += usize::from(a.argmax.0 != a.argmax.1);
        }
        let a = agreement(&ours[(n - 1) * vocab..], &q_all[n - 1]);
        eprintln!("{name:16}: all: worst cos {wc:.6} worst rel {wr:.2e} min ov {wo} argmax mismatches {am} | last: cos {:.6} rel {:.2e} ov {} am {:?}", a.cosine, a.rel_diff, a.top_k_overlap, a.argmax);
    }
}

#[allow(clippy::print_stderr)]
#[test]
#[ignore]
fn zz_prompts() {
    let path = llmopt_testdata::model(llmopt_testdata::SMOLLM2);
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let tok = llmopt_tokenizer::Tokenizer::from_gguf(file.metadata()).unwrap();
    let m = Model::from_gguf(file).unwrap();
    let vocab = m.config.vocab_size;
    let pool = ThreadPool::new(2);
    let mut cq = Candle::load(&path);
    for p in ["Once upon a time, in a small village by the sea, there lived an old fisherman who", "def fibonacci(n):\n    if n < 2:\n        return n\n    return", "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the", "Water boils at a temperature of 100 degrees Celsius at sea level, but at higher altitudes it", "1, 2, 3, 4, 5, 6, 7, 8, 9,"] {
        let ids = tok.encode(p, true, false);
        let n = ids.len();
        let mut kv = KvCache::new(&m.config, 64, 16);
        let mut ws = Workspace::new();
        let s = kv.add_sequence();
        let ours = m.forward(&pool, &[SeqInput { seq: s, tokens: &ids, logits: Logits::All }], &mut kv, &mut ws, None).unwrap().to_vec();
        cq.model.clear_kv_cache();
        let last = cq.forward(&ids, 0);
        cq.model.clear_kv_cache();
        let (mut wc, mut wr, mut wo, mut am, mut amt) = (1f64, 0f32, 10, 0, 0);
        for (i, t) in ids.iter().enumerate() {
            let q = cq.forward(std::slice::from_ref(t), i);
            let a = agreement(&ours[i*vocab..(i+1)*vocab], &q); wc = wc.min(a.cosine); wr = wr.max(a.rel_diff); wo = wo.min(a.top_k_overlap);
            let tq = top_k(&q, 2);
            if a.argmax.0 != a.argmax.1 { am += 1; if q[tq[0]] - q[tq[1]] > 0.5 { amt += 1; } }
        }
        let a = agreement(&ours[(n-1)*vocab..], &last);
        eprintln!("n {n:2}: all: worst cos {wc:.6} worst rel {wr:.2e} min ov {wo} argmax mismatches {am} (margin>0.5: {amt}) | last: cos {:.6} rel {:.2e} ov {} am {:?}", a.cosine, a.rel_diff, a.top_k_overlap, a.argmax);
    }
}

#[allow(clippy::print_stderr)]
#[test]
#[ignore]
fn zz_fox() {
    let path = llmopt_testdata::model(llmopt_testdata::SMOLLM2);
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let tok = llmopt_tokenizer::Tokenizer::from_gguf(file.metadata()).unwrap();
    let m = Model::from_gguf(file).unwrap();
    let vocab = m.config.vocab_size;
    let pool = ThreadPool::new(2);
    let prompts = ["The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the", "1, 2, 3, 4, 5, 6, 7, 8, 9,"];
    let mut cq = Candle::load(&path);
    let mut qs = vec![];
    for p in prompts { let ids = tok.encode(p, true, false); cq.model.clear_kv_cache(); qs.push(ids.iter().enumerate().map(|(i, t)| cq.forward(std::slice::from_ref(t), i)).collect::<Vec<_>>()); }
    std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
    let fs = { let path = path.clone(); let ids: Vec<Vec<u32>> = prompts.iter().map(|p| tok.encode(p, true, false)).collect(); std::thread::spawn(move || {
        let mut cf = Candle::load(&path);
        ids.iter().map(|ids| { cf.model.clear_kv_cache(); ids.iter().enumerate().map(|(i, t)| cf.forward(std::slice::from_ref(t), i)).collect::<Vec<_>>() }).collect::<Vec<_>>()
    }).join().unwrap() };
    for (k, p) in prompts.iter().enumerate() {
        let ids = tok.encode(p, true, false);
        let run = |bs: usize| { let mut kv = KvCache::new(&m.config, 64, bs); let mut ws = Workspace::new(); let s = kv.add_sequence();
            m.forward(&pool, &[SeqInput { seq: s, tokens: &ids, logits: Logits::All }], &mut kv, &mut ws, None).unwrap().to_vec() };
        let o16 = run(16); let o64 = run(64);
        eprintln!("{p:?}");
        for i in 0..ids.len() {
            let (o, q, f) = (&o16[i*vocab..(i+1)*vocab], &qs[k][i], &fs[k][i]);
            let a = agreement(o, q); let b = agreement(o, f); let c = agreement(q, f); let d = agreement(o, &o64[i*vocab..(i+1)*vocab]);
            let tf = top_k(f, 2);
            eprintln!("  KL pos {i:2}: ours||cq {:.2e} ours||cf {:.2e} cq||cf {:.2e}", kl(q, o), kl(f, o), kl(f, q));
            eprintln!("  pos {i:2} tok {:5}: ours~cq cos {:.5} rel {:.2e} | ours~cf cos {:.5} rel {:.2e} | cq~cf cos {:.5} rel {:.2e} | bs16~bs64 rel {:.1e} | am {} {} {} margin_f {:.2} maxlogit {:.1}", ids[i], a.cosine, a.rel_diff, b.cosine, b.rel_diff, c.cosine, c.rel_diff, d.rel_diff, a.argmax.0, a.argmax.1, c.argmax.1, f[tf[0]]-f[tf[1]], f[tf[0]]);
        }
    }
}
