"""The quality gate's rules before publish ("blessing" a model, as TFX's Evaluator does).

Stage `gate` (tasks/gate.py) runs it and fails the pipeline there, before `publish`
starts (and is never retried as the I/O-bound publish is); `genpt publish` runs it again,
so a model that fails it is never published, however publish is called.

Thresholds are `gate:` in params.yaml, in points (metric x 100). A model is blessed when
- every dataset's product metric (the model being published, evaluate stage) beats the
  trivial baseline by `min_over_baseline`;
- pre-training beats scratch by `min_pretraining_gain` on average (the ablation report;
  a study without a `scratch` arm fails this check unless it is set to null);
- no dataset falls more than `max_drop_vs_latest` below the published `latest` version.
"""

from __future__ import annotations

import json

from genpt import artifacts, bundle
from genpt.errors import GenptError
from genpt.params import Params


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
    passed = value >= threshold if rule == ">=" else value <= threshold
    return {"check": check, "dataset": dataset, "what": what, "value": round(value, 3),
            "rule": rule, "threshold": threshold, "passed": bool(passed)}  # fmt: skip


def verdict(params: Params, report: dict | None, latest: dict[str, float] | None) -> dict:
    """Every check with its figures; `passed` when all pass. `report`: report/metrics.json;
    `latest`: the published latest version's product metrics (None: nothing published)."""
    cfg, product = params.gate, product_metrics(params)
    checks = [] if report else [_check("report", None, "ablation report", 0, ">=", 1)]
    for name, value in product.items():
        metric = params.datasets[name].metric
        if report and name in report["datasets"]:
            base = report["datasets"][name]["baseline"]
            what = f"{metric} {value:.1f} - trivial baseline {base:.1f}"
            checks.append(_check("over_baseline", name, what, value - base, ">=",
                                 cfg.min_over_baseline))  # fmt: skip
        if latest and name in latest:
            what = f"{metric}: published latest {latest[name]:.1f} - this {value:.1f}"
            checks.append(_check("vs_latest", name, what, latest[name] - value, "<=",
                                 cfg.max_drop_vs_latest))  # fmt: skip
    if report and cfg.min_pretraining_gain is not None:
        what, t = "average gain of pre-training (full - scratch)", cfg.min_pretraining_gain
        if "gain_pretraining" in report["average"]:
            gain = report["average"]["gain_pretraining"]["mean"]
            checks.append(_check("pretraining_gain", None, what, gain, ">=", t))
        else:  # no `scratch` arm: the check cannot pass, and must not vanish
            what = f"no `scratch` arm in study.arms, so no {what} (null: no such check)"
            checks.append({**_check("pretraining_gain", None, what, 0, ">=", t),
                           "value": None, "passed": False})  # fmt: skip
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
