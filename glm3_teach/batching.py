"""Continuous batching: one worker thread decodes every running request of a server together.

Taught in lesson 12 (部署 Serving). A model answering one request at a time makes the
eighth client wait for the seven before it. ``BatchedEngine`` keeps the requests that are
running as the rows of one batch instead:

1. a new request is **prefilled** (its prompt goes through the model once, filling its KV
   cache); requests arriving together are prefilled together, left-padded;
2. its cache is **left-padded** to the batch's length and joins the running batch between
   two decoding steps (nobody waits for the batch to drain);
3. every step feeds the last token of every row at once, ``[batch, 1]``, with the
   ``attention_mask`` marking each row's pads (positions come from the mask, so each row's
   real tokens still count from 0, as in ``glm3_teach.generate``);
4. each row stops on its own (a stop id, its ``max_new_tokens``, or a cancel when the
   client went away) and leaves the batch; pad columns no row needs any more are cut off.

On a small model one step costs nearly the same for 1 row as for 8 (the time goes to
per-layer overhead, not arithmetic), so 8 clients get several times the total tokens/s.
A request alone in the batch runs exactly the computation of ``glm3_teach.generate``, so
greedy decoding gives the same tokens.

Each row samples with its own settings and its own ``torch.Generator`` (seeded from the
request's ``seed``), so a seeded request draws the same tokens whoever shares the batch
(up to float differences that padding can cause in the logits).

The engine sees token ids only; the HTTP layer (``glm3_teach.serve``) turns text into ids
and ids back into text. ``Job.notify`` receives, from the worker thread,
``("token", id)`` for each new token (the stop token is not reported), then one
``("end", finish_reason, completion_tokens)`` with ``finish_reason`` ``"stop"``,
``"length"`` or ``"cancelled"``, or ``("error", message)``.

A P-Tuning v2 model (lesson 10) keeps its prefix slots at the front of every row's cache;
the pads go between the prefix and the tokens, where the mask puts them.

What it leaves out: paged KV memory (vLLM's PagedAttention), chunked prefill, prefix
caching, speculative decoding, and more than one worker or device.
"""

from __future__ import annotations

import collections
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from glm3_teach.generate import choose_next_token, process_logits

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class GenerationRequest:
    """What to generate: ``prompt_ids`` continued by up to ``max_new_tokens`` tokens.

    ``temperature == 0`` (or ``top_p == 0``) is greedy decoding; otherwise tokens are drawn
    after temperature and nucleus (``top_p``) filtering. ``seed`` makes the draws
    reproducible. ``stop_ids`` end the reply (the stop token counts as generated).
    """

    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop_ids: tuple[int, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_p == 0


class Job:
    """One submitted request. The worker calls ``notify(event)``; ``cancel()`` stops it at the next step."""

    def __init__(self, request: GenerationRequest, notify: Callable[[tuple], None]):
        self.request = request
        self._notify = notify
        self._cancelled = threading.Event()
        self.finished = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def notify(self, event: tuple) -> None:
        """Report ``event``; a receiver that is gone (its event loop closed) cancels the job."""
        if event[0] in ("end", "error"):
            self.finished.set()
        try:
            self._notify(event)
        except RuntimeError:
            self.cancel()


@dataclass
class _Row:
    """A running request: its job, its sampler and how many tokens it has made."""

    job: Job
    generator: torch.Generator
    generated: int = 0
    last_token: int = 0


@dataclass
class StepRecord:
    """One decoding step of the worker: when it ended, how many rows it decoded, its cache length."""

    time: float
    batch_size: int
    cache_len: int


@dataclass
class _Batch:
    """The running rows and their shared left-padded state."""

    rows: list[_Row] = field(default_factory=list)
    kv_cache: KVCache | None = None          # per layer (k, v), each [batch, groups, cache_len, head_dim]
    attention_mask: torch.Tensor | None = None  # [batch, cache_len], 1 = real token, 0 = pad


class BatchedEngine:
    """A generation worker that batches concurrent requests (continuous batching).

    ``submit(request, notify)`` queues a request and returns its ``Job`` at once; the worker
    thread admits waiting requests between decoding steps, up to ``max_batch_size`` rows.
    ``steps`` keeps the last ``history`` ``StepRecord``s (the lesson draws them).
    """

    def __init__(self, model: torch.nn.Module, max_batch_size: int = 16, history: int = 20_000):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model
        self.max_batch_size = max_batch_size
        self.seq_length = model.config.seq_length
        self.prefix_len = model.config.pre_seq_len or 0       # P-Tuning v2 slots at the front of every cache
        self.steps: collections.deque[StepRecord] = collections.deque(maxlen=history)
        self._waiting: queue.Queue[Job | None] = queue.Queue()
        self._batch = _Batch()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="glm3-generation-worker", daemon=True)
        self._thread.start()

    # --- the public side -----------------------------------------------------------------
    def submit(self, request: GenerationRequest, notify: Callable[[tuple], None]) -> Job:
        """Queue ``request``; ``notify`` will receive its events from the worker thread."""
        if self._closed:
            raise RuntimeError("the engine is closed")
        if not request.prompt_ids:
            raise ValueError("the prompt is empty")
        if len(request.prompt_ids) + request.max_new_tokens > self.seq_length:
            raise ValueError(f"prompt {len(request.prompt_ids)} + max_new_tokens {request.max_new_tokens} exceeds "
                             f"the model's seq_length {self.seq_length}")
        job = Job(request, notify)
        self._waiting.put(job)
        return job

    def pending(self) -> int:
        """Requests waiting to join plus requests running."""
        return self._waiting.qsize() + len(self._batch.rows)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker; running and waiting jobs end with ``"cancelled"``."""
        self._closed = True
        self._waiting.put(None)
        self._thread.join(timeout)

    # --- the worker ----------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                new_jobs = self._take_waiting(block=not self._batch.rows)
                if self._closed:
                    self._end_all(new_jobs)
                    return
                try:
                    if new_jobs:
                        self._admit(new_jobs)
                    if self._batch.rows:
                        self._decode_step()
                except Exception as error:  # one failure ends the rows it hit, never the worker
                    self._fail_all(new_jobs, error)

    def _take_waiting(self, block: bool) -> list[Job]:
        """Jobs waiting to join (blocking for the first one when nothing runs); cancelled ones are ended."""
        room = self.max_batch_size - len(self._batch.rows)
        jobs: list[Job] = []
        while len(jobs) < room:
            try:
                job = self._waiting.get(block=block and not jobs)
            except queue.Empty:
                break
            if job is None:
                self._closed = True
                break
            if job.cancelled:
                job.notify(("end", "cancelled", 0))
            elif job.request.max_new_tokens == 0:
                job.notify(("end", "length", 0))
            else:
                jobs.append(job)
        return jobs

    def _admit(self, jobs: list[Job]) -> None:
        """Prefill the new prompts together (left-padded) and add them to the running batch."""
        device = next(self.model.parameters()).device
        longest = max(len(job.request.prompt_ids) for job in jobs)
        input_ids = torch.full((len(jobs), longest), 0, dtype=torch.long)
        mask = torch.zeros(len(jobs), longest, dtype=torch.long)
        for i, job in enumerate(jobs):
            ids = job.request.prompt_ids
            input_ids[i, longest - len(ids):] = torch.tensor(ids)
            mask[i, longest - len(ids):] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)         # [new, longest]
        out = self.model(input_ids, attention_mask=mask, use_cache=True)
        rows = [_Row(job, _generator(job.request.seed)) for job in jobs]
        self._merge(rows, out.kv_cache, mask)
        self._advance(rows, out.logits[:, -1], first=len(self._batch.rows) - len(rows))

    def _merge(self, rows: list[_Row], kv_cache: KVCache, mask: torch.Tensor) -> None:
        """Left-pad the running batch or the new rows to a common length and stack them."""
        batch = self._batch
        if not batch.rows:
            batch.rows, batch.kv_cache, batch.attention_mask = rows, kv_cache, mask
            return
        length = max(batch.attention_mask.shape[1], mask.shape[1])
        old = [_left_pad_cache(k, v, length, self.prefix_len) for k, v in batch.kv_cache]
        new = [_left_pad_cache(k, v, length, self.prefix_len) for k, v in kv_cache]
        batch.kv_cache = [(torch.cat([ko, kn]), torch.cat([vo, vn])) for (ko, vo), (kn, vn) in zip(old, new)]
        batch.attention_mask = torch.cat([_left_pad(batch.attention_mask, length), _left_pad(mask, length)])
        batch.rows = batch.rows + rows

    def _decode_step(self) -> None:
        """Feed every row's last token, ``[batch, 1]``, and sample each row's next one."""
        batch = self._batch
        self._drop_cancelled()
        if not batch.rows:
            return
        device = batch.attention_mask.device
        step_ids = torch.tensor([[row.last_token] for row in batch.rows], device=device)          # [batch, 1]
        batch.attention_mask = F.pad(batch.attention_mask, (0, 1), value=1)                       # [batch, len + 1]
        out = self.model(step_ids, attention_mask=batch.attention_mask, kv_cache=batch.kv_cache, use_cache=True)
        batch.kv_cache = out.kv_cache
        self.steps.append(StepRecord(time.perf_counter(), len(batch.rows), batch.attention_mask.shape[1]))
        self._advance(list(batch.rows), out.logits[:, -1], first=0)

    def _advance(self, rows: list[_Row], logits: torch.Tensor, first: int) -> None:
        """Choose each row's next token from ``logits [len(rows), vocab]``, report it, drop finished rows."""
        done = []
        greedy_ids = logits.argmax(dim=-1).tolist()                 # one call for every greedy row
        for offset, row in enumerate(rows):
            token = greedy_ids[offset] if row.job.request.greedy else _sample(logits[offset:offset + 1], row)
            row.generated += 1
            request = row.job.request
            if token in request.stop_ids:
                row.job.notify(("end", "stop", row.generated))
                done.append(first + offset)
                continue
            row.job.notify(("token", token))
            row.last_token = token
            if row.generated >= request.max_new_tokens:
                row.job.notify(("end", "length", row.generated))
                done.append(first + offset)
        self._remove(done)

    def _drop_cancelled(self) -> None:
        cancelled = [i for i, row in enumerate(self._batch.rows) if row.job.cancelled]
        for i in cancelled:
            row = self._batch.rows[i]
            row.job.notify(("end", "cancelled", row.generated))
        self._remove(cancelled)

    def _remove(self, indices: list[int]) -> None:
        """Take rows out of the batch and cut the pad columns every remaining row has."""
        if not indices:
            return
        batch = self._batch
        gone = set(indices)
        keep = [i for i in range(len(batch.rows)) if i not in gone]
        batch.rows = [batch.rows[i] for i in keep]
        if not keep:
            batch.kv_cache, batch.attention_mask = None, None
            return
        index = torch.tensor(keep, device=batch.attention_mask.device)
        mask = batch.attention_mask.index_select(0, index)                       # [kept, len]
        start = int((mask.sum(dim=0) > 0).nonzero()[0])                          # first column someone uses
        batch.attention_mask = mask[:, start:]
        batch.kv_cache = [(_cut(k.index_select(0, index), self.prefix_len, start),
                           _cut(v.index_select(0, index), self.prefix_len, start)) for k, v in batch.kv_cache]

    def _fail_all(self, new_jobs: list[Job], error: Exception) -> None:
        message = f"generation failed: {type(error).__name__}: {error}"
        for job in {id(j): j for j in [row.job for row in self._batch.rows] + new_jobs}.values():
            if not job.finished.is_set():
                job.notify(("error", message))
        self._batch = _Batch()

    def _end_all(self, new_jobs: list[Job]) -> None:
        for job in [row.job for row in self._batch.rows] + new_jobs:
            job.notify(("end", "cancelled", 0))
        while not self._waiting.empty():
            job = self._waiting.get_nowait()
            if job is not None:
                job.notify(("end", "cancelled", 0))
        self._batch = _Batch()


def _generator(seed: int | None) -> torch.Generator:
    """A CPU generator for one request's draws: seeded by the request, else at random."""
    return torch.Generator().manual_seed(random.getrandbits(63) if seed is None else seed)


def _sample(logits: torch.Tensor, row: _Row) -> int:
    """One draw from a row's ``[1, vocab]`` logits after its temperature and top-p, with its own generator."""
    request = row.job.request
    no_seen = torch.zeros(1, 0, dtype=torch.long, device=logits.device)
    processed = process_logits(logits, no_seen, do_sample=True, temperature=request.temperature,
                               top_p=request.top_p if request.top_p < 1 else None)
    return int(choose_next_token(processed, do_sample=True, generator=row.generator))


def _left_pad(mask: torch.Tensor, length: int) -> torch.Tensor:
    """``[batch, len]`` -> ``[batch, length]`` with zeros (pads) in front."""
    return F.pad(mask, (length - mask.shape[1], 0), value=0)


def _left_pad_cache(k: torch.Tensor, v: torch.Tensor, length: int, prefix_len: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``[batch, groups, prefix_len + len, head_dim]`` keys and values with zeros to ``length`` tokens.

    The pads go right after the P-Tuning prefix (if any), in front of the tokens, where the
    attention mask (which covers the tokens only) says they are.
    """
    pad = length - (k.shape[2] - prefix_len)
    if pad == 0:
        return k, v
    zeros = k.new_zeros(k.shape[0], k.shape[1], pad, k.shape[3])
    return (torch.cat([k[:, :, :prefix_len], zeros, k[:, :, prefix_len:]], dim=2),
            torch.cat([v[:, :, :prefix_len], zeros, v[:, :, prefix_len:]], dim=2))


def _cut(x: torch.Tensor, prefix_len: int, start: int) -> torch.Tensor:
    """Drop the first ``start`` token columns of a cache tensor, keeping its prefix."""
    if start == 0:
        return x
    return torch.cat([x[:, :, :prefix_len], x[:, :, prefix_len + start:]], dim=2)

