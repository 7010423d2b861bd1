"""UTF-8-safe streaming decode: turn ids into text one id at a time, whole characters only.

Taught in lesson 01 (分词 Tokenization) and used again by lesson 07 (streaming text). A
Chinese character is 3 UTF-8 bytes and a byte-level token may hold only one or two of them,
so decoding each new id on its own prints "�" in the middle of a word. ``StreamDecoder``
keeps the bytes of an unfinished character in Python's incremental UTF-8 decoder and emits
the character once its last byte arrives. What it emits, joined, equals
``tokenizer.decode(all_ids)`` exactly.

What it leaves out: holding back text for stop strings (lesson 07 does that on top).
"""

from __future__ import annotations

import codecs
from typing import Any, Iterable

PER_BYTE_ERRORS = "glm3_teach.replace_per_byte"


def _replace_per_byte(error: UnicodeDecodeError) -> tuple[str, int]:
    """One U+FFFD per invalid byte, the way SentencePiece decodes broken byte pieces."""
    return "\ufffd" * (error.end - error.start), error.end


codecs.register_error(PER_BYTE_ERRORS, _replace_per_byte)


class StreamDecoder:
    """Feed ids with ``push``; each call returns the text that is now complete (maybe "").

    >>> from glm3_teach.tokenizer import BPETokenizer
    >>> tok = BPETokenizer([])                # bytes only: 茶 is the 3 ids 232, 140, 182
    >>> stream = tok.stream_decoder()
    >>> [stream.push(i) for i in [232, 140, 182]]
    ['', '', '茶']
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._special = tokenizer.special_ids
        errors = getattr(tokenizer, "utf8_errors", "replace")
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors=errors)
        self._segment_start = True

    def push(self, token_id: int) -> str:
        """Add one id; return the characters it completes."""
        (token_id,) = self.tokenizer.check_ids([token_id])
        if token_id in self._special:
            text = self.flush()
            return text + self._special[token_id]
        data, self._segment_start = self.tokenizer.piece_bytes(token_id, self._segment_start)
        return self._utf8.decode(data)

    def push_many(self, ids: Iterable[int]) -> str:
        """Add several ids; return the characters they complete."""
        return "".join(self.push(token_id) for token_id in ids)

    def flush(self) -> str:
        """End the stream (or a segment): bytes of an unfinished character become U+FFFD."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        self._segment_start = True
        return text
