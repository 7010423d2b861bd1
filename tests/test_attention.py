"""Attention: masks (True = may attend), explicit == fused, the fused QKV layout and grouped-query attention.

References: hand-written masks and softmax numbers, PyTorch's own ops, and an MHA module
whose K/V weights are the GQA groups repeated by hand.
"""

import math

import pytest
import torch

from glm3_teach.attention import (SelfAttention, build_attention_mask, causal_mask, explicit_attention,
                                  fused_attention, repeat_kv, split_qkv)
from glm3_teach.model import ChatGLMConfig
from glm3_teach.rope import build_rope_cache

T, F = True, False


def tiny_config(**overrides) -> ChatGLMConfig:
    sizes = dict(num_layers=1, hidden_size=32, ffn_hidden_size=48, kv_channels=8, num_attention_heads=4,
                 multi_query_group_num=2, padded_vocab_size=50, seq_length=32)
    return ChatGLMConfig(**{**sizes, **overrides})


def test_causal_mask_with_a_past_lets_each_query_see_the_past_and_itself():
    expected = torch.tensor([[T, T, T, F],
                             [T, T, T, T]])
    assert torch.equal(causal_mask(2, 4), expected)
    assert torch.equal(causal_mask(3), torch.tensor([[T, F, F], [T, T, F], [T, T, T]]))


def test_left_padding_hides_pad_keys_and_opens_pad_query_rows_like_chatglm3():
    padding_mask = torch.tensor([[0, 0, 1, 1]])
    expected = torch.tensor([[T, T, T, T],   # pad query: every key (avoids NaN, as ChatGLM3 does)
                             [T, T, T, T],   # pad query
                             [F, F, T, F],   # first real token sees itself only
                             [F, F, T, T]])
    assert torch.equal(build_attention_mask(padding_mask), expected[None, None])


def test_padding_mask_with_a_past_covers_the_cached_tokens():
    padding_mask = torch.tensor([[0, 1, 1, 1, 1]])  # 3 cached (first a pad) + 2 new
    expected = torch.tensor([[F, T, T, T, F],
                             [F, T, T, T, T]])
    assert torch.equal(build_attention_mask(padding_mask, q_len=2, past_len=3), expected[None, None])


def test_explicit_attention_matches_a_hand_computed_softmax():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).view(1, 1, 2, 2)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[10.0, 0.0], [0.0, 10.0]]).view(1, 1, 2, 2)
    out, probs = explicit_attention(q, k, v)
    a, b = math.exp(1 / math.sqrt(2)), 1.0  # query 0: scores 1/sqrt(2) and 0
    c, d = 1.0, math.exp(2 / math.sqrt(2))  # query 1: scores 0 and 2/sqrt(2)
    expected_probs = torch.tensor([[a / (a + b), b / (a + b)], [c / (c + d), d / (c + d)]])
    torch.testing.assert_close(probs[0, 0], expected_probs)
    torch.testing.assert_close(out[0, 0], expected_probs * 10.0)


def test_explicit_causal_attention_puts_zero_probability_on_the_future():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 2, 5, 8).unbind(0)
    _, probs = explicit_attention(q, k, v, is_causal=True)
    assert torch.equal(probs[..., ~causal_mask(5)], torch.zeros_like(probs[..., ~causal_mask(5)]))
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 5))


def _mask_cases():
    left_padded = build_attention_mask(torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]))
    return {
        "no mask": dict(q_len=6, k_len=6, mask=None, is_causal=False),
        "causal": dict(q_len=6, k_len=6, mask=None, is_causal=True),
        "left padded": dict(q_len=6, k_len=6, mask=left_padded, is_causal=False),
        "with past": dict(q_len=2, k_len=6, mask=causal_mask(2, 6)[None, None], is_causal=False),
    }


@pytest.mark.parametrize("case", list(_mask_cases()))
def test_explicit_and_fused_attention_agree_within_1e_5(case):
    c = _mask_cases()[case]
    torch.manual_seed(1)
    q = torch.randn(2, 4, c["q_len"], 16)
    k, v = torch.randn(2, 2, 4, c["k_len"], 16).unbind(0)
    explicit, probs = explicit_attention(q, k, v, c["mask"], c["is_causal"])
    fused = fused_attention(q, k, v, c["mask"], c["is_causal"])
    torch.testing.assert_close(explicit, fused, rtol=0, atol=1e-5)
    assert not torch.isnan(explicit).any() and not torch.isnan(fused).any()
    allowed = c["mask"] if c["mask"] is not None else torch.ones(c["q_len"], c["k_len"], dtype=torch.bool)
    allowed = allowed & causal_mask(6) if c["is_causal"] else allowed
    scores = (q @ k.transpose(-1, -2) / math.sqrt(16)).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(probs, torch.softmax(scores, dim=-1))


def test_repeat_kv_gives_head_h_the_group_h_floor_divided_by_heads_per_group():
    kv = torch.randn(2, 2, 3, 4)  # 2 groups
    expanded = repeat_kv(kv, 16)  # ChatGLM3-6B: 32 heads, 2 groups
    assert expanded.shape == (2, 32, 3, 4)
    for h in range(32):
        assert torch.equal(expanded[:, h], kv[:, h // 16])
    assert torch.equal(expanded, kv.repeat_interleave(16, dim=1))


def test_split_qkv_reads_all_q_heads_then_k_groups_then_v_groups():
    heads, groups, d = 4, 2, 3
    width = heads * d + 2 * groups * d
    mixed = torch.arange(float(width)).expand(1, 2, width)  # feature index as value, 2 tokens
    q, k, v = split_qkv(mixed, heads, groups, d)
    assert q.shape == (1, heads, 2, d) and k.shape == v.shape == (1, groups, 2, d)
    for h in range(heads):
        assert q[0, h, 1].tolist() == [h * d + j for j in range(d)]
    for g in range(groups):
        assert k[0, g, 0].tolist() == [heads * d + g * d + j for j in range(d)]
        assert v[0, g, 0].tolist() == [heads * d + groups * d + g * d + j for j in range(d)]


def test_grouped_query_attention_equals_multi_head_attention_with_repeated_kv_weights():
    torch.manual_seed(2)
    gqa = SelfAttention(tiny_config())  # 4 heads, 2 groups, head_dim 8
    mha = SelfAttention(tiny_config(multi_query_attention=False))  # 4 KV heads
    d, n_rep = 8, 2
    w, b = gqa.query_key_value.weight.detach(), gqa.query_key_value.bias.detach()
    rows = list(range(32))  # Q rows unchanged
    for part in (32, 48):  # start of K rows, start of V rows
        rows += [part + (h // n_rep) * d + j for h in range(4) for j in range(d)]
    with torch.no_grad():
        mha.query_key_value.weight.copy_(w[rows])
        mha.query_key_value.bias.copy_(b[rows])
        mha.dense.weight.copy_(gqa.dense.weight)
    x = torch.randn(2, 5, 32)
    rope = build_rope_cache(5, 4)
    out_gqa = gqa(x, rope, is_causal=True)[0]
    out_mha = mha(x, rope, is_causal=True)[0]
    torch.testing.assert_close(out_gqa, out_mha, rtol=0, atol=1e-6)


def test_self_attention_caches_keys_per_group_and_returns_probabilities_on_request():
    attn = SelfAttention(tiny_config())
    x = torch.randn(3, 5, 32)
    out, cache, probs = attn(x, build_rope_cache(5, 4), is_causal=True, use_cache=True, output_attentions=True)
    assert out.shape == (3, 5, 32)
    assert cache[0].shape == cache[1].shape == (3, 2, 5, 8)  # [batch, groups, seq, head_dim]
    assert probs.shape == (3, 4, 5, 5)


def test_only_query_key_value_has_a_bias_in_chatglm3():
    attn = SelfAttention(tiny_config())
    assert attn.query_key_value.bias is not None and attn.query_key_value.bias.shape == (32 + 2 * 2 * 8,)
    assert attn.dense.bias is None


def test_projection_wider_than_hidden_size_is_allowed_and_dense_maps_back():
    attn = SelfAttention(tiny_config(num_attention_heads=8))  # 8 * 8 = 64 != hidden_size 32
    assert attn.query_key_value.weight.shape == (64 + 2 * 2 * 8, 32)
    assert attn.dense.weight.shape == (32, 64)
    assert attn(torch.randn(1, 3, 32), build_rope_cache(3, 4), is_causal=True)[0].shape == (1, 3, 32)


def test_bad_attention_inputs_are_clear_errors():
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match="True = may attend"):
        explicit_attention(q, q, q, mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="is_causal=True needs"):
        fused_attention(q, torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4), is_causal=True)
    with pytest.raises(ValueError, match="repeat_kv"):
        fused_attention(q, torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4))
    with pytest.raises(ValueError, match="expected 4\\*3 \\+ 2\\*2\\*3 = 24"):
        split_qkv(torch.randn(1, 2, 23), 4, 2, 3)
    with pytest.raises(ValueError, match="q_len <= k_len"):
        causal_mask(4, 3)


def test_a_batch_row_of_only_padding_still_gives_every_query_a_key_so_no_nan():
    padding_mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    mask = build_attention_mask(padding_mask)
    assert mask.any(dim=-1).all()  # every query row sees at least one key
    q = torch.randn(2, 2, 3, 4)
    out, probs = explicit_attention(q, q, q, mask)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 3))


def test_explicit_attention_in_bf16_does_the_softmax_in_fp32_and_returns_bf16():
    torch.manual_seed(3)
    q, k, v = torch.randn(3, 1, 2, 6, 16).unbind(0)
    out32, probs32 = explicit_attention(q, k, v, is_causal=True)
    out16, probs16 = explicit_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
    assert out16.dtype == probs16.dtype == torch.bfloat16
    torch.testing.assert_close(probs16.float(), probs32, rtol=0, atol=2e-2)  # bf16 has ~3 significant digits
    torch.testing.assert_close(out16.float(), out32, rtol=0, atol=5e-2)


def test_self_attention_fed_a_kv_cache_gives_the_same_outputs_as_the_full_sequence():
    torch.manual_seed(4)
    attn = SelfAttention(tiny_config())
    x = torch.randn(2, 6, 32)
    rope = build_rope_cache(6, 4)
    full = attn(x, rope, is_causal=True)[0]
    first, cache, _ = attn(x[:, :4], rope[:4], is_causal=True, use_cache=True)
    rest = attn(x[:, 4:], rope[4:], mask=causal_mask(2, 6), kv_cache=cache)[0]
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, rtol=0, atol=1e-6)


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_attention_impl_switch_picks_the_path_and_both_agree(impl):
    torch.manual_seed(5)
    attn = SelfAttention(tiny_config(attention_impl=impl))
    x, rope = torch.randn(1, 5, 32), build_rope_cache(5, 4)
    out = attn(x, rope, is_causal=True)[0]
    attn.config.attention_impl = "explicit" if impl == "fused" else "fused"
    torch.testing.assert_close(attn(x, rope, is_causal=True)[0], out, rtol=0, atol=1e-5)
    attn.config.attention_impl = "flash"
    with pytest.raises(ValueError, match="attention_impl must be one of"):
        attn(x, rope, is_causal=True)


def test_fused_attention_reads_kv_groups_directly_with_the_same_numbers_as_repeat_kv():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 3, 16, generator=gen)
    k, v = torch.randn(2, 2, 7, 16, generator=gen), torch.randn(2, 2, 7, 16, generator=gen)
    mask = causal_mask(3, 7)
    grouped = fused_attention(q, k, v, mask, enable_gqa=True)
    assert torch.equal(grouped, fused_attention(q, repeat_kv(k, 2), repeat_kv(v, 2), mask))
    with pytest.raises(ValueError, match="same heads"):
        fused_attention(q, k, v, mask)                      # groups need enable_gqa (or repeat_kv first)
