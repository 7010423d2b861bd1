"""The notebook harness itself: pytest + nbval with the project's options must fail a lesson
whose cell raises or whose checked output changed, and pass a sound one (sanitized timings
and addresses, unchecked cells, gpu-only cells skipped without CUDA).

The fixture notebooks live in tests/fixtures/ and are never collected on their own."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def run_pytest_on(notebook: str) -> subprocess.CompletedProcess:
    """Run the project's own pytest configuration (pyproject addopts, conftest) on one notebook."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-rs", str(FIXTURES / notebook)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def test_a_cell_that_raises_fails_the_run():
    result = run_pytest_on("broken_cell.ipynb")
    assert result.returncode == 1, result.stdout
    assert "ZeroDivisionError" in result.stdout
    assert "1 failed, 1 passed" in result.stdout


def test_a_checked_cell_whose_output_changed_fails_the_run():
    result = run_pytest_on("wrong_output.ipynb")
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout


def test_a_sound_lesson_passes_with_timings_and_addresses_sanitized():
    result = run_pytest_on("passing_lesson.ipynb")
    assert result.returncode == 0, result.stdout + result.stderr
    if torch.cuda.is_available():
        assert "5 passed" in result.stdout
    else:
        assert "4 passed, 1 skipped" in result.stdout
        assert "gpu-only" in result.stdout
