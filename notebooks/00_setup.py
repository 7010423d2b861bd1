# %% [markdown]
# # 00 · 环境与导览 Setup and tour
#
# Welcome to **glm3-teach**. Over the next lessons you will build a miniature ChatGLM3 whose
# every name and every equation is the real model's, train it on a bilingual corpus, decode
# from it, and finally load the real ChatGLM3-6B weights with the same code.
#
# **You will learn**
# - how to check that your environment works and which device (CPU or GPU) the lessons use;
# - the map of the course: what each lesson builds and which module of `glm3_teach` keeps it;
# - what ChatGLM3-6B really is, with its parameters counted, and a few common myths corrected;
# - what the course's own corpus looks like, in Chinese and English;
# - how exercises and their checks work.

# %% [markdown]
# ## 1. The environment
#
# Every lesson starts the same way: pick the device, fix the seeds. `pick_device()` takes a GPU
# when there is one (CUDA, or Apple's MPS), else the CPU; set the environment variable
# `GLM3_DEVICE=cpu` before starting JupyterLab to force the CPU. The line below differs from
# machine to machine.

# %% tags=["nbval-ignore-output"]
import torch

from glm3_teach import environment_report, pick_device, seed_everything

device = pick_device()
seed_everything(0)
print(environment_report(device))

# %% [markdown]
# The course needs Python 3.10 or newer and PyTorch 2.2 or newer (for
# `torch.nn.functional.scaled_dot_product_attention` and safe `torch.load`). If the next cell
# fails, reinstall with the command in the README.

# %%
import sys

torch_version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
assert sys.version_info >= (3, 10), f"Python {sys.version.split()[0]} is too old: the course needs 3.10+"
assert torch_version >= (2, 2), f"PyTorch {torch.__version__} is too old: the course needs 2.2+"
print("Python and PyTorch are recent enough.")

# %% [markdown]
# Random numbers are made on the CPU with a fixed seed and then moved to the device, so the
# same cell prints the same numbers on a laptop and on a GPU server:

# %% tags=["nbval-check-output"]
generator = seed_everything(2024)
x = torch.randn(2, 3, generator=generator).to(device)
print(x.cpu().round(decimals=4))

# %% [markdown]
# ## 2. The map of the course
#
# Each lesson derives one piece in the open, checks the learner's version against the package,
# and from then on imports the package's. The picture shows the thirteen lessons in order and the
# modules of `glm3_teach` each one leaves behind. Lessons 00-07 build and train the model;
# lessons 08-12 turn it into a chat assistant that calls tools, fine-tune it cheaply, shrink it
# and serve it.

# %%
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

from glm3_teach.fonts import use_cjk_font

use_cjk_font()

LESSONS = [
    ("00", "环境与导览", "Setup and tour", "device, checks"),
    ("01", "分词", "Tokenization", "tokenizer"),
    ("02", "词嵌入与旋转位置编码", "Embeddings and RoPE", "rope"),
    ("03", "注意力", "Attention", "attention, viz"),
    ("04", "前馈网络与归一化", "FFN, RMSNorm, GLM block", "layers"),
    ("05", "组装模型", "The whole model", "model, checkpoint"),
    ("06", "预训练", "Pretraining", "data, train"),
    ("07", "解码", "Decoding", "generate"),
    ("08", "对话微调", "Chat fine-tuning", "sft, chat, evaluate"),
    ("09", "工具调用", "Tool calling", "tools, agent"),
    ("10", "高效微调", "LoRA and P-Tuning v2", "peft"),
    ("11", "量化", "Quantization", "quant"),
    ("12", "部署", "Serving", "serve"),
]
PARTS = [("Foundations 基础", 0, 2), ("The model 模型", 2, 6), ("Training and decoding 训练与解码", 6, 8),
         ("Applications 应用", 8, 13)]
COLOURS = ["#dbe9f6", "#fde2c8", "#d9f0d3", "#eadcf2"]


def draw_course_map():
    """Columns of lesson boxes; the bundled CJK font has one weight, so no text is bold."""
    fig, ax = plt.subplots(figsize=(11, 6.2))
    ax.set_xlim(0, 4)
    ax.set_ylim(-5.6, 0.6)
    ax.axis("off")
    centres = {}
    for column, ((part, start, stop), colour) in enumerate(zip(PARTS, COLOURS)):
        ax.text(column + 0.5, 0.35, part, ha="center", fontsize=11)
        for row, (number, zh, en, module) in enumerate(LESSONS[start:stop]):
            y = -row * 1.15
            box = FancyBboxPatch((column + 0.06, y - 0.85), 0.88, 0.9, boxstyle="round,pad=0.02",
                                 facecolor=colour, edgecolor="#555555")
            ax.add_patch(box)
            ax.text(column + 0.5, y - 0.2, f"{number} · {zh}", ha="center", fontsize=10.5)
            ax.text(column + 0.5, y - 0.45, en, ha="center", fontsize=8.5)
            ax.text(column + 0.5, y - 0.7, f"glm3_teach.{module}", ha="center", fontsize=7.5, family="monospace",
                    color="#333333")
            centres[number] = (column + 0.5, y)
    for (a, _, _, _), (b, _, _, _) in zip(LESSONS, LESSONS[1:]):
        (xa, ya), (xb, yb) = centres[a], centres[b]
        if xa == xb:
            ax.annotate("", xy=(xb, yb + 0.05), xytext=(xa, ya - 0.85), arrowprops=dict(arrowstyle="->", color="#777777"))
        else:  # to the top of the next column, through the gap between the columns
            ax.annotate("", xy=(xb - 0.44, yb - 0.2), xytext=(xa + 0.44, ya - 0.6),
                        arrowprops=dict(arrowstyle="->", color="#777777"))
    ax.set_title("glm3-teach: one miniature ChatGLM3, built lesson by lesson", fontsize=13)
    return fig


draw_course_map();

# %% [markdown]
# Where the road ends: by lesson 08 the model you build from scratch is a small bilingual
# assistant for the tea shop of the course's stories. Here is that finished model (the shipped
# checkpoint `data/checkpoints/chat`) answering, greedy, one question in each language:

# %% tags=["nbval-check-output"]
from glm3_teach import load_pretrained, load_tokenizer
from glm3_teach.chat import chat
from glm3_teach.paths import data_dir

finished = load_pretrained(data_dir() / "checkpoints" / "chat", dtype=torch.float32)
finished_tokenizer = load_tokenizer(data_dir() / "checkpoints" / "chat")
for question in ("乌龙茶多少钱？", "What time do you open?"):
    answer, _ = chat(finished, finished_tokenizer, question, do_sample=False)
    print(f"{question} -> {answer}")

# %% [markdown]
# ## 3. What ChatGLM3-6B really is
#
# ChatGLM3-6B (Zhipu AI and Tsinghua KEG, October 2023) is a **decoder-only, text-only**
# transformer with about **6.24 billion parameters**. Its family name comes from **GLM**
# (General Language Model, 2021), which pretrained with *autoregressive blank infilling*:
# spans of a text were masked, the unmasked part was read bidirectionally, and the spans were
# written left to right after a start-of-piece token. The tokens `[gMASK]` ("generate the
# masked rest") and `sop` ("start of piece") at the front of every ChatGLM3 prompt are the
# heritage of that design (lesson 03 shows the mask families side by side).
#
# The configuration of the real model is read from its `config.json` when you have the
# reference files (see the README); otherwise the course's built-in copy of the same numbers is
# used, so this cell runs everywhere.

# %%
import json

from glm3_teach.paths import find_reference_file

CHATGLM3_6B = {  # the numbers of THUDM/chatglm3-6b's config.json that decide the shapes
    "num_layers": 28, "hidden_size": 4096, "ffn_hidden_size": 13696, "kv_channels": 128,
    "num_attention_heads": 32, "multi_query_group_num": 2, "padded_vocab_size": 65024,
    "seq_length": 8192, "add_qkv_bias": True,
}
config_path = find_reference_file("config.json")
config = json.loads(config_path.read_text()) if config_path else CHATGLM3_6B
print("config read from:", "the reference config.json" if config_path else "the built-in copy")

# %% tags=["nbval-check-output"]
for key in CHATGLM3_6B:  # the same numbers either way
    assert config[key] == CHATGLM3_6B[key], f"{key}: {config[key]} != {CHATGLM3_6B[key]}"
    print(f"{key:>22} = {config[key]}")


# %% [markdown]
# Where do 6.24 billion parameters come from? Every matrix of the model follows from those
# numbers. One GLM block has a fused query-key-value projection (32 query heads but only 2
# key/value groups, plus a bias), an output projection, a SwiGLU feed-forward network whose
# first matrix is twice as wide (gate and up halves), and two RMSNorm weight vectors:

# %% tags=["nbval-check-output"]
def chatglm3_parameter_count(c: dict) -> dict:
    head_dim = c["kv_channels"]
    qkv_out = c["num_attention_heads"] * head_dim + 2 * c["multi_query_group_num"] * head_dim
    block = (
        qkv_out * c["hidden_size"] + qkv_out                              # query_key_value (+ bias)
        + c["num_attention_heads"] * head_dim * c["hidden_size"]          # dense
        + 2 * c["ffn_hidden_size"] * c["hidden_size"]                     # dense_h_to_4h (gate | up)
        + c["ffn_hidden_size"] * c["hidden_size"]                         # dense_4h_to_h
        + 2 * c["hidden_size"]                                            # two RMSNorm weights
    )
    return {
        "word_embeddings": c["padded_vocab_size"] * c["hidden_size"],
        f"{c['num_layers']} GLM blocks": c["num_layers"] * block,
        "final_layernorm": c["hidden_size"],
        "output_layer": c["padded_vocab_size"] * c["hidden_size"],
    }


parts = chatglm3_parameter_count(config)
total = sum(parts.values())
for name, count in parts.items():
    print(f"{name:>16}: {count:>13,} ({count / total:6.2%})")
print(f"{'total':>16}: {total:>13,}")
assert total == 6_243_584_000
assert abs(parts["28 GLM blocks"] / total - 0.91) < 0.005                      # "about 91%" below
assert abs(parts["word_embeddings"] / total - 0.043) < 0.0005 and parts["output_layer"] == parts["word_embeddings"]

# %% [markdown]
# The total is exactly **6,243,584,000**, the number lesson 05 will meet again when it builds the
# real model on PyTorch's "meta" device. About 91% of it sits in the 28 blocks; the input
# embedding and the (untied) output layer hold about 4.3% each.
#
# ### Myths, corrected
# Summaries of ChatGLM3 on the web often repeat things that are true of older GLM models but not
# of this one. Every claim below is checked against the numbers above or proved in a later lesson.
#
# | you may read | what ChatGLM3-6B actually does | where the course shows it |
# | --- | --- | --- |
# | "an encoder-decoder / prefix-LM like GLM-130B" | a causal decoder; `AutoModelForSeq2SeqLM` in its config is only a registration name | 03, 05 |
# | "uses GLM's 2-D position ids" | 1-D positions 0, 1, 2, ... with rotary embeddings on half of each head | 02 |
# | "standard multi-head attention" | grouped-query attention: 32 query heads share 2 key/value groups | 03 |
# | "input and output embeddings are tied" | untied: `output_layer` is a separate 65024 × 4096 matrix | 05 |
# | "a multimodal model" | text only (the vision models of the family are separate) | 00 |
# | "its vocabulary has 65,024 tokens" | the tokenizer uses 64,798 ids; the rest are padding rows | 01 |

# %% tags=["nbval-check-output"]
qkv_out = config["num_attention_heads"] * config["kv_channels"] + 2 * config["multi_query_group_num"] * config["kv_channels"]
kv_saving = config["num_attention_heads"] / config["multi_query_group_num"]
print(f"query_key_value output width: {qkv_out} (= 32 query heads x 128 + 2 x 2 groups x 128)")
print(f"the KV cache is {kv_saving:.0f}x smaller than with one KV group per query head")
assert qkv_out == 4608 and kv_saving == 16

# %% [markdown]
# ### The whole model on one page
# Every box below is one step of ChatGLM3-6B's forward pass, with the lesson that builds it and
# the shape of the tensor it hands on (worked out from the config above). Shapes are written
# batch-first, `[b, s, ...]`, as the course's code has them; the reference implementation keeps
# its tensors sequence-first, `[s, b, 4096]`, inside the model (lesson 05 shows both). The
# dashed frame is one GLM block, repeated 28 times.

# %%
from matplotlib.patches import FancyBboxPatch


def architecture_rows(c: dict) -> list[tuple[str, str, str]]:
    """(lesson, what the step computes, the shape it hands on), input first."""
    h, heads, groups, d = c["hidden_size"], c["num_attention_heads"], c["multi_query_group_num"], c["kv_channels"]
    ffn, vocab, qkv = c["ffn_hidden_size"], c["padded_vocab_size"], (heads + 2 * groups) * d
    return [
        ("01", "tokenizer: text -> ids, with [gMASK] sop in front", "input_ids [b, s]"),
        ("02", f"word_embeddings: one row of the {vocab} x {h} table per id", f"[b, s, {h}]"),
        ("04", "input_layernorm: RMSNorm, computed in fp32", f"[b, s, {h}]"),
        ("03", f"query_key_value: {h} -> {qkv} (+ bias), split", f"q [b, {heads}, s, {d}], k and v [b, {groups}, s, {d}]"),
        ("02", f"RoPE: rotate dims 0..{d // 2 - 1} of each q and k head by position", "q, k: shapes unchanged"),
        ("03", f"attention: softmax(q k^T / sqrt({d})) v, causal, {heads // groups} heads per k/v",
         f"[b, s, {heads * d}]"),
        ("03", f"dense: {heads * d} -> {h}, then add the block's input (residual)", f"[b, s, {h}]"),
        ("04", "post_attention_layernorm: RMSNorm", f"[b, s, {h}]"),
        ("04", f"dense_h_to_4h: {h} -> 2 x {ffn}, then silu(gate) * up", f"[b, s, {ffn}]"),
        ("04", f"dense_4h_to_h: {ffn} -> {h}, then add (residual)", f"[b, s, {h}]"),
        ("04", "final_layernorm: RMSNorm after the last block", f"[b, s, {h}]"),
        ("05", f"output_layer: {h} -> {vocab}, not tied to word_embeddings", f"logits [b, s, {vocab}]"),
        ("07", "pick the next id (greedy or top-p); keep each layer's k, v", f"next id [b, 1], cache [b, {groups}, s, {d}]"),
    ]


def draw_architecture(c: dict, block_rows=(2, 9)):
    rows = architecture_rows(c)
    fig, ax = plt.subplots(figsize=(11, 7.6))
    ax.set(xlim=(-0.3, 11.2), ylim=(-len(rows) + 0.3, 0.9))
    ax.axis("off")
    for i, (lesson, what, shape) in enumerate(rows):
        colour = COLOURS[0] if lesson in ("01", "02") else COLOURS[2] if lesson == "07" else COLOURS[1]
        ax.add_patch(FancyBboxPatch((0.9, -i - 0.34), 5.5, 0.68, boxstyle="round,pad=0.02", facecolor=colour,
                                    edgecolor="#555555"))
        ax.text(0.4, -i, lesson, ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="circle,pad=0.25", facecolor="white", edgecolor="#555555"))
        ax.text(1.05, -i, what, va="center", fontsize=9)
        ax.text(6.65, -i, shape, va="center", fontsize=8.5, family="monospace", color="#1f3b73")
        if i:
            ax.annotate("", xy=(3.65, -i + 0.36), xytext=(3.65, -i + 0.64), arrowprops=dict(arrowstyle="->", color="#777777"))
    top, bottom = -block_rows[0] + 0.48, -block_rows[1] - 0.48
    ax.add_patch(FancyBboxPatch((0.75, bottom), 5.8, top - bottom, boxstyle="round,pad=0.02", facecolor="none",
                                edgecolor="#c0392b", linestyle="--", linewidth=1.5))
    ax.text(11.0, (top + bottom) / 2, f"GLMBlock x {c['num_layers']} (lesson 04)", rotation=90, ha="center",
            va="center", color="#c0392b", fontsize=10)
    ax.plot([10.75, 10.75], [bottom, top], color="#c0392b", linestyle="--", linewidth=1.5)
    ax.text(0.4, 0.65, "lesson", ha="center", fontsize=8.5, color="#555555")
    ax.text(6.65, 0.65, "shape handed on (b = batch, s = tokens)", fontsize=8.5, color="#555555")
    ax.set_title("ChatGLM3-6B 的结构: each step and the lesson that builds it", fontsize=12)
    return fig


draw_architecture(config);

# %% [markdown]
# The other lessons work around this picture: 06 trains it on next-token prediction, 08 teaches it
# the chat format, 09 to call tools, 10 fine-tunes a few extra parameters (LoRA, P-Tuning v2), 11
# stores its `Linear` weights in 8 or 4 bits, and 12 serves it over HTTP.

# %% [markdown]
# ## 4. The course's corpus
#
# Nothing in this course is downloaded at run time. The pretraining text is written by the
# course's own generator (`glm3_teach/stories/`): simple stories about children, animals, a
# town, the weather and a tea shop, each planned once and then rendered in **Chinese and
# English**, so the same story exists in both languages. Here is the first training story:

# %% tags=["nbval-check-output"]
from glm3_teach.data import load_documents

chinese = load_documents("train", "zh")
english = load_documents("train", "en")
assert len(chinese) == len(english)
print(chinese[0])
print()
print(english[0])

# %% [markdown]
# How big is it? Lesson 01 trains a tokenizer on the training split and lesson 06 pretrains the
# model on it; the validation split holds stories the model never trains on.

# %% tags=["nbval-check-output"]
import re

from glm3_teach.data import load_corpus

for split in ("train", "val"):
    zh, en = load_corpus(split, "zh"), load_corpus(split, "en")
    han = len(re.findall(r"[\u4e00-\u9fff]", zh))  # the basic CJK block (section 5 says what it leaves out)
    letters = len(re.findall(r"[A-Za-z]", en))
    print(f"{split:>5}: {len(load_documents(split, 'zh')):>6,} stories | {han:>9,} Chinese characters | {letters:>9,} English letters")
    assert han >= (1_000_000 if split == "train" else 100_000)

# %% [markdown]
# Want the lessons to use your own text? Pass `path="my_text.txt"` to `load_corpus` and
# `load_documents`, or set the environment variable `GLM3_CORPUS` to a UTF-8 file before starting
# JupyterLab. Documents are separated by blank lines; the last 10% become the validation split.
#
# ## 5. Exercises and checks
#
# Each lesson ends with small exercises. You write a function; `check` runs it beside the
# package's reference on a few inputs and tells you precisely what differs: the input, what was
# expected, what came back, and a hint. It never stops "Run All": an unfinished exercise just
# says so. Here is what a wrong answer looks like, so you know how to read one:

# %% tags=["nbval-check-output"]
from glm3_teach.checks import check


def count_han_reference(text: str) -> int:
    return len(re.findall(r"[\u4e00-\u9fff]", text))


def count_han_wrong(text: str) -> int:
    return len(text)  # counts every character, not only Chinese ones


result = check("count_han", count_han_wrong, count_han_reference, ["茶馆", "我喝了3杯茶。", "Tea 茶"],
               hint="count only the characters of the basic CJK block, U+4E00 to U+9FFF")
assert not result  # the wrong version really is caught

# %% [markdown]
# Read it from the top: which case failed (the second of three), its input, what the reference
# returned, what yours returned, and a hint, which appears only once a case has failed.
#
# "Chinese character" is a wider class than this example's definition. Unicode's **CJK Unified
# Ideographs** block U+4E00..U+9FFF holds 20,992 characters, among them all the common ones (and
# every one this corpus uses); Extension A (U+3400..U+4DBF) and the extensions from U+20000 on hold tens of thousands
# of rarer ones, such as 𠮷 (U+20BB7, a variant of 吉 used in names), and the compatibility block
# (U+F900..U+FAFF) holds duplicates kept for old encodings (U+F900 looks exactly like 豈 U+8C48). The example counts the basic block
# only, as the regular expression above does:

# %% tags=["nbval-check-output"]
samples = {"茶": "basic block", "\u3400": "Extension A", "\U00020bb7": "Extension B", "\uf900": "compatibility"}
for ch, block in samples.items():
    print(f"{ch} U+{ord(ch):04X} ({block}): counted {count_han_reference(ch) == 1}")
assert [count_han_reference(ch) for ch in samples] == [1, 0, 0, 0]


# %% [markdown]
# ### Exercise 1: the memory of a long conversation
# While it generates, ChatGLM3 keeps the keys and values of every token it has read (the **KV
# cache**, lesson 07), so a long chat costs memory beyond the weights. Write
# `kv_cache_bytes(config, tokens)`: how many bytes that cache takes for `tokens` tokens of one
# conversation, at 2 bytes a value (fp16 or bf16, as ChatGLM3-6B runs), for a config dict like
# the one above. Decide which of its numbers matter: not all of them do. The check compares your
# function with the package's on four configs.

# %%
def kv_cache_bytes(config: dict, tokens: int) -> int:
    raise NotImplementedError


# %%
from glm3_teach.checks import Case
from glm3_teach.config import ChatGLMConfig
from glm3_teach.generate import kv_cache_bytes as package_kv_cache_bytes
from glm3_teach.layers import GLMBlock


def shapes(config: dict) -> ChatGLMConfig:
    """The package's config object from the numbers of a config dict."""
    return ChatGLMConfig(**{key: config[key] for key in CHATGLM3_6B})


check("kv_cache_bytes", kv_cache_bytes, lambda c, tokens: package_kv_cache_bytes(shapes(c), tokens),
      [Case((config, 1), label="ChatGLM3-6B, one token"),
       Case((config, 8192), label="ChatGLM3-6B, its whole 8,192-token context"),
       Case(({**config, "multi_query_group_num": 32}, 8192), label="one key/value head per query head (32 groups)"),
       Case(({**config, "num_layers": 2, "ffn_hidden_size": 1024}, 100), label="2 layers and a narrow FFN")],
      hint="per token and layer the cache holds one key and one value vector for each KV group (not each "
           "query head), kv_channels values each; the FFN and the vocabulary play no part");


# %% [markdown]
# ### Exercise 2: what two KV groups save in weights
# ChatGLM3-6B lets 16 query heads share each key and value head. Write
# `gqa_saved_parameters(config)`: how many parameters **one** GLM block would have *more* if
# every query head had its own key and value head (`multi_query_group_num` equal to
# `num_attention_heads`), everything else unchanged. Only one of the block's matrices changes:
# find which, and do not forget its bias. The check counts the package's real `GLMBlock` (built
# on PyTorch's "meta" device, which allocates no memory) with both settings.

# %%
def gqa_saved_parameters(config: dict) -> int:
    raise NotImplementedError


# %%
def block_size(config: dict) -> int:
    with torch.device("meta"):                    # shapes only: no memory, no initialisation
        block = GLMBlock(shapes(config))
    return sum(p.numel() for p in block.parameters())


def saved_by_groups(config: dict) -> int:
    return block_size({**config, "multi_query_group_num": config["num_attention_heads"]}) - block_size(config)


check("gqa_saved_parameters", gqa_saved_parameters, saved_by_groups,
      [Case((config,), label="ChatGLM3-6B (2 groups)"),
       Case(({**config, "multi_query_group_num": 8},), label="8 groups"),
       Case(({**config, "add_qkv_bias": False},), label="no query_key_value bias"),
       Case(({**config, "hidden_size": 256, "num_attention_heads": 4, "kv_channels": 64, "ffn_hidden_size": 683},),
            label="a course-sized block: 4 heads of 64, 2 groups")],
      hint="query_key_value has num_attention_heads*kv_channels query outputs plus 2*groups*kv_channels key and "
           "value outputs; each output has hidden_size weights and, with add_qkv_bias, one bias");

# %% [markdown]
# With both exercises done you can say what grouped-query attention buys ChatGLM3-6B: the cache
# of exercise 1 shrinks 16-fold, while the weights of exercise 2 shrink by about a seventh of the
# model:

# %% tags=["nbval-check-output"]
saving = saved_by_groups(config) * config["num_layers"]
print(f"32 groups instead of 2: {saving / 1e6:,.0f} M more weights ({saving / total:.1%} of the model), and a KV cache "
      f"of {package_kv_cache_bytes(shapes({**config, 'multi_query_group_num': 32}), 8192) / 2**30:.1f} GiB instead of "
      f"{package_kv_cache_bytes(shapes(config), 8192) / 2**30:.2f} GiB for 8,192 tokens")
assert 0.13 < saving / total < 0.15

# %% [markdown]
# Solutions are in `notebooks/solutions/00_setup_solutions.ipynb`; try first.
#
# ## Summary
# - `pick_device()` chooses the GPU when there is one (override with `GLM3_DEVICE`), and
#   `seed_everything(seed)` makes every run repeatable.
# - ChatGLM3-6B is a 6,243,584,000-parameter causal decoder: 28 pre-norm GLM blocks, grouped-query
#   attention with 2 key/value groups, SwiGLU, RMSNorm, rotary positions on half of each head, and
#   an untied output layer. `[gMASK]` and `sop` are GLM's heritage.
# - The corpus is the course's own, parallel in Chinese and English, with a tea shop in it.
# - `check(...)` grades exercises with messages that say what to fix.
#
# Next: **01 · 分词 Tokenization**, where text becomes the integers a model reads.
