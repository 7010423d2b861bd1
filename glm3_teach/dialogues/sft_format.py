"""ChatGLM3's fine-tuning format: check an item (``validate_item``) and read a split (``load_sft``).

Taught in lesson 08 (对话微调 Chat fine-tuning); ``glm3_teach.sft``, ``evaluate``, ``agent``
and the benchmarks read the course's SFT set with ``load_sft``. An item is one JSON object::

    {"tools"?: [schema, ...],
     "conversations": [{"role": "system" | "user" | "assistant", "content": str, "loss"?: bool},
                       {"role": "tool", "name": str, "parameters": dict, "observation": dict | str}, ...],
     "meta"?: {...}}

A bad item raises ``SFTDataError`` naming the item (or file and line) and the field. What it
leaves out: checking a tool call's parameters against its schema (``tools.call_tool`` does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glm3_teach.paths import data_dir
from glm3_teach.stories import LANGS

SPLITS = ("train", "val", "heldout")
ROLES = ("system", "user", "assistant", "tool")

class SFTDataError(ValueError):
    """A fine-tuning item that does not follow ChatGLM3's format (the message says where and why)."""


def _check_json(value: Any, where: str) -> None:
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SFTDataError(f"{where} must be JSON data (dicts, lists, strings, numbers): {error}") from None


def _check_message(message: Any, index: int, previous: str | None, tool_names: list[str] | None, where: str) -> None:
    """One message of ``conversations``; ``previous`` is the role before it (None for the first)."""
    at = f"{where}: conversations[{index}]"
    if not isinstance(message, dict):
        raise SFTDataError(f"{at} must be a dict such as {{'role': 'user', 'content': '你好'}}, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        hint = "; a tool's result goes in the 'observation' field of a 'tool' message" if role == "observation" else ""
        raise SFTDataError(f"{at} has unknown role {role!r}; use one of {', '.join(ROLES)}{hint}")
    if "loss" in message and not isinstance(message["loss"], bool):
        raise SFTDataError(f"{at} ({role}) has loss {message['loss']!r} ({type(message['loss']).__name__}); "
                           f"loss must be True or False")
    if role == "system" and index != 0:
        raise SFTDataError(f"{at} is a system message but not the first one; a system prompt opens the conversation")
    if role == "tool":
        _check_tool_message(message, previous, tool_names, at)
        return
    extra = sorted(set(message) - {"role", "content", "loss"})
    if extra:
        raise SFTDataError(f"{at} ({role}) has unknown keys {extra}; a {role} message has 'role', 'content' and 'loss'")
    if not isinstance(message.get("content"), str):
        got = "no 'content'" if "content" not in message else f"content of type {type(message['content']).__name__}"
        raise SFTDataError(f"{at} ({role}) has {got}; content must be a str")


def _check_tool_message(message: dict, previous: str | None, tool_names: list[str] | None, at: str) -> None:
    extra = sorted(set(message) - {"role", "name", "parameters", "observation", "loss"})
    if extra:
        raise SFTDataError(f"{at} (tool) has unknown keys {extra}; a tool message has 'name', 'parameters', 'observation'")
    name = message.get("name")
    if not isinstance(name, str) or not name:
        raise SFTDataError(f"{at} (tool) has no 'name' (the tool called, e.g. 'check_order'), got {name!r}")
    if tool_names is None:
        raise SFTDataError(f"{at} calls tool {name!r} but the item has no 'tools'; add the tool schemas to the item")
    if name not in tool_names:
        raise SFTDataError(f"{at} calls tool {name!r}, which is not among the item's tools {tool_names}")
    if not isinstance(message.get("parameters"), dict):
        raise SFTDataError(f"{at} (tool {name}) needs 'parameters', a dict of keyword arguments, "
                           f"got {type(message.get('parameters')).__name__}")
    if "observation" not in message:
        raise SFTDataError(f"{at} (tool {name}) has no 'observation'; give the tool's result (a str or JSON data)")
    _check_json(message["parameters"], f"{at} (tool {name}) parameters")
    _check_json(message["observation"], f"{at} (tool {name}) observation")
    if previous not in ("user", "tool"):
        raise SFTDataError(f"{at} is a tool call (with its observation) but follows "
                           f"{'nothing' if previous is None else 'a ' + previous + ' message'}; a tool call answers a "
                           f"user message (or follows another tool call)")


def _check_meta(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise SFTDataError(f"{where}: meta must be a dict, got {type(meta).__name__}")
    for key in ("intent", "lang", "template", "split"):
        if key in meta and not isinstance(meta[key], str):
            raise SFTDataError(f"{where}: meta[{key!r}] must be a str, got {meta[key]!r}")
    if meta.get("lang", "zh") not in LANGS:
        raise SFTDataError(f"{where}: meta['lang'] is {meta['lang']!r}; use 'zh' or 'en'")
    for key in ("expect", "observation_values"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key])):
            raise SFTDataError(f"{where}: meta[{key!r}] must be a list of str, got {meta[key]!r}")
    tool = meta.get("expect_tool")
    if tool is not None and not (isinstance(tool, dict) and isinstance(tool.get("name"), str)
                                 and isinstance(tool.get("parameters"), dict)):
        raise SFTDataError(f"{where}: meta['expect_tool'] must be {{'name': str, 'parameters': dict}}, got {tool!r}")


def validate_item(item: Any, where: str = "item 0") -> dict:
    """Check one fine-tuning item and return it; raise ``SFTDataError`` naming ``where`` and the field.

    Checks: a dict with ``conversations`` (a non-empty list) and optional ``tools`` (a list of
    schemas with names) and ``meta``; roles system (first only) / user / assistant / tool; str
    content; ``loss`` a bool; a tool message with ``name`` (one of the item's tools),
    ``parameters`` (a dict) and ``observation``, right after a user message or another call.

    >>> validate_item({"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好！"}]})["conversations"][0]["role"]
    'user'
    """
    if not isinstance(item, dict):
        raise SFTDataError(f"{where} must be a dict {{'conversations': [...]}}, got {type(item).__name__}")
    extra = sorted(set(item) - {"tools", "conversations", "meta"})
    if extra:
        raise SFTDataError(f"{where} has unknown keys {extra}; an item has 'conversations' and optionally 'tools', 'meta'")
    conversations = item.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise SFTDataError(f"{where} has {'no' if conversations is None else 'an empty or non-list'} 'conversations'; "
                           f"give a list of messages such as [{{'role': 'user', 'content': '你好'}}, ...]")
    tool_names = None
    if "tools" in item:
        tools = item["tools"]
        if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
            raise SFTDataError(f"{where}: 'tools' must be a list of tool schemas {{'name', 'description', 'parameters'}}")
        _check_json(tools, f"{where}: tools")
        tool_names = [t["name"] for t in tools]
    previous = None
    for index, message in enumerate(conversations):
        _check_message(message, index, previous, tool_names, where)
        previous = message["role"]
    if "meta" in item:
        _check_meta(item["meta"], where)
    return item


def sft_dir() -> Path:
    return data_dir() / "sft"


def load_sft(split: str, path: str | Path | None = None) -> list[dict]:
    """The items of one split ("train", "val" or "heldout") from ``path`` (a folder, default data/sft, or a .jsonl file).

    Every line is checked with ``validate_item``; a bad line raises ``SFTDataError`` naming the file and line.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    folder = Path(path) if path is not None else sft_dir()
    file = folder if folder.suffix == ".jsonl" else folder / f"{split}.jsonl"
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist; write it with `python -m glm3_teach.dialogues --out {file.parent}`")
    items = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file.name} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise SFTDataError(f"{where} is not JSON: {error.msg} at column {error.colno}") from None
        items.append(validate_item(item, where))
    return items
