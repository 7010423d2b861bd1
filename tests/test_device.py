"""Device choice and seeding."""

import random

import numpy as np
import pytest
import torch

from glm3_teach.device import environment_report, pick_device, seed_everything


def test_env_var_forces_the_cpu(monkeypatch):
    monkeypatch.setenv("GLM3_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_without_override_cuda_is_preferred_when_present(monkeypatch):
    monkeypatch.delenv("GLM3_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else pick_device().type
    assert pick_device().type == expected
    if not torch.cuda.is_available():
        assert pick_device().type in ("cpu", "mps")


def test_an_unknown_device_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("GLM3_DEVICE", "tpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'.*GLM3_DEVICE.*cpu, cuda, mps"):
        pick_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_a_gpu_says_how_to_fix_it():
    with pytest.raises(RuntimeError, match="no CUDA GPU.*GLM3_DEVICE"):
        pick_device("cuda")


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    def draws():
        seed_everything(1234)
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    assert draws() == draws()
    seed_everything(1)
    first = torch.rand(1).item()
    seed_everything(2)
    assert torch.rand(1).item() != first


def test_seed_everything_returns_a_seeded_generator():
    a = torch.rand(4, generator=seed_everything(7))
    b = torch.rand(4, generator=seed_everything(7))
    assert torch.equal(a, b)


def test_seed_must_be_a_non_negative_int():
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)


def test_environment_report_names_python_torch_and_device():
    line = environment_report(torch.device("cpu"))
    assert line.startswith("Python 3.") and f"PyTorch {torch.__version__}" in line and "device: cpu" in line
    assert "\n" not in line
