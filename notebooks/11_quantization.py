# %% [markdown]
# # 11 · 量化 Quantization
#
# ChatGLM3-6B has 6.2 billion weights. Stored in fp16 they take 12.5 GB, more memory than most
# laptops have free. **Quantization** stores each weight in fewer bits, 8 or 4 instead of 16, and
# accepts a small, measurable loss. ChatGLM3 ships its own scheme (`model.quantize(4)`, CUDA
# only); chatglm.cpp runs the 6B model on a CPU in about 3.4 GB with a 4-bit format. This lesson
# builds ChatGLM3's scheme, a group-wise 4-bit scheme like chatglm.cpp's `q4_0`, and measures
# what each costs in quality, memory and speed on our small model.
#
# **You will learn**
# - the number formats involved (fp32, bf16, fp16, int8, int4): their ranges and their steps;
# - **absmax** quantization of one weight row by hand, and why its error is at most half a step;
# - per-row scales versus one scale per group of 32, and the **outlier** problem, on real weights;
# - how two int4 values share one byte, bit by bit;
# - quantizing the shipped model with `glm3_teach.quant`, saving it, loading it, and talking to it;
# - measured quality, memory and speed, and the arithmetic that puts a 6B model on a laptop.

# %% [markdown]
# ## 1. Setup
#
# We measure on the base model of lesson 06 (`data/checkpoints/base`), and in section 6 we also talk
# to the chat model of lesson 08 (`data/checkpoints/chat`) when it is there. Both are stored in
# bf16; we load them in fp32, so every quantization error we see comes from the quantization alone.

# %% tags=["nbval-ignore-output"]
import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from glm3_teach import check, check_value, load_pretrained, load_tokenizer, pick_device, save_pretrained, seed_everything
from glm3_teach import quant
from glm3_teach.fonts import use_cjk_font
from glm3_teach.generate import generate
from glm3_teach.model import ChatGLMConfig
from glm3_teach.paths import data_dir

device = pick_device()
seed_everything(0)
use_cjk_font()
BASE = data_dir() / "checkpoints" / "base"
CHAT = data_dir() / "checkpoints" / "chat"
model = load_pretrained(BASE, dtype=torch.float32, device=device)
tok = load_tokenizer()
print("device:", device, "| chat model available:", (CHAT / "config.json").is_file())

# %% [markdown]
# ## 2. Number formats
#
# A floating-point number spends its bits on a sign, an **exponent** (the range) and a
# **mantissa** (the precision): fp32 has 8 exponent bits and 23 mantissa bits, bf16 keeps the 8
# exponent bits but only 7 mantissa bits, fp16 has 5 and 10. An integer has no exponent at all: int8
# holds the 256 whole numbers -128..127, int4 the 16 numbers -8..7. To store a weight as an integer
# we pick a **scale** and store `round(w / scale)`; the scale carries the range, the integer the
# position inside it.

# %% tags=["nbval-check-output"]
formats = {}
for name, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]:
    info = torch.finfo(dtype)
    formats[name] = dict(bits=info.bits, smallest=info.tiny, largest=info.max, step_at_1=info.eps)
formats["int8"] = dict(bits=8, smallest=1, largest=127, step_at_1=1)
formats["int4"] = dict(bits=4, smallest=1, largest=7, step_at_1=1)
print(f"{'format':>6} {'bits':>4} {'smallest > 0':>13} {'largest':>10} {'step near 1':>12}")
for name, f in formats.items():
    print(f"{name:>6} {f['bits']:>4} {f['smallest']:>13.3g} {f['largest']:>10.3g} {f['step_at_1']:>12.3g}")
assert formats["bf16"]["largest"] > 1e38 and formats["fp16"]["largest"] == 65504

# %% [markdown]
# The picture: each bar spans the positive magnitudes a format can hold (log scale). bf16 reaches
# as far as fp32 with coarse steps; fp16 stops at 65504; the integers cover only a factor of 127 or
# 7, which is why every integer format needs a scale beside it.

# %%
fig, ax = plt.subplots(figsize=(8, 2.6))
for i, (name, f) in enumerate(formats.items()):
    low, high = np.log10(f["smallest"]), np.log10(f["largest"])
    ax.barh(i, high - low, left=low, color="tab:blue" if name.startswith(("fp", "bf")) else "tab:orange")
    ax.text(high + 0.5, i, f"{f['bits']} bits", va="center")
ax.set_yticks(range(len(formats)), list(formats))
ax.set_xlabel("log10 of the magnitude")
ax.set_title("Positive magnitudes each format can hold")
ax.set_xlim(-45, 50)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Absmax quantization of one row, by hand
#
# ChatGLM3's scheme gives every **output row** of a weight matrix its own scale: the largest
# magnitude in the row maps to the largest integer level (127 for int8, 7 for int4):
#
# `scale = max|w| / 127`,  `q = round(w / scale)`,  and the weight is read back as `q * scale`.
#
# Rounding moves a value by at most half a level, so every weight comes back within **half a
# step**, `scale / 2`, of where it was. We take one real row: row 0 of the first block's
# `query_key_value` weight.

# %% tags=["nbval-check-output"]
weight = model.transformer.encoder.layers[0].self_attention.query_key_value.weight.detach().cpu()  # [512, 256]
row = weight[0]                                                                                      # [256]
scale = row.abs().max() / 127
q = torch.round(row / scale)
back = q * scale
error = (back - row).abs()
print(f"max|w| = {row.abs().max():.4f}, scale = {scale:.6f}")
print("first weights: ", [round(v, 4) for v in row[:5].tolist()])
print("as integers:   ", [int(v) for v in q[:5].tolist()])
print("read back:     ", [round(v, 4) for v in back[:5].tolist()])
print(f"largest error {error.max():.6f} <= half a step {scale / 2:.6f}: {bool(error.max() <= scale / 2)}")
assert error.max() <= scale / 2 * (1 + 1e-6)

# %% [markdown]
# The package's `absmax_quantize` is the same formula for a whole matrix, row by row. Our row
# must come out identical:

# %% tags=["nbval-check-output"]
q_pkg, scale_pkg = quant.absmax_quantize(weight, bits=8)    # [512, 256] int8, [512]
result = check_value("row 0 as int8", q_pkg[0].float(), q)
result = check_value("row 0 scale", scale_pkg[0], scale)

# %% [markdown]
# With 4 bits the same row has only 15 levels (-7..7), so the step is 127/7 ≈ 18 times coarser and
# the error grows by the same factor. The bound still holds.

# %% tags=["nbval-check-output"]
q4, scale4 = quant.absmax_quantize(weight, bits=4)
error4 = (q4[0].float() * scale4[0] - row).abs()
print(f"int4: scale {scale4[0]:.5f}, largest error {error4.max():.5f} <= {scale4[0] / 2:.5f}, "
      f"mean error {error4.mean() / error.mean():.1f}x int8's")
assert error4.max() <= scale4[0] / 2 * (1 + 1e-6)

# %% [markdown]
# ## 4. Outliers: per-row scales against one scale per group of 32
#
# One large weight sets the scale of its whole row. If a row holds a single value ten times larger
# than the rest, int4's 15 levels are spread over that range and almost every ordinary weight
# rounds to 0, 1 or -1. Large models have such outliers; how strong are ours? We look for the row
# whose largest weight stands out most (largest `max|w| / std`) among the real rows of
# `dense_4h_to_h`, and draw its histogram with the int4 levels of a per-row scale.

# %% tags=["nbval-check-output"]
down = model.transformer.encoder.layers[0].mlp.dense_4h_to_h.weight.detach().cpu()        # [256, 683]
peakiness = down.abs().max(dim=1).values / down.std(dim=1)                                  # [256]
worst = int(peakiness.argmax())
typical = int(peakiness.argsort()[len(peakiness) // 2])
print(f"max|w| / std: worst row {worst}: {peakiness[worst]:.1f}, median row {typical}: {peakiness[typical]:.1f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
for ax, r, title in [(axes[0], typical, "a typical row"), (axes[1], worst, "the row with the strongest outlier")]:
    values = down[r].numpy()
    ax.hist(values, bins=80, color="tab:blue")
    step = np.abs(values).max() / 7
    for level in range(-7, 8):
        ax.axvline(level * step, color="tab:orange", lw=0.8, alpha=0.7)
    ax.set_title(f"dense_4h_to_h row {r}: {title}")
    ax.set_xlabel("weight (orange: the 15 int4 levels of a per-row scale)")
axes[0].set_ylabel("count")
plt.tight_layout()
plt.show()


# %% [markdown]
# Our small model's weights are tame: even its worst row's largest weight is under five standard
# deviations out, so a per-row scale wastes little. To see the outlier problem itself, we copy the
# typical row and make one weight ten times the row's largest, then quantize both to int4 and
# measure the error on the weights *far* from the outlier (columns 32 and up).
#
# **Group-wise** scales (llama.cpp's and chatglm.cpp's `q4_0`) give every block of 32 consecutive
# inputs its own scale: an outlier spoils only its own 32 weights. The price is one scale (2 bytes in
# fp16) per 32 weights, half a bit per weight. We compare the mean error of both schemes on every
# quantized matrix of the model. (`dense_4h_to_h` has 683 inputs, not a multiple of 32; its rows are
# padded with zero weights, which the scale ignores.)

# %% tags=["nbval-check-output"]
def mean_error(w, scheme, columns=slice(None)):
    """Mean |dequantized - w| of int4 ``scheme`` on the matrix ``w [out, in]``, over ``columns``."""
    linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    linear.weight.data.copy_(w)
    layer = quant.QuantizedLinear.from_linear(linear, 4, scheme, 32 if scheme == "group" else None, pad=True)
    return (layer.dequantized_weight() - w)[:, columns].abs().mean().item()


plain = down[typical:typical + 1].clone()                       # [1, 683]
spiked = plain.clone()
spiked[0, 0] = 10 * plain.abs().max()                           # one outlier in column 0
far = slice(32, None)
print(f"{'row':>22} {'per-row':>9} {'group-32':>9}")
for label, r in [("typical row", plain), ("with one outlier", spiked)]:
    print(f"{label:>22} {mean_error(r, 'chatglm', far):>9.5f} {mean_error(r, 'group', far):>9.5f}")
blowup = mean_error(spiked, "chatglm", far) / mean_error(plain, "chatglm", far)
assert blowup > 3 and mean_error(spiked, "group", far) == mean_error(plain, "group", far)
print(f"the outlier multiplies the per-row error by {blowup:.0f}; the group scheme's error far from it is unchanged")

# %% [markdown]
# On the real matrices of the first block, without any planted outlier, group scales still help:

# %% tags=["nbval-check-output"]
block = model.transformer.encoder.layers[0]
matrices = {name: getattr(getattr(block, name.split(".")[0]), name.split(".")[1]).weight.detach().cpu()
            for name in quant.QUANTIZED_LINEARS}
print(f"{'matrix':>31} {'per-row':>9} {'group-32':>9} {'ratio':>6}")
for name, w in matrices.items():
    per_row, grouped = mean_error(w, "chatglm"), mean_error(w, "group")
    print(f"{name:>31} {per_row:>9.5f} {grouped:>9.5f} {per_row / grouped:>6.2f}")
    assert grouped < per_row

# %% [markdown]
# ## 5. Two int4 values in one byte
#
# int4 values are stored two per byte, along the input dimension. ChatGLM3 puts the **even**
# column in the **high** nibble (the top four bits) and the odd column in the low nibble:
#
# `byte = (q[2j] << 4) | (q[2j+1] & 0xF)`
#
# A negative int4 value is its two's complement in 4 bits: -2 is `1110`. Reading back, an
# arithmetic shift `byte >> 4` brings the high nibble down **with its sign**; the low nibble
# `byte & 0xF` is 0..15, and values 8..15 stand for -8..-1.

# %% tags=["nbval-check-output"]
pair = [5, -2]
high, low = pair[0] & 0xF, pair[1] & 0xF                       # 0101, 1110
byte = (high << 4) | low
print(f"{pair[0]:>2} -> {high:04b}   {pair[1]:>2} -> {low:04b}   byte = {byte:08b} = 0x{byte:02X}")
as_signed = byte - 256 if byte > 127 else byte                 # how an int8 tensor stores it
first = as_signed >> 4                                         # arithmetic shift keeps the sign
second = (byte & 0xF) - 16 if (byte & 0xF) > 7 else byte & 0xF
print(f"unpacked: {first}, {second}")
assert [first, second] == pair
packed = quant.pack_int4(torch.tensor([pair], dtype=torch.int8))
print("the package:", packed.tolist(), "=", [as_signed], "| unpacked:", quant.unpack_int4(packed).tolist())
assert packed.item() == as_signed and quant.unpack_int4(packed).tolist() == [pair]


# %% [markdown]
# ## 6. Quantizing the whole model
#
# `quant.quantize(model, bits)` is ChatGLM3's `model.quantize(bits)`: it replaces the four Linear
# layers of every block with a `QuantizedLinear`. The embedding, the output layer and the norms stay
# in floating point, as in the reference. A quantized layer's state dict has ChatGLM3's names:
# `weight` (int8) and `weight_scale` (one per row); the group scheme uses its own names,
# `weight_int4` and `weight_group_scale`, so no loader can confuse the two. Rows whose width the
# int4 layout does not divide need `pad=True` (ChatGLM3-6B's widths always divide).

# %% tags=["nbval-check-output"]
def quantized_copy(bits, scheme="chatglm"):
    return quant.quantize(copy.deepcopy(model), bits, scheme, pad=True)


int8_model = quantized_copy(8)
int4_model = quantized_copy(4)
group_model = quantized_copy(4, "group")
print(int8_model.transformer.encoder.layers[0].mlp)
for label, m in [("int8", int8_model), ("int4", int4_model), ("int4 group-32", group_model)]:
    state = m.state_dict()
    keys = [k for k in state if k.startswith("transformer.encoder.layers.0.mlp.dense_4h_to_h.")]
    print(f"{label:>13}:", ", ".join(f"{k.rsplit('.', 1)[1]} {state[k].dtype} {list(state[k].shape)}" for k in keys))

# %% [markdown]
# The quantized model saves like any other: `save_pretrained` writes the integer tensors as they are
# and `quantization_bit` into `config.json` (the group scheme adds `quantization_scheme` and
# `quantization_group_size`); `load_pretrained` rebuilds the quantized layers from that config
# before loading. The reloaded model gives identical logits.

# %% tags=["nbval-check-output"]
import json
import tempfile
from pathlib import Path

ids = torch.tensor([tok.encode("从前，有一只小猫")], device=device)
with tempfile.TemporaryDirectory() as folder:
    save_pretrained(int4_model, Path(folder) / "int4")
    written = json.loads((Path(folder) / "int4" / "config.json").read_text())
    reloaded = load_pretrained(Path(folder) / "int4", device=device)
    with torch.no_grad():
        same = torch.equal(reloaded(ids).logits, int4_model(ids).logits)
print("config.json:", {k: v for k, v in written.items() if k.startswith("quantization")}, "| identical logits:", same)
assert same

# %% [markdown]
# Now talk to it. The base model continues a story; the chat model of lesson 08, when it is there,
# answers questions through `glm3_teach.chat.chat`. Greedy decoding, so any difference comes from
# the quantization.

# %% tags=["nbval-check-output"]
variants = {"fp32": model, "int8": int8_model, "int4": int4_model, "int4 group-32": group_model}
prompt = tok.encode("小明和妈妈去市场")
for label, m in variants.items():
    out = generate(m, torch.tensor([prompt], device=device), 40)
    print(f"{label:>13} | {tok.decode(out[0, len(prompt):].tolist())!r}")

# %% tags=["nbval-ignore-output"]
if (CHAT / "config.json").is_file():
    from glm3_teach.chat import chat
    chat_fp32 = load_pretrained(CHAT, dtype=torch.float32, device=device)
    chat_variants = {"fp32": chat_fp32, "int8": quant.quantize(copy.deepcopy(chat_fp32), 8, pad=True),
                     "int4 group-32": quant.quantize(copy.deepcopy(chat_fp32), 4, "group", pad=True)}
    for question in ["乌龙茶多少钱？", "How much is oolong tea?"]:
        for label, m in chat_variants.items():
            reply, _ = chat(m, tok, question, do_sample=False, max_new_tokens=48)
            print(f"{label:>13} | {question} -> {reply}")
else:
    print("no chat model at data/checkpoints/chat yet (lesson 08 trains it); the base model above stands in")

# %% [markdown]
# ## 7. Quality
#
# Two measures, on text the model never trained on: **bits per byte** of validation stories per
# language (lower is better; `glm3_teach.evaluate.text_bits_per_byte`), and **greedy agreement**,
# the share of positions where the quantized model picks the same next token as fp32 when both
# continue the same prompts. (`benchmarks/bench_quant.py` measures the same on more text, plus the
# chat model's held-out fact accuracy.)

# %% tags=["nbval-check-output"]
from glm3_teach.data import load_documents
from glm3_teach.evaluate import text_bits_per_byte

stories = {lang: load_documents("val", lang)[::100][:6] for lang in ("zh", "en")}
prompts = ["从前，有一只小猫", "Once upon a time, a little cat", "森林里住着一只狐狸", "One morning, the baker"]


def continuations(m):
    return [generate(m, torch.tensor([tok.encode(p)], device=device), 24)[0, -24:].tolist() for p in prompts]


reference = continuations(model)
quality = {}
for label, m in variants.items():
    bpb = {lang: text_bits_per_byte(m, tok, docs, block_size=m.config.seq_length - 1) for lang, docs in stories.items()}
    got = continuations(m)
    agree = np.mean([a == b for ref, g in zip(reference, got) for a, b in zip(ref, g)])
    quality[label] = dict(**bpb, agree=agree)
print(f"{'variant':>13} {'bpb zh':>7} {'bpb en':>7} {'zh/fp32':>8} {'en/fp32':>8} {'agree':>6}")
for label, row in quality.items():
    print(f"{label:>13} {row['zh']:>7.3f} {row['en']:>7.3f} {row['zh'] / quality['fp32']['zh']:>8.3f} "
          f"{row['en'] / quality['fp32']['en']:>8.3f} {row['agree']:>6.2f}")

# %% [markdown]
# int8 is within 1% of fp32 in bits per byte, and both int4 schemes within 5%. On this tame model
# (section 4: no strong outliers) bits per byte hardly tells per-row from group-32 int4 apart: the
# difference between them is smaller than what changes when we pick other stories (the benchmark,
# on 30 stories per language, even ranks them the other way). Greedy agreement separates them:
# with one scale per row the continuations part from fp32's sooner. The checks:

# %% tags=["nbval-check-output"]
for lang in ("zh", "en"):
    assert quality["int8"][lang] / quality["fp32"][lang] < 1.01
    assert quality["int4 group-32"][lang] / quality["fp32"][lang] < 1.05
    assert quality["int4"][lang] / quality["fp32"][lang] < 1.05
assert quality["int8"]["agree"] > quality["int4 group-32"]["agree"] > quality["int4"]["agree"]
print("bits per byte: int8 within 1%, both int4 within 5%; greedy agreement: int8 > group-32 > per-row")

# %% [markdown]
# ## 8. Memory
#
# Memory is simple arithmetic: `bits / 8` bytes per quantized weight, plus the scales, plus every
# tensor left in floating point. `quant.model_bytes(config, bits, scheme)` computes it from a config
# alone; `quant.tensor_bytes(model)` adds up the `nbytes` of the tensors a model really holds. They
# must agree. (Our model is fp32, so its floats take 4 bytes.)

# %% tags=["nbval-check-output"]
print(f"{'variant':>13} {'nbytes':>11} {'formula':>11} {'vs fp32':>8}")
for label, m in variants.items():
    bits, scheme = m.config.quantization_bit, m.config.quantization_scheme
    measured, formula = quant.tensor_bytes(m), quant.model_bytes(m.config, bits, scheme, float_bytes=4)
    print(f"{label:>13} {measured:>11,} {formula:>11,} {measured / quant.tensor_bytes(model):>8.2f}")
    assert measured == formula

# %% [markdown]
# Our model saves less than a real one would: its embedding and output layer (4096 x 256 each) are
# a third of it and stay in fp32. In ChatGLM3-6B the blocks dominate.
#
# ## 9. Speed
#
# On a CPU, generating one token reads every weight once, so fewer bytes *could* mean faster
# decoding; it depends on the kernel. `QuantizedLinear` has three forward paths, all giving the
# reference's numbers except the last:
#
# - `"dequantize"`: rebuild `q * scale` as floats and call an ordinary matmul (the readable path);
# - `"weight_only"`: PyTorch's own CPU kernels, `torch._weight_int8pack_mm` and
#   `torch._weight_int4pack_mm_for_cpu`, which read the integers directly;
# - `"dynamic_int8"`: fbgemm's W8A8 kernel, which also rounds each **activation** to 8 bits.
#
# `"auto"` (the default) times the first two once per layer shape and keeps the faster. We time
# greedy decoding with the KV cache on one thread. The numbers depend on your CPU; the benchmark
# `python benchmarks/bench_quant.py` does the same on a larger model where the weights dominate.

# %% tags=["nbval-ignore-output"]
torch.set_num_threads(1)


def tokens_per_second(m, new_tokens=24, repeats=2):
    prompt = torch.tensor([tok.encode("从前")], device=device)
    generate(m, prompt, 2)  # warm-up
    best = min(_timed(lambda: generate(m, prompt, new_tokens)) for _ in range(repeats))
    return new_tokens / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


speeds = {"fp32": tokens_per_second(model)}
for kernel in ("dequantize", "weight_only", "auto", "dynamic_int8"):
    speeds[f"int8 {kernel}"] = tokens_per_second(quant.set_kernel(int8_model, kernel))
quant.set_kernel(int8_model, "auto")
speeds["int4 auto"] = tokens_per_second(int4_model)
speeds["int4 group-32 auto"] = tokens_per_second(group_model)
for label, value in speeds.items():
    print(f"{label:>19}: {value:6.1f} tokens/s  ({value / speeds['fp32']:.2f}x fp32)")

# %%
fig, ax = plt.subplots(figsize=(8, 3))
ax.barh(list(speeds), list(speeds.values()), color=["tab:blue"] + ["tab:orange"] * (len(speeds) - 1))
ax.invert_yaxis()
ax.set_xlabel("decode tokens / s (1 thread, KV cache)")
ax.set_title("Decode speed on this machine")
plt.tight_layout()
plt.show()

# %% [markdown]
# What the W8A8 kernel buys in speed it pays in accuracy: rounding the activations adds error the
# weight-only paths never make. Its output drifts further from the exact int8 model's than the
# two exact paths drift from each other:

# %% tags=["nbval-check-output"]
with torch.no_grad():
    exact = quant.set_kernel(int8_model, "dequantize")(ids).logits
    kernel_gap = (quant.set_kernel(int8_model, "weight_only")(ids).logits - exact).abs().max().item()
    w8a8_gap = (quant.set_kernel(int8_model, "dynamic_int8")(ids).logits - exact).abs().max().item()
quant.set_kernel(int8_model, "auto")
print(f"largest logit difference from the dequantize path: weight_only {'below' if kernel_gap < 1e-4 else 'above'} "
      f"1e-4, dynamic_int8 {'above' if w8a8_gap > 1e-2 else 'below'} 1e-2")
assert kernel_gap < 1e-4 < 1e-2 < w8a8_gap

# %% [markdown]
# ## 10. The 6B arithmetic
#
# The same formula for ChatGLM3-6B's config (fp16 floats). ChatGLM3's int4 keeps the embedding and
# the output layer (65024 x 4096 each, about 1.07 GB together) in fp16; chatglm.cpp's `q4_0`
# quantizes them too, in blocks of 32 with an fp16 scale (18 bytes per 32 weights, 4.5 bits).
# Its README lists the ChatGLM3-6B files as 3.3G (q4_0), 6.2G (q8_0) and 12G (f16), sizes in GiB
# as `ls -h` prints them; the formula reproduces them.

# %% tags=["nbval-check-output"]
glm6b = ChatGLMConfig.chatglm3_6b()
sizes = {"fp16": quant.model_bytes(glm6b), "int8 (ChatGLM3)": quant.model_bytes(glm6b, 8),
         "int4 (ChatGLM3)": quant.model_bytes(glm6b, 4), "int4 group-32": quant.model_bytes(glm6b, 4, "group")}
for label, size in sizes.items():
    print(f"{label:>16}: {size / 1e9:5.2f} GB")
ggml = {kind: quant.ggml_model_bytes(glm6b, kind) / 2 ** 30 for kind in ("q4_0", "q8_0", "f16")}
print("chatglm.cpp by formula:", {k: f"{v:.2f} GiB" for k, v in ggml.items()}, "| README: 3.3G, 6.2G, 12G")
assert round(sizes["fp16"] / 1e9, 1) == 12.5 and 3.9e9 < sizes["int4 (ChatGLM3)"] < 4.0e9
assert round(ggml["q4_0"], 1) == 3.3 and round(ggml["q8_0"], 1) == 6.2 and round(ggml["f16"]) == 12

# %% [markdown]
# Add the KV cache (lesson 07: 28 KiB per token in fp16 thanks to the 2 KV groups) and a full
# 8192-token context costs under a quarter of a gigabyte more. A laptop with 8 GB of memory cannot
# hold the fp16 model at all, but holds the q4_0 one with room to spare:

# %% tags=["nbval-check-output"]
from glm3_teach.generate import kv_cache_bytes

cache = kv_cache_bytes(glm6b, num_tokens=8192)
print(f"KV cache for 8192 tokens: {cache / 2**30:.2f} GiB | q4_0 + cache: {ggml['q4_0'] + cache / 2**30:.2f} GiB "
      f"| fp16 + cache: {ggml['f16'] + cache / 2**30:.2f} GiB")
assert ggml["q4_0"] + cache / 2 ** 30 < 4 < 8 < ggml["f16"]


# %% [markdown]
# ## Exercises
#
# ### Exercise 1: int4 packing
# Write `my_pack(q)` for an int8 tensor `[rows, 2n]` of values in -8..7, returning int8
# `[rows, n]` with the even column in the high nibble, and `my_unpack(packed)` that undoes it.

# %%
def my_pack(q):
    raise NotImplementedError


def my_unpack(packed):
    raise NotImplementedError


# %%
every_pair = torch.cartesian_prod(torch.arange(-8, 8), torch.arange(-8, 8)).to(torch.int8)   # [256, 2]
some_rows = torch.randint(-8, 8, (3, 10), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
result = check("my_pack", my_pack, quant.pack_int4, [every_pair, some_rows],
               hint="(q[:, 0::2] << 4) | (q[:, 1::2] & 0xF)")
result = check("my_unpack", my_unpack, quant.unpack_int4, [quant.pack_int4(every_pair), quant.pack_int4(some_rows)],
               hint="high = b >> 4 (keeps the sign); low = ((b & 0xF) ^ 8) - 8; then interleave them")


# %% [markdown]
# ### Exercise 2: the memory of a config
# Write `my_model_bytes(config, bits)` for ChatGLM3's per-row scheme with fp16 floats: `bits=0` is
# the whole model in fp16; `bits=8` or `4` stores the four block Linears in `bits / 8` bytes per
# weight plus one fp16 scale per output row, everything else in fp16 (count the rotary `inv_freq`
# buffer too: `kv_channels // 4` values). Assume the widths are even.

# %%
def my_model_bytes(config, bits):
    raise NotImplementedError


# %%
configs = [ChatGLMConfig.chatglm3_6b(), ChatGLMConfig.course(ffn_hidden_size=684),
           ChatGLMConfig(num_layers=12, hidden_size=1024, ffn_hidden_size=2752, kv_channels=64, num_attention_heads=16)]
result = check("my_model_bytes", my_model_bytes, lambda c, b: quant.model_bytes(c, b),
               [(c, b) for c in configs for b in (0, 8, 4)],
               hint="per block: qkv (heads*kv + 2*groups*kv) x hidden + bias, dense, dense_h_to_4h (2*ffn), dense_4h_to_h")


# %% [markdown]
# ### Exercise 3: find the bug
# This quantizer looks like absmax, but its error on the model's real `dense_h_to_4h` weight is
# far larger than the package's, and more weights collapse to 0. Find the bug, and write the fixed
# `fixed_quantize(weight, bits)` returning `(q, scale)` as `quant.absmax_quantize` does.

# %% tags=["nbval-check-output"]
def buggy_quantize(weight, bits):
    scale = weight.abs().max() / (2 ** (bits - 1) - 1)
    q = torch.round(weight / scale).to(torch.int8)
    return q, scale.expand(weight.shape[0])


w_up = model.transformer.encoder.layers[1].mlp.dense_h_to_4h.weight.detach().cpu()
errors = {}
for label, fn in [("buggy", buggy_quantize), ("package", quant.absmax_quantize)]:
    qb, sb = fn(w_up, 4)
    err = (qb.float() * sb[:, None] - w_up).abs().mean().item()
    zeros = (qb == 0).float().mean().item()
    print(f"{label:>8}: mean error {err:.5f}, share of weights rounded to 0: {zeros:.0%}")
    errors[label] = err
assert errors["buggy"] > 1.3 * errors["package"]


# %%
def fixed_quantize(weight, bits):
    raise NotImplementedError


# %%
result = check("fixed_quantize", fixed_quantize, quant.absmax_quantize, [(w_up, 4), (w_up, 8), (weight, 4)],
               hint="one scale for the whole matrix is the bug: take the max over each row (dim=-1)")

# %% [markdown]
# Solutions are in `notebooks/solutions/11_quantization_solutions.ipynb`; try first.
#
# ## Summary
# - A quantized weight is an integer and a scale: `w ≈ q * scale`. Absmax maps the largest
#   magnitude to the top level (127 or 7); the rounding error is at most half a step.
# - ChatGLM3's scheme: one scale per output row, `round(w / scale)` in the weight's dtype, int4
#   packed two per byte with the even column in the high nibble; state dict `weight` (int8) and
#   `weight_scale`; only the four block Linears, never the embedding, output layer or norms.
# - One outlier sets a whole row's scale; one scale per 32 inputs (like `q4_0`) confines it, for
#   half a bit per weight more. On our model int8 stays within 1% of fp32 in bits per byte and both
#   int4 schemes within 5%; greedy agreement with fp32 shows per-row int4 drifting first.
# - Memory is arithmetic: ChatGLM3-6B needs 12.5 GB in fp16, about 6.8 GB in int8 and 3.9 GB in
#   ChatGLM3's int4; chatglm.cpp's q4_0 (everything in blocks of 32) 3.3 GiB.
# - Speed depends on the kernel, not on the bits alone: measure it on your machine
#   (`benchmarks/bench_quant.py`); an exact weight-only kernel and a W8A8 kernel that also rounds
#   the activations are different bargains.
# - To quantize a LoRA model, merge the adapter into the weights first, then quantize.
#
# Next: **12 · 部署 Serving**, which puts a model behind a web page.
