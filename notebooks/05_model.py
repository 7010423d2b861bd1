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
# - the forward pass end to end, with the shape of every step, and the errors the model raises
#   on bad input;
# - every parameter of ChatGLM3-6B counted component by component (6,243,584,000), by formula and
#   by building the real-size model on PyTorch's `meta` device without using any memory;
# - how much memory the weights take in fp32, bf16, int8 and int4;
# - the real `config.json` and the key names of the real checkpoint, compared with ours;
# - saving and loading a model in the Hugging Face layout, and how to load a downloaded
#   chatglm3-6b and chat with it;
# - why an untrained model babbles, and why its loss is ln(vocab_size).

# %% [markdown]
# ## 1. Setup
#
# The device line differs from machine to machine.

# %% tags=["nbval-ignore-output"]
import json
import math
import re

import torch

from glm3_teach import (ChatGLMConfig, ChatGLMForCausalLM, check, count_parameters, load_pretrained, load_tokenizer,
                        pick_device, save_pretrained, seed_everything)

device = pick_device()
seed_everything(0)
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
# That is all `forward` does (it also handles padding masks and the KV cache, for lessons 06 and
# 07). Our hand-made pass equals the package's, and the device's numbers equal the CPU's:

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
# Here is the full traceback of one of them, as you would see it in your own code:

# %% tags=["raises-exception"]
model(torch.tensor([[1, 2, user_id]]))


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
# A formula can be wrong, so let us count the real thing. In fp32, ChatGLM3-6B needs about 25 GB,
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
import matplotlib.pyplot as plt

from glm3_teach.fonts import use_cjk_font

use_cjk_font()
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
# half a byte in int4 (two weights share a byte). The real checkpoint is stored in fp16; the
# course runs the real model in bf16 (same size, a wider exponent range). Quantised formats also
# store a scale per row or per block of weights and usually keep the embedding in 16 bits, so
# their real files are a little bigger (lesson 11).

# %% tags=["nbval-check-output"]
BYTES_PER_PARAMETER = {"float32": 4, "bfloat16": 2, "int8": 1, "int4": 0.5}
weight_bytes = {dtype: math.ceil(total * size) for dtype, size in BYTES_PER_PARAMETER.items()}
for dtype, size in weight_bytes.items():
    print(f"{dtype:>9}: {size:>14,} bytes = {size / 1e9:5.2f} GB = {size / 2**30:5.2f} GiB")
assert weight_bytes["float32"] == 24_974_336_000 and weight_bytes["bfloat16"] == 12_487_168_000
assert abs(weight_bytes["int8"] / 1e9 - 6.24) < 0.01 and abs(weight_bytes["int4"] / 2**30 - 2.91) < 0.01

# %% [markdown]
# So ChatGLM3-6B fits a 16 GiB GPU in bf16 (12.5 GB = 11.6 GiB of weights, plus activations and the
# KV cache), but not in fp32 (23.3 GiB). Training needs far more: with AdamW in mixed precision each
# parameter has a bf16 weight and a bf16 gradient (2 bytes each) and, in fp32, a master copy of the
# weight and the two moments `m` and `v` (4 bytes each): 16 bytes in all, about 100 GB before a
# single activation is stored. That is why lesson 10 fine-tunes only a few parameters.

# %% tags=["nbval-check-output"]
adamw_bytes = total * (2 + 2 + 4 + 4 + 4)   # bf16 weights and gradients; fp32 master weights, m and v
print(f"AdamW training state: {adamw_bytes / 1e9:.1f} GB = {adamw_bytes / 2**30:.1f} GiB")
assert abs(adamw_bytes / 1e9 - 99.9) < 0.1 and round(weight_bytes["bfloat16"] / 2**30, 1) == 11.6
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
print("read from:", f"the reference folder's {config_path.name}" if config_path
      else "the built-in copy (no reference config.json found)")
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
    print("no reference config.json: skipped")

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
    print("no reference pytorch_model.bin.index.json: skipped (the model's own keys are listed above)")

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
from pathlib import Path

workdir = tempfile.TemporaryDirectory()
folder = save_pretrained(model, Path(workdir.name) / "mini-chatglm3", tokenizer=tokenizer)
for file in sorted(folder.iterdir()):
    print(f"  {file.name:<18} {file.stat().st_size / 1e6:6.2f} MB")
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
# have downloaded `THUDM/chatglm3-6b` yourself (about 12.5 GB), point the environment variable
# `GLM3_CHATGLM3_PATH` at its folder before starting JupyterLab, and the cell below loads it in
# bf16 (about 12.5 GB of memory, a GPU with 16 GB or more is best; on a CPU it takes minutes)
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
    print(f"loaded {sum(p.numel() for p in chatglm3.parameters()):,} parameters, {n_bytes / 1e9:.2f} GB "
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
# ### Exercise 1: count the parameters of any config
# Write `parameters_of(config)` returning the number of parameters of
# `ChatGLMForCausalLM(config)`, from the config's fields alone. Mind the cases the course config
# does not have: `multi_query_attention=False` (one key/value head per query head),
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
               hint="use config.num_kv_groups for the key/value heads; the projection is heads * kv_channels wide")


# %% [markdown]
# ### Exercise 2: memory in bytes
# Write `bytes_for(num_parameters, dtype)` returning the bytes needed to store that many weights
# in `dtype`, one of `"float32"`, `"float16"`, `"bfloat16"`, `"int8"` and `"int4"`. Two int4
# weights share one byte, so an odd count needs one more half-used byte.

# %%
def bytes_for(num_parameters: int, dtype: str) -> int:
    raise NotImplementedError


# %%
BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "int4": 4}


def bytes_for_reference(num_parameters, dtype):
    return math.ceil(num_parameters * BITS[dtype] / 8)


result = check("bytes_for", bytes_for, bytes_for_reference,
               [(6_243_584_000, "float32"), (6_243_584_000, "bfloat16"), (4_986_112, "float16"),
                (6_243_584_000, "int8"), (6_243_584_000, "int4"), (7, "int4")],
               hint="bits per weight x count / 8, rounded up")


# %% [markdown]
# ### Exercise 3: the shape behind a key
# Write `key_shape(key, config)` returning the shape (a tuple) of the tensor a checkpoint stores
# under `key`, for the model that `config` describes, from the config's fields alone. Remember that
# Linear weights are `[out_features, in_features]` and that `inv_freq` holds one frequency per
# rotated pair of dims.

# %%
def key_shape(key: str, config: ChatGLMConfig) -> tuple:
    raise NotImplementedError


# %%
from glm3_teach.checkpoint import expected_tensors

shapes_by_config = {}


def key_shape_reference(key, config):
    name = config.to_json()
    if name not in shapes_by_config:
        shapes_by_config[name] = expected_tensors(config)   # built on the meta device
    return tuple(shapes_by_config[name][key])


key_cases = [(key, config) for config in (chatglm3_config, course_config) for key in
             ["transformer.embedding.word_embeddings.weight", "transformer.rotary_pos_emb.inv_freq",
              "transformer.encoder.layers.3.self_attention.query_key_value.weight",
              "transformer.encoder.layers.3.self_attention.query_key_value.bias",
              "transformer.encoder.layers.0.self_attention.dense.weight",
              "transformer.encoder.layers.2.mlp.dense_h_to_4h.weight",
              "transformer.encoder.layers.2.mlp.dense_4h_to_h.weight",
              "transformer.encoder.layers.1.post_attention_layernorm.weight",
              "transformer.output_layer.weight"]]
result = check("key_shape", key_shape, key_shape_reference, key_cases,
               hint="match the end of the key; dense_h_to_4h has 2 * ffn_hidden_size outputs; "
                    "inv_freq has kv_channels // 4")

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
# - Weights take 25.0 GB in fp32, 12.5 GB in bf16, 6.2 GB in int8 and 3.1 GB in int4; AdamW
#   training state alone would take about 100 GB.
# - Our config and our 200 state-dict keys match the real `config.json` and checkpoint index one
#   for one; `save_pretrained`/`load_pretrained` use the Hugging Face layout and round-trip bit
#   for bit, and load the real shards one at a time.
# - An untrained model's next-token distribution is nearly uniform: it babbles, and its loss is
#   ln(vocab_size) plus about σ²/2.
#
# Next: **06 · 预训练 Pretraining**, where that loss comes down and the babble turns into stories.
