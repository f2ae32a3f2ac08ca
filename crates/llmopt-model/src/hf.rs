//! Hugging Face checkpoints (`config.json` + safetensors) as a model: [`ModelConfig::from_hf`] maps
//! the typed config, and [`SafetensorsSource`] answers the loader's GGUF tensor names from the HF
//! names in the `ArchSpec`'s table, converting to what a GGUF converter would have written:
//! - F32/F16/BF16 matrices are handed out as the ggml type of the same layout, borrowed from the map;
//! - norm weights get `+ hf_norm_offset` (Gemma stores `w - 1`) and become F32;
//! - for `hf_permute_qk` architectures (llama) the rows of Q and K are permuted as llama.cpp's
//!   `convert_hf_to_gguf.py` does (`LlamaModel.permute`), so the decoder's adjacent-pair rope applies.
//!
//! A checkpoint thus loads through the same `Model::from_source` as a GGUF file, and passes see the
//! same GGUF names either way.

use std::{path::Path, sync::Arc};

use llmopt_formats::{
    hf_config::HfConfig,
    safetensors::{HfError, SafetensorsModel, Tensor},
};

use crate::{
    arch::{ArchSpec, TensorName, TensorNames},
    linear::Bytes,
    model::{Model, SourceTensor, TensorSource},
    KvType, ModelConfig, ModelError,
};

/// Why a Hugging Face model directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HfLoadError {
    /// Reading the files: missing `config.json`, bad JSON, a broken safetensors header.
    #[error(transparent)]
    Format(#[from] HfError),
    /// Turning them into a model: unknown architecture, bad sizes, missing or unsupported tensors.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl ModelConfig {
    /// The configuration of a Hugging Face model; the architecture comes from `architectures[0]`.
    pub fn from_hf(c: &HfConfig) -> Result<Self, ModelError> {
        let class = c
            .architecture()
            .ok_or_else(|| ModelError::MissingMetadata { key: "architectures".into() })?;
        let arch = ArchSpec::by_hf_class(class)
            .ok_or_else(|| ModelError::UnknownArchitecture(class.into()))?;
        let invalid =
            |key: &str, reason: String| ModelError::InvalidMetadata { key: key.into(), reason };
        for (key, v) in [
            ("hidden_size", c.hidden_size),
            ("num_hidden_layers", c.num_hidden_layers),
            ("num_attention_heads", c.num_attention_heads),
            ("intermediate_size", c.intermediate_size),
            ("vocab_size", c.vocab_size),
            ("max_position_embeddings", c.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive".into()));
            }
        }
        let n_head = c.num_attention_heads;
        let n_kv_head = c.num_key_value_heads.unwrap_or(n_head);
        if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
            return Err(invalid(
                "num_key_value_heads",
                format!("{n_kv_head} KV heads do not divide {n_head} heads"),
            ));
        }
        let head_dim = match c.head_dim {
            Some(0) => return Err(invalid("head_dim", "must be positive".into())),
            Some(d) => d,
            None if c.hidden_size.is_multiple_of(n_head) => c.hidden_size / n_head,
            None => {
                return Err(invalid(
                    "hidden_size",
                    format!("{} is not a multiple of {n_head} heads", c.hidden_size),
                ))
            }
        };
        let rope_freq_scale = match &c.rope_scaling {
            None => 1.0,
            Some(rs) => match (rs.kind(), rs.factor) {
                (None | Some("default"), _) => 1.0,
                (Some("linear"), Some(f)) if f > 0.0 => 1.0 / f,
                (kind, factor) => {
                    return Err(invalid(
                        "rope_scaling",
                        format!("{kind:?} with factor {factor:?} is not supported (default, or linear with a positive factor)"),
                    ))
                }
            },
        };
        if let (Some(sw), Some(local)) = (arch.sliding_window, c.rope_local_base_freq) {
            if local != sw.local_rope_base {
                return Err(invalid(
                    "rope_local_base_freq",
                    format!("{local}, but {} layers use {}", arch.name, sw.local_rope_base),
                ));
            }
        }
        let attn_scale = match c.query_pre_attn_scalar {
            Some(s) if s > 0.0 => 1.0 / s.sqrt(),
            Some(s) => {
                return Err(invalid("query_pre_attn_scalar", format!("{s} is not positive")))
            }
            None => 1.0 / (head_dim as f32).sqrt(),
        };
        Self {
            arch,
            n_layer: c.num_hidden_layers,
            d_model: c.hidden_size,
            n_head,
            n_kv_head,
            head_dim,
            ffn_dim: c.intermediate_size,
            vocab_size: c.vocab_size,
            context_length: c.max_position_embeddings,
            rms_eps: c.rms_norm_eps.unwrap_or(arch.default_rms_eps),
            rope_base: c.rope_theta.unwrap_or(10_000.0),
            rope_freq_scale,
            rope_dim: head_dim,
            sliding_window: arch
                .sliding_window
                .map(|sw| c.sliding_window.unwrap_or(sw.default_window)),
            attn_scale,
            kv_type: KvType::F16,
            rotations: Default::default(),
        }
        .validate()
    }
}

/// What a tensor needs on its way from HF to GGUF layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conversion {
    /// Handed out as stored.
    None,
    /// A norm weight: to F32, plus the architecture's offset.
    Norm,
    /// Rows permuted for adjacent-pair rope, in groups of this many heads.
    PermuteRows { n_head: usize },
}

/// Every tensor kind of an architecture, with whether it is a norm.
fn kinds(n: &TensorNames) -> [(&TensorName, bool); 16] {
    [
        (&n.token_embd, false),
        (&n.output_norm, true),
        (&n.output, false),
        (&n.attn_norm, true),
        (&n.attn_q, false),
        (&n.attn_k, false),
        (&n.attn_v, false),
        (&n.attn_output, false),
        (&n.attn_q_norm, true),
        (&n.attn_k_norm, true),
        (&n.post_attention_norm, true),
        (&n.ffn_norm, true),
        (&n.ffn_gate, false),
        (&n.ffn_up, false),
        (&n.ffn_down, false),
        (&n.post_ffw_norm, true),
    ]
}

/// A safetensors checkpoint that answers GGUF tensor names (`blk.3.attn_q.weight`).
#[derive(Debug)]
pub struct SafetensorsSource {
    st: SafetensorsModel,
    arch: &'static ArchSpec,
    n_head: usize,
    n_kv_head: usize,
    tie_word_embeddings: bool,
}

impl SafetensorsSource {
    /// Wraps an open checkpoint for a model configured as `config`. With `tie_word_embeddings`
    /// false, `lm_head.weight` must be present.
    pub fn new(st: SafetensorsModel, config: &ModelConfig, tie_word_embeddings: bool) -> Self {
        Self {
            st,
            arch: config.arch,
            n_head: config.n_head,
            n_kv_head: config.n_kv_head,
            tie_word_embeddings,
        }
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &SafetensorsModel {
        &self.st
    }

    /// The Hugging Face name of a GGUF tensor name, if the architecture's table has its kind.
    pub fn hf_name(&self, gguf: &str) -> Option<String> {
        self.resolve(gguf).map(|(hf, _)| hf)
    }

    fn resolve(&self, gguf: &str) -> Option<(String, Conversion)> {
        let (layer, rest) = match gguf.strip_prefix("blk.") {
            Some(r) => {
                let (il, rest) = r.split_once('.')?;
                (Some(il.parse::<usize>().ok()?), rest)
            }
            None => (None, gguf),
        };
        let (kind, suffix) = rest.rsplit_once('.')?;
        let names = &self.arch.names;
        let (name, is_norm) = kinds(names).into_iter().find(|(n, _)| n.gguf == kind)?;
        // Per-layer kinds have a `{}` in their HF name; global ones do not.
        if name.hf.contains("{}") != layer.is_some() {
            return None;
        }
        let conv = if is_norm && suffix == "weight" {
            Conversion::Norm
        } else if self.arch.hf_permute_qk && kind == names.attn_q.gguf {
            Conversion::PermuteRows { n_head: self.n_head }
        } else if self.arch.hf_permute_qk && kind == names.attn_k.gguf {
            Conversion::PermuteRows { n_head: self.n_kv_head }
        } else {
            Conversion::None
        };
        Some((name.hf_name(layer, suffix), conv))
    }

    fn convert(
        &self,
        gguf: &str,
        t: &Tensor<'_>,
        conv: Conversion,
    ) -> Result<SourceTensor, ModelError> {
        let ty = t.dtype.ggml_type();
        let shape: Vec<usize> = t.shape.iter().rev().copied().collect();
        let bad = |reason: String| ModelError::BadTensor {
            name: format!("{gguf} (HF '{}')", t.name),
            reason,
        };
        let data = match conv {
            Conversion::None => {
                let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = t.file.clone();
                Bytes::slice_of(owner, t.offset, t.n_bytes)
                    .ok_or_else(|| bad("out of file bounds".into()))?
            }
            Conversion::Norm => {
                let n: usize = t.shape.iter().product();
                let mut v = vec![0f32; n];
                ty.to_f32(t.data(), &mut v).map_err(|e| bad(e.to_string()))?;
                let offset = self.arch.hf_norm_offset;
                let bytes = v.iter().flat_map(|x| (x + offset).to_le_bytes()).collect();
                return Ok(SourceTensor {
                    ty: llmopt_tensor::GgmlType::F32,
                    shape,
                    data: Bytes::from_vec(bytes),
                });
            }
            Conversion::PermuteRows { n_head } => {
                let rows = t.shape.first().copied().unwrap_or(1);
                if n_head == 0 || rows % (2 * n_head) != 0 {
                    return Err(bad(format!(
                        "{rows} rows cannot be split into {n_head} heads of pairs"
                    )));
                }
                let row_bytes = t.n_bytes / rows;
                Bytes::from_vec(permute_rows(t.data(), rows, row_bytes, n_head))
            }
        };
        Ok(SourceTensor { ty, shape, data })
    }
}

/// llama.cpp's `LlamaModel.permute` on rows of `row_bytes` bytes: within each head, the rows of
/// `w.reshape(n_head, 2, half, cols).swapaxes(1, 2)`, i.e. GGUF row `2i + j` of a head is HF row
/// `j * half + i` (the two rope halves interleaved into adjacent pairs).
pub fn permute_rows(data: &[u8], rows: usize, row_bytes: usize, n_head: usize) -> Vec<u8> {
    let head_rows = rows / n_head;
    let half = head_rows / 2;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_rows + j * half + i;
                out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

impl TensorSource for SafetensorsSource {
    fn tensor(&self, name: &str) -> Result<Option<SourceTensor>, ModelError> {
        let Some((hf, conv)) = self.resolve(name) else { return Ok(None) };
        let t = match self.st.tensor(&hf) {
            Ok(Some(t)) => t,
            Ok(None)
                if name == self.arch.names.output.gguf_name(None, "weight")
                    && !self.tie_word_embeddings =>
            {
                return Err(ModelError::MissingTensor {
                    name: format!(
                        "{hf} (tie_word_embeddings is false) in {}",
                        self.st.dir().display()
                    ),
                })
            }
            Ok(None) => return Ok(None),
            Err(HfError::UnsupportedDtype { name: hf, dtype, path }) => {
                return Err(ModelError::BadTensor {
                    name: format!("{name} (HF '{hf}')"),
                    reason: format!(
                        "dtype {dtype} in {} is not supported (F32, F16, BF16)",
                        path.display()
                    ),
                })
            }
            Err(e) => {
                return Err(ModelError::BadTensor { name: name.into(), reason: e.to_string() })
            }
        };
        self.convert(name, &t, conv).map(Some)
    }
}

impl Model {
    /// Loads a Hugging Face model: a directory with `config.json` and `model.safetensors` (or a
    /// sharded index), or one `.safetensors` file with `config.json` beside it. Matrices stay in
    /// the files' memory maps except Q and K of permuted architectures.
    pub fn from_safetensors(path: impl AsRef<Path>) -> Result<Self, HfLoadError> {
        let st = SafetensorsModel::open(path.as_ref())?;
        let hf = HfConfig::from_dir(st.dir())?;
        let config = ModelConfig::from_hf(&hf)?;
        let tie = hf.tie_word_embeddings.unwrap_or(config.arch.tied_output_default);
        let src = SafetensorsSource::new(st, &config, tie);
        Self::from_source(config, &src)
            .map_err(|e| match e {
                // Name the tensor as the checkpoint does.
                ModelError::MissingTensor { name } => match src.hf_name(&name) {
                    Some(hf) => ModelError::MissingTensor {
                        name: format!("{hf} (GGUF {name}) in {}", src.checkpoint().dir().display()),
                    },
                    None => ModelError::MissingTensor { name },
                },
                e => e,
            })
            .map_err(HfLoadError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_the_rope_halves_of_each_head() {
        // 2 heads of 4 rows, one byte per row: HF rows [a0 a1 b0 b1] per head become [a0 b0 a1 b1].
        let hf: Vec<u8> = (0..8).collect();
        assert_eq!(permute_rows(&hf, 8, 1, 2), [0, 2, 1, 3, 4, 6, 5, 7]);
        // Rows move whole.
        let hf: Vec<u8> = (0..8).flat_map(|r| [r, 100 + r]).collect();
        assert_eq!(permute_rows(&hf, 8, 2, 2)[..4], [0, 100, 2, 102]);
    }
}
