"""Sentence helpers in both languages: names joined with 和 / "and", pronouns, quotes, capitals, full stops.

Part of ``glm3_teach.stories`` (the corpus of lessons 00, 01 and 06): every line of dialogue in
a story is written with ``say`` or ``quote`` (小明说：“……” / Xiaoming said, "...").

What it leaves out: pronoun forms beyond he/him/his, tenses (the stories narrate in a simple
past and speak in the present).
"""

from __future__ import annotations

import random

from glm3_teach.stories.world import Character, Pair


def full_stop(text: str) -> str:
    """End an English sentence with one full stop, even after "a.m." or "p.m."."""
    return text if text.endswith(".") else text + "."


def cap(text: str) -> str:
    """Capitalise the first letter of an English sentence: "three cats" -> "Three cats"."""
    return text[:1].upper() + text[1:]


def name(who: Character | tuple, lang: str) -> str:
    """A name, or several joined: (小明, 小红, 乐乐) -> 小明、小红和乐乐 / Xiaoming, Xiaohong and Lele."""
    people = who if isinstance(who, tuple) else (who,)
    words = [p.zh if lang == "zh" else p.en for p in people]
    if len(words) == 1:
        return words[0]
    return ("、" if lang == "zh" else ", ").join(words[:-1]) + ("和" if lang == "zh" else " and ") + words[-1]


def he(who: Character | tuple, lang: str) -> str:
    """Subject pronoun: 他 / 她 / 它 (animals) / 他们 / 她们 / 它们; he / she / they."""
    if isinstance(who, tuple) and len(who) > 1:
        if lang == "en":
            return "they"
        if all(p.kind == "animal" for p in who):
            return "它们"
        return "她们" if all(p.gender == "f" for p in who) else "他们"
    person = who[0] if isinstance(who, tuple) else who
    if lang == "en":
        return "he" if person.gender == "m" else "she"
    return "它" if person.kind == "animal" else "他" if person.gender == "m" else "她"


def him(who: Character | tuple, lang: str) -> str:
    """Object pronoun: him / her / them (Chinese uses the subject form)."""
    if lang == "zh":
        return he(who, lang)
    return {"he": "him", "she": "her", "they": "them"}[he(who, lang)]


def his(who: Character | tuple, lang: str) -> str:
    """Possessive: 他的 / 她的 / 它的; his / her / their."""
    if lang == "zh":
        return he(who, lang) + "的"
    return {"he": "his", "she": "her", "they": "their"}[he(who, lang)]


def zh_quote(speaker: str, verb: str, line: str, rng: random.Random) -> str:
    """Chinese dialogue: 小明说：“我们走吧。” or “我们走吧，”小明说。"""
    if line[-1] == "。" and rng.random() < 0.35:
        return f"“{line[:-1]}，”{speaker}{verb}。"
    return f"{speaker}{verb}：“{line}”"


def en_quote(speaker: str, verb: str, line: str, rng: random.Random) -> str:
    """English dialogue: Xiaoming said, "Let's go." or "Let's go," said Xiaoming."""
    if rng.random() < 0.4:
        inner = line[:-1] + "," if line[-1] == "." else line
        return f'"{inner}" {verb} {speaker}.'
    return f'{speaker} {verb}, "{line}"'


# The verbs that introduce a quote, in both languages.
SAY = {"say": Pair("说", "said"), "ask": Pair("问", "asked"), "answer": Pair("回答", "answered")}


def say(speaker: Character, verb: str, line: str, lang: str, rng: random.Random) -> str:
    """One line of dialogue already in ``lang``; ``verb`` is a key of SAY."""
    if lang == "zh":
        return zh_quote(speaker.zh, SAY[verb].zh, line, rng)
    return en_quote(speaker.en, SAY[verb].en, line, rng)


def quote(speaker: Character, verb: str, line: Pair, lang: str, rng: random.Random) -> str:
    """One line of dialogue given in both languages (a Pair); the one in ``lang`` is spoken."""
    return say(speaker, verb, line.zh if lang == "zh" else line.en, lang, rng)
