"""Copying from the context: the induction-head test and the synthetic text that teaches it.

Taught in lesson 09 (工具调用 Tool calling, its failure analysis). A tool call has to repeat
what the customer wrote (``check_order(order_id='K4821')`` for "我的订单K4821到哪了？"), and an
order id never seen in training can only be *copied*: no amount of memorising gives it. A
model copies with an induction head (Olsson et al., 2022, "In-context learning and induction
heads"): one head finds the earlier place where the current token appeared, another reads the
token that followed it there. The course's small story world can be memorised, so pretraining
never needs that circuit and the base models do not form it.

- ``repeat_losses`` measures it: a random string, a space, the same string again. From the
  second character on, a model that copies knows the second copy, so its loss there falls far
  below the first copy's; a model that does not copy pays as much twice.
- ``copy_blocks`` makes training text in which nothing but copying helps: lines of a random
  string, a space and the same string, half of them drawn from the characters of order ids and
  half from the whole ordinary vocabulary (so the skill is not tied to ids). Mixed into
  fine-tuning (``[sft] copy_blocks``, or ``tools_copy_blocks`` after the tools message), they
  are trained on the second copies only.
- ``recall_blocks`` teaches what induction cannot: an id somewhere in random text, then
  ``order_id='`` and the id (``[sft] tools_recall_blocks``; other cues, such as the answer's
  "您的订单" and "Your order", with ``[sft] recall_cues``). After the quote nothing earlier
  matches, so the id's first character must be *found*, not continued.

What it leaves out: induction over paraphrases (fuzzy copying) and the mechanistic analysis
(which head attends where), which the attention viewer (lesson 03) can show.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

# The characters of an order id: one capital letter, then digits, as
# glm3_teach.dialogues.tool_dialogues.draw_order_id makes them (it never draws I or O). Each is one
# token of the course tokenizer.
ID_LETTERS, ID_DIGITS = "ABCDEFGHJKLMNPQRSTUVWXYZ", "0123456789"
ID_CHARACTERS = ID_LETTERS + ID_DIGITS


def single_character_ids(tokenizer: Any, characters: str = ID_CHARACTERS) -> list[int]:
    """The token id of each character; raises if a character is not one token."""
    ids = [tokenizer.encode_ordinary(c) for c in characters]
    several = [c for c, i in zip(characters, ids) if len(i) != 1]
    if several:
        raise ValueError(f"characters {several} are not single tokens of this tokenizer")
    return [i[0] for i in ids]


def _check_sizes(function: str, **values: Any) -> None:
    """One clear message for a count below 0 or any other size below 1."""
    for name, value in values.items():
        least = 0 if name == "count" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{function} {name} must be a {'non-negative' if least == 0 else 'positive'} "
                             f"int, got {value!r}")


def repeat_losses(model: torch.nn.Module, tokenizer: Any, count: int = 20, length: int = 16,
                  seed: int = 0) -> tuple[float, float]:
    """Mean loss (nats/token) on characters 2.. of the first and of the second copy of ``count``
    random id-character strings of ``length`` (each string, a space, the string again).

    The first character of either copy follows something the string never showed, so no model
    can copy it; from the second character on a copying model knows what comes next.
    """
    alphabet = single_character_ids(tokenizer)
    space = tokenizer.encode_ordinary(" ")
    generator = torch.Generator().manual_seed(seed)   # its own generator: a rerun draws the same strings
    first, second = [], []
    was_training = model.training
    model.eval()
    for _ in range(count):
        string = [alphabet[i] for i in torch.randint(len(alphabet), (length,), generator=generator).tolist()]
        ids = torch.tensor([string + space + string])                              # [1, 2 * length + 1]
        with torch.no_grad():
            logits = model(ids).logits[0].float()                                  # [2 * length + 1, vocab]
        losses = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="none")  # token t + 1
        first.append(losses[:length - 1].mean().item())                            # characters 2.. of copy 1
        second.append(losses[length + len(space):].mean().item())                  # characters 2.. of copy 2
    model.train(was_training)
    return sum(first) / count, sum(second) / count


def copy_blocks(tokenizer: Any, count: int, block_size: int, seed: int, min_length: int = 4,
                max_length: int = 24) -> list[tuple[list[int], list[bool]]]:
    """``count`` blocks ``(ids, targets)`` of ``block_size`` ids: lines of ``string + " " + string + "\\n"``.

    ``targets[i]`` is True where ``ids[i]`` can be copied: the second string and its line break.
    The first string is random, so it is never a target (training on it would only teach that
    any token may come next). Each string has ``min_length``..``max_length`` tokens, drawn with one
    seeded generator either from the id characters or, every other string on average, from the
    whole ordinary vocabulary. The last line is cut at ``block_size``.
    """
    _check_sizes("copy_blocks", count=count, block_size=block_size, min_length=min_length, max_length=max_length)
    if min_length > max_length:
        raise ValueError(f"copy_blocks min_length={min_length} is above max_length={max_length}")
    ids_alphabet = torch.tensor(single_character_ids(tokenizer))
    space, newline = tokenizer.encode_ordinary(" "), tokenizer.encode_ordinary("\n")
    generator = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(count):
        ids: list[int] = []
        targets: list[bool] = []
        while len(ids) < block_size:
            length = int(torch.randint(min_length, max_length + 1, (1,), generator=generator))
            if torch.rand(1, generator=generator).item() < 0.5:
                string = ids_alphabet[torch.randint(len(ids_alphabet), (length,), generator=generator)].tolist()
            else:
                string = torch.randint(tokenizer.ordinary_vocab_size, (length,), generator=generator).tolist()
            ids += [*string, *space, *string, *newline]
            targets += [False] * (length + len(space)) + [True] * (length + len(newline))
        blocks.append((ids[:block_size], targets[:block_size]))
    return blocks


def recall_blocks(tokenizer: Any, count: int, block_size: int, seed: int,
                  cues: Sequence[str] = ("order_id='{id}'",)) -> list[tuple[list[int], list[bool]]]:
    """``count`` blocks ``(ids, targets)`` that teach finding an id in the context and writing it after a cue.

    Induction copies the token that *followed* the current one earlier, so it cannot give an
    id's first character after ``order_id='`` (the question never showed a quote before it).
    Each line here is random ordinary tokens with an id (a capital letter and four digits, as
    ``draw_order_id`` makes them, sometimes after a space as in "单号 K9736") somewhere
    inside, then a line break and one of ``cues`` with the id in place of ``{id}``: the text
    before ``{id}`` is read, the id and what follows it are the targets. With several cues each
    line draws one (a cue listed twice comes twice as often); ``"订单{id}"`` and
    ``" order {id}"`` are how the shop's answers name an order.
    """
    _check_sizes("recall_blocks", count=count, block_size=block_size)
    cue_ids = {cue: _cue_ids(tokenizer, cue) for cue in cues}
    letters, digits = single_character_ids(tokenizer, ID_LETTERS), single_character_ids(tokenizer, ID_DIGITS)
    newline = tokenizer.encode_ordinary("\n")
    generator = torch.Generator().manual_seed(seed)

    def draw(options: list[int], n: int) -> list[int]:
        return [options[i] for i in torch.randint(len(options), (n,), generator=generator).tolist()]

    blocks = []
    for _ in range(count):
        ids: list[int] = []
        targets: list[bool] = []
        while len(ids) < block_size:
            letter, number = draw(letters, 1), draw(digits, 4)
            order_id = tokenizer.decode(letter + number)
            spaced = torch.rand(1, generator=generator).item() < 0.5
            shown = tokenizer.encode_ordinary(" " + order_id) if spaced else letter + number
            before, after = (int(n) for n in torch.randint(0, 24, (2,), generator=generator))
            filler = torch.randint(tokenizer.ordinary_vocab_size, (before + after,), generator=generator).tolist()
            # one cue draws nothing, so the default blocks are those of the single-cue version
            cue = cues[int(torch.randint(len(cues), (1,), generator=generator))] if len(cues) > 1 else cues[0]
            answer = _answer_ids(tokenizer, cue, cue_ids[cue], order_id)
            context = [*filler[:before], *shown, *filler[before:], *newline, *cue_ids[cue]]
            ids += context + answer + newline
            targets += [False] * len(context) + [True] * (len(answer) + len(newline))
        blocks.append((ids[:block_size], targets[:block_size]))
    return blocks


def _cue_ids(tokenizer: Any, cue: str) -> list[int]:
    """The ids of the text before ``{id}`` in ``cue`` (a space just before the id belongs to the id)."""
    if not isinstance(cue, str) or cue.count("{id}") != 1:
        raise ValueError(f"recall_blocks cues must be strings holding '{{id}}' once, got {cue!r}")
    return tokenizer.encode_ordinary(cue.split("{id}")[0].removesuffix(" "))


def _answer_ids(tokenizer: Any, cue: str, cue_ids: list[int], order_id: str) -> list[int]:
    """The ids after ``cue_ids`` of ``cue`` written with ``order_id``: the id and the rest of the cue."""
    ids = tokenizer.encode_ordinary(cue.replace("{id}", order_id))
    if ids[:len(cue_ids)] != cue_ids:
        raise ValueError(f"recall_blocks cue {cue!r}: the tokenizer merges its text with the id {order_id}; "
                         "end the text before {id} where a token ends (a space or punctuation)")
    return ids[len(cue_ids):]
