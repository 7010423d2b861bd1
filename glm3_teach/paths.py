"""Where the course finds its files.

The course's own artefacts live in ``data/`` of the repository (override with the
``GLM3_DATA_DIR`` environment variable). Facts about the real ChatGLM3 (its
``tokenizer.model``, ``config.json``, checkpoint index) are *not* part of the course: they
are looked for in ``../shared/reference/chatglm3/`` beside the repository, or in a folder
named by ``GLM3_REFERENCE_DIR``; lessons and tests that use them skip cleanly without them.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The course's data folder (``data/`` in the repository unless ``GLM3_DATA_DIR`` is set)."""
    from_env = os.environ.get("GLM3_DATA_DIR", "").strip()  # set but empty means unset, not "."
    return Path(from_env).expanduser() if from_env else REPO_ROOT / "data"


def reference_dir() -> Path:
    """Folder holding the real ChatGLM3 reference files (may not exist)."""
    default = REPO_ROOT.parent / "shared" / "reference" / "chatglm3"
    return Path(os.environ.get("GLM3_REFERENCE_DIR", default))


def find_reference_file(name: str, env_var: str | None = None) -> Path | None:
    """Path of a real-ChatGLM3 file such as ``"tokenizer.model"``, or ``None`` if absent.

    ``env_var`` names an environment variable that may point straight at the file
    (e.g. ``GLM3_CHATGLM3_TOKENIZER``); it wins over the reference folder.
    """
    if env_var and os.environ.get(env_var):
        path = Path(os.environ[env_var]).expanduser()
        return path if path.exists() else None
    path = reference_dir() / name
    return path if path.exists() else None
