//! AWQ on the real SmolLM2: any channel scales folded into the norms and the up rows leave the
//! float model's function unchanged, and the search only scales where it lowers the error.

use std::sync::Arc;

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace, DEFAULT_BLOCK_SIZE};
use llmopt_quant::{
    awq::{self, AwqConfig},
    gptq::capture_hessians,
    output_metadata, write_quantized, CalibConfig, Job, Plan, PlanConfig, Provenance,
};
use llmopt_tensor::GgmlType;
use llmopt_tokenizer::Tokenizer;

/// Every position's logits for `tokens`, from an empty cache.
fn logits(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut kv = KvCache::new(&model.config, tokens.len() + 16, DEFAULT_BLOCK_SIZE);
    let seq = kv.add_sequence();
    let mut ws = Workspace::new();
    let input = [SeqInput { seq, tokens, logits: Logits::All }];
    model.forward(&ThreadPool::new(2), &input, &mut kv, &mut ws, None).unwrap().to_vec()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap()
}

#[test]
fn folded_scales_keep_the_float_model_and_the_search_never_adds_error() {
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    let model = Model::from_gguf(file.clone()).unwrap();
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let text = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    let tokens = tok.encode(&text[..6_000], true, false);
    let pool = ThreadPool::new(2);
    let cfg = CalibConfig { ctx: 128, max_tokens: 256, bos: tok.bos() };
    let (imatrix, hessians) =
        capture_hessians(&model, &pool, &tokens, &cfg, None, &mut |_, _| {}).unwrap();

    // Scales of alpha 0.5 everywhere, written into an f32 copy: same function.
    let file_type = *llmopt_quant::FileType::of(GgmlType::F32).unwrap();
    let plan_cfg = PlanConfig { file_type, keep: Vec::new(), imatrix: false };
    let plan = Plan::new(file.tensors(), file.metadata(), plan_cfg).unwrap();
    let scales = awq::fixed(&file, &plan, &hessians, 0.5).unwrap();
    assert_eq!(scales.groups.len(), 30 * 3, "Q/K/V, gate/up and down in every layer");
    // Per layer: 6 weights scaled by columns, 2 norms by columns, up also by rows.
    assert_eq!(scales.transforms.len(), 30 * 8);
    let up = &scales.transforms["blk.3.ffn_up.weight"];
    assert!(up.cols.is_some() && up.rows.as_ref().map(Vec::len) == Some(1536));
    let meta = output_metadata(file.metadata(), &plan, &Provenance::default());
    // The f32 copies with and without the scales (the Q4_1 file itself quantizes activations).
    let write = |name: &str, awq| {
        let job = Job {
            source: &file,
            plan: &plan,
            metadata: &meta,
            importance: None,
            gptq: None,
            awq,
            threads: 2,
        };
        let mut out = Vec::new();
        write_quantized(&job, &mut out, &mut |_, _| {}).unwrap();
        Arc::new(GgufFile::from_bytes(name, &out).unwrap())
    };
    let plain_file = write("f32.gguf", None);
    let scaled_file = write("awq-f32.gguf", Some(&scales));
    let norm = |f: &GgufFile| {
        let t = f.tensors().iter().find(|t| t.name == "blk.3.attn_norm.weight").unwrap();
        f.tensor_data(t).to_vec()
    };
    assert_ne!(norm(&plain_file), norm(&scaled_file), "the norm took 1/s");
    let plain = Model::from_gguf(plain_file).unwrap();
    let scaled = Model::from_gguf(scaled_file).unwrap();
    let probe = &tokens[200..232];
    let (a, b) = (logits(&plain, probe), logits(&scaled, probe));
    let vocab = model.config.vocab_size;
    let mut worst = 0f32;
    for (ra, rb) in a.chunks(vocab).zip(b.chunks(vocab)) {
        assert_eq!(argmax(ra), argmax(rb));
        worst = ra.iter().zip(rb).map(|(x, y)| (x - y).abs()).fold(worst, f32::max);
    }
    // Measured: 0.002 (f32 rounding of the scaled weights; logits span about 40).
    assert!(worst < 0.02, "logits moved by {worst}");

    // The search at q4_0: never worse than no scaling, and it does scale somewhere.
    let file_type = *llmopt_quant::FileType::of(GgmlType::Q4_0).unwrap();
    let plan_cfg = PlanConfig { file_type, keep: Vec::new(), imatrix: true };
    let plan = Plan::new(file.tensors(), file.metadata(), plan_cfg).unwrap();
    let cfg = AwqConfig { grid: 4, sample_rows: 8 };
    let found =
        awq::search(&file, &plan, &hessians, Some(&imatrix), cfg, 2, &mut |_, _| {}).unwrap();
    assert_eq!(found.groups.len(), 90);
    for g in &found.groups {
        assert!(g.error_after <= g.error_before, "{g:?}");
        assert!([0.0, 0.25, 0.5, 0.75, 1.0].contains(&g.alpha), "{g:?}");
    }
    // The first ffn_down layers go to Q4_1 (llama.cpp's imatrix guard), the source's own format:
    // their rows round-trip exactly, nothing to gain. Every other group has an error to lower.
    let exact = found.groups.iter().filter(|g| g.error_before == 0.0).count();
    assert!(exact <= 4, "{exact} groups without error");
    let scaled = found.groups.iter().filter(|g| g.alpha > 0.0).count();
    assert!(scaled > 30, "only {scaled} of 90 groups gained from scaling");
}

#[test]
fn a_rotated_down_projection_keeps_the_float_model() {
    // Every ffn_down's rows rotated by the Walsh-Hadamard matrix in chunks of 512, and the key
    // that makes the model rotate its input: the same function as the plain f32 copy.
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let text = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    let tokens = tok.encode(&text[..3_000], true, false);
    let file_type = *llmopt_quant::FileType::of(GgmlType::F32).unwrap();
    let plan_cfg = PlanConfig { file_type, keep: Vec::new(), imatrix: false };
    let plan = Plan::new(file.tensors(), file.metadata(), plan_cfg).unwrap();
    let mut scales = awq::AwqScales::default();
    for l in 0..30 {
        let t = awq::Transform { rotate: Some(512), ..Default::default() };
        scales.transforms.insert(format!("blk.{l}.ffn_down.weight"), t);
    }
    let write = |name: &str, rotated: bool| {
        let mut meta = output_metadata(file.metadata(), &plan, &Provenance::default());
        if rotated {
            let v = llmopt_formats::gguf::MetaValue::U32(512);
            meta.insert(llmopt_model::RotationSite::FfnDown.key(), v);
        }
        let job = Job {
            source: &file,
            plan: &plan,
            metadata: &meta,
            importance: None,
            gptq: None,
            awq: rotated.then_some(&scales),
            threads: 2,
        };
        let mut out = Vec::new();
        write_quantized(&job, &mut out, &mut |_, _| {}).unwrap();
        Arc::new(GgufFile::from_bytes(name, &out).unwrap())
    };
    let plain = Model::from_gguf(write("f32.gguf", false)).unwrap();
    let rotated_file = write("rotated.gguf", true);
    // Re-quantizing keeps the key: the weights stay rotated.
    let again = output_metadata(rotated_file.metadata(), &plan, &Provenance::default());
    assert_eq!(again.get_u64("llmopt.model.rotation.ffn_down"), Some(512));
    let rotated = Model::from_gguf(rotated_file).unwrap();
    let down = llmopt_model::RotationSite::FfnDown;
    assert_eq!(
        (plain.config.rotations.get(down), rotated.config.rotations.get(down)),
        (None, Some(512))
    );
    let probe = &tokens[100..132];
    let (a, b) = (logits(&plain, probe), logits(&rotated, probe));
    let vocab = plain.config.vocab_size;
    let mut worst = 0f32;
    for (ra, rb) in a.chunks(vocab).zip(b.chunks(vocab)) {
        assert_eq!(argmax(ra), argmax(rb));
        worst = ra.iter().zip(rb).map(|(x, y)| (x - y).abs()).fold(worst, f32::max);
    }
    // Measured: 0.023 (f32 rounding: each down output now sums rotated terms; logits span ~40).
    assert!(worst < 0.05, "logits moved by {worst}");
    // Without the key the same weights compute something else: the key is what makes it work.
    let mut unrotated = rotated;
    unrotated.config.rotations = Default::default();
    let c = logits(&unrotated, probe);
    let off = a.iter().zip(&c).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(off > 1.0, "the rotation changed nothing: {off}");
    // A bad key the rotated weights compute something else: the key is what makes it work.
    let mut meta = output_metadata(file.metadata(), &plan, &Provenance::default());
    meta.insert("llmopt.model.rotation.ffn_down", llmopt_formats::gguf::MetaValue::U32(48));
    let cfg = llmopt_model::ModelConfig::from_gguf(plain.config.arch, &meta);
    assert!(cfg.is_err_and(|e| e.to_string().contains("power of two")));
}
