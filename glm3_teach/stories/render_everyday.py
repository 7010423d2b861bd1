"""Renderers of everyday events: a day out, animals to watch and count, things found, weather, problems, morals.

Part of ``glm3_teach.stories`` (the corpus of lessons 00, 01 and 06); each function is the
renderer of one event kind (``events.renders``), with its Chinese and English phrasings side
by side. ``moral`` is the planners' helper that picks a moral to end a story with.
"""

from __future__ import annotations

import random

from glm3_teach.stories.events import Event, ev, renders
from glm3_teach.stories.grammar import (
    cap,
    en_quote,
    full_stop,
    he,
    him,
    his,
    name,
    quote,
    zh_quote,
)
from glm3_teach.stories.numbers import (
    a_or_an,
    en_clock,
    en_count,
    en_number,
    zh_clock,
    zh_count,
    zh_number,
)
from glm3_teach.stories.world import ARRIVE, FEELINGS, LEAVE, Pair


@renders("opening")
def _opening(e: Event, lang: str, rng: random.Random) -> str:
    s, w, p = e["season"], e["weather"], e["part"]
    if lang == "zh":
        return rng.choice([f"{s.zh}的一个{p.zh}，{w.zh_clause}。", f"那是一个{w.zh_adj}{s.zh}{p.zh}。",
                           f"{s.zh}到了。这天{p.zh}，{w.zh_clause}。"])
    return rng.choice([f"It was a {w.en_adj} {s.en} {p.en}.", f"One {s.en} {p.en}, {w.en_clause}.",
                       f"It was {s.en}. That {p.en}, {w.en_clause}."])


@renders("town")
def _town(e: Event, lang: str, rng: random.Random) -> str:
    if lang == "zh":
        return rng.choice(["青石镇是一个小镇，一条小河从镇子中间流过。", "在一个叫青石镇的小镇上，有一条小河。"])
    return rng.choice(["Qingshi Town was a small town with a little river running through the middle.",
                       "There was a small town called Qingshi Town, with a little river in it."])


@renders("introduce")
def _introduce(e: Event, lang: str, rng: random.Random) -> str:
    c, age = e["who"], e["age"]
    if lang == "zh":
        kid = "男孩" if c.gender == "m" else "女孩"
        return rng.choice([f"{c.zh}今年{zh_number(age)}岁。", f"{c.zh}是一个{zh_number(age)}岁的{kid}。",
                           f"有一个{zh_number(age)}岁的小{kid}，名叫{c.zh}。"])
    kid = "boy" if c.gender == "m" else "girl"
    return rng.choice([f"{c.en} was {en_number(age)} years old.", f"{c.en} was {a_or_an(f'{en_number(age)}-year-old {kid}')}.",
                       f"There was a little {kid} called {c.en}, who was {en_number(age)} years old."])


@renders("likes")
def _likes(e: Event, lang: str, rng: random.Random) -> str:
    c, h = e["who"], e["hobby"]
    if lang == "zh":
        return rng.choice([f"{c.zh}很喜欢{h.zh}。", f"{c.zh}非常喜欢{h.zh}。", f"{he(c, lang)}特别喜欢{h.zh}。"])
    return rng.choice([f"{c.en} loved {h.en}.", f"{c.en} liked {h.en} very much.", f"{cap(he(c, lang))} really liked {h.en}."])


@renders("has_pet")
def _has_pet(e: Event, lang: str, rng: random.Random) -> str:
    owner, pet, kind, colour = e["owner"], e["pet"], e["species"], e["colour"]
    if lang == "zh":
        return rng.choice([f"{owner.zh}有一{kind.measure}{colour.zh}的小{kind.zh}，名叫{pet.zh}。",
                           f"{owner.zh}家里有一{kind.measure}{colour.zh}的小{kind.zh}，它的名字叫{pet.zh}。"])
    return rng.choice([f"{owner.en} had a little {colour.en} {kind.en} called {pet.en}.",
                       f"{owner.en} had a little {colour.en} {kind.en} at home, and {his(pet, lang)} name was {pet.en}."])


@renders("go")
def _go(e: Event, lang: str, rng: random.Random) -> str:
    who, place, how, manner = e["who"], e["place"], e.get("how"), e.get("manner")
    names = name(who, lang)
    if lang == "zh":
        if how:
            return rng.choice([f"{names}{how.zh}去了{place.zh}。", f"{names}{how.zh}来到了{place.zh}。"])
        if manner:
            return rng.choice([f"{names}{manner.zh}去了{place.zh}。", f"{names}{manner.zh}来到了{place.zh}。"])
        return rng.choice([f"{names}去了{place.zh}。", f"{names}来到了{place.zh}。", f"{names}一起去了{place.zh}。"])
    if how:
        return rng.choice([f"{names} went to {place.en} {how.en}.", f"{names} got to {place.en} {how.en}."])
    if manner:
        return rng.choice([f"{names} went to {place.en} {manner.en}.", f"{names} set off for {place.en} {manner.en}."])
    return rng.choice([f"{names} went to {place.en}.", f"{names} set off for {place.en}.", f"{names} went to {place.en} together."])


@renders("see")
def _see(e: Event, lang: str, rng: random.Random) -> str:
    who, n, sight, place = e["who"], e["n"], e["sight"], e["place"]
    if lang == "zh":
        count = zh_count(n, sight.thing)
        return rng.choice([f"{name(who, lang)}看到{count}{sight.zh}。", f"{place.zh_at}，有{count}{sight.zh}。",
                           f"{he(who, lang)}发现有{count}正{sight.zh}。"])
    count = en_count(n, sight.thing)
    be = "was" if n == 1 else "were"
    return rng.choice([f"{name(who, lang)} saw {count} {sight.en}.", f"{cap(place.en_at)}, there {be} {count} {sight.en}.",
                       f"{cap(he(who, lang))} spotted {count} {sight.en}."])


@renders("more_come")
def _more_come(e: Event, lang: str, rng: random.Random) -> str:
    thing, added, total, move = e["sight"].thing, e["added"], e["before"] + e["added"], e["sight"].move
    if lang == "zh":
        first = rng.choice(["过了一会儿，", "不一会儿，", "这时，"])
        return f"{first}又{ARRIVE[move].zh}{zh_count(added, thing)}。现在一共有{zh_count(total, thing)}了。"
    first = rng.choice(["After a while, ", "Soon, ", "Just then, "])
    more = f"{en_number(added)} more {thing.en if added == 1 else thing.en_plural}"  # four more seagulls
    return (f"{first}{more} {ARRIVE[move].en}. "
            f"Now there {'was' if total == 1 else 'were'} {en_count(total, thing)} in all.")


@renders("some_leave")
def _some_leave(e: Event, lang: str, rng: random.Random) -> str:
    thing, gone, left, move = e["sight"].thing, e["gone"], e["before"] - e["gone"], e["sight"].move
    if lang == "zh":
        return rng.choice([f"后来，有{zh_count(gone, measure=thing.measure)}{LEAVE[move].zh}，还剩下{zh_count(left, measure=thing.measure)}。",
                           f"过了一会儿，{zh_count(gone, thing)}{LEAVE[move].zh}，只剩下{zh_count(left, thing)}了。"])
    word = thing.en if left == 1 else thing.en_plural
    return rng.choice([f"Later, {en_number(gone)} of them {LEAVE[move].en}, and {en_number(left)} {'was' if left == 1 else 'were'} left.",
                       f"After a while, {en_count(gone, thing)} {LEAVE[move].en}, and only {en_number(left)} {word} stayed."])


@renders("count_them")
def _count_them(e: Event, lang: str, rng: random.Random) -> str:
    c, n, thing = e["who"], e["n"], e["thing"]
    if e.get("fingers") and n >= 3:
        if lang == "zh":
            return f"{c.zh}伸出手指数：“一、二、三……”一共有{zh_count(n, thing)}。"
        return f'{c.en} counted on {his(c, lang)} fingers, "One, two, three..." There were {en_count(n, thing)} in all.'
    if lang == "zh":
        return rng.choice([f"{c.zh}数了数，一共是{zh_count(n, thing)}。", f"{c.zh}数了一遍，一共有{zh_count(n, thing)}。"])
    return rng.choice([f"{c.en} counted them: there were {en_count(n, thing)} in all.", f"{c.en} counted them all: {en_count(n, thing)}."])


@renders("find")
def _find(e: Event, lang: str, rng: random.Random) -> str:
    c, thing, colour, spot = e["who"], e["thing"], e["colour"], e["spot"]
    if lang == "zh":
        return rng.choice([f"{c.zh}在{spot.zh}找到了一{thing.measure}{colour.zh}的{thing.zh}。",
                           f"{spot.zh}有一{thing.measure}{colour.zh}的{thing.zh}，是{c.zh}先看见的。"])
    found = a_or_an(f"{colour.en} {thing.en}")
    return rng.choice([f"{c.en} found {found} {spot.en}.", f"There was {found} {spot.en}, and {c.en} saw it first."])


@renders("ask_owner")
def _ask_owner(e: Event, lang: str, rng: random.Random) -> str:
    c, thing = e["who"], e["thing"]
    line = Pair(f"这是谁的{thing.zh}？我们要还给它的主人。", f"Whose {thing.en} is this? We should give it back.")
    return quote(c, "ask", line, lang, rng)


@renders("returned")
def _returned(e: Event, lang: str, rng: random.Random) -> str:
    c, owner, thing = e["who"], e["owner"], e["thing"]
    if lang == "zh":
        return f"原来，这{thing.measure}{thing.zh}是{owner.zh}的。{c.zh}把它还给了{owner.zh}，{owner.zh}高兴地说：“谢谢你！”"
    return (f"It turned out that the {thing.en} was {owner.en}'s. {c.en} gave it back to {owner.en}, "
            f'and {owner.en} said happily, "Thank you!"')


@renders("nature_question")
def _nature_question(e: Event, lang: str, rng: random.Random) -> str:
    child, grown_up, (qz, az, qe, ae) = e["who"], e["answerer"], e["qa"]
    if lang == "zh":
        ask = zh_quote(child.zh, "问", f"{grown_up.zh}，{qz}", rng)
        return ask + f"{grown_up.zh}回答：“{az}”"
    ask = en_quote(child.en, "asked", f"{grown_up.en}, {qe[0].lower()}{qe[1:]}", rng)
    return ask + f' {grown_up.en} answered, "{ae}"'


@renders("weather_change")
def _weather_change(e: Event, lang: str, rng: random.Random) -> str:
    change = e["change"]
    table = {
        "rain_starts": (["突然，天上下起了大雨。", "忽然，下起了大雨。"],
                        ["Suddenly, it began to rain hard.", "All of a sudden, heavy rain began to fall."]),
        "rain_stops": (["过了一会儿，雨停了，天上出现了一道彩虹。", "雨慢慢停了，天边挂起了一道彩虹。"],
                       ["After a while, the rain stopped and a rainbow appeared in the sky.",
                        "Slowly the rain stopped, and a rainbow hung across the sky."]),
        "wind_rises": (["忽然，刮起了一阵大风。", "这时，风越刮越大。"],
                       ["Suddenly, a strong wind began to blow.", "Then the wind blew harder and harder."]),
        "sun_out": (["云慢慢散开了，太阳出来了。", "不一会儿，太阳从云后面钻了出来。"],
                    ["The clouds slowly moved away, and the sun came out.", "Soon the sun peeped out from behind the clouds."]),
        "snow_heavier": (["雪越下越大，地上全白了。", "雪下得更大了，地上铺了一层白白的雪。"],
                         ["The snow fell harder and harder, and the ground turned white.",
                          "It snowed even more, and the ground was covered in white."]),
    }
    zh, en = table[change]
    return rng.choice(zh if lang == "zh" else en)


# Problems on an outing and how a helper solves them: (problem zh, en), (solution zh, en), (lesson zh, en).
# {c} is the child's name, {h} the helper's, {his} {him} {he} the child's pronouns.
PROBLEMS = {
    "kite": (("{c}正在放风筝，一阵风吹来，风筝挂在了高高的树枝上。",
              "{c} was flying a kite when a gust of wind blew it into a tall tree, and it got stuck on a branch."),
             ("{h}找来一根长长的竹竿，小心地把风筝取了下来。", "{h} found a long bamboo pole and carefully got the kite down."),
             ("从那以后，{c}放风筝的时候总是离大树远远的。", "After that, {c} always flew {his} kite far away from the big trees.")),
    "ball": (("{c}在水边玩球，球滚进了水里，漂得越来越远。",
              "{c} was playing with a ball by the water when it rolled in and floated farther and farther away."),
             ("{h}拿来一根长树枝，慢慢地把球拨回了岸边。", "{h} took a long stick and slowly pushed the ball back to the bank."),
             ("{c}明白了，在水边玩的时候要小心。", "{c} learned to be careful when playing near water.")),
    "fell": (("{c}跑得太快，不小心摔倒了，膝盖擦破了一点皮。", "{c} ran too fast, tripped and scraped {his} knee a little."),
             ("{h}帮{him}把伤口洗干净，贴上了一个创可贴。", "{h} washed the scrape clean and put a plaster on it."),
             ("{c}知道了，走路的时候要看着脚下。", "{c} learned to watch where {he} was going.")),
    "umbrella": (("{c}没有带伞，头发一下子就湿了。", "{c} had no umbrella, and {his} hair was soon wet."),
                 ("{h}撑开一把大伞，让{c}站到伞下面。", "{h} opened a big umbrella and let {c} stand under it."),
                 ("从那天起，{c}出门前总会看看天，记得带伞。",
                  "From that day on, {c} always looked at the sky before going out and remembered to take an umbrella.")),
    "thunder": (("天上打起了雷，{c}有点害怕。", "Thunder rumbled in the sky, and {c} felt a little scared."),
                ("{h}抱住{him}说：“别怕，雷声只是很响，我们在这里很安全。”",
                 '{h} hugged {him} and said, "Don\'t be afraid. Thunder is only loud, and we are safe here."'),
                ("后来，{c}就不那么怕打雷了。", "After that, {c} was not so afraid of thunder.")),
    "glove": (("{c}发现自己的一只手套不见了。", "{c} found that one of {his} gloves was missing."),
              ("{h}沿着来时的路往回找，在雪地里找到了那只手套。", "{h} walked back along the path and found the glove in the snow."),
              ("以后出门，{c}都会把手套放好。", "After that, {c} always kept {his} gloves safe.")),
}


def _problem_text(e: Event, lang: str, part: int) -> str:
    c, helper = e["who"], e["helper"]
    text = PROBLEMS[e["problem"]][part][0 if lang == "zh" else 1]
    return text.format(c=name(c, lang), h=name(helper, lang), he=he(c, lang), him=him(c, lang), his=his(c, lang))


@renders("problem")
def _problem(e: Event, lang: str, rng: random.Random) -> str:
    return _problem_text(e, lang, 0)


@renders("solution")
def _solution(e: Event, lang: str, rng: random.Random) -> str:
    return _problem_text(e, lang, 1)


@renders("lesson_learned")
def _lesson_learned(e: Event, lang: str, rng: random.Random) -> str:
    return _problem_text(e, lang, 2)


@renders("thanks")
def _thanks(e: Event, lang: str, rng: random.Random) -> str:
    c, helper = e["who"], e["helper"]
    line = rng.choice([Pair(f"谢谢你，{helper.zh}！", f"Thank you, {helper.en}!"), Pair(f"谢谢{helper.zh}！", f"Thanks, {helper.en}!")])
    return quote(c, "say", line, lang, rng)


@renders("feeling")
def _feeling(e: Event, lang: str, rng: random.Random) -> str:
    who, f = e["who"], FEELINGS[e["feeling"]]
    if lang == "zh":
        return rng.choice([f"{name(who, lang)}很{f.zh}。", f"{name(who, lang)}觉得很{f.zh}。",
                           f"{name(who, lang)}真{f.zh}啊！"])
    be = "were" if isinstance(who, tuple) and len(who) > 1 else "was"
    return rng.choice([f"{name(who, lang)} {be} very {f.en}.", f"{name(who, lang)} felt very {f.en}.",
                       f"How {f.en} {name(who, lang)} {be}!"])


@renders("go_home")
def _go_home(e: Event, lang: str, rng: random.Random) -> str:
    who, hour = e["who"], e["hour"]
    if lang == "zh":
        return rng.choice([f"{zh_clock(hour)}，{name(who, lang)}回家了。", f"到了{zh_clock(hour)}，{name(who, lang)}该回家了。",
                           f"{name(who, lang)}{zh_clock(hour)}回到了家。"])
    return rng.choice([f"At {en_clock(hour, spoken=rng.random() < 0.5)}, {name(who, lang)} went home.",
                       f"At {en_clock(hour)}, it was time for {name(who, lang)} to go home.",
                       full_stop(f"{name(who, lang)} got home at {en_clock(hour, spoken=False)}")])


@renders("dream")
def _dream(e: Event, lang: str, rng: random.Random) -> str:
    c, thing = e["who"], e["thing"]
    if lang == "zh":
        return rng.choice([f"那天晚上，{c.zh}梦见了{thing.zh}。", f"晚上睡觉的时候，{c.zh}做了一个关于{thing.zh}的梦。"])
    return rng.choice([f"That night, {c.en} dreamed of {thing.en}.", f"When {c.en} went to sleep that night, {he(c, lang)} had a dream about {thing.en}."])


# Morals to end a story with. Each is one sentence in both languages; the plan picks which.
MORALS = {
    "share": (Pair("分享让大家都很快乐。", "Sharing made everyone happy."),
              Pair("东西分给朋友，快乐就变多了。", "When you share with friends, there is more happiness to go round."),
              Pair("懂得分享的人，朋友也多。", "People who share have lots of friends.")),
    "help": (Pair("好朋友就要互相帮助。", "Good friends help each other."),
             Pair("帮助别人，自己也会很快乐。", "Helping others makes you happy too."),
             Pair("有困难的时候，朋友会来帮你。", "When you are in trouble, your friends will come to help.")),
    "careful": (Pair("做事要细心。", "It pays to be careful."),
                Pair("细心一点，就不会出错。", "If you are careful, you make fewer mistakes.")),
    "check_first": (Pair("出门以前先看一看，就不会白跑一趟。", "If you check before you go, you won't make the trip for nothing."),
                    Pair("出门前先问清楚开门的时间，是个好习惯。", "Asking about opening hours before you go is a good habit.")),
    "try": (Pair("遇到难题不要怕，多想一想就会了。", "Don't be afraid of hard problems; think a little longer and you will get there."),
            Pair("只要认真想，难题也能解决。", "If you think carefully, even a hard problem can be solved.")),
}


@renders("moral")
def _moral(e: Event, lang: str, rng: random.Random) -> str:
    moral = MORALS[e["moral"]][e["variant"]]
    return moral.zh if lang == "zh" else moral.en


def moral(rng: random.Random, *kinds: str) -> Event:
    """A moral of one of ``kinds``, its sentence chosen by the plan."""
    kind = rng.choice(kinds)
    return ev("moral", moral=kind, variant=rng.randrange(len(MORALS[kind])))
