"""The induction-head test and the copy blocks of glm3_teach.induction (lesson 09)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from glm3_teach.induction import ID_CHARACTERS, ID_LETTERS, copy_blocks, recall_blocks, repeat_losses, single_character_ids
from glm3_teach.tokenizer import BPETokenizer


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer([])   # no merges: every ASCII character is one token (its byte)


class InductionRule(torch.nn.Module):
    """Predicts, after token x, what followed the earlier x's (uniform if x is new): a copier.

    A character that recurs within a string leaves two candidates, so even this rule pays a little."""

    def __init__(self, vocab: int, copy: bool):
        super().__init__()
        self.vocab, self.copy = vocab, copy

    def forward(self, ids):                                   # ids [1, seq]
        seq = ids.shape[1]
        logits = torch.zeros(1, seq, self.vocab)
        for t in range(seq):
            for s in range(t):
                if self.copy and ids[0, s] == ids[0, t]:
                    logits[0, t, ids[0, s + 1]] = 12.0
        return SimpleNamespace(logits=logits)


def test_repeat_losses_separates_a_copier_from_a_model_that_does_not_copy(tok):
    vocab = 267
    first, second = repeat_losses(InductionRule(vocab, copy=False), tok, count=5)
    assert first == pytest.approx(math.log(vocab)) and second == pytest.approx(math.log(vocab))
    first, second = repeat_losses(InductionRule(vocab, copy=True), tok, count=5)
    # strings of 34 characters repeat some within the first copy, so its loss is a little below ln V
    assert second < 0.2 * first and first > 0.8 * math.log(vocab)


def test_repeat_losses_draws_the_same_strings_on_a_rerun_and_restores_training_mode(tok):
    model = InductionRule(267, copy=True).train()
    assert repeat_losses(model, tok, count=3, seed=4) == repeat_losses(model, tok, count=3, seed=4)
    assert model.training


def test_copy_blocks_repeat_each_string_once_target_only_the_copy_and_are_seeded(tok):
    blocks = copy_blocks(tok, 3, 200, seed=0)
    assert len(blocks) == 3 and all(len(ids) == len(targets) == 200 for ids, targets in blocks)
    assert blocks == copy_blocks(tok, 3, 200, seed=0) and blocks != copy_blocks(tok, 3, 200, seed=1)
    space, newline = tok.encode_ordinary(" "), tok.encode_ordinary("\n")
    ids, targets = copy_blocks(tok, 1, 5000, seed=2, min_length=4, max_length=9)[0]
    strings, start = [], 0
    while True:   # walk the lines by their targets: False over "string ", True over "string\n"
        if start >= len(ids) or targets[start]:
            break
        end_first = start
        while end_first < len(ids) and not targets[end_first]:
            end_first += 1
        end_line = end_first
        while end_line < len(ids) and targets[end_line]:
            end_line += 1
        if end_line == len(ids):
            break                                        # the cut last line
        first, second = ids[start:end_first], ids[end_first:end_line]
        assert first[-1:] == space and second[-1:] == newline and first[:-1] == second[:-1]
        strings.append(first[:-1])
        start = end_line
    assert len(strings) > 200 and all(4 <= len(s) <= 9 for s in strings)
    ids_alphabet = set(single_character_ids(tok))
    assert {all(t in ids_alphabet for t in s) for s in strings} == {True, False}   # both kinds of string


def test_copy_blocks_reject_bad_sizes_in_one_message(tok):
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        copy_blocks(tok, 2, 0, seed=0)
    with pytest.raises(ValueError, match="count must be a non-negative int"):
        copy_blocks(tok, -1, 16, seed=0)
    with pytest.raises(ValueError, match="min_length=9 is above max_length=4"):
        copy_blocks(tok, 1, 16, seed=0, min_length=9, max_length=4)
    assert copy_blocks(tok, 0, 16, seed=0) == []


def test_single_character_ids_names_characters_that_are_several_tokens():
    merged = BPETokenizer([(65, 66)])                # "AB" is one token, but A and B alone are still one each
    assert len(single_character_ids(merged)) == len(ID_CHARACTERS)

    class Wide:
        def encode_ordinary(self, text):
            return [1, 2] if text == "Q" else [3]

    with pytest.raises(ValueError, match=r"\['Q'\] are not single tokens"):
        single_character_ids(Wide())


def test_copy_blocks_join_the_sft_set_trained_on_their_second_copies(tok):
    from glm3_teach.sft import IGNORE_INDEX, SFTConfig, SFTDataset

    blocks = copy_blocks(tok, 2, 64, seed=0)
    item = {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    dataset = SFTDataset([item], tok, 128, copy_blocks=blocks)
    assert dataset.kinds == ["dialogue", "copy", "copy"]
    ids, targets = blocks[0]
    assert dataset[1]["input_ids"] == ids
    assert dataset[1]["labels"] == [t if keep else IGNORE_INDEX for t, keep in zip(ids, targets)]
    assert targets[0] is False and dataset[1]["labels"][0] == IGNORE_INDEX
    with pytest.raises(ValueError, match="copy_blocks must be an int >= 0"):
        SFTConfig(copy_blocks=-3)
    with pytest.raises(ValueError, match="copy_block_size must be a positive int"):
        SFTConfig(copy_block_size=0)


def test_copy_blocks_after_the_tools_message_share_its_prefix_and_train_only_the_copies(tok):
    from glm3_teach.sft import IGNORE_INDEX, SFTDataset, tools_prefix_ids

    tools = [{"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}]
    prefix = tools_prefix_ids(tools, tok)
    blocks = copy_blocks(tok, 3, 48, seed=1)
    dataset = SFTDataset([], tok, 1024, prefixed_blocks=(prefix, []), copy_blocks=blocks[:1],
                         prefixed_copy_blocks=blocks[1:])
    assert dataset.kinds == ["copy", "tools_copy", "tools_copy"]
    ids, targets = blocks[1]
    assert dataset[1]["input_ids"] == prefix + ids
    assert dataset[1]["labels"] == [IGNORE_INDEX] * (len(prefix) + 1) + [
        t if keep else IGNORE_INDEX for t, keep in zip(ids[1:], targets[1:])]


def test_build_data_needs_tool_dialogues_for_copy_blocks_after_the_tools_message(tmp_path, monkeypatch):
    from glm3_teach import dialogues
    from glm3_teach.sft import SFTConfig, build_data
    from glm3_teach.train import TrainConfig

    plain = {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    monkeypatch.setattr(dialogues, "load_sft", lambda split, folder=None: [plain] * 4)
    with pytest.raises(ValueError, match=r"tools_copy_blocks = 2 needs tool dialogues"):
        build_data(BPETokenizer([]), TrainConfig(), SFTConfig(tools_copy_blocks=2, val_items=2))


def test_recall_blocks_ask_for_the_id_shown_earlier_in_the_same_line(tok):
    blocks = recall_blocks(tok, 2, 400, seed=0)
    assert blocks == recall_blocks(tok, 2, 400, seed=0) and blocks != recall_blocks(tok, 2, 400, seed=3)
    cue = tok.encode_ordinary("order_id='")
    ids, targets = blocks[0]
    answers, start = 0, 0
    for end in range(1, len(ids)):
        if targets[end] and not targets[end - 1]:          # an answer starts right after the cue
            assert ids[end - len(cue):end] == cue
            answer = ids[end:end + 7]
            if len(answer) < 7:
                break                                      # the cut last line
            assert targets[end:end + 7] == [True] * 7 and targets[end + 7:end + 8] in ([], [False])
            order_id = tok.decode(answer[:5])
            assert answer[5:] == tok.encode_ordinary("'\n") and order_id[0] in ID_LETTERS
            assert order_id[1:].isdigit() and order_id in tok.decode(ids[start:end - len(cue)])  # shown before
            answers, start = answers + 1, end + 7
    assert answers >= 5
    with pytest.raises(ValueError, match="recall_blocks block_size must be a positive int"):
        recall_blocks(tok, 1, 0, seed=0)


def test_the_experiment_configs_load_and_chain_to_each_other():
    from pathlib import Path

    from glm3_teach.sft import load_config

    exports = {}
    for path in sorted(Path("configs/experiments").glob("chat_*.toml")):
        config, sft = load_config(path)
        exports[config.export_dir] = sft
        # from base_long, from an earlier probe, from stage 1 of the shipped chat model (runs n, o, p, r, s),
        # from its stage 2 (runs q, t, u, v, x, y, aa) or from run y, data/checkpoints/chat when runs ab
        # and ac were made; runs w and z continue run v
        assert sft.init_from in ("data/checkpoints/base_long", "data/checkpoints/chat_stage1", "data/checkpoints/chat_stage2",
                                 "data/checkpoints/chat") or sft.init_from in exports, (path, sft.init_from)
    assert any(s.copy_blocks for s in exports.values()) and any(s.tools_recall_blocks for s in exports.values())


def test_recall_lines_end_with_each_of_their_cues_and_the_id_shown_before(tok):
    cues = ("order_id='{id}'", "订单{id}", " order {id}")
    ids, targets = recall_blocks(tok, 1, 2000, seed=1, cues=cues)[0]
    assert recall_blocks(tok, 1, 2000, seed=1, cues=cues)[0] == (ids, targets)
    newline = tok.encode_ordinary("\n")[0]
    seen = set()
    lines = [[]]
    for token, keep in zip(ids, targets):
        lines[-1].append((token, keep))
        if token == newline and keep:                        # a line ends with its trained line break
            lines.append([])
    for line in lines[:-1]:
        text = tok.decode([t for t, _ in line])
        answer = tok.decode([t for t, keep in line if keep])
        context = tok.decode([t for t, keep in line if not keep])
        cue = next(c for c in cues if context.endswith(c.split("{id}")[0].removesuffix(" ")))
        order_id = answer.strip().split("'")[0]
        assert len(order_id) == 5 and order_id[0] in ID_LETTERS and order_id[1:].isdigit(), text
        assert context.rsplit("\n", 1)[0].count(order_id) == 1, text        # shown once, earlier in the line
        assert text.endswith(cue.replace("{id}", order_id) + "\n"), (cue, text)
        seen.add(cue)
    assert seen == set(cues)


def test_a_recall_cue_must_hold_the_id_once_and_end_where_a_token_ends(tok):
    with pytest.raises(ValueError, match=r"cues must be strings holding '\{id\}' once"):
        recall_blocks(tok, 1, 64, seed=0, cues=("order_id=",))
    words = {}
    by_word = SimpleNamespace(encode_ordinary=lambda text: [words.setdefault(w, len(words)) for w in text.split(" ")])
    from glm3_teach.induction import _answer_ids, _cue_ids

    cue_ids = _cue_ids(by_word, "订单{id}")
    with pytest.raises(ValueError, match=r"cue '订单\{id\}': the tokenizer merges its text with the id K1234"):
        _answer_ids(by_word, "订单{id}", cue_ids, "K1234")


def test_the_sft_config_checks_its_recall_cues():
    from glm3_teach.sft import SFTConfig

    assert SFTConfig().recall_cues == ["order_id='{id}'"]
    for bad in ([], "order_id='{id}'", ["订单"], ["{id}{id}"]):
        with pytest.raises(ValueError, match=r"\[sft\] recall_cues must be a non-empty list of strings"):
            SFTConfig(recall_cues=bad)
