"""The official `openai` Python client (1.x) against a live `llmopt serve`: the model list, chat and
text completions whole and streamed, logprobs, n, seeds, stop strings, and the error classes.

Run by crates/llmopt-cli/tests/serve.rs with LLMOPT_BASE_URL (http://HOST:PORT/v1),
LLMOPT_API_KEY and LLMOPT_MODEL set; prints "ok: N checks" and exits 0, or raises.
"""

import os

import openai
from openai import OpenAI

BASE = os.environ["LLMOPT_BASE_URL"]
KEY = os.environ["LLMOPT_API_KEY"]
MODEL = os.environ["LLMOPT_MODEL"]

client = OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=120)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def expect_error(cls, status, param, call, code=None):
    try:
        call()
    except cls as e:
        check(e.status_code == status, f"{cls.__name__}: status {e.status_code}")
        check(e.param == param, f"{cls.__name__}: param {e.param!r}, want {param!r}")
        if code is not None:
            check(e.code == code, f"{cls.__name__}: code {e.code!r}, want {code!r}")
        return
    raise AssertionError(f"expected {cls.__name__}")


user = [{"role": "user", "content": "What is the capital of France?"}]

# The model list.
models = client.models.list()
check([m.id for m in models.data] == [MODEL], f"models {models.data}")

# Chat, whole.
r = client.chat.completions.create(model=MODEL, messages=user, max_tokens=12, temperature=0)
check(r.object == "chat.completion", r.object)
check(r.model == MODEL, r.model)
msg = r.choices[0].message
check(msg.role == "assistant" and isinstance(msg.content, str) and msg.content, msg)
check(r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
u = r.usage
check(u.total_tokens == u.prompt_tokens + u.completion_tokens and u.completion_tokens <= 12, u)
check(u.prompt_tokens_details.cached_tokens <= u.prompt_tokens, u)

# Chat, streamed with usage: the same text.
text, finish, usage = "", None, None
stream = client.chat.completions.create(
    model=MODEL, messages=user, max_tokens=12, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    check(chunk.object == "chat.completion.chunk", chunk.object)
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        text += c.delta.content or ""
        finish = c.finish_reason or finish
check(text == msg.content, f"streamed {text!r} != {msg.content!r}")
check(finish == r.choices[0].finish_reason, finish)
check(usage is not None and usage.completion_tokens == u.completion_tokens, usage)

# Chat logprobs.
r = client.chat.completions.create(
    model=MODEL, messages=user, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2
)
content = r.choices[0].logprobs.content
check(len(content) == r.usage.completion_tokens, content)
check(all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content), content)

# Text completion, whole and streamed.
prompt = "The capital of France is"
c = client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0, logprobs=2)
check(c.object == "text_completion", c.object)
check("".join(c.choices[0].logprobs.tokens) == c.choices[0].text, c.choices[0].logprobs)
check(len(c.choices[0].logprobs.top_logprobs[0]) == 2, c.choices[0].logprobs)
streamed = "".join(
    ch.choices[0].text
    for ch in client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=6, temperature=0, stream=True
    )
    if ch.choices
)
check(streamed == c.choices[0].text, f"{streamed!r} != {c.choices[0].text!r}")

# n and seeds.
kw = dict(model=MODEL, prompt="My favourite animal is", max_tokens=6, temperature=1.0, seed=5, n=2)
a, b = client.completions.create(**kw), client.completions.create(**kw)
check([x.index for x in a.choices] == [0, 1], a.choices)
check([x.text for x in a.choices] == [x.text for x in b.choices], "a seed repeats the answers")

# A stop string: the text ends before it.
whole = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0)
full = whole.choices[0].text
stop = full[len(full) // 2 : len(full) // 2 + 2]
cut = client.completions.create(
    model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=[stop]
)
check(cut.choices[0].text == full[: full.index(stop)], (cut.choices[0].text, full, stop))
check(cut.choices[0].finish_reason == "stop", cut.choices[0].finish_reason)

# Errors arrive as the client's exception classes, with the field named.
chat = client.chat.completions.create
expect_error(openai.NotFoundError, 404, "model",
             lambda: chat(model="gpt-4o", messages=user), code="model_not_found")
expect_error(openai.BadRequestError, 400, "temperature",
             lambda: chat(model=MODEL, messages=user, temperature=5))
expect_error(openai.BadRequestError, 400, "max_tokens",
             lambda: chat(model=MODEL, messages=user, max_tokens=0))
expect_error(openai.BadRequestError, 400, "messages",
             lambda: chat(model=MODEL, messages=[{"role": "user", "content": "word " * 9000}]),
             code="context_length_exceeded")
expect_error(openai.BadRequestError, 400, "messages[0].role",
             lambda: chat(model=MODEL, messages=[{"role": "wizard", "content": "hi"}]))
wrong_key = OpenAI(base_url=BASE, api_key="not-the-key", max_retries=0)
expect_error(openai.AuthenticationError, 401, None, lambda: wrong_key.models.list(),
             code="invalid_api_key")

print(f"ok: {checks} checks")
