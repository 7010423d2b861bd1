"""Checkpoints in the Hugging Face layout: round trips, sharded .bin + index, the real index, errors, atomic saves.

The sharded checkpoints here are written by the test itself, the way Hugging Face writes
them (``torch.save`` of plain state dicts and an index with ``metadata.total_size`` and
``weight_map``), so the loader is checked against the format, not against its own writer.
"""

import json
import shutil
import weakref

import pytest
import torch
from safetensors.torch import save_file

import glm3_teach.checkpoint as checkpoint
from glm3_teach.checkpoint import (CheckpointMismatchError, inspect_checkpoint, load_pretrained, save_pretrained)
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.paths import find_reference_file


def tiny_model(seed: int = 0) -> ChatGLMForCausalLM:
    torch.manual_seed(seed)
    config = ChatGLMConfig(num_layers=3, hidden_size=32, ffn_hidden_size=40, kv_channels=8, num_attention_heads=4,
                           multi_query_group_num=2, padded_vocab_size=64, seq_length=16)
    return ChatGLMForCausalLM(config)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def write_hf_shards(model: torch.nn.Module, folder, num_shards: int, fmt: str = "bin", dtype=None) -> None:
    """Write ``model`` the way Hugging Face shards a checkpoint, plus its config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json(folder / "config.json")
    state = {k: (v.to(dtype) if dtype else v).clone() for k, v in model.state_dict().items()}
    keys = list(state)
    weight_map, total = {}, 0
    for i in range(num_shards):
        name = (f"pytorch_model-{i + 1:05d}-of-{num_shards:05d}.bin" if fmt == "bin"
                else f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors")
        part = {k: state[k] for k in keys[i::num_shards]}
        torch.save(part, folder / name) if fmt == "bin" else save_file(part, str(folder / name), {"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    index_name = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
    (folder / index_name).write_text(json.dumps(index, indent=2))


def test_safetensors_round_trip_is_bit_exact(tmp_path):
    model = tiny_model()
    save_pretrained(model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.config == ChatGLMConfig(**{**model.config.__dict__, "torch_dtype": "float32"})
    assert not loaded.training
    assert_same_weights(model, loaded)
    x = torch.randint(0, 64, (1, 5))
    assert torch.equal(model.eval()(x).logits, loaded(x).logits)


def test_saving_in_bf16_stores_rounded_weights_and_loads_in_bf16(tmp_path):
    model = tiny_model(1)
    save_pretrained(model, tmp_path / "ckpt", dtype=torch.bfloat16)
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    loaded = load_pretrained(tmp_path / "ckpt")
    assert_same_weights(model.to(torch.bfloat16), loaded)
    assert load_pretrained(tmp_path / "ckpt", dtype="float32").transformer.output_layer.weight.dtype == torch.float32


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_sharded_checkpoint_with_index_loads_bit_exact(tmp_path, fmt):
    model = tiny_model(2)
    write_hf_shards(model, tmp_path, num_shards=3, fmt=fmt)
    info = inspect_checkpoint(tmp_path)
    assert info.format == fmt and len(info.shards) == 3 and not info.missing_files
    assert_same_weights(model, load_pretrained(tmp_path, dtype=torch.float32))


def test_fp16_shards_load_into_an_fp32_model_when_asked(tmp_path):
    model = tiny_model(3)
    write_hf_shards(model, tmp_path, num_shards=2, dtype=torch.float16)
    loaded = load_pretrained(tmp_path, dtype=torch.float32)
    assert_same_weights(model.half().float(), loaded)


def test_a_single_pytorch_model_bin_loads(tmp_path):
    model = tiny_model(4)
    model.config.to_json(tmp_path / "config.json")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert_same_weights(model, load_pretrained(tmp_path))


def test_bin_shards_are_read_one_at_a_time(tmp_path, monkeypatch):
    write_hf_shards(tiny_model(5), tmp_path, num_shards=4)

    class Shard(dict):
        pass

    alive = []
    real_load = torch.load

    def tracking_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True
        assert all(ref() is None for ref in alive), "the previous shard is still held"
        shard = Shard(real_load(*args, **kwargs))
        alive.append(weakref.ref(shard))
        return shard

    monkeypatch.setattr(checkpoint.torch, "load", tracking_load)
    load_pretrained(tmp_path)
    assert len(alive) == 4


def test_the_real_chatglm3_6b_index_is_accepted_without_weights(tmp_path):
    config_path = find_reference_file("config.json")
    index_path = find_reference_file("pytorch_model.bin.index.json")
    if config_path is None or index_path is None:
        pytest.skip("the real chatglm3-6b config.json and index are not available")
    shutil.copy(config_path, tmp_path / "config.json")
    shutil.copy(index_path, tmp_path / "pytorch_model.bin.index.json")
    info = inspect_checkpoint(tmp_path)
    assert info.format == "bin" and len(info.shards) == 7
    assert sum(len(keys) for keys in info.shards.values()) == 200
    assert info.missing_files == [f"pytorch_model-{i:05d}-of-00007.bin" for i in range(1, 8)]
    fp16_bytes = sum(shape.numel() * 2 for shape in checkpoint.expected_tensors(info.config).values())
    assert info.total_size == fp16_bytes == 12_487_168_064
    with pytest.raises(FileNotFoundError, match="7 weight files named by the index are missing"):
        load_pretrained(tmp_path)


def test_missing_unexpected_and_misshaped_keys_are_listed_in_one_error(tmp_path):
    model = tiny_model(6)
    state = dict(model.state_dict())
    del state["transformer.encoder.final_layernorm.weight"]
    state["transformer.extra.weight"] = torch.zeros(2)
    state["transformer.output_layer.weight"] = torch.zeros(65, 32)
    model.config.to_json(tmp_path / "config.json")
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError) as caught:
        load_pretrained(tmp_path)
    message = str(caught.value)
    assert "1 missing keys: transformer.encoder.final_layernorm.weight" in message
    assert "1 unexpected keys: transformer.extra.weight" in message
    assert "transformer.output_layer.weight is [65, 32] in the checkpoint, [64, 32] in the model" in message


def test_a_checkpoint_for_a_deeper_model_truncates_its_long_list(tmp_path):
    model = tiny_model(7)
    model.config.num_layers = 2  # the config now says 2 layers, the weights have 3
    model.config.to_json(tmp_path / "config.json")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointMismatchError, match=r"7 unexpected keys: transformer\.encoder\.layers\.2\."):
        load_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatchError,
                       match=r"10 missing keys: k0, k1, k2, k3, k4, k5, k6, k7 \.\.\. and 2 more"):
        checkpoint.check_keys({f"k{i}": torch.Size([1]) for i in range(10)}, {})


def test_a_failed_save_leaves_the_old_checkpoint_and_no_temporary_folder(tmp_path, monkeypatch):
    old, new = tiny_model(8), tiny_model(9)
    save_pretrained(old, tmp_path / "ckpt")

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(new, tmp_path / "ckpt")
    with pytest.raises(OSError):
        save_pretrained(new, tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert_same_weights(old, load_pretrained(tmp_path / "ckpt"))


def test_saving_over_a_checkpoint_replaces_weights_and_keeps_notes(tmp_path):
    save_pretrained(tiny_model(10), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "NOTES.md").write_text("trained for 3 minutes")
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"stale")
    newer = tiny_model(11)
    save_pretrained(newer, tmp_path / "ckpt")
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["NOTES.md", "config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert_same_weights(newer, load_pretrained(tmp_path / "ckpt"))


def test_saving_into_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("...")
    with pytest.raises(FileExistsError, match="not a checkpoint folder"):
        save_pretrained(tiny_model(), tmp_path / "mine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_tokenizer_is_saved_beside_the_weights(tmp_path):
    class FakeTokenizer:
        def save(self, folder):
            (folder / "tokenizer.json").write_text("{}")

    save_pretrained(tiny_model(), tmp_path / "ckpt", tokenizer=FakeTokenizer())
    assert (tmp_path / "ckpt" / "tokenizer.json").read_text() == "{}"


def test_folders_without_a_config_or_weights_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_pretrained(tmp_path)
    tiny_model().config.to_json(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="no weights in .*expected model.safetensors"):
        load_pretrained(tmp_path)
    with pytest.raises(ValueError, match="dtype must be a floating torch dtype"):
        checkpoint._resolve_dtype("int8", tiny_model().config)


def test_fp16_shards_load_into_a_bf16_model_on_request(tmp_path):
    model = tiny_model(12)
    write_hf_shards(model, tmp_path, num_shards=3, dtype=torch.float16)   # like the real chatglm3-6b
    model.config.torch_dtype = "float16"
    model.config.to_json(tmp_path / "config.json")
    assert load_pretrained(tmp_path).transformer.output_layer.weight.dtype == torch.float16  # config's torch_dtype
    loaded = load_pretrained(tmp_path, dtype=torch.bfloat16)
    assert_same_weights(model.half().to(torch.bfloat16), loaded)
    assert loaded.transformer.rotary_pos_emb.inv_freq.dtype == torch.bfloat16  # the rope cache is rounded to bf16


def test_a_checkpoint_saved_with_the_course_tokenizer_reloads_both(tmp_path):
    from glm3_teach.tokenizer import BPETokenizer, load_tokenizer, train_merges

    tokenizer = BPETokenizer(train_merges("小猫喝茶。小猫喝茶。the cat drinks tea", 10))
    folder = save_pretrained(tiny_model(13), tmp_path / "ckpt", tokenizer=tokenizer)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    again = load_tokenizer(folder)
    assert again.to_json() == tokenizer.to_json() and again.encode("小猫喝茶") == tokenizer.encode("小猫喝茶")


def test_a_saved_checkpoint_is_readable_by_others(tmp_path):
    # mkdtemp's private rwx------ staging folder must not leak into the published checkpoint
    config = ChatGLMConfig(num_layers=1, hidden_size=32, ffn_hidden_size=48, kv_channels=8, num_attention_heads=4,
                           multi_query_group_num=2, padded_vocab_size=64, seq_length=16)
    target = save_pretrained(ChatGLMForCausalLM(config), tmp_path / "ckpt")
    assert target.stat().st_mode & 0o777 == 0o755
    assert all(f.stat().st_mode & 0o777 == 0o644 for f in target.iterdir())


def named_loader(message: str):
    """The ``glm3_teach.peft`` function an error message tells the reader to call (it must exist)."""
    import re

    from glm3_teach import peft

    names = re.findall(r"glm3_teach\.peft\.(\w+)\(", message)
    assert names, message
    return [getattr(peft, name) for name in names]


def test_an_adapter_folder_is_named_with_the_function_that_loads_it(tmp_path):
    from glm3_teach.peft import apply_lora, apply_ptuning, load_adapter, load_lora, load_ptuning, save_lora, save_ptuning

    base = tiny_model(1)
    save_pretrained(base, tmp_path / "base")
    lora = tiny_model(1)
    apply_lora(lora, r=2, alpha=4)
    save_lora(lora, tmp_path / "lora", base_model_name_or_path=str(tmp_path / "base"))
    with pytest.raises(checkpoint.AdapterFolderError, match="is a LoRA adapter .*, not a whole model") as caught:
        load_pretrained(tmp_path / "lora")
    assert named_loader(str(caught.value)) == [load_lora, load_adapter] and repr(str(tmp_path / "base")) in str(caught.value)
    prefix = tiny_model(1)
    apply_ptuning(prefix, pre_seq_len=3)
    save_ptuning(prefix, tmp_path / "prefix")
    with pytest.raises(checkpoint.AdapterFolderError, match="is a P-Tuning v2 adapter .*, not a whole model") as caught:
        load_pretrained(tmp_path / "prefix")
    assert named_loader(str(caught.value)) == [load_ptuning, load_adapter] and "trained on" in str(caught.value)
    # ChatGLM3's own P-Tuning scripts write the prefix alone into a pytorch_model.bin
    (tmp_path / "prefix" / "model.safetensors").unlink()
    torch.save({k: v for k, v in prefix.state_dict().items() if k.startswith("transformer.prefix_encoder.")},
               tmp_path / "prefix" / "pytorch_model.bin")
    assert checkpoint.adapter_kind(tmp_path / "prefix") == "ptuning"
    with pytest.raises(checkpoint.AdapterFolderError, match="P-Tuning v2 adapter"):
        load_pretrained(tmp_path / "prefix")
    # a whole model with a prefix, and a plain one, are checkpoints, not adapters
    save_pretrained(prefix, tmp_path / "whole_with_prefix")
    assert checkpoint.adapter_kind(tmp_path / "whole_with_prefix") is None
    assert load_pretrained(tmp_path / "whole_with_prefix").config.pre_seq_len == 3
    assert checkpoint.adapter_kind(tmp_path / "base") is None and checkpoint.adapter_kind(tmp_path) is None
