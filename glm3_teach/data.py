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

Lesson 06 (预训练 Pretraining) adds what training needs: ``tokenize_documents`` encodes a split,
``TokenDataset`` packs the documents into one stream of ids with the end-of-text id ``</s>``
(4094 in the course tokenizer) after each document and cuts it into fixed-length blocks, and
``BlockSampler`` + ``make_loader`` serve the blocks in a seeded order whose position can be
saved and restored exactly (``sampler.state_dict()``), so a resumed run reads the same batches.
``unigram_entropy`` gives the baseline a language model must beat.

What it leaves out: files larger than memory, encodings other than UTF-8, several workers
loading data in parallel, and padding (packing needs none).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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


# --- lesson 06: tokens, packed blocks, a resumable sampler -----------------------------------


def tokenize_documents(documents: Sequence[str], tokenizer) -> list[list[int]]:
    """Each document as a list of token ids (plain text: special tokens in it stay text)."""
    return [tokenizer.encode_ordinary(doc) for doc in documents]


def pack_documents(token_lists: Sequence[Sequence[int]], eos_id: int) -> torch.Tensor:
    """One stream of ids, ``</s>`` after every document: ``[[5, 6], [7]], eos=9 -> [5, 6, 9, 7, 9]``."""
    stream = [token for ids in token_lists for token in (*ids, eos_id)]
    return torch.tensor(stream, dtype=torch.long)


class TokenDataset(Dataset):
    """A packed token stream cut into blocks of ``block_size + 1`` ids.

    Block ``i`` is ``tokens[i * block_size : (i + 1) * block_size + 1]``: the model reads its
    first ``block_size`` ids and predicts its last ``block_size`` (consecutive blocks share one
    id, so every token of the stream is a target once). A block may cross a document
    boundary; the ``</s>`` between documents tells the model a new story starts.
    ``num_characters`` counts the characters of the documents plus one per ``</s>``: the
    denominator of bits per character.
    """

    def __init__(self, tokens: torch.Tensor, block_size: int, num_characters: int, name: str = "dataset"):
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {block_size!r}")
        if tokens.dim() != 1 or len(tokens) < block_size + 1:
            raise ValueError(f"the {name} holds {len(tokens):,} tokens, fewer than one block of block_size + 1 = "
                             f"{block_size + 1}; use more text or a smaller block_size")
        self.tokens, self.block_size, self.num_characters, self.name = tokens, block_size, num_characters, name

    @classmethod
    def from_documents(cls, documents: Sequence[str], tokenizer, block_size: int, name: str = "dataset") -> "TokenDataset":
        """Tokenize ``documents``, pack them with the tokenizer's ``</s>`` and cut blocks."""
        tokens = pack_documents(tokenize_documents(documents, tokenizer), tokenizer.eos_token_id)
        return cls(tokens, block_size, sum(len(doc) for doc in documents) + len(documents), name)

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.block_size

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} of a {self.name} with {len(self)} blocks")
        start = index * self.block_size
        return self.tokens[start : start + self.block_size + 1]          # [block_size + 1]

    @property
    def characters_per_token(self) -> float:
        return self.num_characters / len(self.tokens)


class BlockSampler(Sampler[int]):
    """Block indices in a fresh seeded shuffle every epoch, resumable at any block.

    Epoch ``e`` visits ``torch.randperm(num_blocks)`` drawn from a generator seeded with
    ``seed + e``, so the order depends only on ``(seed, epoch)``. Iterating runs forever (epoch
    after epoch) and counts each index it hands out; ``state_dict()`` is ``{"epoch", "offset"}``,
    the next index to serve, and ``load_state_dict`` continues from there.
    """

    def __init__(self, num_blocks: int, seed: int = 0):
        if num_blocks < 1:
            raise ValueError(f"a sampler needs at least one block, got {num_blocks}")
        self.num_blocks, self.seed = num_blocks, seed
        self.epoch, self.offset = 0, 0

    def order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_blocks, generator=generator)

    def __iter__(self) -> Iterator[int]:
        while True:
            order = self.order(self.epoch)
            while self.offset < self.num_blocks:
                index = int(order[self.offset])
                self.offset += 1
                yield index
            self.epoch, self.offset = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset, "seed": self.seed, "num_blocks": self.num_blocks}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if (state["seed"], state["num_blocks"]) != (self.seed, self.num_blocks):
            raise ValueError(f"this data position was saved for seed={state['seed']} over {state['num_blocks']} "
                             f"blocks, but the sampler has seed={self.seed} over {self.num_blocks} blocks: "
                             f"the data or its config changed since the checkpoint")
        self.epoch, self.offset = state["epoch"], state["offset"]


def make_loader(dataset: TokenDataset, batch_size: int, sampler: BlockSampler) -> DataLoader:
    """Batches ``[batch_size, block_size + 1]`` of blocks in the sampler's order, forever.

    No worker processes: the sampler is read exactly as far as the batches handed out, so
    its state is the exact data position.
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0)


def unigram_entropy(tokens: torch.Tensor) -> float:
    """Entropy in nats of the tokens' own frequency distribution: ``-sum p log p``.

    The cross-entropy of the best model that ignores context (it always predicts these
    frequencies) on these very tokens. ``[1, 1, 2, 2] -> ln 2 = 0.693``.
    """
    counts = Counter(tokens.tolist())
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())
