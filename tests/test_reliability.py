"""Reliability probes (issue 15): nothing a user has is lost, and every bad input gets one clear message.

Each test is one probe of a careless or hostile user: a folder of theirs where a save goes,
a setting of the wrong type, a damaged file, a malicious pickle. The kill-at-every-rename
fault injection lives in ``test_reliability_kill.py``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import glm3_teach.checkpoint as checkpoint
from glm3_teach.checkpoint import (is_model_checkpoint, load_pretrained, recover_folder, save_pretrained,
                                   staging_folder)
from glm3_teach.data import TokenDataset
from glm3_teach.device import pick_device, seed_everything
from glm3_teach.generate import generate, stream_generate
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.tokenizer import BPETokenizer, load_tokenizer
from glm3_teach.tokenizer_reference import encode_by_rescanning, encode_chunk_by_rescanning
from glm3_teach.train import (STATE_FILE, TrainConfig, TrainData, build_model, is_training_checkpoint, main,
                              save_training_state, train)

SMALL = dict(num_layers=1, hidden_size=32, ffn_hidden_size=64, kv_channels=8, num_attention_heads=4,
             multi_query_group_num=2, padded_vocab_size=64, seq_length=16)


def tiny_model(seed: int = 0, **overrides) -> ChatGLMForCausalLM:
    torch.manual_seed(seed)
    return ChatGLMForCausalLM(ChatGLMConfig(**{**SMALL, **overrides}))


def tiny_config(**overrides) -> TrainConfig:
    values = dict(model=SMALL, block_size=16, batch_size=2, max_steps=3, warmup_steps=1, eval_every=0,
                  eval_blocks=2, device="cpu", progress=False)
    return TrainConfig(**{**values, **overrides})


def tiny_data() -> TrainData:
    tokens = torch.randint(0, 64, (16 * 8 + 1,), generator=torch.Generator().manual_seed(0))
    return TrainData(TokenDataset(tokens, 16, 300), TokenDataset(tokens[:33], 16, 60))


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- data loss 1: a training save never replaces a folder that is not a training checkpoint ----------

def test_training_refuses_a_run_dir_checkpoint_folder_of_the_users_before_the_first_step(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "thesis.tex").write_text("\\section{Results}", encoding="utf-8")
    steps = []
    config = tiny_config(run_dir=str(tmp_path))
    with pytest.raises(FileExistsError, match="checkpoint exists and is not a training checkpoint folder"):
        train(build_model(config), tiny_data(), config, callback=lambda step, history: steps.append(step))
    assert steps == []  # refused before any work was done
    from glm3_teach.train import build_optimizer
    from glm3_teach.data import BlockSampler

    model = build_model(config)
    optimizer, scheduler = build_optimizer(model, config)
    with pytest.raises(FileExistsError, match="not a training checkpoint folder"):
        save_training_state(tmp_path / "checkpoint", model, optimizer, scheduler, 1, BlockSampler(8), config, {})
    assert listing(tmp_path) == ["checkpoint"] and listing(tmp_path / "checkpoint") == ["thesis.tex"]


# --- data loss 2: a checkpoint is recognised by what only a checkpoint has ------------------------

def test_an_export_refuses_a_folder_holding_a_users_config_json_and_dataset(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"app": "my tea shop"}')
    (mine / "dataset.bin").write_bytes(b"\x00\x01 six months of data")
    with pytest.raises(FileExistsError, match="not a checkpoint folder"):
        save_pretrained(tiny_model(), mine)
    (mine / "config.json").write_text(tiny_model().config.to_json())  # a ChatGLM config, but no weights
    with pytest.raises(FileExistsError, match="not a checkpoint folder"):
        save_pretrained(tiny_model(), mine)
    assert listing(mine) == ["config.json", "dataset.bin"] and (mine / "dataset.bin").read_bytes().startswith(b"\x00")
    assert listing(tmp_path) == ["mine"]


def test_a_real_checkpoint_is_replaced_and_the_users_other_files_in_it_are_kept(tmp_path):
    save_pretrained(tiny_model(1), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "dataset.bin").write_bytes(b"mine")
    newer = tiny_model(2)
    save_pretrained(newer, tmp_path / "ckpt")
    assert listing(tmp_path / "ckpt") == ["config.json", "dataset.bin", "model.safetensors"]
    assert (tmp_path / "ckpt" / "dataset.bin").read_bytes() == b"mine"
    assert is_model_checkpoint(tmp_path / "ckpt") and not is_model_checkpoint(tmp_path)


def test_the_shipped_base_checkpoint_is_recognised_as_a_checkpoint():
    from glm3_teach.paths import data_dir

    assert is_model_checkpoint(data_dir() / "checkpoints" / "base")


# --- data loss 3: every state a killed publish can leave is recovered ------------------------------

def fake_publish_state(tmp_path, new: bool, old: bool, target: bool):
    """The folders a publish killed between two renames leaves behind (old = weights of seed 1, new = seed 2)."""
    if target:
        save_pretrained(tiny_model(1), tmp_path / "ckpt")
    if old:
        save_pretrained(tiny_model(1), tmp_path / "old_copy")
        (tmp_path / "old_copy" / "NOTES.md").write_text("notes")
        (tmp_path / "old_copy").rename(tmp_path / ".ckpt.old-00000000000000000001-1")
    if new:
        save_pretrained(tiny_model(2), tmp_path / "new_copy")
        (tmp_path / "new_copy").rename(tmp_path / ".ckpt.new-00000000000000000002-1")


@pytest.mark.parametrize("new, old, target, expected_seed", [
    (True, False, True, 2),   # killed after staging was complete, before the old folder moved aside
    (True, True, False, 2),   # killed between the two swapping renames: the name is missing
    (False, True, True, 1),   # killed while carrying notes over: the new folder is in place
    (False, True, False, 1),  # only the old copy survived: it comes back
])
def test_a_load_finishes_an_interrupted_swap_from_the_newest_complete_copy(tmp_path, new, old, target, expected_seed):
    fake_publish_state(tmp_path, new, old, target)
    loaded = load_pretrained(tmp_path / "ckpt")
    wanted = tiny_model(expected_seed)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), wanted.state_dict().values()))
    assert listing(tmp_path) == ["ckpt"]
    if old:
        assert (tmp_path / "ckpt" / "NOTES.md").read_text() == "notes"  # nothing of the user's is lost


def test_stale_staging_folders_are_removed_but_a_live_one_is_not(tmp_path):
    stale = tmp_path / ".ckpt.tmp-abandoned"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half written")
    with staging_folder(tmp_path / "ckpt") as live:
        save_pretrained(tiny_model(), tmp_path / "other")  # any save or load recovers its own name only
        recover_folder(tmp_path / "ckpt")
        assert live.exists() and not stale.exists()
    assert not live.exists()


# --- data loss 4: the whole config and the output paths are checked before the first step ------------

@pytest.mark.parametrize("overrides, message", [
    (dict(save_dtype="int8"), "save_dtype must name a floating dtype"),
    (dict(samples_prompts=["从前，", ""]), r"samples_prompts\[1\] is empty"),
    (dict(log_every=0), "log_every must be a positive int"),
    (dict(eval_every="5"), r"eval_every must be an int, got '5' \(a string: write 5 without quotes\)"),
    (dict(beta1=1.5), r"beta1 must lie in \[0, 1\)"),
    (dict(block_size=32), "block_size=32 exceeds the model's seq_length=16"),
    (dict(lr=math.inf), "lr must be a finite number"),
    (dict(weight_decay=math.nan), "weight_decay must be a finite number"),
    (dict(grad_clip=math.nan), "grad_clip must be a finite number"),
    (dict(compile="no"), "compile must be true or false, got 'no'"),
    (dict(progress="no"), "progress must be true or false"),
    (dict(max_documents=-1), "max_documents must be a positive int"),
    (dict(device="cpu:banana"), "unknown device 'cpu:banana'"),
    (dict(model={**SMALL, "layernorm_epsilon": "1e-5"}), "layernorm_epsilon must be a number, got '1e-5'"),
    (dict(model={**SMALL, "multi_query_attention": "no"}), "multi_query_attention must be true or false"),
])
def test_every_bad_setting_is_refused_when_the_config_is_made(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def cli_config(tmp_path, **overrides):
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n\n".join(f"小猫喝了{i}杯茶。The cat drank {i} cups." for i in range(30)), encoding="utf-8")
    values = dict(model={**SMALL, "padded_vocab_size": 4096}, corpus=str(corpus), block_size=16, batch_size=2,
                  max_steps=1, warmup_steps=0, eval_every=0, device="cpu", progress=False,
                  run_dir=str(tmp_path / "run"), samples_prompts=["小猫"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**values, **overrides}), encoding="utf-8")
    return path


def run_cli(capsys, cli, argv) -> str:
    """Run a command line that must fail with a user error; return its one line of stderr."""
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("overrides, message", [
    (dict(export_dir="FILE/out"), "is not a folder you can write to"),
    (dict(model=SMALL), "padded_vocab_size=64 is smaller than the tokenizer's vocab_size=4096"),
    (dict(corpus="no/such/file.txt"), "does not exist"),
    (dict(device="banana"), "unknown device 'banana'"),
    pytest.param(dict(device="cuda"), "sees no CUDA GPU", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a CUDA GPU")),
])
def test_the_train_cli_refuses_bad_outputs_and_inputs_in_one_line_before_training(tmp_path, capsys, overrides,
                                                                                  message):
    (tmp_path / "FILE").write_text("a file where a folder should be")
    if "export_dir" in overrides:
        overrides = {"export_dir": str(tmp_path / overrides["export_dir"])}
    assert message in run_cli(capsys, main, ["--config", str(cli_config(tmp_path, **overrides))])
    assert not (tmp_path / "run").exists()  # nothing was trained, nothing was written


def test_resume_without_a_run_dir_is_an_error_not_a_fresh_start(tmp_path, capsys):
    err = run_cli(capsys, main, ["--config", str(cli_config(tmp_path, run_dir=None)), "--resume"])
    assert "--resume continues the run saved in run_dir, but the config sets no run_dir" in err


def test_data_with_ids_beyond_the_models_vocabulary_is_refused_before_the_first_step():
    config = tiny_config(model={**SMALL, "padded_vocab_size": 32})
    with pytest.raises(ValueError, match="token id 6[0-3], but the model's vocabulary has padded_vocab_size=32"):
        train(build_model(config), tiny_data(), config)


def test_python_3_10_reads_toml_with_tomli():
    code = ("import sys, types; sys.modules['tomllib'] = None; stub = types.ModuleType('tomli'); "
            "sys.modules['tomli'] = stub; import glm3_teach.train as t; print(t.tomllib is stub)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


# --- silent wrong results --------------------------------------------------------------------------

def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(run_dir=str(tmp_path), checkpoint_every=1)
    model = build_model(config)

    def poison(step, history):
        if step == 1:
            with torch.no_grad():
                model.transformer.output_layer.weight[0, 0] = math.nan

    with pytest.raises(FloatingPointError, match="step 2: the training loss is nan.*checkpoint.*kept unchanged"):
        train(model, tiny_data(), config, callback=poison)
    state = json.loads((tmp_path / "checkpoint" / STATE_FILE).read_text())
    assert state["step"] == 1
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(tmp_path / "checkpoint" / "model.safetensors")).values())


def test_a_tokenizer_file_with_a_merge_deleted_is_refused(tmp_path):
    from glm3_teach.paths import data_dir

    data = json.loads((data_dir() / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    del data["merges"][-1]  # the last one: no later merge would notice, but every special id would shift
    (tmp_path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ValueError, match="num_merges=3829 but it lists 3828 merges"):
        load_tokenizer(tmp_path)


def test_a_split_pattern_that_drops_text_is_refused():
    with pytest.raises(ValueError, match="split pattern dropped 3 of the 5 characters"):
        BPETokenizer([], pattern=r"[a-z]+").encode("ab 12")


def test_special_ids_outside_the_vocabulary_are_refused_by_the_config():
    with pytest.raises(ValueError, match=r"eos_token_id=5000 is outside the vocabulary \[0, padded_vocab_size=4096\)"):
        ChatGLMConfig.course(eos_token_id=5000)
    with pytest.raises(ValueError, match="pad_token_id=-1"):
        ChatGLMConfig.course(pad_token_id=-1)


def test_a_bool_tensor_is_not_decoded_as_ids():
    tokenizer = BPETokenizer([])
    with pytest.raises(TypeError, match="must be integers, got a torch.bool"):
        tokenizer.decode(torch.tensor([True, False]))
    with pytest.raises(TypeError, match="ids must be integers"):
        tokenizer.decode([True])


def test_stream_generate_refuses_bytes():
    with pytest.raises(TypeError, match="takes token ids, got the bytes"):
        next(stream_generate(tiny_model(), BPETokenizer([]), b"abc", 3))


def test_an_empty_glm3_data_dir_means_the_repository_data(monkeypatch):
    from glm3_teach.paths import REPO_ROOT, data_dir

    monkeypatch.setenv("GLM3_DATA_DIR", "")
    assert data_dir() == REPO_ROOT / "data"


def test_a_padded_batch_without_its_mask_warns():
    with pytest.warns(UserWarning, match="some prompts start with the pad id 0 but no attention_mask"):
        generate(tiny_model(), torch.tensor([[0, 0, 5], [3, 4, 5]]), 1)


def test_greedy_decoding_from_a_model_in_train_mode_runs_in_eval_mode_and_restores_it():
    model = tiny_model(hidden_dropout=0.5, attention_dropout=0.5)
    prompt = torch.tensor([[1, 2, 3]])
    expected = generate(model.eval(), prompt, 6)
    model.train()
    assert torch.equal(generate(model, prompt, 6), expected)
    assert model.training


def test_nan_logits_raise_instead_of_emitting_id_0():
    model = tiny_model()
    with torch.no_grad():
        model.transformer.output_layer.weight.fill_(math.nan)
    with pytest.raises(FloatingPointError, match="logits hold NaN"):
        generate(model, torch.tensor([[1, 2]]), 2)


# --- security --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors"])
def test_an_index_naming_files_outside_the_checkpoint_is_refused(tmp_path, shard):
    model = tiny_model()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    model.config.to_json(folder / "config.json")
    save_file(model.state_dict(), str(tmp_path / "outside.safetensors"))
    index = {"metadata": {}, "weight_map": dict.fromkeys(model.state_dict(), shard)}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="lies outside the checkpoint folder; refusing to read it"):
        load_pretrained(folder)


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_refused_by_weights_only_loading_is_called_possibly_malicious(tmp_path):
    model = tiny_model()
    model.config.to_json(tmp_path / "config.json")
    torch.save({"transformer.embedding.word_embeddings.weight": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError) as error:
        load_pretrained(tmp_path)
    message = str(error.value)
    assert "may be malicious" in message and message.endswith("get a safetensors copy from a source you trust")
    assert "do not load it with weights_only=False" in message


# --- raw or misleading errors: one clear message each ----------------------------------------------

def test_damaged_checkpoint_files_are_named_with_the_fix(tmp_path):
    folder = save_pretrained(tiny_model(), tmp_path / "ckpt")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match=r"model.safetensors cannot be read .*truncated or corrupt"):
        load_pretrained(folder)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text('{"num_layers": 1,')
    with pytest.raises(ValueError, match=r"config.json holds broken JSON"):
        load_pretrained(folder)


@pytest.mark.parametrize("index, message", [("{broken", "holds broken JSON"),
                                            ('{"weight_map": ["a", "b"]}', "has no 'weight_map'"),
                                            ('{"weight_map": {"k": 3}}', r"weight_map\['k'\] must be the name")])
def test_a_broken_index_is_named(tmp_path, index, message):
    tiny_model().config.to_json(tmp_path / "config.json")
    (tmp_path / "model.safetensors.index.json").write_text(index)
    with pytest.raises(ValueError, match=message):
        load_pretrained(tmp_path)


def test_a_corrupt_training_checkpoint_is_named(tmp_path):
    config = tiny_config(run_dir=str(tmp_path), stop_after_step=1)
    train(build_model(config), tiny_data(), config)
    state = json.loads((tmp_path / "checkpoint" / STATE_FILE).read_text())
    del state["history"]
    (tmp_path / "checkpoint" / STATE_FILE).write_text(json.dumps(state))
    assert is_training_checkpoint(tmp_path / "checkpoint")
    resumed = tiny_config(run_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"trainer_state.json lacks \['history'\]: it is not a complete training"):
        train(build_model(resumed), tiny_data(), resumed, resume=tmp_path / "checkpoint")


def test_an_unknown_torch_dtype_is_named(tmp_path):
    with pytest.raises(ValueError, match="got 'float17' \\(the torch_dtype in config.json\\)"):
        checkpoint._resolve_dtype(None, ChatGLMConfig(**SMALL, torch_dtype="float17"))


@pytest.mark.parametrize("device", ["cpu:banana", "banana", ""])
def test_bad_device_strings_are_clear_errors(tmp_path, monkeypatch, device):
    folder = save_pretrained(tiny_model(), tmp_path / "ckpt")
    with pytest.raises(ValueError, match="device"):
        load_pretrained(folder, device=device or 5)
    if device:
        monkeypatch.setenv("GLM3_DEVICE", device)
        with pytest.raises(ValueError, match=f"unknown device '{device}' \\(from GLM3_DEVICE\\)"):
            pick_device()


def test_a_seed_beyond_64_bits_is_a_clear_error():
    with pytest.raises(ValueError, match="below 2\\*\\*64"):
        seed_everything(2**64)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_ids=torch.tensor([[1, 2]], dtype=torch.uint8)), TypeError, "integer tensor .torch.long or int32."),
    (dict(input_ids=torch.tensor([[1, 2]], dtype=torch.int16)), TypeError, "convert it with .long()"),
    (dict(input_ids=torch.tensor([[1, 2]]), attention_mask=[[1, 1]]), TypeError, "attention_mask must be a tensor"),
    (dict(input_ids=torch.tensor([[1, 2]]), position_ids=torch.tensor([[0.0, 1.0]])), TypeError,
     "position_ids must be an integer tensor"),
])
def test_model_inputs_of_the_wrong_kind_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        tiny_model()(**kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(eos_token_ids=2.0), TypeError, "token ids must be a list of integers, got 2.0"),
    (dict(attention_mask=torch.tensor([[0.5, 1.0]])), ValueError, r"only 0 \(pad\) and 1"),
    (dict(input_ids=[1, 2]), TypeError, "got a list; build it with torch.tensor"),
    (dict(do_sample=True, temperature=1e-40), ValueError, "temperature=1e-40 is so small"),
])
def test_generation_arguments_of_the_wrong_kind_are_clear_errors(kwargs, error, message):
    arguments = {"input_ids": torch.tensor([[1, 2]]), **kwargs}
    with pytest.raises(error, match=message):
        generate(tiny_model(), max_new_tokens=2, **arguments)


def test_tokenizer_training_inputs_of_the_wrong_kind_are_clear_errors():
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("喝茶", 300.5)
    with pytest.raises(TypeError, match="learns from a str of text, got NoneType"):
        BPETokenizer.train(None, 300)


def test_a_lone_surrogate_is_explained_by_the_real_tokenizer_too():
    from glm3_teach.chatglm3_tokenizer import TOKENIZER_ENV_VAR, ChatGLM3Tokenizer
    from glm3_teach.paths import find_reference_file

    path = find_reference_file("tokenizer.model", TOKENIZER_ENV_VAR)
    if path is None:
        pytest.skip("ChatGLM3's tokenizer.model is not in ../shared/reference/chatglm3/")
    with pytest.raises(ValueError, match="lone surrogate U\\+D800 at position 1"):
        ChatGLM3Tokenizer.from_file(path).encode("a\ud800b")


@pytest.mark.parametrize("tools", [[{"limit": math.nan}], "circular"])
def test_tools_that_are_not_json_are_clear_errors(tools):
    if tools == "circular":
        tools = [{}]
        tools[0]["self"] = tools
    with pytest.raises(TypeError, match="'tools' must be JSON data"):
        BPETokenizer([]).build_chat_input("hi", [{"role": "system", "content": "", "tools": tools}])


def test_the_tokenizer_cli_refuses_a_binary_corpus_in_one_line(tmp_path, capsys):
    from glm3_teach.tokenizer import main as tokenizer_main

    (tmp_path / "corpus.bin").write_bytes(bytes(range(256)) * 4)
    err = run_cli(capsys, tokenizer_main, ["--corpus", str(tmp_path / "corpus.bin"), "--out", str(tmp_path)])
    assert "is not UTF-8 text" in err
    err = run_cli(capsys, tokenizer_main, ["--corpus", str(tmp_path / "missing.txt")])
    assert "no such file" in err


def test_the_stories_cli_reports_a_bad_output_folder_in_one_line(tmp_path, capsys):
    from glm3_teach.stories import main as stories_main

    (tmp_path / "file").write_text("not a folder")
    assert "error:" in run_cli(capsys, stories_main, ["--out", str(tmp_path / "file")])


# --- speed as a failure mode: BPE encoding is near-linear in the length of one pre-token --------------

def long_han_run(chars: int) -> str:
    """Han characters of the course corpus with everything else removed: one pre-token."""
    import re

    from glm3_teach.data import load_corpus

    han = "".join(re.findall(r"[\u4e00-\u9fff]", load_corpus("val", "zh")))
    return (han * (chars // max(1, len(han)) + 1))[:chars]


def test_the_heap_encoder_gives_the_rescanning_encoders_ids_on_the_course_corpus():
    from glm3_teach.data import load_corpus
    from glm3_teach.tokenizer import pretokenize

    tokenizer = load_tokenizer()
    chunks = set(pretokenize(load_corpus("val")))
    chunks |= {long_han_run(400), "的的的的的的的", "aaaaaaaa", " " * 17, "1234567890"}
    differ = [c for c in chunks
              if tokenizer._encode_chunk(c.encode()) != encode_chunk_by_rescanning(tokenizer.ranks, c.encode())]
    assert len(chunks) > 1000 and differ == []


def test_the_rescanning_reference_follows_the_merge_order_by_hand():
    # "aaabdaaabac": aa -> 256 everywhere, then ab -> 257, then (256, 257) -> 258
    ranks = {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert encode_chunk_by_rescanning(ranks, b"aaabdaaabac") == [258, 100, 258, 97, 99]
    assert encode_chunk_by_rescanning(ranks, b"aaaa") == [256, 256] and encode_chunk_by_rescanning({}, b"ab") == [97, 98]
    # the earliest merge wins even where a later one comes first in the text
    assert encode_chunk_by_rescanning({(98, 99): 256, (97, 98): 257}, b"abc") == [97, 256]


# Few letters, so random strings repeat pairs and train deep merges (runs such as "aaaa" included).
LETTERS = "ab 的茶,1"


@given(corpus=st.text(LETTERS, min_size=20, max_size=200), texts=st.lists(st.text(LETTERS, max_size=60), max_size=4),
       num_merges=st.integers(1, 40))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_heap_encoder_equals_the_rescanning_reference_on_random_merges_and_text(corpus, texts, num_merges):
    from glm3_teach.tokenizer import train_merges

    tokenizer = BPETokenizer(train_merges(corpus, num_merges))
    for text in [corpus, *texts]:
        # one chunk of any bytes (merges across the split, half characters), and whole texts
        assert tokenizer._encode_chunk(text.encode()) == encode_chunk_by_rescanning(tokenizer.ranks, text.encode())
        assert tokenizer.encode_ordinary(text) == encode_by_rescanning(tokenizer.ranks, text)


class CountingRanks(dict):
    """A merge-rank table that counts every lookup: the encoder's work, measured without a clock."""

    lookups = 0

    def __contains__(self, key):
        CountingRanks.lookups += 1
        return super().__contains__(key)

    def __getitem__(self, key):
        CountingRanks.lookups += 1
        return super().__getitem__(key)

    def get(self, key, default=None):
        CountingRanks.lookups += 1
        return super().get(key, default)


def test_encoding_one_long_pre_token_takes_work_linear_in_its_length():
    tokenizer = load_tokenizer()
    tokenizer.ranks = CountingRanks(tokenizer.ranks)
    work = {}
    for chars in (2_000, 20_000):
        CountingRanks.lookups = 0
        ids = tokenizer._encode_chunk(long_han_run(chars).encode())
        work[chars] = CountingRanks.lookups
        assert tokenizer.decode(ids) == long_han_run(chars)
    assert work[20_000] <= 8 * 3 * 20_000  # a few lookups per byte (rescanning needs about one per byte per merge)
    assert work[20_000] <= 12 * work[2_000]  # ten times the text, about ten times the work
