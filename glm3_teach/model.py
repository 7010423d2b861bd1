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

What it leaves out: P-Tuning v2 prefixes (lesson 10), quantisation (lesson 11),
``return_last_logit``, the sequence-classification head, and generation (lesson 07).
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
from torch import nn

from glm3_teach.attention import ATTENTION_IMPLS, KVCache, build_attention_mask, causal_mask
from glm3_teach.layers import GLMBlock, RMSNorm
from glm3_teach.rope import RotaryEmbedding

# Keys of a real config.json that describe the file, not the network.
_METADATA_KEYS = {"_name_or_path", "architectures", "auto_map", "model_type", "transformers_version"}

# Behaviour flags ChatGLM3 sets one way; the other way is a different network we do not build.
_UNSUPPORTED = {
    "rmsnorm": (True, "LayerNorm instead of RMSNorm"),
    "apply_residual_connection_post_layernorm": (False, "the residual taken after the layer norm"),
    "post_layer_norm": (True, "no final layer norm"),
    "fp32_residual_connection": (False, "an fp32 residual stream"),
    "tie_word_embeddings": (False, "an output layer tied to the embedding"),
    "quantization_bit": (0, "quantised weights (lesson 11 covers quantisation)"),
    "pre_seq_len": (None, "P-Tuning v2 prefixes (lesson 10)"),
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
    quantization_bit: int = 0              # must stay 0
    pre_seq_len: int | None = None         # must stay None
    prefix_projection: bool = False        # P-Tuning v2 detail; unused without pre_seq_len
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
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        extra = {**values.get("extra", {}), **{k: v for k, v in values.items() if k not in names and k != "extra"}}
        model_type = extra.pop("model_type", "chatglm")  # to_dict writes it back
        if model_type != "chatglm":
            raise ValueError(f"this config is for model_type={model_type!r}, not 'chatglm'; it cannot build ChatGLM3")
        unused = sorted(set(extra) - _METADATA_KEYS)
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
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

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
    """Everything under ``transformer.``: embedding, rotary cache, encoder, output layer."""

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        self.embedding = Embedding(config)
        self.rotary_pos_emb = RotaryEmbedding(config.kv_channels // 2, rope_ratio=config.rope_ratio)
        self.encoder = GLMTransformer(config)
        self.output_layer = nn.Linear(config.hidden_size, config.padded_vocab_size, bias=False)


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
        mask, is_causal = self._mask(attention_mask, seq_len, past_len, input_ids.device)
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
        if (not isinstance(input_ids, torch.Tensor) or input_ids.dtype.is_floating_point
                or input_ids.dtype == torch.bool):
            raise TypeError(f"input_ids must be an integer tensor, got {type(input_ids).__name__} "
                            f"{getattr(input_ids, 'dtype', '')}; build it with torch.tensor(ids, dtype=torch.long)")
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
            if tuple(attention_mask.shape) != (batch, past_len + seq_len):
                raise ValueError(f"attention_mask must be [batch, past + seq_len] = {[batch, past_len + seq_len]} "
                                 f"(it covers the cached tokens too), got {list(attention_mask.shape)}")
            if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
                raise ValueError("attention_mask must hold only 0 (pad) and 1 (real token)")
        return batch, seq_len, past_len

    def _check_kv_cache(self, kv_cache: list[KVCache] | None, batch: int) -> int:
        """The past length of a KV cache, after checking its shape."""
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
        return past_len

    def _position_ids(self, batch: int, seq_len: int, past_len: int, attention_mask: torch.Tensor | None,
                      position_ids: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """``[batch, seq_len]`` positions; real tokens of a left-padded row start at 0."""
        if position_ids is None:
            if attention_mask is not None:
                counted = attention_mask.long().cumsum(dim=-1) - 1           # [b, past + s]
                return counted.clamp(min=0)[:, past_len:]                    # pads before the text get 0
            return torch.arange(past_len, past_len + seq_len, device=device).expand(batch, seq_len)
        if position_ids.dim() != 2 or position_ids.shape[1] != seq_len or position_ids.shape[0] not in (1, batch):
            raise ValueError(f"position_ids must be [batch, seq_len] = {[batch, seq_len]} (or [1, seq_len]), "
                             f"got {list(position_ids.shape)}")
        if bool(((position_ids < 0) | (position_ids >= self.config.seq_length)).any()):
            raise ValueError(f"position_ids must lie in [0, seq_length={self.config.seq_length}), got values from "
                             f"{position_ids.min().item()} to {position_ids.max().item()}")
        return position_ids.expand(batch, seq_len)

    @staticmethod
    def _mask(attention_mask: torch.Tensor | None, seq_len: int, past_len: int,
              device: torch.device) -> tuple[torch.Tensor | None, bool]:
        """``(mask, is_causal)`` for the attention layers: the cheapest form that is correct."""
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            return build_attention_mask(attention_mask, seq_len, past_len), False  # [b, 1, s, past + s]
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
