# %% [markdown]
# # 10 · 高效微调 Parameter-efficient fine-tuning: solutions
#
# Worked answers to the exercises of lesson 10. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import torch
from torch import nn

from glm3_teach import ChatGLMConfig, check, load_pretrained, load_tokenizer, peft, seed_everything
from glm3_teach.attention import split_qkv
from glm3_teach.paths import data_dir
from glm3_teach.rope import apply_rotary_pos_emb

torch.set_num_threads(1)
seed_everything(0)
BASE = data_dir() / "checkpoints" / "base"
tok = load_tokenizer(BASE)
glm6b = ChatGLMConfig.chatglm3_6b()
pt_model = load_pretrained(BASE, dtype=torch.float32)
config = pt_model.config
peft.apply_ptuning(pt_model, pre_seq_len=16)
pt_model.eval()
ids = torch.tensor([tok.build_chat_input("乌龙茶多少钱？")])


# %% [markdown]
# ## Exercise 1: LoRALinear.forward
# The frozen path sees the whole input; dropout thins only what enters `A`. `B` maps the `r`
# features back to `out`, and the scaling `alpha / r` multiplies the update, not the base output.

# %% tags=["nbval-check-output"]
class MyLoRALinear(nn.Module):
    def __init__(self, base, r, alpha, dropout=0.0):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(self.dropout(x)))   # [..., out]


def lora_pair(x, seed):
    torch.manual_seed(seed)
    base = nn.Linear(x.shape[-1], 6)
    mine, ref = MyLoRALinear(base, 2, 8), peft.LoRALinear(base, 2, 8)
    A, B = torch.randn(2, x.shape[-1]), torch.randn(6, 2)
    with torch.no_grad():
        for layer in (mine, ref):
            layer.lora_A.weight.copy_(A)
            layer.lora_B.weight.copy_(B)
    return mine, ref


assert check("LoRALinear.forward", lambda x, s: lora_pair(x, s)[0].eval()(x), lambda x, s: lora_pair(x, s)[1].eval()(x),
             [(torch.randn(3, 5), 0), (torch.randn(2, 4, 5), 1)])


# %% [markdown]
# ## Exercise 2: P-Tuning's trainable count
# Each virtual token holds, for every layer, a key and a value for every KV group, `head_dim`
# numbers each: `num_layers * 2 * num_kv_groups * kv_channels` per token. ChatGLM3-6B:
# 28 * 2 * 2 * 128 = 14,336 per token, times 128 tokens = 1,835,008.

# %% tags=["nbval-check-output"]
def ptuning_count(config, pre_seq_len):
    return pre_seq_len * config.num_layers * 2 * config.num_kv_groups * config.kv_channels


assert ptuning_count(glm6b, 128) == 1_835_008
assert check("ptuning_count", ptuning_count, lambda c, n: peft.ptuning_parameter_count(c, n, False),
             [(glm6b, 128), (config, 16), (ChatGLMConfig.course(num_layers=2, multi_query_group_num=1), 7)])


# %% [markdown]
# ## Exercise 3: the prefix that gets rotated
# The bug was to treat the virtual tokens as text. In ChatGLM3 the prefix enters as the *past* KV
# cache, and the layers apply RoPE to the new tokens' keys before concatenating them to the past:
# the prefix keys are used as learned, and the real tokens keep positions 0, 1, 2, ... . Rotating the
# prefix would tie each virtual token to a fake position, and shifting the real tokens by 16 would
# change every query-key distance the base model learned with.

# %% tags=["nbval-check-output"]
def real_keys(model, input_ids):
    c, layer0 = model.config, model.transformer.encoder.layers[0]
    hidden = layer0.input_layernorm(model.transformer.embedding(input_ids))
    return split_qkv(layer0.self_attention.query_key_value(hidden), c.num_attention_heads, c.num_kv_groups,
                     c.kv_channels)[1]


def layer0_keys(model, input_ids):
    prefix = model.transformer.get_prompt(1, torch.float32)[0][0]                      # [1, groups, p, head_dim]
    keys = real_keys(model, input_ids)                                                 # [1, groups, seq, head_dim]
    rope = model.transformer.rotary_pos_emb(model.config.seq_length)[: keys.shape[2]]  # positions 0 .. seq-1
    return torch.cat([prefix, apply_rotary_pos_emb(keys, rope)], dim=2)


with torch.no_grad():
    assert check("layer0_keys", lambda i: layer0_keys(pt_model, i),
                 lambda i: pt_model(i, use_cache=True).kv_cache[0][0], [ids])
