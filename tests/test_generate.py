"""Decoding (glm3_teach.generate): the logits transforms one at a time, greedy and sampled
generation with and without the KV cache, left-padded batches, stop tokens, and streaming
text that never shows half a Chinese character."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from glm3_teach.generate import (
    CHATGLM3_TEMPERATURE,
    CHATGLM3_TOP_P,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    choose_next_token,
    finish_rows,
    generate,
    kv_cache_bytes,
    next_token_probs,
    process_logits,
    stop_token_ids,
    stream_generate,
)
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.tokenizer import load_tokenizer

VOCAB = 4096  # the course tokenizer's size, so streaming tests can decode what the model writes


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def model():
    """A tiny random ChatGLM3 whose logits are spread out enough that the arg-max is never a near-tie."""
    torch.manual_seed(0)
    config = ChatGLMConfig(num_layers=2, hidden_size=64, ffn_hidden_size=128, kv_channels=16, num_attention_heads=4,
                           multi_query_group_num=2, padded_vocab_size=VOCAB, seq_length=64)
    lm = ChatGLMForCausalLM(config).eval()
    with torch.no_grad():
        lm.transformer.output_layer.weight.mul_(40.0)
    return lm


def greedy_by_recomputing(model, ids, steps):
    """The reference: the whole sequence through the model at every step, arg-max of the last logits."""
    ids = ids.clone()
    with torch.no_grad():
        for _ in range(steps):
            next_id = model(ids).logits[:, -1].argmax(-1)
            ids = torch.cat([ids, next_id[:, None]], dim=1)
    return ids


class ScriptedLM(nn.Module):
    """A stand-in model that writes a fixed script per row, and records what it was fed.

    It takes the same arguments as ``ChatGLMForCausalLM.forward``; its "cache" only
    remembers how many tokens were seen, so the step count is known with or without it.
    """

    def __init__(self, scripts, vocab=VOCAB, seq_length=64):
        super().__init__()
        self.scripts = scripts
        self.config = SimpleNamespace(padded_vocab_size=vocab, seq_length=seq_length, pad_token_id=0)
        self.weight = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.fed = []  # input length of every call
        self.prompt_len = None

    def forward(self, input_ids, attention_mask=None, position_ids=None, kv_cache=None, use_cache=False,
                output_attentions=False):
        past = 0 if kv_cache is None else kv_cache[0]
        total = past + input_ids.shape[1]
        if past == 0:
            self.prompt_len = input_ids.shape[1] if use_cache or not self.fed else self.prompt_len
        self.fed.append(input_ids.shape[1])
        step = total - self.prompt_len
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.config.padded_vocab_size)
        for row, script in enumerate(self.scripts):
            logits[row, -1, script[min(step, len(script) - 1)]] = 10.0
        return SimpleNamespace(logits=logits, kv_cache=[total] if use_cache else None)


# --- the logits transforms ----------------------------------------------------------------------


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    logits = torch.tensor([[3.0, -1.0, 0.5, 2.0], [1.0, 1.0, -4.0, 0.0]])
    seen = torch.tensor([[0, 1, 1], [2, 2, 2]])  # a token seen twice is penalised once
    expected = torch.tensor([[3.0 / 1.5, -1.0 * 1.5, 0.5, 2.0], [1.0, 1.0, -4.0 * 1.5, 0.0]])
    torch.testing.assert_close(apply_repetition_penalty(logits, seen, 1.5), expected)


def test_repetition_penalty_of_one_changes_nothing_and_below_one_rewards_repeats():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    seen = torch.tensor([[0, 1]])
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)
    torch.testing.assert_close(apply_repetition_penalty(logits, seen, 0.5), torch.tensor([[4.0, -1.0, 1.0]]))


def test_temperature_divides_the_logits_and_sharpens_or_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    torch.testing.assert_close(apply_temperature(logits, 0.5), torch.tensor([[4.0, 2.0, 0.0]]))
    top = [torch.softmax(apply_temperature(logits, t), -1)[0, 0].item() for t in (0.5, 1.0, 2.0)]
    assert top[0] > top[1] > top[2] > 1 / 3


def test_top_k_keeps_the_k_largest_and_their_ties():
    logits = torch.tensor([[1.0, 5.0, 3.0, 3.0, -2.0]])
    inf = float("-inf")
    assert torch.equal(apply_top_k(logits, 1), torch.tensor([[inf, 5.0, inf, inf, inf]]))
    assert torch.equal(apply_top_k(logits, 2), torch.tensor([[inf, 5.0, 3.0, 3.0, inf]]))  # tie with the 2nd
    assert torch.equal(apply_top_k(logits, 10), logits)


def test_top_p_keeps_the_smallest_set_whose_probability_reaches_p():
    probs = torch.tensor([[0.1, 0.4, 0.05, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(apply_top_p(logits, p))[0].nonzero()[:, 0].tolist()  # noqa: E731
    assert kept(0.3) == [1]              # 0.4 alone reaches 0.3
    assert kept(0.4) == [1]              # exactly reached
    assert kept(0.5) == [1, 3]           # 0.4 + 0.3 = 0.7 >= 0.5
    assert kept(0.8) == [1, 3, 4]        # 0.85
    assert kept(0.9) == [0, 1, 3, 4]     # 0.95
    assert kept(1.0) == [0, 1, 2, 3, 4]
    assert kept(1e-6) == [1]             # the most likely token always survives


def test_top_p_works_row_by_row_and_keeps_kept_logits_unchanged():
    logits = torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 4.9]])
    out = apply_top_p(logits, 0.9)
    assert torch.equal(torch.isfinite(out), torch.tensor([[False, True, False], [True, False, True]]))
    assert out[1, 0] == 5.0 and out[1, 2] == 4.9


def test_greedy_processing_ignores_temperature_top_k_and_top_p():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    seen = torch.tensor([[1, 2], [3, 3], [0, 49]])
    greedy = process_logits(logits, seen, do_sample=False, temperature=0.1, top_k=1, top_p=0.1,
                            repetition_penalty=1.3)
    torch.testing.assert_close(greedy, apply_repetition_penalty(logits, seen, 1.3))


def test_sampling_applies_penalty_then_temperature_then_top_k_then_top_p():
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(2))
    seen = torch.tensor([[4, 5], [6, 7]])
    expected = apply_top_p(apply_top_k(apply_temperature(apply_repetition_penalty(logits, seen, 1.2), 0.7), 8), 0.6)
    got = process_logits(logits, seen, do_sample=True, temperature=0.7, top_k=8, top_p=0.6, repetition_penalty=1.2)
    torch.testing.assert_close(got, expected)


def test_next_token_probs_is_a_distribution_over_the_kept_tokens():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    probs = next_token_probs(logits, temperature=CHATGLM3_TEMPERATURE, top_p=CHATGLM3_TOP_P)
    assert probs.shape == (4,) and abs(probs.sum().item() - 1) < 1e-6
    # probabilities at T=0.8 are 0.64, 0.18, 0.10, 0.02: the nucleus 0.8 needs the first two
    assert probs[2].item() == 0 and probs[3].item() == 0
    torch.testing.assert_close(probs[:2], torch.softmax(logits[:2] / 0.8, -1))


def test_sampled_tokens_follow_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    draws = choose_next_token(probs.log().expand(20000, 4), do_sample=True,
                              generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


# --- greedy generation, the cache, batches ------------------------------------------------------


def test_greedy_with_the_cache_equals_recomputing_the_whole_sequence(model):
    prompt = torch.tensor([[5, 17, 300, 42, 9]])
    reference = greedy_by_recomputing(model, prompt, 20)
    assert torch.equal(generate(model, prompt, 20, use_cache=True), reference)
    assert torch.equal(generate(model, prompt, 20, use_cache=False), reference)


def test_the_cache_feeds_the_prompt_once_then_one_token_per_step():
    lm = ScriptedLM([[7, 8, 9, 10]])
    out = generate(lm, torch.tensor([[1, 2, 3]]), 4)
    assert out.tolist() == [[1, 2, 3, 7, 8, 9, 10]]
    assert lm.fed == [3, 1, 1, 1]
    lm = ScriptedLM([[7, 8, 9, 10]])
    assert generate(lm, torch.tensor([[1, 2, 3]]), 4, use_cache=False).tolist() == out.tolist()
    assert lm.fed == [3, 4, 5, 6]


def test_batched_left_padded_prompts_match_each_prompt_alone(model):
    prompts = [[11, 12, 13, 14, 15, 16], [700, 3], [42, 43, 44, 45]]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    for use_cache in (True, False):
        batched = generate(model, ids, 12, attention_mask=mask, use_cache=use_cache)
        for row, prompt in enumerate(prompts):
            alone = generate(model, torch.tensor([prompt]), 12, use_cache=use_cache)
            assert batched[row, width:].tolist() == alone[0, len(prompt):].tolist(), (use_cache, row)
            assert batched[row, :width].tolist() == ids[row].tolist()


def test_a_padded_row_is_not_penalised_for_its_pad_tokens(model):
    # the pad id (0) is never in the prompt, so the penalised batch must still match the rows alone
    prompts = [[11, 12, 13, 14], [700, 3]]
    ids = torch.tensor([prompts[0], [0, 0] + prompts[1]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    batched = generate(model, ids, 10, attention_mask=mask, repetition_penalty=1.5)
    alone = generate(model, torch.tensor([prompts[1]]), 10, repetition_penalty=1.5)
    assert batched[1, 4:].tolist() == alone[0, 2:].tolist()


def test_each_row_stops_on_its_own_and_finished_rows_are_padded():
    stop, other_stop, pad = 4094, 4093, 4095
    lm = ScriptedLM([[20, stop, 21, 22, 23], [30, 31, 32, other_stop, 33], [40, 41, 42, 43, 44]])
    out = generate(lm, torch.tensor([[1], [2], [3]]), 5, eos_token_ids=[stop, other_stop], pad_token_id=pad)
    assert out.tolist() == [[1, 20, stop, pad, pad, pad],
                            [2, 30, 31, 32, other_stop, pad],
                            [3, 40, 41, 42, 43, 44]]


def test_generation_ends_when_every_row_has_stopped_and_pads_with_the_first_stop_id_by_default():
    lm = ScriptedLM([[5, 9, 6, 6], [9, 6, 6, 6]])
    out = generate(lm, torch.tensor([[1], [2]]), 10, eos_token_ids=[9, 8])
    assert out.tolist() == [[1, 5, 9], [2, 9, 9]]
    assert len(lm.fed) == 2


def test_no_stop_ids_means_never_stop_early():
    lm = ScriptedLM([[9, 9, 9, 9]])
    assert generate(lm, torch.tensor([[1]]), 4).shape == (1, 5)
    assert generate(lm, torch.tensor([[1]]), 4, eos_token_ids=[]).shape == (1, 5)


def test_finish_rows_pads_finished_rows_and_marks_new_stops():
    ids, finished = finish_rows(torch.tensor([5, 9, 7, 8]), torch.tensor([True, False, False, False]),
                                torch.tensor([9, 8]), 0)
    assert ids.tolist() == [0, 9, 7, 8] and finished.tolist() == [True, True, False, True]
    ids, finished = finish_rows(torch.tensor([9]), torch.tensor([False]), None, 0)
    assert ids.tolist() == [9] and finished.tolist() == [False]


def test_kv_cache_of_chatglm3_6b_is_28_kib_per_token_in_fp16():
    config = ChatGLMConfig.chatglm3_6b()
    assert kv_cache_bytes(config) == 28 * 2 * 2 * 128 * 2 == 28_672
    assert kv_cache_bytes(config, num_tokens=8192) == 224 * 2**20       # 224 MiB for a full context
    mha = ChatGLMConfig.chatglm3_6b(multi_query_attention=False)         # one K/V per query head
    assert kv_cache_bytes(mha) == 16 * 28_672


def test_kv_cache_bytes_match_the_tensors_the_model_returns(model):
    out = model(torch.ones(3, 10, dtype=torch.long), use_cache=True)
    stored = sum(k.nbytes + v.nbytes for k, v in out.kv_cache)
    assert stored == kv_cache_bytes(model.config, num_tokens=10, bytes_per_value=4, batch=3)


def test_stop_token_ids_are_chatglm3s_three(tok):
    expected = [tok.special_id("</s>"), tok.special_id("<|user|>"), tok.special_id("<|observation|>")]
    assert stop_token_ids(tok) == expected
    assert stop_token_ids(tok) == [4094, 4091, 4093]


def test_zero_new_tokens_returns_the_prompt(model):
    prompt = torch.tensor([[1, 2, 3]])
    assert torch.equal(generate(model, prompt, 0), prompt)


def test_a_one_dimensional_prompt_is_a_batch_of_one(model):
    assert generate(model, torch.tensor([1, 2, 3]), 4).shape == (1, 7)


# --- sampling -----------------------------------------------------------------------------------


def test_sampling_is_reproducible_with_a_generator(model):
    prompt = torch.tensor([[5, 6, 7], [8, 9, 10]])
    kwargs = dict(do_sample=True, temperature=3.0, top_p=0.99)
    first = generate(model, prompt, 16, generator=torch.Generator().manual_seed(123), **kwargs)
    again = generate(model, prompt, 16, generator=torch.Generator().manual_seed(123), **kwargs)
    other = generate(model, prompt, 16, generator=torch.Generator().manual_seed(124), **kwargs)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    greedy = generate(model, prompt, 16)
    assert not torch.equal(first, greedy)


def test_sampling_with_top_k_one_is_greedy(model):
    prompt = torch.tensor([[5, 6, 7]])
    sampled = generate(model, prompt, 10, do_sample=True, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, generate(model, prompt, 10))


def test_sampling_with_and_without_the_cache_draws_the_same_tokens(model):
    prompt = torch.tensor([[5, 6, 7]])
    runs = [generate(model, prompt, 12, do_sample=True, temperature=2.0, use_cache=cache,
                     generator=torch.Generator().manual_seed(7)) for cache in (True, False)]
    assert torch.equal(runs[0], runs[1])


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(do_sample=True, top_p=0.0), "top_p must be in"),
    (dict(do_sample=True, top_p=1.5), "top_p must be in"),
    (dict(top_p=-0.1), "top_p must be in"),
    (dict(do_sample=True, temperature=0.0), "temperature must be a number > 0"),
    (dict(do_sample=True, temperature=-1.0), "temperature must be a number > 0"),
    (dict(top_k=0), "top_k must be an int >= 1"),
    (dict(top_k=2.5), "top_k must be an int >= 1"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be"),
    (dict(eos_token_ids=[VOCAB]), "outside the vocabulary"),
])
def test_bad_sampling_settings_raise_a_clear_error(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(model, torch.tensor([[1, 2]]), 3, **kwargs)


def test_greedy_accepts_any_temperature(model):
    assert generate(model, torch.tensor([[1, 2]]), 3, temperature=0.0).shape == (1, 5)


def test_an_empty_prompt_raises(model):
    with pytest.raises(ValueError, match="prompt is empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="all padding"):
        generate(model, torch.tensor([[0, 0], [1, 2]]), 3, attention_mask=torch.tensor([[0, 0], [1, 1]]))


def test_right_padding_raises(model):
    with pytest.raises(ValueError, match="right padding"):
        generate(model, torch.tensor([[1, 2, 0]]), 3, attention_mask=torch.tensor([[1, 1, 0]]))


def test_float_ids_and_wrong_generator_raise(model):
    with pytest.raises(TypeError, match="integer tensor"):
        generate(model, torch.tensor([[1.0, 2.0]]), 3)
    with pytest.raises(TypeError, match="torch.Generator"):
        generate(model, torch.tensor([[1, 2]]), 3, do_sample=True, generator=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, torch.tensor([[1, 2]]), -1)


def test_generating_past_seq_length_raises_before_starting(model):
    seq_length = model.config.seq_length
    prompt = torch.ones(1, 10, dtype=torch.long)
    assert generate(model, prompt, seq_length - 10).shape == (1, seq_length)  # exactly fits
    with pytest.raises(ValueError, match=f"exceeds the model's seq_length {seq_length}"):
        generate(model, prompt, seq_length - 9)


# --- streaming ----------------------------------------------------------------------------------


def test_stream_generate_of_a_split_chinese_character_yields_only_whole_characters(tok):
    # 鼍 and 龙 are not in the course vocabulary: each is three byte tokens, and 🍵 is four
    text = "鼍龙喝茶🍵，很好。"
    script = tok.encode(text)
    assert [len(tok.encode(ch)) for ch in ["鼍", "龙", "🍵"]] == [3, 3, 4] and len(script) == 15
    lm = ScriptedLM([script + [tok.eos_token_id]])
    pieces = list(stream_generate(lm, tok, tok.encode("从前"), 40))
    # one piece per token that completes something; tokens ending mid-character yield nothing
    assert pieces == ["鼍", "龙", "喝", "茶", "🍵", "，", "很好", "。"]


def test_stream_generate_stops_on_user_and_drops_a_character_cut_off_at_the_end(tok):
    lm = ScriptedLM([tok.encode("好的") + [tok.special_id("<|user|>")] + tok.encode("不要")])
    assert "".join(stream_generate(lm, tok, [1, 2], 20)) == "好的"
    lm = ScriptedLM([tok.encode("好鼍")])
    assert "".join(stream_generate(lm, tok, [1, 2], len(tok.encode("好鼍")) - 1)) == "好"


def test_stream_generate_with_a_model_on_a_chinese_prompt_never_shows_half_a_character(model, tok):
    prompt = tok.encode("从前，有一只小猫在茶馆里", add_special_tokens=True)
    new = generate(model, torch.tensor([prompt]), 40, do_sample=True, temperature=2.0,
                   generator=torch.Generator().manual_seed(3), eos_token_ids=[])[0, len(prompt):].tolist()
    assert any(i < 256 for i in new), "the test needs byte tokens among the generated ids"
    pieces = list(stream_generate(model, tok, prompt, 40, do_sample=True, temperature=2.0,
                                  generator=torch.Generator().manual_seed(3), eos_token_ids=[]))
    # the text shown so far is always a prefix of the full decode: no character is ever shown broken
    full, shown = tok.decode(new), ""
    for piece in pieces:
        shown += piece
        assert full.startswith(shown)
    assert full.startswith(shown) and len(full) - len(shown) <= 3


def test_stream_generate_takes_one_prompt_only(model, tok):
    with pytest.raises(ValueError, match="one prompt"):
        list(stream_generate(model, tok, torch.ones(2, 3, dtype=torch.long), 2))


def test_stream_generate_asks_for_ids_when_given_text(model):
    tokenizer = load_tokenizer()
    with pytest.raises(TypeError, match="encode it first"):
        list(stream_generate(model, tokenizer, "你好", 3))
