"""What the tea shop says: its hours, shipping, delivery and prices in a sentence, and answers to questions.

Part of ``glm3_teach.stories`` (the corpus of lessons 00 and 06). Every sentence is built from
``TEA_SHOP`` (``stories.shop``). ``QUESTIONS`` maps a topic ("price", "hours", "ship_city",
...) to a function that gives a customer's question and the shop's answer in one language.
Lesson 08's dialogue generator states prices with ``price_sentences``, the corpus's own words.
"""

from __future__ import annotations

import random

from glm3_teach.stories.grammar import cap
from glm3_teach.stories.numbers import (
    a_or_an,
    en_clock,
    en_number,
    yuan,
    zh_clock,
    zh_count,
    zh_number,
)
from glm3_teach.stories.shop import TEA_SHOP, Product
from glm3_teach.stories.world import WEEKDAYS, WEEKDAYS_EN, Pair

SHOP = TEA_SHOP
KEEPER = TEA_SHOP.keeper


def hours_line(lang: str, rng: random.Random) -> str:
    """The opening hours as the shop says them (always 9 to 21, closed on Mondays)."""
    o, c, day = SHOP.open_hour, SHOP.close_hour, SHOP.closed_day
    if lang == "zh":
        return rng.choice([f"我们每天{zh_clock(o)}开门，{zh_clock(c)}关门，{WEEKDAYS[day]}休息。",
                           f"我们的营业时间是{o}:00到{c}:00，每个{WEEKDAYS[day]}休息。"])
    return rng.choice([f"We open at {en_clock(o, spoken=False)} and close at {en_clock(c, spoken=False)} every day except {WEEKDAYS_EN[day]}.",
                       f"Our hours are {o}:00 to {c}:00, and we are closed on {WEEKDAYS_EN[day]}s."])


def shipping_line(lang: str, rng: random.Random) -> str:
    """The shipping rule (free from 199 yuan, else 12 yuan)."""
    free, fee = SHOP.free_shipping_from, SHOP.shipping_fee
    if lang == "zh":
        return rng.choice([f"满{free}元包邮，不满{free}元的运费是{fee}元。", f"买满{free}元就免运费，不到{free}元要付{fee}元运费。"])
    return rng.choice([f"Shipping is free on orders of {free} yuan or more; smaller orders pay {fee} yuan for shipping.",
                       f"Orders of {free} yuan or more ship free, and smaller orders pay a {fee}-yuan shipping fee."])


def delivery_line(lang: str, rng: random.Random) -> str:
    low, high = SHOP.delivery_days
    if lang == "zh":
        span = f"{zh_count(low, measure='')}到{zh_count(high, measure='天')}"  # 两到四天
        return rng.choice([f"一般{span}就能送到。", f"{span}就到了。"])
    return rng.choice([f"It usually arrives in {en_number(low)} to {en_number(high)} days.",
                       f"It takes {en_number(low)} to {en_number(high)} days to arrive."])


def price_sentences(p: Product, lang: str, amount: str | None = None) -> list[str]:
    """The ways the shop states ``p``'s one price, the plainest first: 乌龙茶58元一罐。/ The oolong tea is 58 yuan a tin.

    ``amount`` is the price as spoken (48块钱); by default as written (48元 / 48 yuan).
    """
    amount = amount or yuan(p.price, lang)
    if lang == "zh":
        return [f"{p.zh}{amount}一{p.measure}。", f"一{p.measure}{p.zh}{amount}。", f"{p.zh}每{p.measure}{amount}。"]
    if p.unit_en:
        return [f"The {p.en} is {amount} a {p.unit_en}.", f"A {p.unit_en} of {p.en} costs {amount}."]
    return [f"The {p.en} is {amount}.", f"{cap(a_or_an(p.en))} costs {amount}."]


def price_line(p: Product, lang: str, rng: random.Random, spoken: bool = False) -> str:
    """The product's one price, in a sentence that names the product: 乌龙茶一罐58元。"""
    return rng.choice(price_sentences(p, lang, yuan(p.price, lang, rng, spoken)))


# Each question a customer may ask: a function giving (question, answer) in one language.
def _qa_price(p: Product, lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        q = rng.choice([f"请问，{p.zh}多少钱？", f"{p.zh}怎么卖？", f"{p.zh}一{p.measure}多少钱？"])
        return q, price_line(p, lang, rng, spoken=True)
    q = rng.choice([f"Excuse me, how much is the {p.en}?", f"What does the {p.en} cost?"])
    return q, price_line(p, lang, rng)


def _qa_about(p: Product, lang: str, rng: random.Random) -> tuple[str, str]:
    if not p.unit_en:  # teaware
        if lang == "zh":
            return f"这{p.measure}{p.zh}是什么做的？", f"这{p.measure}{p.zh}{p.about_zh}。"
        return f"What is the {p.en} made of?", f"This {p.en} {p.about_en}."
    if lang == "zh":
        q = rng.choice([f"{p.zh}是什么味道的？", f"{p.zh}好喝吗？"])
        return q, f"{p.zh}{p.about_zh}。一{p.measure}有{p.weight_g}克。"
    q = rng.choice([f"What does the {p.en} taste like?", f"Is the {p.en} nice?"])
    return q, f"The {p.en} {p.about_en}. Each {p.unit_en} holds {p.weight_g} grams."


def _qa_brew(p: Product, lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        return (rng.choice([f"{p.zh}应该怎么泡？", f"{p.zh}要用多热的水泡？"]),
                f"用{p.water_c}度的水，泡{zh_count(p.steep_minutes, measure='分钟')}就好了。")
    minutes = "one minute" if p.steep_minutes == 1 else f"{en_number(p.steep_minutes)} minutes"
    return (rng.choice([f"How should I make the {p.en}?", f"How hot should the water be for the {p.en}?"]),
            f"Use water at {p.water_c} degrees and let it steep for {minutes}.")


def _qa_hours(lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        return rng.choice(["你们几点开门，几点关门？", "请问你们的营业时间是几点到几点？"]), hours_line(lang, rng)
    return rng.choice(["What time do you open and close?", "What are your opening hours?"]), hours_line(lang, rng)


def _qa_day(day: int, lang: str, rng: random.Random) -> tuple[str, str]:
    closed = day == SHOP.closed_day
    if lang == "zh":
        q = f"你们{WEEKDAYS[day]}开门吗？"
        a = f"不开，我们{WEEKDAYS[day]}休息。" if closed else f"开，我们只有{WEEKDAYS[SHOP.closed_day]}休息。"
        return q, a
    q = f"Are you open on {WEEKDAYS_EN[day]}s?"
    a = f"No, we are closed on {WEEKDAYS_EN[day]}s." if closed else f"Yes. {WEEKDAYS_EN[SHOP.closed_day]} is the only day we are closed."
    return q, a


def _qa_ship_city(city: Pair, lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        return f"能寄到{city.zh}吗？", "可以。" + delivery_line(lang, rng)
    return f"Can you send it to {city.en}?", "Yes, we can. " + delivery_line(lang, rng)


def _qa_ship_abroad(country: Pair, lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        return f"能寄到{country.zh}吗？", f"对不起，我们只在中国大陆发货，不能寄到{country.zh}。"
    return f"Can you send it to {country.en}?", f"Sorry, we only ship within mainland China, so we can't send it to {country.en}."


def _qa_shipping(lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        return rng.choice(["运费是多少？", "寄快递要运费吗？"]), shipping_line(lang, rng)
    return rng.choice(["How much is shipping?", "Do I have to pay for shipping?"]), shipping_line(lang, rng)


def _qa_returns(lang: str, rng: random.Random) -> tuple[str, str]:
    days = SHOP.returns_days
    if lang == "zh":
        return "买回去要是不喜欢，可以退吗？", f"可以，没有打开过的东西，{zh_number(days)}天之内都可以退。"
    return "Can I bring it back if I don't like it?", f"Yes. Anything unopened can be returned within {en_number(days)} days."


def _qa_payment(lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        return "可以用手机付钱吗？", "可以，现金和手机支付都可以。"
    return "Can I pay by phone?", "Yes, you can pay in cash or by phone."


def _qa_where(lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        return "你们的店在哪里？", f"我们在{SHOP.address_zh}。"
    return "Where is your shop?", f"We are at {SHOP.address_en}."


def _qa_wish(wish: tuple, lang: str, rng: random.Random) -> tuple[str, str]:
    wish_zh, wish_en, key = wish
    p = SHOP.product(key)
    if lang == "zh":
        return f"我想买一种{wish_zh}茶，您推荐哪一种？", f"那就试试{p.zh}吧，它{p.about_zh}。"
    return f"I'd like a tea that is {wish_en}. Which one would you recommend?", f"Then try the {p.en}. It {p.about_en}."


def _qa_taste(lang: str, rng: random.Random) -> tuple[str, str]:
    if lang == "zh":
        return "可以先尝一尝吗？", "当然可以，每位客人都可以免费试喝一杯。"
    return "May I taste it first?", "Of course. Every customer can taste one cup for free."


QUESTIONS = {"price": _qa_price, "about": _qa_about, "brew": _qa_brew, "hours": _qa_hours, "day": _qa_day,
             "ship_city": _qa_ship_city, "ship_abroad": _qa_ship_abroad, "shipping": _qa_shipping,
             "returns": _qa_returns, "payment": _qa_payment, "where": _qa_where, "wish": _qa_wish, "taste": _qa_taste}
