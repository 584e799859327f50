"""semid-tiger's weight averaging (SWA) over the second half of its epochs, on a tiny model."""

from __future__ import annotations

import pathlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_semid_seq import TIGER  # noqa: E402
from test_semid_system import train_data  # noqa: E402

from systems.semid.tiger import running_mean  # noqa: E402
from talkwalk_bench.registry import build_system  # noqa: E402


def test_running_mean_is_the_mean_of_the_states_and_keeps_integer_buffers():
    g = torch.Generator().manual_seed(0)
    states = [{"m": {"w": torch.randn(3, 2, generator=g), "n": torch.tensor(i)}} for i in range(4)]
    avg = None
    for i, st in enumerate(states, start=1):
        avg = running_mean(avg, st, i)
    assert torch.allclose(avg["m"]["w"], torch.stack([s["m"]["w"] for s in states]).mean(0), atol=1e-6)
    assert int(avg["m"]["n"]) == 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("TALKWALK_CACHE_DIR", str(tmp_path_factory.mktemp("tigeravg") / "cache"))
    yield train_data()
    mp.undo()


def _weights(sys_):
    return {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in sys_._modules().items() if n != "proj"}


def test_tiger_averages_the_later_epochs_keeps_the_better_on_validation_and_resumes(data):
    args = {**TIGER, "epochs": 3, "average_from": 2, "steer_steps": 0}
    t, _ = build_system("semid-tiger", args)
    t.fit(data, seed=0)
    info = t.fit_info["average"]
    assert info["from_epoch"] == 2 and info["epochs"] == 2
    assert info["kept"] == (info["val_ndcg@10"] >= info["best_epoch_val_ndcg@10"])
    root = pathlib.Path(t.fit_info["cache_dir"])
    load = lambda p: torch.load(p, map_location="cpu", weights_only=True)  # noqa: E731
    raw2 = load(root / "average-e2.pt")["state"]  # the average of one epoch is that epoch's weights
    raw3, avg3 = load(root / "checkpoint.pt"), load(root / "average-e3.pt")
    assert load(root / "average-e3.pt")["n"] == 2
    w = raw3["model"]["model.embed_tokens.weight"]
    assert torch.allclose(avg3["state"]["model"]["model.embed_tokens.weight"],
                          (raw2["model"]["model.embed_tokens.weight"] + w) / 2, atol=1e-6)
    # the weights kept are the average when it validates as well, else the best epoch's
    kept = avg3["state"] if info["kept"] else load(root / "best.pt")
    for name, sd in _weights(t).items():
        for k, v in sd.items():
            assert torch.allclose(v.float(), kept[name][k].float(), atol=1e-6), (name, k)
    # a training killed after its last checkpoint resumes with the average as it was: same decision, same weights
    before = _weights(t)
    (root / "sequence.pt").unlink()
    again, _ = build_system("semid-tiger", args)
    again.fit(data, seed=0)
    assert again.fit_info["cached"] is False and again.fit_info["average"] == info
    for name, sd in _weights(again).items():
        for k, v in sd.items():
            assert torch.equal(v, before[name][k]), (name, k)


def test_average_from_zero_keeps_the_best_epoch_only(data):
    t, _ = build_system("semid-tiger", {**TIGER, "average_from": 0, "steer_steps": 0})
    t.fit(data, seed=0)
    assert "average" not in t.fit_info
    assert not list(pathlib.Path(t.fit_info["cache_dir"]).glob("average-e*.pt"))
