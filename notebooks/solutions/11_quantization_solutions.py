# %% [markdown]
# # 11 · 量化 Quantization: solutions
#
# Worked answers to the exercises of lesson 11. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import torch

from glm3_teach import check, load_pretrained
from glm3_teach import quant
from glm3_teach.model import ChatGLMConfig
from glm3_teach.paths import data_dir

model = load_pretrained(data_dir() / "checkpoints" / "base", dtype=torch.float32)


# %% [markdown]
# ## Exercise 1: int4 packing
# Shifting an int8 value left by 4 moves its low four bits (its two's complement nibble) into the
# high half; `& 0xF` keeps the odd column's nibble in the low half. To unpack, an arithmetic right
# shift brings the high nibble down with its sign; the low nibble is 0..15, and flipping bit 3 then
# subtracting 8 maps 8..15 to -8..-1 while leaving 0..7 alone. `stack` + `flatten` interleaves
# the two halves back into even and odd columns.

# %% tags=["nbval-check-output"]
def my_pack(q):
    return (q[:, 0::2] << 4) | (q[:, 1::2] & 0xF)              # [rows, 2n] -> [rows, n]


def my_unpack(packed):
    high = packed >> 4                                         # sign-extending shift
    low = ((packed & 0xF) ^ 8) - 8
    return torch.stack([high, low], dim=-1).flatten(-2)       # [rows, n, 2] -> [rows, 2n]


every_pair = torch.cartesian_prod(torch.arange(-8, 8), torch.arange(-8, 8)).to(torch.int8)   # [256, 2]
some_rows = torch.randint(-8, 8, (3, 10), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
assert check("my_pack", my_pack, quant.pack_int4, [every_pair, some_rows])
assert check("my_unpack", my_unpack, quant.unpack_int4, [quant.pack_int4(every_pair), quant.pack_int4(some_rows)])


# %% [markdown]
# ## Exercise 2: the memory of a config
# Count the weights of each block's four Linears, store them in `bits / 8` bytes plus one 2-byte
# scale per output row; everything else (embedding, output layer, two norms per block, the final
# norm, the qkv bias, `inv_freq`) takes 2 bytes a value.

# %% tags=["nbval-check-output"]
def my_model_bytes(config, bits):
    hidden, ffn, kv = config.hidden_size, config.ffn_hidden_size, config.kv_channels
    projection = config.num_attention_heads * kv
    qkv_out = projection + 2 * config.num_kv_groups * kv
    linears = [(qkv_out, hidden), (hidden, projection), (2 * ffn, hidden), (hidden, ffn)]   # (out, in)
    if bits:
        block = sum(out * inp * bits // 8 + out * 2 for out, inp in linears)
    else:
        block = sum(out * inp * 2 for out, inp in linears)
    floats = 2 * hidden + qkv_out                                                       # norms + qkv bias
    rest = 2 * config.padded_vocab_size * hidden + hidden + kv // 4                      # embedding, output, final norm
    return config.num_layers * (block + 2 * floats) + 2 * rest


configs = [ChatGLMConfig.chatglm3_6b(), ChatGLMConfig.course(ffn_hidden_size=684),
           ChatGLMConfig(num_layers=12, hidden_size=1024, ffn_hidden_size=2752, kv_channels=64, num_attention_heads=16)]
assert check("my_model_bytes", my_model_bytes, lambda c, b: quant.model_bytes(c, b),
             [(c, b) for c in configs for b in (0, 8, 4)])


# %% [markdown]
# ## Exercise 3: find the bug
# `buggy_quantize` takes `weight.abs().max()` over the **whole matrix**: one scale for every row.
# A row whose weights are all small then uses only a few of the levels, and many of its weights
# round to 0. ChatGLM3 takes the maximum over each row (`dim=-1`), so every row uses its full range.

# %% tags=["nbval-check-output"]
def fixed_quantize(weight, bits):
    scale = weight.abs().max(dim=-1).values / (2 ** (bits - 1) - 1)     # [out]: one scale per row
    return torch.round(weight / scale[:, None]).to(torch.int8), scale


w_up = model.transformer.encoder.layers[1].mlp.dense_h_to_4h.weight.detach()
weight = model.transformer.encoder.layers[0].self_attention.query_key_value.weight.detach()
assert check("fixed_quantize", fixed_quantize, quant.absmax_quantize, [(w_up, 4), (w_up, 8), (weight, 4)])
