"""The SFT set's files: three splits of distinct items, ``{split}.jsonl`` and a README with its figures.

``python -m glm3_teach.dialogues --seed 3 --out data/sft`` (``main``) writes the data that
lesson 08 fine-tunes the chat model on and lesson 09 trains tool calls with; ``load_sft``
(``sft_format``) reads it back. The README records the command, counts per intent, token
lengths with the course tokenizer and the held-out design.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from glm3_teach import stories
from glm3_teach.dialogues.items import (
    EVAL_COUNT,
    INTENTS,
    SYSTEM_SHARE,
    TRAIN_COUNTS,
    item_rng,
    make_item,
)
from glm3_teach.dialogues.sft_format import SPLITS, sft_dir, validate_item
from glm3_teach.dialogues.templates import TEMPLATES, is_heldout
from glm3_teach.dialogues.tool_dialogues import TOOL_INTENTS, shop_tool_schemas
from glm3_teach.dialogues.translation import translation_pairs
from glm3_teach.stories import COURSE_SEED, LANGS

GENERATOR_VERSION = "1.1"  # bump whenever the same seed would give different files


def conversation_key(item: dict) -> str:
    return json.dumps(item["conversations"], ensure_ascii=False, sort_keys=True)


def make_group(intent: str, lang: str, split: str, count: int, seed: int, pairs, schemas, avoid: dict,
               more: int = 0) -> list[dict]:
    """``count`` distinct items of one intent and language; none equal to one in ``avoid`` (train's keys).

    ``more``: tool questions of the train split also drawn from that many MORE_TOOL_SETS (``fresh_tool_items``).
    """
    group, seen, number = [], {}, 0
    while len(group) < count and number < 40 * count:
        item = make_item(intent, lang, split, item_rng(seed, split, intent, lang, number), pairs, schemas, more)
        number += 1
        key = conversation_key(item)
        if key in seen or key in avoid:
            continue
        seen[key] = None
        group.append(validate_item(item, f"{split} {intent}/{lang} item {len(group)}"))
    if len(group) < count:
        raise RuntimeError(f"only {len(group)} distinct {split} items for {intent}/{lang} (wanted {count}); "
                           f"add templates or lower TRAIN_COUNTS/EVAL_COUNT")
    return group


def generate(seed: int = COURSE_SEED, train_counts: dict | None = None, eval_count: int = EVAL_COUNT) -> dict[str, list[dict]]:
    """All three splits: {"train": [...], "val": [...], "heldout": [...]}; train shuffled, eval in intent order."""
    counts = {**TRAIN_COUNTS, **(train_counts or {})}
    pairs = translation_pairs(seed)
    schemas = shop_tool_schemas()
    out: dict[str, list[dict]] = {}
    train_keys: dict[str, None] = {}
    for split in SPLITS:
        items = []
        for intent in INTENTS:
            for lang in LANGS:
                n = counts[intent] if split == "train" else eval_count
                items += make_group(intent, lang, split, n, seed, pairs[split], schemas, train_keys if split == "val" else {})
        if split == "train":
            train_keys = {conversation_key(item): None for item in items}
            random.Random(seed).shuffle(items)
        out[split] = items
    return out


def check_fresh_tool_weights(weights: Any) -> None:
    """``[sft] fresh_tool_weights``: tool intents -> numbers >= 0, not all of them 0; a ValueError says what is wrong."""
    numbers = isinstance(weights, dict) and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                                                for w in weights.values())
    if not numbers or not set(weights) <= set(TOOL_INTENTS):
        raise ValueError(f"fresh_tool_weights must map tool intents ({', '.join(TOOL_INTENTS)}) to numbers >= 0 "
                         f"(e.g. {{stock = 2}}), got {weights!r}")
    if all(weights.get(intent, 1) == 0 for intent in TOOL_INTENTS):
        raise ValueError(f"fresh_tool_weights {weights!r} gives every tool intent weight 0: nothing to draw")


def fresh_tool_items(count: int, seed: int, avoid: dict | None = None, weights: dict | None = None,
                     more_phrasings: int = 0) -> list[dict]:
    """``count`` more training tool dialogues, drawn afresh: the training templates with new ids, baskets
    and openers, in the shares of ``TRAIN_COUNTS`` (each tool intent's count times ``weights[intent]``,
    default 1); none equal to a conversation in ``avoid``. ``more_phrasings``: the questions are also
    drawn from the first ``more_phrasings`` of ``MORE_TOOL_SETS`` (training-only phrasings written after
    data/sft was made: 1 = ``MORE_TOOL_TEMPLATES``, 2 = that and ``SECOND_TOOL_TEMPLATES``).

    ``[sft] fresh_tool_dialogues`` mixes them into a run, so the model sees many ids once instead of
    the same ids many times. They are named ``fresh{seed}`` (not the data's seed), so no stream repeats
    one of ``data/sft``; they are not written to disk (the same seed draws the same items).
    """
    weights = weights or {}
    check_fresh_tool_weights(weights)
    # shares in hundredths of an item, so a weight like 1.5 stays whole-number arithmetic; all weights 1 give
    # exactly the shares (and items) of TRAIN_COUNTS
    shares = [(intent, lang, round(TRAIN_COUNTS[intent] * weights.get(intent, 1) * 100))
              for intent in TOOL_INTENTS for lang in LANGS]
    total = sum(n for _, _, n in shares)
    schemas, items = shop_tool_schemas(), []
    for k, (intent, lang, n) in enumerate(shares):
        wanted = (count * sum(m for _, _, m in shares[:k + 1])) // total - (count * sum(m for _, _, m in shares[:k])) // total
        items += make_group(intent, lang, "train", wanted, f"fresh{seed}", None, schemas, avoid or {}, more_phrasings)
    random.Random(seed).shuffle(items)
    return items


def dumps_item(item: dict) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def token_length(item: dict, tokenizer, tool_system_ids: int, cache: dict | None = None) -> int:
    """Tokens of ``item`` as the SFT encoder lays it out ([gMASK] sop, messages, tool call + observation, eos)."""
    from glm3_teach import tools

    cache = {} if cache is None else cache

    def message_length(role: str, metadata: str, content: str) -> int:
        if (role, metadata, content) not in cache:
            cache[role, metadata, content] = len(tokenizer.build_single_message(role, metadata, content))
        return cache[role, metadata, content]

    n = 2 + (tool_system_ids if "tools" in item else 0) + 1
    for message in item["conversations"]:
        if message["role"] == "tool":
            observation = message["observation"]
            observation = observation if isinstance(observation, str) else json.dumps(observation, ensure_ascii=False)
            n += message_length("assistant", message["name"], tools.format_tool_call(message["parameters"]))
            n += message_length("observation", "", observation)
        else:
            n += message_length(message["role"], "", message["content"])
    return n


def tool_system_length(tokenizer, schemas: list[dict]) -> int:
    """Tokens of ChatGLM3's tools system message for ``schemas`` (role token included)."""
    from glm3_teach import tools

    content = tools.TOOL_PROMPT + "\n" + json.dumps(schemas, indent=4, ensure_ascii=False)
    return len(tokenizer.build_single_message("system", "", content))


def length_figures(splits: dict[str, list[dict]]) -> dict:
    """Token lengths with the course tokenizer: percentiles for plain and tool dialogues, the system message."""
    from glm3_teach import load_tokenizer

    tokenizer = load_tokenizer()
    system = tool_system_length(tokenizer, shop_tool_schemas())
    rows, cache = {}, {}
    for kind in ("plain", "tool"):
        lengths = sorted(token_length(item, tokenizer, system, cache) for item in splits["train"]
                         if ("tools" in item) == (kind == "tool"))
        pick = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
        rows[kind] = {"n": len(lengths), "min": lengths[0], "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
                      "max": lengths[-1], "under_200": sum(n < 200 for n in lengths) / len(lengths),
                      "tokens": sum(lengths)}
    return {"tool_system": system, **rows}


HELDOUT_DESIGN = """\
## The held-out design (why the held-out score means something)

- **Whole phrasings are held out.** Every plain intent has 25 question templates per language
  and every tool intent 15; template *k* is held out when `k % 5 == 2` (templates 2, 7, 12, 17
  and 22: 20%). Held-out templates appear only in `heldout.jsonl`; `train.jsonl` and `val.jsonl`
  use the other twenty (twelve for a tool intent). Templates 15-24 were added in generator
  version 1.1: with the first 15 alone the shipped model got 66% of the held-out questions right,
  its failures being new words read as another intent. The same rule holds out
  openers and closers ("劳驾，", "Hello there, ", "多谢！", ...) and the replies that give an
  order id, so a held-out question may also begin or end in words never seen in training.
- **`val` is the seen-phrasing control:** training templates with new slot values and new
  combinations (no validation dialogue equals a training dialogue). The gap between `val` and
  `heldout` is what new wording costs.
- **New values where the world has them.** Translation pairs of `val`/`heldout` come from
  validation stories of the corpus and occur in no training story; order ids are split by a
  SHA-256 of the id (80% train, 10% val, 10% heldout), so an evaluated id was never seen and the
  model must copy it from the question. Prices, hours and other shop facts are the same in every
  split: they are what the model is meant to learn.
- **Why it predicts questions written by other people.** The templates of one intent differ in
  wording, word order and synonyms (多少钱 / 怎么卖 / 什么价; cost / price / charge), so a
  model can pass a held-out template only by mapping meaning, not by matching a string it saw.
  A held-out template is a phrasing the model never saw, like an outside customer's. What the
  split cannot test: words that occur in no template at all (a new synonym for a product, a
  typo, a mixed-language question). Expect outside questions to score somewhat below
  `heldout` when they use such words, and close to it when they use the shop's own vocabulary.
- **How an answer is scored.** `meta.expect` lists substrings the last assistant reply must
  contain (e.g. `58元` / `58 yuan`, `上午9点` / `9 a.m.`, the order id and `2天`); they are
  written in the answer's language, so a correct fact in the wrong language fails too.
  Translation items have an empty `expect` and are scored against `meta.reference`
  (ROUGE-L); their reply is in `meta.lang`, their request in `meta.source_lang`.
- **How a tool item is evaluated.** Prompt the model with the `tools` system message and every
  message before the first `tool` message (for `order_ask` that includes the assistant asking for
  the id and the customer's reply); the call it writes must equal `meta.expect_tool` (name and
  arguments). Then feed the real observation (`tools.call_tool`) and check the final reply against
  `meta.expect` and `meta.observation_values`. A `no_tool` item must be answered without a call.
  Caveat: `tools.check_stock` returns a fixed number per product, so a stock answer can be right
  from memory; order ids (new in every evaluation split) and their delivery days test copying.
"""


def _count_rows(splits: dict[str, list[dict]]) -> list[str]:
    counts = Counter((item["meta"]["intent"], item["meta"]["lang"], split) for split in SPLITS for item in splits[split])
    rows = [f"| {intent} | {lang} | " + " | ".join(f"{counts[intent, lang, s]:,}" for s in SPLITS) + " |"
            for intent in INTENTS for lang in LANGS]
    for lang in LANGS:
        rows.append(f"| **all** | {lang} | " + " | ".join(
            f"{sum(counts[i, lang, s] for i in INTENTS):,}" for s in SPLITS) + " |")
    return rows


def _heldout_rows() -> list[str]:
    rows = []
    for intent in TEMPLATES:
        for lang in LANGS:
            held = [t for k, t in enumerate(TEMPLATES[intent][lang]) if is_heldout(k)]
            rows.append(f"| {intent} | {lang} | {len(TEMPLATES[intent][lang])} | " + " / ".join(f"`{t}`" for t in held) + " |")
    return rows


def _samples(splits: dict) -> list[str]:
    """Two training items as JSON blocks (the tool schemas abbreviated)."""
    plain = next(i for i in splits["train"] if i["meta"]["intent"] == "followup")
    tool = next(i for i in splits["train"] if i["meta"]["intent"] == "order_ask")
    tool_shown = {"tools": "[... the three schemas of tools.SHOP_TOOLS ...]", **{k: v for k, v in tool.items() if k != "tools"}}
    return ["```json", json.dumps(plain, ensure_ascii=False, indent=1), "```", "",
            "```json", json.dumps(tool_shown, ensure_ascii=False, indent=1), "```", ""]


def _readme(seed: int, command: str, seconds: float, splits: dict, sizes: dict, lengths: dict) -> str:
    length_rows = [f"| {kind} | {f['n']:,} | {f['min']} | {f['p50']} | {f['p90']} | {f['p99']} | {f['max']} | "
                   f"{f['under_200']:.0%} | {f['tokens']:,} |" for kind, f in lengths.items() if kind != "tool_system"]
    return "\n".join([
        "# The course's fine-tuning set (对话微调数据)",
        "",
        "Bilingual dialogues of the 清泉茶铺 / Clear Spring Tea Shop assistant in ChatGLM3's fine-tuning format",
        "(one JSON object per line: `tools`?, `conversations`, plus the course's `meta`), written by",
        "`glm3_teach/dialogues/` from the facts in `glm3_teach.stories.TEA_SHOP`. Read a split with",
        "`glm3_teach.dialogues.load_sft(\"train\")`. Do not edit by hand: `tests/test_dialogues.py` regenerates",
        "the files and compares them byte for byte.",
        "",
        *stories.provenance_lines(command, seed, GENERATOR_VERSION),
        f"- wall time: {seconds:.1f} s on one CPU core (generation, checks and writing)",
        "- files: " + ", ".join(f"`{s}.jsonl` {sizes[s]['items']:,} items, {sizes[s]['bytes']:,} bytes" for s in SPLITS),
        "",
        "## Counts per intent, language and split",
        "",
        "`lang` is the language of the reply, and of the question too, except for `translate`: its request is",
        "written in the source language (`meta.source_lang`; lang en = translate Chinese into English, asked",
        "in Chinese; lang zh = English into Chinese, asked in English). Tool intents (`order_status`, `order_ask`,",
        "`order_error`, `stock`, `total`, `no_tool`) carry `tools`; `no_tool` asks a plain question while",
        "the tools are offered (the model must answer without calling). `followup` is a second question",
        "that refers back (\"那红茶呢？\"), `thanks` follows an answer half of the time.",
        f"{SYSTEM_SHARE:.0%} of the plain dialogues open with a short system prompt.",
        "",
        "| intent | lang | train | val | heldout |",
        "| --- | --- | ---: | ---: | ---: |",
        *_count_rows(splits),
        "",
        "## Token lengths (course tokenizer, SFT layout, train split)",
        "",
        f"The tools system message (`tools.TOOL_PROMPT` + the JSON of the three schemas) is "
        f"**{lengths['tool_system']} tokens**; every tool dialogue carries it.",
        "",
        "| dialogues | n | min | median | p90 | p99 | max | under 200 | tokens |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *length_rows,
        "",
        HELDOUT_DESIGN,
        "## The held-out templates",
        "",
        "| intent | lang | templates | held out (k % 5 == 2) |",
        "| --- | --- | ---: | --- |",
        *_heldout_rows(),
        "",
        "(`order_error` asks with the `order_status` templates: the difference is the observation.)",
        "",
        "## Two training items",
        "",
        *_samples(splits),
    ])


def write_sft(out: Path, seed: int = COURSE_SEED, command: str | None = None) -> dict:
    """Generate the three splits, write ``{split}.jsonl`` and README.md into ``out``; return the figures."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    splits = generate(seed)
    sizes = {}
    for split in SPLITS:
        data = "".join(dumps_item(item) + "\n" for item in splits[split]).encode("utf-8")
        (out / f"{split}.jsonl").write_bytes(data)
        sizes[split] = {"items": len(splits[split]), "bytes": len(data)}
    lengths = length_figures(splits)
    seconds = time.perf_counter() - start
    command = command or f"python -m glm3_teach.dialogues --seed {seed} --out {out}"
    (out / "README.md").write_text(_readme(seed, command, seconds, splits, sizes, lengths), encoding="utf-8")
    return {"sizes": sizes, "lengths": lengths, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.dialogues",
                                     description="Write the course's bilingual SFT set (train/val/heldout JSONL) and its README.")
    parser.add_argument("--seed", type=int, default=COURSE_SEED, help=f"random seed (default: the course seed, {COURSE_SEED})")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data_dir()/sft)")
    args = parser.parse_args(argv)
    out = args.out or sft_dir()
    shown = args.out if args.out is not None else Path("data/sft")
    try:
        result = write_sft(out, args.seed, command=f"python -m glm3_teach.dialogues --seed {args.seed} --out {shown}")
    except OSError as error:
        print(f"error: cannot write {out}: {error.strerror or error}", file=sys.stderr)
        return 2
    for split, size in result["sizes"].items():
        print(f"{split:>8}: {size['items']:>6,} dialogues  {size['bytes']:>10,} bytes")
    print(f"tool system message: {result['lengths']['tool_system']} tokens; "
          f"plain dialogues under 200 tokens: {result['lengths']['plain']['under_200']:.0%}; "
          f"written to {out} in {result['seconds']:.1f} s")
    return 0
