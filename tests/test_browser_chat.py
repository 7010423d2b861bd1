"""The chat page in a real browser: headless Chromium types a question and sees the streamed answer.

The server runs on a loopback port with a scripted engine (``test_serve_support.ScriptedEngine``)
that answers an order question with a ``check_order`` call, then from the tool's result, so the
page's whole loop (stream, tool call shown, tool run by the server, result shown, answer
streamed, history kept) is exercised deterministically. A screenshot is saved in the test's
tmp folder (its path is printed; set ``GLM3_TEST_ARTIFACTS`` to keep a copy elsewhere).
"""

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serving needs the serve extra: pip install -e '.[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright: pip install playwright")

from test_serve_support import ScriptedEngine, running_server  # noqa: E402

from glm3_teach import load_tokenizer  # noqa: E402
from glm3_teach.paths import data_dir  # noqa: E402
from glm3_teach.serve import create_app  # noqa: E402
from glm3_teach.tools import check_order  # noqa: E402

CHROMIUM = Path(os.environ.get("GLM3_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def page_url():
    tokenizer = load_tokenizer(data_dir() / "checkpoints" / "base")
    engine = ScriptedEngine(tokenizer, delay=0.01)
    with running_server(create_app(engine, tokenizer, "glm3-scripted")) as url:
        yield url


@pytest.fixture()
def page():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set GLM3_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page(viewport={"width": 900, "height": 800})
        finally:
            browser.close()


def save_screenshot(page, tmp_path, name):
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("GLM3_TEST_ARTIFACTS"):
        target = Path(os.environ["GLM3_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    print(f"screenshot: {path}")
    return path


def test_the_page_streams_a_greeting(page, page_url, tmp_path):
    page.goto(page_url + "/", timeout=15_000)
    page.wait_for_function("document.getElementById('status').textContent.startsWith('model:')", timeout=15_000)
    page.fill("#question", "你好")
    page.press("#question", "Enter")
    reply = page.locator(".msg.assistant").last
    reply.wait_for(timeout=15_000)
    page.wait_for_function("document.getElementById('status').textContent.includes('finish_reason: stop')",
                           timeout=20_000)
    assert reply.inner_text().endswith("您好，我是清泉茶铺的客服小周。请问有什么可以帮您？")
    assert save_screenshot(page, tmp_path, "chat_greeting.png").stat().st_size > 1000


def test_the_page_shows_a_tool_call_its_result_and_the_answer(page, page_url, tmp_path):
    page.goto(page_url + "/", timeout=15_000)
    page.wait_for_function("document.getElementById('status').textContent.startsWith('model:')", timeout=15_000)
    page.fill("#question", "我的订单A1234到哪了？")
    page.click("#send")
    page.wait_for_function("document.getElementById('status').textContent.includes('finish_reason: stop')",
                           timeout=30_000)
    order = check_order("A1234")
    tool = page.locator(".msg.tool").last.inner_text()
    assert "check_order" in tool and '"order_id": "A1234"' in tool and f'"status": "{order["status"]}"' in tool
    answer = page.locator(".msg.assistant").last.inner_text()
    assert f"您的订单A1234状态是{order['status']}" in answer
    save_screenshot(page, tmp_path, "chat_tool_call.png")
    page.fill("#question", "你好")                     # the history is kept: a second turn follows the first
    page.press("#question", "Enter")
    page.wait_for_function("document.querySelectorAll('.msg.user').length == 2 && "
                           "document.getElementById('status').textContent.includes('finish_reason: stop')",
                           timeout=30_000)
    assert page.locator(".msg.assistant").count() == 2
    assert page.locator(".msg.error").count() == 0


def test_the_page_asks_for_the_api_key_when_the_server_needs_one(page):
    tokenizer = load_tokenizer(data_dir() / "checkpoints" / "base")
    app = create_app(ScriptedEngine(tokenizer), tokenizer, "glm3-scripted", api_key="sk-shop")
    with running_server(app) as url:
        page.goto(url + "/", timeout=15_000)
        page.wait_for_function("document.getElementById('status').textContent.includes('API key')", timeout=15_000)
        page.click("#settings summary")
        page.fill("#api-key", "sk-shop")
        page.press("#api-key", "Enter")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('model:')", timeout=15_000)
        page.fill("#question", "你好")
        page.press("#question", "Enter")
        page.wait_for_function("document.getElementById('status').textContent.includes('finish_reason: stop')",
                               timeout=20_000)
        assert "清泉茶铺" in page.locator(".msg.assistant").last.inner_text()
