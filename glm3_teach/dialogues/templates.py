"""The customers' side of the SFT set: question templates per intent, openers, closers, and the held-out rule.

Taught in lesson 08 (why whole *templates* are held out) and used for lesson 09's tool
dialogues. ``TEMPLATES`` maps intent -> language -> at least 12 phrasings (25 for plain intents); template *k* of
every list (and opener, closer and order-id reply *k*) is held out when ``k % 5 == 2``
(``is_heldout``): it appears only in the ``heldout`` split. ``compose`` wraps a question in an
opener and a closer ("您好，" ... "谢谢！"). ``MORE_TOOL_TEMPLATES`` holds more training-only phrasings of
the tool questions, which only the fresh tool dialogues of lesson 09's third stage draw from.

What it leaves out: spelling mistakes and mixed-language questions.
"""

from __future__ import annotations

import random


def is_heldout(index: int) -> bool:
    """The fixed rule that holds out a template (or an opener/closer): its index k has k % 5 == 2."""
    return index % 5 == 2


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

# Templates 15-24 of every plain intent (second edition). With only the first 15 the shipped model
# answered 66% of held-out questions: its failures were new phrasings read as another intent
# ("What street is the shop on?" answered with the delivery time), because a dozen training phrasings
# teach a few key words, not the meaning. These widen the words each intent is asked with; the same
# rule holds out index 17 and 22 (and still 2, 7, 12), so the held-out split grows to 5 per list.
MORE_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "price": {
        "zh": ("{p}标价多少？", "一{m}{p}卖多少？", "你们的{p}怎么收费？", "{p}什么价钱？", "我想知道{p}卖几块钱。",
               "{p}多少钱能买到？", "买{p}得花多少？", "想买{p}，价格怎么样？", "{p}贵吗？", "问下{p}一{m}的价格。"),
        "en": ("What's the {p} going for?", "How much is one {p}?", "Can you tell me what the {p} costs?",
               "What would I pay for the {p}?", "Tell me the price of the {p}.", "How much is the {p} these days?",
               "Is the {p} cheap? How much?", "What's the cost of the {p}?", "Price check on the {p}?",
               "How many yuan is the {p}?"),
    },
    "hours": {
        "zh": ("店里几点开始营业？", "晚上几点关店？", "你们一天开几个小时，几点到几点？", "开门时间是几点？", "关门时间是几点？",
               "你们早上几点上班？", "几点以后就不营业了？", "我下班后过去，你们还开着吗？几点关门？", "请问每天的营业时间。",
               "你们店开门和关门各是几点？"),
        "en": ("When do you open in the morning?", "What time do you shut?", "What are the shop's hours?",
               "Opening times, please.", "When does the store close?", "Till when are you open today?",
               "What time do you stop serving customers?", "Can I still come by in the evening? When do you close?",
               "At what time does the shop open?", "Tell me your opening and closing times."),
    },
    "closed_day": {
        "zh": ("{d}你们上班吗？", "一周有哪天不开？", "{d}那天店里有人吗？", "你们的店哪天关门？", "{d}可以过去买茶叶吗？",
               "店里每周休息几天？哪天？", "{d}开不开门？", "你们有没有不营业的日子？", "休息日是星期几？",
               "我想{d}去店里，会不会关门？"),
        "en": ("Are you open {d}?", "Which day of the week is the shop shut?", "Is the shop closed on {d}?",
               "Do you close on any day?", "Can I drop by on {d}?", "What day are you not open?",
               "Are you working on {d}?", "Is there a day when you don't open?", "Which day do you take off?",
               "I plan to come on {d}. Are you open then?"),
    },
    "address": {
        "zh": ("你们店开在什么位置？", "茶铺的地址在哪里？", "你们店在哪儿啊？我想过去看看。", "门店地址是哪里？", "去茶铺怎么走？",
               "你们店在哪条街？", "能把店的地址告诉我吗？", "我想到店里逛逛，你们在哪？", "你们的铺子在哪个地方？",
               "实体店地址是什么？"),
        "en": ("Where's the shop?", "What's the address of the store?", "Where can I find you?",
               "Which road is the shop on?", "How do I get to the tea shop?", "Where is the store located?",
               "Can you tell me where the shop is?", "I want to come to the shop. What's the address?",
               "Where is your tea shop located?", "In which town and street is the shop?"),
    },
    "free_shipping": {
        "zh": ("买多少才包邮？", "包邮要满多少钱？", "多少钱以上不用运费？", "免运费的条件是什么？", "订单满多少免邮费？",
               "买够多少钱可以不付邮费？", "有包邮吗？要买多少？", "我要买多少东西才能免邮？", "满额包邮是多少？", "免邮门槛多少？"),
        "en": ("How much for free shipping?", "What do I have to spend to ship for free?",
               "Is there a minimum for free shipping?", "When do I get free postage?",
               "Do orders over a certain amount ship free?", "What's the threshold for free delivery?",
               "How much must I order to skip the shipping fee?", "Can shipping be free if I order more?",
               "Above what total is shipping free?", "Tell me when shipping is free."),
    },
    "shipping_fee": {
        "zh": ("运费收多少？", "快递费是多少钱？", "寄快递的话要加钱吗？加多少？", "邮费多少钱？", "寄到家要多少运费？",
               "运费是几块钱？", "发快递收多少钱？", "订单不满包邮要付多少运费？", "你们运费怎么收？", "邮寄费用是多少？"),
        "en": ("What's the postage?", "How much do you charge for shipping?", "What will shipping cost me?",
               "Is there a fee for delivery?", "How much is the delivery charge?", "What's the shipping cost?",
               "How much does postage cost?", "If my order is small, how much is shipping?",
               "Do you charge a shipping fee? How much?", "Shipping fee, please?"),
    },
    "delivery": {
        "zh": ("多长时间能到货？", "寄到{c}多久？", "下单后几天能收到？", "快递要走几天？", "发货后几天送到？", "送到{c}要几天？",
               "物流一般要几天？", "我在{c}，多久能拿到茶叶？", "到货时间是多久？", "大概几天能送到家？"),
        "en": ("How many days is delivery?", "How long to get to {c}?", "How long will it take to arrive?",
               "How soon does an order arrive?", "What's the delivery time to {c}?", "How long does the parcel take?",
               "How many days will shipping take?", "I live in {c}. How long until my tea arrives?",
               "When should my order get here?", "How long do I wait for delivery?"),
    },
    "returns": {
        "zh": ("能退货吗？", "不满意可以退吗？", "买回去不喜欢，可以退吗？", "几天内能退货？", "退货怎么办理？", "可以退款吗？",
               "茶没拆封能退吗？", "你们的退换货规定是怎样的？", "买了能不能退？", "退货期限是几天？"),
        "en": ("Can I send it back?", "What's your refund policy?", "Can I return my order if I change my mind?",
               "How long do I have to return something?", "Are returns allowed?", "Can I return the tea if it's unopened?",
               "Do you give refunds?", "What happens if I want to return an item?", "Can I exchange or return it?",
               "How many days for returns?"),
    },
    "recommend": {
        "zh": ("有{w}茶推荐吗？", "哪款茶{wb}？", "我想喝点{w}茶，有推荐吗？", "{w}茶哪种好？", "你觉得哪种茶{wb}？",
               "帮我选个{w}茶吧。", "有没有推荐的{w}茶？", "我朋友喜欢{w}茶，买哪种好？", "请问哪个茶{wb}？", "想找一款{w}茶。"),
        "en": ("Which tea would you recommend that is {w}?", "I'm after a tea that's {w}.",
               "Do you have any recommendation for a tea that is {w}?", "What tea is {w}?",
               "Can you suggest a tea that is {w}?", "I need a tea that is {w}. Which one?", "Got a tea that's {w}?",
               "Help me pick a tea that is {w}.", "Tell me which tea is {w}.",
               "What should I buy if I want a tea that is {w}?"),
    },
    "brew": {
        "zh": ("{p}用什么温度的水？", "{p}泡几分钟好？", "{p}的正确泡法是什么？", "泡{p}要多热的水？", "{p}怎么泡好喝？",
               "{p}该泡多长时间？", "冲泡{p}要注意什么？", "刚买了{p}，水温和时间怎么弄？", "{p}用多少度水泡？", "教教我怎么泡{p}。"),
        "en": ("What temperature for the {p}?", "How long do I brew the {p}?", "What's the right way to brew the {p}?",
               "How hot should the water be when making the {p}?", "How should the {p} be prepared?",
               "How many minutes should the {p} steep?", "Steeping time for the {p}?",
               "I got the {p}. What water temperature and how long?", "How do I prepare the {p}?",
               "Give me brewing tips for the {p}."),
    },
    "identity": {
        "zh": ("你是人还是机器？", "你是哪位？", "跟我聊天的是谁？", "你是AI吗？", "你是智谱的ChatGLM吗？", "说说你是谁。",
               "你是店员吗？", "你是真人客服吗？", "你是什么模型？", "你是{keeper}本人吗？"),
        "en": ("Are you human?", "Who is this?", "Am I talking to a bot?", "Is this a real person?",
               "What kind of model are you?", "Tell me about yourself.", "Are you a shop worker?",
               "Are you a person or a program?", "Are you ChatGLM?", "Is this {keeper}?"),
    },
    "out_of_domain": {
        "zh": ("{c}今天会下雨吗？", "帮我写一篇关于{t}的作文。", "你能帮我写一封求职信吗？", "地球到月亮有多远？", "推荐几本好看的小说。",
               "怎么学好英语？", "帮我规划一下去{c}的旅行。", "明天的彩票号码是多少？", "手机坏了怎么修？", "给我唱首歌吧。"),
        "en": ("Will it rain in {c} today?", "Write an essay about {t}.", "Can you help me write a cover letter?",
               "How far is the moon from the earth?", "Recommend some good novels.", "How can I learn Chinese fast?",
               "Plan a trip to {c} for me.", "What are tomorrow's lottery numbers?", "How do I fix my phone?",
               "Sing me a song."),
    },
    "greeting": {
        "zh": ("你好啊", "早安", "您好，在吗", "哈啰", "晚上好呀", "你好你好", "嗨，在不在？", "喂，有人在吗？", "老板在吗？", "中午好"),
        "en": ("Morning!", "Hey, hello", "Hi, anyone here?", "Evening!", "Yo", "Hello hello", "Hi, good day",
               "Hey, is someone there?", "Hi, hello", "Good day"),
    },
    "thanks": {
        "zh": ("谢谢您", "感谢感谢", "好的，多谢了", "谢了", "太好了，谢谢", "收到，谢谢", "非常感谢", "谢谢你帮我", "好的好的，谢谢",
               "感谢您的回答"),
        "en": ("Thank you", "Thanks so much", "Thanks for your help", "Ta", "Great, thank you", "Much appreciated",
               "OK thanks", "Thank you, that helps", "Thanks a bunch", "Nice, thanks"),
    },
    "translate": {
        "en": ("翻成英文：{s}", "这句用英语怎么讲：{s}", "请帮我翻译成英文：{s}", "英语怎么说：{s}", "把这段话译成英文：{s}",
               "请用英文表达：{s}", "帮我翻一下，要英文的：{s}", "麻烦把这句话翻译为英文：{s}", "译成英语：{s}", "“{s}”翻译成英文是什么？"),
        "zh": ("Into Chinese, please: {s}", "Translate this to Chinese: {s}", "Could you translate this into Chinese? {s}",
               "What's the Chinese for this? {s}", "Please put this in Chinese: {s}", "Chinese, please: {s}",
               "Give me this sentence in Chinese: {s}", "Can you say this in Chinese for me? {s}",
               "Translate into Mandarin: {s}", 'What is "{s}" in Chinese?'),
    },
    "followup": {
        "zh": ("{p}那个呢？", "那换{p}呢？", "要是换成{p}呢？", "{p}呢，一样吗？", "那问问{p}。", "再说说{p}？", "{p}怎么样呢？",
               "那{p}又是怎样？", "还有，{p}呢？", "那么换成{p}的话呢？"),
        "en": ("And the {p}, then?", "What about the {p} then?", "And how about the {p}?", "Same for the {p}?",
               "And if it's the {p}?", "The {p}, then?", "Now what about the {p}?", "OK, what about the {p}?",
               "And the {p} too?", "Tell me the same for the {p}."),
    },
}
for _intent, _by_lang in MORE_TEMPLATES.items():
    for _lang, _extra in _by_lang.items():
        TEMPLATES[_intent][_lang] += _extra

OOD_TOPICS = (("春天", "spring"), ("月亮", "the moon"), ("大海", "the sea"), ("小猫", "a little cat"), ("秋天的树叶", "autumn leaves"))


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

# More training phrasings of the tool questions, written after data/sft was made (lesson 09's third stage:
# stage 2 had never seen 剩 or "left in stock" asked many ways). Training only: they are not in TEMPLATES,
# so the held-out rule never picks one and data/sft does not change; ``[sft] more_tool_phrasings`` lets the
# fresh tool dialogues (``fresh_tool_items``) draw from them besides the training templates. None of them is
# a held-out template or close to one (tests/test_dialogues.py measures it).
MORE_TOOL_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "order_status": {
        "zh": ("订单{id}现在到哪一步了？", "查一下{id}，到了没有？", "{id}这个单子什么时候发货？", "{id}，帮我看看这单。",
               "订单{id}怎么还没到？", "请帮我追踪订单{id}。", "{id}的包裹寄出了没？", "单号{id}的茶现在在路上吗？"),
        "en": ("What's happening with order {id}?", "Is {id} on its way to me?", "Could you look up {id} for me?",
               "I'd like an update on order {id}.", "When does order {id} arrive?", "Track order {id}.",
               "Where's my parcel? The number is {id}.", "Order {id} hasn't come yet. Can you see why?"),
    },
    "order_ask": {
        "zh": ("我的东西寄出来没？", "帮我看看快递到哪了。", "我想查物流。", "我的茶什么时候送到？", "订单怎么样了？",
               "我前几天买的茶叶到哪了？"),
        "en": ("Can you tell me where my order is?", "I'd like to track my order.", "Is my parcel on its way?",
               "When does my tea arrive?", "What's the status of my order?", "My tea hasn't arrived. Can you check?"),
    },
    "stock": {
        "zh": ("{p}现在库存还有多少{m}？", "看一下{p}有没有货。", "{p}断货了吗？", "能查下{p}的存货吗？", "{p}卖光了吗？",
               "有没有{p}的现货？", "我要买{p}，你们有吗？", "{p}还能买到吗？", "麻烦看看{p}还有没有库存。",
               "{p}现货有几{m}？", "{p}仓库里有货吗？", "{p}现在缺不缺货？", "{p}只剩一点了吗？", "剩下的{p}还有几{m}？",
               "{p}剩的货多吗？", "{p}还有存货没有？"),
        "en": ("Is any {p} available?", "How many {p} do you still have?", "Are there any {p} left in stock?",
               "Have you sold out of the {p}?", "Could you check if the {p} is available?", "Is the {p} available to buy?",
               "What quantity of the {p} is in stock?", "Can you see whether you still have the {p}?",
               "Do you carry the {p} right now?", "Is the {p} back in stock?", "Look up the stock of the {p} for me.",
               "I'd like some {p}. Is it in stock?", "What's the stock of the {p} today?", "Is there still {p} for sale?",
               "How much {p} is left in stock?", "Do you still sell the {p}, and how many are there?"),
    },
    "total": {
        "zh": ("{items}，一共该付多少？", "算一下{items}多少钱。", "我想要{items}，要付几块钱？", "{items}总价多少钱？",
               "请帮我算算{items}一共几元。", "{items}共计多少钱？", "买下{items}一共花多少？", "{items}加在一起多少钱？",
               "结账：{items}，多少钱？", "要是我拿{items}，总共多少钱？"),
        "en": ("How much is {items} altogether?", "Can you work out the total for {items}?", "What's the cost of {items}?",
               "For {items}, what do I owe?", "Add up {items}, please.", "How much do I pay for {items}?",
               "What would {items} cost me?", "Tell me the total price of {items}.", "I'll take {items}. How much?",
               "What does it cost to buy {items}?"),
    },
}


# A second set, written for lesson 09's stage 3 after run y: run y still answered Chinese stock questions with
# 剩 or 多少 and English ones about the shop's stock with a price or the address. More ways of asking about
# stock (and totals), none equal to or nearer a held-out template or a probe phrasing (tools/tool_probe.py)
# than a training one (tests/test_dialogues.py measures it). ``[sft] more_tool_phrasings = 2`` draws both sets.
SECOND_TOOL_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "stock": {
        "zh": ("{p}库存还剩几{m}？", "帮我看下{p}还有多少库存。", "{p}目前还有库存吗？", "请问{p}卖没卖完？", "查一下{p}的存货数量。",
               "{p}有没有卖完？", "{p}还有现货吗？", "你们家{p}还有货没？", "{p}库存充足吗？", "我想看看{p}的库存情况。",
               "{p}今天还有吗？", "{p}的库存数是多少？", "{p}的现货剩几{m}了？", "{p}是否有货？", "查询{p}库存。",
               "{p}有多少现货？", "{p}货源还有吗？", "请帮忙查{p}还有多少。", "麻烦查查{p}的库存。", "{p}还有得买吗？"),
        "en": ("Are there still some {p} in stock?", "Can you tell me if the {p} is in stock?", "Is the {p} out of stock?",
               "What's left of the {p}?", "I'd like to buy the {p}. Do you have it in stock?", "Please see how many {p} are in stock.",
               "Are you still stocking the {p}?", "Is there any {p} left?", "How much stock of the {p} is there?",
               "Has the {p} run out?", "Any {p} remaining?", "Is the {p} still in stock?", "Can you check the stock of {p}?"),
    },
    "total": {
        "zh": ("{items}，总计多少钱？", "帮我把{items}的价钱加起来。", "{items}一共是多少钱呢？", "付款的话，{items}多少钱？",
               "我打算买{items}，请算下总价。", "计算一下{items}的价格。", "{items}全部多少钱？", "{items}总额多少？"),
        "en": ("What's the price of {items} altogether?", "Sum up {items} for me, please.", "How much will {items} cost?",
               "Please calculate {items}.", "What's the bill for {items}?", "Give me the total for {items}.",
               "How much altogether for {items}?", "Price for {items}, please."),
    },
}
MORE_TOOL_SETS = (("m", MORE_TOOL_TEMPLATES), ("n", SECOND_TOOL_TEMPLATES))  # (id letter, phrasings): set 1, set 2


ORDER_ID_REPLIES = {"zh": ("{id}", "订单号是{id}。", "是{id}", "我的订单号：{id}", "单号{id}，谢谢。", "{id}，麻烦了。",
                           "好的，{id}", "订单号{id}"),
                    "en": ("{id}", "It's {id}.", "My order number is {id}.", "{id}, thanks.", "Order {id}.",
                           "The number is {id}.", "Sure, {id}", "It is {id}, thank you.")}


def fill(template: str, **slots: str) -> str:
    """Fill only the slots a template names (``str.format`` ignores extra keyword arguments)."""
    return template.format(**slots)


def template_id(intent: str, lang: str, index: int) -> str:
    """``template_id("price", "zh", 3)`` -> "price.zh.03"."""
    return f"{intent}.{lang}.{index:02d}"


def templates_for(intent: str, lang: str, split: str, more: int = 0) -> list[tuple[str, str]]:
    """(template id, template) pairs a split draws from: training templates for train/val, held-out for heldout.

    ``more``: the train split also draws from the first ``more`` sets of ``MORE_TOOL_SETS`` (0, 1 or 2;
    ``True`` is 1): ``MORE_TOOL_TEMPLATES`` (ids like "stock.zh.m03"), then ``SECOND_TOOL_TEMPLATES``
    ("stock.zh.n03").
    """
    rows = [(template_id(intent, lang, k), t) for k, t in enumerate(TEMPLATES[intent][lang])]
    keep_heldout = split == "heldout"
    chosen = [(tid, t) for k, (tid, t) in enumerate(rows) if is_heldout(k) == keep_heldout]
    if split == "train":
        for letter, phrasings in MORE_TOOL_SETS[:int(more)]:
            chosen += [(f"{intent}.{lang}.{letter}{k:02d}", t) for k, t in enumerate(phrasings.get(intent, {}).get(lang, ()))]
    return chosen
