//! The loaded decoder: configuration, the layers' weights, and loading them from a tensor source
//! (a GGUF file, or Hugging Face safetensors mapped to GGUF names) as the `ArchSpec` describes.

use std::sync::Arc;

use llmopt_formats::gguf::GgufFile;
use llmopt_tensor::GgmlType;

use crate::{
    arch::{ArchSpec, TensorName},
    config::ModelConfig,
    linear::{Bytes, Linear, Weight},
    ModelError,
};

/// A tensor as a source hands it out: format, shape (`shape[0]` innermost) and bytes.
#[derive(Clone, Debug)]
pub struct SourceTensor {
    pub ty: GgmlType,
    pub shape: Vec<usize>,
    pub data: Bytes,
}

/// Where weights come from, addressed by GGUF tensor name.
pub trait TensorSource {
    /// The tensor called `name` (GGUF naming), or `None` when absent.
    fn tensor(&self, name: &str) -> Result<Option<SourceTensor>, ModelError>;
}

impl TensorSource for Arc<GgufFile> {
    fn tensor(&self, name: &str) -> Result<Option<SourceTensor>, ModelError> {
        let Some(info) = GgufFile::tensor(self, name) else { return Ok(None) };
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = self.clone();
        let data = Bytes::slice_of(owner, info.offset as usize, info.n_bytes as usize).ok_or_else(
            || ModelError::BadTensor { name: name.into(), reason: "out of file bounds".into() },
        )?;
        Ok(Some(SourceTensor {
            ty: info.ty,
            shape: info.shape.iter().map(|&d| d as usize).collect(),
            data,
        }))
    }
}

/// One decoder block's weights. Optional parts are present when the `ArchSpec` asks for them.
#[derive(Clone, Debug)]
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub attn_q: Linear,
    pub attn_k: Linear,
    pub attn_v: Linear,
    pub attn_output: Linear,
    pub attn_q_norm: Option<Vec<f32>>,
    pub attn_k_norm: Option<Vec<f32>>,
    pub post_attention_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub ffn_gate: Linear,
    pub ffn_up: Linear,
    pub ffn_down: Linear,
    pub post_ffw_norm: Option<Vec<f32>>,
}

/// A decoder-only transformer ready to run.
#[derive(Clone, Debug)]
pub struct Model {
    pub config: ModelConfig,
    /// `vocab_size` rows of `d_model`.
    pub token_embd: Weight,
    pub output_norm: Vec<f32>,
    /// The vocabulary projection (shares `token_embd`'s bytes when tied).
    pub output: Linear,
    pub layers: Vec<Layer>,
}

struct Loader<'a, S: TensorSource> {
    src: &'a S,
    cfg: &'a ModelConfig,
}

impl<S: TensorSource> Loader<'_, S> {
    fn get(&self, name: &str) -> Result<SourceTensor, ModelError> {
        self.src.tensor(name)?.ok_or_else(|| ModelError::MissingTensor { name: name.into() })
    }

    fn vector(
        &self,
        t: &TensorName,
        layer: Option<usize>,
        len: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let name = t.gguf_name(layer, "weight");
        self.vector_named(&name, len)
    }

    fn vector_named(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.get(name)?;
        if t.shape.iter().product::<usize>() != len {
            return Err(ModelError::BadTensor {
                name: name.into(),
                reason: format!("shape {:?}, expected {len} values", t.shape),
            });
        }
        let mut out = vec![0.0; len];
        t.ty.to_f32(t.data.as_slice(), &mut out)
            .map_err(|e| ModelError::BadTensor { name: name.into(), reason: e.to_string() })?;
        Ok(out)
    }

    fn optional_vector(
        &self,
        t: &TensorName,
        layer: Option<usize>,
        len: usize,
        wanted: bool,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        if !wanted {
            return Ok(None);
        }
        self.vector(t, layer, len).map(Some)
    }

    fn weight(&self, name: &str, rows: usize, cols: usize) -> Result<Weight, ModelError> {
        let t = self.get(name)?;
        if t.shape.len() != 2 || t.shape[0] != cols || t.shape[1] != rows {
            return Err(ModelError::BadTensor {
                name: name.into(),
                reason: format!("shape {:?}, expected [{cols}, {rows}]", t.shape),
            });
        }
        Weight::new(name, t.ty, rows, cols, t.data)
    }

    fn linear(
        &self,
        t: &TensorName,
        layer: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Linear, ModelError> {
        let name = t.gguf_name(Some(layer), "weight");
        let weight = self.weight(&name, rows, cols)?;
        let bias_name = t.gguf_name(Some(layer), "bias");
        let bias = match self.src.tensor(&bias_name)? {
            Some(_) => Some(self.vector_named(&bias_name, rows)?),
            None => None,
        };
        Ok(Linear { name, weight, bias })
    }

    fn layer(&self, il: usize) -> Result<Layer, ModelError> {
        let c = self.cfg;
        let a = c.arch;
        let n = &a.names;
        let (d, hd) = (c.d_model, c.head_dim);
        Ok(Layer {
            attn_norm: self.vector(&n.attn_norm, Some(il), d)?,
            attn_q: self.linear(&n.attn_q, il, c.q_dim(), d)?,
            attn_k: self.linear(&n.attn_k, il, c.kv_dim(), d)?,
            attn_v: self.linear(&n.attn_v, il, c.kv_dim(), d)?,
            attn_output: self.linear(&n.attn_output, il, d, c.q_dim())?,
            attn_q_norm: self.optional_vector(&n.attn_q_norm, Some(il), hd, a.qk_norm)?,
            attn_k_norm: self.optional_vector(&n.attn_k_norm, Some(il), hd, a.qk_norm)?,
            post_attention_norm: self.optional_vector(
                &n.post_attention_norm,
                Some(il),
                d,
                a.post_norms,
            )?,
            ffn_norm: self.vector(&n.ffn_norm, Some(il), d)?,
            ffn_gate: self.linear(&n.ffn_gate, il, c.ffn_dim, d)?,
            ffn_up: self.linear(&n.ffn_up, il, c.ffn_dim, d)?,
            ffn_down: self.linear(&n.ffn_down, il, d, c.ffn_dim)?,
            post_ffw_norm: self.optional_vector(&n.post_ffw_norm, Some(il), d, a.post_norms)?,
        })
    }
}

impl Model {
    /// Loads a model from a GGUF file (tensors stay in the file's memory map).
    pub fn from_gguf(file: Arc<GgufFile>) -> Result<Self, ModelError> {
        let arch_name = file
            .metadata()
            .get_str("general.architecture")
            .ok_or_else(|| ModelError::MissingMetadata { key: "general.architecture".into() })?;
        let arch = ArchSpec::by_name(arch_name)
            .ok_or_else(|| ModelError::UnknownArchitecture(arch_name.into()))?;
        let config = ModelConfig::from_gguf(arch, file.metadata())?;
        Self::from_source(config, &file)
    }

    /// Loads the weights described by `config` from `src`.
    pub fn from_source<S: TensorSource>(config: ModelConfig, src: &S) -> Result<Self, ModelError> {
        let ld = Loader { src, cfg: &config };
        let names = &config.arch.names;
        let embd_name = names.token_embd.gguf_name(None, "weight");
        let token_embd = ld.weight(&embd_name, config.vocab_size, config.d_model)?;
        let output_name = names.output.gguf_name(None, "weight");
        let output = match src.tensor(&output_name)? {
            Some(_) => Linear {
                weight: ld.weight(&output_name, config.vocab_size, config.d_model)?,
                name: output_name,
                bias: None,
            },
            None if config.arch.tied_output_default => {
                Linear { name: embd_name, weight: token_embd.clone(), bias: None }
            }
            None => return Err(ModelError::MissingTensor { name: output_name }),
        };
        let output_norm = ld.vector(&names.output_norm, None, config.d_model)?;
        let layers = (0..config.n_layer).map(|il| ld.layer(il)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { config, token_embd, output_norm, output, layers })
    }

    /// Repacks every Linear's weight into the 8-row interleaved layout of the fastest kernels
    /// ([`Weight::pack`]) where this CPU has them (Q4_0, Q4_1, Q5_0, Q8_0 with AVX2; also Q4_K
    /// and Q6_K with AVX-512 VNNI), all in one mapping on huge pages in the order decode reads
    /// them ([`Weight::pack_many`]); returns how many were packed. Not done at load: results then
    /// differ from llama.cpp's x86 numerics (it keeps Q4_1, Q5_0 and Q8_0 in their GGUF layout,
    /// one `vec_dot` per row and token) by float reassociation, enough to move greedy paths at
    /// near-ties.
    pub fn pack_weights(&mut self) -> usize {
        let mut ws: Vec<&mut Weight> = self.linears_mut().map(|l| &mut l.weight).collect();
        Weight::pack_many(&mut ws)
    }

    /// Every Linear with its GGUF weight name, for passes that rewrite weights.
    pub fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    &mut l.attn_q,
                    &mut l.attn_k,
                    &mut l.attn_v,
                    &mut l.attn_output,
                    &mut l.ffn_gate,
                    &mut l.ffn_up,
                    &mut l.ffn_down,
                ]
            })
            .chain(std::iter::once(&mut self.output))
    }

    /// Bytes of weights one decode step reads: every Linear (the vocabulary projection included,
    /// biases too), the norm vectors, and one embedding row. The floor of decode's memory traffic.
    pub fn decode_bytes_per_token(&self) -> usize {
        let linears: usize = self
            .linears()
            .map(|l| l.weight.n_bytes() + 4 * l.bias.as_ref().map_or(0, Vec::len))
            .sum();
        let norm = |v: &Option<Vec<f32>>| 4 * v.as_ref().map_or(0, Vec::len);
        let norms: usize = self
            .layers
            .iter()
            .map(|l| {
                4 * (l.attn_norm.len() + l.ffn_norm.len())
                    + norm(&l.attn_q_norm)
                    + norm(&l.attn_k_norm)
                    + norm(&l.post_attention_norm)
                    + norm(&l.post_ffw_norm)
            })
            .sum();
        linears + norms + 4 * self.output_norm.len() + self.token_embd.row_bytes()
    }

    /// Every Linear, read-only.
    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    &l.attn_q,
                    &l.attn_k,
                    &l.attn_v,
                    &l.attn_output,
                    &l.ffn_gate,
                    &l.ffn_up,
                    &l.ffn_down,
                ]
            })
            .chain(std::iter::once(&self.output))
    }
}
