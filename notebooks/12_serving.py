# %% [markdown]
# # 12 · 部署 Serving
#
# Lessons 08 to 11 gave us a chat model that answers in turns, calls the tea shop's tools, can
# be fine-tuned cheaply and shrunk. A customer never opens a notebook, though: 智能客服 (customer
# service), 问答系统 (question answering) and 对话系统 (dialogue systems) reach their users
# through an **API**. The de-facto standard is OpenAI's Chat Completions API: every SDK, agent
# framework and chat front end speaks it. This lesson puts the model behind that API, spec-exact,
# with streaming, tool calls and batching, and a chat page that uses it.
#
# **You will learn**
# - the Chat Completions request, response and streaming chunk shapes, and the SSE framing;
# - how OpenAI's messages and tools map onto ChatGLM3's own format (and why ChatGLM3's own
#   `openai_api_demo` gets tool calls wrong);
# - how to tell a tool call from text while streaming without guessing;
# - to start the server, call it with the official `openai` client, stream into the notebook and
#   do a tool-call round trip;
# - **continuous batching**: how one worker serves many clients at once, with a picture and a
#   measurement;
# - the safety basics: no `eval`, input limits, an API key; and how the same server serves the
#   real ChatGLM3-6B.

# %% [markdown]
# ## 1. Setup
#
# We serve the chat model of lesson 08 (`data/checkpoints/chat`); without it the lesson falls
# back to the base model of lesson 06, which speaks nonsense but exercises every path.

# %% tags=["nbval-ignore-output"]
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import matplotlib.pyplot as plt
import openai
import torch

from glm3_teach import check, load_pretrained, load_tokenizer, seed_everything
from glm3_teach.batching import BatchedEngine, GenerationRequest
from glm3_teach.fonts import use_cjk_font
from glm3_teach.openai_format import ReplyParser, parse_chat_request, releasable_length, sse, to_chatglm_history
from glm3_teach.paths import data_dir
from glm3_teach.tools import SHOP_TOOLS, ToolCallError, call_tool, parse_tool_call, tool_schema

torch.set_num_threads(1)
seed_everything(0)
use_cjk_font()
CHECKPOINT = data_dir() / "checkpoints" / "chat"
if not (CHECKPOINT / "config.json").exists():
    CHECKPOINT = data_dir() / "checkpoints" / "base"
tok = load_tokenizer(CHECKPOINT)
print("serving", CHECKPOINT)

# %% [markdown]
# ## 2. From `chat()` to an HTTP API
#
# Lesson 08's `chat(model, tokenizer, query, history)` is a Python call. Over HTTP the same
# conversation is a JSON **request**: the model's name and the whole conversation as
# `messages`, each with a `role` (`system`, `user`, `assistant`, `tool`) and `content`, plus the
# decoding settings lesson 07 explained:

# %% tags=["nbval-check-output"]
request = {
    "model": "chat",
    "messages": [{"role": "system", "content": "你是清泉茶铺的客服。"},
                 {"role": "user", "content": "绿茶多少钱？"}],
    "temperature": 0,            # 0 = greedy
    "max_tokens": 64,
}
print(json.dumps(request, ensure_ascii=False, indent=1))

# %% [markdown]
# The **response** is a `chat.completion` object: one `choice` with the assistant's `message` and
# a `finish_reason` (`stop`: the model ended its turn; `length`: `max_tokens` ran out;
# `tool_calls`: it wants a tool), and the real token counts in `usage`:
#
# ```json
# {"id": "chatcmpl-…", "object": "chat.completion", "created": 1764600000, "model": "chat",
#  "choices": [{"index": 0, "finish_reason": "stop",
#               "message": {"role": "assistant", "content": "绿茶每罐48元。"}}],
#  "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}}
# ```
#
# With `"stream": true` the reply comes as **server-sent events** (SSE) instead: lines
# `data: <json>` separated by a blank line, each holding a `chat.completion.chunk` whose
# `delta` is the next piece, and a final `data: [DONE]`. Every chunk of one reply has the same
# `id`, `created` and `model`; the first delta carries the `role`; the last choice chunk the
# `finish_reason`. One chunk on the wire:

# %% tags=["nbval-check-output"]
chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1764600000, "model": "chat",
         "choices": [{"index": 0, "delta": {"content": "绿茶"}, "logprobs": None, "finish_reason": None}]}
print(repr(sse(chunk)))
print(repr(sse("[DONE]")))

# %% [markdown]
# ## 3. The mapping at the edges
#
# The model keeps ChatGLM3's own format (lessons 08 and 09); only the edges of the server
# translate. Four rules:
#
# | OpenAI | ChatGLM3 |
# |---|---|
# | `tools: [{"type": "function", "function": {name, description, parameters}}]` | the tools system message: `TOOL_PROMPT` + the schemas as JSON |
# | assistant `tool_calls: [{id, function: {name, arguments: "<JSON>"}}]` | `<\|assistant\|>name` + ```` ```python\ntool_call(k='v')\n``` ```` |
# | `{"role": "tool", "tool_call_id", "content"}` | `<\|observation\|>` + content, right after the call it answers |
# | the reply's metadata line names a tool | `message.tool_calls`, `finish_reason: "tool_calls"` |
#
# Here is a whole tool round trip in OpenAI's shape, mapped to ChatGLM3's history:

# %% tags=["nbval-check-output"]
shop_tools = [{"type": "function", "function": tool_schema(fn)} for fn in SHOP_TOOLS]
observation = json.dumps(call_tool("check_order", {"order_id": "A1234"}), ensure_ascii=False)
messages = [
    {"role": "user", "content": "我的订单A1234到哪了？"},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "check_order", "arguments": '{"order_id": "A1234"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": observation},
]
history = to_chatglm_history(messages, [tool["function"] for tool in shop_tools])
for item in history[1:]:
    print(item)

# %% [markdown]
# The JSON arguments `{"order_id": "A1234"}` became Python keyword literals,
# `tool_call(order_id='A1234')`, exactly as ChatGLM3's fine-tuning data writes them, so the model
# sees what it was trained on. The prompt the model reads ends like this (the system message
# with the three tool schemas comes first):

# %% tags=["nbval-check-output"]
request = parse_chat_request({"model": "chat", "messages": messages, "tools": shop_tools})
prompt_ids = tok.build_chat_input(request.query, request.history, role=request.role)
prompt_text = tok.decode(prompt_ids)
system_tokens = len(tok.build_chat_input("", request.history[:1])) - len(tok.build_chat_input(""))
print(f"{len(prompt_ids)} tokens, {system_tokens} of them the tools system message")
print(prompt_text[prompt_text.index("<|user|>"):])


# %% [markdown]
# ### Text or a tool call? Read the metadata line
#
# After `<|assistant|>` the model first writes a **metadata** line: empty for a text reply, the
# tool's name for a call. The server therefore holds back only that first line (usually one or
# two tokens), then knows for sure. `ReplyParser` does this for streamed and whole replies alike:

# %% tags=["nbval-check-output"]
def parse_pieces(pieces, tool_names=("check_order", "check_stock", "calculate"), stop=()):
    parser = ReplyParser(list(tool_names), list(stop))
    events = [event for piece in pieces for event in parser.push(piece)]
    return events + parser.finish()


print(parse_pieces(["check", "_order", "\n```python\ntool_call(order_id=", "'A1234')\n```"]))
print(parse_pieces(["\n", "您好", "，绿茶", "每罐48元。", "\n"]))
print(parse_pieces(["\n", "您好", "，绿茶", "每罐48元。"], stop=["每罐"]))

# %% [markdown]
# ChatGLM3's own `openai_api_demo` does three things differently, each a bug for a client:
# it answers in the outdated `function_call` shape and cannot take a `tool` message back; when
# streaming it **guesses** a tool call from `'get_' in output` (a tool named `check_order` is
# never found, a sentence containing "get_" is taken for one); and it turns the model's
# `tool_call(...)` into arguments with **`eval`**, so a model (or a prompt injection) writing
# `tool_call(x=__import__('os').system('rm -rf ~'))` runs that command. Our `parse_tool_call`
# reads literals only:

# %% tags=["nbval-check-output"]
try:
    parse_tool_call("tool_call(x=__import__('os').system('echo pwned'))")
except ToolCallError as error:
    print("refused:", error)


# %% [markdown]
# ## 4. Start the server
#
# `python -m glm3_teach.serve --model FOLDER` loads the checkpoint and serves it with FastAPI
# and uvicorn on 127.0.0.1 (this machine only). We start it as a background process on a free
# port, with an API key, and wait until `/health` answers. Section 9 stops it.

# %% tags=["nbval-ignore-output"]
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


API_KEY = "sk-lesson-12"
PORT = free_port()
BASE_URL = f"http://127.0.0.1:{PORT}"
server_log = tempfile.TemporaryFile()
server = subprocess.Popen([sys.executable, "-m", "glm3_teach.serve", "--model", str(CHECKPOINT), "--name", "chat",
                           "--port", str(PORT), "--api-key", API_KEY, "--threads", "1"],
                          stdout=server_log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
client = openai.OpenAI(base_url=BASE_URL + "/v1", api_key=API_KEY, timeout=120, max_retries=0)
for _ in range(600):
    try:
        print("models:", [model.id for model in client.models.list()])
        break
    except openai.APIConnectionError:
        assert server.poll() is None, "the server exited; its log:\n" + (server_log.seek(0) or server_log.read().decode())
        time.sleep(0.1)

# %% [markdown]
# ## 5. Call it with the `openai` client
#
# The official client does not know (or care) that a tiny ChatGLM3 answers:

# %% tags=["nbval-ignore-output"]
reply = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "绿茶多少钱？"}],
                                       temperature=0, max_tokens=48)
print(reply.choices[0].message.content)
print(reply.choices[0].finish_reason, reply.usage)

# %% [markdown]
# The usage counts are real: the prompt is the number of ids `build_chat_input` makes, and the
# completion counts every generated token, the stop token included.

# %% tags=["nbval-check-output"]
assert reply.usage.prompt_tokens == len(tok.build_chat_input("绿茶多少钱？"))
assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
assert reply.usage.completion_tokens <= 48
print("usage adds up")

# %% [markdown]
# ### Streaming into the notebook
#
# With `stream=True` the client yields chunks as the server sends them; we print each text
# piece as it comes. The text arrives whole characters at a time: the server decodes with the
# `StreamDecoder` of lesson 01, so a Chinese character split over two tokens never shows as "�".

# %% tags=["nbval-ignore-output"]
pieces = []
for chunk in client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "绿茶多少钱？"}],
                                            temperature=0, max_tokens=48, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
        print(chunk.choices[0].delta.content, end="|", flush=True)
print("\nlast chunk:", chunk.model_dump_json(exclude_none=True))

# %% [markdown]
# At temperature 0 the streamed pieces join to exactly the non-streamed reply:

# %% tags=["nbval-check-output"]
assert "".join(pieces) == reply.choices[0].message.content
assert not any("\ufffd" in piece for piece in pieces)
print("streamed == whole")

# %% [markdown]
# ### A tool call round trip
#
# We offer the shop's tools and ask about an order. If the model calls `check_order`, we run the
# tool (the client's job in OpenAI's design: the server only proposes the call), send the result
# back as a `tool` message, and get the answer. A model with a short context cannot even read the
# tools' description: the server then says so with a `context_length_exceeded` error.

# %% tags=["nbval-ignore-output"]
question = [{"role": "user", "content": "我的订单A1234到哪了？"}]
try:
    first = client.chat.completions.create(model="chat", messages=question, tools=shop_tools, temperature=0,
                                           max_tokens=64)
    message = first.choices[0].message
    print("finish_reason:", first.choices[0].finish_reason)
    if message.tool_calls:
        call = message.tool_calls[0]
        print("the model calls", call.function.name, call.function.arguments)
        try:
            arguments = json.loads(call.function.arguments)
        except json.JSONDecodeError:     # a call the server's parser could not read comes as written
            arguments = call.function.arguments
        result = call_tool(call.function.name, arguments)     # an error observation if the arguments are bad
        print("the tool answers", result)
        follow_up = question + [message.model_dump(exclude_none=True),
                                {"role": "tool", "tool_call_id": call.id,
                                 "content": json.dumps(result, ensure_ascii=False)}]
        answer = client.chat.completions.create(model="chat", messages=follow_up, tools=shop_tools, temperature=0,
                                                max_tokens=64)
        print("the answer:", answer.choices[0].message.content)
    else:
        print("the model answered in text:", message.content[:80])
except openai.BadRequestError as error:
    print(error.code, "-", error.body["message"])

# %% [markdown]
# ## 6. Many clients at once: continuous batching
#
# A server answering one request at a time makes the eighth customer wait for seven replies.
# Running requests in parallel threads would not help either: they would fight over the same
# CPU cores and the same model. Instead, one **generation worker** (`glm3_teach.batching`)
# keeps every running request as a row of one batch:
#
# 1. a new request is prefilled (its prompt fills its KV cache);
# 2. its cache is left-padded to the batch's length and **joins between two decoding steps**;
# 3. each step feeds the last token of every row at once, `[batch, 1]`, with an
#    `attention_mask` marking each row's pads (lesson 07's left padding);
# 4. each row leaves when it stops (a stop token, its `max_tokens`, or its client went away).
#
# The picture: six requests of different lengths, each arriving 4 decoding steps after the one
# before, in a worker of our own (the same code the server runs).

# %% tags=["nbval-ignore-output"]
model = load_pretrained(CHECKPOINT, dtype=torch.float32)
engine = BatchedEngine(model, max_batch_size=8)
lives = {}


def submit(name, question, max_new_tokens):
    done = threading.Event()

    def notify(event):
        start, steps = lives.setdefault(name, [len(engine.steps), 0])
        lives[name][1] += event[0] == "token"
        if event[0] != "token":
            done.set()

    engine.submit(GenerationRequest(tok.build_chat_input(question), max_new_tokens), notify)
    return done


waits = []
for i, length in enumerate([40, 12, 30, 8, 20, 16]):
    while len(engine.steps) < 4 * i:         # arrive 4 steps after the previous request
        time.sleep(0.001)
    waits.append(submit(f"request {i} ({length} tokens)", f"问题{i}：绿茶多少钱？", length))
for done in waits:
    done.wait()
steps = list(engine.steps)
print(len(steps), "decoding steps for", sum(n for _, n in lives.values()), "tokens")

# %% tags=["nbval-ignore-output"]
fig, (ax_rows, ax_size) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=[3, 1])
for row, (name, (start, count)) in enumerate(lives.items()):
    ax_rows.barh(row, count - 1, left=start, color=f"C{row}")   # the first token comes from the prefill
    ax_rows.text(start + 0.5, row, name, va="center", fontsize=8)
ax_rows.invert_yaxis()
ax_rows.set_yticks([])
ax_rows.set_title("continuous batching: each request joins between steps and leaves when it is done")
ax_size.step(range(len(steps)), [s.batch_size for s in steps], where="post")
ax_size.set_ylabel("rows in\nthe batch")
ax_size.set_xlabel("decoding step of the worker")
plt.tight_layout()
plt.show()

# %% [markdown]
# Every request got all its tokens, yet the worker ran far fewer steps than the requests' total
# length: while they overlapped, one step served several of them.

# %% tags=["nbval-check-output"]
total_tokens = sum(n for _, n in lives.values())
assert total_tokens == 40 + 12 + 30 + 8 + 20 + 16
assert len(steps) < 0.75 * total_tokens
assert max(s.batch_size for s in steps) >= 3
print(f"{total_tokens} tokens in fewer than {0.75 * total_tokens:.0f} steps, with 3 or more rows at once")


# %% [markdown]
# Batching only pays if a step of 8 rows costs much less than 8 steps of one. On a small model it
# does: the time goes to calling 4 layers' worth of small operations, not to arithmetic. Through
# the real server (HTTP, streaming, the `openai` client in threads): 1, 2, 4 and 8 clients each
# stream a 24-token reply at the same time.

# %% tags=["nbval-ignore-output"]
def one_client(i):
    start = time.perf_counter()
    stream = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"你好{i}"}],
                                            temperature=0, max_tokens=24, stream=True,
                                            stream_options={"include_usage": True})
    usage = [chunk.usage for chunk in stream if chunk.usage][0]
    return usage.completion_tokens, time.perf_counter() - start


measured = {}
for clients in (1, 2, 4, 8):
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one_client, range(clients)))
    wall = time.perf_counter() - start
    measured[clients] = (sum(t for t, _ in results) / wall, sum(s for _, s in results) / clients)
    print(f"{clients} clients: {measured[clients][0]:5.0f} tokens/s in total, "
          f"{measured[clients][1]:.2f} s per request")

# %% tags=["nbval-ignore-output"]
fig, (ax_speed, ax_latency) = plt.subplots(1, 2, figsize=(9, 3))
counts = list(measured)
ax_speed.plot(counts, [measured[c][0] for c in counts], "o-")
ax_speed.set_xlabel("concurrent clients")
ax_speed.set_ylabel("total tokens/s")
ax_latency.plot(counts, [measured[c][1] for c in counts], "o-", color="C1")
ax_latency.set_xlabel("concurrent clients")
ax_latency.set_ylabel("seconds per request")
ax_speed.set_xticks(counts)
ax_latency.set_xticks(counts)
plt.tight_layout()
plt.show()

# %% [markdown]
# Total throughput grows with the number of clients while each request's latency grows much
# less. The machine you run this on (and whatever else runs on it) decides the exact numbers,
# so the check below only asks for a clear gain, 1.5x; `benchmarks/bench_serve.py` measures it
# carefully, and the course's target there is 3x for 8 clients on a 2-core CPU.

# %% tags=["nbval-check-output"]
speedup = measured[8][0] / measured[1][0]
assert speedup > 1.5, f"8 clients got only {speedup:.1f}x the tokens/s of one"
print("8 clients: more than 1.5x the total tokens/s of one client")

# %% [markdown]
# ## 7. Safety
#
# A server is a program strangers send input to. Three rules, all in `glm3_teach.serve`:
#
# - **Nothing a client or the model writes is executed**: tool arguments are parsed as literals
#   (section 3), user text that looks like `<|assistant|>` stays plain text (the tokenizer never
#   makes a special id from user text, lesson 01).
# - **Input limits**: message count, characters, body size and the queue length are bounded, and
#   prompt + `max_tokens` must fit the context; each violation is a clear 4xx error in OpenAI's
#   shape, and the server keeps serving.
# - **An API key** when started with `--api-key`, and binding to 127.0.0.1 unless told otherwise.

# %% tags=["nbval-check-output"]
stranger = openai.OpenAI(base_url=BASE_URL + "/v1", api_key="sk-guess", max_retries=0)
try:
    stranger.models.list()
except openai.AuthenticationError as error:
    print(error.status_code, error.code)
try:
    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "茶" * 30_000}])
except openai.BadRequestError as error:
    print(error.status_code, error.code)
try:
    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "你好"}], max_tokens=100_000)
except openai.BadRequestError as error:
    print(error.status_code, error.code)
try:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "你好"}])
except openai.NotFoundError as error:
    print(error.status_code, error.code)

# %% [markdown]
# ## 8. Serving the real ChatGLM3-6B
#
# Nothing in the server is specific to the course model: it reads any checkpoint folder that
# `load_pretrained` reads and the tokenizer beside it, so with the real files
# (`GLM3_CHATGLM3_PATH` pointing at a `THUDM/chatglm3-6b` download) the same command serves it:
#
# ```bash
# python -m glm3_teach.serve --model "$GLM3_CHATGLM3_PATH" --dtype bfloat16    # or on a GPU: --device cuda
# ```
#
# What changes is memory. The weights take 12.5 GB in bf16, and every running request needs its
# own KV cache (lesson 07): with 2 KV groups that is 28 KiB per token, so 8 requests at the full
# 8192-token context hold almost 2 GB of cache. That is why real servers (vLLM, TGI) manage the
# cache in pages instead of one padded tensor as our worker does.

# %% tags=["nbval-check-output"]
from glm3_teach.generate import kv_cache_bytes
from glm3_teach.model import ChatGLMConfig, count_parameters

glm6b = ChatGLMConfig.chatglm3_6b()
per_token = kv_cache_bytes(glm6b, 1, bytes_per_value=2)
print(f"weights in bf16: {count_parameters(glm6b) * 2 / 1e9:.1f} GB")
print(f"KV cache: {per_token / 1024:.0f} KiB per token; 8 requests x 8192 tokens = "
      f"{kv_cache_bytes(glm6b, 8192, bytes_per_value=2, batch=8) / 1e9:.2f} GB")

# %% [markdown]
# ## 9. Stop the server

# %% tags=["nbval-check-output"]
engine.close()
server.terminate()
assert server.wait(timeout=30) in (0, -15)         # -15: ended by our SIGTERM
server_log.close()
print("server stopped")


# %% [markdown]
# ## Exercises
#
# ### Exercise 1: one OpenAI tool call as ChatGLM3 tokens
# Write `tool_call_tokens(call, tokenizer)`: `call` is one entry of an assistant message's
# `tool_calls` (`{"id", "type", "function": {"name", "arguments": JSON text}}`); return the ids of
# the ChatGLM3 message the model would have written for it: `<|assistant|>` + the name as
# metadata + the fenced `tool_call(...)`. Use `tokenizer.build_single_message(role, metadata,
# content)` and `glm3_teach.tools.format_tool_call`.

# %%
def tool_call_tokens(call, tokenizer):
    raise NotImplementedError


# %%
def reference_tool_call_tokens(call, tokenizer):
    (item,) = to_chatglm_history([{"role": "assistant", "content": None, "tool_calls": [call]}], [])
    return tokenizer.build_single_message(item["role"], item["metadata"], item["content"])


call_cases = [({"id": "call_1", "type": "function", "function": {"name": "check_order",
                                                                 "arguments": '{"order_id": "A1234"}'}},),
              ({"id": "call_2", "type": "function", "function": {"name": "calculate",
                                                                 "arguments": '{"expression": "2*58+18"}'}},),
              ({"id": "call_3", "type": "function", "function": {"name": "check_stock",
                                                                 "arguments": '{"product": "茉莉花茶"}'}},)]
result = check("tool_call_tokens", lambda call: tool_call_tokens(call, tok),
               lambda call: reference_tool_call_tokens(call, tok), call_cases,
               hint="json.loads the arguments, format_tool_call them, then build_single_message('assistant', name, code)")


# %% [markdown]
# ### Exercise 2: the SSE framing of one chunk
# Write `sse_frame(chunk)`: one server-sent event carrying the chunk dict, `data: ` + the chunk as
# JSON on one line + a blank line. Keep Chinese readable (no `\uXXXX` escapes). The check parses
# your frame the way a client does.

# %%
def sse_frame(chunk):
    raise NotImplementedError


# %%
def read_frame(frame):
    """What a client gets from one event: the JSON after 'data: ', or a message saying what is wrong."""
    if not frame.startswith("data: ") or not frame.endswith("\n\n") or "\n" in frame[:-2]:
        return "not one 'data: ...' line followed by a blank line"
    if "\\u" in frame:
        return "Chinese was escaped as \\uXXXX"
    return json.loads(frame[len("data: "):])


frame_cases = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1764600000, "model": "chat",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
               {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1764600000, "model": "chat",
                "choices": [{"index": 0, "delta": {"content": "您好，\n绿茶每罐48元。"}, "finish_reason": None}]},
               {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1764600000, "model": "chat",
                "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}]
result = check("sse_frame", lambda c: read_frame(sse_frame(c)), lambda c: read_frame(sse(c)),
               [(chunk,) for chunk in frame_cases],
               hint="'data: ' + json.dumps(chunk, ensure_ascii=False) + '\\n\\n'")


# %% [markdown]
# ### Exercise 3: how much text may a stream show?
# With `stop=["客服"]`, a stream that has decoded "您好，我是客" must not show the last "客" yet:
# the next token may complete the stop string, which must never reach the client. Write
# `releasable(text, stops)`: the length of the longest prefix of `text` that is safe to show,
# i.e. all of it except the longest tail that is the beginning of some stop string.

# %%
def releasable(text, stops):
    raise NotImplementedError


# %%
release_cases = [("您好，我是客", ["客服"]), ("您好，我是客服", ["客服"]), ("hello wor", ["world", "or"]),
                 ("abc", []), ("", ["x"]), ("ab", ["abc", "b"])]
result = check("releasable", releasable, releasable_length, release_cases,
               hint="try tails from the longest stop string's length - 1 down to 1; the first tail some stop "
                    "string starts with is held back")

# %% [markdown]
# Solutions are in `notebooks/solutions/12_serving_solutions.ipynb`; try first.
#
# ## Summary
# - The Chat Completions API: a request of `messages` and settings, a `chat.completion` with
#   `choices[0].message`, `finish_reason` and `usage`; streamed as SSE `data:` lines of
#   `chat.completion.chunk`s ending with `data: [DONE]`.
# - The model keeps ChatGLM3's format; the edges translate: `tools` -> the tools system message,
#   `tool_calls` -> `<|assistant|>name` + `tool_call(k=v)`, `tool` -> `<|observation|>`.
# - The metadata line after `<|assistant|>` decides text or call, so streaming never guesses;
#   arguments are parsed as literals, never `eval`ed.
# - One worker batches all running requests (continuous batching): new ones join between steps,
#   each leaves when done, a disconnect cancels; 8 clients share the model instead of queueing.
# - Safety: limits, clear 4xx errors in OpenAI's shape, an API key, loopback by default.
#
# The course ends here: from bytes (lesson 01) to a served, tool-using ChatGLM3.
