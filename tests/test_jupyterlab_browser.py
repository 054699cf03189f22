"""JupyterLab as a reader uses it: the project's environment serves JupyterLab on 127.0.0.1, headless
Chromium (Debian's package, driven by Playwright) opens a notebook, which picks the kernel
"Python (emotion-study)" without a dialog, runs every cell from the Run menu, and shows a figure
and no error. Opening and saving a template without edits changes no byte.

Skipped, with the reason, where Chromium or Playwright is missing (.ci/run installs Chromium).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from lib.paths import PROJECT_ROOT, cache_dir, data_dir

pytestmark = pytest.mark.slow  # kernels, browsers or whole studies: minutes (docs/tests.md)

NOTEBOOK = "00_data_exploration"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on screen
CELLS_DONE = """() => {
  const prompts = [...document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell .jp-InputArea-prompt')];
  const failed = document.querySelector(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
  return failed !== null || (prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)));
}"""  # every cell has run, or one has failed (Run All stops there)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium); the browser test needs one")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -r requirements-test.txt)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab from this environment, serving a folder with copies of the template."""
    root = tmp_path_factory.mktemp("lab")
    (root / "template").mkdir()
    shutil.copy(PROJECT_ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", root / "template")
    # The copy that runs writes its results into the test's folder, not into the project.
    nb = json.loads((PROJECT_ROOT / "notebooks" / f"{NOTEBOOK}.ipynb").read_text(encoding="utf-8"))
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    params["source"] = [f'RESULTS_DIR = "{root / "results"}"\n' if line.startswith("RESULTS_DIR") else line
                        for line in params["source"]]
    (root / "run").mkdir()
    (root / "run" / f"{NOTEBOOK}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")
    # windowingMode none: every cell stays in the page, so the test can read all prompts and outputs.
    settings = root / ".settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = root / ".settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                       "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), STUDY_DATA_DIR=str(data_dir()),
               STUDY_CACHE_DIR=str(cache_dir()), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.user_settings_dir={root / '.settings'}", f"--LabApp.workspaces_dir={root / '.workspaces'}",
         "--LabApp.extension_manager=readonly", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail("JupyterLab exited: " + (root / "server.log").read_text()[-2000:])
            time.sleep(1)
    else:
        server.terminate()
        pytest.fail("JupyterLab did not answer within 120 s: " + (root / "server.log").read_text()[-2000:])
    yield root, url, token
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def _open(browser, url, token, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # a workspace of its own: the layout holds this notebook only, whatever an earlier page opened
    workspace = path.replace("/", "-").replace(".", "-")
    page.goto(f"{url}/lab/workspaces/{workspace}/tree/{path}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    # The kernel the notebook names starts by itself: no "Select Kernel" dialog, then it is idle.
    page.wait_for_selector(f"{CURRENT} .jp-Toolbar-kernelName:has-text('Python (emotion-study)')", timeout=120_000)
    page.wait_for_selector(f"{CURRENT} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").inner_text()
    return page


def test_opening_and_saving_a_template_changes_nothing(browser, lab):
    root, url, token = lab
    path = root / "template" / f"{NOTEBOOK}.ipynb"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    page = _open(browser, url, token, f"template/{NOTEBOOK}.ipynb")
    time.sleep(2)  # let JupyterLab write what the kernel reports into the model
    assert page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").count() == 0, "opening marked it modified"
    page.locator(".jp-Notebook").click()
    page.keyboard.press("Control+s")
    deadline = time.time() + 60
    while path.stat().st_mtime_ns == mtime and time.time() < deadline:
        time.sleep(0.5)
    assert path.stat().st_mtime_ns != mtime, "the save did not reach the file"
    page.close()
    assert path.read_bytes() == before, "saving without edits changed the template"


def test_running_every_cell_shows_a_figure_and_no_error(browser, lab):
    root, url, token = lab
    page = _open(browser, url, token, f"run/{NOTEBOOK}.ipynb")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()  # Run > Run All Cells
    page.wait_for_function(CELLS_DONE, timeout=600_000)
    page.wait_for_selector(f"{CURRENT} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    errors = page.locator(f"{CURRENT} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.first.inner_text()[:2000]
    assert page.locator(f"{CURRENT} .jp-OutputArea-output img").count() >= 2  # class counts and lengths figures
    assert page.locator(f"{CURRENT} .jp-OutputArea-output table").count() >= 1
    page.close()
    assert (root / "results" / "data" / "ed6-leakage.json").exists()
