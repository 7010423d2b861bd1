"""The attention viewer's Python side: payload, layer-selective capture, widget state, HTML export.

The drawing itself is JavaScript and is tested in a browser (tests/test_browser_viewer.py).
"""

import base64
import re
import shutil
import subprocess

import nbformat
import pytest
import torch

from glm3_teach import load_tokenizer, viz
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.viz.capture import decode_probs, encode_probs, model_choices
from glm3_teach.viz.widget import ASSETS

TEXT = "小猫喜欢喝绿茶。The cat likes tea.\n"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    config = ChatGLMConfig.course(num_layers=2, hidden_size=64, ffn_hidden_size=96, kv_channels=16)
    return ChatGLMForCausalLM(config).eval()


@pytest.fixture(scope="module")
def wide_model():
    """ChatGLM3-6B's attention layout (28 layers x 32 heads, 2 KV groups) at a tiny width."""
    torch.manual_seed(0)
    config = ChatGLMConfig.course(num_layers=28, num_attention_heads=32, kv_channels=4, hidden_size=64,
                                  ffn_hidden_size=32, multi_query_group_num=2)
    return ChatGLMForCausalLM(config).eval()


def test_payload_labels_every_token_visibly_and_marks_the_sinks(small_model, tokenizer):
    payload = viz.attention_payload(small_model, tokenizer, TEXT, name="tiny")
    ids = tokenizer.encode(TEXT, add_special_tokens=True)
    assert payload["ids"] == ids and payload["k_len"] == payload["q_len"] == len(ids)
    assert payload["tokens"][:2] == ["[gMASK]", "sop"] and payload["tokens"][-1] == "\\n"
    assert "␣tea" in payload["tokens"] and payload["kinds"][:2] == ["special", "special"]
    assert payload["kinds"][-1] == "blank" and payload["sinks"] == [0, 1]
    assert payload["layers"] == [0, 1] and payload["num_heads"] == 4
    assert set(payload["scores"]) == set(viz.SCORE_NAMES)
    assert len(payload["scores"]["previous"]) == 2 and len(payload["scores"]["previous"][0]) == 4


def test_payload_probabilities_are_what_the_model_returns_with_output_attentions(small_model, tokenizer):
    payload = viz.attention_payload(small_model, tokenizer, TEXT)
    shape = [2, 4, payload["q_len"], payload["k_len"]]
    with torch.no_grad():
        expected = torch.stack(small_model(torch.tensor([payload["ids"]]), output_attentions=True).attentions)[:, 0]
    torch.testing.assert_close(decode_probs(payload["probs"], shape), expected, atol=1 / 65535, rtol=0)


def test_probability_encoding_round_trips_to_one_part_in_65535():
    probs = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(decode_probs(encode_probs(probs), probs.shape), probs, atol=0.5 / 65535, rtol=0)
    assert decode_probs(encode_probs(torch.tensor([1.0, 0.0])), [2]).tolist() == [1.0, 0.0]


def test_only_the_chosen_layers_take_the_explicit_path_on_the_6b_layout(wide_model, tokenizer, monkeypatch):
    from glm3_teach import attention

    calls = []
    original = attention.explicit_attention
    monkeypatch.setattr(attention, "explicit_attention", lambda *a, **k: calls.append(1) or original(*a, **k))
    attn, layers = viz.compute_attentions(wide_model, tokenizer.encode(TEXT, add_special_tokens=True), [27, 0, 13])
    monkeypatch.undo()
    assert layers == [0, 13, 27] and len(calls) == 3
    n = len(tokenizer.encode(TEXT, add_special_tokens=True))
    assert attn.shape == (3, 32, n, n)
    with torch.no_grad():
        full = wide_model(torch.tensor([tokenizer.encode(TEXT, add_special_tokens=True)]), output_attentions=True)
    torch.testing.assert_close(attn[2], full.attentions[27][0])


def test_the_view_of_a_28_by_32_model_has_every_head_score_and_a_grid_sized_payload(wide_model, tokenizer):
    view = viz.attention_view(wide_model, tokenizer, TEXT, name="6b-shaped", models={})
    payload = view.payload
    assert len(payload["layers"]) == 28 and payload["num_heads"] == 32
    assert all(len(table) == 28 and all(len(row) == 32 for row in table) for table in payload["scores"].values())
    n = len(tokenizer.encode(TEXT, add_special_tokens=True))
    assert len(base64.b64decode(payload["probs"])) == 28 * 32 * n * n * 2  # uint16
    assert view.model_options == ["6b-shaped"]


def test_bad_inputs_say_what_to_do(small_model, tokenizer):
    with pytest.raises(ValueError, match="layer 5 is out of range: the model has 2 layers"):
        viz.compute_attentions(small_model, [1, 2, 3], layers=[5])
    with pytest.raises(ValueError, match="the text is empty"):
        viz.attention_view(small_model, tokenizer, "")
    with pytest.raises(ValueError, match="600 tokens is too long: this model's seq_length .* is 256"):
        viz.attention_payload(small_model, tokenizer, [5] * 600)
    with pytest.raises(ValueError, match=r"one sequence of ids"):
        viz.encode_input(tokenizer, torch.ones(2, 3, dtype=torch.long))


def test_chat_format_builds_chatglm3_s_prompt_around_the_text(small_model, tokenizer):
    payload = viz.attention_payload(small_model, tokenizer, "乌龙茶多少钱？", chat=True)
    assert payload["ids"] == tokenizer.build_chat_input("乌龙茶多少钱？")
    assert payload["tokens"][2] == "<|user|>" and payload["tokens"][-1] == "<|assistant|>"


def test_ids_are_shown_as_given_and_the_text_box_is_hidden(small_model, tokenizer):
    ids = tokenizer.build_chat_input("你好") + tokenizer.encode("你好！")
    view = viz.attention_view(small_model, tokenizer, ids, models={})
    assert view.payload["ids"] == ids and not view.editable and view.text == tokenizer.decode(ids)


def test_typing_a_sentence_or_picking_a_model_recomputes_the_payload(small_model, tokenizer):
    other = ChatGLMForCausalLM(small_model.config).eval()
    view = viz.attention_view(small_model, tokenizer, TEXT, name="a", models={"b": (other, tokenizer)})
    assert view.model_options == ["a", "b"]
    view.text = "他喝乌龙茶。"
    assert view.payload["tokens"] == ["[gMASK]", "sop", "他", "喝", "乌龙茶", "。"]
    before = view.payload["probs"]
    view.model_name = "b"
    assert view.payload["model"] == "b" and view.payload["probs"] != before and view.status == ""
    view.text = "x" * 2000
    assert "too long" in view.status and view.payload["model"] == "b"  # the old view stays, the message says why


def test_a_checkpoint_that_fails_to_load_is_reported_in_the_view(small_model, tokenizer, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    view = viz.attention_view(small_model, tokenizer, TEXT, name="a", models={"broken": tmp_path})
    view.model_name = "broken"
    assert view.status.startswith("⚠ broken:") and view.payload["model"] == "a"


def test_model_menu_lists_untrained_and_every_checkpoint_folder(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    assert model_choices(tmp_path) == {"untrained": None, "base": tmp_path / "base"}
    assert model_choices(tmp_path / "missing") == {"untrained": None}


def test_a_saved_notebook_shows_a_picture_not_the_widget_repr(small_model, tokenizer):
    HTMLExporter = pytest.importorskip("nbconvert", reason="nbconvert comes with jupyterlab").HTMLExporter

    view = viz.attention_view(small_model, tokenizer, TEXT, models={})
    bundle, _metadata = view._repr_mimebundle_()
    assert bundle["image/png"] and "VBox" not in bundle["text/plain"]
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("view", outputs=[
        nbformat.v4.new_output("display_data", data=bundle)])])
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "data:image/png;base64" in html and "VBox(" not in html


def test_exported_html_is_one_file_that_fetches_nothing(small_model, tokenizer, tmp_path):
    path = viz.save_attention_html(small_model, tokenizer, TEXT, tmp_path / "view.html", name="tiny",
                                   models={"copy": (small_model, tokenizer)}, head=1)
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html and "url(http" not in html
    assert "import " not in ASSETS.joinpath("attention_view.js").read_text()  # no module imports at all
    assert '"model_options": ["tiny", "copy"]' in html and '"head": 1' in html
    assert html.count("<script") == 2 and "</script" not in html.split("<script", 2)[2].rsplit("</script>", 1)[0]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it


def test_exported_html_carries_the_course_font_for_chinese(small_model, tokenizer, tmp_path):
    from glm3_teach.fonts import use_cjk_font

    if use_cjk_font() is None:
        pytest.skip("no CJK font installed (pip install mplfonts)")
    import io
    import json

    from fontTools.ttLib import TTFont

    html = viz.save_attention_html(small_model, tokenizer, TEXT, tmp_path / "v.html").read_text(encoding="utf-8")
    data = json.loads(html.split('id="av-data">', 1)[1].split("</script>", 1)[0])
    font = TTFont(io.BytesIO(base64.b64decode(data["font"])))
    covered = {chr(c) for c in font.getBestCmap()}
    assert set("小猫喜欢喝绿茶。") <= covered and len(data["font"]) < 200_000


def test_export_refuses_a_folder_or_a_missing_parent(small_model, tokenizer, tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        viz.save_attention_html(small_model, tokenizer, TEXT, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        viz.save_attention_html(small_model, tokenizer, TEXT, tmp_path / "nope" / "v.html")


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed (only used to syntax-check the JS)")
def test_the_shipped_javascript_parses_as_a_module(tmp_path):
    module = tmp_path / "attention_view.mjs"
    module.write_text(ASSETS.joinpath("attention_view.js").read_text())
    result = subprocess.run(["node", "--check", str(module)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_p_tuning_prefix_columns_are_labelled_and_scored(tokenizer):
    torch.manual_seed(0)
    config = ChatGLMConfig.course(num_layers=2, hidden_size=64, ffn_hidden_size=96, kv_channels=16, pre_seq_len=3)
    model = ChatGLMForCausalLM(config).eval()
    payload = viz.attention_payload(model, tokenizer, "他喝乌龙茶。")
    assert payload["k_len"] == payload["q_len"] + 3
    assert payload["tokens"][:5] == ["P0", "P1", "P2", "[gMASK]", "sop"] and payload["kinds"][:3] == ["prefix"] * 3
    assert payload["sinks"] == [3, 4]
    shape = [2, 4, payload["q_len"], payload["k_len"]]
    prefix_weight = decode_probs(payload["probs"], shape)[..., :3].sum(-1).mean(-1)  # [layers, heads]
    torch.testing.assert_close(torch.tensor(payload["scores"]["prefix"]), prefix_weight, atol=2e-3, rtol=0)


SCHEMA = {"name": "check_stock", "description": "查询商品的库存。Look up how much of a product is in stock.",
          "parameters": {"type": "object", "properties": {"product": {"type": "string", "description": "绿茶, 乌龙茶"}},
                         "required": ["product"]}}


@pytest.fixture(scope="module")
def long_model():
    """The course layout with the chat checkpoint's 1536 positions, room for a tools system message."""
    torch.manual_seed(0)
    config = ChatGLMConfig.course(num_layers=2, hidden_size=64, ffn_hidden_size=96, kv_channels=16, seq_length=1536)
    return ChatGLMForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tools_prompt(tokenizer):
    """A chat prompt with a tools system message, as long as lesson 09's (about 1,000 tokens)."""
    system = {"role": "system", "content": "Answer the following questions as best as you can.",
              "tools": [dict(SCHEMA, name=f"check_stock_{i}") for i in range(3)]}
    ids = tokenizer.build_chat_input("乌龙茶还有货吗？", history=[system])
    assert 900 < len(ids) < 1536
    return ids


def test_a_long_chat_prompt_shows_its_last_tokens_as_queries_and_the_rest_as_spans(long_model, tokenizer, tools_prompt):
    from glm3_teach.viz.capture import QUERY_WINDOW

    ids, n = tools_prompt, len(tools_prompt)
    payload = viz.attention_payload(long_model, tokenizer, ids, name="chat")
    columns = payload["positions"]
    assert payload["ids"] == ids and payload["q_len"] == QUERY_WINDOW and payload["k_len"] == len(columns)
    assert payload["k_len"] < n / 4                                             # readable: far fewer columns than tokens
    assert [i for a, b in columns for i in range(a, b + 1)] == list(range(n))   # every token in exactly one column, in order
    labels = [viz.visible_label(t) for t in viz.token_info(tokenizer, ids)[0]]
    assert payload["tokens"][-QUERY_WINDOW:] == labels[-QUERY_WINDOW:]           # the queries one by one
    assert payload["tokens"][-1] == "<|assistant|>" and "<|system|>" in payload["tokens"] and "<|user|>" in payload["tokens"]
    assert payload["sinks"] == [0, 1] and "span" in payload["kinds"]
    assert not any("\\x" in t or "<0x" in t for t in payload["tokens"])           # span labels decode whole characters
    assert f"{n} tokens: the last {QUERY_WINDOW} are the queries" in payload["note"]
    with torch.no_grad():                                                       # [L, H, q, n] of the window's rows
        full = torch.stack(long_model(torch.tensor([ids]), output_attentions=True).attentions)[:, 0, :, -QUERY_WINDOW:]
    expected = torch.stack([full[..., a:b + 1].sum(-1) for a, b in columns], -1)
    shape = [2, 4, QUERY_WINDOW, payload["k_len"]]
    torch.testing.assert_close(decode_probs(payload["probs"], shape), expected, atol=1e-4, rtol=0)
    pos = torch.arange(n - QUERY_WINDOW, n)
    own = full[..., torch.arange(QUERY_WINDOW), pos].mean(-1)                   # [L, H] weight on itself
    torch.testing.assert_close(torch.tensor(payload["scores"]["self"]), own, atol=2e-3, rtol=0)
    assert len(payload["probs"]) < 200_000


def test_the_view_of_a_long_prompt_displays_with_its_static_picture(long_model, tokenizer, tools_prompt):
    view = viz.attention_view(long_model, tokenizer, tools_prompt, models={})
    bundle, _metadata = view._repr_mimebundle_()
    assert view.payload["q_len"] == 64 and base64.b64decode(bundle["image/png"])[:4] == b"\x89PNG"


def test_key_spans_follow_lines_keep_specials_and_fit_the_budget():
    from glm3_teach.viz.spans import key_spans, merge_keys, span_label

    texts = ["[gMASK]", "sop", "<|system|>", "a", "b", "\n", "c", "。", "d", "e", "<|user|>", "x", "y"]
    special = [t.startswith(("[", "<")) or t == "sop" for t in texts]
    assert key_spans(texts, special, 11, 20) == [(0, 1), (1, 2), (2, 3), (3, 6), (6, 8), (8, 10), (10, 11),
                                                  (11, 12), (12, 13)]
    many = ["w", "\n"] * 100 + ["q"]
    spans = key_spans(many, [False] * 201, 200, 11)                             # 100 lines, 10 columns left for them
    assert len(spans) <= 11 and spans[-1] == (200, 201) and spans[0][0] == 0
    assert all(a == b for (_, a), (b, _) in zip(spans, spans[1:]))              # contiguous
    with pytest.raises(ValueError, match="do not fit in 3 key columns"):
        key_spans(texts, special, 11, 3)
    attn = torch.rand(2, 3, 13).softmax(-1)
    merged = merge_keys(attn, [(0, 4), (4, 13)], offset=2)                      # 2 prefix columns stay in front
    torch.testing.assert_close(merged, torch.cat([attn[..., :2], attn[..., 2:6].sum(-1, keepdim=True),
                                                  attn[..., 6:].sum(-1, keepdim=True)], -1))
    assert span_label('    "name":   "check_stock",\n', 9) == '"name":␣"chec…·9'
