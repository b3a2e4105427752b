"""Stage `pretrain`: L1 on the token shards; writes pretrain/hf (HF format) and ckpt.pt.

With pretrain.nproc_per_node x pretrain.nnodes > 1 the stage launches torchrun itself
(genpt/launch.py); a user's own `torchrun ... -m genpt.cli pretrain` works too.
Global rank 0 alone writes ckpt.pt, hf/, metrics.json and the dvclive logs.
"""

from __future__ import annotations

import torch

from genpt import artifacts, artifacts_check, launch
from genpt.ingest.tokens import load_shards
from genpt.io import atomic_dir, live, log_to, write_json
from genpt.params import Params
from genpt.resume import ResumeError, check_resumable
from model.device import rank, resolve_device, world_size
from model.gpt import build_lm
from model.pretrain import CKPT, bf16, flops_per_token, matmul_peak, pretrain
from model.tokenizer import load_tokenizer, special_ids

__all__ = ["ResumeError", "run", "train_process"]


def run(params: Params, resume: bool = False, stop_after: int | None = None) -> dict:
    """Pre-train in this process, or launch torchrun when more than one is asked for."""
    out = artifacts.pretrain(params)
    world = launch.world_size(params.pretrain)
    artifacts_check.tokenizer(artifacts.tokenizer(params))  # before a checkpoint is touched
    artifacts_check.token_shards(artifacts.tokens(params))  # sha256 once, here
    if resume:
        check_resumable(out / CKPT, params, world)
    elif not launch.under_torchrun() or rank() == 0:
        (out / CKPT).unlink(missing_ok=True)
    if launch.needed(params.pretrain):
        return launch.run_workers(params, out, world, stop_after)
    return train_process(params, resume=resume, stop_after=stop_after)


def train_process(params: Params, resume: bool = False, stop_after: int | None = None) -> dict:
    """One process's pre-training (the only one, or one rank under torchrun)."""
    tok = load_tokenizer(artifacts.tokenizer(params))
    train, val = load_shards(params, "train"), load_shards(params, "val")
    out = artifacts.pretrain(params)
    torch.manual_seed(params.seed)  # identical initial weights on every process
    lm = build_lm(params.model, len(tok), special_ids(tok))
    rank0 = rank() == 0
    lv = live(artifacts.live_pretrain(params)) if rank0 else None
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
    world = world_size()
    metrics["world_size"] = world
    if "train/tokens_per_s_mean" in metrics:  # MFU against the peak measured above
        seq = params.pretrain.seq_len or lm.config.n_positions
        flops = metrics["train/tokens_per_s_mean"] * flops_per_token(lm, seq)
        # tokens/s is global, the peak per process
        metrics.update({"train/mfu": flops / (peak * world), "peak_tflops": peak / 1e12})
    if rank0 and metrics["step"] == params.pretrain.steps:
        with atomic_dir(artifacts.pretrain_hf(params)) as d:
            lm.save_pretrained(str(d))
            tok.save_pretrained(str(d))
        write_json(artifacts.pretrain_metrics(params), metrics)
    if lv:
        lv.end()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return metrics
