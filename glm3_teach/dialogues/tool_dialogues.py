"""Tool dialogues of the SFT set: the shop's tools really called for every observation.

Taught in lesson 09 (工具调用 Tool calling). ``order_dialogue``, ``stock_dialogue`` and
``total_dialogue`` call ``glm3_teach.tools`` (``SHOP_TOOLS``) and answer from the observation;
order ids are split by a hash (``order_split``), so ids of ``val`` and ``heldout`` never
occur in ``train``.

What it leaves out: more than one tool call per dialogue, failed calls other than unknown ids.
"""

from __future__ import annotations

import random
from typing import Any

from glm3_teach import stories
from glm3_teach.dialogues.answers import (
    SHOP_INTENTS,
    product_name,
    product_question,
    shop,
)
from glm3_teach.dialogues.templates import ORDER_ID_REPLIES, compose, fill, parts_for

ASK_ORDER_ID = {"zh": "好的，请告诉我您的订单号，它是一个大写字母加四位数字。",
                "en": "Sure. What is your order number? It is one capital letter and four digits."}
ORDER_ID_SHARES = {"train": range(0, 8), "val": range(8, 9), "heldout": range(9, 10)}  # of sha256(id) % 10


def order_split(order_id: str) -> str:
    """Which split may use ``order_id``: a hash of the id decides, so val/heldout ids never occur in train."""
    bucket = stories.stable_bucket(f"order/{order_id}", 10)
    return next(split for split, share in ORDER_ID_SHARES.items() if bucket in share)


def draw_order_id(split: str, rng: random.Random, exists: bool = True) -> str:
    """An order id of ``split``: "A1234" style; ids whose first digit is 0 were never issued (tools.check_order)."""
    while True:
        first = str(rng.randint(1, 9)) if exists else "0"
        order_id = rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + first + f"{rng.randrange(1000):03d}"
        if order_split(order_id) == split:
            return order_id


def shop_tool_schemas() -> list[dict]:
    from glm3_teach import tools

    return [tools.tool_schema(fn) for fn in tools.SHOP_TOOLS]


def call(name: str, parameters: dict) -> dict:
    """Really call the shop tool ``name`` (from ``tools.SHOP_TOOLS``): the observation the dialogue shows."""
    from glm3_teach import tools

    return tools.SHOP_TOOLS_BY_NAME[name](**parameters)


def basket_words(basket: list[tuple[Any, int]], lang: str, rng: random.Random) -> str:
    """A customer's basket: 两罐乌龙茶加一个茶杯 / two tins of oolong and a teacup (digits sometimes)."""
    digits = rng.random() < 0.3
    parts = []
    for p, n in basket:
        name = product_name(p, lang, rng)
        if lang == "zh":
            parts.append(f"{n}{p.measure}{name}" if digits else stories.zh_count(n, measure=p.measure) + name)
        else:
            unit = stories.en_unit(p, n)
            thing = f"{unit} of {name}" if p.unit_en else (name if n == 1 else name + "s" if not name.endswith("s") else name)
            parts.append(f"{n} {thing}" if digits else stories.en_counted(n, thing, article=True))
    if len(parts) == 1:
        return parts[0]
    last = rng.choice(("和", "加", "，还有") if lang == "zh" else (" and ", " plus "))
    return ("、" if lang == "zh" else ", ").join(parts[:-1]) + last + parts[-1]


def order_answer(order_id: str, obs: dict, lang: str) -> tuple[str, list[str], list[str]]:
    """The reply to a check_order observation: (answer, expect, observation_values)."""
    if "error" in obs:
        if lang == "zh":
            return f"抱歉，没有查到订单{order_id}，请核对一下订单号。", ["没有查到", order_id], [order_id]
        return f"Sorry, I could not find order {order_id}. Please check the order number.", ["could not find", order_id], [order_id]
    basket = tuple((shop().product(i["product"]), i["count"]) for i in obs["items"])
    things, days, status = stories.items(basket, lang), obs["days_to_delivery"], obs["status"]
    values = [order_id] + ([str(days)] if status != "delivered" else [])
    if lang == "zh":
        text = {"processing": (f"正在备货，还没有发货，预计{days}天内送到。", ["还没有发货", f"{days}天"]),
                "shipped": (f"已经发货了，预计{days}天后送到。", ["已经发货", f"{days}天"]),
                "delivered": ("已经送到了。", ["已经送到"])}[status]
        return f"您的订单{order_id}（{things}）{text[0]}", [order_id] + text[1], values
    text = {"processing": (f"is being prepared and has not shipped yet. It should arrive within {days} days.",
                           ["not shipped yet", f"{days} days"]),
            "shipped": (f"has shipped and should arrive in {days} days.", ["has shipped", f"{days} days"]),
            "delivered": ("has been delivered.", ["has been delivered"])}[status]
    return f"Your order {order_id} ({things}) {text[0]}", [order_id] + text[1], values


def stock_answer(p, obs: dict, lang: str) -> tuple[str, list[str], list[str]]:
    n = obs["in_stock"]
    if n == 0:
        if lang == "zh":
            return f"抱歉，{p.zh}暂时卖完了。", ["卖完"], []
        return f"Sorry, the {p.en} is sold out right now.", ["sold out"], []
    if lang == "zh":
        return f"{p.zh}现在还有{n}{p.measure}。", [f"{n}{p.measure}"], [str(n)]
    return f"We have {n} {stories.en_things(p, n)} in stock.", [f"{n} {stories.en_unit(p, n)}"], [str(n)]


def total_answer(basket, obs: dict, lang: str) -> tuple[str, list[str], list[str]]:
    result = obs["result"]
    things = stories.items(tuple(basket), lang)
    if lang == "zh":
        return f"{things}一共{result}元。", [f"{result}元"], [str(result)]
    return f"{stories.cap(things)} {stories.come_to(tuple(basket))} {result} yuan.", [f"{result} yuan"], [str(result)]


def tool_step(name: str, parameters: dict) -> tuple[dict, dict]:
    """The ``tool`` message (call + real observation) and the observation itself."""
    obs = call(name, parameters)
    return {"role": "tool", "name": name, "parameters": parameters, "observation": obs}, obs


def tool_exchange(messages: list[dict], name: str, parameters: dict, answer_of) -> tuple[list[dict], dict]:
    """``messages``, then the real call of tool ``name`` and the reply ``answer_of(observation)`` writes; and the meta.

    ``answer_of`` returns (answer, expect, observation_values), as ``order_answer`` and its siblings do.
    """
    step, obs = tool_step(name, parameters)
    answer, expect, values = answer_of(obs)
    meta = {"expect": expect, "expect_tool": {"name": name, "parameters": parameters}, "observation_values": values}
    return messages + [step, {"role": "assistant", "content": answer}], meta


def order_dialogue(intent: str, template: str, lang: str, rng: random.Random, split: str) -> tuple[list[dict], dict]:
    """order_status / order_error (the id is in the question) and order_ask (the assistant asks for it)."""
    order_id = draw_order_id(split, rng, exists=intent != "order_error")
    parameters = {"order_id": order_id}
    if intent == "order_ask":
        reply = rng.choice(parts_for(ORDER_ID_REPLIES[lang], split)).format(id=order_id)
        messages = [{"role": "user", "content": compose(template, lang, rng, split)},
                    {"role": "assistant", "content": ASK_ORDER_ID[lang]}, {"role": "user", "content": reply}]
    else:
        messages = [{"role": "user", "content": compose(fill(template, id=order_id), lang, rng, split)}]
    return tool_exchange(messages, "check_order", parameters, lambda obs: order_answer(order_id, obs, lang))


def stock_dialogue(template: str, lang: str, rng: random.Random, split: str) -> tuple[list[dict], dict]:
    p = rng.choice(shop().products)
    question = compose(product_question(template, p, lang, rng), lang, rng, split)
    return tool_exchange([{"role": "user", "content": question}], "check_stock", {"product": p.key},
                         lambda obs: stock_answer(p, obs, lang))


def total_dialogue(template: str, lang: str, rng: random.Random, split: str) -> tuple[list[dict], dict]:
    """A basket of one to three products: the assistant writes count*price terms and calls calculate."""
    kinds = rng.choices((1, 2, 3), weights=(2, 5, 2))[0]
    basket = [(p, rng.randint(1, 4) if kinds > 1 else rng.randint(2, 5)) for p in rng.sample(shop().products, kinds)]
    expression = "+".join(str(p.price) if n == 1 else f"{n}*{p.price}" for p, n in basket)
    question = compose(fill(template, items=basket_words(basket, lang, rng)), lang, rng, split)
    return tool_exchange([{"role": "user", "content": question}], "calculate", {"expression": expression},
                         lambda obs: total_answer(basket, obs, lang))


def tool_intent_dialogue(intent: str, template: str, lang: str, rng: random.Random, split: str) -> tuple[list[dict], dict]:
    """The dialogue of a tool intent (not ``no_tool``) whose question is ``template``: (messages, meta)."""
    if intent in ("order_status", "order_ask", "order_error"):
        return order_dialogue(intent, template, lang, rng, split)
    if intent == "stock":
        return stock_dialogue(template, lang, rng, split)
    return total_dialogue(template, lang, rng, split)


TOOL_INTENTS = ("order_status", "order_ask", "order_error", "stock", "total", "no_tool")
NO_TOOL_INTENTS = SHOP_INTENTS + ("greeting", "thanks")  # asked while the tools are offered
