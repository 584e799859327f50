"""A minimal headless-Chromium driver over the DevTools protocol: open a local page, run JS, take a screenshot.

Used by the site tests and by ``benchmarks/site_screenshots.py``; networking
is switched off so a page that reaches for the network fails visibly.
Needs Debian's ``chromium`` and the ``websocket-client`` package.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1000) -> None:
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.port = _free_port()
        self.width, self.height = width, height
        self.proc = subprocess.Popen([
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-extensions", "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",  # networking off
            f"--remote-debugging-port={self.port}", "--remote-debugging-address=127.0.0.1",
            f"--window-size={width},{height}", f"--user-data-dir={profile}", "about:blank",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ws = None
        self.n = 0

    def __enter__(self) -> Browser:
        import websocket

        targets = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json", timeout=2) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        if not targets:
            self.close()
            raise RuntimeError("chromium did not open its debugging port")
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=60)
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg.get("result", {})

    def eval(self, expr: str) -> Any:
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def open(self, path: Path | str) -> None:
        url = Path(path).resolve().as_uri() if not str(path).startswith(("file:", "http:")) else str(path)
        self.call("Page.navigate", url=url)
        for _ in range(240):
            if self.eval("location.href") == url and self.eval("document.readyState") == "complete":
                return
            time.sleep(0.25)
        raise RuntimeError(f"{url} did not finish loading")

    def screenshot(self, out: Path, *, height: int | None = None) -> None:
        """The page from its top, ``height`` pixels tall (default the whole page, at most 4000)."""
        full = int(self.eval("document.documentElement.scrollHeight") or self.height)
        h = min(height or full, full, 4000)
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": self.width, "height": h, "scale": 1})
        Path(out).write_bytes(base64.b64decode(shot["data"]))

    def overflowing(self, selector: str = "body *") -> list[str]:
        """Elements whose text is clipped (content wider than the box, overflow hidden) or that run past the page width."""
        return self.eval(f"""[...document.querySelectorAll('{selector}')].filter(e => {{
            const s = getComputedStyle(e), r = e.getBoundingClientRect();
            const clipped = (s.overflowX === 'hidden' || s.textOverflow === 'ellipsis') && e.scrollWidth > e.clientWidth + 1;
            const past = r.right > document.documentElement.clientWidth + 1 && !e.closest('.scroll');
            return (clipped || past) && r.width > 0;
        }}).map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ' + (e.textContent || '').trim().slice(0, 40))""") or []
