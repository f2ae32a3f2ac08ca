//! `llmopt chat`: an interactive conversation. Each turn renders the whole history with the model's
//! chat template and feeds only the tokens past what the KV cache already holds.

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use llmopt_engine::Generator;
use llmopt_tokenizer::{ChatMessage, Utf8Stream};

use crate::{cli::ChatArgs, commands::generate::sampler, load::Loaded};

#[allow(clippy::print_stderr)]
pub fn run(args: &ChatArgs) -> Result<()> {
    let mut sampler = sampler(&args.sampling)?;
    let m = Loaded::open(&args.run)?;
    let template = m.chat_template()?;
    let capacity = args.ctx.unwrap_or(4096).min(m.model.config.context_length);
    let mut gen = Generator::new(&m.model, &m.pool, capacity);
    let mut messages: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage { role: "system".into(), content: s.clone() });
    }
    eprintln!(
        "chat with {} ({} tokens of context). /reset clears the history, /exit quits.",
        args.run.model.display(),
        capacity
    );
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line).context("cannot read stdin")? == 0 {
            break;
        }
        let input = line.trim_end_matches(['\n', '\r']);
        match input.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages.retain(|m| m.role == "system");
                gen.rewind(0)?;
                eprintln!("(history cleared)");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage { role: "user".into(), content: input.to_string() });
        let text = template.render(&messages, true)?;
        let tokens = m.tokenizer.encode(&text, true, true);
        let common = gen.history().iter().zip(&tokens).take_while(|(a, b)| a == b).count();
        // Keep at least one new token to feed, so there are logits to sample from.
        let keep = common.min(tokens.len().saturating_sub(1));
        gen.rewind(keep)?;
        let room = capacity.saturating_sub(tokens.len());
        if room == 0 {
            messages.pop();
            eprintln!(
                "error: the conversation ({} tokens) fills the context of {capacity}",
                tokens.len()
            );
            eprintln!("hint: /reset to start over, or a larger --ctx");
            continue;
        }
        let mut out = stdout.lock();
        let mut stream = Utf8Stream::default();
        let mut reply = Vec::new();
        let stats = gen.generate(
            &tokens[keep..],
            args.max_tokens.min(room),
            &mut sampler,
            &|t| m.is_eog(t),
            &mut |t| {
                let piece = m.tokenizer.token_to_piece(t);
                reply.push(t);
                stream.push(&piece, &mut out).is_ok()
            },
        )?;
        stream.finish(&mut out).context("cannot write to stdout")?;
        writeln!(out).context("cannot write to stdout")?;
        eprintln!("[{} tokens, {:.1} tokens/s]", stats.generated_tokens, stats.generate_tps());
        messages
            .push(ChatMessage { role: "assistant".into(), content: m.tokenizer.decode(&reply) });
    }
    Ok(())
}
