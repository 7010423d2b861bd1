"""The batched generation worker: the same tokens as ``glm3_teach.generate``, however requests share the batch."""

import threading
import time

import pytest
import torch

from glm3_teach import load_pretrained, load_tokenizer
from glm3_teach.batching import BatchedEngine, GenerationRequest
from glm3_teach.generate import generate, stop_token_ids
from glm3_teach.paths import data_dir

BASE = data_dir() / "checkpoints" / "base"
QUESTIONS = ["你好", "我的订单A1234到哪了？请帮我查一下", "绿茶多少钱", "Do you sell teapots?"]


@pytest.fixture(scope="module")
def model():
    if not (BASE / "config.json").exists():
        pytest.skip(f"the base checkpoint {BASE} is missing; train it with configs/base.toml")
    torch.set_num_threads(1)
    return load_pretrained(BASE, dtype=torch.float32)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(BASE)


@pytest.fixture()
def engine(model):
    engine = BatchedEngine(model, max_batch_size=8)
    yield engine
    engine.close()


class Collector:
    """Receives one job's events; ``wait()`` returns ``(tokens, end_event)``."""

    def __init__(self):
        self.tokens, self.end, self.done = [], None, threading.Event()

    def __call__(self, event):
        if event[0] == "token":
            self.tokens.append(event[1])
        else:
            self.end = event
            self.done.set()

    def wait(self, timeout=60):
        assert self.done.wait(timeout), "the job did not finish in time"
        return self.tokens, self.end


def reference(model, prompt, max_new_tokens, stops):
    out = generate(model, torch.tensor([prompt]), max_new_tokens, eos_token_ids=list(stops))[0, len(prompt):].tolist()
    return out[:-1] if out and out[-1] in stops else out


def test_a_request_alone_gets_the_tokens_of_generate(engine, model, tokenizer):
    stops = tuple(stop_token_ids(tokenizer))
    prompt = tokenizer.build_chat_input(QUESTIONS[1])
    collector = Collector()
    engine.submit(GenerationRequest(prompt, 30, stop_ids=stops), collector)
    tokens, end = collector.wait()
    assert tokens == reference(model, prompt, 30, stops)
    assert end == ("end", "length", 30) or end[1] == "stop"


def test_requests_joining_a_running_batch_get_their_own_tokens(engine, model, tokenizer):
    stops = tuple(stop_token_ids(tokenizer))
    prompts = [tokenizer.build_chat_input(q) for q in QUESTIONS] * 2
    lengths = [40 - 4 * i for i in range(len(prompts))]
    collectors = []
    for prompt, length in zip(prompts, lengths):
        collectors.append(Collector())
        engine.submit(GenerationRequest(prompt, length, stop_ids=stops), collectors[-1])
        time.sleep(0.02)                      # arrive one after another, while the batch runs
    for prompt, length, collector in zip(prompts, lengths, collectors):
        tokens, _ = collector.wait()
        assert tokens == reference(model, prompt, length, stops)
    sizes = [step.batch_size for step in engine.steps]
    assert max(sizes) >= 4, f"the requests were not batched: batch sizes {sorted(set(sizes))}"
    assert max(step.cache_len for step in engine.steps) <= model.config.seq_length


def test_each_row_stops_on_its_own_stop_id(engine, model, tokenizer):
    prompt = tokenizer.build_chat_input("你好")
    first = reference(model, prompt, 1, ())[0]
    stopped, running = Collector(), Collector()
    engine.submit(GenerationRequest(prompt, 20, stop_ids=(first,)), stopped)
    engine.submit(GenerationRequest(prompt, 20, stop_ids=()), running)
    assert stopped.wait() == ([], ("end", "stop", 1))
    tokens, end = running.wait()
    assert end == ("end", "length", 20) and tokens == reference(model, prompt, 20, ())


def test_a_cancelled_job_stops_generating(engine, tokenizer):
    collector = Collector()
    job = engine.submit(GenerationRequest(tokenizer.build_chat_input("讲一个很长的故事"), 200), collector)
    deadline = time.monotonic() + 30
    while not collector.tokens and time.monotonic() < deadline:
        time.sleep(0.005)
    job.cancel()
    tokens, end = collector.wait()
    assert end[1] == "cancelled" and end[2] < 200 and len(tokens) < 200
    assert engine.pending() == 0


def test_seeded_sampling_draws_the_same_tokens_again(engine, tokenizer):
    prompt = tokenizer.build_chat_input("你好")
    runs = []
    for _ in range(2):
        collector = Collector()
        engine.submit(GenerationRequest(prompt, 25, temperature=1.0, top_p=0.9, seed=11), collector)
        runs.append(collector.wait()[0])
    assert runs[0] == runs[1]


def test_a_request_that_cannot_fit_is_refused(engine, tokenizer):
    prompt = tokenizer.build_chat_input("你好")
    with pytest.raises(ValueError, match="seq_length"):
        engine.submit(GenerationRequest(prompt, engine.seq_length), Collector())


def test_a_p_tuning_prefix_stays_in_front_of_every_rows_cache(tokenizer):
    from glm3_teach.serve import load_model

    adapter = data_dir() / "checkpoints" / "chat_ptuning"
    if not (adapter / "config.json").exists():
        pytest.skip(f"the P-Tuning v2 checkpoint {adapter} is missing (lesson 10 makes it)")
    model = load_model(adapter, base=BASE, device="cpu")
    engine = BatchedEngine(model, max_batch_size=4)
    stops = tuple(stop_token_ids(tokenizer))
    prompts = [tokenizer.build_chat_input(q) for q in QUESTIONS[:3]]
    collectors = []
    for prompt in prompts:
        collectors.append(Collector())
        engine.submit(GenerationRequest(prompt, 16, stop_ids=stops), collectors[-1])
        time.sleep(0.02)
    try:
        for prompt, collector in zip(prompts, collectors):
            assert collector.wait()[0] == reference(model, prompt, 16, stops)
    finally:
        engine.close()
