"""Data-parallel pre-training launched by the stage itself (genpt/launch.py), gloo on CPU.

Every run has the same global batch (8 sequences) and no dropout, so 1 and 2 processes
train the same model up to float summation order.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from genpt import launch
from genpt.launch import LaunchError
from genpt.params import load_params
from tasks import pretrain
from tasks.pretrain import ResumeError
from tests.conftest import ROOT, copy_tokens, tiny

STEPS = 8
COMMON = [
    f"pretrain.steps={STEPS}",
    "pretrain.seq_len=32",
    f"pretrain.eval_every={STEPS}",
    "pretrain.ckpt_every=4",
    "model.dropout=0.0",
]


def _params(art: Path, *extra: str):
    return load_params(ROOT / "params.yaml", tiny(art, *COMMON, *extra))


def _genpt(art: Path, *extra: str, args: tuple[str, ...] = (), env: dict | None = None):
    """`genpt pretrain` (the dvc.yaml stage's command) as a subprocess."""
    sets = [x for s in tiny(art, *COMMON, *extra) for x in ("-S", s)]
    cmd = [sys.executable, "-m", "genpt.cli", "pretrain", "-p", str(ROOT / "params.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [*cmd, *sets, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the launcher and its workers
    )


def _finish(proc, timeout: float = 600) -> tuple[int, str, str]:
    """Wait for a `_genpt` process; on timeout, kill its group (launcher and workers)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def _loss_curve(art: Path) -> np.ndarray:
    path = art / "live" / "pretrain" / "plots" / "metrics" / "train" / "loss.tsv"
    with open(path) as f:
        return np.array([float(r["loss"]) for r in csv.DictReader(f, delimiter="\t")])


def _weights(art: Path) -> dict:
    return torch.load(art / "pretrain" / "ckpt.pt", weights_only=False)["model"]


def _assert_close_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_process(tokens, tmp_path_factory) -> Path:
    """The reference: 1 process, batch 8, run in-process."""
    art = tmp_path_factory.mktemp("one")
    copy_tokens(tokens, art)
    pretrain.run(_params(art, "pretrain.batch_size=8"))
    return art


@pytest.mark.slow
def test_stage_with_two_processes_matches_one_and_writes_one_set_of_outputs(
    one_process, tokens, tmp_path
):
    copy_tokens(tokens, tmp_path)
    code, out, err = _finish(_genpt(tmp_path, "pretrain.batch_size=4", "pretrain.nproc_per_node=2"))
    assert code == 0, err
    printed = json.loads(out)  # one JSON object: the launcher's, not one per rank
    assert printed["world_size"] == 2 and printed["step"] == STEPS

    a, b = _loss_curve(one_process), _loss_curve(tmp_path)
    assert len(a) == len(b) == STEPS  # one rank logged
    np.testing.assert_allclose(a, b, rtol=1e-4)
    assert a[-1] < a[0]
    _assert_close_weights(_weights(one_process), _weights(tmp_path))
    val = json.loads((one_process / "pretrain" / "metrics.json").read_text())["val/loss"]
    assert printed["val/loss"] == pytest.approx(val, rel=1e-5)  # the same windows, split

    art = tmp_path / "pretrain"
    assert sorted(p.name for p in art.iterdir()) == ["ckpt.pt", "hf", "metrics.json"]
    assert json.loads((art / "metrics.json").read_text()) == printed
    assert (art / "hf" / "model.safetensors").exists()


@pytest.mark.slow
def test_resume_on_another_world_size_with_the_same_global_batch(one_process, tokens, tmp_path):
    copy_tokens(tokens, tmp_path)
    two = _params(tmp_path, "pretrain.batch_size=4", "pretrain.nproc_per_node=2")
    pretrain.run(two, stop_after=6)  # "crash" at step 6: the last checkpoint is step 4
    ckpt = torch.load(tmp_path / "pretrain" / "ckpt.pt", weights_only=False)
    assert (ckpt["step"], ckpt["world_size"], len(ckpt["rng"])) == (4, 2, 2)

    with pytest.raises(ResumeError, match="global batch is 8 sequences"):
        pretrain.run(_params(tmp_path, "pretrain.batch_size=4"), resume=True)  # 4 != 8
    assert (tmp_path / "pretrain" / "ckpt.pt").exists()  # refused, not deleted

    metrics = pretrain.run(_params(tmp_path, "pretrain.batch_size=8"), resume=True)
    assert metrics["step"] == STEPS and metrics["world_size"] == 1
    _assert_close_weights(_weights(one_process), _weights(tmp_path))


def _nodes(tokens, tmp_path, backend: str, *extra: str, args=()) -> list[Path]:
    """Two launchers on 127.0.0.1, each a 1-process node with its own artifacts dir."""
    port, rid = _free_port(), f"t{uuid.uuid4().hex[:8]}"
    arts = [tmp_path / "node0", tmp_path / "node1"]
    procs = []
    for rank, art in enumerate(arts):
        if not (art / "tokens").exists():
            copy_tokens(tokens, art)
        launch = [
            "pretrain.batch_size=4",
            "pretrain.nproc_per_node=1",
            "pretrain.nnodes=2",
            f"pretrain.rdzv_endpoint=127.0.0.1:{port}",
            f"pretrain.rdzv_id={rid}",
            f"pretrain.rdzv_backend={backend}",
            f"pretrain.node_rank={rank}",
        ]
        procs.append(_genpt(art, *launch, *extra, args=args))
    results = []
    try:
        results = [_finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    for code, _, err in results:
        assert code == 0, err
    return arts


@pytest.mark.slow
def test_two_node_c10d_rendezvous_completes_and_one_node_writes(one_process, tokens, tmp_path):
    arts = _nodes(tokens, tmp_path, "c10d")
    writers = [a for a in arts if (a / "pretrain" / "hf").exists()]
    assert len(writers) == 1  # global rank 0's node, whichever c10d chose
    art = writers[0]
    assert json.loads((art / "pretrain" / "metrics.json").read_text())["world_size"] == 2
    other = arts[1 - arts.index(art)]
    assert not (other / "pretrain" / "ckpt.pt").exists()
    assert not (other / "pretrain" / "metrics.json").exists()
    _assert_close_weights(_weights(one_process), _weights(art))


@pytest.mark.slow
def test_two_node_static_resume_from_rank0_disk_only(one_process, tokens, tmp_path):
    # node_rank 0 holds global rank 0, so node0's disk alone has the checkpoint of step 4;
    # on resume, node1's rank receives it from rank 0.
    node0, node1 = _nodes(tokens, tmp_path, "static", args=("--stop-after", "6"))
    assert torch.load(node0 / "pretrain" / "ckpt.pt", weights_only=False)["step"] == 4
    assert not (node1 / "pretrain" / "ckpt.pt").exists()
    _nodes(tokens, tmp_path, "static", args=("--resume",))
    assert (node0 / "pretrain" / "hf").exists()
    assert not (node1 / "pretrain" / "ckpt.pt").exists()
    _assert_close_weights(_weights(one_process), _weights(node0))


def _pids_with(var: str, value: str, rank: str) -> list[int]:
    """Processes whose environment has var=value and RANK=rank (torchrun's workers)."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"{var}={value}".encode() in env and f"RANK={rank}".encode() in env:
            found.append(int(d.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_killed_rank_fails_the_stage_clearly_without_partial_outputs(tokens, tmp_path):
    copy_tokens(tokens, tmp_path)
    mark = uuid.uuid4().hex
    proc = _genpt(
        tmp_path,
        "pretrain.batch_size=4",
        "pretrain.nproc_per_node=2",
        "pretrain.steps=1000000",  # never finishes on its own
        "pretrain.ckpt_every=1",  # rank 0 is often mid-save when it is stopped
        env={"GENPT_TEST_MARK": mark},
    )
    ckpt = tmp_path / "pretrain" / "ckpt.pt"
    try:
        deadline = time.monotonic() + 600
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        victims = _pids_with("GENPT_TEST_MARK", mark, "1")
        assert ckpt.exists() and len(victims) == 1, proc.poll()
        survivors = _pids_with("GENPT_TEST_MARK", mark, "0")
        os.kill(victims[0], signal.SIGKILL)
        code, _, err = _finish(proc, timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: distributed pre-training failed: rank "), last
    victim = f"rank 1 (local rank 1, pid {victims[0]}) was killed by SIGKILL (exit code -9)"
    assert victim in last  # rank 0, stopped by torchrun or a broken connection, is named too
    assert all(not Path(f"/proc/{p}").exists() for p in survivors)  # rank 0 was stopped too
    out = tmp_path / "pretrain"
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt"]  # no hf/, metrics, temp files
    assert torch.load(ckpt, weights_only=False)["step"] >= 1  # the last complete checkpoint


def test_failed_launch_removes_half_written_outputs(tokens, tmp_path, monkeypatch):
    """What a rank 0 stopped mid-write leaves (temp files of ckpt, hf/, metrics) goes."""
    copy_tokens(tokens, tmp_path)  # real inputs: the stage checks them before it launches
    out = tmp_path / "pretrain"

    def torchrun(params, stop_after=None):
        out.mkdir(parents=True)
        (out / "ckpt.pt").write_bytes(b"the last complete checkpoint")
        (out / "ckpt.tmp").write_bytes(b"half")
        (out / ".hf.x1y2").mkdir()
        (out / ".hf.x1y2" / "model.safetensors").write_bytes(b"half")
        (out / ".metrics.json.z3").write_text("{")
        raise LaunchError("distributed pre-training failed: rank 1 ...")

    monkeypatch.setattr(launch, "torchrun", torchrun)
    with pytest.raises(LaunchError, match="rank 1"):
        pretrain.run(_params(tmp_path, "pretrain.nproc_per_node=2"))
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt"]
