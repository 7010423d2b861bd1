# %% [markdown]
# # 10 · 高效微调 Parameter-efficient fine-tuning
#
# Lesson 08 fine-tuned every weight of the base model into a chat model. For ChatGLM3-6B that is
# expensive: every one of its 6.24 billion weights needs a gradient and two AdamW moments. ChatGLM3's
# official fine-tuning scripts therefore also offer two cheaper methods, and this lesson builds both:
# **LoRA**, which learns a small low-rank change of some weight matrices, and **P-Tuning v2**, which
# learns a few "virtual tokens" that every layer attends to, a learned KV cache.
#
# **You will learn**
# - the memory of full fine-tuning for ChatGLM3-6B (weights, gradients, AdamW state), computed;
# - LoRA derived: a low-rank update `B A`, why `B` starts at zero, the `alpha / r` scaling; written
#   by hand, checked against `glm3_teach.peft`, merged back into the weights exactly;
# - the adapter files Hugging Face `peft` reads and writes, so an adapter moves between this course
#   and the real ChatGLM3-6B;
# - P-Tuning v2 as ChatGLM3 implements it: the prefix encoder, its reshaping into keys and values
#   for every layer and KV group, why RoPE never touches it, and what the attention map looks like;
# - short tuning runs of both methods, the shipped adapters, and a comparison of costs and results;
# - failure modes: P-Tuning's forgetting, a LoRA rank that is too small.

# %% [markdown]
# ## 1. Setup
# The base model of lesson 06 (`data/checkpoints/base`), loaded in fp32. Every method below starts
# from a fresh copy of it.

# %% tags=["nbval-ignore-output"]
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from glm3_teach import ChatGLMConfig, check, count_parameters, load_pretrained, load_tokenizer, peft, seed_everything
from glm3_teach.fonts import use_cjk_font
from glm3_teach.paths import data_dir

torch.set_num_threads(1)
seed_everything(0)
use_cjk_font()
BASE = data_dir() / "checkpoints" / "base"
tok = load_tokenizer(BASE)


def fresh_base():
    model = load_pretrained(BASE, dtype=torch.float32)
    model.config.seq_length = 1536          # room for the tool system messages (RoPE tables are built for any length)
    return model


model = fresh_base()
config = model.config
glm6b = ChatGLMConfig.chatglm3_6b()
print(f"{count_parameters(config):,} parameters in the course model")

# %% [markdown]
# ## 2. What full fine-tuning costs
# Training with AdamW keeps, for every trained weight, the weight, its gradient and two moment
# estimates (`exp_avg`, `exp_avg_sq`), the moments in fp32. Mixed-precision training of a fp16 model
# also keeps an fp32 master copy of the weights. For ChatGLM3-6B:

# %% tags=["nbval-check-output"]
n = count_parameters(glm6b)
full_bytes = {"weights (fp16)": 2 * n, "gradients (fp16)": 2 * n, "fp32 master weights": 4 * n,
              "AdamW moments (2 x fp32)": 8 * n}
for what, size in full_bytes.items():
    print(f"{what:26s} {size / 1e9:6.1f} GB")
print(f"{'total':26s} {sum(full_bytes.values()) / 1e9:6.1f} GB, before any activations")
assert round(sum(full_bytes.values()) / 1e9) == 100


# %% [markdown]
# About 100 GB, more than one 80 GB GPU holds, before a single activation. Inference needs only the
# 12.5 GB of fp16 weights. Both methods below keep the 6.24 B weights frozen (no gradient, no
# moments) and train a few million new ones instead.
#
# ## 3. LoRA: a low-rank update
# A linear layer computes `y = x Wᵀ + b` with `W` of shape `[out, in]`. Fine-tuning changes `W` to
# `W + ΔW`. LoRA's bet (Hu et al., 2021) is that the useful `ΔW` has low rank, so it writes
# `ΔW = (alpha / r) · B A` with `A` `[r, in]` and `B` `[out, r]`, `r` small (ChatGLM3's recipe: 8):
#
# `y = x Wᵀ + b + (alpha / r) · (x Aᵀ) Bᵀ`
#
# - `A` starts random and `B` starts at **zero**, so `ΔW = 0`: the tuned model begins exactly as
#   the base model, and training moves it away smoothly. (Both zero would never move: the gradient
#   of `A` is proportional to `B` and vice versa.)
# - `alpha / r` keeps the size of the update roughly independent of `r`: trying another rank does
#   not need another learning rate. ChatGLM3 uses `alpha = 32`, `r = 8`, scaling 4.
# - dropout (0.1) applies to the input of `A` only; the frozen path sees all of `x`.
#
# The whole thing by hand, on one `query_key_value` layer of our model:

# %%
def lora_by_hand(x, W, b, A, B, alpha, r):
    """x [..., in] -> [..., out]: the frozen layer plus the scaled low-rank path."""
    return x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T      # [..., out]


qkv = model.transformer.encoder.layers[0].self_attention.query_key_value
print("W", list(qkv.weight.shape), "| in", qkv.in_features, "out", qkv.out_features)

# %% [markdown]
# The package's `LoRALinear` wraps the same `nn.Linear` (its weight and bias stay where they were,
# frozen). With its `B` still zero it is exactly the old layer; with a random `B` it follows the
# formula:

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
layer = peft.LoRALinear(qkv, r=8, lora_alpha=32, lora_dropout=0.0)
x = torch.randn(3, qkv.in_features)
with torch.no_grad():
    assert torch.equal(layer(x), qkv(x))                      # B = 0: nothing changed
    layer.lora_B.weight.normal_(0, 0.02)
    ours = lora_by_hand(x, qkv.weight, qkv.bias, layer.lora_A.weight, layer.lora_B.weight, 32, 8)
torch.testing.assert_close(layer(x), ours)
print("LoRALinear == by hand; trainable:", [n for n, p in layer.named_parameters() if p.requires_grad])

# %% [markdown]
# ### How many parameters
# Per wrapped layer LoRA trains `r · (in + out)` values instead of `in · out`. ChatGLM3's recipe
# (r 8 on `query_key_value` of all 28 layers):

# %% tags=["nbval-check-output"]
per_layer = 8 * (4096 + 4608)
print(f"per layer {per_layer:,}; 28 layers {28 * per_layer:,} = "
      f"{28 * per_layer / count_parameters(glm6b):.4%} of ChatGLM3-6B")
assert 28 * per_layer == peft.lora_parameter_count(glm6b) == 1_949_696
with torch.device("meta"):                                     # build the 6B model without memory
    from glm3_teach import ChatGLMForCausalLM
    assert peft.apply_lora(ChatGLMForCausalLM(glm6b), r=8, alpha=32) == 1_949_696

# %% [markdown]
# On the course model, `apply_lora` freezes everything, wraps the targets and returns the count:

# %% tags=["nbval-check-output"]
lora_model = fresh_base()
trainable = peft.apply_lora(lora_model, r=8, alpha=32, dropout=0.1, target_modules=["query_key_value"])
qkv_out = config.num_attention_heads * config.kv_channels + 2 * config.num_kv_groups * config.kv_channels
assert trainable == config.num_layers * 8 * (config.hidden_size + qkv_out)
print(f"LoRA r 8 on query_key_value: {trainable:,} trainable of {count_parameters(config):,} "
      f"({trainable / count_parameters(config):.2%})")

# %% [markdown]
# ### Merging is exact
# After training, `W + (alpha / r) B A` is just another matrix of the same shape: `merge_lora`
# folds it in and gives back plain `nn.Linear` layers, so the merged model runs at the base model's
# speed with the base model's code and keys. With a random `B` (as if trained):

# %% tags=["nbval-check-output"]
torch.manual_seed(1)
with torch.no_grad():
    for name, p in lora_model.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.02)
lora_model.eval()
ids = torch.tensor([tok.build_chat_input("乌龙茶多少钱？")])
with torch.no_grad():
    before = lora_model(ids).logits
    base_logits = fresh_base()(ids).logits
    peft.merge_lora(lora_model)
    after = lora_model(ids).logits
print("layers are nn.Linear again:", type(lora_model.transformer.encoder.layers[0].self_attention.query_key_value).__name__)
print(f"largest logit change from merging below 1e-4: {(after - before).abs().max().item() < 1e-4}; "
      f"the update itself moved logits by more than 0.01: {(before - base_logits).abs().max().item() > 0.01}")
assert (after - before).abs().max() < 1e-4 and (before - base_logits).abs().max() > 0.01

# %% [markdown]
# ### The files: Hugging Face peft's adapter format
# `save_lora` writes what `peft`'s `save_pretrained` writes, `adapter_config.json` and
# `adapter_model.safetensors`, with peft's key names: `base_model.model.` + the module path +
# `.lora_A.weight`. Our module paths are ChatGLM3's, so an adapter trained here names the same
# layers as one trained on the real ChatGLM3-6B with peft (`tests/test_peft.py` checks both
# directions against `peft` itself).

# %% tags=["nbval-check-output"]
from safetensors.torch import load_file

demo = fresh_base()
peft.apply_lora(demo, r=8, alpha=32, dropout=0.1)
folder = Path(tempfile.mkdtemp()) / "adapter"
peft.save_lora(demo, folder)
adapter_config = json.loads((folder / "adapter_config.json").read_text())
print({k: adapter_config[k] for k in ("peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules")})
for key, tensor in list(load_file(str(folder / "adapter_model.safetensors")).items())[:2]:
    print(key, list(tensor.shape))

# %% [markdown]
# ## 4. P-Tuning v2: a learned KV cache
# Lesson 07's KV cache holds, for every layer, the keys and values of the tokens seen so far. A new
# token attends to them. P-Tuning v2 (Liu et al., 2021) **puts learned keys and values in front of
# that cache**: `pre_seq_len` virtual tokens, different in every layer, that every real token
# attends to. The model's weights stay frozen; only these keys and values train.
#
# ChatGLM3 stores them in `transformer.prefix_encoder.embedding`, one row per virtual token, each
# row holding a key and a value for every layer and every KV group:
# `kv_size = num_layers × 2 × num_kv_groups × head_dim`.

# %% tags=["nbval-check-output"]
pt_model = fresh_base()
count = peft.apply_ptuning(pt_model, pre_seq_len=16)
kv_size = config.num_layers * 2 * config.num_kv_groups * config.kv_channels
print("prefix_encoder.embedding:", list(pt_model.transformer.prefix_encoder.embedding.weight.shape),
      f"= [pre_seq_len, {config.num_layers} layers x 2 x {config.num_kv_groups} groups x {config.kv_channels}]")
assert count == 16 * kv_size
print(f"ChatGLM3-6B with 128 virtual tokens: 128 x {28 * 2 * 2 * 128:,} = {peft.ptuning_parameter_count(glm6b, 128):,}")
assert peft.ptuning_parameter_count(glm6b, 128) == 128 * 28 * 2 * 2 * 128 == 1_835_008

# %% [markdown]
# `get_prompt` cuts each row into `num_layers × 2` slots: layer `l` takes slot `2l` as its keys and
# slot `2l + 1` as its values, each `[batch, num_kv_groups, pre_seq_len, head_dim]`, the layout of
# this package's KV cache. The model hands them to the layers as the cache of a "past" that was
# never a text:

# %% tags=["nbval-check-output"]
prompt = pt_model.transformer.get_prompt(batch=1, dtype=torch.float32)
print(len(prompt), "layers; layer 0 keys", list(prompt[0][0].shape), "values", list(prompt[0][1].shape))
row = pt_model.transformer.prefix_encoder.embedding.weight[5]                   # virtual token 5
slots = row.view(config.num_layers * 2, config.num_kv_groups, config.kv_channels)  # [2L, groups, head_dim]
assert torch.equal(prompt[2][0][0, :, 5], slots[4]) and torch.equal(prompt[2][1][0, :, 5], slots[5])
with torch.no_grad():
    out = pt_model.eval()(ids, use_cache=True)
print("after the prompt the cache holds", out.kv_cache[0][0].shape[2], "=", 16, "+", ids.shape[1], "entries")

# %% [markdown]
# ### Why RoPE never touches the prefix
# RoPE rotates a key by its token's position; the score of query `m` and key `n` then depends on
# `m - n`. The virtual tokens have no position: they are not text, and every real token should
# read them the same way wherever it stands. So the layers rotate only the keys they compute from
# real tokens (before adding them to the cache), the prefix keys are used as learned, and the real
# tokens still sit at positions 0, 1, 2, ... (the cache is 16 entries longer, the positions are not
# shifted). The stored cache shows it: its first 16 keys are the prefix, unrotated.

# %% tags=["nbval-check-output"]
assert all(torch.equal(k[:, :, :16], pk) for (k, _), (pk, _) in zip(out.kv_cache, prompt))
print("cached prefix keys == learned keys, in every layer")

# %% [markdown]
# ### The picture: the prefix columns of the attention map
# Every query row may look at all 16 prefix columns (the mask is ones there) and, causally, at the
# real tokens up to itself. With a freshly initialised prefix, how much attention does each query
# give to the virtual tokens?

# %%
with torch.no_grad():
    probs = pt_model(ids, output_attentions=True).attentions[1][0]              # [heads, seq, 16 + seq]
fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 1]})
ax.imshow(probs.mean(0).numpy(), cmap="viridis", aspect="auto")
ax.axvline(15.5, color="white", lw=2)
ax.set_xlabel("键 keys: 16 个虚拟 token (prefix) | 真实 token real tokens")
ax.set_ylabel("查询 queries (real tokens)")
ax.set_title("Layer 1, mean over heads: the prefix is a block of columns every row sees")
ax2.barh(range(probs.shape[1]), probs[:, :, :16].sum(-1).mean(0).numpy())
ax2.invert_yaxis()
ax2.set_xlabel("share on the prefix")
plt.tight_layout()
plt.show()

# %% [markdown]
# Only `transformer.prefix_encoder` trains; every other parameter was frozen by `apply_ptuning`,
# as ChatGLM3's model freezes itself when its config has `pre_seq_len`. A dropout of 0.1 acts on
# the prefix in training mode only.

# %% tags=["nbval-check-output"]
print([n for n, p in pt_model.named_parameters() if p.requires_grad])
assert peft.trainable_parameters(pt_model) == 16 * kv_size

# %% [markdown]
# ## 5. Tuning runs
# Both methods train through lesson 08's loop (`glm3_teach.train.train` on SFT batches of
# `glm3_teach.sft`). Here a quick run of each on 300 training dialogues, 10 steps of about 1,000
# padded tokens, with the validation loss (assistant tokens of 16 validation dialogues) before and
# after; the shipped adapters (section 6) ran 60 steps of 4,096.

# %% tags=["nbval-ignore-output"]
import dataclasses

from glm3_teach.sft import SFTConfig, build_data
from glm3_teach.train import TrainConfig, evaluate, train

quick = TrainConfig(model={"padded_vocab_size": 4096, "seq_length": 1536}, batch_size=1, max_steps=10,
                    warmup_steps=2, weight_decay=0.0, eval_every=0, eval_blocks=4, progress=False, seed=0)
sft_quick = SFTConfig(init_from=str(BASE), data=str(data_dir() / "sft"), max_items=300, max_tokens=1024, max_batch=16,
                      val_items=16)
data = build_data(tok, quick, sft_quick)
runs = {}
for name, setup, lr in [("LoRA r 8 qkv", lambda m: peft.apply_lora(m, 8, 32, 0.1), 5e-3),
                        ("P-Tuning 16", lambda m: peft.apply_ptuning(m, 16), 2e-2)]:
    seed_everything(0)
    tuned = fresh_base()
    setup(tuned)
    val_before = evaluate(tuned, data.val)["loss"]
    started = time.time()
    history = train(tuned, data, dataclasses.replace(quick, lr=lr))
    runs[name] = {"loss": history["loss"], "val": (val_before, evaluate(tuned, data.val)["loss"]), "model": tuned}
    print(f"{name}: validation loss {val_before:.2f} -> {runs[name]['val'][1]:.2f}, "
          f"{time.time() - started:.0f} s of training")

# %%
fig, ax = plt.subplots(figsize=(6, 3))
for name, run in runs.items():
    ax.plot(range(1, len(run["loss"]) + 1), run["loss"], label=name)
ax.set_xlabel("步 step")
ax.set_ylabel("训练损失 loss (nats/token)")
ax.legend()
plt.show()

# %% [markdown]
# Each step's loss depends on which dialogues its batch holds, so the curve is noisy; the
# validation loss is measured on the same dialogues before and after. Ten steps are too few to be
# useful, but it falls for both, while the base weights never change:

# %% tags=["nbval-check-output"]
for name, run in runs.items():
    print(f"{name}: validation loss lower after 10 steps: {run['val'][1] < run['val'][0]}")
    assert run["val"][1] < run["val"][0]
base_state = fresh_base().state_dict()
lora_state = runs["LoRA r 8 qkv"]["model"].state_dict()
assert all(torch.equal(base_state[k], lora_state[k]) for k in base_state)
print("every base weight unchanged after LoRA training")

# %% [markdown]
# ## 6. The shipped adapters
# `configs/chat_lora.toml` and `configs/chat_ptuning.toml` ran the SFT command of lesson 08,
# `python -m glm3_teach.sft --config configs/chat_lora.toml`, for 60 steps each. Only the small
# adapter files were saved; they load onto the base model:

# %% tags=["nbval-check-output"]
CKPT = data_dir() / "checkpoints"
shipped = {"LoRA": peft.load_lora(fresh_base(), CKPT / "chat_lora").eval(),
           "P-Tuning": peft.load_ptuning(fresh_base(), CKPT / "chat_ptuning").eval()}
for name, folder in [("LoRA", "chat_lora"), ("P-Tuning", "chat_ptuning")]:
    sizes = sum(p.stat().st_size for p in (CKPT / folder).iterdir()
                if p.name in ("adapter_config.json", "adapter_model.safetensors", "config.json", "model.safetensors"))
    print(f"{name}: {peft.trainable_parameters(shipped[name]):,} trained values, adapter files {sizes / 1024:.0f} KiB")
    assert sizes < 200 * 1024

# %% tags=["nbval-ignore-output"]
from glm3_teach.chat import chat

for name, tuned in shipped.items():
    for question in ("乌龙茶多少钱？", "What time do you close?"):
        print(f"{name:9s} {question} -> {chat(tuned, tok, question, do_sample=False, max_new_tokens=40)[0]!r}")

# %% [markdown]
# ### Where the trained prefix is read: the attention viewer
# Section 4 drew the prefix columns of a *random* prefix. Lesson 03's viewer shows those of the
# shipped one: `viz.attention_view(..., chat=True)` builds the chat prompt around the question, and
# P-Tuning's 32 virtual tokens appear as the key columns `P0 .. P31` in front of `[gMASK] sop`. The
# pattern table has one more column, `prefix`: the share of a head's attention that lands on them.
# (The model menu also holds the base model, without a prefix, to compare; run the cell for the
# live view.)

# %% tags=["nbval-ignore-output"]
from glm3_teach import viz

pt_view = viz.attention_view(shipped["P-Tuning"], tok, "乌龙茶多少钱？", name="chat_ptuning", chat=True,
                             models={"base": (fresh_base(), tok)})
pt_view

# %% [markdown]
# The same number for every head, from the view's payload (`scores["prefix"]`, averaged over the
# query rows). An even spread over the keys a row can see would put about 0.9 on the prefix here
# (32 virtual tokens against at most 8 real ones):

# %%
payload = pt_view.payload
n_prefix = payload["kinds"].count("prefix")
prefix_share = torch.tensor(payload["scores"]["prefix"])                        # [layers, heads]
even = (n_prefix / (n_prefix + torch.arange(1, payload["q_len"] + 1))).mean()   # an even spread, per row
print(f"{n_prefix} prefix columns {payload['tokens'][0]} .. {payload['tokens'][n_prefix - 1]}, "
      f"then {payload['tokens'][n_prefix:]}")
for layer_index, row in enumerate(prefix_share):
    print(f"layer {layer_index}: share on the prefix per head", "  ".join(f"{v:.2f}" for v in row))
print(f"an even spread would give {even:.2f}")
assert n_prefix == shipped["P-Tuning"].config.pre_seq_len == 32 and payload["k_len"] == payload["q_len"] + 32
assert payload["q_len"] <= 8 and abs(even - 0.9) < 0.05
assert prefix_share[:2].min() > 0.75 and prefix_share[2:].min() < 0.5

# %% [markdown]
# In layers 0 and 1 every head reads mostly the prefix: the learned keys and values steer what
# the first layers pass on. In layers 2 and 3 some heads put less than half of their weight there
# and read the question itself (click one in the table, then hover `多少钱`). The prefix is not a
# prompt the model reads once: every layer reads its own 32 keys, and that is where P-Tuning's
# change lives.

# %% [markdown]
# ## 7. The comparison
# The same base model, data and number of steps for every method: the costs below are measured now
# on this machine (a few steps each); the results come from the shipped runs' `training.json`
# (validation loss on assistant tokens, and story bits per byte before and after, which measures
# forgetting; lesson 08's full fine-tune starts from `base_long`, the base model taught to read
# 1,536 tokens in lesson 09, and its forgetting is measured against that model). `benchmarks/bench_peft.py` runs the full comparison (full fine-tuning, LoRA on
# `query_key_value` and on all four block Linears, P-Tuning at two lengths) with held-out accuracy.

# %% tags=["nbval-ignore-output"]
from glm3_teach.train import batch_loss, build_optimizer


def cost(setup, lr, steps=3):
    seed_everything(0)
    tuned = fresh_base()
    setup(tuned)
    optimizer, _ = build_optimizer(tuned, dataclasses.replace(quick, lr=lr))
    times = []
    for index in range(steps):
        began = time.perf_counter()
        loss, _ = batch_loss(tuned.train(), data.train.collate([data.train[index]]), torch.device("cpu"), None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - began)
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if t.dim() > 0)
    return {"trainable": peft.trainable_parameters(tuned), "adam_bytes": state, "seconds": min(times)}


methods = {"full": (lambda m: None, 1e-3), "LoRA qkv": (lambda m: peft.apply_lora(m, 8, 32, 0.1), 5e-3),
           "LoRA all 4": (lambda m: peft.apply_lora(m, 8, 32, 0.1, list(peft.BLOCK_LINEARS)), 5e-3),
           "P-Tuning 16": (lambda m: peft.apply_ptuning(m, 16), 2e-2)}
costs = {name: cost(*spec) for name, spec in methods.items()}
print(f"{'method':12s} {'trainable':>10s} {'AdamW state':>12s} {'s/step':>7s}")
for name, c in costs.items():
    print(f"{name:12s} {c['trainable']:10,} {c['adam_bytes'] / 2**20:9.2f} MiB {c['seconds']:7.2f}")

# %% tags=["nbval-check-output"]
assert all(c["adam_bytes"] == 8 * c["trainable"] for c in costs.values())   # two fp32 moments per trained value
print("AdamW state = 8 bytes per trained value for every method;",
      f"LoRA qkv trains {costs['LoRA qkv']['trainable'] / costs['full']['trainable']:.2%} of full fine-tuning's values")
assert costs["LoRA qkv"]["trainable"] < costs["full"]["trainable"] / 100

# %%
records = {name: json.loads((CKPT / folder / "training.json").read_text())
           for name, folder in [("LoRA", "chat_lora"), ("P-Tuning", "chat_ptuning")]}
full_record = CKPT / "chat" / "training.json"
if full_record.is_file():
    records["full (lesson 08)"] = json.loads(full_record.read_text())
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
names = list(costs)
ax1.bar(names, [costs[n]["trainable"] for n in names])
ax1.set_yscale("log")
ax1.set_title("可训练参数 trainable values (log)")
ax2.bar(list(records), [r["story_bits_per_byte"]["after"] / r["story_bits_per_byte"]["before"] - 1 for r in records.values()])
ax2.axhline(0, color="black", lw=0.8)
ax2.set_title("遗忘 story bits/byte change (forgetting)")
plt.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
for name in ("LoRA", "P-Tuning"):
    r, story = records[name], records[name]["story_bits_per_byte"]
    print(f"{name:17s} steps {r['config']['max_steps']:4d} | val loss {r['final_val']['loss']:.2f} | "
          f"story bits/byte {story['before']:.3f} -> {story['after']:.3f}")
assert all(records[n]["story_bits_per_byte"]["after"] > records[n]["story_bits_per_byte"]["before"]
           for n in ("LoRA", "P-Tuning"))                      # both forgot some of the stories
assert records["LoRA"]["final_val"]["loss"] < records["P-Tuning"]["final_val"]["loss"]
forgetting = {n: records[n]["story_bits_per_byte"]["after"] / records[n]["story_bits_per_byte"]["before"]
              for n in ("LoRA", "P-Tuning")}
assert forgetting["LoRA"] > forgetting["P-Tuning"]


# %% [markdown]
# After the same 60 steps LoRA's validation loss is lower than P-Tuning's (the READMEs give the base
# model's on the same dialogues), and both made the stories of lesson 06 harder to predict: the
# adapters push every input towards tea-shop dialogue. In these short runs LoRA, which changes
# the attention projection every token goes through, forgot more.

# %% [markdown]
# ## 8. Failure modes
# - **Forgetting.** A P-Tuning prefix sits in front of *every* input, the stories of lesson 06 too,
#   so what it teaches about tea-shop chats it imposes on plain text as well; ChatGLM users report
#   P-Tuning-v2 models that answer their task well and general questions worse. LoRA forgets too
#   (section 7). Neither touches the base weights: take the adapter away (`fresh_base()`) and the
#   old model is back exactly. Mixing some pretraining text into the SFT data (`[sft] story_blocks`)
#   is the usual remedy.
# - **P-Tuning learns slowly and does not start from the base model.** Its prefix starts random
#   (N(0, 1), as ChatGLM3's), so the untuned model already differs from the base; and it acts only
#   through attention, so it needs a high learning rate (2e-2) and many steps.
# - **A LoRA rank too small** cannot express the change: `r = 1` gives each layer a single direction
#   to move in. The count grows linearly in `r` (`r · (in + out)` per layer), so `r = 8` or 16 is
#   cheap; raising `r` beyond what the data needs only adds noise.
# - **Forgetting to merge or to load the adapter**: a LoRA folder is not a model. `load_pretrained`
#   on it fails; load the base and then `peft.load_lora(model, folder)`.
# - **An adapter for another base**: shapes or layer names differ, and `load_lora` / `load_ptuning`
#   refuse it naming the first tensor that does not fit (never a silent wrong result).

# %% [markdown]
# ## Exercises
#
# ### Exercise 1: LoRALinear.forward
# Write the forward of a LoRA layer: the frozen `base` layer on `x`, plus `scaling` times `lora_B`
# applied to `lora_A` applied to `dropout(x)`.

# %%
class MyLoRALinear(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / r

    def forward(self, x):
        raise NotImplementedError


# %%
def lora_pair(x, seed):
    """(mine, package's) with the same weights, applied to x."""
    torch.manual_seed(seed)
    base = nn.Linear(x.shape[-1], 6)
    mine, ref = MyLoRALinear(base, 2, 8), peft.LoRALinear(base, 2, 8)
    A, B = torch.randn(2, x.shape[-1]), torch.randn(6, 2)
    with torch.no_grad():
        for layer in (mine, ref):
            layer.lora_A.weight.copy_(A)
            layer.lora_B.weight.copy_(B)
    return mine, ref


def run_mine(x, seed):
    return lora_pair(x, seed)[0].eval()(x)


def run_package(x, seed):
    return lora_pair(x, seed)[1].eval()(x)


result = check("LoRALinear.forward", run_mine, run_package, [(torch.randn(3, 5), 0), (torch.randn(2, 4, 5), 1)],
               hint="self.base(x) + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))")


# %% [markdown]
# ### Exercise 2: P-Tuning's trainable count
# Write `ptuning_count(config, pre_seq_len)` for a config without prefix projection: how many values
# does `transformer.prefix_encoder` train? (ChatGLM3-6B with 128 tokens: 1,835,008.)

# %%
def ptuning_count(config, pre_seq_len):
    raise NotImplementedError


# %%
result = check("ptuning_count", ptuning_count, lambda c, n: peft.ptuning_parameter_count(c, n, False),
               [(glm6b, 128), (config, 16), (ChatGLMConfig.course(num_layers=2, multi_query_group_num=1), 7)],
               hint="one key and one value per layer and per KV group, head_dim each, per virtual token")

# %% [markdown]
# ### Exercise 3: the prefix that gets rotated
# `buggy_layer0_keys` rebuilds layer 0's KV-cache keys of a P-Tuning model: the prefix keys, then the
# keys of the real tokens. It treats the virtual tokens as if they were text: it rotates them with
# RoPE at positions 0 .. 15 and puts the real tokens at 16, 17, ... Find what ChatGLM3 does instead
# and write `layer0_keys` to match the model's own cache.

# %% tags=["nbval-check-output"]
from glm3_teach.attention import split_qkv
from glm3_teach.rope import apply_rotary_pos_emb


def real_keys(model, input_ids):
    """Layer 0's keys of the real tokens before RoPE: [1, groups, seq, head_dim]."""
    c, layer0 = model.config, model.transformer.encoder.layers[0]
    hidden = layer0.input_layernorm(model.transformer.embedding(input_ids))
    return split_qkv(layer0.self_attention.query_key_value(hidden), c.num_attention_heads, c.num_kv_groups,
                     c.kv_channels)[1]


def buggy_layer0_keys(model, input_ids):
    prefix = model.transformer.get_prompt(1, torch.float32)[0][0]                  # [1, groups, p, head_dim]
    keys = torch.cat([prefix, real_keys(model, input_ids)], dim=2)                 # [1, groups, p + seq, head_dim]
    rope = model.transformer.rotary_pos_emb(model.config.seq_length)[: keys.shape[2]]
    return apply_rotary_pos_emb(keys, rope)


with torch.no_grad():
    cached = pt_model(ids, use_cache=True).kv_cache[0][0]
    print("buggy keys match the model's cache:", torch.allclose(buggy_layer0_keys(pt_model, ids), cached, atol=1e-5))


# %%
def layer0_keys(model, input_ids):
    raise NotImplementedError


# %%
with torch.no_grad():
    result = check("layer0_keys", lambda i: layer0_keys(pt_model, i), lambda i: pt_model(i, use_cache=True).kv_cache[0][0],
                   [ids], hint="rotate only the real keys, at positions 0 .. seq-1; put the prefix in front unrotated")

# %% [markdown]
# Solutions are in `notebooks/solutions/10_peft_solutions.ipynb`; try first.
#
# ## Summary
# - Full fine-tuning of ChatGLM3-6B needs about 100 GB for weights, gradients, master weights and
#   AdamW moments; parameter-efficient methods freeze the base and train about 2 million values.
# - **LoRA**: `y = x Wᵀ + b + (alpha / r) · B A x`, `B` starting at zero, dropout on `A`'s input;
#   `r · (in + out)` values per layer (1,949,696 for ChatGLM3's recipe); merged back exactly into a
#   plain `nn.Linear`; stored in Hugging Face peft's adapter format.
# - **P-Tuning v2**: `pre_seq_len` learned keys and values per layer and KV group
#   (1,835,008 for 128 tokens on ChatGLM3-6B), put in front of the KV cache, never rotated, seen by
#   every query, real tokens still at positions 0, 1, 2, ...; only the prefix encoder trains. The
#   attention viewer shows them as the columns `P0 .. P31`: the shipped prefix takes most of the
#   attention in layers 0 and 1, less in some heads of layers 2 and 3.
# - Both train through the same SFT loop and ship as small adapter files next to the base model.
#
# Next: **11 · 量化 Quantization**, which makes the frozen base model itself smaller.
