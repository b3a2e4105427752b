"""Stage `pretrain`: L1 on the token shards; writes pretrain/hf (HF format) and ckpt.pt.

With pretrain.nproc_per_node x pretrain.nnodes > 1 the stage launches torchrun itself
(genpt/launch.py); a user's own `torchrun ... -m genpt.cli pretrain` works too.
Global rank 0 alone writes ckpt.pt, hf/, metrics.json and the dvclive logs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from genpt import artifacts_check, launch
from genpt.errors import GenptError
from genpt.ingest.tokens import load_shards
from genpt.io import atomic_dir, live, log_to, write_json
from genpt.params import Params
from model.gpt import build_lm
from model.pretrain import (
    CKPT,
    bf16,
    flops_per_token,
    matmul_peak,
    pretrain,
    resolve_device,
    resume_problem,
)
from model.shards import Epochs
from model.tokenizer import load_tokenizer, special_ids


class ResumeError(GenptError):
    """The checkpoint cannot continue with this run's batch and world size."""


def run(params: Params, resume: bool = False, stop_after: int | None = None) -> dict:
    """Pre-train in this process, or launch torchrun when more than one is asked for."""
    out = params.artifacts("pretrain")
    world = launch.world_size(params.pretrain)
    artifacts_check.tokenizer(params.artifacts("tokenizer"))  # before a checkpoint is touched
    artifacts_check.token_shards(params.artifacts("tokens"))  # sha256 once, here
    if resume:
        check_resumable(out / CKPT, params, world)
    elif not launch.under_torchrun() or int(os.environ.get("RANK", 0)) == 0:
        (out / CKPT).unlink(missing_ok=True)
    if launch.needed(params.pretrain):
        return _launch(params, out, world, stop_after)
    return train_process(params, resume=resume, stop_after=stop_after)


def check_resumable(ckpt: Path, params: Params, world: int) -> None:
    """Refuse, before any process starts, a damaged checkpoint or one of another global
    batch or data position."""
    if not ckpt.exists():
        return
    state = artifacts_check.checkpoint(ckpt)
    seq_len = params.pretrain.seq_len or params.model.shape().n_ctx
    stream = Epochs(load_shards(params, "train"), seq_len, params.seed)
    problem = resume_problem(state, params.pretrain, world, stream)
    if problem:
        raise ResumeError(f"cannot resume {ckpt}: {problem}")


def discard_partial(out: Path) -> None:
    """Remove what a killed rank 0 can leave half-written: temp files of ckpt, hf/, metrics."""
    Path(out, CKPT).with_suffix(".tmp").unlink(missing_ok=True)
    for p in out.glob(".hf.*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(".metrics.json.*"):
        p.unlink(missing_ok=True)


def _launch(params: Params, out: Path, world: int, stop_after: int | None) -> dict:
    metrics = out / "metrics.json"
    before = metrics.stat().st_mtime_ns if metrics.exists() else None
    try:
        launch.torchrun(params, stop_after=stop_after)
    except BaseException:
        discard_partial(out)
        raise
    if metrics.exists() and metrics.stat().st_mtime_ns != before:
        return json.loads(metrics.read_text())
    return {  # stopped early, or global rank 0 ran on another node and wrote there
        "world_size": world,
        "outputs": "none on this node: global rank 0 writes ckpt.pt, hf/ and metrics.json",
    }


def train_process(params: Params, resume: bool = False, stop_after: int | None = None) -> dict:
    """One process's pre-training (the only one, or one rank under torchrun)."""
    tok = load_tokenizer(params.artifacts("tokenizer"))
    train, val = load_shards(params, "train"), load_shards(params, "val")
    out = params.artifacts("pretrain")
    torch.manual_seed(params.seed)  # identical initial weights on every process
    lm = build_lm(params.model, len(tok), special_ids(tok))
    rank0 = int(os.environ.get("RANK", 0)) == 0
    lv = live(params.artifacts("live", "pretrain")) if rank0 else None
    device = resolve_device(params.pretrain.device)
    dtype = torch.bfloat16 if bf16(params.pretrain, device) else torch.float32
    peak = matmul_peak(device, dtype, 2048 if device.type == "cuda" else 1024, 2.0)
    metrics = pretrain(
        lm,
        train,
        val,
        params.pretrain,
        out,
        params.seed,
        resume=resume,
        stop_after=stop_after,
        log=log_to(lv) if lv else None,
    )
    world = int(os.environ.get("WORLD_SIZE", 1))
    metrics["world_size"] = world
    if "train/tokens_per_s_mean" in metrics:  # MFU against the peak measured above
        seq = params.pretrain.seq_len or lm.config.n_positions
        flops = metrics["train/tokens_per_s_mean"] * flops_per_token(lm, seq)
        # tokens/s is global, the peak per process
        metrics.update({"train/mfu": flops / (peak * world), "peak_tflops": peak / 1e12})
    if rank0 and metrics["step"] == params.pretrain.steps:
        with atomic_dir(out / "hf") as d:
            lm.save_pretrained(str(d))
            tok.save_pretrained(str(d))
        write_json(out / "metrics.json", metrics)
    if lv:
        lv.end()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return metrics
