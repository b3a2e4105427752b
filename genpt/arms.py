"""One arm of the ablation (GPT-1 Table 5) on one dataset, over every seed of
`study.seeds` (stage `study@DATASET-ARM` writes it to study/DATASET/ARM.json).

The protocol, the same for every arm (docs/ablation.md, "The protocol"):
1. Held out first: `study.report_rows` rows of train, carved once with
   `study.report_seed`, are the split the report scores. No label budget draws from
   them, and nothing reads them until every run has trained. Dev is not read at all.
2. Design, on train only: each seed draws its own label budget from the rest of train
   and carves its own tune split from it. Every arm searches the same grid,
   `study.lrs` x `study.epochs`, on seeds[0]'s tune split (each run keeps its best epoch
   there); the other seeds train with the chosen lr and epochs.
3. Final: each seed's model scores the held-out rows once; the per-row predictions go
   into the JSON for the report's paired bootstrap. `protocol` records the phases in
   the order they ran.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from genpt import artifacts, artifacts_check
from genpt.ingest.loaders import load_split, subsample
from genpt.params import Params, ParamsError
from model import metrics as M
from model.finetune import encode, finetune, init_lm, predict
from model.schema import is_regression, num_labels
from model.task_model import TaskModel
from model.tokenizer import special_ids
from model.zeroshot import score_choices


def carve(rows: list, n: int, seed: int) -> tuple[list, list]:
    """(kept, carved): n rows drawn at random with `seed`, both parts in file order."""
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in sorted(order[n:])], [rows[i] for i in sorted(order[:n])]


def held_out(params: Params, name: str) -> tuple[list, list]:
    """(pool, report): train split into the rows label budgets draw from and the rows the
    report scores (`study.report_rows`, carved with `study.report_seed`)."""
    rows, n = load_split(params.dataset(name), "train"), params.study.report_rows
    budget = params.finetune_for(name).max_train_examples or 1
    if len(rows) - n < max(budget, 2):  # a params error, known once the split is read
        raise ParamsError(
            f"datasets.{name}: train has {len(rows)} rows; study.report_rows={n} leaves "
            f"{len(rows) - n} for a label budget of {budget} (lower one of them)"
        )
    return carve(rows, n, params.study.report_seed)


def budget_split(pool: list, n: int | None, tune_fraction: float, seed: int):
    """(fit, tune, rest) of the pool: a label budget of n rows drawn with `seed` and carved
    into fit and tune; rest is the pool outside the budget."""
    budget = subsample(pool, n, seed)
    fit, tune = carve(budget, max(1, round(tune_fraction * len(budget))), seed)
    taken = {id(r) for r in budget}
    return fit, tune, [r for r in pool if id(r) not in taken]


def study_arm(params: Params, name: str, arm_name: str) -> dict:
    """The arm's grid search, runs, baseline and zero-shot scores (study/DATASET/ARM.json)."""
    ds, study = params.dataset(name), params.study
    if arm_name not in study.arms:
        raise ParamsError(f"unknown arm {arm_name!r}; study.arms: {sorted(study.arms)}")
    arm = study.arms[arm_name]
    over = {"init": arm.init} | ({} if arm.lm_coef is None else {"lm_coef": arm.lm_coef})
    cfg = params.finetune_for(name).model_copy(update=over)
    pool, report_rows = held_out(params, name)
    protocol = [f"held out: {len(report_rows)} train rows (seed {study.report_seed}), sealed"]

    pretrained, tokenizer = artifacts.pretrain_hf(params), artifacts.tokenizer(params)
    zero_shot = arm_name == "full" and study.zero_shot and ds.task_type == "multiple_choice"
    artifacts_check.tokenizer(tokenizer)
    artifacts_check.lm_init("pretrained" if zero_shot else cfg.init, pretrained, tokenizer)
    tok, lm = init_lm(cfg.init, pretrained, tokenizer, params.model)
    max_len = cfg.input_len(lm.config.n_positions)
    n_labels, pad = num_labels(ds.task_type, ds.labels), special_ids(tok)["pad"]
    metric, seeds = ds.metric, arm.seeds or study.seeds

    def splits(seed: int) -> tuple[list, list]:  # (fit, tune) examples of the seed's budget
        fit, tune, _ = budget_split(pool, cfg.max_train_examples, study.tune_fraction, seed)
        return tuple(encode(r, ds.task_type, tok, max_len, ds.labels) for r in (fit, tune))

    def train(seed: int, lr: float, epochs: int, data: tuple) -> tuple[dict, TaskModel]:
        t0 = time.perf_counter()
        torch.manual_seed(seed)  # initial weights (scratch) and head
        _, lm = init_lm(cfg.init, pretrained, tokenizer, params.model)
        model = TaskModel(lm, ds.task_type, n_labels, cfg.head_dropout)
        run_cfg = cfg.model_copy(update={"lr": lr, "epochs": epochs})
        r = finetune(model, data[0], None, run_cfg, pad, seed, tune=data[1], metric=metric)
        tuned = r[f"tune/{metric}"]
        print(f"study {name} {arm_name}: seed {seed} lr {lr:g} epochs {epochs} -> "
              f"tune {metric} {tuned:.4f} (best epoch {r['best_epoch']})")  # fmt: skip
        run = {"seed": seed, "lr": lr, "epochs": epochs, "tune": tuned,
               "best_epoch": r["best_epoch"], "tune_curve": r["tune_curve"],
               "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        return run, model

    first = splits(seeds[0])
    grid = [train(seeds[0], lr, e, first) for lr, e in itertools.product(study.lrs, study.epochs)]
    best_run, best_model = max(grid, key=lambda rm: rm[0]["tune"])  # the first best on ties
    lr, epochs = best_run["lr"], best_run["epochs"]
    protocol.append(f"design: grid {len(grid)} runs on seed {seeds[0]}'s tune split -> "
                    f"lr {lr:g}, epochs {epochs}")  # fmt: skip
    search = [{k: r[k] for k in ("lr", "epochs", "tune", "best_epoch", "tune_curve")}
              for r, _ in grid]  # fmt: skip
    del grid  # the other grid points' models
    runs = [(best_run, best_model)] + [train(s, lr, epochs, splits(s)) for s in seeds[1:]]
    protocol.append(f"design: seeds {seeds[1:]} at the chosen lr and epochs" if seeds[1:] else "")

    # Final phase: the held-out rows are encoded and scored once, by every seed's model.
    report = encode(report_rows, ds.task_type, tok, max_len, ds.labels)
    gold = np.array([e.label for e in report])
    regression = is_regression(ds.task_type, n_labels)
    for run, model in runs:
        logits = predict(model, report, pad)
        run["report"] = M.compute(logits, gold, regression)
        run["pred"] = (logits.reshape(-1) if regression else logits.argmax(-1)).tolist()
        print(f"study {name} {arm_name}: seed {run['seed']} -> held-out {metric} "
              f"{run['report'][metric]:.4f}")  # fmt: skip
    protocol.append(f"final: {len(runs)} models scored the {len(report)} held-out rows once")
    fit_gold = np.array([e.label for e in first[0]])
    out = {
        "dataset": name,
        "arm": arm_name,
        "task_type": ds.task_type,
        "metric": metric,
        "init": cfg.init,
        "lm_coef": cfg.lm_coef,
        "lr": lr,
        "epochs": epochs,
        "grid": {"lrs": study.lrs, "epochs": study.epochs},
        "search": search,
        "protocol": [p for p in protocol if p],
        "examples": {
            "fit": len(first[0]),
            "tune": len(first[1]),
            "report": len(report),
            "pool": len(pool),
        },  # fmt: skip
        "baseline": M.trivial_baseline(fit_gold, gold, regression)[metric],
        "gold": gold.tolist(),
        "runs": [r for r, _ in runs],
    }
    if zero_shot:
        ptok, plm = init_lm("pretrained", pretrained, tokenizer, params.model)
        scores = score_choices(plm, ptok, report_rows)
        out["zero_shot"] = M.classification_metrics(scores.argmax(-1), gold)
    return out
