"""A run never leaves a wrong result that looks right: one writer per output, --force keeps a
good result until the new one has succeeded, arguments fail before any work, and no
failure leaves a result "started"."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from talkwalk_bench.errors import BenchError, SystemFailure
from talkwalk_bench.registry import register_system
from talkwalk_bench.results import OutputLock, episodes_path, lock_path, read_episodes, read_result
from talkwalk_bench.tasks import runner
from talkwalk_bench.tasks.runner import RunConfig, run, staging_path
from talkwalk_bench.types import SystemMeta


def _run(tiny_dataset, out, system="popularity", **kw):
    return run(RunConfig(system=system, task="ranking", dataset=str(tiny_dataset), output=out, progress=False, **kw))


def test_a_held_output_refuses_a_second_run_naming_the_holder(tmp_path, tiny_dataset):
    out = tmp_path / "r.json"
    with OutputLock(out, {"system": "random", "task": "ranking"}):
        with pytest.raises(BenchError, match=r"another run is writing this result \(pid \d+ .*random ranking"):
            _run(tiny_dataset, out)
        assert not out.exists() and not episodes_path(out).exists()
    _run(tiny_dataset, out)  # released: the next run goes ahead
    assert read_result(out).status == "success" and not lock_path(out).exists()


def test_a_killed_holder_releases_the_output(tmp_path, tiny_dataset):
    out = tmp_path / "r.json"
    code = ("import sys, time; from pathlib import Path; from talkwalk_bench.results import OutputLock; "
            "OutputLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(BenchError, match=f"pid {proc.pid}"):
            _run(tiny_dataset, out)
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs in the holder
        proc.wait(timeout=10)
    _run(tiny_dataset, out)
    assert read_result(out).status == "success"


def test_concurrent_runs_to_one_output_never_mix_result_and_episodes(tmp_path, tiny_dataset):
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "talkwalk_bench.cli", "run", "--task", "ranking", "--dataset", str(tiny_dataset),
           "--output", str(out), "--no-progress", "--force"]
    for _ in range(3):
        procs = [subprocess.Popen(cmd + ["--system", s], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for s in ("popularity", "random")]
        errs = [p.communicate(timeout=120)[1] for p in procs]
        assert any(p.returncode == 0 for p in procs)
        for p, err in zip(procs, errs, strict=True):
            assert p.returncode == 0 or "another run is writing this result" in err, err
        res = read_result(out)
        eps = read_episodes(episodes_path(out))
        assert res.status == "success"
        # the pair belongs to one run: the episodes' rankings are the system's that the result names
        again = run(RunConfig(system=res.system.name, task="ranking", dataset=str(tiny_dataset),
                              output=tmp_path / "check.json", progress=False, force=True))
        ref = read_episodes(episodes_path(tmp_path / "check.json"))
        assert [e["ranked"] for e in eps] == [e["ranked"] for e in ref]
        assert res.metrics == again.metrics


@pytest.fixture
def broken_after_fit():
    calls = {"n": 0}

    @register_system("test-breaks-in-play", description="raises in recommend")
    def factory():
        class Breaks:
            meta = SystemMeta(name="test-breaks-in-play")

            def fit(self, data, *, seed):
                pass

            def recommend(self, requests, *, k):
                calls["n"] += 1
                raise RuntimeError("boom")

        return Breaks()

    return calls


def test_force_keeps_a_good_result_until_the_new_run_succeeds(tmp_path, tiny_dataset, broken_after_fit):
    out = tmp_path / "r.json"
    good = _run(tiny_dataset, out)
    before = (out.read_text(), episodes_path(out).read_text())
    with pytest.raises(SystemFailure) as info:
        _run(tiny_dataset, out, system="test-breaks-in-play", force=True)
    assert f"the earlier result {out} is kept" in str(info.value)
    assert (out.read_text(), episodes_path(out).read_text()) == before  # untouched
    assert read_result(staging_path(out)).status == "error"
    # a --force run that succeeds replaces both files together
    new = _run(tiny_dataset, out, system="random", force=True)
    assert read_result(out).run_id == new.run_id != good.run_id and read_result(out).system.name == "random"
    assert all(len(e["ranked"]) for e in read_episodes(episodes_path(out)))
    assert not staging_path(out).exists() and not episodes_path(staging_path(out)).exists()


@pytest.mark.parametrize("seed", [-1, 2**32, True])
def test_bad_seed_fails_before_anything_is_written(tmp_path, tiny_dataset, seed):
    out = tmp_path / "r.json"
    with pytest.raises(BenchError, match="--seed"):
        _run(tiny_dataset, out, seed=seed)
    assert not out.exists()


def test_a_harness_fault_after_the_episodes_is_recorded_not_left_started(tmp_path, tiny_dataset, monkeypatch):
    out = tmp_path / "r.json"

    def broken(*a, **kw):
        raise ValueError("bootstrap exploded")

    monkeypatch.setattr(runner, "aggregate", broken)
    with pytest.raises(ValueError):
        _run(tiny_dataset, out)
    res = read_result(out)
    assert res.status == "error" and "bootstrap exploded" in res.error


def test_result_files_are_readable_by_others(tmp_path, tiny_dataset):
    out = tmp_path / "r.json"
    old = os.umask(0o022)
    try:
        _run(tiny_dataset, out)
    finally:
        os.umask(old)
    for p in (out, episodes_path(out)):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_unknown_task_option_is_refused_with_the_valid_ones(tmp_path, tiny_dataset):
    with pytest.raises(BenchError, match="takes no -O options"):
        _run(tiny_dataset, tmp_path / "r.json", options={"max_users": 10})
    with pytest.raises(BenchError, match=r"has no option 'judge_modle'\. Did you mean 'judge_model'\? Its options: .*judge_reference"):
        run(RunConfig(system="popularity", task="judge", output=tmp_path / "j.json", progress=False,
                      options={"judge_modle": "x"}))
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "j.json").exists()


def test_default_output_stays_under_the_runs_folder(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setattr(runner, "default_output", lambda *a: tmp_path / "elsewhere" / "r.json")
    with pytest.raises(BenchError, match="outside"):
        run(RunConfig(system="popularity", task="ranking", dataset=str(tiny_dataset), progress=False))
    assert not (tmp_path / "elsewhere").exists()


def test_lock_file_names_the_holder_while_held(tmp_path):
    out = tmp_path / "r.json"
    with OutputLock(out, {"system": "s", "task": "t"}):
        info = json.loads(lock_path(out).read_text())
        assert info["pid"] == os.getpid() and info["system"] == "s"
        with pytest.raises(BenchError, match="another run"):
            OutputLock(out).acquire()
    assert not lock_path(out).exists()  # nothing left behind to block the next run
    OutputLock(out).acquire().release()


@pytest.mark.parametrize("family, key", [("steerability", "judge_model"), ("steerability", "judge_pairwise"), ("judge", "judge_reference"),
                                         ("conversation", "simulator"), ("conversation", "judge_base_url")])
def test_options_a_family_reads_are_accepted(family, key):
    from talkwalk_bench.tasks.base import FAMILIES

    runner.check_options(FAMILIES.get(family), family, {key: "x"})  # no error
