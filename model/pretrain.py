"""Unsupervised pre-training: maximise L1 = sum_i log P(u_i | u_{i-k..i-1}).

AdamW, linear warmup then cosine decay, gradient clipping and accumulation,
periodic validation, atomic checkpoints with exact resume, and data-parallel
training under `torchrun` (NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from model.config import PretrainConfig
from model.data import TokenShards
from model.gpt import n_params

CKPT = "ckpt.pt"
VAL_SEED = 1_000_003  # keeps validation windows apart from training draws


def flops_per_token(lm: PreTrainedModel, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls plus 12*L*d*T for attention (PaLM, App. B).

    N counts the tied embedding once, since it is the output projection too.
    """
    c = lm.config
    return 6 * n_params(lm, non_embedding=True) + 12 * c.n_layer * c.n_embd * seq_len


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 3.0) -> float:
    """Best sustained FLOP/s of an n x n matmul: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - t))
    return best


def lr_lambda(cfg: PretrainConfig) -> Callable[[int], float]:
    """Multiplier on cfg.lr: linear warmup, then cosine decay to min_lr_ratio."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine

    return f


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def bf16(cfg: PretrainConfig, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: `precision`, auto = on CUDA."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """Fused AdamW (CPU and CUDA kernels), weight decay on matrices only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: write a temp file, then rename over the old checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


@torch.no_grad()
def evaluate(
    lm, val: TokenShards, cfg: PretrainConfig, seq_len: int, seed: int, device, amp
) -> float:
    """Mean validation loss over a fixed set of windows (the same at every eval)."""
    was_training = lm.training
    lm.eval()
    total = 0.0
    for i in range(cfg.eval_batches):
        x, y = val.batch([seed, VAL_SEED, i], cfg.batch_size, seq_len)
        with amp:
            logits = lm(input_ids=x.to(device)).logits
        total += F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten()).item()
    lm.train(was_training)
    return total / cfg.eval_batches


def pretrain(
    lm: PreTrainedModel,
    train: TokenShards,
    val: TokenShards,
    cfg: PretrainConfig,
    out_dir: str | Path,
    seed: int,
    resume: bool = False,
    stop_after: int | None = None,
    log: Callable[[dict, int], None] | None = None,
) -> dict:
    """Train `lm` in place; returns the final metrics.

    Checkpoints go to out_dir/ckpt.pt every cfg.ckpt_every steps and at the end.
    With resume=True a run continues from that checkpoint; on CPU it ends with
    bitwise the same weights as an uninterrupted run. `stop_after` stops early
    without a checkpoint (used to simulate an interruption).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    rank, world = init_distributed(device)
    seq_len = cfg.seq_len or lm.config.n_positions
    if seq_len > lm.config.n_positions:
        raise ValueError(f"pretrain.seq_len {seq_len} > model context {lm.config.n_positions}")
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16(cfg, device) else nullcontext()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    raw = lm.to(device).train()
    model: torch.nn.Module = raw
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            raw, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        model = torch.compile(model)
    opt = make_optimizer(raw, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    torch.manual_seed(seed + rank)  # dropout stream of this process

    step, ckpt = 0, out / CKPT
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        raw.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"][rank], device)
        step = state["step"]

    def checkpoint() -> None:
        rngs = [None] * world
        if world > 1:
            dist.all_gather_object(rngs, _rng_state(device))
        else:
            rngs = [_rng_state(device)]
        if rank == 0:
            save_checkpoint(
                ckpt,
                {
                    "model": raw.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": rngs,
                    "step": step,
                    "seed": seed,
                    "world_size": world,
                },
            )

    tokens_per_step = cfg.batch_size * cfg.grad_accum * world * seq_len
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc="pretrain",
        unit="step",
        mininterval=2.0,
        **({"disable": True} if rank else {}),  # rank 0 only; TQDM_DISABLE=1 silences it
    )
    metrics: dict = {}
    start_step, train_s = step, 0.0  # time in training steps (no eval, no checkpoints)
    while step < cfg.steps and (stop_after is None or step < stop_after):
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            # One global micro-batch per (step, micro); this process takes its slice.
            x, y = train.batch([seed, step, micro], cfg.batch_size * world, seq_len)
            part = slice(rank * cfg.batch_size, (rank + 1) * cfg.batch_size)
            x, y = x[part].to(device), y[part].to(device)
            sync = micro == cfg.grad_accum - 1 or world == 1
            with nullcontext() if sync else model.no_sync(), amp:
                logits = model(input_ids=x).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
        grad_norm = (
            torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
            if cfg.grad_clip > 0
            else torch.zeros(())
        )
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1

        train_loss = loss_sum / cfg.grad_accum
        if world > 1:
            dist.all_reduce(train_loss, op=dist.ReduceOp.AVG)
        dt = time.perf_counter() - t0
        train_s += dt
        metrics = {
            "train/loss": train_loss.item(),
            "train/lr": sched.get_last_lr()[0],
            "train/grad_norm": float(grad_norm),
            "train/tokens_per_s": tokens_per_step / dt,
        }
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics["val/loss"] = evaluate(raw, val, cfg, seq_len, seed, device, amp)
            metrics["val/perplexity"] = math.exp(min(metrics["val/loss"], 50))
        if rank == 0 and log:
            log(metrics, step)
        bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}")
        bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint()
    bar.close()
    if "val/loss" not in metrics:  # e.g. resumed from a finished run
        metrics["val/loss"] = evaluate(raw, val, cfg, seq_len, seed, device, amp)
        metrics["val/perplexity"] = math.exp(min(metrics["val/loss"], 50))
    metrics["step"] = step
    metrics["tokens"] = step * tokens_per_step
    if step > start_step:  # this process's mean over its steps (the last one is noisy)
        metrics["train/tokens_per_s_mean"] = (step - start_step) * tokens_per_step / train_s
    return metrics
