"""Sampling: the logits transforms that turn next-token logits into the distribution decoding draws from.

Taught in lesson 07 (解码 Decoding). Each transform takes ``[batch, vocab]`` logits and
returns new ones, in Hugging Face's order (``process_logits``): ``apply_repetition_penalty``,
then, when sampling, ``apply_temperature``, ``apply_top_k`` and ``apply_top_p``.
``choose_next_token`` takes the arg-max (greedy) or one draw from the softmax;
``next_token_probs`` is the distribution the lesson's sampling explorer draws.

ChatGLM3's ``chat()`` samples with ``top_p=0.8, temperature=0.8`` (``CHATGLM3_TOP_P``,
``CHATGLM3_TEMPERATURE``) and no top-k, no repetition penalty. ``glm3_teach.generate`` runs the
decoding loop around these and re-exports every name.

What it leaves out: typical and min-p sampling, epsilon/eta cut-offs, beam-search scores, and
``InvalidScoreLogitsProcessor`` (a guard against NaN logits from fp16 overflow in the 6B model).
"""

from __future__ import annotations

from typing import Any

import torch

CHATGLM3_TOP_P = 0.8
CHATGLM3_TEMPERATURE = 0.8


# --- logits transforms: [batch, vocab] in, [batch, vocab] out --------------------------------------


def apply_repetition_penalty(logits: torch.Tensor, seen_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already in ``seen_ids`` less likely (CTRL's penalty, as HF and ChatGLM3 apply it).

    ``logits``: ``[batch, vocab]``; ``seen_ids``: ``[batch, seq]`` (prompt and generated tokens).
    A seen token's logit is divided by ``penalty`` if it is positive and multiplied by it if
    negative, so ``penalty > 1`` always lowers it; each token is penalised once however often
    it occurred. ``penalty == 1`` changes nothing.

    >>> apply_repetition_penalty(torch.tensor([[2.0, -2.0, 1.0]]), torch.tensor([[0, 1, 1]]), 2.0)
    tensor([[ 1., -4.,  1.]])
    """
    _check_positive("repetition_penalty", penalty)
    if penalty == 1.0:
        return logits
    seen = torch.gather(logits, 1, seen_ids)                          # [batch, seq]
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, seen_ids, seen)                          # [batch, vocab]


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature``: below 1 sharpens the distribution, above 1 flattens it.

    >>> apply_temperature(torch.tensor([[2.0, 1.0]]), 0.5)
    tensor([[4., 2.]])
    """
    _check_positive("temperature", temperature, hint="for greedy decoding use do_sample=False")
    scaled = logits / temperature
    if bool((torch.isinf(scaled) & torch.isfinite(logits)).any()):
        raise ValueError(f"temperature={temperature!r} is so small that logits / temperature overflow to infinity; "
                         f"use do_sample=False for greedy decoding, or a temperature of at least 1e-3")
    return scaled


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of each row (ties with the k-th are kept); the rest become -inf.

    >>> apply_top_k(torch.tensor([[1.0, 3.0, 2.0]]), 2)
    tensor([[-inf, 3., 2.]])
    """
    _check_top_k(top_k)
    if top_k >= logits.shape[-1]:
        return logits
    kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]   # [batch, 1]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the most likely tokens until their probability reaches ``top_p``.

    Tokens are sorted by probability; a token is kept when the probability of all tokens
    ranked before it is still below ``top_p`` (so the most likely token is always kept, and
    the kept set is the smallest whose total reaches ``top_p``). The rest become -inf.
    ``top_p == 1`` keeps everything. Same set as HF's ``TopPLogitsWarper``.

    >>> apply_top_p(torch.tensor([[3.0, 2.0, 1.0, 0.0]]).log(), 0.5)   # probabilities 1/2, 1/3, 1/6, 0
    tensor([[1.0986,   -inf,   -inf,   -inf]])
    """
    _check_top_p(top_p)
    if top_p == 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)    # [batch, vocab]
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs                         # mass ranked above each token
    remove_sorted = before >= top_p                                      # [batch, vocab], in sorted order
    remove = remove_sorted.scatter(1, order, remove_sorted)              # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def process_logits(logits: torch.Tensor, seen_ids: torch.Tensor, *, do_sample: bool = False,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   repetition_penalty: float = 1.0) -> torch.Tensor:
    """All transforms in HF's order: repetition penalty, then, when sampling, temperature, top-k, top-p.

    ``logits``: ``[batch, vocab]`` (returned as float32); ``seen_ids``: ``[batch, seq]``.
    Greedy decoding skips temperature, top-k and top-p: none of them moves the arg-max.
    """
    logits = apply_repetition_penalty(logits.float(), seen_ids, repetition_penalty)
    if not do_sample:
        return logits
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = apply_top_k(logits, top_k)
    if top_p is not None:
        logits = apply_top_p(logits, top_p)
    return logits


def next_token_probs(logits: torch.Tensor, seen_ids: torch.Tensor | None = None, *, temperature: float = 1.0,
                     top_k: int | None = None, top_p: float | None = None,
                     repetition_penalty: float = 1.0) -> torch.Tensor:
    """The distribution sampling draws from: ``softmax(process_logits(...))``, ``[batch, vocab]``.

    The lesson's sampling explorer draws this; ``seen_ids=None`` means nothing seen yet.
    """
    if logits.dim() == 1:
        return next_token_probs(logits[None], None if seen_ids is None else seen_ids.reshape(1, -1),
                                temperature=temperature, top_k=top_k, top_p=top_p,
                                repetition_penalty=repetition_penalty)[0]
    if seen_ids is None:
        seen_ids = torch.zeros(logits.shape[0], 0, dtype=torch.long, device=logits.device)
    processed = process_logits(logits, seen_ids, do_sample=True, temperature=temperature, top_k=top_k,
                               top_p=top_p, repetition_penalty=repetition_penalty)
    return torch.softmax(processed, dim=-1)


def choose_next_token(logits: torch.Tensor, do_sample: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """``[batch, vocab]`` processed logits -> ``[batch]`` token ids: arg-max, or one draw from the softmax.

    A ``generator`` makes the draws reproducible; the draw happens on the generator's device
    (a CPU generator gives the same tokens whether the model runs on CPU or GPU).
    """
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float(), dim=-1)                       # [batch, vocab]
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator)[:, 0].to(logits.device)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


# --- argument checks ------------------------------------------------------------------------------


def _check_positive(name: str, value: Any, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}" + (f"; {hint}" if hint else ""))


def _check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1 (the number of tokens kept), got {top_k!r}; "
                         f"use top_k=None to switch it off")


def _check_top_p(top_p: Any) -> None:
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (the probability mass kept), got {top_p!r}; "
                         f"use top_p=None (or 1.0) to switch it off")
