"""A preallocated KV cache: room for every position up front, written in place, read as a slice.

Taught in lesson 07 (解码 Decoding), beside the simpler design it replaces. The model also
accepts a cache as a list of ``(k, v)`` tuples per layer (see ``glm3_teach.attention``): each
step then *concatenates* the new key to the old ones, so step ``t`` copies all ``t`` cached
positions of every layer into a new tensor. ``KVCache`` allocates
``[num_layers, 2, batch, num_kv_groups, max_len, head_dim]`` once (the ``2`` is keys and
values) and each step writes only its own positions::

    storage[layer, 0, :, :, past : past + seq] = k      # in place, nothing else is copied
    keys = storage[layer, 0, :, :, : past + seq]       # a view of the filled part

``length`` counts the filled positions. ``ChatGLMForCausalLM.forward`` hands each layer its
``KVCacheLayer`` (``cache.layer(i)``), the layers write at ``length``, and the model
``advance``\\ s the cache by the new tokens once every layer is done. Reading it back looks like
the tuple form: ``cache[i]`` is layer ``i``'s ``(k, v)`` so far, each
``[batch, num_kv_groups, length, head_dim]`` (keys after RoPE, before the group expansion).

ChatGLM3's own code keeps a tuple per layer, sequence-first (``[seq, batch, groups, head_dim]``
each), and concatenates, as Hugging Face's default ``DynamicCache`` does; HF's
``StaticCache`` is this design. ``glm3_teach.generate`` uses ``KVCache`` for
``ChatGLMForCausalLM``; P-Tuning v2 (lesson 10), the serving batcher (lesson 12) and the
attention viewer keep the tuples, which they cut and stitch.

What it leaves out: growing past ``max_len`` (make a new, larger cache), paged blocks
(vLLM's PagedAttention), reordering rows for beam search, and quantised caches.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]


class KVCache:
    """Keys and values of ``num_layers`` layers for up to ``max_len`` positions, preallocated.

    ``storage``: ``[num_layers, 2, batch, num_kv_groups, max_len, head_dim]`` (zeros until
    written); ``length``: positions filled so far (the same for every layer between calls).
    """

    def __init__(self, num_layers: int, batch: int, num_kv_groups: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        sizes = dict(num_layers=num_layers, batch=batch, num_kv_groups=num_kv_groups, max_len=max_len,
                     head_dim=head_dim)
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"KVCache {name} must be a positive int, got {value!r}")
        self.storage = torch.zeros(num_layers, 2, batch, num_kv_groups, max_len, head_dim, dtype=dtype, device=device)
        self.length = 0
        # Per-layer views [batch, groups, max_len, head_dim], made once: each step then costs one
        # narrow + copy per tensor instead of re-indexing the 6-D storage.
        self._keys = [self.storage[i, 0] for i in range(num_layers)]
        self._values = [self.storage[i, 1] for i in range(num_layers)]
        self._layers = [KVCacheLayer(self, i) for i in range(num_layers)]

    @classmethod
    def for_config(cls, config: Any, batch: int, max_len: int, *, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> KVCache:
        """A cache shaped for a ``ChatGLMConfig``'s layers, KV groups and head dim."""
        return cls(config.num_layers, batch, config.num_kv_groups, max_len, config.kv_channels,
                   dtype=dtype, device=device)

    @property
    def num_layers(self) -> int:
        return self.storage.shape[0]

    @property
    def batch(self) -> int:
        return self.storage.shape[2]

    @property
    def num_kv_groups(self) -> int:
        return self.storage.shape[3]

    @property
    def max_len(self) -> int:
        return self.storage.shape[4]

    @property
    def head_dim(self) -> int:
        return self.storage.shape[5]

    def layer(self, index: int) -> KVCacheLayer:
        """The handle layer ``index`` writes through (``SelfAttention`` calls its ``update``)."""
        return self._layers[index]

    def write(self, index: int, k: torch.Tensor, v: torch.Tensor) -> LayerKV:
        """Store layer ``index``'s new ``k``, ``v`` (``[batch, groups, seq, head_dim]``) at ``length``.

        Returns the layer's keys and values so far, ``[batch, groups, length + seq, head_dim]``
        each: views of ``storage``, nothing copied but the new positions.
        """
        start, seq = self.length, k.shape[2]
        if start + seq > self.max_len:
            raise ValueError(f"the KVCache holds {self.max_len} positions and {start} are filled, so "
                             f"{seq} more do not fit; make a cache with max_len >= {start + seq}")
        keys, values = self._keys[index], self._values[index]                    # [b, G, max_len, D]
        keys.narrow(2, start, seq).copy_(k)                                      # in place at [start, start + seq)
        values.narrow(2, start, seq).copy_(v)
        return keys.narrow(2, 0, start + seq), values.narrow(2, 0, start + seq)  # [b, G, start + seq, D]

    def advance(self, num_tokens: int) -> None:
        """Count ``num_tokens`` more positions as filled (the model calls it after its last layer)."""
        if self.length + num_tokens > self.max_len:
            raise ValueError(f"cannot advance the KVCache past max_len={self.max_len}")
        self.length += num_tokens

    def append(self, layers: list[LayerKV]) -> None:
        """Write whole ``(k, v)`` tuples, one per layer (a P-Tuning v2 prefix, or a tuple cache), and advance."""
        if len(layers) != self.num_layers:
            raise ValueError(f"got {len(layers)} layers of keys and values for a KVCache of {self.num_layers}")
        for index, (k, v) in enumerate(layers):
            self.write(index, k, v)
        self.advance(layers[0][0].shape[2])

    def __len__(self) -> int:
        return self.num_layers

    def __getitem__(self, index: int) -> LayerKV:
        """Layer ``index``'s ``(k, v)`` so far, each ``[batch, groups, length, head_dim]``, like the tuple form."""
        return self._keys[index].narrow(2, 0, self.length), self._values[index].narrow(2, 0, self.length)

    def __iter__(self) -> Iterator[LayerKV]:
        return (self[i] for i in range(self.num_layers))

    def to_tuples(self) -> list[LayerKV]:
        """The filled part as the tuple form (copies), for code that cuts or stitches caches."""
        return [(k.clone(), v.clone()) for k, v in self]

    def __repr__(self) -> str:
        return (f"KVCache(layers={self.num_layers}, batch={self.batch}, groups={self.num_kv_groups}, "
                f"length={self.length}/{self.max_len}, head_dim={self.head_dim}, dtype={self.storage.dtype})")


class KVCacheLayer:
    """One layer's view of a ``KVCache``: ``update(k, v)`` writes the new positions, returns all so far."""

    __slots__ = ("cache", "index")

    def __init__(self, cache: KVCache, index: int):
        self.cache, self.index = cache, index

    def update(self, k: torch.Tensor, v: torch.Tensor) -> LayerKV:
        """``k``, ``v``: ``[batch, groups, seq, head_dim]`` -> each ``[batch, groups, past + seq, head_dim]``."""
        return self.cache.write(self.index, k, v)
