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
rope cache rows of the tokens' positions, ``num_layers`` pre-norm ``GLMBlock``s, the final
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

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from glm3_teach.attention import LayerKV, build_attention_mask, causal_mask
from glm3_teach.config import (  # noqa: F401  (re-exported: ``from glm3_teach.model import ChatGLMConfig`` works)
    QUANTIZATION_EXTRA_KEYS,
    QUANTIZATION_SCHEMES,
    ChatGLMConfig,
)
from glm3_teach.kv_cache import KVCache
from glm3_teach.layers import GLMBlock, RMSNorm
from glm3_teach.rope import RotaryEmbedding


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
    ``[batch, num_kv_groups, past + seq, head_dim]`` (keys after RoPE), or the ``KVCache``
    that was passed in, now holding these tokens too; else ``None``.
    ``attentions``: with ``output_attentions``, one ``[batch, num_heads, seq, past + seq]``
    tensor of probabilities per layer; else ``None``.
    """

    logits: torch.Tensor
    kv_cache: list[LayerKV] | KVCache | None = None
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

    def get_prompt(self, batch: int, dtype: torch.dtype) -> list[LayerKV]:
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
                position_ids: torch.Tensor | None = None, kv_cache: list[LayerKV] | KVCache | None = None,
                use_cache: bool = False, output_attentions: bool = False, check_inputs: bool = True
                ) -> CausalLMOutput:
        """Logits for every position.

        ``input_ids``: ``[batch, seq]`` token ids in ``[0, padded_vocab_size)``.
        ``attention_mask``: ``[batch, past + seq]``, 1 = real token, 0 = pad (left padding),
        covering the cached tokens too; ``None`` means no padding.
        ``position_ids``: ``[batch, seq]`` (or ``[1, seq]``); default: from ``attention_mask``
        (real tokens count from 0) or ``past .. past+seq-1``.
        ``kv_cache``: the ``kv_cache`` of a previous call's output, to continue from it, or a
        preallocated ``glm3_teach.kv_cache.KVCache`` (empty or filled by earlier calls), which
        the layers write into in place.
        ``use_cache``: return the updated cache (a ``KVCache`` is advanced past these tokens
        and returned). ``output_attentions``: return every layer's probabilities (forces the
        explicit attention path). ``check_inputs=False`` skips the checks that read tensor
        values (ids in the vocabulary, a mask of 0 and 1; each a host sync on a GPU): for a
        caller such as ``generate`` that checked them once and feeds the model its own tokens.
        """
        batch, seq_len, past_len = self._check_inputs(input_ids, attention_mask, kv_cache, check_inputs)
        rope_cache = self._rope_cache(batch, seq_len, past_len, attention_mask, position_ids, input_ids.device)
        kv_cache, attention_mask, prefix_len = self._add_prefix(kv_cache, attention_mask, batch)
        mask, is_causal = self._mask(attention_mask, seq_len, past_len + prefix_len, input_ids.device,
                                     open_pad_rows=prefix_len == 0)
        hidden_states = self.transformer.embedding(input_ids)                          # [b, s, hidden]
        new_cache, attentions = [], []
        preallocated = isinstance(kv_cache, KVCache)
        for i, layer in enumerate(self.transformer.encoder.layers):
            layer_past = kv_cache.layer(i) if preallocated else kv_cache[i] if kv_cache else None
            hidden_states, layer_cache, probs = layer(hidden_states, rope_cache, mask, is_causal,
                                                      layer_past, use_cache, output_attentions)
            new_cache.append(layer_cache)
            attentions.append(probs)
        hidden_states = self.transformer.encoder.final_layernorm(hidden_states)
        logits = self.transformer.output_layer(hidden_states)                          # [b, s, vocab]
        if preallocated and use_cache:
            kv_cache.advance(seq_len)                              # every layer wrote these positions
            new_cache = kv_cache
        return CausalLMOutput(logits, new_cache if use_cache else None, attentions if output_attentions else None)

    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                      kv_cache: list[LayerKV] | KVCache | None, check_values: bool = True) -> tuple[int, int, int]:
        """Raise a clear error for malformed inputs; return ``(batch, seq_len, past_len)``.

        Types and shapes are always checked (plain Python); ``check_values`` also reads the
        tensors (ids inside the vocabulary, a mask of 0 and 1).
        """
        config = self.config
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.long, torch.int32):
            raise TypeError(f"input_ids must be an integer tensor (torch.long or int32), got {type(input_ids).__name__} "
                            f"{getattr(input_ids, 'dtype', '')}; build it with torch.tensor(ids, dtype=torch.long) "
                            f"or convert it with .long()")
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be [batch, seq_len] with seq_len >= 1, got shape {list(input_ids.shape)}"
                             + ("; add the batch dim with input_ids[None]" if input_ids.dim() == 1 else ""))
        batch, seq_len = input_ids.shape
        bad = ((input_ids < 0) | (input_ids >= config.padded_vocab_size)) if check_values else None
        if check_values and bool(bad.any()):
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
            if check_values and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
                raise ValueError("attention_mask must hold only 0 (pad) and 1 (real token)")
        return batch, seq_len, past_len

    def _add_prefix(self, kv_cache: list[LayerKV] | KVCache | None, attention_mask: torch.Tensor | None,
                    batch: int) -> tuple[list[LayerKV] | KVCache | None, torch.Tensor | None, int]:
        """P-Tuning v2 (lesson 10): ``(kv_cache, attention_mask, prefix_len)`` with the prefix in front.

        Without ``pre_seq_len`` nothing changes. Otherwise the prefix becomes the past keys and
        values when there is no cache yet, or is written into an empty ``KVCache`` (a cache from a
        previous call already starts with it), and ``attention_mask`` gets ``pre_seq_len`` ones in
        front: every query sees the prefix.
        """
        prefix_len = self.config.pre_seq_len or 0
        if not prefix_len:
            return kv_cache, attention_mask, 0
        if kv_cache is None or (isinstance(kv_cache, KVCache) and kv_cache.length == 0):
            prompt = self.transformer.get_prompt(batch, self.transformer.embedding.word_embeddings.weight.dtype)
            if kv_cache is None:
                kv_cache = prompt
            else:
                kv_cache.append(prompt)                              # prefix at positions [0, pre_seq_len)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(batch, prefix_len), attention_mask], dim=1)
        return kv_cache, attention_mask, prefix_len

    def _check_kv_cache(self, kv_cache: list[LayerKV] | KVCache | None, batch: int) -> int:
        """The number of real tokens in a KV cache (those with positions), after checking its shape.

        With P-Tuning v2 the cache also starts with the ``pre_seq_len`` prefix slots, which
        have no position and are not counted.
        """
        if kv_cache is None:
            return 0
        config = self.config
        if isinstance(kv_cache, KVCache):
            return self._check_preallocated(kv_cache, batch)
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

    def _check_preallocated(self, cache: KVCache, batch: int) -> int:
        """``_check_kv_cache`` for a preallocated ``KVCache``: its sizes fit the model; real tokens in it."""
        config, weight = self.config, self.transformer.embedding.word_embeddings.weight
        have = (cache.num_layers, cache.batch, cache.num_kv_groups, cache.head_dim)
        want = (config.num_layers, batch, config.num_kv_groups, config.kv_channels)
        if have != want:
            raise ValueError(f"the KVCache has (layers, batch, groups, head_dim) = {have}, but this model and input "
                             f"need {want}; make it with KVCache.for_config(model.config, batch, max_len)")
        if cache.storage.device != weight.device or cache.storage.dtype != weight.dtype:
            raise ValueError(f"the KVCache holds {cache.storage.dtype} on {cache.storage.device} but the model runs "
                             f"in {weight.dtype} on {weight.device}; make it with the model's dtype and device")
        prefix_len = config.pre_seq_len or 0
        if 0 < cache.length < prefix_len:
            raise ValueError(f"the KVCache holds {cache.length} entries but this P-Tuning model's cache starts "
                             f"with its pre_seq_len={prefix_len} prefix slots; start from an empty KVCache")
        return max(0, cache.length - prefix_len)

    def _rope_cache(self, batch: int, seq_len: int, past_len: int, attention_mask: torch.Tensor | None,
                    position_ids: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """The rope table's rows for these tokens: ``[b, s, rot/2, 2]``, or ``[s, rot/2, 2]`` shared by the batch.

        Without a mask or given positions every row has positions ``past .. past+s-1``, so the
        rows are one slice of the table (the same values as indexing it by those positions,
        without building the indices at every decoding step).
        """
        table = self.transformer.rotary_pos_emb(self.config.seq_length)             # [seq_length, rot/2, 2]
        if attention_mask is None and position_ids is None:
            return table[past_len:past_len + seq_len]                               # [s, rot/2, 2]
        return table[self._position_ids(batch, seq_len, past_len, attention_mask, position_ids, device)]

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
