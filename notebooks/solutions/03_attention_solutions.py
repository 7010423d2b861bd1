# %% [markdown]
# # 03 · 注意力 Attention: solutions
#
# Worked answers to the exercises of lesson 03. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import torch
from einops import rearrange

from glm3_teach.attention import causal_mask, explicit_attention, repeat_kv
from glm3_teach.checks import check, forbid_repeated_copies


# %% [markdown]
# ## Exercise 1: the causal mask with a KV cache
# Query `i` is the token at absolute position `k_len - q_len + i`; it may see every key at that
# position or before. Comparing a column of query positions with a row of key positions
# broadcasts to the whole `[q_len, k_len]` mask at once.

# %% tags=["nbval-check-output"]
def my_causal_mask(q_len, k_len):
    query_pos = torch.arange(k_len - q_len, k_len)[:, None]  # [q_len, 1] absolute positions
    key_pos = torch.arange(k_len)[None, :]                   # [1, k_len]
    return key_pos <= query_pos                              # [q_len, k_len]


assert check("my_causal_mask", my_causal_mask, causal_mask, [(1, 1), (4, 4), (2, 5), (1, 6), (3, 8)])
print(my_causal_mask(2, 5).int())

# %% [markdown]
# `torch.ones(q_len, k_len, dtype=torch.bool).tril(diagonal=k_len - q_len)` is the same mask
# in one call: the diagonal offset shifts the triangle right by the number of cached keys.

# %% tags=["nbval-check-output"]
assert check("tril with an offset", lambda q_len, k_len: torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len),
             causal_mask, [(1, 1), (4, 4), (2, 5), (1, 6), (3, 8)])


# %% [markdown]
# ## Exercise 2: a log-softmax that never overflows
# Subtract the row maximum `m`: then every `exp(x - m)` is at most 1 and the sum is at least 1, so
# `log(sum)` is finite. `log_softmax(x) = (x - m) - log(sum(exp(x - m)))`; the `m` cancels exactly as
# in the stable softmax. An entry of $-\infty$ stays $-\infty$ and contributes `exp(-inf) = 0`.

# %% tags=["nbval-check-output"]
def stable_log_softmax(x):
    shifted = x - x.max(dim=-1, keepdim=True).values                 # the largest entry becomes 0
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))


log_softmax_cases = [(torch.tensor([1000.0, 1001.0, 1002.0]),),
                     (torch.tensor([[-1000.0, -1001.0], [3.0, float("-inf")]]),),
                     (torch.randn(4, 7, generator=torch.Generator().manual_seed(3)) * 50,)]
assert check("stable_log_softmax", stable_log_softmax, lambda x: torch.log_softmax(x, dim=-1), log_softmax_cases)
print([round(v, 4) for v in stable_log_softmax(torch.tensor([1000.0, 1001.0, 1002.0])).tolist()])


# %% [markdown]
# ## Exercise 3: grouped-query attention without copying the keys and values
# Split the query heads into `[groups, heads_per_group]` (head `h` = group `h // r`, member
# `h % r`, the same order as `repeat_kv`), give `k` and `v` a size-1 axis for the members, and let
# the matrix products broadcast. Nothing of `k` or `v` is copied, and the check, which watches
# every operation for a repeated copy of `k` or `v`, agrees.

# %% tags=["nbval-check-output"]
def gqa_no_copy(q, k, v):
    groups = k.shape[1]
    q = rearrange(q, "b (g r) s d -> b g r s d", g=groups)      # [b, G, r, s, d]
    k, v = k[:, :, None], v[:, :, None]                         # [b, G, 1, s, d]
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5       # [b, G, r, s, s]
    scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2]), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v                     # [b, G, r, s, d]
    return rearrange(out, "b g r s d -> b (g r) s d")            # [b, heads, s, d]


def gqa_reference(q, k, v):
    n_rep = q.shape[1] // k.shape[1]
    return explicit_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=True)[0]


exercise_generator = torch.Generator().manual_seed(4)
gqa_cases = [(torch.randn(2, 4, 5, 8, generator=exercise_generator), *torch.randn(2, 2, 2, 5, 8, generator=exercise_generator)),
             (torch.randn(1, 8, 6, 4, generator=exercise_generator), *torch.randn(2, 1, 1, 6, 4, generator=exercise_generator)),
             (torch.randn(1, 3, 4, 4, generator=exercise_generator), *torch.randn(2, 1, 3, 4, 4, generator=exercise_generator))]
assert check("gqa_no_copy", forbid_repeated_copies(gqa_no_copy, "k", "v"), gqa_reference, gqa_cases)

# %% [markdown]
# The same check fails the version that copies, and names the line that made the copy:

# %% tags=["nbval-check-output"]
assert not check("gqa_no_copy (with repeat_kv)", forbid_repeated_copies(gqa_reference, "k", "v"), gqa_reference,
                 gqa_cases)

# %% [markdown]
# The trick matters most during decoding, when one new query per head reads a long cache: the
# repeated cache of ChatGLM3-6B would be 16 times the stored one. PyTorch's
# `scaled_dot_product_attention` can also do this itself with `enable_gqa=True` (PyTorch 2.5+).

# %% tags=["nbval-check-output"]
q, k, v = gqa_cases[0]
torch_version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
if torch_version >= (2, 5):
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(sdpa, gqa_no_copy(q, k, v), rtol=0, atol=1e-5)
print("GQA without copies matches the reference:", list(gqa_no_copy(q, k, v).shape))

# %% [markdown]
# ## Exercise 4: find the previous-token heads
# Query `i` (for `i >= 1`) puts `attn[..., i, i - 1]` on its previous token; indexing the last two
# dims with two index tensors picks that sub-diagonal for every layer and head at once.

# %% tags=["nbval-check-output"]
from glm3_teach import load_pretrained, load_tokenizer, viz
from glm3_teach.attention import causal_mask
from glm3_teach.checks import check_value
from glm3_teach.paths import data_dir


def previous_token_scores(attn):
    rows = torch.arange(1, attn.shape[-1])            # queries 1 .. seq-1
    return attn[..., rows, rows - 1].mean(-1)         # [layers, heads, seq-1] -> [layers, heads]


base_dir = data_dir() / "checkpoints" / "base"
trained, trained_tokenizer = load_pretrained(base_dir, dtype=torch.float32), load_tokenizer(base_dir)
trained_ids = trained_tokenizer.encode("小猫喜欢喝绿茶。The cat likes tea.", add_special_tokens=True)
trained_attn, _ = viz.compute_attentions(trained, trained_ids)                     # [layers, heads, q, k]
pattern_scores = viz.head_scores(trained_attn, *viz.token_info(trained_tokenizer, trained_ids))


def reference_previous(attn):
    return viz.head_scores(attn, ["x"] * attn.shape[-1])["previous"]


random_attn = torch.softmax(torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(5))
                            .masked_fill(~causal_mask(6), float("-inf")), dim=-1)
assert check("previous_token_scores", previous_token_scores, reference_previous, [(trained_attn,), (random_attn,)])
previous_layers = sorted({layer for layer, _ in (previous_token_scores(trained_attn) > 0.3).nonzero().tolist()})
assert check_value("layers with a previous-token head", previous_layers,
                   sorted({layer for layer, _ in (pattern_scores["previous"] > 0.3).nonzero().tolist()}))
pairs = (previous_token_scores(trained_attn) > 0.3).nonzero().tolist()
n = len(trained_ids)
uniform = causal_mask(n).float() / torch.arange(1, n + 1)[:, None]               # [q, k] 1/(i+1) on allowed keys
chance = previous_token_scores(uniform[None, None]).item()
print("previous-token heads (> 0.3):", pairs, " scores", [round(pattern_scores["previous"][l, h].item(), 2) for l, h in pairs],
      f" uniform head: {chance:.2f}")
assert previous_layers == [3] and pairs == [[3, 0], [3, 3]] and abs(chance - 0.17) < 0.01

# %% [markdown]
# Both are in layer 3, the last layer: heads 0 and 3. They are weak (0.33 and 0.34, where a
# uniform head scores 0.17 on this sentence); in the viewer, pick layer 3 and one of them, tick
# "hide [gMASK] sop", and their strongest lines run one step up from each query.

# %% [markdown]
# ## Exercise 5 (stretch): ChatGLM3's attention layer, loadable from a checkpoint
# Two parameters with ChatGLM3's names: `query_key_value` projects to all query heads plus one key
# and one value per KV group and is the model's only Linear with a bias (`add_qkv_bias`); `dense`
# maps the concatenated heads back, without a bias. The forward is the lesson's hand-assembled
# layer of section 9: cut, RoPE on q and k, repeat the groups, causal attention, concatenate, `dense`.

# %%
from torch import nn

from glm3_teach.attention import split_qkv
from glm3_teach.rope import apply_rotary_pos_emb


class MySelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads, self.num_kv_groups, self.head_dim = (config.num_attention_heads, config.num_kv_groups,
                                                             config.kv_channels)
        projection = self.num_heads * self.head_dim
        self.query_key_value = nn.Linear(config.hidden_size, projection + 2 * self.num_kv_groups * self.head_dim,
                                         bias=True)
        self.dense = nn.Linear(projection, config.hidden_size, bias=False)

    def forward(self, hidden_states, rope_cache):
        mixed = self.query_key_value(hidden_states)                                     # [b, s, (H + 2G) * D]
        q, k, v = split_qkv(mixed, self.num_heads, self.num_kv_groups, self.head_dim)   # [b, H | G | G, s, D]
        q, k = apply_rotary_pos_emb(q, rope_cache), apply_rotary_pos_emb(k, rope_cache)
        n_rep = self.num_heads // self.num_kv_groups
        out, _ = explicit_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), is_causal=True)  # [b, H, s, D]
        return self.dense(rearrange(out, "b h s d -> b s (h d)"))                       # [b, s, hidden]


def build_self_attention(config):
    return MySelfAttention(config)


# %% tags=["nbval-check-output"]
from glm3_teach import ChatGLMConfig, seed_everything
from glm3_teach.attention import SelfAttention
from glm3_teach.checks import Case, forbid_modules
from glm3_teach.rope import build_rope_cache

generator = seed_everything(12)
layer_configs = {"course": ChatGLMConfig.course(),
                 "8 heads, 2 groups": ChatGLMConfig.course(num_attention_heads=8, kv_channels=32)}
package_layers = {name: SelfAttention(c).eval() for name, c in layer_configs.items()}
for layer in package_layers.values():
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


def rope_rows(name, hidden_states):
    batch, seq = hidden_states.shape[:2]
    return build_rope_cache(seq, layer_configs[name].kv_channels // 2)[None].expand(batch, -1, -1, -1)


def package_output(name, hidden_states):
    return package_layers[name](hidden_states, rope_rows(name, hidden_states), is_causal=True)[0]


def built_output(build, name, hidden_states):
    layer = build(layer_configs[name])
    layer.load_state_dict(package_layers[name].state_dict(), strict=True)
    return layer.eval()(hidden_states, rope_rows(name, hidden_states))


layer_cases = [Case(args=(name, torch.randn(batch, seq, layer_configs[name].hidden_size, generator=generator)), label=label)
               for name, batch, seq, label in [("course", 2, 7, "course config"), ("8 heads, 2 groups", 1, 5, "4 heads per group")]]
with torch.no_grad():
    assert check("build_self_attention",
                 forbid_modules(lambda name, x: built_output(build_self_attention, name, x), SelfAttention),
                 package_output, layer_cases, atol=1e-5, rtol=1e-4)
print("parameters:", sorted(build_self_attention(layer_configs["course"]).state_dict()))

# %% [markdown]
# ## Exercise 6 (stretch): online softmax, one block of keys at a time
# Per query keep the running maximum `m`, the running sum `row_sum` (the lesson's `l`) of `exp(score - m)` and the running
# output `acc`. A block's scores may raise the maximum; then the old sum and output were computed
# against a smaller shift and are multiplied by `exp(m - m_new)` (at most 1, so nothing overflows).
# Starting from `m = -inf`, the first block's scale is `exp(-inf) = 0`, which clears the empty start.

# %% tags=["nbval-check-output"]
from glm3_teach.checks import forbid_whole_axis


def blockwise_attention(q, k, v, block_size):
    m = torch.full(q.shape[:-1] + (1,), float("-inf"))                  # [b, h, q_len, 1] running max
    row_sum = torch.zeros(q.shape[:-1] + (1,))                           # [b, h, q_len, 1] running sum
    acc = torch.zeros_like(q)                                            # [b, h, q_len, d] running output
    for start in range(0, k.shape[-2], block_size):
        k_block, v_block = k[..., start:start + block_size, :], v[..., start:start + block_size, :]  # views
        scores = q @ k_block.transpose(-2, -1) / q.shape[-1] ** 0.5      # [b, h, q_len, block]
        m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
        scale = torch.exp(m - m_new)                                     # rescales what was kept so far
        weights = torch.exp(scores - m_new)                              # [b, h, q_len, block]
        row_sum = row_sum * scale + weights.sum(dim=-1, keepdim=True)
        acc = acc * scale + weights @ v_block
        m = m_new
    return acc / row_sum


generator = seed_everything(13)
block_cases = [Case(args=(torch.randn(1, 2, 3, 8, generator=generator), torch.randn(1, 2, 23, 8, generator=generator),
                          torch.randn(1, 2, 23, 8, generator=generator), 5), label="23 keys in blocks of 5"),
               Case(args=(30 * torch.randn(2, 1, 2, 4, generator=generator), torch.randn(2, 1, 17, 4, generator=generator),
                          torch.randn(2, 1, 17, 4, generator=generator), 4), label="large scores: exp would overflow")]
assert check("blockwise_attention", forbid_whole_axis(blockwise_attention, "k", -2),
             lambda q, k, v, block_size: explicit_attention(q, k, v)[0], block_cases, atol=1e-5, rtol=1e-4)
assert not check("one block of everything", forbid_whole_axis(lambda q, k, v, block_size: explicit_attention(q, k, v)[0], "k", -2),
                 lambda q, k, v, block_size: explicit_attention(q, k, v)[0], block_cases[:1])
