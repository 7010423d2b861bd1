"""Helpers for the serving tests: a scripted engine whose replies a test writes, and a real uvicorn server.

``ScriptedEngine`` has ``BatchedEngine``'s interface (``submit``, ``pending``, ``close``,
``seq_length``) and answers each prompt with the token ids of a reply chosen by ``reply(prompt_text)``,
so the tests of tool calls and of the chat page do not depend on what a trained model happens
to say. The engine itself is tested with the real base model in ``test_serve_batching.py``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Callable, Iterator

from glm3_teach.generate import stop_token_ids

ORDER_CALL = "check_order\n```python\ntool_call(order_id='A1234')\n```"


def shop_reply(prompt: str) -> tuple[str, str]:
    """A tea-shop assistant in three rules: ``(reply text, stop token)`` for the decoded prompt.

    After a tool result it answers from the observation; asked about an order with the tools
    offered it calls ``check_order``; otherwise it greets.
    """
    since_last_reply = prompt.split("<|assistant|>")[-2]      # the prompt ends with <|assistant|>
    if "<|observation|>" in since_last_reply:
        observation = since_last_reply.split("<|observation|>", 1)[1].strip()
        if not observation.startswith('{"order_id"'):
            return f"\n查到了：{observation}", "</s>"
        order = json.loads(observation)
        return (f"\n您的订单{order['order_id']}状态是{order['status']}，"
                f"还有{order['days_to_delivery']}天送达。", "</s>")
    if '"check_order"' in prompt and "订单" in prompt.rsplit("<|user|>", 1)[-1]:
        return ORDER_CALL, "<|observation|>"
    return "\n您好，我是清泉茶铺的客服小周。请问有什么可以帮您？", "</s>"


class ScriptedEngine:
    """Replies chosen by ``reply(prompt_text) -> (text, stop_token)``, streamed one token per ``delay`` seconds."""

    def __init__(self, tokenizer, reply: Callable[[str], tuple[str, str]] = shop_reply, seq_length: int = 4096,
                 delay: float = 0.0):
        self.tokenizer, self.reply, self.seq_length, self.delay = tokenizer, reply, seq_length, delay
        self.prompts: list[list[int]] = []
        self.requests = []
        self.outcomes: list[tuple[str, int]] = []       # (finish reason, tokens generated) per finished job
        self._running = 0
        self._lock = threading.Lock()

    def submit(self, request, notify):
        from glm3_teach.batching import Job

        job = Job(request, notify)
        self.prompts.append(list(request.prompt_ids))
        self.requests.append(request)
        text, stop = self.reply(self.tokenizer.decode(request.prompt_ids))
        ids = self.tokenizer.encode(text) + [self.tokenizer.special_id(stop)]
        assert ids[-1] in stop_token_ids(self.tokenizer)
        with self._lock:
            self._running += 1
        threading.Thread(target=self._play, args=(job, ids), daemon=True).start()
        return job

    def _play(self, job, ids: list[int]) -> None:
        generated, reason = 0, "length"
        for token in ids:
            if job.cancelled:
                reason = "cancelled"
                break
            if generated == job.request.max_new_tokens:
                break
            generated += 1
            if token in job.request.stop_ids:
                reason = "stop"
                break
            job.notify(("token", token))
            time.sleep(self.delay)
        with self._lock:
            self._running -= 1
            self.outcomes.append((reason, generated))
        job.notify(("end", reason, generated))

    def pending(self) -> int:
        return self._running

    def close(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(app, timeout: float = 20.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port} within {timeout} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
