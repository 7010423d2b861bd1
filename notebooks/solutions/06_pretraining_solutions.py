# %% [markdown]
# # 06 · 预训练 Pretraining: solutions
#
# Worked answers to the exercises of lesson 06. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import json
import math

import torch
import torch.nn.functional as F

from glm3_teach.checks import check
from glm3_teach.data import TokenDataset, load_documents
from glm3_teach.paths import data_dir
from glm3_teach.tokenizer import load_tokenizer
from glm3_teach.train import lr_at

tokenizer = load_tokenizer()


# %% [markdown]
# ## Exercise 1: the learning-rate schedule
# Warmup counts steps from 1, so the first step already moves; the cosine runs over the
# `max_steps - 1 - warmup_steps` steps after warmup and ends exactly on the floor at the last step.

# %% tags=["nbval-check-output"]
def my_lr_at(step, lr, warmup_steps, max_steps, min_lr_ratio):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - 1 - warmup_steps))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


assert check("my_lr_at", my_lr_at, lr_at,
             [(0, 1e-3, 10, 100, 0.1), (9, 1e-3, 10, 100, 0.1), (10, 1e-3, 10, 100, 0.1), (55, 1e-3, 10, 100, 0.1),
              (99, 1e-3, 10, 100, 0.1), (40, 3e-3, 0, 50, 0.0)])


# %% [markdown]
# ## Exercise 2: the loss on a masked batch
# Per-token losses with `reduction="none"`, zeroed where the mask is 0, averaged over the counted
# targets (not over all of them: the mean must not depend on how long the prompt was).

# %% tags=["nbval-check-output"]
def masked_next_token_loss(logits, input_ids, loss_mask):
    targets = input_ids[:, 1:]                                                   # [batch, seq]
    per_token = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")  # [batch*seq]
    mask = loss_mask.flatten().float()
    return (per_token * mask).sum() / mask.sum()


def masked_loss_reference(logits, input_ids, loss_mask):
    targets = input_ids[:, 1:].masked_fill(loss_mask == 0, -100)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)


gen = torch.Generator().manual_seed(1)
mask_cases = []
for batch_size, seq in ((1, 4), (2, 6), (3, 5)):
    mask = (torch.rand(batch_size, seq, generator=gen) > 0.4).long()
    mask[0, -1] = 1
    mask_cases.append((torch.randn(batch_size, seq, 11, generator=gen), torch.randint(0, 11, (batch_size, seq + 1), generator=gen), mask))
assert check("masked_next_token_loss", masked_next_token_loss, masked_loss_reference, mask_cases)


# %% [markdown]
# ## Exercise 3: bits per character
# Total nats = mean loss × tokens; divide by ln 2 for bits, then by the characters. The base
# model's recorded figure is reproduced from its loss and the validation split's characters per
# token (the split packed in blocks of 256, as the recipe did).

# %% tags=["nbval-check-output"]
def bits_per_character(mean_loss, num_tokens, num_characters):
    return mean_loss * num_tokens / math.log(2) / num_characters


record = json.loads((data_dir() / "checkpoints" / "base" / "training.json").read_text(encoding="utf-8"))
final_val = record["final_val"]
val = TokenDataset.from_documents(load_documents("val"), tokenizer, record["config"]["block_size"], "validation split")
assert check("bits_per_character", bits_per_character, lambda loss, tokens, chars: loss * tokens / math.log(2) / chars,
             [(math.log(2), 10, 10), (2.0, 100, 250),
              (final_val["loss"], final_val["tokens"], final_val["tokens"] * val.characters_per_token)])
mine = bits_per_character(final_val["loss"], final_val["tokens"], final_val["tokens"] * val.characters_per_token)
print(f"recomputed {mine:.4f} bits/char, recorded {final_val['bits_per_char']:.4f}")
assert abs(mine - final_val["bits_per_char"]) < 1e-9
