# %% [markdown]
# # 08 · 对话微调 Chat fine-tuning: solutions
#
# Worked answers to the exercises of lesson 08. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
import torch

from glm3_teach import check, load_pretrained, load_tokenizer, pick_device, seed_everything
from glm3_teach.dialogues import load_sft
from glm3_teach.evaluate import answer_items
from glm3_teach.paths import data_dir
from glm3_teach.sft import (IGNORE_INDEX, LengthGroupedBatches, SFTCollator, SFTDataset, encode_conversation,
                            encode_with_flags, evenly_spaced, shift_labels, validate_item)
from glm3_teach.train import TrainConfig, TrainData, train

seed_everything(0)
torch.set_num_threads(1)
device = pick_device()
CHAT = data_dir() / "checkpoints" / "chat"
tok = load_tokenizer(CHAT)
train_items, val_items = load_sft("train"), load_sft("val")
plain_train = evenly_spaced([i for i in train_items if "tools" not in i], 480)
plain_val = evenly_spaced([i for i in val_items if "tools" not in i], 64)
item = next(i for i in train_items if i["meta"]["intent"] == "followup" and i["meta"]["lang"] == "zh")
ids, flags = encode_with_flags(item, tok)


# %% [markdown]
# ## Exercise 1: the shifted mask
# The prediction made at token `i - 1` is the one that produces token `i`, so token `i`'s label
# looks at the flag one position back. Nothing comes before token 0, so it is never a target.

# %% tags=["nbval-check-output"]
def my_shift_labels(ids, flags):
    return [IGNORE_INDEX] + [token if flag else IGNORE_INDEX for token, flag in zip(ids[1:], flags[:-1])]


assert check("shift_labels", my_shift_labels, shift_labels,
             [(ids, flags), ([5, 6, 7, 8], [False, True, True, False]), ([1], [True])])


# %% [markdown]
# ## Exercise 2: the collator that loses the stop
# Cutting a sample at `max_length` removes its end: the `</s>` target goes first, and a short
# `max_length` can remove every target of a row. Dropping the sample keeps what is trained honest.

# %% tags=["nbval-check-output"]
def fixed_collate(samples, max_length):
    kept = [s for s in samples if len(s["input_ids"]) <= max_length]
    width = max(len(s["input_ids"]) for s in kept)
    input_ids = torch.tensor([s["input_ids"] + [tok.pad_token_id] * (width - len(s["input_ids"])) for s in kept])
    labels = torch.tensor([s["labels"] + [IGNORE_INDEX] * (width - len(s["labels"])) for s in kept])
    return {"input_ids": input_ids, "labels": labels}


samples = sorted((dict(zip(("input_ids", "labels"), encode_conversation(i, tok))) for i in plain_val),
                 key=lambda s: len(s["input_ids"]))
samples = samples[:4] + samples[-4:]                                   # the four shortest and the four longest
assert check("fixed_collate", fixed_collate, lambda s, n: SFTCollator(tok.pad_token_id, n)(s),
             [(samples, 40), (samples, 200)])

# %% [markdown]
# ## Exercise 3: a new intent
# Twelve training phrasings and four held-out ones, each composed with a few openers; the answer
# names both ways to pay. Mixed with as many old dialogues, thirty steps (about two and a half
# epochs of these 96 dialogues) teach the new intent to the chat model.

# %% tags=["nbval-check-output"]
PAY_TRAIN = ["怎么付款？", "可以用什么付钱？", "付款方式有哪些？", "能用微信付吗？", "支持支付宝吗？", "你们收什么付款？",
             "我该怎么付钱？", "付钱用什么？", "可以在线支付吗？", "买茶怎么付款呀？", "结账用什么方式？", "能扫码付款吗？"]
PAY_HELDOUT = ["请问有哪些支付方式？", "我想知道怎么给钱。", "下单后如何支付？", "你们那儿怎么结账？"]
OPENERS = ["", "你好，", "请问，", "老板，"]
ANSWER = "我们支持微信和支付宝付款。"


def payment_items(split):
    questions = PAY_TRAIN if split == "train" else PAY_HELDOUT
    items = []
    for k, question in enumerate(questions):
        for opener in (OPENERS if split == "train" else OPENERS[:1]):
            items.append({"conversations": [{"role": "user", "content": opener + question},
                                            {"role": "assistant", "content": ANSWER}],
                          "meta": {"intent": "payment", "lang": "zh", "template": f"payment.zh.{split}.{k}",
                                   "split": split, "expect": ["微信"]}})
    return items


def learn_new_intent(make_items, steps=30):
    new_train, new_heldout = make_items("train"), make_items("heldout")
    learner = load_pretrained(CHAT, dtype=torch.float32, device=device)
    accuracy = lambda: sum(bool(r["correct"]) for r in answer_items(learner, tok, new_heldout, 40, progress=False)) / len(new_heldout)
    before = accuracy()
    mix = new_train + evenly_spaced(plain_train, len(new_train))
    data = TrainData(LengthGroupedBatches(SFTDataset(mix, tok, 256), 1024, 8),
                     LengthGroupedBatches(SFTDataset(new_heldout, tok, 256), 1024, 8))
    train(learner, data, TrainConfig(batch_size=1, max_steps=steps, lr=1e-3, warmup_steps=3, eval_every=0,
                                     progress=False, device=str(device), seed=0))
    return before, accuracy()


def intent_report(make_items):
    train_part, heldout_part = make_items("train"), make_items("heldout")
    for number, new_item in enumerate(train_part + heldout_part):
        validate_item(new_item, f"item {number}")
    seen = {i["meta"]["template"] for i in train_part}
    before, after = learn_new_intent(make_items)
    print(f"held-out accuracy on the new intent: {before:.0%} -> {after:.0%}")
    return {"valid": True, "templates_disjoint": not seen & {i["meta"]["template"] for i in heldout_part},
            "learned": after > before}


assert check("payment_items", intent_report, lambda make: {"valid": True, "templates_disjoint": True, "learned": True},
             [(payment_items,)])
