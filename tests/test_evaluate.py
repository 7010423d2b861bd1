"""The evaluation harness: language detection, ROUGE-L, bits per byte, grading and the table.

ScriptedModel (tests/scripted_model.py) says a fixed script; the tokenizer without merges
makes ids bytes (256 [MASK] ... 262 <|user|>, 263 <|assistant|>, 264 <|observation|>, 265 </s>).
"""

from __future__ import annotations

import json
import math
import types

import pytest
import torch
from scripted_model import ScriptedModel

from glm3_teach import evaluate as ev
from glm3_teach.tokenizer import BPETokenizer

USER, ASSISTANT, OBSERVATION, EOS = 262, 263, 264, 265


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer([])


def saying(text, stop=EOS):
    return ScriptedModel(list(("\n" + text).encode()) + ([stop] if stop is not None else []), 267, filler=ord("x"))


def item(question, answer, lang="zh", expect=(), **meta):
    return {"conversations": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "meta": {"intent": "price", "lang": lang, "template": "t", "split": "val", "expect": list(expect), **meta}}


def test_reply_language_counts_cjk_against_latin_letters():
    assert ev.reply_language("乌龙茶58元一两。") == "zh"
    assert ev.reply_language("Oolong costs 58 yuan.") == "en"
    assert ev.reply_language("清泉茶铺 (Clear Spring)") == "zh"  # 4 CJK vs 11 Latin letters: 4 >= 11 / 3
    assert ev.reply_language("It is 清泉 tea shop, open daily") == "en"
    assert ev.reply_language("58!") is None


def test_rouge_l_by_hand():
    assert ev.lcs_length("abcbdab", "bdcaba") == 4
    # candidate 3 words, reference 4, LCS 3: P = 1, R = 3/4, F = 2 * 0.75 / 1.75
    assert ev.rouge_l("The cat sat.", "the cat sat down") == pytest.approx(6 / 7)
    # Chinese by characters: 小猫睡觉 vs 小猫在睡觉: LCS 4, P = 1, R = 4/5
    assert ev.rouge_l("小猫睡觉", "小猫在睡觉") == pytest.approx(2 * 0.8 / 1.8)
    assert ev.rouge_l("", "abc") == 0.0 and ev.rouge_l("x", "y") == 0.0


def test_grade_reply_needs_the_fact_the_language_and_the_stop(tok):
    ids = lambda text: list(text.encode())
    meta = {"lang": "zh", "expect": ["58元"]}
    good = ev.grade_reply(tok, ids("\n乌龙茶58元。") + [EOS], [EOS, USER, OBSERVATION], meta)
    assert good["correct"] and good["stopped"] and good["language_ok"] and good["reply"] == "乌龙茶58元。"
    wrong_lang = ev.grade_reply(tok, ids("\nOolong is 58元.") + [EOS], [EOS], meta)
    assert wrong_lang["correct"] is False and not wrong_lang["language_ok"]
    unstopped = ev.grade_reply(tok, ids("\n乌龙茶58元"), [EOS], meta)
    assert unstopped["correct"] and not unstopped["stopped"]
    translation = ev.grade_reply(tok, ids("\nThe cat sat.") + [EOS], [EOS],
                                 {"lang": "en", "source_lang": "zh", "expect": [], "reference": "The cat sat down."})
    assert translation["correct"] is None and translation["language_ok"] and translation["rouge_l"] == pytest.approx(6 / 7)


def test_prompt_of_takes_every_message_before_the_last_user_turn():
    multi = {"conversations": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                               {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    history, query = ev.prompt_of(multi)
    assert query == "c" and history == [{"role": "user", "metadata": "", "content": "a"},
                                         {"role": "assistant", "metadata": "", "content": "b"}]
    tools = [{"name": "check_order"}]
    history, query = ev.prompt_of({"tools": tools, **multi})
    assert history[0] == {"role": "system", "content": ev_tool_prompt(), "tools": tools}


def ev_tool_prompt():
    from glm3_teach.sft import TOOL_PROMPT

    return TOOL_PROMPT


def test_the_prompt_renders_the_tokens_fine_tuning_saw(tok):
    from glm3_teach.sft import encode_conversation

    tools = [{"name": "check_order", "parameters": {}}]
    full = {"tools": tools, "conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    history, query = ev.prompt_of(full)
    ids, _ = encode_conversation(full, tok)
    prompt = tok.build_chat_input(query, history=history)
    assert ids[:len(prompt)] == prompt


def test_answer_items_batches_prompts_and_grades_each(tok):
    items = [item("乌龙茶多少钱？", "58元", expect=["58元"]), item("Price of oolong?", "58 yuan", "en", expect=["58 yuan"]),
             item("红茶呢？", "42元", expect=["42元"])]
    results = ev.answer_items(saying("乌龙茶58元。"), tok, items, max_new_tokens=40, batch_size=2, progress=False)
    assert [r["correct"] for r in results] == [True, False, False]
    assert [r["language_ok"] for r in results] == [True, False, True]
    assert all(r["stopped"] for r in results)
    cut = ev.answer_items(saying("乌龙茶58元。"), tok, items[:1], max_new_tokens=4, progress=False)
    assert not cut[0]["stopped"]


def test_summarize_and_subsample():
    rows = [{"correct": True, "stopped": True, "language_ok": True, "rouge_l": None},
            {"correct": None, "stopped": False, "language_ok": True, "rouge_l": 0.5}]
    summary = ev.summarize(rows, model="m", split="val", lang="all")
    assert summary["fact_accuracy"] == 1.0 and summary["fact_items"] == 1
    assert summary["stop_compliance"] == 0.5 and summary["rouge_l"] == 0.5 and summary["items"] == 2
    assert ev.subsample(list(range(10)), 3) == [0, 3, 6] and ev.subsample([1, 2], None) == [1, 2]


class Uniform(torch.nn.Module):
    """Predicts every id with the same probability: exactly ln(vocab) nats per token."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.weight = vocab, torch.nn.Parameter(torch.zeros(1))
        self.config = types.SimpleNamespace(seq_length=64)

    def forward(self, input_ids, **_):
        return types.SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab) + 0 * self.weight)


def test_bits_per_byte_of_a_uniform_model_is_log2_vocab_per_token_over_bytes(tok):
    documents = ["abcdefgh" * 4, "ijklmnop" * 4]                  # 64 bytes, 2 eos: a stream of 66 ids
    bpb = ev.text_bits_per_byte(Uniform(267), tok, documents, block_size=16, batch_size=2)
    # windows of 16 ids overlapping by one: starts 0, 15, 30, 45, so ids 1..60 are targets once each;
    # their bytes: 59 ordinary bytes + 1 for the eos among them = 60
    assert bpb == pytest.approx(60 * math.log2(267) / 60)
    dialogue = item("q", "ab")
    bpb = ev.dialogue_bits_per_byte(Uniform(267), tok, [dialogue])
    # targets: "\n" "a" "b" eos = 4 ids, 4 bytes (eos counts one)
    assert bpb == pytest.approx(math.log2(267))


def test_evaluate_end_to_end_on_a_small_folder_and_the_table(tok, tmp_path, monkeypatch):
    for split in ("train", "val", "heldout"):
        lines = [item("乌龙茶多少钱？", "乌龙茶58元。", expect=["58元"]), item("Oolong?", "58 yuan", "en", expect=["58 yuan"])]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
                                                 encoding="utf-8")
    monkeypatch.setattr(ev, "story_bits_per_byte", lambda model, tokenizer, lang, max_documents: 1.5)
    keep = []
    rows = ev.evaluate(saying("乌龙茶58元。"), tok, "scripted", data=tmp_path, tools=False, progress=False, keep=keep)
    by = {(r["split"], r["lang"]): r for r in rows}
    assert by[("heldout", "zh")]["fact_accuracy"] == 1.0 and by[("heldout", "en")]["fact_accuracy"] == 0.0
    assert by[("val", "all")]["stop_compliance"] == 1.0 and by[("stories (val)", "zh")]["bits_per_byte"] == 1.5
    assert by[("shop (val replies)", "zh")]["bits_per_byte"] > 0 and len(keep) == 4
    table = ev.format_table(rows)
    assert "| scripted | heldout | zh | 1 | 100.0% | 100.0% | 100.0% |" in table and "1.5000" in table


def test_cli_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        ev.main(["--model", str(tmp_path)])
    assert stopped.value.code == 2 and "not a checkpoint folder" in capsys.readouterr().err


def test_the_table_goes_into_a_checkpoints_record_and_readme(tmp_path):
    record = {"command": "python -m glm3_teach.sft --config configs/chat.toml", "config_file": "configs/chat.toml",
              "sft": {"init_from": "data/checkpoints/base", "data": "data/sft", "method": "full"},
              "config": {"save_dtype": "bfloat16", "max_steps": 10, "lr": 1e-3, "warmup_steps": 2, "min_lr_ratio": 0.1,
                         "weight_decay": 0.1, "seed": 0, "export_dir": "runs/chat_x"},
              "machine": {"cpu_count": 2, "torch_threads": 1, "torch": "2", "python": "3.11", "load_average_at_start": [1.0]},
              "model_config": {"seq_length": 1536}, "note": "", "wall_seconds": 60.0, "train_seconds": 50.0,
              "train_samples": 10, "story_blocks": 2, "train_batches": 3, "train_targets": 99, "dropped": {},
              "val_samples": 4, "epochs": 3.3, "final_train_loss": 0.5, "final_val": {"loss": 0.6},
              "story_bits_per_byte": {"before": 1.0, "after": 1.05,
                                      "per_language": {"zh": {"before": 1.0, "after": 1.1}}},
              "samples": {"你好": "您好！"}}
    (tmp_path / "training.json").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    ev.write_into_record(tmp_path, {"command": "python -m glm3_teach.evaluate --model x", "rows": [{"minutes": 1.5}],
                                    "replies": []}, "| model |\n| --- |\n| x |")
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| x |" in readme and "python -m glm3_teach.evaluate --model x" in readme and "+5.0%" in readme
    assert "zh: `data/checkpoints/base` -> this model | 1.0000 -> 1.1000 (+10.0%)" in readme
    assert "| 你好 | 您好！ |" in readme and 'load_pretrained("runs/chat_x"' in readme
    assert json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))["rows"] == [{"minutes": 1.5}]


def write_sft_folder(folder, items):
    folder.mkdir(exist_ok=True)
    for split in ("train", "val", "heldout"):
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in items) + "\n",
                                               encoding="utf-8")
    return folder


def first_tool_item():
    from glm3_teach.paths import data_dir

    with open(data_dir() / "sft" / "val.jsonl", encoding="utf-8") as lines:
        return next(json.loads(line) for line in lines if '"expect_tool"' in line)


def test_every_tool_items_agent_run_is_kept_with_its_calls_and_observations(tok, tmp_path, monkeypatch):
    from glm3_teach.tools import format_tool_call

    tool_item = first_tool_item()
    order_id = tool_item["meta"]["expect_tool"]["parameters"]["order_id"]
    data = write_sft_folder(tmp_path, [item("乌龙茶多少钱？", "乌龙茶58元。", expect=["58元"]),
                                       item("Oolong?", "58 yuan", "en"), tool_item])
    monkeypatch.setattr(ev, "story_bits_per_byte", lambda model, tokenizer, lang, max_documents: 1.5)
    call = tok.build_single_message("assistant", "check_order", format_tool_call({"order_id": order_id}))[1:]
    model = ScriptedModel(call + [OBSERVATION], 267, seq_length=8192)   # calls check_order in every generation
    keep = []
    rows = ev.evaluate(model, tok, "caller", data=data, progress=False, keep=keep, max_new_tokens=64)
    tool_rows = [r for r in rows if r["split"].endswith("tools")]
    assert [r["split"] for r in tool_rows] == ["val tools", "heldout tools"] and tool_rows[0]["tool_name_accuracy"] == 1.0
    tools = [r for r in keep if r["kind"] == "tool"]
    assert [r["split"] for r in tools] == ["val tools", "heldout tools"] and len(keep) == 6
    record = tools[0]
    assert record["model"] == "caller" and record["meta"] == tool_item["meta"]
    assert record["query"] == tool_item["conversations"][0]["content"] and record["call_ok"] and record["name_ok"]
    assert [s["kind"] for s in record["steps"]] == ["call", "observation", "call"]    # then it repeats itself
    assert record["steps"][1]["content"]["order_id"] == order_id and record["stopped"] == "repeated_call"
    assert record["reply"].startswith("[agent stopped")
    assert {r["kind"] for r in keep if r["split"] in ("val", "heldout")} == {"reply"}
    json.dumps(keep, ensure_ascii=False)                                 # what --json writes


def tiny_checkpoint(folder, tok, seed=0):
    from glm3_teach.checkpoint import save_pretrained
    from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM

    torch.manual_seed(seed)
    config = ChatGLMConfig(num_layers=1, hidden_size=32, ffn_hidden_size=40, kv_channels=8, num_attention_heads=4,
                           multi_query_group_num=2, padded_vocab_size=267, seq_length=96)
    model = ChatGLMForCausalLM(config).eval()
    save_pretrained(model, folder, tokenizer=tok)
    return model


def run_cli(argv, capsys):
    try:
        code = ev.main(argv)
    except SystemExit as stopped:
        code = stopped.code
    return code, capsys.readouterr()


def test_the_cli_evaluates_an_adapter_folder_on_the_base_it_records_or_on_base(tok, tmp_path, monkeypatch, capsys):
    from glm3_teach import peft
    from glm3_teach.checkpoint import load_pretrained

    monkeypatch.setattr(ev, "story_bits_per_byte", lambda model, tokenizer, lang, max_documents: 1.5)
    data = write_sft_folder(tmp_path / "sft", [item("乌龙茶多少钱？", "乌龙茶58元。"), item("Oolong?", "58 yuan", "en")])
    base = tiny_checkpoint(tmp_path / "base", tok)
    lora = load_pretrained(tmp_path / "base")
    peft.apply_lora(lora, r=4, alpha=64, dropout=0.0)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_" in name:
                p.normal_(0, 1.0)
    peft.save_lora(lora, tmp_path / "lora", base_model_name_or_path=str(tmp_path / "base"))   # no tokenizer saved
    prefix = load_pretrained(tmp_path / "base")
    peft.apply_ptuning(prefix, pre_seq_len=2)
    with torch.no_grad():
        prefix.transformer.prefix_encoder.embedding.weight.normal_(0, 3.0)
    peft.save_ptuning(prefix, tmp_path / "prefix", tokenizer=tok)                              # records no base
    common = ["--data", str(data), "--no-tools", "--max-new-tokens", "6", "--json"]

    def cli(*models, extra=()):
        argv = [a for m in models for a in ("--model", str(m))] + list(extra) + common + [str(tmp_path / "out.json")]
        code, out = run_cli(argv, capsys)
        assert code == 0, out.err
        return json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))

    def in_process(model, name):
        keep = []
        rows = ev.evaluate(model, tok, name, data, max_new_tokens=6, tools=False, progress=False, keep=keep)
        return [{k: v for k, v in r.items() if k != "minutes"} for r in rows], keep

    def without_minutes(result):
        return [{k: v for k, v in r.items() if k != "minutes"} for r in result["rows"]], result["replies"]

    merged = peft.merge_lora(lora.eval())
    assert without_minutes(cli(tmp_path / "lora")) == in_process(merged, "lora")
    assert in_process(merged, "lora")[1] != in_process(base, "base")[1]     # the adapter changes the replies
    assert without_minutes(cli(tmp_path / "prefix", extra=["--base", str(tmp_path / "base")])) == \
        in_process(prefix.eval(), "prefix")
    code, out = run_cli(["--model", str(tmp_path / "prefix")] + common + [str(tmp_path / "x.json")], capsys)
    assert code == 2 and "does not record its base model" in out.err and "--base FOLDER" in out.err
    assert not (tmp_path / "x.json").exists()
    code, out = run_cli(["--model", str(tmp_path / "lora"), "--base", str(tmp_path / "nowhere")] + common + ["y"], capsys)
    assert code == 2 and "is not a folder" in out.err
