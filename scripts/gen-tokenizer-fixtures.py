#!/usr/bin/env python3
"""Generates the llama.cpp tokenizer reference fixtures for the Rust tokenizer tests.

    scripts/gen-tokenizer-fixtures.py [--bin DIR] [--models DIR] [--out DIR] [--list]

For each model it runs llama.cpp's `llama-tokenize` (built by scripts/build-llamacpp) once per string,
feeding the string on stdin so nothing is mangled by the shell, and records the token ids in
crates/llmopt-tokenizer/tests/fixtures/llamacpp-tokenize-<model>.json. Every id comes from llama.cpp;
this script only chooses the strings (deterministically: fixed lists plus a seeded mixer) and writes
JSON. `--list` prints the strings and exits.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "0.3.36"

MODELS = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.gguf",
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}

# Flags of the main variant: raw text, no BOS/EOS, no special-token parsing, no escape processing.
FLAGS = ["--ids", "--log-disable", "--stdin", "--no-escape", "--no-bos", "--no-parse-special"]
# Second variant (first N_BOS strings): the model's default BOS behaviour.
FLAGS_BOS = ["--ids", "--log-disable", "--stdin", "--no-escape", "--no-parse-special"]
N_BOS = 10


def strings():
    s = []
    # English sentences
    s += [
        "Hello world",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "The capital of France is Paris.",
        "Once upon a time, in a small village, there lived an old baker.",
        "It was the best of times, it was the worst of times.",
        "To be, or not to be, that is the question:",
        "I can't believe it's already 2024!",
        "She said, \"Don't go there.\"",
        "Mr. Smith went to Washington on Jan. 5th.",
        "e.g. this, i.e. that, etc.",
        "THIS IS ALL CAPS AND SHOUTING",
        "MiXeD cAsE wOrDs ArE wEiRd",
        "camelCaseIdentifier and snake_case_identifier and kebab-case-identifier",
        "A sentence with a semicolon; and a colon: here.",
        "Question? Answer! Exclamation!!! Ellipsis...",
        "(parenthetical) [bracketed] {braced} <angled>",
        "Email me at someone@example.com or visit https://example.org/path?q=1&r=2#frag.",
        "The year 1911 saw the 11th edition of the Encyclopaedia Britannica.",
        "antidisestablishmentarianism",
        "Pneumonoultramicroscopicsilicovolcanoconiosis is a long word.",
        "supercalifragilisticexpialidocious",
        "a",
        "I",
        " a",
        "Hello",
        " Hello",
        "hello",
        "HELLO",
        "Hello  world",
        "The end.",
        "#hashtag @mention $dollar %percent ^caret &amp *star",
        "50% off -- today only; ~approx. `code` |pipe| \\backslash/",
        "Line one.\nLine two.\nLine three.",
        "Paragraph one.\n\nParagraph two.",
        "Dear Sir,\n\tI write to you regarding your letter.\n\nYours,\nJ.",
        "Tab\tseparated\tvalues\there",
        "Windows\r\nline\r\nendings",
        "Old Mac\rline\rendings",
        "ALL THE WORLD'S A STAGE, AND ALL THE MEN AND WOMEN MERELY PLAYERS",
    ]
    # contractions
    s += [
        "it's", "It's", "IT'S", "we're", "We're", "WE'RE", "they'll", "They'LL", "I've", "I'VE",
        "I'm", "I'M", "you'd", "YOU'D", "don't", "DON'T", "'s", "'re", "'ll", "'LL", "'ve", "'m", "'d",
        "John's book", "the dogs' bowls", "rock 'n' roll", "'quoted'", "‘curly’ and “double”",
        "y'all'd've", "o'clock", "'tis", "L'Oréal", "l'homme",
    ]
    # unicode: accents, combining marks, scripts, emoji
    s += [
        "café", "naïve", "résumé", "Ångström", "Crème brûlée", "façade", "jalapeño", "Zürich", "Øresund",
        "cafe\u0301", "e\u0301", "n\u0303", "a\u0308o\u0308u\u0308", "Z\u0351\u0353\u0358a\u0315\u035el\u0334\u0344g\u0321o",
        "straße", "İstanbul", "ı", "ǅ ǆ Ǆ",
        "日本語のテキスト", "こんにちは世界", "カタカナ", "中文文本测试", "你好，世界！", "漢字", "한국어 텍스트",
        "안녕하세요", "Привет, мир!", "Ελληνικά γράμματα", "שלום עולם", "مرحبا بالعالم", "العربية",
        "नमस्ते दुनिया", "สวัสดีชาวโลก", "Tiếng Việt có dấu", "ქართული", "Հայերեն", "አማርኛ",
        "😀", "😀😃😄", "Hello 👋 world 🌍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "❤️", "✨🚀🔥",
        "∑_{i=1}^{n} i² = n(n+1)/2", "∀x ∈ ℝ: x² ≥ 0", "π ≈ 3.14159", "½ ¼ ¾ ⅓", "→ ← ↑ ↓ ⇒ ⇔",
        "€100 £50 ¥1000 ₹500 ₿", "©®™", "°C °F µm Ω", "\u00a0non-breaking\u00a0space", "zero\u200bwidth\u200bspace",
        "\ufeffBOM at start", "soft\u00adhyphen", "ｆｕｌｌｗｉｄｔｈ", "ﬁﬂ ligatures", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙",
        "\u2028line separator", "tab\u3000ideographic space", "𠀀𠀁 astral CJK", "🀄🃏",
    ]
    # digits and numbers
    s += [
        "0", "7", "42", "123", "1234", "12345", "123456789", "3.14159265358979",
        "1234567890123456789012345678901234567890", "1,000,000", "1_000_000", "0xDEADBEEF", "0b101010",
        "1e-10", "-273.15", "+1 (555) 123-4567", "2024-01-15T10:30:00Z", "192.168.0.1", "v1.2.3",
        "$1,234.56", "99.9%", "3/4", "10:30pm", "123abc456", "abc123def", "x1y2z3",
        "١٢٣٤٥", "一二三", "①②③", "Ⅻ", "²³", "٣.١٤",
    ]
    # whitespace runs
    s += [" " * n for n in (1, 2, 3, 4, 5, 8, 16)]
    s += ["\t", "\t\t", "\t\t\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", "\r"]
    s += [" \n", "\n ", " \t ", "\t \n", "  \n  \n", "\n\t\n", " \t\n\r\n ", "\n    \n", "\v\f"]
    s += [
        "word  word", "word   word", "word\tword", "word\nword", "word\n\nword", "word \nword",
        "word\n word", "word \n word", "a \t b", "x\n\n\n\ny", "end of line   \nnext", "    indented",
        "\tindented", "\n\nleading newlines", "trailing newlines\n\n", "a" + " " * 10 + "b",
    ]
    # leading / trailing spaces
    s += [
        " leading", "  two leading", "trailing ", "trailing  ", " both ", "  both  ", " \tmixed\t ",
        " 123", "123 ", " café", " 日本", " 😀", " .", ". ", " ,", " ' s", " 's", "'s ",
    ]
    # empty
    s += [""]
    # special-token text (parsed as plain text here)
    s += [
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        "<start_of_turn>", "<end_of_turn>", "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
        "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<s>", "</s>", "[INST] hi [/INST]", "<0x41>",
        "<unused0>", "<start_of_image>", "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
        "<|repo_name|>", "<tool_call>", "</tool_call>", "<think>", "text<|im_end|>more", "< |im_start| >",
    ]
    # code
    s += [
        "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
        "def fibonacci(n):\n",
        "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
        "for i in range(10):\n\tprint(f\"{i:>4d}\", end='')\n",
        "class Foo(Bar):\n    \"\"\"Docstring.\"\"\"\n    pass\n",
        "lambda x: x ** 2 if x > 0 else -x",
        "if __name__ == \"__main__\":\n    main()",
        "x = [i*i for i in range(100) if i % 3 == 0]",
        "# comment with TODO: fix\n",
        "fn main() {\n    println!(\"Hello, world!\");\n}\n",
        "let v: Vec<u32> = (0..10).map(|x| x * 2).collect();",
        "impl<T: Clone + Send> Trait for Wrapper<T> where T: 'static {}",
        "#[derive(Debug, Clone, PartialEq)]\npub struct Point { x: f32, y: f32 }",
        "match x { Some(ref y) => *y, None => 0 }",
        "unsafe { std::ptr::read_volatile(p as *const u8) }",
        "let s = r#\"raw \"string\"\"#;",
        "{\"name\": \"llmopt\", \"version\": \"0.1.0\", \"tags\": [\"a\", \"b\"], \"n\": 3.5e-2, \"ok\": true}",
        "{\n  \"key\": \"value\",\n  \"nested\": {\"arr\": [1, 2, 3], \"null\": null}\n}",
        "[{\"a\":1},{\"b\":[]}]",
        "\"escaped \\\"quotes\\\" and \\\\backslashes\\\\ and \\n newlines\"",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
        "for (int i = 0; i < n; ++i) { a[i] += b[i] * c; }",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
        "<div class=\"container\"><p>Hello &amp; welcome</p></div>",
        "$ cargo build --release && ./target/release/llmopt --help",
        "git commit -m \"fix: handle edge case\" && git push origin main",
        "regex: ^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$",
        "a->b; c=>d; e::f; g<=h; i!=j; k==l; m&&n; o||p; q<<r; s>>t",
        "   return self.__dict__['_private']",
        "x+=1;y-=2;z*=3;w/=4",
        "console.log(`template ${literal}`);",
        "// line comment\n/* block\n   comment */",
        "    ",
        "\t\tif (x) {\n\t\t\treturn;\n\t\t}",
        "#!/usr/bin/env bash\nset -euo pipefail\n",
        "---\ntitle: YAML\nlist:\n  - one\n  - two\n",
        "| col1 | col2 |\n|------|------|\n| a    | b    |",
        "**bold** _italic_ `code` [link](http://x.y)",
    ]
    # deterministic mixtures of fragments
    frags = [
        "the", " The", "cat", " sat", " on", " mat", ".", ",", "!", "?", " ", "  ", "\n", "\t", "'s", "'ll",
        "123", "4567", "3.5", "é", "ñ", "日本", "😀", "👍🏽", "Ω", "(", ")", "{", "}", "[", "]", "=", "==",
        "->", "::", "_", "__init__", "self", "fn", "let", "<|im_start|>", "<start_of_turn>", "\r\n", "Привет",
        "مرحبا", "a\u0301", "\u00a0", "http://", "www", ".com", "#", "@", "$", "%", "&", "*", "~", "`", "\\",
    ]
    rng = random.Random(20240611)
    for _ in range(60):
        k = rng.randint(2, 12)
        s.append("".join(rng.choice(frags) for _ in range(k)))
    # dedupe, keep first occurrence
    seen, out = set(), []
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def tokenize(bin_dir, model, text, flags):
    cmd = [os.path.join(bin_dir, "llama-tokenize"), "-m", model] + flags
    r = subprocess.run(cmd, input=text.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"llama-tokenize failed ({r.returncode}) on {text!r}: {r.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(r.stdout.decode("utf-8").strip())


def vocab_info(bin_dir, model):
    """Tokenizer metadata as llama.cpp's loader prints it (for the record)."""
    cmd = [os.path.join(bin_dir, "llama-tokenize"), "-m", model, "--ids", "-lv", "4", "-p", "x"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    info = {}
    for line in r.stderr.decode("utf-8", errors="replace").splitlines():
        for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token",
                    "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix",
                    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
            if f" {key} " in line and "=" in line:
                info[key] = line.split("=", 1)[1].strip()
        if "print_info: vocab type" in line or "print_info: n_vocab" in line or "print_info: BOS token" in line:
            k, v = line.split("print_info:", 1)[1].split("=", 1)
            info[k.strip()] = v.strip()
    return info


def build_info(bin_dir):
    r = subprocess.run([os.path.join(bin_dir, "llama-tokenize"), "--version"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return r.stdout.decode("utf-8", errors="replace").strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get(
        "LLAMACPP_BIN", os.path.expanduser(f"~/.cache/llmopt/llama.cpp-{VERSION}/build/bin")))
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    ap.add_argument("--out", default=os.path.join(ROOT, "crates/llmopt-tokenizer/tests/fixtures"))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    texts = strings()
    if args.list:
        for t in texts:
            print(json.dumps(t, ensure_ascii=False))
        print(f"{len(texts)} strings", file=sys.stderr)
        return

    os.makedirs(args.out, exist_ok=True)
    info = build_info(args.bin)
    for name, fname in MODELS.items():
        model = os.path.join(args.models, fname)
        cases = [{"text": t, "ids": tokenize(args.bin, model, t, FLAGS)} for t in texts]
        bos_cases = [{"text": t, "ids": tokenize(args.bin, model, t, FLAGS_BOS)} for t in texts[:N_BOS]]
        doc = {
            "provenance": {
                "tool": "llama-tokenize (llama.cpp, vendored in the PyPI sdist llama-cpp-python)",
                "llama_cpp_python_version": VERSION,
                "llama_cpp_commit_or_build_info": info,
                "command": "llama-tokenize -m models/" + fname + " " + " ".join(FLAGS)
                           + "  (one run per string; the string's UTF-8 bytes on stdin)",
                "generator": "scripts/gen-tokenizer-fixtures.py",
                "machine": f"{platform.machine()} {platform.system()} {platform.release()}",
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "model": {"file": fname, "sha256": sha256(model), "vocab": vocab_info(args.bin, model)},
            "flags": FLAGS,
            "notes": "--no-escape: the text is tokenized byte for byte (llama-tokenize would otherwise turn "
                     "backslash escapes into characters); --no-parse-special: control tokens such as "
                     "<|im_start|> are not matched (user-defined tokens still are, as in llama.cpp); "
                     "--no-bos: no BOS even where the model adds one.",
            "cases": cases,
            "default_bos": {
                "flags": FLAGS_BOS,
                "command": "llama-tokenize -m models/" + fname + " " + " ".join(FLAGS_BOS),
                "cases": bos_cases,
            },
        }
        path = os.path.join(args.out, f"llamacpp-tokenize-{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"wrote {path}: {len(cases)} strings", file=sys.stderr)


if __name__ == "__main__":
    main()
