"""Streaming decode (glm3_teach.stream_decoder): ids in one at a time, whole characters out,
and the pieces joined equal ``decode`` of all the ids."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glm3_teach.tokenizer import BPETokenizer

CHINESE = "我喜欢喝茶。今天下雨，小猫在茶馆里睡觉🍵"


@pytest.fixture(scope="module")
def byte_tok():
    return BPETokenizer([])


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train((CHINESE + " tea time\n") * 5, 256 + 40 + 11)


def test_a_chinese_character_appears_when_its_third_byte_arrives(byte_tok):
    stream = byte_tok.stream_decoder()
    assert [stream.push(i) for i in [0xE8, 0x8C, 0xB6, ord("!")]] == ["", "", "茶", "!"]


def test_streaming_chinese_never_emits_a_broken_character(tok):
    stream = tok.stream_decoder()
    pieces = [stream.push(i) for i in tok.encode(CHINESE)] + [stream.flush()]
    assert "".join(pieces) == CHINESE
    assert not any("\ufffd" in piece for piece in pieces)


def test_decoding_each_id_alone_would_break_characters(byte_tok):
    # the problem the stream decoder solves: one id at a time, a 3-byte character is lost
    assert "".join(byte_tok.decode([i]) for i in byte_tok.encode("茶")) == "\ufffd\ufffd\ufffd"


def test_an_unfinished_character_is_flushed_as_a_replacement(byte_tok):
    stream = byte_tok.stream_decoder()
    assert stream.push_many([0xE8, 0x8C]) == ""
    assert stream.flush() == "\ufffd"


def test_a_special_token_ends_an_unfinished_character(byte_tok):
    stream = byte_tok.stream_decoder()
    assert stream.push_many([0xE8, 0x8C, byte_tok.special_id("<|user|>")]) == "\ufffd<|user|>"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_stream_equals_decode_for_any_ids(tok, data):
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=40))
    stream = tok.stream_decoder()
    assert "".join(stream.push(i) for i in ids) + stream.flush() == tok.decode(ids)


def test_stream_rejects_an_id_out_of_range(tok):
    with pytest.raises(ValueError, match="out of range"):
        tok.stream_decoder().push(tok.vocab_size)
