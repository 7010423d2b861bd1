# %% [markdown]
# # 00 · 环境与导览 Setup and tour: solutions
#
# Worked answers to the exercises of lesson 00. Each check is asserted, so the course's test
# run fails if a solution stops matching the reference.

# %%
import torch

from glm3_teach.checks import Case, check
from glm3_teach.config import ChatGLMConfig
from glm3_teach.generate import kv_cache_bytes as package_kv_cache_bytes
from glm3_teach.layers import GLMBlock

CONFIG = {"num_layers": 28, "hidden_size": 4096, "ffn_hidden_size": 13696, "kv_channels": 128,
          "num_attention_heads": 32, "multi_query_group_num": 2, "padded_vocab_size": 65024,
          "seq_length": 8192, "add_qkv_bias": True}


def shapes(config: dict) -> ChatGLMConfig:
    return ChatGLMConfig(**{key: config[key] for key in CONFIG})


def block_size(config: dict) -> int:
    with torch.device("meta"):
        block = GLMBlock(shapes(config))
    return sum(p.numel() for p in block.parameters())


# %% [markdown]
# ## Exercise 1: the memory of a long conversation
# Per token, every layer caches one key and one value vector for each **KV group** (2 in
# ChatGLM3-6B, not 32: the query heads share them), each `kv_channels` = 128 values of 2 bytes:
# 2 x 28 x 2 x 128 x 2 = 28,672 bytes a token. The FFN width, the vocabulary and the number of
# query heads do not enter. The tempting answer uses the query heads:

# %% tags=["nbval-check-output"]
def kv_cache_bytes(config: dict, tokens: int) -> int:
    per_token = 2 * config["num_layers"] * config["multi_query_group_num"] * config["kv_channels"] * 2
    return per_token * tokens


def kv_cache_bytes_per_head(config: dict, tokens: int) -> int:   # wrong: one key/value per query head
    return 2 * config["num_layers"] * config["num_attention_heads"] * config["kv_channels"] * 2 * tokens


cases = [Case((CONFIG, 1), label="ChatGLM3-6B, one token"), Case((CONFIG, 8192), label="ChatGLM3-6B, 8,192 tokens"),
         Case(({**CONFIG, "multi_query_group_num": 32}, 8192), label="32 groups"),
         Case(({**CONFIG, "num_layers": 2, "ffn_hidden_size": 1024}, 100), label="2 layers, narrow FFN")]
reference = lambda c, tokens: package_kv_cache_bytes(shapes(c), tokens)
assert check("kv_cache_bytes", kv_cache_bytes, reference, cases)
assert not check("kv_cache_bytes", kv_cache_bytes_per_head, reference, cases)
print(f"{kv_cache_bytes(CONFIG, 8192) / 2**20:.0f} MiB for a full 8,192-token context")


# %% [markdown]
# ## Exercise 2: what two KV groups save in weights
# Only `query_key_value` depends on the number of groups: it has `32 x 128` query outputs plus
# `2 x groups x 128` key and value outputs, each with 4096 weights and one bias. Going from 2 to
# 32 groups adds `2 x 30 x 128` outputs: 7,680 x 4,097 = 31,464,960 parameters per block.

# %% tags=["nbval-check-output"]
def gqa_saved_parameters(config: dict) -> int:
    extra_outputs = 2 * (config["num_attention_heads"] - config["multi_query_group_num"]) * config["kv_channels"]
    return extra_outputs * (config["hidden_size"] + (1 if config["add_qkv_bias"] else 0))


def saved_by_groups(config: dict) -> int:
    return block_size({**config, "multi_query_group_num": config["num_attention_heads"]}) - block_size(config)


assert check("gqa_saved_parameters", gqa_saved_parameters, saved_by_groups,
             [Case((CONFIG,), label="ChatGLM3-6B"), Case(({**CONFIG, "multi_query_group_num": 8},), label="8 groups"),
              Case(({**CONFIG, "add_qkv_bias": False},), label="no bias"),
              Case(({**CONFIG, "hidden_size": 256, "num_attention_heads": 4, "kv_channels": 64, "ffn_hidden_size": 683},),
                   label="course-sized block")])
assert gqa_saved_parameters(CONFIG) == 31_464_960
print(f"{gqa_saved_parameters(CONFIG):,} parameters per block")
