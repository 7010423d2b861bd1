"""Events and how a story is told: ``StoryPlan``, ``ev``, the renderer registry and ``render_story``.

Part of ``glm3_teach.stories`` (the corpus of lessons 00, 01 and 06). A plan is a list of
events, plain dicts made with ``ev``. Every event kind has one renderer, registered with
``@renders(kind)``, that keeps its Chinese and its English phrasings side by side and reads
only the event, so both languages tell the same story with the same names and numbers. The
renderers live in ``render_everyday``, ``render_tales`` and ``render_shop``. Lesson 08's
dialogue generator renders stories one event at a time with ``render_story`` to get aligned
sentence pairs for its translation requests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from glm3_teach.stories.world import LANGS

Event = dict  # {"kind": "see", "who": ..., ...}: plain data, made by the planners below
_RENDERERS: dict[str, Callable[[Event, str, random.Random], str]] = {}
BLOCK_EVENTS = {"notice", "price_list"}  # rendered on lines of their own


def renders(kind: str):
    """Register the function below as the renderer of events of this ``kind``."""

    def register(fn):
        _RENDERERS[kind] = fn
        return fn

    return register


@dataclass
class StoryPlan:
    """What happens in one story: its kind and its events, with every name and number fixed."""

    kind: str
    events: list[Event]


def ev(kind: str, **slots) -> Event:
    """An event: ``ev("see", who=child, n=3, ...)`` -> {"kind": "see", "who": child, "n": 3, ...}."""
    if kind not in _RENDERERS:
        raise ValueError(f"no renderer for event kind {kind!r}; known kinds: {sorted(_RENDERERS)}")
    return {"kind": kind, **slots}


def render_story(plan: StoryPlan, lang: str, rng: random.Random) -> str:
    """Tell ``plan`` in ``lang`` ("zh" or "en"): sentences joined into lines, notices on lines of their own."""
    if lang not in LANGS:
        raise ValueError(f"lang must be 'zh' or 'en', got {lang!r}")
    lines, current = [], []
    for event in plan.events:
        text = _RENDERERS[event["kind"]](event, lang, rng)
        if not text:
            continue
        if event["kind"] in BLOCK_EVENTS:
            lines += ["".join(current) if lang == "zh" else " ".join(current)] if current else []
            lines.append(text)
            current = []
        else:
            current.append(text)
    if current:
        lines.append("".join(current) if lang == "zh" else " ".join(current))
    return "\n".join(lines)
