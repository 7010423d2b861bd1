"""Supervised fine-tuning (SFT) on conversations: ChatGLM3's data format, loss masks and collator.

Taught in lesson 08 (对话微调 Chat fine-tuning). A training item is ChatGLM3's fine-tuning
format, ``{"tools"?: [schemas], "conversations": [message, ...]}`` (the course adds a ``"meta"``
key, ignored here). ``encode_conversation`` turns it into ``(input_ids, labels)`` exactly as
ChatGLM3's ``finetune_chatmodel_demo`` does:

- ``[gMASK] sop``, then ``build_single_message(role, metadata, content)`` per message; when the
  item has ``"tools"``, a system message ``TOOL_PROMPT + "\\n" + json.dumps(tools, indent=4,
  ensure_ascii=False)`` is inserted first;
- a ``tool`` message becomes an assistant message whose metadata is the tool's name and whose
  content is the fenced ``tool_call(...)`` (``tools.format_tool_call``), then an observation
  message holding the result (a string, or ``json.dumps(value, ensure_ascii=False)``);
- every token of a message gets its message's flag: 0 for system, user and observation, the
  message's ``loss`` (default True) for assistant and tool calls; the final ``eos`` gets 0;
- the **one-token shift**: ``labels[i] = ids[i] if flag[i - 1] else -100``. The flag says
  whether the prediction *made at* a token is trained, so the ``<|assistant|>`` token is never a
  target but the token right after a reply (the next ``<|user|>`` / ``<|observation|>`` or
  ``eos``) is: the model learns to end its turn.

``SFTDataset`` encodes a list of items once (dropping, and counting, samples that do not fit
``max_length`` or have no target), optionally mixes in blocks of pretraining text (trained on
every token) so the model keeps its stories, and carries ``collate`` (an ``SFTCollator``), which
``glm3_teach.train.train`` uses to batch it: right padding with the pad id, labels -100.

``python -m glm3_teach.sft --config configs/chat_stage1.toml`` fine-tunes the base checkpoint
through the same ``train()`` loop as pretraining and exports a chat checkpoint with a README;
``--config configs/chat_stage2.toml`` and then ``--config configs/chat.toml`` fine-tune it further,
each from the one before, into the shipped ``data/checkpoints/chat``.

What it leaves out: packing several conversations into one row, multi-GPU, and the PEFT
methods themselves (``glm3_teach.peft``, lesson 10, hooked in through ``method`` in the config).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from glm3_teach.errors import cli_main

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

IGNORE_INDEX = -100   # labels with this value carry no loss (PyTorch's cross_entropy default)
TOOL_PROMPT = "Answer the following questions as best as you can. You have access to the following tools:"
SFT_ROLES = ("system", "user", "assistant", "tool", "observation")
_KEYS = {"system": {"role", "content", "loss"}, "user": {"role", "content", "loss"},
         "assistant": {"role", "content", "loss"}, "observation": {"role", "content", "loss"},
         "tool": {"role", "name", "parameters", "observation", "loss", "content"}}


class SFTDataError(ValueError):
    """A training item that does not follow ChatGLM3's fine-tuning format."""


# --- checking an item ------------------------------------------------------------------------


def validate_item(item: Any, where: str = "item") -> None:
    """Raise ``SFTDataError`` naming the item and field if ``item`` is not a valid SFT item."""
    if not isinstance(item, dict):
        raise SFTDataError(f"{where} must be a dict with 'conversations', got {type(item).__name__}")
    conversations = item.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise SFTDataError(f"{where}['conversations'] must be a non-empty list of messages, got {conversations!r:.60}")
    if "tools" in item and not isinstance(item["tools"], list):
        raise SFTDataError(f"{where}['tools'] must be a list of tool schemas, got {type(item['tools']).__name__}")
    previous = None
    for index, message in enumerate(conversations):
        _validate_message(message, previous, f"{where}['conversations'][{index}]")
        previous = message["role"]


def _validate_message(message: Any, previous: str | None, where: str) -> None:
    if not isinstance(message, dict):
        raise SFTDataError(f"{where} must be a dict with 'role', got {type(message).__name__}")
    role = message.get("role")
    if role not in SFT_ROLES:
        raise SFTDataError(f"{where} has the unknown role {role!r}; use one of {', '.join(SFT_ROLES)}")
    unknown = set(message) - _KEYS[role]
    if unknown:
        raise SFTDataError(f"{where} ({role}) has unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS[role])}")
    if "loss" in message and not isinstance(message["loss"], bool):
        raise SFTDataError(f"{where}['loss'] must be true or false, got {message['loss']!r}")
    if role == "tool":
        _validate_tool(message, where)
    elif not isinstance(message.get("content"), str):
        raise SFTDataError(f"{where}['content'] ({role}) must be a str, got {type(message.get('content')).__name__}")
    if role == "observation" and previous not in ("assistant", "tool"):
        raise SFTDataError(f"{where} is an observation but follows {previous or 'nothing'}; an observation must "
                           f"come right after the assistant's tool call (or use a 'tool' message, which holds both)")


def _validate_tool(message: dict, where: str) -> None:
    if not isinstance(message.get("name"), str) or not message.get("name"):
        raise SFTDataError(f"{where} is a tool call without a 'name' (the tool's name, a non-empty str)")
    if not isinstance(message.get("parameters"), dict):
        raise SFTDataError(f"{where}['parameters'] must be a dict of the call's arguments, "
                           f"got {type(message.get('parameters')).__name__}")
    if "observation" not in message:
        raise SFTDataError(f"{where} is a tool call without an 'observation' (the tool's result)")
    try:
        json.dumps(message["observation"], ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise SFTDataError(f"{where}['observation'] must be a str or JSON data: {error}") from None


# --- encoding ----------------------------------------------------------------------------------


def tools_system_content(tools: list) -> str:
    """The system message ChatGLM3's fine-tuning inserts for an item with ``tools``."""
    return TOOL_PROMPT + "\n" + json.dumps(tools, indent=4, ensure_ascii=False)


def message_segments(item: dict) -> list[tuple[str, str, str, bool]]:
    """``(role, metadata, content, trained)`` per message the model reads, tools message and observations included."""
    segments = []
    if "tools" in item:
        segments.append(("system", "", tools_system_content(item["tools"]), False))
    for message in item["conversations"]:
        role, trained = message["role"], message.get("loss", True)
        if role == "tool":
            from glm3_teach.tools import format_tool_call

            observation = message["observation"]
            if not isinstance(observation, str):
                observation = json.dumps(observation, ensure_ascii=False)
            segments.append(("assistant", message["name"], format_tool_call(message["parameters"]), trained))
            segments.append(("observation", "", observation, False))
        else:
            segments.append((role, "", message["content"], trained and role not in ("system", "user")))
    return segments


def shift_labels(ids: Sequence[int], flags: Sequence[bool]) -> list[int]:
    """``labels[i] = ids[i] if flags[i - 1] else -100``; ``labels[0]`` is always -100."""
    if len(ids) != len(flags):
        raise ValueError(f"ids and flags differ in length: {len(ids)} vs {len(flags)}")
    return [IGNORE_INDEX] + [token if flag else IGNORE_INDEX for token, flag in zip(ids[1:], flags[:-1])]


def encode_with_flags(item: dict, tokenizer: Any, where: str = "item") -> tuple[list[int], list[bool]]:
    """The ids of a conversation and, per id, whether the prediction made at it is trained."""
    validate_item(item, where)
    ids = [tokenizer.special_id("[gMASK]"), tokenizer.special_id("sop")]
    flags = [False, False]
    for role, metadata, content, trained in message_segments(item):
        message = tokenizer.build_single_message(role, metadata, content)
        ids += message
        flags += [trained] * len(message)
    return ids + [tokenizer.eos_token_id], flags + [False]


def encode_conversation(item: dict, tokenizer: Any, where: str = "item") -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one SFT item by ChatGLM3's rules (see the module docstring).

    >>> from glm3_teach import load_tokenizer
    >>> ids, labels = encode_conversation({"conversations": [{"role": "user", "content": "你好"},
    ...     {"role": "assistant", "content": "您好"}]}, load_tokenizer())
    >>> [label != -100 for label in labels][-4:]  # the reply's last tokens and eos are targets
    [True, True, True, True]
    """
    ids, flags = encode_with_flags(item, tokenizer, where)
    return ids, shift_labels(ids, flags)


# --- batches ---------------------------------------------------------------------------------


class SFTCollator:
    """Pad a list of ``{"input_ids", "labels"}`` samples on the right into one batch.

    ``input_ids`` pads with ``pad_id``, ``labels`` with -100, to the longest sample.
    It never cuts a sample: one longer than ``max_length`` is dropped and counted in
    ``dropped`` (cutting it would lose its stop target, the eos). It never returns a batch
    without a single target (its loss would be 0/0 = NaN): it raises instead.

    ``share_prefix`` > 0: when every sample starts with the same ids for at least that many
    tokens, none of them (nor the next one) a target, as the 1,040-token tools system message of
    every tool dialogue, the batch carries them once as ``prefix_ids`` ``[1, prefix]`` and only
    the rest per row; ``train.batch_loss`` runs the prefix once and shares its KV cache.
    """

    def __init__(self, pad_id: int, max_length: int, share_prefix: int = 0):
        self.pad_id, self.max_length, self.dropped, self.share_prefix = pad_id, max_length, 0, share_prefix

    def __call__(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        kept = [s for s in samples if len(s["input_ids"]) <= self.max_length]
        self.dropped += len(samples) - len(kept)
        if not kept:
            raise ValueError(f"no sample of this batch fits max_length={self.max_length}; "
                             f"filter samples with SFTDataset (it drops and counts them) or raise max_length")
        length = max(len(s["input_ids"]) for s in kept)
        input_ids = torch.full((len(kept), length), self.pad_id, dtype=torch.long)      # [batch, length]
        labels = torch.full((len(kept), length), IGNORE_INDEX, dtype=torch.long)        # [batch, length]
        for row, sample in enumerate(kept):
            n = len(sample["input_ids"])
            input_ids[row, :n] = torch.as_tensor(sample["input_ids"])
            labels[row, :n] = torch.as_tensor(sample["labels"])
        if not bool((labels != IGNORE_INDEX).any()):
            raise ValueError("every label of this batch is -100, so its loss would be NaN; "
                             "SFTDataset drops samples without targets")
        cut = shared_prefix_length(kept) if self.share_prefix and len(kept) > 1 else 0
        if cut >= self.share_prefix > 0:
            return {"prefix_ids": input_ids[:1, :cut], "input_ids": input_ids[:, cut:], "labels": labels[:, cut:]}
        return {"input_ids": input_ids, "labels": labels}


def shared_prefix_length(samples: Sequence[dict]) -> int:
    """How many leading ids all ``samples`` share such that no label up to one past them is a target."""
    first = samples[0]["input_ids"]
    limit = min(len(s["input_ids"]) for s in samples) - 2           # leave every row at least two ids
    for s in samples:
        target = next((j for j, label in enumerate(s["labels"]) if label != IGNORE_INDEX), len(s["labels"]))
        limit = min(limit, target - 1)                              # labels[: cut + 1] must all be -100
    cut = 0
    while cut < limit and all(s["input_ids"][cut] == first[cut] for s in samples):
        cut += 1
    return max(0, cut)


def text_blocks(documents: Sequence[str], tokenizer: Any, block_size: int) -> list[list[int]]:
    """Pretraining text packed as in lesson 06 (``</s>`` after each document) and cut into blocks."""
    stream = [token for doc in documents for token in (*tokenizer.encode_ordinary(doc), tokenizer.eos_token_id)]
    return [stream[start:start + block_size] for start in range(0, len(stream) - block_size + 1, block_size)]


def block_labels(ids: Sequence[int], targets: Sequence[bool]) -> list[int]:
    """Labels of a copy or recall block: ``ids[i]`` where ``targets[i]``, never the first token."""
    return [IGNORE_INDEX] + [token if keep else IGNORE_INDEX for token, keep in zip(ids[1:], targets[1:])]


class SFTDataset(torch.utils.data.Dataset):
    """Encoded SFT samples ``{"input_ids", "labels"}`` (lists of ints), filtered once.

    ``items``: SFT items; ``text_blocks``: optional lists of ids of pretraining text, trained
    on every token (``labels = ids`` shifted, so mixing them in keeps the base model's stories).
    ``prefixed_blocks``: ``(prefix ids, blocks)``: more text blocks, each read after the same
    untrained prefix (the tools system message: the model keeps reading text 1,044 tokens in).
    ``copy_blocks``: ``(ids, targets)`` of synthetic lines, a random string and the same string
    again (``glm3_teach.induction``), trained on the second strings: they teach the model to
    copy from its context; ``prefixed_copy_blocks`` and ``prefixed_recall_blocks`` (ids to find
    and write after a cue, ``induction.recall_blocks``) are read after ``prefixed_blocks``' prefix.
    Samples longer than ``max_length`` or without a target are dropped and counted in
    ``dropped`` (a Counter: ``"too_long"``, ``"no_target"``). ``collate`` batches the samples.
    """

    def __init__(self, items: Sequence[dict], tokenizer: Any, max_length: int,
                 text_blocks: Sequence[Sequence[int]] = (), name: str = "SFT set", share_prefix: int = 0,
                 prefixed_blocks: tuple[Sequence[int], Sequence[Sequence[int]]] = ((), ()),
                 copy_blocks: Sequence[tuple[Sequence[int], Sequence[bool]]] = (),
                 prefixed_copy_blocks: Sequence[tuple[Sequence[int], Sequence[bool]]] = (),
                 prefixed_recall_blocks: Sequence[tuple[Sequence[int], Sequence[bool]]] = ()):
        self.samples, self.dropped, self.name, self.max_length = [], Counter(), name, max_length
        self.kinds: list[str] = []
        for index, item in enumerate(items):
            ids, labels = encode_conversation(item, tokenizer, where=f"{name} item {index}")
            self._add(ids, labels, "dialogue")
        for block in text_blocks:
            self._add(list(block), [IGNORE_INDEX] + list(block[1:]), "text")
        prefix, blocks = prefixed_blocks
        for block in blocks:   # the block's first token is not a target, so the prefix stays shareable
            self._add([*prefix, *block], [IGNORE_INDEX] * (len(prefix) + 1) + list(block[1:]), "tools_text")
        for ids, targets in copy_blocks:
            self._add(list(ids), block_labels(ids, targets), "copy")
        for kind, blocks in (("tools_copy", prefixed_copy_blocks), ("tools_recall", prefixed_recall_blocks)):
            for ids, targets in blocks:   # after the same prefix as prefixed_blocks, which is never a target
                self._add([*prefix, *ids], [IGNORE_INDEX] * len(prefix) + block_labels(ids, targets), kind)
        if not self.samples:
            raise ValueError(f"the {name} has no usable sample (dropped: {dict(self.dropped)}); "
                             f"raise max_length={max_length} or check the data")
        self.collate = SFTCollator(tokenizer.pad_token_id, max_length, share_prefix)
        targets = [t for s in self.samples for t in s["labels"] if t != IGNORE_INDEX]
        self.num_targets = len(targets)
        self.characters_per_token = len(tokenizer.decode(targets)) / max(1, self.num_targets)

    def _add(self, ids: list[int], labels: list[int], kind: str) -> None:
        if len(ids) > self.max_length:
            self.dropped["too_long"] += 1
        elif all(label == IGNORE_INDEX for label in labels):
            self.dropped["no_target"] += 1
        else:
            self.samples.append({"input_ids": ids, "labels": labels})
            self.kinds.append(kind)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]

    def lengths(self) -> list[int]:
        return [len(s["input_ids"]) for s in self.samples]


class LengthGroupedBatches(torch.utils.data.Dataset):
    """Samples of an ``SFTDataset`` grouped into batches of similar length; each item is one batch.

    Padding a 60-token dialogue to the 1,300 tokens of a tool dialogue would waste 95% of the
    compute, so samples are sorted by length and cut into groups of at most ``max_tokens``
    padded tokens (and ``max_batch`` samples). Samples whose first ``share_prefix`` ids recur in
    at least ``max_batch`` samples (the tool dialogues, which all open with the tools system
    message) are grouped among themselves, and their shared prefix counts once. ``train()``
    then draws whole groups (``batch_size = 1``) in its seeded order and ``collate`` pads the
    group: the training loop stays the same.
    """

    def __init__(self, dataset: SFTDataset, max_tokens: int, max_batch: int = 64, share_prefix: int = 0):
        self.dataset, self.groups = dataset, []
        keys = [tuple(dataset[i]["input_ids"][:share_prefix]) if share_prefix else () for i in range(len(dataset))]
        counts = Counter(keys)
        families: dict[tuple, list[int]] = {}
        for index, key in enumerate(keys):
            families.setdefault(key if counts[key] >= max_batch else (), []).append(index)
        for key, members in sorted(families.items()):
            prefix = shared_prefix_length([dataset[i] for i in members]) if key else 0
            self._cut(sorted(members, key=lambda i: (len(dataset[i]["input_ids"]), i)), prefix, max_tokens, max_batch)
        self.characters_per_token, self.num_targets = dataset.characters_per_token, dataset.num_targets

    def _cut(self, order: list[int], prefix: int, max_tokens: int, max_batch: int) -> None:
        group: list[int] = []
        for index in order:
            length = len(self.dataset[index]["input_ids"]) - prefix      # sorted: the longest of the group so far
            if group and (prefix + (len(group) + 1) * length > max_tokens or len(group) == max_batch):
                self.groups.append(group)
                group = []
            group.append(index)
        if group:
            self.groups.append(group)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> list[dict]:
        return [self.dataset[i] for i in self.groups[index]]

    def collate(self, groups: Sequence[list[dict]]) -> dict[str, torch.Tensor]:
        return self.dataset.collate([sample for group in groups for sample in group])


# --- the recipe and the command line ------------------------------------------------------------


@dataclass
class SFTConfig:
    """The ``[sft]`` table of a chat config; every other key is a ``glm3_teach.train.TrainConfig`` key."""

    init_from: str = "data/checkpoints/base"   # the checkpoint to fine-tune
    data: str = "data/sft"                     # folder with train.jsonl, val.jsonl (dialogues.load_sft)
    max_length: int = 1536                     # longest sample kept (longer ones are dropped and counted)
    max_tokens: int = 4096                     # padded tokens per length-grouped batch
    max_batch: int = 32                        # samples per batch at most
    max_items: int | None = None               # plain (tool-free) training dialogues kept, evenly spaced; None = all
    tool_items: int | None = None              # tool dialogues kept, evenly spaced; None = all
    tool_repeats: int = 1                      # times each kept tool dialogue is in an epoch (upsampling)
    fresh_tool_dialogues: int = 0              # more tool dialogues drawn afresh (dialogues.fresh_tool_items; 0 = none)
    fresh_tool_weights: dict[str, float] = field(default_factory=dict)  # their shares: intent -> x TRAIN_COUNTS
    more_tool_phrasings: bool | int = False    # their questions also from dialogues.MORE_TOOL_SETS (train only):
                                               # true = MORE_TOOL_TEMPLATES, 2 = that and SECOND_TOOL_TEMPLATES
    story_blocks: int = 0                      # blocks of pretraining text mixed in (0 = none)
    story_block_size: int = 128                # tokens per mixed-in block
    tools_story_blocks: int = 0                # more blocks, each read after the tools system message (0 = none)
    copy_blocks: int = 0                       # synthetic blocks that teach copying (glm3_teach.induction; 0 = none)
    copy_block_size: int = 256                 # tokens per copy block
    tools_copy_blocks: int = 0                 # more copy blocks, each read after the tools system message
    tools_recall_blocks: int = 0               # id-recall blocks (induction.recall_blocks) after the tools message
    recall_cues: list[str] = field(default_factory=lambda: ["order_id='{id}'"])  # what a recall line ends with
    seq_length: int | None = None              # raise the model's seq_length (RoPE table) for long dialogues
    story_baseline: str | None = None          # measure forgetting against this checkpoint (None = init_from)
    val_items: int = 400                       # validation items for the loss during training
    share_prefix: int = 64                     # run a shared prefix of >= this many ids once per batch (0 = never)
    method: str = "full"                       # "full" | "lora" | "ptuning": the PEFT hook (glm3_teach.peft)
    lora: dict[str, Any] = field(default_factory=dict)       # keyword arguments of peft's LoRA (method "lora")
    ptuning: dict[str, Any] = field(default_factory=dict)    # keyword arguments of peft's prefix (method "ptuning")

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora", "ptuning"):
            raise ValueError(f"[sft] method must be 'full', 'lora' or 'ptuning', got {self.method!r}")
        for name in ("max_length", "max_tokens", "max_batch", "story_block_size", "copy_block_size", "val_items",
                     "tool_repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"[sft] {name} must be a positive int, got {value!r}")
        for name in ("story_blocks", "tools_story_blocks", "copy_blocks", "tools_copy_blocks", "tools_recall_blocks",
                     "fresh_tool_dialogues"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"[sft] {name} must be an int >= 0 (0 = none), got {value!r}")
        from glm3_teach.dialogues.writer import check_fresh_tool_weights
        try:
            check_fresh_tool_weights(self.fresh_tool_weights)
        except ValueError as error:
            raise ValueError(f"[sft] {error}") from None
        if self.fresh_tool_weights and not self.fresh_tool_dialogues:
            raise ValueError("[sft] fresh_tool_weights weighs the fresh tool dialogues, but fresh_tool_dialogues is 0; "
                             "set fresh_tool_dialogues (e.g. 20000) or drop fresh_tool_weights")
        if type(self.more_tool_phrasings) not in (bool, int) or self.more_tool_phrasings not in (0, 1, 2):
            raise ValueError(f"[sft] more_tool_phrasings must be true, false or 2 (2: MORE_TOOL_TEMPLATES and "
                             f"SECOND_TOOL_TEMPLATES), got {self.more_tool_phrasings!r}")
        if self.more_tool_phrasings and not self.fresh_tool_dialogues:
            raise ValueError("[sft] more_tool_phrasings words the fresh tool dialogues, but fresh_tool_dialogues is 0; "
                             "set fresh_tool_dialogues (e.g. 20000) or drop more_tool_phrasings")
        if self.story_baseline is not None and not isinstance(self.story_baseline, str):
            raise ValueError(f"[sft] story_baseline must be a checkpoint folder (a string), got {self.story_baseline!r}")
        cues = self.recall_cues
        if not isinstance(cues, list) or not cues or not all(isinstance(c, str) and c.count("{id}") == 1 for c in cues):
            raise ValueError(f"[sft] recall_cues must be a non-empty list of strings, each with '{{id}}' once "
                             f"(e.g. [\"order_id='{{id}}'\", \"订单{{id}}\"]), got {cues!r}")


def load_config(path: str | Path) -> tuple[Any, SFTConfig]:
    """``(TrainConfig, SFTConfig)`` from a TOML file whose ``[sft]`` table holds the SFT keys."""
    from glm3_teach.train import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from None
    sft_values = values.pop("sft", {})
    known = set(SFTConfig.__dataclass_fields__)
    unknown = sorted(set(sft_values) - known)
    if unknown:
        raise ValueError(f"{path} [sft] has unknown keys {unknown}; known: {', '.join(sorted(known))}")
    return TrainConfig.from_dict(values, source=str(path)), SFTConfig(**sft_values)


def prepare_model(model: torch.nn.Module, sft: SFTConfig) -> torch.nn.Module:
    """The PEFT hook: ``full`` trains every weight; ``lora`` / ``ptuning`` hand over to ``glm3_teach.peft``."""
    if sft.method == "full":
        return model
    from glm3_teach import peft  # lesson 10

    if sft.method == "lora":
        peft.apply_lora(model, **sft.lora)      # returns the trainable count; the model changes in place
    else:
        peft.apply_ptuning(model, **sft.ptuning)
    return model


def export_model(model: torch.nn.Module, sft: SFTConfig, folder: str | Path, tokenizer: Any, dtype: str) -> None:
    """Write the fine-tuned model in the HF layout (``peft.export`` for adapters)."""
    from glm3_teach.checkpoint import save_pretrained

    if sft.method == "full":
        save_pretrained(model, folder, tokenizer=tokenizer, dtype=dtype)
    else:
        from glm3_teach import peft

        peft.export(model, folder, tokenizer=tokenizer, dtype=dtype, method=sft.method,
                    base_model_name_or_path=str(sft.init_from))


def load_base(sft: SFTConfig, device: torch.device | str | None = None) -> torch.nn.Module:
    """The checkpoint to fine-tune in fp32, with ``seq_length`` raised when the recipe asks."""
    from glm3_teach.checkpoint import load_pretrained

    model = load_pretrained(sft.init_from, dtype=torch.float32, device=device)
    if sft.seq_length is not None and sft.seq_length > model.config.seq_length:
        model.config.seq_length = sft.seq_length          # RoPE tables are built for any length
    return model


def story_mix(tokenizer: Any, sft: SFTConfig, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """``(plain, after_tools)``: ``sft.story_blocks`` and ``sft.tools_story_blocks`` distinct blocks of
    the pretraining training split, drawn by one seeded permutation (the plain ones first)."""
    wanted = sft.story_blocks + sft.tools_story_blocks
    if wanted == 0:
        return [], []
    from glm3_teach.data import load_documents

    blocks = text_blocks(load_documents("train"), tokenizer, sft.story_block_size)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(blocks), generator=generator)[:wanted].tolist()
    plain = sft.story_blocks
    return [blocks[i] for i in sorted(chosen[:plain])], [blocks[i] for i in sorted(chosen[plain:])]


def tools_prefix_ids(tools: list, tokenizer: Any) -> list[int]:
    """The ids every tool dialogue opens with: ``[gMASK] sop`` and the tools system message."""
    return [tokenizer.special_id("[gMASK]"), tokenizer.special_id("sop"),
            *tokenizer.build_single_message("system", "", tools_system_content(tools))]


def evenly_spaced(items: Sequence[Any], count: int | None) -> list[Any]:
    """``count`` items spread evenly over ``items`` (every intent and language keeps its share); all for None."""
    if count is None or count >= len(items):
        return list(items)
    return [items[int(k * len(items) / count)] for k in range(count)]


def build_data(tokenizer: Any, config: Any, sft: SFTConfig) -> Any:
    """The ``TrainData`` of an SFT run: length-grouped training batches and validation batches."""
    from glm3_teach.dialogues import conversation_key, fresh_tool_items, load_sft
    from glm3_teach.induction import copy_blocks, recall_blocks
    from glm3_teach.train import TrainData

    items = load_sft("train", sft.data)
    val_items = load_sft("val", sft.data)
    fresh = []
    if sft.fresh_tool_dialogues:   # never one of the data's own train or val conversations (held out: other templates)
        known = {conversation_key(i): None for i in items + val_items}
        fresh = fresh_tool_items(sft.fresh_tool_dialogues, config.seed, known, sft.fresh_tool_weights,
                                 sft.more_tool_phrasings)
    items = (evenly_spaced([i for i in items if "tools" not in i], sft.max_items)
             + evenly_spaced([i for i in items if "tools" in i], sft.tool_items) * sft.tool_repeats + fresh)
    step = max(1, len(val_items) // sft.val_items)
    plain_blocks, tools_blocks = story_mix(tokenizer, sft, config.seed)
    tools = next((item["tools"] for item in items if "tools" in item), None)
    for name in ("tools_story_blocks", "tools_copy_blocks", "tools_recall_blocks"):
        if getattr(sft, name) and tools is None:
            raise ValueError(f"[sft] {name} = {getattr(sft, name)} needs tool dialogues in the training "
                             f"data ({sft.data}); set it to 0 or keep tool_items above 0")
    after_tools = tools_blocks or sft.tools_copy_blocks or sft.tools_recall_blocks
    prefix = tools_prefix_ids(tools, tokenizer) if after_tools else []
    copies = copy_blocks(tokenizer, sft.copy_blocks + sft.tools_copy_blocks, sft.copy_block_size, config.seed)
    recalls = recall_blocks(tokenizer, sft.tools_recall_blocks, sft.copy_block_size, config.seed,
                            tuple(sft.recall_cues))
    train_set = SFTDataset(items, tokenizer, sft.max_length, plain_blocks, "training set", sft.share_prefix,
                           prefixed_blocks=(prefix, tools_blocks), copy_blocks=copies[:sft.copy_blocks],
                           prefixed_copy_blocks=copies[sft.copy_blocks:], prefixed_recall_blocks=recalls)
    val_set = SFTDataset(val_items[::step][:sft.val_items], tokenizer, sft.max_length, name="validation set",
                         share_prefix=sft.share_prefix)
    return TrainData(LengthGroupedBatches(train_set, sft.max_tokens, sft.max_batch, sft.share_prefix),
                     LengthGroupedBatches(val_set, sft.max_tokens, sft.max_batch, sft.share_prefix))


SAMPLE_QUESTIONS = ("你好", "乌龙茶多少钱？", "你们几点关门？", "What is the price of green tea?",
                    "Where is the shop?", "Who are you?")


def story_bits(model: torch.nn.Module, tokenizer: Any, max_documents: int = 100) -> dict[str, float]:
    """Bits per byte of ``max_documents`` validation stories in each language: ``{"zh": ..., "en": ...}``."""
    from glm3_teach.evaluate import story_bits_per_byte

    return {lang: story_bits_per_byte(model, tokenizer, lang, max_documents) for lang in ("zh", "en")}


def story_baseline_model(model: torch.nn.Module, sft: SFTConfig) -> torch.nn.Module:
    """The model the record's "before" stories are measured on: ``[sft] story_baseline`` when set (a run
    that continues another fine-tune measures forgetting from where the chain began), else ``model``."""
    return load_base(SFTConfig(init_from=sft.story_baseline)) if sft.story_baseline else model


def story_record(before: dict[str, float], after: dict[str, float], baseline: str = "") -> dict[str, Any]:
    """The record's forgetting entry: per language, and the mean of the two languages."""
    return {"before": sum(before.values()) / len(before), "after": sum(after.values()) / len(after),
            "per_language": {lang: {"before": before[lang], "after": after[lang]} for lang in before},
            "how": "glm3_teach.evaluate.story_bits_per_byte(model, tokenizer, lang, 100), mean of zh and en",
            **({"baseline": baseline} if baseline else {})}


def run(config_path: str | Path, note: str = "", command: str = "") -> dict[str, Any]:
    """Fine-tune as ``config_path`` says, export the model, and return the run's record."""
    from glm3_teach.device import seed_everything
    from glm3_teach.distributed import world_from_env
    from glm3_teach.tokenizer import load_tokenizer
    from glm3_teach.train import _machine, evaluate, train

    config, sft = load_config(config_path)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    started, started_cpu = time.time(), time.process_time()
    tokenizer = load_tokenizer(sft.init_from)
    seed_everything(config.seed)
    model = prepare_model(load_base(sft), sft)
    data = build_data(tokenizer, config, sft)
    machine = _machine(next(model.parameters()).device)
    kinds = Counter(data.train.dataset.kinds)
    print(f"{len(data.train.dataset):,} training samples ({kinds['text']} story blocks, "
          f"{kinds['tools_text']} after the tools message, {kinds['copy']} copy blocks, "
          f"{kinds['tools_copy']} copy blocks and {kinds['tools_recall']} recall blocks after the tools message) in "
          f"{len(data.train):,} batches, {data.train.num_targets:,} targets; dropped {dict(data.train.dataset.dropped)}; "
          f"{len(data.val.dataset):,} validation samples", flush=True)
    story_before = story_bits(story_baseline_model(model, sft), tokenizer)
    history = train(model, data, config, verbose=True)
    if not world_from_env().is_main:   # under torchrun only rank 0 exports, evaluates and writes the record
        return {"history": history}
    if config.export_dir:
        export_model(model, sft, config.export_dir, tokenizer, config.save_dtype)
        model = load_base(SFTConfig(init_from=config.export_dir)) if sft.method == "full" else model
    final = evaluate(model, data.val, 0, 1)
    story_after = story_bits(model, tokenizer)
    samples = sample_replies(model, tokenizer)
    if hasattr(os, "getloadavg"):
        machine["load_average_at_end"] = list(os.getloadavg())
    record = {"command": command, "config_file": str(config_path), "config": config.to_dict(),
              "sft": sft.__dict__, "model_config": model.config.to_dict(), "machine": machine, "note": note,
              "wall_seconds": round(time.time() - started, 1), "train_seconds": round(history["train_seconds"], 1),
              "cpu_seconds": round(time.process_time() - started_cpu, 1),
              "train_samples": len(data.train.dataset), "story_blocks": kinds["text"],
              "tools_story_blocks": kinds["tools_text"], "copy_blocks": kinds["copy"],
              "tools_copy_blocks": kinds["tools_copy"], "tools_recall_blocks": kinds["tools_recall"],
              "train_batches": len(data.train), "train_targets": data.train.num_targets,
              "dropped": dict(data.train.dataset.dropped), "val_samples": len(data.val.dataset),
              "epochs": config.max_steps * config.batch_size / len(data.train),
              "final_train_loss": history["loss"][-1] if history["loss"] else None, "final_val": final,
              "story_bits_per_byte": story_record(story_before, story_after, sft.story_baseline or sft.init_from),
              "samples": samples,
              "history": history}
    if config.export_dir:
        write_record(record, Path(config.export_dir), history)
    return record


def sample_replies(model: torch.nn.Module, tokenizer: Any, questions: Sequence[str] = SAMPLE_QUESTIONS) -> dict:
    """Greedy replies to a few questions, for the record."""
    from glm3_teach.chat import chat

    return {q: chat(model, tokenizer, q, do_sample=False, max_new_tokens=80)[0] for q in questions}


def write_record(record: dict[str, Any], export: Path, history: dict[str, Any]) -> None:
    """``training.json``, ``loss_curve.png`` and the README of the exported chat checkpoint."""
    from glm3_teach.train import plot_history

    (export / "training.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_history(history, export / "loss_curve.png", title=f"SFT: {record['command']}")
    (export / "README.md").write_text(readme_text(record), encoding="utf-8")


def readme_text(record: dict[str, Any]) -> str:
    """The checkpoint's README: what it is, how it was made, its numbers."""
    sft, config, machine = record["sft"], record["config"], record["machine"]
    before, after = record["story_bits_per_byte"]["before"], record["story_bits_per_byte"]["after"]
    samples = "\n".join(f"| {q} | {a.replace('|', '/').replace(chr(10), ' ')} |" for q, a in record["samples"].items())
    evaluation = record.get("evaluation_markdown", "(run `python -m glm3_teach.evaluate` for the full table)")
    return f"""# The chat checkpoint (对话模型)

The checkpoint `{sft['init_from']}` (its own README says how it was made) fine-tuned on the course's tea-shop conversations
(`{sft['data']}`, ChatGLM3's fine-tuning format, loss on assistant turns only, one-token-shifted
labels) by `glm3_teach/sft.py` through the same `train()` loop as pretraining. Lesson 08 explains it.
Hugging Face layout: `config.json`, `model.safetensors` ({config['save_dtype']}), the course tokenizer,
`training.json` (command, config, machine, loss curve, numbers) and `loss_curve.png`.

```python
import torch
from glm3_teach import load_pretrained, load_tokenizer
from glm3_teach.chat import chat
model = load_pretrained("{config.get('export_dir', 'data/checkpoints/chat')}", dtype=torch.float32)
tokenizer = load_tokenizer("{config.get('export_dir', 'data/checkpoints/chat')}")
print(chat(model, tokenizer, "乌龙茶多少钱？", do_sample=False)[0])
```

## How it was made

```bash
{record['command']}
```

- recipe: `{record.get('recipe', record['config_file'])}` (its comments say why each number was chosen)
- {record['train_samples']:,} training samples ({record['story_blocks']} of them blocks of pretraining
  stories, trained on every token, against forgetting) in {record['train_batches']:,} length-grouped
  batches; {record['train_targets']:,} target tokens per epoch; dropped: {record['dropped'] or 'none'}
{_repeats(sft)}{_synthetic_blocks(record)}- {config['max_steps']} steps ({record['epochs']:.2f} epochs), AdamW lr {config['lr']}, warmup {config['warmup_steps']},
  cosine to {config['min_lr_ratio']} x lr, weight decay {config['weight_decay']}, seed {config['seed']},
  method `{sft['method']}`, seq_length {record['model_config']['seq_length']}
- wall time {record['wall_seconds'] / 60:.1f} min ({record['train_seconds'] / 60:.1f} min of training steps;
  {record.get('cpu_seconds', float('nan')) / 60:.1f} min of CPU time, what a quiet core would need) on
  {machine['cpu_count']} CPU cores with {machine['torch_threads']} PyTorch thread(s), PyTorch {machine['torch']},
  Python {machine['python']}; load average {machine['load_average_at_start'][0]:.1f} at the start and
  {machine.get('load_average_at_end', [float('nan')])[0]:.1f} at the end ({record['note'] or 'no note'})

## Numbers

| | value |
| --- | ---: |
| final training loss (last step) | {record['final_train_loss']:.3f} nats/token |
| validation loss (assistant tokens of {record['val_samples']} val dialogues) | {record['final_val']['loss']:.3f} nats/token |
| story bits per byte (validation stories), `{record['story_bits_per_byte'].get('baseline', sft['init_from'])}` | {before:.4f} |
| story bits per byte, this model | {after:.4f} ({(after / before - 1) * 100:+.1f}%) |
{_per_language_rows(record['story_bits_per_byte'], record['story_bits_per_byte'].get('baseline', sft['init_from']))}
{evaluation}

{_known_problems(record)}Greedy replies (`chat(..., do_sample=False)`):

| question | reply |
| --- | --- |
{samples}
"""


def _repeats(sft: dict[str, Any]) -> str:
    """The README lines on upsampled and freshly drawn tool dialogues, empty when there are neither."""
    repeats, fresh, weights = sft.get("tool_repeats", 1), sft.get("fresh_tool_dialogues", 0), sft.get("fresh_tool_weights")
    lines = []
    if repeats > 1:
        lines.append(f"- each tool dialogue {repeats} times an epoch (`tool_repeats`), the rest once\n")
    if fresh:
        weighted = ""
        if weights:
            weighted = ", intents weighted " + ", ".join(f"{k} x{w:g}" for k, w in weights.items()) + " (`fresh_tool_weights`)"
        sets = ["`MORE_TOOL_TEMPLATES`", "`SECOND_TOOL_TEMPLATES`"][:int(sft.get("more_tool_phrasings", 0))]
        more = f" and the training-only {' and '.join(sets)} (`more_tool_phrasings`)" if sets else ""
        lines.append(f"- {fresh:,} more tool dialogues drawn afresh from the training templates{more}, with new ids and baskets "
                     f"(`fresh_tool_dialogues`, `glm3_teach.dialogues.fresh_tool_items`; not stored){weighted}\n")
    return "".join(lines)


def _synthetic_blocks(record: dict[str, Any]) -> str:
    """The README line on copy, recall and tools-story blocks, empty for a run without them."""
    alone = record.get("copy_blocks", 0)
    after_tools = [f"{record.get(key, 0):,} {what}" for key, what in
                   (("tools_copy_blocks", "copy"), ("tools_recall_blocks", "recall"), ("tools_story_blocks", "story"))
                   if record.get(key, 0)]
    if not (alone or after_tools):
        return ""
    parts = ([f"{alone:,} copy blocks"] if alone else []) + (
        [" and ".join([", ".join(after_tools[:-1]), after_tools[-1]] if len(after_tools) > 1 else after_tools)
         + " blocks read after the tools system message"] if after_tools else [])
    return (f"- among them {'; '.join(parts)} (`glm3_teach.induction`, lesson 09: text in which only "
            "copying predicts the next token, trained on what can be copied)\n")


def _known_problems(record: dict[str, Any]) -> str:
    problems = record.get("known_problems", [])
    return "## Known problems\n\n" + "".join(f"- {p}\n" for p in problems) + "\n" if problems else ""


def _per_language_rows(story: dict[str, Any], baseline: str) -> str:
    rows = [f"| story bits per byte, {lang}: `{baseline}` -> this model | {v['before']:.4f} -> {v['after']:.4f} "
            f"({(v['after'] / v['before'] - 1) * 100:+.1f}%) |" for lang, v in story.get("per_language", {}).items()]
    return "\n".join(rows) + ("\n" if rows else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.sft", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a TOML file: TrainConfig keys plus an [sft] table")
    parser.add_argument("--note", default="", help="a remark stored in training.json and the README")
    parser.add_argument("--force", action="store_true",
                        help="replace a trained model already in the export folder (such as the shipped one)")
    args = parser.parse_args(argv)
    command = "python -m glm3_teach.sft " + shlex.join(sys.argv[1:] if argv is None else argv)

    def train_and_report() -> int:
        from glm3_teach.train import check_export_folder

        config, _ = load_config(args.config)   # a bad config fails here, before any model is loaded
        if config.export_dir:                   # and so does a run that would replace a trained model
            check_export_folder(config, args.force, resume=False)
        record = run(args.config, args.note, command)
        if "samples" in record:   # not on a rank other than 0 of a torchrun launch
            print(json.dumps({k: record[k] for k in ("wall_seconds", "final_train_loss", "final_val",
                                                     "story_bits_per_byte", "samples")}, indent=1, ensure_ascii=False))
        return 0

    return cli_main(parser.prog, train_and_report)   # bad data, too, is one line and exit status 2


if __name__ == "__main__":
    raise SystemExit(main())


# --- seeing the mask (lesson 08's visualiser) ---------------------------------------------------


def token_pieces(ids: Sequence[int], tokenizer: Any) -> list[str]:
    """The text of each id on its own (``token_text`` where the tokenizer has it), for display."""
    show = getattr(tokenizer, "token_text", None)
    return [show(i) if show is not None else tokenizer.decode([i]) for i in ids]


def loss_mask_html(ids: Sequence[int], labels: Sequence[int], tokenizer: Any) -> str:
    """HTML of the tokens, targets (``labels != -100``) on green, the rest grey; special tokens bold.

    A newline is shown as ``↵``; hover a token to see its id and label.
    """
    import html

    special = set(tokenizer.special_ids)
    spans = []
    for token_id, label, piece in zip(ids, labels, token_pieces(ids, tokenizer)):
        colour = "#b7e4b0" if label != IGNORE_INDEX else "#e6e6e6"
        weight = "bold" if token_id in special else "normal"
        text = html.escape(piece.replace("\n", "↵"))
        spans.append(f'<span title="id {token_id}, label {label}" style="background:{colour};font-weight:{weight};'
                     f'padding:1px 2px;margin:1px;border-radius:3px;display:inline-block;font-family:monospace">'
                     f'{text}</span>')
    return '<div style="line-height:1.9">' + "".join(spans) + "</div>"
