"""The tea shop ``TEA_SHOP`` (清泉茶铺 / Clear Spring Tea Shop): the single source of every shop fact.

Its name, keeper, address, hours (9:00 to 21:00, closed on Mondays), products with fixed
prices and brewing advice, shipping and returns. The stories of the corpus (lessons 00 and 06)
tell these facts, lesson 08's dialogues (``glm3_teach.dialogues``) answer customers with them
and lesson 09's tools (``glm3_teach.tools``) sell from the same catalogue, so the corpus, the
fine-tuning set and the tools never contradict each other: change a price here and all three
change.

What it leaves out: stock levels (``tools.check_stock`` simulates them), discounts, holidays.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm3_teach.stories.world import Character


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
