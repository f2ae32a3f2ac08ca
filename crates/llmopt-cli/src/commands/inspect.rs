//! `llmopt inspect`: what a model file holds, without running it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use llmopt_formats::gguf::{GgufFile, MetaValue};
use llmopt_model::{ArchSpec, ModelConfig};
use serde::Serialize;

use crate::{cli::InspectArgs, units::human_bytes};

#[derive(Serialize)]
pub(crate) struct TypeRow {
    #[serde(rename = "type")]
    pub ty: String,
    pub tensors: usize,
    pub parameters: u64,
    pub bytes: u64,
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
    /// The `llmopt.*` metadata of files llmopt wrote (source, hash, recipe).
    provenance: BTreeMap<String, String>,
}

/// Tensors, parameters and bytes per tensor type, largest share first.
pub(crate) fn type_rows(f: &GgufFile) -> Vec<TypeRow> {
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
    rows
}

/// The `llmopt.*` keys (how the file was made), values as text.
fn provenance(f: &GgufFile) -> BTreeMap<String, String> {
    f.metadata()
        .iter()
        .filter(|(k, _)| k.starts_with(llmopt_quant::provenance::PREFIX))
        .map(|(k, v)| (k.to_string(), meta_text(v)))
        .collect()
}

fn meta_text(v: &MetaValue) -> String {
    match v {
        MetaValue::String(s) => s.clone(),
        MetaValue::Array(items) => items.iter().map(meta_text).collect::<Vec<_>>().join(" "),
        MetaValue::Bool(b) => b.to_string(),
        MetaValue::F32(x) => x.to_string(),
        MetaValue::F64(x) => x.to_string(),
        other => other.as_i64().map_or_else(|| format!("{other:?}"), |i| i.to_string()),
    }
}

fn build(f: &GgufFile) -> Report {
    let meta = f.metadata();
    let arch_name = f.architecture().map(str::to_owned);
    let spec = arch_name.as_deref().and_then(ArchSpec::by_name);
    let cfg = spec.and_then(|a| ModelConfig::from_gguf(a, meta).ok());
    let rows = type_rows(f);
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
        provenance: provenance(f),
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
    println!("{}", types_table(&r.tensor_types));
    if !r.provenance.is_empty() {
        let mut p = Table::new();
        p.load_preset(UTF8_FULL_CONDENSED);
        p.set_header(vec!["provenance", ""]);
        for (k, v) in &r.provenance {
            p.add_row(vec![k.clone(), v.clone()]);
        }
        println!("{p}");
    }
    Ok(())
}

/// The per-type table: tensors, parameters, bytes and share of the bytes.
pub(crate) fn types_table(rows: &[TypeRow]) -> Table {
    let total: u64 = rows.iter().map(|r| r.bytes).sum();
    let mut types = Table::new();
    types.load_preset(UTF8_FULL_CONDENSED);
    types.set_header(vec!["type", "tensors", "parameters", "bytes", "share"]);
    for row in rows {
        types.add_row(vec![
            row.ty.clone(),
            row.tensors.to_string(),
            format!("{:.2} M", row.parameters as f64 / 1e6),
            human_bytes(row.bytes),
            format!("{:.1}%", 100.0 * row.bytes as f64 / total.max(1) as f64),
        ]);
    }
    types
}
