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
def jupyterlab(tmp_path):
    pytest.importorskip("jupyterlab", reason="pip install jupyterlab")
    pytest.importorskip("anywidget", reason="pip install anywidget")
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "viewer.ipynb")
    port, token = free_port(), uuid.uuid4().hex
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
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
        yield f"{base}/lab/tree/viewer.ipynb?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


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
