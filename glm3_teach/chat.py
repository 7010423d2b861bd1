"""Talking to a chat model: ChatGLM3's ``chat()`` and ``stream_chat()``.

Taught in lesson 08 (对话微调 Chat fine-tuning). Both follow ChatGLM3-6B's
``modeling_chatglm.py``:

1. the prompt is ``tokenizer.build_chat_input(query, history, role)`` (``[gMASK] sop``, every
   history message, the query, then ``<|assistant|>``);
2. generation stops on ``</s>``, ``<|user|>`` or ``<|observation|>`` (``stop_token_ids``): the
   model ends its turn by naming who speaks next, and the stop token is dropped;
3. the decoded reply goes through ``tools.process_response``: split on ``<|assistant|>``, each
   segment ``metadata\\ncontent``; empty metadata is a plain (stripped) reply, otherwise a tool
   call ``{"name", "parameters"}`` when the history opens with a tools system message (lesson 09);
4. the query and the reply are appended to a **copy** of the history, which is returned.

Sampling defaults are ChatGLM3's: ``do_sample=True, top_p=0.8, temperature=0.8``; pass
``do_sample=False`` for greedy decoding and a ``torch.Generator`` as ``generator`` for
reproducible draws. ``max_new_tokens`` (or ChatGLM3's ``max_length``, prompt included) bounds
the reply; by default it may use whatever the model's ``seq_length`` leaves. The same
functions run the real ChatGLM3-6B with ``ChatGLM3Tokenizer``.

Differences from the reference, on purpose: the caller's history list is never modified (the
reference appends to it), and when the length limit cuts a reply its last token is kept (the
reference drops the last token whether or not it was a stop token).
What it leaves out: ``past_key_values`` reuse across turns and ``logits_processor``.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from glm3_teach.chat_format import validate_history
from glm3_teach.generate import (
    CHATGLM3_TEMPERATURE,
    CHATGLM3_TOP_P,
    generate_steps,
    stop_token_ids,
)
from glm3_teach.tools import process_response

CHATGLM3_DEFAULTS = {"do_sample": True, "top_p": CHATGLM3_TOP_P, "temperature": CHATGLM3_TEMPERATURE}


def _prepare(model: torch.nn.Module, tokenizer: Any, query: str, history: Any, role: str,
             generate_kwargs: dict[str, Any]) -> tuple[list[dict], torch.Tensor, dict[str, Any]]:
    """The checked history, the prompt ``[1, prompt_len]`` and the keyword arguments of ``generate_steps``."""
    history = validate_history(history)
    prompt = tokenizer.build_chat_input(query, history=history, role=role)
    kwargs = {**CHATGLM3_DEFAULTS, **generate_kwargs}
    if not kwargs.get("do_sample"):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("top_p", "temperature", "top_k")}
    room = model.config.seq_length - len(prompt)
    max_length = kwargs.pop("max_length", None)
    max_new = kwargs.pop("max_new_tokens", room if max_length is None else max_length - len(prompt))
    if room < 1 or max_new < 1:
        raise ValueError(f"the prompt is {len(prompt)} tokens, which leaves no room for a reply "
                         f"(seq_length {model.config.seq_length}, max_length {max_length}); shorten the history")
    kwargs["max_new_tokens"] = min(max_new, room)
    kwargs.setdefault("eos_token_ids", stop_token_ids(tokenizer))
    device = next(model.parameters()).device
    return history, torch.tensor([prompt], dtype=torch.long, device=device), kwargs


def _steps(model: torch.nn.Module, input_ids: torch.Tensor, kwargs: dict[str, Any]) -> Iterator[int]:
    """The reply's ids one by one, the stop token left out."""
    max_new = kwargs.pop("max_new_tokens")
    stop_ids = set(kwargs["eos_token_ids"])
    for next_ids in generate_steps(model, input_ids, max_new, **kwargs):
        token_id = int(next_ids[0])
        if token_id in stop_ids:
            return
        yield token_id


def chat(model: torch.nn.Module, tokenizer: Any, query: str, history: list[dict] | None = None,
         role: str = "user", **generate_kwargs: Any) -> tuple[str | dict, list[dict]]:
    """One turn: ``(response, new_history)``; ``response`` is the reply text (or a tool call dict).

    >>> response, history = chat(model, tokenizer, "乌龙茶多少钱？", do_sample=False)  # doctest: +SKIP
    """
    history, input_ids, kwargs = _prepare(model, tokenizer, query, history, role, generate_kwargs)
    was_training = model.training
    model.eval()
    try:
        ids = list(_steps(model, input_ids, kwargs))
    finally:
        model.train(was_training)
    return process_response(tokenizer.decode(ids), history + [{"role": role, "content": query}])


def stream_chat(model: torch.nn.Module, tokenizer: Any, query: str, history: list[dict] | None = None,
                role: str = "user", **generate_kwargs: Any) -> Iterator[tuple[str | dict, list[dict]]]:
    """Like ``chat`` but yields ``(response_so_far, new_history)`` after every token that ends a character.

    The last pair yielded equals what ``chat`` returns for the same arguments and seed.
    """
    history, input_ids, kwargs = _prepare(model, tokenizer, query, history, role, generate_kwargs)
    history = history + [{"role": role, "content": query}]
    was_training = model.training
    model.eval()
    ids: list[int] = []
    try:
        for token_id in _steps(model, input_ids, kwargs):
            ids.append(token_id)
            text = tokenizer.decode(ids)
            if text and not text.endswith("\ufffd"):  # hold back a character still being spelled out in bytes
                yield process_response(text, history)
    finally:
        model.train(was_training)
    text = tokenizer.decode(ids)
    if not ids or text.endswith("\ufffd"):
        yield process_response(text, history)


def chat_box_reply(model: torch.nn.Module, tokenizer: Any, message: str, history: list[dict] | None = None,
                   **generate_kwargs: Any) -> tuple[str, list[dict]]:
    """What the lesson's chat box shows after ``message``: ``(transcript, new_history)``.

    A blank message changes nothing; a reply that is a tool call is shown as its JSON. The
    transcript has one line per turn, ``你: ...`` / ``助手: ...``. This is the chat box's whole
    logic, so it is tested without a browser.
    """
    history = validate_history(history)
    if isinstance(message, str) and message.strip():
        _, history = chat(model, tokenizer, message.strip(), history, **generate_kwargs)
    lines = []
    for item in history:
        if item["role"] in ("user", "assistant"):
            speaker = "你" if item["role"] == "user" else "助手"
            metadata = item.get("metadata", "")
            lines.append(f"{speaker}: {(metadata + ' ') if metadata else ''}{item['content']}")
    return "\n".join(lines), history
