//! A Hugging Face `config.json` as a typed struct: only the fields the decoder needs, optional where
//! transformers itself defaults them. JSON stays in this crate; the model crate gets [`HfConfig`].

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::safetensors::HfError;
use crate::safetensors::CONFIG_FILE;

/// `rope_scaling` of a `config.json` (`{"rope_type": "linear", "factor": 2.0}`; older files say
/// `"type"`, newer ones often write both).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct RopeScaling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub legacy_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f32>,
}

impl RopeScaling {
    /// The scaling kind (`"linear"`, `"llama3"`, `"yarn"`, `"default"`...), whichever key holds it.
    pub fn kind(&self) -> Option<&str> {
        self.rope_type.as_deref().or(self.legacy_type.as_deref())
    }
}

/// The fields of a `config.json` that size and configure a decoder.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct HfConfig {
    /// Model classes; `architectures[0]` picks the architecture (`"LlamaForCausalLM"`).
    pub architectures: Vec<String>,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (no grouped-query attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rms_norm_eps: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f32>,
    /// Rope base of the sliding-window layers (Gemma 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_base_freq: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5` (Gemma 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
}

impl HfConfig {
    /// Parses `text`, the contents of `path` (named in errors).
    pub fn from_json(text: &str, path: &Path) -> Result<Self, HfError> {
        serde_json::from_str(text).map_err(|e| HfError::json(path, &e))
    }

    /// Reads a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, HfError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => HfError::MissingFile {
                path: path.to_path_buf(),
                what: "a Hugging Face model needs its config.json",
            },
            _ => HfError::Io { path: path.to_path_buf(), source },
        })?;
        Self::from_json(&text, path)
    }

    /// Reads `config.json` from a model directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, HfError> {
        Self::from_file(dir.as_ref().join(CONFIG_FILE))
    }

    /// The config as pretty JSON (fields that are `None` left out).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .expect("a struct of numbers and strings always serializes")
    }

    /// `architectures[0]`, the model class.
    pub fn architecture(&self) -> Option<&str> {
        self.architectures.first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M's `config.json`, abridged (unknown keys must be ignored).
    const SMOLLM2: &str = r#"{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 1,
  "hidden_act": "silu",
  "hidden_size": 576,
  "intermediate_size": 1536,
  "max_position_embeddings": 8192,
  "num_attention_heads": 9,
  "num_hidden_layers": 30,
  "num_key_value_heads": 3,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 100000,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "vocab_size": 49152
}"#;

    #[test]
    fn parses_a_real_config_and_round_trips() {
        let c = HfConfig::from_json(SMOLLM2, Path::new("config.json")).unwrap();
        assert_eq!(c.architecture(), Some("LlamaForCausalLM"));
        assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_attention_heads), (576, 30, 9));
        assert_eq!(
            (c.num_key_value_heads, c.head_dim, c.rope_scaling.as_ref()),
            (Some(3), None, None)
        );
        assert_eq!(
            (c.rms_norm_eps, c.rope_theta, c.tie_word_embeddings),
            (Some(1e-5), Some(100_000.0), Some(true))
        );
        let again = HfConfig::from_json(&c.to_json(), Path::new("x")).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn rope_scaling_accepts_either_key() {
        let with = |rs: &str| {
            let text =
                SMOLLM2.replace(r#""rope_scaling": null"#, &format!(r#""rope_scaling": {rs}"#));
            HfConfig::from_json(&text, Path::new("c")).unwrap().rope_scaling.unwrap()
        };
        assert_eq!(with(r#"{"type": "linear", "factor": 2.0}"#).kind(), Some("linear"));
        let both =
            with(r#"{"rope_type": "llama3", "type": "llama3", "factor": 8, "low_freq_factor": 1}"#);
        assert_eq!((both.kind(), both.factor), (Some("llama3"), Some(8.0)));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let bad = SMOLLM2.replace(r#""hidden_size": 576"#, r#""hidden_size": "576""#);
        let e = HfConfig::from_json(&bad, Path::new("/m/config.json")).unwrap_err();
        match &e {
            HfError::Json { line, reason, .. } => {
                assert!(*line == 6 && reason.contains("invalid type"), "{e}")
            }
            _ => panic!("{e}"),
        }
        assert!(
            e.to_string().contains("/m/config.json") && e.to_string().contains("line 6"),
            "{e}"
        );
        let e = HfConfig::from_json(
            &SMOLLM2.replace(r#""vocab_size": 49152"#, r#""vocab": 1"#),
            Path::new("c"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field `vocab_size`"), "{e}");
        let e = HfConfig::from_dir("/nonexistent-llmopt-dir").unwrap_err();
        assert!(
            matches!(e, HfError::MissingFile { .. }) && e.to_string().contains("config.json"),
            "{e}"
        );
    }
}
