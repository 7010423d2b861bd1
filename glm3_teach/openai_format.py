"""The OpenAI Chat Completions format at the edges of a ChatGLM3 model: requests in, chunks out.

Taught in lesson 12 (部署 Serving); ``glm3_teach.serve`` puts it behind HTTP. The model keeps
ChatGLM3's own format; only the edges change:

- ``parse_chat_request`` checks a request body (``APIError`` in OpenAI's shape for anything
  wrong) and ``to_chatglm_history`` maps its messages: OpenAI ``tools`` -> the tools system
  message (``tools.tools_system_message``); an assistant message's ``tool_calls`` ->
  ``<|assistant|>name`` + ``tool_call(k=v)`` with the JSON arguments written as Python keyword
  literals (``tools.format_tool_call``), each call followed by the ``tool`` message that
  answers it (matched by ``tool_call_id``) as an ``<|observation|>``.
- ``ReplyParser`` reads the reply as it is decoded. The line right after ``<|assistant|>`` is
  its metadata: empty means text; the name of an offered tool means a call, whose
  ``tool_call(...)`` is read by ``tools.parse_tool_call`` (never ``eval``) into JSON arguments.
  So a stream decides text vs call from what the model wrote, never by guessing. A call the
  parser cannot read is passed on as written (OpenAI also warns that arguments may not be
  valid JSON). Text is stripped at both ends as ChatGLM3's ``process_response`` does, and
  ``stop`` strings end it; the same parser serves streamed and whole replies, so greedy
  replies are identical both ways.
- ``sse`` frames one server-sent event: ``data: <json>`` and a blank line.

What it leaves out: ``n > 1``, log-probabilities, JSON mode, the legacy ``functions`` and
``function_call`` fields, images and audio.
"""

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from glm3_teach.generate import CHATGLM3_TEMPERATURE, CHATGLM3_TOP_P
from glm3_teach.tools import ToolCallError, format_tool_call, parse_tool_call, tools_system_message

@dataclass
class Limits:
    """What one request may ask for (bounds memory and time per request)."""

    max_messages: int = 64               # messages in one request
    max_chars: int = 24_000              # characters over all contents, arguments and tool schemas
    max_body_bytes: int = 1_000_000      # size of the JSON body
    max_tools: int = 16                  # tools offered in one request
    max_pending: int = 64                # requests waiting or running before new ones get 429


class APIError(Exception):
    """An error answered in OpenAI's shape with an HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# --- the request: validated, then mapped to ChatGLM3's history ----------------------------------------
@dataclass
class ChatRequest:
    """A validated chat request, already in ChatGLM3's terms."""

    history: list[dict]                  # ChatGLM3 history items before the last message
    query: str                           # the last message's content
    role: str                            # "user" or "observation"
    tools: list[dict] = field(default_factory=list)   # ChatGLM3 tool schemas offered (empty: text only)
    max_tokens: int | None = None
    temperature: float = CHATGLM3_TEMPERATURE
    top_p: float = CHATGLM3_TOP_P
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False


def _number(body: dict, name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise APIError(400, f"'{name}' must be a number between {low} and {high}, got {value!r}", name,
                       "invalid_value")
    return float(value)


def _text_content(content: Any, where: str, allow_none: bool = False) -> str:
    """A message's content as text: a string, or a list of ``{"type": "text", "text"}`` parts."""
    if content is None and allow_none:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise APIError(400, f"{where}[{index}] is {kind!r} content; this model reads text only "
                               f"(parts of the form {{'type': 'text', 'text': ...}})", f"{where}[{index}]")
            parts.append(part["text"])
        return "".join(parts)
    raise APIError(400, f"{where} must be a string or a list of text parts, got {type(content).__name__}", where)


def _tool_schemas(body: dict, limits: Limits) -> list[dict]:
    """OpenAI ``tools`` -> ChatGLM3 schemas ``{"name", "description", "parameters"}``; [] without tools."""
    tools, choice = body.get("tools"), body.get("tool_choice", "auto")
    if choice not in ("auto", "none"):
        raise APIError(400, f"tool_choice {choice!r} is not supported; use 'auto' (the model decides) or 'none'",
                       "tool_choice", "unsupported_value")
    if tools is None or tools == []:
        return []
    if not isinstance(tools, list) or len(tools) > limits.max_tools:
        raise APIError(400, f"'tools' must be a list of at most {limits.max_tools} tools", "tools")
    schemas = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(name, str):
            raise APIError(400, f"tools[{index}] must be {{'type': 'function', 'function': {{'name': ...}}}}",
                           f"tools[{index}]")
        if not name or len(name) > 64 or not all(c.isalnum() or c in "_-" for c in name):
            raise APIError(400, f"tools[{index}].function.name {name!r} must be 1-64 letters, digits, _ or -",
                           f"tools[{index}].function.name")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise APIError(400, f"tools[{index}].function.parameters must be a JSON schema object",
                           f"tools[{index}].function.parameters")
        schemas.append({"name": name, "description": str(function.get("description", "")), "parameters": parameters})
    return [] if choice == "none" else schemas


def _assistant_items(message: dict, index: int, answers: dict[str, str]) -> list[dict]:
    """One OpenAI assistant message -> ChatGLM3 items: its text, then each call followed by its observation."""
    where = f"messages[{index}]"
    text = _text_content(message.get("content"), f"{where}.content", allow_none=True)
    items = [{"role": "assistant", "content": text}] if text or not message.get("tool_calls") else []
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise APIError(400, f"{where}.tool_calls must be a list", f"{where}.tool_calls")
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or "id" not in call:
            raise APIError(400, f"{where}.tool_calls[{j}] must have 'id' and 'function': {{'name', 'arguments'}}",
                           f"{where}.tool_calls[{j}]")
        try:
            arguments = json.loads(function.get("arguments") or "{}")
            code = format_tool_call(arguments)
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise APIError(400, f"{where}.tool_calls[{j}].function.arguments must be a JSON object of keyword "
                           f"arguments: {error}", f"{where}.tool_calls[{j}].function.arguments") from None
        items.append({"role": "assistant", "metadata": function["name"], "content": code})
        if call["id"] in answers:
            items.append({"role": "observation", "content": answers.pop(call["id"])})
    return items


def _collect_tool_answers(messages: list, start: int) -> tuple[dict[str, str], int]:
    """The ``tool`` messages right after position ``start - 1``: ``{tool_call_id: content}`` and where they end."""
    answers, index = {}, start
    while index < len(messages) and isinstance(messages[index], dict) and messages[index].get("role") == "tool":
        message = messages[index]
        if not isinstance(message.get("tool_call_id"), str):
            raise APIError(400, f"messages[{index}] (tool) needs the 'tool_call_id' of the call it answers",
                           f"messages[{index}].tool_call_id")
        answers[message["tool_call_id"]] = _text_content(message.get("content"), f"messages[{index}].content")
        index += 1
    return answers, index


def to_chatglm_history(messages: Any, tools: list[dict]) -> list[dict]:
    """OpenAI ``messages`` (+ tool schemas) -> ChatGLM3 history items, tools system message first."""
    items = [tools_system_message(tools)] if tools else []
    index = 0
    while index < len(messages):
        message = messages[index]
        where = f"messages[{index}]"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise APIError(400, f"{where} must be an object with a 'role'", where)
        role = message["role"]
        if role in ("system", "developer", "user"):
            items.append({"role": "user" if role == "user" else "system",
                          "content": _text_content(message.get("content"), f"{where}.content")})
        elif role == "assistant":
            answers, after = _collect_tool_answers(messages, index + 1)
            items += _assistant_items(message, index, answers)
            if answers:
                unknown = next(iter(answers))
                raise APIError(400, f"a tool message answers tool_call_id {unknown!r}, which the assistant message "
                               f"before it did not make", "messages")
            index = after
            continue
        elif role == "tool":
            raise APIError(400, f"{where} is a tool message that does not follow an assistant message with "
                           f"tool_calls; a tool message answers a call", where)
        else:
            raise APIError(400, f"{where}.role {role!r} is unknown; use system, developer, user, assistant or tool",
                           f"{where}.role")
        index += 1
    return items


def _check_size(body: dict, messages: list, limits: Limits) -> None:
    if len(messages) > limits.max_messages:
        raise APIError(400, f"{len(messages)} messages are more than the {limits.max_messages} this server takes",
                       "messages")
    chars = len(json.dumps(messages, ensure_ascii=False)) + len(json.dumps(body.get("tools") or [], ensure_ascii=False))
    if chars > limits.max_chars:
        raise APIError(400, f"the messages and tools hold {chars} characters, more than the {limits.max_chars} "
                       f"this server takes", "messages", "string_above_max_length")


def _max_tokens(body: dict) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise APIError(400, f"'{name}' must be an integer >= 1, got {value!r}", name, "invalid_value")
            return value
    return None


def _stop_strings(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value if value is not None else []
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and 0 < len(s) <= 200 for s in stops):
        raise APIError(400, "'stop' must be a string or a list of up to 4 non-empty strings", "stop")
    return stops


def _refuse_unsupported(body: dict) -> None:
    if body.get("n", 1) != 1:
        raise APIError(400, "only n=1 is supported: ask again for another reply", "n", "unsupported_value")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise APIError(400, "logprobs are not supported by this server", "logprobs", "unsupported_value")
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type") != "text"):
        raise APIError(400, "only response_format {'type': 'text'} is supported", "response_format", "unsupported_value")


def parse_chat_request(body: Any, limits: Limits = Limits()) -> ChatRequest:
    """Check a Chat Completions request body and map it to ChatGLM3 terms; ``APIError`` says what is wrong."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list of messages, e.g. "
                       "[{'role': 'user', 'content': '你好'}]", "messages")
    _check_size(body, messages, limits)
    _refuse_unsupported(body)
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise APIError(400, "'stream_options' must be an object", "stream_options")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise APIError(400, f"'seed' must be an integer, got {seed!r}", "seed")
    tools = _tool_schemas(body, limits)
    items = to_chatglm_history(messages, tools)
    last = items[-1]
    if last["role"] not in ("user", "observation"):
        raise APIError(400, "the last message must be a user message or a tool result; the model answers it",
                       "messages")
    return ChatRequest(history=items[:-1], query=last["content"], role=last["role"], tools=tools,
                       max_tokens=_max_tokens(body), temperature=_number(body, "temperature", 0, 2, CHATGLM3_TEMPERATURE),
                       top_p=_number(body, "top_p", 0, 1, CHATGLM3_TOP_P), seed=seed,
                       stop=_stop_strings(body.get("stop")), stream=bool(body.get("stream")),
                       include_usage=bool(stream_options.get("include_usage")))


# --- the reply: text or a tool call, decided by the metadata line --------------------------------------
class ReplyParser:
    """Turn the decoded pieces of a reply into events, the same way for streamed and whole replies.

    ``push(piece)`` and ``finish()`` return lists of events: ``("text", str)``,
    ``("call", name)`` (once the metadata line names an offered tool) and ``("arguments", str)``.
    The metadata line is held back until it ends (``"\\n"``) or can no longer be a tool's name.
    Text is stripped at both ends (as ChatGLM3's ``process_response`` does), so trailing
    whitespace and anything that could begin a ``stop`` string are held back; ``stopped``
    becomes True once a stop string appears.
    """

    def __init__(self, tool_names: list[str], stop: list[str]):
        self.tool_names, self.stop = tool_names, stop
        self.mode = "metadata"           # then "text" or "call"
        self.buffer = ""                 # the metadata line so far / text held back / the call's code
        self.started = False             # text: has a non-space character been shown yet
        self.stopped = False

    def push(self, piece: str) -> list[tuple[str, str]]:
        if self.stopped:
            return []
        self.buffer += piece
        if self.mode == "metadata":
            return self._read_metadata()
        if self.mode == "call":
            return []
        return self._release_text(final=False)

    def _read_metadata(self) -> list[tuple[str, str]]:
        line, newline, rest = self.buffer.partition("\n")
        name = line.strip()
        if newline and name in self.tool_names:
            self.mode, self.buffer = "call", rest
            return [("call", name)]
        if newline and not name:
            self.mode, self.buffer = "text", rest
            return self._release_text(final=False)
        if newline or (name and not any(tool.startswith(name) for tool in self.tool_names)) or len(line) > 80:
            self.mode = "text"           # not ChatGLM3's metadata: the whole reply is text
            return self._release_text(final=False)
        return []

    def _release_text(self, final: bool) -> list[tuple[str, str]]:
        if not self.started:
            self.buffer = self.buffer.lstrip()
            self.started = bool(self.buffer)
        text, end = self.buffer, len(self.buffer)
        hits = [text.find(s) for s in self.stop if s in text]
        if hits:
            end, self.stopped = min(hits), True
        if self.stopped or final:
            self.buffer = ""
            released = text[:end].rstrip()
        else:
            end = min(end, releasable_length(text, self.stop))
            end = len(text[:end].rstrip())
            released, self.buffer = text[:end], text[end:]
        return [("text", released)] if released else []

    def finish(self) -> list[tuple[str, str]]:
        """Events for the end of the reply: the held-back text, or the call's arguments."""
        if self.mode == "call":
            try:
                arguments = json.dumps(parse_tool_call(self.buffer), ensure_ascii=False)
            except ToolCallError:
                arguments = self.buffer.strip()
            return [("arguments", arguments)]
        if self.stopped:
            return []
        self.mode = "text"
        return self._release_text(final=True)


def releasable_length(text: str, stops: list[str]) -> int:
    """How much of ``text`` may be shown: all but the longest tail that could begin a stop string.

    >>> releasable_length("您好，我是客", ["客服"])      # "客" may be the start of "客服"
    5
    """
    for cut in range(max((len(s) for s in stops), default=1) - 1, 0, -1):
        if cut <= len(text) and any(s.startswith(text[-cut:]) for s in stops):
            return len(text) - cut
    return len(text)


def sse(data: dict | str) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n"


def tool_call_object(name: str, arguments: str | None = None) -> dict:
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": name, "arguments": arguments if arguments is not None else ""}}
