"""Tools for the chat model: ChatGLM3's tool format, the shop's tools, and a parser that never runs model output.

Taught in lesson 09 (工具调用 Tool calling). ChatGLM3 calls a tool by writing an assistant
message whose *metadata* is the tool's name and whose content is a fenced Python call::

    <|assistant|>check_order
    ```python
    tool_call(order_id='A1234')
    ```<|observation|>
    {"order_id": "A1234", "status": "shipped", ...}<|assistant|>
    您的订单已经发货了……

The reference (``process_response`` in ChatGLM3's ``modeling_chatglm.py``) turns the call
into a dict by handing the content to Python's ``eval`` builtin after defining
``def tool_call(**kwargs): return kwargs``, so whatever the model writes runs as Python.
Here ``parse_tool_call`` gives the same dict for every call whose arguments are literals and
rejects everything else, without executing
anything: it reads the call with ``ast.parse`` and converts each checked argument with
``ast.literal_eval``.

What is here:
- ``tool_schema(fn)``: a plain function with type hints and a docstring -> its ChatGLM3 tool
  description ``{"name", "description", "parameters": JSON schema}``;
  ``tools_system_message(tools)``: the system history item the assistant is prompted with.
- ``SHOP_TOOLS``: ``check_order``, ``check_stock`` and ``calculate`` for the course's tea
  shop (``glm3_teach.stories.TEA_SHOP``), on deterministic simulated data.
- ``format_tool_call`` (the fine-tuning data's ``tool_call(...)`` text), ``parse_tool_call``,
  ``process_response`` (ChatGLM3's reply parsing) and ``call_tool`` (arguments checked
  against the schema; every failure becomes an ``{"error": ...}`` observation).

Cost: ``tools_system_message(SHOP_TOOLS)`` is 1040 tokens of the course tokenizer (about 600
of them the spaces of ``indent=4``, which its small vocabulary spells one by one) and 362 of
ChatGLM3's; the chat model's ``seq_length`` must leave room for it.

What it leaves out: the code interpreter (metadata ``interpreter``, run in a sandbox by
ChatGLM3's demo), ChatGLM3's ``[[训练时间]]`` placeholder replacement, and JSON schema
features beyond flat parameters of the basic types. The agent loop is in
``glm3_teach.agent``.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import keyword
import math
import operator
import re
import typing
from typing import Any, Callable, Iterable

from glm3_teach.stories import TEA_SHOP

TOOL_PROMPT = "Answer the following questions as best as you can. You have access to the following tools:"

# Python type hint -> JSON schema type.
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


# --- tool descriptions -----------------------------------------------------------------------
def _docstring_parts(fn: Callable) -> tuple[str, dict[str, str]]:
    """The first paragraph of ``fn``'s docstring and its ``Args:`` lines ``name: text``."""
    doc = inspect.getdoc(fn)
    if not doc or not doc.strip():
        raise ValueError(f"tool {fn.__name__!r} has no docstring; its first line becomes the description "
                         f"the model reads, e.g. '''查询订单的状态。'''")
    paragraphs = doc.strip().split("\n\n")
    description = " ".join(line.strip() for line in paragraphs[0].splitlines())
    arguments: dict[str, str] = {}
    lines = doc.splitlines()
    if "Args:" in (line.strip() for line in lines):
        start = [line.strip() for line in lines].index("Args:") + 1
        for line in lines[start:]:
            match = re.match(r"\s+(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)", line)
            if not match:
                break
            arguments[match.group(1)] = match.group(2).strip()
    return description, arguments


def _json_type(fn_name: str, parameter: str, hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    if origin in _JSON_TYPES:
        return _JSON_TYPES[origin]
    raise TypeError(f"tool {fn_name!r}: parameter {parameter!r} has type {hint!r}; a tool parameter must be "
                    f"one of str, int, float, bool, list, dict")


def tool_schema(fn: Callable) -> dict:
    """ChatGLM3's description of tool ``fn``: name, description and a JSON schema of its keyword arguments.

    The description is the docstring's first paragraph; a parameter's description is its line
    under ``Args:``. Every parameter needs a type hint; one without a default is required.

    >>> tool_schema(check_stock)["parameters"]["required"]
    ['product']
    """
    if not callable(fn) or not hasattr(fn, "__name__") or fn.__name__ == "<lambda>":
        raise TypeError(f"a tool must be a named function with type hints and a docstring, got {fn!r}")
    description, argument_text = _docstring_parts(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as error:  # a hint naming something undefined
        raise TypeError(f"tool {fn.__name__!r} has type hints that cannot be resolved: {error}") from None
    properties, required = {}, []
    for parameter in inspect.signature(fn).parameters.values():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise TypeError(f"tool {fn.__name__!r}: parameter {parameter.name!r} is {parameter.kind.description}; "
                            f"the model calls tools with keyword arguments only, so use plain named parameters")
        if parameter.name not in hints:
            raise TypeError(f"tool {fn.__name__!r}: parameter {parameter.name!r} has no type hint; "
                            f"write e.g. {parameter.name}: str")
        properties[parameter.name] = {"type": _json_type(fn.__name__, parameter.name, hints[parameter.name])}
        if parameter.name in argument_text:
            properties[parameter.name]["description"] = argument_text[parameter.name]
        if parameter.default is parameter.empty:
            required.append(parameter.name)
    return {"name": fn.__name__, "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required}}


def tools_system_message(tools: Iterable[Callable | dict]) -> dict:
    """The system history item that offers ``tools`` (functions or ready schemas) to the model.

    ``build_chat_input`` appends ``"\\n" + json.dumps(tools, indent=4, ensure_ascii=False)`` to
    its content, which gives exactly ChatGLM3's fine-tuning system message.
    """
    schemas = [tool if isinstance(tool, dict) else tool_schema(tool) for tool in tools]
    return {"role": "system", "content": TOOL_PROMPT, "tools": schemas}


# --- the shop's tools on simulated data ------------------------------------------------------
ORDER_ID = re.compile(r"[A-Z][0-9]{4}")
ORDER_STATUSES = ("processing", "shipped", "delivered")


def _digest(text: str) -> bytes:
    """Stable pseudo-random bytes for ``text`` (``hash()`` of a str changes between runs)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def check_order(order_id: str) -> dict:
    """查询订单（订单号如 A1234）的状态、商品和送达天数。"""
    if not isinstance(order_id, str) or not ORDER_ID.fullmatch(order_id):
        return {"error": f"invalid order id {order_id!r}: an order id is one capital letter and four digits, e.g. A1234"}
    if order_id[1] == "0":  # ids A0000..Z0999 were never issued
        return {"error": f"no order with id {order_id}"}
    digest = _digest(order_id)
    status = ORDER_STATUSES[digest[0] % len(ORDER_STATUSES)]
    products = [product.key for product in TEA_SHOP.products]
    kinds = 1 + digest[1] % 2
    items = [{"product": products[(digest[2] + 3 * k) % len(products)], "count": 1 + digest[3 + k] % 3}
             for k in range(kinds)]
    low, high = TEA_SHOP.delivery_days
    days = {"processing": high, "shipped": low + digest[5] % (high - low), "delivered": 0}[status]
    return {"order_id": order_id, "status": status, "items": items, "days_to_delivery": days}


def check_stock(product: str) -> dict:
    """查询商品的库存。

    Args:
        product: 商品名: green_tea, oolong, black_tea, jasmine, puerh, teapot, teacup
    """
    keys = [item.key for item in TEA_SHOP.products]
    if product not in keys:
        return {"error": f"unknown product {product!r}; use one of {', '.join(keys)}"}
    digest = _digest("库存:" + product)
    in_stock = 0 if digest[0] % 6 == 0 else 1 + digest[1] % 40
    return {"product": product, "in_stock": in_stock}


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _arithmetic(node: ast.AST) -> int | float:
    """The value of an expression made of numbers, + - * / and unary minus; ValueError for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_arithmetic(node.left), _arithmetic(node.right))
    raise ValueError(f"{ast.unparse(node)!r} is not allowed: use numbers, + - * / and brackets only")


def calculate(expression: str) -> dict:
    """计算算式（如 2*58+18），只支持数字和 + - * / ( )。"""
    if not isinstance(expression, str) or not expression.strip() or len(expression) > 200:
        return {"error": "expression must be a non-empty string of at most 200 characters, e.g. 2*58+18"}
    try:
        value = _arithmetic(ast.parse(expression.strip(), mode="eval").body)
    except ZeroDivisionError:
        return {"expression": expression, "error": "division by zero"}
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        reason = error.msg if isinstance(error, SyntaxError) else str(error) or type(error).__name__
        return {"expression": expression, "error": f"cannot calculate: {reason}"}
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"expression": expression, "error": "the result is too large"}
        value = int(value) if value.is_integer() and abs(value) < 2**53 else round(value, 6)
    return {"expression": expression, "result": value}


SHOP_TOOLS = [check_order, check_stock, calculate]
SHOP_TOOLS_BY_NAME = {fn.__name__: fn for fn in SHOP_TOOLS}


# --- writing and reading tool calls ----------------------------------------------------------
class ToolCallError(ValueError):
    """A tool call the model wrote that is not ``tool_call(name=literal, ...)``."""


def format_tool_call(parameters: dict) -> str:
    """The fenced call ChatGLM3's fine-tuning data writes for ``parameters`` (via ``ast`` unparsing).

    >>> format_tool_call({"order_id": "A1234"})
    "```python\\ntool_call(order_id='A1234')\\n```"
    """
    if not isinstance(parameters, dict):
        raise TypeError(f"parameters must be a dict of keyword arguments, got {type(parameters).__name__}")
    for name in parameters:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"parameter name {name!r} is not a Python identifier, so tool_call({name}=...) "
                             f"cannot be written")
    keywords = [ast.keyword(arg=name, value=ast.Constant(value)) for name, value in parameters.items()]
    call = ast.unparse(ast.Call(func=ast.Name(id="tool_call"), args=[], keywords=keywords))
    try:
        round_trip = parse_tool_call(call)
    except ToolCallError as error:
        raise ValueError(f"parameters {parameters!r} are not Python literals: {error}") from None
    if round_trip != parameters:
        raise ValueError(f"parameters {parameters!r} do not survive writing as {call!r} (read back as {round_trip!r})")
    return f"```python\n{call}\n```"


# Nodes a literal argument may contain; ast.literal_eval then checks how they combine.
_LITERAL_NODES = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Load,
                  ast.UnaryOp, ast.UAdd, ast.USub, ast.BinOp, ast.Add, ast.Sub)
MAX_CALL_CHARS = 20_000


def _strip_fences(code: str) -> str:
    """The call inside an optional ```python ... ``` fence."""
    lines = code.strip().splitlines()
    if lines and lines[0].strip().startswith("```"):
        lines = lines[1:]
    if lines and lines[-1].strip() == "```":
        lines = lines[:-1]
    return "\n".join(lines).strip()


def _parse_call(text: str) -> ast.Call:
    """The single ``tool_call(...)`` expression of ``text``, or ToolCallError saying what it is instead."""
    try:
        module = ast.parse(text, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        reason = error.msg if isinstance(error, SyntaxError) else str(error) or type(error).__name__
        raise ToolCallError(f"the tool call is not valid Python ({reason}): {text[:80]!r}") from None
    if len(module.body) != 1:
        raise ToolCallError(f"expected one tool_call(...) expression, found {len(module.body)} statements")
    statement = module.body[0]
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        raise ToolCallError(f"expected tool_call(...), found a {type(statement).__name__} statement: "
                            f"{ast.unparse(statement)[:80]!r}")
    call = statement.value
    if not isinstance(call.func, ast.Name) or call.func.id != "tool_call":
        raise ToolCallError(f"expected a call of tool_call, found a call of {ast.unparse(call.func)[:80]!r}")
    if call.args:
        raise ToolCallError(f"tool_call takes keyword arguments only (name=value), found positional argument "
                            f"{ast.unparse(call.args[0])[:80]!r}")
    return call


def _literal(name: str, node: ast.AST) -> Any:
    """The value of one keyword argument, which must be a Python literal."""
    for child in ast.walk(node):
        if not isinstance(child, _LITERAL_NODES):
            raise ToolCallError(f"argument {name!r} must be a literal (string, number, True/False/None, list, "
                                f"tuple, dict, set); found {type(child).__name__} in {ast.unparse(node)[:80]!r}")
    try:
        return ast.literal_eval(node)
    except ValueError:  # arithmetic such as 1-1, --1 or -True: literal nodes, but not a literal
        reason = "arithmetic is not a literal; write the value itself (only complex numbers such as 1+2j use + or -)"
    except TypeError as error:  # an unhashable dict key or set element
        reason = str(error)
    except (SyntaxError, RecursionError, MemoryError):
        reason = "too deeply nested"
    raise ToolCallError(f"argument {name!r} is not a literal value: {ast.unparse(node)[:80]!r} ({reason})")


def parse_tool_call(code: str) -> dict:
    """The keyword arguments of ``tool_call(...)`` in ``code`` (fences optional); never executes anything.

    Gives what ChatGLM3's ``eval`` gives for literal arguments and raises ``ToolCallError``
    for anything else (names, calls, attributes, comprehensions, f-strings, lambdas, operators,
    positional or repeated arguments, a second statement, empty input).

    >>> parse_tool_call("```python\\ntool_call(order_id='A1234', count=2)\\n```")
    {'order_id': 'A1234', 'count': 2}
    """
    if not isinstance(code, str):
        raise ToolCallError(f"a tool call is text, got {type(code).__name__}")
    if len(code) > MAX_CALL_CHARS:
        raise ToolCallError(f"the tool call is {len(code)} characters long; at most {MAX_CALL_CHARS} are read")
    text = _strip_fences(code)
    if not text:
        raise ToolCallError("the tool call is empty; expected tool_call(name=value, ...)")
    parameters: dict[str, Any] = {}
    for argument in _parse_call(text).keywords:
        if argument.arg is None:
            raise ToolCallError(f"**{ast.unparse(argument.value)[:80]} is not allowed; write each argument as name=value")
        if argument.arg in parameters:
            raise ToolCallError(f"argument {argument.arg!r} is given twice")
        parameters[argument.arg] = _literal(argument.arg, argument.value)
    return parameters


def _has_tools(history: list[dict]) -> bool:
    return bool(history) and history[0].get("role") == "system" and "tools" in history[0]


def process_response(output: str, history: list[dict]) -> tuple[str | dict, list[dict]]:
    """ChatGLM3's reply parsing: the decoded ``output`` -> (text or tool call, history + assistant item(s)).

    ``output`` is split on ``<|assistant|>``; each segment is ``metadata \\n content``. Empty
    metadata gives the stripped text. Otherwise, with a tools system message first in
    ``history``, the segment is a tool call ``{"name", "parameters"}``; without one it is
    ``{"name", "content"}``. The last segment is returned, as in the reference. Unlike the
    reference (which ``eval``s and raises), a call that does not parse gives
    ``{"name", "content", "error"}`` so that a caller can answer with an error observation.
    A segment without a newline counts as text.
    """
    if not isinstance(output, str):
        raise TypeError(f"output must be the decoded reply text, got {type(output).__name__}")
    history = [dict(message) for message in history or []]
    content: str | dict = ""
    for segment in output.split("<|assistant|>"):
        metadata, _, text = segment.partition("\n") if "\n" in segment else ("", "", segment)
        if not metadata.strip():
            content = text.strip()
            history.append({"role": "assistant", "metadata": metadata, "content": content})
            continue
        history.append({"role": "assistant", "metadata": metadata, "content": text})
        if _has_tools(history):
            try:
                content = {"name": metadata.strip(), "parameters": parse_tool_call(text)}
            except ToolCallError as error:
                content = {"name": metadata.strip(), "content": text, "error": str(error)}
        else:
            content = {"name": metadata.strip(), "content": text}
    return content, history


# --- calling a tool --------------------------------------------------------------------------
def _type_ok(value: Any, json_type: str) -> bool:
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    python_type = {"string": str, "boolean": bool, "array": (list, tuple), "object": dict}[json_type]
    return isinstance(value, python_type)


def _argument_errors(schema: dict, parameters: dict) -> list[str]:
    """What is wrong with ``parameters`` for the tool described by ``schema`` (empty when nothing)."""
    properties = schema["parameters"]["properties"]
    errors = [f"missing argument {name!r}" for name in schema["parameters"]["required"] if name not in parameters]
    errors += [f"unknown argument {name!r} (the tool takes {', '.join(properties) or 'no arguments'})"
               for name in parameters if name not in properties]
    errors += [f"argument {name!r} must be of type {properties[name]['type']}, got {type(value).__name__} {value!r}"
               for name, value in parameters.items()
               if name in properties and not _type_ok(value, properties[name]["type"])]
    return errors


def call_tool(name: str, parameters: Any, tools: Iterable[Callable] | dict[str, Callable] = SHOP_TOOLS) -> Any:
    """Run tool ``name`` with ``parameters`` and return its JSON-serialisable result (the observation).

    Every failure is an ``{"error": "..."}`` observation, never an exception: an unknown tool,
    arguments that do not match the tool's schema, a tool that raises, a result that is not
    JSON data.

    >>> call_tool("calculate", {"expression": "2*58+18"})
    {'expression': '2*58+18', 'result': 134}
    """
    by_name = dict(tools) if isinstance(tools, dict) else {fn.__name__: fn for fn in tools}
    if name not in by_name:
        return {"error": f"there is no tool named {name!r}; the tools are {', '.join(by_name)}"}
    if not isinstance(parameters, dict):
        return {"error": f"the arguments of {name} must be name=value pairs, got {type(parameters).__name__}"}
    errors = _argument_errors(tool_schema(by_name[name]), parameters)
    if errors:
        return {"error": f"{name}: " + "; ".join(errors)}
    try:
        result = by_name[name](**parameters)
    except Exception as error:  # a tool's failure is reported to the model, not raised
        return {"error": f"{name} failed: {type(error).__name__}: {error}"}
    try:
        json.dumps(result, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        return {"error": f"{name} returned something that is not JSON data ({type(result).__name__}): {error}"}
    return result
