"""Supervised fine-tuning: maximise L3 = L2 + lambda * L1 on a labelled dataset."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from model import inputs, metrics
from model.config import FinetuneConfig, ModelConfig
from model.device import resolve_device
from model.gpt import build_lm
from model.inputs import encode_record
from model.optim import param_groups
from model.progress import progress
from model.schema import MISSING_CHOICE, label_of
from model.task_model import TaskModel
from model.tokenizer import load_tokenizer, special_ids


def init_lm(init: str, pretrained: Path, tokenizer: Path, cfg: ModelConfig):
    """(tokenizer, LM): the pre-trained LM, or (init='scratch') a fresh one of the same
    shape and tokenizer, the no-pre-training ablation."""
    if init == "pretrained":
        from transformers import AutoModelForCausalLM

        if not (pretrained / "config.json").exists():
            raise FileNotFoundError(
                f"{pretrained}: no pre-trained model (run `genpt pretrain`, "
                "or fine-tune with --init scratch)"
            )
        return load_tokenizer(pretrained), AutoModelForCausalLM.from_pretrained(str(pretrained))
    tok = load_tokenizer(tokenizer)
    return tok, build_lm(cfg, len(tok), special_ids(tok))


@dataclass
class Example:
    seqs: list[list[int]]  # 1 sequence, 2 (similarity) or one per choice
    label: float | int


def encode(
    records: Sequence[dict],
    task_type: str,
    tokenizer: PreTrainedTokenizerFast,
    max_len: int,
    labels: Sequence[str] | None = None,
) -> list[Example]:
    """Tokenize canonical records and apply the task type's input transformation."""
    return [
        Example(encode_record(r, task_type, tokenizer, max_len, i), label_of(r, task_type, labels))
        for i, r in enumerate(records, start=1)
    ]


def batches(
    examples: Sequence[Example],
    batch_size: int,
    task_type: str,
    pad_id: int,
    order: Sequence[int] | None = None,
):
    order = range(len(examples)) if order is None else order
    order = list(order)
    for i in range(0, len(order), batch_size):
        chunk = [examples[j] for j in order[i : i + batch_size]]
        batch = inputs.collate([e.seqs for e in chunk], task_type, pad_id)
        dtype = torch.float if isinstance(chunk[0].label, float) else torch.long
        batch["labels"] = torch.tensor([e.label for e in chunk], dtype=dtype)
        yield batch


@torch.no_grad()
def predict(
    model: TaskModel,
    examples: Sequence[Example],
    pad_id: int,
    batch_size: int = 32,
    device: torch.device | None = None,
) -> np.ndarray:
    """Task logits for every example, in order."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for b in batches(examples, batch_size, model.task_type, pad_id):
        logits, _ = model(b["input_ids"].to(device), b["attention_mask"].to(device))
        out.append(logits.float().cpu().numpy())
    if model.task_type == "multiple_choice":  # batches may differ in their number of choices
        width = max(o.shape[1] for o in out)
        out = [
            np.pad(o, ((0, 0), (0, width - o.shape[1])), constant_values=MISSING_CHOICE)
            for o in out
        ]
    return np.concatenate(out)


def evaluate(
    model: TaskModel, examples: Sequence[Example], pad_id: int, device: torch.device | None = None
) -> dict[str, float]:
    """Every metric of the model's task type on labelled examples."""
    logits = predict(model, examples, pad_id, device=device)
    gold = np.array([e.label for e in examples])
    return metrics.compute(logits, gold, model.regression)


def finetune(
    model: TaskModel,
    train: Sequence[Example],
    dev: Sequence[Example] | None,
    cfg: FinetuneConfig,
    pad_id: int,
    seed: int,
    log: Callable[[dict, int], None] | None = None,
    tune: Sequence[Example] | None = None,
    metric: str | None = None,
) -> dict:
    """Train `model` in place for at most cfg.epochs; returns the final dev metrics (none
    when `dev` is None: the study scores its held-out split itself, after every run).

    With a `tune` split (carved from train, never the reported one), training stops early
    once `cfg.patience` epochs pass without a better tune `metric`; the best epoch's weights
    are restored at the end, and the result adds `tune/<metric>`, `best_epoch`, `epochs`
    (run), `steps` (optimizer steps run) and `tune_curve` (every epoch's). cfg.epochs is a
    cap, and the schedule decays over it: a run that reaches it is flagged by the report.
    """
    device = resolve_device(cfg.device)
    model.to(device).train()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=True)
    total = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
    warmup = max(1, int(cfg.warmup_ratio * total))
    # The paper's schedule: linear warmup over 0.2% of training, then linear decay to 0.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    step, dev_metrics, best, curve = 0, {}, None, []
    bar = progress(total, "finetune")
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        for b in batches(train, cfg.batch_size, model.task_type, pad_id, order):
            b = {k: v.to(device) for k, v in b.items()}
            with amp:
                _, loss = model(b["input_ids"], b["attention_mask"], b["labels"], cfg.lm_coef)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if log:
                log({"train/loss": loss.item(), "train/lr": sched.get_last_lr()[0]}, step)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
            bar.update(1)
        if tune is not None:
            score = evaluate(model, tune, pad_id, device)[metric]
            curve.append(score)
            if best is None or score > best[0]:
                best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
            if log:
                log({f"tune/{metric}": score}, step)
            if epoch + 1 - best[1] >= cfg.patience:
                break
        elif dev is not None:
            dev_metrics = {f"dev/{k}": v for k, v in evaluate(model, dev, pad_id, device).items()}
            if log:
                log(dev_metrics, step)
    bar.close()
    if best is not None:
        model.load_state_dict(best[2])
        if dev is not None:
            dev_metrics = {f"dev/{k}": v for k, v in evaluate(model, dev, pad_id, device).items()}
        dev_metrics.update(
            {
                f"tune/{metric}": best[0],
                "best_epoch": best[1],
                "epochs": len(curve),
                "steps": step,
                "tune_curve": curve,
            }
        )
    return dev_metrics
