"""Special tokens and the ChatGLM3 chat layout, shared by every tokenizer of the course.

Taught in lesson 01 (分词 Tokenization). ChatGLM3 appends nine special tokens right after
its ordinary vocabulary (ids 64789..64797 in the real model) and builds a chat prompt from
them: ``[gMASK] sop``, then for each message ``<|role|>`` + encode(metadata + "\\n") +
encode(content), and finally ``<|assistant|>``. ``ChatTokenizerBase`` holds that layout once;
a tokenizer only says how it encodes and decodes one piece of ordinary text
(``encode_ordinary``, ``decode_ordinary``, ``piece_bytes``), so the course's byte-level BPE
(``glm3_teach.tokenizer``) and the real SentencePiece model (``glm3_teach.chatglm3_tokenizer``)
build prompts with the same code.

Plain text never produces a special id: ``encode("<|user|>")`` gives the ordinary pieces of
those eight characters, so a user cannot forge a role marker (prompt injection). Trusted text
may opt in with ``allowed_special``.

What it leaves out: ChatGLM3's ``batch_encode_plus`` return value (attention mask, position
ids, left padding); lesson 06 batches ids itself. Reply parsing (``process_response``) and
tool calls belong to lessons 08 and 09.
"""

from __future__ import annotations

import json
import operator
import re
from typing import Any, Collection, Iterable

# ChatGLM3's nine special tokens, in the order of their ids (64789..64797 in the real model).
CHATGLM3_SPECIAL_TOKENS = ("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop",
                           "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
ROLES = ("system", "user", "assistant", "observation")
_MESSAGE_KEYS = {"role", "content", "metadata", "tools"}


def role_token(role: str) -> str:
    """The special token that opens a message: ``"user"`` -> ``"<|user|>"``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; a ChatGLM3 message has one of the roles {', '.join(ROLES)}")
    return f"<|{role}|>"


def validate_history(history: Any) -> list[dict]:
    """Check a ChatGLM3 history and return it as a list of dicts; raise a clear error if malformed.

    Each item is ``{"role", "content", "metadata"?, "tools"?}``: ``role`` one of ``ROLES``,
    ``content`` and ``metadata`` strings, ``tools`` (a system message's tool list) anything
    ``json.dumps`` accepts. An observation (a tool's result) must follow an assistant turn.

    >>> validate_history([{"role": "user", "content": "你好"}])
    [{'role': 'user', 'content': '你好'}]
    """
    if history is None:
        return []
    if isinstance(history, (str, bytes, dict)) or not isinstance(history, Iterable):
        raise TypeError(f"history must be a list of message dicts such as "
                        f"[{{'role': 'user', 'content': '你好'}}], got {type(history).__name__}")
    history = list(history)
    for index, message in enumerate(history):
        where = f"history[{index}]"
        if not isinstance(message, dict):
            raise TypeError(f"{where} must be a dict with 'role' and 'content', got {type(message).__name__} {message!r}")
        unknown = set(message) - _MESSAGE_KEYS
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}; a message has 'role', 'content' "
                             f"and optionally 'metadata' and 'tools'")
        if "role" not in message:
            raise ValueError(f"{where} has no 'role'; add one of {', '.join(ROLES)}")
        role_token(message["role"])
        if "content" not in message:
            raise ValueError(f"{where} ({message['role']}) has no 'content'; add the message text "
                             f"(an empty string is allowed)")
        for key in ("content", "metadata"):
            if key in message and not isinstance(message[key], str):
                raise TypeError(f"{where}['{key}'] must be a str, got {type(message[key]).__name__}")
        if "tools" in message and message["role"] != "system":
            raise ValueError(f"{where} is a {message['role']} message with 'tools'; tools are declared "
                             f"in a system message")
        _check_observation_follows_assistant(history[index - 1]["role"] if index else None, message["role"], where)
    return history


def _check_observation_follows_assistant(previous_role: str | None, role: str, where: str) -> None:
    if role == "observation" and previous_role != "assistant":
        raise ValueError(f"{where} is an observation (a tool's result) but follows "
                         f"{'nothing' if previous_role is None else 'a ' + previous_role + ' message'}; "
                         f"an observation must come right after the assistant turn that called the tool")


class ChatTokenizerBase:
    """Special tokens, encode/decode around them, ``build_chat_input`` and streaming decode.

    A subclass sets ``special_tokens`` (token text -> id, ids right after the ordinary
    vocabulary) and implements ``encode_ordinary(text)``, ``decode_ordinary(ids)`` and
    ``piece_bytes(token_id, at_segment_start)``.
    """

    special_tokens: dict[str, int]
    eos_token: str
    pad_token: str

    # --- what a subclass provides -----------------------------------------------------
    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` treated as plain text (never a special id)."""
        raise NotImplementedError

    def decode_ordinary(self, ids: list[int]) -> str:
        """Text of a run of ordinary (non-special) ids."""
        raise NotImplementedError

    def piece_bytes(self, token_id: int, at_segment_start: bool) -> tuple[bytes, bool]:
        """UTF-8 bytes one ordinary id adds when decoded, and whether the segment start is still ahead."""
        raise NotImplementedError

    @property
    def ordinary_vocab_size(self) -> int:
        raise NotImplementedError

    # --- special tokens ---------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Ordinary plus special tokens: the number of rows the embedding needs."""
        return self.ordinary_vocab_size + len(self.special_tokens)

    @property
    def special_ids(self) -> dict[int, str]:
        return {token_id: text for text, token_id in self.special_tokens.items()}

    def special_id(self, token: str) -> int:
        """Id of a special token such as ``"<|user|>"``; a clear error if this tokenizer lacks it."""
        if token not in self.special_tokens:
            raise KeyError(f"{token!r} is not a special token of this tokenizer; it has {list(self.special_tokens)}")
        return self.special_tokens[token]

    @property
    def eos_token_id(self) -> int:
        return self.special_id(self.eos_token)

    @property
    def pad_token_id(self) -> int:
        return self.special_id(self.pad_token)

    def check_ids(self, ids: Iterable[Any]) -> list[int]:
        """``ids`` as a list of Python ints, or a clear error for anything that is not a valid id."""
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"decode takes token ids, got {type(ids).__name__} {ids!r}; to get ids, call encode")
        dtype = str(getattr(ids, "dtype", ""))
        if "bool" in dtype or "float" in dtype:
            raise TypeError(f"token ids must be integers, got a {dtype} array (a mask or probabilities?); "
                            f"pass the ids, e.g. output[0].tolist()")
        checked = []
        for position, token_id in enumerate(ids):
            try:
                if isinstance(token_id, bool) or "bool" in str(getattr(token_id, "dtype", "")):
                    raise TypeError
                token_id = operator.index(token_id)
            except TypeError:
                raise TypeError(f"token id at position {position} is {token_id!r} ({type(token_id).__name__}); "
                                f"ids must be integers") from None
            if not 0 <= token_id < self.vocab_size:
                raise ValueError(f"token id {token_id} at position {position} is out of range: this tokenizer has "
                                 f"ids 0..{self.vocab_size - 1} (did the model's padded vocabulary produce it?)")
            checked.append(token_id)
        return checked

    # --- encode and decode ------------------------------------------------------------
    def _allowed_pattern(self, allowed_special: Collection[str] | str) -> re.Pattern | None:
        if allowed_special == "all":
            allowed_special = list(self.special_tokens)
        if isinstance(allowed_special, str):
            raise ValueError(f"allowed_special must be 'all' or a collection of special tokens, got {allowed_special!r}")
        unknown = [token for token in allowed_special if token not in self.special_tokens]
        if unknown:
            raise ValueError(f"allowed_special names {unknown}, which are not special tokens of this tokenizer; "
                             f"choose from {list(self.special_tokens)}")
        if not allowed_special:
            return None
        longest_first = sorted(allowed_special, key=len, reverse=True)
        return re.compile("|".join(re.escape(token) for token in longest_first))

    def encode(self, text: str, add_special_tokens: bool = False,
               allowed_special: Collection[str] | str = ()) -> list[int]:
        """Ids of ``text``. Special-token text stays plain text unless listed in ``allowed_special``.

        ``add_special_tokens=True`` puts ChatGLM3's prefix ``[gMASK] sop`` in front.
        ``allowed_special`` ("all" or a list such as ``["<|user|>"]``) is for trusted text only:
        with it, the listed tokens in ``text`` become their special ids.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}; decode bytes with .decode('utf-8') first")
        prefix = [self.special_id("[gMASK]"), self.special_id("sop")] if add_special_tokens else []
        pattern = self._allowed_pattern(allowed_special)
        if pattern is None:
            return prefix + self.encode_ordinary(text)
        ids, start = prefix, 0
        for match in pattern.finditer(text):
            if match.start() > start:
                ids += self.encode_ordinary(text[start:match.start()])
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        if start < len(text):
            ids += self.encode_ordinary(text[start:])
        return ids

    def decode(self, ids: Iterable[Any]) -> str:
        """Text of ``ids``. Special ids become their text; a broken UTF-8 sequence becomes U+FFFD.

        Raises only for something that is not a token id of this tokenizer.
        """
        special_ids = self.special_ids
        text, run = [], []
        for token_id in self.check_ids(ids):
            if token_id in special_ids:
                if run:
                    text.append(self.decode_ordinary(run))
                    run = []
                text.append(special_ids[token_id])
            else:
                run.append(token_id)
        if run:
            text.append(self.decode_ordinary(run))
        return "".join(text)

    def stream_decoder(self):
        """A fresh ``StreamDecoder``: feed ids one at a time, get only whole characters back."""
        from glm3_teach.stream_decoder import StreamDecoder

        return StreamDecoder(self)

    # --- the ChatGLM3 chat layout -----------------------------------------------------
    def build_single_message(self, role: str, metadata: str, content: str) -> list[int]:
        """``<|role|>`` + encode(metadata + "\\n") + encode(content), as ChatGLM3 builds one message."""
        if not isinstance(metadata, str) or not isinstance(content, str):
            raise TypeError(f"metadata and content must be str, got {type(metadata).__name__} and {type(content).__name__}")
        return [self.special_id(role_token(role))] + self.encode_ordinary(metadata + "\n") + self.encode_ordinary(content)

    def build_chat_input(self, query: str, history: Iterable[dict] | None = None, role: str = "user") -> list[int]:
        """The ids ChatGLM3 feeds the model for ``query`` after ``history``, ending with ``<|assistant|>``.

        ``[gMASK] sop``, then each history message, then the query as a message of ``role``
        (metadata ""), then ``<|assistant|>`` so the model writes the reply. A system message
        with ``tools`` gets ``"\\n" + json.dumps(tools, indent=4, ensure_ascii=False)`` after its content.
        """
        history = validate_history(history)
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        role_token(role)
        _check_observation_follows_assistant(history[-1]["role"] if history else None, role, "the query")
        ids = [self.special_id("[gMASK]"), self.special_id("sop")]
        for message in history:
            content = message["content"]
            if message["role"] == "system" and "tools" in message:
                content = content + "\n" + _tools_json(message["tools"])
            ids += self.build_single_message(message["role"], message.get("metadata", ""), content)
        ids += self.build_single_message(role, "", query)
        return ids + [self.special_id("<|assistant|>")]


def _tools_json(tools: Any) -> str:
    try:
        return json.dumps(tools, indent=4, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:  # an object, a cycle, or NaN/inf (not JSON)
        raise TypeError(f"a system message's 'tools' must be JSON data (dicts, lists, strings, finite numbers, "
                        f"no cycles): {error}") from None


def utf8_or_explain(chunk: str, text: str | None = None) -> bytes:
    """``chunk`` in UTF-8; a lone surrogate (which UTF-8 cannot encode) is a ``ValueError`` saying where and why."""
    try:
        return chunk.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = chunk[error.start]
        where = (text if text is not None else chunk).find(bad)
        raise ValueError(f"the text holds a lone surrogate U+{ord(bad):04X} at position {where}, which "
                         f"UTF-8 cannot encode; it usually comes from decoding bytes with errors='surrogateescape' "
                         f"or from a broken JSON escape; remove it or decode the source with errors='replace'") from None
