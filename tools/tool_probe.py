"""Probe a chat checkpoint's tool calls with phrasings that no split of data/sft and no training run uses.

Usage (from the repository root):

    python tools/tool_probe.py --model data/checkpoints/chat [--per-template 3]

The held-out split already keeps whole templates out of training, but the training-only
``MORE_TOOL_TEMPLATES`` (``[sft] more_tool_phrasings``) were written after reading the held-out
failures. The ``PROBE`` phrasings below were written afterwards and only for this probe (a test
checks that none is a template of the course), so their figures are a second estimate of how the
model does on questions phrased by someone else. Ids, baskets and openers are drawn as for
``heldout`` (ids never seen in training); each phrasing is asked ``--per-template`` times.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PROBE = {
    "stock": {"zh": ("{p}还有的卖吗？", "你们那{p}还够不够？", "现在下单{p}有货发吗？", "{p}是不是没货了？"),
              "en": ("Got any {p} in stock at the moment?", "Is the {p} still available, or is it gone?",
                     "How many {p} can I still buy?", "Do you have the {p} on hand?")},
    "total": {"zh": ("{items}，帮我算个总数。", "一起买{items}得多少钱？", "{items}一共要花几块？"),
              "en": ("What's {items} going to cost all together?", "Work out the price of {items} for me.",
                     "Could you tell me what {items} add up to?")},
    "order_status": {"zh": ("订单{id}什么情况了？", "看看{id}到哪儿了。", "{id}这单到了吗？"),
                     "en": ("Any news on order {id}?", "Where's order {id} now?", "Is {id} delivered yet?")},
}


def probe_items(per_template: int = 3, seed: int = 0) -> list[dict]:
    """The probe's tool dialogues, built by the course's own ``tool_intent_dialogue`` from the PROBE phrasings."""
    from glm3_teach import stories
    from glm3_teach.dialogues import shop_tool_schemas, tool_intent_dialogue

    schemas, items = shop_tool_schemas(), []
    for intent, by_lang in PROBE.items():
        for lang, templates in by_lang.items():
            for k, template in enumerate(templates):
                for n in range(per_template):
                    rng = stories.stable_rng(seed, "probe", intent, lang, k, n)
                    messages, meta = tool_intent_dialogue(intent, template, lang, rng, "heldout")
                    meta = {"intent": intent, "lang": lang, "template": f"probe.{intent}.{lang}.{k}", "split": "probe", **meta}
                    items.append({"tools": schemas, "conversations": messages, "meta": meta})
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/tool_probe.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a checkpoint folder, e.g. data/checkpoints/chat")
    parser.add_argument("--per-template", type=int, default=3, help="times each phrasing is asked (default 3)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not Path(args.model, "config.json").is_file():
        parser.error(f"{args.model} is not a checkpoint folder (it has no config.json)")
    if args.per_template < 1:
        parser.error(f"--per-template must be 1 or more, got {args.per_template}")
    import torch

    from glm3_teach import load_pretrained, load_tokenizer
    from glm3_teach.agent import by_intent, tool_metrics

    torch.set_num_threads(args.threads)
    model, tokenizer = load_pretrained(args.model, dtype=torch.float32), load_tokenizer(args.model)
    metrics = tool_metrics(model, tokenizer, probe_items(args.per_template), ask_turns=False, return_results=True)
    intents = by_intent(metrics.pop("results"))   # call_ok: the exactly right calls of each intent
    print(json.dumps({"model": args.model, **metrics, "by_intent": intents}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    from glm3_teach.errors import cli_main

    raise SystemExit(cli_main("python tools/tool_probe.py", main))
