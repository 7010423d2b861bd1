"""How fast the course's BPE trains and encodes.

    python benchmarks/bench_tokenizer.py            # about 2 minutes on one CPU core
    python benchmarks/bench_tokenizer.py --quick    # naive trainer on 10k characters only

Table 1: the naive trainer (recount every pair after each merge) against the fast one
(incremental counts + heap) on bilingual slices of the training split; both
must learn the same merges. Table 2: the fast trainer at the course vocabulary as the text
grows (it should scale about linearly). Table 3: encode throughput of the course tokenizer
and, when its tokenizer.model is found, the real ChatGLM3 tokenizer (SentencePiece, in C++).
Table 4: one long pre-token (Han characters of the validation split with everything else
removed, so the split makes a single chunk): the heap encoder against the rescanning one of
``glm3_teach.tokenizer_reference`` (quadratic: every merge rescans the chunk), which must give the same ids.
"""

from __future__ import annotations

import argparse
import re
import time

from glm3_teach.chatglm3_tokenizer import TOKENIZER_ENV_VAR, ChatGLM3Tokenizer
from glm3_teach.data import load_corpus
from glm3_teach.paths import find_reference_file
from glm3_teach.tokenizer import BPETokenizer, load_tokenizer, train_merges, train_merges_naive
from glm3_teach.tokenizer_reference import encode_chunk_by_rescanning

COURSE_VOCAB = 4096


def bilingual(zh: str, en: str, chars: int) -> str:
    """The first ``chars`` characters of both texts, each language in its share of the corpus."""
    zh_chars = round(chars * len(zh) / (len(zh) + len(en)))
    return zh[:zh_chars] + "\n\n" + en[: chars - zh_chars]


def seconds(fn, *args, repeat: int = 1):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def naive_vs_fast(zh: str, en: str, sizes: list[int], vocab: int) -> None:
    print(f"\n1. naive vs fast trainer, vocab {vocab} ({vocab - 256} merges)")
    print(f"{'characters':>10} | {'naive s':>8} | {'fast s':>7} | {'speed-up':>8} | same merges")
    for chars in sizes:
        text = bilingual(zh, en, chars)
        naive_s, naive = seconds(train_merges_naive, text, vocab - 256)
        fast_s, fast = seconds(train_merges, text, vocab - 256, repeat=3)
        print(f"{chars:>10,} | {naive_s:>8.2f} | {fast_s:>7.3f} | {naive_s / fast_s:>7.1f}x | {naive == fast}")


def fast_scaling(zh: str, en: str, sizes: list[int], vocab: int) -> None:
    print(f"\n2. fast trainer at vocab {vocab} as the text grows")
    print(f"{'characters':>10} | {'seconds':>7} | {'µs per char':>11} | {'x text':>6} | {'x time':>6}")
    first = None
    for chars in sizes:
        text = bilingual(zh, en, chars)
        took, _ = seconds(BPETokenizer.train, text, vocab)
        first = first or (chars, took)
        print(f"{chars:>10,} | {took:>7.2f} | {took / chars * 1e6:>11.2f} | {chars / first[0]:>6.1f} | {took / first[1]:>6.1f}")


def encode_throughput(text: str) -> None:
    print(f"\n3. encode throughput on the validation split ({len(text):,} characters)")
    print(f"{'tokenizer':>24} | {'seconds':>7} | {'chars/s':>10} | {'tokens':>9} | chars/token")
    tokenizers = {"course BPE (cold cache)": load_tokenizer()}
    model = find_reference_file("tokenizer.model", TOKENIZER_ENV_VAR)
    if model is not None:
        tokenizers["ChatGLM3 SentencePiece"] = ChatGLM3Tokenizer.from_file(model)
    for name, tok in tokenizers.items():
        took, ids = seconds(tok.encode, text)
        print(f"{name:>24} | {took:>7.2f} | {len(text) / took:>10,.0f} | {len(ids):>9,} | {len(text) / len(ids):.2f}")
    if model is None:
        print(f"(ChatGLM3's tokenizer.model not found; set {TOKENIZER_ENV_VAR} to compare)")


def long_pretoken(sizes: list[int], rescan_up_to: int) -> None:
    print("\n4. one long pre-token of Han characters (no punctuation): heap vs rescanning encoder")
    print(f"{'characters':>10} | {'rescan s':>8} | {'heap s':>7} | {'speed-up':>8} | {'heap µs/char':>12} | same ids")
    han = "".join(re.findall(r"[\u4e00-\u9fff]", load_corpus("val", "zh")))
    tokenizer = load_tokenizer()
    for chars in sizes:
        data = (han * (chars // len(han) + 1))[:chars].encode()
        heap_s, ids = seconds(tokenizer._encode_chunk, data)
        if chars <= rescan_up_to:
            rescan_s, reference = seconds(encode_chunk_by_rescanning, tokenizer.ranks, data)
            cells = f"{rescan_s:>8.2f} | {heap_s:>7.3f} | {rescan_s / heap_s:>7.0f}x"
            same = str(reference == ids)
        else:
            cells, same = f"{'-':>8} | {heap_s:>7.3f} | {'-':>8}", "-"
        print(f"{chars:>10,} | {cells} | {heap_s / chars * 1e6:>12.2f} | {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    zh, en = load_corpus("train", "zh"), load_corpus("train", "en")
    if args.quick:
        naive_vs_fast(zh, en, [10_000], 512)
        long_pretoken([1_000, 3_000], rescan_up_to=3_000)
        return
    naive_vs_fast(zh, en, [10_000, 20_000, 40_000], 512)
    total = len(zh) + len(en)
    sizes = [s for s in (250_000, 500_000, 1_000_000, 2_000_000, 4_000_000) if s < total] + [total]
    fast_scaling(zh, en, sizes, COURSE_VOCAB)
    encode_throughput(load_corpus("val"))
    long_pretoken([1_000, 3_000, 10_000, 100_000], rescan_up_to=10_000)


if __name__ == "__main__":
    main()
