"""The course's own bilingual story generator: every story is planned once, then told twice.

Lesson 00 shows its stories; lesson 01 trains the tokenizer and lesson 06 pretrains the model
on its output, which is committed in ``data/corpus/`` and read with ``glm3_teach.data``.
Regenerate it with ``python -m glm3_teach.stories`` (see ``main``).

The design: plan, then render
-----------------------------
1. **Plan** (``plan_story``) decides *what happens*. It picks a story kind (an outing, sharing
   apples, a lost pet, a maths lesson, a forest fable, a visit to the tea shop, ...), a cast
   (children, grown-ups, pets and forest animals, each with a Chinese and an English name),
   the season, weather, place and time, and a list of events with every number fixed: three
   ducks, two tins of oolong tea at 58 yuan, 134 yuan in all, 16 yuan change. A plan is plain
   data: a list of dicts holding small frozen dataclasses, easy to print.
2. **Render** (``render_story``) decides *how it is said*. Every event kind has one renderer
   that keeps its Chinese and its English phrasings side by side. A renderer reads only the
   plan, so both languages tell the same story with the same names, counts, prices and times:
   document ``k`` of ``train.zh.txt`` is a translation of document ``k`` of ``train.en.txt``.

Each story gets three random streams derived from the seed and the story's number: one for
the plan, one for the Chinese words, one for the English words. Choosing a different Chinese
phrasing therefore never changes the plan or the English. Only ``random.Random`` objects
seeded with integers are used (no global random state, no ``hash()`` of strings), whose
``random``, ``choice``, ``choices``, ``randint``, ``randrange`` and ``sample`` give the same
numbers on every machine and every Python from 3.10 on, so the corpus is reproduced byte for byte.

Where the variety comes from
----------------------------
- 11 story kinds (``PLANNERS``), most with optional steps, so the number and order of events
  differ from story to story.
- 78 event kinds, each with up to four phrasings per language chosen independently, and
  13 kinds of customer question at the tea shop.
- Vocabulary tables: 40 children, a family, 4 teachers, neighbours and customers, 15 pet names
  for 4 kinds of pet, 10 forest animals, 9 places with their own animals to watch, 5 kinds of
  weather that may change during a story, 4 seasons, ways of travelling, colours, hobbies,
  fruit, snacks and things to find.
- Numbers everywhere: counting with Chinese measure words (一只猫, 三杯茶, 两个苹果) and
  English plurals and number words; sums, differences and fair shares; ages; clock times;
  weekdays; prices, totals and change.
- Dialogue in quotes (Chinese “ ”, English " "), with the speaker before or after the words,
  questions with their answers, and a price list and a shop notice on lines of their own.

Meaning is decided only in the plan: a phrasing may reorder or reword, never add a fact,
so the two languages stay translations of each other.

The tea shop
------------
``TEA_SHOP`` is the only source of shop facts: its name, keeper, address, hours (9:00 to
21:00, closed on Mondays), products with fixed prices, brewing advice, shipping, returns and
payment. Every shop sentence is built from it, so the corpus never contradicts itself, and
the chat lessons can fine-tune questions and answers on the same facts.

What it leaves out, on purpose
------------------------------
Long plots and characters that persist between stories; tenses other than a simple past
narrative with present-tense dialogue; rare words, idioms and traditional characters; real
people, brands and places beyond a few big cities; anything sad or frightening beyond a lost
glove or a clap of thunder. Stories are simple so that a model of a few million parameters
can learn their grammar in minutes; they are not meant to be literature.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from glm3_teach.paths import data_dir

COURSE_SEED = 3  # the seed of the committed corpus (3 as in ChatGLM3)
GENERATOR_VERSION = "1.0"  # bump whenever the same seed would give different text
SPLITS = ("train", "val")
LANGS = ("zh", "en")
MIN_TRAIN = 1_000_000  # Han characters in train.zh and English letters in train.en, at least
MIN_VAL = 100_000  # the same for val
VAL_PERCENT = 10  # about this share of the stories goes to the validation split

HAN = re.compile(r"[\u4e00-\u9fff]")
LETTER = re.compile(r"[A-Za-z]")
# Where sentences end; "Mr." / "Ms." and "a.m." / "p.m." inside a sentence do not end one.
SENTENCE_END = {"zh": re.compile(r"(?<=[。！？])|\n"),
                "en": re.compile(r"(?<!Mr\.)(?<!Ms\.)(?<!\.m\.)(?<=[.!?])\s+(?=[A-Z\"])|(?<=[.!?]\")\s+|\n")}


# ---------------------------------------------------------------------------------------
# Words: every entry holds its Chinese and its English form
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Noun:
    """A countable thing: the Chinese word with its measure word, the English singular and plural."""

    zh: str
    measure: str
    en: str
    en_plural: str


def noun(zh: str, measure: str, en: str, en_plural: str | None = None) -> Noun:
    """``noun("猫", "只", "cat")`` -> Noun(zh='猫', measure='只', en='cat', en_plural='cats')."""
    return Noun(zh, measure, en, en_plural or en + "s")


@dataclass(frozen=True)
class Character:
    """Someone in a story. ``kind`` is "child", "adult" or "animal"; ``gender`` "m" or "f"."""

    zh: str
    en: str
    gender: str
    kind: str


@dataclass(frozen=True)
class Sight:
    """Animals (or boats) to watch at a place: three ducks swimming in the pond."""

    thing: Noun
    zh: str  # what they are doing, e.g. 在池塘里游泳
    en: str  # e.g. swimming in the pond
    move: str  # how more of them arrive or leave: a key of ARRIVE / LEAVE


@dataclass(frozen=True)
class Place:
    zh: str  # 公园
    zh_at: str  # 在公园里
    en: str  # the park
    en_at: str  # at the park
    sights: tuple[Sight, ...]


@dataclass(frozen=True)
class Pair:
    """Any word or phrase given in both languages."""

    zh: str
    en: str


def _children() -> tuple[Character, ...]:
    rows = [("小明", "Xiaoming", "m"), ("小红", "Xiaohong", "f"), ("小丽", "Xiaoli", "f"),
            ("小军", "Xiaojun", "m"), ("乐乐", "Lele", "m"), ("文文", "Wenwen", "f"),
            ("安安", "Anan", "f"), ("明明", "Mingming", "m"), ("朵朵", "Duoduo", "f"),
            ("天天", "Tiantian", "m"), ("莉莉", "Lily", "f"), ("汤姆", "Tom", "m"),
            ("安娜", "Anna", "f"), ("杰克", "Jack", "m"), ("露西", "Lucy", "f"),
            ("米娅", "Mia", "f"), ("山姆", "Sam", "m"), ("大卫", "David", "m"),
            ("小月", "Xiaoyue", "f"), ("浩浩", "Haohao", "m"), ("小芳", "Xiaofang", "f"),
            ("小刚", "Xiaogang", "m"), ("小华", "Xiaohua", "m"), ("丁丁", "Dingding", "m"),
            ("欢欢", "Huanhuan", "f"), ("笑笑", "Xiaoxiao", "f"), ("东东", "Dongdong", "m"),
            ("贝贝", "Beibei", "f"), ("牛牛", "Niuniu", "m"), ("果果", "Guoguo", "f"),
            ("阳阳", "Yangyang", "m"), ("思思", "Sisi", "f"), ("可可", "Keke", "f"),
            ("玛丽", "Mary", "f"), ("彼得", "Peter", "m"), ("艾玛", "Emma", "f"),
            ("马克", "Mark", "m"), ("凯特", "Kate", "f"), ("汉娜", "Hannah", "f"), ("路易", "Louis", "m")]
    return tuple(Character(zh, en, gender, "child") for zh, en, gender in rows)


CHILDREN = _children()
MOM = Character("妈妈", "Mom", "f", "adult")
DAD = Character("爸爸", "Dad", "m", "adult")
GRANDMA = Character("奶奶", "Grandma", "f", "adult")
GRANDPA = Character("爷爷", "Grandpa", "m", "adult")
FAMILY = (MOM, DAD, GRANDMA, GRANDPA)
TEACHERS = (Character("王老师", "Ms. Wang", "f", "adult"), Character("张老师", "Mr. Zhang", "m", "adult"),
            Character("刘老师", "Ms. Liu", "f", "adult"), Character("陈老师", "Mr. Chen", "m", "adult"))
NEIGHBOUR = Character("周叔叔", "Uncle Zhou", "m", "adult")
AUNT_LI = Character("李阿姨", "Aunt Li", "f", "adult")
CUSTOMERS = (AUNT_LI, NEIGHBOUR, Character("陈爷爷", "Grandpa Chen", "m", "adult"),
             Character("赵奶奶", "Grandma Zhao", "f", "adult"))

PET_KINDS = (noun("猫", "只", "cat"), noun("狗", "只", "dog"), noun("兔子", "只", "rabbit"),
             noun("乌龟", "只", "turtle"))
PET_NAMES = (("咪咪", "Mimi"), ("豆豆", "Doudou"), ("球球", "Qiuqiu"), ("花花", "Huahua"),
             ("点点", "Diandian"), ("毛毛", "Maomao"), ("小白", "Xiaobai"), ("胖胖", "Pangpang"),
             ("跳跳", "Tiaotiao"), ("元宝", "Yuanbao"), ("团团", "Tuantuan"), ("圆圆", "Yuanyuan"),
             ("可乐", "Kele"), ("米粒", "Mili"), ("奇奇", "Qiqi"))

# Forest animals are named by their kind, as in a fable: 小熊 / Little Bear.
FOREST_FOLK = (("小熊", "Little Bear"), ("小兔子", "Little Rabbit"), ("小松鼠", "Little Squirrel"),
               ("小狐狸", "Little Fox"), ("小猴子", "Little Monkey"), ("小乌龟", "Little Turtle"),
               ("小鸭子", "Little Duck"), ("小刺猬", "Little Hedgehog"), ("小老鼠", "Little Mouse"),
               ("小鹿", "Little Deer"))
SWIMMERS = ("小乌龟", "小鸭子")
CLIMBERS = ("小猴子", "小松鼠")

SEASONS = (Pair("春天", "spring"), Pair("夏天", "summer"), Pair("秋天", "autumn"), Pair("冬天", "winter"))
PARTS_OF_DAY = (Pair("早上", "morning"), Pair("下午", "afternoon"), Pair("傍晚", "evening"))
WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期天")
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Weather:
    key: str
    zh_adj: str  # 晴朗的
    zh_clause: str  # 阳光很好
    en_adj: str  # sunny
    en_clause: str  # the sun was shining


WEATHERS = (
    Weather("sunny", "晴朗的", "阳光很好", "sunny", "the sun was shining"),
    Weather("cloudy", "阴沉沉的", "天空灰蒙蒙的", "cloudy", "the sky was gray"),
    Weather("windy", "刮着大风的", "风很大", "windy", "the wind was blowing hard"),
    Weather("rainy", "下着小雨的", "天上下着小雨", "rainy", "a light rain was falling"),
    Weather("snowy", "下着雪的", "天上下着雪", "snowy", "snow was falling"),
)
WEATHER = {w.key: w for w in WEATHERS}

COLOURS = (Pair("红色", "red"), Pair("蓝色", "blue"), Pair("黄色", "yellow"), Pair("绿色", "green"),
           Pair("白色", "white"), Pair("粉色", "pink"), Pair("紫色", "purple"), Pair("橙色", "orange"),
           Pair("棕色", "brown"), Pair("黑色", "black"))
HOBBIES = (Pair("画画", "drawing"), Pair("唱歌", "singing"), Pair("看书", "reading"),
           Pair("踢足球", "playing football"), Pair("跑步", "running"), Pair("跳舞", "dancing"),
           Pair("搭积木", "building with blocks"), Pair("种花", "growing flowers"),
           Pair("放风筝", "flying kites"), Pair("讲故事", "telling stories"), Pair("拼拼图", "doing puzzles"),
           Pair("游泳", "swimming"))
FEELINGS = {"happy": Pair("开心", "happy"), "glad": Pair("高兴", "glad"),
            "tired": Pair("累", "tired"), "proud": Pair("骄傲", "proud"), "surprised": Pair("惊讶", "surprised"),
            "excited": Pair("兴奋", "excited")}
FRUIT = (noun("苹果", "个", "apple"), noun("梨", "个", "pear"), noun("桃子", "个", "peach", "peaches"),
         noun("橘子", "个", "orange"))
SNACKS = FRUIT + (noun("饼干", "块", "cookie"), noun("糖", "颗", "candy", "candies"),
                  noun("草莓", "颗", "strawberry", "strawberries"), noun("包子", "个", "steamed bun"))
FINDS = (noun("球", "个", "ball"), noun("气球", "个", "balloon"), noun("玩具车", "辆", "toy car"),
         noun("铅笔", "支", "pencil"), noun("帽子", "顶", "hat"), noun("羽毛", "根", "feather"),
         noun("钥匙", "把", "key"), noun("手帕", "块", "handkerchief"), noun("小石头", "块", "pebble"))
SPOTS = (Pair("树下", "under a tree"), Pair("草丛里", "in the grass"), Pair("长椅下面", "under a bench"),
         Pair("一块大石头旁边", "next to a big rock"), Pair("小路边", "beside the path"),
         Pair("花丛里", "among the flowers"))
TRANSPORT = (Pair("走路", "on foot"), Pair("坐公交车", "by bus"), Pair("骑自行车", "by bike"))
MANNERS = (Pair("高高兴兴地", "happily"), Pair("手拉着手", "hand in hand"), Pair("一路唱着歌", "singing all the way"),
           Pair("一边走一边说笑", "chatting and laughing as they walked"))
CITIES = (Pair("北京", "Beijing"), Pair("上海", "Shanghai"), Pair("广州", "Guangzhou"), Pair("成都", "Chengdu"),
          Pair("西安", "Xi'an"), Pair("杭州", "Hangzhou"), Pair("武汉", "Wuhan"), Pair("南京", "Nanjing"))
ABROAD = (Pair("美国", "the United States"), Pair("英国", "the UK"), Pair("日本", "Japan"),
          Pair("法国", "France"), Pair("澳大利亚", "Australia"))
RELATIVES = (Pair("女儿", "daughter"), Pair("儿子", "son"), Pair("老朋友", "old friend"), Pair("妹妹", "sister"),
             Pair("哥哥", "brother"))

ARRIVE = {"fly": Pair("飞来了", "flew over"), "swim": Pair("游来了", "swam over"), "run": Pair("跑来了", "ran over"),
          "crawl": Pair("爬来了", "crawled over"), "walk": Pair("走来了", "walked over"),
          "sail": Pair("开来了", "sailed over")}
LEAVE = {"fly": Pair("飞走了", "flew away"), "swim": Pair("游走了", "swam away"), "run": Pair("跑走了", "ran off"),
         "crawl": Pair("爬走了", "crawled away"), "walk": Pair("走开了", "walked away"),
         "sail": Pair("开走了", "sailed away")}


def _places() -> tuple[Place, ...]:
    duck, bird, squirrel = noun("鸭子", "只", "duck"), noun("小鸟", "只", "bird"), noun("松鼠", "只", "squirrel")
    butterfly, boat = noun("蝴蝶", "只", "butterfly", "butterflies"), noun("小船", "条", "boat")
    return (
        Place("公园", "在公园里", "the park", "at the park", (
            Sight(duck, "在池塘里游泳", "swimming in the pond", "swim"),
            Sight(bird, "在树上唱歌", "singing in the trees", "fly"),
            Sight(squirrel, "在草地上找松果", "looking for pine cones on the grass", "run"),
            Sight(butterfly, "在花丛里飞来飞去", "flying among the flowers", "fly"))),
        Place("河边", "在河边", "the river", "by the river", (
            Sight(duck, "在河里游来游去", "swimming up and down the river", "swim"),
            Sight(noun("鱼", "条", "fish", "fish"), "在清清的河水里游", "swimming in the clear water", "swim"),
            Sight(noun("青蛙", "只", "frog"), "坐在荷叶上", "sitting on lily pads", "crawl"),
            Sight(boat, "在河上慢慢地漂", "drifting slowly down the river", "sail"))),
        Place("森林", "在森林里", "the forest", "in the forest", (
            Sight(noun("兔子", "只", "rabbit"), "在树下吃草", "eating grass under the trees", "run"),
            Sight(squirrel, "在树枝间跳来跳去", "jumping from branch to branch", "run"),
            Sight(noun("小鹿", "只", "deer", "deer"), "在小溪边喝水", "drinking from a stream", "walk"),
            Sight(bird, "在树上做窝", "building nests in the trees", "fly"))),
        Place("海边", "在海边", "the beach", "at the beach", (
            Sight(noun("螃蟹", "只", "crab"), "在沙滩上横着走", "walking sideways on the sand", "crawl"),
            Sight(noun("海鸥", "只", "seagull"), "在海浪上面飞", "flying over the waves", "fly"),
            Sight(boat, "在海上航行", "sailing on the sea", "sail"))),
        Place("花园", "在花园里", "the garden", "in the garden", (
            Sight(butterfly, "在花丛中跳舞", "dancing among the flowers", "fly"),
            Sight(noun("蜜蜂", "只", "bee"), "在花上采蜜", "collecting nectar from the flowers", "fly"),
            Sight(noun("蜗牛", "只", "snail"), "在墙上慢慢地爬", "crawling slowly up the wall", "crawl"))),
        Place("动物园", "在动物园里", "the zoo", "at the zoo", (
            Sight(noun("熊猫", "只", "panda"), "在吃竹子", "eating bamboo", "walk"),
            Sight(noun("猴子", "只", "monkey"), "在树上荡来荡去", "swinging in the trees", "run"),
            Sight(noun("大象", "头", "elephant"), "在往天上喷水", "spraying water into the air", "walk"),
            Sight(noun("长颈鹿", "只", "giraffe"), "在吃高高的树叶", "eating leaves from the tall trees", "walk"))),
        Place("湖边", "在湖边", "the lake", "by the lake", (
            Sight(noun("天鹅", "只", "swan"), "在湖面上慢慢地游", "gliding slowly across the lake", "swim"),
            Sight(noun("蜻蜓", "只", "dragonfly", "dragonflies"), "在水面上飞", "flying low over the water", "fly"),
            Sight(duck, "在湖里找吃的", "looking for food in the lake", "swim"))),
        Place("农场", "在农场里", "the farm", "on the farm", (
            Sight(noun("小鸡", "只", "chick"), "在地上啄米", "pecking at grain on the ground", "run"),
            Sight(noun("猪", "头", "pig"), "在泥里打滚", "rolling in the mud", "walk"),
            Sight(noun("鹅", "只", "goose", "geese"), "在院子里走来走去", "walking around the yard", "walk"))),
        Place("小山", "在小山上", "the hill", "on the hill", (
            Sight(noun("羊", "只", "sheep", "sheep"), "在山坡上吃草", "eating grass on the hillside", "walk"),
            Sight(noun("牛", "头", "cow"), "在大树下休息", "resting under a big tree", "walk"),
            Sight(noun("马", "匹", "horse"), "在草地上奔跑", "running across the grass", "run"))),
    )


PLACES = _places()

# Questions a child asks a grown-up, with the grown-up's answer, in both languages.
NATURE_QA = (
    ("为什么会下雨？", "因为云里的小水滴太多了，它们就掉下来，变成了雨。",
     "Why does it rain?", "Because the clouds get too full of tiny drops of water, and the drops fall down as rain."),
    ("鸭子为什么能浮在水上？", "因为鸭子的羽毛上有油，水进不去。",
     "Why can ducks float on the water?", "Because a duck's feathers are oily, so the water can't get in."),
    ("松鼠为什么要把松果藏起来？", "因为冬天很难找到吃的，它们要把松果留到冬天吃。",
     "Why do squirrels hide pine cones?", "Because it is hard to find food in winter, so they save the pine cones for then."),
    ("树叶为什么会变黄？", "秋天天气变冷了，树叶就变黄，然后落下来。",
     "Why do leaves turn yellow?", "In autumn the weather gets colder, so the leaves turn yellow and then fall."),
    ("月亮为什么跟着我们走？", "月亮离我们非常远，所以看起来好像一直跟着我们。",
     "Why does the moon follow us?", "The moon is very far away, so it looks as if it keeps following us."),
    ("小鸟怎么睡觉？", "小鸟站在树枝上睡觉，它们的脚会紧紧地抓住树枝。",
     "How do birds sleep?", "Birds sleep standing on a branch, and their feet hold on to it tightly."),
    ("蜜蜂为什么喜欢花？", "因为花里有甜甜的花蜜，蜜蜂用花蜜来做蜂蜜。",
     "Why do bees like flowers?", "Because flowers have sweet nectar, and bees use it to make honey."),
    ("雪是从哪里来的？", "天很冷的时候，云里的小水滴会变成雪花，飘下来。",
     "Where does snow come from?", "When it is very cold, tiny drops of water in the clouds turn into snowflakes and float down."),
    ("鱼在水里怎么呼吸？", "鱼用鳃呼吸，鳃能从水里得到空气。",
     "How do fish breathe in the water?", "Fish breathe with their gills, which take air out of the water."),
    ("风是从哪里来的？", "空气动起来，我们就感觉到风了。",
     "Where does the wind come from?", "When the air moves, we feel it as wind."),
    ("天为什么是蓝色的？", "阳光里有很多种颜色，蓝色的光被空气散开，所以天看起来是蓝色的。",
     "Why is the sky blue?", "Sunlight has many colors in it, and the air spreads the blue light around, so the sky looks blue."),
    ("彩虹是怎么来的？", "下雨以后，阳光照在小水滴上，就分成了七种颜色。",
     "How is a rainbow made?", "After rain, sunlight shines through tiny drops of water and splits into seven colors."),
)


# ---------------------------------------------------------------------------------------
# The tea shop: the single source of every shop fact in the corpus
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """One thing the tea shop sells, at one fixed price in yuan.

    Teas are sold by the tin (罐) or, for pu-erh, by the cake (饼); ``unit_en`` is then the
    English container word. Teaware has no unit: 一把茶壶 is simply "a teapot".
    """

    key: str
    zh: str
    measure: str  # the Chinese measure word: 罐, 饼, 把, 个
    en: str
    en_plural: str  # used when there is no unit: teapots
    unit_en: str | None  # tin, cake, or None
    unit_en_plural: str | None
    price: int  # yuan
    weight_g: int | None  # grams per tin or cake
    about_zh: str  # a predicate after 它: 喝起来清香，有一点点苦
    about_en: str  # a predicate after "it": tastes fresh and light, a little bitter
    water_c: int | None = None  # brewing water temperature, teas only
    steep_minutes: int | None = None


@dataclass(frozen=True)
class TeaShop:
    name_zh: str
    name_en: str
    keeper: Character
    helper: Character
    address_zh: str
    address_en: str
    open_hour: int  # 24-hour clock
    close_hour: int
    closed_day: int  # index into WEEKDAYS: 0 is Monday
    free_shipping_from: int  # orders of this many yuan or more ship free
    shipping_fee: int  # yuan, for smaller orders
    delivery_days: tuple[int, int]  # a parcel arrives this many days after the order, at the soonest and latest
    returns_days: int  # unopened goods can be returned within this many days
    products: tuple[Product, ...]

    def product(self, key: str) -> Product:
        """The product called ``key`` ("green_tea", "oolong", ...); KeyError lists the keys."""
        for item in self.products:
            if item.key == key:
                return item
        raise KeyError(f"no product {key!r} in the tea shop; choose one of {[p.key for p in self.products]}")

    @property
    def teas(self) -> tuple[Product, ...]:
        return tuple(p for p in self.products if p.unit_en)


TEA_SHOP = TeaShop(
    name_zh="清泉茶铺", name_en="Clear Spring Tea Shop",
    keeper=Character("林阿姨", "Aunt Lin", "f", "adult"),
    helper=Character("小周", "Xiao Zhou", "m", "adult"),
    address_zh="青石镇河边路8号", address_en="8 River Road, Qingshi Town",
    open_hour=9, close_hour=21, closed_day=0,
    free_shipping_from=199, shipping_fee=12, delivery_days=(2, 4), returns_days=7,
    products=(
        Product("green_tea", "绿茶", "罐", "green tea", "green teas", "tin", "tins", 48, 100,
                "喝起来清香，有一点点苦", "tastes fresh and light, and a little bitter", 80, 2),
        Product("oolong", "乌龙茶", "罐", "oolong tea", "oolong teas", "tin", "tins", 58, 100,
                "很香，喝完嘴里甜甜的", "smells lovely and leaves a sweet taste in the mouth", 95, 3),
        Product("black_tea", "红茶", "罐", "black tea", "black teas", "tin", "tins", 42, 100,
                "味道甜甜的，还可以加牛奶", "tastes sweet and is good with milk", 95, 3),
        Product("jasmine", "茉莉花茶", "罐", "jasmine tea", "jasmine teas", "tin", "tins", 36, 100,
                "有茉莉花的香味，一点也不苦", "smells of jasmine flowers and is not bitter at all", 85, 2),
        Product("puerh", "普洱茶", "饼", "pu-erh tea", "pu-erh teas", "cake", "cakes", 128, 357,
                "味道很浓，放得越久越好喝", "tastes strong and gets better the longer it is kept", 100, 1),
        Product("teapot", "茶壶", "把", "teapot", "teapots", None, None, 168, None,
                "是紫砂做的，能装四杯茶", "is made of purple clay and holds four cups of tea"),
        Product("teacup", "茶杯", "个", "teacup", "teacups", None, None, 18, None,
                "是白瓷做的，很轻", "is made of white porcelain and is very light"),
    ),
)

# What a customer may want, and the tea Aunt Lin recommends for it (always the same one).
TEA_WISHES = (("不苦的", "not bitter", "jasmine"), ("可以加牛奶的", "good with milk", "black_tea"),
              ("清淡一点的", "light and fresh", "green_tea"), ("很香的", "very fragrant", "oolong"),
              ("味道浓一点的", "strong", "puerh"))
# Fixed prices of the town market, in yuan per piece.
MARKET_PRICES = {"苹果": 3, "梨": 2, "桃子": 4, "橘子": 2}


# ---------------------------------------------------------------------------------------
# Language helpers: numbers, counting, clocks, names, pronouns, quotes
# ---------------------------------------------------------------------------------------

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


def en_count(n: int, thing: Noun | Product, article: bool = False) -> str:
    """English count: (3, cat) -> "three cats"; (1, cat) -> "one cat", or "a cat" with ``article``.

    A tea counts its containers: (2, oolong) -> "two tins of oolong tea".
    """
    unit = getattr(thing, "unit_en", None)
    if unit:
        body = f"{unit if n == 1 else thing.unit_en_plural} of {thing.en}"
    else:
        body = thing.en if n == 1 else thing.en_plural
    if n == 1 and article:
        return a_or_an(body)
    return f"{en_number(n)} {body}"


def full_stop(text: str) -> str:
    """End an English sentence with one full stop, even after "a.m." or "p.m."."""
    return text if text.endswith(".") else text + "."


def cap(text: str) -> str:
    """Capitalise the first letter of an English sentence: "three cats" -> "Three cats"."""
    return text[:1].upper() + text[1:]


def zh_clock(hour: int, minute: int = 0) -> str:
    """Spoken Chinese time: (9, 0) -> 上午九点, (14, 30) -> 下午两点半, (21, 0) -> 晚上九点."""
    period = "早上" if hour < 9 else "上午" if hour < 12 else "中午" if hour == 12 else \
        "下午" if hour < 18 else "傍晚" if hour == 18 else "晚上"
    h12 = hour if hour <= 12 else hour - 12
    number = "两" if h12 == 2 else zh_number(h12)
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


def yuan(amount: int, lang: str, rng: random.Random, spoken: bool = False) -> str:
    """A price: 48元 (or 48块钱 in speech) / 48 yuan. Amounts are always written in digits."""
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


# ---------------------------------------------------------------------------------------
# Events: each renderer holds the Chinese and English phrasings of one kind of event
# ---------------------------------------------------------------------------------------

Event = dict  # {"kind": "see", "who": ..., ...}: plain data, made by the planners below
_RENDERERS: dict[str, Callable[[Event, str, random.Random], str]] = {}
BLOCK_EVENTS = {"notice", "price_list"}  # rendered on lines of their own


def renders(kind: str):
    """Register the function below as the renderer of events of this ``kind``."""

    def register(fn):
        _RENDERERS[kind] = fn
        return fn

    return register


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


# --- the tea shop --------------------------------------------------------------------------

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


def price_line(p: Product, lang: str, rng: random.Random, spoken: bool = False) -> str:
    """The product's one price, in a sentence that names the product: 乌龙茶一罐58元。"""
    if lang == "zh":
        amount = yuan(p.price, lang, rng, spoken)
        return rng.choice([f"{p.zh}{amount}一{p.measure}。", f"一{p.measure}{p.zh}{amount}。", f"{p.zh}每{p.measure}{amount}。"])
    if p.unit_en:
        return rng.choice([f"The {p.en} is {p.price} yuan a {p.unit_en}.", f"A {p.unit_en} of {p.en} costs {p.price} yuan."])
    return rng.choice([f"The {p.en} is {p.price} yuan.", f"{cap(a_or_an(p.en))} costs {p.price} yuan."])


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


# ---------------------------------------------------------------------------------------
# Planners: one function per story kind, returning a StoryPlan (plain data)
# ---------------------------------------------------------------------------------------


@dataclass
class StoryPlan:
    """What happens in one story: its kind and its events, with every name and number fixed."""

    kind: str
    events: list[Event]


def ev(kind: str, **slots) -> Event:
    """An event: ``ev("see", who=child, n=3, ...)`` -> {"kind": "see", "who": child, "n": 3, ...}."""
    if kind not in _RENDERERS:
        raise ValueError(f"no renderer for event kind {kind!r}; known kinds: {sorted(_RENDERERS)}")
    return {"kind": kind, **slots}


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


def render_story(plan: StoryPlan, lang: str, rng: random.Random) -> str:
    """Tell ``plan`` in ``lang`` ("zh" or "en"): sentences joined into lines, notices on lines of their own."""
    if lang not in LANGS:
        raise ValueError(f"lang must be 'zh' or 'en', got {lang!r}")
    lines, current = [], []
    for event in plan.events:
        text = _RENDERERS[event["kind"]](event, lang, rng)
        if not text:
            continue
        if event["kind"] in BLOCK_EVENTS:
            lines += ["".join(current) if lang == "zh" else " ".join(current)] if current else []
            lines.append(text)
            current = []
        else:
            current.append(text)
    if current:
        lines.append("".join(current) if lang == "zh" else " ".join(current))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The corpus: numbered stories, split into train and val, written to text files
# ---------------------------------------------------------------------------------------


def story_rng(seed: int, index: int, stream: str) -> random.Random:
    """The random stream ``stream`` ("plan", "zh", "en") of story ``index``, from a SHA-256 of all three."""
    digest = hashlib.sha256(f"{seed}/{index}/{stream}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def generate_story(seed: int, index: int) -> tuple[StoryPlan, str, str]:
    """Story number ``index`` of the corpus made with ``seed``: its plan, its Chinese and its English."""
    plan = plan_story(story_rng(seed, index, "plan"))
    return plan, render_story(plan, "zh", story_rng(seed, index, "zh")), render_story(plan, "en", story_rng(seed, index, "en"))


def split_of(seed: int, index: int) -> str:
    """"val" for about VAL_PERCENT % of story numbers, chosen by a hash, else "train"."""
    digest = hashlib.sha256(f"{seed}/{index}/split".encode()).digest()
    return "val" if int.from_bytes(digest[:4], "big") % 100 < VAL_PERCENT else "train"


def size_of(text: str, lang: str) -> int:
    """What the size targets count: Han characters in Chinese, letters A-Z a-z in English."""
    return len((HAN if lang == "zh" else LETTER).findall(text))


def generate_corpus(seed: int = COURSE_SEED, min_train: int = MIN_TRAIN, min_val: int = MIN_VAL) -> dict:
    """Stories 0, 1, 2, ... until both splits reach their size in both languages.

    Returns {"train": {"zh": [...], "en": [...]}, "val": {...}, "stories": n, "duplicates": d}.
    A story whose Chinese or English text already appeared is skipped (short plans can come out
    the same), so no document occurs twice and no validation story is also a training story.
    """
    docs = {split: {lang: [] for lang in LANGS} for split in SPLITS}
    sizes = {split: {lang: 0 for lang in LANGS} for split in SPLITS}
    goal = {"train": min_train, "val": min_val}
    seen, duplicates, index = {"zh": set(), "en": set()}, 0, 0
    while any(sizes[s][lang] < goal[s] for s in SPLITS for lang in LANGS):
        _, zh, en = generate_story(seed, index)
        split = split_of(seed, index)
        index += 1
        if zh in seen["zh"] or en in seen["en"]:
            duplicates += 1
            continue
        seen["zh"].add(zh)
        seen["en"].add(en)
        for lang, text in (("zh", zh), ("en", en)):
            docs[split][lang].append(text)
            sizes[split][lang] += size_of(text, lang)
    return {**docs, "stories": index, "duplicates": duplicates}


def corpus_text(documents: list[str]) -> str:
    """The file format: documents separated by one blank line, ending with a newline."""
    return "\n\n".join(documents) + "\n"


def corpus_figures(corpus: dict) -> dict:
    """Documents, Han characters, letters, bytes, distinct characters and words, per split and language."""
    figures = {}
    for split in SPLITS:
        for lang in LANGS:
            text = corpus_text(corpus[split][lang])
            distinct = set(HAN.findall(text)) if lang == "zh" else set(re.findall(r"[A-Za-z]+(?:['-][A-Za-z]+)*", text.lower()))
            figures[split, lang] = {"documents": len(corpus[split][lang]), "size": size_of(text, lang),
                                    "bytes": len(text.encode("utf-8")), "distinct": len(distinct)}
    return figures


def seen_in_train(corpus: dict, lang: str) -> float:
    """The share of validation sentences that also occur, word for word, somewhere in train.

    Every document is new, but short sentences ("小明很开心。") recur; this says how much of the
    validation text a model could have memorised rather than composed.
    """
    def sentences(docs: list[str]) -> list[str]:
        return [s for doc in docs for s in SENTENCE_END[lang].split(doc) if s.strip()]

    train = set(sentences(corpus["train"][lang]))
    val = sentences(corpus["val"][lang])
    return sum(s in train for s in val) / len(val)


def _readme(seed: int, command: str, seconds: float, corpus: dict, figures: dict) -> str:
    rows = [f"| {split} | {lang} | {split}.{lang}.txt | {f['documents']:,} | {f['size']:,} | {f['bytes']:,} | {f['distinct']:,} |"
            for (split, lang), f in figures.items()]
    sample = next(i for i, doc in enumerate(corpus["train"]["zh"]) if len(doc) < 140 and "“" in doc)
    total_bytes = sum(f["bytes"] for f in figures.values())
    return "\n".join([
        "# The course corpus (生成的双语故事)",
        "",
        "Simple stories in the TinyStories spirit, written by the course's own generator",
        "(`glm3_teach/stories.py`): each story is planned once and rendered in Chinese and in English,",
        "so document *k* of `train.zh.txt` is a translation of document *k* of `train.en.txt`",
        "(the same holds for `val`). Documents are separated by one blank line. Read them with",
        "`glm3_teach.data.load_documents(split, lang)` or `load_corpus(split, lang)`.",
        "",
        "Do not edit these files by hand: `tests/test_stories.py` regenerates them and compares them byte for byte.",
        "",
        "## How it was made",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- seed: {seed}",
        f"- generator version: {GENERATOR_VERSION}",
        f"- stories generated: {corpus['stories']:,} ({corpus['duplicates']:,} exact "
        f"{'repeat' if corpus['duplicates'] == 1 else 'repeats'} skipped)",
        f"- split: story *i* goes to `val` when a SHA-256 of the seed and *i* falls in the lowest {VAL_PERCENT}%",
        f"- wall time: {seconds:.1f} s on one CPU core (generation and writing)",
        "",
        "## Figures",
        "",
        "Size is Han characters (U+4E00 to U+9FFF) for Chinese and letters A-Z, a-z for English;",
        "distinct counts Chinese characters or lower-cased English words.",
        "",
        "| split | lang | file | documents | size | bytes | distinct |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"All four files together: {total_bytes:,} bytes. Every document is different, but short sentences recur:",
        f"{seen_in_train(corpus, 'zh'):.0%} of the Chinese and {seen_in_train(corpus, 'en'):.0%} of the English validation",
        "sentences also occur word for word in train (names, numbers and the order of events make the rest new).",
        "",
        "## A sample (training document " + str(sample) + ")",
        "",
        *[f"> {line}" for line in corpus["train"]["zh"][sample].split("\n")],
        "",
        *[f"> {line}" for line in corpus["train"]["en"][sample].split("\n")],
        "",
    ])


def write_corpus(out: Path, seed: int = COURSE_SEED, command: str | None = None) -> dict:
    """Generate the corpus, write the four text files and README.md into ``out``; return the figures."""
    start = time.perf_counter()
    corpus = generate_corpus(seed)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for lang in LANGS:
            (out / f"{split}.{lang}.txt").write_bytes(corpus_text(corpus[split][lang]).encode("utf-8"))
    seconds = time.perf_counter() - start
    figures = corpus_figures(corpus)
    command = command or f"python -m glm3_teach.stories --seed {seed} --out {out}"
    (out / "README.md").write_text(_readme(seed, command, seconds, corpus, figures), encoding="utf-8")
    return {"figures": figures, "seconds": seconds, "stories": corpus["stories"], "duplicates": corpus["duplicates"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.stories",
                                     description="Write the course's bilingual story corpus (train/val, zh/en) and its README.")
    parser.add_argument("--seed", type=int, default=COURSE_SEED, help=f"random seed (default: the course seed, {COURSE_SEED})")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: data_dir()/corpus)")
    args = parser.parse_args(argv)
    from glm3_teach.errors import cli_main

    cli_main(parser.prog, lambda: _write_and_report(args))


def _write_and_report(args: argparse.Namespace) -> None:
    out = args.out or data_dir() / "corpus"
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the corpus files")
    shown = args.out if args.out is not None else Path("data/corpus")
    result = write_corpus(out, args.seed, command=f"python -m glm3_teach.stories --seed {args.seed} --out {shown}")
    for (split, lang), f in result["figures"].items():
        unit = "Han characters" if lang == "zh" else "English letters"
        print(f"{split:>5}.{lang}: {f['documents']:>6,} documents  {f['size']:>10,} {unit:<15}  {f['bytes']:>10,} bytes")
    print(f"{result['stories']:,} stories ({result['duplicates']:,} skipped as exact repeats) written to {out} "
          f"in {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
