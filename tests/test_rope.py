"""ChatGLM3's rotary position embedding: half of each head, interleaved pairs, base 10000 over rotary_dim.

Expected values come from the formulas in chatglm3_facts.md, written out with Python's math.
"""

import math

import pytest
import torch

from glm3_teach.rope import RotaryEmbedding, apply_rotary_pos_emb, build_rope_cache, rope_frequencies


def rotate(x: torch.Tensor, positions: list[int], rope_ratio: float = 1.0) -> torch.Tensor:
    """Rotate x [1, heads, seq, head_dim] with the package's cache indexed at ``positions``."""
    head_dim = x.shape[-1]
    cache = build_rope_cache(max(positions) + 1, head_dim // 2, rope_ratio)
    return apply_rotary_pos_emb(x, cache[torch.tensor(positions)][None])


def test_frequencies_of_chatglm3_6b_use_64_dims_not_128():
    expected = [1.0 / 10000 ** (2 * i / 64) for i in range(32)]
    got = rope_frequencies(64)
    assert got.dtype == torch.float32 and got.shape == (32,)
    torch.testing.assert_close(got, torch.tensor(expected), rtol=1e-6, atol=0)


def test_rope_ratio_multiplies_the_base():
    expected = [1.0 / (10000 * 50) ** (2 * i / 64) for i in range(32)]
    torch.testing.assert_close(rope_frequencies(64, rope_ratio=50), torch.tensor(expected), rtol=1e-6, atol=0)


def test_cache_holds_cos_and_sin_of_position_times_theta():
    cache = build_rope_cache(7, 4)  # rotary_dim 4: theta = [1, 0.01]
    assert cache.shape == (7, 2, 2)
    for pos in range(7):
        for i, theta in enumerate([1.0, 0.01]):
            assert cache[pos, i, 0].item() == pytest.approx(math.cos(pos * theta), abs=1e-6)
            assert cache[pos, i, 1].item() == pytest.approx(math.sin(pos * theta), abs=1e-6)


def test_pairs_are_interleaved_as_in_the_hand_formula():
    """head_dim 8: dims (0,1) turn at theta 1, dims (2,3) at theta 0.01, dims 4..7 stay."""
    x = torch.arange(1.0, 9.0).reshape(1, 1, 1, 8).repeat(1, 1, 4, 1)  # the same vector at 4 positions
    positions = [0, 1, 5, 100]
    got = rotate(x, positions)
    for t, pos in enumerate(positions):
        v = list(range(1, 9))
        expected = []
        for i, theta in enumerate([1.0, 0.01]):
            c, s = math.cos(pos * theta), math.sin(pos * theta)
            even, odd = v[2 * i], v[2 * i + 1]
            expected += [even * c - odd * s, odd * c + even * s]
        expected += v[4:]
        torch.testing.assert_close(got[0, 0, t], torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-4)


def test_it_is_not_the_half_split_rotate_half_form():
    """LLaMA pairs dim i with dim i + rotary_dim/2; ChatGLM3 pairs 2i with 2i+1."""
    x = torch.arange(1.0, 9.0).reshape(1, 1, 1, 8)
    pos, (x0, x1, x2, x3) = 1, [float(v) for v in range(1, 5)]
    c0, s0, c1, s1 = math.cos(pos), math.sin(pos), math.cos(pos * 0.01), math.sin(pos * 0.01)
    half_split = torch.tensor([x0 * c0 - x2 * s0, x1 * c1 - x3 * s1, x2 * c0 + x0 * s0, x3 * c1 + x1 * s1])
    assert not torch.allclose(rotate(x, [pos])[0, 0, 0, :4], half_split, atol=1e-2)


def test_rope_rotates_only_the_first_half_of_the_head():
    x = torch.randn(2, 3, 5, 16)
    cache = build_rope_cache(5, 8)
    out = apply_rotary_pos_emb(x, cache)
    assert torch.equal(out[..., 8:], x[..., 8:])
    assert torch.equal(out[:, :, 0], x[:, :, 0])  # position 0 is the identity rotation
    assert not torch.allclose(out[:, :, 1:, :8], x[:, :, 1:, :8])


def test_rotation_keeps_the_length_of_every_vector():
    x = torch.randn(1, 2, 9, 16, dtype=torch.float64)
    out = apply_rotary_pos_emb(x, build_rope_cache(9, 8))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


@pytest.mark.parametrize("shift", [1, 7, 40])
def test_query_key_dot_product_depends_only_on_their_distance(shift):
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)
    m, n = 9, 3
    before = (rotate(q, [m]) * rotate(k, [n])).sum()
    after = (rotate(q, [m + shift]) * rotate(k, [n + shift])).sum()
    assert before.item() == pytest.approx(after.item(), abs=1e-5)
    assert before.item() != pytest.approx((rotate(q, [m]) * rotate(k, [n + shift])).sum().item(), abs=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cache_is_computed_in_fp32_then_rounded_to_a_half_precision_model(dtype):
    rope = RotaryEmbedding(32).to(dtype)
    theta = torch.tensor([1.0 / 10000 ** (2 * i / 32) for i in range(16)], dtype=torch.float32)
    angles = torch.outer(torch.arange(300, dtype=torch.float32), theta)
    expected = torch.stack([angles.cos(), angles.sin()], dim=-1).to(dtype)
    got = rope(300)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3 if dtype == torch.float16 else 8e-3)
    assert (got == expected).float().mean() > 0.99  # rounded from fp32, not computed in low precision


def test_fp32_model_keeps_an_fp32_cache_and_inv_freq_is_in_the_state_dict():
    rope = RotaryEmbedding(64)
    assert rope(4).dtype == torch.float32
    assert list(rope.state_dict()) == ["inv_freq"] and rope.state_dict()["inv_freq"].shape == (32,)


def test_cache_of_one_row_per_token_rotates_each_row_by_its_own_position():
    x = torch.randn(2, 1, 3, 8)
    cache = build_rope_cache(10, 4)
    positions = torch.tensor([[0, 1, 2], [0, 0, 7]])
    out = apply_rotary_pos_emb(x, cache[positions])
    torch.testing.assert_close(out[1:, :, 2:], rotate(x[1:, :, 2:], [7]))
    torch.testing.assert_close(out[1:, :, 1:2], x[1:, :, 1:2])


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="positive even int"):
        rope_frequencies(6 - 1)
    with pytest.raises(ValueError, match="rope_ratio must be positive"):
        rope_frequencies(8, rope_ratio=0)
    with pytest.raises(ValueError, match="does not fit x"):
        apply_rotary_pos_emb(torch.randn(1, 1, 4, 8), build_rope_cache(5, 4))


def half_split_rotation(x: torch.Tensor, positions: list[int], rotary_dim: int) -> torch.Tensor:
    """LLaMA/GPT-NeoX's pairing (i, i + rotary_dim/2), written from its formula with Python's math.

    x: [seq, head_dim] (one vector per position); dims rotary_dim: pass through.
    """
    half = rotary_dim // 2
    out = x.clone()
    for t, pos in enumerate(positions):
        for i in range(half):
            theta = 1.0 / 10000 ** (2 * i / rotary_dim)
            c, s = math.cos(pos * theta), math.sin(pos * theta)
            a, b = x[t, i].item(), x[t, i + half].item()
            out[t, i], out[t, i + half] = a * c - b * s, b * c + a * s
    return out


def test_interleaved_pairs_are_the_half_split_form_with_the_rotated_dims_reordered():
    """Listing dims as 0, 2, 4, ..., 1, 3, 5, ... turns pair (2i, 2i+1) into the half-split pair (i, i + r/2)."""
    torch.manual_seed(1)
    head_dim, rotary_dim, positions = 16, 8, [0, 1, 4, 11]
    x = torch.randn(1, 1, len(positions), head_dim, dtype=torch.float64)
    order = [0, 2, 4, 6, 1, 3, 5, 7] + list(range(8, 16))
    chatglm = rotate(x, positions)[0, 0]
    half_split = half_split_rotation(x[0, 0, :, order], positions, rotary_dim)
    torch.testing.assert_close(chatglm[:, order], half_split, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(chatglm[1:], half_split_rotation(x[0, 0], positions, rotary_dim)[1:], atol=1e-2)


def test_shifting_every_position_leaves_all_query_key_scores_unchanged():
    torch.manual_seed(2)
    q, k = torch.randn(2, 1, 1, 6, 32, dtype=torch.float64)
    at_zero = rotate(q, list(range(6)))[0, 0] @ rotate(k, list(range(6)))[0, 0].T
    at_500 = rotate(q, list(range(500, 506)))[0, 0] @ rotate(k, list(range(500, 506)))[0, 0].T
    torch.testing.assert_close(at_500, at_zero, rtol=0, atol=1e-4)


def test_half_precision_cache_still_tells_neighbouring_large_positions_apart():
    """bf16 cannot count 1000, 1001, 1002 (it rounds them to 1000, 1000, 1000); the angles are fp32."""
    cache = RotaryEmbedding(32).to(torch.bfloat16)(1004)
    first_pair = cache[1000:1004, 0]  # [4 positions, (cos, sin)] of the pair turning 1 rad per position
    expected = torch.tensor([[math.cos(p), math.sin(p)] for p in range(1000, 1004)])
    torch.testing.assert_close(first_pair.float(), expected, rtol=0, atol=4e-3)
    assert len({tuple(row.tolist()) for row in first_pair}) == 4


def test_rope_ratio_changes_the_cache_but_not_the_stored_inv_freq():
    # The real modeling_chatglm.py registers inv_freq from base 10000 and applies rope_ratio
    # only when it builds the cache; a checkpoint's buffer must therefore not depend on it.
    plain, stretched = RotaryEmbedding(32), RotaryEmbedding(32, rope_ratio=50.0)
    torch.testing.assert_close(plain.inv_freq, stretched.inv_freq)
    assert not torch.allclose(plain(16), stretched(16))


def test_the_module_reuses_its_cache_and_rebuilds_it_when_the_dtype_changes():
    rope = RotaryEmbedding(16)
    first = rope(32)
    assert rope(32) is first                                     # built once per (length, dtype, device)
    torch.testing.assert_close(first, build_rope_cache(32, 16))
    rope.to(torch.bfloat16)
    rounded = rope(32)
    assert rounded.dtype == torch.bfloat16 and rounded is not first
    assert rope(16).shape == (16, 8, 2)
