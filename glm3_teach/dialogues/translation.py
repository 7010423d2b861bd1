"""Translation requests of the SFT set, from aligned sentence pairs of the story corpus.

Taught in lesson 08. Every story is planned once and each event is rendered in both languages
(``glm3_teach.stories``), so rendering a story one event at a time gives sentence pairs.
Training dialogues use pairs of training stories; ``val`` and ``heldout`` use pairs of
validation stories whose sentences occur in no training story.

What it leaves out: sentences with quotes or of more than one clause.
"""

from __future__ import annotations

import random

from glm3_teach import stories
from glm3_teach.dialogues.answers import Turn, fill

MAX_PAIR_CHARS_ZH = 28
MAX_PAIR_WORDS_EN = 16


def _one_sentence(zh: str, en: str) -> bool:
    """A short pair of single sentences without quotes or line breaks."""
    return (4 <= len(zh) <= MAX_PAIR_CHARS_ZH and len(en.split()) <= MAX_PAIR_WORDS_EN and "\n" not in zh + en
            and not any(q in zh + en for q in '“”"') and sum(zh.count(c) for c in "。！？") == 1
            and zh[-1] in "。！？" and en[-1] in ".!?" and not any(end in en for end in (". ", "! ", "? ")))


def story_pairs(seed: int, index: int, check: bool = False) -> list[tuple[str, str]]:
    """The (zh, en) pair of every event of story ``index``, rendered as the corpus renders it.

    ``render_story`` draws the words of each event from the story's zh and en random streams in
    event order, so rendering the events one at a time with the same streams gives the same
    sentences; with ``check`` the joined pieces are compared with the whole story.
    """
    plan = stories.plan_story(stories.story_rng(seed, index, "plan"))
    rngs = {lang: stories.story_rng(seed, index, lang) for lang in stories.LANGS}
    pieces = [(stories.render_story(stories.StoryPlan(plan.kind, [e]), "zh", rngs["zh"]),
               stories.render_story(stories.StoryPlan(plan.kind, [e]), "en", rngs["en"])) for e in plan.events]
    if not check:
        return pieces
    _, zh, en = stories.generate_story(seed, index)
    if "".join(z.replace("\n", "") for z, _ in pieces) != zh.replace("\n", ""):
        raise RuntimeError(f"story {index}: rendering event by event no longer reproduces the story; "
                           f"dialogues.story_pairs must follow stories.render_story")
    return pieces


def translation_pairs(seed: int = stories.COURSE_SEED, stories_to_read: int = 1500) -> dict[str, list[tuple[str, str]]]:
    """Short aligned sentence pairs: {"train": [...], "val": [...], "heldout": [...]}.

    Pairs of training stories go to train; pairs of validation stories whose Chinese and English
    sentences occur in no training story go, alternately, to val and heldout.
    """
    found: dict[str, dict[tuple[str, str], None]] = {"train": {}, "val": {}}
    for index in range(stories_to_read):
        split = stories.split_of(seed, index)
        for pair in story_pairs(seed, index, check=index < 20):
            if _one_sentence(*pair):
                found[split][pair] = None
    train = list(found["train"])
    seen = {z for z, _ in train} | {e for _, e in train}
    novel = [p for p in found["val"] if p[0] not in seen and p[1] not in seen]
    return {"train": train, "val": novel[0::2], "heldout": novel[1::2]}


def translate_turn(template: str, lang: str, rng: random.Random, pairs: list[tuple[str, str]]) -> Turn:
    """A request to translate into ``lang`` (the reply's language) a sentence of the other language."""
    zh, en = rng.choice(pairs)
    source, target = (en, zh) if lang == "zh" else (zh, en)
    return Turn(fill(template, s=source), target, [], {"reference": target, "source_lang": "en" if lang == "zh" else "zh"})
