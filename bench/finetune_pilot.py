"""Pilot a fine-tuning protocol without touching the reported dev split.

    PYTHONPATH=. python bench/finetune_pilot.py -p recipes/cpu-hour.yaml stsb --budget 200 \
        --try pretrained:5e-4:3 --try scratch:2.5e-4:3 --seeds 1 2

Takes the dataset's label budget from train exactly as `genpt study` does (the same pool,
subsample and fit/tune carve), trains each `--try INIT:LR:EPOCHS[:LAMBDA]` with early
stopping on the tune split, and scores it on a *pilot* split: rows of the pool outside the
budget. Neither dev nor the report's held-out rows are read, so choices made here (budget,
epochs, lr) do not leak into the report. Needs
`artifacts/pretrain/hf` and `artifacts/tokenizer` from the same params. Prints one JSON
line per run.

`--reported-rows R` with params whose `study.report_rows` is R + P: the pilot split is the
P held-out rows beyond the R that the report reads. Pre-train with those params, and the
pilot rows stay out of the in-domain text (stage unlabeled) as the report's rows do: the
way to compare corpus mixes without scoring rows the LM has read.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from genpt import artifacts, offline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("-p", "--params", default="params.yaml")
    ap.add_argument("--budget", type=int, required=True, help="labels taken from train")
    ap.add_argument("--try", dest="tries", action="append", required=True,
                    help="INIT:LR:EPOCHS[:LAMBDA], e.g. pretrained:5e-4:3")  # fmt: skip
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pilot-rows", type=int, default=800)
    ap.add_argument("--pilot-seed", type=int, default=99, help="which rows form the pilot split")
    ap.add_argument("--reported-rows", type=int, default=None,
                    help="R: pilot on the held-out rows beyond the report's first R")  # fmt: skip
    args = ap.parse_args()
    offline.apply()  # before transformers is imported
    from genpt.arms import budget_split, held_out
    from genpt.ingest.splits import report_split
    from genpt.params import load_params
    from model.finetune import encode, finetune, init_lm
    from model.schema import num_labels
    from model.task_model import TaskModel
    from model.tokenizer import load_tokenizer, special_ids

    params = load_params(args.params)
    ds = params.dataset(args.dataset)
    split = held_out(params, args.dataset)  # never the report's held-out rows
    fit_rows, tune_rows, rest = budget_split(
        split.pool, args.budget, params.study.tune_fraction, params.seed
    )
    if args.reported_rows is not None:  # the held-out rows beyond the report's
        key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
        study = params.study.model_copy(update={"report_rows": args.reported_rows})
        _, reported = report_split(params.model_copy(update={"study": study}), args.dataset)
        seen = {key(r) for r in reported}
        rest = [r for r in split.report if key(r) not in seen]
    if len(rest) < args.pilot_rows:
        raise SystemExit(f"{args.dataset}: only {len(rest)} pilot rows")
    pick = np.random.default_rng(args.pilot_seed).permutation(len(rest))[: args.pilot_rows]

    pretrained, tok_dir = artifacts.pretrain_hf(params), artifacts.tokenizer(params)
    tok = load_tokenizer(tok_dir)
    max_len = params.model.shape().n_ctx
    fit, tune, pilot = (
        encode(r, ds.task_type, tok, max_len, ds.labels)
        for r in (fit_rows, tune_rows, [rest[i] for i in sorted(pick)])
    )
    n_labels, pad = num_labels(ds.task_type, ds.labels), special_ids(tok)["pad"]
    base = params.finetune_for(args.dataset)
    for spec in args.tries:
        init, lr, epochs, *lam = spec.split(":")
        cfg = base.model_copy(update={
            "init": init, "lr": float(lr), "epochs": int(epochs),
            "lm_coef": float(lam[0]) if lam else base.lm_coef,
        })  # fmt: skip
        for seed in args.seeds:
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            _, lm = init_lm(init, pretrained, tok_dir, params.model)
            model = TaskModel(lm, ds.task_type, n_labels, cfg.head_dropout)
            r = finetune(model, fit, pilot, cfg, pad, seed, tune=tune, metric=ds.metric)
            print(json.dumps({
                "dataset": args.dataset, "budget": args.budget, "init": init, "lr": cfg.lr,
                "epochs": cfg.epochs, "lm_coef": cfg.lm_coef, "seed": seed,
                "pilot": round(r[f"dev/{ds.metric}"], 4), "tune": round(r[f"tune/{ds.metric}"], 4),
                "best_epoch": r["best_epoch"], "seconds": round(time.perf_counter() - t0, 1),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
