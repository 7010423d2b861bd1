"""The attention viewer in a real browser: headless Debian Chromium driven by Playwright.

1. The exported HTML file, opened with every non-file request aborted: it draws, and a click
   on a token and a head change redraw the lines (pixels of the canvas change).
2. JupyterLab started on 127.0.0.1 (free port, token, fresh kernel) opens a small notebook
   that builds the viewer, runs its cells, and the same clicks change the drawn view; a new
   sentence and another model from the menu are computed by the kernel. Requests to anything
   but the local server are aborted (the widget's script ships in the package).

Both skip with the reason when Chromium, Playwright or JupyterLab is missing. Screenshots
(1280x720, a projector's size) are saved in pytest's tmp dir and their paths printed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("GLM3_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 720}
TEXT = "小猫喜欢喝绿茶。The cat likes tea."

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (Python API only)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set GLM3_CHROMIUM)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def course_model():
    from glm3_teach.viz.capture import load_choice, model_choices

    return load_choice(model_choices().get("base"))


def lines_png(page) -> bytes:
    return page.locator(".av-lines").first.screenshot()


def test_exported_html_renders_offline_and_reacts_to_a_click(browser, tmp_path):
    from glm3_teach import viz

    model, tokenizer = course_model()
    path = viz.save_attention_html(model, tokenizer, TEXT, tmp_path / "attention.html", name="base")
    page = browser.new_page(viewport=VIEWPORT)
    outside, errors = [], []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
               else (outside.append(route.request.url), route.abort()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_selector(".av-right .av-tok", timeout=15_000)
    assert page.locator(".av-right .av-tok").count() == len(tokenizer.encode(TEXT, add_special_tokens=True))
    before = lines_png(page)
    page.screenshot(path=str(tmp_path / "html_start.png"))
    page.locator(".av-left .av-tok").nth(5).click()
    clicked = lines_png(page)
    assert page.locator(".av-left .av-tok.av-sel").count() == 1
    page.select_option(".av-head", "2")
    head_two = lines_png(page)
    page.screenshot(path=str(tmp_path / "html_clicked_head2.png"))
    assert before != clicked != head_two
    assert '"head":2' in page.locator(".av-root").get_attribute("data-state")
    page.locator(".av-tab", has_text="model view").click()
    grid = page.locator(".av-gridcanvas")
    assert grid.get_attribute("data-maps") == str(model.config.num_layers * model.config.num_attention_heads)
    page.screenshot(path=str(tmp_path / "html_model_view.png"))
    box = grid.bounding_box()                       # click the map of the last layer, head 3
    layers, heads = model.config.num_layers, model.config.num_attention_heads
    page.mouse.click(box["x"] + box["width"] * (3.5 / heads), box["y"] + box["height"] * ((layers - 0.5) / layers))
    state = page.locator(".av-root").get_attribute("data-state")
    assert f'"layer":{layers - 1},"head":3,"view":"head"' in state, state
    assert not errors and not outside, (errors, outside)
    print("screenshots in", tmp_path)


def test_a_long_chat_prompt_renders_as_a_window_of_queries_and_spans_of_keys(browser, tmp_path):
    import torch

    from glm3_teach import load_tokenizer, viz
    from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM

    torch.manual_seed(0)
    model = ChatGLMForCausalLM(ChatGLMConfig.course(num_layers=2, seq_length=1536)).eval()
    tokenizer = load_tokenizer()
    schema = {"name": "check_stock", "description": "查询商品的库存。", "parameters": {"type": "object", "properties": {
        "product": {"type": "string"}}, "required": ["product"]}}
    system = {"role": "system", "content": "Answer the following questions.", "tools": [schema] * 4}
    ids = tokenizer.build_chat_input("乌龙茶还有货吗？", history=[system])
    path = viz.save_attention_html(model, tokenizer, ids, tmp_path / "long.html", name="untrained")
    page = browser.new_page(viewport=VIEWPORT)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(path.as_uri())
    page.wait_for_selector(".av-right .av-tok", timeout=15_000)
    keys, queries = page.locator(".av-right .av-tok").count(), page.locator(".av-left .av-tok").count()
    assert len(ids) > 500 and queries == 64 and keys < len(ids) / 3, (len(ids), keys, queries)
    assert "the last 64 are the queries" in page.locator(".av-status").inner_text()
    assert "weights summed" in page.locator(".av-right .av-span").first.get_attribute("title")
    before = lines_png(page)
    page.locator(".av-left .av-tok").last.click()          # <|assistant|>: what the answer's first token reads
    assert lines_png(page) != before
    page.screenshot(path=str(tmp_path / "long_prompt.png"))


NOTEBOOK_CELLS = [
    ("from glm3_teach import viz\nfrom glm3_teach.viz.capture import load_choice, model_choices\n"
     "model, tokenizer = load_choice(model_choices().get('base'))"),
    f"view = viz.attention_view(model, tokenizer, {TEXT!r}, name='base')\nview",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving ``tmp_path``: yields ``(base_url, token)``."""
    pytest.importorskip("jupyterlab", reason="pip install jupyterlab")
    pytest.importorskip("anywidget", reason="pip install anywidget")
    port, token = free_port(), uuid.uuid4().hex
    settings = tmp_path / "settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')
    (settings / "notebook-extension").mkdir()                     # every cell in the DOM (no virtual scrolling)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"),                    # its own notebook trust database
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "lab.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.port_retries=0", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def jupyterlab(lab, tmp_path):
    """The URL of a fresh notebook that builds the viewer, in ``lab``."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "viewer.ipynb")
    base, token = lab
    return f"{base}/lab/tree/viewer.ipynb?token={token}"


def test_viewer_in_jupyterlab_redraws_when_a_token_is_clicked_and_the_head_changes(browser, jupyterlab, tmp_path):
    page = browser.new_page(viewport=VIEWPORT)
    server, outside = jupyterlab.split("/lab/")[0], []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
               else (outside.append(route.request.url), route.abort()))   # offline: only the local server
    page.goto(jupyterlab)
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=60_000)
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    page.evaluate("async () => { const nb = window.jupyterapp.shell.currentWidget;"
                  " await nb.sessionContext.ready; }")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(".av-right .av-tok", timeout=90_000)
    page.locator(".av-root").scroll_into_view_if_needed()
    before = lines_png(page)
    page.screenshot(path=str(tmp_path / "lab_start.png"))
    page.locator(".av-right .av-tok").nth(6).click()      # a key column: who reads 。
    clicked = lines_png(page)
    page.select_option(".av-head", "1")
    head_one = lines_png(page)
    page.screenshot(path=str(tmp_path / "lab_clicked_head1.png"))
    state = page.locator(".av-root").get_attribute("data-state")
    assert '"head":1' in state and '"side":"col"' in state, state
    assert before != clicked != head_one
    assert "VBox(" not in page.locator(".jp-OutputArea").first.inner_text()
    page.fill(".av-text", "他喝乌龙茶。")                  # a new sentence: the kernel computes a new payload
    page.press(".av-text", "Enter")
    page.wait_for_function("document.querySelectorAll('.av-right .av-tok').length === 6", timeout=30_000)
    page.select_option(".av-model", "untrained")
    page.wait_for_function("document.querySelector('.av-root').dataset.state.includes('untrained')", timeout=30_000)
    page.screenshot(path=str(tmp_path / "lab_new_text_untrained.png"))
    assert not outside, outside
    print("screenshots in", tmp_path)


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
STORED_WITH_A_VIEWER = ["03_attention.ipynb", "10_peft.ipynb"]
DEAD_WIDGET_TEXT = ("model not found", "Error displaying widget", "could not be displayed", "VBox(", "AttentionView:",
                    "Loading widget")


@pytest.mark.parametrize("name", STORED_WITH_A_VIEWER)
def test_a_stored_lesson_reopened_without_running_shows_the_viewer_as_a_picture(browser, lab, tmp_path, name):
    """The stored .ipynb as GitHub and a learner get it, opened in JupyterLab, no cell run.

    It is opened *trusted* (signed, as JupyterLab signs a notebook the learner ran and saved):
    untrusted, JupyterLab would skip the widget output type and show the PNG anyway.
    """
    import nbformat
    from nbformat.sign import NotebookNotary

    shutil.copyfile(NOTEBOOKS / name, tmp_path / name)
    NotebookNotary(data_dir=str(tmp_path / "data")).sign(nbformat.read(tmp_path / name, as_version=4))
    base, token = lab
    page = browser.new_page(viewport=VIEWPORT)
    outside = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
               else (outside.append(route.request.url), route.abort()))
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.content", timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-OutputArea-output", timeout=60_000)
    index = page.evaluate("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.widgets;
        const i = cells.findIndex(c => c.model.type === "code" && c.model.sharedModel.getSource().includes("viz.attention_view("));
        if (i >= 0) cells[i].node.setAttribute("data-viewer-cell", "");
        return i; }""")
    assert index >= 0, f"{name} has no cell that calls viz.attention_view"
    cell = page.locator("[data-viewer-cell]")
    cell.scroll_into_view_if_needed()
    try:                                    # a loaded picture, or the widget renderer's final word
        page.wait_for_function("(c) => { const img = c.querySelector('.jp-OutputArea-output img');"
                               " return (img && img.complete && img.naturalWidth > 0)"
                               " || /model not found|could not be displayed/.test(c.innerText); }",
                               arg=cell.element_handle(), timeout=45_000)
    except playwright_api.TimeoutError:
        pass                                # the assertions below say what was shown instead
    cell.screenshot(path=str(tmp_path / f"stored_{name}.png"))
    shown = cell.locator(".jp-OutputArea").inner_text()
    assert not [t for t in DEAD_WIDGET_TEXT if t in shown], f"{name} shows {shown!r} in place of the viewer's picture"
    sizes = cell.locator(".jp-OutputArea-output img").evaluate_all("(imgs) => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes and sizes[0][0] > 200 and sizes[0][1] > 100, sizes
    assert "model not found" not in page.locator(".jp-Notebook").inner_text()
    assert not outside, outside
    print("screenshot in", tmp_path)
