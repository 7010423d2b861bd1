"""Weight-only quantization: ChatGLM3's int8/int4 per-row scheme and a group-wise int4 scheme.

Taught in lesson 11 (量化 Quantization). ``quantize(model, bits)`` replaces the four Linear
layers of every block (``query_key_value``, ``dense``, ``dense_h_to_4h``, ``dense_4h_to_h``)
with a ``QuantizedLinear``; the embedding, ``output_layer`` and the norms stay in floating
point, as in the reference.

**scheme="chatglm"** (ChatGLM3's ``quantization.py``, exactly): one scale per output row,
``scale = w.abs().max(dim=-1) / 127`` (int8) or ``/ 7`` (int4), ``q = round(w / scale)``
computed in the weight's dtype and stored as int8. int4 values are packed two per byte
along the input dim, the even column in the high nibble::

    byte j of a row = (q[2j] << 4) | (q[2j+1] & 0xF)          # [out, in] -> [out, in // 2]

State dict of a layer: ``weight`` (int8, ``[out, in]`` or ``[out, in // 2]``), ``weight_scale``
(``[out]``, in the model dtype) and ``bias`` unchanged; ``config.quantization_bit`` is 8 or 4.

**scheme="group"** (in the spirit of llama.cpp/chatglm.cpp ``q4_0``): int4 with one scale per
block of ``group_size`` (32) inputs along each row, ``scale = absmax(block) / 7`` rounded to an
fp16 value, so one outlier spoils only its block of 32. State dict: ``weight_int4`` (int8,
``[out, in // 2]``, packed as above) and ``weight_group_scale`` (``[out, in // group_size]``);
``quantization_scheme: "group"`` and ``quantization_group_size`` in ``config.json`` record it
(``config.extra``; the per-row scheme writes only ``quantization_bit``, as the reference does).
(``q4_0`` itself takes the signed extreme over -8 and stores ``q + 8``; here the block uses
the same symmetric formula as the per-row scheme, so the two differ only in the scale's reach.)

**Forward.** ``kernel="dequantize"`` is the readable path and the reference's semantics
(W8A16/W4A16): rebuild ``q * scale`` in the activation dtype, then a normal matmul.
``kernel="weight_only"`` gives the same numbers through PyTorch's own CPU kernels,
``torch._weight_int8pack_mm`` and ``torch._weight_int4pack_mm_for_cpu`` (the int4 one wants
its own nibble layout, built once and cached). ``kernel="dynamic_int8"`` (int8 only, opt-in)
is fbgemm's W8A8 dynamic kernel: it quantizes the *activations* too, so its numbers differ
(about 1% per layer); lesson 11 measures what that buys and costs. ``"auto"`` (the default)
times ``weight_only`` against ``dequantize`` once per layer format and input kind on a CPU and
keeps the faster (on the AVX2 machine the course was written on, PyTorch's weight-only kernels
are several times slower than MKL's fp32 matmul); elsewhere it takes ``dequantize``. An input
that needs a gradient always takes ``dequantize`` (the kernels have no backward).

**Widths that do not divide.** The int4 layouts need an even row (a multiple of
``group_size`` for the group scheme). ChatGLM3-6B's widths (4096, 13696) always divide; the
course model's ``dense_4h_to_h`` has 683 inputs. ``pad=True`` pads such rows with zero weights
(stored, counted in the memory) instead of raising.

**LoRA.** Merge a LoRA adapter into the floating-point weights first, then quantize the merged
model; a LoRA trained on top of a quantized base (QLoRA) is not covered.

What it leaves out: the reference's CUDA kernels, quantizing the embedding (ChatGLM-6B's
int4 model did; ChatGLM3's ``quantize`` does not), activation-aware schemes (GPTQ, AWQ).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from glm3_teach.model import QUANTIZATION_EXTRA_KEYS, QUANTIZATION_SCHEMES, ChatGLMForCausalLM

QUANTIZED_LINEARS = ("self_attention.query_key_value", "self_attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")
KERNELS = ("auto", "dequantize", "weight_only", "dynamic_int8")
DEFAULT_GROUP_SIZE = 32


# --- the formulas -----------------------------------------------------------------------------------


def qmax(bits: int) -> int:
    """The largest level of a signed ``bits``-bit integer used symmetrically: 127 for int8, 7 for int4."""
    if bits not in (4, 8) or isinstance(bits, bool):
        raise ValueError(f"bits must be 8 or 4 (ChatGLM3's quantization_bit), got {bits!r}")
    return 2 ** (bits - 1) - 1


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """The scale with zeros replaced by 1, to divide by: an all-zero row quantizes to zeros."""
    return torch.where(scale == 0, torch.ones_like(scale), scale)


def absmax_quantize(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ChatGLM3's per-row scheme: ``weight [out, in] -> (q int8 [out, in], scale [out])``.

    ``scale = max|w| / qmax`` per row and ``q = round(w / scale)``, in the weight's dtype.
    Every ``|w - q * scale|`` is at most ``scale / 2`` (half a step).

    >>> absmax_quantize(torch.tensor([[0.5, -1.0, 0.25, 0.1]]), 4)
    (tensor([[ 4, -7,  2,  1]], dtype=torch.int8), tensor([0.1429]))
    """
    scale = weight.abs().amax(dim=-1) / qmax(bits)                       # [out]
    q = torch.round(weight / _safe(scale)[:, None]).to(torch.int8)      # [out, in]
    return q, scale


def group_quantize(weight: torch.Tensor, group_size: int = DEFAULT_GROUP_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """int4 with one scale per block of ``group_size`` inputs: ``[out, in] -> (q int8 [out, in], scale [out, in // g])``.

    ``scale = max|block| / 7``, rounded to the nearest fp16 value (q4_0 stores fp16 scales),
    then ``q = round(w / scale)`` clamped to [-8, 7].
    """
    check_group_size(group_size, weight.shape[-1])
    blocks = rearrange(weight, "o (g k) -> o g k", k=group_size)                 # [out, groups, k]
    scale = (blocks.abs().amax(dim=-1) / 7).to(torch.float16).to(weight.dtype)   # [out, groups]
    q = torch.round(blocks / _safe(scale)[..., None]).clamp(-8, 7).to(torch.int8)
    return rearrange(q, "o g k -> o (g k)"), scale


def check_group_size(group_size: int, in_features: int | None = None) -> None:
    """Raise unless ``group_size`` is an even int >= 2 that divides ``in_features`` (when given)."""
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 2 or group_size % 2:
        raise ValueError(f"group_size must be an even int >= 2 (q4_0 uses 32), got {group_size!r}")
    if in_features is not None and in_features % group_size:
        raise ValueError(f"group_size={group_size} does not divide the row of {in_features} inputs; pick a group "
                         f"size that divides it, or quantize with pad=True to pad rows with zero weights")


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two int4 values per byte, the even column in the high nibble: ``[..., in] -> [..., in // 2]`` int8.

    >>> pack_int4(torch.tensor([[1, -2, 7, -8]], dtype=torch.int8))   # 0x1E, 0x78 as signed bytes
    tensor([[ 30, 120]], dtype=torch.int8)
    """
    if q.dtype != torch.int8 or q.shape[-1] % 2:
        raise ValueError(f"pack_int4 needs an int8 tensor with an even last dim, got {q.dtype} {list(q.shape)}")
    if bool(((q < -8) | (q > 7)).any()):
        raise ValueError("pack_int4 needs values in [-8, 7]; quantize to 4 bits first")
    return (q[..., 0::2] << 4) | (q[..., 1::2] & 0x0F)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of ``pack_int4``: ``[..., n] int8 -> [..., 2n] int8`` in [-8, 7].

    The high nibble comes back sign-extended by the arithmetic shift ``>> 4``; the low one by
    ``((b & 0xF) ^ 8) - 8`` (0..7 stay, 8..15 become -8..-1).
    """
    high = packed >> 4                                  # [..., n]  q[2j]
    low = ((packed & 0x0F) ^ 8) - 8                     # [..., n]  q[2j+1]
    return rearrange(torch.stack([high, low], dim=-1), "... n two -> ... (n two)")


# --- the layer --------------------------------------------------------------------------------------


def stored_in_features(in_features: int, bits: int, scheme: str, group_size: int | None) -> int:
    """Row length as stored: ``in_features`` rounded up to what the layout needs (2, or the group size)."""
    multiple = group_size if scheme == "group" else (2 if bits == 4 else 1)
    return -(-in_features // multiple) * multiple


class QuantizedLinear(nn.Module):
    """A Linear whose weight is stored quantized: ``[..., in_features] -> [..., out_features]``.

    Built empty (to be loaded) or from an ``nn.Linear`` with ``QuantizedLinear.from_linear``.
    Its tensors are buffers (never trained); ``bias`` stays a floating-point parameter.
    ``kernel``: one of ``KERNELS`` (see the module docstring), may be changed at any time.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 8, scheme: str = "chatglm",
                 group_size: int | None = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        check_scheme(bits, scheme, group_size)
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.scheme, self.group_size = bits, scheme, group_size
        self.kernel = "auto"
        stored = stored_in_features(in_features, bits, scheme, group_size)
        dtype = dtype or torch.get_default_dtype()
        if scheme == "chatglm":
            self.register_buffer("weight", torch.empty(out_features, stored if bits == 8 else stored // 2,
                                                       dtype=torch.int8, device=device))
            self.register_buffer("weight_scale", torch.empty(out_features, dtype=dtype, device=device))
        else:
            self.register_buffer("weight_int4", torch.empty(out_features, stored // 2, dtype=torch.int8, device=device))
            self.register_buffer("weight_group_scale", torch.empty(out_features, stored // group_size, dtype=dtype,
                                                                   device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None
        self._kernel_cache: dict = {}

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, bits: int, scheme: str = "chatglm", group_size: int | None = None,
                    pad: bool = False) -> QuantizedLinear:
        """Quantize an ``nn.Linear``'s weight with the scheme's formula."""
        weight = linear.weight.detach()                                         # [out, in]
        out_features, in_features = weight.shape
        layer = cls(in_features, out_features, linear.bias is not None, bits, scheme, group_size,
                    weight.dtype, weight.device)
        stored = stored_in_features(in_features, bits, scheme, group_size)
        if stored != in_features and not pad:
            if scheme == "group":
                check_group_size(group_size, in_features)  # raises the group-size error
            raise ValueError(f"int4 packs two inputs per byte but this layer has an odd {in_features} inputs; "
                             f"quantize with pad=True to pad each row with a zero weight")
        weight = F.pad(weight, (0, stored - in_features))                       # [out, stored]
        if scheme == "chatglm":
            q, layer.weight_scale[:] = absmax_quantize(weight, bits)
            layer.weight.copy_(q if bits == 8 else pack_int4(q))
        else:
            q, layer.weight_group_scale[:] = group_quantize(weight, group_size)
            layer.weight_int4.copy_(pack_int4(q))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
        return layer

    def __getstate__(self) -> dict:
        """Copies and pickles leave the kernels' weight copies behind (they are rebuilt on use)."""
        return {**self.__dict__, "_kernel_cache": {}}

    def int_weight(self) -> torch.Tensor:
        """The integer levels ``q`` as int8 ``[out, stored_in]`` (int4 unpacked)."""
        if self.scheme == "group":
            return unpack_int4(self.weight_int4)
        return self.weight if self.bits == 8 else unpack_int4(self.weight)

    def scale_per_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """Scales broadcastable to ``[out, stored_in]``: ``[out, 1]``, or one column per input (group)."""
        if self.scheme == "group":
            return self.weight_group_scale.to(dtype).repeat_interleave(self.group_size, dim=1)  # [out, stored]
        return self.weight_scale.to(dtype)[:, None]                                             # [out, 1]

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``q * scale`` as a float ``[out, in]`` matrix in ``dtype`` (default: the scales' dtype)."""
        dtype = dtype or self.scale_dtype
        weight = self.int_weight().to(dtype) * self.scale_per_weight(dtype)   # [out, stored_in]
        return weight[:, :self.in_features]                                   # drop the zero padding

    @property
    def scale_dtype(self) -> torch.dtype:
        return (self.weight_scale if self.scheme == "chatglm" else self.weight_group_scale).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantizedLinear({self.in_features} -> {self.out_features}) got an input whose last dim "
                             f"is {x.shape[-1]} (shape {list(x.shape)})")
        kernel = self.resolved_kernel(x)
        if kernel == "dequantize":
            return F.linear(x, self.dequantized_weight(x.dtype), self.bias)
        flat = x.reshape(-1, self.in_features)                                # [tokens, in]
        out = KERNEL_FUNCTIONS[kernel](self, flat)                            # [tokens, out]
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def resolved_kernel(self, x: torch.Tensor) -> str:
        """The kernel this input runs on: ``self.kernel``, or for ``"auto"`` the fast one where it exists."""
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if torch.is_grad_enabled() and x.requires_grad:
            return "dequantize"  # the kernels have no backward; training through the layer needs this path
        usable = x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
        if self.kernel == "auto":
            return _fastest_kernel(self, x) if usable and weight_only_available(self) else "dequantize"
        if self.kernel != "dequantize" and not usable:
            raise ValueError(f"kernel={self.kernel!r} runs on CPU with fp32/bf16 inputs, got "
                             f"{x.device.type} {x.dtype}; use kernel='dequantize' (or 'auto')")
        if self.kernel == "dynamic_int8" and self.bits != 8:
            raise ValueError("kernel='dynamic_int8' needs int8 weights (bits=8, scheme='chatglm')")
        if self.kernel == "weight_only" and not weight_only_available(self):
            raise ValueError(f"this PyTorch has no CPU weight-only kernel for {self.extra_repr()}; "
                             f"use kernel='dequantize' (or 'auto')")
        return self.kernel

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.scheme == "group" else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"bits={self.bits}, scheme={self.scheme!r}{group}, kernel={self.kernel!r}")


# --- the fast paths: PyTorch's own CPU kernels ---------------------------------------------------------


def weight_only_available(layer: QuantizedLinear) -> bool:
    """Whether this PyTorch has a CPU weight-only kernel for the layer's format."""
    if layer.bits == 8:
        return hasattr(torch, "_weight_int8pack_mm")
    group_ok = layer.scheme == "chatglm" or layer.group_size in (32, 64, 128, 256)
    return group_ok and hasattr(torch, "_weight_int4pack_mm_for_cpu")


_AUTO_CHOICE: dict[tuple, str] = {}  # (format, shape, one token?, dtype, threads) -> the kernel measured faster


def _fastest_kernel(layer: QuantizedLinear, x: torch.Tensor) -> str:
    """``"weight_only"`` or ``"dequantize"``, whichever ran faster on the first input of this kind.

    PyTorch's weight-only CPU kernels beat dequantize-then-matmul on some CPUs and lose badly
    on others (lesson 11 measures it), so "auto" times both once per layer format, input kind
    (one token or many) and thread count, and remembers. Both give the same numbers (to 1e-5).
    """
    tokens = x.numel() // x.shape[-1]
    key = (layer.bits, layer.scheme, layer.group_size, layer.out_features, layer.in_features, tokens == 1, x.dtype,
           torch.get_num_threads())
    if key not in _AUTO_CHOICE:
        flat = x.reshape(-1, layer.in_features)
        runs = {"dequantize": lambda: F.linear(flat, layer.dequantized_weight(x.dtype)),
                "weight_only": lambda: _weight_only(layer, flat)}
        seconds = {}
        for name, run in runs.items():
            run()  # warm-up (builds the kernel's weight copy)
            start = time.perf_counter()
            for _ in range(3):
                run()
            seconds[name] = time.perf_counter() - start
        _AUTO_CHOICE[key] = min(seconds, key=seconds.get)
    return _AUTO_CHOICE[key]


def _cached(layer: QuantizedLinear, name: str, dtype: torch.dtype, build: Callable[[], object]) -> object:
    """A kernel-specific copy of the weight, rebuilt whenever the stored tensors change (load, ``.to``)."""
    source = layer.weight if layer.scheme == "chatglm" else layer.weight_int4
    key = (name, dtype, source.device, source.data_ptr(), source._version, layer.scale_dtype)
    if layer._kernel_cache.get("key") != key:
        layer._kernel_cache = {"key": key, "value": build()}
    return layer._kernel_cache["value"]


def _weight_only(layer: QuantizedLinear, x: torch.Tensor) -> torch.Tensor:
    """``x [tokens, in] @ (q * scale).T`` by PyTorch's weight-only CPU kernel for the layer's format."""
    if layer.bits == 4:
        return _int4pack(layer, x)
    return torch._weight_int8pack_mm(x.contiguous(), layer.weight, layer.weight_scale.to(x.dtype))  # exact W8A16


def _int4_kernel_weight(layer: QuantizedLinear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """The int4 CPU kernel's operands: ``(packed, scales_and_zeros [groups, out_pad, 2], group, in_pad)``.

    The kernel stores ``q + 8`` as unsigned nibbles in its own layout and computes
    ``(nibble - 8) * scale + zero`` per group; it needs ``out`` divisible by 16 and ``in`` by
    its group size (32..256). Rows and columns are zero-padded to fit, and a per-row scale is
    repeated over every group.
    """
    q = layer.int_weight().to(torch.int32)                                        # [out, stored]
    out, stored = q.shape
    if layer.scheme == "group":
        group, in_pad, scale = layer.group_size, stored, layer.weight_group_scale.to(dtype)   # [out, groups]
    else:
        in_pad = -(-stored // 32) * 32
        group = next(g for g in (256, 128, 64, 32) if in_pad % g == 0)
        scale = layer.weight_scale.to(dtype)[:, None].expand(out, in_pad // group)          # [out, groups]
    out_pad = -(-out // 16) * 16
    q = F.pad(q, (0, in_pad - stored, 0, out_pad - out))                          # [out_pad, in_pad]
    scale = F.pad(scale, (0, 0, 0, out_pad - out))                                # [out_pad, groups]
    scales_and_zeros = torch.stack([scale, torch.zeros_like(scale)], dim=-1)      # [out_pad, groups, 2]
    packed = torch._convert_weight_to_int4pack_for_cpu(q + 8, 1)                  # [out_pad, in_pad // 2] uint8
    return packed, rearrange(scales_and_zeros, "o g two -> g o two").contiguous(), group, in_pad


def _int4pack(layer: QuantizedLinear, x: torch.Tensor) -> torch.Tensor:
    """``x [tokens, in] @ (q * scale).T`` by ``torch._weight_int4pack_mm_for_cpu`` (exact W4A16)."""
    packed, scales_and_zeros, group, in_pad = _cached(layer, "int4pack", x.dtype,
                                                      lambda: _int4_kernel_weight(layer, x.dtype))
    x = F.pad(x, (0, in_pad - x.shape[1])).contiguous()                        # [tokens, in_pad]
    return torch._weight_int4pack_mm_for_cpu(x, packed, group, scales_and_zeros)[:, :layer.out_features]


def _dynamic_int8(layer: QuantizedLinear, x: torch.Tensor) -> torch.Tensor:
    """fbgemm's W8A8 dynamic kernel: the activations are quantized to 8 bits per call too."""
    def prepack():
        scale = layer.weight_scale.double()
        with warnings.catch_warnings():  # quantized tensors are deprecated in PyTorch (the kernel is not yet)
            warnings.simplefilter("ignore")
            qweight = torch._make_per_channel_quantized_tensor(layer.weight, _safe(scale),
                                                               torch.zeros_like(scale, dtype=torch.long), 0)
            return torch.ops.quantized.linear_prepack(qweight, None)
    packed = _cached(layer, "dynamic_int8", torch.float32, prepack)
    return torch.ops.quantized.linear_dynamic(x.float().contiguous(), packed, True).to(x.dtype)


KERNEL_FUNCTIONS = {"weight_only": _weight_only, "dynamic_int8": _dynamic_int8}


# --- the model --------------------------------------------------------------------------------------


def check_scheme(bits: int, scheme: str, group_size: int | None) -> None:
    """Raise a clear error for an unsupported combination of bits, scheme and group size."""
    qmax(bits)
    if scheme not in QUANTIZATION_SCHEMES:
        raise ValueError(f"scheme must be one of {QUANTIZATION_SCHEMES}, got {scheme!r}")
    if scheme == "group" and bits != 4:
        raise ValueError(f"scheme='group' is int4 only (q4_0-style), got bits={bits}; use scheme='chatglm' for int8")
    if scheme == "group":
        check_group_size(group_size)
    elif group_size is not None:
        raise ValueError(f"scheme='chatglm' has one scale per row; group_size={group_size!r} needs scheme='group'")


def quantized_layers(model: nn.Module) -> dict[str, QuantizedLinear]:
    """``{name: QuantizedLinear}`` of a model (empty when it is not quantized)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QuantizedLinear)}


def _replace_linears(model: ChatGLMForCausalLM, make: Callable[[nn.Linear], QuantizedLinear]) -> None:
    for block in model.transformer.encoder.layers:
        for path in QUANTIZED_LINEARS:
            parent_name, child_name = path.split(".")
            parent = getattr(block, parent_name)
            setattr(parent, child_name, make(getattr(parent, child_name)))


def _record(model: ChatGLMForCausalLM, bits: int, scheme: str, group_size: int | None) -> None:
    """Give the model (and every sub-module that shares its config) a config that records the scheme.

    ChatGLM3's scheme is recorded as the reference does, by ``quantization_bit`` alone; the group
    scheme adds ``quantization_scheme`` and ``quantization_group_size`` (kept in ``config.extra``).
    A copy, not an edit: another model built from the same config object stays unquantized.
    """
    old = model.config
    extra = {k: v for k, v in old.extra.items() if k not in QUANTIZATION_EXTRA_KEYS}
    if scheme == "group":
        extra.update(quantization_scheme=scheme, quantization_group_size=group_size)
    new = dataclasses.replace(old, quantization_bit=bits, extra=extra)
    for module in model.modules():
        if getattr(module, "config", None) is old:
            module.config = new


@torch.no_grad()
def quantize(model: ChatGLMForCausalLM, bits: int, scheme: str = "chatglm", group_size: int | None = None,
             pad: bool = False) -> ChatGLMForCausalLM:
    """Quantize the four Linears of every block in place (ChatGLM3's ``model.quantize(bits)``); returns the model.

    ``scheme="chatglm"``: per-row int8 or int4; ``scheme="group"``: int4 with one scale per
    ``group_size`` inputs (default 32). ``pad``: allow rows whose width the int4 layout does
    not divide, padding them with zero weights. ``model.config`` records the scheme.
    """
    if scheme == "group" and group_size is None:
        group_size = DEFAULT_GROUP_SIZE
    check_scheme(bits, scheme, group_size)
    if quantized_layers(model) or model.config.quantization_bit:
        raise ValueError(f"this model is already quantized (quantization_bit={model.config.quantization_bit}); "
                         f"quantize the floating-point model instead (load it again from its checkpoint)")
    layers = [getattr(getattr(block, p.split(".")[0]), p.split(".")[1])
              for block in model.transformer.encoder.layers for p in QUANTIZED_LINEARS]
    for layer in layers:  # check every layer before changing any
        stored = stored_in_features(layer.in_features, bits, scheme, group_size)
        if stored != layer.in_features and not pad:
            QuantizedLinear.from_linear(layer, bits, scheme, group_size, pad=False)  # raises the clear error
    _replace_linears(model, lambda linear: QuantizedLinear.from_linear(linear, bits, scheme, group_size, pad))
    _record(model, bits, scheme, group_size)
    return model


def build_quantized_structure(model: ChatGLMForCausalLM) -> ChatGLMForCausalLM:
    """Swap in empty ``QuantizedLinear``s as ``model.config`` describes (for loading a quantized checkpoint).

    Works on the ``meta`` device; the loader then allocates the model and copies the tensors in.
    """
    config = model.config
    if not config.quantization_bit:
        return model
    if quantized_layers(model):
        raise ValueError("this model already has QuantizedLinear layers")

    def empty(linear: nn.Linear) -> QuantizedLinear:
        return QuantizedLinear(linear.in_features, linear.out_features, linear.bias is not None,
                               config.quantization_bit, config.quantization_scheme, config.quantization_group_size,
                               linear.weight.dtype, linear.weight.device)
    _replace_linears(model, empty)
    return model


def set_kernel(model: nn.Module, kernel: str) -> nn.Module:
    """Choose the forward path of every ``QuantizedLinear`` (one of ``KERNELS``); returns the model."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("the model has no QuantizedLinear layers; call quantize(model, bits) first")
    for layer in layers.values():
        layer.kernel = kernel
    return model


# --- memory -----------------------------------------------------------------------------------------


def tensor_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer (``nbytes``), counting shared tensors once."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.nbytes
    return total


def linear_shapes(config) -> list[tuple[int, int]]:
    """``(out, in)`` of the four quantized Linears of one block, in ``QUANTIZED_LINEARS`` order."""
    projection = config.num_attention_heads * config.kv_channels
    qkv_out = projection + 2 * config.num_kv_groups * config.kv_channels
    return [(qkv_out, config.hidden_size), (config.hidden_size, projection),
            (2 * config.ffn_hidden_size, config.hidden_size), (config.hidden_size, config.ffn_hidden_size)]


def model_bytes(config, bits: int = 0, scheme: str = "chatglm", group_size: int | None = None,
                float_bytes: int = 2) -> int:
    """Bytes of a model's tensors by formula, without building it.

    ``bits=0``: every tensor in the float dtype (``float_bytes``: 2 for fp16/bf16, 4 for fp32).
    Otherwise the four block Linears take ``bits / 8`` bytes per stored weight plus one float
    scale per row (``"chatglm"``) or per group (``"group"``); everything else (embedding,
    output layer, norms, the qkv bias, the rotary ``inv_freq`` buffer) stays float.
    ChatGLM3-6B in fp16: ``model_bytes(ChatGLMConfig.chatglm3_6b()) == 12,487,168,064``.
    """
    if scheme == "group" and group_size is None:
        group_size = DEFAULT_GROUP_SIZE
    if bits:
        check_scheme(bits, scheme, group_size)
    linears = linear_shapes(config)
    linear_weights = sum(out * inp for out, inp in linears)
    quantized = 0
    for out, inp in linears:
        stored = stored_in_features(inp, bits, scheme, group_size) if bits else inp
        scales = out * (stored // group_size if scheme == "group" else 1)
        quantized += out * stored * bits // 8 + scales * float_bytes
    per_block_float = 2 * config.hidden_size + linears[0][0] * int(config.add_qkv_bias or config.add_bias_linear)
    rest = (2 * config.padded_vocab_size * config.hidden_size + config.hidden_size + config.kv_channels // 4
            + config.num_layers * per_block_float)
    block_linears = quantized if bits else linear_weights * float_bytes
    return rest * float_bytes + config.num_layers * block_linears


# chatglm.cpp (ggml) block formats: (weights per block, bytes per block). q4_0: an fp16 scale + 16 bytes
# of nibbles; q8_0: an fp16 scale + 32 int8 values; f16: no blocks.
GGML_BLOCKS = {"q4_0": (32, 18), "q8_0": (32, 34), "f16": (1, 2)}


def ggml_model_bytes(config, kind: str) -> int:
    """Bytes of the tensors in a chatglm.cpp model file of type ``kind`` (``"q4_0"``, ``"q8_0"``, ``"f16"``).

    chatglm.cpp's ``convert.py`` stores every 2-D tensor (the four block Linears, and also the
    embedding and the output layer) in ``kind``'s blocks of 32 along each row, and every 1-D
    tensor (norms, the qkv bias) in fp32. The file adds a header and the tokenizer (about 1 MB).
    """
    if kind not in GGML_BLOCKS:
        raise ValueError(f"kind must be one of {sorted(GGML_BLOCKS)}, got {kind!r}")
    per_block, block_bytes = GGML_BLOCKS[kind]
    matrices = [(config.padded_vocab_size, config.hidden_size)] * 2 + linear_shapes(config) * config.num_layers
    if any(inp % per_block for _, inp in matrices):
        raise ValueError(f"{kind} needs every row to be a multiple of {per_block}")
    vectors = config.num_layers * (2 * config.hidden_size + linear_shapes(config)[0][0]) + config.hidden_size
    return sum(out * inp // per_block * block_bytes for out, inp in matrices) + 4 * vectors
