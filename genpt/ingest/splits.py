"""The split every stage that reads a dataset's train file agrees on: the rows held out for
the report (`study.report_rows`, carved with `study.report_seed`) and the label pool."""

from __future__ import annotations

import numpy as np

from genpt.ingest.loaders import load_split
from genpt.params import Params


def carve(rows: list, n: int, seed: int) -> tuple[list, list]:
    """(kept, carved): n rows drawn at random with `seed`, both parts in file order."""
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in sorted(order[n:])], [rows[i] for i in sorted(order[:n])]


def report_split(params: Params, name: str) -> tuple[list, list]:
    """(label pool, held-out rows) of train, before the leakage check: the carve alone,
    which reads only the dataset and study.report_rows/report_seed (the task text's input)."""
    return carve(load_split(params.dataset(name), "train"), params.study.report_rows,
                 params.study.report_seed)  # fmt: skip
