//! Architectures as data: everything that differs between llama, qwen2 and gemma3 is a field of
//! [`ArchSpec`]; the decoder reads these fields and has no per-architecture code paths.

/// How rotary position embedding pairs dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): ggml's "normal" rope (llama GGUFs have Q/K permuted for it).
    Adjacent,
    /// Halves (i, i + d/2): ggml's NEOX rope.
    Halves,
}

/// The gated feed-forward activation applied to the gate projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(gate) * up.
    Silu,
    /// GeGLU with the tanh approximation of GELU.
    GeluTanh,
}

/// Sliding-window attention: most layers see only the last `window` positions (window from the
/// GGUF metadata), every `global_every`-th layer sees everything and uses the global rope base.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlidingWindowSpec {
    /// Layer `il` is global when `(il + 1) % global_every == 0`.
    pub global_every: usize,
    /// Rope base of the windowed (local) layers; global layers use `{arch}.rope.freq_base`.
    pub local_rope_base: f32,
    /// Window used when the metadata does not give one.
    pub default_window: usize,
}

/// Names of a tensor kind in GGUF (`blk.{}` prefix added per layer) and in Hugging Face safetensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorName {
    pub gguf: &'static str,
    pub hf: &'static str,
}

/// Tensor names of one layer and the model's global tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorNames {
    pub token_embd: TensorName,
    pub output_norm: TensorName,
    pub output: TensorName,
    pub attn_norm: TensorName,
    pub attn_q: TensorName,
    pub attn_k: TensorName,
    pub attn_v: TensorName,
    pub attn_output: TensorName,
    pub attn_q_norm: TensorName,
    pub attn_k_norm: TensorName,
    pub post_attention_norm: TensorName,
    pub ffn_norm: TensorName,
    pub ffn_gate: TensorName,
    pub ffn_up: TensorName,
    pub ffn_down: TensorName,
    pub post_ffw_norm: TensorName,
}

/// One decoder architecture as data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArchSpec {
    /// `general.architecture` in GGUF.
    pub name: &'static str,
    /// `architectures[0]` in a Hugging Face `config.json`.
    pub hf_class: &'static str,
    pub rope: RopeStyle,
    pub activation: Activation,
    /// Biases on Q, K and V (loaded when present either way).
    pub qkv_bias: bool,
    /// RMSNorm of each head of Q and K before rope.
    pub qk_norm: bool,
    /// Sandwich norms after attention and after the FFN.
    pub post_norms: bool,
    /// Multiply embeddings by sqrt(d_model).
    pub embed_scale_sqrt_dim: bool,
    /// Output projection shares the embedding matrix when `output.weight` is absent.
    pub tied_output_default: bool,
    pub sliding_window: Option<SlidingWindowSpec>,
    /// RMSNorm epsilon when the metadata has none.
    pub default_rms_eps: f32,
    /// Hugging Face stores RMSNorm weights as (w - offset); GGUF converters add it back.
    pub hf_norm_offset: f32,
    /// GGUF Q/K rows are permuted from the Hugging Face layout for adjacent-pair rope.
    pub hf_permute_qk: bool,
    pub names: TensorNames,
}

const fn n(gguf: &'static str, hf: &'static str) -> TensorName {
    TensorName { gguf, hf }
}

/// Names shared by the llama family in Hugging Face layout (`{}` is the layer index).
const LLAMA_NAMES: TensorNames = TensorNames {
    token_embd: n("token_embd", "model.embed_tokens"),
    output_norm: n("output_norm", "model.norm"),
    output: n("output", "lm_head"),
    attn_norm: n("attn_norm", "model.layers.{}.input_layernorm"),
    attn_q: n("attn_q", "model.layers.{}.self_attn.q_proj"),
    attn_k: n("attn_k", "model.layers.{}.self_attn.k_proj"),
    attn_v: n("attn_v", "model.layers.{}.self_attn.v_proj"),
    attn_output: n("attn_output", "model.layers.{}.self_attn.o_proj"),
    attn_q_norm: n("attn_q_norm", "model.layers.{}.self_attn.q_norm"),
    attn_k_norm: n("attn_k_norm", "model.layers.{}.self_attn.k_norm"),
    post_attention_norm: n("post_attention_norm", "model.layers.{}.post_attention_layernorm"),
    ffn_norm: n("ffn_norm", "model.layers.{}.post_attention_layernorm"),
    ffn_gate: n("ffn_gate", "model.layers.{}.mlp.gate_proj"),
    ffn_up: n("ffn_up", "model.layers.{}.mlp.up_proj"),
    ffn_down: n("ffn_down", "model.layers.{}.mlp.down_proj"),
    post_ffw_norm: n("post_ffw_norm", "model.layers.{}.post_feedforward_layernorm"),
};

/// Gemma 3 names its pre-FFN norm differently and has the sandwich norms.
const GEMMA3_NAMES: TensorNames = TensorNames {
    token_embd: n("token_embd", "model.embed_tokens"),
    ffn_norm: n("ffn_norm", "model.layers.{}.pre_feedforward_layernorm"),
    post_attention_norm: n("post_attention_norm", "model.layers.{}.post_attention_layernorm"),
    ..LLAMA_NAMES
};

/// The architectures this build runs.
pub const ARCHITECTURES: &[ArchSpec] = &[
    ArchSpec {
        name: "llama",
        hf_class: "LlamaForCausalLM",
        rope: RopeStyle::Adjacent,
        activation: Activation::Silu,
        qkv_bias: false,
        qk_norm: false,
        post_norms: false,
        embed_scale_sqrt_dim: false,
        tied_output_default: true,
        sliding_window: None,
        default_rms_eps: 1e-5,
        hf_norm_offset: 0.0,
        hf_permute_qk: true,
        names: LLAMA_NAMES,
    },
    ArchSpec {
        name: "qwen2",
        hf_class: "Qwen2ForCausalLM",
        rope: RopeStyle::Halves,
        activation: Activation::Silu,
        qkv_bias: true,
        qk_norm: false,
        post_norms: false,
        embed_scale_sqrt_dim: false,
        tied_output_default: true,
        sliding_window: None,
        default_rms_eps: 1e-6,
        hf_norm_offset: 0.0,
        hf_permute_qk: false,
        names: LLAMA_NAMES,
    },
    ArchSpec {
        name: "gemma3",
        hf_class: "Gemma3ForCausalLM",
        rope: RopeStyle::Halves,
        activation: Activation::GeluTanh,
        qkv_bias: false,
        qk_norm: true,
        post_norms: true,
        embed_scale_sqrt_dim: true,
        tied_output_default: true,
        sliding_window: Some(SlidingWindowSpec {
            global_every: 6,
            local_rope_base: 10_000.0,
            default_window: 512,
        }),
        default_rms_eps: 1e-6,
        hf_norm_offset: 1.0,
        hf_permute_qk: false,
        names: GEMMA3_NAMES,
    },
];

impl ArchSpec {
    /// The spec for a GGUF `general.architecture` name.
    pub fn by_name(name: &str) -> Option<&'static ArchSpec> {
        ARCHITECTURES.iter().find(|a| a.name == name)
    }

    /// The spec for a Hugging Face `architectures[0]` class name.
    pub fn by_hf_class(class: &str) -> Option<&'static ArchSpec> {
        ARCHITECTURES.iter().find(|a| a.hf_class == class)
    }

    /// Names of all supported architectures, for messages.
    pub fn supported() -> Vec<&'static str> {
        ARCHITECTURES.iter().map(|a| a.name).collect()
    }
}

impl TensorName {
    /// The GGUF name of this tensor in layer `layer` (or global when `None`), with `suffix`
    /// (`weight` or `bias`).
    pub fn gguf_name(&self, layer: Option<usize>, suffix: &str) -> String {
        match layer {
            Some(il) => format!("blk.{il}.{}.{suffix}", self.gguf),
            None => format!("{}.{suffix}", self.gguf),
        }
    }

    /// The Hugging Face name of this tensor in layer `layer`, with `suffix`.
    pub fn hf_name(&self, layer: Option<usize>, suffix: &str) -> String {
        let base = match layer {
            Some(il) => self.hf.replace("{}", &il.to_string()),
            None => self.hf.to_string(),
        };
        format!("{base}.{suffix}")
    }
}
