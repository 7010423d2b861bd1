"""SFT encoding (ChatGLM3's fine-tuning rules), the collator, the train.py hook and the config.

A tokenizer with no merges encodes text as its UTF-8 bytes, so the expected ids are written by
hand: bytes 0..255, then 256 [MASK], 257 [gMASK], 258 [sMASK], 259 sop, 260 eop, 261 <|system|>,
262 <|user|>, 263 <|assistant|>, 264 <|observation|>, 265 </s>, 266 <pad>.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from glm3_teach.chatglm3_tokenizer import TOKENIZER_ENV_VAR, ChatGLM3Tokenizer
from glm3_teach.paths import data_dir, find_reference_file
from glm3_teach.sft import (
    IGNORE_INDEX,
    TOOL_PROMPT,
    LengthGroupedBatches,
    SFTCollator,
    SFTDataError,
    SFTDataset,
    encode_conversation,
    load_config,
    shift_labels,
    text_blocks,
    tools_prefix_ids,
)
from glm3_teach.tokenizer import BPETokenizer
from glm3_teach.train import (
    TrainConfig,
    TrainData,
    evaluate,
    masked_next_token_loss,
    train,
)

MASK, GMASK, SMASK, SOP, EOP, SYSTEM, USER, ASSISTANT, OBSERVATION, EOS, PAD = range(256, 267)
NL, X = 10, IGNORE_INDEX


def utf8(text):
    return list(text.encode("utf-8"))


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer([])


def conv(*messages, **extra):
    return {"conversations": [dict(m) for m in messages], **extra}


def user(text):
    return {"role": "user", "content": text}


def assistant(text, **kw):
    return {"role": "assistant", "content": text, **kw}


def test_single_turn_ids_and_shifted_labels_by_hand(tok):
    ids, labels = encode_conversation(conv(user("hi"), assistant("ok")), tok)
    assert ids == [GMASK, SOP, USER, NL, *utf8("hi"), ASSISTANT, NL, *utf8("ok"), EOS]
    # the prediction made at <|assistant|> (of "\n") and at every reply token is trained; the
    # label shift puts each flag on the next id, so eos is a target and <|assistant|> is not
    assert labels == [X, X, X, X, X, X, X, NL, *utf8("ok"), EOS]


def test_the_next_role_token_after_a_reply_is_a_target_and_user_text_is_not(tok):
    ids, labels = encode_conversation(conv(user("a"), assistant("b"), user("c"), assistant("d")), tok)
    assert ids == [GMASK, SOP, USER, NL, 97, ASSISTANT, NL, 98, USER, NL, 99, ASSISTANT, NL, 100, EOS]
    assert labels == [X, X, X, X, X, X, NL, 98, USER, X, X, X, NL, 100, EOS]


def test_loss_false_turns_off_a_reply_and_the_token_after_it(tok):
    _, labels = encode_conversation(conv(user("a"), assistant("b", loss=False), user("c"), assistant("d")), tok)
    assert labels == [X] * 12 + [NL, 100, EOS]


def test_system_and_user_never_carry_loss_even_when_asked(tok):
    item = conv({"role": "system", "content": "s", "loss": True}, {**user("a"), "loss": True}, assistant("b"))
    ids, labels = encode_conversation(item, tok)
    assert ids[:5] == [GMASK, SOP, SYSTEM, NL, 115]
    assert [label for label in labels if label != X] == [NL, 98, EOS]


def test_shift_labels_is_the_one_token_shift():
    assert shift_labels([5, 6, 7, 8], [False, True, True, False]) == [X, X, 7, 8]
    with pytest.raises(ValueError, match="length"):
        shift_labels([1, 2], [True])


def test_tools_insert_the_system_message_first_and_the_tool_role_becomes_call_plus_observation(tok):
    tools = [{"name": "check_stock", "parameters": {}}]
    item = conv(user("q"), {"role": "tool", "name": "check_stock", "parameters": {"product": "oolong"},
                            "observation": {"product": "oolong", "in_stock": 23}}, assistant("23"), tools=tools)
    ids, labels = encode_conversation(item, tok)
    system = [SYSTEM, NL, *utf8(TOOL_PROMPT + "\n" + json.dumps(tools, indent=4, ensure_ascii=False))]
    call = [ASSISTANT, *utf8("check_stock\n"), *utf8("```python\ntool_call(product='oolong')\n```")]
    observation = [OBSERVATION, NL, *utf8('{"product": "oolong", "in_stock": 23}')]
    reply = [ASSISTANT, NL, *utf8("23")]
    assert ids == [GMASK, SOP, *system, USER, NL, 113, *call, *observation, *reply, EOS]
    start = 2 + len(system) + 3
    expected = [X] * (start + 1) + call[1:] + [OBSERVATION] + [X] * (len(observation) - 1) + [X] + reply[1:] + [EOS]
    assert labels == expected  # the call and the <|observation|> after it are targets, the result is not


def test_string_observations_stay_as_they_are_and_json_keeps_chinese(tok):
    base = {"role": "tool", "name": "f", "parameters": {}}
    ids_s, _ = encode_conversation(conv(user("q"), {**base, "observation": "晴"}, assistant("ok")), tok)
    ids_j, _ = encode_conversation(conv(user("q"), {**base, "observation": {"天气": "晴"}}, assistant("ok")), tok)
    assert bytes(i for i in ids_s if i < 256).decode().count("晴") == 1
    assert '{"天气": "晴"}' in bytes(i for i in ids_j if i < 256).decode()


@pytest.mark.parametrize("item, message", [
    ({"conversations": []}, r"item\['conversations'\] must be a non-empty list"),
    ({"messages": [user("a")]}, r"item\['conversations'\] must be a non-empty list"),
    (conv({"role": "robot", "content": "a"}), r"item\['conversations'\]\[0\] has the unknown role 'robot'"),
    (conv(user("a"), {"role": "tool", "parameters": {}, "observation": 1}), r"\[1\] is a tool call without a 'name'"),
    (conv(user(3)), r"\[0\]\['content'\] \(user\) must be a str"),
    (conv(user("a"), {"role": "observation", "content": "x"}), r"\[1\] is an observation but follows user"),
    (conv(user("a"), assistant("b", loss="yes")), r"\[1\]\['loss'\] must be true or false"),
    (conv(user("a"), {"role": "tool", "name": "f", "parameters": {}}), r"\[1\] is a tool call without an 'observation'"),
    (conv({"role": "user", "contents": "a"}), r"unknown keys \['contents'\]"),
    ("not a dict", r"item must be a dict"),
])
def test_bad_items_name_the_item_and_field(tok, item, message):
    with pytest.raises(SFTDataError, match=message):
        encode_conversation(item, tok)


def test_dataset_errors_say_which_item(tok):
    with pytest.raises(SFTDataError, match=r"training set item 1\['conversations'\]\[0\]"):
        SFTDataset([conv(user("a"), assistant("b")), conv(user(1))], tok, 64, name="training set")


# --- the real ChatGLM3 tokenizer -----------------------------------------------------------------


@pytest.fixture(scope="module")
def glm3_tok():
    path = find_reference_file("tokenizer.model", TOKENIZER_ENV_VAR)
    if path is None:
        pytest.skip(f"ChatGLM3's tokenizer.model is not available (set {TOKENIZER_ENV_VAR} or put it in "
                    f"../shared/reference/chatglm3/)")
    return ChatGLM3Tokenizer.from_file(path)


def test_real_tokenizer_ids_and_labels_derived_by_hand(glm3_tok):
    # build_chat_input("你好") = [64790, 64792, 64795, 30910, 13, 36474, 54591, 64796] (facts file);
    # the reply "你好" is "▁\n" = [30910, 13] then [36474 ▁你, 54591 好], then eos 2
    ids, labels = encode_conversation(conv(user("你好"), assistant("你好")), glm3_tok)
    assert ids == [64790, 64792, 64795, 30910, 13, 36474, 54591, 64796, 30910, 13, 36474, 54591, 2]
    assert labels == [X] * 8 + [30910, 13, 36474, 54591, 2]


def test_real_tokenizer_tool_round_targets_the_call_and_the_observation_token(glm3_tok):
    item = conv(user("你好"), {"role": "tool", "name": "check_order", "parameters": {"order_id": "A1234"},
                               "observation": {"status": "shipped"}}, assistant("你好"), tools=[{"name": "check_order"}])
    ids, labels = encode_conversation(item, glm3_tok)
    assert ids[:3] == [64790, 64792, 64794]
    call = ids.index(64796)
    assert ids[call + 1:call + 1 + len(glm3_tok.encode_ordinary("check_order\n"))] == glm3_tok.encode_ordinary("check_order\n")
    observation = ids.index(64797)
    assert labels[observation] == 64797 and labels[call] == X and labels[call + 1] == ids[call + 1]
    assert ids[observation + 1:observation + 3] == [30910, 13] and labels[observation + 1] == X
    assert ids[-5:] == [30910, 13, 36474, 54591, 2] and labels[-5:] == ids[-5:]


# --- the collator and the dataset -----------------------------------------------------------------


def test_collator_pads_on_the_right_with_pad_and_minus_100(tok):
    collate = SFTCollator(PAD, 16)
    batch = collate([{"input_ids": [1, 2, 3], "labels": [X, 2, 3]}, {"input_ids": [4, 5], "labels": [X, 5]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 5, PAD]]
    assert batch["labels"].tolist() == [[X, 2, 3], [X, 5, X]]


def test_collator_drops_and_counts_samples_too_long_instead_of_cutting_the_stop_target():
    collate = SFTCollator(PAD, 4)
    batch = collate([{"input_ids": [1, 2, 3, 4, EOS], "labels": [X, X, 3, 4, EOS]},
                     {"input_ids": [1, 2, EOS], "labels": [X, 2, EOS]}])
    assert batch["input_ids"].tolist() == [[1, 2, EOS]] and collate.dropped == 1
    assert batch["labels"][0, -1] == EOS  # every kept sample still ends on its stop target


def test_collator_never_returns_a_batch_without_targets():
    with pytest.raises(ValueError, match="NaN"):
        SFTCollator(PAD, 8)([{"input_ids": [1, 2], "labels": [X, X]}])
    with pytest.raises(ValueError, match="fits max_length"):
        SFTCollator(PAD, 1)([{"input_ids": [1, 2], "labels": [X, 2]}])


def test_dataset_drops_and_counts_long_and_targetless_samples(tok):
    items = [conv(user("a"), assistant("b")), conv(user("a" * 50), assistant("b")), conv(user("a"), assistant("b", loss=False))]
    dataset = SFTDataset(items, tok, max_length=20)
    assert len(dataset) == 1 and dataset.dropped == {"too_long": 1, "no_target": 1}
    assert dataset[0]["labels"][-1] == EOS


def test_masked_loss_matches_the_hand_computation_and_is_zero_not_nan_without_targets():
    logits = torch.randn(1, 4, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([[X, X, 3, 5]])
    log_probs = torch.log_softmax(logits[0], -1)
    by_hand = -(log_probs[1, 3] + log_probs[2, 5]) / 2
    loss = masked_next_token_loss(logits, labels)
    torch.testing.assert_close(loss, by_hand)
    loss.backward()
    assert logits.grad[0, 0].abs().sum() == 0 and logits.grad[0, 3].abs().sum() == 0  # untrained positions
    empty = masked_next_token_loss(logits, torch.full((1, 4), X))
    assert empty.item() == 0.0 and not math.isnan(empty.item()) and empty.requires_grad


def test_text_blocks_pack_documents_with_eos(tok):
    assert text_blocks(["ab", "c"], tok, 2) == [[97, 98], [EOS, 99]]


def test_length_grouping_keeps_every_sample_once_within_the_token_budget(tok):
    items = [conv(user("q" * n), assistant("a")) for n in (1, 30, 2, 25, 3, 1)]
    dataset = SFTDataset(items, tok, 64)
    groups = LengthGroupedBatches(dataset, max_tokens=80)
    assert sorted(i for g in groups.groups for i in g) == list(range(6))
    for group in groups.groups:
        assert len(group) * max(len(dataset[i]["input_ids"]) for i in group) <= 80
    batch = groups.collate([groups[0]])
    assert batch["input_ids"].shape[0] == len(groups.groups[0])


# --- the train.py hook ------------------------------------------------------------------------------


TINY_MODEL = dict(num_layers=2, hidden_size=32, ffn_hidden_size=64, kv_channels=8, num_attention_heads=4,
                  multi_query_group_num=2, padded_vocab_size=267, seq_length=64, eos_token_id=EOS, pad_token_id=PAD)


def test_train_learns_replies_from_sft_batches_and_evaluates_on_an_sft_split(tok):
    from glm3_teach.train import build_model

    items = [conv(user(q), assistant(a)) for q, a in [("1", "one"), ("2", "two"), ("3", "three"), ("4", "four")]]
    dataset = SFTDataset(items * 4, tok, 64)
    config = TrainConfig(model=TINY_MODEL, block_size=64, batch_size=4, max_steps=40, warmup_steps=2, lr=1e-2, eval_every=20,
                         device="cpu", progress=False)
    model = build_model(config)
    data = TrainData(dataset, SFTDataset(items, tok, 64))
    before = evaluate(model, data.val, 0, 4)
    history = train(model, data, config)
    after = evaluate(model, data.val, 0, 4)
    assert all(math.isfinite(v) for v in history["loss"]) and history["val_step"] == [20, 40]
    assert after["loss"] < 0.5 * before["loss"] and after["tokens"] == sum(len(a) + 2 for a in ("one", "two", "three", "four"))


def test_chat_config_loads_with_its_sft_table(tmp_path):
    config, sft = load_config("configs/chat.toml")
    assert sft.method == "full" and config.batch_size >= 1 and sft.max_length <= (sft.seq_length or 256)
    bad = tmp_path / "bad.toml"
    for sft_table, message in [
            ("method = 'magic'", "method must be"),
            ("tools_story_blocks = -5", r"tools_story_blocks must be an int >= 0"),
            ("fresh_tool_weights = { stok = 2 }", r"fresh_tool_weights must map tool intents .* got \{'stok': 2\}"),
            ("fresh_tool_weights = { stock = 2 }", r"fresh_tool_dialogues is 0; set fresh_tool_dialogues"),
            ("more_tool_phrasings = true", r"more_tool_phrasings words the fresh tool dialogues, but fresh_tool_dialogues is 0"),
            ("fresh_tool_dialogues = 5\nmore_tool_phrasings = 3", r"more_tool_phrasings must be true, false or 2 .*got 3"),
            ("learning = 1", r"unknown keys \['learning'\]")]:
        bad.write_text(f"max_steps = 20\n[sft]\n{sft_table}\n", encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            load_config(bad)


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from glm3_teach.sft import main

    with pytest.raises(SystemExit) as stopped:
        main(["--config", str(tmp_path / "missing.toml")])
    assert stopped.value.code == 2 and "no config file" in capsys.readouterr().err


def test_cli_reports_bad_data_in_one_line_too(tmp_path, capsys, monkeypatch):
    from glm3_teach import dialogues
    from glm3_teach.sft import main

    plain = {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    monkeypatch.setattr(dialogues, "load_sft", lambda split, folder=None: [plain] * 4)
    config = tmp_path / "no_tools.toml"
    config.write_text('max_steps = 1\nwarmup_steps = 0\n[sft]\ninit_from = "data/checkpoints/base"\ntools_recall_blocks = 2\n'
                      "val_items = 2\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        main(["--config", str(config)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "tools_recall_blocks = 2 needs tool dialogues" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("shipped, files, method", [
    ("base", ("config.json", "model.safetensors"), "full"),                       # a model checkpoint
    ("chat_lora", ("adapter_config.json", "adapter_model.safetensors"), "lora"),  # a LoRA adapter folder
])
def test_cli_refuses_to_replace_a_trained_model_without_force(tmp_path, capsys, monkeypatch, shipped, files, method):
    import shutil

    from glm3_teach import sft

    trained = tmp_path / shipped
    trained.mkdir()
    for name in files:
        shutil.copy(data_dir() / "checkpoints" / shipped / name, trained / name)
    config = tmp_path / "run.toml"
    config.write_text(f'max_steps = 1\nwarmup_steps = 0\nexport_dir = "{trained.as_posix()}"\n'
                      f'[sft]\ninit_from = "data/checkpoints/base"\nmethod = "{method}"\n', encoding="utf-8")
    monkeypatch.setattr(sft, "run", lambda *a, **k: pytest.fail(f"trained although {shipped}'s files are there"))
    with pytest.raises(SystemExit) as stopped:
        sft.main(["--config", str(config)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "already holds a trained model" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    monkeypatch.setattr(sft, "run", lambda *a, **k: {"ran": True})   # with --force the run goes ahead
    assert sft.main(["--config", str(config), "--force"]) == 0


def test_tool_repeats_upsamples_the_tool_dialogues_only(monkeypatch):
    from glm3_teach import dialogues
    from glm3_teach.sft import SFTConfig, build_data
    from glm3_teach.train import TrainConfig

    plain = {"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好！"}]}
    tool = {"tools": [{"name": "check_order", "description": "查订单", "parameters": {}}],
            "conversations": [{"role": "user", "content": "订单A1234呢？"}, {"role": "assistant", "content": "好的"}]}
    monkeypatch.setattr(dialogues, "load_sft", lambda split, folder=None: [plain] * 5 + [tool] * 2)
    tok = BPETokenizer([])
    tool_ids = encode_conversation(tool, tok)[0]
    counts = {}
    for repeats in (1, 3):
        samples = build_data(tok, TrainConfig(), SFTConfig(tool_repeats=repeats, val_items=2)).train.dataset.samples
        counts[repeats] = (len(samples), sum(sample["input_ids"] == tool_ids for sample in samples))
    assert counts == {1: (7, 2), 3: (11, 6)}   # 5 plain dialogues once, the 2 tool dialogues 1 or 3 times
    with pytest.raises(ValueError, match=r"tool_repeats must be a positive int, got 0"):
        SFTConfig(tool_repeats=0)


def test_a_shared_prefix_runs_once_and_gives_the_same_loss_and_gradients(tok):
    from glm3_teach.train import batch_loss, build_model

    system = {"role": "system", "content": "x" * 30}
    items = [conv(system, user(q), assistant(a)) for q, a in [("1", "one"), ("22", "two"), ("3", "three")]]
    dataset = SFTDataset(items, tok, 64)
    samples = [dataset[i] for i in range(3)]
    shared, plain = SFTCollator(PAD, 64, share_prefix=16)(samples), SFTCollator(PAD, 64)(samples)
    assert shared["prefix_ids"].shape == (1, 2 + 2 + 30 + 2) and "prefix_ids" not in plain
    config = TrainConfig(model=TINY_MODEL, block_size=64, device="cpu", progress=False)
    model = build_model(config)
    losses, grads = [], []
    for batch in (shared, plain):
        model.zero_grad()
        loss, targets = batch_loss(model, batch, torch.device("cpu"), None)
        loss.backward()
        losses.append((loss.item(), targets))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert losses[0][1] == losses[1][1] and losses[0][0] == pytest.approx(losses[1][0], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_tool_like_samples_are_grouped_among_themselves_with_the_prefix_counted_once(tok):
    system = {"role": "system", "content": "y" * 40}
    long_items = [conv(system, user(str(n)), assistant("ok")) for n in range(6)]
    short_items = [conv(user(str(n)), assistant("ok")) for n in range(6)]
    dataset = SFTDataset(long_items + short_items, tok, 128, share_prefix=16)
    groups = LengthGroupedBatches(dataset, max_tokens=90, max_batch=6, share_prefix=16)
    assert sorted(groups.groups) == [list(range(6)), list(range(6, 12))]  # 46 shared + 6 rows x 6 fits 90
    assert "prefix_ids" in groups.collate([groups[groups.groups.index(list(range(6)))]])


def test_blocks_after_the_tools_message_train_only_the_text_and_batch_with_the_tool_dialogues(tok):
    tools = [{"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}]
    dialogue = conv(user("1"), assistant("ok"), tools=tools)
    prefix = tools_prefix_ids(tools, tok)
    ids, _ = encode_conversation(dialogue, tok)
    assert ids[:len(prefix)] == prefix and ids[len(prefix)] == USER       # what every tool dialogue opens with
    blocks = [utf8("story one"), utf8("story two")]
    dataset = SFTDataset([dialogue] * 3, tok, 1024, [utf8("plain")], share_prefix=16, prefixed_blocks=(prefix, blocks))
    assert dataset.kinds == ["dialogue"] * 3 + ["text", "tools_text", "tools_text"]
    sample = dataset[4]
    assert sample["input_ids"] == prefix + blocks[0]
    assert sample["labels"] == [X] * (len(prefix) + 1) + blocks[0][1:]     # the message is read, never trained
    groups = LengthGroupedBatches(dataset, max_tokens=4096, max_batch=5, share_prefix=16)
    assert [0, 1, 2, 4, 5] in [sorted(g) for g in groups.groups]             # one batch, one shared prefix
    batch = groups.collate([groups[[sorted(g) for g in groups.groups].index([0, 1, 2, 4, 5])]])
    assert batch["prefix_ids"].shape[1] == len(prefix)


def test_story_mix_draws_distinct_blocks_and_keeps_the_plain_ones_when_more_are_asked(tok, monkeypatch):
    from glm3_teach import data
    from glm3_teach.sft import SFTConfig, story_mix

    text = "".join(chr(c) for c in range(33, 127)) * 2                  # 188 bytes: every 8-byte block differs
    monkeypatch.setattr(data, "load_documents", lambda split: [text])
    plain, after = story_mix(tok, SFTConfig(story_blocks=5, story_block_size=8), seed=0)
    plain2, after2 = story_mix(tok, SFTConfig(story_blocks=5, tools_story_blocks=4, story_block_size=8), seed=0)
    assert (len(plain), after) == (5, []) and plain2 == plain and len(after2) == 4
    assert not {tuple(b) for b in plain2} & {tuple(b) for b in after2}


def test_loss_mask_html_colours_targets_and_escapes_text(tok):
    from glm3_teach.sft import loss_mask_html

    ids, labels = encode_conversation(conv(user("<b>"), assistant("ok")), tok)
    page = loss_mask_html(ids, labels, tok)
    assert page.count("#b7e4b0") == sum(label != X for label in labels) == 4
    assert "&lt;" in page and "&gt;" in page  # the user's "<b>" is shown, never interpreted as HTML
    assert page.count("<span") == len(ids) and "↵" in page


def test_fresh_tool_dialogues_join_the_training_set_and_are_checked(monkeypatch):
    from glm3_teach import dialogues
    from glm3_teach.sft import SFTConfig, _repeats, build_data

    plain = {"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好！"}]}
    monkeypatch.setattr(dialogues, "load_sft", lambda split, folder=None: [plain] * 5)
    tok = BPETokenizer([])
    expected = [encode_conversation(i, tok)[0] for i in dialogues.fresh_tool_items(12, 0)]
    samples = build_data(tok, TrainConfig(), SFTConfig(fresh_tool_dialogues=12, val_items=2,
                                                      max_length=20_000)).train.dataset.samples  # bytes: long
    tool_samples = [s["input_ids"] for s in samples if s["input_ids"] != encode_conversation(plain, tok)[0]]
    assert len(samples) == 17 and sorted(tool_samples) == sorted(expected)   # 5 plain, the 12 drawn by the seed
    assert "- 12 more tool dialogues drawn afresh" in _repeats({"fresh_tool_dialogues": 12}) and not _repeats({})
    assert "MORE_TOOL_TEMPLATES" in _repeats({"fresh_tool_dialogues": 12, "more_tool_phrasings": True})
    assert "MORE_TOOL_TEMPLATES" not in _repeats({"fresh_tool_dialogues": 12})
    assert "`MORE_TOOL_TEMPLATES` and `SECOND_TOOL_TEMPLATES`" in _repeats({"fresh_tool_dialogues": 12, "more_tool_phrasings": 2})
    with pytest.raises(ValueError, match=r"fresh_tool_dialogues must be an int >= 0 \(0 = none\), got -1"):
        SFTConfig(fresh_tool_dialogues=-1)


def test_story_baseline_names_the_model_forgetting_is_measured_against(tmp_path):
    from glm3_teach.sft import SFTConfig, story_baseline_model, story_record

    model = torch.nn.Linear(2, 2)
    assert story_baseline_model(model, SFTConfig()) is model      # by default: the model fine-tuning starts from
    base_long = story_baseline_model(model, SFTConfig(story_baseline="data/checkpoints/base_long"))
    assert base_long is not model and base_long.config.seq_length == 1536
    record = story_record({"zh": 0.2, "en": 0.3}, {"zh": 0.22, "en": 0.3}, "data/checkpoints/base_long")
    assert record["baseline"] == "data/checkpoints/base_long" and record["per_language"]["zh"]["after"] == 0.22
    with pytest.raises(ValueError, match=r"story_baseline must be a checkpoint folder \(a string\), got 3"):
        SFTConfig(story_baseline=3)
