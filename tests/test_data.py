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
