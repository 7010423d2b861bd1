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


def test_rmsnorm_in_fp16_survives_activations_whose_squares_overflow():
    # 400**2 = 160000 > 65504, the largest fp16: squaring in fp16 would give inf and zero the output.
    x = torch.full((1, 8), 400.0, dtype=torch.float16)
    x[0, 1::2] = -3.0
    got = RMSNorm(8).half()(x)
    rms = math.sqrt((4 * 400.0**2 + 4 * 3.0**2) / 8 + 1e-5)
    torch.testing.assert_close(got.float(), x.float() / rms, rtol=1e-3, atol=1e-3)


def test_rmsnorm_ignores_scale_but_not_shift():
    torch.manual_seed(4)
    norm, x = RMSNorm(32), torch.randn(5, 32)
    torch.testing.assert_close(norm(7.5 * x), norm(x), rtol=1e-4, atol=1e-5)  # exact but for eps
    assert not torch.allclose(norm(x + 1.0), norm(x), atol=1e-2)


def test_rmsnorm_rejects_an_input_of_the_wrong_width():
    with pytest.raises(ValueError, match="last dim"):
        RMSNorm(16)(torch.randn(2, 8))


def test_swiglu_rejects_an_odd_width():
    with pytest.raises(ValueError, match="even last dim"):
        swiglu(torch.randn(2, 5))


def test_chatglm3_6b_block_has_203_960_832_parameters():
    # chatglm3_facts.md: 18,874,368 + 4,608 + 16,777,216 + 112,197,632 + 56,098,816 + 8,192
    with torch.device("meta"):
        block = GLMBlock(ChatGLMConfig.chatglm3_6b())
    assert sum(p.numel() for p in block.parameters()) == 203_960_832
    assert block.mlp.dense_h_to_4h.weight.shape == (27392, 4096)


def test_glm_block_fed_one_token_at_a_time_with_kv_cache_matches_the_full_sequence():
    torch.manual_seed(5)
    block = GLMBlock(tiny_config(multi_query_group_num=2, num_attention_heads=4, kv_channels=4))
    x, rope = torch.randn(2, 6, 16), build_rope_cache(6, 2)
    full = block(x, rope, is_causal=True)[0]
    cache, steps = None, []
    for t in range(6):
        out, cache, _ = block(x[:, t:t + 1], rope[t:t + 1], kv_cache=cache, use_cache=True)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    assert cache[0].shape == (2, 2, 6, 4)  # [batch, num_kv_groups, seq, head_dim]


def test_glm_block_with_left_padding_leaves_the_real_tokens_unchanged():
    from glm3_teach.attention import build_attention_mask

    torch.manual_seed(6)
    block = GLMBlock(tiny_config())
    x = torch.randn(1, 4, 16)
    alone = block(x, build_rope_cache(4, 4), is_causal=True)[0]
    padded = torch.cat([torch.randn(1, 2, 16), x], dim=1)                   # two pads in front
    positions = torch.tensor([[0, 0, 0, 1, 2, 3]])                           # real tokens start at 0
    rope = build_rope_cache(6, 4)[positions]                                 # [1, 6, 2, 2]
    mask = build_attention_mask(torch.tensor([[0, 0, 1, 1, 1, 1]]))
    torch.testing.assert_close(block(padded, rope, mask)[0][:, 2:], alone)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_glm_block_keeps_the_model_dtype(dtype):
    block = GLMBlock(tiny_config()).to(dtype)
    out = block(torch.randn(1, 3, 16).to(dtype), build_rope_cache(3, 4, dtype=dtype), is_causal=True)[0]
    assert out.dtype == dtype and torch.isfinite(out).all()
