"""Memory-mapped token shards and deterministic window sampling for pre-training.

Training reads `Epochs`: the shards cut into windows of seq_len + 1 tokens at stride
seq_len. Neighbours share one token (one's last target is the next one's first input), so
every token but a shard's first is a target exactly once per epoch, bar the fewer than
seq_len tokens at a shard's end. Epoch e is a permutation of every window of every shard,
seeded by (seed, e), and the stream runs epoch after epoch. The global micro-batch g takes
the next B = batch_size x world slots, g*B .. g*B+B-1, and rank r only its own batch_size of
them, so ranks read disjoint windows, and no window twice in an epoch. A slot's window
depends on the seed and the slot alone: any world size with the same global batch reads the
same windows, and the position after a step, (epoch, offset) = divmod(step x global batch,
windows), is a pure function of the step (the checkpoint records it as a check).

The permutation is held for one epoch at a time, 4 bytes a window (uint32): BooksCorpus
(about 1e9 tokens) at seq_len 512 is about 2M windows, 8 MB per process.

Validation uses `TokenShards.batch`: windows at any offset, drawn with replacement from a
fixed seed, the same set for every world size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class TokenShards:
    """A split's token stream, as one or more memory-mapped .bin files."""

    def __init__(self, paths: Sequence[str | Path], dtype: str | np.dtype) -> None:
        self.shards = [np.memmap(p, dtype=np.dtype(dtype), mode="r") for p in paths]
        if not self.shards:
            raise ValueError("no token shards given")
        self.n_tokens = sum(len(s) for s in self.shards)

    def _nonempty(self, counts: list[int], seq_len: int) -> np.ndarray:
        if sum(counts) == 0:
            raise ValueError(
                f"token shards hold {self.n_tokens} tokens: too few for windows of {seq_len + 1}"
            )
        return np.array(counts, dtype=np.int64)

    def windows(self, seq_len: int) -> np.ndarray:
        """Training windows in each shard: seq_len + 1 tokens at stride seq_len."""
        return self._nonempty([max(len(s) - 1, 0) // seq_len for s in self.shards], seq_len)

    def read(
        self, flat: np.ndarray, counts: np.ndarray, stride: int, seq_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows numbered `flat` over all shards (`counts` per shard, `stride` apart):
        inputs x and next-token targets y."""
        bounds = np.cumsum(counts)
        rows = []
        for f in flat:
            i = int(np.searchsorted(bounds, f, side="right"))
            start = int(f - (bounds[i - 1] if i else 0)) * stride
            rows.append(np.asarray(self.shards[i][start : start + seq_len + 1], dtype=np.int64))
        w = torch.from_numpy(np.stack(rows))
        return w[:, :-1], w[:, 1:]

    def batch(
        self, seeds: Sequence[int], n: int, seq_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n windows at any offset, drawn with replacement by an RNG seeded by `seeds`
        (validation's fixed set)."""
        counts = self._nonempty([max(len(s) - seq_len - 1, 0) for s in self.shards], seq_len)
        flat = np.random.default_rng(list(seeds)).integers(0, counts.sum(), size=n)
        return self.read(flat, counts, 1, seq_len)


class Epochs:
    """The training stream of windows: each epoch a permutation, seeded by (seed, epoch),
    of every window of every shard (see the module docstring)."""

    def __init__(self, shards: TokenShards, seq_len: int, seed: int) -> None:
        self.shards, self.seq_len, self.seed = shards, seq_len, seed
        self.counts = shards.windows(seq_len)
        self.n = int(self.counts.sum())  # windows per epoch
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        """Epoch `epoch`'s permutation of the window numbers; the last two epochs are kept."""
        if epoch not in self._orders:
            idx = np.arange(self.n, dtype=np.uint32 if self.n < 2**32 else np.int64)
            np.random.default_rng([self.seed, epoch]).shuffle(idx)
            self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
            self._orders[epoch] = idx
        return self._orders[epoch]

    def position(self, slot: int) -> dict:
        """Where slot `slot` of the stream lies: its epoch and offset in that epoch."""
        epoch, offset = divmod(slot, self.n)
        return {"epoch": epoch, "offset": offset, "windows": self.n, "seq_len": self.seq_len}

    def indices(self, start: int, n: int) -> np.ndarray:
        """Window numbers at slots start .. start+n-1 (across an epoch's end if need be)."""
        epochs, offsets = np.divmod(np.arange(start, start + n), self.n)
        return np.concatenate([self.order(int(e))[offsets[epochs == e]] for e in np.unique(epochs)])

    def batch(self, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows at slots start .. start+n-1: inputs x and next-token targets y."""
        return self.shards.read(self.indices(start, n), self.counts, self.seq_len, self.seq_len)
