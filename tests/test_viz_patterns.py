"""Pattern scores of attention heads, on hand-made maps whose answer is known by construction."""

import pytest
import torch

from glm3_teach.viz.patterns import (
    SCORE_NAMES,
    head_scores,
    is_punctuation,
    sink_positions,
    top_heads,
    visible_label,
    word_ids,
)

TOKENS = ["[gMASK]", "sop", "小猫", "喜欢", "。", "The", " ca", "t", "."]
SPECIAL = [True, True] + [False] * 7
N = len(TOKENS)


def one_hot_rows(targets: list[int]) -> torch.Tensor:
    """A [1, 1, N, N] map where query i puts all its weight on key targets[i]."""
    attn = torch.zeros(N, N)
    attn[torch.arange(N), torch.tensor(targets)] = 1.0
    return attn[None, None]


def test_a_head_that_always_reads_the_previous_token_scores_one_on_previous_only():
    scores = head_scores(one_hot_rows([0] + list(range(N - 1))), TOKENS, SPECIAL)
    assert scores["previous"].item() == pytest.approx(1.0)
    assert scores["self"].item() == pytest.approx(1 / N)  # only query 0 reads itself
    assert set(scores) == set(SCORE_NAMES)


def test_a_head_that_reads_gmask_scores_one_on_sink_and_the_self_head_on_self():
    sink = head_scores(one_hot_rows([0] * N), TOKENS, SPECIAL)
    assert sink["sink"].item() == pytest.approx(1.0) and sink["previous"].item() == pytest.approx(1 / (N - 1))
    diagonal = head_scores(one_hot_rows(list(range(N))), TOKENS, SPECIAL)
    assert diagonal["self"].item() == pytest.approx(1.0) and diagonal["sink"].item() == 0


def test_the_full_stop_head_scores_one_on_punctuation():
    # every query after 。 (position 4) reads 。; the final "." reads 。 too; earlier queries read gMASK
    attn = one_hot_rows([0, 0, 0, 0, 0, 4, 4, 4, 4])
    scores = head_scores(attn, TOKENS, SPECIAL)
    assert scores["punctuation"].item() == pytest.approx(1.0)  # averaged over the queries that have seen 。


def test_same_word_counts_earlier_pieces_of_the_query_s_word():
    # "t" (8th token, index 7) reads " ca" (index 6): same word "cat"; the others read gMASK
    attn = one_hot_rows([0, 0, 0, 2, 0, 0, 0, 6, 0])
    scores = head_scores(attn, TOKENS, SPECIAL)
    # queries with an earlier piece of their own word: 喜欢 (小猫喜欢 is one Han run) and t
    assert scores["same_word"].item() == pytest.approx(1.0)


def test_uniform_attention_gives_each_score_its_chance_level():
    attn = torch.ones(N, N).tril()
    attn = (attn / attn.sum(-1, keepdim=True))[None, None]
    scores = head_scores(attn, TOKENS, SPECIAL)
    expected_previous = sum(1 / (i + 1) for i in range(1, N)) / (N - 1)
    assert scores["previous"].item() == pytest.approx(expected_previous)


def test_scores_have_one_entry_per_layer_and_head_and_top_heads_ranks_them():
    torch.manual_seed(0)
    attn = torch.softmax(torch.randn(3, 5, N, N).masked_fill(~torch.ones(N, N, dtype=torch.bool).tril(), -1e9), -1)
    scores = head_scores(attn, TOKENS, SPECIAL)
    assert all(table.shape == (3, 5) for table in scores.values())
    (layer, head, value), *_ = top_heads(scores, "previous", k=2)
    assert value == pytest.approx(scores["previous"].max().item(), abs=1e-4)
    assert scores["previous"][layer, head] == scores["previous"].max()
    with pytest.raises(ValueError, match="unknown score 'prev'"):
        top_heads(scores, "prev")


def test_queries_are_the_last_keys_when_a_prefix_adds_key_columns():
    prefix = 2
    attn = torch.zeros(1, 1, N, N + prefix)
    attn[0, 0, torch.arange(N), torch.arange(N) + prefix - 1] = 1.0  # every query reads the key before it
    tokens = ["P0", "P1"] + TOKENS
    scores = head_scores(attn, tokens, [True, True] + SPECIAL, sinks=[2, 3])
    assert scores["previous"].item() == pytest.approx(1.0)


def test_mismatched_tokens_are_a_clear_error():
    with pytest.raises(ValueError, match="got 3 tokens for 9 key positions"):
        head_scores(one_hot_rows(list(range(N))), TOKENS[:3])


@pytest.mark.parametrize("tokens, expected", [
    (["[gMASK]", "小猫", "喜欢", "。", "The", " ca", "t"], [0, 1, 1, 2, 3, 4, 4]),
    (["a", "b", " c", "1", "2", "x"], [0, 0, 1, 2, 2, 3]),
    (["你", "\n", "好"], [0, 1, 2]),
])
def test_word_ids_join_pieces_without_a_blank_between_them(tokens, expected):
    special = [t.startswith("[") for t in tokens]
    assert word_ids(tokens, special) == expected


def test_sinks_are_the_leading_gmask_and_sop_or_else_the_first_token():
    assert sink_positions(TOKENS, SPECIAL) == [0, 1]
    assert sink_positions(["小猫", "喝"], [False, False]) == [0]
    assert sink_positions(["sop", "x"], [False, False]) == [0]  # plain text "sop" is no special token


def test_labels_show_blanks_and_newlines():
    assert [visible_label(t) for t in [" tea", "\n", "", "  ", "茶"]] == ["␣tea", "\\n", "∅", "␣␣", "茶"]


def test_punctuation_means_only_punctuation():
    assert [is_punctuation(t) for t in ["。", " .", "!?", "，", "a.", "", " "]] == [True, True, True, True, False,
                                                                                  False, False]
