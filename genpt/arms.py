"""The protocol of the product and of every arm of the ablation (GPT-1 Table 5) on one
dataset, over every seed of `study.seeds`. Stage `finetune@NAME` runs the product's arm,
`full`, and saves its first seed's model: the model the study measured is the one that is
evaluated, gated, exported and published. Stage `study@DATASET-ARM` runs the other arms.
Both write study/DATASET/ARM.json.

The protocol, the same for every arm (docs/ablation.md, "The protocol"):
1. Held out first: `study.report_rows` rows of train, carved once with
   `study.report_seed`, are the split the report scores. No label budget draws from
   them, and nothing reads them until every run has trained. Dev is not read at all.
2. Design, on train only: each seed draws its own label budget from the rest of train
   (the label pool) and carves its own tune split from it. Every arm searches the same
   lrs, `study.lrs`, on seeds[0]'s tune split; every run stops early on its own tune
   split (`finetune.patience` epochs without a better score, at most `finetune.epochs`)
   and keeps its best epoch. The other seeds train with the chosen lr.
3. Final: each seed's model scores the held-out rows once; the per-row predictions go
   into the JSON for the report's paired bootstrap. The trivial baseline is the best
   constant on those rows. `protocol` records the phases in the order they ran.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from genpt import artifacts, artifacts_check
from genpt.errors import GenptError
from genpt.ingest.corpus import iter_documents
from genpt.ingest.leakage import near_duplicates
from genpt.ingest.loaders import load_split, subsample
from genpt.ingest.splits import carve
from genpt.params import Params, ParamsError
from model import metrics as M
from model.finetune import encode, finetune, init_lm, predict
from model.schema import is_regression, num_labels
from model.task_model import TaskModel
from model.tokenizer import special_ids
from model.zeroshot import score_choices


class Split(NamedTuple):
    pool: list  # the rows label budgets draw from
    report: list  # the rows the report scores
    dropped: dict  # why -> how many held-out rows were left out as not clean


def held_out(params: Params, name: str) -> Split:
    """Train split into the label pool and the rows the report scores (`study.report_rows`,
    carved with `study.report_seed`). A held-out row that (nearly) repeats a pool row or a
    corpus text (genpt/ingest/leakage.py) is dropped and counted, or, with
    study.report_leaks `fail`, refused before any training."""
    ds, study, v = params.dataset(name), params.study, params.validation
    rows, n = load_split(ds, "train"), study.report_rows
    budget = params.finetune_for(name).max_train_examples or 1
    if len(rows) - n < max(budget, 2):  # a params error, known once the split is read
        raise ParamsError(
            f"datasets.{name}: train has {len(rows)} rows; study.report_rows={n} leaves "
            f"{len(rows) - n} for a label budget of {budget} (lower one of them)"
        )
    pool, report = carve(rows, n, study.report_seed)  # as report_split does
    docs = (d.text for d in iter_documents(params.paths.corpus, params.corpus, strict=False))
    why = near_duplicates(report, pool, ds.task_type, docs, v.leak_ngram, v.leak_ngram_share)
    if study.report_leaks == "fail" and any(why):
        line = {id(r): i for i, r in enumerate(rows, start=1)}
        bad = [f"row {line[id(r)]}: {w}" for r, w in zip(report, why, strict=True) if w]
        raise GenptError(
            f"{ds.train}: {len(bad)} of the {n} rows held out for the report are not clean "
            f"(study.report_leaks: fail; `drop` leaves them out): " + "; ".join(bad[:5])
            + ("; ..." if len(bad) > 5 else "")
        )
    dropped = {}
    for w in filter(None, why):
        key = w.split(":")[0] if "%" in w else w  # the n-gram shares, as one reason
        dropped[key] = dropped.get(key, 0) + 1
    return Split(pool, [r for r, w in zip(report, why, strict=True) if not w], dropped)


def budget_split(pool: list, n: int | None, tune_fraction: float, seed: int):
    """(fit, tune, rest) of the pool: a label budget of n rows drawn with `seed` and carved
    into fit and tune; rest is the pool outside the budget."""
    budget = subsample(pool, n, seed)
    fit, tune = carve(budget, max(1, round(tune_fraction * len(budget))), seed)
    taken = {id(r) for r in budget}
    return fit, tune, [r for r in pool if id(r) not in taken]


CURVE_ARMS = ("full", "scratch")  # the label-efficiency curve's arms (study.curve)


class ArmRun(NamedTuple):
    result: dict  # study/DATASET/ARM.json: the lr search, runs, baseline, zero-shot scores
    model: TaskModel  # seeds[0]'s model at the chosen lr: for `full`, the product
    tokenizer: PreTrainedTokenizerFast
    history: list  # the model's training log, [(metrics, step)]


def run_arm(params: Params, name: str, arm_name: str) -> ArmRun:
    """One arm on one dataset, by the protocol above."""
    ds, study = params.dataset(name), params.study
    arm = study.arm(arm_name)
    over = {"init": arm.init} | ({} if arm.lm_coef is None else {"lm_coef": arm.lm_coef})
    over = {} if arm_name == "full" else over  # the product: the finetune section as it is
    cfg = params.finetune_for(name).model_copy(update=over)
    pool, report_rows, dropped = held_out(params, name)
    left_out = f", {sum(dropped.values())} left out as not clean {dropped}" if dropped else ""
    protocol = [f"held out: {len(report_rows)} train rows (seed {study.report_seed}{left_out}), "
                "sealed"]  # fmt: skip

    pretrained, tokenizer = artifacts.pretrain_hf(params), artifacts.tokenizer(params)
    zero_shot = arm_name == "full" and study.zero_shot and ds.task_type == "multiple_choice"
    artifacts_check.tokenizer(tokenizer)
    artifacts_check.lm_init("pretrained" if zero_shot else cfg.init, pretrained, tokenizer)
    tok, lm = init_lm(cfg.init, pretrained, tokenizer, params.model)
    max_len = cfg.input_len(lm.config.n_positions)
    n_labels, pad = num_labels(ds.task_type, ds.labels), special_ids(tok)["pad"]
    metric, seeds = ds.metric, arm.seeds or study.seeds

    def splits(seed: int, budget: int | None = cfg.max_train_examples) -> tuple[list, list]:
        """(fit, tune) examples of the seed's label budget"""
        fit, tune, _ = budget_split(pool, budget, study.tune_fraction, seed)
        return tuple(encode(r, ds.task_type, tok, max_len, ds.labels) for r in (fit, tune))

    def train(seed: int, lr: float, data: tuple) -> tuple[dict, TaskModel]:
        t0, history = time.perf_counter(), []
        torch.manual_seed(seed)  # initial weights (scratch) and head
        _, lm = init_lm(cfg.init, pretrained, tokenizer, params.model)
        model = TaskModel(lm, ds.task_type, n_labels, cfg.head_dropout)
        run_cfg = cfg.model_copy(update={"lr": lr})
        r = finetune(model, data[0], None, run_cfg, pad, seed, tune=data[1], metric=metric,
                     log=lambda m, step: history.append((m, step)))  # fmt: skip
        tuned = r[f"tune/{metric}"]
        print(f"{name} {arm_name}: seed {seed} lr {lr:g} -> tune {metric} {tuned:.4f} "
              f"(best epoch {r['best_epoch']} of {r['epochs']}, {r['steps']} steps)")  # fmt: skip
        run = {"seed": seed, "lr": lr, "tune": tuned, "fit": len(data[0]),
               **{k: r[k] for k in ("best_epoch", "epochs", "steps", "tune_curve")},
               "capped": r["epochs"] == cfg.epochs, "history": history,
               "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        return run, model

    first = splits(seeds[0])
    grid = [train(seeds[0], lr, first) for lr in study.lrs]
    best_run, best_model = max(grid, key=lambda rm: rm[0]["tune"])  # the first best on ties
    lr = best_run["lr"]
    protocol.append(f"design: {len(grid)} lrs on seed {seeds[0]}'s tune split -> lr {lr:g}")
    search = [{k: r[k] for k in ("lr", "tune", "best_epoch", "epochs", "steps", "tune_curve")}
              for r, _ in grid]  # fmt: skip
    del grid  # the other lrs' models
    runs = [(best_run, best_model)] + [train(s, lr, splits(s)) for s in seeds[1:]]
    protocol.append(f"design: seeds {seeds[1:]} at the chosen lr" if seeds[1:] else "")
    curve = []  # the label-efficiency curve: other budgets, every seed, the chosen lr
    for budget in study.curve if arm_name in CURVE_ARMS else []:
        curve += [(train(s, lr, splits(s, budget)), budget) for s in seeds]
    if curve:
        protocol.append(f"design: budgets {study.curve} x seeds {seeds} at the chosen lr")

    # Final phase: the held-out rows are encoded and scored once, by every seed's model.
    report = encode(report_rows, ds.task_type, tok, max_len, ds.labels)
    gold = np.array([e.label for e in report])
    regression = is_regression(ds.task_type, n_labels)
    for run, model in runs:
        logits = predict(model, report, pad)
        run["report"] = M.compute(logits, gold, regression)
        run["pred"] = (logits.reshape(-1) if regression else logits.argmax(-1)).tolist()
        print(f"{name} {arm_name}: seed {run['seed']} -> held-out {metric} "
              f"{run['report'][metric]:.4f}")  # fmt: skip
    for ((run, model), budget) in curve:
        run.update(budget=budget, report=M.compute(predict(model, report, pad), gold, regression))
    scored = len(runs) + len(curve)
    protocol.append(f"final: {scored} models scored the {len(report)} held-out rows once")
    out = {
        "dataset": name,
        "arm": arm_name,
        "task_type": ds.task_type,
        "metric": metric,
        "init": cfg.init,
        "lm_coef": cfg.lm_coef,
        "lr": lr,
        "max_len": max_len,
        "grid": {"lrs": study.lrs, "max_epochs": cfg.epochs, "patience": cfg.patience},
        "search": search,
        "protocol": [p for p in protocol if p],
        "examples": {
            "fit": len(first[0]),
            "tune": len(first[1]),
            "report": len(report),
            "pool": len(pool),
            "dropped": dropped,
        },  # fmt: skip
        "baseline": M.trivial_baseline(gold, regression)[metric],
        "gold": gold.tolist(),
        "runs": [{k: v for k, v in r.items() if k != "history"} for r, _ in runs],
        "curve": [{k: v for k, v in r.items() if k not in ("history", "tune_curve")}
                  for (r, _), _ in curve],  # fmt: skip
    }
    if zero_shot:
        ptok, plm = init_lm("pretrained", pretrained, tokenizer, params.model)
        scores = score_choices(plm, ptok, report_rows)
        out["zero_shot"] = M.classification_metrics(scores.argmax(-1), gold)
    return ArmRun(out, runs[0][1], tok, runs[0][0]["history"])


def study_arm(params: Params, name: str, arm_name: str) -> dict:
    """study/DATASET/ARM.json's content (run_arm without the model)."""
    return run_arm(params, name, arm_name).result
