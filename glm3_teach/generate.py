"""Decoding: turn a language model's next-token logits into text, one token at a time.

Taught in lesson 07 (解码 Decoding). ``generate`` is the loop ChatGLM3's ``model.generate``
runs, written out:

1. the prompt goes through the model once, filling the **KV cache** (keys after RoPE and
   before the group expansion, see ``glm3_teach.attention``);
2. the logits of the last position pass through small **logits transforms**, in Hugging
   Face's order: ``apply_repetition_penalty``, then (sampling only) ``apply_temperature``,
   ``apply_top_k`` and ``apply_top_p`` (they live in ``glm3_teach.sampling`` and are
   re-exported here);
3. the next token is the arg-max (greedy) or a draw from the softmax (sampling, with an
   optional ``torch.Generator`` for reproducible draws);
4. the new token alone goes through the model with the cache, and so on.

With ``use_cache=False`` every step recomputes the whole sequence instead; greedy decoding
gives the same tokens either way, the cache only saves work (lesson 07 measures how much).

**Two cache designs** (``cache_impl``). ``"preallocated"`` (the default for
``ChatGLMForCausalLM``) allocates one ``glm3_teach.kv_cache.KVCache`` for the prompt and every
new token, each step writes its keys and values in place, and the arguments are checked once
per call, so each step runs the model with ``check_inputs=False``. ``"concat"`` feeds the
tuple cache the model returns back in: the model concatenates at every step (copying the
whole past) and checks its inputs again. That is the simpler design, and the one any other
model object (a stand-in with the same ``forward``) gets. Both give the same logits.

**Batches.** Prompts of different lengths are padded on the **left** with an
``attention_mask`` (1 = real token, 0 = pad), and each row's real tokens start at position
0, ChatGLM3's convention (the model derives positions from the mask). Each row stops on its
own when it produces a stop token; later positions of a finished row hold ``pad_token_id``.

**Stop tokens.** ChatGLM3's ``chat()`` stops on eos ``</s>`` (id 2), ``<|user|>`` and
``<|observation|>``; ``stop_token_ids(tokenizer)`` gives those three ids for any course
tokenizer. ``generate`` sees ids only, so it stops only on the ids it is given:
``eos_token_ids=None`` (the default) and ``[]`` both mean "never stop early"; pass
``stop_token_ids(tokenizer)`` to stop like ChatGLM3. ``stream_generate`` has the tokenizer,
so its ``None`` means ``stop_token_ids(tokenizer)``.

**Length.** The prompt (with its left padding) plus ``max_new_tokens`` must fit in the
model's ``seq_length`` (its RoPE table); otherwise ``generate`` raises ``ValueError`` before
it starts, rather than silently wrapping positions or truncating.

**Defaults.** These functions default to plain greedy decoding (``do_sample=False``).
ChatGLM3's own ``chat()`` samples with ``top_p=0.8, temperature=0.8``
(``CHATGLM3_TOP_P``, ``CHATGLM3_TEMPERATURE``); the lesson explains why.

What it leaves out: beam search, contrastive search, stop *strings*, speculative decoding,
and the chat-level helpers ``chat()`` / ``stream_chat()`` (lesson 08).
"""

from __future__ import annotations

import operator
import warnings
from typing import Any, Iterator, Sequence

import torch

from glm3_teach.kv_cache import KVCache
from glm3_teach.model import ChatGLMForCausalLM
from glm3_teach.sampling import (  # noqa: F401  (re-exported: ``from glm3_teach.generate import apply_top_p`` works)
    CHATGLM3_TEMPERATURE,
    CHATGLM3_TOP_P,
    _check_positive,
    _check_top_k,
    _check_top_p,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    choose_next_token,
    next_token_probs,
    process_logits,
)

CHATGLM3_STOP_TOKENS = ("</s>", "<|user|>", "<|observation|>")
CACHE_IMPLS = ("preallocated", "concat")


def stop_token_ids(tokenizer: Any) -> list[int]:
    """The ids ChatGLM3's ``chat()`` stops on: eos ``</s>``, ``<|user|>`` and ``<|observation|>``.

    The real tokenizer gives ``[2, 64795, 64797]``; the course tokenizer ``[4094, 4091, 4093]``.
    """
    return [tokenizer.eos_token_id] + [tokenizer.special_id(token) for token in CHATGLM3_STOP_TOKENS[1:]]


def finish_rows(next_ids: torch.Tensor, finished: torch.Tensor, stop_ids: torch.Tensor | None,
                pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of per-row stopping: rows already finished get ``pad_token_id``; rows that now
    produce a stop id become finished (their stop token is kept).

    ``next_ids``, ``finished``: ``[batch]``; ``stop_ids``: ``[n]`` or None (never stop).
    Returns ``(next_ids, finished)``, both new tensors.

    >>> finish_rows(torch.tensor([5, 9, 7]), torch.tensor([True, False, False]), torch.tensor([9]), 0)
    (tensor([0, 9, 7]), tensor([ True,  True, False]))
    """
    next_ids = torch.where(finished, torch.full_like(next_ids, pad_token_id), next_ids)
    if stop_ids is None:
        return next_ids, finished.clone()
    return next_ids, finished | torch.isin(next_ids, stop_ids)


def kv_cache_bytes(config: Any, num_tokens: int = 1, bytes_per_value: int = 2, batch: int = 1) -> int:
    """Memory of the KV cache: ``2 (k and v) * num_layers * num_kv_groups * head_dim`` values per token.

    ``bytes_per_value``: 2 for fp16/bf16 (ChatGLM3-6B's dtype), 4 for fp32. ChatGLM3-6B with its
    2 KV groups: 2 * 28 * 2 * 128 * 2 = 28,672 bytes per token; with one K/V per query head
    (32 groups) it would be 16 times more.
    """
    per_token = 2 * config.num_layers * config.num_kv_groups * config.kv_channels * bytes_per_value
    return per_token * num_tokens * batch


# --- the decoding loop ------------------------------------------------------------------------


@torch.inference_mode()  # like no_grad, and also skips autograd's bookkeeping on every small op
def generate_steps(model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int, *,
                   do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, repetition_penalty: float = 1.0,
                   eos_token_ids: Sequence[int] | None = None, attention_mask: torch.Tensor | None = None,
                   use_cache: bool = True, generator: torch.Generator | None = None,
                   pad_token_id: int | None = None, cache_impl: str = "preallocated") -> Iterator[torch.Tensor]:
    """Yield the next token of every row, ``[batch]``, step by step; arguments as in ``generate``.

    Stops after ``max_new_tokens`` steps or once every row has produced a stop token.
    """
    input_ids, attention_mask, stop_ids, pad_token_id = _check_generate_args(
        model, input_ids, max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty,
        eos_token_ids, attention_mask, generator, pad_token_id)
    if cache_impl not in CACHE_IMPLS:
        raise ValueError(f"cache_impl must be one of {CACHE_IMPLS}, got {cache_impl!r}")
    was_training = model.training
    model.eval()  # dropout off while generating; the mode is restored afterwards
    try:
        step = _step_function(model, input_ids.shape[0], input_ids.shape[1] + max_new_tokens,
                              use_cache, cache_impl)
        yield from _decode(step, input_ids, attention_mask, stop_ids, pad_token_id, max_new_tokens, do_sample,
                           dict(temperature=temperature, top_k=top_k, top_p=top_p,
                                repetition_penalty=repetition_penalty), generator)
    finally:
        model.train(was_training)


def _step_function(model: torch.nn.Module, batch: int, total_len: int, use_cache: bool, cache_impl: str):
    """``step(seen_ids, attention_mask) -> logits [batch, vocab]`` of the last position, for one design.

    ``seen_ids``: ``[batch, n]`` every token so far; ``attention_mask``: ``[batch, n]`` or None.
    No cache: the whole sequence each time. ``"concat"``: the tuple cache the model returns,
    fed back (the model concatenates and checks its inputs each step). ``"preallocated"`` (a
    ``ChatGLMForCausalLM`` only; other models get ``"concat"``): one ``KVCache`` for all
    ``total_len`` positions, written in place, with the value checks done once, before.
    """
    if not use_cache:
        return lambda seen_ids, attention_mask: model(seen_ids, attention_mask=attention_mask).logits[:, -1]
    state = {"cache": None, "fed": 0}  # the cache so far and how many tokens it holds
    preallocated = cache_impl == "preallocated" and isinstance(model, ChatGLMForCausalLM)
    if preallocated:
        weight = model.transformer.embedding.word_embeddings.weight
        state["cache"] = KVCache.for_config(model.config, batch, (model.config.pre_seq_len or 0) + total_len,
                                            dtype=weight.dtype, device=weight.device)

    def step(seen_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        new_ids = seen_ids[:, state["fed"]:]                                    # [batch, new]: prompt, then 1
        extra = {"check_inputs": False} if preallocated else {}
        out = model(new_ids, attention_mask=attention_mask, kv_cache=state["cache"], use_cache=True, **extra)
        state["cache"], state["fed"] = out.kv_cache, seen_ids.shape[1]
        return out.logits[:, -1]

    return step


def _decode(step, input_ids, attention_mask, stop_ids, pad_token_id, max_new_tokens, do_sample, transforms,
            generator) -> Iterator[torch.Tensor]:
    """The loop of ``generate_steps`` on checked arguments; ``transforms`` are ``process_logits``'s.

    Tokens and mask live in buffers ``[batch, prompt_len + max_new_tokens]`` filled column by
    column (no concatenation per step); the model sees the filled part ``[:, :n]``.
    """
    batch, prompt_len = input_ids.shape
    total = prompt_len + max_new_tokens
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)   # [batch]
    tokens = input_ids.new_zeros(batch, total)                                  # [batch, total]
    tokens[:, :prompt_len] = input_ids
    # Left pads would be "seen" by the repetition penalty; stand them in by the last prompt
    # token (always real with left padding), which is penalised anyway.
    pad_free = tokens.clone()
    pad_free[:, :prompt_len] = torch.where(attention_mask.bool(), input_ids, input_ids[:, -1:])
    # Without padding the model needs no mask (it builds the causal one itself), which saves
    # checking and extending a mask at every step.
    mask = None
    if not bool(attention_mask.all()):
        mask = attention_mask.new_ones(batch, total)                            # generated tokens are real
        mask[:, :prompt_len] = attention_mask
    for n in range(prompt_len, total):
        last_logits = step(tokens[:, :n], None if mask is None else mask[:, :n])  # [batch, vocab]
        if bool(torch.isnan(last_logits).any()):
            raise FloatingPointError("the model's logits hold NaN, so no token can be chosen (greedy decoding "
                                     "would silently pick id 0); the weights or the input are broken: reload "
                                     "the checkpoint, or run in float32 if float16 overflowed")
        logits = process_logits(last_logits, pad_free[:, :n], do_sample=do_sample, **transforms)
        next_ids = choose_next_token(logits, do_sample, generator)             # [batch]
        if stop_ids is not None:                                               # without stop ids no row finishes
            next_ids, finished = finish_rows(next_ids, finished, stop_ids, pad_token_id)
        yield next_ids
        tokens[:, n] = next_ids
        pad_free[:, n] = next_ids
        if stop_ids is not None and bool(finished.all()):
            return


def generate(model: torch.nn.Module, input_ids: torch.Tensor, max_new_tokens: int, *, do_sample: bool = False,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             repetition_penalty: float = 1.0, eos_token_ids: Sequence[int] | None = None,
             attention_mask: torch.Tensor | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None, pad_token_id: int | None = None,
             cache_impl: str = "preallocated") -> torch.Tensor:
    """Continue ``input_ids`` by up to ``max_new_tokens`` tokens; returns ``[batch, prompt_len + new]``.

    ``input_ids``: ``[batch, prompt_len]`` (a 1-D prompt is taken as a batch of one),
    left-padded when the prompts differ in length, with ``attention_mask`` ``[batch, prompt_len]``
    (1 = real token, 0 = pad). ``do_sample=False`` is greedy (only ``repetition_penalty``
    applies); ``do_sample=True`` draws from the softmax after ``temperature``, ``top_k`` (None =
    off) and ``top_p`` (None = off), reproducibly when ``generator`` is given.
    ``eos_token_ids``: ids that end a row (the stop token is kept in the output); None or ``[]``:
    never stop early (see ``stop_token_ids``). ``pad_token_id`` fills a row after it stopped
    (default: the first stop id, as HF does). ``use_cache=False`` recomputes the whole sequence
    every step (same greedy tokens, much slower); ``cache_impl`` picks the cache design,
    ``"preallocated"`` or ``"concat"`` (same tokens; see the module docstring). ``new`` is
    ``max_new_tokens`` unless every row stopped earlier. Tensors are moved to the model's device, and so is the result. Raises
    ``ValueError`` if ``prompt_len + max_new_tokens > seq_length``.
    """
    if isinstance(input_ids, torch.Tensor):
        input_ids = (input_ids[None] if input_ids.dim() == 1 else input_ids).to(_model_device(model))
    steps = list(generate_steps(model, input_ids, max_new_tokens, do_sample=do_sample, temperature=temperature,
                                top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                                eos_token_ids=eos_token_ids, attention_mask=attention_mask, use_cache=use_cache,
                                generator=generator, pad_token_id=pad_token_id, cache_impl=cache_impl))
    if not steps:
        return input_ids
    return torch.cat([input_ids, torch.stack(steps, dim=1)], dim=1)           # [batch, prompt_len + new]


def stream_generate(model: torch.nn.Module, tokenizer: Any, input_ids: torch.Tensor | Sequence[int],
                    max_new_tokens: int, *, eos_token_ids: Sequence[int] | None = None,
                    **sampling: Any) -> Iterator[str]:
    """Generate for one prompt and yield the new text piece by piece, whole characters only.

    ``input_ids``: one prompt (a list of ids, ``[seq]`` or ``[1, seq]``). ``eos_token_ids``:
    None means ChatGLM3's stop set ``stop_token_ids(tokenizer)``; ``[]`` never stops early.
    ``sampling``: the other keyword arguments of ``generate``. Each new id goes through the
    tokenizer's ``StreamDecoder`` (lesson 01), which holds back the bytes of a Chinese
    character split over several tokens until it is complete, so no "�" from a split ever
    reaches the caller. The stop token is not shown (as in ChatGLM3's ``chat()``), and a
    character still unfinished when generation ends is dropped. Empty pieces are not yielded.
    Joined, the pieces equal ``tokenizer.decode(new_ids)`` (without the stop token) whenever
    the ids end on a whole character.
    """
    if isinstance(input_ids, (str, bytes, bytearray)):
        raise TypeError(f"stream_generate takes token ids, got the {type(input_ids).__name__} {input_ids[:20]!r}; "
                        f"encode it first: tokenizer.encode(text) or tokenizer.build_chat_input(query)")
    if not isinstance(input_ids, torch.Tensor):
        input_ids = torch.tensor([_as_ids(input_ids)], dtype=torch.long)
    input_ids = input_ids[None] if input_ids.dim() == 1 else input_ids
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"stream_generate streams one prompt: input_ids must be [seq] or [1, seq], got shape "
                         f"{list(input_ids.shape)}; call generate for a batch")
    input_ids = input_ids.to(_model_device(model))
    stop_ids = stop_token_ids(tokenizer) if eos_token_ids is None else list(eos_token_ids)
    decoder = tokenizer.stream_decoder()
    for next_ids in generate_steps(model, input_ids, max_new_tokens, eos_token_ids=stop_ids, **sampling):
        token_id = int(next_ids[0])
        if token_id in stop_ids:
            return                                    # an unfinished character is dropped, never shown as "�"
        piece = decoder.push(token_id)
        if piece:
            yield piece


# --- argument checks ------------------------------------------------------------------------------


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _as_ids(ids: Any) -> list[int]:
    """A list of Python ints from a sequence of ids; anything else is a clear ``TypeError``."""
    if isinstance(ids, (str, bytes, bytearray)) or getattr(ids, "dtype", None) in (torch.bool, torch.float32):
        raise TypeError(f"token ids must be integers, got {ids!r}")
    try:
        checked = [operator.index(i) for i in ids]
        if any(isinstance(i, bool) for i in ids):
            raise TypeError
    except TypeError:
        shown = list(ids)[:5] if isinstance(ids, (list, tuple, torch.Tensor)) else ids
        raise TypeError(f"token ids must be a list of integers, got {shown!r}") from None
    return checked


def _check_generate_args(model, input_ids, max_new_tokens, do_sample, temperature, top_k, top_p,
                         repetition_penalty, eos_token_ids, attention_mask, generator, pad_token_id):
    """Raise a clear error for bad arguments; return ``(input_ids, attention_mask, stop_ids, pad_token_id)``."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be an integer tensor [batch, prompt_len], got a {type(input_ids).__name__}; "
                        f"build it with torch.tensor([ids])")
    if input_ids.dtype not in (torch.long, torch.int32) or input_ids.dim() != 2:
        raise TypeError(f"input_ids must be an integer tensor [batch, prompt_len], got {input_ids.dtype} of shape "
                        f"{list(input_ids.shape)}; convert it with .long()")
    input_ids = input_ids.to(_model_device(model))
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"the prompt is empty (input_ids shape {list(input_ids.shape)}): the model needs at "
                         f"least one token to predict the next; start from [gMASK] sop or any text")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not isinstance(do_sample, bool):
        raise TypeError(f"do_sample must be True or False, got {do_sample!r}")
    if do_sample:
        _check_positive("temperature", temperature, hint="for greedy decoding use do_sample=False")
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)
    _check_positive("repetition_penalty", repetition_penalty, hint="1.0 means no penalty")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}; "
                        f"make one with torch.Generator().manual_seed(0)")
    config = model.config
    batch, prompt_len = input_ids.shape
    if prompt_len + max_new_tokens > config.seq_length:
        raise ValueError(f"prompt_len {prompt_len} + max_new_tokens {max_new_tokens} = "
                         f"{prompt_len + max_new_tokens} exceeds the model's seq_length {config.seq_length} "
                         f"(the length of its RoPE table); shorten the prompt or ask for fewer tokens")
    vocab = config.padded_vocab_size
    stop_ids = None
    if eos_token_ids is not None:
        if isinstance(eos_token_ids, int):
            eos_token_ids = [eos_token_ids]
        eos_token_ids = _as_ids(eos_token_ids)
        bad = [i for i in eos_token_ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"eos_token_ids {bad} are outside the vocabulary [0, {vocab})")
        stop_ids = torch.tensor(eos_token_ids, dtype=torch.long, device=input_ids.device) if eos_token_ids else None
    if pad_token_id is None:
        pad_token_id = eos_token_ids[0] if eos_token_ids else config.pad_token_id
    if not 0 <= pad_token_id < vocab:
        raise ValueError(f"pad_token_id {pad_token_id} is outside the vocabulary [0, {vocab})")
    return input_ids, _check_attention_mask(attention_mask, input_ids, getattr(config, "pad_token_id", None)), \
        stop_ids, pad_token_id


def _check_attention_mask(attention_mask: torch.Tensor | None, input_ids: torch.Tensor,
                          pad_token_id: int | None) -> torch.Tensor:
    """The mask as a long tensor of 0/1, all ones when ``None``; checked to be left padding."""
    if attention_mask is None:
        starts_padded = input_ids[:, 0] == pad_token_id                                  # [batch]
        if pad_token_id is not None and bool(starts_padded.any()) and not bool(starts_padded.all()):
            warnings.warn(f"some prompts start with the pad id {pad_token_id} but no attention_mask was given, so "
                          f"the pads are read as text; pass the attention_mask of the left-padded batch",
                          stacklevel=4)
        return torch.ones_like(input_ids)
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a tensor of 0 and 1 shaped like input_ids, got "
                        f"{type(attention_mask).__name__}; build it with torch.tensor(mask)")
    if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (pad) and 1 (real token)")
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(f"attention_mask must have the shape of input_ids {list(input_ids.shape)}, "
                         f"got {list(attention_mask.shape)}")
    mask = attention_mask.to(device=input_ids.device, dtype=torch.long)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (pad) and 1 (real token)")
    if bool((mask.diff(dim=1) < 0).any()):
        raise ValueError("attention_mask shows right padding (a 0 after a 1); generation needs the pads on "
                         "the left so every row's last token is real: pad prompts on the left")
    if not bool(mask[:, -1].all()):
        row = int((mask[:, -1] == 0).nonzero()[0])
        raise ValueError(f"row {row} of the batch is all padding: an empty prompt cannot be continued")
    return mask
