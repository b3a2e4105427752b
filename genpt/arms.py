"""One arm of the ablation (GPT-1 Table 5) on one dataset, over every seed of
`study.seeds` (stage `study@DATASET-ARM` writes it to study/DATASET/ARM.json).

Every arm trains on the same part of train and keeps its best epoch on the same tune
split, carved from train with a fixed seed; dev (the reported split) is never used to
choose anything. An arm with `lrs` first searches them on the tune split (seed
seeds[0]), and the search is recorded. The `full` arm of a multiple-choice dataset
also scores the pre-trained LM zero-shot.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from genpt import artifacts, artifacts_check
from genpt.ingest.loaders import load_split, subsample
from genpt.params import ArmConfig, Params
from model import metrics as M
from model.finetune import encode, finetune, init_lm
from model.schema import is_regression, num_labels
from model.task_model import TaskModel
from model.tokenizer import special_ids
from model.zeroshot import score_choices


def carve(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """(fit, tune): a fixed random `fraction` of rows held out for tuning."""
    order = np.random.default_rng(seed).permutation(len(rows))
    n_tune = max(1, round(fraction * len(rows)))
    return [rows[i] for i in sorted(order[n_tune:])], [rows[i] for i in sorted(order[:n_tune])]


def budget_split(params: Params, name: str, n: int | None) -> tuple[list, list, list]:
    """(fit, tune, rest) of the dataset's train rows: a label budget of n rows drawn with
    the run's seed and carved into fit and tune; rest is train outside the budget."""
    rows = load_split(params.dataset(name), "train")
    budget = subsample(rows, n, params.seed)
    fit, tune = carve(budget, params.study.tune_fraction, params.seed)
    taken = {id(r) for r in budget}
    return fit, tune, [r for r in rows if id(r) not in taken]


def arm_finetune_config(params: Params, name: str, arm: ArmConfig):
    """The dataset's finetune section with the arm's init, lambda and epochs."""
    base = params.finetune_for(name)
    over = {"init": arm.init}
    if arm.lm_coef is not None:
        over["lm_coef"] = arm.lm_coef
    if arm.epochs is not None:
        over["epochs"] = arm.epochs
    return base.model_copy(update=over)


def study_arm(params: Params, name: str, arm_name: str) -> dict:
    """The arm's runs, lr search, baseline and zero-shot scores (study/DATASET/ARM.json)."""
    ds, study = params.dataset(name), params.study
    if arm_name not in study.arms:
        raise ValueError(f"unknown arm {arm_name!r}; study.arms: {sorted(study.arms)}")
    arm = study.arms[arm_name]
    cfg = arm_finetune_config(params, name, arm)
    fit_rows, tune_rows, _ = budget_split(params, name, cfg.max_train_examples)
    dev_rows = load_split(ds, "dev")

    pretrained, tokenizer = artifacts.pretrain_hf(params), artifacts.tokenizer(params)
    zero_shot = arm_name == "full" and study.zero_shot and ds.task_type == "multiple_choice"
    artifacts_check.tokenizer(tokenizer)
    artifacts_check.lm_init("pretrained" if zero_shot else cfg.init, pretrained, tokenizer)
    tok, lm = init_lm(cfg.init, pretrained, tokenizer, params.model)  # as the runs start
    max_len = cfg.input_len(lm.config.n_positions)
    fit, tune, dev = (
        encode(rows, ds.task_type, tok, max_len, ds.labels)
        for rows in (fit_rows, tune_rows, dev_rows)
    )
    n_labels = num_labels(ds.task_type, ds.labels)
    pad, regression = special_ids(tok)["pad"], is_regression(ds.task_type, n_labels)
    metric = ds.metric

    def train(seed: int, lr: float) -> dict:
        t0 = time.perf_counter()
        torch.manual_seed(seed)  # initial weights (scratch) and head
        _, lm = init_lm(cfg.init, pretrained, tokenizer, params.model)
        model = TaskModel(lm, ds.task_type, n_labels, cfg.head_dropout)
        result = finetune(
            model, fit, dev, cfg.model_copy(update={"lr": lr}), pad, seed, tune=tune, metric=metric
        )
        dev_metrics = {k.removeprefix("dev/"): v for k, v in result.items() if k.startswith("dev/")}
        run = {
            "seed": seed,
            "lr": lr,
            "dev": dev_metrics,
            "tune": result[f"tune/{metric}"],
            "best_epoch": result["best_epoch"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(
            f"study {name} {arm_name}: seed {seed} lr {lr:g} -> {metric} {dev_metrics[metric]:.4f}"
        )
        return run

    seeds, search = arm.seeds or study.seeds, None
    lr, first = cfg.lr, None
    if arm.lrs:  # lr search on the tune split with the first seed
        tried = [train(seeds[0], lr_) for lr_ in arm.lrs]
        first = max(tried, key=lambda r: r["tune"])  # first best on ties
        lr = first["lr"]
        search = [{"lr": r["lr"], "tune": r["tune"], "best_epoch": r["best_epoch"]} for r in tried]
    runs = [first if first and s == seeds[0] else train(s, lr) for s in seeds]

    def gold(examples) -> np.ndarray:
        return np.array([e.label for e in examples])

    out = {
        "dataset": name,
        "arm": arm_name,
        "task_type": ds.task_type,
        "metric": metric,
        "init": cfg.init,
        "lm_coef": cfg.lm_coef,
        "lr": lr,
        "max_epochs": cfg.epochs,
        "tuning": (f"lr searched on the tune split (seed {seeds[0]})" if search else "lr fixed")
        + "; epochs: the best on the tune split (early stopping); dev never used to choose",
        "search": search,
        "examples": {"fit": len(fit), "tune": len(tune), "dev": len(dev)},
        "baseline": M.trivial_baseline(gold(fit), gold(dev), regression)[metric],
        "runs": runs,
    }
    if zero_shot:
        ptok, plm = init_lm("pretrained", pretrained, tokenizer, params.model)
        scores = score_choices(plm, ptok, dev_rows)
        out["zero_shot"] = M.classification_metrics(scores.argmax(-1), gold(dev))
    return out
