"""The OpenAI-compatible server, called in-process with the official ``openai`` client.

The client talks to the app through Starlette's ``TestClient`` (its ``http_client``), so no
port is opened. Text replies come from the real base checkpoint (it speaks nonsense, but
every token is checked against ``glm3_teach.generate``); tool calls come from a scripted
engine whose replies the test writes (``test_serve_support.ScriptedEngine``).
"""

import json

import pytest
import torch

pytest.importorskip("fastapi", reason="serving needs the serve extra: pip install -e '.[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official openai client: pip install openai")

from starlette.testclient import TestClient  # noqa: E402
from test_serve_support import ORDER_CALL, ScriptedEngine  # noqa: E402

from glm3_teach import load_pretrained, load_tokenizer  # noqa: E402
from glm3_teach.batching import BatchedEngine  # noqa: E402
from glm3_teach.generate import generate, stop_token_ids  # noqa: E402
from glm3_teach.paths import data_dir  # noqa: E402
from glm3_teach.serve import create_app  # noqa: E402
from glm3_teach.tools import SHOP_TOOLS, check_order, format_tool_call, tool_schema, tools_system_message  # noqa: E402

BASE = data_dir() / "checkpoints" / "base"
TOOLS = [{"type": "function", "function": tool_schema(fn)} for fn in SHOP_TOOLS]
ORDER_QUESTION = [{"role": "user", "content": "我的订单A1234到哪了？"}]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(BASE)


@pytest.fixture(scope="module")
def base_model():
    if not (BASE / "config.json").exists():
        pytest.skip(f"the base checkpoint {BASE} is missing; train it with configs/base.toml")
    torch.set_num_threads(1)
    return load_pretrained(BASE, dtype=torch.float32)


@pytest.fixture(scope="module")
def base_server(base_model, tokenizer):
    """(openai client, raw TestClient, engine) for the base model behind the real BatchedEngine."""
    engine = BatchedEngine(base_model)
    with TestClient(create_app(engine, tokenizer, "glm3-base")) as http:
        yield openai.OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=http), http, engine
    engine.close()


@pytest.fixture()
def scripted(tokenizer):
    """(openai client, raw TestClient, engine) with scripted replies (tool calls, stop tokens)."""
    engine = ScriptedEngine(tokenizer)
    with TestClient(create_app(engine, tokenizer, "glm3-scripted")) as http:
        yield openai.OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=http), http, engine


def reference_reply(model, tokenizer, query, max_new_tokens):
    """What ``glm3_teach.generate`` says greedily, decoded and stripped as ChatGLM3's chat() does."""
    ids = tokenizer.build_chat_input(query)
    out = generate(model, torch.tensor([ids]), max_new_tokens, eos_token_ids=stop_token_ids(tokenizer))
    new = out[0, len(ids):].tolist()
    new = new[:-1] if new and new[-1] in stop_token_ids(tokenizer) else new
    return tokenizer.decode(new).strip(), len(ids), out.shape[1] - len(ids)


# --- models and plain completions -------------------------------------------------------------
def test_models_lists_the_one_model_served(base_server):
    client, http, _ = base_server
    assert [model.id for model in client.models.list()] == ["glm3-base"]
    assert client.models.retrieve("glm3-base").owned_by == "glm3-teach"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    assert http.get("/health").json()["status"] == "ok"


def test_greedy_completion_is_the_reference_decoding_with_real_usage(base_server, base_model, tokenizer):
    client, _, _ = base_server
    expected, prompt_len, generated = reference_reply(base_model, tokenizer, "你好", 24)
    reply = client.chat.completions.create(model="glm3-base", messages=[{"role": "user", "content": "你好"}],
                                           temperature=0, max_tokens=24)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.prompt_tokens == prompt_len
    assert reply.usage.completion_tokens == generated
    assert reply.usage.total_tokens == prompt_len + generated
    if generated == 24:
        assert reply.choices[0].finish_reason == "length"


def test_max_tokens_gives_finish_reason_length(base_server):
    client, _, _ = base_server
    reply = client.chat.completions.create(model="glm3-base", messages=[{"role": "user", "content": "讲一个故事"}],
                                           temperature=0, max_completion_tokens=3)
    assert reply.usage.completion_tokens <= 3
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert (reply.choices[0].finish_reason == "length") == (reply.usage.completion_tokens == 3)


def test_greedy_stream_equals_the_whole_reply_and_follows_the_chunk_spec(base_server):
    client, _, _ = base_server
    request = dict(model="glm3-base", messages=[{"role": "user", "content": "绿茶多少钱？"}], temperature=0,
                   max_tokens=30)
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    assert {(c.id, c.created, c.model, c.object) for c in chunks} == {
        (chunks[0].id, chunks[0].created, "glm3-base", "chat.completion.chunk")}
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content
    assert all("\ufffd" not in piece for piece in pieces)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_sse_framing_is_data_lines_ending_with_done(base_server):
    _, http, _ = base_server
    body = {"model": "glm3-base", "messages": [{"role": "user", "content": "你好"}], "stream": True, "max_tokens": 4}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = response.read().decode("utf-8").split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ")
        assert json.loads(event[6:])["object"] == "chat.completion.chunk"


def test_seeded_sampling_is_reproducible(base_server):
    client, _, _ = base_server
    request = dict(model="glm3-base", messages=[{"role": "user", "content": "你好"}], temperature=1.0, top_p=0.9,
                   seed=7, max_tokens=20)
    first, second = (client.chat.completions.create(**request).choices[0].message.content for _ in range(2))
    assert first == second


# --- tool calls (scripted replies) -----------------------------------------------------------------
def test_tools_become_the_chatglm3_tools_system_message(scripted, tokenizer):
    client, _, engine = scripted
    client.chat.completions.create(model="glm3-scripted", messages=ORDER_QUESTION, tools=TOOLS)
    expected = tokenizer.build_chat_input(ORDER_QUESTION[0]["content"], [tools_system_message(SHOP_TOOLS)])
    assert engine.prompts[-1] == expected


def test_a_tool_call_reply_becomes_message_tool_calls(scripted, tokenizer):
    client, _, engine = scripted
    reply = client.chat.completions.create(model="glm3-scripted", messages=ORDER_QUESTION, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "check_order"
    assert json.loads(call.function.arguments) == {"order_id": "A1234"}
    assert reply.usage.completion_tokens == len(tokenizer.encode(ORDER_CALL)) + 1      # + the <|observation|> stop
    assert reply.usage.prompt_tokens == len(engine.prompts[-1])


def test_a_streamed_tool_call_arrives_as_delta_tool_calls(scripted):
    client, _, _ = scripted
    chunks = list(client.chat.completions.create(model="glm3-scripted", messages=ORDER_QUESTION, tools=TOOLS,
                                                 stream=True))
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    head = first.tool_calls[0]
    assert (head.index, head.type, head.function.name) == (0, "function", "check_order") and head.id
    arguments = "".join(tc.function.arguments or "" for c in chunks if c.choices
                        for tc in c.choices[0].delta.tool_calls or [])
    assert json.loads(arguments) == {"order_id": "A1234"}
    assert all(tc.id is None for c in chunks[1:] if c.choices for tc in c.choices[0].delta.tool_calls or [])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_the_clients_stream_helper_accepts_the_chunks(scripted):
    client, _, _ = scripted
    strict = [{"type": "function", "function": {**tool_schema(fn), "strict": True}} for fn in SHOP_TOOLS]
    with client.chat.completions.stream(model="glm3-scripted", messages=ORDER_QUESTION, tools=strict) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in kinds
    (call,) = final.choices[0].message.tool_calls
    assert call.function.parsed_arguments == {"order_id": "A1234"}
    with client.chat.completions.stream(model="glm3-scripted", messages=[{"role": "user", "content": "你好"}]) as stream:
        assert stream.get_final_completion().choices[0].message.content.startswith("您好")


def test_a_tool_result_turn_is_an_observation_and_gets_an_answer(scripted, tokenizer):
    client, _, engine = scripted
    call = client.chat.completions.create(model="glm3-scripted", messages=ORDER_QUESTION, tools=TOOLS).choices[0].message
    observation = json.dumps(check_order("A1234"), ensure_ascii=False)
    messages = ORDER_QUESTION + [call.model_dump(exclude_none=True),
                                 {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": observation}]
    answer = client.chat.completions.create(model="glm3-scripted", messages=messages, tools=TOOLS)
    assert answer.choices[0].finish_reason == "stop"
    assert f"状态是{check_order('A1234')['status']}" in answer.choices[0].message.content
    prompt = tokenizer.decode(engine.prompts[-1])
    assert prompt.endswith("<|user|>\n我的订单A1234到哪了？<|assistant|>check_order\n```python\n"
                           "tool_call(order_id='A1234')\n```<|observation|>\n" + observation + "<|assistant|>")


def test_parallel_calls_each_get_their_observation_in_order(scripted, tokenizer):
    _, http, engine = scripted
    calls = [{"id": "call_1", "type": "function", "function": {"name": "check_stock", "arguments": '{"product": "oolong"}'}},
             {"id": "call_2", "type": "function", "function": {"name": "check_stock", "arguments": '{"product": "jasmine"}'}}]
    messages = [{"role": "user", "content": "乌龙茶和茉莉花茶有货吗？"}, {"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "tool", "tool_call_id": "call_2", "content": "B"}, {"role": "tool", "tool_call_id": "call_1", "content": "A"}]
    response = http.post("/v1/chat/completions", json={"model": "glm3-scripted", "messages": messages, "tools": TOOLS})
    assert response.status_code == 200
    history = [tools_system_message(SHOP_TOOLS), {"role": "user", "content": messages[0]["content"]},
               {"role": "assistant", "metadata": "check_stock", "content": format_tool_call({"product": "oolong"})},
               {"role": "observation", "content": "A"},
               {"role": "assistant", "metadata": "check_stock", "content": format_tool_call({"product": "jasmine"})}]
    assert engine.prompts[-1] == tokenizer.build_chat_input("B", history, role="observation")


def test_tool_choice_none_offers_no_tools(scripted, tokenizer):
    client, _, engine = scripted
    reply = client.chat.completions.create(model="glm3-scripted", messages=ORDER_QUESTION, tools=TOOLS, tool_choice="none")
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.tool_calls is None
    assert engine.prompts[-1] == tokenizer.build_chat_input(ORDER_QUESTION[0]["content"])


def test_stop_strings_end_the_text_in_both_modes(scripted):
    client, _, _ = scripted
    request = dict(model="glm3-scripted", messages=[{"role": "user", "content": "你好"}], stop=["客服"])
    whole = client.chat.completions.create(**request)
    assert whole.choices[0].message.content == "您好，我是清泉茶铺的"
    assert whole.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**request, stream=True))
    assert streamed == whole.choices[0].message.content


def test_the_page_can_run_a_shop_tool(scripted):
    _, http, _ = scripted
    result = http.post("/v1/tools/call", json={"name": "check_order", "arguments": '{"order_id": "A1234"}'}).json()
    assert json.loads(result["content"]) == check_order("A1234")
    bad = http.post("/v1/tools/call", json={"name": "rm_rf", "arguments": "{}"}).json()
    assert "error" in json.loads(bad["content"])
    listed = http.get("/v1/tools").json()["data"]
    assert [tool["function"]["name"] for tool in listed] == ["check_order", "check_stock", "calculate"]


def test_the_chat_page_and_its_files_are_served_without_a_cdn(scripted):
    _, http, _ = scripted
    page = http.get("/")
    assert page.status_code == 200 and "清泉茶铺" in page.text
    for name in ("chat.js", "chat.css"):
        asset = http.get(f"/static/{name}")
        assert asset.status_code == 200
        assert "http://" not in asset.text and "https://" not in asset.text
    assert "https://" not in page.text
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert http.get(path).status_code == 404
