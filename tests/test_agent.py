"""The agent loop (glm3_teach.agent) with scripted models, and the tool metrics of the evaluation harness.

A ``ScriptedModel`` writes one fixed reply per generation (token by token, greedy), so every
branch of the loop is driven exactly: a text reply, a call and its observation, a bad call,
a repeated call, a model that never stops calling. One test runs the real base checkpoint.
"""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from glm3_teach.agent import (agent_trace, aggregate, ask_turn_item, by_intent, evaluation_prompt, run_agent,
                              tool_metrics)
from glm3_teach.chat_format import validate_history
from glm3_teach.paths import data_dir
from glm3_teach.tokenizer import BPETokenizer
from glm3_teach.tools import SHOP_TOOLS, check_order, format_tool_call, tool_schema, tools_system_message

TOK = BPETokenizer([])  # bytes only: every id is known without a trained vocabulary
OBSERVATION, USER, ASSISTANT = (TOK.special_id(t) for t in ("<|observation|>", "<|user|>", "<|assistant|>"))


def call_reply(name, parameters):
    """What a model writes for a tool call after <|assistant|>, ending with <|observation|>."""
    return TOK.build_single_message("assistant", name, format_tool_call(parameters))[1:] + [OBSERVATION]


def raw_call_reply(name, code):
    return TOK.build_single_message("assistant", name, code)[1:] + [OBSERVATION]


def text_reply(text):
    return TOK.build_single_message("assistant", "", text)[1:] + [TOK.eos_token_id]


class ScriptedModel(torch.nn.Module):
    """Writes ``replies[k]`` in its k-th generation (a generation starts with a call without kv_cache)."""

    def __init__(self, replies, seq_length=8192):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # chat() finds the device from a parameter
        self.config = SimpleNamespace(seq_length=seq_length, padded_vocab_size=TOK.vocab_size,
                                      pad_token_id=TOK.pad_token_id)
        self.replies, self.prompts, self.position = list(replies), [], 0

    def forward(self, input_ids, attention_mask=None, kv_cache=None, use_cache=False):
        if kv_cache is None:
            self.prompts.append(input_ids[0].tolist())
            self.position = 0
        reply = self.replies[len(self.prompts) - 1]
        token = reply[self.position] if self.position < len(reply) else TOK.eos_token_id
        self.position += 1
        logits = torch.full((input_ids.shape[0], 1, TOK.vocab_size), -1e4)  # only the last position is read
        logits[:, -1, token] = 0.0
        return SimpleNamespace(logits=logits, kv_cache=("cache",))


def agent(model, query="我的订单A1234到哪了？", tools=SHOP_TOOLS, **kwargs):
    return agent_trace(model, TOK, query, tools, do_sample=False, **kwargs)


def test_a_text_reply_ends_the_loop_and_the_prompt_offers_the_tools():
    model = ScriptedModel([text_reply("您好！")])
    reply, history = run_agent(model, TOK, "你好", SHOP_TOOLS, do_sample=False)
    assert reply == "您好！"
    assert history == [tools_system_message(SHOP_TOOLS), {"role": "user", "content": "你好"},
                       {"role": "assistant", "metadata": "", "content": "您好！"}]
    assert model.prompts == [TOK.build_chat_input("你好", [tools_system_message(SHOP_TOOLS)])]


def test_a_tool_call_is_run_and_its_result_fed_back_as_an_observation():
    model = ScriptedModel([call_reply("check_order", {"order_id": "A1234"}), text_reply("已送达。")])
    trace = agent(model)
    observation = json.dumps(check_order("A1234"), ensure_ascii=False)
    assert trace["reply"] == "已送达。" and trace["stopped"] is None
    assert [s["kind"] for s in trace["steps"]] == ["call", "observation", "reply"]
    assert trace["steps"][1]["content"] == check_order("A1234")
    # the second prompt is the first, the call, then <|observation|> + the result, then <|assistant|>
    call_message = TOK.build_single_message("assistant", "check_order", format_tool_call({"order_id": "A1234"}))
    assert model.prompts[1] == (model.prompts[0][:-1] + call_message
                                + TOK.build_single_message("observation", "", observation) + [ASSISTANT])
    assert [m["role"] for m in trace["history"]] == ["system", "user", "assistant", "observation", "assistant"]
    assert trace["history"][3]["content"] == observation
    validate_history(trace["history"])


@pytest.mark.parametrize("reply, error", [
    (call_reply("check_order", {"order_id": 1234}), "must be of type string, got int"),
    (call_reply("check_order", {"id": "A1234"}), "missing argument 'order_id'"),
    (call_reply("refund", {"order_id": "A1234"}), "no tool named 'refund'"),
    (raw_call_reply("check_order", "```python\ntool_call('A1234')\n```"), "could not be read"),
    (raw_call_reply("check_order", "```python\ntool_call(x=__import__('os').getcwd())\n```"), "could not be read"),
    (call_reply("check_order", {"order_id": "A12"}), "one capital letter and four digits"),
])
def test_bad_calls_become_error_observations_not_exceptions(reply, error):
    trace = agent(ScriptedModel([reply, text_reply("抱歉。")]))
    observation = trace["steps"][1]
    assert observation["kind"] == "observation" and error in observation["content"]["error"]
    assert trace["reply"] == "抱歉。"


def counting_tool(calls):
    def check_order(order_id: str) -> dict:
        """查询订单。"""
        calls.append(order_id)
        return {"order_id": order_id, "status": "shipped"}
    return check_order


def test_a_model_repeating_the_same_call_is_stopped_and_the_tool_runs_once():
    calls = []
    same = call_reply("check_order", {"order_id": "A1234"})
    trace = agent(ScriptedModel([same, same, same]), tools=[counting_tool(calls)], max_steps=5)
    assert trace["stopped"] == "repeated_call" and calls == ["A1234"]
    assert "repeated the call check_order" in trace["reply"]


def test_a_model_that_never_stops_calling_is_stopped_after_max_steps():
    calls = []
    replies = [call_reply("check_order", {"order_id": f"A{1000 + k}"}) for k in range(5)]
    model = ScriptedModel(replies)
    trace = agent(model, tools=[counting_tool(calls)], max_steps=3)
    assert trace["stopped"] == "max_steps" and "after 3 steps" in trace["reply"]
    assert len(model.prompts) == 3 and calls == ["A1000", "A1001"]  # the last call is not run: nobody reads it


def test_a_conversation_that_outgrows_the_context_is_stopped():
    first_prompt = TOK.build_chat_input("我的订单A1234到哪了？", [tools_system_message(SHOP_TOOLS)])
    reply = call_reply("check_order", {"order_id": "A1234"})
    model = ScriptedModel([reply, text_reply("好")], seq_length=len(first_prompt) + len(reply) + 3)
    trace = agent(model)
    assert trace["stopped"] == "context_full" and "no longer fits" in trace["reply"] and len(model.prompts) == 1


def test_an_existing_tools_history_is_kept_and_a_plain_one_gets_the_tools_first():
    tools_history = [tools_system_message(SHOP_TOOLS[:1]), {"role": "user", "content": "你好"},
                     {"role": "assistant", "content": "您好"}]
    model = ScriptedModel([text_reply("好的")] * 2)
    assert run_agent(model, TOK, "查订单", SHOP_TOOLS, tools_history, do_sample=False)[1][:3] == tools_history
    plain = [{"role": "system", "content": "你是清泉茶铺的助手。"}]
    assert run_agent(model, TOK, "查订单", SHOP_TOOLS, plain, do_sample=False)[1][:2] == \
        [tools_system_message(SHOP_TOOLS)] + plain


def test_malformed_tools_and_arguments_are_refused_before_the_model_runs():
    def no_docstring(x: str):
        return x
    model = ScriptedModel([text_reply("好")])
    with pytest.raises(ValueError, match="no docstring"):
        run_agent(model, TOK, "你好", [no_docstring])
    with pytest.raises(ValueError, match="max_steps >= 1"):
        run_agent(model, TOK, "你好", SHOP_TOOLS, max_steps=0)
    with pytest.raises(ValueError, match="at least one tool"):
        run_agent(model, TOK, "你好", [])
    assert model.prompts == []


def test_show_prints_each_step(capsys):
    model = ScriptedModel([call_reply("calculate", {"expression": "2*58+18"}), text_reply("一共134元。")])
    run_agent(model, TOK, "两罐乌龙茶加一个茶杯多少钱？", SHOP_TOOLS, show=True, do_sample=False)
    printed = capsys.readouterr().out
    for text in ["两罐乌龙茶加一个茶杯多少钱？", "calculate(expression='2*58+18')", '"result": 134', "一共134元。"]:
        assert text in printed


# --- evaluation -----------------------------------------------------------------------------------
SCHEMAS = [tool_schema(f) for f in SHOP_TOOLS]


def tool_item(order_id, values, question="我的订单{}到哪了？"):
    return {"tools": SCHEMAS,
            "conversations": [{"role": "user", "content": question.format(order_id)},
                              {"role": "tool", "name": "check_order", "parameters": {"order_id": order_id},
                               "observation": check_order(order_id)},
                              {"role": "assistant", "content": "…"}],
            "meta": {"intent": "order_status", "expect_tool": {"name": "check_order",
                                                               "parameters": {"order_id": order_id}},
                     "observation_values": values}}


def no_tool_item(question="你们几点开门？"):
    return {"tools": SCHEMAS, "conversations": [{"role": "user", "content": question},
                                                {"role": "assistant", "content": "九点。"}],
            "meta": {"intent": "hours"}}


def test_evaluation_prompt_asks_the_last_user_message_after_the_earlier_turns():
    item = {"tools": SCHEMAS, "conversations": [
        {"role": "user", "content": "我的订单到哪了？"}, {"role": "assistant", "content": "请告诉我订单号。"},
        {"role": "user", "content": "A1234"},
        {"role": "tool", "name": "check_order", "parameters": {"order_id": "A1234"}, "observation": {"status": "x"}},
        {"role": "assistant", "content": "…"}, {"role": "user", "content": "谢谢"},
        {"role": "assistant", "content": "不客气"}]}
    query, history = evaluation_prompt(item)
    assert query == "谢谢"
    assert history == [tools_system_message(SCHEMAS), {"role": "user", "content": "我的订单到哪了？"},
                       {"role": "assistant", "content": "请告诉我订单号。"}, {"role": "user", "content": "A1234"},
                       {"role": "assistant", "metadata": "check_order", "content": format_tool_call({"order_id": "A1234"})},
                       {"role": "observation", "content": '{"status": "x"}'}, {"role": "assistant", "content": "…"}]
    with pytest.raises(ValueError, match="no user message"):
        evaluation_prompt({"conversations": [{"role": "assistant", "content": "hi"}]})


def test_tool_metrics_count_what_the_model_did():
    status = check_order("B2345")["status"]
    items = [tool_item("B2345", [status]), tool_item("C3456", ["C3456"]), tool_item("D4567", ["D4567"]),
             no_tool_item(), no_tool_item("你好"), {"conversations": [{"role": "user", "content": "讲个故事"}]}]
    replies = [
        call_reply("check_order", {"order_id": "B2345"}), text_reply(f"您的订单状态：{status}"),  # right call, value used
        call_reply("check_order", {"order_id": "C3457"}), text_reply("订单C3457"),            # wrong id copied
        raw_call_reply("check_order", "tool_call(D4567)"), text_reply("抱歉"),                # unreadable call
        text_reply("九点开门。"),                                                             # no call: right
        call_reply("check_stock", {"product": "oolong"}), text_reply("您好"),                 # a false call
    ]
    metrics = tool_metrics(ScriptedModel(replies), TOK, items, return_results=True)
    results = metrics.pop("results")
    assert metrics == {"tool_items": 3, "no_tool_items": 2, "parse_rate": 3 / 4, "tool_name_accuracy": 1.0,
                       "argument_exact_match": 1 / 3, "false_call_rate": 1 / 2, "asks_without_calling": None,
                       "observation_in_answer": 1 / 3, "stopped": 0}
    assert [r["call_ok"] for r in results[:3]] == [True, False, False]
    assert results[0]["meta"] == items[0]["meta"] and results[0]["reply"] == f"您的订单状态：{status}"
    assert [step["kind"] for step in results[0]["steps"]] == ["call", "observation", "reply"]
    assert aggregate(results) == metrics
    intents = by_intent(results)
    assert intents[items[0]["meta"]["intent"]]["items"] == 3 and sum(row["items"] for row in intents.values()) == 5
    assert [intents[items[0]["meta"]["intent"]][key] for key in ("called", "name_ok", "call_ok", "values_ok")] == [3, 3, 1, 1]


def order_ask_item(order_id):
    item = tool_item(order_id, [order_id])
    item["conversations"][:1] = [{"role": "user", "content": "我的订单到哪了？"},
                                 {"role": "assistant", "content": "请告诉我您的订单号。"},
                                 {"role": "user", "content": order_id}]
    item["meta"]["intent"] = "order_ask"
    return item


def test_an_ask_turn_is_the_dialogue_cut_after_the_assistant_asks():
    cut = ask_turn_item(order_ask_item("F6789"))
    assert [m["content"] for m in cut["conversations"]] == ["我的订单到哪了？", "请告诉我您的订单号。"]
    assert cut["meta"] == {"intent": "order_ask", "ask_turn": True} and cut["tools"] == SCHEMAS
    assert ask_turn_item(tool_item("F6789", ["F6789"])) is None and ask_turn_item(no_tool_item()) is None


def test_tool_metrics_score_the_turn_where_the_model_must_ask_first():
    # the whole dialogues come first, then their ask turns
    replies = [call_reply("check_order", {"order_id": "F6789"}), text_reply("已送达 F6789"),
               call_reply("check_order", {"order_id": "G7890"}), text_reply("G7890 已发货"),
               call_reply("check_order", {"order_id": "A1111"}), text_reply("…"),  # asked nothing: a made-up id
               text_reply("请告诉我您的订单号。")]                                  # asks for the id
    metrics = tool_metrics(ScriptedModel(replies), TOK, [order_ask_item("F6789"), order_ask_item("G7890")],
                           return_results=True)
    assert by_intent(metrics.pop("results")) == {
        "order_ask": {"items": 2, "called": 2, "name_ok": 2, "call_ok": 2, "values_ok": 2},
        "order_ask/ask": {"items": 2, "called": 1, "name_ok": 0, "call_ok": 0, "values_ok": 0}}
    assert metrics["tool_items"] == 2 and metrics["no_tool_items"] == 0 and metrics["argument_exact_match"] == 1.0
    assert metrics["asks_without_calling"] == 1 / 2 and metrics["false_call_rate"] is None


def test_tool_metrics_offer_tools_to_items_without_them():
    items = [{"conversations": [{"role": "user", "content": "讲个故事"}], "meta": {"intent": "chat"}}]
    metrics = tool_metrics(ScriptedModel([call_reply("check_stock", {"product": "oolong"}), text_reply("好")]),
                           TOK, items, offer_tools=True)
    assert metrics["no_tool_items"] == 1 and metrics["false_call_rate"] == 1.0


def test_argument_match_is_exact_in_type():
    items = [tool_item("E5678", ["E5678"])]
    items[0]["meta"]["expect_tool"]["parameters"] = {"order_id": "E5678", "count": 2}
    replies = [raw_call_reply("check_order", "tool_call(order_id='E5678', count=2.0)"), text_reply("E5678")]
    assert tool_metrics(ScriptedModel(replies), TOK, items)["argument_exact_match"] == 0.0


def test_command_line_refuses_a_missing_checkpoint_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "glm3_teach.agent", "--model", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "is not a checkpoint folder" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not (data_dir() / "checkpoints" / "base" / "config.json").exists(), reason="no base checkpoint")
def test_command_line_refuses_a_count_below_one_instead_of_scoring_a_silently_cut_split():
    result = subprocess.run([sys.executable, "-m", "glm3_teach.agent", "--model", str(data_dir() / "checkpoints" / "base"),
                             "--max-items", "-1", "--evenly"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--max-items must be 1 or more, got -1" in result.stderr
    assert "Traceback" not in result.stderr


# --- the real base checkpoint ----------------------------------------------------------------------
BASE = data_dir() / "checkpoints" / "base"


@pytest.mark.skipif(not (BASE / "config.json").exists(), reason=f"no base checkpoint in {BASE}")
def test_the_base_checkpoint_runs_the_loop_without_crashing():
    from glm3_teach import load_pretrained, load_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_pretrained(BASE).float(), load_tokenizer(BASE)
    with pytest.raises(ValueError, match="no room for a reply"):  # 256 positions cannot hold the tools prompt
        run_agent(model, tokenizer, "我的订单A1234到哪了？", SHOP_TOOLS, do_sample=False)
    model.config.seq_length = 2048  # RoPE tables are built for any length; the base model never saw one this long
    trace = agent_trace(model, tokenizer, "我的订单A1234到哪了？", SHOP_TOOLS, max_steps=2, do_sample=False,
                        max_new_tokens=24)
    assert isinstance(trace["reply"], str) and trace["steps"]
    validate_history(trace["history"])


CHAT = data_dir() / "checkpoints" / "chat"


@pytest.mark.skipif(not (CHAT / "config.json").exists(), reason=f"no chat checkpoint in {CHAT}")
def test_command_line_evenly_spreads_the_items_over_the_intents_and_counts_them_per_intent():
    result = subprocess.run([sys.executable, "-m", "glm3_teach.agent", "--model", str(CHAT), "--split", "val",
                             "--max-items", "3", "--evenly"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # the split's first three tool dialogues are all order_status; spread evenly they are three intents
    assert {"order_status", "order_error", "total"} <= set(report["by_intent"])
    assert sum(row["items"] for row in report["by_intent"].values()) == 3
    assert report["tool_items"] + report["no_tool_items"] == 3
