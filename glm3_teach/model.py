"""The whole ChatGLM3 model: config, embedding, 28 GLM blocks (in 6B), final norm, output layer.

Taught in lesson 05 (组装模型 The whole model). The module and parameter names are
Hugging Face's, so ``ChatGLMForCausalLM(config).state_dict()`` has exactly the keys of a
real ``chatglm3-6b`` checkpoint (200 tensors for the 6B config)::

    transformer.embedding.word_embeddings.weight
    transformer.rotary_pos_emb.inv_freq                 (buffer)
    transformer.encoder.layers.N.input_layernorm.weight
    transformer.encoder.layers.N.self_attention.query_key_value.{weight,bias}
    transformer.encoder.layers.N.self_attention.dense.weight
    transformer.encoder.layers.N.post_attention_layernorm.weight
    transformer.encoder.layers.N.mlp.dense_h_to_4h.weight
    transformer.encoder.layers.N.mlp.dense_4h_to_h.weight
    transformer.encoder.final_layernorm.weight
    transformer.output_layer.weight

The forward pass: ``word_embeddings(input_ids)`` (no scaling, no position embedding), the
rope cache indexed by ``position_ids``, ``num_layers`` pre-norm ``GLMBlock``s, the final
RMSNorm and the untied ``output_layer`` giving ``logits [batch, seq, padded_vocab_size]``.
Activations are batch-first here; the real code is sequence-first with the same numbers.

**Padding.** Batches are padded on the left (as ChatGLM3's tokenizer does) and each row's
real tokens start at position 0: without ``position_ids`` they are derived from
``attention_mask`` as ``cumsum - 1`` (pads get 0), else ``past, past+1, ...``.

**P-Tuning v2** (lesson 10): with ``pre_seq_len`` set, ``transformer.prefix_encoder`` holds
learned keys and values that enter every layer as the past KV cache (never rotated, seen by
every query; real tokens keep positions 0, 1, 2, ...), as ChatGLM3's ``get_prompt`` does.

What it leaves out: quantisation (lesson 11), ``return_last_logit``, the sequence-classification head, and generation (lesson 07).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import nn

from glm3_teach.attention import ATTENTION_IMPLS, KVCache, build_attention_mask, causal_mask
from glm3_teach.errors import check_field_types, read_json
from glm3_teach.layers import GLMBlock, RMSNorm
from glm3_teach.rope import RotaryEmbedding

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


def count_parameters(config: ChatGLMConfig) -> int:
    """Trainable parameters of ``ChatGLMForCausalLM(config)``, computed without building it.

    The ``inv_freq`` buffer is not a parameter and is not counted. chatglm3-6b: 6,243,584,000.
    """
    hidden, ffn, vocab = config.hidden_size, config.ffn_hidden_size, config.padded_vocab_size
    projection = config.num_attention_heads * config.kv_channels
    qkv_out = projection + 2 * config.num_kv_groups * config.kv_channels
    linear_bias = int(config.add_bias_linear)
    qkv = hidden * qkv_out + qkv_out * int(config.add_qkv_bias or config.add_bias_linear)
    dense = projection * hidden + hidden * linear_bias
    mlp = hidden * 2 * ffn + 2 * ffn * linear_bias + ffn * hidden + hidden * linear_bias
    per_layer = qkv + dense + mlp + 2 * hidden  # + two RMSNorm weights
    return vocab * hidden + config.num_layers * per_layer + hidden + vocab * hidden


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


def prefix_kv_size(config: ChatGLMConfig) -> int:
    """Values one virtual token holds: a key and a value for every layer and KV group,
    ``num_layers * kv_channels * num_kv_groups * 2`` (ChatGLM3-6B: 28 * 128 * 2 * 2 = 14,336)."""
    return config.num_layers * config.kv_channels * config.num_kv_groups * 2


class PrefixEncoder(nn.Module):
    """P-Tuning v2's trainable prefix (``transformer.prefix_encoder``), as in ChatGLM3.

    ``embedding``: ``nn.Embedding(pre_seq_len, kv_size)``, one row of keys and values per
    virtual token; with ``prefix_projection`` the rows pass through ``trans`` =
    ``Linear(kv_size, hidden_size), Tanh, Linear(hidden_size, kv_size)`` (keys ``trans.0``
    and ``trans.2``). ``prefix_tokens [batch, pre_seq_len] -> [batch, pre_seq_len, kv_size]``.
    Lesson 10 teaches it. Freshly built it has PyTorch's default initialisation, as ChatGLM3's.
    """

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        kv_size = prefix_kv_size(config)
        self.prefix_projection = config.prefix_projection
        self.embedding = nn.Embedding(config.pre_seq_len, kv_size)
        if self.prefix_projection:
            self.trans = nn.Sequential(nn.Linear(kv_size, config.hidden_size), nn.Tanh(),
                                       nn.Linear(config.hidden_size, kv_size))

    def forward(self, prefix_tokens: torch.Tensor) -> torch.Tensor:
        prefix = self.embedding(prefix_tokens)                 # [b, p, kv_size]
        return self.trans(prefix) if self.prefix_projection else prefix


@dataclass
class CausalLMOutput:
    """What ``ChatGLMForCausalLM.forward`` returns.

    ``logits``: ``[batch, seq, padded_vocab_size]`` in the model dtype.
    ``kv_cache``: with ``use_cache``, one ``(k, v)`` per layer, each
    ``[batch, num_kv_groups, past + seq, head_dim]`` (keys after RoPE); else ``None``.
    ``attentions``: with ``output_attentions``, one ``[batch, num_heads, seq, past + seq]``
    tensor of probabilities per layer; else ``None``.
    """

    logits: torch.Tensor
    kv_cache: list[KVCache] | None = None
    attentions: list[torch.Tensor] | None = None


class Embedding(nn.Module):
    """``input_ids [batch, seq] -> [batch, seq, hidden_size]``, a plain lookup (no scaling)."""

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, config.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids)


class GLMTransformer(nn.Module):
    """The stack of ``GLMBlock``s and the final RMSNorm (``transformer.encoder``)."""

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.layers = nn.ModuleList(GLMBlock(config) for _ in range(config.num_layers))
        self.final_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)


class ChatGLMModel(nn.Module):
    """Everything under ``transformer.``: embedding, rotary cache, encoder, output layer.

    With ``config.pre_seq_len`` (P-Tuning v2, lesson 10) it also holds ``prefix_encoder`` and,
    as ChatGLM3 does, freezes every other parameter: only the prefix trains.
    """

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.embedding = Embedding(config)
        self.rotary_pos_emb = RotaryEmbedding(config.kv_channels // 2, rope_ratio=config.rope_ratio)
        self.encoder = GLMTransformer(config)
        self.output_layer = nn.Linear(config.hidden_size, config.padded_vocab_size, bias=False)
        if config.pre_seq_len is not None:
            self.add_prefix_encoder(config)

    def add_prefix_encoder(self, config: ChatGLMConfig) -> None:
        """Freeze everything, then add a fresh ``prefix_encoder`` (on this model's device and dtype)."""
        for param in self.parameters():
            param.requires_grad_(False)
        weight = self.embedding.word_embeddings.weight
        self.prefix_encoder = PrefixEncoder(config).to(device=weight.device, dtype=weight.dtype)
        self.prefix_dropout = nn.Dropout(0.1)  # ChatGLM3's ``self.dropout``; active in training only
        self.prefix_encoder.train(self.training)
        self.prefix_dropout.train(self.training)
        self.pre_seq_len = config.pre_seq_len
        self.prefix_groups, self.prefix_head_dim = config.num_kv_groups, config.kv_channels

    def get_prompt(self, batch: int, dtype: torch.dtype) -> list[KVCache]:
        """The prefix as a KV cache: one ``(k, v)`` per layer, each ``[batch, groups, pre_seq_len, head_dim]``.

        The encoder output ``[batch, p, num_layers*2*groups*head_dim]`` is cut into
        ``num_layers*2`` slots; layer ``l`` takes slot ``2l`` as keys and ``2l+1`` as values.
        Keys are used as they are: RoPE never rotates them.
        """
        enc = self.prefix_encoder
        tokens = torch.arange(self.pre_seq_len, device=enc.embedding.weight.device).expand(batch, -1)  # [b, p]
        prefix = self.prefix_dropout(enc(tokens).to(dtype))                                           # [b, p, kv]
        slots = rearrange(prefix, "b p (l two g d) -> l two b g p d", two=2, g=self.prefix_groups,
                          d=self.prefix_head_dim)                                              # [L, 2, b, G, p, D]
        return [(layer[0], layer[1]) for layer in slots]                                              # per layer


class ChatGLMForCausalLM(nn.Module):
    """ChatGLM3 as a language model: ``input_ids -> logits`` (HF's ``ChatGLMForConditionalGeneration``).

    A new model gets ``init_weights`` (normal, std 0.02); the real ChatGLM3 is never
    initialised, only loaded (see ``glm3_teach.checkpoint.load_pretrained``).
    """

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.config = config
        self.transformer = ChatGLMModel(config)
        init_weights(self)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, kv_cache: list[KVCache] | None = None,
                use_cache: bool = False, output_attentions: bool = False) -> CausalLMOutput:
        """Logits for every position.

        ``input_ids``: ``[batch, seq]`` token ids in ``[0, padded_vocab_size)``.
        ``attention_mask``: ``[batch, past + seq]``, 1 = real token, 0 = pad (left padding),
        covering the cached tokens too; ``None`` means no padding.
        ``position_ids``: ``[batch, seq]`` (or ``[1, seq]``); default: from ``attention_mask``
        (real tokens count from 0) or ``past .. past+seq-1``.
        ``kv_cache``: the ``kv_cache`` of a previous call's output, to continue from it.
        ``use_cache``: return the updated cache. ``output_attentions``: return every layer's
        probabilities (forces the explicit attention path).
        """
        batch, seq_len, past_len = self._check_inputs(input_ids, attention_mask, kv_cache)
        position_ids = self._position_ids(batch, seq_len, past_len, attention_mask, position_ids, input_ids.device)
        rope_cache = self.transformer.rotary_pos_emb(self.config.seq_length)[position_ids]  # [b, s, rot/2, 2]
        kv_cache, attention_mask, prefix_len = self._add_prefix(kv_cache, attention_mask, batch)
        mask, is_causal = self._mask(attention_mask, seq_len, past_len + prefix_len, input_ids.device,
                                     open_pad_rows=prefix_len == 0)
        hidden_states = self.transformer.embedding(input_ids)                          # [b, s, hidden]
        new_cache, attentions = [], []
        for i, layer in enumerate(self.transformer.encoder.layers):
            hidden_states, layer_cache, probs = layer(hidden_states, rope_cache, mask, is_causal,
                                                      kv_cache[i] if kv_cache else None, use_cache, output_attentions)
            new_cache.append(layer_cache)
            attentions.append(probs)
        hidden_states = self.transformer.encoder.final_layernorm(hidden_states)
        logits = self.transformer.output_layer(hidden_states)                          # [b, s, vocab]
        return CausalLMOutput(logits, new_cache if use_cache else None, attentions if output_attentions else None)

    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      kv_cache: list[KVCache] | None) -> tuple[int, int, int]:
        """Raise a clear error for malformed inputs; return ``(batch, seq_len, past_len)``."""
        config = self.config
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.long, torch.int32):
            raise TypeError(f"input_ids must be an integer tensor (torch.long or int32), got {type(input_ids).__name__} "
                            f"{getattr(input_ids, 'dtype', '')}; build it with torch.tensor(ids, dtype=torch.long) "
                            f"or convert it with .long()")
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [batch, seq_len] with seq_len >= 1, got shape {list(input_ids.shape)}"
                             + ("; add the batch dim with input_ids[None]" if input_ids.dim() == 1 else ""))
        batch, seq_len = input_ids.shape
        bad = (input_ids < 0) | (input_ids >= config.padded_vocab_size)
        if bool(bad.any()):
            where = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f"input_ids[{where[0]}, {where[1]}] = {input_ids[where].item()} is outside the vocabulary "
                             f"[0, {config.padded_vocab_size}); was it encoded by a tokenizer with a larger "
                             f"vocabulary than padded_vocab_size?")
        past_len = self._check_kv_cache(kv_cache, batch)
        if past_len + seq_len > config.seq_length:
            raise ValueError(f"{past_len} cached + {seq_len} new tokens = {past_len + seq_len} exceeds "
                             f"seq_length={config.seq_length}; shorten the input (or start a new cache)")
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor):
                raise TypeError(f"attention_mask must be a tensor [batch, past + seq_len] of 0 and 1, got "
                                f"{type(attention_mask).__name__}; build it with torch.tensor(mask)")
            if tuple(attention_mask.shape) != (batch, past_len + seq_len):
                raise ValueError(f"attention_mask must be [batch, past + seq_len] = {[batch, past_len + seq_len]} "
                                 f"(it covers the cached tokens too), got {list(attention_mask.shape)}")
            if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
                raise ValueError("attention_mask must hold only 0 (pad) and 1 (real token)")
        return batch, seq_len, past_len

    def _add_prefix(self, kv_cache: list[KVCache] | None, attention_mask: torch.Tensor | None,
                    batch: int) -> tuple[list[KVCache] | None, torch.Tensor | None, int]:
        """P-Tuning v2 (lesson 10): ``(kv_cache, attention_mask, prefix_len)`` with the prefix in front.

        Without ``pre_seq_len`` nothing changes. Otherwise the prefix becomes the past keys and
        values when there is no cache yet (a cache from a previous call already starts with it),
        and ``attention_mask`` gets ``pre_seq_len`` ones in front: every query sees the prefix.
        """
        prefix_len = self.config.pre_seq_len or 0
        if not prefix_len:
            return kv_cache, attention_mask, 0
        if kv_cache is None:
            kv_cache = self.transformer.get_prompt(batch, self.transformer.embedding.word_embeddings.weight.dtype)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(batch, prefix_len), attention_mask], dim=1)
        return kv_cache, attention_mask, prefix_len

    def _check_kv_cache(self, kv_cache: list[KVCache] | None, batch: int) -> int:
        """The number of real tokens in a KV cache (those with positions), after checking its shape.

        With P-Tuning v2 the cache also starts with the ``pre_seq_len`` prefix slots, which
        have no position and are not counted.
        """
        if kv_cache is None:
            return 0
        config = self.config
        if len(kv_cache) != config.num_layers:
            raise ValueError(f"kv_cache has {len(kv_cache)} entries but the model has {config.num_layers} layers; "
                             f"pass the kv_cache returned by a previous call with use_cache=True")
        past_len = kv_cache[0][0].shape[2]
        want = [batch, config.num_kv_groups, past_len, config.kv_channels]
        for i, (k, v) in enumerate(kv_cache):
            if list(k.shape) != want or list(v.shape) != want:
                raise ValueError(f"kv_cache[{i}] holds k {list(k.shape)}, v {list(v.shape)}; expected both "
                                 f"[batch, num_kv_groups, past, head_dim] = {want}")
        prefix_len = config.pre_seq_len or 0
        if past_len < prefix_len:
            raise ValueError(f"kv_cache holds {past_len} entries but this P-Tuning model's cache starts with its "
                             f"pre_seq_len={prefix_len} prefix slots; pass the kv_cache returned by a previous call")
        return past_len - prefix_len

    def _position_ids(self, batch: int, seq_len: int, past_len: int, attention_mask: torch.Tensor | None,
                      position_ids: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """``[batch, seq_len]`` positions; real tokens of a left-padded row start at 0."""
        if position_ids is None:
            if attention_mask is not None:
                counted = attention_mask.long().cumsum(dim=-1) - 1           # [b, past + s]
                return counted.clamp(min=0)[:, past_len:]                    # pads before the text get 0
            return torch.arange(past_len, past_len + seq_len, device=device).expand(batch, seq_len)
        if not isinstance(position_ids, torch.Tensor) or position_ids.dtype not in (torch.long, torch.int32):
            raise TypeError(f"position_ids must be an integer tensor (torch.long), got {type(position_ids).__name__} "
                            f"{getattr(position_ids, 'dtype', '')}; convert it with .long()")
        if position_ids.dim() != 2 or position_ids.shape[1] != seq_len or position_ids.shape[0] not in (1, batch):
            raise ValueError(f"position_ids must be [batch, seq_len] = {[batch, seq_len]} (or [1, seq_len]), "
                             f"got {list(position_ids.shape)}")
        if bool(((position_ids < 0) | (position_ids >= self.config.seq_length)).any()):
            raise ValueError(f"position_ids must lie in [0, seq_length={self.config.seq_length}), got values from "
                             f"{position_ids.min().item()} to {position_ids.max().item()}")
        return position_ids.expand(batch, seq_len)

    @staticmethod
    def _mask(attention_mask: torch.Tensor | None, seq_len: int, past_len: int,
              device: torch.device, open_pad_rows: bool = True) -> tuple[torch.Tensor | None, bool]:
        """``(mask, is_causal)`` for the attention layers: the cheapest form that is correct.

        ``open_pad_rows``: see ``build_attention_mask`` (False with a P-Tuning prefix, as in ChatGLM3).
        """
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            return build_attention_mask(attention_mask, seq_len, past_len, open_pad_rows), False  # [b, 1, s, past + s]
        if past_len == 0:
            return None, seq_len > 1                                   # plain causal, fused kernels' fast path
        if seq_len == 1:
            return None, False                                         # one new token sees the whole past
        return causal_mask(seq_len, past_len + seq_len, device)[None, None], False


@torch.no_grad()
def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """Initialise a fresh model for training from scratch (GPT-2 style).

    Linear and embedding weights ~ N(0, std), biases 0, RMSNorm weights 1; the two
    projections that write into the residual stream (``self_attention.dense`` and
    ``mlp.dense_4h_to_h``) use ``std / sqrt(2 * num_layers)`` so the stream does not grow
    with depth. On the meta device it does nothing.
    """
    num_layers = max(1, sum(isinstance(m, GLMBlock) for m in model.modules()))
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            scale = math.sqrt(2 * num_layers) if name.endswith(("self_attention.dense", "mlp.dense_4h_to_h")) else 1.0
            nn.init.normal_(module.weight, mean=0.0, std=std / scale)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
