//! SmoothQuant on the real SmolLM2: its scales (folded into the norms and up's rows) and
//! the inputs' rotations leave the float model's function unchanged, and the search scales at W8A8.

use std::sync::Arc;

use llmopt_formats::gguf::{GgufFile, MetaValue};
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqInput, Workspace, DEFAULT_BLOCK_SIZE};
use llmopt_quant::{
    output_metadata,
    smooth::{self, SmoothConfig},
    write_quantized, CalibConfig, Job, Plan, PlanConfig, Provenance,
};
use llmopt_tensor::GgmlType;
use llmopt_tokenizer::Tokenizer;

fn logits(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut kv = KvCache::new(&model.config, tokens.len() + 16, DEFAULT_BLOCK_SIZE);
    let seq = kv.add_sequence();
    let mut ws = Workspace::new();
    let input = [SeqInput { seq, tokens, logits: Logits::All }];
    model.forward(&ThreadPool::new(2), &input, &mut kv, &mut ws, None).unwrap().to_vec()
}

fn plan(file: &GgufFile, ty: GgmlType) -> Plan {
    let file_type = *llmopt_quant::FileType::of(ty).unwrap();
    let cfg = PlanConfig { file_type, keep: Vec::new(), imatrix: false };
    Plan::new(file.tensors(), file.metadata(), cfg).unwrap()
}

#[test]
fn smoothing_and_rotation_keep_the_float_model_and_the_search_scales_w8a8() {
    let file = Arc::new(GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap());
    let model = Model::from_gguf(file.clone()).unwrap();
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let text = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    let tokens = tok.encode(&text[..6_000], true, false);
    let pool = ThreadPool::new(2);
    let cfg = CalibConfig { ctx: 128, max_tokens: 256, bos: tok.bos() };
    let (_, stats) = smooth::capture(&model, &pool, &tokens, &cfg, 64, &mut |_, _| {}).unwrap();
    // Q/K/V, gate/up and down of 30 layers.
    assert_eq!(stats.len(), 30 * 3);
    assert_eq!(stats.get("blk.2.attn_k.weight").unwrap().rows().len(), 64 * 576);

    // alpha 0.5 everywhere and the inputs rotated, into an f32 copy: the same function.
    let f32_plan = plan(&file, GgmlType::F32);
    let fixed = SmoothConfig { alpha: Some(0.5), rotate: true, ..SmoothConfig::default() };
    let scales = smooth::search(&file, &f32_plan, &stats, fixed, 2, &mut |_, _| {}).unwrap();
    assert_eq!(scales.groups.len(), 30 * 3);
    use llmopt_model::RotationSite::*;
    let chunks = [AttnIn, FfnIn, FfnDown].map(|s| scales.rotations.get(s));
    assert_eq!(chunks, [Some(64), Some(64), Some(512)]);
    let write = |name: &str, smoothed: bool| {
        let mut meta = output_metadata(file.metadata(), &f32_plan, &Provenance::default());
        if smoothed {
            for site in llmopt_model::RotationSite::ALL {
                let r = scales.rotations.get(site).unwrap() as u32;
                meta.insert(site.key(), MetaValue::U32(r));
            }
        }
        let job = Job {
            source: &file,
            plan: &f32_plan,
            metadata: &meta,
            importance: None,
            gptq: None,
            awq: smoothed.then_some(&scales),
            threads: 2,
        };
        let mut out = Vec::new();
        write_quantized(&job, &mut out, &mut |_, _| {}).unwrap();
        Model::from_gguf(Arc::new(GgufFile::from_bytes(name, &out).unwrap())).unwrap()
    };
    let (plain, smoothed) = (write("f32.gguf", false), write("smoothed.gguf", true));
    let probe = &tokens[200..232];
    let (a, b) = (logits(&plain, probe), logits(&smoothed, probe));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    // Measured: 0.024 (f32 rounding of the scaled and rotated weights; logits span about 40).
    assert!(worst < 0.06, "logits moved by {worst}");

    // The search at W8A8: never worse than no scaling on its own measure, and it scales.
    let w8 = plan(&file, GgmlType::W8A8);
    let cfg = SmoothConfig { grid: 4, sample_rows: 8, rotate: true, alpha: None };
    let found = smooth::search(&file, &w8, &stats, cfg, 2, &mut |_, _| {}).unwrap();
    for g in &found.groups {
        assert!(g.error_after <= g.error_before, "{g:?}");
        assert!([0.0, 0.25, 0.5, 0.75, 1.0].contains(&g.alpha), "{g:?}");
    }
    assert!(found.groups.iter().filter(|g| g.alpha > 0.0).count() > 45, "{:?}", found.groups);
    assert_eq!(found.transforms["blk.0.ffn_down.weight"].rotate, Some(512));
    assert_eq!(found.transforms["blk.0.attn_k.weight"].rotate, Some(64));
    assert!(!found.transforms.contains_key("blk.0.attn_output.weight"));
}
