# %% [markdown]
# # 05 · 组装模型 The whole model: solutions
#
# Worked answers to the exercises of lesson 05. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import torch
from einops import rearrange

from glm3_teach import ChatGLMConfig, ChatGLMForCausalLM, check, count_parameters, seed_everything
from glm3_teach.attention import build_attention_mask, causal_mask
from glm3_teach.checks import Case, forbid_modules

course_config = ChatGLMConfig.course()
chatglm3_config = ChatGLMConfig.chatglm3_6b()
seed_everything(0)
model = ChatGLMForCausalLM(course_config).eval()   # the lesson's untrained course model


# %% [markdown]
# ## Exercise 1: the model's forward, with padding and a cache
# Four decisions, then the same loop as section 4. The past length is the cache's sequence
# axis. Positions come from the padding mask, which covers the past: its running count minus one
# numbers the real tokens from 0 (pads before the text get 0), and the last `seq` entries belong to
# the new tokens. The rope table is indexed by those positions, `[batch, seq, rotary_dim // 2, 2]`.
# The mask is the cheapest correct one: with pads the full causal-plus-padding mask (pad query rows
# opened, so no softmax is over nothing); else `is_causal=True` when there is no past; no mask for
# one token after a past (it may see everything); else a causal mask shifted by the past.

# %% tags=["nbval-check-output"]
def my_forward(model, input_ids, attention_mask=None, kv_cache=None):
    net = model.transformer
    batch, seq_len = input_ids.shape
    past_len = kv_cache[0][0].shape[2] if kv_cache else 0
    if attention_mask is not None:
        position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)[:, past_len:]   # [b, s]
    else:
        position_ids = torch.arange(past_len, past_len + seq_len).expand(batch, seq_len)      # [b, s]
    rope_cache = net.rotary_pos_emb(model.config.seq_length)[position_ids]                 # [b, s, rot/2, 2]
    if attention_mask is not None and not bool(attention_mask.bool().all()):
        mask, is_causal = build_attention_mask(attention_mask, seq_len, past_len), False     # [b, 1, s, past+s]
    elif past_len == 0:
        mask, is_causal = None, seq_len > 1
    elif seq_len == 1:
        mask, is_causal = None, False
    else:
        mask, is_causal = causal_mask(seq_len, past_len + seq_len)[None, None], False
    hidden_states = net.embedding(input_ids)                                               # [b, s, hidden]
    for i, layer in enumerate(net.encoder.layers):
        hidden_states, _, _ = layer(hidden_states, rope_cache, mask, is_causal, kv_cache[i] if kv_cache else None)
    return net.output_layer(net.encoder.final_layernorm(hidden_states))                  # [b, s, vocab]


def real_tokens_only(logits, attention_mask):
    if attention_mask is None:
        return logits
    real = attention_mask[:, -logits.shape[1]:].bool()[..., None]
    return torch.where(real, logits, torch.zeros((), dtype=logits.dtype))


generator = seed_everything(51)
batch_ids = torch.randint(0, course_config.eos_token_id, (2, 9), generator=generator)
batch_ids[0, :3] = course_config.pad_token_id
batch_mask = torch.ones(2, 9, dtype=torch.long)
batch_mask[0, :3] = 0
with torch.no_grad():
    padded_past = model(batch_ids[:, :6], attention_mask=batch_mask[:, :6], use_cache=True).kv_cache
forward_cases = [
    Case(args=(torch.randint(0, 4094, (2, 6), generator=generator), None, None), label="no padding, no cache"),
    Case(args=(batch_ids[:, :6], batch_mask[:, :6], None), label="left-padded batch, no cache"),
    Case(args=(batch_ids[:, 6:], batch_mask, padded_past), label="3 new tokens after a padded cache"),
    Case(args=(batch_ids[:, 6:7], batch_mask[:, :7], padded_past), label="1 new token after a padded cache"),
]
with torch.no_grad():
    assert check("my_forward", forbid_modules(lambda ids, mask, cache: real_tokens_only(my_forward(model, ids, mask, cache),
                                                                               mask), ChatGLMForCausalLM),
                 lambda ids, mask, cache: real_tokens_only(model(ids, attention_mask=mask, kv_cache=cache).logits, mask),
                 forward_cases, atol=1e-5, rtol=1e-4)


# %% [markdown]
# Why the positions must come from the mask: counting them `past, past + 1, ...` instead is right for
# the unpadded rows and even for a padded batch without a cache (RoPE only sees distances, and every
# real token of a row is shifted alike), but after a padded cache the new tokens of the padded row
# sit 3 positions too far from the cached ones, and the check fails on that case:

# %%
def forward_with_counted_positions(model, input_ids, attention_mask=None, kv_cache=None):
    past_len = kv_cache[0][0].shape[2] if kv_cache else 0
    positions = torch.arange(past_len, past_len + input_ids.shape[1]).expand(input_ids.shape[0], -1)
    return model(input_ids, attention_mask=attention_mask, kv_cache=kv_cache, position_ids=positions).logits


with torch.no_grad():
    counted = check("counted positions", lambda ids, mask, cache: real_tokens_only(
        forward_with_counted_positions(model, ids, mask, cache), mask),
        lambda ids, mask, cache: real_tokens_only(model(ids, attention_mask=mask, kv_cache=cache).logits, mask),
        forward_cases, atol=1e-5, rtol=1e-4)
assert not counted and counted.cases_run == 3


# %% [markdown]
# ## Exercise 2: a cache in ChatGLM3's layout
# Only the order of the axes differs: `[seq, batch, groups, head_dim]` becomes
# `[batch, groups, seq, head_dim]`, for the key and the value of every layer.

# %% tags=["nbval-check-output"]
def from_chatglm3_cache(past_key_values):
    return [tuple(rearrange(t, "s b g d -> b g s d") for t in pair) for pair in past_key_values]


def chatglm3_layout(kv_cache):
    return [tuple(rearrange(t, "b g s d -> s b g d").contiguous() for t in pair) for pair in kv_cache]


def continue_from(cache, new_ids):
    with torch.no_grad():
        return model(new_ids, kv_cache=cache).logits


generator = seed_everything(52)
layout_cases = []
for batch, past_len, label in [(1, 5, "one sentence"), (3, 8, "a batch of 3")]:
    start = torch.randint(0, 4094, (batch, past_len), generator=generator)
    with torch.no_grad():
        own_cache = model(start, use_cache=True).kv_cache
    layout_cases.append(Case(args=(chatglm3_layout(own_cache), own_cache,
                                   torch.randint(0, 4094, (batch, 2), generator=generator)), label=label))
assert check("from_chatglm3_cache", lambda theirs, ours, new_ids: continue_from(from_chatglm3_cache(theirs), new_ids),
             lambda theirs, ours, new_ids: continue_from(ours, new_ids), layout_cases)


# %% [markdown]
# ## Exercise 3: count the parameters of any config
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
# Without grouped-query attention (one KV group per query head) ChatGLM3-6B would have
# 28 × 2 × (4096 − 256) × 4096 more weights (and 28 × 2 × 3840 more biases) in `query_key_value`:

# %% tags=["nbval-check-output"]
mha_extra = parameters_of(ChatGLMConfig.chatglm3_6b(multi_query_attention=False)) - parameters_of(chatglm3_config)
print(f"multi-head attention would add {mha_extra:,} parameters ({mha_extra / 6_243_584_000:.1%})")
assert mha_extra == 28 * 2 * (4096 - 256) * (4096 + 1)
