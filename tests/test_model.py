"""The whole model: HF key names, parameter count, a reference forward, padding, KV cache, errors, config.

The reference forward below is written from chatglm3_facts.md alone: sequence-first
``[s, b, h]``, loops over tokens, heads and rotation pairs, ChatGLM3's own mask rule
(True = masked, pad-query rows opened), in float64.
"""

import dataclasses
import json
import math
import warnings

import pytest
import torch

from glm3_teach.model import CausalLMOutput, ChatGLMConfig, ChatGLMForCausalLM, count_parameters
from glm3_teach.paths import find_reference_file

LAYER_KEYS = ["input_layernorm.weight", "self_attention.query_key_value.weight", "self_attention.query_key_value.bias",
              "self_attention.dense.weight", "post_attention_layernorm.weight", "mlp.dense_h_to_4h.weight",
              "mlp.dense_4h_to_h.weight"]


def hf_keys(num_layers: int) -> set[str]:
    keys = {"transformer.embedding.word_embeddings.weight", "transformer.rotary_pos_emb.inv_freq",
            "transformer.encoder.final_layernorm.weight", "transformer.output_layer.weight"}
    return keys | {f"transformer.encoder.layers.{i}.{k}" for i in range(num_layers) for k in LAYER_KEYS}


def tiny_config(**overrides) -> ChatGLMConfig:
    sizes = dict(num_layers=2, hidden_size=32, ffn_hidden_size=40, kv_channels=8, num_attention_heads=4,
                 multi_query_group_num=2, padded_vocab_size=64, seq_length=24)
    return ChatGLMConfig(**{**sizes, **overrides})


def tiny_model(seed: int = 0, **overrides) -> ChatGLMForCausalLM:
    """A tiny model with large random weights, so attention patterns are far from uniform."""
    torch.manual_seed(seed)
    model = ChatGLMForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if "layernorm" in name else 0.3 * torch.randn_like(p))
    return model


def meta_6b() -> ChatGLMForCausalLM:
    with torch.device("meta"):
        return ChatGLMForCausalLM(ChatGLMConfig.chatglm3_6b())


# --- names and sizes -----------------------------------------------------------------------

def test_state_dict_keys_are_exactly_the_hugging_face_names():
    assert set(tiny_model().state_dict()) == hf_keys(2)


def test_chatglm3_6b_on_the_meta_device_has_200_tensors_with_the_checkpoint_shapes():
    state = meta_6b().state_dict()
    assert len(state) == 200 and set(state) == hf_keys(28)
    shapes = {"transformer.embedding.word_embeddings.weight": (65024, 4096),
              "transformer.rotary_pos_emb.inv_freq": (32,),
              "transformer.encoder.layers.27.input_layernorm.weight": (4096,),
              "transformer.encoder.layers.0.self_attention.query_key_value.weight": (4608, 4096),
              "transformer.encoder.layers.0.self_attention.query_key_value.bias": (4608,),
              "transformer.encoder.layers.0.self_attention.dense.weight": (4096, 4096),
              "transformer.encoder.layers.0.mlp.dense_h_to_4h.weight": (27392, 4096),
              "transformer.encoder.layers.0.mlp.dense_4h_to_h.weight": (4096, 13696),
              "transformer.encoder.final_layernorm.weight": (4096,), "transformer.output_layer.weight": (65024, 4096)}
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


def test_chatglm3_6b_has_6_243_584_000_parameters():
    assert count_parameters(ChatGLMConfig.chatglm3_6b()) == 6_243_584_000
    assert count_parameters(ChatGLMConfig.chatglm3_6b(num_layers=2)) - count_parameters(
        ChatGLMConfig.chatglm3_6b(num_layers=1)) == 203_960_832
    assert sum(p.numel() for p in meta_6b().parameters()) == 6_243_584_000


@pytest.mark.parametrize("overrides", [{}, {"multi_query_attention": False}, {"add_bias_linear": True},
                                       {"add_qkv_bias": False}, {"num_attention_heads": 8}],
                         ids=["gqa", "mha", "all biases", "no bias", "projection wider than hidden"])
def test_count_parameters_matches_the_built_model(overrides):
    config = tiny_config(**overrides)
    with torch.device("meta"):
        model = ChatGLMForCausalLM(config)
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())


def test_key_set_and_total_size_match_the_real_checkpoint_index():
    index_path = find_reference_file("pytorch_model.bin.index.json")
    if index_path is None:
        pytest.skip("the real chatglm3-6b pytorch_model.bin.index.json is not available")
    index = json.loads(index_path.read_text())
    state = meta_6b().state_dict()
    assert set(index["weight_map"]) == set(state)
    fp16_bytes = sum(t.numel() * 2 for t in state.values())
    assert fp16_bytes == index["metadata"]["total_size"] == 12_487_168_064


# --- the config ----------------------------------------------------------------------------

def test_the_issue_small_config_is_complete_with_chatglm3_behaviour():
    config = ChatGLMConfig(num_layers=4, hidden_size=256, ffn_hidden_size=683, kv_channels=64, num_attention_heads=4,
                           multi_query_group_num=2, padded_vocab_size=4096, seq_length=1024)
    assert config.add_qkv_bias and not config.add_bias_linear and config.multi_query_attention
    assert config.num_kv_groups == 2 and config.rope_ratio == 1.0 and config.layernorm_epsilon == 1e-5
    assert ChatGLMConfig() == ChatGLMConfig.chatglm3_6b(torch_dtype=None)


def test_real_config_json_reads_as_chatglm3_6b_and_keeps_its_metadata():
    path = find_reference_file("config.json")
    if path is None:
        pytest.skip("the real chatglm3-6b config.json is not available")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto_map, architectures, ... are expected, not warned about
        config = ChatGLMConfig.from_json(path)
    assert config == ChatGLMConfig.chatglm3_6b(extra=config.extra)
    assert config.extra["auto_map"]["AutoConfig"] == "configuration_chatglm.ChatGLMConfig"
    assert config.torch_dtype == "float16"
    written = config.to_dict()
    real = json.loads(path.read_text())
    assert {k: written[k] for k in real} == real


def test_config_json_round_trip_keeps_every_field_and_unknown_keys(tmp_path):
    with pytest.warns(UserWarning, match="my_flag"):
        config = ChatGLMConfig.from_dict({**tiny_config(rope_ratio=2.0).to_dict(), "my_flag": 7})
    config.to_json(tmp_path / "config.json")
    with pytest.warns(UserWarning, match="my_flag"):
        again = ChatGLMConfig.from_json(tmp_path)
    assert again == config and again.extra == {"my_flag": 7} and again.rope_ratio == 2.0


@pytest.mark.parametrize("flag, value", [("rmsnorm", False), ("apply_residual_connection_post_layernorm", True),
                                         ("post_layer_norm", False), ("fp32_residual_connection", True),
                                         ("tie_word_embeddings", True)])
def test_behaviour_flags_we_do_not_implement_are_refused(flag, value):
    with pytest.raises(NotImplementedError, match=f"{flag}={value!r}.*set {flag}="):
        tiny_config(**{flag: value})


@pytest.mark.parametrize("overrides, message", [
    ({"multi_query_group_num": 3}, "not divisible by multi_query_group_num=3"),
    ({"kv_channels": 6}, "multiple of 4"),
    ({"hidden_size": 0}, "hidden_size must be a positive int"),
    ({"attention_impl": "flash"}, "attention_impl must be one of"),
    ({"hidden_dropout": 1.0}, "hidden_dropout must be in"),
])
def test_bad_configs_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_a_config_of_another_model_type_is_refused():
    with pytest.raises(ValueError, match="model_type='llama'"):
        ChatGLMConfig.from_dict({"model_type": "llama"})


# --- the forward pass against a reference written from the facts ----------------------------

def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def reference_forward(state, config, input_ids, attention_mask):
    """ChatGLM3's forward as chatglm3_facts.md describes it, sequence-first, in float64."""
    w = {k: v.double() for k, v in state.items()}
    b, s = input_ids.shape
    heads, groups, d = config.num_attention_heads, config.multi_query_group_num, config.kv_channels
    ffn, eps, proj = config.ffn_hidden_size, config.layernorm_epsilon, heads * d
    position_ids = [[0] * int((row == 0).sum()) + list(range(int(row.sum()))) for row in attention_mask]  # tokenizer's
    rot = d // 2
    theta = [1.0 / 10000 ** (2 * i / rot) for i in range(rot // 2)]
    # get_masks: tril, pad keys zeroed, pad-query rows opened; True = masked
    full = torch.ones(b, s, s).tril() * attention_mask[:, None, :]
    full -= attention_mask[:, :, None] - 1
    masked = full < 0.5                                                     # [b, sq, sk]
    x = w["transformer.embedding.word_embeddings.weight"][input_ids].transpose(0, 1)  # [s, b, hidden]

    def rope(t, bi, vec):                                                  # vec: [d], one head at token t of row bi
        out = vec.clone()
        for i in range(rot // 2):
            c, sn = math.cos(position_ids[bi][t] * theta[i]), math.sin(position_ids[bi][t] * theta[i])
            out[2 * i], out[2 * i + 1] = vec[2 * i] * c - vec[2 * i + 1] * sn, vec[2 * i + 1] * c + vec[2 * i] * sn
        return out

    for n in range(config.num_layers):
        p = f"transformer.encoder.layers.{n}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        mixed = h @ w[p + "self_attention.query_key_value.weight"].T + w[p + "self_attention.query_key_value.bias"]
        q = mixed[..., :proj].reshape(s, b, heads, d)
        k = mixed[..., proj:proj + groups * d].reshape(s, b, groups, d)
        v = mixed[..., proj + groups * d:].reshape(s, b, groups, d)
        q = torch.stack([torch.stack([torch.stack([rope(t, bi, q[t, bi, hh]) for hh in range(heads)])
                                      for bi in range(b)]) for t in range(s)])
        k = torch.stack([torch.stack([torch.stack([rope(t, bi, k[t, bi, g]) for g in range(groups)])
                                      for bi in range(b)]) for t in range(s)])
        context = torch.zeros(s, b, heads, d, dtype=torch.float64)
        for bi in range(b):
            for hh in range(heads):
                g = hh // (heads // groups)
                for t in range(s):
                    scores = torch.stack([q[t, bi, hh] @ k[u, bi, g] / math.sqrt(d) for u in range(s)])
                    scores = scores.masked_fill(masked[bi, t], float("-inf"))
                    context[t, bi, hh] = torch.softmax(scores, dim=0) @ v[:, bi, g]
        x = x + context.reshape(s, b, proj) @ w[p + "self_attention.dense.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps) @ w[p + "mlp.dense_h_to_4h.weight"].T
        x = x + (torch.nn.functional.silu(h[..., :ffn]) * h[..., ffn:]) @ w[p + "mlp.dense_4h_to_h.weight"].T
    x = rms_norm(x, w["transformer.encoder.final_layernorm.weight"], eps)
    return (x @ w["transformer.output_layer.weight"].T).transpose(0, 1)  # [b, s, vocab]


@pytest.mark.parametrize("impl", ["fused", "explicit"])
def test_forward_matches_the_reference_written_from_the_facts(impl):
    model = tiny_model(seed=3, attention_impl=impl)
    torch.manual_seed(4)
    input_ids = torch.randint(0, 64, (2, 7))
    attention_mask = torch.tensor([[1] * 7, [0, 0, 0, 1, 1, 1, 1]])
    expected = reference_forward(model.state_dict(), model.config, input_ids, attention_mask)
    got = model(input_ids, attention_mask=attention_mask).logits
    assert got.shape == (2, 7, 64) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)  # pad positions included


def test_explicit_and_fused_models_agree_within_1e_5():
    model = tiny_model(seed=5)
    input_ids = torch.randint(0, 64, (3, 9))
    mask = torch.tensor([[1] * 9, [0] * 4 + [1] * 5, [0] * 8 + [1]])
    fused = model(input_ids, attention_mask=mask).logits
    model.config.attention_impl = "explicit"
    explicit = model(input_ids, attention_mask=mask).logits
    torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-5)


def test_left_padded_rows_give_the_same_logits_as_unpadded_single_rows():
    model = tiny_model(seed=6)
    torch.manual_seed(7)
    rows = [torch.randint(0, 64, (n,)) for n in (8, 5, 2)]
    input_ids = torch.stack([torch.cat([torch.zeros(8 - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([torch.cat([torch.zeros(8 - len(r)), torch.ones(len(r))]) for r in rows]).long()
    batched = model(input_ids, attention_mask=mask).logits
    assert not torch.isnan(batched).any()
    for i, row in enumerate(rows):
        alone = model(row[None]).logits[0]
        torch.testing.assert_close(batched[i, 8 - len(row):], alone, rtol=1e-5, atol=1e-5)


def test_default_positions_restart_at_zero_for_the_real_tokens_of_a_padded_row():
    model = tiny_model(seed=8)
    input_ids = torch.randint(0, 64, (1, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    explicit_positions = torch.tensor([[0, 0, 0, 1, 2, 3]])  # the tokenizer's [0]*pad + arange(len)
    torch.testing.assert_close(model(input_ids, attention_mask=mask).logits,
                               model(input_ids, attention_mask=mask, position_ids=explicit_positions).logits)


@pytest.mark.parametrize("chunks", [[6, 1, 1, 1], [3, 4, 2], [1] * 9])
def test_kv_cache_continuation_equals_the_full_forward(chunks):
    model = tiny_model(seed=9)
    torch.manual_seed(10)
    input_ids = torch.randint(0, 64, (2, 9))
    mask = torch.tensor([[1] * 9, [0, 0, 1, 1, 1, 1, 1, 1, 1]])
    full = model(input_ids, attention_mask=mask).logits
    cache, start, pieces = None, 0, []
    for size in chunks:
        out = model(input_ids[:, start:start + size], attention_mask=mask[:, :start + size],
                    kv_cache=cache, use_cache=True)
        cache, start = out.kv_cache, start + size
        pieces.append(out.logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1)[mask.bool()], full[mask.bool()], rtol=1e-5, atol=1e-5)
    assert len(cache) == 2 and cache[0][0].shape == (2, 2, 9, 8)  # [batch, num_kv_groups, seq_so_far, head_dim]


def test_kv_cache_without_padding_and_without_a_mask_equals_the_full_forward():
    model = tiny_model(seed=11)
    input_ids = torch.randint(0, 64, (1, 7))
    full = model(input_ids).logits
    prefill = model(input_ids[:, :4], use_cache=True)
    step = model(input_ids[:, 4:5], kv_cache=prefill.kv_cache, use_cache=True)
    chunk = model(input_ids[:, 5:], kv_cache=step.kv_cache, use_cache=True)
    torch.testing.assert_close(torch.cat([prefill.logits, step.logits, chunk.logits], dim=1), full,
                               rtol=1e-5, atol=1e-5)


def test_output_attentions_gives_causal_probabilities_per_layer():
    model = tiny_model(seed=12)
    out = model(torch.randint(0, 64, (2, 5)), output_attentions=True)
    assert isinstance(out, CausalLMOutput) and out.kv_cache is None
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 5, 5)
    probs = out.attentions[1]
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 5))
    assert probs.triu(diagonal=1).abs().max() == 0


def test_bf16_model_runs_close_to_the_fp32_one():
    model = tiny_model(seed=13)
    input_ids = torch.randint(0, 64, (2, 6))
    fp32 = model(input_ids).logits
    bf16 = model.to(torch.bfloat16)(input_ids).logits
    assert bf16.dtype == torch.bfloat16 and torch.isfinite(bf16).all()
    assert (bf16.float() - fp32).abs().max() < 0.1 * fp32.abs().max()


def test_gradients_reach_every_parameter():
    model = tiny_model(seed=14).train()
    model(torch.randint(0, 64, (2, 6))).logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# --- bad inputs ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_ids=torch.zeros(1, 25, dtype=torch.long)), ValueError, "25 new tokens = 25 exceeds seq_length=24"),
    (dict(input_ids=torch.tensor([[1, 64]])), ValueError,
     r"input_ids\[0, 1\] = 64 is outside the vocabulary \[0, 64\)"),
    (dict(input_ids=torch.tensor([[-1, 3]])), ValueError, r"input_ids\[0, 0\] = -1 is outside"),
    (dict(input_ids=torch.tensor([1, 2])), ValueError, r"add the batch dim with input_ids\[None\]"),
    (dict(input_ids=torch.tensor([[1.0, 2.0]])), TypeError, "must be an integer tensor"),
    (dict(input_ids=torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3)), ValueError,
     r"attention_mask must be \[batch, past \+ seq_len\] = \[1, 2\]"),
    (dict(input_ids=torch.tensor([[1, 2]]), attention_mask=torch.tensor([[2, 1]])), ValueError, "only 0"),
    (dict(input_ids=torch.tensor([[1, 2]]), position_ids=torch.tensor([[0, 24]])), ValueError,
     r"position_ids must lie in \[0, seq_length=24\)"),
    (dict(input_ids=torch.tensor([[1, 2]]), position_ids=torch.tensor([[0, 1, 2]])), ValueError,
     r"position_ids must be \[batch, seq_len\]"),
])
def test_bad_inputs_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        tiny_model()(**kwargs)


def test_input_plus_cached_past_longer_than_seq_length_is_refused():
    model = tiny_model()
    cache = model(torch.zeros(1, 20, dtype=torch.long), use_cache=True).kv_cache
    with pytest.raises(ValueError, match="20 cached \\+ 5 new tokens = 25 exceeds seq_length=24"):
        model(torch.zeros(1, 5, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match=r"\[batch, past \+ seq_len\] = \[1, 21\]"):
        model(torch.zeros(1, 1, dtype=torch.long), attention_mask=torch.ones(1, 1), kv_cache=cache)
    with pytest.raises(ValueError, match="kv_cache has 1 entries but the model has 2 layers"):
        model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache[:1])


# --- a fresh model ------------------------------------------------------------------------

def test_init_draws_weights_at_0_02_and_scales_the_two_residual_projections_by_sqrt_2_layers():
    torch.manual_seed(15)
    config = tiny_config(num_layers=8, hidden_size=128, ffn_hidden_size=256, kv_channels=32, padded_vocab_size=512)
    model = ChatGLMForCausalLM(config)
    residual_std = 0.02 / math.sqrt(2 * 8)  # GPT-2: the writes into the residual stream shrink with depth
    for name, p in model.named_parameters():
        if "layernorm" in name:
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith(".bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        else:
            expected = residual_std if name.endswith(("self_attention.dense.weight", "dense_4h_to_h.weight")) else 0.02
            assert abs(p.std().item() / expected - 1) < 0.03 and abs(p.mean().item()) < expected / 20, name


def test_an_untrained_model_predicts_almost_uniformly_with_loss_near_ln_vocab():
    # After the final RMSNorm the hidden vector has length sqrt(hidden); output rows ~ N(0, 0.02^2),
    # so every logit is ~ N(0, (0.02 * sqrt(hidden))^2) and the loss is ln V + sigma^2 / 2 on average.
    torch.manual_seed(16)
    config = tiny_config(hidden_size=256, kv_channels=64, padded_vocab_size=1024, seq_length=256)
    model = ChatGLMForCausalLM(config).eval()
    input_ids = torch.randint(0, 1024, (4, 256))
    with torch.no_grad():
        logits = model(input_ids).logits
    sigma = 0.02 * math.sqrt(256)
    assert abs(logits.std().item() / sigma - 1) < 0.1
    excess = torch.logsumexp(logits, dim=-1).mean().item() - math.log(1024)
    assert abs(excess - sigma ** 2 / 2) < 0.01
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())
    assert abs(loss.item() - (math.log(1024) + sigma ** 2 / 2)) < 0.05  # +- the random logits of the targets
    probs = torch.softmax(logits, dim=-1)
    assert probs.max() < 10 / 1024 and probs.min() > 1 / (10 * 1024)


def test_the_course_config_is_the_recipes_and_the_shipped_checkpoints():
    from glm3_teach.paths import REPO_ROOT
    from glm3_teach.train import TrainConfig

    course = ChatGLMConfig.course()
    assert TrainConfig.from_file(REPO_ROOT / "configs" / "base.toml").model_config() == course
    shipped = ChatGLMConfig.from_json(REPO_ROOT / "data" / "checkpoints" / "base" / "config.json")
    assert dataclasses.replace(shipped, torch_dtype=None) == dataclasses.replace(course, torch_dtype=None)
    assert (course.eos_token_id, course.pad_token_id) == (4094, 4095)  # the course tokenizer's </s> and <pad>


def test_the_rotary_embedding_prints_what_it_holds():
    model = ChatGLMForCausalLM(ChatGLMConfig.course(num_layers=1, rope_ratio=2.0))
    text = repr(model.transformer.rotary_pos_emb)
    assert text == ("RotaryEmbedding(rotary_dim=32 (first dims of each head), rope_ratio=2, base=10000 "
                    "(x rope_ratio = 20000), inv_freq=[16] float32)")


def test_a_model_used_under_inference_mode_can_be_trained_afterwards():
    """Lesson 08's "add an intent" exercise evaluates, fine-tunes, evaluates again: the rope table
    the model caches must never be an inference tensor."""
    model = tiny_model().train()
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = model(ids).logits
        assert not model.transformer.rotary_pos_emb(model.config.seq_length).is_inference()
    model(ids).logits.logsumexp(-1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert torch.equal(model(ids).logits.detach(), before)        # the same numbers in both modes
