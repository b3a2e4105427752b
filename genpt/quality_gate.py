"""The quality gate's rules before publish ("blessing" a model, as TFX's Evaluator does).

Stage `gate` (tasks/gate.py) runs it and fails the pipeline there, before `publish`
starts (and is never retried as the I/O-bound publish is); `genpt publish` runs it again,
so a model that fails it is never published, however publish is called.

Thresholds are `gate:` in params.yaml, in points (metric x 100). A model is blessed when
- on every dataset, the product (the model being published) beats its trivial baseline
  (the best constant on the dev rows scored: their most common label, or a constant score)
  by more than `min_over_baseline`, read on the lower bound of the 95% paired-bootstrap
  interval of (product - baseline) over the dev rows (eval/NAME/predictions.json, stage
  `evaluate`; model/bootstrap.py, fixed seed): a fixed margin is passed by chance by a
  model that learned nothing (a random STS-B predictor reaches Pearson 0.01 about a third
  of the time on 1,498 pairs), an interval's lower bound is not;
- the lower bound of the 95% interval of the average gain of pre-training (full -
  scratch, the ablation report) exceeds `min_pretraining_gain`; a study without a
  `scratch` arm, or with 1 seed per arm (no interval), fails this check unless it is
  set to null;
- no dataset falls more than `max_drop_vs_latest` below the published `latest` version.

The verdict lists every check with its value, threshold and outcome, pass or fail.
"""

from __future__ import annotations

import json

import numpy as np

from genpt import artifacts, bundle
from genpt.errors import GenptError
from genpt.params import Params
from model import bootstrap
from model.ablation import CLAIMS

BOOTSTRAP_SEED = 0  # the gate's resamples: the same verdict for the same predictions


class GateFailed(GenptError):
    """The model did not pass the quality gate; nothing was published. `verdict`: every
    check with its value, threshold and outcome."""

    def __init__(self, message: str, verdict: dict) -> None:
        super().__init__(message)
        self.verdict = verdict


def product_metrics(params: Params, required: bool = True) -> dict[str, float]:
    """{dataset: points} of the fine-tuned models on their dev splits (evaluate stage);
    a missing one is an error when `required`, else left out."""
    out = {}
    for name, ds in params.datasets.items():
        path = artifacts.eval_metrics(params, name)
        if path.exists():
            out[name] = 100 * json.loads(path.read_text())[ds.metric]
        elif required:
            raise FileNotFoundError(f"{path}: missing (run `genpt evaluate {name}`)")
    return out


def _check(check: str, dataset: str | None, what: str, value: float, rule: str, threshold: float):
    passed = {">": value > threshold, ">=": value >= threshold, "<=": value <= threshold}[rule]
    return {"check": check, "dataset": dataset, "what": what, "value": round(value, 3),
            "rule": rule, "threshold": threshold, "passed": bool(passed)}  # fmt: skip


def _interval(g: dict) -> dict:
    return {k: None if g[k] is None else round(g[k], 3) for k in ("mean", "lo", "hi")}


def _span(g: dict) -> str:
    return f"{g['mean']:+.1f} [{g['lo']:+.1f}, {g['hi']:+.1f}]"


def over_baseline(params: Params, name: str) -> dict:
    """The check of one dataset: the lower bound of the 95% paired-bootstrap interval of
    (product - trivial baseline) on its dev rows, above gate.min_over_baseline."""
    path, metric = artifacts.eval_predictions(params, name), params.datasets[name].metric
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run `genpt evaluate {name}`)")
    rows = json.loads(path.read_text())
    gold, pred = np.asarray(rows["gold"]), np.asarray(rows["pred"])
    base = np.full(len(gold), rows["baseline"])
    g = bootstrap.gain(metric, gold, [pred], [base], fixed=True, seed=BOOTSTRAP_SEED)
    a, b = (100 * bootstrap.score(metric, p, gold) for p in (pred, base))
    what = (f"{metric} {a:.1f} - trivial baseline {b:.1f} = {_span(g)} on {len(gold)} dev "
            "rows: the lower bound of its 95% interval")  # fmt: skip
    check = _check("over_baseline", name, what, g["lo"], ">", params.gate.min_over_baseline)
    return {**check, **_interval(g)}


def pretraining_gain(report: dict, threshold: float, claim: str = "datasets") -> dict:
    """The lower bound of the 95% interval of the average gain of pre-training that the
    primary claim reads (gate.claim), above `threshold`; fails, with value None, when the
    report has no such interval."""
    what = f"average gain of pre-training (full - scratch, {claim})"
    g = report["average"].get(CLAIMS[claim])
    if g is None:  # no `scratch` arm: the check cannot pass, and must not vanish
        what = f"no `scratch` arm in study.arms, so no {what} (null: no such check)"
    elif g.get("lo") is None:  # 1 seed per arm: the seeds' share of the noise is unknown
        what += (f" {g['mean']:+.1f} has no interval: it needs 2+ study.seeds per arm "
                 "and, with datasets as the unit, 2+ datasets (null: no such check)")  # fmt: skip
    else:
        what += f" {_span(g)}: the lower bound of its 95% interval"
        return {**_check("pretraining_gain", None, what, g["lo"], ">", threshold), **_interval(g)}
    return {**_check("pretraining_gain", None, what, 0, ">", threshold),
            "value": None, "passed": False}  # fmt: skip


def verdict(params: Params, report: dict | None, latest: dict[str, float] | None) -> dict:
    """Every check with its figures; `passed` when all pass. `report`: report/metrics.json;
    `latest`: the published latest version's product metrics (None: nothing published)."""
    cfg, product = params.gate, product_metrics(params)
    checks = [] if report else [_check("report", None, "ablation report", 0, ">=", 1)]
    for name, value in product.items():
        checks.append(over_baseline(params, name))
        if latest and name in latest:
            metric = params.datasets[name].metric
            what = f"{metric}: published latest {latest[name]:.1f} - this {value:.1f}"
            checks.append(_check("vs_latest", name, what, latest[name] - value, "<=",
                                 cfg.max_drop_vs_latest))  # fmt: skip
    if report and cfg.min_pretraining_gain is not None:
        checks.append(pretraining_gain(report, cfg.min_pretraining_gain, cfg.claim))
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "metrics": product}


def describe(failed: list[dict]) -> str:
    keys = {
        "over_baseline": "gate.min_over_baseline",
        "vs_latest": "gate.max_drop_vs_latest",
        "pretraining_gain": "gate.min_pretraining_gain",
        "report": "run `genpt report`",
    }
    return "\n  ".join(
        f"{c['dataset'] or 'all datasets'}: {c['what']}"
        + ("" if c["value"] is None else f" = {c['value']:.2f} points")
        + f", needs {c['rule']} {c['threshold']} ({keys[c['check']]})"
        for c in failed
    )


def latest_metrics(store, name: str) -> dict[str, float] | None:
    """The product metrics the gate recorded for the published `latest` (None: none)."""
    base = f"models/{name}"
    if store.get_bytes(f"{base}/{bundle.LATEST}") is None:
        return None
    version = bundle.resolve(store, base, None)
    raw = store.get_bytes(f"{bundle.registry.prefix(name, version)}/{bundle.MANIFEST}")
    return (json.loads(raw).get("gate") or {}).get("metrics") if raw else None


def enforce(params: Params, store, force: bool = False) -> dict:
    """The verdict (for the manifest) against `store`'s latest; raises GateFailed unless it
    passes or `force`."""
    if not params.gate.enabled:
        metrics = product_metrics(params, required=False)
        return {"passed": None, "enabled": False, "checks": [], "metrics": metrics}
    path = artifacts.report_metrics(params)
    report = json.loads(path.read_text()) if path.exists() else None
    v = verdict(params, report, latest_metrics(store, params.publish.name))
    failed = [c for c in v["checks"] if not c["passed"]]
    v = {**v, "enabled": True, "forced": bool(failed) and force}
    if failed and not force:
        raise GateFailed(
            f"quality gate: {len(failed)} check(s) failed; not published "
            f"(`genpt publish --force` overrides, recorded in the manifest):\n  {describe(failed)}",
            v,
        )
    return v
