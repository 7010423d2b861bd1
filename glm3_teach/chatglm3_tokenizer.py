"""The real ChatGLM3-6B tokenizer, read from its SentencePiece ``tokenizer.model``.

Taught in lesson 01 (分词 Tokenization), beside the course's own BPE. The model file holds
64789 pieces (0 ``<unk>``, 1 ``<s>``, 2 ``</s>``, 3..258 the bytes ``<0x00>``..``<0xFF>`` for
byte fallback, then subwords such as ``▁你``); ChatGLM3 appends its nine special tokens as ids
64789..64797, so ``vocab_size`` is 64798. SentencePiece adds a "dummy prefix" ``▁`` (a space)
in front of every piece of text it encodes on its own, which is why each message of a chat
prompt starts with ``▁`` (id 30910 before a newline). Everything else (special tokens, the chat
layout, streaming decode) is ``glm3_teach.chat_format``'s, shared with the course tokenizer.

Decoding follows ChatGLM3's ``SPTokenizer.decode``: special ids become their text and each run
of other ids between them is decoded by SentencePiece on its own (so its leading ``▁`` is
dropped). What it leaves out: the Hugging Face wrapper (``batch_encode_plus``, padding,
``apply_chat_template``); the model file is never copied into the course.
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece

from glm3_teach.chat_format import CHATGLM3_SPECIAL_TOKENS, ChatTokenizerBase, utf8_or_explain
from glm3_teach.stream_decoder import PER_BYTE_ERRORS

TOKENIZER_ENV_VAR = "GLM3_CHATGLM3_TOKENIZER"


class ChatGLM3Tokenizer(ChatTokenizerBase):
    """ChatGLM3-6B's tokenizer with the course's interface.

    >>> tok = ChatGLM3Tokenizer.from_file(find_reference_file("tokenizer.model", TOKENIZER_ENV_VAR))  # doctest: +SKIP
    >>> tok.build_chat_input("你好")  # doctest: +SKIP
    [64790, 64792, 64795, 30910, 13, 36474, 54591, 64796]
    """

    utf8_errors = PER_BYTE_ERRORS  # SentencePiece writes one U+FFFD per broken byte
    eos_token, pad_token = "</s>", "<unk>"

    def __init__(self, processor: sentencepiece.SentencePieceProcessor):
        self.sp = processor
        self.special_tokens = {token: self.sp.vocab_size() + k for k, token in enumerate(CHATGLM3_SPECIAL_TOKENS)}

    @classmethod
    def from_file(cls, path: str | Path) -> "ChatGLM3Tokenizer":
        """Load ChatGLM3's ``tokenizer.model`` (a SentencePiece model file)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.model at {path}; point {TOKENIZER_ENV_VAR} at ChatGLM3-6B's "
                                    f"tokenizer.model or put it in ../shared/reference/chatglm3/")
        processor = sentencepiece.SentencePieceProcessor()
        try:
            processor.Load(str(path))
        except (RuntimeError, OSError) as error:
            raise ValueError(f"{path} is not a SentencePiece model ({error}); expected ChatGLM3-6B's "
                             f"tokenizer.model") from None
        return cls(processor)

    @property
    def ordinary_vocab_size(self) -> int:
        return self.sp.vocab_size()

    @property
    def eos_token_id(self) -> int:
        return self.sp.eos_id()

    @property
    def pad_token_id(self) -> int:
        return self.sp.unk_id()

    def encode(self, text: str, add_special_tokens: bool = True, allowed_special=()) -> list[int]:
        """Ids of ``text``, by default with ChatGLM3's prefix ``[gMASK] sop`` (64790, 64792) in front."""
        return super().encode(text, add_special_tokens=add_special_tokens, allowed_special=allowed_special)

    def encode_ordinary(self, text: str) -> list[int]:
        utf8_or_explain(text)  # SentencePiece's own error for a lone surrogate is opaque
        return self.sp.encode(text)

    def decode_ordinary(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def piece_bytes(self, token_id: int, at_segment_start: bool) -> tuple[bytes, bool]:
        """Bytes of one piece as ``SentencePiece.decode`` writes them (see the module docstring)."""
        if self.sp.is_control(token_id):  # <s>, </s>: nothing, and the segment has not started
            return b"", at_segment_start
        if self.sp.is_unknown(token_id):
            return " \u2047 ".encode("utf-8"), False
        piece = self.sp.id_to_piece(token_id)
        if self.sp.is_byte(token_id):  # "<0xE4>"
            return bytes([int(piece[3:5], 16)]), False
        if at_segment_start and piece.startswith("\u2581"):
            piece = piece[1:]  # the dummy prefix of the segment's first piece is not written
        return piece.replace("\u2581", " ").encode("utf-8"), False

    def token_text(self, token_id: int) -> str:
        """The piece one id stands for (``▁你``, ``<0x0A>``) or the special token's text."""
        (token_id,) = self.check_ids([token_id])
        return self.special_ids.get(token_id) or self.sp.id_to_piece(token_id)
