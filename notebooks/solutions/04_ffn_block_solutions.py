# %% [markdown]
# # 04 · 前馈网络与归一化 FFN, RMSNorm and the GLM block: solutions
#
# Worked answers to the exercises of lesson 04. Each check is asserted, so the course's test run
# fails if a solution stops matching the package. The check cases are the lesson's.

# %%
import torch
import torch.nn.functional as F

from glm3_teach import seed_everything
from glm3_teach.checks import Case, check
from glm3_teach.layers import GLMBlock, RMSNorm, swiglu
from glm3_teach.model import ChatGLMConfig, init_weights
from glm3_teach.rope import build_rope_cache

small = ChatGLMConfig(num_layers=1, hidden_size=64, ffn_hidden_size=171, kv_channels=16, num_attention_heads=4,
                      multi_query_group_num=2, padded_vocab_size=100, seq_length=64)
COURSE = ChatGLMConfig.course()  # the course model's sizes


# %% [markdown]
# ## Exercise 1: RMSNorm that is safe in 16 bits
# `x.float()` first, so the squares are fp32 (no overflow, 24 significant bits); the weight joins
# in fp32 too; one cast back to the input's dtype at the very end is the only rounding to 16 bits.

# %% tags=["nbval-check-output"]
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x32 = x.float()                                                   # [..., hidden] in fp32
    inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)  # [..., 1]
    return (weight.float() * x32 * inv_rms).to(x.dtype)


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
assert check("rms_norm", run_in_dtype(rms_norm), run_in_dtype(rms_norm_reference), norm_cases, atol=1e-5, rtol=1e-2)


# %% [markdown]
# The check does catch the two easy mistakes: squaring in the input's dtype (the fp16 case comes
# out as zeros) and forgetting the cast back (the bf16 case returns fp32):

# %% tags=["nbval-check-output"]
def rms_norm_in_input_dtype(x, weight, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def rms_norm_without_cast(x, weight, eps=1e-5):
    x32 = x.float()
    return weight.float() * x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)


for wrong in (rms_norm_in_input_dtype, rms_norm_without_cast):
    assert not check("rms_norm", run_in_dtype(wrong), run_in_dtype(rms_norm_reference), norm_cases,
                     atol=1e-5, rtol=1e-2)


# %% [markdown]
# ## Exercise 2: SwiGLU on the fused projection
# `chunk(2, dim=-1)` cuts the last dim into the gate half (first) and the up half (second).

# %% tags=["nbval-check-output"]
def swiglu_fused(x: torch.Tensor) -> torch.Tensor:
    gate, up = x.chunk(2, dim=-1)                                     # 2 x [..., ffn]
    return F.silu(gate) * up                                          # [..., ffn]


generator = seed_everything(12)
swiglu_cases = [torch.tensor([[1.0, -2.0, 3.0, 4.0]]), torch.randn(2, 3, 10, generator=generator),
                torch.randn(1, 2 * COURSE.ffn_hidden_size, generator=generator)]
assert check("swiglu_fused", swiglu_fused, swiglu, swiglu_cases)
assert not check("swiglu_fused", lambda x: F.silu(x.chunk(2, dim=-1)[1]) * x.chunk(2, dim=-1)[0], swiglu, swiglu_cases)


# %% [markdown]
# ## Exercise 3: one token at a time, with a KV cache
# Each step passes one position and that position's rope row, and gets back the cache grown by one.
# No mask: a single query may attend to every key in the cache, all of which are in its past (an
# `is_causal=True` here would be refused, since one query and many keys is not a square causal mask).

# %% tags=["nbval-check-output"]
def block_step_by_step(block: GLMBlock, hidden_states: torch.Tensor, rope_cache: torch.Tensor) -> torch.Tensor:
    kv_cache, outputs = None, []
    for t in range(hidden_states.shape[1]):
        out, kv_cache, _ = block(hidden_states[:, t:t + 1], rope_cache[t:t + 1], kv_cache=kv_cache, use_cache=True)
        outputs.append(out)                                           # [batch, 1, hidden]
    return torch.cat(outputs, dim=1)                                  # [batch, seq, hidden]


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
    assert check("block_step_by_step", lambda name, x, rope: block_step_by_step(blocks[name], x, rope),
                 lambda name, x, rope: full_sequence(blocks[name], x, rope), step_cases, atol=1e-5, rtol=1e-4)

# %% [markdown]
# After the last step the cache holds every position, stored per KV group, not per query head:

# %% tags=["nbval-check-output"]
with torch.no_grad():
    _, kv_cache, _ = blocks["course block"](step_cases[1][1], step_cases[1][2], is_causal=True, use_cache=True)
keys, values = kv_cache
print("keys", list(keys.shape), "values", list(values.shape), "= [batch, num_kv_groups, seq, head_dim]")
assert keys.shape == values.shape == (2, COURSE.num_kv_groups, 7, COURSE.kv_channels)
