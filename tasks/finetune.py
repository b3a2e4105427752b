"""Stage `finetune`: one labelled dataset, L3 = L2 + lambda * L1; writes finetune/NAME/."""

from __future__ import annotations

import numpy as np
import torch

from model.finetune import encode, finetune
from model.gpt import build_lm
from model.metrics import majority_baseline
from model.task_model import TaskModel
from model.tokenizer import load_tokenizer, special_ids
from tasks.io import atomic_dir, live, log_to, write_json
from tasks.loaders import load_split
from tasks.params import Params


def load_lm(params: Params, init: str):
    """The pre-trained LM, or (init='scratch') a fresh one of the same shape."""
    if init == "pretrained":
        from transformers import AutoModelForCausalLM

        src = params.artifacts("pretrain", "hf")
        if not (src / "config.json").exists():
            raise FileNotFoundError(
                f"{src}: no pre-trained model (run `genpt pretrain`, "
                "or fine-tune with --init scratch)"
            )
        return load_tokenizer(src), AutoModelForCausalLM.from_pretrained(str(src))
    tok = load_tokenizer(params.artifacts("tokenizer"))
    return tok, build_lm(params.model, len(tok), special_ids(tok))


def run(params: Params, name: str) -> dict:
    ds, cfg = params.dataset(name), params.finetune_for(name)
    train_rows, dev_rows = load_split(ds, "train"), load_split(ds, "dev")  # validate first
    if cfg.max_train_examples:
        train_rows = train_rows[: cfg.max_train_examples]
    torch.manual_seed(params.seed)
    tok, lm = load_lm(params, cfg.init)
    max_len = cfg.max_len or lm.config.n_positions
    train = encode(train_rows, ds.task_type, tok, max_len, ds.labels)
    dev = encode(dev_rows, ds.task_type, tok, max_len, ds.labels)
    num_labels = len(ds.labels) if ds.labels else 1
    model = TaskModel(lm, ds.task_type, num_labels, cfg.head_dropout)
    pad = special_ids(tok)["pad"]
    lv = live(params.artifacts("live", "finetune", name))
    metrics = finetune(model, train, dev, cfg, pad, params.seed, log=log_to(lv))
    lv.end()
    if not model.regression:
        metrics["dev/majority_baseline"] = majority_baseline(
            np.array([e.label for e in train]), np.array([e.label for e in dev])
        )
    with atomic_dir(params.artifacts("finetune", name)) as d:
        model.cpu().save(
            d,
            extra={
                "labels": ds.labels,
                "dataset": name,
                "max_len": max_len,
                "lm_coef": cfg.lm_coef,
                "init": cfg.init,
            },
        )
        tok.save_pretrained(str(d))
        write_json(d / "metrics.json", metrics)
    return metrics
