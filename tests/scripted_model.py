"""A stand-in language model for tests of chat() and the evaluation harness: it "predicts" a script.

At every step of a generation it puts all its probability on the next id of ``script`` (after
the script ends, on ``filler``), whatever the prompt, so a test knows exactly what the model
will say. It follows the model interface ``glm3_teach.generate`` uses: ``forward(input_ids,
attention_mask, kv_cache, use_cache)`` returning ``.logits`` ``[batch, seq, vocab]`` and
``.kv_cache`` (here only a length counter), and ``.config.seq_length``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch


@dataclass
class _Output:
    logits: torch.Tensor
    kv_cache: list | None


class ScriptedModel(torch.nn.Module):
    def __init__(self, script, vocab_size: int, seq_length: int = 512, filler: int = 0):
        super().__init__()
        self.script, self.vocab_size, self.filler = list(script), vocab_size, filler
        self.config = SimpleNamespace(seq_length=seq_length, padded_vocab_size=vocab_size)
        self.weight = torch.nn.Parameter(torch.zeros(1))  # gives the model a device
        self.prompt_length = None

    def forward(self, input_ids, attention_mask=None, position_ids=None, kv_cache=None, use_cache=False, **_):
        batch, seq = input_ids.shape
        past = 0 if kv_cache is None else kv_cache[0][0].shape[2]
        if kv_cache is None:
            self.prompt_length = seq
        logits = torch.zeros(batch, seq, self.vocab_size)
        for t in range(seq):
            step = past + t + 1 - self.prompt_length      # how many ids this position's prediction follows
            if step >= 0:
                token = self.script[step] if step < len(self.script) else self.filler
                logits[:, t, token] = 50.0
        cache = [(torch.zeros(batch, 1, past + seq, 1), torch.zeros(batch, 1, past + seq, 1))] if use_cache else None
        return _Output(logits + 0 * self.weight, cache)
