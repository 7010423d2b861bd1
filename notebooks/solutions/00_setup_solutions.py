# %% [markdown]
# # 00 · 环境与导览 Setup and tour: solutions
#
# Worked answers to the exercises of lesson 00. Each check is asserted, so the course's test
# run fails if a solution stops matching the reference.

# %%
import re

from glm3_teach.checks import check


def count_han_reference(text: str) -> int:
    return len(re.findall(r"[\u4e00-\u9fff]", text))


def chatglm3_block_parameters(config: dict) -> int:
    hidden, head_dim = config["hidden_size"], config["kv_channels"]
    qkv_out = config["num_attention_heads"] * head_dim + 2 * config["multi_query_group_num"] * head_dim
    return (qkv_out * hidden + qkv_out + config["num_attention_heads"] * head_dim * hidden
            + 3 * config["ffn_hidden_size"] * hidden + 2 * hidden)


CONFIG = {"hidden_size": 4096, "ffn_hidden_size": 13696, "kv_channels": 128,
          "num_attention_heads": 32, "multi_query_group_num": 2}
assert chatglm3_block_parameters(CONFIG) == 203_960_832  # the facts sheet's per-layer count


# %% [markdown]
# ## Exercise 1: count the Chinese characters

# %% tags=["nbval-check-output"]
def count_han(text: str) -> int:
    return sum("\u4e00" <= ch <= "\u9fff" for ch in text)


assert check("count_han", count_han, count_han_reference, ["", "茶馆", "我喝了3杯茶。", "Tea 茶 and 🍵", "𠮷野家"])
assert count_han("𠮷野家") == 2  # 𠮷 (U+20BB7) is in Extension B, outside the basic block this exercise counts


# %% [markdown]
# ## Exercise 2: the parameters of one GLM block
# `query_key_value` maps 4096 inputs to 32·128 query + 2·128 key + 2·128 value outputs and has a
# bias; `dense` maps 4096 back to 4096; SwiGLU's `dense_h_to_4h` has 2 × 13696 outputs (gate and
# up) and `dense_4h_to_h` brings 13696 back to 4096; each RMSNorm has 4096 weights.

# %% tags=["nbval-check-output"]
def block_parameters(config: dict) -> int:
    hidden, head_dim = config["hidden_size"], config["kv_channels"]
    q_width = config["num_attention_heads"] * head_dim
    kv_width = 2 * config["multi_query_group_num"] * head_dim
    query_key_value = (q_width + kv_width) * hidden + (q_width + kv_width)
    dense = q_width * hidden
    mlp = 2 * config["ffn_hidden_size"] * hidden + config["ffn_hidden_size"] * hidden
    norms = 2 * hidden
    return query_key_value + dense + mlp + norms


assert check("block_parameters", block_parameters, chatglm3_block_parameters, [(CONFIG,), ({**CONFIG, "ffn_hidden_size": 1024},)])
print(f"{block_parameters(CONFIG):,}")
