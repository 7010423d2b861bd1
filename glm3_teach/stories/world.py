"""The world of the course's stories: people, animals, places and words, each in Chinese and English.

Part of ``glm3_teach.stories``, the generator of the corpus that lesson 00 shows, lesson 01
trains the tokenizer on and lesson 06 pretrains the model on. Lesson 08's dialogue generator
(``glm3_teach.dialogues``) takes its weekdays and cities from here. Every entry holds both
forms, so a renderer can tell a plan in either language; the tea shop has its own module
(``stories.shop``).

What it leaves out: characters that persist between stories, rare words and idioms,
traditional characters, real places beyond a few big cities.
"""

from __future__ import annotations

from dataclasses import dataclass

LANGS = ("zh", "en")  # every word of the world comes in these two languages


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
