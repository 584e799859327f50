"""``talkwalk-bench view RESULT``: write (and optionally serve) the episode viewer page of one result."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from talkwalk_bench.argtypes import whole


def add_parser(sub: Any) -> None:
    p = sub.add_parser("view", help="write an HTML page showing every episode of a result (utterances, titles, pass/fail, scores)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("result", help="result JSON (its .episodes.jsonl must sit beside it)")
    p.add_argument("--output", default=os.environ.get("TALKWALK_VIEW_OUTPUT"),
                   help="HTML file to write; default RESULT_NAME.html in the current folder (env TALKWALK_VIEW_OUTPUT)")
    p.add_argument("--limit", type=whole("--limit", minimum=1), default=None, help="show the first N episodes only")
    p.add_argument("--serve", action="store_true", help="also serve the page on http://127.0.0.1:PORT until Ctrl-C")
    p.add_argument("--port", type=whole("--port", minimum=0, maximum=65535), default=8765, help="port for --serve (default 8765)")
    p.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from talkwalk_bench.errors import BenchError
    from talkwalk_bench.results import atomic_write_text, episodes_path
    from talkwalk_bench.viewer import build_view, doc_links

    src = Path(a.result)
    if not src.is_file():
        raise BenchError(f"{src}: no such result file; pass a result JSON written by `talkwalk-bench run`")
    if not episodes_path(src).exists():
        raise BenchError(f"{src}: its episodes file {episodes_path(src).name} is missing; it is written beside the result by `run`")
    out = Path(a.output) if a.output else Path(src.stem + ".html")
    if out.resolve() == src.resolve():
        raise BenchError(f"--output {out}: would overwrite the result")
    rel = lambda p: os.path.relpath(Path(p).resolve(), out.resolve().parent)  # noqa: E731
    links = {"result": rel(src), "episodes": rel(episodes_path(src))}
    links.update(doc_links(src, rel))
    page = build_view(src, limit=a.limit, links=links)
    atomic_write_text(out, page)
    print(f"wrote {out} (open it in a browser)", file=sys.stderr)
    if a.serve:
        _serve(out, a.port)
    return 0


def _serve(page: Path, port: int) -> None:
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page.resolve().parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
        print(f"serving http://127.0.0.1:{httpd.server_address[1]}/{page.name} (Ctrl-C to stop)", file=sys.stderr)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
