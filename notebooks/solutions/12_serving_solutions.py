# %% [markdown]
# # 12 · 部署 Serving: solutions
#
# Worked answers to the exercises of lesson 12. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import json

from glm3_teach import check, load_tokenizer
from glm3_teach.openai_format import releasable_length, sse, to_chatglm_history
from glm3_teach.paths import data_dir
from glm3_teach.tools import format_tool_call

tok = load_tokenizer(data_dir() / "checkpoints" / "base")


# %% [markdown]
# ## Exercise 1: one OpenAI tool call as ChatGLM3 tokens
# The arguments arrive as JSON text; `json.loads` gives the keyword arguments, `format_tool_call`
# writes them as the fenced `tool_call(k='v')` of ChatGLM3's fine-tuning data, and the tool's
# name is the assistant message's metadata: `<|assistant|>` + encode(name + "\n") + encode(code).

# %% tags=["nbval-check-output"]
def tool_call_tokens(call, tokenizer):
    function = call["function"]
    code = format_tool_call(json.loads(function["arguments"]))
    return tokenizer.build_single_message("assistant", function["name"], code)


def reference_tool_call_tokens(call, tokenizer):
    (item,) = to_chatglm_history([{"role": "assistant", "content": None, "tool_calls": [call]}], [])
    return tokenizer.build_single_message(item["role"], item["metadata"], item["content"])


call_cases = [({"id": "call_1", "type": "function", "function": {"name": "check_order",
                                                                 "arguments": '{"order_id": "A1234"}'}},),
              ({"id": "call_2", "type": "function", "function": {"name": "calculate",
                                                                 "arguments": '{"expression": "2*58+18"}'}},),
              ({"id": "call_3", "type": "function", "function": {"name": "check_stock",
                                                                 "arguments": '{"product": "茉莉花茶"}'}},)]
assert check("tool_call_tokens", lambda call: tool_call_tokens(call, tok),
             lambda call: reference_tool_call_tokens(call, tok), call_cases)
print(repr(tok.decode(tool_call_tokens(call_cases[0][0], tok))))


# %% [markdown]
# ## Exercise 2: the SSE framing of one chunk
# `json.dumps` writes the chunk on one line (a newline inside a string becomes `\n`, two
# characters), `ensure_ascii=False` keeps Chinese as it is, and the blank line ends the event.

# %% tags=["nbval-check-output"]
def sse_frame(chunk):
    return "data: " + json.dumps(chunk, ensure_ascii=False) + "\n\n"


def read_frame(frame):
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
assert check("sse_frame", lambda c: read_frame(sse_frame(c)), lambda c: read_frame(sse(c)),
             [(chunk,) for chunk in frame_cases])


# %% [markdown]
# ## Exercise 3: how much text may a stream show?
# Only a tail shorter than the longest stop string can be the start of one. Trying the tails
# from the longest down, the first one some stop string starts with is the longest such tail;
# everything before it is safe.

# %% tags=["nbval-check-output"]
def releasable(text, stops):
    longest = max((len(stop) for stop in stops), default=0)
    for size in range(min(longest - 1, len(text)), 0, -1):
        if any(stop.startswith(text[-size:]) for stop in stops):
            return len(text) - size
    return len(text)


release_cases = [("您好，我是客", ["客服"]), ("您好，我是客服", ["客服"]), ("hello wor", ["world", "or"]),
                 ("abc", []), ("", ["x"]), ("ab", ["abc", "b"])]
assert check("releasable", releasable, releasable_length, release_cases)
print(releasable("您好，我是客", ["客服"]), "of", len("您好，我是客"), "characters may be shown")
