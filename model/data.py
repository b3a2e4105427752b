"""Memory-mapped token shards and deterministic window sampling for pre-training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


class TokenShards:
    """A split's token stream, as one or more memory-mapped .bin files.

    Windows of seq_len + 1 tokens are drawn uniformly from all shards; the draw for
    (seed, step, micro) is a pure function of those numbers, so a resumed or
    data-parallel run sees exactly the batches an uninterrupted one does.
    """

    def __init__(self, paths: Sequence[str | Path], dtype: str | np.dtype) -> None:
        self.shards = [np.memmap(p, dtype=np.dtype(dtype), mode="r") for p in paths]
        if not self.shards:
            raise ValueError("no token shards given")
        self.n_tokens = sum(len(s) for s in self.shards)

    def windows(self, seq_len: int) -> np.ndarray:
        """Number of window start positions in each shard."""
        n = np.array([max(len(s) - seq_len - 1, 0) for s in self.shards], dtype=np.int64)
        if n.sum() == 0:
            raise ValueError(
                f"token shards hold {self.n_tokens} tokens: too few for windows of {seq_len + 1}"
            )
        return n

    def batch(
        self, seeds: Sequence[int], n: int, seq_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n windows drawn with RNG seeded by `seeds`: inputs x and next-token targets y."""
        rng = np.random.default_rng(list(seeds))
        counts = self.windows(seq_len)
        flat = rng.integers(0, counts.sum(), size=n)
        bounds = np.cumsum(counts)
        rows = []
        for f in flat:
            i = int(np.searchsorted(bounds, f, side="right"))
            start = int(f - (bounds[i - 1] if i else 0))
            rows.append(np.asarray(self.shards[i][start : start + seq_len + 1], dtype=np.int64))
        w = torch.from_numpy(np.stack(rows))
        return w[:, :-1], w[:, 1:]
