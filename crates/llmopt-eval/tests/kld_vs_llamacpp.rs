//! KL divergence of SmolLM2 Q8_0 from SmolLM2 Q4_1 on the Britannica text (`--ctx 512 --chunks 8`)
//! against llama.cpp's `--kl-divergence` figures in `fixtures/llamacpp-kld.json` (made by
//! `scripts/gen-kld-fixture.py`; provenance inside). CI has no llama.cpp, so the Q8_0 model is built
//! here in memory: each Q4_1 weight dequantized and requantized with our Q8_0 codec (ggml's reference
//! quantizer, byte for byte), the rest kept, as llama-quantize does. Every tensor is checked against
//! the SHA-256 of its data in llama.cpp's file, so the model measured here is the model it measured.
//! Also: a model against its own base gives KLD within the uint16 rounding and 100% agreement.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufReader, BufWriter},
    sync::Arc,
};

use llmopt_eval::{compare_with_base, save_base, KldReport, PerplexityConfig};
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{Bytes, Model, Weight};
use llmopt_tokenizer::Tokenizer;

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llamacpp-kld.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// SHA-256 (FIPS 180-4), small and slow enough for 140 MB in a test.
fn sha256(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(8 * data.len() as u64).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(c.try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn sha256_known_answers() {
    assert_eq!(sha256(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(sha256(long), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

fn load() -> (Model, Tokenizer) {
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    (Model::from_gguf(file).unwrap(), tok)
}

/// llama-quantize's Q8_0 of SmolLM2 Q4_1: every Q4_1 weight requantized, F32 norms and the Q8_0
/// token embedding (the tied output) kept.
fn requantize_q8_0(model: &mut Model) {
    // The embedding is Q8_0 already: its type names our Q8_0 codec (ggml's reference quantizer).
    let q8_0 = model.token_embd.ty;
    assert_eq!(q8_0.name(), "q8_0");
    for lin in model.linears_mut() {
        let w = &lin.weight;
        if w.ty == q8_0 {
            continue;
        }
        assert_eq!(w.ty.name(), "q4_1", "{}", lin.name);
        let mut f = vec![0f32; w.rows * w.cols];
        w.ty.to_f32(w.data.as_slice(), &mut f).unwrap();
        let mut q = vec![0u8; q8_0.row_bytes(w.cols).unwrap() * w.rows];
        q8_0.from_f32(&f, &mut q).unwrap();
        lin.weight = Weight::new(&lin.name, q8_0, w.rows, w.cols, Bytes::from_vec(q)).unwrap();
    }
}

/// Data bytes of every tensor the model holds, by GGUF name.
fn tensor_bytes(model: &Model) -> HashMap<String, Vec<u8>> {
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut m = HashMap::new();
    for l in model.linears() {
        m.insert(l.name.clone(), l.weight.data.as_slice().to_vec());
    }
    m.insert("token_embd.weight".into(), model.token_embd.data.as_slice().to_vec());
    m.insert("output_norm.weight".into(), f32s(&model.output_norm));
    for (i, l) in model.layers.iter().enumerate() {
        m.insert(format!("blk.{i}.attn_norm.weight"), f32s(&l.attn_norm));
        m.insert(format!("blk.{i}.ffn_norm.weight"), f32s(&l.ffn_norm));
    }
    m
}

fn tokens(tok: &Tokenizer) -> Vec<u32> {
    let mut text = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    llmopt_eval::strip_final_newline(&mut text);
    tok.encode(&text, true, false)
}

/// Saves `base`'s distributions and compares `cand` with them.
fn kld(base: &Model, cand: &Model, tokens: &[u32], cfg: &PerplexityConfig, tag: &str) -> KldReport {
    let pool = ThreadPool::new(2);
    let dir = llmopt_testdata::TempDir::new(tag);
    let path = dir.path().join("base.kld");
    let mut out = BufWriter::new(File::create(&path).unwrap());
    save_base(base, &pool, tokens, cfg, &mut out, &mut |_, _, _| {}).unwrap();
    drop(out);
    let len = std::fs::metadata(&path).unwrap().len();
    let mut r = BufReader::with_capacity(1 << 20, File::open(&path).unwrap());
    compare_with_base(cand, &pool, tokens, cfg, &mut r, Some(len), &mut |_, _, _| {}).unwrap()
}

#[test]
#[allow(clippy::print_stderr)] // the figures side by side, for the log
fn q8_0_vs_q4_1_kld_matches_llamacpp() {
    let fx = fixture();
    let (base, tok) = load();
    let mut cand = base.clone();
    requantize_q8_0(&mut cand);
    let ours = tensor_bytes(&cand);
    let theirs = fx["candidate_tensors"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "tensor count");
    for t in theirs {
        let name = t["name"].as_str().unwrap();
        let bytes = ours.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(sha256(bytes), t["sha256"].as_str().unwrap(), "{name} ({})", t["type"]);
    }

    let tokens = tokens(&tok);
    let cfg = PerplexityConfig {
        ctx: 512,
        max_chunks: Some(8),
        bos: tok.bos().filter(|_| tok.add_bos()),
    };
    let r = kld(&base, &cand, &tokens, &cfg, "kld-q8");
    let s = &fx["stats"];
    let want_kld = s["kld_mean"][0].as_f64().unwrap();
    let want_top = s["same_top_p_percent"][0].as_f64().unwrap();
    let summary = format!(
        "ours: KLD {:.6} ± {:.6}, p99 {:.6}, same top {:.3}%, PPL ratio {:.6}; llama.cpp: KLD {want_kld} , p99 {}, same top {want_top}%, PPL ratio {}",
        r.kld.value,
        r.kld.stderr,
        r.kld_percentiles.p99,
        100.0 * r.same_top.value,
        r.ppl_ratio.value,
        s["kld_p99"],
        s["ppl_ratio"][0],
    );
    eprintln!("{summary}");
    assert_eq!(r.tokens_scored, 8 * 255);
    assert!((r.kld.value - want_kld).abs() / want_kld < 0.05, "{summary}");
    assert!((100.0 * r.same_top.value - want_top).abs() < 1.0, "{summary}");
}

#[test]
fn a_model_against_its_own_base_gives_zero_kld_and_full_agreement() {
    let (model, tok) = load();
    let tokens = tokens(&tok);
    let cfg = PerplexityConfig {
        ctx: 512,
        max_chunks: Some(2),
        bos: tok.bos().filter(|_| tok.add_bos()),
    };
    let r = kld(&model, &model, &tokens, &cfg, "kld-self");
    // Only the uint16 rounding of the base's log-probabilities remains: half a step of 16/65535.
    let bound = 16.0 / 65535.0 / 2.0 + 1e-5;
    let k = &r.kld_percentiles;
    assert!(k.max <= bound && k.min >= -bound, "KLD in [{}, {}], bound {bound}", k.min, k.max);
    assert!(r.kld.value.abs() < 1e-5, "mean KLD {}", r.kld.value);
    assert_eq!(r.same_top.value, 1.0);
    assert_eq!(r.ppl.value, r.ppl_base.value);
    assert_eq!(r.ppl_ratio.value, 1.0);
}
