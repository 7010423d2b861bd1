"""The real ChatGLM3-6B tokenizer (glm3_teach.chatglm3_tokenizer) against the facts read from the
reference implementation (../shared/reference/chatglm3_facts.md). Needs ChatGLM3's
tokenizer.model: found in ../shared/reference/chatglm3/ or named by GLM3_CHATGLM3_TOKENIZER."""

import pytest
import sentencepiece
from hypothesis import given, settings
from hypothesis import strategies as st

from glm3_teach.chat_format import CHATGLM3_SPECIAL_TOKENS
from glm3_teach.chatglm3_tokenizer import TOKENIZER_ENV_VAR, ChatGLM3Tokenizer
from glm3_teach.paths import find_reference_file
from glm3_teach.tokenizer import load_tokenizer

MODEL = find_reference_file("tokenizer.model", TOKENIZER_ENV_VAR)
needs_model = pytest.mark.skipif(MODEL is None, reason=f"ChatGLM3's tokenizer.model not found: looked at "
                                 f"${TOKENIZER_ENV_VAR} (the file), then ${{GLM3_REFERENCE_DIR}}/tokenizer.model, "
                                 f"default ../shared/reference/chatglm3/tokenizer.model; set either variable or put it there")


@pytest.fixture(scope="module")
def tok():
    return ChatGLM3Tokenizer.from_file(MODEL)


@pytest.fixture(scope="module")
def sp():
    return sentencepiece.SentencePieceProcessor(model_file=str(MODEL))


@needs_model
def test_build_chat_input_matches_chatglm3(tok):
    assert tok.build_chat_input("你好") == [64790, 64792, 64795, 30910, 13, 36474, 54591, 64796]


@needs_model
def test_vocabulary_and_special_ids(tok):
    assert tok.ordinary_vocab_size == 64789 and tok.vocab_size == 64798
    assert [tok.special_id(t) for t in CHATGLM3_SPECIAL_TOKENS] == list(range(64789, 64798))
    assert (tok.eos_token_id, tok.pad_token_id) == (2, 0)


@needs_model
def test_encode_adds_gmask_sop_by_default(tok):
    assert tok.encode("你好") == [64790, 64792, 36474, 54591]
    assert tok.encode("你好", add_special_tokens=False) == [36474, 54591]


@needs_model
def test_each_segment_gets_a_dummy_prefix(tok):
    assert tok.encode("\n", add_special_tokens=False) == [30910, 13]
    assert tok.encode("track\n", add_special_tokens=False) == [2450, 13]


@needs_model
def test_prompt_text_with_special_tokens_allowed_reproduces_build_chat_input(tok):
    text = "[gMASK]sop<|user|>\n 你好<|assistant|>"
    assert tok.encode(text, add_special_tokens=False, allowed_special="all") == tok.build_chat_input("你好")


@needs_model
def test_role_markers_in_plain_text_stay_plain(tok):
    ids = tok.encode("<|user|>你好<|assistant|>", add_special_tokens=False)
    assert all(i < 64789 for i in ids)


@needs_model
def test_system_tools_and_tool_call_round(tok):
    tools = [{"name": "track", "description": "追踪指定股票的实时价格"}]
    history = [{"role": "system", "content": "Answer.", "tools": tools},
               {"role": "user", "content": "查一下"},
               {"role": "assistant", "metadata": "track", "content": "```python\ntool_call(symbol='AAPL')\n```"}]
    ids = tok.build_chat_input('{"price": 1}', history, role="observation")
    assert ids[:3] == [64790, 64792, 64794]
    assert ids.count(64796) == 2 and ids[-1] == 64796
    call = ids.index(64796)
    assert ids[call + 1:call + 3] == [2450, 13]  # "track\n" -> ▁track, newline (facts sheet)
    assert ids[ids.index(64797) + 1:ids.index(64797) + 3] == [30910, 13]


@needs_model
def test_decode_renders_special_tokens_and_each_segment(tok):
    assert tok.decode(tok.build_chat_input("你好")) == "[gMASK]sop<|user|>\n 你好<|assistant|>"


@needs_model
def test_decode_rejects_the_padding_rows_of_the_embedding(tok):
    with pytest.raises(ValueError, match="ids 0..64797"):
        tok.decode([36474, 64798])


@needs_model
@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\u2581", blacklist_categories=("Cs",))))
def test_decode_encode_round_trips(tok, text):
    # U+2581 "▁" is SentencePiece's own space mark; it decodes as a space, so it is left out.
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


@needs_model
@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 300), st.sampled_from([30910, 265, 36474, 54591, 13, 2450, 64790, 64795])),
                max_size=25))
def test_stream_decoder_writes_what_sentencepiece_decodes(tok, sp, ids):
    # bytes, control pieces, unknown, "▁", "▁▁", words, specials: the stream must equal SentencePiece
    stream = tok.stream_decoder()
    streamed = "".join(stream.push(i) for i in ids) + stream.flush()
    assert streamed == tok.decode(ids)
    plain = [i for i in ids if i < 64789]
    if len(plain) == len(ids):
        assert streamed == sp.decode(plain)


@needs_model
def test_streaming_chinese_never_breaks_a_character(tok):
    text = "我喜欢喝茶🍵，鼍龙"  # the emoji and a rare character fall back to bytes
    ids = tok.encode(text, add_special_tokens=False)
    assert any(3 <= i < 259 for i in ids), "expected byte-fallback pieces in this text"
    stream = tok.stream_decoder()
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) + stream.flush() == text
    assert not any("\ufffd" in piece for piece in pieces)


@needs_model
def test_load_tokenizer_finds_the_model_in_a_folder_or_as_a_file(tmp_path):
    (tmp_path / "tokenizer.model").symlink_to(MODEL)  # a link, never a copy of the model file
    for where in (tmp_path, MODEL):
        loaded = load_tokenizer(where)
        assert isinstance(loaded, ChatGLM3Tokenizer) and loaded.vocab_size == 64798


def test_a_file_that_is_not_a_sentencepiece_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="is not a SentencePiece model"):
        ChatGLM3Tokenizer.from_file(bad)
    with pytest.raises(FileNotFoundError, match=TOKENIZER_ENV_VAR):
        ChatGLM3Tokenizer.from_file(tmp_path / "missing.model")
