"""Planners: one function per story kind decides what happens, with every name and number fixed.

Part of ``glm3_teach.stories`` (the corpus of lessons 00, 01 and 06). ``plan_story`` draws a
story kind by its weight in ``PLANNERS``; the planner returns a ``StoryPlan`` (plain data:
three ducks, two tins of oolong tea at 58 yuan, 16 yuan change) that the renderers then tell in
each language. A planner draws only from the plan's random stream, so choosing other words
never changes what happens.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import glm3_teach.stories.render_shop  # noqa: F401  (registers the shop's event kinds)
from glm3_teach.stories.events import Event, StoryPlan, ev
from glm3_teach.stories.render_everyday import moral
from glm3_teach.stories.render_tales import HOME_SPOTS
from glm3_teach.stories.shop import MARKET_PRICES, TEA_WISHES, Product
from glm3_teach.stories.shop_talk import KEEPER, SHOP
from glm3_teach.stories.world import (
    ABROAD,
    AUNT_LI,
    CHILDREN,
    CITIES,
    CLIMBERS,
    COLOURS,
    CUSTOMERS,
    DAD,
    FAMILY,
    FINDS,
    FOREST_FOLK,
    FRUIT,
    GRANDMA,
    GRANDPA,
    HOBBIES,
    MANNERS,
    MOM,
    NATURE_QA,
    NEIGHBOUR,
    PARTS_OF_DAY,
    PET_KINDS,
    PET_NAMES,
    PLACES,
    RELATIVES,
    SEASONS,
    SNACKS,
    SPOTS,
    SWIMMERS,
    TEACHERS,
    TRANSPORT,
    WEATHER,
    WEATHERS,
    Character,
    Noun,
    Pair,
    Place,
    Weather,
    noun,
)


def _season_and_weather(rng: random.Random) -> tuple[Pair, Weather]:
    season = rng.choice(SEASONS)
    options = [w for w in WEATHERS if w.key != "snowy" or season.en == "winter"]
    return season, rng.choice(options)


def _pet(rng: random.Random) -> tuple[Character, Noun, Pair]:
    zh, en = rng.choice(PET_NAMES)
    return Character(zh, en, rng.choice("mf"), "animal"), rng.choice(PET_KINDS), rng.choice(COLOURS)


def plan_outing(rng: random.Random) -> StoryPlan:
    """A child goes somewhere with a grown-up, watches animals, counts, and maybe meets a problem."""
    child, adult = rng.choice(CHILDREN), rng.choice(FAMILY)
    season, weather = _season_and_weather(rng)
    part, place = rng.choice(PARTS_OF_DAY), rng.choice(PLACES)
    who = (child, adult)
    events = [ev("opening", season=season, weather=weather, part=part)]
    if rng.random() < 0.6:
        events.append(ev("introduce", who=child, age=rng.randint(4, 9)))
    if rng.random() < 0.4:
        events.append(ev("likes", who=child, hobby=rng.choice(HOBBIES)))
    how = rng.choice(TRANSPORT) if rng.random() < 0.4 else None
    manner = rng.choice(MANNERS) if how is None and rng.random() < 0.5 else None
    events.append(ev("go", who=who, place=place, how=how, manner=manner))
    sight, n = rng.choice(place.sights), rng.randint(2, 9)
    events.append(ev("see", who=who, n=n, sight=sight, place=place))
    roll = rng.random()
    if roll < 0.4:
        added = rng.randint(1, 6)
        events.append(ev("more_come", sight=sight, before=n, added=added))
        if rng.random() < 0.5:
            events.append(ev("count_them", who=child, n=n + added, thing=sight.thing, fingers=rng.random() < 0.4))
    elif roll < 0.75:
        events.append(ev("some_leave", sight=sight, before=n, gone=rng.randint(1, n - 1)))
    if rng.random() < 0.45:
        events.append(ev("nature_question", who=child, answerer=adult, qa=rng.choice(NATURE_QA)))
    if rng.random() < 0.35:
        thing, other = rng.choice(FINDS), rng.choice([c for c in CHILDREN if c != child])
        events += [ev("find", who=child, thing=thing, colour=rng.choice(COLOURS), spot=rng.choice(SPOTS)),
                   ev("ask_owner", who=child, thing=thing), ev("returned", who=child, owner=other, thing=thing)]
    if rng.random() < 0.25 and weather.key in ("sunny", "cloudy", "snowy"):
        change = {"sunny": "wind_rises", "cloudy": "sun_out", "snowy": "snow_heavier"}[weather.key]
        events.append(ev("weather_change", change=change))
        weather = WEATHER[{"wind_rises": "windy", "sun_out": "sunny", "snow_heavier": "snowy"}[change]]
    events += _maybe_problem(rng, child, adult, weather, place)
    home = {"morning": [11, 12], "afternoon": [17, 18], "evening": [19, 20]}[part.en]
    events.append(ev("go_home", who=who, hour=rng.choice(home)))
    events.append(ev("feeling", who=child, feeling=rng.choice(["happy", "glad", "tired", "excited"])))
    if rng.random() < 0.3:
        events.append(ev("dream", who=child, thing=Pair(sight.thing.zh, sight.thing.en_plural)))
    return StoryPlan("outing", events)


def _maybe_problem(rng: random.Random, child: Character, helper: Character, weather: Weather, place: Place) -> list[Event]:
    """Zero or one problem that fits the weather and place, with its solution and what the child learned."""
    if rng.random() < 0.45:
        return []
    options = ["fell"]
    if weather.key == "windy":
        options.append("kite")
    if place.en in ("the park", "the river", "the lake"):
        options.append("ball")
    if weather.key == "snowy":
        options.append("glove")
    if weather.key in ("cloudy", "rainy"):  # a cloudy day may turn to rain
        options += ["umbrella", "thunder"]
    problem = rng.choice(options)
    events = []
    if problem in ("umbrella", "thunder") and weather.key != "rainy":
        events.append(ev("weather_change", change="rain_starts"))
    base = dict(who=child, helper=helper, problem=problem)
    events += [ev("problem", **base), ev("solution", **base), ev("thanks", who=child, helper=helper)]
    if problem in ("umbrella", "thunder") and rng.random() < 0.5:
        events.append(ev("weather_change", change="rain_stops"))
    if rng.random() < 0.6:
        events.append(ev("lesson_learned", **base))
    return events


def plan_sharing(rng: random.Random) -> StoryPlan:
    """A child gets some fruit or snacks and shares them: equal shares or giving some away, with arithmetic."""
    child = rng.choice(CHILDREN)
    friends = tuple(rng.sample([c for c in CHILDREN if c != child], rng.randint(1, 3)))
    thing = rng.choice(SNACKS)
    people = len(friends) + 1
    events = [ev("opening", season=rng.choice(SEASONS), weather=WEATHER["sunny"], part=rng.choice(PARTS_OF_DAY))]
    if rng.random() < 0.5:
        events.append(ev("introduce", who=child, age=rng.randint(4, 9)))
    giver = rng.choice(FAMILY) if thing not in FRUIT or rng.random() < 0.5 else None
    if rng.random() < 0.5:
        n = people * rng.randint(1, 4)
        events += [ev("get_items", who=child, n=n, thing=thing, giver=giver), ev("friends_come", who=child, friends=friends),
                   ev("ask_for_one", who=friends[0], thing=thing), ev("of_course", who=child),
                   ev("share_equal", who=child, n=n, people=people, thing=thing)]
    else:
        n = rng.randint(len(friends) + 2, 12)
        events += [ev("get_items", who=child, n=n, thing=thing, giver=giver), ev("friends_come", who=child, friends=friends)]
        left = n
        for i, friend in enumerate(friends):
            after = len(friends) - 1 - i  # friends still waiting for theirs
            g = rng.randint(1, min(3, left - after - 1))  # keep one for each of them and one for the child
            events.append(ev("give", who=child, to=friend, n=g, thing=thing))
            left -= g
        asker = giver or rng.choice(FAMILY)
        events.append(ev("how_many_left", asker=asker, who=child, left=left, thing=thing))
    events.append(ev("feeling", who=(child, *friends), feeling=rng.choice(["happy", "glad"])))
    events.append(moral(rng, "share"))
    return StoryPlan("sharing", events)


def plan_lost_pet(rng: random.Random) -> StoryPlan:
    """A pet goes missing; the child searches two or three places, asks a neighbour, and finds it."""
    child, (pet, kind, colour) = rng.choice(CHILDREN), _pet(rng)
    spots = rng.sample(HOME_SPOTS, 4)
    events = [ev("has_pet", owner=child, pet=pet, species=kind, colour=colour),
              ev("pet_missing", who=child, pet=pet, part=rng.choice(PARTS_OF_DAY))]
    for order, spot in enumerate(spots[: rng.randint(1, 3)]):
        events.append(ev("search", who=child, pet=pet, spot=spot, order=order))
    found_at = spots[-1]
    if rng.random() < 0.6:
        events.append(ev("have_you_seen", who=child, asked=rng.choice([NEIGHBOUR, AUNT_LI, GRANDMA]), pet=pet, spot=found_at))
    doing = rng.choice(["sleep", "play", "chase"] + (["babies"] if pet.gender == "f" and kind.en == "cat" else []))
    events.append(ev("pet_found", who=child, pet=pet, spot=found_at, doing=doing, n=rng.randint(2, 5), species=kind))
    events += [ev("hug", who=child, pet=pet, carry_home=rng.random() < 0.5), ev("feeling", who=child, feeling=rng.choice(["happy", "glad", "surprised"]))]
    return StoryPlan("lost_pet", events)


def plan_school_maths(rng: random.Random) -> StoryPlan:
    """A teacher asks sums and word problems; children answer, sometimes after a second try."""
    teacher = rng.choice(TEACHERS)
    pupils = rng.sample(CHILDREN, 3)
    events = [ev("class_begins", teacher=teacher, part=rng.choice(PARTS_OF_DAY[:2]))]
    for pupil in pupils[: rng.randint(2, 3)]:
        op = rng.choice("+-")
        a, b = (rng.randint(1, 9), rng.randint(1, 9)) if op == "+" else (rng.randint(3, 12), 0)
        if op == "-":
            b = rng.randint(1, a - 1)
        right = a + b if op == "+" else a - b
        if rng.random() < 0.5:
            events.append(ev("sum_question", teacher=teacher, a=a, op=op, b=b))
        else:
            thing = noun("小鸟", "只", "bird") if op == "-" else rng.choice(FRUIT)
            events.append(ev("story_question", teacher=teacher, a=a, op=op, b=b, thing=thing))
        if rng.random() < 0.3:
            wrong = right + rng.choice([-1, 1]) if right > 0 else right + 1
            events += [ev("answer", who=pupil, value=wrong, hand=rng.random() < 0.4), ev("think_again", teacher=teacher, who=pupil),
                       ev("recount", who=pupil, value=right)]
        else:
            events.append(ev("answer", who=pupil, value=right, hand=rng.random() < 0.4))
        events.append(ev("praise", teacher=teacher))
    events.append(ev("class_ends", who=tuple(pupils)))
    if rng.random() < 0.5:
        events.append(moral(rng, "try", "careful"))
    return StoryPlan("school_maths", events)


def plan_fable(rng: random.Random) -> StoryPlan:
    """Forest animals: one has a problem, a friend able to solve it helps, and a moral."""
    problem = rng.choice(["river", "food", "apples", "house", "lost"])
    if problem == "lost":  # only a bird can look from above
        helper = Character("小鸟", "Little Bird", rng.choice("mf"), "animal")
    else:
        able = {"river": SWIMMERS, "food": ("小松鼠",), "apples": CLIMBERS}.get(problem)
        zh, en = rng.choice([f for f in FOREST_FOLK if able is None or f[0] in able])
        helper = Character(zh, en, rng.choice("mf"), "animal")
    # the hero can neither swim nor store nuts, or the problem would not be one
    zh, en = rng.choice([f for f in FOREST_FOLK if f[0] != helper.zh and f[0] not in SWIMMERS + ("小松鼠",)])
    hero = Character(zh, en, rng.choice("mf"), "animal")
    n = None
    if problem == "food":
        have = rng.randint(6, 12)
        n = (have, rng.randint(2, have // 2))  # pine cones the helper has, and gives
    elif problem == "apples":
        n = (2 * rng.randint(2, 6),)  # apples picked, shared half and half
    elif problem == "house":
        each = rng.randint(2, 5)
        n = (2 * each, each)  # logs in all, logs each of the two carries
    events = [ev("fable_start", who=(hero, helper)), ev("fable_problem", who=hero, problem=problem),
              ev("fable_help", who=hero, helper=helper, problem=problem, n=n), ev("thanks", who=hero, helper=helper)]
    if rng.random() < 0.6:
        events.append(ev("fable_return", who=hero, helper=helper, ending=rng.choice(["return_help", "best_friends"])))
    events.append(moral(rng, "help", "share") if problem in ("food", "apples") else moral(rng, "help"))
    return StoryPlan("fable", events)


def plan_market(rng: random.Random) -> StoryPlan:
    """A child and a grown-up buy fruit at the market: prices, a sum, payment and change."""
    child, adult = rng.choice(CHILDREN), rng.choice(FAMILY)
    fruit = [t for t in SNACKS if t.zh in MARKET_PRICES]
    basket = tuple((t, rng.randint(1, 6)) for t in rng.sample(fruit, rng.randint(1, 2)))
    total = sum(MARKET_PRICES[t.zh] * n for t, n in basket)
    paid = next(note for note in (10, 20, 50, 100) if note >= total)
    events = [ev("opening", season=rng.choice(SEASONS), weather=WEATHER[rng.choice(["sunny", "cloudy"])], part=PARTS_OF_DAY[0]),
              ev("go_market", who=(child, adult), seller=NEIGHBOUR), ev("want_fruit", who=child, basket=basket),
              ev("market_prices", seller=NEIGHBOUR, basket=basket), ev("market_sum", who=child, basket=basket)]
    change = paid - total
    events.append(ev("market_pay", who=adult, seller=NEIGHBOUR, total=total, paid=paid))
    if change and rng.random() < 0.5:
        events.append(ev("how_much_change", who=child, seller=NEIGHBOUR, change=change, adult=adult))
    events.append(ev("feeling", who=child, feeling="proud"))
    return StoryPlan("market", events)


def _some_products(rng: random.Random, must: tuple[Product, ...] = ()) -> tuple[Product, ...]:
    """Three to seven products for a price list, always including ``must``, in catalogue order."""
    chosen = set(p.key for p in must) | set(p.key for p in rng.sample(SHOP.products, rng.randint(3, 7)))
    return tuple(p for p in SHOP.products if p.key in chosen)


def _basket(rng: random.Random, products: tuple[Product, ...], max_kinds: int = 2) -> tuple:
    chosen = rng.sample(products, rng.randint(1, max_kinds))
    return tuple((p, rng.randint(1, 3) if p.price < 100 else 1) for p in chosen)


def _cash(total: int) -> int:
    """The note(s) a customer hands over: the smallest of 50, 100, 200, 300, 500 that covers ``total``."""
    return next(amount for amount in (50, 100, 200, 300, 500, 1000) if amount >= total)


def _shop_topics(rng: random.Random, k: int) -> list[tuple[str, object]]:
    """``k`` different customer questions, each with its argument (a product, a weekday, a wish, or None)."""
    topics = rng.sample(["price", "about", "brew", "hours", "day", "shipping", "returns", "payment", "where", "wish", "taste"], k)
    return [(topic, _topic_argument(topic, rng)) for topic in topics]


def _topic_argument(topic: str, rng: random.Random) -> object:
    if topic in ("price", "about"):
        return rng.choice(SHOP.products)
    if topic == "brew":
        return rng.choice(SHOP.teas)
    if topic == "day":
        return rng.randrange(7)
    if topic == "wish":
        return rng.choice(TEA_WISHES)
    return None


def plan_tea_visit(rng: random.Random) -> StoryPlan:
    """A child and a grown-up visit the tea shop during opening hours: questions, a purchase, a tasting."""
    child, adult = rng.choice(CHILDREN), rng.choice([GRANDMA, GRANDPA, MOM, DAD])
    day = rng.choice([d for d in range(7) if d != SHOP.closed_day])
    hour, minute = rng.randint(SHOP.open_hour, SHOP.close_hour - 2), rng.choice([0, 30])
    events = [ev("day_time", day=day, hour=hour, minute=minute, weather=rng.choice(WEATHERS[:4]))]
    if rng.random() < 0.4:
        events.append(ev("shop_intro"))
    events += [ev("arrive_shop", who=(child, adult)), ev("welcome", who=(child, adult))]
    if rng.random() < 0.5:
        events.append(ev("look_around", who=child))
    if rng.random() < 0.3:
        events.append(ev("notice") if rng.random() < 0.5 else ev("price_list", products=_some_products(rng)))
    for topic, arg in _shop_topics(rng, rng.randint(1, 3)):
        events.append(ev("shop_question", who=rng.choice([child, adult]), topic=topic, arg=arg,
                         answerer=KEEPER if rng.random() < 0.8 else SHOP.helper))
    basket = _basket(rng, SHOP.products)
    total = sum(p.price * n for p, n in basket)
    events += [ev("buy", who=adult, basket=basket), ev("total", basket=basket, total=total),
               ev("pay", who=adult, total=total, paid=_cash(total) if rng.random() < 0.5 else None)]
    if rng.random() < 0.6:
        tea = rng.choice(SHOP.teas)
        events += [ev("tasting", who=(child, adult), tea=tea),
                   ev("taste_verdict", who=child, tea=tea, verdict=rng.choice(["about", "delicious"]))]
    events.append(ev("feeling", who=child, feeling=rng.choice(["happy", "glad"])))
    return StoryPlan("tea_visit", events)


def _next_open_day(day: int) -> int:
    """The first day after ``day`` on which the shop opens: Monday (closed) -> Tuesday, Sunday -> Tuesday."""
    day = (day + 1) % 7
    return (day + 1) % 7 if day == SHOP.closed_day else day


def plan_tea_closed(rng: random.Random) -> StoryPlan:
    """Someone arrives when the shop is shut (a Monday, too early, too late), reads the notice, comes back."""
    child, adult = rng.choice(CHILDREN), rng.choice(FAMILY)
    reason = rng.choice(["monday", "early", "late"])
    day = SHOP.closed_day if reason == "monday" else rng.choice([d for d in range(7) if d != SHOP.closed_day])
    hour = {"monday": rng.randint(10, 17), "early": 8, "late": 21}[reason]
    minute = 30 if reason in ("early", "late") else rng.choice([0, 30])
    who = (child, adult)
    events = [ev("day_time", day=day, hour=hour, minute=minute, weather=rng.choice(WEATHERS[:4])),
              ev("closed", who=who, reason=reason), ev("notice")]
    if reason == "early":
        events.append(ev("come_back", who=who, reason=reason, day=day, hour=SHOP.open_hour))
    else:
        events.append(ev("come_back", who=who, reason=reason, day=_next_open_day(day), hour=rng.randint(SHOP.open_hour + 1, 17)))
    basket = _basket(rng, SHOP.teas, 1)
    total = sum(p.price * n for p, n in basket)
    events += [ev("welcome", who=who), ev("buy", who=adult, basket=basket), ev("total", basket=basket, total=total),
               ev("pay", who=adult, total=total, paid=None if rng.random() < 0.5 else _cash(total))]
    if rng.random() < 0.5:
        events.append(moral(rng, "check_first"))
    return StoryPlan("tea_closed", events)


def plan_tea_order(rng: random.Random) -> StoryPlan:
    """A grown-up phones the shop to send tea to a relative: shipping questions, the fee, the delivery."""
    caller, relative = rng.choice(CUSTOMERS), rng.choice(RELATIVES)
    abroad = rng.random() < 0.2
    place = rng.choice(ABROAD if abroad else CITIES)
    events = [ev("town")] if rng.random() < 0.3 else []
    events += [ev("phone_call", who=caller, relative=relative, city=place)]
    if abroad:
        events += [ev("shop_question", who=caller, topic="ship_abroad", arg=place),
                   ev("take_it_yourself", who=caller, relative=relative)]
        return StoryPlan("tea_order", events)
    events.append(ev("shop_question", who=caller, topic="ship_city", arg=place))
    for topic, arg in _shop_topics(rng, rng.randint(0, 2)):
        events.append(ev("shop_question", who=caller, topic=topic, arg=arg))
    basket = _basket(rng, SHOP.teas, 2)  # the caller wants to send tea, and perhaps something to drink it from
    teaware = [p for p in SHOP.products if not p.unit_en]
    if rng.random() < 0.3:
        basket += ((rng.choice(teaware), rng.randint(1, 2)),)
    total = sum(p.price * n for p, n in basket)
    events += [ev("buy", who=caller, basket=basket), ev("order_total", basket=basket, total=total),
               ev("parcel_arrives", who=caller, relative=relative, days=rng.randint(*SHOP.delivery_days))]
    return StoryPlan("tea_order", events)


def plan_tea_budget(rng: random.Random) -> StoryPlan:
    """A child with pocket money reads the price list and picks a present they can afford."""
    child = rng.choice(CHILDREN)
    relative = rng.choice([GRANDMA, GRANDPA, MOM, DAD])
    money = rng.choice([40, 50, 60, 80, 100, 150, 200])
    choice = rng.choice([p for p in SHOP.products if p.price <= money])
    too_dear = [p for p in SHOP.products if p.price > money]
    looked_at = (rng.choice(too_dear),) if too_dear and rng.random() < 0.7 else ()
    events = [ev("budget", who=child, money=money, reason=rng.choice(["birthday", "thanks"]), **{"for": relative}),
              ev("arrive_shop", who=child), ev("price_list", products=_some_products(rng, (choice, *looked_at)))]
    events += [ev("can_afford", who=child, product=p, money=money, again=i > 0) for i, p in enumerate((*looked_at, choice))]
    if rng.random() < 0.5:
        events.append(ev("shop_question", who=child, topic="about", arg=choice))
    basket = ((choice, 1),)
    events += [ev("buy", who=child, basket=basket), ev("total", basket=basket, total=choice.price),
               ev("pay", who=child, total=choice.price, paid=money), ev("feeling", who=child, feeling="proud")]
    return StoryPlan("tea_budget", events)


def plan_tea_at_home(rng: random.Random) -> StoryPlan:
    """A grandparent makes tea from the shop for visitors; a child counts the cups and serves them."""
    child, maker = rng.choice(CHILDREN), rng.choice([GRANDMA, GRANDPA])
    guests = tuple(rng.sample([AUNT_LI, NEIGHBOUR, MOM, DAD], rng.randint(1, 3)))
    tea = rng.choice(SHOP.teas)
    cups = len(guests) + 2
    events = [ev("opening", season=rng.choice(SEASONS), weather=rng.choice(WEATHERS[:4]), part=PARTS_OF_DAY[1]),
              ev("guests", who=maker, guests=guests), ev("tea_from_shop", who=maker, tea=tea),
              ev("make_tea", who=maker, tea=tea, cups=cups)]
    if rng.random() < 0.5:
        events.append(ev("count_them", who=child, n=cups, thing=noun("茶", "杯", "cup of tea", "cups of tea")))
    events += [ev("serve_tea", who=child), ev("taste_verdict", who=child, tea=tea, verdict=rng.choice(["about", "delicious"]))]
    if rng.random() < 0.4:
        events.append(ev("shop_question", who=rng.choice(guests), answerer=maker, topic="brew", arg=tea))
    events.append(ev("feeling", who=child, feeling=rng.choice(["happy", "proud"])))
    return StoryPlan("tea_at_home", events)


# Story kinds and how often each is drawn (the tea shop takes about a third of the stories).
PLANNERS: dict[str, tuple[Callable[[random.Random], StoryPlan], int]] = {
    "outing": (plan_outing, 18), "sharing": (plan_sharing, 9), "lost_pet": (plan_lost_pet, 7),
    "school_maths": (plan_school_maths, 7), "fable": (plan_fable, 9), "market": (plan_market, 6),
    "tea_visit": (plan_tea_visit, 16), "tea_closed": (plan_tea_closed, 6), "tea_order": (plan_tea_order, 9),
    "tea_budget": (plan_tea_budget, 6), "tea_at_home": (plan_tea_at_home, 7),
}


def plan_story(rng: random.Random) -> StoryPlan:
    """Draw a story kind by its weight, then let its planner decide everything that happens."""
    kinds = list(PLANNERS)
    kind = rng.choices(kinds, weights=[PLANNERS[k][1] for k in kinds])[0]
    return PLANNERS[kind][0](rng)
