//! `llmopt inspect`: what a model file holds, without running it.

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_formats::gguf::GgufFile;
use llmopt_model::{ArchSpec, ModelConfig};
use serde::Serialize;

use crate::{cli::InspectArgs, units::human_bytes};

#[derive(Serialize)]
struct TypeRow {
    #[serde(rename = "type")]
    ty: String,
    tensors: usize,
    parameters: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct Report {
    path: String,
    file_bytes: u64,
    gguf_version: u32,
    name: Option<String>,
    architecture: Option<String>,
    supported: bool,
    parameters: u64,
    tensor_bytes: u64,
    bits_per_weight: f64,
    context_length: Option<u64>,
    layers: Option<usize>,
    d_model: Option<usize>,
    heads: Option<usize>,
    kv_heads: Option<usize>,
    head_dim: Option<usize>,
    ffn_dim: Option<usize>,
    vocab_size: Option<usize>,
    tokenizer: Option<String>,
    chat_template: bool,
    tensor_types: Vec<TypeRow>,
}

fn build(f: &GgufFile) -> Report {
    let meta = f.metadata();
    let arch_name = f.architecture().map(str::to_owned);
    let spec = arch_name.as_deref().and_then(ArchSpec::by_name);
    let cfg = spec.and_then(|a| ModelConfig::from_gguf(a, meta).ok());
    let mut rows: Vec<TypeRow> = Vec::new();
    for t in f.tensors() {
        let name = t.ty.name().to_uppercase();
        match rows.iter_mut().find(|r| r.ty == name) {
            Some(r) => {
                r.tensors += 1;
                r.parameters += t.n_elements();
                r.bytes += t.n_bytes;
            }
            None => rows.push(TypeRow {
                ty: name,
                tensors: 1,
                parameters: t.n_elements(),
                bytes: t.n_bytes,
            }),
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.bytes));
    let parameters: u64 = rows.iter().map(|r| r.parameters).sum();
    let tensor_bytes: u64 = rows.iter().map(|r| r.bytes).sum();
    let key = |k: &str| arch_name.as_ref().and_then(|a| meta.get_u64(&format!("{a}.{k}")));
    Report {
        path: f.path().display().to_string(),
        file_bytes: f.file_len(),
        gguf_version: f.version(),
        name: meta.get_str("general.name").map(str::to_owned),
        supported: cfg.is_some(),
        parameters,
        tensor_bytes,
        bits_per_weight: f.bits_per_weight(),
        context_length: key("context_length"),
        layers: cfg.as_ref().map(|c| c.n_layer),
        d_model: cfg.as_ref().map(|c| c.d_model),
        heads: cfg.as_ref().map(|c| c.n_head),
        kv_heads: cfg.as_ref().map(|c| c.n_kv_head),
        head_dim: cfg.as_ref().map(|c| c.head_dim),
        ffn_dim: cfg.as_ref().map(|c| c.ffn_dim),
        vocab_size: cfg
            .as_ref()
            .map(|c| c.vocab_size)
            .or(meta.get_array("tokenizer.ggml.tokens").map(|a| a.len())),
        tokenizer: meta.get_str("tokenizer.ggml.model").map(|m| {
            match meta.get_str("tokenizer.ggml.pre") {
                Some(pre) => format!("{m} (pre-tokenizer {pre})"),
                None => m.to_owned(),
            }
        }),
        chat_template: meta.get_str("tokenizer.chat_template").is_some(),
        architecture: arch_name,
        tensor_types: rows,
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".into(), T::to_string)
}

/// Prints the report as tables or JSON.
#[allow(clippy::print_stdout)]
pub fn run(args: &InspectArgs) -> Result<()> {
    let f = GgufFile::open(&args.model)
        .with_context(|| format!("cannot inspect {}", args.model.display()))?;
    let r = build(&f);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let arch = match (&r.architecture, r.supported) {
        (Some(a), true) => a.clone(),
        (Some(a), false) => format!("{a} (not supported by this build)"),
        (None, _) => "- (general.architecture missing)".into(),
    };
    let rows: Vec<(&str, String)> = vec![
        ("file", format!("{} ({}, GGUF v{})", r.path, human_bytes(r.file_bytes), r.gguf_version)),
        ("name", opt(&r.name)),
        ("architecture", arch),
        ("parameters", format!("{:.1} M", r.parameters as f64 / 1e6)),
        ("bits per weight", format!("{:.2}", r.bits_per_weight)),
        ("context length", opt(&r.context_length)),
        ("layers", opt(&r.layers)),
        ("d_model", opt(&r.d_model)),
        (
            "heads / KV heads / head dim",
            format!("{} / {} / {}", opt(&r.heads), opt(&r.kv_heads), opt(&r.head_dim)),
        ),
        ("feed-forward", opt(&r.ffn_dim)),
        ("vocabulary", opt(&r.vocab_size)),
        ("tokenizer", opt(&r.tokenizer)),
        ("chat template", if r.chat_template { "yes".into() } else { "no".into() }),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
    let mut types = Table::new();
    types.load_preset(UTF8_FULL_CONDENSED);
    types.set_header(vec!["type", "tensors", "parameters", "bytes", "share"]);
    for row in &r.tensor_types {
        types.add_row(vec![
            row.ty.clone(),
            row.tensors.to_string(),
            format!("{:.2} M", row.parameters as f64 / 1e6),
            human_bytes(row.bytes),
            format!("{:.1}%", 100.0 * row.bytes as f64 / r.tensor_bytes.max(1) as f64),
        ]);
    }
    println!("{types}");
    Ok(())
}
