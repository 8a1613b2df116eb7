"""Notebook 08 in a real browser: JupyterLab driven by headless Chromium through selenium.

What it checks: JupyterLab opens ``08_explorer.ipynb``, runs every cell with no error, the
explorer's widgets render (four dropdowns, two PNG images with pixels, status "ok"), choosing
another method in the browser's dropdown makes the kernel redraw the t-SNE image and the status
line, and the kernel is idle at the end. A screenshot goes to ``runs/browser/explorer.png``
(``$QD_RUNS_DIR/browser/`` when that variable is set). On a failure the message carries the tail
of JupyterLab's log and the page is saved to ``runs/browser/failure.png``.

Nothing depends on the page having focus: headless Chromium may never give it focus, and then
JupyterLab's ``shell.currentWidget`` stays ``null``. The notebook panel is found by its path among
``shell.widgets('main')``, activated by id, and ``notebook:run-all-cells`` is pointed at it with
the semantic-command ``semanticWidget`` argument.

How it leaves the committed notebook alone: JupyterLab's root dir is a fresh temporary folder
that holds a *copy* of ``notebooks/08_explorer.ipynb``; the committed file is never opened by the
browser, and its sha256 is compared before and after. User settings come from a temporary
settings folder (autosave off, no windowing so every cell stays in the DOM, no news or update
checks); the Jupyter config, data, runtime and workspace folders are temporary too, so the run
neither reads nor writes the user's Jupyter state. The kernel still finds the repository's data
and runs: ``qd_lib`` is installed in editable mode and resolves ``data/`` and ``runs/`` from its
own location (or from ``QD_*`` variables, which are passed through).

Clean-up: the server is asked to shut down (``POST /api/shutdown`` stops the kernels too), then
the server and every process it started (kernels run in their own sessions) are terminated by
pid; Chromium and chromedriver stop with ``driver.quit()``.

Skipped when ``/usr/bin/chromium``, ``/usr/bin/chromedriver`` or selenium is missing, unless
``QD_BROWSER_TEST=1`` (``make browser-test``), which turns a missing piece into a failure.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from qd_lib.paths import runs_dir

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "08_explorer.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1400,1800")
SERVER_START_S = 90
KERNEL_READY_S = 90
RUN_ALL_S = 240
UPDATE_S = 60

LAB_SETTINGS = {  # JUPYTERLAB_SETTINGS_DIR/<plugin path>.jupyterlab-settings
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                     "checkForUpdates": False},
}

# The notebook panel is looked up among the main area's widgets by path, never through
# ``shell.currentWidget``: headless Chromium may never give the page focus
# (``document.hasFocus()`` false), and JupyterLab's current widget follows focus.
KERNEL_STATE_JS = """
const name = arguments[0];
const app = window.jupyterapp;
if (!app || !app.shell) { return null; }
let panel = null;
const main = [];
for (const w of app.shell.widgets('main')) {
  main.push(w.id);
  if (!panel && w.sessionContext && w.content && w.context && w.context.path.endsWith(name)) {
    panel = w;
  }
}
if (!panel) { return {found: false, main: main}; }
const ctx = panel.sessionContext;
const kernel = ctx.session && ctx.session.kernel;
const cells = panel.content.widgets.filter(c => c.model.type === 'code');
const errors = [];
for (const cell of cells) {
  for (const out of cell.model.outputs.toJSON()) {
    if (out.output_type === 'error') { errors.push(out.ename + ': ' + out.evalue); }
  }
}
return {found: true, id: panel.id, path: ctx.path, ready: ctx.isReady,
        status: kernel ? kernel.status : null, code_cells: cells.length,
        executed: cells.filter(c => c.model.executionCount !== null).length, errors: errors,
        has_focus: document.hasFocus()};
"""

# Activate the panel and run all its cells; the command is pointed at the panel by id
# (JupyterLab's semantic-command argument), so it does not depend on the current widget.
RUN_ALL_JS = """
const [panelId, done] = arguments;
const app = window.jupyterapp;
app.shell.activateById(panelId);
app.commands.execute('notebook:run-all-cells', {semanticWidget: panelId, activate: true})
  .then(() => done('ok'), e => done('error: ' + e));
"""

EXPLORER_JS = """
const root = document.querySelector('.qd-explorer');
if (!root) { return null; }
const line = root.querySelector('.qd-status-line');
return {selects: root.querySelectorAll('select').length,
        images: Array.from(root.querySelectorAll('img.qd-tsne, img.qd-mos')).map(
          img => ({cls: img.className, src: img.src, width: img.naturalWidth})),
        state: line ? line.dataset.state : null, status: line ? line.textContent : '',
        picks: root.querySelectorAll('tr.qd-pick').length};
"""


def _require_browser():
    """Skip (or, with QD_BROWSER_TEST=1, fail) when the browser or selenium is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if not missing:
        return
    message = f"the browser test needs {', '.join(missing)}; `make browser-deps` installs them"
    if os.environ.get("QD_BROWSER_TEST") == "1":
        pytest.fail(f"QD_BROWSER_TEST=1 but {message}", pytrace=False)
    pytest.skip(f"{message} (set QD_BROWSER_TEST=1 to make this a failure)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(condition, timeout: float, what: str, interval: float = 0.5, diagnose=None):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    ``diagnose()``, when given, returns extra text for the failure message (log tail, the path
    of a screenshot).
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    extra = f"\n{diagnose()}" if diagnose is not None else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}{extra}",
                pytrace=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Lab:
    """A JupyterLab server on a free localhost port, rooted in a temporary folder."""

    def __init__(self, workdir: Path):
        self.root = workdir / "root"
        self.root.mkdir()
        shutil.copy2(NOTEBOOK, self.root / NOTEBOOK.name)
        settings = workdir / "lab-settings"
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, TQDM_DISABLE="1", JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(workdir / "lab-workspaces"),
                   JUPYTER_CONFIG_DIR=str(workdir / "jupyter-config"),
                   JUPYTER_DATA_DIR=str(workdir / "jupyter-data"),
                   JUPYTER_RUNTIME_DIR=str(workdir / "jupyter-runtime"))
        env.pop("JUPYTER_TOKEN", None)
        self.log_path = workdir / "jupyterlab.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def request(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()

    def wait_ready(self):
        def up():
            if self.proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {self.proc.returncode}:\n"
                            f"{self.log_tail()}", pytrace=False)
            with contextlib.suppress(OSError):
                return self.request("api/status")[0] == 200
            return False

        _wait(up, SERVER_START_S, "the JupyterLab server to answer /api/status")

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self):
        """Shut the server and its kernels down; terminate whatever is left, by pid."""
        children = []
        try:
            import psutil

            children = psutil.Process(self.proc.pid).children(recursive=True)
        except Exception:  # psutil missing or the server already gone: rely on shutdown
            psutil = None
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.request("api/shutdown", method="POST", timeout=10)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        if psutil is not None and children:
            alive = [p for p in children if p.is_running()]
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.terminate()
            _, alive = psutil.wait_procs(alive, timeout=10)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        self._log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    _require_browser()
    server = _Lab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def driver(lab, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    workdir = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={workdir / 'profile'}")
    service = Service(executable_path=str(CHROMEDRIVER),
                      log_output=str(workdir / "chromedriver.log"))
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(120)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


# sha256 of the bytes an <img> shows (blob: or data: URL), so a redraw is checked by content
IMAGE_DIGEST_JS = """
const [src, done] = arguments;
fetch(src).then(r => r.arrayBuffer()).then(b => crypto.subtle.digest('SHA-256', b))
  .then(d => done(Array.from(new Uint8Array(d), x => x.toString(16).padStart(2, '0')).join('')))
  .catch(e => done('error: ' + e));
"""


def _diagnostics(lab, driver):
    """A screenshot of the page (``runs/browser/failure.png``) and JupyterLab's log tail."""
    shots = runs_dir() / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "failure.png"
    try:
        saved = driver.save_screenshot(str(shot))
    except Exception as exc:  # the browser itself may be the problem
        saved, shot = False, f"no screenshot ({exc})"
    where = shot if saved else f"no screenshot saved ({shot})"
    return (f"screenshot: {where}\n--- JupyterLab log (last 3000 characters) ---\n"
            f"{lab.log_tail()}")


def test_notebook_08_runs_in_jupyterlab_and_the_explorer_updates(lab, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    committed = _sha256(NOTEBOOK)
    (runs_dir() / "browser" / "failure.png").unlink(missing_ok=True)  # from an earlier failure
    started = time.monotonic()
    driver.get(f"{lab.url}lab/tree/{NOTEBOOK.name}?reset&token={lab.token}")

    def diagnose():
        return _diagnostics(lab, driver)

    def kernel_state():
        return driver.execute_script(KERNEL_STATE_JS, NOTEBOOK.name)

    def opened_idle():
        state = kernel_state()
        ok = (state and state["found"] and state["path"].endswith(NOTEBOOK.name)
              and state["ready"] and state["status"] == "idle" and state["code_cells"] > 0)
        return state if ok else None

    state = _wait(opened_idle, KERNEL_READY_S, "the notebook to open with an idle kernel",
                  diagnose=diagnose)
    opened = time.monotonic()
    outcome = driver.execute_async_script(RUN_ALL_JS, state["id"])
    assert outcome == "ok", f"notebook:run-all-cells failed: {outcome}\n{diagnose()}"

    def finished():
        state = kernel_state()
        if state and state.get("errors"):
            pytest.fail(f"a notebook cell failed in the browser: {state['errors']}\n"
                        f"{diagnose()}", pytrace=False)
        done = (state and state["found"] and state["executed"] == state["code_cells"]
                and state["status"] == "idle")
        return state if done else None

    _wait(finished, RUN_ALL_S, "every cell to run (kernel idle)", diagnose=diagnose)

    def rendered():
        view = driver.execute_script(EXPLORER_JS)
        ok = (view and view["selects"] == 4 and len(view["images"]) == 2
              and all(img["width"] > 0 for img in view["images"]) and view["state"] == "ok")
        return view if ok else None

    view = _wait(rendered, UPDATE_S, "the explorer's dropdowns and images to render",
                 diagnose=diagnose)
    ran = time.monotonic()
    assert view["picks"] > 0 and "qdiverse" in view["status"], view
    tsne_before = next(img["src"] for img in view["images"] if "qd-tsne" in img["cls"])
    digest_before = driver.execute_async_script(IMAGE_DIGEST_JS, tsne_before)
    assert len(digest_before) == 64, digest_before

    explorer = driver.find_element(By.CSS_SELECTOR, ".qd-explorer")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", explorer)
    Select(explorer.find_element(By.CSS_SELECTOR, ".qd-method select")).select_by_visible_text(
        "kcenter")

    def redrawn():
        now = driver.execute_script(EXPLORER_JS)
        tsne = next((img for img in now["images"] if "qd-tsne" in img["cls"]), None)
        ok = (now["state"] == "ok" and "kcenter" in now["status"] and tsne is not None
              and tsne["src"] != tsne_before and tsne["width"] > 0)
        return now if ok else None

    after = _wait(redrawn, UPDATE_S, "the t-SNE image and status to follow the dropdown",
                  diagnose=diagnose)
    assert after["picks"] > 0
    tsne_after = next(img["src"] for img in after["images"] if "qd-tsne" in img["cls"])
    digest_after = driver.execute_async_script(IMAGE_DIGEST_JS, tsne_after)
    assert len(digest_after) == 64 and digest_after != digest_before, (
        "the t-SNE image shows the same bytes after the method changed")
    _wait(lambda: (s := kernel_state()) and s["status"] == "idle", UPDATE_S, "an idle kernel",
          diagnose=diagnose)

    shots = runs_dir() / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    screenshot = shots / "explorer.png"
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", explorer)
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
    print(f"page focus: {state['has_focus']} (the test does not depend on it)")
    print(f"timings: notebook open {opened - started:.1f} s, run-all + render "
          f"{ran - opened:.1f} s, dropdown update {time.monotonic() - ran:.1f} s")
    assert _sha256(NOTEBOOK) == committed, "the committed notebook was modified"
