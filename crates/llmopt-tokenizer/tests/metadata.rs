//! Building tokenizers from hand-made metadata: errors name the offending key, and small
//! synthetic vocabularies tokenize as the algorithms prescribe.

use llmopt_formats::gguf::{MetaValue, Metadata};
use llmopt_tokenizer::{ChatTemplate, Tokenizer, TokenizerError};

fn strings(v: &[&str]) -> MetaValue {
    MetaValue::Array(v.iter().map(|s| MetaValue::String(s.to_string())).collect())
}

/// A byte-level BPE vocabulary: the 256 byte chars, then the given extra tokens.
fn bpe_meta(extra: &[&str], merges: &[&str], pre: &str) -> Metadata {
    let mut toks: Vec<String> = (0u8..=255).map(|b| byte_char(b).to_string()).collect();
    toks.extend(extra.iter().map(|s| s.to_string()));
    let mut m = Metadata::default();
    m.insert("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
    m.insert("tokenizer.ggml.pre", MetaValue::String(pre.into()));
    m.insert(
        "tokenizer.ggml.tokens",
        MetaValue::Array(toks.into_iter().map(MetaValue::String).collect()),
    );
    m.insert("tokenizer.ggml.merges", strings(merges));
    m
}

/// GPT-2's byte -> char map, written out independently of the crate.
fn byte_char(b: u8) -> char {
    let printable = |x: u32| (0x21..=0x7E).contains(&x) || (0xA1..=0xAC).contains(&x) || x >= 0xAE;
    if printable(b as u32) {
        return char::from(b);
    }
    let n = (0..b as u32).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

fn err(m: &Metadata) -> String {
    Tokenizer::from_gguf(m).unwrap_err().to_string()
}

#[test]
fn errors_name_the_key() {
    let m = Metadata::default();
    assert!(err(&m).contains("`tokenizer.ggml.model`"), "{}", err(&m));

    let mut m = Metadata::default();
    m.insert("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
    assert!(err(&m).contains("`tokenizer.ggml.tokens`"), "{}", err(&m));

    m.insert("tokenizer.ggml.tokens", MetaValue::U32(3));
    let e = err(&m);
    assert!(e.contains("`tokenizer.ggml.tokens`") && e.contains("u32"), "{e}");

    m.insert("tokenizer.ggml.tokens", strings(&["a", "b"]));
    assert!(err(&m).contains("`tokenizer.ggml.merges`"), "{}", err(&m));

    let mut m = bpe_meta(&[], &[], "deepseek-llm");
    assert!(
        matches!(Tokenizer::from_gguf(&m), Err(TokenizerError::UnsupportedPre(p)) if p == "deepseek-llm")
    );
    m.insert("tokenizer.ggml.model", MetaValue::String("bert".into()));
    assert!(
        matches!(Tokenizer::from_gguf(&m), Err(TokenizerError::UnsupportedModel(p)) if p == "bert")
    );

    let mut m = bpe_meta(&[], &[], "gpt-2");
    m.insert("tokenizer.ggml.scores", MetaValue::Array(vec![MetaValue::F32(0.0)]));
    let e = err(&m);
    assert!(e.contains("`tokenizer.ggml.scores`") && e.contains("1 entries for 256 tokens"), "{e}");

    m.insert("tokenizer.chat_template", MetaValue::String("{% for %}".into()));
    let e = ChatTemplate::from_gguf(&m).unwrap_err().to_string();
    assert!(e.contains("`tokenizer.chat_template`"), "{e}");
}

#[test]
fn bpe_merges_by_rank_leftmost_first() {
    // "a a" (rank 0) beats "b c" (rank 1); "aa a" does not exist, so "aaa" -> "aa", "a".
    let m = bpe_meta(&["aa", "bc", "aabc"], &["a a", "b c", "aa bc"], "gpt-2");
    let tok = Tokenizer::from_gguf(&m).unwrap();
    assert_eq!(tok.encode("aabc", false, false), [258]);
    assert_eq!(tok.encode("aaa", false, false), [256, 97]);
    assert_eq!(tok.encode("abc", false, false), [97, 257]);
    assert_eq!(tok.decode(&[258, 32, 10]), "aabc \n");
    assert_eq!(tok.vocab_size(), 259);
    assert!(!tok.add_bos());
}

#[test]
fn spm_merges_by_score_with_byte_fallback() {
    let mut toks = vec!["<unk>", "<s>", "</s>"];
    let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
    toks.extend(bytes.iter().map(String::as_str));
    toks.extend(["▁", "a", "b", "ab", "▁a", "▁ab", "<ctl>"]);
    let n = toks.len();
    let mut scores = vec![0.0f32; n];
    let mut types = vec![1i32; n];
    types[0] = 2;
    types[1] = 3;
    types[2] = 3;
    for t in &mut types[3..259] {
        *t = 6;
    }
    types[n - 1] = 3;
    // "▁a" scores higher than "ab", so "▁ab" is reached via "▁a" + "b".
    scores[259 + 3] = -2.0; // ab
    scores[259 + 4] = -1.0; // ▁a
    scores[259 + 5] = -3.0; // ▁ab
    let mut m = Metadata::default();
    m.insert("tokenizer.ggml.model", MetaValue::String("llama".into()));
    m.insert("tokenizer.ggml.tokens", strings(&toks));
    m.insert(
        "tokenizer.ggml.scores",
        MetaValue::Array(scores.into_iter().map(MetaValue::F32).collect()),
    );
    m.insert(
        "tokenizer.ggml.token_type",
        MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()),
    );
    let tok = Tokenizer::from_gguf(&m).unwrap();
    let (ab_s, space, a) = (259 + 5, 259, 260);
    assert!(tok.add_bos());
    // Space prefix is added; "é" is not in the vocabulary, so it falls back to its two bytes.
    assert_eq!(tok.encode("ab", true, false), [1, ab_s as u32]);
    assert_eq!(tok.encode("a é", false, false), [259 + 4, space as u32, 3 + 0xC3, 3 + 0xA9]);
    assert_eq!(tok.decode(&tok.encode("a é", true, false)), "a é");
    // Control text is only a token with parse_special; a space prefix follows it.
    assert_eq!(tok.encode("<ctl>a", false, true), [n as u32 - 1, 259 + 4]);
    assert_ne!(tok.encode("<ctl>a", false, false)[0], n as u32 - 1);
    assert!(tok.is_special(1) && !tok.is_special(a as u32));
    assert_eq!((tok.bos(), tok.eos()), (Some(1), Some(2)));
    assert!(tok.is_eog(2));
}
