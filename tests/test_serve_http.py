"""The server on a real socket: uvicorn on a free loopback port, streaming, 8 concurrent streams, disconnect."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("uvicorn", reason="serving needs the serve extra: pip install -e '.[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official openai client: pip install openai")

try:  # the HTTP library of the installed openai client (httpx2 in openai 3, httpx before)
    import httpx2
except ImportError:
    import httpx as httpx2
from test_serve_support import ScriptedEngine, running_server  # noqa: E402

from glm3_teach import load_pretrained, load_tokenizer  # noqa: E402
from glm3_teach.batching import BatchedEngine  # noqa: E402
from glm3_teach.paths import data_dir  # noqa: E402
from glm3_teach.serve import create_app  # noqa: E402

BASE = data_dir() / "checkpoints" / "base"


@pytest.fixture(scope="module")
def server():
    if not (BASE / "config.json").exists():
        pytest.skip(f"the base checkpoint {BASE} is missing; train it with configs/base.toml")
    torch.set_num_threads(1)
    engine = BatchedEngine(load_pretrained(BASE, dtype=torch.float32), max_batch_size=8)
    with running_server(create_app(engine, load_tokenizer(BASE), "glm3-base")) as url:
        yield url, engine
    engine.close()


def client_for(url):
    return openai.OpenAI(api_key="unused", base_url=url + "/v1", timeout=60, max_retries=0)


def stream_text(client, question, max_tokens):
    chunks = list(client.chat.completions.create(model="glm3-base", messages=[{"role": "user", "content": question}],
                                                 temperature=0, max_tokens=max_tokens, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    return text, chunks[-1].usage.completion_tokens, finish


def test_streaming_over_a_socket_equals_the_whole_reply(server):
    url, _ = server
    client = client_for(url)
    whole = client.chat.completions.create(model="glm3-base", messages=[{"role": "user", "content": "你好"}],
                                           temperature=0, max_tokens=30)
    text, completion_tokens, finish = stream_text(client, "你好", 30)
    assert text == whole.choices[0].message.content
    assert completion_tokens == whole.usage.completion_tokens
    assert finish == whole.choices[0].finish_reason


def test_eight_concurrent_streams_are_batched_and_all_complete(server):
    url, engine = server
    client = client_for(url)
    questions = [f"第{i}个问题：绿茶多少钱？" for i in range(8)]
    steps_before = len(engine.steps)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda q: stream_text(client, q, 40), questions, timeout=120))
    for _, tokens, finish in results:           # each ran to its max_tokens or stopped on a stop token
        assert (finish, tokens) == ("length", 40) or (finish == "stop" and tokens < 40)
    sizes = [step.batch_size for step in list(engine.steps)[steps_before:]]
    assert max(sizes) >= 4, f"8 concurrent clients never shared a batch: sizes {sorted(set(sizes))}"
    assert len(sizes) < 8 * 40, "the streams ran one after another"


@pytest.fixture()
def slow_server():
    """A scripted engine that takes 10 ms per token of a 400-token reply: time for a client to leave."""
    engine = ScriptedEngine(load_tokenizer(BASE), reply=lambda prompt: ("\n" + "茶" * 400, "</s>"), delay=0.01)
    with running_server(create_app(engine, load_tokenizer(BASE), "glm3-slow")) as url:
        yield url, engine


def wait_until_idle(engine, timeout=10):
    deadline = time.monotonic() + timeout
    while engine.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    return engine.pending() == 0


LONG = {"model": "glm3-slow", "messages": [{"role": "user", "content": "讲一个很长的故事"}], "max_tokens": 500}


def test_a_client_that_disconnects_stops_its_generation(slow_server):
    url, engine = slow_server
    with httpx2.Client(timeout=30) as http:
        with http.stream("POST", url + "/v1/chat/completions", json={**LONG, "stream": True}) as response:
            assert response.status_code == 200
            assert next(line for line in response.iter_lines() if line.startswith("data: "))
    assert wait_until_idle(engine), "the generation kept running after the client left"
    ((reason, generated),) = engine.outcomes
    assert reason == "cancelled" and generated < 400


def test_a_non_streamed_request_whose_client_leaves_is_cancelled(slow_server):
    url, engine = slow_server
    with pytest.raises(httpx2.TimeoutException):
        httpx2.post(url + "/v1/chat/completions", json=LONG, timeout=0.5)
    assert wait_until_idle(engine), "the generation kept running after the client left"
    ((reason, generated),) = engine.outcomes
    assert reason == "cancelled" and generated < 400
