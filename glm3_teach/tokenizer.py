"""Byte-level BPE: the course's own tokenizer, trained from scratch on the course corpus.

Taught in lesson 01 (分词 Tokenization). Text is split into chunks (``pretokenize``: runs of
Han characters, words, single digits as in ChatGLM3, punctuation, whitespace), each chunk
becomes its UTF-8 bytes (ids 0..255), and ``merges`` learned by frequency join the most common
neighbouring pair into a new id, again and again. ``train_merges_naive`` recounts every pair
after each merge (the lesson writes it first); ``train_merges`` updates only the counts a merge
touches and takes the best pair from a heap, and learns exactly the same merges, ties broken
the same way (the most frequent pair, then the smallest ids). ``BPETokenizer`` adds the
special tokens and the ChatGLM3 chat layout of ``glm3_teach.chat_format``.

The special tokens follow the ordinary vocabulary: ChatGLM3's nine (``[MASK]`` ... ``<|observation|>``)
in ChatGLM3's order, then ``</s>`` (end of text: pretraining separates documents with it and
generation stops on it, as ChatGLM3's eos ``</s>``) and ``<pad>``.

What it leaves out: normalisation (NFC, lower-casing), an unknown token (every byte is in the
vocabulary, so nothing is unknown), dropout, and ``regex``-module classes such as ``\\p{Han}``;
the split uses the standard library's ``re`` with explicit Han ranges.

Command line (rebuilds ``data/tokenizer/tokenizer.json`` byte for byte)::

    python -m glm3_teach.tokenizer --out data/tokenizer --vocab-size 4096
"""

from __future__ import annotations

import argparse
import heapq
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

from glm3_teach.chat_format import CHATGLM3_SPECIAL_TOKENS, ChatTokenizerBase, utf8_or_explain
from glm3_teach.errors import cli_main, read_json

BYTE_VOCAB = 256
HAN_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef\U00030000-\U0003134f"
# English contractions | Han runs | other letters | one digit | punctuation | newlines | spaces
SPLIT_PATTERN = (rf"'(?:[sdmt]|ll|ve|re)| ?[{HAN_RANGES}]+| ?[^\W\d_{HAN_RANGES}]+|\d"
                 rf"| ?(?:[^\s\w]|_)+|\s*[\r\n]+|\s+(?!\S)|\s+")
DEFAULT_SPECIAL_TOKENS = CHATGLM3_SPECIAL_TOKENS + ("</s>", "<pad>")
FILE_FORMAT, FILE_VERSION = "glm3-teach-bpe", 1
TOKENIZER_FILE = "tokenizer.json"


def pretokenize(text: str, pattern: str = SPLIT_PATTERN) -> list[str]:
    """Split ``text`` into the chunks BPE merges inside; joined again they give ``text`` back.

    >>> pretokenize("我喜欢喝茶。I don't, 2024!")
    ['我喜欢喝茶', '。', 'I', ' don', "'t", ',', ' ', '2', '0', '2', '4', '!']
    """
    return re.findall(pattern, text)


def get_pair_counts(ids: Sequence[int], counts: dict | None = None) -> dict[tuple[int, int], int]:
    """Count each pair of neighbours in ``ids``, adding to ``counts`` when given.

    >>> get_pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` (left to right, no overlaps) by ``new_id``.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([5, 5, 5], (5, 5), 6)
    [6, 5]
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def best_pair(counts: dict[tuple[int, int], int]) -> tuple[int, int]:
    """The pair to merge next: the most frequent one; among equals, the smallest ids.

    >>> best_pair({(5, 9): 3, (2, 7): 3, (1, 1): 2})
    (2, 7)
    """
    return min(counts, key=lambda pair: (-counts[pair], pair))


def train_merges_naive(text: str, num_merges: int, pattern: str = SPLIT_PATTERN) -> list[tuple[int, int]]:
    """Learn ``num_merges`` merges by recounting every pair after each merge (slow, obvious).

    Merge ``k`` creates id ``256 + k``. Stops early when no pair is left.
    """
    chunks = [list(chunk.encode("utf-8")) for chunk in pretokenize(text, pattern)]
    merges = []
    for step in range(num_merges):
        counts: dict = {}
        for ids in chunks:
            get_pair_counts(ids, counts)
        if not counts:
            break
        pair = best_pair(counts)
        chunks = [merge(ids, pair, BYTE_VOCAB + step) for ids in chunks]
        merges.append(pair)
    return merges


def train_merges(text: str, num_merges: int, pattern: str = SPLIT_PATTERN,
                 verbose: bool = False) -> list[tuple[int, int]]:
    """Learn the same merges as ``train_merges_naive``, fast.

    Three ideas: each distinct chunk is stored once with its count; a merge updates only the
    chunks that contain the pair (``where``) and only the counts of pairs it changes; the best
    pair comes from a heap of ``(-count, pair)`` whose stale entries are skipped when popped.
    """
    chunk_counts = Counter(pretokenize(text, pattern))
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    counts: dict = defaultdict(int)
    where: dict = defaultdict(set)  # pair -> indices of the words that (may) contain it
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            counts[pair] += freq
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges:
        pair = _pop_most_frequent(heap, counts)
        if pair is None:
            break
        new_id = BYTE_VOCAB + len(merges)
        if verbose:
            print(f"merge {len(merges) + 1}/{num_merges}: {pair} -> {new_id} (count {counts[pair]})")
        merges.append(pair)
        for changed, count in _apply_merge(words, freqs, counts, where, pair, new_id):
            heapq.heappush(heap, (-count, changed))
    return merges


def _pop_most_frequent(heap: list, counts: dict) -> tuple[int, int] | None:
    while heap:
        negative_count, pair = heapq.heappop(heap)
        if counts.get(pair) == -negative_count:
            return pair
    return None


def _apply_merge(words, freqs, counts, where, pair, new_id) -> list[tuple[tuple[int, int], int]]:
    """Merge ``pair`` in every word holding it; return the pairs whose count changed, with new counts."""
    delta: dict = defaultdict(int)
    for index in where.pop(pair):
        word = words[index]
        new_word = merge(word, pair, new_id)
        if len(new_word) == len(word):  # a stale entry of ``where``: the pair left this word earlier
            continue
        freq = freqs[index]
        for old in zip(word, word[1:]):
            delta[old] -= freq
        for new in zip(new_word, new_word[1:]):
            delta[new] += freq
            if new_id in new:
                where[new].add(index)
        words[index] = new_word
    changed = []
    for other, change in delta.items():
        if change:
            counts[other] += change
            if counts[other] > 0:
                changed.append((other, counts[other]))
            else:
                del counts[other]
                where.pop(other, None)
    return changed


def render_token(data: bytes) -> str:
    """A token's bytes as readable text: UTF-8 where it is whole, ``\\xe5`` escapes where it is not."""
    return data.decode("utf-8", errors="backslashreplace")


class BPETokenizer(ChatTokenizerBase):
    """Byte-level BPE with ChatGLM3's special tokens and chat layout.

    >>> tok = BPETokenizer.train("喝茶 喝茶 喝茶 drink tea", vocab_size=256 + 3 + 11)
    >>> tok.decode(tok.encode("喝茶"))
    '喝茶'
    """

    utf8_errors = "replace"

    def __init__(self, merges: Sequence[Sequence[int]], special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
                 pattern: str = SPLIT_PATTERN, eos_token: str = "</s>", pad_token: str = "<pad>"):
        self.merges = [_checked_merge(pair, BYTE_VOCAB + k) for k, pair in enumerate(merges)]
        self.pattern = pattern
        self._split = re.compile(pattern)
        self.vocab = [bytes([b]) for b in range(BYTE_VOCAB)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self.ranks = {pair: BYTE_VOCAB + k for k, pair in enumerate(self.merges)}
        self.special_tokens = _special_token_ids(special_tokens, len(self.vocab))
        self.eos_token, self.pad_token = eos_token, pad_token
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
              pattern: str = SPLIT_PATTERN, verbose: bool = False) -> "BPETokenizer":
        """Learn merges on ``text`` so that bytes + merges + special tokens make ``vocab_size`` ids."""
        if not isinstance(text, str):
            raise TypeError(f"BPETokenizer.train learns from a str of text, got {type(text).__name__}; read your "
                            f"file with open(path, encoding='utf-8').read() or use glm3_teach.data.load_corpus")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size must be an int (the number of ids), got {vocab_size!r}")
        num_merges = vocab_size - BYTE_VOCAB - len(special_tokens)
        if num_merges < 0:
            raise ValueError(f"vocab_size={vocab_size!r} is too small: it must hold the {BYTE_VOCAB} bytes and "
                             f"{len(special_tokens)} special tokens, so at least {BYTE_VOCAB + len(special_tokens)}")
        merges = train_merges(text, num_merges, pattern, verbose=verbose)
        if len(merges) < num_merges:
            raise ValueError(f"the text ran out of pairs after {len(merges)} of {num_merges} merges "
                             f"({len(text):,} characters); train on more text or ask for a vocab_size of at most "
                             f"{BYTE_VOCAB + len(merges) + len(special_tokens)}")
        return cls(merges, special_tokens, pattern)

    # --- the pieces ChatTokenizerBase asks for ----------------------------------------
    @property
    def ordinary_vocab_size(self) -> int:
        return len(self.vocab)

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` as plain text: split it, then merge inside each chunk by merge rank."""
        ids, covered = [], 0
        for chunk in self._split.findall(text):
            covered += len(chunk)
            cached = self._cache.get(chunk)
            if cached is None:
                cached = self._encode_chunk(_utf8(chunk, text))
                if len(self._cache) < 200_000:
                    self._cache[chunk] = cached
            ids += cached
        if covered != len(text):
            raise ValueError(f"this tokenizer's split pattern dropped {len(text) - covered} of the {len(text)} "
                             f"characters of the text, so they would vanish from the ids; its pattern must match "
                             f"every character (end it with an alternative such as \\s+|. ); retrain or fix it")
        return ids

    def _encode_chunk(self, data: bytes) -> list[int]:
        """Merge inside one chunk, lowest merge rank first, leftmost first among equals.

        The same ids as rescanning for the best pair after every merge, in ``O(n log n)``: the
        ids form a linked list (``after``/``before``) and a heap holds ``(rank, position)`` of
        every mergeable neighbour pair. A merge makes id ``rank``, whose own merges all rank
        higher, so the heap order is exactly the rescanning order; entries made stale by an
        earlier merge are skipped when popped.
        """
        ids: list[int | None] = list(data)
        if len(ids) < 2:
            return list(data)
        ranks = self.ranks
        after = [*range(1, len(ids)), -1]
        before = list(range(-1, len(ids) - 1))
        heap = [(ranks[pair], i) for i, pair in enumerate(zip(data, data[1:])) if pair in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = after[i]
            if ids[i] is None or j < 0 or ranks.get((ids[i], ids[j])) != rank:
                continue                                              # stale: this pair changed since
            ids[i], ids[j] = rank, None                               # the merged id is the pair's rank
            after[i] = after[j]
            if after[i] >= 0:
                before[after[i]] = i
            for left, right in ((before[i], i), (i, after[i])):
                if left >= 0 and right >= 0 and (ids[left], ids[right]) in ranks:
                    heapq.heappush(heap, (ranks[ids[left], ids[right]], left))
        return [token for token in ids if token is not None]

    def decode_ordinary(self, ids: list[int]) -> str:
        return b"".join(self.vocab[token_id] for token_id in ids).decode("utf-8", errors="replace")

    def piece_bytes(self, token_id: int, at_segment_start: bool) -> tuple[bytes, bool]:
        return self.vocab[token_id], False

    def token_text(self, token_id: int) -> str:
        """What one id stands for, readable: special tokens as themselves, bytes via ``render_token``."""
        (token_id,) = self.check_ids([token_id])
        return self.special_ids.get(token_id) or render_token(self.vocab[token_id])

    # --- one JSON file ----------------------------------------------------------------
    def to_json(self) -> str:
        """The tokenizer as versioned, human-readable JSON (one merge per line), deterministic."""
        header = {"format": FILE_FORMAT, "version": FILE_VERSION, "pattern": self.pattern,
                  "special_tokens": list(self.special_tokens), "eos_token": self.eos_token,
                  "pad_token": self.pad_token, "num_merges": len(self.merges)}
        lines = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}," for key, value in header.items()]
        merge_lines = [json.dumps([a, b, render_token(self.vocab[BYTE_VOCAB + k])], ensure_ascii=False)
                       for k, (a, b) in enumerate(self.merges)]
        body = ",\n    ".join(merge_lines)
        return "{\n" + "\n".join(lines) + f'\n  "merges": [\n    {body}\n  ]\n}}\n'

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` (into ``path`` if it is a folder); return the file written."""
        path = Path(path)
        if path.suffix != ".json":
            path.mkdir(parents=True, exist_ok=True)
            path = path / TOKENIZER_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        """Read a tokenizer written by ``save`` (a ``.json`` file, or a folder holding ``tokenizer.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}; train one with "
                                    f"`python -m glm3_teach.tokenizer --out {path.parent}`")
        data = read_json(path, fix="rebuild it with `python -m glm3_teach.tokenizer`")
        return cls._from_dict(data, path)

    @classmethod
    def _from_dict(cls, data: dict, path: Path) -> "BPETokenizer":
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a glm3-teach BPE tokenizer (expected \"format\": \"{FILE_FORMAT}\")")
        if data.get("version") != FILE_VERSION:
            raise ValueError(f"{path} has tokenizer file version {data.get('version')!r}; this code reads version "
                             f"{FILE_VERSION}: update glm3_teach or retrain the tokenizer")
        missing = {"pattern", "special_tokens", "merges"} - set(data)
        if missing:
            raise ValueError(f"{path} lacks the keys {sorted(missing)}; retrain the tokenizer")
        if "num_merges" in data and data["num_merges"] != len(data["merges"]):
            raise ValueError(f"{path} is corrupt: its header says num_merges={data['num_merges']!r} but it lists "
                             f"{len(data['merges'])} merges, which would shift every later and every special id; "
                             f"restore the file or retrain the tokenizer")
        try:
            tokenizer = cls([entry[:2] for entry in data["merges"]], data["special_tokens"], data["pattern"],
                            data.get("eos_token", "</s>"), data.get("pad_token", "<pad>"))
        except (TypeError, ValueError, IndexError, re.error) as error:
            raise ValueError(f"{path} is corrupt: {error}") from None
        for k, entry in enumerate(data["merges"]):
            if len(entry) != 3 or entry[2] != render_token(tokenizer.vocab[BYTE_VOCAB + k]):
                raise ValueError(f"{path} is corrupt: merge {k} {entry!r} does not spell the token "
                                 f"{render_token(tokenizer.vocab[BYTE_VOCAB + k])!r} its pair makes")
        return tokenizer


def _checked_merge(pair: Sequence[int], new_id: int) -> tuple[int, int]:
    if len(pair) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair):
        raise ValueError(f"merge for id {new_id} must be a pair of ints, got {pair!r}")
    if not all(0 <= i < new_id for i in pair):
        raise ValueError(f"merge for id {new_id} is {list(pair)}, but it may only join ids below {new_id}")
    return int(pair[0]), int(pair[1])


def _special_token_ids(special_tokens: Sequence[str], first_id: int) -> dict[str, int]:
    if isinstance(special_tokens, str) or not all(isinstance(t, str) and t for t in special_tokens):
        raise ValueError(f"special_tokens must be a list of non-empty strings, got {special_tokens!r}")
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens has duplicates: {special_tokens!r}")
    return {token: first_id + k for k, token in enumerate(special_tokens)}


def _utf8(chunk: str, text: str) -> bytes:
    return utf8_or_explain(chunk, text)


def load_tokenizer(path: str | Path | None = None) -> ChatTokenizerBase:
    """Load a tokenizer: the course's BPE (``tokenizer.json``) or the real ChatGLM3 (``tokenizer.model``).

    ``path`` is a file or a folder holding one of them; ``None`` means the course tokenizer in
    ``data/tokenizer/``.
    """
    from glm3_teach.paths import data_dir

    path = Path(path) if path is not None else data_dir() / "tokenizer"
    if path.is_dir():
        found = [path / name for name in (TOKENIZER_FILE, "tokenizer.model") if (path / name).exists()]
        if not found:
            raise FileNotFoundError(f"{path} holds neither {TOKENIZER_FILE} (the course's BPE) nor tokenizer.model "
                                    f"(ChatGLM3's SentencePiece); train one with `python -m glm3_teach.tokenizer`")
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"no tokenizer at {path}")
    if path.suffix == ".json":
        return BPETokenizer.load(path)
    if path.suffix == ".model":
        from glm3_teach.chatglm3_tokenizer import ChatGLM3Tokenizer

        return ChatGLM3Tokenizer.from_file(path)
    raise ValueError(f"do not know how to load {path.name}: expected {TOKENIZER_FILE} or tokenizer.model")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.tokenizer", description="Train the course's byte-level BPE tokenizer.")
    parser.add_argument("--out", type=Path, default=Path("data/tokenizer"), help="folder for tokenizer.json")
    parser.add_argument("--vocab-size", type=int, default=4096, help="ids in all: bytes + merges + special tokens")
    parser.add_argument("--corpus", type=Path, help="a UTF-8 text file (default: the course corpus, train split)")
    args = parser.parse_args(argv)
    return cli_main(parser.prog, lambda: _train_and_save(args))


def _train_and_save(args: argparse.Namespace) -> int:
    from glm3_teach.data import load_corpus

    if args.corpus:
        if not args.corpus.is_file():
            raise FileNotFoundError(f"--corpus {args.corpus}: no such file (give a UTF-8 text file, or leave it out "
                                    f"for the course corpus)")
        try:
            text = args.corpus.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"--corpus {args.corpus} is not UTF-8 text (byte {error.start} cannot be decoded); "
                             f"give a text file saved as UTF-8") from None
        if "\x00" in text:
            raise ValueError(f"--corpus {args.corpus} holds NUL bytes, so it is a binary file, not text; "
                             f"give a UTF-8 text file")
    else:
        text = load_corpus("train")
    start = time.perf_counter()
    tokenizer = BPETokenizer.train(text, args.vocab_size)
    seconds = time.perf_counter() - start
    path = tokenizer.save(args.out)
    print(f"trained on {len(text):,} characters in {seconds:.1f} s: {len(tokenizer.merges)} merges, "
          f"vocab_size {tokenizer.vocab_size}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
