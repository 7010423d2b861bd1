"""Data parallelism (lesson 06): 2 CPU processes with batch_size B train exactly like 1 process with 2B.

The child is this file run under ``python -m torch.distributed.run --nproc_per_node 2
--standalone`` (``torchrun``; gloo over the loopback interface), once for the whole module.
Each rank calls the same ``train`` as one process would, on packed blocks (interrupted after
step 2 and resumed) and on SFT-style batches whose samples hold different numbers of targets
(labels -100 elsewhere), where a per-rank mean loss would make DDP's gradient average
inexact; then it runs the command line (``main``, what ``torchrun -m glm3_teach.train``
runs). The tests compare every rank's losses and the final weights with one process on the
doubled batch, and check that only rank 0 saved, printed and exported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from glm3_teach.data import TokenDataset
from glm3_teach.train import TrainConfig, TrainData, build_model, main, train

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this PyTorch build has no torch.distributed with the gloo backend")

TINY_MODEL = dict(num_layers=1, hidden_size=32, ffn_hidden_size=64, kv_channels=8, num_attention_heads=4,
                  multi_query_group_num=2, padded_vocab_size=64, seq_length=16)
LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
CURVES = ("step", "loss", "lr", "tokens", "val_step", "val_loss")


def packed_config(batch_size: int, **overrides) -> TrainConfig:
    values = dict(model=TINY_MODEL, block_size=16, batch_size=batch_size, grad_accum_steps=2, max_steps=4,
                  warmup_steps=1, lr=3e-3, eval_every=2, eval_blocks=5, device="cpu", progress=False)
    return TrainConfig(**{**values, **overrides})


def packed_data() -> TrainData:
    tokens = torch.randint(0, 64, (16 * 30 + 1,), generator=torch.Generator().manual_seed(0))
    return TrainData(TokenDataset(tokens[:16 * 24 + 1], 16, 400), TokenDataset(tokens[16 * 24:], 16, 100))


class MaskedSamples(torch.utils.data.Dataset):
    """SFT-style samples ``{"input_ids", "labels"}`` of 16 ids whose first 1 to 14 labels are -100."""

    characters_per_token = 1.0

    def __init__(self, count: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 64, (count, 16), generator=generator)           # [count, 16]
        self.hidden = torch.randint(1, 15, (count,), generator=generator)           # [count]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        labels = self.ids[index].clone()
        labels[: int(self.hidden[index])] = -100
        return {"input_ids": self.ids[index], "labels": labels}

    def collate(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.stack([s[key] for s in samples]) for key in ("input_ids", "labels")}


def masked_config(batch_size: int) -> TrainConfig:
    return TrainConfig(model=TINY_MODEL, block_size=16, batch_size=batch_size, max_steps=3, warmup_steps=1, lr=3e-3,
                       eval_every=0, device="cpu", progress=False)


def masked_data() -> TrainData:
    return TrainData(MaskedSamples(24, 1), MaskedSamples(6, 2))


def curves(history: dict) -> dict:
    return {key: history[key] for key in CURVES}


def assert_same_curves(actual: dict, expected: dict, what: str) -> None:
    for key in CURVES:
        assert actual[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), f"{what}: {key}"


def launch(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
    env.pop("GLM3_KILL_AT_RENAME", None)
    try:
        result = subprocess.run(LAUNCH + args, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"torchrun with 2 processes did not finish within {timeout:.0f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def cli_config(tmp_path: Path, batch_size: int) -> Path:
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n\n".join(f"小猫喝了{i}杯茶。The cat drank {i} cups of tea." for i in range(40)), encoding="utf-8")
    path = tmp_path / f"batch{batch_size}.json"
    path.write_text(json.dumps(dict(model={**TINY_MODEL, "padded_vocab_size": 4096}, corpus=str(corpus),
                                    block_size=16, batch_size=batch_size, max_steps=50, warmup_steps=1,
                                    eval_every=1, eval_blocks=3, device="cpu", progress=False,
                                    samples_prompts=["小猫"])), encoding="utf-8")
    return path


def cli_args(tmp_path: Path, batch_size: int, name: str) -> list[str]:
    return ["--config", str(cli_config(tmp_path, batch_size)), "--max-steps", "2", "--run-dir",
            str(tmp_path / f"{name}_run"), "--export-dir", str(tmp_path / name)]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The folder the 2-process run wrote, and its output."""
    folder = tmp_path_factory.mktemp("ddp")
    started = time.perf_counter()
    result = launch([__file__, str(folder)])
    print(f"torchrun with 2 processes took {time.perf_counter() - started:.1f} s")
    return folder, result


def test_two_processes_with_batch_b_train_exactly_like_one_with_2b_and_only_rank_0_saves(two_processes):
    folder, _ = two_processes
    torch.set_num_threads(1)
    whole = packed_config(4)
    one_model = build_model(whole)
    one = curves(train(one_model, packed_data(), whole))
    one_masked = curves(train(build_model(masked_config(4)), masked_data(), masked_config(4)))
    for rank in (0, 1):
        result = json.loads((folder / f"rank{rank}.json").read_text())
        assert result["first"]["step"] == [1, 2]  # interrupted after step 2
        assert_same_curves(result["resumed"], one, f"rank {rank}, packed blocks, resumed")
        assert_same_curves(result["masked"], one_masked, f"rank {rank}, SFT-style batches")
    assert sorted(p.name for p in folder.glob("saves-rank*")) == ["saves-rank0"]  # only rank 0 saved
    assert json.loads((folder / "saves-rank0").read_text()) == [2, 4, 2]  # 2, 4 after resuming, the CLI run's 2
    assert sorted(p.name for p in (folder / "run").iterdir()) == ["checkpoint"]
    two_weights = load_file(str(folder / "run" / "checkpoint" / "model.safetensors"))
    key_bias = slice(32, 48)  # query_key_value.bias = [query 4 x 8 | key 2 x 8 | value 2 x 8]
    for name, value in one_model.state_dict().items():
        two = two_weights[name]
        if name.endswith("query_key_value.bias"):
            # In the key dims RoPE leaves unrotated (half of each head) the key bias is a shift shared
            # by every key, which softmax ignores: its gradient is 0 in exact arithmetic (~1e-12 here),
            # and AdamW turns that rounding noise into steps of about lr whose sign depends on the
            # order of the sums. Leave the key bias out; compare the query and value biases.
            value = torch.cat([value[:key_bias.start], value[key_bias.stop:]])
            two = torch.cat([two[:key_bias.start], two[key_bias.stop:]])
        torch.testing.assert_close(two, value, rtol=1e-4, atol=1e-6, msg=name)


def test_the_command_line_under_torchrun_matches_one_process_and_only_rank_0_prints_and_exports(two_processes,
                                                                                              tmp_path, capsys):
    folder, result = two_processes
    assert result.stdout.count("exported to") == 1 and result.stdout.count("parameters;") == 1, result.stdout
    assert "on 2 processes (2 blocks each per micro-batch)" in result.stdout
    assert main(cli_args(tmp_path, 4, "one")) == 0
    capsys.readouterr()
    two = json.loads((folder / "two" / "training.json").read_text(encoding="utf-8"))
    one = json.loads((tmp_path / "one" / "training.json").read_text(encoding="utf-8"))
    assert two["machine"]["processes"] == 2 and two["history"]["tokens"] == one["history"]["tokens"] == [64, 128]
    assert_same_curves(two["history"], one["history"], "the command line")
    assert two["final_val"]["loss"] == pytest.approx(one["final_val"]["loss"], rel=1e-5)
    assert sorted(p.name for p in (folder / "two_run").iterdir()) == ["checkpoint"]


def _child(out: Path) -> None:
    """One rank of the first test: record which rank saves, train, write the histories."""
    import glm3_teach.training_loop as loop

    rank, original = int(os.environ["RANK"]), loop.save_training_state
    saves: list[int] = []

    def recording_save(path, model, optimizer, scheduler, step, *args, **kwargs):
        saves.append(step)
        (out / f"saves-rank{rank}").write_text(json.dumps(saves))
        return original(path, model, optimizer, scheduler, step, *args, **kwargs)

    loop.save_training_state = recording_save
    torch.set_num_threads(1)
    run = dict(run_dir=str(out / "run"), checkpoint_every=2)
    first = train(build_model(packed_config(2, stop_after_step=2, **run)), packed_data(),
                  packed_config(2, stop_after_step=2, **run))
    torch.manual_seed(1234)  # as in a fresh process: the RNG states must come from the checkpoint
    resumed = train(build_model(packed_config(2, **run)), packed_data(), packed_config(2, **run),
                    resume=out / "run" / "checkpoint")
    masked = train(build_model(masked_config(2)), masked_data(), masked_config(2))
    (out / f"rank{rank}.json").write_text(json.dumps({"first": curves(first), "resumed": curves(resumed),
                                                       "masked": curves(masked)}))
    main(cli_args(out, 2, "two"))  # what `torchrun ... -m glm3_teach.train` runs on each rank


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
