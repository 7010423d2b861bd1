"""Every bad request gets OpenAI's error shape and the right status, and the server keeps serving."""

import pytest

pytest.importorskip("fastapi", reason="serving needs the serve extra: pip install -e '.[serve]'")
openai = pytest.importorskip("openai", reason="these tests use the official openai client: pip install openai")

from starlette.testclient import TestClient  # noqa: E402
from test_serve_support import ScriptedEngine  # noqa: E402

from glm3_teach import load_tokenizer  # noqa: E402
from glm3_teach.paths import data_dir  # noqa: E402
from glm3_teach.serve import Limits, create_app  # noqa: E402

SEQ_LENGTH = 256
HELLO = [{"role": "user", "content": "你好"}]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(data_dir() / "checkpoints" / "base")


@pytest.fixture(scope="module")
def http(tokenizer):
    limits = Limits(max_messages=8, max_chars=2000, max_body_bytes=20_000)
    app = create_app(ScriptedEngine(tokenizer, seq_length=SEQ_LENGTH), tokenizer, "glm3-test", limits=limits)
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def keyed(tokenizer):
    app = create_app(ScriptedEngine(tokenizer), tokenizer, "glm3-test", api_key="sk-course-secret")
    with TestClient(app) as client:
        yield client


def post(http, body=None, content=None, **headers):
    if content is None:
        return http.post("/v1/chat/completions", json=body, headers=headers)
    return http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json", **headers})


def assert_openai_error(response, status, param=None, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param and error["code"] == code
    return error


BAD_BODIES = [
    ("not json", None, b"{'model': nope"),
    ("not an object", None, b"[1, 2]"),
    ("no messages", "messages", {"model": "glm3-test"}),
    ("empty messages", "messages", {"model": "glm3-test", "messages": []}),
    ("messages not a list", "messages", {"model": "glm3-test", "messages": "你好"}),
    ("message without role", "messages[0]", {"model": "glm3-test", "messages": [{"content": "你好"}]}),
    ("unknown role", "messages[0].role", {"model": "glm3-test", "messages": [{"role": "wizard", "content": "hi"}]}),
    ("image content", "messages[0].content[0]",
     {"model": "glm3-test", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
    ("content a number", "messages[0].content", {"model": "glm3-test", "messages": [{"role": "user", "content": 5}]}),
    ("temperature too high", "temperature", {"model": "glm3-test", "messages": HELLO, "temperature": 2.5}),
    ("temperature negative", "temperature", {"model": "glm3-test", "messages": HELLO, "temperature": -0.1}),
    ("temperature a string", "temperature", {"model": "glm3-test", "messages": HELLO, "temperature": "hot"}),
    ("top_p above 1", "top_p", {"model": "glm3-test", "messages": HELLO, "top_p": 1.5}),
    ("max_tokens zero", "max_tokens", {"model": "glm3-test", "messages": HELLO, "max_tokens": 0}),
    ("max_tokens a float", "max_tokens", {"model": "glm3-test", "messages": HELLO, "max_tokens": 2.5}),
    ("max_completion_tokens negative", "max_completion_tokens",
     {"model": "glm3-test", "messages": HELLO, "max_completion_tokens": -3}),
    ("n of 2", "n", {"model": "glm3-test", "messages": HELLO, "n": 2}),
    ("too many stop strings", "stop", {"model": "glm3-test", "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}),
    ("tool_choice required", "tool_choice", {"model": "glm3-test", "messages": HELLO, "tool_choice": "required"}),
    ("tool without function", "tools[0]", {"model": "glm3-test", "messages": HELLO, "tools": [{"type": "function"}]}),
    ("seed a string", "seed", {"model": "glm3-test", "messages": HELLO, "seed": "42"}),
    ("last message from the assistant", "messages",
     {"model": "glm3-test", "messages": HELLO + [{"role": "assistant", "content": "您好"}]}),
    ("tool message without a call", "messages[1]",
     {"model": "glm3-test", "messages": HELLO + [{"role": "tool", "tool_call_id": "call_1", "content": "{}"}]}),
    ("tool message answering an unknown call", "messages",
     {"model": "glm3-test", "messages": HELLO + [
         {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                               "function": {"name": "check_stock", "arguments": "{}"}}]},
         {"role": "tool", "tool_call_id": "call_9", "content": "{}"}]}),
    ("arguments not JSON", "messages[1].tool_calls[0].function.arguments",
     {"model": "glm3-test", "messages": HELLO + [
         {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                               "function": {"name": "check_stock", "arguments": "product=oolong"}}]},
         {"role": "tool", "tool_call_id": "call_1", "content": "{}"}]}),
    ("too many messages", "messages", {"model": "glm3-test", "messages": HELLO * 9}),
]


@pytest.mark.parametrize("what, param, body", BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_a_bad_request_gets_a_400_in_openai_shape(http, what, param, body):
    response = post(http, content=body) if isinstance(body, bytes) else post(http, body)
    error = assert_openai_error(response, 400, param, response.json()["error"]["code"])
    assert error["type"] == "invalid_request_error"


def test_too_many_characters_is_refused(http):
    response = post(http, {"model": "glm3-test", "messages": [{"role": "user", "content": "茶" * 2500}]})
    assert_openai_error(response, 400, "messages", "string_above_max_length")


def test_a_body_over_the_limit_gets_413(http):
    response = post(http, content=b'{"model": "glm3-test", "messages": [], "pad": "' + b"x" * 30_000 + b'"}')
    assert_openai_error(response, 413, None, "request_too_large")


def test_prompt_plus_max_tokens_beyond_the_context_is_context_length_exceeded(http, tokenizer):
    prompt_len = len(tokenizer.build_chat_input("你好"))
    fits = post(http, {"model": "glm3-test", "messages": HELLO, "max_tokens": SEQ_LENGTH - prompt_len})
    assert fits.status_code == 200
    response = post(http, {"model": "glm3-test", "messages": HELLO, "max_tokens": SEQ_LENGTH - prompt_len + 1})
    error = assert_openai_error(response, 400, "messages", "context_length_exceeded")
    assert str(SEQ_LENGTH) in error["message"]
    long_prompt = [{"role": "user", "content": "我想买茶。" * 120}]
    assert_openai_error(post(http, {"model": "glm3-test", "messages": long_prompt}), 400, "messages",
                        "context_length_exceeded")


def test_an_unknown_model_is_404(http):
    response = post(http, {"model": "gpt-4o", "messages": HELLO})
    assert_openai_error(response, 404, "model", "model_not_found")


def test_unknown_paths_and_methods_answer_in_openai_shape(http):
    assert_openai_error(http.get("/v1/completions"), 404)
    assert_openai_error(http.get("/v1/chat/completions"), 405)


def test_the_official_client_raises_its_typed_errors(http):
    client = openai.OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=http, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="glm3-test", messages=HELLO, temperature=9)
    assert bad.value.code == "invalid_value" and bad.value.param == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=HELLO)
    with pytest.raises(openai.BadRequestError) as long:
        client.chat.completions.create(model="glm3-test", messages=HELLO, max_tokens=10_000)
    assert long.value.code == "context_length_exceeded"


def test_the_api_key_is_required_when_set(keyed):
    assert_openai_error(keyed.get("/v1/models"), 401, None, "invalid_api_key")
    assert_openai_error(post(keyed, {"model": "glm3-test", "messages": HELLO}), 401, None, "invalid_api_key")
    wrong = post(keyed, {"model": "glm3-test", "messages": HELLO}, authorization="Bearer sk-guess")
    assert_openai_error(wrong, 401, None, "invalid_api_key")
    assert keyed.get("/health").status_code == 200 and keyed.get("/").status_code == 200
    client = openai.OpenAI(api_key="sk-course-secret", base_url="http://testserver/v1", http_client=keyed)
    assert client.chat.completions.create(model="glm3-test", messages=HELLO).choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-guess", base_url="http://testserver/v1", http_client=keyed,
                      max_retries=0).models.list()


def test_the_server_survives_every_bad_request(http):
    for _, _, body in BAD_BODIES:
        post(http, content=body) if isinstance(body, bytes) else post(http, body)
    reply = post(http, {"model": "glm3-test", "messages": HELLO})
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"].startswith("您好")


def test_the_command_line_reports_a_missing_model_in_one_line(capsys):
    from glm3_teach.serve import main

    assert main(["--model", "/nonexistent/checkpoint"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err


def test_the_command_line_asks_for_the_base_of_an_adapter_that_names_none(capsys, tmp_path):
    import json
    import shutil

    from glm3_teach.serve import main

    shipped = data_dir() / "checkpoints" / "chat_lora"
    if not (shipped / "adapter_config.json").exists():
        pytest.skip(f"the LoRA adapter {shipped} is missing (lesson 10 makes it)")
    adapter = tmp_path / "adapter"
    shutil.copytree(shipped, adapter)
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": None}),
                                                 encoding="utf-8")
    (adapter / "training.json").unlink()                     # the other place an adapter records its base
    assert main(["--model", str(adapter)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base" in err


def test_a_lora_adapter_that_names_its_base_loads_without_base():
    from glm3_teach import peft
    from glm3_teach.serve import load_model

    adapter = data_dir() / "checkpoints" / "chat_lora"
    if not (adapter / "adapter_config.json").exists():
        pytest.skip(f"the LoRA adapter {adapter} is missing (lesson 10 makes it)")
    base = peft.read_adapter_config(adapter)["base_model_name_or_path"]
    assert base == "data/checkpoints/base"        # written by sft through peft.export
    model = load_model(adapter, device="cpu")
    assert model.config.num_layers == 4 and not any("lora" in name for name, _ in model.named_parameters())
