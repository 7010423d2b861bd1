"""Weight-only quantization (glm3_teach.quant): ChatGLM3's formats, the group scheme, kernels, checkpoints."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open

from glm3_teach import quant
from glm3_teach.checkpoint import CheckpointMismatchError, load_pretrained, save_pretrained
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM, count_parameters

LINEARS = quant.QUANTIZED_LINEARS


def tiny_config(**overrides) -> ChatGLMConfig:
    sizes = dict(num_layers=2, hidden_size=64, ffn_hidden_size=96, kv_channels=16, num_attention_heads=4,
                 multi_query_group_num=2, padded_vocab_size=64, seq_length=32)
    return ChatGLMConfig(**{**sizes, **overrides})


def tiny_model(dtype=torch.float32, **overrides) -> ChatGLMForCausalLM:
    torch.manual_seed(0)
    return ChatGLMForCausalLM(tiny_config(**overrides)).to(dtype).eval()


def reference_int8(w):
    """ChatGLM3's quantization.py, written out again here: per-row absmax / 127 in the weight's dtype."""
    scale = w.abs().max(dim=-1).values / 127
    return torch.round(w / scale[:, None]).to(torch.int8), scale


def reference_int4_packed(w):
    """Per-row absmax / 7, then two values per byte with the even column in the high nibble (via numpy bytes)."""
    scale = w.abs().max(dim=-1).values / 7
    q = torch.round(w / scale[:, None]).to(torch.int8).numpy().astype(np.int16)
    nibbles = (q & 0xF).astype(np.uint8)                                      # two's complement nibbles
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    return torch.from_numpy(packed.astype(np.uint8).view(np.int8)), scale


def linears(model):
    for i, block in enumerate(model.transformer.encoder.layers):
        for path in LINEARS:
            parent, child = path.split(".")
            yield f"transformer.encoder.layers.{i}.{path}", getattr(getattr(block, parent), child)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_chatglm_int8_tensors_equal_the_reference_formula_in_the_weights_dtype(dtype):
    model = tiny_model(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quant.quantize(model, 8)
    state = model.state_dict()
    for name, _ in linears(model):
        q, scale = reference_int8(before[f"{name}.weight"])
        assert state[f"{name}.weight"].dtype == torch.int8
        assert torch.equal(state[f"{name}.weight"], q)
        assert state[f"{name}.weight_scale"].dtype == dtype and torch.equal(state[f"{name}.weight_scale"], scale)
    assert torch.equal(state["transformer.encoder.layers.0.self_attention.query_key_value.bias"],
                       before["transformer.encoder.layers.0.self_attention.query_key_value.bias"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_chatglm_int4_packs_the_even_column_into_the_high_nibble_like_the_reference(dtype):
    model = tiny_model(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quant.quantize(model, 4)
    state = model.state_dict()
    for name, layer in linears(model):
        packed, scale = reference_int4_packed(before[f"{name}.weight"])
        assert torch.equal(state[f"{name}.weight"], packed)
        assert list(state[f"{name}.weight"].shape) == [layer.out_features, layer.in_features // 2]
        assert torch.equal(state[f"{name}.weight_scale"], scale)


def test_only_the_four_block_linears_are_quantized_the_rest_is_untouched():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quant.quantize(model, 8)
    state = model.state_dict()
    assert sorted(quant.quantized_layers(model)) == sorted(name for name, _ in linears(model))
    for key in ["transformer.embedding.word_embeddings.weight", "transformer.output_layer.weight",
                "transformer.encoder.final_layernorm.weight", "transformer.encoder.layers.1.input_layernorm.weight"]:
        assert torch.equal(state[key], before[key])
    assert set(state) - set(before) == {f"{name}.weight_scale" for name, _ in linears(model)}


def test_group_scheme_has_one_fp16_scale_per_32_inputs_and_its_own_names():
    model = tiny_model(ffn_hidden_size=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quant.quantize(model, 4, scheme="group", group_size=32)
    state = model.state_dict()
    assert model.config.quantization_scheme == "group" and model.config.quantization_group_size == 32
    name = "transformer.encoder.layers.0.mlp.dense_h_to_4h"
    w = before[f"{name}.weight"]                                              # [128, 64]
    assert f"{name}.weight" not in state and state[f"{name}.weight_group_scale"].shape == (128, 2)
    for row in (0, 77):
        for g in range(2):
            block = w[row, 32 * g:32 * (g + 1)]
            scale = float(np.float16(block.abs().max().item() / 7))
            assert state[f"{name}.weight_group_scale"][row, g].item() == scale
            q = np.clip(np.round(block.numpy() / np.float32(scale)), -8, 7).astype(np.int8)
            assert quant.unpack_int4(state[f"{name}.weight_int4"])[row, 32 * g:32 * (g + 1)].tolist() == q.tolist()


def test_pack_unpack_round_trips_every_pair_of_int4_values():
    values = torch.arange(-8, 8, dtype=torch.int8)
    pairs = torch.cartesian_prod(values, values)                              # [256, 2]
    packed = quant.pack_int4(pairs)                                           # [256, 1]
    assert sorted(set(packed.view(torch.uint8).flatten().tolist())) == list(range(256))  # every byte once
    assert torch.equal(quant.unpack_int4(packed), pairs)
    assert quant.pack_int4(torch.tensor([[1, -2]], dtype=torch.int8)).item() == 0x1E
    assert quant.pack_int4(torch.tensor([[-8, 7]], dtype=torch.int8)).view(torch.uint8).item() == 0x87


def test_pack_int4_refuses_values_outside_minus_8_to_7():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        quant.pack_int4(torch.tensor([[8, 0]], dtype=torch.int8))


@pytest.mark.parametrize("bits, scheme", [(8, "chatglm"), (4, "chatglm"), (4, "group")])
def test_rounding_error_is_at_most_half_a_scale_step(bits, scheme):
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 48)
    with torch.no_grad():
        linear.weight[3, 5] = 1.5                                             # an outlier
    layer = quant.QuantizedLinear.from_linear(linear, bits, scheme, 32 if scheme == "group" else None)
    error = (layer.dequantized_weight() - linear.weight).abs()
    step = layer.scale_per_weight(torch.float32).expand_as(error)
    assert bool((error <= step / 2 * (1 + 1e-5) + 1e-12).all())


def test_group_scales_shrink_the_error_an_outlier_causes_to_its_own_block():
    torch.manual_seed(2)
    linear = torch.nn.Linear(64, 8, bias=False)
    with torch.no_grad():
        linear.weight[0, 0] = 2.0
    per_row = quant.QuantizedLinear.from_linear(linear, 4)
    grouped = quant.QuantizedLinear.from_linear(linear, 4, "group", 32)
    far_from_outlier = slice(32, 64)
    row_err = (per_row.dequantized_weight() - linear.weight)[0, far_from_outlier].abs().mean()
    group_err = (grouped.dequantized_weight() - linear.weight)[0, far_from_outlier].abs().mean()
    assert group_err < row_err / 4


@pytest.mark.parametrize("bits, scheme, group", [(8, "chatglm", None), (4, "chatglm", None), (4, "group", 32)])
def test_fast_kernels_agree_with_the_readable_dequantize_path(bits, scheme, group):
    torch.manual_seed(3)
    linear = torch.nn.Linear(96, 40)                                          # 40 rows: not a multiple of 16
    layer = quant.QuantizedLinear.from_linear(linear, bits, scheme, group)
    x = torch.randn(2, 5, 96)
    with torch.no_grad():
        expected = torch.nn.functional.linear(x, layer.dequantized_weight(), linear.bias)
        for kernel in ("dequantize", "weight_only", "auto"):
            layer.kernel = kernel
            torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(layer(x[:1, :1]), expected[:1, :1], atol=1e-5, rtol=1e-5)  # one token


def test_dynamic_int8_kernel_is_close_but_not_exact_it_quantizes_the_activations_too():
    torch.manual_seed(4)
    layer = quant.QuantizedLinear.from_linear(torch.nn.Linear(128, 64), 8)
    x = torch.randn(3, 128)
    with torch.no_grad():
        exact = layer(x)
        layer.kernel = "dynamic_int8"
        approx = layer(x)
    relative = ((approx - exact).norm() / exact.norm()).item()
    assert 1e-6 < relative < 0.05


def test_padded_rows_quantize_a_width_the_layout_does_not_divide():
    torch.manual_seed(5)
    linear = torch.nn.Linear(683, 16)                                        # the course model's dense_4h_to_h width
    for scheme, group, stored in (("chatglm", None, 342), ("group", 32, 352)):
        with pytest.raises(ValueError, match="pad=True"):
            quant.QuantizedLinear.from_linear(linear, 4, scheme, group)
        layer = quant.QuantizedLinear.from_linear(linear, 4, scheme, group, pad=True)
        packed = layer.weight if scheme == "chatglm" else layer.weight_int4
        assert packed.shape == (16, stored)
        x = torch.randn(2, 683)
        with torch.no_grad():
            layer.kernel = "weight_only"
            fast = layer(x)
        torch.testing.assert_close(fast, torch.nn.functional.linear(x, layer.dequantized_weight(), linear.bias),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(bits=3), "bits must be 8 or 4"),
    (dict(bits=8, scheme="group"), "int4 only"),
    (dict(bits=4, scheme="nf4"), "scheme must be one of"),
    (dict(bits=4, scheme="group", group_size=48), "does not divide the row of 64"),
    (dict(bits=4, scheme="group", group_size=7), "even int"),
    (dict(bits=8, group_size=32), "needs scheme='group'"),
])
def test_bad_quantize_arguments_are_refused_with_a_clear_message(kwargs, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        quant.quantize(model, **kwargs)
    assert not quant.quantized_layers(model)                                 # nothing half-done


def test_quantizing_twice_is_refused():
    model = quant.quantize(tiny_model(), 8)
    with pytest.raises(ValueError, match="already quantized"):
        quant.quantize(model, 4)


def test_quantizing_one_model_leaves_another_built_from_the_same_config_alone():
    config = tiny_config()
    first, second = ChatGLMForCausalLM(config), ChatGLMForCausalLM(config)
    quant.quantize(first, 8)
    assert first.config.quantization_bit == 8 and config.quantization_bit == 0
    assert first.transformer.encoder.layers[0].self_attention.config is first.config
    quant.quantize(second, 4)                                                # not "already quantized"


@pytest.mark.parametrize("overrides, message", [
    (dict(quantization_bit=3), "0 \\(float weights\\), 8 or 4"),
    (dict(quantization_bit=8, extra={"quantization_scheme": "group", "quantization_group_size": 32}),
     "quantization_bit=4"),
    (dict(quantization_bit=4, extra={"quantization_group_size": 32}), "goes with quantization_scheme='group'"),
    (dict(quantization_bit=4, extra={"quantization_scheme": "nf4"}), "must be one of"),
])
def test_config_refuses_impossible_quantization_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


@pytest.mark.parametrize("bits, scheme, group", [(8, "chatglm", None), (4, "chatglm", None), (4, "group", 32)])
def test_save_and_load_round_trip_gives_identical_logits_and_the_reference_layout(tmp_path, bits, scheme, group):
    model = quant.quantize(tiny_model(ffn_hidden_size=96), bits, scheme, group, pad=True)
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids).logits
    save_pretrained(model, tmp_path / "q")
    written = json.loads((tmp_path / "q" / "config.json").read_text())
    assert written["quantization_bit"] == bits
    if scheme == "chatglm":   # the reference's layout: quantization_bit alone
        assert not {"quantization_scheme", "quantization_group_size"} & set(written)
    else:
        assert written["quantization_scheme"] == "group" and written["quantization_group_size"] == group
    with safe_open(str(tmp_path / "q" / "model.safetensors"), framework="pt") as f:
        key = "transformer.encoder.layers.0.self_attention.dense." + ("weight" if scheme == "chatglm" else "weight_int4")
        assert f.get_tensor(key).dtype == torch.int8
    loaded = load_pretrained(tmp_path / "q")
    assert isinstance(loaded.transformer.encoder.layers[1].mlp.dense_4h_to_h, quant.QuantizedLinear)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, expected)


def _edit_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_checkpoint_whose_quantization_bit_does_not_match_its_tensors_is_refused(tmp_path):
    save_pretrained(quant.quantize(tiny_model(), 4), tmp_path / "int4")
    _edit_config(tmp_path / "int4", quantization_bit=8)
    with pytest.raises(CheckpointMismatchError, match="mis-shaped"):
        load_pretrained(tmp_path / "int4")
    save_pretrained(quant.quantize(tiny_model(), 8), tmp_path / "int8")
    _edit_config(tmp_path / "int8", quantization_bit=0)
    with pytest.raises(CheckpointMismatchError, match="int8 in the checkpoint|unexpected keys"):
        load_pretrained(tmp_path / "int8")
    save_pretrained(tiny_model(), tmp_path / "fp32")
    _edit_config(tmp_path / "fp32", quantization_bit=8)
    with pytest.raises(CheckpointMismatchError, match="missing keys|quantization_bit=8"):
        load_pretrained(tmp_path / "fp32")


def test_a_float_tensor_is_never_copied_into_an_int8_slot(tmp_path):
    """Same shapes (int8 [out, in] vs float [out, in]): only the dtype check catches it."""
    from safetensors.torch import load_file, save_file
    save_pretrained(quant.quantize(tiny_model(), 8), tmp_path / "int8")
    state = load_file(str(tmp_path / "int8" / "model.safetensors"))
    key = "transformer.encoder.layers.0.mlp.dense_4h_to_h.weight"
    state[key] = state[key].float() / 100
    save_file(state, str(tmp_path / "int8" / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="stores .*dense_4h_to_h.weight as torch.float32"):
        load_pretrained(tmp_path / "int8")


def test_nbytes_of_every_variant_equals_the_memory_formula():
    for bits, scheme, group in [(0, "chatglm", None), (8, "chatglm", None), (4, "chatglm", None), (4, "group", 32)]:
        model = tiny_model(ffn_hidden_size=80)                              # 80 inputs: group 32 pads to 96
        if bits:
            quant.quantize(model, bits, scheme, group, pad=True)
        assert quant.tensor_bytes(model) == quant.model_bytes(model.config, bits, scheme, group, float_bytes=4)


def test_chatglm3_6b_memory_by_formula():
    config = ChatGLMConfig.chatglm3_6b()
    assert quant.model_bytes(config) == 2 * (count_parameters(config) + 32)  # + the rotary inv_freq buffer
    assert round(quant.model_bytes(config) / 1e9, 1) == 12.5
    int8, int4 = quant.model_bytes(config, 8), quant.model_bytes(config, 4)
    assert 6.7e9 < int8 < 6.8e9 and 3.9e9 < int4 < 4.0e9                       # embedding + output stay fp16


def test_chatglm_cpp_file_sizes_match_its_published_table_to_rounding():
    """chatglm.cpp's README: ChatGLM3-6B q4_0 3.3G, q8_0 6.2G, f16 12G (ls -h: GiB, rounded up)."""
    config = ChatGLMConfig.chatglm3_6b()
    gib = {kind: quant.ggml_model_bytes(config, kind) / 2 ** 30 for kind in ("q4_0", "q8_0", "f16")}
    assert math.ceil(gib["q4_0"] * 10) / 10 == 3.3 and math.ceil(gib["q8_0"] * 10) / 10 == 6.2
    assert math.ceil(gib["f16"]) == 12


def test_a_quantized_model_decodes_with_the_kv_cache_like_without_it():
    from glm3_teach.generate import generate
    model = quant.quantize(tiny_model(), 4, "group", 32, pad=True)
    prompt = torch.randint(0, 64, (1, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cached = generate(model, prompt, 8, eos_token_ids=[])
        uncached = generate(model, prompt, 8, eos_token_ids=[], use_cache=False)
    assert torch.equal(cached, uncached)


def test_gradients_flow_to_the_input_through_the_dequantize_path():
    layer = quant.QuantizedLinear.from_linear(torch.nn.Linear(32, 16), 8)
    x = torch.randn(2, 32, requires_grad=True)
    layer(x).sum().backward()
    torch.testing.assert_close(x.grad, layer.dequantized_weight().sum(0).expand(2, 32))


def test_a_quantized_model_deep_copies_after_its_kernels_ran():
    import copy
    model = quant.quantize(tiny_model(), 8)
    ids = torch.randint(0, 64, (1, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for kernel in ("weight_only", "dynamic_int8"):
            quant.set_kernel(model, kernel)
            expected = model(ids).logits
            torch.testing.assert_close(copy.deepcopy(model)(ids).logits, expected)
