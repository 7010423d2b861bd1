"""The hyper-parameters of a ChatGLM3 model: ``ChatGLMConfig``, under the field names of its ``config.json``.

Taught in lesson 05 (组装模型 The whole model), where the config's fields are read off a real
``config.json``; lessons 03 and 04 build single layers from it. It is the bottom floor of the
package: ``attention``, ``layers`` and ``model`` import it, and it imports none of them (only
``glm3_teach.errors``), so the modules form no import cycle. ``glm3_teach.model`` re-exports it.

What it leaves out: the fields of other model types (``model_type`` must be ``"chatglm"``);
behaviour flags ChatGLM3 sets one way are refused the other way (see ``_UNSUPPORTED``).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glm3_teach.errors import check_field_types, read_json

# The attention paths ``SelfAttention`` knows (``config.attention_impl``, lesson 03).
ATTENTION_IMPLS = ("fused", "explicit")

# Fields whose own checks (prefix, quantization) come with their lessons' messages.
_OWN_CHECKS = ("pre_seq_len", "prefix_projection", "quantization_bit", "quantization_scheme", "quantization_group_size")
# Keys of a real config.json that describe the file, not the network.
_METADATA_KEYS = {"_name_or_path", "architectures", "auto_map", "model_type", "transformers_version"}

# Weight-only quantization schemes (glm3_teach.quant, lesson 11): ChatGLM3's per-row one and group-wise int4.
QUANTIZATION_SCHEMES = ("chatglm", "group")
# config.json keys (kept in ``extra``) that record the group scheme; ChatGLM3's own scheme writes neither.
QUANTIZATION_EXTRA_KEYS = ("quantization_scheme", "quantization_group_size")

# Behaviour flags ChatGLM3 sets one way; the other way is a different network we do not build.
_UNSUPPORTED = {
    "rmsnorm": (True, "LayerNorm instead of RMSNorm"),
    "apply_residual_connection_post_layernorm": (False, "the residual taken after the layer norm"),
    "post_layer_norm": (True, "no final layer norm"),
    "fp32_residual_connection": (False, "an fp32 residual stream"),
    "tie_word_embeddings": (False, "an output layer tied to the embedding"),
}


@dataclass
class ChatGLMConfig:
    """The hyper-parameters of a ChatGLM3 model, under the field names of its ``config.json``.

    The defaults are chatglm3-6b's (``ChatGLMConfig()`` equals ``ChatGLMConfig.chatglm3_6b()``),
    so a small model only names its sizes::

        ChatGLMConfig(num_layers=4, hidden_size=256, ffn_hidden_size=683, kv_channels=64,
                      num_attention_heads=4, multi_query_group_num=2, padded_vocab_size=4096,
                      seq_length=1024)

    ``kv_channels`` is the head dim; the attention projection is
    ``num_attention_heads * kv_channels`` wide and may differ from ``hidden_size``.
    ``attention_impl`` is this package's own switch (``"fused"`` or ``"explicit"``).
    Keys of a ``config.json`` that are not fields are kept in ``extra`` and written back.
    """

    num_layers: int = 28                   # GLM blocks
    hidden_size: int = 4096                # width of the residual stream
    ffn_hidden_size: int = 13696           # SwiGLU inner width (dense_h_to_4h makes twice this)
    kv_channels: int = 128                 # head dim
    num_attention_heads: int = 32          # query heads
    multi_query_attention: bool = True     # grouped-query attention on
    multi_query_group_num: int = 2         # KV groups when multi_query_attention
    padded_vocab_size: int = 65024         # rows of the embedding and output matrices
    seq_length: int = 8192                 # longest sequence (rope cache length)
    layernorm_epsilon: float = 1e-5        # RMSNorm eps
    rope_ratio: float = 1.0                # RoPE base = 10000 * rope_ratio
    add_qkv_bias: bool = True              # bias on query_key_value only
    add_bias_linear: bool = False          # bias on every other Linear
    hidden_dropout: float = 0.0            # dropout on each sub-layer's output (training only)
    attention_dropout: float = 0.0         # dropout on attention probabilities (training only)
    rmsnorm: bool = True                   # must stay True
    apply_residual_connection_post_layernorm: bool = False  # must stay False
    post_layer_norm: bool = True           # must stay True
    fp32_residual_connection: bool = False  # must stay False
    tie_word_embeddings: bool = False      # must stay False
    quantization_bit: int = 0              # 0 = float weights; 8 or 4 = quantized block Linears (lesson 11)
    pre_seq_len: int | None = None         # P-Tuning v2 virtual tokens (lesson 10); None = no prefix
    prefix_projection: bool = False        # P-Tuning v2: an MLP between the prefix embedding and the K/V
    apply_query_key_layer_scaling: bool = True  # no effect on the maths (the factor cancels)
    attention_softmax_in_fp32: bool = True  # the explicit path always uses an fp32 softmax
    bias_dropout_fusion: bool = True       # a kernel-fusion hint; no effect on the maths
    original_rope: bool = True             # stored by ChatGLM3 but never read
    classifier_dropout: float | None = None  # for the classification head we do not build
    use_cache: bool = True                 # generation default
    eos_token_id: int = 2
    pad_token_id: int = 0
    torch_dtype: str | None = None         # dtype the weights are stored in ("float16", ...)
    attention_impl: str = "fused"          # glm3_teach: "fused" (SDPA) or "explicit"
    extra: dict[str, Any] = field(default_factory=dict)  # config.json keys we keep but do not use

    def __post_init__(self) -> None:
        check_field_types(self, skip=_OWN_CHECKS)  # "1e-5" is not a number, "no" is not a bool
        for name in ("num_layers", "hidden_size", "ffn_hidden_size", "kv_channels", "num_attention_heads",
                     "multi_query_group_num", "padded_vocab_size", "seq_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ChatGLMConfig.{name} must be a positive int, got {value!r}")
        for name, (wanted, what) in _UNSUPPORTED.items():
            if getattr(self, name) != wanted:
                raise NotImplementedError(f"ChatGLMConfig.{name}={getattr(self, name)!r} asks for {what}, which "
                                          f"ChatGLM3 does not use and glm3_teach does not implement; "
                                          f"set {name}={wanted!r}")
        if self.num_attention_heads % self.num_kv_groups:
            raise ValueError(f"num_attention_heads={self.num_attention_heads} is not divisible by "
                             f"multi_query_group_num={self.num_kv_groups}: every KV group must serve the same "
                             f"number of query heads; pick a group count that divides the head count")
        if self.kv_channels % 4:
            raise ValueError(f"kv_channels={self.kv_channels} must be a multiple of 4: RoPE rotates the first half "
                             f"of each head in pairs")
        if not self.layernorm_epsilon > 0 or not self.rope_ratio > 0:
            raise ValueError(f"layernorm_epsilon and rope_ratio must be positive, got "
                             f"{self.layernorm_epsilon!r} and {self.rope_ratio!r}")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"ChatGLMConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")
        _check_prefix_config(self)
        _check_quantization_config(self)
        for name in ("eos_token_id", "pad_token_id"):
            if not 0 <= getattr(self, name) < self.padded_vocab_size:
                raise ValueError(f"ChatGLMConfig.{name}={getattr(self, name)} is outside the vocabulary "
                                 f"[0, padded_vocab_size={self.padded_vocab_size}); use the tokenizer's id")

    @property
    def quantization_scheme(self) -> str:
        """``"chatglm"`` (ChatGLM3's per-row scales, the default) or ``"group"`` (kept in ``extra``, lesson 11)."""
        return self.extra.get("quantization_scheme", "chatglm")

    @property
    def quantization_group_size(self) -> int | None:
        """Inputs per scale with the ``"group"`` scheme (kept in ``extra``); ``None`` otherwise."""
        return self.extra.get("quantization_group_size")

    @property
    def num_kv_groups(self) -> int:
        """KV heads: ``multi_query_group_num`` with GQA, else one per query head."""
        return self.multi_query_group_num if self.multi_query_attention else self.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.kv_channels

    @classmethod
    def chatglm3_6b(cls, **overrides: Any) -> ChatGLMConfig:
        """The config of THUDM/chatglm3-6b (its ``config.json``), with optional overrides."""
        sizes = dict(num_layers=28, hidden_size=4096, ffn_hidden_size=13696, kv_channels=128, num_attention_heads=32,
                     multi_query_attention=True, multi_query_group_num=2, padded_vocab_size=65024, seq_length=8192,
                     torch_dtype="float16")
        return cls(**{**sizes, **overrides})

    @classmethod
    def course(cls, **overrides: Any) -> ChatGLMConfig:
        """The course model's config (the shipped base checkpoint, ``configs/base.toml``), with optional overrides.

        ChatGLM3's shape at a small scale: 4 blocks of width 256, 4 query heads of 64 sharing 2
        key/value groups, SwiGLU width 683 (about 8/3 x 256), the course tokenizer's 4096 ids
        and its ``</s>`` (4094) and ``<pad>`` (4095), 256 positions.
        """
        sizes = dict(num_layers=4, hidden_size=256, ffn_hidden_size=683, kv_channels=64, num_attention_heads=4,
                     multi_query_group_num=2, padded_vocab_size=4096, seq_length=256,
                     eos_token_id=4094, pad_token_id=4095)
        return cls(**{**sizes, **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ChatGLMConfig:
        """Build from a ``config.json``'s dict; unknown keys go to ``extra`` (with a warning
        unless they only describe the file, like ``auto_map`` or ``transformers_version``)."""
        if not isinstance(values, dict):
            raise ValueError(f"a model config must be a JSON object of ChatGLMConfig keys, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        extra = {**values.get("extra", {}), **{k: v for k, v in values.items() if k not in names and k != "extra"}}
        model_type = extra.pop("model_type", "chatglm")  # to_dict writes it back
        if model_type != "chatglm":
            raise ValueError(f"this config is for model_type={model_type!r}, not 'chatglm'; it cannot build ChatGLM3")
        unused = sorted(set(extra) - _METADATA_KEYS - set(QUANTIZATION_EXTRA_KEYS))
        if unused:
            warnings.warn(f"config keys {unused} are not used by glm3_teach; they are kept in config.extra")
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, path: str | Path) -> ChatGLMConfig:
        """Read a ``config.json`` (a file, or a folder holding one)."""
        path = Path(path)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}; pass a config.json or the folder that holds it")
        values = read_json(path, fix="restore it from the checkpoint it came with, or re-save the model")
        try:
            return cls.from_dict(values)
        except (ValueError, NotImplementedError) as error:
            raise type(error)(f"{path}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """A ``config.json``-style dict: ``model_type``, the fields, then the kept extra keys."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {"model_type": "chatglm", **values, **{k: v for k, v in self.extra.items() if k not in values}}

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text


def _check_quantization_config(config: ChatGLMConfig) -> None:
    """``quantization_bit`` is 0, 8 or 4; the scheme is known; a group size goes with scheme "group" (int4 only)."""
    bits, scheme, group = config.quantization_bit, config.quantization_scheme, config.quantization_group_size
    if bits not in (0, 4, 8) or isinstance(bits, bool):
        raise ValueError(f"ChatGLMConfig.quantization_bit must be 0 (float weights), 8 or 4, got {bits!r}")
    if scheme not in QUANTIZATION_SCHEMES:
        raise ValueError(f"ChatGLMConfig.quantization_scheme must be one of {QUANTIZATION_SCHEMES}, got {scheme!r}")
    if scheme == "group" and (bits != 4 or not isinstance(group, int) or isinstance(group, bool) or group < 2):
        raise ValueError(f"quantization_scheme='group' needs quantization_bit=4 and a quantization_group_size >= 2, "
                         f"got quantization_bit={bits!r}, quantization_group_size={group!r}")
    if scheme == "chatglm" and group is not None:
        raise ValueError(f"quantization_group_size={group!r} goes with quantization_scheme='group'; "
                         f"the 'chatglm' scheme has one scale per row")


def _check_prefix_config(config: ChatGLMConfig) -> None:
    """P-Tuning v2 settings: ``pre_seq_len`` is None or a positive int, ``prefix_projection`` a bool."""
    n = config.pre_seq_len
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"ChatGLMConfig.pre_seq_len must be None (no prefix) or a positive int (the number of "
                         f"P-Tuning v2 virtual tokens, ChatGLM3's default 128), got {n!r}")
    if not isinstance(config.prefix_projection, bool):
        raise ValueError(f"ChatGLMConfig.prefix_projection must be true or false, got {config.prefix_projection!r}")
