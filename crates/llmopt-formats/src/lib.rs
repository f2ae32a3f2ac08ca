//! Model file formats: GGUF read over a memory map, and Hugging Face safetensors + `config.json`.
//! Readers validate everything once at open time, so the rest of the engine trusts the views they hand out.

pub mod gguf;
