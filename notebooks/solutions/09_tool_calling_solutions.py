# %% [markdown]
# # 09 · 工具调用 Tool calling: solutions
#
# Worked answers to the exercises of lesson 09. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import ast

from glm3_teach import check, load_tokenizer
from glm3_teach.sft import encode_conversation
from glm3_teach.stories import TEA_SHOP
from glm3_teach.tools import SHOP_TOOLS, ToolCallError, call_tool, parse_tool_call, tool_schema

tok = load_tokenizer()


# %% [markdown]
# ## Exercise 1: one more literal type
# A list node keeps its elements in `node.elts`; each is read with `literal_value`, which sends
# an inner list back here, so nesting needs no extra code. Anything else inside (a name, a call)
# still reaches `literal_value`'s final `raise`.

# %% tags=["nbval-check-output"]
def literal_value(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -literal_value(node.operand)
    if isinstance(node, ast.List):
        return list_value(node)
    raise ToolCallError(f"not a literal this parser knows: {ast.unparse(node)}")


def hand_parse(code):
    call = ast.parse(code.strip()).body[0].value
    return {argument.arg: literal_value(argument.value) for argument in call.keywords}


def list_value(node):
    return [literal_value(element) for element in node.elts]


list_calls = ["tool_call(products=['oolong', 'teacup'])", "tool_call(counts=[2, -1, 3.5], empty=[])",
              "tool_call(nested=[[1, 2], ['乌龙茶', None, True]])"]
assert check("list_value", hand_parse, parse_tool_call, list_calls)
try:
    hand_parse("tool_call(products=[open('x')])")
except ToolCallError as error:
    print("still refused:", error)

# %% [markdown]
# ## Exercise 2: a new tool and its training dialogue
# (a) The weekday's index in `DAYS` is the shop's day number (0 is Monday). Anything that is not
# one of the seven keys, "星期一" and "Monday" included, is an error observation: the model must
# learn to pass the key, as it does for products.

# %% tags=["nbval-check-output"]
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def opening_hours(day: str) -> dict:
    """查询某一天的营业时间。

    Args:
        day: 星期几: monday ... sunday
    """
    if day not in DAYS:
        return {"error": f"unknown day {day!r}; use one of {', '.join(DAYS)}"}
    if DAYS.index(day) == TEA_SHOP.closed_day:
        return {"day": day, "closed": True}
    return {"day": day, "open": f"{TEA_SHOP.open_hour}:00", "close": f"{TEA_SHOP.close_hour}:00"}


EXPECTED_HOURS = {day: {"day": day, "open": "9:00", "close": "21:00"} for day in DAYS[1:]}
EXPECTED_HOURS["monday"] = {"day": "monday", "closed": True}


def outcome(result):
    return "error" if "error" in result else result


assert check("opening_hours", lambda day: outcome(opening_hours(day)),
             lambda day: outcome(EXPECTED_HOURS.get(day, {"error": "unknown day"})),
             list(DAYS) + ["星期一", "Monday", ""])
print(tool_schema(opening_hours))
print(call_tool("opening_hours", {"day": "tuesday"}, SHOP_TOOLS + [opening_hours]))

# %% [markdown]
# (b) The item offers all four tools (the model must choose among them), calls the tool through
# `call_tool` so the observation is exactly what the agent would see, and answers with the
# observation's values.

# %% tags=["nbval-check-output"]
ZH_DAYS = dict(zip(DAYS, ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期天")))


def hours_dialogue(question, day):
    tools = SHOP_TOOLS + [opening_hours]
    observation = call_tool("opening_hours", {"day": day}, tools)
    if observation.get("closed"):
        answer = f"{ZH_DAYS[day]}我们休息，欢迎改天再来。"
    else:
        answer = f"{ZH_DAYS[day]}我们{observation['open']}开门，{observation['close']}关门。"
    return {"tools": [tool_schema(fn) for fn in tools],
            "conversations": [{"role": "user", "content": question},
                              {"role": "tool", "name": "opening_hours", "parameters": {"day": day},
                               "observation": observation},
                              {"role": "assistant", "content": answer}]}


def dialogue_facts(item):
    ids, labels = encode_conversation(item, tok)
    call = next(m for m in item["conversations"] if m["role"] == "tool")
    answer = item["conversations"][-1]["content"]
    observation = call["observation"]
    numbers = [observation["open"], observation["close"]] if "open" in observation else ["休息"]
    after_call = ids.index(tok.special_id("<|observation|>"))
    return {"offers_tool": "opening_hours" in [t["name"] for t in item["tools"]], "name": call["name"],
            "parameters": call["parameters"], "observation": observation,
            "call_is_trained": labels[after_call] != -100, "answer_uses_result": all(n in answer for n in numbers)}


def expected_facts(question, day):
    return {"offers_tool": True, "name": "opening_hours", "parameters": {"day": day},
            "observation": EXPECTED_HOURS[day], "call_is_trained": True, "answer_uses_result": True}


assert check("hours_dialogue", lambda q, d: dialogue_facts(hours_dialogue(q, d)), expected_facts,
             [("星期二几点开门？", "tuesday"), ("你们周一营业吗？", "monday"), ("周日开到几点？", "sunday")])
print(hours_dialogue("星期二几点开门？", "tuesday")["conversations"][-1]["content"])


# %% [markdown]
# ## Exercise 3: a model that keeps calling the same tool
# Parameters are dicts, which cannot go into a set, so the calls seen so far stay in a list and
# are compared with `==` (a dict compares by content, not by order of insertion). `run_agent`
# does the same with `repr(parameters)` as a hashable key.

# %% tags=["nbval-check-output"]
def first_repeat(calls):
    seen = []
    for index, call in enumerate(calls):
        if call in seen:
            return index
        seen.append(call)
    return None


def reference_first_repeat(calls):
    for index, call in enumerate(calls):
        if call in calls[:index]:
            return index
    return None


loops = [[("check_order", {"order_id": "A1234"})] * 3,
         [("check_order", {"order_id": "A1234"}), ("check_order", {"order_id": "A1235"})],
         [("check_stock", {"product": "oolong"}), ("calculate", {"expression": "2*58"}),
          ("check_stock", {"product": "oolong"})],
         [("check_order", {"order_id": "A1234"}), ("check_stock", {"order_id": "A1234"})], []]
assert check("first_repeat", first_repeat, reference_first_repeat, [(calls,) for calls in loops])
