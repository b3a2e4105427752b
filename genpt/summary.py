"""The short run summary `genpt pipeline` ends with, and `genpt status` prints.

It answers three questions: did the run work (each stage, ran or up to date, and its
time), what did the model learn (pre-training loss, each dataset beside its baselines
and the ablation), and where did it go (the gate's verdict, the published bundle).
Everything is read from the stage outputs and the flow's run record (`run.json`);
the full figures stay there, in the Prefect artifacts and in the log.
"""

from __future__ import annotations

from genpt import artifacts
from genpt.io import read_json, write_json
from genpt.params import Params
from model.ablation import format_gain
from model.progress import duration


def write_run(params: Params, stages: list[dict]) -> None:
    """Record the flow's stages: [{"stage", "ran", "seconds"}] in run order."""
    write_json(artifacts.run(params), {"stages": stages})


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Plain aligned columns (first left, the rest right), readable in any log."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: list[str]) -> str:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header), *(fmt(r) for r in rows)]


def stage_rows(stages: list[dict]) -> list[list[str]]:
    """One row per stage; the stages of one `foreach`/`matrix` (`study@…`) as one row."""
    groups: dict[str, list[dict]] = {}
    for s in stages:
        groups.setdefault(s["stage"].split("@")[0], []).append(s)
    rows = []
    for name, group in groups.items():
        n_ran = sum(s["ran"] for s in group)
        if len(group) == 1 and "@" not in group[0]["stage"]:
            label = name
        else:
            label = f"{name}@… ({len(group)})"
        outcome = (
            "ran" if n_ran == len(group)
            else "up to date" if n_ran == 0
            else f"{n_ran} ran, {len(group) - n_ran} up to date"
        )  # fmt: skip
        rows.append([label, outcome, duration(sum(s["seconds"] for s in group))])
    return rows


def stage_lines(run: dict) -> list[str]:
    stages = run["stages"]
    ran = sum(s["ran"] for s in stages)
    total = sum(s["seconds"] for s in stages)
    rows = stage_rows(stages)
    head = f"stages: {ran} ran, {len(stages) - ran} up to date, {duration(total)}"
    return [head, *("  " + ln for ln in table(["stage", "outcome", "time"], rows))]


def pretrain_line(params: Params) -> str | None:
    m = read_json(artifacts.pretrain_metrics(params))
    if not m:
        return None
    parts = [f"val loss {m['val/loss']:.3f} (perplexity {m['val/perplexity']:.1f})"]
    if "train/tokens_per_s_mean" in m:
        parts.append(f"{m['train/tokens_per_s_mean']:,.0f} tokens/s")
    if "train/mfu" in m:
        parts.append(f"MFU {100 * m['train/mfu']:.1f}%")
    parts.append(f"{m['step']:,} steps, {m['tokens'] / 1e6:.1f}M tokens")
    return "pre-training: " + ", ".join(parts)


def _pm(arm: dict | None) -> str:
    """'67.4 ± 3.9' (mean ± std over seeds); the mean alone for 1 seed, which has no spread."""
    if not arm:
        return "–"
    return f"{arm['mean']:.1f}" if arm.get("n") == 1 else f"{arm['mean']:.1f} ± {arm['std']:.1f}"


# Each column names its rows. The product is the study's `full` arm (genpt/arms.py): its
# first seed's model is the published one, scored on dev in the last column.
DATASET_COLUMNS = ["dataset", "metric", "baseline (held-out)", "scratch (held-out)",
                   "full = product (held-out)", "gain (95% CI)", "product (dev)"]  # fmt: skip


def dataset_lines(params: Params) -> list[str]:
    """Each dataset: the study's held-out figures, the product's arm among them, and the
    product (that arm's first model) on dev."""
    report = read_json(artifacts.report_metrics(params)) or {"datasets": {}}
    rows = []
    for name, ds in params.datasets.items():
        ev = read_json(artifacts.eval_metrics(params, name))
        r = report["datasets"].get(name, {})
        arms = r.get("arms", {})
        rows.append(
            [
                name,
                ds.metric,
                f"{r['baseline']:.1f}" if "baseline" in r else "–",
                _pm(arms.get("scratch")),
                _pm(arms.get("full")),
                format_gain(r.get("gain_pretraining")),
                f"{100 * ev[ds.metric]:.1f}" if ev else "–",
            ]
        )
    if not rows:
        return []
    avg = report.get("average", {})
    if "gain_pretraining" in avg:
        a = avg["arms"]
        rows.append(["average", "", f"{avg['baseline']:.1f}", f"{a['scratch']:.1f}",
                     f"{a['full']:.1f}", format_gain(avg["gain_pretraining"]), ""])  # fmt: skip
    return [
        "datasets (metric × 100; held-out: the study's rows, mean ± std over seeds; full is "
        "the product's arm,",
        "  whose first seed's model is the published one, scored on dev in the last column):",
        *("  " + ln for ln in table(DATASET_COLUMNS, rows)),
    ]


def gate_line(params: Params) -> str | None:
    v = read_json(artifacts.gate_verdict(params))
    if v is None:
        return None
    failed = [c for c in v.get("checks", []) if not c["passed"]]
    if v.get("passed"):
        return f"gate: passed ({len(v.get('checks', []))} checks)"
    first = failed[0] if failed else None
    why = ""
    if first:
        who = f"{first['dataset']}: " if first["dataset"] else ""
        need = f"needs {first['rule']} {first['threshold']}"
        value = "" if first["value"] is None else f" = {first['value']}"
        why = f": {who}{first['what']}{value} ({need})"
    return f"gate: FAILED{why}"


def publish_line(params: Params) -> str | None:
    r = read_json(artifacts.publish_receipt(params))
    if r is None:
        return None
    where = f" ({r['store']}: {r['why']})" if "store" in r else ""
    forced = " (gate overridden with --force)" if r.get("gate", {}).get("forced") else ""
    return f"published: {r['uri']}{where}{forced}"


def render(params: Params, run: dict | None = None) -> str:
    """The summary as plain text; `run` defaults to the recorded last run."""
    run = run or read_json(artifacts.run(params))
    out = stage_lines(run) if run else ["stages: no pipeline run recorded"]
    for line in (pretrain_line(params), *dataset_lines(params), gate_line(params),
                 publish_line(params) or "published: nothing yet"):  # fmt: skip
        if line:
            out.append(line)
    return "\n".join(out)
