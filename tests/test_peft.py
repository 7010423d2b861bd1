"""LoRA (peft's adapter format, checked against peft itself when installed) and P-Tuning v2 (as ChatGLM3).

The P-Tuning reference below is written from chatglm3_facts.md ("P-Tuning v2 (prefix) in the
reference model", "Masks"): sequence-first, float64, the prefix as each layer's past keys and
values ``[pre_seq_len, batch, groups, head_dim]``, ChatGLM3's ``get_masks`` with a past (the
prefix columns are ones, pad-query rows are *not* opened), RoPE on the real tokens only.
"""

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from glm3_teach.checkpoint import load_pretrained, save_pretrained
from glm3_teach.generate import generate
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.peft import (AdapterMismatchError, LoRALinear, apply_lora, apply_ptuning, load_lora, load_ptuning,
                             lora_parameter_count, merge_lora, ptuning_parameter_count, save_lora, save_ptuning,
                             trainable_parameters)

VOCAB = 64


def tiny_config(**overrides) -> ChatGLMConfig:
    sizes = dict(num_layers=2, hidden_size=32, ffn_hidden_size=40, kv_channels=8, num_attention_heads=4,
                 multi_query_group_num=2, padded_vocab_size=VOCAB, seq_length=24)
    return ChatGLMConfig(**{**sizes, **overrides})


def tiny_model(seed: int = 0, **overrides) -> ChatGLMForCausalLM:
    """Large random weights (prefix included), so attention is far from uniform."""
    torch.manual_seed(seed)
    model = ChatGLMForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.2 * torch.randn_like(p) if "layernorm" in name else 0.3 * torch.randn_like(p))
    return model


def randomize_lora(model, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(0.3 * torch.randn_like(p))


def left_padded(rows):
    width = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([torch.zeros(width - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([torch.cat([torch.zeros(width - len(r)), torch.ones(len(r))]) for r in rows]).long()
    return ids, mask


def meta_6b(**overrides):
    with torch.device("meta"):
        return ChatGLMForCausalLM(ChatGLMConfig.chatglm3_6b(**overrides))


# --- LoRA -----------------------------------------------------------------------------------------

def test_lora_r8_on_query_key_value_of_chatglm3_6b_trains_1_949_696_parameters():
    model = meta_6b()
    assert apply_lora(model, r=8, alpha=32, dropout=0.1) == 1_949_696 == 28 * 8 * (4096 + 4608)
    assert lora_parameter_count(ChatGLMConfig.chatglm3_6b()) == 1_949_696
    layer = model.transformer.encoder.layers[0].self_attention.query_key_value
    assert isinstance(layer, LoRALinear) and layer.lora_A.weight.shape == (8, 4096)
    assert layer.lora_B.weight.shape == (4608, 8) and layer.scaling == 4.0


def test_lora_on_all_four_block_linears_of_chatglm3_6b_counts_r_times_in_plus_out():
    four = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
    by_hand = 28 * 8 * ((4096 + 4608) + (4096 + 4096) + (4096 + 27392) + (13696 + 4096))
    assert apply_lora(meta_6b(), r=8, target_modules=four) == by_hand == 14_823_424
    assert lora_parameter_count(ChatGLMConfig.chatglm3_6b(), 8, four) == by_hand


def test_a_fresh_lora_model_equals_the_base_and_lora_linear_follows_the_formula():
    model = tiny_model(seed=2)
    ids = torch.randint(0, VOCAB, (2, 6))
    base = model(ids).logits
    apply_lora(model, r=4, alpha=8, dropout=0.0)
    torch.testing.assert_close(model(ids).logits, base)  # B starts at zero
    randomize_lora(model)
    layer = model.transformer.encoder.layers[1].self_attention.query_key_value
    x = torch.randn(3, 32)
    by_hand = x @ layer.weight.T + layer.bias + (8 / 4) * (x @ layer.lora_A.weight.T) @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), by_hand)
    assert not torch.allclose(model(ids).logits, base)


def test_only_the_lora_weights_get_gradients():
    model = tiny_model(seed=3)
    count = apply_lora(model, r=2, alpha=4, dropout=0.1, target_modules=["query_key_value", "dense_4h_to_h"])
    assert count == 2 * (2 * (32 + 64) + 2 * (40 + 32))  # qkv out 4*8 + 2*2*8 == trainable_parameters(model)
    model.train()
    model(torch.randint(0, VOCAB, (2, 5))).logits.sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {n for n, _ in model.named_parameters() if ".lora_" in n} and len(with_grad) == 8


def test_dropout_acts_on_the_input_of_a_in_training_only():
    layer = LoRALinear(nn.Linear(16, 8), r=2, lora_alpha=4, lora_dropout=0.5)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(4, 16)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    seen = []
    layer.lora_A.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    out = layer(x)
    dropped = seen[0] == 0
    assert 0.2 < dropped.float().mean() < 0.8                                   # p = 0.5 on A's input
    torch.testing.assert_close(seen[0][~dropped], x[~dropped] / 0.5)
    expected = nn.functional.linear(x, layer.weight, layer.bias) + 2 * layer.lora_B(layer.lora_A(seen[0]))
    torch.testing.assert_close(out, expected)                                   # the base path sees all of x


def test_merge_lora_is_exact_and_gives_back_plain_linears_and_the_base_keys():
    model = tiny_model(seed=4)
    keys = set(model.state_dict())
    apply_lora(model, r=3, alpha=6, target_modules=("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"))
    randomize_lora(model)
    layer = model.transformer.encoder.layers[0].mlp.dense_h_to_4h
    expected_weight = layer.weight + 2.0 * layer.lora_B.weight @ layer.lora_A.weight
    ids, mask = left_padded([torch.randint(0, VOCAB, (n,)) for n in (7, 4)])
    before = model(ids, attention_mask=mask).logits
    merge_lora(model)
    merged = model.transformer.encoder.layers[0].mlp.dense_h_to_4h
    assert type(merged) is nn.Linear and not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == keys
    torch.testing.assert_close(merged.weight, expected_weight, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model(ids, attention_mask=mask).logits, before, rtol=1e-5, atol=1e-5)


def test_save_lora_writes_peft_files_and_load_lora_restores_the_outputs(tmp_path):
    model = tiny_model(seed=5)
    apply_lora(model, r=4, alpha=32, dropout=0.1)
    randomize_lora(model)
    save_lora(model, tmp_path / "adapter", base_model_name_or_path="data/checkpoints/base")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert {k: config[k] for k in ("peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules",
                                   "bias", "base_model_name_or_path")} == {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 32, "lora_dropout": 0.1,
        "target_modules": ["query_key_value"], "bias": "none", "base_model_name_or_path": "data/checkpoints/base"}
    tensors = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    path = "base_model.model.transformer.encoder.layers.{}.self_attention.query_key_value.lora_{}.weight"
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        path.format(i, ab): shape for i in (0, 1) for ab, shape in (("A", (4, 32)), ("B", (64, 4)))}
    model.eval()
    ids = torch.randint(0, VOCAB, (2, 6))
    fresh = load_lora(tiny_model(seed=5), tmp_path / "adapter").eval()
    torch.testing.assert_close(fresh(ids).logits, model(ids).logits)
    assert trainable_parameters(fresh) == 2 * 4 * (32 + 64)


def test_an_adapter_for_other_base_shapes_is_refused_naming_the_tensor(tmp_path):
    small = tiny_model(seed=6)
    apply_lora(small, r=2, alpha=4)
    save_lora(small, tmp_path / "a")
    wider = tiny_model(seed=6, hidden_size=48)
    with pytest.raises(AdapterMismatchError, match=r"layers.0.self_attention.query_key_value.lora_A.weight is "
                                                   r"\[2, 32\] in the adapter, \[2, 48\] for this model"):
        load_lora(wider, tmp_path / "a")
    deeper = tiny_model(seed=6, num_layers=3)
    with pytest.raises(AdapterMismatchError, match="2 missing: .*layers.2"):
        load_lora(deeper, tmp_path / "a")
    assert not any(isinstance(m, LoRALinear) for m in deeper.modules())  # nothing changed on failure


def test_bad_adapter_configs_are_clear_errors(tmp_path):
    model = tiny_model(seed=7)
    apply_lora(model, r=2, alpha=4)
    save_lora(model, tmp_path / "a")
    config_file = tmp_path / "a" / "adapter_config.json"
    good = json.loads(config_file.read_text())
    for change, message in [({"peft_type": "PREFIX_TUNING"}, "type 'PREFIX_TUNING', not 'LORA'"),
                            ({"use_dora": True}, "use_dora=True"),
                            ({"bias": "all"}, "bias='all'"),
                            ({"target_modules": ["q_proj", "v_proj"]}, r"match no module.*query_key_value")]:
        config_file.write_text(json.dumps({**good, **change}))
        with pytest.raises(ValueError, match=message):
            load_lora(tiny_model(seed=7), tmp_path / "a")
    with pytest.raises(ValueError, match="target module transformer.encoder is a GLMTransformer"):
        apply_lora(tiny_model(), target_modules=["encoder"])
    with pytest.raises(ValueError, match="already has LoRA"):
        apply_lora(model)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora(tiny_model(), tmp_path)


class PeftReadyModel(ChatGLMForCausalLM):
    """peft's CAUSAL_LM wrapper asks for this HF generation hook; the test never generates through peft."""

    def prepare_inputs_for_generation(self, *args, **kwargs):
        raise NotImplementedError


def peft_ready(seed: int) -> PeftReadyModel:
    template = tiny_model(seed)
    model = PeftReadyModel(template.config).eval()
    model.load_state_dict(template.state_dict())
    return model


def test_adapters_move_between_hugging_face_peft_and_glm3_teach(tmp_path):
    peft = pytest.importorskip("peft", reason="Hugging Face peft is not installed (pip install peft)")
    targets = ["query_key_value", "dense_h_to_4h"]
    ids, mask = left_padded([torch.randint(0, VOCAB, (n,)) for n in (6, 3)])
    # peft -> glm3_teach
    theirs = peft.get_peft_model(peft_ready(8), peft.LoraConfig(r=4, lora_alpha=16, lora_dropout=0.1,
                                                                 target_modules=targets, task_type="CAUSAL_LM"))
    randomize_lora(theirs, seed=9)
    theirs.save_pretrained(tmp_path / "from_peft")
    ours = load_lora(tiny_model(8), tmp_path / "from_peft").eval()
    theirs.eval()
    expected = theirs.get_base_model()(ids, attention_mask=mask).logits
    torch.testing.assert_close(ours(ids, attention_mask=mask).logits, expected)
    # glm3_teach -> peft
    mine = tiny_model(10)
    apply_lora(mine, r=2, alpha=8, dropout=0.05, target_modules=targets)
    randomize_lora(mine, seed=11)
    save_lora(mine, tmp_path / "from_us")
    loaded = peft.PeftModel.from_pretrained(peft_ready(10), tmp_path / "from_us").eval()
    assert loaded.peft_config["default"].r == 2 and loaded.peft_config["default"].lora_alpha == 8
    assert set(loaded.peft_config["default"].target_modules) == set(targets)
    torch.testing.assert_close(loaded.get_base_model()(ids, attention_mask=mask).logits,
                               mine.eval()(ids, attention_mask=mask).logits)
    # the same keys and the same config fields
    assert set(load_file(str(tmp_path / "from_us" / "adapter_model.safetensors"))) == set(
        load_file(str(tmp_path / "from_peft" / "adapter_model.safetensors")))
    ours_cfg = json.loads((tmp_path / "from_us" / "adapter_config.json").read_text())
    peft_cfg = json.loads((tmp_path / "from_peft" / "adapter_config.json").read_text())
    assert set(ours_cfg) <= set(peft_cfg)
    assert {k: v for k, v in ours_cfg.items() if k not in ("r", "lora_alpha", "lora_dropout", "target_modules")} == {
        k: peft_cfg[k] for k in ours_cfg if k not in ("r", "lora_alpha", "lora_dropout", "target_modules")}


# --- P-Tuning v2: sizes and keys ------------------------------------------------------------------

def test_ptuning_with_128_virtual_tokens_on_chatglm3_6b_trains_1_835_008_parameters():
    model = meta_6b(pre_seq_len=128)
    assert trainable_parameters(model) == 1_835_008 == 128 * 28 * 128 * 2 * 2
    assert ptuning_parameter_count(ChatGLMConfig.chatglm3_6b(pre_seq_len=128)) == 1_835_008
    prefix = {k: tuple(v.shape) for k, v in model.state_dict().items() if "prefix_encoder" in k}
    assert prefix == {"transformer.prefix_encoder.embedding.weight": (128, 14336)}
    assert len(model.state_dict()) == 201


def test_prefix_projection_adds_the_reference_trans_0_and_trans_2():
    model = meta_6b(pre_seq_len=128, prefix_projection=True)
    prefix = {k: tuple(v.shape) for k, v in model.state_dict().items() if "prefix_encoder" in k}
    assert prefix == {"transformer.prefix_encoder.embedding.weight": (128, 14336),
                      "transformer.prefix_encoder.trans.0.weight": (4096, 14336),
                      "transformer.prefix_encoder.trans.0.bias": (4096,),
                      "transformer.prefix_encoder.trans.2.weight": (14336, 4096),
                      "transformer.prefix_encoder.trans.2.bias": (14336,)}
    assert trainable_parameters(model) == ptuning_parameter_count(model.config) == sum(
        math.prod(s) for s in prefix.values())


@pytest.mark.parametrize("overrides, message", [({"pre_seq_len": 0}, "pre_seq_len must be None"),
                                                ({"pre_seq_len": 2.5}, "pre_seq_len must be None"),
                                                ({"pre_seq_len": 4, "prefix_projection": "yes"}, "true or false")])
def test_bad_prefix_settings_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


# --- P-Tuning v2: a reference forward written from the facts ----------------------------------------

def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, positions, theta):
    """Interleaved rotation of the first half of each head. ``x [s, b, n, d]``, ``positions [s, b]``."""
    rot = 2 * len(theta)
    angle = positions[..., None].double() * theta                       # [s, b, rot/2]
    cos, sin = angle.cos()[:, :, None], angle.sin()[:, :, None]         # [s, b, 1, rot/2]
    even, odd = x[..., 0:rot:2], x[..., 1:rot:2]
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(-2)
    return torch.cat([rotated, x[..., rot:]], dim=-1)


def reference_prefix_forward(state, config, input_ids, attention_mask):
    """ChatGLM3's forward with a P-Tuning v2 prefix, sequence-first, float64; logits ``[b, s, vocab]``."""
    w = {k: v.double() for k, v in state.items()}
    b, s = input_ids.shape
    heads, groups, d, p = config.num_attention_heads, config.multi_query_group_num, config.kv_channels, config.pre_seq_len
    ffn, eps, proj, layers = config.ffn_hidden_size, config.layernorm_epsilon, heads * d, config.num_layers
    # get_prompt: [b, p, kv] -> [b, p, 2L, G, D] -> [2L, p, b, G, D]; layer n: key 2n, value 2n+1
    prefix = w["transformer.prefix_encoder.embedding.weight"]
    if config.prefix_projection:
        hidden = torch.tanh(prefix @ w["transformer.prefix_encoder.trans.0.weight"].T
                            + w["transformer.prefix_encoder.trans.0.bias"])
        prefix = hidden @ w["transformer.prefix_encoder.trans.2.weight"].T + w["transformer.prefix_encoder.trans.2.bias"]
    past = prefix.expand(b, p, -1).reshape(b, p, layers * 2, groups, d).permute(2, 1, 0, 3, 4)
    # the tokenizer's positions: [0]*pad + arange(len)
    positions = torch.stack([torch.cat([torch.zeros(int((row == 0).sum())), torch.arange(int(row.sum()))])
                             for row in attention_mask]).T                                    # [s, b]
    theta = 1.0 / 10000 ** (torch.arange(0, d // 2, 2, dtype=torch.float64) / (d // 2))
    # get_masks with past_length = p: ones for the prefix, then tril; pad keys zeroed; no row opened
    padding = torch.cat([torch.ones(b, p), attention_mask.double()], dim=1)                  # [b, p + s]
    full = torch.cat([torch.ones(b, s, p), torch.ones(b, s, s).tril()], dim=-1) * padding[:, None, :]
    masked = full < 0.5                                                                       # [b, s, p + s]
    x = w["transformer.embedding.word_embeddings.weight"][input_ids].transpose(0, 1)          # [s, b, hidden]
    for n in range(layers):
        pre = f"transformer.encoder.layers.{n}."
        h = rms_norm(x, w[pre + "input_layernorm.weight"], eps)
        mixed = h @ w[pre + "self_attention.query_key_value.weight"].T + w[pre + "self_attention.query_key_value.bias"]
        q = rope(mixed[..., :proj].reshape(s, b, heads, d), positions, theta)
        k = rope(mixed[..., proj:proj + groups * d].reshape(s, b, groups, d), positions, theta)
        v = mixed[..., proj + groups * d:].reshape(s, b, groups, d)
        k, v = torch.cat([past[2 * n], k]), torch.cat([past[2 * n + 1], v])                  # [p + s, b, G, D]
        k, v = k.repeat_interleave(heads // groups, dim=2), v.repeat_interleave(heads // groups, dim=2)
        scores = torch.einsum("sbhd,tbhd->bhst", q, k) / math.sqrt(d)                         # [b, H, s, p + s]
        probs = torch.softmax(scores.masked_fill(masked[:, None], float("-inf")), dim=-1)
        context = torch.einsum("bhst,tbhd->sbhd", probs, v).reshape(s, b, proj)
        x = x + context @ w[pre + "self_attention.dense.weight"].T
        h = rms_norm(x, w[pre + "post_attention_layernorm.weight"], eps) @ w[pre + "mlp.dense_h_to_4h.weight"].T
        x = x + (torch.nn.functional.silu(h[..., :ffn]) * h[..., ffn:]) @ w[pre + "mlp.dense_4h_to_h.weight"].T
    x = rms_norm(x, w["transformer.encoder.final_layernorm.weight"], eps)
    return (x @ w["transformer.output_layer.weight"].T).transpose(0, 1)


@pytest.mark.parametrize("impl, projection", [("fused", False), ("explicit", False), ("fused", True)])
def test_prefix_logits_of_a_left_padded_batch_equal_the_reference(impl, projection):
    model = tiny_model(seed=12, pre_seq_len=3, prefix_projection=projection, attention_impl=impl)
    torch.manual_seed(13)
    ids, mask = left_padded([torch.randint(0, VOCAB, (n,)) for n in (7, 4, 1)])
    expected = reference_prefix_forward(model.state_dict(), model.config, ids, mask)
    got = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)  # pad positions included
    unpadded = torch.randint(0, VOCAB, (2, 6))
    torch.testing.assert_close(model(unpadded).logits.double(),
                               reference_prefix_forward(model.state_dict(), model.config, unpadded,
                                                        torch.ones(2, 6, dtype=torch.long)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunks", [[6, 1, 1, 1], [1] * 9])
def test_prefix_kv_cache_continuation_equals_the_reference(chunks):
    model = tiny_model(seed=14, pre_seq_len=4)
    torch.manual_seed(15)
    ids, mask = left_padded([torch.randint(0, VOCAB, (n,)) for n in (9, 6)])
    expected = reference_prefix_forward(model.state_dict(), model.config, ids, mask)
    cache, start, pieces = None, 0, []
    for size in chunks:
        out = model(ids[:, start:start + size], attention_mask=mask[:, :start + size], kv_cache=cache, use_cache=True)
        cache, start = out.kv_cache, start + size
        pieces.append(out.logits)
    assert cache[0][0].shape == (2, 2, 4 + 9, 8)  # the cache counts the prefix; positions do not
    got = torch.cat(pieces, dim=1)
    torch.testing.assert_close(got[mask.bool()].double(), expected[mask.bool()], rtol=1e-4, atol=1e-4)
    no_mask = model(ids[:1, :5], use_cache=True)
    step = model(ids[:1, 5:6], kv_cache=no_mask.kv_cache, use_cache=True)
    torch.testing.assert_close(step.logits[0, -1].double(), reference_prefix_forward(
        model.state_dict(), model.config, ids[:1, :6], torch.ones(1, 6, dtype=torch.long))[0, -1], rtol=1e-4, atol=1e-4)


def reference_greedy(model, ids, mask, steps):
    for _ in range(steps):
        logits = reference_prefix_forward(model.state_dict(), model.config, ids, mask)
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return ids


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_with_a_prefix_equals_the_reference(use_cache):
    model = tiny_model(seed=16, pre_seq_len=5)
    torch.manual_seed(17)
    ids, mask = left_padded([torch.randint(0, VOCAB, (n,)) for n in (6, 2)])
    got = generate(model, ids, 8, attention_mask=mask, use_cache=use_cache)
    assert torch.equal(got, reference_greedy(model, ids, mask, 8))


def test_the_prefix_is_never_rotated_and_real_tokens_start_at_position_0():
    model = tiny_model(seed=18, pre_seq_len=3)
    out = model(torch.randint(0, VOCAB, (1, 4)), use_cache=True)
    prompt = model.transformer.get_prompt(1, torch.float32)
    for (k, v), (pk, pv) in zip(out.kv_cache, prompt):
        assert torch.equal(k[:, :, :3], pk) and torch.equal(v[:, :, :3], pv)  # stored as learned, no RoPE
    emb = model.transformer.prefix_encoder.embedding.weight                # [3, 2 layers * 2 * 2 groups * 8]
    assert torch.equal(prompt[1][0][0, 1, 2], emb[2].view(4, 2, 8)[2, 1])   # layer 1 key = slot 2, group 1
    assert torch.equal(prompt[1][1][0, 0, 0], emb[0].view(4, 2, 8)[3, 0])   # layer 1 value = slot 3


def test_only_the_prefix_encoder_trains_and_its_dropout_is_training_only():
    model = tiny_model(seed=19, pre_seq_len=3)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "transformer.prefix_encoder.embedding.weight"}
    model.train()
    model(torch.randint(0, VOCAB, (2, 5))).logits.sum().backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == {
        "transformer.prefix_encoder.embedding.weight"}
    torch.manual_seed(0)
    prompt = model.transformer.get_prompt(1, torch.float32)[0][0]
    raw = model.transformer.prefix_encoder.embedding.weight.view(3, 4, 2, 8)[:, 0].transpose(0, 1)  # [G, p, D]
    dropped = prompt[0] == 0
    assert 0 < dropped.float().mean() < 0.3                                  # p = 0.1
    torch.testing.assert_close(prompt[0][~dropped], raw[~dropped] / 0.9)
    model.eval()
    assert torch.equal(model.transformer.get_prompt(1, torch.float32)[0][0][0], raw)


# --- P-Tuning v2: checkpoints ------------------------------------------------------------------------

def test_a_full_checkpoint_with_pre_seq_len_loads_with_load_pretrained(tmp_path):
    model = tiny_model(seed=20, pre_seq_len=4, prefix_projection=True)
    save_pretrained(model, tmp_path / "full")
    loaded = load_pretrained(tmp_path / "full")
    assert loaded.config.pre_seq_len == 4 and loaded.config.prefix_projection
    ids = torch.randint(0, VOCAB, (2, 5))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_a_prefix_only_checkpoint_loads_onto_a_base_model(tmp_path):
    base = tiny_model(seed=21)
    save_pretrained(base, tmp_path / "base")
    tuned = load_pretrained(tmp_path / "base")
    assert apply_ptuning(tuned, pre_seq_len=6) == 6 * 2 * 8 * 2 * 2
    with torch.no_grad():
        tuned.transformer.prefix_encoder.embedding.weight.normal_()
    save_ptuning(tuned, tmp_path / "ptuning")
    assert set(load_file(str(tmp_path / "ptuning" / "model.safetensors"))) == {
        "transformer.prefix_encoder.embedding.weight"}
    again = load_ptuning(load_pretrained(tmp_path / "base"), tmp_path / "ptuning")
    ids, mask = left_padded([torch.randint(0, VOCAB, (n,)) for n in (5, 3)])
    torch.testing.assert_close(again(ids, attention_mask=mask).logits, tuned(ids, attention_mask=mask).logits)
    assert again.config.pre_seq_len == 6 and trainable_parameters(again) == 6 * 64


def test_a_prefix_for_another_pre_seq_len_or_model_is_refused(tmp_path):
    model = tiny_model(seed=22, pre_seq_len=6)
    save_ptuning(model, tmp_path / "p6")
    with pytest.raises(AdapterMismatchError, match="pre_seq_len=6.*this model's has pre_seq_len=4"):
        load_ptuning(tiny_model(seed=22, pre_seq_len=4), tmp_path / "p6")
    with pytest.raises(AdapterMismatchError, match=r"embedding.weight is \[6, 64\] in the adapter, \[6, 96\]"):
        load_ptuning(tiny_model(seed=22, num_layers=3), tmp_path / "p6")
    save_file({"transformer.embedding.word_embeddings.weight": torch.zeros(2, 2)}, str(tmp_path / "p6" / "model.safetensors"))
    with pytest.raises(ValueError, match="no transformer.prefix_encoder"):
        load_ptuning(tiny_model(seed=22), tmp_path / "p6")


# --- the SFT command's hook ---------------------------------------------------------------------------

def test_the_sft_hook_applies_each_method_and_exports_only_the_adapter(tmp_path):
    sft = pytest.importorskip("glm3_teach.sft")
    lora = sft.prepare_model(tiny_model(seed=23), sft.SFTConfig(method="lora", lora={"r": 2, "alpha": 4}))
    assert isinstance(lora, ChatGLMForCausalLM) and trainable_parameters(lora) == 2 * 2 * (32 + 64)
    prefix = sft.prepare_model(tiny_model(seed=23), sft.SFTConfig(method="ptuning", ptuning={"pre_seq_len": 3}))
    assert prefix.config.pre_seq_len == 3 and trainable_parameters(prefix) == 3 * 64
    from glm3_teach.peft import export
    export(lora, tmp_path / "lora", method="lora")
    export(prefix, tmp_path / "prefix", method="ptuning", dtype="bfloat16")
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert load_file(str(tmp_path / "prefix" / "model.safetensors"))[
        "transformer.prefix_encoder.embedding.weight"].dtype == torch.bfloat16


# --- crash-safe adapter folders and loading an adapter with its base ----------------------------------

def lora_tensors(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}


def saved_lora(seed: int, r: int = 2):
    model = tiny_model(seed=30)
    apply_lora(model, r=r, alpha=4)
    randomize_lora(model, seed=seed)
    return model


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("save", ["lora", "ptuning"])
def test_an_adapter_save_refuses_a_users_folder_and_a_whole_model_and_writes_nothing(tmp_path, save):
    write = (lambda path: save_lora(saved_lora(1), path)) if save == "lora" else \
        (lambda path: save_ptuning(tiny_model(seed=31, pre_seq_len=3), path))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("...")
    (mine / "config.json").write_text('{"theme": "dark"}')
    with pytest.raises(FileExistsError, match="is not a LoRA or P-Tuning adapter folder"):
        write(mine)
    assert listing(mine) == ["config.json", "thesis.tex"] and listing(tmp_path) == ["mine"]
    whole = tiny_model(seed=32)
    save_pretrained(whole, tmp_path / "whole")
    with pytest.raises(FileExistsError, match="is not a LoRA or P-Tuning adapter folder"):
        write(tmp_path / "whole")
    assert listing(tmp_path / "whole") == ["config.json", "model.safetensors"] and listing(tmp_path) == ["mine", "whole"]
    torch.testing.assert_close(load_pretrained(tmp_path / "whole").state_dict(), whole.state_dict())


def test_an_interrupted_adapter_save_leaves_the_old_adapter_loadable(tmp_path, monkeypatch):
    import glm3_teach.peft as peft_module

    old, new = saved_lora(1), saved_lora(2)
    save_lora(old, tmp_path / "adapter")
    (tmp_path / "adapter" / "README.md").write_text("my notes")
    real_save_file = peft_module.save_file

    def half_written(tensors, filename, metadata=None):
        real_save_file(dict(list(tensors.items())[:1]), filename, metadata=metadata)
        raise OSError("No space left on device")

    monkeypatch.setattr(peft_module, "save_file", half_written)
    with pytest.raises(OSError, match="No space left"):
        save_lora(new, tmp_path / "adapter")
    with pytest.raises(OSError, match="No space left"):
        save_ptuning(tiny_model(seed=33, pre_seq_len=3), tmp_path / "adapter")
    assert listing(tmp_path) == ["adapter"]          # no staging folder left behind
    assert listing(tmp_path / "adapter") == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    torch.testing.assert_close(lora_tensors(load_lora(tiny_model(seed=30), tmp_path / "adapter")), lora_tensors(old))
    assert lora_tensors(old).keys() == lora_tensors(new).keys() and not all(
        torch.equal(lora_tensors(old)[k], lora_tensors(new)[k]) for k in lora_tensors(old))


def test_saving_over_an_adapter_replaces_it_keeps_notes_and_drops_the_other_formats_files(tmp_path):
    save_lora(saved_lora(1), tmp_path / "adapter")
    (tmp_path / "adapter" / "README.md").write_text("my notes")
    newer = saved_lora(2)
    save_lora(newer, tmp_path / "adapter")
    torch.testing.assert_close(lora_tensors(load_lora(tiny_model(seed=30), tmp_path / "adapter")), lora_tensors(newer))
    prefix = tiny_model(seed=34, pre_seq_len=3)
    save_ptuning(prefix, tmp_path / "adapter")       # LoRA -> P-Tuning: no stale adapter_config.json is kept
    assert listing(tmp_path / "adapter") == ["README.md", "config.json", "model.safetensors"]
    assert listing(tmp_path) == ["adapter"]
    again = load_ptuning(tiny_model(seed=34), tmp_path / "adapter")
    torch.testing.assert_close(again.transformer.prefix_encoder.state_dict(), prefix.transformer.prefix_encoder.state_dict())


KILL_CHILD = """
import sys
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.peft import load_lora, save_lora
model = load_lora(ChatGLMForCausalLM(ChatGLMConfig.from_json(sys.argv[1])), sys.argv[2])
save_lora(model, sys.argv[3])
"""


@pytest.mark.parametrize("kill_at, survivor", [(1, "old"), (2, "new"), (3, "new")])
def test_a_save_killed_at_any_rename_leaves_a_complete_adapter_under_its_name(tmp_path, kill_at, survivor):
    import os
    import signal
    import subprocess
    import sys

    from glm3_teach.checkpoint import KILL_ENV_VAR

    adapters = {"old": saved_lora(1), "new": saved_lora(2)}
    save_lora(adapters["old"], tmp_path / "adapter")
    save_lora(adapters["new"], tmp_path / "source")
    tiny_config().to_json(tmp_path / "config.json")
    env = {**os.environ, KILL_ENV_VAR: str(kill_at), "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", KILL_CHILD, str(tmp_path / "config.json"), str(tmp_path / "source"),
                            str(tmp_path / "adapter")], env=env, timeout=300, capture_output=True)
    assert child.returncode == (-signal.SIGKILL if hasattr(signal, "SIGKILL") else 1), child.stderr.decode()[-500:]
    loaded = load_lora(tiny_model(seed=30), tmp_path / "adapter")   # every load finishes a swap left halfway
    torch.testing.assert_close(lora_tensors(loaded), lora_tensors(adapters[survivor]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "config.json", "source"]


def test_load_adapter_finds_the_recorded_base_and_the_trained_context(tmp_path, monkeypatch):
    from glm3_teach.peft import load_adapter

    base = tiny_model(seed=30)
    save_pretrained(base, tmp_path / "base")
    lora = saved_lora(3).eval()
    save_lora(lora, tmp_path / "lora", base_model_name_or_path="base")   # relative: read from the current folder
    ids = torch.randint(0, VOCAB, (2, 6))
    monkeypatch.chdir(tmp_path)
    for merge in (False, True):
        loaded = load_adapter(tmp_path / "lora", merge=merge)
        torch.testing.assert_close(loaded(ids).logits, lora(ids).logits)
        assert bool(peft_lora_modules(loaded)) is not merge and not loaded.training
    prefix = load_pretrained(tmp_path / "base")
    apply_ptuning(prefix, pre_seq_len=3)
    prefix.config.seq_length = 40                     # fine-tuned with a longer context than the base's 24
    save_ptuning(prefix.eval(), tmp_path / "prefix")
    (tmp_path / "prefix" / "training.json").write_text(json.dumps({"sft": {"init_from": "base"}}))
    loaded = load_adapter(tmp_path / "prefix")
    assert loaded.config.seq_length == 40 and loaded.config.pre_seq_len == 3
    torch.testing.assert_close(loaded(ids).logits, prefix(ids).logits)
    save_lora(lora, tmp_path / "unnamed")
    with pytest.raises(ValueError, match="does not record its base model"):
        load_adapter(tmp_path / "unnamed")
    assert load_adapter(tmp_path / "unnamed", base=tmp_path / "base").config.seq_length == 24
    (tmp_path / "unnamed" / "training.json").write_text(json.dumps({"sft": {"init_from": "gone"},
                                                                     "model_config": {"seq_length": 32}}))
    with pytest.raises(FileNotFoundError, match="records the base model 'gone', which does not exist"):
        load_adapter(tmp_path / "unnamed")
    assert load_adapter(tmp_path / "unnamed", base="base").config.seq_length == 32
    with pytest.raises(ValueError, match="is not a LoRA or P-Tuning adapter folder"):
        load_adapter(tmp_path / "base")


def peft_lora_modules(model):
    from glm3_teach.peft import lora_modules

    return lora_modules(model)
