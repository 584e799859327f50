"""What a system says of its fit is recorded in the result, short and without local paths."""

from __future__ import annotations

from types import SimpleNamespace

from talkwalk_bench.tasks.runner import FIT_ENTRY_LIMIT, fit_record


def test_fit_info_is_recorded_with_paths_shortened_and_long_entries_named():
    system = SimpleNamespace(fit_info={
        "epochs_run": 12, "train_s": 81.5, "cached": True,
        "cache_dir": "/home/someone/.cache/talkwalk-bench/semid/0123abcd",
        "reader": {"steps": 600, "cache": "/tmp/x/reader-1.pt"},
        "curve": [{"step": i, "val": 0.1} for i in range(FIT_ENTRY_LIMIT)],
    })
    rec = fit_record(system)
    assert rec["epochs_run"] == 12 and rec["train_s"] == 81.5 and rec["cached"] is True
    assert rec["cache_dir"] == "0123abcd" and rec["reader"] == {"steps": 600, "cache": "reader-1.pt"}
    assert "curve" not in rec and rec["omitted"] == ["curve"]


def test_a_system_that_says_nothing_of_its_fit_records_none():
    assert fit_record(SimpleNamespace()) is None
    assert fit_record(SimpleNamespace(fit_info={})) is None
