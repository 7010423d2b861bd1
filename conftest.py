"""pytest setup shared by the unit tests and the notebook runs (nbval).

- Cells tagged ``gpu-only`` are skipped, with a reason, when this machine has no CUDA GPU;
  on a CUDA machine they run like every other cell.
- With several pytest-xdist workers, the CPU threads are shared out between them (each
  notebook kernel inherits ``OMP_NUM_THREADS``), so two workers on two cores do not fight.
- At the end, the time spent in each notebook is printed, slowest first, and merged into
  ``build/lesson_times.json``, which the teacher's guide reads (``glm3_teach.classroom.guide``).
"""

import json
import os
import platform
from collections import defaultdict
from pathlib import Path

import pytest
import torch

GPU_ONLY_TAG = "gpu-only"

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))

_notebook_seconds = defaultdict(float)


def _cell_tags(item) -> list:
    cell = getattr(item, "cell", None)
    if cell is None:
        return []
    return list(cell.get("metadata", {}).get("tags", []))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="cell tagged gpu-only and this machine has no CUDA GPU")
    for item in items:
        if GPU_ONLY_TAG in _cell_tags(item):
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("time per notebook")
    for path, seconds in sorted(_notebook_seconds.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")
    _record_times(Path(terminalreporter.config.rootpath) / "build" / "lesson_times.json")


def _record_times(path: Path) -> None:
    """Merge this run's notebook times into ``path``."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        recorded = {}
    recorded.setdefault("notebooks", {}).update({p: round(s, 1) for p, s in _notebook_seconds.items()})
    recorded["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {_workers} pytest worker(s)"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n", encoding="utf-8")
