# %% [markdown]
# # 02 · 词嵌入与旋转位置编码 Embeddings and RoPE: solutions
#
# Worked answers to the exercises of lesson 02. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import torch

from glm3_teach import check, seed_everything
from glm3_teach.checks import Case
from glm3_teach.rope import apply_rotary_pos_emb, build_rope_cache

# %% [markdown]
# ## Exercise 1: load a half-split checkpoint into ChatGLM's RoPE
# Section 6 showed `half_split_rope(x[..., order]) == apply_rotary_pos_emb(x)[..., order]` with
# `order = [0, 2, 4, ..., 1, 3, 5, ..., rotary_dim, ..., head_dim - 1]`. The old model's query is
# `q_old`; choose the new one so that `q_new[..., order] = q_old`, i.e. `q_new = q_old[..., order.argsort()]`.
# Then `apply_rotary_pos_emb(q_new)[..., order] = half_split_rope(q_old)`, and a dot product does not
# change when both vectors are reordered the same way, so every score is the same. Reordering the
# outputs of a linear layer is reordering the rows of its weight (and its bias), inside each head;
# the unrotated dims keep their place. Hugging Face's `permute` in its LLaMA conversion goes the
# other way (interleaved to half-split: `w.view(heads, head_dim // 2, 2, hidden).transpose(1, 2)`),
# and the function below undoes it.

# %% tags=["nbval-check-output"]
from einops import rearrange


def half_split_to_interleaved(weight, head_dim, rotary_dim):
    order = torch.tensor(list(range(0, rotary_dim, 2)) + list(range(1, rotary_dim, 2)) + list(range(rotary_dim, head_dim)))
    rows = rearrange(weight, "(h d) i -> h d i", d=head_dim)          # [heads, head_dim, hidden]
    return rearrange(rows[:, order.argsort()], "h d i -> (h d) i")     # the same rows, reordered in every head


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def half_split_rope(x, rope_cache):
    """The lesson's half-split pairing (i, i + rotary_dim/2); x: [batch, heads, seq, head_dim]."""
    rotary_dim = 2 * rope_cache.shape[-2]
    cos, sin = (rope_cache[..., j].repeat(1, 2).to(x.dtype) for j in (0, 1))
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    return torch.cat([x_rot * cos + rotate_half(x_rot) * sin, x_pass], dim=-1)


def scores_with(rope_fn, w_q, w_k, x, head_dim, rotary_dim):
    cache = build_rope_cache(x.shape[0], rotary_dim)
    q = rope_fn(rearrange(x @ w_q.T, "s (h d) -> 1 h s d", d=head_dim), cache)
    k = rope_fn(rearrange(x @ w_k.T, "s (h d) -> 1 h s d", d=head_dim), cache)
    return (q @ k.transpose(-2, -1))[0]


def converted_scores(convert, w_q, w_k, x, head_dim, rotary_dim):
    """The scores of interleaved RoPE after ``convert`` reordered the rows of w_q and w_k."""
    w_q, w_k = convert(w_q, head_dim, rotary_dim), convert(w_k, head_dim, rotary_dim)
    return scores_with(apply_rotary_pos_emb, w_q, w_k, x, head_dim, rotary_dim)


def conversion_case(heads, head_dim, rotary_dim, hidden, seq, label):
    w_q, w_k = (torch.randn(heads * head_dim, hidden, generator=generator) / hidden ** 0.5 for _ in range(2))
    return Case(args=(w_q, w_k, torch.randn(seq, hidden, generator=generator), head_dim, rotary_dim), label=label)


generator = seed_everything(21)
conversion_cases = [conversion_case(3, 8, 8, 12, 5, "3 heads of 8 dims, all rotated"),
                    conversion_case(2, 64, 32, 32, 9, "course heads: 32 of 64 dims rotated"),
                    conversion_case(1, 128, 64, 48, 7, "a ChatGLM3-6B head: 64 of 128 rotated")]
assert check("half_split_to_interleaved", lambda *case: converted_scores(half_split_to_interleaved, *case),
             lambda w_q, w_k, x, head_dim, rotary_dim: scores_with(half_split_rope, w_q, w_k, x, head_dim, rotary_dim),
             conversion_cases)

# %% [markdown]
# Two tempting wrong answers fail the same check: leaving the rows as they are, and reordering them
# by `order` itself instead of its inverse (the two differ once `rotary_dim` is 8 or more).

# %%
for name, wrong in [("unchanged rows", lambda w, head_dim, rotary_dim: w),
                    ("order instead of its inverse", lambda w, head_dim, rotary_dim: rearrange(
                        rearrange(w, "(h d) i -> h d i", d=head_dim)[:, list(range(0, rotary_dim, 2)) + list(range(1, rotary_dim, 2))
                                                                    + list(range(rotary_dim, head_dim))], "h d i -> (h d) i"))]:
    assert not check(name, lambda *case: converted_scores(wrong, *case),
                     lambda w_q, w_k, x, head_dim, rotary_dim: scores_with(half_split_rope, w_q, w_k, x, head_dim, rotary_dim),
                     conversion_cases)
hf_permute = lambda w, heads: w.view(heads, 4, 2, -1).transpose(1, 2).reshape(w.shape)  # noqa: E731  (head_dim 8)
w = torch.randn(3 * 8, 12, generator=generator)
assert torch.equal(half_split_to_interleaved(hf_permute(w, 3), 8, 8), w)
print("half_split_to_interleaved undoes Hugging Face's permute:", True)


# %% [markdown]
# ## Exercise 2: rotate interleaved pairs without a matrix
# Split the even and odd dims (the two members of every pair), apply the 2-D rotation formula to all
# pairs at once, then interleave the results again: stacking on a new last axis gives
# `[seq, pairs, 2]`, and flattening the last two axes puts `out[2i]` and `out[2i+1]` side by side.

# %% tags=["nbval-check-output"]
def rotate_pairs(x, cos, sin):
    even, odd = x[..., 0::2], x[..., 1::2]                                   # x[2i], x[2i+1]: [seq, pairs]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)  # [seq, pairs, 2]
    return rotated.flatten(-2)                                               # [seq, rotary_dim]


generator = seed_everything(22)
cache_5 = build_rope_cache(5, 8)
cache_7 = build_rope_cache(7, 32)
assert check("rotate_pairs", rotate_pairs,
             lambda x, cos, sin: apply_rotary_pos_emb(x[None, None], torch.stack([cos, sin], dim=-1))[0, 0],
             [(torch.arange(1.0, 9.0).repeat(5, 1), cache_5[..., 0], cache_5[..., 1]),
              (torch.randn(7, 32, generator=generator), cache_7[..., 0], cache_7[..., 1])])


# %% [markdown]
# ## Exercise 3: the rope cache for any positions
# The angle of a token is its position times `θ_i`; computing it from `position_ids` directly gives
# the same numbers as building the cache for `0 .. max` and indexing it, without the unused rows.
# Keep fp32: the reference (and ChatGLM3) compute the angles in fp32. Near position 8191 consecutive
# fp32 numbers are 2⁻¹¹ ≈ 5e-4 apart, so an fp64 version differs from the reference by up to about
# 2e-4 there (the check allows 2e-3).

# %% tags=["nbval-check-output"]
def rope_cache_at(position_ids, rotary_dim, rope_ratio=1.0):
    i = torch.arange(rotary_dim // 2, dtype=torch.float32)
    theta = 1.0 / (10000.0 * rope_ratio) ** (2 * i / rotary_dim)          # [pairs]
    angles = position_ids[..., None].float() * theta                      # [batch, seq, pairs]
    return torch.stack([angles.cos(), angles.sin()], dim=-1)              # [batch, seq, pairs, 2]


assert check("rope_cache_at", rope_cache_at,
             lambda position_ids, rotary_dim, rope_ratio=1.0:
             build_rope_cache(int(position_ids.max()) + 1, rotary_dim, rope_ratio)[position_ids],
             [(torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]), 8), (torch.tensor([[5, 6, 7]]), 32, 50.0),
              (torch.tensor([[8000, 8191]]), 64)],
             atol=2e-3)
