# %% [markdown]
# # 07 · 解码 Decoding: solutions
#
# Worked answers to the exercises of lesson 07. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import torch

from glm3_teach import check, load_pretrained, load_tokenizer, pick_device
from glm3_teach.generate import apply_top_p, finish_rows, generate, stop_token_ids
from glm3_teach.paths import data_dir

device = pick_device()
CHECKPOINT = data_dir() / "checkpoints" / "base"
model = load_pretrained(CHECKPOINT, dtype=torch.float32, device=device)
tok = load_tokenizer(CHECKPOINT)
batch_of_logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))  # [batch, vocab]


# %% [markdown]
# ## Exercise 1: top-p
# Sort each row from the most likely token down, and compute the probability ranked *above* each
# token (the running total minus the token itself). A token stays while that is below `top_p`, so
# the top token always stays. `scatter` writes the mask, computed in sorted order, back to the
# vocabulary positions the sort came from.

# %% tags=["nbval-check-output"]
def top_p_filter(logits, top_p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)   # [batch, vocab]
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    above = sorted_probs.cumsum(dim=-1) - sorted_probs                   # mass ranked above each token
    remove = (above >= top_p).scatter(1, order, above >= top_p)          # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


assert check("top_p", top_p_filter, apply_top_p,
             [(batch_of_logits, 0.8), (batch_of_logits, 0.1), (batch_of_logits, 1.0),
              (torch.tensor([[0.1, 0.4, 0.05, 0.3, 0.15]]).log(), 0.5)])


# %% [markdown]
# ## Exercise 2: the cache that forgets positions
# Real tokens count from position 0 (ChatGLM3's convention for left padding), so the new token,
# the last one the mask covers, sits at (number of real tokens so far) − 1. Pads do not count.

# %% tags=["nbval-check-output"]
def next_positions(attention_mask):
    return attention_mask.sum(dim=1, keepdim=True) - 1                  # [batch, 1]


def cached_loop(model, input_ids, attention_mask, max_new_tokens, position_fn):
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask, use_cache=True)
        ids = input_ids
        for step in range(max_new_tokens):
            next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(next_id)], dim=1)
            if step + 1 < max_new_tokens:
                out = model(next_id, attention_mask=attention_mask, position_ids=position_fn(attention_mask),
                            kv_cache=out.kv_cache, use_cache=True)
    return ids


kv_prompt = torch.tensor([tok.encode("有一天，小老鼠想到河对岸去，")]).to(device)
rows = [tok.encode(t) for t in ["小猫", "清泉茶铺", "One day, the little cat"]]
width = max(map(len, rows))
batch_ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows]).to(device)
batch_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]).to(device)
assert check("next_positions",
             lambda ids, mask: cached_loop(model, ids, mask, 20, next_positions),
             lambda ids, mask: generate(model, ids, 20, attention_mask=mask),
             [(kv_prompt, torch.ones_like(kv_prompt)), (batch_ids, batch_mask)])


# %% [markdown]
# ## Exercise 3: stopping row by row
# Padding comes first, using the rows finished *before* this step; then the rows whose (possibly
# replaced) token is a stop id join the finished ones. The stop token itself is kept.

# %% tags=["nbval-check-output"]
def finish_step(next_ids, finished, stop_ids, pad_id):
    next_ids = torch.where(finished, torch.full_like(next_ids, pad_id), next_ids)
    return next_ids, finished | torch.isin(next_ids, stop_ids)


stops = stop_token_ids(tok)
stop_tensor = torch.tensor(stops)
assert check("finish_step", finish_step, finish_rows,
             [(torch.tensor([5, stops[0], 7]), torch.tensor([False, False, False]), stop_tensor, stops[0]),
              (torch.tensor([5, stops[1], 7]), torch.tensor([True, False, False]), stop_tensor, stops[0]),
              (torch.tensor([stops[2], 8]), torch.tensor([True, True]), stop_tensor, 0)])
