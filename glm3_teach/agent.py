"""The agent loop: let the chat model call tools until it answers, and measure how well it does.

Taught in lesson 09 (工具调用 Tool calling). ``run_agent`` is ChatGLM3's tools demo loop
(``tools_using_demo/cli_demo_tool.py``) with the ``eval`` taken out:

1. ``chat()`` with a history that opens with the tools system message;
2. a text reply ends the loop;
3. a tool call (``{"name", "parameters"}``, read by ``tools.parse_tool_call``) is checked
   against the tool's schema and run by ``tools.call_tool``; its result goes back to the model
   as the next message, role ``observation``, ``json.dumps(result, ensure_ascii=False)``;
4. a call that cannot be read, a wrong argument, a failing tool: an ``{"error": ...}``
   observation, so the model can try again or apologise;
5. the loop stops after ``max_steps`` generations, when the model repeats a call it already
   made, or when the conversation no longer fits the model's ``seq_length`` (the reply then
   says which).

``tool_metrics`` runs the loop over fine-tuning items (``data/sft``, their ``meta`` keys) and
gives the numbers of the evaluation harness: parse rate, tool-name accuracy, argument exact
match, false-call rate on questions that need no tool, and how often the final answer
contains the observation's values; ``by_intent`` counts the same per intent, to see which
kind of question fails.

What it leaves out: several tool calls in one assistant turn, the code interpreter, and
streaming (``chat.stream_chat`` streams one turn).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from glm3_teach.chat import chat
from glm3_teach.tools import SHOP_TOOLS, call_tool, format_tool_call, tool_schema, tools_system_message


def _is_tools_message(message: dict) -> bool:
    return message.get("role") == "system" and "tools" in message


def _call_text(name: str, parameters: dict) -> str:
    """``check_order(order_id='A1234')``: a call as a reader would write it."""
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in parameters.items())})"


def _fits(model: Any, tokenizer: Any, message: str, history: list[dict], role: str) -> bool:
    """Whether the next prompt leaves the model room for at least one new token."""
    return len(tokenizer.build_chat_input(message, history=history, role=role)) < model.config.seq_length


def _observation(response: dict, tools: list[Callable]) -> Any:
    """What the model is told after a tool call response of ``chat``: the tool's result or an error."""
    if "parameters" not in response:
        return {"error": f"the call of {response['name']} could not be read ({response.get('error')}); "
                         f"write it as ```python\ntool_call(name=value)\n```"}
    return call_tool(response["name"], response["parameters"], tools)


def _prepare(tools: Iterable[Callable], history: list[dict] | None, max_steps: Any) -> tuple[list, list[dict]]:
    """The checked tool list and the history opening with their tools system message."""
    tools = list(tools)
    if not tools or isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"run_agent needs at least one tool and max_steps >= 1, got {len(tools)} tools and "
                         f"max_steps={max_steps!r}")
    schemas = [tool_schema(fn) for fn in tools]  # a malformed tool is refused before the model runs
    history = list(history or [])
    if not history or not _is_tools_message(history[0]):
        history = [tools_system_message(schemas)] + history
    return tools, history


def agent_trace(model: Any, tokenizer: Any, query: str, tools: Iterable[Callable], history: list[dict] | None = None,
                max_steps: int = 4, show: bool = False, **generate_kwargs: Any) -> dict:
    """Run the agent loop and return ``{"reply", "history", "steps", "stopped"}``.

    ``steps`` lists what happened in order: ``{"kind": "call", "name", "parameters"}``,
    ``{"kind": "bad_call", "name", "error", "content"}``, ``{"kind": "observation", "content"}``
    and ``{"kind": "reply", "content"}``. ``stopped`` is ``None`` for a normal reply, else
    ``"max_steps"``, ``"repeated_call"`` or ``"context_full"``.
    """
    tools, history = _prepare(tools, history, max_steps)
    trace = {"reply": None, "history": history, "steps": [], "stopped": None, "show": show}
    made, role, message = set(), "user", query
    _note(trace, "user", query)
    for step_number in range(1, max_steps + 1):
        if step_number > 1 and not _fits(model, tokenizer, message, trace["history"], role):
            return _stopped(trace, "context_full", "the conversation no longer fits the model's context "
                            f"(seq_length {model.config.seq_length})")
        response, trace["history"] = chat(model, tokenizer, message, trace["history"], role=role, **generate_kwargs)
        if isinstance(response, str):
            _note(trace, "assistant", response, {"kind": "reply", "content": response})
            trace["reply"] = response
            return _finished(trace)
        step, call_key = _record_call(response)
        _note(trace, "→ tool call", _describe(step), step)
        if call_key in made:
            return _stopped(trace, "repeated_call", f"the model repeated the call {_describe(step)}")
        if step_number == max_steps:
            return _stopped(trace, "max_steps", f"the model was still calling tools after {max_steps} steps")
        made.add(call_key)
        observation = _observation(response, tools)
        role, message = "observation", json.dumps(observation, ensure_ascii=False)
        _note(trace, "← result", message, {"kind": "observation", "content": observation})
    raise AssertionError("unreachable: the last step always returns")  # pragma: no cover


def _note(trace: dict, label: str, text: str, step: dict | None = None) -> None:
    """Record ``step`` in the trace and, with ``show``, print one line for it."""
    if step is not None:
        trace["steps"].append(step)
    if trace["show"]:
        print(f"{label:>12} │ {text}")


def _describe(step: dict) -> str:
    if step["kind"] == "call":
        return _call_text(step["name"], step["parameters"])
    return f"{step['name']}: an unreadable call ({step['error']})"


def _record_call(response: dict) -> tuple[dict, tuple[str, str]]:
    """The step record of a tool call response and a key that is equal for repeated calls."""
    if "parameters" in response:
        step = {"kind": "call", "name": response["name"], "parameters": response["parameters"]}
        return step, (response["name"], repr(response["parameters"]))
    step = {"kind": "bad_call", "name": response["name"], "error": response.get("error"),
            "content": response.get("content")}
    return step, (response["name"], "unreadable:" + str(response.get("content")))


def _stopped(trace: dict, reason: str, explanation: str) -> dict:
    trace["reply"], trace["stopped"] = f"[agent stopped: {explanation}]", reason
    _note(trace, "agent", trace["reply"])
    return _finished(trace)


def _finished(trace: dict) -> dict:
    trace.pop("show")
    return trace


def run_agent(model: Any, tokenizer: Any, query: str, tools: Iterable[Callable], history: list[dict] | None = None,
              max_steps: int = 4, show: bool = False, **generate_kwargs: Any) -> tuple[str, list[dict]]:
    """Answer ``query`` with the help of ``tools``: ``(final reply, full history)``.

    The history gets ``tools_system_message(tools)`` first unless it already opens with a
    tools system message. ``show=True`` prints each step. ``generate_kwargs`` go to
    ``chat()`` (e.g. ``do_sample=False`` for greedy decoding, ``max_new_tokens``).

    >>> reply, history = run_agent(model, tokenizer, "A1234 到哪了？", SHOP_TOOLS, do_sample=False)  # doctest: +SKIP
    """
    trace = agent_trace(model, tokenizer, query, tools, history, max_steps, show, **generate_kwargs)
    return trace["reply"], trace["history"]


# --- evaluation --------------------------------------------------------------------------------
def evaluation_prompt(item: dict) -> tuple[str, list[dict]]:
    """``(query, history)`` to ask a fine-tuning item's last user message after the turns before it.

    The history opens with the item's tools system message if it has ``tools`` (else the agent
    adds its own); a ``tool`` message becomes the assistant call and the observation, as in
    training.
    """
    conversations = item["conversations"]
    users = [i for i, message in enumerate(conversations) if message["role"] == "user"]
    if not users:
        raise ValueError(f"item has no user message to ask: {json.dumps(item, ensure_ascii=False)[:120]}")
    history = [tools_system_message(item["tools"])] if item.get("tools") else []
    for message in conversations[:users[-1]]:
        if message["role"] == "tool":
            observation = message["observation"]
            history += [{"role": "assistant", "metadata": message["name"],
                         "content": format_tool_call(message["parameters"])},
                        {"role": "observation", "content": observation if isinstance(observation, str)
                         else json.dumps(observation, ensure_ascii=False)}]
        else:
            history.append({"role": message["role"], "content": message["content"]})
    return conversations[users[-1]]["content"], history


def ask_turn_item(item: dict) -> dict | None:
    """The item cut after the assistant's first text reply when that reply comes before any tool call.

    In an ``order_ask`` dialogue the customer gives no order id and the assistant must ask for
    it, not call ``check_order`` with an id it made up: the cut item is a question that needs no
    tool (``meta["ask_turn"]`` is True). Items without such a turn give ``None``.
    """
    conversations = item["conversations"]
    tool_at = next((i for i, message in enumerate(conversations) if message["role"] == "tool"), None)
    replies = [i for i, message in enumerate(conversations[:tool_at]) if message["role"] == "assistant"]
    if tool_at is None or not replies:
        return None
    meta = {key: value for key, value in item.get("meta", {}).items() if key not in ("expect_tool", "observation_values")}
    return {**{key: value for key, value in item.items() if key != "meta"},
            "conversations": conversations[:replies[0] + 1], "meta": {**meta, "ask_turn": True}}


def _typed(value: Any) -> Any:
    """``value`` with its types spelled out, so that 2, 2.0 and True are different arguments."""
    if isinstance(value, dict):
        return ("dict", sorted((repr(_typed(k)), repr(_typed(v))) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


def score_item(model: Any, tokenizer: Any, item: dict, tools: list[Callable], max_steps: int = 3,
               **generate_kwargs: Any) -> dict:
    """Run the agent on one item and say what it did: first call, name/arguments right, values in the answer.

    The result keeps the item's ``meta``, the ``query``, every ``step`` (calls, observations)
    and the final ``reply``, so a failure can be read back from an evaluation's JSON.
    """
    meta = item.get("meta", {})
    expected = meta.get("expect_tool")
    query, history = evaluation_prompt(item)
    trace = agent_trace(model, tokenizer, query, tools, history, max_steps=max_steps, **generate_kwargs)
    calls = [step for step in trace["steps"] if step["kind"] in ("call", "bad_call")]
    first = calls[0] if calls else None
    result = {"intent": meta.get("intent"), "ask_turn": bool(meta.get("ask_turn")), "meta": meta, "query": query,
              "expect_tool": expected, "reply": trace["reply"],
              "stopped": trace["stopped"], "steps": trace["steps"], "called": first is not None,
              "call_attempts": len(calls), "parsed_calls": sum(step["kind"] == "call" for step in calls),
              "first_call": first}
    if expected is not None:
        result["name_ok"] = first is not None and first["name"] == expected["name"]
        result["call_ok"] = result["name_ok"] and first["kind"] == "call" and \
            _typed(first["parameters"]) == _typed(expected["parameters"])
        values = meta.get("observation_values")
        result["values_ok"] = None if not values else trace["stopped"] is None and all(
            str(value) in trace["reply"] for value in values)
    return result


def _rate(flags: list[bool]) -> float | None:
    return None if not flags else sum(flags) / len(flags)


def aggregate(results: list[dict]) -> dict:
    """The tool metrics of ``score_item`` results (rates are ``None`` where nothing was counted)."""
    tool = [r for r in results if r["expect_tool"] is not None]
    no_tool = [r for r in results if r["expect_tool"] is None and not r["ask_turn"]]
    ask = [r for r in results if r["ask_turn"]]
    attempts = sum(r["call_attempts"] for r in results)
    return {
        "tool_items": len(tool),
        "no_tool_items": len(no_tool),
        "parse_rate": None if not attempts else sum(r["parsed_calls"] for r in results) / attempts,
        "tool_name_accuracy": _rate([r["name_ok"] for r in tool]),
        "argument_exact_match": _rate([r["call_ok"] for r in tool]),
        "false_call_rate": _rate([r["called"] for r in no_tool]),
        "asks_without_calling": _rate([not r["called"] for r in ask]),
        "observation_in_answer": _rate([r["values_ok"] for r in tool if r["values_ok"] is not None]),
        "stopped": sum(r["stopped"] is not None for r in results),
    }


def by_intent(results: list[dict]) -> dict[str, dict]:
    """Counts per intent of ``score_item`` results: where the rates of ``aggregate`` come from.

    ``{"order_status": {"items": 10, "called": 9, "name_ok": 9, "call_ok": 7, "values_ok": 6}, ...}``;
    an ask turn counts under its intent + ``"/ask"`` (there ``called`` is the failure).
    """
    counts: dict[str, dict] = {}
    for result in results:
        key = f"{result['intent']}/ask" if result["ask_turn"] else str(result["intent"])
        row = counts.setdefault(key, {"items": 0, "called": 0, "name_ok": 0, "call_ok": 0, "values_ok": 0})
        row["items"] += 1
        for flag in ("called", "name_ok", "call_ok", "values_ok"):
            row[flag] += bool(result.get(flag))
    return dict(sorted(counts.items()))


def tool_metrics(model: Any, tokenizer: Any, items: Iterable[dict], tools: Iterable[Callable] | None = None,
                 offer_tools: bool = False, ask_turns: bool = True, max_steps: int = 3, max_new_tokens: int = 128,
                 progress: bool = False, return_results: bool = False, **generate_kwargs: Any) -> dict:
    """Tool metrics over fine-tuning items (``data/sft`` with ``meta``), greedy decoding.

    Items with ``meta.expect_tool`` are tool questions; the others count for the false-call
    rate: only those that offer tools unless ``offer_tools=True``, which offers the tools to
    every item, as a deployed agent does. With ``ask_turns`` the first turn of every dialogue in
    which the assistant must ask before calling (``ask_turn_item``) is scored too:
    ``asks_without_calling`` is the share of those the model answered without a call.
    ``return_results=True`` adds the per-item results under ``"results"`` for failure analysis.
    """
    tools = list(SHOP_TOOLS if tools is None else tools)
    items = [item for item in items if offer_tools or item.get("tools") or item.get("meta", {}).get("expect_tool")]
    if ask_turns:
        items += [cut for cut in map(ask_turn_item, items) if cut is not None]
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="tool metrics")
    kwargs = {"do_sample": False, "max_new_tokens": max_new_tokens, **generate_kwargs}
    results = [score_item(model, tokenizer, item, tools, max_steps, **kwargs) for item in items]
    metrics = aggregate(results)
    if return_results:
        metrics["results"] = results
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m glm3_teach.agent --model data/checkpoints/chat --split heldout``: the tool metrics as JSON."""
    import argparse

    import torch

    from glm3_teach.checkpoint import load_pretrained
    from glm3_teach.dialogues import load_sft
    from glm3_teach.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser(prog="python -m glm3_teach.agent", description="tool metrics of a chat checkpoint")
    parser.add_argument("--model", required=True, help="a checkpoint folder, e.g. data/checkpoints/chat")
    parser.add_argument("--split", default="heldout", choices=("train", "val", "heldout"))
    parser.add_argument("--data", default=None, help="the SFT folder (default data/sft)")
    parser.add_argument("--max-items", type=int, default=None, help="the first N tool items of the split (default all)")
    parser.add_argument("--evenly", action="store_true", help="take the N items evenly spaced over the split "
                        "(every intent keeps its share, as evaluate --tool-items does) instead of the first N")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not Path(args.model, "config.json").is_file():
        parser.error(f"{args.model} is not a checkpoint folder (it has no config.json)")
    if args.max_items is not None and args.max_items < 1:
        parser.error(f"--max-items must be 1 or more, got {args.max_items}")
    torch.set_num_threads(args.threads)
    model, tokenizer = load_pretrained(args.model, dtype=torch.float32), load_tokenizer(args.model)
    items = [item for item in load_sft(args.split, args.data) if item.get("tools")]
    count = min(args.max_items or len(items), len(items))
    # evaluate.subsample's spacing, written out: importing it would be a cycle (evaluate imports this module)
    items = [items[int(k * len(items) / count)] for k in range(count)] if args.evenly else items[:count]
    started = time.time()
    metrics = tool_metrics(model, tokenizer, items, progress=True, return_results=True)
    intents = by_intent(metrics.pop("results"))
    print(json.dumps({"model": args.model, "split": args.split, **metrics, "by_intent": intents,
                      "minutes": round((time.time() - started) / 60, 1)}, indent=1))
    return 0


__all__ = ["agent_trace", "aggregate", "ask_turn_item", "by_intent", "evaluation_prompt", "run_agent", "score_item",
           "tool_metrics"]

if __name__ == "__main__":
    from glm3_teach.errors import cli_main

    raise SystemExit(cli_main("python -m glm3_teach.agent", main))
