"""Fault injection: a training run SIGKILLed at every rename of its saves resumes to exactly the same losses.

``GLM3_KILL_AT_RENAME=n`` makes ``glm3_teach.checkpoint`` kill its own process (SIGKILL, no
cleanup of any kind) just before its n-th rename. The child process is this file run as a
script; it trains a tiny model on random ids with a training checkpoint after every step.
After each kill the checkpoint must be findable (or, killed before the first one, absent),
and the resumed run must end with the losses of a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import glm3_teach.checkpoint as checkpoint
from glm3_teach.checkpoint import KILL_ENV_VAR, load_pretrained, recover_folder
from glm3_teach.data import TokenDataset
from glm3_teach.train import TrainConfig, TrainData, build_model, is_training_checkpoint, main, train

TINY_MODEL = dict(num_layers=1, hidden_size=32, ffn_hidden_size=64, kv_channels=8, num_attention_heads=4,
                  multi_query_group_num=2, padded_vocab_size=64, seq_length=16)
KILLED = -signal.SIGKILL if hasattr(signal, "SIGKILL") else 1


def tiny_config(run_dir: Path) -> TrainConfig:
    return TrainConfig(model=TINY_MODEL, block_size=16, batch_size=2, max_steps=3, warmup_steps=1, lr=3e-3,
                       eval_every=2, eval_blocks=2, checkpoint_every=1, device="cpu", progress=False,
                       run_dir=str(run_dir))


def tiny_data() -> TrainData:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (16 * 12 + 1,), generator=generator)
    return TrainData(TokenDataset(tokens[:16 * 10 + 1], 16, 161), TokenDataset(tokens[16 * 10:], 16, 33))


def run_child(run_dir: Path, kill_at: int) -> int:
    env = {**os.environ, KILL_ENV_VAR: str(kill_at), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, __file__, str(run_dir)], env=env, timeout=300,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode


def resumed_history(run_dir: Path) -> dict:
    """What ``--resume`` does: continue from run_dir/checkpoint, or start at step 0 when there is none."""
    folder = recover_folder(run_dir / "checkpoint")
    config = tiny_config(run_dir)
    return train(build_model(config), tiny_data(), config, resume=folder if folder.exists() else None)


def curves(history: dict) -> dict:
    return {key: history[key] for key in ("step", "loss", "lr", "val_step", "val_loss")}


def test_a_run_killed_at_every_rename_of_every_save_resumes_to_the_uninterrupted_losses(tmp_path):
    torch.set_num_threads(1)
    before = checkpoint._renames_done
    whole = curves(train(build_model(tiny_config(tmp_path / "whole")), tiny_data(), tiny_config(tmp_path / "whole")))
    renames = checkpoint._renames_done - before
    assert renames == 2 + 3 + 3  # first save: tmp->new, new->name; later saves also move the old one aside
    for kill_at in range(1, renames + 1):
        run_dir = tmp_path / f"killed_at_{kill_at}"
        assert run_child(run_dir, kill_at) == KILLED, f"the child was not killed at rename {kill_at}"
        target = recover_folder(run_dir / "checkpoint")
        if kill_at == 1:  # before the first save was published: nothing to resume from
            assert not target.exists()
        else:
            assert is_training_checkpoint(target), f"killed at rename {kill_at}: no complete checkpoint"
        assert curves(resumed_history(run_dir)) == whole, f"killed at rename {kill_at}"
        assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint"]  # no staging folder left behind


def write_cli_config(tmp_path: Path, name: str) -> Path:
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n\n".join(f"小猫喝了{i}杯茶。The cat drank {i} cups of tea." for i in range(30)),
                      encoding="utf-8")
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(dict(model={**TINY_MODEL, "padded_vocab_size": 4096}, corpus=str(corpus),
                                      block_size=16, batch_size=2, max_steps=2, warmup_steps=1, eval_every=0,
                                      checkpoint_every=1, device="cpu", progress=False,
                                      run_dir=str(tmp_path / name / "run"), export_dir=str(tmp_path / name / "out"),
                                      samples_prompts=["小猫"])), encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The CLI run never interrupted: its export folder (weights and training.json)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    assert main(["--config", str(write_cli_config(folder, "whole"))]) == 0
    return folder / "whole" / "out"


@pytest.mark.parametrize("kill_at, says", [(1, "starts from step 0"), (7, None)])  # 7: inside the export
def test_the_cli_continues_a_killed_run_with_the_same_command_plus_resume(tmp_path, capsys, uninterrupted,
                                                                          kill_at, says):
    whole = json.loads((uninterrupted / "training.json").read_text(encoding="utf-8"))
    config = write_cli_config(tmp_path, "killed")
    env = {**os.environ, KILL_ENV_VAR: str(kill_at), "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-m", "glm3_teach.train", "--config", str(config)], env=env,
                           timeout=300, capture_output=True)
    assert child.returncode == KILLED
    capsys.readouterr()
    assert main(["--config", str(config), "--resume"]) == 0
    assert (says in capsys.readouterr().err) if says else True
    resumed = json.loads((tmp_path / "killed" / "out" / "training.json").read_text(encoding="utf-8"))
    assert curves(resumed["history"]) == curves(whole["history"])
    assert resumed["final_val"] == whole["final_val"] and resumed["samples"] == whole["samples"]
    a, b = load_pretrained(uninterrupted), load_pretrained(tmp_path / "killed" / "out")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not [p for p in (tmp_path / "killed").rglob(".*")]  # no staging folder left anywhere


if __name__ == "__main__":  # the child: train until done, or until GLM3_KILL_AT_RENAME kills it
    torch.set_num_threads(1)
    directory = Path(sys.argv[1])
    train(build_model(tiny_config(directory)), tiny_data(), tiny_config(directory))
