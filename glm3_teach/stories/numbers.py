"""Numbers in words, in both languages: counts with measure words and plurals, clock times, prices, baskets.

Part of ``glm3_teach.stories`` (the corpus of lessons 00, 01 and 06): 三只鸭子 / three ducks,
下午两点半 / half past two in the afternoon, 两罐乌龙茶 / two tins of oolong tea. Lesson 08's
dialogue generator (``glm3_teach.dialogues``) writes its shop hours, baskets, stock answers and
prices with the same functions.

What it leaves out: numbers from 100 up in words (amounts of money are written in digits),
ordinals, fractions, the 24-hour clock in speech.
"""

from __future__ import annotations

import random

from glm3_teach.stories.shop import Product
from glm3_teach.stories.world import Noun

_ZH_DIGITS = "零一二三四五六七八九"
_EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen").split()
_EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def zh_number(n: int) -> str:
    """Chinese numeral for 0..99: 7 -> 七, 10 -> 十, 12 -> 十二, 20 -> 二十, 35 -> 三十五."""
    if not 0 <= n <= 99:
        raise ValueError(f"zh_number handles 0..99, got {n}; write larger amounts in digits")
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + (_ZH_DIGITS[ones] if ones else "")


def zh_count(n: int, thing: Noun | Product | None = None, measure: str | None = None) -> str:
    """A Chinese count with its measure word; 2 is 两 before a measure word.

    ``zh_count(2, apple)`` -> 两个苹果, ``zh_count(3, measure="杯")`` -> 三杯 (no noun),
    ``zh_count(2, measure="分钟")`` -> 两分钟.
    """
    number = "两" if n == 2 else zh_number(n)
    return f"{number}{thing.measure if measure is None else measure}{thing.zh if thing else ''}"


def en_number(n: int) -> str:
    """English number word for 0..99: 7 -> seven, 21 -> twenty-one."""
    if not 0 <= n <= 99:
        raise ValueError(f"en_number handles 0..99, got {n}; write larger amounts in digits")
    if n < 20:
        return _EN_ONES[n]
    tens, ones = divmod(n, 10)
    return _EN_TENS[tens] + (f"-{_EN_ONES[ones]}" if ones else "")


def a_or_an(phrase: str) -> str:
    """``a_or_an("orange ball")`` -> "an orange ball" (by the first letter; no word here needs more)."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def en_unit(thing: Noun | Product, n: int = 1) -> str:
    """What an English count counts: a tea's container (tin / tins, cake), else the thing (teapot / teapots, cats)."""
    unit = getattr(thing, "unit_en", None)
    if unit:
        return unit if n == 1 else thing.unit_en_plural
    return thing.en if n == 1 else thing.en_plural


def en_things(thing: Noun | Product, n: int) -> str:
    """``n`` of ``thing`` without the number: (2, oolong) -> "tins of oolong tea", (2, teapot) -> "teapots"."""
    return f"{en_unit(thing, n)} of {thing.en}" if getattr(thing, "unit_en", None) else en_unit(thing, n)


def en_counted(n: int, words: str, article: bool = False) -> str:
    """A number before words already in the right form: (2, "tins of oolong") -> "two tins of oolong";
    (1, "teacup") -> "one teacup", or "a teacup" with ``article``."""
    return a_or_an(words) if n == 1 and article else f"{en_number(n)} {words}"


def en_count(n: int, thing: Noun | Product, article: bool = False) -> str:
    """English count: (3, cat) -> "three cats"; (1, cat) -> "one cat", or "a cat" with ``article``.

    A tea counts its containers: (2, oolong) -> "two tins of oolong tea".
    """
    return en_counted(n, en_things(thing, n), article)


def zh_clock(hour: int, minute: int = 0, digits: bool = False) -> str:
    """Spoken Chinese time: (9, 0) -> 上午九点, (14, 30) -> 下午两点半, (21, 0) -> 晚上九点.

    With ``digits`` the hour is written as a shop writes it: (21, 0) -> 晚上9点.
    """
    period = "早上" if hour < 9 else "上午" if hour < 12 else "中午" if hour == 12 else \
        "下午" if hour < 18 else "傍晚" if hour == 18 else "晚上"
    h12 = hour if hour <= 12 else hour - 12
    number = str(h12) if digits else "两" if h12 == 2 else zh_number(h12)
    return f"{period}{number}点" + ("半" if minute == 30 else "")


def en_clock(hour: int, minute: int = 0, spoken: bool = True) -> str:
    """English time: (14, 30) -> "half past two in the afternoon", or "2:30 p.m." when not spoken."""
    h12 = hour if hour <= 12 else hour - 12
    if not spoken:
        suffix = "a.m." if hour < 12 else "p.m."
        return f"{h12} {suffix}" if minute == 0 else f"{h12}:{minute:02d} {suffix}"
    if hour == 12 and minute == 0:
        return "twelve noon"
    period = "in the morning" if hour < 12 else "in the afternoon" if hour < 18 else "in the evening"
    words = f"{en_number(h12)} o'clock" if minute == 0 else f"half past {en_number(h12)}"
    return f"{words} {period}"


def yuan(amount: int, lang: str, rng: random.Random | None = None, spoken: bool = False) -> str:
    """A price: 48元 (48块钱 now and then when ``spoken``, drawn from ``rng``) / 48 yuan; always in digits."""
    if lang == "en":
        return f"{amount} yuan"
    return f"{amount}块钱" if spoken and rng.random() < 0.3 else f"{amount}元"


def come_to(basket: tuple) -> str:
    """The verb after a basket: "a tin of green tea comes to", "two tins ... come to"."""
    return "comes to" if len(basket) == 1 and basket[0][1] == 1 else "come to"


def items(basket: tuple, lang: str) -> str:
    """A shopping basket ((product, count), ...) as words: 两罐乌龙茶和一个茶杯 / two tins of oolong tea and a teacup."""
    parts = [zh_count(n, p) if lang == "zh" else en_count(n, p, article=True) for p, n in basket]
    if len(parts) == 1:
        return parts[0]
    joiner = ("、", "和") if lang == "zh" else (", ", " and ")
    return joiner[0].join(parts[:-1]) + joiner[1] + parts[-1]
