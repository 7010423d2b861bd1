"""The corpus: numbered stories, split into train and val, written to four text files and a README.

``python -m glm3_teach.stories --seed 3 --out data/corpus`` (``main``) writes the files that
lesson 00 shows, lesson 01 trains the tokenizer on and lesson 06 pretrains the model on;
``glm3_teach.data`` reads them. Each story has three random streams (``story_rng``: plan, zh,
en), each a ``random.Random`` seeded from a SHA-256 of the seed, the story's number and the
stream's name, so the files are reproduced byte for byte on every machine. Lesson 08's
dialogue generator draws its streams with the same ``stable_rng`` and writes the same
provenance lines into its README (``provenance_lines``).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import time
from pathlib import Path

from glm3_teach.paths import data_dir
from glm3_teach.stories.events import StoryPlan, render_story
from glm3_teach.stories.plans import plan_story
from glm3_teach.stories.world import LANGS

COURSE_SEED = 3  # the seed of the committed corpus (3 as in ChatGLM3)
GENERATOR_VERSION = "1.0"  # bump whenever the same seed would give different text
SPLITS = ("train", "val")
MIN_TRAIN = 1_000_000  # Han characters in train.zh and English letters in train.en, at least
MIN_VAL = 100_000  # the same for val
VAL_PERCENT = 10  # about this share of the stories goes to the validation split

HAN = re.compile(r"[\u4e00-\u9fff]")
LETTER = re.compile(r"[A-Za-z]")
# Where sentences end; "Mr." / "Ms." and "a.m." / "p.m." inside a sentence do not end one.
SENTENCE_END = {"zh": re.compile(r"(?<=[。！？])|\n"),
                "en": re.compile(r"(?<!Mr\.)(?<!Ms\.)(?<!\.m\.)(?<=[.!?])\s+(?=[A-Z\"])|(?<=[.!?]\")\s+|\n")}


def stable_rng(*names: object) -> random.Random:
    """A random stream named by ``names``, seeded from a SHA-256 of "name/name/...": the same on every machine.

    ``stable_rng(3, 17, "zh")`` is story 17's Chinese stream; the dialogue generator names its
    items the same way (seed, split, intent, language, number). No ``hash()`` of strings, which
    changes from one Python process to the next.
    """
    digest = hashlib.sha256("/".join(str(n) for n in names).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def stable_bucket(key: str, buckets: int) -> int:
    """Which of ``buckets`` a string falls in, by a SHA-256 of it: a split rule that needs no stored list."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % buckets


def story_rng(seed: int, index: int, stream: str) -> random.Random:
    """The random stream ``stream`` ("plan", "zh", "en") of story ``index``, from a SHA-256 of all three."""
    return stable_rng(seed, index, stream)


def generate_story(seed: int, index: int) -> tuple[StoryPlan, str, str]:
    """Story number ``index`` of the corpus made with ``seed``: its plan, its Chinese and its English."""
    plan = plan_story(story_rng(seed, index, "plan"))
    return plan, render_story(plan, "zh", story_rng(seed, index, "zh")), render_story(plan, "en", story_rng(seed, index, "en"))


def split_of(seed: int, index: int) -> str:
    """"val" for about VAL_PERCENT % of story numbers, chosen by a hash, else "train"."""
    return "val" if stable_bucket(f"{seed}/{index}/split", 100) < VAL_PERCENT else "train"


def size_of(text: str, lang: str) -> int:
    """What the size targets count: Han characters in Chinese, letters A-Z a-z in English."""
    return len((HAN if lang == "zh" else LETTER).findall(text))


def generate_corpus(seed: int = COURSE_SEED, min_train: int = MIN_TRAIN, min_val: int = MIN_VAL) -> dict:
    """Stories 0, 1, 2, ... until both splits reach their size in both languages.

    Returns {"train": {"zh": [...], "en": [...]}, "val": {...}, "stories": n, "duplicates": d}.
    A story whose Chinese or English text already appeared is skipped (short plans can come out
    the same), so no document occurs twice and no validation story is also a training story.
    """
    docs = {split: {lang: [] for lang in LANGS} for split in SPLITS}
    sizes = {split: {lang: 0 for lang in LANGS} for split in SPLITS}
    goal = {"train": min_train, "val": min_val}
    seen, duplicates, index = {"zh": set(), "en": set()}, 0, 0
    while any(sizes[s][lang] < goal[s] for s in SPLITS for lang in LANGS):
        _, zh, en = generate_story(seed, index)
        split = split_of(seed, index)
        index += 1
        if zh in seen["zh"] or en in seen["en"]:
            duplicates += 1
            continue
        seen["zh"].add(zh)
        seen["en"].add(en)
        for lang, text in (("zh", zh), ("en", en)):
            docs[split][lang].append(text)
            sizes[split][lang] += size_of(text, lang)
    return {**docs, "stories": index, "duplicates": duplicates}


def corpus_text(documents: list[str]) -> str:
    """The file format: documents separated by one blank line, ending with a newline."""
    return "\n\n".join(documents) + "\n"


def corpus_figures(corpus: dict) -> dict:
    """Documents, Han characters, letters, bytes, distinct characters and words, per split and language."""
    figures = {}
    for split in SPLITS:
        for lang in LANGS:
            text = corpus_text(corpus[split][lang])
            distinct = set(HAN.findall(text)) if lang == "zh" else set(re.findall(r"[A-Za-z]+(?:['-][A-Za-z]+)*", text.lower()))
            figures[split, lang] = {"documents": len(corpus[split][lang]), "size": size_of(text, lang),
                                    "bytes": len(text.encode("utf-8")), "distinct": len(distinct)}
    return figures


def seen_in_train(corpus: dict, lang: str) -> float:
    """The share of validation sentences that also occur, word for word, somewhere in train.

    Every document is new, but short sentences ("小明很开心。") recur; this says how much of the
    validation text a model could have memorised rather than composed.
    """
    def sentences(docs: list[str]) -> list[str]:
        return [s for doc in docs for s in SENTENCE_END[lang].split(doc) if s.strip()]

    train = set(sentences(corpus["train"][lang]))
    val = sentences(corpus["val"][lang])
    return sum(s in train for s in val) / len(val)


def provenance_lines(command: str, seed: int, version: str) -> list[str]:
    """The "How it was made" section a generated data set's README opens with: command, seed, version."""
    return ["## How it was made", "", "```bash", command, "```", "", f"- seed: {seed}", f"- generator version: {version}"]


def _readme(seed: int, command: str, seconds: float, corpus: dict, figures: dict) -> str:
    rows = [f"| {split} | {lang} | {split}.{lang}.txt | {f['documents']:,} | {f['size']:,} | {f['bytes']:,} | {f['distinct']:,} |"
            for (split, lang), f in figures.items()]
    sample = next(i for i, doc in enumerate(corpus["train"]["zh"]) if len(doc) < 140 and "“" in doc)
    total_bytes = sum(f["bytes"] for f in figures.values())
    return "\n".join([
        "# The course corpus (生成的双语故事)",
        "",
        "Simple stories in the TinyStories spirit, written by the course's own generator",
        "(`glm3_teach/stories/`): each story is planned once and rendered in Chinese and in English,",
        "so document *k* of `train.zh.txt` is a translation of document *k* of `train.en.txt`",
        "(the same holds for `val`). Documents are separated by one blank line. Read them with",
        "`glm3_teach.data.load_documents(split, lang)` or `load_corpus(split, lang)`.",
        "",
        "Do not edit these files by hand: `tests/test_stories.py` regenerates them and compares them byte for byte.",
        "",
        *provenance_lines(command, seed, GENERATOR_VERSION),
        f"- stories generated: {corpus['stories']:,} ({corpus['duplicates']:,} exact "
        f"{'repeat' if corpus['duplicates'] == 1 else 'repeats'} skipped)",
        f"- split: story *i* goes to `val` when a SHA-256 of the seed and *i* falls in the lowest {VAL_PERCENT}%",
        f"- wall time: {seconds:.1f} s on one CPU core (generation and writing)",
        "",
        "## Figures",
        "",
        "Size is Han characters (U+4E00 to U+9FFF) for Chinese and letters A-Z, a-z for English;",
        "distinct counts Chinese characters or lower-cased English words.",
        "",
        "| split | lang | file | documents | size | bytes | distinct |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"All four files together: {total_bytes:,} bytes. Every document is different, but short sentences recur:",
        f"{seen_in_train(corpus, 'zh'):.0%} of the Chinese and {seen_in_train(corpus, 'en'):.0%} of the English validation",
        "sentences also occur word for word in train (names, numbers and the order of events make the rest new).",
        "",
        "## A sample (training document " + str(sample) + ")",
        "",
        *[f"> {line}" for line in corpus["train"]["zh"][sample].split("\n")],
        "",
        *[f"> {line}" for line in corpus["train"]["en"][sample].split("\n")],
        "",
    ])


def write_corpus(out: Path, seed: int = COURSE_SEED, command: str | None = None) -> dict:
    """Generate the corpus, write the four text files and README.md into ``out``; return the figures."""
    start = time.perf_counter()
    corpus = generate_corpus(seed)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for lang in LANGS:
            (out / f"{split}.{lang}.txt").write_bytes(corpus_text(corpus[split][lang]).encode("utf-8"))
    seconds = time.perf_counter() - start
    figures = corpus_figures(corpus)
    command = command or f"python -m glm3_teach.stories --seed {seed} --out {out}"
    (out / "README.md").write_text(_readme(seed, command, seconds, corpus, figures), encoding="utf-8")
    return {"figures": figures, "seconds": seconds, "stories": corpus["stories"], "duplicates": corpus["duplicates"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.stories",
                                     description="Write the course's bilingual story corpus (train/val, zh/en) and its README.")
    parser.add_argument("--seed", type=int, default=COURSE_SEED, help=f"random seed (default: the course seed, {COURSE_SEED})")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data_dir()/corpus)")
    args = parser.parse_args(argv)
    from glm3_teach.errors import cli_main

    cli_main(parser.prog, lambda: _write_and_report(args))


def _write_and_report(args: argparse.Namespace) -> None:
    out = args.out or data_dir() / "corpus"
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the corpus files")
    shown = args.out if args.out is not None else Path("data/corpus")
    result = write_corpus(out, args.seed, command=f"python -m glm3_teach.stories --seed {args.seed} --out {shown}")
    for (split, lang), f in result["figures"].items():
        unit = "Han characters" if lang == "zh" else "English letters"
        print(f"{split:>5}.{lang}: {f['documents']:>6,} documents  {f['size']:>10,} {unit:<15}  {f['bytes']:>10,} bytes")
    print(f"{result['stories']:,} stories ({result['duplicates']:,} skipped as exact repeats) written to {out} "
          f"in {result['seconds']:.1f} s")

