#![allow(clippy::print_stderr)]
mod common;
use serde_json::Value;
fn run(k: &str, m: &str) {
    let p = format!("/tmp/tokwork/fuzz-{k}.json");
    let Ok(s) = std::fs::read_to_string(&p) else { eprintln!("{p} absent"); return };
    let fx: Value = serde_json::from_str(&s).unwrap();
    let tok = common::tokenizer(m);
    let (mut ok, mut bad) = (0, 0);
    for c in fx["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tok.encode(text, false, c["parse_special"].as_bool().unwrap());
        if got == want { ok += 1 } else { bad += 1; eprintln!("{k} {:?} parse={}\n  want {want:?}\n  got  {got:?}", text, c["parse_special"]); }
    }
    eprintln!("{k}: {ok} ok, {bad} bad");
}
#[test] fn fuzz_smollm() { run("smollm", common::SMOLLM) }
#[test] fn fuzz_qwen() { run("qwen", common::QWEN) }
#[test] fn fuzz_gemma() { run("gemma", common::GEMMA) }
