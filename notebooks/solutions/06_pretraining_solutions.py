# %% [markdown]
# # 06 · 预训练 Pretraining: solutions
#
# Worked answers to the exercises of lesson 06. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import math

import torch
import torch.nn.functional as F

from glm3_teach.checks import check
from glm3_teach.data import BlockSampler, TokenDataset, make_loader
from glm3_teach.tokenizer import load_tokenizer
from glm3_teach.train import (TrainConfig, TrainData, build_model, load_data, lr_at, next_token_loss,
                              parameter_groups, train)
from glm3_teach.train import masked_next_token_loss as package_masked_loss

tokenizer = load_tokenizer()


# %% [markdown]
# ## Exercise 1: write the AdamW step
# The moments first, then the bias corrections `1 - beta ** step`, then the decoupled decay
# (the weight shrinks by `1 - lr * weight_decay`, whatever its gradient), then the update.
# `torch.optim.AdamW` decays before it adds the update; both orders use the weight before the
# step, so the decay term is `lr * weight_decay * param` either way.

# %% tags=["nbval-check-output"]
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad                    # m_t
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad       # v_t
    m_hat = exp_avg / (1 - beta1 ** step)
    v_hat = exp_avg_sq / (1 - beta2 ** step)
    param = param * (1 - lr * weight_decay)                           # decoupled weight decay
    param = param - lr * m_hat / (v_hat.sqrt() + eps)
    return param, exp_avg, exp_avg_sq


def torch_adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One step of torch.optim.AdamW from the given state: the reference."""
    weight = torch.nn.Parameter(param.clone())
    optimizer = torch.optim.AdamW([weight], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    optimizer.state[weight] = {"step": torch.tensor(float(step - 1)), "exp_avg": exp_avg.clone(),
                               "exp_avg_sq": exp_avg_sq.clone()}
    weight.grad = grad.clone()
    optimizer.step()
    state = optimizer.state[weight]
    return weight.detach(), state["exp_avg"], state["exp_avg_sq"]


adam_gen = torch.Generator().manual_seed(2)
param0, grad0 = torch.randn(4, 3, generator=adam_gen), torch.randn(4, 3, generator=adam_gen)
m0, v0 = 0.1 * torch.randn(4, 3, generator=adam_gen), 0.01 * torch.rand(4, 3, generator=adam_gen)
adam_cases = [(param0, grad0, torch.zeros(4, 3), torch.zeros(4, 3), 1, 1e-3, 0.9, 0.95, 1e-8, 0.1),
              (param0, grad0, m0, v0, 5, 3e-3, 0.9, 0.95, 1e-8, 0.1),
              (param0, 1e-3 * grad0, m0, v0, 200, 2e-3, 0.8, 0.999, 1e-8, 0.0)]
assert check("adamw_step", adamw_step, torch_adamw_step, adam_cases, atol=1e-6)


# %% [markdown]
# ## Exercise 2: the loss on a masked batch
# Per-token losses with `reduction="none"`, zeroed where the mask is 0, averaged over the counted
# targets (not over all of them: the mean must not depend on how long the prompt was).

# %% tags=["nbval-check-output"]
def masked_next_token_loss(logits, input_ids, loss_mask):
    targets = input_ids[:, 1:]                                                   # [batch, seq]
    per_token = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")  # [batch*seq]
    mask = loss_mask.flatten().float()
    return (per_token * mask).sum() / mask.sum()


def masked_loss_reference(logits, input_ids, loss_mask):
    """The package's loss: labels [batch, seq + 1] with -100 where a target does not count."""
    labels = input_ids.clone()
    labels[:, 1:] = labels[:, 1:].masked_fill(loss_mask == 0, -100)
    padded = torch.cat([logits, logits[:, -1:]], dim=1)        # its logits line up with labels [batch, seq + 1]
    return package_masked_loss(padded, labels)


gen = torch.Generator().manual_seed(1)
mask_cases = []
for batch_size, seq in ((1, 4), (2, 6), (3, 5)):
    mask = (torch.rand(batch_size, seq, generator=gen) > 0.4).long()
    mask[0, -1] = 1
    mask_cases.append((torch.randn(batch_size, seq, 11, generator=gen), torch.randint(0, 11, (batch_size, seq + 1), generator=gen), mask))
assert check("masked_next_token_loss", masked_next_token_loss, masked_loss_reference, mask_cases)


# %% [markdown]
# ## Exercise 3: write the loop, with gradient accumulation
# Clear the gradients once per optimizer step, not per micro-batch, so they add up. Divide each
# micro-batch's loss by their number before `backward()`, so the summed gradient is the gradient
# of the mean (and the logged loss is the mean). Clip, step and advance the schedule once, after
# the last micro-batch.

# %% tags=["nbval-check-output"]
def my_train_accumulated(model, data, config):
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(
        step, config.lr, config.warmup_steps, config.max_steps, config.min_lr_ratio) / config.lr)
    batches = iter(make_loader(data.train, config.batch_size, BlockSampler(len(data.train), config.seed)))
    losses = []
    model.train()
    for _ in range(config.max_steps):
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(config.grad_accum_steps):
            batch = next(batches)                                                # [batch, block_size + 1]
            loss = next_token_loss(model(batch[:, :-1]).logits, batch) / config.grad_accum_steps
            loss.backward()                                                      # adds into .grad
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(step_loss)
    return losses


SMALL = dict(num_layers=2, hidden_size=128, ffn_hidden_size=341, kv_channels=32, num_attention_heads=4,
             multi_query_group_num=2, padded_vocab_size=4096, seq_length=256)
data = load_data(TrainConfig(model=SMALL, max_documents=40, block_size=32), tokenizer)
loop_data = TrainData(TokenDataset(data.train.tokens[:32 * 40 + 1], 32, 1), TokenDataset(data.val.tokens[:32 * 4 + 1], 32, 1))
loop_cases = [TrainConfig(model=SMALL, block_size=32, batch_size=2, grad_accum_steps=accum, max_steps=3, warmup_steps=1,
                          lr=lr, eval_every=0, eval_blocks=2, progress=False, seed=seed, device="cpu")
              for accum, lr, seed in ((1, 3e-3, 0), (2, 3e-3, 1), (3, 1e-2, 2))]
assert check("my_train_accumulated", lambda config: my_train_accumulated(build_model(config), loop_data, config),
             lambda config: train(build_model(config), loop_data, config)["loss"], loop_cases, atol=1e-5)
