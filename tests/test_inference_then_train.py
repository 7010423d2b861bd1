"""A model used under ``torch.inference_mode`` (evaluation, chat) can be trained afterwards.

Lesson 08's "add an intent" exercise evaluates a model, fine-tunes it, and evaluates again; the
rope table the model caches must therefore never be an inference tensor.
"""

import torch

from glm3_teach.config import ChatGLMConfig
from glm3_teach.model import ChatGLMForCausalLM

TINY = dict(num_layers=2, hidden_size=64, ffn_hidden_size=96, kv_channels=16, num_attention_heads=4,
            multi_query_group_num=2, padded_vocab_size=128, seq_length=32)


def test_training_after_inference_mode_backpropagates():
    torch.manual_seed(0)
    model = ChatGLMForCausalLM(ChatGLMConfig(**TINY))
    ids = torch.randint(0, 128, (2, 10))
    with torch.inference_mode():
        before = model(ids).logits
    loss = model(ids).logits.float().logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert torch.equal(model(ids).logits.detach(), before)      # the same numbers in both modes


def test_the_cached_rope_table_is_a_normal_tensor():
    model = ChatGLMForCausalLM(ChatGLMConfig(**TINY))
    with torch.inference_mode():
        table = model.transformer.rotary_pos_emb(TINY["seq_length"])
    assert not table.is_inference()
