"""A scripted judge endpoint in its own process, which exits for good after N answers.

Usage: python scripted_server.py N  (prints the base URL, then serves on loopback)
"""

from __future__ import annotations

import os
import sys
import threading

from talkwalk_bench.judge.server import Completion, make_server


class DyingEngine:
    name = "scripted"

    def __init__(self, die_after: int) -> None:
        self.die_after = die_after
        self.calls = 0
        self.lock = threading.Lock()

    def complete(self, messages, **kw) -> Completion:
        with self.lock:
            self.calls += 1
            if self.calls == self.die_after:
                threading.Timer(0.05, os._exit, [0]).start()  # like a killed process: sockets drop
        text = '{"choice": "tie"}' if "List A" in messages[-1]["content"] else '{"score": 2}'
        return Completion(text, 1, 1, "stop")


if __name__ == "__main__":
    srv = make_server(DyingEngine(int(sys.argv[1])), 0)
    host, port = srv.server_address[:2]
    print(f"http://{host}:{port}/v1", flush=True)
    srv.serve_forever()
