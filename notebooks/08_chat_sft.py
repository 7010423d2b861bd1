# %% [markdown]
# # 08 · 对话微调 Chat fine-tuning
#
# Lesson 07 ended with a base model that continues stories. Ask it "乌龙茶多少钱？" and it
# writes the next sentence of a story; it has no idea that a question deserves an answer, or
# that after answering it should stop. This lesson turns it into the first application of the
# course: a bilingual customer-service assistant for the tea shop 清泉茶铺 / Clear Spring Tea
# Shop, fine-tuned in **ChatGLM3's exact fine-tuning format**. Then it measures, honestly, what
# the assistant learned: facts asked in phrasings it saw, facts asked in phrasings it never saw,
# whether it stops, whether it answers in the right language, and what it forgot.
#
# **You will learn**
# - ChatGLM3's conversation format at the level of token ids, and which tokens carry loss;
# - the **one-token shift** of the loss mask: why the token *after* a reply (`<|user|>` or `</s>`)
#   is a target and `<|assistant|>` is not, drawn as coloured tokens;
# - the same conversation under ChatGLM3's, nanochat's and minimind's conventions, side by side;
# - how the course's training dialogues are generated, and why whole *templates* are held out;
# - supervised fine-tuning (SFT) through lesson 06's training loop, in the notebook, with a live
#   loss curve; then the shipped chat model and its recipe;
# - `chat()` and `stream_chat()` with ChatGLM3's semantics, multi-turn, and a chat box;
# - one evaluation harness (`glm3_teach.evaluate`), base vs chat, seen vs held-out phrasings,
#   with the wrong answers shown, and forgetting measured in bits per byte.

# %% [markdown]
# ## 1. Setup
#
# Two checkpoints: the **base** model of lesson 06 and the **chat** model this lesson's recipe
# made from it (`python -m glm3_teach.sft --config configs/chat_stage1.toml`, then `--config
# configs/chat_stage2.toml`, then `--config configs/chat.toml`; add `--force` to replace the
# shipped checkpoints). The dialogues live in
# `data/sft/` (`python -m glm3_teach.dialogues --seed 3 --out data/sft`).

# %% tags=["nbval-ignore-output"]
import json
import time

import matplotlib.pyplot as plt
import torch

from glm3_teach import check, load_pretrained, load_tokenizer, pick_device, seed_everything
from glm3_teach.chat import chat, chat_box_reply, stream_chat
from glm3_teach.dialogues import load_sft
from glm3_teach.fonts import use_cjk_font
from glm3_teach.paths import data_dir
from glm3_teach.sft import (IGNORE_INDEX, LengthGroupedBatches, SFTCollator, SFTDataset, encode_conversation,
                            encode_with_flags, evenly_spaced, loss_mask_html, shift_labels)
from IPython.display import HTML, Markdown, display

use_cjk_font()
seed_everything(0)
torch.set_num_threads(1)
device = pick_device()
BASE, CHAT = data_dir() / "checkpoints" / "base", data_dir() / "checkpoints" / "chat"
base = load_pretrained(BASE, dtype=torch.float32, device=device)
chat_model = load_pretrained(CHAT, dtype=torch.float32, device=device)
tok = load_tokenizer(CHAT)
train_items, val_items, heldout_items = load_sft("train"), load_sft("val"), load_sft("heldout")
print(device, "|", len(train_items), "train,", len(val_items), "val,", len(heldout_items), "held-out dialogues")

# %% [markdown]
# The base model, asked a question in ChatGLM3's chat layout, greedy:

# %% tags=["nbval-check-output"]
reply, _ = chat(base, tok, "乌龙茶多少钱？", do_sample=False, max_new_tokens=40)
print(repr(reply))

# %% [markdown]
# A story fragment, and 40 tokens of it: it never produced a stop token. Both problems are what
# fine-tuning fixes.
#
# ## 2. A conversation, token by token
#
# A fine-tuning item is a JSON object: a list of `conversations` (messages with a `role` and
# `content`), optionally `tools` (lesson 09). The course adds a `meta` key for evaluation, which
# training ignores. Here is a two-turn item from the training split:

# %% tags=["nbval-check-output"]
item = next(i for i in train_items if i["meta"]["intent"] == "followup" and i["meta"]["lang"] == "zh")
print(json.dumps(item["conversations"], ensure_ascii=False, indent=1))

# %% [markdown]
# ChatGLM3 turns it into ids with `build_single_message(role, metadata, content)` for each
# message: the role's special token, then `encode(metadata + "\n")`, then `encode(content)`, with
# `[gMASK] sop` in front and `</s>` at the very end. No separator between messages: the next role
# token *is* the separator.

# %% tags=["nbval-check-output"]
ids, labels = encode_conversation(item, tok)
print(len(ids), "ids:", ids[:12], "...")
print(repr(tok.decode(ids)))

# %% [markdown]
# ## 3. Which tokens carry loss: the one-token shift
#
# Every token gets a **flag**: 0 for `[gMASK] sop`, system and user messages, and `</s>`; the
# message's `loss` (default true) for assistant messages. The flag says whether the prediction
# *made at* that token is trained. The model predicts token `i` at position `i - 1`, so the label
# of token `i` is
#
# `labels[i] = ids[i] if flag[i - 1] else -100`
#
# (-100 is PyTorch's "ignore this target"). The table shows the positions around the first reply:

# %% tags=["nbval-check-output"]
ids, flags = encode_with_flags(item, tok)
labels = shift_labels(ids, flags)
start = ids.index(tok.special_id("<|assistant|>")) - 2
print(f"{'pos':>4} {'token':>16} {'flag':>5} {'label':>7}")
for i in range(start, start + 12):
    piece = tok.token_text(ids[i]).replace("\n", "\\n")
    print(f"{i:>4} {piece:>16} {int(flags[i]):>5} {labels[i]:>7}")

# %% [markdown]
# Read it row by row. `<|assistant|>` has flag 1 (the prediction made *at* it, of the newline,
# is trained) but label -100: nothing before it said "now answer", so the model is never asked
# to predict it. The reply's tokens are targets. And the token right **after** the reply, the
# next `<|user|>` (or `</s>` at the end), is a target too: the last reply token's flag is 1.
# That is how the model learns to *end its turn* by naming who speaks next, and why `chat()`
# stops on `<|user|>`, `<|observation|>` and `</s>`.
#
# In colour (green: a target; grey: context only; bold: special tokens; hover for ids):

# %%
display(HTML(loss_mask_html(ids, labels, tok)))

# %% tags=["nbval-check-output"]
targets = [tok.decode([t]) for t in labels if t != IGNORE_INDEX]
print(f"{len(targets)} of {len(ids)} tokens are targets; the ones after each reply: "
      f"{[tok.decode([ids[i]]) for i in range(1, len(ids)) if flags[i - 1] and not flags[i]]}")
assert labels[ids.index(tok.special_id("<|assistant|>"))] == IGNORE_INDEX
assert labels[-1] == tok.eos_token_id and tok.special_id("<|user|>") in labels


# %% [markdown]
# ## 4. Three conventions for the same conversation
#
# Every chat model marks turns and masks the loss, but the details differ. Here is one
# single-turn conversation under three conventions, rendered with the course tokenizer for the
# text and one made-up token per marker:
#
# - **ChatGLM3**: flags on the *predicting* token, shifted (section 3). Trained targets: the
#   newline after `<|assistant|>`, the reply, and the next role token or `</s>`.
# - **nanochat** (Karpathy): `<|bos|> <|user_start|> … <|user_end|> <|assistant_start|> …
#   <|assistant_end|>`; the mask is on the *target* token: the reply and `<|assistant_end|>`
#   (its training loop uses `targets = ids[1:]` with `mask[1:]`).
# - **minimind**: ChatML text `<|im_start|>assistant\n … <|im_end|>\n`; its `_generate_loss_mask`
#   marks positions `start + 1 … end + len(eos)` of the target sequence, so (in the version we
#   read) the first reply token is *not* a target, while `<|im_end|>`, its newline and one token
#   after them are.

# %%
def chatglm3_targets(question, answer):
    ids, labels = encode_conversation({"conversations": [{"role": "user", "content": question},
                                                         {"role": "assistant", "content": answer}]}, tok)
    pieces = [tok.decode([i]) for i in ids]
    return pieces, [label != IGNORE_INDEX for label in labels]


def nanochat_targets(question, answer):
    q, a = [tok.decode([i]) for i in tok.encode(question)], [tok.decode([i]) for i in tok.encode(answer)]
    pieces = ["<|bos|>", "<|user_start|>", *q, "<|user_end|>", "<|assistant_start|>", *a, "<|assistant_end|>"]
    mask = [0] * (4 + len(q)) + [1] * (len(a) + 1)            # on the target token itself
    return pieces, [bool(m) for m in mask]


def minimind_targets(question, answer):
    q, a = [tok.decode([i]) for i in tok.encode(question)], [tok.decode([i]) for i in tok.encode(answer)]
    pieces = ["<|im_start|>", "user", "\n", *q, "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n", *a,
              "<|im_end|>", "\n", "<pad>"]
    start = 3 + len(q) + 2 + 3                                 # first reply token
    end = start + len(a)                                       # where <|im_end|> starts
    mask = [start + 1 <= j <= end + 2 for j in range(len(pieces))]   # range(start + 1, end + len(eos) + 1)
    return pieces, mask


def draw_targets(rows):
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.05 * len(rows)))
    for ax, (name, (pieces, mask)) in zip(axes, rows.items()):
        x = 0.0
        for piece, trained in zip(pieces, mask):
            label = piece.replace("\n", "\\n")
            width = 0.25 + 0.11 * len(label)
            ax.add_patch(plt.Rectangle((x, 0), width - 0.04, 1, color="#8fd18a" if trained else "#dddddd"))
            ax.text(x + (width - 0.04) / 2, 0.5, label, ha="center", va="center", fontsize=8)
            x += width
        ax.set_xlim(0, x)
        ax.set_ylim(0, 1)
        ax.axis("off")
        ax.set_title(name, loc="left", fontsize=9)
    fig.tight_layout()
    return fig


question, answer = "红茶多少钱？", "红茶42元。"
conventions = {"ChatGLM3 (flag on the predicting token, shifted)": chatglm3_targets(question, answer),
               "nanochat (mask on the target token)": nanochat_targets(question, answer),
               "minimind (mask on the target token, from start + 1)": minimind_targets(question, answer)}
draw_targets(conventions);

# %% tags=["nbval-check-output"]
for name, (pieces, mask) in conventions.items():
    print(f"{name.split(' ')[0]:>9}: trained {''.join(p for p, m in zip(pieces, mask) if m)!r}")

# %% [markdown]
# All three train the reply and an end-of-turn signal; they disagree at the edges. ChatGLM3 also
# trains the metadata line (the newline after `<|assistant|>`, which becomes a tool's name in
# lesson 09) and the *next speaker's* token; nanochat has a dedicated end token; minimind's loop,
# as written, skips the first reply token. A convention is a contract between training and
# inference: `chat()` must stop on exactly the tokens training taught the model to emit.
#
# ## 5. The data: generated, and split by template
#
# The course writes its own dialogues (`glm3_teach/dialogues/`): every fact comes from
# `glm3_teach.stories.TEA_SHOP`, the same source as the story corpus, so stories and dialogues
# never disagree. Each intent (price, hours, address, shipping, returns, brewing, "who are you",
# out-of-domain refusals, translation, ...) has 15 question templates per language, composed with
# openers and closers. The counts:

# %% tags=["nbval-check-output"]
from collections import Counter

by_split = {name: Counter(i["meta"]["intent"] for i in items)
            for name, items in (("train", train_items), ("val", val_items), ("heldout", heldout_items))}
for intent in list(by_split["train"])[:8]:
    print(f"{intent:>14}: train {by_split['train'][intent]:>4}, val {by_split['val'][intent]:>3}, "
          f"heldout {by_split['heldout'][intent]:>3}")
print("...", len(by_split["train"]), "intents")

# %% [markdown]
# **Why split by template, not by item?** If the same phrasing appeared in training and test with
# a different product, a model that memorised strings would look perfect. So template *k* of
# every intent is held out when `k % 5 == 2`: `val` uses the training templates with new slot
# values (seen phrasings), `heldout` only the held-out templates (phrasings never seen). The gap
# between the two is what a new wording costs, the honest estimate of how the assistant does
# with a real customer's question. The templates really are disjoint:

# %% tags=["nbval-check-output"]
templates = {name: {i["meta"]["template"] for i in items}
             for name, items in (("train", train_items), ("val", val_items), ("heldout", heldout_items))}
print("templates: train", len(templates["train"]), "| val", len(templates["val"]), "| heldout", len(templates["heldout"]))
print("held-out templates seen in training:", len(templates["heldout"] & templates["train"]))
assert not templates["heldout"] & templates["train"] and templates["val"] <= templates["train"]
for t in ("price.zh", "price.en"):
    print(t, "held out:", [i["conversations"][-2]["content"] for i in heldout_items if i["meta"]["template"].startswith(t)][:2])

# %% [markdown]
# ## 6. Fine-tuning in the notebook
#
# SFT is lesson 06's training loop with two changes: batches are `{"input_ids", "labels"}`
# padded on the right (`SFTCollator`: pad id for ids, -100 for labels), and the loss is the
# shifted cross-entropy that skips -100 (`train.masked_next_token_loss`). A collator must never
# cut a sample (cutting loses its stop target: the `</s>` is the last token) and never return a
# batch without targets (0/0 = NaN), so samples that do not fit are dropped and counted.
# Batches group samples of similar length (`LengthGroupedBatches`), so a 40-token dialogue is not
# padded to a long one.
#
# A short run from the base model on 480 plain training dialogues, a couple of minutes on one core:

# %% tags=["nbval-ignore-output"]
from glm3_teach.train import TrainConfig, TrainData, evaluate as val_loss, train

plain_train = evenly_spaced([i for i in train_items if "tools" not in i], 480)
plain_val = evenly_spaced([i for i in val_items if "tools" not in i], 64)
small = TrainData(LengthGroupedBatches(SFTDataset(plain_train, tok, 256), max_tokens=1024, max_batch=16),
                  LengthGroupedBatches(SFTDataset(plain_val, tok, 256), max_tokens=1024, max_batch=16))
student = load_pretrained(BASE, dtype=torch.float32, device=device)
config = TrainConfig(batch_size=1, max_steps=40, lr=1e-3, warmup_steps=5, eval_every=10, eval_blocks=0,
                     live_plot=True, device=str(device), seed=0)
before = val_loss(student, small.val, 0, 1)["loss"]
started = time.time()
history = train(student, small, config)
print(f"{len(small.train)} batches; {time.time() - started:.0f} s; validation loss {before:.2f} -> {history['val_loss'][-1]:.2f}")

# %% tags=["nbval-check-output"]
print(f"validation loss on reply tokens: {before:.1f} -> {history['val_loss'][-1]:.1f} nats/token")
assert history["val_loss"][-1] < 0.5 * before

# %% [markdown]
# The loss on reply tokens falls steeply within a few dozen steps: the layout and the shop's
# phrasing are easy to pick up. Forty steps are not enough to learn every fact; the shipped model
# trains much longer, with every intent, the tool dialogues of lesson 09 and some story text.
#
# ## 7. The shipped chat model
#
# It is made in three stages, each one command with its own recipe, README and `training.json`
# (the command, the machine, the time and the numbers). Stage 1 (`configs/chat_stage1.toml`,
# exported to `data/checkpoints/chat_stage1`) starts not from lesson 06's base model itself but from
# `data/checkpoints/base_long`, the same model after 250 more pretraining steps on blocks of 1,536
# tokens instead of 256: a tool dialogue of lesson 09 is more than a thousand tokens long, and
# lesson 09 shows what a model that never read past 256 positions does with it. Stage 1 learns the
# shop's answers and, on copy blocks, to copy order ids. Stage 2 (`configs/chat_stage2.toml`,
# `data/checkpoints/chat_stage2`) continues it for 400 gentler steps with many more tool dialogues
# and story blocks, and stage 3 (`configs/chat.toml`, the shipped `data/checkpoints/chat`) for 1,200
# more on tool dialogues and stories alone (lesson 09 says why); their forgetting is measured against
# `base_long`, where the chain began.

# %% tags=["nbval-check-output"]
record = json.loads((CHAT / "training.json").read_text(encoding="utf-8"))
stage1 = json.loads((data_dir() / "checkpoints" / "chat_stage1" / "training.json").read_text(encoding="utf-8"))
stage2 = json.loads((data_dir() / "checkpoints" / "chat_stage2" / "training.json").read_text(encoding="utf-8"))
for name, r in (("stage 1", stage1), ("stage 2", stage2), ("stage 3", record)):
    print(f"{name}: {r['command']} | fine-tuned from {r['sft']['init_from']}")
    print(f"  {r['train_samples']:,} samples ({r['story_blocks']:,} story blocks), {r['config']['max_steps']} steps "
          f"= {r['epochs']:.2f} epochs, lr {r['config']['lr']}, seq_length {r['model_config']['seq_length']}")
assert stage1["sft"]["init_from"] == "data/checkpoints/base_long"
assert stage2["sft"]["init_from"] == "data/checkpoints/chat_stage1"
assert record["sft"]["init_from"] == "data/checkpoints/chat_stage2"
assert record["story_bits_per_byte"]["baseline"] == stage2["story_bits_per_byte"]["baseline"] == "data/checkpoints/base_long"
print(f"story bits per byte: base_long {record['story_bits_per_byte']['before']:.3f} -> "
      f"chat {record['story_bits_per_byte']['after']:.3f}")
assert chat_model.config.seq_length == record["model_config"]["seq_length"]

# %% [markdown]
# ## 8. `chat()` and `stream_chat()`
#
# `chat(model, tokenizer, query, history)` is ChatGLM3's: it builds the prompt with
# `build_chat_input`, generates until `</s>`, `<|user|>` or `<|observation|>` (dropping the stop
# token), parses the reply with `process_response` and returns `(response, new_history)`.
# ChatGLM3 samples by default (`top_p=0.8, temperature=0.8`); `do_sample=False` is greedy.
# History items are dicts, exactly as ChatGLM3's:

# %% tags=["nbval-check-output"]
response, history = chat(chat_model, tok, "乌龙茶多少钱？", do_sample=False)
print(response)
response, history = chat(chat_model, tok, "那红茶呢？", history=history, do_sample=False)
print(response)
print(json.dumps(history, ensure_ascii=False))

# %% [markdown]
# `stream_chat` yields `(response_so_far, history)` while it generates, holding back a character
# whose bytes are not complete, so a chat window never shows "�":

# %% tags=["nbval-check-output"]
for response, _ in stream_chat(chat_model, tok, "What time do you open?", do_sample=False):
    pass
print(response)
steps = [r for r, _ in stream_chat(chat_model, tok, "你们几点开门？", do_sample=False)]
print(steps[:3], "...", steps[-1])
assert steps[-1] == chat(chat_model, tok, "你们几点开门？", do_sample=False)[0] and all("\ufffd" not in s for s in steps)

# %% [markdown]
# A chat box. Its callback calls `chat_box_reply(model, tokenizer, message, history)`, a plain
# function of the package (tested in `tests/test_chat.py`); the widget only moves text.

# %% tags=["nbval-ignore-output"]
import ipywidgets as widgets

box_history = []
entry, send, shown = widgets.Text(placeholder="问点什么 / ask something"), widgets.Button(description="发送 Send"), widgets.Output()


def on_send(_):
    global box_history
    transcript, box_history = chat_box_reply(chat_model, tok, entry.value, box_history, do_sample=False)
    entry.value = ""
    shown.clear_output()
    with shown:
        print(transcript)


send.on_click(on_send)
display(widgets.VBox([widgets.HBox([entry, send]), shown]))

# %% tags=["nbval-check-output"]
transcript, _ = chat_box_reply(chat_model, tok, "你好", [], do_sample=False)
print(transcript)

# %% [markdown]
# ## 9. Evaluation: base vs chat, seen vs held-out phrasings
#
# `glm3_teach.evaluate.evaluate(model, tokenizer)` is the harness lessons 09-11 reuse. For each
# split it answers the last user turn of every dialogue greedily and grades the reply: **fact
# accuracy** (every string of `meta.expect` is in the reply, *and* the reply is in the question's
# language), **stop compliance** (a stop token came before the length limit), **language match**,
# and **ROUGE-L** for translations; plus **bits per byte** of validation stories (forgetting) and
# of validation replies (shop text). Here on an evenly spaced subsample, so the cell is quick; the
# full table (every item) is in the chat checkpoint's README.

# %% tags=["nbval-ignore-output"]
from glm3_teach.evaluate import evaluate, format_table

replies = []
rows = (evaluate(base, tok, "base", max_items=24, max_documents=12, tools=False, progress=False, keep=replies)
        + evaluate(chat_model, tok, "chat", max_items=24, max_documents=12, tools=False, progress=False, keep=replies))
display(Markdown(format_table([r for r in rows if r["lang"] == "all" or "bits_per_byte" in r])))

# %% tags=["nbval-check-output"]
score = {(r["model"], r["split"], r["lang"]): r for r in rows}
for model_name in ("base", "chat"):
    for split in ("val", "heldout"):
        r = score[(model_name, split, "all")]
        print(f"{model_name:>4} {split:>7}: facts {r['fact_accuracy']:.0%}, stops {r['stop_compliance']:.0%}, "
              f"language {r['language_match']:.0%}")
assert score[("chat", "heldout", "all")]["fact_accuracy"] > score[("base", "heldout", "all")]["fact_accuracy"] + 0.3
assert score[("chat", "heldout", "all")]["stop_compliance"] >= max(0.9, score[("base", "heldout", "all")]["stop_compliance"])

# %% [markdown]
# ### Where it goes wrong
#
# Numbers hide the interesting part. Every wrong held-out answer of the subsample, with what the
# grader wanted:

# %% tags=["nbval-check-output"]
wrong = [r for r in replies if r["model"] == "chat" and r["split"] == "heldout" and r["correct"] is False]
print(len(wrong), "wrong of", sum(r["model"] == "chat" and r["split"] == "heldout" and r["correct"] is not None
                                  for r in replies))
for r in wrong[:8]:
    print(f"[{r['meta']['intent']}/{r['meta']['lang']}] wanted {r['meta']['expect']} -> {r['reply'][:70]!r}")
seen_replies = {}
for train_item in train_items:
    seen_replies.setdefault(train_item["conversations"][-1].get("content"), train_item["meta"]["intent"])
other_intent = [r for r in wrong if seen_replies.get(r["reply"], r["meta"]["intent"]) != r["meta"]["intent"]]
print(f"{len(other_intent)} of the {len(wrong)} wrong replies are, word for word, a training reply of another intent")
assert 2 * len(other_intent) >= len(wrong)
stored = {(r["model"], r["split"], r["lang"]): r for r in json.loads((CHAT / "evaluation.json").read_text())["rows"]}
assert stored[("chat", "val", "all")]["fact_accuracy"] > stored[("chat", "heldout", "all")]["fact_accuracy"]  # all 480

# %% [markdown]
# The commonest failure is not a wrong number but a wrong *intent*: a fluent, correct answer to a
# different question (the delivery time in reply to a held-out phrasing of "when do you close", or
# the identity in reply to a request the shop cannot help with). A held-out template often leans on
# words no training template uses, and a 5 M-parameter model then falls back on an answer it has
# seen often. Over all 480 dialogues of each split (the stored evaluation below), seen phrasings with
# new values (`val`) do better than held-out ones: what the model learned is partly the strings.
#
# ### More phrasings, not more steps
#
# The first version of the data had 15 templates per intent and language (12 trained). Four
# training recipes on it (learning rate, steps, story mix: the table in `configs/chat_stage1.toml`) all
# stayed below 70% on held-out phrasings: a higher rate or more steps only memorised the training
# phrasings better. What helped was the data: ten more templates per intent and language, written
# to widen the words each intent is asked with ("What street is the shop on?", "包邮要满多少钱？"),
# and more dialogues for the intents that failed most. The same recipe on that data is the shipped
# model. The full evaluation, every one of the 480 plain dialogues of each split, is stored beside
# the checkpoint (`evaluation.json`, written by `python -m glm3_teach.evaluate --model
# data/checkpoints/base --model data/checkpoints/chat --json ...`); read back, split by the original
# held-out templates (indices 2, 7, 12) and the new ones (17, 22):

# %% tags=["nbval-check-output"]
full = json.loads((CHAT / "evaluation.json").read_text(encoding="utf-8"))
full_rows = {(r["model"], r["split"], r["lang"]): r for r in full["rows"]}
graded = [r for r in full["replies"] if r["model"] == "chat" and r["split"] == "heldout" and r["correct"] is not None]
by_age = {"templates 2, 7, 12": [r for r in graded if int(r["meta"]["template"][-2:]) < 15],
          "templates 17, 22": [r for r in graded if int(r["meta"]["template"][-2:]) >= 15]}
for split in ("val", "heldout"):
    r = full_rows[("chat", split, "all")]
    print(f"chat {split:>7}, all {r['items']} dialogues: facts {r['fact_accuracy']:.1%}, stops {r['stop_compliance']:.1%}, "
          f"language {r['language_match']:.1%}")
share_right = {name: sum(bool(r["correct"]) for r in group) / len(group) for name, group in by_age.items()}
for name, group in by_age.items():
    print(f"  held-out {name}: {share_right[name]:.1%} of {len(group)}")
heldout_all = full_rows[("chat", "heldout", "all")]
assert heldout_all["items"] == 480 and heldout_all["fact_accuracy"] >= 0.70
assert heldout_all["stop_compliance"] >= 0.98 and heldout_all["language_match"] >= 0.98
assert min(share_right.values()) >= 0.70
assert abs(share_right["templates 17, 22"] - share_right["templates 2, 7, 12"]) < 0.08


def heldout_plain(folder):
    rows = json.loads((data_dir() / "checkpoints" / folder / "evaluation.json").read_text(encoding="utf-8"))["rows"]
    return next(r for r in rows if (r["model"], r["split"], r["lang"]) == (folder, "heldout", "all"))["fact_accuracy"]


earlier = {folder: heldout_plain(folder) for folder in ("chat_stage1", "chat_stage2")}
print("earlier stages, held-out facts:", {k: f"{v:.1%}" for k, v in earlier.items()})
assert abs(earlier["chat_stage1"] - 0.767) < 0.001 and abs(earlier["chat_stage2"] - 0.798) < 0.001
assert abs(heldout_all["fact_accuracy"] - 0.816) < 0.001 and earlier["chat_stage1"] < heldout_all["fact_accuracy"]
assert abs(heldout_all["fact_accuracy"] - earlier["chat_stage2"] - 0.018) < 0.001   # stage 3: a little above stage 2
tool_row = full_rows[("chat", "heldout tools", "all")]   # the README's known problems, from the same file
right_calls = Counter(r["intent"] for r in full["replies"] if r["split"] == "heldout tools" and r.get("call_ok"))
assert tool_row["no_tool_items"] == 10 and tool_row["false_call_rate"] == 0 and right_calls["order_error"] == 10
assert (right_calls["stock"], right_calls["total"]) == (3, 6) and abs(tool_row["observation_in_answer"] - 0.735) < 0.01


# %% [markdown]
# The course's targets (at least 70% of held-out phrasings, stop and language at least 98%) hold
# on the whole split, and on both the old and the new held-out templates, within a few points of
# each other, although the new ones were written later and some deliberately hard
# ("我下班后过去，你们还开着吗？几点关门？"), which is what a question from a real customer is like
# (the model fine-tuned from the 256-token base scored 81% on the old ones and 72% on the new).
# Stage 2 raised held-out accuracy a little (stage 1 alone: 76.7% of the 480, stage 2 79.8%); the
# shipped stage 3 raises it a little more (81.6%), although its 1,200 steps were spent mostly on tool
# dialogues.
# The README also records what this checkpoint does *not* do yet. On its 60 held-out tool
# dialogues it calls the order tool with the id copied from the question, and calls no tool for the
# 10 questions that need none, but it calls the stock tool right for only 3 of the 10 stock
# questions, writes 6 of the 10 sums for the calculator right, and a quarter of its answers do not
# use the tool's result (lesson 09 measures all of it, on these and on all 180 held-out tool dialogues).
#
# ### Forgetting
#
# Fine-tuning moves every weight; the story knowledge of lesson 06 can erode. Every stage mixes
# blocks of pretraining stories into the SFT batches, trained on every token, and the harness
# measures story bits per byte before and after. Stage 1 mixes 1,600 (9% of its trained tokens;
# most of the rest are lesson 09's copy and recall blocks), stage 2 8,000 (about a quarter of its
# tokens), stage 3 12,000 (about a third: it has no copy blocks). On this subsample and
# on the 100 stories per language of the README:

# %% tags=["nbval-check-output"]
def story_share(r):
    return r["story_blocks"] * (r["sft"]["story_block_size"] - 1) / r["train_targets"]


def rises(r):
    return {lang: v["after"] / v["before"] - 1 for lang, v in r["story_bits_per_byte"]["per_language"].items()}


for name, r in (("stage 1", stage1), ("stage 2", stage2), ("stage 3", record)):
    print(f"{name}: {r['story_blocks']:,} story blocks = {story_share(r):.0%} of the trained tokens; stories against "
          f"base_long: " + ", ".join(f"{lang} {v:+.1%}" for lang, v in rises(r).items()))
assert stage1["story_blocks"] == 1600 and 0.07 < story_share(stage1) < 0.10
assert stage2["story_blocks"] == 8000 and 0.24 < story_share(stage2) < 0.30
assert record["story_blocks"] == 12000 and 0.30 < story_share(record) < 0.36
for lang in ("zh", "en"):
    b, c = score[("base", "stories (val)", lang)]["bits_per_byte"], score[("chat", "stories (val)", lang)]["bits_per_byte"]
    readme_rise = rises(record)[lang]
    print(f"stories {lang}: base {b:.3f} -> chat {c:.3f} bits/byte ({c / b - 1:+.0%}); README, 100 stories: {readme_rise:+.1%}")
    assert abs((c / b - 1) - readme_rise) < 0.15
assert abs(rises(stage1)["en"] - 0.105) < 0.005 and rises(stage1)["zh"] < 0.10   # stage 1: English just past +10%
assert abs(rises(stage2)["zh"] - 0.052) < 0.005 and abs(rises(stage2)["en"] - 0.027) < 0.005   # stage 2: well inside
assert abs(rises(record)["zh"] + 0.031) < 0.005 and abs(rises(record)["en"] + 0.029) < 0.005   # stage 3: below base_long

# %% [markdown]
# Stage 1 alone left English at +10.5% on the README's 100 stories, just past the +10% the course
# allows; stage 2, with five times as many story blocks in fewer, gentler steps, brings both
# languages back well inside it (+5.2% and +2.7% against `base_long`), and stage 3, which trains on
# tool dialogues and stories alone, leaves them a little below `base_long` (-3.1% and -2.9%: no
# forgetting left on these stories; 12,000 more story blocks are more pretraining too). Forgetting took two remedies
# together in the first recipes. The first (200 story blocks, 11% of the tokens, lr 1e-3, 150
# steps) raised the stories' bits per byte by 30% (zh) and 45% (en); 800 blocks at lr 5e-4 still
# by 10% and 13%; 1,600 blocks at lr 3e-4 by 2% and 5%, at the price of a few points of held-out
# accuracy. Stage 1 trains longer and harder (1,400 steps at lr 5e-4: copying, lesson 09, needs
# it), which costs more of the stories; a stage-1 run with 2,400 story blocks stayed inside the
# limit but called tools far worse (the runs are tabulated in `configs/chat_stage1.toml`). The big
# models use the same remedies: pretraining text in the mix and a low learning rate; or training
# far fewer weights (lesson 10's LoRA and P-Tuning keep the base weights frozen).

# %% [markdown]
# ## 10. 对话模型看哪里 Where the chat model looks
#
# Lesson 03's attention viewer on the chat model, on a shop question in the chat format: the
# system prompt the training dialogues use, then "乌龙茶多少钱？". The ids shown are the prompt *and*
# the model's greedy answer, so every answer token is a query row too. The row of a token is the
# position that *writes the next one*: hover the `\n` after `<|assistant|>` on the left to see what
# the model reads when it writes the answer's first word, and the row before the price for the
# number. Hover a token on the right to see who reads it (`乌龙茶` in the question, say). The model
# menu also holds the base model, to compare on the same ids; run the cell for the live view.

# %% tags=["nbval-ignore-output"]
from glm3_teach import viz
from glm3_teach.generate import generate, stop_token_ids

shop_system = {"role": "system", "content": "你是清泉茶铺的助手，请简短地回答客人的问题。"}
prompt_ids = tok.build_chat_input("乌龙茶多少钱？", history=[shop_system])
stops = stop_token_ids(tok)
generated = generate(chat_model, torch.tensor([prompt_ids]), 40, eos_token_ids=stops)[0, len(prompt_ids):].tolist()
answer_ids = [i for i in generated if i not in stops]
shop_ids = prompt_ids + answer_ids
print("answer:", repr(tok.decode(answer_ids)))
shop_view = viz.attention_view(chat_model, tok, shop_ids, name="chat", models={"base": (base, tok)})
shop_view

# %% [markdown]
# The same attention as numbers: for the row that writes the answer's first token and the row that
# writes the price's first digit, the weight (mean over the heads of each layer) on each part of
# the prompt, and the strongest single head on the product name. `viz.compute_attentions` returns
# the probabilities the view draws, `[layers, heads, q_len, k_len]`.

# %%
texts, is_special = viz.token_info(tok, shop_ids)
system_at = texts.index("<|system|>")
user_at = texts.index("<|user|>", system_at)
assistant_at = len(prompt_ids) - 1
product = tok.encode("乌龙茶")
product_at = next(i for i in range(user_at, assistant_at) if shop_ids[i:i + len(product)] == product)
groups = {                                                            # key positions of each part
    "[gMASK] sop": [0, 1],
    "system prompt": list(range(system_at, user_at)),
    "乌龙茶": list(range(product_at, product_at + len(product))),
    "rest of the question": [i for i in range(user_at, assistant_at + 1) if not product_at <= i < product_at + len(product)],
    "answer so far": list(range(assistant_at + 1, len(shop_ids))),
}
first_answer = next(i for i in range(assistant_at + 1, len(shop_ids)) if texts[i].strip())
first_digit = next((i for i in range(first_answer, len(shop_ids)) if any(c.isdigit() for c in texts[i])), None)
writers = {first_answer - 1: f"the answer's first token 「{texts[first_answer]}」"}   # the row at t writes token t + 1
if first_digit is not None:
    writers.setdefault(first_digit - 1, f"the price's first digit 「{texts[first_digit]}」")
attn, _ = viz.compute_attentions(chat_model, shop_ids)                    # [layers, heads, q, k]
for row, what in writers.items():
    print(f"the row of 「{viz.visible_label(texts[row])}」 (position {row}) writes {what}:")
    for layer in range(attn.shape[0]):
        weights = attn[layer, :, row]                                          # [heads, k]
        shares = {name: weights[:, idx].sum(-1) for name, idx in groups.items()}  # [heads] per part
        print(f"  layer {layer}: " + "  ".join(f"{name} {v.mean():.2f}" for name, v in shares.items())
              + f"  | strongest head on 乌龙茶: {shares['乌龙茶'].max():.2f}")
        torch.testing.assert_close(sum(shares.values()), torch.ones(attn.shape[1]), atol=1e-3, rtol=0)
assert sorted(i for idx in groups.values() for i in idx) == list(range(len(shop_ids)))
assert shop_view.payload["ids"] == shop_ids and shop_view.payload["q_len"] == len(shop_ids)


# %% [markdown]
# Read the table with the view beside it: which part of the prompt does each layer read most
# (the system prompt is the longest part), and is there a head that looks at `乌龙茶` in the
# question when the answer names it, or at the name again (now in the answer) when the price
# comes? A model that answered another product's price would show it here. Attention says where a
# head looks, not why: the price itself is in the weights (the prompt holds no number).

# %% [markdown]
# ## Exercises
#
# ### Exercise 1: the shifted mask
# Write `my_shift_labels(ids, flags)`: `flags[i]` says whether the prediction made at token `i` is
# trained; return the labels, `ids[i]` where `flags[i - 1]` is true and -100 elsewhere
# (`labels[0]` is always -100).

# %%
def my_shift_labels(ids, flags):
    raise NotImplementedError


# %%
shift_cases = [(ids, flags), ([5, 6, 7, 8], [False, True, True, False]), ([1], [True])]
result = check("shift_labels", my_shift_labels, shift_labels, shift_cases,
               hint="[-100] + [token if flag else -100 for token, flag in zip(ids[1:], flags[:-1])]")


# %% [markdown]
# ### Exercise 2: the collator that loses the stop
# This collator fits every sample into `max_length` by cutting it. Run it and look at the last
# target of each row. Then write `fixed_collate(samples, max_length)` that **drops** the samples
# that do not fit instead, pads the others on the right (pad id for ids, -100 for labels) and
# returns `{"input_ids", "labels"}` like the package's `SFTCollator`.

# %% tags=["nbval-check-output"]
def cutting_collate(samples, max_length):
    rows = [(s["input_ids"][:max_length], s["labels"][:max_length]) for s in samples]
    width = max(len(r[0]) for r in rows)
    input_ids = torch.tensor([r[0] + [tok.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [IGNORE_INDEX] * (width - len(r[1])) for r in rows])
    return {"input_ids": input_ids, "labels": labels}


samples = sorted((dict(zip(("input_ids", "labels"), encode_conversation(i, tok))) for i in plain_val),
                 key=lambda s: len(s["input_ids"]))
samples = samples[:4] + samples[-4:]                                   # the four shortest and the four longest
print("lengths:", [len(s["input_ids"]) for s in samples])
cut = cutting_collate(samples, 40)
last = [tok.decode([row[row != IGNORE_INDEX][-1].item()]) if (row != IGNORE_INDEX).any() else None
        for row in cut["labels"]]
print("last target of each row:", last)
assert "</s>" in last and any(t != "</s>" for t in last)


# %% [markdown]
# The rows longer than 40 tokens lost their `</s>` target (or every target): trained on them, the
# model learns replies that never end, and a row without targets makes the loss 0/0.

# %%
def fixed_collate(samples, max_length):
    raise NotImplementedError


# %%
result = check("fixed_collate", fixed_collate, lambda s, n: SFTCollator(tok.pad_token_id, n)(s),
               [(samples, 40), (samples, 200)],
               hint="keep = [s for s in samples if len(s['input_ids']) <= max_length]; pad each kept row to the longest")


# %% [markdown]
# ### Exercise 3: a new intent
# The shop accepts payment by WeChat Pay and Alipay (微信和支付宝). Write
# `payment_items(split)`: dialogues in the SFT format that ask how to pay, in Chinese, with
# `meta = {"intent": "payment", "lang": "zh", "template": ..., "split": split, "expect": ["微信"]}`;
# use different question templates for `"train"` and `"heldout"`. The check fine-tunes a copy of
# the chat model on your training items (mixed with old ones, so it does not forget) for thirty
# steps and measures held-out accuracy on your new intent before and after.

# %%
def payment_items(split):
    raise NotImplementedError


# %%
from glm3_teach.evaluate import answer_items
from glm3_teach.sft import validate_item


def learn_new_intent(make_items, steps=30):
    """Held-out accuracy on the new intent before and after a short fine-tune of the chat model."""
    new_train, new_heldout = make_items("train"), make_items("heldout")
    learner = load_pretrained(CHAT, dtype=torch.float32, device=device)
    accuracy = lambda: sum(bool(r["correct"]) for r in answer_items(learner, tok, new_heldout, 40, progress=False)) / len(new_heldout)
    before = accuracy()
    mix = new_train + evenly_spaced(plain_train, len(new_train))   # old intents too, against forgetting
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


result = check("payment_items", intent_report, lambda make: {"valid": True, "templates_disjoint": True, "learned": True},
               [(payment_items,)], hint="a dozen phrasings for train, a few others for heldout; answers containing 微信")

# %% [markdown]
# Solutions are in `notebooks/solutions/08_chat_sft_solutions.ipynb`; try first.
#
# ## Summary
# - ChatGLM3's fine-tuning item is `{"tools"?, "conversations"}`; each message is
#   `<|role|>` + `encode(metadata + "\n")` + `encode(content)`, after `[gMASK] sop`, with `</s>` last.
# - The flag of a token says whether the prediction made at it is trained; labels are shifted by
#   one, so the token after a reply (`<|user|>`, `<|observation|>`, `</s>`) is a target and
#   `<|assistant|>` is not. That is what makes the model stop.
# - nanochat and minimind put the mask on the target token instead, with their own end markers
#   (and minimind's loop skips the first reply token); training and `chat()` must agree.
# - Held-out *templates* measure generalisation to new phrasings; `val` measures new slot values
#   in seen phrasings.
# - SFT runs through lesson 06's `train()`; the collator pads right, never cuts the stop target
#   and never yields a batch without targets; mixing story text keeps the base model's knowledge.
# - `chat()` / `stream_chat()` follow ChatGLM3: stop ids, `process_response`, sampling defaults
#   `top_p=0.8, temperature=0.8`, dict history.
#
# Next: **09 · 工具调用 Tool calling**, where the assistant looks up orders and stock with tools.
