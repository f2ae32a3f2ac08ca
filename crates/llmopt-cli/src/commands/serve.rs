//! `llmopt serve`: the serving engine on its thread behind the OpenAI-compatible HTTP server;
//! JSON logs on stderr; SIGTERM or Ctrl-C drains (running requests finish) and exits.

use std::sync::Arc;

use anyhow::{Context, Result};
use llmopt_engine::{EngineConfig, EngineHandle};
use llmopt_model::KvCache;
use llmopt_server::{ModelText, Server, ServerConfig};

use crate::{cli::ServeArgs, load::Loaded};

/// KV-cache tokens that fit in `mb` MiB at `per_token` bytes each.
fn kv_tokens(mb: usize, per_token: usize) -> Result<usize> {
    let tokens = mb.saturating_mul(1 << 20) / per_token.max(1);
    if tokens < llmopt_model::DEFAULT_BLOCK_SIZE {
        anyhow::bail!(
            "invalid --kv-cache-mb {mb}: it holds {tokens} tokens of this model ({per_token} bytes \
             each); give at least 1"
        );
    }
    Ok(tokens)
}

#[allow(clippy::print_stderr)]
pub fn run(args: &ServeArgs) -> Result<()> {
    if args.max_batch_tokens < 2 {
        anyhow::bail!("invalid --max-batch-tokens {}: must be at least 2", args.max_batch_tokens);
    }
    let target = match args.step_latency_ms {
        Some(ms) if !(ms.is_finite() && ms > 0.0) => {
            anyhow::bail!("invalid --step-latency-ms {ms}: must be a number > 0")
        }
        ms => ms.map(|ms| ms / 1000.0),
    };
    let m = Loaded::open(&args.run)?;
    let template = m.chat_template()?;
    let name = match &args.served_model_name {
        Some(n) => n.clone(),
        None => args
            .run
            .model
            .file_stem()
            .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned()),
    };
    let per_token = KvCache::token_bytes(&m.model.config);
    let kv_cache_tokens = kv_tokens(args.kv_cache_mb, per_token)?;
    let threads = m.pool.n_threads();
    let kv = args.run.kv;
    let Loaded { model, tokenizer, .. } = m;
    let cfg = EngineConfig {
        max_batch_tokens: args.max_batch_tokens,
        kv_cache_tokens,
        step_latency_target: target,
        ..EngineConfig::default()
    };
    let engine = EngineHandle::spawn(Arc::new(model), threads, cfg)
        .context("cannot start the engine thread")?;
    let server_cfg = ServerConfig { api_keys: args.api_keys.clone(), ..ServerConfig::new(&name) };
    let server = Server::new(Arc::new(engine), ModelText::new(tokenizer, template), server_cfg);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        llmopt_server::init_json_logs().context("cannot start logging")?;
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr().context("cannot read the listening address")?;
        eprintln!(
            "llmopt serve: {name} listening on http://{addr} (KV cache {kv_cache_tokens} tokens \
             of {per_token} bytes, {kv}; {threads} threads); SIGTERM or Ctrl-C drains and stops"
        );
        let shutdown = llmopt_server::shutdown_signal().context("cannot watch for signals")?;
        server.serve(listener, shutdown).await.context("the server failed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_megabytes_become_tokens() {
        // SmolLM2: 30 layers x 2 (K, V) x 192 (3 KV heads x 64) x 2 bytes = 23040 bytes a token.
        assert_eq!(kv_tokens(512, 23040).unwrap(), 23301);
        assert!(kv_tokens(0, 23040).unwrap_err().to_string().contains("--kv-cache-mb 0"));
    }
}
