"""Data: atomic files, datasets, dataset cards and splits."""

from talkwalk_bench.data.atomic import AtomicTable, read_atomic, write_atomic
from talkwalk_bench.data.card import DatasetCard, load_card
from talkwalk_bench.data.dataset import BUNDLED, Dataset, load_dataset, resolve_dataset
from talkwalk_bench.data.split import PROTOCOL, Split, leave_one_out

__all__ = [
    "AtomicTable",
    "BUNDLED",
    "Dataset",
    "DatasetCard",
    "PROTOCOL",
    "Split",
    "leave_one_out",
    "load_card",
    "load_dataset",
    "read_atomic",
    "resolve_dataset",
    "write_atomic",
]
