"""The course's own bilingual story generator: every story is planned once, then told twice.

Lesson 00 shows its stories; lesson 01 trains the tokenizer and lesson 06 pretrains the model
on its output, which is committed in ``data/corpus/`` and read with ``glm3_teach.data``.
Regenerate it with ``python -m glm3_teach.stories --seed 3 --out data/corpus`` (``main``).
Lesson 08's dialogue generator (``glm3_teach.dialogues``) shares its world: the shop, the
number words and the sentence pairs of its stories.

The modules, from the bottom up (each imports only the ones above it)
----------------------------------------------------------------------
- ``world``: the cast, pets, forest animals, places, weather, seasons and other words, each a
  Chinese and an English form.
- ``shop``: ``TEA_SHOP``, the only source of shop facts (also of lessons 08 and 09).
- ``numbers`` and ``grammar``: number words, counts, clocks, prices; names, pronouns, quotes.
- ``events``: ``StoryPlan``, ``ev``, the renderer registry and ``render_story``.
- ``render_everyday``, ``render_tales``, ``shop_talk`` and ``render_shop``: the renderers, one
  per event kind, and what the shop says.
- ``plans``: the planners, one per story kind, and ``plan_story``.
- ``corpus``: the numbered stories, their splits, the files and the README; the command line.

Every public name is importable from the package itself (``from glm3_teach.stories import
TEA_SHOP, render_story``).

The design: plan, then render
-----------------------------
1. **Plan** (``plan_story``, ``plans``) decides *what happens*. It picks a story kind (an outing, sharing
   apples, a lost pet, a maths lesson, a forest fable, a visit to the tea shop, ...), a cast
   (children, grown-ups, pets and forest animals, each with a Chinese and an English name),
   the season, weather, place and time, and a list of events with every number fixed: three
   ducks, two tins of oolong tea at 58 yuan, 134 yuan in all, 16 yuan change. A plan is plain
   data: a list of dicts holding small frozen dataclasses, easy to print.
2. **Render** (``render_story``, ``events``) decides *how it is said*. Every event kind has one renderer
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

from glm3_teach.stories.corpus import (
    COURSE_SEED,
    GENERATOR_VERSION,
    HAN,
    LETTER,
    MIN_TRAIN,
    MIN_VAL,
    SENTENCE_END,
    SPLITS,
    VAL_PERCENT,
    corpus_figures,
    corpus_text,
    generate_corpus,
    generate_story,
    main,
    provenance_lines,
    seen_in_train,
    size_of,
    split_of,
    stable_bucket,
    stable_rng,
    story_rng,
    write_corpus,
)
from glm3_teach.stories.events import (
    BLOCK_EVENTS,
    Event,
    StoryPlan,
    ev,
    render_story,
    renders,
)
from glm3_teach.stories.grammar import (
    SAY,
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
    a_or_an,
    come_to,
    en_clock,
    en_count,
    en_counted,
    en_number,
    en_things,
    en_unit,
    items,
    yuan,
    zh_clock,
    zh_count,
    zh_number,
)
from glm3_teach.stories.plans import (
    PLANNERS,
    plan_fable,
    plan_lost_pet,
    plan_market,
    plan_outing,
    plan_school_maths,
    plan_sharing,
    plan_story,
    plan_tea_at_home,
    plan_tea_budget,
    plan_tea_closed,
    plan_tea_order,
    plan_tea_visit,
)
from glm3_teach.stories.render_everyday import MORALS, PROBLEMS, moral
from glm3_teach.stories.render_tales import HOME_SPOTS
from glm3_teach.stories.shop import (
    MARKET_PRICES,
    TEA_SHOP,
    TEA_WISHES,
    Product,
    TeaShop,
)
from glm3_teach.stories.shop_talk import (
    KEEPER,
    QUESTIONS,
    SHOP,
    delivery_line,
    hours_line,
    price_line,
    price_sentences,
    shipping_line,
)
from glm3_teach.stories.world import (
    ABROAD,
    ARRIVE,
    AUNT_LI,
    CHILDREN,
    CITIES,
    CLIMBERS,
    COLOURS,
    CUSTOMERS,
    DAD,
    FAMILY,
    FEELINGS,
    FINDS,
    FOREST_FOLK,
    FRUIT,
    GRANDMA,
    GRANDPA,
    HOBBIES,
    LANGS,
    LEAVE,
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
    WEEKDAYS,
    WEEKDAYS_EN,
    Character,
    Noun,
    Pair,
    Place,
    Sight,
    Weather,
    noun,
)

__all__ = [
    "ABROAD",
    "ARRIVE",
    "AUNT_LI",
    "BLOCK_EVENTS",
    "CHILDREN",
    "CITIES",
    "CLIMBERS",
    "COLOURS",
    "COURSE_SEED",
    "CUSTOMERS",
    "DAD",
    "FAMILY",
    "FEELINGS",
    "FINDS",
    "FOREST_FOLK",
    "FRUIT",
    "GENERATOR_VERSION",
    "GRANDMA",
    "GRANDPA",
    "HAN",
    "HOBBIES",
    "HOME_SPOTS",
    "KEEPER",
    "LANGS",
    "LEAVE",
    "LETTER",
    "MANNERS",
    "MARKET_PRICES",
    "MIN_TRAIN",
    "MIN_VAL",
    "MOM",
    "MORALS",
    "NATURE_QA",
    "NEIGHBOUR",
    "PARTS_OF_DAY",
    "PET_KINDS",
    "PET_NAMES",
    "PLACES",
    "PLANNERS",
    "PROBLEMS",
    "QUESTIONS",
    "RELATIVES",
    "SAY",
    "SEASONS",
    "SENTENCE_END",
    "SHOP",
    "SNACKS",
    "SPLITS",
    "SPOTS",
    "SWIMMERS",
    "TEACHERS",
    "TEA_SHOP",
    "TEA_WISHES",
    "TRANSPORT",
    "VAL_PERCENT",
    "WEATHER",
    "WEATHERS",
    "WEEKDAYS",
    "WEEKDAYS_EN",
    "Character",
    "Event",
    "Noun",
    "Pair",
    "Place",
    "Product",
    "Sight",
    "StoryPlan",
    "TeaShop",
    "Weather",
    "a_or_an",
    "cap",
    "come_to",
    "corpus_figures",
    "corpus_text",
    "delivery_line",
    "en_clock",
    "en_count",
    "en_counted",
    "en_number",
    "en_quote",
    "en_things",
    "en_unit",
    "ev",
    "full_stop",
    "generate_corpus",
    "generate_story",
    "he",
    "him",
    "his",
    "hours_line",
    "items",
    "main",
    "moral",
    "name",
    "noun",
    "plan_fable",
    "plan_lost_pet",
    "plan_market",
    "plan_outing",
    "plan_school_maths",
    "plan_sharing",
    "plan_story",
    "plan_tea_at_home",
    "plan_tea_budget",
    "plan_tea_closed",
    "plan_tea_order",
    "plan_tea_visit",
    "price_line",
    "price_sentences",
    "provenance_lines",
    "quote",
    "render_story",
    "renders",
    "say",
    "seen_in_train",
    "shipping_line",
    "size_of",
    "split_of",
    "stable_bucket",
    "stable_rng",
    "story_rng",
    "write_corpus",
    "yuan",
    "zh_clock",
    "zh_count",
    "zh_number",
    "zh_quote",
]
