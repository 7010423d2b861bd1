# %% [markdown]
# # 03 · 注意力 Attention: solutions
#
# Worked answers to the exercises of lesson 03. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import torch
from einops import rearrange

from glm3_teach.attention import causal_mask, explicit_attention, repeat_kv
from glm3_teach.checks import check


# %% [markdown]
# ## Exercise 1: the causal mask with a KV cache
# Query `i` is the token at absolute position `k_len - q_len + i`; it may see every key at that
# position or before. Comparing a column of query positions with a row of key positions
# broadcasts to the whole `[q_len, k_len]` mask at once.

# %% tags=["nbval-check-output"]
def my_causal_mask(q_len, k_len):
    query_pos = torch.arange(k_len - q_len, k_len)[:, None]  # [q_len, 1] absolute positions
    key_pos = torch.arange(k_len)[None, :]                   # [1, k_len]
    return key_pos <= query_pos                              # [q_len, k_len]


assert check("my_causal_mask", my_causal_mask, causal_mask, [(1, 1), (4, 4), (2, 5), (1, 6), (3, 8)])
print(my_causal_mask(2, 5).int())

# %% [markdown]
# `torch.ones(q_len, k_len, dtype=torch.bool).tril(diagonal=k_len - q_len)` is the same mask
# in one call: the diagonal offset shifts the triangle right by the number of cached keys.

# %% tags=["nbval-check-output"]
assert check("tril with an offset", lambda q_len, k_len: torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len),
             causal_mask, [(1, 1), (4, 4), (2, 5), (1, 6), (3, 8)])


# %% [markdown]
# ## Exercise 2: a log-softmax that never overflows
# Subtract the row maximum `m`: then every `exp(x - m)` is at most 1 and the sum is at least 1, so
# `log(sum)` is finite. `log_softmax(x) = (x - m) - log(sum(exp(x - m)))`; the `m` cancels exactly as
# in the stable softmax. An entry of $-\infty$ stays $-\infty$ and contributes `exp(-inf) = 0`.

# %% tags=["nbval-check-output"]
def stable_log_softmax(x):
    shifted = x - x.max(dim=-1, keepdim=True).values                 # the largest entry becomes 0
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))


log_softmax_cases = [(torch.tensor([1000.0, 1001.0, 1002.0]),),
                     (torch.tensor([[-1000.0, -1001.0], [3.0, float("-inf")]]),),
                     (torch.randn(4, 7, generator=torch.Generator().manual_seed(3)) * 50,)]
assert check("stable_log_softmax", stable_log_softmax, lambda x: torch.log_softmax(x, dim=-1), log_softmax_cases)
print([round(v, 4) for v in stable_log_softmax(torch.tensor([1000.0, 1001.0, 1002.0])).tolist()])


# %% [markdown]
# ## Exercise 3: grouped-query attention without copying the keys and values
# Split the query heads into `[groups, heads_per_group]` (head `h` = group `h // r`, member
# `h % r`, the same order as `repeat_kv`), give `k` and `v` a size-1 axis for the members, and let
# the matrix products broadcast. Nothing of `k` or `v` is copied.

# %% tags=["nbval-check-output"]
def gqa_no_copy(q, k, v):
    groups = k.shape[1]
    q = rearrange(q, "b (g r) s d -> b g r s d", g=groups)      # [b, G, r, s, d]
    k, v = k[:, :, None], v[:, :, None]                         # [b, G, 1, s, d]
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5       # [b, G, r, s, s]
    scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2]), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v                     # [b, G, r, s, d]
    return rearrange(out, "b g r s d -> b (g r) s d")            # [b, heads, s, d]


def gqa_reference(q, k, v):
    n_rep = q.shape[1] // k.shape[1]
    return explicit_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=True)[0]


exercise_generator = torch.Generator().manual_seed(4)
gqa_cases = [(torch.randn(2, 4, 5, 8, generator=exercise_generator), *torch.randn(2, 2, 2, 5, 8, generator=exercise_generator)),
             (torch.randn(1, 8, 6, 4, generator=exercise_generator), *torch.randn(2, 1, 1, 6, 4, generator=exercise_generator)),
             (torch.randn(1, 3, 4, 4, generator=exercise_generator), *torch.randn(2, 1, 3, 4, 4, generator=exercise_generator))]
assert check("gqa_no_copy", gqa_no_copy, gqa_reference, gqa_cases)

# %% [markdown]
# The trick matters most during decoding, when one new query per head reads a long cache: the
# repeated cache of ChatGLM3-6B would be 16 times the stored one. PyTorch's
# `scaled_dot_product_attention` can also do this itself with `enable_gqa=True` (PyTorch 2.5+).

# %% tags=["nbval-check-output"]
q, k, v = gqa_cases[0]
torch_version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
if torch_version >= (2, 5):
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(sdpa, gqa_no_copy(q, k, v), rtol=0, atol=1e-5)
print("GQA without copies matches the reference:", list(gqa_no_copy(q, k, v).shape))

# %% [markdown]
# ## Exercise 4: find the previous-token heads
# Query `i` (for `i >= 1`) puts `attn[..., i, i - 1]` on its previous token; indexing the last two
# dims with two index tensors picks that sub-diagonal for every layer and head at once.

# %% tags=["nbval-check-output"]
from glm3_teach import load_pretrained, load_tokenizer, viz
from glm3_teach.attention import causal_mask
from glm3_teach.checks import check_value
from glm3_teach.paths import data_dir


def previous_token_scores(attn):
    rows = torch.arange(1, attn.shape[-1])            # queries 1 .. seq-1
    return attn[..., rows, rows - 1].mean(-1)         # [layers, heads, seq-1] -> [layers, heads]


base_dir = data_dir() / "checkpoints" / "base"
trained, trained_tokenizer = load_pretrained(base_dir, dtype=torch.float32), load_tokenizer(base_dir)
trained_ids = trained_tokenizer.encode("小猫喜欢喝绿茶。The cat likes tea.", add_special_tokens=True)
trained_attn, _ = viz.compute_attentions(trained, trained_ids)                     # [layers, heads, q, k]
scores = viz.head_scores(trained_attn, *viz.token_info(trained_tokenizer, trained_ids))


def reference_previous(attn):
    return viz.head_scores(attn, ["x"] * attn.shape[-1])["previous"]


random_attn = torch.softmax(torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(5))
                            .masked_fill(~causal_mask(6), float("-inf")), dim=-1)
assert check("previous_token_scores", previous_token_scores, reference_previous, [(trained_attn,), (random_attn,)])
previous_layers = sorted({layer for layer, _ in (previous_token_scores(trained_attn) > 0.3).nonzero().tolist()})
assert check_value("layers with a previous-token head", previous_layers,
                   sorted({layer for layer, _ in (scores["previous"] > 0.3).nonzero().tolist()}))
pairs = (previous_token_scores(trained_attn) > 0.3).nonzero().tolist()
n = len(trained_ids)
uniform = causal_mask(n).float() / torch.arange(1, n + 1)[:, None]               # [q, k] 1/(i+1) on allowed keys
chance = previous_token_scores(uniform[None, None]).item()
print("previous-token heads (> 0.3):", pairs, " scores", [round(scores["previous"][l, h].item(), 2) for l, h in pairs],
      f" uniform head: {chance:.2f}")
assert previous_layers == [3] and pairs == [[3, 0], [3, 3]] and abs(chance - 0.17) < 0.01

# %% [markdown]
# Both are in layer 3, the last layer: heads 0 and 3. They are weak (0.33 and 0.34, where a
# uniform head scores 0.17 on this sentence); in the viewer, pick layer 3 and one of them, tick
# "hide [gMASK] sop", and their strongest lines run one step up from each query.
