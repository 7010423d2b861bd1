"""The SFT data generator: reproducible, true to TEA_SHOP, honestly split, in ChatGLM3's format.

Shop facts below are written out by hand from the course plan (as in test_stories.py), not read
from ``TEA_SHOP``, so a generator that garbles a fact fails here.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter

import pytest

from glm3_teach import dialogues, stories, tools
from glm3_teach.dialogues import (INTENTS, LANGS, SPLITS, TEMPLATES, SFTDataError, is_heldout, load_sft, make_group,
                                  make_item, validate_item)
from glm3_teach.paths import REPO_ROOT

COMMITTED = REPO_ROOT / "data" / "sft"
PRICES = {"green_tea": 48, "oolong": 58, "black_tea": 42, "jasmine": 36, "puerh": 128, "teapot": 168, "teacup": 18}
HAN = re.compile(r"[\u4e00-\u9fff]")
ORDER_ID = re.compile(r"(?<![A-Za-z0-9])[A-Z][0-9]{4}(?![0-9])")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    assert dialogues.main(["--seed", "3", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict]]:
    return {split: load_sft(split) for split in SPLITS}


def last_reply(item: dict) -> str:
    return next(m["content"] for m in reversed(item["conversations"]) if m["role"] == "assistant")


def user_texts(item: dict) -> list[str]:
    return [m["content"] for m in item["conversations"] if m["role"] == "user"]


# --- reproducible ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["train.jsonl", "val.jsonl", "heldout.jsonl"])
def test_the_course_seed_reproduces_the_committed_file_byte_for_byte(regenerated, name):
    assert (regenerated / name).read_bytes() == (COMMITTED / name).read_bytes(), (
        f"data/sft/{name} is not what the generator writes; if the change is meant, bump GENERATOR_VERSION, "
        f"run `python -m glm3_teach.dialogues --seed 3 --out data/sft` and commit the new files")


def test_the_readme_is_reproduced_except_for_the_wall_time(regenerated):
    def masked(path):
        return re.sub(r"wall time: \d+\.\d s", "wall time: X s", path.read_text(encoding="utf-8"))

    readme = masked(regenerated / "README.md")
    assert "python -m glm3_teach.dialogues --seed 3 --out" in readme and "- seed: 3" in readme
    assert masked(regenerated / "README.md").split("```", 2)[2] == masked(COMMITTED / "README.md").split("```", 2)[2]


def test_another_seed_gives_other_dialogues():
    a = make_group("price", "zh", "train", 20, 3, None, None, {})
    b = make_group("price", "zh", "train", 20, 4, None, None, {})
    assert sum(x != y for x, y in zip(a, b)) >= 15


# --- facts come from TEA_SHOP ---------------------------------------------------------------------


def test_every_price_answer_states_the_course_price(data):
    for item in data["train"] + data["heldout"]:
        if item["meta"]["intent"] == "price":
            reply = last_reply(item)
            price = int(re.search(r"\d+", reply).group())
            assert price in PRICES.values() and item["meta"]["expect"] == [f"{price}元" if item["meta"]["lang"] == "zh" else f"{price} yuan"]
    zh = [last_reply(i) for i in data["train"] if i["meta"]["intent"] == "price" and i["meta"]["lang"] == "zh"]
    assert "乌龙茶58元一罐。" in zh and "茶壶168元一把。" in zh


def test_shop_facts_appear_in_both_languages(data):
    replies = {(i["meta"]["intent"], i["meta"]["lang"]): last_reply(i) for i in data["train"]}
    assert "上午9点" in replies["hours", "zh"] and "晚上9点" in replies["hours", "zh"]
    assert "9 a.m." in replies["hours", "en"] and "9 p.m." in replies["hours", "en"]
    assert "满199元" in replies["free_shipping", "zh"] and "199 yuan" in replies["free_shipping", "en"]
    assert "12元" in replies["shipping_fee", "zh"] and "12 yuan" in replies["shipping_fee", "en"]
    assert "2到4天" in replies["delivery", "zh"] and "2 to 4 days" in replies["delivery", "en"]
    assert "7天" in replies["returns", "zh"] and "7 days" in replies["returns", "en"]
    assert "青石镇河边路8号" in replies["address", "zh"] and "8 River Road" in replies["address", "en"]


def test_a_changed_price_in_tea_shop_changes_the_data(monkeypatch):
    shop = stories.TEA_SHOP
    products = tuple(dataclasses.replace(p, price=61) if p.key == "oolong" else p for p in shop.products)
    monkeypatch.setattr(stories, "TEA_SHOP", dataclasses.replace(shop, products=products, close_hour=20))
    items = make_group("price", "zh", "train", 60, 3, None, None, {}) + make_group("price", "en", "train", 60, 3, None, None, {})
    oolong = [last_reply(i) for i in items if "乌龙" in last_reply(i) or "oolong" in last_reply(i)]
    assert oolong and all("61" in r and "58" not in r for r in oolong)
    hours = make_item("hours", "en", "train", dialogues.item_rng(3, "train", "hours", "en", 0))
    assert "8 p.m." in last_reply(hours) and hours["meta"]["expect"][1] == "8 p.m."


def test_price_answers_are_sentences_of_the_story_corpus():
    """The two generators share the world's words: each plain price answer is a sentence the committed corpus tells."""
    corpus = {lang: (REPO_ROOT / "data" / "corpus" / f"train.{lang}.txt").read_text(encoding="utf-8") for lang in LANGS}
    for p in stories.TEA_SHOP.products:
        for lang in LANGS:
            answer, expect = dialogues.price_answer(p, lang)
            assert answer in corpus[lang] and expect == [f"{PRICES[p.key]}元" if lang == "zh" else f"{PRICES[p.key]} yuan"]


def test_each_module_names_its_lesson():
    import ast

    files = sorted((REPO_ROOT / "glm3_teach" / "dialogues").glob("*.py"))
    assert len(files) >= 8
    for path in files:  # read, never imported: importing __main__ would write the data set
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert re.search(r"[Ll]essons? (08|09)", docstring), f"dialogues/{path.name} names no lesson"


def test_recommendations_follow_tea_wishes(data):
    names = {p.key: (p.zh, p.en) for p in stories.TEA_SHOP.products}
    wish_of = {"不苦": "jasmine", "牛奶": "black_tea", "清淡": "green_tea", "很香": "oolong", "浓": "puerh",
               "not bitter": "jasmine", "milk": "black_tea", "light and fresh": "green_tea", "fragrant": "oolong",
               "strong": "puerh"}
    for item in data["train"]:
        if item["meta"]["intent"] == "recommend":
            question = user_texts(item)[-1]
            key = next(k for w, k in wish_of.items() if w in question)
            assert names[key][0 if item["meta"]["lang"] == "zh" else 1] in last_reply(item)


# --- the split is honest -------------------------------------------------------------------------


def test_every_intent_has_at_least_12_templates_per_language():
    for intent, by_lang in TEMPLATES.items():
        for lang in LANGS:
            assert len(by_lang[lang]) >= 12, (intent, lang)
            assert len(set(by_lang[lang])) == len(by_lang[lang]), f"{intent}/{lang} repeats a template"


def test_held_out_templates_are_only_in_heldout(data):
    def index(item):
        return int(item["meta"]["template"].rsplit(".", 1)[1])

    assert all(not is_heldout(index(i)) for i in data["train"] + data["val"])
    assert all(is_heldout(index(i)) for i in data["heldout"])
    train_ids = {i["meta"]["template"] for i in data["train"]}
    assert not train_ids & {i["meta"]["template"] for i in data["heldout"]}
    shares = Counter(is_heldout(k) for by_lang in TEMPLATES.values() for ts in by_lang.values() for k in range(len(ts)))
    assert 0.15 <= shares[True] / sum(shares.values()) <= 0.25


def test_no_evaluation_question_is_a_training_question(data):
    train = {json.dumps(i["conversations"], ensure_ascii=False) for i in data["train"]}
    assert not any(json.dumps(i["conversations"], ensure_ascii=False) in train for i in data["val"] + data["heldout"])
    train_questions = {q for i in data["train"] for q in user_texts(i)}
    held = [i for i in data["heldout"] if i["meta"]["intent"] not in ("greeting", "thanks", "no_tool")]
    assert sum(user_texts(i)[-1] in train_questions for i in held) == 0


def test_every_intent_and_language_is_in_every_split(data):
    for split in SPLITS:
        present = Counter((i["meta"]["intent"], i["meta"]["lang"]) for i in data[split])
        assert all(present[intent, lang] >= 10 for intent in INTENTS for lang in LANGS), split
        assert all(i["meta"]["split"] == split for i in data[split])
    assert 6000 <= len(data["train"]) <= 12000


def test_order_ids_of_val_and_heldout_never_occur_in_train(data):
    def ids(split):
        return {m["parameters"]["order_id"] for i in data[split] for m in i["conversations"] if m["role"] == "tool"
                and m["name"] == "check_order"}

    train = ids("train")
    assert ids("val") and ids("heldout") and not (ids("val") | ids("heldout")) & train
    train_ids_in_text = {m for i in data["train"] for q in user_texts(i) for m in ORDER_ID.findall(q)}
    assert not train_ids_in_text & (ids("val") | ids("heldout"))


def test_translation_pairs_of_evaluation_come_from_validation_stories_only():
    pairs = dialogues.translation_pairs(3, stories_to_read=300)
    seen = {s for pair in pairs["train"] for s in pair}
    assert pairs["val"] and pairs["heldout"] and not any(z in seen or e in seen for z, e in pairs["val"] + pairs["heldout"])
    for index in range(5):
        dialogues.story_pairs(3, index, check=True)  # rendering event by event reproduces the story


# --- answers -------------------------------------------------------------------------------------


def test_answers_are_in_the_language_of_the_question(data):
    for item in data["train"] + data["heldout"]:
        meta, reply = item["meta"], last_reply(item)
        question_lang = meta.get("source_lang", meta["lang"])
        assert (meta["intent"] == "translate") == (question_lang != meta["lang"])
        for text, lang in ((reply, meta["lang"]), (user_texts(item)[0], question_lang)):
            if lang == "en":
                assert not HAN.search(text), text
            else:
                assert HAN.search(text) and not re.search(r"[A-Za-z]{3,}", re.sub(r"ChatGLM3?|ChatGPT|Python", "", ORDER_ID.sub("", text))), text


def test_the_last_reply_contains_what_meta_expects(data):
    for item in data["train"] + data["val"] + data["heldout"]:
        reply = last_reply(item)
        assert all(s in reply for s in item["meta"]["expect"] + item["meta"].get("observation_values", []))
        if item["meta"]["intent"] == "translate":
            assert item["meta"]["reference"] == reply and item["meta"]["expect"] == []
        else:
            assert item["meta"]["expect"], item["meta"]


def test_the_assistant_never_claims_to_be_chatglm3_or_a_person(data):
    replies = [m["content"] for split in SPLITS for i in data[split] for m in i["conversations"] if m["role"] == "assistant"]
    assert not any("ChatGLM" in r or "我是真人" in r or "I am a person" in r for r in replies)
    identity = [last_reply(i) for i in data["train"] if i["meta"]["intent"] == "identity"]
    assert all("小模型" in r or "small model" in r for r in identity)


def test_followups_answer_about_the_product_named_last(data):
    for item in data["train"]:
        if item["meta"]["intent"] == "followup":
            first, second = item["conversations"][-3]["content"], last_reply(item)
            assert len([m for m in item["conversations"] if m["role"] == "user"]) == 2 and first != second


# --- tool dialogues ------------------------------------------------------------------------------


def test_tool_items_offer_the_shop_tools_and_show_real_observations(data):
    schemas = [tools.tool_schema(fn) for fn in tools.SHOP_TOOLS]
    n = 0
    for item in data["train"] + data["heldout"]:
        if item["meta"]["intent"] in dialogues.TOOL_INTENTS:
            assert item["tools"] == schemas
        for message in item["conversations"]:
            if message["role"] == "tool":
                n += 1
                assert message["observation"] == tools.call_tool(message["name"], message["parameters"])
                assert item["meta"]["expect_tool"] == {"name": message["name"], "parameters": message["parameters"]}
    assert n > 1000


def test_tool_intents_behave_as_described(data):
    by_intent = {}
    for item in data["train"]:
        by_intent.setdefault(item["meta"]["intent"], []).append(item)
    assert all(i["conversations"][1]["role"] == "assistant" and i["conversations"][3]["role"] == "tool"
               for i in by_intent["order_ask"])
    assert all("error" in i["conversations"][-2]["observation"] for i in by_intent["order_error"])
    assert all("tools" in i and not any(m["role"] == "tool" for m in i["conversations"]) and "expect_tool" not in i["meta"]
               for i in by_intent["no_tool"])
    calc = {i["conversations"][-2]["parameters"]["expression"] for i in by_intent["total"]}
    assert "2*58+18" in calc or any(re.fullmatch(r"(\d\*)?\d+(\+(\d\*)?\d+)*", e) for e in calc)


def test_the_example_of_the_issue_is_computed_with_the_calculator():
    basket = [(stories.TEA_SHOP.product("oolong"), 2), (stories.TEA_SHOP.product("teacup"), 1)]
    answer, expect, values = dialogues.total_answer(basket, tools.calculate("2*58+18"), "zh")
    assert answer == "两罐乌龙茶和一个茶杯一共134元。" and expect == ["134元"] and values == ["134"]


# --- token lengths -------------------------------------------------------------------------------


def test_plain_dialogues_are_short_in_tokens(data):
    from glm3_teach import load_tokenizer

    tokenizer = load_tokenizer()
    plain = [i for i in data["train"][:600] if "tools" not in i]
    lengths = [dialogues.token_length(i, tokenizer, 0) for i in plain]
    assert sum(n < 200 for n in lengths) >= 0.95 * len(lengths)


# --- the validator -------------------------------------------------------------------------------

GOOD = {"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好！"}]}
TOOL = {"tools": [{"name": "check_stock", "description": "", "parameters": {}}],
        "conversations": [{"role": "user", "content": "乌龙茶有货吗？"},
                          {"role": "tool", "name": "check_stock", "parameters": {"product": "oolong"},
                           "observation": {"product": "oolong", "in_stock": 8}},
                          {"role": "assistant", "content": "乌龙茶现在还有8罐。"}]}


def with_message(item: dict, index: int, **changes) -> dict:
    item = json.loads(json.dumps(item))
    message = item["conversations"][index]
    for key, value in changes.items():
        if value is None:
            message.pop(key)
        else:
            message[key] = value
    return item


@pytest.mark.parametrize("item, words", [
    ("not a dict", ["item 7", "must be a dict"]),
    ({"conversations": []}, ["item 7", "conversations"]),
    ({}, ["item 7", "conversations"]),
    (with_message(GOOD, 0, role="customer"), ["conversations[0]", "unknown role 'customer'"]),
    (with_message(GOOD, 0, role="observation"), ["unknown role 'observation'", "'tool' message"]),
    (with_message(GOOD, 1, content=3), ["conversations[1]", "content", "int"]),
    (with_message(GOOD, 1, content=None), ["conversations[1]", "no 'content'"]),
    (with_message(GOOD, 1, loss="yes"), ["conversations[1]", "loss", "True or False"]),
    (with_message(GOOD, 1, loss=1), ["loss must be True or False"]),
    (with_message(TOOL, 1, name=None), ["conversations[1]", "no 'name'"]),
    (with_message(TOOL, 1, name="check_order"), ["check_order", "not among the item's tools"]),
    (with_message(TOOL, 1, parameters="oolong"), ["parameters", "dict"]),
    (with_message(TOOL, 1, observation=None), ["no 'observation'"]),
    ({"conversations": TOOL["conversations"]}, ["no 'tools'"]),
    ({**TOOL, "conversations": [TOOL["conversations"][1], TOOL["conversations"][2]]}, ["follows nothing"]),
    ({**TOOL, "conversations": [GOOD["conversations"][0], GOOD["conversations"][1], TOOL["conversations"][1]]},
     ["follows a assistant message"]),
    ({**GOOD, "conversations": GOOD["conversations"] + [{"role": "system", "content": "x"}]}, ["system", "first"]),
    ({**GOOD, "meta": {"lang": "fr"}}, ["meta['lang']"]),
    ({**GOOD, "meta": {"expect": "58元"}}, ["meta['expect']", "list of str"]),
    ({**GOOD, "extra": 1}, ["unknown keys ['extra']"]),
])
def test_the_validator_names_the_item_and_the_field(item, words):
    with pytest.raises(SFTDataError) as error:
        validate_item(item, where="item 7")
    assert all(w in str(error.value) for w in words), str(error.value)


def test_good_items_pass_the_validator_unchanged():
    assert validate_item(GOOD) is GOOD and validate_item(TOOL, "x") is TOOL
    assert validate_item(with_message(GOOD, 1, loss=False))["conversations"][1]["loss"] is False


def test_load_sft_names_the_file_and_line_of_a_bad_item(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps(GOOD) + "\n" + json.dumps(with_message(GOOD, 0, role="bot")) + "\n",
                                          encoding="utf-8")
    with pytest.raises(SFTDataError, match=r"train.jsonl line 2: conversations\[0\] has unknown role 'bot'"):
        load_sft("train", tmp_path)
    (tmp_path / "val.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(SFTDataError, match="val.jsonl line 1 is not JSON"):
        load_sft("val", tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_sft("test", tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m glm3_teach.dialogues"):
        load_sft("heldout", tmp_path)
    (tmp_path / "mine.jsonl").write_text(json.dumps(GOOD, ensure_ascii=False) + "\n\n", encoding="utf-8")
    assert load_sft("train", tmp_path / "mine.jsonl") == [GOOD]


def test_the_command_line_reports_an_unwritable_folder_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert dialogues.main(["--out", str(blocker / "sft")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write") and "\n" not in err


# --- fresh tool dialogues ([sft] fresh_tool_dialogues) --------------------------------------------


def test_fresh_tool_items_are_new_training_dialogues_in_the_shares_of_the_data(data):
    from glm3_teach.dialogues import TOOL_INTENTS, TRAIN_COUNTS, conversation_key, fresh_tool_items

    known = {conversation_key(i): None for i in data["train"] + data["val"]}
    fresh = fresh_tool_items(580, 0, known)
    assert len(fresh) == 580 and fresh == fresh_tool_items(580, 0, known)       # the same seed draws the same items
    keys = [conversation_key(i) for i in fresh]
    assert len(set(keys)) == 580 and not set(keys) & set(known)               # distinct, and none from data/sft
    assert all(i["meta"]["split"] == "train" and i["tools"] == dialogues.shop_tool_schemas() for i in fresh)
    counts = Counter(i["meta"]["intent"] for i in fresh)
    tool_total = sum(TRAIN_COUNTS[t] for t in TOOL_INTENTS)
    for intent in TOOL_INTENTS:   # 580 of 2,320: a quarter of each intent's share, within one item per language
        assert abs(counts[intent] - 580 * TRAIN_COUNTS[intent] / tool_total) <= 2, (intent, counts)
    templates = {i["meta"]["template"] for i in data["train"]}
    assert {i["meta"]["template"] for i in fresh} <= templates                 # training templates only
    for item in fresh:
        for m in item["conversations"]:
            if m["role"] == "tool" and m["name"] == "check_order":
                assert dialogues.order_split(m["parameters"]["order_id"]) == "train", m


def test_fresh_tool_weights_change_the_shares_and_bad_weights_are_refused():
    from glm3_teach.dialogues import TOOL_INTENTS, TRAIN_COUNTS, fresh_tool_items

    assert fresh_tool_items(120, 0, weights={}) == fresh_tool_items(120, 0)       # no weights: TRAIN_COUNTS' shares
    weights = {"stock": 3, "total": 2, "no_tool": 0}
    counts = Counter(i["meta"]["intent"] for i in fresh_tool_items(400, 0, weights=weights))
    weighted = {t: TRAIN_COUNTS[t] * weights.get(t, 1) for t in TOOL_INTENTS}
    for intent in TOOL_INTENTS:
        assert abs(counts[intent] - 400 * weighted[intent] / sum(weighted.values())) <= 2, (intent, counts)
    assert counts["no_tool"] == 0
    for bad in ({"stok": 2}, {"stock": -1}, {"stock": "2"}, {"stock": True}):
        with pytest.raises(ValueError, match="fresh_tool_weights must map tool intents"):
            fresh_tool_items(10, 0, weights=bad)
    with pytest.raises(ValueError, match="gives every tool intent weight 0: nothing to draw"):
        fresh_tool_items(10, 0, weights={t: 0 for t in TOOL_INTENTS})


def test_more_tool_templates_are_training_only_and_nearer_a_training_template_than_a_heldout_one():
    from difflib import SequenceMatcher

    from glm3_teach.dialogues import MORE_TOOL_SETS, TEMPLATES, is_heldout, templates_for

    slots = {"order_status": {"{id}"}, "order_ask": set(), "stock": {"{p}", "{m}"}, "total": {"{items}"}}
    probe = _tool_probe().PROBE

    def bare(t):   # the wording without its slots
        return re.sub(r"\{\w+\}", "", t)

    assert [letter for letter, _ in MORE_TOOL_SETS] == ["m", "n"]
    for number, (letter, phrasings) in enumerate(MORE_TOOL_SETS, start=1):
        for intent, by_lang in phrasings.items():
            for lang, more in by_lang.items():
                course = TEMPLATES[intent][lang]
                earlier = [t for _, s in MORE_TOOL_SETS[:number - 1] for t in s.get(intent, {}).get(lang, ())]
                held = [bare(t) for k, t in enumerate(course) if is_heldout(k)]
                train = [bare(t) for k, t in enumerate(course) if not is_heldout(k)] + [bare(t) for t in earlier]
                # set 1 was written before the probe; set 2 after it, so it keeps away from the probe's phrasings too
                held += [bare(t) for t in probe.get(intent, {}).get(lang, ())] if number > 1 else []
                assert len(more) >= 6 and len(set(more)) == len(more), (intent, lang)
                assert not set(more) & (set(course) | set(earlier)), (intent, lang, set(more) & (set(course) | set(earlier)))
                for t in more:
                    named = set(re.findall(r"\{\w+\}", t))
                    assert named <= slots[intent] and ("{m}" not in named or "{p}" in named), (t, named)
                    if intent in ("order_status", "stock", "total"):
                        assert named & slots[intent] - {"{m}"}, f"{t!r} lacks its slot"
                    # written afresh: nearer some training template than any held-out one (so it adds no held-out wording)
                    near_held = max(SequenceMatcher(None, bare(t), h).ratio() for h in held)
                    near_train = max(SequenceMatcher(None, bare(t), h).ratio() for h in train)
                    assert near_held < near_train, (t, near_held, near_train)
                for split in ("val", "heldout"):   # only the train split ever draws them
                    assert templates_for(intent, lang, split, more=number) == templates_for(intent, lang, split)
                rows = templates_for(intent, lang, "train", more=number)
                assert rows[:len(templates_for(intent, lang, "train", more=number - 1))] == \
                    templates_for(intent, lang, "train", more=number - 1)
                assert [t for _, t in rows[-len(more):]] == list(more)
                assert rows[-1][0] == f"{intent}.{lang}.{letter}{len(more) - 1:02d}"
    assert templates_for("stock", "zh", "train", more=True) == templates_for("stock", "zh", "train", more=1)


def test_fresh_tool_items_with_more_phrasings_draw_the_more_templates_too():
    from glm3_teach.dialogues import fresh_tool_items

    plain, more = fresh_tool_items(600, 0), fresh_tool_items(600, 0, more_phrasings=True)
    assert Counter(i["meta"]["intent"] for i in plain) == Counter(i["meta"]["intent"] for i in more)
    assert not any(".m" in i["meta"]["template"] for i in plain)
    worded = [i for i in more if ".m" in i["meta"]["template"]]
    assert 100 < len(worded) < 300 and {i["meta"]["intent"] for i in worded} >= {"stock", "total", "order_status"}
    assert all(i["meta"]["split"] == "train" for i in more)
    both = fresh_tool_items(600, 0, more_phrasings=2)
    assert Counter(i["meta"]["intent"] for i in both) == Counter(i["meta"]["intent"] for i in plain)
    second = [i for i in both if ".n" in i["meta"]["template"]]
    assert 60 < len(second) < 250 and {i["meta"]["intent"] for i in second} == {"stock", "total"}
    assert any(".m" in i["meta"]["template"] for i in both)


def test_fresh_tool_items_of_another_seed_are_other_dialogues():
    from glm3_teach.dialogues import conversation_key, fresh_tool_items

    a = {conversation_key(i) for i in fresh_tool_items(120, 0)}
    b = {conversation_key(i) for i in fresh_tool_items(120, 1)}
    assert len(a & b) < 30   # stock and no_tool questions have few forms; ids and baskets differ


def _tool_probe():
    """tools/tool_probe.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tool_probe", REPO_ROOT / "tools" / "tool_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe


def test_the_tool_probe_asks_phrasings_the_course_never_trains_or_holds_out():
    from glm3_teach.dialogues import MORE_TOOL_SETS, TEMPLATES

    probe = _tool_probe()
    for intent, by_lang in probe.PROBE.items():
        for lang, phrasings in by_lang.items():
            known = set(TEMPLATES[intent][lang]) | {t for _, s in MORE_TOOL_SETS for t in s.get(intent, {}).get(lang, ())}
            assert not set(phrasings) & known, (intent, lang, set(phrasings) & known)
    items = probe.probe_items(per_template=2)
    assert len(items) == 2 * sum(len(p) for by_lang in probe.PROBE.values() for p in by_lang.values())
    for item in items:
        dialogues.validate_item(item, item["meta"]["template"])
        for m in item["conversations"]:
            if m["role"] == "tool" and m["name"] == "check_order":
                assert dialogues.order_split(m["parameters"]["order_id"]) == "heldout", m   # ids never trained on
