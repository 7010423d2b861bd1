"""One offline evaluation harness for every model of lessons 08-11 (base, SFT, LoRA, P-Tuning, quantized).

Taught in lesson 08 (对话微调 Chat fine-tuning); lessons 09-11 reuse it. ``evaluate(model,
tokenizer)`` returns tidy rows (one per model x split x language) and ``format_table`` prints them:

- **bits per byte** of held-out text, per language and per genre: the validation stories of
  the pretraining corpus (``stories``: does fine-tuning make the model forget?) and the
  assistant replies of the validation dialogues given their prompts (``shop``). Bits per byte =
  total nats / ln 2 / UTF-8 bytes, so it compares models with different tokenizers;
- **fact accuracy** on ``val`` (seen phrasings, new slot values) and ``heldout`` (phrasings never
  trained on): greedy reply to the last user turn; correct when it contains every string of
  ``meta.expect`` *and* is in the question's language;
- **stop compliance**: the reply ended with a stop token (``</s>``, ``<|user|>``,
  ``<|observation|>``) before ``max_new_tokens``;
- **language match**: the reply is in ``meta.lang``: the question's language, or a translation's
  target language (share of CJK characters among the letters, see ``reply_language``);
- **ROUGE-L** F1 of translations against ``meta.reference`` (longest common subsequence over
  characters for Chinese, words for English; written here, it is short);
- **tool metrics** from ``glm3_teach.agent.tool_metrics`` for items with ``meta.expect_tool``.

``python -m glm3_teach.evaluate --model data/checkpoints/base --model data/checkpoints/chat``
prints the table (``--max-items`` subsamples each split evenly, for a quick look). A ``--model``
may be a LoRA or P-Tuning adapter folder (lesson 10): it is put on the base model it records
(``glm3_teach.peft.load_adapter``; ``--base FOLDER`` names another). ``--json FILE`` also
writes every graded reply, and for tool items the agent's whole run (query, calls,
observations, final reply; ``"kind": "tool"``), for failure analysis.

What it leaves out: sampling-based metrics (everything is greedy), LLM-as-judge, and human ratings.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from glm3_teach.chat_format import validate_history
from glm3_teach.generate import generate, stop_token_ids

GENERATION_SPLITS = ("val", "heldout")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


# --- small metrics ---------------------------------------------------------------------------


def reply_language(text: str) -> str | None:
    """``"zh"`` if most letters are CJK characters, ``"en"`` if most are Latin, None without letters.

    >>> reply_language("乌龙茶58元一两。"), reply_language("Oolong costs 58 yuan."), reply_language("58")
    ('zh', 'en', None)
    """
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    if cjk + latin == 0:
        return None
    # A Latin letter weighs a third of a character: "清泉茶铺 (Clear Spring)" is still Chinese.
    return "zh" if cjk >= latin / 3 else "en"


def rouge_tokens(text: str) -> list[str]:
    """Characters for Chinese, lower-cased words and numbers for everything else; punctuation dropped."""
    return re.findall(r"[\u3400-\u9fff\uf900-\ufaff]|[A-Za-z0-9]+", text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming over one row)."""
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of ``candidate`` against ``reference`` (0 when either has no tokens).

    >>> round(rouge_l("the cat sat", "the cat sat down"), 3)
    0.857
    """
    c, r = rouge_tokens(candidate), rouge_tokens(reference)
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


# --- bits per byte -----------------------------------------------------------------------------


@torch.no_grad()
def _sum_nats(model: torch.nn.Module, rows: Sequence[tuple[list[int], list[int]]], batch_size: int) -> float:
    """Total nats of the targets (``labels != -100``) of ``(ids, labels)`` rows, right-padded in batches."""
    from glm3_teach.losses import masked_next_token_loss

    device, total = next(model.parameters()).device, 0.0
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    for start in range(0, len(order), batch_size):
        chunk = [rows[i] for i in order[start:start + batch_size]]
        length = max(len(ids) for ids, _ in chunk)
        ids = torch.zeros(len(chunk), length, dtype=torch.long)                 # [b, length]; pad 0, never a target
        labels = torch.full((len(chunk), length), -100, dtype=torch.long)       # [b, length]
        for row, (row_ids, row_labels) in enumerate(chunk):
            ids[row, :len(row_ids)], labels[row, :len(row_labels)] = torch.tensor(row_ids), torch.tensor(row_labels)
        targets = int((labels[:, 1:] != -100).sum())
        if targets:
            loss = masked_next_token_loss(model(ids.to(device)).logits, labels.to(device))
            total += loss.item() * targets
    return total


def text_bits_per_byte(model: torch.nn.Module, tokenizer: Any, documents: Sequence[str], block_size: int = 256,
                       batch_size: int = 8) -> float:
    """Bits per UTF-8 byte of ``documents`` packed as in pretraining (``</s>`` after each, counted as 1 byte).

    Windows of ``block_size`` ids (at most the model's ``seq_length``) overlap by one id, so every
    id after the first is predicted exactly once.
    """
    block_size = min(block_size, model.config.seq_length)
    stream = [token for doc in documents for token in (*tokenizer.encode_ordinary(doc), tokenizer.eos_token_id)]
    blocks = [stream[start:start + block_size] for start in range(0, len(stream) - block_size + 1, block_size - 1)]
    if not blocks:
        raise ValueError(f"{len(documents)} documents hold fewer than {block_size} tokens; give more text")
    rows = [(block, [-100] + block[1:]) for block in blocks]
    targets = [t for block in blocks for t in block[1:]]
    return _sum_nats(model, rows, batch_size) / math.log(2) / _target_bytes(tokenizer, targets)


def _target_bytes(tokenizer: Any, ids: Sequence[int]) -> int:
    """UTF-8 bytes of the text of ``ids``, an eos / special token counting as one byte."""
    special = set(tokenizer.special_ids)
    ordinary = [i for i in ids if i not in special]
    return len(tokenizer.decode(ordinary).encode("utf-8")) + (len(ids) - len(ordinary))


def story_bits_per_byte(model: torch.nn.Module, tokenizer: Any, lang: str | None = None,
                        max_documents: int | None = 200) -> float:
    """Bits per byte of the pretraining corpus's validation stories (``max_documents`` evenly spaced)."""
    from glm3_teach.data import load_documents

    documents = load_documents("val", lang)
    step = 1 if max_documents is None else max(1, len(documents) // max_documents)
    return text_bits_per_byte(model, tokenizer, documents[::step][:max_documents])


def dialogue_bits_per_byte(model: torch.nn.Module, tokenizer: Any, items: Sequence[dict], batch_size: int = 8) -> float:
    """Bits per byte of the trained tokens (the assistant replies and the token after each) of SFT items."""
    from glm3_teach.sft import encode_conversation

    rows = [encode_conversation(item, tokenizer, where=f"item {i}") for i, item in enumerate(items)]
    rows = [(ids, labels) for ids, labels in rows if len(ids) <= model.config.seq_length]
    targets = [t for _, labels in rows for t in labels if t != -100]
    if not targets:
        raise ValueError("no item fits the model's seq_length or has a trained token")
    return _sum_nats(model, rows, batch_size) / math.log(2) / _target_bytes(tokenizer, targets)


# --- answering the last user turn --------------------------------------------------------------


def prompt_of(item: dict) -> tuple[list[dict], str]:
    """``(history, query)`` for an SFT item: every message before its last user turn, and that turn.

    The tools system message becomes ``{"role": "system", "content": TOOL_PROMPT, "tools": [...]}``,
    which ``build_chat_input`` renders with exactly the tokens fine-tuning saw.
    """
    from glm3_teach.sft import TOOL_PROMPT, message_segments, validate_item

    validate_item(item, "item")
    messages = item["conversations"]
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        raise ValueError("the item has no user message to answer")
    history = [{"role": "system", "content": TOOL_PROMPT, "tools": item["tools"]}] if "tools" in item else []
    if last_user:
        history += [{"role": role, "metadata": metadata, "content": content} for role, metadata, content, _
                    in message_segments({"conversations": messages[:last_user]})]
    return validate_history(history), messages[last_user]["content"]


@torch.no_grad()
def answer_items(model: torch.nn.Module, tokenizer: Any, items: Sequence[dict], max_new_tokens: int = 96,
                 batch_size: int = 16, progress: bool = True, desc: str = "answer") -> list[dict]:
    """Greedy replies to the last user turn of each item, batched (left padding), with their grades.

    Each result: ``reply``, ``stopped`` (a stop token came before ``max_new_tokens``), ``lang``,
    ``language_ok``, ``correct`` (None when ``meta.expect`` is empty), ``rouge_l`` (translations), ``meta``.
    """
    model.eval()
    prompts = [tokenizer.build_chat_input(query, history=history) for history, query in map(prompt_of, items)]
    results: list[dict | None] = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    stops = stop_token_ids(tokenizer)
    bar = tqdm(total=len(items), desc=desc, disable=not progress, mininterval=2.0)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        for index, new_ids in zip(chunk, _generate_batch(model, [prompts[i] for i in chunk], max_new_tokens, stops,
                                                         tokenizer.pad_token_id)):
            results[index] = grade_reply(tokenizer, new_ids, stops, items[index].get("meta", {}))
        bar.update(len(chunk))
    bar.close()
    return results


def _generate_batch(model, prompts: list[list[int]], max_new_tokens: int, stops: list[int], pad_id: int) -> list[list[int]]:
    """Greedy continuation of left-padded prompts; each row's new ids up to and including its first stop."""
    length = max(len(p) for p in prompts)
    room = min(max_new_tokens, model.config.seq_length - length)
    if room < 1:
        raise ValueError(f"a prompt of {length} tokens leaves no room in seq_length={model.config.seq_length}")
    ids = torch.tensor([[pad_id] * (length - len(p)) + p for p in prompts])              # [b, length]
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])        # [b, length]
    out = generate(model, ids, room, do_sample=False, eos_token_ids=stops, attention_mask=mask)[:, length:]
    rows = []
    for row in out.tolist():
        end = next((k for k, t in enumerate(row) if t in stops), None)
        rows.append(row if end is None else row[:end + 1])
    return rows


def grade_reply(tokenizer: Any, new_ids: list[int], stops: Sequence[int], meta: dict) -> dict:
    """The grades of one reply (see ``answer_items``)."""
    from glm3_teach.tools import process_response

    stopped = bool(new_ids) and new_ids[-1] in stops
    text = tokenizer.decode(new_ids[:-1] if stopped else new_ids)
    reply, _ = process_response(text, [])
    reply = reply if isinstance(reply, str) else json.dumps(reply, ensure_ascii=False)
    lang, want = reply_language(reply), meta.get("lang")  # the reply's language (a translation's target language)
    expect = meta.get("expect") or []
    result = {"reply": reply, "stopped": stopped, "stop_id": new_ids[-1] if stopped else None, "lang": lang,
              "language_ok": lang == want, "meta": meta,
              "correct": (lang == want and all(e in reply for e in expect)) if expect else None,
              "rouge_l": rouge_l(reply, meta["reference"]) if meta.get("reference") else None}
    return result


# --- the table -----------------------------------------------------------------------------------


def _mean(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(results: Sequence[dict], **labels: Any) -> dict:
    """One table row from graded replies: counts and rates (None where nothing was measured)."""
    return {**labels, "items": len(results),
            "fact_accuracy": _mean([r["correct"] for r in results]),
            "fact_items": sum(r["correct"] is not None for r in results),
            "stop_compliance": _mean([r["stopped"] for r in results]),
            "language_match": _mean([r["language_ok"] for r in results]),
            "rouge_l": _mean([r["rouge_l"] for r in results])}


def subsample(items: Sequence[dict], max_items: int | None) -> list[dict]:
    """At most ``max_items`` items, evenly spaced (deterministic); all of them for None."""
    if max_items is None or len(items) <= max_items:
        return list(items)
    step = len(items) / max_items
    return [items[int(k * step)] for k in range(max_items)]


def evaluate(model: torch.nn.Module, tokenizer: Any, name: str = "model", data: str | Path | None = None,
             max_items: int | None = None, max_new_tokens: int = 96, max_documents: int | None = 200,
             tools: bool = True, progress: bool = True, keep: list | None = None,
             tool_items: int | None = None) -> list[dict]:
    """Every metric of the module docstring as tidy rows ``{"model", "split", "lang", ...}``.

    ``data``: the SFT folder (default ``data/sft``); ``max_items``: per split, evenly spaced;
    ``max_documents``: validation stories per language for bits per byte; ``keep``: a list that
    receives every graded reply (``"kind": "reply"``) and every tool item's agent run
    (``"kind": "tool"``: ``agent.score_item``'s record, whose ``stopped`` is the agent's stop
    reason, None when it answered), for failure analysis; ``tool_items``: tool dialogues per split
    for ``agent.tool_metrics`` (default ``max_items``; each carries a 1,040-token system message).
    """
    from glm3_teach.dialogues import load_sft

    started, rows = time.time(), []
    for lang in ("zh", "en"):
        rows.append({"model": name, "split": "stories (val)", "lang": lang,
                     "bits_per_byte": story_bits_per_byte(model, tokenizer, lang, max_documents)})
    val_items = load_sft("val", data)
    for lang in ("zh", "en"):
        shop = subsample([i for i in val_items if i["meta"]["lang"] == lang and "tools" not in i], max_items)
        rows.append({"model": name, "split": "shop (val replies)", "lang": lang,
                     "bits_per_byte": dialogue_bits_per_byte(model, tokenizer, shop)})
    for split in GENERATION_SPLITS:
        items = subsample([i for i in load_sft(split, data) if "tools" not in i], max_items)
        results = answer_items(model, tokenizer, items, max_new_tokens, progress=progress, desc=f"{name} {split}")
        if keep is not None:
            keep.extend({**r, "split": split, "model": name, "kind": "reply"} for r in results)
        for lang in ("zh", "en", "all"):
            chosen = [r for r in results if lang == "all" or r["meta"]["lang"] == lang]
            rows.append(summarize(chosen, model=name, split=split, lang=lang))
        if tools:
            rows += _tool_rows(model, tokenizer, name, split, data, max_items if tool_items is None else tool_items,
                               keep)
    for row in rows:
        row["minutes"] = round((time.time() - started) / 60, 2)
    return rows


def _tool_rows(model, tokenizer, name: str, split: str, data, max_items: int | None,
               keep: list | None = None) -> list[dict]:
    """``agent.tool_metrics`` on the split's tool items, when lesson 09's agent exists; each item's
    agent run goes into ``keep``."""
    try:
        from glm3_teach.agent import tool_metrics
    except ImportError:
        return []
    from glm3_teach.dialogues import load_sft
    from glm3_teach.tools import tools_system_message

    items = subsample([i for i in load_sft(split, data) if "tools" in i], max_items)
    if not items:
        return []
    prompt = tokenizer.build_chat_input("", history=[tools_system_message(items[0]["tools"])], role="user")
    if len(prompt) >= model.config.seq_length:   # e.g. the base model: 256 positions, a 1,070-token prompt
        return [{"model": name, "split": f"{split} tools", "lang": "all", "items": 0,
                 "skipped": f"tools prompt {len(prompt)} tokens > seq_length {model.config.seq_length}"}]
    metrics = tool_metrics(model, tokenizer, items, return_results=True)
    results = metrics.pop("results")
    if keep is not None:
        keep.extend({**r, "split": f"{split} tools", "model": name, "kind": "tool"} for r in results)
    return [{"model": name, "split": f"{split} tools", "lang": "all", "items": len(items), **metrics}]


COLUMNS = ("model", "split", "lang", "items", "fact_accuracy", "stop_compliance", "language_match", "rouge_l",
           "bits_per_byte")


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows``; rates as percentages, missing values blank."""
    columns = list(columns or COLUMNS) + sorted({k for r in rows for k in r} - set(COLUMNS) - {"minutes", "fact_items"}
                                                if columns is None else set())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c, row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if column == "bits_per_byte":
        return f"{value:.4f}"
    if column == "rouge_l":
        return f"{value:.3f}"
    return f"{100 * value:.1f}%" if 0 <= value <= 1 else f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a checkpoint folder, or a LoRA / P-Tuning adapter folder (repeat to compare)")
    parser.add_argument("--base", default=None, help="the base checkpoint of the adapter folders among --model "
                        "(default: the one each adapter records)")
    parser.add_argument("--data", default=None, help="the SFT folder (default data/sft)")
    parser.add_argument("--max-items", type=int, default=None, help="items per split, evenly spaced (default all)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--max-documents", type=int, default=200, help="validation stories per language")
    parser.add_argument("--no-tools", action="store_true", help="skip agent.tool_metrics")
    parser.add_argument("--tool-items", type=int, default=None, help="tool dialogues per split (default --max-items)")
    parser.add_argument("--json", default=None, help="also write the rows (and every reply) to this JSON file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--record", default=None, help="a checkpoint folder made by glm3_teach.sft: write "
                        "evaluation.json there and put the table into its README")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, replies = [], []
    loaders = [_loader(parser, folder, args.base) for folder in args.model]  # every folder checked before any work
    for folder, load in zip(args.model, loaders):
        model, tokenizer = load()
        rows += evaluate(model, tokenizer, Path(folder).name, args.data, args.max_items,
                         args.max_new_tokens, args.max_documents, not args.no_tools, keep=replies,
                         tool_items=args.tool_items)
    table = format_table(rows)
    print(table)
    command = "python -m glm3_teach.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command, "rows": rows, "replies": replies}
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.record:
        write_into_record(Path(args.record), result, table)
    return 0


def _loader(parser: argparse.ArgumentParser, folder: str, base: str | None) -> Any:
    """A function giving ``(model, tokenizer)`` of a ``--model`` folder: a checkpoint, or an adapter on its base.

    Bad folders stop the command here (one line, exit 2). An adapter folder's tokenizer is
    the one saved beside it, else the base model's.
    """
    from glm3_teach.checkpoint import adapter_kind, load_pretrained, recover_folder
    from glm3_teach.tokenizer import load_tokenizer

    if adapter_kind(recover_folder(Path(folder))) is None:    # (a save killed mid-swap is finished first)
        if not Path(folder, "config.json").is_file():
            parser.error(f"{folder} is not a checkpoint folder (it has no config.json) nor a LoRA / P-Tuning "
                         f"adapter folder (adapter_config.json + adapter_model.safetensors)")
        return lambda: (load_pretrained(folder, dtype=torch.float32), load_tokenizer(folder))
    from glm3_teach import peft

    try:
        base_folder = Path(base) if base is not None else peft.adapter_base(folder)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    if not base_folder.is_dir():
        parser.error(f"--base {base_folder} is not a folder; name the checkpoint the adapter {folder} was trained on")
    has_tokenizer = any(Path(folder, name).is_file() for name in ("tokenizer.json", "tokenizer.model"))
    return lambda: (peft.load_adapter(folder, base=base_folder, dtype=torch.float32, merge=True),
                    load_tokenizer(folder if has_tokenizer else base_folder))


def write_into_record(folder: Path, result: dict, table: str) -> None:
    """``evaluation.json`` in a fine-tuned checkpoint folder, and the table in its README."""
    from glm3_teach.sft import readme_text

    (folder / "evaluation.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    record_file = folder / "training.json"
    if record_file.is_file():
        record = json.loads(record_file.read_text(encoding="utf-8"))
        minutes = max((r.get("minutes", 0) for r in result["rows"]), default=0)
        record["evaluation_markdown"] = (f"## Evaluation (greedy, `glm3_teach.evaluate`)\n\n```bash\n{result['command']}\n```\n\n"
                                         f"{table}\n\nEvery reply is in `evaluation.json`. The last model's pass "
                                         f"took {minutes:.1f} min.\n")
        record_file.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / "README.md").write_text(readme_text(record), encoding="utf-8")


if __name__ == "__main__":
    from glm3_teach.errors import cli_main

    raise SystemExit(cli_main("python -m glm3_teach.evaluate", main))
