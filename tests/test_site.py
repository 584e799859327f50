"""The static leaderboard site, opened in headless Chromium: the table renders and sorts on click."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from talkwalk_bench.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("site")
    res = d / "results"
    for system in ("popularity", "random"):
        assert main(["run", "--system", system, "--task", "ranking", "--output", str(res / f"{system}.json"), "--no-progress"]) == 0
    for system in ("popularity", "random"):
        assert main(["run", "--system", system, "--task", "latency", "--output", str(res / f"lat-{system}.json"), "--no-progress"]) == 0
    out = d / "site"
    assert main(["leaderboard", str(res), "--format", "html", "--output", str(out)]) == 0
    return out


def test_site_pages_and_plots(site):
    assert (site / "index.html").exists()
    ranking = (site / "ranking-ml-100k.html").read_text()
    assert "<table class='lb'>" in ranking and "Protocol:" in ranking and "Versions:" in ranking
    assert "id='latency-plot'" in (site / "latency-ml-100k.html").read_text()
    assert "http://" not in ranking and "https://" not in ranking  # self-contained


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Page:
    """A minimal Chrome DevTools Protocol client over the browser's loopback debugging port."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg.get("result", {})

    def eval(self, expr: str):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_table_renders_and_sorts_in_chromium(site, tmp_path):
    pytest.importorskip("websocket")
    port = _free_port()
    page = (site / "ranking-ml-100k.html").resolve()
    proc = subprocess.Popen([
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-extensions",
        "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",  # networking off
        f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
        f"--user-data-dir={tmp_path / 'profile'}", page.as_uri(),
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        targets = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    targets = [t for t in json.load(r) if t.get("type") == "page"]
                if targets:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert targets, "chromium did not open its debugging port"
        p = _Page(targets[0]["webSocketDebuggerUrl"])
        if p.eval("location.href") != page.as_uri():
            p.call("Page.navigate", url=page.as_uri())
        for _ in range(120):
            if p.eval("location.href") == page.as_uri() and p.eval("document.readyState") == "complete":
                break
            time.sleep(0.25)
        systems = "[...document.querySelectorAll('table.lb tbody tr:not(.chance)')].map(r => r.cells[1].textContent.trim())"
        assert p.eval(systems) == ["popularity", "random"]
        assert p.eval("document.querySelectorAll('table.lb tbody tr td .bar').length") > 0
        # click the 'system' header: rows sort by name; click again: reversed
        p.eval("document.querySelectorAll('table.lb th')[1].click()")
        first = p.eval(systems)
        p.eval("document.querySelectorAll('table.lb th')[1].click()")
        second = p.eval(systems)
        assert sorted(first) == ["popularity", "random"] and second == list(reversed(first))
        # the main score column (index 3): descending puts popularity first
        p.eval("const th = document.querySelectorAll('table.lb th')[3]; th.dataset.dir = 'asc'; th.click();")
        assert p.eval(systems)[0] == "popularity"
        p.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_steering_page_has_per_kind_chance_table_and_plot(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = tmp_path / "steer.yaml"
    spec.write_text(f"include: {root / 'tasks' / 'steerability.yaml'}\nepisodes: {{max_users: 20}}\nbootstrap: {{n_resamples: 100}}\n")
    res = tmp_path / "results"
    for system in ("popularity", "oracle-filter"):
        assert main(["run", "--system", system, "--task", str(spec), "--output", str(res / f"{system}.json"), "--no-progress"]) == 0
    out = tmp_path / "site"
    assert main(["leaderboard", str(res), "--format", "html", "--output", str(out)]) == 0
    page = (out / "steerability-ml-100k.html").read_text()
    assert "<table class='lb kinds'>" in page and "id='kinds-plot'" in page
    kinds = json.loads((res / "popularity.json").read_text())["extras"]["steer_kinds"]
    for kind in kinds:  # every steered kind has a row, each cell with its own chance level
        assert f"<td class='s'>{kind}</td>" in page
    assert page.count("(chance ") >= 2 * len(kinds)
    md = tmp_path / "lb.md"
    assert main(["leaderboard", str(res), "--format", "md", "--output", str(md)]) == 0
    text = md.read_text()
    assert "Per request kind" in text and all(f"| {kind} | " in text for kind in kinds)


def test_a_main_score_without_per_episode_values_gets_no_paired_marks(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = tmp_path / "steer.yaml"
    spec.write_text(f"include: {root / 'tasks' / 'steerability.yaml'}\nepisodes: {{max_users: 12}}\nbootstrap: {{n_resamples: 100}}\n")
    res = tmp_path / "results"
    for system in ("popularity", "random"):
        assert main(["run", "--system", system, "--task", str(spec), "--output", str(res / f"{system}.json"), "--no-progress"]) == 0
    md = tmp_path / "lb.md"
    assert main(["leaderboard", str(res), "--format", "md", "--output", str(md)]) == 0
    text = md.read_text()
    assert "`≈` not computed: constraint_following_norm@10" in text and " ≈ |" not in text
