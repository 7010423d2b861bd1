"""Attention-map figures: grid of layers x heads, one head with a query row, the widget explorer."""

import io
import warnings

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from glm3_teach.fonts import use_cjk_font
from glm3_teach.viz import attention_explorer, plot_attention_grid, render_attention

matplotlib.use("Agg")
TOKENS = ["[gMASK]", "sop", "你", "好", "hello", "\n"]


def fake_attentions(layers: int = 2, heads: int = 3, q_len: int = 6, k_len: int = 6) -> list[torch.Tensor]:
    """Causal probabilities, one [1, heads, q_len, k_len] tensor per layer."""
    torch.manual_seed(0)
    scores = torch.randn(layers, 1, heads, q_len, k_len)
    allowed = torch.ones(q_len, k_len, dtype=torch.bool).tril(diagonal=k_len - q_len)
    return list(torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1))


def draw(fig: Figure) -> list[str]:
    """Render to PNG; return the texts of warnings raised while drawing (e.g. missing glyphs)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png", dpi=40)
    return [str(w.message) for w in caught]


def test_grid_has_one_heatmap_per_layer_and_head_with_token_labels():
    fig = plot_attention_grid(fake_attentions(), TOKENS)
    maps = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert isinstance(fig, Figure) and len(maps) == 2 * 3
    assert maps[0].get_title() == "层 layer 0 · 头 head 0"
    draw(fig)  # tick labels are materialised when drawn
    bottom_left = maps[3]
    assert [t.get_text() for t in bottom_left.get_xticklabels()] == ["[gMASK]", "sop", "你", "好", "hello", "\\n"]
    torch.testing.assert_close(torch.tensor(maps[4].images[0].get_array()), fake_attentions()[1][0, 1])


def test_grid_can_show_a_subset_of_layers_and_heads():
    fig = plot_attention_grid(fake_attentions(), TOKENS, layers=[1], heads=[0, 2])
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["层 layer 1 · 头 head 0", "层 layer 1 · 头 head 2"]


def test_chinese_labels_render_without_missing_glyphs():
    if use_cjk_font() is None:
        pytest.skip("no CJK font installed (pip install mplfonts)")
    messages = draw(plot_attention_grid(fake_attentions(), TOKENS))
    assert not [m for m in messages if "missing from" in m], messages


def test_render_attention_shows_one_head_and_the_chosen_query_row():
    attentions = fake_attentions()
    fig = render_attention(attentions, TOKENS, layer=1, head=2, query=3)
    heatmap, bars = fig.axes[0], fig.axes[1]  # then the colorbar
    torch.testing.assert_close(torch.tensor(heatmap.images[0].get_array()), attentions[1][0, 2])
    heights = [patch.get_height() for patch in bars.patches]
    assert heights == pytest.approx(attentions[1][0, 2, 3].tolist())
    assert bars.get_title() == "查询 query 3: 好"
    assert len(render_attention(attentions, TOKENS, 0, 0).axes) == 2  # heatmap + colorbar only


def test_queries_are_the_last_tokens_when_a_kv_cache_made_fewer_queries_than_keys():
    attentions = fake_attentions(q_len=2)
    fig = render_attention(attentions, TOKENS, 0, 0, query=0)
    assert fig.axes[1].get_title() == "查询 query 0: hello"


@pytest.mark.parametrize("kwargs, message", [
    (dict(layer=2, head=0), r"layer=2 is out of range: there are 2 layers \(use 0 \.\. 1\)"),
    (dict(layer=0, head=-1), "head=-1 is out of range"),
    (dict(layer=0, head=0, query=6), "query=6 is out of range: there are 6 query rows"),
])
def test_bad_indices_say_what_range_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_attention(fake_attentions(), TOKENS, **kwargs)


def test_token_count_must_match_the_keys():
    with pytest.raises(ValueError, match="got 5 tokens for 6 key positions"):
        plot_attention_grid(fake_attentions(), TOKENS[:5])


def test_explorer_offers_every_layer_head_and_query():
    widget = attention_explorer(fake_attentions(), TOKENS)
    layer, head, query = widget.children[0].children
    assert (layer.max, head.max) == (1, 2)
    assert [value for _, value in query.options] == [None, 0, 1, 2, 3, 4, 5]
    layer.value, query.value = 1, 2  # the callbacks run render_attention; they must not raise


def small_model_attentions():
    from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM

    torch.manual_seed(0)
    config = ChatGLMConfig(num_layers=2, hidden_size=32, ffn_hidden_size=48, kv_channels=8, num_attention_heads=4,
                           multi_query_group_num=2, padded_vocab_size=50, seq_length=16)
    model = ChatGLMForCausalLM(config).eval()
    with torch.no_grad():
        return model(torch.tensor([[1, 2, 3, 4, 5, 6]]), output_attentions=True).attentions


def test_grid_draws_what_a_model_returns_with_output_attentions():
    attentions = small_model_attentions()
    fig = plot_attention_grid(attentions, TOKENS)
    maps = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(maps) == 2 * 4
    torch.testing.assert_close(torch.tensor(maps[7].images[0].get_array()), attentions[1][0, 3])


def test_forgetting_output_attentions_is_a_clear_error():
    with pytest.raises(TypeError, match="output_attentions=True"):
        plot_attention_grid(None, TOKENS)


def test_numpy_and_tensor_integers_are_accepted_as_indices():
    attentions = fake_attentions()
    probs = torch.stack(attentions)[1, 0, :, 3].sum(-1)  # any computation that ends in an index
    head = probs.argmax()                                # a 0-d tensor
    fig = render_attention(attentions, TOKENS, layer=np.int64(1), head=head, query=np.int64(3))
    assert fig.axes[0].get_title() == f"层 layer 1 · 头 head {int(head)}"
    with pytest.raises(ValueError, match="layer=True is out of range"):
        render_attention(attentions, TOKENS, layer=True, head=0)


def test_blank_and_long_tokens_get_visible_short_labels():
    tokens = ["", " ", "\t", "a" * 20, "茶", "x"]
    fig = render_attention(fake_attentions(), tokens, 0, 0)
    draw(fig)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["∅", "␣", "\\t", "a" * 11 + "…", "茶", "x"]
