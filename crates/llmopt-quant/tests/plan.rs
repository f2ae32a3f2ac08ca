//! Our per-tensor format choices against llama-quantize's, on the real models: the fixtures are
//! `llama-quantize --dry-run` listings (scripts/gen-quant-plan-fixtures) for the legacy, float
//! and K-quant file types, including the K-quants this build cannot encode yet.

use std::collections::HashMap;

use llmopt_formats::gguf::GgufFile;
use llmopt_quant::{
    rules::llama_cpp_picks, FallbackReason, FileType, Plan, PlanConfig, FILE_TYPES,
};
use llmopt_tensor::GgmlType;

const FIXTURES: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama-quantize-dry-run");

/// llama-quantize's file-type argument as our file type, by name (llama.cpp's `enum llama_ftype`
/// name without its prefix), so that file types this build cannot encode are checked too.
fn file_type(arg: &str) -> &'static FileType {
    let found = FILE_TYPES.iter().find(|f| f.name.ends_with(&format!("_{arg}")));
    found.unwrap_or_else(|| panic!("file type {arg}"))
}

fn by_name(ty: &str) -> GgmlType {
    GgmlType::ALL.into_iter().find(|t| t.name() == ty).unwrap_or_else(|| panic!("type {ty}"))
}

#[test]
fn our_picks_equal_llama_quantizes_dry_runs() {
    let mut checked = 0;
    for entry in std::fs::read_dir(FIXTURES).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let command = text.lines().next().unwrap();
        let mut words = command.split_whitespace().rev();
        let (arg, model) = (words.next().unwrap(), words.next().unwrap());
        let model = model.strip_prefix("models/").unwrap();
        let f = GgufFile::open(llmopt_testdata::model(model)).unwrap();
        let want: HashMap<&str, GgmlType> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, ty) = l.split_once(' ').unwrap();
                (name, by_name(ty))
            })
            .collect();
        assert_eq!(want.len(), f.tensors().len(), "{}", path.display());
        let ft = file_type(arg);
        let picks = llama_cpp_picks(f.tensors(), f.metadata(), ft, &[], false);
        for (t, pick) in f.tensors().iter().zip(&picks) {
            assert_eq!(pick.ty, want[t.name.as_str()], "{} {arg}: {}", model, t.name);
        }
        checked += 1;
    }
    assert_eq!(checked, 26, "fixtures");
}

#[test]
fn plans_write_llama_cpps_pick_or_say_why_not() {
    let f = GgufFile::open(llmopt_testdata::model(llmopt_testdata::QWEN05)).unwrap();
    for ft in FILE_TYPES.iter().filter(|f| llmopt_quant::parse_file_type(&f.short_name()).is_ok()) {
        let file_type = *ft;
        let cfg = PlanConfig { file_type, keep: Vec::new(), imatrix: false };
        let plan = Plan::new(f.tensors(), f.metadata(), cfg).unwrap();
        for t in &plan.tensors {
            if t.target != t.llama_cpp {
                let last = t.fallbacks.last().unwrap();
                assert_eq!(last.reason, FallbackReason::NoEncoder, "{}", t.name);
                assert_eq!((last.wanted, last.used), (t.llama_cpp, t.target));
            }
        }
    }
}
