"""Build a lesson notebook from its py:percent twin: execute it and store it with outputs.

Usage (from the repository root):

    python tools/build_notebook.py notebooks/01_tokenization.py [more.py ...]
    python tools/build_notebook.py --all            # every lesson and solution
    python tools/build_notebook.py --check          # only check pairs and cleanliness

Each lesson is written as ``NN_name.py`` (jupytext py:percent: readable diffs) and stored as
``NN_name.ipynb`` with its outputs (so GitHub shows them). This tool executes the notebook
top to bottom in a fresh kernel, the way "Restart kernel and run all" does, numbers the cell
ids deterministically, removes UI noise with nbstripout (outputs, counts and ids are kept;
an attention viewer's output is stored as its static picture) and writes both files. A cell
that raises stops the build, unless it is tagged ``raises-exception`` (a lesson that shows an
error message on purpose).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbstripout import strip_output

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 600


def lesson_sources() -> list[Path]:
    """Every py:percent lesson and solution under notebooks/."""
    return sorted(p for p in NOTEBOOKS.glob("**/*.py") if ".ipynb_checkpoints" not in p.parts)


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
VIEWER_TEXT = ("AttentionView:", "sampling explorer")  # how the attention viewer's (lesson 03) and the
# sampling explorer's (lesson 07) text/plain start


def keep_viewer_picture(output: nbformat.NotebookNode) -> None:
    """An attention viewer's output keeps its static PNG and drops its widget reference.

    Stored, no kernel holds that widget: JupyterLab would show "Error displaying widget: model
    not found" in place of the picture (the widget type outranks image/png). Only outputs of
    ``viz.attention_view`` and lesson 07's sampling explorer are touched (widget view + PNG + text
    starting with one of ``VIEWER_TEXT``);
    running the cell brings the live view back.
    """
    data = output.get("data", {})
    text = data.get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    if WIDGET_VIEW in data and "image/png" in data and text.startswith(VIEWER_TEXT):
        del data[WIDGET_VIEW]


def coalesce_streams(outputs: list) -> list:
    """Consecutive stdout (or stderr) outputs as one, as Jupyter shows them: how finely a kernel splits
    a cell's prints depends on the machine's timing, and would otherwise churn the stored outputs."""
    merged: list = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] = "".join(previous["text"]) + "".join(output["text"])
        else:
            merged.append(output)
    return merged


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Deterministic ids, no UI noise; outputs and execution counts stay (an attention viewer's
    as its static picture, see ``keep_viewer_picture``)."""
    nb = copy.deepcopy(nb)
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:03d}"
        tags = cell.get("metadata", {}).get("tags", [])
        cell["metadata"] = {"tags": tags} if tags else {}  # no execution timestamps, no UI state
        if "outputs" in cell:
            cell["outputs"] = coalesce_streams(cell["outputs"])
        for output in cell.get("outputs", []):
            keep_viewer_picture(output)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb = strip_output(nb, keep_output=True, keep_count=True, keep_id=True)
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def build(py_path: Path, execute: bool = True) -> float:
    """Execute ``py_path``'s notebook and write the .ipynb beside it; returns seconds taken."""
    nb = jupytext.read(py_path, fmt="py:percent")
    start = time.perf_counter()
    if execute:
        client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                resources={"metadata": {"path": str(py_path.parent)}})
        client.execute()
    seconds = time.perf_counter() - start
    nb = clean(nb)
    ipynb_path = py_path.with_suffix(".ipynb")
    nbformat.write(nb, ipynb_path)
    # The .py twin carries no jupytext header (no version number to churn in diffs):
    # the same filters as jupytext.toml, applied explicitly.
    twin = copy.deepcopy(nb)
    twin.metadata["jupytext"] = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "tags,-all"}
    jupytext.write(twin, py_path, fmt="py:percent")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="py:percent lesson files to build")
    parser.add_argument("--all", action="store_true", help="build every lesson and solution")
    parser.add_argument("--no-execute", action="store_true", help="only convert, do not run (outputs are lost)")
    parser.add_argument("--clean-only", action="store_true",
                        help="re-clean the stored .ipynb files named (outputs kept, nothing is run)")
    args = parser.parse_args(argv)
    paths = lesson_sources() if args.all else [p.resolve().with_suffix(".py") for p in args.paths]
    if not paths:
        parser.error("name at least one notebooks/NN_name.py, or pass --all")
    if args.clean_only:
        for path in paths:
            ipynb_path = path.with_suffix(".ipynb")
            nbformat.write(clean(nbformat.read(ipynb_path, as_version=4)), ipynb_path)
            print(f"cleaned {ipynb_path.relative_to(ROOT)}")
        return 0
    for path in paths:
        if not path.exists():
            parser.error(f"{path} does not exist (lessons are written as py:percent files beside the .ipynb)")
        seconds = build(path, execute=not args.no_execute)
        print(f"built {path.with_suffix('.ipynb').relative_to(ROOT)} in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
