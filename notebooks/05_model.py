# %% [markdown]
# # 05 · 组装模型 The whole model
#
# Lessons 02 to 04 built the pieces: rotary positions, grouped-query attention, RMSNorm, SwiGLU
# and the GLM block. This lesson puts them together into the whole ChatGLM3 and looks at it from
# the outside: its configuration, its size, its files.
#
# **You will learn**
# - `ChatGLMConfig`, whose field names are those of ChatGLM3's `config.json`, and the course's
#   small config beside `ChatGLMConfig.chatglm3_6b()`;
# - the whole model as one diagram, the forward pass end to end with the shape of every step, and
#   the errors the model raises on bad input;
# - every parameter of ChatGLM3-6B counted component by component (6,243,584,000), by formula and
#   by building the real-size model on PyTorch's `meta` device without using any memory;
# - how much memory the weights take in fp32, bf16, int8 and int4 (in GiB, 2³⁰ bytes, throughout),
#   and how many FLOPs a token costs;
# - the real `config.json` and the key names of the real checkpoint, compared with ours;
# - saving and loading a model in the Hugging Face layout, and how to load a downloaded
#   chatglm3-6b and chat with it;
# - why an untrained model babbles, and why its loss is ln(vocab_size);
# - (exercise) the model's forward written by you: positions from the padding mask, the rope rows,
#   the mask or `is_causal`, and the KV cache, checked on a padded batch that continues from a cache.

# %% [markdown]
# ## 1. Setup
#
# The device line differs from machine to machine.

# %% tags=["nbval-ignore-output"]
import json
import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from glm3_teach import (ChatGLMConfig, ChatGLMForCausalLM, check, count_parameters, load_pretrained, load_tokenizer,
                        pick_device, save_pretrained, seed_everything)

from glm3_teach.fonts import use_cjk_font

device = pick_device()
seed_everything(0)
use_cjk_font()
print("device:", device)

# %% [markdown]
# ## 2. 配置 The config
#
# Every size and switch of the model lives in one object, `ChatGLMConfig`. Its field names are
# exactly those of the `config.json` that ships with ChatGLM3-6B (`num_layers`, `kv_channels`,
# `multi_query_group_num`, `padded_vocab_size`, ...), so the real file reads straight into it and
# a config we write can sit beside real weights. The course trains a small model; only the sizes
# change, every behaviour is ChatGLM3's:

# %%
course_config = ChatGLMConfig(
    num_layers=4,              # GLM blocks (ChatGLM3-6B: 28)
    hidden_size=256,           # width of the residual stream (4096)
    ffn_hidden_size=683,       # SwiGLU inner width, about 8/3 x hidden_size (13696)
    kv_channels=64,            # head_dim (128)
    num_attention_heads=4,     # query heads (32); 4 x 64 = 256 = hidden_size
    multi_query_group_num=2,   # key/value groups shared by the query heads (2)
    padded_vocab_size=4096,    # rows of the embedding and output matrices = the course tokenizer (65024)
    seq_length=256,            # longest sequence, the length of the rope cache (8192)
    eos_token_id=4094,         # the course tokenizer's </s> (2)
    pad_token_id=4095,         # the course tokenizer's <pad> (0)
)
assert course_config == ChatGLMConfig.course()  # the package keeps the same config
chatglm3_config = ChatGLMConfig.chatglm3_6b()


# %% [markdown]
# Side by side, with a few numbers that follow from the fields. `head_dim` is `kv_channels`;
# `query_key_value` makes one query per head and one key and one value per group, so it is
# `(num_attention_heads + 2 * multi_query_group_num) * kv_channels` wide.

# %% tags=["nbval-check-output"]
def qkv_width(config):
    return (config.num_attention_heads + 2 * config.num_kv_groups) * config.kv_channels


FIELDS = ["num_layers", "hidden_size", "ffn_hidden_size", "kv_channels", "num_attention_heads",
          "multi_query_group_num", "padded_vocab_size", "seq_length", "layernorm_epsilon", "add_qkv_bias",
          "add_bias_linear", "rope_ratio"]
print(f"{'field':>24} {'course':>10} {'chatglm3-6b':>12}")
for name in FIELDS:
    print(f"{name:>24} {getattr(course_config, name)!s:>10} {getattr(chatglm3_config, name)!s:>12}")
print(f"{'(query heads per group)':>24} {course_config.num_attention_heads // course_config.num_kv_groups:>10} "
      f"{chatglm3_config.num_attention_heads // chatglm3_config.num_kv_groups:>12}")
print(f"{'(query_key_value width)':>24} {qkv_width(course_config):>10} {qkv_width(chatglm3_config):>12}")
assert qkv_width(chatglm3_config) == 4608 and qkv_width(course_config) == 512
assert ChatGLMConfig() == ChatGLMConfig.chatglm3_6b(torch_dtype=None)  # the defaults are chatglm3-6b's

# %% [markdown]
# The defaults of `ChatGLMConfig` are ChatGLM3-6B's, so a small config names only its sizes. (The
# reference `configuration_chatglm.py` has *other* defaults, such as `add_qkv_bias=False` and
# `multi_query_group_num=1`; a real model always takes its values from `config.json`.)
#
# Some flags exist in `config.json` only because ChatGLM3's code is shared with other models.
# ChatGLM3 sets them one way; the other way would be a different network, which this package
# does not build. Asking for one is an error that says so, and so is a config that cannot work:

# %% tags=["nbval-check-output"]
for bad in [dict(rmsnorm=False), dict(tie_word_embeddings=True), dict(multi_query_group_num=3)]:
    try:
        ChatGLMConfig.chatglm3_6b(**bad)
    except (NotImplementedError, ValueError) as error:
        print(f"{bad}: {type(error).__name__}: {error}\n")

# %% [markdown]
# A config is written and read as `config.json`, in the same layout as the real file:

# %% tags=["nbval-check-output"]
text = course_config.to_json()
print("\n".join(text.splitlines()[:10] + ["  ..."]))
assert ChatGLMConfig.from_dict(json.loads(text)) == course_config

# %% [markdown]
# ## 3. The model, module by module
#
# `ChatGLMForCausalLM(config)` builds the network with fresh random weights. Printing it shows the
# tree of modules; the names (`transformer.embedding.word_embeddings`, `encoder.layers`,
# `self_attention.query_key_value`, `mlp.dense_h_to_4h`, `output_layer`) are the real model's, so
# its weights will load into ours by name (section 9).

# %% tags=["nbval-check-output"]
seed_everything(0)
model = ChatGLMForCausalLM(course_config).eval()   # on the CPU; section 4 copies it to the device
print(model)


# %% [markdown]
# Reading from the top:
# - `word_embeddings`: one row of 256 numbers per token id. There is no position embedding and no
#   scaling: positions enter only through RoPE inside attention.
# - `rotary_pos_emb`: no weights, only the cos/sin table of lesson 02 (rotating 32 of each head's
#   64 dims, in pairs).
# - `encoder.layers`: the GLM blocks of lesson 04, each `x + Attn(RMSNorm(x))` then
#   `x + MLP(RMSNorm(x))`.
# - `final_layernorm`: one more RMSNorm, because in a pre-norm stack the residual stream itself
#   is never normalised.
# - `output_layer`: a separate matrix from 256 numbers back to one score (a *logit*) per token id.
#   It is not tied to the embedding.
#
# The same tree as a picture, with the lesson that built each piece and the shape that leaves it
# (`b` the batch, `s` the sequence), for the course model and, below, for ChatGLM3-6B:

# %%
def draw_whole_model(course=course_config, big=chatglm3_config):
    """ChatGLMForCausalLM as boxes: the module names, the lesson of each, the shapes (course; ChatGLM3-6B)."""
    def sizes(c):
        return dict(L=c.num_layers, h=c.hidden_size, V=c.padded_vocab_size, P=c.kv_channels // 4, T=c.seq_length)
    small, large = sizes(course), sizes(big)
    boxes = [  # (x, y, module, lesson, shape template, colour)
        (0.5, 10.05, "input_ids", "01", "[b, s]", "#eeeeee"),
        (0.5, 8.9, "embedding.word_embeddings", "02", "[b, s, {h}]", "#c6dbef"),
        (0.5, 7.75, "encoder.layers: GLMBlock × {L}", "04", "[b, s, {h}]", "#fdd0a2"),
        (0.5, 2.6, "encoder.final_layernorm (RMSNorm)", "04", "[b, s, {h}]", "#dadaeb"),
        (0.5, 1.45, "output_layer (not tied)", "05", "[b, s, {V}]  logits", "#c6dbef"),
        (0.88, 8.9, "rotary_pos_emb", "02", "rows [b, s, {P}, 2]", "#c7e9c0"),
    ]
    inner = [  # inside one block
        (0.5, 6.6, "input_layernorm (RMSNorm)", "04"), (0.5, 5.7, "self_attention (GQA + RoPE)", "03"),
        (0.5, 4.8, "post_attention_layernorm (RMSNorm)", "04"), (0.5, 3.9, "mlp (SwiGLU)", "04")]
    fig, ax = plt.subplots(figsize=(9, 8.4))
    ax.add_patch(plt.Rectangle((0.2, 3.4), 0.6, 4.85, facecolor="#fff5eb", edgecolor="#e6550d", linestyle="--"))
    for x, y, name, lesson, shape, colour in boxes:
        label = f"{name.format(**small)}  (课 lesson {lesson})\n{shape.format(**small)}\n6B: {shape.format(**large)}"
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5,
                bbox=dict(boxstyle="round,pad=0.35", facecolor=colour, edgecolor="#555555"))
    for x, y, name, lesson in inner:
        ax.text(x, y, f"{name}  (课 {lesson})", ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="#999999"))
    for y in (5.7, 3.9):
        ax.text(0.73, y, "+ 残差 residual", fontsize=8, color="#e6550d", ha="center", va="center")
    for y_from, y_to in [(9.6, 9.35), (8.45, 8.2), (7.3, 6.8), (6.4, 5.9), (5.5, 5.0), (4.6, 4.1), (3.7, 3.05),
                         (2.15, 1.95)]:
        ax.annotate("", xy=(0.5, y_to), xytext=(0.5, y_from), arrowprops=dict(arrowstyle="->", color="#555555"))
    ax.annotate("", xy=(0.7, 5.75), xytext=(0.88, 8.45), arrowprops=dict(arrowstyle="->", color="#31a354"))
    ax.text(0.93, 7.0, "每层共用\nshared by\nevery layer", fontsize=8, color="#31a354", ha="center")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0.8, 10.6)
    ax.axis("off")
    ax.set_title(f"ChatGLMForCausalLM: course model ({small['L']} layers), ChatGLM3-6B ({large['L']} layers) after '6B:'")
    return fig


draw_whole_model()
plt.show()

# %% [markdown]
# ## 4. The forward pass, end to end
#
# We encode a Chinese sentence with the course tokenizer and follow it through the model by hand,
# calling the model's own submodules in order. Here it runs on the lesson's device.

# %% tags=["nbval-check-output"]
tokenizer = load_tokenizer()        # the course's BPE from lesson 01, 4096 ids
prompt = "小猫在茶铺里喝了一杯绿茶。"
input_ids = torch.tensor([tokenizer.encode(prompt)])     # [batch=1, seq_len]
print("tokens:", [tokenizer.token_text(i) for i in input_ids[0].tolist()])
print("input_ids:", list(input_ids.shape))

# %% tags=["nbval-check-output"]
device_model = ChatGLMForCausalLM(course_config).eval()
device_model.load_state_dict(model.state_dict())
device_model = device_model.to(device)
ids = input_ids.to(device)
net = device_model.transformer
batch, seq_len = ids.shape

with torch.no_grad():
    hidden = net.embedding(ids)                                       # [batch, seq_len, hidden_size]
    print("embedding        ", list(hidden.shape))
    rope_table = net.rotary_pos_emb(course_config.seq_length)          # [seq_length, rotary_dim/2, 2]
    position_ids = torch.arange(seq_len, device=device)[None]          # [1, seq_len]: 0, 1, 2, ...
    rope_cache = rope_table[position_ids]                              # [1, seq_len, rotary_dim/2, 2]
    print("rope table       ", list(rope_table.shape), "-> rows for our positions", list(rope_cache.shape))
    for n, layer in enumerate(net.encoder.layers):
        hidden, _, _ = layer(hidden, rope_cache, mask=None, is_causal=True)  # [batch, seq_len, hidden_size]
        print(f"layer {n}          ", list(hidden.shape))
    hidden = net.encoder.final_layernorm(hidden)                       # [batch, seq_len, hidden_size]
    print("final_layernorm  ", list(hidden.shape))
    logits = net.output_layer(hidden)                                  # [batch, seq_len, padded_vocab_size]
    print("output_layer     ", list(logits.shape))

# %% [markdown]
# That is all `forward` does for one unpadded sentence. With a padded batch or a KV cache it also
# derives the positions from the padding mask and picks the cheapest correct mask (lessons 02 and
# 03); exercise 1 asks you to write that part. Our hand-made pass equals the package's, and the
# device's numbers equal the CPU's:

# %% tags=["nbval-check-output"]
with torch.no_grad():
    package_logits = device_model(ids).logits                          # [batch, seq_len, padded_vocab_size]
    cpu_logits = model(input_ids).logits
torch.testing.assert_close(logits, package_logits, rtol=1e-5, atol=1e-5)
torch.testing.assert_close(package_logits.cpu(), cpu_logits, rtol=1e-4, atol=1e-4)
print("hand-made forward == model(input_ids).logits; device == CPU")

# %% [markdown]
# The logits of position `t` score every token id as the token at `t + 1`. The model reads all
# positions at once; the causal mask keeps each one from seeing the future, so the logits of the
# first 5 tokens do not change when we cut the sentence after them:

# %% tags=["nbval-check-output"]
with torch.no_grad():
    first_five = model(input_ids[:, :5]).logits                        # [1, 5, padded_vocab_size]
torch.testing.assert_close(first_five, cpu_logits[:, :5], rtol=1e-5, atol=1e-5)
print("the first 5 positions do not depend on the tokens after them")

# %% [markdown]
# When you read ChatGLM3's own `modeling_chatglm.py` beside this, three conventions differ (lesson 03
# showed each): its activations are **sequence-first**, `[s, b, h]`, where ours are `[b, s, h]`; its
# KV cache holds per layer `k` and `v` of `[seq_so_far, b, 2, 128]` (2 KV groups of 128), where ours
# is `[b, 2, seq_so_far, 128]`; and its masks say True = *masked*, where ours say True = may attend.
# The numbers are the same; only the order of axes and the meaning of True differ.

# %% [markdown]
# ## 5. Bad input, clear errors
#
# Two mistakes are easy to make. A **sequence longer than `seq_length`**: the rope table has
# `seq_length` rows, so position 256 of the course model has no rotation to look up. An **id
# outside the vocabulary**, for example ids from the real ChatGLM3 tokenizer (up to 64797) fed to
# the course model (4096 rows): the embedding has no such row. Without a check, the CPU says only
# `index out of range in self`, and on a GPU the same lookup is a device-side assertion that
# leaves the CUDA context unusable until the kernel restarts. So the model checks its input
# first and says what is wrong and how to fix it:

# %% tags=["nbval-check-output"]
try:
    model.transformer.embedding(torch.tensor([[5000]]))   # the raw lookup, unchecked
except IndexError as error:
    print("raw embedding lookup:", type(error).__name__, "-", error)
print()

user_id = 64795  # <|user|> in the real ChatGLM3 tokenizer
for name, bad_ids in [("too long", torch.zeros(1, course_config.seq_length + 1, dtype=torch.long)),
                      ("ChatGLM3 id", torch.tensor([[1, 2, user_id]])),
                      ("no batch dim", torch.tensor([1, 2, 3])),
                      ("float ids", torch.tensor([[1.0, 2.0]]))]:
    try:
        model(bad_ids)
    except (ValueError, TypeError) as error:
        print(f"{name}: {type(error).__name__}: {error}\n")

# %% [markdown]
# Where does such an error come from? The traceback of one of them lists the calls from your cell
# down to the line that raised; here with the files named from their package (your own run shows
# the full paths and the code of every line):

# %%
import traceback

try:
    model(torch.tensor([[1, 2, user_id]]))
except ValueError as error:
    for frame in traceback.extract_tb(error.__traceback__):
        parts = Path(frame.filename).parts
        package = next((name for name in ("glm3_teach", "torch") if name in parts), None)
        where = "/".join(parts[parts.index(package):]) if package else "your cell"
        print(f"  {where}, in {frame.name}")
    print(f"{type(error).__name__}: {error}")


# %% [markdown]
# ## 6. Every parameter of ChatGLM3-6B
#
# Every weight matrix follows from the config. Linear weights are stored `[out, in]`, so a
# Linear layer from `a` to `b` features holds `a * b` weights (plus `b` if it has a bias). Per
# component, in ChatGLM3-6B's names:

# %%
def chatglm3_components(config):
    """Parameters per component of ChatGLMForCausalLM(config), keyed like its named_parameters
    (the layer number replaced by *)."""
    hidden, ffn, vocab = config.hidden_size, config.ffn_hidden_size, config.padded_vocab_size
    projection = config.num_attention_heads * config.kv_channels       # width of all query heads
    qkv_out = qkv_width(config)                                        # queries + keys + values
    per_layer = {
        "input_layernorm.weight": hidden,
        "self_attention.query_key_value.weight": qkv_out * hidden,
        "self_attention.query_key_value.bias": qkv_out,                  # the only bias (add_qkv_bias)
        "self_attention.dense.weight": hidden * projection,
        "post_attention_layernorm.weight": hidden,
        "mlp.dense_h_to_4h.weight": 2 * ffn * hidden,                      # gate and up halves
        "mlp.dense_4h_to_h.weight": hidden * ffn,
    }
    return {
        "transformer.embedding.word_embeddings.weight": vocab * hidden,
        **{f"transformer.encoder.layers.*.{name}": config.num_layers * count for name, count in per_layer.items()},
        "transformer.encoder.final_layernorm.weight": hidden,
        "transformer.output_layer.weight": vocab * hidden,               # untied: a second vocab x hidden
    }


# %% tags=["nbval-check-output"]
components = chatglm3_components(chatglm3_config)
total = sum(components.values())
for name, count in components.items():
    short = name.removeprefix("transformer.").replace("encoder.layers.*.", f"{chatglm3_config.num_layers} x ")
    print(f"{short:>42}: {count:>14,}  {count / total:7.3%}")
print(f"{'total':>42}: {total:>14,}")
one_layer = sum(v for k, v in components.items() if ".layers." in k) // chatglm3_config.num_layers
print(f"{'one GLM block':>42}: {one_layer:>14,}")
assert total == 6_243_584_000 == count_parameters(chatglm3_config)
assert one_layer == 203_960_832


def share(part):  # the fraction of all parameters in components whose name contains `part`
    return sum(v for k, v in components.items() if part in k) / total


assert abs(share(".mlp.") - 0.755) < 5e-4 and abs(share(".self_attention.") - 0.160) < 5e-4
assert abs(share("word_embeddings") - 0.0427) < 5e-5 and abs(share("output_layer") - 0.0427) < 5e-5
assert sum(v for k, v in components.items() if "layernorm" in k) == 233_472  # the 57 RMSNorm weight vectors


# %% [markdown]
# Exactly **6,243,584,000** parameters, and `count_parameters` agrees. The two SwiGLU matrices
# alone hold 75.5% of them; attention (`query_key_value` and `dense`) 16.0%; the embedding and
# the output layer 4.27% each; the 57 RMSNorm weight vectors together hold 233,472 parameters, 0.004%.

# %% tags=["nbval-check-output"]
def share(*parts):
    return sum(v for k, v in components.items() if any(p in k for p in parts)) / total


shares = {"MLP": share("mlp."), "attention": share("self_attention."),
          "embedding": share("word_embeddings"), "output_layer": share("output_layer"),
          "norms": share("layernorm")}
print({k: f"{v:.3%}" for k, v in shares.items()})
assert abs(shares["MLP"] - 0.755) < 0.001 and abs(shares["attention"] - 0.160) < 0.001
assert abs(shares["embedding"] - 0.0427) < 0.0001 and shares["output_layer"] == shares["embedding"]
assert sum(v for k, v in components.items() if "layernorm" in k) == 233_472 and shares["norms"] < 0.00004

# %% [markdown]
# ### Building the real-size model without the memory
#
# A formula can be wrong, so let us count the real thing. In fp32, ChatGLM3-6B needs about 23 GiB,
# more than most laptops have. PyTorch's **meta device** builds tensors that have a shape and a
# dtype but no storage: the whole model is created in seconds (most of it PyTorch setting up its
# meta kernels on first use) and takes no memory. It is also how `load_pretrained` builds a model
# before reading its weights.

# %% tags=["nbval-ignore-output"]
import time

start = time.perf_counter()
with torch.device("meta"):
    meta_model = ChatGLMForCausalLM(chatglm3_config)
print(f"built in {time.perf_counter() - start:.1f} s")

# %% tags=["nbval-check-output"]
weight = meta_model.transformer.encoder.layers[0].mlp.dense_h_to_4h.weight
print("dense_h_to_4h.weight:", list(weight.shape), weight.dtype, "on", weight.device)
try:
    weight[0, 0].item()
except RuntimeError as error:
    print("its values?", error)
meta_total = sum(p.numel() for p in meta_model.parameters())
print(f"parameters of the meta model: {meta_total:,}")
assert meta_total == total == 6_243_584_000

# %% [markdown]
# The same total, component by component: group the meta model's parameters by name (with the
# layer number replaced by `*`) and compare with the formulas.

# %% tags=["nbval-check-output"]
counted = {}
for name, p in meta_model.named_parameters():
    key = re.sub(r"\.layers\.\d+\.", ".layers.*.", name)
    counted[key] = counted.get(key, 0) + p.numel()
assert counted == components
print(f"{len(counted)} components, {len(list(meta_model.parameters()))} parameter tensors: all equal to the formulas")

# %% [markdown]
# The course model is built from the same formulas, but with so few layers its embedding and
# output layer weigh much more: 42% of the model instead of 8.5%. Lesson 01 chose its
# vocabulary size with this trade-off in mind.

# %% tags=["nbval-check-output"]
course_components = chatglm3_components(course_config)
course_total = sum(course_components.values())
course_vocab_share = (course_components["transformer.embedding.word_embeddings.weight"]
                      + course_components["transformer.output_layer.weight"]) / course_total
print(f"course model: {course_total:,} parameters, embedding + output layer {course_vocab_share:.1%}")
print(f"chatglm3-6b:  {total:,} parameters, embedding + output layer {2 * shares['embedding']:.1%}")
assert course_total == count_parameters(course_config) == sum(p.numel() for p in model.parameters()) == 4_986_112
assert abs(course_vocab_share - 0.42) < 0.005 and abs(2 * shares["embedding"] - 0.085) < 0.001

# %%
GROUPS = [("词嵌入 embedding", "word_embeddings"), ("注意力 attention", "self_attention."),
          ("输出层 output layer", "output_layer"), ("前馈 MLP", "mlp."), ("归一化 norms", "layernorm")]
GROUP_COLOURS = ["#4c72b0", "#dd8452", "#c44e52", "#55a868", "#8172b3"]


def grouped(parts):
    return [sum(v for k, v in parts.items() if key in k) for _, key in GROUPS]


def draw_parameter_counts():
    fig, (bars, pie_6b, pie_course) = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    names = [k.removeprefix("transformer.").replace("encoder.layers.*.", "28 × ") for k in components]
    colours = [next(c for (_, key), c in zip(GROUPS, GROUP_COLOURS) if key in k) for k in components]
    bars.barh(names[::-1], [v / 1e6 for v in components.values()][::-1], color=colours[::-1])
    for y, value in enumerate(list(components.values())[::-1]):
        bars.text(value / 1e6 + 30, y, f"{value / 1e6:,.1f} M" if value > 1e6 else f"{value:,}", va="center",
                  fontsize=8)
    bars.set_xlim(0, 3900)
    bars.set_xlabel("参数 (百万) parameters (millions)")
    bars.set_title("ChatGLM3-6B: 6,243,584,000 个参数 parameters")
    for ax, parts, title in [(pie_6b, components, "ChatGLM3-6B (28 层 layers)"),
                             (pie_course, course_components, "本课程模型 course model (4 层 layers)")]:
        wedges, _, _ = ax.pie(grouped(parts), colors=GROUP_COLOURS, startangle=90, counterclock=False,
                              pctdistance=0.75, autopct=lambda pct: f"{pct:.1f}%" if pct > 1 else "")
        ax.set_title(title)
    fig.legend(wedges, [label for label, _ in GROUPS], loc="lower center", ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


figure = draw_parameter_counts()
plt.show()

# %% [markdown]
# ## 7. Memory for the weights
#
# Memory is parameters times bytes per parameter: 4 in fp32, 2 in fp16 or bf16, 1 in int8 and
# half a byte in int4 (two weights share a byte). This lesson counts memory in **GiB** (2³⁰ bytes),
# the unit of `nvidia-smi` and of PyTorch's memory summaries; a "16 GB" GPU holds about 16 GiB.
# (Download sizes are often quoted in GB, 10⁹ bytes, which makes the same file look 7% larger.)
# The real checkpoint is stored in fp16; the course runs the real model in bf16 (same size, a
# wider exponent range). Quantised formats also store a scale per row or per block of weights and
# usually keep the embedding in 16 bits, so their real files are a little bigger (lesson 11).

# %% tags=["nbval-check-output"]
BYTES_PER_PARAMETER = {"float32": 4, "bfloat16": 2, "int8": 1, "int4": 0.5}
weight_bytes = {dtype: math.ceil(total * size) for dtype, size in BYTES_PER_PARAMETER.items()}
for dtype, size in weight_bytes.items():
    print(f"{dtype:>9}: {size:>14,} bytes = {size / 2**30:5.2f} GiB")
assert weight_bytes["float32"] == 24_974_336_000 and weight_bytes["bfloat16"] == 12_487_168_000
assert abs(weight_bytes["int8"] / 2**30 - 5.81) < 0.01 and abs(weight_bytes["int4"] / 2**30 - 2.91) < 0.01

# %% [markdown]
# So ChatGLM3-6B fits a 16 GiB GPU in bf16 (11.6 GiB of weights, plus activations and the KV
# cache), but not in fp32 (23.3 GiB). Training needs far more: with AdamW in mixed precision each
# parameter has a bf16 weight and a bf16 gradient (2 bytes each) and, in fp32, a master copy of the
# weight and the two moments `m` and `v` (4 bytes each): 16 bytes in all, about 93 GiB before a
# single activation is stored. That is why lesson 10 fine-tunes only a few parameters.

# %% tags=["nbval-check-output"]
adamw_bytes = total * (2 + 2 + 4 + 4 + 4)   # bf16 weights and gradients; fp32 master weights, m and v
print(f"AdamW training state: 2 + 2 + 4 + 4 + 4 = 16 bytes per parameter = {adamw_bytes / 2**30:.1f} GiB")
assert adamw_bytes == 16 * total and round(adamw_bytes / 2**30, 1) == 93.0 and round(weight_bytes["bfloat16"] / 2**30, 1) == 11.6
assert round(weight_bytes["float32"] / 2**30, 1) == 23.3

# %% [markdown]
# **Compute per token.** Each weight takes part in one multiply-add per token in the forward pass,
# 2 floating-point operations: about `2N` FLOPs per token for `N` parameters (attention over the
# context adds a little more, growing with its length). The backward pass costs about twice the
# forward (gradients for the activations and for the weights), so training costs about `6N` per
# token. Why is the vocabulary padded to 65024 when the tokenizer has 64798 ids? 65024 is a
# multiple of 128 (508 × 128): matrix shapes that divide evenly into the tiles of GPU kernels and
# into equal slices for several GPUs run faster. That is the usual reason (Megatron-LM pads its
# vocabularies to a multiple of 128 for it); ChatGLM3's authors do not document theirs. The 226
# extra rows are never used.

# %% tags=["nbval-check-output"]
print(f"forward: {2 * total / 1e9:.1f} GFLOPs per token; training: {6 * total / 1e9:.1f} GFLOPs per token")
assert round(2 * total / 1e9, 1) == 12.5 and round(6 * total / 1e9, 1) == 37.5
assert 65024 % 128 == 0 and 65024 // 128 == 508 and 65024 - 64798 == 226


# %%
def draw_memory():
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(weight_bytes)
    ax.bar(names, [weight_bytes[n] / 2**30 for n in names], color=["#4c72b0", "#55a868", "#dd8452", "#c44e52"])
    for x, n in enumerate(names):
        ax.text(x, weight_bytes[n] / 2**30 + 0.4, f"{weight_bytes[n] / 2**30:.1f} GiB", ha="center")
    for gib in (8, 16, 24):
        ax.axhline(gib, color="#999999", linestyle="--", linewidth=0.8)
        ax.text(3.45, gib + 0.3, f"{gib} GiB 显卡 GPU", ha="right", fontsize=8, color="#666666")
    ax.set_ylim(0, 27)
    ax.set_ylabel("权重内存 weight memory (GiB)")
    ax.set_title("ChatGLM3-6B 权重在不同精度下的内存 (weights per dtype)")
    return fig


figure = draw_memory()
plt.show()

# %% [markdown]
# ## 8. The real `config.json`, field by field
#
# The facts about the real ChatGLM3 are not part of the course. When you have its reference files
# (see the README), the lesson reads the real `config.json`; otherwise it uses a built-in copy of
# its numbers, so every cell runs either way.

# %%
from glm3_teach.paths import find_reference_file

# The network fields of THUDM/chatglm3-6b's config.json (revision of 2023-12-07).
BUILT_IN_CONFIG = {
    "add_bias_linear": False, "add_qkv_bias": True, "apply_query_key_layer_scaling": True,
    "apply_residual_connection_post_layernorm": False, "attention_dropout": 0.0, "attention_softmax_in_fp32": True,
    "bias_dropout_fusion": True, "ffn_hidden_size": 13696, "fp32_residual_connection": False, "hidden_dropout": 0.0,
    "hidden_size": 4096, "kv_channels": 128, "layernorm_epsilon": 1e-05, "multi_query_attention": True,
    "multi_query_group_num": 2, "num_attention_heads": 32, "num_layers": 28, "original_rope": True,
    "padded_vocab_size": 65024, "post_layer_norm": True, "rmsnorm": True, "seq_length": 8192, "use_cache": True,
    "torch_dtype": "float16", "tie_word_embeddings": False, "eos_token_id": 2, "pad_token_id": 0,
}
FILE_KEYS = {"_name_or_path", "model_type", "architectures", "auto_map", "transformers_version"}  # describe the file

config_path = find_reference_file("config.json")
real_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path else BUILT_IN_CONFIG
SEARCHED = ("looked in ../shared/reference/chatglm3/ beside the repository, or in the folder named by "
            "GLM3_REFERENCE_DIR")
print("read from:", f"the reference folder's {config_path.name}" if config_path
      else f"the built-in copy (no config.json: {SEARCHED})")
if config_path:
    assert {k: v for k, v in real_config.items() if k not in FILE_KEYS} == BUILT_IN_CONFIG
    print("keys that describe the file, not the network:", sorted(set(real_config) & FILE_KEYS))

# %% [markdown]
# Every network field of the real file against `ChatGLMConfig.chatglm3_6b()`:

# %% tags=["nbval-check-output"]
ours = chatglm3_config.to_dict()
print(f"{'field':>42} {'config.json':>12} {'ours':>12}")
for key in BUILT_IN_CONFIG:
    same = real_config[key] == ours[key]
    print(f"{key:>42} {real_config[key]!s:>12} {ours[key]!s:>12}" + ("" if same else "  <- differs"))
    assert same, key
only_ours = sorted(set(ours) - set(BUILT_IN_CONFIG) - FILE_KEYS)
print("fields of ours that this config.json does not have:", only_ours)
assert len(BUILT_IN_CONFIG) == 27 and len(only_ours) == 6

# %% [markdown]
# All 27 fields agree. Ours has six more: `rope_ratio` (RoPE base = 10000 × `rope_ratio`, read by
# the later 32k-context revisions and 1 for this one), `quantization_bit`, `pre_seq_len` and
# `prefix_projection` (quantisation and P-Tuning v2, lessons 10 and 11), `classifier_dropout`
# (for a classification head we do not build) and `attention_impl` (the course's switch between
# the fused and the explicit attention of lesson 03). Two fields are stored but change nothing:
# `original_rope` is never read by the reference code, and `apply_query_key_layer_scaling`
# multiplies and divides the scores by the same factor.
#
# With the file present, `ChatGLMConfig.from_json` reads it in one line and keeps the keys that
# describe the file (`auto_map`, ...) in `config.extra`, to write them back:

# %%
if config_path:
    loaded_config = ChatGLMConfig.from_json(config_path)
    assert loaded_config == ChatGLMConfig.chatglm3_6b(extra=loaded_config.extra)
    print("extra:", sorted(loaded_config.extra))
else:
    print(f"no reference config.json ({SEARCHED}): skipped")

# %% [markdown]
# ## 9. The key names of a real checkpoint
#
# A checkpoint is a dictionary from names to tensors, the model's `state_dict()`. Every name is a
# path through the module tree plus the tensor's name: `transformer.encoder.layers.3.mlp.dense_h_to_4h.weight`
# is `model.transformer.encoder.layers[3].mlp.dense_h_to_4h.weight`. The meta model lists its keys
# and shapes without any memory; besides the 200 tensors there is nothing else to load:

# %% tags=["nbval-check-output"]
meta_state = meta_model.state_dict()
print(len(meta_state), "tensors; the ones outside the layers and those of layer 0:")
for key, tensor in meta_state.items():
    if ".layers." not in key or ".layers.0." in key:
        module = meta_model.get_submodule(key.rsplit(".", 1)[0])
        print(f"  {key:<66} {list(tensor.shape)!s:<14} {type(module).__name__}")
assert len(meta_state) == 2 + 7 * 28 + 2 == 200

# %% [markdown]
# 200 = 2 (embedding, `inv_freq`) + 7 per layer × 28 + 2 (final norm, output layer). One of them
# is not a parameter: `rotary_pos_emb.inv_freq` is a *buffer*, the 32 RoPE frequencies, saved with
# the model although the reference code recomputes them and reads only its dtype.
#
# The real chatglm3-6b is published as 7 shards, `pytorch_model-00001-of-00007.bin` to
# `...-00007-of-00007.bin`, plus an index file that says which shard holds which key and how many
# bytes they total. When the reference index is available, we compare it with our keys:

# %%
index_path = find_reference_file("pytorch_model.bin.index.json")
if index_path:
    index = json.loads(index_path.read_text(encoding="utf-8"))
    weight_map = index["weight_map"]
    assert set(weight_map) == set(meta_state)
    fp16_bytes = sum(t.numel() * 2 for t in meta_state.values())
    assert fp16_bytes == index["metadata"]["total_size"] == 12_487_168_064
    print(f"the index names the same {len(weight_map)} keys as our model; total_size "
          f"{index['metadata']['total_size']:,} bytes = our tensors in fp16, inv_freq included")
    shards_of_layer = {}
    for shard in sorted(set(weight_map.values())):
        keys = [k for k, f in weight_map.items() if f == shard]
        layers = sorted({int(m) for k in keys for m in re.findall(r"layers\.(\d+)\.", k)})
        others = [k.split(".")[-2] for k in keys if ".layers." not in k]
        print(f"  {shard}: layers {layers[0]:>2}-{layers[-1]:<2}", *others)
        for layer in layers:
            shards_of_layer.setdefault(layer, []).append(shard)
    assert any(len(files) > 1 for files in shards_of_layer.values())  # some layers straddle two shards
else:
    print(f"no pytorch_model.bin.index.json ({SEARCHED}): skipped (the model's own keys are listed above)")

# %% [markdown]
# The names match one for one, and so do the sizes: 6,243,584,032 numbers (the parameters plus
# the 32 of `inv_freq`) at 2 bytes each are exactly the index's `total_size`. A layer can straddle
# two shards; the loader does not care, it reads the shards one after another.
#
# ## 10. Save and load in the Hugging Face layout
#
# `save_pretrained(model, folder)` writes what a Hugging Face model folder holds: `config.json`
# and the weights, here as one `model.safetensors` (a plain table of tensors that, unlike a
# pickled `.bin`, cannot run code when opened). With `tokenizer=` it saves the tokenizer beside
# them. `load_pretrained(folder)` reads that, or the real model's sharded `.bin` files with their
# index: it builds the model on the meta device, allocates it once, and copies the shards in one
# at a time, so the weights are never held twice.

# %% tags=["nbval-check-output"]
import tempfile

workdir = tempfile.TemporaryDirectory()
folder = save_pretrained(model, Path(workdir.name) / "mini-chatglm3", tokenizer=tokenizer)
for file in sorted(folder.iterdir()):
    print(f"  {file.name:<18} {file.stat().st_size / 2**20:6.2f} MiB")
state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
assert 0 < (folder / "model.safetensors").stat().st_size - state_bytes < 50_000   # + a small JSON header

# %% tags=["nbval-check-output"]
reloaded = load_pretrained(folder)
reloaded_tokenizer = load_tokenizer(folder)
with torch.no_grad():
    same = torch.equal(reloaded(input_ids).logits, model(input_ids).logits)
print("config equal:", reloaded.config == ChatGLMConfig(**{**course_config.__dict__, "torch_dtype": "float32"}))
print("logits identical:", same, "| tokenizer identical:", reloaded_tokenizer.to_json() == tokenizer.to_json())
assert same

# %% [markdown]
# Bit for bit the same logits, because safetensors stores the exact bits of every tensor. Saving
# in bf16 halves the file; the logits then move a little, since every weight has been rounded to
# 8 significant bits:

# %% tags=["nbval-check-output"]
half_folder = save_pretrained(model, Path(workdir.name) / "mini-chatglm3-bf16", dtype=torch.bfloat16)
half = load_pretrained(half_folder, dtype=torch.float32)
with torch.no_grad():
    drift = (half(input_ids).logits - model(input_ids).logits).abs().max().item()
size_ratio = (half_folder / "model.safetensors").stat().st_size / (folder / "model.safetensors").stat().st_size
print(f"bf16 file / fp32 file = {size_ratio:.2f}; largest logit change {drift:.3f}")
assert abs(size_ratio - 0.5) < 0.01 and 0 < drift < 0.05


# %% [markdown]
# ## 11. An untrained model babbles
#
# Our model has random weights. What does it say? The loop below is the simplest decoder:
# feed the prompt, take the most likely next token (*greedy*), append it, repeat. It keeps the
# keys and values of the tokens already read (`use_cache=True` returns them as `kv_cache`), so
# each step feeds only the one new token. Lesson 07 builds the full `generate` with sampling
# controls and measures what the cache saves.
#
# With near-equal logits, the tiny rounding differences between a CPU and a GPU could change
# which token wins, so this section runs the model on the CPU: the text below is then the same on
# every machine.

# %%
@torch.no_grad()
def continue_ids(model, ids, max_new_tokens, stop_ids=(), vocab_size=None, generator=None):
    """New token ids after ``ids`` (a list): greedy, or sampled when a CPU ``generator`` is given.

    ``vocab_size`` limits the choice to ids the tokenizer knows (the rows above it are padding).
    """
    model_device = next(model.parameters()).device
    out = model(torch.tensor([ids], device=model_device), use_cache=True)   # logits [1, len(ids), vocab]
    new_ids = []
    for _ in range(max_new_tokens):
        next_logits = out.logits[0, -1, :vocab_size].float().cpu()           # [vocab]
        if generator is None:
            next_id = int(next_logits.argmax())
        else:
            next_id = int(torch.multinomial(torch.softmax(next_logits, dim=-1), 1, generator=generator))
        if next_id in stop_ids:
            break
        new_ids.append(next_id)
        out = model(torch.tensor([[next_id]], device=model_device), kv_cache=out.kv_cache, use_cache=True)
    return new_ids


# %% tags=["nbval-check-output"]
start_ids = tokenizer.encode("小猫在茶铺里")
greedy = continue_ids(model, start_ids, 20)
sampled = continue_ids(model, start_ids, 20, generator=torch.Generator().manual_seed(0))
print("greedy: ", repr(tokenizer.decode(start_ids + greedy)))
print("sampled:", repr(tokenizer.decode(start_ids + sampled)))

# %% [markdown]
# Noise, and for a good reason. Every weight is a small random number (normal, standard deviation
# 0.02), so the logits are 4096 small random numbers that do not depend on the meaning of the
# prompt in any useful way: the model has never seen a sentence. Greedy decoding then picks
# whichever id happens to have the largest random score and soon falls into a loop; sampling picks
# ids almost uniformly, English and Chinese pieces mixed, with stray bytes that are not whole
# characters (shown as �). The longer phrases you may spot, such as 一罐乌龙茶, are single tokens
# of the course tokenizer, drawn at random like any other.
#
# How flat is its next-token distribution? The logit of each id is a sum of 256 products of two
# small numbers; after the final RMSNorm the hidden vector has length √256 = 16, so each logit has
# standard deviation about 0.02 × 16 = 0.32. `exp` of such numbers stays between about 1/3 and 3,
# so no probability is far from the uniform 1/4096:

# %% tags=["nbval-check-output"]
assert len(tokenizer.encode("一罐乌龙茶")) == 1   # a whole phrase, one token of the course tokenizer
with torch.no_grad():
    next_probs = torch.softmax(model(torch.tensor([start_ids])).logits[0, -1], dim=-1)   # [vocab]
uniform = 1 / course_config.padded_vocab_size
print(f"uniform 1/4096 = {uniform:.6f}; untrained model: min {next_probs.min():.6f}, max {next_probs.max():.6f}")
print(f"max / uniform = {next_probs.max() / uniform:.2f}")
assert 0.1 < next_probs.min() / uniform < 1 < next_probs.max() / uniform < 5


# %%
def draw_next_token_probs():
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist(next_probs.numpy() * course_config.padded_vocab_size, bins=60, color="#4c72b0")
    ax.axvline(1.0, color="#c44e52", linestyle="--", label="均匀分布 uniform 1/4096")
    ax.set_xlabel("概率 / (1/4096)  probability relative to uniform")
    ax.set_ylabel("词元数 token ids")
    ax.set_title("未训练模型的下一个词元分布 (an untrained model's next-token probabilities)")
    ax.legend()
    return fig


figure = draw_next_token_probs()
plt.show()

# %% [markdown]
# The loss tells the same story. Cross-entropy is the average of −ln p(the true next token). A
# model that spreads its probability evenly over V ids has loss ln V, here ln 4096 = 8.318, and
# an untrained model is almost that. Almost: `logsumexp` of V Gaussian logits with spread σ is
# about ln V + σ²/2, so its loss is higher by about 0.32²/2 = 0.05 on average, plus or minus how
# the random logits of the true tokens happen to fall. On 512 tokens of the validation stories:

# %% tags=["nbval-check-output"]
from glm3_teach.data import load_corpus

val_ids = torch.tensor([tokenizer.encode(load_corpus("val", "zh")[:3000])[:256],
                        tokenizer.encode(load_corpus("val", "en")[:6000])[:256]])   # [2, 256]
with torch.no_grad():
    val_logits = model(val_ids).logits                                              # [2, 256, 4096]
loss = torch.nn.functional.cross_entropy(val_logits[:, :-1].flatten(0, 1), val_ids[:, 1:].flatten())
spread = val_logits.var(dim=-1).mean().item() ** 0.5
excess = torch.logsumexp(val_logits, dim=-1).mean().item() - math.log(4096)
print(f"loss {loss:.3f} vs ln(4096) = {math.log(4096):.3f}; logit spread sigma = {spread:.2f}")
print(f"mean logsumexp - ln V = {excess:.3f} vs sigma^2/2 = {spread ** 2 / 2:.3f}")
assert abs(loss.item() - math.log(4096)) < 0.15
assert abs(spread - 0.32) < 0.02 and abs(excess - spread ** 2 / 2) < 0.01

# %% [markdown]
# Pretraining (lesson 06) has to bring this number down from 8.3. A loss that *starts* far from
# ln V is a sign of a bug: an init that is too large, or logits that leak the answer.
#
# ## 12. Loading the real ChatGLM3-6B
#
# Everything above was built to load the real weights. The course never downloads them; if you
# have downloaded `THUDM/chatglm3-6b` yourself (about 11.6 GiB of weights, under ChatGLM3's model
# licence), point the environment variable `GLM3_CHATGLM3_PATH` at its folder before starting
# JupyterLab, and the cell below loads it in bf16 (about 11.6 GiB of memory, a GPU with 16 GiB or
# more is best; on a CPU it takes minutes)
# and asks one question, with ChatGLM3's own tokenizer (`tokenizer.model` from the same folder),
# its chat layout from lesson 01 (`build_chat_input`) and the greedy loop above. It stops where
# ChatGLM3's `chat()` stops: at `</s>` or when the model starts a new `<|user|>` or
# `<|observation|>` turn.

# %% tags=["nbval-ignore-output"]
import os

CHATGLM3_PATH_VAR = "GLM3_CHATGLM3_PATH"
chatglm3_dir = Path(os.environ.get(CHATGLM3_PATH_VAR, "")).expanduser()
if os.environ.get(CHATGLM3_PATH_VAR) and chatglm3_dir.is_dir():
    start = time.perf_counter()
    chatglm3 = load_pretrained(chatglm3_dir, dtype=torch.bfloat16, device=device)
    chatglm3_tokenizer = load_tokenizer(chatglm3_dir)   # its tokenizer.model
    n_bytes = sum(t.numel() * t.element_size() for t in chatglm3.state_dict().values())
    print(f"loaded {sum(p.numel() for p in chatglm3.parameters()):,} parameters, {n_bytes / 2**30:.2f} GiB "
          f"in {time.perf_counter() - start:.0f} s")
    stop_ids = {chatglm3_tokenizer.eos_token_id, chatglm3_tokenizer.special_id("<|user|>"),
                chatglm3_tokenizer.special_id("<|observation|>")}
    question = "你好，请用一句话介绍一下你自己。"
    prompt_ids = chatglm3_tokenizer.build_chat_input(question)
    reply_ids = continue_ids(chatglm3, prompt_ids, 80, stop_ids=stop_ids, vocab_size=chatglm3_tokenizer.vocab_size)
    print("用户 user:     ", question)
    print("ChatGLM3-6B:   ", chatglm3_tokenizer.decode(reply_ids).strip())
    del chatglm3
else:
    print(f"{CHATGLM3_PATH_VAR} is not set to a folder, so the real model is not loaded (nothing is downloaded).\n"
          f"To try it: download THUDM/chatglm3-6b from Hugging Face or ModelScope (ZhipuAI/chatglm3-6b), e.g.\n"
          f"    huggingface-cli download THUDM/chatglm3-6b --local-dir ~/models/chatglm3-6b\n"
          f"then start JupyterLab with {CHATGLM3_PATH_VAR}=~/models/chatglm3-6b and run this cell again.")


# %% [markdown]
# The reply starts after `<|assistant|>` with an empty metadata line, which `.strip()` removes.
# `vocab_size=` keeps the 226 padding rows of the output layer (ids 64798 to 65023, which no text
# can produce) out of the choice.
#
# ## Exercises
#
# ### Exercise 1: the model's forward, with padding and a cache
# Section 4 ran the layers by hand on one unpadded sentence. Write `my_forward(model, input_ids,
# attention_mask, kv_cache)` returning the logits `[batch, seq, padded_vocab_size]` that
# `model(input_ids, attention_mask=attention_mask, kv_cache=kv_cache).logits` returns, by calling
# the model's submodules yourself (`model.transformer.embedding`, `.rotary_pos_emb`,
# `.encoder.layers`, `.encoder.final_layernorm`, `.output_layer`). Each layer is called as
# `layer(hidden_states, rope_cache, mask, is_causal, layer_kv_cache)` and returns
# `(hidden_states, new_layer_cache, probs)`. What you must get right:
# - `attention_mask` (`[batch, past + seq]`, 0 for the left pads, or `None`) covers the cached tokens
#   too; `kv_cache` is `None` or one `(k, v)` pair per layer, each `[batch, 2, past, 64]`;
# - **positions**: real tokens count from 0, so a left-padded row `[pad, pad, a, b]` has positions
#   `[0, 0, 0, 1]`, and the new tokens continue from where the cache stopped (lesson 02);
# - **the mask**: with pads, `build_attention_mask`; without pads and without a past,
#   `is_causal=True` and no mask; one new token after a cache needs neither; several new tokens
#   after a cache need `causal_mask(seq, past + seq)` (lesson 03).
#
# The check compares the logits of the real tokens (pad positions are garbage by design) on four
# batches: plain, left-padded, and three and then one new token after a padded cache. Calling
# `model(...)` itself inside `my_forward` fails the check.

# %%
def my_forward(model, input_ids, attention_mask=None, kv_cache=None):
    raise NotImplementedError


# %% tags=["nbval-check-output"]
from glm3_teach.attention import build_attention_mask, causal_mask  # noqa: F401 (for your my_forward)
from glm3_teach.checks import Case, forbid_modules


def real_tokens_only(logits, attention_mask):
    """The logits with pad positions set to 0: [batch, seq, vocab]."""
    if attention_mask is None:
        return logits
    real = attention_mask[:, -logits.shape[1]:].bool()[..., None]      # [batch, seq, 1]
    return torch.where(real, logits, torch.zeros((), dtype=logits.dtype))


generator = seed_everything(51)
batch_ids = torch.randint(0, course_config.eos_token_id, (2, 9), generator=generator)   # [2, 9]
batch_ids[0, :3] = course_config.pad_token_id                                           # row 0: 3 left pads
batch_mask = torch.ones(2, 9, dtype=torch.long)
batch_mask[0, :3] = 0
with torch.no_grad():
    padded_past = model(batch_ids[:, :6], attention_mask=batch_mask[:, :6], use_cache=True).kv_cache  # 6 cached
forward_cases = [
    Case(args=(torch.randint(0, 4094, (2, 6), generator=generator), None, None), label="no padding, no cache"),
    Case(args=(batch_ids[:, :6], batch_mask[:, :6], None), label="left-padded batch, no cache"),
    Case(args=(batch_ids[:, 6:], batch_mask, padded_past), label="3 new tokens after a padded cache"),
    Case(args=(batch_ids[:, 6:7], batch_mask[:, :7], padded_past), label="1 new token after a padded cache"),
]
with torch.no_grad():
    result = check("my_forward",  # calling the whole model inside my_forward is refused
                   forbid_modules(lambda ids, mask, cache: real_tokens_only(my_forward(model, ids, mask, cache), mask),
                                  ChatGLMForCausalLM),
                   lambda ids, mask, cache: real_tokens_only(model(ids, attention_mask=mask, kv_cache=cache).logits, mask),
                   forward_cases, atol=1e-5, rtol=1e-4,
                   hint="past = kv_cache[0][0].shape[2]; positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:] "
                        "(without a mask: arange(past, past + seq)); rope = rotary_pos_emb(seq_length)[positions]; "
                        "pass kv_cache[i] to layer i")


# %% [markdown]
# ### Exercise 2: a cache in ChatGLM3's layout
# A cache saved by ChatGLM3's own code (its `past_key_values`) holds per layer `(k, v)` of
# `[seq, batch, num_kv_groups, head_dim]`. Write `from_chatglm3_cache(past_key_values)` returning the
# same cache in this package's layout, `[batch, num_kv_groups, seq, head_dim]`, so the model can
# continue from it. The check continues a sentence from your converted cache and compares the
# logits with those of the model continuing from its own cache.

# %%
def from_chatglm3_cache(past_key_values):
    raise NotImplementedError


# %% tags=["nbval-check-output"]
from einops import rearrange


def chatglm3_layout(kv_cache):
    """This package's cache in ChatGLM3's layout: [b, g, s, d] -> [s, b, g, d] per tensor."""
    return [tuple(rearrange(t, "b g s d -> s b g d").contiguous() for t in pair) for pair in kv_cache]


def continue_from(cache, new_ids):
    with torch.no_grad():
        return model(new_ids, kv_cache=cache).logits                    # [batch, new, vocab]


generator = seed_everything(52)
layout_cases = []
for batch, past_len, label in [(1, 5, "one sentence"), (3, 8, "a batch of 3")]:
    start = torch.randint(0, 4094, (batch, past_len), generator=generator)
    with torch.no_grad():
        own_cache = model(start, use_cache=True).kv_cache
    layout_cases.append(Case(args=(chatglm3_layout(own_cache), own_cache,
                                   torch.randint(0, 4094, (batch, 2), generator=generator)), label=label))
result = check("from_chatglm3_cache",
               lambda theirs, ours, new_ids: continue_from(from_chatglm3_cache(theirs), new_ids),
               lambda theirs, ours, new_ids: continue_from(ours, new_ids), layout_cases,
               hint="rearrange(k, 's b g d -> b g s d') for every k and v; keep one (k, v) tuple per layer")


# %% [markdown]
# ### Exercise 3: count the parameters of any config
# Write `parameters_of(config)` returning the number of parameters of
# `ChatGLMForCausalLM(config)`, from the config's fields alone. Mind the cases the course config
# does not have: `multi_query_attention=False` (one KV group per query head),
# `add_bias_linear=True` (a bias on every Linear layer, `query_key_value` included) and a head
# projection `num_attention_heads * kv_channels` wider than `hidden_size`.

# %%
def parameters_of(config: ChatGLMConfig) -> int:
    raise NotImplementedError


# %%
count_cases = [course_config, chatglm3_config, ChatGLMConfig.chatglm3_6b(multi_query_attention=False),
               ChatGLMConfig(**{**course_config.__dict__, "add_bias_linear": True}),
               ChatGLMConfig(**{**course_config.__dict__, "num_attention_heads": 8, "add_qkv_bias": False})]
result = check("parameters_of", parameters_of, count_parameters, count_cases,
               hint="use config.num_kv_groups for the KV groups; the projection is heads * kv_channels wide")

# %% [markdown]
# Solutions are in `notebooks/solutions/05_model_solutions.ipynb`; try first.
#
# ## Summary
# - `ChatGLMConfig` carries the field names of ChatGLM3's `config.json`; its defaults are
#   chatglm3-6b's, and the course model changes only the sizes (4 layers, 256 wide, 4096 ids).
# - The forward pass: embedding lookup → rope rows for the positions → N pre-norm GLM blocks →
#   final RMSNorm → untied output layer, `[batch, seq_len]` ids to `[batch, seq_len, vocab]` logits.
#   Too long inputs and ids outside the vocabulary are refused with a message that says why.
# - ChatGLM3-6B has 6,243,584,000 parameters: 203,960,832 per block × 28, two 266 M vocabulary
#   matrices and one final norm; three quarters of them sit in the SwiGLU MLPs. The meta device
#   builds it without memory and counts the same number.
# - Weights take 23.3 GiB in fp32, 11.6 GiB in bf16, 5.8 GiB in int8 and 2.9 GiB in int4; AdamW
#   training state alone (16 bytes a parameter) would take about 93 GiB. A token costs about 2N
#   FLOPs forward and 6N in training.
# - Our config and our 200 state-dict keys match the real `config.json` and checkpoint index one
#   for one; `save_pretrained`/`load_pretrained` use the Hugging Face layout and round-trip bit
#   for bit, and load the real shards one at a time.
# - An untrained model's next-token distribution is nearly uniform: it babbles, and its loss is
#   ln(vocab_size) plus about σ²/2.
# - ChatGLM3's own code is sequence-first (`[s, b, h]`, a KV cache of `[seq, b, 2, 128]`) and its
#   masks say True = masked; ours are batch-first and say True = may attend. Same numbers.
#
# Next: **06 · 预训练 Pretraining**, where that loss comes down and the babble turns into stories.
