"""Renderers of the tea shop and the town market: visits, questions, notices, price lists, paying, tea at home, orders by phone.

Part of ``glm3_teach.stories`` (the corpus of lessons 00 and 06; about a third of its stories
happen here); each function is the renderer of one event kind (``events.renders``), with its
Chinese and English phrasings side by side. Every shop fact comes from ``TEA_SHOP``.
"""

from __future__ import annotations

import random

from glm3_teach.stories.events import Event, renders
from glm3_teach.stories.grammar import (
    cap,
    en_quote,
    full_stop,
    he,
    him,
    his,
    name,
    quote,
    say,
    zh_quote,
)
from glm3_teach.stories.numbers import (
    come_to,
    en_clock,
    en_count,
    en_number,
    items,
    zh_clock,
    zh_count,
)
from glm3_teach.stories.shop import MARKET_PRICES
from glm3_teach.stories.shop_talk import KEEPER, QUESTIONS, SHOP
from glm3_teach.stories.world import WEEKDAYS, WEEKDAYS_EN, Pair


@renders("shop_question")
def _shop_question(e: Event, lang: str, rng: random.Random) -> str:
    """A customer asks, the shop answers: {"topic": "price", "arg": Product, "who": ..., "answerer": ...}."""
    asker, answerer, topic, arg = e["who"], e.get("answerer", KEEPER), e["topic"], e.get("arg")
    q, a = QUESTIONS[topic](*((arg,) if arg is not None else ()), lang, rng)
    sep = "" if lang == "zh" else " "
    verb = "answer" if rng.random() < 0.5 else "say"
    return say(asker, "ask", q, lang, rng) + sep + say(answerer, verb, a, lang, rng)


@renders("shop_intro")
def _shop_intro(e: Event, lang: str, rng: random.Random) -> str:
    if lang == "zh":
        return rng.choice([f"{SHOP.name_zh}在{SHOP.address_zh}，店主是{KEEPER.zh}。",
                           f"{SHOP.address_zh}有一家茶叶店，叫{SHOP.name_zh}，开店的是{KEEPER.zh}。"])
    return rng.choice([f"The {SHOP.name_en} was at {SHOP.address_en}, and its owner was {KEEPER.en}.",
                       f"At {SHOP.address_en} there was a tea shop called the {SHOP.name_en}, run by {KEEPER.en}."])


@renders("day_time")
def _day_time(e: Event, lang: str, rng: random.Random) -> str:
    day, hour, minute, weather = e["day"], e["hour"], e["minute"], e["weather"]
    if lang == "zh":
        return rng.choice([f"{WEEKDAYS[day]}{zh_clock(hour, minute)}，{weather.zh_clause}。",
                           f"这是一个{weather.zh_adj}{WEEKDAYS[day]}，时间是{zh_clock(hour, minute)}。"])
    return rng.choice([f"It was {en_clock(hour, minute)} on a {weather.en_adj} {WEEKDAYS_EN[day]}.",
                       f"It was {WEEKDAYS_EN[day]}, {en_clock(hour, minute, spoken=False)}, and {weather.en_clause}."])


@renders("arrive_shop")
def _arrive_shop(e: Event, lang: str, rng: random.Random) -> str:
    who = e["who"]
    if lang == "zh":
        return rng.choice([f"{name(who, lang)}来到了{SHOP.name_zh}。", f"{name(who, lang)}走进了{SHOP.name_zh}。"])
    return rng.choice([f"{name(who, lang)} came to the {SHOP.name_en}.", f"{name(who, lang)} walked into the {SHOP.name_en}."])


@renders("welcome")
def _welcome(e: Event, lang: str, rng: random.Random) -> str:
    who = e["who"]
    line = rng.choice([Pair("欢迎光临！", "Welcome!"), Pair("你们好，欢迎光临！", "Hello, and welcome!")] if len(who) > 1 else
                      [Pair("欢迎光临！", "Welcome!"), Pair("你好，欢迎光临！", "Hello, and welcome!")])
    if lang == "zh":
        return rng.choice([f"{KEEPER.zh}看见{name(who, lang)}进来，笑着说：“{line.zh}”", f"“{line.zh}”{KEEPER.zh}笑着对{name(who, lang)}说。"])
    return rng.choice([f'{KEEPER.en} saw {name(who, lang)} come in and said with a smile, "{line.en}"',
                       f'"{line.en}" {KEEPER.en} said to {name(who, lang)} with a smile.'])


@renders("look_around")
def _look_around(e: Event, lang: str, rng: random.Random) -> str:
    c = e["who"]
    if lang == "zh":
        return rng.choice([f"店里的架子上摆满了一罐一罐的茶叶，还有茶壶和茶杯，{c.zh}好奇地看来看去。",
                           f"{c.zh}看见架子上放着很多茶叶罐，还有好看的茶壶和茶杯。",
                           f"{c.zh}东看看，西看看，架子上有很多茶叶罐，还有茶壶和茶杯。"])
    return rng.choice([f"The shelves were full of tins of tea, teapots and teacups, and {c.en} looked around curiously.",
                       f"{c.en} saw many tins of tea on the shelves, and pretty teapots and teacups too.",
                       f"{c.en} looked here and there: the shelves held many tins of tea, and teapots and teacups too."])


@renders("notice")
def _notice(e: Event, lang: str, rng: random.Random) -> str:
    o, c, day, free = SHOP.open_hour, SHOP.close_hour, SHOP.closed_day, SHOP.free_shipping_from
    if lang == "zh":
        intro = rng.choice(["门上贴着一张通知：", "墙上有一张告示，上面写着："])
        return f"{intro}\n{SHOP.name_zh}营业时间：{o}:00—{c}:00\n每周{WEEKDAYS[day][-1]}休息\n满{free}元包邮"
    intro = rng.choice(["There was a notice on the door:", "A sign on the wall said:"])
    return f"{intro}\n{SHOP.name_en} - open {o}:00 to {c}:00\nClosed on {WEEKDAYS_EN[day]}s\nFree shipping on orders of {free} yuan or more"


@renders("price_list")
def _price_list(e: Event, lang: str, rng: random.Random) -> str:
    products = e["products"]
    if lang == "zh":
        lines = [f"{p.zh}（{p.weight_g}克）每{p.measure}{p.price}元" if p.weight_g else f"{p.zh}每{p.measure}{p.price}元" for p in products]
        return "墙上挂着一张价目表：\n" + "\n".join(lines)
    lines = [f"{cap(p.en)} ({p.weight_g} g): {p.price} yuan a {p.unit_en}" if p.weight_g else f"{cap(p.en)}: {p.price} yuan each"
             for p in products]
    return "A price list hung on the wall:\n" + "\n".join(lines)


@renders("budget")
def _budget(e: Event, lang: str, rng: random.Random) -> str:
    c, money, relative, reason = e["who"], e["money"], e["for"], e["reason"]
    if lang == "zh":
        return (f"{c.zh}存了{money}元零花钱。" + {"birthday": f"{relative.zh}快过生日了，{he(c, lang)}想送{relative.zh}一份礼物。",
                                             "thanks": f"{he(c, lang)}想给{relative.zh}买一份礼物，谢谢{relative.zh}的照顾。"}[reason])
    return (f"{c.en} had saved {money} yuan of pocket money. " + {"birthday": f"It was nearly {relative.en}'s birthday, and {he(c, lang)} wanted to give {relative.en} a present.",
                                                                  "thanks": f"{cap(he(c, lang))} wanted to buy {relative.en} a present to say thank you."}[reason])


@renders("can_afford")
def _can_afford(e: Event, lang: str, rng: random.Random) -> str:
    c, p, money, again = e["who"], e["product"], e["money"], e.get("again")
    ok = p.price <= money
    if lang == "zh":
        verdict = "钱够了。" if ok else "钱不够。"
        return f"{c.zh}{'又' if again else ''}看了看：{p.zh}一{p.measure}{p.price}元。{he(c, lang)}只有{money}元，" + verdict
    verdict = "that was enough." if ok else "that was not enough."
    per = f"a {p.unit_en}" if p.unit_en else "each"
    look = f"Then {c.en} looked at" if again else f"{c.en} had a look at"
    return f"{look} the {p.en}: {p.price} yuan {per}. {cap(he(c, lang))} had {money} yuan, and {verdict}"


@renders("buy")
def _buy(e: Event, lang: str, rng: random.Random) -> str:
    buyer, basket = e["who"], e["basket"]
    if lang == "zh":
        return say(buyer, "say", rng.choice([f"我要{items(basket, lang)}。", f"请给我{items(basket, lang)}。"]), lang, rng)
    return say(buyer, "say", rng.choice([f"I'd like {items(basket, lang)}, please.", f"{cap(items(basket, lang))}, please."]), lang, rng)


@renders("total")
def _total(e: Event, lang: str, rng: random.Random) -> str:
    basket, total = e["basket"], e["total"]
    if lang == "zh":
        return rng.choice([f"{KEEPER.zh}算了算：“{items(basket, lang)}，一共{total}元。”",
                           f"{KEEPER.zh}说：“{items(basket, lang)}一共是{total}元。”"])
    return rng.choice([f'{KEEPER.en} added it up: "{cap(items(basket, lang))} {come_to(basket)} {total} yuan in all."',
                       f'{KEEPER.en} said, "{cap(items(basket, lang))}: that\'s {total} yuan in all."'])


@renders("pay")
def _pay(e: Event, lang: str, rng: random.Random) -> str:
    payer, total, paid = e["who"], e["total"], e["paid"]
    if paid is None:
        if lang == "zh":
            return rng.choice([f"{payer.zh}用手机付了{total}元。", f"{payer.zh}拿出手机，扫码付了{total}元。"])
        return rng.choice([f"{payer.en} paid the {total} yuan by phone.", f"{payer.en} took out {his(payer, lang)} phone and paid {total} yuan."])
    change = paid - total
    if lang == "zh":
        tail = f"{KEEPER.zh}找给{him(payer, lang)}{change}元。" if change else "正好不用找钱。"
        return f"{payer.zh}给了{KEEPER.zh}{paid}元，" + tail
    tail = f"and {KEEPER.en} gave {him(payer, lang)} {change} yuan in change." if change else "which was exactly right, so there was no change."
    return f"{payer.en} gave {KEEPER.en} {paid} yuan, " + tail


@renders("tasting")
def _tasting(e: Event, lang: str, rng: random.Random) -> str:
    who, tea = e["who"], e["tea"]
    cups = len(who)
    if lang == "zh":
        return rng.choice([f"{KEEPER.zh}给{name(who, lang)}倒了{zh_count(cups, measure='杯')}{tea.zh}，请大家免费尝一尝。",
                           f"{KEEPER.zh}泡了{zh_count(cups, measure='杯')}{tea.zh}，请{name(who, lang)}免费试喝。"])
    cup = "a cup" if cups == 1 else f"{en_number(cups)} cups"
    return rng.choice([f"{KEEPER.en} poured {cup} of {tea.en} for {name(who, lang)} to taste for free.",
                       f"{KEEPER.en} made {cup} of {tea.en} so that {name(who, lang)} could taste it for free."])


@renders("taste_verdict")
def _taste_verdict(e: Event, lang: str, rng: random.Random) -> str:
    c, tea = e["who"], e["tea"]
    if e["verdict"] == "about":
        if lang == "zh":
            return f"{c.zh}喝了一小口，说：“{tea.zh}{tea.about_zh}。”"
        return f'{c.en} took a small sip and said, "The {tea.en} {tea.about_en}."'
    if lang == "zh":
        return rng.choice([f"{c.zh}尝了尝，说：“真好喝！”", f"{c.zh}喝了一口，说：“真好喝！”"])
    return rng.choice([f'{c.en} had a taste and said, "It\'s delicious!"', f'{c.en} took a sip and said, "It\'s delicious!"'])


@renders("closed")
def _closed(e: Event, lang: str, rng: random.Random) -> str:
    who, reason = e["who"], e["reason"]
    o, c = SHOP.open_hour, SHOP.close_hour
    if lang == "zh":
        tail = {"monday": f"可是今天是{WEEKDAYS[SHOP.closed_day]}，茶铺休息，门关着。",
                "early": f"可是店门还关着，茶铺{zh_clock(o)}才开门。",
                "late": f"可是已经过了{zh_clock(c)}，茶铺已经关门了。"}[reason]
        return f"{name(who, lang)}来到{SHOP.name_zh}门口，" + tail
    tail = {"monday": f"but it was {WEEKDAYS_EN[SHOP.closed_day]}, when the shop is closed, and the door was shut.",
            "early": full_stop(f"but the door was still shut: the shop does not open until {en_clock(o, spoken=False)}"),
            "late": f"but it was after {en_clock(c, spoken=False)}, and the shop had already closed."}[reason]
    return f"{name(who, lang)} came to the door of the {SHOP.name_en}, " + tail


@renders("come_back")
def _come_back(e: Event, lang: str, rng: random.Random) -> str:
    who, reason, day, hour = e["who"], e["reason"], e["day"], e["hour"]
    if lang == "zh":
        if reason == "early":
            return f"{name(who, lang)}在旁边的公园里走了走，{zh_clock(hour)}又回到了茶铺，门已经开了。"
        return f"{WEEKDAYS[day]}{zh_clock(hour)}，{name(who, lang)}又来了，这次茶铺开着门。"
    if reason == "early":
        return f"{name(who, lang)} took a walk in the park next door and came back at {en_clock(hour)}. This time the door was open."
    return f"On {WEEKDAYS_EN[day]} at {en_clock(hour, spoken=False)}, {name(who, lang)} came again, and this time the shop was open."


@renders("phone_call")
def _phone_call(e: Event, lang: str, rng: random.Random) -> str:
    caller, relative, city = e["who"], e["relative"], e["city"]
    if lang == "zh":
        return rng.choice([f"{caller.zh}的{relative.zh}住在{city.zh}。{caller.zh}想给{relative.zh}寄一些茶叶，就给{SHOP.name_zh}打了电话。",
                           f"{caller.zh}想给住在{city.zh}的{relative.zh}寄点茶叶，于是打电话到{SHOP.name_zh}。"])
    return rng.choice([f"{caller.en}'s {relative.en} lived in {city.en}. {caller.en} wanted to send some tea there, so {he(caller, lang)} phoned the {SHOP.name_en}.",
                       f"{caller.en} wanted to send some tea to {his(caller, lang)} {relative.en} in {city.en}, so {he(caller, lang)} called the {SHOP.name_en}."])


@renders("order_total")
def _order_total(e: Event, lang: str, rng: random.Random) -> str:
    """The shop adds up a phone order and applies the shipping rule (free from 199 yuan, else 12 yuan)."""
    basket, total = e["basket"], e["total"]
    free, fee = SHOP.free_shipping_from, SHOP.shipping_fee
    if lang == "zh":
        line = f"{items(basket, lang)}一共{total}元。"
        line += f"满{free}元了，可以包邮。" if total >= free else f"不到{free}元，要加{fee}元运费，一共付{total + fee}元。"
    else:
        line = f"{cap(items(basket, lang))} {come_to(basket)} {total} yuan in all. "
        line += (f"That is {free} yuan or more, so shipping is free." if total >= free else
                 f"That is less than {free} yuan, so there is a {fee}-yuan shipping fee, and the whole order comes to {total + fee} yuan in all.")
    return say(KEEPER, "say", line, lang, rng)


@renders("parcel_arrives")
def _parcel_arrives(e: Event, lang: str, rng: random.Random) -> str:
    relative, days, caller = e["relative"], e["days"], e["who"]
    if lang == "zh":
        return rng.choice([f"过了{zh_count(days, measure='天')}，{caller.zh}的{relative.zh}收到了包裹，高兴地打电话来说谢谢。",
                           f"{zh_count(days, measure='天')}以后，包裹送到了。{caller.zh}的{relative.zh}很高兴，打电话来说谢谢。"])
    return rng.choice([f"{cap(en_number(days))} days later, {caller.en}'s {relative.en} got the parcel and happily phoned to say thank you.",
                       f"The parcel arrived {en_number(days)} days later. {caller.en}'s {relative.en} was very happy and phoned to say thank you."])


@renders("take_it_yourself")
def _take_it_yourself(e: Event, lang: str, rng: random.Random) -> str:
    caller, relative = e["who"], e["relative"]
    if lang == "zh":
        return f"{caller.zh}想了想，决定下次去看{relative.zh}的时候，自己把茶叶带过去。"
    return f"{caller.en} thought about it and decided to take the tea along the next time {he(caller, lang)} visited {his(caller, lang)} {relative.en}."


@renders("make_tea")
def _make_tea(e: Event, lang: str, rng: random.Random) -> str:
    maker, tea, cups = e["who"], e["tea"], e["cups"]
    if lang == "zh":
        return (f"首先，{maker.zh}把水烧开，等水凉到{tea.water_c}度。然后，{he(maker, lang)}往茶壶里放了一小勺{tea.zh}，"
                f"把热水倒进去。等了{zh_count(tea.steep_minutes, measure='分钟')}以后，{he(maker, lang)}倒了{zh_count(cups, measure='杯')}茶。")
    minutes = "one minute" if tea.steep_minutes == 1 else f"{en_number(tea.steep_minutes)} minutes"
    cup = "one cup" if cups == 1 else f"{en_number(cups)} cups"
    return (f"First, {maker.en} boiled some water and let it cool to {tea.water_c} degrees. Then {he(maker, lang)} put a small spoonful "
            f"of {tea.en} into the teapot and poured in the hot water. After {minutes}, {he(maker, lang)} poured {cup} of tea.")


@renders("tea_from_shop")
def _tea_from_shop(e: Event, lang: str, rng: random.Random) -> str:
    maker, tea = e["who"], e["tea"]
    if lang == "zh":
        return rng.choice([f"{maker.zh}从柜子里拿出一{tea.measure}{tea.zh}，这是在{SHOP.name_zh}买的，{tea.price}元一{tea.measure}。",
                           f"{maker.zh}拿出一{tea.measure}{tea.price}元的{tea.zh}，是在{SHOP.name_zh}买的。"])
    return rng.choice([f"{maker.en} took a {tea.unit_en} of {tea.en} out of the cupboard, bought at the {SHOP.name_en} for {tea.price} yuan.",
                       f"{maker.en} took out a {tea.price}-yuan {tea.unit_en} of {tea.en} from the {SHOP.name_en}."])


@renders("guests")
def _guests(e: Event, lang: str, rng: random.Random) -> str:
    host, guests = e["who"], e["guests"]
    if lang == "zh":
        return rng.choice([f"{name(guests, lang)}来{host.zh}家做客。", f"{name(guests, lang)}来家里看{host.zh}。"])
    return rng.choice([f"{name(guests, lang)} came to visit {host.en}.", f"{name(guests, lang)} came round to see {host.en}."])


@renders("serve_tea")
def _serve_tea(e: Event, lang: str, rng: random.Random) -> str:
    c = e["who"]
    if lang == "zh":
        return rng.choice([f"{c.zh}小心地把茶端给每一个人。茶很烫，大家等了一会儿才喝。",
                           f"{c.zh}帮忙把茶一杯一杯地端过去。茶太烫了，要慢慢喝。"])
    return rng.choice([f"{c.en} carefully carried the tea to everyone. It was very hot, so they waited a little before drinking.",
                       f"{c.en} helped carry the cups over one by one. The tea was too hot to drink quickly."])


@renders("market_prices")
def _market_prices(e: Event, lang: str, rng: random.Random) -> str:
    seller, basket = e["seller"], e["basket"]
    if lang == "zh":
        parts = "，".join(f"{t.zh}{MARKET_PRICES[t.zh]}元一{t.measure}" for t, _ in basket)
        return f"{seller.zh}说：“{parts}。”"
    parts = ", ".join(f"{t.en_plural} are {MARKET_PRICES[t.zh]} yuan each" for t, _ in basket)
    return f'{seller.en} said, "{cap(parts)}."'


@renders("market_sum")
def _market_sum(e: Event, lang: str, rng: random.Random) -> str:
    c, basket = e["who"], e["basket"]
    total = sum(MARKET_PRICES[t.zh] * n for t, n in basket)
    if lang == "zh":
        parts = "，".join(f"{zh_count(n, t)}是{MARKET_PRICES[t.zh] * n}元" for t, n in basket)
        return f"{c.zh}算了算：{parts}，一共{total}元。"
    parts = ", ".join(f"{en_count(n, t)} cost {MARKET_PRICES[t.zh] * n} yuan" for t, n in basket)
    return f"{c.en} worked it out: {parts}, so that made {total} yuan in all."


@renders("go_market")
def _go_market(e: Event, lang: str, rng: random.Random) -> str:
    who, seller = e["who"], e["seller"]
    if lang == "zh":
        return f"{name(who, lang)}去青石镇的市场买水果。{seller.zh}的水果摊上有很多新鲜的水果。"
    return f"{name(who, lang)} went to the market in Qingshi Town to buy fruit. {seller.en}'s stall was full of fresh fruit."


@renders("want_fruit")
def _want_fruit(e: Event, lang: str, rng: random.Random) -> str:
    c, basket = e["who"], e["basket"]
    parts_zh = "和".join(zh_count(n, t) for t, n in basket)
    parts_en = " and ".join(en_count(n, t) for t, n in basket)
    return quote(c, "say", Pair(f"我要{parts_zh}。", f"I'd like {parts_en}, please."), lang, rng)


@renders("market_pay")
def _market_pay(e: Event, lang: str, rng: random.Random) -> str:
    payer, seller, total, paid = e["who"], e["seller"], e["total"], e["paid"]
    change = paid - total
    if lang == "zh":
        tail = f"{seller.zh}找回了{change}元。" if change else "正好，不用找钱。"
        return f"{payer.zh}给了{seller.zh}一张{paid}元的钱，" + tail
    tail = f"and {seller.en} gave back {change} yuan." if change else "which was exactly right."
    return f"{payer.en} gave {seller.en} a {paid}-yuan note, " + tail


@renders("how_much_change")
def _how_much_change(e: Event, lang: str, rng: random.Random) -> str:
    c, change, adult = e["who"], e["change"], e["adult"]
    if lang == "zh":
        return zh_quote(adult.zh, "问", f"{c.zh}，应该找回多少钱？", rng) + f"{c.zh}马上回答：“{change}元！”"
    return en_quote(adult.en, "asked", f"{c.en}, how much change should we get?", rng) + f' {c.en} answered at once, "{change} yuan!"'
