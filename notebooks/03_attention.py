# %% [markdown]
# # 03 · 注意力 Attention
#
# Attention is how a token reads the other tokens. Every layer of ChatGLM3 asks, for each
# position, "which earlier tokens matter to me, and what do they say?", and answers with a
# weighted average. This lesson builds that operation from a dot product up to ChatGLM3's own
# attention layer, with its grouped keys and values, and checks each piece against
# `glm3_teach.attention`.
#
# **You will learn**
# - why a dot product measures similarity, and why attention divides it by √d (a variance experiment);
# - softmax, how a naive version overflows, and the max-subtraction fix;
# - scaled dot-product attention from scratch, with the causal mask, the KV-cache case and padding;
# - multi-head attention, and ChatGLM3's **grouped-query attention** (32 query heads share 2 KV groups);
# - how much KV-cache memory those 2 groups save on ChatGLM3-6B (16x, computed);
# - the layout of ChatGLM3's fused `query_key_value` projection, the shapes through one layer, and
#   that layer assembled by hand (exercise 5: write it so a checkpoint loads into it);
# - that PyTorch's `scaled_dot_product_attention` computes the same numbers;
# - the mask families of BERT, GPT and GLM, and why every ChatGLM3 prompt starts with `[gMASK] sop`;
# - how to draw attention maps, explore them live, and name what trained heads do with pattern scores;
# - (stretch) the online softmax behind FlashAttention, one block of keys at a time.

# %% [markdown]
# Every lesson starts the same way. Random tensors are made on the CPU with a fixed seed and
# moved to `device` where the computation matters, so printed numbers agree on every machine.
# Each experiment draws from its own generator (`generator = seed_everything(n)` at its top), so
# running a cell again gives the same numbers and never shifts the cells after it.

# %% tags=["nbval-ignore-output"]
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange
from IPython.display import display

from glm3_teach import ChatGLMConfig, ChatGLMForCausalLM, load_tokenizer, pick_device, seed_everything
from glm3_teach.checks import check, check_value
from glm3_teach.fonts import use_cjk_font

device = pick_device()
seed_everything(0)
use_cjk_font()
print("device:", device)

# %% [markdown]
# ## 1. 点积 The dot product as similarity
#
# Give every token a vector. Two vectors that point the same way have a large dot product
# $a \cdot b = \sum_i a_i b_i = |a|\,|b| \cos\theta$; orthogonal ones give 0, opposite ones a
# negative number. Four hand-made 4-dimensional vectors, one feature per axis
# (drink, tea, animal, small):

# %% tags=["nbval-check-output"]
words = ["绿茶 green tea", "乌龙茶 oolong", "咖啡 coffee", "小猫 kitten"]
keys = torch.tensor([[1.0, 1.0, 0.0, 0.0],   # 绿茶: a drink, a tea
                     [1.0, 0.9, 0.0, 0.1],   # 乌龙茶: a drink, a tea
                     [1.0, 0.0, 0.0, 0.0],   # 咖啡: a drink, no tea
                     [0.0, 0.0, 1.0, 1.0]])  # 小猫: a small animal
query = torch.tensor([0.5, 3.0, 0.0, 0.0])   # "which tea?": mostly the tea feature
scores = keys @ query                        # [4] one dot product per key
for word, score in zip(words, scores):
    print(f"{word:<16} q·k = {score:5.2f}")
assert scores.argsort(descending=True).tolist() == [0, 1, 2, 3] and scores[3] == 0

# %% [markdown]
# The two teas score highest, coffee is a drink but no tea, the kitten scores 0. Attention
# turns scores into weights that are positive and sum to 1 with **softmax**,
# $p_j = e^{s_j} / \sum_l e^{s_l}$, and returns the weighted average of **value** vectors, one
# per key. With the values below (a price and a caffeine level per word), the query reads
# mostly the teas' values:

# %% tags=["nbval-check-output"]
values = torch.tensor([[30.0, 1.0],   # 绿茶: price, caffeine
                       [45.0, 1.0],   # 乌龙茶
                       [25.0, 3.0],   # 咖啡
                       [0.0, 0.0]])   # 小猫
weights = torch.softmax(scores, dim=0)  # [4], sums to 1
print("weights:", [round(w, 3) for w in weights.tolist()], " sum", round(weights.sum().item(), 6))
print("output = weights @ values:", [round(x, 2) for x in (weights @ values).tolist()])
assert abs(weights.sum().item() - 1) < 1e-6 and weights[:2].sum() > 0.9

# %% [markdown]
# That is all of attention: **queries** ask, **keys** are matched against them, **values** are
# what gets read. In a transformer all three are learned linear projections of the same hidden
# states (hence *self*-attention), and every position asks at once: with queries as rows of
# $Q$, keys of $K$ and values of $V$,
#
# $$\text{Attention}(Q, K, V) = \text{softmax}\!\left(\frac{QK^\top}{\sqrt{d}}\right) V .$$
#
# The $\sqrt{d}$ is the next section.

# %% [markdown]
# ## 2. 缩放 Why divide by √d
#
# Let the $d$ entries of $q$ and $k$ be independent with mean 0 and variance 1 (roughly what a
# normalised layer produces). Each product $q_i k_i$ has mean 0 and variance 1, and the variance
# of a sum of independent terms is the sum of their variances, so
#
# $$\operatorname{Var}(q \cdot k) = d, \qquad \operatorname{Var}\!\left(\frac{q \cdot k}{\sqrt{d}}\right) = 1 .$$
#
# An experiment: 4096 random pairs for each head dimension.

# %% tags=["nbval-check-output"]
generator = seed_everything(1)
dims = [8, 16, 32, 64, 128, 256]
variance = {}
for d in dims:
    q_pairs = torch.randn(4096, d, generator=generator)  # [pairs, d], entries ~ N(0, 1)
    k_pairs = torch.randn(4096, d, generator=generator)
    dot = (q_pairs * k_pairs).sum(dim=-1)                # [pairs]
    variance[d] = dot.var().item()
    print(f"d = {d:>3}: Var(q·k) = {variance[d]:6.1f}   Var(q·k)/d = {variance[d] / d:.2f}   "
          f"Var(q·k/√d) = {(dot / math.sqrt(d)).var().item():.2f}")
    assert abs(variance[d] / d - 1) < 0.1  # the variance grows like d, within 10 %


# %% [markdown]
# Why does the size of the scores matter? Softmax of large scores is nearly one-hot: the
# biggest score takes everything, and the gradient of softmax, $\partial p_i / \partial s_j =
# p_i(\delta_{ij} - p_j)$, is then nearly zero everywhere, so the layer stops learning. With
# ChatGLM3's head dimension 128 the unscaled scores have a standard deviation of
# $\sqrt{128} \approx 11.3$. Over 16 random keys, the average weight of the winning key, and the
# trace of the softmax Jacobian $\sum_i p_i(1-p_i)$ (1 − 1/16 ≈ 0.94 for uniform weights, 0 for one-hot):

# %% tags=["nbval-check-output"]
def softmax_stats(scores):
    """Mean top weight and mean Jacobian trace of softmax over the last dim."""
    p = torch.softmax(scores, dim=-1)
    return p.max(dim=-1).values.mean().item(), (p * (1 - p)).sum(dim=-1).mean().item()


generator = seed_everything(2)
saturation = {}
for d in [16, 64, 128, 256]:
    q_rows = torch.randn(2000, 1, d, generator=generator)   # [rows, 1, d]
    k_rows = torch.randn(2000, 16, d, generator=generator)  # [rows, 16 keys, d]
    dot = (q_rows * k_rows).sum(dim=-1)                     # [rows, 16]
    saturation[d] = softmax_stats(dot), softmax_stats(dot / math.sqrt(d))
    (top_raw, grad_raw), (top_scaled, grad_scaled) = saturation[d]
    print(f"d = {d:>3}: top weight {top_raw:.2f} unscaled vs {top_scaled:.2f} scaled; "
          f"Jacobian trace {grad_raw:.2f} vs {grad_scaled:.2f}")
assert abs(saturation[128][0][0] - 0.88) < 0.03                     # unscaled: the winner takes ~88 %
assert saturation[64][0][0] < saturation[128][0][0] < saturation[256][0][0]  # and more as d grows
assert all(abs(scaled[0] - 0.25) < 0.03 for _, scaled in saturation.values())  # scaled: ~0.25 at every d
assert 0.1 < saturation[128][0][1] / saturation[128][1][1] < 0.3      # Jacobian trace: about a fifth


# %% [markdown]
# Without scaling, the winner takes about 88 % of the weight at d = 128, and more as d grows;
# the Jacobian trace falls to about a fifth of its scaled value. With the $1/\sqrt{d}$ scale both
# stay the same at every $d$, so a model's width does not change how sharp its attention starts.

# %%
def draw_scaling():
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(dims, [variance[d] for d in dims], "o-", label="测量 measured Var(q·k)")
    left.plot(dims, dims, "--", color="#888888", label="理论 theory: d")
    left.plot(dims, [1.0] * len(dims), "s-", label="缩放后 scaled: Var(q·k/√d)")
    left.set_xscale("log", base=2)
    left.set_yscale("log", base=2)
    left.set_xlabel("头维度 head dim d")
    left.set_ylabel("方差 variance")
    left.legend()
    left.set_title("点积的方差随 d 增长 (variance grows with d)")
    ds = sorted(saturation)
    right.plot(ds, [saturation[d][0][0] for d in ds], "o-", label="未缩放 unscaled")
    right.plot(ds, [saturation[d][1][0] for d in ds], "s-", label="缩放 scaled by 1/√d")
    right.axhline(1 / 16, color="#888888", linestyle=":", label="均匀 uniform (1/16)")
    right.set_ylim(0, 1)
    right.set_xscale("log", base=2)
    right.set_xlabel("头维度 head dim d")
    right.set_ylabel("最大权重的均值 mean top weight")
    right.legend()
    right.set_title("softmax 饱和 (saturation over 16 keys)")
    fig.tight_layout()


draw_scaling()
plt.show()

# %% [markdown]
# (The right panel plots the measured mean top weight; the scaled curve sits near 0.25 at every
# $d$, the top weight of 16 draws from a unit-variance softmax, well above uniform but far from one-hot.)
#
# ## 3. Softmax without overflow
#
# Written straight from the formula, softmax exponentiates the scores. `exp` overflows fp32 above
# $\ln(3.4 \times 10^{38}) \approx 88.7$, and fp16 (largest value 65504) already above
# $\ln 65504 \approx 11.1$:

# %% tags=["nbval-check-output"]
print("fp32: exp(88) =", torch.exp(torch.tensor(88.0)).item(), "  exp(89) =", torch.exp(torch.tensor(89.0)).item())
print("fp16: exp(11) =", torch.exp(torch.tensor(11.0, dtype=torch.float16)).item(),
      "  exp(11.1) =", torch.exp(torch.tensor(11.1, dtype=torch.float16)).item())
assert abs(math.log(torch.finfo(torch.float32).max) - 88.72) < 0.01
assert abs(math.log(torch.finfo(torch.float16).max) - 11.09) < 0.01


# %% tags=["nbval-check-output"]
def naive_softmax(x):
    e = torch.exp(x)
    return e / e.sum(dim=-1, keepdim=True)


big = torch.tensor([1000.0, 1001.0, 1002.0])
print("naive softmax of", big.tolist(), "->", naive_softmax(big).tolist())
assert torch.isnan(naive_softmax(big)).all()


# %% [markdown]
# Both inf / inf = NaN. The fix uses one identity: adding the same constant $c$ to every score
# does not change softmax, because $e^{s_j - c} / \sum_l e^{s_l - c} = e^{s_j} / \sum_l e^{s_l}$
# (the $e^{-c}$ cancels). Choose $c = \max_l s_l$: the largest exponent becomes $e^0 = 1$, so
# nothing overflows and the sum is at least 1, so nothing divides by zero. Masked scores of
# $-\infty$ still give $e^{-\infty} = 0$.

# %% tags=["nbval-check-output"]
def stable_softmax(x):
    shifted = x - x.max(dim=-1, keepdim=True).values  # the largest entry becomes 0
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)


print("stable softmax of", big.tolist(), "->", [round(p, 4) for p in stable_softmax(big).tolist()])
print("same as for [0, 1, 2]:          ", [round(p, 4) for p in stable_softmax(big - 1000).tolist()])
masked = torch.tensor([[2.0, float("-inf"), 1.0], [500.0, 0.0, float("-inf")]])
torch.testing.assert_close(stable_softmax(masked), torch.softmax(masked, dim=-1))
torch.testing.assert_close(stable_softmax(big), torch.softmax(big, dim=-1))


# %% [markdown]
# `torch.softmax` does exactly this internally. ChatGLM3's pre-PyTorch-2 attention path goes one
# step further and casts the scores to fp32 before the softmax even when the model runs in fp16
# (`attention_softmax_in_fp32` in its config), so the sum over thousands of keys keeps its
# precision; `glm3_teach`'s explicit path does the same.
#
# ## 4. Scaled dot-product attention from scratch
#
# From now on tensors are laid out `[batch, heads, seq, head_dim]` (nanoGPT's `(B, nh, T, hs)`);
# `q`, `k`, `v` always have this shape, and tensors of other shapes get other names.
# The whole operation is four lines. A **mask** says which keys each query may see; this course
# uses PyTorch's convention, `True` = may attend; forbidden scores become $-\infty$ before the
# softmax, so they get weight exactly 0.

# %%
def attention(q, k, v, mask=None):
    """q [b, h, q_len, d], k and v [b, h, k_len, d], mask bool [q_len, k_len] (True = may attend)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [b, h, q_len, k_len]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)                      # [b, h, q_len, k_len], rows sum to 1
    return probs @ v, probs                                    # [b, h, q_len, d], probabilities


# %% [markdown]
# Checked against the package's `explicit_attention`, which does the same with input checks
# and an fp32 softmax:

# %% tags=["nbval-check-output"]
from glm3_teach.attention import explicit_attention

generator = seed_everything(3)
q, k, v = torch.randn(3, 2, 4, 6, 16, generator=generator).unbind(0)  # each [2, 4, 6, 16]: [b, heads, seq, head_dim]
lower = torch.ones(6, 6, dtype=torch.bool).tril()                    # [6, 6]
result = check("attention", attention, explicit_attention, [(q, k, v), (q, k, v, lower)])

# %% [markdown]
# ## 5. 因果掩码 The causal mask
#
# A language model predicts token $t+1$ from tokens $0..t$. If position $t$ could read position
# $t+1$ while training, it would copy the answer instead of learning to predict it. So query $i$
# may see only keys $j \le i$: a lower-triangular mask.

# %% tags=["nbval-check-output"]
seq_len = 5
causal = torch.arange(seq_len)[None, :] <= torch.arange(seq_len)[:, None]  # [q, k]: key j <= query i
print(causal.int())
_, probs = attention(q[:, :, :5], k[:, :, :5], v[:, :, :5], causal)
print("weight on the future:", probs[..., ~causal].abs().max().item())
assert torch.equal(causal, torch.ones(5, 5, dtype=torch.bool).tril())
assert probs[..., ~causal].abs().max().item() == 0.0

# %% [markdown]
# Row 0 sees only itself, so its output is exactly its own value vector. The package's
# `causal_mask(q_len, k_len)` also covers **generation with a KV cache** (lesson 07): the keys of
# earlier tokens are kept, and only the new tokens are fed as queries, so there are fewer queries
# than keys. The queries are the *last* `q_len` positions. Writing that general mask is
# exercise 1. Here, 2 new tokens after 3 cached ones:

# %% tags=["nbval-check-output"]
from glm3_teach.attention import build_attention_mask, causal_mask

print(causal_mask(2, 5).int())
assert torch.equal(causal_mask(5), causal)

# %% [markdown]
# A batch of prompts of different lengths is **padded on the left**, as ChatGLM3's tokenizer
# does, with `attention_mask` 1 for real tokens and 0 for pads. `build_attention_mask` adds it to
# the causal mask: no query sees a pad key. A pad *query* row would then see nothing, and a
# softmax over nothing is 0/0 = NaN, so (like ChatGLM3) pad rows are opened to every key: their
# outputs are garbage that no real token ever reads.

# %% tags=["nbval-check-output"]
padded = build_attention_mask(torch.tensor([[0, 0, 1, 1, 1]]))  # [batch 1, 1, q 5, k 5]
print(padded[0, 0].int())

# %% [markdown]
# One trap when you read ChatGLM3's own code: its `get_masks` uses the opposite convention,
# **True = masked**, and hands PyTorch `~mask`. Same mask, inverted booleans:

# %% tags=["nbval-check-output"]
chatglm3_style = ~causal_mask(4)  # what ChatGLM3's get_masks would build (True = masked)
print(chatglm3_style.int())

# %% [markdown]
# Two more differences in layout, so the real code does not surprise you. ChatGLM3 keeps its
# activations **sequence-first**, `[s, b, h]` (`[seq, batch, hidden]`), where this package is
# batch-first, `[b, s, h]`, and `[b, heads, s, head_dim]` inside attention. And its KV cache holds,
# per layer, `k` and `v` of shape `[seq_so_far, b, 2, 128]` (sequence, batch, the 2 KV groups,
# head_dim), where ours is `[b, 2, seq_so_far, 128]`. The numbers are the same, in another order of
# axes (section 8 turns our cache into ChatGLM3's layout).

# %% [markdown]
# ## 6. 多头 Multi-head attention
#
# One softmax gives one weighting per query. A token may need several at once: the subject of
# its sentence, the previous token, the matching bracket. **Multi-head** attention cuts the
# projection into `num_heads` slices of `head_dim` and runs attention in each slice separately,
# then concatenates the outputs. With `hidden_size = num_heads * head_dim` it costs the same
# multiply-adds as one wide head, but yields `num_heads` different attention patterns.

# %% tags=["nbval-check-output"]
generator = seed_everything(6)
batch, seq_len, num_heads, head_dim = 2, 6, 4, 8
hidden = torch.randn(batch, seq_len, num_heads * head_dim, generator=generator)  # [b, s, 32]
w_q, w_k, w_v = (torch.randn(32, 32, generator=generator) / math.sqrt(32) for _ in range(3))
q_all, k_all, v_all = hidden @ w_q, hidden @ w_k, hidden @ w_v                   # [b, s, H*D] each
mask = causal_mask(seq_len)

one_by_one = []
for h in range(num_heads):  # head h owns features h*D .. h*D+D-1
    cut = slice(h * head_dim, (h + 1) * head_dim)
    out_h, _ = attention(q_all[None, :, :, cut], k_all[None, :, :, cut], v_all[None, :, :, cut], mask)
    one_by_one.append(out_h[0])                                                   # [b, s, D]
looped = torch.cat(one_by_one, dim=-1)                                            # [b, s, H*D]

q_heads = rearrange(q_all, "b s (h d) -> b h s d", h=num_heads)                   # [b, H, s, D]
k_heads = rearrange(k_all, "b s (h d) -> b h s d", h=num_heads)
v_heads = rearrange(v_all, "b s (h d) -> b h s d", h=num_heads)
out, _ = attention(q_heads, k_heads, v_heads, mask)                               # [b, H, s, D]
batched = rearrange(out, "b h s d -> b s (h d)")                                  # heads concatenated, head-major
torch.testing.assert_close(batched, looped)
print("a loop over heads == one batched call over the heads axis:", batched.shape)


# %% [markdown]
# The output layer (`dense` in ChatGLM3) then mixes the concatenated heads back into the
# residual stream.
#
# ## 7. 分组查询注意力 Grouped-query attention: ChatGLM3's 2 KV groups
#
# During generation every layer keeps the keys and values of all earlier tokens (the KV cache),
# and reading that cache from memory (with the weights), more than the arithmetic, limits how fast
# a model decodes. **Grouped-query attention (GQA)** keeps all query heads but lets several of them
# share one key and one value head, a **KV group** (the GQA paper says "KV head"; this course says
# KV group everywhere, as in `num_kv_groups`).
# ChatGLM3-6B has 32 query heads and `multi_query_group_num = 2` KV groups (its config calls the
# switch `multi_query_attention`, but with 2 groups it is GQA): 16 query heads read each group.
# Query head $h$ reads group $h \,/\!/\, (\text{num\_heads} / \text{num\_kv\_groups})$, so heads
# 0-15 use group 0 and heads 16-31 group 1. Multi-head attention (MHA) is the case "one KV group
# per query head", multi-query attention (MQA) the case "one KV group for all".

# %%
def draw_kv_sharing(num_heads=8):
    fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
    for ax, (name, groups) in zip(axes, [("MHA 多头", num_heads), ("GQA 分组 (ChatGLM3)", 2), ("MQA 多查询", 1)]):
        per_group = num_heads // groups
        colours = plt.cm.tab10(range(groups))
        for h in range(num_heads):
            g = h // per_group
            ax.add_patch(plt.Rectangle((h, 1.2), 0.8, 0.6, color=colours[g], alpha=0.45))
            ax.text(h + 0.4, 1.5, f"q{h}", ha="center", va="center", fontsize=8)
            kv_x = (g + 0.5) * num_heads / groups - 0.4
            ax.plot([h + 0.4, kv_x + 0.4], [1.2, 0.6], color=colours[g], linewidth=1)
        for g in range(groups):
            kv_x = (g + 0.5) * num_heads / groups - 0.4
            ax.add_patch(plt.Rectangle((kv_x, 0.0), 0.8, 0.6, color=colours[g]))
            ax.text(kv_x + 0.4, 0.3, f"kv{g}", ha="center", va="center", fontsize=8, color="white")
        ax.set_xlim(-0.2, num_heads)
        ax.set_ylim(-0.1, 1.9)
        ax.axis("off")
        ax.set_title(f"{name}: {num_heads} 查询头 query heads, {groups} KV 组 groups")
    fig.tight_layout()


draw_kv_sharing()
plt.show()


# %% [markdown]
# In code, GQA projects `num_kv_groups` key and value heads and then **repeats** each group for its
# query heads before ordinary attention. The mapping "head $h$ reads group $h /\!/ r$" written
# literally as an index:

# %% tags=["nbval-check-output"]
def my_repeat_kv(x, n_rep):
    """[b, groups, s, d] -> [b, groups * n_rep, s, d]; head h gets group h // n_rep."""
    group_of_head = torch.arange(x.shape[1] * n_rep) // n_rep  # [heads]: 0,0,..,1,1,..
    return x[:, group_of_head]


def gqa_attention(q, k, v, mask=None):
    """q [b, heads, s, d]; k, v [b, groups, s, d]."""
    n_rep = q.shape[1] // k.shape[1]
    return attention(q, my_repeat_kv(k, n_rep), my_repeat_kv(v, n_rep), mask)


print("ChatGLM3-6B: query head -> KV group", (torch.arange(32) // (32 // 2)).tolist())

# %% [markdown]
# Both against the package (`repeat_kv` does the same with einops), with ChatGLM3's ratio of 16
# query heads per group:

# %% tags=["nbval-check-output"]
from glm3_teach.attention import repeat_kv

generator = seed_everything(7)
kv_groups = torch.randn(1, 2, 3, 4, generator=generator)          # [b, 2 groups, s, d]
q32 = torch.randn(1, 32, 5, 8, generator=generator)               # [b, 32 heads, s, d]
k2, v2 = torch.randn(2, 1, 2, 5, 8, generator=generator).unbind(0)  # [b, 2 groups, s, d]
result = check("my_repeat_kv", my_repeat_kv, repeat_kv, [(kv_groups, 16), (kv_groups, 1), (kv_groups, 3)])
result = check("gqa_attention", gqa_attention,
               lambda q, k, v, mask: explicit_attention(q, repeat_kv(k, 16), repeat_kv(v, 16), mask),
               [(q32, k2, v2, causal_mask(5)), (q32, k2, v2, None)])

# %% [markdown]
# `repeat_kv` only changes what the attention *reads*. The cache stores the 2 groups before
# repeating (ChatGLM3 does the same), and that is where the saving is.
#
# ## 8. What GQA saves: the KV cache of ChatGLM3-6B
#
# Per token, every layer stores one key and one value vector of `head_dim` numbers per KV group.
# In bf16 (2 bytes a number), ChatGLM3-6B's 28 layers with 2 groups of 128 dims need, compared with
# the same model with one KV group per query head (MHA, 32 groups):

# %% tags=["nbval-check-output"]
cfg_6b = ChatGLMConfig.chatglm3_6b()
BF16_BYTES = 2


def kv_bytes_per_token(num_layers, num_kv_groups, head_dim, bytes_per_value=BF16_BYTES):
    return num_layers * 2 * num_kv_groups * head_dim * bytes_per_value  # 2: a key and a value


gqa_per_token = kv_bytes_per_token(cfg_6b.num_layers, cfg_6b.num_kv_groups, cfg_6b.kv_channels)
mha_per_token = kv_bytes_per_token(cfg_6b.num_layers, cfg_6b.num_attention_heads, cfg_6b.kv_channels)
print(f"GQA, 2 groups: 28 x 2 x 2 x 128 x 2 bytes = {gqa_per_token:,} bytes = {gqa_per_token / 2**10:.0f} KiB per token")
print(f"MHA, 32 groups: 28 x 2 x 32 x 128 x 2 bytes = {mha_per_token:,} bytes = {mha_per_token / 2**10:.0f} KiB per token")
for tokens in (8192, 32768):
    print(f"{tokens:>6} tokens: GQA {gqa_per_token * tokens / 2**20:,.0f} MiB, MHA {mha_per_token * tokens / 2**30:.1f} GiB")
assert (cfg_6b.num_layers, cfg_6b.num_kv_groups, cfg_6b.kv_channels, cfg_6b.num_attention_heads) == (28, 2, 128, 32)
assert gqa_per_token == 28_672 and mha_per_token == 458_752 and mha_per_token // gqa_per_token == 16
assert gqa_per_token * 8192 == 224 * 2**20 and mha_per_token * 8192 == 3.5 * 2**30

# %% [markdown]
# At ChatGLM3's full context of 8192 tokens the cache is 224 MiB instead of 3.5 GiB, per sequence.
# Put differently: the bf16 weights take 6,243,584,000 × 2 bytes ≈ 11.6 GiB, and the MHA cache
# would outgrow them after about 27 thousand tokens (all sequences of a batch together), the GQA
# cache only after about 435 thousand, so a server can keep 16 times as many conversations in memory:

# %% tags=["nbval-check-output"]
from glm3_teach import count_parameters

weight_bytes = count_parameters(cfg_6b) * BF16_BYTES
print(f"weights: {weight_bytes:,} bytes;  cache outgrows them after "
      f"{weight_bytes // mha_per_token:,} tokens (MHA) vs {weight_bytes // gqa_per_token:,} tokens (GQA)")
assert weight_bytes == 12_487_168_000
assert 27_000 < weight_bytes // mha_per_token < 27_500 and 435_000 < weight_bytes // gqa_per_token < 436_000


# %%
def draw_kv_memory():
    tokens = torch.linspace(0, 65536, 65)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.plot(tokens, tokens * mha_per_token / 2**30, label="MHA: 32 个 KV 组 groups")
    ax.plot(tokens, tokens * gqa_per_token / 2**30, label="GQA: 2 个 KV 组 groups (ChatGLM3)")
    ax.axhline(weight_bytes / 2**30, color="#888888", linestyle="--", label="bf16 权重 weights")
    ax.axvline(8192, color="#cccccc", linestyle=":")
    ax.text(9200, 14, "8192 = seq_length", fontsize=8, color="#666666")
    ax.set_xlabel("缓存的词元数 (全批次) cached tokens, whole batch")
    ax.set_ylabel("KV 缓存 cache (GiB)")
    ax.set_title("ChatGLM3-6B 的 KV 缓存 (bf16, 28 层 layers)")
    ax.legend(loc="upper left")


draw_kv_memory()
plt.show()

# %% [markdown]
# The formula is checked on a real cache: a small ChatGLM3 (4 layers, 4 query heads, 2 KV groups
# of 64 dims; the size the course trains in lesson 06) returns its KV cache with `use_cache=True`,
# and its tensors hold exactly `layers × 2 × groups × head_dim` numbers per token:

# %% tags=["nbval-check-output"]
small_config = ChatGLMConfig.course()  # the course model's sizes: 4 layers x 4 heads
generator = seed_everything(0)
model = ChatGLMForCausalLM(small_config).to(device).eval()
tokens_in = torch.randint(0, 4096, (1, 10), generator=generator).to(device)
with torch.no_grad():
    kv_cache = model(tokens_in, use_cache=True).kv_cache
cache_bytes = sum(k.nbytes + v.nbytes for k, v in kv_cache)  # fp32 here: 4 bytes a number
print("one layer's key cache:", list(kv_cache[0][0].shape), "= [batch, num_kv_groups, seq, head_dim]")
print(f"{cache_bytes:,} bytes for 10 tokens = {cache_bytes // 10:,} per token")
assert cache_bytes == 10 * kv_bytes_per_token(4, 2, 64, bytes_per_value=4)
chatglm3_layout = rearrange(kv_cache[0][0], "b g s d -> s b g d")  # how ChatGLM3's own code stores it
print("the same keys in ChatGLM3's layout:", list(chatglm3_layout.shape), "= [seq, batch, num_kv_groups, head_dim]")
assert list(chatglm3_layout.shape) == [10, 1, 2, 64]

# %% [markdown]
# ## 9. The fused `query_key_value` layout
#
# ChatGLM3 computes queries, keys and values with **one** linear layer, `query_key_value`
# (4096 → 4608, with a bias, the only bias in the model), and cuts its output along the last axis.
# 4608 = 32 × 128 + 2 × 2 × 128. The order is all query heads, then the key groups, then the
# value groups; it is not interleaved per group. A checkpoint only loads correctly with exactly
# this cut. The figure is drawn to scale from the cut that `split_qkv` makes:

# %% tags=["nbval-check-output"]
from glm3_teach.attention import split_qkv

H, G, D = cfg_6b.num_attention_heads, cfg_6b.num_kv_groups, cfg_6b.kv_channels
width = H * D + 2 * G * D
feature = torch.arange(width, dtype=torch.float32).expand(1, 1, width)  # each feature holds its own index
q_parts, k_parts, v_parts = split_qkv(feature, H, G, D)                 # [1, 32, 1, 128], [1, 2, 1, 128] x2
segments = ([("Q", h, int(q_parts[0, h, 0, 0])) for h in range(H)] + [("K", g, int(k_parts[0, g, 0, 0])) for g in range(G)]
            + [("V", g, int(v_parts[0, g, 0, 0])) for g in range(G)])
print(f"query_key_value output width {width} = {H}*{D} + 2*{G}*{D}")
print("Q head 0 starts at", segments[0][2], "| Q head 31 at", segments[31][2],
      "| K group 0 at", segments[32][2], "| K group 1 at", segments[33][2],
      "| V group 0 at", segments[34][2], "| V group 1 at", segments[35][2])
assert width == 4608 and [s[2] for s in segments] == list(range(0, width, D))
assert 2 * G * D == 512 and round(2 * G * D / width, 2) == 0.11  # keys + values: 11 % of the outputs


# %%
def draw_qkv_layout():
    fig, ax = plt.subplots(figsize=(12, 2.6))
    colours = {("Q", 0): "#9ecae1", ("Q", 1): "#fdae6b", ("K", 0): "#3182bd", ("K", 1): "#e6550d",
               ("V", 0): "#08519c", ("V", 1): "#a63603"}
    for kind, index, start in segments:
        group = index // (H // G) if kind == "Q" else index
        ax.add_patch(plt.Rectangle((start, 0), D, 1, facecolor=colours[kind, group], edgecolor="white", linewidth=0.6))
        if kind != "Q" or index in (0, 15, 16, 31):
            ax.text(start + D / 2, 0.5, f"{kind}{index}", ha="center", va="center", fontsize=7,
                    color="white" if kind != "Q" else "black")
    for label, lo, hi in [("查询 Q: 32 头 heads × 128 (组 group 0 ← 头 0-15, 组 1 ← 头 16-31)", 0, H * D),
                          ("键 K: 2 组", H * D, H * D + G * D), ("值 V: 2 组", H * D + G * D, width)]:
        ax.annotate("", xy=(lo, 1.15), xytext=(hi, 1.15), arrowprops=dict(arrowstyle="<->", color="#444444"))
        ax.text((lo + hi) / 2, 1.25, label, ha="center", va="bottom", fontsize=8)
        ax.text(lo, -0.12, str(lo), ha="center", va="top", fontsize=7)
    ax.text(width, -0.12, str(width), ha="center", va="top", fontsize=7)
    ax.set_xlim(-20, width + 20)
    ax.set_ylim(-0.5, 1.7)
    ax.axis("off")
    ax.set_title("query_key_value 输出的切分 (output of the fused projection, to scale, ChatGLM3-6B)")


draw_qkv_layout()
plt.show()


# %% [markdown]
# The keys and values are only 512 of the 4608 outputs (11 %): GQA also shrinks the projection.
#
# The whole layer as a flow of shapes, for the course model and (below each) ChatGLM3-6B. `b` is
# the batch, `s` the sequence: queries and keys take different paths until the scores meet them.

# %%
def draw_qkv_flow(course=small_config, big=cfg_6b):
    """Shapes through one attention layer: the course model's, with ChatGLM3-6B's below them."""
    def sizes(c):
        return dict(H=c.num_attention_heads, G=c.num_kv_groups, D=c.kv_channels, hidden=c.hidden_size,
                    qkv=(c.num_attention_heads + 2 * c.num_kv_groups) * c.kv_channels)
    small, large = sizes(course), sizes(big)
    steps = [  # (x, y, title, shape template, colour)
        (0.5, 9.0, "hidden_states 输入", "[b, s, {hidden}]", "#dddddd"),
        (0.5, 7.7, "query_key_value (Linear, bias)", "[b, s, {qkv}]", "#c6dbef"),
        (0.17, 6.2, "Q: split + RoPE", "[b, {H}, s, {D}]", "#9ecae1"),
        (0.5, 6.2, "K: split + RoPE", "[b, {G}, s, {D}]", "#fdae6b"),
        (0.83, 6.2, "V: split", "[b, {G}, s, {D}]", "#a1d99b"),
        (0.5, 4.8, "repeat_kv(K)", "[b, {H}, s, {D}]", "#fdd0a2"),
        (0.83, 4.8, "repeat_kv(V)", "[b, {H}, s, {D}]", "#c7e9c0"),
        (0.33, 3.5, "softmax(Q @ K.T / √head_dim + mask)", "[b, {H}, s, s]", "#dadaeb"),
        (0.58, 2.3, "probs @ V", "[b, {H}, s, {D}]", "#dadaeb"),
        (0.5, 1.1, "concatenate heads", "[b, s, {H}·{D}]", "#dddddd"),
        (0.5, -0.1, "dense (Linear) 输出", "[b, s, {hidden}]", "#c6dbef"),
    ]
    arrows = [(0, 1), (1, 2), (1, 3), (1, 4), (3, 5), (4, 6), (2, 7), (5, 7), (7, 8), (6, 8), (8, 9), (9, 10)]
    fig, ax = plt.subplots(figsize=(9, 7.6))
    for x, y, title, shape, colour in steps:
        text = f"{title}\n{shape.format(**small)}\n6B: {shape.format(**large)}"
        ax.text(x, y, text, ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round,pad=0.4", facecolor=colour, edgecolor="#555555"))
    for a, b in arrows:
        (xa, ya), (xb, yb) = steps[a][:2], steps[b][:2]
        ax.annotate("", xy=(xb, yb + 0.45), xytext=(xa, ya - 0.45), arrowprops=dict(arrowstyle="->", color="#555555"))
    ax.text(0.83, 3.4, "KV 缓存存在 repeat_kv 之前\nthe KV cache stores K and V\nbefore repeat_kv: [b, G, s, D]",
            ha="center", va="center", fontsize=8, color="#a63603")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.8, 9.7)
    ax.axis("off")
    ax.set_title("一层注意力中的形状 Q/K/V shapes through one attention layer\n"
                 f"course model ({small['H']} heads, {small['G']} KV groups), ChatGLM3-6B below each")
    return fig


draw_qkv_flow()
plt.show()

# %% [markdown]
# Now one whole attention layer of ChatGLM3, assembled by hand from this lesson's pieces and
# lesson 02's RoPE, and compared with the package's `SelfAttention` (the `self_attention` of the
# small model's first block):
# `query_key_value` → cut → RoPE on queries and keys → repeat the groups → attention → concatenate
# heads → `dense`.

# %% tags=["nbval-check-output"]
from glm3_teach.rope import apply_rotary_pos_emb, build_rope_cache

layer = model.transformer.encoder.layers[0].self_attention
generator = seed_everything(9)
x = torch.randn(2, 7, small_config.hidden_size, generator=generator).to(device)  # [b, s, hidden]
rope_cache = build_rope_cache(7, small_config.kv_channels // 2, device=device)    # [s, rotary_dim/2, 2]
with torch.no_grad():
    mixed = layer.query_key_value(x)                                              # [b, s, 4*64 + 2*2*64]
    q_size, kv_size = 4 * 64, 2 * 64
    q_h = rearrange(mixed[..., :q_size], "b s (h d) -> b h s d", d=64)            # [b, 4, s, 64]
    k_g = rearrange(mixed[..., q_size:q_size + kv_size], "b s (g d) -> b g s d", d=64)  # [b, 2, s, 64]
    v_g = rearrange(mixed[..., q_size + kv_size:], "b s (g d) -> b g s d", d=64)  # [b, 2, s, 64]
    q_h, k_g = apply_rotary_pos_emb(q_h, rope_cache), apply_rotary_pos_emb(k_g, rope_cache)
    out, _ = gqa_attention(q_h, k_g, v_g, causal_mask(7, device=device))          # [b, 4, s, 64]
    by_hand = layer.dense(rearrange(out, "b h s d -> b s (h d)"))                 # [b, s, hidden]
    packaged, _, _ = layer(x, rope_cache, is_causal=True)
torch.testing.assert_close(by_hand, packaged, rtol=0, atol=1e-5)
print("hand-assembled attention layer == glm3_teach SelfAttention:", list(by_hand.shape))

# %% [markdown]
# ## 10. PyTorch's fused attention
#
# The explicit version builds the whole `[batch, heads, q_len, k_len]` matrix of probabilities.
# For ChatGLM3-6B at 8192 tokens that is, per layer and per sequence, in fp32:

# %% tags=["nbval-check-output"]
score_bytes = 32 * 8192 * 8192 * 4
print(f"32 heads x 8192 x 8192 x 4 bytes = {score_bytes / 2**30:.0f} GiB for one layer's attention matrix")
assert score_bytes == 8 * 2**30

# %% [markdown]
# `torch.nn.functional.scaled_dot_product_attention` (SDPA) computes the same result with fused
# kernels (FlashAttention and memory-efficient attention on GPUs) that walk over the keys in
# blocks and never store the full matrix. It reads the mask the same way (True = may attend) and
# has a shortcut `is_causal=True`. ChatGLM3 calls it on PyTorch ≥ 2, and so does the package's
# `fused_attention` (the model's default path). In fp32 the two agree to within 1e-5:

# %% tags=["nbval-check-output"]
from glm3_teach.attention import fused_attention

generator = seed_everything(10)
q_sdpa, k_sdpa, v_sdpa = (t.to(device) for t in torch.randn(3, 2, 8, 64, 32, generator=generator).unbind(0))  # [2, 8, 64, 32]
mask_64 = causal_mask(64, device=device)
for name, kwargs, ours in [("no mask", {}, attention(q_sdpa, k_sdpa, v_sdpa)[0]),
                           ("causal mask", {"attn_mask": mask_64}, attention(q_sdpa, k_sdpa, v_sdpa, mask_64)[0]),
                           ("is_causal=True", {"is_causal": True}, attention(q_sdpa, k_sdpa, v_sdpa, mask_64)[0])]:
    sdpa = F.scaled_dot_product_attention(q_sdpa, k_sdpa, v_sdpa, **kwargs)
    gap = (ours - sdpa).abs().max().item()
    print(f"{name:<15} max |ours - SDPA| < 1e-5: {gap < 1e-5}")
    torch.testing.assert_close(ours, sdpa, rtol=0, atol=1e-5)
torch.testing.assert_close(fused_attention(q_sdpa, k_sdpa, v_sdpa, is_causal=True),
                           explicit_attention(q_sdpa, k_sdpa, v_sdpa, is_causal=True)[0], rtol=0, atol=1e-5)

# %% [markdown]
# How much faster depends on the machine (on a CPU with short sequences, little; on a GPU with long
# ones, a lot). Your numbers will differ:

# %% tags=["nbval-ignore-output"]
import time

generator = seed_everything(11)
q_long, k_long, v_long = (t.to(device) for t in torch.randn(3, 1, 8, 1024, 64, generator=generator).unbind(0))
for name, fn in [("explicit", lambda: explicit_attention(q_long, k_long, v_long, is_causal=True)),
                 ("fused (SDPA)", lambda: fused_attention(q_long, k_long, v_long, is_causal=True))]:
    fn()  # warm up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(5):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"{name:<13} {(time.perf_counter() - start) / 5 * 1000:.1f} ms per call (1 x 8 heads x 1024 tokens)")


# %% [markdown]
# The lessons use the explicit path when they want to *see* the probabilities and SDPA everywhere
# else. `output_attentions` is an argument of each forward call, not a config field:
# `model(input_ids, output_attentions=True)` runs that one call on the explicit path and returns
# the probabilities (section 12); the next call without it is fused again.
#
# ## 11. 掩码家族 BERT, GPT, GLM: three mask families, and where `[gMASK]` and `sop` come from
#
# The mask decides what a transformer can be trained to do.
# - **BERT** (bidirectional): every token sees every token. Good for understanding a text, but it
#   cannot generate left to right.
# - **GPT** (causal): each token sees only its past. It generates, but the prompt is also read
#   one-directionally.
# - **GLM** (General Language Model, the family ChatGLM comes from) trains with **autoregressive
#   blank infilling**. Spans of the text are cut out and replaced by a mask token; the corrupted
#   text is *part A*, seen bidirectionally. The missing spans are *part B*, generated token by
#   token after a start token `sop` (start of piece), each span ending with `eop` (end of piece).
#   Part A sees only part A; part B sees all of part A and its own past. `[MASK]` marks a short
#   blank, `[sMASK]` a sentence, and `[gMASK]` (generation) a long blank at the end of the text:
#   "continue from here", which is how GLM models generate.
#
# A prefix mask is "causal, plus every query sees the first `prefix_len` keys":

# %%
def glm_mask(seq_len, prefix_len):
    """True = may attend. Part A = the first prefix_len tokens (bidirectional); the rest causal."""
    i = torch.arange(seq_len)[:, None]  # query positions
    j = torch.arange(seq_len)[None, :]  # key positions
    return (j < prefix_len) | (j <= i)  # [seq_len, seq_len]


sentence = ["小猫", "喜欢", "喝", "绿茶", "。"]
bert_mask = torch.ones(5, 5, dtype=torch.bool)
gpt_mask = causal_mask(5)
glm_tokens = ["小猫", "喜欢", "[MASK]", "。", "sop", "喝", "绿茶"]  # part A: 4 tokens, part B: sop + the span
glm_blank = glm_mask(7, prefix_len=4)
chatglm3_tokens = ["[gMASK]", "sop", "小猫", "喜欢", "喝", "绿茶"]
chatglm3_mask = glm_mask(6, prefix_len=1)  # part A is [gMASK] alone
assert torch.equal(glm_mask(5, 5), bert_mask) and torch.equal(glm_mask(5, 0), gpt_mask)


# %%
def draw_mask_families():
    panels = [("BERT 双向 bidirectional", sentence, bert_mask, 0),
              ("GPT 因果 causal", sentence, gpt_mask, 0),
              ("GLM 空白填充 blank infilling", glm_tokens, glm_blank, 4),
              ("ChatGLM3 提示 prompt", chatglm3_tokens, chatglm3_mask, 1)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 4.2))
    for ax, (title, labels, allowed, prefix_len) in zip(axes, panels):
        ax.imshow(allowed.int(), cmap="Blues", vmin=-0.3, vmax=1.2)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=9)
        ax.set_yticks(range(len(labels)), labels, fontsize=9)
        if prefix_len:
            ax.axvline(prefix_len - 0.5, color="#d62728", linewidth=1.5)
            ax.axhline(prefix_len - 0.5, color="#d62728", linewidth=1.5)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("键 key")
    axes[0].set_ylabel("查询 query")
    fig.suptitle("深色 = 可以看见 (dark = may attend); 红线分开 A/B 部分 (red line: part A | part B)")
    fig.tight_layout()


draw_mask_families()
plt.show()

# %% [markdown]
# In the GLM panel, 喝 and 绿茶 (the cut-out span) are predicted from the whole corrupted
# sentence, including the 。 that comes *after* the blank, something a GPT mask cannot do;
# training targets would be 喝, 绿茶, `eop` for the inputs `sop`, 喝, 绿茶. (GLM also gave part-B
# tokens a second position id, the position inside the span; ChatGLM3 uses plain 1-D positions.)
#
# Now the ChatGLM3 panel. Every ChatGLM3 prompt begins `[gMASK] sop` (lesson 01): part A is the
# single `[gMASK]`, and everything from `sop` on is part B, generated left to right. A prefix of
# one token is no prefix at all: that mask *equals* the causal mask.

# %% tags=["nbval-check-output"]
print("GLM mask with part A = [gMASK] alone is the causal mask:", torch.equal(chatglm3_mask, causal_mask(6)))
assert torch.equal(chatglm3_mask, causal_mask(6))

# %% [markdown]
# And ChatGLM3 *is* used causally, prompt included. Its reference code builds a mask (`get_masks`)
# only when it is needed: when the batch has padding, or when several new tokens follow a cached
# past. Otherwise it passes no mask at all and lets SDPA apply `is_causal=True`, the fused kernels'
# fast path (and a single new token after a cache, with no padding, attends to everything: no mask,
# no `is_causal`). The package's model makes the same choice. Either way every query sees only its
# past: ChatGLM3 is a decoder-only model in practice, and the prompt is not read bidirectionally.
# `[gMASK]` and `sop` stay as the first two ids of every input because that is the format the model
# was trained with: drop them and the model sees inputs unlike its training data. The course
# tokenizer keeps the same nine special tokens in the same order, so prompts look the same.
#
# ## 12. 注意力图 Attention maps of a small model
#
# `model(input_ids, output_attentions=True)` returns every layer's probabilities,
# `[batch, num_heads, q_len, k_len]` per layer. `glm3_teach.viz.plot_attention_grid` draws them as
# a grid, layers down and heads across, labelled with the course tokenizer's tokens. The model here
# is the **untrained** small model from section 8 (random weights), so read its maps for their
# shape, not their content:

# %% tags=["nbval-check-output"]
from glm3_teach import viz

tokenizer = load_tokenizer()
text = "小猫喜欢喝绿茶。The cat likes tea."
ids = [tokenizer.special_id("[gMASK]"), tokenizer.special_id("sop")] + tokenizer.encode(text)
labels = [tokenizer.token_text(i) for i in ids]
print(len(ids), "tokens:", labels)
with torch.no_grad():
    attentions = model(torch.tensor([ids], device=device), output_attentions=True).attentions
print(len(attentions), "layers, each", list(attentions[0].shape), "= [batch, num_heads, q_len, k_len]")

# %%
fig = viz.plot_attention_grid(attentions, labels, title="未训练的小模型 untrained small model")
display(fig)

# %% [markdown]
# The upper triangle is empty (the causal mask) and every row spreads its weight almost evenly over
# the tokens it may see: row $i$ gives each of its $i+1$ keys about $1/(i+1)$. With random weights
# of scale 0.02 the queries and keys are small, the scores are close to 0, and softmax of equal
# scores is uniform. Measured:

# %% tags=["nbval-check-output"]
probs = torch.stack(attentions).cpu()                         # [layers, batch, heads, q, k]
n = len(ids)
uniform = causal_mask(n).float() / torch.arange(1, n + 1)[:, None]  # [q, k]: 1/(i+1) on allowed keys
gap = (probs - uniform).abs().max().item()
print(f"rows sum to 1: {torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)};  "
      f"future weight: {probs[..., ~causal_mask(n)].abs().max().item():.0f};  largest gap from uniform: {gap:.2f}")
assert gap < 0.1

# %% [markdown]
# That flat grid is the **before** picture. Lesson 06 trained this small model on the course corpus
# and saved it in `data/checkpoints/base` (it ships with the course). Its maps for the same
# sentence are the **after** picture:

# %%
from glm3_teach import load_pretrained
from glm3_teach.paths import data_dir

base_dir = data_dir() / "checkpoints" / "base"
assert (base_dir / "config.json").is_file(), f"{base_dir} is missing: lesson 06 trains it (or restore it with git)"
trained = load_pretrained(base_dir, dtype=torch.float32, device=device)
trained_tokenizer = load_tokenizer(base_dir)
trained_ids = trained_tokenizer.encode(text, add_special_tokens=True)  # [gMASK] sop + the sentence
with torch.no_grad():
    trained_attentions = trained(torch.tensor([trained_ids], device=device), output_attentions=True).attentions
trained_labels = [viz.visible_label(t) for t in viz.token_info(trained_tokenizer, trained_ids)[0]]
display(viz.plot_attention_grid(trained_attentions, trained_labels, title="训练后的小模型 trained small model (lesson 06)"))

# %% [markdown]
# Now the rows are not flat: bright single cells, whole bright columns, a bright band just below
# the diagonal. `viz.render_attention` draws one layer and head, and with `query=` one query's row
# as a bar chart (here the last token, "."), for layer 3, head 1:

# %%
fig = viz.render_attention(trained_attentions, trained_labels, layer=3, head=1, query=len(trained_ids) - 1)
display(fig)

# %% [markdown]
# ## 13. 注意力查看器 The attention viewer
#
# Reading 16 heatmaps cell by cell is slow. `viz.attention_view(model, tokenizer, text)` is a live
# view for JupyterLab (the first cell below; run it to get it):
# - **head view**: the queries on the left, the keys on the right, one line per weight, one colour
#   per head (click a head's chip, or pick it in the menu). Hover a token on the left to see only its
#   row, *what it reads*; hover one on the right for its column, *who reads it*; click to keep it.
# - **model view**: all layers x heads as small heatmaps; click one to open it in the head view.
# - a text box (any sentence; tick "chat format" for a ChatGLM3 chat prompt), a model menu (the
#   untrained model, `base`, and `chat` or an adapter once later lessons have made them), and
#   "hide [gMASK] sop": the first tokens soak up much of the weight (an *attention sink*), and
#   hiding them rescales each row over the other keys so the rest becomes visible.
# - the **pattern scores** of each head (explained next), in a table beside the lines.
#
# The probabilities are computed once per sentence and model; switching layer, head or token is
# drawn in the browser. Blanks show as `␣`, newlines as `\n`. A saved or exported copy of this
# notebook shows a static picture in place of the live view.

# %% tags=["nbval-ignore-output"]
view = viz.attention_view(trained, trained_tokenizer, text, name="base")
view

# %% [markdown]
# The same view can be written to **one HTML file** that opens in any browser without a kernel or
# the internet (scripts, styles, the Chinese font and the attentions are inside it): for slides
# or a handout. Here both models go in, so its model menu switches between them.

# %% tags=["nbval-ignore-output"]
import tempfile
from pathlib import Path

export_dir = Path(tempfile.mkdtemp())
html_path = viz.save_attention_html(trained, trained_tokenizer, text, export_dir / "attention_base.html", name="base",
                                    models={"untrained": (model, tokenizer)})
print(f"{html_path.name}: {html_path.stat().st_size / 1024:.0f} KiB, self-contained")

# %% [markdown]
# ## 14. 注意力头的模式 What the trained heads do: pattern scores
#
# A head is easier to name with a number. `viz.head_scores` measures, for every head, the weight
# it puts on one kind of key, averaged over the queries that have such a key:
#
# | score | the key | a head high on it |
# | --- | --- | --- |
# | `previous` | the token just before the query | a previous-token head |
# | `sink` | `[gMASK]` / `sop` (the first tokens) | a head resting on the sink |
# | `self` | the query itself | a self head |
# | `same_word` | earlier pieces of the query's own word (a run of Han characters, of letters) | a word-assembling head |
# | `punctuation` | punctuation seen so far, such as 。 | the 。 head |
#
# `viz.compute_attentions` returns the probabilities of the layers asked for, `[layers, heads,
# q_len, k_len]`, and `viz.token_info` each token's text and whether it is special.

# %% tags=["nbval-check-output"]
trained_attn, shown_layers = viz.compute_attentions(trained, trained_ids)   # [layers, heads, q, k]
token_texts, is_special = viz.token_info(trained_tokenizer, trained_ids)
pattern_scores = viz.head_scores(trained_attn, token_texts, is_special)     # {name: [layers, heads]}
untrained_attn, _ = viz.compute_attentions(model, ids)
untrained_scores = viz.head_scores(untrained_attn, *viz.token_info(tokenizer, ids))
print(f"{'score':<12} {'trained: layer x head':<36} untrained max")
for name in viz.SCORE_NAMES:
    rows = "  ".join(" ".join(f"{v:.2f}" for v in row) for row in pattern_scores[name].tolist())
    print(f"{name:<12} {rows}   {untrained_scores[name].max().item():.2f}")

# %% [markdown]
# Each row prints the four layers, four heads each. The untrained model's column is the chance
# level: with uniform rows a query at position $i$ gives every key $1/(i+1)$. The trained heads
# leave chance behind in two places. The strongest heads of each kind:

# %% tags=["nbval-check-output"]
for name in viz.SCORE_NAMES:
    print(f"{name:<12}", "  ".join(f"layer {l} head {h}: {v:.2f}" for l, h, v in viz.top_heads(pattern_scores, name, k=2)))
punct_layer, punct_head, punct_score = viz.top_heads(pattern_scores, "punctuation", k=1)[0]
assert (punct_layer, punct_head) == (3, 1) and punct_score > 0.8
assert untrained_scores["punctuation"].max() < 0.3

# %% [markdown]
# **The 。 head.** Layer 3, head 1 puts more than 80 % of each row's weight on punctuation once a
# query has passed one (chance here is below 30 %): after 。 every later token looks back at it,
# a vertical bright column in its heatmap. Punctuation marks the end of a clause, and knowing where
# the last clause ended helps predict what comes next. Is it this sentence only? A different
# sentence, with a ， as well:

# %% tags=["nbval-check-output"]
other_text = "我们去公园。天气很好，小狗跑得很快。"
other_ids = trained_tokenizer.encode(other_text, add_special_tokens=True)
other_attn, _ = viz.compute_attentions(trained, other_ids, layers=[3])   # only layer 3: [1, heads, q, k]
other_scores = viz.head_scores(other_attn, *viz.token_info(trained_tokenizer, other_ids))
print("layer 3 punctuation scores:", [round(v, 2) for v in other_scores["punctuation"][0].tolist()])
assert other_scores["punctuation"][0].argmax() == 1 and other_scores["punctuation"][0, 1] > 0.7

# %% [markdown]
# The same head wins again, above 70 %. (`layers=[3]` computed only that layer's
# probabilities: on ChatGLM3-6B, 28 layers x 32 heads, that is how the viewer stays within memory,
# `viz.attention_view(model, tokenizer, text, layers=[0, 13, 27])`.)
#
# **Same-word and previous-token heads.** Five heads of layers 1 and 2 score 0.38 or more on
# `same_word` where no untrained head reaches 0.27: they gather the earlier pieces of the word
# being read (` ca` for `t`, 小猫 for 喜欢 in one run of Han characters). A previous-token head
# copies what came just before; in this small model none is clean (in large models some score
# near 1.0), but a few reach about twice the untrained maximum, and exercise 4 finds them. In the
# view above, pick their layer and tick "hide [gMASK] sop" to see their lines.

# %% tags=["nbval-check-output"]
word_heads = (pattern_scores["same_word"] >= 0.38).nonzero().tolist()
print("same_word >= 0.38:", word_heads, f" untrained max {untrained_scores['same_word'].max().item():.2f}")
print(f"previous: trained max {pattern_scores['previous'].max().item():.2f}, untrained max {untrained_scores['previous'].max().item():.2f}")
assert len(word_heads) == 5 and all(layer in (1, 2) for layer, _ in word_heads)
assert untrained_scores["same_word"].max() < 0.27 and pattern_scores["previous"].max() > 1.8 * untrained_scores["previous"].max()


# %% [markdown]
# These scores describe *where* heads look, not *what* they compute: a head can rest on the sink
# simply to do nothing.

# %% [markdown]
# ## Exercises
#
# ### Exercise 1: the causal mask with a KV cache
# Write `my_causal_mask(q_len, k_len)`: a bool `[q_len, k_len]` tensor, True where query `i` may
# see key `j`. The `q_len` queries are the **last** `q_len` of the `k_len` positions (the first
# `k_len - q_len` keys are cached past tokens).

# %%
def my_causal_mask(q_len, k_len):
    raise NotImplementedError


# %% tags=["nbval-check-output"]
result = check("my_causal_mask", my_causal_mask, causal_mask, [(1, 1), (4, 4), (2, 5), (1, 6), (3, 8)],
               hint="query i sits at absolute position k_len - q_len + i and sees keys j <= that position")


# %% [markdown]
# ### Exercise 2: a log-softmax that never overflows
# Training (lesson 06) needs $\log \text{softmax}(x)_j = x_j - \log \sum_l e^{x_l}$. Write
# `stable_log_softmax(x)` over the last dim without ever computing `exp` of a large number (do not
# call `torch.log_softmax`, `torch.softmax` or `torch.logsumexp`). Masked entries of $-\infty$ must
# come out as $-\infty$.

# %%
def stable_log_softmax(x):
    raise NotImplementedError


# %% tags=["nbval-check-output"]
log_softmax_cases = [(torch.tensor([1000.0, 1001.0, 1002.0]),),
                     (torch.tensor([[-1000.0, -1001.0], [3.0, float("-inf")]]),),
                     (torch.randn(4, 7, generator=torch.Generator().manual_seed(3)) * 50,)]
result = check("stable_log_softmax", stable_log_softmax, lambda x: torch.log_softmax(x, dim=-1), log_softmax_cases,
               hint="subtract the row max m first: x - m - log(sum(exp(x - m)))")


# %% [markdown]
# ### Exercise 3: grouped-query attention without copying the keys and values
# `repeat_kv` materialises each group 16 times. Write `gqa_no_copy(q, k, v)` (causal, `q`
# `[b, heads, s, d]`, `k` and `v` `[b, groups, s, d]`) that never repeats `k` or `v`: view the query
# heads as `[b, groups, heads_per_group, s, d]` and let `k`, `v` broadcast as
# `[b, groups, 1, s, d]`. Return the output `[b, heads, s, d]`. The check compares the numbers
# *and* watches how they were made: it fails if any operation in your function writes `k` or `v`
# into new memory several times over (as `repeat_kv`, `repeat_interleave` or
# `expand(...).reshape(...)` do). Views such as `k[:, :, None]` cost nothing and are fine.

# %%
def gqa_no_copy(q, k, v):
    raise NotImplementedError


# %% tags=["nbval-check-output"]
from glm3_teach.checks import forbid_repeated_copies


def gqa_reference(q, k, v):
    n_rep = q.shape[1] // k.shape[1]
    return explicit_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=True)[0]


exercise_generator = torch.Generator().manual_seed(4)
gqa_cases = [(torch.randn(2, 4, 5, 8, generator=exercise_generator), *torch.randn(2, 2, 2, 5, 8, generator=exercise_generator)),
             (torch.randn(1, 8, 6, 4, generator=exercise_generator), *torch.randn(2, 1, 1, 6, 4, generator=exercise_generator)),
             (torch.randn(1, 3, 4, 4, generator=exercise_generator), *torch.randn(2, 1, 3, 4, 4, generator=exercise_generator))]
result = check("gqa_no_copy", forbid_repeated_copies(gqa_no_copy, "k", "v"), gqa_reference, gqa_cases,
               hint="rearrange(q, 'b (g r) s d -> b g r s d', g=groups); k[:, :, None]; causal mask on the last two dims")


# %% [markdown]
# ### Exercise 4: find the previous-token heads
# Write `previous_token_scores(attn)`: for `attn [layers, heads, seq, seq]` (one sentence, no
# prefix), the mean over the queries $i \ge 1$ of `attn[..., i, i - 1]`, a `[layers, heads]`
# tensor. Then use it on `trained_attn` and set `previous_layers` to the sorted list of the layers
# that hold a head scoring above 0.3.

# %%
def previous_token_scores(attn):
    raise NotImplementedError


previous_layers = None  # e.g. [0, 2]

# %% tags=["nbval-check-output"]
previous_cases = [(trained_attn,), (untrained_attn,), (torch.softmax(torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(5))
                                                                     .masked_fill(~causal_mask(6), float("-inf")), dim=-1),)]
result = check("previous_token_scores", previous_token_scores,
               lambda attn: viz.head_scores(attn, ["x"] * attn.shape[-1])["previous"], previous_cases,
               hint="rows = torch.arange(1, seq); attn[..., rows, rows - 1].mean(-1)")
result = check_value("layers with a previous-token head", previous_layers,
                     sorted({layer for layer, _ in (pattern_scores["previous"] > 0.3).nonzero().tolist()}),
                     hint="(previous_token_scores(trained_attn) > 0.3).nonzero() gives (layer, head) pairs")

# %% [markdown]
# ### Exercise 5 (stretch): ChatGLM3's attention layer, loadable from a checkpoint
# Write `build_self_attention(config)`, returning an `nn.Module` (a class of your own) with
# ChatGLM3's two parameters, `query_key_value` and `dense` (mind which one has a bias), that,
# called as `layer(hidden_states, rope_cache)` with `hidden_states [b, s, hidden_size]` and
# `rope_cache [b, s, rotary_dim // 2, 2]`, returns the causal attention output `[b, s, hidden_size]`.
# Use `split_qkv`, `apply_rotary_pos_emb` and `repeat_kv` (or your `gqa_no_copy`). The check builds
# your layer, loads the `state_dict` of the package's `SelfAttention` into it with `strict=True`
# (so every name and shape must be ChatGLM3's), and compares outputs on the course config and on
# a config with 8 query heads in 2 KV groups. (Calling the package's `SelfAttention` from your layer
# fails the check: the exercise is to write it.)

# %%
from torch import nn  # noqa: F401 (for your class)


def build_self_attention(config):
    """An ``nn.Module`` with ``query_key_value`` and ``dense``: ``[b, s, hidden], rope -> [b, s, hidden]``, causal."""
    raise NotImplementedError


# %% tags=["nbval-check-output"]
from glm3_teach.attention import SelfAttention
from glm3_teach.checks import Case, forbid_modules

generator = seed_everything(12)
layer_configs = {"course": small_config, "8 heads, 2 groups": ChatGLMConfig.course(num_attention_heads=8, kv_channels=32)}
package_layers = {name: SelfAttention(c).eval() for name, c in layer_configs.items()}
for layer in package_layers.values():  # random weights and bias, so a missing bias shows
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


def rope_rows(name, hidden_states):
    """The rope cache of positions 0 .. s-1 for every row: [b, s, rotary_dim // 2, 2]."""
    batch, seq = hidden_states.shape[:2]
    return build_rope_cache(seq, layer_configs[name].kv_channels // 2)[None].expand(batch, -1, -1, -1)


def package_output(name, hidden_states):
    return package_layers[name](hidden_states, rope_rows(name, hidden_states), is_causal=True)[0]


def built_output(build, name, hidden_states):
    """Build a layer with ``build``, load the package layer's weights into it (strict), run it."""
    layer = build(layer_configs[name])
    layer.load_state_dict(package_layers[name].state_dict(), strict=True)
    return layer.eval()(hidden_states, rope_rows(name, hidden_states))


layer_cases = [Case(args=(name, torch.randn(batch, seq, layer_configs[name].hidden_size, generator=generator)), label=label)
               for name, batch, seq, label in [("course", 2, 7, "course config"), ("8 heads, 2 groups", 1, 5, "4 heads per group")]]
with torch.no_grad():
    result = check("build_self_attention",  # calling the package's SelfAttention inside is refused
                   forbid_modules(lambda name, x: built_output(build_self_attention, name, x), SelfAttention), package_output,
                   layer_cases, atol=1e-5, rtol=1e-4,
                   hint="query_key_value = nn.Linear(hidden, (heads + 2 * groups) * head_dim, bias=True); dense has no "
                        "bias; RoPE goes on q and k, never on v; a causal mask (or is_causal=True) before the softmax")


# %% [markdown]
# ### Exercise 6 (stretch): online softmax, one block of keys at a time
# FlashAttention never stores a query's whole row of scores: it reads the keys in blocks and keeps,
# per query, a running maximum `m`, a running sum `l` of `exp(score - m)` and a running weighted sum
# `acc` of the values. When a new block raises the maximum from `m` to `m_new`, everything kept so
# far is rescaled by `exp(m - m_new)` (section 3's identity: shifting every score by a constant does
# not change softmax). At the end the output is `acc / l`. Write `blockwise_attention(q, k, v,
# block_size)` for `q [b, h, q_len, d]` and `k`, `v` `[b, h, k_len, d]`, where every query sees every
# key (a decoding step reading its cache). The check compares with `explicit_attention` and fails
# if any operation makes a tensor as long as all the keys (such as the full `[q_len, k_len]` scores).

# %%
def blockwise_attention(q, k, v, block_size):
    raise NotImplementedError


# %% tags=["nbval-check-output"]
from glm3_teach.checks import forbid_whole_axis

generator = seed_everything(13)
block_cases = [Case(args=(torch.randn(1, 2, 3, 8, generator=generator), torch.randn(1, 2, 23, 8, generator=generator),
                          torch.randn(1, 2, 23, 8, generator=generator), 5), label="23 keys in blocks of 5"),
               Case(args=(30 * torch.randn(2, 1, 2, 4, generator=generator), torch.randn(2, 1, 17, 4, generator=generator),
                          torch.randn(2, 1, 17, 4, generator=generator), 4), label="large scores: exp would overflow")]
result = check("blockwise_attention", forbid_whole_axis(blockwise_attention, "k", -2),
               lambda q, k, v, block_size: explicit_attention(q, k, v)[0], block_cases, atol=1e-5, rtol=1e-4,
               hint="for each block: s = q @ kb.T / sqrt(d); m_new = max(m, s.amax(-1)); scale = exp(m - m_new); "
                    "l = l * scale + exp(s - m_new).sum(-1); acc = acc * scale + exp(s - m_new) @ vb; start m at -inf")

# %% [markdown]
# Solutions are in `notebooks/solutions/03_attention_solutions.ipynb`; try first.
#
# ## Summary
# - Attention scores are dot products of queries with keys; softmax turns them into weights; the
#   output is the weighted average of the values.
# - For unit-variance entries $\operatorname{Var}(q \cdot k) = d$ (measured within 10 %), so scores are
#   divided by $\sqrt{d}$; unscaled, softmax saturates (88 % on one of 16 keys at d = 128) and
#   its gradient vanishes.
# - Softmax subtracts the row max before `exp`: nothing overflows, masked $-\infty$ entries give 0.
# - The causal mask lets query $i$ see keys $j \le i$; with a KV cache the queries are the last
#   positions; pad rows are opened to avoid NaN. This course's masks say True = may attend,
#   ChatGLM3's `get_masks` says True = masked.
# - Multi-head attention runs attention per `head_dim` slice; ChatGLM3's **GQA** lets 16 query heads
#   share each of 2 KV groups (head $h$ reads group $h /\!/ 16$), cutting the bf16 KV cache of the 6B
#   model from 448 KiB to 28 KiB per token (3.5 GiB to 224 MiB at 8192 tokens).
# - `query_key_value` outputs `[Q heads 0-31 | K groups 0-1 | V groups 0-1]` = 4096 + 256 + 256.
# - The explicit path equals PyTorch's SDPA within 1e-5 in fp32; SDPA avoids storing the
#   attention matrix (8 GiB per layer for the 6B model at 8192 tokens).
# - BERT sees everything, GPT only the past, GLM a bidirectional part A and a causal part B after
#   `sop`. With `[gMASK]` as the whole part A, GLM's mask is the causal mask, and ChatGLM3 runs
#   causally; `[gMASK] sop` remain as the prompt's fixed start.
# - Training turns the flat maps into patterns. The viewer (`viz.attention_view`, or one offline
#   HTML file with `viz.save_attention_html`) shows them live, and `viz.head_scores` names them:
#   in the base model layer 3 head 1 is a 。 head (over 0.8 on punctuation, on a new sentence too),
#   layers 1 and 2 hold same-word heads, layer 3 a weak previous-token head.
#
# From now on the course uses `glm3_teach.attention` (`SelfAttention`, `explicit_attention`,
# `fused_attention`, `causal_mask`, `repeat_kv`, `split_qkv`) and `glm3_teach.viz` for maps and the viewer.
# Next: **04 · 前馈网络与归一化 FFN, RMSNorm, the GLM block**.
