"""Renderers of the children's tales: sharing and giving, a lost pet, a maths lesson, forest fables.

Part of ``glm3_teach.stories`` (the corpus of lessons 00, 01 and 06); each function is the
renderer of one event kind (``events.renders``), with its Chinese and English phrasings side
by side.
"""

from __future__ import annotations

import random

from glm3_teach.stories.events import Event, renders
from glm3_teach.stories.grammar import (
    cap,
    en_quote,
    he,
    him,
    his,
    name,
    quote,
    say,
    zh_quote,
)
from glm3_teach.stories.numbers import a_or_an, en_count, en_number, zh_count, zh_number
from glm3_teach.stories.world import Character, Pair

# --- sharing and arithmetic ----------------------------------------------------------------


@renders("get_items")
def _get_items(e: Event, lang: str, rng: random.Random) -> str:
    c, n, thing, giver = e["who"], e["n"], e["thing"], e.get("giver")
    if giver is None:
        if lang == "zh":
            return rng.choice([f"{c.zh}从树上摘了{zh_count(n, thing)}。", f"{c.zh}从树上摘下了{zh_count(n, thing)}。"])
        return rng.choice([f"{c.en} picked {en_count(n, thing)} from a tree.", f"{c.en} picked {en_count(n, thing)} off a tree."])
    if lang == "zh":
        return rng.choice([f"{giver.zh}给了{c.zh}{zh_count(n, thing)}。", f"{c.zh}有{zh_count(n, thing)}，是{giver.zh}给{he(c, lang)}的。"])
    return rng.choice([f"{giver.en} gave {c.en} {en_count(n, thing)}.", f"{c.en} had {en_count(n, thing)} that {giver.en} had given {him(c, lang)}."])


@renders("friends_come")
def _friends_come(e: Event, lang: str, rng: random.Random) -> str:
    c, friends = e["who"], e["friends"]
    if lang == "zh":
        return rng.choice([f"这时，{name(friends, lang)}来找{c.zh}玩。", f"没过多久，{name(friends, lang)}来了。"])
    return rng.choice([f"Just then, {name(friends, lang)} came to play with {c.en}.", f"Soon, {name(friends, lang)} came over."])


@renders("share_equal")
def _share_equal(e: Event, lang: str, rng: random.Random) -> str:
    c, n, people, thing = e["who"], e["n"], e["people"], e["thing"]
    each = n // people
    if lang == "zh":
        return rng.choice([f"{c.zh}把{zh_count(n, thing)}分给大家，{zh_count(people, measure='个')}人，每人{zh_count(each, measure=thing.measure)}，正好分完。",
                           f"一共有{zh_count(people, measure='个')}人，{c.zh}给每个人{zh_count(each, measure=thing.measure)}，{zh_count(n, thing)}都分完了。"])
    return rng.choice([f"{c.en} shared the {en_count(n, thing)} among the {en_number(people)} of them, so each one got {en_number(each)}, and none were left over.",
                       f"There were {en_number(people)} of them, so {c.en} gave everyone {en_number(each)}. All {en_count(n, thing)} were gone."])


@renders("give")
def _give(e: Event, lang: str, rng: random.Random) -> str:
    c, friend, g, thing = e["who"], e["to"], e["n"], e["thing"]
    if lang == "zh":
        return rng.choice([f"{c.zh}给了{friend.zh}{zh_count(g, thing)}。", f"{c.zh}送给{friend.zh}{zh_count(g, thing)}。"])
    return rng.choice([f"{c.en} gave {friend.en} {en_count(g, thing)}.", f"{c.en} gave {en_count(g, thing)} to {friend.en}."])


@renders("how_many_left")
def _how_many_left(e: Event, lang: str, rng: random.Random) -> str:
    asker, c, left, thing = e["asker"], e["who"], e["left"], e["thing"]
    if lang == "zh":
        ask = zh_quote(asker.zh, "问", f"{c.zh}，你还剩几{thing.measure}{thing.zh}？", rng)
        return ask + f"{c.zh}想了想，回答：“还剩{zh_count(left, measure=thing.measure)}。”"
    ask = en_quote(asker.en, "asked", f"{c.en}, how many {thing.en_plural} do you have left?", rng)
    return ask + f' {c.en} thought for a moment and answered, "I have {en_number(left)} left."'


@renders("ask_for_one")
def _ask_for_one(e: Event, lang: str, rng: random.Random) -> str:
    friend, thing = e["who"], e["thing"]
    line = Pair(f"我可以吃一{thing.measure}{thing.zh}吗？", f"May I have {a_or_an(thing.en)}?")
    return quote(friend, "ask", line, lang, rng)


@renders("of_course")
def _of_course(e: Event, lang: str, rng: random.Random) -> str:
    c = e["who"]
    return quote(c, "say", rng.choice([Pair("当然可以！", "Of course!"), Pair("好呀，给你！", "Sure, here you are!")]), lang, rng)


# --- a lost pet ----------------------------------------------------------------------------

HOME_SPOTS = (Pair("床底下", "under the bed"), Pair("院子里", "in the yard"), Pair("沙发后面", "behind the sofa"),
              Pair("厨房里", "in the kitchen"), Pair("楼下", "downstairs"), Pair("门口", "by the front door"))


@renders("pet_missing")
def _pet_missing(e: Event, lang: str, rng: random.Random) -> str:
    c, pet, part = e["who"], e["pet"], e["part"]
    if lang == "zh":
        return rng.choice([f"一天{part.zh}，{c.zh}发现{pet.zh}不见了！", f"有一天{part.zh}，{c.zh}怎么也找不到{pet.zh}了。"])
    return rng.choice([f"One {part.en}, {c.en} found that {pet.en} was gone!", f"One {part.en}, {c.en} could not find {pet.en} anywhere."])


@renders("search")
def _search(e: Event, lang: str, rng: random.Random) -> str:
    c, pet, spot, order = e["who"], e["pet"], e["spot"], e["order"]
    if lang == "zh":
        first = ["先", "又", "接着"][order]
        return rng.choice([f"{c.zh}{first}去{spot.zh}找，可是{pet.zh}不在那里。", f"{c.zh}{first}看了看{spot.zh}，没有{pet.zh}。"])
    first = ["First", "Then", "Next"][order]
    return rng.choice([f"{first} {c.en} looked {spot.en}, but {pet.en} was not there.",
                       f"{first} {c.en} checked {spot.en}. No {pet.en}."])


@renders("have_you_seen")
def _have_you_seen(e: Event, lang: str, rng: random.Random) -> str:
    c, asked, pet, spot = e["who"], e["asked"], e["pet"], e["spot"]
    if lang == "zh":
        ask = zh_quote(c.zh, "问", f"{asked.zh}，您看见{pet.zh}了吗？", rng)
        return ask + f"{asked.zh}说：“看见了，它刚才在{spot.zh}。”"
    ask = en_quote(c.en, "asked", f"{asked.en}, have you seen {pet.en}?", rng)
    return ask + f' {asked.en} said, "Yes, I saw {him(pet, lang)} {spot.en} a moment ago."'


@renders("pet_found")
def _pet_found(e: Event, lang: str, rng: random.Random) -> str:
    c, pet, spot, doing, n, kind = e["who"], e["pet"], e["spot"], e["doing"], e.get("n"), e["species"]
    if lang == "zh":
        found = rng.choice([f"最后，{c.zh}在{spot.zh}找到了{pet.zh}。", f"{c.zh}赶紧去{spot.zh}看，终于找到了{pet.zh}！"])
        if doing == "babies":
            return found + f"{pet.zh}身边有{zh_count(n, measure=kind.measure)}小{kind.zh}。原来{pet.zh}当妈妈了！"
        return found + {"sleep": f"{pet.zh}正在那里呼呼大睡。", "play": f"{pet.zh}正在和{zh_count(n, measure='只')}小鸟玩。",
                        "chase": f"{pet.zh}正在追一只蝴蝶。"}[doing]
    found = rng.choice([f"At last, {c.en} found {pet.en} {spot.en}.", f"{c.en} hurried to look {spot.en} and found {pet.en} at last!"])
    if doing == "babies":  # n is 2 or more
        return found + f" Next to {pet.en} were {en_number(n)} baby {kind.en_plural}. {pet.en} had become a mother!"
    return found + {"sleep": f" {pet.en} was fast asleep there.", "play": f" {pet.en} was playing with {en_number(n)} little birds.",
                    "chase": f" {pet.en} was chasing a butterfly."}[doing]


@renders("hug")
def _hug(e: Event, lang: str, rng: random.Random) -> str:
    c, pet, home = e["who"], e["pet"], e["carry_home"]
    if lang == "zh":
        return f"{c.zh}把{pet.zh}抱回了家。" if home else rng.choice([f"{c.zh}紧紧地抱住了{pet.zh}。", f"{c.zh}一把抱住了{pet.zh}。"])
    return f"{c.en} carried {pet.en} home." if home else rng.choice([f"{c.en} gave {pet.en} a big hug.", f"{c.en} hugged {pet.en} tightly."])


# --- a maths lesson ------------------------------------------------------------------------


def _sum_words(a: int, op: str, b: int, lang: str) -> str:
    if lang == "zh":
        return f"{zh_number(a)}{'加' if op == '+' else '减'}{zh_number(b)}"
    return f"{en_number(a)} {'plus' if op == '+' else 'minus'} {en_number(b)}"


@renders("class_begins")
def _class_begins(e: Event, lang: str, rng: random.Random) -> str:
    teacher, part = e["teacher"], e["part"]
    if lang == "zh":
        return rng.choice([f"{part.zh}，{teacher.zh}给大家上数学课。", f"{part.zh}是数学课，{teacher.zh}走进了教室。"])
    return rng.choice([f"That {part.en}, {teacher.en} gave the class a math lesson.",
                       f"The {part.en} lesson was math, and {teacher.en} came into the classroom."])


@renders("sum_question")
def _sum_question(e: Event, lang: str, rng: random.Random) -> str:
    teacher, a, op, b = e["teacher"], e["a"], e["op"], e["b"]
    words = _sum_words(a, op, b, lang)
    if lang == "zh":
        return say(teacher, "ask", rng.choice([f"{words}等于几？", f"谁知道{words}等于几？"]), lang, rng)
    return say(teacher, "ask", rng.choice([f"What is {words}?", f"Who knows what {words} is?"]), lang, rng)


@renders("story_question")
def _story_question(e: Event, lang: str, rng: random.Random) -> str:
    teacher, a, op, b, thing = e["teacher"], e["a"], e["op"], e["b"], e["thing"]
    m = thing.measure
    if lang == "zh":
        if op == "-":
            line = f"树上有{zh_count(a, thing)}，飞走了{zh_count(b, measure=m)}，还剩几{m}？"
        else:
            line = f"盘子里有{zh_count(a, thing)}，妈妈又放进去{zh_count(b, measure=m)}，现在一共有几{m}？"
        return say(teacher, "ask", line, lang, rng)
    if op == "-":
        line = (f"There {'is' if a == 1 else 'are'} {en_count(a, thing)} in a tree. {cap(en_number(b))} "
                f"{'flies' if b == 1 else 'fly'} away. How many are left?")
    else:
        line = f"There are {en_count(a, thing)} on a plate. Mom puts in {en_number(b)} more. How many are there now?"
    return say(teacher, "ask", line, lang, rng)


@renders("answer")
def _answer(e: Event, lang: str, rng: random.Random) -> str:
    c, value, hand = e["who"], e["value"], e.get("hand")
    if lang == "zh":
        opener = f"{c.zh}举起了手。" if hand else ""
        return opener + say(c, "answer", rng.choice([f"等于{zh_number(value)}。", f"是{zh_number(value)}！"]), lang, rng)
    opener = f"{c.en} put up {his(c, lang)} hand. " if hand else ""
    return opener + say(c, "answer", rng.choice([f"It's {en_number(value)}.", f"{cap(en_number(value))}!"]), lang, rng)


@renders("think_again")
def _think_again(e: Event, lang: str, rng: random.Random) -> str:
    teacher, c = e["teacher"], e["who"]
    line = Pair(f"{c.zh}，再想一想。", f"Think again, {c.en}.")
    return quote(teacher, "say", line, lang, rng)


@renders("recount")
def _recount(e: Event, lang: str, rng: random.Random) -> str:
    c, value = e["who"], e["value"]
    if lang == "zh":
        return f"{c.zh}掰着手指又数了一遍，说：“是{zh_number(value)}！”"
    return f'{c.en} counted on {his(c, lang)} fingers again and said, "It\'s {en_number(value)}!"'


@renders("praise")
def _praise(e: Event, lang: str, rng: random.Random) -> str:
    teacher = e["teacher"]
    line = Pair("对了，真棒！", "That's right. Well done!") if rng.random() < 0.5 else Pair("答对了！", "Correct!")
    return quote(teacher, "say", line, lang, rng)


@renders("class_ends")
def _class_ends(e: Event, lang: str, rng: random.Random) -> str:
    who = e["who"]
    if lang == "zh":
        return rng.choice([f"下课了，{name(who, lang)}高高兴兴地去操场玩了。", f"下课铃响了，{name(who, lang)}跑到操场上去玩。"])
    return rng.choice([f"When the lesson was over, {name(who, lang)} happily went out to the playground.",
                       f"The bell rang, and {name(who, lang)} ran out to play in the playground."])


# --- forest fables -------------------------------------------------------------------------


@renders("fable_start")
def _fable_start(e: Event, lang: str, rng: random.Random) -> str:
    folk = e["who"]
    if lang == "zh":
        return rng.choice([f"森林里住着{name(folk, lang)}，它们是好朋友。", f"在一片大森林里，{name(folk, lang)}是好朋友。"])
    return rng.choice([f"{name(folk, lang)} lived in the forest, and they were good friends.",
                       f"In a big forest, {name(folk, lang)} were good friends."])


@renders("fable_problem")
def _fable_problem(e: Event, lang: str, rng: random.Random) -> str:
    hero, problem = e["who"], e["problem"]
    z, en = hero.zh, hero.en
    text = {
        "river": (f"有一天，{z}想到河对岸去，可是河水太深了，它不会游泳。",
                  f"One day, {en} wanted to get to the other side of the river, but the water was too deep and {he(hero, 'en')} could not swim."),
        "food": (f"冬天到了，{z}的家里一点吃的也没有了，它饿得肚子咕咕叫。",
                 f"Winter came, and there was no food left in {en}'s home. {cap(his(hero, 'en'))} tummy rumbled with hunger."),
        "apples": (f"{z}看见树上有很多红红的苹果，可是树太高了，它够不着。",
                   f"{en} saw lots of red apples in a tree, but the tree was too tall, and {he(hero, 'en')} could not reach them."),
        "house": (f"一天晚上，一阵大风把{z}的小木屋吹倒了。",
                  f"One night, a strong wind blew down {en}'s little wooden house."),
        "lost": (f"{z}在森林里走啊走，走得太远了，找不到回家的路了。",
                 f"{en} walked and walked through the forest, went too far, and could not find the way home."),
    }[problem]
    return text[0] if lang == "zh" else text[1]


def _fable_lines(hero: Character, helper: Character, problem: str, n: tuple | None) -> tuple[Pair, Pair]:
    """What the helper offers and what the helper then does, for each fable problem."""
    if problem == "river":
        return (Pair("坐到我的背上来吧，我带你过河。", "Climb onto my back, and I'll take you across."),
                Pair(f"{helper.zh}驮着{hero.zh}，慢慢地游到了河对岸。",
                     f"{helper.en} carried {hero.en} on {his(helper, 'en')} back and slowly swam to the other side."))
    if problem == "food":
        have, give = n
        return (Pair(f"我有{zh_count(have, measure='颗')}松果，分给你{zh_count(give, measure='颗')}吧。",
                     f"I have {en_number(have)} pine cones. I'll give you {en_number(give)} of them."),
                Pair(f"{helper.zh}自己还剩{zh_count(have - give, measure='颗')}松果，两个朋友都能吃饱了。",
                     f"{helper.en} still had {en_number(have - give)} left, so both friends had enough to eat."))
    if problem == "apples":
        picked = n[0]
        return (Pair("别着急，我爬上去帮你摘。", "Don't worry, I'll climb up and pick them for you."),
                Pair(f"{helper.zh}爬上树，摘了{zh_count(picked, measure='个')}苹果，和{hero.zh}一人一半，每人{zh_count(picked // 2, measure='个')}。",
                     f"{helper.en} climbed the tree and picked {en_number(picked)} apples. The two friends shared them "
                     f"half and half, {en_number(picked // 2)} each."))
    if problem == "house":
        total, each = n
        return (Pair("别难过，我们一起帮你盖一座新房子。", "Don't be sad. We'll help you build a new house."),
                Pair(f"{helper.zh}和{hero.zh}每人搬来{zh_count(each, measure='根')}木头，一共{zh_count(total, measure='根')}，很快就盖好了一座新房子。",
                     f"{helper.en} and {hero.en} each carried {en_number(each)} logs, {en_number(total)} in all, and soon a new house was built."))
    return (Pair("我飞到天上去看一看。", "I'll fly up high and have a look."),
            Pair(f"{helper.zh}飞得高高的，看见了{hero.zh}的家，带着{hero.zh}走了回去。",
                 f"{helper.en} flew up high, saw {hero.en}'s home, and led {hero.en} back."))


@renders("fable_help")
def _fable_help(e: Event, lang: str, rng: random.Random) -> str:
    offer, act = _fable_lines(e["who"], e["helper"], e["problem"], e.get("n"))
    if lang == "zh":
        return quote(e["helper"], "say", offer, lang, rng) + act.zh
    return quote(e["helper"], "say", offer, lang, rng) + " " + act.en


@renders("fable_return")
def _fable_return(e: Event, lang: str, rng: random.Random) -> str:
    hero, helper = e["who"], e["helper"]
    if e["ending"] == "return_help":
        if lang == "zh":
            return f"后来，{helper.zh}遇到困难的时候，{hero.zh}也跑来帮助它。"
        return f"Later, when {helper.en} was in trouble, {hero.en} came to help {him(helper, 'en')} too."
    if lang == "zh":
        return rng.choice([f"从那以后，{hero.zh}和{helper.zh}成了最好的朋友。", f"从此，{hero.zh}和{helper.zh}成了最要好的朋友。"])
    return rng.choice([f"From then on, {hero.en} and {helper.en} were the best of friends.",
                       f"After that, {hero.en} and {helper.en} were best friends."])
