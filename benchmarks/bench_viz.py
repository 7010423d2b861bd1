"""How fast the attention viewer reacts: milliseconds per interaction in headless Chromium.

The issue's target: switching head or layer, or hovering a token, updates "in well under a
second" on a 64-token input. This script exports the viewer (``viz.save_attention_html``) for
a 64-token input on two models, the shipped base checkpoint (4 layers x 4 heads) and a random
config with ChatGLM3-6B's attention layout (28 layers x 32 heads, 2 KV groups, tiny width),
opens each in Debian's Chromium through Playwright, and times each interaction from the event
to the second animation frame after it (so layout and paint are included). It also times the
Python side once per sentence and model (``attention_payload``: forward pass + scores).

    python benchmarks/bench_viz.py                 # about a minute
    python benchmarks/bench_viz.py --repeat 20

Each row gives the median and the worst of ``--repeat`` runs and the ratio to the 1000 ms budget.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from glm3_teach import load_tokenizer, viz
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.viz.capture import load_choice, model_choices

BUDGET_MS = 1000.0
SENTENCE = "小猫喜欢喝绿茶。The cat likes tea. 它每天早上都喝一杯乌龙茶，然后出门散步。"

TIMED = """async ([action, arg]) => {
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const t0 = performance.now();
  if (action === "head") { const s = document.querySelector(".av-head"); s.value = arg; s.dispatchEvent(new Event("change")); }
  if (action === "layer") { const s = document.querySelector(".av-layer"); s.value = arg; s.dispatchEvent(new Event("change")); }
  if (action === "hover") document.querySelectorAll(".av-left .av-tok")[arg].dispatchEvent(new MouseEvent("mouseover", {bubbles: true}));
  if (action === "view") document.querySelectorAll(".av-tab")[arg].click();
  await frame(); await frame();
  return performance.now() - t0;
}"""


def sixty_four_ids(tokenizer) -> list[int]:
    ids = tokenizer.encode(SENTENCE * 4, add_special_tokens=True)
    return ids[:64]


def models() -> list[tuple[str, torch.nn.Module, object]]:
    tokenizer = load_tokenizer()
    out = []
    if model_choices().get("base") is not None:
        out.append(("base 4x4",) + load_choice(model_choices()["base"]))
    torch.manual_seed(0)
    wide = ChatGLMConfig.course(num_layers=28, num_attention_heads=32, kv_channels=4, hidden_size=64,
                                ffn_hidden_size=32, multi_query_group_num=2)
    out.append(("6B layout 28x32", ChatGLMForCausalLM(wide).eval(), tokenizer))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for name, model, tokenizer in models():
            ids = sixty_four_ids(tokenizer)
            start = time.perf_counter()
            viz.attention_payload(model, tokenizer, ids)
            rows.append((name, "python: payload (forward + scores)", [1000 * (time.perf_counter() - start)]))
            path = viz.save_attention_html(model, tokenizer, ids, Path(tmp) / "v.html", name=name)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(path.as_uri())
            page.wait_for_selector(".av-right .av-tok")
            heads, layers = model.config.num_attention_heads, model.config.num_layers
            actions = [("head: all -> one", "head", [str(r % heads) for r in range(args.repeat)]),
                       ("head: one -> all", "head", ["-1"] * args.repeat),
                       ("layer (all heads)", "layer", [str((r + 1) % layers) for r in range(args.repeat)]),
                       ("hover a query token", "hover", [(7 * r + 5) % 64 for r in range(args.repeat)]),
                       ("model view (grid)", "view", [1] * args.repeat), ("back to head view", "view", [0] * args.repeat)]
            for label, action, values in actions:
                rows.append((name, f"js: {label}", [page.evaluate(TIMED, [action, value]) for value in values]))
            page.close()
        browser.close()
    print(f"{'model':<17} {'interaction (64 tokens)':<36} {'median ms':>9} {'worst ms':>9} {'worst/budget':>12}")
    for name, label, times in rows:
        print(f"{name:<17} {label:<36} {statistics.median(times):9.1f} {max(times):9.1f} {max(times) / BUDGET_MS:12.3f}")


if __name__ == "__main__":
    main()
