"""The course's byte-level BPE (glm3_teach.tokenizer): splitting, counting, merging, training
(naive and fast give the same merges), exact round trips, the JSON file, and clear errors."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glm3_teach.chat_format import CHATGLM3_SPECIAL_TOKENS
from glm3_teach.tokenizer import (BYTE_VOCAB, DEFAULT_SPECIAL_TOKENS, BPETokenizer, best_pair, get_pair_counts,
                                  load_tokenizer, merge, pretokenize, train_merges, train_merges_naive)

BILINGUAL = (
    "小猫在茶馆里喝茶。小狗也喜欢喝茶，它说：“我喜欢绿茶！”\n\n"
    "The little cat drinks tea in the tea shop. The dog likes tea too: \"I like green tea!\"\n\n"
    "茶馆早上8点开门，晚上10点关门。一杯绿茶12元，一杯红茶15元。\n\n"
    "The tea shop opens at 8 and closes at 10. A cup of green tea costs 12 yuan; black tea 15 yuan.\n\n"
) * 6
NUM_MERGES = 120
UNICODE_SAMPLES = [
    "", "a", "茶", "\n", "\n\n\n", "   ", "Hello, world!", "你好，世界！", "我喜欢喝茶🍵 and I like tea☕.",
    "e\u0301te\u0301 (combining accents)", "👩‍👩‍👧 family emoji", "안녕하세요", "مرحبا", "2024年12月31日 23:59",
    "tab\tand\r\nwindows", "\u200bzero-width\ufeff", "𠀀𪚥 rare Han (plane 2)", "<|user|>[gMASK]sop",
]


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(BILINGUAL, BYTE_VOCAB + NUM_MERGES + len(DEFAULT_SPECIAL_TOKENS))


# --- pre-tokenization ---------------------------------------------------------------------
def test_pretokenize_keeps_han_runs_together_and_splits_punctuation():
    assert pretokenize("我喜欢喝茶。你呢？") == ["我喜欢喝茶", "。", "你呢", "？"]


def test_pretokenize_splits_digits_one_by_one_like_chatglm3():
    assert pretokenize("2024年") == ["2", "0", "2", "4", "年"]
    assert pretokenize("costs 15 yuan") == ["costs", " ", "1", "5", " yuan"]


def test_pretokenize_separates_scripts_in_mixed_text():
    assert pretokenize("用Python写代码") == ["用", "Python", "写代码"]


def test_pretokenize_attaches_one_space_to_the_next_word_and_keeps_blank_lines_whole():
    assert pretokenize("I don't  know.\n\nNext") == ["I", " don", "'t", " ", " know", ".", "\n\n", "Next"]


@settings(deadline=None)
@given(st.text())
def test_pretokenize_loses_nothing(text):
    assert "".join(pretokenize(text)) == text


# --- counting and merging (hand-checked examples) -----------------------------------------
def test_get_pair_counts_counts_overlapping_neighbours():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_pair_counts([7, 7, 7]) == {(7, 7): 2}
    assert get_pair_counts([4]) == {}


def test_get_pair_counts_adds_to_existing_counts():
    assert get_pair_counts([1, 2], {(1, 2): 5, (9, 9): 1}) == {(1, 2): 6, (9, 9): 1}


def test_merge_replaces_left_to_right_without_overlap():
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([5, 5, 5, 5, 5], (5, 5), 6) == [6, 6, 5]
    assert merge([1, 3], (1, 2), 4) == [1, 3]


def test_best_pair_prefers_the_count_then_the_smallest_ids():
    assert best_pair({(5, 9): 3, (2, 7): 3, (1, 1): 2}) == (2, 7)
    assert best_pair({(2, 7): 3, (2, 5): 3}) == (2, 5)
    assert best_pair({(9, 9): 4, (0, 0): 3}) == (9, 9)


def test_textbook_example_aaabdaaabac():
    # The classic example (Gage 1994; Wikipedia "Byte pair encoding"): aa -> Z (4 times),
    # then ab -> Y (ties with Za at 2; 'a','b' = 97, 98 are the smaller ids), then ZY -> X.
    merges = train_merges_naive("aaabdaaabac", 3)
    assert merges == [(97, 97), (97, 98), (256, 257)]
    assert train_merges("aaabdaaabac", 3) == merges
    tok = BPETokenizer(merges)
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]  # X d X a c


# --- the fast trainer learns exactly the naive trainer's merges ----------------------------
def test_fast_trainer_learns_the_naive_merges_on_bilingual_text():
    assert train_merges(BILINGUAL, NUM_MERGES) == train_merges_naive(BILINGUAL, NUM_MERGES)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab 茶猫\n1", max_size=60), st.integers(0, 12))
def test_fast_trainer_matches_naive_on_small_texts_full_of_ties(text, num_merges):
    assert train_merges(text, num_merges) == train_merges_naive(text, num_merges)


def test_trainers_stop_when_no_pair_is_left():
    assert train_merges_naive("ab", 5) == train_merges("ab", 5) == [(97, 98)]


def test_encoding_the_training_text_applies_merges_in_training_order(tok):
    # Training leaves each chunk of the text in its final merged form; encode must reach the same.
    chunks = pretokenize(BILINGUAL)
    expected = []
    for chunk in chunks:
        ids = list(chunk.encode("utf-8"))
        for k, pair in enumerate(tok.merges):
            ids = merge(ids, pair, BYTE_VOCAB + k)
        expected += ids
    assert tok.encode(BILINGUAL) == expected


def test_training_learns_common_words_in_both_languages(tok):
    texts = {tok.token_text(i) for i in range(BYTE_VOCAB, tok.ordinary_vocab_size)}
    assert "茶" in texts and " tea" in texts


# --- round trips --------------------------------------------------------------------------
@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_decode_encode_round_trips_samples(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_decode_encode_round_trips_any_text(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode(tok.decode(ids)) == ids


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["茶馆", "tea", " ", "\n", "喝", "🍵", "e\u0301", "7", "。", "ﾃ", "안"]), max_size=20))
def test_round_trip_on_mixed_scripts(tok, parts):
    text = "".join(parts)
    assert tok.decode(tok.encode(text)) == text


# --- decode never raises on valid ids, and says what is wrong otherwise --------------------
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decode_accepts_any_sequence_of_valid_ids(tok, data):
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=30))
    assert isinstance(tok.decode(ids), str)


def test_decode_writes_a_replacement_character_for_half_a_character():
    tok = BPETokenizer([])
    assert tok.decode([0xE8, 0x8C]) == "\ufffd"  # the first two of 茶's three bytes
    assert tok.decode([0xE8, 0x8C, 0xB6]) == "茶"


@pytest.mark.parametrize("bad", [[5, -1], [5, 10**6], [1.5], ["a"]])
def test_decode_rejects_what_is_not_an_id(tok, bad):
    with pytest.raises((ValueError, TypeError), match="position 1|position 0"):
        tok.decode(bad)


def test_decode_out_of_range_error_names_the_valid_range(tok):
    with pytest.raises(ValueError, match=f"ids 0..{tok.vocab_size - 1}"):
        tok.decode([tok.vocab_size])


def test_encode_rejects_bytes_and_lone_surrogates(tok):
    with pytest.raises(TypeError, match="decode bytes"):
        tok.encode(b"tea")
    with pytest.raises(ValueError, match="lone surrogate U\\+D800"):
        tok.encode("tea\ud800")


# --- special tokens -----------------------------------------------------------------------
def test_special_tokens_follow_the_ordinary_vocabulary_in_chatglm3_order(tok):
    first = BYTE_VOCAB + NUM_MERGES
    assert tok.ordinary_vocab_size == first
    assert [tok.special_id(t) for t in CHATGLM3_SPECIAL_TOKENS] == list(range(first, first + 9))
    assert tok.eos_token_id == first + 9 and tok.special_id("</s>") == first + 9
    assert tok.pad_token_id == first + 10
    assert tok.vocab_size == first + 11


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(DEFAULT_SPECIAL_TOKENS) + ["<|", "|>", "[", "]", "你好", "user", " "]), max_size=12))
def test_plain_text_never_produces_a_special_id(tok, parts):
    ids = tok.encode("".join(parts))
    assert all(i < tok.ordinary_vocab_size for i in ids)


def test_trusted_text_may_opt_in_to_special_tokens(tok):
    user = tok.special_id("<|user|>")
    assert tok.encode("<|user|>hi", allowed_special=["<|user|>"]) == [user] + tok.encode("hi")
    assert tok.encode("<|user|>hi", allowed_special="all") == [user] + tok.encode("hi")
    assert user not in tok.encode("<|user|>hi", allowed_special=["<|system|>"])


def test_allowed_special_must_name_special_tokens(tok):
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("hi", allowed_special=["<|boss|>"])
    with pytest.raises(ValueError, match="'all' or a collection"):
        tok.encode("hi", allowed_special="<|user|>")


def test_add_special_tokens_puts_gmask_sop_in_front(tok):
    assert tok.encode("茶", add_special_tokens=True) == [tok.special_id("[gMASK]"), tok.special_id("sop")] + tok.encode("茶")


def test_special_ids_decode_to_their_text(tok):
    assert tok.decode([tok.special_id("<|user|>")] + tok.encode("你好") + [tok.eos_token_id]) == "<|user|>你好</s>"


def test_special_id_of_an_unknown_token_is_a_clear_error(tok):
    with pytest.raises(KeyError, match="not a special token"):
        tok.special_id("<|boss|>")


# --- training arguments -------------------------------------------------------------------
def test_train_rejects_a_vocab_smaller_than_bytes_plus_specials():
    with pytest.raises(ValueError, match="at least 267"):
        BPETokenizer.train("tea", 260)


def test_train_says_when_the_text_is_too_small():
    with pytest.raises(ValueError, match="ran out of pairs after 2 of 10 merges"):
        BPETokenizer.train("abc", BYTE_VOCAB + 10 + len(DEFAULT_SPECIAL_TOKENS))


# --- the JSON file ------------------------------------------------------------------------
def test_save_and_load_give_the_same_tokenizer(tok, tmp_path):
    path = tok.save(tmp_path)
    assert path.name == "tokenizer.json"
    loaded = BPETokenizer.load(tmp_path)
    assert loaded.merges == tok.merges and loaded.special_tokens == tok.special_tokens
    assert loaded.encode(BILINGUAL) == tok.encode(BILINGUAL)
    assert loaded.to_json() == path.read_text(encoding="utf-8")


def test_tokenizer_file_is_versioned_readable_json_with_one_merge_per_line(tok, tmp_path):
    text = tok.save(tmp_path / "t.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["format"] == "glm3-teach-bpe" and data["version"] == 1
    assert len(data["merges"]) == NUM_MERGES and data["special_tokens"] == list(DEFAULT_SPECIAL_TOKENS)
    merge_lines = [line for line in text.splitlines() if line.startswith("    [")]
    assert len(merge_lines) == NUM_MERGES
    assert any(line.endswith('"茶"]') or line.endswith('"茶"],') for line in merge_lines)


def _write(tmp_path, text):
    path = tmp_path / "tokenizer.json"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_rejects_broken_json(tmp_path):
    with pytest.raises(ValueError, match="broken JSON"):
        BPETokenizer.load(_write(tmp_path, '{"format": "glm3-teach-bpe", "merges": [[1, 2'))


def test_load_rejects_another_format_or_version(tok, tmp_path):
    data = json.loads(tok.to_json())
    with pytest.raises(ValueError, match="not a glm3-teach BPE tokenizer"):
        BPETokenizer.load(_write(tmp_path, json.dumps({**data, "format": "gpt2"})))
    with pytest.raises(ValueError, match="version 99"):
        BPETokenizer.load(_write(tmp_path, json.dumps({**data, "version": 99})))


def test_load_rejects_a_merge_that_uses_a_later_id(tok, tmp_path):
    data = json.loads(tok.to_json())
    data["merges"][0] = [BYTE_VOCAB + 5, 97, "x"]
    with pytest.raises(ValueError, match="corrupt: merge for id 256"):
        BPETokenizer.load(_write(tmp_path, json.dumps(data)))


def test_load_rejects_a_merge_edited_by_hand(tok, tmp_path):
    data = json.loads(tok.to_json())
    a, b, text = data["merges"][3]
    data["merges"][3] = [b, a, text] if a != b else [a, b, text + "?"]
    with pytest.raises(ValueError, match="merge 3"):
        BPETokenizer.load(_write(tmp_path, json.dumps(data)))


def test_load_of_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m glm3_teach.tokenizer"):
        BPETokenizer.load(tmp_path / "nothing.json")


# --- load_tokenizer -----------------------------------------------------------------------
def test_load_tokenizer_reads_a_folder_or_a_file(tok, tmp_path):
    path = tok.save(tmp_path)
    assert load_tokenizer(tmp_path).merges == tok.merges
    assert load_tokenizer(path).merges == tok.merges


def test_load_tokenizer_rejects_an_empty_folder_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json"):
        load_tokenizer(tmp_path)
    other = tmp_path / "vocab.txt"
    other.write_text("a\n")
    with pytest.raises(ValueError, match="do not know how to load vocab.txt"):
        load_tokenizer(other)
    with pytest.raises(FileNotFoundError, match="no tokenizer at"):
        load_tokenizer(tmp_path / "missing.json")


# --- the command line and the course tokenizer in data/tokenizer/ -------------------------
def test_command_line_writes_what_train_builds(tmp_path, capsys):
    from glm3_teach.tokenizer import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(BILINGUAL, encoding="utf-8")
    assert main(["--out", str(tmp_path / "tok"), "--vocab-size", "300", "--corpus", str(corpus)]) == 0
    written = (tmp_path / "tok" / "tokenizer.json").read_text(encoding="utf-8")
    assert written == BPETokenizer.train(BILINGUAL, 300).to_json()
    assert "vocab_size 300" in capsys.readouterr().out


COURSE_VOCAB_SIZE = 4096  # the size data/tokenizer/README.md records and lesson 01 justifies


def test_course_tokenizer_is_rebuilt_byte_for_byte_from_the_corpus():
    from glm3_teach.data import load_corpus
    from glm3_teach.paths import data_dir

    stored = (data_dir() / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8")
    assert BPETokenizer.train(load_corpus("train"), COURSE_VOCAB_SIZE).to_json() == stored, (
        "data/tokenizer/tokenizer.json is stale: rebuild it with "
        f"`python -m glm3_teach.tokenizer --out data/tokenizer --vocab-size {COURSE_VOCAB_SIZE}`")


def test_course_tokenizer_loads_with_the_chatglm3_special_tokens_and_round_trips_the_val_split():
    from glm3_teach.data import load_corpus

    course = load_tokenizer()
    assert course.vocab_size == COURSE_VOCAB_SIZE
    assert [course.special_id(t) for t in CHATGLM3_SPECIAL_TOKENS] == list(range(4085, 4094))
    assert (course.eos_token_id, course.pad_token_id) == (4094, 4095)
    text = load_corpus("val")
    assert course.decode(course.encode(text)) == text
