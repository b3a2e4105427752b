"""The pre-training loader (model/shards.py Epochs) on small synthetic memmaps: every epoch
reads every window once, ranks read disjoint windows, and resume continues mid-epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import ModelConfig, PretrainConfig
from model.gpt import build_lm
from model.pretrain import first_slot, pretrain, resume_problem
from model.shards import Epochs, TokenShards

SEQ = 8
LENGTHS = [100, 37, 250, 5]  # the last shard is too short for a window


def positional_shards(tmp_path, keep: slice = slice(None)) -> TokenShards:
    """Shards whose token i of shard k is k * 1000 + i: a window names where it starts."""
    paths = []
    for k, n in enumerate(LENGTHS):
        paths.append(tmp_path / f"train_{k}.bin")
        np.arange(k * 1000, k * 1000 + n, dtype=np.uint32).tofile(paths[-1])
    return TokenShards(paths[keep], "uint32")


def starts(x: torch.Tensor) -> list[int]:
    return x[:, 0].tolist()


def read(stream: Epochs, first: int, last: int, size: int) -> list[int]:
    """Window starts at slots first .. last-1, read `size` slots at a time."""
    out: list[int] = []
    for s in range(first, last, size):
        out += starts(stream.batch(s, min(size, last - s))[0])
    return out


def test_every_epoch_reads_every_window_exactly_once(tmp_path):
    shards = positional_shards(tmp_path)
    stream = Epochs(shards, SEQ, seed=3)
    every = [k * 1000 + j * SEQ for k, n in enumerate(LENGTHS) for j in range((n - 1) // SEQ)]
    assert stream.n == len(every) == 12 + 4 + 31
    epochs = []
    for e in range(3):  # batches of 5 straddle each epoch's end
        got = read(stream, e * stream.n, (e + 1) * stream.n, 5)
        assert len(got) == stream.n and sorted(got) == every
        epochs.append(got)
    assert epochs[0] != epochs[1] != epochs[2]  # a new permutation each epoch
    assert read(Epochs(shards, SEQ, seed=3), 0, stream.n, 7) == epochs[0]  # seeded
    assert read(Epochs(shards, SEQ, seed=4), 0, stream.n, 7) != epochs[0]

    # Windows are seq_len + 1 consecutive tokens of one shard, stride seq_len: an epoch's
    # targets are every token but each shard's first, once.
    x, y = stream.batch(0, stream.n)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones_like(x))
    firsts = {k * 1000 for k in range(len(LENGTHS))}
    used = [k * 1000 + j for k, n in enumerate(LENGTHS) for j in range(1, 1 + (n - 1) // SEQ * SEQ)]
    assert sorted(y.flatten().tolist()) == used and not firsts & set(used)


def windows_of(shards, world: int, rank: int, steps: int, **cfg) -> list[list[int]]:
    """Window starts that process `rank` of `world` reads, step by step (as train_step)."""
    c = PretrainConfig(**cfg)
    stream = Epochs(shards, SEQ, seed=0)
    return [
        starts(stream.batch(first_slot(c, world, rank, s, m), c.batch_size)[0])
        for s in range(steps)
        for m in range(c.grad_accum)
    ]


def test_ranks_read_disjoint_windows_and_together_what_one_process_reads(tmp_path):
    shards = positional_shards(tmp_path)
    n, steps = Epochs(shards, SEQ, seed=0).n, 3  # 3 steps x 12 = 36 of the epoch's 47
    one = windows_of(shards, 1, 0, steps, batch_size=12)
    for world, batch, accum in [(2, 6, 1), (3, 2, 2), (4, 1, 3), (1, 4, 3)]:
        ranks = [
            windows_of(shards, world, r, steps, batch_size=batch, grad_accum=accum)
            for r in range(world)
        ]
        every = [w for rank in ranks for batch_ in rank for w in batch_]
        assert len(every) == len(set(every)) == steps * 12 <= n  # disjoint, within an epoch
        for s in range(steps):  # each step reads what one process would, however split
            mine = [w for rank in ranks for w in sum(rank[s * accum : (s + 1) * accum], [])]
            assert sorted(mine) == sorted(one[s]), (world, s)


def test_resume_continues_mid_epoch_bitwise(tmp_path):
    """Through model.pretrain.pretrain: 10 windows an epoch, 4 a step, so the checkpoint
    of step 4 lies in epoch 1 and the resumed run crosses two more epoch ends."""
    path = tmp_path / "train.bin"
    np.random.default_rng(0).integers(5, 128, 10 * SEQ + 1, dtype=np.uint16).tofile(path)
    shards = TokenShards([path], "uint16")
    cfg = PretrainConfig(
        steps=10, batch_size=4, seq_len=SEQ, warmup_steps=2, eval_every=100,
        eval_batches=1, ckpt_every=4, device="cpu",
    )  # fmt: skip

    def run(out, **kw):
        torch.manual_seed(0)
        special = {"start": 1, "delim": 2, "extract": 3, "pad": 4, "eot": 0}
        lm = build_lm(ModelConfig(preset="tiny", dropout=0.1), 128, special)
        pretrain(lm, shards, shards, cfg, out, seed=7, **kw)
        return torch.load(out / "ckpt.pt", weights_only=False)

    straight = run(tmp_path / "straight")
    stopped = run(tmp_path / "broken", stop_after=6)  # "crash" at 6: the last checkpoint is 4
    assert stopped["step"] == 4
    assert stopped["data"] == {"epoch": 1, "offset": 6, "windows": 10, "seq_len": SEQ}
    resumed = run(tmp_path / "broken", resume=True)
    assert (
        resumed["data"]
        == straight["data"]
        == {"epoch": 4, "offset": 0, "windows": 10, "seq_len": SEQ}
    )
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k


def test_resume_refuses_a_checkpoint_whose_data_position_differs(tmp_path):
    shards = positional_shards(tmp_path)
    cfg = PretrainConfig(batch_size=4, seq_len=SEQ)
    state = {"step": 5, "world_size": 1, "batch_size": 4, "grad_accum": 1}
    here = Epochs(shards, SEQ, seed=0)
    state["data"] = here.position(20)
    assert state["data"] == {"epoch": 0, "offset": 20, "windows": 47, "seq_len": SEQ}
    assert resume_problem(state, cfg, 1, here) is None
    other = Epochs(positional_shards(tmp_path, slice(2)), SEQ, seed=0)  # fewer shards
    problem = resume_problem(state, cfg, 1, other)
    assert problem == (
        "it stopped at epoch 0, window 20 of 47 (seq_len 8), but here that step ends at "
        "epoch 1, window 4 of 16 (seq_len 8): were the token shards or seq_len changed?"
    )
    with pytest.raises(ValueError, match="too few for windows of 9"):
        Epochs(positional_shards(tmp_path, slice(3, None)), SEQ, seed=0)
