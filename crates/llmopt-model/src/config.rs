//! Hyper-parameters of a loaded model, read from GGUF metadata (`{arch}.*` keys) or a Hugging Face
//! `config.json`, with the architecture's defaults filling what a file leaves out.

use llmopt_formats::gguf::Metadata;

use crate::{arch::ArchSpec, KvType, ModelError, Rotations};

/// The numbers that size a decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: &'static ArchSpec,
    pub n_layer: usize,
    pub d_model: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    /// Rope base of global layers (all layers when there is no sliding window).
    pub rope_base: f32,
    /// Position scaling (1 / linear scaling factor).
    pub rope_freq_scale: f32,
    /// Number of leading dimensions of each head that rope rotates.
    pub rope_dim: usize,
    /// Sliding window size for windowed layers, `None` when every layer is global.
    pub sliding_window: Option<usize>,
    /// Scale applied to attention scores.
    pub attn_scale: f32,
    /// Element type of the KV caches made for this model (`KvCache::new`); a run-time choice,
    /// f16 as loaded, set through [`ModelConfig::with_kv_type`] (the CLI's `--kv`).
    pub kv_type: KvType,
    /// The inputs rotated by a Walsh-Hadamard matrix before their Linears, whose weights were
    /// rotated the same way when the file was written (`quantize --method smoothquant` for
    /// W8A8); none in every file but those. From the [`crate::RotationSite`] keys.
    pub rotations: Rotations,
}

impl ModelConfig {
    /// Reads the configuration of `arch` from GGUF metadata.
    pub fn from_gguf(arch: &'static ArchSpec, meta: &Metadata) -> Result<Self, ModelError> {
        let key = |k: &str| format!("{}.{k}", arch.name);
        let req = |k: &str| -> Result<usize, ModelError> {
            let full = key(k);
            let v = meta
                .get_u64(&full)
                .ok_or_else(|| ModelError::MissingMetadata { key: full.clone() })?;
            usize::try_from(v).ok().filter(|&v| v > 0).ok_or(ModelError::InvalidMetadata {
                key: full,
                reason: format!("{v} is out of range"),
            })
        };
        let opt = |k: &str| meta.get_u64(&key(k)).map(|v| v as usize);
        let d_model = req("embedding_length")?;
        let n_head = req("attention.head_count")?;
        let n_kv_head = opt("attention.head_count_kv").unwrap_or(n_head);
        let head_dim = opt("attention.key_length").unwrap_or(d_model / n_head);
        let value_dim = opt("attention.value_length").unwrap_or(head_dim);
        if value_dim != head_dim {
            return Err(ModelError::InvalidMetadata {
                key: key("attention.value_length"),
                reason: format!("value length {value_dim} differs from key length {head_dim}"),
            });
        }
        if n_kv_head == 0 || n_head % n_kv_head != 0 {
            return Err(ModelError::InvalidMetadata {
                key: key("attention.head_count_kv"),
                reason: format!("{n_kv_head} KV heads do not divide {n_head} heads"),
            });
        }
        let vocab_size = match meta.get_u64(&key("vocab_size")) {
            Some(v) => v as usize,
            None => meta
                .get_array("tokenizer.ggml.tokens")
                .map(|a| a.len())
                .ok_or_else(|| ModelError::MissingMetadata { key: key("vocab_size") })?,
        };
        let rope_freq_scale = match meta.get_str(&key("rope.scaling.type")) {
            None | Some("none") => 1.0,
            Some("linear") => 1.0 / meta.get_f32(&key("rope.scaling.factor")).unwrap_or(1.0),
            Some(other) => {
                return Err(ModelError::InvalidMetadata {
                    key: key("rope.scaling.type"),
                    reason: format!("rope scaling '{other}' is not supported (none, linear)"),
                })
            }
        };
        let sliding_window = arch
            .sliding_window
            .map(|sw| opt("attention.sliding_window").unwrap_or(sw.default_window));
        let cfg = Self {
            arch,
            n_layer: req("block_count")?,
            d_model,
            n_head,
            n_kv_head,
            head_dim,
            ffn_dim: req("feed_forward_length")?,
            vocab_size,
            context_length: req("context_length")?,
            rms_eps: meta
                .get_f32(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(arch.default_rms_eps),
            rope_base: meta.get_f32(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_freq_scale,
            rope_dim: opt("rope.dimension_count").unwrap_or(head_dim),
            sliding_window,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            kv_type: KvType::F16,
            rotations: Rotations::from_metadata(meta),
        };
        cfg.validate()
    }

    /// Checks relations between the numbers that the forward pass relies on.
    pub fn validate(self) -> Result<Self, ModelError> {
        let bad = |key: &str, reason: String| {
            Err(ModelError::InvalidMetadata { key: key.into(), reason })
        };
        if self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return bad(
                "rope.dimension_count",
                format!("{} for head size {}", self.rope_dim, self.head_dim),
            );
        }
        if self.head_dim == 0 || self.head_dim > crate::attention::MAX_HEAD_DIM {
            return bad(
                "attention.key_length",
                format!(
                    "head size {} is not in 1..={}",
                    self.head_dim,
                    crate::attention::MAX_HEAD_DIM
                ),
            );
        }
        self.rotations.validate(self.d_model, self.ffn_dim)?;
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(
                "attention.head_count_kv",
                format!("{} does not divide {}", self.n_kv_head, self.n_head),
            );
        }
        Ok(self)
    }

    /// This configuration with KV caches of type `kv`; an error when a head is not whole blocks of
    /// its format.
    pub fn with_kv_type(self, kv: KvType) -> Result<Self, ModelError> {
        if !self.head_dim.is_multiple_of(kv.block_len()) {
            return Err(ModelError::KvTypeUnfit { kv, head_dim: self.head_dim });
        }
        Ok(Self { kv_type: kv, ..self })
    }

    /// Whether layer `il` attends through a sliding window, and the window.
    pub fn layer_window(&self, il: usize) -> Option<usize> {
        let sw = self.arch.sliding_window?;
        if (il + 1).is_multiple_of(sw.global_every) {
            None
        } else {
            self.sliding_window
        }
    }

    /// Rope base of layer `il`.
    pub fn layer_rope_base(&self, il: usize) -> f32 {
        match (self.arch.sliding_window, self.layer_window(il)) {
            (Some(sw), Some(_)) => sw.local_rope_base,
            _ => self.rope_base,
        }
    }

    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}
