"""The course's bilingual fine-tuning set: tea-shop dialogues in ChatGLM3's fine-tuning format.

Taught in lesson 08 (对话微调 Chat fine-tuning) and, for the tool dialogues, lesson 09
(工具调用 Tool calling). ``python -m glm3_teach.dialogues --seed 3 --out data/sft`` writes
``train.jsonl``, ``val.jsonl``, ``heldout.jsonl`` and a README; ``load_sft(split)`` reads them.

One item per line, ChatGLM3's format plus the course's ``meta``::

    {"tools"?: [schema, ...],
     "conversations": [{"role": "system" | "user" | "assistant", "content": str, "loss"?: bool},
                       {"role": "tool", "name": str, "parameters": dict, "observation": dict | str}, ...],
     "meta": {"intent", "lang", "template", "split", "expect", "expect_tool"?,
              "observation_values"?, "reference"?, "source_lang"?, "base_intent"?}}

``meta.lang`` is the language the reply must be in. It is also the question's language, except
for ``translate``, whose request is written in the source language (``meta.source_lang``).

Where everything comes from
---------------------------
- **Facts** are read from ``glm3_teach.stories.TEA_SHOP`` and ``TEA_WISHES`` each time an item
  is made (prices, hours, closed day, address, shipping, delivery, returns, brewing,
  recommendations), so the story corpus and this set never disagree: change a price there and
  both change. Prices, counts, baskets and clock times are written with the story generator's
  own helpers (``stories.price_sentences``, ``zh_count``, ``en_counted``, ``zh_clock``), and
  items draw from random streams made the same way as the stories' (``stories.stable_rng``).
- **Questions** come from templates: at least 12 per intent and language, each a different
  phrasing (word order, synonyms, with or without a product alias), composed with openers
  ("您好，", "Excuse me, ") and closers ("谢谢！", " Thanks!"). Template *k* of every list is
  held out when ``k % 5 == 2`` (the same rule for the openers and closers): held-out phrasings
  appear only in ``heldout``, never in ``train`` or ``val``.
- **Translations** use aligned sentence pairs of the story corpus: every story is planned once
  and each event is rendered in both languages, so rendering a story event by event gives
  sentence pairs. Training uses pairs of training stories, ``val``/``heldout`` pairs of
  validation stories that occur in no training story.
- **Tool dialogues** call the real tools of ``glm3_teach.tools`` (``SHOP_TOOLS``) for their
  observations; order ids are split by a hash, so ids of ``val`` and ``heldout`` never occur
  in ``train``.

Splits: ``train`` (training templates), ``val`` (training templates with new slot values and
combinations; no item equal to a training item), ``heldout`` (held-out templates only).
Every item is made from its own random stream (a SHA-256 of seed, split, intent, language and
number), so the files are reproduced byte for byte.

The modules, from the bottom up
-------------------------------
- ``sft_format``: ``validate_item``, ``SFTDataError``, ``load_sft`` (the format; lessons 08-12 read it).
- ``templates``: the question templates per intent, openers and closers, the held-out rule.
- ``answers``: the answers from ``TEA_SHOP`` and the turns (question + answer) of the plain intents.
- ``translation``: sentence pairs of the story corpus and the translation requests.
- ``tool_dialogues``: order, stock and total dialogues with real tool calls (lesson 09).
- ``items``: one item of an intent, language and split, from its own random stream.
- ``writer``: the three splits, the files and their README; the command line (``main``).

Every public name is importable from the package itself (``from glm3_teach.dialogues import
load_sft, make_item``).

What it leaves out: dialogues longer than three user turns, spelling mistakes and mixed-language
questions, and any fact the shop does not have (payment by card, opening on holidays).
"""

from __future__ import annotations

from glm3_teach.dialogues.answers import (
    ALIASES,
    SHOP_INTENTS,
    SYSTEM_PROMPTS,
    UNCOMPOSED,
    ZH_DAY_ALIASES,
    Turn,
    brew_answer,
    closed_day_answer,
    closed_day_turn,
    day_name,
    fixed_answer,
    hours_answer,
    identity_answer,
    make_turn,
    price_answer,
    product_name,
    product_question,
    product_turn,
    recommend_answer,
    recommend_turn,
    refusal_answer,
    shop,
    simple_turn,
    system_prompt,
)
from glm3_teach.dialogues.items import (
    EVAL_COUNT,
    INTENTS,
    PLAIN_INTENTS,
    SYSTEM_SHARE,
    TRAIN_COUNTS,
    earlier_turn,
    followup_dialogue,
    item_rng,
    make_item,
    plain_dialogue,
    single_turn,
    tool_dialogue,
)
from glm3_teach.dialogues.sft_format import (
    ROLES,
    SPLITS,
    SFTDataError,
    load_sft,
    sft_dir,
    validate_item,
)
from glm3_teach.dialogues.templates import (
    CLOSERS,
    MORE_TOOL_SETS,
    MORE_TOOL_TEMPLATES,
    OOD_TOPICS,
    OPENERS,
    ORDER_ID_REPLIES,
    SECOND_TOOL_TEMPLATES,
    TEMPLATE_OF,
    TEMPLATES,
    TOOL_TEMPLATES,
    compose,
    fill,
    is_heldout,
    parts_for,
    template_id,
    templates_for,
)
from glm3_teach.dialogues.tool_dialogues import (
    ASK_ORDER_ID,
    NO_TOOL_INTENTS,
    ORDER_ID_SHARES,
    TOOL_INTENTS,
    basket_words,
    call,
    draw_order_id,
    order_answer,
    order_dialogue,
    order_split,
    shop_tool_schemas,
    stock_answer,
    stock_dialogue,
    tool_exchange,
    tool_intent_dialogue,
    tool_step,
    total_answer,
    total_dialogue,
)
from glm3_teach.dialogues.translation import (
    MAX_PAIR_CHARS_ZH,
    MAX_PAIR_WORDS_EN,
    story_pairs,
    translate_turn,
    translation_pairs,
)
from glm3_teach.dialogues.writer import (
    GENERATOR_VERSION,
    HELDOUT_DESIGN,
    conversation_key,
    dumps_item,
    fresh_tool_items,
    generate,
    length_figures,
    main,
    make_group,
    token_length,
    tool_system_length,
    write_sft,
)
from glm3_teach.stories import COURSE_SEED, LANGS

__all__ = [
    "ALIASES",
    "ASK_ORDER_ID",
    "CLOSERS",
    "COURSE_SEED",
    "EVAL_COUNT",
    "GENERATOR_VERSION",
    "HELDOUT_DESIGN",
    "INTENTS",
    "LANGS",
    "MAX_PAIR_CHARS_ZH",
    "MAX_PAIR_WORDS_EN",
    "MORE_TOOL_SETS",
    "MORE_TOOL_TEMPLATES",
    "SECOND_TOOL_TEMPLATES",
    "NO_TOOL_INTENTS",
    "OOD_TOPICS",
    "OPENERS",
    "ORDER_ID_REPLIES",
    "ORDER_ID_SHARES",
    "PLAIN_INTENTS",
    "ROLES",
    "SHOP_INTENTS",
    "SPLITS",
    "SYSTEM_PROMPTS",
    "SYSTEM_SHARE",
    "TEMPLATES",
    "TEMPLATE_OF",
    "TOOL_INTENTS",
    "TOOL_TEMPLATES",
    "TRAIN_COUNTS",
    "UNCOMPOSED",
    "ZH_DAY_ALIASES",
    "SFTDataError",
    "Turn",
    "basket_words",
    "brew_answer",
    "call",
    "closed_day_answer",
    "closed_day_turn",
    "compose",
    "conversation_key",
    "day_name",
    "draw_order_id",
    "dumps_item",
    "earlier_turn",
    "fill",
    "fixed_answer",
    "followup_dialogue",
    "fresh_tool_items",
    "generate",
    "hours_answer",
    "identity_answer",
    "is_heldout",
    "item_rng",
    "length_figures",
    "load_sft",
    "main",
    "make_group",
    "make_item",
    "make_turn",
    "order_answer",
    "order_dialogue",
    "order_split",
    "parts_for",
    "plain_dialogue",
    "price_answer",
    "product_name",
    "product_question",
    "product_turn",
    "recommend_answer",
    "recommend_turn",
    "refusal_answer",
    "sft_dir",
    "shop",
    "shop_tool_schemas",
    "simple_turn",
    "single_turn",
    "stock_answer",
    "stock_dialogue",
    "story_pairs",
    "system_prompt",
    "template_id",
    "templates_for",
    "token_length",
    "tool_dialogue",
    "tool_exchange",
    "tool_intent_dialogue",
    "tool_step",
    "tool_system_length",
    "total_answer",
    "total_dialogue",
    "translate_turn",
    "translation_pairs",
    "validate_item",
    "write_sft",
]
