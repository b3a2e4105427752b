"""Stage `pretrain`: L1 on the token shards; writes pretrain/hf (HF format) and ckpt.pt.

Launch data-parallel with `torchrun --nproc_per_node N -m tasks.cli pretrain`.
"""

from __future__ import annotations

import os

import torch

from model.gpt import build_lm
from model.pretrain import (
    CKPT,
    bf16,
    flops_per_token,
    matmul_peak,
    pretrain,
    resolve_device,
)
from model.tokenizer import load_tokenizer, special_ids
from tasks.data.tokens import load_shards
from tasks.io import atomic_dir, live, log_to, write_json
from tasks.params import Params


def run(params: Params, resume: bool = False, stop_after: int | None = None) -> dict:
    tok = load_tokenizer(params.artifacts("tokenizer"))
    train, val = load_shards(params, "train"), load_shards(params, "val")
    out = params.artifacts("pretrain")
    if not resume:
        (out / CKPT).unlink(missing_ok=True)
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
    if "train/tokens_per_s_mean" in metrics:  # MFU against the peak measured above
        seq = params.pretrain.seq_len or lm.config.n_positions
        world = int(os.environ.get("WORLD_SIZE", 1))  # tokens/s is global, the peak per process
        flops = metrics["train/tokens_per_s_mean"] * flops_per_token(lm, seq)
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
