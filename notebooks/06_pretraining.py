# %% [markdown]
# # 06 · 预训练 Pretraining
#
# Lesson 05 assembled a ChatGLM3 that babbles: its 5 M weights are random. **Pretraining** turns
# the babble into language with one objective, repeated a few hundred thousand times: given the
# tokens so far, predict the next one. This lesson builds the whole pipeline (text to packed
# batches, the loss, the optimizer and its schedule, checkpoints that resume exactly) and trains a
# small model in the notebook while you watch. Then it loads the course's shipped base checkpoint,
# trained by one command of the package on the whole corpus, and compares.
#
# **You will learn**
# - next-token prediction as a 4096-way classification at every position; cross-entropy,
#   perplexity, and the two baselines every model must beat (a uniform guess, a unigram model);
# - how the corpus becomes packed blocks separated by `</s>`, and what a batch looks like to the model;
# - AdamW with decay on matrices only, linear warmup + cosine decay, gradient clipping and
#   gradient accumulation, each shown on a small example;
# - a real training run with a live loss curve, samples before and after;
# - overfitting a tiny text versus generalising; checkpoints, interruption and **exact** resume;
# - the shipped base model: its recipe, its numbers (bits per character) and how loss scales with
#   model size and tokens.

# %%
import json
import math
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from glm3_teach import load_pretrained, load_tokenizer, pick_device, seed_everything
from glm3_teach.checks import check, check_value
from glm3_teach.data import TokenDataset, load_documents, pack_documents, tokenize_documents, unigram_entropy
from glm3_teach.fonts import use_cjk_font
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM, count_parameters
from glm3_teach.paths import data_dir

use_cjk_font()
device = pick_device()
tokenizer = load_tokenizer()

# %% tags=["nbval-ignore-output"]
print(device, "|", torch.get_num_threads(), "CPU threads")

# %% [markdown]
# ## 1. Next-token prediction is classification
#
# The model reads `input_ids [batch, seq]` and returns `logits [batch, seq, 4096]`: at every
# position a score for each of the 4096 ids of the course tokenizer. The target at position `t` is
# simply the id at `t + 1`. So one block of 257 tokens is 256 classification problems at once,
# and the loss is their average **cross-entropy**: minus the log-probability the model gave to
# the id that really came next.
#
# Written out with a softmax, on a toy vocabulary of 5 ids:

# %% tags=["nbval-check-output"]
logits = torch.tensor([[2.0, 0.5, -1.0, 0.0, 0.3],     # scores at position 0
                       [0.1, 0.1, 3.0, 0.1, 0.1]])     # scores at position 1   [seq=2, vocab=5]
targets = torch.tensor([0, 2])                          # the ids that really came next
probs = torch.softmax(logits, dim=-1)                   # [seq, vocab]
by_hand = -torch.log(probs[torch.arange(2), targets]).mean()
print("p(target) per position:", [round(x, 3) for x in probs[torch.arange(2), targets].tolist()])
print(f"cross-entropy by hand {by_hand:.4f} | F.cross_entropy {F.cross_entropy(logits, targets):.4f}")
torch.testing.assert_close(by_hand, F.cross_entropy(logits, targets))

# %% [markdown]
# The package's `next_token_loss(logits, input_ids)` does the shift for a whole batch: logits come
# from `input_ids[:, :-1]`, targets are `input_ids[:, 1:]`. We write it ourselves and compare:

# %% tags=["nbval-check-output"]
from glm3_teach.train import next_token_loss


def my_next_token_loss(logits, input_ids):
    targets = input_ids[:, 1:]                                   # [batch, seq]
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())  # [batch*seq, vocab] vs [batch*seq]


gen = torch.Generator().manual_seed(0)
fake_logits = torch.randn(2, 6, 4096, generator=gen)
fake_ids = torch.randint(0, 4096, (2, 7), generator=gen)
result = check_value("my_next_token_loss", my_next_token_loss(fake_logits, fake_ids), next_token_loss(fake_logits, fake_ids))

# %% [markdown]
# **Perplexity** is `exp(loss)`: the number of equally likely choices the model is as unsure as.
# A model that knows nothing spreads probability evenly, `1/4096` per id, so its loss is
# `ln 4096 = 8.318` nats and its perplexity 4096. A fresh model (weights ~ N(0, 0.02)) gives
# almost flat logits, so it starts right there:

# %% tags=["nbval-check-output"]
seed_everything(0)
SMALL = dict(num_layers=2, hidden_size=128, ffn_hidden_size=341, kv_channels=32, num_attention_heads=4,
             multi_query_group_num=2, padded_vocab_size=4096, seq_length=256)
fresh = ChatGLMForCausalLM(ChatGLMConfig(**SMALL))
sample_ids = torch.tensor([tokenizer.encode(load_documents("val", "zh")[0])[:65]])   # [1, 65]
fresh_loss = next_token_loss(fresh(sample_ids[:, :-1]).logits, sample_ids).item()
print(f"uniform guess: {math.log(4096):.3f} nats, perplexity 4096 | fresh model: {fresh_loss:.2f} nats")
assert abs(fresh_loss - math.log(4096)) < 0.05

# %% [markdown]
# A better baseline ignores context but knows **how often** each token occurs: a unigram model.
# Its loss on the validation tokens is their entropy `-Σ p log p`. Anything a model learns beyond
# it comes from reading the context. The shipped base model must reach at most 0.6 times this.

# %%
val_docs = load_documents("val")
val_stream = pack_documents(tokenize_documents(val_docs, tokenizer), tokenizer.eos_token_id)

# %% tags=["nbval-check-output"]
counts = torch.bincount(val_stream, minlength=4096).double()
p = counts[counts > 0] / counts.sum()
my_entropy = -(p * p.log()).sum().item()
unigram = unigram_entropy(val_stream)
print(f"{len(val_stream):,} validation tokens, {int((counts > 0).sum())} distinct ids")
print(f"unigram entropy {unigram:.3f} nats/token = {unigram / math.log(2):.2f} bits, perplexity {math.exp(unigram):.0f}")
assert abs(my_entropy - unigram) < 1e-9 and 5.5 < unigram < 7.0


# %% [markdown]
# ## 2. From stories to packed blocks
#
# The corpus is about 13,000 short stories (Chinese and English versions of each). Training
# wants rectangles `[batch, block_size + 1]`, not stories of every length. Padding short stories
# would waste compute, so we **pack**: concatenate all documents into one stream with the
# end-of-text id `</s>` (4094) after each, then cut the stream into blocks. A block may hold the
# end of one story and the start of the next; `</s>` tells the model a new one begins.

# %% tags=["nbval-check-output"]
def my_pack(token_lists, eos_id):
    stream = []
    for ids in token_lists:
        stream += list(ids) + [eos_id]
    return torch.tensor(stream, dtype=torch.long)


docs = load_documents("train")[:2]
token_lists = tokenize_documents(docs, tokenizer)
packed = my_pack(token_lists, tokenizer.eos_token_id)
print([len(ids) for ids in token_lists], "tokens ->", len(packed), "packed; </s> at", (packed == 4094).nonzero().flatten().tolist())
assert torch.equal(packed, pack_documents(token_lists, tokenizer.eos_token_id))

# %% [markdown]
# `TokenDataset` cuts the stream into blocks of `block_size + 1` ids; block `i` starts at
# `i * block_size`, so neighbouring blocks share one token and every token is a target exactly
# once. Here is a block of 24 as the model sees it: the input row, and the target row shifted by one.
# (Decoding a row that starts or ends inside a Chinese character shows `�` for the cut bytes.)

# %% tags=["nbval-check-output"]
small_set = TokenDataset(packed, block_size=24, num_characters=sum(map(len, docs)) + len(docs))
block = small_set[0]                                             # [25]
for name, ids in (("input ", block[:-1]), ("target", block[1:])):
    print(f"{name} ids  {ids[:10].tolist()} ...")
    print(f"{name} text {tokenizer.decode(ids.tolist())!r}")
print(f"{len(small_set)} blocks of 24 from {len(packed)} tokens; {small_set.characters_per_token:.2f} characters per token")
assert torch.equal(small_set[1][0], small_set[0][-1])

# %% [markdown]
# For training, `load_data(config, tokenizer)` does this for both splits: the training split and
# the validation split (stories the model never trains on). A `BlockSampler` shuffles the blocks
# with a seed (a new order each epoch, the same order every run) and remembers how far it got.
# We use the first 2,500 training stories in the notebook; the shipped recipe uses all of them.

# %%
from glm3_teach.train import TrainConfig, TrainData, build_model, evaluate, load_data, train

nb_config = TrainConfig(model=SMALL, max_documents=2500, block_size=128, batch_size=8, max_steps=250, lr=3e-3,
                        warmup_steps=10, eval_every=25, eval_blocks=16, log_every=5, seed=0, live_plot=True)
data = load_data(nb_config, tokenizer)

# %% tags=["nbval-check-output"]
print(f"train: {len(data.train.tokens):,} tokens in {len(data.train):,} blocks | "
      f"val: {len(data.val.tokens):,} tokens in {len(data.val):,} blocks")
tokens_to_see = nb_config.max_steps * nb_config.batch_size * nb_config.block_size
print(f"{nb_config.max_steps} steps x {nb_config.batch_size} x {nb_config.block_size} = {tokens_to_see:,} tokens, "
      f"{tokens_to_see / len(data.train.tokens):.2f} of an epoch")
assert tokens_to_see < len(data.train.tokens)   # every block is new to the model when it sees it

# %% [markdown]
# ## 3. The optimizer: AdamW, a schedule, clipping, accumulation
#
# **AdamW** keeps a running mean and variance of every gradient and takes steps of roughly equal
# size for every weight. Its *decoupled* weight decay shrinks weights towards zero each step; we
# apply it to the matrices only (embeddings, linear weights). Norm weights and the QKV bias are
# vectors of gains and offsets: pulling them to zero would fight their purpose.

# %% tags=["nbval-check-output"]
from glm3_teach.train import parameter_groups

decayed, plain = parameter_groups(fresh, weight_decay=0.1)
n_decayed, n_plain = (sum(p.numel() for p in g["params"]) for g in (decayed, plain))
print(f"decayed: {len(decayed['params'])} matrices, {n_decayed:,} weights | not decayed: "
      f"{len(plain['params'])} vectors, {n_plain:,} weights")
assert n_decayed + n_plain == count_parameters(fresh.config)

# %% [markdown]
# **The learning-rate schedule.** At the start the weights are random and AdamW's variance
# estimates are poor, so a full-size step can throw the model somewhere bad: the rate climbs
# linearly over `warmup_steps`. Then it follows half a cosine down to `min_lr_ratio × lr`, so the
# last steps are small and settle the weights. `lr_at(step, ...)` is the formula:

# %%
from glm3_teach.train import lr_at

steps = list(range(300))
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.plot(steps, [lr_at(s, 2e-3, 20, 300, 0.1) for s in steps])
ax.set_xlabel("step")
ax.set_ylabel("learning rate")
ax.set_title("学习率：线性预热 + 余弦衰减 (the base recipe: lr 2e-3, warmup 20, 300 steps)")
plt.show()

# %% tags=["nbval-check-output"]
print([round(lr_at(s, 2e-3, 20, 300, 0.1), 6) for s in (0, 9, 19, 159, 299)])
assert lr_at(19, 2e-3, 20, 300, 0.1) == 2e-3 and abs(lr_at(299, 2e-3, 20, 300, 0.1) - 2e-4) < 1e-12

# %% [markdown]
# **Gradient clipping.** One unlucky batch can produce a gradient far larger than usual; AdamW
# would then take a wild step. `clip_grad_norm_` rescales the *whole* gradient (all parameters
# together) so its norm is at most `grad_clip` (1.0), keeping its direction:

# %% tags=["nbval-check-output"]
w = torch.nn.Parameter(torch.zeros(3))
w.grad = torch.tensor([3.0, 4.0, 0.0])                       # norm 5
norm_before = torch.nn.utils.clip_grad_norm_([w], max_norm=1.0)
print(f"norm before {norm_before:.1f}, gradient after {[round(g, 4) for g in w.grad.tolist()]}, norm after {w.grad.norm():.3f}")
torch.testing.assert_close(w.grad, torch.tensor([0.6, 0.8, 0.0]), rtol=1e-5, atol=1e-6)

# %% [markdown]
# **Gradient accumulation.** A batch that does not fit in memory can be split into micro-batches:
# run `backward()` on each with its loss divided by their number; gradients add up in `.grad`,
# and one optimizer step follows. Two halves of a batch give the gradient of the whole batch:

# %% tags=["nbval-check-output"]
batch = torch.stack([data.train[i] for i in range(4)])                   # [4, 129]
fresh.zero_grad()
next_token_loss(fresh(batch[:, :-1]).logits, batch).backward()
whole = fresh.transformer.output_layer.weight.grad.clone()
fresh.zero_grad()
for half in (batch[:2], batch[2:]):
    (next_token_loss(fresh(half[:, :-1]).logits, half) / 2).backward()
accumulated = fresh.transformer.output_layer.weight.grad
print("two accumulated halves give the whole batch's gradient (up to float rounding):",
      torch.allclose(accumulated, whole, rtol=1e-4, atol=1e-7))
torch.testing.assert_close(accumulated, whole, rtol=1e-4, atol=1e-7)


# %% [markdown]
# ## 4. Training, live
#
# `train(model, data, config)` is the loop: for each step, `grad_accum_steps` micro-batches
# forward and backward, clip, AdamW step, scheduler step; a validation pass every `eval_every`
# steps. On a GPU it runs the forward pass under bf16 autocast (on the CPU in fp32). Before
# training, a sample from the untrained model, with a tiny sampling loop (lesson 07 treats
# decoding properly): take the last position's logits, keep the 40 best, sample one.

# %%
@torch.no_grad()
def sample(model, prompt, max_new_tokens=40, temperature=0.8, top_k=40, seed=0):
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    ids = tokenizer.encode(prompt)
    for _ in range(max_new_tokens):
        input_ids = torch.tensor([ids], device=next(model.parameters()).device)        # [1, len]
        logits = model(input_ids).logits[0, -1, :tokenizer.vocab_size].float().cpu()   # [vocab]
        top = torch.topk(logits / temperature, top_k)
        next_id = top.indices[torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)].item()
        if next_id == tokenizer.eos_token_id:
            break
        ids.append(next_id)
    return tokenizer.decode(ids)


model = build_model(nb_config, device)
prompts = ["从前，", "小猫", "One day, ", "The little cat"]
for prompt in prompts:
    print(repr(sample(model, prompt)))

# %% [markdown]
# Now 250 steps of 8 blocks of 128 tokens, about a minute on a CPU. The plot redraws as the
# loss falls (the dots are the validation loss on 16 blocks every 25 steps).

# %% tags=["nbval-ignore-output"]
started = time.perf_counter()
history = train(model, data, nb_config)
seconds = time.perf_counter() - started
print(f"{seconds:.0f} s, {history['tokens'][-1] / history['train_seconds']:,.0f} training tokens/s")

# %%
first, last = history["loss"][0], history["loss"][-1]
val_final = history["val_loss"][-1]
print(f"train loss {first:.1f} -> {last:.1f}; validation loss {history['val_loss'][0]:.1f} -> {val_final:.1f} "
      f"({val_final / unigram:.2f} x the unigram entropy)")
assert first > 7.5 and last < 0.75 * unigram and val_final < 0.75 * unigram

# %% [markdown]
# In a minute the loss fell from near `ln 4096` to well below the unigram baseline: the model uses
# context. The samples now have the shape of the stories: the corpus's words, names, prices and
# quotation marks, though the sentences do not yet make sense, and a prompt is sometimes continued
# in the other language (the training stream alternates Chinese and English stories).

# %%
for prompt in prompts:
    print(repr(sample(model, prompt)))

# %% [markdown]
# ## 5. Overfitting a tiny text versus generalising
#
# Our run saw 256k tokens once each, and its training and validation losses stayed together:
# it learned patterns that hold in stories it never saw. Give the same model two blocks of text
# and let it see them again and again, and it **memorises** them: the training loss heads to
# zero while the validation loss, after a first drop, climbs again.

# %%
tiny_tokens = data.train.tokens[: 2 * 128 + 1]
tiny_data = TrainData(TokenDataset(tiny_tokens, 128, 2 * 128 * 3), data.val)
memorise = TrainConfig(model=SMALL, block_size=128, batch_size=2, max_steps=60, lr=3e-3, warmup_steps=5,
                       eval_every=20, eval_blocks=16, seed=0, progress=False)
tiny_history = train(build_model(memorise, device), tiny_data, memorise)
print("train loss:", [round(x, 1) for x in tiny_history["loss"][::20]] + [round(tiny_history["loss"][-1], 2)])
print("validation loss at steps", tiny_history["val_step"], ":", [round(x, 1) for x in tiny_history["val_loss"]])
assert tiny_history["loss"][-1] < 0.5 and tiny_history["val_loss"][-1] > tiny_history["val_loss"][0]

# %% [markdown]
# This is why the course corpus is large enough that the runs here never repeat an epoch, and why
# we always watch a validation split.
#
# ## 6. Checkpoints, interruption, exact resume
#
# A long run will be interrupted (a laptop lid, a time limit). A **training checkpoint** must hold
# everything the next step depends on: the weights, AdamW's two moment buffers, the scheduler's
# step, every random generator's state, and the **data position** (which block of which shuffled
# epoch comes next). `save_training_state` writes them (safetensors + JSON) into a temporary
# folder and renames it into place, so a crash mid-save leaves the previous checkpoint intact.
#
# The test: an uninterrupted run of 8 steps, then a run stopped after step 5 and resumed from its
# checkpoint in a fresh model. On the CPU the losses agree **bit for bit**.

# %%
resume_config = dict(model=SMALL, block_size=32, batch_size=4, grad_accum_steps=2, max_steps=8, warmup_steps=2,
                     eval_every=4, eval_blocks=4, device="cpu", progress=False, seed=0)
small_data = TrainData(TokenDataset(data.train.tokens[:32 * 60 + 1], 32, 1), TokenDataset(data.val.tokens[:32 * 8 + 1], 32, 1))
with tempfile.TemporaryDirectory() as run_dir:
    whole_run = train(build_model(TrainConfig(**resume_config)), small_data, TrainConfig(**resume_config))
    stopped = TrainConfig(**resume_config, run_dir=run_dir, stop_after_step=5)
    part = train(build_model(stopped), small_data, stopped)
    saved = sorted(p.name for p in Path(run_dir, "checkpoint").iterdir())
    print("interrupted after steps", part["step"], "; the checkpoint holds", saved)
    resumed_config = TrainConfig(**resume_config, run_dir=run_dir)
    resumed = train(build_model(resumed_config), small_data, resumed_config, resume=Path(run_dir, "checkpoint"))
print("uninterrupted:", [round(x, 4) for x in whole_run["loss"]])
print("resumed:      ", [round(x, 4) for x in resumed["loss"]])
assert resumed["loss"] == whole_run["loss"] and resumed["val_loss"] == whole_run["val_loss"]

# %% [markdown]
# Resuming with a different config is refused with a message naming what changed (a different
# learning rate would silently make a different run):

# %% tags=["raises-exception"]
with tempfile.TemporaryDirectory() as run_dir:
    stopped = TrainConfig(**resume_config, run_dir=run_dir, stop_after_step=2)
    train(build_model(stopped), small_data, stopped)
    changed = TrainConfig(**{**resume_config, "lr": 1e-2}, run_dir=run_dir)
    train(build_model(changed), small_data, changed, resume=Path(run_dir, "checkpoint"))

# %% [markdown]
# ## 7. The shipped base checkpoint
#
# `data/checkpoints/base/` was made by one command of the package,
# `python -m glm3_teach.train --config configs/base.toml`, on the whole training split. Its
# `training.json` records the command, the config, the machine, the wall time, the loss curve and
# the final validation numbers. The weights are stored in bf16 (10 MB instead of 20 MB) and
# loaded back in fp32.

# %%
base_dir = data_dir() / "checkpoints" / "base"
record = json.loads((base_dir / "training.json").read_text(encoding="utf-8"))
base = load_pretrained(base_dir, dtype=torch.float32, device=device)
base_cfg, base_params = record["config"], record["parameters"]

# %% tags=["nbval-check-output"]
print("command:", record["command"])
print(f"model: {base_cfg['model']['num_layers']} layers x hidden {base_cfg['model']['hidden_size']}, "
      f"{base_params:,} parameters; {record['train_tokens_seen']:,} training tokens")
final_val = record["final_val"]
print(f"final validation (all {final_val['tokens']:,} tokens): {final_val['loss']:.2f} nats/token, "
      f"perplexity {final_val['perplexity']:.1f}, {final_val['bits_per_char']:.2f} bits per character")
print(f"= {record['val_loss_over_unigram_entropy']:.2f} x the unigram entropy ({record['val_unigram_entropy']:.2f} nats)")
assert base_params == count_parameters(base.config) and next(base.parameters()).dtype == torch.float32
assert record["val_loss_over_unigram_entropy"] <= 0.6 and abs(record["val_unigram_entropy"] - unigram) < 1e-6

# %% tags=["nbval-ignore-output"]
print(f"wall time {record['wall_seconds'] / 60:.0f} min on {record['machine']['cpu_count']} CPU cores "
      f"({record['machine']['device']}, torch {record['machine']['torch']}); note: {record['note']}")
recipe_speed = record["train_tokens_seen"] / record["train_seconds"]
print(f"training throughput {recipe_speed:,.0f} tokens/s")
assert recipe_speed > 1000 and record["wall_seconds"] < 3600

# %% [markdown]
# **Bits per character** divides the total loss (in bits) by the number of characters rather than
# tokens, so it compares models with different tokenizers: a tokenizer with longer tokens has a
# higher loss per token but not per character. Both models on the same 64 validation blocks:

# %%
nb_eval = evaluate(model, data.val, max_blocks=64)
base_eval = evaluate(base, data.val, max_blocks=64)
for name, result_ in (("notebook model", nb_eval), ("base model", base_eval)):
    print(f"{name:15} {result_['loss']:.2f} nats/token, perplexity {result_['perplexity']:5.1f}, "
          f"{result_['bits_per_char']:.2f} bits/char")
assert base_eval["loss"] < nb_eval["loss"] - 0.3

# %% [markdown]
# And its samples, beside the notebook model's:

# %%
for prompt in prompts + ["清泉茶铺", "The Clear Spring Tea Shop"]:
    print(f"notebook: {sample(model, prompt, 50)!r}\nbase:     {sample(base, prompt, 50)!r}\n")

# %% [markdown]
# The base model writes whole sentences of the corpus's kind in both languages. Its recorded
# samples (from the recipe's own run) are in `training.json`:

# %% tags=["nbval-check-output"]
for prompt, text in record["samples"].items():
    print(f"{prompt!r}: {text[:90]!r}")
zh_sample, en_sample = record["samples"]["从前，"], record["samples"]["One day, "]
assert sum("\u4e00" <= c <= "\u9fff" for c in zh_sample) > 0.6 * len(zh_sample.replace(" ", ""))
assert sum(c.isascii() for c in en_sample) > 0.95 * len(en_sample)

# %% [markdown]
# A caution before admiring 0.25 bits per character: the course corpus is written by a program
# from templates, so the validation stories are new combinations of sentences the model has
# mostly seen. How many validation sentences occur word for word in the training split?

# %% tags=["nbval-check-output"]
import re


def sentences(documents, pattern):
    return [s.strip() for doc in documents for s in re.split(pattern, doc) if s.strip()]


for lang, pattern in (("zh", r"(?<=[。！？])"), ("en", r"(?<=[.!?])\s+")):
    train_sentences = set(sentences(load_documents("train", lang), pattern))
    val_sentences = sentences(load_documents("val", lang), pattern)
    seen = sum(s in train_sentences for s in val_sentences) / len(val_sentences)
    print(f"{lang}: {seen:.0%} of {len(val_sentences):,} validation sentences also occur in training")
    assert seen > 0.5


# %% [markdown]
# So the low loss measures how well the model learned this corpus's small world (its names,
# teas, prices and sentence patterns), not general Chinese or English. On ordinary text the
# same 5 M-parameter model would do far worse: a model meant for general text needs vastly more,
# and far more varied, data (and parameters) than a course can train on a laptop.

# %% [markdown]
# ## 8. Why this size? Loss against model size and tokens
#
# The recipe had to finish within an hour on a 2-core CPU, and the corpus holds 1.6 M training
# tokens. The cost of a token grows with the parameters, and two matrices are fixed by the
# vocabulary: the embedding and the output layer (4096 × hidden each). A quick measurement of one
# training step (forward + backward) for three sizes, on whatever machine runs this notebook:

# %% tags=["nbval-ignore-output"]
def tokens_per_second(sizes, batch_size=8, block_size=128):
    seed_everything(0)
    m = ChatGLMForCausalLM(ChatGLMConfig(**{**SMALL, **sizes}))
    x = torch.randint(0, 4096, (batch_size, block_size + 1), generator=torch.Generator().manual_seed(0))
    next_token_loss(m(x[:, :-1]).logits, x).backward()               # warm-up
    start = time.perf_counter()
    next_token_loss(m(x[:, :-1]).logits, x).backward()
    return batch_size * block_size / (time.perf_counter() - start)


sizes = {"2 x 128 (notebook)": {}, "4 x 256 (base)": dict(num_layers=4, hidden_size=256, ffn_hidden_size=683, kv_channels=64),
         "6 x 384": dict(num_layers=6, hidden_size=384, ffn_hidden_size=1024, kv_channels=96)}
for name, s in sizes.items():
    n = count_parameters(ChatGLMConfig(**{**SMALL, **s}))
    print(f"{name:20} {n / 1e6:5.1f} M parameters  {tokens_per_second(s):8,.0f} tokens/s")
print(f"the recipe's own run: {record['train_tokens_seen']:,} tokens (one epoch) in {record['train_seconds'] / 60:.1f} min "
      f"= {record['train_tokens_seen'] / record['train_seconds']:,.0f} tokens/s with {record['machine']['torch_threads']} threads")

# %% [markdown]
# The base size trains at well over a thousand tokens per second on a single CPU thread, so one
# epoch of the corpus takes well under an hour, and a run of one epoch fits the budget with room
# to spare. (The recipe sets `num_threads = 1`: two threads are almost twice as fast on two idle
# cores, but many times slower when another program holds one of the cores, as happened while it
# was being made.) Wider and deeper models cost several times more per token: within the same
# hour they would see fewer tokens than they need to use their size. Smaller ones are fast but
# flatten early, as the notebook model's curve starts to. The table below puts the two runs we have
# side by side: the validation loss of each periodic pass against the tokens seen so far.

# %%
base_hist = record["history"]
base_tokens_per_step = base_cfg["batch_size"] * base_cfg["block_size"] * base_cfg["grad_accum_steps"]
nb_tokens_per_step = nb_config.batch_size * nb_config.block_size
runs = {"notebook": (count_parameters(model.config), [s * nb_tokens_per_step for s in history["val_step"]], history["val_loss"]),
        "base": (base_params, [s * base_tokens_per_step for s in base_hist["val_step"]], base_hist["val_loss"])}
print("| model | parameters | tokens seen | validation loss |\n|---|---:|---:|---:|")
for name, (n, tokens, losses) in runs.items():
    for t, v in zip(tokens, losses):
        print(f"| {name} | {n / 1e6:.1f} M | {t:,} | {v:.2f} |")
assert runs["base"][2][-1] < runs["notebook"][2][-1] - 1.0 and runs["base"][1][-1] > 6 * runs["notebook"][1][-1]

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, (n, tokens, losses) in runs.items():
    ax.plot(tokens, losses, "o-", label=f"{name} ({n / 1e6:.1f} M parameters)")
ax.set_xscale("log")
ax.set_xlabel("tokens seen")
ax.set_ylabel("validation loss (nats/token)")
ax.set_title("损失随模型大小和训练量下降 (loss against model size and tokens)")
ax.legend()
plt.show()

# %% [markdown]
# Look at the rows at 204,800 tokens: the two runs are level there, although the base model has
# 3.5 times the parameters. By then the notebook model had taken 200 optimizer steps, the base
# model 100 (with twice the tokens per step): at this scale the number of updates matters as much
# as the tokens.

# %%
nb_at_204k = dict(zip(runs["notebook"][1], runs["notebook"][2]))[204_800]
base_at_204k = dict(zip(runs["base"][1], runs["base"][2]))[204_800]
print(f"at 204,800 tokens: notebook model {nb_at_204k:.1f}, base model {base_at_204k:.1f} nats/token")
assert abs(nb_at_204k - base_at_204k) < 0.3


# %% [markdown]
# The two runs differ in size, tokens, batch and schedule at once, so they only hint at the
# scaling laws; what they show plainly is that loss keeps falling with the tokens seen, and that
# the larger model, after more than six times the tokens, ends far lower. Changing one thing at a time (the same
# tokens for three sizes, or three token budgets for one size) is a good experiment to run with
# `train` and an evening of CPU time.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1: the learning-rate schedule
# Write `my_lr_at(step, lr, warmup_steps, max_steps, min_lr_ratio)`: for `step < warmup_steps`
# return `lr * (step + 1) / warmup_steps`; afterwards, with
# `progress = (step - warmup_steps) / (max_steps - 1 - warmup_steps)` (at most 1), return
# `lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + cos(pi * progress)))`.

# %%
def my_lr_at(step, lr, warmup_steps, max_steps, min_lr_ratio):
    raise NotImplementedError


# %%
result = check("my_lr_at", my_lr_at, lr_at,
               [(0, 1e-3, 10, 100, 0.1), (9, 1e-3, 10, 100, 0.1), (10, 1e-3, 10, 100, 0.1), (55, 1e-3, 10, 100, 0.1),
                (99, 1e-3, 10, 100, 0.1), (40, 3e-3, 0, 50, 0.0)],
               hint="warmup counts steps from 1: step 0 already gets lr / warmup_steps")


# %% [markdown]
# ### Exercise 2: the loss on a masked batch
# Chat fine-tuning (lesson 08) trains only on the assistant's replies: targets of the prompt are
# masked. Write `masked_next_token_loss(logits, input_ids, loss_mask)` where `loss_mask
# [batch, seq]` is 1 for targets that count and 0 for those that do not (it lines up with
# `input_ids[:, 1:]`); return the mean cross-entropy over the counted targets only.

# %%
def masked_next_token_loss(logits, input_ids, loss_mask):
    raise NotImplementedError


# %%
def masked_loss_reference(logits, input_ids, loss_mask):
    targets = input_ids[:, 1:].masked_fill(loss_mask == 0, -100)              # -100: ignored by cross_entropy
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)


gen = torch.Generator().manual_seed(1)
mask_cases = []
for batch_size, seq in ((1, 4), (2, 6), (3, 5)):
    mask = (torch.rand(batch_size, seq, generator=gen) > 0.4).long()
    mask[0, -1] = 1
    mask_cases.append((torch.randn(batch_size, seq, 11, generator=gen), torch.randint(0, 11, (batch_size, seq + 1), generator=gen), mask))
result = check("masked_next_token_loss", masked_next_token_loss, masked_loss_reference, mask_cases,
               hint="take the per-token losses with reduction='none', multiply by the mask, divide by mask.sum()")


# %% [markdown]
# ### Exercise 3: bits per character
# Write `bits_per_character(mean_loss, num_tokens, num_characters)`: the mean loss is in nats per
# token; convert the total to bits and divide by the characters. Then use it: is the base model's
# number in `training.json` what its loss and the validation split's characters per token give?

# %%
def bits_per_character(mean_loss, num_tokens, num_characters):
    raise NotImplementedError


# %%
result = check("bits_per_character", bits_per_character,
               lambda loss, tokens, chars: loss * tokens / math.log(2) / chars,
               [(math.log(2), 10, 10), (2.0, 100, 250), (final_val["loss"], final_val["tokens"],
                                                          final_val["tokens"] * data.val.characters_per_token)],
               hint="nats -> bits is a division by ln 2")

# %% [markdown]
# Solutions are in `notebooks/solutions/06_pretraining_solutions.ipynb`; try first.
#
# ## Summary
# - Pretraining is next-token classification at every position; the loss is the mean
#   cross-entropy, perplexity its exponential. A uniform guess costs `ln 4096 = 8.32` nats, a
#   unigram model about 6.2; everything below that comes from context.
# - Documents are packed into one stream with `</s>` between them and cut into blocks of
#   `block_size + 1`; a seeded sampler serves them in an order that a checkpoint can restore.
# - AdamW (decay on matrices only), warmup + cosine, clipping and accumulation make the
#   optimizer steady; a training checkpoint holds weights, optimizer, scheduler, RNG states and data
#   position, written atomically, and resumes bit for bit.
# - Watch the validation loss: a tiny text is memorised, a large corpus generalises.
# - The shipped base model (`data/checkpoints/base/`, `configs/base.toml`) reaches well under 0.6
#   times the unigram entropy and writes the corpus's Chinese and English.
#
# Next: **07 · 解码 Decoding**, where a proper `generate` turns these logits into text:
# greedy, temperature, top-k, top-p and a KV cache.
