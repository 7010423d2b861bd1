"""The training loop: loss, schedule, optimizer groups, atomic checkpoints, exact resume, batch shards."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from glm3_teach.data import TokenDataset
from glm3_teach.train import (
    STATE_FILE,
    TrainConfig,
    TrainData,
    build_model,
    evaluate,
    lr_at,
    main,
    next_token_loss,
    parameter_groups,
    save_training_state,
    train,
)

TINY_MODEL = dict(num_layers=2, hidden_size=32, ffn_hidden_size=64, kv_channels=8, num_attention_heads=4,
                  multi_query_group_num=2, padded_vocab_size=64, seq_length=16)


def tiny_config(**overrides) -> TrainConfig:
    values = dict(model=TINY_MODEL, block_size=16, batch_size=4, grad_accum_steps=2, max_steps=6, warmup_steps=2,
                  lr=3e-3, eval_every=3, eval_blocks=4, device="cpu", progress=False)
    return TrainConfig(**{**values, **overrides})


def tiny_data(seed: int = 0) -> TrainData:
    generator = torch.Generator().manual_seed(seed)
    train_tokens = torch.randint(0, 64, (16 * 40 + 1,), generator=generator)
    val_tokens = torch.randint(0, 64, (16 * 6 + 1,), generator=generator)
    return TrainData(TokenDataset(train_tokens, 16, 2 * len(train_tokens)), TokenDataset(val_tokens, 16, 2 * len(val_tokens)))


def test_next_token_loss_scores_each_position_against_the_following_id():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    input_ids = torch.tensor([[0, 1, 2, 3], [4, 3, 2, 1]])
    log_probs = torch.log_softmax(logits, dim=-1)
    by_hand = -torch.stack([log_probs[b, t, input_ids[b, t + 1]] for b in range(2) for t in range(3)]).mean()
    torch.testing.assert_close(next_token_loss(logits, input_ids), by_hand)


def test_a_uniform_guess_costs_log_vocab_nats():
    logits = torch.zeros(1, 4, 4096)
    assert next_token_loss(logits, torch.zeros(1, 5, dtype=torch.long)).item() == pytest.approx(math.log(4096))


def test_lr_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    lrs = [lr_at(step, 1.0, 4, 14, 0.1) for step in range(14)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[-1] == pytest.approx(0.1)
    midpoint = 4 + (14 - 1 - 4) / 2  # halfway through the decay the cosine is at its mean
    assert lr_at(midpoint, 1.0, 4, 14, 0.1) == pytest.approx(0.55)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_only_matrices_get_weight_decay():
    model = build_model(tiny_config())
    decayed, plain = parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    plain_names = sorted(names[id(p)] for p in plain["params"])
    assert all(n.endswith(("layernorm.weight", "query_key_value.bias")) for n in plain_names)
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_training_lowers_the_loss_on_a_repeated_block():
    repeated = torch.arange(17).repeat(40)[: 16 * 40 + 1] % 64
    data = TrainData(TokenDataset(repeated, 16, len(repeated)), TokenDataset(repeated[:97], 16, 97))
    config = tiny_config(max_steps=30, lr=1e-2)
    history = train(build_model(config), data, config)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["val_step"] == list(range(3, 31, 3))


def test_grad_accumulation_of_two_halves_equals_one_full_batch():
    data = tiny_data()
    full = tiny_config(batch_size=4, grad_accum_steps=1, max_steps=1, warmup_steps=0)
    halves = tiny_config(batch_size=2, grad_accum_steps=2, max_steps=1, warmup_steps=0)
    a, b = build_model(full), build_model(halves)
    loss_a, loss_b = train(a, data, full)["loss"], train(b, data, halves)["loss"]
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=name)


def test_an_interrupted_and_resumed_run_gives_exactly_the_losses_of_an_uninterrupted_one(tmp_path):
    data = tiny_data()
    whole = train(build_model(tiny_config()), data, tiny_config())
    interrupted = tiny_config(run_dir=str(tmp_path / "run"), stop_after_step=4)
    first = train(build_model(interrupted), data, interrupted)
    assert first["step"] == [1, 2, 3, 4]
    resumed_config = tiny_config(run_dir=str(tmp_path / "run"))
    torch.manual_seed(1234)  # a fresh process: the RNG state must come from the checkpoint
    resumed = train(build_model(resumed_config), data, resumed_config, resume=tmp_path / "run" / "checkpoint")
    assert resumed["step"] == whole["step"] == [1, 2, 3, 4, 5, 6]
    assert resumed["loss"] == whole["loss"]  # bit for bit
    assert resumed["val_loss"] == whole["val_loss"]
    assert resumed["lr"] == whole["lr"]


def test_a_checkpoint_is_written_atomically_and_replaces_the_old_one(tmp_path, monkeypatch):
    config = tiny_config(run_dir=str(tmp_path), stop_after_step=2)
    model = build_model(config)
    train(model, tiny_data(), config)
    target = tmp_path / "checkpoint"
    assert json.loads((target / STATE_FILE).read_text())["step"] == 2
    import glm3_teach.training_state as train_module  # where save_training_state writes its files

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(train_module, "save_file", broken_save)
    from glm3_teach.train import build_optimizer
    from glm3_teach.data import BlockSampler

    optimizer, scheduler = build_optimizer(model, config)
    with pytest.raises(OSError, match="disk full"):
        save_training_state(target, model, optimizer, scheduler, 99, BlockSampler(40), config, {})
    assert json.loads((target / STATE_FILE).read_text())["step"] == 2  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no temporary folder left behind


def test_resuming_with_a_different_config_names_the_differences(tmp_path):
    config = tiny_config(run_dir=str(tmp_path), stop_after_step=2)
    train(build_model(config), tiny_data(), config)
    other = tiny_config(run_dir=str(tmp_path), lr=1e-3)
    with pytest.raises(ValueError, match=r"different config(.|\n)*lr: checkpoint 0.003, now 0.001"):
        train(build_model(other), tiny_data(), other, resume=tmp_path / "checkpoint")


def test_unknown_config_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate', 'model.hidden'\]"):
        TrainConfig.from_dict({"learning_rate": 1e-3, "model": {"hidden": 3}})
    file = tmp_path / "c.toml"
    file.write_text('max_step = 3\n[model]\nnum_layers = 1\n')
    with pytest.raises(ValueError, match=r"c.toml has unknown keys \['max_step'\]"):
        TrainConfig.from_file(file)


def test_a_dataset_smaller_than_one_block_is_refused():
    with pytest.raises(ValueError, match=r"holds 16 tokens, fewer than one block of block_size \+ 1 = 17"):
        TokenDataset(torch.zeros(16, dtype=torch.long), 16, 16, "training split")


def test_bits_per_character_is_nats_over_ln2_over_characters():
    config = tiny_config()
    data = tiny_data()
    result = evaluate(build_model(config), data.val)
    assert result["tokens"] == 6 * 16
    assert result["bits_per_char"] == pytest.approx(result["loss"] / math.log(2) / 2)  # 2 characters per token
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))


def test_the_command_line_trains_and_exports_a_loadable_checkpoint(tmp_path, monkeypatch):
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n\n".join(f"小猫喝了{i}杯茶。The cat drank {i} cups of tea." for i in range(40)), encoding="utf-8")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(dict(model={**TINY_MODEL, "padded_vocab_size": 4096}, corpus=str(corpus),
                                      block_size=16, batch_size=2, max_steps=2, warmup_steps=1, eval_every=0,
                                      device="cpu", progress=False, export_dir=str(tmp_path / "out"),
                                      samples_prompts=["小猫"])))
    assert main(["--config", str(config)]) == 0
    from glm3_teach import load_pretrained, load_tokenizer

    record = json.loads((tmp_path / "out" / "training.json").read_text(encoding="utf-8"))
    assert record["command"] == f"python -m glm3_teach.train --config {config}"
    assert record["final_val"]["loss"] > 0 and record["val_unigram_entropy"] > 0
    assert record["samples"]["小猫"].startswith("小猫")
    model = load_pretrained(tmp_path / "out", dtype=torch.float32)
    assert next(model.parameters()).dtype == torch.float32
    assert load_tokenizer(tmp_path / "out").eos_token_id == 4094
    ids = torch.tensor([load_tokenizer(tmp_path / "out").encode("小猫喝茶")])
    assert F.softmax(model(ids).logits, -1).shape == (1, ids.shape[1], 4096)


# --- the shipped base checkpoint -------------------------------------------------------------

def test_the_base_recipe_parses_and_describes_the_shipped_model():
    from glm3_teach.paths import REPO_ROOT, data_dir

    recipe = TrainConfig.from_file(REPO_ROOT / "configs" / "base.toml")
    record = json.loads((data_dir() / "checkpoints" / "base" / "training.json").read_text(encoding="utf-8"))
    assert record["command"].startswith("python -m glm3_teach.train --config configs/base.toml")
    assert recipe.init_from is None   # a fresh model; the key is newer than this run's record, which lacks it
    assert record["config"] == {k: v for k, v in recipe.to_dict().items() if k != "init_from"}


def test_the_base_checkpoint_is_small_loads_in_fp32_and_meets_the_quality_bar():
    from glm3_teach import load_pretrained, load_tokenizer
    from glm3_teach.data import load_documents, unigram_entropy
    from glm3_teach.paths import data_dir

    folder = data_dir() / "checkpoints" / "base"
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 20_000_000
    model = load_pretrained(folder, dtype=torch.float32)
    tokenizer = load_tokenizer(folder)
    assert tokenizer.eos_token_id == model.config.eos_token_id == 4094 and model.config.padded_vocab_size == 4096
    assert tokenizer.pad_token_id == model.config.pad_token_id == 4095
    record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    val = TokenDataset.from_documents(load_documents("val"), tokenizer, 256, "validation split")
    assert unigram_entropy(val.tokens) == pytest.approx(record["val_unigram_entropy"])
    assert record["final_val"]["loss"] <= 0.6 * record["val_unigram_entropy"]
    measured = evaluate(model, val, max_blocks=8)  # a spot check of the recorded loss on 8 spread blocks
    assert measured["loss"] == pytest.approx(record["final_val"]["loss"], abs=0.25)


@pytest.mark.parametrize("field, value, message", [("lr", -1.0, "lr must be positive"),
                                                   ("min_lr_ratio", 2.0, r"min_lr_ratio must lie in \[0, 1\]"),
                                                   ("weight_decay", -0.1, "must be >= 0")])
def test_impossible_optimizer_settings_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_the_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = 'fast'\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(bad)])
    assert exit_info.value.code == 2
    assert "TrainConfig.lr must be a number, got 'fast'" in capsys.readouterr().err


# --- data parallelism without processes: the shards and the loss scale ------------------------------

def test_the_ranks_shards_of_a_doubled_batch_are_exactly_one_process_batch():
    from glm3_teach.data import BlockSampler
    from glm3_teach.distributed import World
    from glm3_teach.train import make_batches

    data = tiny_data()
    one = iter(make_batches(data.train, 4, BlockSampler(len(data.train), 0)))
    ranks = [iter(make_batches(data.train, 2, BlockSampler(len(data.train), 0), World(r, 2, r))) for r in (0, 1)]
    for _ in range(3):
        whole, (rank0, rank1) = next(one), [next(r) for r in ranks]   # [4, 17], [2, 17] each
        assert torch.equal(whole[0::2], rank0) and torch.equal(whole[1::2], rank1)


def test_one_process_leaves_the_loss_alone_and_bad_rank_variables_are_named(monkeypatch):
    from glm3_teach.distributed import World, world_from_env
    from glm3_teach.train import shard_loss

    loss = torch.tensor(2.5)
    assert shard_loss(loss, 7, torch.device("cpu"), World()) is loss
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK=2 and WORLD_SIZE=2 do not fit"):
        world_from_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="RANK='one' must be an integer"):
        world_from_env()


# --- continuing from an exported model (init_from: the context extension of base_long) -------

def test_init_from_copies_an_exported_models_weights_and_may_lengthen_the_context(tmp_path):
    from glm3_teach import save_pretrained

    source = build_model(tiny_config(seed=1))
    save_pretrained(source, tmp_path / "short", dtype="float32")
    longer = build_model(tiny_config(model={**TINY_MODEL, "seq_length": 64}, block_size=64,
                                     init_from=str(tmp_path / "short")))
    assert longer.config.seq_length == 64
    for (name, ours), theirs in zip(longer.state_dict().items(), source.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)
    fresh = build_model(tiny_config(model={**TINY_MODEL, "seq_length": 64}, block_size=64))
    assert not torch.equal(fresh.state_dict()["transformer.output_layer.weight"],
                           longer.state_dict()["transformer.output_layer.weight"])


def test_init_from_with_other_sizes_or_no_model_names_the_problem(tmp_path):
    from glm3_teach import save_pretrained

    save_pretrained(build_model(tiny_config()), tmp_path / "tiny", dtype="float32")
    with pytest.raises(ValueError, match=r"hidden_size=32 there vs 48 here"):
        build_model(tiny_config(model={**TINY_MODEL, "hidden_size": 48}, init_from=str(tmp_path / "tiny")))
    with pytest.raises(FileNotFoundError, match="not an exported model"):
        build_model(tiny_config(init_from=str(tmp_path / "nothing")))


def test_the_long_context_base_continues_the_base_and_reads_past_256_tokens():
    """data/checkpoints/base_long (configs/base_long.toml): the recorded recipe, and on packed validation
    blocks of 1,536 tokens its loss at positions past 256 is far below the base model's there."""
    from glm3_teach import load_pretrained, load_tokenizer
    from glm3_teach.data import load_documents
    from glm3_teach.paths import REPO_ROOT, data_dir

    folder = data_dir() / "checkpoints" / "base_long"
    recipe = TrainConfig.from_file(REPO_ROOT / "configs" / "base_long.toml")
    record = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    assert record["command"].startswith("python -m glm3_teach.train --config configs/base_long.toml")
    assert record["config"] == recipe.to_dict() and recipe.init_from == "data/checkpoints/base"
    tokenizer = load_tokenizer(folder)
    val = TokenDataset.from_documents(load_documents("val"), tokenizer, 1536, "validation split")
    blocks = torch.stack([val[i] for i in range(2)])                       # [2, 1537]
    late = {}
    for name in ("base", "base_long"):
        model = load_pretrained(data_dir() / "checkpoints" / name, dtype=torch.float32)
        model.config.seq_length = 1536                                     # the base's table, built longer
        with torch.no_grad():
            logits = model(blocks[:, :-1]).logits                           # [2, 1536, vocab]
        late[name] = next_token_loss(logits[:, 512:], blocks[:, 512:]).item()
    assert late["base_long"] < 0.8 and late["base"] > 2 * late["base_long"], late
