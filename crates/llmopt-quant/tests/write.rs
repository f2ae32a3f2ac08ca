//! The writer and calibration on the real SmolLM2 file: every converted tensor equals the format
//! table's reference encoding of the decoded source, copies are byte for byte, the file loads; and
//! calibration collects every layer weight's importance.

use std::sync::Arc;

use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::Model;
use llmopt_quant::{
    calibrate, output_metadata, write_quantized, CalibConfig, Job, Plan, PlanConfig, Provenance,
};
use llmopt_tensor::GgmlType;
use llmopt_testdata::TempDir;
use llmopt_tokenizer::Tokenizer;

fn smollm2() -> GgufFile {
    GgufFile::open(llmopt_testdata::model(llmopt_testdata::SMOLLM2)).unwrap()
}

#[test]
fn q4_0_output_is_the_reference_encoding_and_loads() {
    let src = smollm2();
    let file_type = *llmopt_quant::FileType::of(GgmlType::Q4_0).unwrap();
    let cfg = PlanConfig { file_type, keep: Vec::new(), imatrix: false };
    let plan = Plan::new(src.tensors(), src.metadata(), cfg).unwrap();
    let meta = output_metadata(src.metadata(), &plan, &Provenance::default());
    let job = Job {
        source: &src,
        plan: &plan,
        metadata: &meta,
        importance: None,
        gptq: None,
        awq: None,
        threads: 2,
    };
    let dir = TempDir::new("quant-write");
    let path = dir.path().join("q4_0.gguf");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut seen = 0;
    let written = write_quantized(&job, &mut out, &mut |i, _| seen = i + 1).unwrap();
    drop(out);
    assert_eq!(seen, src.tensors().len());
    assert_eq!(written.converted + written.copied, src.tensors().len());
    assert_eq!(written.converted, 30 * 7, "every layer matrix; the Q8_0 embedding is copied");

    let q = GgufFile::open(&path).unwrap();
    assert_eq!(q.metadata().get_u64("general.file_type"), Some(2));
    assert_eq!(q.metadata().get_array("tokenizer.ggml.tokens").map(<[_]>::len), Some(49152));
    for (s, t) in src.tensors().iter().zip(q.tensors()) {
        assert_eq!((&s.name, &s.shape), (&t.name, &t.shape));
        if s.ty == t.ty {
            assert_eq!(src.tensor_data(s), q.tensor_data(t), "{}", s.name);
            continue;
        }
        assert_eq!(t.ty, GgmlType::Q4_0, "{}", s.name);
        let mut x = vec![0f32; s.n_elements() as usize];
        s.ty.to_f32(src.tensor_data(s), &mut x).unwrap();
        let mut want = vec![0u8; t.n_bytes as usize];
        GgmlType::Q4_0.from_f32(&x, &mut want).unwrap();
        assert!(q.tensor_data(t) == want.as_slice(), "{}", s.name);
    }
    assert_eq!(written.tensor_bytes, q.tensors().iter().map(|t| t.n_bytes).sum::<u64>());
    Model::from_gguf(Arc::new(q)).unwrap();
}

#[test]
fn calibration_collects_every_layer_weight() {
    let file = Arc::new(smollm2());
    let model = Model::from_gguf(file.clone()).unwrap();
    let tok = Tokenizer::from_gguf(file.metadata()).unwrap();
    let text = std::fs::read_to_string(llmopt_testdata::britannica()).unwrap();
    let tokens = tok.encode(&text[..20_000], true, false);
    let cfg = CalibConfig { ctx: 128, max_tokens: 300, bos: tok.bos() };
    let mut calls = Vec::new();
    let m = calibrate(&model, &ThreadPool::new(2), &tokens, &cfg, &mut |d, t| calls.push((d, t)))
        .unwrap();
    assert_eq!(calls, [(1, 2), (2, 2)], "300 tokens of budget: two whole chunks of 128");
    assert_eq!((m.chunks, m.chunk_size), (2, 128));
    assert_eq!(m.len(), 30 * 7);
    m.check(file.tensors()).unwrap();
    let down = m.entry("blk.5.ffn_down.weight").unwrap();
    assert_eq!((down.sums.len(), down.count), (1536, 256));
    // SwiGLU outputs are positive and negative: every column saw something.
    assert!(m.importance("blk.5.ffn_down.weight").unwrap().iter().all(|&v| v > 0.0));
}
