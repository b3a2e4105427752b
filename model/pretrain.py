"""Unsupervised pre-training: maximise L1 = sum_i log P(u_i | u_{i-k..i-1}).

AdamW, linear warmup then cosine decay, gradient clipping and accumulation,
periodic validation, atomic checkpoints with exact resume, and data-parallel
training under `torchrun` (NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import PreTrainedModel

from model.config import PretrainConfig
from model.device import resolve_device, world_size
from model.gpt import n_params
from model.optim import param_groups
from model.progress import progress
from model.shards import Epochs, TokenShards

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


def bf16(cfg: PretrainConfig, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: `precision`, auto = on CUDA."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size); joins the process group when launched by torchrun."""
    world = world_size()
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """Fused AdamW (CPU and CUDA kernels), weight decay on matrices only."""
    groups = param_groups(model, cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


@dataclass
class Trainer:
    """One process's training state: its place in the world, the model and the optimizer."""

    cfg: PretrainConfig
    seed: int
    device: torch.device
    rank: int
    world: int
    seq_len: int
    amp: AbstractContextManager
    raw: PreTrainedModel  # the LM itself: checkpoints, evaluation, clipping
    model: torch.nn.Module  # what runs the forward pass: raw, wrapped by DDP and/or compile
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.world * self.seq_len


def setup(lm: PreTrainedModel, cfg: PretrainConfig, seed: int) -> Trainer:
    """Join the process group, place and wrap the model, build optimizer and schedule."""
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
    return Trainer(cfg, seed, device, rank, world, seq_len, amp, raw, model, opt, sched)


def first_slot(cfg: PretrainConfig, world: int, rank: int, step: int, micro: int) -> int:
    """The stream slot of process `rank`'s first window in micro-batch `micro` of `step`.

    Global micro-batch g = step x grad_accum + micro is the stream's slots g*B .. g*B+B-1
    (B = batch_size x world); each process reads only its own batch_size of them.
    """
    return ((step * cfg.grad_accum + micro) * world + rank) * cfg.batch_size


def train_step(t: Trainer, train: Epochs, step: int) -> tuple[dict, float]:
    """One optimizer step (grad_accum micro-batches); its metrics and its seconds."""
    cfg, t0 = t.cfg, time.perf_counter()
    loss_sum = torch.zeros((), device=t.device)
    for micro in range(cfg.grad_accum):
        start = first_slot(cfg, t.world, t.rank, step, micro)
        x, y = train.batch(start, cfg.batch_size)
        x, y = x.to(t.device), y.to(t.device)
        sync = micro == cfg.grad_accum - 1 or t.world == 1
        with nullcontext() if sync else t.model.no_sync(), t.amp:
            logits = t.model(input_ids=x).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        (loss / cfg.grad_accum).backward()
        loss_sum += loss.detach()
    grad_norm = (
        torch.nn.utils.clip_grad_norm_(t.raw.parameters(), cfg.grad_clip)
        if cfg.grad_clip > 0
        else torch.zeros(())
    )
    t.opt.step()
    t.sched.step()
    t.opt.zero_grad(set_to_none=True)

    train_loss = loss_sum / cfg.grad_accum
    if t.world > 1:
        dist.all_reduce(train_loss, op=dist.ReduceOp.AVG)
    dt = time.perf_counter() - t0
    metrics = {
        "train/loss": train_loss.item(),
        "train/lr": t.sched.get_last_lr()[0],
        "train/grad_norm": float(grad_norm),
        "train/tokens_per_s": t.tokens_per_step / dt,
    }
    return metrics, dt


@torch.no_grad()
def evaluate(t: Trainer, val: TokenShards) -> float:
    """Mean validation loss over a fixed set of windows: the same at every eval and for
    every world size (eval_batches global micro-batches; each process takes its slice)."""
    cfg, lm = t.cfg, t.raw
    was_training = lm.training
    lm.eval()
    total = 0.0
    for i in range(cfg.eval_batches):
        x, y = val.batch([t.seed, VAL_SEED, i], cfg.batch_size * t.world, t.seq_len)
        part = slice(t.rank * cfg.batch_size, (t.rank + 1) * cfg.batch_size)
        x, y = x[part].to(t.device), y[part].to(t.device)
        with t.amp:
            logits = lm(input_ids=x).logits
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten()).item()
    lm.train(was_training)
    if t.world > 1:  # the mean of equal slices' means
        summed = torch.tensor(total, dtype=torch.float64, device=t.device)
        dist.all_reduce(summed)
        total = summed.item() / t.world
    return total / cfg.eval_batches


def val_metrics(t: Trainer, val: TokenShards) -> dict:
    loss = evaluate(t, val)
    return {"val/loss": loss, "val/perplexity": math.exp(min(loss, 50))}


def _write_atomic(path: Path, state: dict) -> None:
    """Write a temp file, then rename over the old checkpoint: never a half-written one."""
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


def data_position(train: Epochs, cfg: PretrainConfig, world: int, step: int) -> dict:
    """The training stream's position after `step` steps: a pure function of the step,
    recorded in the checkpoint to check that a resumed run reads on from there."""
    return train.position(first_slot(cfg, world, 0, step, 0))


def save_checkpoint(t: Trainer, path: Path, step: int, train: Epochs) -> None:
    """Every process's RNG state goes in; global rank 0 alone writes the file."""
    rngs = [None] * t.world
    if t.world > 1:
        dist.all_gather_object(rngs, _rng_state(t.device))
    else:
        rngs = [_rng_state(t.device)]
    if t.rank == 0:
        state = {
            "model": t.raw.state_dict(),
            "optimizer": t.opt.state_dict(),
            "scheduler": t.sched.state_dict(),
            "rng": rngs,
            "step": step,
            "data": data_position(train, t.cfg, t.world, step),
            "seed": t.seed,
            "world_size": t.world,
            "batch_size": t.cfg.batch_size,
            "grad_accum": t.cfg.grad_accum,
            "id": uuid.uuid4().hex,  # tells one checkpoint from another of the same step
        }
        _write_atomic(path, state)


def _where(pos: dict) -> str:
    e, o, n, k = pos["epoch"], pos["offset"], pos["windows"], pos["seq_len"]
    return f"epoch {e}, window {o} of {n} (seq_len {k})"


def resume_problem(state: dict, cfg: PretrainConfig, world: int, train: Epochs) -> str | None:
    """Why a checkpoint cannot continue with this batch, world size and data, or None.

    Any world size works that keeps the global batch (batch_size x grad_accum x world); each
    step then reads the same windows as before, however the batch is split. The data
    position follows from the step; one that differs from the checkpoint's (other token
    shards or seq_len) is refused.
    """
    saved = state.get("world_size", 1)
    if "batch_size" not in state:  # written before the batch was recorded
        if saved == world:
            return None
        return f"it was written by {saved} processes and does not record its batch size"
    old = state["batch_size"] * state["grad_accum"] * saved
    new = cfg.batch_size * cfg.grad_accum * world
    if old == new:
        here = data_position(train, cfg, world, state["step"])
        if state.get("data", here) == here:  # older checkpoints record none
            return None
        return (
            f"it stopped at {_where(state['data'])}, but here that step ends at {_where(here)}: "
            "were the token shards or seq_len changed?"
        )
    return (
        f"its global batch is {old} sequences ({state['batch_size']} x grad_accum "
        f"{state['grad_accum']} x {saved} processes), this run's {new} ({cfg.batch_size} x "
        f"{cfg.grad_accum} x {world}); keep batch_size x grad_accum x world size equal"
    )


def _read_checkpoint(path: Path, rank: int, world: int) -> dict | None:
    """The checkpoint every process resumes from: global rank 0's.

    Ranks that lack that file (node-local disks) receive it from rank 0.
    """
    local = torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None
    if world == 1:
        return local

    def ident(s):
        return None if s is None else (s["step"], s.get("id"))

    head = [ident(local)]
    dist.broadcast_object_list(head, src=0)
    if head[0] is None:
        return None
    stale = [False] * world
    dist.all_gather_object(stale, ident(local) != head[0])
    if any(stale):
        box = [local if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        local = box[0]
    return local


def load_checkpoint(t: Trainer, path: Path, train: Epochs) -> int:
    """Restore model, optimizer, schedule and RNG from `path`; the step to continue from (0: none).

    The same world size restores each process's RNG exactly; another one reseeds the
    dropout streams from (seed, rank, step). The data stream continues from the step.
    """
    state = _read_checkpoint(path, t.rank, t.world)
    if state is None:
        return 0
    problem = resume_problem(state, t.cfg, t.world, train)
    if problem:
        raise ValueError(f"cannot resume {path}: {problem}")
    t.raw.load_state_dict(state["model"])
    t.opt.load_state_dict(state["optimizer"])
    t.sched.load_state_dict(state["scheduler"])
    if len(state["rng"]) == t.world:
        _set_rng_state(state["rng"][t.rank], t.device)
    else:
        seq = np.random.SeedSequence([t.seed, t.rank, state["step"]])
        torch.manual_seed(int(seq.generate_state(1)[0]))
    return state["step"]


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
    ckpt = out / CKPT
    t = setup(lm, cfg, seed)
    stream = Epochs(train, t.seq_len, seed)
    step = load_checkpoint(t, ckpt, stream) if resume else 0
    bar = progress(cfg.steps, "pretrain", initial=step, enabled=t.rank == 0)
    metrics: dict = {}
    start_step, train_s = step, 0.0  # time in training steps (no eval, no checkpoints)
    while step < cfg.steps and (stop_after is None or step < stop_after):
        metrics, dt = train_step(t, stream, step)
        step += 1
        train_s += dt
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics.update(val_metrics(t, val))
        if t.rank == 0 and log:
            log(metrics, step)
        bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", tok_s=f"{t.tokens_per_step / dt:,.0f}")
        bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(t, ckpt, step, stream)
    bar.close()
    if "val/loss" not in metrics:  # e.g. resumed from a finished run
        metrics.update(val_metrics(t, val))
    metrics["step"] = step
    metrics["tokens"] = step * t.tokens_per_step
    if step > start_step:  # this process's mean over its steps (the last one is noisy)
        metrics["train/tokens_per_s_mean"] = (step - start_step) * t.tokens_per_step / train_s
    return metrics
