"""Fixtures shared by the system tests: a small slice of ml-100k and a model cache per test module."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from talkwalk_bench.data.card import load_card
from talkwalk_bench.data.dataset import load_dataset
from talkwalk_bench.types import Interactions, TrainData


@pytest.fixture(scope="session")
def ml100k_slice() -> Callable[[int, int, str], TrainData]:
    """``make(n_items, n_users, key)``: the first items and users of ml-100k and the interactions among them."""

    def make(n_items: int, n_users: int, key: str) -> TrainData:
        ds = load_dataset("ml-100k")
        items, users = ds.item_ids[:n_items], ds.user_ids[:n_users]
        it, us = set(items), set(users)
        inter = ds.interactions
        keep = np.array([u in us and i in it for u, i in zip(inter.user_ids, inter.item_ids, strict=False)])
        train = Interactions(inter.user_ids[keep], inter.item_ids[keep], inter.timestamps[keep], inter.ratings[keep])
        empty = Interactions(*(a[:0] for a in (inter.user_ids, inter.item_ids, inter.timestamps, inter.ratings)))
        return TrainData(key=key, dataset_name="ml-100k", train=train, valid=empty,
                         items={i: ds.items[i] for i in items}, users={u: ds.users[u] for u in users},
                         item_ids=tuple(items), card=load_card("ml-100k"))

    return make


@pytest.fixture(scope="module")
def module_cache_dir(tmp_path_factory):
    """A model cache (TALKWALK_CACHE_DIR) of the module's own, for fixtures that train once per module."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("TALKWALK_CACHE_DIR", str(path))
        yield path
