"""The train command line (lesson 06): overrides for a short run, what it prints, and --force."""

from __future__ import annotations

import json
import re

import pytest

from glm3_teach.paths import REPO_ROOT
from glm3_teach.train import main

TINY_MODEL = dict(num_layers=1, hidden_size=32, ffn_hidden_size=64, kv_channels=8, num_attention_heads=4,
                  multi_query_group_num=2, padded_vocab_size=4096, seq_length=16)


def write_config(tmp_path, **overrides):
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n\n".join(f"小猫喝了{i}杯茶。The cat drank {i} cups of tea." for i in range(40)), encoding="utf-8")
    values = dict(model=TINY_MODEL, corpus=str(corpus), block_size=16, batch_size=2, max_steps=500, warmup_steps=3,
                  eval_every=1, eval_blocks=2, device="cpu", progress=False, samples_prompts=["小猫"])
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({**values, **overrides}), encoding="utf-8")
    return path


def refused(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_overrides_make_a_short_run_that_says_what_it_does_and_never_replaces_a_model_without_force(tmp_path, capsys):
    config = write_config(tmp_path)
    run, export = tmp_path / "run", tmp_path / "out"
    argv = ["--config", str(config), "--max-steps", "2", "--run-dir", str(run), "--export-dir", str(export)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    record = json.loads((export / "training.json").read_text(encoding="utf-8"))
    assert record["config"]["max_steps"] == 2 and record["history"]["step"] == [1, 2]
    assert record["config"]["run_dir"] == str(run) and (run / "checkpoint" / "trainer_state.json").is_file()
    assert record["config"]["warmup_steps"] == 2  # the config's 3 would not fit in 2 steps
    assert "--max-steps 2 is shorter than warmup_steps=3" in err
    for step, loss in zip(record["history"]["val_step"], record["history"]["val_loss"]):
        assert f"step {step}/2: validation loss {loss:.3f} nats/token" in out
    for phase in ("tokenizing and packing the corpus…", "step 1/2: evaluating on 2 validation blocks…",
                  "evaluating the final model on all", "sampling 1 continuation…", f"exporting to {export}…",
                  f"exported to {export}"):
        assert phase in out, phase
    summary = out[out.index("final training loss"):out.index("sample '")]
    assert f"validation loss {record['final_val']['loss']:.3f} nats/token" in summary
    assert not re.search(r"\d\.\d{4}", summary), summary  # the final figures are rounded

    before = (export / "training.json").read_text(encoding="utf-8")
    err = refused(capsys, argv)
    assert str(export) in err and "--force" in err and "already holds a trained model" in err
    assert (export / "training.json").read_text(encoding="utf-8") == before  # untouched, nothing trained
    assert main(argv + ["--force"]) == 0


def test_the_shipped_checkpoint_is_refused_before_any_work_without_force(capsys, monkeypatch, tmp_path):
    import glm3_teach.train as train_cli

    def no_training(*args, **kwargs):
        raise AssertionError("the run went on to read its data; the shipped model was not protected")

    monkeypatch.setattr(train_cli, "load_data", no_training)  # even a broken check trains nothing here
    monkeypatch.chdir(REPO_ROOT)  # the recipe's export_dir is relative to the repository
    err = refused(capsys, ["--config", str(REPO_ROOT / "configs" / "base.toml"), "--max-steps", "1",
                           "--run-dir", str(tmp_path / "run")])
    assert "data/checkpoints/base already holds a trained model" in err and "pass --force" in err


def test_a_bad_override_is_one_line(tmp_path, capsys):
    err = refused(capsys, ["--config", str(write_config(tmp_path)), "--max-steps", "0"])
    assert "max_steps must be a positive int, got 0" in err
