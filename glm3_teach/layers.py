"""RMSNorm, the SwiGLU feed-forward network, and the GLM block that joins them with attention.

Taught in lesson 04 (前馈网络与归一化 FFN, RMSNorm, the GLM block).

- ``RMSNorm``: ``x / sqrt(mean(x²) + eps) * weight``, no mean subtraction, no bias. It is
  computed in fp32 and cast back to the input dtype, as ChatGLM3 does, so a bf16 model
  normalises accurately.
- ``MLP``: SwiGLU. ``dense_h_to_4h`` makes ``2 * ffn_hidden_size`` features; the **first**
  half is the gate (SiLU applied), the second half the linear "up" part; their product goes
  through ``dense_4h_to_h``.
- ``GLMBlock``: pre-norm residual block,
  ``x = x + Attn(RMSNorm(x))`` then ``x = x + MLP(RMSNorm(x))``, residual adds in the model dtype.

What it leaves out: the behaviour flags ChatGLM3 sets off (LayerNorm instead of RMSNorm,
residual taken after the norm, fp32 residual stream); ``ChatGLMConfig`` refuses them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glm3_teach.attention import SelfAttention
from glm3_teach.config import ChatGLMConfig
from glm3_teach.kv_cache import KVCacheLayer, LayerKV


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim: ``[..., hidden_size] -> [..., hidden_size]``."""

    def __init__(self, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"RMSNorm({self.weight.shape[0]}) got an input whose last dim is {x.shape[-1]} "
                             f"(shape {list(x.shape)}); the norm's hidden_size must equal the last dim of x")
        x32 = x.float()
        inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # [..., 1]
        return (self.weight.float() * (x32 * inv_rms)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps:g}"


def swiglu(x: torch.Tensor) -> torch.Tensor:
    """``[..., 2*ffn] -> [..., ffn]``: ``silu(first half) * second half``.

    >>> swiglu(torch.tensor([0.0, 2.0, 5.0, 7.0]))  # gate [0, 2], up [5, 7]: [silu(0)*5, silu(2)*7]
    tensor([ 0.0000, 12.3312])
    """
    if x.shape[-1] % 2:
        raise ValueError(f"swiglu needs an even last dim (gate half | up half), got shape {list(x.shape)}; "
                         f"feed it the output of dense_h_to_4h, which is 2 * ffn_hidden_size wide")
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


class MLP(nn.Module):
    """SwiGLU feed-forward: ``[batch, seq, hidden_size] -> [batch, seq, hidden_size]``."""

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, 2 * config.ffn_hidden_size, bias=config.add_bias_linear)
        self.dense_4h_to_h = nn.Linear(config.ffn_hidden_size, config.hidden_size, bias=config.add_bias_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(swiglu(self.dense_h_to_4h(x)))  # [b, s, H] -> [b, s, 2F] -> [b, s, F] -> [b, s, H]


class GLMBlock(nn.Module):
    """One transformer layer of ChatGLM3 (``transformer.encoder.layers.N``)."""

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.config = config
        self.input_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)
        self.self_attention = SelfAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)
        self.mlp = MLP(config)

    def forward(self, hidden_states: torch.Tensor, rope_cache: torch.Tensor, mask: torch.Tensor | None = None,
                is_causal: bool = False, kv_cache: LayerKV | KVCacheLayer | None = None, use_cache: bool = False,
                output_attentions: bool = False) -> tuple[torch.Tensor, LayerKV | KVCacheLayer | None,
                                                          torch.Tensor | None]:
        """``[batch, seq, hidden_size] -> ([batch, seq, hidden_size], kv_cache, probs)``.

        The arguments are passed on to ``SelfAttention.forward``; see there.
        """
        p = self.config.hidden_dropout if self.training else 0.0
        attn_out, new_cache, probs = self.self_attention(self.input_layernorm(hidden_states), rope_cache, mask,
                                                         is_causal, kv_cache, use_cache, output_attentions)
        hidden_states = hidden_states + F.dropout(attn_out, p=p, training=self.training)
        mlp_out = self.mlp(self.post_attention_layernorm(hidden_states))
        hidden_states = hidden_states + F.dropout(mlp_out, p=p, training=self.training)
        return hidden_states, new_cache, probs
