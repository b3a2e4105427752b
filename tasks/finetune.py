"""Stage `finetune`: one labelled dataset, L3 = L2 + lambda * L1; writes finetune/NAME/."""

from __future__ import annotations

import numpy as np
import torch

from genpt import artifacts
from genpt.artifacts_check import lm_init
from genpt.ingest.loaders import load_split, subsample
from genpt.io import atomic_dir, live, log_to, write_json
from genpt.params import Params
from model.finetune import encode, finetune, init_lm
from model.metrics import constant_prediction, majority_baseline
from model.schema import num_labels
from model.task_model import TaskModel
from model.tokenizer import special_ids


def run(params: Params, name: str) -> dict:
    ds, cfg = params.dataset(name), params.finetune_for(name)
    train_rows, dev_rows = load_split(ds, "train"), load_split(ds, "dev")  # validate first
    train_rows = subsample(train_rows, cfg.max_train_examples, params.seed)
    dev_rows = subsample(dev_rows, cfg.max_dev_examples, params.seed)  # as evaluate scores
    pretrained, tokenizer = artifacts.pretrain_hf(params), artifacts.tokenizer(params)
    lm_init(cfg.init, pretrained, tokenizer)
    torch.manual_seed(params.seed)
    tok, lm = init_lm(cfg.init, pretrained, tokenizer, params.model)
    max_len = cfg.input_len(lm.config.n_positions)
    train = encode(train_rows, ds.task_type, tok, max_len, ds.labels)
    dev = encode(dev_rows, ds.task_type, tok, max_len, ds.labels)
    model = TaskModel(lm, ds.task_type, num_labels(ds.task_type, ds.labels), cfg.head_dropout)
    pad = special_ids(tok)["pad"]
    lv = live(artifacts.live_finetune(params, name))
    metrics = finetune(model, train, dev, cfg, pad, params.seed, log=log_to(lv))
    lv.end()
    train_gold = np.array([e.label for e in train])
    if not model.regression:
        metrics["dev/majority_baseline"] = majority_baseline(
            train_gold, np.array([e.label for e in dev])
        )
    with atomic_dir(artifacts.finetune(params, name)) as d:
        model.cpu().save(
            d,
            extra={
                "labels": ds.labels,
                "dataset": name,
                "max_len": max_len,
                "lm_coef": cfg.lm_coef,
                "init": cfg.init,
                # the trivial baseline of the gate (tasks/evaluate.py writes it per dev row)
                "baseline": constant_prediction(train_gold, model.regression),
            },
        )
        tok.save_pretrained(str(d))
        write_json(d / artifacts.finetune_metrics.name, metrics)
    return metrics
