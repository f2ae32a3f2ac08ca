#!/usr/bin/env python3
"""Generate ggml quant-format fixtures for crates/llmopt-tensor/tests/fixtures/.

The oracle is gguf-py (`pip install gguf numpy`), which nobody on this project wrote:
its numpy quantize/dequantize mirror ggml's reference C code.

Run (from the repository root, in a venv outside the repo):
    python3 -m venv /tmp/ggufpy && /tmp/ggufpy/bin/pip install gguf numpy
    /tmp/ggufpy/bin/python scripts/gen-quant-fixtures.py

Each fixture is `<type>.json`: the gguf version, the command, the number of blocks, and hex strings
(little-endian bytes) for the float input (when gguf-py can quantize the type), the quantized
bytes, and gguf-py's dequantization as f32. Deterministic: seeded per type.
"""
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

OUT = Path(__file__).resolve().parent.parent / "crates" / "llmopt-tensor" / "tests" / "fixtures"
COMMAND = "python3 scripts/gen-quant-fixtures.py"

# Types gguf-py can quantize from f32 (ggml's *_ref quantizers).
QUANTIZABLE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
# Types gguf-py can only dequantize: fixtures are random bytes with sane f16 scales.
DEQUANT_ONLY = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def realistic_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Weights-like data: gaussian rows of varied scale, a few outliers, special blocks."""
    x = rng.normal(0.0, 1.0, size=n).astype(np.float32)
    x *= np.float32(10.0) ** rng.uniform(-3, 1, size=n // 32).repeat(32).astype(np.float32)
    out = rng.integers(0, n, size=max(1, n // 64))
    x[out] *= np.float32(8.0)
    # block 1: all zero; block 2: exact .5 ties after scaling (amax 127 -> d = 1);
    # block 3: all negative, huge (near the f16 max after scaling).
    x[32:64] = 0.0
    x[64:96] = (np.arange(32, dtype=np.float32) - 15.5)
    x[64] = 127.0
    x[96:128] = -np.abs(x[96:128]) * np.float32(1e4) - np.float32(1.0)
    return x


def random_kquant_bytes(rng: np.random.Generator, ty: T, n_blocks: int) -> np.ndarray:
    block_len, block_bytes = GGML_QUANT_SIZES[ty]
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    # Replace every f16 scale by a sane positive value (no NaN/inf).
    def scale(lo, hi):
        return np.array([rng.uniform(lo, hi)], dtype=np.float16).view(np.uint8)
    for b in range(n_blocks):
        if ty in (T.Q2_K,):  # scales[16] qs[64] d dmin
            raw[b, 80:82] = scale(1e-3, 0.05); raw[b, 82:84] = scale(1e-3, 0.05)
        elif ty == T.Q3_K:  # hmask[32] qs[64] scales[12] d
            raw[b, 108:110] = scale(1e-3, 0.05)
        elif ty in (T.Q4_K, T.Q5_K):  # d dmin scales[12] ...
            raw[b, 0:2] = scale(1e-3, 0.05); raw[b, 2:4] = scale(1e-3, 0.05)
        elif ty == T.Q6_K:  # ql[128] qh[64] scales[16] d
            raw[b, 208:210] = scale(1e-3, 0.05)
    return raw


def hexs(a: np.ndarray) -> str:
    return np.ascontiguousarray(a).tobytes().hex()


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    gv = version("gguf")
    for i, name in enumerate(QUANTIZABLE + DEQUANT_ONLY):
        ty = T[name]
        rng = np.random.default_rng(1234 + i)
        block_len, block_bytes = GGML_QUANT_SIZES[ty]
        fix = {"type": name, "gguf_version": gv, "numpy_version": np.__version__, "command": COMMAND}
        if name in QUANTIZABLE:
            n = 32 * 8
            x = realistic_blocks(rng, n)
            q = quants.quantize(x.reshape(1, n), ty).reshape(-1).view(np.uint8)
            fix["input_f32"] = hexs(x)
        else:
            n_blocks = 3
            n = n_blocks * block_len
            q = random_kquant_bytes(rng, ty, n_blocks).reshape(-1)
        deq = quants.dequantize(q.reshape(1, -1), ty).reshape(-1).astype(np.float32)
        assert deq.size == n and np.isfinite(deq).all(), name
        fix["n_elems"] = int(n)
        fix["quant"] = hexs(q)
        fix["dequant_f32"] = hexs(deq)
        (OUT / f"{name.lower()}.json").write_text(json.dumps(fix, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
