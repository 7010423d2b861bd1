"""Tools (glm3_teach.tools): ChatGLM3's tool descriptions, the shop's tools, and a tool-call parser
that gives what ChatGLM3's ``eval`` gives for literal calls and never runs anything.

The parser's reference is Python itself: ChatGLM3's ``process_response`` defines
``def tool_call(**kwargs): return kwargs`` and ``eval``s the model's text. The tests evaluate
their own, test-written literal calls that way (``reference_eval``, builtins removed) and with
``ast.literal_eval`` of each argument's text, and compare types and values.
"""

import ast
import json
import re

import pytest

from glm3_teach.chat_format import ChatTokenizerBase
from glm3_teach.chatglm3_tokenizer import TOKENIZER_ENV_VAR, ChatGLM3Tokenizer
from glm3_teach.paths import find_reference_file
from glm3_teach.stories import TEA_SHOP
from glm3_teach.tokenizer import BPETokenizer
from glm3_teach.tools import (SHOP_TOOLS, SHOP_TOOLS_BY_NAME, TOOL_PROMPT, ToolCallError, calculate, call_tool,
                              check_order, check_stock, format_tool_call, parse_tool_call, process_response,
                              tool_schema, tools_system_message)

MODEL = find_reference_file("tokenizer.model", TOKENIZER_ENV_VAR)
needs_model = pytest.mark.skipif(MODEL is None, reason=f"ChatGLM3's tokenizer.model not found: put it in "
                                 f"../shared/reference/chatglm3/ or set {TOKENIZER_ENV_VAR}")
PRODUCTS = [product.key for product in TEA_SHOP.products]


def reference_eval(code):
    """ChatGLM3's process_response on a *test-written* call: drop the fence lines, eval with tool_call(**kw)."""
    def tool_call(**kwargs):
        return kwargs
    body = "\n".join(code.split("\n")[1:-1]) if code.startswith("```") else code
    return eval(body, {"__builtins__": {}, "tool_call": tool_call})  # noqa: S307 -- trusted test strings only


def typed(value):
    """A value with its types spelled out, so that 1, 1.0 and True compare unequal."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted(repr(typed(v)) for v in value))
    return (type(value).__name__, repr(value))


# --- tool_schema ------------------------------------------------------------------------------
def test_schema_of_check_stock_is_chatglm3s_tool_description():
    assert tool_schema(check_stock) == {
        "name": "check_stock",
        "description": "查询商品的库存。",
        "parameters": {"type": "object",
                       "properties": {"product": {"type": "string", "description": "商品名: green_tea, oolong, "
                                                  "black_tea, jasmine, puerh, teapot, teacup"}},
                       "required": ["product"]},
    }


def test_schema_types_descriptions_and_defaults():
    def opening_hours(day: str, count: int, price: float = 1.0, *, urgent: bool = False,
                      items: list[str] = (), extra: dict = None) -> dict:
        """查询营业时间。

        第二段不是描述。

        Args:
            day: 星期几，如 周一
            count (int): 数量
        """
    schema = tool_schema(opening_hours)
    assert schema["description"] == "查询营业时间。"
    properties = schema["parameters"]["properties"]
    assert {name: p["type"] for name, p in properties.items()} == {
        "day": "string", "count": "integer", "price": "number", "urgent": "boolean", "items": "array",
        "extra": "object"}
    assert properties["day"]["description"] == "星期几，如 周一" and properties["count"]["description"] == "数量"
    assert "description" not in properties["price"]
    assert schema["parameters"]["required"] == ["day", "count"]


def no_doc(day: str):
    pass


def no_hint(day):
    """查询。"""


def star_args(*days: str):
    """查询。"""


def star_kwargs(**days: str):
    """查询。"""


def odd_type(day: set):
    """查询。"""


def positional_only(day: str, /):
    """查询。"""


@pytest.mark.parametrize("fn, message", [
    (no_doc, "no docstring"), (no_hint, "no type hint"), (star_args, "keyword arguments only"),
    (star_kwargs, "keyword arguments only"), (odd_type, "must be one of str, int"),
    (positional_only, "keyword arguments only"), (lambda day: day, "named function"), ("check_order", "named function"),
])
def test_malformed_tools_are_refused_with_a_clear_message(fn, message):
    with pytest.raises((TypeError, ValueError), match=message):
        tool_schema(fn)


def test_tools_system_message_gives_chatglm3s_fine_tuning_system_text():
    tok = BPETokenizer([])
    message = tools_system_message(SHOP_TOOLS)
    assert message == {"role": "system", "content": TOOL_PROMPT, "tools": [tool_schema(f) for f in SHOP_TOOLS]}
    expected_text = ("Answer the following questions as best as you can. You have access to the following tools:\n"
                     + json.dumps(message["tools"], indent=4, ensure_ascii=False))
    ids = tok.build_chat_input("你好", [message])
    assert ids[2:2 + 1 + 1 + len(expected_text.encode())] == tok.build_single_message("system", "", expected_text)
    assert tools_system_message([tool_schema(check_order)])["tools"][0]["name"] == "check_order"


# --- the shop's tools ---------------------------------------------------------------------------
def test_check_order_is_deterministic_and_well_formed():
    orders = [check_order(f"{letter}{number:04d}") for letter in "ABKZ" for number in range(1000, 10000, 373)]
    assert orders == [check_order(o["order_id"]) for o in orders]
    assert {o["status"] for o in orders} == {"processing", "shipped", "delivered"}
    low, high = TEA_SHOP.delivery_days
    for order in orders:
        assert set(order) == {"order_id", "status", "items", "days_to_delivery"}
        assert order["items"] and all(i["product"] in PRODUCTS and 1 <= i["count"] <= 3 for i in order["items"])
        assert (order["days_to_delivery"] == 0) == (order["status"] == "delivered")
        assert 0 <= order["days_to_delivery"] <= high
        json.dumps(order)
    assert len({json.dumps(o["items"]) for o in orders}) > 5  # items really depend on the id


@pytest.mark.parametrize("order_id", ["a1234", "A123", "A12345", "AB123", " A1234", "A1234\n", "", "１２３４", 1234, None])
def test_check_order_malformed_id_is_an_error_observation(order_id):
    assert "one capital letter and four digits" in check_order(order_id)["error"]


def test_check_order_unknown_id_is_an_error_observation():
    assert check_order("A0123") == {"error": "no order with id A0123"}


def test_check_stock_knows_every_shop_product_and_only_those():
    stock = {key: check_stock(key) for key in PRODUCTS}
    assert all(s == {"product": key, "in_stock": s["in_stock"]} and isinstance(s["in_stock"], int)
               and s["in_stock"] >= 0 for key, s in stock.items())
    assert stock["oolong"]["in_stock"] > 0 and any(s["in_stock"] == 0 for s in stock.values())
    for wrong in ["乌龙茶", "Oolong", "coffee", ""]:
        assert "unknown product" in check_stock(wrong)["error"]


@pytest.mark.parametrize("expression, result", [
    ("2*58+18", 134), ("2 * 58 + 18", 134), ("(48+36)/2", 42), ("-3+5", 2), ("-(3+4)*2", -14),
    ("7/2", 3.5), ("1.5*2", 3), ("10/3", 3.333333), ("199-58*3", 25), ("+4", 4), ("0.1+0.2", 0.3),
])
def test_calculate_does_shop_arithmetic(expression, result):
    assert calculate(expression) == {"expression": expression, "result": result}


@pytest.mark.parametrize("expression", [
    "__import__('os').system('echo hi')", "2**10", "9**9**9", "a+1", "1 if 1 else 2", "[1]", "True+1",
    "1 % 2", "1 // 2", "abs(-1)", "1e308*10", "", "   ", "1+", "1" * 201, "(" * 100 + "1" + ")" * 100,
])
def test_calculate_refuses_anything_but_numbers_and_four_operations(expression):
    assert "error" in calculate(expression) and "result" not in calculate(expression)


def test_calculate_division_by_zero_is_an_error_observation():
    assert calculate("58/(2-2)") == {"expression": "58/(2-2)", "error": "division by zero"}


# --- format_tool_call -----------------------------------------------------------------------------
def test_format_tool_call_is_chatglm3s_ast_unparsed_call():
    assert format_tool_call({"order_id": "A1234"}) == "```python\ntool_call(order_id='A1234')\n```"
    assert format_tool_call({"product": "oolong", "count": 2}) == "```python\ntool_call(product='oolong', count=2)\n```"
    assert format_tool_call({}) == "```python\ntool_call()\n```"
    assert format_tool_call({"q": "乌龙茶"}) == "```python\ntool_call(q='乌龙茶')\n```"


@pytest.mark.parametrize("parameters", [
    {"order_id": "A1234"}, {"s": "it's"}, {"s": 'say "hi"\n'}, {"n": -3, "x": 2.5e-7, "b": True, "z": None},
    {"items": [{"product": "oolong", "count": 2}], "t": (1, 2)},
])
def test_format_then_parse_round_trips(parameters):
    assert typed(parse_tool_call(format_tool_call(parameters))) == typed(parameters)


@pytest.mark.parametrize("parameters, message", [
    ({"not valid": 1}, "not a Python identifier"), ({"class": 1}, "not a Python identifier"), ({1: 2}, "identifier"),
    ({"x": object()}, "not Python literals"), ({"x": float("nan")}, "do not survive|not Python literals"),
])
def test_format_tool_call_refuses_what_cannot_be_written(parameters, message):
    with pytest.raises(ValueError, match=message):
        format_tool_call(parameters)


# --- parse_tool_call: every literal exactly as eval gives it ---------------------------------------
LITERALS = [
    "'A1234'", '"A1234"', "'乌龙茶'", "'''三引号'''", '"it\'s"', "'a\\nb'", "r'\\d+'", "'a' 'b'", "'🍵 tea'",
    "'\\u4e4c'", "b'bytes'", "0", "42", "-7", "+7", "0x1F", "-0x10", "0o17", "0b101", "1_000", "1e3", "-2.5E-3",
    ".5", "3.", "1j", "1+2j", "1-2j", "-0.0", "1e400", "-1e400", "(1)", "u'a'", "rb'a'", "{True: 1, 1: 2}", "True", "False", "None", "...", "[]", "[1, 'a', [2, [3.0]]]", "()", "(1,)",
    "('a', None)", "{}", "{'k': [1, {'n': None}]}", "{1: 'a', (1, 2): 'b'}", "{1, 2}", "{'x'}",
    "[\n  1,\n  2,\n]",
]


@pytest.mark.parametrize("literal", LITERALS)
def test_every_literal_argument_is_read_as_python_reads_it(literal):
    code = f"tool_call(x={literal})"
    parsed = parse_tool_call(code)
    assert typed(parsed) == typed({"x": ast.literal_eval(literal)}) == typed(reference_eval(code))


@pytest.mark.parametrize("code", [
    "```python\ntool_call(order_id='A1234', count=2)\n```",
    " ```python\ntool_call(order_id='A1234', count=2)\n```",  # the real model's decoded " " before the fence
    "```\ntool_call(order_id='A1234', count=2)\n```",
    "tool_call(order_id='A1234', count=2)",
    "\n  tool_call(order_id = 'A1234',\n            count=2,)  # a comment\n",
])
def test_fences_whitespace_and_layout_are_optional(code):
    assert parse_tool_call(code) == {"order_id": "A1234", "count": 2}


def test_calls_match_chatglm3s_eval():
    calls = ["```python\ntool_call(order_id='A1234')\n```", "```python\ntool_call()\n```",
             "```python\ntool_call(产品='乌龙茶', n=-1.5e2, ok=False, tags=['a', \"b\"], m={'k': (1, None)})\n```"]
    for code in calls:
        assert typed(parse_tool_call(code)) == typed(reference_eval(code))


HOSTILE = [
    "tool_call('A1234')", "tool_call(*['A1234'])", "tool_call(**{'order_id': 'A1234'})", "other_tool(x=1)",
    "os.system('ls')", "tool_call.__globals__", "tool_call(x=os.getcwd())",
    "tool_call(x=__import__('os').system('echo pwned'))", "tool_call(x=open('pwned', 'w'))", "tool_call(x=y)",
    "tool_call(x=[i for i in range(3)])", "tool_call(x={i: i for i in 'ab'})", "tool_call(x={i for i in 'ab'})",
    "tool_call(x=(i for i in 'ab'))", "tool_call(x=f'{1}')", "tool_call(x=f'plain')", "tool_call(x=lambda: 1)",
    "tool_call(x=1, x=2)", "tool_call(x=1); tool_call(y=2)", "tool_call(x=1)\ntool_call(y=2)", "", "   ",
    "```python\n```", "tool_call(x=1+1)", "tool_call(x='a'*3)", "tool_call(x='9'*10**9)", "tool_call(x=().__class__)",
    "tool_call(x=[1][0])", "x = tool_call(a=1)", "import os", "tool_call(x=(yield))", "tool_call(x=(y:=1))",
    "tool_call(x={**{}})", "tool_call(x=[*'ab'])", "tool_call(x={[1]: 2})", "tool_call(x={1, [2]})",
    "tool_call(x=1 if True else 2)", "tool_call(x=not True)", "tool_call(x=-'a')", "tool_call(x=1", "tool_call",
    "tool_call(x=1)()", "tool_call(x=1).keys()", "print(tool_call(x=1))",
    "tool_call(x=" + "[" * 300 + "]" * 300 + ")", "tool_call(x='" + "a" * 30000 + "')",
    "tool_call(x=" + "9" * 5000 + ")", "```python\ntool_call(x=1)\n```\n```python\nimport os\n```",
    "await tool_call(x=1)", "tool_call(x=1)[0]", "def tool_call(**kw): return kw", "tool_call(x=--1)",
    "tool_call(x=-True)", "tool_call(x=1-1)", "tool_call(x=+-1.5)", "tool_call(x='a'+'b')",
]


@pytest.mark.parametrize("code", HOSTILE)
def test_everything_but_a_literal_call_is_refused(code):
    with pytest.raises(ToolCallError) as error:
        parse_tool_call(code)
    assert isinstance(error.value, ValueError) and len(str(error.value)) > 10


@pytest.mark.parametrize("code, message", [
    ("tool_call('A1234')", "keyword arguments only"), ("other_tool(x=1)", "call of 'other_tool'"),
    ("tool_call(x=1, x=2)", "given twice"), ("tool_call(x=1); tool_call(y=2)", "2 statements"),
    ("", "empty"), ("tool_call(x=y)", "must be a literal .*Name"), ("tool_call(x=f'{1}')", "JoinedStr"),
    ("tool_call(x=lambda: 1)", "Lambda"), ("tool_call(x=[i for i in 'a'])", "ListComp"),
    ("tool_call(x=os.sep)", "Attribute"), ("tool_call(x=1", "not valid Python"), ("import os", "Import"),
    ("tool_call(**kw)", r"\*\*kw is not allowed"), ("tool_call(x={[1]: 2})", "not a literal value.*unhashable"),
    ("tool_call(x=1-1)", "arithmetic is not a literal"),
])
def test_refusals_say_what_was_wrong(code, message):
    with pytest.raises(ToolCallError, match=message):
        parse_tool_call(code)


def test_parse_tool_call_takes_text_only():
    with pytest.raises(ToolCallError, match="text"):
        parse_tool_call(b"tool_call(x=1)")


@pytest.mark.parametrize("argument", [
    "open({path!r}, 'w').write('x')",
    "__import__('pathlib').Path({path!r}).touch()",
    "[open({path!r}, 'w') for _ in [0]]",
    "(lambda: open({path!r}, 'w'))()",
    "f\"{{open({path!r}, 'w')}}\"",
])
def test_a_hostile_call_never_runs(tmp_path, argument):
    path = str(tmp_path / "pwned.txt")
    code = "```python\ntool_call(x=" + argument.format(path=path) + ")\n```"
    history = [tools_system_message(SHOP_TOOLS), {"role": "user", "content": "你好"}]
    with pytest.raises(ToolCallError):
        parse_tool_call(code)
    response, _ = process_response("check_order\n" + code, history)
    assert "error" in response and not (tmp_path / "pwned.txt").exists()
    reference_eval_with_builtins = eval  # noqa: S307 -- what ChatGLM3's eval would do, inside tmp_path
    body = "\n".join(code.split("\n")[1:-1])
    reference_eval_with_builtins(body, {"tool_call": lambda **kw: kw})
    assert (tmp_path / "pwned.txt").exists()  # the same text under eval does run: the test can fail


# --- process_response -------------------------------------------------------------------------------
TOOL_HISTORY = [tools_system_message(SHOP_TOOLS), {"role": "user", "content": "我的订单A1234到哪了？"}]


def test_text_reply_is_stripped_and_appended_to_a_copy_of_history():
    history = [{"role": "user", "content": "你好"}]
    response, new_history = process_response("\n 您好，欢迎光临清泉茶铺！ ", history)
    assert response == "您好，欢迎光临清泉茶铺！"
    assert new_history == history + [{"role": "assistant", "metadata": "", "content": "您好，欢迎光临清泉茶铺！"}]
    assert history == [{"role": "user", "content": "你好"}]


def test_tool_call_with_tools_system_message():
    output = "check_order\n ```python\ntool_call(order_id='A1234')\n```"
    response, history = process_response(output, TOOL_HISTORY)
    assert response == {"name": "check_order", "parameters": {"order_id": "A1234"}}
    assert history[-1] == {"role": "assistant", "metadata": "check_order",
                           "content": " ```python\ntool_call(order_id='A1234')\n```"}


def test_metadata_without_tools_is_name_and_content():
    response, _ = process_response("interpreter\n```python\nprint(1)\n```", [{"role": "user", "content": "算"}])
    assert response == {"name": "interpreter", "content": "```python\nprint(1)\n```"}


def test_several_segments_give_the_last_and_append_each():
    output = "\n 先查一下。<|assistant|> \n 好的，您的订单已发货。"  # " \n" is the real decode after a special token
    response, history = process_response(output, [{"role": "user", "content": "订单？"}])
    assert response == "好的，您的订单已发货。"
    assert [m["content"] for m in history[1:]] == ["先查一下。", "好的，您的订单已发货。"]
    assert history[2]["metadata"] == " "  # kept as decoded, as the reference keeps it


def test_unparseable_call_is_reported_not_raised():
    response, history = process_response("check_order\n```python\ntool_call('A1234')\n```", TOOL_HISTORY)
    assert response["name"] == "check_order" and "keyword arguments only" in response["error"]
    assert history[-1]["role"] == "assistant"


def test_reply_without_newline_counts_as_text():
    assert process_response("您好", [])[0] == "您好"
    assert process_response("", [])[0] == ""


def round_trip(tok: ChatTokenizerBase, message_ids):
    return process_response(tok.decode(message_ids), TOOL_HISTORY)[0]


@pytest.mark.parametrize("tokenizer", ["course", pytest.param("chatglm3", marks=needs_model)])
def test_decoded_model_output_parses(tokenizer):
    tok = BPETokenizer([]) if tokenizer == "course" else ChatGLM3Tokenizer.from_file(MODEL)
    call = tok.build_single_message("assistant", "check_order", format_tool_call({"order_id": "A1234"}))
    text = tok.build_single_message("assistant", "", "您的订单已发货。")
    # generation starts after the prompt's <|assistant|>, so the first message's role token is not decoded
    assert round_trip(tok, call[1:]) == {"name": "check_order", "parameters": {"order_id": "A1234"}}
    assert round_trip(tok, text[1:]) == "您的订单已发货。"
    assert round_trip(tok, call[1:] + text) == "您的订单已发货。"


# --- call_tool ---------------------------------------------------------------------------------------
def test_call_tool_runs_a_valid_call():
    assert call_tool("calculate", {"expression": "2*58+18"}) == {"expression": "2*58+18", "result": 134}
    assert call_tool("check_stock", {"product": "oolong"}, SHOP_TOOLS_BY_NAME) == check_stock("oolong")
    assert SHOP_TOOLS_BY_NAME == {"check_order": check_order, "check_stock": check_stock, "calculate": calculate}


@pytest.mark.parametrize("name, parameters, message", [
    ("refund", {"order_id": "A1234"}, "no tool named 'refund'"),
    ("check_order", {}, "missing argument 'order_id'"),
    ("check_order", {"order_id": "A1234", "force": True}, "unknown argument 'force'"),
    ("check_order", {"order_id": 1234}, "must be of type string, got int"),
    ("check_order", {"id": "A1234"}, "missing argument 'order_id'.*unknown argument 'id'"),
    ("check_order", ["A1234"], "name=value pairs"),
    ("check_order", None, "name=value pairs"),
])
def test_call_tool_bad_arguments_are_error_observations(name, parameters, message):
    observation = call_tool(name, parameters)
    assert set(observation) == {"error"}
    assert re.search(message, observation["error"]), observation


def test_call_tool_checks_integer_and_boolean_types_strictly():
    def order_more(count: int, gift: bool = False, price: float = 1.0) -> dict:
        """多订几罐。"""
        return {"count": count}
    tools = [order_more]
    assert call_tool("order_more", {"count": 2, "price": 3}, tools) == {"count": 2}
    assert "must be of type integer, got bool" in call_tool("order_more", {"count": True}, tools)["error"]
    assert "must be of type boolean, got int" in call_tool("order_more", {"count": 1, "gift": 1}, tools)["error"]
    assert "must be of type number, got str" in call_tool("order_more", {"count": 1, "price": "3"}, tools)["error"]


def test_a_tool_that_raises_or_returns_non_json_gives_an_error_observation():
    def broken(x: str) -> dict:
        """坏了。"""
        raise RuntimeError("the database is down")

    def returns_set(x: str) -> set:
        """返回集合。"""
        return {1, 2}

    def returns_nan(x: str) -> float:
        """返回 NaN。"""
        return float("nan")
    tools = [broken, returns_set, returns_nan]
    assert call_tool("broken", {"x": "a"}, tools) == {"error": "broken failed: RuntimeError: the database is down"}
    assert "not JSON data (set)" in call_tool("returns_set", {"x": "a"}, tools)["error"]
    assert "not JSON data (float)" in call_tool("returns_nan", {"x": "a"}, tools)["error"]
