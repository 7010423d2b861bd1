"""The preallocated KV cache (glm3_teach.kv_cache): written in place, the same numbers as the tuple cache,
and the same tokens from ``generate`` with either cache design or none."""

from __future__ import annotations

import pytest
import torch

from glm3_teach.attention import rotate_queries_and_keys
from glm3_teach.generate import generate, stream_generate
from glm3_teach.kv_cache import KVCache
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.rope import apply_rotary_pos_emb, build_rope_cache


def small_model(**overrides) -> ChatGLMForCausalLM:
    torch.manual_seed(0)
    config = ChatGLMConfig(num_layers=2, hidden_size=64, ffn_hidden_size=96, kv_channels=16, num_attention_heads=4,
                           multi_query_group_num=2, padded_vocab_size=128, seq_length=64, **overrides)
    return ChatGLMForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model():
    return small_model()


def ids(batch, seq, seed=0):
    return torch.randint(0, 128, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_the_cache_writes_in_place_and_reads_back_like_the_tuple_cache(model):
    prompt = ids(2, 9)
    cache = KVCache.for_config(model.config, batch=2, max_len=16)
    storage = cache.storage.data_ptr()
    with torch.no_grad():
        first = model(prompt[:, :6], kv_cache=cache, use_cache=True)
        step = model(prompt[:, 6:7], kv_cache=cache, use_cache=True)
        chunk = model(prompt[:, 7:], kv_cache=cache, use_cache=True)
        tuples = model(prompt[:, :6], use_cache=True).kv_cache
        tuples_step = model(prompt[:, 6:7], kv_cache=tuples, use_cache=True)
        tuples_chunk = model(prompt[:, 7:], kv_cache=tuples_step.kv_cache, use_cache=True)
    assert first.kv_cache is cache and cache.length == 9 and cache.storage.data_ptr() == storage
    assert torch.equal(step.logits, tuples_step.logits) and torch.equal(chunk.logits, tuples_chunk.logits)
    for (k, v), (tk, tv) in zip(cache, tuples_chunk.kv_cache):
        assert k.shape == (2, 2, 9, 16) and torch.equal(k, tk) and torch.equal(v, tv)
    assert cache.storage[:, :, :, :, 9:].abs().sum() == 0          # nothing written past the filled part


def test_a_forward_without_use_cache_reads_the_cache_but_keeps_its_length(model):
    prompt = ids(1, 5)
    cache = KVCache.for_config(model.config, batch=1, max_len=8)
    with torch.no_grad():
        model(prompt[:, :4], kv_cache=cache, use_cache=True)
        peek = model(prompt[:, 4:], kv_cache=cache)
        full = model(prompt).logits[:, -1]
    assert peek.kv_cache is None and cache.length == 4
    torch.testing.assert_close(peek.logits[:, -1], full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampling", [dict(), dict(repetition_penalty=1.3),
                                      dict(do_sample=True, temperature=0.9, top_p=0.9, top_k=20)])
def test_generate_gives_the_same_tokens_with_either_cache_design_and_without_a_cache(model, sampling):
    prompt = ids(2, 7, seed=1)
    outs = {name: generate(model, prompt, 20, generator=torch.Generator().manual_seed(3), **design, **sampling)
            for name, design in {"preallocated": dict(cache_impl="preallocated"), "concat": dict(cache_impl="concat"),
                                 "none": dict(use_cache=False)}.items()}
    assert outs["preallocated"].shape == (2, 27)
    assert torch.equal(outs["preallocated"], outs["concat"]) and torch.equal(outs["preallocated"], outs["none"])


def test_a_left_padded_batch_and_early_stops_agree_across_designs(model):
    prompt = ids(3, 8, seed=2)
    mask = torch.ones_like(prompt)
    mask[0, :3], mask[1, :5] = 0, 0
    prompt = prompt.masked_fill(mask == 0, 0)
    stop = int(generate(model, prompt, 4, attention_mask=mask)[1, -2])   # a token row 1 writes early
    outs = [generate(model, prompt, 15, attention_mask=mask, eos_token_ids=[stop], cache_impl=impl)
            for impl in ("preallocated", "concat")]
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0], generate(model, prompt, 15, attention_mask=mask, eos_token_ids=[stop], use_cache=False))


def test_p_tuning_prefix_goes_into_the_preallocated_cache():
    model = small_model(pre_seq_len=3)
    prompt = ids(2, 6, seed=4)
    pre = generate(model, prompt, 10, cache_impl="preallocated")
    assert torch.equal(pre, generate(model, prompt, 10, cache_impl="concat"))
    assert torch.equal(pre, generate(model, prompt, 10, use_cache=False))
    cache = KVCache.for_config(model.config, batch=2, max_len=12)
    with torch.no_grad():
        model(prompt, kv_cache=cache, use_cache=True)
    assert cache.length == 3 + 6                                          # the prefix slots, then the prompt
    prompt_kv = model.transformer.get_prompt(2, torch.float32)
    assert torch.equal(cache[0][0][:, :, :3], prompt_kv[0][0])


def test_stream_generate_still_streams_with_the_preallocated_cache(model):
    class Ids:  # a tokenizer stand-in: one character per id
        eos_token_id = 127

        def stream_decoder(self):
            return type("D", (), {"push": staticmethod(lambda i: chr(65 + i % 26))})()

    pieces = list(stream_generate(model, Ids(), ids(1, 5)[0].tolist(), 6, eos_token_ids=[]))
    expected = generate(model, ids(1, 5), 6)[0, 5:].tolist()
    assert pieces == [chr(65 + i % 26) for i in expected]


def test_bad_caches_get_clear_errors(model):
    prompt = ids(1, 5)
    with torch.no_grad():
        with pytest.raises(ValueError, match="make a cache with max_len >= 5"):
            model(prompt, kv_cache=KVCache.for_config(model.config, batch=1, max_len=4), use_cache=True)
        with pytest.raises(ValueError, match=r"\(layers, batch, groups, head_dim\) = \(2, 2, 2, 16\)"):
            model(prompt, kv_cache=KVCache.for_config(model.config, batch=2, max_len=8), use_cache=True)
        with pytest.raises(ValueError, match="model's dtype and device"):
            model(prompt, kv_cache=KVCache.for_config(model.config, batch=1, max_len=8, dtype=torch.float16))
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        KVCache(2, 1, 2, 0, 16)
    with pytest.raises(ValueError, match="cache_impl must be one of"):
        generate(model, prompt, 2, cache_impl="paged")


def test_check_inputs_false_skips_only_the_value_checks(model):
    bad = torch.tensor([[1, 2, 500]])
    with torch.no_grad():
        with pytest.raises(ValueError, match="outside the vocabulary"):
            model(bad)
        with pytest.raises(ValueError, match=r"input_ids must be \[batch, seq_len\]"):
            model(torch.tensor([1, 2]), check_inputs=False)            # shapes are still checked
        fine = model(torch.tensor([[1, 2, 3]]), check_inputs=False).logits
    assert torch.equal(fine, model(torch.tensor([[1, 2, 3]])).logits)


def test_the_decoding_shortcuts_change_no_bit(model):
    """Rope rows sliced from the table (no mask, no positions given) equal rows indexed by position,
    and rotating queries and keys in one call equals two calls: both are exact, not close."""
    prompt = ids(3, 7)
    sliced_cache = KVCache.for_config(model.config, batch=3, max_len=8)
    indexed_cache = KVCache.for_config(model.config, batch=3, max_len=8)
    with torch.no_grad():
        assert torch.equal(model(prompt[:, :6], kv_cache=sliced_cache, use_cache=True).logits,
                           model(prompt[:, :6], kv_cache=indexed_cache, use_cache=True,
                                 position_ids=torch.arange(6)[None]).logits)
        sliced_step = model(prompt[:, 6:], kv_cache=sliced_cache).logits                       # past = 6
        indexed_step = model(prompt[:, 6:], kv_cache=indexed_cache, position_ids=torch.tensor([[6]])).logits
        elsewhere = model(prompt[:, 6:], kv_cache=indexed_cache, position_ids=torch.tensor([[5]])).logits
    assert torch.equal(sliced_step, indexed_step) and not torch.allclose(sliced_step, elsewhere)
    q, k = torch.randn(3, 4, 5, 16), torch.randn(3, 2, 5, 16)
    rope = build_rope_cache(9, 8)[torch.tensor([[0, 1, 2, 3, 4], [4, 5, 6, 7, 8], [0, 0, 1, 2, 3]])]  # [3, 5, 4, 2]
    q_rotated, k_rotated = rotate_queries_and_keys(q, k, rope)
    assert torch.equal(q_rotated, apply_rotary_pos_emb(q, rope)) and torch.equal(k_rotated, apply_rotary_pos_emb(k, rope))
    assert q_rotated.is_contiguous() and k_rotated.is_contiguous()
