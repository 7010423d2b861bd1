"""Reading the course's text: the bilingual story corpus, or a text file of your own.

Lesson 00 shows the corpus, lesson 01 trains the tokenizer on it and lesson 06 pretrains the
model on it. Every lesson reads text through ``load_documents`` or ``load_corpus``.

The course corpus lives in ``data_dir()/corpus/`` as ``{split}.{lang}.txt`` (``split`` is
"train" or "val", ``lang`` "zh" or "en"), written by ``python -m glm3_teach.stories``.
Documents (stories) are separated by one blank line, and document ``k`` of the Chinese file
is the translation of document ``k`` of the English one. ``lang=None`` gives both languages,
story by story: Chinese, English, Chinese, English, ...

Your own text: pass ``path="my_text.txt"`` or set the environment variable ``GLM3_CORPUS``
(the argument wins). The file must be UTF-8 (a byte-order mark is allowed). Documents are
separated by blank lines; a file with fewer than two documents is split into lines instead.
The last 10% of the documents (at least one) are "val", the rest "train". ``lang`` is
ignored for your own text, since the file is read as it is.

What it leaves out: tokenizing and batching (lesson 06 adds them here), files larger than
memory, encodings other than UTF-8.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from glm3_teach.paths import data_dir

CORPUS_ENV_VAR = "GLM3_CORPUS"
SPLITS = ("train", "val")
LANGS = ("zh", "en")
VAL_PERCENT = 10  # the share of your own documents that becomes the validation split
REGENERATE = "python -m glm3_teach.stories"
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def corpus_dir() -> Path:
    """Folder of the course corpus: ``data_dir()/corpus`` (``data/corpus`` in the repository)."""
    return data_dir() / "corpus"


def load_documents(split: str, lang: str | None = None, path: str | os.PathLike | None = None) -> list[str]:
    """The documents of one split, each a string without blank lines.

    ``split``: "train" or "val". ``lang``: "zh", "en", or None for both languages interleaved
    story by story (zh, en, zh, en, ...). ``path`` (or ``GLM3_CORPUS``): read your own UTF-8
    text file instead of the course corpus; ``lang`` is then ignored.
    """
    _check_split_and_lang(split, lang)
    own = _own_text_path(path)
    if own is not None:
        return split_own_text(own)[split]
    if lang is not None:
        return _read_course_file(split, lang)
    zh, en = _read_course_file(split, "zh"), _read_course_file(split, "en")
    if len(zh) != len(en):
        raise ValueError(f"{split}.zh.txt holds {len(zh)} documents but {split}.en.txt holds {len(en)}; "
                         f"the corpus files are out of step, regenerate them with `{REGENERATE}`")
    return [doc for pair in zip(zh, en) for doc in pair]


def load_corpus(split: str, lang: str | None = None, path: str | os.PathLike | None = None) -> str:
    """The documents of ``load_documents(split, lang, path)`` joined by one blank line."""
    return "\n\n".join(load_documents(split, lang, path))


def _check_split_and_lang(split: object, lang: object) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if lang is not None and lang not in LANGS:
        raise ValueError(f"lang must be None (both languages), 'zh' or 'en', got {lang!r}")


def _own_text_path(path: str | os.PathLike | None) -> Path | None:
    """The learner's file: the ``path`` argument, else ``GLM3_CORPUS`` when set and not empty."""
    if path is not None:
        return Path(path).expanduser()
    from_env = os.environ.get(CORPUS_ENV_VAR, "").strip()
    return Path(from_env).expanduser() if from_env else None


def _read_course_file(split: str, lang: str) -> list[str]:
    file = corpus_dir() / f"{split}.{lang}.txt"
    if not file.is_file():
        raise FileNotFoundError(f"corpus file {file} is missing; regenerate the corpus with "
                                f"`{REGENERATE} --out {file.parent}` (or point {CORPUS_ENV_VAR} at your own text file)")
    return file.read_text(encoding="utf-8").rstrip("\n").split("\n\n")


def split_documents(text: str) -> list[str]:
    """Cut text into documents at blank lines; with fewer than two documents, at line ends.

    Line ends are normalised to "\\n" and each piece is stripped of surrounding whitespace.
    ``split_documents("a\\nb\\n\\nc")`` -> ["a\\nb", "c"]; ``split_documents("a\\nb")`` -> ["a", "b"].
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    documents = [doc.strip() for doc in _BLANK_LINE.split(text) if doc.strip()]
    if len(documents) < 2:
        documents = [line.strip() for line in text.split("\n") if line.strip()]
    return documents


def split_own_text(path: Path) -> dict[str, list[str]]:
    """Read a learner's UTF-8 file and split it: the last 10% of documents (at least one) are "val"."""
    if not path.exists():
        raise FileNotFoundError(f"your text file {path} does not exist (given as `path=` or by {CORPUS_ENV_VAR}); "
                                f"check the path, or unset {CORPUS_ENV_VAR} to use the course corpus")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the path of one UTF-8 text file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start} cannot be decoded); save it as UTF-8, "
                         f"e.g. `iconv -f GBK -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}`") from error
    documents = split_documents(text)
    if not documents:
        raise ValueError(f"{path} is empty; put some text in it, with documents separated by blank lines")
    if len(documents) < 2:
        raise ValueError(f"{path} holds a single line of text, but a train/val split needs at least two "
                         f"documents (separated by a blank line) or two lines; add more text")
    n_val = max(1, len(documents) * VAL_PERCENT // 100)
    return {"train": documents[:-n_val], "val": documents[-n_val:]}
