//! Chat templates of the three models against the strings their templates define (ChatML for
//! SmolLM2 and Qwen2.5 with their default system prompts; Gemma's turn format, built in because
//! the Gemma 3 270M base GGUF carries no template), with and without the generation prompt.

mod common;

use llmopt_tokenizer::{ChatMessage, ChatTemplate};

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("user", "What is 2+2?"),
        ChatMessage::new("assistant", "4."),
        ChatMessage::new("user", "And 3+3?"),
    ]
}

fn render(model: &str, gen: bool) -> String {
    let f = common::open(model);
    let t = ChatTemplate::from_gguf_or_builtin(f.metadata()).unwrap();
    t.render(&conversation(), gen).unwrap()
}

const TURNS_CHATML: &str = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n\
<|im_start|>assistant\n4.<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n";

#[test]
fn smollm2_chatml() {
    let sys = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
    assert_eq!(render(common::SMOLLM, false), format!("{sys}{TURNS_CHATML}"));
    assert_eq!(render(common::SMOLLM, true), format!("{sys}{TURNS_CHATML}<|im_start|>assistant\n"));
}

#[test]
fn qwen25_chatml() {
    let sys = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";
    assert_eq!(render(common::QWEN, false), format!("{sys}{TURNS_CHATML}"));
    assert_eq!(render(common::QWEN, true), format!("{sys}{TURNS_CHATML}<|im_start|>assistant\n"));

    // A system message replaces the default one.
    let f = common::open(common::QWEN);
    let t = ChatTemplate::from_gguf(f.metadata()).unwrap().expect("Qwen2.5 has a template");
    let mut msgs = vec![ChatMessage::new("system", "Be brief.")];
    msgs.extend(conversation());
    assert_eq!(
        t.render(&msgs, true).unwrap(),
        format!("<|im_start|>system\nBe brief.<|im_end|>\n{TURNS_CHATML}<|im_start|>assistant\n")
    );
}

#[test]
fn gemma3_turns() {
    let f = common::open(common::GEMMA);
    assert!(
        ChatTemplate::from_gguf(f.metadata()).unwrap().is_none(),
        "the 270M base GGUF has no template"
    );
    let turns = "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n\
<start_of_turn>model\n4.<end_of_turn>\n<start_of_turn>user\nAnd 3+3?<end_of_turn>\n";
    // No `<bos>`: the tokenizer adds it (add_bos_token = true).
    assert_eq!(render(common::GEMMA, false), turns);
    assert_eq!(render(common::GEMMA, true), format!("{turns}<start_of_turn>model\n"));

    let t = ChatTemplate::builtin(f.metadata()).unwrap();
    let mut msgs = vec![ChatMessage::new("system", "  Be brief. ")];
    msgs.extend(conversation());
    let out = t.render(&msgs, false).unwrap();
    assert!(
        out.starts_with("<start_of_turn>user\nBe brief.\n\nWhat is 2+2?<end_of_turn>\n"),
        "{out}"
    );

    let bad = [ChatMessage::new("assistant", "hi")];
    let err = t.render(&bad, false).unwrap_err().to_string();
    assert!(err.contains("alternate"), "{err}");
}

#[test]
fn rendered_prompt_tokenizes_specials() {
    for (model, start, end) in [
        (common::SMOLLM, "<|im_start|>", "<|im_end|>"),
        (common::QWEN, "<|im_start|>", "<|im_end|>"),
        (common::GEMMA, "<start_of_turn>", "<end_of_turn>"),
    ] {
        let tok = common::tokenizer(model);
        let text = render(model, true);
        let ids = tok.encode(&text, true, true);
        let (s, e) = (tok.token_id(start).unwrap(), tok.token_id(end).unwrap());
        assert_eq!(ids.iter().filter(|&&i| i == s).count(), text.matches(start).count(), "{model}");
        assert_eq!(ids.iter().filter(|&&i| i == e).count(), text.matches(end).count(), "{model}");
        assert!(tok.is_eog(e), "{model}: {end} ends generation");
        assert_eq!(tok.eot(), Some(e), "{model}");
        // SmolLM2's BOS id is `<|im_start|>` itself, so compare against a text without specials.
        let plain = tok.encode("x", true, false);
        assert_eq!(plain.first() == tok.bos().as_ref(), tok.add_bos(), "{model}");
        if tok.add_bos() {
            assert_eq!(ids.first(), tok.bos().as_ref(), "{model}");
        }
        assert_eq!(tok.decode(&ids), text, "{model}");
    }
}
