"""chat() and stream_chat(): ChatGLM3's prompt, stop tokens, reply parsing, defaults and bad history.

The model is a ScriptedModel (tests/scripted_model.py) that says a fixed script, and the
tokenizer has no merges (ids 0..255 are bytes; 256 [MASK] ... 262 <|user|>, 263 <|assistant|>,
264 <|observation|>, 265 </s>, 266 <pad>), so every expected reply is written by hand.
"""

from __future__ import annotations

import pytest
import torch
from scripted_model import ScriptedModel

import glm3_teach.chat as chat_module
from glm3_teach.chat import chat, stream_chat
from glm3_teach.tokenizer import BPETokenizer

USER, ASSISTANT, OBSERVATION, EOS, PAD = 262, 263, 264, 265, 266


def utf8(text):
    return list(text.encode("utf-8"))


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer([])


def model_saying(*pieces, seq_length=512):
    script = [token for piece in pieces for token in (utf8(piece) if isinstance(piece, str) else [piece])]
    return ScriptedModel(script, 267, seq_length, filler=ord("x"))


@pytest.mark.parametrize("stop", [EOS, USER, OBSERVATION])
def test_chat_stops_on_each_chatglm3_stop_token_and_drops_it(tok, stop):
    model = model_saying("\n", "乌龙茶58元。", stop, "junk")
    response, history = chat(model, tok, "乌龙茶多少钱？", do_sample=False)
    assert response == "乌龙茶58元。"
    assert history == [{"role": "user", "content": "乌龙茶多少钱？"},
                       {"role": "assistant", "metadata": "", "content": "乌龙茶58元。"}]


def test_chat_reads_the_chatglm3_prompt_and_leaves_the_callers_history_alone(tok):
    model = model_saying("\n", "ok", EOS)
    earlier = [{"role": "user", "content": "a"}, {"role": "assistant", "metadata": "", "content": "b"}]
    seen = []
    original = model.forward
    model.forward = lambda input_ids, **kw: (seen.append(input_ids[0].tolist()), original(input_ids, **kw))[1]
    response, history = chat(model, tok, "c", history=earlier, do_sample=False)
    assert seen[0] == tok.build_chat_input("c", history=earlier)
    assert len(earlier) == 2 and history[:2] == earlier and history[2] == {"role": "user", "content": "c"}
    assert response == "ok"


def test_a_tool_call_reply_is_parsed_when_the_history_offers_tools(tok):
    model = model_saying("check_order\n```python\ntool_call(order_id='A1234')\n```", OBSERVATION)
    system = {"role": "system", "content": "Answer ...", "tools": [{"name": "check_order"}]}
    response, history = chat(model, tok, "我的订单A1234呢？", history=[system], do_sample=False)
    assert response == {"name": "check_order", "parameters": {"order_id": "A1234"}}
    assert history[-1]["metadata"] == "check_order"


def test_observation_role_continues_after_a_call(tok):
    model = model_saying("\n", "已发货。", EOS)
    history = [{"role": "user", "content": "q"},
               {"role": "assistant", "metadata": "check_order", "content": "tool_call(order_id='A1234')"}]
    response, new_history = chat(model, tok, '{"status": "shipped"}', history=history, role="observation",
                                 do_sample=False)
    assert response == "已发货。" and new_history[2]["role"] == "observation"


def test_length_limit_keeps_the_last_token_and_respects_max_length(tok):
    response, _ = chat(model_saying("\n", "abcdef", EOS), tok, "q", do_sample=False, max_new_tokens=4)
    assert response == "abc"
    prompt = len(tok.build_chat_input("q"))
    response, _ = chat(model_saying("\n", "abcdef", EOS), tok, "q", do_sample=False, max_length=prompt + 3)
    assert response == "ab"


def test_stream_chat_yields_growing_replies_ending_with_what_chat_returns(tok):
    model = model_saying("\n", "你好ab", EOS)
    pieces = [response for response, _ in stream_chat(model, tok, "q", do_sample=False)]
    assert pieces[-1] == chat(model, tok, "q", do_sample=False)[0] == "你好ab"
    assert all("\ufffd" not in p for p in pieces)  # the three bytes of 你 are held back until complete
    assert pieces == ["", "你", "你好", "你好a", "你好ab"]
    _, history = list(stream_chat(model, tok, "q", do_sample=False))[-1]
    assert history[-1] == {"role": "assistant", "metadata": "", "content": "你好ab"}


def test_chatglm3_sampling_defaults_unless_overridden(tok, monkeypatch):
    calls = []

    def fake_steps(model, input_ids, max_new_tokens, **kwargs):
        calls.append(kwargs)
        yield torch.tensor([EOS])

    monkeypatch.setattr(chat_module, "generate_steps", fake_steps)
    chat(model_saying(EOS), tok, "q")
    assert calls[-1]["do_sample"] is True and calls[-1]["top_p"] == 0.8 and calls[-1]["temperature"] == 0.8
    assert sorted(calls[-1]["eos_token_ids"]) == [USER, OBSERVATION, EOS]
    chat(model_saying(EOS), tok, "q", do_sample=False)
    assert calls[-1]["do_sample"] is False and "top_p" not in calls[-1] and "temperature" not in calls[-1]
    chat(model_saying(EOS), tok, "q", temperature=0.3)
    assert calls[-1]["temperature"] == 0.3 and calls[-1]["top_p"] == 0.8


def test_sampling_with_a_generator_is_reproducible(tok):
    model = ScriptedModel([], 267, filler=ord("a"))
    model.forward = lambda input_ids, **kw: type("O", (), {"logits": torch.zeros(*input_ids.shape, 267),
                                                           "kv_cache": None})()
    first = chat(model, tok, "q", generator=torch.Generator().manual_seed(1), max_new_tokens=8, use_cache=False)
    second = chat(model, tok, "q", generator=torch.Generator().manual_seed(1), max_new_tokens=8, use_cache=False)
    assert first == second


@pytest.mark.parametrize("history, error, message", [
    ("hello", TypeError, "history must be a list"),
    ([{"role": "robot", "content": "x"}], ValueError, "unknown role 'robot'"),
    ([{"role": "user"}], ValueError, r"history\[0\] \(user\) has no 'content'"),
    ([{"role": "user", "content": 5}], TypeError, r"history\[0\]\['content'\] must be a str"),
    ([{"role": "observation", "content": "x"}], ValueError, "observation"),
    ([["user", "x"]], TypeError, r"history\[0\] must be a dict"),
])
def test_malformed_history_gets_one_clear_error(tok, history, error, message):
    with pytest.raises(error, match=message):
        chat(model_saying(EOS), tok, "q", history=history)
    with pytest.raises(error, match=message):
        next(stream_chat(model_saying(EOS), tok, "q", history=history))


def test_a_prompt_that_leaves_no_room_is_refused(tok):
    with pytest.raises(ValueError, match="leaves no room"):
        chat(model_saying(EOS, seq_length=8), tok, "a long question")


def test_the_same_functions_run_chatglm3s_own_tokenizer():
    from glm3_teach.chatglm3_tokenizer import TOKENIZER_ENV_VAR, ChatGLM3Tokenizer
    from glm3_teach.paths import find_reference_file

    path = find_reference_file("tokenizer.model", TOKENIZER_ENV_VAR)
    if path is None:
        pytest.skip(f"ChatGLM3's tokenizer.model is not available (set {TOKENIZER_ENV_VAR})")
    tok = ChatGLM3Tokenizer.from_file(path)
    # the reply "\n你好" is [30910 ▁, 13 \n, 36474 ▁你, 54591 好], then <|user|> 64795 ends the turn
    model = ScriptedModel([30910, 13, 36474, 54591, 64795], 65024)
    response, history = chat(model, tok, "你好", do_sample=False)
    assert response == "你好" and history[-1]["content"] == "你好"


def test_chat_box_reply_is_the_whole_chat_box_logic(tok):
    from glm3_teach.chat import chat_box_reply

    model = model_saying("\n", "您好！", EOS)
    transcript, history = chat_box_reply(model, tok, "  你好 ", None, do_sample=False)
    assert transcript == "你: 你好\n助手: 您好！" and len(history) == 2
    same, unchanged = chat_box_reply(model, tok, "   ", history, do_sample=False)
    assert same == transcript and unchanged == history
    with pytest.raises(TypeError, match="history must be a list"):
        chat_box_reply(model, tok, "hi", "not a history")
