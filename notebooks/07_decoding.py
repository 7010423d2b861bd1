# %% [markdown]
# # 07 · 解码 Decoding
#
# Lesson 06 trained a small ChatGLM3 to predict the next token. A model that predicts is not yet
# a model that writes: something has to turn its next-token **logits** into a choice, append the
# choice, and ask again. That loop is **decoding**, and its settings decide whether the same
# model sounds dull, creative or broken. This lesson writes the loop, the ways to choose a token,
# and the **KV cache** that makes the loop fast.
#
# **You will learn**
# - how logits become a probability distribution over the next token;
# - greedy decoding, and why it falls into repetition loops;
# - four small logits transforms, one at a time: **temperature**, **top-k**, **top-p** (nucleus)
#   and the **repetition penalty**, each with a picture of what it does to the distribution;
# - ChatGLM3's defaults (sampling with `top_p=0.8, temperature=0.8`) and why;
# - stop tokens, batches of prompts of different lengths (left padding), reproducible sampling;
# - the KV cache: why decoding without it is quadratic, what it stores (keys after RoPE, before
#   the group expansion), its memory for ChatGLM3-6B, and its measured speed-up;
# - streaming text to the screen without ever showing half a Chinese character.

# %% [markdown]
# ## 1. Setup
#
# We decode with the **base model** that lesson 06 trained (`data/checkpoints/base`, made by
# `python -m glm3_teach.train --config configs/base.toml`). It is stored in bf16; we load it in
# fp32, so greedy decoding gives the same tokens on every machine.

# %% tags=["nbval-ignore-output"]
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from glm3_teach import (ChatGLMConfig, check, count_parameters, load_pretrained, load_tokenizer, pick_device,
                        seed_everything)
from glm3_teach.fonts import use_cjk_font
from glm3_teach.paths import data_dir

device = pick_device()
seed_everything(0)
use_cjk_font()
CHECKPOINT = data_dir() / "checkpoints" / "base"
model = load_pretrained(CHECKPOINT, dtype=torch.float32, device=device)
tok = load_tokenizer(CHECKPOINT)
print("device:", device)

# %% tags=["nbval-check-output"]
config = model.config
print(f"{count_parameters(config):,} parameters | {config.num_layers} layers | hidden {config.hidden_size} | "
      f"{config.num_attention_heads} heads, {config.num_kv_groups} KV groups of {config.kv_channels} dims | "
      f"vocab {config.padded_vocab_size} | seq_length {config.seq_length}")
glm6b = ChatGLMConfig.chatglm3_6b()
print(f"ChatGLM3-6B has {count_parameters(glm6b) / count_parameters(config):,.0f} times as many parameters")
assert count_parameters(glm6b) > 1000 * count_parameters(config)


# %% [markdown]
# ## 2. From logits to a next-token distribution
#
# The model reads a prompt and returns one row of logits per position, `[batch, seq, vocab]`.
# Only the **last** row matters for what comes next. A softmax turns it into probabilities.
# A small helper encodes a prompt as a `[1, seq]` tensor on the device:

# %%
def encode(text):
    return torch.tensor([tok.encode(text)]).to(device)  # [1, seq]


prompt_ids = encode("林阿姨泡了两杯")  # "Aunt Lin brewed two cups of"
with torch.no_grad():
    logits = model(prompt_ids).logits                    # [1, seq, vocab]
next_logits = logits[0, -1].float().cpu()               # [vocab]: the prediction after the last token
next_probs = torch.softmax(next_logits, dim=-1)
print(list(logits.shape), "->", list(next_probs.shape))


# %% [markdown]
# The ten most likely next tokens, with their probabilities. The model has learned the tea shop's
# five teas (红茶 black, 乌龙茶 oolong, 茉莉花茶 jasmine, 绿茶 green, 普洱茶 pu-erh) and spreads
# its bets over them:

# %% tags=["nbval-check-output"]
def show_top(probs, k=10):
    top = torch.topk(probs, k)
    for p, i in zip(top.values.tolist(), top.indices.tolist()):
        print(f"{i:>5}  {tok.token_text(i)!r:<10} {p:6.3f}")


show_top(next_probs)
assert abs(next_probs.sum().item() - 1) < 1e-5
teas = [tok.encode(t)[0] for t in ["红茶", "乌龙茶", "茉莉花茶", "绿茶", "普洱茶"]]
assert set(teas) == set(torch.topk(next_probs, 5).indices.tolist())


# %% [markdown]
# As a picture. Every decoding method below starts from this distribution and decides which bar to
# pick; they differ only in how they reshape it first.

# %%
def bar_labels(ids):
    return [tok.token_text(i).replace("\n", "\\n") for i in ids]


def plot_top(ax, probs, k=12, title="", color="tab:blue"):
    top = torch.topk(probs, k)
    ax.bar(range(k), top.values.numpy(), color=color)
    ax.set_xticks(range(k), bar_labels(top.indices.tolist()), rotation=60, fontsize=9)
    ax.set_ylabel("概率 probability")
    ax.set_title(title)


fig, ax = plt.subplots(figsize=(8, 3.2))
plot_top(ax, next_probs, title="「林阿姨泡了两杯」之后的下一个词元 next token")
plt.show()


# %% [markdown]
# ## 3. 贪心解码 Greedy decoding
#
# The simplest rule: always take the most likely token (arg-max), append it, run the model on the
# longer sequence, repeat. Written out, recomputing the whole sequence every step:

# %%
def greedy(model, input_ids, max_new_tokens):
    ids = input_ids                                          # [batch, seq]
    for _ in range(max_new_tokens):
        with torch.no_grad():
            last_logits = model(ids).logits[:, -1]           # [batch, vocab]
        next_id = last_logits.argmax(dim=-1, keepdim=True)   # [batch, 1]
        ids = torch.cat([ids, next_id], dim=1)               # [batch, seq + 1]
    return ids


# %% [markdown]
# The package's `generate` (in `glm3_teach.generate`) does the same when asked for greedy decoding
# without the cache, token for token:

# %% tags=["nbval-check-output"]
from glm3_teach.generate import generate

ours = greedy(model, prompt_ids, 30)
assert torch.equal(ours, generate(model, prompt_ids, 30, use_cache=False))
print(tok.decode(ours[0].tolist()))


# %% [markdown]
# Greedy decoding is deterministic: the same prompt always gives the same text, so every user who
# types it gets the same answer. Worse, it can **loop**: once a phrase is the most likely
# continuation of itself, arg-max repeats it forever. The base model was trained on stories built
# from templates (lesson 00), and a maths lesson where the teacher asks question after question is
# one of them. Prompted with 小猫，小猫， ("kitty, kitty,"), greedy decoding ends up in that lesson
# and never gets out. To measure it, count the share of 4-token windows (4-grams) of the new text
# that already occurred earlier in it:

# %% tags=["nbval-check-output"]
def repeated_ngrams(ids, n=4):
    """Share of the n-grams of ``ids`` that occurred before in ``ids`` (0 = no repetition)."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    seen, repeats = set(), 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / max(len(grams), 1)


loop_prompt = encode("小猫，小猫，")
greedy_ids = generate(model, loop_prompt, 200)[0, loop_prompt.shape[1]:].tolist()
greedy_repeats = repeated_ngrams(greedy_ids)
print(tok.decode(greedy_ids))
print(f"repeated 4-grams: {greedy_repeats:.2f}")
assert greedy_repeats > 0.4


# %% [markdown]
# More than 40% of the 4-grams of that greedy text are repeats: the same question, the same (wrong)
# answer, the same praise, again and again. Real ChatGLM3-6B loops less (it has over a thousand
# times more parameters), but the cure is the same: stop always taking the top token.
#
# ## 4. 温度 Temperature
#
# Sampling draws the next token at random from the distribution. **Temperature** `T` reshapes the
# distribution first: divide the logits by `T`, then softmax. `T < 1` sharpens it (towards greedy,
# which is the limit `T → 0`), `T > 1` flattens it (towards uniform), `T = 1` is the model's own
# distribution.

# %%
def with_temperature(logits, temperature):
    return logits / temperature


# %% tags=["nbval-check-output"]
from glm3_teach.generate import apply_temperature

batch_of_logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))  # [batch, vocab]
result = check("temperature", with_temperature, apply_temperature,
               [(batch_of_logits, 0.5), (batch_of_logits, 1.0), (batch_of_logits, 2.0)])


# %% [markdown]
# How much choice is left is measured by the **entropy** of the distribution, in bits: 0 means one
# certain token, `log2(k)` means `k` equally likely tokens. On our example:

# %% tags=["nbval-check-output"]
def entropy_bits(probs):
    p = probs[probs > 0]
    return -(p * p.log2()).sum().item()


temperatures = [0.5, 0.8, 1.0, 1.5]
entropies = [entropy_bits(torch.softmax(with_temperature(next_logits, t), -1)) for t in temperatures]
for t, h in zip(temperatures, entropies):
    top = torch.softmax(with_temperature(next_logits, t), -1).max().item()
    print(f"T = {t}: entropy {h:5.2f} bits, top token {top:.3f}")
assert entropies == sorted(entropies)  # hotter = more spread out

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
for ax, t in zip(axes, [0.5, 1.0, 1.5]):
    plot_top(ax, torch.softmax(with_temperature(next_logits, t), -1), k=10, title=f"T = {t}")
fig.suptitle("温度 temperature: 同一个 logits，不同的分布")
plt.tight_layout()
plt.show()


# %% [markdown]
# ## 5. Top-k
#
# Even at a sensible temperature, the thousands of tokens in the long tail each have a tiny
# probability, and together they are drawn surprisingly often: one bad token can derail a whole
# sentence. **Top-k** keeps only the `k` most likely tokens (logits of the rest become `-inf`, so
# their probability is 0) and renormalises.

# %%
def keep_top_k(logits, k):
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]   # [batch, 1]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


# %% tags=["nbval-check-output"]
from glm3_teach.generate import apply_top_k

result = check("top_k", keep_top_k, apply_top_k,
               [(batch_of_logits, 1), (batch_of_logits, 5), (torch.tensor([[1.0, 3.0, 3.0, 2.0]]), 2)],
               hint="ties with the k-th largest logit are kept, as in Hugging Face")

# %% [markdown]
# How much of the distribution did the tail hold here? Lesson 06's model spreads its bets:

# %% tags=["nbval-check-output"]
tail_mass = {k: 1 - next_probs.topk(k).values.sum().item() for k in (1, 5, 20, 100)}
for k, mass in tail_mass.items():
    print(f"outside the top {k:>3}: {mass:.3f}")
assert tail_mass[5] > tail_mass[20] > tail_mass[100]


# %% [markdown]
# A fixed `k` is a blunt tool, because how many tokens deserve a chance changes from one position
# to the next. After "The Clear Spring Tea" (the name of the stories' tea shop) only " Shop" fits,
# and this model is certain of it: whatever `k`, the draw is " Shop". After 有一天， ("one day,") many
# animals could be the hero of the story, and `k = 5` cuts good ones. How many tokens does it take
# to cover 80% of the probability in each case, and how much probability does `k = 5` throw away?

# %% tags=["nbval-check-output"]
def tokens_for_mass(probs, mass):
    return int((torch.sort(probs, descending=True).values.cumsum(0) < mass).sum()) + 1


contexts = {"The Clear Spring Tea": None, "有一天，": None}
for text in contexts:
    with torch.no_grad():
        contexts[text] = torch.softmax(model(encode(text)).logits[0, -1].float().cpu(), -1)
    print(f"after {text!r:<22} top token {contexts[text].max().item():.3f}, "
          f"tokens for 80%: {tokens_for_mass(contexts[text], 0.8)}")
peaked, flat = contexts["The Clear Spring Tea"], contexts["有一天，"]
flat_cut = 1 - flat.topk(5).values.sum().item()
print(f"after '有一天，' top-5 discards {flat_cut:.2f} of the probability")
assert peaked.max().item() > 0.999 and tokens_for_mass(peaked, 0.8) == 1
assert tokens_for_mass(flat, 0.8) > 5 and flat_cut > 0.2

# %% [markdown]
# ## 6. Top-p (nucleus)
#
# **Top-p** adapts the cut to the distribution: sort the tokens by probability and keep the
# smallest set whose probabilities add up to at least `p`. A peaked distribution keeps one or two
# tokens, a flat one keeps many. By hand, on the flat example: the sorted probabilities, their
# running total, and where it crosses `p = 0.8`:

# %% tags=["nbval-check-output"]
sorted_probs = torch.sort(flat, descending=True).values
running = sorted_probs.cumsum(0)
print("sorted: ", [round(p, 3) for p in sorted_probs[:8].tolist()])
print("running:", [round(p, 3) for p in running[:8].tolist()])
kept_by_hand = int((running - sorted_probs < 0.8).sum())  # a token is kept if the mass ranked above it is < p
print("kept for p = 0.8:", kept_by_hand)

# %% [markdown]
# The package's `apply_top_p` keeps exactly those tokens (writing it yourself is exercise 1). On
# both contexts:

# %% tags=["nbval-check-output"]
from glm3_teach.generate import apply_top_p

for name, probs in [("The Clear Spring Tea", peaked), ("有一天，", flat)]:
    kept = torch.isfinite(apply_top_p(probs.log()[None], 0.8)).sum().item()
    print(f"{name!r:<22} top-p 0.8 keeps {kept} tokens")
    assert kept == tokens_for_mass(probs, 0.8)
assert torch.isfinite(apply_top_p(flat.log()[None], 0.8)).sum().item() == kept_by_hand

# %% [markdown]
# The running total of the two distributions, and the line at `p = 0.8`; top-p keeps the tokens
# left of where each curve crosses it.

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
curves = [("The Clear Spring Tea → Shop (peaked)", peaked, "tab:green"), ("有一天， (flat)", flat, "tab:blue")]
for name, probs, color in curves:
    total = torch.sort(probs, descending=True).values.cumsum(0)[:200]
    ax.plot(range(1, len(total) + 1), total.numpy(), color=color, label=name)
    ax.axvline(tokens_for_mass(probs, 0.8), color=color, linestyle=":")
ax.axhline(0.8, color="gray", linestyle="--", label="p = 0.8")
ax.set_xscale("log")
ax.set_xlabel("按概率排序的词元数 tokens, most likely first")
ax.set_ylabel("累计概率 cumulative probability")
ax.legend()
plt.show()


# %% [markdown]
# ## 7. 重复惩罚 Repetition penalty
#
# Sampling breaks greedy's loops by chance; the **repetition penalty** (from the CTRL paper) attacks
# them directly: every token that already occurs in the prompt or the text so far gets a lower
# logit. ChatGLM3 uses Hugging Face's version: a seen token's logit is **divided** by the penalty if
# it is positive and **multiplied** by it if negative, so with a penalty above 1 it always goes down.
# Each seen token is penalised once, however often it occurred.

# %%
def penalize(logits, seen_ids, penalty):
    seen = torch.gather(logits, 1, seen_ids)                        # [batch, seq]: logits of seen tokens
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, seen_ids, seen)                        # [batch, vocab]


# %% tags=["nbval-check-output"]
from glm3_teach.generate import apply_repetition_penalty

seen_ids = torch.tensor([[0, 1, 1, 7], [3, 3, 3, 3], [49, 0, 2, 5]])
result = check("repetition_penalty", penalize, apply_repetition_penalty,
               [(batch_of_logits, seen_ids, 1.2), (batch_of_logits, seen_ids, 1.0), (batch_of_logits, seen_ids, 0.8)],
               hint="divide positive logits, multiply negative ones")


# %% [markdown]
# Take the greedy text above up to where it first repeats a 4-gram, one token into the repeat:
# what does the model want next, before and after a penalty of 1.3 on everything already written?
# (Orange bars: tokens already seen.)

# %%
def first_repeat(ids, n=4):
    """Index where the first n-gram that occurred before starts (len(ids) if none)."""
    seen = set()
    for i in range(len(ids) - n + 1):
        if tuple(ids[i:i + n]) in seen:
            return i
        seen.add(tuple(ids[i:i + n]))
    return len(ids)


loop_start = first_repeat(greedy_ids)
loop_context = torch.tensor([loop_prompt[0].tolist() + greedy_ids[:loop_start + 1]]).to(device)   # [1, seq]
print("context ends:", repr(tok.decode(loop_context[0, -12:].tolist())))
with torch.no_grad():
    loop_logits = model(loop_context).logits[:, -1].float().cpu()                     # [1, vocab]
already = set(loop_context[0].tolist())
fig, axes = plt.subplots(1, 2, figsize=(12, 3.2), sharey=True)
for ax, penalty in zip(axes, [1.0, 1.3]):
    probs = torch.softmax(penalize(loop_logits, loop_context.cpu(), penalty), -1)[0]
    top = torch.topk(probs, 10).indices.tolist()
    ax.bar(range(10), probs[top].numpy(), color=["tab:orange" if i in already else "tab:blue" for i in top])
    ax.set_xticks(range(10), bar_labels(top), rotation=60)
    ax.set_title(f"repetition_penalty = {penalty}")
axes[0].set_ylabel("概率 probability")
plt.tight_layout()
plt.show()

# %% [markdown]
# With the penalty, greedy decoding from the same prompt leaves the maths lesson after one question
# and runs on into the next stories:

# %% tags=["nbval-check-output"]
penalized_ids = generate(model, loop_prompt, 200, repetition_penalty=1.3)[0, loop_prompt.shape[1]:].tolist()
penalized_repeats = repeated_ngrams(penalized_ids)
print(tok.decode(penalized_ids))
print(f"repeated 4-grams: {greedy_repeats:.2f} without the penalty, {penalized_repeats:.2f} with 1.3")
assert penalized_repeats < greedy_repeats / 2

# %% [markdown]
# The price: the penalty also hits tokens that *should* repeat. Names, 茶, punctuation (，。the) are
# all "seen" after a few sentences, so a strong penalty pushes the model away from them too, and
# long texts grow odd. ChatGLM3's `chat()`
# does not set one (it stays 1.0) and relies on sampling instead.
#
# ## 8. The whole pipeline, and a sampling explorer
#
# `generate` applies the transforms in Hugging Face's order: repetition penalty, then (when
# sampling) temperature, top-k, top-p; then softmax and one draw. `next_token_probs` returns that
# final distribution. The explorer below redraws it for one of three contexts as you move the
# sliders: the tea question of section 2, the open start of a story, and the maths-lesson loop.
# Its pieces are ordinary functions: `sampling_view` computes what the chart shows,
# `sampling_figure` draws it, and `draw_sampling` (the callback) shows it. Here the numbers come
# first, with ChatGLM3's settings (`T = 0.8`, top-p 0.8, and
# the top-k 50 it inherits from Hugging Face, see section 9).

# %% tags=["nbval-check-output"]
from glm3_teach.generate import CHATGLM3_TEMPERATURE, CHATGLM3_TOP_P, next_token_probs

CHATGLM3_SETTINGS = dict(temperature=CHATGLM3_TEMPERATURE, top_k=50, top_p=CHATGLM3_TOP_P, repetition_penalty=1.0)
explorer_contexts = {}
for text, ids in [("林阿姨泡了两杯", prompt_ids), ("有一天，", encode("有一天，")),
                  ("…" + tok.decode(loop_context[0, -12:].tolist()), loop_context)]:
    with torch.no_grad():
        explorer_contexts[text] = (model(ids).logits[0, -1].float().cpu(), ids.cpu())  # ([vocab], [1, seq])


def sampling_view(context, temperature, top_k, top_p, repetition_penalty, k=12):
    """The ``k`` likeliest tokens before top-k/top-p cut, their probability before and after, and what is 'seen'."""
    logits, seen = explorer_contexts[context]
    before = next_token_probs(logits, seen, temperature=temperature, repetition_penalty=repetition_penalty)
    after = next_token_probs(logits, seen, temperature=temperature, top_k=top_k or None, top_p=top_p,
                             repetition_penalty=repetition_penalty)
    ids = torch.topk(before, k).indices.tolist()
    return {"ids": ids, "before": before[ids], "after": after[ids], "kept": int((after > 0).sum()),
            "seen": sorted(set(seen[0].tolist()))}


def settings_text(temperature, top_k, top_p, repetition_penalty):
    return f"T={temperature:.2f}, top-k={top_k or 'off'}, top-p={top_p:.2f}, penalty={repetition_penalty:.2f}"


def sampling_figure(context="林阿姨泡了两杯", temperature=0.8, top_k=50, top_p=0.8, repetition_penalty=1.0):
    """The chart of the distribution `generate` samples from after ``context``: ``(figure, sampling_view numbers)``.

    Blue: tokens that can be drawn (their final probability). Grey: tokens cut by top-k or top-p,
    drawn at the probability they had before the cut. An orange edge: a token the penalty counts as seen.
    """
    view = sampling_view(context, temperature, top_k, top_p, repetition_penalty)
    kept = view["after"] > 0
    heights = torch.where(kept, view["after"], view["before"]).numpy()
    fig, ax = plt.subplots(figsize=(7.5, 2.6))
    ax.bar(range(len(heights)), heights, color=["tab:blue" if k else "lightgrey" for k in kept.tolist()],
           edgecolor=["tab:orange" if i in view["seen"] and repetition_penalty != 1 else "none" for i in view["ids"]],
           linewidth=2)
    ax.set_xticks(range(len(heights)), bar_labels(view["ids"]), rotation=60, fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("概率 probability")
    ax.set_title(f"{settings_text(temperature, top_k, top_p, repetition_penalty)}: {view['kept']} token(s) "
                 f"can be drawn; grey = cut", fontsize=9)
    fig.tight_layout()
    return fig, view


def draw_sampling(**settings):
    """Show ``sampling_figure(**settings)`` (the explorer's callback); return its numbers."""
    fig, view = sampling_figure(**settings)
    plt.show()
    return view


def seen_text(context):
    """The tokens the repetition penalty counts as seen after ``context``: each distinct token once."""
    return "seen by the penalty: " + " ".join(repr(t) for t in bar_labels(sampling_view(context, 1, 0, 1, 1)["seen"]))


default_view = sampling_view("林阿姨泡了两杯", **CHATGLM3_SETTINGS)
cut_from_view = (default_view["after"] == 0) & (default_view["before"] > 0)
print(settings_text(**CHATGLM3_SETTINGS), "| drawable:", default_view["kept"],
      "| shown greyed (cut by top-p):", int(cut_from_view.sum()))
print(seen_text("林阿姨泡了两杯"))
assert default_view["kept"] == 3 and cut_from_view.sum() >= 2

# %% [markdown]
# With ChatGLM3's settings only three of the five teas can be drawn: `T = 0.8` sharpens the
# distribution, and the nucleus of 0.8 is full after 红茶, 乌龙茶 and 茉莉花茶; the other tokens of
# the chart stay on it, grey, at the height they had before the cut. In JupyterLab the cell below
# shows the controls with that chart under them: move the sliders or switch the context and it
# follows; the button puts ChatGLM3's settings back. (A saved or exported copy of the notebook
# shows the picture of the default view instead: the controls need a running kernel.)
# The line under the controls names the tokens the repetition penalty counts as already seen:
# every distinct token of the context, prompt included.

# %% tags=["nbval-ignore-output"]
import base64
import io

import ipywidgets as widgets
from IPython.display import display

wide = {"description_width": "9em"}
controls = {
    "context": widgets.Dropdown(options=list(explorer_contexts), description="上下文 context", style=wide,
                                layout=widgets.Layout(width="24em")),
    "temperature": widgets.FloatSlider(min=0.1, max=2.0, step=0.05, readout_format=".2f", description="温度 T",
                                       style=wide),
    "top_k": widgets.IntSlider(min=0, max=100, description="top-k (0 = off)", style=wide),
    "top_p": widgets.FloatSlider(min=0.05, max=1.0, step=0.05, readout_format=".2f", description="top-p",
                                 style=wide),
    "repetition_penalty": widgets.FloatSlider(min=1.0, max=2.0, step=0.05, readout_format=".2f",
                                              description="penalty", style=wide),
}
reset = widgets.Button(description="ChatGLM3's settings", icon="undo", tooltip="T 0.8, top-k 50, top-p 0.8, no penalty")
seen_line = widgets.Label()
live_chart = widgets.Output()


def reset_to_chatglm3(_=None):
    for name, value in CHATGLM3_SETTINGS.items():
        controls[name].value = value


def redraw(_=None):
    values = {name: control.value for name, control in controls.items()}
    seen_line.value = seen_text(values["context"])[:300]
    with live_chart:
        live_chart.clear_output(wait=True)
        draw_sampling(**values)


def png_of(fig):
    """The figure as base64 PNG text (the static picture a saved notebook shows), then closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


static_fig, static_view = sampling_figure(**CHATGLM3_SETTINGS)   # ChatGLM3's settings
assert static_view["kept"] == 3
reset_to_chatglm3()
for control in controls.values():
    control.observe(redraw, names="value")
reset.on_click(reset_to_chatglm3)
redraw()
explorer = widgets.VBox([widgets.HBox([controls["context"], reset]),
                         widgets.HBox([controls["temperature"], controls["top_k"]]),
                         widgets.HBox([controls["top_p"], controls["repetition_penalty"]]), seen_line, live_chart])
# A running JupyterLab shows the live explorer; a saved or exported copy shows the picture of its default view.
display({"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                      "model_id": explorer.model_id},
         "image/png": png_of(static_fig),
         "text/plain": "sampling explorer (ChatGLM3's settings; run the cell in JupyterLab to move the sliders)"},
        raw=True)

# %% [markdown]
# ## 9. Sampling, reproducibly, and ChatGLM3's defaults
#
# `generate(..., do_sample=True)` draws with `torch.multinomial`. A seeded `torch.Generator` makes
# the draws repeatable (and independent of any other random numbers the notebook uses); the draws
# happen on the generator's device, so a CPU generator gives the same draws on a GPU machine, as
# long as the probabilities agree.

# %% tags=["nbval-check-output"]
from glm3_teach.generate import CHATGLM3_TEMPERATURE, CHATGLM3_TOP_P, stop_token_ids

stops = stop_token_ids(tok)
story_prompt = encode("有一天，")
first = generate(model, story_prompt, 40, do_sample=True, temperature=0.8, top_p=0.8, eos_token_ids=stops,
                 generator=torch.Generator().manual_seed(1))
again = generate(model, story_prompt, 40, do_sample=True, temperature=0.8, top_p=0.8, eos_token_ids=stops,
                 generator=torch.Generator().manual_seed(1))
assert torch.equal(first, again)
print("ChatGLM3 chat() defaults: temperature", CHATGLM3_TEMPERATURE, "top_p", CHATGLM3_TOP_P)

# %% [markdown]
# Three samples with three seeds (on a GPU they may read differently: its logits differ from the
# CPU's in the last bits, which can tip a draw):

# %%
seed_samples = {}
for seed in (1, 2, 3):
    out = generate(model, story_prompt, 40, do_sample=True, temperature=0.8, top_p=0.8, eos_token_ids=stops,
                   generator=torch.Generator().manual_seed(seed))
    seed_samples[seed] = out
    print(seed, repr(tok.decode(out[0].tolist())))

# %% [markdown]
# Different seeds can give the same text, as seeds 1 and 3 do here on the CPU. That is not a
# broken generator. At most positions this model is so sure that the nucleus of `top_p = 0.8`
# holds a single token, and the draw has no choice; the text then depends only on the few positions
# with a real choice, where two seeds can easily pick alike. Counted along seed 1's sample:

# %% tags=["nbval-check-output"]
with torch.no_grad():
    step_logits = model(seed_samples[1]).logits[0, story_prompt.shape[1] - 1:-1].float().cpu()  # [new, vocab]
nucleus = (next_token_probs(step_logits, None, temperature=0.8, top_p=0.8) > 0).sum(-1)   # [new]
choices = int((nucleus > 1).sum())
print(f"{choices} of {len(nucleus)} positions had more than one token to draw from")
assert choices < len(nucleus) / 2


# %% [markdown]
# Why `temperature=0.8, top_p=0.8`? Compare settings on 16 samples of 150 tokens each after the
# looping prompt 小猫，小猫，, with two numbers: the share of repeated 4-grams (loops), and the
# **surprise** of the text, its average negative log-likelihood per token under the model itself
# at `T = 1` (high = the model finds its own text unlikely: incoherent). Greedy has the lowest
# surprise but loops; pure sampling (`T = 1`, no filter) loops far less but draws tail tokens and
# rambles; ChatGLM3's setting lies between the two: its surprise is well above greedy's (it closes
# only about a third of the gap from pure sampling down to greedy), with a fraction of greedy's
# loops; `T = 1.5` is gibberish.

# %% tags=["nbval-ignore-output"]
def sample_stats(settings, prompt, n=16, new=150):
    batch = prompt.repeat(n, 1)                                              # [n, prompt_len]
    out = generate(model, batch, new, eos_token_ids=[], generator=torch.Generator().manual_seed(0), **settings)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(out).logits[:, :-1].float(), -1)  # [n, seq - 1, vocab]
    new_ids = out[:, prompt.shape[1]:]                                       # [n, new]
    token_lp = logprobs[:, prompt.shape[1] - 1:].gather(2, new_ids[..., None])[..., 0]  # [n, new]
    repeats = np.mean([repeated_ngrams(row) for row in new_ids.tolist()])
    return repeats, -token_lp.mean().item()


settings = {"greedy": dict(),
            "T=1.0, no filter": dict(do_sample=True, temperature=1.0),
            "T=0.8, top-p 0.8 (ChatGLM3)": dict(do_sample=True, temperature=0.8, top_p=0.8),
            "T=1.5, no filter": dict(do_sample=True, temperature=1.5)}
stats = {name: sample_stats(s, loop_prompt) for name, s in settings.items()}
print(f"{'setting':<30} {'repeated 4-grams':>17} {'surprise (nats/token)':>22}")
for name, (repeats, surprise) in stats.items():
    print(f"{name:<30} {repeats:>17.2f} {surprise:>22.2f}")
assert stats["T=0.8, top-p 0.8 (ChatGLM3)"][0] < stats["greedy"][0] / 3
assert stats["T=1.0, no filter"][0] < stats["greedy"][0] / 3
assert stats["greedy"][1] < stats["T=0.8, top-p 0.8 (ChatGLM3)"][1] < stats["T=1.0, no filter"][1]
assert stats["T=1.0, no filter"][1] < stats["T=1.5, no filter"][1]
gap_closed = (stats["T=1.0, no filter"][1] - stats["T=0.8, top-p 0.8 (ChatGLM3)"][1]) / (
    stats["T=1.0, no filter"][1] - stats["greedy"][1])
print(f"ChatGLM3's setting closes {gap_closed:.0%} of the surprise gap between pure sampling and greedy")
assert 0.2 < gap_closed < 0.5

# %% [markdown]
# A chat model wants replies that are fluent (low surprise) and not stuck (few repeats), and
# different each time you ask; `T = 0.8` trims the tail a little, top-p 0.8 cuts it off where the
# model is confident, and keeps choice where it is not.
#
# **Is there a top-k too?** ChatGLM3's `chat()` passes only `do_sample`, `top_p` and `temperature`
# to Hugging Face's `generate()`, which takes every setting not passed from the model's generation
# config. ChatGLM3-6B ships none, so Hugging Face's defaults apply, and its default `top_k` is 50:
# the real model samples with top-k 50 *and* top-p 0.8 (Hugging Face applies temperature, then
# top-k, then top-p). The top-k 50 only matters when the 0.8 nucleus holds more than 50 tokens.
# For this model, at the positions of the 16 ChatGLM3-setting samples above:

# %% tags=["nbval-check-output"]
chatglm3_out = generate(model, loop_prompt.repeat(16, 1), 150, eos_token_ids=[], do_sample=True, temperature=0.8,
                        top_p=0.8, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    position_logits = model(chatglm3_out).logits[:, loop_prompt.shape[1] - 1:-1].float().cpu().flatten(0, 1)
nucleus_sizes = (next_token_probs(position_logits, None, temperature=0.8, top_p=0.8) > 0).sum(-1)  # [positions]
print(f"nucleus of top-p 0.8: median {nucleus_sizes.median().item()} tokens, largest {nucleus_sizes.max().item()}; "
      f"{(nucleus_sizes > 50).sum().item()} of {len(nucleus_sizes)} positions hold more than 50")
assert (nucleus_sizes > 50).float().mean() < 0.05

# %% [markdown]
# ## 10. Stop tokens and batches
#
# ChatGLM3's `chat()` stops when the model writes eos `</s>`, or starts a new turn with
# `<|user|>` or `<|observation|>`. `stop_token_ids(tok)` gives those three for any course
# tokenizer. `generate` itself knows only ids: without `eos_token_ids` (or with `[]`) it never
# stops early.

# %% tags=["nbval-check-output"]
print({tok.token_text(i): i for i in stops})
assert stops == [tok.eos_token_id, tok.special_id("<|user|>"), tok.special_id("<|observation|>")]

# %% [markdown]
# Several prompts decode together as one batch. They differ in length, so the shorter ones are
# **padded on the left** (every row's last token must be real, since the next token follows it)
# and an `attention_mask` marks the pads (0). As in ChatGLM3, each row's real tokens start at
# position 0; the model derives the positions from the mask:

# %% tags=["nbval-check-output"]
texts = ["小猫", "清泉茶铺", "One day, the little cat"]
rows = [tok.encode(t) for t in texts]
width = max(map(len, rows))
batch_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])        # [3, width]
batch_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])          # [3, width]
positions = (batch_mask.cumsum(-1) - 1).clamp(min=0)
print("input_ids:\n", batch_ids, "\nattention_mask:\n", batch_mask, "\nposition_ids:\n", positions)

# %% [markdown]
# Each row stops on its own when it writes a stop token (kept in the output); after that its row
# is filled with padding (by default the first stop id, `</s>`) until every row has stopped or
# `max_new_tokens` is reached. And the batch gives exactly the tokens each prompt gives alone:

# %% tags=["nbval-check-output"]
batch_out = generate(model, batch_ids.to(device), 80, attention_mask=batch_mask.to(device), eos_token_ids=stops)
for row, text in enumerate(texts):
    new = batch_out[row, width:].tolist()
    alone = generate(model, encode(text), 80, eos_token_ids=stops)[0, len(rows[row]):].tolist()
    assert new[:len(alone)] == alone and set(new[len(alone):]) <= {stops[0]}
    print(f"{text!r}: {len(alone)} new tokens, then {len(new) - len(alone)} pads | {tok.decode(alone)!r}")


# %% [markdown]
# ## 11. KV 缓存 The KV cache
#
# ### Why recomputing is quadratic
# `greedy` above runs the whole sequence through the model at every step. Producing `n` tokens after
# a `p`-token prompt processes `p + (p+1) + ... + (p+n-1) = n·p + n(n-1)/2` positions: quadratic in
# `n`. Yet the keys and values of the old positions never change (attention is causal: an old token
# never sees the new one). Cache them, and each step needs only the new token: `p + n - 1`
# positions in all.

# %% tags=["nbval-check-output"]
def positions_processed(p, n, cached):
    return p + n - 1 if cached else sum(p + i for i in range(n))


for n in (64, 256, 1024):
    without, with_cache = positions_processed(16, n, False), positions_processed(16, n, True)
    print(f"p=16, n={n:>4}: {without:>7,} positions without the cache, {with_cache:>5,} with it "
          f"({without / with_cache:.0f}x fewer)")
    assert without == n * 16 + n * (n - 1) // 2

# %% [markdown]
# ### What is cached
# `model(..., use_cache=True)` returns one `(k, v)` pair per layer, each
# `[batch, num_kv_groups, seq, head_dim]`: the **keys after RoPE** (each key is rotated once, for
# its own position, and never again) and **before the group expansion** (the cache holds 2 groups,
# not one copy per query head).

# %% tags=["nbval-check-output"]
kv_prompt = encode("有一天，小老鼠想到河对岸去，")                  # [1, seq]
with torch.no_grad():
    prefill = model(kv_prompt, use_cache=True)
k0, v0 = prefill.kv_cache[0]
print(len(prefill.kv_cache), "layers; layer 0: k", list(k0.shape), "v", list(v0.shape))
assert k0.shape == (1, config.num_kv_groups, kv_prompt.shape[1], config.kv_channels)

# %% [markdown]
# The cached keys of layer 0, recomputed by hand: RMSNorm, `query_key_value`, the split into
# heads, then RoPE at positions 0, 1, 2, ... They match only with RoPE applied:

# %% tags=["nbval-check-output"]
from glm3_teach.attention import split_qkv
from glm3_teach.rope import apply_rotary_pos_emb

layer0 = model.transformer.encoder.layers[0]
with torch.no_grad():
    hidden = layer0.input_layernorm(model.transformer.embedding(kv_prompt))            # [1, seq, hidden]
    _, k_plain, _ = split_qkv(layer0.self_attention.query_key_value(hidden), config.num_attention_heads,
                              config.num_kv_groups, config.kv_channels)                  # [1, groups, seq, head_dim]
    rope = model.transformer.rotary_pos_emb(config.seq_length)[: kv_prompt.shape[1]]   # [seq, pairs, 2]
    k_rotated = apply_rotary_pos_emb(k_plain, rope)
torch.testing.assert_close(k0, k_rotated)
print("cached keys == RoPE(keys):", True, "| == keys without RoPE:", torch.allclose(k0, k_plain, atol=1e-3))


# %% [markdown]
# ### Greedy decoding with the cache
# The prompt goes through once; then each step feeds only the new token, with the cache and with
# its **position**: the new token sits at index `len(ids) - 1` (the model could work it out from the
# cache's length; saying it shows what the rotation needs).

# %%
def greedy_cached(model, input_ids, max_new_tokens):
    with torch.no_grad():
        out = model(input_ids, use_cache=True)                               # the prompt, once
        ids = input_ids
        for step in range(max_new_tokens):
            next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)         # [batch, 1]
            ids = torch.cat([ids, next_id], dim=1)
            if step + 1 < max_new_tokens:
                position = torch.full_like(next_id, ids.shape[1] - 1)        # [batch, 1]
                out = model(next_id, position_ids=position, kv_cache=out.kv_cache, use_cache=True)
    return ids


# %% [markdown]
# The same tokens as recomputing everything, and as the package's `generate` (which uses the
# cache by default):

# %% tags=["nbval-check-output"]
cached = greedy_cached(model, kv_prompt, 60)
assert torch.equal(cached, greedy(model, kv_prompt, 60))
assert torch.equal(cached, generate(model, kv_prompt, 60))
print("identical 60 greedy tokens with and without the cache")

# %% [markdown]
# The logits themselves are not bit-identical (a one-token matrix product adds up in a different
# order than a whole-sequence one), but the difference is tiny next to the gap between the best and
# the second-best token, so the arg-max does not change. For the last step above:

# %% tags=["nbval-check-output"]
with torch.no_grad():
    full_logits = model(cached).logits[0, -1]                                          # recomputed
    past = model(cached[:, :-1], use_cache=True).kv_cache
    step_logits = model(cached[:, -1:], kv_cache=past).logits[0, -1]                   # one step with the cache
difference = (full_logits - step_logits).abs().max().item()
best_two = full_logits.topk(2).values
print(f"largest logit difference below 1e-4: {difference < 1e-4} | gap between the two best tokens above 0.01: "
      f"{(best_two[0] - best_two[1]).item() > 0.01}")
assert difference < 1e-4 and difference < (best_two[0] - best_two[1]).item()

# %% [markdown]
# ### Memory: why ChatGLM3 has 2 KV groups
# Per token the cache holds a key and a value per layer and per KV group:
# `2 × num_layers × num_kv_groups × head_dim` numbers. For ChatGLM3-6B in fp16:

# %% tags=["nbval-check-output"]
from glm3_teach.generate import kv_cache_bytes

per_token = 2 * glm6b.num_layers * glm6b.num_kv_groups * glm6b.kv_channels * 2          # bytes (fp16)
per_token_mha = 2 * glm6b.num_layers * glm6b.num_attention_heads * glm6b.kv_channels * 2  # one K/V per head
print(f"2 KV groups: {per_token:,} bytes/token = {per_token / 1024:.0f} KiB; "
      f"8192 tokens: {per_token * 8192 / 2**20:.0f} MiB")
print(f"32 heads (full multi-head): {per_token_mha:,} bytes/token = {per_token_mha / 1024:.0f} KiB; "
      f"8192 tokens: {per_token_mha * 8192 / 2**30:.1f} GiB")
assert per_token == kv_cache_bytes(glm6b) == 28_672 and per_token_mha == 16 * per_token
ours_bytes = sum(k.nbytes + v.nbytes for k, v in prefill.kv_cache)
assert ours_bytes == kv_cache_bytes(config, kv_prompt.shape[1], bytes_per_value=4)
print(f"our model (fp32): {kv_cache_bytes(config, bytes_per_value=4):,} bytes/token")
weights_fp16 = 2 * count_parameters(glm6b)
assert per_token * 8192 == 224 * 2**20 and per_token_mha * 8192 == 3.5 * 2**30
assert 0.25 * weights_fp16 < per_token_mha * 8192 < 0.5 * weights_fp16
assert round(weights_fp16 / 1e9, 1) == 12.5 and round(weights_fp16 / 2**30, 1) == 11.6

# %% [markdown]
# With full multi-head attention a single 8192-token conversation would need 3.5 GiB of cache,
# more than a quarter of the 12.5 GB (11.6 GiB) of fp16 weights; with 2 groups it needs 224 MiB, so a GPU can
# serve many conversations at once.

# %%
lengths = np.arange(0, 8193, 256)
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(lengths, per_token_mha * lengths / 2**30, label="32 个 KV 头 full multi-head")
ax.plot(lengths, per_token * lengths / 2**30, label="2 个 KV 组 ChatGLM3 (GQA)")
ax.set_xlabel("上下文长度 tokens in the conversation")
ax.set_ylabel("KV 缓存 GiB (fp16)")
ax.set_title("ChatGLM3-6B: KV cache of one conversation")
ax.legend()
plt.show()


# %% [markdown]
# ### Measured speed
# Time one decoding step at several sequence lengths: without the cache a step processes the
# whole sequence, with it one token. (Short measurements, best of a few; the numbers depend on
# the machine and what else runs on it.)

# %% tags=["nbval-ignore-output"]
def best_time(fn, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


step_lengths = [16, 64, 128, 192, 240]
random_ids = torch.randint(0, 4000, (1, max(step_lengths)), generator=torch.Generator().manual_seed(0)).to(device)
speed = {"no cache": [], "KV cache": []}
with torch.no_grad():
    for length in step_lengths:
        past = model(random_ids[:, :length - 1], use_cache=True).kv_cache
        speed["no cache"].append(1 / best_time(lambda: model(random_ids[:, :length])))
        speed["KV cache"].append(1 / best_time(lambda: model(random_ids[:, length - 1:length], kv_cache=past)))
fig, ax = plt.subplots(figsize=(7, 3.2))
for name, values in speed.items():
    ax.plot(step_lengths, values, marker="o", label=name)
ax.set_xlabel("序列长度 tokens already in the sequence")
ax.set_ylabel("词元/秒 new tokens per second (one step)")
ax.set_title("one decoding step: the whole sequence again (no cache) vs one new token (KV cache)", fontsize=9)
ax.set_yscale("log")
ax.legend()
plt.show()

# %% [markdown]
# ### Two designs for the cache
# The cache above is a list of `(k, v)` tuples, and each step makes it longer with `torch.cat`:
# a new tensor, into which the whole past is copied, in every layer, at every step. The model also
# re-checks its inputs at every call (are the ids inside the vocabulary? on a GPU each such check
# makes the host wait for the device). The second design, `glm3_teach.kv_cache.KVCache`,
# allocates room for every position once, `[layers, 2, batch, groups, max_len, head_dim]`, and
# each step writes only its own keys and values **in place**, at `[..., past : past + 1, :]`,
# then reads the filled part as a slice (a view, nothing copied). Hugging Face calls the two
# `DynamicCache` and `StaticCache`; ChatGLM3's own code concatenates.

# %% tags=["nbval-check-output"]
from glm3_teach.kv_cache import KVCache

grow = kv_prompt[:, :8]                                                     # [1, 8]
kv = KVCache.for_config(config, batch=1, max_len=12, device=device)        # room for 12 positions
with torch.no_grad():
    in_place = model(grow, kv_cache=kv, use_cache=True)                    # writes positions 0..7
    in_place = model(kv_prompt[:, 8:9], kv_cache=kv, use_cache=True)      # writes position 8
    concat = model(kv_prompt[:, 8:9], kv_cache=model(grow, use_cache=True).kv_cache, use_cache=True)
print(kv)
print("layer 0 keys so far:", list(kv[0][0].shape), "| same logits as the tuple cache:",
      torch.equal(in_place.logits, concat.logits))
assert kv.length == 9 and torch.equal(in_place.logits, concat.logits)
assert all(torch.equal(a, b) for (a, _), (b, _) in zip(kv, concat.kv_cache))

# %% [markdown]
# `generate` uses the preallocated cache for this model and checks its arguments once per call,
# not once per token; `cache_impl="concat"` asks for the first design. Both give the same tokens.
# Timed end to end, 200 new tokens after a 16-token prompt (measured on this run; the numbers
# move with the machine and with whatever else runs on it):

# %% tags=["nbval-ignore-output"]
short_prompt = random_ids[:, :16]
designs = {"no cache": dict(use_cache=False), "concat cache": dict(cache_impl="concat"),
           "preallocated cache": dict(cache_impl="preallocated")}
seconds, outputs = {}, {}
for name, design in designs.items():
    seconds[name] = best_time(lambda: outputs.update({name: generate(model, short_prompt, 200, **design)}),
                              repeats=1)
print(f"{'design':<20} {'tokens/s':>9} {'vs no cache':>12}")
for name in designs:
    print(f"{name:<20} {200 / seconds[name]:>9,.0f} {seconds['no cache'] / seconds[name]:>11.1f}x")
assert all(torch.equal(out, outputs["no cache"]) for out in outputs.values())
assert seconds["no cache"] > seconds["preallocated cache"]

# %% [markdown]
# The speed-up is real but far smaller than the count of positions the cache saves:

# %% tags=["nbval-check-output"]
prompt_len, new_tokens = short_prompt.shape[1], 200
positions_without = sum(prompt_len + t for t in range(new_tokens))      # each step reprocesses everything
positions_with = prompt_len + new_tokens - 1                            # the prompt once, then one per step
print(f"positions processed for {new_tokens} new tokens: {positions_without:,} without the cache, "
      f"{positions_with} with it: {positions_without / positions_with:.0f} times fewer")
assert round(positions_without / positions_with) == 107

# %% [markdown]
# A small model processes a few hundred positions almost as fast as one: the matrix products are
# tiny either way, and each step also pays a fixed price that does not depend on the number of
# positions. What is that price on a CPU? Three timings of one cached step: this model; a model
# of the same depth (the same number of operations) but almost no weights, which pays only the
# per-operation overhead (Python, dispatch, small allocations); and merely reading all this
# model's weights from memory once. (CPU time of this process, so that other programs sharing the
# machine distort the split less; it still moves from run to run.)

# %% tags=["nbval-ignore-output"]
import dataclasses

from glm3_teach.model import ChatGLMForCausalLM


def cpu_seconds(fn, repeats=30):
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


tiny_depth = ChatGLMForCausalLM(dataclasses.replace(config, hidden_size=8, ffn_hidden_size=8, kv_channels=4,
                                                   num_attention_heads=2)).eval()      # the same depth, 67 k weights
cpu_model = model.to("cpu")
flat_weights = torch.cat([p.detach().flatten() for p in cpu_model.parameters()])
cpu_ids = random_ids.cpu()
with torch.no_grad():
    step_past = cpu_model(cpu_ids[:, :127], use_cache=True).kv_cache
    tiny_past = tiny_depth(cpu_ids[:, :127], use_cache=True).kv_cache
    split = {"this model, one cached step": cpu_seconds(lambda: cpu_model(cpu_ids[:, 127:128], kv_cache=step_past)),
             "same depth, almost no weights": cpu_seconds(lambda: tiny_depth(cpu_ids[:, 127:128], kv_cache=tiny_past)),
             "reading all weights once": cpu_seconds(lambda: flat_weights.sum())}
model = model.to(device)
for name, value in split.items():
    print(f"{name:32} {value * 1e3:6.2f} ms of CPU time")
print(f"measured on this run: the weightless model costs "
      f"{split['same depth, almost no weights'] / split['this model, one cached step']:.0%} of a real step, "
      f"reading the weights {split['reading all weights once'] / split['this model, one cached step']:.0%}")

# %% [markdown]
# Read the three lines above as a split of one step. When the weightless model of the same depth
# costs a large part of a real step, as it does on the CPUs this course was written on, the fixed
# price of this small model is per-operation overhead, not arithmetic and not memory: that is the
# part the preallocated cache and the once-per-call checks shrink. On a GPU serving a large model
# it is the other way round: each step must stream every weight from memory once, whatever the
# number of positions:

# %% tags=["nbval-check-output"]
weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(f"every decoding step reads all {weight_bytes / 1e6:.0f} MB of weights; ChatGLM3-6B in fp16 reads "
      f"{2 * count_parameters(glm6b) / 1e9:.1f} GB per token")
assert round(weight_bytes / 1e6) == 20 and round(2 * count_parameters(glm6b) / 1e9, 1) == 12.5

# %% [markdown]
# This is why decoding is **memory-bound**: a GPU serving ChatGLM3-6B spends each step streaming
# 12.5 GB of weights to produce one token per conversation, which is why servers decode many
# conversations together in one batch. `benchmarks/bench_generate.py` measures both cache designs
# against no cache on this model and on a larger one, at 64, 256 and 512 new tokens: the gap
# widens with the length and with the model, as the count of positions predicts.
#
# ## 12. 流式输出 Streaming
#
# A chat box shows the reply as it is written. `stream_generate(model, tok, ids, max_new_tokens)`
# yields text pieces as the tokens come, through the UTF-8-safe `StreamDecoder` of lesson 01: a
# token that ends in the middle of a character yields nothing until the character is complete.
# The stop token is not shown. (Greedy here; any keyword of `generate` can be passed.)

# %%
from glm3_teach.generate import stream_generate

pieces = []
for piece in stream_generate(model, tok, tok.encode("有一天，"), 80):
    print(piece, end="", flush=True)
    pieces.append(piece)

# %% [markdown]
# The pieces, joined, are exactly the decoded reply, and none holds a "�":

# %% tags=["nbval-check-output"]
story_ids = encode("有一天，")
streamed_ids = generate(model, story_ids, 80, eos_token_ids=stops)[0, story_ids.shape[1]:].tolist()
reply_ids = [i for i in streamed_ids if i not in stops]
assert "".join(pieces) == tok.decode(reply_ids) and "\ufffd" not in "".join(pieces)
print(len(reply_ids), "tokens arrived as", len(pieces), "pieces:", pieces[:8], "...")


# %% [markdown]
# Why the decoder matters: the model itself sometimes writes half a character. Among its 20 top
# guesses after 有一天， is a token whose bytes end in the middle of a character (小 followed by
# the first byte of the next one):

# %% tags=["nbval-check-output"]
def whole_characters(data):
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


top_ids = torch.topk(flat, 20).indices.tolist()
partial = [i for i in top_ids if not whole_characters(tok.vocab[i])]
for i in partial:
    print(f"{i:>5} {tok.token_text(i)!r:<14} bytes {tok.vocab[i].hex(' ')}  probability {flat[i]:.3f}")
assert partial

# %% [markdown]
# And a character the tokenizer never learned as a whole, such as 鼍, comes as three byte tokens.
# Decoded one token at a time it would show three "�"; the stream shows nothing, nothing, then 鼍.

# %% tags=["nbval-check-output"]
rare = tok.encode("鼍龙")
print("each token alone:", [tok.decode([i]) for i in rare])
stream = tok.stream_decoder()
print("streamed:        ", [stream.push(i) for i in rare])


# %% [markdown]
# ## Exercises
#
# ### Exercise 1: top-p
# Write `top_p_filter(logits, top_p)` for `logits [batch, vocab]`: in each row keep the most
# likely tokens until their probability reaches `top_p` (a token is kept when the total probability
# of the tokens ranked above it is still below `top_p`), and set every other logit to `-inf`.
# Sort, softmax, cumulative sum, then put the mask back in vocabulary order.

# %%
def top_p_filter(logits, top_p):
    raise NotImplementedError


# %%
top_p_cases = [(batch_of_logits, 0.8), (batch_of_logits, 0.1), (batch_of_logits, 1.0),
               (torch.tensor([[0.1, 0.4, 0.05, 0.3, 0.15]]).log(), 0.5)]
result = check("top_p", top_p_filter, apply_top_p, top_p_cases,
               hint="kept = (cumsum(sorted probs) - sorted probs) < top_p; scatter the mask back with the sort order")


# %% [markdown]
# ### Exercise 2: the cache that forgets positions
# A cached loop has to give each new token its position when prompts are left-padded (the
# cache's length counts the pads). This one passes position 0 for every new token: its query and
# key are rotated as if it were the first token, so it sees the prompt at the wrong distances, and
# its key stays in the cache with that wrong rotation for every later step. The text drifts away
# from the correct one after a few tokens.

# %% tags=["nbval-check-output"]
def cached_loop(model, input_ids, attention_mask, max_new_tokens, position_fn):
    """Greedy decoding with the cache; ``position_fn(attention_mask)`` gives each new token's position."""
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask, use_cache=True)
        ids = input_ids
        for step in range(max_new_tokens):
            next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)                  # [batch, 1]
            ids = torch.cat([ids, next_id], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(next_id)], dim=1)  # [batch, past + 1]
            if step + 1 < max_new_tokens:
                out = model(next_id, attention_mask=attention_mask, position_ids=position_fn(attention_mask),
                            kv_cache=out.kv_cache, use_cache=True)
    return ids


def forgetful_positions(attention_mask):
    return torch.zeros(attention_mask.shape[0], 1, dtype=torch.long, device=attention_mask.device)


one_mask = torch.ones_like(kv_prompt)
forgetful = cached_loop(model, kv_prompt, one_mask, 30, forgetful_positions)
print("forgetful:", repr(tok.decode(forgetful[0, kv_prompt.shape[1]:].tolist())))
print("correct:  ", repr(tok.decode(generate(model, kv_prompt, 30)[0, kv_prompt.shape[1]:].tolist())))
assert not torch.equal(forgetful, generate(model, kv_prompt, 30))


# %% [markdown]
# Write `next_positions(attention_mask)`: the mask `[batch, past + 1]` covers every token so far,
# the new one last; return `[batch, 1]` positions that count only the real tokens, from 0.

# %%
def next_positions(attention_mask):
    raise NotImplementedError


# %%
batch_ids_dev, batch_mask_dev = batch_ids.to(device), batch_mask.to(device)
result = check("next_positions",
               lambda ids, mask: cached_loop(model, ids, mask, 20, next_positions),
               lambda ids, mask: generate(model, ids, 20, attention_mask=mask),
               [(kv_prompt, one_mask), (batch_ids_dev, batch_mask_dev)],
               hint="the new token's position is the number of real tokens before it")


# %% [markdown]
# ### Exercise 3: stopping row by row
# Write `finish_step(next_ids, finished, stop_ids, pad_id)` for one decoding step of a batch:
# `next_ids [batch]` are the chosen tokens, `finished [batch]` says which rows already stopped.
# Rows already finished get `pad_id` instead; rows whose token is in `stop_ids` (a tensor) are
# finished from now on. Return `(next_ids, finished)` as new tensors.

# %%
def finish_step(next_ids, finished, stop_ids, pad_id):
    raise NotImplementedError


# %%
from glm3_teach.generate import finish_rows

stop_tensor = torch.tensor(stops)
result = check("finish_step", finish_step, finish_rows,
               [(torch.tensor([5, stops[0], 7]), torch.tensor([False, False, False]), stop_tensor, stops[0]),
                (torch.tensor([5, stops[1], 7]), torch.tensor([True, False, False]), stop_tensor, stops[0]),
                (torch.tensor([stops[2], 8]), torch.tensor([True, True]), stop_tensor, 0)],
               hint="torch.where(finished, pad, next_ids), then finished | torch.isin(next_ids, stop_ids)")

# %% [markdown]
# Solutions are in `notebooks/solutions/07_decoding_solutions.ipynb`; try first.
#
# ## Summary
# - Decoding turns the last position's logits into a next token, appends it and repeats.
# - Greedy (arg-max) is deterministic and loops on a small model; sampling draws from the softmax.
# - The transforms, in Hugging Face's order: repetition penalty (divide positive logits of seen
#   tokens, multiply negative ones), temperature (divide all logits by `T`), top-k (keep `k`
#   tokens), top-p (keep the smallest set reaching probability `p`).
# - ChatGLM3's `chat()` samples with `temperature=0.8, top_p=0.8` (and, through Hugging Face's
#   defaults, `top_k=50`, which rarely cuts anything the nucleus keeps) and stops on `</s>`,
#   `<|user|>` and `<|observation|>`.
# - Batches are padded on the left; each row's positions start at 0 and each row stops on its own.
# - The KV cache stores keys (after RoPE) and values (before the group expansion) of every layer,
#   so each step processes one token instead of the whole sequence; greedy output is identical.
#   ChatGLM3-6B's 2 KV groups make it 28 KiB per token instead of 448 KiB.
# - Streaming decodes ids as they arrive and never shows half a character.
#
# From now on the course generates with `glm3_teach.generate.generate` and `stream_generate`.
# Next: **08 · 对话微调 Chat fine-tuning**, which teaches the base model to answer in turns.
