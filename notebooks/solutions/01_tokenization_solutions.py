# %% [markdown]
# # 01 · 分词 Tokenization: solutions
#
# Worked answers to the exercises of lesson 01. Each check is asserted, so the course's test run
# fails if a solution stops matching the package.

# %%
from glm3_teach.checks import check
from glm3_teach.tokenizer import BPETokenizer, load_tokenizer, pretokenize, train_merges

course = load_tokenizer()  # the course tokenizer in data/tokenizer/
tiny = ("我喜欢喝茶。你喜欢喝茶吗？我们一起去茶馆喝茶吧！\n"
        "I like tea. Do you like tea? Let's go to the tea shop and drink tea together!")
tiny_merges = train_merges(tiny, 24)
reply_ids = course.encode("鼍龙喝茶🍵。")

# %% [markdown]
# ## Exercise 1: encode with a list of merges
# Inside one chunk, the pair to merge next is the one with the smallest merge index among the
# pairs present. Merging in that order gives the same ids as applying every merge in training
# order, because a merge whose pair is absent changes nothing.

# %% tags=["nbval-check-output"]
def encode_with_merges(text, merges):
    rank = {tuple(pair): k for k, pair in enumerate(merges)}
    ids = []
    for chunk in pretokenize(text):
        tokens = list(chunk.encode("utf-8"))
        while len(tokens) >= 2:
            present = [pair for pair in zip(tokens, tokens[1:]) if pair in rank]
            if not present:
                break
            pair = min(present, key=rank.get)
            merged, i = [], 0
            while i < len(tokens):
                if i + 1 < len(tokens) and (tokens[i], tokens[i + 1]) == pair:
                    merged.append(256 + rank[pair])
                    i += 2
                else:
                    merged.append(tokens[i])
                    i += 1
            tokens = merged
        ids += tokens
    return ids


assert check("encode_with_merges", encode_with_merges, lambda text, merges: BPETokenizer(merges).encode(text),
             [("", tiny_merges), ("我喜欢喝茶。", tiny_merges), ("Let's drink tea!", tiny_merges),
              ("aaabdaaabac", [(97, 97), (97, 98), (256, 257)])])

# %% [markdown]
# ## Exercise 2: one ChatGLM3 message
# The role's special token, then metadata and newline, then the content, each encoded on its own
# (with SentencePiece that is where each `▁` dummy prefix comes from).

# %% tags=["nbval-check-output"]
def single_message(tok, role, metadata, content):
    return [tok.special_id(f"<|{role}|>")] + tok.encode(metadata + "\n") + tok.encode(content)


assert check("single_message", lambda role, metadata, content: single_message(course, role, metadata, content),
             course.build_single_message,
             [("user", "", "你好"), ("assistant", "", "好的。"), ("assistant", "get_weather", "tool_call(city='北京')"),
              ("observation", "", '{"temp": 3}')])

# %% [markdown]
# ## Exercise 3: a streaming decoder of your own
# Keep a byte buffer; after each id, emit the longest prefix of the buffer made of whole
# characters. The lead byte of a character says how long it is. (A byte that cannot start a
# character, or a character cut short, would need a replacement rule; the package uses Python's
# incremental decoder, which also handles those.)

# %% tags=["nbval-check-output"]
def utf8_length(lead):
    return 1 if lead < 0x80 else 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2


def stream_pieces(tok, ids):
    buffer, pieces = b"", []
    for token_id in ids:
        buffer += tok.vocab[token_id]
        whole = 0
        while whole < len(buffer) and whole + utf8_length(buffer[whole]) <= len(buffer):
            whole += utf8_length(buffer[whole])
        pieces.append(buffer[:whole].decode("utf-8"))
        buffer = buffer[whole:]
    return pieces


def stream_pieces_reference(tok, ids):
    stream = tok.stream_decoder()
    return [stream.push(i) for i in ids]


assert check("stream_pieces", lambda ids: stream_pieces(course, ids), lambda ids: stream_pieces_reference(course, ids),
             [(course.encode("茶"),), (reply_ids,), (course.encode("小猫 likes tea 🍵"),), (list("鼍".encode("utf-8")),)])
print(stream_pieces(course, reply_ids))
