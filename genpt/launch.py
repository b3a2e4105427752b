"""Data-parallel pre-training launched by the stage itself, on torchrun's engine.

`genpt pretrain` (so `dvc repro`, `genpt pipeline` and Prefect runs too) starts
`torch.distributed.run` when pretrain.nproc_per_node x pretrain.nnodes > 1 and it is not
already a torchrun worker. Each worker runs `python -m genpt.cli pretrain --worker` with the
same params. One node: `--standalone`. Several: every node runs the same stage and meets
the others at rdzv_endpoint (c10d rendezvous; or static, with node_rank). See
docs/distributed.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import yaml

from genpt import artifacts
from genpt.errors import GenptError

# PretrainConfig keys that say how to launch, not what to train.
LAUNCH_KEYS = (
    "nproc_per_node",
    "nnodes",
    "rdzv_endpoint",
    "rdzv_id",
    "rdzv_backend",
    "node_rank",
    "max_restarts",
)


class LaunchError(GenptError):
    """A worker or the rendezvous failed; the message names the failed ranks."""


def under_torchrun() -> bool:
    """True in a worker started by torchrun (ours or the user's own)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def nproc_per_node(cfg) -> int:
    """pretrain.nproc_per_node resolved: auto = every visible GPU on CUDA, else 1."""
    import torch

    from model.device import resolve_device

    cuda = resolve_device(cfg.device).type == "cuda"
    if cfg.nproc_per_node == "auto":
        return torch.cuda.device_count() if cuda else 1
    if cuda and cfg.nproc_per_node > torch.cuda.device_count():
        raise LaunchError(
            f"pretrain.nproc_per_node={cfg.nproc_per_node}, but "
            f"{torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return cfg.nproc_per_node


def world_size(cfg) -> int:
    """Processes in the whole job: torchrun's WORLD_SIZE in a worker, else nproc x nnodes."""
    if under_torchrun():
        from model import device

        return device.world_size()
    return nproc_per_node(cfg) * cfg.nnodes


def needed(cfg) -> bool:
    """Whether this process should launch torchrun rather than train itself."""
    return not under_torchrun() and world_size(cfg) > 1


def torchrun_args(cfg) -> list[str]:
    """torchrun's own flags for the pretrain section."""
    args = [
        f"--nproc_per_node={nproc_per_node(cfg)}",
        f"--nnodes={cfg.nnodes}",
        f"--max_restarts={cfg.max_restarts}",
    ]
    if cfg.nnodes == 1 and not cfg.rdzv_endpoint:
        return [*args, "--standalone"]
    args += [
        f"--rdzv_backend={cfg.rdzv_backend}",
        f"--rdzv_endpoint={cfg.rdzv_endpoint}",
        f"--rdzv_id={cfg.rdzv_id}",
    ]
    if cfg.rdzv_backend == "static":
        args.append(f"--node_rank={cfg.node_rank or 0}")
    return args


@contextmanager
def _restored_process_state():
    """torchrun's agent installs handlers for SIGTERM, SIGINT, ... and sets environment
    variables (OMP_NUM_THREADS, ...); put ours back after."""
    sigs = [getattr(signal, s) for s in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")]
    saved, env = {s: signal.getsignal(s) for s in sigs}, dict(os.environ)
    try:
        yield
    finally:
        for s, h in saved.items():
            if h is not None:
                signal.signal(s, h)
        os.environ.clear()
        os.environ.update(env)


def describe(err) -> str:
    """Each failed rank with its exit code or signal, the likely cause first.

    Killed by a signal other than SIGTERM (OOM killer, a crash) first, then error exits,
    then SIGTERM, which torchrun sends to the survivors; each kind by time.
    """

    def order(item):
        rank, f = item
        kind = 2 if f.exitcode == -signal.SIGTERM else 0 if f.exitcode < 0 else 1
        return (kind, f.timestamp, rank)

    lines = []
    for rank, f in sorted(err.failures.items(), key=order):
        how = (
            f"was killed by {f.signal_name()} (exit code {f.exitcode})"
            if f.exitcode < 0
            else f"exited with code {f.exitcode}"
        )
        lines.append(f"rank {rank} (local rank {f.local_rank}, pid {f.pid}) {how}")
    return "; ".join(lines)


def torchrun(params, stop_after: int | None = None) -> None:
    """Run `genpt.cli pretrain --worker --resume` under torch.distributed.run with `params`.

    Workers always resume: the caller has already deleted a checkpoint it does not
    want, and a torchrun restart (max_restarts) continues from the last checkpoint.
    Raises LaunchError naming each failed rank and its exit code.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    cfg = params.pretrain
    fd, path = tempfile.mkstemp(prefix="genpt-params-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(params.model_dump(mode="json", by_alias=True), f, sort_keys=False)
    argv = [
        *torchrun_args(cfg),
        "-m",
        "genpt.cli",
        "pretrain",
        "--params",
        path,
        "--worker",
        "--resume",
        *(["--stop-after", str(stop_after)] if stop_after is not None else []),
    ]
    try:
        with _restored_process_state():
            run(parse_args(argv))
    except ChildFailedError as e:
        raise LaunchError(
            f"distributed pre-training failed: {describe(e)}. Global rank 0 wrote no hf/ "
            "or metrics.json; ckpt.pt, if there, is the last complete checkpoint (--resume)"
        ) from None
    except RendezvousError as e:
        where = cfg.rdzv_endpoint or "localhost"
        raise LaunchError(f"rendezvous at {where} (id {cfg.rdzv_id}) failed: {e}") from None
    finally:
        Path(path).unlink(missing_ok=True)


def discard_partial(out: Path) -> None:
    """Remove what a killed rank 0 can leave half-written: temp files of ckpt, hf/, metrics."""
    from model.pretrain import CKPT

    Path(out, CKPT).with_suffix(".tmp").unlink(missing_ok=True)
    for p in out.glob(".hf.*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(".metrics.json.*"):
        p.unlink(missing_ok=True)


def run_workers(params, out: Path, world: int, stop_after: int | None) -> dict:
    """torchrun's workers pre-train; rank 0's metrics, or a note if it wrote none here."""
    metrics = artifacts.pretrain_metrics(params)
    before = metrics.stat().st_mtime_ns if metrics.exists() else None
    try:
        torchrun(params, stop_after=stop_after)
    except BaseException:
        discard_partial(out)
        raise
    if metrics.exists() and metrics.stat().st_mtime_ns != before:
        return json.loads(metrics.read_text())
    return {  # stopped early, or global rank 0 ran on another node and wrote there
        "world_size": world,
        "outputs": "none on this node: global rank 0 writes ckpt.pt, hf/ and metrics.json",
    }
