# %% [markdown]
# # 05 · 组装模型 The whole model: solutions
#
# Worked answers to the exercises of lesson 05. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import math
import re

from glm3_teach import ChatGLMConfig, check, count_parameters
from glm3_teach.checkpoint import expected_tensors

course_config = ChatGLMConfig.course()
chatglm3_config = ChatGLMConfig.chatglm3_6b()


# %% [markdown]
# ## Exercise 1: count the parameters of any config
# One block holds `query_key_value` (hidden → queries of every head plus a key and a value per
# group, with a bias when `add_qkv_bias` or `add_bias_linear`), `dense` (all heads → hidden),
# SwiGLU's `dense_h_to_4h` (hidden → 2 × ffn) and `dense_4h_to_h` (ffn → hidden), with a bias on
# these three only when `add_bias_linear`, and two RMSNorm weight vectors. Around the blocks: the
# embedding, the final norm and the untied output layer.

# %% tags=["nbval-check-output"]
def linear(n_in, n_out, bias):
    return n_in * n_out + (n_out if bias else 0)


def parameters_of(config: ChatGLMConfig) -> int:
    hidden, ffn, head_dim = config.hidden_size, config.ffn_hidden_size, config.kv_channels
    projection = config.num_attention_heads * head_dim
    kv_heads = config.multi_query_group_num if config.multi_query_attention else config.num_attention_heads
    qkv_out = projection + 2 * kv_heads * head_dim
    block = (linear(hidden, qkv_out, config.add_qkv_bias or config.add_bias_linear)
             + linear(projection, hidden, config.add_bias_linear)
             + linear(hidden, 2 * ffn, config.add_bias_linear)
             + linear(ffn, hidden, config.add_bias_linear)
             + 2 * hidden)
    vocab_rows = config.padded_vocab_size * hidden
    return vocab_rows + config.num_layers * block + hidden + vocab_rows


count_cases = [course_config, chatglm3_config, ChatGLMConfig.chatglm3_6b(multi_query_attention=False),
               ChatGLMConfig(**{**course_config.__dict__, "add_bias_linear": True}),
               ChatGLMConfig(**{**course_config.__dict__, "num_attention_heads": 8, "add_qkv_bias": False})]
assert check("parameters_of", parameters_of, count_parameters, count_cases)
assert parameters_of(chatglm3_config) == 6_243_584_000

# %% [markdown]
# Without grouped-query attention (one key/value head per query head) ChatGLM3-6B would have
# 28 × 2 × (4096 − 256) × 4096 more weights (and 28 × 2 × 3840 more biases) in `query_key_value`:

# %% tags=["nbval-check-output"]
mha_extra = parameters_of(ChatGLMConfig.chatglm3_6b(multi_query_attention=False)) - parameters_of(chatglm3_config)
print(f"multi-head attention would add {mha_extra:,} parameters ({mha_extra / 6_243_584_000:.1%})")
assert mha_extra == 28 * 2 * (4096 - 256) * (4096 + 1)

# %% [markdown]
# ## Exercise 2: memory in bytes
# Bits per weight times the count, divided by 8 and rounded up: an odd number of int4 weights
# leaves the last byte half used.

# %% tags=["nbval-check-output"]
BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8, "int4": 4}


def bytes_for(num_parameters: int, dtype: str) -> int:
    return (num_parameters * BITS[dtype] + 7) // 8


def bytes_for_reference(num_parameters, dtype):
    return math.ceil(num_parameters * BITS[dtype] / 8)


assert check("bytes_for", bytes_for, bytes_for_reference,
             [(6_243_584_000, "float32"), (6_243_584_000, "bfloat16"), (4_986_112, "float16"),
              (6_243_584_000, "int8"), (6_243_584_000, "int4"), (7, "int4")])
assert bytes_for(6_243_584_000, "bfloat16") == 12_487_168_000


# %% [markdown]
# ## Exercise 3: the shape behind a key
# Linear weights are `[out_features, in_features]`; the embedding and the output layer are
# `[padded_vocab_size, hidden_size]`; norms and biases are vectors; `inv_freq` holds one frequency
# per rotated pair: RoPE rotates `kv_channels // 2` dims, in `kv_channels // 4` pairs. The layer
# number does not change the shape, so the key's ending decides.

# %% tags=["nbval-check-output"]
def key_shape(key: str, config: ChatGLMConfig) -> tuple:
    hidden, ffn, vocab = config.hidden_size, config.ffn_hidden_size, config.padded_vocab_size
    projection = config.num_attention_heads * config.kv_channels
    qkv_out = projection + 2 * config.num_kv_groups * config.kv_channels
    shapes = {
        "word_embeddings.weight": (vocab, hidden),
        "rotary_pos_emb.inv_freq": (config.kv_channels // 4,),
        "layernorm.weight": (hidden,),
        "query_key_value.weight": (qkv_out, hidden),
        "query_key_value.bias": (qkv_out,),
        "dense.weight": (hidden, projection),
        "dense_h_to_4h.weight": (2 * ffn, hidden),
        "dense_4h_to_h.weight": (hidden, ffn),
        "output_layer.weight": (vocab, hidden),
    }
    for ending, shape in shapes.items():
        if re.search(rf"(^|[._]){re.escape(ending)}$", key):
            return shape
    raise KeyError(f"{key} is not a ChatGLM3 checkpoint key")


shapes_by_config = {}


def key_shape_reference(key, config):
    name = config.to_json()
    if name not in shapes_by_config:
        shapes_by_config[name] = expected_tensors(config)   # built on the meta device
    return tuple(shapes_by_config[name][key])


key_cases = [(key, config) for config in (chatglm3_config, course_config) for key in
             ["transformer.embedding.word_embeddings.weight", "transformer.rotary_pos_emb.inv_freq",
              "transformer.encoder.layers.3.self_attention.query_key_value.weight",
              "transformer.encoder.layers.3.self_attention.query_key_value.bias",
              "transformer.encoder.layers.0.self_attention.dense.weight",
              "transformer.encoder.layers.2.mlp.dense_h_to_4h.weight",
              "transformer.encoder.layers.2.mlp.dense_4h_to_h.weight",
              "transformer.encoder.layers.1.post_attention_layernorm.weight",
              "transformer.output_layer.weight"]]
assert check("key_shape", key_shape, key_shape_reference, key_cases)

# %% [markdown]
# The same function covers every one of the 200 keys of the real-size model:

# %% tags=["nbval-check-output"]
all_shapes = expected_tensors(chatglm3_config)
assert all(key_shape(key, chatglm3_config) == tuple(shape) for key, shape in all_shapes.items())
print(f"all {len(all_shapes)} keys of chatglm3-6b have the shape key_shape predicts")
