#!/usr/bin/env bash
# Writes the seed corpus of the gguf_header target into fuzz/corpus/gguf_header (run from anywhere).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
models=()
[ -f "$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" ] && models+=("$root/models/SmolLM2-135M-Instruct.Q4_1.gguf")
cargo run --quiet --release --manifest-path "$root/fuzz/Cargo.toml" --bin gguf_seeds -- \
  "$root/fuzz/corpus/gguf_header" "${models[@]}"
