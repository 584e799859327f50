"""Judge test fixtures: live loopback servers, stopped after each test."""

from __future__ import annotations

import pytest

from talkwalk_bench.judge.server import ServerThread


@pytest.fixture
def serve():
    """serve(engine) -> base URL of a live loopback server; stopped after the test."""
    started: list[ServerThread] = []

    def start(engine) -> str:
        st = ServerThread(engine).start()
        started.append(st)
        return st.base_url

    yield start
    for st in started:
        try:
            st.stop()
        except Exception:
            pass
