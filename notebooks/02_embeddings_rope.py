# %% [markdown]
# # 02 · 词嵌入与旋转位置编码 Embeddings and RoPE
#
# Lesson 01 turned text into integer ids. This lesson turns ids into vectors the model can compute
# with (the **embedding**), shows that attention on its own cannot tell "小猫喜欢小狗" from
# "小狗喜欢小猫", and then builds the fix ChatGLM3 uses: the **rotary position embedding (RoPE)**,
# in ChatGLM's own variant, which rotates only half of each head in interleaved pairs.
#
# **You will learn**
# - why an embedding layer is a lookup table, and why that equals multiplying a one-hot vector by a matrix;
# - why attention is blind to word order, shown with numbers;
# - RoPE as rotations of 2-D pairs (and as multiplication by `e^{imθ}`), and why the score `q·k` then
#   depends only on the distance `m - n`;
# - ChatGLM3's variant (first half of each head, adjacent pairs `(0,1), (2,3), ...`, as in Meta's LLaMA)
#   next to the half-split `rotate_half` form of GPT-NeoX and Hugging Face's LLaMA port: different
#   outputs, same relative-position property, related by a reordering of dims (exercise 1 converts
#   a checkpoint from one to the other);
# - the frequency and wavelength of every pair, for ChatGLM3-6B (`head_dim` 128) and for the course model (64);
# - what `rope_ratio` does for long contexts, and why the cos/sin cache is computed in fp32.

# %% [markdown]
# ## 1. Setup
#
# The device line differs from machine to machine. The small demos
# of this lesson run on the CPU (they are tiny); the model at the end runs on `device`.

# %% tags=["nbval-ignore-output"]
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from einops import rearrange

from glm3_teach import ChatGLMConfig, ChatGLMForCausalLM, check, load_tokenizer, pick_device, seed_everything
from glm3_teach.fonts import use_cjk_font

device = pick_device()
seed_everything(0)  # and each experiment below draws from its own generator, so rerunning a cell changes nothing else
use_cjk_font()
print("device:", device)

# %% [markdown]
# The course model's sizes (the `[model]` of `configs/base.toml`, which lesson 06 trains) next to ChatGLM3-6B's. `head_dim` is `kv_channels` in
# ChatGLM's config; RoPE rotates `rotary_dim = head_dim // 2` of its dims. (A naming trap when you
# read the real code: its variable `rotary_dim` holds the whole head, 128, and it builds
# `RotaryEmbedding(rotary_dim // 2)`, passing 64. This course calls the rotated part `rotary_dim`.)

# %% tags=["nbval-check-output"]
tok = load_tokenizer()
COURSE = ChatGLMConfig.course()  # the course model's sizes (lesson 05 goes through every field)
assert COURSE.padded_vocab_size == tok.vocab_size
GLM3_6B = ChatGLMConfig.chatglm3_6b()
for name, c in [("course", COURSE), ("chatglm3-6b", GLM3_6B)]:
    print(f"{name:>12}: vocab {c.padded_vocab_size:>6}, hidden_size {c.hidden_size:>5}, head_dim {c.kv_channels:>4}, "
          f"rotary_dim {c.kv_channels // 2:>3}, seq_length {c.seq_length:>5}")

# %% [markdown]
# ## 2. An embedding is a lookup table
#
# The model's first layer, `word_embeddings`, is a matrix `W` of shape `[padded_vocab_size, hidden_size]`:
# one row of `hidden_size` learned numbers per token id. Embedding a token means *reading its row*.
# Here are a Chinese and an English sentence through the course tokenizer:

# %% tags=["nbval-check-output"]
sentences = ["我喜欢喝茶。", "I like tea."]
for text in sentences:
    ids = tok.encode(text)
    print(f"{text!r:>14} -> ids {ids} = {[tok.token_text(i) for i in ids]}")

# %% [markdown]
# An `nn.Embedding` with the course sizes (4096 ids, `hidden_size` 256) turns 5 ids into 5 rows:

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
embedding = nn.Embedding(COURSE.padded_vocab_size, COURSE.hidden_size)  # W: [vocab, hidden_size]
input_ids = torch.tensor([tok.encode("我喜欢喝茶。")])                     # [batch=1, seq=5]
hidden = embedding(input_ids)                                            # [batch=1, seq=5, hidden_size=256]
print("input_ids", list(input_ids.shape), "-> hidden", list(hidden.shape))
tea_id = input_ids[0, 3].item()                                          # the id of 茶
assert tok.decode([tea_id]) == "茶" and torch.equal(hidden[0, 3], embedding.weight[tea_id])  # its row of W
print(f"row of 茶 (id {tea_id}), first 4 of 256 numbers:", embedding.weight[tea_id, :4].detach().numpy().round(4))

# %% [markdown]
# Why is a lookup a legitimate *layer*? Write token `t` as a **one-hot** vector (4096 zeros with a 1 at
# position `t`); multiplying it by `W` picks out row `t`. So the embedding is a linear layer applied to
# one-hot inputs, and a lookup is just the fast way to compute it:

# %% tags=["nbval-check-output"]
one_hot = F.one_hot(input_ids, COURSE.padded_vocab_size).float()  # [1, 5, 4096]
product = one_hot @ embedding.weight                               # [1, 5, 4096] @ [4096, 256] -> [1, 5, 256]
print("one-hot @ W equals the lookup exactly:", torch.equal(product, hidden))
assert torch.equal(product, hidden)
for name, c in [("course", COURSE), ("chatglm3-6b", GLM3_6B)]:
    print(f"{name:>12}: the matrix product costs {c.padded_vocab_size * c.hidden_size:>11,} multiply-adds per token; "
          f"the lookup copies {c.hidden_size} numbers")

# %% [markdown]
# The one-hot view also explains training: the gradient of `W` is `one_hotᵀ @ grad`, so only the rows
# of tokens that occur in the batch receive a gradient. A token the corpus never shows gets no
# gradient from the loss, so it never learns anything (one reason lesson 01 kept the vocabulary
# small). Its row does not keep its random values, though: lesson 06 trains with AdamW, whose weight
# decay shrinks every decayed row a little at every step, seen or not.

# %% tags=["nbval-check-output"]
embedding.zero_grad()
embedding(input_ids).sum().backward()
rows_with_gradient = embedding.weight.grad.abs().sum(dim=1).nonzero().flatten().tolist()
print("rows with a gradient:", rows_with_gradient, "| ids in the batch:", sorted(set(input_ids[0].tolist())))
assert rows_with_gradient == sorted(set(input_ids[0].tolist()))

# %% tags=["nbval-check-output"]
table_demo = torch.nn.Embedding(4, 3)
start_norms = table_demo.weight.detach().norm(dim=1).clone()
optimizer = torch.optim.AdamW(table_demo.parameters(), lr=1e-2, weight_decay=0.1)
for _ in range(100):                              # only token 0 is ever seen
    optimizer.zero_grad()
    table_demo(torch.tensor([0])).sum().backward()
    optimizer.step()
unseen_ratio = (table_demo.weight.detach().norm(dim=1) / start_norms)[1:]
print("after 100 AdamW steps, the unseen rows kept", [round(r, 3) for r in unseen_ratio.tolist()], "of their norm")
torch.testing.assert_close(unseen_ratio, torch.full((3,), (1 - 1e-2 * 0.1) ** 100), rtol=1e-5, atol=1e-6)

# %% [markdown]
# The package's `Embedding` (the module `transformer.embedding` of the model) is exactly this lookup: no
# scaling, no position embedding, no norm. With the same weights it gives the same numbers:

# %%
from glm3_teach.model import Embedding

package_embedding = Embedding(COURSE)
package_embedding.word_embeddings.weight.data.copy_(embedding.weight.data)
torch.testing.assert_close(package_embedding(input_ids), hidden, rtol=0, atol=0)

# %% [markdown]
# One thing a lookup cannot do: know *where* a token is. In "小猫喜欢小狗，小狗喜欢小猫。" the token
# 小猫 appears first and last; both get the very same vector.

# %% tags=["nbval-check-output"]
ids = tok.encode("小猫喜欢小狗，小狗喜欢小猫。")
print([tok.token_text(i) for i in ids])
rows = embedding(torch.tensor(ids))  # [seq=8, hidden_size]
print("positions 0 and 6 (both 小猫) get identical vectors:", torch.equal(rows[0], rows[6]))
assert ids[0] == ids[6] and torch.equal(rows[0], rows[6])


# %% [markdown]
# ## 3. Attention is blind to word order
#
# Lesson 03 derives attention properly; here a single head is enough to see the problem. Each token's
# vector `x` becomes a query `q = x W_q`, a key `k = x W_k` and a value `v = x W_v`; token `m`'s output
# is an average of all values, weighted by `softmax(q_m · k_n / √head_dim)` over the tokens `n`.

# %%
def attention(x, w_q, w_k, w_v, causal=False):
    """One head. x: [seq, hidden_size]; w_*: [hidden_size, head_dim] -> [seq, head_dim]."""
    q, k, v = x @ w_q, x @ w_k, x @ w_v                      # [seq, head_dim] each
    scores = q @ k.T / math.sqrt(q.shape[-1])                # [seq, seq]: scores[m, n] = q_m · k_n / √d
    if causal:                                               # token m may only look at n <= m
        future = torch.ones_like(scores, dtype=torch.bool).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v                 # [seq, head_dim]


# %% [markdown]
# Two sentences with the same tokens in a different order, and different meanings:

# %% tags=["nbval-check-output"]
sentence_a, sentence_b = "小猫喜欢小狗。", "小狗喜欢小猫。"
ids_a, ids_b = tok.encode(sentence_a), tok.encode(sentence_b)
print(sentence_a, [tok.token_text(i) for i in ids_a])
print(sentence_b, [tok.token_text(i) for i in ids_b])
perm = [ids_a.index(i) for i in ids_b]  # sentence B is sentence A's tokens in the order perm
print("B = A reordered by", perm)
assert [ids_a[p] for p in perm] == ids_b

# %% [markdown]
# Random (untrained) projections, in float64 so the printed digits are the same on every machine.
# Without a mask every token sees every other: reordering the input only reorders the outputs. Each
# token gets the same vector whatever the word order:

# %% tags=["nbval-check-output"]
HEAD_DIM = COURSE.kv_channels
generator = seed_everything(3)
w_q, w_k, w_v = (torch.randn(COURSE.hidden_size, HEAD_DIM, generator=generator, dtype=torch.float64) / 16
                 for _ in range(3))
table = embedding.weight.detach().double()  # the embedding rows, [vocab, hidden_size]
x_a, x_b = table[ids_a], table[ids_b]       # [4, hidden_size] each
out_a, out_b = attention(x_a, w_q, w_k, w_v), attention(x_b, w_q, w_k, w_v)
print("小猫's output in A:", out_a[0, :4].numpy().round(3))
print("小猫's output in B:", out_b[2, :4].numpy().round(3))
torch.testing.assert_close(out_b, out_a[perm])  # the same set of outputs, reordered

# %% [markdown]
# A language model uses a **causal** mask (token `m` sees tokens `0..m`), which gives it *some* order:
# the first token sees only itself. But the last token, the one that predicts what comes next, sees
# the same *set* of tokens in both sentences, so its output is identical. With a single attention
# layer and no positions, a model would continue "小猫喜欢小狗。" and "小狗喜欢小猫。" in exactly the
# same way.

# %% tags=["nbval-check-output"]
last_a = attention(x_a, w_q, w_k, w_v, causal=True)[-1]
last_b = attention(x_b, w_q, w_k, w_v, causal=True)[-1]
print("last token (。) in A:", last_a[:4].numpy().round(3))
print("last token (。) in B:", last_b[:4].numpy().round(3))
torch.testing.assert_close(last_a, last_b)

# %% [markdown]
# That holds for one layer only. The tokens *before* the last one see different prefixes in the two
# sentences (小猫 first sees only itself, in B it sees 小狗喜欢 before it), so their outputs differ,
# and a second layer's last token reads those outputs. From layer 2 on, the causal mask by itself
# leaks word order, even without positions:

# %% tags=["nbval-check-output"]
layer2_generator = torch.Generator().manual_seed(1)
w_q2, w_k2, w_v2 = (torch.randn(HEAD_DIM, HEAD_DIM, generator=layer2_generator, dtype=torch.float64) / 8
                    for _ in range(3))                 # a second layer: [head_dim, head_dim] each
two_a = attention(attention(x_a, w_q, w_k, w_v, causal=True), w_q2, w_k2, w_v2, causal=True)[-1]
two_b = attention(attention(x_b, w_q, w_k, w_v, causal=True), w_q2, w_k2, w_v2, causal=True)[-1]
leak = (two_a - two_b).abs().max().item()
print(f"two causal layers, no positions: the last token's outputs differ by up to {leak:.2e}")
assert leak > 1e-6


# %% [markdown]
# The original Transformer added a vector per *absolute* position to the embedding. What matters for
# language, though, is mostly *relative* position ("the word two before me"). RoPE builds that in.
#
# ## 4. RoPE in two dimensions: positions as rotations
#
# Take a 2-D query `q` and key `k`. At position `m`, rotate `q` by the angle `m·θ`; at position `n`,
# rotate `k` by `n·θ`. A rotation by angle `a` is the matrix `R(a) = [[cos a, -sin a], [sin a, cos a]]`,
# so a pair `(x0, x1)` becomes `(x0·cos a - x1·sin a, x1·cos a + x0·sin a)`. Rotations compose by adding
# angles and `R(a)ᵀ = R(-a)`, hence
#
# $$ (R(m\theta)\,q) \cdot (R(n\theta)\,k) = q^\top R(m\theta)^\top R(n\theta)\, k = q^\top R((n-m)\theta)\, k ,$$
#
# a number that depends on the two positions only through their difference. Check with numbers:

# %% tags=["nbval-check-output"]
def rotation_2d(angle):
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


q2, k2, theta = torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor([0.3, -1.0], dtype=torch.float64), 0.5
for m, n in [(0, 0), (3, 3), (7, 7), (2, 0), (5, 3), (9, 7), (0, 4), (6, 10)]:
    score = (rotation_2d(m * theta) @ q2) @ (rotation_2d(n * theta) @ k2)
    print(f"m={m}, n={n}, m-n={m - n:>2}: q·k = {score.item():+.4f}")
    assert math.isclose(score.item(), (q2 @ rotation_2d((n - m) * theta) @ k2).item(), abs_tol=1e-12)


# %% [markdown]
# The picture of that check: for three pairs of positions at the same distance `m - n = 2`, the
# query and the key have turned by different amounts, but by the same *difference*, so the angle
# between them, and with it their dot product, is the same in every panel.

# %%
def draw_rotating_together():
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.9))
    for ax, (m, n) in zip(axes, [(2, 0), (5, 3), (9, 7)]):
        rq, rk = rotation_2d(m * theta) @ q2, rotation_2d(n * theta) @ k2
        for vec, colour, name in [(rq, "#1f77b4", f"q @ {m}"), (rk, "#ff7f0e", f"k @ {n}")]:
            ax.annotate("", xy=vec.tolist(), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colour, lw=2))
            ax.text(*(1.15 * vec).tolist(), name, color=colour, ha="center", va="center")
        a_q, a_k = math.atan2(rq[1], rq[0]), math.atan2(rk[1], rk[0])
        gap = (a_q - a_k) % (2 * math.pi)
        arc = torch.linspace(a_k, a_k + gap, 30)
        ax.plot(0.35 * arc.cos(), 0.35 * arc.sin(), color="#555555")
        ax.add_patch(plt.Circle((0, 0), 1.118, fill=False, color="#dddddd"))
        ax.set_xlim(-1.5, 1.5); ax.set_ylim(-1.5, 1.5); ax.set_aspect("equal")
        ax.set_title(f"m={m}, n={n}: 夹角 angle {gap:.2f}, q·k = {(rq @ rk).item():+.3f}", fontsize=9)
    fig.suptitle("q 和 k 一起旋转, 夹角不变 (q and k turn together; the angle between them stays)")
    return fig


draw_rotating_together()
plt.show()


# %% [markdown]
# **The complex-number view.** Read a pair `(x0, x1)` as the complex number `z = x0 + i·x1`.
# Multiplying by `e^{ia} = cos a + i·sin a` rotates it by `a`: `(x0 + i·x1)(cos a + i·sin a)` has real part
# `x0·cos a - x1·sin a` and imaginary part `x1·cos a + x0·sin a`, the same formula as `R(a)`. The dot
# product of two pairs is the real part of `z_q · conj(z_k)`, so after RoPE it is
# `Re(z_q e^{imθ} · conj(z_k e^{inθ})) = Re(z_q · conj(z_k) · e^{i(m-n)θ})`: only `m - n` is left. Meta's
# LLaMA code computes RoPE exactly this way (`torch.view_as_complex` on adjacent pairs, times
# `torch.polar`):

# %% tags=["nbval-check-output"]
def turn(z, angle):
    """Rotate the complex number z by angle radians: z · e^{i·angle}."""
    return z * torch.polar(torch.tensor(1.0, dtype=torch.float64), torch.tensor(angle, dtype=torch.float64))


z_q, z_k = torch.complex(q2[0], q2[1]), torch.complex(k2[0], k2[1])
for m, n in [(2, 0), (5, 3), (9, 7)]:
    complex_score = (turn(z_q, m * theta) * turn(z_k, n * theta).conj()).real.item()
    matrix_score = ((rotation_2d(m * theta) @ q2) @ (rotation_2d(n * theta) @ k2)).item()
    print(f"m={m}, n={n}: complex numbers {complex_score:+.4f}, rotation matrices {matrix_score:+.4f}")
    assert math.isclose(complex_score, matrix_score, abs_tol=1e-12)
    assert math.isclose(complex_score, turn(z_q * z_k.conj(), (m - n) * theta).real.item(), abs_tol=1e-12)


# %% [markdown]
# The rotation also keeps every vector's length, so RoPE never changes how "loud" a token is, only its
# direction. Below, one vector at positions 0 to 7 for a fast pair (θ = 1 radian per position) and a
# slow one (θ = 0.1):

# %%
def draw_rotations():
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    v = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for ax, speed in zip(axes, [1.0, 0.1]):
        for pos in range(8):
            x, y = (rotation_2d(pos * speed) @ v).tolist()
            ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=plt.cm.viridis(pos / 7)))
            ax.text(1.12 * x, 1.12 * y, str(pos), ha="center", va="center", fontsize=9)
        ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="#cccccc"))
        ax.set_xlim(-1.3, 1.3)
        ax.set_ylim(-1.3, 1.3)
        ax.set_aspect("equal")
        ax.set_title(f"θ = {speed} 弧度/位置 (rad per position)")
    fig.suptitle("同一个向量在位置 0–7 的旋转 (one vector at positions 0-7)")
    plt.show()


draw_rotations()

# %% [markdown]
# One pair is not enough. The fast pair comes back to where it started every 2π ≈ 6.28 positions, so it
# cannot tell position 0 from position 44 (44 is almost exactly 7 turns); the slow pair has turned
# only 4.4 radians by then and tells them apart easily, but it barely distinguishes neighbours. Like the
# hands of a clock, RoPE uses many pairs turning at different speeds:

# %% tags=["nbval-check-output"]
for speed in [1.0, 0.1]:
    gap = (rotation_2d(44 * speed) - rotation_2d(0)).abs().max().item()
    print(f"θ = {speed}: positions 0 and 44 differ by at most {gap:.3f}")
assert (rotation_2d(44 * 1.0) - rotation_2d(0)).abs().max() < 0.02
assert (rotation_2d(44 * 0.1) - rotation_2d(0)).abs().max() > 0.9


# %% [markdown]
# ## 5. ChatGLM3's RoPE, written out
#
# A head of `head_dim` numbers is cut into pairs, each pair turning at its own speed. ChatGLM3's choices
# (they must be matched exactly, or a checkpoint produces garbage):
#
# 1. only the **first half** of each head rotates: `rotary_dim = head_dim // 2` (64 of 128 dims in
#    ChatGLM3-6B, 32 of 64 in the course model); the second half passes through unchanged;
# 2. the pairs are **interleaved**: dims `(0, 1)`, `(2, 3)`, ..., `(rotary_dim - 2, rotary_dim - 1)`;
# 3. pair `i` turns at `θ_i = 1 / base^(2i / rotary_dim)` radians per position, with `base = 10000`
#    (times `rope_ratio`, section 9). Note the exponent divides by `rotary_dim` (64 in the 6B), not
#    by `head_dim` (128).
#
# First the speeds and the **rope cache**: `cos(pos·θ_i)` and `sin(pos·θ_i)` for every position and pair,
# computed once and shared by every layer.

# %%
def my_rope_frequencies(rotary_dim, rope_ratio=1.0, base=10000.0):
    i = torch.arange(rotary_dim // 2, dtype=torch.float32)            # pair index, [rotary_dim // 2]
    return 1.0 / (base * rope_ratio) ** (2 * i / rotary_dim)          # theta_i, [rotary_dim // 2]


def my_rope_cache(seq_len, rotary_dim, rope_ratio=1.0):
    theta = my_rope_frequencies(rotary_dim, rope_ratio)               # [pairs]
    positions = torch.arange(seq_len, dtype=torch.float32)            # [seq_len]
    angles = positions[:, None] * theta[None, :]                      # [seq_len, pairs]
    return torch.stack([angles.cos(), angles.sin()], dim=-1)          # [seq_len, pairs, 2] (cos, sin)


print(my_rope_frequencies(8))
print(my_rope_cache(3, 8).shape)


# %% [markdown]
# Then the rotation itself, in its textbook form: for each position a `[head_dim, head_dim]`
# block-diagonal matrix with one 2×2 rotation per pair, and the identity on the dims that pass through.
# (It is slow, a `head_dim²` matrix per position, but every number is visible.)

# %%
def rotation_matrix(cos_sin, head_dim):
    """cos_sin: [pairs, 2] for one position -> R: [head_dim, head_dim]."""
    R = torch.eye(head_dim, dtype=cos_sin.dtype)
    for i, (c, s) in enumerate(cos_sin):          # pair i rotates dims 2i and 2i+1
        R[2 * i, 2 * i], R[2 * i, 2 * i + 1] = c, -s
        R[2 * i + 1, 2 * i], R[2 * i + 1, 2 * i + 1] = s, c
    return R


def my_apply_rope(x, rope_cache):
    """x: [batch, heads, seq, head_dim]; rope_cache: [seq, pairs, 2] -> the same shape as x."""
    R = torch.stack([rotation_matrix(cs, x.shape[-1]) for cs in rope_cache])  # [seq, head_dim, head_dim]
    return torch.einsum("sij,bhsj->bhsi", R, x)                             # out[..., s, :] = R_s @ x[..., s, :]


print(rotation_matrix(my_rope_cache(2, 4)[1], head_dim=8).numpy().round(2))

# %% [markdown]
# The printed matrix is position 1 of a head with `head_dim` 8: a 2×2 rotation by 1 radian on dims
# (0, 1), one by 0.01 radian on dims (2, 3), and the identity on dims 4 to 7.
#
# Now compare both functions with the package's `glm3_teach.rope` (which computes the same thing with
# elementwise products instead of matrices) on small heads, the course's head (64) and ChatGLM3-6B's (128):

# %% tags=["nbval-check-output"]
from glm3_teach.rope import apply_rotary_pos_emb, build_rope_cache, rope_frequencies

generator = seed_everything(5)
x_small, x_course, x_glm3 = (torch.randn(shape, generator=generator) for shape in
                             [(1, 1, 4, 8), (2, 4, 10, 64), (1, 2, 6, 128)])
results = [
    check("rope_frequencies", my_rope_frequencies, rope_frequencies, [(8,), (32,), (64,), (64, 50.0)]),
    check("rope_cache", my_rope_cache, build_rope_cache, [(5, 8), (16, 32), (9, 64), (9, 64, 50.0)]),
    check("apply_rope", my_apply_rope, apply_rotary_pos_emb,
          [(x_small, build_rope_cache(4, 4)), (x_course, build_rope_cache(10, 32)), (x_glm3, build_rope_cache(6, 64))]),
]
assert all(results)

# %% [markdown]
# Which numbers does RoPE change? A head of 16 ones at positions 0 to 3 (rotary_dim 8): position 0 is
# the identity rotation, and dims 8 to 15 never change.

# %% tags=["nbval-check-output"]
ones = torch.ones(1, 1, 4, 16)
changed = (apply_rotary_pos_emb(ones, build_rope_cache(4, 8)) != ones).int()[0, 0]  # [seq=4, head_dim=16]
for pos in range(4):
    print(f"position {pos}: changed dims {changed[pos].tolist()}")
assert changed[0].sum() == 0 and changed[:, 8:].sum() == 0 and changed[1:, :8].all()

# %% [markdown]
# The 2-D argument carries over to the whole head: the block-diagonal `R` of position `m`, transposed,
# times the one of position `n` equals the one of position `n - m`. Checked on the course's head:

# %%
cache_64 = build_rope_cache(20, 32).double()  # [20, 16, 2]
R = [rotation_matrix(cache_64[pos], 64) for pos in range(20)]
for m, n in [(3, 10), (0, 19), (12, 12), (5, 17)]:
    torch.testing.assert_close(R[m].T @ R[n], R[n - m], atol=1e-6, rtol=0)


# %% [markdown]
# From here on the lesson uses the package's `apply_rotary_pos_emb` and `build_rope_cache`.
#
# ## 6. Interleaved pairs (ChatGLM, Meta's LLaMA) vs half-split pairs (GPT-NeoX, Hugging Face's LLaMA)
#
# Meta's original LLaMA code pairs adjacent dims like ChatGLM (it views each head as complex numbers
# `x[2i] + i·x[2i+1]`, the `rotate_every_two` of GPT-J), but rotates the whole head. GPT-NeoX, and
# Hugging Face's port of LLaMA, pair dim `i` with dim `i + rotary_dim/2` (the two halves of the
# rotated part) instead; the port permutes the rows of `W_q` and `W_k` when it converts Meta's
# checkpoint, so the two give the same model (the reordering below shows why that works). With `rotate_half(x) = [-x2, x1]` for the halves `x1, x2`, the rotation is
# `x·cos + rotate_half(x)·sin`. Here it is on the same rotated part and with the same angles as ChatGLM's:

# %%
def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def half_split_rope(x, rope_cache):
    """The half-split pairing (i, i + rotary_dim/2) on the first rotary_dim dims; x: [batch, heads, seq, head_dim]."""
    rotary_dim = 2 * rope_cache.shape[-2]
    cos = rope_cache[..., 0].repeat(1, 2).to(x.dtype)  # [seq, rotary_dim]: pair i's cos at dims i and i + rotary_dim/2
    sin = rope_cache[..., 1].repeat(1, 2).to(x.dtype)
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    return torch.cat([x_rot * cos + rotate_half(x_rot) * sin, x_pass], dim=-1)


# %% [markdown]
# Same input, same angles, different numbers:

# %% tags=["nbval-check-output"]
x = torch.arange(1.0, 9.0).reshape(1, 1, 1, 8).repeat(1, 1, 3, 1)  # the vector 1..8 at positions 0, 1, 2
cache_8 = build_rope_cache(3, 4)
interleaved, half_split = apply_rotary_pos_emb(x, cache_8), half_split_rope(x, cache_8)
print("input at position 2:     ", x[0, 0, 2].numpy())
print("ChatGLM (interleaved):   ", interleaved[0, 0, 2].numpy().round(3))
print("half-split (GPT-NeoX):   ", half_split[0, 0, 2].numpy().round(3))
assert (interleaved[0, 0, 2] - half_split[0, 0, 2]).abs().max() > 1


# %% [markdown]
# Yet it is the same idea with the dims listed in another order. Reorder the rotated dims as
# `0, 2, 4, ..., 1, 3, 5, ...` (evens first, then odds): interleaved pair `(2i, 2i+1)` lands on dims
# `(i, i + rotary_dim/2)`, a half-split pair. That is why a checkpoint can be converted from one form to
# the other by permuting the output rows of `W_q` and `W_k`, and why using the *wrong* form on a
# checkpoint silently scrambles every attention score.

# %%
def interleaved_to_half_split_order(head_dim, rotary_dim):
    return list(range(0, rotary_dim, 2)) + list(range(1, rotary_dim, 2)) + list(range(rotary_dim, head_dim))


order = interleaved_to_half_split_order(64, 32)
print(order[:20], "...")
generator = seed_everything(6)
x_heads = torch.randn(1, 2, 12, 64, generator=generator)
cache_12 = build_rope_cache(12, 32)
torch.testing.assert_close(half_split_rope(x_heads[..., order], cache_12), apply_rotary_pos_emb(x_heads, cache_12)[..., order])

# %% [markdown]
# And Meta's complex-number form (section 4) on adjacent pairs is ChatGLM's interleaved rotation,
# number for number, on the rotated part:

# %%
rotated = x_heads[..., :32].double()                                            # [1, 2, 12, 32]: the rotated part
pairs = torch.view_as_complex(rearrange(rotated, "... (p two) -> ... p two", two=2).contiguous())  # [1, 2, 12, 16]
angles = build_rope_cache(12, 32).double()                                      # [12, 16, 2] (cos, sin)
meta_style = torch.view_as_real(pairs * torch.complex(angles[..., 0], angles[..., 1])).flatten(-2)
torch.testing.assert_close(meta_style, apply_rotary_pos_emb(x_heads, cache_12)[..., :32].double(), atol=1e-6, rtol=0)


# %% [markdown]
# ## 7. The relative-position property, with numbers
#
# A random query and key for the course's head (`head_dim` 64), placed at every position `m` (query)
# and `n` (key) from 0 to 7. The table holds `q_m · k_n` after RoPE. Each diagonal (constant `m - n`)
# holds one number: the score depends only on the distance.

# %% tags=["nbval-check-output"]
def score_table(rope_fn, q, k, seq_len, rotary_dim):
    """q, k: [head_dim]. Returns scores[m, n] = rope(q at m) · rope(k at n), [seq_len, seq_len]."""
    cache = build_rope_cache(seq_len, rotary_dim)
    q_all = rope_fn(q.expand(1, 1, seq_len, -1), cache)[0, 0]  # [seq_len, head_dim]: q at every position
    k_all = rope_fn(k.expand(1, 1, seq_len, -1), cache)[0, 0]
    return q_all @ k_all.T                                       # [seq_len (m), seq_len (n)]


def is_constant_along_diagonals(table, atol):
    return all(torch.allclose(table.diagonal(d), table.diagonal(d)[:1].expand(len(table.diagonal(d))), atol=atol)
               for d in range(-len(table) + 1, len(table)))


generator = seed_everything(7)
q, k = torch.randn(2, 64, generator=generator, dtype=torch.float64)
scores = score_table(apply_rotary_pos_emb, q, k, 8, 32)
print("rows: query position m, columns: key position n")
print(scores.numpy().round(2))
assert is_constant_along_diagonals(scores, atol=1e-4)

# %% [markdown]
# Without RoPE every entry would be the same `q·k`; with it, the score changes with the distance but not
# with the absolute position. The half-split form has the same property (its table differs, its diagonals
# are constant too), and the property holds for long distances as well (positions 0 to 299):

# %% tags=["nbval-check-output"]
for name, rope_fn in [("ChatGLM interleaved", apply_rotary_pos_emb), ("half-split (NeoX)", half_split_rope)]:
    table = score_table(rope_fn, q, k, 300, 32)
    print(f"{name:>20}: scores at distance 1: {table[1, 0].item():+.3f}, constant along every diagonal "
          f"up to 300 positions: {is_constant_along_diagonals(table, atol=1e-3)}")
    assert is_constant_along_diagonals(table, atol=1e-3)
assert abs(score_table(half_split_rope, q, k, 2, 32)[1, 0] - scores[1, 0]) > 0.1  # different tables


# %% [markdown]
# The picture of the same table for 48 positions: stripes parallel to the diagonal (a Toeplitz matrix).

# %%
def draw_score_table():
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    image = ax.imshow(score_table(apply_rotary_pos_emb, q, k, 48, 32).numpy(), cmap="RdBu_r")
    ax.set_xlabel("键的位置 key position n")
    ax.set_ylabel("查询的位置 query position m")
    ax.set_title("RoPE 后的 q·k (q·k after RoPE)")
    fig.colorbar(image, ax=ax)
    plt.show()


draw_score_table()


# %% [markdown]
# Back to the two sentences of section 3, now with RoPE on the queries and keys (the values are not
# rotated, as in ChatGLM3). The last token of "小猫喜欢小狗。" and "小狗喜欢小猫。" now gets different
# outputs: the model can tell who likes whom. Shifting every position by the same amount (positions
# 100 to 103 instead of 0 to 3) changes nothing, because only distances matter:

# %% tags=["nbval-check-output"]
def rope_attention(x, positions, causal=True):
    """attention() with RoPE on q and k. x: [seq, hidden_size]; positions: list of seq ints."""
    cache = build_rope_cache(max(positions) + 1, HEAD_DIM // 2)[positions]         # [seq, pairs, 2]
    q, k, v = x @ w_q, x @ w_k, x @ w_v                                            # [seq, head_dim]
    q, k = (apply_rotary_pos_emb(t[None, None], cache)[0, 0] for t in (q, k))     # rotated, [seq, head_dim]
    scores = q @ k.T / math.sqrt(HEAD_DIM)
    if causal:
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


last_a, last_b = rope_attention(x_a, [0, 1, 2, 3])[-1], rope_attention(x_b, [0, 1, 2, 3])[-1]
print("last token (。) in A:", last_a[:4].numpy().round(3))
print("last token (。) in B:", last_b[:4].numpy().round(3))
print("A at positions 100-103 equals A at 0-3:",
      torch.allclose(rope_attention(x_a, [100, 101, 102, 103]), rope_attention(x_a, [0, 1, 2, 3]), atol=1e-5))
assert (last_a - last_b).abs().max() > 1e-3
torch.testing.assert_close(rope_attention(x_a, [100, 101, 102, 103]), rope_attention(x_a, [0, 1, 2, 3]),
                           atol=1e-5, rtol=0)


# %% [markdown]
# ## 8. Frequencies and wavelengths
#
# Pair `i` turns `θ_i` radians per position, so it makes a full turn every
# **wavelength** `λ_i = 2π / θ_i = 2π · base^(2i / rotary_dim)` positions. The first pair always has
# λ = 2π ≈ 6.28; each next pair is slower by the same factor, `base^(2 / rotary_dim)`.

# %% tags=["nbval-check-output"]
def wavelengths(rotary_dim, rope_ratio=1.0):
    return 2 * math.pi / rope_frequencies(rotary_dim, rope_ratio).double()  # [rotary_dim // 2]


for name, c in [("chatglm3-6b", GLM3_6B), ("course", COURSE)]:
    rotary_dim = c.kv_channels // 2
    lam = wavelengths(rotary_dim)
    full_turns = int((lam < c.seq_length).sum())
    print(f"{name:>12}: rotary_dim {rotary_dim}, {rotary_dim // 2} pairs, wavelengths {lam[0]:.2f} ... {lam[-1]:,.0f} "
          f"positions; {full_turns} pairs turn fully within seq_length {c.seq_length}")
lam_6b, lam_course = wavelengths(64), wavelengths(32)
assert math.isclose(lam_6b[-1].item(), 2 * math.pi * 10000 ** (62 / 64), rel_tol=1e-5)
assert abs(lam_6b[-1].item() - 47_117) < 1 and abs(lam_course[-1].item() - 35_333) < 1
assert int((lam_6b < 8192).sum()) == 25 and int((lam_course < 256).sum()) == 7
assert abs((lam_course[1] / lam_course[0]).item() - 1.78) < 0.01 and abs((lam_6b[1] / lam_6b[0]).item() - 1.33) < 0.01


# %% [markdown]
# In ChatGLM3-6B the 32 rotating pairs span wavelengths from 6.28 to about 47,000 positions: 25 pairs
# turn at least once within its 8192-token context and tell nearby positions apart; the slowest 7
# turn less than once and act as a coarse "how far back" signal. The course model's 16 pairs reach
# about 35,000 positions (fewer pairs, so a larger step between speeds: `10000^(2/32) ≈ 1.78` instead
# of `10000^(2/64) ≈ 1.33`); within its 256-token context only 7 of them turn fully.

# %%
def draw_wavelengths():
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.semilogy(range(32), lam_6b.numpy(), "o-", label="ChatGLM3-6B (head_dim 128, rotary_dim 64)")
    ax.semilogy(range(16), lam_course.numpy(), "s-", label="本课程 course (head_dim 64, rotary_dim 32)")
    ax.axhline(8192, color="#1f77b4", linestyle=":", label="ChatGLM3-6B seq_length 8192")
    ax.axhline(256, color="#ff7f0e", linestyle=":", label="course seq_length 256")
    ax.set_xlabel("维度对编号 pair i")
    ax.set_ylabel("波长 (位置数) wavelength (positions)")
    ax.set_title("每一对维度转一圈需要多少个位置 (wavelength of each pair)")
    ax.legend(fontsize=8)
    plt.show()


draw_wavelengths()


# %% [markdown]
# The cache itself, `cos(pos·θ_i)` for ChatGLM3-6B's 32 pairs over the first 256 positions: the first
# pairs flicker, the last ones hardly move.

# %%
def draw_cache():
    fig, ax = plt.subplots(figsize=(9, 3.6))
    image = ax.imshow(build_rope_cache(256, 64)[:, :, 0].T.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xlabel("位置 position")
    ax.set_ylabel("维度对编号 pair i")
    ax.set_title("旋转位置编码缓存 cos(pos·θ_i), ChatGLM3-6B")
    fig.colorbar(image, ax=ax)
    plt.show()


draw_cache()

# %% [markdown]
# A consequence of the spread of speeds: the same vector put at two positions looks less and less alike
# as they move apart. For a query equal to the key (all ones on the 64 rotated dims), the score at
# distance `d` is `Σ_i 2·cos(d·θ_i)`: 64 at distance 0, about 50 on average over the first few distances,
# and beyond 1000 positions it oscillates with less than a fifth of that size. (It is a tendency, not a
# rule: a trained model learns `W_q`, `W_k` that use the pairs it needs.)

# %% tags=["nbval-check-output"]
same = torch.ones(64, dtype=torch.float64)
distance_scores = score_table(apply_rotary_pos_emb, same, same, 2048, 64)[:, 0]  # rope(q at d) · rope(k at 0)
near, far = distance_scores[:8].mean().item(), distance_scores[1024:].abs().mean().item()
print(f"score at distance 0: {distance_scores[0].item():.1f}; mean over distances 0-7: {near:.1f}; "
      f"mean |score| over distances 1024-2047: {far:.1f}")
assert abs(distance_scores[0].item() - 64) < 1e-9 and near > 40 and far < 0.2 * near


# %%
def draw_decay():
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(distance_scores.numpy(), linewidth=0.8)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("距离 distance d")
    ax.set_ylabel("q·k")
    ax.set_title("相同向量在不同距离上的得分 (one vector against itself at distance d)")
    plt.show()


draw_decay()

# %% [markdown]
# ## 9. `rope_ratio`: longer contexts
#
# A model trained on 8192-token texts has never seen the angles of positions beyond that. To stretch
# the context, the slow pairs must turn even more slowly. ChatGLM3 does it with a config key
# `rope_ratio` that multiplies the base: `base = 10000 · rope_ratio`, so
# `θ_i = (10000 · rope_ratio)^(-2i/rotary_dim)`. The chatglm3-6b checkpoint has no `rope_ratio`
# (it means 1); the long-context chatglm3-6b-32k revisions set one, and that model was trained with it. The
# first pair keeps turning at 1 radian per position; pair `i` slows by `rope_ratio^(2i/rotary_dim)`,
# so the slow pairs slow down most. (The other common trick, *position interpolation*, divides every
# position by a factor instead, slowing all pairs by the same factor.)

# %% tags=["nbval-check-output"]
RATIO = 50.0  # an illustrative value
slowdown = (rope_frequencies(64) / rope_frequencies(64, rope_ratio=RATIO)).double()
print(f"rope_ratio {RATIO:g}: pair 0 slows by {slowdown[0]:.2f}x, pair 16 by {slowdown[16]:.2f}x, "
      f"pair 31 by {slowdown[31]:.2f}x; longest wavelength {wavelengths(64)[-1]:,.0f} -> "
      f"{wavelengths(64, RATIO)[-1]:,.0f} positions")
torch.testing.assert_close(slowdown, torch.tensor([RATIO ** (2 * i / 64) for i in range(32)], dtype=torch.float64),
                           rtol=1e-5, atol=0)


# %%
def draw_rope_ratio():
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.semilogy(range(32), wavelengths(64).numpy(), "o-", label="rope_ratio = 1 (chatglm3-6b)")
    ax.semilogy(range(32), wavelengths(64, RATIO).numpy(), "s-", label=f"rope_ratio = {RATIO:g} (base × {RATIO:g})")
    ax.semilogy(range(32), (wavelengths(64) * 4).numpy(), "^--", label="位置插值 position interpolation (positions / 4)")
    ax.axhline(32768, color="#999999", linestyle=":", label="32k")
    ax.set_xlabel("维度对编号 pair i")
    ax.set_ylabel("波长 wavelength (positions)")
    ax.set_title("rope_ratio 放慢慢速维度对 (rope_ratio slows the slow pairs most)")
    ax.legend(fontsize=8)
    plt.show()


draw_rope_ratio()

# %% [markdown]
# `rope_ratio` belongs to the checkpoint: change it on a model trained with 1 and every angle beyond
# position 0 changes, so the learned `W_q`, `W_k` no longer fit. The package reads it from the config
# (`ChatGLMConfig(rope_ratio=...)`, default 1) and hands it to `RotaryEmbedding`, the module that holds
# the checkpoint's `inv_freq` buffer and builds the cache:

# %% tags=["nbval-check-output"]
from glm3_teach.rope import RotaryEmbedding

print(ChatGLMForCausalLM(COURSE).transformer.rotary_pos_emb)
print(RotaryEmbedding(64, rope_ratio=RATIO))

# %% [markdown]
# ## 10. Why the cache is computed in fp32
#
# A model running in bf16 could compute the angles in bf16 too, but bf16 keeps only 8 significant bits:
# above 256 it cannot even count positions one by one. ChatGLM3 (and the package) compute the cache in
# fp32 and only then round cos and sin to the model dtype, an error of at most 2⁻⁹ ≈ 0.002 in bf16
# (values below 1 keep 8 significant bits).

# %% tags=["nbval-check-output"]
print("positions 1000-1005 in bf16:", torch.arange(1000, 1006).to(torch.bfloat16).tolist())
rounded = RotaryEmbedding(64).to(torch.bfloat16)(8192)  # [8192, 32, 2] in bf16, from fp32 angles
error = (rounded.float() - build_rope_cache(8192, 64)).abs().max().item()
print(f"bf16 cache: dtype {rounded.dtype}, largest rounding error {error:.4f}")
assert torch.arange(1000, 1006).to(torch.bfloat16).unique().numel() < 6 and error <= 2 ** -9

# %% [markdown]
# ## 11. RoPE inside the model
#
# In the package's model, `transformer.rotary_pos_emb(seq_length)` builds the cache once (and keeps
# it), `[position_ids]` picks each token's row (a plain slice of the table when there is no padding),
# and every attention layer calls `apply_rotary_pos_emb` once on its queries (all heads) and keys
# (the KV groups) side by side, never on the values. Nothing else in the model knows
# positions, so an (untrained) course model gives the same logits when every position is shifted by
# 100, and different logits when the tokens are reordered. The reordering is not a test of RoPE,
# though: with every position set to 0 (RoPE then rotates nothing) the 4-layer model still tells the
# two orders apart, through the causal mask as shown in section 3. That control is the third line:
# in this untrained model, most of the change survives without RoPE.

# %% tags=["nbval-check-output"]
seed_everything(0)
model = ChatGLMForCausalLM(COURSE).to(device).eval()
batch = torch.tensor([ids_a, ids_b], device=device)  # [2, 4]: 小猫喜欢小狗。 / 小狗喜欢小猫。
with torch.no_grad():
    logits = model(batch).logits                                                   # positions 0..3
    shifted = model(batch, position_ids=torch.arange(100, 104, device=device)[None]).logits  # positions 100..103
    no_positions = model(batch, position_ids=torch.zeros(1, 4, dtype=torch.long, device=device)).logits  # all 0
largest_shift_change = (logits - shifted).abs().max().item()
order_change = (logits[0, -1] - logits[1, -1]).abs().max().item()
order_change_without_rope = (no_positions[0, -1] - no_positions[1, -1]).abs().max().item()
print(f"shift all positions by 100: the logits change by less than 1e-4: {largest_shift_change < 1e-4}")
print(f"swap 小猫 and 小狗: the last token's logits change by up to {order_change:.3f} (> 0.01: {order_change > 0.01})")
print(f"the same swap with every position 0: still up to {order_change_without_rope:.3f} (> 0.01: "
      f"{order_change_without_rope > 0.01})")
assert largest_shift_change < 1e-4 and order_change > 0.01 and order_change_without_rope > 0.01
assert order_change_without_rope > 0.5 * order_change


# %% [markdown]
# ## Exercises
#
# ### Exercise 1: load a half-split checkpoint into ChatGLM's RoPE
# Section 6 showed that the two pairings differ by a reordering of the dims. Suppose a model was
# trained with the **half-split** form (pairs `(i, i + rotary_dim/2)`), and you want to run it with
# ChatGLM's interleaved `apply_rotary_pos_emb`. Write `half_split_to_interleaved(weight, head_dim,
# rotary_dim)`: `weight` holds the rows of its `W_q` (or `W_k`), `[num_heads * head_dim, hidden]`,
# head after head; return the rows reordered so that interleaved RoPE on the new projection gives
# exactly the scores `q·k` that half-split RoPE gave on the old one, at every pair of positions.
# (Hugging Face's LLaMA conversion does the opposite direction.) Which way does the reordering go,
# and what happens to the dims that do not rotate?

# %%
def half_split_to_interleaved(weight, head_dim, rotary_dim):
    raise NotImplementedError


# %% tags=["nbval-check-output"]
from glm3_teach.checks import Case


def scores_with(rope_fn, w_q, w_k, x, head_dim, rotary_dim):
    """Scores q·k [heads, seq, seq] of x [seq, hidden] through w_q, w_k and rope_fn at positions 0..seq-1."""
    cache = build_rope_cache(x.shape[0], rotary_dim)
    q = rope_fn(rearrange(x @ w_q.T, "s (h d) -> 1 h s d", d=head_dim), cache)   # [1, heads, seq, head_dim]
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
result = check("half_split_to_interleaved", lambda *case: converted_scores(half_split_to_interleaved, *case),
               lambda w_q, w_k, x, head_dim, rotary_dim: scores_with(half_split_rope, w_q, w_k, x, head_dim, rotary_dim),
               conversion_cases,
               hint="new row j of a head must produce what half-split RoPE expects there: the new q satisfies "
                    "q_new[..., order] = q_old, so take rows in the order order.argsort(), head by head "
                    "(rearrange(weight, '(h d) i -> h d i', d=head_dim)); the unrotated dims stay where they are")


# %% [markdown]
# ### Exercise 2: rotate interleaved pairs without a matrix
# Write `rotate_pairs(x, cos, sin)` for `x` of shape `[seq, rotary_dim]` and `cos`, `sin` of shape
# `[seq, rotary_dim // 2]` (the angles of each position and pair): rotate dims `(2i, 2i+1)` by the angle
# of pair `i`, with elementwise products only. `x[..., 0::2]` takes the even dims.

# %%
def rotate_pairs(x, cos, sin):
    raise NotImplementedError


# %%
generator = seed_everything(22)
cache_5 = build_rope_cache(5, 8)
cache_7 = build_rope_cache(7, 32)
result = check("rotate_pairs", rotate_pairs,
               lambda x, cos, sin: apply_rotary_pos_emb(x[None, None], torch.stack([cos, sin], dim=-1))[0, 0],
               [(torch.arange(1.0, 9.0).repeat(5, 1), cache_5[..., 0], cache_5[..., 1]),
                (torch.randn(7, 32, generator=generator), cache_7[..., 0], cache_7[..., 1])],
               hint="out[2i] = x[2i]·cos - x[2i+1]·sin and out[2i+1] = x[2i+1]·cos + x[2i]·sin; "
                    "torch.stack([...], dim=-1).flatten(-2) interleaves them again")


# %% [markdown]
# ### Exercise 3: the rope cache for any positions
# The model indexes the cache with `position_ids`, which need not be `0, 1, 2, ...` (a left-padded row
# is `[0, 0, 0, 1, 2]`, a decoding step is one large position). Write
# `rope_cache_at(position_ids, rotary_dim, rope_ratio=1.0)` returning `[batch, seq, rotary_dim // 2, 2]`
# (cos, sin) directly from `position_ids` of shape `[batch, seq]`, in fp32 like the package.

# %%
def rope_cache_at(position_ids, rotary_dim, rope_ratio=1.0):
    raise NotImplementedError


# %%
result = check("rope_cache_at", rope_cache_at,
               lambda position_ids, rotary_dim, rope_ratio=1.0:  # the package's cache, indexed by the positions
               build_rope_cache(int(position_ids.max()) + 1, rotary_dim, rope_ratio)[position_ids],
               [(torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]), 8), (torch.tensor([[5, 6, 7]]), 32, 50.0),
                (torch.tensor([[8000, 8191]]), 64)],
               atol=2e-3, hint="angles = position_ids[..., None].float() * theta; stack cos and sin on a new last dim")

# %% [markdown]
# Solutions are in `notebooks/solutions/02_embeddings_rope_solutions.ipynb`; try first.
#
# ## Summary
# - An embedding layer is a `[padded_vocab_size, hidden_size]` matrix; embedding a token reads its row,
#   which equals one-hot × matrix. ChatGLM3 adds nothing to it: no scaling, no position vector.
# - Attention alone sees a set, not a sequence: reordering tokens reorders the outputs, and the last
#   token of "小猫喜欢小狗。" and "小狗喜欢小猫。" gets the same output.
# - RoPE rotates 2-D pairs of the queries and keys by `position × θ_i`; since `R(m)ᵀR(n) = R(n - m)`,
#   `q·k` depends only on the distance, and shifting all positions changes nothing. Read as complex
#   numbers, RoPE multiplies each pair by `e^{i·pos·θ_i}` (Meta's LLaMA code computes it that way).
# - ChatGLM3 rotates only the first half of each head (`rotary_dim = head_dim // 2`), in interleaved
#   pairs `(2i, 2i+1)` as in Meta's LLaMA, with `θ_i = (10000 · rope_ratio)^(-2i/rotary_dim)`. The
#   half-split form (GPT-NeoX, Hugging Face's LLaMA port) gives different numbers (a reordering of
#   the dims), with the same relative property; a checkpoint moves from one to the other by
#   reordering the rows of `W_q` and `W_k` inside each head.
# - Without positions, one causal layer cannot tell word orders apart at the last token; from two
#   layers on the causal mask leaks order, so only a `position_ids = 0` control isolates RoPE.
# - Wavelengths run from 2π to about 47,000 positions in ChatGLM3-6B (35,000 in the course model);
#   `rope_ratio` raises the base to slow the slow pairs for long contexts.
# - The cache is computed in fp32 and then rounded to the model dtype.
#
# Next: **03 · 注意力 Attention**, where queries, keys and values get their full treatment: scaling,
# masks, multi-head and grouped-query attention.
