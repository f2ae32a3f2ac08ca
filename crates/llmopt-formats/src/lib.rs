//! Model file formats: GGUF read over a memory map, and Hugging Face safetensors + `config.json`;
//! plus the Arrow IPC columns of Hugging Face data sets (strings and integers, for evaluation data).
//! Readers validate everything once at open time, so the rest of the engine trusts the views they hand out.

pub mod arrow;
pub mod gguf;
pub mod hf_config;
pub mod safetensors;
