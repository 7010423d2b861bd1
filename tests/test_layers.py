"""RMSNorm (fp32 inside), SwiGLU with the gate first, and the pre-norm GLM block.

References: hand arithmetic on tiny vectors and the formulas of chatglm3_facts.md in PyTorch ops.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from glm3_teach.layers import MLP, GLMBlock, RMSNorm, swiglu
from glm3_teach.model import ChatGLMConfig
from glm3_teach.rope import build_rope_cache


def tiny_config(**overrides) -> ChatGLMConfig:
    sizes = dict(num_layers=1, hidden_size=16, ffn_hidden_size=24, kv_channels=8, num_attention_heads=2,
                 multi_query_group_num=1, padded_vocab_size=50, seq_length=32)
    return ChatGLMConfig(**{**sizes, **overrides})


def test_rmsnorm_divides_by_the_root_mean_square_without_subtracting_the_mean():
    norm = RMSNorm(2, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0]))
    rms = math.sqrt((3.0**2 + 4.0**2) / 2 + 1e-5)
    got = norm(torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(got, torch.tensor([[3.0 / rms, 2 * 4.0 / rms]]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rmsnorm_computes_in_fp32_and_casts_back(dtype):
    torch.manual_seed(0)
    norm = RMSNorm(64).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(64))
    x = (10 * torch.randn(3, 64)).to(dtype)
    x32 = x.float()
    expected = (norm.weight.float() * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5))).to(dtype)
    got = norm(x)
    assert got.dtype == dtype
    assert torch.equal(got, expected)


def test_swiglu_applies_silu_to_the_first_half_only():
    x = torch.tensor([[1.0, -2.0, 3.0, 4.0]])  # gate = [1, -2], up = [3, 4]
    silu = lambda v: v / (1 + math.exp(-v))  # noqa: E731
    torch.testing.assert_close(swiglu(x), torch.tensor([[silu(1.0) * 3.0, silu(-2.0) * 4.0]]))


def test_mlp_gate_is_the_first_half_of_dense_h_to_4h():
    torch.manual_seed(1)
    mlp = MLP(tiny_config())
    x = torch.randn(2, 3, 16)
    w_in, w_out = mlp.dense_h_to_4h.weight, mlp.dense_4h_to_h.weight
    gate, up = x @ w_in[:24].T, x @ w_in[24:].T
    torch.testing.assert_close(mlp(x), (F.silu(gate) * up) @ w_out.T)
    assert not torch.allclose(mlp(x), (F.silu(up) * gate) @ w_out.T)
    assert mlp.dense_h_to_4h.bias is None and mlp.dense_4h_to_h.bias is None
    assert w_in.shape == (48, 16) and w_out.shape == (16, 24)


def test_glm_block_is_pre_norm_with_two_residual_adds():
    torch.manual_seed(2)
    block = GLMBlock(tiny_config())
    with torch.no_grad():
        block.input_layernorm.weight.uniform_(0.5, 1.5)
        block.post_attention_layernorm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 16)
    rope = build_rope_cache(5, 4)
    mid = x + block.self_attention(block.input_layernorm(x), rope, is_causal=True)[0]
    expected = mid + block.mlp(block.post_attention_layernorm(mid))
    torch.testing.assert_close(block(x, rope, is_causal=True)[0], expected)


def test_glm_block_parameter_names_are_the_checkpoint_names():
    names = set(GLMBlock(tiny_config()).state_dict())
    assert names == {"input_layernorm.weight", "self_attention.query_key_value.weight",
                     "self_attention.query_key_value.bias", "self_attention.dense.weight",
                     "post_attention_layernorm.weight", "mlp.dense_h_to_4h.weight", "mlp.dense_4h_to_h.weight"}


def test_hidden_dropout_acts_in_training_only():
    block = GLMBlock(tiny_config(hidden_dropout=0.5))
    x, rope = torch.randn(1, 4, 16), build_rope_cache(4, 4)
    block.eval()
    assert torch.equal(block(x, rope, is_causal=True)[0], block(x, rope, is_causal=True)[0])
    block.train()
    torch.manual_seed(3)
    assert not torch.equal(block(x, rope, is_causal=True)[0], block(x, rope, is_causal=True)[0])
