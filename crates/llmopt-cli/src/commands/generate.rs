//! `llmopt generate`: continue one prompt (raw, or as a chat message), streaming to stdout; speeds on stderr.

use std::io::Write;

use anyhow::{Context, Result};
use llmopt_engine::{GenerateError, Generator, Sampler, SamplerConfig};
use llmopt_tokenizer::{ChatMessage, Utf8Stream};

use crate::{
    cli::{GenerateArgs, SamplingArgs},
    load::Loaded,
};

/// Validated sampler settings from the flags.
pub fn sampler(s: &SamplingArgs) -> Result<Sampler> {
    let cfg = SamplerConfig {
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: 64,
        seed: s.seed,
        ..SamplerConfig::default()
    };
    Ok(Sampler::new(cfg)?)
}

#[allow(clippy::print_stderr)]
pub fn run(args: &GenerateArgs) -> Result<()> {
    let mut sampler = sampler(&args.sampling)?;
    if args.prompt.is_empty() {
        anyhow::bail!("the prompt is empty");
    }
    let m = Loaded::open(&args.run)?;
    let tokens = if args.chat {
        let text = m
            .chat_template()?
            .render(&[ChatMessage { role: "user".into(), content: args.prompt.clone() }], true)?;
        m.tokenizer.encode(&text, true, true)
    } else {
        // As llama.cpp does for a raw prompt: special tokens written in the text are parsed.
        m.tokenizer.encode(&args.prompt, true, true)
    };
    if args.verbose_prompt {
        for &t in &tokens {
            eprintln!("{t:>7} -> {:?}", String::from_utf8_lossy(&m.tokenizer.token_to_piece(t)));
        }
    }
    let needed = tokens.len() + args.max_tokens;
    let ctx = m.model.config.context_length;
    if needed > ctx {
        return Err(GenerateError::TooLong {
            tokens: needed,
            prompt: tokens.len(),
            max_new: args.max_tokens,
            context: ctx,
        }
        .into());
    }
    let mut gen = Generator::new(&m.model, &m.pool, needed);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut stream = Utf8Stream::default();
    let mut io_err = None;
    let stats = gen.generate(
        &tokens,
        args.max_tokens,
        &mut sampler,
        &|t| m.is_eog(t),
        &mut |t| match stream.push(&m.tokenizer.token_to_piece(t), &mut out) {
            Ok(()) => true,
            Err(e) => {
                io_err = Some(e);
                false
            }
        },
    )?;
    if let Some(e) = io_err {
        return Err(e).context("cannot write to stdout");
    }
    stream.finish(&mut out).context("cannot write to stdout")?;
    writeln!(out).context("cannot write to stdout")?;
    eprintln!(
        "prompt: {} tokens, {:.1} tokens/s | generation: {} tokens, {:.1} tokens/s | stop: {:?}",
        stats.prompt_tokens,
        stats.prompt_tps(),
        stats.generated_tokens,
        stats.generate_tps(),
        stats.stop
    );
    Ok(())
}
