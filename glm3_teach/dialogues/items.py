"""One SFT item: a dialogue of one intent in one language for one split, with its ``meta``.

Taught in lesson 08 (plain dialogues) and lesson 09 (tool dialogues). ``make_item`` draws
everything from the item's own random stream (``item_rng``: a SHA-256 of seed, split,
intent, language and number), so every item, and with it the data set, is reproducible.
"""

from __future__ import annotations

import random

from glm3_teach import stories
from glm3_teach.dialogues.answers import (
    SHOP_INTENTS,
    UNCOMPOSED,
    brew_answer,
    make_turn,
    price_answer,
    product_name,
    product_turn,
    shop,
    system_prompt,
)
from glm3_teach.dialogues.templates import TEMPLATE_OF, compose, fill, templates_for
from glm3_teach.dialogues.tool_dialogues import (
    NO_TOOL_INTENTS,
    TOOL_INTENTS,
    shop_tool_schemas,
    tool_intent_dialogue,
)
from glm3_teach.dialogues.translation import translate_turn

SYSTEM_SHARE = 0.25  # share of plain dialogues that open with a short system prompt


PLAIN_INTENTS = SHOP_INTENTS + ("greeting", "thanks", "translate", "followup")
INTENTS = PLAIN_INTENTS + TOOL_INTENTS
# Training dialogues per intent and language; val and heldout get EVAL_COUNT each.
TRAIN_COUNTS = {"price": 320, "hours": 160, "closed_day": 200, "address": 200, "free_shipping": 180,
                "shipping_fee": 200, "delivery": 180, "returns": 150, "recommend": 220, "brew": 260, "identity": 200,
                "out_of_domain": 260, "greeting": 80, "thanks": 120, "translate": 500, "followup": 260,
                "order_status": 220, "order_ask": 140, "order_error": 100, "stock": 180, "total": 260, "no_tool": 260}
EVAL_COUNT = 15


def item_rng(seed: int, split: str, intent: str, lang: str, number: int) -> random.Random:
    """The random stream of one item, from a SHA-256 of everything that names it (as the stories' streams)."""
    return stories.stable_rng(seed, split, intent, lang, number)


def single_turn(intent: str, lang: str, split: str, rng: random.Random, pairs) -> tuple[str, list[dict], dict]:
    """(template id, conversation, meta) of a one-question dialogue of a plain intent."""
    tid, template = rng.choice(templates_for(intent, lang, split))
    if intent == "translate":
        turn = translate_turn(template, lang, rng, pairs)
        question = turn.question
    else:
        turn = make_turn(intent, template, lang, rng)
        question = compose(turn.question, lang, rng, split) if intent not in UNCOMPOSED else turn.question
    if intent in ("greeting", "thanks"):
        question = question.rstrip("!！.。") + rng.choice(("", "！", "!", "。") if lang == "zh" else ("", "!", ".", " :)"))
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": turn.answer}]
    return tid, messages, {"expect": turn.expect, **turn.extra}


def earlier_turn(intent: str, lang: str, split: str, rng: random.Random, p=None) -> list[dict]:
    """A first question and answer that a later question refers back to."""
    _, template = rng.choice(templates_for(intent, lang, split))
    turn = product_turn(intent, template, lang, rng, p) if intent in ("price", "brew") else make_turn(intent, template, lang, rng)
    return [{"role": "user", "content": compose(turn.question, lang, rng, split)}, {"role": "assistant", "content": turn.answer}]


def followup_dialogue(lang: str, split: str, rng: random.Random) -> tuple[str, list[dict], dict]:
    """Price or brewing of one product, then "那红茶呢？" / "And the black tea?" about another."""
    base = rng.choice(("price", "price", "brew"))
    first, second = rng.sample(shop().teas if base == "brew" else shop().products, 2)
    tid, template = rng.choice(templates_for("followup", lang, split))
    answer, expect = (price_answer if base == "price" else brew_answer)(second, lang)
    messages = earlier_turn(base, lang, split, rng, first) + [
        {"role": "user", "content": fill(template, p=product_name(second, lang, rng))},
        {"role": "assistant", "content": answer}]
    return tid, messages, {"expect": expect, "base_intent": base}


def plain_dialogue(intent: str, lang: str, split: str, rng: random.Random, pairs) -> tuple[str, list[dict], dict]:
    if intent == "followup":
        tid, messages, meta = followup_dialogue(lang, split, rng)
    else:
        tid, messages, meta = single_turn(intent, lang, split, rng, pairs)
        if intent == "thanks" and rng.random() < 0.5:  # thanks after an answer
            messages = earlier_turn(rng.choice(SHOP_INTENTS[:10]), lang, split, rng) + messages
    if rng.random() < SYSTEM_SHARE:
        messages = [system_prompt(lang, rng)] + messages
    return tid, messages, meta


def tool_dialogue(intent: str, lang: str, split: str, rng: random.Random, more: int = 0) -> tuple[str, list[dict], dict]:
    """A tool intent's dialogue; ``more``: train questions also drawn from that many MORE_TOOL_SETS (templates_for)."""
    if intent == "no_tool":
        base = rng.choice(NO_TOOL_INTENTS)
        tid, messages, meta = single_turn(base, lang, split, rng, None)
        return tid, messages, {**meta, "base_intent": base}
    tid, template = rng.choice(templates_for(TEMPLATE_OF.get(intent, intent), lang, split, more))
    messages, meta = tool_intent_dialogue(intent, template, lang, rng, split)
    return tid, messages, meta


def make_item(intent: str, lang: str, split: str, rng: random.Random, pairs=None, schemas=None, more: int = 0) -> dict:
    """One dialogue of ``intent`` in ``lang`` for ``split``, with its meta (``more``: see ``tool_dialogue``)."""
    if intent in TOOL_INTENTS:
        tid, messages, extra = tool_dialogue(intent, lang, split, rng, more)
    else:
        tid, messages, extra = plain_dialogue(intent, lang, split, rng, pairs)
    meta = {"intent": intent, "lang": lang, "template": tid, "split": split, **extra}
    item = {"tools": schemas or shop_tool_schemas()} if intent in TOOL_INTENTS else {}
    return {**item, "conversations": messages, "meta": meta}
