"""The naive BPE encoder: rescan for the best pair after every merge (the reference for the fast one).

Taught in lesson 01 (分词 Tokenization), exercise 1 ("encode with a list of merges"): inside one
chunk, find the neighbouring pair with the lowest merge rank (the merge learned earliest),
replace all its occurrences, and rescan, until no pair can be merged. Every merge rescans the
whole chunk, so a chunk of ``n`` bytes costs ``O(n^2)`` in the worst case (one long run of Han
characters with no punctuation is one chunk). ``BPETokenizer._encode_chunk`` gives the same ids
in ``O(n log n)`` with a heap; ``tests/test_reliability.py`` checks that the two agree and
``benchmarks/bench_tokenizer.py`` times them.

What it leaves out: the split into chunks and the special tokens (``BPETokenizer.encode`` does
both); use it to check and to teach, never to encode a corpus.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from glm3_teach.tokenizer import SPLIT_PATTERN, merge, pretokenize


def encode_chunk_by_rescanning(ranks: Mapping[tuple[int, int], int], data: bytes) -> list[int]:
    """The ids of one chunk's bytes under the merge ``ranks`` (``{(left, right): new id}``).

    The new id of a merge is its rank (merge ``k`` makes id ``256 + k``), so the lowest rank
    is the merge learned first.

    >>> encode_chunk_by_rescanning({(97, 97): 256, (97, 98): 257, (256, 257): 258}, b"aaabdaaabac")
    [258, 100, 258, 97, 99]
    """
    ids = list(data)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, sys.maxsize))  # the earliest merge present
        if pair not in ranks:
            break
        ids = merge(ids, pair, ranks[pair])
    return ids


def encode_by_rescanning(ranks: Mapping[tuple[int, int], int], text: str, pattern: str = SPLIT_PATTERN) -> list[int]:
    """``text`` split by ``pretokenize``, each chunk encoded by rescanning: ``BPETokenizer.encode_ordinary``'s ids."""
    return [token for chunk in pretokenize(text, pattern) for token in encode_chunk_by_rescanning(ranks, chunk.encode())]
