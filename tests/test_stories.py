"""The story generator: reproducible byte for byte, big enough, parallel, and true to the tea shop.

Prices, hours and shipping rules below are written out by hand from the course plan (the
chat lessons fine-tune on the same facts), not read from ``TEA_SHOP``, so a change to the
catalogue or a renderer that garbles a fact makes these tests fail.
"""

from __future__ import annotations

import re
import time
import pytest

from glm3_teach import stories
from glm3_teach.paths import REPO_ROOT
from glm3_teach.stories import (COURSE_SEED, GRANDMA, TEA_SHOP, StoryPlan, en_clock, en_count, en_number, ev,
                                generate_corpus, generate_story, noun, render_story, zh_clock, zh_count, zh_number)

COMMITTED = REPO_ROOT / "data" / "corpus"
FILES = ("train.zh.txt", "train.en.txt", "val.zh.txt", "val.en.txt")
HAN = re.compile(r"[\u4e00-\u9fff]")
LETTER = re.compile(r"[A-Za-z]")

PRICES_ZH = {"绿茶": 48, "乌龙茶": 58, "红茶": 42, "茉莉花茶": 36, "普洱茶": 128, "茶壶": 168, "茶杯": 18}
PRICES_EN = {"green tea": 48, "oolong tea": 58, "black tea": 42, "jasmine tea": 36, "pu-erh tea": 128,
             "teapot": 168, "teacup": 18}
ZH_DIGITS = {"一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
EN_DIGITS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


def documents(text: str) -> list[str]:
    return text.rstrip("\n").split("\n\n")


def zh_sentences(doc: str) -> list[str]:
    return [s for s in re.split(r"[。！？\n]", doc) if s.strip()]


def en_sentences(doc: str) -> list[str]:
    return [s for s in re.split(r'(?<!Mr\.)(?<!Ms\.)(?<!\.m\.)(?<=[.!?])"?\s+|\n', doc) if s.strip()]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """The corpus written by the command line with its defaults (the course seed) into a temp folder."""
    out = tmp_path_factory.mktemp("corpus")
    start = time.perf_counter()
    stories.main(["--out", str(out)])
    return out, time.perf_counter() - start


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    """The committed corpus, as documents per file."""
    return {name: documents((COMMITTED / name).read_text(encoding="utf-8")) for name in FILES}


# --- reproducible and fast -----------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_the_course_seed_reproduces_the_committed_file_byte_for_byte(regenerated, name):
    out, _ = regenerated
    assert (out / name).read_bytes() == (COMMITTED / name).read_bytes(), (
        f"data/corpus/{name} is not what the generator writes; if the change to glm3_teach/stories/ is meant, "
        f"bump GENERATOR_VERSION, run `python -m glm3_teach.stories` and commit the new files")


def test_the_readme_records_the_command_seed_version_and_figures(regenerated):
    readme = (regenerated[0] / "README.md").read_text(encoding="utf-8")
    assert f"--seed {COURSE_SEED}" in readme and f"seed: {COURSE_SEED}" in readme
    assert f"generator version: {stories.GENERATOR_VERSION}" in readme
    assert re.search(r"wall time: \d+\.\d s", readme)
    train_docs = len(documents((regenerated[0] / "train.zh.txt").read_text(encoding="utf-8")))
    assert f"| train | zh | train.zh.txt | {train_docs:,} |" in readme
    assert "“" in readme and '"' in readme  # the sample story, in both languages


def test_a_smaller_corpus_is_the_start_of_the_full_one_and_a_new_seed_changes_it(corpus):
    small = generate_corpus(COURSE_SEED, min_train=5_000, min_val=500)
    assert small["train"]["zh"] == corpus["train.zh.txt"][: len(small["train"]["zh"])]
    assert small["val"]["en"] == corpus["val.en.txt"][: len(small["val"]["en"])]
    other = generate_corpus(COURSE_SEED + 1, min_train=5_000, min_val=500)
    assert other["train"]["zh"][:20] != small["train"]["zh"][:20]
    differ = sum(a != b for a, b in zip(other["train"]["en"], small["train"]["en"]))
    assert differ >= 0.9 * min(len(other["train"]["en"]), len(small["train"]["en"]))


# --- size and format -----------------------------------------------------------------------


@pytest.mark.parametrize("name, pattern, at_least", [
    ("train.zh.txt", HAN, 1_000_000), ("train.en.txt", LETTER, 1_000_000),
    ("val.zh.txt", HAN, 100_000), ("val.en.txt", LETTER, 100_000)])
def test_each_file_is_large_enough(name, pattern, at_least):
    found = len(pattern.findall((COMMITTED / name).read_text(encoding="utf-8")))
    assert found >= at_least, f"{name} holds {found:,} characters, fewer than {at_least:,}"


def test_the_four_files_stay_small_enough_to_commit():
    total = sum((COMMITTED / name).stat().st_size for name in FILES)
    assert total < 9_000_000, f"the corpus is {total:,} bytes"


@pytest.mark.parametrize("name", FILES)
def test_documents_are_separated_by_exactly_one_blank_line(name):
    text = (COMMITTED / name).read_text(encoding="utf-8")
    assert "\r" not in text and "\n\n\n" not in text
    assert text.endswith("\n") and not text.endswith("\n\n") and not text.startswith("\n")
    assert all(doc.strip() == doc and doc for doc in documents(text))


@pytest.mark.parametrize("split", ["train", "val"])
def test_both_languages_hold_the_same_number_of_documents(corpus, split):
    assert len(corpus[f"{split}.zh.txt"]) == len(corpus[f"{split}.en.txt"]) > 0


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_validation_story_appears_in_train(corpus, lang):
    train, val = corpus[f"train.{lang}.txt"], corpus[f"val.{lang}.txt"]
    assert not set(val) & set(train)
    assert len(set(train)) == len(train)


def test_chinese_documents_are_in_chinese_and_english_ones_in_english(corpus):
    for zh, en in zip(corpus["train.zh.txt"][:500], corpus["train.en.txt"][:500]):
        assert len(HAN.findall(zh)) > 10 * len(LETTER.findall(zh))
        assert not HAN.search(en)


# --- the two languages say the same thing ----------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_every_story_names_the_same_amounts_of_money_and_temperatures_in_both_languages(corpus, split):
    checked = 0
    for k, (zh, en) in enumerate(zip(corpus[f"{split}.zh.txt"], corpus[f"{split}.en.txt"])):
        yuan_zh = set(re.findall(r"(\d+)(?:元|块钱)", zh))
        yuan_en = set(re.findall(r"(\d+)[- ]yuan", en))
        assert yuan_zh == yuan_en, f"{split} story {k}: {sorted(yuan_zh)} yuan in Chinese, {sorted(yuan_en)} in English"
        assert set(re.findall(r"(\d+)度", zh)) == set(re.findall(r"(\d+) degrees", en)), f"{split} story {k}"
        checked += bool(yuan_zh)
    assert checked > 0.3 * len(corpus[f"{split}.zh.txt"])  # a third of the stories involve money


class FirstOption:
    """A stand-in for random.Random that always takes the first phrasing and never the optional one."""

    def choice(self, options):
        return options[0]

    def random(self):
        return 0.99


def test_a_hand_built_shop_plan_renders_the_expected_sentences():
    xiaoming = stories.CHILDREN[0]
    oolong, teacup = TEA_SHOP.product("oolong"), TEA_SHOP.product("teacup")
    basket = ((oolong, 2), (teacup, 1))
    plan = StoryPlan("tea_visit", [
        ev("arrive_shop", who=(xiaoming, GRANDMA)),
        ev("shop_question", who=xiaoming, topic="price", arg=oolong, answerer=TEA_SHOP.keeper),
        ev("buy", who=GRANDMA, basket=basket),
        ev("total", basket=basket, total=134),
        ev("pay", who=GRANDMA, total=134, paid=200),
    ])
    assert render_story(plan, "zh", FirstOption()) == (
        "小明和奶奶来到了清泉茶铺。小明问：“请问，乌龙茶多少钱？”林阿姨说：“乌龙茶58元一罐。”"
        "奶奶说：“我要两罐乌龙茶和一个茶杯。”林阿姨算了算：“两罐乌龙茶和一个茶杯，一共134元。”"
        "奶奶给了林阿姨200元，林阿姨找给她66元。")
    assert render_story(plan, "en", FirstOption()) == (
        'Xiaoming and Grandma came to the Clear Spring Tea Shop. '
        'Xiaoming asked, "Excuse me, how much is the oolong tea?" Aunt Lin said, "The oolong tea is 58 yuan a tin." '
        'Grandma said, "I\'d like two tins of oolong tea and a teacup, please." '
        'Aunt Lin added it up: "Two tins of oolong tea and a teacup come to 134 yuan in all." '
        'Grandma gave Aunt Lin 200 yuan, and Aunt Lin gave her 66 yuan in change.')


def test_a_notice_stands_on_lines_of_its_own():
    plan = StoryPlan("tea_closed", [ev("arrive_shop", who=(GRANDMA,)), ev("notice"), ev("welcome", who=(GRANDMA,))])
    assert render_story(plan, "zh", FirstOption()).split("\n") == [
        "奶奶来到了清泉茶铺。", "门上贴着一张通知：", "清泉茶铺营业时间：9:00—21:00", "每周一休息", "满199元包邮",
        "林阿姨看见奶奶进来，笑着说：“欢迎光临！”"]
    assert render_story(plan, "en", FirstOption()).split("\n")[1:5] == [
        "There was a notice on the door:", "Clear Spring Tea Shop - open 9:00 to 21:00", "Closed on Mondays",
        "Free shipping on orders of 199 yuan or more"]


@pytest.mark.parametrize("n, chinese", [(0, "零"), (7, "七"), (10, "十"), (12, "十二"), (20, "二十"), (35, "三十五"), (99, "九十九")])
def test_zh_number(n, chinese):
    assert zh_number(n) == chinese


@pytest.mark.parametrize("n, english", [(1, "one"), (13, "thirteen"), (20, "twenty"), (21, "twenty-one"), (90, "ninety")])
def test_en_number(n, english):
    assert en_number(n) == english


def test_counting_uses_measure_words_and_plurals():
    apple, sheep, cup = noun("苹果", "个", "apple"), noun("羊", "只", "sheep", "sheep"), noun("茶", "杯", "cup of tea", "cups of tea")
    assert [zh_count(1, apple), zh_count(2, apple), zh_count(3, cup), zh_count(12, sheep)] == ["一个苹果", "两个苹果", "三杯茶", "十二只羊"]
    assert zh_count(2, measure="分钟") == "两分钟"
    assert [en_count(1, apple), en_count(1, apple, article=True), en_count(2, apple), en_count(3, sheep)] == \
        ["one apple", "an apple", "two apples", "three sheep"]
    assert en_count(2, TEA_SHOP.product("puerh")) == "two cakes of pu-erh tea"
    assert en_count(1, TEA_SHOP.product("teapot"), article=True) == "a teapot"


@pytest.mark.parametrize("hour, minute, chinese, spoken, digits", [
    (8, 30, "早上八点半", "half past eight in the morning", "8:30 a.m."),
    (9, 0, "上午九点", "nine o'clock in the morning", "9 a.m."),
    (12, 0, "中午十二点", "twelve noon", "12 p.m."),
    (14, 30, "下午两点半", "half past two in the afternoon", "2:30 p.m."),
    (21, 0, "晚上九点", "nine o'clock in the evening", "9 p.m.")])
def test_clock_times(hour, minute, chinese, spoken, digits):
    assert zh_clock(hour, minute) == chinese
    assert en_clock(hour, minute) == spoken and en_clock(hour, minute, spoken=False) == digits


def test_the_helpers_the_dialogue_generator_shares():
    """Units, counted words, hours in digits and the plainest price sentence (lesson 08 writes its answers with them)."""
    oolong, teapot = TEA_SHOP.product("oolong"), TEA_SHOP.product("teapot")
    assert [stories.en_unit(oolong), stories.en_unit(oolong, 3), stories.en_unit(teapot, 2)] == ["tin", "tins", "teapots"]
    assert [stories.en_things(oolong, 2), stories.en_things(teapot, 1)] == ["tins of oolong tea", "teapot"]
    assert [stories.en_counted(1, "tea cup", article=True), stories.en_counted(4, "tins of oolong")] == \
        ["a tea cup", "four tins of oolong"]
    assert [zh_clock(9, digits=True), zh_clock(21, digits=True), zh_clock(14, 30, digits=True)] == ["上午9点", "晚上9点", "下午2点半"]
    assert [stories.price_sentences(oolong, "zh")[0], stories.price_sentences(teapot, "en")[0]] == \
        ["乌龙茶58元一罐。", "The teapot is 168 yuan."]
    assert stories.price_sentences(oolong, "zh", "58块钱")[1] == "一罐乌龙茶58块钱。"


def test_each_module_names_its_lesson_and_imports_only_downward():
    """The subpackage's modules say which lesson uses them, and none imports the dialogue generator (which imports them)."""
    import ast

    files = sorted((REPO_ROOT / "glm3_teach" / "stories").glob("*.py"))
    assert len(files) >= 10
    for path in files:  # read, never imported: importing __main__ would write the corpus
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert re.search(r"[Ll]essons? 0\d", ast.get_docstring(tree) or ""), f"stories/{path.name} names no lesson"
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m.startswith("glm3_teach.dialogues")}, path.name


def test_numbers_out_of_range_say_so():
    with pytest.raises(ValueError, match="0..99"):
        zh_number(100)
    with pytest.raises(ValueError, match="0..99"):
        en_number(-1)


def test_bad_event_kind_and_language_say_what_is_allowed():
    with pytest.raises(ValueError, match="no renderer for event kind 'fly_to_moon'"):
        ev("fly_to_moon")
    with pytest.raises(ValueError, match="lang must be 'zh' or 'en', got 'fr'"):
        render_story(StoryPlan("x", []), "fr", FirstOption())


# --- the tea shop never contradicts itself ------------------------------------------------------


def test_the_catalogue_holds_the_course_shop_facts():
    assert {p.zh: p.price for p in TEA_SHOP.products} == PRICES_ZH
    assert {p.en: p.price for p in TEA_SHOP.products} == PRICES_EN
    assert (TEA_SHOP.open_hour, TEA_SHOP.close_hour, stories.WEEKDAYS_EN[TEA_SHOP.closed_day]) == (9, 21, "Monday")
    assert (TEA_SHOP.free_shipping_from, TEA_SHOP.shipping_fee, TEA_SHOP.delivery_days) == (199, 12, (2, 4))
    with pytest.raises(KeyError, match="choose one of"):
        TEA_SHOP.product("coffee")


def _zh_basket_total(sentence: str) -> int:
    names = "|".join(sorted(PRICES_ZH, key=len, reverse=True))
    return sum(ZH_DIGITS[n] * PRICES_ZH[p] for n, p in re.findall(rf"([一两二三四五六七八九十])[罐饼把个]({names})", sentence))


def _en_basket_total(sentence: str) -> int:
    names = "|".join(PRICES_EN)
    found = re.findall(rf"\b(an?|one|two|three|four|five) (?:(?:tins?|cakes?) of )?({names})s?\b", sentence, re.IGNORECASE)
    return sum(EN_DIGITS[n.lower()] * PRICES_EN[p.lower()] for n, p in found)


def test_every_price_of_a_product_in_the_corpus_is_its_catalogue_price(corpus):
    """A sentence naming one product quotes its price; a sentence with 一共 / "in all" adds up its basket."""
    single = totals = 0
    for lang, sentences, prices, total_word, basket_total, amount in (
            ("zh", zh_sentences, PRICES_ZH, "一共", _zh_basket_total, r"(\d+)(?:元|块钱)"),
            ("en", en_sentences, PRICES_EN, "in all", _en_basket_total, r"(\d+)[- ]yuan")):
        names = sorted(prices, key=len, reverse=True)
        for doc in corpus[f"train.{lang}.txt"] + corpus[f"val.{lang}.txt"]:
            for sentence in sentences(doc):
                amounts = [int(a) for a in re.findall(amount, sentence)]
                lowered = sentence.lower()
                named = {p for p in names if p in lowered}
                if not amounts or not named:
                    continue
                if total_word in sentence:
                    assert amounts == [basket_total(sentence)], f"wrong total in: {sentence}"
                    totals += 1
                else:
                    assert len(named) == 1, f"a price beside several products: {sentence}"
                    assert set(amounts) == {prices[named.pop()]}, f"wrong price in: {sentence}"
                    single += 1
    assert single > 2_000 and totals > 1_000


def test_opening_hours_and_closing_day_are_always_the_same(corpus):
    zh = "\n\n".join(corpus["train.zh.txt"])
    en = "\n\n".join(corpus["train.en.txt"])
    checks = [
        (zh, r"(\S\S[一二两三四五六七八九十]+点)才?开门", {"上午九点"}),
        (zh, r"(\S\S[一二两三四五六七八九十]+点)关门", {"晚上九点"}),
        (zh, r"营业时间[是：](\d+:\d+)(?:到|—)(\d+:\d+)", {("9:00", "21:00")}),
        (zh, r"(星期.|周.)休息", {"星期一", "周一"}),
        (en, r"open at (\d+ [ap]\.m\.)", {"9 a.m."}),
        (en, r"close at (\d+ [ap]\.m\.)", {"9 p.m."}),
        (en, r"hours are (\S+) to (\S+?),", {("9:00", "21:00")}),
        (en, r"open (\d+:\d+) to (\d+:\d+)", {("9:00", "21:00")}),
        (zh, r"已经过了(\S\S[一二两三四五六七八九十]+点)", {"晚上九点"}),
        (en, r"does not open until (\d+ [ap]\.m\.)", {"9 a.m."}),
        (en, r"it was after (\d+ [ap]\.m\.)", {"9 p.m."}),
        (en, r"closed on (\w+?)s?\b", {"Monday"}),
        (en, r"every day except (\w+)", {"Monday"}),
    ]
    for text, pattern, allowed in checks:
        found = set(re.findall(pattern, text))
        assert found, f"no match for {pattern}"
        assert found <= allowed, f"{pattern} found {sorted(found - allowed)}"


def test_shop_visits_happen_only_in_opening_hours():
    for index in range(2_000):
        plan, _, _ = generate_story(COURSE_SEED, index)
        if plan.kind == "tea_visit":
            when = plan.events[0]
            assert when["day"] != 0 and 9 <= when["hour"] < 21, f"story {index} visits the shop while it is shut"


def test_shipping_rules_are_always_the_same(corpus):
    zh = "\n\n".join(corpus["train.zh.txt"] + corpus["val.zh.txt"])
    en = "\n\n".join(corpus["train.en.txt"] + corpus["val.en.txt"])
    for text, pattern, allowed in [
            (zh, r"满(\d+)元", {"199"}), (zh, r"不到(\d+)元", {"199"}), (zh, r"(\d+)元运费", {"12"}),
            (zh, r"运费是(\d+)元", {"12"}), (en, r"(\d+) yuan or more", {"199"}), (en, r"less than (\d+) yuan", {"199"}),
            (en, r"(\d+)-yuan shipping fee", {"12"}), (en, r"pay (\d+) yuan for shipping", {"12"}),
            (en, r"(\w+) days later", {"Two", "Three", "Four", "two", "three", "four"})]:
        found = set(re.findall(pattern, text))
        assert found, f"no match for {pattern}"
        assert found <= allowed, f"{pattern} found {sorted(found - allowed)}"
    days = {d for pair in re.findall(r"过了(.)天，|(.)天以后，包裹", zh) for d in pair if d}
    assert days and days <= {"两", "三", "四"}, f"delivery days {sorted(days)}"
    for total, to_pay in re.findall(r"一共(\d+)元。不到199元，要加12元运费，一共付(\d+)元", zh):
        assert int(total) < 199 and int(to_pay) == int(total) + 12
    for total in re.findall(r"一共(\d+)元。满199元了，可以包邮", zh):
        assert int(total) >= 199
    small = re.findall(r"(\d+) yuan in all\. That is less than 199 yuan, so there is a 12-yuan shipping fee, "
                       r"and the whole order comes to (\d+) yuan", en)
    assert small and all(int(t) < 199 and int(p) == int(t) + 12 for t, p in small)


def test_change_is_what_was_paid_minus_the_total(corpus):
    zh = "\n\n".join(corpus["train.zh.txt"])
    en = "\n\n".join(corpus["train.en.txt"])
    shop_zh = re.findall(r"一共是?(\d+)元。”[^。”“]*?给了林阿姨(\d+)元，林阿姨找给.(\d+)元", zh)
    shop_en = re.findall(r"(\d+) yuan in all\.\"? [^.\"]*?gave Aunt Lin (\d+) yuan, and Aunt Lin gave (?:him|her) (\d+) yuan", en)
    market = re.findall(r"一共(\d+)元。[^。]*?给了周叔叔一张(\d+)元的钱，周叔叔找回了(\d+)元", zh)
    for found in (shop_zh, shop_en, market):
        assert len(found) > 50
        wrong = [(total, paid, change) for total, paid, change in found if int(paid) - int(change) != int(total)]
        assert not wrong, f"(total, paid, change) that do not add up: {wrong[:3]}"
