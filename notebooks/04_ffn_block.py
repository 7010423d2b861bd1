# %% [markdown]
# # 04 · 前馈网络与归一化 FFN, RMSNorm and the GLM block
#
# Lesson 03 built attention, the layer through which tokens exchange information. A transformer
# layer has a second half, the **feed-forward network** (前馈网络, FFN), which transforms each
# token's vector on its own. **Normalisation** (归一化) and **residual connections** (残差连接)
# join the two halves into the GLM block that ChatGLM3-6B repeats 28 times.
#
# **You will learn**
# - LayerNorm and RMSNorm, written by hand: what RMSNorm drops (mean-centring and bias), what it
#   keeps, what it saves, and why ChatGLM3 computes it in fp32 even when the model runs in 16 bits;
# - the GELU MLP of GPT and BERT beside the SwiGLU MLP of ChatGLM3 (the gate comes **first**), and
#   what `ffn_hidden_size = 13696` costs compared with a classic 4x MLP;
# - the residual stream, and why, at initialisation, pre-norm passes gradients through a deep stack
#   at about their size while post-norm's compound with depth
#   (a numerical experiment);
# - how to assemble one GLM block from the package's attention and your own norm and MLP, checked
#   against `glm3_teach.layers.GLMBlock`;
# - where the 203,960,832 parameters of one ChatGLM3-6B block sit.

# %% tags=["nbval-ignore-output"]
import math

import torch
import torch.nn.functional as F
from torch import nn

from glm3_teach import pick_device, seed_everything

device = pick_device()
seed_everything(0)
print("device:", device)


# %% [markdown]
# ## 1. LayerNorm, written by hand
#
# The vector that flows through the model (the *residual stream*, section 6) changes scale from
# token to token and from layer to layer. A matrix multiply works best on inputs of a known scale,
# so every sub-layer first **normalises** its input, one token at a time. LayerNorm (Ba et al.,
# 2016), used by the original Transformer, GPT-2 and BERT, does it in two steps over the
# `hidden_size` features of one token, then applies a learned per-feature scale and shift:
#
# $$\mathrm{LayerNorm}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot w + b,\qquad
# \mu = \tfrac{1}{H}\textstyle\sum_i x_i,\quad \sigma^2 = \tfrac{1}{H}\sum_i (x_i - \mu)^2 .$$

# %%
def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``[..., hidden] -> [..., hidden]``: centre, divide by the standard deviation, scale, shift."""
    mean = x.mean(dim=-1, keepdim=True)                     # [..., 1]
    centred = x - mean                                      # [..., hidden]
    var = centred.pow(2).mean(dim=-1, keepdim=True)         # [..., 1] (biased variance, as LayerNorm uses)
    return centred * torch.rsqrt(var + eps) * weight + bias


generator = seed_everything(4)
x = torch.randn(2, 5, 8, generator=generator)              # [batch, seq, hidden]
w, b = torch.randn(8, generator=generator), torch.randn(8, generator=generator)
torch.testing.assert_close(layer_norm(x, w, b), F.layer_norm(x, (8,), w, b, eps=1e-5))
print("our layer_norm matches torch.nn.functional.layer_norm")

# %% [markdown]
# ## 2. RMSNorm: keep the scale, drop the centring
#
# Zhang and Sennrich (2019) asked which half of LayerNorm does the work. Their answer: the
# **re-scaling**. RMSNorm drops the mean subtraction and the bias and divides by the root mean
# square instead of the standard deviation:
#
# $$\mathrm{RMSNorm}(x) = \frac{x}{\sqrt{\tfrac{1}{H}\sum_i x_i^2 + \epsilon}} \odot w .$$
#
# ChatGLM3 uses it everywhere (`rmsnorm: true` in its config), with $\epsilon = 10^{-5}$ and no bias.
# Our first version computes in whatever dtype it is given; section 3 shows why that is not enough.

# %%
from glm3_teach.layers import RMSNorm


def rms_norm_naive(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``[..., hidden] -> [..., hidden]``: divide by the root mean square, scale. No centring, no bias."""
    mean_square = x.pow(2).mean(dim=-1, keepdim=True)       # [..., 1]
    return x * torch.rsqrt(mean_square + eps) * weight


package_norm = RMSNorm(8, eps=1e-5)
with torch.no_grad():
    package_norm.weight.copy_(w)
    torch.testing.assert_close(rms_norm_naive(x, w), package_norm(x))
print("our rms_norm_naive matches glm3_teach.layers.RMSNorm in fp32")

# %% [markdown]
# What does dropping the centring change? Take one token whose hidden state is `[1, 2, 3, 4]`
# (weights 1, bias 0) and transform it three ways:

# %% tags=["nbval-check-output"]
token = torch.tensor([1.0, 2.0, 3.0, 4.0])
ones, zeros = torch.ones(4), torch.zeros(4)
variants = {"x": token, "x + 10": token + 10, "3 * x": 3 * token, "x - mean(x)": token - token.mean()}
for name, v in variants.items():
    ln, rms = layer_norm(v, ones, zeros), rms_norm_naive(v, ones)
    print(f"{name:>12} | LayerNorm {ln.numpy().round(4)} | RMSNorm {rms.numpy().round(4)}")

torch.testing.assert_close(layer_norm(token + 10, ones, zeros), layer_norm(token, ones, zeros), rtol=1e-4, atol=1e-4)
assert not torch.allclose(rms_norm_naive(token + 10, ones), rms_norm_naive(token, ones), atol=0.1)
torch.testing.assert_close(rms_norm_naive(3 * token, ones), rms_norm_naive(token, ones), rtol=1e-4, atol=1e-5)
centred = variants["x - mean(x)"]
torch.testing.assert_close(rms_norm_naive(centred, ones), layer_norm(centred, ones, zeros))

# %% [markdown]
# - Both norms ignore the **scale** of the input: `3 * x` gives the same output as `x` (exactly so
#   but for ε).
# - Only LayerNorm ignores a **shift**: `x + 10` is the same as `x` to LayerNorm, but RMSNorm sees a
#   vector that is mostly its mean, and its output shows that.
# - For an input whose mean is already 0 the two are **identical**.
#
# RMSNorm bets that the network does not need shift invariance, and that bet has held up: LLaMA,
# Qwen and ChatGLM2/3 all use it. What it buys is less work. Let us count the tensor operations each
# hand-written norm performs, by logging every PyTorch function it calls:

# %% tags=["nbval-check-output"]
from torch.overrides import TorchFunctionMode


class OpLog(TorchFunctionMode):
    """Inside ``with OpLog(shape) as log:`` every PyTorch function called is appended to ``log.names``;
    ``log.full`` says, per call, whether it read or wrote a whole tensor of ``shape``."""

    def __init__(self, shape):
        super().__init__()
        self.shape, self.names, self.full = shape, [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        tensors = [t for t in (*args, *(kwargs or {}).values(), result) if isinstance(t, torch.Tensor)]
        self.names.append(func.__name__)
        self.full.append(any(t.shape == self.shape for t in tensors))
        return result


ops, passes = {}, {}
for name, run in [("LayerNorm", lambda: layer_norm(x, w, b)), ("RMSNorm", lambda: rms_norm_naive(x, w))]:
    with OpLog(x.shape) as log:
        run()
    ops[name], passes[name] = log.names, sum(log.full)
    print(f"{name:>9}: {len(log.names)} ops, {passes[name]} of them over the whole tensor, "
          f"reductions (mean): {log.names.count('mean')} | {' '.join(log.names)}")
assert (len(ops["LayerNorm"]), ops["LayerNorm"].count("mean")) == (9, 2)
assert (len(ops["RMSNorm"]), ops["RMSNorm"].count("mean")) == (6, 1)
assert (passes["LayerNorm"], passes["RMSNorm"]) == (7, 4)

# %% [markdown]
# Normalisation is limited by memory traffic, not arithmetic, so what counts is how often a whole
# `[tokens, hidden]` tensor is read or written. The ops on the `[..., 1]` statistics (adding eps, the
# square root) touch one number per token and cost next to nothing; the rest are full passes:
# four instead of seven, one reduction instead of two (and the second reduction of LayerNorm must
# wait for the first). Timed below on a `[1024, 4096]`
# tensor; your numbers will differ. PyTorch's own `F.layer_norm` is
# one fused kernel (one pass), which is why it can beat both hand-written versions: compare like with
# like. ChatGLM3's reference code writes its RMSNorm out in plain ops, as we do.

# %% tags=["nbval-ignore-output"]
import time


def best_time(fn, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


big = torch.randn(1024, 4096, generator=generator)
w_big, b_big = torch.ones(4096), torch.zeros(4096)
t_ln = best_time(lambda: layer_norm(big, w_big, b_big))
t_rms = best_time(lambda: rms_norm_naive(big, w_big))
t_fused = best_time(lambda: F.layer_norm(big, (4096,), w_big, b_big))
print(f"hand-written LayerNorm {t_ln * 1e3:.1f} ms | hand-written RMSNorm {t_rms * 1e3:.1f} ms "
      f"(ratio {t_rms / t_ln:.2f}) | fused F.layer_norm {t_fused * 1e3:.1f} ms")

# %% [markdown]
# RMSNorm also has half the parameters: a weight but no bias. ChatGLM3-6B has 57 norms (two per block
# in 28 blocks, plus the final one), so dropping the bias saves 57 × 4096 parameters, a rounding error
# next to 6.24 billion. The saving that matters is the compute.

# %% tags=["nbval-check-output"]
norms_6b = 2 * 28 + 1
saved = norms_6b * 4096
print(f"{norms_6b} norms x 4096 = {saved:,} bias parameters not needed ({saved / 6_243_584_000:.4%} of ChatGLM3-6B)")
assert saved == 233_472 and saved / 6_243_584_000 < 1e-4

# %% [markdown]
# ## 3. Why ChatGLM3 normalises in fp32
#
# ChatGLM3-6B is stored in fp16 and usually runs in fp16 or bf16. Our naive norm squares its input
# **in the input's dtype**. The largest fp16 number is 65,504, so any activation above √65504 ≈ 256
# overflows when squared, and large language models are known to carry a few hidden features far
# larger than the rest ("outlier features"). Give one feature of each token the value 400:

# %% tags=["nbval-check-output"]
generator = seed_everything(4)
hidden = 3 * torch.randn(8, 512, generator=generator)     # [tokens, hidden]
hidden[:, 7] = 400.0                                      # one outlier feature, as large models have
weight = 1 + 0.1 * torch.randn(512, generator=generator)
x16, w16 = hidden.half(), weight.half()
exact = rms_norm_naive(x16.double(), w16.double())          # fp64 on the same fp16 inputs: the right answer
norm16 = RMSNorm(512).half()
with torch.no_grad():
    norm16.weight.copy_(w16)
    naive16, package16 = rms_norm_naive(x16, w16), norm16(x16)
print(f"largest fp16: {torch.finfo(torch.float16).max:,.0f} = {math.sqrt(torch.finfo(torch.float16).max):.1f} ** 2; "
      f"400 ** 2 in fp16: {(x16[0, 7] ** 2).item()}")
print("naive fp16 RMSNorm, largest |output|:", naive16.abs().max().item())
print("package RMSNorm (fp32 inside), largest error:", round((package16.double() - exact).abs().max().item(), 3),
      "| output dtype:", package16.dtype)
assert math.isinf((x16[0, 7] ** 2).item()) and naive16.abs().max().item() == 0.0
torch.testing.assert_close(package16.double(), exact, rtol=2e-3, atol=2e-3)

# %% [markdown]
# The mean square becomes `inf`, `rsqrt(inf)` is 0, and every token is wiped out: the model would
# silently produce garbage. bf16 has fp32's range, so it does not overflow, but it keeps only 8
# significant bits, and the rounding of each square adds up in the mean. The fair comparison is
# with the correctly rounded answer (fp64, then rounded once to bf16):

# %% tags=["nbval-check-output"]
xb, wb = hidden.bfloat16(), weight.bfloat16()
exact_b = rms_norm_naive(xb.double(), wb.double()).bfloat16()   # the best any bf16 output can be
normb = RMSNorm(512).bfloat16()
with torch.no_grad():
    normb.weight.copy_(wb)
    naive_b, package_b = rms_norm_naive(xb, wb), normb(xb)
share_naive = (naive_b == exact_b).float().mean().item()
share_package = (package_b == exact_b).float().mean().item()
print(f"outputs equal to the correctly rounded bf16 answer: naive bf16 {share_naive:.1%}, "
      f"package (fp32 inside) {share_package:.1%}")
assert share_package > 0.99 and share_naive < 0.9


# %% [markdown]
# Hence ChatGLM3's recipe, which `glm3_teach.layers.RMSNorm` follows: convert the input to fp32,
# compute the mean square and the `rsqrt` in fp32, multiply by the weight, and only then cast the
# result back to the input's dtype. The extra cost is small (a norm is a tiny part of the work),
# and the tensor that leaves the norm is as accurate as its dtype allows. You will write this version
# yourself in exercise 1. From here on the lesson uses the package's `RMSNorm`.
#
# ## 4. The feed-forward network: GELU MLP and SwiGLU
#
# Attention mixes information *across* tokens; the FFN then works on each token *alone*: widen the
# vector, apply a non-linearity, narrow it back. GPT-2 and BERT use a width of `4 * hidden_size`
# and the GELU activation. ChatGLM3, like LLaMA, uses a *gated* unit, SwiGLU (Shazeer, 2020, "GLU
# Variants Improve Transformer"). First the activations, written by hand and checked:
#
# - GELU: $x \cdot \Phi(x)$, with $\Phi$ the standard normal CDF (GPT-2 uses a tanh approximation);
# - SiLU (also called Swish): $x \cdot \sigma(x)$, with $\sigma$ the logistic sigmoid.

# %%
def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


grid = torch.linspace(-6, 6, 120_001, dtype=torch.float64)     # step 1e-4
torch.testing.assert_close(gelu(grid), F.gelu(grid))
torch.testing.assert_close(gelu_tanh(grid), F.gelu(grid, approximate="tanh"))
torch.testing.assert_close(silu(grid), F.silu(grid))
print("gelu, gelu_tanh and silu match PyTorch's")

# %% [markdown]
# Both are smooth versions of ReLU: close to 0 for very negative inputs, close to `x` for large
# positive ones, with a small dip below zero in between. The dips, found on the grid:

# %% tags=["nbval-check-output"]
for name, fn in [("GELU", gelu), ("SiLU", silu)]:
    values = fn(grid)
    i = int(values.argmin())
    print(f"{name}: minimum {values[i].item():.4f} at x = {grid[i].item():.4f}; f(6) = {fn(grid[-1:]).item():.4f}")
assert abs(gelu(grid).min().item() + 0.1700) < 1e-3 and abs(grid[gelu(grid).argmin()].item() + 0.7518) < 1e-3
assert abs(silu(grid).min().item() + 0.2785) < 1e-3 and abs(grid[silu(grid).argmin()].item() + 1.2785) < 1e-3

# %% [markdown]
# A **gated** linear unit computes two projections of the input. One, the *gate* `g`, goes through
# the activation; the other, the *up* projection `u`, stays linear; the two are multiplied feature by
# feature:
#
# $$\mathrm{FFN}_{\mathrm{SwiGLU}}(x) = \big(\mathrm{silu}(x W_{\mathrm{gate}}) \odot x W_{\mathrm{up}}\big)\, W_{\mathrm{down}} .$$
#
# The right panel shows `silu(g) * u`. The gate decides *how much* of `u` passes (almost nothing
# for `g` well below 0, about `g` times `u` for `g` well above 0); `u` carries the sign and the size.
# Each feature is thus a product of two projections of the same token, not one projection bent by
# an activation. In Shazeer's experiments such gated units reached a lower loss than the GELU MLP
# at the same parameter count.

# %%
import matplotlib.pyplot as plt

from glm3_teach.fonts import use_cjk_font

use_cjk_font()


def draw_activations():
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = torch.linspace(-4, 4, 401)
    left.plot(xs, torch.relu(xs), "k:", label="ReLU")
    left.plot(xs, gelu(xs), label="GELU  x·Φ(x)")
    left.plot(xs, silu(xs), label="SiLU  x·σ(x)")
    left.axhline(0, color="grey", lw=0.5)
    left.set(title="激活函数 activation functions", xlabel="x", ylim=(-1, 4))
    left.legend()
    g, u = torch.meshgrid(torch.linspace(-4, 4, 201), torch.linspace(-4, 4, 201), indexing="xy")
    image = right.imshow(silu(g) * u, origin="lower", extent=(-4, 4, -4, 4), cmap="RdBu_r", vmin=-12, vmax=12)
    right.contour(g, u, silu(g) * u, levels=[-8, -4, -1, 0, 1, 4, 8], colors="k", linewidths=0.5)
    right.set(title="门控单元 the gate: silu(g) · u", xlabel="gate g = x·W_gate (SiLU applied)",
              ylabel="up u = x·W_up (linear)")
    fig.colorbar(image, ax=right)
    fig.tight_layout()
    return fig


activations_figure = draw_activations()
plt.show()


# %% [markdown]
# Now both MLPs as modules. Neither has biases, as in ChatGLM3 (`add_bias_linear: false`; GPT-2
# and BERT do have them). The SwiGLU version uses the names of the formula (LLaMA's names too):
# `gate_proj`, `up_proj`, `down_proj`.

# %%
class GeluMLP(nn.Module):
    """GPT-2 style FFN without biases: ``[..., hidden] -> [..., inner] -> [..., hidden]``."""

    def __init__(self, hidden_size: int, inner_size: int):
        super().__init__()
        self.fc_in = nn.Linear(hidden_size, inner_size, bias=False)
        self.fc_out = nn.Linear(inner_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(gelu(self.fc_in(x)))


class SwiGLUMLP(nn.Module):
    """SwiGLU FFN with separate gate and up matrices: ``[..., hidden] -> [..., ffn] -> [..., hidden]``."""

    def __init__(self, hidden_size: int, ffn_hidden_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, ffn_hidden_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, ffn_hidden_size, bias=False)
        self.down_proj = nn.Linear(ffn_hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(silu(self.gate_proj(x)) * self.up_proj(x))  # [..., ffn] -> [..., hidden]


torch.manual_seed(0)
x = torch.randn(2, 5, 64)                                   # [batch, seq, hidden]
print("GeluMLP:", list(GeluMLP(64, 256)(x).shape), "| SwiGLUMLP:", list(SwiGLUMLP(64, 171)(x).shape))

# %% [markdown]
# ChatGLM3 stores `gate_proj` and `up_proj` as **one** matrix, `dense_h_to_4h`, with
# `2 * ffn_hidden_size` output rows: the **gate is the first half**, rows `[0, ffn)`, and the up
# projection the second half (a Linear weight is `[out, in]`, so the two stack along dim 0). One
# matmul then makes both, and `swiglu` cuts its output in two. Load our SwiGLU MLP into the package's
# `MLP` and check; then swap the halves to see that the order is not a detail:

# %% tags=["nbval-check-output"]
from glm3_teach.layers import MLP, swiglu
from glm3_teach.model import ChatGLMConfig

small = ChatGLMConfig(num_layers=1, hidden_size=64, ffn_hidden_size=171, kv_channels=16, num_attention_heads=4,
                      multi_query_group_num=2, padded_vocab_size=100, seq_length=64)
ours = SwiGLUMLP(small.hidden_size, small.ffn_hidden_size)
package_mlp = MLP(small)
with torch.no_grad():
    fused = torch.cat([ours.gate_proj.weight, ours.up_proj.weight], dim=0)  # [2*ffn, hidden], gate rows first
    package_mlp.dense_h_to_4h.weight.copy_(fused)
    package_mlp.dense_4h_to_h.weight.copy_(ours.down_proj.weight)
    torch.testing.assert_close(package_mlp(x), ours(x))
    print("gate first: the package MLP equals our SwiGLUMLP")
    package_mlp.dense_h_to_4h.weight.copy_(torch.cat([ours.up_proj.weight, ours.gate_proj.weight], dim=0))
    swapped = (package_mlp(x) - ours(x)).abs().max().item() / ours(x).abs().max().item()
print(f"up first: largest difference {swapped:.0%} of the largest output")
assert swapped > 0.3

# %% [markdown]
# A checkpoint converted with the halves swapped (say, from a model that stores gate and up
# separately) loads without any error and produces nonsense. The package keeps `dense_h_to_4h`
# exactly as ChatGLM3 stores it, so a real checkpoint needs no reordering.
#
# ## 5. How wide? 13696, counted
#
# A GELU MLP of inner width `4h` has two `h × 4h` matrices: `8h²` parameters. SwiGLU of width `f`
# has three `h × f` matrices: `3hf`. For equal parameters (and equal FLOPs per token, which are
# 2 × parameters for a matmul) `f = 8h/3`; Shazeer's paper shrank the width this way, and LLaMA-7B
# uses `8/3 · 4096` rounded up to a multiple of 256, **11008**. You may read that ChatGLM3's
# **13696** is that same 8/3 rule. It is not: `8/3 · 4096 ≈ 10923`, and `13696 = 107 · 128 ≈ 3.34 h`.
# ChatGLM3 spends a quarter more on its FFN than the 4x GELU MLP does:

# %% tags=["nbval-check-output"]
h = 4096
gelu_params = 2 * h * (4 * h)
widths = {"8h/3, rounded up": math.ceil(8 * h / 3), "LLaMA-7B": 256 * math.ceil(8 * h / 3 / 256),
          "ChatGLM3-6B": 13696}
print(f"{'GELU MLP, 4h':>24}: inner {4 * h:>6,}   params {gelu_params:>12,}   ratio 1.0000")
for name, f in widths.items():
    print(f"{'SwiGLU, ' + name:>24}: inner {f:>6,}   params {3 * h * f:>12,}   ratio {3 * h * f / gelu_params:.4f}")
print(f"ChatGLM3's SwiGLU has the parameters of a GELU MLP of width {3 * 13696 // 2:,} = {3 * 13696 / 2 / h:.2f} h")
assert widths["LLaMA-7B"] == 11008 and abs(3 * h * widths["8h/3, rounded up"] / gelu_params - 1) < 1e-4
assert 3 * h * 13696 == 168_296_448 and abs(3 * h * 13696 / gelu_params - 1.2539) < 1e-4
assert 13696 == 107 * 128 and round(13696 / h, 2) == 3.34

# %% [markdown]
# The course's own model (`hidden_size` 256, lesson 05) does follow the 8/3 rule:
# `ffn_hidden_size = ceil(8 · 256 / 3) = 683`, so its SwiGLU costs the same as a 4x GELU MLP:

# %% tags=["nbval-check-output"]
course_h, course_ffn = 256, 683
print(f"course model: 8 * 256 / 3 = {8 * course_h / 3:.2f} -> {course_ffn}; SwiGLU {3 * course_h * course_ffn:,} "
      f"vs 4x GELU {8 * course_h**2:,} parameters (ratio {3 * course_ffn / (8 * course_h):.4f})")
assert course_ffn == math.ceil(8 * course_h / 3) and abs(3 * course_ffn / (8 * course_h) - 1) < 1e-3

# %% [markdown]
# ## 6. The residual stream, pre-norm and post-norm
#
# A **residual connection** (He et al., 2015) adds a sub-layer's output to its input instead of
# replacing it: `x = x + f(x)`. Followed from the embedding to the output, `x` is the **residual
# stream** (残差流): every attention and MLP sub-layer reads it and adds its contribution. Where the
# norm sits is the difference between two designs:
#
# - **post-norm** (the original Transformer, BERT): `x = Norm(x + f(x))`, the stream itself is
#   normalised after every sub-layer;
# - **pre-norm** (GPT-2 onwards, ChatGLM3): `x = x + f(Norm(x))`, only the sub-layer's *input* is
#   normalised and the stream is an untouched sum, so one final norm (`final_layernorm`) is needed
#   before the output layer.
#
# (ChatGLM3's config also has `apply_residual_connection_post_layernorm: false`: the skip connection
# carries `x`, not `Norm(x)`.) The picture shows one block of each; in the pre-norm stack the 28
# blocks are followed by `final_layernorm`, one more RMSNorm (`post_layer_norm: true` in the
# config), before the output layer.

# %%
from matplotlib.patches import FancyBboxPatch

STREAM_X, BRANCH_X = 1.0, 3.0


def draw_box(ax, x, y, label, colour):
    ax.add_patch(FancyBboxPatch((x - 0.6, y - 0.25), 1.2, 0.5, boxstyle="round,pad=0.03", facecolor=colour,
                                edgecolor="#555555", zorder=3))
    ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=4)


def draw_arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", lw=1.2), zorder=2)


def draw_block(ax, title, parts):
    """``parts``, bottom to top: ("branch", [(label, colour), ...]) is a residual branch that ends in
    an add; ("stream", label) is a norm applied to the stream itself; ("repeat", label) closes the
    block: everything below it is repeated once per layer."""
    y = 0.0
    for kind, content in parts:
        if kind == "repeat":
            ax.plot([STREAM_X - 0.7, BRANCH_X + 0.7], [y, y], color="#c0392b", linestyle="--", lw=1.2)
            ax.text(BRANCH_X + 0.7, y + 0.08, content, ha="right", va="bottom", color="#c0392b", fontsize=8.5)
            y += 0.45
            continue
        if kind == "stream":
            draw_box(ax, STREAM_X, y + 0.5, content, "#fde2c8")
            y += 1.0
            continue
        fork = y + 0.2
        ax.plot([STREAM_X, BRANCH_X], [fork, fork], color="k", lw=1.2)        # the branch reads the stream
        below = fork
        for label, colour in content:
            draw_arrow(ax, (BRANCH_X, below), (BRANCH_X, below + 0.5))
            draw_box(ax, BRANCH_X, below + 0.75, label, colour)
            below += 1.0
        add = below + 0.4
        ax.plot([BRANCH_X, BRANCH_X], [below, add], color="k", lw=1.2)
        draw_arrow(ax, (BRANCH_X, add), (STREAM_X + 0.15, add))               # ... and adds to it
        ax.text(STREAM_X, add, "⊕", ha="center", va="center", fontsize=20, zorder=4,
                bbox=dict(boxstyle="circle,pad=0", facecolor="white", edgecolor="none"))
        y = add + 0.2
    ax.annotate("", xy=(STREAM_X, y + 0.4), xytext=(STREAM_X, -0.4),
                arrowprops=dict(arrowstyle="->", lw=3, color="#aaaaaa"), zorder=1)
    ax.text(STREAM_X - 0.3, -0.3, "残差流\nresidual stream", ha="right", va="bottom", fontsize=8, color="#666666")
    ax.set(xlim=(-0.8, 4), ylim=(-0.5, y + 0.5), title=title)
    ax.axis("off")


NORM, ATTN, FFN = "#dbe9f6", "#d9f0d3", "#eadcf2"
fig, (pre_ax, post_ax) = plt.subplots(1, 2, figsize=(10, 5.5))
draw_block(pre_ax, "pre-norm 前置归一化 (ChatGLM3)",
           [("branch", [("RMSNorm", NORM), ("注意力 attention", ATTN)]),
            ("branch", [("RMSNorm", NORM), ("前馈 MLP", FFN)]),
            ("repeat", "above: one block, x 28 in ChatGLM3-6B"),
            ("stream", "final_layernorm")])
draw_block(post_ax, "post-norm 后置归一化 (Transformer 2017, BERT)",
           [("branch", [("注意力 attention", ATTN)]), ("stream", "Norm"),
            ("branch", [("前馈 MLP", FFN)]), ("stream", "Norm"),
            ("repeat", "above: one block, x N")])
top = max(pre_ax.get_ylim()[1], post_ax.get_ylim()[1])
for ax in (pre_ax, post_ax):
    ax.set_ylim(-0.5, top)  # the same scale on both sides
fig.tight_layout()
plt.show()

# %% [markdown]
# Why does it matter? Backpropagation carries the gradient down the stream. In pre-norm the stream
# is a plain sum, `x_L = x_0 + f_1 + f_2 + ...`, so the gradient reaching `x_0` always contains the
# gradient at the top unchanged, plus the branches' contributions. In post-norm every path to `x_0`
# passes through every norm, and each block multiplies the gradient by the Jacobian of
# `Norm(x + f(x))`: the norm's (about 1/scale of its input) times that of `x + f(x)` (1 plus the
# sub-layer's). Nothing holds that per-block factor at 1, so over many blocks the factors
# compound, exponentially in depth; whether the gradient then shrinks or grows depends on the
# sub-layers and their initialisation. Here, at initialisation, it grows. (This section measures
# gradients of untrained stacks; it trains nothing.)
#
# **The experiment.** Take a stack of 64 random GLM blocks (the package's, small: `hidden_size` 64),
# run it pre-norm (as `GLMBlock` does) and post-norm (the same sub-layers, the norm moved after the
# add), and measure two things:
# 1. the size (RMS) of the stream after each block, on a random input;
# 2. the **gradient gain**: how much larger the gradient at the stack's input is than the gradient at
#    its (normalised) output, for stacks of 1, 2, 4, ..., 64 blocks.
#
# Weights are drawn with std `1/sqrt(fan_in)`, which keeps each branch about as strong as the
# stream (for ChatGLM3's width, `1/sqrt(4096) ≈ 0.016`, close to the usual 0.02). The experiment runs
# on the CPU so that every machine prints the same numbers.

# %%
from glm3_teach.layers import GLMBlock
from glm3_teach.rope import build_rope_cache

DEPTH, WIDTH, SEQ = 64, 64, 16
torch.manual_seed(0)
stack = nn.ModuleList(GLMBlock(small) for _ in range(DEPTH))
with torch.no_grad():
    for module in stack.modules():
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 1 / math.sqrt(module.weight.shape[1]))
            if module.bias is not None:
                module.bias.zero_()
rope_small = build_rope_cache(SEQ, small.kv_channels // 2)  # [seq, rotary_dim // 2, 2]


def pre_norm_step(block, x):
    return block(x, rope_small, is_causal=True)[0]          # x + attn(norm(x)), then x + mlp(norm(x))


def post_norm_step(block, x):
    x = block.input_layernorm(x + block.self_attention(x, rope_small, is_causal=True)[0])
    return block.post_attention_layernorm(x + block.mlp(x))


def run_stack(step, depth, x):
    """Stream RMS after each block, and the output normalised (post-norm's already is)."""
    rms = []
    for block in stack[:depth]:
        x = step(block, x)
        rms.append(x.detach().pow(2).mean().sqrt().item())
    return rms, RMSNorm(WIDTH)(x) if step is pre_norm_step else x


def gradient_gain(step, depth):
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, SEQ, WIDTH, generator=generator).requires_grad_()
    direction = torch.randn(4, SEQ, WIDTH, generator=generator)   # d loss / d output
    _, out = run_stack(step, depth, x0)
    (out * direction).sum().backward()
    return (x0.grad.norm() / direction.norm()).item()


steps = {"pre-norm": pre_norm_step, "post-norm": post_norm_step}
stream_rms = {name: run_stack(step, DEPTH, torch.randn(4, SEQ, WIDTH, generator=torch.Generator().manual_seed(1)))[0]
              for name, step in steps.items()}
depths = [1, 2, 4, 8, 16, 32, 64]
gains = {name: [gradient_gain(step, d) for d in depths] for name, step in steps.items()}

# %% tags=["nbval-check-output"]
print("stream RMS after blocks 1, 16, 32, 64:")
for name, rms in stream_rms.items():
    print(f"  {name:>9}: " + "  ".join(f"{rms[i - 1]:.2g}" for i in (1, 16, 32, 64)))
print("gradient gain |d loss/d input| / |d loss/d output| for depths", depths)
for name, values in gains.items():
    print(f"  {name:>9}: " + "  ".join(f"{v:.2g}" for v in values))
assert max(abs(r - 1) for r in stream_rms["post-norm"]) < 1e-3         # post-norm: the stream is normalised
assert stream_rms["pre-norm"][-1] > 2 * stream_rms["pre-norm"][0]       # pre-norm: the stream grows
assert all(0.5 < g < 5 for g in gains["pre-norm"])                      # pre-norm: gain stays O(1)
assert 300 < gains["post-norm"][-1] < 3000 and gains["post-norm"][-1] > 50 * gains["pre-norm"][-1]

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for name, rms in stream_rms.items():
    left.plot(range(1, DEPTH + 1), rms, label=name)
left.set(title="残差流的大小 size of the stream", xlabel="block", ylabel="RMS of x")
left.legend()
for name, values in gains.items():
    right.plot(depths, values, "o-", label=name)
right.set(title="梯度增益 gradient gain vs depth", xlabel="number of blocks",
          ylabel="|grad at input| / |grad at output|",
          xscale="log", yscale="log")
right.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# - **Post-norm** keeps the stream at RMS 1 by construction, but the gradient at the input is
#   multiplied by a factor per block: here it is about a thousand times the output's after 64 blocks
#   (whether it grows or shrinks depends on the details, such as the initialisation; what does not
#   change is that it compounds with depth). A deep post-norm stack needs tricks: small learning
#   rates, long warmup, special initialisations.
# - **Pre-norm**, at initialisation, keeps the gradient gain near 1 at every depth. The price is visible on the left: the
#   stream grows as blocks add to it. That is why a pre-norm model ends with a final norm, and why
#   `glm3_teach.model.init_weights` shrinks the two projections that write into the stream
#   (`self_attention.dense`, `mlp.dense_4h_to_h`) by `1/sqrt(2 · num_layers)`, as GPT-2 does.
#
# ## 7. One GLM block, assembled
#
# Everything is in place. A GLM block is pre-norm with two residual adds:
#
# ```
# x = x + SelfAttention(RMSNorm_1(x))     # input_layernorm, self_attention
# x = x + MLP(RMSNorm_2(x))               # post_attention_layernorm, mlp
# ```
#
# `GLMBlock.forward(hidden_states, rope_cache, mask=None, is_causal=False, kv_cache=None,
# use_cache=False, output_attentions=False)` takes `hidden_states [batch, seq, hidden_size]` and
# returns `(hidden_states, kv_cache, probs)`. The other arguments are for the attention inside; the
# model prepares them once and hands the same ones to every block:
# - `rope_cache`: the cos/sin table of lesson 02, indexed by each token's position:
#   `[batch, seq, rotary_dim // 2, 2]` (or `[seq, rotary_dim // 2, 2]` shared by the batch);
# - `mask` / `is_causal`: `is_causal=True` for a plain causal pass, or a boolean mask (True = may
#   attend) from `build_attention_mask` when a batch is padded (lesson 03);
# - `kv_cache` / `use_cache`: the keys and values of earlier tokens, for generation (exercise 3 and
#   lesson 07).
#
# Our block uses the package's attention (lesson 03) with our own norm and MLP, under ChatGLM3's
# sub-module names. The config is the course model's (lesson 05 builds four of these blocks):

# %%
from glm3_teach.attention import SelfAttention


class OurRMSNorm(nn.Module):
    """``rms_norm_naive`` with a learned weight (fine in fp32; exercise 1 makes it safe in 16 bits)."""

    def __init__(self, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm_naive(x, self.weight, self.eps)


class OurGLMBlock(nn.Module):
    """Pre-norm block: ``[batch, seq, hidden_size] -> [batch, seq, hidden_size]``."""

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.input_layernorm = OurRMSNorm(config.hidden_size, config.layernorm_epsilon)
        self.self_attention = SelfAttention(config)
        self.post_attention_layernorm = OurRMSNorm(config.hidden_size, config.layernorm_epsilon)
        self.mlp = SwiGLUMLP(config.hidden_size, config.ffn_hidden_size)

    def forward(self, hidden_states, rope_cache, mask=None, is_causal=False):
        attn_out, _, _ = self.self_attention(self.input_layernorm(hidden_states), rope_cache, mask, is_causal)
        hidden_states = hidden_states + attn_out                             # first residual add
        mlp_out = self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states + mlp_out                                       # second residual add


COURSE = ChatGLMConfig.course()  # the course model's sizes

# %% [markdown]
# Take a package block with random weights (and random norm weights, so that copying them is
# tested too), copy every tensor into ours, splitting `dense_h_to_4h` into gate and up, gate first:

# %%
from glm3_teach.model import init_weights


def load_from_glm_block(ours: OurGLMBlock, theirs: GLMBlock) -> None:
    with torch.no_grad():
        ours.input_layernorm.weight.copy_(theirs.input_layernorm.weight)
        ours.self_attention.load_state_dict(theirs.self_attention.state_dict())
        ours.post_attention_layernorm.weight.copy_(theirs.post_attention_layernorm.weight)
        gate, up = theirs.mlp.dense_h_to_4h.weight.chunk(2, dim=0)           # [2*ffn, hidden] -> 2 x [ffn, hidden]
        ours.mlp.gate_proj.weight.copy_(gate)
        ours.mlp.up_proj.weight.copy_(up)
        ours.mlp.down_proj.weight.copy_(theirs.mlp.dense_4h_to_h.weight)


torch.manual_seed(0)
package_block = GLMBlock(COURSE)
init_weights(package_block)
with torch.no_grad():
    package_block.input_layernorm.weight.uniform_(0.5, 1.5)
    package_block.post_attention_layernorm.weight.uniform_(0.5, 1.5)
our_block = OurGLMBlock(COURSE)
load_from_glm_block(our_block, package_block)
package_block, our_block = package_block.to(device).eval(), our_block.to(device).eval()

# %% [markdown]
# The input: a Chinese sentence, tokenised by the course tokenizer (lesson 01) and embedded by a
# random embedding table (the trained one comes in lesson 06). The rope cache is built the way the
# model builds it, from `RotaryEmbedding` and the position ids.

# %% tags=["nbval-check-output"]
from glm3_teach import load_tokenizer
from glm3_teach.rope import RotaryEmbedding

tokenizer = load_tokenizer()
input_ids = torch.tensor([tokenizer.encode("小猫在茶馆里喝了一杯绿茶。")])        # [batch, seq]
torch.manual_seed(1)
embedding = nn.Embedding(COURSE.padded_vocab_size, COURSE.hidden_size)
hidden_states = embedding(input_ids).detach().to(device)                       # [batch, seq, hidden]
position_ids = torch.arange(input_ids.shape[1])[None]                          # [batch, seq]
rope_cache = RotaryEmbedding(COURSE.kv_channels // 2).to(device)(COURSE.seq_length)[position_ids.to(device)]
print("input_ids", list(input_ids.shape), "-> hidden_states", list(hidden_states.shape),
      "| rope_cache", list(rope_cache.shape))

with torch.no_grad():
    ours_out = our_block(hidden_states, rope_cache, is_causal=True)
    package_out, _, _ = package_block(hidden_states, rope_cache, is_causal=True)
torch.testing.assert_close(ours_out, package_out, rtol=1e-4, atol=1e-5)
print("our GLM block equals glm3_teach.layers.GLMBlock; output", list(ours_out.shape), ours_out.dtype)


# %% [markdown]
# The two agree to float rounding (ours runs the gate and up matmuls separately, the package as one).
# From here on the course uses `glm3_teach.layers.GLMBlock`; lesson 05 stacks them into the model.
#
# ## 8. Where the parameters are
#
# Build a ChatGLM3-6B block on PyTorch's `meta` device: the shapes are real, but no memory is
# allocated, so this works on any laptop.

# %% tags=["nbval-check-output"]
def parameter_table(block: nn.Module) -> dict[str, int]:
    return {name: p.numel() for name, p in block.named_parameters()}


with torch.device("meta"):
    block_6b = GLMBlock(ChatGLMConfig.chatglm3_6b())
table_6b = parameter_table(block_6b)
total_6b = sum(table_6b.values())
for (name, count), p in zip(table_6b.items(), block_6b.parameters()):
    print(f"{name:>36} {str(list(p.shape)):>14} {count:>12,} {count / total_6b:7.2%}")
print(f"{'one ChatGLM3-6B block':>36} {'':>14} {total_6b:>12,}")
mlp_share_6b = (table_6b["mlp.dense_h_to_4h.weight"] + table_6b["mlp.dense_4h_to_h.weight"]) / total_6b
assert total_6b == 203_960_832 and 28 * total_6b == 5_710_903_296
assert table_6b["mlp.dense_h_to_4h.weight"] == 112_197_632 and table_6b["self_attention.query_key_value.bias"] == 4_608
assert abs(mlp_share_6b - 0.8251) < 1e-3

# %% [markdown]
# **82.5%** of a ChatGLM3-6B block is its MLP. Attention is cheap in parameters because of grouped
# queries: `query_key_value` makes 4096 query features but only 2 × 2 × 128 = 512 key and value
# features. The 28 blocks hold 5,710,903,296 of the model's 6,243,584,000 parameters. The course
# block, for comparison:

# %% tags=["nbval-check-output"]
table_course = parameter_table(GLMBlock(COURSE))
total_course = sum(table_course.values())
mlp_share_course = (table_course["mlp.dense_h_to_4h.weight"] + table_course["mlp.dense_4h_to_h.weight"]) / total_course
print(f"one course block: {total_course:,} parameters, {mlp_share_course:.1%} in the MLP; "
      f"a ChatGLM3-6B block is {total_6b / total_course:,.0f} times larger")
h, f, qkv_out = COURSE.hidden_size, COURSE.ffn_hidden_size, (4 + 2 * 2) * 64
assert total_course == qkv_out * h + qkv_out + 4 * 64 * h + 3 * h * f + 2 * h == 722_176
assert abs(mlp_share_course - 0.7263) < 1e-3


# %%
def draw_shares():
    groups = {"query_key_value": ["self_attention.query_key_value.weight", "self_attention.query_key_value.bias"],
              "dense": ["self_attention.dense.weight"], "dense_h_to_4h": ["mlp.dense_h_to_4h.weight"],
              "dense_4h_to_h": ["mlp.dense_4h_to_h.weight"],
              "RMSNorm x2": ["input_layernorm.weight", "post_attention_layernorm.weight"]}
    colours = ["#9ecae1", "#4292c6", "#c994c7", "#88419d", "#fdae6b"]
    fig, ax = plt.subplots(figsize=(10, 2.6))
    for row, (label, table) in enumerate([("ChatGLM3-6B block", table_6b), ("course block", table_course)]):
        total, left = sum(table.values()), 0.0
        for (group, names), colour in zip(groups.items(), colours):
            share = sum(table[n] for n in names) / total
            ax.barh(row, share, left=left, color=colour, label=group if row == 0 else None)
            if share > 0.05:
                ax.text(left + share / 2, row, f"{share:.0%}", ha="center", va="center")
            left += share
    ax.set_yticks([0, 1], ["ChatGLM3-6B 一个块", "课程模型 一个块"])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share of the block's parameters", title="参数分布 where a block's parameters are")
    ax.legend(ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.35), fontsize=8)
    fig.tight_layout()
    return fig


shares_figure = draw_shares()
plt.show()


# %% [markdown]
# ## Exercises
#
# ### Exercise 1: RMSNorm that is safe in 16 bits
# Write `rms_norm(x, weight, eps)` the ChatGLM3 way: compute in fp32 whatever the input dtype, and
# return the result in the input's dtype. The check compares your output **and its dtype** with
# `glm3_teach.layers.RMSNorm`, on fp32 inputs, a bf16 input, and an fp16 input whose squares
# overflow fp16.

# %%
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``[..., hidden] -> [..., hidden]`` in ``x``'s dtype, computed in fp32."""
    raise NotImplementedError


# %%
from glm3_teach.checks import Case, check


def rms_norm_reference(x, weight, eps=1e-5):
    norm = RMSNorm(weight.shape[0], eps).to(weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        return norm(x)


def run_in_dtype(fn):
    """Cast the inputs to ``dtype`` and run ``fn``; return its output (as fp32, exactly) and the
    output's dtype, so that check compares both."""
    def run(x, weight, eps, dtype):
        y = fn(x.to(dtype), weight.to(dtype), eps)
        return None if y is None else (y.float(), y.dtype)
    return run


generator = seed_everything(11)
outlier = 3 * torch.randn(2, 64, generator=generator)
outlier[:, 5] = 400.0
norm_cases = [Case(args=args, label=label) for args, label in [  # args: (x, weight, eps, dtype to run in)
    ((torch.randn(2, 3, 8, generator=generator), 1 + 0.2 * torch.randn(8, generator=generator), 1e-5, torch.float32),
     "fp32, a learned weight"),
    ((1e-3 * torch.randn(4, 8, generator=generator), torch.ones(8), 1e-5, torch.float32), "tiny x: eps matters"),
    ((2 + torch.randn(3, 16, generator=generator), torch.ones(16), 1e-6, torch.float32), "mean far from 0"),
    ((torch.randn(3, 64, generator=generator), 1 + 0.1 * torch.randn(64, generator=generator), 1e-5, torch.bfloat16),
     "bf16 in, bf16 out"),
    ((outlier, 1 + 0.1 * torch.randn(64, generator=generator), 1e-5, torch.float16),
     "fp16 with an outlier of 400: 400 ** 2 > fp16 max"),
]]
result = check("rms_norm", run_in_dtype(rms_norm), run_in_dtype(rms_norm_reference), norm_cases,
               atol=1e-5, rtol=1e-2, hint="x32 = x.float(); divide by torch.sqrt(mean of x32**2 + eps); multiply by "
                                          "weight.float(); .to(x.dtype) at the very end")


# %% [markdown]
# ### Exercise 2: SwiGLU on the fused projection
# ChatGLM3 computes gate and up in one matmul (`dense_h_to_4h`). Write `swiglu_fused(x)` that takes
# its output `[..., 2 * ffn]` and returns `silu(gate) * up`, `[..., ffn]`, where the gate is the
# **first** half of the last dim. Checked against `glm3_teach.layers.swiglu`.

# %%
def swiglu_fused(x: torch.Tensor) -> torch.Tensor:
    """``[..., 2 * ffn] -> [..., ffn]``."""
    raise NotImplementedError


# %%
generator = seed_everything(12)
swiglu_cases = [torch.tensor([[1.0, -2.0, 3.0, 4.0]]), torch.randn(2, 3, 10, generator=generator),
                torch.randn(1, 2 * COURSE.ffn_hidden_size, generator=generator)]
result = check("swiglu_fused", swiglu_fused, swiglu, swiglu_cases,
               hint="gate, up = x.chunk(2, dim=-1); the SiLU goes on the gate only")


# %% [markdown]
# ### Exercise 3: one token at a time, with a KV cache
# When a model generates text it feeds one new token per step and keeps the keys and values of the
# earlier tokens in a **KV cache** instead of recomputing them. Write `block_step_by_step(block,
# hidden_states, rope_cache)`: call `block` once per position `t`, with `hidden_states[:, t:t+1]`,
# the rope rows of that position, the cache from the previous step and `use_cache=True`, and
# return all the outputs concatenated along the sequence. The result must equal one causal pass
# over the whole sequence. (For a single new token, which mask does it need?)

# %%
def block_step_by_step(block: GLMBlock, hidden_states: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
    """``hidden_states [batch, seq, hidden]``, ``rope_cache [seq, rotary_dim // 2, 2]`` -> ``[batch, seq, hidden]``."""
    raise NotImplementedError


# %%
def full_sequence(block, hidden_states, rope_cache):
    return block(hidden_states, rope_cache, is_causal=True)[0]


generator = seed_everything(13)
blocks = {"small block": GLMBlock(small).eval(), "course block": GLMBlock(COURSE).eval()}
init_weights(blocks["course block"])
step_cases = [  # (which block, hidden_states [batch, seq, hidden], rope_cache [seq, rotary_dim // 2, 2])
    ("small block", torch.randn(1, 5, small.hidden_size, generator=generator),
     build_rope_cache(5, small.kv_channels // 2)),
    ("course block", torch.randn(2, 7, COURSE.hidden_size, generator=generator),
     build_rope_cache(7, COURSE.kv_channels // 2)),
]
with torch.no_grad():
    result = check("block_step_by_step", lambda name, x, rope: block_step_by_step(blocks[name], x, rope),
                   lambda name, x, rope: full_sequence(blocks[name], x, rope), step_cases, atol=1e-5, rtol=1e-4,
                   hint="block(hidden_states[:, t:t+1], rope_cache[t:t+1], kv_cache=cache, use_cache=True) returns "
                        "(out, cache, probs); one query that may see every cached key needs no mask at all")

# %% [markdown]
# Solutions are in `notebooks/solutions/04_ffn_block_solutions.ipynb`; try first.
#
# ## Summary
# - **LayerNorm** centres, divides by the standard deviation, scales and shifts. **RMSNorm** only
#   divides by the root mean square and scales: no mean, no bias, 4 passes over the tensor instead
#   of 7 (6 tensor ops instead of 9) and one reduction instead of two. Both ignore the input's scale; only LayerNorm ignores a shift.
# - ChatGLM3 computes RMSNorm **in fp32** and casts back: in fp16 an activation of 400 squared
#   overflows and wipes the token out; in bf16 the fp32 path gives the correctly rounded answer.
# - The FFN works on each token alone. ChatGLM3's is **SwiGLU**: `silu(gate) * up`, then
#   `dense_4h_to_h`, with gate and up fused in `dense_h_to_4h`, **gate first**. `ffn_hidden_size`
#   13696 is not the 8/3 rule (10923; LLaMA's 11008): ChatGLM3's MLP has 1.25x the parameters of a
#   4x GELU MLP. The course model's 683 follows the 8/3 rule.
# - **Pre-norm** (`x + f(Norm(x))`) keeps the gradient gain near 1 at any depth at initialisation;
#   post-norm multiplies it by a factor per block, compounding with depth. The pre-norm stream grows, hence the final norm and the scaled init.
# - A **GLM block** is `x + Attn(RMSNorm(x))`, then `+ MLP(RMSNorm(x))`. One ChatGLM3-6B block has
#   203,960,832 parameters, 82.5% of them in the MLP; a course block has 722,176.
#
# Next: **05 · 组装模型 The whole model**, where 28 (or 4) of these blocks become a language model.
