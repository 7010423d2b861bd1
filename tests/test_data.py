"""Loading text: the course corpus by split and language, or a learner's own UTF-8 file."""

from __future__ import annotations

import pytest

from glm3_teach.data import CORPUS_ENV_VAR, load_corpus, load_documents, split_documents


@pytest.fixture(autouse=True)
def course_corpus_only(monkeypatch):
    """Each test starts from the committed corpus, whatever the shell running pytest has set."""
    monkeypatch.delenv(CORPUS_ENV_VAR, raising=False)
    monkeypatch.delenv("GLM3_DATA_DIR", raising=False)


def write(tmp_path, text: str | bytes, name: str = "mine.txt"):
    file = tmp_path / name
    if isinstance(text, bytes):
        file.write_bytes(text)
    else:
        file.write_text(text, encoding="utf-8")
    return file


# --- the course corpus ---------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_both_languages_together_alternate_chinese_and_english_story_by_story(split):
    zh, en = load_documents(split, "zh"), load_documents(split, "en")
    both = load_documents(split)
    assert len(both) == 2 * len(zh) == 2 * len(en)
    assert both[0::2] == zh and both[1::2] == en
    assert "清泉茶铺" in "".join(zh) and "Clear Spring Tea Shop" in "".join(en)


def test_documents_hold_no_blank_line_and_the_corpus_joins_them_with_one():
    docs = load_documents("val", "en")
    assert all(doc and "\n\n" not in doc for doc in docs)
    assert load_corpus("val", "en") == "\n\n".join(docs)
    assert load_corpus("val") == "\n\n".join(load_documents("val"))


def test_validation_and_training_documents_differ():
    assert not set(load_documents("val", "zh")) & set(load_documents("train", "zh"))


@pytest.mark.parametrize("split", ["dev", "test", "Train", None, 0])
def test_an_unknown_split_names_the_allowed_ones(split):
    with pytest.raises(ValueError) as error:
        load_corpus(split)
    assert str(error.value) == f"split must be 'train' or 'val', got {split!r}"


@pytest.mark.parametrize("lang", ["fr", "ZH", "chinese", ""])
def test_an_unknown_language_names_the_allowed_ones(lang):
    with pytest.raises(ValueError, match=r"lang must be None \(both languages\), 'zh' or 'en', got"):
        load_documents("train", lang)


def test_a_missing_corpus_file_names_the_file_and_the_command_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GLM3_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        load_corpus("train", "zh")
    message = str(error.value)
    assert str(tmp_path / "corpus" / "train.zh.txt") in message
    assert "python -m glm3_teach.stories" in message


def test_corpus_files_out_of_step_are_reported(tmp_path, monkeypatch):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write(folder, "一\n\n二\n", "val.zh.txt")
    write(folder, "one\n", "val.en.txt")
    monkeypatch.setenv("GLM3_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="val.zh.txt holds 2 documents but val.en.txt holds 1"):
        load_documents("val")


# --- a learner's own text ------------------------------------------------------------------


def test_own_text_keeps_the_last_tenth_of_its_documents_for_validation(tmp_path):
    file = write(tmp_path, "\n\n".join(f"第{i}篇。\nline two of {i}" for i in range(25)) + "\n")
    train, val = load_documents("train", path=file), load_documents("val", path=str(file))
    assert len(train) == 23 and len(val) == 2  # 10% of 25 is 2.5: two documents
    assert val == ["第23篇。\nline two of 23", "第24篇。\nline two of 24"]
    assert train[0] == "第0篇。\nline two of 0"
    assert load_corpus("val", path=file) == "第23篇。\nline two of 23\n\n第24篇。\nline two of 24"


def test_own_text_ignores_the_language(tmp_path):
    file = write(tmp_path, "a\n\nb\n\nc\n")
    assert load_documents("train", "zh", path=file) == load_documents("train", "en", path=file) == load_documents("train", path=file) == ["a", "b"]


def test_own_text_can_come_from_the_environment_variable(tmp_path, monkeypatch):
    file = write(tmp_path, "from the variable\n\nsecond\n")
    monkeypatch.setenv(CORPUS_ENV_VAR, str(file))
    assert load_documents("train") == ["from the variable"] and load_documents("val") == ["second"]
    argument = write(tmp_path, "from the argument\n\nsecond\n", "other.txt")
    assert load_documents("train", path=argument) == ["from the argument"]


def test_two_documents_give_one_each_and_a_single_paragraph_is_split_into_lines(tmp_path):
    assert load_documents("val", path=write(tmp_path, "first\n\nsecond")) == ["second"]
    lines = write(tmp_path, "小明有三个苹果。\n他给了小红一个。\n现在他还有两个。\n", "lines.txt")
    assert load_documents("train", path=lines) == ["小明有三个苹果。", "他给了小红一个。"]
    assert load_documents("val", path=lines) == ["现在他还有两个。"]


def test_windows_line_ends_a_byte_order_mark_and_spaces_on_blank_lines_are_handled(tmp_path):
    file = write(tmp_path, "\ufeffone\r\nstill one\r\n \r\ntwo\r\n\r\n\r\nthree\r\n".encode("utf-8"))
    assert load_documents("train", path=file) == ["one\nstill one", "two"]
    assert load_documents("val", path=file) == ["three"]


def test_split_documents_examples():
    assert split_documents("a\nb\n\nc") == ["a\nb", "c"]
    assert split_documents("a\nb") == ["a", "b"]
    assert split_documents("  \n\n ") == []


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_own_file_says_it_is_empty(tmp_path, text):
    file = write(tmp_path, text)
    with pytest.raises(ValueError, match=f"{file} is empty"):
        load_corpus("train", path=file)


def test_a_single_line_cannot_be_split(tmp_path):
    with pytest.raises(ValueError, match="at least two\\s+documents"):
        load_corpus("train", path=write(tmp_path, "only one line\n"))


def test_a_file_that_is_not_utf8_says_how_to_convert_it(tmp_path):
    file = write(tmp_path, "小明去了公园。\n\n他很开心。\n".encode("gbk"))
    with pytest.raises(ValueError) as error:
        load_corpus("train", path=file)
    assert "is not UTF-8" in str(error.value) and "iconv" in str(error.value)


def test_a_missing_own_file_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(FileNotFoundError, match="nowhere.txt does not exist"):
        load_corpus("train", path=missing)
    monkeypatch.setenv(CORPUS_ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match=f"unset {CORPUS_ENV_VAR}"):
        load_documents("val")


def test_a_folder_is_not_a_text_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        load_corpus("train", path=tmp_path)


# --- lesson 06: tokens, packed blocks, a resumable sampler ------------------------------------

import math  # noqa: E402

import torch  # noqa: E402

from glm3_teach.data import (  # noqa: E402
    BlockSampler,
    TokenDataset,
    make_loader,
    pack_documents,
    tokenize_documents,
    unigram_entropy,
)
from glm3_teach.tokenizer import load_tokenizer  # noqa: E402


def test_packing_puts_the_end_of_text_id_after_every_document():
    assert pack_documents([[5, 6], [7], []], eos_id=9).tolist() == [5, 6, 9, 7, 9, 9]


def test_the_course_tokenizer_packs_stories_with_eos_4094_and_decodes_back():
    tokenizer = load_tokenizer()
    documents = load_documents("val")[:4]
    stream = pack_documents(tokenize_documents(documents, tokenizer), tokenizer.eos_token_id)
    assert tokenizer.eos_token_id == 4094
    assert (stream == 4094).sum().item() == 4 and stream[-1].item() == 4094
    pieces = [tokenizer.decode(part) for part in _split_at(stream.tolist(), 4094)]
    assert pieces == documents


def _split_at(ids, separator):
    parts, current = [], []
    for token in ids:
        if token == separator:
            parts.append(current)
            current = []
        else:
            current.append(token)
    return parts


def test_blocks_overlap_by_one_token_so_every_token_is_a_target_once():
    dataset = TokenDataset(torch.arange(11), block_size=4, num_characters=22)
    assert len(dataset) == 2  # (11 - 1) // 4; the last two tokens do not fill a block
    assert dataset[0].tolist() == [0, 1, 2, 3, 4] and dataset[1].tolist() == [4, 5, 6, 7, 8]
    assert dataset.characters_per_token == 2.0
    with pytest.raises(IndexError):
        dataset[2]


def test_dataset_from_documents_counts_characters_and_one_per_separator():
    tokenizer = load_tokenizer()
    dataset = TokenDataset.from_documents(["小猫喝茶。", "A cat."], tokenizer, block_size=2)
    assert dataset.num_characters == 5 + 6 + 2
    assert dataset.tokens[-1].item() == tokenizer.eos_token_id


def test_a_split_smaller_than_one_block_says_so():
    with pytest.raises(ValueError, match="validation split holds 3 tokens, fewer than one block"):
        TokenDataset(torch.arange(3), block_size=8, num_characters=3, name="validation split")


def test_the_sampler_shuffles_each_epoch_differently_and_visits_every_block_once():
    sampler = BlockSampler(5, seed=0)
    stream = iter(sampler)
    first, second = [next(stream) for _ in range(5)], [next(stream) for _ in range(5)]
    assert sorted(first) == sorted(second) == [0, 1, 2, 3, 4]
    assert first != second
    assert first == BlockSampler(5, seed=0).order(0).tolist()
    assert first != BlockSampler(5, seed=1).order(0).tolist()


def test_the_sampler_resumes_at_the_exact_block():
    sampler = BlockSampler(7, seed=3)
    stream = iter(sampler)
    for _ in range(9):  # one epoch and two blocks into the next
        next(stream)
    state = sampler.state_dict()
    assert (state["epoch"], state["offset"]) == (1, 2)
    rest = [next(stream) for _ in range(10)]
    again = BlockSampler(7, seed=3)
    again.load_state_dict(state)
    assert [index for index, _ in zip(iter(again), range(10))] == rest


def test_a_data_position_from_other_data_is_refused():
    with pytest.raises(ValueError, match="the data or its config changed"):
        BlockSampler(8, seed=0).load_state_dict(BlockSampler(9, seed=0).state_dict())


def test_the_loader_serves_batches_in_sampler_order_and_stops_where_it_is_read():
    dataset = TokenDataset(torch.arange(41), block_size=4, num_characters=41)
    sampler = BlockSampler(len(dataset), seed=0)
    batches = iter(make_loader(dataset, 3, sampler))
    batch = next(batches)
    assert batch.shape == (3, 5)
    assert [row[0].item() // 4 for row in batch] == sampler.order(0)[:3].tolist()
    assert sampler.state_dict()["offset"] == 3  # nothing read ahead


def test_unigram_entropy_of_two_equally_common_tokens_is_ln_2():
    assert unigram_entropy(torch.tensor([1, 1, 2, 2])) == pytest.approx(math.log(2))
    assert unigram_entropy(torch.tensor([7, 7, 7])) == 0.0
