"""The course's bilingual fine-tuning set: tea-shop dialogues in ChatGLM3's fine-tuning format.

Taught in lesson 08 (对话微调 Chat fine-tuning) and, for the tool dialogues, lesson 09
(工具调用 Tool calling). ``python -m glm3_teach.dialogues --seed 3 --out data/sft`` writes
``train.jsonl``, ``val.jsonl``, ``heldout.jsonl`` and a README; ``load_sft(split)`` reads them.

One item per line, ChatGLM3's format plus the course's ``meta``::

    {"tools"?: [schema, ...],
     "conversations": [{"role": "system" | "user" | "assistant", "content": str, "loss"?: bool},
                       {"role": "tool", "name": str, "parameters": dict, "observation": dict | str}, ...],
     "meta": {"intent", "lang", "template", "split", "expect", "expect_tool"?,
              "observation_values"?, "reference"?, "source_lang"?, "base_intent"?}}

``meta.lang`` is the language the reply must be in. It is also the question's language, except
for ``translate``, whose request is written in the source language (``meta.source_lang``).

Where everything comes from
---------------------------
- **Facts** are read from ``glm3_teach.stories.TEA_SHOP`` and ``TEA_WISHES`` each time an item
  is made (prices, hours, closed day, address, shipping, delivery, returns, brewing,
  recommendations), so the story corpus and this set never disagree: change a price there and
  both change.
- **Questions** come from templates: at least 12 per intent and language, each a different
  phrasing (word order, synonyms, with or without a product alias), composed with openers
  ("您好，", "Excuse me, ") and closers ("谢谢！", " Thanks!"). Template *k* of every list is
  held out when ``k % 5 == 2`` (the same rule for the openers and closers): held-out phrasings
  appear only in ``heldout``, never in ``train`` or ``val``.
- **Translations** use aligned sentence pairs of the story corpus: every story is planned once
  and each event is rendered in both languages, so rendering a story event by event gives
  sentence pairs. Training uses pairs of training stories, ``val``/``heldout`` pairs of
  validation stories that occur in no training story.
- **Tool dialogues** call the real tools of ``glm3_teach.tools`` (``SHOP_TOOLS``) for their
  observations; order ids are split by a hash, so ids of ``val`` and ``heldout`` never occur
  in ``train``.

Splits: ``train`` (training templates), ``val`` (training templates with new slot values and
combinations; no item equal to a training item), ``heldout`` (held-out templates only).
Every item is made from its own random stream (a SHA-256 of seed, split, intent, language and
number), so the files are reproduced byte for byte.

What it leaves out: dialogues longer than three user turns, spelling mistakes and mixed-language
questions, and any fact the shop does not have (payment by card, opening on holidays).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glm3_teach import stories
from glm3_teach.paths import data_dir

COURSE_SEED = 3
GENERATOR_VERSION = "1.0"  # bump whenever the same seed would give different files
SPLITS = ("train", "val", "heldout")
LANGS = ("zh", "en")
ROLES = ("system", "user", "assistant", "tool")
SYSTEM_SHARE = 0.25  # share of plain dialogues that open with a short system prompt


def is_heldout(index: int) -> bool:
    """The fixed rule that holds out a template (or an opener/closer): its index k has k % 5 == 2."""
    return index % 5 == 2


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


def zh_clock_digits(hour: int) -> str:
    """A shop hour in Chinese with digits: 9 -> 上午9点, 21 -> 晚上9点 (periods from stories.zh_clock)."""
    period = stories.zh_clock(hour)[:2]
    return f"{period}{hour if hour <= 12 else hour - 12}点"


def en_unit(p, n: int = 1) -> str:
    """The English unit a product is sold by: tin / tins, cake, or the product itself (teapot)."""
    if p.unit_en:
        return p.unit_en if n == 1 else p.unit_en_plural
    return p.en if n == 1 else p.en_plural


# ---------------------------------------------------------------------------------------
# Composition parts: openers and closers around a question
# ---------------------------------------------------------------------------------------

OPENERS = {"zh": ("", "你好，", "", "您好，", "老板，", "请问，", "打扰一下，", "在吗？", "想问一下，",
                  "麻烦问一下，", "", "嗨，", "劳驾，", "你好，请问"),
           "en": ("", "Hi, ", "", "Hello, ", "Excuse me, ", "Hi there! ", "Quick question: ", "Hey, ",
                  "Good morning! ", "Sorry to bother you, ", "", "Hello there, ", "Pardon me, ", "Hi! ")}
CLOSERS = {"zh": ("", "谢谢！", "", "谢谢。", "麻烦了。", "", "多谢！", "谢谢啦"),
           "en": ("", " Thanks!", "", " Thank you.", " Thanks a lot.", "", " Cheers!", " Thanks in advance.")}


def parts_for(parts: tuple[str, ...], split: str) -> list[str]:
    """The openers/closers a split may use: held-out ones only in ``heldout``."""
    return [p for k, p in enumerate(parts) if split == "heldout" or not is_heldout(k)]


def compose(core: str, lang: str, rng: random.Random, split: str) -> str:
    """A question in a customer's words: opener + core question + closer, with small variations."""
    opener = rng.choice(parts_for(OPENERS[lang], split))
    closer = rng.choice(parts_for(CLOSERS[lang], split))
    if "请问" in opener and "请问" in core:
        opener = ""
    if lang == "en" and opener and not opener.endswith(("! ", ": ")):
        core = core[:1].lower() + core[1:] if not core.startswith(("I ", "I'")) else core
    text = opener + core
    if not closer and rng.random() < 0.1:  # customers often drop the question mark
        text = text.rstrip("？?")
    elif lang == "zh" and rng.random() < 0.15:
        text = text.replace("？", "?")
    return text + closer


SYSTEM_PROMPTS = {"zh": ("你是{shop}的客服助手。", "你是{shop}的助手，请简短地回答客人的问题。", "你是一家茶叶店的客服。"),
                  "en": ("You are the assistant of the {shop}.", "You are a helpful assistant for the {shop}. Answer briefly.",
                         "You are a customer service assistant for a tea shop.")}


def system_prompt(lang: str, rng: random.Random) -> dict:
    name = shop().name_zh if lang == "zh" else shop().name_en
    return {"role": "system", "content": rng.choice(SYSTEM_PROMPTS[lang]).format(shop=name)}


# ---------------------------------------------------------------------------------------
# Question templates: intent -> language -> phrasings (index k held out when k % 5 == 2)
# ---------------------------------------------------------------------------------------

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "price": {
        "zh": ("{p}多少钱？", "{p}怎么卖？", "{p}一{m}多少钱？", "{p}的价格是多少？", "我想买{p}，多少钱一{m}？",
               "{p}卖多少钱？", "买一{m}{p}要多少钱？", "{p}现在什么价？", "你们的{p}贵不贵？多少钱？",
               "请问{p}的售价是多少？", "一{m}{p}几块钱？", "{p}要花多少钱？", "想问问{p}的价格。",
               "{p}多少钱一{m}啊？", "给我报一下{p}的价钱。"),
        "en": ("How much is the {p}?", "What does the {p} cost?", "What's the price of the {p}?",
               "How much does the {p} cost?", "How much for the {p}?", "What is the {p} priced at?",
               "I want to buy the {p}. How much is it?", "Could you tell me the price of the {p}?",
               "How much do you charge for the {p}?", "Is the {p} expensive? What does it cost?",
               "What do you sell the {p} for?", "How much would the {p} be?", "Price of the {p}, please.",
               "How much money is the {p}?", "I'd like to know how much the {p} costs."),
    },
    "hours": {
        "zh": ("你们几点开门？", "你们几点关门？", "营业时间是几点到几点？", "你们的营业时间是什么？", "早上几点开始营业？",
               "晚上几点打烊？", "店里每天几点开门几点关门？", "最晚几点还能去买茶？", "你们一般什么时候开门？",
               "几点关门呀？", "你们每天开到几点？", "我早上去，几点开门？", "营业到几点？", "你们的开店时间是几点？",
               "几点能到店里买茶？"),
        "en": ("What time do you open?", "What time do you close?", "What are your opening hours?",
               "When does the shop open?", "When do you close in the evening?", "What are your business hours?",
               "How late are you open?", "Until what time are you open?", "When can I come to the shop?",
               "What time does the shop close?", "Are you open in the morning? From what time?",
               "What hours is the shop open?", "How early do you open?", "When do you open and close?",
               "What time do you start in the morning?"),
    },
    "closed_day": {
        "zh": ("你们哪天休息？", "你们{d}开门吗？", "一周里哪天不营业？", "{d}去店里，你们开着吗？", "你们有休息日吗？",
               "{d}营业吗？", "哪一天关门不营业？", "{d}你们休息吗？", "你们每天都开门吗？", "我{d}过去，店开着吗？",
               "你们星期几休息？", "{d}能去买茶吗？", "你们周几不开门？", "{d}店里开门吗？", "什么时候是你们的休息日？"),
        "en": ("Which day are you closed?", "Are you open on {d}?", "What day of the week do you close?",
               "Is the shop open on {d}?", "Do you have a day off?", "Can I come on {d}?",
               "Are you closed any day of the week?", "Will you be open this {d}?", "Are you open every day?",
               "I'm coming on {d}. Will the shop be open?", "On which day is the shop closed?", "Do you open on {d}s?",
               "Which day is your day off?", "Can I visit the shop on {d}?", "What's your weekly closing day?"),
    },
    "address": {
        "zh": ("你们的店在哪里？", "店铺地址是什么？", "怎么去你们店？", "你们在什么地方？", "请告诉我你们的地址。",
               "茶铺开在哪儿？", "我想去店里买茶，地址在哪？", "你们店的具体位置是哪里？", "门店在哪条路上？",
               "你们的实体店在哪里？", "去你们那儿该往哪走？", "地址发我一下。", "你们店在哪个镇？",
               "你们茶铺的地址是多少号？", "线下店在什么位置？"),
        "en": ("Where is your shop?", "What is the shop's address?", "How do I find your shop?", "Where are you located?",
               "Could you give me your address?", "Where can I find the tea shop?", "I'd like to visit. Where are you?",
               "What street is the shop on?", "Where exactly is the store?", "Where is the tea shop?",
               "What's your address?", "How can I get to your store?", "Which town is the shop in?",
               "Send me the address, please.", "Where do I go to buy tea in person?"),
    },
    "free_shipping": {
        "zh": ("满多少包邮？", "买多少钱可以免运费？", "包邮的门槛是多少？", "你们包邮吗？", "订单多少钱以上免邮？",
               "怎样才能包邮？", "买到多少钱不用付运费？", "有没有免运费的活动？", "多少钱起包邮？", "我想包邮，要买够多少？",
               "包邮条件是什么？", "凑够多少钱就免运费了？", "满多少钱包快递？", "运费什么时候可以免？", "你们家多少钱包邮啊？"),
        "en": ("How much do I need to spend for free shipping?", "Is there free shipping?", "When is shipping free?",
               "What's the minimum order for free delivery?", "Do you offer free shipping?",
               "How much should I buy to get free shipping?", "At what amount does shipping become free?",
               "Is delivery free for big orders?", "What is the free shipping threshold?", "Can I get free shipping?",
               "How big must an order be to ship for free?", "From how much is shipping free?",
               "Do I get free delivery if I buy a lot?", "What order total gets free shipping?", "Is shipping ever free?"),
    },
    "shipping_fee": {
        "zh": ("运费是多少？", "寄快递要多少运费？", "邮费怎么算？", "运费多少钱？", "寄过来要付运费吗？", "快递费要多少？",
               "不包邮的话运费多少？", "发货收运费吗？", "邮寄要加多少钱？", "你们的邮费是多少？", "运费贵吗？",
               "买得少要付多少运费？", "寄一单要多少快递费？", "运费需要我出吗？多少？", "邮费要几块钱？"),
        "en": ("How much is shipping?", "What is the shipping fee?", "Do I have to pay for shipping?",
               "How much does delivery cost?", "What do you charge for postage?", "Is there a shipping charge?",
               "How much extra is shipping?", "What's the delivery fee?", "How much is postage for a small order?",
               "Do you charge for delivery?", "What does shipping cost?", "How much will I pay to have it sent?",
               "Is shipping expensive?", "What's the cost of sending an order?", "How much is the postage?"),
    },
    "delivery": {
        "zh": ("几天能到？", "快递多久能送到？", "下单以后多长时间到货？", "发货要几天？", "寄到{c}要几天？", "多久能收到？",
               "送货需要多长时间？", "我今天下单，什么时候能到？", "一般几天到货？", "发到{c}多久能到？",
               "快递几天能到我家？", "大概多久可以收到茶叶？", "配送要多少天？", "寄到{c}的话，几天能收到？",
               "要等几天才能到？"),
        "en": ("How long does delivery take?", "When will my order arrive?", "How many days until it arrives?",
               "How long does shipping take?", "How soon will I get my tea?", "How long to ship to {c}?",
               "When can I expect the parcel?", "If I order today, when does it arrive?", "How fast is your delivery?",
               "How many days does it take to get to {c}?", "How long before the package gets to me?",
               "How long is the delivery time?", "How quickly do orders arrive?", "How many days for delivery to {c}?",
               "When would a parcel reach me?"),
    },
    "returns": {
        "zh": ("可以退货吗？", "买了不喜欢能退吗？", "退货政策是什么？", "茶叶能退吗？", "多少天内可以退货？", "没打开的可以退吗？",
               "如果不满意，可以退换吗？", "退货有期限吗？", "我买错了，还能退吗？", "你们支持退货吗？", "收到以后几天内能退？",
               "东西不想要了，能退吗？", "退货要在几天之内？", "买的茶壶能退吗？", "可以退货退款吗？"),
        "en": ("Can I return something?", "What is your return policy?", "Can I bring it back if I don't like it?",
               "How many days do I have to return an item?", "Do you accept returns?", "Can I return unopened tea?",
               "I bought the wrong thing. Can I return it?", "Is there a time limit for returns?", "Can I get a refund?",
               "How do returns work?", "What if I am not happy with my order?", "How long is the return window?",
               "Can I send the teapot back?", "Do you take things back?", "Within how many days can I return it?"),
    },
    "recommend": {
        "zh": ("我想买一种{w}茶，您推荐哪一种？", "有没有{w}茶？", "想要{wb}的茶，推荐一下？", "哪种茶{wb}？", "推荐一款{w}茶吧。",
               "我喜欢{w}茶，买哪个好？", "{w}茶有吗？推荐一个。", "你们这儿什么茶{wb}？", "给我推荐个{w}茶。",
               "送人的话，{w}茶选哪种？", "我不懂茶，想喝{w}，买什么？", "帮我挑一种{w}茶。", "我要{w}茶，哪款合适？",
               "有什么茶是{w}？", "请推荐{w}茶。"),
        "en": ("I'd like a tea that is {w}. Which one would you recommend?", "Do you have a tea that is {w}?",
               "Which tea is {w}?", "Can you recommend a tea that's {w}?", "I want something {w}. What should I buy?",
               "What tea would you suggest if I want it {w}?", "Which of your teas is {w}?",
               "Looking for a tea that is {w}. Any ideas?", "Recommend me a tea that's {w}, please.",
               "My mother likes tea that is {w}. What should I get her?", "What's a good tea that is {w}?",
               "Is there a tea here that's {w}?", "Which tea do you recommend if I like it {w}?", "Any tea that is {w}?",
               "Suggest a tea that is {w}."),
    },
    "brew": {
        "zh": ("{p}怎么泡？", "{p}要用多热的水泡？", "{p}应该泡多久？", "泡{p}用多少度的水？", "{p}怎么冲才好喝？",
               "请教一下{p}的泡法。", "{p}要泡几分钟？", "冲{p}的水温是多少？", "我买了{p}，该怎么泡？",
               "{p}用开水泡可以吗？", "{p}的冲泡方法是什么？", "泡{p}有什么讲究？", "{p}泡多长时间合适？",
               "教我泡{p}吧。", "{p}的水温和时间怎么掌握？"),
        "en": ("How should I make the {p}?", "How hot should the water be for the {p}?", "How long should I steep the {p}?",
               "How do I brew the {p}?", "What water temperature is right for the {p}?", "Any tips for brewing the {p}?",
               "How many minutes do I steep the {p}?", "What's the best way to prepare the {p}?",
               "I just bought the {p}. How do I make it?", "Can I use boiling water for the {p}?",
               "How do you brew the {p} properly?", "Tell me how to make the {p}.", "How long does the {p} need to steep?",
               "What temperature and time for the {p}?", "How is the {p} brewed?"),
    },
    "identity": {
        "zh": ("你是谁？", "你叫什么名字？", "你是真人吗？", "你是机器人吗？", "你是ChatGLM3吗？", "请介绍一下你自己。",
               "我在跟谁说话？", "你是哪个公司的模型？", "你是人工智能吗？", "你是{keeper}吗？", "你是什么？",
               "你是客服还是机器？", "你是不是ChatGPT？", "你能做什么？", "你是谁做的？"),
        "en": ("Who are you?", "What is your name?", "Are you a real person?", "Are you a robot?", "Are you ChatGLM3?",
               "Please introduce yourself.", "Who am I talking to?", "Which company made you?", "Are you an AI?",
               "Are you {keeper}?", "What are you?", "Am I chatting with a human?", "Are you ChatGPT?",
               "What can you do?", "Who built you?"),
    },
    "out_of_domain": {
        "zh": ("明天{c}的天气怎么样？", "帮我写一首关于{t}的诗。", "给我讲个笑话吧。", "法国的首都是哪里？", "帮我订一张去{c}的机票。",
               "你能帮我写作业吗？", "推荐一部好看的电影。", "今天的股票会涨吗？", "我头疼，应该吃什么药？",
               "帮我写一段Python代码。", "{c}有什么好玩的地方？", "世界上最高的山是哪座？", "你会下象棋吗？",
               "昨晚的足球比赛谁赢了？", "教我做红烧肉。"),
        "en": ("What will the weather be like in {c} tomorrow?", "Write me a poem about {t}.", "Tell me a joke.",
               "What is the capital of France?", "Book me a flight to {c}.", "Can you do my homework?",
               "Recommend a good movie.", "Will the stock market go up today?",
               "I have a headache. What medicine should I take?", "Write some Python code for me.",
               "What is fun to do in {c}?", "What is the highest mountain in the world?", "Can you play chess?",
               "Who won the football match last night?", "Teach me how to cook pork."),
    },
    "greeting": {
        "zh": ("你好", "您好！", "你好呀", "嗨", "早上好", "下午好", "晚上好", "在吗？", "有人吗？", "哈喽", "老板好",
               "你好，在吗？", "喂，你好", "打扰了，你好", "嗨，你好啊"),
        "en": ("Hello", "Hi!", "Hi there", "Hey", "Good morning", "Good afternoon", "Good evening", "Is anyone there?",
               "Hello?", "Hiya", "Hey there!", "Hello, anyone around?", "Hi, are you there?", "Greetings!", "Howdy"),
    },
    "thanks": {
        "zh": ("谢谢", "谢谢你！", "太感谢了", "多谢", "好的，谢谢", "谢谢，再见", "非常感谢您的帮助", "明白了，谢谢",
               "辛苦了，谢谢", "感谢！", "谢啦", "好的，知道了，谢谢你", "麻烦你了，谢谢", "谢谢你的回答", "万分感谢"),
        "en": ("Thanks", "Thank you!", "Thanks a lot", "Many thanks", "OK, thank you", "Thanks, bye",
               "Thank you so much for your help", "Got it, thanks", "Cheers!", "Thanks!", "Thank you very much",
               "Great, thanks", "Appreciate it", "Thanks for the answer", "Perfect, thank you"),
    },
    "translate": {  # keyed by the reply's language: "en" holds Chinese requests to translate Chinese into English
        "en": ("把这句话翻译成英文：{s}", "请翻译成英语：{s}", "“{s}”用英文怎么说？", "帮我把下面这句翻成英文：{s}",
               "翻译成英文：{s}", "{s} 这句话英语怎么说？", "请把“{s}”译成英文。", "英文翻译：{s}", "这句话的英文是什么：{s}",
               "帮忙翻译一下（翻成英文）：{s}", "能把这句翻译成英文吗？{s}", "用英语说：{s}", "请给出这句话的英文翻译：{s}",
               "中译英：{s}", "把“{s}”翻译成英语。"),
        "zh": ("Translate into Chinese: {s}", "Please translate this sentence into Chinese: {s}",
               'How do you say "{s}" in Chinese?', "Translate to Chinese: {s}", "What is this in Chinese? {s}",
               "Can you put this into Chinese? {s}", "Chinese translation, please: {s}", "Say this in Chinese: {s}",
               "Translate the following into Chinese: {s}", 'Help me translate "{s}" into Chinese.',
               "English to Chinese: {s}", "Render this sentence in Chinese: {s}", "Please give the Chinese for: {s}",
               "How would you write this in Chinese? {s}", "Turn this into Chinese: {s}"),
    },
    "followup": {  # the second question of a dialogue, referring back to the first
        "zh": ("那{p}呢？", "{p}呢？", "换成{p}呢？", "那{p}的呢？", "如果是{p}呢？", "那么{p}呢？", "再问一下，{p}呢？",
               "那要是{p}呢？", "{p}的话呢？", "同样的问题，{p}呢？", "还有{p}呢？", "{p}又怎么样？", "那{p}这个呢？",
               "好的。那{p}呢？", "{p}也问一下。"),
        "en": ("And the {p}?", "What about the {p}?", "How about the {p}?", "And for the {p}?", "Same question for the {p}.",
               "And what about the {p}?", "What if it's the {p}?", "The {p}?", "And the {p}, please?", "OK, and the {p}?",
               "Now the {p}?", "Then what about the {p}?", "And if I choose the {p}?", "Also the {p}?",
               "How about for the {p}, then?"),
    },
}

OOD_TOPICS = (("春天", "spring"), ("月亮", "the moon"), ("大海", "the sea"), ("小猫", "a little cat"), ("秋天的树叶", "autumn leaves"))


def template_id(intent: str, lang: str, index: int) -> str:
    """``template_id("price", "zh", 3)`` -> "price.zh.03"."""
    return f"{intent}.{lang}.{index:02d}"


def templates_for(intent: str, lang: str, split: str) -> list[tuple[str, str]]:
    """(template id, template) pairs a split draws from: training templates for train/val, held-out for heldout."""
    rows = [(template_id(intent, lang, k), t) for k, t in enumerate(TEMPLATES[intent][lang])]
    keep_heldout = split == "heldout"
    return [(tid, t) for k, (tid, t) in enumerate(rows) if is_heldout(k) == keep_heldout]


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
    if lang == "zh":
        return f"{p.zh}{p.price}元一{p.measure}。", [f"{p.price}元"]
    per = f" a {p.unit_en}" if p.unit_en else ""
    return f"The {p.en} is {p.price} yuan{per}.", [f"{p.price} yuan"]


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
        opens, closes = zh_clock_digits(s.open_hour), zh_clock_digits(s.close_hour)
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


def fill(template: str, **slots: str) -> str:
    """Fill only the slots a template names (``str.format`` ignores extra keyword arguments)."""
    return template.format(**slots)


def product_turn(intent: str, template: str, lang: str, rng: random.Random, p=None) -> Turn:
    """A price or brewing question about product ``p`` (drawn when None; brewing only for teas)."""
    choices = shop().teas if intent == "brew" else shop().products
    p = p or rng.choice(choices)
    question = fill(template, p=product_name(p, lang, rng), m=p.measure)
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


# ---------------------------------------------------------------------------------------
# Translation pairs from the story corpus
# ---------------------------------------------------------------------------------------

MAX_PAIR_CHARS_ZH = 28
MAX_PAIR_WORDS_EN = 16


def _one_sentence(zh: str, en: str) -> bool:
    """A short pair of single sentences without quotes or line breaks."""
    return (4 <= len(zh) <= MAX_PAIR_CHARS_ZH and len(en.split()) <= MAX_PAIR_WORDS_EN and "\n" not in zh + en
            and not any(q in zh + en for q in '“”"') and sum(zh.count(c) for c in "。！？") == 1
            and zh[-1] in "。！？" and en[-1] in ".!?" and not any(end in en for end in (". ", "! ", "? ")))


def story_pairs(seed: int, index: int, check: bool = False) -> list[tuple[str, str]]:
    """The (zh, en) pair of every event of story ``index``, rendered as the corpus renders it.

    ``render_story`` draws the words of each event from the story's zh and en random streams in
    event order, so rendering the events one at a time with the same streams gives the same
    sentences; with ``check`` the joined pieces are compared with the whole story.
    """
    plan = stories.plan_story(stories.story_rng(seed, index, "plan"))
    rngs = {lang: stories.story_rng(seed, index, lang) for lang in stories.LANGS}
    pieces = [(stories.render_story(stories.StoryPlan(plan.kind, [e]), "zh", rngs["zh"]),
               stories.render_story(stories.StoryPlan(plan.kind, [e]), "en", rngs["en"])) for e in plan.events]
    if not check:
        return pieces
    _, zh, en = stories.generate_story(seed, index)
    if "".join(z.replace("\n", "") for z, _ in pieces) != zh.replace("\n", ""):
        raise RuntimeError(f"story {index}: rendering event by event no longer reproduces the story; "
                           f"dialogues.story_pairs must follow stories.render_story")
    return pieces


def translation_pairs(seed: int = stories.COURSE_SEED, stories_to_read: int = 1500) -> dict[str, list[tuple[str, str]]]:
    """Short aligned sentence pairs: {"train": [...], "val": [...], "heldout": [...]}.

    Pairs of training stories go to train; pairs of validation stories whose Chinese and English
    sentences occur in no training story go, alternately, to val and heldout.
    """
    found: dict[str, dict[tuple[str, str], None]] = {"train": {}, "val": {}}
    for index in range(stories_to_read):
        split = stories.split_of(seed, index)
        for pair in story_pairs(seed, index, check=index < 20):
            if _one_sentence(*pair):
                found[split][pair] = None
    train = list(found["train"])
    seen = {z for z, _ in train} | {e for _, e in train}
    novel = [p for p in found["val"] if p[0] not in seen and p[1] not in seen]
    return {"train": train, "val": novel[0::2], "heldout": novel[1::2]}


def translate_turn(template: str, lang: str, rng: random.Random, pairs: list[tuple[str, str]]) -> Turn:
    """A request to translate into ``lang`` (the reply's language) a sentence of the other language."""
    zh, en = rng.choice(pairs)
    source, target = (en, zh) if lang == "zh" else (zh, en)
    return Turn(fill(template, s=source), target, [], {"reference": target, "source_lang": "en" if lang == "zh" else "zh"})


# ---------------------------------------------------------------------------------------
# Tool dialogues: the shop's tools really called for every observation
# ---------------------------------------------------------------------------------------

TOOL_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "order_status": {  # also the questions of order_error (an id that does not exist)
        "zh": ("我的订单{id}到哪了？", "帮我查一下订单{id}。", "订单{id}发货了吗？", "{id}这个订单什么时候能到？",
               "查询订单{id}的状态。", "我订的茶到哪儿了？订单号{id}。", "订单号是{id}，现在怎么样了？", "请问{id}号订单送到了吗？",
               "我的快递{id}还要多久？", "{id}的订单状态是什么？", "能帮我看看订单{id}吗？", "订单{id}还要几天到？",
               "我想查订单，单号{id}。", "{id}这单发出来了吗？", "麻烦查下{id}的物流。"),
        "en": ("Where is my order {id}?", "Can you check order {id} for me?", "Has order {id} shipped yet?",
               "When will order {id} arrive?", "What's the status of order {id}?", "My order number is {id}. Where is it?",
               "Please look up order {id}.", "Has my order {id} been delivered?", "How long until order {id} gets here?",
               "Order {id}: any news?", "Could you track order {id}?", "I ordered tea, number {id}. Is it on its way?",
               "Check the status of {id}, please.", "Is order {id} still processing?", "Any update on my order {id}?"),
    },
    "order_ask": {  # no order id given: the assistant asks for it first
        "zh": ("我的订单到哪了？", "帮我查一下订单。", "我买的茶发货了吗？", "我的快递什么时候到？", "想查一下我的订单状态。",
               "我订的东西怎么还没到？", "能帮我查查物流吗？", "我上周下的单，现在到哪儿了？", "订单送到了吗？", "我的包裹在哪里？",
               "查一下我的订单进度。", "我下的订单发出来没有？", "我想知道我的订单什么时候能到。", "帮忙看看我的订单。",
               "我的茶叶寄出来了吗？"),
        "en": ("Where is my order?", "Can you check my order?", "Has my tea shipped yet?", "When will my parcel arrive?",
               "I'd like to know the status of my order.", "Why hasn't my order arrived yet?", "Can you track my package?",
               "I ordered last week. Where is it now?", "Has my order been delivered?", "Where is my parcel?",
               "Check on my order, please.", "Did my order go out yet?", "I want to know when my order will arrive.",
               "Could you look at my order?", "Has my tea been sent?"),
    },
    "stock": {
        "zh": ("{p}还有货吗？", "{p}有库存吗？", "{p}还剩多少？", "现在能买到{p}吗？", "{p}卖完了没有？", "帮我查一下{p}的库存。",
               "{p}还有几{m}？", "店里还有{p}吗？", "{p}缺货吗？", "我想买{p}，有现货吗？", "{p}库存多少？",
               "请问{p}还有没有？", "查查{p}还剩几{m}。", "{p}现在有货吗？", "你们{p}还有存货吗？"),
        "en": ("Is the {p} in stock?", "Do you still have the {p}?", "How many of the {p} are left?",
               "Can I buy the {p} right now?", "Is the {p} sold out?", "Please check the stock of the {p}.",
               "How much {p} do you have left?", "Do you have any {p} in the shop?", "Are you out of the {p}?",
               "I want the {p}. Is it available?", "What's the stock level of the {p}?", "Any {p} left?",
               "Check how many {p} you have, please.", "Is there {p} in stock now?", "Have you got the {p} in stock?"),
    },
    "total": {
        "zh": ("{items}多少钱？", "{items}一共多少钱？", "买{items}要多少钱？", "{items}总共多少？", "我要{items}，一共多少钱？",
               "帮我算一下{items}的总价。", "{items}加起来多少钱？", "买{items}总共要付多少？", "{items}，算下来多少钱？",
               "如果买{items}，要花多少钱？", "{items}一共要几块钱？", "请算一算{items}多少钱。", "我买{items}，总价是多少？",
               "{items}合计多少？", "{items}的话一共多少钱？"),
        "en": ("How much are {items}?", "What do {items} cost in total?", "How much would {items} be?",
               "What's the total for {items}?", "I want {items}. How much is that altogether?",
               "Please add up {items} for me.", "How much do {items} come to?", "What will I pay for {items}?",
               "If I buy {items}, what's the total?", "How much for {items} together?", "What is the price of {items} in all?",
               "Could you total up {items}?", "I'm buying {items}. What's the total?", "Total price of {items}?",
               "How much money for {items}?"),
    },
}
TEMPLATES.update(TOOL_TEMPLATES)
TEMPLATE_OF = {"order_error": "order_status"}  # intents that reuse another intent's questions

ORDER_ID_REPLIES = {"zh": ("{id}", "订单号是{id}。", "是{id}", "我的订单号：{id}", "单号{id}，谢谢。", "{id}，麻烦了。",
                           "好的，{id}", "订单号{id}"),
                    "en": ("{id}", "It's {id}.", "My order number is {id}.", "{id}, thanks.", "Order {id}.",
                           "The number is {id}.", "Sure, {id}", "It is {id}, thank you.")}
ASK_ORDER_ID = {"zh": "好的，请告诉我您的订单号，它是一个大写字母加四位数字。",
                "en": "Sure. What is your order number? It is one capital letter and four digits."}
ORDER_ID_SHARES = {"train": range(0, 8), "val": range(8, 9), "heldout": range(9, 10)}  # of sha256(id) % 10


def order_split(order_id: str) -> str:
    """Which split may use ``order_id``: a hash of the id decides, so val/heldout ids never occur in train."""
    bucket = int.from_bytes(hashlib.sha256(f"order/{order_id}".encode()).digest()[:4], "big") % 10
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
            number = str(n) if digits else ("两" if n == 2 else stories.zh_number(n))
            parts.append(f"{number}{p.measure}{name}")
        else:
            unit = en_unit(p, n)
            thing = f"{unit} of {name}" if p.unit_en else (name if n == 1 else name + "s" if not name.endswith("s") else name)
            parts.append(f"{n} {thing}" if digits else (stories.a_or_an(thing) if n == 1 else f"{stories.en_number(n)} {thing}"))
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
    what = f"{en_unit(p, n)} of {p.en}" if p.unit_en else en_unit(p, n)
    return f"We have {n} {what} in stock.", [f"{n} {en_unit(p, n)}"], [str(n)]


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
    step, obs = tool_step("check_order", parameters)
    answer, expect, values = order_answer(order_id, obs, lang)
    meta = {"expect": expect, "expect_tool": {"name": "check_order", "parameters": parameters}, "observation_values": values}
    return messages + [step, {"role": "assistant", "content": answer}], meta


def stock_dialogue(template: str, lang: str, rng: random.Random, split: str) -> tuple[list[dict], dict]:
    p = rng.choice(shop().products)
    question = compose(fill(template, p=product_name(p, lang, rng), m=p.measure), lang, rng, split)
    parameters = {"product": p.key}
    step, obs = tool_step("check_stock", parameters)
    answer, expect, values = stock_answer(p, obs, lang)
    meta = {"expect": expect, "expect_tool": {"name": "check_stock", "parameters": parameters}, "observation_values": values}
    return [{"role": "user", "content": question}, step, {"role": "assistant", "content": answer}], meta


def total_dialogue(template: str, lang: str, rng: random.Random, split: str) -> tuple[list[dict], dict]:
    """A basket of one to three products: the assistant writes count*price terms and calls calculate."""
    kinds = rng.choices((1, 2, 3), weights=(2, 5, 2))[0]
    basket = [(p, rng.randint(1, 4) if kinds > 1 else rng.randint(2, 5)) for p in rng.sample(shop().products, kinds)]
    expression = "+".join(str(p.price) if n == 1 else f"{n}*{p.price}" for p, n in basket)
    question = compose(fill(template, items=basket_words(basket, lang, rng)), lang, rng, split)
    parameters = {"expression": expression}
    step, obs = tool_step("calculate", parameters)
    answer, expect, values = total_answer(basket, obs, lang)
    meta = {"expect": expect, "expect_tool": {"name": "calculate", "parameters": parameters}, "observation_values": values}
    return [{"role": "user", "content": question}, step, {"role": "assistant", "content": answer}], meta


TOOL_INTENTS = ("order_status", "order_ask", "order_error", "stock", "total", "no_tool")
NO_TOOL_INTENTS = SHOP_INTENTS + ("greeting", "thanks")  # asked while the tools are offered


# ---------------------------------------------------------------------------------------
# Items: one dialogue with its meta
# ---------------------------------------------------------------------------------------

PLAIN_INTENTS = SHOP_INTENTS + ("greeting", "thanks", "translate", "followup")
INTENTS = PLAIN_INTENTS + TOOL_INTENTS
# Training dialogues per intent and language; val and heldout get EVAL_COUNT each.
TRAIN_COUNTS = {"price": 320, "hours": 160, "closed_day": 200, "address": 140, "free_shipping": 150,
                "shipping_fee": 150, "delivery": 150, "returns": 150, "recommend": 220, "brew": 260, "identity": 160,
                "out_of_domain": 180, "greeting": 80, "thanks": 120, "translate": 500, "followup": 260,
                "order_status": 220, "order_ask": 140, "order_error": 100, "stock": 180, "total": 260, "no_tool": 260}
EVAL_COUNT = 15


def item_rng(seed: int, split: str, intent: str, lang: str, number: int) -> random.Random:
    """The random stream of one item, from a SHA-256 of everything that names it."""
    digest = hashlib.sha256(f"{seed}/{split}/{intent}/{lang}/{number}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def single_turn(intent: str, lang: str, split: str, rng: random.Random, pairs) -> tuple[str, list[dict], dict]:
    """(template id, conversation, meta) of a one-question dialogue of a plain intent."""
    tid, template = rng.choice(templates_for(intent, lang, split))
    if intent == "translate":
        turn = translate_turn(template, lang, rng, pairs)
        question = turn.question
    else:
        turn = make_turn(intent, template, lang, rng)
        question = compose(turn.question, lang, rng, split) if intent not in UNCOMPOSED else turn.question
    if intent in ("greeting", "thanks"):
        question = question.rstrip("!！.。") + rng.choice(("", "！", "!", "。") if lang == "zh" else ("", "!", ".", " :)"))
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": turn.answer}]
    return tid, messages, {"expect": turn.expect, **turn.extra}


def earlier_turn(intent: str, lang: str, split: str, rng: random.Random, p=None) -> list[dict]:
    """A first question and answer that a later question refers back to."""
    _, template = rng.choice(templates_for(intent, lang, split))
    turn = product_turn(intent, template, lang, rng, p) if intent in ("price", "brew") else make_turn(intent, template, lang, rng)
    return [{"role": "user", "content": compose(turn.question, lang, rng, split)}, {"role": "assistant", "content": turn.answer}]


def followup_dialogue(lang: str, split: str, rng: random.Random) -> tuple[str, list[dict], dict]:
    """Price or brewing of one product, then "那红茶呢？" / "And the black tea?" about another."""
    base = rng.choice(("price", "price", "brew"))
    first, second = rng.sample(shop().teas if base == "brew" else shop().products, 2)
    tid, template = rng.choice(templates_for("followup", lang, split))
    answer, expect = (price_answer if base == "price" else brew_answer)(second, lang)
    messages = earlier_turn(base, lang, split, rng, first) + [
        {"role": "user", "content": fill(template, p=product_name(second, lang, rng))},
        {"role": "assistant", "content": answer}]
    return tid, messages, {"expect": expect, "base_intent": base}


def plain_dialogue(intent: str, lang: str, split: str, rng: random.Random, pairs) -> tuple[str, list[dict], dict]:
    if intent == "followup":
        tid, messages, meta = followup_dialogue(lang, split, rng)
    else:
        tid, messages, meta = single_turn(intent, lang, split, rng, pairs)
        if intent == "thanks" and rng.random() < 0.5:  # thanks after an answer
            messages = earlier_turn(rng.choice(SHOP_INTENTS[:10]), lang, split, rng) + messages
    if rng.random() < SYSTEM_SHARE:
        messages = [system_prompt(lang, rng)] + messages
    return tid, messages, meta


def tool_dialogue(intent: str, lang: str, split: str, rng: random.Random) -> tuple[str, list[dict], dict]:
    if intent == "no_tool":
        base = rng.choice(NO_TOOL_INTENTS)
        tid, messages, meta = single_turn(base, lang, split, rng, None)
        return tid, messages, {**meta, "base_intent": base}
    tid, template = rng.choice(templates_for(TEMPLATE_OF.get(intent, intent), lang, split))
    if intent in ("order_status", "order_ask", "order_error"):
        messages, meta = order_dialogue(intent, template, lang, rng, split)
    elif intent == "stock":
        messages, meta = stock_dialogue(template, lang, rng, split)
    else:
        messages, meta = total_dialogue(template, lang, rng, split)
    return tid, messages, meta


def make_item(intent: str, lang: str, split: str, rng: random.Random, pairs=None, schemas=None) -> dict:
    """One dialogue of ``intent`` in ``lang`` for ``split``, with its meta."""
    if intent in TOOL_INTENTS:
        tid, messages, extra = tool_dialogue(intent, lang, split, rng)
    else:
        tid, messages, extra = plain_dialogue(intent, lang, split, rng, pairs)
    meta = {"intent": intent, "lang": lang, "template": tid, "split": split, **extra}
    item = {"tools": schemas or shop_tool_schemas()} if intent in TOOL_INTENTS else {}
    return {**item, "conversations": messages, "meta": meta}


# ---------------------------------------------------------------------------------------
# Checking items: one clear error naming the item and the field
# ---------------------------------------------------------------------------------------


class SFTDataError(ValueError):
    """A fine-tuning item that does not follow ChatGLM3's format (the message says where and why)."""


def _check_json(value: Any, where: str) -> None:
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SFTDataError(f"{where} must be JSON data (dicts, lists, strings, numbers): {error}") from None


def _check_message(message: Any, index: int, previous: str | None, tool_names: list[str] | None, where: str) -> None:
    """One message of ``conversations``; ``previous`` is the role before it (None for the first)."""
    at = f"{where}: conversations[{index}]"
    if not isinstance(message, dict):
        raise SFTDataError(f"{at} must be a dict such as {{'role': 'user', 'content': '你好'}}, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        hint = "; a tool's result goes in the 'observation' field of a 'tool' message" if role == "observation" else ""
        raise SFTDataError(f"{at} has unknown role {role!r}; use one of {', '.join(ROLES)}{hint}")
    if "loss" in message and not isinstance(message["loss"], bool):
        raise SFTDataError(f"{at} ({role}) has loss {message['loss']!r} ({type(message['loss']).__name__}); "
                           f"loss must be True or False")
    if role == "system" and index != 0:
        raise SFTDataError(f"{at} is a system message but not the first one; a system prompt opens the conversation")
    if role == "tool":
        _check_tool_message(message, previous, tool_names, at)
        return
    extra = sorted(set(message) - {"role", "content", "loss"})
    if extra:
        raise SFTDataError(f"{at} ({role}) has unknown keys {extra}; a {role} message has 'role', 'content' and 'loss'")
    if not isinstance(message.get("content"), str):
        got = "no 'content'" if "content" not in message else f"content of type {type(message['content']).__name__}"
        raise SFTDataError(f"{at} ({role}) has {got}; content must be a str")


def _check_tool_message(message: dict, previous: str | None, tool_names: list[str] | None, at: str) -> None:
    extra = sorted(set(message) - {"role", "name", "parameters", "observation", "loss"})
    if extra:
        raise SFTDataError(f"{at} (tool) has unknown keys {extra}; a tool message has 'name', 'parameters', 'observation'")
    name = message.get("name")
    if not isinstance(name, str) or not name:
        raise SFTDataError(f"{at} (tool) has no 'name' (the tool called, e.g. 'check_order'), got {name!r}")
    if tool_names is None:
        raise SFTDataError(f"{at} calls tool {name!r} but the item has no 'tools'; add the tool schemas to the item")
    if name not in tool_names:
        raise SFTDataError(f"{at} calls tool {name!r}, which is not among the item's tools {tool_names}")
    if not isinstance(message.get("parameters"), dict):
        raise SFTDataError(f"{at} (tool {name}) needs 'parameters', a dict of keyword arguments, "
                           f"got {type(message.get('parameters')).__name__}")
    if "observation" not in message:
        raise SFTDataError(f"{at} (tool {name}) has no 'observation'; give the tool's result (a str or JSON data)")
    _check_json(message["parameters"], f"{at} (tool {name}) parameters")
    _check_json(message["observation"], f"{at} (tool {name}) observation")
    if previous not in ("user", "tool"):
        raise SFTDataError(f"{at} is a tool call (with its observation) but follows "
                           f"{'nothing' if previous is None else 'a ' + previous + ' message'}; a tool call answers a "
                           f"user message (or follows another tool call)")


def _check_meta(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise SFTDataError(f"{where}: meta must be a dict, got {type(meta).__name__}")
    for key in ("intent", "lang", "template", "split"):
        if key in meta and not isinstance(meta[key], str):
            raise SFTDataError(f"{where}: meta[{key!r}] must be a str, got {meta[key]!r}")
    if meta.get("lang", "zh") not in LANGS:
        raise SFTDataError(f"{where}: meta['lang'] is {meta['lang']!r}; use 'zh' or 'en'")
    for key in ("expect", "observation_values"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key])):
            raise SFTDataError(f"{where}: meta[{key!r}] must be a list of str, got {meta[key]!r}")
    tool = meta.get("expect_tool")
    if tool is not None and not (isinstance(tool, dict) and isinstance(tool.get("name"), str)
                                 and isinstance(tool.get("parameters"), dict)):
        raise SFTDataError(f"{where}: meta['expect_tool'] must be {{'name': str, 'parameters': dict}}, got {tool!r}")


def validate_item(item: Any, where: str = "item 0") -> dict:
    """Check one fine-tuning item and return it; raise ``SFTDataError`` naming ``where`` and the field.

    Checks: a dict with ``conversations`` (a non-empty list) and optional ``tools`` (a list of
    schemas with names) and ``meta``; roles system (first only) / user / assistant / tool; str
    content; ``loss`` a bool; a tool message with ``name`` (one of the item's tools),
    ``parameters`` (a dict) and ``observation``, right after a user message or another call.

    >>> validate_item({"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好！"}]})["conversations"][0]["role"]
    'user'
    """
    if not isinstance(item, dict):
        raise SFTDataError(f"{where} must be a dict {{'conversations': [...]}}, got {type(item).__name__}")
    extra = sorted(set(item) - {"tools", "conversations", "meta"})
    if extra:
        raise SFTDataError(f"{where} has unknown keys {extra}; an item has 'conversations' and optionally 'tools', 'meta'")
    conversations = item.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise SFTDataError(f"{where} has {'no' if conversations is None else 'an empty or non-list'} 'conversations'; "
                           f"give a list of messages such as [{{'role': 'user', 'content': '你好'}}, ...]")
    tool_names = None
    if "tools" in item:
        tools = item["tools"]
        if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
            raise SFTDataError(f"{where}: 'tools' must be a list of tool schemas {{'name', 'description', 'parameters'}}")
        _check_json(tools, f"{where}: tools")
        tool_names = [t["name"] for t in tools]
    previous = None
    for index, message in enumerate(conversations):
        _check_message(message, index, previous, tool_names, where)
        previous = message["role"]
    if "meta" in item:
        _check_meta(item["meta"], where)
    return item


# ---------------------------------------------------------------------------------------
# The splits, the files and their README
# ---------------------------------------------------------------------------------------


def conversation_key(item: dict) -> str:
    return json.dumps(item["conversations"], ensure_ascii=False, sort_keys=True)


def make_group(intent: str, lang: str, split: str, count: int, seed: int, pairs, schemas, avoid: dict) -> list[dict]:
    """``count`` distinct items of one intent and language; none equal to one in ``avoid`` (train's keys)."""
    group, seen, number = [], {}, 0
    while len(group) < count and number < 40 * count:
        item = make_item(intent, lang, split, item_rng(seed, split, intent, lang, number), pairs, schemas)
        number += 1
        key = conversation_key(item)
        if key in seen or key in avoid:
            continue
        seen[key] = None
        group.append(validate_item(item, f"{split} {intent}/{lang} item {len(group)}"))
    if len(group) < count:
        raise RuntimeError(f"only {len(group)} distinct {split} items for {intent}/{lang} (wanted {count}); "
                           f"add templates or lower TRAIN_COUNTS/EVAL_COUNT")
    return group


def generate(seed: int = COURSE_SEED, train_counts: dict | None = None, eval_count: int = EVAL_COUNT) -> dict[str, list[dict]]:
    """All three splits: {"train": [...], "val": [...], "heldout": [...]}; train shuffled, eval in intent order."""
    counts = {**TRAIN_COUNTS, **(train_counts or {})}
    pairs = translation_pairs(seed)
    schemas = shop_tool_schemas()
    out: dict[str, list[dict]] = {}
    train_keys: dict[str, None] = {}
    for split in SPLITS:
        items = []
        for intent in INTENTS:
            for lang in LANGS:
                n = counts[intent] if split == "train" else eval_count
                items += make_group(intent, lang, split, n, seed, pairs[split], schemas, train_keys if split == "val" else {})
        if split == "train":
            train_keys = {conversation_key(item): None for item in items}
            random.Random(seed).shuffle(items)
        out[split] = items
    return out


def dumps_item(item: dict) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def token_length(item: dict, tokenizer, tool_system_ids: int, cache: dict | None = None) -> int:
    """Tokens of ``item`` as the SFT encoder lays it out ([gMASK] sop, messages, tool call + observation, eos)."""
    from glm3_teach import tools

    cache = {} if cache is None else cache

    def message_length(role: str, metadata: str, content: str) -> int:
        if (role, metadata, content) not in cache:
            cache[role, metadata, content] = len(tokenizer.build_single_message(role, metadata, content))
        return cache[role, metadata, content]

    n = 2 + (tool_system_ids if "tools" in item else 0) + 1
    for message in item["conversations"]:
        if message["role"] == "tool":
            observation = message["observation"]
            observation = observation if isinstance(observation, str) else json.dumps(observation, ensure_ascii=False)
            n += message_length("assistant", message["name"], tools.format_tool_call(message["parameters"]))
            n += message_length("observation", "", observation)
        else:
            n += message_length(message["role"], "", message["content"])
    return n


def tool_system_length(tokenizer, schemas: list[dict]) -> int:
    """Tokens of ChatGLM3's tools system message for ``schemas`` (role token included)."""
    from glm3_teach import tools

    content = tools.TOOL_PROMPT + "\n" + json.dumps(schemas, indent=4, ensure_ascii=False)
    return len(tokenizer.build_single_message("system", "", content))


def length_figures(splits: dict[str, list[dict]]) -> dict:
    """Token lengths with the course tokenizer: percentiles for plain and tool dialogues, the system message."""
    from glm3_teach import load_tokenizer

    tokenizer = load_tokenizer()
    system = tool_system_length(tokenizer, shop_tool_schemas())
    rows, cache = {}, {}
    for kind in ("plain", "tool"):
        lengths = sorted(token_length(item, tokenizer, system, cache) for item in splits["train"]
                         if ("tools" in item) == (kind == "tool"))
        pick = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
        rows[kind] = {"n": len(lengths), "min": lengths[0], "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
                      "max": lengths[-1], "under_200": sum(n < 200 for n in lengths) / len(lengths),
                      "tokens": sum(lengths)}
    return {"tool_system": system, **rows}


HELDOUT_DESIGN = """\
## The held-out design (why the held-out score means something)

- **Whole phrasings are held out.** Every intent has 15 question templates per language; template
  *k* is held out when `k % 5 == 2` (templates 2, 7 and 12: 20%). Held-out templates appear only
  in `heldout.jsonl`; `train.jsonl` and `val.jsonl` use the other twelve. The same rule holds out
  openers and closers ("劳驾，", "Hello there, ", "多谢！", ...) and the replies that give an
  order id, so a held-out question may also begin or end in words never seen in training.
- **`val` is the seen-phrasing control:** training templates with new slot values and new
  combinations (no validation dialogue equals a training dialogue). The gap between `val` and
  `heldout` is what new wording costs.
- **New values where the world has them.** Translation pairs of `val`/`heldout` come from
  validation stories of the corpus and occur in no training story; order ids are split by a
  SHA-256 of the id (80% train, 10% val, 10% heldout), so an evaluated id was never seen and the
  model must copy it from the question. Prices, hours and other shop facts are the same in every
  split: they are what the model is meant to learn.
- **Why it predicts questions written by other people.** The templates of one intent differ in
  wording, word order and synonyms (多少钱 / 怎么卖 / 什么价; cost / price / charge), so a
  model can pass a held-out template only by mapping meaning, not by matching a string it saw.
  A held-out template is a phrasing the model never saw, like an outside customer's. What the
  split cannot test: words that occur in no template at all (a new synonym for a product, a
  typo, a mixed-language question). Expect outside questions to score somewhat below
  `heldout` when they use such words, and close to it when they use the shop's own vocabulary.
- **How an answer is scored.** `meta.expect` lists substrings the last assistant reply must
  contain (e.g. `58元` / `58 yuan`, `上午9点` / `9 a.m.`, the order id and `2天`); they are
  written in the answer's language, so a correct fact in the wrong language fails too.
  Translation items have an empty `expect` and are scored against `meta.reference`
  (ROUGE-L); their reply is in `meta.lang`, their request in `meta.source_lang`.
- **How a tool item is evaluated.** Prompt the model with the `tools` system message and every
  message before the first `tool` message (for `order_ask` that includes the assistant asking for
  the id and the customer's reply); the call it writes must equal `meta.expect_tool` (name and
  arguments). Then feed the real observation (`tools.call_tool`) and check the final reply against
  `meta.expect` and `meta.observation_values`. A `no_tool` item must be answered without a call.
  Caveat: `tools.check_stock` returns a fixed number per product, so a stock answer can be right
  from memory; order ids (new in every evaluation split) and their delivery days test copying.
"""


def _count_rows(splits: dict[str, list[dict]]) -> list[str]:
    counts = Counter((item["meta"]["intent"], item["meta"]["lang"], split) for split in SPLITS for item in splits[split])
    rows = [f"| {intent} | {lang} | " + " | ".join(f"{counts[intent, lang, s]:,}" for s in SPLITS) + " |"
            for intent in INTENTS for lang in LANGS]
    for lang in LANGS:
        rows.append(f"| **all** | {lang} | " + " | ".join(
            f"{sum(counts[i, lang, s] for i in INTENTS):,}" for s in SPLITS) + " |")
    return rows


def _heldout_rows() -> list[str]:
    rows = []
    for intent in TEMPLATES:
        for lang in LANGS:
            held = [t for k, t in enumerate(TEMPLATES[intent][lang]) if is_heldout(k)]
            rows.append(f"| {intent} | {lang} | {len(TEMPLATES[intent][lang])} | " + " / ".join(f"`{t}`" for t in held) + " |")
    return rows


def _samples(splits: dict) -> list[str]:
    """Two training items as JSON blocks (the tool schemas abbreviated)."""
    plain = next(i for i in splits["train"] if i["meta"]["intent"] == "followup")
    tool = next(i for i in splits["train"] if i["meta"]["intent"] == "order_ask")
    tool_shown = {"tools": "[... the three schemas of tools.SHOP_TOOLS ...]", **{k: v for k, v in tool.items() if k != "tools"}}
    return ["```json", json.dumps(plain, ensure_ascii=False, indent=1), "```", "",
            "```json", json.dumps(tool_shown, ensure_ascii=False, indent=1), "```", ""]


def _readme(seed: int, command: str, seconds: float, splits: dict, sizes: dict, lengths: dict) -> str:
    length_rows = [f"| {kind} | {f['n']:,} | {f['min']} | {f['p50']} | {f['p90']} | {f['p99']} | {f['max']} | "
                   f"{f['under_200']:.0%} | {f['tokens']:,} |" for kind, f in lengths.items() if kind != "tool_system"]
    return "\n".join([
        "# The course's fine-tuning set (对话微调数据)",
        "",
        "Bilingual dialogues of the 清泉茶铺 / Clear Spring Tea Shop assistant in ChatGLM3's fine-tuning format",
        "(one JSON object per line: `tools`?, `conversations`, plus the course's `meta`), written by",
        "`glm3_teach/dialogues.py` from the facts in `glm3_teach.stories.TEA_SHOP`. Read a split with",
        "`glm3_teach.dialogues.load_sft(\"train\")`. Do not edit by hand: `tests/test_dialogues.py` regenerates",
        "the files and compares them byte for byte.",
        "",
        "## How it was made",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- seed: {seed}",
        f"- generator version: {GENERATOR_VERSION}",
        f"- wall time: {seconds:.1f} s on one CPU core (generation, checks and writing)",
        f"- files: " + ", ".join(f"`{s}.jsonl` {sizes[s]['items']:,} items, {sizes[s]['bytes']:,} bytes" for s in SPLITS),
        "",
        "## Counts per intent, language and split",
        "",
        "`lang` is the language of the reply, and of the question too, except for `translate`: its request is",
        "written in the source language (`meta.source_lang`; lang en = translate Chinese into English, asked",
        "in Chinese; lang zh = English into Chinese, asked in English). Tool intents (`order_status`, `order_ask`,",
        "`order_error`, `stock`, `total`, `no_tool`) carry `tools`; `no_tool` asks a plain question while",
        "the tools are offered (the model must answer without calling). `followup` is a second question",
        "that refers back (\"那红茶呢？\"), `thanks` follows an answer half of the time.",
        f"{SYSTEM_SHARE:.0%} of the plain dialogues open with a short system prompt.",
        "",
        "| intent | lang | train | val | heldout |",
        "| --- | --- | ---: | ---: | ---: |",
        *_count_rows(splits),
        "",
        "## Token lengths (course tokenizer, SFT layout, train split)",
        "",
        f"The tools system message (`tools.TOOL_PROMPT` + the JSON of the three schemas) is "
        f"**{lengths['tool_system']} tokens**; every tool dialogue carries it.",
        "",
        "| dialogues | n | min | median | p90 | p99 | max | under 200 | tokens |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *length_rows,
        "",
        HELDOUT_DESIGN,
        "## The held-out templates",
        "",
        "| intent | lang | templates | held out (k = 2, 7, 12) |",
        "| --- | --- | ---: | --- |",
        *_heldout_rows(),
        "",
        "(`order_error` asks with the `order_status` templates: the difference is the observation.)",
        "",
        "## Two training items",
        "",
        *_samples(splits),
    ])


def write_sft(out: Path, seed: int = COURSE_SEED, command: str | None = None) -> dict:
    """Generate the three splits, write ``{split}.jsonl`` and README.md into ``out``; return the figures."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    splits = generate(seed)
    sizes = {}
    for split in SPLITS:
        data = "".join(dumps_item(item) + "\n" for item in splits[split]).encode("utf-8")
        (out / f"{split}.jsonl").write_bytes(data)
        sizes[split] = {"items": len(splits[split]), "bytes": len(data)}
    lengths = length_figures(splits)
    seconds = time.perf_counter() - start
    command = command or f"python -m glm3_teach.dialogues --seed {seed} --out {out}"
    (out / "README.md").write_text(_readme(seed, command, seconds, splits, sizes, lengths), encoding="utf-8")
    return {"sizes": sizes, "lengths": lengths, "seconds": seconds}


def sft_dir() -> Path:
    return data_dir() / "sft"


def load_sft(split: str, path: str | Path | None = None) -> list[dict]:
    """The items of one split ("train", "val" or "heldout") from ``path`` (a folder, default data/sft, or a .jsonl file).

    Every line is checked with ``validate_item``; a bad line raises ``SFTDataError`` naming the file and line.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    folder = Path(path) if path is not None else sft_dir()
    file = folder if folder.suffix == ".jsonl" else folder / f"{split}.jsonl"
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist; write it with `python -m glm3_teach.dialogues --out {file.parent}`")
    items = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file.name} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise SFTDataError(f"{where} is not JSON: {error.msg} at column {error.colno}") from None
        items.append(validate_item(item, where))
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.dialogues",
                                     description="Write the course's bilingual SFT set (train/val/heldout JSONL) and its README.")
    parser.add_argument("--seed", type=int, default=COURSE_SEED, help=f"random seed (default: the course seed, {COURSE_SEED})")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data_dir()/sft)")
    args = parser.parse_args(argv)
    out = args.out or sft_dir()
    shown = args.out if args.out is not None else Path("data/sft")
    try:
        result = write_sft(out, args.seed, command=f"python -m glm3_teach.dialogues --seed {args.seed} --out {shown}")
    except OSError as error:
        print(f"error: cannot write {out}: {error.strerror or error}", file=sys.stderr)
        return 2
    for split, size in result["sizes"].items():
        print(f"{split:>8}: {size['items']:>6,} dialogues  {size['bytes']:>10,} bytes")
    print(f"tool system message: {result['lengths']['tool_system']} tokens; "
          f"plain dialogues under 200 tokens: {result['lengths']['plain']['under_200']:.0%}; "
          f"written to {out} in {result['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
