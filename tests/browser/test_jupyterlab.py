"""JupyterLab as `make lab` starts it, driven by a real browser (Debian's Chromium, through
Playwright): a notebook opens, Run All runs every cell with the kernel started in `notebooks/`,
no cell fails, and a figure is rendered inline. The screenshot is kept in runs/browser/.

Runs through `make test-browser` (CI calls it); it needs `chromium` on PATH (Debian's package;
`.ci/run` installs it) and is skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless Chromium in a sandbox-less container, with nothing reaching out to the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = float(os.environ.get("PARADOX_BROWSER_RUN_TIMEOUT", "600"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab():
    """`make lab` on a free port with a random token; stopped (its whole process group) after."""
    port, token = free_port(), secrets.token_hex(16)
    log_path = ROOT / "runs" / "browser" / "lab.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # --allow-root: CI and containers run as root, which JupyterLab refuses by default.
    args = f"--no-browser --allow-root --port={port} --IdentityProvider.token={token}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["make", "lab", f"LAB_ARGS={args}"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"make lab exited before JupyterLab answered; see {log_path}"
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"JupyterLab did not answer within {START_TIMEOUT_S} s"
            time.sleep(0.5)
        yield url, token
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def notebook_copy(name: str, **parameters: str) -> Path:
    """A copy of notebooks/<name>.ipynb beside it (the kernel starts in notebooks/, as for the
    original) with its parameters cell set; removed by the caller."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            for key, value in parameters.items():
                cell.source = re.sub(rf"^{key} = .*$", f"{key} = {value!r}", cell.source, flags=re.M)
    path = ROOT / "notebooks" / f"_browser_{name}_{secrets.token_hex(4)}.ipynb"
    nbformat.write(nb, path)
    return path


def kernel_state(url: str, token: str, nb: Path) -> str | None:
    """The execution state of the kernel JupyterLab started for `nb` (its REST API), or None."""
    with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=5) as resp:
        sessions = json.load(resp)
    states = [s["kernel"]["execution_state"] for s in sessions if s.get("path", "").endswith(nb.name)]
    return states[0] if states else None


def wait_until_idle(url: str, token: str, nb: Path, quiet_s: float = 5.0) -> None:
    """Run All queues every cell at once; between two cells the kernel is idle for an instant only,
    so 'done' is: it has been busy, and then idle for `quiet_s` in a row."""
    deadline, busy_seen, idle_since = time.monotonic() + RUN_TIMEOUT_S, False, None
    while True:
        state = kernel_state(url, token, nb)
        busy_seen |= state == "busy"
        idle_since = (idle_since or time.monotonic()) if state == "idle" and busy_seen else None
        if idle_since is not None and time.monotonic() - idle_since >= quiet_s:
            return
        assert time.monotonic() < deadline, f"kernel still {state!r} after {RUN_TIMEOUT_S:.0f} s"
        time.sleep(0.5)


def run_all_in_browser(url: str, token: str, nb: Path, shot: Path) -> dict:
    """Open `nb` in JupyterLab, Run All, wait for the kernel, save; return what the page showed.
    The screenshot is taken also when something fails (it shows what the page was doing)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/lab/tree/{nb.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=START_TIMEOUT_S * 1000)
            deadline = time.monotonic() + START_TIMEOUT_S
            while kernel_state(url, token, nb) != "idle":  # the kernel has started in notebooks/
                assert time.monotonic() < deadline, f"no idle kernel for {nb.name} within {START_TIMEOUT_S} s"
                time.sleep(0.5)
            page.click("text=Run", timeout=30_000)  # the menu bar
            page.click("li.lm-Menu-item:has-text('Run All Cells')", timeout=30_000)
            wait_until_idle(url, token, nb)
            before = nb.stat().st_mtime_ns
            page.keyboard.press("Control+s")
            deadline = time.monotonic() + 30
            while nb.stat().st_mtime_ns == before:
                assert time.monotonic() < deadline, "Ctrl+S did not save the notebook"
                time.sleep(0.5)
            images = page.locator(".jp-OutputArea .jp-RenderedImage img").count()
            return {"images_on_page": images}
        finally:
            page.screenshot(path=str(shot), full_page=False)
            browser.close()


def run_copy_in_browser(lab, name: str, **parameters: str) -> tuple[dict, list, Path]:
    """Run All on a copy of notebooks/<name>.ipynb; assert every cell ran without an error; return
    what the page showed, the outputs' data bundles and the screenshot (kept in runs/browser/,
    pass or fail). The copy, and the .py JupyterLab's jupytext pairs with it on save, are removed."""
    url, token = lab
    shot = ROOT / "runs" / "browser" / f"{name}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    nb = notebook_copy(name, **parameters)
    try:
        seen = run_all_in_browser(url, token, nb, shot)
        saved = nbformat.read(nb, as_version=4)
    finally:
        for leftover in (nb, nb.with_suffix(".py")):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(ROOT / "notebooks" / ".ipynb_checkpoints", ignore_errors=True)
    code = [c for c in saved.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "Run All left cells unexecuted"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == [], [f"{o.ename}: {o.evalue}" for o in errors]
    assert shot.stat().st_size > 10_000
    return seen, [o.get("data", {}) for c in code for o in c.outputs], shot


def test_a_stage_runs_top_to_bottom_in_the_browser(lab):
    if not (ROOT / "runs" / "smoke" / "eval" / "accuracy.csv").is_file():
        pytest.skip("needs a finished smoke run (make test makes one)")
    seen, data, _ = run_copy_in_browser(lab, "06_figures", profile="smoke")
    pngs = sum("image/png" in d for d in data)
    assert pngs >= 1 and seen["images_on_page"] >= 1, "no figure was rendered inline"


def test_the_tour_runs_in_the_browser_and_shows_figures_and_traces(lab):
    """The first notebook a reader opens: no run needed, everything from the committed results."""
    seen, data, _ = run_copy_in_browser(lab, "tour")
    assert sum("image/png" in d for d in data) >= 5 and seen["images_on_page"] >= 1
    assert "".join(d.get("text/html", "") for d in data).count("paradox-trace-view") >= 3
