"""The leaderboard in a real browser: ``rdbench leaderboard`` on a loopback port, loaded in
headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

Streamlit renders client-side over a websocket, so ``--dump-dom`` alone returns an empty page;
the test polls the live DOM until the plotly chart and the dataframes are drawn.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from test_leaderboard_app import build_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, proc: subprocess.Popen, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with code {proc.returncode}")
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read()
    except OSError:
        return None


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a process group this test started (streamlit, or chromium and its helpers)."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)[
            "result"
        ].get("value")


PROBE = """JSON.stringify({
  plots: document.querySelectorAll('.js-plotly-plot .main-svg').length,
  points: document.querySelectorAll('.js-plotly-plot .scatterlayer .point').length,
  frames: document.querySelectorAll('[data-testid="stDataFrame"]').length,
  exceptions: document.querySelectorAll('[data-testid="stException"]').length,
  text: document.body.innerText.slice(0, 5000)
})"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (Debian: apt-get install -y chromium)",
)
def test_chart_and_table_render_in_chromium(tmp_path):
    pytest.importorskip("websockets", reason="websockets (a streamlit dependency) is missing")
    store = build_store(tmp_path)
    port = free_port()
    from websockets.sync.client import connect

    server = browser = None
    log = (tmp_path / "server.log").open("wb")
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "rdbench", "leaderboard", "--store", str(store),
             "--port", str(port), "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_get(f"{base}/_stcore/health") == b"ok", "streamlit health", server)

        profile = tmp_path / "chromium-profile"
        browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--window-size=1400,1000", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        active = profile / "DevToolsActivePort"
        wait_for(lambda: active.is_file() and active.read_text().strip(), "DevTools", browser)
        cdp_port = int(active.read_text().split()[0])
        pages = wait_for(
            lambda: http_get(f"http://127.0.0.1:{cdp_port}/json/list"), "DevTools pages", browser
        )
        ws_url = next(p for p in json.loads(pages) if p["type"] == "page")["webSocketDebuggerUrl"]
        with connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=10) as ws:
            devtools = DevTools(ws)
            devtools.call("Page.navigate", url=base)

            def rendered():
                state = json.loads(devtools.evaluate(PROBE) or "{}")
                return state if state.get("points", 0) and state.get("frames", 0) >= 2 else None

            state = wait_for(rendered, "the chart and the tables to render", browser)
            shot = devtools.call("Page.captureScreenshot", format="png")
        assert state["plots"] >= 1 and state["exceptions"] == 0
        assert "rdbench leaderboard" in state["text"]
        assert "Hypervolume ranking" in state["text"]
        png = base64.b64decode(shot["data"])
        (tmp_path / "shot.png").write_bytes(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    finally:
        stop(browser)
        stop(server)
        log.close()
