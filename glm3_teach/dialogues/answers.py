"""The shop's side of the SFT set: answers with every fact read from ``TEA_SHOP``, and the turns they make.

Taught in lesson 08. Each answer function returns the reply and ``expect``, the substrings a
correct reply must contain (58元 / 58 yuan). Facts are read from ``glm3_teach.stories.TEA_SHOP``
at call time (``shop()``), and prices, counts and clock times are written with the story
corpus's own helpers (``stories.price_sentences``, ``stories.zh_clock``), so the stories and the
dialogues never disagree. A ``Turn`` pairs a filled template with its answer.

What it leaves out: any fact the shop does not have (payment by card, opening on holidays).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from glm3_teach import stories
from glm3_teach.dialogues.templates import OOD_TOPICS, fill


def shop():
    """The tea shop's facts, read at call time (so a monkeypatched ``stories.TEA_SHOP`` is used)."""
    return stories.TEA_SHOP


# ---------------------------------------------------------------------------------------
# Names in both languages
# ---------------------------------------------------------------------------------------

# Other names customers use for a product (the canonical name comes from TEA_SHOP).
ALIASES = {"zh": {"oolong": ("乌龙",), "puerh": ("普洱",), "jasmine": ("茉莉茶",), "teacup": ("杯子",)},
           "en": {"oolong": ("oolong",), "puerh": ("pu-erh", "puer tea"), "jasmine": ("jasmine",),
                  "teacup": ("tea cup",), "teapot": ("tea pot",)}}
ZH_DAY_ALIASES = ("周{}", "礼拜{}")  # 星期三 -> 周三 / 礼拜三


def product_name(p, lang: str, rng: random.Random) -> str:
    """How a customer names product ``p``: its shop name, or sometimes an alias (乌龙, pu-erh)."""
    canonical = p.zh if lang == "zh" else p.en
    aliases = ALIASES[lang].get(p.key, ())
    return rng.choice(aliases) if aliases and rng.random() < 0.3 else canonical


def day_name(day: int, lang: str, rng: random.Random) -> str:
    """A weekday as a customer writes it: 星期三, 周三, 礼拜三 / Wednesday."""
    if lang == "en":
        return stories.WEEKDAYS_EN[day]
    zh = stories.WEEKDAYS[day]
    if rng.random() < 0.4:
        tail = zh[2:]
        return rng.choice(ZH_DAY_ALIASES).format("日" if tail == "天" and rng.random() < 0.5 else tail)
    return zh


SYSTEM_PROMPTS = {"zh": ("你是{shop}的客服助手。", "你是{shop}的助手，请简短地回答客人的问题。", "你是一家茶叶店的客服。"),
                  "en": ("You are the assistant of the {shop}.", "You are a helpful assistant for the {shop}. Answer briefly.",
                         "You are a customer service assistant for a tea shop.")}


def system_prompt(lang: str, rng: random.Random) -> dict:
    name = shop().name_zh if lang == "zh" else shop().name_en
    return {"role": "system", "content": rng.choice(SYSTEM_PROMPTS[lang]).format(shop=name)}


# ---------------------------------------------------------------------------------------
# Answers: every fact read from TEA_SHOP
# ---------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One question and its answer in one language, before composition."""

    question: str  # the template with its slots filled
    answer: str
    expect: list[str]
    extra: dict = field(default_factory=dict)  # meta beyond the common keys


def price_answer(p, lang: str) -> tuple[str, list[str]]:
    """The corpus's plainest price sentence: 乌龙茶58元一罐。/ The oolong tea is 58 yuan a tin."""
    return stories.price_sentences(p, lang)[0], [stories.yuan(p.price, lang)]


def brew_answer(p, lang: str) -> tuple[str, list[str]]:
    water, minutes = p.water_c, p.steep_minutes
    if lang == "zh":
        return f"泡{p.zh}要用{water}度的水，泡{minutes}分钟。", [f"{water}度", f"{minutes}分钟"]
    unit = "minute" if minutes == 1 else "minutes"
    return (f"Brew the {p.en} with water at {water} degrees for {minutes} {unit}.",
            [f"{water} degrees", f"{minutes} minute"])


def hours_answer(lang: str) -> tuple[str, list[str]]:
    s = shop()
    if lang == "zh":
        opens, closes = stories.zh_clock(s.open_hour, digits=True), stories.zh_clock(s.close_hour, digits=True)
        return f"我们每天{opens}开门，{closes}关门，{stories.WEEKDAYS[s.closed_day]}休息。", [opens, closes]
    opens, closes = stories.en_clock(s.open_hour, spoken=False), stories.en_clock(s.close_hour, spoken=False)
    return f"We are open from {opens} to {closes} every day except {stories.WEEKDAYS_EN[s.closed_day]}.", [opens, closes]


def closed_day_answer(day: int | None, lang: str, rng: random.Random) -> tuple[str, list[str], str]:
    """The answer about the closed day, for a general question (day None) or about one weekday."""
    s = shop()
    closed_zh, closed_en = stories.WEEKDAYS[s.closed_day], stories.WEEKDAYS_EN[s.closed_day]
    if day is None:
        if lang == "zh":
            return f"我们每周{closed_zh}休息，其他日子都开门。", [closed_zh], ""
        return f"We are closed on {closed_en}s and open every other day.", [closed_en], ""
    asked = day_name(day, lang, rng)
    if day == s.closed_day:
        if lang == "zh":
            return f"{asked}不开门，我们每周{closed_zh}休息。", ["不开门", closed_zh], asked
        return f"Sorry, we are closed on {closed_en}s.", ["Sorry, we are closed", closed_en], asked
    if lang == "zh":
        return f"{asked}照常营业，我们只在{closed_zh}休息。", ["照常营业", closed_zh], asked
    return (f"Yes, we are open on {stories.WEEKDAYS_EN[day]}s. We are closed only on {closed_en}s.",
            ["Yes, we are open", closed_en], asked)


def recommend_answer(key: str, lang: str) -> tuple[str, list[str]]:
    p = shop().product(key)
    if lang == "zh":
        return f"推荐{p.zh}，它{p.about_zh}，{p.price}元一{p.measure}。", [p.zh]
    return f"I recommend the {p.en}. It {p.about_en}.", [p.en]


def identity_answer(lang: str) -> tuple[str, list[str]]:
    s = shop()
    if lang == "zh":
        return (f"我是{s.name_zh}的客服助手，是这门课上训练出来的一个小模型，不是真人。"
                f"我可以回答茶叶价格、营业时间、运费和泡茶的问题。", [s.name_zh, "小模型"])
    return (f"I am the assistant of the {s.name_en}, a small model built in this course, not a person. "
            f"I can answer questions about our teas, prices, opening hours and shipping.", [s.name_en, "small model"])


def refusal_answer(lang: str) -> tuple[str, list[str]]:
    s = shop()
    if lang == "zh":
        return (f"抱歉，这个我帮不上忙。我是{s.name_zh}的助手，可以回答茶叶价格、营业时间、运费、退货和泡茶的问题。",
                ["抱歉"])
    return (f"Sorry, I can't help with that. I am the {s.name_en} assistant, and I can answer questions about "
            f"tea prices, opening hours, shipping, returns and brewing.", ["Sorry"])


def fixed_answer(intent: str, lang: str) -> tuple[str, list[str]]:
    """Answers that have no slot: address, shipping, delivery, returns, greetings, thanks."""
    s = shop()
    low, high = s.delivery_days
    free, fee, days = s.free_shipping_from, s.shipping_fee, s.returns_days
    zh = {"address": (f"我们在{s.address_zh}。", [s.address_zh]),
          "free_shipping": (f"订单满{free}元包邮。", [f"满{free}元"]),
          "shipping_fee": (f"运费是{fee}元，订单满{free}元包邮。", [f"{fee}元"]),
          "delivery": (f"下单后一般{low}到{high}天送到。", [f"{low}到{high}天"]),
          "returns": (f"可以。没有打开过的商品，{days}天之内都可以退。", [f"{days}天"]),
          "greeting": (f"您好！我是{s.name_zh}的助手，请问有什么可以帮您？", ["您好"]),
          "thanks": ("不客气！还有什么可以帮您的吗？", ["不客气"])}
    en = {"address": (f"We are at {s.address_en}.", [s.address_en]),
          "free_shipping": (f"Orders of {free} yuan or more ship free.", [f"{free} yuan"]),
          "shipping_fee": (f"Shipping costs {fee} yuan. Orders of {free} yuan or more ship free.", [f"{fee} yuan"]),
          "delivery": (f"Orders usually arrive in {low} to {high} days.", [f"{low} to {high} days"]),
          "returns": (f"Yes. Unopened items can be returned within {days} days.", [f"{days} days"]),
          "greeting": (f"Hello! I am the {s.name_en} assistant. How can I help you?", ["Hello"]),
          "thanks": ("You're welcome! Is there anything else I can help with?", ["welcome"])}
    return (zh if lang == "zh" else en)[intent]


# ---------------------------------------------------------------------------------------
# Turns: fill a template's slots and pair it with its answer
# ---------------------------------------------------------------------------------------


def product_question(template: str, p, lang: str, rng: random.Random) -> str:
    """A template about product ``p`` filled in: its name as a customer says it ({p}) and its measure word ({m})."""
    return fill(template, p=product_name(p, lang, rng), m=p.measure)


def product_turn(intent: str, template: str, lang: str, rng: random.Random, p=None) -> Turn:
    """A price or brewing question about product ``p`` (drawn when None; brewing only for teas)."""
    choices = shop().teas if intent == "brew" else shop().products
    p = p or rng.choice(choices)
    question = product_question(template, p, lang, rng)
    answer, expect = (price_answer if intent == "price" else brew_answer)(p, lang)
    return Turn(question, answer, expect)


def closed_day_turn(template: str, lang: str, rng: random.Random) -> Turn:
    day = None
    if "{d}" in template:  # ask about the closed day half of the time
        others = [d for d in range(7) if d != shop().closed_day]
        day = shop().closed_day if rng.random() < 0.5 else rng.choice(others)
    answer, expect, asked = closed_day_answer(day, lang, rng)
    return Turn(fill(template, d=asked), answer, expect)


def recommend_turn(template: str, lang: str, rng: random.Random) -> Turn:
    wish_zh, wish_en, key = rng.choice(stories.TEA_WISHES)
    wish = wish_zh if lang == "zh" else wish_en
    answer, expect = recommend_answer(key, lang)
    return Turn(fill(template, w=wish, wb=wish_zh.removesuffix("的")), answer, expect)


def simple_turn(intent: str, template: str, lang: str, rng: random.Random) -> Turn:
    """Intents whose question slots (city, topic, keeper) do not change the answer."""
    city = rng.choice(stories.CITIES)
    topic = rng.choice(OOD_TOPICS)
    keeper = shop().keeper
    slots = {"c": city.zh if lang == "zh" else city.en, "t": topic[0] if lang == "zh" else topic[1],
             "keeper": keeper.zh if lang == "zh" else keeper.en}
    if intent == "identity":
        answer, expect = identity_answer(lang)
    elif intent == "out_of_domain":
        answer, expect = refusal_answer(lang)
    elif intent == "hours":
        answer, expect = hours_answer(lang)
    else:
        answer, expect = fixed_answer(intent, lang)
    return Turn(fill(template, **slots), answer, expect)


def make_turn(intent: str, template: str, lang: str, rng: random.Random) -> Turn:
    """The question and answer of one single-turn intent."""
    if intent in ("price", "brew"):
        return product_turn(intent, template, lang, rng)
    if intent == "closed_day":
        return closed_day_turn(template, lang, rng)
    if intent == "recommend":
        return recommend_turn(template, lang, rng)
    return simple_turn(intent, template, lang, rng)


SHOP_INTENTS = ("price", "hours", "closed_day", "address", "free_shipping", "shipping_fee", "delivery", "returns",
                "recommend", "brew", "identity", "out_of_domain")
UNCOMPOSED = ("greeting", "thanks", "translate")  # questions used as written, without openers and closers
