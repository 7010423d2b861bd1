"""pytest setup shared by the unit tests and the notebook runs (nbval).

Cells tagged ``gpu-only`` are skipped, with a reason, when this machine has no CUDA GPU;
on a CUDA machine they run like every other cell.
"""

import pytest
import torch

GPU_ONLY_TAG = "gpu-only"


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
